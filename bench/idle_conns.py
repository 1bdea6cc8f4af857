#!/usr/bin/env python3
"""idle_conns.py — open N keep-alive connections to a proxy and hold them idle.

Used by bench/run.sh --idle (and bench/tls.sh, with --tls) to measure a proxy's memory per
idle keep-alive connection: each connection sends one `GET / HTTP/1.1` request, reads the
complete response (so the proxy has gone through a full request and holds the connection as an
idle keep-alive one), then stays open. When all are established the script prints "ready N"
(flushed) and holds them until it is killed (SIGTERM/SIGINT) or --hold seconds pass.

With --tls each connection first completes a TLS 1.3 handshake (Python's ssl module, SNI
--sni, default bench.test; ALPN http/1.1; the certificate is not verified: the bench uses a
self-signed one), then sends the request over TLS. A full handshake every time: no session is
reused between the connections.

    python3 bench/idle_conns.py --port 18080 [--host 127.0.0.1] [-n 10000] [--hold 120]
                                [--batch 500] [--path /] [--tls [--sni NAME]]

Exit status: 0 after holding, 1 when connections failed or answers were not 200.
"""
import argparse
import resource
import selectors
import signal
import socket
import ssl
import sys
import time


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def response_complete(buf):
    """True when buf holds one complete response with Content-Length (or no body)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower().split("\r\n")
    clen = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            clen = int(value.strip())
        elif name.strip() == "transfer-encoding":
            return buf.endswith(b"0\r\n\r\n")
    return len(buf) >= end + 4 + clen


def open_batch(host, port, count, request, timeout, tls=None, sni=None):
    """Open count connections concurrently, (with tls, an ssl.SSLContext: complete a TLS
    handshake on each,) send the request on each, read each response.
    Returns (open sockets, failures)."""
    sel = selectors.DefaultSelector()
    # state per socket: "connect", "handshake", "send", "recv"
    socks, bufs, state, failed = [], {}, {}, 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            failed += 1
            continue
        sel.register(s, selectors.EVENT_WRITE)
        state[s] = "connect"
        bufs[s] = b""
    deadline = time.monotonic() + timeout
    pending = len(state)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                if state[s] == "connect":
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError("connect failed")
                    if tls is not None:
                        # the wrapped socket replaces s (same file descriptor)
                        sel.unregister(s)
                        del state[s], bufs[s]
                        s = tls.wrap_socket(s, server_hostname=sni,
                                            do_handshake_on_connect=False)
                        sel.register(s, selectors.EVENT_WRITE)
                        state[s] = "handshake"
                        bufs[s] = b""
                    else:
                        state[s] = "send"
                if state[s] == "handshake":
                    try:
                        s.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(s, selectors.EVENT_WRITE)
                        continue
                    state[s] = "send"
                if state[s] == "send":
                    try:
                        s.send(request)
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        sel.modify(s, selectors.EVENT_WRITE)
                        continue
                    state[s] = "recv"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    raise OSError("closed by peer")
                bufs[s] += data
                while tls is not None and s.pending():   # decrypted bytes left in OpenSSL
                    bufs[s] += s.recv(65536)
                if response_complete(bufs[s]):
                    if not bufs[s].startswith(b"HTTP/1.1 200"):
                        raise OSError("status " + bufs[s][:12].decode("latin-1"))
                    sel.unregister(s)
                    socks.append(s)
                    pending -= 1
            except (OSError, ValueError):   # ssl.SSLError is an OSError
                sel.unregister(s)
                s.close()
                failed += 1
                pending -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        failed += 1
    sel.close()
    return socks, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000, help="connections (default 10000)")
    ap.add_argument("--hold", type=float, default=120.0, help="seconds to hold (default 120)")
    ap.add_argument("--batch", type=int, default=500, help="connections opened at once")
    ap.add_argument("--path", default="/")
    ap.add_argument("--tls", action="store_true",
                    help="TLS 1.3 connections (certificate not verified)")
    ap.add_argument("--sni", default="bench.test",
                    help="with --tls: server name sent (default bench.test)")
    args = ap.parse_args()

    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.minimum_version = ssl.TLSVersion.TLSv1_3
        tls.set_alpn_protocols(["http/1.1"])

    limit = raise_nofile(args.n)
    if limit < args.n + 16:
        print(f"idle_conns: open-file limit {limit} is below {args.n}: raise ulimit -n",
              file=sys.stderr)
        return 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    authority = args.sni if args.tls else f"{args.host}:{args.port}"
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {authority}\r\n"
               f"User-Agent: idle_conns\r\n\r\n").encode()
    socks, failed = [], 0
    t0 = time.monotonic()
    while len(socks) + failed < args.n and not stop:
        got, bad = open_batch(args.host, args.port,
                              min(args.batch, args.n - len(socks) - failed), request, 30.0,
                              tls, args.sni)
        socks += got
        failed += bad
    elapsed = time.monotonic() - t0
    if failed:
        print(f"idle_conns: {failed} of {args.n} connections failed", file=sys.stderr)
    print(f"ready {len(socks)} failed {failed} in {elapsed:.1f}s", flush=True)

    end = time.monotonic() + args.hold
    while not stop and time.monotonic() < end:
        time.sleep(0.2)
    for s in socks:
        s.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
