"""What the proxy does to headers (SPEC section 5): hop-by-hop headers removed both ways,
forwarding headers added, Host passed through."""

import unittest
import urllib.parse

from harness import IntegrationTest, UUID4_RE, default_config, service

HELLO = "hello.default.example.com"
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade")


def echo_headers_target(*headers):
    """/_echo/headers?h=Name:Value&... (form-encoded)."""
    return "/_echo/headers?" + "&".join(
        "h=" + urllib.parse.quote_plus(h, safe=":") for h in headers)


class HeadersTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")
        config = default_config(
            [service("hello", [("hello-00001", [self.echo])], namespace="default"),
             service("shop", [("shop-00007", [self.echo])], namespace="prod")],
            domainMappings=[{"domain": "*", "service": "hello"}])
        self.proxy = self.start_revgate(config)

    # ------------------------------------------------------------------ request direction

    def test_hop_by_hop_request_headers_are_removed(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(host=HELLO, headers=[
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "foo"),
            ("Trailer", "X-Checksum"),
            ("X-End-To-End", "kept"),
        ])
        self.assertEqual(resp.status, 200, resp)
        seen = resp.json()["headers"]
        for name in HOP_BY_HOP + ("x-hop",):
            self.assertNotIn(name, seen, f"hop-by-hop {name} reached the backend: {seen}")
        self.assertEqual(seen.get("x-end-to-end"), "kept")
        # still keep-alive towards the client
        resp2 = conn.request(host=HELLO)
        self.assertEqual(resp2.status, 200)

    def test_headers_named_by_several_connection_fields_are_removed(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(host=HELLO, headers=[
            ("Connection", "X-A"), ("X-A", "1"), ("X-Keep", "yes"),
            ("Connection", "x-b , X-C"), ("X-B", "2"), ("x-c", "3")])
        self.assertEqual(resp.status, 200, resp)
        seen = resp.json()["headers"]
        for name in ("connection", "x-a", "x-b", "x-c"):
            self.assertNotIn(name, seen, seen)
        self.assertEqual(seen.get("x-keep"), "yes")

    # ----------------------------------------------------------------- response direction

    def test_hop_by_hop_response_headers_are_removed(self):
        conn = self.connect(self.proxy.port)
        target = echo_headers_target(
            "Connection:X-Hop", "X-Hop:1", "Keep-Alive:timeout=5", "Proxy-Connection:keep-alive",
            "Upgrade:foo", "Trailer:X-Checksum", "TE:trailers", "X-End:yes")
        resp = conn.request(target=target, host=HELLO)
        self.assertEqual(resp.status, 200, resp)
        names = {k.lower() for k, _ in resp.headers}
        for name in ("x-hop", "keep-alive", "proxy-connection", "upgrade", "trailer", "te"):
            self.assertNotIn(name, names, f"hop-by-hop {name} reached the client: {resp.headers}")
        for value in resp.header_all("connection"):
            self.assertNotIn("x-hop", value.lower(), resp.headers)
        self.assertEqual(resp.header("x-end"), "yes")
        self.assertEqual(resp.header("x-revision"), "hello-00001")
        resp2 = conn.request(host=HELLO)
        self.assertEqual(resp2.status, 200, "the client connection stays keep-alive")

    def test_backend_connection_close_is_not_passed_to_the_client(self):
        conn = self.connect(self.proxy.port)
        target = echo_headers_target("Connection:X-Hop, close", "X-Hop:1")
        resp = conn.request(target=target, host=HELLO)
        self.assertEqual(resp.status, 200, resp)
        self.assertFalse(resp.has_header("x-hop"), resp.headers)
        for value in resp.header_all("connection"):
            self.assertNotIn("close", value.lower(),
                             "the backend's Connection: close is hop-by-hop; the client "
                             f"connection should stay open: {resp.headers}")
        # The upstream connection was closed by the backend; the client's goes on.
        for _ in range(3):
            again = conn.request(host=HELLO)
            self.assertEqual(again.status, 200, again)

    def test_backend_close_delimited_response_is_reframed(self):
        # /_echo/close answers with Connection: close; the client still gets a complete body
        conn = self.connect(self.proxy.port)
        resp = conn.request(target="/_echo/close", host=HELLO)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["target"], "/_echo/close")
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200)

    # ------------------------------------------------------------------ added upstream

    def test_x_forwarded_for_is_set(self):
        seen = self.get_json(self.proxy.port, host=HELLO)["headers"]
        self.assertEqual(seen.get("x-forwarded-for"), "127.0.0.1")

    def test_x_forwarded_for_is_appended_to(self):
        seen = self.get_json(self.proxy.port, host=HELLO,
                             headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"})["headers"]
        self.assertEqual(seen.get("x-forwarded-for"), "203.0.113.7, 198.51.100.2, 127.0.0.1")

    def test_x_forwarded_for_on_several_lines_is_appended_to(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(host=HELLO, headers=[("X-Forwarded-For", "203.0.113.7"),
                                                 ("X-Forwarded-For", "198.51.100.2")])
        self.assertEqual(resp.json()["headers"].get("x-forwarded-for"),
                         "203.0.113.7, 198.51.100.2, 127.0.0.1")

    def test_x_forwarded_proto_is_http(self):
        seen = self.get_json(self.proxy.port, host=HELLO)["headers"]
        self.assertEqual(seen.get("x-forwarded-proto"), "http")
        spoofed = self.get_json(self.proxy.port, host=HELLO,
                                headers={"X-Forwarded-Proto": "https"})["headers"]
        self.assertEqual(spoofed.get("x-forwarded-proto"), "http",
                         "the scheme of the downstream connection, not the client's claim")

    def test_x_request_id_is_a_fresh_uuid4_when_absent(self):
        ids = set()
        for _ in range(50):
            seen = self.get_json(self.proxy.port, host=HELLO)["headers"]
            rid = seen.get("x-request-id")
            self.assertIsNotNone(rid, seen)
            self.assertRegex(rid, UUID4_RE)
            ids.add(rid)
        self.assertEqual(len(ids), 50, "request ids must be unique")

    def test_x_request_id_is_kept_when_present(self):
        seen = self.get_json(self.proxy.port, host=HELLO,
                             headers={"X-Request-Id": "my-trace-123"})["headers"]
        self.assertEqual(seen.get("x-request-id"), "my-trace-123")

    def test_knative_serving_headers_are_added(self):
        seen = self.get_json(self.proxy.port, host=HELLO)["headers"]
        self.assertEqual(seen.get("knative-serving-revision"), "hello-00001")
        self.assertEqual(seen.get("knative-serving-namespace"), "default")
        prod = self.get_json(self.proxy.port, host="shop.prod.example.com")["headers"]
        self.assertEqual(prod.get("knative-serving-revision"), "shop-00007")
        self.assertEqual(prod.get("knative-serving-namespace"), "prod")

    def test_knative_serving_headers_from_the_client_are_replaced(self):
        seen = self.get_json(self.proxy.port, host=HELLO, headers={
            "Knative-Serving-Revision": "evil", "Knative-Serving-Namespace": "kube-system"})
        self.assertEqual(seen["headers"].get("knative-serving-revision"), "hello-00001")
        self.assertEqual(seen["headers"].get("knative-serving-namespace"), "default")

    def test_host_is_passed_through_unchanged(self):
        for host in (HELLO, "Hello.Default.Example.COM:8080", f"127.0.0.1:{self.proxy.port}",
                     "www.example.org."):
            conn = self.connect(self.proxy.port)
            resp = conn.request(host=host)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.json()["headers"].get("host"), host)

    def test_method_target_and_other_headers_pass_through(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(method="DELETE", target="/a/b%20c?x=1&y=%2F", host=HELLO,
                            headers=[("Authorization", "Bearer t0k3n"), ("Cookie", "a=1; b=2"),
                                     ("X-Empty", ""), ("User-Agent", "it/1.0")])
        self.assertEqual(resp.status, 200, resp)
        data = resp.json()
        self.assertEqual(data["method"], "DELETE")
        self.assertEqual(data["target"], "/a/b%20c?x=1&y=%2F")
        self.assertEqual(data["headers"].get("authorization"), "Bearer t0k3n")
        self.assertEqual(data["headers"].get("cookie"), "a=1; b=2")
        self.assertEqual(data["headers"].get("user-agent"), "it/1.0")
        self.assertEqual(data["headers"].get("x-empty"), "")

    def test_response_status_and_headers_pass_through(self):
        conn = self.connect(self.proxy.port)
        target = echo_headers_target("Set-Cookie:a=1", "Cache-Control:no-store", "X-Multi:1")
        resp = conn.request(target=target, host=HELLO)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("set-cookie"), "a=1")
        self.assertEqual(resp.header("cache-control"), "no-store")
        self.assertEqual(resp.header("content-type"), "application/json")
        for code in (201, 204, 301, 404, 418, 500, 503):
            resp = conn.request(target=f"/_echo/status/{code}", host=HELLO)
            self.assertEqual(resp.status, code, resp)
            self.assertEqual(resp.header("x-revision"), "hello-00001")

    def test_http10_client(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(host=HELLO, version="HTTP/1.0")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["headers"].get("host"), HELLO)
        self.assertTrue(conn.closed_by_peer(), "HTTP/1.0 without keep-alive: the proxy closes")


if __name__ == "__main__":
    unittest.main()
