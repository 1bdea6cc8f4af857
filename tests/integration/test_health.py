"""Active health checks and target states, black box: state transitions with the ALB reason
codes as GET /api/v1/target-groups shows them (killed and restarted target, 500 answers,
timeouts, nothing listening, checks disabled, the initial state), reloads (a new target is
checked at once, a removed one drains, then disappears), what a check request looks like
(sent straight to the target, never through the proxy path), routing away from an unhealthy
target, and the admin endpoints' errors (404, 405).

SPEC sections 4 (targets and health) and 5 (GET /api/v1/target-groups[/{tg}]).
Waits are polls with deadlines: a transition must be seen within the SPEC's bound
(threshold x interval + 1 s) plus SLACK for loaded (sanitizer, parallel ctest) machines.
Run: python3 tests/integration/test_health.py [TestClass.test_name ...]
"""

import http.server
import json
import os
import signal
import subprocess
import threading
import time

import harness as h

INTERVAL = 0.2          # seconds; health_check.interval in most tests
SLACK = 1.5             # extra seconds on top of the SPEC bounds, for loaded machines


def hc(path="/health", interval="200ms", timeout="150ms", healthy=2, unhealthy=2, **kw):
    d = {"enabled": True, "path": path, "interval": interval, "timeout": timeout,
         "healthy_threshold": healthy, "unhealthy_threshold": unhealthy}
    d.update(kw)
    return d


def admin_get(lb, path):
    return h.http(lb.admin_port, "GET", path, headers=[("Connection", "close")])


def groups(lb):
    r = admin_get(lb, "/api/v1/target-groups")
    if r.status != 200:
        raise AssertionError(f"GET /api/v1/target-groups: {r.status} {r.body[:300]!r}")
    return {g["name"]: g for g in r.json()["target_groups"]}


def find_target(lb, group, port):
    """The target entry of group with this port, or None."""
    for t in groups(lb)[group]["targets"]:
        if t["port"] == port:
            return t
    return None


def wait_target(lb, group, port, state, timeout, reason=None):
    """Poll until the target is in `state` (and `reason` when given); returns its entry."""
    seen = []

    def check():
        t = find_target(lb, group, port)
        seen.append(t)
        if t and t["state"] == state and (reason is None or t["reason"] == reason):
            return t
        return None

    try:
        return h.wait_for(check, timeout=timeout, interval=0.02,
                          what=f"{group} target :{port} -> {state} ({reason})")
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen {seen[-1] if seen else None}\n"
                             f"{lb.stderr_tail()}") from None


