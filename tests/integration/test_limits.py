"""Limits under hostile clients (SPEC section 8, issue #9): a slow reader costs bounded
memory, slowloris never reaches a target, max_connections refuses and counts, and a flood of
idle connections leaves the proxy answering.

Run: python3 tests/integration/test_limits.py
"""

import json
import os
import re
import socket
import time
import unittest

import harness as h


class Limits(h.RingTestCase):
    def start(self, **listener_kw):
        self.b = self.backend("b")
        cfg = h.config_dict(listeners=[h.listener("main", h.forward("g"), **listener_kw)],
                            target_groups=[h.target_group("g", [self.b])])
        self.admin = int(cfg["admin"]["listen"].split(":")[1])
        self.lb = self.ringlb(json.dumps(cfg), threads=1)
        self.port = self.lb.port("main")

    def test_slow_reader_costs_bounded_memory(self):
        self.start()
        base = self.lb.rss_kib()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /bytes/268435456 HTTP/1.1\r\nHost: x\r\n\r\n")  # 256 MiB, unread
        peak = base
        for _ in range(20):                 # 2 s in which a proxy without back-pressure
            time.sleep(0.1)                 # would buffer most of the 256 MiB
            peak = max(peak, self.lb.rss_kib())
        s.close()
        self.assertLess(peak - base, 32 * 1024, f"RSS grew by {peak - base} KiB")
        self.assertEqual(h.http(self.port, "GET", "/").status, 200)

    def test_slowloris_never_reaches_the_target(self):
        self.start(header_timeout="1s")

        def go():
            with h.Conn(self.port) as c:
                for part in (b"GET / HT", b"TP/1.1\r\nHo", b"st: x\r\n"):
                    c.send(part)
                    time.sleep(0.4)
                r = c.read_response()
                self.assertLBError(r, 408)
                self.assertTrue(c.wait_closed(3))
        self.assertEqual(self.b.stats_delta(go)["requests"], 0)

    def test_stalled_body_hits_idle_timeout(self):
        self.start(idle_timeout="1s")
        with h.Conn(self.port) as c:
            c.send(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            # the client's fault: 408, then the connection closes
            self.assertLBError(c.read_response("POST"), 408, "stalled body")
            self.assertTrue(c.wait_closed(8), "a stalled request body kept the connection")
        self.assertEqual(h.http(self.port, "GET", "/").status, 200)

    @unittest.skipUnless(os.geteuid() == 0, "dropping privileges needs root")
    def test_user_drops_privileges(self):
        b = self.backend("b")
        cfg = h.config_dict(target_groups=[h.target_group("g", [b])], user="nobody")
        lb = self.ringlb(json.dumps(cfg), threads=1)
        with open(f"/proc/{lb.proc.pid}/status") as f:
            uid = next(l.split()[1:] for l in f if l.startswith("Uid:"))
        self.assertEqual(set(uid), {"65534"}, uid)
        self.assertEqual(h.http(lb.port("main"), "GET", "/").status, 200)

    def test_max_connections(self):
        self.start(max_connections=3)
        held = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(3)]
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
        extra = socket.create_connection(("127.0.0.1", self.port))
        extra.settimeout(5)
        try:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = extra.recv(4096)
        except OSError:
            data = b""
        self.assertEqual(data, b"", "a connection over max_connections was served")
        extra.close()
        m = h.http(self.admin, "GET", "/metrics").text
        self.assertRegex(m, r'ringlb_rejected_connections_total\{listener="main"\} [1-9]')
        for s in held:
            s.close()
        h.wait_for(lambda: h.http(self.port, "GET", "/").status == 200, 5,
                   what="served again below the limit")

    def test_idle_flood_leaves_probes_answered(self):
        self.start()
        flood = []
        try:
            for _ in range(2000):
                flood.append(socket.create_connection(("127.0.0.1", self.port)))
            for _ in range(20):
                self.assertEqual(h.http(self.port, "GET", "/").status, 200)
        finally:
            for s in flood:
                s.close()


if __name__ == "__main__":
    h.main()
