"""Body streaming through ringlb, black box: 1 GiB download and uploads (Content-Length and
chunked) with bounded proxy memory, chunked responses and requests intact, Expect: 100-continue,
bodiless responses (HEAD, 204, 304), and the WebSocket upgrade tunnel.

SPEC section 3.1 ("bodies streamed in both directions ... never buffered whole") and 8.
Run: python3 tests/integration/test_streaming.py
"""

import base64
import hashlib
import os
import struct
import threading

import harness as h

GIB = 1 << 30
MIB = 1 << 20
RSS_SLACK_KIB = 64 * 1024          # ringlb may grow by at most 64 MiB during a 1 GiB transfer


class Streaming(h.RingTestCase):
    def setUp(self):
        self.b = self.backend("st")
        self.lb = self.ringlb(h.make_config(target_groups=[h.target_group("web", [self.b])]))
        self.port = self.lb.port("main")
        # warm up: pools, buffers and the first upstream connection exist before measuring
        for _ in range(4):
            self.assertEqual(h.http(self.port, "GET", "/bytes/65536").status, 200)

    # ---- helpers
    def measure(self, fn):
        """Run fn() while sampling ringlb's VmRSS; assert it stays below start + 64 MiB."""
        start = self.lb.rss_kib()
        sampler = h.RssSampler(self.lb.pid)
        sampler.start()
        try:
            result = fn()
        finally:
            peak = sampler.stop()
        self.assertGreater(sampler.samples, 0)
        self.assertLess(peak, start + RSS_SLACK_KIB,
                        f"ringlb VmRSS grew from {start} KiB to {peak} KiB during the transfer")
        return result

    def echo(self, conn, head, body_parts):
        """Send head + body parts from a thread while reading the response (no deadlock when the
        echo streams back before the upload ends)."""
        err = []

        def sender():
            try:
                conn.send(head)
                for p in body_parts:
                    conn.send(p)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        r = conn.read_response("POST")
        t.join(30)
        self.assertFalse(t.is_alive(), "sender thread stuck")
        self.assertEqual(err, [])
        return r

    # ---- 1 GiB transfers
    def test_download_1gib(self):
        check = h.PatternChecker()

        def go():
            with h.Conn(self.port, timeout=60) as c:
                c.request("GET", f"/bytes/{GIB}?pattern=1")
                return c.read_response(sink=check)

        r = self.measure(go)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Length"), str(GIB), r)
        self.assertEqual(r.body_len, GIB)
        self.assertEqual(check.count, GIB)
        self.assertIsNone(check.error, check.error)

    def upload(self, chunked):
        block = os.urandom(MIB)

        def go():
            with h.Conn(self.port, timeout=60) as c:
                hdr = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(GIB))
                c.request("POST", "/sink", headers=[hdr])
                frame = b"%x\r\n" % MIB + block + b"\r\n" if chunked else block
                for _ in range(GIB // MIB):
                    c.send(frame)
                if chunked:
                    c.send(b"0\r\n\r\n")
                return c.read_response("POST")

        r = self.measure(go)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bytes"], GIB, r)

    def test_upload_1gib_content_length(self):
        self.upload(chunked=False)

    def test_upload_1gib_chunked(self):
        self.upload(chunked=True)

    # ---- chunked
    def test_chunked_response_intact(self):
        for n, query in ((1000003, "chunked=1&pattern=1"), (77777, "chunk=1000&pattern=1"),
                         (5, "chunk=1&pattern=1"), (0, "chunked=1")):
            with self.subTest(n=n, query=query), h.Conn(self.port) as c:
                r = c.roundtrip("GET", f"/bytes/{n}?{query}")
                self.assertEqual(r.status, 200, r)
                self.assertTrue(r.chunked, f"response not chunked: {r.headers}")
                self.assertEqual(r.body_len, n)
                check = h.PatternChecker()
                check(memoryview(r.body))
                if n:
                    self.assertIsNone(check.error, check.error)
                # connection reusable after the last chunk
                self.assertEqual(c.roundtrip("GET", "/").text, "hello from st\n")

    def test_chunked_response_with_curl(self):
        n = 3 * MIB + 17
        out = h.run(["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w",
                     "%{http_code} %{size_download}",
                     f"http://127.0.0.1:{self.port}/bytes/{n}?chunked=1"], timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), f"200 {n}")

    def test_chunked_response_to_http10_client(self):
        """An HTTP/1.0 client cannot receive chunked coding: the body must arrive unchunked."""
        n = 200001
        with h.Conn(self.port) as c:
            r = c.roundtrip("GET", f"/bytes/{n}?chunked=1", version="HTTP/1.0", host=None)
            self.assertEqual(r.status, 200, r)
            self.assertFalse(r.chunked, f"chunked coding sent to an HTTP/1.0 client: {r.headers}")
            self.assertEqual(r.body_len, n)

    def test_chunked_request_echo(self):
        data = os.urandom(300000)
        sizes = [1, 10, 1000, 65536, 4095, 100000]
        parts, off = [], 0
        for s in sizes:
            parts.append(data[off:off + s])
            off += s
        parts.append(data[off:])
        body = h.chunked_body(parts)
        with h.Conn(self.port) as c:
            head = h.build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                   host=f"127.0.0.1:{self.port}")
            r = self.echo(c, head, [body[i:i + 7000] for i in range(0, len(body), 7000)])
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.chunked, f"echo of a chunked request is not chunked: {r.headers}")
            self.assertEqual(r.body, data)
            # the connection is still in sync
            self.assertEqual(c.roundtrip("GET", "/").text, "hello from st\n")

    def test_content_length_echo_8mib(self):
        data = os.urandom(8 * MIB)
        with h.Conn(self.port, timeout=30) as c:
            head = h.build_request("POST", "/echo", [("Content-Length", str(len(data)))],
                                   host=f"127.0.0.1:{self.port}")
            r = self.echo(c, head, [data[i:i + MIB] for i in range(0, len(data), MIB)])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("Content-Length"), str(len(data)))
            self.assertEqual(r.body, data)

    def test_expect_100_continue(self):
        body = b"hello world"
        with h.Conn(self.port) as c:
            c.request("POST", "/echo", headers=[("Content-Length", str(len(body))),
                                                ("Expect", "100-continue")])
            interim = c.read_response("POST", skip_interim=False)
            self.assertEqual(interim.status, 100, interim)
            c.send(body)
            r = c.read_response("POST")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)
            self.assertEqual(c.roundtrip("GET", "/").text, "hello from st\n")

    def test_expect_100_continue_chunked_sink(self):
        body = h.chunked_body([b"a" * 5000, b"b" * 70000])
        with h.Conn(self.port) as c:
            c.request("POST", "/sink", headers=[("Transfer-Encoding", "chunked"),
                                                ("Expect", "100-continue")])
            interim = c.read_response("POST", skip_interim=False)
            self.assertEqual(interim.status, 100, interim)
            c.send(body)
            r = c.read_response("POST")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["bytes"], 75000)

    # ---- bodiless responses
    def test_head_has_no_body(self):
        with h.Conn(self.port) as c:
            r = c.roundtrip("HEAD", "/bytes/1000")
            self.assertEqual(r.status, 200, r)
            self.assertIn(r.header("Content-Length"), (None, "1000"), r)
            self.assertEqual(c.read_available(0.3), b"", "bytes after a HEAD response")
            r = c.roundtrip("HEAD", "/bytes/5000?chunked=1")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(c.read_available(0.3), b"", "bytes after a HEAD response")
            r = c.roundtrip("GET", "/")
            self.assertEqual((r.status, r.text), (200, "hello from st\n"))

    def test_204_and_304_have_no_body(self):
        with h.Conn(self.port) as c:
            for code in (204, 304, 204):
                r = c.roundtrip("GET", f"/status/{code}")
                self.assertEqual(r.status, code, r)
                self.assertIsNone(r.header("Transfer-Encoding"), r)
                self.assertEqual(c.read_available(0.3), b"", f"bytes after a {code} response")
            r = c.roundtrip("GET", "/")
            self.assertEqual((r.status, r.text), (200, "hello from st\n"))


