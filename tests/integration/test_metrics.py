"""Metrics (SPEC section 7): Istio's names and labels, counts that match what the backends saw,
response flags, Envoy's buckets, revgate's own gauges, and `promtool check metrics`."""

import shutil
import subprocess
import time
import unittest

from harness import (IntegrationTest, RawConnection, dead_port, default_config, metric_select,
                     metric_sum, parse_metrics, service)

HELLO = "hello.default.example.com"
ENVOY_BUCKETS = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
                 "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"]
ISTIO_LABELS = {"reporter", "destination_service", "destination_service_name",
                "destination_service_namespace", "destination_version",
                "destination_canonical_revision", "request_protocol", "response_code",
                "response_flags"}


def normalise_le(le):
    return le if le == "+Inf" else format(float(le), "g")


class MetricsTest(IntegrationTest):
    def start_split(self):
        self.a, self.b = self.start_echos("hello-00001", "hello-00002")
        traffic = [{"revisionName": "hello-00001", "percent": 70},
                   {"revisionName": "hello-00002", "percent": 30, "tag": "canary"},
                   {"latestRevision": True, "percent": 0, "tag": "latest"}]
        config = default_config([service(
            "hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])], traffic)])
        self.proxy = self.start_revgate(config)
        return self.proxy

    def test_requests_total_per_revision_equals_what_the_backends_saw(self):
        proxy = self.start_split()
        conn = self.http_connection(proxy.port)
        for _ in range(100):
            conn.request("GET", "/", headers={"Host": HELLO})
            conn.getresponse().read()
        for _ in range(7):
            conn.request("GET", "/", headers={"Host": "canary-hello.default.example.com"})
            conn.getresponse().read()
        seen = {"hello-00001": self.a.requests_seen(), "hello-00002": self.b.requests_seen()}
        self.assertEqual(seen, {"hello-00001": 70, "hello-00002": 37})

        def counted():
            samples = proxy.metrics()
            return {rev: metric_sum(samples, "istio_requests_total", destination_version=rev)
                    for rev in seen}
        self.eventually(counted, {k: float(v) for k, v in seen.items()},
                        "istio_requests_total per revision vs the backends' request counts")

        samples = proxy.metrics()
        for rev in seen:
            rows = metric_select(samples, "istio_requests_total", destination_version=rev)
            self.assertEqual(len(rows), 1, rows)
            labels, value = rows[0]
            self.assertEqual(set(labels), ISTIO_LABELS)
            self.assertEqual(labels, {
                "reporter": "source",
                "destination_service": HELLO,
                "destination_service_name": "hello",
                "destination_service_namespace": "default",
                "destination_version": rev,
                "destination_canonical_revision": rev,
                "request_protocol": "http",
                "response_code": "200",
                "response_flags": "-",
            })

    def test_response_codes_are_labels(self):
        proxy = self.start_split()
        conn = self.connect(proxy.port)
        for code in (200, 201, 404, 503, 503):
            resp = conn.request(target=f"/_echo/status/{code}",
                                host="canary-hello.default.example.com")
            self.assertEqual(resp.status, code)

        def by_code():
            samples = proxy.metrics()
            return {c: metric_sum(samples, "istio_requests_total", response_code=c,
                                  destination_version="hello-00002", response_flags="-")
                    for c in ("200", "201", "404", "503")}
        self.eventually(by_code, {"200": 1.0, "201": 1.0, "404": 1.0, "503": 2.0},
                        "backend status codes, counted by response_code, no flags")

    def test_unknown_hosts_are_counted_with_NR(self):
        proxy = self.start_split()
        conn = self.connect(proxy.port)
        for _ in range(3):
            self.assertEqual(conn.request(host="nope.example.net").status, 404)
        self.eventually(
            lambda: metric_sum(proxy.metrics(), "istio_requests_total", response_code="404",
                               response_flags="NR"), 3.0, "404s with response_flags=NR")
        self.assertEqual(metric_sum(proxy.metrics(), "istio_requests_total",
                                    destination_version="hello-00001"), 0)

    def test_dead_endpoint_is_counted_with_UF(self):
        config = default_config([service("hello", [("hello-00001", [f"127.0.0.1:{dead_port()}"])])])
        proxy = self.start_revgate(config)
        for _ in range(2):
            status, _, _ = self.get(proxy.port, host=HELLO)
            self.assertEqual(status, 502)
        self.eventually(
            lambda: metric_sum(proxy.metrics(), "istio_requests_total", response_code="502",
                               response_flags="UF", destination_version="hello-00001"),
            2.0, "502s for a refused connect, flag UF, labelled with the revision")

    def test_upstream_timeout_is_counted_with_UT(self):
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])],
                                timeouts={"upstreamResponse": "1s"})
        proxy = self.start_revgate(config)
        status, _, _ = self.get(proxy.port, "/_echo/delay/2500", host=HELLO)
        self.assertEqual(status, 504)
        self.eventually(
            lambda: metric_sum(proxy.metrics(), "istio_requests_total", response_code="504",
                               response_flags="UT", destination_version="hello-00001"),
            1.0, "504 for an upstream timeout, flag UT")

    def test_histograms_use_envoys_default_buckets(self):
        proxy = self.start_split()
        self.get(proxy.port, host=HELLO)
        # The request is counted once its response is written: wait for it to show.
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           destination_version="hello-00001"),
                        1.0, "the request is counted")
        samples = proxy.metrics()
        for family in ("istio_request_duration_milliseconds", "istio_request_bytes",
                       "istio_response_bytes"):
            rows = metric_select(samples, family + "_bucket", destination_version="hello-00001")
            les = [normalise_le(labels["le"]) for labels, _ in rows]
            self.assertEqual(les, [normalise_le(b) for b in ENVOY_BUCKETS], family)
            counts = [value for _, value in rows]
            self.assertEqual(counts, sorted(counts), f"{family}: buckets are cumulative")
            self.assertEqual(counts[-1], metric_sum(samples, family + "_count",
                                                    destination_version="hello-00001"))

    def test_request_and_response_bytes(self):
        proxy = self.start_split()
        conn = self.connect(proxy.port)
        first = conn.request(method="POST", target="/up", host="canary-hello.default.example.com",
                             body=b"q" * 12345)
        self.assertEqual(first.json()["body_bytes"], 12345)
        second = conn.request(target="/_echo/bytes/5000", host="latest-hello.default.example.com")
        self.assertEqual(second.body_length, 5000)
        # both went to hello-00002 (tags canary and latest): request bodies 12345 + 0 bytes,
        # response bodies len(JSON) + 5000 bytes
        labels = {"destination_version": "hello-00002"}
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_request_bytes_count", **labels),
                        2.0, "istio_request_bytes_count")
        samples = proxy.metrics()
        self.assertEqual(metric_sum(samples, "istio_request_bytes_sum", **labels), 12345)
        self.assertEqual(metric_sum(samples, "istio_response_bytes_count", **labels), 2)
        self.assertEqual(metric_sum(samples, "istio_response_bytes_sum", **labels),
                         first.body_length + 5000)

    def test_traffic_percent_gauge(self):
        proxy = self.start_split()
        samples = proxy.metrics()
        rows = sorted((l["revision"], l["tag"], v) for l, v in
                      metric_select(samples, "revgate_traffic_percent", service="hello",
                                    namespace="default"))
        self.assertEqual(rows, [("hello-00001", "", 70.0), ("hello-00002", "canary", 30.0),
                                ("hello-00002", "latest", 0.0)])

    def test_connection_gauges(self):
        proxy = self.start_split()
        conns = [self.connect(proxy.port) for _ in range(3)]
        for c in conns:
            self.assertEqual(c.request(host=HELLO).status, 200)
        samples = proxy.metrics()
        self.assertEqual(metric_sum(samples, "revgate_downstream_connections_open",
                                    listener="http"), 3)
        self.assertEqual(metric_sum(samples, "revgate_downstream_connections_accepted_total",
                                    listener="http"), 3)
        for c in conns:
            c.close()
        self.eventually(lambda: metric_sum(proxy.metrics(), "revgate_downstream_connections_open",
                                           listener="http"), 0.0, "closed connections", 3)

    def test_metrics_endpoint_format(self):
        proxy = self.start_split()
        status, headers, body = proxy.admin_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers.get("content-type", ""))
        text = body.decode()
        self.assertIn("# TYPE istio_requests_total counter", text)
        self.assertIn("# TYPE istio_request_duration_milliseconds histogram", text)
        self.assertTrue(text.endswith("\n"))
        parse_metrics(text)  # every line parses

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed")
    def test_a_scrape_streams_in_chunks_and_http10_and_head_get_its_length(self):
        proxy = self.start_split()
        for _ in range(20):
            self.assertEqual(self.get(proxy.port, host=HELLO)[0], 200)

        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total"), 20,
                        "the 20 requests")

        def series(text):
            return {(n, tuple(sorted(l.items()))) for n, l, _ in parse_metrics(text)}
        with RawConnection(proxy.admin_port) as conn:
            streamed = conn.request("GET", "/metrics", host="admin")
            self.assertEqual(streamed.status, 200)
            self.assertEqual(streamed.header("transfer-encoding"), "chunked")
            self.assertIsNone(streamed.header("content-length"))
            # the connection serves on once the last chunk is written
            after = conn.request("GET", "/healthz", host="admin")
            self.assertEqual((after.status, after.body), (200, b"ok\n"))
        text = streamed.body.decode()
        self.assertTrue(text.endswith("\n"), text[-200:])
        with RawConnection(proxy.admin_port) as conn:
            whole = conn.request("GET", "/metrics", host="admin", version="HTTP/1.0")
        self.assertEqual(whole.status, 200)
        self.assertIsNone(whole.header("transfer-encoding"), "HTTP/1.0 has no chunked encoding")
        self.assertEqual(int(whole.header("content-length")), len(whole.body))
        self.assertEqual(series(whole.body.decode()), series(text))
        with RawConnection(proxy.admin_port) as conn:
            head = conn.request("HEAD", "/metrics", host="admin")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertGreater(int(head.header("content-length")), len(text) // 2)

    def test_promtool_check_metrics(self):
        proxy = self.start_split()
        conn = self.connect(proxy.port)
        for host in (HELLO, HELLO, "canary-hello.default.example.com", "nope.example.net"):
            conn.request(host=host)
        conn.request(target="/_echo/status/500", host=HELLO)
        conn.request(method="POST", host=HELLO, body=b"x" * 100)
        text = proxy.metrics_text()
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=30)
        remarks = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        allowed = [r for r in remarks if r.startswith("istio_request_duration_milliseconds")
                   and "base unit" in r]
        other = [r for r in remarks if r not in allowed]
        self.assertEqual(other, [], f"promtool remarks:\n{out.stdout}{out.stderr}")
        self.assertIn(out.returncode, (0, 3), f"promtool error:\n{out.stdout}{out.stderr}")
        if out.returncode == 3:
            self.assertTrue(allowed, "exit 3 (lint) without a remark")


if __name__ == "__main__":
    unittest.main()
