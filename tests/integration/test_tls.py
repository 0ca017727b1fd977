"""TLS termination on listeners (issue 3, first part): requests through a TLS listener carry
X-Forwarded-Proto https, SNI chooses the certificate, old protocols are refused, a silent
handshake is closed, and a bad certificate stops the start with a line naming the file.
Certificates are made here, at test time, with the openssl command."""

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

from harness import IntegrationTest, default_config, metric_sum, service


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory):
    """A local CA and two leaves: example.com (+ the service host) and other.test."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "365", "-subj", "/CN=Test CA",
            cwd=directory)
    for name, sans in (("example", "DNS:example.com,DNS:hello.default.example.com"),
                       ("other", "DNS:other.test")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=directory)
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={sans}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "120", "-extfile",
                f"{name}.ext", cwd=directory)


class TlsListenerTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        make_pki(self.tmpdir)
        self.a, self.b = self.start_echos("hello-00001", "hello-00002")
        config = default_config(
            [service("hello", [("hello-00001", [self.a]), ("hello-00002", [self.b])],
                     [{"revisionName": "hello-00001", "percent": 90},
                      {"revisionName": "hello-00002", "percent": 10}])],
            domainMappings=[{"domain": "*", "service": "hello"}])
        config["listeners"] = [{
            "name": "https", "address": "127.0.0.1:0",
            "tls": {"certificates": [{"certFile": "example.crt", "keyFile": "example.key"},
                                     {"certFile": "other.crt", "keyFile": "other.key"}],
                    "handshakeTimeout": "1s"}}]
        self.proxy = self.start_revgate(config)
        self.context = ssl.create_default_context(cafile=os.path.join(self.tmpdir, "ca.crt"))

    def https(self, server_name="example.com"):
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=10,
                                           context=self.context)
        # Connect to loopback but present (and verify) the name a real client would use.
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        conn.sock = self.context.wrap_socket(sock, server_hostname=server_name)
        self.addCleanup(conn.close)
        return conn

    def test_requests_arrive_with_x_forwarded_proto_https_and_split_per_request(self):
        conn = self.https()
        seen = []
        for _ in range(20):
            conn.request("GET", "/", headers={"Host": "hello.default.example.com"})
            response = conn.getresponse()
            body = response.read()
            self.assertEqual(response.status, 200)
            seen.append(response.getheader("x-revision"))
        self.assertIn(b'"x-forwarded-proto":"https"', body)
        self.assertEqual(seen.count("hello-00001"), 18, seen)
        self.assertEqual(seen.count("hello-00002"), 2, seen)

    def test_sni_chooses_the_certificate_and_no_sni_gets_the_first(self):
        def subject(*sni):
            result = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{self.proxy.port}", *sni],
                input=b"", capture_output=True, timeout=10)
            return result.stdout.decode(errors="replace")
        self.assertIn("subject=CN = other", subject("-servername", "other.test"))
        self.assertIn("subject=CN = example", subject("-servername", "example.com"))
        self.assertIn("subject=CN = example", subject("-noservername"))

    def test_curl_with_resolve_verifies_each_name_against_its_certificate(self):
        def curl(name):
            return subprocess.run(
                ["curl", "-sS", "--resolve", f"{name}:{self.proxy.port}:127.0.0.1",
                 "--cacert", os.path.join(self.tmpdir, "ca.crt"), "-o", "/dev/null",
                 "-w", "%{http_code} %{ssl_verify_result}",
                 f"https://{name}:{self.proxy.port}/"],
                capture_output=True, text=True, timeout=10)
        for name in ("example.com", "other.test"):
            result = curl(name)
            self.assertEqual(result.stdout, "200 0", f"{name}: {result.stderr}")

    def test_tls_1_1_is_refused_even_when_the_client_offers_it(self):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.proxy.port}", "-tls1_1",
             "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "example.com"],
            input=b"", capture_output=True, timeout=10)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"Cipher is (NONE)", result.stdout, "no session was established")

    def test_handshakes_are_counted_by_result_and_protocol(self):
        conn = self.https()
        conn.request("GET", "/", headers={"Host": "x"})
        conn.getresponse().read()
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.proxy.port}",
                        "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                       input=b"", capture_output=True, timeout=10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            samples = self.proxy.metrics()
            failures = metric_sum(samples, "revgate_tls_handshakes_total", listener="https",
                                  result="failure")
            if failures >= 1:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(metric_sum(samples, "revgate_tls_handshakes_total",
                                           listener="https", result="success",
                                           protocol="TLSv1.3"), 1)
        self.assertGreaterEqual(failures, 1, "the refused TLS 1.1 client")
        if shutil.which("promtool"):
            out = subprocess.run(["promtool", "check", "metrics"],
                                 input=self.proxy.metrics_text(), capture_output=True, text=True)
            remarks = [line for line in (out.stdout + out.stderr).splitlines()
                       if line and "istio_request_duration_milliseconds" not in line]
            self.assertEqual(remarks, [], out.stdout + out.stderr)

    def test_a_silent_client_is_closed_after_the_handshake_timeout(self):
        sock = socket.create_connection(("127.0.0.1", self.proxy.port))
        self.addCleanup(sock.close)
        sock.settimeout(4)
        started = time.monotonic()
        self.assertEqual(sock.recv(100), b"")
        self.assertLess(time.monotonic() - started, 3.5)


class TlsReloadTest(IntegrationTest):
    """New handshakes get new certificates after SIGHUP or a file change; open connections keep
    theirs; a bad file leaves the certificates in force."""

    def setUp(self):
        super().setUp()
        make_pki(self.tmpdir)
        self.install_files("example")
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])],
                                domainMappings=[{"domain": "*", "service": "hello"}])
        config["listeners"] = [{
            "name": "https", "address": "127.0.0.1:0",
            "tls": {"certificates": [{"certFile": "live.crt", "keyFile": "live.key"}]}}]
        self.proxy = self.start_revgate(config)

    def install_files(self, name):
        for ext in ("crt", "key"):
            with open(os.path.join(self.tmpdir, f"{name}.{ext}"), "rb") as f:
                data = f.read()
            path = os.path.join(self.tmpdir, f"live.{ext}")
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)

    def served_subject(self):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.proxy.port}", "-noservername"],
            input=b"", capture_output=True, timeout=10)
        out = result.stdout.decode(errors="replace")
        return "other" if "subject=CN = other" in out else "example" if "subject=CN = example" in out else out

    def open_connection(self):
        context = ssl.create_default_context(cafile=os.path.join(self.tmpdir, "ca.crt"))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=10,
                                           context=context)
        self.addCleanup(conn.close)
        conn.request("GET", "/", headers={"Host": "x"})
        self.assertEqual(conn.getresponse().read()[:1], b"{")
        return conn

    def test_sighup_swaps_certificates_for_new_handshakes_and_keeps_open_connections(self):
        self.assertEqual(self.served_subject(), "example")
        conn = self.open_connection()
        mark = self.proxy.line_count()
        self.install_files("other")
        self.proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(self.proxy.wait_for_line(r"listener https: certificates reloaded",
                                                      start=mark), self.proxy.stderr_text())
        self.assertEqual(self.served_subject(), "other")
        conn.request("GET", "/", headers={"Host": "x"})
        response = conn.getresponse()
        response.read()
        self.assertEqual(response.status, 200, "the open connection is untouched")

        mark = self.proxy.line_count()
        with open(os.path.join(self.tmpdir, "live.crt"), "w") as f:
            f.write("not a certificate\n")
        self.proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(
            self.proxy.wait_for_line(r"certificate reload failed.*live\.crt", start=mark),
            self.proxy.stderr_text())
        self.assertEqual(self.served_subject(), "other", "a bad file keeps what is in force")
        self.assertTrue(self.proxy.running())
        samples = self.proxy.metrics()
        self.assertEqual(metric_sum(samples, "revgate_tls_certificate_reloads_total",
                                    listener="https", result="failure"), 1)
        self.assertGreaterEqual(metric_sum(samples, "revgate_tls_certificate_reloads_total",
                                           listener="https", result="success"), 1)

    def test_changed_files_are_picked_up_without_a_signal(self):
        mark = self.proxy.line_count()
        self.install_files("other")
        self.assertIsNotNone(self.proxy.wait_for_line(r"listener https: certificates reloaded",
                                                      start=mark, timeout=10),
                             self.proxy.stderr_text())
        self.assertEqual(self.served_subject(), "other")


class HttpsRedirectTest(IntegrationTest):
    def test_a_redirect_listener_answers_301_to_the_same_host_and_target_on_https(self):
        make_pki(self.tmpdir)
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])],
                                domainMappings=[{"domain": "*", "service": "hello"}])
        config["listeners"] = [
            {"name": "http", "address": "127.0.0.1:0", "httpsRedirect": True},
            {"name": "https", "address": "127.0.0.1:0",
             "tls": {"certificates": [{"certFile": "example.crt", "keyFile": "example.key"}]}}]
        proxy = self.start_revgate(config)
        https_port = int(proxy.wait_for_line(r"https listening on [\d.]+:(\d+)").group(1))
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/a/b?c=1", headers={"Host": "WWW.Example.com:8080"})
        response = conn.getresponse()
        response.read()
        self.assertEqual(response.status, 301)
        self.assertEqual(response.getheader("location"),
                         f"https://www.example.com:{https_port}/a/b?c=1")
        self.assertEqual(echo.stats()["requests"], 1, "only the stats request reached the echo")


class TlsStartupTest(IntegrationTest):
    def test_a_key_that_does_not_match_its_certificate_stops_the_start(self):
        make_pki(self.tmpdir)
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])])
        config["listeners"] = [{
            "name": "https", "address": "127.0.0.1:0",
            "tls": {"certificates": [{"certFile": "example.crt", "keyFile": "other.key"}]}}]
        path = self.write_config(config)
        result = subprocess.run([os.environ.get("REVGATE_BIN", ""), "run", "-c", path],
                                capture_output=True, timeout=20)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(b"other.key", result.stderr)


if __name__ == "__main__":
    unittest.main()
