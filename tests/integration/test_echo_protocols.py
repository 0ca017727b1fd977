"""`revgate echo` speaks more than HTTP/1.1 (README "Command line", echo): HTTP/2 with prior
knowledge on the same port (curl --http2-prior-knowledge, nghttp from nghttp2-client), a
gRPC-shaped echo (Debian's python3-grpcio, generic calls, no codegen): unary, bidirectional
streaming that answers each message before the client is done, and UNIMPLEMENTED for any other
method; and with --tls-cert/--tls-key the same over TLS, ALPN choosing h2 or http/1.1, WebSocket
included. These are the backends HTTP/2, gRPC and https:// revisions are tested against."""

import asyncio
import json
import os
import queue
import shutil
import ssl
import subprocess
import unittest

import grpc
import websockets

from harness import IntegrationTest
from test_upstream_tls import make_ca, make_leaf


def identity(data):
    return data


class EchoProtocolsTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")
        self.url = f"http://{self.echo.address}"

    def curl(self, *args):
        result = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                                text=True, timeout=20)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_http2_with_prior_knowledge_and_http11_on_one_port(self):
        before = self.echo.stats()
        body = json.loads(self.curl("--http2-prior-knowledge", "-H", "X-Test: 1", "-d", "abc",
                                    f"{self.url}/hello?x=1"))
        self.assertEqual((body["version"], body["method"], body["target"], body["revision"]),
                         ("HTTP/2", "POST", "/hello?x=1", "hello-00001"))
        self.assertEqual(body["headers"]["x-test"], "1")
        self.assertEqual(body["headers"]["host"], self.echo.address, ":authority as host")
        self.assertEqual(body["body_bytes"], 3)
        head = self.curl("--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", self.url)
        self.assertTrue(head.startswith("HTTP/2 200"), head)
        self.assertIn("x-revision: hello-00001", head)
        self.assertEqual(json.loads(self.curl(self.url))["version"], "HTTP/1.1")
        self.assertEqual(self.echo.requests_since(before), 3)

    def test_http2_status_and_delay_targets(self):
        def status_and_seconds(target):
            out = self.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w",
                            "%{http_code} %{time_total}", f"{self.url}{target}")
            code, seconds = out.split()
            return int(code), float(seconds)
        self.assertEqual(status_and_seconds("/_echo/status/503")[0], 503)
        self.assertEqual(status_and_seconds("/_echo/status/99")[0], 200, "out of range: ignored")
        code, seconds = status_and_seconds("/_echo/delay/300")
        self.assertEqual(code, 200)
        self.assertGreaterEqual(seconds, 0.3)

    @unittest.skipUnless(shutil.which("nghttp"), "nghttp (nghttp2-client) not installed")
    def test_many_streams_on_one_connection(self):
        before = self.echo.stats()
        result = subprocess.run(["nghttp", "-n", "-s", "-m", "20", f"{self.url}/many"],
                                capture_output=True, text=True, timeout=20)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.count("/many"), 20, result.stdout)
        after = self.echo.stats()  # itself one connection and one request
        self.assertEqual(after["accepted_connections"] - before["accepted_connections"] - 1, 1,
                         "one connection for the 20 streams")
        self.assertEqual(after["requests"] - before["requests"] - 1, 20)

    def test_grpc_unary_streaming_and_unimplemented(self):
        channel = grpc.insecure_channel(self.echo.address)
        self.addCleanup(channel.close)
        unary = channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                    response_deserializer=identity)
        response, call = unary.with_call(b"hello grpc", timeout=5)
        self.assertEqual(response, b"hello grpc")
        self.assertEqual(call.code(), grpc.StatusCode.OK, "grpc-status 0 in the trailers")
        self.assertEqual(dict(call.initial_metadata())["x-revision"], "hello-00001")
        self.assertEqual(unary(b"x" * 300_000, timeout=5), b"x" * 300_000, "a 300 KB message")

        # Bidirectional: each answer arrives before the next message is sent.
        stream = channel.stream_stream("/revgate.Echo/Stream", request_serializer=identity,
                                       response_deserializer=identity)
        outgoing = queue.Queue()

        def requests():
            while (item := outgoing.get()) is not None:
                yield item
        outgoing.put(b"one")
        responses = stream(requests(), timeout=10)
        for expected in (b"one", b"two", b"three"):
            self.assertEqual(next(responses), expected)
            outgoing.put({b"one": b"two", b"two": b"three", b"three": None}[expected])
        self.assertEqual(list(responses), [], "the stream ends once the client has")
        self.assertEqual(responses.code(), grpc.StatusCode.OK)

        unknown = channel.unary_unary("/revgate.Echo/Nope", request_serializer=identity,
                                      response_deserializer=identity)
        with self.assertRaises(grpc.RpcError) as caught:
            unknown(b"x", timeout=5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


    def test_tls_with_alpn_h2_http11_grpc_and_websocket(self):
        make_ca(self.tmpdir, "ca")
        make_leaf(self.tmpdir, "ca", "echo", "DNS:echo.test,IP:127.0.0.1")
        echo = self.start_echo("hello-tls", "--tls-cert", os.path.join(self.tmpdir, "echo.crt"),
                               "--tls-key", os.path.join(self.tmpdir, "echo.key"))
        ca = os.path.join(self.tmpdir, "ca.crt")
        url = f"https://{echo.address}"
        self.assertEqual(json.loads(self.curl("--cacert", ca, url))["version"], "HTTP/2",
                         "ALPN h2 when the client offers it")
        self.assertEqual(json.loads(self.curl("--cacert", ca, "--http1.1", url))["version"],
                         "HTTP/1.1")
        with open(ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(echo.address, credentials,
                                      options=[("grpc.ssl_target_name_override", "echo.test")])
        self.addCleanup(channel.close)
        unary = channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                    response_deserializer=identity)
        self.assertEqual(unary(b"over tls", timeout=5), b"over tls")

        async def websocket():
            context = ssl.create_default_context(cafile=ca)
            async with websockets.connect(f"wss://echo.test:{echo.port}/", host="127.0.0.1",
                                          port=echo.port, ssl=context,
                                          server_hostname="echo.test") as ws:
                await ws.send("secure")
                return await ws.recv(), ws.response_headers["x-revision"]
        self.assertEqual(asyncio.run(asyncio.wait_for(websocket(), 10)),
                         ("secure", "hello-tls"))

    def test_tls_needs_both_files(self):
        result = subprocess.run([os.environ["REVGATE_BIN"], "echo", "--name", "x", "--tls-cert",
                                 "cert.pem"], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--tls-key", result.stderr)


if __name__ == "__main__":
    unittest.main()
