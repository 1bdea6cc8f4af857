"""Target stickiness with the AWSALB cookie (lb_cookie, SPEC section 4): a client is pinned
to its target while that target stays healthy, and moves when it is not.

Run: python3 tests/integration/test_target_stickiness.py
"""

import json
import re

import harness as h


def awsalb(r):
    for v in r.header_all("Set-Cookie"):
        m = re.match(r"AWSALB=([A-Za-z0-9_-]+); Expires=[^;]+; Path=/$", v)
        if m:
            return m.group(1)
    return None


class TargetStickiness(h.RingTestCase):
    def test_pinned_while_healthy_then_moved(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        hc = {"enabled": True, "path": "/health", "interval": "200ms", "timeout": "100ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}
        tg = h.target_group("g", [b1, b2], health_check=hc,
                            stickiness={"enabled": True, "type": "lb_cookie", "duration": "1h"})
        cfg = h.config_dict(target_groups=[tg])
        lb = self.ringlb(json.dumps(cfg), threads=1)
        port = lb.port("main")
        admin = int(cfg["admin"]["listen"].split(":")[1])

        def healthy():
            ts = h.http(admin, "GET", "/api/v1/target-groups/g").json()["targets"]
            return sum(t["state"] == "healthy" for t in ts)
        h.wait_for(lambda: healthy() == 2, 10, what="both targets healthy")
        r = h.http(port, "GET", "/")
        cookie = awsalb(r)
        self.assertIsNotNone(cookie, r.header_all("Set-Cookie"))
        pinned = r.header("X-Backend")
        for _ in range(10):
            r = h.http(port, "GET", "/", headers=[("Cookie", f"AWSALB={cookie}")])
            self.assertEqual(r.header("X-Backend"), pinned)
        # without the cookie, round robin spreads
        seen = {h.http(port, "GET", "/").header("X-Backend") for _ in range(4)}
        self.assertEqual(seen, {"b1", "b2"})
        # a tampered cookie is ignored
        bad = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
        seen = {h.http(port, "GET", "/", headers=[("Cookie", f"AWSALB={bad}")]).header(
            "X-Backend") for _ in range(4)}
        self.assertEqual(seen, {"b1", "b2"})
        # the pinned target goes unhealthy: the client moves (and gets a new cookie)
        (b1 if pinned == "b1" else b2).stop()
        h.wait_for(lambda: healthy() == 1, 10, what="pinned target unhealthy")
        other = "b2" if pinned == "b1" else "b1"
        r = h.http(port, "GET", "/", headers=[("Cookie", f"AWSALB={cookie}")])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Backend"), other)
        self.assertNotEqual(awsalb(r), cookie)


if __name__ == "__main__":
    h.main()
