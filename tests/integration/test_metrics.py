"""Metrics and scaling advice through the real binary (SPEC section 6).

What is tested, all against build/ringlb with real rlb-backend targets:
  - a known load (3,000 forwarded requests over two listeners, two weighted groups and three
    targets, 10 % answering 500 and some 404) plus provoked redirects, fixed responses, 503
    (a group without targets), 400 (desync Severe) and 405 (TRACE): every counter of GET
    /metrics is checked exactly as a delta against a scrape taken before the load — requests
    per (listener, group), per target (from the X-Backend header of each response), responses
    per class, the histogram's _count, LB responses per code, redirects, fixed responses, rule
    evaluations (host rules: one evaluation per routed request with a rule host), desync
    classes, new client connections, processed bytes (what the client sent and received), and
    active connections going back to 0;
  - RequestCountPerTarget over 2-second windows (metrics.window: 2s) with 3, 2, 1 and 0
    healthy targets. Health checks are enabled (100 ms interval) and targets are made unhealthy
    by stopping their backend; "healthy" is state healthy (metrics.c), and with none healthy the
    division is by the registered targets (fail-open);
  - the per-group window JSON of GET /api/v1/target-groups/{tg} under CloudWatch names;
  - health checks never move a counter;
  - scaling advice: rises under load, falls after the cooldown, the hook gets the values, GET
    /api/v1/scaling and ringlb_scaling_desired_targets agree.

Waits are bounded polls; nothing asserts on timing. A burst that should fall into one window
is retried when it straddled a window boundary.
"""

import json
import os
import re
import signal
import stat
import tempfile
import threading
import time

import harness as h

LINE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prom(text):
    """Prometheus text → {(name, frozenset(labels)): float}; also checks HELP/TYPE order."""
    out = {}
    typed = set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        m = LINE_RE.match(line)
        assert m, f"bad exposition line {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no TYPE line before it"
        key = (name, frozenset(LABEL_RE.findall(labels)))
        assert key not in out, f"duplicate series {line!r}"
        out[key] = float(value)
    return out


class Metrics:
    """One scrape of GET /metrics."""

    def __init__(self, admin_port):
        r = h.http(admin_port, "GET", "/metrics")
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r
        self.text = r.text
        self.v = parse_prom(self.text)

    def get(self, name, **labels):
        return self.v.get((name, frozenset(labels.items())), 0.0)

    def has(self, name, **labels):
        return (name, frozenset(labels.items())) in self.v

    def series(self, name):
        return {k[1]: v for k, v in self.v.items() if k[0] == name}


def delta(after, before, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)


def settled_metrics(admin_port):
    """A scrape once the connections of start-up (the harness' readiness probes) have all
    been accepted and closed: no active client connection and the same new-connection count
    in two scrapes 200 ms apart (bounded wait)."""
    last = [None]

    def settled():
        m = Metrics(admin_port)
        n = m.get("ringlb_new_connections_total", side="client")
        ok = m.get("ringlb_active_connections", side="client") == 0 and last[0] == n
        last[0] = n
        return m if ok else None

    return h.wait_for(settled, interval=0.2, what="start-up connections settled")


def admin_json(r, path):
    resp = h.http(r.admin_port, "GET", path)
    assert resp.status == 200, resp
    return resp.json()


class CountingClient:
    """Keeps count of client connections opened and bytes sent/received (ProcessedBytes)."""

    def __init__(self, port):
        self.port = port
        self.conns = 0
        self.bytes = 0

    def conn(self):
        self.conns += 1
        return h.Conn(self.port)

    def roundtrip(self, c, method, target, host, headers=()):
        data = h.build_request(method, target, list(headers), None, "HTTP/1.1", host)
        c.send(data)
        r = c.read_response(method)
        self.bytes += len(data) + len(r.raw_head) + r.body_len
        return r

    def raw(self, data):
        with self.conn() as c:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            self.bytes += len(data) + len(r.raw_head) + r.body_len
            return r


