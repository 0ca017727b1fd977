"""A real Prometheus server (Debian's `prometheus` package) scrapes revgate's admin listener:
the exposition is accepted as a scrape target, and PromQL sees the split the backends saw.

Everything stays on loopback: Prometheus listens on a free 127.0.0.1 port and keeps its TSDB in
the test's temporary directory; it is killed by pid in the cleanup."""

import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from harness import (LOOPBACK, IntegrationTest, Process, dead_port, default_config, metric_sum,
                     parse_metrics, service)

HELLO = "hello.default.example.com"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


# A port nothing listens on now, for Prometheus to bind.
free_port = dead_port


class PrometheusScrapeTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        if not os.access(PROMETHEUS, os.X_OK):
            self.fail(f"prometheus not found ({PROMETHEUS}): install Debian's `prometheus` "
                      "package (scripts/setup.sh --test does)")

    def start_prometheus(self, admin_port):
        config = (
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: revgate\n"
            "    scrape_interval: 1s\n"
            "    static_configs:\n"
            f"      - targets: ['{LOOPBACK}:{admin_port}']\n")
        config_path = self.write_file("prometheus.yml", config)
        check = self.run_promtool("check", "config", config_path)
        for attempt in range(3):
            # a port bound and closed: another process may take it first, so try again then
            self.prom_port = free_port()
            argv = [PROMETHEUS, f"--config.file={config_path}",
                    f"--storage.tsdb.path={os.path.join(self.tmpdir, f'tsdb{attempt}')}",
                    f"--web.listen-address={LOOPBACK}:{self.prom_port}",
                    f"--web.console.templates={self.tmpdir}",
                    f"--web.console.libraries={self.tmpdir}"]
            prom = self.track(Process(argv, "prometheus", cwd=self.tmpdir))
            deadline = time.monotonic() + 30
            while prom.running() and time.monotonic() < deadline:
                try:
                    status, _ = self.prom_get("/-/ready")
                    if status == 200:
                        return prom
                except OSError:
                    pass
                time.sleep(0.2)
            prom.kill()
            if "address already in use" not in prom.stderr_text():
                break
        self.fail(f"prometheus did not become ready ({check}):\n{prom.describe()}")

    def run_promtool(self, *args):
        promtool = shutil.which("promtool")
        if not promtool:
            return "promtool not installed"
        out = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}")
        return "promtool check config: ok"

    def prom_get(self, path, params=None):
        url = f"http://{LOOPBACK}:{self.prom_port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        # no proxy from the environment: everything stays on loopback
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as resp:
            return resp.status, resp.read()

    def api(self, path, **params):
        status, body = self.prom_get(f"/api/v1/{path}", params)
        data = json.loads(body)
        self.assertEqual((status, data.get("status")), (200, "success"), data)
        return data["data"]

    def query(self, expr):
        data = self.api("query", query=expr)
        self.assertEqual(data["resultType"], "vector", data)
        return data["result"]

    def wait_for(self, read, expected, what, timeout=20.0):
        """Prometheus scrapes every 250 ms: wait for what it stored."""
        return self.eventually(read, expected, what, timeout, interval=0.25)

    def requests_by_version(self):
        """istio_requests_total as Prometheus stores it, summed by destination_version here."""
        out = {}
        for row in self.query("istio_requests_total"):
            labels = row["metric"]
            version = labels.get("destination_version")
            out[version] = out.get(version, 0) + int(float(row["value"][1]))
        return out

    def test_prometheus_scrapes_the_split(self):
        a, b = self.start_echos("hello-00001", "hello-00002")
        proxy = self.start_revgate(default_config([service(
            "hello", [("hello-00001", [a]), ("hello-00002", [b])],
            [{"revisionName": "hello-00001", "percent": 90},
             {"revisionName": "hello-00002", "percent": 10, "tag": "canary"}])]))
        conn = self.connect(proxy.port)
        for _ in range(100):
            self.assertEqual(conn.request(host=HELLO).status, 200)
        self.assertEqual(conn.request(host="nope.example.net").status, 404)
        seen = {"hello-00001": a.requests_seen(), "hello-00002": b.requests_seen()}
        self.assertEqual(seen, {"hello-00001": 90, "hello-00002": 10})

        prom = self.start_prometheus(proxy.admin_port)

        def target_health():
            targets = self.api("targets")["activeTargets"]
            return [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
        self.wait_for(target_health,
                      [(f"http://{LOOPBACK}:{proxy.admin_port}/metrics", "up", "")],
                      f"revgate's admin listener is scraped without error\n{prom.describe()}")

        expected = {"hello-00001": 90, "hello-00002": 10, "unknown": 1}
        self.wait_for(self.requests_by_version, expected,
                      "istio_requests_total in Prometheus, by destination_version")
        rows = self.query('istio_requests_total{destination_version="hello-00002"}')
        self.assertEqual(len(rows), 1, rows)
        labels = rows[0]["metric"]
        self.assertEqual({k: labels.get(k) for k in (
            "job", "instance", "reporter", "destination_service", "destination_service_name",
            "destination_canonical_revision", "response_code", "response_flags")},
            {"job": "revgate", "instance": f"{LOOPBACK}:{proxy.admin_port}",
             "reporter": "source", "destination_service": HELLO,
             "destination_service_name": "hello",
             "destination_canonical_revision": "hello-00002", "response_code": "200",
             "response_flags": "-"})
        # PromQL's own aggregation agrees
        summed = {r["metric"]["destination_version"]: int(float(r["value"][1])) for r in
                  self.query('sum by (destination_version) '
                             '(istio_requests_total{destination_service_name="hello"})')}
        self.assertEqual(summed, {"hello-00001": 90, "hello-00002": 10})
        percents = {r["metric"]["revision"]: float(r["value"][1])
                    for r in self.query('revgate_traffic_percent{service="hello"}')}
        self.assertEqual(percents, {"hello-00001": 90.0, "hello-00002": 10.0})
        self.assertEqual([r["value"][1] for r in self.query('up{job="revgate"}')], ["1"])

        # more traffic: later scrapes pick it up
        for _ in range(100):
            self.assertEqual(conn.request(host=HELLO).status, 200)
        self.wait_for(self.requests_by_version,
                      {"hello-00001": 180, "hello-00002": 20, "unknown": 1},
                      "istio_requests_total after another 100 requests")
        self.assertEqual(metric_sum(proxy.metrics(), "istio_requests_total",
                                    destination_version="hello-00002"), 20)
        # the histogram is usable as Prometheus histograms are
        count = self.query('sum(istio_request_duration_milliseconds_count'
                           '{destination_service_name="hello"})')
        self.assertEqual(int(float(count[0]["value"][1])), 200)
        p99 = self.query('histogram_quantile(0.99, sum by (le) '
                         '(istio_request_duration_milliseconds_bucket'
                         '{destination_service_name="hello"}))')
        self.assertEqual(len(p99), 1, p99)
        self.assertTrue(0 <= float(p99[0]["value"][1]) <= 1000, p99)
        # Prometheus found nothing wrong with the samples it ingested
        _, own = self.prom_get("/metrics")
        samples = parse_metrics(own.decode())
        for name in ("prometheus_target_scrapes_sample_duplicate_timestamp_total",
                     "prometheus_target_scrapes_sample_out_of_order_total",
                     "prometheus_target_scrapes_sample_out_of_bounds_total",
                     "prometheus_target_scrapes_exceeded_sample_limit_total"):
            self.assertEqual(metric_sum(samples, name), 0, name)
        self.assertTrue(prom.running(), prom.describe())


if __name__ == "__main__":
    unittest.main()
