"""Shared helpers for ringlb's black-box integration tests (Python 3.11 standard library only).

Every tests/integration/test_*.py imports this module, defines unittest.TestCase classes (usually
derived from RingTestCase) and ends with `harness.main()`, which runs the tests, prints a closing
line "N passed, N failed" and exits non-zero on any failure.

Environment (set by tests/CMakeLists.txt; defaults allow running a file by hand from the repo
root, e.g. `python3 tests/integration/test_proxy_basic.py [TestClass.test_name ...]`):
  RINGLB_BIN         path of the ringlb binary          (default build/ringlb)
  RINGLB_BACKEND     path of the rlb-backend binary     (default build/rlb-backend)
  RINGLB_SOURCE_DIR  repository root                    (default: two levels above this file)
  RINGLB_TEST_TIMEOUT  whole-file watchdog in seconds   (default 280; ctest's limit is 300)

What is here:
  free_port()                         a currently free 127.0.0.1 TCP port (bind 0, read, close)
  start_backend(...) -> Backend       a real rlb-backend process on a free port
  start_ringlb(text, ...) -> RingLB   a real ringlb process running the given config
  config_dict()/make_config()         build a config (SPEC section 2) as a dict / JSON text
  listener(), target_group(), forward(), fixed_response()   pieces of a config
  Conn                                raw HTTP/1.x client over one TCP connection: send bytes,
                                      read responses (Content-Length, chunked, until-close,
                                      HEAD/1xx/204/304 without body), pipelined responses
  RssSampler                          samples a process' VmRSS in a background thread
  RingTestCase                        unittest.TestCase whose backend()/ringlb() helpers stop the
                                      processes at teardown and fail the test when ringlb crashed
                                      or printed a sanitizer report

All processes started here get PR_SET_PDEATHSIG(SIGKILL), so they die with the test process
even when ctest kills it on timeout. Only 127.0.0.1 is used.
"""

