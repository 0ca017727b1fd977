"""HTTP/2 conformance of the downstream (an `h2c: true` listener): h2spec's areas, RFC 9113 and
RFC 7541 as h2spec groups them, with the project's own cases. Raw frames over a loopback socket
against a real revgate: a frame builder and reader here, python3-hpack for valid field blocks,
invalid HPACK bytes by hand.

Each case asserts what the client sees: GOAWAY with its code and then the close (connection
errors), or RST_STREAM with its code while the connection goes on (stream errors); that a bad
request never reached a revision; and that the proxy then serves a new connection."""

import socket
import struct
import time
import unittest
from typing import NamedTuple

import h2.errors
import h2.settings
import hpack

from harness import LOOPBACK, byte_pattern
from test_http2 import CANARY, HELLO, Http2Test

ErrorCodes = h2.errors.ErrorCodes
SettingCodes = h2.settings.SettingCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
READ_TIMEOUT = 5.0   # a frame that is coming comes within this
QUIET = 0.5          # how long "nothing more came" is watched for

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
               "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
DEFAULT_MAX_FRAME_SIZE = 16384
MAX_WINDOW = 2 ** 31 - 1


# ----------------------------------------------------------------------------- frames out

def frame(ftype, payload=b"", flags=0, stream_id=0, length=None):
    """One frame: 24-bit length (the payload's unless `length` says otherwise), type, flags,
    reserved bit and 31-bit stream id (stream_id may set the reserved bit), payload."""
    size = len(payload) if length is None else length
    return size.to_bytes(3, "big") + bytes([ftype, flags]) + struct.pack(">I", stream_id) + payload


def settings(*pairs, ack=False, stream_id=0):
    payload = b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)
    return frame(SETTINGS, payload, ACK if ack else 0, stream_id)


def headers(stream_id, block, end_stream=True, end_headers=True, flags=0):
    flags |= (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, block, flags, stream_id)


def continuation(stream_id, block, end_headers=True):
    return frame(CONTINUATION, block, END_HEADERS if end_headers else 0, stream_id)


def data(stream_id, payload, end_stream=False, flags=0):
    return frame(DATA, payload, flags | (END_STREAM if end_stream else 0), stream_id)


def ping(opaque=b"12345678", ack=False, stream_id=0):
    return frame(PING, opaque, ACK if ack else 0, stream_id)


def rst_stream(stream_id, code=ErrorCodes.CANCEL):
    return frame(RST_STREAM, struct.pack(">I", code), 0, stream_id)


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, struct.pack(">I", increment), 0, stream_id)


def priority(stream_id, depends_on=0, weight=16):
    return frame(PRIORITY, struct.pack(">IB", depends_on, weight - 1), 0, stream_id)


def goaway(last_stream_id=0, code=ErrorCodes.NO_ERROR, stream_id=0):
    return frame(GOAWAY, struct.pack(">II", last_stream_id, code), 0, stream_id)


# Field blocks by hand, every field a "literal without indexing" (RFC 7541 6.2.2), so that they
# leave the proxy's dynamic table as it was and the connection's Encoder stays in step.
def literal(name, value):
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_fields(path="/", method="GET", authority=HELLO, scheme="http"):
    return [(":method", method), (":scheme", scheme), (":path", path), (":authority", authority)]


# ------------------------------------------------------------------------------ frames in

class Frame(NamedTuple):
    type: int
    flags: int
    stream_id: int
    payload: bytes

    def error_code(self):
        """The code of a GOAWAY or RST_STREAM, an ErrorCodes where it is a known one."""
        raw = struct.unpack(">I", self.payload[4:8] if self.type == GOAWAY else self.payload[:4])[0]
        try:
            return ErrorCodes(raw)
        except ValueError:
            return raw

    def __repr__(self):
        name = FRAME_NAMES[self.type] if self.type < len(FRAME_NAMES) else f"type {self.type}"
        extra = ""
        if self.type in (GOAWAY, RST_STREAM):
            extra = f" {self.error_code()!r}"
            if self.type == GOAWAY:
                last = struct.unpack(">I", self.payload[:4])[0] & MAX_WINDOW
                extra += f" last_stream_id={last} debug={self.payload[8:]!r}"
        return (f"<{name} flags=0x{self.flags:02x} stream={self.stream_id} "
                f"len={len(self.payload)}{extra}>")


class Reply(NamedTuple):
    status: int        # None when no response head came
    headers: list      # [(name, value)] of the response head
    body: bytes
    ended: bool        # END_STREAM received
    reset: object      # the RST_STREAM code, or None


