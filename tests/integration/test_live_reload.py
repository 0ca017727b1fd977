"""Changing the config while traffic flows loses nothing: 36 reloads through all three triggers
(rename, SIGHUP, POST /reload) under keep-alive load with every response checked against the
config in force, a ConfigMap volume's ..data swap, editors' ways of saving, listeners added,
removed and renamed under load, pooled connections to removed endpoints, restart-only settings,
the access log switching files, and a control thread blocked in a reload that does not hold up
a single proxied request."""

import collections
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from harness import (LOOPBACK, IntegrationTest, RawConnection, Revgate, default_config,
                     metric_sum, to_yaml)

HELLO = "hello.default.example.com"
CANARY = f"canary-{HELLO}"
GENERATION = re.compile(r"config generation (\d+) in force")


def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class LiveReloadBase(IntegrationTest):
    def post_reload(self, proxy, timeout=15):
        request = urllib.request.Request(f"http://{LOOPBACK}:{proxy.admin_port}/reload",
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def generation(self, proxy):
        return int(metric_sum(proxy.metrics(), "revgate_config_generation"))

    def wait_generation(self, proxy, at_least, start=0, timeout=10):
        """Waits for the log line of generation >= at_least; returns that generation."""
        deadline = time.monotonic() + timeout
        index = start
        while time.monotonic() < deadline:
            m = proxy.wait_for_line(GENERATION.pattern, max(0.05, deadline - time.monotonic()),
                                    start=index)
            if not m:
                break
            index = self._index_of(proxy, m.group(0), index) + 1
            if int(m.group(1)) >= at_least:
                return int(m.group(1))
        self.fail(f"no config generation >= {at_least} in force:\n{proxy.describe()}")

    @staticmethod
    def _index_of(proxy, text, start):
        lines = proxy.stderr_text().splitlines()
        for i in range(start, len(lines)):
            if text in lines[i]:
                return i
        return len(lines)

    def write_atomically(self, path, text):
        tmp = path + ".tmp-edit"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, path)

    def split(self, port, n=100, host=HELLO):
        counts = collections.Counter()
        with RawConnection(port) as conn:
            for _ in range(n):
                response = conn.request(host=host)
                counts[response.header("x-revision") if response.status == 200
                       else response.status] += 1
        return dict(counts)


# ------------------------------------------------------------------------------ the load test

REVISIONS = ("hello-00001", "hello-00002", "hello-00003", "hello-00004")