import atexit
import ctypes
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("RINGLB_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
RINGLB_BIN = os.environ.get("RINGLB_BIN") or os.path.join(SOURCE_DIR, "build", "ringlb")
RINGLB_BACKEND = os.environ.get("RINGLB_BACKEND") or os.path.join(SOURCE_DIR, "build",
                                                                    "rlb-backend")

LOCALHOST = "127.0.0.1"
DEFAULT_TIMEOUT = 10.0          # seconds, for every socket operation unless a test says otherwise
SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")

# --------------------------------------------------------------------------------------------
# process plumbing

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # pragma: no cover - non-glibc
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """Runs in the forked child: die when the test process dies (ctest timeout, Ctrl-C)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_live_procs = set()


def _kill_leftovers():
    for p in list(_live_procs):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


atexit.register(_kill_leftovers)


def spawn(argv, **kw):
    """subprocess.Popen with PDEATHSIG and registration for cleanup at exit."""
    p = subprocess.Popen(argv, preexec_fn=_child_setup, **kw)
    _live_procs.add(p)
    return p


def run(argv, timeout=30, text=True, **kw):
    """subprocess.run bounded in time, output captured (text unless text=False)."""
    return subprocess.run(argv, capture_output=True, text=text, timeout=timeout,
                          preexec_fn=_child_setup, **kw)


_port_rng = random.Random(os.getpid() ^ int(time.time() * 1000))
_ports_given = set()


def free_port(host=LOCALHOST):
    """A TCP port that is free right now on host. Chosen at random below the kernel's
    ephemeral range (32768+), so that outgoing connections (ringlb to its targets, clients)
    cannot take it between this call and the bind that uses it; bench ports are avoided."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = _port_rng.randrange(20000, 32000)
        if 18000 <= port < 20000 or port in _ports_given:
            continue   # never the same port twice in one test process (two binds in a config)
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            _ports_given.add(port)
            return port
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value (returned) or raise AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - the predicate may fail while waiting
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def can_connect(port, host=LOCALHOST, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def rss_kib(pid):
    """VmRSS of pid in KiB (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler(threading.Thread):
    """Samples VmRSS of a pid every `interval` seconds until stop(); .max_kib, .samples."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.max_kib = 0
        self.samples = 0
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            try:
                v = rss_kib(self.pid)
            except (OSError, RuntimeError):
                break
            self.samples += 1
            self.max_kib = max(self.max_kib, v)
            self._stop_ev.wait(self.interval)

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=5)
        return self.max_kib


# --------------------------------------------------------------------------------------------
# backend (build/rlb-backend)

class Backend:
    """A running rlb-backend. .port, .url, .name, .proc, .host, .addr ("host:port")."""

    def __init__(self, proc, port, name, host=LOCALHOST):
        self.proc = proc
        self.port = port
        self.name = name
        self.host = host
        hp = f"[{host}]" if ":" in host else host
        self.url = f"http://{hp}:{port}"
        self.addr = f"{hp}:{port}"

    def stats(self):
        """GET /stats directly on the backend (not through ringlb): dict."""
        c = Conn(self.port, host=self.host)
        try:
            c.request("GET", "/stats", headers=[("Connection", "close")])
            r = c.read_response()
            if r.status != 200:
                raise AssertionError(f"backend /stats answered {r.status}")
            return r.json()
        finally:
            c.close()

    def stats_delta(self, fn):
        """Run fn() and return {"requests": n, "connections": n} that reached this backend during
        it, not counting the /stats calls themselves (calibrated by two back-to-back calls)."""
        s0 = self.stats()
        s1 = self.stats()
        own = {k: s1[k] - s0[k] for k in ("requests", "connections")}
        fn()
        s2 = self.stats()
        return {k: s2[k] - s1[k] - own[k] for k in ("requests", "connections")}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        _live_procs.discard(self.proc)


def start_backend(name=None, threads=1, idle_close_ms=0, extra_args=(), timeout=10.0,
                  host=LOCALHOST):
    """Start rlb-backend on a free port of host (127.0.0.1 or ::1); wait for its
    "listening HOST:PORT" line (IPv6 hosts in brackets)."""
    if not os.access(RINGLB_BACKEND, os.X_OK):
        raise AssertionError(f"backend binary not found: {RINGLB_BACKEND} (build rlb-backend)")
    last_err = ""
    for _attempt in range(3):       # another process may grab the free port first: retry
        port = free_port(host)
        bname = name or f"b{port}"
        hp = f"[{host}]" if ":" in host else host
        argv = [RINGLB_BACKEND, "--listen", f"{hp}:{port}", "--name", bname]
        if threads and threads != 1:
            argv += ["--threads", str(threads)]
        if idle_close_ms:
            argv += ["--idle-close-ms", str(idle_close_ms)]
        argv += list(extra_args)
        proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        ready = threading.Event()
        want = f"listening {hp}:{port}"
        lines = []

        def pump(stream, is_stdout):
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if is_stdout and line.strip() == want:
                    ready.set()
            stream.close()

        threading.Thread(target=pump, args=(proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(proc.stderr, False), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.wait(0.05):
                return Backend(proc, port, bname, host)
            if proc.poll() is not None:
                break
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        _live_procs.discard(proc)
        last_err = "\n".join(lines[-20:])
    raise AssertionError(f"rlb-backend did not start (expected '{want}'):\n{last_err}")


# --------------------------------------------------------------------------------------------
# configuration builders (SPEC section 2; emitted as JSON, which ringlb accepts)

def fixed_response(status=200, body=None, content_type="text/plain"):
    fr = {"status_code": status}
    if content_type:
        fr["content_type"] = content_type
    if body is not None:
        fr["message_body"] = body
    return {"fixed_response": fr}


def forward(*groups):
    """forward(name, ...) or forward((name, weight), ...)."""
    tgs = []
    for g in groups:
        if isinstance(g, tuple):
            tgs.append({"name": g[0], "weight": g[1]})
        else:
            tgs.append({"name": g, "weight": 1})
    return {"forward": {"target_groups": tgs}}


def _target_str(t):
    if isinstance(t, Backend):
        return t.addr
    if isinstance(t, int):
        return f"{LOCALHOST}:{t}"
    return str(t)


def target_group(name, targets=(), health_check=None, **kw):
    """A target group; targets are Backend objects, ports or "host:port" strings.
    Health checks are disabled unless health_check is given (targets are then routable)."""
    tg = {"name": name, "protocol": "HTTP", "port": 80, "algorithm": "round_robin",
          "health_check": health_check if health_check is not None else {"enabled": False},
          "targets": [_target_str(t) for t in targets]}
    tg.update(kw)
    return tg


def listener(name="main", default_action=None, rules=None, port=None, host=LOCALHOST, **kw):
    """A plain-HTTP listener on host (127.0.0.1 or ::1; a free port unless port is given)."""
    hp = f"[{host}]" if ":" in host else host
    lst = {"name": name, "listen": f"{hp}:{port or free_port(host)}", "protocol": "HTTP"}
    lst.update(kw)
    lst["default_action"] = default_action or fixed_response(404, "no route")
    lst["rules"] = rules or []
    return lst


def config_dict(listeners=None, target_groups=None, admin=True, **top):
    """A whole config as a dict. Without listeners: one listener "main" forwarding to the first
    target group (or a fixed 404). admin=True gives an admin block on a free port."""
    target_groups = list(target_groups or [])
    if listeners is None:
        act = forward(target_groups[0]["name"]) if target_groups else None
        listeners = [listener("main", act)]
    cfg = {}
    # short: nothing should be in flight at teardown; drain tests set their own value
    top.setdefault("shutdown_timeout", "3s")
    cfg.update(top)
    if admin is True:
        cfg["admin"] = {"listen": f"{LOCALHOST}:{free_port()}"}
    elif isinstance(admin, dict):
        cfg["admin"] = admin
    cfg["listeners"] = listeners
    cfg["target_groups"] = target_groups
    return cfg


def make_config(listeners=None, target_groups=None, admin=True, **top):
    """config_dict(...) serialised as JSON text (valid YAML flow syntax as well)."""
    return json.dumps(config_dict(listeners, target_groups, admin, **top), indent=2)


def _split_hostport(s):
    s = str(s)
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return host, int(port)
    host, _, port = s.rpartition(":")
    return host, int(port)


def _listeners_of(text):
    """{name: (host, port)} and admin (host, port) or None, from JSON or simple YAML text."""
    try:
        cfg = json.loads(text)
        ls = {l["name"]: _split_hostport(l["listen"]) for l in cfg.get("listeners", [])}
        adm = cfg.get("admin", {}).get("listen") if isinstance(cfg.get("admin"), dict) else None
        return ls, (_split_hostport(adm) if adm else None)
    except ValueError:
        pass
    ls, adm, cur, in_admin = {}, None, None, False
    for line in text.splitlines():
        s = line.strip()
        if re.match(r"^admin\s*:", line):
            in_admin = True
            continue
        if line and not line[0].isspace():
            in_admin = False
        m = re.match(r"^-?\s*name\s*:\s*['\"]?([^'\"#]+?)['\"]?\s*$", s)
        if m:
            cur = m.group(1)
        m = re.match(r"^-?\s*listen\s*:\s*['\"]?([^'\"#\s]+)['\"]?", s)
        if m:
            if in_admin:
                adm = _split_hostport(m.group(1))
            elif cur:
                ls[cur] = _split_hostport(m.group(1))
    return ls, adm


# --------------------------------------------------------------------------------------------
# ringlb process

class RingLB:
    """A running ringlb. .proc, .port(listener), .admin_port, .config_path, .stderr (text)."""

    def __init__(self, text, threads=2, extra_args=(), log_level="info"):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="ringlb-test-")
        self.config_path = os.path.join(self.tmpdir.name, "ringlb.yaml")
        self.stderr_path = os.path.join(self.tmpdir.name, "stderr.log")
        self.stdout_path = os.path.join(self.tmpdir.name, "stdout.log")
        self.threads = threads
        self.write_config(text)
        self.listeners, adm = _listeners_of(text)
        self.admin_port = adm[1] if adm else None
        self.expect_clean_exit = True   # teardown checks exit status 0
        self.argv = [RINGLB_BIN, "-c", self.config_path, "--threads", str(threads),
                     "--log-level", log_level] + list(extra_args)
        if not os.access(RINGLB_BIN, os.X_OK):
            raise AssertionError(f"ringlb binary not found: {RINGLB_BIN} (build ringlb)")
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                          stderr=self._err)
        self.pid = self.proc.pid
        self._stopped = False

    # ---- start-up
    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        for name, (host, port) in self.listeners.items():
            while not can_connect(port, host, timeout=0.5):
                self._check_alive(f"listener {name} ({host}:{port}) to accept")
                if time.monotonic() > deadline:
                    raise AssertionError(f"ringlb listener {name} {host}:{port} not accepting "
                                         f"after {timeout}s\n{self.stderr_tail()}")
                time.sleep(0.05)
        if self.admin_port:
            while True:
                self._check_alive("admin /healthz")
                try:
                    c = Conn(self.admin_port, timeout=2)
                    try:
                        c.request("GET", "/healthz", headers=[("Connection", "close")])
                        if c.read_response().status == 200:
                            break
                    finally:
                        c.close()
                except (OSError, HTTPError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"ringlb admin /healthz not 200 after {timeout}s\n"
                                         f"{self.stderr_tail()}")
                time.sleep(0.05)
        return self

    def _check_alive(self, what):
        if self.proc.poll() is not None:
            raise AssertionError(f"ringlb exited with status {self.proc.returncode} while "
                                 f"waiting for {what}\nargv: {self.argv}\n{self.stderr_tail()}")

    # ---- accessors
    def port(self, listener="main"):
        return self.listeners[listener][1]

    @property
    def stderr(self):
        try:
            self._err.flush()
        except ValueError:
            pass
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_tail(self, n=4000):
        t = self.stderr
        return "---- ringlb stderr (tail) ----\n" + t[-n:]

    def rss_kib(self):
        return rss_kib(self.pid)

    def write_config(self, text):
        """Replace the config file atomically (write + rename), as an operator would."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    # ---- signals
    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def terminate(self, timeout=20.0):
        """SIGTERM and wait (bounded); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError(f"ringlb did not exit within {timeout}s of SIGTERM\n"
                                 f"{self.stderr_tail()}")

    def stop(self):
        """Teardown: SIGTERM, bounded wait; AssertionError if it crashed, did not exit cleanly
        or printed a sanitizer report."""
        if self._stopped:
            return
        self._stopped = True
        try:
            rc = self.proc.poll()
            if rc is None:
                rc = self.terminate()
            err = self.stderr
            problems = [m for m in SANITIZER_MARKERS if m in err]
            if problems:
                raise AssertionError(f"ringlb printed sanitizer reports {problems}\n"
                                     f"{self.stderr_tail(12000)}")
            if self.expect_clean_exit and rc != 0:
                raise AssertionError(f"ringlb exit status {rc} (expected 0 after SIGTERM)\n"
                                     f"{self.stderr_tail()}")
        finally:
            _live_procs.discard(self.proc)
            for f in (self._err, self._out):
                try:
                    f.close()
                except Exception:
                    pass
            self.tmpdir.cleanup()


def start_ringlb(config_text, threads=2, extra_args=(), ready_timeout=10.0):
    """Start ringlb with config_text (YAML or JSON) and wait until its listeners accept TCP and,
    when there is an admin block, GET /healthz answers 200."""
    r = RingLB(config_text, threads=threads, extra_args=extra_args)
    try:
        return r.wait_ready(ready_timeout)
    except BaseException:
        try:
            r.expect_clean_exit = False
            r.stop()
        except AssertionError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# raw HTTP/1.x client

class HTTPError(Exception):
    """The peer's bytes are not a well-formed HTTP response, or the connection ended early."""


class ConnectionClosed(HTTPError):
    pass


class Response:
    def __init__(self, version, status, reason, headers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] in order, names as received
        self.raw_head = raw_head
        self.body = b""
        self.body_len = 0
        self.chunked = False
        self.trailers = []

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has_header(self, name):
        return self.header(name) is not None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        hdrs = repr(self.headers)
        if len(hdrs) > 1500:
            hdrs = hdrs[:1500] + f"...({len(hdrs)} chars)"
        return (f"<Response {self.status} {self.reason!r} headers={hdrs} "
                f"body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''}>")


def build_request(method, target, headers=None, body=None, version="HTTP/1.1",
                  host=LOCALHOST):
    """Request bytes. A Host header is added unless headers has one or host is None;
    Content-Length is added for a body unless headers has Content-Length/Transfer-Encoding."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    data = head.encode("latin-1") + b"\r\n"
    if body:
        data += body
    return data


def chunked_body(chunks, trailers=()):
    """Encode a list of byte strings with chunked transfer coding (empty chunks are skipped)."""
    out = bytearray()
    for c in chunks:
        if c:
            out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    return bytes(out)


class Conn:
    """One client TCP connection with a raw HTTP/1.x reader."""

    MAX_HEAD = 1 << 20

    def __init__(self, port, host=LOCALHOST, timeout=DEFAULT_TIMEOUT, sock=None):
        self.port = port
        self.hostname = host
        self.sock = sock or socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False
        self._scratch = None

    def settimeout(self, t):
        self.sock.settimeout(t)

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1",
                host="default"):
        if host == "default":
            hn = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
            host = f"{hn}:{self.port}"
        self.send(build_request(method, target, headers, body, version, host))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- low-level reading
    def _fill(self, n=65536):
        if self.eof:
            raise ConnectionClosed("connection closed by peer")
        try:
            d = self.sock.recv(n)
        except ConnectionResetError as e:
            self.eof = True
            raise ConnectionClosed(f"connection reset by peer: {e}") from e
        if not d:
            self.eof = True
            raise ConnectionClosed("connection closed by peer")
        self.buf += d

    def _read_until(self, marker, limit):
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise HTTPError(f"no {marker!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(marker) + 1)
            self._fill()

    def _read_exact(self, n, sink=None):
        """n bytes: returned (sink None) or passed to sink(memoryview) and counted."""
        if sink is None:
            while len(self.buf) < n:
                self._fill(max(65536, n - len(self.buf)))
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        take = min(n, len(self.buf))
        if take:
            sink(memoryview(bytes(self.buf[:take])))
            del self.buf[:take]
        left = n - take
        if self._scratch is None:
            self._scratch = bytearray(1 << 20)
        scratch = self._scratch
        mv = memoryview(scratch)
        while left:
            try:
                got = self.sock.recv_into(mv, min(left, len(scratch)))
            except ConnectionResetError as e:
                self.eof = True
                raise ConnectionClosed(f"reset with {left} body bytes missing") from e
            if not got:
                self.eof = True
                raise ConnectionClosed(f"closed with {left} body bytes missing")
            sink(mv[:got])
            left -= got
        return b""

    def read_available(self, timeout=0.3):
        """Whatever bytes arrive within timeout (b"" on EOF or nothing)."""
        out = bytes(self.buf)
        self.buf.clear()
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    self.eof = True
                    break
                out += d
        except (socket.timeout, ConnectionResetError):
            pass
        finally:
            self.sock.settimeout(old)
        return out

    def wait_closed(self, timeout=5.0):
        """True when the peer closes (FIN or RST) within timeout with no further data;
        raises HTTPError if unexpected data arrives, returns False on timeout."""
        if self.buf:
            raise HTTPError(f"unexpected bytes before close: {bytes(self.buf[:200])!r}")
        if self.eof:
            return True
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
            if d:
                raise HTTPError(f"unexpected bytes instead of close: {d[:200]!r}")
            self.eof = True
            return True
        except ConnectionResetError:
            self.eof = True
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    # ---- responses
    def read_head(self):
        raw = self._read_until(b"\r\n\r\n", self.MAX_HEAD)
        lines = raw[:-4].split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise HTTPError(f"bad status line {lines[0][:200]!r}")
        headers = []
        for ln in lines[1:]:
            if b":" not in ln:
                raise HTTPError(f"bad header line {ln[:200]!r}")
            k, v = ln.split(b":", 1)
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        return Response(m.group(1).decode(), int(m.group(2)),
                        (m.group(3) or b"").decode("latin-1"), headers, raw)

    def read_response(self, method="GET", skip_interim=True, sink=None):
        """Read one response. method tells whether a body may follow (HEAD). Interim 1xx
        responses (except 101) are skipped unless skip_interim is False. With sink, body bytes
        are passed to sink(memoryview) instead of being kept (resp.body_len still counts)."""
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101:
                if skip_interim:
                    continue
                return r
            break
        if method.upper() == "HEAD" or r.status in (101, 204, 304):
            return r
        te = ",".join(r.header_all("Transfer-Encoding")).lower()
        if te:
            if te.replace(" ", "").split(",")[-1] != "chunked":
                raise HTTPError(f"response with Transfer-Encoding {te!r}")
            r.chunked = True
            self._read_chunked(r, sink)
            return r
        cls = r.header_all("Content-Length")
        if cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise HTTPError(f"bad Content-Length {cls!r}")
            n = int(cls[0])
            r.body = self._read_exact(n, sink)
            r.body_len = n
            return r
        # no framing: body until close
        parts = [bytes(self.buf)]
        self.buf.clear()
        while not self.eof:
            try:
                d = self.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not d:
                break
            parts.append(d)
        self.eof = True
        body = b"".join(parts)
        if sink:
            sink(memoryview(body))
        else:
            r.body = body
        r.body_len = len(body)
        return r

    def _read_chunked(self, r, sink):
        body = bytearray()
        total = 0
        while True:
            line = self._read_until(b"\r\n", 4096)[:-2]
            size_s = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_s):
                raise HTTPError(f"bad chunk size line {line[:100]!r}")
            size = int(size_s, 16)
            if size == 0:
                break
            data = self._read_exact(size, sink)
            if sink is None:
                body += data
            total += size
            if self._read_exact(2) != b"\r\n":
                raise HTTPError("chunk data not followed by CRLF")
        while True:  # trailers
            line = self._read_until(b"\r\n", 65536)[:-2]
            if not line:
                break
            k, _, v = line.partition(b":")
            r.trailers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        r.body = bytes(body)
        r.body_len = total

    def read_responses(self, methods):
        """Several (pipelined) responses; methods is a list like ["GET", "HEAD", ...]."""
        return [self.read_response(m) for m in methods]

    def roundtrip(self, method, target, headers=None, body=None, **kw):
        self.request(method, target, headers, body, **kw)
        return self.read_response(method)


class PatternChecker:
    """A read_response() sink checking the backend's /bytes/N?pattern=1 body: byte i is
    'a' + (i % 26). .count bytes seen, .error the first mismatch (or None)."""

    PIECE = 1 << 20
    PAT = bytes(97 + i % 26 for i in range(PIECE + 26))

    def __init__(self):
        self.count = 0
        self.error = None

    def __call__(self, mv):
        pos = 0
        while pos < len(mv):
            piece = mv[pos:pos + self.PIECE]
            s = self.count % 26
            if self.error is None and bytes(piece) != self.PAT[s:s + len(piece)]:
                got = bytes(piece)
                i = next(k for k in range(len(got)) if got[k] != self.PAT[s + k])
                self.error = (f"body byte {self.count + i} is {got[i:i + 1]!r}, "
                              f"expected {self.PAT[s + i:s + i + 1]!r}")
            self.count += len(piece)
            pos += len(piece)


def http(port, method, target, headers=None, body=None, version="HTTP/1.1", host="default",
         timeout=DEFAULT_TIMEOUT):
    """One request on a fresh connection (closed afterwards)."""
    with Conn(port, timeout=timeout) as c:
        c.request(method, target, headers, body, version, host)
        return c.read_response(method)


def send_raw(port, data, method="GET", timeout=DEFAULT_TIMEOUT):
    """Send raw bytes on a fresh connection, read one response, close. A send failure (the
    peer may answer and close before reading everything) does not prevent reading the answer."""
    with Conn(port, timeout=timeout) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return c.read_response(method)


def forwarded_headers(resp):
    """Parse a backend /headers answer: (json dict, {lowercased name: [values]})."""
    j = resp.json()
    d = {}
    for k, v in j["headers"]:
        d.setdefault(k.lower(), []).append(v)
    return j, d


# --------------------------------------------------------------------------------------------
# unittest glue

class RingTestCase(unittest.TestCase):
    """TestCase whose helpers stop every process they started at teardown (ringlb first, then
    backends), failing the test if ringlb crashed or printed a sanitizer report."""

    maxDiff = 4000

    def backend(self, name=None, **kw):
        b = start_backend(name, **kw)
        self.addCleanup(b.stop)
        return b

    def ringlb(self, config_text, threads=2, extra_args=(), **kw):
        r = start_ringlb(config_text, threads=threads, extra_args=extra_args, **kw)
        self.addCleanup(r.stop)
        return r

    def assertLBError(self, resp, code, ctx=""):
        """An error produced by the load balancer itself: status, ALB-style HTML page that names
        the code, Server: awselb/2.0."""
        self.assertEqual(resp.status, code, f"{ctx}: {resp!r}")
        self.assertEqual(resp.header("Server"), "awselb/2.0", f"{ctx}: {resp!r}")
        ctype = (resp.header("Content-Type") or "").lower()
        self.assertTrue(ctype.startswith("text/html"), f"{ctx}: content-type {ctype!r}")
        body = resp.text.lower()
        self.assertIn("<html", body, f"{ctx}: body is not an HTML page: {resp.body[:300]!r}")
        self.assertIn(str(code), body, f"{ctx}: body does not name {code}: {resp.body[:300]!r}")
        self.assertIsNone(resp.header("X-Backend"), f"{ctx}: came from a backend: {resp!r}")


def main():
    """Run the tests of the calling module (or those named on the command line), print
    "N passed, N failed" and exit non-zero on failure."""
    limit = float(os.environ.get("RINGLB_TEST_TIMEOUT", "280"))

    def watchdog():
        sys.stdout.write(f"\nWATCHDOG: test file exceeded {limit}s; aborting\n0 passed, 1 failed\n")
        sys.stdout.flush()
        _kill_leftovers()
        os._exit(1)

    t = threading.Timer(limit, watchdog)
    t.daemon = True
    t.start()
    mod = sys.modules["__main__"]
    loader = unittest.TestLoader()
    names = sys.argv[1:]
    suite = loader.loadTestsFromNames(names, mod) if names else loader.loadTestsFromModule(mod)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    t.cancel()
    # a test counts once however many of its subtests / cleanups failed
    bad = {str(getattr(tc, "test_case", tc)) for tc, _ in result.failures + result.errors}
    bad |= {str(tc) for tc in result.unexpectedSuccesses}
    failed = len(bad)
    passed = max(0, result.testsRun - failed - len(result.skipped)
                 - len(result.expectedFailures))
    print(f"{passed} passed, {failed} failed", flush=True)
    _kill_leftovers()
    sys.exit(1 if failed or result.testsRun == 0 else 0)
