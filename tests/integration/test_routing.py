"""Routing (SPEC section 4): the weighted split per request, tag hosts, Knative-Serving-Tag,
domain mappings (exact, wildcard, case, port, trailing dot), 404 for unknown hosts, catch-all."""

import collections
import unittest

from harness import (IntegrationTest, RawConnection, default_config, service)

HELLO = "hello.default.example.com"


class SplitTest(IntegrationTest):
    def start_split(self, percents=(90, 10), split=None, workers=1):
        a, b = self.start_echos("hello-00001", "hello-00002")
        traffic = [{"revisionName": "hello-00001", "percent": percents[0]},
                   {"revisionName": "hello-00002", "percent": percents[1], "tag": "canary"}]
        config = default_config(
            [service("hello", [("hello-00001", [a]), ("hello-00002", [b])], traffic, split=split)],
            workers=workers)
        return self.start_revgate(config), a, b

    def test_smooth_90_10_on_one_keepalive_connection(self):
        proxy, a, b = self.start_split()
        conn = self.http_connection(proxy.port)
        counts = collections.Counter()
        sockets = set()
        first_b = None
        for i in range(2000):
            conn.request("GET", f"/r{i}", headers={"Host": HELLO})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            revision = resp.getheader("X-Revision")
            counts[revision] += 1
            if revision == "hello-00002" and first_b is None:
                first_b = i
            sockets.add(conn.sock.getsockname())  # http.client reconnects silently: watch it
        self.assertEqual(len(sockets), 1, f"the keep-alive connection was not kept: {sockets}")
        self.assertEqual(dict(counts), {"hello-00001": 1800, "hello-00002": 200},
                         "smooth split must give exactly 90/10 per 2,000 requests")
        # Per request, not per connection: the canary shows up early, not after 1800 requests.
        self.assertLess(first_b, 20, "the one connection should see hello-00002 within its first "
                                     "requests (split is per request)")

    def test_smooth_90_10_over_several_keepalive_connections(self):
        proxy, a, b = self.start_split()
        conns = [self.http_connection(proxy.port) for _ in range(4)]
        totals = collections.Counter()
        per_conn = [collections.Counter() for _ in conns]
        for _ in range(10):
            for index, conn in enumerate(conns):
                for _ in range(50):
                    conn.request("GET", "/", headers={"Host": HELLO})
                    resp = conn.getresponse()
                    resp.read()
                    self.assertEqual(resp.status, 200)
                    rev = resp.getheader("X-Revision")
                    totals[rev] += 1
                    per_conn[index][rev] += 1
        self.assertEqual(dict(totals), {"hello-00001": 1800, "hello-00002": 200})
        for index, counter in enumerate(per_conn):
            self.assertEqual(set(counter), {"hello-00001", "hello-00002"},
                             f"connection {index} saw only {dict(counter)}")

    def test_backends_see_the_split(self):
        proxy, a, b = self.start_split(percents=(70, 30))
        conn = self.http_connection(proxy.port)
        for _ in range(1000):
            conn.request("GET", "/", headers={"Host": HELLO})
            conn.getresponse().read()
        self.assertEqual(a.requests_seen(), 700)
        self.assertEqual(b.requests_seen(), 300)

    def test_random_split_policy_is_close_to_the_weights(self):
        proxy, a, b = self.start_split(split="random")
        conn = self.http_connection(proxy.port)
        counts = collections.Counter()
        for _ in range(2000):
            conn.request("GET", "/", headers={"Host": HELLO})
            resp = conn.getresponse()
            resp.read()
            counts[resp.getheader("X-Revision")] += 1
        # binomial(2000, 0.1): sd ~13.4; 140..260 is > 4 sd either side
        self.assertTrue(140 <= counts["hello-00002"] <= 260, dict(counts))
        self.assertEqual(counts["hello-00001"] + counts["hello-00002"], 2000)

    def test_zero_percent_revision_gets_nothing(self):
        proxy, a, b = self.start_split(percents=(100, 0))
        conn = self.http_connection(proxy.port)
        for _ in range(200):
            conn.request("GET", "/", headers={"Host": HELLO})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.getheader("X-Revision"), "hello-00001")


class TagTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.a, self.b, self.c = self.start_echos("hello-00001", "hello-00002", "hello-00003")
        traffic = [{"revisionName": "hello-00001", "percent": 90},
                   {"revisionName": "hello-00002", "percent": 10, "tag": "canary"},
                   {"latestRevision": True, "percent": 0, "tag": "latest"}]
        config = default_config([service(
            "hello", [("hello-00001", [self.a]), ("hello-00002", [self.b]),
                      ("hello-00003", [self.c])], traffic)])
        self.proxy = self.start_revgate(config)

    def revisions(self, host, n=20, headers=None):
        conn = self.http_connection(self.proxy.port)
        seen = collections.Counter()
        for _ in range(n):
            hdrs = {"Host": host}
            hdrs.update(headers or {})
            conn.request("GET", "/", headers=hdrs)
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200, f"Host {host}: {resp.status} {body!r}")
            seen[resp.getheader("X-Revision")] += 1
        return dict(seen)

    def test_tag_host_gets_all_its_traffic(self):
        self.assertEqual(self.revisions("canary-hello.default.example.com"), {"hello-00002": 20})

    def test_latest_tag_floats_to_the_last_revision(self):
        self.assertEqual(self.revisions("latest-hello.default.example.com"), {"hello-00003": 20})

    def test_knative_serving_tag_header_selects_the_tag(self):
        self.assertEqual(self.revisions(HELLO, headers={"Knative-Serving-Tag": "canary"}),
                         {"hello-00002": 20})
        self.assertEqual(self.revisions(HELLO, headers={"Knative-Serving-Tag": "latest"}),
                         {"hello-00003": 20})

    def test_unknown_tag_header_is_ignored(self):
        seen = self.revisions(HELLO, n=100, headers={"Knative-Serving-Tag": "nope"})
        self.assertEqual(seen, {"hello-00001": 90, "hello-00002": 10})

    def test_unknown_tag_host_is_404(self):
        status, headers, body = self.get(self.proxy.port, host="nope-hello.default.example.com")
        self.assertEqual(status, 404, body)


class DomainMappingTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.hello, self.web, self.api, self.apps, self.exact = self.start_echos(
            "hello-1", "web-1", "api-1", "apps-1", "exact-1")
        config = default_config(
            [service("hello", [("hello-1", [self.hello])]),
             service("web", [("web-1", [self.web])]),
             service("api", [("api-1", [self.api])], namespace="prod"),
             service("apps", [("apps-1", [self.apps])]),
             service("exact", [("exact-1", [self.exact])])],
            domain="example.net",
            domainMappings=[
                {"domain": "www.example.org", "service": "web"},
                {"domain": "*.example.org", "service": "apps"},
                {"domain": "*.apps.example.org", "service": "api", "namespace": "prod"},
                {"domain": "exact.apps.example.org", "service": "exact"},
            ])
        self.proxy = self.start_revgate(config)

    def revision_for(self, host):
        status, headers, body = self.get(self.proxy.port, host=host)
        self.assertEqual(status, 200, f"Host {host!r}: {status} {body!r}")
        return headers.get("x-revision")

    def test_service_hosts_use_the_configured_domain(self):
        self.assertEqual(self.revision_for("hello.default.example.net"), "hello-1")
        self.assertEqual(self.revision_for("api.prod.example.net"), "api-1")
        status, _, _ = self.get(self.proxy.port, host="hello.default.example.com")
        self.assertEqual(status, 404, "the default domain is replaced by `domain`")

    def test_exact_mapping(self):
        self.assertEqual(self.revision_for("www.example.org"), "web-1")

    def test_exact_mapping_beats_wildcard(self):
        self.assertEqual(self.revision_for("exact.apps.example.org"), "exact-1")

    def test_wildcard_one_label(self):
        self.assertEqual(self.revision_for("x.apps.example.org"), "api-1")

    def test_wildcard_two_labels(self):
        self.assertEqual(self.revision_for("a.b.apps.example.org"), "api-1")

    def test_longest_wildcard_suffix_wins(self):
        self.assertEqual(self.revision_for("shop.example.org"), "apps-1")
        self.assertEqual(self.revision_for("x.apps.example.org"), "api-1")

    def test_wildcard_does_not_match_its_bare_suffix(self):
        # Envoy/Knative: "*.apps.example.org" matches subdomains only; the bare name falls back
        # to the next shorter wildcard, "*.example.org".
        self.assertEqual(self.revision_for("apps.example.org"), "apps-1")
        status, _, body = self.get(self.proxy.port, host="example.org")
        self.assertEqual(status, 404, body)

    def test_upper_case_host(self):
        self.assertEqual(self.revision_for("WWW.Example.ORG"), "web-1")
        self.assertEqual(self.revision_for("X.APPS.example.org"), "api-1")
        self.assertEqual(self.revision_for("Hello.Default.Example.NET"), "hello-1")

    def test_host_with_port(self):
        self.assertEqual(self.revision_for("www.example.org:8080"), "web-1")
        self.assertEqual(self.revision_for(f"x.apps.example.org:{self.proxy.port}"), "api-1")

    def test_host_with_trailing_dot(self):
        self.assertEqual(self.revision_for("www.example.org."), "web-1")
        self.assertEqual(self.revision_for("www.example.org.:80"), "web-1")
        self.assertEqual(self.revision_for("x.apps.example.org."), "api-1")

    def test_unknown_host_is_404_plain_text_and_reaches_no_backend(self):
        for host in ("nope.example.net", "127.0.0.1", f"127.0.0.1:{self.proxy.port}",
                     "www.example.org.evil.com", "wwwexample.org"):
            with RawConnection(self.proxy.port) as conn:
                resp = conn.request(host=host)
                self.assertEqual(resp.status, 404, f"Host {host}: {resp}")
                self.assertTrue(resp.header("content-type", "").startswith("text/plain"), resp)
                self.assertTrue(resp.body.strip(), "404 needs a short body")
                self.assertLess(len(resp.body), 512)
                # a 404 leaves the connection usable
                resp2 = conn.request(host="www.example.org")
                self.assertEqual(resp2.status, 200, resp2)
        for echo in (self.hello, self.api, self.apps, self.exact):
            self.assertEqual(echo.requests_seen(), 0,
                             f"{echo.revision} was reached by a request for an unknown host")


class CatchAllTest(IntegrationTest):
    def test_catch_all_takes_any_other_host(self):
        hello, web = self.start_echos("hello-1", "web-1")
        config = default_config(
            [service("hello", [("hello-1", [hello])]), service("web", [("web-1", [web])])],
            domainMappings=[{"domain": "www.example.org", "service": "web"},
                            {"domain": "*", "service": "hello"}])
        proxy = self.start_revgate(config)
        for host in (f"127.0.0.1:{proxy.port}", "127.0.0.1", "anything.example.net", "localhost"):
            status, headers, body = self.get(proxy.port, host=host)
            self.assertEqual((status, headers.get("x-revision")), (200, "hello-1"), host)
        status, headers, _ = self.get(proxy.port, host="www.example.org")
        self.assertEqual(headers.get("x-revision"), "web-1", "the exact mapping beats `*`")

    def test_curl_with_default_host_header(self):
        hello = self.start_echo("hello-1")
        config = default_config([service("hello", [("hello-1", [hello])])],
                                domainMappings=[{"domain": "*", "service": "hello"}])
        proxy = self.start_revgate(config)
        out = self.curl("-i", f"http://127.0.0.1:{proxy.port}/path?q=1")
        self.assertEqual(out.returncode, 0, out.stderr)
        text = out.stdout.decode()
        self.assertIn("X-Revision: hello-1", text)
        self.assertIn('"target":"/path?q=1"', text)


if __name__ == "__main__":
    unittest.main()