class RawH2:
    """A client connection that sends bytes as given and reads frames one by one. It answers
    nothing by itself except the server's SETTINGS in handshake(); it decodes response heads
    with its own hpack.Decoder, so that the decoder sees every block in order."""

    def __init__(self, port):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=READ_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.frames = []           # every frame received, in order
        self.closed = False        # EOF or reset from the server
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self._block = None         # (stream id, bytes) of a response head awaiting CONTINUATION
        self.heads = {}            # stream id -> [(name, value)] of its response head
        self.bodies = {}           # stream id -> bytearray of DATA received
        self.ended = set()         # stream ids that END_STREAM closed from the server's side
        self.resets = {}           # stream id -> the RST_STREAM code received

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *chunks):
        """Sends frames (bytes) in one write, so that the proxy reads them together."""
        try:
            self.sock.sendall(b"".join(chunks))
        except (BrokenPipeError, ConnectionResetError):
            pass   # it closed already; what it sent before is still read

    def block(self, fields):
        """A valid field block for `fields`, from this connection's HPACK encoder."""
        return self.encoder.encode(fields)

    def handshake(self, *client_settings):
        """Preface and our SETTINGS; ACKs the server's SETTINGS and waits for its ACK of ours."""
        self.send(PREFACE, settings(*client_settings))
        server = self.wait_for(lambda f: f.type == SETTINGS and not f.flags & ACK)
        if server is None:
            raise AssertionError(f"no SETTINGS from the server: {self.frames}")
        self.send(settings(ack=True))
        if self.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK) is None:
            raise AssertionError(f"the server did not ACK our SETTINGS: {self.frames}")
        return server

    # ---------------------------------------------------------------------- reading

    def _next_frame(self, deadline):
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    head, payload = bytes(self.buf[:9]), bytes(self.buf[9:9 + length])
                    del self.buf[:9 + length]
                    stream_id = struct.unpack(">I", head[5:9])[0] & MAX_WINDOW
                    return Frame(head[3], head[4], stream_id, payload)
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk

    def _track(self, f):
        if f.type == HEADERS:
            block = f.payload
            if f.flags & PADDED:
                block = block[1:len(block) - block[0]]
            if f.flags & PRIORITY_FLAG:
                block = block[5:]
            self._block = (f.stream_id, block)
        elif f.type == CONTINUATION and self._block is not None:
            self._block = (self._block[0], self._block[1] + f.payload)
        elif f.type == DATA:
            payload = f.payload
            if f.flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            self.bodies.setdefault(f.stream_id, bytearray()).extend(payload)
        elif f.type == RST_STREAM:
            self.resets[f.stream_id] = f.error_code()
        if f.type in (HEADERS, CONTINUATION) and f.flags & END_HEADERS and self._block:
            stream_id, block = self._block
            self._block = None
            fields = self.decoder.decode(block)
            previous = self.heads.get(stream_id)
            if previous is None or dict(previous).get(":status", "").startswith("1"):
                self.heads[stream_id] = fields   # the final head; trailers leave it be
        if f.type in (HEADERS, DATA) and f.flags & END_STREAM:
            self.ended.add(f.stream_id)

    def wait_for(self, match, timeout=READ_TIMEOUT):
        """Reads frames until one satisfies match(frame) and returns it; None when the
        connection closes or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._next_frame(deadline)
            if f is None:
                return None
            self.frames.append(f)
            self._track(f)
            if match(f):
                return f

    def goaway(self, timeout=READ_TIMEOUT):
        """The server's GOAWAY, read already or now; None if none comes."""
        for f in self.frames:
            if f.type == GOAWAY:
                return f
        return self.wait_for(lambda f: f.type == GOAWAY, timeout)

    def reset(self, stream_id, timeout=READ_TIMEOUT):
        if stream_id in self.resets:
            return self.resets[stream_id]
        f = self.wait_for(lambda f: f.type == RST_STREAM and f.stream_id == stream_id, timeout)
        return None if f is None else f.error_code()

    def ping_acked(self, opaque=b"pingpong", timeout=READ_TIMEOUT):
        """Sends a PING; True when its ACK, carrying the same bytes, comes back."""
        self.send(ping(opaque))
        f = self.wait_for(lambda f: f.type == PING and f.flags & ACK, timeout)
        return f is not None and f.payload == opaque

    def wait_closed(self, timeout=READ_TIMEOUT):
        """True when the server closes within `timeout` (frames that come first are kept)."""
        self.wait_for(lambda f: False, timeout)
        return self.closed

    def response(self, stream_id, timeout=READ_TIMEOUT):
        """Reads until the stream ends, is reset, or the connection closes."""
        if stream_id not in self.ended and stream_id not in self.resets:
            self.wait_for(lambda f: stream_id in self.ended or stream_id in self.resets, timeout)
        head = self.heads.get(stream_id, [])
        status = dict(head).get(":status")
        return Reply(int(status) if status else None, head,
                     bytes(self.bodies.get(stream_id, b"")), stream_id in self.ended,
                     self.resets.get(stream_id))


