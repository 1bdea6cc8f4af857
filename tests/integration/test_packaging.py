"""The Debian package (issue #12, item 3; scripts/package.cmake).

The package is built with cpack from the build directory that holds RINGLB_BIN (CPackConfig.cmake
there), into a scratch directory, then:
  - PackageContents: `dpkg-deb -x` into a scratch root and `dpkg-deb -e` for the control files;
    the control fields (name, version, Depends covering every shared library the binary
    needs), every file with its mode and root ownership, the conffiles, the maintainer scripts
    (modes, `sh -n`), the shipped files equal to their sources (the man page decompressed),
    the unit's hardening lines, `systemd-analyze verify` and `security --offline` on the unit,
    the man page rendered by groff without a warning, and the extracted binary running
    `version` and `check` on the extracted /etc/ringlb/ringlb.yaml;
  - InstalledPackage (root only, else skipped with the reason): a real `dpkg -i` into an
    overlay of / in a private mount namespace (nothing reaches the host): the postinst creates
    the user, the directories and the secrets; `systemd-analyze verify` on the installed unit;
    a reinstall keeps a locally edited conffile and the secrets; the installed binary runs as
    the ringlb user with state_file in /var/lib/ringlb and the access log in /var/log/ringlb,
    and the shipped logrotate file rotates that log, SIGUSR1 making ringlb write to the new
    file; `dpkg --purge` removes everything but the user.

Tools: cpack (cmake), dpkg-deb, groff (groff-base), systemd-analyze (systemd), logrotate,
unshare/setpriv (util-linux), curl; scripts/deps.sh installs them.
Run: python3 tests/integration/test_packaging.py
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import unittest

import harness as h

BUILD_DIR = os.path.dirname(os.path.abspath(h.RINGLB_BIN))
SRC = h.SOURCE_DIR
EXPECTED_DEPENDS = ("libc6", "liburing2", "libssl3", "libjemalloc2", "libfyaml0", "adduser")
# Shared libraries of sanitizer builds (RINGLB_SANITIZE=ON), which the package does not list.
SANITIZER_LIBS = ("libasan", "libubsan", "liblsan", "libtsan")

# path in the package -> (mode, source file it is a copy of, or None)
FILES = {
    "usr/sbin/ringlb": (0o755, None),
    "usr/share/man/man8/ringlb.8.gz": (0o644, None),
    "etc/ringlb/ringlb.yaml": (0o644, "conf/ringlb.yaml"),
    "etc/logrotate.d/ringlb": (0o644, "conf/ringlb.logrotate"),
    "lib/systemd/system/ringlb.service": (0o644, "conf/ringlb.service"),
    "usr/share/ringlb/grafana-dashboard.json": (0o644, "conf/grafana-dashboard.json"),
    "usr/share/ringlb/prometheus-alerts.yml": (0o644, "conf/prometheus-alerts.yml"),
    "usr/share/doc/ringlb/README.md": (0o644, None),     # checked apart: edited often
}
CONFFILES = ["/etc/ringlb/ringlb.yaml", "/etc/logrotate.d/ringlb"]
UNIT_LINES = [
    "Type=exec",
    "User=ringlb",
    "Group=ringlb",
    "ExecStartPre=/usr/sbin/ringlb check -c /etc/ringlb/ringlb.yaml",
    "ExecStart=/usr/sbin/ringlb -c /etc/ringlb/ringlb.yaml",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "KillSignal=SIGTERM",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "StateDirectory=ringlb",
    "LogsDirectory=ringlb",
    "WantedBy=multi-user.target",
]


def cmake_cache(key):
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def project_version():
    v = cmake_cache("CMAKE_PROJECT_VERSION")
    if v:
        return v
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        m = re.search(r"project\(ringlb VERSION ([0-9.]+)", f.read())
    return m.group(1)


class Package:
    """The .deb built once for this file: .deb, .root (extracted), .ctl (control files),
    .control (dict), .members ({path: TarInfo} without the leading ./)."""

    _built = None

    @classmethod
    def get(cls):
        if cls._built is None:
            cls._built = cls()
        return cls._built

    def __init__(self):
        cfg = os.path.join(BUILD_DIR, "CPackConfig.cmake")
        if not os.path.exists(cfg):
            raise AssertionError(f"{cfg} missing: is scripts/package.cmake included by "
                                 "CMakeLists.txt, and was cmake re-run?")
        cpack = cmake_cache("CMAKE_CPACK_COMMAND") or shutil.which("cpack")
        self.tmp = tempfile.TemporaryDirectory(prefix="ringlb-pkg-")
        out = os.path.join(self.tmp.name, "out")
        p = h.run([cpack, "-G", "DEB", "-B", out, "--config", cfg], timeout=240,
                  cwd=BUILD_DIR)
        if p.returncode != 0:
            raise AssertionError(f"cpack failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        if len(debs) != 1:
            raise AssertionError(f"cpack made {debs}:\n{p.stdout}")
        self.deb = os.path.join(out, debs[0])
        self.root = os.path.join(self.tmp.name, "root")
        self.ctl = os.path.join(self.tmp.name, "ctl")
        for argv in (["dpkg-deb", "-x", self.deb, self.root],
                     ["dpkg-deb", "-e", self.deb, self.ctl]):
            q = h.run(argv, timeout=60)
            if q.returncode != 0:
                raise AssertionError(f"{argv} failed:\n{q.stderr}")
        self.control = {}
        with open(os.path.join(self.ctl, "control")) as f:
            key = None
            for line in f:
                if line[:1] in (" ", "\t") and key:
                    self.control[key] += "\n" + line.strip()
                elif ":" in line:
                    key, _, val = line.partition(":")
                    self.control[key] = val.strip()
        q = subprocess.run(["dpkg-deb", "--fsys-tarfile", self.deb], capture_output=True,
                           timeout=60)
        if q.returncode != 0:
            raise AssertionError(f"dpkg-deb --fsys-tarfile failed:\n{q.stderr}")
        self.members = {}
        with tarfile.open(fileobj=io.BytesIO(q.stdout)) as t:
            for m in t.getmembers():
                name = m.name[2:] if m.name.startswith("./") else m.name
                self.members[name.rstrip("/")] = m

    def path(self, rel):
        return os.path.join(self.root, rel)


class PackageContents(h.RingTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pkg = Package.get()

    def test_control_fields(self):
        c = self.pkg.control
        self.assertEqual(c["Package"], "ringlb")
        self.assertEqual(c["Version"], project_version() + "-1")
        self.assertEqual(c["Section"], "net")
        self.assertTrue(c.get("Maintainer"))
        self.assertTrue(c.get("Description", "").startswith("L7 load balancer"))
        deps = [d.strip().split()[0] for d in c["Depends"].split(",")]
        self.assertEqual(sorted(deps), sorted(EXPECTED_DEPENDS))
        self.assertEqual(os.path.basename(self.pkg.deb),
                         f"ringlb_{project_version()}-1_{c['Architecture']}.deb")

    def test_depends_cover_needed_libraries(self):
        """Every DT_NEEDED library of the binary comes from a package in Depends."""
        if not shutil.which("readelf"):
            self.skipTest("readelf (binutils) not installed")
        p = h.run(["readelf", "-d", self.pkg.path("usr/sbin/ringlb")])
        self.assertEqual(p.returncode, 0, p.stderr)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", p.stdout)
        self.assertIn("liburing.so.2", needed)
        ldc = h.run(["ldconfig", "-p"]).stdout
        deps = {d.strip().split()[0] for d in self.pkg.control["Depends"].split(",")}
        for lib in needed:
            if lib.startswith(SANITIZER_LIBS):
                continue
            m = re.search(r"^\s*" + re.escape(lib) + r" \(([^)]*)\) => (\S+)", ldc, re.M)
            self.assertTrue(m, f"{lib} not known to ldconfig")
            owner = h.run(["dpkg", "-S", os.path.realpath(m.group(2))])
            if owner.returncode != 0:        # usrmerge: the package lists /lib/... paths
                alt = re.sub(r"^/usr/lib/", "/lib/", os.path.realpath(m.group(2)))
                owner = h.run(["dpkg", "-S", alt])
            self.assertEqual(owner.returncode, 0, f"{lib}: {owner.stderr}")
            pkgname = owner.stdout.split(":")[0].strip()
            self.assertIn(pkgname, deps, f"{lib} comes from {pkgname}, not in Depends")

    def test_files_modes_and_owners(self):
        m = self.pkg.members
        for path, (mode, _) in FILES.items():
            self.assertIn(path, m, f"{path} missing from the package")
            self.assertTrue(m[path].isfile(), path)
            self.assertEqual(m[path].mode & 0o7777, mode, f"{path}: mode {m[path].mode:o}")
        for path, info in m.items():
            self.assertEqual((info.uid, info.gid), (0, 0), f"{path} not owned by root")
            if info.isdir():
                self.assertEqual(info.mode & 0o7777, 0o755, f"{path}: mode {info.mode:o}")
            else:
                self.assertFalse(info.mode & 0o7022 & ~0o0, f"{path}: mode {info.mode:o}")
        files = sorted(p for p, i in m.items() if not i.isdir())
        self.assertEqual(files, sorted(FILES), "files in the package")
        # the binary is stripped (CPACK_STRIP_FILES)
        if shutil.which("readelf"):
            p = h.run(["readelf", "-S", self.pkg.path("usr/sbin/ringlb")])
            self.assertNotIn(".symtab", p.stdout, "usr/sbin/ringlb is not stripped")

    def test_shipped_files_equal_sources(self):
        for path, (_, src) in FILES.items():
            if src is None:
                continue
            with open(self.pkg.path(path), "rb") as a, open(os.path.join(SRC, src), "rb") as b:
                self.assertEqual(a.read(), b.read(), f"{path} differs from {src}")
        with open(self.pkg.path("usr/share/doc/ringlb/README.md")) as f:
            self.assertTrue(f.readline().startswith("# ringlb"), "usr/share/doc/ringlb/README.md")
        with open(self.pkg.path("usr/share/man/man8/ringlb.8.gz"), "rb") as f:
            raw = f.read()
        self.assertEqual(raw[:2], b"\x1f\x8b", "not gzip")
        self.assertEqual(raw[4:8], b"\0\0\0\0", "gzip member has a time stamp (use gzip -n)")
        with open(os.path.join(SRC, "conf", "ringlb.8"), "rb") as f:
            self.assertEqual(gzip.decompress(raw), f.read())

    def test_conffiles(self):
        with open(os.path.join(self.pkg.ctl, "conffiles")) as f:
            conf = [ln.strip() for ln in f if ln.strip()]
        self.assertEqual(sorted(conf), sorted(CONFFILES))
        for c in conf:
            self.assertIn(c.lstrip("/"), self.pkg.members, c)

    def test_maintainer_scripts(self):
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(self.pkg.ctl, name)
            self.assertTrue(os.path.exists(path), name)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o755, name)
            with open(path) as f:
                text = f.read()
            self.assertTrue(text.startswith("#!/bin/sh\n"), name)
            self.assertIn("set -e", text, name)
            p = h.run(["sh", "-n", path])
            self.assertEqual(p.returncode, 0, f"{name}: {p.stderr}")
        with open(os.path.join(self.pkg.ctl, "postinst")) as f:
            post = f.read()
        self.assertRegex(post, r"adduser --system[^\n]*\\\n[^\n]*--no-create-home")
        self.assertIn("useradd --system", post)
        self.assertIn("/etc/ringlb/admin.token", post)
        code = "\n".join(ln for ln in post.splitlines() if not ln.lstrip().startswith("#"))
        self.assertNotRegex(code, r"(systemctl|deb-systemd-\w+)[^\n]*\b(enable|start)\b",
                            "postinst must not enable or start the service")

    def test_unit_hardening(self):
        with open(self.pkg.path("lib/systemd/system/ringlb.service")) as f:
            lines = [ln.strip() for ln in f]
        for want in UNIT_LINES:
            self.assertIn(want, lines)
        nofile = [ln for ln in lines if ln.startswith("LimitNOFILE=")]
        self.assertEqual(len(nofile), 1)
        self.assertGreaterEqual(int(nofile[0].split("=")[1]), 65536)
        # state_file and the access log live where the unit lets ringlb write
        with open(self.pkg.path("etc/ringlb/ringlb.yaml")) as f:
            self.assertRegex(f.read(), r"(?m)^state_file: /var/lib/ringlb/")
        with open(self.pkg.path("etc/logrotate.d/ringlb")) as f:
            rot = f.read()
        self.assertIn("/var/log/ringlb/*.log", rot)
        self.assertRegex(rot, r"systemctl kill --kill-who=main --signal=SIGUSR1 ringlb\.service")

    def _unit_copy(self, tmp):
        """The unit with ExecStart... pointing at the extracted binary (verify checks that the
        commands exist)."""
        with open(self.pkg.path("lib/systemd/system/ringlb.service")) as f:
            text = f.read().replace("/usr/sbin/ringlb", self.pkg.path("usr/sbin/ringlb"))
        path = os.path.join(tmp, "ringlb.service")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed (Debian package systemd; "
                          "scripts/deps.sh installs it)")
        with tempfile.TemporaryDirectory(prefix="ringlb-unit-") as tmp:
            unit = self._unit_copy(tmp)
            env = dict(os.environ, MANPATH=self.pkg.path("usr/share/man"))
            p = h.run(["systemd-analyze", "verify", unit], env=env, cwd=tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((p.stdout + p.stderr).strip(), "")

    def test_systemd_security_exposure(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed (Debian package systemd)")
        with tempfile.TemporaryDirectory(prefix="ringlb-unit-") as tmp:
            unit = self._unit_copy(tmp)
            p = h.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                      cwd=tmp)
        if "--offline" in p.stderr and p.returncode != 0:
            self.skipTest("this systemd-analyze has no `security --offline` (systemd < 250)")
        m = re.search(r"Overall exposure level for ringlb\.service: ([0-9.]+) (\w+)", p.stdout)
        self.assertTrue(m, p.stdout[-2000:] + p.stderr)
        self.assertLessEqual(float(m.group(1)), 4.0, p.stdout[-3000:])

    def test_man_page_renders_without_warnings(self):
        groff = shutil.which("groff")
        if not groff:
            self.skipTest("groff not installed (Debian package groff-base; scripts/deps.sh)")
        with open(self.pkg.path("usr/share/man/man8/ringlb.8.gz"), "rb") as f:
            src = gzip.decompress(f.read())
        self.assertTrue(all(b < 128 for b in src), "non-ASCII bytes in the man page source")
        p = subprocess.run([groff, "-man", "-ww", "-z"], input=src, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.decode(), "", "groff warnings")
        p = subprocess.run([groff, "-man", "-Tascii", "-P-c", "-P-b", "-P-u"], input=src,
                           capture_output=True, timeout=30, env=dict(os.environ, LC_ALL="C"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.decode(), "")
        text = p.stdout.decode()
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "SIGNALS",
                        "FILES", "ADMIN API", "EXIT STATUS", "SEE ALSO"):
            self.assertRegex(text, r"(?m)^" + section + r"$", section)
        for word in ("ringlb check", "ringlb route", "ringlb version", "--threads",
                     "--log-level", "--alb-limits", "SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT",
                     "SIGUSR1", "/etc/ringlb/ringlb.yaml", "/var/lib/ringlb",
                     "/etc/logrotate.d/ringlb", "GET /metrics", "/api/v1/reload"):
            self.assertIn(word, text)
        if shutil.which("man"):
            p = h.run(["man", "-l", self.pkg.path("usr/share/man/man8/ringlb.8.gz")],
                      env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("ringlb - L7 load balancer", p.stdout)

    def test_extracted_binary_runs(self):
        binp = self.pkg.path("usr/sbin/ringlb")
        p = h.run([binp, "version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], f"ringlb {project_version()}")
        p = h.run([binp, "check", "-c", self.pkg.path("etc/ringlb/ringlb.yaml")])
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "ok"), p.stdout + p.stderr)
        p = h.run([binp, "--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn("ringlb check -c FILE", p.stdout)


# --------------------------------------------------------------------------------------------
# a real dpkg -i, in an overlay of / (private mount namespace)

INSTALL_SCRIPT = r"""
set -u
T=$1; DEB=$2; LPORT=$3; APORT=$4
M=$T/merged
say() { printf '%s=%s\n' "$1" "$2"; }
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$M" || exit 90
mount -t proc proc "$M/proc" || exit 91
mount --rbind /dev "$M/dev" || exit 92
mkdir -p "$M/tmp/ringlb-pkg-test"
cp "$DEB" "$M/tmp/ringlb-pkg-test/ringlb.deb"
c() { chroot "$M" "$@"; }
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null' EXIT

