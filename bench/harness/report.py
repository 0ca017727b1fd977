"""The report: report.json (every figure, per round too), report.md (tables and pictures) and the
pictures drawn by gnuplot as PNG and SVG:

    rps.png/.svg       requests/s per proxy: median over rounds, bar = min..max
    latency.png/.svg   latency p50/p90/p99/p99.9 per proxy (medians over rounds)
    split.png/.svg     observed share per revision against the configured one, and the deviation
    idle.png/.svg      (idle-connections) resident memory per idle keep-alive connection
"""

import os
import statistics
import subprocess

PERCENTILE_KEYS = ("50", "90", "99", "99.9")
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
    if mode in ("keepalive", "idle") and len(modes) <= 1:
        return proxy_name
    return f"{proxy_name} [{mode}]"


def build(scn, results, info, command, started, finished):
    """report.json's content from the per-round results {(proxy name, mode): [round, ...]}."""
    configured = scn.configured_split()
    proxies = {p.name: p for p in scn.proxies}
    runs = []
    for (name, mode), rounds in results.items():
        p = proxies[name]
        run = {
            "label": _label(name, mode, scn.load.modes),
            "proxy": name, "kind": p.kind, "mode": mode, "workers": p.workers,
            "policy": p.policy(), "split_policy": p.split_policy,
            "load_balancer": p.load_balancer,
            "hash_on": {p.hash_on.kind: p.hash_on.name} if p.hash_on else None,
            "rounds": rounds,
        }
        if mode == "idle":
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
        },
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": info,
        "runs": runs,
        "ratios": ratios(runs),
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
    if scn["mode"] == "idle-connections":
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
        for ext, term in (("png", 'pngcairo size 1100,560 noenhanced font "Sans,10"'),
                          ("svg", 'svg size 1100,560 dynamic noenhanced font "Sans,10" background "#ffffff"')):
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
    if scn["mode"] == "idle-connections":
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


def summary_lines(data):
    """A short text summary for the terminal."""
    out = []
    for r in data["runs"]:
        s = r["summary"]
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