# ------------------------------------------------------------------------------- the base

class ConformanceTest(Http2Test):
    """A proxy with an `h2c: true` listener and two echo revisions per test (Http2Test), and the
    assertions every case ends with."""

    def setUp(self):
        super().setUp()
        self.start_proxy()
        self.before = (self.a.stats(), self.b.stats())

    def connect(self, *client_settings, handshake=True):
        conn = RawH2(self.proxy.port)
        self.addCleanup(conn.close)
        if handshake:
            conn.handshake(*client_settings)
        return conn

    def backend_requests(self):
        return self.a.requests_since(self.before[0]) + self.b.requests_since(self.before[1])

    def assert_still_serves(self):
        """A good request on a new connection is served."""
        stream = self.h2_get("/after")
        self.assertEqual(stream.status, 200, f"a new connection afterwards: {stream}")
        self.assertTrue(self.proxy.running())

    def assert_connection_error(self, conn, code, backend_requests=0):
        """GOAWAY with `code`, then the close; `backend_requests` reached a revision; and a new
        connection is served."""
        f = conn.goaway()
        self.assertIsNotNone(f, f"no GOAWAY; received {conn.frames}, closed={conn.closed}")
        self.assertEqual(f.error_code(), code, f"GOAWAY's code; received {conn.frames}")
        self.assertTrue(conn.wait_closed(), f"the connection stays open after {f}")
        self.assertEqual(self.backend_requests(), backend_requests,
                         "requests that reached a revision")
        self.assert_still_serves()

    def assert_stream_error(self, conn, stream_id, code, backend_requests=0):
        """RST_STREAM with `code` on the stream, no GOAWAY, the connection still answers a PING;
        `backend_requests` reached a revision; and a new connection is served."""
        got = conn.reset(stream_id)
        self.assertEqual(got, code, f"RST_STREAM on stream {stream_id}; received {conn.frames}")
        self.assertTrue(conn.ping_acked(), f"the connection goes on; received {conn.frames}")
        self.assertNotIn(GOAWAY, [f.type for f in conn.frames], conn.frames)
        self.assertEqual(self.backend_requests(), backend_requests,
                         "requests that reached a revision")
        self.assert_still_serves()

    def assert_served(self, conn, stream_id, status=200):
        reply = conn.response(stream_id)
        self.assertEqual((reply.status, reply.ended, reply.reset), (status, True, None),
                         f"stream {stream_id}: {reply}; received {conn.frames}")
        return reply


# ---------------------------------------------------------------------- 3.4 the preface

class PrefaceTest(ConformanceTest):
    def test_the_server_preface_is_a_settings_frame_first(self):
        conn = self.connect(handshake=False)
        conn.send(PREFACE, settings())
        first = conn.wait_for(lambda f: True)
        self.assertIsNotNone(first, "nothing came back")
        self.assertEqual((first.type, first.flags & ACK, first.stream_id), (SETTINGS, 0, 0),
                         first)

    def test_a_corrupted_preface_gets_an_http11_400_and_the_close(self):
        # Bytes that stop matching the preface are HTTP/1.1 on an h2c listener, which serves
        # both; RFC 9113 3.4 lets the GOAWAY be omitted for an invalid preface.
        conn = self.connect(handshake=False)
        conn.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", settings())
        conn.wait_closed()
        self.assertTrue(conn.closed, f"the connection stays open; got {bytes(conn.buf)!r}")
        self.assertTrue(conn.buf.startswith(b"HTTP/1.1 400 "), bytes(conn.buf))
        self.assertEqual(self.backend_requests(), 0)
        self.assert_still_serves()

    def test_a_preface_not_followed_by_settings_is_protocol_error(self):
        conn = self.connect(handshake=False)
        conn.send(PREFACE, ping())
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# ------------------------------------------------------------------ 4.1 the frame format

class FrameFormatTest(ConformanceTest):
    def test_a_frame_of_unknown_type_is_ignored(self):
        conn = self.connect()
        conn.send(frame(0x20, b"whatever", 0xff, 0), frame(0x21, b"", 0, 1))
        self.assertTrue(conn.ping_acked(), conn.frames)
        conn.send(headers(1, conn.block(request_fields("/unknown-type"))))
        self.assert_served(conn, 1)

    def test_undefined_flags_are_ignored(self):
        conn = self.connect()
        conn.send(frame(PING, b"flagsbad", 0xfe, 0))   # every flag but ACK
        f = conn.wait_for(lambda f: f.type == PING)
        self.assertIsNotNone(f, conn.frames)
        self.assertEqual((f.flags, f.payload), (ACK, b"flagsbad"))
        # HEADERS with END_STREAM | END_HEADERS and every undefined flag (not PADDED, PRIORITY)
        conn.send(headers(1, conn.block(request_fields("/flags")), flags=0xd2))
        self.assert_served(conn, 1)

    def test_the_reserved_bit_of_the_stream_id_is_ignored(self):
        conn = self.connect()
        conn.send(headers((1 << 31) | 1, conn.block(request_fields("/reserved"))))
        self.assert_served(conn, 1)


