"""The admin API (GET /config, Knative Serving resources under /apis) on the real admin
listener, a SIGHUP reload seen through it, and the CLI over it (`revgate services list`,
`services describe`, `revisions list`)."""

import json
import re
import signal
import time
import urllib.error
import urllib.request

from harness import LOOPBACK, IntegrationTest, dead_port

try:  # not in the stdlib: the YAML output is compared structurally only when it is installed
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

SERVING = "/apis/serving.knative.dev/v1"
DOMAINS = "/apis/serving.knative.dev/v1beta1"

# Endpoints need not answer: the API reports the config, it does not proxy.
CONFIG = """\
workers: 1
listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: {admin}
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
        endpoints: ["[::1]:9005"]
domainMappings:
  - domain: www.example.org
    service: hello
  - domain: "*.apps.example.org"
    service: shop
    namespace: prod
"""

# The same, one revision later: hello-00003 takes the canary's 10%.
RELOADED = CONFIG.replace("""      - name: hello-00002
        endpoints: ["127.0.0.1:9003"]
""", """      - name: hello-00002
        endpoints: ["127.0.0.1:9003"]
      - name: hello-00003
        endpoints: ["127.0.0.1:9006"]
""").replace("""      - revisionName: hello-00002
        percent: 10
        tag: canary""", """      - revisionName: hello-00003
        percent: 10
        tag: canary""")

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class AdminApiBase(IntegrationTest):
    def start(self, text=CONFIG):
        self.proxy = self.start_revgate(text.format(admin=f"{LOOPBACK}:0"))
        self.admin = f"{LOOPBACK}:{self.proxy.admin_port}"
        return self.proxy

    def request(self, path, method="GET"):
        """(status, content type, parsed JSON body) through urllib."""
        req = urllib.request.Request(f"http://{self.admin}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers.get("Content-Type"), json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            ctype = e.headers.get("Content-Type")
            return e.code, ctype, (json.loads(body) if "json" in (ctype or "") else body)

    def api(self, path):
        status, ctype, body = self.request(path)
        self.assertEqual(status, 200, f"GET {path}: {status} {body}")
        self.assertEqual(ctype, "application/json")
        return body

    def cli(self, *args):
        return self.run_cli(*args)


class ResourcesTest(AdminApiBase):
    def setUp(self):
        super().setUp()
        self.start()

    def test_service_list_and_service_match_the_config(self):
        listed = self.api(f"{SERVING}/namespaces/default/services")
        self.assertEqual(listed["apiVersion"], "serving.knative.dev/v1")
        self.assertEqual(listed["kind"], "ServiceList")
        self.assertEqual([s["metadata"]["name"] for s in listed["items"]], ["hello"])
        svc = self.api(f"{SERVING}/namespaces/default/services/hello")
        self.assertEqual(svc, listed["items"][0])
        self.assertEqual(svc["kind"], "Service")
        self.assertEqual(svc["metadata"]["namespace"], "default")
        self.assertEqual(svc["metadata"]["generation"], 1)
        self.assertEqual(svc["spec"]["traffic"], [
            {"revisionName": "hello-00001", "latestRevision": False, "percent": 90},
            {"tag": "canary", "revisionName": "hello-00002", "latestRevision": False,
             "percent": 10},
            {"tag": "latest", "latestRevision": True, "percent": 0},
        ])
        status = svc["status"]
        self.assertEqual(status["observedGeneration"], 1)
        self.assertEqual(status["url"], "http://hello.default.example.com")
        self.assertEqual(status["address"]["url"], "http://hello.default.example.com")
        self.assertEqual(status["latestCreatedRevisionName"], "hello-00002")
        self.assertEqual(status["latestReadyRevisionName"], "hello-00002")
        self.assertEqual(status["traffic"], [
            {"revisionName": "hello-00001", "latestRevision": False, "percent": 90},
            {"tag": "canary", "revisionName": "hello-00002", "latestRevision": False,
             "percent": 10, "url": "http://canary-hello.default.example.com"},
            {"tag": "latest", "revisionName": "hello-00002", "latestRevision": True,
             "percent": 0, "url": "http://latest-hello.default.example.com"},
        ])
        conditions = {c["type"]: c for c in status["conditions"]}
        self.assertEqual(sorted(conditions), ["ConfigurationsReady", "Ready", "RoutesReady"])
        for c in conditions.values():
            self.assertEqual(c["status"], "True")
            self.assertRegex(c["lastTransitionTime"], RFC3339)

    def test_every_namespace(self):
        for path in (f"{SERVING}/namespaces/-/services", f"{SERVING}/services"):
            listed = self.api(path)
            self.assertEqual([(s["metadata"]["namespace"], s["metadata"]["name"])
                              for s in listed["items"]],
                             [("default", "hello"), ("prod", "shop")], path)
        shop = self.api(f"{SERVING}/namespaces/prod/services/shop")
        # omitted traffic is Knative's default: all to the latest revision
        self.assertEqual(shop["spec"]["traffic"], [{"latestRevision": True, "percent": 100}])
        self.assertEqual(shop["status"]["traffic"],
                         [{"revisionName": "shop-00002", "latestRevision": True, "percent": 100}])
        self.assertEqual(shop["metadata"]["annotations"]["revgate.dev/splitPolicy"], "random")
        self.assertEqual(self.api(f"{SERVING}/namespaces/nowhere/services")["items"], [])

    def test_revisions(self):
        revs = self.api(f"{SERVING}/namespaces/-/revisions")
        self.assertEqual(revs["kind"], "RevisionList")
        self.assertEqual([r["metadata"]["name"] for r in revs["items"]],
                         ["hello-00001", "hello-00002", "shop-00001", "shop-00002"])
        rev = self.api(f"{SERVING}/namespaces/default/revisions/hello-00001")
        labels = rev["metadata"]["labels"]
        self.assertEqual(labels["serving.knative.dev/service"], "hello")
        self.assertEqual(labels["serving.knative.dev/configuration"], "hello")
        self.assertEqual(labels["serving.knative.dev/configurationGeneration"], "1")
        self.assertEqual(rev["metadata"]["annotations"]["revgate.dev/endpoints"],
                         "127.0.0.1:9001,127.0.0.1:9002")
        self.assertEqual(
            {c["type"]: c["status"] for c in rev["status"]["conditions"]}["Ready"], "True")
        v6 = self.api(f"{SERVING}/namespaces/prod/revisions/shop-00002")
        self.assertEqual(v6["metadata"]["annotations"]["revgate.dev/endpoints"], "[::1]:9005")
        selected = self.api(f"{SERVING}/revisions?labelSelector=serving.knative.dev%2Fservice%3Dshop")
        self.assertEqual([r["metadata"]["name"] for r in selected["items"]],
                         ["shop-00001", "shop-00002"])

    def test_routes_and_configurations(self):
        route = self.api(f"{SERVING}/namespaces/default/routes/hello")
        self.assertEqual(route["kind"], "Route")
        self.assertEqual(route["spec"]["traffic"][2], {"tag": "latest", "configurationName": "hello",
                                                       "latestRevision": True, "percent": 0})
        self.assertEqual(route["status"]["traffic"],
                         self.api(f"{SERVING}/namespaces/default/services/hello")["status"]["traffic"])
        self.assertEqual(route["status"]["url"], "http://hello.default.example.com")
        self.assertEqual([r["metadata"]["name"] for r in self.api(f"{SERVING}/routes")["items"]],
                         ["hello", "shop"])
        cfg = self.api(f"{SERVING}/namespaces/prod/configurations/shop")
        self.assertEqual(cfg["kind"], "Configuration")
        self.assertEqual(cfg["status"]["latestCreatedRevisionName"], "shop-00002")
        self.assertEqual(cfg["status"]["latestReadyRevisionName"], "shop-00002")
        self.assertEqual(self.api(f"{SERVING}/namespaces/default/configurations")["kind"],
                         "ConfigurationList")

    def test_domain_mappings(self):
        listed = self.api(f"{DOMAINS}/namespaces/-/domainmappings")
        self.assertEqual(listed["apiVersion"], "serving.knative.dev/v1beta1")
        self.assertEqual(listed["kind"], "DomainMappingList")
        self.assertEqual([(d["metadata"]["namespace"], d["metadata"]["name"],
                           d["spec"]["ref"]["name"]) for d in listed["items"]],
                         [("default", "www.example.org", "hello"),
                          ("prod", "*.apps.example.org", "shop")])
        dm = self.api(f"{DOMAINS}/namespaces/default/domainmappings/www.example.org")
        self.assertEqual(dm["spec"]["ref"], {"apiVersion": "serving.knative.dev/v1",
                                             "kind": "Service", "name": "hello",
                                             "namespace": "default"})
        self.assertEqual(dm["status"]["url"], "http://www.example.org")
        self.assertEqual(self.api(f"{DOMAINS}/namespaces/default/domainmappings")["items"],
                         [dm])

    def test_config_is_the_effective_config(self):
        cfg = self.api("/config")
        for key in ("domain", "workers", "listeners", "admin", "limits", "timeouts", "upstream",
                    "services", "domainMappings"):
            self.assertIn(key, cfg)
        self.assertEqual(cfg["domain"], "example.com")  # a default
        self.assertEqual(cfg["timeouts"]["upstreamConnect"], "5s")
        self.assertEqual(cfg["limits"]["requestHeaderCount"], 100)
        hello, shop = cfg["services"]
        self.assertEqual(hello["namespace"], "default")
        self.assertEqual([r["name"] for r in hello["revisions"]], ["hello-00001", "hello-00002"])
        self.assertEqual(hello["revisions"][0]["endpoints"], ["127.0.0.1:9001", "127.0.0.1:9002"])
        self.assertEqual(shop["revisions"][1]["endpoints"], ["[::1]:9005"])
        self.assertEqual(shop["traffic"], [{"latestRevision": True, "percent": 100}])
        self.assertEqual([m["domain"] for m in cfg["domainMappings"]],
                         ["www.example.org", "*.apps.example.org"])

    def test_unknown_paths_and_methods(self):
        for path in ("/apis/serving.knative.dev/v1/namespaces/default/widgets",
                     "/apis/other.example/v1/things", "/apis/serving.knative.dev/v1/nope"):
            status, ctype, body = self.request(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(ctype, "application/json")
            self.assertEqual(body, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Failure",
                                    "message": "the server could not find the requested resource",
                                    "reason": "NotFound", "details": {}, "code": 404})
        status, _, body = self.request(f"{SERVING}/namespaces/default/services/nope")
        self.assertEqual(status, 404)
        self.assertEqual(body["details"], {"name": "nope", "group": "serving.knative.dev",
                                           "kind": "services"})
        self.assertEqual(body["message"], 'services.serving.knative.dev "nope" not found')
        for path in ("/config", f"{SERVING}/namespaces/default/services"):
            status, ctype, body = self.request(path, method="POST")
            self.assertEqual((status, ctype, body["reason"], body["code"]),
                             (405, "application/json", "MethodNotAllowed", 405), path)
        # the rest of the admin listener is unchanged
        status, _, body = self.proxy.admin_get("/nope")
        self.assertEqual((status, body), (404, b"not found\n"))
        self.assertEqual(self.proxy.admin_get("/healthz")[0], 200)
        self.assertIn("revgate_config_generation", self.proxy.metrics_text())


class ReloadTest(AdminApiBase):
    def test_sighup_bumps_generation_and_shows_the_new_config(self):
        proxy = self.start()
        before = self.api(f"{SERVING}/namespaces/default/services/hello")
        self.assertEqual(before["metadata"]["generation"], 1)
        time.sleep(1.1)  # lastTransitionTime has whole seconds
        self.write_config(RELOADED.format(admin=f"{LOOPBACK}:0"))
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(r"generation 2", 5, start=mark),
                             proxy.describe())
        svc = self.api(f"{SERVING}/namespaces/default/services/hello")
        self.assertEqual(svc["metadata"]["generation"], 2)
        self.assertEqual(svc["status"]["observedGeneration"], 2)
        self.assertEqual(svc["status"]["latestReadyRevisionName"], "hello-00003")
        self.assertEqual(svc["status"]["traffic"][1]["revisionName"], "hello-00003")
        self.assertGreater(svc["status"]["conditions"][0]["lastTransitionTime"],
                           before["status"]["conditions"][0]["lastTransitionTime"])
        self.assertEqual(self.api(f"{SERVING}/services")["metadata"]["resourceVersion"], "2")
        revs = self.api(f"{SERVING}/namespaces/default/revisions")["items"]
        self.assertEqual([r["metadata"]["name"] for r in revs],
                         ["hello-00001", "hello-00002", "hello-00003"])
        self.assertIn("hello-00003", json.dumps(self.api("/config")))
        # a config that fails validation changes nothing
        self.write_config("services: [")
        mark = proxy.line_count()
        proxy.signal(signal.SIGHUP)
        self.assertIsNotNone(proxy.wait_for_line(r"reload failed", 5, start=mark))
        self.assertEqual(self.api(f"{SERVING}/services/")["metadata"]["resourceVersion"], "2")


