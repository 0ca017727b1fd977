"""bench/reload_scale.sh: what a reload of a large config costs revgate, in one command.

    bench/reload_scale.sh [--services 10000] [--reloads 20] [--pause 500ms] [--duration 37s]
                          [--no-load] [--out DIR] [--revgate PATH] [--quiet]

1. Start-up: two `revgate echo` backends, then revgate with a generated config of N services,
   each with its own domain mapping and a 90/10 split (the reload-10k scenario's); the time from
   the start of the process to its `ready` log line (parse, validate, compile, bind), and its
   memory then.
2. Reloads without load: `--reloads` POST /reload in a row, the file alternating between the
   90/10 and the 80/20 split of every service (written beside it, renamed over it). For each:
   the latency (request to the 200 answer: every worker has the new table), VmRSS before, the
   peak while it ran (VmHWM, reset just before through /proc/PID/clear_refs: the old and the new
   table both alive) and VmRSS after; `--pause` between two.
3. Under load (unless --no-load): the bench/scenarios/reload-10k.yaml runs (same service count;
   one per reload interval, 100 ms and 1 s): one wrk run over every host each, windows steady /
   reloading / steady / /metrics scraped back to back / steady / the ServiceList scraped back to
   back: req/s and p99 during reloads and during scrapes against steady windows of the same run.

Writes report.md / report.json (the scenario's report, with the two first parts in front) into
--out (default /tmp/revgate-bench/reload-scale-TIME) and prints a summary. The figures are
compared with the targets (a reload under 300 ms and under 100 MiB extra, start-up under 1 s)
in the summary; the exit code does not depend on them (0, or 1/2/130 when the run failed).
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time

from . import processes, reloads, runner, scenario as scenario_mod
from .report import unloaded_markdown as markdown, unloaded_verdicts as verdicts
from .processes import StartError

SCENARIO = os.path.join(runner.REPO, "bench", "scenarios", "reload-10k.yaml")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/reload_scale.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10000,
                    help="services and domain mappings (default 10000)")
    ap.add_argument("--reloads", type=int, default=20, help="reloads without load (default 20)")
    ap.add_argument("--pause", default="500ms", help="between two reloads without load")
    ap.add_argument("--duration", help="the loaded run's length (default: the scenario's)")
    ap.add_argument("--warmup", help="the loaded run's warm-up (default: the scenario's)")
    ap.add_argument("--no-load", action="store_true", help="skip the run under load")
    ap.add_argument("--scenario", default=SCENARIO, help=argparse.SUPPRESS)
    ap.add_argument("--out", help="report directory (default /tmp/revgate-bench/reload-scale-TIME)")
    ap.add_argument("--revgate", default=os.environ.get("REVGATE_BIN")
                    or os.path.join(runner.REPO, "build", "revgate"),
                    help="the revgate binary (default $REVGATE_BIN or build/revgate)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap.parse_args(argv)


def _mib(kib):
    return kib / 1024.0


def unloaded(bench, proxy, n_reloads, pause_s, progress):
    """Parts 1 and 2: start-up, then reloads in a row without load."""
    progress.update(f"starting revgate with {bench.scn.hosts:,} services")
    child, _ = bench.start_proxy(proxy, "scale")
    started = dict(bench.started)
    pid = child.pid
    out = {"services": bench.scn.hosts, "domain_mappings": bench.scn.hosts,
           "config_bytes": os.path.getsize(started["path"]),
           "startup_s": started["startup_s"],
           "startup_rss_kib": processes.status_kib([pid], "VmRSS"),
           "startup_hwm_kib": processes.status_kib([pid], "VmHWM"),
           "reloads": []}
    progress.line(f"start-up: {out['startup_s']:.3f} s to ready ({bench.scn.hosts:,} services, "
                  f"config {out['config_bytes'] / 1048576:.1f} MiB), RSS "
                  f"{_mib(out['startup_rss_kib']):.1f} MiB, "
                  f"peak {_mib(out['startup_hwm_kib']):.1f} MiB")
    admin = reloads.AdminClient(started["admin_port"])
    try:
        reloader = reloads.Reloader(bench, proxy, child, admin)
        time.sleep(pause_s)
        for i in range(n_reloads):
            split = "/".join(str(w) for w in (bench.scn.reload.weights if reloader.next == 1
                                              else [r.percent for r in bench.scn.revisions]))
            # the peak reset first: RSS read after it cannot exceed the peak read later
            # (read before it, memory given back meanwhile made the peak look lower)
            processes.reset_peak([pid])
            before = processes.status_kib([pid], "VmRSS")
            rec = reloader.once()
            peak = processes.status_kib([pid], "VmHWM")
            after = processes.status_kib([pid], "VmRSS")
            if not rec["ok"]:
                raise StartError(f"reload {i + 1}: {rec['error']}")
            row = {"n": i + 1, "split": split, "ms": rec["ms"], "generation": rec.get("generation"),
                   "rss_before_kib": before, "peak_kib": peak, "rss_after_kib": after,
                   "extra_kib": peak - before, "over_start_kib": peak - out["startup_rss_kib"]}
            out["reloads"].append(row)
            progress.line(f"reload {i + 1:>2}/{n_reloads} ({split}): {rec['ms']:8.1f} ms, RSS "
                          f"before {_mib(before):7.1f} MiB, peak {_mib(peak):7.1f} MiB "
                          f"(+{_mib(peak - before):.1f}), after {_mib(after):7.1f} MiB")
            time.sleep(pause_s)
        out["rss_end_kib"] = processes.status_kib([pid], "VmRSS")
    finally:
        admin.close()
        bench.sup.stop(child)
    ms = [r["ms"] for r in out["reloads"]]
    out["latency_ms"] = reloads.ms_summary(ms)
    out["extra_kib_max"] = max((r["extra_kib"] for r in out["reloads"]), default=None)
    out["peak_kib_max"] = max((r["peak_kib"] for r in out["reloads"]), default=None)
    out["over_start_kib_max"] = max((r["over_start_kib"] for r in out["reloads"]), default=None)
    return out


def main(argv):
    args = parse_args(argv)
    pause_s = scenario_mod.parse_duration(args.pause)
    errors = []
    if args.services < 2:
        errors.append("--services must be >= 2")
    if args.reloads < 1:
        errors.append("--reloads must be >= 1")
    if pause_s is None:
        errors.append(f"--pause wants a duration like 500ms, got {args.pause!r}")
    try:
        scn = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as e:
        errors += e.errors
        scn = None
    if scn is not None:
        scn.hosts = args.services
        scn.proxies = [p for p in scn.proxies if p.kind == "revgate"][:1]
        ns = argparse.Namespace(rounds=None, duration=args.duration, warmup=args.warmup,
                                connections=None, idle_connections=None, only=None,
                                reload_every=None)
        errors += runner.apply_overrides(scn, ns)
        if not scn.proxies:
            errors.append(f"{args.scenario}: no revgate proxy")
    if errors:
        for e in errors:
            print(f"bench/reload_scale.sh: {e}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(args.out or os.path.join(tempfile.gettempdir(), "revgate-bench",
                                                   f"reload-scale-{stamp}"))
    os.makedirs(out, exist_ok=True)
    progress = runner.Progress(quiet=args.quiet)
    processes.raise_nofile(2 * (scn.load.connections + 2 * scn.hosts) + 4096)
    processes.install_signal_handlers()
    command = "bench/reload_scale.sh " + " ".join(shlex.quote(a) for a in argv)
    state = {"results": None}

    def body():
        state["bench"] = bench = runner.Bench(scn, argparse.Namespace(revgate=args.revgate), out,
                                              progress)
        missing = bench.check_tools()
        if missing:
            for m in missing:
                print(f"bench/reload_scale.sh: missing {m}", file=sys.stderr)
            return 2
        state["started"] = datetime.datetime.now().astimezone()
        state["info"] = runner.machine_info(args.revgate)
        progress.line(f"reload scale: {scn.hosts:,} services, {args.reloads} reloads without "
                      f"load{'' if args.no_load else ', then the reload-10k run'}; report in {out}")
        progress.update("starting backends")
        bench.start_backends()
        proxy = scn.proxies[0]
        err = bench.check_config(proxy)
        if err:
            raise StartError(err)
        state["quiet"] = unloaded(bench, proxy, args.reloads, pause_s, progress)
        if not args.no_load:
            runs = scn.runs()
            results = state["results"] = {}
            for i, (p, mode) in enumerate(runs):     # one run per reload interval
                results[(p.name, mode)] = [bench.measure(p, mode, 1, i + 1, len(runs))]
        return None
    code = runner.guarded("bench/reload_scale.sh", progress, body, lambda: state.get("bench"))
    if code is not None:
        return code
    results, info, started, quiet = (state["results"], state["info"], state["started"],
                                     state["quiet"])
    finished = datetime.datetime.now().astimezone()
    code = 0
    if results is not None:
        code = runner.write_report(scn, results, info, command, started, finished, out, progress,
                                   extra={"unloaded": quiet})
    else:
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump({"command": command, "machine": info, "unloaded": quiet}, f, indent=2)
            f.write("\n")
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write("\n".join([f"# revgate reload scale: {scn.hosts:,} services", "",
                               f"- command: `{command}`",
                               f"- when: {started.isoformat(timespec='seconds')} to "
                               f"{finished.isoformat(timespec='seconds')}",
                               f"- machine: {info['cpu']}, {info['cores']} cores; "
                               f"{info['revgate']}", ""] + markdown(quiet)) + "\n")
        progress.line(f"report: {os.path.join(out, 'report.md')}")
    for v in verdicts(quiet):
        progress.line(v, always=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
