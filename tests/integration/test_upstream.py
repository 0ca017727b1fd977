"""The upstream side (SPEC sections 4-5): pooled and reused connections, round robin across a
revision's endpoints, 502 for dead or misbehaving endpoints, 504 on upstream timeout."""

import time
import unittest

from harness import IntegrationTest, dead_port, default_config, service

HELLO = "hello.default.example.com"


class ReuseTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [self.echo])])])
        self.proxy = self.start_revgate(config)

    def test_200_requests_on_one_client_connection_reuse_upstream_connections(self):
        conn = self.http_connection(self.proxy.port)
        for i in range(200):
            conn.request("GET", f"/{i}", headers={"Host": HELLO})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
        stats = self.echo.stats()
        self.assertEqual(stats["requests"] - 1, 200)
        self.assertLessEqual(stats["accepted_connections"] - 1, 2,
                             "upstream connections must be pooled and reused, "
                             f"not one per request: {stats}")

    def test_sequential_client_connections_share_the_pool(self):
        for _ in range(10):
            conn = self.http_connection(self.proxy.port)
            for _ in range(10):
                conn.request("GET", "/", headers={"Host": HELLO})
                conn.getresponse().read()
            conn.close()
        stats = self.echo.stats()
        self.assertEqual(stats["requests"] - 1, 100)
        self.assertLessEqual(stats["accepted_connections"] - 1, 2, stats)

    def test_bodies_do_not_spoil_reuse(self):
        conn = self.connect(self.proxy.port)
        for i in range(20):
            resp = conn.request(method="POST", target="/p", host=HELLO, body=b"z" * (i * 1000))
            self.assertEqual(resp.json()["body_bytes"], i * 1000)
            resp = conn.request(target="/_echo/bytes/3000", host=HELLO)
            self.assertEqual(resp.body_length, 3000)
        stats = self.echo.stats()
        self.assertLessEqual(stats["accepted_connections"] - 1, 2, stats)

    def test_backend_closing_its_connection_is_handled(self):
        conn = self.connect(self.proxy.port)
        for _ in range(5):
            resp = conn.request(target="/_echo/close", host=HELLO)
            self.assertEqual(resp.status, 200, resp)
            resp = conn.request(host=HELLO)
            self.assertEqual(resp.status, 200, resp)


class RoundRobinTest(IntegrationTest):
    def test_requests_are_balanced_across_a_revisions_endpoints(self):
        a, b, c = self.start_echos("ep-a", "ep-b", "ep-c")
        config = default_config([service("hello", [("hello-00001", [a, b, c])])])
        proxy = self.start_revgate(config)
        conn = self.http_connection(proxy.port)
        counts = {}
        for _ in range(300):
            conn.request("GET", "/", headers={"Host": HELLO})
            resp = conn.getresponse()
            resp.read()
            counts[resp.getheader("X-Revision")] = counts.get(resp.getheader("X-Revision"), 0) + 1
        self.assertEqual(counts, {"ep-a": 100, "ep-b": 100, "ep-c": 100})


class UpstreamFailureTest(IntegrationTest):
    def proxy_for(self, endpoint, **top):
        config = default_config([service("hello", [("hello-00001", [endpoint])])], **top)
        return self.start_revgate(config)

    def test_dead_endpoint_is_502(self):
        proxy = self.proxy_for(f"127.0.0.1:{dead_port()}")
        conn = self.connect(proxy.port)
        started = time.monotonic()
        conn.send(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = self.read_or_fail(conn, "request to a dead endpoint")
        self.assertEqual(resp.status, 502, resp)
        self.assertLess(time.monotonic() - started, 2, "a refused connect fails fast")
        self.assertTrue((resp.header("content-type") or "").startswith("text/plain"), resp)
        self.assertTrue(resp.body.strip())
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 502, "the client connection stays usable after a 502")

    def test_upstream_timeout_is_504(self):
        echo = self.start_echo("hello-00001")
        proxy = self.proxy_for(echo, timeouts={"upstreamResponse": "1s"})
        conn = self.connect(proxy.port)
        started = time.monotonic()
        conn.send(f"GET /_echo/delay/3000 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = self.read_or_fail(conn, "GET /_echo/delay/3000 with a 1 s upstream timeout")
        elapsed = time.monotonic() - started
        self.assertEqual(resp.status, 504, resp)
        self.assertGreater(elapsed, 0.9)
        self.assertLess(elapsed, 2.5, "504 should come about 1 s in, not when the backend answers")
        self.assertTrue((resp.header("content-type") or "").startswith("text/plain"), resp)
        again = conn.request(target="/_echo/delay/200", host=HELLO)
        self.assertEqual(again.status, 200, "a request under the timeout still passes")

    def test_upstream_closing_before_a_response_is_502(self):
        def handler(backend, sock, index):
            backend.read_head(sock)
            sock.close()

        fake = self.start_fake_backend(handler)
        proxy = self.proxy_for(fake.address)
        resp = self.connect(proxy.port).request(host=HELLO)
        self.assertEqual(resp.status, 502, resp)

    def test_upstream_sending_garbage_is_502(self):
        def handler(backend, sock, index):
            backend.read_head(sock)
            sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            time.sleep(0.5)

        fake = self.start_fake_backend(handler)
        proxy = self.proxy_for(fake.address)
        resp = self.connect(proxy.port).request(host=HELLO)
        self.assertEqual(resp.status, 502, resp)

    def test_pooled_connection_closed_by_the_backend_is_retried(self):
        # The backend answers with keep-alive, then drops the idle connection. The proxy's next
        # bodyless request on that pooled connection must be sent again on a new one, unseen.
        def handler(backend, sock, index):
            head = backend.read_head(sock)
            if not head:
                return
            body = b'{"ok":%d}' % index
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.2)
            sock.close()

        fake = self.start_fake_backend(handler)
        proxy = self.proxy_for(fake.address)
        conn = self.connect(proxy.port)
        for i in range(4):
            resp = conn.request(host=HELLO)
            self.assertEqual(resp.status, 200, f"request {i}: {resp}")
            time.sleep(0.5)  # let the backend close the idle connection

    def test_close_delimited_response_is_relayed_whole(self):
        payload = b"0123456789" * 10000

        def handler(backend, sock, index):
            backend.read_head(sock)
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + payload)
            sock.shutdown(2)

        fake = self.start_fake_backend(handler)
        proxy = self.proxy_for(fake.address)
        conn = self.connect(proxy.port)
        conn.send(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = self.read_or_fail(conn, "close-delimited body")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body, payload)
        # re-framed (chunked) for the HTTP/1.1 client, whose connection stays open
        self.assertEqual(resp.header("transfer-encoding"), "chunked", resp.headers)
        again = conn.request(host=HELLO)
        self.assertEqual(again.body, payload)


if __name__ == "__main__":
    unittest.main()
