"""Process lifecycle: start, readiness, graceful drain on SIGTERM/SIGINT, SIGHUP reload,
start-up failures."""

import os
import re
import signal
import socket
import threading
import time
import unittest

from harness import (REVGATE_BIN, IntegrationTest, RawConnection, Revgate, default_config,
                     metric_sum, parse_metrics, service)

HELLO = "hello.default.example.com"


class InFlight(threading.Thread):
    """Sends one request on its own connection and keeps the response (or the error)."""

    def __init__(self, port, target):
        super().__init__(daemon=True)
        self.conn = RawConnection(port, timeout=15)
        self.target = target
        self.response = None
        self.error = None
        self.finished_at = None

    def run(self):
        try:
            self.response = self.conn.request(target=self.target, host=HELLO)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self.conn.close()


def connection_refused(port, timeout=1.0):
    """Polls until a new connection to `port` is refused; True if that happens in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            return True
        except OSError:
            return True
        s.close()
        time.sleep(0.02)
    return False


class DrainTest(IntegrationTest):
    def start_proxy(self, grace="5s"):
        self.echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [self.echo])])],
                                timeouts={"shutdownGrace": grace})
        return self.start_revgate(config)

    def test_sigterm_lets_the_request_in_flight_finish(self):
        proxy = self.start_proxy(grace="5s")
        slow = InFlight(proxy.port, "/_echo/delay/1500")
        slow.start()
        time.sleep(0.3)  # the request is at the backend now
        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertTrue(connection_refused(proxy.port, 1.0),
                        "new connections must be refused once the drain has started")
        refused_at = time.monotonic()
        slow.join(10)
        self.assertIsNone(slow.error, f"the request in flight failed: {slow.error!r}\n"
                                      f"{proxy.describe()}")
        self.assertIsNotNone(slow.response)
        self.assertEqual(slow.response.status, 200, slow.response)
        self.assertEqual(slow.response.json()["target"], "/_echo/delay/1500")
        self.assertLess(refused_at, slow.finished_at,
                        "connections were refused only after the request in flight finished")
        code = proxy.wait(5)
        exited = time.monotonic()
        self.assertEqual(code, 0, proxy.describe())
        self.assertLess(exited - signalled, 5, "exit within the 5 s grace period")
        self.assertIsNotNone(proxy.wait_for_line(r"\bstopped\b", 1), proxy.describe())

    def test_sigint_on_an_idle_proxy_exits_0_promptly(self):
        proxy = self.start_proxy()
        status, _, _ = self.get(proxy.port, host=HELLO)
        self.assertEqual(status, 200)
        started = time.monotonic()
        proxy.signal(signal.SIGINT)
        self.assertEqual(proxy.wait(5), 0, proxy.describe())
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertIsNotNone(proxy.wait_for_line(r"\bstopped\b", 1), proxy.describe())

    def test_idle_keepalive_connections_do_not_hold_up_the_exit(self):
        proxy = self.start_proxy(grace="10s")
        conn = self.connect(proxy.port)
        self.assertEqual(conn.request(host=HELLO).status, 200)  # now idle, kept alive
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        self.assertEqual(proxy.wait(5), 0, proxy.describe())
        self.assertLess(time.monotonic() - started, 2,
                        "an idle keep-alive connection is closed at once on drain")
        self.assertTrue(conn.closed_by_peer(1))

    def test_keepalive_client_is_told_to_close_during_drain(self):
        proxy = self.start_proxy(grace="5s")
        conn = self.connect(proxy.port)
        self.assertEqual(conn.request(host=HELLO).status, 200)
        conn.send(f"GET /_echo/delay/800 HTTP/1.1\r\nHost: {HELLO}\r\n\r\n")
        time.sleep(0.2)
        proxy.signal(signal.SIGTERM)
        resp = self.read_or_fail(conn, "a request in flight on a keep-alive connection")
        self.assertEqual(resp.status, 200, resp)
        self.assertIn("close", (resp.header("connection") or "").lower(),
                      f"the last response of a draining proxy says Connection: close: {resp}")
        self.assertEqual(proxy.wait(5), 0, proxy.describe())

    def test_grace_period_bounds_the_drain(self):
        proxy = self.start_proxy(grace="1s")
        slow = InFlight(proxy.port, "/_echo/delay/6000")
        slow.start()
        time.sleep(0.3)
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        code = proxy.wait(5)
        elapsed = time.monotonic() - started
        self.assertIsNotNone(code, "still running 5 s after SIGTERM with a 1 s grace period")
        self.assertEqual(code, 0, proxy.describe())
        self.assertLess(elapsed, 2.5, "the grace period (1 s) bounds the drain")
        slow.join(5)
        self.assertFalse(slow.response is not None and slow.response.status == 200,
                         "the 6 s request cannot have finished")


class ReadinessTest(IntegrationTest):
    def test_healthz_and_readyz(self):
        echo = self.start_echo("hello-00001")
        proxy = self.start_revgate(default_config([service("hello", [("hello-00001", [echo])])]))
        status, headers, body = proxy.admin_get("/healthz")
        self.assertEqual(status, 200, body)
        status, headers, body = proxy.admin_get("/readyz")
        self.assertEqual(status, 200, body)
        status, _, _ = proxy.admin_get("/nope")
        self.assertEqual(status, 404)

    def test_default_verb_runs_the_config(self):
        echo = self.start_echo("hello-00001")
        path = self.write_config(default_config([service("hello", [("hello-00001", [echo])])]))
        proxy = self.track(Revgate(path, argv=[REVGATE_BIN, "-c", path], wait_ready=False))
        proxy.wait_ready()
        status, headers, _ = self.get(proxy.port, host=HELLO)
        self.assertEqual((status, headers.get("x-revision")), (200, "hello-00001"))

    def test_several_listeners(self):
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])])
        config["listeners"] = [{"name": "http", "address": "127.0.0.1:0"},
                               {"name": "alt", "address": "127.0.0.1:0"}]
        proxy = self.start_revgate(config)
        self.assertEqual(set(proxy.ports), {"http", "alt"})
        for port in proxy.ports.values():
            status, _, _ = self.get(port, host=HELLO)
            self.assertEqual(status, 200)

    def test_several_workers(self):
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])], workers=2)
        proxy = self.start_revgate(config)
        self.assertIsNotNone(proxy.wait_for_line(r"ready: 2 worker\(s\)", 1))
        for _ in range(20):
            status, _, _ = self.get(proxy.port, host=HELLO)
            self.assertEqual(status, 200)


class StartupFailureTest(IntegrationTest):
    def run_to_exit(self, path, timeout=10):
        proc = self.track(Revgate(path, wait_ready=False))
        code = proc.wait(timeout)
        self.assertIsNotNone(code, f"revgate kept running with a bad config:\n{proc.describe()}")
        return code, proc.stderr_text()

    def test_invalid_config_exits_1_with_file_line_col(self):
        path = self.write_config(
            "listeners:\n"
            "  - name: http\n"
            "    address: 127.0.0.1:0\n"
            "admin:\n"
            "  address: 127.0.0.1:0\n"
            "services:\n"
            "  - name: hello\n"
            "    revisions:\n"
            "      - name: hello-00001\n"
            "        endpoints: [\"127.0.0.1:9\"]\n"
            "    traffic:\n"
            "      - revisionName: hello-00001\n"
            "        percent: 90\n")
        code, stderr = self.run_to_exit(path)
        self.assertEqual(code, 1, stderr)
        self.assertRegex(stderr, re.escape(path) + r":\d+:\d+: ")

    def test_missing_config_file_exits_1(self):
        code, stderr = self.run_to_exit(os.path.join(self.tmpdir, "absent.yaml"))
        self.assertEqual(code, 1, stderr)
        self.assertIn("absent.yaml", stderr)

    def test_listener_port_in_use_fails_to_start(self):
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])])
        config["listeners"] = [{"name": "http", "address": f"127.0.0.1:{busy.getsockname()[1]}"}]
        code, stderr = self.run_to_exit(self.write_config(config))
        self.assertNotEqual(code, 0, stderr)
        self.assertIn(str(busy.getsockname()[1]), stderr)


class ReloadTest(IntegrationTest):
    def config(self, percent_a, echo_a, echo_b):
        return default_config([service(
            "hello", [("hello-00001", [echo_a]), ("hello-00002", [echo_b])],
            [{"revisionName": "hello-00001", "percent": percent_a},
             {"revisionName": "hello-00002", "percent": 100 - percent_a}])])

    def test_sighup_applies_new_weights_to_the_next_request(self):
        a, b = self.start_echos("hello-00001", "hello-00002")
        proxy = self.start_revgate(self.config(100, a, b))
        conn = self.connect(proxy.port)
        self.assertEqual(conn.request(host=HELLO).header("x-revision"), "hello-00001")
        # rewrite the file, keeping the admin/listener ports (port 0 would move nothing)
        self.write_config(self.config(0, a, b))
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(r"generation 2", 5, start=mark), proxy.describe())
        time.sleep(0.3)
        fresh = self.connect(proxy.port).request(host=HELLO).header("x-revision")
        self.assertEqual(fresh, "hello-00002", "a new connection after the reload")
        # the keep-alive connection that was idle across the reload: its next request too
        seen = [conn.request(host=HELLO).header("x-revision") for _ in range(5)]
        self.assertEqual(seen, ["hello-00002"] * 5,
                         "requests on a keep-alive connection opened before the reload "
                         "(SPEC 4: new weights apply to the next request after a reload)")
        self.assertTrue(proxy.running())
        samples = proxy.metrics()
        self.assertEqual(metric_sum(samples, "revgate_config_generation"), 2)
        self.assertEqual(metric_sum(samples, "revgate_config_reloads_total", result="success"), 1)
        self.assertEqual(metric_sum(samples, "revgate_traffic_percent", revision="hello-00002"),
                         100)

    def test_sighup_with_a_bad_file_keeps_the_old_config(self):
        a, b = self.start_echos("hello-00001", "hello-00002")
        proxy = self.start_revgate(self.config(100, a, b))
        self.write_config("services: [\n  this is: not yaml\n")
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(re.escape(proxy.config_path), 5, start=mark),
                             f"the reload failure names the file:\n{proxy.describe()}")
        time.sleep(0.2)
        self.assertTrue(proxy.running(), proxy.describe())
        for _ in range(5):
            status, headers, _ = self.get(proxy.port, host=HELLO)
            self.assertEqual((status, headers.get("x-revision")), (200, "hello-00001"))
        metrics = proxy.metrics_text()
        self.assertIsNone(proxy.wait_for_line(r"generation 2", 0.1, start=mark))
        self.assertRegex(metrics, r"(?m)^revgate_config_generation(\{[^}]*\})? 1$")
        samples = parse_metrics(metrics)
        self.assertEqual(metric_sum(samples, "revgate_config_reloads_total", result="failure"), 1)
        self.assertEqual(metric_sum(samples, "revgate_config_reloads_total", result="success"), 0)


if __name__ == "__main__":
    unittest.main()


class DrainDelayTest(IntegrationTest):
    """SIGTERM with timeouts.drainDelay, as Kubernetes users configure it: readiness fails first,
    the listeners keep serving (telling every client to close) for the delay, then close; nothing
    in flight fails and every request has its access log line."""

    def test_readiness_fails_first_and_nothing_in_flight_is_lost(self):
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])],
                                timeouts={"drainDelay": "1s", "shutdownGrace": "5s"},
                                accessLog={"path": "access.log"})
        proxy = self.start_revgate(config)
        requests = 0
        idle = self.connect(proxy.port)  # idle through the drain, never used again
        self.assertEqual(idle.request(host=HELLO).status, 200)
        keep_alive = self.connect(proxy.port)  # will send a request during the delay
        self.assertEqual(keep_alive.request(host=HELLO).status, 200)
        requests += 2
        slow = InFlight(proxy.port, "/_echo/delay/2000")
        slow.start()
        requests += 1
        time.sleep(0.2)  # at the backend now

        signalled = time.monotonic()
        proxy.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            status, _, _ = proxy.admin_get("/readyz")
            if status == 503:
                break
            time.sleep(0.01)
        self.assertEqual(status, 503, "/readyz fails first")
        # ... while the listener still accepts and serves, telling each client to close.
        fresh = RawConnection(proxy.port)
        response = fresh.request(host=HELLO)
        requests += 1
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("connection"), "close")
        fresh.close()
        self.assertEqual(metric_sum(parse_metrics(proxy.metrics_text()), "revgate_draining"), 1)
        response = keep_alive.request(host=HELLO)
        requests += 1
        self.assertEqual(response.status, 200, "a keep-alive client during the delay is served")
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(keep_alive.closed_by_peer(2))
        self.assertLess(time.monotonic() - signalled, 1.0, "all of that happened within the delay")

        self.assertTrue(connection_refused(proxy.port, 3), "after the delay the listener closes")
        self.assertTrue(idle.closed_by_peer(2), "and idle keep-alive connections are closed")
        slow.join(10)
        self.assertIsNone(slow.error, f"{slow.error!r}\n{proxy.describe()}")
        self.assertEqual(slow.response.status, 200)
        self.assertEqual(proxy.wait(10), 0, proxy.describe())
        self.assertLess(time.monotonic() - signalled, 1 + 5, "within drainDelay + shutdownGrace")
        with open(os.path.join(self.tmpdir, "access.log"), encoding="utf-8") as f:
            self.assertEqual(len(f.readlines()), requests, "every request has its line")
