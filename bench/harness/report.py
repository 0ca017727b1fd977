"""The report: report.json (every figure, per round too), report.md (tables and pictures) and the
pictures drawn by gnuplot as PNG and SVG:

    rps.png/.svg       requests/s per proxy: median over rounds, bar = min..max
    latency.png/.svg   latency p50/p90/p99/p99.9 per proxy (medians over rounds)
    split.png/.svg     observed share per revision against the configured one, and the deviation
    idle.png/.svg      (idle-connections) resident memory per idle keep-alive connection
    (mode: reload)     rps: req/s per window kind (steady, during reloads, during scrapes) per
                       proxy; latency: p50/p99 per window kind; timeline: req/s per 100 ms over
                       each proxy's first run, reload windows shaded
"""

import os
import statistics
import subprocess

from .reloads import KIND_ORDER, ms_summary
from .scenario import every_label

PERCENTILE_KEYS = ("50", "90", "99", "99.9")
_SIZES = {}   # picture name -> height in pixels, when not 560
COLORS = {"revgate": "#3366aa", "nginx": "#339955", "haproxy": "#dd8833"}
SERIES = ["#777777", "#3366aa", "#339955", "#dd8833", "#aa3377", "#66ccee", "#bbbb33", "#ee6677"]


class PlotError(Exception):
    pass


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _label(proxy_name, mode, modes):
    if (mode in ("keepalive", "idle") or mode.startswith("every ")) and len(modes) <= 1:
        return proxy_name
    return f"{proxy_name} [{mode}]"


KIND_TITLES = {"steady": "steady", "reload": "during reloads", "metrics": "during /metrics scrapes",
               "services": "during ServiceList scrapes"}


def _reload_summary(rounds):
    """A reload run's summary over rounds: medians of rates and percentiles, sums of requests,
    failures and reloads, the peaks of memory."""
    def med(f):
        return _median([f(r) for r in rounds])

    kinds = [k for k in KIND_ORDER if any(k in r["by_kind"] for r in rounds)]
    by_kind = {}
    for k in kinds:
        rs = [r["by_kind"][k] for r in rounds if k in r["by_kind"]]
        by_kind[k] = {
            "rps": _median([x["rps"] for x in rs]),
            "backend_rps": _median([x["backend_rps"] for x in rs]),
            "latency_ms": {p: _median([x["latency_ms"][p] for x in rs])
                           for p in (*PERCENTILE_KEYS, "max")},
            "requests": sum(x["requests"] for x in rs),
            "non_2xx_3xx": sum(x["non_2xx_3xx"] for x in rs),
            "seconds": sum(x["seconds"] for x in rs),
            "windows": sum(x["windows"] for x in rs),
            "hwm_kib": max(x["hwm_kib"] for x in rs),
            "rss_peak_kib": max(x["rss_peak_kib"] for x in rs),
        }
    requests = sum(r["requests"] for r in rounds)
    socket_errors = sum(r["errors"]["socket"] for r in rounds)
    non2xx = sum(r["errors"]["non_2xx_3xx"] for r in rounds)
    detail = {}
    for r in rounds:
        for k, v in r["errors"]["detail"].items():
            detail[k] = detail.get(k, 0) + int(v)
    rl = [r["reloads"] for r in rounds]
    mem = [r["memory"] for r in rounds]

    def mx(key):
        vals = [m[key] for m in mem if m.get(key) is not None]
        return max(vals) if vals else None
    scrapes = {}
    for k in ("metrics", "services"):
        ss = [r["scrapes"][k] for r in rounds if k in r.get("scrapes", {})]
        if ss:
            scrapes[k] = {"path": ss[0]["path"], "count": sum(x["count"] for x in ss),
                          "ms_50": _median([x["ms"]["50"] for x in ss]),
                          "ms_max": max(x["ms"]["max"] for x in ss),
                          "bytes": _median([x["bytes"] for x in ss]),
                          "non_200": sum(x["non_200"] for x in ss)}
    return {
        "every_ms": rl[0]["every_ms"] if rl else None,
        "trigger": rl[0]["trigger"] if rl else None,
        "by_kind": by_kind,
        "rps_ratio": med(lambda r: r["rps_ratio"]),
        "p99_ratio": med(lambda r: r["p99_ratio"]),
        "scrape_p99_ratio": {k: med(lambda r, k=k: r["scrape_p99_ratio"].get(k))
                             for k in ("metrics", "services") if k in by_kind},
        "rps": _stats([r["rps"] for r in rounds]),
        "latency_ms": {k: _median([r["latency_ms"][k] for r in rounds]) for k in PERCENTILE_KEYS},
        "requests": requests,
        "errors": {"socket": socket_errors, "non_2xx_3xx": non2xx, "detail": detail,
                   "failed": socket_errors + non2xx,
                   "rate_pct": 100.0 * (socket_errors + non2xx) / requests if requests else None},
        "reloads": {
            "sent": sum(x["sent"] for x in rl), "applied": sum(x["applied"] for x in rl),
            "by_file_watch": (sum(x["by_file_watch"] for x in rl)
                              if rl and rl[0].get("by_file_watch") is not None else None),
            "refused": sum(x["refused"] for x in rl),
            "failed_answers": sum(x["failed_answers"] for x in rl),
            "first_error": next((x["first_error"] for x in rl if x["first_error"]), None),
            "latency_ms": ms_summary([v for x in rl for v in x["latencies_ms"]])
            if rl and rl[0]["trigger"] == "post" else None,
            "command_ms": ms_summary([v for x in rl for v in x["latencies_ms"]])
            if rl and rl[0]["trigger"] == "nginx -s reload" else None,
            "interval_ms": _median([x["interval_ms"]["mean"] for x in rl if x["interval_ms"]]),
        },
        "startup_s": _stats([r["startup_s"] for r in rounds]),
        "memory": {"rss_start_kib": _median([m["rss_start_kib"] for m in mem]),
                   "steady_peak_kib": mx("steady_peak_kib"),
                   "reload_peak_kib": mx("reload_peak_kib"),
                   "extra_kib": mx("extra_kib"),
                   "steady_sampled_peak_kib": mx("steady_sampled_peak_kib"),
                   "reload_sampled_peak_kib": mx("reload_sampled_peak_kib"),
                   "after_scrapes_kib": mx("after_scrapes_kib"),
                   "rss_end_kib": _median([m["rss_end_kib"] for m in mem])},
        "scrapes": scrapes,
        "proxy_cpu_seconds_per_10k": med(lambda r: r["proxy_cpu_seconds_per_10k"]),
        "proxy_cpu_pct": med(lambda r: r["proxy_cpu_pct"]),
        "backend_cpu_pct": med(lambda r: r["backend_cpu_pct"]),
        "wrk_cpu_pct": med(lambda r: r["wrk_cpu_pct"]),
        "host_busy_pct": med(lambda r: r["host_busy_pct"]),
    }


