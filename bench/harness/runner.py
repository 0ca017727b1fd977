"""bench/run: the command line and one scenario run from start to report.

    bench/run SCENARIO.yaml [--out DIR] [--rounds N] [--duration 10s] [--warmup 2s]
              [--connections N] [--idle-connections N] [--only NAME,...] [--revgate PATH]

Order of a run: echo backends (kept for the whole run), a preflight of every proxy config
(`revgate check -c`, `nginx -t`, `haproxy -c`), then rounds: each round starts each proxy in
turn on a free loopback port, warms it up, measures it with wrk (or the idle client) while
sampling its CPU ticks and peak memory from /proc, and stops it: A B C A B C ... so drift hits
every proxy alike. Then report.md, report.json and the pictures.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from . import configs, load, processes, reloads, report, scenario as scenario_mod
from .processes import StartError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class Progress:
    """One status line on stderr: rewritten in place on a terminal, one line per step otherwise."""

    def __init__(self, stream=sys.stderr, quiet=False):
        self.stream = stream
        self.tty = stream.isatty()
        self.quiet = quiet
        self.live = False

    def update(self, text):
        if self.quiet or not self.tty:
            return
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.live = True

    def line(self, text, always=False):
        if self.quiet and not always:
            return
        if self.live:
            self.stream.write("\r\x1b[K")
            self.live = False
        self.stream.write(text + "\n")
        self.stream.flush()


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Load-benchmark revgate's routing policies against nginx and HAProxy.")
    ap.add_argument("scenario", help="scenario file (bench/scenarios/*.yaml)")
    ap.add_argument("--out", help="report directory (default /tmp/revgate-bench/NAME-TIME)")
    ap.add_argument("--rounds", type=int, help="rounds (overrides load.rounds)")
    ap.add_argument("--duration", help="measured seconds per run, e.g. 10s (overrides load.duration)")
    ap.add_argument("--warmup", help="unrecorded warm-up per run, e.g. 2s (overrides load.warmup)")
    ap.add_argument("--connections", type=int, help="wrk connections (overrides load.connections)")
    ap.add_argument("--idle-connections", type=int,
                    help="idle connections to open (overrides idle.connections)")
    ap.add_argument("--reload-every",
                    help="mode reload: comma-separated reload intervals, e.g. 100ms,1s "
                         "(overrides reload.every)")
    ap.add_argument("--only", help="comma-separated proxy names to run (default: all)")
    ap.add_argument("--revgate", default=os.environ.get("REVGATE_BIN")
                    or os.path.join(REPO, "build", "revgate"),
                    help="the revgate binary (default $REVGATE_BIN or build/revgate)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap.parse_args(argv)


def apply_overrides(scn, args):
    errors = []
    if args.rounds is not None:
        if args.rounds < 1:
            errors.append("--rounds must be >= 1")
        scn.load.rounds = args.rounds
    for name, attr in (("duration", "duration_s"), ("warmup", "warmup_s")):
        value = getattr(args, name)
        if value is not None:
            seconds = scenario_mod.parse_duration(value)
            if seconds is None or (name == "duration" and seconds < 0.5):
                errors.append(f"--{name} wants a duration like 10s, got {value!r}")
            else:
                setattr(scn.load, attr, seconds)
    if args.connections is not None:
        if args.connections < 1:
            errors.append("--connections must be >= 1")
        scn.load.connections = args.connections
        scn.load.threads = min(scn.load.threads, scn.load.connections)
    if args.idle_connections is not None:
        if args.idle_connections < 1:
            errors.append("--idle-connections must be >= 1")
        scn.idle.connections = args.idle_connections
    if getattr(args, "reload_every", None):
        every = [scenario_mod.parse_duration(x) for x in args.reload_every.split(",") if x.strip()]
        if scn.mode != "reload":
            errors.append("--reload-every: only for mode: reload scenarios")
        elif not every or any(e is None or e < 0.01 or e > scn.reload.window_s for e in every):
            errors.append(f"--reload-every wants durations like 100ms,1s (10ms .. the window, "
                          f"{scn.reload.window_s:g} s), got {args.reload_every!r}")
        else:
            scn.reload.every_s = list(dict.fromkeys(every))
    if scn.mode == "reload" and scn.reload.windows(scn.load.duration_s) < len(scn.reload.cycle):
        errors.append(f"--duration: too short for one cycle of {len(scn.reload.cycle)} windows of "
                      f"{scn.reload.window_s:g} s")
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        known = [p.name for p in scn.proxies]
        unknown = [n for n in wanted if n not in known]
        if unknown:
            errors.append(f"--only: no proxy named {', '.join(unknown)} in the scenario "
                          f"(it has {', '.join(known)})")
        scn.proxies = [p for p in scn.proxies if p.name in wanted]
    return errors


def machine_info(revgate_bin):
    def cmd(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    os_name = "unknown"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 1048576, 1),
        "os": os_name,
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
        "revgate": cmd([revgate_bin, "version"]),
        "nginx": cmd(["nginx", "-v"]),
        "haproxy": cmd(["haproxy", "-v"]),
        "wrk": cmd(["wrk", "-v"]),
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------------- the run

class Bench:
    def __init__(self, scn, args, out_dir, progress):
        self.scn = scn
        self.args = args
        self.out = out_dir
        self.progress = progress
        self.sup = processes.Supervisor()
        self.work = tempfile.mkdtemp(prefix="revgate-bench.")
        os.chmod(self.work, 0o755)         # nginx workers run as nobody when started by root
        self.logs = os.path.join(out_dir, "logs")
        self.config_dir = os.path.join(out_dir, "configs")
        for d in (self.logs, self.config_dir, os.path.join(out_dir, "plots")):
            shutil.rmtree(d, ignore_errors=True)     # a reused --out: no stale files
        os.makedirs(self.logs)
        os.makedirs(self.config_dir)
        self.revgate = args.revgate
        self.backends = {}       # revision -> [address]
        self.backend_children = []
        self.tls = None
        self.seq = 0

    # ----- setup
    def check_tools(self):
        missing = []
        if not os.access(self.revgate, os.X_OK):
            missing.append(f"the revgate binary {self.revgate} (build it, or pass --revgate PATH)")
        kinds = {p.kind for p in self.scn.proxies}
        tools = {"nginx": "nginx", "haproxy": "haproxy"}
        for kind, tool in tools.items():
            if kind in kinds and not shutil.which(tool):
                missing.append(f"{tool} (scripts/setup.sh --bench)")
        if self.scn.mode != "idle-connections" and not shutil.which("wrk"):
            missing.append("wrk (scripts/setup.sh --bench)")
        if not shutil.which("gnuplot"):
            missing.append("gnuplot (scripts/setup.sh --bench)")
        if self.scn.tls and not shutil.which("openssl"):
            missing.append("openssl")
        return missing

    def make_cert(self):
        d = os.path.join(self.work, "tls")
        os.makedirs(d)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)
        self.tls = (cert, key)

    def start_backends(self):
        for rev in self.scn.revisions:
            addrs = []
            for i, spec in enumerate(rev.specs):
                argv = [self.revgate, "echo", "--name", rev.name,
                        "--listen", f"{processes.LOOPBACK}:0", "--threads", str(spec.threads)]
                argv += spec.latency.echo_args()
                if spec.error_rate > 0:
                    argv += ["--error-rate", repr(spec.error_rate)]
                log = os.path.join(self.logs, f"echo-{rev.name}-{i}.log")
                child = self.sup.start(argv, f"echo {rev.name}#{i}", log)
                m = processes.wait_for_log(child, r"listening on (\S+):(\d+)\s*$")
                addrs.append(f"{processes.LOOPBACK}:{m.group(2)}")
                self.backend_children.append(child)
            self.backends[rev.name] = addrs

    # ----- proxies
    def _max_client_conns(self):
        if self.scn.mode == "idle-connections":
            return self.scn.idle.connections + 64
        return self.scn.load.connections + 64

    def config_text(self, proxy, scn, port, d, error_log=None):
        """(path, text, extra files) of the proxy's config for scenario `scn` in directory d."""
        files = {}
        if proxy.kind == "revgate":
            path = os.path.join(d, "revgate.yaml")
            text = configs.revgate_config(scn, proxy, self.backends, tls=self.tls)
        elif proxy.kind == "nginx":
            path = os.path.join(d, "nginx.conf")
            nofile = processes.raise_nofile(0)
            text = configs.nginx_config(scn, proxy, self.backends, port, d, tls=self.tls,
                                        max_client_conns=self._max_client_conns(), nofile=nofile,
                                        error_log=error_log,
                                        error_level="notice" if scn.mode == "reload" else "warn")
        else:
            path = os.path.join(d, "haproxy.cfg")
            text, files = configs.haproxy_config(scn, proxy, self.backends, port, d,
                                                 tls=self.tls,
                                                 max_client_conns=self._max_client_conns(),
                                                 nofile=processes.raise_nofile(0))
        return path, text, files

    def write_config(self, proxy, port=None, error_log=None):
        """Writes the proxy's config (and extra files) into a fresh directory; returns its path."""
        self.seq += 1
        d = os.path.join(self.work, f"{proxy.name}-{self.seq}")
        os.makedirs(os.path.join(d, "tmp"))
        os.chmod(d, 0o755)
        path, text, files = self.config_text(proxy, self.scn, port, d, error_log)
        configs.write_files(d, files)
        with open(path, "w") as f:
            f.write(text)
        keep = os.path.join(self.config_dir, f"{proxy.name}{os.path.splitext(path)[1] or '.conf'}")
        if not os.path.exists(keep):
            shutil.copyfile(path, keep)
        return d, path

    def check_config(self, proxy):
        """The proxy's own validation of its generated config; None or the error text."""
        d, path = self.write_config(proxy, port=processes.free_port())
        if proxy.kind == "revgate":
            argv = [proxy.binary or self.revgate, "check", "-c", path]
        elif proxy.kind == "nginx":
            argv = ["nginx", "-t", "-q", "-p", d, "-c", path, "-e", os.path.join(d, "error.log")]
        else:
            argv = ["haproxy", "-c", "-q", "-f", path]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return (f"{' '.join(argv)} failed (exit {r.returncode}):\n"
                    + "\n".join((r.stdout + r.stderr).strip().splitlines()[:15]))
        return None

    def start_proxy(self, proxy, tag):
        """Starts the proxy; returns (child, port). self.started then describes it: config
        directory and file, logs, admin port (revgate), seconds from the start to ready."""
        log = os.path.join(self.logs, f"{proxy.name}-{tag}.log")
        # mode: reload reports the start-up time, so poll finer (5 ms) there
        poll = 0.005 if self.scn.mode == "reload" else 0.02
        for attempt in range(3):
            port = None if proxy.kind == "revgate" else processes.free_port()
            error_log = log[:-4] + ".error.log"
            d, path = self.write_config(proxy, port, error_log=error_log)
            self.started = {"dir": d, "path": path, "log": log, "error_log": error_log,
                            "admin_port": None, "startup_s": None, "port": port}
            t0 = time.monotonic()
            if proxy.kind == "revgate":
                child = self.sup.start([proxy.binary or self.revgate, "run", "-c", path],
                                       proxy.name, log)
                try:
                    processes.wait_for_log(child, r"ready: \d+ worker", timeout=120, poll=poll)
                except StartError:
                    self.sup.stop(child)
                    raise
                self.started["startup_s"] = time.monotonic() - t0
                with open(log, errors="replace") as f:
                    text = f.read()
                ports = re.findall(r"(https?) listening on \S+:(\d+)\s*$", text, re.M)
                if not ports:
                    self.sup.stop(child)
                    raise StartError(f"{proxy.name}: no listening port in its log {log}")
                admin = re.findall(r"admin listening on \S+:(\d+)\s*$", text, re.M)
                self.started["admin_port"] = int(admin[-1]) if admin else None
                self.started["port"] = int(ports[-1][1])
                return child, int(ports[-1][1])
            if proxy.kind == "nginx":
                argv = ["nginx", "-p", d, "-c", path, "-e", os.path.join(d, "error.log")]
            elif self.scn.mode == "reload":
                # master-worker mode: SIGUSR2 to the master reloads (a new worker, the old one
                # soft-stops), the way Debian's haproxy.service reloads
                argv = ["haproxy", "-W", "-db", "-f", path]
            else:
                argv = ["haproxy", "-db", "-f", path]
            child = self.sup.start(argv, proxy.name, log)
            try:
                processes.wait_for_port(child, port, timeout=60, poll=poll)
            except StartError:
                err = log[:-4] + ".error.log"
                busy = "Address already in use" in (child.log_tail(50) + processes.read_text(err))
                self.sup.stop(child)
                if busy and attempt < 2:
                    continue       # someone took the free port meanwhile: another one
                raise StartError(f"{proxy.name} did not start:\n{child.log_tail()}{processes.read_text(err)[-2000:]}")
            if proxy.kind == "nginx":     # the master listens before its workers are forked
                deadline = time.monotonic() + 10
                while len(processes.tree(child.pid)) < 1 + proxy.workers and time.monotonic() < deadline:
                    time.sleep(poll)
            self.started["startup_s"] = time.monotonic() - t0
            return child, port
        raise StartError(f"{proxy.name}: no free port")

    # ----- one measured run
    def measure(self, proxy, mode, rnd, index, total):
        scn = self.scn
        label = f"[round {rnd}/{scn.load.rounds} | {index}/{total}] {proxy.name}"
        if scn.mode == "reload":
            if len(scn.reload.every_s) > 1:
                label += f" [{mode}]"
        elif mode not in ("keepalive", "idle") or len(scn.load.modes) > 1:
            label += f" {mode}"
        self.progress.update(f"{label}: starting")
        child, port = self.start_proxy(proxy, f"r{rnd}-{mode.replace(' ', '-')}")
        try:
            if mode == "idle":
                return self._measure_idle(proxy, child, port, label)
            if scn.mode == "reload":
                return reloads.measure(self, proxy, mode, child, port, label, rnd)
            return self._measure_wrk(proxy, mode, child, port, label, rnd)
        finally:
            self.sup.stop(child)

    def _measure_wrk(self, proxy, mode, child, port, label, rnd):
        scn, L = self.scn, self.scn.load
        script = os.path.join(self.work, f"load-{mode}.lua")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(load.lua_script(scn, mode))
            shutil.copyfile(script, os.path.join(self.config_dir, f"load-{mode}.lua"))
        url = f"{'https' if scn.tls else 'http'}://{processes.LOOPBACK}:{port}{L.path}"
        threads = min(L.threads, L.connections)
        log = os.path.join(self.logs, f"wrk-{proxy.name}-r{rnd}-{mode}.log")
        if L.warmup_s > 0:
            self.progress.update(f"{label}: warm-up {L.warmup_s:g} s")
            load.run_wrk(self.sup, load.wrk_argv(url, script, L.connections, threads, L.warmup_s,
                                                 L.timeout_s), log + ".warmup")
        pids = processes.tree(child.pid)
        backend_pids = [p for c in self.backend_children for p in processes.tree(c.pid)]
        c0, b0 = processes.cpu_ticks(pids), processes.cpu_ticks(backend_pids)
        h0, w0 = processes.host_ticks(), processes.children_cpu_seconds()
        t0 = time.monotonic()

        def tick(elapsed):
            self.progress.update(f"{label}: {elapsed:4.1f}/{round(L.duration_s)} s")
        res = load.run_wrk(self.sup, load.wrk_argv(url, script, L.connections, threads,
                                                   L.duration_s, L.timeout_s), log, on_tick=tick)
        wall = time.monotonic() - t0
        c1, b1 = processes.cpu_ticks(pids), processes.cpu_ticks(backend_pids)
        h1, w1 = processes.host_ticks(), processes.children_cpu_seconds()
        hwm = processes.status_kib(pids, "VmHWM")
        if not child.running():
            raise StartError(f"{proxy.name} exited during the run:\n{child.log_tail()}")
        sticky = None
        if proxy.hash_on:
            self.progress.update(f"{label}: checking stickiness")
            hosts = scn.host_names()
            sticky = load.stickiness(port, proxy.hash_on, tls=scn.tls,
                                     host=hosts[0] if hosts else None)
        seconds = res["duration_us"] / 1e6
        requests = res["requests"]
        proxy_cpu = (c1 - c0) / processes.CLK_TCK
        busy = h1[0] - h0[0]
        all_ticks = h1[1] - h0[1]
        pct = res["latency_us"]["percentiles"]
        errors = res["errors"]
        statuses = {k: int(v) for k, v in res["statuses"].items()}
        non2xx = sum(v for k, v in statuses.items() if not 200 <= int(float(k)) < 400)
        result = {
            "round": rnd,
            "requests": requests,
            "seconds": round(seconds, 3),
            "rps": requests / seconds if seconds else 0.0,
            "latency_ms": {str(p): pct[_pkey(p)] / 1000.0 for p in load.PERCENTILES},
            "latency_mean_ms": res["latency_us"]["mean"] / 1000.0,
            "latency_max_ms": res["latency_us"]["max"] / 1000.0,
            "errors": {"socket": int(errors["connect"] + errors["read"] + errors["write"]
                                     + errors["timeout"]),
                       "non_2xx_3xx": int(non2xx), "detail": errors},
            "statuses": statuses,
            "revisions": {k: int(v) for k, v in res["revisions"].items()},
            "proxy_cpu_seconds": round(proxy_cpu, 3),
            "proxy_cpu_seconds_per_10k": proxy_cpu / requests * 10000 if requests else None,
            "proxy_cpu_pct": 100.0 * proxy_cpu / wall,
            "proxy_peak_rss_kib": hwm,
            "proxy_processes": len(pids),
            "backend_cpu_pct": 100.0 * (b1 - b0) / processes.CLK_TCK / wall,
            "wrk_cpu_pct": 100.0 * (w1 - w0) / wall,
            "host_busy_pct": 100.0 * (os.cpu_count() or 1) * busy / all_ticks if all_ticks else None,
            "stickiness": sticky,
        }
        self.progress.line(
            f"{label}: {result['rps']:,.0f} req/s, p99 {result['latency_ms']['99']:.2f} ms, "
            f"errors {result['errors']['socket'] + result['errors']['non_2xx_3xx']}, "
            f"proxy CPU {result['proxy_cpu_pct']:.0f}%, peak RSS {hwm / 1024:.1f} MiB")
        return result

    def _measure_idle(self, proxy, child, port, label):
        n = self.scn.idle.connections
        pids = processes.tree(child.pid)

        def tick(i):
            self.progress.update(f"{label}: {i:,}/{n:,} idle connections open")
        res = load.idle_connections(port, n, pids, on_tick=tick)
        self.progress.line(
            f"{label}: {n:,} idle connections: +{(res['rss_after_kib'] - res['rss_before_kib']) / 1024:.1f} "
            f"MiB = {res['bytes_per_connection']:,.0f} B/connection"
            + (f", {res['closed_by_server']} closed by the proxy" if res["closed_by_server"] else ""))
        return res

    # ----- all of it
    def run(self):
        scn = self.scn
        if scn.tls:
            self.make_cert()
        self.progress.update("starting backends")
        self.start_backends()
        self.progress.line("backends: " + ", ".join(
            f"{r} on {', '.join(a)}" for r, a in self.backends.items()))
        problems = []
        for p in scn.proxies:
            self.progress.update(f"checking the {p.name} config")
            err = self.check_config(p)
            if err:
                problems.append(f"{p.name}: {err}")
        if problems:
            raise StartError("generated configs refused (leave those proxies out with --only):\n"
                             + "\n".join(problems))
        runs = scn.runs()
        results = {(p.name, m): [] for p, m in runs}
        total = len(runs) * scn.load.rounds
        index = 0
        for rnd in range(1, scn.load.rounds + 1):
            for proxy, mode in runs:
                index += 1
                results[(proxy.name, mode)].append(self.measure(proxy, mode, rnd, index, total))
        return results

    def cleanup(self):
        self.sup.stop_all()
        shutil.rmtree(self.work, ignore_errors=True)


