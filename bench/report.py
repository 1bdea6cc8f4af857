#!/usr/bin/env python3
"""bench/report.py — the tables and chart data of one bench/suite.sh run.

    python3 bench/report.py OUTDIR

OUTDIR is a directory written by bench/suite.sh (bench/out/suite-<timestamp>/): one
subdirectory per step, each holding the raw output of bench/run.sh or bench/tls.sh
(results.tsv, idle.tsv, obs.tsv, env.txt), plus callgrind.md and suite.env. Writes
OUTDIR/results.md (every table, ratios to HAProxy, the issue #10 targets met or not) and
OUTDIR/plot/*.dat (+ titles) for bench/plot.sh. Steps that did not run are reported as such.

Figures, as in run.sh and tls.sh: req/s is the median of the runs with min..max; p50/p99 are
medians of wrk's percentiles; proxy CPU s / 100k requests is the utime+stime of the proxy's
processes summed over the runs divided by the requests served over the runs; "vs HAProxy" is
ringlb's (or nginx's) figure divided by HAProxy's from the same step.
"""
import os
import re
import statistics
import sys

PROXIES = ["ringlb", "haproxy", "nginx"]
COLORS = {"ringlb": 0x1B9E77, "haproxy": 0x7570B3, "nginx": 0xD95F02}