class CliTest(AdminApiBase):
    def setUp(self):
        super().setUp()
        self.start()

    def table(self, out):
        """Rows of a kubectl-style table: columns start where the header's words start."""
        lines = out.rstrip("\n").split("\n")
        header = lines[0]
        starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
        def cells(line):
            return [line[a:b].strip() if b else line[a:].strip()
                    for a, b in zip(starts, starts[1:] + [None])]
        return cells(header), [cells(line) for line in lines[1:]]

    def test_services_list(self):
        out = self.cli("services", "list", "--admin", self.admin)
        self.assertEqual(out.returncode, 0, out.stderr)
        header, rows = self.table(out.stdout)
        self.assertEqual(header, ["SERVICE", "NAMESPACE", "URL", "LATEST READY", "TRAFFIC"])
        self.assertEqual(rows, [
            ["hello", "default", "http://hello.default.example.com", "hello-00002",
             "90% hello-00001, 10% hello-00002 (canary)"],
            ["shop", "prod", "http://shop.prod.example.com", "shop-00002", "100% shop-00002"],
        ])
        out = self.cli("services", "list", "--admin", self.admin, "--namespace", "prod")
        self.assertEqual(self.table(out.stdout)[1][0][0], "shop")
        self.assertEqual(len(self.table(out.stdout)[1]), 1)

    def test_services_describe_json_and_yaml(self):
        api = self.api(f"{SERVING}/namespaces/default/services/hello")
        out = self.cli("services", "describe", "hello", "--admin", self.admin, "--format", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), api)
        out = self.cli("services", "describe", "shop", "--namespace", "prod", "--admin",
                       self.admin, "--format", "yaml")
        self.assertEqual(out.returncode, 0, out.stderr)
        for line in ("apiVersion: serving.knative.dev/v1", "kind: Service", "  name: shop",
                     "  namespace: prod", "  latestReadyRevisionName: shop-00002",
                     "  url: http://shop.prod.example.com"):
            self.assertIn(line + "\n", out.stdout)
        if yaml is not None:
            self.assertEqual(yaml.safe_load(out.stdout),
                             self.api(f"{SERVING}/namespaces/prod/services/shop"))
        # yaml is the default
        default = self.cli("services", "describe", "shop", "-n", "prod", "--admin", self.admin)
        self.assertEqual(default.stdout, out.stdout)

    def test_revisions_list(self):
        out = self.cli("revisions", "list", "--admin", self.admin)
        self.assertEqual(out.returncode, 0, out.stderr)
        header, rows = self.table(out.stdout)
        self.assertEqual(header, ["REVISION", "SERVICE", "NAMESPACE", "TRAFFIC", "TAGS", "READY",
                                  "ENDPOINTS"])
        self.assertEqual(rows, [
            ["hello-00002", "hello", "default", "10%", "canary,latest", "True", "127.0.0.1:9003"],
            ["hello-00001", "hello", "default", "90%", "-", "True",
             "127.0.0.1:9001,127.0.0.1:9002"],
            ["shop-00002", "shop", "prod", "100%", "-", "True", "[::1]:9005"],
            ["shop-00001", "shop", "prod", "0%", "-", "True", "127.0.0.1:9004"],
        ])
        out = self.cli("revisions", "list", "--admin", self.admin, "--service", "shop",
                       "--namespace", "prod")
        self.assertEqual([r[0] for r in self.table(out.stdout)[1]], ["shop-00002", "shop-00001"])

    def test_admin_address_from_the_config_file(self):
        path = self.write_config(CONFIG.format(admin=f"0.0.0.0:{self.proxy.admin_port}"),
                                 "cli.yaml")
        out = self.cli("services", "list", "-c", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("hello-00002", out.stdout)

    def test_not_found_and_usage(self):
        out = self.cli("services", "describe", "nope", "--admin", self.admin)
        self.assertEqual(out.returncode, 1)
        self.assertEqual(out.stderr, 'revgate: service "nope" not found in namespace "default"\n')
        self.assertEqual(out.stdout, "")
        out = self.cli("revisions", "list", "--service", "nope", "--admin", self.admin)
        self.assertEqual(out.returncode, 1)
        for argv in (["services"], ["services", "describe"], ["services", "list", "--bogus"],
                     ["services", "describe", "hello", "--format", "xml"],
                     ["services", "list", "--admin", "no-port"]):
            out = self.cli(*argv)
            self.assertEqual(out.returncode, 2, f"{argv}: {out.stderr}")


class UnreachableTest(IntegrationTest):
    def test_unreachable_admin_is_one_line_and_exit_1(self):
        port = dead_port()
        for argv in (["services", "list"], ["services", "describe", "hello"],
                     ["revisions", "list"]):
            out = self.run_cli(*argv, "--admin", f"{LOOPBACK}:{port}")
            self.assertEqual(out.returncode, 1, out)
            self.assertEqual(out.stdout, "")
            self.assertEqual(out.stderr,
                             f"revgate: cannot reach admin at {LOOPBACK}:{port}: "
                             "Connection refused\n")

    def test_port_zero_in_the_config_needs_admin(self):
        path = self.write_config(CONFIG.format(admin=f"{LOOPBACK}:0"))
        out = self.run_cli("services", "list", "-c", path)
        self.assertEqual(out.returncode, 1)
        self.assertIn("admin.address has port 0", out.stderr)
        self.assertEqual(len(out.stderr.splitlines()), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
