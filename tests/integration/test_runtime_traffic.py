"""Runtime traffic changes: PATCH of a Knative Service's spec.traffic on the admin API (each
refusal, merge-patch semantics, the next request routed by it), their persistence in the state
file across restarts and crashes, the overlay dropped by a config file that changed or no longer
fits it, and gradual rollouts (rolloutDuration) with their condition and metric. Real echo
backends, real requests: every split is checked by counting X-Revision answers."""

import collections
import json
import os
import random
import signal
import time
import urllib.error
import urllib.request

from harness import LOOPBACK, IntegrationTest, Revgate, default_config, metric_select, service

HELLO = "hello.default.example.com"
SERVICE_PATH = "/apis/serving.knative.dev/v1/namespaces/default/services/hello"
MERGE = "application/merge-patch+json"


def targets(*pairs, **tags):
    """targets(("hello-00001", 90), ("hello-00002", 10), canary="hello-00002")"""
    out = []
    for revision, percent in pairs:
        target = {"latestRevision": True} if revision == "LATEST" else {"revisionName": revision}
        target["percent"] = percent
        for tag, tagged in tags.items():
            if tagged == revision:
                target["tag"] = tag
        out.append(target)
    return out


class RuntimeTrafficBase(IntegrationTest):
    REVISIONS = ("hello-00001", "hello-00002", "hello-00003")

    def setUp(self):
        super().setUp()
        self.echos = {name: self.start_echo(name) for name in self.REVISIONS}

    def config(self, revisions=("hello-00001", "hello-00002"), traffic=None, **service_keys):
        svc = service("hello", [(r, [self.echos[r]]) for r in revisions], traffic=traffic)
        svc.update(service_keys)
        return default_config([svc])

    def start(self, config):
        self.proxy = self.start_revgate(config)
        return self.proxy

    def restart(self):
        self.proxy.signal(signal.SIGTERM)
        self.assertEqual(self.proxy.wait(10), 0, self.proxy.describe())
        self.proxy = self.track(Revgate(self.proxy.config_path, wait_ready=False))
        self.proxy.wait_ready()
        return self.proxy

    @property
    def state_path(self):
        return os.path.join(self.tmpdir, "revgate.state.json")

    def admin(self, method, path, body=None, content_type=MERGE):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.proxy.admin_port}{path}",
                                         data=data, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text.startswith(b"{") else text

    def patch(self, traffic, **kw):
        return self.admin("PATCH", SERVICE_PATH, {"spec": {"traffic": traffic}}, **kw)

    def get_service(self):
        status, body = self.admin("GET", SERVICE_PATH, content_type=None)
        self.assertEqual(status, 200, body)
        return body

    def split(self, n=100, host=HELLO):
        """X-Revision counts over n requests on one keep-alive connection."""
        counts = collections.Counter()
        conn = self.connect(self.proxy.port)
        for _ in range(n):
            response = conn.request(target="/", host=host)
            self.assertEqual(response.status, 200, response)
            counts[response.header("x-revision")] += 1
        conn.close()
        return dict(counts)

    def condition(self, obj, kind="Ready"):
        for c in obj["status"]["conditions"]:
            if c["type"] == kind:
                return c
        self.fail(f"no {kind} condition in {obj['status']['conditions']}")

    def status_shares(self):
        shares = collections.Counter()
        for t in self.get_service()["status"]["traffic"]:
            shares[t["revisionName"]] += t["percent"]
        return {k: v for k, v in shares.items() if v}


