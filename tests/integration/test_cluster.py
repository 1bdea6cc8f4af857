"""A fleet of three ringlb instances sharing runtime state through a real etcd (SPEC section 10,
issue #11), black box: registrations and weights made through one instance reach the others
within 1 s, two racing weight changes give one 200 and one 409, a sticky cookie of one
instance is honoured by another, and an etcd outage keeps traffic flowing (admin changes 503,
ringlb_cluster_connected 0) and is caught up on after etcd comes back.

etcd (Debian etcd-server) runs on loopback ports with its data in a temporary directory.
Run: python3 tests/integration/test_cluster.py [TestClass.test_name ...]
"""

import json
import os
import shutil
import tempfile
import time

import harness as h
from test_admin import Load, api, ok_json, split

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class Etcd:
    """One etcd member on two free loopback ports; start()/stop() keep the data directory.
    tls=(cert, key): clients reach it over https."""

    def __init__(self, tls=None):
        self.dir = tempfile.mkdtemp(prefix="ringlb-etcd-")
        self.client = h.free_port()
        self.peer = h.free_port()
        self.proc = None
        self.tls = tls

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client}"

    def start(self):
        log = open(os.path.join(self.dir, "etcd.log"), "ab")
        peer = f"http://127.0.0.1:{self.peer}"
        self.proc = h.spawn([ETCD, "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
                             "--listen-client-urls", self.url,
                             "--advertise-client-urls", self.url,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", f"t={peer}", "--log-level", "warn"]
                            + (["--cert-file", self.tls[0], "--key-file", self.tls[1]]
                               if self.tls else []),
                            stdout=log, stderr=log, stdin=h.subprocess.DEVNULL)
        log.close()
        h.wait_for(self.healthy, 15, what="etcd to answer")

    def healthy(self):
        if self.tls:
            try:
                return self.call("/v3/maintenance/status", {})[0] == 200
            except Exception:  # noqa: BLE001 - not up yet
                return False
        try:
            r = h.http(self.client, "POST", "/v3/kv/range", body=b'{"key":"AA=="}',
                       headers=[("Content-Type", "application/json")], timeout=1)
            return r.status == 200
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def call(self, path, body, token=None, cafile=None):
        """One JSON-gateway call over https (Python's ssl): (status, parsed answer)."""
        import http.client
        import ssl
        ctx = ssl.create_default_context(cafile=cafile or self.ca)
        c = http.client.HTTPSConnection("127.0.0.1", self.client, context=ctx, timeout=3)
        hdrs = {"Content-Type": "application/json"}
        if token:
            hdrs["Authorization"] = token
        c.request("POST", path, json.dumps(body), hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data or b"{}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def config(etcd, name, a, b, prefix="/ringlb/test/", sticky=False):
    """Listener main: rule 10 (/split*) forwards ga 100 / gb 0 (optionally with AWSALBTG
    stickiness); the default action forwards to ga."""
    fw = h.forward(("ga", 100), ("gb", 0))
    if sticky:
        fw["forward"]["stickiness"] = {"enabled": True, "duration": "1h"}
    rules = [{"priority": 10, "conditions": {"path_pattern": ["/split*"]}, "action": fw}]
    return h.make_config(
        listeners=[h.listener("main", h.forward("ga"), rules=rules)],
        target_groups=[h.target_group("ga", [a], deregistration_delay="0s"),
                       h.target_group("gb", [b])],
        metrics={"window": "1s"},
        cluster={"etcd": [etcd.url], "prefix": prefix, "instance": name, "lease_ttl": "2s"})


def metric(lb, name):
    text = h.http(lb.admin_port, "GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def targets(lb, group):
    g = ok_json(api(lb, "GET", f"/api/v1/target-groups/{group}"))
    return {t["port"]: t["state"] for t in g["targets"]}


def rule_weights(lb):
    fw = ok_json(api(lb, "GET", "/api/v1/listeners/main/rules"))["rules"][0]["action"]["forward"]
    return {g["name"]: g["weight"] for g in fw["target_groups"]}


class FleetCase(h.RingTestCase):

    def setUp(self):
        self.etcd = Etcd()
        self.addCleanup(self.etcd.cleanup)
        self.etcd.start()
        self.a = self.backend("A")
        self.b = self.backend("B")

    def fleet(self, n=3, **kw):
        return [self.ringlb(config(self.etcd, f"lb-{i}", self.a, self.b, **kw), threads=1)
                for i in range(n)]


class TestSharedState(FleetCase):

    def test_registration_reaches_every_instance(self):
        lbs = self.fleet()
        c = self.backend("C")
        g = ok_json(api(lbs[0], "POST", "/api/v1/target-groups/ga/targets",
                        {"targets": [{"id": "127.0.0.1", "port": c.port}]}))
        self.assertIn(c.port, [t["port"] for t in g["targets"]])
        t0 = time.monotonic()
        for lb in lbs[1:]:
            h.wait_for(lambda lb=lb: c.port in targets(lb, "ga"), 1.0,
                       what="the registration on another instance")
        self.assertLess(time.monotonic() - t0, 2.0)
        for i, lb in enumerate(lbs):
            h.wait_for(lambda lb=lb: "C" in split(lb.port(), 4), 3,
                       what="traffic to the new target")
            self.assertEqual(ok_json(api(lb, "GET", "/api/v1/target-groups"))["instance"],
                             f"lb-{i}")
        # deregistration through another instance
        ok_json(api(lbs[2], "POST", "/api/v1/target-groups/ga/targets/deregister",
                    {"targets": [{"id": "127.0.0.1", "port": c.port}]}))
        for lb in lbs:
            h.wait_for(lambda lb=lb: c.port not in targets(lb, "ga"), 2,
                       what="the deregistration everywhere")
            self.assertEqual(set(split(lb.port(), 4)), {"A"})
        # a new instance started now gets the state from etcd
        late = self.ringlb(config(self.etcd, "lb-late", self.a, self.b), threads=1)
        self.assertNotIn(c.port, targets(late, "ga"))
        for lb in lbs + [late]:
            self.assertEqual(metric(lb, "ringlb_cluster_connected"), 1.0)

    def test_weights_reach_every_instance_and_races_conflict(self):
        lbs = self.fleet()
        body = {"target_groups": [{"name": "ga", "weight": 30}, {"name": "gb", "weight": 70}]}
        ok_json(api(lbs[1], "PUT", "/api/v1/listeners/main/rules/10/forward", body))
        for lb in lbs:
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 30, "gb": 70}, 1.0,
                       what="the weights on every instance")
            got = split(lb.port(), 10, "/split")
            self.assertEqual((got["A"], got["B"]), (3, 7), got)
        # two changes racing on the same rule from two instances: one wins, one gets 409
        import threading
        results = {}

        def put(i, w):
            results[i] = api(lbs[i], "PUT", "/api/v1/listeners/main/rules/10/forward",
                             {"target_groups": [{"name": "ga", "weight": w},
                                                {"name": "gb", "weight": 100 - w}]})
        for _ in range(5):
            results.clear()
            ts = [threading.Thread(target=put, args=(0, 10)),
                  threading.Thread(target=put, args=(2, 90))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            codes = sorted(r.status for r in results.values())
            if codes == [200, 409]:
                break
            # both may pass when one finished before the other started: try again
            self.assertEqual(codes, [200, 200], results)
            time.sleep(0.3)
        self.assertEqual(codes, [200, 409], results)
        loser = next(r for r in results.values() if r.status == 409)
        self.assertIn("changed meanwhile", json.loads(loser.body)["error"])
        winner = next(i for i, r in results.items() if r.status == 200)
        want = {"ga": 10, "gb": 90} if winner == 0 else {"ga": 90, "gb": 10}
        for lb in lbs:
            h.wait_for(lambda lb=lb: rule_weights(lb) == want, 1.0, what="the winner's weights")
        # back to the file's weights everywhere
        time.sleep(0.3)
        r = api(lbs[0], "DELETE", "/api/v1/listeners/main/rules/10/forward")
        self.assertEqual(r.status, 200, r)
        for lb in lbs:
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 100, "gb": 0}, 1.0,
                       what="the file's weights everywhere")

    def test_metrics_of_the_instances_sum_to_the_fleet(self):
        lbs = self.fleet()
        name = 'ringlb_requests_total{listener="main",target_group="ga"}'
        before = [metric(lb, name) or 0.0 for lb in lbs]
        sent = [10, 7, 5]
        for lb, n in zip(lbs, sent):
            split(lb.port(), n, "/")
        after = [metric(lb, name) or 0.0 for lb in lbs]
        self.assertEqual([a - b for a, b in zip(after, before)], sent)   # no double counting
        self.assertEqual(sum(after) - sum(before), sum(sent))

    def test_sticky_cookie_honoured_by_another_instance(self):
        lbs = self.fleet(2, sticky=True)
        ok_json(api(lbs[0], "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "ga", "weight": 1}, {"name": "gb", "weight": 1}]}))
        for lb in lbs:
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 1, "gb": 1}, 1.0,
                       what="weights everywhere")
        r = h.http(lbs[0].port(), "GET", "/split")
        cookie = next(v for k, v in r.headers if k.lower() == "set-cookie"
                      and v.startswith("AWSALBTG="))
        pin = r.header("X-Backend")
        for _ in range(8):
            r2 = h.http(lbs[1].port(), "GET", "/split",
                        headers=[("Cookie", cookie.split(";")[0])])
            self.assertEqual(r2.header("X-Backend"), pin)