class Client(threading.Thread):
    """Back-to-back requests on one keep-alive connection; every one recorded."""

    def __init__(self, port, index, stop):
        super().__init__(daemon=True)
        self.port, self.index, self.stop = port, index, stop
        self.records = []  # (sent, done, kind, revision)
        self.failures = []

    def run(self):
        conn = RawConnection(self.port, timeout=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            kind = "tag" if n % 5 == 0 else "post" if n % 7 == 0 else "get"
            sent = time.monotonic()
            try:
                if kind == "post":
                    body = b"x" * (100 + n % 50)
                    response = conn.request("POST", "/upload", host=HELLO, body=body)
                    if response.status == 200 and response.json()["body_bytes"] != len(body):
                        self.failures.append(f"POST body lost: {response.body[:200]!r}")
                else:
                    response = conn.request(host=CANARY if kind == "tag" else HELLO)
            except Exception as e:  # any reset, close or timeout is a lost request
                self.failures.append(f"{kind} request sent at {sent:.3f}: {e!r}")
                conn.close()
                conn = RawConnection(self.port, timeout=10)
                continue
            done = time.monotonic()
            if response.status != 200:
                self.failures.append(f"{kind} at {sent:.3f}: status {response.status} "
                                     f"{response.body[:200]!r}")
                continue
            self.records.append((sent, done, kind, response.header("x-revision")))
        conn.close()


class LoadTest(LiveReloadBase):
    def configs(self, echos, count):
        """`count` valid configs, each changing weights, revisions, endpoints and tags."""
        rng = random.Random(20261207)
        out = []
        for i in range(count):
            present = ["hello-00001"] + [r for r in REVISIONS[1:] if rng.random() < 0.6]
            weights = [rng.randint(0, 10) for _ in present]
            if sum(weights) == 0:
                weights[0] = 1
            percents = [w * 100 // sum(weights) for w in weights]
            percents[0] += 100 - sum(percents)
            canary = rng.choice(present)
            beta = rng.choice(present) if rng.random() < 0.5 else None
            revisions = []
            for r in present:
                endpoints = [echos[r][0]]
                if r == "hello-00002" and rng.random() < 0.5:
                    endpoints.append(echos[r][1])  # an endpoint that comes and goes
                revisions.append({"name": r, "endpoints": [e.address for e in endpoints]})
            traffic = []
            for r, p in zip(present, percents):
                traffic.append({"revisionName": r, "percent": p})
            traffic.append({"revisionName": canary, "percent": 0, "tag": "canary"})
            if beta:
                traffic.append({"revisionName": beta, "percent": 0, "tag": "beta"})
            config = default_config([{"name": "hello", "revisions": revisions,
                                       "traffic": traffic}])
            allowed = {r for r, p in zip(present, percents) if p > 0}
            out.append((to_yaml(config), allowed, canary, dict(zip(present, percents))))
        return out

    def test_36_reloads_under_load_lose_nothing(self):
        echos = {r: [self.start_echo(r), self.start_echo(r)] for r in REVISIONS}
        configs = self.configs(echos, 37)
        proxy = self.start_revgate(configs[0][0])
        path = proxy.config_path
        stop = threading.Event()
        clients = [Client(proxy.port, i, stop) for i in range(4)]
        for c in clients:
            c.start()
        # in_force[k] = (config index, earliest it may have applied, confirmed at)
        in_force = [(0, 0.0, 0.0)]
        generation = 1
        invalid_at = 18
        for step in range(1, 37):
            time.sleep(0.25)  # let traffic flow on the config in force
            trigger = ("rename", "sighup", "post")[step % 3]
            invalid = step == invalid_at
            index = min(step, 36)
            text = "services: [{name: hello, traffic: [{percent: 120}]}]\n" if invalid \
                else configs[index][0]
            mark = proxy.line_count()
            triggered = time.monotonic()
            if trigger == "rename":
                self.write_atomically(path, text)
            else:
                self.write_atomically(path, text)
                if trigger == "sighup":
                    proxy.signal(signal.SIGHUP)
            if invalid:
                if trigger == "post":
                    status, body = self.post_reload(proxy)
                    self.assertEqual(status, 422, body)
                else:
                    self.assertIsNotNone(proxy.wait_for_line(r"reload failed", 10, start=mark),
                                         proxy.describe())
                continue
            if trigger == "post":
                status, body = self.post_reload(proxy)
                self.assertEqual(status, 200, body)
                generation = max(generation + 1, body["generation"])
            else:
                generation = self.wait_generation(proxy, generation + 1, start=mark)
            in_force.append((index, triggered, time.monotonic()))
            self.assertEqual(self.proxy_ready(proxy), 200)
        time.sleep(0.25)
        stop.set()
        for c in clients:
            c.join(15)

        failures = [f for c in clients for f in c.failures]
        self.assertEqual(failures, [], "every request must succeed across every reload")
        records = [r for c in clients for r in c.records]
        self.assertGreater(len(records), 500, "the load must be real")
        for k in range(1, len(in_force)):
            _, _, confirmed_before = in_force[k - 1]
            _, triggered, _ = in_force[k]
            sent = [r for r in records if confirmed_before <= r[0] < triggered]
            self.assertTrue(sent, f"no request between reloads {k - 1} and {k}")
        # Config k may have served a request sent at t and answered at e when it may have been
        # in force at some moment of [t, e]: from its trigger to the confirmation of the next.
        checked = 0
        for sent, done, kind, revision in records:
            possible = []
            for k, (index, triggered, _) in enumerate(in_force):
                next_confirmed = in_force[k + 1][2] if k + 1 < len(in_force) else float("inf")
                if triggered <= done and next_confirmed >= sent:
                    possible.append(index)
            allowed = set()
            for index in possible:
                _, revisions, canary, _ = configs[index]
                allowed |= {canary} if kind == "tag" else revisions
            self.assertIn(revision, allowed,
                          f"a {kind} request sent at {sent:.3f} was answered by {revision}; the "
                          f"configs that may have been in force ({possible}) allow {allowed}")
            checked += 1
        self.assertEqual(checked, len(records))
        metrics = proxy.metrics()
        # The invalid file was renamed in (its watch is the trigger): one failed reload.
        self.assertEqual(metric_sum(metrics, "revgate_config_reloads_total", result="failure"),
                         1, proxy.stderr_text()[-3000:])
        # The split after the last reload is exactly the last config's (smooth, one worker;
        # a reload of the same file restarts the schedule at its first pick).
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        expected = {r: 2 * p for r, p in configs[36][3].items() if p > 0}
        self.assertEqual(self.split(proxy.port, 200), expected)

    def proxy_ready(self, proxy):
        status, _, _ = proxy.admin_get("/readyz")
        return status


# ---------------------------------------------------------------- file replacement patterns

def write_in_place(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def one_service(echos, percents, tag=None):
    traffic = [{"revisionName": name, "percent": p} for name, p in percents.items()]
    if tag:
        traffic.append({"revisionName": tag, "percent": 0, "tag": "canary"})
    return default_config([{"name": "hello",
                            "revisions": [{"name": e.revision, "endpoints": [e.address]}
                                          for e in echos],
                            "traffic": traffic}])


class FileChangeTest(LiveReloadBase):
    def setUp(self):
        super().setUp()
        self.echos = [self.start_echo("hello-00001"), self.start_echo("hello-00002")]

    def config_text(self, first, second):
        return to_yaml(one_service(self.echos, {"hello-00001": first, "hello-00002": second}))

    def test_a_configmap_data_swap_reloads(self):
        volume = os.path.join(self.tmpdir, "volume")
        os.mkdir(volume)

        def publish(stamp, text):
            os.mkdir(os.path.join(volume, stamp))
            with open(os.path.join(volume, stamp, "revgate.yaml"), "w", encoding="utf-8") as f:
                f.write(text)
            tmp = os.path.join(volume, "..data_tmp")
            os.symlink(stamp, tmp)
            os.rename(tmp, os.path.join(volume, "..data"))

        publish("..2026_12_07_01", self.config_text(100, 0))
        config = os.path.join(volume, "revgate.yaml")
        os.symlink("..data/revgate.yaml", config)
        proxy = self.track(Revgate(config))
        self.assertEqual(self.split(proxy.port), {"hello-00001": 100})
        mark = proxy.line_count()
        publish("..2026_12_07_02", self.config_text(30, 70))
        subprocess.run(["rm", "-rf", os.path.join(volume, "..2026_12_07_01")], check=True)
        self.assertEqual(self.wait_generation(proxy, 2, start=mark), 2)
        self.assertEqual(self.split(proxy.port), {"hello-00001": 30, "hello-00002": 70})
        mark = proxy.line_count()
        publish("..2026_12_07_03", self.config_text(30, 70))  # the same content again
        self.assertEqual(self.wait_generation(proxy, 3, start=mark), 3,
                         "an unchanged config still counts as a reload")
        samples = proxy.metrics()
        self.assertEqual(metric_sum(samples, "revgate_config_reloads_total", result="success"), 2)

    def test_each_editor_save_is_one_reload(self):
        proxy = self.start_revgate(self.config_text(100, 0))
        path = proxy.config_path
        edits = [
            ("rename over", lambda text: self.write_atomically(path, text)),
            ("backup then write", lambda text: (os.rename(path, path + "~"),
                                                write_in_place(path, text),
                                                os.remove(path + "~"))),
            ("in place", lambda text: write_in_place(path, text)),
        ]
        generation = 1
        for i, (how, edit) in enumerate(edits):
            mark = proxy.line_count()
            edit(self.config_text(90 - 10 * i, 10 + 10 * i))
            generation = self.wait_generation(proxy, generation + 1, start=mark)
            time.sleep(0.4)  # longer than the watch's settle time: nothing more may follow
            self.assertEqual(self.generation(proxy), generation, f"{how}: reloaded more than once")
            self.assertEqual(self.split(proxy.port),
                             {"hello-00001": 90 - 10 * i, "hello-00002": 10 + 10 * i}, how)
        mark = proxy.line_count()
        self.write_atomically(path, "services: [\n")
        self.assertIsNotNone(proxy.wait_for_line(r"reload failed \(file change\)", 5, start=mark),
                             proxy.describe())
        status, _, _ = proxy.admin_get("/readyz")
        self.assertEqual(status, 200, "an invalid file does not make the proxy unready")
        self.assertEqual(self.split(proxy.port), {"hello-00001": 70, "hello-00002": 30})
        mark = proxy.line_count()
        self.write_atomically(path, self.config_text(50, 50))
        self.wait_generation(proxy, generation + 1, start=mark)
        self.assertEqual(self.split(proxy.port), {"hello-00001": 50, "hello-00002": 50})


# --------------------------------------------------------------------------------- listeners

class ListenerTest(LiveReloadBase):
    def setUp(self):
        super().setUp()
        self.echo = self.start_echo("hello-00001")

    def config(self, listeners):
        config = one_service([self.echo], {"hello-00001": 100})
        config["listeners"] = listeners
        return config

    def keep_busy(self, port, stop):
        """A client on one keep-alive connection, until `stop`; returns (thread, results)."""
        results = {"ok": 0, "errors": []}

        def run():
            with RawConnection(port) as conn:
                while not stop.is_set():
                    try:
                        response = conn.request(host=HELLO)
                        if response.status == 200:
                            results["ok"] += 1
                        else:
                            results["errors"].append(response.status)
                    except Exception as e:
                        results["errors"].append(repr(e))
                        return
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, results

    def test_listeners_added_removed_and_refused_under_load(self):
        first, second = free_port(), free_port()
        proxy = self.start_revgate(self.config([{"name": "http",
                                                  "address": f"{LOOPBACK}:{first}"}]))
        stop = threading.Event()
        busy, results = self.keep_busy(first, stop)
        both = [{"name": "http", "address": f"{LOOPBACK}:{first}"},
                {"name": "web", "address": f"{LOOPBACK}:{second}"}]
        self.write_config(self.config(both))
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(second, 10), {"hello-00001": 10})
        # The first listener goes; the connection busy on it does not.
        self.write_config(self.config(both[1:]))
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, first), timeout=2)
        before = results["ok"]
        deadline = time.monotonic() + 5
        while results["ok"] < before + 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(results["ok"], before + 50,
                                "the open connection of a removed listener is still served")
        # A port that is taken fails the whole reload and changes nothing.
        taken = socket.socket()
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        self.write_config(self.config(both[1:] + [{"name": "extra",
                                                   "address": f"{LOOPBACK}:{port}"}]))
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 422, body)
        self.assertIn(f"listener extra: cannot listen on {LOOPBACK}:{port}", body["errors"][0])
        self.assertEqual(self.split(second, 10), {"hello-00001": 10})
        stop.set()
        busy.join(10)
        self.assertEqual(results["errors"], [])

    def test_a_renamed_listener_keeps_its_socket(self):
        port = free_port()
        proxy = self.start_revgate(self.config([{"name": "web",
                                                  "address": f"{LOOPBACK}:{port}"}]))
        opened = RawConnection(port)
        self.addCleanup(opened.close)
        self.assertEqual(opened.request(host=HELLO).status, 200)
        refused = []
        stop = threading.Event()

        def connect_all_the_time():
            while not stop.is_set():
                try:
                    socket.create_connection((LOOPBACK, port), timeout=2).close()
                except OSError as e:
                    refused.append(repr(e))
        thread = threading.Thread(target=connect_all_the_time, daemon=True)
        thread.start()
        self.write_config(self.config([{"name": "www", "address": f"{LOOPBACK}:{port}"}]))
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        time.sleep(0.2)
        stop.set()
        thread.join(5)
        self.assertEqual(refused, [], "the socket was never closed")
        self.assertEqual(opened.request(host=HELLO).status, 200)
        names = {l.get("listener") for n, l, v in proxy.metrics()
                 if n == "revgate_downstream_connections_accepted_total"}
        self.assertIn("www", names)

    def test_a_port_0_listener_given_its_port_keeps_its_socket_and_refusals_reset_nothing(self):
        proxy = self.start_revgate(self.config([{"name": "http", "address": f"{LOOPBACK}:0"}]))
        port = proxy.port
        failures, served = [], [0]
        stop = threading.Event()

        def new_connection_each_request():
            while not stop.is_set():
                try:
                    with RawConnection(port, timeout=5) as conn:
                        if conn.request(host=HELLO).status == 200:
                            served[0] += 1
                except OSError as e:
                    failures.append(repr(e))
        thread = threading.Thread(target=new_connection_each_request, daemon=True)
        thread.start()
        named = self.config([{"name": "http", "address": f"{LOOPBACK}:{port}"}])
        # A reload refused after its listeners were planned (an upstream CA file that does not
        # load): what it bound for the listener must not have taken connections and reset them.
        self.write_file("broken-ca.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n")
        refused = json.loads(json.dumps(named))
        refused["services"][0]["revisions"][0]["endpoints"] = [
            "https://" + self.echo.address]
        refused["services"][0]["revisions"][0]["tls"] = {"caFile": "broken-ca.crt"}
        mark = proxy.line_count()
        for i in range(20):
            self.write_config(refused if i % 2 else named)
            status, body = self.post_reload(proxy)
            self.assertEqual(status, 422 if i % 2 else 200, body)
        time.sleep(0.2)
        stop.set()
        thread.join(10)
        self.assertEqual(failures, [], "every connection was accepted and served")
        self.assertGreater(served[0], 20)
        self.assertIsNone(proxy.wait_for_line(r"listener http .* removed", 0, start=mark),
                          proxy.describe())

    def test_a_listener_of_a_reload_still_in_progress_takes_no_connection(self):
        proxy = self.start_revgate(self.config([{"name": "http", "address": f"{LOOPBACK}:0"}]))
        extra = free_port()
        fifo = os.path.join(self.tmpdir, "ca.crt")
        os.mkfifo(fifo)
        config = self.config([{"name": "http", "address": f"{LOOPBACK}:{proxy.port}"},
                              {"name": "extra", "address": f"{LOOPBACK}:{extra}"}])
        config["services"][0]["revisions"][0]["endpoints"] = ["https://" + self.echo.address]
        config["services"][0]["revisions"][0]["tls"] = {"caFile": "ca.crt"}
        self.write_config(config)
        answer = {}
        reload = threading.Thread(target=lambda: answer.update(r=self.post_reload(proxy, 30)),
                                  daemon=True)
        reload.start()
        # The config's validation opens the CA file and closes it; then, after the listeners are
        # bound, OpenSSL opens it and waits for its content: that second reader is the one
        # that stays.
        deadline = time.monotonic() + 10
        writer = None
        while writer is None and time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.02)
                continue
            time.sleep(0.2)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if any(events & select.POLLERR for _, events in poller.poll(0)):
                os.close(fd)  # that reader went away
            else:
                writer = fd
        self.assertIsNotNone(writer, "the reload never waited in the read of the CA file")
        try:
            with self.assertRaises(ConnectionRefusedError,
                                   msg="a connection taken now would be reset if the reload fails"):
                socket.create_connection((LOOPBACK, extra), timeout=2).close()
        finally:
            os.write(writer, b"-----BEGIN CERTIFICATE-----\nnot base64\n")
            os.close(writer)
        reload.join(30)
        self.assertEqual(answer["r"][0], 422, answer)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, extra), timeout=2).close()
        self.assertEqual(self.split(proxy.port, 5), {"hello-00001": 5})
        proxy.kill()  # a watch-triggered reload may be waiting on the FIFO again