def _pkey(p):
    return str(p) if p != int(p) else str(int(p))


def main(argv):
    args = parse_args(argv)
    try:
        scn = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        print(f"{args.scenario}: {len(e.errors)} error(s)", file=sys.stderr)
        return 2
    errors = apply_overrides(scn, args)
    if not scn.proxies and not errors:
        errors.append("no proxy left to run")
    if errors:
        for line in errors:
            print(f"bench/run: {line}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(args.out or os.path.join(tempfile.gettempdir(), "revgate-bench",
                                                   f"{scn.name}-{stamp}"))
    os.makedirs(out, exist_ok=True)
    progress = Progress(quiet=args.quiet)

    need = (scn.idle.connections if scn.mode == "idle-connections" else scn.load.connections)
    need += 2 * scn.hosts if scn.hosts > 1 else 0   # many hosts: idle upstream connections
    nofile = processes.raise_nofile(2 * need + 4096)
    if scn.mode == "idle-connections":
        # the client holds one descriptor per connection; HAProxy two, within the same limit
        cap = nofile - 512
        if any(p.kind == "haproxy" for p in scn.proxies):
            cap = min(cap, configs.haproxy_maxconn(10**9, nofile) - 80)
        if scn.idle.connections > cap:
            scn.idle.connections = max(1, cap)
            progress.line(f"note: the open-files limit is {nofile} (hard): idle connections "
                          f"lowered to {scn.idle.connections:,} so that every proxy can hold them",
                          always=True)

    processes.install_signal_handlers()
    command = "bench/run " + " ".join(shlex.quote(a) for a in argv)
    state = {}

    def body():
        state["bench"] = bench = Bench(scn, args, out, progress)
        missing = bench.check_tools()
        if missing:
            for m in missing:
                print(f"bench/run: missing {m}", file=sys.stderr)
            return 2
        state["started"] = datetime.datetime.now().astimezone()
        state["info"] = machine_info(args.revgate)
        progress.line(f"bench {scn.name}: {len(scn.runs())} runs x {scn.load.rounds} rounds, "
                      f"report in {out}")
        state["results"] = bench.run()
        return None
    code = guarded("bench/run", progress, body, lambda: state.get("bench"))
    if code is not None:
        return code
    finished = datetime.datetime.now().astimezone()
    return write_report(scn, state["results"], state["info"], command, state["started"],
                        finished, out, progress)


