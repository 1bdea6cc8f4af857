"""The admin API, black box: every endpoint of SPEC section 5 (except deployments) with its
success and error cases, the admin token, runtime registration / deregistration and weight
shifts under load, state_file persistence across restarts (and a corrupt file set aside), and
reloads (POST /api/v1/reload and SIGHUP) under wrk load.

Loads are keep-alive GET loops in Python threads (or wrk); every check counts failed requests
and expects none. Splits are counted exactly on one worker thread (--threads 1) with the load
paused, since the smooth weighted round robin is deterministic there.
Waits are polls with deadlines; nothing asserts on timing.
Run: python3 tests/integration/test_admin.py [TestClass.test_name ...]
"""

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness as h

TOKEN = "s3cret-Token_123"


# ---------------------------------------------------------------------------------------------
# helpers

def api(lb, method, path, body=None, token=None, headers=None, raw_body=None):
    """One admin request on a fresh connection; body (a dict) is sent as JSON."""
    hdrs = [("Connection", "close")] + list(headers or [])
    if token:
        hdrs.append(("Authorization", f"Bearer {token}"))
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.append(("Content-Type", "application/json"))
    if data is None and method in ("POST", "PUT", "DELETE"):
        data = b""
    return h.http(lb.admin_port, method, path, headers=hdrs, body=data)


def ok_json(r, status=200):
    if r.status != status:
        raise AssertionError(f"expected {status}, got {r!r}")
    if not (r.header("Content-Type") or "").startswith("application/json"):
        raise AssertionError(f"not JSON: {r!r}")
    return r.json()


def targets_of(lb, group, token=None):
    """{port: state} of a group's targets."""
    g = ok_json(api(lb, "GET", f"/api/v1/target-groups/{group}", token=token))
    return {t["port"]: t["state"] for t in g["targets"]}


def reg_body(*backends):
    return {"targets": [{"id": "127.0.0.1", "port": b.port} for b in backends]}


def start_with_token(tc, cfg_text, threads=2):
    """Start ringlb whose admin API needs the token (the harness' readiness probe sends none)."""
    r = h.RingLB(cfg_text, threads=threads)
    tc.addCleanup(r.stop)
    port = r.admin_port
    r.admin_port = None          # wait for the listeners only
    r.wait_ready()
    r.admin_port = port
    h.wait_for(lambda: api(r, "GET", "/healthz", token=TOKEN).status == 200, 10,
               what="admin /healthz with the token")
    return r


