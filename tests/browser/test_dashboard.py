"""End-to-end browser tests of the admin dashboard (GET /, issue #12): Debian's chromium
(/usr/bin/chromium, headless) driven by playwright-core from npm (tests/browser/package.json,
installed here with `npm ci` when node_modules is missing; never a browser download).

This file owns the processes, through tests/integration/harness.py (every child dies with the
test: PR_SET_PDEATHSIG): real rlb-backend targets, a real ringlb with the admin API, a paced
load on the listener (so requests/s move); dashboard_e2e.js does the browser part and the API
calls of the scenario (see its header). Screenshots go to tests/integration/artifacts/
(gitignored): dashboard.png (desktop, a deployment running, one target unhealthy),
dashboard-canary.png, dashboard-phone.png (390 px wide).

Environment: as the integration tests (RINGLB_BIN, RINGLB_BACKEND, RINGLB_SOURCE_DIR), plus
RINGLB_CHROMIUM (default /usr/bin/chromium).
Run: python3 tests/browser/test_dashboard.py [TestDashboard.test_name ...]
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness as h  # noqa: E402
from test_admin import TOKEN, api, ok_json, start_with_token  # noqa: E402

CHROMIUM = os.environ.get("RINGLB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(h.SOURCE_DIR, "tests", "integration", "artifacts")
DRIVER = os.path.join(HERE, "dashboard_e2e.js")
NODE_LIMIT = 110          # seconds for one run of the driver (it stops itself at 100)


def hc():
    return {"enabled": True, "path": "/", "interval": "500ms", "timeout": "400ms",
            "healthy_threshold": 2, "unhealthy_threshold": 2}


def ensure_node_modules():
    """`npm ci` from the committed package-lock.json when playwright-core is not installed
    (CI starts bare). A lock keeps parallel test runs (two build trees) from racing."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise AssertionError("node and npm are needed (scripts/deps.sh installs nodejs, npm)")
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"{CHROMIUM} not found (scripts/deps.sh installs chromium)")
    with open(os.path.join(HERE, "package-lock.json")) as f:
        want = json.load(f)["packages"]["node_modules/playwright-core"]["version"]
    marker = os.path.join(HERE, "node_modules", "playwright-core", "package.json")
    lock_path = os.path.join(tempfile.gettempdir(), "ringlb-browser-npm.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(marker) as f:
                if json.load(f).get("version") == want:
                    return
        except (OSError, ValueError):
            pass
        print(f"tests/browser: npm ci (playwright-core {want})", flush=True)
        r = h.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=300,
                  cwd=HERE)
        if r.returncode != 0:
            raise AssertionError(f"npm ci failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


class PacedLoad(threading.Thread):
    """GET path every `every` seconds on a keep-alive connection (reconnects on errors):
    enough traffic for requests/s and the alarm, little CPU."""

    def __init__(self, port, path, every=0.02):
        super().__init__(daemon=True)
        self.port, self.path, self.every = port, path, every
        self.ok = 0
        self.errors = 0
        self._halt = threading.Event()

    def run(self):
        c = None
        while not self._halt.wait(self.every):
            try:
                if c is None:
                    c = h.Conn(self.port, timeout=5)
                r = c.roundtrip("GET", self.path)
                self.ok += r.status == 200
                self.errors += r.status != 200
            except Exception:  # noqa: BLE001 - a killed target may cost a request; go on
                self.errors += 1
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def stop(self):
        self._halt.set()
        self.join(timeout=10)


class TestDashboard(h.RingTestCase):

    @classmethod
    def setUpClass(cls):
        ensure_node_modules()
        os.makedirs(ARTIFACTS, exist_ok=True)

    def config(self, a1, a2, b, admin=True):
        rules = [{"priority": 10, "conditions": {"path_pattern": ["/split*"]},
                  "action": h.forward(("ga", 100), ("gb", 0))}]
        cfg = h.config_dict(
            listeners=[h.listener("main", None, rules=rules)],
            target_groups=[
                h.target_group("ga", [a1, a2], health_check=hc(), deregistration_delay="3s",
                               scaling={"metric": "request_count_per_target",
                                        "target_value": 600, "min": 1, "max": 4,
                                        "scale_out_cooldown": "5s", "scale_in_cooldown": "5s"}),
                h.target_group("gb", [b], health_check=hc())],
            admin=admin, metrics={"window": "1s"})
        return cfg

    def drive(self, params):
        """Run dashboard_e2e.js with params; fail with its output unless it passed."""
        env = dict(os.environ, RINGLB_DASH_TEST=json.dumps(params))
        p = h.spawn(["node", DRIVER], cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=NODE_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate(timeout=10)
            out += b"\n(killed: over the time limit)"
        finally:
            # chromium and anything else the driver left behind share its process group
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        text = out.decode("utf-8", "replace")
        print(text, flush=True)
        self.assertEqual(p.returncode, 0, f"dashboard_e2e.js failed:\n{text}")

    def test_dashboard_with_token(self):
        a1, a2, b = self.backend("A1"), self.backend("A2"), self.backend("B")
        tmp = tempfile.mkdtemp(prefix="ringlb-dash-")
        self.addCleanup(shutil.rmtree, tmp, True)
        tf = os.path.join(tmp, "admin.token")
        with open(tf, "w") as f:
            f.write(TOKEN + "\n")
        cfg = self.config(a1, a2, b)
        cfg["admin"]["token_file"] = tf
        lb = start_with_token(self, json.dumps(cfg))
        keys = {"ga": [a1, a2], "gb": [b]}
        h.wait_for(lambda: all(t["state"] == "healthy"
                               for g in ("ga", "gb")
                               for t in ok_json(api(lb, "GET", f"/api/v1/target-groups/{g}",
                                                    token=TOKEN))["targets"]),
                   15, what="every target healthy")
        # plain HTTP checks of the access rules and headers
        self.assertEqual(api(lb, "GET", "/").status, 401)
        self.assertEqual(api(lb, "GET", "/?token=wrong").status, 401)
        r = api(lb, "GET", f"/?token={TOKEN}")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/html"), r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertIn("default-src 'none'", r.header("Content-Security-Policy"))
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
        self.assertTrue(r.header("ETag"))
        for path, ctype in (("/dashboard/app.js", "text/javascript"),
                            ("/dashboard/style.css", "text/css"),
                            ("/dashboard/favicon.svg", "image/svg+xml")):
            r = api(lb, "GET", path)          # static, no data: served without the token
            self.assertEqual(r.status, 200, path)
            self.assertTrue(r.header("Content-Type").startswith(ctype), r)
            self.assertEqual(r.header("Cache-Control"), "no-store")
            self.assertIn("script-src 'self'", r.header("Content-Security-Policy"))
        # the page, unknown assets and other methods keep the token rule
        self.assertEqual(api(lb, "GET", "/dashboard/index.html").status, 401)
        self.assertEqual(api(lb, "GET", "/dashboard/nope.js").status, 401)
        self.assertEqual(api(lb, "GET", "/dashboard/nope.js", token=TOKEN).status, 404)
        self.assertEqual(api(lb, "POST", "/dashboard/app.js").status, 401)
        r = api(lb, "POST", "/", token=TOKEN)
        self.assertEqual((r.status, r.header("Allow")), (405, "GET"))

        load = PacedLoad(lb.port(), "/split")
        load.start()
        self.addCleanup(load.stop)
        self.drive({
            "mode": "token",
            "admin": f"http://{h.LOCALHOST}:{lb.admin_port}",
            "token": TOKEN,
            "token_file": tf,
            "victim": {"group": "ga", "key": a2.addr, "pid": a2.proc.pid},
            "targets": [f"{g}/{x.addr}" for g, bs in keys.items() for x in bs],
            "artifacts": ARTIFACTS,
        })
        load.stop()
        self.assertGreater(load.ok, 0)
        self.assertTrue(os.path.getsize(os.path.join(ARTIFACTS, "dashboard.png")) > 10000)

    def test_dashboard_without_token(self):
        a1, a2, b = self.backend("A1"), self.backend("A2"), self.backend("B")
        lb = self.ringlb(json.dumps(self.config(a1, a2, b)))
        self.assertEqual(api(lb, "GET", "/").status, 200)
        self.drive({
            "mode": "plain",
            "admin": f"http://{h.LOCALHOST}:{lb.admin_port}",
            "targets": [f"ga/{a1.addr}", f"ga/{a2.addr}", f"gb/{b.addr}"],
            "artifacts": ARTIFACTS,
        })


if __name__ == "__main__":
    h.main()
