"""Deregistration and draining on the data path (SPEC section 4): a target removed from the
file goes draining, gets no new request, keeps serving what is in flight until the
deregistration delay ends; requests still running then get 502. Also slow start and the
target connection pool of a draining target.

Run: python3 tests/integration/test_draining.py
"""

import json
import threading
import time

import harness as h


class Draining(h.RingTestCase):
    def setUp(self):
        self.b1 = self.backend("b1")
        self.b2 = self.backend("b2")

    def start(self, delay):
        self.cfg = h.config_dict(target_groups=[
            h.target_group("g", [self.b1], deregistration_delay=delay)])
        self.lb = self.ringlb(json.dumps(self.cfg), threads=2)
        self.port = self.lb.port("main")

    def swap_to_b2(self):
        self.cfg["target_groups"][0]["targets"] = [self.b2.addr]
        self.lb.write_config(json.dumps(self.cfg))
        self.lb.reload()

    def states(self):
        admin = self.cfg["admin"]["listen"].split(":")[1]
        r = h.http(int(admin), "GET", "/api/v1/target-groups/g")
        return {f'{t["id"]}:{t["port"]}': t["state"] for t in r.json()["targets"]}

    def slow_request(self, ms):
        res = {}

        def run():
            try:
                res["r"] = h.http(self.port, "GET", f"/sleep/{ms}", timeout=30)
            except Exception as e:                               # noqa: BLE001
                res["err"] = e
        t = threading.Thread(target=run)
        t.start()
        return t, res

    def test_in_flight_request_finishes_while_draining(self):
        self.start("10s")
        self.assertEqual(h.http(self.port, "GET", "/").header("X-Backend"), "b1")
        # b1's request count includes each /stats call itself: the slow request has reached
        # b1 once the count is two above the one read before it
        base = self.b1.stats()["requests"]
        t, res = self.slow_request(2500)
        h.wait_for(lambda: self.b1.stats()["requests"] >= base + 2, 5, what="slow request at b1")
        self.swap_to_b2()
        h.wait_for(lambda: self.states().get(self.b1.addr) == "draining", 5,
                   what="b1 draining")
        # no new request reaches the draining target
        for _ in range(20):
            self.assertEqual(h.http(self.port, "GET", "/").header("X-Backend"), "b2")
        t.join(30)
        self.assertNotIn("err", res)
        self.assertEqual(res["r"].status, 200)
        self.assertEqual(res["r"].header("X-Backend"), "b1")

    def test_request_outliving_the_delay_gets_502(self):
        self.start("1s")
        base = self.b1.stats()["requests"]
        t, res = self.slow_request(6000)
        h.wait_for(lambda: self.b1.stats()["requests"] >= base + 2, 5, what="slow request at b1")
        self.swap_to_b2()
        t.join(30)
        self.assertNotIn("err", res)
        self.assertLBError(res["r"], 502, "draining timed out")
        h.wait_for(lambda: self.b1.addr not in self.states(), 5, what="b1 removed")

    def test_pooled_connections_to_a_draining_target_are_closed(self):
        self.start("30s")
        with h.Conn(self.port) as c:
            for _ in range(5):
                self.assertEqual(c.roundtrip("GET", "/").header("X-Backend"), "b1")
        # "active" counts the /stats connection itself
        h.wait_for(lambda: self.b1.stats()["active"] >= 2, 5, what="pooled connection to b1")
        self.swap_to_b2()
        # the idle pooled connections to b1 go away although b1 stays registered (draining)
        h.wait_for(lambda: self.b1.stats()["active"] == 1, 5,
                   what="pooled connections to b1 closed")
        self.assertEqual(self.states().get(self.b1.addr), "draining")


if __name__ == "__main__":
    h.main()