def read_tsv(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    return lines[1:] if lines else []


def read_env(path):
    env = {}
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.rstrip("\n").partition("=")
            if k:
                env[k] = v
    return env


def agg(rows):
    """rows of one variant (run.sh layout, or tls.sh layout shifted by one) -> dict"""
    rps = [float(r["rps"]) for r in rows]
    reqs = sum(int(r["requests"]) for r in rows)
    return {
        "rps": statistics.median(rps), "min": min(rps), "max": max(rps),
        "p50": statistics.median(float(r["p50"]) for r in rows),
        "p99": statistics.median(float(r["p99"]) for r in rows),
        "cpu": sum(float(r["cpu"]) for r in rows) / max(1, reqs) * 100000,
        "requests": reqs, "errors": sum(int(r["errors"]) for r in rows), "runs": len(rows),
        "rows": rows,
    }


def run_variants(path, conns=None):
    """bench/run.sh results.tsv -> {variant: agg}"""
    rows = read_tsv(path)
    if rows is None:
        return None
    by = {}
    for r in rows:
        if conns is not None and int(r[1]) != conns:
            continue
        by.setdefault(r[0], []).append({
            "rps": r[3], "p50": r[4], "p99": r[5], "cpu": r[6], "requests": r[7],
            "errors": r[8], "backend_conns": r[9] if len(r) > 9 else "0"})
    return {k: agg(v) for k, v in by.items()}


def tls_variants(path, case):
    rows = read_tsv(path)
    if rows is None:
        return None
    by = {}
    for r in rows:
        if r[0] != case:
            continue
        by.setdefault(r[1], []).append({
            "rps": r[3], "p50": r[4], "p99": r[5], "cpu": r[6], "requests": r[7],
            "errors": r[8], "util": r[9], "full": r[10], "resumed": r[11]})
    return {k: agg(v) for k, v in by.items()} if by else None


def idle_table(path):
    """idle.tsv of run.sh --idle or tls.sh (no header line) -> {proxy: figures}"""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    out = {}
    for name, n1, n2, rb, rm, ra in rows:
        n1, n2, rb, rm, ra = int(n1 or 0), int(n2 or 0), int(rb), int(rm), int(ra)
        n = n1 + n2
        out[name] = {"n": n, "before": rb / 1024, "after": ra / 1024,
                     "all": (ra - rb) / n if n else 0, "second": (ra - rm) / n2 if n2 else 0}
    return out


def size_label(n):
    if n % 1048576 == 0:
        return f"{n // 1048576} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def fmt(v, d=0):
    return f"{v:,.{d}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


class Report:
    def __init__(self, out):
        self.out = out
        self.env = read_env(os.path.join(out, "suite.env"))
        self.md = []
        self.plot = {}      # chart -> list of (title, [(proxy, value, lo, hi)])
        self.checks = []    # (target, value, ok)

    def p(self, s=""):
        self.md.append(s)

    # ------------------------------------------------------------------------------------
    def line_rows(self, title, vs, base="haproxy", names=None, unit="req/s"):
        """One line of the main table: the three proxies' figures and ratios to base."""
        names = names or {p: p for p in PROXIES}
        b = vs.get(names.get(base, base))
        for p in PROXIES:
            a = vs.get(names[p])
            if not a:
                continue
            self.p(f"| {title} | {p} | {fmt(a['rps'])} | {fmt(a['min'])}..{fmt(a['max'])} "
                   f"| {a['p50']:.2f} | {a['p99']:.2f} | {a['cpu']:.3f} "
                   f"| {ratio(a['rps'], b['rps']) if b else 'n/a'} "
                   f"| {ratio(a['cpu'], b['cpu']) if b else 'n/a'} | {a['errors']} |")

    def chart(self, chart, title, vs, names=None, key="rps", scale=1.0, bars=True):
        names = names or {p: p for p in PROXIES}
        pts = []
        for p in PROXIES:
            a = vs.get(names[p]) if vs else None
            if not a:
                continue
            v = a[key] * scale
            lo, hi = (a["min"] * scale, a["max"] * scale) if bars else (v, v)
            pts.append((p, v, lo, hi))
        if pts:
            self.plot.setdefault(chart, []).append((title, pts))

    def check(self, what, value, ok):
        self.checks.append((what, value, "met" if ok else "**not met**"))

    # ------------------------------------------------------------------------------------
    def build(self):
        out, env = self.out, self.env
        nbytes = int(env.get("BYTES", "1048576"))
        ntg_raw = env.get("TARGETS", "1000")
        ntg = f"{int(ntg_raw):,}"
        nrules_raw = env.get("RULES", "10000")
        nrules = f"{int(nrules_raw):,}"
        self.p("# ringlb vs HAProxy vs nginx — bench/suite.sh")
        self.p()
        rel = os.path.relpath(out, env.get("ROOT", os.getcwd()))
        self.p(f"Output directory: `{out if rel.startswith('..') else rel}`; "
               f"mode {env.get('MODE', '?')}: {env.get('RUNS', '?')} run(s) of "
               f"{env.get('DURATION', '?')} s per line and proxy after a {env.get('WARMUP', '?')} s "
               f"warm-up, alternating ringlb, HAProxy, nginx; {env.get('IDLE_N', '?')} idle "
               f"connections; callgrind N = {env.get('CALLGRIND_N', '?')}.")
        if env.get("ELAPSED"):
            self.p(f"Planned {env.get('PLANNED', '?')} s, took {env['ELAPSED']} s "
                   f"({int(env['ELAPSED']) // 60} min {int(env['ELAPSED']) % 60} s).")
        failed = env.get("FAILED", "").split()
        if failed:
            self.p(f"**Steps that failed**: {', '.join(failed)} (see their .log files).")
        self.p()
        envtxt = os.path.join(out, "env.txt")
        if os.path.exists(envtxt):
            self.p("```")
            self.p(open(envtxt).read().rstrip())
            self.p("```")
            self.p()

        ka100 = run_variants(os.path.join(out, "ka100", "results.tsv"))
        tgt = run_variants(os.path.join(out, "targets", "results.tsv"))
        ka1000 = run_variants(os.path.join(out, "ka1000", "results.tsv"))
        close = run_variants(os.path.join(out, "close", "results.tsv"))
        big = run_variants(os.path.join(out, "bytes", "results.tsv"))
        tlsdir = os.path.join(out, "tls")
        tka = tls_variants(os.path.join(tlsdir, "results.tsv"), "keepalive")
        ths = tls_variants(os.path.join(tlsdir, "results.tsv"), "handshake")
        trs = tls_variants(os.path.join(tlsdir, "results.tsv"), "resumed")
        tnames = {p: f"{p}-t{ntg_raw}" for p in PROXIES}

        # -- main table ----------------------------------------------------------------
        self.p("## Every line")
        self.p()
        self.p("Medians of the runs (min..max for req/s); proxy CPU = utime+stime of all the "
               "proxy's processes and threads per 100k requests; ratios are to HAProxy in the "
               "same step (CPU ratio < 1: less CPU per request than HAProxy).")
        self.p()
        self.p("| line | proxy | req/s | req/s min..max | p50 ms | p99 ms | proxy CPU s / 100k req "
               "| req/s vs HAProxy | CPU/req vs HAProxy | errors |")
        self.p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        lines = [
            ("plaintext keep-alive, 100 conns", ka100, None, "KA 100 conns"),
            ("plaintext keep-alive, 1,000 conns", ka1000, None, "KA 1,000 conns"),
            ("plaintext, new connection per request (100 conns)", close, None, "new conn / request"),
            (f"plaintext keep-alive, {ntg} targets (100 conns)", tgt, tnames, f"{ntg} targets"),
            (f"{size_label(nbytes)} responses ({env.get('BYTES_CONNS', '20')} conns)", big, None,
             None),
            ("TLS 1.3 keep-alive, 100 conns", tka, None, "TLS KA 100 conns"),
            ("TLS 1.3 full handshakes (50 conns), handshakes/s", ths, None, "TLS full handshakes"),
            ("TLS 1.3 resumed handshakes (50 conns), handshakes/s", trs, None, "TLS resumed handshakes"),
        ]
        for title, vs, names, short in lines:
            if not vs:
                self.p(f"| {title} | not run | | | | | | | | |")
                continue
            self.line_rows(title, vs, names=names)
            if short:
                self.chart("throughput", short, vs, names)
                self.chart("cpu", short, vs, names, key="cpu", bars=False)
        if big:
            self.chart("throughput", f"{size_label(nbytes)} responses, MB/s", big,
                       scale=nbytes / 1e6)
            self.chart("cpu", f"{size_label(nbytes)} responses, CPU s / GB", big, key="cpu",
                       scale=1e9 / nbytes / 100000, bars=False)
        self.p()

        # -- large responses ---------------------------------------------------------------
        self.p(f"## Large responses: GET /bytes/{nbytes}")
        self.p()
        if big:
            b = big.get("haproxy")
            self.p("| proxy | MB/s (median) | MB/s min..max | req/s | p99 ms | proxy CPU s / GB "
                   "| MB/s vs HAProxy | CPU/GB vs HAProxy |")
            self.p("|---|---:|---:|---:|---:|---:|---:|---:|")
            for p in PROXIES:
                a = big.get(p)
                if not a:
                    continue
                k = nbytes / 1e6
                cpugb = a["cpu"] / 100000 * 1e9 / nbytes
                self.p(f"| {p} | {fmt(a['rps'] * k)} | {fmt(a['min'] * k)}..{fmt(a['max'] * k)} "
                       f"| {fmt(a['rps'])} | {a['p99']:.2f} | {cpugb:.3f} "
                       f"| {ratio(a['rps'], b['rps']) if b else 'n/a'} "
                       f"| {ratio(a['cpu'], b['cpu']) if b else 'n/a'} |")
            self.chart("bytes", "MB/s (median, min..max)", big, scale=nbytes / 1e6)
            self.chart("bytes", "proxy CPU s per GB", big, key="cpu",
                       scale=1e9 / nbytes / 100000, bars=False)
            self.p()
            self.p("MB/s = req/s x body bytes / 10^6 (response bodies only).")
        else:
            self.p("Not run.")
        self.p()

        # -- connection churn checks ------------------------------------------------------
        self.p("## New connection per request: checks")
        self.p()
        if close:
            self.p("wrk sends `Connection: close`; each proxy must answer `Connection: close` "
                   "and close (client-side churn) while keeping its keep-alive connections to "
                   "the backend (rlb-backend's accepted connections during the runs):")
            self.p()
            self.p("| proxy | requests | backend connections opened | per 1,000 requests |")
            self.p("|---|---:|---:|---:|")
            for p in PROXIES:
                a = close.get(p)
                if a:
                    bc = sum(int(r["backend_conns"]) for r in a["rows"])
                    self.p(f"| {p} | {fmt(a['requests'])} | {bc} | {bc * 1000 / max(1, a['requests']):.2f} |")
            self.p()
            envc = os.path.join(out, "close", "env.txt")
            if os.path.exists(envc):
                for line in open(envc):
                    if line.startswith("close check:"):
                        self.p(f"- {line.strip()[len('close check: '):]}")
        else:
            self.p("Not run.")
        self.p()

        # -- TLS checks ---------------------------------------------------------------------
        self.p("## TLS handshakes: checks")
        self.p()
        speed = None
        envt = os.path.join(tlsdir, "env.txt")
        if os.path.exists(envt):
            for line in open(envt):
                m = re.search(r"sign/s ([0-9.]+), verify/s ([0-9.]+)", line)
                if m:
                    speed = (float(m.group(1)), float(m.group(2)))
        if ths or trs:
            self.p("Handshakes counted by the client (the wrk shim bench/tls_noresume.c): full "
                   "handshakes must all be full, resumed ones all resumed but each connection "
                   "slot's first.")
            self.p()
            self.p("| case | proxy | full | resumed | resumed % | proxy CPU % of a core |")
            self.p("|---|---|---:|---:|---:|---:|")
            for case, vs in (("full", ths), ("resumed", trs)):
                for p in PROXIES:
                    a = (vs or {}).get(p)
                    if not a:
                        continue
                    f = sum(int(r["full"]) for r in a["rows"])
                    rr = sum(int(r["resumed"]) for r in a["rows"])
                    util = statistics.median(float(r["util"]) for r in a["rows"])
                    self.p(f"| {case} | {p} | {f} | {rr} | {100 * rr / max(1, f + rr):.1f} | {util:.0f} |")
            self.p()
        if speed:
            self.p(f"Ceiling for full handshakes: `openssl speed ecdsap256` on the proxy's core: "
                   f"{fmt(speed[0])} sign/s ({fmt(speed[1])} verify/s: the client's cost per handshake).")
        self.p()

        # -- idle ---------------------------------------------------------------------------
        self.p("## Idle keep-alive connections: memory per connection")
        self.p()
        idle = idle_table(os.path.join(out, "idle", "idle.tsv"))
        tidle = idle_table(os.path.join(tlsdir, "idle.tsv"))
        if idle or tidle:
            self.p("VmRSS growth of the proxy's processes / connections, over all and over the "
                   "second of two equal batches.")
            self.p()
            self.p("| kind | proxy | connections | RSS before MiB | RSS after MiB | KiB / conn (all) "
                   "| KiB / conn (second half) | all vs HAProxy |")
            self.p("|---|---|---:|---:|---:|---:|---:|---:|")
            for kind, t in (("plaintext", idle), ("TLS 1.3", tidle)):
                if not t:
                    continue
                b = t.get("haproxy")
                for p in PROXIES:
                    a = t.get(p)
                    if a:
                        self.p(f"| {kind} | {p} | {a['n']} | {a['before']:.1f} | {a['after']:.1f} "
                               f"| {a['all']:.2f} | {a['second']:.2f} "
                               f"| {ratio(a['all'], b['all']) if b else 'n/a'} |")
                pts = [(p, t[p]["all"], t[p]["all"], t[p]["all"]) for p in PROXIES if p in t]
                self.plot.setdefault("idle", []).append((f"{kind}, KiB per idle connection", pts))
        else:
            self.p("Not run.")
        self.p()

        # -- targets ------------------------------------------------------------------------
        self.p(f"## Targets: 2 vs {ntg} targets in the group (100 conns, same step)")
        self.p()
        self.p(f"The six variants of this step (each proxy with 2 and with {ntg} targets) run "
               "side by side, so the 2-target figures here are lower for HAProxy and nginx than "
               "in the plaintext keep-alive line, whose step has only the three proxies alive; "
               "compare within a row.")
        self.p()
        if tgt and any(tnames[p] in tgt for p in PROXIES):
            self.p(f"| proxy | req/s, 2 targets | req/s, {ntg} targets | req/s ratio "
                   f"| CPU s / 100k, 2 | CPU s / 100k, {ntg} | CPU/req ratio | p99 ms, 2 / {ntg} |")
            self.p("|---|---:|---:|---:|---:|---:|---:|---:|")
            pts_r = []
            for p in PROXIES:
                a, t = tgt.get(p), tgt.get(tnames[p])
                if a and t:
                    self.p(f"| {p} | {fmt(a['rps'])} | {fmt(t['rps'])} | {ratio(t['rps'], a['rps'])} "
                           f"| {a['cpu']:.3f} | {t['cpu']:.3f} | {ratio(t['cpu'], a['cpu'])} "
                           f"| {a['p99']:.2f} / {t['p99']:.2f} |")
                    pts_r.append((p, t["cpu"] / a["cpu"] if a["cpu"] else 0, 0, 0))
            self.plot.setdefault("scaling", []).append(
                (f"CPU per request, {ntg} targets / 2 targets", [(p, v, v, v) for p, v, _, _ in pts_r]))
        else:
            self.p("Not run.")
        self.p()

        # -- rules ----------------------------------------------------------------------------
        self.p(f"## Rules: 1 vs {nrules} host rules (ringlb alone, same step)")
        self.p()
        rules = run_variants(os.path.join(out, "rules", "results.tsv"))
        r1, rn = (rules or {}).get("ringlb-r1"), (rules or {}).get(f"ringlb-r{nrules_raw}")
        if r1 and rn:
            self.p("| variant | req/s | req/s min..max | p50 ms | p99 ms | proxy CPU s / 100k req "
                   "| req/s vs 1 rule | CPU/req vs 1 rule |")
            self.p("|---|---:|---:|---:|---:|---:|---:|---:|")
            for name, a in (("ringlb-r1", r1), (f"ringlb-r{nrules_raw}", rn)):
                self.p(f"| {name} | {fmt(a['rps'])} | {fmt(a['min'])}..{fmt(a['max'])} "
                       f"| {a['p50']:.2f} | {a['p99']:.2f} | {a['cpu']:.3f} "
                       f"| {ratio(a['rps'], r1['rps'])} | {ratio(a['cpu'], r1['cpu'])} |")
            self.plot.setdefault("scaling", []).append(
                (f"ringlb CPU per request, {nrules} rules / 1 rule",
                 [("ringlb", rn["cpu"] / r1["cpu"], rn["cpu"] / r1["cpu"], rn["cpu"] / r1["cpu"])]))
            self.p()
            self.p(f"wrk asks for the host of the last of the {nrules} rules.")
        else:
            self.p("Not run.")
        self.p()

        # -- observability ------------------------------------------------------------------
        self.p("## Cost of metrics and access logging (ringlb alone, same step)")
        self.p()
        obs = run_variants(os.path.join(out, "obs", "results.tsv"))
        if obs and "ringlb-metrics" in obs:
            m = obs["ringlb-metrics"]
            self.p("| variant | req/s | req/s min..max | p99 ms | proxy CPU s / 100k req "
                   "| req/s vs metrics only | CPU/req vs metrics only | log lines | dropped |")
            self.p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            last = {}
            orows = read_tsv(os.path.join(out, "obs", "obs.tsv")) or []
            for r in orows:
                last[r[0]] = (r[4], r[5])
            for name in ("ringlb-metrics", "ringlb-log-shm", "ringlb-log-disk"):
                a = obs.get(name)
                if a:
                    ll, dd = last.get(name, ("?", "?"))
                    self.p(f"| {name} | {fmt(a['rps'])} | {fmt(a['min'])}..{fmt(a['max'])} "
                           f"| {a['p99']:.2f} | {a['cpu']:.3f} | {ratio(a['rps'], m['rps'])} "
                           f"| {ratio(a['cpu'], m['cpu'])} | {ll} | {dd} |")
            self.p()
            self.p("Metrics are always on in ringlb (no switch); log-shm writes the access log to "
                   "tmpfs, log-disk to the output directory.")
        else:
            self.p("Not run.")
        self.p()

        # -- callgrind ------------------------------------------------------------------------
        self.p("## Instructions per request (callgrind, bench/callgrind.sh)")
        self.p()
        cg = os.path.join(out, "callgrind.md")
        if os.path.exists(cg) and open(cg).read().strip():
            self.p(open(cg).read().rstrip())
        else:
            self.p("Not run.")
        self.p()

        # -- issue #10 targets ------------------------------------------------------------------
        def both(vs, p="ringlb", b="haproxy"):
            return vs and vs.get(p) and vs.get(b)
        for label, vs in (("plaintext keep-alive 100", ka100), ("plaintext keep-alive 1,000", ka1000)):
            if both(vs):
                a, b = vs["ringlb"], vs["haproxy"]
                self.check(f"{label}: CPU/req <= 0.67x HAProxy", f"{a['cpu'] / b['cpu']:.2f}x",
                           a["cpu"] <= 0.67 * b["cpu"])
                self.check(f"{label}: req/s >= HAProxy", f"{a['rps'] / b['rps']:.2f}x",
                           a["rps"] >= b["rps"])
                self.check(f"{label}: p99 <= HAProxy", f"{a['p99']:.2f} vs {b['p99']:.2f} ms",
                           a["p99"] <= b["p99"])
        if both(tka):
            a, b = tka["ringlb"], tka["haproxy"]
            self.check("TLS keep-alive: CPU/req <= 0.75x HAProxy", f"{a['cpu'] / b['cpu']:.2f}x",
                       a["cpu"] <= 0.75 * b["cpu"])
        if both(ths):
            a, b = ths["ringlb"], ths["haproxy"]
            self.check("full TLS handshakes: CPU/handshake <= HAProxy",
                       f"{a['cpu'] / b['cpu']:.2f}x" + (f" (ceiling {fmt(speed[0])} sign/s)" if speed else ""),
                       a["cpu"] <= b["cpu"])
        if idle and "ringlb" in idle:
            a = idle["ringlb"]
            self.check("idle plaintext <= 0.5 KiB/conn", f"{a['all']:.2f} all, {a['second']:.2f} second half",
                       a["all"] <= 0.5)
        if tidle and "ringlb" in tidle:
            a = tidle["ringlb"]
            self.check("idle TLS <= 8 KiB/conn", f"{a['all']:.2f} all, {a['second']:.2f} second half",
                       a["all"] <= 8)
        if r1 and rn:
            self.check(f"{nrules} rules within 10 % of 1 rule (req/s, CPU/req)",
                       f"{rn['rps'] / r1['rps']:.2f}x, {rn['cpu'] / r1['cpu']:.2f}x",
                       rn["rps"] >= 0.9 * r1["rps"] and rn["cpu"] <= 1.1 * r1["cpu"])
        if tgt and "ringlb" in tgt and tnames["ringlb"] in tgt:
            a, t = tgt["ringlb"], tgt[tnames["ringlb"]]
            self.check(f"{ntg} targets within 10 % of 2 targets (req/s, CPU/req)",
                       f"{t['rps'] / a['rps']:.2f}x, {t['cpu'] / a['cpu']:.2f}x",
                       t["rps"] >= 0.9 * a["rps"] and t["cpu"] <= 1.1 * a["cpu"])
        head = ["## Issue #10 targets (ringlb, this run)", "",
                "| target | measured | |", "|---|---|---|"]
        head += [f"| {w} | {v} | {ok} |" for w, v, ok in self.checks] or ["| (no step ran) | | |"]
        head += [""]
        # the targets table goes right after the header paragraph and environment
        idx = self.md.index("## Every line")
        self.md[idx:idx] = head

    # ------------------------------------------------------------------------------------
    def write(self):
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write("\n".join(self.md) + "\n")
        pdir = os.path.join(self.out, "plot")
        os.makedirs(pdir, exist_ok=True)
        for old in os.listdir(pdir):
            os.remove(os.path.join(pdir, old))
        for chart, panels in self.plot.items():
            with open(os.path.join(pdir, f"{chart}.dat"), "w") as f:
                for i, (title, pts) in enumerate(panels):
                    if i:
                        f.write("\n\n")
                    f.write("# proxy x value low high color\n")
                    for p, v, lo, hi in pts:
                        f.write(f"{p} {PROXIES.index(p)} {v:.6g} {lo:.6g} {hi:.6g} {COLORS[p]}\n")
            with open(os.path.join(pdir, f"{chart}.titles"), "w") as f:
                for title, _ in panels:
                    f.write(title + "\n")


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    out = os.path.abspath(sys.argv[1])
    if not os.path.isdir(out):
        sys.exit(f"report.py: {out} is not a directory")
    r = Report(out)
    r.build()
    r.write()
    print(os.path.join(out, "results.md"))


if __name__ == "__main__":
    main()
