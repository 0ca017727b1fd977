"""Observability (issue 4): the access log (JSON and Envoy text, stdout/stderr/file, flushing,
shutdown), W3C trace context, x-envoy-upstream-service-time, debug headers, sticky sessions
(hash on a header, a cookie or the source address), LEAST_REQUEST, and the metrics that came
with it (requests in flight, upstream connections, process_*, local replies, promtool).

Everything goes through loopback sockets: the real `revgate run`, real `revgate echo` backends,
and http.client / raw sockets as clients."""

import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (LOOPBACK, REVGATE_BIN, UUID4_RE, IntegrationTest, RawConnection, dead_port,
                     default_config, metric_select, metric_sum, parse_metrics, service)

HELLO = "hello.default.example.com"
CANARY = "canary-hello.default.example.com"
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")
RFC3339_MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
JSON_KEYS = ["start_time", "method", "path", "protocol", "response_code", "response_flags",
             "bytes_received", "bytes_sent", "duration", "upstream_service_time",
             "upstream_host", "x_forwarded_for", "user_agent", "request_id", "authority",
             "service", "namespace", "revision"]
# Envoy's default format:
# [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
# %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
# "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"
# "%UPSTREAM_HOST%"
TEXT_LINE_RE = re.compile(
    r'^\[(?P<start>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)\] '
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" '
    r'(?P<code>\d+) (?P<flags>\S+) (?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) (?P<ust>\d+|-) '
    r'"(?P<xff>.*)" "(?P<ua>.*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream>[^"]*)"$')
SET_COOKIE_RE = re.compile(r"^rg=([0-9a-f]{16}); Max-Age=60; Path=/; HttpOnly$")
# Two traceparents a W3C receiver accepts, and values it must not.
VALID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
INVALID_TRACEPARENTS = [
    "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # version not hex
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   # uppercase
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # version ff
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # version 00 with a suffix
    "garbage",
]


