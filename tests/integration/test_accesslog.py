"""The ALB-format access log through the real binary (SPEC section 6, access_log.path).

Lines are parsed twice: field by field with a parser written from the AWS ALB access-log field
list (below, in order), and with the regular expression AWS documents for querying ALB logs
with Athena — "existing ALB log tooling can read it". Cases: a forwarded request, a
fixed-response, a redirect and a request rejected with 400 by desync mitigation (Severe), each
on its own connection so that the client:port field names the request; a user agent with a
quote (escaped as \\x22); SIGUSR1 reopening the file after a rename (log rotation); the
ringlb_access_log_lines_total counter. Health checks never log a line (test_metrics.py).
"""

import datetime
import os
import re
import signal
import tempfile
import time
import unittest

import harness as h

# The AWS ALB access-log fields, in order (docs: "Access log entries" of Application Load
# Balancers). Quoted fields are marked.
FIELDS = [
    ("type", False), ("time", False), ("elb", False), ("client:port", False),
    ("target:port", False), ("request_processing_time", False),
    ("target_processing_time", False), ("response_processing_time", False),
    ("elb_status_code", False), ("target_status_code", False), ("received_bytes", False),
    ("sent_bytes", False), ("request", True), ("user_agent", True), ("ssl_cipher", False),
    ("ssl_protocol", False), ("target_group_arn", False), ("trace_id", True),
    ("domain_name", True), ("chosen_cert_arn", True), ("matched_rule_priority", False),
    ("request_creation_time", False), ("actions_executed", True), ("redirect_url", True),
    ("error_reason", True), ("target:port_list", True), ("target_status_code_list", True),
    ("classification", True), ("classification_reason", True), ("conn_trace_id", False),
]

# The regular expression of AWS's Athena documentation for ALB access logs.
ATHENA_RE = re.compile(
    r'([^ ]*) ([^ ]*) ([^ ]*) ([^ ]*):([0-9]*) ([^ ]*)[:-]([0-9]*) ([-.0-9]*) ([-.0-9]*) '
    r'([-.0-9]*) (|[-0-9]*) (-|[-0-9]*) ([-0-9]*) ([-0-9]*) \"([^ ]*) (.*) (- |[^ ]*)\" '
    r'\"([^\"]*)\" ([A-Z0-9-_]+) ([A-Za-z0-9.-]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" '
    r'\"([^\"]*)\" ([-.0-9]*) ([^ ]*) \"([^\"]*)\" \"([^\"]*)\" \"([^ ]*)\" \"([^\s]+?)\" '
    r'\"([^\s]+)\" \"([^ ]*)\" \"([^ ]*)\" ?([^ ]*)?( .*)?')

TOKEN_RE = re.compile(r'"[^"]*"|[^ "]+')
TIME_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')
SECS_RE = re.compile(r'^(-1|\d+\.\d{3})$')
TRACE_RE = re.compile(r'^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$')


def parse_line(line):
    """One access-log line → {field: value} (quotes removed; "-" kept as "-")."""
    assert line.endswith("\n") is False
    toks = TOKEN_RE.findall(line)
    assert " ".join(toks) == line, f"fields are not single-space separated: {line!r}"
    assert len(toks) == len(FIELDS), f"{len(toks)} fields instead of {len(FIELDS)}: {line!r}"
    out = {}
    for (name, quoted), tok in zip(FIELDS, toks):
        if quoted:
            assert tok.startswith('"') and tok.endswith('"') and len(tok) >= 2, (name, line)
            tok = tok[1:-1]
        else:
            assert not tok.startswith('"'), (name, line)
        out[name] = tok
    m = ATHENA_RE.fullmatch(line)
    assert m, f"the Athena ALB regex does not match {line!r}"
    # A few groups of the Athena regex, to be sure both parsers read the same fields.
    assert m.group(1) == out["type"] and m.group(3) == out["elb"], line
    assert m.group(11) == out["elb_status_code"] and m.group(12) == out["target_status_code"]
    assert m.group(21) == out["target_group_arn"], line
    assert m.group(25) == out["matched_rule_priority"], line
    return out


def parse_time(s):
    assert TIME_RE.match(s), s
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def read_lines(path):
    try:
        with open(path) as f:
            data = f.read()
    except FileNotFoundError:
        return []
    assert data == "" or data.endswith("\n"), "a partial line was written"
    return data.splitlines()


def wait_lines(path, n, timeout=10):
    return h.wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(read_lines(path)),
                      timeout=timeout, what=f"{n} access log lines in {path}")


