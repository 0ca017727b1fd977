"""The command line (SPEC section 2): check, route, simulate, version, demo, usage errors."""

import collections
import re
import subprocess
import unittest

from harness import REVGATE_BIN, IntegrationTest, Revgate

GOOD = """\
domain: example.com
listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
services:
  - name: hello
    revisions:
      - name: hello-00001
        endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]
      - name: hello-00002
        endpoints: ["127.0.0.1:9003"]
    traffic:
      - revisionName: hello-00001
        percent: 90
      - revisionName: hello-00002
        percent: 10
        tag: canary
      - latestRevision: true
        percent: 0
        tag: latest
  - name: shop
    namespace: prod
    splitPolicy: random
    revisions:
      - name: shop-00001
        endpoints: ["127.0.0.1:9004"]
      - name: shop-00002
        endpoints: ["127.0.0.1:9005"]
    traffic:
      - revisionName: shop-00001
        percent: 50
      - revisionName: shop-00002
        percent: 50
domainMappings:
  - domain: www.example.org
    service: hello
  - domain: "*.apps.example.org"
    service: shop
    namespace: prod
"""

# line numbers matter: the errors must point at them
BAD = """\
listeners:
  - name: http
    address: 127.0.0.1:0
services:
  - name: hello
    revisions:
      - name: hello-00001
        endpoints: ["127.0.0.1:9001"]
    traffic:
      - revisionName: hello-00001
        percnt: 90
      - revisionName: missing-rev
        percent: 10
domainMappings:
  - domain: www.example.org
    service: nosuch
"""

ERROR_LINE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+) \[(?P<rule>[\w-]+)\]$")


class CheckTest(IntegrationTest):
    def test_check_good_config_lists_the_hosts(self):
        path = self.write_config(GOOD)
        out = self.run_cli("check", "-c", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        for host in ("hello.default.example.com", "canary-hello.default.example.com",
                     "latest-hello.default.example.com", "shop.prod.example.com",
                     "www.example.org", "*.apps.example.org"):
            self.assertRegex(out.stdout, rf"(?m)^{re.escape(host)}\s", f"{host} not listed")
        line = next(l for l in out.stdout.splitlines() if l.startswith("hello.default.example.com"))
        self.assertIn("hello-00001 90%", line)
        self.assertIn("hello-00002 10%", line)
        canary = next(l for l in out.stdout.splitlines() if l.startswith("canary-hello."))
        self.assertIn("hello-00002 100%", canary)

    def test_check_bad_config_reports_file_line_col(self):
        path = self.write_config(BAD)
        out = self.run_cli("check", "-c", path)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        errors = [ERROR_LINE.match(l) for l in out.stderr.splitlines()]
        errors = [m for m in errors if m]
        self.assertTrue(errors, f"no file:line:col: message [rule] lines:\n{out.stderr}")
        for m in errors:
            self.assertEqual(m.group("file"), path)
        lines = {int(m.group("line")) for m in errors}
        self.assertIn(11, lines, f"the unknown key `percnt` is on line 11:\n{out.stderr}")
        self.assertIn(12, lines, f"the missing revision is on line 12:\n{out.stderr}")
        self.assertIn(16, lines, f"the mapping to a missing service is on line 16:\n{out.stderr}")
        unknown = next(m for m in errors if int(m.group("line")) == 11)
        self.assertEqual(int(unknown.group("col")), 9)
        self.assertIn("percnt", unknown.group("msg"))

    def test_check_reports_yaml_syntax_errors_with_position(self):
        path = self.write_config("services:\n  - name: hello\n    revisions: [\n")
        out = self.run_cli("check", "-c", path)
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, rf"(?m)^{re.escape(path)}:\d+:\d+: ")

    def test_check_missing_file(self):
        out = self.run_cli("check", "-c", "/nonexistent/revgate.yaml")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("/nonexistent/revgate.yaml", out.stderr)