def build(scn, results, info, command, started, finished):
    """report.json's content from the per-round results {(proxy name, mode): [round, ...]}."""
    configured = scn.configured_split()
    proxies = {p.name: p for p in scn.proxies}
    runs = []
    for (name, mode), rounds in results.items():
        p = proxies[name]
        modes = ([f"every {every_label(e)}" for e in scn.reload.every_s]
                 if scn.mode == "reload" else scn.load.modes)
        run = {
            "label": _label(name, mode, modes),
            "proxy": name, "kind": p.kind, "mode": mode, "workers": p.workers,
            "policy": p.policy(), "split_policy": p.split_policy,
            "load_balancer": p.load_balancer,
            "hash_on": {p.hash_on.kind: p.hash_on.name} if p.hash_on else None,
            "rounds": rounds,
        }
        if scn.mode == "reload":
            run["summary"] = _reload_summary(rounds)
        elif mode == "idle":
            run["summary"] = {
                "connections": rounds[0]["connections"] if rounds else 0,
                "bytes_per_connection": _stats([r["bytes_per_connection"] for r in rounds]),
                "rss_before_kib": _median([r["rss_before_kib"] for r in rounds]),
                "rss_after_kib": _median([r["rss_after_kib"] for r in rounds]),
                "proxy_peak_rss_kib": max((r["peak_rss_kib"] for r in rounds), default=None),
                "closed_by_server": sum(r["closed_by_server"] for r in rounds),
            }
        else:
            counts = {}
            for r in rounds:
                for rev, n in r["revisions"].items():
                    counts[rev] = counts.get(rev, 0) + n
            total = sum(counts.values())
            observed = {rev: 100.0 * n / total for rev, n in counts.items()} if total else {}
            deviation = max((abs(observed.get(rev, 0.0) - pct) for rev, pct in configured.items()),
                            default=0.0) if total else None
            requests = sum(r["requests"] for r in rounds)
            socket_errors = sum(r["errors"]["socket"] for r in rounds)
            non2xx = sum(r["errors"]["non_2xx_3xx"] for r in rounds)
            run["summary"] = {
                "rps": _stats([r["rps"] for r in rounds]),
                "latency_ms": {k: _median([r["latency_ms"][k] for r in rounds])
                               for k in PERCENTILE_KEYS},
                "requests": requests,
                "errors": {"socket": socket_errors, "non_2xx_3xx": non2xx,
                           "rate_pct": 100.0 * (socket_errors + non2xx) / requests
                           if requests else None},
                "split": {"requests": total, "configured": configured, "observed": observed,
                          "counts": counts, "max_deviation_points": deviation},
                "proxy_cpu_seconds_per_10k": _median(
                    [r["proxy_cpu_seconds_per_10k"] for r in rounds]),
                "proxy_peak_rss_kib": max((r["proxy_peak_rss_kib"] for r in rounds), default=None),
                "proxy_cpu_pct": _median([r["proxy_cpu_pct"] for r in rounds]),
                "backend_cpu_pct": _median([r["backend_cpu_pct"] for r in rounds]),
                "wrk_cpu_pct": _median([r["wrk_cpu_pct"] for r in rounds]),
                "host_busy_pct": _median([r["host_busy_pct"] for r in rounds]),
                "sticky_users_consistent_pct": _median(
                    [r["stickiness"]["consistent_pct"] for r in rounds if r.get("stickiness")]),
            }
        runs.append(run)
    return {
        "scenario": {
            "name": scn.name, "description": scn.description, "file": scn.path,
            "mode": scn.mode, "tls": scn.tls, "hosts": scn.hosts,
            "revisions": [{"name": r.name, "percent": r.percent, "instances": r.instances,
                           "backends": r.describe(),
                           "instance_specs": [{"latency": i.latency.describe(),
                                               "error_rate": i.error_rate, "threads": i.threads}
                                              for i in r.specs]} for r in scn.revisions],
            "load": {"connections": scn.load.connections, "threads": scn.load.threads,
                     "duration_s": scn.load.duration_s, "warmup_s": scn.load.warmup_s,
                     "rounds": scn.load.rounds, "modes": scn.load.modes, "users": scn.load.users,
                     "request_hosts": scn.load.request_hosts or scn.hosts, "path": scn.load.path},
            "idle": {"connections": scn.idle.connections},
            "reload": ({"every_s": scn.reload.every_s, "trigger": scn.reload.trigger,
                        "change": scn.reload.change, "weights": scn.reload.weights,
                        "window_s": scn.reload.window_s, "cycle": scn.reload.cycle}
                       if scn.mode == "reload" else None),
        },
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": info,
        "runs": runs,
        "ratios": ratios(runs) if scn.mode != "reload" else [],
    }


