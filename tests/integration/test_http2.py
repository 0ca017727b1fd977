"""HTTP/2 downstream (README "HTTP/2 and gRPC"): cleartext listeners with `h2c: true` and TLS
listeners choosing `h2` by ALPN, every stream a request routed and split as HTTP/1.1 ones are and
sent to the revision over pooled HTTP/1.1 connections; bodies both ways, the proxy's own errors
(gRPC-shaped for gRPC requests), RFC 9113's message rules, the limits, floods, an unread window,
GOAWAY on idle and on drain, the access log and metrics.

Real clients only: curl (--http2-prior-knowledge, --http2), nghttp (nghttp2-client), openssl
s_client, Debian's python3-grpcio, and python3-h2 over a raw socket for what no polite client
sends (bad fields, floods, a window that never opens, more streams than allowed)."""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState

from harness import (LOOPBACK, MiB, IntegrationTest, byte_pattern, dead_port,
                     default_config, metric_select, metric_sum, service)
from test_tls import make_pki

HELLO = "hello.default.example.com"
CANARY = "canary-hello.default.example.com"
ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes


def identity(data):
    return data


def grpc_channel(port, authority=None):
    """An insecure channel to the proxy with subchannels of its own: gRPC shares them process-
    wide by address, and a port of an earlier test's proxy may come round again."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    if authority:
        options.append(("grpc.default_authority", authority))
    return grpc.insecure_channel(f"{LOOPBACK}:{port}", options=options)


# ------------------------------------------------------------------------------ a raw client

class Stream:
    def __init__(self, stream_id):
        self.id = stream_id
        self.status = None
        self.headers = []          # the final response head, [(name, value)]
        self.informational = []    # 1xx heads
        self.trailers = []
        self.body = bytearray()
        self.ended = False         # END_STREAM received
        self.reset = None          # the RST_STREAM code received, an ErrorCodes
        self.finished_at = None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name):
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def trailer(self, name):
        values = [v for k, v in self.trailers if k == name]
        return ", ".join(values) if values else None

    def json(self):
        return json.loads(bytes(self.body))

    def __repr__(self):
        return (f"<stream {self.id} status={self.status} ended={self.ended} reset={self.reset} "
                f"headers={self.headers} trailers={self.trailers} body={bytes(self.body[:200])!r}>")


class H2Client:
    """An HTTP/2 client over a plain socket: python3-h2 encodes and decodes, this class moves the
    bytes. Frames are fed to h2 one at a time, and h2's connection state is put back to open
    after a GOAWAY, because h2 refuses every frame after one; a server that drains sends the
    rest of its streams after its GOAWAY, and those must be seen."""

    def __init__(self, port, *, validate=True, settings=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((LOOPBACK, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.streams = {}
        self.goaways = []           # (ConnectionTerminated, time.monotonic()) per GOAWAY
        self.remote_settings = {}   # SettingCodes -> value, as the server's SETTINGS said
        self.ping_acks = 0
        self.closed = False         # EOF or reset from the server, as read
        self.reset_by_peer = False
        self.send_failed = False    # the server stopped taking bytes (what it sent is still read)
        self.buf = bytearray()
        self.conn.initiate_connection()
        self.flush()

    @property
    def goaway(self):
        """The server's first GOAWAY (a ConnectionTerminated event), or None."""
        return self.goaways[0][0] if self.goaways else None

    @property
    def goaway_at(self):
        return self.goaways[0][1] if self.goaways else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.send_failed:
            self.send_raw(data)

    def send_raw(self, data, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.send_failed = True

    def request(self, path="/", authority=HELLO, method="GET", headers=(), body=None,
                end_stream=True, scheme="http", raw_headers=None):
        """Opens a stream; returns its id. `raw_headers` replaces the whole header list."""
        stream_id = self.conn.get_next_available_stream_id()
        if raw_headers is None:
            raw_headers = [(":method", method), (":scheme", scheme), (":path", path),
                           (":authority", authority), *headers]
        self.streams[stream_id] = Stream(stream_id)
        self.conn.send_headers(stream_id, raw_headers,
                               end_stream=end_stream and body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=end_stream)
        self.flush()
        return stream_id

    def ignore_stream_limit(self):
        """Lets h2 open more streams than the server allows (it refuses to by itself)."""
        self.conn.remote_settings._settings[SettingCodes.MAX_CONCURRENT_STREAMS] = (
            collections.deque([1 << 31]))

    def send_body(self, stream_id, data, end_stream=False, timeout=10.0):
        """Sends `data` on a stream as the server's windows and frame size allow."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                if self.closed or time.monotonic() > deadline:
                    raise AssertionError(f"stream {stream_id}: the window stayed shut")
                self.read_some(0.2)  # WINDOW_UPDATE
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end_stream:
            self.conn.end_stream(stream_id)
            self.flush()

    def _handle(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            s = self.streams[event.stream_id]
            s.headers = list(event.headers)
            s.status = int(dict(event.headers)[":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.streams[event.stream_id].informational.append(list(event.headers))
        elif isinstance(event, h2.events.TrailersReceived):
            self.streams[event.stream_id].trailers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.streams[event.stream_id].body += event.data
            if event.flow_controlled_length:
                try:
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                except h2.exceptions.StreamClosedError:
                    pass
        elif isinstance(event, h2.events.StreamEnded):
            s = self.streams[event.stream_id]
            s.ended = True
            s.finished_at = time.monotonic()
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id in self.streams:
                s = self.streams[event.stream_id]
                s.reset = event.error_code
                s.finished_at = time.monotonic()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaways.append((event, time.monotonic()))
            # h2 treats the connection as closed now; the server may still finish streams.
            self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for code, changed in event.changed_settings.items():
                self.remote_settings[code] = changed.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks += 1

    def _feed(self):
        while len(self.buf) >= 9:
            size = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + size:
                return
            frame = bytes(self.buf[:9 + size])
            del self.buf[:9 + size]
            for event in self.conn.receive_data(frame):
                self._handle(event)
        self.flush()

    def read_some(self, timeout):
        """Reads what comes within `timeout`; False once the server closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            self.closed = True
            self.reset_by_peer = True
            return False
        if not data:
            self.closed = True
            return False
        self.buf += data
        self._feed()
        self.flush()
        return True

    def pump(self, until, timeout=10.0):
        """Reads until until() is true, the connection closes, or `timeout`; returns until()."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or not self.read_some(min(left, 0.5)):
                break
        return until()

    def response(self, stream_id, timeout=10.0):
        s = self.streams[stream_id]
        self.pump(lambda: s.done, timeout)
        return s

    def read_until_closed(self, timeout=10.0):
        """Reads everything until the server closes; True if it did within `timeout`."""
        return self.pump(lambda: self.closed, timeout)


# ------------------------------------------------------------------------------- the base

class Http2Test(IntegrationTest):
    """Two revisions split 90/10 (hello-00002 tagged canary) behind an `h2c: true` listener."""

    def start_proxy(self, listener=None, extra_services=(), services=None, echo_args=(), **top):
        if services is None:
            self.a = self.start_echo("hello-00001", *echo_args)
            self.b = self.start_echo("hello-00002", *echo_args)
            services = [service("hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])],
                                [{"revisionName": "hello-00001", "percent": 90},
                                 {"revisionName": "hello-00002", "percent": 10,
                                  "tag": "canary"}])]
        config = default_config(list(services) + list(extra_services), **top)
        config["listeners"] = [listener or {"name": "http", "address": f"{LOOPBACK}:0",
                                            "h2c": True}]
        self.proxy = self.start_revgate(config)
        return self.proxy

    def client(self, port=None, **kw):
        client = H2Client(port or self.proxy.port, **kw)
        self.addCleanup(client.close)
        return client

    def h2_get(self, path="/", authority=HELLO, headers=(), **kw):
        """One request on a fresh HTTP/2 connection; returns its Stream, complete."""
        client = self.client(**kw)
        stream = client.response(client.request(path, authority, headers=headers))
        self.assertTrue(stream.done, f"no complete response to {path} ({authority}): {stream}")
        return stream

    def curl_h2(self, *args, timeout=15):
        """curl with prior knowledge; returns (returncode, stdout bytes, stderr text)."""
        result = self.curl("--http2-prior-knowledge", *args, timeout=timeout)
        return result.returncode, result.stdout, result.stderr.decode(errors="replace")

    def url(self, path="/"):
        return f"http://{LOOPBACK}:{self.proxy.port}{path}"


# ------------------------------------------------------------------------- h2c and HTTP/1.1

class CleartextTest(Http2Test):
    def test_prior_knowledge_gets_http2_and_the_revision_gets_http11_with_host(self):
        self.start_proxy()
        before = self.a.stats()
        code, out, err = self.curl_h2("-i", "-H", f"Host: {HELLO}", "-H", "X-Test: one",
                                      self.url("/hello?x=1"))
        self.assertEqual(code, 0, err)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/2 200"), head)
        self.assertIn(b"x-revision: hello-00001", head)
        self.assertIn(b"x-envoy-upstream-service-time: ", head)
        echoed = json.loads(body)
        self.assertEqual((echoed["version"], echoed["method"], echoed["target"]),
                         ("HTTP/1.1", "GET", "/hello?x=1"), "HTTP/2 in, HTTP/1.1 to the revision")
        seen = echoed["headers"]
        self.assertEqual(seen["host"], HELLO, "Host from :authority")
        self.assertEqual(seen["x-forwarded-proto"], "http")
        self.assertEqual(seen["x-test"], "one")
        self.assertEqual(seen["knative-serving-revision"], "hello-00001")

        # An HTTP/1.1 client on the same port, as before.
        status, headers, body = self.get(self.proxy.port, "/plain", host=HELLO)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["version"], "HTTP/1.1")
        self.assertEqual(self.a.requests_since(before), 2)

    def test_cookie_fields_are_joined_into_one_for_the_revision(self):
        self.start_proxy()
        stream = self.h2_get("/c", CANARY, headers=[("cookie", "a=1"), ("cookie", "b=2"),
                                                    ("cookie", "c=3")])
        self.assertEqual(stream.status, 200, stream)
        self.assertEqual(stream.json()["headers"]["cookie"], "a=1; b=2; c=3",
                         "RFC 9113 8.2.3: one Cookie field on HTTP/1.1")

    def test_a_listener_without_h2c_answers_the_preface_with_400_and_closes(self):
        self.start_proxy(listener={"name": "http", "address": f"{LOOPBACK}:0"})
        before_a, before_b = self.a.stats(), self.b.stats()
        code, out, err = self.curl_h2("-o", "/dev/null", "-w", "%{http_version}",
                                      "-H", f"Host: {HELLO}", self.url())
        self.assertNotEqual(code, 0, f"curl got HTTP/2 from a listener without h2c: {out!r}")
        # What the preface gets, byte for byte: an HTTP/1.1 400, then the connection closes.
        client = self.client()
        client.request("/", HELLO)
        data = b""
        client.sock.settimeout(5)
        try:
            while chunk := client.sock.recv(65536):
                data += chunk
        except (socket.timeout, ConnectionResetError):
            self.fail(f"the connection was not closed after the 400; got {data!r}")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"connection: close", data.lower())
        self.assertEqual((self.a.requests_since(before_a), self.b.requests_since(before_b)),
                         (0, 0), "no request reached a revision")
        self.assertEqual(self.get(self.proxy.port, host=HELLO)[0], 200, "HTTP/1.1 still works")

    def test_200_streams_on_one_connection_follow_the_90_10_split(self):
        self.start_proxy()
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client()
        order, pending, sent = [], set(), 0
        deadline = time.monotonic() + 30
        while (sent < 200 or pending) and time.monotonic() < deadline:
            while sent < 200 and len(pending) < 10:   # up to 10 streams in flight at once
                pending.add(client.request(f"/s{sent}"))
                sent += 1
            client.pump(lambda: any(client.streams[i].done for i in pending), 10)
            for i in sorted(i for i in pending if client.streams[i].done):
                pending.discard(i)
                s = client.streams[i]
                self.assertEqual(s.status, 200, s)
                order.append((i, s.header("x-revision")))
        self.assertEqual(len(order), 200, "every stream answered")
        self.assertFalse(client.closed)
        picks = [revision for _, revision in sorted(order)]   # in the order the streams opened
        self.assertEqual(dict(collections.Counter(picks)),
                         {"hello-00001": 180, "hello-00002": 20},
                         "smooth split: exactly 90/10 over 200 streams of one connection")
        # Per stream, interleaved: every 10 streams in a row hold exactly one canary.
        for start in range(0, 191):
            window = picks[start:start + 10]
            self.assertEqual(window.count("hello-00002"), 1, f"streams {start}..: {window}")
        self.assertEqual((self.a.requests_since(before_a), self.b.requests_since(before_b)),
                         (180, 20))
        # The streams share the worker's pooled upstream connections: about one per stream in
        # flight (10), not one per stream.
        conns_a, conns_b = self.a.connections_since(before_a), self.b.connections_since(before_b)
        self.assertLessEqual(conns_a, 20, f"{conns_a} upstream connections for 180 requests")
        self.assertLessEqual(conns_b, 10, f"{conns_b} upstream connections for 20 requests")

    @unittest.skipUnless(shutil.which("nghttp"), "nghttp (nghttp2-client) not installed")
    def test_nghttp_100_streams_at_once(self):
        self.start_proxy()
        before_a, before_b = self.a.stats(), self.b.stats()
        result = subprocess.run(["nghttp", "-n", "-s", "-m", "100", "-H", f":authority: {HELLO}",
                                 self.url("/many")], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        answered = [line for line in result.stdout.splitlines() if line.endswith("/many")]
        self.assertEqual(len(answered), 100, result.stdout)
        self.assertTrue(all(" 200 " in line for line in answered), result.stdout)
        self.assertEqual((self.a.requests_since(before_a), self.b.requests_since(before_b)),
                         (90, 10), "100 streams at once follow the weights too")


# ----------------------------------------------------------------------------------- bodies

class BodiesTest(Http2Test):
    def test_a_1_mib_post_reaches_the_revision_whole(self):
        self.start_proxy()
        path = self.write_file("upload.bin", "")
        with open(path, "wb") as f:
            f.write(os.urandom(MiB))
        code, out, err = self.curl_h2("-H", f"Host: {CANARY}", "--data-binary", f"@{path}",
                                      self.url("/upload"))
        self.assertEqual(code, 0, err)
        echoed = json.loads(out)
        self.assertEqual((echoed["method"], echoed["body_bytes"]), ("POST", MiB))
        self.assertEqual(echoed["headers"]["content-length"], str(MiB))

    def test_a_body_without_content_length_goes_upstream_chunked(self):
        self.start_proxy()
        client = self.client()
        sid = client.request("/nolength", CANARY, method="PUT", end_stream=False)
        total = 0
        for piece in (b"x" * 1000, b"y" * 100000, b"z" * 20000):   # more than one window
            client.send_body(sid, piece)
            total += len(piece)
        client.send_body(sid, b"", end_stream=True)
        s = client.response(sid)
        self.assertEqual(s.status, 200, s)
        echoed = s.json()
        self.assertEqual(echoed["body_bytes"], total)
        self.assertEqual(echoed["headers"].get("transfer-encoding"), "chunked", echoed)
        self.assertNotIn("content-length", echoed["headers"])

    def test_large_responses_arrive_intact(self):
        self.start_proxy()
        size = 3 * MiB + 12345
        for target in (f"/_echo/bytes/{size}", f"/_echo/bytes/{size}?chunked=1"):
            with self.subTest(target=target):
                out_path = os.path.join(self.tmpdir, "download.bin")
                code, out, err = self.curl_h2("-H", f"Host: {HELLO}", "-o", out_path, "-w",
                                              "%{http_code} %{http_version}", self.url(target))
                self.assertEqual(code, 0, err)
                self.assertEqual(out, b"200 2")
                with open(out_path, "rb") as f:
                    data = f.read()
                self.assertEqual(len(data), size)
                self.assertTrue(data == byte_pattern(0, size), "the body's bytes changed")


# ----------------------------------------------------------------------------------- errors

class ErrorsTest(Http2Test):
    def test_404_502_504_over_http2(self):
        self.start_proxy(extra_services=[service("dead", [("dead-00001",
                                                           [f"{LOOPBACK}:{dead_port()}"])])],
                         timeouts={"upstreamResponse": "300ms"})
        before_a, before_b = self.a.stats(), self.b.stats()

        def status(host, path="/"):
            code, out, err = self.curl_h2("-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                                          "-H", f"Host: {host}", self.url(path))
            self.assertEqual(code, 0, err)
            return out.decode()
        self.assertEqual(status("nope.example.net"), "404 2")
        self.assertEqual(status("dead.default.example.com"), "502 2")
        started = time.monotonic()
        self.assertEqual(status(CANARY, "/_echo/delay/3000"), "504 2")
        self.assertLess(time.monotonic() - started, 2.5, "upstreamResponse is 300 ms")
        self.assertEqual((self.a.requests_since(before_a), self.b.requests_since(before_b)),
                         (0, 1), "only the delayed request reached a revision")

        # The same connection goes on after local replies.
        client = self.client()
        streams = [client.request("/", host) for host in
                   ("nope.example.net", "dead.default.example.com", HELLO)]
        got = [client.response(i) for i in streams]
        self.assertEqual([s.status for s in got], [404, 502, 200], got)
        self.assertEqual(bytes(got[0].body), b"no route for this host\n")
        self.assertEqual(got[0].header("content-type"), "text/plain; charset=utf-8")



# -------------------------------------------------------------------------------------- TLS

class TlsTest(Http2Test):
    def start_tls(self, **tls_listener_keys):
        make_pki(self.tmpdir)   # ca.crt; example.crt covers example.com and the service host
        self.ca = os.path.join(self.tmpdir, "ca.crt")
        listener = {"name": "https", "address": f"{LOOPBACK}:0",
                    "tls": {"certificates": [{"certFile": "example.crt",
                                              "keyFile": "example.key"}]},
                    **tls_listener_keys}
        return self.start_proxy(listener=listener)

    def curl_tls(self, *args):
        port = self.proxy.port
        result = self.curl("--cacert", self.ca, "--resolve", f"{HELLO}:{port}:{LOOPBACK}",
                           "-w", "\\n%{http_code} %{http_version}", *args,
                           f"https://{HELLO}:{port}/tls")
        self.assertEqual(result.returncode, 0, result.stderr)
        body, _, status = result.stdout.rpartition(b"\n")
        return json.loads(body), status.decode()

    def s_client_alpn(self):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"{LOOPBACK}:{self.proxy.port}", "-servername",
             HELLO, "-alpn", "h2,http/1.1"], input=b"", capture_output=True, timeout=10)
        return result.stdout.decode(errors="replace")

    def test_alpn_chooses_h2(self):
        self.start_tls()
        echoed, status = self.curl_tls("--http2")
        self.assertEqual(status, "200 2", "curl --http2 over TLS gets HTTP/2 by ALPN")
        self.assertEqual(echoed["version"], "HTTP/1.1")
        self.assertEqual(echoed["headers"]["x-forwarded-proto"], "https")
        self.assertEqual(echoed["headers"]["host"], f"{HELLO}:{self.proxy.port}")
        self.assertEqual(self.curl_tls("--http1.1")[1], "200 1.1", "HTTP/1.1 on the same port")
        self.assertIn("ALPN protocol: h2", self.s_client_alpn())

    def test_alpn_http11_only_turns_http2_off(self):
        self.start_tls(alpn=["http/1.1"])
        echoed, status = self.curl_tls("--http2")
        self.assertEqual(status, "200 1.1", "curl --http2 falls back to HTTP/1.1")
        self.assertEqual(echoed["headers"]["x-forwarded-proto"], "https")
        out = self.s_client_alpn()
        self.assertIn("ALPN protocol: http/1.1", out)
        self.assertNotIn("ALPN protocol: h2", out)


# ------------------------------------------------------------------------------------- gRPC

class GrpcErrorsTest(Http2Test):
    """The proxy's own errors, gRPC-shaped: HTTP 200 with grpc-status in a trailers-only
    response. (gRPC to a working revision needs HTTP/2 to the revision: not yet.)"""

    def start_grpc(self, **top):
        self.slow = self.start_echo("slow-00001", "--delay-ms", "3000")
        return self.start_proxy(extra_services=[
            service("dead", [("dead-00001", [f"{LOOPBACK}:{dead_port()}"])]),
            service("slow", [("slow-00001", [self.slow])])], **top)

    def call(self, authority=None, timeout=10):
        channel = grpc_channel(self.proxy.port, authority)
        self.addCleanup(channel.close)
        unary = channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                    response_deserializer=identity)
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as caught:
            unary(b"hello", timeout=timeout)
        return caught.exception, time.monotonic() - started

    def test_unknown_authority_is_unimplemented(self):
        self.start_grpc()
        error, _ = self.call()   # :authority 127.0.0.1:PORT: no route
        self.assertEqual(error.code(), grpc.StatusCode.UNIMPLEMENTED, error)
        error, _ = self.call("nope.example.net")
        self.assertEqual(error.code(), grpc.StatusCode.UNIMPLEMENTED, error)
        self.assertIn("no route", error.details())

    def test_unreachable_revision_is_unavailable(self):
        self.start_grpc()
        error, _ = self.call("dead.default.example.com")
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE, error)

    def test_upstream_response_timeout_is_deadline_exceeded(self):
        self.start_grpc(timeouts={"upstreamResponse": "300ms"})
        before = self.slow.stats()
        error, took = self.call("slow.default.example.com", timeout=20)
        self.assertEqual(error.code(), grpc.StatusCode.DEADLINE_EXCEEDED, error)
        self.assertLess(took, 2.5, "the proxy's 300 ms, not the client's 20 s deadline")
        self.assertEqual(self.slow.requests_since(before), 1)

    def test_grpc_timeout_is_the_response_deadline(self):
        self.start_grpc()   # upstreamResponse 60 s
        client = self.client()
        started = time.monotonic()
        sid = client.request("/revgate.Echo/Unary", "slow.default.example.com", method="POST",
                             headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                      ("grpc-timeout", "400m")],
                             body=b"\0\0\0\0\x05hello")
        s = client.response(sid, timeout=5)
        took = time.monotonic() - started
        self.assertTrue(s.ended, s)
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.header("content-type"), "application/grpc")
        self.assertEqual(s.header("grpc-status"), "4", f"DEADLINE_EXCEEDED, trailers-only: {s}")
        self.assertEqual(bytes(s.body), b"")
        self.assertGreaterEqual(took, 0.35)
        self.assertLess(took, 2.0, "grpc-timeout 400m, not the 3 s backend")


# ----------------------------------------------------------------------------- RFC 9113 rules

class MessageRulesTest(Http2Test):
    BAD = {
        "connection field": [("connection", "keep-alive")],
        "keep-alive field": [("keep-alive", "timeout=5")],
        "transfer-encoding field": [("transfer-encoding", "chunked")],
        "upgrade field": [("upgrade", "websocket")],
        "te other than trailers": [("te", "gzip")],
        "uppercase name": [("X-Upper", "1")],
    }

    def test_malformed_requests_are_reset_with_protocol_error_and_never_proxied(self):
        self.start_proxy()
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client(validate=False)
        cases = dict((name, [(":method", "GET"), (":scheme", "http"), (":path", "/bad"),
                             (":authority", HELLO), *extra])
                     for name, extra in self.BAD.items())
        cases["no :path"] = [(":method", "GET"), (":scheme", "http"), (":authority", HELLO)]
        cases["repeated :path"] = [(":method", "GET"), (":scheme", "http"), (":path", "/a"),
                                   (":path", "/b"), (":authority", HELLO)]
        cases["pseudo-header after a field"] = [(":method", "GET"), (":scheme", "http"),
                                                ("x-a", "1"), (":path", "/a"),
                                                (":authority", HELLO)]
        streams = {}
        for name, fields in cases.items():
            streams[name] = client.request(raw_headers=fields)
        for name, sid in streams.items():
            with self.subTest(case=name):
                s = client.response(sid, timeout=5)
                self.assertEqual(s.reset, ErrorCodes.PROTOCOL_ERROR, f"{name}: {s}")
                self.assertIsNone(s.status, f"{name}: no response head, only the reset")
        # content-length that the DATA does not match
        sid = client.request("/cl", HELLO, method="POST", headers=[("content-length", "10")],
                             body=b"12345")
        s = client.response(sid, timeout=5)
        self.assertEqual(s.reset, ErrorCodes.PROTOCOL_ERROR, s)
        # Stream errors: the connection goes on.
        self.assertIsNone(client.goaway)
        good = client.response(client.request("/good"))
        self.assertEqual(good.status, 200, good)
        self.assertEqual(self.a.requests_since(before_a) + self.b.requests_since(before_b), 1,
                         "only the good request reached a revision")

    def test_connect_gets_400(self):
        self.start_proxy()
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client(validate=False)
        s = client.response(client.request(raw_headers=[(":method", "CONNECT"),
                                                        (":authority", "example.org:443")]))
        self.assertEqual(s.status, 400, s)
        self.assertEqual((self.a.requests_since(before_a), self.b.requests_since(before_b)),
                         (0, 0))


# ----------------------------------------------------------------------------------- limits

class LimitsTest(Http2Test):
    def test_a_header_list_over_request_headers_bytes_gets_431(self):
        self.start_proxy()
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client()
        fields = [(f"x-big-{i:02}", f"{i:02}" + "v" * 998) for i in range(70)]  # ~70 KB
        s = client.response(client.request("/big", HELLO, headers=fields))
        self.assertEqual(s.status, 431, s)
        self.assertEqual(client.remote_settings.get(SettingCodes.MAX_HEADER_LIST_SIZE), 61440,
                         "limits.requestHeadersBytes is advertised")
        # just under the limit is fine
        fields = [(f"x-big-{i:02}", f"{i:02}" + "v" * 998) for i in range(55)]
        s = client.response(client.request("/fits", HELLO, headers=fields))
        self.assertEqual(s.status, 200, s)
        self.assertEqual(self.a.requests_since(before_a) + self.b.requests_since(before_b), 1,
                         "the 431 never reached a revision")

    def test_more_fields_than_request_header_count_gets_431(self):
        self.start_proxy(limits={"requestHeaderCount": 20, "requestHeadersBytes": 4096})
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client()
        many = [(f"x-f{i}", "1") for i in range(21)]
        self.assertEqual(client.response(client.request("/many", HELLO, headers=many)).status,
                         431)
        self.assertEqual(client.response(client.request("/ok", HELLO, headers=many[:20])).status,
                         200, "20 fields are allowed")
        big = [("x-long", "v" * 4200)]
        self.assertEqual(client.response(client.request("/long", HELLO, headers=big)).status,
                         431, "a configured requestHeadersBytes")
        self.assertEqual(client.remote_settings.get(SettingCodes.MAX_HEADER_LIST_SIZE), 4096)
        self.assertEqual(self.a.requests_since(before_a) + self.b.requests_since(before_b), 1)

    def test_a_stream_over_max_concurrent_streams_is_refused_before_the_ack(self):
        # A client that opens streams before the server's SETTINGS reach it (RFC 9113 5.1.2's
        # race): the one over the limit is refused, the others are served.
        self.start_proxy(limits={"maxConcurrentStreams": 2})
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client()
        client.ignore_stream_limit()
        ids = [client.request("/_echo/delay/400", CANARY) for _ in range(3)]
        s3 = client.response(ids[2], timeout=5)
        self.assertEqual(s3.reset, ErrorCodes.REFUSED_STREAM, s3)
        s1, s2 = client.response(ids[0]), client.response(ids[1])
        self.assertEqual((s1.status, s2.status), (200, 200), (s1, s2))
        self.assertLess(s3.finished_at, s1.finished_at, "refused at once, not queued")
        self.assertEqual(client.remote_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS), 2,
                         "SETTINGS_MAX_CONCURRENT_STREAMS is limits.maxConcurrentStreams")
        self.assertIsNone(client.goaway)
        self.assertEqual(client.response(client.request("/after", CANARY)).status, 200)
        self.assertEqual(self.a.requests_since(before_a) + self.b.requests_since(before_b), 3,
                         "the refused stream never reached a revision")

    def test_a_stream_over_max_concurrent_streams_after_the_ack_ends_the_connection(self):
        # Once the client has acknowledged the SETTINGS, nghttp2 treats a stream over
        # SETTINGS_MAX_CONCURRENT_STREAMS as a connection error (GOAWAY PROTOCOL_ERROR, README
        # limits.maxConcurrentStreams; RFC 9113 5.1.2 would allow a stream error): the stream
        # over the limit never reaches a revision, other connections are unaffected.
        self.start_proxy(limits={"maxConcurrentStreams": 2})
        good = self.client()
        self.assertEqual(good.response(good.request("/before")).status, 200)
        before_a, before_b = self.a.stats(), self.b.stats()
        client = self.client()
        client.pump(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in client.remote_settings, 5)
        self.assertEqual(client.remote_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS), 2)
        # Our SETTINGS ACK went out as the SETTINGS were read: the proxy reads it first.
        client.ignore_stream_limit()      # h2 would not open a third stream itself
        ids = [client.request("/_echo/delay/400", CANARY) for _ in range(3)]
        client.pump(lambda: client.goaway is not None, 5)
        self.assertEqual(client.goaway.error_code, ErrorCodes.PROTOCOL_ERROR, client.goaway)
        self.assertLess(client.goaway.last_stream_id, ids[2], "the third stream was not taken")
        time.sleep(0.6)   # the two streams taken have reached their revision and ended
        self.assertLessEqual(self.a.requests_since(before_a) + self.b.requests_since(before_b), 2,
                             "the stream over the limit never reached a revision")
        s = good.response(good.request("/after"))
        self.assertEqual(s.status, 200, f"the other connection: {s}")
        self.assertIsNone(good.goaway)


# ----------------------------------------------------------------------------------- floods

PING_FRAME = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00"   # length 8, PING, no flags, stream 0


def max_send_buffer():
    """The most a socket's send buffer may grow to here (the kernel's tcp_wmem maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem", encoding="ascii") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MiB


class FloodTest(Http2Test):
    def well_behaved(self):
        """A second client, connected before the flood, with a request served already."""
        good = self.client()
        self.assertEqual(good.response(good.request("/before")).status, 200)
        return good

    def assert_still_served(self, good):
        s = good.response(good.request("/after"))
        self.assertEqual(s.status, 200, f"the other connection after the flood: {s}")
        self.assertIsNone(good.goaway)
        self.assertEqual(self.h2_get("/new").status, 200, "a new connection after the flood")
        self.assertTrue(self.proxy.running())

    def test_rapid_reset_ends_the_connection_with_goaway(self):
        self.start_proxy()
        good = self.well_behaved()
        client = self.client()
        client.pump(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in client.remote_settings, 5)
        # CVE-2023-44487: open a stream and cancel it at once, 2,000 times in one burst.
        for _ in range(2000):
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                           (":path", "/reset"), (":authority", HELLO)],
                                     end_stream=True)
            client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        self.assertTrue(client.read_until_closed(5), "the connection stays open")
        self.assertIsNotNone(client.goaway, "the connection ends with GOAWAY")
        self.assertEqual(client.goaway.error_code, ErrorCodes.INTERNAL_ERROR,
                         f"nghttp2's code for a rapid reset (README); GOAWAYs "
                         f"{[(g.error_code, g.last_stream_id, g.additional_data) for g, _ in client.goaways]}"
                         f"\n{self.proxy.describe()}")
        self.assertLess(client.goaway.last_stream_id, 2 * 2000,
                        "the GOAWAY came before the burst was over")
        self.assert_still_served(good)

    def test_ping_flood_without_reading_ends_the_connection(self):
        self.start_proxy()
        good = self.well_behaved()
        client = self.client(rcvbuf=4096)
        client.pump(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in client.remote_settings, 5)
        # CVE-2019-9512: PINGs whose ACKs the client does not read. More than the kernel can
        # buffer of their ACKs, so that they pile up in the proxy.
        count = (max_send_buffer() + 2 * MiB) // len(PING_FRAME + bytes(8))
        client.send_raw(b"".join(PING_FRAME + i.to_bytes(8, "big") for i in range(count)),
                        timeout=3)
        self.assertTrue(client.read_until_closed(10), "the flooding connection stays open")
        self.assertLess(client.ping_acks, count, "every PING was answered: no flood limit")
        if client.goaway is not None:
            self.assertEqual(client.goaway.error_code, ErrorCodes.ENHANCE_YOUR_CALM)
        self.assert_still_served(good)

    def test_a_stream_whose_window_never_opens_is_cancelled_after_idle(self):
        self.start_proxy(timeouts={"idle": "1s"})
        shut = self.client(settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})
        sent = time.monotonic()   # the stream's idle time cannot start before this
        stuck = shut.request("/_echo/bytes/1000000", CANARY)
        small = shut.request("/_echo/bytes/5000", CANARY)
        shut.pump(lambda: shut.streams[stuck].status is not None, 5)
        self.assertEqual(shut.streams[stuck].status, 200, "the head is not flow-controlled")
        # One stream's window opened: it completes while the other stays shut.
        shut.conn.increment_flow_control_window(10000, stream_id=small)
        shut.flush()
        s = shut.response(small, timeout=5)
        self.assertTrue(s.ended, s)
        self.assertEqual(bytes(s.body), byte_pattern(0, 5000))
        # Another connection is served meanwhile.
        other = self.client()
        slow = other.response(other.request("/_echo/delay/300", HELLO))
        self.assertEqual(slow.status, 200, slow)
        s = shut.response(stuck, timeout=5)
        self.assertEqual(s.reset, ErrorCodes.CANCEL, f"reset after timeouts.idle: {s}")
        self.assertEqual(len(s.body), 0)
        self.assertGreaterEqual(s.finished_at - sent, 0.95, "not before timeouts.idle (1 s)")
        self.assertLess(s.finished_at - sent, 3.5)