ALARM = {"max_error_rate": 0.1, "datapoints": 2, "period": "1s", "min_requests": 3}


def canary(**kw):
    d = {"listener": "main", "rule": 10, "from": "ga", "to": "gb", "strategy": "canary",
         "canary_percent": 20, "bake": "2s", "final_bake": "1s", "alarm": ALARM}
    d.update(kw)
    return d


def deployment(lb, dep_id):
    return ok_json(api(lb, "GET", f"/api/v1/deployments/{dep_id}"))


def leader_of(lbs):
    leaders = [lb for lb in lbs if metric(lb, "ringlb_cluster_leader") == 1.0]
    return leaders[0] if len(leaders) == 1 else None


class TestFleetDeployments(FleetCase):

    def test_canary_rolls_back_fleet_wide_on_errors_seen_through_another_instance(self):
        dead = h.free_port()            # nothing listens: every request to gb is a 502
        lbs = [self.ringlb(config(self.etcd, f"lb-{i}", self.a, dead), threads=1)
               for i in range(3)]
        h.wait_for(lambda: leader_of(lbs) is not None, 5, what="a leader")
        # traffic only through one instance that is not the leader, the deployment started
        # on the third: the leader sees the errors only in the fleet's published windows
        leader = leader_of(lbs)
        seen, starter = [lb for lb in lbs if lb is not leader]
        lbs.remove(seen)
        lbs.insert(0, seen)
        load = Load(seen.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        dep = ok_json(api(starter, "POST", "/api/v1/deployments",
                          canary(canary_percent=50, bake="60s")), 201)
        for lb in lbs:
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 50, "gb": 50}, 1.0,
                       what="the canary weights everywhere")
        # datapoints (2) x period (1 s) + 1 s, plus slack for the fleet's window publication
        h.wait_for(lambda: deployment(starter, dep["id"])["state"] != "IN_PROGRESS", 12,
                   what="the rollback")
        self.assertIn(metric(leader, "ringlb_requests_total{listener=\"main\","
                                     "target_group=\"gb\"}"), (None, 0.0))
        for lb in lbs:
            h.wait_for(lambda lb=lb: deployment(lb, dep["id"])["state"] == "ROLLED_BACK", 1.0,
                       what="ROLLED_BACK on every instance")
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 100, "gb": 0}, 1.0,
                       what="the weights restored everywhere")
        got = deployment(lbs[1], dep["id"])
        self.assertIn("alarm", got["reason"])
        self.assertTrue([r for r in got["alarm_readings"] if r["breach"]], got)
        load.pause()
        self.assertEqual(set(split(lbs[0].port(), 6, "/split")), {"A"})

    def test_leader_killed_mid_deployment_another_instance_finishes_it(self):
        lbs = self.fleet()
        h.wait_for(lambda: leader_of(lbs) is not None, 5, what="a leader")
        first = leader_of(lbs)
        others = [lb for lb in lbs if lb is not first]
        loads = [Load(lb.port(), "/split") for lb in others]
        for ld in loads:
            ld.start()
            self.addCleanup(ld.stop)
        dep = ok_json(api(others[0], "POST", "/api/v1/deployments",
                          canary(bake="4s", final_bake="1s")), 201)
        time.sleep(1.0)
        first.expect_clean_exit = False
        first.proc.kill()                           # no lease revocation: it expires (2 s)
        first.proc.wait(5)
        h.wait_for(lambda: leader_of(others) is not None, 6, what="a new leader")
        h.wait_for(lambda: deployment(others[0], dep["id"])["state"] != "IN_PROGRESS", 15,
                   what="the deployment to finish")
        got = deployment(others[1], dep["id"])
        self.assertEqual(got["state"], "SUCCESSFUL", got)
        self.assertEqual([s["to_percent"] for s in got["history"]], [20, 100, 100])
        for lb in others:
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 0, "gb": 100}, 1.0,
                       what="100 % everywhere")
        for ld in loads:
            ld.stop()
            self.assertEqual(ld.failures, [])

    def test_one_deployment_per_rule_in_the_fleet_and_stop_anywhere(self):
        lbs = self.fleet(2)
        dep = ok_json(api(lbs[0], "POST", "/api/v1/deployments", canary(bake="60s")), 201)
        h.wait_for(lambda: any(d["id"] == dep["id"] for d in ok_json(
            api(lbs[1], "GET", "/api/v1/deployments"))["deployments"]), 1.0,
            what="the deployment listed on the other instance")
        r = api(lbs[1], "POST", "/api/v1/deployments", canary())
        self.assertIn("error", ok_json(r, 409))
        # the canary header route works on every instance
        for lb in lbs:
            with h.Conn(lb.port()) as c:
                for _ in range(4):
                    rr = c.roundtrip("GET", "/split", headers=[("X-Ringlb-Canary", "force")])
                    self.assertEqual(rr.header("X-Backend"), "B")
        stopped = ok_json(api(lbs[1], "POST", f"/api/v1/deployments/{dep['id']}/stop"))
        self.assertEqual(stopped["state"], "STOPPED")
        for lb in lbs:
            h.wait_for(lambda lb=lb: deployment(lb, dep["id"])["state"] == "STOPPED", 1.0,
                       what="STOPPED everywhere")
            h.wait_for(lambda lb=lb: rule_weights(lb) == {"ga": 100, "gb": 0}, 1.0,
                       what="weights restored everywhere")
            self.assertEqual(set(split(lb.port(), 4, "/split")), {"A"})
        # the rule is free again
        again = ok_json(api(lbs[1], "POST", "/api/v1/deployments", canary(bake="60s")), 201)
        ok_json(api(lbs[0], "POST", f"/api/v1/deployments/{again['id']}/stop"))


