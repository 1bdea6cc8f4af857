"""Targets that answer with broken framing (SPEC 3.2, issue #9): conflicting Content-Length,
Content-Length with Transfer-Encoding, chunked not last, bad chunk sizes, bytes after the end
of a response. The client gets 502 (or a cut response when the head was already relayed),
and such a target connection is never reused.

Run: python3 tests/integration/test_response_framing.py
"""

import json

import harness as h


class ResponseFraming(h.RingTestCase):
    def setUp(self):
        self.b = self.backend("b")
        cfg = h.config_dict(target_groups=[h.target_group("g", [self.b])])
        self.lb = self.ringlb(json.dumps(cfg), threads=1)
        self.port = self.lb.port("main")

    def test_bad_heads_get_502(self):
        for path in ("/bad/cl-conflict", "/bad/cl-te", "/bad/te-not-last", "/bad/garbage",
                     "/bad/bigheader"):
            with self.subTest(path=path):
                self.assertLBError(h.http(self.port, "GET", path), 502, path)
        self.assertEqual(h.http(self.port, "GET", "/").status, 200)

    def test_bad_chunk_size_cuts_the_response(self):
        with h.Conn(self.port) as c:
            c.request("GET", "/bad/chunk-size")
            with self.assertRaises(h.HTTPError):
                c.read_response("GET")
            self.assertTrue(c.wait_closed(5), "client connection left open after a cut body")
        self.assertEqual(h.http(self.port, "GET", "/").status, 200)

    def test_bytes_after_a_response_are_never_relayed(self):
        def go():
            with h.Conn(self.port) as c:
                r1 = c.roundtrip("GET", "/bad/extra")
                self.assertEqual((r1.status, r1.body), (200, b"hello"))
                # the next request on the same client connection must get a real answer from
                # a fresh target connection, not the stray "smuggled" response
                r2 = c.roundtrip("GET", "/")
                self.assertEqual(r2.text, "hello from b\n")
        delta = self.b.stats_delta(go)
        self.assertEqual(delta["requests"], 2)
        self.assertEqual(delta["connections"], 2, "the polluted target connection was reused")


if __name__ == "__main__":
    h.main()