class AccessLogTest(h.RingTestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="ringlb-alog-")
        self.addCleanup(self.tmp.cleanup)
        self.log = os.path.join(self.tmp.name, "access.log")

    def start(self):
        self.b = self.backend("alog-b1")
        rules = [
            {"priority": 10, "conditions": {"path_pattern": ["/fixed"]},
             "action": h.fixed_response(200, "fixed body")},
            {"priority": 20, "conditions": {"path_pattern": ["/old/*"]},
             "action": {"redirect": {"protocol": "HTTPS", "host": "new.example.com",
                                     "port": "443", "path": "/#{path}",
                                     "status_code": "HTTP_301"}}},
        ]
        cfg = h.make_config([h.listener("main", h.forward("web"), rules)],
                            [h.target_group("web", [self.b])],
                            access_log={"path": self.log})
        self.r = self.ringlb(cfg)
        self.port = self.r.port()

    def one(self, data, method="GET"):
        """Send raw request bytes on a new connection: (response, local port, request bytes)."""
        with h.Conn(self.port) as c:
            lp = c.local_port
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return c.read_response(method), lp

    def common(self, f, lp, data, resp, start):
        """Fields every line must have right."""
        self.assertEqual(f["type"], "http")
        t, tc = parse_time(f["time"]), parse_time(f["request_creation_time"])
        self.assertLessEqual(tc, t)
        self.assertLess(abs((t - start).total_seconds()), 120)
        self.assertEqual(f["elb"], "main")
        self.assertEqual(f["client:port"], f"127.0.0.1:{lp}")
        for k in ("request_processing_time", "target_processing_time",
                  "response_processing_time"):
            self.assertRegex(f[k], SECS_RE)
        self.assertEqual(f["elb_status_code"], str(resp.status))
        self.assertEqual(int(f["received_bytes"]), len(data))
        self.assertEqual(int(f["sent_bytes"]), len(resp.raw_head) + resp.body_len)
        self.assertEqual((f["ssl_cipher"], f["ssl_protocol"]), ("-", "-"))
        self.assertEqual((f["domain_name"], f["chosen_cert_arn"]), ("-", "-"))
        self.assertEqual(f["error_reason"], "-")
        self.assertRegex(f["conn_trace_id"], r"^TID_[0-9a-f]{16}$")

    def test_fields_of_forward_fixed_redirect_and_desync_400(self):
        self.start()
        start = datetime.datetime.now(datetime.timezone.utc)
        host = f"127.0.0.1:{self.port}"
        fwd = h.build_request("GET", "/headers?x=1", [("User-Agent", "alb-test/1.0")],
                              host=host)
        fixed = h.build_request("GET", "/fixed", host=host)
        redir = h.build_request("GET", "/old/a/b?q=1", [("User-Agent", 'evil"agent')],
                                host=host)
        desync = (b"GET /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                  b"Content-Length: 6\r\n\r\n")
        cases = {}
        for name, data in (("forward", fwd), ("fixed", fixed), ("redirect", redir),
                           ("desync", desync)):
            resp, lp = self.one(data)
            cases[lp] = (name, data, resp)
        self.assertEqual(cases_by(cases, "forward")[2].status, 200)
        self.assertEqual(cases_by(cases, "fixed")[2].status, 200)
        self.assertEqual(cases_by(cases, "redirect")[2].status, 301)
        self.assertEqual(cases_by(cases, "desync")[2].status, 400)

        lines = wait_lines(self.log, 4)
        self.assertEqual(len(lines), 4, lines)
        seen = set()
        for line in lines:
            f = parse_line(line)
            lp = int(f["client:port"].rsplit(":", 1)[1])
            self.assertIn(lp, cases, line)
            name, data, resp = cases[lp]
            seen.add(name)
            with self.subTest(case=name, line=line):
                self.common(f, lp, data, resp, start)
                getattr(self, "check_" + name)(f, resp)
        self.assertEqual(seen, {"forward", "fixed", "redirect", "desync"})
        m = h.http(self.r.admin_port, "GET", "/metrics").text
        self.assertIn("\nringlb_access_log_lines_total 4\n", m)
        self.assertIn("\nringlb_access_log_dropped_total 0\n", m)

    def check_forward(self, f, resp):
        j, hdrs = h.forwarded_headers(resp)
        self.assertEqual(f["target:port"], self.b.addr)
        for k in ("request_processing_time", "target_processing_time",
                  "response_processing_time"):
            self.assertGreaterEqual(float(f[k]), 0.0, k)
        self.assertEqual(f["target_status_code"], "200")
        self.assertEqual(f["request"], f"GET http://127.0.0.1:{self.port}/headers?x=1 HTTP/1.1")
        self.assertEqual(f["user_agent"], "alb-test/1.0")
        self.assertEqual(f["target_group_arn"], "web")
        self.assertRegex(f["trace_id"], TRACE_RE)
        self.assertEqual([f["trace_id"]], hdrs["x-amzn-trace-id"], "the trace id sent")
        self.assertEqual(f["matched_rule_priority"], "0")       # the default action
        self.assertEqual(f["actions_executed"], "forward")
        self.assertEqual(f["redirect_url"], "-")
        self.assertEqual(f["target:port_list"], self.b.addr)
        self.assertEqual(f["target_status_code_list"], "200")
        self.assertEqual((f["classification"], f["classification_reason"]), ("-", "-"))

    def local_answer(self, f):
        self.assertEqual(f["target:port"], "-")
        self.assertEqual([f["request_processing_time"], f["target_processing_time"],
                          f["response_processing_time"]], ["-1", "-1", "-1"])
        self.assertEqual(f["target_status_code"], "-")
        self.assertEqual(f["target_group_arn"], "-")
        self.assertEqual(f["target:port_list"], "-")
        self.assertEqual(f["target_status_code_list"], "-")

    def check_fixed(self, f, resp):
        self.local_answer(f)
        self.assertEqual(f["request"], f"GET http://127.0.0.1:{self.port}/fixed HTTP/1.1")
        self.assertEqual(f["user_agent"], "-")
        self.assertEqual(f["matched_rule_priority"], "10")
        self.assertEqual(f["actions_executed"], "fixed-response")
        self.assertEqual(f["redirect_url"], "-")
        self.assertEqual((f["classification"], f["classification_reason"]), ("-", "-"))

    def check_redirect(self, f, resp):
        self.local_answer(f)
        self.assertEqual(f["request"],
                         f"GET http://127.0.0.1:{self.port}/old/a/b?q=1 HTTP/1.1")
        self.assertEqual(f["user_agent"], "evil\\x22agent")   # the ALB's \xNN escape
        self.assertEqual(f["matched_rule_priority"], "20")
        self.assertEqual(f["actions_executed"], "redirect")
        # redirect_url: see test_redirect_url_is_logged.

    def test_redirect_url_is_logged(self):
        """redirect_url holds the Location the load balancer answered with."""
        self.start()
        with h.Conn(self.port) as c:
            resp = c.roundtrip("GET", "/old/a/b?q=1")
        self.assertEqual(resp.status, 301)
        f = parse_line(wait_lines(self.log, 1)[0])
        self.assertEqual(f["actions_executed"], "redirect")
        self.assertEqual(f["redirect_url"], resp.header("Location"))
        self.assertEqual(f["redirect_url"], "https://new.example.com/old/a/b?q=1")

    def check_desync(self, f, resp):
        self.local_answer(f)
        # Not parsed (two different Content-Length values): logged as the ALB logs a
        # malformed request, "- http://host:port- -".
        method, url, version = f["request"].split(" ")
        self.assertEqual((method, version), ("-", "-"), f["request"])
        self.assertTrue(url.startswith("http://") and url.endswith(f":{self.port}-"), url)
        self.assertEqual(f["matched_rule_priority"], "-")
        self.assertEqual(f["actions_executed"], "-")
        self.assertEqual(f["classification"], "Severe")
        self.assertEqual(f["classification_reason"], "MultipleContentLength")

    def test_sigusr1_reopens_after_rename(self):
        self.start()
        paths_before = [f"/before/{i}" for i in range(5)]
        for p in paths_before:
            self.assertEqual(h.http(self.port, "GET", p).status, 200)
        wait_lines(self.log, len(paths_before))
        rotated = self.log + ".1"
        os.rename(self.log, rotated)
        self.r.signal(signal.SIGUSR1)
        # Until the reopen happened, lines still go to the renamed file: keep sending until
        # one lands in the new file (bounded), then send a known batch.
        sent = []

        def new_file_used():
            p = f"/probe/{len(sent)}"
            sent.append(p)
            self.assertEqual(h.http(self.port, "GET", p).status, 200)
            time.sleep(0.05)
            return read_lines(self.log)

        h.wait_for(new_file_used, timeout=10, interval=0.05, what="a line in the new file")
        paths_after = [f"/after/{i}" for i in range(5)]
        for p in paths_after:
            self.assertEqual(h.http(self.port, "GET", p).status, 200)
        total = len(paths_before) + len(sent) + len(paths_after)

        def all_lines():
            old, new = read_lines(rotated), read_lines(self.log)
            return (old, new) if len(old) + len(new) >= total else None

        old, new = h.wait_for(all_lines, what=f"{total} lines in both files")
        uris = lambda ls: [parse_line(ln)["request"].split(" ")[1].split(str(self.port), 1)[1]
                           for ln in ls]
        old_u, new_u = uris(old), uris(new)
        self.assertEqual(sorted(old_u + new_u), sorted(paths_before + sent + paths_after),
                         "every request logged exactly once")
        for p in paths_before:
            self.assertIn(p, old_u)
        for p in paths_after:
            self.assertIn(p, new_u)
        m = h.http(self.r.admin_port, "GET", "/metrics").text
        self.assertIn(f"\nringlb_access_log_lines_total {total}\n", m)


def cases_by(cases, name):
    return next(v for v in cases.values() if v[0] == name)


if __name__ == "__main__":
    h.main()
