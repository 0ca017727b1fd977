"""mode: reload: requests/s and latency while the proxy reloads its config, from one wrk run.

One measured wrk run per proxy and reload interval (keep-alive, the scenario's load). Its time is
cut into windows of `reload.window` that follow `reload.cycle`, by default steady, reload,
steady, reload, ...:

- steady: nothing happens;
- reload: every `reload.every` the proxy's config file is replaced (written beside it, then
  renamed over it) by the other split of `reload.weights` (or by the same text, change: none)
  and the proxy is told: revgate by `POST /reload` on its admin listener (the answer's time is
  the reload latency: parse, validate, compile, publish to every worker), SIGHUP, or the rename
  alone (its inotify watch); nginx by `nginx -s reload`; HAProxy (started in master-worker mode,
  `-W`) by SIGUSR2 to the master. A reload that is not over by the next one's time delays it
  (no catching up): the interval achieved is reported;
- metrics / services (revgate only; a steady window for nginx and HAProxy): `GET /metrics` or
  the ServiceList `GET /apis/serving.knative.dev/v1/services`, back to back.

The wrk script is "timed" (load.py): each response is filed under the 50 ms slice it completed
in, so a window's requests/s and latency percentiles are those of the slices wholly inside it,
all from the same run. The backends' own counters (`/_echo/stats`) are read at every window
boundary as a cross-check. At each window's start the peak resident memory of every proxy
process is reset (/proc/PID/clear_refs), so the window's VmHWM is its own peak; VmRSS is also
sampled every 50 ms (nginx and HAProxy fork new processes on reload: the sum over the process
tree). Reloads applied are counted from the proxies' own logs afterwards.
"""

import http.client
import os
import re
import shutil
import signal
import statistics
import time

from . import load, processes
from .processes import StartError
from .scenario import RELOAD_LEAD_S

SAMPLE_S = 0.05
SCRAPE_PATHS = {"metrics": "/metrics", "services": "/apis/serving.knative.dev/v1/services"}
KIND_ORDER = ("steady", "reload", "metrics", "services")


