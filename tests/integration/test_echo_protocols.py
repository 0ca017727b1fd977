"""`revgate echo` speaks more than HTTP/1.1 (README "WebSockets and other upgrades", echo):
HTTP/2 with prior knowledge on the same port (curl --http2-prior-knowledge, nghttp from
nghttp2-client) and a gRPC-shaped echo (Debian's python3-grpcio, generic calls, no codegen):
unary, bidirectional streaming that answers each message before the client is done, and
UNIMPLEMENTED for any other method. These are the backends HTTP/2 and gRPC through revgate are
tested against."""

import json
import queue
import shutil
import subprocess
import unittest

import grpc

from harness import IntegrationTest


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


if __name__ == "__main__":
    unittest.main()
