"""Shared helpers for revgate's integration tests.

Every test starts its own processes (echo backends, revgate) on port 0, in its own temporary
directory, and kills them in a cleanup even when it fails. Stdlib only: unittest, subprocess,
socket, http.client, json, re, threading.

The binary under test is $REVGATE_BIN, or build/revgate in the repository that holds this file.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REVGATE_BIN = os.environ.get("REVGATE_BIN") or os.path.join(REPO, "build", "revgate")

START_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"

MiB = 1024 * 1024
KiB = 1024

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------------------- YAML

def _yaml_scalar(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a YAML double-quoted scalar


def to_yaml(value, indent=0):
    """Block-style YAML for dicts/lists/scalars (enough for revgate's config)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, list):
                lines.append(f"{pad}{key}: []\n")
            elif isinstance(item, dict):
                lines.append(f"{pad}{key}: {{}}\n")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}\n")
        return "".join(lines)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                # "- " takes the place of the first line's indentation
                lines.append(f"{pad}- {body[indent + 2:]}")
            elif isinstance(item, list) and item:
                lines.append(f"{pad}-\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


# ------------------------------------------------------------------------------------ processes

class Process:
    """A child process whose stderr is collected line by line by a reader thread."""

    def __init__(self, argv, name, cwd=None):
        self.argv = list(argv)
        self.name = name
        self._lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, cwd=cwd)
        self.pid = self.popen.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.popen.stderr.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr_text(self):
        with self._cond:
            return "\n".join(self._lines)

    def wait_for_line(self, pattern, timeout=START_TIMEOUT, start=0):
        """Waits for a stderr line matching `pattern` (a regex); returns the match or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            index = start
            while True:
                while index < len(self._lines):
                    m = regex.search(self._lines[index])
                    index += 1
                    if m:
                        return m
                if self._eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def line_count(self):
        with self._cond:
            return len(self._lines)

    def running(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.running():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None when still running after `timeout` seconds.

        Once the process has exited, its last stderr lines are read before this returns, so
        stderr_text() holds everything it wrote."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return code

    def kill(self):
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(2)
        if self.popen.stderr:
            self.popen.stderr.close()

    def describe(self):
        code = self.popen.poll()
        state = "running" if code is None else f"exited {code}"
        return (f"{self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}\n"
                f"--- stderr ---\n{self.stderr_text()}\n--------------")


class Echo(Process):
    """`revgate echo`: the demo backend."""

    def __init__(self, name, extra_args=()):
        super().__init__([REVGATE_BIN, "echo", "--name", name, "--listen", f"{LOOPBACK}:0",
                          *extra_args], f"echo {name}")
        self.revision = name
        m = self.wait_for_line(r"echo .* listening on (\S+):(\d+)$")
        if not m:
            text = self.describe()
            self.kill()
            raise AssertionError(f"echo backend {name} did not start:\n{text}")
        self.port = int(m.group(2))
        self.address = f"{LOOPBACK}:{self.port}"

    def stats(self):
        """GET /_echo/stats straight from the backend: {"accepted_connections", "requests"}.

        The stats request itself opens one connection and is one request."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
        try:
            conn.request("GET", "/_echo/stats", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise AssertionError(
                f"echo {self.revision}: GET /_echo/stats answered {resp.status} {body!r}; "
                "the echo backend needs /_echo/stats for this test")
        data = json.loads(body)
        return {"accepted_connections": int(data["accepted_connections"]),
                "requests": int(data["requests"])}

    def requests_seen(self):
        """Requests the backend saw since it started, not counting this stats call."""
        return self.stats()["requests"] - 1

    def requests_since(self, before):
        """Requests the backend saw since `before` (a stats()), not counting stats calls."""
        return self.stats()["requests"] - before["requests"] - 1

    def connections_since(self, before):
        """Connections the backend accepted since `before`, not counting stats calls."""
        return self.stats()["accepted_connections"] - before["accepted_connections"] - 1


class Revgate(Process):
    """`revgate run -c FILE`, started and waited for until `ready`."""

    def __init__(self, config_path, argv=None, wait_ready=True):
        argv = argv or [REVGATE_BIN, "run", "-c", config_path]
        super().__init__(argv, "revgate")
        self.config_path = config_path
        self.ports = {}
        self.admin_port = None
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout=START_TIMEOUT):
        m = self.wait_for_line(r"ready: \d+ worker\(s\), config generation \d+", timeout)
        if not m:
            text = self.describe()
            self.kill()
            raise AssertionError(f"revgate did not become ready within {timeout} s:\n{text}")
        for line in self.stderr_text().splitlines():
            lm = re.search(r"revgate info: (\S+) listening on (\S+):(\d+)$", line)
            if lm:
                name, port = lm.group(1), int(lm.group(3))
                if name == "admin":
                    self.admin_port = port
                else:
                    self.ports[name] = port
        if not self.ports or self.admin_port is None:
            raise AssertionError(f"revgate: no listener/admin port in the log:\n{self.describe()}")

    @property
    def port(self):
        """The first listener's port (named `http` in the default config)."""
        return self.ports.get("http") or next(iter(self.ports.values()))

    def admin_get(self, path, timeout=10):
        conn = http.client.HTTPConnection(LOOPBACK, self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
        finally:
            conn.close()

    def metrics_text(self):
        status, _, body = self.admin_get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:200]!r}")
        return body.decode("utf-8")

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def memory(self):
        return proc_memory(self.pid)