class PatchTest(RuntimeTrafficBase):
    def setUp(self):
        super().setUp()
        self.start(self.config(traffic=targets(("hello-00001", 90), ("hello-00002", 10),
                                               canary="hello-00002")))

    def test_a_patch_routes_the_next_request_and_answers_the_service(self):
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10})
        generation = self.get_service()["metadata"]["generation"]
        status, body = self.patch(targets(("hello-00001", 40), ("hello-00002", 60),
                                          canary="hello-00002"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["kind"], "Service")
        self.assertEqual([(t.get("revisionName"), t["percent"]) for t in body["spec"]["traffic"]],
                         [("hello-00001", 40), ("hello-00002", 60)])
        self.assertEqual([(t["revisionName"], t["percent"]) for t in body["status"]["traffic"]],
                         [("hello-00001", 40), ("hello-00002", 60)])
        self.assertGreater(body["metadata"]["generation"], generation)
        # The answer comes once every worker routes by it: the very next requests do.
        self.assertEqual(self.split(), {"hello-00001": 40, "hello-00002": 60})
        self.assertEqual(self.split(host=f"canary-{HELLO}"), {"hello-00002": 100})
        samples = self.proxy.metrics()
        percents = {l["revision"]: v for l, v in
                    metric_select(samples, "revgate_traffic_percent", service="hello")}
        self.assertEqual(percents, {"hello-00001": 40, "hello-00002": 60})

    def test_refusals_change_nothing(self):
        cases = [
            ("application/json", {"spec": {"traffic": targets(("hello-00002", 100))}}, 415, None),
            (MERGE, b'{"spec": {"traffic": [', 400, None),
            (MERGE, {"spec": {"traffic": targets(("hello-00001", 50), ("hello-00002", 60))}},
             422, "spec.traffic"),
            (MERGE, {"spec": {"traffic": targets(("hello-00009", 100))}}, 422,
             "spec.traffic[0].revisionName"),
            (MERGE, {"spec": {"traffic": [{"revisionName": "hello-00001", "percent": "100"}]}},
             422, "spec.traffic[0].percent"),
            (MERGE, {"metadata": {"labels": {"team": "a"}}}, 422, "metadata.labels"),
        ]
        for content_type, body, code, field in cases:
            with self.subTest(code=code, field=field):
                status, answer = self.admin("PATCH", SERVICE_PATH, body, content_type=content_type)
                self.assertEqual(status, code, answer)
                self.assertEqual(answer["kind"], "Status")
                if field:
                    fields = [c["field"] for c in answer["details"]["causes"]]
                    self.assertIn(field, fields, answer)
                    self.assertTrue(all(c["message"].endswith("]")
                                        for c in answer["details"]["causes"]),
                                    "each cause names its rule like the file's errors")
        status, answer = self.admin("PATCH", SERVICE_PATH.replace("hello", "nope"), {})
        self.assertEqual(status, 404, answer)
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10})
        self.assertFalse(os.path.exists(self.state_path), "a refusal writes no state")
        self.assertTrue(self.proxy.running())

    def test_merge_patch_semantics(self):
        # An empty patch changes nothing; a list replaces the old one whole; null is Knative's
        # default route (all to the latest revision).
        status, body = self.admin("PATCH", SERVICE_PATH, {})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10})
        status, body = self.patch(targets(("hello-00001", 100)))
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["spec"]["traffic"]), 1)
        status, _, _ = self.get(self.proxy.port, host=f"canary-{HELLO}")
        self.assertEqual(status, 404, "the canary tag went with the old list, and its host too")
        status, body = self.patch(None)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(), {"hello-00002": 100})

    def test_a_patch_survives_a_restart(self):
        status, body = self.patch(targets(("hello-00001", 30), ("hello-00002", 70),
                                          canary="hello-00002"))
        self.assertEqual(status, 200, body)
        with open(self.state_path, encoding="utf-8") as f:
            json.load(f)  # complete, valid JSON
        self.restart()
        self.assertEqual(self.split(), {"hello-00001": 30, "hello-00002": 70})
        self.assertEqual([t["percent"] for t in self.get_service()["spec"]["traffic"]], [30, 70])

    def test_a_patch_survives_reloads_that_leave_its_service_alone(self):
        self.assertEqual(self.patch(targets(("hello-00001", 20), ("hello-00002", 80)))[0], 200)
        config = self.config(traffic=targets(("hello-00001", 90), ("hello-00002", 10),
                                             canary="hello-00002"))
        config["domainMappings"] = [{"domain": "www.example.org", "service": "hello"}]
        self.write_config(config)
        status, body = self.admin("POST", "/reload", content_type=None)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(), {"hello-00001": 20, "hello-00002": 80})
        self.assertEqual(self.split(host="www.example.org"), {"hello-00001": 20, "hello-00002": 80})

    def test_the_file_wins_once_it_changes_that_services_traffic(self):
        self.assertEqual(self.patch(targets(("hello-00001", 20), ("hello-00002", 80)))[0], 200)
        mark = self.proxy.line_count()
        self.write_config(self.config(traffic=targets(("hello-00001", 60), ("hello-00002", 40))))
        status, body = self.admin("POST", "/reload", content_type=None)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.split(), {"hello-00001": 60, "hello-00002": 40})
        self.assertIsNotNone(self.proxy.wait_for_line(r"default/hello.*traffic", 2, start=mark),
                             self.proxy.describe())
        self.restart()
        self.assertEqual(self.split(), {"hello-00001": 60, "hello-00002": 40},
                         "the dropped change stays dropped")

    def test_an_overlay_that_no_longer_validates_is_dropped_with_the_reason(self):
        # The file's own traffic (latest 100%) stays; the change named a revision it removes.
        self.write_config(self.config(traffic=targets(("LATEST", 100))))
        self.assertEqual(self.admin("POST", "/reload", content_type=None)[0], 200)
        self.assertEqual(self.patch(targets(("hello-00001", 50), ("hello-00002", 50)))[0], 200)
        mark = self.proxy.line_count()
        self.write_config(self.config(revisions=("hello-00001", "hello-00003"),
                                      traffic=targets(("LATEST", 100))))
        status, body = self.admin("POST", "/reload", content_type=None)
        self.assertEqual(status, 200, body)
        self.assertIsNotNone(
            self.proxy.wait_for_line(r"hello.*hello-00002.*revision-exists", 2, start=mark),
            self.proxy.describe())
        self.assertEqual(self.split(), {"hello-00003": 100})

    def test_a_state_file_that_cannot_be_written_refuses_the_patch(self):
        self.proxy.signal(signal.SIGTERM)
        self.assertEqual(self.proxy.wait(10), 0)
        state_dir = os.path.join(self.tmpdir, "state")
        os.mkdir(state_dir)
        config = self.config(traffic=targets(("hello-00001", 90), ("hello-00002", 10)))
        config["stateFile"] = os.path.join(state_dir, "traffic.json")
        self.start(config)
        os.rmdir(state_dir)  # the directory is gone: the write must fail
        status, body = self.patch(targets(("hello-00002", 100)))
        self.assertEqual(status, 500, body)
        self.assertIn("traffic.json", body["message"])
        self.assertEqual(self.split(), {"hello-00001": 90, "hello-00002": 10},
                         "what could not be kept was not applied")

    def test_a_crash_during_writes_leaves_a_complete_state(self):
        written = []
        for round_ in range(4):
            # A leftover temporary file from an earlier crash must not matter either.
            with open(self.state_path + ".tmp", "w", encoding="utf-8") as f:
                f.write('{"version": 1, "services": [{"trunc')
            for i in range(random.randint(3, 8)):
                first = random.randint(0, 100)
                traffic = targets(("hello-00001", first), ("hello-00002", 100 - first))
                status, body = self.patch(traffic)
                self.assertEqual(status, 200, body)
                written.append(first)
            os.kill(self.proxy.pid, signal.SIGKILL)
            self.proxy.wait(5)
            self.proxy = self.track(Revgate(self.proxy.config_path, wait_ready=False))
            self.proxy.wait_ready()
            with open(self.state_path, encoding="utf-8") as f:
                json.load(f)
            spec = self.get_service()["spec"]["traffic"]
            self.assertEqual(spec[0]["percent"], written[-1],
                             f"round {round_}: the last acknowledged change is the one in force")