class Load(threading.Thread):
    """Keep-alive GET loop on one connection; counts answers per X-Backend and every failure.
    pause()/resume() park the loop between two requests (for exact split measurements)."""

    def __init__(self, port, path="/"):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.ok = 0
        self.failures = []
        self.by_backend = collections.Counter()
        self._halt = threading.Event()
        self._run = threading.Event()
        self._run.set()
        self._parked = threading.Event()

    def run(self):
        c = None
        while not self._halt.is_set():
            if not self._run.is_set():
                self._parked.set()
                self._run.wait(0.05)
                continue
            self._parked.clear()
            try:
                if c is None:
                    c = h.Conn(self.port, timeout=10)
                r = c.roundtrip("GET", self.path)
                if r.status != 200:
                    self.failures.append(f"status {r.status}: {r.body[:100]!r}")
                else:
                    self.ok += 1
                    self.by_backend[r.header("X-Backend")] += 1
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001 - every error is a failed request
                self.failures.append(repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def pause(self):
        self._run.clear()
        if not self._parked.wait(10):
            raise AssertionError("load thread did not pause")

    def resume(self):
        self._parked.clear()
        self._run.set()

    def wait_requests(self, n, timeout=20):
        start = self.ok
        h.wait_for(lambda: self.ok - start >= n or self.failures, timeout,
                   what=f"{n} more requests of the load")

    def stop(self):
        self._halt.set()
        self._run.set()
        self.join(timeout=15)


def split(port, n, path="/"):
    """n sequential GETs on one keep-alive connection: Counter of X-Backend."""
    cnt = collections.Counter()
    with h.Conn(port) as c:
        for _ in range(n):
            r = c.roundtrip("GET", path)
            if r.status != 200:
                raise AssertionError(f"GET {path}: {r!r}")
            cnt[r.header("X-Backend")] += 1
    return cnt


def two_group_config(a, b, wa=100, wb=0, state_file=None, admin=True, extra_rules=(), **tg):
    """Listener main: rule 10 (/split*) forwards to groups ga/gb with weights wa/wb; rule 20
    answers fixed 418; the default action forwards to ga."""
    rules = [{"priority": 10, "conditions": {"path_pattern": ["/split*"]},
              "action": h.forward(("ga", wa), ("gb", wb))},
             {"priority": 20, "conditions": {"path_pattern": ["/teapot"]},
              "action": h.fixed_response(418, "tea")}] + list(extra_rules)
    top = {}
    if state_file:
        top["state_file"] = state_file
    return h.make_config(
        listeners=[h.listener("main", h.forward("ga"), rules=rules)],
        target_groups=[h.target_group("ga", [a], **tg), h.target_group("gb", [b], **tg)],
        admin=admin, **top)


# ---------------------------------------------------------------------------------------------
# endpoints

class TestEndpoints(h.RingTestCase):

    def setUp(self):
        self.a = self.backend("A")
        self.b = self.backend("B")
        self.lb = self.ringlb(two_group_config(self.a, self.b, deregistration_delay="1s"))

    def test_healthz_metrics_and_unknown_paths(self):
        r = api(self.lb, "GET", "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        r = api(self.lb, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        for path in ("/nope", "/api/v1", "/api/v1/nope", "/api/v2/config", "/api/v1/config/x",
                     "/api/v1/target-groups/ga/nope", "/api/v1/listeners/main/rules/10",
                     "/api/v1/target-groups/ga/targets/nope"):
            r = api(self.lb, "GET", path)
            self.assertEqual(r.status, 404, path)
            self.assertIn("error", ok_json(r, 404))
        for method, path, allow in (("POST", "/healthz", "GET"), ("PUT", "/metrics", "GET"),
                                    ("POST", "/api/v1/config", "GET"),
                                    ("GET", "/api/v1/reload", "POST"),
                                    ("DELETE", "/api/v1/target-groups", "GET"),
                                    ("GET", "/api/v1/target-groups/ga/targets", "POST"),
                                    ("PUT", "/api/v1/target-groups/ga/targets/deregister", "POST"),
                                    ("POST", "/api/v1/listeners", "GET"),
                                    ("PUT", "/api/v1/listeners/main/rules", "GET"),
                                    ("GET", "/api/v1/listeners/main/rules/10/forward",
                                     "PUT, DELETE"),
                                    ("POST", "/api/v1/listeners/main/rules/10/forward",
                                     "PUT, DELETE")):
            r = api(self.lb, method, path)
            self.assertEqual(r.status, 405, f"{method} {path}")
            self.assertEqual(r.header("Allow"), allow, f"{method} {path}")
            self.assertEqual(ok_json(r, 405)["error"], "method not allowed")

    def test_config(self):
        j = ok_json(api(self.lb, "GET", "/api/v1/config"))
        self.assertEqual(j["generation"], 1)
        cfg = j["config"]
        self.assertEqual(cfg["admin"]["token_required"], False)
        self.assertNotIn("token_file", cfg["admin"])
        self.assertEqual([l["name"] for l in cfg["listeners"]], ["main"])
        rules = cfg["listeners"][0]["rules"]
        self.assertEqual([r["priority"] for r in rules], [10, 20])
        self.assertEqual(rules[0]["conditions"], {"path_pattern": ["/split*"]})
        self.assertEqual(rules[0]["action"]["forward"]["target_groups"],
                         [{"name": "ga", "weight": 100}, {"name": "gb", "weight": 0}])
        self.assertEqual(rules[1]["action"]["fixed_response"]["status_code"], 418)
        tg = {g["name"]: g for g in cfg["target_groups"]}
        self.assertEqual(tg["ga"]["deregistration_delay"], "1s")
        self.assertEqual(tg["ga"]["targets"], [{"address": "127.0.0.1", "port": self.a.port}])
        self.assertEqual(j["runtime"], {"version": 1, "targets": [], "weights": []})

    def test_reload_ok_and_rejected(self):
        r = ok_json(api(self.lb, "POST", "/api/v1/reload"))
        self.assertEqual(r, {"generation": 2})
        good = open(self.lb.config_path).read()
        self.lb.write_config(good[:len(good) // 2])   # cut in the middle: a syntax error
        r = api(self.lb, "POST", "/api/v1/reload")
        j = ok_json(r, 400)
        self.assertIn("ringlb.yaml", j["error"])
        self.assertTrue(j["errors"])
        # the running configuration stays
        self.assertEqual(ok_json(api(self.lb, "GET", "/api/v1/config"))["generation"], 2)
        self.assertEqual(h.http(self.lb.port(), "GET", "/").header("X-Backend"), "A")
        # a semantically invalid file too (unknown key), with FILE:LINE:COL
        cfg = json.loads(good)
        cfg["listeners"][0]["bogus"] = 1
        self.lb.write_config(json.dumps(cfg))
        j = ok_json(api(self.lb, "POST", "/api/v1/reload"), 400)
        self.assertRegex(j["error"], r"ringlb\.yaml:\d+:\d+: .*bogus")
        self.lb.write_config(good)
        self.assertEqual(ok_json(api(self.lb, "POST", "/api/v1/reload")), {"generation": 3})

    def test_register_and_deregister(self):
        c = self.backend("C")
        path = "/api/v1/target-groups/ga/targets"
        # port defaults to the group's port (80 in these configs)
        g = ok_json(api(self.lb, "POST", path, {"targets": [{"id": "127.0.0.1"}]}))
        self.assertIn(80, [t["port"] for t in g["targets"]])
        ok_json(api(self.lb, "POST", path + "/deregister", {"targets": [{"id": "127.0.0.1"}]}))
        for _ in range(2):   # idempotent
            g = ok_json(api(self.lb, "POST", path, reg_body(c)))
            self.assertEqual(g["name"], "ga")
            self.assertEqual(sorted(t["port"] for t in g["targets"] if t["state"] != "draining"),
                             sorted([self.a.port, c.port]))
        self.assertEqual(targets_of(self.lb, "ga")[c.port], "unavailable")
        h.wait_for(lambda: {"A", "C"} <= set(split(self.lb.port(), 4)), 5,
                   what="traffic on the registered target")
        for _ in range(2):
            ok_json(api(self.lb, "POST", path + "/deregister", reg_body(c)))
            st = targets_of(self.lb, "ga").get(c.port)
            self.assertIn(st, ("draining", None))
        h.wait_for(lambda: c.port not in targets_of(self.lb, "ga"), 10,
                   what="the deregistered target to go after its delay")
        self.assertEqual(set(split(self.lb.port(), 4)), {"A"})
        # a file target can be deregistered too; unknown targets are fine (idempotent)
        ok_json(api(self.lb, "POST", "/api/v1/target-groups/gb/targets/deregister",
                    {"targets": [{"id": "127.0.0.1", "port": 1}]}))
        # the runtime view in GET /api/v1/config
        rt = ok_json(api(self.lb, "GET", "/api/v1/config"))["runtime"]["targets"]
        self.assertIn({"target_group": "ga", "id": "127.0.0.1", "port": c.port,
                       "registered": False}, rt)

    def test_register_errors(self):
        path = "/api/v1/target-groups/ga/targets"
        r = api(self.lb, "POST", "/api/v1/target-groups/nope/targets", reg_body(self.a))
        self.assertIn("nope", ok_json(r, 404)["error"])
        r = api(self.lb, "POST", "/api/v1/target-groups/nope/targets/deregister",
                reg_body(self.a))
        ok_json(r, 404)
        bad = [b"", b"{", b"[]", b"{\"targets\": 1}", b"{\"targets\": []}", b"nonsense",
               b"{\"targets\": [{}]}", b"{\"targets\": [{\"id\": \"example.com\"}]}",
               b"{\"targets\": [{\"id\": \"127.0.0.1\", \"port\": 0}]}",
               b"{\"targets\": [{\"id\": \"127.0.0.1\", \"port\": 70000}]}",
               b"{\"targets\": [{\"id\": \"127.0.0.1\", \"port\": \"80\"}]}",
               b"{\"targets\": [{\"id\": 127}]}",
               b"{\"targets\": [{\"id\": \"127.0.0.1\", \"zone\": \"a\"}]}",
               b"{\"targets\": [\"127.0.0.1:80\"]}", b"{\"target\": []}",
               b"{\"targets\": [{\"id\": \"127.0.0.1\"}]} trailing"]
        for body in bad:
            for p in (path, path + "/deregister"):
                r = api(self.lb, "POST", p, raw_body=body)
                self.assertEqual(r.status, 400, f"{p} {body!r}: {r!r}")
                self.assertIsInstance(ok_json(r, 400)["error"], str)
        self.assertEqual(set(targets_of(self.lb, "ga")), {self.a.port})

    def test_rules(self):
        r = api(self.lb, "GET", "/api/v1/listeners")
        self.assertEqual([l["name"] for l in ok_json(r)["listeners"]], ["main"])
        j = ok_json(api(self.lb, "GET", "/api/v1/listeners/main/rules"))
        self.assertEqual(j["listener"], "main")
        r10, r20 = j["rules"]
        self.assertEqual(r10["priority"], 10)
        self.assertEqual(r10["conditions"], {"path_pattern": ["/split*"]})
        fw = r10["action"]["forward"]
        self.assertEqual([(g["name"], g["weight"]) for g in fw["target_groups"]],
                         [("ga", 100), ("gb", 0)])
        self.assertFalse(fw["runtime_weights"])
        self.assertNotIn("configured_target_groups", fw)
        self.assertEqual(r20["action"], {"fixed_response": {"status_code": 418,
                                                            "content_type": "text/plain",
                                                            "message_body": "tea"}})
        self.assertEqual(j["default_action"]["priority"], "default")
        self.assertEqual(j["default_action"]["action"]["forward"]["target_groups"][0]["name"],
                         "ga")
        ok_json(api(self.lb, "GET", "/api/v1/listeners/nope/rules"), 404)

    def test_weights(self):
        path = "/api/v1/listeners/main/rules/10/forward"
        body = {"target_groups": [{"name": "ga", "weight": 30}, {"name": "gb", "weight": 70}]}
        j = ok_json(api(self.lb, "PUT", path, body))
        fw = j["action"]["forward"]
        self.assertEqual(j["priority"], 10)
        self.assertTrue(fw["runtime_weights"])
        self.assertEqual([(g["name"], g["weight"]) for g in fw["target_groups"]],
                         [("ga", 30), ("gb", 70)])
        self.assertEqual(fw["configured_target_groups"],
                         [{"name": "ga", "weight": 100}, {"name": "gb", "weight": 0}])
        rules = ok_json(api(self.lb, "GET", "/api/v1/listeners/main/rules"))["rules"]
        self.assertTrue(rules[0]["action"]["forward"]["runtime_weights"])
        # any existing group may be named; a single group works
        j = ok_json(api(self.lb, "PUT", path, {"target_groups": [{"name": "gb", "weight": 5}]}))
        self.assertEqual(j["action"]["forward"]["target_groups"],
                         [{"name": "gb", "weight": 5, "share": 1}])
        self.assertEqual(set(split(self.lb.port(), 4, "/split")), {"B"})
        # the default action
        j = ok_json(api(self.lb, "PUT", "/api/v1/listeners/main/rules/default/forward",
                        {"target_groups": [{"name": "gb", "weight": 1}]}))
        self.assertEqual(j["priority"], "default")
        self.assertEqual(set(split(self.lb.port(), 4, "/other")), {"B"})
        # DELETE goes back to the file's weights (idempotent)
        for _ in range(2):
            j = ok_json(api(self.lb, "DELETE", "/api/v1/listeners/main/rules/default/forward"))
            self.assertFalse(j["action"]["forward"]["runtime_weights"])
        self.assertEqual(set(split(self.lb.port(), 4, "/other")), {"A"})
        rt = ok_json(api(self.lb, "GET", "/api/v1/config"))["runtime"]["weights"]
        self.assertEqual(rt, [{"listener": "main", "priority": 10,
                               "target_groups": [{"name": "gb", "weight": 5}]}])

    def test_weights_errors(self):
        path = "/api/v1/listeners/main/rules/10/forward"
        good = {"target_groups": [{"name": "ga", "weight": 1}]}
        for p in ("/api/v1/listeners/nope/rules/10/forward",
                  "/api/v1/listeners/main/rules/11/forward",
                  "/api/v1/listeners/main/rules/0/forward",
                  "/api/v1/listeners/main/rules/x/forward",
                  "/api/v1/listeners/main/rules/010/forward"):
            self.assertEqual(api(self.lb, "PUT", p, good).status, 404, p)
        r = api(self.lb, "PUT", "/api/v1/listeners/main/rules/20/forward", good)
        self.assertIn("not a forward", ok_json(r, 409)["error"])
        ok_json(api(self.lb, "DELETE", "/api/v1/listeners/main/rules/20/forward"), 409)
        bad = [{"target_groups": [{"name": "ga", "weight": 1000}]},
               {"target_groups": [{"name": "ga", "weight": -1}]},
               {"target_groups": [{"name": "ga", "weight": 1.5}]},
               {"target_groups": [{"name": "ga", "weight": "50"}]},
               {"target_groups": [{"name": "ga"}]},
               {"target_groups": [{"name": "ga", "weight": 0}, {"name": "gb", "weight": 0}]},
               {"target_groups": [{"name": "nope", "weight": 1}]},
               {"target_groups": [{"name": "ga", "weight": 1}, {"name": "ga", "weight": 2}]},
               {"target_groups": []}, {"target_groups": {}}, {},
               {"target_groups": [{"name": "ga", "weight": 1, "extra": 1}]}]
        for body in bad:
            r = api(self.lb, "PUT", path, body)
            self.assertEqual(r.status, 400, f"{body}: {r!r}")
            self.assertIn("error", ok_json(r, 400))
        for raw in (b"", b"{", b"{\"target_groups\": [}", b"\xff\xfe"):
            self.assertEqual(api(self.lb, "PUT", path, raw_body=raw).status, 400, raw)
        fw = ok_json(api(self.lb, "GET", "/api/v1/listeners/main/rules"))["rules"][0]
        self.assertFalse(fw["action"]["forward"]["runtime_weights"])

    def test_body_limits(self):
        path = "/api/v1/target-groups/ga/targets"
        # announced too big: answered at once, before the body
        with h.Conn(self.lb.admin_port) as c:
            c.request("POST", path, headers=[("Content-Length", str(2 * 1024 * 1024))])
            r = c.read_response()
            self.assertIn("1 MiB", ok_json(r, 413)["error"])
        # a whole 2 MiB body sent anyway: still a clean 413
        big = b"{\"targets\": [" + b" " * (2 * 1024 * 1024) + b"]}"
        r = h.send_raw(self.lb.admin_port, h.build_request("POST", path, body=big))
        ok_json(r, 413)
        # chunked beyond 1 MiB
        r = h.send_raw(self.lb.admin_port, h.build_request(
            "POST", path, headers=[("Transfer-Encoding", "chunked")],
            body=h.chunked_body([b" " * 600000, b" " * 600000])))
        ok_json(r, 413)
        # just under the limit is parsed (and rejected as JSON, not as too large)
        body = b"{\"targets\": [" + b" " * (1024 * 1024 - 20) + b"]}"
        self.assertLessEqual(len(body), 1024 * 1024)
        r = api(self.lb, "POST", path, raw_body=body)
        self.assertEqual(r.status, 400)
        # Expect: 100-continue gets its interim answer, then the final one
        with h.Conn(self.lb.admin_port) as c:
            payload = json.dumps(reg_body(self.a)).encode()
            c.request("POST", path, headers=[("Expect", "100-continue"),
                                             ("Content-Length", str(len(payload)))])
            r = c.read_response(skip_interim=False)
            self.assertEqual(r.status, 100)
            c.send(payload)
            self.assertEqual(c.read_response().status, 200)
        # malformed HTTP
        r = h.send_raw(self.lb.admin_port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        ok_json(r, 400)
        # the server is still fine, and keep-alive works for several requests
        with h.Conn(self.lb.admin_port) as c:
            for _ in range(3):
                self.assertEqual(c.roundtrip("GET", "/healthz").status, 200)


# ---------------------------------------------------------------------------------------------
# token

class TestToken(h.RingTestCase):

    def test_token_required(self):
        a = self.backend("A")
        tmp = tempfile.mkdtemp(prefix="ringlb-token-")
        self.addCleanup(shutil.rmtree, tmp, True)
        tf = os.path.join(tmp, "admin.token")
        with open(tf, "w") as f:
            f.write(f"\n  {TOKEN}  \n")
        cfg = h.config_dict(target_groups=[h.target_group("ga", [a])])
        cfg["admin"]["token_file"] = tf
        lb = start_with_token(self, json.dumps(cfg))
        paths = [("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/api/v1/config"),
                 ("GET", "/api/v1/target-groups"), ("GET", "/api/v1/listeners/main/rules"),
                 ("POST", "/api/v1/reload"), ("GET", "/nope"), ("GET", "/")]
        for method, path in paths:
            for tok in (None, "wrong", TOKEN + "x", TOKEN[:-1], f" {TOKEN}x"):
                r = api(lb, method, path, token=tok)
                self.assertEqual(r.status, 401, f"{method} {path} token={tok!r}")
                self.assertIn("error", ok_json(r, 401))
                self.assertTrue(r.header("WWW-Authenticate", "").startswith("Bearer"))
            r = api(lb, method, path, headers=[("Authorization", f"Basic {TOKEN}")])
            self.assertEqual(r.status, 401)
        self.assertEqual(api(lb, "GET", "/healthz", token=TOKEN).status, 200)
        self.assertEqual(api(lb, "GET", "/healthz",
                             headers=[("Authorization", f"bearer {TOKEN}")]).status, 200)
        ok_json(api(lb, "GET", "/api/v1/config", token=TOKEN))
        ok_json(api(lb, "POST", "/api/v1/reload", token=TOKEN))
        ok_json(api(lb, "POST", "/api/v1/target-groups/ga/targets", reg_body(a), token=TOKEN))
        # the dashboard page takes ?token= (GET / only)
        self.assertNotEqual(api(lb, "GET", f"/?token={TOKEN}").status, 401)
        self.assertEqual(api(lb, "GET", "/?token=wrong").status, 401)
        self.assertEqual(api(lb, "GET", f"/healthz?token={TOKEN}").status, 401)
        self.assertEqual(api(lb, "POST", f"/?token={TOKEN}").status, 401)
        # the token is never logged
        self.assertNotIn(TOKEN, lb.stderr)
        # a new token file content takes effect at reload
        with open(tf, "w") as f:
            f.write("next-token\n")
        ok_json(api(lb, "POST", "/api/v1/reload", token=TOKEN))
        self.assertEqual(api(lb, "GET", "/healthz", token=TOKEN).status, 401)
        self.assertEqual(api(lb, "GET", "/healthz", token="next-token").status, 200)
        # an empty token file rejects the reload, the old token stays
        with open(tf, "w") as f:
            f.write("  \n")
        j = ok_json(api(lb, "POST", "/api/v1/reload", token="next-token"), 400)
        self.assertIn("empty", j["error"])
        self.assertEqual(api(lb, "GET", "/healthz", token="next-token").status, 200)

    def test_token_file_problems_at_start_and_non_loopback(self):
        tmp = tempfile.mkdtemp(prefix="ringlb-token-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = h.config_dict()
        cfg["admin"]["token_file"] = os.path.join(tmp, "missing")
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w") as f:
            f.write(json.dumps(cfg))
        p = h.run([h.RINGLB_BIN, "-c", path, "--threads", "1"], timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("token_file", p.stderr)
        # binding a non-loopback admin address requires a token file
        cfg = h.config_dict(admin={"listen": f"0.0.0.0:{h.free_port()}"})
        with open(path, "w") as f:
            f.write(json.dumps(cfg))
        p = h.run([h.RINGLB_BIN, "check", "-c", path])
        self.assertEqual(p.returncode, 2)
        self.assertIn("requires admin.token_file", p.stdout + p.stderr)


# ---------------------------------------------------------------------------------------------
# under load

class TestUnderLoad(h.RingTestCase):

    def _load(self, port, path="/"):
        ld = Load(port, path)
        ld.start()
        self.addCleanup(ld.stop)
        ld.wait_requests(20)
        return ld

    def test_register_under_load(self):
        a, b = self.backend("A"), self.backend("B")
        hc = {"enabled": True, "path": "/health", "interval": "200ms", "timeout": "150ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}
        cfg = h.make_config(target_groups=[h.target_group("ga", [a], health_check=hc)])
        lb = self.ringlb(cfg)
        h.wait_for(lambda: targets_of(lb, "ga")[a.port] == "healthy", 10, what="A healthy")
        ld = self._load(lb.port())
        ok_json(api(lb, "POST", "/api/v1/target-groups/ga/targets", reg_body(b)))
        h.wait_for(lambda: targets_of(lb, "ga")[b.port] == "healthy", 10, what="B healthy")
        h.wait_for(lambda: ld.by_backend["B"] >= 20, 20, what="traffic on the new target")
        ld.wait_requests(50)
        ld.stop()
        self.assertEqual(ld.failures, [])
        self.assertGreater(ld.by_backend["A"], 0)

    def test_deregister_under_load(self):
        a, b = self.backend("A"), self.backend("B")
        cfg = h.make_config(target_groups=[h.target_group("ga", [a, b],
                                                          deregistration_delay="2s")])
        lb = self.ringlb(cfg)
        lds = [self._load(lb.port()) for _ in range(3)]
        h.wait_for(lambda: all(ld.by_backend["B"] > 5 for ld in lds), 10,
                   what="traffic on both targets")
        ok_json(api(lb, "POST", "/api/v1/target-groups/ga/targets/deregister", reg_body(b)))
        self.assertEqual(targets_of(lb, "ga")[b.port], "draining")
        before = [ld.by_backend["B"] for ld in lds]
        for ld in lds:
            ld.wait_requests(30)
        # no new request reaches the draining target (one in flight may finish)
        self.assertTrue(all(ld.by_backend["B"] - n <= 1 for ld, n in zip(lds, before)),
                        [(ld.by_backend, n) for ld, n in zip(lds, before)])
        h.wait_for(lambda: b.port not in targets_of(lb, "ga"), 10, what="B removed")
        for ld in lds:
            ld.wait_requests(30)
            ld.stop()
            self.assertEqual(ld.failures, [])

    def test_weight_shift_under_load(self):
        a, b = self.backend("A"), self.backend("B")
        lb = self.ringlb(two_group_config(a, b, 100, 0), threads=1)
        ld = self._load(lb.port(), "/split")
        path = "/api/v1/listeners/main/rules/10/forward"
        for wa, wb in ((100, 0), (50, 50), (0, 100)):
            ld.resume()
            ld.wait_requests(20)
            j = ok_json(api(lb, "PUT", path, {"target_groups": [{"name": "ga", "weight": wa},
                                                                {"name": "gb", "weight": wb}]}))
            self.assertEqual([g["weight"] for g in j["action"]["forward"]["target_groups"]],
                             [wa, wb])
            ld.wait_requests(20)       # the change under load
            ld.pause()
            split(lb.port(), 2, "/split")  # the worker has taken the new snapshot
            got = split(lb.port(), 100, "/split")
            self.assertEqual((got["A"], got["B"]), (wa, wb), f"weights {wa}/{wb}: {got}")
        ld.resume()
        ld.wait_requests(20)
        ld.stop()
        self.assertEqual(ld.failures, [])
        self.assertGreater(ld.by_backend["A"], 0)
        self.assertGreater(ld.by_backend["B"], 0)

    def test_twenty_reloads_under_wrk(self):
        a, b = self.backend("A"), self.backend("B")
        tmp = tempfile.mkdtemp(prefix="ringlb-state-")
        self.addCleanup(shutil.rmtree, tmp, True)
        state = os.path.join(tmp, "state.json")
        lb = self.ringlb(two_group_config(a, b, 50, 50, state_file=state))
        ok_json(api(lb, "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "ga", "weight": 1}, {"name": "gb", "weight": 3}]}))
        wrk = shutil.which("wrk")
        url = f"http://127.0.0.1:{lb.port()}/split"
        proc = None
        ld = None
        if wrk:
            proc = h.spawn([wrk, "-t2", "-c8", "-d120s", url], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        else:
            ld = self._load(lb.port(), "/split")
        time.sleep(0.3)
        gens = []
        for i in range(20):
            if i % 2 == 0:
                gens.append(ok_json(api(lb, "POST", "/api/v1/reload"))["generation"])
            else:
                before = ok_json(api(lb, "GET", "/api/v1/config"))["generation"]
                lb.reload()
                h.wait_for(lambda: ok_json(api(lb, "GET", "/api/v1/config"))["generation"]
                           > before, 10, what="SIGHUP reload")
            time.sleep(0.05)
        self.assertEqual(len(set(gens)), 10)
        if proc:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
            self.assertIn("requests in", out, out)
            self.assertNotIn("Socket errors", out, out)
            self.assertNotIn("Non-2xx", out, out)
            m = re.search(r"(\d+) requests in", out)
            self.assertGreater(int(m.group(1)), 0, out)
        else:
            ld.wait_requests(20)
            ld.stop()
            self.assertEqual(ld.failures, [])
        # the runtime weights survived all of it
        fw = ok_json(api(lb, "GET", "/api/v1/listeners/main/rules"))["rules"][0]["action"]
        self.assertEqual([g["weight"] for g in fw["forward"]["target_groups"]], [1, 3])


# ---------------------------------------------------------------------------------------------
# state_file and reloads

class TestState(h.RingTestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ringlb-state-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.state = os.path.join(self.tmp, "state.json")

    def test_restart_keeps_runtime_changes(self):
        a, b, c = self.backend("A"), self.backend("B"), self.backend("C")
        text = two_group_config(a, b, 100, 0, state_file=self.state, deregistration_delay="0s")
        lb = self.ringlb(text, threads=1)
        ok_json(api(lb, "POST", "/api/v1/target-groups/ga/targets", reg_body(c)))
        ok_json(api(lb, "POST", "/api/v1/target-groups/ga/targets/deregister", reg_body(a)))
        ok_json(api(lb, "PUT", "/api/v1/listeners/main/rules/10/forward",
                    {"target_groups": [{"name": "ga", "weight": 1}, {"name": "gb", "weight": 1}]}))
        with open(self.state) as f:
            st = json.load(f)
        self.assertEqual(st["version"], 1)
        self.assertEqual(len(st["targets"]), 2)
        self.assertEqual(len(st["weights"]), 1)
        self.assertFalse([n for n in os.listdir(self.tmp) if n != "state.json"])  # no temp left
        lb.stop()
        lb2 = self.ringlb(text, threads=1)          # same ports, same state_file
        self.assertEqual(set(targets_of(lb2, "ga")), {c.port})
        fw = ok_json(api(lb2, "GET", "/api/v1/listeners/main/rules"))["rules"][0]["action"]
        self.assertTrue(fw["forward"]["runtime_weights"])
        got = split(lb2.port(), 10, "/split")
        self.assertEqual(got, {"C": 5, "B": 5})
        self.assertEqual(set(split(lb2.port(), 4, "/")), {"C"})
        self.assertIn("restored", lb2.stderr)

    def test_corrupt_state_file_set_aside(self):
        a, b = self.backend("A"), self.backend("B")
        for content in ("{not json", '{"version": 1, "targets": [{"target_group": "ga"}]}',
                        '{"version": 7}', '[1, 2]', '{"version": 1, "weights": [{"listener": '
                        '"main", "priority": 10, "target_groups": [{"name": "ga", "weight": 0}]'
                        '}]}'):
            with open(self.state, "w") as f:
                f.write(content)
            lb = self.ringlb(two_group_config(a, b, state_file=self.state))
            self.assertIn("corrupt", lb.stderr)
            aside = [n for n in os.listdir(self.tmp) if n.startswith("state.json.corrupt-")]
            self.assertEqual(len(aside), 1, os.listdir(self.tmp))
            with open(os.path.join(self.tmp, aside[0])) as f:
                self.assertEqual(f.read(), content)
            self.assertFalse(os.path.exists(self.state))
            self.assertEqual(set(targets_of(lb, "ga")), {a.port})   # started without it
            # and works normally afterwards
            ok_json(api(lb, "POST", "/api/v1/target-groups/gb/targets", reg_body(a)))
            self.assertTrue(os.path.exists(self.state))
            lb.stop()
            os.unlink(os.path.join(self.tmp, aside[0]))
            os.unlink(self.state)

    def test_weights_across_reloads(self):
        a, b = self.backend("A"), self.backend("B")
        text = two_group_config(a, b, 100, 0, state_file=self.state)
        lb = self.ringlb(text, threads=1)
        path = "/api/v1/listeners/main/rules/10/forward"
        ok_json(api(lb, "PUT", path, {"target_groups": [{"name": "ga", "weight": 0},
                                                        {"name": "gb", "weight": 1}]}))
        lb.reload()                                 # SIGHUP: same rule, weights stay
        ok_json(api(lb, "POST", "/api/v1/reload"))  # API reload
        self.assertEqual(set(split(lb.port(), 6, "/split")), {"B"})
        # the file's weights change: runtime weights still win while the rule exists
        cfg = json.loads(text)
        cfg["listeners"][0]["rules"][0]["action"]["forward"]["target_groups"][0]["weight"] = 7
        lb.write_config(json.dumps(cfg))
        ok_json(api(lb, "POST", "/api/v1/reload"))
        self.assertEqual(set(split(lb.port(), 6, "/split")), {"B"})
        # the rule becomes a fixed response: the runtime weights are dropped, also from the file
        cfg["listeners"][0]["rules"][0]["action"] = h.fixed_response(200, "fixed")
        lb.write_config(json.dumps(cfg))
        ok_json(api(lb, "POST", "/api/v1/reload"))
        self.assertIn("dropped", lb.stderr)
        with open(self.state) as f:
            self.assertEqual(json.load(f)["weights"], [])
        # back to a forward: the file's weights
        lb.write_config(text)
        ok_json(api(lb, "POST", "/api/v1/reload"))
        self.assertEqual(set(split(lb.port(), 6, "/split")), {"A"})


if __name__ == "__main__":
    h.main()
