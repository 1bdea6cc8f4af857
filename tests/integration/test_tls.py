"""HTTPS listeners through the real binary (SPEC section 7): SNI certificate choice, ALPN,
resumption, policies, hostile handshakes, X-Forwarded-Proto, certificate rotation by SIGHUP.
Certificates are generated at test time with the openssl CLI.

Run: python3 tests/integration/test_tls.py
"""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings

import harness as h

# TLS 1.0/1.1 are deprecated in Python's ssl module; the tests use them on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def make_cert(d, name, sans, kind="ec", cn=None, days=30):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
        ["-newkey", "rsa:2048"]
    argv = ["openssl", "req", "-x509", *newkey, "-nodes", "-days", str(days),
            "-subj", "/CN=" + (cn or (sans[0] if sans else name)), "-keyout", key, "-out", pem]
    if sans:
        argv += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return {"cert": pem, "key": key}


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def client_ctx(min_version=None, max_version=None, alpn=("http/1.1",), ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def handshake(port, sni=None, ctx=None, session=None, timeout=10):
    ctx = ctx or client_ctx()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname=sni, session=session)
    return s


def https_get(s, path="/", host="x"):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, hdrs, body


class TLS(h.RingTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ringlb-tls-")
        d = self.dir
        self.default = make_cert(d, "default", ["default.test"])
        self.rsa = make_cert(d, "api-rsa", ["api.example.com"], kind="rsa")
        self.ec = make_cert(d, "api-ec", ["api.example.com"])
        self.wild = make_cert(d, "wild", ["*.example.com"])
        self.cn_only = make_cert(d, "cnonly", [], cn="legacy.example.org")
        self.b = self.backend("b")

    def start(self, certs, policy=None, header_timeout=None, extra_listeners=()):
        tls = {"certificates": certs}
        if policy:
            tls["security_policy"] = policy
        kw = {"protocol": "HTTPS", "tls": tls}
        if header_timeout:
            kw["header_timeout"] = header_timeout
        lst = h.listener("main", h.forward("g"), **kw)
        cfg = h.config_dict(listeners=[lst, *extra_listeners],
                            target_groups=[h.target_group("g", [self.b])])
        self.cfg = cfg
        self.lb = self.ringlb(json.dumps(cfg))
        return self.lb.port("main")

    def presented(self, port, sni, ctx=None):
        with handshake(port, sni, ctx) as s:
            return s.getpeercert(binary_form=True)

    def test_sni_selection(self):
        port = self.start([self.default, self.rsa, self.ec, self.wild, self.cn_only])
        self.assertEqual(self.presented(port, None), der_of(self.default["cert"]))
        self.assertEqual(self.presented(port, "unknown.test"), der_of(self.default["cert"]))
        # exact name: ECDSA preferred over RSA
        self.assertEqual(self.presented(port, "api.example.com"), der_of(self.ec["cert"]))
        self.assertEqual(self.presented(port, "API.Example.COM"), der_of(self.ec["cert"]))
        # a client without ECDSA gets the RSA certificate of the same name (TLS 1.2)
        rsa_only = client_ctx(max_version=ssl.TLSVersion.TLSv1_2,
                              ciphers="ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual(self.presented(port, "api.example.com", rsa_only),
                         der_of(self.rsa["cert"]))
        # wildcard covers exactly one label
        self.assertEqual(self.presented(port, "www.example.com"), der_of(self.wild["cert"]))
        self.assertEqual(self.presented(port, "a.b.example.com"), der_of(self.default["cert"]))
        self.assertEqual(self.presented(port, "example.com"), der_of(self.default["cert"]))
        # CN used when a certificate has no SAN
        self.assertEqual(self.presented(port, "legacy.example.org"),
                         der_of(self.cn_only["cert"]))

    def test_requests_alpn_and_forwarded_proto(self):
        port = self.start([self.default])
        with handshake(port, "default.test") as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            for _ in range(3):      # keep-alive over TLS
                status, hdrs, body = https_get(s, "/headers", host="default.test")
                self.assertEqual(status, 200)
                fwd = {k.lower(): v for k, v in json.loads(body)["headers"]}
                self.assertEqual(fwd["x-forwarded-proto"], "https")
                self.assertEqual(fwd["x-forwarded-port"], str(port))
        out = h.run(["curl", "-sS", "-k", "--max-time", "10", "--resolve",
                     f"default.test:{port}:127.0.0.1", f"https://default.test:{port}/"],
                    timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "hello from b\n")
        # a large response and a large upload through TLS
        with handshake(port, "default.test") as s:
            status, hdrs, body = https_get(s, "/bytes/3000000", host="default.test")
            self.assertEqual((status, len(body)), (200, 3000000))

    def test_session_resumption(self):
        port = self.start([self.default])
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_ctx(min_version=version, max_version=version)
            s1 = handshake(port, "default.test", ctx)
            https_get(s1)                 # TLS 1.3 tickets arrive after the handshake
            sess = s1.session
            s1.close()
            self.assertIsNotNone(sess)
            s2 = handshake(port, "default.test", ctx, session=sess)
            self.assertTrue(s2.session_reused, f"not resumed with {version}")
            self.assertEqual(https_get(s2)[0], 200)
            sess2 = s2.session
            s2.close()
            if version == ssl.TLSVersion.TLSv1_3:
                self.assertNotEqual(sess2.id, sess.id, "no new ticket after a resumption")
            # a resumed handshake issues a fresh ticket, which resumes in turn
            s3 = handshake(port, "default.test", ctx, session=sess2)
            self.assertTrue(s3.session_reused, f"ticket from a resumption unusable ({version})")
            s3.close()

    def test_old_protocols_refused_by_default_policy(self):
        port = self.start([self.default])
        old = client_ctx(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0", alpn=None)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            handshake(port, "default.test", old).close()
        self.assertEqual(https_get(handshake(port, "default.test"))[0], 200)

    def test_old_protocols_accepted_by_2016_policy(self):
        # proves the client above can really speak TLS 1.1 (so the refusal test can fail)
        port = self.start([self.default], policy="ELBSecurityPolicy-2016-08")
        old = client_ctx(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0", alpn=None)
        try:
            s = handshake(port, "default.test", old)
        except ssl.SSLError as e:
            self.skipTest(f"this OpenSSL client cannot offer TLS 1.1: {e}")
        self.assertIn(s.version(), ("TLSv1", "TLSv1.1"))
        self.assertEqual(https_get(s)[0], 200)
        s.close()

    def test_tls13_only_policy_refuses_tls12(self):
        port = self.start([self.default], policy="ELBSecurityPolicy-TLS13-1-3-2021-06")
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            handshake(port, "default.test",
                      client_ctx(max_version=ssl.TLSVersion.TLSv1_2)).close()
        with handshake(port, "default.test") as s:
            self.assertEqual(s.version(), "TLSv1.3")

    def assert_closed_soon(self, sock, timeout=5):
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sock.recv(4096):
                    return
        except (ConnectionError, OSError):
            return
        self.fail("connection not closed")

    def test_hostile_handshakes(self):
        port = self.start([self.default], header_timeout="1s")
        for data in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 64 + b"garbage" * 10,
                     b"\x16\x03\x01\xff\xff" + b"A" * 100):
            with self.subTest(data=data[:20]):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(data)
                self.assert_closed_soon(s)
                s.close()
                self.assertEqual(https_get(handshake(port, "default.test"))[0], 200)
        # a stalled (truncated) ClientHello is closed by header_timeout
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        self.assert_closed_soon(s, timeout=8)
        s.close()
        self.assertEqual(https_get(handshake(port, "default.test"))[0], 200)

    def test_certificate_rotation_by_sighup_under_load(self):
        port = self.start([self.default])
        new = make_cert(self.dir, "default2", ["default.test"])
        stop = threading.Event()
        failures, count = [], [0]

        def load():
            while not stop.is_set():
                try:
                    with handshake(port, "default.test", timeout=10) as s:
                        if https_get(s)[0] != 200:
                            failures.append("status")
                    count[0] += 1
                except Exception as e:                       # noqa: BLE001
                    failures.append(repr(e))
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            h.wait_for(lambda: count[0] >= 30, 30, what="30 handshakes")
            self.cfg["listeners"][0]["tls"]["certificates"] = [new]
            self.lb.write_config(json.dumps(self.cfg))
            self.lb.reload()
            h.wait_for(lambda: self.presented(port, "default.test") == der_of(new["cert"]), 10,
                       what="the new certificate")
            base = count[0]
            h.wait_for(lambda: count[0] >= base + 30, 30, what="30 more handshakes")
        finally:
            stop.set()
            for t in threads:
                t.join(20)
        self.assertEqual(failures, [])

    def test_bad_certificate_reload_keeps_old(self):
        port = self.start([self.default])
        self.cfg["listeners"][0]["tls"]["certificates"] = [
            {"cert": os.path.join(self.dir, "missing.pem"), "key": self.default["key"]}]
        self.lb.write_config(json.dumps(self.cfg))
        self.lb.reload()
        time.sleep(0.5)
        self.assertEqual(self.presented(port, None), der_of(self.default["cert"]))
        self.assertEqual(https_get(handshake(port, "default.test"))[0], 200)


if __name__ == "__main__":
    h.main()