class KnownLoadTest(h.RingTestCase):

    def test_known_load_counters_exact(self):
        b1, b2, b3 = self.backend("m-b1"), self.backend("m-b2"), self.backend("m-b3")
        by_backend = {"m-b1": ("blue", b1.addr), "m-b2": ("blue", b2.addr),
                      "m-b3": ("green", b3.addr)}
        rules = [
            {"priority": 10, "conditions": {"host_header": ["split.test"]},
             "action": h.forward(("blue", 2), ("green", 1))},
            {"priority": 20, "conditions": {"host_header": ["old.test"]},
             "action": {"redirect": {"host": "new.example.com", "status_code": "HTTP_301"}}},
            {"priority": 30, "conditions": {"host_header": ["fixed.test"]},
             "action": h.fixed_response(200, "fixed")},
            {"priority": 40, "conditions": {"host_header": ["empty.test"]},
             "action": h.forward("empty")},
        ]
        cfg = h.make_config(
            [h.listener("main", h.fixed_response(404, "no route"), rules),
             h.listener("other", h.forward("green"))],
            [h.target_group("blue", [b1, b2]), h.target_group("green", [b3]),
             h.target_group("empty", [])],
            metrics={"window": "1s"})
        r = self.ringlb(cfg)
        main, other = CountingClient(r.port("main")), CountingClient(r.port("other"))
        before = settled_metrics(r.admin_port)

        per_target = {}       # backend name -> requests
        per_class = {}        # (group, class) -> responses
        main_groups = {"blue": 0, "green": 0}

        def count(resp, listener_is_main):
            be = resp.header("X-Backend")
            self.assertIn(be, by_backend, resp)
            group = by_backend[be][0]
            per_target[be] = per_target.get(be, 0) + 1
            key = (group, f"{resp.status // 100}xx")
            per_class[key] = per_class.get(key, 0) + 1
            if listener_is_main:
                main_groups[group] += 1

        # 2,700 forwarded requests on listener main (weighted 2:1), every 10th answering 500.
        conns = [main.conn() for _ in range(6)]
        for i in range(2700):
            path = "/status/500" if i % 10 == 0 else "/"
            resp = main.roundtrip(conns[i % 6], "GET", path, "split.test")
            self.assertEqual(resp.status, 500 if i % 10 == 0 else 200, resp)
            count(resp, True)
        for c in conns:
            c.close()
        # 300 on listener other (default forward to green), every 5th answering 404.
        conns = [other.conn() for _ in range(2)]
        for i in range(300):
            path = "/status/404" if i % 5 == 0 else "/"
            resp = other.roundtrip(conns[i % 2], "GET", path, "whatever.test")
            self.assertEqual(resp.status, 404 if i % 5 == 0 else 200, resp)
            count(resp, False)
        for c in conns:
            c.close()
        self.assertEqual(sum(per_target.values()), 3000)
        self.assertTrue(main_groups["blue"] > 0 and main_groups["green"] > 0, main_groups)

        # Provoked local answers.
        with main.conn() as c:
            for _ in range(5):
                resp = main.roundtrip(c, "GET", "/x?y=1", "old.test")
                self.assertEqual(resp.status, 301, resp)
            for _ in range(7):
                resp = main.roundtrip(c, "GET", "/x", "fixed.test")
                self.assertEqual((resp.status, resp.body), (200, b"fixed"), resp)
            for _ in range(4):
                resp = main.roundtrip(c, "GET", "/x", "nomatch.test")
                self.assertEqual((resp.status, resp.body), (404, b"no route"), resp)
        for _ in range(3):
            with main.conn() as c:
                resp = main.roundtrip(c, "GET", "/", "empty.test")
                self.assertLBError(resp, 503, "group without targets")
        for _ in range(2):
            resp = main.raw(b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\n")
            self.assertLBError(resp, 400, "MultipleContentLength")
        resp = main.raw(b"TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertLBError(resp, 405, "TRACE")

        # Every connection closed: the active gauge goes back to 0 (bounded wait).
        h.wait_for(lambda: Metrics(r.admin_port).get("ringlb_active_connections",
                                                      side="client") == 0,
                   what="active client connections back to 0")
        after = Metrics(r.admin_port)

        def d(name, **labels):
            return delta(after, before, name, **labels)

        # RequestCount by (listener, group).
        self.assertEqual(d("ringlb_requests_total", listener="main", target_group="blue"),
                         main_groups["blue"])
        self.assertEqual(d("ringlb_requests_total", listener="main", target_group="green"),
                         main_groups["green"])
        self.assertEqual(d("ringlb_requests_total", listener="other", target_group="green"), 300)
        self.assertEqual(d("ringlb_requests_total", listener="main", target_group="empty"), 0)
        total = sum(v for k, v in after.series("ringlb_requests_total").items())
        self.assertEqual(total - sum(before.series("ringlb_requests_total").values()), 3000)
        # Per target.
        for be, (group, addr) in by_backend.items():
            self.assertEqual(d("ringlb_target_requests_total", target_group=group, target=addr),
                             per_target.get(be, 0), be)
        # Target responses by class, and the histogram's count.
        for group in ("blue", "green", "empty"):
            for cls in ("2xx", "3xx", "4xx", "5xx"):
                self.assertEqual(d("ringlb_target_responses_total", target_group=group,
                                   **{"class": cls}), per_class.get((group, cls), 0),
                                 (group, cls))
            n = sum(v for (g, _), v in per_class.items() if g == group)
            self.assertEqual(d("ringlb_target_response_seconds_count", target_group=group), n)
            self.assertEqual(d("ringlb_target_response_seconds_bucket", target_group=group,
                               le="+Inf"), n)
            buckets = [v for lbl, v in sorted(
                after.series("ringlb_target_response_seconds_bucket").items(),
                key=lambda kv: float(dict(kv[0])["le"].replace("+Inf", "inf")))
                if dict(lbl)["target_group"] == group]
            self.assertEqual(buckets, sorted(buckets), "buckets are cumulative")
            if n:
                self.assertGreater(d("ringlb_target_response_seconds_sum", target_group=group),
                                   0)
        self.assertEqual(per_class.get(("green", "4xx"), 0), 60)
        self.assertEqual(per_class.get(("blue", "5xx"), 0) + per_class.get(("green", "5xx"), 0),
                         270)
        # LB responses: exactly the provoked ones.
        for lst in ("main", "other"):
            for code in ("400", "405", "408", "413", "414", "460", "463", "500", "501", "502",
                         "503", "504", "505", "other"):
                want = {("main", "503"): 3, ("main", "400"): 2, ("main", "405"): 1}.get(
                    (lst, code), 0)
                self.assertEqual(d("ringlb_lb_responses_total", listener=lst, code=code), want,
                                 (lst, code))
        self.assertEqual(d("ringlb_redirects_total"), 5)
        self.assertEqual(d("ringlb_fixed_responses_total"), 7 + 4)   # rule 30 + default action
        # Host rules are indexed: one evaluation per request whose host has a rule.
        self.assertEqual(d("ringlb_rule_evaluations_total", listener="main"), 2700 + 5 + 7 + 3)
        self.assertEqual(d("ringlb_rule_evaluations_total", listener="other"), 0)
        self.assertEqual(d("ringlb_desync_requests_total", listener="main",
                           classification="Severe"), 2)
        for cls in ("Acceptable", "Ambiguous"):
            self.assertEqual(d("ringlb_desync_requests_total", listener="main",
                               classification=cls), 0)
        for g in ("blue", "green", "empty"):
            self.assertEqual(d("ringlb_target_connection_errors_total", target_group=g), 0)
            self.assertEqual(d("ringlb_non_sticky_requests_total", target_group=g), 0)
            self.assertEqual(d("ringlb_unhealthy_routing_requests_total", target_group=g), 0, g)
        for lst in ("main", "other"):
            self.assertEqual(d("ringlb_rejected_connections_total", listener=lst), 0)
            self.assertEqual(d("ringlb_client_tls_negotiation_errors_total", listener=lst), 0)
        # Connections and bytes.
        self.assertEqual(d("ringlb_new_connections_total", side="client"),
                         main.conns + other.conns)
        tnew = after.get("ringlb_new_connections_total", side="target")
        tact = after.get("ringlb_active_connections", side="target")
        self.assertGreaterEqual(tnew, 3)
        self.assertTrue(0 <= tact <= tnew, (tact, tnew))
        self.assertEqual(d("ringlb_processed_bytes_total"), main.bytes + other.bytes)
        self.assertEqual(after.get("ringlb_metrics_lost_total"), 0)
        # Gauges of the current configuration.
        self.assertEqual(after.get("ringlb_healthy_targets", target_group="blue"), 0)
        self.assertEqual(after.get("ringlb_unhealthy_targets", target_group="blue"), 0)

        # Active connections count open client connections.
        held = [main.conn() for _ in range(3)]
        try:
            for c in held:
                main.roundtrip(c, "GET", "/", "split.test")
            h.wait_for(lambda: Metrics(r.admin_port).get("ringlb_active_connections",
                                                          side="client") == 3,
                       what="3 active client connections")
        finally:
            for c in held:
                c.close()
        h.wait_for(lambda: Metrics(r.admin_port).get("ringlb_active_connections",
                                                      side="client") == 0,
                   what="active client connections back to 0")


# ----------------------------------------------------------------------------------------------

def burst_in_one_window(testcase, r, group, send, n, check, attempts=6):
    """Run send() (n requests of `group`) until a complete window of the group shows exactly
    n requests, then call check(window_json, group_json). Retries when the burst straddled a
    window boundary."""
    def quiet():
        return admin_json(r, f"/api/v1/target-groups/{group}")["metrics"]["RequestCount"] == 0

    for _ in range(attempts):
        h.wait_for(quiet, timeout=15, what=f"a window of {group} without requests")
        send()
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            g = admin_json(r, f"/api/v1/target-groups/{group}")
            w = g["metrics"]
            seen.append(w["RequestCount"])
            if w["RequestCount"] == n:
                check(w, g)
                return
            if len(seen) >= 2 and seen[-2] not in (0, n) and w["RequestCount"] == 0:
                break   # the burst was split over two windows
            time.sleep(0.05)
    testcase.fail(f"no window of {group} held exactly the {n} requests of a burst "
                  f"(last values seen: {seen[-10:]})")


class RequestCountPerTargetTest(h.RingTestCase):

    def test_rcpt_with_3_2_1_0_healthy_targets(self):
        backends = [self.backend(f"r-b{i}") for i in range(3)]
        hc = {"enabled": True, "path": "/health", "interval": "100ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}
        cfg = h.make_config(target_groups=[h.target_group("rcpt", backends, health_check=hc)],
                            metrics={"window": "2s"})
        r = self.ringlb(cfg)
        port = r.port()
        n = 60

        def send():
            with h.Conn(port) as c:
                for _ in range(n):
                    c.roundtrip("GET", "/")   # any status: 502 when every target is down

        for healthy in (3, 2, 1, 0):
            h.wait_for(lambda: admin_json(r, "/api/v1/target-groups/rcpt")["metrics"]
                       ["HealthyHostCount"] == healthy, timeout=15,
                       what=f"{healthy} healthy targets")
            # With none healthy, the ALB divides by the registered targets (3).
            want = n / (healthy or 3)

            def check(w, g, healthy=healthy, want=want):
                self.assertEqual(w["HealthyHostCount"], healthy, w)
                self.assertEqual(w["UnHealthyHostCount"], 3 - healthy, w)
                self.assertEqual(w["RequestCountPerTarget"], want, w)
                self.assertTrue(w["Complete"], w)
                m = Metrics(r.admin_port)
                again = admin_json(r, "/api/v1/target-groups/rcpt")["metrics"]
                if again["RequestCount"] == n:   # same window: the gauge must agree
                    self.assertEqual(m.get("ringlb_request_count_per_target",
                                           target_group="rcpt"), want)
                    self.assertEqual(m.get("ringlb_healthy_targets", target_group="rcpt"),
                                     healthy)
                    self.assertEqual(m.get("ringlb_unhealthy_targets", target_group="rcpt"),
                                     3 - healthy)

            burst_in_one_window(self, r, "rcpt", send, n, check)
            if healthy:
                backends[healthy - 1].stop()   # the next round has one healthy target less


class WindowJsonTest(h.RingTestCase):

    def test_group_window_json_cloudwatch_names(self):
        b = self.backend("w-b1")
        cfg = h.make_config(target_groups=[h.target_group("win", [b])],
                            metrics={"window": "2s"})
        r = self.ringlb(cfg)
        port = r.port()
        plan = [("/", 200)] * 20 + [("/status/302", 302)] * 2 + [("/status/404", 404)] * 3 + \
               [("/status/500", 500)] * 5 + [("/bad/reset", 502)] * 2

        def send():
            with h.Conn(port) as c:
                for path, status in plan:
                    if status == 502:   # the target resets: a connection of its own
                        resp = h.http(port, "GET", path)
                    else:
                        resp = c.roundtrip("GET", path)
                    self.assertEqual(resp.status, status, (path, resp))

        def check(w, g):
            self.assertEqual(g["name"], "win")
            expect = {"RequestCount": 32, "HTTPCode_Target_2XX_Count": 20,
                      "HTTPCode_Target_3XX_Count": 2, "HTTPCode_Target_4XX_Count": 3,
                      "HTTPCode_Target_5XX_Count": 5, "HTTPCode_ELB_4XX_Count": 0,
                      "HTTPCode_ELB_5XX_Count": 2, "HealthyHostCount": 0,
                      "UnHealthyHostCount": 0, "Complete": True,
                      # health checks disabled: no healthy target, ÷ 1 registered
                      "RequestCountPerTarget": 32}
            for k, v in expect.items():
                self.assertEqual(w[k], v, (k, w))
            self.assertTrue(1.5 <= w["WindowSeconds"] <= 10, w)
            rt = [w["TargetResponseTime"], w["TargetResponseTime_p50"],
                  w["TargetResponseTime_p90"], w["TargetResponseTime_p99"]]
            self.assertTrue(all(isinstance(x, (int, float)) and x >= 0 for x in rt), w)
            self.assertLessEqual(rt[1], rt[2])
            self.assertLessEqual(rt[2], rt[3])

        burst_in_one_window(self, r, "win", send, 32, check)
        m = Metrics(r.admin_port)
        self.assertEqual(m.get("ringlb_lb_responses_total", listener="main", code="502"), 2)
        # An unknown group is a 404 with a JSON error.
        resp = h.http(r.admin_port, "GET", "/api/v1/target-groups/nope")
        self.assertEqual(resp.status, 404)
        self.assertIn("error", resp.json())


class HealthChecksInvisibleTest(h.RingTestCase):

    def test_health_checks_move_no_counter(self):
        b1, b2 = self.backend("h-b1"), self.backend("h-b2")
        hc = {"enabled": True, "path": "/health", "interval": "100ms", "healthy_threshold": 2}
        tmp = tempfile.TemporaryDirectory(prefix="ringlb-hc-")
        self.addCleanup(tmp.cleanup)
        log = os.path.join(tmp.name, "access.log")
        cfg = h.make_config(target_groups=[h.target_group("hc", [b1, b2], health_check=hc)],
                            metrics={"window": "1s"}, access_log={"path": log})
        r = self.ringlb(cfg)
        h.wait_for(lambda: Metrics(r.admin_port).get("ringlb_healthy_targets",
                                                      target_group="hc") == 2,
                   what="2 healthy targets")
        before = settled_metrics(r.admin_port)
        s1 = b1.stats()["requests"]
        # At least 10 more health checks reach the first target.
        h.wait_for(lambda: b1.stats()["requests"] - s1 >= 10 + 1, timeout=15,
                   what="10 health checks")
        time.sleep(0.3)   # one more writer period of the access log
        after = Metrics(r.admin_port)
        moved = {k: (before.v.get(k, 0), v) for k, v in after.v.items()
                 if before.v.get(k, 0) != v}
        self.assertEqual(moved, {}, "health checks changed counters")
        self.assertEqual(after.get("ringlb_access_log_lines_total"), 0)
        self.assertEqual(after.get("ringlb_new_connections_total", side="target"), 0)
        self.assertEqual(os.path.getsize(log), 0)
        # The window JSON says so too.
        w = admin_json(r, "/api/v1/target-groups/hc")["metrics"]
        self.assertEqual((w["RequestCount"], w["HealthyHostCount"]), (0, 2), w)


# ----------------------------------------------------------------------------------------------

class ScalingAdviceTest(h.RingTestCase):

    def test_advice_rises_under_load_falls_after_cooldown_and_runs_the_hook(self):
        b = self.backend("s-b1")
        tmp = tempfile.TemporaryDirectory(prefix="ringlb-scaling-")
        self.addCleanup(tmp.cleanup)
        out = os.path.join(tmp.name, "hook.out")
        hook = os.path.join(tmp.name, "scale.sh")
        with open(hook, "w") as f:
            f.write("#!/bin/sh\n"
                    f'echo "$RINGLB_TARGET_GROUP $RINGLB_DESIRED $RINGLB_CURRENT '
                    f'$RINGLB_PREVIOUS" >> {out}\n'
                    "sleep 0.3\n")     # a slow scaler never holds traffic back
        os.chmod(hook, stat.S_IRWXU)
        scaling = {"metric": "request_count_per_target", "target_value": 20, "min": 1,
                   "max": 4, "scale_out_cooldown": "1s", "scale_in_cooldown": "2s",
                   "hook": hook}
        cfg = h.make_config(
            target_groups=[h.target_group("web", [b], scaling=scaling),
                           h.target_group("noscale", [b])],
            metrics={"window": "1s"})
        r = self.ringlb(cfg)

        def advice():
            j = admin_json(r, "/api/v1/scaling")
            groups = {g["target_group"]: g for g in j["target_groups"]}
            self.assertEqual(set(groups), {"web"}, j)   # only groups with a scaling block
            return groups["web"]

        def hook_lines():
            try:
                with open(out) as f:
                    return [ln.split() for ln in f.read().splitlines()]
            except FileNotFoundError:
                return []

        a = advice()
        self.assertEqual((a["metric"], a["target_value"], a["min"], a["max"]),
                         ("request_count_per_target", 20, 1, 4))
        self.assertEqual(a["hook"]["command"], hook)
        # Idle: the first window's advice is the current count, nothing for the hook.
        a = h.wait_for(lambda: (lambda x: x if x["desired"] is not None else None)(advice()),
                       what="first advice")
        self.assertEqual((a["desired"], a["current"], a["healthy"]), (1, 1, 1), a)
        self.assertEqual(a["action"], "hold")
        for k in ("metric_value", "reason", "last_evaluation", "last_change", "cooldown"):
            self.assertIn(k, a)
        for k in ("scale_out_cooldown_seconds", "scale_in_cooldown_seconds",
                  "scale_out_active", "scale_in_active", "scale_out_remaining_seconds",
                  "scale_in_remaining_seconds"):
            self.assertIn(k, a["cooldown"])
        self.assertEqual(hook_lines(), [])

        stop = threading.Event()
        sent = [0]

        def load():
            c = h.Conn(r.port())
            try:
                while not stop.is_set():
                    if c.roundtrip("GET", "/").status != 200:
                        return
                    sent[0] += 1
            finally:
                c.close()

        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            # Hundreds of requests per 1 s window against a target of 20 per target: up to max.
            a = h.wait_for(lambda: (lambda x: x if x["desired"] == 4 else None)(advice()),
                           timeout=20, what="advice rising to max (4)")
            self.assertGreater(a["metric_value"], 20 * 0.9, a)
            if a["action"] == "scale_out":
                self.assertIn("scale out", a["reason"])
            self.assertIsNotNone(a["last_change"])
            h.wait_for(lambda: Metrics(r.admin_port).get("ringlb_scaling_desired_targets",
                                                          target_group="web") == 4,
                       what="gauge 4")
            h.wait_for(lambda: any(ln[1] == "4" for ln in hook_lines()), what="hook with 4")
        finally:
            stop.set()
            t.join(timeout=10)
        self.assertGreater(sent[0], 0)
        # Without traffic the metric is 0: after scale_in_cooldown the advice falls to min.
        a = h.wait_for(lambda: (lambda x: x if x["desired"] == 1 else None)(advice()),
                       timeout=20, what="advice falling back to min (1)")
        if a["action"] == "scale_in":
            self.assertIn("scale in", a["reason"])
        h.wait_for(lambda: hook_lines() and hook_lines()[-1][1] == "1"
                   and not advice()["hook"]["running"], timeout=15, what="hook with 1")
        lines = hook_lines()
        # Every run got the group, the advice and the current count; each run's previous
        # advice is the one the run before it delivered.
        prev = "1"
        for group, desired, current, previous in lines:
            self.assertEqual((group, current, previous), ("web", "1", prev), lines)
            prev = desired
        self.assertEqual(lines[-1][1], "1")
        a = advice()
        self.assertEqual(a["hook"]["runs"], len(lines))
        self.assertEqual(a["hook"]["last_exit_status"], 0)
        self.assertEqual(a["hook"]["failures"], 0)
        self.assertEqual(Metrics(r.admin_port).get("ringlb_scaling_desired_targets",
                                                    target_group="web"), 1)
        self.assertFalse(Metrics(r.admin_port).has("ringlb_scaling_desired_targets",
                                                    target_group="noscale"))
        # Only GET.
        resp = h.http(r.admin_port, "POST", "/api/v1/scaling", body=b"{}")
        self.assertEqual(resp.status, 405)


if __name__ == "__main__":
    h.main()