timeout 120 chroot "$M" dpkg -i /tmp/ringlb-pkg-test/ringlb.deb > "$T/dpkg-install.log" 2>&1
say INSTALL_RC $?
say STATUS "$(c dpkg-query -W -f='${Status}' ringlb)"
say PASSWD "$(c getent passwd ringlb)"
say GROUP "$(c getent group ringlb)"
for f in /usr/sbin/ringlb /etc/ringlb/ringlb.yaml /etc/ringlb/admin.token /etc/ringlb/sticky.key \
         /var/lib/ringlb /var/log/ringlb; do
    say "STAT $f" "$(c stat -c '%U %G %a' "$f" 2>&1)"
done
say TOKEN "$(c cat /etc/ringlb/admin.token)"
say STICKY "$(c cat /etc/ringlb/sticky.key)"
say CHECK "$(c /usr/sbin/ringlb check -c /etc/ringlb/ringlb.yaml 2>&1)"
if c sh -c 'command -v systemd-analyze' >/dev/null; then
    out=$(cd "$M" && c systemd-analyze verify /lib/systemd/system/ringlb.service 2>&1)
    say VERIFY_RC $?
    say VERIFY_OUT "$(printf '%s' "$out" | tr '\n' '|')"
fi

# a locally edited conffile survives a reinstall; the secrets are not regenerated
echo "# local edit" >> "$M/etc/ringlb/ringlb.yaml"
timeout 120 chroot "$M" dpkg -i /tmp/ringlb-pkg-test/ringlb.deb > "$T/dpkg-reinstall.log" 2>&1
say REINSTALL_RC $?
say EDIT_KEPT "$(tail -n 1 "$M/etc/ringlb/ringlb.yaml")"
say TOKEN2 "$(c cat /etc/ringlb/admin.token)"

