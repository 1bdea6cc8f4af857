"""Status codes the load balancer produces itself (SPEC 3.2): 400, 414, 405, 408, 501, 502, 503,
504, 505 — each with the ALB-style HTML error page naming the code and `Server: awselb/2.0`.
Responses produced by targets (any code) pass through unchanged.

Run: python3 tests/integration/test_status_codes.py
"""

import harness as h


class LBErrors(h.RingTestCase):
    """One ringlb with several listeners:
      main     -> group "web" (a live backend)
      dead     -> group "dead" (a target port with nothing listening)
      empty    -> group "empty" (no targets)
      slow     -> group "web", idle_timeout 1s
      hdr      -> group "web", header_timeout 1s
    """

    @classmethod
    def setUpClass(cls):
        cls.b = h.start_backend("sc")
        try:
            dead_port = h.free_port()
            cfg = h.make_config(
                listeners=[h.listener("main", h.forward("web")),
                           h.listener("dead", h.forward("dead")),
                           h.listener("empty", h.forward("empty")),
                           h.listener("slow", h.forward("web"), idle_timeout="1s"),
                           h.listener("hdr", h.forward("web"), header_timeout="1s")],
                target_groups=[h.target_group("web", [cls.b]),
                               h.target_group("dead", [dead_port]),
                               h.target_group("empty", [])])
            cls.lb = h.start_ringlb(cfg)
        except BaseException:
            cls.b.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.lb.stop()       # raises (fails the class) on crash / sanitizer report
        finally:
            cls.b.stop()

    def setUp(self):
        self.port = self.lb.port("main")
        self.hp = f"127.0.0.1:{self.port}"
        if self.lb.proc.poll() is not None:
            self.fail(f"ringlb died (status {self.lb.proc.returncode})\n{self.lb.stderr_tail()}")

    def raw(self, data, listener="main", method="GET"):
        return h.send_raw(self.lb.port(listener), data, method)

    def still_serving(self):
        r = h.http(self.port, "GET", "/")
        self.assertEqual((r.status, r.text), (200, "hello from sc\n"), "ringlb stopped serving")

    # ---- 400
    def test_400_malformed_request_line(self):
        for data in (b"this is not http\r\n\r\n",
                     b"GET\r\n\r\n",
                     b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
                     b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"):
            with self.subTest(data=data[:30]):
                self.assertLBError(self.raw(data), 400, repr(data[:30]))
        self.still_serving()

    def test_400_malformed_header_line(self):
        r = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        self.assertLBError(r, 400, "header without colon")

    def test_400_non_token_header_names(self):
        # RFC 9112: a server MUST reject these, whatever the parser's leniency.
        for line in (b"Bad Header: x", b"X-Foo : x", b": empty-name"):
            with self.subTest(line=line):
                r = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n")
                self.assertLBError(r, 400, repr(line))
        self.still_serving()

    def test_400_header_line_over_16k(self):
        big = "a" * (17 * 1024)
        r = self.raw(h.build_request("GET", "/", [("X-Big", big)], host=self.hp))
        self.assertLBError(r, 400, "17 KiB header line")
        self.still_serving()

    def test_header_line_under_16k_accepted(self):
        val = "a" * (15 * 1024)
        r = self.raw(h.build_request("GET", "/headers", [("X-Big", val)], host=self.hp))
        self.assertEqual(r.status, 200, r)
        _, d = h.forwarded_headers(r)
        self.assertEqual(d.get("x-big"), [val])

    def test_400_head_over_64k(self):
        hdrs = [(f"X-Fill-{i}", "b" * 9000) for i in range(8)]     # 72 KB, each line < 16 KiB
        r = self.raw(h.build_request("GET", "/", hdrs, host=self.hp))
        self.assertLBError(r, 400, "72 KB request head")
        self.still_serving()

    # ---- 414
    def test_414_request_line_over_16k(self):
        r = self.raw(h.build_request("GET", "/" + "u" * (17 * 1024), host=self.hp))
        self.assertLBError(r, 414, "17 KiB URI")
        self.still_serving()

    # ---- 405
    def test_405_trace(self):
        out = {}

        def go():
            out["r"] = self.raw(h.build_request("TRACE", "/", host=self.hp), method="TRACE")

        delta = self.b.stats_delta(go)
        self.assertLBError(out["r"], 405, "TRACE")
        self.assertEqual(delta["requests"], 0, "TRACE reached the target")

    # ---- 408
    def test_408_incomplete_head(self):
        with h.Conn(self.lb.port("hdr"), timeout=10) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            r = c.read_response()
            self.assertLBError(r, 408, "incomplete head after header_timeout")
            self.assertTrue(c.wait_closed(5), "connection not closed after 408")

    def test_408_trickled_head(self):
        """header_timeout counts from the first byte: trickling bytes does not extend it."""
        with h.Conn(self.lb.port("hdr"), timeout=10) as c:
            c.send(b"GET / HTTP/1.1\r\n")
            got = b""
            for i in range(40):      # one header byte every 100 ms, never finishing the head
                try:
                    c.send(b"X-T: %d\r\n" % i)
                except (BrokenPipeError, ConnectionResetError):
                    break
                got = c.read_available(0.1)
                if got:
                    break
            got += c.read_available(2.0) if not got else b""
            self.assertTrue(got.startswith(b"HTTP/1.1 408 ") or got.startswith(b"HTTP/1.0 408 "),
                            f"expected a 408, got {got[:200]!r}")

    # ---- 501
    def test_501_unsupported_transfer_encoding(self):
        r = self.raw(h.build_request("POST", "/echo", [("Transfer-Encoding", "gzip")],
                                     host=self.hp) + b"abc", method="POST")
        self.assertLBError(r, 501, "Transfer-Encoding: gzip")
        self.still_serving()

    # ---- 502
    def test_502_bad_targets(self):
        for path in ("/bad/garbage", "/bad/reset", "/bad/close", "/bad/bigheader",
                     "/bad/cl-conflict"):
            with self.subTest(path=path):
                r = h.http(self.port, "GET", path)
                self.assertLBError(r, 502, path)
        self.still_serving()

    def test_502_bad_target_on_keepalive_client_connection(self):
        """After a 502 from a misbehaving target the client connection stays usable or is closed
        cleanly; either way a new request gets through."""
        with h.Conn(self.port) as c:
            self.assertEqual(c.roundtrip("GET", "/").status, 200)
            r = c.roundtrip("GET", "/bad/reset")
            self.assertLBError(r, 502, "/bad/reset on keep-alive")
        self.still_serving()

    def test_502_target_refuses_connection(self):
        r = h.http(self.lb.port("dead"), "GET", "/")
        self.assertLBError(r, 502, "nothing listening on the target port")

    # ---- 503
    def test_503_no_targets(self):
        r = h.http(self.lb.port("empty"), "GET", "/")
        self.assertLBError(r, 503, "target group without targets")

    # ---- 504
    def test_504_target_slower_than_idle_timeout(self):
        r = h.http(self.lb.port("slow"), "GET", "/sleep/3000", timeout=15)
        self.assertLBError(r, 504, "/sleep/3000 with idle_timeout 1s")
        self.still_serving()

    def test_slow_target_within_idle_timeout(self):
        r = h.http(self.lb.port("slow"), "GET", "/sleep/300", timeout=15)
        self.assertEqual(r.status, 200, r)

    # ---- 505
    def test_505_unsupported_http_version(self):
        for ver in ("HTTP/2.0", "HTTP/3.0"):
            with self.subTest(version=ver):
                r = self.raw(h.build_request("GET", "/", version=ver, host=self.hp))
                self.assertLBError(r, 505, ver)
        self.still_serving()

    # ---- target responses are passed through
    def test_target_status_codes_pass_through(self):
        for code in (200, 201, 302, 400, 404, 500, 502, 503, 504):
            with self.subTest(code=code):
                r = h.http(self.port, "GET", f"/status/{code}")
                self.assertEqual(r.status, code, r)
                self.assertEqual(r.header("X-Backend"), "sc", r)
                self.assertNotEqual(r.header("Server"), "awselb/2.0", r)


if __name__ == "__main__":
    h.main()
