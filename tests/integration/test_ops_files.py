"""The Grafana dashboard and the Prometheus alert rules under conf/ (issue #12, item 4).

What is tested:
  - every ringlb_* metric that conf/grafana-dashboard.json and conf/prometheus-alerts.yml use
    is exported by a real ringlb (two listeners, two target groups of real rlb-backend targets,
    one target down, a scaling block) after some traffic with 2xx, 4xx, 5xx, redirects, fixed
    responses and a load-balancer 400, scraped from GET /metrics on the admin listener (the
    fleet metrics from a second instance with a cluster block whose etcd is unreachable);
    histogram families count through their _bucket/_sum/_count series. Label matchers and
    `by (...)` labels must be labels of those series, and fixed matcher values (class="4xx"...)
    must match exported values;
  - `promtool check rules conf/prometheus-alerts.yml`, and `promtool test rules
    tests/integration/prometheus_alerts_test.yml`: the deployment alarm fires at 2 % after 2
    one-minute periods, not after 1, not at 0.5 %, not under 20 requests per period; the
    no-healthy-target and unhealthy-target alerts fire, not for groups without health checks;
    the etcd-unreachable alert fires after 2 minutes, not for a 1-minute blip;
  - the dashboard JSON: the datasource is the variable ${DS_PROMETHEUS} everywhere, panel ids
    are unique, the panels the issue asks for are there, and every expression (variables
    substituted) parses (promtool check rules on them as recording rules).

promtool comes from Debian's prometheus package (scripts/deps.sh); without it the promtool
checks are skipped with a message. Run: python3 tests/integration/test_ops_files.py
"""

import json
import os
import re
import shutil
import tempfile

import harness as h

DASHBOARD = os.path.join(h.SOURCE_DIR, "conf", "grafana-dashboard.json")
ALERTS = os.path.join(h.SOURCE_DIR, "conf", "prometheus-alerts.yml")
ALERTS_TEST = os.path.join(h.SOURCE_DIR, "tests", "integration", "prometheus_alerts_test.yml")

LINE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
METRIC_RE = re.compile(r'\bringlb_[A-Za-z0-9_]+\b')
SELECTOR_RE = re.compile(r'\b(ringlb_[A-Za-z0-9_]+)\s*\{([^}]*)\}')
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
BY_RE = re.compile(r'\b(?:by|without|on|ignoring)\s*\(([^)]*)\)')
# Labels Prometheus attaches at scrape time, and the histogram's bucket label.
SCRAPE_LABELS = {"instance", "job"}
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                "$instance": ".*", "$listener": ".*", "$target_group": ".*",
                "$scaling_target": "600"}


def promtool():
    return shutil.which("promtool")


def parse_exposition(text):
    """Prometheus text -> ({sample name: [(label dict, value), ...]}, {family: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ.strip()
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE_RE.match(line)
        assert m, f"bad exposition line {line!r}"
        samples.setdefault(m.group(1), []).append(
            (dict(LABEL_RE.findall(m.group(2) or "")), float(m.group(3))))
    return samples, types


def value(samples, name, **labels):
    """Sum of the samples of name whose labels include labels."""
    return sum(v for d, v in samples.get(name, [])
               if all(d.get(k) == x for k, x in labels.items()))


def dashboard_exprs(dash):
    """Every PromQL expression of the dashboard's panels (rows included): [(panel title, expr)]."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return out


def alert_exprs(path):
    """The `expr:` values of a rules file (block scalars `|`/`>` or one line), without a YAML
    library: [(alert or record name, expr)]."""
    lines = open(path, encoding="utf-8").read().splitlines()
    out = []
    name = "?"
    i = 0
    while i < len(lines):
        ln = lines[i]
        m = re.match(r'^\s*-?\s*(?:alert|record):\s*(\S+)', ln)
        if m:
            name = m.group(1)
        m = re.match(r'^(\s*)expr:\s*(.*)$', ln)
        if m:
            indent, val = len(m.group(1)), m.group(2).strip()
            if val[:1] in ("|", ">"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip()
                                          or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i].strip())
                    i += 1
                out.append((name, " ".join(b for b in body if b)))
                continue
            out.append((name, val.strip("'\"")))
        i += 1
    return out