# ---------------------------------------------------------------------- 4.2 frame size

class FrameSizeTest(ConformanceTest):
    def test_data_of_exactly_max_frame_size_is_accepted(self):
        conn = self.connect()
        body = b"x" * DEFAULT_MAX_FRAME_SIZE
        conn.send(headers(1, conn.block(request_fields("/max", "POST")), end_stream=False),
                  data(1, body, end_stream=True))
        reply = self.assert_served(conn, 1)
        self.assertIn(b'"body_bytes":16384', reply.body.replace(b" ", b""))

    def test_data_over_max_frame_size_is_frame_size_error(self):
        conn = self.connect()
        # Only the first bytes of the payload: the length alone is the error, and bytes the
        # proxy never reads would make its close a reset, which can discard the GOAWAY unread.
        conn.send(headers(1, conn.block(request_fields("/big", "POST")), end_stream=False),
                  frame(DATA, b"x" * 100, 0, 1, length=DEFAULT_MAX_FRAME_SIZE + 1))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)

    def test_headers_over_max_frame_size_is_frame_size_error(self):
        conn = self.connect()
        block = conn.block(request_fields("/big-head") + [("x-pad", "p" * 100)])
        conn.send(frame(HEADERS, block, END_STREAM | END_HEADERS, 1,
                        length=DEFAULT_MAX_FRAME_SIZE + 1))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)


# --------------------------------------------------------------- 4.3 field block decoding

class HeaderCompressionTest(ConformanceTest):
    def test_an_undecodable_field_block_is_compression_error(self):
        conn = self.connect()
        # A literal with incremental indexing and a new name whose length byte is missing.
        conn.send(headers(1, b"\x40"))
        self.assert_connection_error(conn, ErrorCodes.COMPRESSION_ERROR)

    def test_another_frame_between_headers_and_continuation_is_protocol_error(self):
        cases = {"PRIORITY": priority(1), "DATA": data(1, b"x"), "PING": ping(),
                 "a frame of unknown type": frame(0x20, b"x", 0, 1),
                 "HEADERS of another stream": None}
        for name, between in cases.items():
            with self.subTest(between=name):
                self.before = (self.a.stats(), self.b.stats())
                conn = self.connect()
                block = conn.block(request_fields("/split"))
                if between is None:
                    between = headers(3, conn.block(request_fields("/other")))
                conn.send(headers(1, block[:3], end_headers=False), between,
                          continuation(1, block[3:]))
                self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# --------------------------------------------------------------------- 5.1 stream states

class StreamStatesTest(ConformanceTest):
    def test_data_on_an_idle_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(data(1, b"idle", end_stream=True))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_rst_stream_on_an_idle_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(rst_stream(1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_window_update_on_an_idle_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(window_update(1, 100))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def half_closed_stream(self):
        """A connection whose stream 1 is half-closed (remote): its GET ended and reached a
        revision, and the response body waits for a stream window the client keeps at 0."""
        conn = self.connect((SettingCodes.INITIAL_WINDOW_SIZE, 0))
        conn.send(headers(1, conn.block(request_fields("/_echo/bytes/1000"))))
        head = conn.wait_for(lambda f: f.type == HEADERS and f.stream_id == 1)
        self.assertIsNotNone(head, f"no response head: {conn.frames}")
        return conn

    def test_data_on_a_half_closed_remote_stream_is_stream_closed(self):
        # RFC 9113 5.1 asks for a stream error; nghttp2 makes it a connection error, which
        # 5.4.1 allows ("MAY choose to treat a stream error as a connection error").
        conn = self.half_closed_stream()
        conn.send(data(1, b"late", end_stream=True))
        self.assert_connection_error(conn, ErrorCodes.STREAM_CLOSED, backend_requests=1)

    def test_headers_on_a_half_closed_remote_stream_is_stream_closed(self):
        conn = self.half_closed_stream()
        conn.send(headers(1, conn.block([("x-trailer", "late")])))
        self.assert_connection_error(conn, ErrorCodes.STREAM_CLOSED, backend_requests=1)

    def test_headers_on_a_closed_stream_is_stream_closed(self):
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/first"))))
        self.assert_served(conn, 1)
        conn.send(headers(1, conn.block(request_fields("/again"))))
        self.assert_connection_error(conn, ErrorCodes.STREAM_CLOSED, backend_requests=1)

    def test_data_on_a_stream_the_client_reset_is_stream_closed(self):
        # 5.1 "closed": a stream error STREAM_CLOSED; nghttp2 ends the connection (5.4.1).
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/reset", "POST")), end_stream=False),
                  rst_stream(1), data(1, b"after the reset", end_stream=True))
        self.assert_connection_error(conn, ErrorCodes.STREAM_CLOSED)

    def test_an_even_stream_id_from_the_client_is_protocol_error(self):
        conn = self.connect()
        conn.send(headers(2, conn.block(request_fields("/even"))))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.1 DATA, 6.2 HEADERS

    def test_a_stream_id_lower_than_one_used_is_protocol_error(self):
        # RFC 9113 5.1.1: a new stream's id is greater than every one the client opened, and
        # "an endpoint that receives an unexpected stream identifier MUST respond with a
        # connection error of type PROTOCOL_ERROR" (h2spec http2/5.1.1/2).
        conn = self.connect()
        conn.send(headers(5, conn.block(request_fields("/five"))))
        self.assert_served(conn, 5)
        conn.send(headers(3, conn.block(request_fields("/three"))), ping(b"after-3!"))
        # The proxy handles frames in order: an error on stream 3 comes before the PING's ACK.
        first = conn.wait_for(lambda f: f.type == GOAWAY or f.type == PING and f.flags & ACK)
        self.assertEqual(first and first.type, GOAWAY,
                         f"no GOAWAY before the PING's ACK; received {conn.frames}")
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR, backend_requests=1)