def _same_policy(a, b):
    return (a["split_policy"], a["load_balancer"], a["hash_on"], a["mode"]) == \
        (b["split_policy"], b["load_balancer"], b["hash_on"], b["mode"])


def ratios(runs):
    """revgate / peer, for each revgate run and each nginx/HAProxy run of the same policy and
    load mode."""
    out = []
    for rg in runs:
        if rg["kind"] != "revgate":
            continue
        for peer in runs:
            if peer["kind"] == "revgate" or not _same_policy(rg, peer):
                continue
            a, b = rg["summary"], peer["summary"]
            entry = {"revgate": rg["label"], "peer": peer["label"], "mode": rg["mode"]}
            if rg["mode"] == "idle":
                x, y = a["bytes_per_connection"], b["bytes_per_connection"]
                entry["bytes_per_connection"] = _div(x and x["median"], y and y["median"])
            else:
                entry["rps"] = _div(a["rps"] and a["rps"]["median"], b["rps"] and b["rps"]["median"])
                entry["p99"] = _div(a["latency_ms"]["99"], b["latency_ms"]["99"])
                entry["cpu_per_request"] = _div(a["proxy_cpu_seconds_per_10k"],
                                                b["proxy_cpu_seconds_per_10k"])
                entry["peak_rss"] = _div(a["proxy_peak_rss_kib"], b["proxy_peak_rss_kib"])
            out.append(entry)
    return out


def _div(a, b):
    if a is None or not b:
        return None
    return a / b


# ------------------------------------------------------------------------------------ pictures