# --------------------------------------------------------------------------- idle and drain

class GoawayTest(Http2Test):
    def test_an_idle_connection_gets_goaway_no_error(self):
        self.start_proxy(timeouts={"idle": "1s"})
        client = self.client()
        sent = time.monotonic()   # the connection cannot be idle since before this
        s = client.response(client.request("/once"))
        self.assertEqual(s.status, 200, s)
        done = time.monotonic()
        self.assertTrue(client.read_until_closed(5), "an idle HTTP/2 connection is closed")
        self.assertIsNotNone(client.goaway, "after a GOAWAY")
        self.assertEqual(client.goaway.error_code, ErrorCodes.NO_ERROR)
        self.assertEqual(client.goaway.last_stream_id, 1)
        self.assertGreaterEqual(client.goaway_at - sent, 0.95, "not before timeouts.idle (1 s)")
        self.assertLess(client.goaway_at - done, 3.0)

    def test_sigterm_sends_goaway_and_the_stream_in_flight_completes(self):
        self.start_proxy(timeouts={"shutdownGrace": "5s"})
        before = self.b.stats()
        client = self.client()
        sid = client.request("/_echo/delay/800", CANARY)
        self.eventually(lambda: self.b.requests_since(before) >= 1, True,
                        "the slow request reached the revision")
        signalled = time.monotonic()
        self.proxy.signal(signal.SIGTERM)
        s = client.response(sid, timeout=5)
        self.assertIsNotNone(client.goaway, f"no GOAWAY on drain: {s}")
        self.assertEqual(client.goaway.error_code, ErrorCodes.NO_ERROR)
        self.assertEqual(client.goaway.last_stream_id, sid, "the stream in flight is served")
        self.assertLess(client.goaway_at, s.finished_at or float("inf"),
                        "GOAWAY first, while the stream is in flight")
        self.assertTrue(s.ended, f"the stream in flight was cut off: {s}")
        self.assertEqual(s.status, 200, s)
        self.assertEqual(s.json()["target"], "/_echo/delay/800")
        self.assertTrue(client.read_until_closed(5), "closed once its last stream is done")
        self.assertEqual({(g.error_code, g.last_stream_id) for g, _ in client.goaways},
                         {(ErrorCodes.NO_ERROR, sid)})
        self.assertEqual(self.proxy.wait(10), 0, self.proxy.describe())
        self.assertLess(time.monotonic() - signalled, 4.0)