def parse_rfc3339(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def normalise_le(le):
    return le if le == "+Inf" else format(float(le), "g")


class ObservabilityTest(IntegrationTest):
    """Helpers shared by the suites below."""

    def hello_config(self, echoes, **top):
        return default_config([service("hello", [("hello-00001", echoes)])], **top)

    def stop(self, proxy, timeout=20):
        """SIGTERM and wait for a clean exit (the access log is complete afterwards)."""
        proxy.signal(signal.SIGTERM)
        code = proxy.wait(timeout)
        self.assertEqual(code, 0, f"graceful stop:\n{proxy.describe()}")

    def read_lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            # a line is written whole; only a line being written right now may be cut
            data = data[:data.rfind(b"\n") + 1]
        return data.decode("utf-8", "surrogateescape").splitlines()

    def wait_lines(self, path, count, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            lines = self.read_lines(path)
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def json_lines(self, path):
        out = []
        for i, line in enumerate(self.read_lines(path)):
            try:
                obj = json.loads(line)
            except ValueError as e:
                self.fail(f"access log line {i + 1} is not JSON ({e}): {line!r}")
            self.assertIsInstance(obj, dict, line)
            self.assertEqual(list(obj), JSON_KEYS, f"keys and their order, line {i + 1}: {line}")
            out.append(obj)
        return out

    def refusing_endpoint(self):
        """host:port of a loopback socket that is bound but not listening, kept until the test
        ends: connecting is refused, and no other process (this proxy's own listener included)
        can be given the port meanwhile, as could happen with a port bound and closed."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        self.addCleanup(sock.close)
        return f"{LOOPBACK}:{sock.getsockname()[1]}"

    def run_to_exit(self, config_path, verb="run", timeout=15):
        out = subprocess.run([REVGATE_BIN, verb, "-c", config_path], capture_output=True,
                             text=True, timeout=timeout)
        return out.returncode, out.stdout, out.stderr


# ----------------------------------------------------------------------------------- access log

class AccessLogTest(ObservabilityTest):
    def start_logged(self, fmt="json", path="access.log", workers=1, extra_services=()):
        self.echo = self.start_echo("hello-00001")
        config = self.hello_config([self.echo], accessLog={"path": path, "format": fmt},
                                   workers=workers)
        config["services"].extend(extra_services)
        proxy = self.start_revgate(config)
        self.log_path = path if os.path.isabs(path) else os.path.join(self.tmpdir, path)
        return proxy

    def test_json_line_per_proxied_request_with_every_field(self):
        proxy = self.start_logged("json", "access.log")   # relative: next to the config file
        sent = []   # (what the line must say, extra checks)
        t_begin = time.time()
        conn = self.connect(proxy.port)

        resp = conn.request(target="/a?b=1&c=%20", host=HELLO,
                            headers=[("User-Agent", "obs-test/1.0"),
                                     ("X-Forwarded-For", "10.0.35.28, 10.0.0.1")])
        self.assertEqual(resp.status, 200)
        seen = resp.json()["headers"]
        self.assertRegex(seen["x-request-id"], UUID4_RE)
        sent.append(({"method": "GET", "path": "/a?b=1&c=%20", "protocol": "HTTP/1.1",
                      "response_code": 200, "response_flags": "-", "bytes_received": 0,
                      "bytes_sent": resp.body_length, "upstream_host": self.echo.address,
                      "x_forwarded_for": "10.0.35.28, 10.0.0.1", "user_agent": "obs-test/1.0",
                      "request_id": seen["x-request-id"], "authority": HELLO,
                      "service": "hello", "namespace": "default", "revision": "hello-00001"},
                     resp))

        resp = conn.request(method="POST", target="/upload", host=HELLO, body=b"u" * 12345,
                            headers=[("X-Request-Id", "client-chosen-id-1")])
        self.assertEqual(resp.json()["body_bytes"], 12345)
        self.assertEqual(resp.json()["headers"]["x-request-id"], "client-chosen-id-1")
        sent.append(({"method": "POST", "path": "/upload", "response_code": 200,
                      "bytes_received": 12345, "bytes_sent": resp.body_length,
                      "request_id": "client-chosen-id-1", "x_forwarded_for": None,
                      "user_agent": None}, resp))

        resp = conn.request(target="/_echo/bytes/5000?chunked=1", host=HELLO)
        self.assertEqual(resp.body_length, 5000)
        sent.append(({"path": "/_echo/bytes/5000?chunked=1", "bytes_sent": 5000}, resp))

        resp = conn.request(target="/_echo/status/503", host=HELLO)
        self.assertEqual(resp.status, 503)
        sent.append(({"response_code": 503, "response_flags": "-",
                      "bytes_sent": resp.body_length}, resp))

        resp = conn.request(method="HEAD", target="/head", host=HELLO)
        self.assertEqual(resp.status, 200)
        sent.append(({"method": "HEAD", "bytes_sent": 0}, resp))

        t_delay = time.time()
        resp = conn.request(target="/_echo/delay/400", host="Hello.Default.Example.com:8080")
        self.assertEqual(resp.status, 200)
        sent.append(({"path": "/_echo/delay/400", "authority": "Hello.Default.Example.com:8080",
                      "bytes_sent": resp.body_length}, resp))

        with RawConnection(proxy.port) as old:
            resp = old.request(target="/ten", host=HELLO, version="HTTP/1.0")
            self.assertEqual(resp.status, 200)
        sent.append(({"path": "/ten", "protocol": "HTTP/1.0", "bytes_sent": resp.body_length},
                     resp))
        t_end = time.time()

        self.stop(proxy)
        lines = self.json_lines(self.log_path)
        self.assertEqual(len(lines), len(sent), "one line per request:\n" +
                         "\n".join(json.dumps(l) for l in lines))
        for i, (line, (expected, resp)) in enumerate(zip(lines, sent)):
            with self.subTest(line=i + 1, path=line.get("path")):
                for key, value in expected.items():
                    self.assertEqual(line[key], value, f"{key} in {line}")
                self.assertRegex(line["start_time"], RFC3339_MS_RE)
                start = parse_rfc3339(line["start_time"])
                self.assertGreaterEqual(start, t_begin - 1.0, line)
                self.assertLessEqual(start, t_end + 1.0, line)
                self.assertIsInstance(line["duration"], int, line)
                self.assertGreaterEqual(line["duration"], 0)
                self.assertIsInstance(line["upstream_service_time"], int,
                                      f"a proxied request has an upstream service time: {line}")
                self.assertLessEqual(line["upstream_service_time"], line["duration"], line)
                self.assertEqual(str(line["upstream_service_time"]),
                                 resp.header("x-envoy-upstream-service-time"), line)
                self.assertEqual(line["upstream_host"], self.echo.address)
                self.assertEqual(line["service"], "hello")
                self.assertEqual(line["revision"], "hello-00001")
                self.assertRegex(line["request_id"], UUID4_RE if i != 1 else "client-chosen")
        delayed = lines[5]
        self.assertGreaterEqual(delayed["duration"], 400, delayed)
        self.assertGreaterEqual(delayed["upstream_service_time"], 400, delayed)
        # start_time is when the request came in, not when it was logged
        self.assertLess(abs(parse_rfc3339(delayed["start_time"]) - t_delay), 0.25, delayed)
        starts = [parse_rfc3339(l["start_time"]) for l in lines]
        self.assertEqual(starts, sorted(starts), "one worker, requests one after the other")

    def test_local_replies_are_logged_with_their_flags_and_body_bytes(self):
        dead = self.refusing_endpoint()
        proxy = self.start_logged("json", os.path.join(self.tmpdir, "local.log"),
                                  extra_services=[service("dead", [("dead-00001", [dead])])])
        expected = []
        with RawConnection(proxy.port) as c:
            resp = c.request(target="/nothing", host="nope.example.net",
                             headers=[("User-Agent", "ua-404"), ("X-Request-Id", "rid-404")])
            self.assertEqual(resp.status, 404)
            expected.append({"method": "GET", "path": "/nothing", "response_code": 404,
                             "response_flags": "NR", "bytes_sent": resp.body_length,
                             "upstream_service_time": None, "upstream_host": None,
                             "service": None, "namespace": None, "revision": None,
                             "authority": "nope.example.net", "user_agent": "ua-404",
                             "request_id": "rid-404"})
        with RawConnection(proxy.port) as c:
            resp = c.request(method="POST", target="/d", host="dead.default.example.com",
                             body=b"", headers=[("X-Forwarded-For", "192.0.2.7")])
            self.assertEqual(resp.status, 502)
            expected.append({"method": "POST", "response_code": 502, "response_flags": "UF",
                             "bytes_sent": resp.body_length, "upstream_service_time": None,
                             "upstream_host": dead, "service": "dead", "namespace": "default",
                             "revision": "dead-00001", "x_forwarded_for": "192.0.2.7"})
        with RawConnection(proxy.port) as c:
            c.send(f"GET /smuggle HTTP/1.1\r\nHost: {HELLO}\r\nContent-Length: 3\r\n"
                   "Content-Length: 4\r\n\r\nabcd")
            resp = c.read_response()
            self.assertEqual(resp.status, 400)
            expected.append({"response_code": 400, "response_flags": "DPE",
                             "bytes_sent": resp.body_length, "upstream_service_time": None,
                             "upstream_host": None, "revision": None})
        self.stop(proxy)
        lines = self.json_lines(self.log_path)
        self.assertEqual(len(lines), len(expected), lines)
        for line, exp in zip(lines, expected):
            with self.subTest(code=exp["response_code"]):
                got = {k: line[k] for k in exp}
                self.assertEqual(got, exp, f"bytes_sent is the response body's length, "
                                           f"local replies included; line: {line}")

    def test_lines_show_up_while_running(self):
        proxy = self.start_logged("json")
        for i in range(3):
            self.assertEqual(self.get(proxy.port, f"/live{i}", host=HELLO)[0], 200)
        t0 = time.monotonic()
        lines = self.wait_lines(self.log_path, 3, timeout=3)
        took = time.monotonic() - t0
        self.assertEqual(len(lines), 3, f"after {took:.2f} s")
        self.assertLess(took, 1.5, "lines are flushed by a 250 ms sweep")
        self.assertEqual([json.loads(l)["path"] for l in lines], ["/live0", "/live1", "/live2"])
        self.get(proxy.port, "/live3", host=HELLO)
        self.assertEqual(len(self.wait_lines(self.log_path, 4, timeout=1.0)), 4)
        self.assertTrue(proxy.running())

    def test_text_format_is_envoys_default_layout(self):
        path = os.path.join(self.tmpdir, "text.log")
        proxy = self.start_logged("text", path)
        conn = self.connect(proxy.port)
        r1 = conn.request(target="/t?x=1", host=HELLO,
                          headers=[("User-Agent", "curl/7.88.1"),
                                   ("X-Forwarded-For", "10.0.35.28"),
                                   ("X-Request-Id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2")])
        r2 = conn.request(method="POST", target="/p", host=HELLO, body=b"x" * 154)
        r3 = conn.request(target="/", host="nope.example.net")
        self.assertEqual([r1.status, r2.status, r3.status], [200, 200, 404])
        self.stop(proxy)
        lines = self.read_lines(path)
        self.assertEqual(len(lines), 3, lines)
        m = [TEXT_LINE_RE.match(l) for l in lines]
        for line, match in zip(lines, m):
            self.assertIsNotNone(match, f"not Envoy's default layout: {line!r}")
        first, second, third = (x.groupdict() for x in m)
        self.assertEqual(
            {k: first[k] for k in ("method", "path", "protocol", "code", "flags", "rx", "tx",
                                   "xff", "ua", "rid", "authority", "upstream")},
            {"method": "GET", "path": "/t?x=1", "protocol": "HTTP/1.1", "code": "200",
             "flags": "-", "rx": "0", "tx": str(r1.body_length), "xff": "10.0.35.28",
             "ua": "curl/7.88.1", "rid": "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2",
             "authority": HELLO, "upstream": self.echo.address})
        self.assertEqual(first["ust"], r1.header("x-envoy-upstream-service-time"))
        self.assertEqual((second["method"], second["rx"], second["tx"], second["xff"],
                          second["ua"]), ("POST", "154", str(r2.body_length), "-", "-"))
        self.assertRegex(second["rid"], UUID4_RE)
        self.assertEqual(second["rid"], r2.json()["headers"]["x-request-id"])
        self.assertEqual((third["code"], third["flags"], third["ust"], third["upstream"],
                          third["authority"]), ("404", "NR", "-", "-", "nope.example.net"))

    def test_odd_bytes_keep_one_valid_line(self):
        """A quote, a backslash, a tab and bytes that are not UTF-8 in a header value."""
        proxy = self.start_logged("json")
        ua = b'say "hi"\\ \tthere \xff\xfe end'
        with RawConnection(proxy.port) as c:
            c.send(b"GET /odd HTTP/1.1\r\nHost: " + HELLO.encode() + b"\r\nUser-Agent: " + ua +
                   b"\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        self.stop(proxy)
        lines = self.json_lines(self.log_path)
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["user_agent"], 'say "hi"\\ \tthere \ufffd\ufffd end')

    def test_text_format_escapes_control_characters(self):
        path = os.path.join(self.tmpdir, "text.log")
        proxy = self.start_logged("text", path)
        with RawConnection(proxy.port) as c:
            c.send(b"GET /tab HTTP/1.1\r\nHost: " + HELLO.encode() +
                   b"\r\nUser-Agent: a\tb\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        self.stop(proxy)
        lines = self.read_lines(path)
        self.assertEqual(len(lines), 1, lines)
        m = TEXT_LINE_RE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertEqual(m.group("ua"), "a\\x09b")

    def test_stdout(self):
        self.echo = self.start_echo("hello-00001")
        config = self.hello_config([self.echo], accessLog={"path": "stdout", "format": "json"})
        config_path = os.path.join(self.tmpdir, "revgate.yaml")
        out_path = os.path.join(self.tmpdir, "stdout.txt")
        # the harness keeps stderr; stdout goes to a file through the shell, which execs revgate
        argv = ["sh", "-c", 'exec "$0" run -c "$1" >"$2"', REVGATE_BIN, config_path, out_path]
        proxy = self.start_revgate(config, argv=argv)
        for i in range(4):
            self.assertEqual(self.get(proxy.port, f"/s{i}", host=HELLO)[0], 200)
        lines = self.wait_lines(out_path, 4, timeout=2.0)
        self.assertEqual([json.loads(l)["path"] for l in lines], ["/s0", "/s1", "/s2", "/s3"])
        self.assertNotIn('"start_time"', proxy.stderr_text(), "access log lines on stderr")
        self.stop(proxy)
        self.assertEqual(len(self.json_lines(out_path)), 4)

    def test_stderr(self):
        self.echo = self.start_echo("hello-00001")
        config = self.hello_config([self.echo], accessLog={"path": "stderr", "format": "text"})
        proxy = self.start_revgate(config)
        self.get(proxy.port, "/to-stderr", host=HELLO)
        self.assertIsNotNone(proxy.wait_for_line(r'^\[.*\] "GET /to-stderr HTTP/1\.1" 200 ', 2),
                             proxy.describe())

    def test_graceful_shutdown_writes_every_line(self):
        # two workers: each has its own buffer, and both must reach the file before the exit
        proxy = self.start_logged("json", workers=2)
        per_client, clients = 300, 4
        errors = []

        def client(index):
            try:
                with RawConnection(proxy.port) as c:
                    for i in range(per_client):
                        resp = c.request(target=f"/c{index}/{i}", host=HELLO)
                        if resp.status != 200:
                            errors.append(resp.status)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        # one more request still in flight when SIGTERM arrives
        result = {}

        def slow():
            with RawConnection(proxy.port, timeout=15) as c:
                result["resp"] = c.request(target="/_echo/delay/500", host=HELLO)

        slow_thread = threading.Thread(target=slow)
        slow_thread.start()
        time.sleep(0.15)
        dropped = metric_sum(proxy.metrics(), "revgate_access_log_dropped_lines_total")
        before = len(self.read_lines(self.log_path))
        self.stop(proxy)
        slow_thread.join(10)
        self.assertEqual(result["resp"].status, 200)
        lines = self.json_lines(self.log_path)
        self.assertEqual(len(lines), clients * per_client + 1,
                         f"{before} lines were in the file at SIGTERM")
        self.assertEqual(dropped, 0)
        paths = {l["path"] for l in lines}
        self.assertEqual(len(paths), clients * per_client + 1, "every request once")
        self.assertIn("/_echo/delay/500", paths)

    def test_appends_to_an_existing_file(self):
        path = os.path.join(self.tmpdir, "existing.log")
        with open(path, "w") as f:
            f.write("old line\n")
        proxy = self.start_logged("json", path)
        self.get(proxy.port, "/new", host=HELLO)
        self.stop(proxy)
        lines = self.read_lines(path)
        self.assertEqual(lines[0], "old line")
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(json.loads(lines[1])["path"], "/new")

    def test_unusable_path_fails_the_start(self):
        with open(os.path.join(self.tmpdir, "a-file"), "w") as f:
            f.write("x")
        cases = {
            "missing directory": os.path.join(self.tmpdir, "no-such-dir", "access.log"),
            "a directory": self.tmpdir,
            "below a regular file": os.path.join(self.tmpdir, "a-file", "access.log"),
            "relative, missing directory": "logs/access.log",
        }
        for what, log_path in cases.items():
            with self.subTest(what):
                config = self.hello_config([f"{LOOPBACK}:{dead_port()}"],
                                           accessLog={"path": log_path, "format": "json"})
                config_path = self.write_config(config, "bad-log.yaml")
                for verb in ("run", "check"):
                    code, _, stderr = self.run_to_exit(config_path, verb)
                    self.assertEqual(code, 1, f"{verb}: {stderr}")
                    named = [l for l in stderr.splitlines() if "[access-log-path]" in l]
                    self.assertEqual(len(named), 1, f"{verb}: one line for the path:\n{stderr}")
                    self.assertIn(log_path, named[0])
                    self.assertTrue(named[0].startswith(config_path + ":"), named[0])
                    self.assertNotIn("ready", stderr)

    def test_unknown_format_fails_the_start(self):
        config = self.hello_config([f"{LOOPBACK}:{dead_port()}"],
                                   accessLog={"path": "stdout", "format": "xml"})
        code, _, stderr = self.run_to_exit(self.write_config(config))
        self.assertEqual(code, 1, stderr)
        self.assertRegex(stderr, r"\[access-log-format\]")
        self.assertIn("xml", stderr)


# -------------------------------------------------------------------------------- trace context

class TraceContextTest(ObservabilityTest):
    def start_traced(self, sample_rate=None):
        self.echo = self.start_echo("hello-00001")
        top = {} if sample_rate is None else {"tracing": {"sampleRate": sample_rate}}
        self.proxy = self.start_revgate(self.hello_config([self.echo], **top))
        self.conn = self.connect(self.proxy.port)
        return self.proxy

    def seen(self, headers=(), target="/"):
        """The request headers the backend saw (lowercased names)."""
        resp = self.conn.request(target=target, host=HELLO, headers=headers)
        self.assertEqual(resp.status, 200, resp)
        return resp.json()["headers"]

    def test_a_request_without_traceparent_gets_a_new_one(self):
        self.start_traced()
        values = [self.seen()["traceparent"] for _ in range(40)]
        for v in values:
            self.assertRegex(v, TRACEPARENT_RE)
        self.assertEqual(len({v[3:35] for v in values}), 40, "a new trace id per request")
        self.assertEqual(len({v[36:52] for v in values}), 40, "a new parent id per request")
        # default sampleRate 0.01: P(more than 8 of 40 sampled) is about 1e-9
        self.assertLessEqual(sum(v.endswith("-01") for v in values), 8, values)

    def test_sample_rate_1_sets_the_sampled_flag(self):
        self.start_traced(1)
        flags = {self.seen()["traceparent"][-3:] for _ in range(30)}
        self.assertEqual(flags, {"-01"})

    def test_sample_rate_0_never_samples(self):
        self.start_traced(0)
        flags = {self.seen()["traceparent"][-3:] for _ in range(30)}
        self.assertEqual(flags, {"-00"})

    def test_sample_rate_half(self):
        self.start_traced(0.5)
        sampled = sum(self.seen()["traceparent"].endswith("-01") for _ in range(200))
        self.assertTrue(60 <= sampled <= 140, sampled)   # binomial(200, 0.5): 10 sigma

    def test_a_valid_traceparent_and_tracestate_pass_unchanged(self):
        self.start_traced(1)   # a proxy that made its own would set flag 01
        unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        future = ("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-"
                  "will-be-like")
        state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        for tp in (VALID_TRACEPARENT, unsampled, future):
            with self.subTest(tp):
                seen = self.seen([("traceparent", tp), ("tracestate", state)])
                self.assertEqual(seen["traceparent"], tp)
                self.assertEqual(seen["tracestate"], state)

    def test_an_invalid_traceparent_is_replaced(self):
        self.start_traced(0)
        for tp in INVALID_TRACEPARENTS:
            with self.subTest(tp):
                seen = self.seen([("traceparent", tp)])
                self.assertRegex(seen["traceparent"], TRACEPARENT_RE,
                                 "exactly one valid traceparent reaches the backend")
                self.assertNotEqual(seen["traceparent"], tp)
                self.assertNotIn(tp[3:35], seen["traceparent"])

    def test_other_trace_headers_pass_unchanged(self):
        self.start_traced()
        sent = {"x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1",
                "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
                "x-b3-spanid": "e457b5a2e4d86bd1",
                "x-b3-sampled": "1"}
        seen = self.seen(list(sent.items()))
        self.assertEqual({k: seen.get(k) for k in sent}, sent)
        self.assertRegex(seen["traceparent"], TRACEPARENT_RE)

    def test_upstream_service_time_header(self):
        self.start_traced()
        for target, status in (("/", 200), ("/_echo/status/404", 404),
                               ("/_echo/status/503", 503), ("/_echo/bytes/100000", 200),
                               ("/_echo/status/204", 204)):
            with self.subTest(target):
                resp = self.conn.request(target=target, host=HELLO)
                self.assertEqual(resp.status, status)
                values = resp.header_all("x-envoy-upstream-service-time")
                self.assertEqual(len(values), 1, resp.headers)
                self.assertRegex(values[0], r"^\d+$")
        t0 = time.monotonic()
        resp = self.conn.request(target="/_echo/delay/200", host=HELLO)
        took_ms = (time.monotonic() - t0) * 1000
        value = int(resp.header("x-envoy-upstream-service-time"))
        self.assertGreaterEqual(value, 200)
        self.assertLessEqual(value, took_ms + 1)
        # a local reply had no upstream
        resp = self.conn.request(target="/", host="nope.example.net")
        self.assertEqual(resp.status, 404)
        self.assertFalse(resp.has_header("x-envoy-upstream-service-time"), resp.headers)

    def test_upstream_service_time_from_the_backend_is_replaced(self):
        """Envoy sets the header: a backend's own copy does not reach the client as well."""
        self.start_traced()
        resp = self.conn.request(
            target="/_echo/headers?h=x-envoy-upstream-service-time:99999", host=HELLO)
        values = resp.header_all("x-envoy-upstream-service-time")
        self.assertEqual(len(values), 1,
                         f"one x-envoy-upstream-service-time, the proxy's: {resp.headers}")
        self.assertNotEqual(values[0], "99999")


# -------------------------------------------------------------------------------- debug headers

class DebugHeadersTest(ObservabilityTest):
    def start_pair(self, debug):
        self.a1, self.a2, self.b = self.start_echos("ep-a1", "ep-a2", "ep-b")
        svc = service("hello", [("hello-00001", [self.a1, self.a2]),
                                ("hello-00002", [f"localhost:{self.b.port}"])],
                      [{"revisionName": "hello-00001", "percent": 50},
                       {"revisionName": "hello-00002", "percent": 50}])
        if debug is not None:
            svc["debugHeaders"] = debug
        return self.start_revgate(default_config([svc]))

    def test_debug_headers_name_the_revision_and_endpoint(self):
        proxy = self.start_pair(True)
        endpoint_of = {"ep-a1": ("hello-00001", self.a1.address),
                       "ep-a2": ("hello-00001", self.a2.address),
                       "ep-b": ("hello-00002", f"localhost:{self.b.port}")}   # as configured
        conn = self.connect(proxy.port)
        seen = set()
        for _ in range(12):
            resp = conn.request(host=HELLO)
            self.assertEqual(resp.status, 200)
            answered = resp.header("x-revision")
            self.assertEqual((resp.header("x-revgate-revision"), resp.header("x-revgate-endpoint")),
                             endpoint_of[answered], resp.headers)
            seen.add(answered)
        self.assertEqual(seen, set(endpoint_of))
        resp = conn.request(host="nope.example.net")
        self.assertEqual(resp.status, 404)
        self.assertFalse(resp.has_header("x-revgate-revision"))

    def test_no_debug_headers_by_default_or_when_false(self):
        for debug in (None, False):
            with self.subTest(debugHeaders=debug):
                proxy = self.start_pair(debug)
                conn = self.connect(proxy.port)
                for _ in range(4):
                    resp = conn.request(host=HELLO)
                    self.assertEqual(resp.status, 200)
                    self.assertFalse(resp.has_header("x-revgate-revision"), resp.headers)
                    self.assertFalse(resp.has_header("x-revgate-endpoint"), resp.headers)
                self.stop(proxy)

    def test_debug_headers_are_per_service(self):
        a, b = self.start_echos("hello-00001", "other-00001")
        on = service("hello", [("hello-00001", [a])])
        on["debugHeaders"] = True
        off = service("other", [("other-00001", [b])])
        proxy = self.start_revgate(default_config([on, off]))
        resp = self.connect(proxy.port).request(host="other.default.example.com")
        self.assertEqual(resp.status, 200)
        self.assertFalse(resp.has_header("x-revgate-revision"), resp.headers)
        resp = self.connect(proxy.port).request(host=HELLO)
        self.assertEqual(resp.header("x-revgate-revision"), "hello-00001")

    def test_a_backends_own_debug_headers_do_not_double_up(self):
        a = self.start_echo("hello-00001")
        svc = service("hello", [("hello-00001", [a])])
        svc["debugHeaders"] = True
        proxy = self.start_revgate(default_config([svc]))
        resp = self.connect(proxy.port).request(
            target="/_echo/headers?h=X-Revgate-Revision:spoofed&h=X-Revgate-Endpoint:1.2.3.4:5",
            host=HELLO)
        self.assertEqual(resp.header_all("x-revgate-revision"), ["hello-00001"], resp.headers)
        self.assertEqual(resp.header_all("x-revgate-endpoint"), [a.address], resp.headers)


# ------------------------------------------------------------------------------ sticky sessions

class StickySessionTest(ObservabilityTest):
    def start_sticky(self, hash_on, percents=(50, 50)):
        self.a, self.b = self.start_echos("hello-00001", "hello-00002")
        self.config = self.sticky_config(hash_on, percents)
        self.proxy = self.start_revgate(self.config)
        return self.proxy

    def sticky_config(self, hash_on, percents):
        svc = service("hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])],
                      [{"revisionName": "hello-00001", "percent": percents[0]},
                       {"revisionName": "hello-00002", "percent": percents[1], "tag": "canary"}],
                      split="hash")
        svc["hashOn"] = hash_on
        return default_config([svc])

    def revision_for(self, port, headers=(), conn=None, source=None):
        if conn is None:
            conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10,
                                              source_address=(source, 0) if source else None)
            own = True
        else:
            own = False
        try:
            conn.request("GET", "/", headers={"Host": HELLO, **dict(headers)})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            return resp.getheader("X-Revision"), resp
        finally:
            if own:
                conn.close()

    def test_header_same_user_same_revision(self):
        proxy = self.start_sticky({"header": "X-User"})
        keep = self.http_connection(proxy.port)
        for u in range(20):
            got = set()
            for i in range(20):
                rev, resp = self.revision_for(proxy.port, [("X-User", f"user-{u}")],
                                              conn=keep if i % 2 else None)
                self.assertIsNone(resp.getheader("Set-Cookie"))
                got.add(rev)
            self.assertEqual(len(got), 1, f"user-{u} went to {got}")

    def test_header_users_spread_by_weight(self):
        proxy = self.start_sticky({"header": "X-User"})
        conn = self.http_connection(proxy.port)
        counts = {"hello-00001": 0, "hello-00002": 0}
        first = {}
        for u in range(200):
            rev, _ = self.revision_for(proxy.port, [("X-User", f"u{u}")], conn=conn)
            counts[rev] += 1
            first[u] = rev
        self.assertTrue(all(60 <= c <= 140 for c in counts.values()), counts)
        # the point depends on the key alone: a second process agrees, user by user
        proxy2 = self.start_revgate(self.config, name="second.yaml")
        conn2 = self.http_connection(proxy2.port)
        again = {u: self.revision_for(proxy2.port, [("X-User", f"u{u}")], conn=conn2)[0]
                 for u in range(200)}
        self.assertEqual(again, first)

    def test_route_cli_agrees_with_the_running_proxy(self):
        proxy = self.start_sticky({"header": "X-User"})
        for u in range(8):
            live, _ = self.revision_for(proxy.port, [("X-User", f"cli-{u}")])
            out = self.run_cli("route", "-c", proxy.config_path, "--host", HELLO,
                               "--header", f"X-User:cli-{u}")
            self.assertEqual(out.returncode, 0, out.stderr)
            m = re.search(r"(?m)^picked:\s+(\S+)", out.stdout)
            self.assertIsNotNone(m, out.stdout)
            self.assertEqual(m.group(1), live, f"user cli-{u}:\n{out.stdout}")

    def test_requests_without_the_key_take_the_smooth_schedule(self):
        proxy = self.start_sticky({"header": "X-User"})
        conn = self.http_connection(proxy.port)
        revs = [self.revision_for(proxy.port, conn=conn)[0] for _ in range(10)]
        revs += [self.revision_for(proxy.port, [("X-User", "")], conn=conn)[0] for _ in range(10)]
        self.assertEqual(revs.count("hello-00001"), 10, revs)
        for a, b in zip(revs, revs[1:]):
            self.assertNotEqual(a, b, f"50/50 smooth alternates: {revs}")

    def test_a_tag_wins_over_the_key(self):
        proxy = self.start_sticky({"header": "X-User"})
        conn = self.http_connection(proxy.port)
        users = [f"t{u}" for u in range(40)]
        on_first = [u for u in users
                    if self.revision_for(proxy.port, [("X-User", u)], conn=conn)[0]
                    == "hello-00001"]
        self.assertTrue(on_first)
        for u in on_first:
            rev, _ = self.revision_for(proxy.port, [("X-User", u),
                                                    ("Knative-Serving-Tag", "canary")], conn=conn)
            self.assertEqual(rev, "hello-00002", u)
            conn.request("GET", "/", headers={"Host": CANARY, "X-User": u})
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.getheader("X-Revision"), "hello-00002")

    def test_weight_change_moves_only_the_users_at_the_boundary(self):
        proxy = self.start_sticky({"header": "X-User"}, (90, 10))
        conn = self.http_connection(proxy.port)
        users = [f"w{u}" for u in range(300)]
        before = {u: self.revision_for(proxy.port, [("X-User", u)], conn=conn)[0] for u in users}
        self.write_config(self.sticky_config({"header": "X-User"}, (80, 20)))
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(r"generation 2", 5, start=mark),
                             proxy.describe())
        conn = self.http_connection(proxy.port)
        after = {u: self.revision_for(proxy.port, [("X-User", u)], conn=conn)[0] for u in users}
        back = [u for u in users if before[u] == "hello-00002" and after[u] == "hello-00001"]
        moved = [u for u in users if before[u] == "hello-00001" and after[u] == "hello-00002"]
        self.assertEqual(back, [], "nobody moves from the second revision to the first")
        # points 80..89 move: about 10% of 300 users
        self.assertTrue(10 <= len(moved) <= 55, f"{len(moved)} users moved")
        share2 = sum(r == "hello-00002" for r in after.values())
        self.assertTrue(35 <= share2 <= 90, share2)

    def test_cookie(self):
        proxy = self.start_sticky({"cookie": {"name": "rg", "ttl": "60s"}})
        tokens = {}
        for client in range(30):
            rev, resp = self.revision_for(proxy.port)
            cookie = resp.getheader("Set-Cookie")
            self.assertIsNotNone(cookie, "a request without the cookie gets one")
            m = SET_COOKIE_RE.match(cookie)
            self.assertIsNotNone(m, cookie)
            tokens[m.group(1)] = rev
        self.assertEqual(len(tokens), 30, "a new token per new client")
        self.assertEqual(set(tokens.values()), {"hello-00001", "hello-00002"},
                         "new clients spread over both revisions")
        keep = self.http_connection(proxy.port)
        for token, rev in list(tokens.items())[:6]:
            for i in range(20):
                cookie = f"rg={token}" if i % 3 else f"a=1; rg={token}; z=2"
                got, resp = self.revision_for(proxy.port, [("Cookie", cookie)],
                                              conn=keep if i % 2 else None)
                self.assertEqual(got, rev, f"cookie {cookie}")
                self.assertIsNone(resp.getheader("Set-Cookie"), "no new cookie when it is sent")

    def test_cookie_and_tags(self):
        proxy = self.start_sticky({"cookie": {"name": "rg", "ttl": "60s"}})
        for _ in range(5):
            rev, resp = self.revision_for(proxy.port, [("Knative-Serving-Tag", "canary")])
            self.assertEqual(rev, "hello-00002")
            self.assertIsNone(resp.getheader("Set-Cookie"))
        conn = self.http_connection(proxy.port)
        conn.request("GET", "/", headers={"Host": CANARY})
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.getheader("X-Revision"), "hello-00002")
        self.assertIsNone(resp.getheader("Set-Cookie"))
        # a cookie that points at the first revision loses to the tag
        token = None
        for _ in range(60):
            rev, resp = self.revision_for(proxy.port)
            if rev == "hello-00001":
                token = SET_COOKIE_RE.match(resp.getheader("Set-Cookie")).group(1)
                break
        self.assertIsNotNone(token)
        rev, _ = self.revision_for(proxy.port, [("Cookie", f"rg={token}"),
                                                ("Knative-Serving-Tag", "canary")])
        self.assertEqual(rev, "hello-00002")

    def test_session_cookie_without_ttl(self):
        proxy = self.start_sticky({"cookie": {"name": "session"}})
        _, resp = self.revision_for(proxy.port)
        self.assertRegex(resp.getheader("Set-Cookie") or "",
                         r"^session=[0-9a-f]{16}; Path=/; HttpOnly$")

    def test_source_ip(self):
        proxy = self.start_sticky({"sourceIp": True})
        # one address: always the same revision, whatever X-Forwarded-For says
        got = {self.revision_for(proxy.port, [("X-Forwarded-For", f"198.51.100.{i}")])[0]
               for i in range(20)}
        self.assertEqual(len(got), 1, got)
        # many loopback addresses (127.0.0.0/8 is all local on Linux): each sticks, both get some
        per_source = {}
        for i in range(2, 62):
            src = f"127.0.0.{i}"
            revs = {self.revision_for(proxy.port, source=src)[0] for _ in range(3)}
            self.assertEqual(len(revs), 1, f"{src}: {revs}")
            per_source[src] = revs.pop()
        counts = {r: list(per_source.values()).count(r) for r in ("hello-00001", "hello-00002")}
        self.assertTrue(all(c >= 10 for c in counts.values()), counts)


