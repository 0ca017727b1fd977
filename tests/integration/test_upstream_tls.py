"""Upstream TLS (issue 3): https:// revision endpoints are dialled with TLS, the server
certificate is verified against the revision's caFile (or the system store), SNI carries
serverName (default: the endpoint's host), mutual TLS presents the revision's client
certificate, and a failed verification is a 502 with flag UF and a log line saying why.
The backends are real TLS servers: Python's ssl (OpenSSL) behind http.server, and
`openssl s_server -www`. Certificates are made here with the openssl command."""

import http.server
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from harness import IntegrationTest, default_config, metric_sum, service

HOST = "hello.default.example.com"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "365",
            "-subj", f"/CN={name}", cwd=directory)


def make_leaf(directory, ca, name, sans, usage="serverAuth"):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=directory)
    with open(os.path.join(directory, f"{name}.ext"), "w") as f:
        if sans:
            f.write(f"subjectAltName={sans}\n")
        f.write(f"extendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "120", "-extfile", f"{name}.ext",
            cwd=directory)


class TlsBackend:
    """An HTTP/1.1 keep-alive server over TLS that answers with what it saw: the SNI, the
    client certificate's subject, the request's headers. Counts handshakes and requests."""

    def __init__(self, directory, cert, name, client_ca=None):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(directory, f"{cert}.crt"),
                                os.path.join(directory, f"{cert}.key"))
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(os.path.join(directory, f"{client_ca}.crt"))
        backend = self
        self.snis = []
        self.handshakes = 0
        self.handshake_failures = 0
        self.requests = 0

        def remember_sni(sock, server_name, _context):
            backend.snis.append(server_name)

        context.sni_callback = remember_sni

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                backend.requests += 1
                peer = self.connection.getpeercert()
                subject = dict(x[0] for x in peer["subject"]) if peer else {}
                body = json.dumps({
                    "revision": name,
                    "client_cn": subject.get("commonName"),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }).encode()
                self.send_response(200)
                self.send_header("X-Revision", name)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = self.socket.accept()
                try:
                    tls = context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    backend.handshake_failures += 1
                    sock.close()
                    raise
                backend.handshakes += 1
                return tls, address

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class StallingTlsBackend:
    """A TLS upstream that stalls: `body` answers a head and 10 body bytes of 1,000,000, then
    sends nothing more; `upload` never reads the request body."""

    def __init__(self, directory, mode):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(os.path.join(directory, "backend.crt"),
                                     os.path.join(directory, "backend.key"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.connections = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                sock, _ = self.sock.accept()
                tls = self.context.wrap_socket(sock, server_side=True)
            except OSError:
                return
            self.connections.append(tls)
            if self.mode == "upload":
                continue
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10)

    def close(self):
        self.sock.close()
        for tls in self.connections:
            tls.close()


class UpstreamTlsTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        make_ca(self.tmpdir, "ca")
        make_ca(self.tmpdir, "other-ca")
        make_leaf(self.tmpdir, "ca", "backend", "DNS:backend.test,DNS:localhost,IP:127.0.0.1")
        make_leaf(self.tmpdir, "other-ca", "impostor", "DNS:backend.test,IP:127.0.0.1")
        make_leaf(self.tmpdir, "ca", "proxy-client", None, usage="clientAuth")

    def backend(self, cert="backend", client_ca=None, name="hello-00001"):
        backend = TlsBackend(self.tmpdir, cert, name, client_ca)
        self.addCleanup(backend.close)
        return backend

    def proxy_for(self, endpoint, tls=None, **top):
        svc = service("hello", [("hello-00001", [endpoint])])
        if tls is not None:
            svc["revisions"][0]["tls"] = tls
        return self.start_revgate(default_config([svc], **top))

    def stalling_proxy(self, mode, **top):
        backend = StallingTlsBackend(self.tmpdir, mode)
        self.addCleanup(backend.close)
        svc = service("hello", [("hello-00001", [f"https://127.0.0.1:{backend.port}"])])
        svc["revisions"][0]["tls"] = {"caFile": "ca.crt"}
        return self.start_revgate(default_config([svc], **top))

    def test_a_tls_upstream_that_stalls_mid_body_is_cut_off_and_the_proxy_serves_on(self):
        # The idle deadline drops the upstream while its TLS read is pending (a use-after-free
        # once: the connection must outlive the aborted operation).
        proxy = self.stalling_proxy("body", timeouts={"idle": "1s"})
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        self.addCleanup(client.close)
        client.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        received = b""
        while True:
            piece = client.recv(65536)
            if not piece:
                break
            received += piece
        self.assertTrue(received.startswith(b"HTTP/1.1 200"), received[:80])
        self.assertTrue(received.endswith(b"x" * 10), "cut off after what arrived")
        time.sleep(0.3)
        self.assertTrue(proxy.running(), proxy.describe())
        self.assertIn(b"404", self.get_raw_status(proxy))

    def test_a_tls_upstream_that_stops_reading_an_upload_gets_a_504(self):
        proxy = self.stalling_proxy("upload", timeouts={"idle": "1s"})
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.addCleanup(client.close)
        body = b"y" * (8 * 1024 * 1024)
        client.sendall(f"POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
                       "\r\n".encode())
        try:
            client.sendall(body)
        except OSError:
            pass  # the proxy answered and closed before taking it all
        self.assertIn(b" 504 ", client.recv(4096))
        self.assertTrue(proxy.running(), proxy.describe())

    def test_shutdown_with_a_tls_upstream_request_in_flight_exits_cleanly(self):
        for workers in (1, 2):
            with self.subTest(workers=workers):
                proxy = self.stalling_proxy("body", workers=workers,
                                            timeouts={"shutdownGrace": "1s"})
                client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
                self.addCleanup(client.close)
                client.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                self.assertTrue(client.recv(200).startswith(b"HTTP/1.1 200"))
                proxy.signal(signal.SIGTERM)
                self.assertEqual(proxy.wait(10), 0, proxy.describe())

    def get_raw_status(self, proxy):
        """The status line of a request to a host no route takes (the proxy still answers)."""
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n")
            return sock.recv(200).split(b"\r\n", 1)[0]

    def test_https_endpoint_is_verified_with_ca_file_and_gets_sni_from_server_name(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}",
                               {"caFile": "ca.crt", "serverName": "backend.test"})
        status, headers, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["x-revision"], "hello-00001")
        seen = json.loads(body)
        self.assertEqual(seen["headers"]["knative-serving-revision"], "hello-00001")
        self.assertEqual(backend.snis, ["backend.test"])

    def test_sni_defaults_to_the_endpoint_host_name(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://localhost:{backend.port}", {"caFile": "ca.crt"})
        status, _, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 200, body)
        self.assertEqual(backend.snis, ["localhost"])

    def test_an_ip_endpoint_is_verified_against_the_ip_san_without_sni(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}", {"caFile": "ca.crt"})
        status, _, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 200, body)
        self.assertEqual(backend.snis, [None], "SNI cannot carry an IP address")

    def test_pooled_tls_connections_are_reused_across_requests(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}", {"caFile": "ca.crt"})
        for _ in range(5):
            status, _, _ = self.get(proxy.port, host=HOST)
            self.assertEqual(status, 200)
        self.assertEqual(backend.requests, 5)
        self.assertEqual(backend.handshakes, 1, "one TLS connection, kept in the pool")

    def test_a_certificate_from_another_ca_is_a_502_uf_with_a_log_line(self):
        backend = self.backend(cert="impostor")
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}",
                               {"caFile": "ca.crt", "serverName": "backend.test"})
        status, _, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 502, body)
        self.assertIsNotNone(proxy.wait_for_line(
            r"upstream 127\.0\.0\.1:\d+ \(revision hello-00001\): certificate verification "
            r"failed for 'backend.test': unable to get local issuer certificate", 3),
            proxy.describe())
        self.assertEqual(backend.requests, 0, "nothing was sent to an unverified peer")
        self.eventually(lambda: metric_sum(proxy.metrics(), "istio_requests_total",
                                           response_code="502", response_flags="UF"), 1,
                        "the 502 is counted with response_flags UF")

    def test_the_system_store_does_not_trust_a_private_ca(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://localhost:{backend.port}")
        status, _, _ = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 502)
        self.assertIsNotNone(proxy.wait_for_line(r"certificate verification failed", 3))

    def test_a_name_the_certificate_does_not_carry_is_a_502(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}",
                               {"caFile": "ca.crt", "serverName": "elsewhere.test"})
        status, _, _ = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 502)
        self.assertIsNotNone(proxy.wait_for_line(
            r"certificate verification failed for 'elsewhere.test': hostname mismatch", 3),
            proxy.describe())
        self.assertEqual(backend.requests, 0)

    def test_mutual_tls_presents_the_client_certificate(self):
        backend = self.backend(client_ca="ca")
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}",
                               {"caFile": "ca.crt", "certFile": "proxy-client.crt",
                                "keyFile": "proxy-client.key"})
        status, _, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["client_cn"], "proxy-client")

    def test_a_backend_that_requires_a_client_certificate_refuses_a_proxy_without_one(self):
        backend = self.backend(client_ca="ca")
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}", {"caFile": "ca.crt"})
        status, _, _ = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 502)
        self.assertEqual(backend.requests, 0)

    def test_openssl_s_server_as_the_backend(self):
        port_probe = socket.socket()
        port_probe.bind(("127.0.0.1", 0))
        port = port_probe.getsockname()[1]
        port_probe.close()
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", "backend.crt",
             "-key", "backend.key", "-www"],
            cwd=self.tmpdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (server.kill(), server.wait(), server.stdout.close()))
        for line in server.stdout:  # "ACCEPT" once it listens
            if line.strip() == b"ACCEPT":
                break
        proxy = self.proxy_for(f"https://127.0.0.1:{port}",
                               {"caFile": "ca.crt", "serverName": "backend.test"})
        status, _, body = self.get(proxy.port, host=HOST)
        self.assertEqual(status, 200, body)
        self.assertIn(b"s_server -accept", body)  # -www echoes its command line
        self.assertIn(b"TLSv1.3", body)

    def test_a_client_key_that_does_not_match_stops_the_start_naming_the_file(self):
        backend = self.backend()
        svc = service("hello", [("hello-00001", [f"https://127.0.0.1:{backend.port}"])])
        svc["revisions"][0]["tls"] = {"caFile": "ca.crt", "certFile": "proxy-client.crt",
                                      "keyFile": "backend.key"}
        proc = self.track(__import__("harness").Revgate(
            self.write_config(default_config([svc])), wait_ready=False))
        self.assertEqual(proc.wait(10), 1, proc.describe())
        self.assertIn("revision hello-00001", proc.stderr_text())
        self.assertIn("backend.key", proc.stderr_text())

    def test_a_reload_with_an_unusable_ca_file_keeps_the_running_config(self):
        backend = self.backend()
        proxy = self.proxy_for(f"https://127.0.0.1:{backend.port}", {"caFile": "ca.crt"})
        self.assertEqual(self.get(proxy.port, host=HOST)[0], 200)
        self.write_file("broken-ca.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n")
        svc = service("hello", [("hello-00001", [f"https://127.0.0.1:{backend.port}"])])
        svc["revisions"][0]["tls"] = {"caFile": "broken-ca.crt"}
        config = default_config([svc])
        config["listeners"][0]["address"] = f"127.0.0.1:{proxy.port}"
        config["admin"]["address"] = f"127.0.0.1:{proxy.admin_port}"
        self.write_config(config)
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(r"reload failed: revision hello-00001: .*"
                                                 r"broken-ca\.crt", 5, start=mark),
                             proxy.describe())
        self.assertEqual(self.get(proxy.port, host=HOST)[0], 200)
        # The file watch may have tried the new file too, before the signal: each failed
        # reload is one log line and one count.
        def counted_as_logged():
            counted = metric_sum(proxy.metrics(), "revgate_config_reloads_total",
                                 result="failure")
            return counted == len(re.findall(r"reload failed", proxy.stderr_text()))
        self.eventually(counted_as_logged, True, "revgate_config_reloads_total{result=failure}")


if __name__ == "__main__":
    unittest.main()
