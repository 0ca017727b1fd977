"""Route rules (README "Route rules"): a service's `routes` through real sockets, for HTTP/1.1
and HTTP/2 clients, to HTTP/1.1 and h2c revisions (`revgate echo` reports what it received):
header, path and method matches picking a rule's own traffic, withoutHeaders and query
parameters, first match wins, directResponse and redirect answered by the proxy (never reaching
a revision), prefix and full rewrites of the path and the authority, request and response header
edits; a bad regex named with its place by `revgate check`."""

import json
import signal
import subprocess
import unittest

from harness import IntegrationTest, default_config, service

HOST = "shop.default.example.com"


def rules():
    return [
        {"name": "robots", "match": [{"uri": {"exact": "/robots.txt"}}],
         "directResponse": {"status": 200, "body": {"string": "User-agent: *\nDisallow: /\n"}}},
        {"name": "gone", "match": [{"uri": {"prefix": "/gone/"}}],
         "directResponse": {"status": 410}},
        {"name": "canary", "match": [{"headers": {"x-canary": {"exact": "1"}},
                                      "withoutHeaders": {"x-internal": {}}},
                                     {"queryParams": {"beta": {"regex": "yes|true"}}}],
         "traffic": [{"revisionName": "shop-2", "percent": 100}],
         "headers": {"request": {"set": {"x-route": "canary"}},
                     "response": {"set": {"cache-control": "no-store"},
                                  "add": {"x-served-by-rule": "canary"}}}},
        {"name": "legacy", "match": [{"authority": {"regex": "old\\..*"}}],
         "redirect": {"authority": "new.example.com", "scheme": "https", "redirectCode": 308}},
        {"name": "moved", "match": [{"uri": {"prefix": "/docs/"}}],
         "redirect": {"uri": "/manual/"}},
        {"name": "v1", "match": [{"uri": {"prefix": "/v1/"}, "ignoreUriCase": True}],
         "rewrite": {"uri": "/api/", "authority": "backend.internal"},
         "headers": {"request": {"add": {"x-added": "one"}, "remove": ["x-secret"]},
                     "response": {"remove": ["x-revision"]}}},
        {"name": "post-only", "match": [{"uri": {"regex": "/orders/[0-9]+"},
                                         "method": {"exact": "POST"}}],
         "rewrite": {"uri": "/orders"}},
    ]


class RouteRulesTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.one, self.two = self.start_echos("shop-1", "shop-2")

    def revgate_config_text(self):
        with open(self.revgate.config_path, encoding="utf-8") as f:
            return f.read()

    def start(self, protocol="http1"):
        svc = service("shop", [("shop-1", [self.one]), ("shop-2", [self.two])],
                      traffic=[{"revisionName": "shop-1", "percent": 100}])
        for revision in svc["revisions"]:
            revision["protocol"] = protocol
        svc["routes"] = rules()
        config = default_config([svc], domainMappings=[{"domain": "*", "service": "shop"}])
        config["listeners"][0]["h2c"] = True
        self.revgate = self.start_revgate(config)
        self.url = f"http://127.0.0.1:{self.revgate.port}"

    def curl(self, path, *args, http2=False, host=HOST):
        """(status, {header: value} lowercased, body) of one request through curl."""
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-D", "-", "-H", f"Host: {host}",
             "--http2-prior-knowledge" if http2 else "--http1.1", *args, self.url + path],
            capture_output=True, timeout=20)   # bytes: text mode would fold the CRLFs
        self.assertEqual(result.returncode, 0, result.stderr)
        head, _, body = result.stdout.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        return status, headers, body

    def echoed(self, path, *args, **kw):
        status, headers, body = self.curl(path, *args, **kw)
        self.assertEqual(status, 200, body)
        return headers, json.loads(body)

    def test_matches_pick_the_rules_traffic_or_the_services(self):
        self.start()
        for http2 in (False, True):
            with self.subTest(client="HTTP/2" if http2 else "HTTP/1.1"):
                _, plain = self.echoed("/cart", http2=http2)
                self.assertEqual(plain["revision"], "shop-1", "no rule: the service's traffic")
                headers, canary = self.echoed("/cart", "-H", "X-Canary: 1", http2=http2)
                self.assertEqual(canary["revision"], "shop-2")
                self.assertEqual(canary["headers"].get("x-route"), "canary", "request set")
                self.assertEqual(headers.get("cache-control"), "no-store", "response set")
                self.assertEqual(headers.get("x-served-by-rule"), "canary", "response add")
                _, internal = self.echoed("/cart", "-H", "X-Canary: 1", "-H", "X-Internal: y",
                                          http2=http2)
                self.assertEqual(internal["revision"], "shop-1", "withoutHeaders")
                _, beta = self.echoed("/cart?beta=true", http2=http2)
                self.assertEqual(beta["revision"], "shop-2", "the second match entry (OR)")
                _, not_beta = self.echoed("/cart?beta=maybe", http2=http2)
                self.assertEqual(not_beta["revision"], "shop-1", "the regex matches the whole value")

    def test_direct_responses_never_reach_a_revision(self):
        self.start()
        before = (self.one.stats(), self.two.stats())
        for http2 in (False, True):
            with self.subTest(client="HTTP/2" if http2 else "HTTP/1.1"):
                status, headers, body = self.curl("/robots.txt", "-H", "X-Canary: 1", http2=http2)
                self.assertEqual((status, body), (200, "User-agent: *\nDisallow: /\n"),
                                 "the first matching rule wins")
                status, _, _ = self.curl("/gone/page", http2=http2)
                self.assertEqual(status, 410)
        self.assertEqual(self.one.requests_since(before[0]) + self.two.requests_since(before[1]),
                         0)

    def test_redirects(self):
        self.start()
        for http2 in (False, True):
            with self.subTest(client="HTTP/2" if http2 else "HTTP/1.1"):
                status, headers, _ = self.curl("/a/b?q=1", host="old.example.com", http2=http2)
                self.assertEqual(status, 308)
                self.assertEqual(headers["location"], "https://new.example.com/a/b?q=1")
                status, headers, _ = self.curl("/docs/intro?x=2", http2=http2)
                self.assertEqual(status, 301, "redirectCode defaults to 301")
                self.assertEqual(headers["location"], f"http://{HOST}/manual/?x=2",
                                 "the path replaced, scheme and host the request's, query kept")

    def test_rewrites_and_header_edits(self):
        self.start()
        for http2 in (False, True):
            with self.subTest(client="HTTP/2" if http2 else "HTTP/1.1"):
                headers, seen = self.echoed("/V1/users/7?page=2", "-H", "X-Secret: s", http2=http2)
                self.assertEqual(seen["target"], "/api/users/7?page=2",
                                 "after a prefix match only the prefix is replaced")
                self.assertEqual(seen["headers"]["host"], "backend.internal")
                self.assertEqual(seen["headers"].get("x-added"), "one")
                self.assertNotIn("x-secret", seen["headers"])
                self.assertNotIn("x-revision", headers, "removed from the response")
                _, post = self.echoed("/orders/42?x=1", "-X", "POST", "-d", "", http2=http2)
                self.assertEqual(post["target"], "/orders?x=1", "a regex match: the whole path")
                _, get = self.echoed("/orders/42", http2=http2)
                self.assertEqual(get["target"], "/orders/42", "method: GET does not match")

    def test_rules_apply_to_h2c_revisions(self):
        self.start(protocol="h2c")
        for http2 in (False, True):
            with self.subTest(client="HTTP/2" if http2 else "HTTP/1.1"):
                headers, canary = self.echoed("/cart", "-H", "X-Canary: 1", http2=http2)
                self.assertEqual(canary["revision"], "shop-2")
                self.assertEqual(canary["headers"].get("x-route"), "canary")
                self.assertEqual(headers.get("cache-control"), "no-store")
                headers, seen = self.echoed("/v1/users", http2=http2)
                self.assertEqual(seen["target"], "/api/users")
                self.assertNotIn("x-revision", headers)

    def test_revgate_route_explains_the_rules(self):
        self.start()
        path = self.write_config(self.revgate_config_text(), "explain.yaml")
        result = self.run_cli("route", "-c", path, "--host", HOST, "--path", "/V1/users?x=1",
                              "--header", "X-Secret: s")
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout
        self.assertIn("routes[0] (robots): no (match[0]: uri exact '/robots.txt')", out)
        self.assertIn("routes[2] (canary): no (match[0]: header x-canary exact '1'; match[1]: "
                      "query parameter beta regex 'yes|true')", out)
        self.assertIn("routes[5] (v1): matched match[0]", out)
        self.assertIn("rewrite:  path /api/users?x=1", out)
        self.assertIn("rewrite:  authority backend.internal", out)
        self.assertIn("request:  remove x-secret", out)
        self.assertIn("response: remove x-revision", out)
        self.assertIn("picked:   shop-1", out)
        redirect = self.run_cli("route", "-c", path, "--host", "old.example.com", "--path", "/a")
        self.assertIn("answer:   308 redirect to https://new.example.com/a", redirect.stdout)
        direct = self.run_cli("route", "-c", path, "--host", HOST, "--path", "/gone/x")
        self.assertIn("answer:   410 from the proxy", direct.stdout)

    def test_revgate_check_warns_about_rules_that_can_never_match(self):
        path = self.write_file("shadow.yaml", """listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: shop
    revisions: [{name: shop-1, endpoints: ["127.0.0.1:9001"]}]
    routes:
      - {name: api, match: [{uri: {prefix: /api/}}], rewrite: {uri: /}}
      - {name: users, match: [{uri: {prefix: /api/users}}], rewrite: {uri: /u}}
""")
        result = self.run_cli("check", "-c", path)
        self.assertEqual(result.returncode, 0, "a warning, not an error")
        self.assertIn("shadow.yaml:7:9: warning: service default/shop: routes[1] (users) can "
                      "never match: routes[0] (api) before it matches every request it would "
                      "[route-shadowed]", result.stderr)

    def test_a_bad_regex_is_named_where_it_is(self):
        path = self.write_file("bad.yaml", """listeners: [{name: web, address: "127.0.0.1:0"}]
services:
  - name: shop
    revisions: [{name: shop-1, endpoints: ["127.0.0.1:9001"]}]
    routes:
      - name: broken
        match: [{uri: {regex: "/a("}}]
""")
        result = self.run_cli("check", "-c", path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("bad.yaml:7:31: routes[0] (broken): uri regex '/a(' is not valid RE2: "
                      "missing ): /a( [route-regex]", result.stderr + result.stdout)


class ConsistentHashTest(IntegrationTest):
    """trafficPolicy.loadBalancer.consistentHash: one revision, echo endpoints named e1..e4
    (each reports its own name), users told apart by a header."""

    def setUp(self):
        super().setUp()
        self.echos = self.start_echos("e1", "e2", "e3", "e4")

    def config(self, endpoints):
        svc = service("shop", [("shop-1", self.echos[:endpoints])])
        svc["trafficPolicy"] = {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}
        return default_config([svc], domainMappings=[{"domain": "*", "service": "shop"}])

    def placement(self, port, users):
        conn = self.http_connection(port)
        seen = {}
        for user in users:
            conn.request("GET", "/", headers={"Host": HOST, "X-User": user})
            response = conn.getresponse()
            seen[user] = json.loads(response.read())["revision"]
        return seen

    def test_a_user_keeps_its_endpoint_and_an_added_one_takes_about_a_quarter(self):
        revgate = self.start_revgate(self.config(3))
        users = [f"user-{i}" for i in range(400)]
        first = self.placement(revgate.port, users)
        self.assertEqual(self.placement(revgate.port, users), first, "the same endpoint again")
        counts = {name: list(first.values()).count(name) for name in ("e1", "e2", "e3")}
        for name, n in counts.items():
            self.assertGreater(n, 80, f"{name}: keys spread over the endpoints {counts}")
        config = self.config(4)
        config["listeners"][0]["address"] = f"127.0.0.1:{revgate.port}"
        config["admin"]["address"] = f"127.0.0.1:{revgate.admin_port}"
        self.write_config(config)
        revgate.signal(signal.SIGHUP)
        self.eventually(lambda: "e4" in self.placement(revgate.port, users).values(), True,
                        "the added endpoint in use after the reload", timeout=5)
        after = self.placement(revgate.port, users)
        moved = [u for u in users if after[u] != first[u]]
        self.assertTrue(all(after[u] == "e4" for u in moved), "keys move only to the new one")
        self.assertGreater(len(moved), 400 * 0.15, f"{len(moved)} moved")
        self.assertLess(len(moved), 400 * 0.35, f"{len(moved)} moved: about 1/4, not a reshuffle")


if __name__ == "__main__":
    unittest.main()