class DataAndHeadersTest(ConformanceTest):
    def test_data_on_stream_0_is_protocol_error(self):
        conn = self.connect()
        conn.send(data(0, b"zero"))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_data_padding_longer_than_the_payload_is_protocol_error(self):
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/pad", "POST")), end_stream=False),
                  frame(DATA, bytes([10]) + b"abc", PADDED | END_STREAM, 1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_headers_on_stream_0_is_protocol_error(self):
        conn = self.connect()
        conn.send(headers(0, conn.block(request_fields("/zero"))))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_headers_padding_longer_than_the_payload_is_protocol_error(self):
        conn = self.connect()
        block = conn.block(request_fields("/pad"))
        conn.send(frame(HEADERS, bytes([len(block) + 1]) + block,
                        PADDED | END_STREAM | END_HEADERS, 1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_valid_padding_is_accepted(self):
        conn = self.connect()
        block = conn.block(request_fields("/padded", "POST"))
        conn.send(frame(HEADERS, bytes([7]) + block + bytes(7), PADDED | END_HEADERS, 1),
                  frame(DATA, bytes([3]) + b"body" + bytes(3), PADDED | END_STREAM, 1))
        reply = self.assert_served(conn, 1)
        self.assertIn(b'"body_bytes":4', reply.body.replace(b" ", b""))


# ------------------------------------------------------------- 6.3 PRIORITY, 6.4 RST_STREAM

class PriorityAndRstStreamTest(ConformanceTest):
    def test_priority_on_stream_0_is_protocol_error(self):
        conn = self.connect()
        conn.send(priority(0))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_priority_of_length_other_than_5_is_frame_size_error(self):
        # RFC 9113 6.3 asks for a stream error; nghttp2 ends the connection, which 5.4.1
        # allows. The stream is idle: nothing was requested.
        conn = self.connect()
        conn.send(frame(PRIORITY, b"\x00\x00\x00\x00", 0, 1))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)

    def test_a_stream_depending_on_itself_is_protocol_error(self):
        # RFC 9113 5.3.1 asks for a stream error; nghttp2 ends the connection (5.4.1 allows it).
        cases = {"PRIORITY": priority(1, depends_on=1), "HEADERS with priority": None}
        for name, frames in cases.items():
            with self.subTest(frame=name):
                self.before = (self.a.stats(), self.b.stats())
                conn = self.connect()
                if frames is None:
                    frames = frame(HEADERS, struct.pack(">IB", 1, 15) +
                                   conn.block(request_fields("/self")),
                                   PRIORITY_FLAG | END_HEADERS | END_STREAM, 1)
                conn.send(frames)
                self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_rst_stream_on_stream_0_is_protocol_error(self):
        conn = self.connect()
        conn.send(rst_stream(0))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_rst_stream_of_length_other_than_4_is_frame_size_error(self):
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/rst", "POST")), end_stream=False),
                  frame(RST_STREAM, b"\x00\x00\x08", 0, 1))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)


# ----------------------------------------------------------------------- 6.5 SETTINGS