# -------------------------------------------------------------------------------- LEAST_REQUEST

class LoadBalancerTest(ObservabilityTest):
    def run_load(self, balancer, clients=8, seconds=2.0):
        fast = self.start_echo("fast")
        slow = self.start_echo("slow", "--delay-ms", "300")
        svc = service("hello", [("hello-00001", [fast, slow])])
        svc["loadBalancer"] = balancer
        proxy = self.start_revgate(default_config([svc]))
        before = {"fast": fast.stats(), "slow": slow.stats()}
        errors = []
        stop_at = time.monotonic() + seconds

        def client():
            conn = http.client.HTTPConnection(LOOPBACK, proxy.port, timeout=10)
            try:
                while time.monotonic() < stop_at:
                    conn.request("GET", "/", headers={"Host": HELLO})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        errors.append(resp.status)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        return {"fast": fast.requests_since(before["fast"]),
                "slow": slow.requests_since(before["slow"])}

    def test_least_request_prefers_the_fast_endpoint(self):
        counts = self.run_load("LEAST_REQUEST")
        self.assertGreaterEqual(counts["fast"], 3 * max(counts["slow"], 1), counts)
        self.assertGreaterEqual(counts["fast"], 50, counts)

    def test_round_robin_alternates_whatever_the_latency(self):
        counts = self.run_load("ROUND_ROBIN")
        self.assertLessEqual(abs(counts["fast"] - counts["slow"]), 1, counts)
        self.assertGreaterEqual(counts["slow"], 5, counts)


