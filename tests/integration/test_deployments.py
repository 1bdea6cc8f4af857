"""Deployments (SPEC section 5, issue #8), black box: canary and linear weight shifts driven by
the controller, the alarm rollback (the `to` group answers 502: its target is a closed port),
the no-healthy-target rollback, sticky (AWSALBTG) clients moved back by a rollback, stop, 409
for a second deployment on a rule, the 400/404 validation of POST /api/v1/deployments, and
state_file: a restart in the middle rolls the deployment back (deploy.h).

Metrics windows are 1 s (metrics.window) and alarm periods 1 s, bakes a few seconds. Splits are
counted exactly on one worker thread with the load paused (smooth weighted round robin).
Waits are polls with deadlines.
Run: python3 tests/integration/test_deployments.py [TestClass.test_name ...]
"""

import json
import os
import re
import shutil
import tempfile

import harness as h
from test_admin import Load, api, ok_json, split

ALARM = {"max_error_rate": 0.1, "datapoints": 2, "period": "1s", "min_requests": 3}


def config(a, b, wa=100, wb=0, hc_b=None, **top):
    """Listener main: rule 10 (/split*) forwards to ga/gb; default action fixed 404."""
    rules = [{"priority": 10, "conditions": {"path_pattern": ["/split*"]},
              "action": h.forward(("ga", wa), ("gb", wb))}]
    return h.make_config(
        listeners=[h.listener("main", None, rules=rules)],
        target_groups=[h.target_group("ga", [a]),
                       h.target_group("gb", [b], health_check=hc_b)],
        metrics={"window": "1s"}, **top)


def canary(**kw):
    d = {"listener": "main", "rule": 10, "from": "ga", "to": "gb", "strategy": "canary",
         "canary_percent": 20, "bake": "2s", "final_bake": "2s", "alarm": ALARM}
    d.update(kw)
    return d


def weights(dep):
    return {w["name"]: w["weight"] for w in dep["weights"]}


class DeployCase(h.RingTestCase):

    def get(self, dep_id):
        return ok_json(api(self.lb, "GET", f"/api/v1/deployments/{dep_id}"))

    def wait_state(self, dep_id, state, timeout):
        h.wait_for(lambda: self.get(dep_id)["state"] != "IN_PROGRESS", timeout,
                   what=f"deployment {dep_id} to finish")
        dep = self.get(dep_id)
        self.assertEqual(dep["state"], state, dep)
        return dep

    def start(self, body):
        return ok_json(api(self.lb, "POST", "/api/v1/deployments", body), 201)


