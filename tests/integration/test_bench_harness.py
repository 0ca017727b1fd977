"""The load-benchmark harness behind bench/run (README "Benchmark harness").

Scenario parsing (valid files, and invalid ones whose errors name the file, line and key), the
nginx and HAProxy configs it generates (checked by `nginx -t` and `haproxy -c`), the revgate
configs (checked by `revgate check` where revgate supports the policy, by their structure where
it does not yet), a 1-second smoke run of a tiny scenario that must produce every report file,
an idle-connections run, and Ctrl-C in the middle of a run: no process is left behind; and
bench/h2.sh (h2load through revgate, nginx and HAProxy) for a second, h2c and TLS.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import uuid

import yaml

from harness import REPO, REVGATE_BIN

BENCH = os.path.join(REPO, "bench")
RUN = os.path.join(BENCH, "run")


def _import_bench_harness():
    """bench/harness as the package `bench_harness` (this directory's harness.py owns the name
    `harness`)."""
    where = os.path.join(BENCH, "harness")
    spec = importlib.util.spec_from_file_location(
        "bench_harness", os.path.join(where, "__init__.py"), submodule_search_locations=[where])
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench_harness"] = package
    spec.loader.exec_module(package)
    return package


_import_bench_harness()
from bench_harness import configs, scenario  # noqa: E402

HAVE_PEERS = all(shutil.which(t) for t in ("nginx", "haproxy"))
HAVE_LOAD = all(shutil.which(t) for t in ("nginx", "haproxy", "wrk", "gnuplot"))

TINY = """\
name: tiny
description: a two-second smoke run
revisions:
  - name: rev-a
    percent: 80
    instances: 2
  - name: rev-b
    percent: 20
    latency: {p50: 0.2ms, p99: 2ms}
proxies:
  - kind: revgate
  - kind: nginx
  - kind: haproxy
load:
  connections: 8
  duration: 1s
  warmup: 0
  rounds: 1