# --------------------------------------------------------------- endpoints and other settings

class EndpointTest(LiveReloadBase):
    def test_pooled_connections_to_a_removed_endpoint_close(self):
        closed = []

        def serve(backend, sock, index):
            while True:
                head = backend.read_head(sock)
                if not head:
                    closed.append(time.monotonic())
                    return
                if b"/slow" in head:
                    time.sleep(1.0)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Revision: fake\r\n\r\nok")
        fake = self.start_fake_backend(serve)
        echo = self.start_echo("hello-00002")

        def config(revision, address):
            return default_config([{"name": "hello", "revisions": [
                {"name": revision, "endpoints": [address]}]}])
        proxy = self.start_revgate(config("hello-00001", fake.address))
        self.assertEqual(self.split(proxy.port, 3), {"fake": 3})
        in_flight = {}

        def slow():
            with RawConnection(proxy.port) as conn:
                in_flight["response"] = conn.request(target="/slow", host=HELLO)
        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 5
        while fake.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the slow request took a second connection
        self.write_config(config("hello-00002", echo.address))
        removed_at = time.monotonic()
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(proxy.port, 3), {"hello-00002": 3})
        thread.join(10)
        self.assertEqual(in_flight["response"].status, 200, "the request in flight finished")
        deadline = time.monotonic() + 3
        while len(closed) < fake.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(closed), fake.connections,
                         "every connection to the removed endpoint was closed")
        self.assertLess(closed[0] - removed_at, 2.0)


