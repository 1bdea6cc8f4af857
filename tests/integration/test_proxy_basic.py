"""Proxy core, black box: plain GET through ringlb (curl, http.client, raw), round robin,
keep-alive reuse towards targets, pipelining, forwarded headers (X-Forwarded-*, X-Amzn-Trace-Id,
Host, hop-by-hop), 463, the admin /healthz, and a target that closes idle pooled connections.

SPEC sections 3.1, 3.2, 5 (/healthz). Run: python3 tests/integration/test_proxy_basic.py
"""

import http.client
import re
import socket
import time

import harness as h

TRACE_RE = re.compile(r"^Root=1-([0-9a-f]{8})-[0-9a-f]{24}$")


class TwoBackends(h.RingTestCase):
    """ringlb (2 threads) -> target group "web" with backends b1 and b2."""

    threads = 2

    def setUp(self):
        self.b1 = self.backend("b1")
        self.b2 = self.backend("b2")
        self.lb = self.ringlb(h.make_config(
            target_groups=[h.target_group("web", [self.b1, self.b2])]), threads=self.threads)
        self.port = self.lb.port("main")


class BasicGet(TwoBackends):
    def test_get_with_curl(self):
        out = h.run(["curl", "-sS", "--max-time", "10", "-D", "-",
                     f"http://127.0.0.1:{self.port}/"], timeout=20, text=False)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.decode().partition("\r\n\r\n")
        self.assertRegex(head.splitlines()[0], r"^HTTP/1\.1 200\b")
        self.assertRegex(head, r"(?im)^x-backend: b[12]\r?$")
        self.assertRegex(body, r"^hello from b[12]\n$")

    def test_get_with_http_client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(4):
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode()
                self.assertEqual(r.status, 200)
                name = r.getheader("X-Backend")
                self.assertIn(name, ("b1", "b2"))
                self.assertEqual(body, f"hello from {name}\n")
        finally:
            conn.close()

    def test_request_target_and_method_forwarded_unchanged(self):
        r = h.http(self.port, "GET", "/headers?a=1&b=%20x&c")
        self.assertEqual(r.status, 200, r)
        j, _ = h.forwarded_headers(r)
        self.assertEqual(j["method"], "GET")
        self.assertEqual(j["target"], "/headers?a=1&b=%20x&c")
        r = h.http(self.port, "POST", "/headers", body=b"0123456789")
        j, hd = h.forwarded_headers(r)
        self.assertEqual(j["method"], "POST")
        self.assertEqual(j["body_bytes"], 10)
        self.assertEqual(hd.get("content-length"), ["10"])

    def test_round_robin_alternates_on_one_connection(self):
        seen = []
        with h.Conn(self.port) as c:
            for _ in range(10):
                r = c.roundtrip("GET", "/")
                self.assertEqual(r.status, 200, r)
                seen.append(r.header("X-Backend"))
        self.assertEqual(set(seen), {"b1", "b2"}, seen)
        for a, b in zip(seen, seen[1:]):
            self.assertNotEqual(a, b, f"round robin did not alternate: {seen}")

    def test_round_robin_across_new_connections(self):
        seen = [h.http(self.port, "GET", "/").header("X-Backend") for _ in range(12)]
        self.assertEqual(set(seen), {"b1", "b2"}, seen)
        self.assertGreaterEqual(min(seen.count("b1"), seen.count("b2")), 3, seen)

    def test_http10_request(self):
        with h.Conn(self.port) as c:
            r = c.roundtrip("GET", "/", version="HTTP/1.0", host=None)
            self.assertEqual(r.status, 200, r)
            self.assertRegex(r.text, r"^hello from b[12]\n$")
            self.assertTrue(c.wait_closed(5), "HTTP/1.0 without keep-alive: connection not closed")

    def test_http10_keep_alive(self):
        with h.Conn(self.port) as c:
            for _ in range(3):
                r = c.roundtrip("GET", "/", headers=[("Connection", "keep-alive")],
                                version="HTTP/1.0", host=None)
                self.assertEqual(r.status, 200, r)
                self.assertRegex(r.text, r"^hello from b[12]\n$")