def proc_memory(pid):
    """{"VmRSS": KiB, "VmHWM": KiB} from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


# ------------------------------------------------------------------------------------- metrics

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line of a Prometheus text scrape."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line: {line!r}")
        labels = {}
        if m.group(2):
            for lm in _LABEL_RE.finditer(m.group(2)):
                labels[lm.group(1)] = (lm.group(2).replace('\\"', '"').replace("\\n", "\n")
                                       .replace("\\\\", "\\"))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name, **labels):
    """Sum of the samples named `name` whose labels include `labels`."""
    total = 0.0
    for sname, slabels, value in samples:
        if sname == name and all(slabels.get(k) == v for k, v in labels.items()):
            total += value
    return total


def metric_select(samples, name, **labels):
    return [(l, v) for n, l, v in samples
            if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]


# ------------------------------------------------------------------------------- raw HTTP/1.1

class Response:
    def __init__(self, version, status, reason, headers, body, head_raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] as received
        self.body = body            # bytes (b"" when streamed into a sink)
        self.head_raw = head_raw
        self.body_length = len(body)

    def header(self, name, default=None):
        values = self.header_all(name)
        return ", ".join(values) if values else default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return bool(self.header_all(name))

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} body={self.body[:300]!r}>"


class ConnectionClosed(Exception):
    pass


class RawConnection:
    """A client TCP connection: send bytes as they are, parse responses by hand."""

    def __init__(self, port, host=LOOPBACK, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, size=256 * 1024):
        chunk = self.sock.recv(size)
        if not chunk:
            raise ConnectionClosed("connection closed by the peer")
        self.buf += chunk

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise AssertionError("line too long in the response")
            self._fill()

    def _read_exact(self, n, sink=None):
        """Reads n bytes; returns them, or passes them to sink(bytes) and returns b""."""
        out = bytearray() if sink is None else None
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            if sink is None:
                out += piece
            else:
                sink(piece)
            n -= take
        return bytes(out) if out is not None else b""

    def read_response(self, head_request=False, sink=None, skip_informational=True):
        """Reads one full response (Content-Length, chunked or close-delimited body)."""
        while True:
            head_lines = []
            status_line = self._read_line()
            while True:
                line = self._read_line()
                if line == b"":
                    break
                head_lines.append(line)
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise AssertionError(f"not an HTTP status line: {status_line!r}")
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for raw in head_lines:
                name, _, value = raw.decode("latin-1").partition(":")
                headers.append((name, value.strip(" \t")))
            head_raw = status_line + b"\r\n" + b"\r\n".join(head_lines) + b"\r\n\r\n"
            if 100 <= status < 200 and status != 101 and skip_informational:
                continue
            break
        resp = Response(version, status, reason, headers, b"", head_raw)
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        total = 0
        chunks = bytearray() if sink is None else None

        def take(piece):
            nonlocal total
            total += len(piece)
            if sink is None:
                chunks.extend(piece)
            else:
                sink(piece)

        if head_request or status in (204, 304) or 100 <= status < 200:
            pass
        elif te is not None and te.lower().split(",")[-1].strip() == "chunked":
            while True:
                size_line = self._read_line()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    trailers = []
                    while True:
                        line = self._read_line()
                        if line == b"":
                            break
                        trailers.append(line)
                    resp.trailers = trailers
                    break
                self._read_exact(size, take)
                if self._read_exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
        elif cl is not None:
            self._read_exact(int(cl), take)
        else:  # close-delimited
            while True:
                if self.buf:
                    take(bytes(self.buf))
                    self.buf.clear()
                try:
                    self._fill()
                except ConnectionClosed:
                    break
        resp.body = bytes(chunks) if chunks is not None else b""
        resp.body_length = total
        return resp

    def request(self, method="GET", target="/", host="example.com", headers=(), body=None,
                version="HTTP/1.1", **kw):
        """Sends a simple request and reads its response."""
        self.send(build_request(method, target, host, headers, body, version))
        return self.read_response(head_request=(method == "HEAD"), **kw)

    def closed_by_peer(self, timeout=3.0):
        """True when the peer closes (EOF or reset) within `timeout`, ignoring unread bytes."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return False