def start_backend_on(port, name, timeout=15.0):
    """Start rlb-backend on 127.0.0.1:port, retrying while the port is still busy (the backend
    refuses to start then)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        argv = [h.RINGLB_BACKEND, "--listen", f"{h.LOCALHOST}:{port}", "--name", name]
        proc = h.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        want = f"listening {h.LOCALHOST}:{port}"
        ready = threading.Event()
        lines = []

        def pump(stream, is_stdout):
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if is_stdout and line.strip() == want:
                    ready.set()
            stream.close()

        threading.Thread(target=pump, args=(proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, False), daemon=True).start()
        while time.monotonic() < deadline:
            if ready.wait(0.05):
                return h.Backend(proc, port, name)
            if proc.poll() is not None:
                break
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        last = "\n".join(lines[-5:])
        time.sleep(0.1)
    raise AssertionError(f"rlb-backend could not start on port {port}: {last}")


class Recorder:
    """A small HTTP server (thread) recording every request: (method, path, headers dict with
    lowercased names). /health answers `health_status`; anything else 200 "recorder"."""

    def __init__(self, health_status=200):
        self.requests = []
        self.health_status = health_status
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with rec.lock:
                    rec.requests.append((self.command, self.path,
                                         {k.lower(): v for k, v in self.headers.items()}))
                status = rec.health_status if self.path == "/health" else 200
                body = b"recorder\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", "recorder")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((h.LOCALHOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class HealthStates(h.RingTestCase):

    def test_killed_target_goes_unhealthy_and_comes_back(self):
        b = self.backend("hb")
        port = b.port
        cfg = h.make_config(target_groups=[h.target_group("tg", [b], health_check=hc())])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", port, "healthy", 2 * INTERVAL + 1 + SLACK)
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(timeout=5)
        t = wait_target(lb, "tg", port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                        "Target.FailedHealthChecks")
        self.assertEqual(t["id"], "127.0.0.1")
        self.assertEqual(t["description"], "Health checks failed")
        b2 = start_backend_on(port, "hb2")
        self.addCleanup(b2.stop)
        t = wait_target(lb, "tg", port, "healthy", 2 * INTERVAL + 1 + SLACK)
        self.assertIsNone(t["reason"])
        r = h.http(lb.port(), "GET", "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend"), "hb2")

    def test_response_code_mismatch(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(path="/health/fail"))])
        lb = self.ringlb(cfg)
        t = wait_target(lb, "tg", b.port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                        "Target.ResponseCodeMismatch")
        self.assertEqual(t["description"], "Health checks failed with these codes: [500]")

    def test_matcher_range_accepts_code(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(path="/status/204", matcher="200-299"))])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", b.port, "healthy", 2 * INTERVAL + 1 + SLACK)

    def test_timeout(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(path="/sleep/2000", interval="300ms",
                                                     timeout="100ms"))])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", b.port, "unhealthy", 2 * 0.3 + 1 + SLACK, "Target.Timeout")

    def test_nothing_listening(self):
        port = h.free_port()
        cfg = h.make_config(target_groups=[h.target_group("tg", [port], health_check=hc())])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                    "Target.FailedHealthChecks")

    def test_checks_disabled(self):
        b = self.backend("hd")
        cfg = h.make_config(target_groups=[h.target_group("tg", [b])])  # enabled: false
        lb = self.ringlb(cfg)
        t = find_target(lb, "tg", b.port)
        self.assertEqual((t["state"], t["reason"]), ("unavailable", "Target.HealthCheckDisabled"))
        self.assertEqual(groups(lb)["tg"]["health_check"]["enabled"], False)
        # no check ever reaches the backend; traffic does (unavailable targets are routed to)
        d = b.stats_delta(lambda: time.sleep(0.5))
        self.assertEqual(d["requests"], 0)
        self.assertEqual(h.http(lb.port(), "GET", "/").header("X-Backend"), "hd")

    def test_initial_state_before_first_result(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(path="/sleep/1500", interval="5s",
                                                     timeout="3s"))])
        lb = self.ringlb(cfg)
        t = find_target(lb, "tg", b.port)
        self.assertEqual((t["state"], t["reason"]), ("initial", "Elb.InitialHealthChecking"))
        self.assertEqual(t["description"], "Initial health checks in progress")
        # the first check runs at once (not one 5 s interval later): healthy after ~1.5 s
        wait_target(lb, "tg", b.port, "healthy", 1.5 + 1 + SLACK)

    def test_ipv6_target(self):
        b = self.backend("v6", host="::1")
        cfg = h.make_config(target_groups=[h.target_group("tg", [b], health_check=hc())])
        lb = self.ringlb(cfg)
        t = wait_target(lb, "tg", b.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        self.assertEqual(t["id"], "::1")

    def test_health_check_port_override(self):
        rec = Recorder(health_status=500)
        self.addCleanup(rec.stop)
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(port=rec.port))])
        lb = self.ringlb(cfg)
        # the traffic port answers /health with 200, the health-check port with 500
        wait_target(lb, "tg", b.port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                    "Target.ResponseCodeMismatch")
        self.assertEqual(groups(lb)["tg"]["health_check"]["port"], rec.port)


class CheckRequests(h.RingTestCase):

    def test_request_shape_and_not_through_proxy(self):
        rec = Recorder()
        self.addCleanup(rec.stop)
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [rec.port], health_check=hc(path="/health"))])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", rec.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        h.wait_for(lambda: len(rec.snapshot()) >= 3, timeout=3 * INTERVAL + 1 + SLACK,
                   what="three health checks")
        reqs = rec.snapshot()
        for method, path, hdrs in reqs:
            self.assertEqual(method, "GET")
            self.assertEqual(path, "/health")
            self.assertEqual(hdrs.get("user-agent"), "ELB-HealthChecker/2.0")
            self.assertEqual(hdrs.get("host"), f"127.0.0.1:{rec.port}")
            self.assertEqual(hdrs.get("connection", "").lower(), "close")
            # straight from the health checker, not through the proxy path
            self.assertNotIn("x-forwarded-for", hdrs)
            self.assertNotIn("x-amzn-trace-id", hdrs)
        # and a proxied request does carry the proxy's headers
        r = h.http(lb.port(), "GET", "/proxied")
        self.assertEqual(r.status, 200)
        proxied = [x for x in rec.snapshot() if x[1] == "/proxied"]
        self.assertEqual(len(proxied), 1)
        self.assertIn("x-forwarded-for", proxied[0][2])
        self.assertNotEqual(proxied[0][2].get("user-agent"), "ELB-HealthChecker/2.0")

    def test_checks_follow_the_interval(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [b], health_check=hc(interval="200ms"))])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", b.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        d = b.stats_delta(lambda: time.sleep(1.0))
        # one check per 200 ms: about 5 in one second; loose bounds (no timing assertion)
        self.assertGreaterEqual(d["requests"], 2, d)
        self.assertLessEqual(d["requests"], 9, d)
        self.assertEqual(d["requests"], d["connections"], "one fresh connection per check")

    def test_unhealthy_target_gets_no_traffic(self):
        good = self.backend("good")
        bad = Recorder(health_status=503)
        self.addCleanup(bad.stop)
        cfg = h.make_config(target_groups=[
            h.target_group("tg", [good, bad.port], health_check=hc())])
        lb = self.ringlb(cfg)
        wait_target(lb, "tg", good.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        wait_target(lb, "tg", bad.port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                    "Target.ResponseCodeMismatch")
        seen = set()
        for _ in range(10):
            r = h.http(lb.port(), "GET", "/")
            self.assertEqual(r.status, 200)
            seen.add(r.header("X-Backend"))
        self.assertEqual(seen, {"good"})


class Reload(h.RingTestCase):

    def test_reload_adds_and_removes_targets(self):
        b1 = self.backend("r1")
        b2 = self.backend("r2")
        tg = lambda targets, **kw: h.target_group("tg", targets, health_check=hc(), **kw)
        cfgd = h.config_dict(target_groups=[tg([b1], deregistration_delay="1s")])
        lb = self.ringlb(json.dumps(cfgd))
        wait_target(lb, "tg", b1.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        # add b2: checked at once after the reload
        cfgd["target_groups"] = [tg([b1, b2], deregistration_delay="1s")]
        lb.write_config(json.dumps(cfgd))
        lb.reload()
        wait_target(lb, "tg", b2.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        self.assertEqual(find_target(lb, "tg", b1.port)["state"], "healthy")  # kept its state
        # remove b1: it drains for deregistration_delay, then disappears
        cfgd["target_groups"] = [tg([b2], deregistration_delay="1s")]
        lb.write_config(json.dumps(cfgd))
        lb.reload()
        wait_target(lb, "tg", b1.port, "draining", 2 + SLACK,
                    "Target.DeregistrationInProgress")
        for _ in range(4):
            self.assertEqual(h.http(lb.port(), "GET", "/").header("X-Backend"), "r2")
        h.wait_for(lambda: find_target(lb, "tg", b1.port) is None, timeout=1 + 1 + SLACK,
                   what="drained target removed")
        self.assertEqual(find_target(lb, "tg", b2.port)["state"], "healthy")
        # while draining is over, no more checks reach b1
        d = b1.stats_delta(lambda: time.sleep(0.6))
        self.assertEqual(d["requests"], 0)

    def test_reload_changes_health_settings(self):
        b = self.backend()
        cfgd = h.config_dict(target_groups=[h.target_group("tg", [b], health_check=hc())])
        lb = self.ringlb(json.dumps(cfgd))
        wait_target(lb, "tg", b.port, "healthy", 2 * INTERVAL + 1 + SLACK)
        # new path answering 500: goes unhealthy with the new settings
        cfgd["target_groups"] = [h.target_group("tg", [b], health_check=hc(path="/health/fail"))]
        lb.write_config(json.dumps(cfgd))
        lb.reload()
        wait_target(lb, "tg", b.port, "unhealthy", 2 * INTERVAL + 1 + SLACK,
                    "Target.ResponseCodeMismatch")
        # checks disabled: unavailable
        cfgd["target_groups"] = [h.target_group("tg", [b])]
        lb.write_config(json.dumps(cfgd))
        lb.reload()
        wait_target(lb, "tg", b.port, "unavailable", 2 + SLACK, "Target.HealthCheckDisabled")
        # enabled again: initial, then healthy
        cfgd["target_groups"] = [h.target_group("tg", [b], health_check=hc())]
        lb.write_config(json.dumps(cfgd))
        lb.reload()
        wait_target(lb, "tg", b.port, "healthy", 2 + 2 * INTERVAL + 1 + SLACK)


class AdminEndpoints(h.RingTestCase):

    def test_one_group_unknown_group_and_methods(self):
        b = self.backend()
        cfg = h.make_config(target_groups=[
            h.target_group("api-blue", [b], health_check=hc(matcher="200,202"),
                           algorithm="least_outstanding_requests"),
            h.target_group("api-green", [b])])
        lb = self.ringlb(cfg)
        r = admin_get(lb, "/api/v1/target-groups/api-blue")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Content-Type").startswith("application/json"))
        g = r.json()
        self.assertEqual(g["name"], "api-blue")
        self.assertEqual(g["algorithm"], "least_outstanding_requests")
        self.assertEqual(g["health_check"]["matcher"], "200,202")
        self.assertEqual(g["health_check"]["path"], "/health")
        self.assertEqual(g["health_check"]["port"], "traffic-port")
        self.assertEqual(g["health_check"]["interval_ms"], 200)
        self.assertEqual(g["health_check"]["healthy_threshold"], 2)
        self.assertEqual(len(g["targets"]), 1)
        t = g["targets"][0]
        self.assertEqual((t["id"], t["port"]), ("127.0.0.1", b.port))
        self.assertIn(t["state"], ("initial", "healthy"))
        self.assertEqual(t["in_flight"], 0)
        self.assertEqual(set(groups(lb)), {"api-blue", "api-green"})
        r = admin_get(lb, "/api/v1/target-groups/nope")
        self.assertEqual(r.status, 404)
        self.assertIn("error", r.json())
        for method in ("POST", "PUT", "DELETE"):
            r = h.http(lb.admin_port, method, "/api/v1/target-groups",
                       headers=[("Connection", "close"), ("Content-Length", "0")])
            self.assertEqual(r.status, 405, method)
            self.assertIn("error", r.json())
        r = h.http(lb.admin_port, "DELETE", "/api/v1/target-groups/api-blue",
                   headers=[("Connection", "close")])
        self.assertEqual(r.status, 405)

    def test_in_flight_count(self):
        b = self.backend("slow")
        cfg = h.make_config(target_groups=[h.target_group("tg", [b])])
        lb = self.ringlb(cfg)
        results = []
        th = threading.Thread(target=lambda: results.append(
            h.http(lb.port(), "GET", "/sleep/1500")), daemon=True)
        th.start()
        h.wait_for(lambda: find_target(lb, "tg", b.port)["in_flight"] == 1, timeout=5,
                   what="in_flight 1")
        th.join(timeout=10)
        self.assertEqual(results[0].status, 200)
        h.wait_for(lambda: find_target(lb, "tg", b.port)["in_flight"] == 0, timeout=5,
                   what="in_flight back to 0")


if __name__ == "__main__":
    h.main()