# the installed binary as the ringlb user, writing where the unit lets it
cat > "$M/etc/ringlb/test.yaml" <<EOF
threads: 1
shutdown_timeout: 2s
state_file: /var/lib/ringlb/state.json
admin: { listen: "127.0.0.1:$APORT" }
access_log: { path: /var/log/ringlb/access.log }
listeners:
  - name: main
    listen: "127.0.0.1:$LPORT"
    default_action: { fixed_response: { status_code: 200, content_type: text/plain, message_body: "pkg" } }
target_groups:
  - { name: web, health_check: { enabled: false }, targets: [] }
EOF
lines() { c sh -c "cat $1 2>/dev/null | wc -l"; }
wait_lines() {  # file count
    for _ in $(seq 1 100); do [ "$(lines "$1")" -ge "$2" ] && return 0; sleep 0.1; done
    return 1
}
start_as_ringlb() {  # config log-name: run ringlb as the service user; sets PID and ok
    chroot "$M" setpriv --reuid=ringlb --regid=ringlb --init-groups \
        /usr/sbin/ringlb -c "$1" > "$T/$2.out" 2> "$T/$2.err" &
    PID=$!
    ok=0
    for _ in $(seq 1 100); do
        if c curl -sf -o /dev/null "http://127.0.0.1:$APORT/healthz"; then ok=1; break; fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
}
stop_ringlb() {  # tag log-name: SIGTERM, wait, report the exit status and the error log
    kill -TERM "$PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    wait "$PID"; say "$1_RC" $?
    PID=
    say "$1_ERR" "$(tail -c 600 "$T/$2.err" | tr '\n' '|')"
}
start_as_ringlb /etc/ringlb/test.yaml ringlb
say RUN_READY $ok
if [ $ok = 1 ]; then
    say RUN_UID "$(c stat -c %U /proc/$PID)"
    for i in 1 2 3 4 5; do c curl -s -o /dev/null "http://127.0.0.1:$LPORT/before$i"; done
    wait_lines /var/log/ringlb/access.log 5; say LOG_BEFORE "$(lines /var/log/ringlb/access.log)"
    say REGISTER "$(c curl -s -o /dev/null -w '%{http_code}' -X POST \
        -d '{"targets":[{"id":"127.0.0.1","port":9}]}' \
        "http://127.0.0.1:$APORT/api/v1/target-groups/web/targets")"
    say STATE "$(c stat -c '%U %G' /var/lib/ringlb/state.json 2>&1)"
    say LOGFILE "$(c stat -c '%U %G %a' /var/log/ringlb/access.log 2>&1)"
    # the shipped logrotate file: rename + create, then ringlb reopens on SIGUSR1 (the
    # postrotate's systemctl has no systemd here, and ignores that)
    c logrotate -f -s /var/lib/ringlb-logrotate.state /etc/logrotate.d/ringlb > "$T/logrotate.log" 2>&1
    say LOGROTATE_RC $?
    say LOGROTATE_OUT "$(tr '\n' '|' < "$T/logrotate.log")"
    say ROTATED "$(lines /var/log/ringlb/access.log.1)"
    say NEWFILE "$(c stat -c '%U %G %a' /var/log/ringlb/access.log 2>&1)"
    kill -USR1 "$PID"
    sleep 0.2
    for i in 1 2 3; do c curl -s -o /dev/null "http://127.0.0.1:$LPORT/after$i"; done
    wait_lines /var/log/ringlb/access.log 3
    say LOG_AFTER "$(lines /var/log/ringlb/access.log)"
    say LOG_ROTATED_AFTER "$(lines /var/log/ringlb/access.log.1)"
    say AFTER_IN_NEW "$(c grep -c '/after' /var/log/ringlb/access.log)"