def guarded(name, progress, body, bench):
    """Runs body() the way every entry point must: Ctrl-C (exit 128 + signal) and start or load
    failures (exit 1) reported in one line, and every process started stopped in any case
    (bench() gives the Bench, or None before there is one). Returns body()'s exit code, None
    when it wants the report written."""
    try:
        return body()
    except processes.Interrupted as e:
        processes.ignore_signals()
        progress.line(f"{name}: {e}; stopping every process it started", always=True)
        return 128 + e.signum
    except (StartError, load.WrkError, OSError, ValueError, subprocess.CalledProcessError) as e:
        processes.ignore_signals()
        progress.line(f"{name}: {e}", always=True)
        return 1
    finally:
        processes.ignore_signals()   # a second Ctrl-C must not cut the cleanup short
        if bench() is not None:
            bench().cleanup()


def write_report(scn, results, info, command, started, finished, out, progress, extra=None):
    """report.json, the pictures and report.md; 1 when gnuplot failed, else 0. `extra`: more
    top-level report.json entries (bench/reload_scale.sh's reloads without load)."""
    code = 0
    data = report.build(scn, results, info, command, started, finished)
    data.update(extra or {})
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    try:
        pictures = report.plots(data, out)
    except report.PlotError as e:
        progress.line(f"bench/run: gnuplot: {e}", always=True)
        pictures, code = [], 1
    report.write_markdown(data, out, pictures)
    progress.line(report.summary_lines(data))
    progress.line(f"report: {os.path.join(out, 'report.md')}")
    return code