class SettingsTest(ConformanceTest):
    def test_our_settings_are_acknowledged_with_an_empty_ack(self):
        conn = self.connect(handshake=False)
        conn.send(PREFACE, settings((SettingCodes.MAX_CONCURRENT_STREAMS, 10),
                                    (SettingCodes.INITIAL_WINDOW_SIZE, 100000)))
        f = conn.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK)
        self.assertIsNotNone(f, conn.frames)
        self.assertEqual((f.stream_id, f.payload), (0, b""))

    def test_an_ack_with_a_payload_is_frame_size_error(self):
        conn = self.connect()
        conn.send(frame(SETTINGS, struct.pack(">HI", SettingCodes.ENABLE_PUSH, 0), ACK, 0))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)

    def test_settings_on_a_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(settings((SettingCodes.ENABLE_PUSH, 0), stream_id=1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_a_length_not_a_multiple_of_6_is_frame_size_error(self):
        conn = self.connect()
        conn.send(frame(SETTINGS, struct.pack(">HI", SettingCodes.ENABLE_PUSH, 0)[:5], 0, 0))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)

    def test_enable_push_2_is_protocol_error(self):
        conn = self.connect()
        conn.send(settings((SettingCodes.ENABLE_PUSH, 2)))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_initial_window_size_2_31_is_flow_control_error(self):
        conn = self.connect()
        conn.send(settings((SettingCodes.INITIAL_WINDOW_SIZE, 2 ** 31)))
        self.assert_connection_error(conn, ErrorCodes.FLOW_CONTROL_ERROR)

    def test_max_frame_size_below_16384_is_protocol_error(self):
        conn = self.connect()
        conn.send(settings((SettingCodes.MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE - 1)))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_max_frame_size_above_2_24_minus_1_is_protocol_error(self):
        conn = self.connect()
        conn.send(settings((SettingCodes.MAX_FRAME_SIZE, 2 ** 24)))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_an_unknown_setting_is_ignored(self):
        conn = self.connect()
        conn.send(settings((0xff, 1), (0x4242, 0xffffffff)))
        f = conn.wait_for(lambda f: f.type in (SETTINGS, GOAWAY))
        self.assertEqual((f.type, f.flags, f.payload), (SETTINGS, ACK, b""), conn.frames)
        conn.send(headers(1, conn.block(request_fields("/unknown-setting"))))
        self.assert_served(conn, 1)


# --------------------------------------------------------------------------- 6.7 PING

class PingTest(ConformanceTest):
    def test_ping_is_answered_with_an_ack_of_the_same_8_bytes(self):
        conn = self.connect()
        conn.send(ping(b"\x00\xffping\x01\x02"))
        f = conn.wait_for(lambda f: f.type == PING)
        self.assertIsNotNone(f, conn.frames)
        self.assertEqual((f.flags, f.stream_id, f.payload), (ACK, 0, b"\x00\xffping\x01\x02"))

    def test_a_ping_ack_is_not_answered(self):
        conn = self.connect()
        conn.send(ping(b"fromclnt", ack=True), ping(b"question"))
        f = conn.wait_for(lambda f: f.type == PING)
        self.assertEqual((f.flags, f.payload), (ACK, b"question"),
                         f"only the PING that asked is answered: {conn.frames}")

    def test_ping_on_a_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(ping(stream_id=1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_ping_of_length_other_than_8_is_frame_size_error(self):
        conn = self.connect()
        conn.send(frame(PING, b"123456", 0, 0))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)


# ------------------------------------------------------------------------- 6.8 GOAWAY

class GoawayFrameTest(ConformanceTest):
    def test_goaway_on_a_stream_is_protocol_error(self):
        conn = self.connect()
        conn.send(goaway(stream_id=1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# -------------------------------------------------------------------- 6.9 WINDOW_UPDATE

class WindowUpdateTest(ConformanceTest):
    def test_an_increment_of_0_on_the_connection_is_protocol_error(self):
        conn = self.connect()
        conn.send(window_update(0, 0))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_an_increment_of_0_on_a_stream_is_protocol_error(self):
        # RFC 9113 6.9 asks for a stream error; nghttp2 ends the connection, which 5.4.1
        # allows (a stream error MAY be treated as a connection error).
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/zero-increment", "POST")),
                          end_stream=False),
                  window_update(1, 0))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_a_connection_window_over_2_31_minus_1_is_flow_control_error(self):
        conn = self.connect()
        conn.send(window_update(0, MAX_WINDOW))   # 65535 + 2^31-1
        self.assert_connection_error(conn, ErrorCodes.FLOW_CONTROL_ERROR)

    def test_a_stream_window_over_2_31_minus_1_is_a_stream_error(self):
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/big-window", "POST")),
                          end_stream=False),
                  window_update(1, MAX_WINDOW))
        self.assert_stream_error(conn, 1, ErrorCodes.FLOW_CONTROL_ERROR)

    def test_window_update_of_length_other_than_4_is_frame_size_error(self):
        conn = self.connect()
        conn.send(frame(WINDOW_UPDATE, b"\x00\x00\x01", 0, 0))
        self.assert_connection_error(conn, ErrorCodes.FRAME_SIZE_ERROR)

    def test_the_stream_window_holds_the_response_body(self):
        conn = self.connect((SettingCodes.INITIAL_WINDOW_SIZE, 0))
        conn.send(headers(1, conn.block(request_fields("/_echo/bytes/1000", authority=CANARY))))
        head = conn.wait_for(lambda f: f.type == HEADERS and f.stream_id == 1)
        self.assertIsNotNone(head, f"the response head is not flow-controlled: {conn.frames}")
        self.assertEqual(dict(conn.heads[1]).get(":status"), "200")

        def body_bytes_once_quiet():
            """Body bytes received once nothing more came for QUIET seconds: the absence of
            DATA can only be watched for a while."""
            conn.wait_for(lambda f: False, QUIET)
            return len(conn.bodies.get(1, b""))

        self.assertEqual(body_bytes_once_quiet(), 0, "DATA with a stream window of 0")
        conn.send(window_update(1, 100))
        self.assertIsNotNone(conn.wait_for(lambda f: len(conn.bodies.get(1, b"")) >= 100))
        self.assertEqual(body_bytes_once_quiet(), 100, "exactly the 100 bytes the window allows")
        self.assertNotIn(1, conn.ended)
        conn.send(window_update(1, 900))
        reply = self.assert_served(conn, 1)
        self.assertEqual(reply.body, byte_pattern(0, 1000))
        self.assertNotIn(GOAWAY, [f.type for f in conn.frames])


