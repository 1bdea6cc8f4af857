"""Request smuggling defences through the binary (SPEC 3.3): the desync classifier's tiers
acted on per desync_mitigation_mode, what the target really receives (never a second,
smuggled request), the classification counter, and RFC 9112 rejections in every mode.

Run: python3 tests/integration/test_desync.py
"""

import json
import re
import socket

import harness as h

# (name, raw request, tier) — tiers as the ALB's classifier gives them (see tests/unit)
ACCEPTABLE = ("GET with Content-Length: 0",
              b"GET /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
AMBIGUOUS = ("HTTP/1.0 with Transfer-Encoding",
             b"POST /sink HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
SEVERE = ("obs-fold", b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n")
COMPLIANT = ("plain GET", b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")

# Refused with 400 in every mode (RFC 9112 MUST), whatever llhttp would accept.
ALWAYS_400 = [
    ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-Foo : bar\r\n\r\n"),
    ("field without colon", b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"),
    ("two different Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
    ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n"),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"),
    ("CL.TE smuggle", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("differing Content-Lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                  b"Content-Length: 6\r\n\r\nhello!"),
    ("bare LF line ends", b"GET /headers HTTP/1.1\nHost: x\nX-A: 1\n\n"),
    ("chunked twice", b"POST /sink HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
]


# Smuggling families under the default (defensive) mode: the answer, and how many requests
# the target may see (never two).
FAMILIES = [
    ("TE.CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n",
     {400}, 0),
    ("TE.TE second TE", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Transfer-Encoding: x\r\n\r\n0\r\n\r\n", {400, 501}, 0),
    ("TE.TE xchunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
     {400, 501}, 0),
    ("TE.TE space", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
                    b"0\r\n\r\n", {400}, 0),
    ("duplicate CL", b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Content-Length: 5\r\n\r\nhello", {400}, 0),
    ("bad chunk size", b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", {400}, 1),
    ("NUL in a name", b"GET / HTTP/1.1\r\nHost: x\r\nX\x00Y: 1\r\n\r\n", {400}, 0),
    ("LF in a name", b"GET / HTTP/1.1\r\nHost: x\r\nX\nY: 1\r\n\r\n", {400}, 0),
]


class Desync(h.RingTestCase):
    def start(self, mode):
        self.b = self.backend("b")
        cfg = h.config_dict(
            listeners=[h.listener("main", h.forward("g"), desync_mitigation_mode=mode)],
            target_groups=[h.target_group("g", [self.b])])
        self.admin = int(cfg["admin"]["listen"].split(":")[1])
        self.lb = self.ringlb(json.dumps(cfg))
        self.port = self.lb.port("main")

    def exchange(self, raw):
        """Send raw, read one response; then report whether the connection stays open."""
        with h.Conn(self.port) as c:
            c.send(raw)
            r = c.read_response("POST" if raw.startswith(b"POST") else "GET")
            closed = c.wait_closed(2.0)
        return r, closed

    def backend_requests(self, fn):
        return self.b.stats_delta(fn)["requests"]

    def desync_count(self, cls):
        text = h.http(self.admin, "GET", "/metrics").text
        m = re.search(r'^ringlb_desync_requests_total\{listener="main",classification="%s"\} '
                      r'(\d+)$' % cls, text, re.M)
        return int(m.group(1)) if m else 0

    def check(self, case, status, closed, reaches):
        name, raw = case
        seen = {}

        def go():
            seen["r"], seen["closed"] = self.exchange(raw)
        n = self.backend_requests(go)
        self.assertEqual(seen["r"].status, status, f"{name}: {seen['r']!r}")
        self.assertEqual(seen["closed"], closed, f"{name}: connection closed?")
        self.assertEqual(n, 1 if reaches else 0, f"{name}: requests at the target")

    def test_monitor_forwards_everything(self):
        self.start("monitor")
        self.check(COMPLIANT, 200, False, True)
        self.check(ACCEPTABLE, 200, False, True)
        self.check(AMBIGUOUS, 200, False, True)
        self.check(SEVERE, 200, False, True)
        self.assertEqual(self.desync_count("Severe"), 1)
        self.assertEqual(self.desync_count("Ambiguous"), 1)
        self.assertEqual(self.desync_count("Acceptable"), 1)

    def test_defensive(self):
        self.start("defensive")
        self.check(COMPLIANT, 200, False, True)
        self.check(ACCEPTABLE, 200, False, True)
        self.check(AMBIGUOUS, 200, True, True)     # served, then both connections closed
        self.check(SEVERE, 400, True, False)       # rejected, never reaches the target
        self.assertEqual(self.desync_count("Severe"), 1)

    def test_strictest(self):
        self.start("strictest")
        self.check(COMPLIANT, 200, False, True)
        self.check(ACCEPTABLE, 400, True, False)
        self.check(AMBIGUOUS, 400, True, False)
        self.check(SEVERE, 400, True, False)

    def test_rfc_rejections_in_every_mode(self):
        for mode in ("monitor", "defensive", "strictest"):
            self.start(mode)
            for name, raw in ALWAYS_400:
                with self.subTest(mode=mode, case=name):
                    seen = {}

                    def go():
                        seen["r"], _ = self.exchange(raw)
                    n = self.backend_requests(go)
                    self.assertLBError(seen["r"], 400, f"{mode}/{name}")
                    self.assertEqual(n, 0, f"{mode}/{name}: reached the target")
            self.lb.stop()
            self.b.stop()

    def test_smuggling_families_defensive(self):
        self.start("defensive")
        for name, raw, statuses, at_most in FAMILIES:
            with self.subTest(case=name):
                seen = {}

                def go():
                    seen["r"], seen["closed"] = self.exchange(raw)
                n = self.backend_requests(go)
                self.assertIn(seen["r"].status, statuses, f"{name}: {seen['r']!r}")
                self.assertTrue(seen["closed"], f"{name}: connection left open")
                self.assertLessEqual(n, at_most, f"{name}: requests at the target")
        # chunk extensions and absolute-form targets are legal: served normally
        r, closed = self.exchange(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n")
        self.assertEqual((r.status, r.body, closed), (200, b"hello", False))
        r, closed = self.exchange(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual((r.status, closed), (200, False))

    def test_forwarded_head_is_normalised(self):
        # monitor forwards an obs-fold (Severe), but never as a line break: as spaces
        self.start("monitor")
        r, _ = self.exchange(SEVERE[1])
        self.assertEqual(r.status, 200, r)
        hdrs = dict((k.lower(), v) for k, v in r.json()["headers"])
        self.assertRegex(hdrs.get("x-fold", ""), r"^a +b$")
        self.assertNotIn("b", hdrs)


if __name__ == "__main__":
    h.main()