# ------------------------------------------------------------------------------------------
# WebSocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode, payload, fin=True):
    """A client frame (always masked)."""
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return hdr + mask + masked


def ws_read(conn):
    """A server frame: (fin, opcode, payload); server frames must not be masked."""
    hdr = conn._read_exact(2)
    fin, opcode = bool(hdr[0] & 0x80), hdr[0] & 0x0F
    masked, n = bool(hdr[1] & 0x80), hdr[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn._read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn._read_exact(8))[0]
    if masked:
        raise AssertionError("server frame is masked")
    return fin, opcode, conn._read_exact(n)


class WebSocket(h.RingTestCase):
    def setUp(self):
        self.b = self.backend("ws")
        self.lb = self.ringlb(h.make_config(target_groups=[h.target_group("web", [self.b])]))
        self.port = self.lb.port("main")

    def handshake(self, c):
        key = base64.b64encode(os.urandom(16)).decode()
        c.request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                         ("Sec-WebSocket-Key", key),
                                         ("Sec-WebSocket-Version", "13")])
        r = c.read_response()
        self.assertEqual(r.status, 101, r)
        self.assertEqual((r.header("Upgrade") or "").lower(), "websocket", r)
        self.assertIn("upgrade", (r.header("Connection") or "").lower(), r)
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.assertEqual(r.header("Sec-WebSocket-Accept"), accept, r)
        return r

    def test_websocket_echo_and_close(self):
        with h.Conn(self.port) as c:
            self.handshake(c)
            msgs = [(1, b"hello"), (1, "x\u00e9".encode() * 500), (2, os.urandom(70000)),
                    (1, b"last")]
            for op, payload in msgs:
                c.send(ws_frame(op, payload))
                fin, rop, data = ws_read(c)
                self.assertTrue(fin)
                self.assertEqual(rop, op)
                self.assertEqual(data, payload)
            # several frames in one write
            c.send(b"".join(ws_frame(1, f"m{i}".encode()) for i in range(20)))
            for i in range(20):
                self.assertEqual(ws_read(c), (True, 1, f"m{i}".encode()))
            # close handshake: the server answers with a close frame (or closes) and the
            # tunnel ends on both sides
            c.send(ws_frame(8, struct.pack("!H", 1000)))
            try:
                fin, op, data = ws_read(c)
                self.assertEqual(op, 8, f"expected a close frame, got opcode {op}")
            except h.ConnectionClosed:
                pass
            self.assertTrue(c.wait_closed(5), "tunnel not closed after the close handshake")

    def test_websocket_client_disconnect_does_not_disturb_others(self):
        a = h.Conn(self.port)
        try:
            self.handshake(a)
            a.send(ws_frame(1, b"ping-a"))
            self.assertEqual(ws_read(a), (True, 1, b"ping-a"))
        finally:
            a.close()       # abrupt: no close frame
        with h.Conn(self.port) as c:
            self.handshake(c)
            c.send(ws_frame(1, b"still-there"))
            self.assertEqual(ws_read(c), (True, 1, b"still-there"))
        self.assertEqual(h.http(self.port, "GET", "/").text, "hello from ws\n")


if __name__ == "__main__":
    h.main()
