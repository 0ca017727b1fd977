"""Errors the proxy makes itself (SPEC section 5): 400, 408, 413, 414, 431, and request
smuggling attempts refused before anything reaches a backend."""

import time
import unittest

from harness import IntegrationTest, KiB, default_config, service

HELLO = "hello.default.example.com"


class ErrorTestBase(IntegrationTest):
    limits = None
    timeouts = None

    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")
        top = {}
        if self.limits:
            top["limits"] = self.limits
        if self.timeouts:
            top["timeouts"] = self.timeouts
        config = default_config([service("hello", [("hello-00001", [self.echo])])], **top)
        self.proxy = self.start_revgate(config)

    def assert_refused(self, raw, status, what, closed=True):
        """Sends `raw` on a new connection: the proxy answers `status` in plain text, then
        closes the connection."""
        conn = self.connect(self.proxy.port, timeout=5)
        conn.send(raw)
        resp = self.read_or_fail(conn, what)
        self.assertEqual(resp.status, status, f"{what}: {resp}")
        self.assertTrue((resp.header("content-type") or "").startswith("text/plain"),
                        f"{what}: {resp.headers}")
        if closed:
            self.assertIn("close", (resp.header("connection") or "").lower(),
                          f"{what}: the reply should say Connection: close: {resp.headers}")
            self.assertTrue(conn.closed_by_peer(3), f"{what}: the proxy kept the connection open")
        return resp

    def assert_backend_untouched(self, what):
        self.assertEqual(self.echo.requests_seen(), 0, f"{what}: a request reached the backend")

    def assert_ok(self, raw, what):
        conn = self.connect(self.proxy.port, timeout=5)
        conn.send(raw)
        resp = self.read_or_fail(conn, what)
        self.assertEqual(resp.status, 200, f"{what}: {resp}")
        return resp


class MalformedTest(ErrorTestBase):
    def test_garbage_request_line(self):
        for raw in (b"HELLO\r\n\r\n", b"this is not http at all\r\n\r\n",
                    b"GET / HTTP/1.1 trailing\r\nHost: x\r\n\r\n", b"GET\x00/ HTTP/1.1\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"):
            with self.subTest(raw=raw[:30]):
                self.assert_refused(raw, 400, f"garbage {raw[:30]!r}")
        self.assert_backend_untouched("garbage request lines")

    def test_missing_host_on_http11(self):
        self.assert_refused(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "no Host")
        self.assert_backend_untouched("no Host")

    def test_two_host_headers(self):
        self.assert_refused(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nHost: evil.example\r\n\r\n"
                            .encode(), 400, "two Host fields")
        self.assert_backend_untouched("two Host fields")

    def test_space_before_colon(self):
        self.assert_refused(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-A : 1\r\n\r\n".encode(), 400,
                            "whitespace between field name and colon (RFC 9112 5.1)")
        self.assert_backend_untouched("space before colon")