# ---------------------------------------------------------------------------- observability

class ObservabilityTest(Http2Test):
    def test_access_log_says_http2(self):
        for fmt in ("json", "text"):
            with self.subTest(format=fmt):
                path = os.path.join(self.tmpdir, f"access-{fmt}.log")
                self.start_proxy(accessLog={"path": path, "format": fmt})
                client = self.client()
                ok = client.response(client.request("/logged?x=1", CANARY,
                                                     headers=[("user-agent", "h2-test")]))
                missing = client.response(client.request("/nothing", "nope.example.net"))
                self.assertEqual((ok.status, missing.status), (200, 404))
                self.proxy.signal(signal.SIGTERM)
                self.assertEqual(self.proxy.wait(10), 0, self.proxy.describe())
                with open(path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
                self.assertEqual(len(lines), 2, lines)
                if fmt == "json":
                    first, second = (json.loads(line) for line in lines)
                    self.assertEqual(
                        {k: first[k] for k in ("method", "path", "protocol", "response_code",
                                               "response_flags", "authority", "revision",
                                               "user_agent", "bytes_sent", "upstream_host")},
                        {"method": "GET", "path": "/logged?x=1", "protocol": "HTTP/2",
                         "response_code": 200, "response_flags": "-", "authority": CANARY,
                         "revision": "hello-00002", "user_agent": "h2-test",
                         "bytes_sent": len(ok.body), "upstream_host": self.b.address})
                    self.assertEqual(first["request_id"], ok.json()["headers"]["x-request-id"])
                    self.assertEqual((second["protocol"], second["response_code"],
                                      second["response_flags"], second["authority"]),
                                     ("HTTP/2", 404, "NR", "nope.example.net"))
                else:
                    self.assertIn(f'"GET /logged?x=1 HTTP/2" 200 - 0 {len(ok.body)} ', lines[0])
                    self.assertIn(f'"{CANARY}" "{self.b.address}"', lines[0])
                    self.assertIn('"GET /nothing HTTP/2" 404 NR ', lines[1])

    def test_metrics_count_http2_as_http_and_grpc_as_grpc(self):
        dead = f"{LOOPBACK}:{dead_port()}"
        self.start_proxy(extra_services=[service("dead", [("dead-00001", [dead])])])
        client = self.client()
        streams = [client.request(f"/m{i}") for i in range(20)]
        self.assertEqual([client.response(i).status for i in streams], [200] * 20)
        channel = grpc_channel(self.proxy.port, "dead.default.example.com")
        self.addCleanup(channel.close)
        unary = channel.unary_unary("/revgate.Echo/Unary", request_serializer=identity,
                                    response_deserializer=identity)
        with self.assertRaises(grpc.RpcError) as caught:
            unary(b"x", timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        plain = client.response(client.request("/", "dead.default.example.com"))
        self.assertEqual(plain.status, 502)

        def counted():
            samples = self.proxy.metrics()
            return {
                "hello-00001": metric_sum(samples, "istio_requests_total",
                                          destination_version="hello-00001",
                                          request_protocol="http", response_code="200"),
                "hello-00002": metric_sum(samples, "istio_requests_total",
                                          destination_version="hello-00002",
                                          request_protocol="http", response_code="200"),
                "dead http": metric_sum(samples, "istio_requests_total",
                                        destination_version="dead-00001",
                                        request_protocol="http", response_code="502",
                                        response_flags="UF"),
                "dead grpc": metric_sum(samples, "istio_requests_total",
                                        destination_version="dead-00001",
                                        request_protocol="grpc", response_flags="UF"),
            }
        self.eventually(counted, {"hello-00001": 18.0, "hello-00002": 2.0, "dead http": 1.0,
                                  "dead grpc": 1.0},
                        "HTTP/2 streams counted as request_protocol http, gRPC as grpc")
        grpc_rows = metric_select(self.proxy.metrics(), "istio_requests_total",
                                  request_protocol="grpc")
        self.assertEqual(len(grpc_rows), 1, grpc_rows)


# ----------------------------------------------------------------------------------- routing

class RoutingTest(Http2Test):
    def test_tags_tag_header_domain_mappings_and_debug_headers_apply(self):
        self.a, self.b = self.start_echos("hello-00001", "hello-00002")
        svc = service("hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])],
                      [{"revisionName": "hello-00001", "percent": 90},
                       {"revisionName": "hello-00002", "percent": 10, "tag": "canary"}])
        svc["debugHeaders"] = True
        self.start_proxy(services=[svc],
                         domainMappings=[{"domain": "www.example.org", "service": "hello"}])
        client = self.client()

        def revisions(authority, headers=(), n=20):
            ids = [client.request("/r", authority, headers=headers) for _ in range(n)]
            got = [client.response(i) for i in ids]
            for s in got:
                self.assertEqual(s.status, 200, s)
                self.assertEqual(s.header("x-revgate-revision"), s.header("x-revision"))
            return dict(collections.Counter(s.header("x-revision") for s in got)), got

        counts, got = revisions(CANARY)
        self.assertEqual(counts, {"hello-00002": 20}, "the tag host: its revision only")
        self.assertEqual(got[0].header("x-revgate-endpoint"), self.b.address)
        self.assertEqual(revisions(HELLO, [("knative-serving-tag", "canary")])[0],
                         {"hello-00002": 20}, "Knative-Serving-Tag")
        self.assertEqual(revisions("WWW.Example.ORG:8080")[0],
                         {"hello-00001": 18, "hello-00002": 2}, "a domain mapping, split")
        self.assertEqual(revisions(HELLO, [("knative-serving-tag", "nope")], n=10)[0],
                         {"hello-00001": 9, "hello-00002": 1}, "an unknown tag: the split")


if __name__ == "__main__":
    unittest.main()