def substitute_grafana(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


class AlertRules(h.RingTestCase):
    def test_promtool_check_rules(self):
        if not promtool():
            self.skipTest("promtool not installed (scripts/deps.sh installs Debian's "
                          "prometheus package, which ships it)")
        p = h.run([promtool(), "check", "rules", ALERTS], timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        m = re.search(r"SUCCESS: (\d+) rules found", p.stdout)
        self.assertTrue(m, p.stdout)
        self.assertEqual(int(m.group(1)), len(alert_exprs(ALERTS)),
                         "the expr extractor of this test missed a rule")

    def test_promtool_unit_tests(self):
        if not promtool():
            self.skipTest("promtool not installed (scripts/deps.sh installs Debian's "
                          "prometheus package, which ships it)")
        p = h.run([promtool(), "test", "rules", ALERTS_TEST], timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)

    def test_rules_present(self):
        names = [n for n, _ in alert_exprs(ALERTS)]
        for want in ("RinglbTargetGroupErrorRateHigh", "RinglbNoHealthyTargets",
                     "RinglbUnhealthyTargets", "RinglbEtcdUnreachable"):
            self.assertIn(want, names)
        text = open(ALERTS, encoding="utf-8").read()
        # the deployment alarm: 1 % threshold, 2 one-minute periods (pending + 1 evaluation)
        self.assertRegex(text, r"\) > 0\.01\b")
        self.assertRegex(text, r"name: ringlb-deployment-alarm\s+interval: 1m")


class Dashboard(h.RingTestCase):
    def setUp(self):
        with open(DASHBOARD, encoding="utf-8") as f:
            self.dash = json.load(f)

    def test_datasource_is_a_variable(self):
        tvars = {v["name"]: v for v in self.dash["templating"]["list"]}
        ds = tvars.get("DS_PROMETHEUS")
        self.assertIsNotNone(ds, "no DS_PROMETHEUS variable")
        self.assertEqual(ds["type"], "datasource")
        self.assertEqual(ds["query"], "prometheus")
        want = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        ids = []

        def walk(panels):
            for p in panels:
                ids.append(p["id"])
                self.assertIn("gridPos", p, p.get("title"))
                if p["type"] != "row":
                    self.assertEqual(p.get("datasource"), want, p.get("title"))
                    self.assertTrue(p.get("targets"), p.get("title"))
                for t in p.get("targets", []):
                    self.assertEqual(t.get("datasource"), want, p.get("title"))
                walk(p.get("panels", []))

        walk(self.dash["panels"])
        self.assertEqual(len(ids), len(set(ids)), "duplicate panel ids")
        for v in self.dash["templating"]["list"]:
            if v["type"] == "query":
                self.assertEqual(v["datasource"], want, v["name"])
        # nothing names a concrete data source (the annotation query is Grafana's own)
        found = []

        def sources(node):
            if isinstance(node, dict):
                if isinstance(node.get("datasource"), dict):
                    found.append(node["datasource"].get("uid"))
                for v in node.values():
                    sources(v)
            elif isinstance(node, list):
                for v in node:
                    sources(v)

        sources(self.dash)
        self.assertEqual(sorted(set(found)), ["${DS_PROMETHEUS}", "-- Grafana --"])

    def test_required_panels(self):
        exprs = " ".join(e for _, e in dashboard_exprs(self.dash))
        self.assertRegex(exprs, r"sum by \(listener, target_group\) \(rate\(ringlb_requests_total")
        self.assertRegex(exprs, r"ringlb_target_responses_total\{[^}]*\}")
        self.assertRegex(exprs, r"class=~\"4xx\|5xx\"")
        self.assertIn("ringlb_lb_responses_total", exprs)
        for q in ("0.50", "0.90", "0.99"):
            self.assertRegex(exprs, r"histogram_quantile\(" + re.escape(q)
                             + r", sum by \(target_group, le\) \(rate\("
                             r"ringlb_target_response_seconds_bucket")
        self.assertIn("ringlb_healthy_targets", exprs)
        self.assertIn("ringlb_unhealthy_targets", exprs)
        self.assertIn("ringlb_request_count_per_target", exprs)
        self.assertIn("vector($scaling_target)", exprs)

    def test_expressions_parse(self):
        if not promtool():
            self.skipTest("promtool not installed (scripts/deps.sh installs Debian's "
                          "prometheus package, which ships it)")
        rules = [{"record": f"dashboard:expr_{i}", "expr": substitute_grafana(e)}
                 for i, (_, e) in enumerate(dashboard_exprs(self.dash))]
        self.assertGreater(len(rules), 20)
        with tempfile.TemporaryDirectory(prefix="ringlb-ops-") as tmp:
            path = os.path.join(tmp, "dashboard-rules.yml")
            with open(path, "w") as f:      # JSON is YAML
                json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            p = h.run([promtool(), "check", "rules", path], timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class MetricsExported(h.RingTestCase):
    """Every metric the dashboard and the alerts use, against a real scrape."""

    def scrape(self, admin_port):
        r = h.http(admin_port, "GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return parse_exposition(r.text)

    def test_every_used_metric_is_exported(self):
        api1, api2, web1 = self.backend("api1"), self.backend("api2"), self.backend("web1")
        dead = h.free_port()            # nothing listens there: an unhealthy target
        hc = {"enabled": True, "path": "/health", "interval": "200ms", "timeout": "100ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}
        tgs = [
            h.target_group("api", [api1, api2], health_check=hc,
                           scaling={"target_value": 100, "min": 1, "max": 5,
                                    "scale_out_cooldown": "0s", "scale_in_cooldown": "0s"}),
            h.target_group("web", [web1, dead], health_check=hc),
        ]
        public = h.listener("public", h.forward("web"), rules=[
            {"priority": 10, "conditions": {"path_pattern": ["/status/*"]},
             "action": h.forward("api")},
            {"priority": 20, "conditions": {"path_pattern": ["/old"]},
             "action": {"redirect": {"path": "/new", "status_code": "HTTP_301"}}},
            {"priority": 30, "conditions": {"path_pattern": ["/static"]},
             "action": h.fixed_response(200, "static")},
        ])
        internal = h.listener("internal", h.forward(("api", 1), ("web", 1)))
        cfg = h.make_config(listeners=[public, internal], target_groups=tgs,
                            metrics={"window": "1s"})
        lb = self.ringlb(cfg)

        def health_settled():
            s, _ = self.scrape(lb.admin_port)
            return (value(s, "ringlb_healthy_targets", target_group="api") == 2
                    and value(s, "ringlb_healthy_targets", target_group="web") == 1
                    and value(s, "ringlb_unhealthy_targets", target_group="web") == 1)

        h.wait_for(health_settled, timeout=20, what="api 2 healthy, web 1 healthy 1 unhealthy")

        pport, iport = lb.port("public"), lb.port("internal")
        with h.Conn(pport) as c:
            for path, want in [("/status/200", 200)] * 20 + [("/status/500", 500)] * 2 + \
                    [("/status/404", 404), ("/", 200), ("/old", 301), ("/static", 200)]:
                r = c.roundtrip("GET", path)
                self.assertEqual(r.status, want, f"{path}: {r!r}")
        with h.Conn(iport) as c:
            for _ in range(10):
                self.assertEqual(c.roundtrip("GET", "/").status, 200)
        bad = h.send_raw(pport, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertLBError(bad, 400, "two Host headers")

        # the scaling advice needs one closed window (1 s)
        h.wait_for(lambda: "ringlb_scaling_desired_targets" in self.scrape(lb.admin_port)[0],
                   timeout=15, what="a ringlb_scaling_desired_targets sample")
        samples, types = self.scrape(lb.admin_port)

        # the fleet metrics exist only with a cluster block: a second instance whose etcd is
        # unreachable (nothing listens there; it starts on the file alone)
        fleet_cfg = h.make_config(
            listeners=[h.listener("main", h.fixed_response(200, "fleet"))],
            cluster={"etcd": [f"http://127.0.0.1:{h.free_port()}"], "instance": "ops-test",
                     "prefix": "/ringlb/ops-test/"})
        fleet = self.ringlb(fleet_cfg, threads=1)
        fs, ft = self.scrape(fleet.admin_port)
        self.assertEqual(value(fs, "ringlb_cluster_connected"), 0)
        for n, series in fs.items():
            if n.startswith("ringlb_cluster_"):
                samples[n] = series
                types[n] = ft[n]

        # the traffic is where the dashboard and the deployment alarm look: api had 23
        # requests, 2 answered 5xx and 1 answered 4xx by its targets (13 % > 1 %)
        self.assertEqual(value(samples, "ringlb_requests_total", listener="public",
                               target_group="api"), 23)
        self.assertEqual(value(samples, "ringlb_target_responses_total", target_group="api",
                               **{"class": "5xx"}), 2)
        self.assertEqual(value(samples, "ringlb_target_responses_total", target_group="api",
                               **{"class": "4xx"}), 1)
        self.assertEqual(value(samples, "ringlb_lb_responses_total", listener="public",
                               code="400"), 1)
        self.assertGreater(value(samples, "ringlb_target_response_seconds_count",
                                 target_group="web"), 0)

        used = [("dashboard: " + t, substitute_grafana(e))
                for t, e in dashboard_exprs(json.load(open(DASHBOARD, encoding="utf-8")))]
        used += [("alerts: " + n, e) for n, e in alert_exprs(ALERTS)]
        self.assertGreater(len(used), 20)
        names_used = set()
        problems = []
        for where, expr in used:
            names = set(METRIC_RE.findall(expr))
            if re.fullmatch(r"vector\([0-9.]+\)", expr):
                continue        # the scaling target line: a constant
            self.assertTrue(names, f"{where}: no ringlb_* metric in {expr!r}")
            names_used |= names
            labels_here = set(SCRAPE_LABELS) | {"le"}
            for n in names:
                if n in samples:
                    for d, _ in samples[n]:
                        labels_here |= set(d)
                elif types.get(n) == "histogram" and n + "_bucket" in samples:
                    pass
                else:
                    problems.append(f"{where}: {n} is not exported")
            for n, matchers in SELECTOR_RE.findall(expr):
                for label, op, mval in MATCHER_RE.findall(matchers):
                    if label in SCRAPE_LABELS or label == "__name__":
                        continue
                    have = [d[label] for d, _ in samples.get(n, []) if label in d]
                    if not have:
                        problems.append(f"{where}: {n} has no label {label}")
                        continue
                    if "$" in mval or mval == ".*":
                        continue
                    if op == "=" and mval not in have:
                        problems.append(f"{where}: {n}{{{label}={mval!r}}} matches nothing")
                    if op == "=~" and not any(re.fullmatch(mval, v) for v in have):
                        problems.append(f"{where}: {n}{{{label}=~{mval!r}}} matches nothing "
                                        f"(values: {sorted(set(have))})")
            for group in BY_RE.findall(expr):
                for label in (x.strip() for x in group.split(",")):
                    if label and label not in labels_here:
                        problems.append(f"{where}: by/on label {label!r} is not a label of "
                                        f"{sorted(names)}")
        self.assertEqual(problems, [], "\n".join(problems))
        # the dashboard covers every family ringlb exports
        exported = {re.sub(r"_(bucket|sum|count)$", "", n) if types.get(
            re.sub(r"_(bucket|sum|count)$", "", n)) == "histogram" else n for n in samples}
        used_families = {re.sub(r"_(bucket|sum|count)$", "", n) if types.get(
            re.sub(r"_(bucket|sum|count)$", "", n)) == "histogram" else n for n in names_used}
        self.assertEqual(sorted(exported - used_families), [],
                         "metrics exported by ringlb that neither the dashboard nor the alerts "
                         "use: add a panel to conf/grafana-dashboard.json")


if __name__ == "__main__":
    h.main()