def build_request(method="GET", target="/", host="example.com", headers=(), body=None,
                  version="HTTP/1.1"):
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    names = set()
    for name, value in headers:
        lines.append(f"{name}: {value}")
        names.add(name.lower())
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        head += body if isinstance(body, bytes) else body.encode("latin-1")
    return head


class FakeBackend:
    """A scripted upstream on a loopback port: handler(sock, index) runs per connection on its
    own thread (index counts connections from 0). For misbehaving-backend tests."""

    def __init__(self, handler):
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self.connections = 0
        self.requests = []   # request heads seen (bytes), via read_head()
        self._stop = False
        self._threads = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock, index):
        try:
            sock.settimeout(10)
            self.handler(self, sock, index)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def read_head(self, sock):
        """Reads one request head (no body support); returns it, or b"" at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            data += chunk
        self.requests.append(data)
        return data

    def close(self):
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        for t in self._threads:
            t.join(2)


def dead_port():
    """A loopback port that nothing listens on: bound, then closed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def byte_pattern(offset, length):
    """Bytes offset..offset+length of the echo's /_echo/bytes body: byte i = 'a' + i % 26."""
    start = offset % 26
    reps = (start + length) // 26 + 1
    return (bytes(range(97, 97 + 26)) * reps)[start:start + length]