class SmugglingTest(ErrorTestBase):
    """Each attempt: 400, the connection closed, and nothing reached the backend."""

    def smuggle(self, head_fields, body, what):
        raw = (f"POST / HTTP/1.1\r\nHost: {HELLO}\r\n" + "".join(f"{f}\r\n" for f in head_fields)
               + "\r\n").encode() + body
        # a second request hidden behind the first: must never reach the backend either
        raw += f"GET /smuggled HTTP/1.1\r\nHost: {HELLO}\r\n\r\n".encode()
        self.assert_refused(raw, 400, what)
        self.assert_backend_untouched(what)

    def test_content_length_and_transfer_encoding(self):
        self.smuggle(["Content-Length: 4", "Transfer-Encoding: chunked"], b"0\r\n\r\n",
                     "Content-Length + Transfer-Encoding")

    def test_transfer_encoding_and_content_length(self):
        self.smuggle(["Transfer-Encoding: chunked", "Content-Length: 0"], b"0\r\n\r\n",
                     "Transfer-Encoding + Content-Length")

    def test_two_different_content_lengths(self):
        self.smuggle(["Content-Length: 5", "Content-Length: 6"], b"hello!",
                     "two different Content-Lengths")

    def test_content_length_list_with_different_values(self):
        self.smuggle(["Content-Length: 5, 6"], b"hello!", "Content-Length: 5, 6")

    def test_invalid_chunk_size(self):
        self.smuggle(["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n",
                     "invalid chunk size zz")

    def test_transfer_encoding_gzip_without_chunked(self):
        self.smuggle(["Transfer-Encoding: gzip"], b"hello", "Transfer-Encoding: gzip")

    def test_chunked_not_last(self):
        self.smuggle(["Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n",
                     "Transfer-Encoding: chunked, gzip")

    def test_obfuscated_transfer_encoding(self):
        self.smuggle(["Transfer-Encoding: xchunked"], b"0\r\n\r\n", "Transfer-Encoding: xchunked")


class SmallLimitsTest(ErrorTestBase):
    limits = {"requestLineBytes": 1024, "requestHeadersBytes": 4096,
              "requestHeaderCount": 10, "requestBodyBytes": 1000}

    def test_request_line_over_the_limit_is_414(self):
        self.assert_ok(f"GET /{'a' * 900} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n".encode(),
                       "a 900-byte target under a 1024-byte limit")
        self.assert_refused(f"GET /{'a' * 2000} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n".encode(),
                            414, "a 2000-byte target over a 1024-byte limit")
        self.assertEqual(self.echo.requests_seen(), 1)

    def test_request_line_over_the_limit_without_its_end_is_414(self):
        # the line is still arriving: the proxy need not wait for its end to refuse it
        conn = self.connect(self.proxy.port, timeout=5)
        conn.send(f"GET /{'a' * 3000}".encode())
        resp = self.read_or_fail(conn, "3000 bytes of request line, no CRLF yet")
        self.assertEqual(resp.status, 414, resp)

    def test_headers_under_the_byte_limit_pass(self):
        self.assert_ok(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-Big: {'b' * 3000}\r\n\r\n".encode(),
                       "3000-byte header under a 4096-byte limit")

    def test_one_header_over_the_byte_limit_is_431(self):
        # the request line is short: this is a header problem (431), not a URI one (414)
        self.assert_refused(
            f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-Big: {'b' * 5000}\r\n\r\n".encode(),
            431, "one 5000-byte header over a 4096-byte limit")
        self.assert_backend_untouched("5000-byte header")

    def test_many_headers_over_the_byte_limit_are_431(self):
        self.assert_refused(
            (f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n"
             + "".join(f"X-H{i}: {'c' * 500}\r\n" for i in range(9)) + "\r\n").encode(),
            431, "9 headers of 500 bytes over a 4096-byte limit")
        self.assert_backend_untouched("9 headers of 500 bytes")

    def test_header_count_over_the_limit_is_431(self):
        ok = "".join(f"X-H{i}: {i}\r\n" for i in range(9))  # + Host = 10 fields
        self.assert_ok(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{ok}\r\n".encode(), "10 fields")
        over = "".join(f"X-H{i}: {i}\r\n" for i in range(10))  # + Host = 11 fields
        self.assert_refused(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{over}\r\n".encode(), 431,
                            "11 fields over a limit of 10")
        self.assertEqual(self.echo.requests_seen(), 1)

    def test_body_over_the_limit_is_413(self):
        self.assert_ok(f"POST / HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: 1000\r\n\r\n"
                       .encode() + b"x" * 1000, "1000-byte body at the limit")
        self.assert_refused(f"POST / HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: 2000\r\n\r\n"
                            .encode() + b"x" * 2000, 413, "Content-Length 2000 over 1000")
        self.assertEqual(self.echo.requests_seen(), 1,
                         "a body known to be too large must not reach the backend")

    def test_chunked_body_over_the_limit_is_413(self):
        conn = self.connect(self.proxy.port, timeout=5)
        conn.send(f"POST / HTTP/1.1\r\nHost: {HELLO}\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode())
        for _ in range(4):
            conn.send(b"200\r\n" + b"y" * 512 + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = self.read_or_fail(conn, "2048-byte chunked body over a 1000-byte limit")
        self.assertEqual(resp.status, 413, resp)
        self.assertTrue(conn.closed_by_peer(3))


class DefaultLimitsTest(ErrorTestBase):
    """The defaults: 16 KiB request line, 60 KiB of request head, 100 fields."""

    def test_request_line_default_limit(self):
        self.assert_ok(f"GET /{'a' * (15 * KiB)} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n".encode(),
                       "15 KiB target")
        self.assert_refused(f"GET /{'a' * (17 * KiB)} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n".encode(),
                            414, "17 KiB target over the default 16 KiB")
        self.assertEqual(self.echo.requests_seen(), 1)

    def test_header_bytes_under_the_default_limit_pass(self):
        fields = "".join(f"X-H{i}: {'v' * 2000}\r\n" for i in range(29))  # ~58 KiB
        resp = self.assert_ok(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{fields}\r\n".encode(),
                              "~58 KiB of headers")
        self.assertEqual(len(resp.json()["headers"]["x-h28"]), 2000)

    def test_many_headers_over_the_default_byte_limit_are_431(self):
        fields = "".join(f"X-H{i}: {'v' * 2000}\r\n" for i in range(31))  # 62,296 bytes of head
        self.assert_refused(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{fields}\r\n".encode(), 431,
                            "31 headers of 2000 bytes (62,296-byte head) over the default 60 KiB")
        self.assert_backend_untouched("62,296-byte head")

    def test_one_header_over_the_default_byte_limit_is_431(self):
        self.assert_refused(
            f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-Big: {'b' * (62 * KiB)}\r\n\r\n".encode(),
            431, "one 62 KiB header over the default 60 KiB")
        self.assert_backend_untouched("one 62 KiB header")

    def test_header_count_default_limit(self):
        ok = "".join(f"X-H{i}: {i}\r\n" for i in range(99))  # + Host = 100 fields
        resp = self.assert_ok(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{ok}\r\n".encode(),
                              "100 fields")
        self.assertEqual(resp.json()["headers"].get("x-h98"), "98")
        over = "".join(f"X-H{i}: {i}\r\n" for i in range(100))  # + Host = 101 fields
        self.assert_refused(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\n{over}\r\n".encode(), 431,
                            "101 fields over the default 100")
        self.assertEqual(self.echo.requests_seen(), 1)


class RequestTimeoutTest(ErrorTestBase):
    timeouts = {"requestHeaders": "1s"}

    def test_slow_request_head_gets_408(self):
        conn = self.connect(self.proxy.port, timeout=5)
        started = time.monotonic()
        conn.send(f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-Slow: ".encode())
        resp = self.read_or_fail(conn, "half a request head, then nothing")
        elapsed = time.monotonic() - started
        self.assertEqual(resp.status, 408, resp)
        self.assertGreater(elapsed, 0.8, "408 before the 1 s requestHeaders timeout")
        self.assertLess(elapsed, 3.0, "408 long after the 1 s requestHeaders timeout")
        self.assertTrue(conn.closed_by_peer(3), "the connection closes after a 408")
        self.assert_backend_untouched("slow head")

    def test_head_trickled_slowly_gets_408(self):
        # each byte resets nothing: the whole head must arrive within the timeout
        conn = self.connect(self.proxy.port, timeout=5)
        started = time.monotonic()
        raw = f"GET / HTTP/1.1\r\nHost: {HELLO}\r\nX-Slow: 0123456789\r\n"
        resp = None
        for i, ch in enumerate(raw):
            try:
                conn.send(ch)
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - started > 3:
                break
        resp = self.read_or_fail(conn, "a head trickled one byte per 100 ms")
        self.assertEqual(resp.status, 408, resp)
        self.assertLess(time.monotonic() - started, 3.5)

    def test_idle_keepalive_connection_is_not_answered_408(self):
        # after a complete exchange, an idle connection is closed quietly (idle timeout), not 408
        conn = self.connect(self.proxy.port, timeout=5)
        resp = conn.request(host=HELLO)
        self.assertEqual(resp.status, 200)
        time.sleep(1.6)
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200, "1.6 s idle is under the default idle timeout")


if __name__ == "__main__":
    unittest.main()