# ---------------------------------------------------------------------------------------- metrics

class ObservabilityMetricsTest(ObservabilityTest):
    def start_one(self, **top):
        self.echo = self.start_echo("hello-00001")
        self.proxy = self.start_revgate(self.hello_config([self.echo], **top))
        return self.proxy

    def metric(self, name, **labels):
        return metric_sum(self.proxy.metrics(), name, **labels)

    def upstream(self, state):
        return self.metric("revgate_upstream_connections", service="hello", namespace="default",
                           revision="hello-00001", state=state)

    def in_background(self, target, host=HELLO):
        result = {}

        def run():
            try:
                with RawConnection(self.proxy.port, timeout=20) as c:
                    result["resp"] = c.request(target=target, host=host)
            except Exception as e:  # reported by the caller
                result["error"] = e

        t = threading.Thread(target=run)
        t.start()
        return t, result

    def test_requests_in_flight(self):
        self.start_one()
        self.assertEqual(self.metric("revgate_requests_in_flight"), 0)
        t, result = self.in_background("/_echo/delay/1500")
        self.eventually(lambda: self.metric("revgate_requests_in_flight"), 1.0,
                        "one request pending", timeout=1.2)
        t.join(10)
        self.assertEqual(result["resp"].status, 200)
        self.eventually(lambda: self.metric("revgate_requests_in_flight"), 0.0,
                        "none after it finished")

    def test_upstream_connections_idle_and_active(self):
        self.start_one()
        conn = self.connect(self.proxy.port)
        self.assertEqual(conn.request(host=HELLO).status, 200)
        self.eventually(lambda: (self.upstream("idle"), self.upstream("active")), (1.0, 0.0),
                        "one pooled connection after one keep-alive request")
        t, result = self.in_background("/_echo/delay/1200")
        self.eventually(lambda: (self.upstream("idle"), self.upstream("active")), (0.0, 1.0),
                        "the pooled connection carries the delayed request", timeout=1.0)
        t.join(10)
        self.assertEqual(result["resp"].status, 200)
        self.eventually(lambda: (self.upstream("idle"), self.upstream("active")), (1.0, 0.0),
                        "back in the pool")

    def test_upstream_connections_opened_total(self):
        self.start_one()
        opened = lambda: self.metric("revgate_upstream_connections_opened_total",
                                     revision="hello-00001")
        conn = self.connect(self.proxy.port)
        for _ in range(5):
            self.assertEqual(conn.request(host=HELLO).status, 200)
        self.eventually(opened, 1.0, "five requests, one upstream connection")
        # three at once: one takes the pooled connection, two open new ones
        pending = [self.in_background("/_echo/delay/800") for _ in range(3)]
        for t, result in pending:
            t.join(10)
            self.assertEqual(result["resp"].status, 200)
        self.eventually(opened, 3.0, "two more for three concurrent requests")
        self.eventually(lambda: self.upstream("idle"), 3.0, "all three pooled")
        # the backend closes: the next request needs a new connection
        self.assertEqual(conn.request(target="/_echo/close", host=HELLO).status, 200)
        self.eventually(lambda: self.upstream("idle"), 2.0, "the closed one left the pool")
        self.assertEqual(opened(), 3.0)
        self.assertEqual(self.echo.stats()["accepted_connections"] - 1, 3,
                         "the backend saw as many connections as counted")

    def test_upstream_connect_failures_total(self):
        dead = self.refusing_endpoint()
        self.echo = self.start_echo("hello-00001")
        self.proxy = self.start_revgate(default_config([
            service("hello", [("hello-00001", [self.echo])]),
            service("dead", [("dead-00001", [dead])])]))
        for _ in range(3):
            self.assertEqual(self.get(self.proxy.port, host="dead.default.example.com")[0], 502)
        self.get(self.proxy.port, host=HELLO)
        self.eventually(lambda: self.metric("revgate_upstream_connect_failures_total",
                                            service="dead", revision="dead-00001"), 3.0,
                        "three refused connects")
        self.assertEqual(self.metric("revgate_upstream_connect_failures_total",
                                     revision="hello-00001"), 0)
        self.assertEqual(self.metric("istio_requests_total", destination_version="dead-00001",
                                     response_code="502", response_flags="UF"), 3)

    def test_upstream_retries_total(self):
        """A pooled connection the backend drops when the next request arrives, without an
        answer (as if it had closed it just then): the bodyless GET goes once more on a new
        connection, and that is counted."""
        def handler(backend, sock, index):
            served = 0
            while True:
                head = backend.read_head(sock)
                if not head:
                    return
                if index == 0 and served == 1:
                    return   # the second request on the first connection: closed, no answer
                body = b'{"ok":true}'
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                served += 1

        fake = self.start_fake_backend(handler)
        self.proxy = self.start_revgate(default_config([service("hello", [("hello-00001",
                                                                             [fake.address])])]))
        conn = self.connect(self.proxy.port)
        self.assertEqual(conn.request(host=HELLO).status, 200)
        self.assertEqual(conn.request(host=HELLO).status, 200, "sent again, answered")
        self.assertEqual((fake.connections, len(fake.requests)), (2, 3))
        self.eventually(lambda: self.metric("revgate_upstream_retries_total",
                                            revision="hello-00001"), 1.0, "one retry")
        samples = self.proxy.metrics()
        self.assertEqual(metric_sum(samples, "revgate_upstream_connections_opened_total",
                                    revision="hello-00001"), 2)
        self.assertEqual(metric_sum(samples, "istio_requests_total",
                                    destination_version="hello-00001"), 2,
                         "a retried request is one request")
        self.stop(self.proxy)   # lets the fake backend's connection threads end

    def test_process_metrics(self):
        t0 = time.time()
        self.start_one()
        t1 = time.time()
        for _ in range(20):
            self.get(self.proxy.port, host=HELLO)
        text = self.proxy.metrics_text()
        samples = parse_metrics(text)
        for name, kind in (("process_cpu_seconds_total", "counter"),
                           ("process_resident_memory_bytes", "gauge"),
                           ("process_virtual_memory_bytes", "gauge"),
                           ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                           ("process_start_time_seconds", "gauge")):
            self.assertIn(f"# TYPE {name} {kind}\n", text)
            self.assertEqual(len(metric_select(samples, name)), 1, name)
        value = lambda name: metric_sum(samples, name)
        rss_kib = self.proxy.memory()["VmRSS"]
        self.assertGreater(value("process_resident_memory_bytes"), 1 << 20)
        self.assertLess(abs(value("process_resident_memory_bytes") / 1024 - rss_kib),
                        rss_kib * 0.5, f"VmRSS {rss_kib} KiB")
        self.assertGreaterEqual(value("process_virtual_memory_bytes"),
                                value("process_resident_memory_bytes"))
        cpu = value("process_cpu_seconds_total")
        self.assertGreaterEqual(cpu, 0)
        self.assertLess(cpu, (time.time() - t0) * os.cpu_count() + 0.1)
        fds = len(os.listdir(f"/proc/{self.proxy.pid}/fd"))
        self.assertLess(abs(value("process_open_fds") - fds), 4, f"/proc says {fds}")
        self.assertGreater(value("process_max_fds"), value("process_open_fds"))
        start = value("process_start_time_seconds")
        # the kernel's boot time has whole seconds
        self.assertTrue(t0 - 1.5 <= start <= t1 + 1.5, (t0, start, t1))

    def test_traffic_percent_shows_the_split(self):
        a, b = self.start_echos("hello-00001", "hello-00002")
        self.proxy = self.start_revgate(default_config([service(
            "hello", [("hello-00001", [a]), ("hello-00002", [b])],
            [{"revisionName": "hello-00001", "percent": 90},
             {"revisionName": "hello-00002", "percent": 10, "tag": "canary"}])]))
        rows = sorted((l["revision"], l["tag"], v) for l, v in metric_select(
            self.proxy.metrics(), "revgate_traffic_percent", service="hello",
            namespace="default"))
        self.assertEqual(rows, [("hello-00001", "", 90.0), ("hello-00002", "canary", 10.0)])

    def test_requests_total_matches_backends_and_counts_local_replies(self):
        a, b = self.start_echos("hello-00001", "hello-00002")
        svc = service("hello", [("hello-00001", [a]), ("hello-00002", [b])],
                      [{"revisionName": "hello-00001", "percent": 70},
                       {"revisionName": "hello-00002", "percent": 30}], split="hash")
        svc["hashOn"] = {"header": "X-User"}
        self.proxy = self.start_revgate(default_config([svc]))
        conn = self.connect(self.proxy.port)
        for u in range(150):
            self.assertEqual(conn.request(host=HELLO, headers=[("X-User", f"m{u}")]).status, 200)
        for _ in range(3):
            self.assertEqual(conn.request(host="nope.example.net").status, 404)
        for _ in range(2):
            with RawConnection(self.proxy.port) as raw:
                raw.send(b"THIS IS NOT HTTP\r\n\r\n")
                self.assertEqual(raw.read_response().status, 400)
        seen = {"hello-00001": a.requests_seen(), "hello-00002": b.requests_seen()}
        self.assertEqual(sum(seen.values()), 150)

        def counted():
            samples = self.proxy.metrics()
            return {rev: metric_sum(samples, "istio_requests_total", destination_version=rev)
                    for rev in seen}
        self.eventually(counted, {k: float(v) for k, v in seen.items()},
                        "istio_requests_total per revision vs the backends")
        unknown = {k: "unknown" for k in (
            "destination_service", "destination_service_name", "destination_service_namespace",
            "destination_version", "destination_canonical_revision")}
        samples = self.proxy.metrics()
        self.assertEqual(metric_sum(samples, "istio_requests_total", response_code="404",
                                    response_flags="NR", reporter="source", **unknown), 3)
        self.assertEqual(metric_sum(samples, "istio_requests_total", response_code="400",
                                    response_flags="DPE", reporter="source", **unknown), 2)
        self.assertEqual(metric_sum(samples, "istio_requests_total"), 155)

    def test_duration_lands_in_the_right_bucket(self):
        self.start_one()
        self.assertEqual(self.get(self.proxy.port, "/_echo/delay/120", host=HELLO)[0], 200)
        self.eventually(lambda: self.metric("istio_request_duration_milliseconds_count",
                                            destination_version="hello-00001"), 1.0, "counted")
        rows = metric_select(self.proxy.metrics(), "istio_request_duration_milliseconds_bucket",
                             destination_version="hello-00001")
        by_le = {normalise_le(l["le"]): v for l, v in rows}
        self.assertEqual((by_le["100"], by_le["250"], by_le["+Inf"]), (0.0, 1.0, 1.0), by_le)
        total = self.metric("istio_request_duration_milliseconds_sum",
                            destination_version="hello-00001")
        self.assertTrue(120 <= total < 250, total)

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed")
    def test_promtool_check_metrics_on_a_full_scrape(self):
        dead = self.refusing_endpoint()
        self.echo = self.start_echo("hello-00001")
        sticky = service("hello", [("hello-00001", [self.echo])], split="hash")
        sticky["hashOn"] = {"cookie": {"name": "rg", "ttl": "60s"}}
        sticky["loadBalancer"] = "LEAST_REQUEST"
        self.proxy = self.start_revgate(default_config(
            [sticky, service("dead", [("dead-00001", [dead])])],
            accessLog={"path": "access.log", "format": "json"}))
        conn = self.connect(self.proxy.port)
        for host in (HELLO, HELLO, "dead.default.example.com", "nope.example.net"):
            conn.request(host=host)
        conn.request(target="/_echo/status/500", host=HELLO)
        conn.request(method="POST", host=HELLO, body=b"x" * 100)
        t, _ = self.in_background("/_echo/delay/1000")
        time.sleep(0.3)   # scrape with a request in flight and an active upstream connection
        text = self.proxy.metrics_text()
        t.join(10)
        for name in ("revgate_requests_in_flight", "revgate_upstream_connections",
                     "revgate_upstream_connections_opened_total",
                     "revgate_upstream_connect_failures_total", "revgate_upstream_retries_total",
                     "revgate_access_log_dropped_lines_total", "process_open_fds"):
            self.assertRegex(text, rf"(?m)^# TYPE {name} ")
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=30)
        remarks = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        other = [r for r in remarks if not (r.startswith("istio_request_duration_milliseconds")
                                            and "base unit" in r)]
        self.assertEqual(other, [], f"promtool remarks:\n{out.stdout}{out.stderr}")
        self.assertIn(out.returncode, (0, 3), f"promtool error:\n{out.stdout}{out.stderr}")


if __name__ == "__main__":
    unittest.main()
