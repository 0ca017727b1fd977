"""HTTP/2 to revisions (README "HTTP/2 and gRPC"): a revision with `protocol: h2c` is reached
over the worker's multiplexed HTTP/2 connections (`revgate echo` speaks h2c on its port), from
HTTP/2 clients and HTTP/1.1 clients alike; gRPC works end to end (unary, big messages under
flow control, bidirectional streaming, the upstream's own grpc-status); `protocol: h2` dials
https:// endpoints with ALPN h2. Many requests share one upstream connection."""

import json
import os
import queue
import signal
import socket
import subprocess
import time
import unittest

import grpc

from harness import (IntegrationTest, RawConnection, dead_port, default_config, metric_sum,
                     service)
from test_upstream_tls import make_ca, make_leaf

HOST = "hello.default.example.com"


def identity(data):
    return data


def h2c_service(*revisions, traffic=None, protocol="h2c"):
    svc = service("hello", [(name, [echo]) for name, echo in revisions], traffic=traffic)
    for revision in svc["revisions"]:
        revision["protocol"] = protocol
    return svc


class H2UpstreamTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")

    def start(self, services, **top):
        config = default_config(services, **top)
        config["listeners"][0]["h2c"] = True
        self.revgate = self.start_revgate(config)
        self.port = self.revgate.port
        self.url = f"http://127.0.0.1:{self.port}"
        return self.revgate

    def curl(self, *args):
        result = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", f"Host: {HOST}", *args],
                                capture_output=True, text=True, timeout=20)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def channel(self):
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                        options=[("grpc.default_authority", HOST)])
        self.addCleanup(channel.close)
        return channel

    def test_http2_and_http11_clients_reach_the_revision_over_http2(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        for client in (["--http2-prior-knowledge"], ["--http1.1"]):
            body = json.loads(self.curl(*client, "-H", "X-Test: 1", f"{self.url}/a?b=1"))
            self.assertEqual(body["version"], "HTTP/2", client)
            self.assertEqual((body["method"], body["target"]), ("GET", "/a?b=1"))
            headers = body["headers"]
            self.assertEqual(headers["host"], HOST, ":authority from Host")
            self.assertEqual(headers["x-test"], "1")
            self.assertEqual(headers["x-forwarded-proto"], "http")
            self.assertEqual(headers["knative-serving-revision"], "hello-00001")
            self.assertIn("x-request-id", headers)
        head = self.curl("--http1.1", "-o", "/dev/null", "-D", "-", f"{self.url}/_echo/status/503")
        self.assertTrue(head.startswith("HTTP/1.1 503"), head)
        self.assertIn("x-envoy-upstream-service-time:", head.lower())

    def test_request_bodies_both_framings_from_http11_and_http2_clients(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        path = os.path.join(self.tmpdir, "up.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(3_000_000))  # many windows' worth: flow control both hops
        for client in (["--http1.1"], ["--http1.1", "-H", "Transfer-Encoding: chunked"],
                       ["--http2-prior-knowledge"]):
            body = json.loads(self.curl(*client, "--data-binary", f"@{path}", f"{self.url}/up"))
            self.assertEqual((body["method"], body["body_bytes"]), ("POST", 3_000_000), client)

    def test_many_requests_share_one_upstream_connection(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        before = self.echo.stats()
        result = subprocess.run(["nghttp", "-n", "-s", "-m", "100", "-H", f":authority: {HOST}",
                                 f"{self.url}/many"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.count(" 200 "), 100, result.stdout)
        after = self.echo.stats()  # itself one connection and one request
        self.assertEqual(after["requests"] - before["requests"] - 1, 100)
        self.assertEqual(after["accepted_connections"] - before["accepted_connections"] - 1, 1,
                         "100 concurrent streams multiplexed over one upstream connection")
        # HTTP/1.1 clients, one after another on their own connections: the same connection.
        before = self.echo.stats()
        for _ in range(5):
            self.curl("--http1.1", "-o", "/dev/null", f"{self.url}/again")
        self.assertEqual(self.echo.connections_since(before), 0)

    def test_grpc_end_to_end(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        channel = self.channel()
        unary = channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                    response_deserializer=identity)
        response, call = unary.with_call(b"hello grpc", timeout=5)
        self.assertEqual(response, b"hello grpc")
        self.assertEqual(call.code(), grpc.StatusCode.OK, "the upstream's grpc-status trailer")
        self.assertEqual(dict(call.initial_metadata())["x-revision"], "hello-00001")
        big = os.urandom(3_000_000)
        self.assertEqual(unary(big, timeout=10), big, "3 MB each way, 64 KiB windows")

        stream = channel.stream_stream("/revgate.Echo/Stream", request_serializer=identity,
                                       response_deserializer=identity)
        outgoing = queue.Queue()

        def requests():
            while (item := outgoing.get()) is not None:
                yield item
        outgoing.put(b"one")
        responses = stream(requests(), timeout=10)
        for expected in (b"one", b"two", b"three"):
            # Each answer comes back through the proxy before the next message is sent.
            self.assertEqual(next(responses), expected)
            outgoing.put({b"one": b"two", b"two": b"three", b"three": None}[expected])
        self.assertEqual(list(responses), [])
        self.assertEqual(responses.code(), grpc.StatusCode.OK)

        unknown = channel.unary_unary("/revgate.Echo/Nope", request_serializer=identity,
                                      response_deserializer=identity)
        with self.assertRaises(grpc.RpcError) as caught:
            unknown(b"x", timeout=5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED,
                         "the revision's own status, passed through")
        samples = self.revgate.metrics()
        self.assertEqual(metric_sum(samples, "istio_requests_total", request_protocol="grpc",
                                    destination_version="hello-00001"), 4)

    def test_split_over_h2c_revisions(self):
        echo2 = self.start_echo("hello-00002")
        self.start([h2c_service(("hello-00001", self.echo), ("hello-00002", echo2),
                                traffic=[{"revisionName": "hello-00001", "percent": 90},
                                         {"revisionName": "hello-00002", "percent": 10}])])
        before = [self.echo.stats(), echo2.stats()]
        result = subprocess.run(["nghttp", "-n", "-s", "-m", "100", "-H", f":authority: {HOST}",
                                 f"{self.url}/split"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([self.echo.requests_since(before[0]), echo2.requests_since(before[1])],
                         [90, 10], "the smooth split, one pick per stream")

    def test_unreachable_revision_and_deadlines(self):
        slow = self.start_echo("hello-slow", "--delay-ms", "3000")
        svc = h2c_service(("hello-00001", self.echo))
        svc["revisions"][0]["endpoints"] = [f"127.0.0.1:{dead_port()}"]
        slow_svc = h2c_service(("hello-slow", slow))
        slow_svc["name"] = "slow"
        self.start([svc, slow_svc], timeouts={"upstreamResponse": "1s"})
        out = self.curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code}", f"{self.url}/")
        self.assertEqual(out, "502")
        out = self.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                        f"{self.url}/")
        self.assertEqual(out, "502")
        unary = self.channel().unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                           response_deserializer=identity)
        with self.assertRaises(grpc.RpcError) as caught:
            unary(b"x", timeout=5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)

        started = time.monotonic()
        out = subprocess.run(["curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}",
                              "-H", "Host: slow.default.example.com", f"{self.url}/"],
                             capture_output=True, text=True, timeout=20).stdout
        self.assertEqual(out, "504", "timeouts.upstreamResponse")
        self.assertLess(time.monotonic() - started, 2.9)
        slow_channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.default_authority", "slow.default.example.com")])
        self.addCleanup(slow_channel.close)
        with self.assertRaises(grpc.RpcError) as caught:
            slow_channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                     response_deserializer=identity)(b"x", timeout=5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED,
                         "the proxy's 504 UT, gRPC-shaped")
        samples = self.revgate.metrics()
        self.assertEqual(metric_sum(samples, "istio_requests_total", response_flags="UF"), 3)
        self.assertEqual(metric_sum(samples, "istio_requests_total", response_flags="UT"), 2)

    def test_idle_upstream_connection_closes_and_a_new_one_is_made(self):
        self.start([h2c_service(("hello-00001", self.echo))], timeouts={"upstreamIdle": "1s"})
        self.curl("--http1.1", "-o", "/dev/null", f"{self.url}/one")
        before = self.echo.stats()
        time.sleep(2.5)  # past upstreamIdle and the next sweep: GOAWAY, closed
        self.curl("--http1.1", "-o", "/dev/null", f"{self.url}/two")
        self.assertEqual(self.echo.connections_since(before), 1)

    def test_client_gone_mid_response_resets_only_its_stream(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        self.curl("--http1.1", "-o", "/dev/null", f"{self.url}/warm")  # the upstream connection
        before = self.echo.stats()
        # Slow answers the clients do not wait for (an HTTP/1.1 client and an HTTP/2 stream),
        # then requests on the same upstream connection that must still be served.
        with RawConnection(self.port) as conn:
            conn.send(b"GET /_echo/delay/300 HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
            time.sleep(0.1)
        subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "0.2", "-H",
                        f"Host: {HOST}", f"{self.url}/_echo/delay/300"], capture_output=True)
        time.sleep(0.4)  # both answers came and found no client
        for client in ("--http1.1", "--http2-prior-knowledge"):
            out = self.curl(client, "-o", "/dev/null", "-w", "%{http_code}", f"{self.url}/")
            self.assertEqual(out, "200")
        self.assertEqual(self.echo.connections_since(before), 0, "the connection survived")
        samples = self.revgate.metrics()
        self.assertEqual(metric_sum(samples, "istio_requests_total", response_flags="DC"), 2,
                         "both abandoned requests counted as downstream terminations")

    def test_clients_that_do_not_read_hold_up_only_their_own_streams(self):
        # 20 HTTP/1.1 clients ask for 8 MiB each and never read: once their sockets are full
        # (a few MiB each: the kernel's send buffer), each stream stops at its own 64 KiB
        # window, and together they would pass the upstream connection's 1 MiB window. A
        # client that reads, on the same upstream connection, still gets its whole body.
        self.start([h2c_service(("hello-00001", self.echo))])
        self.curl("--http1.1", "-o", "/dev/null", f"{self.url}/warm")
        before = self.echo.stats()
        stalled = []
        for _ in range(20):
            conn = RawConnection(self.port)
            self.addCleanup(conn.close)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.send(b"GET /_echo/bytes/8388608 HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
            stalled.append(conn)
        time.sleep(1.5)   # the stalled responses fill the client sockets, then their windows
        out = self.curl("--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        f"{self.url}/_echo/bytes/2000000")
        self.assertEqual(out, "200 2000000")
        self.assertEqual(self.echo.connections_since(before), 0, "on the same upstream connection")

    def test_upgrade_to_an_h2c_revision_is_refused(self):
        self.start([h2c_service(("hello-00001", self.echo))])
        with RawConnection(self.port) as conn:
            response = conn.request("GET", "/chat", host=HOST, headers=[
                ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
        self.assertEqual(response.status, 403, "HTTP/2 revisions take no HTTP/1.1 Upgrade")

    def test_h2_over_tls_with_alpn(self):
        make_ca(self.tmpdir, "ca")
        make_leaf(self.tmpdir, "ca", "echo", "DNS:echo.test,IP:127.0.0.1")
        echo = self.start_echo("hello-tls", "--tls-cert", os.path.join(self.tmpdir, "echo.crt"),
                               "--tls-key", os.path.join(self.tmpdir, "echo.key"))
        svc = h2c_service(("hello-tls", echo), protocol="h2")
        svc["revisions"][0]["endpoints"] = [f"https://{echo.address}"]
        svc["revisions"][0]["tls"] = {"caFile": os.path.join(self.tmpdir, "ca.crt"),
                                      "serverName": "echo.test"}
        self.start([svc])
        for client in (["--http1.1"], ["--http2-prior-knowledge"]):
            body = json.loads(self.curl(*client, f"{self.url}/secure"))
            self.assertEqual((body["version"], body["revision"]), ("HTTP/2", "hello-tls"), client)
        unary = self.channel().unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                           response_deserializer=identity)
        self.assertEqual(unary(b"over tls", timeout=5), b"over tls")

    def test_reload_to_http1_moves_new_requests(self):
        revgate = self.start([h2c_service(("hello-00001", self.echo))])
        self.assertEqual(json.loads(self.curl("--http1.1", f"{self.url}/"))["version"], "HTTP/2")
        config = default_config([service("hello", [("hello-00001", [self.echo])])])
        config["listeners"][0]["h2c"] = True
        config["listeners"][0]["address"] = f"127.0.0.1:{self.port}"
        config["admin"]["address"] = f"127.0.0.1:{revgate.admin_port}"
        self.write_config(config)
        revgate.signal(signal.SIGHUP)
        self.eventually(lambda: json.loads(self.curl("--http1.1", f"{self.url}/"))["version"],
                        "HTTP/1.1", "protocol: http1 after the reload", timeout=5)


if __name__ == "__main__":
    unittest.main()
