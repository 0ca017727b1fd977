"""`revgate traffic` (gcloud run services update-traffic) against a running revgate: every flag,
each checked with real requests counted by the echo backends' X-Revision header, and the
refusals (the server's message, exit codes)."""

import collections
import socket

from harness import LOOPBACK, IntegrationTest, default_config, service

HELLO = "hello.default.example.com"


def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TrafficCliTest(IntegrationTest):
    def setUp(self):
        super().setUp()
        names = ("hello-00001", "hello-00002", "hello-00003")
        echos = {n: self.start_echo(n) for n in names}
        svc = service("hello", [(n, [echos[n]]) for n in names], traffic=[
            {"revisionName": "hello-00001", "percent": 90},
            {"revisionName": "hello-00002", "percent": 10, "tag": "canary"},
        ])
        # A fixed admin port, so that `-c FILE` can find it.
        config = default_config([svc], admin={"address": f"{LOOPBACK}:{free_port()}"})
        self.proxy = self.start_revgate(config)
        self.admin = f"{LOOPBACK}:{self.proxy.admin_port}"

    def traffic(self, *args, code=0):
        result = self.run_cli("traffic", "hello", "--admin", self.admin, *args)
        self.assertEqual(result.returncode, code,
                         f"revgate traffic {' '.join(args)}:\n{result.stdout}{result.stderr}")
        return result

    def split(self, host=HELLO, n=100):
        counts = collections.Counter()
        conn = self.connect(self.proxy.port)
        for _ in range(n):
            response = conn.request(host=host)
            counts[response.status if response.status != 200 else response.header("x-revision")] += 1
        return dict(counts)

    def test_to_revisions_scales_the_others_as_gcloud_does(self):
        out = self.traffic("--to-revisions", "hello-00003=40").stdout
        # 60 left over 90:10 -> 54 and 6.
        self.assertEqual(self.split(), {"hello-00001": 54, "hello-00002": 6, "hello-00003": 40})
        self.assertIn("PERCENT", out)
        self.assertRegex(out, r"40%\s+hello-00003")
        self.assertRegex(out, r"0%\s+hello-00002\s+canary\s+http://canary-hello\.default\.example\.com")
        self.assertEqual(self.split(host=f"canary-{HELLO}"), {"hello-00002": 100})

    def test_to_latest_and_latest_in_to_revisions(self):
        self.traffic("--to-latest")
        self.assertEqual(self.split(), {"hello-00003": 100})
        self.traffic("--to-revisions", "hello-00001=30,LATEST=70")
        self.assertEqual(self.split(), {"hello-00001": 30, "hello-00003": 70})

    def test_to_tags(self):
        self.traffic("--to-tags", "canary=70")
        self.assertEqual(self.split(), {"hello-00001": 30, "hello-00002": 70})

    def test_tag_flags(self):
        out = self.traffic("--update-tags", "old=hello-00001").stdout
        self.assertIn("http://old-hello.default.example.com", out)
        self.assertEqual(self.split(host=f"old-{HELLO}"), {"hello-00001": 100})
        self.assertEqual(self.split(host=f"canary-{HELLO}"), {"hello-00002": 100})
        self.traffic("--remove-tags", "old")
        self.assertEqual(self.split(host=f"old-{HELLO}"), {404: 100})
        self.traffic("--set-tags", "latest=LATEST,beta=hello-00001")
        self.assertEqual(self.split(host=f"latest-{HELLO}"), {"hello-00003": 100})
        self.assertEqual(self.split(host=f"beta-{HELLO}"), {"hello-00001": 100})
        self.assertEqual(self.split(host=f"canary-{HELLO}"), {404: 100},
                         "--set-tags replaces every tag")
        self.traffic("--clear-tags")
        self.assertEqual(self.split(host=f"beta-{HELLO}"), {404: 100})
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10},
                         "tags alone leave the split as it was")

    def test_traffic_and_tags_together(self):
        self.traffic("--to-revisions", "hello-00002=100", "--remove-tags", "canary")
        self.assertEqual(self.split(), {"hello-00002": 100})
        self.assertEqual(self.split(host=f"canary-{HELLO}"), {404: 100})

    def test_the_admin_address_from_the_config_file(self):
        result = self.run_cli("traffic", "hello", "-c", self.proxy.config_path,
                              "--to-revisions", "hello-00001=50")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.split(), {"hello-00001": 50, "hello-00002": 50})

    def test_refusals(self):
        server = self.traffic("--to-revisions", "nope=50", code=1).stderr
        self.assertIn("spec.traffic", server)
        self.assertIn("'nope' is not a revision of service 'hello'", server)
        self.assertIn("[revision-exists]", server)
        self.assertIn("over 100% of traffic is specified",
                      self.traffic("--to-revisions", "hello-00001=60,hello-00003=60",
                                   code=1).stderr)
        self.assertIn("no revision tagged with [nope]",
                      self.traffic("--to-tags", "nope=10", code=1).stderr)
        self.assertIn("not found", self.run_cli("traffic", "nope", "--admin", self.admin,
                                                "--to-latest").stderr)
        # Usage: exclusive flags, nothing to do, a percent that is not a number.
        self.traffic("--to-latest", "--to-revisions", "hello-00001=5", code=2)
        self.traffic(code=2)
        self.traffic("--to-revisions", "hello-00001=ten", code=2)
        self.traffic("--set-tags", "a=hello-00001", "--clear-tags", code=2)
        unreachable = self.run_cli("traffic", "hello", "--admin", f"{LOOPBACK}:{free_port()}",
                                   "--to-latest")
        self.assertEqual(unreachable.returncode, 1)
        self.assertIn("cannot reach admin", unreachable.stderr)
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10},
                         "nothing refused was applied")