class AdminClient:
    """One keep-alive connection to revgate's admin listener (reconnects when it was closed)."""

    def __init__(self, port, timeout=300.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path):
        """(status, body bytes, body head) of one request; the body is read in pieces and only
        its first 64 KiB is kept (a 10,000-service scrape is hundreds of MiB)."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(processes.LOOPBACK, self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=b"" if method == "POST" else None)
                resp = self.conn.getresponse()
                head, size = b"", 0
                while True:
                    piece = resp.read(1 << 20)
                    if not piece:
                        break
                    if len(head) < 65536:
                        head += piece[:65536 - len(head)]
                    size += len(piece)
                if resp.will_close:
                    self.close()
                return resp.status, size, head
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Reloader:
    """Writes the proxy's other config over its file and tells the proxy, once per call."""

    def __init__(self, bench, proxy, child, admin):
        st = bench.started
        self.bench = bench
        self.proxy = proxy
        self.child = child
        self.admin = admin
        self.trigger = bench.scn.reload.trigger if proxy.kind == "revgate" else (
            "nginx -s reload" if proxy.kind == "nginx" else "SIGUSR2")
        self.path = st["path"]
        self.dir = st["dir"]
        port = st["port"] if proxy.kind != "revgate" else None
        scn = bench.scn
        self.texts = []
        for variant in (scn, scn.alternate()):
            _, text, _ = bench.config_text(proxy, variant, port, self.dir, st["error_log"])
            self.texts.append(text)
        self.next = 1 if scn.reload.change == "weights" else 0
        ext = os.path.splitext(self.path)[1] or ".conf"
        keep = os.path.join(bench.config_dir, f"{proxy.name}-reload-alternate{ext}")
        if not os.path.exists(keep):
            with open(keep, "w") as f:
                f.write(self.texts[1])
        self.signal_log = os.path.join(bench.logs, f"{proxy.name}-reload-command.log")

    def once(self):
        """One reload: the record {t, ms, ok, error}. ms: revgate POST (request to answer) or
        the `nginx -s reload` command; None for a signal."""
        tmp = self.path + ".next"
        with open(tmp, "w") as f:
            f.write(self.texts[self.next])
        if self.bench.scn.reload.change == "weights":
            self.next ^= 1
        rec = {"t": time.monotonic(), "ms": None, "ok": None, "error": None}
        os.replace(tmp, self.path)
        t0 = time.monotonic()
        rec["t"] = t0
        if self.proxy.kind == "revgate":
            if self.trigger == "post":
                status, _, body = self.admin.request("POST", "/reload")
                rec["ms"] = (time.monotonic() - t0) * 1000.0
                rec["ok"] = status == 200
                m = re.search(rb'"generation"\s*:\s*(\d+)', body)
                rec["generation"] = int(m.group(1)) if m else None
                if status != 200:
                    text = body[:500].decode(errors="replace")
                    rec["error"] = f"POST /reload answered {status}: {text}"
            elif self.trigger == "sighup":
                os.kill(self.child.pid, signal.SIGHUP)
            # rename: the rename above is the trigger (revgate's inotify watch)
        elif self.proxy.kind == "nginx":
            argv = ["nginx", "-s", "reload", "-p", self.dir, "-c", self.path,
                    "-e", os.path.join(self.dir, "error.log")]
            cmd = self.bench.sup.start(argv, "nginx -s reload", self.signal_log)
            try:
                cmd.popen.wait(120)
            except Exception:
                pass
            finally:
                self.bench.sup.stop(cmd)
            rec["ms"] = (time.monotonic() - t0) * 1000.0
            rec["ok"] = cmd.popen.returncode == 0
            if not rec["ok"]:
                rec["error"] = f"nginx -s reload exited {cmd.popen.returncode}: {cmd.log_tail(5)}"
        else:
            os.kill(self.child.pid, signal.SIGUSR2)
        return rec

    def applied(self):
        """(reloads applied, reloads refused) from the proxy's own log, after the run."""
        st = self.bench.started
        if self.proxy.kind == "revgate":
            text = processes.read_text(st["log"])
            return (len(re.findall(r"reload: config generation \d+ in force", text)),
                    len(re.findall(r"reload failed", text)))
        if self.proxy.kind == "nginx":
            text = processes.read_text(st["error_log"])
            return (max(0, text.count("start worker processes") - 1), text.count("[emerg]"))
        text = processes.read_text(st["log"])
        return max(0, text.count("Loading success.") - 1), text.count("Loading failure")


class Sampler:
    """The largest VmRSS sum over the proxy's processes seen while sampling."""

    def __init__(self, pids_of, wrk):
        self.pids_of = pids_of
        self.wrk = wrk
        self.peak = 0

    def sample(self):
        self.peak = max(self.peak, processes.status_kib(self.pids_of(), "VmRSS"))

    def until(self, t_end):
        """Samples every 50 ms until t_end (or until wrk is gone)."""
        while self.wrk.running():
            self.sample()
            left = t_end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(SAMPLE_S, left))


def _pct(values, p):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def ms_summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"count": len(values), "50": _pct(values, 50), "99": _pct(values, 99),
            "max": max(values), "mean": statistics.fmean(values)}


def _figures(f):
    """A window's (or a kind's) figures from load.window_figures, for the report."""
    seconds = f["seconds"]
    return {"requests": f["requests"], "seconds": round(seconds, 3),
            "rps": f["requests"] / seconds if seconds else None,
            "non_2xx_3xx": f["non_2xx_3xx"], "latency_ms": load.latency_summary(f["hist"])}