class KeepAlive(h.RingTestCase):
    """Pooled keep-alive connections to the target: few upstream connections for many requests."""

    THREADS = 2
    SLACK = 3       # the /stats connection itself plus a little

    def setUp(self):
        self.b = self.backend("ka")
        self.lb = self.ringlb(h.make_config(target_groups=[h.target_group("web", [self.b])]),
                              threads=self.THREADS)
        self.port = self.lb.port("main")

    def test_one_client_connection_200_requests(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for i in range(200):
                conn.request("GET", f"/headers?i={i}")
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
        finally:
            conn.close()
        st = self.b.stats()
        self.assertGreaterEqual(st["requests"], 200, st)
        self.assertLessEqual(st["connections"], self.THREADS + self.SLACK,
                             f"upstream connections not reused: {st}")

    def test_several_client_connections(self):
        conns = [h.Conn(self.port) for _ in range(4)]
        try:
            for i in range(50):
                for k, c in enumerate(conns):
                    r = c.roundtrip("GET", f"/headers?c={k}&i={i}")
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.json()["target"], f"/headers?c={k}&i={i}")
        finally:
            for c in conns:
                c.close()
        st = self.b.stats()
        self.assertGreaterEqual(st["requests"], 200, st)
        self.assertLessEqual(st["connections"], self.THREADS + self.SLACK,
                             f"upstream connections not reused: {st}")

    def test_wrk_keepalive_load(self):
        out = h.run(["wrk", "-t2", "-c16", "-d2s", "--timeout", "5s",
                     f"http://127.0.0.1:{self.port}/"], timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        m = re.search(r"(\d+) requests in", out.stdout)
        self.assertIsNotNone(m, out.stdout)
        self.assertGreaterEqual(int(m.group(1)), 50, out.stdout)
        self.assertNotIn("Non-2xx", out.stdout, out.stdout)
        self.assertNotIn("Socket errors", out.stdout, out.stdout)
        st = self.b.stats()
        # 16 concurrent client connections: a pooled implementation needs ~16 upstream
        # connections; one connection per request would need thousands.
        self.assertLessEqual(st["connections"], 2 * 16 + 4, f"{st}\n{out.stdout}")


class Pipelining(TwoBackends):
    def test_ten_pipelined_requests_in_one_send(self):
        data = b"".join(h.build_request("GET", f"/headers?i={i}", host=f"127.0.0.1:{self.port}")
                        for i in range(10))
        with h.Conn(self.port) as c:
            c.send(data)
            rs = c.read_responses(["GET"] * 10)
            for i, r in enumerate(rs):
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["target"], f"/headers?i={i}", f"response {i} order")
            # the connection is still usable afterwards
            self.assertEqual(c.roundtrip("GET", "/headers?i=after").json()["target"],
                             "/headers?i=after")

    def test_pipelined_mixed_methods_and_bodies(self):
        hp = f"127.0.0.1:{self.port}"
        reqs = [("GET", "/headers?i=0", None), ("HEAD", "/bytes/100", None),
                ("POST", "/echo", b"pipelined-body-1"), ("GET", "/status/204", None),
                ("GET", "/bytes/5000", None), ("POST", "/echo", b"x" * 70000),
                ("GET", "/status/404", None), ("GET", "/headers?i=7", None)]
        data = b"".join(h.build_request(m, t, body=b, host=hp) for m, t, b in reqs)
        with h.Conn(self.port) as c:
            c.send(data)
            rs = c.read_responses([m for m, _, _ in reqs])
        self.assertEqual([r.status for r in rs], [200, 200, 200, 204, 200, 200, 404, 200], rs)
        self.assertEqual(rs[0].json()["target"], "/headers?i=0")
        self.assertEqual(rs[1].body, b"")
        self.assertEqual(rs[2].body, b"pipelined-body-1")
        self.assertEqual(rs[3].body, b"")
        self.assertEqual(rs[4].body_len, 5000)
        self.assertEqual(rs[5].body, b"x" * 70000)
        self.assertEqual(rs[7].json()["target"], "/headers?i=7")