# --------------------------------------------------------------------- 6.10 CONTINUATION

class ContinuationTest(ConformanceTest):
    def test_a_field_block_split_over_continuations_is_served(self):
        conn = self.connect()
        block = conn.block(request_fields("/split") + [("x-split", "s" * 60)])
        third = len(block) // 3
        conn.send(headers(1, block[:third], end_headers=False),
                  continuation(1, block[third:2 * third], end_headers=False),
                  continuation(1, block[2 * third:]))
        reply = self.assert_served(conn, 1)
        self.assertIn(b'"/split"', reply.body)
        self.assertIn(b"s" * 60, reply.body)

    def test_continuation_without_headers_is_protocol_error(self):
        conn = self.connect()
        conn.send(continuation(1, conn.block(request_fields("/orphan"))))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_continuation_after_end_headers_is_protocol_error(self):
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/late", "POST")), end_stream=False),
                  continuation(1, literal("x-late", "1")))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)

    def test_continuation_on_another_stream_is_protocol_error(self):
        conn = self.connect()
        block = conn.block(request_fields("/split"))
        conn.send(headers(1, block[:3], end_headers=False), continuation(3, block[3:]))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# ------------------------------------------------------------ 8.1 / 8.2 HTTP messages

class HttpMessageTest(ConformanceTest):
    """Malformed requests (RFC 9113 8.1.1, 8.2, 8.3): RST_STREAM PROTOCOL_ERROR, nothing
    proxied. What test_http2's MessageRulesTest sends already (connection-specific fields, te
    other than trailers, uppercase names, no or two :path, a pseudo-header after a field, a body
    shorter than its content-length) is not repeated: the bytes on the wire would be the same."""

    def assert_malformed(self, fields, *then):
        conn = self.connect()
        conn.send(headers(1, b"".join(literal(n, v) for n, v in fields), end_stream=not then),
                  *then)
        self.assertIsNone(conn.response(1).status, "no response head, only the reset")
        self.assert_stream_error(conn, 1, ErrorCodes.PROTOCOL_ERROR)

    def test_an_unknown_pseudo_header_is_malformed(self):
        self.assert_malformed(request_fields("/p") + [(":protocol-x", "1")])

    def test_a_response_pseudo_header_in_a_request_is_malformed(self):
        self.assert_malformed(request_fields("/p") + [(":status", "200")])

    def test_no_method_is_malformed(self):
        self.assert_malformed([f for f in request_fields("/p") if f[0] != ":method"])

    def test_no_scheme_is_malformed(self):
        self.assert_malformed([f for f in request_fields("/p") if f[0] != ":scheme"])

    def test_an_empty_path_is_malformed(self):
        self.assert_malformed(request_fields(""))

    def test_a_field_value_with_cr_lf_is_malformed(self):
        # On HTTP/1.1 upstream this would be a second field (or a second request).
        self.assert_malformed(request_fields("/p") + [("x-a", "1\r\nx-injected: 2")])

    def test_a_field_value_with_nul_is_malformed(self):
        self.assert_malformed(request_fields("/p") + [("x-a", "1\x002")])

    def test_a_field_name_with_a_space_is_malformed(self):
        self.assert_malformed(request_fields("/p") + [("x a", "1")])

    def test_more_data_than_content_length_is_malformed(self):
        self.assert_malformed(request_fields("/p", "POST") + [("content-length", "3")],
                              data(1, b"12345", end_stream=True))

    def test_data_with_content_length_0_and_a_body_is_malformed(self):
        self.assert_malformed(request_fields("/p", "POST") + [("content-length", "0")],
                              data(1, b"x"), data(1, b"", end_stream=True))

    def test_a_pseudo_header_in_trailers_is_malformed(self):
        self.assert_malformed(request_fields("/p", "POST"), data(1, b"body"),
                              headers(1, literal(":path", "/smuggled")))

    def test_trailers_without_end_stream_are_malformed(self):
        self.assert_malformed(request_fields("/p", "POST"), data(1, b"body"),
                              headers(1, literal("x-trailer", "1"), end_stream=False))

    def test_push_promise_from_the_client_is_protocol_error(self):
        # 8.4 (h2spec's 8.2): only a server pushes; ENABLE_PUSH of a server is 0 as well.
        conn = self.connect()
        conn.send(headers(1, conn.block(request_fields("/push", "POST")), end_stream=False),
                  frame(PUSH_PROMISE, struct.pack(">I", 2) + literal(":path", "/pushed"),
                        END_HEADERS, 1))
        self.assert_connection_error(conn, ErrorCodes.PROTOCOL_ERROR)