"""


def processes_with_token(token):
    """Pids of live processes whose environment holds REVGATE_BENCH_TEST_TOKEN=token."""
    needle = f"REVGATE_BENCH_TEST_TOKEN={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            found.append(int(name))
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Scenarios(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-test.")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, text, name="s.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def errors_of(self, text):
        with self.assertRaises(scenario.ScenarioError) as cm:
            scenario.load(self.write(text))
        return cm.exception.errors

    def test_shipped_scenarios_parse(self):
        names = sorted(os.listdir(os.path.join(BENCH, "scenarios")))
        self.assertEqual(names, ["canary-90-10.yaml", "idle-connections.yaml", "many-hosts.yaml",
                                 "observability-cost.yaml", "policies.yaml", "reload-10k.yaml",
                                 "reload.yaml", "skewed-latency.yaml", "tls.yaml"])
        os.environ["REVGATE_BASELINE"] = REVGATE_BIN  # observability-cost names a baseline build
        self.addCleanup(os.environ.pop, "REVGATE_BASELINE", None)
        by = {n[:-5]: scenario.load(os.path.join(BENCH, "scenarios", n)) for n in names}
        cost = by["observability-cost"]
        self.assertEqual([(p.name, p.binary, p.access_log) for p in cost.proxies],
                         [("baseline", REVGATE_BIN, "off"), ("revgate", None, "off"),
                          ("revgate-log-json", None, "json"), ("revgate-log-text", None, "text")])
        canary = by["canary-90-10"]
        self.assertEqual(canary.configured_split(), {"stable": 90, "canary": 10})
        self.assertEqual([p.kind for p in canary.proxies], ["revgate", "nginx", "haproxy"])
        self.assertTrue(all(p.workers == 1 for p in canary.proxies))
        self.assertEqual(by["idle-connections"].mode, "idle-connections")
        self.assertEqual(by["idle-connections"].idle.connections, 10000)
        self.assertEqual(by["many-hosts"].hosts, 10000)
        self.assertTrue(by["tls"].tls)
        self.assertEqual(by["tls"].load.modes, ["keepalive", "close"])
        sticky = [p for p in by["policies"].proxies if p.split_policy == "hash"]
        self.assertTrue(sticky and all(p.hash_on.name == "X-User" for p in sticky))
        self.assertEqual(by["policies"].load.users, 1000)
        rl = by["reload"]
        self.assertEqual(rl.mode, "reload")
        self.assertEqual([p.kind for p in rl.proxies], ["revgate", "nginx", "haproxy"])
        self.assertEqual(rl.reload.every_s, [0.1, 1.0])
        self.assertEqual((rl.reload.trigger, rl.reload.change, rl.reload.weights),
                         ("post", "weights", [80, 20]))
        self.assertEqual([m for _, m in rl.runs()][:2], ["every 100ms", "every 1s"])
        self.assertEqual(rl.alternate().configured_split(), {"stable": 80, "canary": 20})
        big = by["reload-10k"]
        self.assertEqual(big.hosts, 10000)
        self.assertEqual(big.reload.cycle, ["steady", "reload", "steady", "metrics", "steady",
                                            "services"])
        self.assertGreaterEqual(big.reload.windows(big.load.duration_s), 6)
        self.assertEqual(big.reload.every_s, [0.1, 1.0])
        skewed = by["skewed-latency"]
        self.assertIn("LEAST_REQUEST", [p.load_balancer for p in skewed.proxies])
        stable = skewed.revisions[0]
        self.assertEqual(stable.instances, 3)
        self.assertEqual([i.latency.p50_ms for i in stable.specs], [1.0, 1.0, 15.0])

    def test_defaults_and_value_forms(self):
        s = scenario.load(self.write("""\
            revisions:
              - {name: a, percent: 100, latency: 2ms, errorRate: 0.01}
            proxies:
              - kind: revgate
              - kind: revgate
                name: sticky
                splitPolicy: hash
                hashOn: {cookie: session}
                loadBalancer: LEAST_REQUEST
            load: {duration: 1500ms, warmup: 0}
            """))
        self.assertEqual(s.name, "s")
        self.assertEqual(s.load.duration_s, 1.5)
        self.assertEqual(s.load.warmup_s, 0.0)
        self.assertEqual(s.load.rounds, 3)
        self.assertEqual(s.load.users, 1000)           # a hash policy: a user population
        self.assertEqual(s.revisions[0].latency.echo_args(), ["--delay-ms", "2"])
        self.assertEqual(s.revisions[0].specs[0].error_rate, 0.01)
        self.assertEqual([p.name for p in s.proxies], ["revgate", "sticky"])
        self.assertEqual(s.proxies[1].hash_on, scenario.HashOn("cookie", "session"))
        self.assertEqual(s.sticky_keys(), ([], ["session"]))

    def test_invalid_values_name_the_key_and_line(self):
        errors = self.errors_of("""\
            revisions:
              - name: a
                percent: 90
              - name: b
                percent: 120
            proxies:
              - kind: revgate
            """)
        self.assertIn("s.yaml:5: revisions[1].percent: must be an integer from 0 to 100, got 120",
                      errors)

    def test_percents_must_sum_to_100(self):
        errors = self.errors_of("""\
            revisions:
              - {name: a, percent: 90}
              - {name: b, percent: 5}
            proxies: [{kind: nginx}]
            """)
        self.assertEqual(errors, ["s.yaml:2: revisions: the percents must sum to 100, got 95"])

    def test_unknown_keys_are_typos_with_a_suggestion(self):
        errors = self.errors_of("""\
            revisions:
              - {name: a, percent: 100}
            proxies:
              - kind: revgate
                splitpolicy: random
            laod: {}
            """)
        self.assertTrue(any(e.startswith("s.yaml:5: proxies[0].splitpolicy: unknown key (did you "
                                         "mean splitPolicy?)") for e in errors), errors)
        self.assertTrue(any(e.startswith("s.yaml:6: laod: unknown key (did you mean load?)")
                            for e in errors), errors)

    def test_every_error_of_a_file_in_one_pass(self):
        errors = self.errors_of("""\
            mode: stress
            revisions:
              - name: Bad_Name
                percent: 100
                latency: {p50: 20ms, p99: 2ms}
            proxies:
              - kind: envoy
              - kind: revgate
                splitPolicy: hash
            load:
              duration: ten seconds
              modes: [keepalive, pipelined]
            """)
        text = "\n".join(errors)
        for key in ("mode: must be one of throughput, idle-connections",
                    "revisions[0].name: must be a DNS-1123 label",
                    "revisions[0].latency.p99: must be a latency >= p50",
                    "proxies[0].kind: must be one of revgate, nginx, haproxy, got 'envoy'",
                    "proxies[1].hashOn: required with splitPolicy: hash",
                    "load.duration: must be a duration like 500ms",
                    "load.modes: must be a list of distinct keepalive, close"):
            self.assertIn(key, text)
        self.assertGreaterEqual(len(errors), 7)

    def test_required_parts_and_yaml_syntax(self):
        errors = self.errors_of("proxies: [{kind: revgate}]\n")
        self.assertEqual(errors, ["s.yaml:1: revisions: required: a list of revisions"])
        errors = self.errors_of("revisions: [{name: a, percent: 100}\nproxies: x\n")
        self.assertEqual(len(errors), 1)
        self.assertRegex(errors[0], r"^s\.yaml:\d+: \(yaml\): ")
        errors = self.errors_of("""\
            revisions: [{name: a, percent: 100}]
            proxies: [{kind: nginx, splitPolicy: random}]
            hosts: 100
            """)
        self.assertIn("with hosts > 1, nginx supports splitPolicy smooth", "\n".join(errors))

    def test_reload_mode_keys(self):
        s = scenario.load(self.write("""\
            mode: reload
            revisions:
              - {name: a, percent: 90}
              - {name: b, percent: 10}
            proxies: [{kind: revgate}, {kind: nginx}]
            reload: {every: 250ms, trigger: sighup, window: 1s, cycle: [steady, reload, metrics]}
            load: {duration: 4s}
            """))
        self.assertEqual(s.reload.every_s, [0.25])
        self.assertEqual(s.reload.weights, [80, 20])      # default: 10 points first -> last
        self.assertEqual(s.reload.trigger, "sighup")
        self.assertEqual(s.reload.windows(4.0), 3)
        self.assertEqual([m for _, m in s.runs()], ["every 250ms", "every 250ms"])
        self.assertEqual(scenario.loads("mode: reload\nrevisions: [{name: a, percent: 100}]\n"
                                        "proxies: [{kind: revgate}]\nreload: {change: none}\n",
                                        "one.yaml").reload.weights, None)

    def test_reload_mode_errors_name_the_key_and_line(self):
        errors = self.errors_of("""\
            mode: reload
            revisions:
              - {name: a, percent: 90}
              - {name: b, percent: 10}
            proxies: [{kind: revgate}]
            reload:
              every: [100ms, 5ms]
              trigger: http
              weights: [50, 40]
              window: 1s
              cycle: [reload, scrape]
              evry: 1s
            load:
              duration: 2s
              modes: [close]
            """)
        text = "\n".join(errors)
        for line in ("s.yaml:7: reload.every: must be a duration like 100ms or 1s (>= 10ms)",
                     "s.yaml:8: reload.trigger: must be one of post, sighup, rename, got 'http'",
                     "s.yaml:9: reload.weights: must be 2 integer percents",
                     "s.yaml:11: reload.cycle: must be a list of steady, reload, metrics, "
                     "services with steady",
                     "s.yaml:12: reload.evry: unknown key (did you mean every?)",
                     "s.yaml:15: load.modes: mode: reload measures keep-alive load only"):
            self.assertIn(line, text)
        errors = self.errors_of("""\
            revisions: [{name: a, percent: 100}]
            proxies: [{kind: revgate}]
            reload: {every: 1s}
            """)
        self.assertEqual(errors, ["s.yaml:3: reload: only with mode: reload (this scenario's "
                                  "mode is throughput)"])
        errors = self.errors_of("""\
            mode: reload
            revisions: [{name: a, percent: 90}, {name: b, percent: 10}]
            proxies: [{kind: revgate}]
            reload: {window: 2s, every: 3s, weights: [90, 10]}
            load:
              duration: 3s
            """)
        text = "\n".join(errors)
        self.assertIn("s.yaml:4: reload.weights: is the revisions' own split", text)
        self.assertIn("s.yaml:4: reload.every: must not exceed the window (2 s)", text)
        self.assertIn("s.yaml:6: load.duration: too short for one cycle of 2 windows of 2 s "
                      "(steady, reload): give at least 5s", text)

    def test_window_figures_and_percentiles(self):
        from bench_harness import load
        # two 50 ms slices at t = 10.00 s and 10.05 s: 100 responses at ~1 ms, 1 at ~20 ms
        b1, b20 = int(load.math.log(1000) * 100), int(load.math.log(20000) * 100)
        result = {"slice_us": 50000, "slice_n": {"200": 60, "201": 41},
                  "slice_bad": {"201": 1},
                  "slice_h": {str(200 * 4096 + b1): 60, str(201 * 4096 + b1): 40,
                              str(201 * 4096 + b20): 1}}
        slices, width = load.slices_of(result)
        f = load.window_figures(slices, width, 10.0, 10.1)
        self.assertEqual((f["requests"], f["non_2xx_3xx"], f["seconds"]), (101, 1, 0.1))
        self.assertAlmostEqual(load.hist_percentile_ms(f["hist"], 50), 1.0, delta=0.02)
        self.assertAlmostEqual(load.hist_percentile_ms(f["hist"], 99.5), 20.0, delta=0.3)
        # a window that cuts a slice leaves it out; an empty slice inside counts as time
        self.assertEqual(load.window_figures(slices, width, 10.01, 10.1)["requests"], 41)
        self.assertEqual(load.window_figures(slices, width, 10.0, 10.2)["seconds"], 0.2)

    def test_bench_run_reports_scenario_errors_and_exits_2(self):
        path = self.write("""\
            revisions: [{name: a, percent: 100, errorRate: 2}]
            proxies: [{kind: revgate}]
            """)
        r = subprocess.run([sys.executable, RUN, path, "--out", os.path.join(self.dir, "out")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("s.yaml:1: revisions[0].errorRate: must be a number from 0.0 to 1.0, got 2",
                      r.stderr)
        r = subprocess.run([sys.executable, RUN, os.path.join(BENCH, "scenarios",
                            "canary-90-10.yaml"), "--only", "envoy"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--only: no proxy named envoy", r.stderr)


def _scenario(text):
    return scenario.loads(textwrap.dedent(text), "gen.yaml")


VARIANTS = {
    "smooth": "{kind: KIND}",
    "random": "{kind: KIND, splitPolicy: random}",
    "sticky-header": "{kind: KIND, splitPolicy: hash, hashOn: {header: X-User}}",
    "sticky-cookie": "{kind: KIND, splitPolicy: hash, hashOn: {cookie: session}}",
    "least-request": "{kind: KIND, loadBalancer: LEAST_REQUEST}",
    "random-least-request": "{kind: KIND, splitPolicy: random, loadBalancer: LEAST_REQUEST}",
}
REVISIONS = """\
revisions:
  - {name: stable, percent: 70, instances: 3}
  - {name: canary, percent: 20, instances: 2}
  - {name: next, percent: 10}