class RolloutTest(RuntimeTrafficBase):
    def test_a_new_revision_takes_the_latest_share_in_steps(self):
        config = self.config(revisions=("hello-00001",), traffic=targets(("LATEST", 100)),
                             rolloutDuration="4s")
        self.start(config)
        self.assertEqual(self.split(), {"hello-00001": 100})
        self.write_config(self.config(traffic=targets(("LATEST", 100)), rolloutDuration="4s"))
        status, body = self.admin("POST", "/reload", content_type=None)
        self.assertEqual(status, 200, body)
        # Knative's algorithm with 4 s: 1% at once, then 3 steps of 33% a second apart.
        self.assertEqual(self.status_shares(), {"hello-00001": 99, "hello-00002": 1})
        self.assertEqual(self.split(), {"hello-00001": 99, "hello-00002": 1})
        svc = self.get_service()
        ready = self.condition(svc)
        self.assertEqual((ready["status"], ready.get("reason")), ("Unknown", "RolloutInProgress"))
        self.assertEqual([(t.get("latestRevision"), t["percent"]) for t in svc["spec"]["traffic"]],
                         [(True, 100)], "spec says what is wanted; status how far it got")
        gauge = metric_select(self.proxy.metrics(), "revgate_rollout_in_progress", service="hello")
        self.assertEqual([v for _, v in gauge], [1.0])
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            share = self.status_shares().get("hello-00002", 0)
            if not seen or seen[-1] != share:
                seen.append(share)
            if share == 100:
                break
            time.sleep(0.1)
        self.assertEqual(seen, [1, 34, 67, 100])
        self.assertEqual(self.split(), {"hello-00002": 100})
        ready = self.condition(self.get_service())
        self.assertEqual(ready["status"], "True")
        gauge = metric_select(self.proxy.metrics(), "revgate_rollout_in_progress", service="hello")
        self.assertEqual([v for _, v in gauge], [0.0])

    def test_a_new_revision_mid_rollout_restarts_it_from_the_current_shares(self):
        self.start(self.config(revisions=("hello-00001",), traffic=targets(("LATEST", 100)),
                               rolloutDuration="300s"))
        self.write_config(self.config(traffic=targets(("LATEST", 100)), rolloutDuration="300s"))
        self.assertEqual(self.admin("POST", "/reload", content_type=None)[0], 200)
        self.assertEqual(self.status_shares(), {"hello-00001": 99, "hello-00002": 1})
        self.write_config(self.config(revisions=self.REVISIONS, traffic=targets(("LATEST", 100)),
                                      rolloutDuration="300s"))
        self.assertEqual(self.admin("POST", "/reload", content_type=None)[0], 200)
        # The newest revision with traffic gives up 1%: hello-00002 had exactly that.
        self.assertEqual(self.status_shares(), {"hello-00001": 99, "hello-00003": 1})
        self.assertEqual(self.split(), {"hello-00001": 99, "hello-00003": 1})

    def test_a_rollout_in_progress_survives_a_restart(self):
        self.start(self.config(revisions=("hello-00001",), traffic=targets(("LATEST", 100)),
                               rolloutDuration="300s"))
        self.write_config(self.config(traffic=targets(("LATEST", 100)), rolloutDuration="300s"))
        self.assertEqual(self.admin("POST", "/reload", content_type=None)[0], 200)
        self.restart()
        self.assertEqual(self.status_shares(), {"hello-00001": 99, "hello-00002": 1},
                         "the rollout goes on where it was, it does not jump to 100%")
        self.assertEqual(self.condition(self.get_service())["reason"], "RolloutInProgress")

    def test_without_rollout_duration_the_new_revision_takes_over_at_once(self):
        self.start(self.config(revisions=("hello-00001",), traffic=targets(("LATEST", 100))))
        self.write_config(self.config(traffic=targets(("LATEST", 100))))
        self.assertEqual(self.admin("POST", "/reload", content_type=None)[0], 200)
        self.assertEqual(self.split(), {"hello-00002": 100})
        self.assertEqual(self.condition(self.get_service())["status"], "True")


if __name__ == "__main__":
    import unittest
    unittest.main()
