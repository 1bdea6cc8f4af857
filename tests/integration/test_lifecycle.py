"""Process lifecycle, black box: SIGHUP reload under load (no failed request, new config takes
effect), reload of an invalid file (old config keeps serving), graceful shutdown on SIGTERM /
SIGINT (in-flight requests finish, listeners close, exit 0, shutdown_timeout honoured) and SIGQUIT
(exit at once).

SPEC sections 1 (signals) and 8 ("no request is lost ... by a reload ... or a graceful shutdown").
Run: python3 tests/integration/test_lifecycle.py
"""

import http.client
import json
import signal
import threading
import time

import harness as h


class Load:
    """Client threads issuing GET / on keep-alive connections until stopped. Any exception or
    non-200 answer is a failure. Records each thread's last body (or X-Backend)."""

    def __init__(self, port, nthreads=3, key=lambda r, body: body):
        self.port = port
        self.key = key
        self.count = 0
        self.failures = []
        self.last = [None] * nthreads
        self.seen = set()
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(nthreads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, idx):
        conn = None
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode("utf-8", "replace")
                if r.status != 200:
                    raise AssertionError(f"status {r.status}: {body[:200]!r}")
                v = self.key(r, body)
                with self.lock:
                    self.count += 1
                    self.last[idx] = v
                    self.seen.add(v)
                if r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "load thread stuck"

    def wait_count(self, n, timeout=60):
        h.wait_for(lambda: self.count >= n or self.failures, timeout, what=f"{n} requests")

    def wait_all_see(self, value, timeout=10):
        h.wait_for(lambda: all(v == value for v in self.last), timeout,
                   what=f"every load thread to see {value!r} (last: {self.last})")


class Reload(h.RingTestCase):
    def test_reload_fixed_response_under_load(self):
        cfg = h.config_dict(listeners=[h.listener("main", h.fixed_response(200, "v1"))])
        lb = self.ringlb(json.dumps(cfg))
        port = lb.port("main")
        load = Load(port).start()
        try:
            load.wait_count(100)
            for version in ("v2", "v3"):
                cfg["listeners"][0]["default_action"] = h.fixed_response(200, version)
                lb.write_config(json.dumps(cfg))
                lb.reload()
                h.wait_for(lambda: h.http(port, "GET", "/").text == version, 10,
                           what=f"reloaded body {version}")
                load.wait_all_see(version)
            load.wait_count(load.count + 200)
            load.wait_count(500)
        finally:
            load.stop()
        self.assertEqual(load.failures, [], f"{len(load.failures)} failed requests during reload")
        self.assertGreaterEqual(load.count, 500)
        self.assertEqual(load.seen, {"v1", "v2", "v3"})
        self.assertEqual(h.http(port, "GET", "/").text, "v3")

    def test_reload_switches_backends_under_load(self):
        b1, b2 = self.backend("one"), self.backend("two")
        cfg = h.config_dict(target_groups=[h.target_group("g1", [b1]), h.target_group("g2", [b2])])
        lb = self.ringlb(json.dumps(cfg))
        port = lb.port("main")
        load = Load(port, key=lambda r, body: r.getheader("X-Backend")).start()
        try:
            load.wait_count(100)
            self.assertEqual(load.seen, {"one"})
            for target, name in (("g2", "two"), ("g1", "one"), ("g2", "two")):
                cfg["listeners"][0]["default_action"] = h.forward(target)
                lb.write_config(json.dumps(cfg))
                lb.reload()
                h.wait_for(lambda: h.http(port, "GET", "/").header("X-Backend") == name, 10,
                           what=f"traffic on backend {name}")
                load.wait_all_see(name)
                load.wait_count(load.count + 100)
            load.wait_count(500)
        finally:
            load.stop()
        self.assertEqual(load.failures, [], f"{len(load.failures)} failed requests during reload")
        self.assertGreaterEqual(load.count, 500)

    def test_reload_twice_quickly_under_load(self):
        cfg = h.config_dict(listeners=[h.listener("main", h.fixed_response(200, "a"))])
        lb = self.ringlb(json.dumps(cfg))
        port = lb.port("main")
        load = Load(port).start()
        try:
            load.wait_count(100)
            cfg["listeners"][0]["default_action"] = h.fixed_response(200, "b")
            lb.write_config(json.dumps(cfg))
            lb.reload()
            lb.reload()                  # two SIGHUPs back to back
            h.wait_for(lambda: h.http(port, "GET", "/").text == "b", 10, what="body b")
            load.wait_all_see("b")
            load.wait_count(load.count + 300)
            load.wait_count(500)
        finally:
            load.stop()
        self.assertEqual(load.failures, [])
        self.assertGreaterEqual(load.count, 500)

    def test_invalid_reload_keeps_old_config(self):
        cfg = h.config_dict(listeners=[h.listener("main", h.fixed_response(200, "good"))])
        lb = self.ringlb(json.dumps(cfg))
        port = lb.port("main")
        for bad in ('{"listeners": [{"name": "main", "no_such_key": 1}]}\n',
                    "listeners: [ {{{ not yaml\n",
                    json.dumps(dict(cfg, shutdown_timeout="10 parsecs"))):
            before = len(lb.stderr)
            lb.write_config(bad)
            lb.reload()
            h.wait_for(lambda: len(lb.stderr) > before, 5, what="an error logged for the reload")
            self.assertIsNone(lb.proc.poll(), f"ringlb exited on a bad reload\n{lb.stderr_tail()}")
            for _ in range(20):
                r = h.http(port, "GET", "/")
                self.assertEqual((r.status, r.text), (200, "good"))
        # a valid file afterwards is still picked up
        cfg["listeners"][0]["default_action"] = h.fixed_response(200, "better")
        lb.write_config(json.dumps(cfg))
        lb.reload()
        h.wait_for(lambda: h.http(port, "GET", "/").text == "better", 10, what="valid reload")

    def test_reload_adds_listener(self):
        cfg = h.config_dict(listeners=[h.listener("main", h.fixed_response(200, "main"))])
        lb = self.ringlb(json.dumps(cfg))
        extra = h.listener("extra", h.fixed_response(200, "extra"))
        cfg["listeners"].append(extra)
        lb.write_config(json.dumps(cfg))
        lb.reload()
        eport = int(extra["listen"].rsplit(":", 1)[1])
        h.wait_for(lambda: h.can_connect(eport), 10, what="the new listener")
        self.assertEqual(h.http(eport, "GET", "/").text, "extra")
        self.assertEqual(h.http(lb.port("main"), "GET", "/").text, "main")