class RestartSettingsTest(LiveReloadBase):
    def test_workers_and_admin_need_a_restart_the_rest_applies(self):
        echos = [self.start_echo("hello-00001"), self.start_echo("hello-00002")]
        proxy = self.start_revgate(one_service(echos, {"hello-00001": 100, "hello-00002": 0}))
        config = one_service(echos, {"hello-00001": 20, "hello-00002": 80})
        config["workers"] = 2
        config["admin"] = {"address": f"{LOOPBACK}:{free_port()}"}
        self.write_config(config)
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        warnings = " ".join(body["warnings"])
        self.assertIn("workers: 1 -> 2 needs a restart", warnings)
        self.assertIn("admin.address", warnings)
        self.assertIsNotNone(proxy.wait_for_line(r"warning: .*workers: 1 -> 2", 2))
        self.assertEqual(self.split(proxy.port), {"hello-00001": 20, "hello-00002": 80})
        status, _, _ = proxy.admin_get("/healthz")
        self.assertEqual(status, 200, "the admin listener stays where it was")

    def test_the_access_log_switches_files_without_losing_a_line(self):
        echo = self.start_echo("hello-00001")
        config = one_service([echo], {"hello-00001": 100})
        config["accessLog"] = {"path": "first.log"}
        proxy = self.start_revgate(config)
        self.split(proxy.port, 7)
        first = os.path.join(self.tmpdir, "first.log")

        def first_lines():
            with open(first, encoding="utf-8") as f:
                return len(f.readlines())
        # A request is logged as it ends, a moment after its client read the response (and the
        # writer flushes in the background): all 7 are in before the reload, or the last would
        # rightly go to the file in force when it ended.
        self.eventually(first_lines, 7, "the first 7 requests logged before the reload")
        config["accessLog"] = {"path": "second.log", "format": "json"}
        self.write_config(config)
        status, body = self.post_reload(proxy)
        self.assertEqual(status, 200, body)
        self.split(proxy.port, 5)
        proxy.signal(signal.SIGTERM)
        self.assertEqual(proxy.wait(10), 0, proxy.describe())
        with open(os.path.join(self.tmpdir, "first.log"), encoding="utf-8") as f:
            self.assertEqual(len(f.readlines()), 7)
        with open(os.path.join(self.tmpdir, "second.log"), encoding="utf-8") as f:
            lines = f.readlines()
        self.assertEqual(len(lines), 5)
        self.assertEqual(json.loads(lines[0])["revision"], "hello-00001")