fi
stop_ringlb RUN ringlb

# `user: ringlb` in the file while the process already runs as ringlb (as under the unit)
{ echo "user: ringlb"; cat "$M/etc/ringlb/test.yaml"; } > "$M/etc/ringlb/test-user.yaml"
start_as_ringlb /etc/ringlb/test-user.yaml ringlb2
say USER_READY $ok
stop_ringlb USER ringlb2

rm -f "$M/etc/ringlb/test.yaml" "$M/etc/ringlb/test-user.yaml"
timeout 120 chroot "$M" dpkg --purge ringlb > "$T/dpkg-purge.log" 2>&1
say PURGE_RC $?
for f in /usr/sbin/ringlb /etc/ringlb /var/lib/ringlb /var/log/ringlb /lib/systemd/system/ringlb.service; do
    [ -e "$M$f" ] && say "LEFT $f" yes
done
say PURGE_PASSWD "$(c getent passwd ringlb | cut -d: -f1)"
exit 0
"""


def overlay_unavailable():
    """Why a private overlay of / cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, overlayfs, chroot)"
    for tool in ("unshare", "chroot", "setpriv", "curl"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    with tempfile.TemporaryDirectory(prefix="ringlb-ovl-probe-") as tmp:
        for d in ("upper", "work", "merged"):
            os.mkdir(os.path.join(tmp, d))
        p = h.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "overlay",
                   "overlay", "-o", f"lowerdir=/,upperdir={tmp}/upper,workdir={tmp}/work",
                   f"{tmp}/merged"], timeout=30)
        if p.returncode != 0:
            return f"overlayfs mount not permitted: {p.stderr.strip()}"
    return None