# ------------------------------------------------------------------- HPACK (RFC 7541)

class HpackTest(ConformanceTest):
    def assert_compression_error(self, block):
        conn = self.connect()
        conn.send(headers(1, block))
        self.assert_connection_error(conn, ErrorCodes.COMPRESSION_ERROR)

    def good_fields(self):
        return b"".join(literal(n, v) for n, v in request_fields("/hpack"))

    def test_index_0_is_compression_error(self):
        self.assert_compression_error(b"\x80" + self.good_fields())

    def test_an_index_beyond_both_tables_is_compression_error(self):
        # 61 static entries and an empty dynamic table: index 62 refers to nothing (2.3.3).
        self.assert_compression_error(self.good_fields() + b"\xbe")

    def test_a_literal_with_an_index_beyond_both_tables_is_compression_error(self):
        # a literal without indexing whose name is index 70 (4-bit prefix 15, then 55)
        self.assert_compression_error(self.good_fields() + b"\x0f\x37\x01v")

    def test_a_table_size_update_above_the_setting_is_compression_error(self):
        # SETTINGS_HEADER_TABLE_SIZE is 4096 by default; 4097 = 31 + 4066 in a 5-bit prefix.
        self.assert_compression_error(b"\x3f\xe2\x1f" + self.good_fields())

    def test_a_table_size_update_after_a_field_is_compression_error(self):
        # 4.2: it comes at the start of a block only
        self.assert_compression_error(self.good_fields() + b"\x20")

    def test_a_table_size_update_within_the_setting_is_accepted(self):
        conn = self.connect()
        conn.send(headers(1, b"\x3f\xe1\x1f" + self.good_fields()))   # 4096
        self.assert_served(conn, 1)
        conn.send(headers(3, b"\x20" + self.good_fields()))            # 0
        self.assert_served(conn, 3)

    def huffman_value_block(self, encoded):
        """The good fields plus x-h whose value is `encoded` as a Huffman string."""
        return self.good_fields() + b"\x00\x03x-h" + bytes([0x80 | len(encoded)]) + encoded

    def test_a_valid_huffman_string_is_accepted(self):
        conn = self.connect()
        # "a" is 00011, padded with ones: 0001 1111
        conn.send(headers(1, self.huffman_value_block(b"\x1f")))
        reply = self.assert_served(conn, 1)
        self.assertIn(b'"x-h":"a"', reply.body.replace(b" ", b""))

    def test_huffman_padding_longer_than_7_bits_is_compression_error(self):
        self.assert_compression_error(self.huffman_value_block(b"\x1f\xff"))

    def test_huffman_padding_not_of_ones_is_compression_error(self):
        # 5.2: padding is the most significant bits of EOS, all ones
        self.assert_compression_error(self.huffman_value_block(b"\x18"))

    def test_huffman_eos_in_a_string_is_compression_error(self):
        # "a", then EOS (30 ones), then 5 bits of padding
        self.assert_compression_error(self.huffman_value_block(b"\x1f\xff\xff\xff\xff"))


# ------------------------------------------------------------------- deviations from the RFC

if __name__ == "__main__":
    unittest.main()