def make_ca(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    def run(*argv):
        r = h.run(["openssl", *argv], cwd=d)
        if r.returncode:
            raise AssertionError(r.stderr)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca",
        "-days", "2")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("srv", "127.0.0.1"), ("cli", "ringlb")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            *(["-extfile", "ext"] if name == "srv" else []))
    return {k: os.path.join(d, k) for k in ("ca.pem", "srv.pem", "srv.key", "cli.pem",
                                            "cli.key")}


class TestSecureEtcd(h.RingTestCase):

    def test_https_endpoint_with_password_authentication(self):
        d = tempfile.mkdtemp(prefix="ringlb-etcd-ca-")
        self.addCleanup(shutil.rmtree, d, True)
        pki = make_ca(d)
        etcd = Etcd(tls=(pki["srv.pem"], pki["srv.key"]))
        etcd.ca = pki["ca.pem"]
        self.addCleanup(etcd.cleanup)
        etcd.start()
        for path, body in (("/v3/auth/user/add", {"name": "root", "password": "s3cret"}),
                           ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                           ("/v3/auth/enable", {})):
            status, ans = etcd.call(path, body)
            self.assertEqual(status, 200, ans)
        with open(os.path.join(d, "pw"), "w") as f:
            f.write("s3cret\n")
        with open(os.path.join(d, "badpw"), "w") as f:
            f.write("wrong\n")
        a, b = self.backend("A"), self.backend("B")

        def secure(name, pw="pw", ca=pki["ca.pem"]):
            cfg = json.loads(config(etcd, name, a, b))   # fresh ports every time
            cfg["cluster"]["tls"] = {"ca": ca, "cert": pki["cli.pem"], "key": pki["cli.key"]}
            cfg["cluster"]["auth"] = {"user": "root", "password_file": os.path.join(d, pw)}
            return self.ringlb(json.dumps(cfg), threads=1)
        lbs = [secure("lb-0"), secure("lb-1")]
        for lb in lbs:
            self.assertEqual(metric(lb, "ringlb_cluster_connected"), 1.0)
        ok_json(api(lbs[0], "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "gb", "weight": 1}]}))
        h.wait_for(lambda: rule_weights(lbs[1]) == {"gb": 1}, 1.0, what="the change over TLS")
        # without the password etcd refuses: the instance starts, but stays disconnected
        lb_bad = secure("lb-bad", pw="badpw")
        self.assertEqual(metric(lb_bad, "ringlb_cluster_connected"), 0.0)
        self.assertEqual(api(lb_bad, "DELETE", "/api/v1/listeners/main/rules/10/forward")
                         .status, 503)
        # a CA that did not sign the server certificate: refused too
        other = make_ca(tempfile.mkdtemp(prefix="ringlb-etcd-ca2-", dir=d))
        lb_wrong = secure("lb-wrong-ca", ca=other["ca.pem"])
        self.assertEqual(metric(lb_wrong, "ringlb_cluster_connected"), 0.0)
        self.assertIn("etcd", lb_wrong.stderr)


class TestOutage(FleetCase):
    def assert_fleet_back(self, lbs, timeout):
        """After etcd returns: every instance reconnects within `timeout` s, and a change
        made through the first one reaches the second within 1 s."""
        for lb in lbs:
            h.wait_for(lambda lb=lb: metric(lb, "ringlb_cluster_connected") == 1.0, timeout,
                       what="the reconnection")
        ok_json(api(lbs[0], "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "gb", "weight": 1}]}))
        h.wait_for(lambda: rule_weights(lbs[1]) == {"gb": 1}, 1.0, what="the change")

    def test_etcd_down_keeps_serving_then_catches_up(self):
        lbs = self.fleet(3)
        loads = [Load(lb.port(), "/split") for lb in lbs]
        for ld in loads:
            ld.start()
            self.addCleanup(ld.stop)
        for ld in loads:
            ld.wait_requests(20)
        self.etcd.stop()
        for lb in lbs:
            h.wait_for(lambda lb=lb: metric(lb, "ringlb_cluster_connected") == 0.0, 5,
                       what="the outage to show")
            r = api(lb, "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "gb", "weight": 1}]})
            self.assertEqual(r.status, 503, r)
            self.assertIn("etcd", json.loads(r.body)["error"])
            r = api(lb, "POST", "/api/v1/target-groups/ga/targets",
                    {"targets": [{"id": "127.0.0.1", "port": 1}]})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(h.http(lb.admin_port, "GET", "/healthz").status, 200)
        for ld in loads:
            ld.wait_requests(50)
        self.etcd.start()
        self.assert_fleet_back(lbs, 5)
        for ld in loads:
            ld.stop()
            self.assertEqual(ld.failures, [])

    def test_etcd_that_stops_answering(self):
        """etcd frozen (SIGSTOP): connections are accepted by the kernel but nothing answers.
        Calls time out (1 s), traffic is untouched, and SIGCONT brings the fleet back."""
        import signal
        lbs = self.fleet(2)
        load = Load(lbs[0].port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        load.wait_requests(20)
        os.kill(self.etcd.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: self.etcd.proc and self.etcd.proc.poll() is None and
                        os.kill(self.etcd.proc.pid, signal.SIGCONT))
        t0 = time.monotonic()
        r = api(lbs[0], "PUT", "/api/v1/listeners/main/rules/10/forward",
                {"target_groups": [{"name": "gb", "weight": 1}]})
        self.assertEqual(r.status, 503, r)
        self.assertLess(time.monotonic() - t0, 5)
        h.wait_for(lambda: metric(lbs[1], "ringlb_cluster_connected") == 0.0, 10,
                   what="the frozen etcd to show")
        n = load.ok
        load.wait_requests(n + 50)
        os.kill(self.etcd.proc.pid, signal.SIGCONT)
        self.assert_fleet_back(lbs, 10)
        load.stop()
        self.assertEqual(load.failures, [])

    def test_changes_made_while_an_instance_was_cut_off_are_caught_up(self):
        # lb-1 reaches etcd through a TCP relay the test can cut (a network partition);
        # lb-0 reaches it directly.
        relay = Relay(self.etcd.client)
        self.addCleanup(relay.close)
        lb0 = self.ringlb(config(self.etcd, "lb-0", self.a, self.b), threads=1)
        cfg = json.loads(config(self.etcd, "lb-1", self.a, self.b))
        cfg["cluster"]["etcd"] = [f"http://127.0.0.1:{relay.port}"]
        lb1 = self.ringlb(json.dumps(cfg), threads=1)
        load = Load(lb1.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        relay.cut()
        h.wait_for(lambda: metric(lb1, "ringlb_cluster_connected") == 0.0, 5,
                   what="lb-1 to notice the partition")
        c = self.backend("C")
        ok_json(api(lb0, "POST", "/api/v1/target-groups/ga/targets",
                    {"targets": [{"id": "127.0.0.1", "port": c.port}]}))
        ok_json(api(lb0, "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "gb", "weight": 1}]}))
        time.sleep(0.5)
        self.assertNotIn(c.port, targets(lb1, "ga"))       # cut off: still the old state
        self.assertEqual(rule_weights(lb1), {"ga": 100, "gb": 0})
        relay.restore()
        h.wait_for(lambda: metric(lb1, "ringlb_cluster_connected") == 1.0, 5,
                   what="lb-1 to reconnect")
        self.assertIn(c.port, targets(lb1, "ga"))
        self.assertEqual(rule_weights(lb1), {"gb": 1})
        # a weight removal made while cut off is caught up as well
        relay.cut()
        h.wait_for(lambda: metric(lb1, "ringlb_cluster_connected") == 0.0, 5,
                   what="the second partition")
        self.assertEqual(api(lb0, "DELETE", "/api/v1/listeners/main/rules/10/forward").status,
                         200)
        relay.restore()
        h.wait_for(lambda: rule_weights(lb1) == {"ga": 100, "gb": 0}, 5,
                   what="the removal caught up")
        load.stop()
        self.assertEqual(load.failures, [])


class Relay:
    """A TCP relay on a free loopback port to `port`; cut() closes every relayed connection
    and refuses new ones until restore()."""

    def __init__(self, port):
        import socket
        import threading
        self.target = port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.open = True
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.open:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(2)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(2)
                    s.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.open = True

    def close(self):
        self.closed = True
        self.cut()
        self.lsock.close()


if __name__ == "__main__":
    h.main()