class ForwardedHeaders(h.RingTestCase):
    """X-Forwarded-*, X-Amzn-Trace-Id, Host and hop-by-hop handling, seen by the backend."""

    def start(self, **listener_kw):
        self.b = self.backend("fh")
        cfg = h.make_config(
            listeners=[h.listener("main", h.forward("web"), **listener_kw)],
            target_groups=[h.target_group("web", [self.b])])
        self.lb = self.ringlb(cfg)
        self.port = self.lb.port("main")

    def fetch(self, headers=(), host="default", conn=None):
        """GET /headers through ringlb: (json, {name: [values]}, client Conn local port)."""
        c = conn or h.Conn(self.port)
        try:
            c.request("GET", "/headers", headers=list(headers), host=host)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-Backend"), "fh")
            j, d = h.forwarded_headers(r)
            return j, d, c.local_port
        finally:
            if conn is None:
                c.close()

    def test_xff_append(self):
        self.start()
        _, d, _ = self.fetch()
        self.assertEqual(d.get("x-forwarded-for"), ["127.0.0.1"])
        _, d, _ = self.fetch([("X-Forwarded-For", "1.2.3.4")])
        self.assertEqual(d.get("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"])

    def test_xff_client_address_text(self):
        """Every digit count of every byte of an IPv4 client address (the loopback /8)."""
        self.start()
        for src in ("127.45.203.9", "127.100.10.0", "127.9.99.250"):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                         source_address=(src, 0))
            with h.Conn(self.port, sock=s) as c:
                _, d, _ = self.fetch(conn=c)
            self.assertEqual(d.get("x-forwarded-for"), [src])

    def test_xff_append_is_default_mode(self):
        self.start(xff="append")
        _, d, _ = self.fetch([("X-Forwarded-For", "10.0.0.1, 10.0.0.2")])
        self.assertEqual(d.get("x-forwarded-for"), ["10.0.0.1, 10.0.0.2, 127.0.0.1"])

    def test_xff_preserve(self):
        self.start(xff="preserve")
        _, d, _ = self.fetch([("X-Forwarded-For", "1.2.3.4")])
        self.assertEqual(d.get("x-forwarded-for"), ["1.2.3.4"])

    def test_xff_remove(self):
        self.start(xff="remove")
        _, d, _ = self.fetch([("X-Forwarded-For", "1.2.3.4")])
        self.assertNotIn("x-forwarded-for", d)
        _, d, _ = self.fetch()
        self.assertNotIn("x-forwarded-for", d)

    def test_xff_client_port(self):
        self.start(xff_client_port=True)
        _, d, lport = self.fetch()
        self.assertEqual(d.get("x-forwarded-for"), [f"127.0.0.1:{lport}"])
        _, d, lport = self.fetch([("X-Forwarded-For", "1.2.3.4")])
        self.assertEqual(d.get("x-forwarded-for"), [f"1.2.3.4, 127.0.0.1:{lport}"])

    def test_forwarded_proto_and_port(self):
        self.start()
        _, d, _ = self.fetch([("X-Forwarded-Proto", "https"), ("X-Forwarded-Port", "1")])
        self.assertEqual(d.get("x-forwarded-proto"), ["http"])
        self.assertEqual(d.get("x-forwarded-port"), [str(self.port)])

    def test_trace_id_generated(self):
        self.start()
        ids = set()
        for _ in range(3):
            _, d, _ = self.fetch()
            vals = d.get("x-amzn-trace-id", [])
            self.assertEqual(len(vals), 1, d)
            m = TRACE_RE.match(vals[0])
            self.assertIsNotNone(m, vals[0])
            self.assertLess(abs(int(m.group(1), 16) - time.time()), 3600,
                            f"trace id epoch is not the current time: {vals[0]}")
            ids.add(vals[0])
        self.assertEqual(len(ids), 3, f"trace ids are not unique: {ids}")

    def test_trace_id_incoming_root_kept_self_inserted(self):
        self.start()
        root = "Root=1-abcdef01-0123456789abcdef01234567"
        _, d, _ = self.fetch([("X-Amzn-Trace-Id", root)])
        vals = d.get("x-amzn-trace-id", [])
        self.assertEqual(len(vals), 1, d)
        self.assertRegex(vals[0], r"^Self=1-[0-9a-f]{8}-[0-9a-f]{24};" + re.escape(root) + "$")

    def test_host_port_appended(self):
        self.start()
        _, d, _ = self.fetch(host="example.com")
        self.assertEqual(d.get("host"), [f"example.com:{self.port}"])
        _, d, _ = self.fetch(host="example.com:1234")
        self.assertEqual(d.get("host"), ["example.com:1234"])

    def test_preserve_host_header(self):
        self.start(preserve_host_header=True)
        _, d, _ = self.fetch(host="example.com")
        self.assertEqual(d.get("host"), ["example.com"])
        _, d, _ = self.fetch(host="example.com:1234")
        self.assertEqual(d.get("host"), ["example.com:1234"])

    def test_hop_by_hop_headers_not_forwarded(self):
        self.start()
        _, d, _ = self.fetch([("Connection", "keep-alive, X-Custom-Hop"),
                              ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
                              ("TE", "trailers"), ("X-Custom-Hop", "secret"),
                              ("X-End-To-End", "yes")])
        for name in ("keep-alive", "proxy-connection", "te", "x-custom-hop"):
            self.assertNotIn(name, d, f"hop-by-hop header {name} was forwarded: {d}")
        for v in d.get("connection", []):
            self.assertNotIn("x-custom-hop", v.lower(), d)
        self.assertEqual(d.get("x-end-to-end"), ["yes"])

    def test_more_than_30_xff_addresses_463(self):
        self.start()
        many = ", ".join(f"10.0.0.{i}" for i in range(1, 32))       # 31 addresses
        out = {}

        def go():
            out["r"] = h.http(self.port, "GET", "/headers", headers=[("X-Forwarded-For", many)])

        delta = self.b.stats_delta(go)
        self.assertLBError(out["r"], 463, "31 XFF addresses")
        self.assertEqual(delta["requests"], 0, "the 463 request reached the target")

    def test_30_xff_addresses_accepted(self):
        self.start()
        thirty = ", ".join(f"10.0.0.{i}" for i in range(1, 31))
        _, d, _ = self.fetch([("X-Forwarded-For", thirty)])
        self.assertEqual(d.get("x-forwarded-for"), [thirty + ", 127.0.0.1"])