def _q(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write("\t".join(_q(x) if isinstance(x, str) else repr(float(x)) for x in row) + "\n")


def _color(kind):
    return int(COLORS.get(kind, "#777777")[1:], 16)


def _bars_script(title, ylabel, data, fmt):
    """Bars with min..max error bars and the value above; data columns: label median min max
    color."""
    return f"""set title {_q(title)}
set ylabel {_q(ylabel)}
set style fill solid 0.85 border rgb "#333333"
set boxwidth 0.6
set grid ytics lc rgb "#dddddd"
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set xtics nomirror
set key off
plot {_q(data)} using 0:2:(0.6):5:xtic(1) with boxes lc rgb variable, \\
     '' using 0:2:3:4 with yerrorbars lc rgb "#222222" pt -1 lw 1.5, \\
     '' using 0:4:(sprintf({_q(fmt)}, $2)) with labels offset 0,0.8 font ",9"
"""


def plots(data, out):
    """Writes the .dat/.gp files and renders every picture as PNG and SVG; returns the names."""
    tmp = os.path.join(out, "plots")
    os.makedirs(tmp, exist_ok=True)
    scn = data["scenario"]
    runs = data["runs"]
    rounds = scn["load"]["rounds"]
    scripts = {}
    if scn["mode"] == "reload":
        scripts = _reload_plots(data, tmp)
    elif scn["mode"] == "idle-connections":
        rows = []
        for r in runs:
            s = r["summary"]["bytes_per_connection"]
            if s:
                rows.append((r["label"], s["median"], s["min"], s["max"], _color(r["kind"])))
        _write(os.path.join(tmp, "idle.dat"), rows)
        scripts["idle"] = _bars_script(
            f"{scn['name']}: resident memory per idle keep-alive connection "
            f"({scn['idle']['connections']:,} connections)", "bytes per connection",
            os.path.join(tmp, "idle.dat"), "%.0f B")
    else:
        rows = []
        for r in runs:
            s = r["summary"]["rps"]
            if s:
                rows.append((r["label"], s["median"], s["min"], s["max"], _color(r["kind"])))
        _write(os.path.join(tmp, "rps.dat"), rows)
        scripts["rps"] = _bars_script(
            f"{scn['name']}: requests/s (median of {rounds} round(s), bar = min..max)",
            "requests/s", os.path.join(tmp, "rps.dat"), "%.0f")

        rows = [(r["label"], *[r["summary"]["latency_ms"][k] or 0 for k in PERCENTILE_KEYS])
                for r in runs]
        _write(os.path.join(tmp, "latency.dat"), rows)
        lat = os.path.join(tmp, "latency.dat")
        palette = ["#99bbdd", "#5588bb", "#335588", "#112244"]
        plot = ", \\\n     ".join(
            f"{_q(lat) if i == 0 else chr(39) * 2} using {i + 2}{':xtic(1)' if i == 0 else ''} "
            f"title {_q('p' + k)} lc rgb {_q(palette[i])}"
            for i, k in enumerate(PERCENTILE_KEYS))
        scripts["latency"] = f"""set title {_q(f"{scn['name']}: latency percentiles (ms, median of {rounds} round(s))")}
set ylabel "milliseconds"
set style data histogram
set style histogram clustered gap 1.5
set style fill solid 0.9 border rgb "#333333"
set grid ytics lc rgb "#dddddd"
set yrange [0:*]
set key top left
plot {plot}
"""
        revs = list(scn["revisions"])
        names = [rv["name"] for rv in revs]
        extra = sorted({k for r in runs for k in r["summary"]["split"]["observed"]} - set(names))
        rows = []
        for name in names + extra:
            conf = next((rv["percent"] for rv in revs if rv["name"] == name), 0)
            obs = [r["summary"]["split"]["observed"].get(name, 0.0) for r in runs]
            rows.append((name, conf, *obs, *[o - conf for o in obs]))
        _write(os.path.join(tmp, "split.dat"), rows)
        sp = os.path.join(tmp, "split.dat")
        n = len(runs)
        worst = max([abs(x) for row in rows for x in row[2 + n:]] + [0.0])
        span = max(0.6, worst * 1.25)
        share = [f"{_q(sp)} using 2:xtic(1) title 'configured' lc rgb {_q(SERIES[0])}"]
        dev = []
        for i, r in enumerate(runs):
            color = SERIES[1 + i % (len(SERIES) - 1)]
            share.append(f"'' using {3 + i} title {_q(r['label'])} lc rgb {_q(color)}")
            dev.append(f"{_q(sp) if i == 0 else chr(39) * 2} using {3 + n + i}"
                       f"{':xtic(1)' if i == 0 else ''} title {_q(r['label'])} lc rgb {_q(color)}")
        scripts["split"] = f"""set multiplot layout 1,2 title {_q(f"{scn['name']}: observed split per revision against the configured one")}
set style data histogram
set style histogram clustered gap 1.5
set style fill solid 0.9 border rgb "#333333"
set grid ytics lc rgb "#dddddd"
set title "share of responses (%)"
set yrange [0:*]
set key top right
plot {", ".join(share)}
set title "observed - configured (percentage points; dashed: +-0.5)"
set yrange [{-span}:{span}]
set key off
set xzeroaxis lt -1
set arrow 1 from graph 0, first 0.5 to graph 1, first 0.5 nohead dt 2 lc rgb "#aa0000"
set arrow 2 from graph 0, first -0.5 to graph 1, first -0.5 nohead dt 2 lc rgb "#aa0000"
plot {", ".join(dev)}
unset multiplot
"""
    names = []
    for name, body in scripts.items():
        h = _SIZES.get(name, 560)
        for ext, term in (("png", f'pngcairo size 1100,{h} noenhanced font "Sans,10"'),
                          ("svg", f'svg size 1100,{h} dynamic noenhanced font "Sans,10" background "#ffffff"')):
            target = os.path.join(out, f"{name}.{ext}")
            gp = os.path.join(tmp, f"{name}.{ext}.gp")
            with open(gp, "w") as f:
                f.write(f"set terminal {term}\nset output {_q(target)}\n"
                        "set datafile separator \"\\t\"\n" + body)
            try:
                r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
            except OSError as e:
                raise PlotError(f"cannot run gnuplot: {e.strerror}") from None
            if r.returncode != 0 or not os.path.exists(target) or os.path.getsize(target) == 0:
                raise PlotError(f"{gp}: {r.stderr.strip()[-1500:]}")
            names.append(f"{name}.{ext}")
    return names


def _reload_plots(data, tmp):
    scn, runs = data["scenario"], data["runs"]
    kinds = [k for k in KIND_ORDER if any(k in r["summary"]["by_kind"] for r in runs)]
    palette = ["#999999", "#cc4444", "#3366aa", "#339955"]
    scripts = {}

    def clustered(name, title, ylabel, value):
        path = os.path.join(tmp, f"{name}.dat")
        _write(path, [(r["label"], *[value(r["summary"]["by_kind"].get(k)) or 0 for k in kinds])
                      for r in runs])
        plot = ", \\\n     ".join(
            f"{_q(path) if i == 0 else chr(39) * 2} using {i + 2}{':xtic(1)' if i == 0 else ''} "
            f"title {_q(KIND_TITLES[k])} lc rgb {_q(palette[KIND_ORDER.index(k)])}"
            for i, k in enumerate(kinds))
        scripts[name] = f"""set title {_q(title)}
set ylabel {_q(ylabel)}
set style data histogram
set style histogram clustered gap 1.5
set style fill solid 0.9 border rgb "#333333"
set grid ytics lc rgb "#dddddd"
set yrange [0:*]
set key top left
plot {plot}
"""
    clustered("rps", f"{scn['name']}: requests/s per window kind (one wrk run each; medians of "
              f"{scn['load']['rounds']} round(s))", "requests/s", lambda k: k and k["rps"])
    clustered("latency", f"{scn['name']}: latency p99 per window kind (ms)", "milliseconds",
              lambda k: k and k["latency_ms"]["99"])
    panels = []
    for i, r in enumerate(runs):
        first = r["rounds"][0] if r["rounds"] else None
        if not first:
            continue
        path = os.path.join(tmp, f"timeline-{i}.dat")
        _write(path, first["timeline"])
        shade = ["unset object"]
        for j, w in enumerate(w for w in first["windows"] if w["kind"] != "steady"):
            color = palette[KIND_ORDER.index(w["kind"])]
            shade.append(f"set object {j + 1} rect from {w['start_s']}, graph 0 to {w['end_s']}, "
                         f"graph 1 fc rgb {_q(color)} fs transparent solid 0.15 noborder behind")
        panels += [f"set title {_q(r['label'])}", *shade,
                   f"plot {_q(path)} using 1:2 notitle with lines lw 1.2 "
                   f"lc rgb {_q(SERIES[1 + i % (len(SERIES) - 1)])}"]
    if panels:
        n = len([r for r in runs if r["rounds"]])
        scripts["timeline"] = "\n".join([
            f"set multiplot layout {n},1 title "
            + _q(scn["name"] + ": requests/s per 100 ms over each proxy's first run (shaded: "
                 "reload windows red, scrape windows blue/green)"),
            'set xlabel "seconds into the measured run"', 'set ylabel "requests/s"',
            'set grid lc rgb "#dddddd"', "set yrange [0:*]", *panels, "unset multiplot", ""])
        _SIZES["timeline"] = max(560, 190 * n)
    return scripts


# ------------------------------------------------------------------------------------- markdown

def _f(v, fmt="{:.2f}", none="-"):
    return none if v is None else fmt.format(v)


def _ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def write_markdown(data, out, pictures):
    scn, m = data["scenario"], data["machine"]
    L = scn["load"]
    lines = [f"# revgate bench: {scn['name']}", ""]
    if scn["description"]:
        lines += [scn["description"].strip(), ""]
    lines += [
        f"- command: `{data['command']}`",
        f"- when: {data['started']} to {data['finished']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"Linux {m['kernel']}; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}",
        f"- versions: {m['revgate']}; {m['nginx']}; {m['haproxy']}; {m['wrk']}",
        "- revisions (backends are `revgate echo` processes): " + "; ".join(
            f"{r['name']} {r['percent']}% ({r['backends']})" for r in scn["revisions"]),
    ]
    if scn["hosts"] > 1:
        lines.append(f"- hosts: {scn['hosts']:,} services and domain mappings; requests spread "
                     f"over {L['request_hosts']:,} of them")
    if scn["mode"] == "reload":
        lines += _reload_markdown(data)
    elif scn["mode"] == "idle-connections":
        lines += [f"- load: {scn['idle']['connections']:,} keep-alive connections opened, one "
                  f"request each, then held idle; resident memory (VmRSS of every proxy process) "
                  f"before and after; {L['rounds']} round(s)", ""]
        lines += ["| proxy | workers | connections | RSS before MiB | RSS after MiB | "
                  "bytes per idle connection (median) | min..max | closed by proxy |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in data["runs"]:
            s = r["summary"]
            b = s["bytes_per_connection"]
            lines.append(
                f"| {r['label']} | {r['workers']} | {s['connections']:,} | "
                f"{_f(s['rss_before_kib'] and s['rss_before_kib'] / 1024, '{:.1f}')} | "
                f"{_f(s['rss_after_kib'] and s['rss_after_kib'] / 1024, '{:.1f}')} | "
                f"{_f(b and b['median'], '{:,.0f}')} | "
                f"{_f(b and b['min'], '{:,.0f}')}..{_f(b and b['max'], '{:,.0f}')} | "
                f"{s['closed_by_server']} |")
        if data["ratios"]:
            lines += ["", "revgate / peer, bytes per idle connection (below 1 is less memory):", ""]
            for x in data["ratios"]:
                lines.append(f"- {x['revgate']} / {x['peer']}: {_ratio(x['bytes_per_connection'])}")
    else:
        lines.append(
            f"- load: wrk {L['connections']} connections, {L['threads']} thread(s), "
            f"{L['duration_s']:g} s measured after {L['warmup_s']:g} s warm-up, {L['rounds']} "
            f"round(s) alternating the proxies; modes: {', '.join(L['modes'])}"
            + (" (close: `Connection: close`, a new connection"
               + (" and TLS handshake" if scn["tls"] else "") + " per request)"
               if "close" in L["modes"] else "")
            + ("; HTTPS (TLS terminated by the proxy)" if scn["tls"] else "")
            + (f"; a user id from {L['users']:,} in the sticky key of each request"
               if L["users"] else ""))
        lines += ["", "## Throughput and latency", "",
                  "Medians over rounds; spread = min..max of req/s. CPU is the proxy's own "
                  "(utime+stime of all its processes) during the measured run; peak RSS is "
                  "VmHWM summed over its processes.", "",
                  "| proxy | policy | workers | req/s | spread | p50 ms | p90 ms | p99 ms | "
                  "p99.9 ms | errors | proxy CPU s / 10k req | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in data["runs"]:
            s = r["summary"]
            rps = s["rps"]
            lat = s["latency_ms"]
            err = s["errors"]
            errors = err["socket"] + err["non_2xx_3xx"]
            errors_text = f"{errors:,} ({err['rate_pct']:.2f}%)" if errors else "0"
            lines.append(
                f"| {r['label']} | {r['policy']} | {r['workers']} | "
                f"{_f(rps and rps['median'], '{:,.0f}')} | "
                f"{_f(rps and rps['min'], '{:,.0f}')}..{_f(rps and rps['max'], '{:,.0f}')} | "
                + " | ".join(_f(lat[k], "{:.3f}") for k in PERCENTILE_KEYS)
                + f" | {errors_text} | "
                f"{_f(s['proxy_cpu_seconds_per_10k'], '{:.3f}')} | "
                f"{_f(s['proxy_peak_rss_kib'] and s['proxy_peak_rss_kib'] / 1024, '{:.1f}')} |")
        if data["ratios"]:
            lines += ["", "## revgate against the others", "",
                      "revgate / peer: req/s above 1 is faster; p99, CPU per request and peak "
                      "RSS below 1 are better.", "",
                      "| revgate | peer | req/s | p99 | CPU per request | peak RSS |",
                      "|---|---|---|---|---|---|"]
            for x in data["ratios"]:
                lines.append(f"| {x['revgate']} | {x['peer']} | {_ratio(x['rps'])} | "
                             f"{_ratio(x['p99'])} | {_ratio(x['cpu_per_request'])} | "
                             f"{_ratio(x['peak_rss'])} |")
        sticky = any(r["hash_on"] for r in data["runs"])
        lines += ["", "## Split", "",
                  "Responses per revision as wrk saw them (the backends' `X-Revision` header; "
                  "`(none)` = an answer the proxy made itself), summed over rounds."
                  + (" Sticky: the share of 200 users (3 requests each, interleaved) whose "
                     "requests all reached one revision." if sticky else ""), "",
                  "| proxy | requests | " + " | ".join(
                      f"{r['name']} (configured {r['percent']}%)" for r in scn["revisions"])
                  + " | max deviation (points) |" + (" sticky users |" if sticky else ""),
                  "|---|---|" + "---|" * len(scn["revisions"]) + "---|"
                  + ("---|" if sticky else "")]
        for r in data["runs"]:
            sp = r["summary"]["split"]
            cells = [_f(sp["observed"].get(rv["name"], 0.0), "{:.2f}%") for rv in scn["revisions"]]
            none = sp["observed"].get("(none)")
            lines.append(f"| {r['label']} | {sp['requests']:,} | " + " | ".join(cells)
                         + f" | {_f(sp['max_deviation_points'], '{:.2f}')}"
                         + (f" ({none:.2f}% without X-Revision)" if none else "") + " |"
                         + (f" {_f(r['summary']['sticky_users_consistent_pct'], '{:.1f}%')} |"
                            if sticky else ""))
        lines += ["", "## Saturation check", "",
                  "Proxy, backends and wrk share the machine's cores. CPU in % of one core, "
                  "medians over rounds; a host near 100% x cores means the figures measure the "
                  "machine as much as the proxy, so compare ratios from one run.", "",
                  "| proxy | proxy CPU % | backends CPU % | wrk CPU % | host busy % |",
                  "|---|---|---|---|---|"]
        for r in data["runs"]:
            s = r["summary"]
            lines.append(f"| {r['label']} | {_f(s['proxy_cpu_pct'], '{:.0f}')} | "
                         f"{_f(s['backend_cpu_pct'], '{:.0f}')} | {_f(s['wrk_cpu_pct'], '{:.0f}')} | "
                         f"{_f(s['host_busy_pct'], '{:.0f}')} |")
    png = [p for p in pictures if p.endswith(".png")]
    if png:
        lines += ["", "## Pictures", "", "(SVG versions beside the PNGs.)", ""]
        for p in png:
            lines += [f"![{p[:-4]}]({p})", ""]
    lines += ["", "## Files", "",
              "`report.json` (every figure, each round too), `configs/` (the generated proxy "
              "configs and wrk Lua scripts), `logs/` (every process's output), `plots/` (gnuplot "
              "data and scripts).", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


# bench/reload_scale.sh's targets for a reload of 10,000 services and mappings
TARGET_RELOAD_MS = 300.0
TARGET_EXTRA_MIB = 100.0
TARGET_STARTUP_S = 1.0


def _kmib(kib):
    return kib / 1024.0


def unloaded_verdicts(u):
    lines = []
    if u["latency_ms"]:
        lat = u["latency_ms"]
        lines.append(f"reload latency p50 {lat['50']:.1f} ms, p99 {lat['99']:.1f} ms, max "
                     f"{lat['max']:.1f} ms: target < {TARGET_RELOAD_MS:g} ms "
                     + ("met" if lat["max"] < TARGET_RELOAD_MS else "NOT met"))
    if u["extra_kib_max"] is not None:
        over = _kmib(u["over_start_kib_max"])
        lines.append(f"memory while both tables exist: peak up to {_kmib(u['peak_kib_max']):.1f} "
                     f"MiB, {over:.1f} MiB over the RSS after start-up and up to "
                     f"{_kmib(u['extra_kib_max']):.1f} MiB over the RSS just before a reload: "
                     f"target < {TARGET_EXTRA_MIB:g} MiB extra "
                     + ("met" if over < TARGET_EXTRA_MIB else "NOT met")
                     + " (judged on the first: memory freed by one reload is partly kept by the "
                     "allocator and reused by the next)")
    lines.append(f"start-up to ready {u['startup_s']:.3f} s: target < {TARGET_STARTUP_S:g} s "
                 + ("met" if u["startup_s"] < TARGET_STARTUP_S else "NOT met"))
    return lines


def unloaded_markdown(u):
    lines = ["## Start-up and reloads without load (bench/reload_scale.sh)", "",
             f"revgate with {u['services']:,} services and {u['domain_mappings']:,} domain "
             f"mappings (config {u['config_bytes'] / 1048576:.1f} MiB): start-up to the `ready` "
             f"line {u['startup_s']:.3f} s, RSS then {_kmib(u['startup_rss_kib']):.1f} MiB (peak "
             f"{_kmib(u['startup_hwm_kib']):.1f} MiB). Then {len(u['reloads'])} `POST /reload` in "
             "a row, no load, the file alternating between two splits of every service; peak = "
             "VmHWM while the reload ran (reset just before), extra = peak - RSS just before, "
             "over start = peak - RSS after start-up.", ""]
    lines += [f"- {v}" for v in unloaded_verdicts(u)]
    lines += ["", "| # | split | latency ms | RSS before MiB | peak MiB | extra MiB | over start "
              "MiB | RSS after MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in u["reloads"]:
        lines.append(f"| {r['n']} | {r['split']} | {r['ms']:.1f} | {_kmib(r['rss_before_kib']):.1f} | "
                     f"{_kmib(r['peak_kib']):.1f} | {_kmib(r['extra_kib']):.1f} | "
                     f"{_kmib(r['over_start_kib']):.1f} | {_kmib(r['rss_after_kib']):.1f} |")
    return lines



def _mib(kib, fmt="{:.1f}"):
    return _f(kib / 1024 if kib is not None else None, fmt)


def _reload_markdown(data):
    scn = data["scenario"]
    L, R = scn["load"], scn["reload"]
    runs = data["runs"]
    change = ("the other split, " + "/".join(str(w) for w in R["weights"]) + " (and back)"
              if R["change"] == "weights" else "the same file again")
    lines = []
    if data.get("unloaded"):
        lines += ["", *unloaded_markdown(data["unloaded"]), "", "## The run under load", ""]
    lines += [
        f"- load: wrk {L['connections']} connections, {L['threads']} thread(s), keep-alive, "
        f"{L['duration_s']:g} s measured after {L['warmup_s']:g} s warm-up, one run per proxy and "
        f"interval, {L['rounds']} round(s) alternating the proxies",
        f"- windows: {R['window_s']:g} s each, cycle {', '.join(R['cycle'])} (repeated); a "
        "window's figures come from the 50 ms slices wholly inside it (the wrk script files each "
        "response by completion time; latency = its send time echoed back by the backend)",
        f"- each reload writes {change} over the config file, then: revgate `{R['trigger']}`"
        + {"post": " (`POST /reload`, answered once every worker has the new table)",
           "sighup": " (SIGHUP)", "rename": " (the rename alone: its inotify watch)"}[R["trigger"]]
        + "; nginx `nginx -s reload`; HAProxy SIGUSR2 to its master (`-W`)",
        "", "## Throughput and latency during reloads", "",
        "Same run: steady windows against reload windows. Failed requests = wrk's socket errors "
        "(connect/read/write/timeout) + non-2xx/3xx answers over the whole measured run. Reloads "
        "done = applied according to the proxy's own log (revgate `post`: answered 200) / sent "
        "by the harness; revgate's inotify watch also sees each rename and sometimes reloads on "
        "its own first (when the next rename lands just before the next POST): counted apart.",
        "",
        "| proxy | every | reloads done / sent | steady req/s | req/s during reloads | ratio | "
        "steady p50 / p99 ms | reloading p50 / p99 ms | p99 ratio | max ms (steady / reloading) | "
        "failed requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        st, rl = s["by_kind"].get("steady"), s["by_kind"].get("reload")
        e = s["errors"]
        failed = (f"**{e['failed']:,}** ({e['socket']:,} socket: " + ", ".join(
            f"{k} {v}" for k, v in e["detail"].items() if v and k != "status")
            + f"; {e['non_2xx_3xx']:,} non-2xx)") if e["failed"] else "0"
        lat = lambda k, p: _f(k and k["latency_ms"][p], "{:.2f}")
        lines.append(
            f"| {r['label']} | {_f(s['every_ms'], '{:g} ms')} | "
            f"{s['reloads']['applied']:,} / {s['reloads']['sent']:,}"
            + (f" (+{s['reloads']['by_file_watch']} by its file watch)"
               if s["reloads"].get("by_file_watch") else "") + " | "
            f"{_f(st and st['rps'], '{:,.0f}')} | {_f(rl and rl['rps'], '{:,.0f}')} | "
            f"{_f(s['rps_ratio'], '{:.3f}')} | {lat(st, '50')} / {lat(st, '99')} | "
            f"{lat(rl, '50')} / {lat(rl, '99')} | {_f(s['p99_ratio'], '{:.2f}')} | "
            f"{lat(st, 'max')} / {lat(rl, 'max')} | {failed} |")
    lines += ["", "## Reload cost", "",
              "Reload latency: revgate's `POST /reload`, request to answer (parse, validate, "
              "compile, publish to every worker, all installed). nginx: the time of the "
              "`nginx -s reload` command (it parses the config, then signals the master; the "
              "reload itself is asynchronous). Interval achieved: mean time between two reload "
              "starts in a window. Memory: VmHWM summed over the proxy's processes, reset at each "
              "window's start; peak steady = the highest of the steady windows before any scrape "
              "window (a scrape leaves its buffer behind), peak reloading = the highest of the "
              "reload windows; extra = the most a reload window's peak exceeded the RSS at its "
              "start (for revgate: old and new route table alive at once). nginx and HAProxy: "
              "summed over master and workers, old ones included while they drain.", "",
              "| proxy | every | reload latency p50 / p99 / max ms | interval achieved ms | "
              "refused | start-up to ready s | RSS at start MiB | peak steady MiB | peak "
              "reloading MiB | extra MiB | RSS after MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        rl = s["reloads"]
        lm = rl["latency_ms"] or rl["command_ms"]
        lat = (f"{lm['50']:.1f} / {lm['99']:.1f} / {lm['max']:.1f}" if lm else "-")
        if rl["command_ms"]:
            lat += " (command)"
        m = s["memory"]
        su = s["startup_s"]
        lines.append(
            f"| {r['label']} | {_f(s['every_ms'], '{:g} ms')} | {lat} | "
            f"{_f(rl['interval_ms'], '{:.1f}')} | {rl['refused'] + rl['failed_answers']} | "
            f"{_f(su and su['median'], '{:.3f}')} | {_mib(m['rss_start_kib'])} | "
            f"{_mib(m['steady_peak_kib'])} | {_mib(m['reload_peak_kib'])} | "
            f"{_mib(m['extra_kib'])} | {_mib(m['rss_end_kib'])} |")
    errs = [(r["label"], r["summary"]["reloads"]["first_error"]) for r in runs
            if r["summary"]["reloads"]["first_error"]]
    for label, err in errs:
        lines += ["", f"{label}: first refused reload: `{err[:300]}`"]
    scraped = [r for r in runs if r["summary"]["scrapes"]]
    if scraped:
        lines += ["", "## Latency during admin scrapes", "",
                  "Same run: steady windows against windows in which the admin listener is "
                  "scraped back to back (revgate only).", "",
                  "| proxy | scrape | scrapes | scrape ms p50 / max | MiB per scrape | steady p99 "
                  "ms | p99 during scrapes ms | p99 ratio | req/s ratio | RSS after the first "
                  "scrapes MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in scraped:
            s = r["summary"]
            st = s["by_kind"].get("steady")
            for kind, sc in s["scrapes"].items():
                k = s["by_kind"].get(kind)
                lines.append(
                    f"| {r['label']} | `{sc['path']}` | {sc['count']} | {sc['ms_50']:.0f} / "
                    f"{sc['ms_max']:.0f} | {sc['bytes'] / 1048576:.1f} | "
                    f"{_f(st and st['latency_ms']['99'], '{:.2f}')} | "
                    f"{_f(k and k['latency_ms']['99'], '{:.2f}')} | "
                    f"{_f(s['scrape_p99_ratio'].get(kind), '{:.2f}')} | "
                    f"{_f(k and st and k['rps'] and st['rps'] and k['rps'] / st['rps'], '{:.3f}')} | "
                    f"{_mib(s['memory'].get('after_scrapes_kib'))} |")
    lines += ["", "## Windows", "",
              "Every window of each proxy's first round: kind, req/s (wrk's slices; the "
              "backends' own count in brackets), p99 ms, reloads (or scrapes) in it.", ""]
    for r in runs:
        if not r["rounds"]:
            continue
        cells = []
        for w in r["rounds"][0]["windows"]:
            extra = (f", {w['reloads']} reloads" if w["kind"] == "reload"
                     else f", {w['scrapes']} scrapes" if w["scrapes"] else "")
            cells.append(f"{w['kind']} {_f(w['rps'], '{:,.0f}')} "
                         f"({_f(w['backend_rps'], '{:,.0f}')}) p99 "
                         f"{_f(w['latency_ms']['99'], '{:.2f}')}{extra}")
        lines.append(f"- {r['label']}: " + "; ".join(cells))
    lines += ["", "## Saturation check", "",
              "CPU in % of one core, medians over rounds (proxy, backends and wrk share the "
              "machine's cores: compare the ratios of one run).", "",
              "| proxy | proxy CPU % | CPU s / 10k req | backends CPU % | wrk CPU % | host busy % |",
              "|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        lines.append(f"| {r['label']} | {_f(s['proxy_cpu_pct'], '{:.0f}')} | "
                     f"{_f(s['proxy_cpu_seconds_per_10k'], '{:.3f}')} | "
                     f"{_f(s['backend_cpu_pct'], '{:.0f}')} | {_f(s['wrk_cpu_pct'], '{:.0f}')} | "
                     f"{_f(s['host_busy_pct'], '{:.0f}')} |")
    return lines


def summary_lines(data):
    """A short text summary for the terminal."""
    out = []
    for r in data["runs"]:
        s = r["summary"]
        if data["scenario"]["mode"] == "reload":
            st, rl = s["by_kind"].get("steady"), s["by_kind"].get("reload")
            lat = s["reloads"]["latency_ms"]
            out.append(f"  {r['label']:<28} steady {_f(st and st['rps'], '{:>9,.0f}')} req/s, "
                       f"reloading {_f(rl and rl['rps'], '{:>9,.0f}')} req/s "
                       f"({_f(s['rps_ratio'], '{:.3f}')}x), p99 {_f(st and st['latency_ms']['99'], '{:.2f}')}"
                       f" / {_f(rl and rl['latency_ms']['99'], '{:.2f}')} ms, reloads "
                       f"{s['reloads']['applied']}/{s['reloads']['sent']}"
                       + (f" (p99 {lat['99']:.1f} ms)" if lat else "")
                       + f", failed requests {s['errors']['failed']}")
            for kind, ratio in s["scrape_p99_ratio"].items():
                out.append(f"  {'':<28} p99 during {kind} scrapes / steady: {_f(ratio, '{:.2f}')}x")
            continue
        if r["mode"] == "idle":
            b = s["bytes_per_connection"]
            out.append(f"  {r['label']:<28} {_f(b and b['median'], '{:>8,.0f}')} B per idle connection")
        else:
            rps = s["rps"]
            out.append(f"  {r['label']:<28} {_f(rps and rps['median'], '{:>10,.0f}')} req/s  "
                       f"p99 {_f(s['latency_ms']['99'], '{:.2f}')} ms  split max dev "
                       f"{_f(s['split']['max_deviation_points'], '{:.2f}')} pt")
    for x in data["ratios"]:
        if x["mode"] == "idle":
            out.append(f"  {x['revgate']} / {x['peer']}: bytes per connection "
                       f"{_ratio(x['bytes_per_connection'])}")
        else:
            out.append(f"  {x['revgate']} / {x['peer']}: req/s {_ratio(x['rps'])}, "
                       f"p99 {_ratio(x['p99'])}")
    return "\n".join(out)