class Shutdown(h.RingTestCase):
    def setUp(self):
        self.b = self.backend("sd")

    def start(self, **top):
        top.setdefault("shutdown_timeout", "10s")
        return self.ringlb(h.make_config(target_groups=[h.target_group("web", [self.b])], **top))

    def in_flight(self, port, path):
        """Start GET path in a thread; returns (thread, result dict)."""
        res = {}

        def go():
            try:
                res["r"] = h.http(port, "GET", path, timeout=20)
            except Exception as e:  # noqa: BLE001
                res["err"] = e

        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t, res

    def test_graceful_sigterm(self):
        lb = self.start()
        port = lb.port("main")
        idle = h.Conn(port)
        self.addCleanup(idle.close)
        self.assertEqual(idle.roundtrip("GET", "/").status, 200)       # idle keep-alive conn
        t, res = self.in_flight(port, "/sleep/3000")
        time.sleep(0.2)
        lb.signal(signal.SIGTERM)
        # listeners close at once, while the slow request is still in flight
        h.wait_for(lambda: not h.can_connect(port, timeout=0.5), 2.0,
                   what="new connections to be refused after SIGTERM")
        self.assertTrue(t.is_alive(), "in-flight request already finished: test is inconclusive")
        # the idle keep-alive connection is closed by the drain
        self.assertTrue(idle.wait_closed(10), "idle keep-alive connection not closed on SIGTERM")
        t.join(20)
        self.assertNotIn("err", res, f"in-flight request failed: {res.get('err')!r}")
        self.assertEqual(res["r"].status, 200, res["r"])
        self.assertEqual(lb.proc.wait(timeout=20), 0, lb.stderr_tail())

    def test_graceful_sigterm_inflight_upload(self):
        """A request whose body is still arriving when SIGTERM comes completes."""
        lb = self.start()
        port = lb.port("main")
        body = b"z" * 300000
        with h.Conn(port, timeout=20) as c:
            c.request("POST", "/sink", headers=[("Content-Length", str(len(body)))])
            c.send(body[:1000])
            time.sleep(0.3)
            lb.signal(signal.SIGTERM)
            time.sleep(0.3)
            c.send(body[1000:])
            r = c.read_response("POST")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["bytes"], len(body))
        self.assertEqual(lb.proc.wait(timeout=20), 0, lb.stderr_tail())

    def test_sigint_drains_like_sigterm(self):
        lb = self.start()
        port = lb.port("main")
        t, res = self.in_flight(port, "/sleep/1000")
        time.sleep(0.2)
        lb.signal(signal.SIGINT)
        t.join(20)
        self.assertNotIn("err", res, f"in-flight request failed: {res.get('err')!r}")
        self.assertEqual(res["r"].status, 200, res["r"])
        self.assertEqual(lb.proc.wait(timeout=20), 0, lb.stderr_tail())

    def test_shutdown_timeout_bounds_the_drain(self):
        lb = self.start(shutdown_timeout="1s")
        lb.expect_clean_exit = False        # exit status after a forced end is not specified
        t, _res = self.in_flight(lb.port("main"), "/sleep/8000")
        time.sleep(0.3)
        lb.signal(signal.SIGTERM)
        try:
            lb.proc.wait(timeout=6)         # well before the 8 s request could finish
        except Exception:
            self.fail("ringlb did not exit within shutdown_timeout (1s) + margin")
        t.join(20)

    def test_sigquit_exits_at_once(self):
        lb = self.start()
        lb.expect_clean_exit = False
        t, res = self.in_flight(lb.port("main"), "/sleep/8000")
        time.sleep(0.3)
        lb.signal(signal.SIGQUIT)
        try:
            lb.proc.wait(timeout=5)
        except Exception:
            self.fail("ringlb did not exit promptly on SIGQUIT")
        t.join(20)
        self.assertNotIn("r", res, "the in-flight request completed: SIGQUIT did not exit at once")

    def test_idle_ringlb_sigterm_exits_zero(self):
        """Nothing in flight: the drain has nothing to wait for (shutdown_timeout is 30s)."""
        lb = self.start(shutdown_timeout="30s")
        self.assertEqual(h.http(lb.port("main"), "GET", "/").status, 200)
        with h.Conn(lb.port("main")) as idle:       # an idle keep-alive connection too
            self.assertEqual(idle.roundtrip("GET", "/").status, 200)
            self.assertEqual(lb.terminate(timeout=10), 0, lb.stderr_tail())


if __name__ == "__main__":
    h.main()