class InstalledPackage(h.RingTestCase):
    """dpkg -i / dpkg --purge for real, in an overlay that disappears with the test."""

    @classmethod
    def setUpClass(cls):
        cls.skip_reason = overlay_unavailable()
        if cls.skip_reason:
            return
        pkg = Package.get()
        cls.tmp = tempfile.TemporaryDirectory(prefix="ringlb-install-")
        t = cls.tmp.name
        for d in ("upper", "work", "merged"):
            os.mkdir(os.path.join(t, d))
        script = os.path.join(t, "install.sh")
        with open(script, "w") as f:
            f.write(INSTALL_SCRIPT)
        cls.lport, cls.aport = h.free_port(), h.free_port()
        p = h.run(["unshare", "-m", "--propagation", "private", "bash", script, t, pkg.deb,
                   str(cls.lport), str(cls.aport)], timeout=240)
        cls.out = p.stdout
        cls.err = p.stderr
        cls.rc = p.returncode
        cls.r = {}
        for line in p.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                cls.r[k] = v
        cls.logs = {}
        for name in ("dpkg-install.log", "dpkg-reinstall.log", "dpkg-purge.log",
                     "logrotate.log"):
            try:
                with open(os.path.join(t, name)) as f:
                    cls.logs[name] = f.read()
            except OSError:
                cls.logs[name] = "(none)"

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            cls.tmp.cleanup()

    def setUp(self):
        if self.skip_reason:
            self.skipTest("no private overlay of / for a real dpkg -i: " + self.skip_reason)
        self.assertEqual(self.rc, 0, f"install script failed ({self.rc}):\n{self.out}\n{self.err}")

    def ctx(self):
        return f"\n{self.out}\n---- dpkg -i ----\n{self.logs['dpkg-install.log']}"

    def test_install_creates_user_directories_and_secrets(self):
        r = self.r
        self.assertEqual(r.get("INSTALL_RC"), "0", self.ctx())
        self.assertEqual(r.get("STATUS"), "install ok installed", self.ctx())
        pw = r["PASSWD"].split(":")
        self.assertEqual(pw[0], "ringlb", self.ctx())
        self.assertLess(int(pw[2]), 1000, "not a system user")
        self.assertEqual((pw[5], pw[6]), ("/var/lib/ringlb", "/usr/sbin/nologin"))
        self.assertTrue(r["GROUP"].startswith("ringlb:"), self.ctx())
        self.assertEqual(r["STAT /usr/sbin/ringlb"], "root root 755")
        self.assertEqual(r["STAT /etc/ringlb/ringlb.yaml"], "root root 644")
        self.assertEqual(r["STAT /etc/ringlb/admin.token"], "root ringlb 640")
        self.assertEqual(r["STAT /etc/ringlb/sticky.key"], "root ringlb 640")
        self.assertEqual(r["STAT /var/lib/ringlb"], "ringlb ringlb 750")
        self.assertEqual(r["STAT /var/log/ringlb"], "ringlb ringlb 750")
        self.assertRegex(r["TOKEN"], r"^[0-9a-f]{64}$")
        self.assertRegex(r["STICKY"], r"^[0-9a-f]{64}$")
        self.assertNotEqual(r["TOKEN"], r["STICKY"])
        self.assertEqual(r["CHECK"], "ok")

    def test_installed_unit_verifies(self):
        if "VERIFY_RC" not in self.r:
            self.skipTest("systemd-analyze not installed (Debian package systemd)")
        self.assertEqual(self.r["VERIFY_RC"], "0", self.r.get("VERIFY_OUT"))
        self.assertEqual(self.r["VERIFY_OUT"], "")

    def test_reinstall_keeps_edited_conffile_and_secrets(self):
        self.assertEqual(self.r.get("REINSTALL_RC"), "0",
                         self.out + self.logs["dpkg-reinstall.log"])
        self.assertEqual(self.r.get("EDIT_KEPT"), "# local edit")
        self.assertEqual(self.r.get("TOKEN2"), self.r.get("TOKEN"))

    def test_runs_as_ringlb_with_state_and_access_log(self):
        r = self.r
        self.assertEqual(r.get("RUN_READY"), "1", self.out)
        self.assertEqual(r.get("RUN_UID"), "ringlb")
        self.assertEqual(r.get("LOG_BEFORE"), "5", self.out)
        self.assertEqual(r.get("REGISTER"), "200", self.out)
        self.assertEqual(r.get("STATE"), "ringlb ringlb", self.out)
        self.assertTrue(r.get("LOGFILE", "").startswith("ringlb ringlb"), self.out)
        self.assertEqual(r.get("RUN_RC"), "0", self.out)
        for marker in h.SANITIZER_MARKERS:
            self.assertNotIn(marker, r.get("RUN_ERR", ""))

    def test_logrotate_and_sigusr1(self):
        r = self.r
        self.assertEqual(r.get("RUN_READY"), "1", self.out)
        self.assertEqual(r.get("LOGROTATE_RC"), "0", self.logs["logrotate.log"])
        self.assertNotIn("error", r.get("LOGROTATE_OUT", "").lower())
        self.assertEqual(r.get("ROTATED"), "5", self.out)
        self.assertEqual(r.get("NEWFILE"), "ringlb ringlb 640", self.out)
        # after SIGUSR1 the new lines go to the new file, the rotated one is left alone
        self.assertEqual(r.get("LOG_AFTER"), "3", self.out)
        self.assertEqual(r.get("AFTER_IN_NEW"), "3", self.out)
        self.assertEqual(r.get("LOG_ROTATED_AFTER"), "5", self.out)

    def test_config_user_while_already_that_user(self):
        """Under the unit ringlb starts as the ringlb user; the shipped ringlb.yaml says
        `user: ringlb` too: drop_privileges() must see it already is that user and go on."""
        self.assertEqual(self.r.get("USER_READY"), "1",
                         f"exit {self.r.get('USER_RC')}: {self.r.get('USER_ERR')}")

    def test_purge_removes_everything_but_the_user(self):
        self.assertEqual(self.r.get("PURGE_RC"), "0", self.logs["dpkg-purge.log"])
        left = [k for k in self.r if k.startswith("LEFT ")]
        self.assertEqual(left, [], self.out)
        self.assertEqual(self.r.get("PURGE_PASSWD"), "ringlb")


if __name__ == "__main__":
    h.main()