"""
BACKENDS = {"stable": ["127.0.0.1:20001", "127.0.0.1:20002", "127.0.0.1:20003"],
            "canary": ["127.0.0.1:20011", "127.0.0.1:20012"], "next": ["127.0.0.1:20021"]}


class Configs(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-configs.")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.n = 0

    def fresh(self):
        self.n += 1
        d = os.path.join(self.dir, str(self.n))
        os.makedirs(os.path.join(d, "tmp"))
        return d

    def cert(self):
        cert, key = os.path.join(self.dir, "c.pem"), os.path.join(self.dir, "k.pem")
        if not os.path.exists(cert):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
                            cert, "-days", "2", "-subj", "/CN=localhost"],
                           check=True, capture_output=True)
        return cert, key

    def nginx_ok(self, scn, proxy, tls=None):
        d = self.fresh()
        text = configs.nginx_config(scn, proxy, BACKENDS if scn.hosts == 1 or len(scn.revisions) == 3
                                    else self.backends2, 30080, d, tls=tls)
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["nginx", "-t", "-q", "-p", d, "-c", path, "-e",
                            os.path.join(d, "error.log")], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, f"nginx -t refused:\n{text}\n{r.stderr}")
        return text

    def haproxy_ok(self, scn, proxy, tls=None):
        d = self.fresh()
        text, files = configs.haproxy_config(
            scn, proxy, BACKENDS if len(scn.revisions) == 3 else self.backends2, 30081, d,
            tls=tls)
        configs.write_files(d, files)
        path = os.path.join(d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["haproxy", "-c", "-q", "-f", path], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, f"haproxy -c refused:\n{text}\n{r.stdout}{r.stderr}")
        return text

    backends2 = {"stable": ["127.0.0.1:20001"], "canary": ["127.0.0.1:20011"]}

    @unittest.skipUnless(HAVE_PEERS, "nginx and haproxy not installed (scripts/setup.sh --test)")
    def test_nginx_and_haproxy_accept_every_policy(self):
        for variant, proxy in VARIANTS.items():
            for kind in ("nginx", "haproxy"):
                with self.subTest(variant=variant, kind=kind):
                    scn = _scenario(REVISIONS + f"proxies: [{proxy.replace('KIND', kind)}]\n")
                    p = scn.proxies[0]
                    text = (self.nginx_ok if kind == "nginx" else self.haproxy_ok)(scn, p)
                    if variant == "smooth":      # one weighted level: 70/20/10 over 3/2/1
                        # weights per instance: 70/3 : 20/2 : 10/1 = 140 : 60 : 60 -> 7 : 3 : 3
                        w = "weight=" if kind == "nginx" else "weight "
                        self.assertEqual(text.count(f"{w}7"), 3, text)
                        self.assertEqual(text.count(f"{w}3"), 3, text)
                    elif variant.startswith("sticky"):
                        key = {("nginx", "sticky-header"): "$http_x_user",
                               ("nginx", "sticky-cookie"): "$cookie_session",
                               ("haproxy", "sticky-header"): "req.hdr(X-User),xxh32,mod(100)",
                               ("haproxy", "sticky-cookie"): "req.cook(session),xxh32,mod(100)"}
                        self.assertIn(key[(kind, variant)], text)
                    if "least-request" in variant:
                        self.assertIn("least_conn" if kind == "nginx" else "balance leastconn",
                                      text)

    @unittest.skipUnless(HAVE_PEERS, "nginx and haproxy not installed (scripts/setup.sh --test)")
    def test_many_hosts_and_tls(self):
        scn = _scenario("hosts: 50\nrevisions: [{name: stable, percent: 90}, "
                        "{name: canary, percent: 10}]\nproxies: [{kind: nginx}, {kind: haproxy}]\n")
        text = self.nginx_ok(scn, scn.proxies[0])
        self.assertIn("map $host $rg_upstream", text)
        self.assertEqual(text.count("upstream rg_s"), 50)
        self.assertIn("svc-49.bench.test rg_s49;", text)
        text = self.haproxy_ok(scn, scn.proxies[1])
        self.assertEqual(text.count("\nbackend s"), 50)
        scn = _scenario("tls: true\nrevisions: [{name: stable, percent: 90}, "
                        "{name: canary, percent: 10}]\nproxies: [{kind: nginx}, {kind: haproxy}]\n")
        self.assertIn("ssl_certificate", self.nginx_ok(scn, scn.proxies[0], tls=self.cert()))
        self.assertIn(" ssl crt ", self.haproxy_ok(scn, scn.proxies[1], tls=self.cert()))

    def revgate_check(self, text):
        path = os.path.join(self.fresh(), "revgate.yaml")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run([REVGATE_BIN, "check", "-c", path], capture_output=True, text=True,
                              timeout=60)

    def test_revgate_configs(self):
        # smooth and random: revgate itself accepts them
        for variant in ("smooth", "random"):
            scn = _scenario(REVISIONS + f"proxies: [{VARIANTS[variant].replace('KIND', 'revgate')}]\n")
            text = configs.revgate_config(scn, scn.proxies[0], BACKENDS)
            r = self.revgate_check(text)
            self.assertEqual(r.returncode, 0, r.stderr)
            cfg = yaml.safe_load(text)
            self.assertEqual(cfg["workers"], 1)
            self.assertEqual(cfg["domainMappings"], [{"domain": "*", "service": "bench"}])
            svc = cfg["services"][0]
            self.assertEqual(svc["splitPolicy"], variant)
            self.assertEqual(svc["revisions"][0], {"name": "stable", "endpoints": BACKENDS["stable"]})
            self.assertEqual([t["percent"] for t in svc["traffic"]], [70, 20, 10])
        # hash / hashOn / loadBalancer: the keys on the service, and revgate accepts them
        expect = {"sticky-header": {"splitPolicy": "hash", "hashOn": {"header": "X-User"}},
                  "sticky-cookie": {"splitPolicy": "hash", "hashOn": {"cookie": {"name": "session"}}},
                  "least-request": {"splitPolicy": "smooth", "loadBalancer": "LEAST_REQUEST"}}
        for variant, keys in expect.items():
            scn = _scenario(REVISIONS + f"proxies: [{VARIANTS[variant].replace('KIND', 'revgate')}]\n")
            svc = yaml.safe_load(configs.revgate_config(scn, scn.proxies[0], BACKENDS))["services"][0]
            for k, v in keys.items():
                self.assertEqual(svc[k], v, variant)
            if variant != "least-request":
                self.assertNotIn("loadBalancer", svc)
            r = self.revgate_check(configs.revgate_config(scn, scn.proxies[0], BACKENDS))
            self.assertEqual(r.returncode, 0, f"{variant}: {r.stderr}")
        # an access log beside the config
        scn = _scenario(REVISIONS + "proxies: [{kind: revgate, accessLog: json}]\n")
        text = configs.revgate_config(scn, scn.proxies[0], BACKENDS)
        self.assertEqual(yaml.safe_load(text)["accessLog"], {"path": "access.log", "format": "json"})
        r = self.revgate_check(text)
        self.assertEqual(r.returncode, 0, r.stderr)
        # many hosts and TLS
        scn = _scenario("hosts: 30\ntls: true\nrevisions: [{name: stable, percent: 90}, "
                        "{name: canary, percent: 10}]\nproxies: [{kind: revgate, workers: 2}]\n")
        text = configs.revgate_config(scn, scn.proxies[0], self.backends2, tls=self.cert())
        cfg = yaml.safe_load(text)
        self.assertEqual(len(cfg["services"]), 30)
        self.assertEqual(cfg["domainMappings"][7], {"domain": "svc-07.bench.test",
                                                    "service": "svc-07"})
        self.assertEqual(cfg["listeners"][0]["tls"]["certificates"][0]["certFile"], self.cert()[0])
        r = self.revgate_check(text)
        self.assertEqual(r.returncode, 0, r.stderr)


@unittest.skipUnless(HAVE_LOAD, "nginx, haproxy, wrk and gnuplot needed (scripts/setup.sh --test)")
class Runs(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bench-run.")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.token = uuid.uuid4().hex
        self.env = dict(os.environ, REVGATE_BENCH_TEST_TOKEN=self.token)

    def tearDown(self):
        for pid in processes_with_token(self.token):   # only if a test failed half-way
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def write(self, text):
        path = os.path.join(self.dir, "tiny.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_bench(self, path, *extra, timeout=120):
        out = os.path.join(self.dir, "out")
        r = subprocess.run([sys.executable, RUN, path, "--out", out, "--revgate", REVGATE_BIN,
                            *extra], capture_output=True, text=True, env=self.env,
                           timeout=timeout, start_new_session=True)
        return r, out

    def assert_no_leftovers(self):
        deadline = time.monotonic() + 5
        while processes_with_token(self.token) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = processes_with_token(self.token)
        self.assertEqual(left, [], f"left behind: {[(p, comm(p)) for p in left]}")

    def assert_pictures(self, out, names):
        for name in names:
            with open(os.path.join(out, name + ".png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", name)
            with open(os.path.join(out, name + ".svg"), encoding="utf-8") as f:
                self.assertIn("<svg", f.read(2000), name)

    def test_smoke_run_produces_every_report_file(self):
        r, out = self.run_bench(self.write(TINY))
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assert_no_leftovers()
        self.assertRegex(r.stderr, r"\[round 1/1 \| 1/3\] revgate: [\d,]+ req/s")
        self.assertIn("report: ", r.stderr)
        self.assert_pictures(out, ("rps", "latency", "split"))
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        for part in ("# revgate bench: tiny", "| revgate | smooth | 1 |", "## Split",
                     "![rps](rps.png)", "revgate / peer"):
            self.assertIn(part, md)
        with open(os.path.join(out, "report.json")) as f:
            data = json.load(f)
        self.assertEqual([x["label"] for x in data["runs"]], ["revgate", "nginx", "haproxy"])
        for run in data["runs"]:
            s = run["summary"]
            with self.subTest(proxy=run["label"]):
                self.assertGreater(s["rps"]["median"], 0)
                self.assertEqual(len(run["rounds"]), 1)
                self.assertEqual(s["errors"]["socket"] + s["errors"]["non_2xx_3xx"], 0)
                for k in ("50", "90", "99", "99.9"):
                    self.assertGreater(s["latency_ms"][k], 0)
                split = s["split"]
                self.assertEqual(split["configured"], {"rev-a": 80, "rev-b": 20})
                self.assertEqual(set(split["observed"]), {"rev-a", "rev-b"})
                self.assertAlmostEqual(sum(split["observed"].values()), 100.0, places=6)
                self.assertLess(split["max_deviation_points"], 3.0, split)
                self.assertGreater(s["proxy_cpu_seconds_per_10k"], 0)
                self.assertGreater(s["proxy_peak_rss_kib"], 1000)
        self.assertEqual({(x["revgate"], x["peer"]) for x in data["ratios"]},
                         {("revgate", "nginx"), ("revgate", "haproxy")})
        self.assertIn("cpu", data["machine"])
        for name in ("revgate.yaml", "nginx.conf", "haproxy.cfg", "load-keepalive.lua"):
            self.assertTrue(os.path.exists(os.path.join(out, "configs", name)), name)

    def test_reload_run(self):
        path = self.write(textwrap.dedent("""\
            name: tiny-reload
            mode: reload
            revisions:
              - {name: rev-a, percent: 90}
              - {name: rev-b, percent: 10}
            proxies:
              - kind: revgate
              - kind: nginx
              - kind: haproxy
            reload: {every: 50ms, window: 250ms, cycle: [steady, reload, metrics]}
            load: {connections: 4, duration: 1s, warmup: 0, rounds: 1}
            """))
        r, out = self.run_bench(path)
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assert_no_leftovers()
        self.assertRegex(r.stderr, r"revgate: steady [\d,]+ req/s p99 [\d.]+ ms, reloading")
        self.assert_pictures(out, ("rps", "latency", "timeline"))
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        for part in ("## Throughput and latency during reloads", "## Reload cost",
                     "## Latency during admin scrapes", "| revgate | 50 ms |", "## Windows"):
            self.assertIn(part, md)
        with open(os.path.join(out, "report.json")) as f:
            data = json.load(f)
        self.assertEqual(data["scenario"]["reload"]["cycle"], ["steady", "reload", "metrics"])
        self.assertEqual([x["label"] for x in data["runs"]], ["revgate", "nginx", "haproxy"])
        for run in data["runs"]:
            s = run["summary"]
            with self.subTest(proxy=run["label"]):
                self.assertGreater(s["by_kind"]["steady"]["rps"], 0)
                self.assertGreater(s["by_kind"]["reload"]["rps"], 0)
                self.assertGreater(s["rps_ratio"], 0)
                for kind in ("steady", "reload"):
                    self.assertGreater(s["by_kind"][kind]["latency_ms"]["99"], 0)
                    self.assertGreater(s["by_kind"][kind]["latency_ms"]["50"], 0)
                self.assertGreater(s["reloads"]["sent"], 0)
                self.assertIn("failed", s["errors"])
                self.assertGreater(s["startup_s"]["median"], 0)
                self.assertGreater(s["memory"]["reload_peak_kib"], 1000)
                self.assertIsNotNone(s["memory"]["extra_kib"])
                # The cycle's windows in order; on a loaded machine the last (partial) one of a
                # 1 s run may be cut, so at least steady and reload.
                kinds = [w["kind"] for w in run["rounds"][0]["windows"]]
                cycle = ["steady", "reload", "metrics" if run["kind"] == "revgate" else "steady"]
                self.assertGreaterEqual(len(kinds), 2, kinds)
                self.assertEqual(kinds, cycle[:len(kinds)])
        rg = data["runs"][0]["summary"]
        self.assertEqual(rg["errors"]["failed"], 0, "revgate lost requests during reloads")
        self.assertEqual(rg["reloads"]["applied"], rg["reloads"]["sent"])
        self.assertEqual(rg["reloads"]["failed_answers"] + rg["reloads"]["refused"], 0)
        self.assertEqual(rg["reloads"]["latency_ms"]["count"], rg["reloads"]["sent"])
        self.assertGreater(rg["reloads"]["latency_ms"]["99"], 0)
        self.assertGreater(rg["scrapes"]["metrics"]["count"], 0)
        self.assertIn("metrics", rg["scrape_p99_ratio"])
        for name in ("revgate.yaml", "revgate-reload-alternate.yaml", "nginx.conf",
                     "haproxy-reload-alternate.cfg", "load-reload.lua"):
            self.assertTrue(os.path.exists(os.path.join(out, "configs", name)), name)
        with open(os.path.join(out, "configs", "revgate-reload-alternate.yaml")) as f:
            alternate = yaml.safe_load(f)
        self.assertEqual([t["percent"] for t in alternate["services"][0]["traffic"]], [80, 20])

    def test_reload_scale_script(self):
        out = os.path.join(self.dir, "scale")
        r = subprocess.run([os.path.join(BENCH, "reload_scale.sh"), "--services", "50",
                            "--reloads", "3", "--pause", "50ms", "--no-load", "--out", out,
                            "--revgate", REVGATE_BIN], capture_output=True, text=True,
                           env=self.env, timeout=120, start_new_session=True)
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assert_no_leftovers()
        self.assertRegex(r.stderr, r"start-up: [\d.]+ s to ready \(50 services")
        self.assertRegex(r.stderr, r"reload  3/3 \(80/20\): +[\d.]+ ms, RSS before")
        self.assertIn("target < 300 ms", r.stderr)
        with open(os.path.join(out, "report.json")) as f:
            u = json.load(f)["unloaded"]
        self.assertEqual(u["services"], 50)
        self.assertEqual([x["split"] for x in u["reloads"]], ["80/20", "90/10", "80/20"])
        self.assertEqual([x["generation"] for x in u["reloads"]], [2, 3, 4])
        for x in u["reloads"]:
            self.assertGreater(x["ms"], 0)
            self.assertGreaterEqual(x["peak_kib"], x["rss_before_kib"])
        with open(os.path.join(out, "report.md")) as f:
            self.assertIn("| 3 | 80/20 |", f.read())

    def test_idle_connections_run(self):
        path = self.write(TINY.replace("name: tiny", "name: idle\nmode: idle-connections")
                          + "idle: {connections: 300}\n")
        r, out = self.run_bench(path, "--only", "revgate,haproxy")
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assert_no_leftovers()
        self.assert_pictures(out, ("idle",))
        with open(os.path.join(out, "report.json")) as f:
            data = json.load(f)
        self.assertEqual([x["label"] for x in data["runs"]], ["revgate", "haproxy"])
        for run in data["runs"]:
            s = run["summary"]
            self.assertEqual(s["connections"], 300)
            self.assertEqual(s["closed_by_server"], 0)
            self.assertIsNotNone(s["bytes_per_connection"]["median"])
        self.assertEqual(len(data["ratios"]), 1)
        self.assertIn("bytes_per_connection", data["ratios"][0])

    def test_ctrl_c_stops_everything_it_started(self):
        path = self.write(TINY.replace("duration: 1s", "duration: 60s"))
        proc = subprocess.Popen([sys.executable, RUN, path, "--out", os.path.join(self.dir, "out"),
                                 "--revgate", REVGATE_BIN], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not any(comm(p) == "wrk" and b"-d60s" in cmdline(p)   # the measured run
                          for p in processes_with_token(self.token)):
                self.assertIsNone(proc.poll(), proc.communicate()[1] if proc.poll() else "")
                self.assertLess(time.monotonic(), deadline, "wrk never started")
                time.sleep(0.1)
            running = processes_with_token(self.token)   # run, 3 echo, proxy, wrk
            if len(running) < 6:
                proc.send_signal(signal.SIGINT)
                self.fail(f"{[(p, comm(p)) for p in running]}\n{proc.communicate(timeout=30)[1]}")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 128 + signal.SIGINT, err)
        self.assertIn("interrupted by SIGINT; stopping every process it started", err)
        self.assert_no_leftovers()


@unittest.skipUnless(HAVE_PEERS and shutil.which("h2load"),
                     "nginx, haproxy and h2load (nghttp2-client) needed (scripts/setup.sh --bench)")
class H2Script(unittest.TestCase):
    """bench/h2.sh: 1-second runs through all three proxies, h2c and h2 over TLS; every check
    (2xx only, the 90/10 split at the backends) passes and nothing is left running."""
    setUp = Runs.setUp
    tearDown = Runs.tearDown
    assert_no_leftovers = Runs.assert_no_leftovers

    def run_h2(self, *extra, proxies=("revgate", "nginx", "haproxy")):
        r = subprocess.run([os.path.join(BENCH, "h2.sh"), "--seconds", "1", "--rounds", "1",
                            "--warmup", "0", "-c", "4", "-m", "5", "--revgate", REVGATE_BIN,
                            *extra], capture_output=True, text=True, env=self.env, timeout=90,
                           start_new_session=True)
        self.assertEqual(r.returncode, 0, f"{r.stdout}\n{r.stderr}")
        self.assert_no_leftovers()
        for proxy in proxies:
            self.assertRegex(r.stdout, rf"\n  {proxy} +1 +[\d,]+ +[\d.]+ +[\d.]+ .* "
                                       rf"\d+\.\d/\d+\.\d +\d+/\d+ +\d+/\d+ +(\d+\.\d\d|-)  ok\n")
        if "nginx" in proxies:
            self.assertRegex(r.stdout, r"revgate/nginx: req/s [\d.]+x; p99 [\d.]+x; requests "
                                       r"per proxy CPU-second [\d.]+x")
        if "haproxy" in proxies:
            self.assertRegex(r.stdout, r"revgate/haproxy: req/s [\d.]+x")
        return r

    def test_h2c_upstream(self):
        # protocol: h2c revisions multiplex the 20 streams over one connection per backend
        proxies = ("revgate", "revgate-h2c", "haproxy-h2c")
        r = self.run_h2("--proxies", ",".join(proxies), proxies=proxies)
        self.assertRegex(r.stdout, r"\n  revgate-h2c +1 .* 1/1 +1/1 +(\d+\.\d\d|-)  ok\n")
        self.assertRegex(r.stdout, r"revgate h2c upstream / HTTP/1.1 upstream: upstream "
                                   r"connections 2 vs \d+; syscalls per request ([\d.]+x|-)")
        self.assertRegex(r.stdout, r"revgate-h2c/haproxy-h2c: req/s [\d.]+x")

    def test_h2c(self):
        r = self.run_h2()
        self.assertIn("HTTP/2 h2c (prior knowledge): h2load -c 4 -m 5 (20 streams)", r.stdout)

    def test_tls(self):
        r = self.run_h2("--tls")
        self.assertIn("HTTP/2 h2 over TLS (ALPN)", r.stdout)


if __name__ == "__main__":
    unittest.main()
