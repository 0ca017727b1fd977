"""Bodies stream both ways (SPEC section 5): 100 MiB up and down with bounded proxy memory,
chunked both ways, Expect: 100-continue, HEAD."""

import hashlib
import json
import os
import time
import unittest

from harness import (IntegrationTest, MiB, PatternChecker, byte_pattern, default_config,
                     service)

HELLO = "hello.default.example.com"
BIG = 100 * MiB
MEMORY_HEADROOM_KIB = 64 * 1024  # the proxy's VmHWM may grow by less than this


class BodiesTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [self.echo])])])
        self.proxy = self.start_revgate(config)
        # warm up (one request), then take the baseline
        status, _, _ = self.get(self.proxy.port, host=HELLO)
        self.assertEqual(status, 200)
        self.baseline = self.proxy.memory()

    def assert_memory_bounded(self, what):
        after = self.proxy.memory()
        grown = after["VmHWM"] - self.baseline["VmHWM"]
        self.assertLess(grown, MEMORY_HEADROOM_KIB,
                        f"{what}: the proxy's peak RSS grew by {grown} KiB "
                        f"(baseline {self.baseline}, after {after}); bodies must stream")

    # ------------------------------------------------------------------ Content-Length

    def test_upload_100_mib_with_content_length(self):
        conn = self.connect(self.proxy.port, timeout=20)
        conn.send(f"POST /upload HTTP/1.1\r\nHost: {HELLO}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n")
        piece = os.urandom(MiB)
        for _ in range(BIG // MiB):
            conn.send(piece)
        resp = conn.read_response()
        self.assertEqual(resp.status, 200, resp)
        data = resp.json()
        self.assertEqual(data["body_bytes"], BIG)
        self.assertEqual(data["method"], "POST")
        self.assertEqual(data["headers"].get("content-length"), str(BIG))
        self.assert_memory_bounded("100 MiB upload")
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200, "keep-alive after a large upload")

    def test_download_100_mib_with_content_length(self):
        conn = self.connect(self.proxy.port, timeout=20)
        checker = PatternChecker()
        conn.send(f"GET /_echo/bytes/{BIG} HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = conn.read_response(sink=checker)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("content-length"), str(BIG))
        self.assertEqual(resp.body_length, BIG)
        self.assertIsNone(checker.bad_at, f"wrong byte at offset {checker.bad_at}")
        self.assert_memory_bounded("100 MiB download")
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200, "keep-alive after a large download")

    def test_download_100_mib_with_curl(self):
        out = self.curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        "-H", f"Host: {HELLO}",
                        f"http://127.0.0.1:{self.proxy.port}/_echo/bytes/{BIG}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.decode(), f"200 {BIG}")
        self.assert_memory_bounded("100 MiB download (curl)")

    # ------------------------------------------------------------------------- chunked

    def test_chunked_upload(self):
        conn = self.connect(self.proxy.port, timeout=20)
        conn.send(f"POST /chunked HTTP/1.1\r\nHost: {HELLO}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n")
        total = 0
        sizes = [1, 10, 4096, 65535, 65536, 65537, MiB, 3 * MiB + 7, 17, 2 * MiB]
        for i, size in enumerate(sizes):
            ext = ";name=value" if i == 2 else ""
            conn.send(f"{size:x}{ext}\r\n".encode() + b"x" * size + b"\r\n")
            total += size
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
        self.assertEqual(resp.status, 200, resp)
        data = resp.json()
        self.assertEqual(data["body_bytes"], total)
        self.assertEqual(data["headers"].get("transfer-encoding"), "chunked",
                         "the upstream request is re-framed chunked")
        self.assertNotIn("content-length", data["headers"])
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200)

    def test_chunked_upload_head_then_all_chunks_at_once(self):
        conn = self.connect(self.proxy.port, timeout=5)
        conn.send(f"POST /c HTTP/1.1\r\nHost: {HELLO}\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.2)  # the head goes upstream first; then the body arrives in one segment
        conn.send("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
        resp = self.read_or_fail(conn, "chunked body sent in one segment after the head (5 s)")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["body_bytes"], 8)

    def test_chunked_upload_with_trailer(self):
        conn = self.connect(self.proxy.port)
        conn.send(f"POST /t HTTP/1.1\r\nHost: {HELLO}\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
        resp = conn.read_response()
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["body_bytes"], 5)
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200, "the trailer section must be consumed")

    def test_chunked_upload_100_mib_memory_bounded(self):
        conn = self.connect(self.proxy.port, timeout=20)
        conn.send(f"POST /big HTTP/1.1\r\nHost: {HELLO}\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % MiB + os.urandom(MiB) + b"\r\n"
        for _ in range(BIG // MiB):
            conn.send(piece)
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["body_bytes"], BIG)
        self.assert_memory_bounded("100 MiB chunked upload")

    def test_chunked_download(self):
        n = 5 * MiB + 123
        conn = self.connect(self.proxy.port, timeout=10)
        checker = PatternChecker()
        conn.send(f"GET /_echo/bytes/{n}?chunked=1 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = self.read_or_fail(conn, f"GET /_echo/bytes/{n}?chunked=1", sink=checker)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("transfer-encoding"), "chunked")
        self.assertFalse(resp.has_header("content-length"), resp.headers)
        self.assertEqual(resp.body_length, n)
        self.assertIsNone(checker.bad_at, f"wrong byte at offset {checker.bad_at}")
        again = conn.request(host=HELLO)
        self.assertEqual(again.status, 200)

    def test_small_chunked_download(self):
        # the whole body, last chunk included, arrives from the backend in one segment
        for n in (1, 100, 65537):
            conn = self.connect(self.proxy.port, timeout=5)
            checker = PatternChecker()
            conn.send(f"GET /_echo/bytes/{n}?chunked=1 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
            resp = self.read_or_fail(conn, f"GET /_echo/bytes/{n}?chunked=1 (5 s)", sink=checker)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.body_length, n)
            self.assertIsNone(checker.bad_at)

    def test_chunked_download_100_mib_memory_bounded(self):
        conn = self.connect(self.proxy.port, timeout=20)
        checker = PatternChecker()
        conn.send(f"GET /_echo/bytes/{BIG}?chunked=1 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        resp = conn.read_response(sink=checker)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.body_length, BIG)
        self.assertIsNone(checker.bad_at, f"wrong byte at offset {checker.bad_at}")
        self.assert_memory_bounded("100 MiB chunked download")

    def test_chunked_download_with_curl(self):
        n = 3 * MiB + 5
        path = os.path.join(self.tmpdir, "down.bin")
        out = self.curl("-o", path, "-w", "%{http_code}", "-H", f"Host: {HELLO}",
                        f"http://127.0.0.1:{self.proxy.port}/_echo/bytes/{n}?chunked=1", timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.decode(), "200")
        with open(path, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), n)
        self.assertEqual(hashlib.sha256(got).hexdigest(),
                         hashlib.sha256(byte_pattern(0, n)).hexdigest())

    def test_chunked_download_to_http10_client_is_close_delimited(self):
        n = 100_000
        conn = self.connect(self.proxy.port)
        checker = PatternChecker()
        conn.send(f"GET /_echo/bytes/{n}?chunked=1 HTTP/1.0\r\nHost: {HELLO}\r\n\r\n")
        resp = conn.read_response(sink=checker)
        self.assertEqual(resp.status, 200, resp)
        self.assertNotIn("chunked", (resp.header("transfer-encoding") or ""),
                         "HTTP/1.0 has no chunked coding")
        self.assertEqual(resp.body_length, n)
        self.assertIsNone(checker.bad_at)

    # ------------------------------------------------------------------ real clients

    def test_curl_upload_with_expect_100_continue(self):
        path = os.path.join(self.tmpdir, "up.bin")
        size = 3 * MiB + 11
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        started = time.monotonic()
        out = self.curl("--data-binary", f"@{path}", "-H", "Expect: 100-continue",
                        "-H", f"Host: {HELLO}", "-H", "Content-Type: application/octet-stream",
                        f"http://127.0.0.1:{self.proxy.port}/up")
        elapsed = time.monotonic() - started
        self.assertEqual(out.returncode, 0, out.stderr)
        data = json.loads(out.stdout)
        self.assertEqual(data["body_bytes"], size)
        self.assertNotIn("expect", data["headers"])
        # curl waits 1 s for 100 Continue before sending anyway: the proxy should answer it
        self.assertLess(elapsed, 0.9, "no 100 Continue from the proxy: curl waited its 1 s")

    def test_curl_chunked_upload(self):
        path = os.path.join(self.tmpdir, "up.bin")
        size = 2 * MiB + 3
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        out = self.curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{path}",
                        "-H", f"Host: {HELLO}", f"http://127.0.0.1:{self.proxy.port}/up",
                        timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["body_bytes"], size)

    def test_head_request(self):
        conn = self.connect(self.proxy.port)
        resp = conn.request(method="HEAD", target="/_echo/bytes/1000", host=HELLO)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.header("content-length"), "1000")
        again = conn.request(host=HELLO)  # would break if a body followed the HEAD response
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["method"], "GET")

    def test_pipelined_requests(self):
        conn = self.connect(self.proxy.port)
        conn.send((f"GET /1 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n"
                   f"POST /2 HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: 3\r\n\r\nabc"
                   f"GET /_echo/bytes/10 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n"))
        r1, r2, r3 = conn.read_response(), conn.read_response(), conn.read_response()
        self.assertEqual(r1.json()["target"], "/1")
        self.assertEqual((r2.json()["target"], r2.json()["body_bytes"]), ("/2", 3))
        self.assertEqual(r3.body, b"abcdefghij")


if __name__ == "__main__":
    unittest.main()