class UsageTest(IntegrationTest):
    def test_version(self):
        out = self.run_cli("version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout.strip(), r"^revgate \d+\.\d+\.\d+")

    def test_unknown_flag_is_a_usage_error(self):
        out = self.run_cli("--bogus")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertTrue(out.stderr.strip())

    def test_unknown_flag_of_a_command_is_a_usage_error(self):
        out = self.run_cli("check", "-c", self.write_config(GOOD), "--frobnicate")
        self.assertEqual(out.returncode, 2, out.stderr)

    def test_unknown_command_is_a_usage_error(self):
        out = self.run_cli("serve-it")
        self.assertEqual(out.returncode, 2, out.stderr)

    def test_missing_required_option_is_a_usage_error(self):
        self.assertEqual(self.run_cli("check").returncode, 2)
        self.assertEqual(self.run_cli("route", "-c", self.write_config(GOOD)).returncode, 2)

    def test_no_arguments_is_a_usage_error(self):
        out = self.run_cli()
        self.assertEqual(out.returncode, 2)
        self.assertIn("check", out.stdout + out.stderr)

    def test_help(self):
        out = self.run_cli("--help")
        self.assertEqual(out.returncode, 0)
        for verb in ("run", "check", "route", "simulate", "echo", "demo", "version"):
            self.assertIn(verb, out.stdout)


class RouteTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.path = self.write_config(GOOD)

    def route(self, *args):
        return self.run_cli("route", "-c", self.path, *args)

    def test_route_tag_host(self):
        out = self.route("--host", "canary-hello.default.example.com")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("hello-00002", out.stdout)
        self.assertNotIn("hello-00001", out.stdout)
        self.assertIn("127.0.0.1:9003", out.stdout)

    def test_route_tag_header(self):
        out = self.route("--host", "hello.default.example.com", "--header",
                         "Knative-Serving-Tag: canary")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("hello-00002", out.stdout)

    def test_route_service_host_shows_the_split(self):
        out = self.route("--host", "Hello.Default.Example.com:8080", "--path", "/x")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("hello-00001 90%", out.stdout)
        self.assertIn("hello-00002 10%", out.stdout)

    def test_route_wildcard_mapping(self):
        out = self.route("--host", "a.b.apps.example.org")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("prod/shop", out.stdout)

    def test_route_unknown_host(self):
        out = self.route("--host", "nope.example.net")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("404", out.stdout + out.stderr)
        self.assertIn("NR", out.stdout + out.stderr)


class SimulateTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        self.path = self.write_config(GOOD)

    def shares(self, *args):
        out = self.run_cli("simulate", "-c", self.path, *args)
        self.assertEqual(out.returncode, 0, out.stderr)
        picks = {}
        for line in out.stdout.splitlines():
            m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)%\s+(\d+)%$", line)
            if m:
                picks[m.group(1)] = int(m.group(2))
        self.assertTrue(picks, out.stdout)
        return picks, out.stdout

    def test_simulate_smooth_split_is_exact(self):
        picks, text = self.shares("--host", "hello.default.example.com", "-n", "10000")
        self.assertEqual(picks, {"hello-00001": 9000, "hello-00002": 1000}, text)
        self.assertIn("90.000%", text)
        self.assertIn("10.000%", text)

    def test_simulate_random_split_is_close(self):
        picks, text = self.shares("--host", "shop.prod.example.com", "-n", "10000")
        self.assertEqual(sum(picks.values()), 10000)
        self.assertTrue(4700 <= picks.get("shop-00001", 0) <= 5300, text)

    def test_simulate_tag_host(self):
        picks, text = self.shares("--host", "canary-hello.default.example.com", "-n", "1000")
        self.assertEqual(picks, {"hello-00002": 1000}, text)

    def test_simulate_tag_header(self):
        picks, text = self.shares("--host", "hello.default.example.com", "--tag", "latest",
                                  "-n", "1000")
        self.assertEqual(picks, {"hello-00002": 1000}, text)


class DemoTest(IntegrationTest):
    def test_demo_serves_a_90_10_split(self):
        demo = self.track(Revgate("", argv=[REVGATE_BIN, "demo", "--port", "0",
                                            "--admin-port", "0"], wait_ready=False))
        demo.wait_ready()
        conn = self.http_connection(demo.port)
        counts = collections.Counter()
        for _ in range(100):
            conn.request("GET", "/", headers={"Host": f"127.0.0.1:{demo.port}"})
            resp = conn.getresponse()
            resp.read()
            counts[resp.getheader("X-Revision")] += 1
        self.assertEqual(dict(counts), {"hello-00001": 90, "hello-00002": 10})
        # the listener speaks HTTP/2 with prior knowledge too (the line the demo suggests)
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
                              "%{http_version}", f"http://127.0.0.1:{demo.port}/"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.stdout, "2", out)


if __name__ == "__main__":
    unittest.main()
