"""Command line, black box: `ringlb check` (ok / FILE:LINE:COL: errors, exit 2), `ringlb version`,
usage errors (exit 2), and refusing to run with an invalid file.

SPEC sections 1 and 2. Run: python3 tests/integration/test_check_cli.py
"""

import os
import re
import tempfile

import harness as h

GOOD_YAML = """\
# a valid configuration in the SPEC section 2 format
threads: 2
shutdown_timeout: 5s
admin:
  listen: 127.0.0.1:19901
listeners:
  - name: main
    listen: "127.0.0.1:18080"
    protocol: HTTP
    idle_timeout: 60s
    header_timeout: 10s
    xff: append
    xff_client_port: false
    preserve_host_header: false
    default_action:
      forward:
        target_groups:
          - { name: web, weight: 1 }
    rules:
      - priority: 10
        conditions:
          path_pattern: ["/api/*"]
        action:
          fixed_response: { status_code: 200, content_type: text/plain, message_body: "api" }
target_groups:
  - name: web
    protocol: HTTP
    port: 8080
    algorithm: round_robin
    health_check:
      enabled: false
    targets:
      - 127.0.0.1:8081
      - { address: 127.0.0.1, port: 8082 }
"""


def line_of(text, needle):
    """1-based line number of the first line containing needle."""
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise ValueError(needle)


class CheckCommand(h.RingTestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="ringlb-check-")
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, text):
        p = os.path.join(self.tmp.name, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def check(self, path, *extra):
        out = h.run([h.RINGLB_BIN, "check", "-c", path, *extra], timeout=30)
        return out.returncode, out.stdout + out.stderr

    def assertErrorAt(self, output, path, line, needle=None):
        pat = re.compile(r"^" + re.escape(path) + r":" + str(line) + r":(\d+): (.+)$", re.M)
        ms = pat.findall(output)
        self.assertTrue(ms, f"no '{path}:{line}:COL: message' line in:\n{output}")
        if needle:
            self.assertTrue(any(needle in msg for _col, msg in ms),
                            f"no error at line {line} mentions {needle!r}:\n{output}")
        for col, _ in ms:
            self.assertGreaterEqual(int(col), 1)

    def test_good_yaml_ok(self):
        p = self.write("good.yaml", GOOD_YAML)
        rc, out = self.check(p)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.strip(), "ok")

    def test_good_json_ok(self):
        p = self.write("good.json", h.make_config(
            target_groups=[h.target_group("web", ["127.0.0.1:8081"])]))
        rc, out = self.check(p)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.strip(), "ok")

    def test_unknown_key(self):
        text = GOOD_YAML.replace("    idle_timeout: 60s\n",
                                 "    idle_timeout: 60s\n    idle_timeuot: 60s\n")
        p = self.write("unknown.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertNotIn("ok", out.split())
        self.assertErrorAt(out, p, line_of(text, "idle_timeuot"), "idle_timeuot")
        # the column is that of the key (4 spaces of indentation)
        self.assertRegex(out, re.escape(p) + r":%d:5: " % line_of(text, "idle_timeuot"))

    def test_unknown_top_level_key(self):
        text = GOOD_YAML.replace("threads: 2\n", "threads: 2\ntreads: 3\n")
        p = self.write("unknown-top.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertErrorAt(out, p, line_of(text, "treads"), "treads")

    def test_bad_duration(self):
        text = GOOD_YAML.replace("idle_timeout: 60s", "idle_timeout: 5 parsecs")
        p = self.write("duration.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertErrorAt(out, p, line_of(text, "5 parsecs"))

    def test_every_error_reported(self):
        text = (GOOD_YAML.replace("idle_timeout: 60s", "idle_timeout: soon")
                .replace("    port: 8080\n", "    port: 8080\n    colour: blue\n"))
        p = self.write("two.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertErrorAt(out, p, line_of(text, "idle_timeout: soon"))
        self.assertErrorAt(out, p, line_of(text, "colour: blue"), "colour")

    def test_unknown_target_group_reference(self):
        text = GOOD_YAML.replace("- { name: web, weight: 1 }", "- { name: nosuch, weight: 1 }")
        p = self.write("ref.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertErrorAt(out, p, line_of(text, "nosuch"))

    def test_yaml_syntax_error(self):
        text = GOOD_YAML.replace('listen: "127.0.0.1:18080"', 'listen: "127.0.0.1:18080')
        p = self.write("syntax.yaml", text)
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertRegex(out, re.escape(p) + r":\d+:\d+: ")

    def test_missing_file(self):
        p = os.path.join(self.tmp.name, "does-not-exist.yaml")
        rc, out = self.check(p)
        self.assertEqual(rc, 2, out)
        self.assertIn("does-not-exist.yaml", out)

    def test_run_refuses_invalid_file(self):
        text = GOOD_YAML.replace("idle_timeout: 60s", "idle_timeout: 5 parsecs")
        p = self.write("run-bad.yaml", text)
        out = h.run([h.RINGLB_BIN, "-c", p, "--threads", "1"], timeout=15)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn(f"{p}:{line_of(text, '5 parsecs')}:", out.stdout + out.stderr)


class VersionAndUsage(h.RingTestCase):
    def test_version(self):
        out = h.run([h.RINGLB_BIN, "version"], timeout=15)
        self.assertEqual(out.returncode, 0, out.stderr)
        text = out.stdout
        self.assertRegex(text, r"(?i)ringlb\D{0,20}\d+\.\d+")
        for lib in ("liburing", "OpenSSL", "llhttp"):
            self.assertRegex(text, r"(?i)" + lib + r"\D{0,20}\d+\.\d+", f"{lib} version:\n{text}")
        self.assertRegex(text, r"(?i)jemalloc", text)
        ldd = h.run(["ldd", h.RINGLB_BIN], timeout=15).stdout
        if "libasan" not in ldd:     # release build: jemalloc is linked, its version is shown
            self.assertRegex(text, r"(?i)jemalloc\D{0,20}\d+\.\d+", text)

    def test_usage_errors_exit_2(self):
        for argv in ([], ["--no-such-flag"], ["check"], ["frobnicate"],
                     ["-c", "/dev/null", "--threads", "many"],
                     ["-c", "/dev/null", "--log-level", "loud"]):
            with self.subTest(argv=argv):
                out = h.run([h.RINGLB_BIN, *argv], timeout=15)
                self.assertEqual(out.returncode, 2, f"{argv}: {out.stdout}{out.stderr}")
                self.assertTrue((out.stdout + out.stderr).strip(), f"{argv}: no message")


if __name__ == "__main__":
    h.main()
