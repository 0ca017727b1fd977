"""WebSocket and other HTTP/1.1 upgrades (README "WebSockets and other upgrades"), with Debian's
python3-websockets as the client and `revgate echo`'s WebSocket echo as the revision: the split
per connection, messages both ways, a close from either side, upgrades a service does not allow,
half-close through a raw tunnel, the idle timeout, SIGTERM and a reload that removes the
revision, and what metrics and the access log say of a tunnel."""

import asyncio
import json
import os
import signal
import socket
import ssl
import threading
import time
import unittest

import websockets

from harness import (LOOPBACK, IntegrationTest, RawConnection, default_config, metric_sum,
                     service)
from test_tls import make_pki
from test_upstream_tls import make_ca, make_leaf

HELLO = "hello.default.example.com"


def connect(port, host=HELLO, path="/chat", tls=None):
    # The URI names the host (the Host header routing reads); the socket goes to loopback.
    options = {"ssl": tls, "server_hostname": host} if tls else {}
    return websockets.connect(f"{'wss' if tls else 'ws'}://{host}:{port}{path}", host=LOOPBACK,
                              port=port, open_timeout=5, close_timeout=2, max_size=None,
                              **options)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def upgrade_request(host=HELLO, upgrade="websocket", connection="Upgrade", extra=()):
    lines = ["GET /chat HTTP/1.1", f"Host: {host}", f"Connection: {connection}",
             f"Upgrade: {upgrade}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_until(sock, marker, limit=65536):
    data = b""
    while marker not in data and len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


class WebSocketTest(IntegrationTest):
    def start_split(self, percents=(70, 30), **service_keys):
        self.a, self.b = self.start_echos("hello-00001", "hello-00002")
        traffic = [{"revisionName": "hello-00001", "percent": percents[0]},
                   {"revisionName": "hello-00002", "percent": percents[1], "tag": "canary"}]
        svc = service("hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])], traffic)
        svc.update(service_keys)
        return default_config([svc])

    def test_each_connection_is_split_and_messages_go_both_ways(self):
        config = self.start_split()
        log_path = os.path.join(self.tmpdir, "access.log")
        config["accessLog"] = {"path": log_path, "format": "json"}
        proxy = self.start_revgate(config)

        async def session():
            seen = []
            for _ in range(20):
                async with connect(proxy.port) as ws:
                    seen.append(ws.response_headers.get("x-revision"))
                    await ws.send("hello")
                    self.assertEqual(await ws.recv(), "hello")
            async with connect(proxy.port) as ws:
                big = os.urandom(1 << 20)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big, "1 MiB binary message, unchanged")
                for i in range(100):
                    await ws.send(f"message {i}")
                for i in range(100):
                    self.assertEqual(await ws.recv(), f"message {i}")
            return seen
        seen = run(session())
        # smooth weighted round robin over one worker: 70/30 exactly, one pick per connection
        self.assertEqual({r: seen.count(r) for r in set(seen)},
                         {"hello-00001": 14, "hello-00002": 6})
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="101"), 21, "21 tunnels, each a request")
        samples = proxy.metrics()
        # the big connection alone moved > 1 MiB each way (frames add a few bytes)
        self.assertGreater(metric_sum(samples, "istio_request_bytes_sum", response_code="101"),
                           (1 << 20) + 20 * 5)
        self.assertGreater(metric_sum(samples, "istio_response_bytes_sum", response_code="101"),
                           (1 << 20) + 20 * 5)
        proxy.signal(signal.SIGTERM)
        self.assertEqual(proxy.wait(10), 0, proxy.describe())
        with open(log_path, encoding="utf-8") as log:
            lines = [json.loads(line) for line in log]
        tunnels = [line for line in lines if line["response_code"] == 101]
        self.assertEqual(len(tunnels), 21, lines[:3])
        for line in tunnels:
            self.assertEqual((line["method"], line["path"], line["authority"]),
                             ("GET", "/chat", f"{HELLO}:{proxy.port}"), line)
            self.assertGreater(line["bytes_received"], 0, line)
            self.assertGreater(line["bytes_sent"], 0, line)
        self.assertEqual(sorted(line["revision"] for line in tunnels[:20]), sorted(seen))
        self.assertGreater(max(line["duration"] for line in tunnels), 0)

    def test_a_close_from_either_side_ends_the_tunnel(self):
        proxy = self.start_revgate(self.start_split((100, 0)))

        async def session():
            async with connect(proxy.port) as ws:  # the client closes (leaving the block)
                await ws.send("one")
                await ws.recv()
            async with connect(proxy.port) as ws:
                await ws.send("!close")  # the echo closes: 1000 "bye"
                with self.assertRaises(websockets.ConnectionClosedOK):
                    await ws.recv()
                return ws.close_code, ws.close_reason
        self.assertEqual(run(session()), (1000, "bye"))
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="101", response_flags="-"), 2,
                        "both tunnels ended and were counted, without a flag")
        self.eventually(lambda: metric_sum(proxy.metrics(), "revgate_downstream_connections_open"),
                        0, "both connections closed")

    def test_a_sticky_cookie_and_debug_headers_come_with_the_101(self):
        config = self.start_split((50, 50), splitPolicy="hash", debugHeaders=True,
                                  hashOn={"cookie": {"name": "rg", "ttl": "60s"}})
        proxy = self.start_revgate(config)

        async def session():
            pinned = {}
            for _ in range(10):
                async with connect(proxy.port) as ws:
                    headers = ws.response_headers
                    self.assertEqual(headers["x-revgate-revision"], headers["x-revision"])
                    token = headers["set-cookie"].split(";")[0]
                    pinned[token] = headers["x-revision"]
            self.assertEqual(set(pinned.values()), {"hello-00001", "hello-00002"},
                             "new clients spread over both revisions")
            for token, revision in pinned.items():
                async with websockets.connect(
                        f"ws://{HELLO}:{proxy.port}/chat", host=LOOPBACK, port=proxy.port,
                        extra_headers={"Cookie": token}, open_timeout=5) as ws:
                    self.assertEqual(ws.response_headers["x-revision"], revision, token)
                    self.assertNotIn("set-cookie", ws.response_headers)
        run(session())

    def test_wss_through_a_tls_listener(self):
        make_pki(self.tmpdir)
        config = self.start_split((100, 0))
        config["listeners"] = [{"name": "https", "address": f"{LOOPBACK}:0", "tls": {
            "certificates": [{"certFile": "example.crt", "keyFile": "example.key"}]}}]
        proxy = self.start_revgate(config)
        context = ssl.create_default_context(cafile=os.path.join(self.tmpdir, "ca.crt"))

        async def session():
            async with connect(proxy.port, tls=context) as ws:
                big = os.urandom(300_000)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
            async with connect(proxy.port, tls=context) as ws:
                await ws.send("!close")
                with self.assertRaises(websockets.ConnectionClosedOK):
                    await ws.recv()
        run(session())
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="101"), 2, "both wss tunnels counted")

    def test_upgrades_a_service_does_not_allow_are_403_and_h2c_is_dropped(self):
        config = self.start_split((100, 0))
        config["services"].append(service("closed", [("closed-00001", [self.a])]))
        config["services"][1]["upgradeTypes"] = []
        proxy = self.start_revgate(config)

        async def refused():
            with self.assertRaises(websockets.InvalidStatusCode) as caught:
                async with connect(proxy.port, host="closed.default.example.com"):
                    pass
            return caught.exception.status_code
        self.assertEqual(run(refused()), 403)
        with RawConnection(proxy.port) as conn:
            conn.send(upgrade_request(upgrade="foo/2"))
            response = conn.read_response()
            self.assertEqual(response.status, 403, "foo is not in the default [websocket]")
            # the connection serves on: the refusal is an ordinary reply
            self.assertEqual(conn.request(host=HELLO).status, 200)
            conn.send(upgrade_request(upgrade="h2c", connection="Upgrade, HTTP2-Settings",
                                      extra=["HTTP2-Settings: AAMAAABkAARAAAAA"]))
            response = conn.read_response()
            self.assertEqual(response.status, 200, "h2c is never sent on: a plain request")
            echoed = response.json()["headers"]
            self.assertNotIn("upgrade", echoed)
            self.assertNotIn("http2-settings", echoed, "named by Connection: hop-by-hop")
        self.assertEqual(self.a.requests_seen(), 2, "the refused upgrade never reached it")

    def test_half_close_passes_through_a_tunnel(self):
        def backend(fake, sock, index):
            head = fake.read_head(sock)
            if b"upgrade: foo" not in head.lower():
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                         b"Upgrade: foo\r\n\r\nwelcome\n")
            while True:  # upper-cases until the client's FIN, then says bye and closes
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data.upper())
            sock.sendall(b"bye\n")
            sock.close()
        fake = self.start_fake_backend(backend)
        svc = service("hello", [("hello-00001", [fake.address])])
        svc["upgradeTypes"] = ["foo", "websocket"]
        proxy = self.start_revgate(default_config([svc]))
        sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(upgrade_request(upgrade="foo"))
        head = read_until(sock, b"welcome\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertIn(b"\r\nUpgrade: foo\r\n", head)
        self.assertIn(b"\r\nConnection: upgrade\r\n", head)
        self.assertTrue(head.endswith(b"\r\n\r\nwelcome\n"), "bytes after the 101 come along")
        sock.sendall(b"ping")
        self.assertEqual(read_until(sock, b"PING"), b"PING")
        sock.shutdown(socket.SHUT_WR)  # the client is done sending, not receiving
        rest = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        self.assertEqual(rest, b"bye\n", "the backend saw the FIN and could still answer")
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_request_bytes_sum",
                                           response_code="101"), 4.0, "4 bytes to the backend")
        self.assertEqual(metric_sum(proxy.metrics(), "istio_response_bytes_sum",
                                    response_code="101"), len(b"welcome\nPINGbye\n"))

    def test_a_tunnel_to_an_https_endpoint_ends_when_the_backend_closes(self):
        make_ca(self.tmpdir, "ca")
        make_leaf(self.tmpdir, "ca", "backend", "IP:127.0.0.1")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(self.tmpdir, "backend.crt"),
                                os.path.join(self.tmpdir, "backend.key"))
        listener = socket.create_server((LOOPBACK, 0))
        self.addCleanup(listener.close)

        def serve():  # one TLS connection: 101, echo "a" upper-cased, then close
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += tls.recv(65536)
                tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                            b"Upgrade: foo\r\n\r\n")
                tls.sendall(tls.recv(65536).upper())
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        svc = service("hello", [("hello-00001",
                                 [f"https://127.0.0.1:{listener.getsockname()[1]}"])])
        svc["revisions"][0]["tls"] = {"caFile": "ca.crt"}
        svc["upgradeTypes"] = ["foo"]
        proxy = self.start_revgate(default_config([svc]))
        sock = socket.create_connection((LOOPBACK, proxy.port), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(upgrade_request(upgrade="foo"))
        self.assertTrue(read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101 "))
        sock.sendall(b"over tls")
        self.assertEqual(read_until(sock, b"OVER TLS"), b"OVER TLS")
        self.assertEqual(sock.recv(100), b"", "the backend's close ends the tunnel")
        thread.join(5)
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="101"), 1, "the tunnel, counted")

    def test_a_non_101_answer_is_an_ordinary_response(self):
        def backend(fake, sock, index):
            for _ in range(2):
                if not fake.read_head(sock):
                    return
                sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope")
        fake = self.start_fake_backend(backend)
        proxy = self.start_revgate(default_config([service(
            "hello", [("hello-00001", [fake.address])])]))
        with RawConnection(proxy.port) as conn:
            for _ in range(2):
                conn.send(upgrade_request())
                response = conn.read_response()
                self.assertEqual((response.status, response.body), (426, b"nope"))
        self.assertEqual(fake.connections, 1, "one pooled upstream connection for both")

    def test_an_idle_tunnel_is_closed_after_tunnel_idle(self):
        config = self.start_split((100, 0))
        config["timeouts"] = {"tunnelIdle": "1s"}
        proxy = self.start_revgate(config)

        async def session():
            async with connect(proxy.port) as ws:
                await ws.send("still here")
                await ws.recv()
                started = time.monotonic()
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                return time.monotonic() - started
        idle = run(session())
        self.assertGreater(idle, 0.9)
        self.assertLess(idle, 4)
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="101", response_flags="SI"), 1,
                        "counted with Envoy's stream idle timeout flag")

    def test_sigterm_lets_a_tunnel_go_on_until_the_grace_ends(self):
        config = self.start_split((100, 0))
        config["timeouts"] = {"shutdownGrace": "2s"}
        proxy = self.start_revgate(config)

        async def session():
            async with connect(proxy.port) as ws:
                await ws.send("before")
                self.assertEqual(await ws.recv(), "before")
                proxy.signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                await ws.send("during the drain")
                self.assertEqual(await ws.recv(), "during the drain")
                started = time.monotonic()
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                return time.monotonic() - started
        closed_after = run(session())
        self.assertLess(closed_after, 3.5)
        self.assertEqual(proxy.wait(10), 0, proxy.describe())

    def test_a_reload_that_removes_the_revision_ends_its_tunnels_after_the_grace(self):
        config = self.start_split((100, 0))
        config["timeouts"] = {"shutdownGrace": "1s"}
        proxy = self.start_revgate(config)

        async def session():
            async with connect(proxy.port) as kept, \
                    connect(proxy.port, host=f"canary-{HELLO}") as removed:
                self.assertEqual(kept.response_headers["x-revision"], "hello-00001")
                self.assertEqual(removed.response_headers["x-revision"], "hello-00002")
                smaller = default_config([service("hello", [("hello-00001", [self.a])])])
                smaller["timeouts"] = {"shutdownGrace": "1s"}
                smaller["listeners"][0]["address"] = f"{LOOPBACK}:{proxy.port}"
                smaller["admin"]["address"] = f"{LOOPBACK}:{proxy.admin_port}"
                self.write_config(smaller)
                proxy.signal(signal.SIGHUP)
                await removed.send("still open during the grace")
                await removed.recv()
                started = time.monotonic()
                with self.assertRaises(websockets.ConnectionClosed):
                    while True:
                        await removed.recv()
                closed_after = time.monotonic() - started
                await asyncio.sleep(1.5)
                await kept.send("the kept revision's tunnel goes on")
                self.assertEqual(await kept.recv(), "the kept revision's tunnel goes on")
                return closed_after
        self.assertLess(run(session()), 3.5)


if __name__ == "__main__":
    unittest.main()