class TestShifts(DeployCase):

    def setUp(self):
        self.a = self.backend("A")
        self.b = self.backend("B")
        self.lb = self.ringlb(config(self.a, self.b), threads=1)

    def test_canary_succeeds(self):
        load = Load(self.lb.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        load.wait_requests(20)
        dep = self.start(canary())
        self.assertEqual(dep["state"], "IN_PROGRESS")
        self.assertEqual(dep["to_percent"], 20)
        self.assertEqual(weights(dep), {"ga": 80, "gb": 20})
        load.pause()
        got = split(self.lb.port(), 10, "/split")
        self.assertEqual((got["A"], got["B"]), (8, 2), got)
        load.resume()
        load.wait_requests(20)
        dep = self.wait_state(dep["id"], "SUCCESSFUL", 20)
        self.assertEqual(weights(dep), {"ga": 0, "gb": 100})
        self.assertEqual([s["to_percent"] for s in dep["history"]], [20, 100, 100])
        self.assertGreaterEqual(dep["history"][1]["at_ms"], 2000)
        self.assertTrue(dep["alarm_readings"], dep)
        self.assertFalse(any(r["breach"] for r in dep["alarm_readings"]), dep)
        load.pause()
        self.assertEqual(set(split(self.lb.port(), 6, "/split")), {"B"})
        load.stop()
        self.assertEqual(load.failures, [])
        self.assertGreater(load.by_backend["B"], 0)
        # listed, and a new deployment on the rule is allowed once this one is over
        lst = ok_json(api(self.lb, "GET", "/api/v1/deployments"))["deployments"]
        self.assertEqual([d["id"] for d in lst], [dep["id"]])
        back = self.start(canary(**{"from": "gb", "to": "ga"}))
        self.assertEqual(weights(back), {"gb": 80, "ga": 20})

    def test_linear_steps(self):
        load = Load(self.lb.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        body = canary(strategy="linear", step_percent=25, step_bake="1s")
        for k in ("canary_percent", "bake", "final_bake"):
            del body[k]
        dep = self.start(body)
        self.assertEqual(weights(dep), {"ga": 75, "gb": 25})
        load.pause()
        got = split(self.lb.port(), 8, "/split")
        self.assertEqual((got["A"], got["B"]), (6, 2), got)
        load.resume()
        h.wait_for(lambda: self.get(dep["id"])["to_percent"] >= 50, 10, what="second step")
        load.pause()
        got = split(self.lb.port(), 8, "/split")
        self.assertGreaterEqual(got["B"], 4, got)
        load.resume()
        dep = self.wait_state(dep["id"], "SUCCESSFUL", 20)
        self.assertEqual([s["to_percent"] for s in dep["history"]], [25, 50, 75, 100, 100])
        self.assertEqual(weights(dep), {"ga": 0, "gb": 100})
        load.stop()
        self.assertEqual(load.failures, [])

    def test_stop_restores_previous_weights(self):
        r = api(self.lb, "PUT", "/api/v1/listeners/main/rules/10/forward",
                {"target_groups": [{"name": "ga", "weight": 70}, {"name": "gb", "weight": 30}]})
        self.assertEqual(r.status, 200, r)
        dep = self.start(canary(canary_percent=50, bake="60s"))
        self.assertEqual(weights(dep), {"ga": 50, "gb": 50})
        # one deployment per rule
        r = api(self.lb, "POST", "/api/v1/deployments", canary())
        self.assertIn("error", ok_json(r, 409))
        stopped = ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"))
        self.assertEqual(stopped["state"], "STOPPED")
        self.assertEqual(weights(stopped), {"ga": 70, "gb": 30})
        got = split(self.lb.port(), 10, "/split")
        self.assertEqual((got["A"], got["B"]), (7, 3), got)
        self.assertIn("error", ok_json(
            api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"), 409))

    def test_stop_without_previous_override(self):
        dep = self.start(canary(bake="60s"))
        ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"))
        rules = ok_json(api(self.lb, "GET", "/api/v1/listeners/main/rules"))
        fw = rules["rules"][0]["action"]["forward"]
        self.assertFalse(fw["runtime_weights"], fw)     # back to the file's weights
        self.assertEqual([(g["name"], g["weight"]) for g in fw["target_groups"]],
                         [("ga", 100), ("gb", 0)])
        self.assertEqual(set(split(self.lb.port(), 6, "/split")), {"A"})

    def forced_split(self, n, name="X-Ringlb-Canary", value="force"):
        cnt = {}
        with h.Conn(self.lb.port()) as c:
            for _ in range(n):
                r = c.roundtrip("GET", "/split", headers=[(name, value)])
                self.assertEqual(r.status, 200, r)
                cnt[r.header("X-Backend")] = cnt.get(r.header("X-Backend"), 0) + 1
        return cnt

    def test_canary_header_forces_the_to_group(self):
        # no deployment: the header means nothing
        self.assertEqual(self.forced_split(4), {"A": 4})
        dep = self.start(canary(canary_percent=10, bake="60s"))
        self.assertEqual(self.forced_split(12), {"B": 12})
        self.assertEqual(self.forced_split(6, "x-ringlb-canary", "FORCE"), {"B": 6})
        # another value, or no header: the weights (90/10) decide
        got = self.forced_split(10, value="yes")
        self.assertEqual((got.get("A"), got.get("B")), (9, 1), got)
        got = split(self.lb.port(), 10, "/split")
        self.assertEqual((got["A"], got["B"]), (9, 1), got)
        ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"))
        self.assertEqual(self.forced_split(4), {"A": 4})

    def test_canary_header_name_configurable(self):
        self.lb.stop()
        cfg = json.loads(config(self.a, self.b))
        cfg["admin"]["canary_header"] = "X-Try-New"
        self.lb = self.ringlb(json.dumps(cfg), threads=1)
        self.assertEqual(ok_json(api(self.lb, "GET", "/api/v1/config"))["config"]["admin"]
                         ["canary_header"], "X-Try-New")
        dep = self.start(canary(canary_percent=10, bake="60s"))
        self.assertEqual(self.forced_split(4, "X-Try-New"), {"B": 4})
        got = self.forced_split(10)   # the default name is not special any more
        self.assertEqual((got.get("A"), got.get("B")), (9, 1), got)
        ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"))

    def test_validation(self):
        cases400 = [
            canary(strategy="blue-green"), canary(canary_percent=0), canary(canary_percent=100),
            canary(bake="soon"), canary(rule="x"), canary(to="ga"), canary(extra=1),
            canary(alarm={"max_error_rate": 2}), canary(alarm={"period": "0s"}),
            canary(alarm={"nope": 1}), canary(step_percent=10), canary(listener=""),
        ]
        missing = canary()
        del missing["to"]
        cases400.append(missing)
        for body in cases400:
            r = api(self.lb, "POST", "/api/v1/deployments", body)
            self.assertIn("error", ok_json(r, 400), body)
        r = api(self.lb, "POST", "/api/v1/deployments", raw_body=b"{not json")
        self.assertEqual(r.status, 400)
        for body in (canary(listener="nope"), canary(rule=99), canary(to="gz"),
                     canary(**{"from": "gz"})):
            r = api(self.lb, "POST", "/api/v1/deployments", body)
            self.assertIn("error", ok_json(r, 404), body)
        for path in ("/api/v1/deployments/d-999", "/api/v1/deployments/x/nope"):
            self.assertEqual(api(self.lb, "GET", path).status, 404, path)
        self.assertEqual(api(self.lb, "POST", "/api/v1/deployments/d-999/stop").status, 404)
        r = api(self.lb, "PUT", "/api/v1/deployments")
        self.assertEqual((r.status, r.header("Allow")), (405, "GET, POST"))
        self.assertEqual(ok_json(api(self.lb, "GET", "/api/v1/deployments")),
                         {"deployments": []})


class TestRollback(DeployCase):

    def test_alarm_rolls_back(self):
        a = self.backend("A")
        dead = h.free_port()            # nothing listens: every request to gb is a 502
        self.lb = self.ringlb(config(a, dead), threads=1)
        load = Load(self.lb.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        dep = self.start(canary(canary_percent=50, bake="60s"))
        # datapoints (2) x period (1 s) + 1 s, plus slack for loaded machines
        dep = self.wait_state(dep["id"], "ROLLED_BACK", 2 * 1 + 1 + 6)
        self.assertIn("alarm", dep["reason"])
        breaches = [r for r in dep["alarm_readings"] if r["breach"]]
        self.assertGreaterEqual(len(breaches), 2, dep)
        self.assertTrue(all(r["errors"] > 0 and r["counted"] for r in breaches), dep)
        self.assertEqual(dep["to_percent"], 0)
        load.pause()
        self.assertEqual(set(split(self.lb.port(), 6, "/split")), {"A"})

    def test_unhealthy_to_group_rolls_back(self):
        a = self.backend("A")
        hc = {"enabled": True, "path": "/health", "interval": "200ms", "timeout": "150ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}
        self.lb = self.ringlb(config(a, h.free_port(), hc_b=hc), threads=1)

        def gb_unhealthy():
            g = ok_json(api(self.lb, "GET", "/api/v1/target-groups/gb"))
            return all(t["state"] == "unhealthy" for t in g["targets"])
        h.wait_for(gb_unhealthy, 10, what="gb unhealthy")
        dep = self.start(canary(bake="60s"))
        dep = self.wait_state(dep["id"], "ROLLED_BACK", 5)
        self.assertIn("healthy", dep["reason"])
        self.assertEqual(set(split(self.lb.port(), 6, "/split")), {"A"})

    def test_sticky_clients_move_back_after_rollback(self):
        a, b = self.backend("A"), self.backend("B")
        fw = h.forward(("ga", 100), ("gb", 0))
        fw["forward"]["stickiness"] = {"enabled": True, "duration": "1h"}
        rules = [{"priority": 10, "conditions": {"path_pattern": ["/split*"]}, "action": fw}]
        self.lb = self.ringlb(h.make_config(
            listeners=[h.listener("main", None, rules=rules)],
            target_groups=[h.target_group("ga", [a]), h.target_group("gb", [b])],
            metrics={"window": "1s"}), threads=1)
        dep = self.start(canary(canary_percent=50, bake="60s"))
        cookie = None
        for _ in range(10):
            r = h.http(self.lb.port(), "GET", "/split")
            if r.header("X-Backend") == "B":
                for v in r.header_all("Set-Cookie"):
                    m = re.match(r"AWSALBTG=([A-Za-z0-9_-]+);", v)
                    cookie = m.group(1) if m else cookie
                break
        self.assertIsNotNone(cookie)
        hdr = [("Cookie", f"AWSALBTG={cookie}")]
        self.assertEqual({h.http(self.lb.port(), "GET", "/split", headers=hdr)
                          .header("X-Backend") for _ in range(4)}, {"B"})
        ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep['id']}/stop"))
        self.assertEqual({h.http(self.lb.port(), "GET", "/split", headers=hdr)
                          .header("X-Backend") for _ in range(4)}, {"A"})


class TestRestart(DeployCase):
    """A deployment in progress at a restart is rolled back (deploy.h, documented choice)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringlb-deploy-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.state = os.path.join(self.tmp, "state.json")

    def read_state(self):
        with open(self.state) as f:
            return json.load(f)

    def restart_case(self, previous):
        a, b = self.backend("A"), self.backend("B")
        text = config(a, b, state_file=self.state)
        self.lb = self.ringlb(text, threads=1)
        if previous:
            ok_json(api(self.lb, "PUT", "/api/v1/listeners/main/rules/10/forward",
                        {"target_groups": [{"name": "ga", "weight": 3},
                                           {"name": "gb", "weight": 1}]}))
        dep = self.start(canary(canary_percent=50, bake="60s"))
        st = self.read_state()
        self.assertEqual([d["id"] for d in st["deployments"]], [dep["id"]], st)
        self.assertEqual("original" in st["deployments"][0], previous, st)
        self.lb.stop()
        self.lb = self.ringlb(text, threads=1)
        got = self.get(dep["id"])
        self.assertEqual(got["state"], "ROLLED_BACK", got)
        self.assertIn("restarted", got["reason"])
        # new ids do not collide; the rule is free again
        dep2 = self.start(canary(bake="60s"))
        self.assertNotEqual(dep2["id"], dep["id"])
        ok_json(api(self.lb, "POST", f"/api/v1/deployments/{dep2['id']}/stop"))
        self.assertNotIn("deployments", self.read_state())
        return split(self.lb.port(), 8, "/split")

    def test_restart_rolls_back_to_file_weights(self):
        self.assertEqual(set(self.restart_case(False)), {"A"})

    def test_restart_rolls_back_to_previous_weights(self):
        got = self.restart_case(True)
        self.assertEqual((got["A"], got["B"]), (6, 2), got)

    def test_finished_deployment_not_persisted(self):
        a, b = self.backend("A"), self.backend("B")
        self.lb = self.ringlb(config(a, b, state_file=self.state), threads=1)
        dep = self.start(canary(bake="1s", final_bake="1s", alarm={"min_requests": 1000}))
        self.wait_state(dep["id"], "SUCCESSFUL", 15)
        st = self.read_state()
        self.assertNotIn("deployments", st)
        self.assertEqual(st["weights"][0]["target_groups"],
                         [{"name": "ga", "weight": 0}, {"name": "gb", "weight": 100}])


if __name__ == "__main__":
    h.main()