# ------------------------------------------------------------ the control thread never blocks

class ControlThreadTest(LiveReloadBase):
    def test_a_reload_blocked_in_its_read_does_not_hold_up_requests(self):
        echo = self.start_echo("hello-00001")
        text = to_yaml(one_service([echo], {"hello-00001": 100}))
        fifo = os.path.join(self.tmpdir, "revgate.yaml")
        os.mkfifo(fifo)
        stop_feeding = threading.Event()
        fed = []

        def feed():
            # Whoever opens the FIFO to read (the start, then reloads) gets one config each.
            while not stop_feeding.is_set():
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # no reader yet
                    time.sleep(0.01)
                    continue
                os.set_blocking(fd, True)
                try:
                    os.write(fd, text.encode())
                except BrokenPipeError:  # the reader went away (the test is over): try again
                    continue
                finally:
                    os.close(fd)
                fed.append(time.monotonic())
                if len(fed) == 1:
                    stop_feeding.set()  # only the start: reloads now block in their read
                # One config per reader: let this one see the end of the file and close,
                # so that the next open is the next reader's.
                time.sleep(0.3)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        proxy = self.track(Revgate(fifo))
        feeder.join(5)
        answer = {}

        def reload():
            answer["reply"] = self.post_reload(proxy, timeout=30)
        reloading = threading.Thread(target=reload, daemon=True)
        reloading.start()
        # The control thread is now stuck reading a FIFO nobody writes: proxied requests go on.
        deadline = time.monotonic() + 1
        with RawConnection(proxy.port, timeout=5) as conn:
            served = 0
            while time.monotonic() < deadline:
                self.assertEqual(conn.request(host=HELLO).status, 200)
                served += 1
        self.assertTrue(reloading.is_alive(), "the reload really was blocked meanwhile")
        self.assertGreater(served, 50)
        stop_feeding.clear()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        reloading.join(15)
        stop_feeding.set()
        self.assertEqual(answer["reply"][0], 200, answer)
        proxy.kill()  # a watch-triggered reload may be waiting on the FIFO again

    def test_a_list_of_10000_services_in_progress_does_not_delay_requests(self):
        echo = self.start_echo("hello-00001")
        services = [{"name": "hello", "revisions": [{"name": "hello-00001",
                                                     "endpoints": [echo.address]}]}]
        for i in range(10000):
            services.append({"name": f"svc-{i}", "revisions": [
                {"name": f"svc-{i}-00001", "endpoints": ["127.0.0.1:9"]}]})
        proxy = self.start_revgate(default_config(services))
        url = (f"http://{LOOPBACK}:{proxy.admin_port}"
               "/apis/serving.knative.dev/v1/namespaces/-/services")
        started = time.monotonic()
        subprocess.run(["curl", "-sS", "-o", "/dev/null", url], check=True, timeout=30)
        one_list = time.monotonic() - started
        lists = subprocess.Popen(["sh", "-c", f"while :; do curl -s -o /dev/null '{url}'; done"],
                                 stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (lists.kill(), lists.wait()))
        slowest = 0
        with RawConnection(proxy.port) as conn:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                sent = time.monotonic()
                self.assertEqual(conn.request(host=HELLO).status, 200)
                slowest = max(slowest, time.monotonic() - sent)
        if one_list < 0.05:
            self.skipTest(f"one list took {one_list * 1000:.0f} ms: too fast to tell a stall")
        # A relative bound in one run: a request that had to wait for a list would take at
        # least as long as one.
        self.assertLess(slowest, one_list / 2,
                        f"slowest request {slowest * 1000:.1f} ms, one list {one_list * 1000:.0f} ms")