class PatternChecker:
    """A sink for RawConnection.read_response that checks the /_echo/bytes pattern."""

    def __init__(self):
        self.offset = 0
        self.bad_at = None
        self._cache = bytes(range(97, 97 + 26)) * ((4 * MiB) // 26 + 2)

    def __call__(self, piece):
        n = len(piece)
        start = self.offset % 26
        if start + n <= len(self._cache):
            expected = self._cache[start:start + n]
        else:
            expected = byte_pattern(self.offset, n)
        if self.bad_at is None and piece != expected:
            for i in range(n):
                if piece[i] != expected[i]:
                    self.bad_at = self.offset + i
                    break
        self.offset += n


# ---------------------------------------------------------------------------------- test base

def default_config(services, **top):
    """One worker, one `http` listener and the admin listener on port 0, plus `services`."""
    config = {
        "workers": 1,
        "listeners": [{"name": "http", "address": f"{LOOPBACK}:0"}],
        "admin": {"address": f"{LOOPBACK}:0"},
        "services": services,
    }
    config.update(top)
    return config


def service(name, revisions, traffic=None, namespace=None, split=None):
    """revisions: [(revision name, [Echo or "host:port", ...])]."""
    svc = {"name": name}
    if namespace:
        svc["namespace"] = namespace
    if split:
        svc["splitPolicy"] = split
    svc["revisions"] = [
        {"name": rev, "endpoints": [e.address if isinstance(e, Echo) else e for e in eps]}
        for rev, eps in revisions]
    if traffic is not None:
        svc["traffic"] = traffic
    return svc


class IntegrationTest(unittest.TestCase):
    """Base class: temp dir, process tracking, and factories that clean up after themselves."""

    maxDiff = 4000

    def eventually(self, read, expected, what, timeout=3.0, interval=0.05):
        """read() until it returns `expected`, then asserts it. A request is counted once its
        response is written, a moment after the client may have read it; metrics are merged
        from the workers when scraped."""
        deadline = time.monotonic() + timeout
        while True:
            got = read()
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(interval)
        self.assertEqual(got, expected, what)
        return got

    def setUp(self):
        if not os.access(REVGATE_BIN, os.X_OK):
            self.fail(f"revgate binary not found at {REVGATE_BIN} (set REVGATE_BIN)")
        self._tmp = tempfile.TemporaryDirectory(prefix="revgate-it-")
        self.addCleanup(self._tmp.cleanup)
        self.tmpdir = self._tmp.name
        self._procs = []
        self.addCleanup(self._kill_all)

    def _kill_all(self):
        for proc in reversed(self._procs):
            proc.kill()

    def track(self, proc):
        self._procs.append(proc)
        return proc

    def start_echo(self, name, *extra_args):
        echo = Echo(name, extra_args)
        return self.track(echo)

    def start_fake_backend(self, handler):
        backend = FakeBackend(handler)
        self.addCleanup(backend.close)
        return backend

    def start_echos(self, *names):
        return [self.start_echo(n) for n in names]

    def write_file(self, name, text):
        path = os.path.join(self.tmpdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def write_config(self, config, name="revgate.yaml"):
        text = config if isinstance(config, str) else to_yaml(config)
        return self.write_file(name, text)

    def start_revgate(self, config, name="revgate.yaml", argv=None):
        path = self.write_config(config, name)
        # track before waiting, so that a process that fails to start is still killed
        proc = Revgate(path, argv=argv, wait_ready=False)
        self.track(proc)
        try:
            proc.wait_ready()
        except AssertionError as e:
            self.fail(f"{e}\n--- config {path} ---\n{open(path).read()}")
        return proc

    def run_cli(self, *args, timeout=30, input_text=None):
        """Runs `revgate ARGS...` to completion; returns CompletedProcess (text)."""
        return subprocess.run([REVGATE_BIN, *args], capture_output=True, text=True,
                              timeout=timeout, input=input_text)

    def connect(self, port, timeout=10.0):
        conn = RawConnection(port, timeout=timeout)
        self.addCleanup(conn.close)
        return conn

    def http_connection(self, port, timeout=10.0):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
        self.addCleanup(conn.close)
        return conn

    def get(self, port, path="/", host="example.com", headers=None, method="GET", body=None):
        """One request on a fresh http.client connection: (status, headers dict lower, body)."""
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            hdrs = {"Host": host}
            hdrs.update(headers or {})
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get_json(self, port, path="/", host="example.com", headers=None):
        status, hdrs, body = self.get(port, path, host, headers)
        self.assertEqual(status, 200, f"GET {path} Host {host}: {status} {body[:300]!r}")
        return json.loads(body)

    def curl(self, *args, timeout=30):
        """Runs curl (-sS, --max-time `timeout`); returns CompletedProcess (bytes)."""
        return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                              capture_output=True, timeout=timeout + 10)

    def read_or_fail(self, conn, what, **kw):
        """conn.read_response(**kw), turning a timeout or early close into a test failure."""
        try:
            return conn.read_response(**kw)
        except (OSError, ConnectionClosed) as e:
            sink = kw.get("sink")
            got = f"; {sink.offset} body bytes received" if hasattr(sink, "offset") else ""
            self.fail(f"{what}: no complete response ({e!r}{got})")

    def describe(self, *procs):
        return "\n".join(p.describe() for p in procs)