def measure(bench, proxy, mode, child, port, label, rnd):
    scn, L, R = bench.scn, bench.scn.load, bench.scn.reload
    every = scn.reload_every(mode)
    tag = mode.replace(" ", "-")
    script = os.path.join(bench.work, "load-reload.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(load.lua_script(scn, "keepalive", timed=True))
        shutil.copyfile(script, os.path.join(bench.config_dir, "load-reload.lua"))
    url = f"{'https' if scn.tls else 'http'}://{processes.LOOPBACK}:{port}{L.path}"
    threads = min(L.threads, L.connections)
    log = os.path.join(bench.logs, f"wrk-{proxy.name}-r{rnd}-{tag}.log")
    startup_s = bench.started["startup_s"]
    if L.warmup_s > 0:
        bench.progress.update(f"{label}: warm-up {L.warmup_s:g} s")
        load.run_wrk(bench.sup, load.wrk_argv(url, script, L.connections, threads, L.warmup_s,
                                              L.timeout_s), log + ".warmup")

    is_revgate = proxy.kind == "revgate"
    kinds = [R.cycle[i % len(R.cycle)] for i in range(R.windows(L.duration_s))]
    if not is_revgate:   # nothing to scrape: those windows are steady ones
        kinds = ["steady" if k in SCRAPE_PATHS else k for k in kinds]
    admin = None
    if is_revgate and (R.trigger == "post" or any(k in SCRAPE_PATHS for k in kinds)):
        if not bench.started["admin_port"]:
            raise StartError(f"{proxy.name}: no admin port in its log {bench.started['log']}")
        admin = AdminClient(bench.started["admin_port"])
    reloader = Reloader(bench, proxy, child, admin)
    backends = [a for addrs in bench.backends.values() for a in addrs]

    def pids_of():
        return [child.pid] if is_revgate else processes.tree(child.pid)

    pids = pids_of()
    backend_pids = [p for c in bench.backend_children for p in processes.tree(c.pid)]
    rss_start = processes.status_kib(pids, "VmRSS")
    c0 = processes.cpu_ticks_with_reaped(child.pid, pids)
    b0 = processes.cpu_ticks(backend_pids)
    h0, w0 = processes.host_ticks(), processes.children_cpu_seconds()
    argv = load.wrk_argv(url, script, L.connections, threads, L.duration_s, L.timeout_s)
    wrk = load.start_wrk(bench.sup, argv, log)
    t0 = time.monotonic()
    wrk_end = t0 + max(1, round(L.duration_s))
    windows, reload_records, scrape_records = [], [], []
    try:
        for i, kind in enumerate(kinds):
            plan_start = t0 + RELOAD_LEAD_S + i * R.window_s
            plan_end = plan_start + R.window_s
            Sampler(pids_of, wrk).until(plan_start)
            if not wrk.running() or time.monotonic() > wrk_end - 0.2:
                break
            bench.progress.update(f"{label}: window {i + 1}/{len(kinds)} ({kind}), "
                                  f"{time.monotonic() - t0:4.1f}/{round(L.duration_s)} s")
            w = {"index": i, "kind": kind}
            w["backend_t0"] = time.monotonic()
            w["backend_start"] = sum(load.echo_requests(a) for a in backends)
            processes.reset_peak(pids_of())
            w["rss_start_kib"] = processes.status_kib(pids_of(), "VmRSS")
            w["start"] = time.monotonic()
            sampler = Sampler(pids_of, wrk)
            sampler.sample()
            if kind == "reload":
                _reload_window(reloader, every, plan_end, sampler, wrk, reload_records, i)
            elif kind in SCRAPE_PATHS:
                _scrape_window(admin, kind, plan_end, sampler, wrk, scrape_records, i)
            else:
                sampler.until(plan_end)
            w["end"] = time.monotonic()
            sampler.sample()
            w["hwm_kib"] = processes.status_kib(pids_of(), "VmHWM")
            w["rss_peak_kib"] = sampler.peak
            w["backend_end"] = sum(load.echo_requests(a) for a in backends)
            w["backend_t1"] = time.monotonic()
            windows.append(w)

        def tick(elapsed):
            bench.progress.update(f"{label}: {time.monotonic() - t0:4.1f}/{round(L.duration_s)} s")
        res = load.finish_wrk(bench.sup, wrk, argv, log, on_tick=tick)
    finally:
        if wrk in bench.sup.children:
            bench.sup.stop(wrk)
        if admin:
            admin.close()
    wall = time.monotonic() - t0
    pids = pids_of()
    c1 = processes.cpu_ticks_with_reaped(child.pid, pids)
    b1 = processes.cpu_ticks(backend_pids)
    h1, w1 = processes.host_ticks(), processes.children_cpu_seconds()
    time.sleep(0.3)    # let the last reload's leftovers go (old workers, the old route table)
    rss_end = processes.status_kib(pids_of(), "VmRSS")
    if not child.running():
        raise StartError(f"{proxy.name} exited during the run:\n{child.log_tail()}")
    applied, refused = reloader.applied()
    return _result(bench, proxy, rnd, every, reloader.trigger, startup_s, res, t0, wrk_end, windows,
                   reload_records, scrape_records, applied, refused, len(backends),
                   {"rss_start_kib": rss_start, "rss_end_kib": rss_end},
                   {"proxy_cpu_seconds": (c1 - c0) / processes.CLK_TCK, "wall": wall,
                    "backend_cpu_pct": 100.0 * (b1 - b0) / processes.CLK_TCK / wall,
                    "wrk_cpu_pct": 100.0 * (w1 - w0) / wall,
                    "host_busy_pct": 100.0 * (os.cpu_count() or 1) * (h1[0] - h0[0])
                    / (h1[1] - h0[1]) if h1[1] > h0[1] else None,
                    "processes": len(pids)}, label)


def _reload_window(reloader, every, end, sampler, wrk, records, index):
    next_at = time.monotonic()
    while wrk.running():
        now = time.monotonic()
        if now >= end:
            return
        if now >= next_at:
            rec = reloader.once()
            rec["window"] = index
            rec["late_ms"] = max(0.0, (rec["t"] - next_at) * 1000.0)
            records.append(rec)
            sampler.sample()
            next_at += every
            now = time.monotonic()
            if next_at < now:     # behind (the reload took longer than `every`): no burst
                next_at = now
        else:
            sampler.until(min(next_at, end))


def _scrape_window(admin, kind, end, sampler, wrk, records, index):
    while wrk.running() and time.monotonic() < end:
        t = time.monotonic()
        status, size, _ = admin.request("GET", SCRAPE_PATHS[kind])
        records.append({"kind": kind, "window": index, "t": t,
                        "ms": (time.monotonic() - t) * 1000.0, "bytes": size, "status": status})
        sampler.sample()


def _result(bench, proxy, rnd, every, trigger, startup_s, res, t0, wrk_end, windows,
            reload_records, scrape_records, applied, refused, n_backends, memory, cpu, label):
    slices, width = load.slices_of(res)
    by_kind_parts = {}
    out_windows = []
    for w in windows:
        end = min(w["end"], wrk_end)
        f = load.window_figures(slices, width, w["start"], end)
        if f["seconds"] < 0.1:
            continue
        by_kind_parts.setdefault(w["kind"], []).append(f)
        backend = w["backend_end"] - w["backend_start"] - n_backends   # our own /_echo/stats
        span = w["backend_t1"] - w["backend_t0"]
        out = {"index": w["index"], "kind": w["kind"],
               "start_s": round(w["start"] - t0, 3), "end_s": round(end - t0, 3),
               **_figures(f),
               "backend_requests": backend, "backend_rps": backend / span if span else None,
               "rss_start_kib": w["rss_start_kib"], "hwm_kib": w["hwm_kib"],
               "rss_peak_kib": w["rss_peak_kib"],
               "reloads": sum(1 for r in reload_records if r["window"] == w["index"]),
               "scrapes": sum(1 for r in scrape_records if r["window"] == w["index"])}
        out_windows.append(out)
    by_kind = {}
    for kind in KIND_ORDER:
        parts = by_kind_parts.get(kind)
        if not parts:
            continue
        merged = _figures(load.merge_figures(parts))
        ws = [w for w in out_windows if w["kind"] == kind]
        spans = sum(w["end_s"] - w["start_s"] for w in ws)
        merged["windows"] = len(ws)
        merged["backend_rps"] = (sum(w["backend_requests"] for w in ws) / spans) if spans else None
        merged["hwm_kib"] = max(w["hwm_kib"] for w in ws)
        merged["rss_peak_kib"] = max(w["rss_peak_kib"] for w in ws)
        by_kind[kind] = merged
    steady = by_kind.get("steady")

    def ratio(kind, key):
        k = by_kind.get(kind)
        if not k or not steady:
            return None
        a = k[key] if key == "rps" else k["latency_ms"]["99"]
        b = steady[key] if key == "rps" else steady["latency_ms"]["99"]
        return a / b if a is not None and b else None

    # the reloads: what was sent, what the proxy applied, how long revgate's answers took
    starts = {}
    for r in reload_records:
        starts.setdefault(r["window"], []).append(r["t"])
    gaps = [(b - a) * 1000.0 for ts in starts.values() for a, b in zip(ts, ts[1:])]
    failed_answers = [r for r in reload_records if r["ok"] is False]
    # revgate with POST /reload: its inotify watch sees every rename too, and reloads on its own
    # when the file changed after the last load it knows of and stayed quiet for 100 ms (here:
    # when the next rename lands just before the next POST). Those are counted apart.
    by_watch = None
    if trigger == "post":
        answered = sum(1 for r in reload_records if r["ok"])
        by_watch = max(0, applied - answered)
        applied = answered
    reloads = {
        "every_ms": every * 1000.0, "trigger": trigger, "sent": len(reload_records),
        "applied": applied, "by_file_watch": by_watch,
        "refused": refused, "failed_answers": len(failed_answers),
        "first_error": failed_answers[0]["error"] if failed_answers else None,
        "latency_ms": ms_summary([r["ms"] for r in reload_records
                                  if r["ms"] is not None and r["ok"]]),
        "interval_ms": ms_summary(gaps),
        "late_ms": ms_summary([r["late_ms"] for r in reload_records]),
        "latencies_ms": [round(r["ms"], 3) for r in reload_records if r["ms"] is not None],
    }
    scrapes = {}
    for kind in SCRAPE_PATHS:
        recs = [r for r in scrape_records if r["kind"] == kind]
        if recs:
            scrapes[kind] = {"path": SCRAPE_PATHS[kind], "count": len(recs),
                             "ms": ms_summary([r["ms"] for r in recs]),
                             "bytes": statistics.median(r["bytes"] for r in recs),
                             "non_200": sum(1 for r in recs if r["status"] != 200)}
    # Memory. A scrape may leave memory behind (the allocator keeps what a ServiceList or a
    # merge used), so the steady peak is taken from the steady windows before the first scrape
    # window, and a reload's extra memory from its own window: peak - RSS at the window's start.
    first_scrape = min((w["index"] for w in out_windows if w["kind"] in SCRAPE_PATHS),
                       default=None)
    clean = [w for w in out_windows if w["kind"] == "steady"
             and (first_scrape is None or w["index"] < first_scrape)]
    reload_ws = [w for w in out_windows if w["kind"] == "reload"]
    memory.update({
        "steady_peak_kib": max((w["hwm_kib"] for w in clean), default=None),
        "reload_peak_kib": max((w["hwm_kib"] for w in reload_ws), default=None),
        "extra_kib": max((w["hwm_kib"] - w["rss_start_kib"] for w in reload_ws), default=None),
        "steady_sampled_peak_kib": max((w["rss_peak_kib"] for w in clean), default=None),
        "reload_sampled_peak_kib": max((w["rss_peak_kib"] for w in reload_ws), default=None),
        "after_scrapes_kib": (max(w["rss_start_kib"] for w in out_windows
                                  if w["index"] > first_scrape)
                              if first_scrape is not None and
                              any(w["index"] > first_scrape for w in out_windows) else None),
    })
    # the whole run, as wrk saw it
    seconds = res["duration_us"] / 1e6
    requests = res["requests"]
    errors = res["errors"]
    statuses = {k: int(v) for k, v in res["statuses"].items()}
    non2xx = sum(v for k, v in statuses.items() if not 200 <= int(float(k)) < 400)
    pct = res["latency_us"]["percentiles"]
    timeline = {}
    for k, sl in slices.items():
        t = round((k / 1e6 - t0) * 10) / 10.0          # 100 ms points
        timeline[t] = timeline.get(t, 0) + sl["n"]
    result = {
        "round": rnd,
        "every_s": every,
        "trigger": trigger,
        "startup_s": startup_s,
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": requests / seconds if seconds else 0.0,
        "latency_ms": {str(p): pct[str(p) if p != int(p) else str(int(p))] / 1000.0
                       for p in load.PERCENTILES},
        "latency_max_ms": res["latency_us"]["max"] / 1000.0,
        "errors": {"socket": int(errors["connect"] + errors["read"] + errors["write"]
                                 + errors["timeout"]),
                   "non_2xx_3xx": int(non2xx), "detail": errors},
        "statuses": statuses,
        "revisions": {k: int(v) for k, v in res["revisions"].items()},
        "windows": out_windows,
        "by_kind": by_kind,
        "rps_ratio": ratio("reload", "rps"),
        "p99_ratio": ratio("reload", "p99"),
        "scrape_p99_ratio": {k: ratio(k, "p99") for k in SCRAPE_PATHS if k in by_kind},
        "reloads": reloads,
        "scrapes": scrapes,
        "memory": memory,
        "proxy_cpu_seconds": round(cpu["proxy_cpu_seconds"], 3),
        "proxy_cpu_seconds_per_10k": (cpu["proxy_cpu_seconds"] / requests * 10000
                                      if requests else None),
        "proxy_cpu_pct": 100.0 * cpu["proxy_cpu_seconds"] / cpu["wall"],
        "backend_cpu_pct": cpu["backend_cpu_pct"],
        "wrk_cpu_pct": cpu["wrk_cpu_pct"],
        "host_busy_pct": cpu["host_busy_pct"],
        "proxy_processes": cpu["processes"],
        "timeline": sorted([t, n / 0.1] for t, n in timeline.items()
                           if 0 <= t <= wrk_end - t0 - 0.1),
    }
    failed = result["errors"]["socket"] + result["errors"]["non_2xx_3xx"]
    st, rl = by_kind.get("steady"), by_kind.get("reload")
    text = f"{label}: "
    if st and rl:
        text += (f"steady {st['rps']:,.0f} req/s p99 {st['latency_ms']['99']:.2f} ms, "
                 f"reloading {rl['rps']:,.0f} req/s p99 {rl['latency_ms']['99']:.2f} ms "
                 f"({result['rps_ratio']:.3f}x), ")
    text += f"reloads {applied}/{len(reload_records)}"
    if reloads["latency_ms"]:
        text += (f" (p50 {reloads['latency_ms']['50']:.1f} ms, "
                 f"p99 {reloads['latency_ms']['99']:.1f} ms)")
    text += f", failed requests {failed}"
    for kind, s in scrapes.items():
        text += (f", {kind}: {s['count']} scrapes p99 "
                 f"{by_kind[kind]['latency_ms']['99']:.2f} ms")
    bench.progress.line(text)
    return result