class IPv6(h.RingTestCase):
    def test_ipv6_listener_and_target(self):
        b = self.backend("v6", host="::1")
        lb = self.ringlb(h.make_config(
            listeners=[h.listener("main", h.forward("web"), host="::1")],
            target_groups=[h.target_group("web", [b])]))
        with h.Conn(lb.port("main"), host="::1") as c:
            r = c.roundtrip("GET", "/headers", headers=[("X-Forwarded-For", "2001:db8::1")])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-Backend"), "v6")
            _, d = h.forwarded_headers(r)
            self.assertEqual(d.get("x-forwarded-for"), ["2001:db8::1, ::1"])
            self.assertEqual(d.get("x-forwarded-port"), [str(lb.port("main"))])
            self.assertEqual(d.get("host"), [f"[::1]:{lb.port('main')}"])


class Admin(h.RingTestCase):
    def test_healthz(self):
        lb = self.ringlb(h.make_config())
        r = h.http(lb.admin_port, "GET", "/healthz")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.text.strip(), "ok")
        # and the data-plane listener (fixed 404 default) is separate from the admin API
        r = h.http(lb.port("main"), "GET", "/healthz")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.text, "no route")


class TargetClosesIdleConnection(h.RingTestCase):
    """SPEC 3.1: a pooled target connection that fails before any response byte is retried once
    on a new connection; the client never sees the keep-alive race."""

    def test_idle_pooled_connection_closed_by_target(self):
        b = self.backend("idle", idle_close_ms=200)
        lb = self.ringlb(h.make_config(target_groups=[h.target_group("web", [b])]))

        def go():
            conn = http.client.HTTPConnection("127.0.0.1", lb.port("main"), timeout=10)
            try:
                for i in range(4):
                    conn.request("GET", f"/headers?i={i}")
                    r = conn.getresponse()
                    body = r.read()
                    self.assertEqual(r.status, 200, f"request {i}: {r.status} {body[:200]!r}")
                    self.assertEqual(r.getheader("X-Backend"), "idle")
                    time.sleep(0.5)
            finally:
                conn.close()

        delta = b.stats_delta(go)
        # precondition: the backend really closed its idle connections between requests
        self.assertGreaterEqual(delta["connections"], 4, delta)
        self.assertEqual(delta["requests"], 4, f"requests lost or duplicated: {delta}")

    def test_idle_close_raw_keepalive_post(self):
        b = self.backend("idle", idle_close_ms=200)
        lb = self.ringlb(h.make_config(target_groups=[h.target_group("web", [b])]))
        with h.Conn(lb.port("main")) as c:
            for i in range(3):
                body = f"payload-{i}".encode() * 100
                r = c.roundtrip("POST", "/echo", body=body)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, body)
                time.sleep(0.5)


if __name__ == "__main__":
    h.main()
