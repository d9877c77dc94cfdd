"""configs/prometheus (alerting rules, their unit tests, the Grafana
dashboard) and the Prometheus Operator objects in configs/kubernetes agree
with promtool and with the /metrics of the built relay (issue 15 parts 5
and 7, SPEC §6 and §8.6).

promtool comes from Debian's prometheus package (build.sh test_pkgs
installs it; no daemon is started).  The relay is started once in setup()
and its live /metrics is what `promtool check metrics` lints and what every
metric name in the rules and the dashboard is checked against; the names in
COMING are accepted too while they are not on main yet.
"""
import copy
import glob
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess

from harness import TOP

PROM = os.path.join(TOP, "configs", "prometheus")
ALERTS = os.path.join(PROM, "alerts.yml")
PROM_CONFIG = os.path.join(PROM, "prometheus.yml")
DASHBOARD = os.path.join(PROM, "grafana-dashboard.json")
UNIT_TESTS = sorted(glob.glob(os.path.join(PROM, "tests", "*.yml")))
K8S = os.path.join(TOP, "configs", "kubernetes")

# Metric names announced (issue 15) but not on main yet: the rules and the
# dashboard may use them before the relay exposes them.  Drop a name once
# the relay has it (mrs_queue_held, part 3, was here until it did).
COMING = set()
# kube-state-metrics series the readiness alert reads (the kubelet's view
# of GET /readyz); not the relay's.
KUBE_STATE = {"kube_statefulset_replicas", "kube_statefulset_status_replicas_ready"}
# What the issue asks the alerts to cover: a metric (and a text the
# expression must contain) per topic.
ALERT_TOPICS = {
    "queue oldest age": ("mrs_queue_oldest_age_seconds", ""),
    "deferral rate": ("mrs_deliveries_total", 'outcome="deferred"'),
    "bounce rate": ("mrs_deliveries_total", 'outcome="bounced"'),
    "TLS handshake failures": ("mrs_tls_failures_total", "mrs_tls_handshakes_total"),
    "AUTH failure spike": ("mrs_auth_failures_total", "offset"),
    "certificate < 14 days": ("mrs_tls_certificate_expiry_timestamp_seconds", "- time() < 14 * 86400"),
    "readiness": ("up", 'up{job="mrs"}'),
}
# ... and the dashboard's panels.
DASHBOARD_TOPICS = {
    "sessions": {"mrs_sessions_open", "mrs_sessions_total"},
    "accepted": {"mrs_messages_accepted_total"},
    "refused by reason": {"mrs_messages_refused_total"},
    "queue depth": {"mrs_queue_depth"},
    "queue age": {"mrs_queue_oldest_age_seconds"},
    "deliveries by outcome": {"mrs_deliveries_total"},
    "TLS failures": {"mrs_tls_failures_total"},
    "AUTH failures": {"mrs_auth_failures_total"},
    "DNS failures": {"mrs_dns_failures_total"},
    "config reloads": {"mrs_config_reloads_total"},
    "certificate expiry": {"mrs_tls_certificate_expiry_timestamp_seconds"},
}


class Ctx:
    pass


def _yaml():
    import yaml  # Debian's python3-yaml
    return yaml


def _load(path):
    with open(path) as f:
        return _yaml().safe_load(f)


def _promtool(h, *args, input=None):
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: ./build.sh test installs Debian's prometheus package"
    return subprocess.run([exe, *args], input=input, capture_output=True, text=True, timeout=120)


def _metric_names(text):
    """Metric names in a Prometheus text exposition (families and samples)."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ", line)
        if m:
            names.add(m.group(1))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def setup(h):
    """Start the relay, give it a little traffic (a STARTTLS session with a
    failed AUTH, a failed TLS handshake on 465) and read /metrics."""
    ctx = Ctx()
    ctx.h = h
    m = h.mrs()
    s = m.smtp(starttls=True)
    try:
        s.login("alice@customer.test", "wrong")
    except smtplib.SMTPAuthenticationError:
        pass
    s.quit()
    with socket.create_connection(("127.0.0.1", m.submissions_port), timeout=10) as c:
        c.sendall(b"EHLO not-tls\r\n\r\n")
        c.settimeout(10)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
    code, ctx.metrics = m.http("GET", "/metrics")
    assert code == 200, code
    ctx.live = _metric_names(ctx.metrics)
    m.stop()
    return ctx


# --- PromQL ------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}


def promql_metrics(expr):
    """Metric names an expression selects: identifiers left after dropping
    strings, label matchers, ranges and grouping clauses, that are not
    functions, aggregations or keywords."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def test_promql_metric_extraction(ctx):
    """The extractor the name checks rest on finds names and only names."""
    assert promql_metrics('sum by (job, namespace) (rate(mrs_deliveries_total{outcome="deferred"}[30m]))'
                          ' / ignoring(outcome) group_left() foo:bar offset 5m > 0.3 and on() 1e3') \
        == {"mrs_deliveries_total", "foo:bar"}
    assert promql_metrics('absent(up{job="mrs"} == 1)') == {"up"}
    assert promql_metrics('mrs_tls_certificate_expiry_timestamp_seconds{job="$job"} - time() < 14 * 86400') \
        == {"mrs_tls_certificate_expiry_timestamp_seconds"}
    assert promql_metrics("sum(rate(x_total[$__rate_interval])) by (le)") == {"x_total"}


def _known(ctx):
    return ctx.live | COMING


# --- alerting rules ---------------------------------------------------------

def _alert_rules():
    return [r for g in _load(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_and_config(ctx):
    r = _promtool(ctx.h, "check", "rules", ALERTS)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    r = _promtool(ctx.h, "check", "config", PROM_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    conf = _load(PROM_CONFIG)
    assert "alerts.yml" in conf["rule_files"], conf["rule_files"]
    assert [j["job_name"] for j in conf["scrape_configs"]] == ["mrs"], \
        "the availability alerts select up{job=\"mrs\"}"


def test_alerts_cover_the_issue_and_are_labelled(ctx):
    rules = _alert_rules()
    exprs = [r["expr"] for r in rules]
    for topic, (metric, text) in ALERT_TOPICS.items():
        assert any(metric in promql_metrics(e) and text in " ".join(e.split()) for e in exprs), \
            f"no alert on {topic} ({metric}, {text!r})"
    seen = set()
    for r in rules:
        sev = r.get("labels", {}).get("severity")
        assert sev in ("warning", "critical"), (r["alert"], sev)
        assert (r["alert"], sev) not in seen, f"{r['alert']} {sev} twice"
        seen.add((r["alert"], sev))
        assert r["alert"].startswith("Mrs"), r["alert"]
        ann = r.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), f"{r['alert']}: summary and description"


def test_alerts_reference_known_metrics(ctx):
    """A misspelt metric makes an alert that never fires and that promtool
    accepts: every name is one the live relay exposes (or one issue 15 adds,
    or `up`, or the kube-state-metrics readiness series)."""
    allowed = _known(ctx) | {"up"} | KUBE_STATE
    for r in _alert_rules():
        names = promql_metrics(r["expr"])
        assert names, (r["alert"], r["expr"])
        assert names <= allowed, f"{r['alert']}: unknown metrics {sorted(names - allowed)}"


def test_promtool_unit_tests_pass(ctx):
    assert UNIT_TESTS, "no unit tests in configs/prometheus/tests"
    r = _promtool(ctx.h, "test", "rules", *UNIT_TESTS)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


def _unit_cases():
    """[(test file, its document, test group, alert_rule_test entry)]"""
    out = []
    for path in UNIT_TESTS:
        doc = _load(path)
        for group in doc["tests"]:
            for case in group.get("alert_rule_test", []):
                out.append((path, doc, group, case))
    return out


def test_every_alert_has_firing_and_quiet_cases(ctx):
    cases = _unit_cases()
    for r in _alert_rules():
        name, sev = r["alert"], r["labels"]["severity"]
        fires = [c for _, _, _, c in cases if c["alertname"] == name and
                 any(a.get("exp_labels", {}).get("severity") == sev for a in c.get("exp_alerts") or [])]
        quiet = [c for _, _, _, c in cases if c["alertname"] == name and not c.get("exp_alerts")]
        assert fires, f"no unit test expects {name} ({sev}) to fire"
        assert quiet, f"no unit test expects {name} to stay quiet"


def test_unit_tests_fail_when_an_alert_never_fires(ctx):
    """Each alert's unit tests really test it: with that alert's expression
    replaced by one that never fires, the test groups that mention it fail."""
    h = ctx.h
    rules = _load(ALERTS)
    cases = _unit_cases()
    for name in sorted({r["alert"] for r in _alert_rules()}):
        broken = copy.deepcopy(rules)
        for g in broken["groups"]:
            for r in g["rules"]:
                if r.get("alert") == name:
                    r["expr"] = "vector(1) == 0"
        d = os.path.join(h.tmp, "promtool-" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "alerts.yml"), "w") as f:
            _yaml().safe_dump(broken, f)
        groups = []
        for _, doc, group, case in cases:
            if case["alertname"] == name and group not in groups:
                groups.append(group)
        doc = dict(cases[0][1])
        doc["rule_files"] = ["alerts.yml"]
        doc["tests"] = groups
        with open(os.path.join(d, "t.yml"), "w") as f:
            _yaml().safe_dump(doc, f)
        r = _promtool(h, "test", "rules", os.path.join(d, "t.yml"))
        assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr, \
            f"{name} never fires and its unit tests still pass:\n{r.stdout[-2000:]}"


def test_prometheusrule_is_alerts_yml(ctx):
    docs = [d for d in _yaml().safe_load_all(open(os.path.join(K8S, "prometheusrule.yaml"))) if d]
    (pr,) = [d for d in docs if d.get("kind") == "PrometheusRule"]
    assert pr["apiVersion"] == "monitoring.coreos.com/v1"
    assert pr["spec"]["groups"] == _load(ALERTS)["groups"], \
        "configs/kubernetes/prometheusrule.yaml spec.groups differs from configs/prometheus/alerts.yml groups"


# --- the live relay ---------------------------------------------------------

def test_promtool_check_metrics_live(ctx):
    """promtool lints the live exposition (rc 3 and a line per problem on
    any lint finding) and the SPEC's metrics are in it."""
    assert len([n for n in ctx.live if n.startswith("mrs_")]) >= 20, sorted(ctx.live)
    for name in ("mrs_sessions_open", "mrs_sessions_total", "mrs_auth_failures_total",
                 "mrs_messages_accepted_total", "mrs_messages_refused_total", "mrs_queue_depth",
                 "mrs_deliveries_total", "mrs_dns_queries_total", "mrs_dns_failures_total", "mrs_build_info",
                 "mrs_config_reloads_total", "mrs_tls_certificate_expiry_timestamp_seconds"):
        assert name in ctx.live, f"/metrics lacks {name}"
    r = _promtool(ctx.h, "check", "metrics", input=ctx.metrics)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), \
        f"promtool check metrics (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    # The traffic in setup() moved the counters the alerts read.
    assert re.search(r"^mrs_auth_failures_total [1-9]", ctx.metrics, re.M), "no failed AUTH counted"
    assert re.search(r'^mrs_tls_failures_total\{listener="submissions"\} [1-9]', ctx.metrics, re.M), \
        "no failed handshake counted"


def test_coming_metric_names_are_well_formed(ctx):
    """COMING only excuses names issue 15 announces; it must not hide a
    name that is exposed under another spelling (a typo in the list)."""
    for name in COMING:
        assert name.startswith("mrs_") and re.fullmatch(r"[a-z_]+", name), name
    exposed = sorted(COMING & ctx.live)
    if exposed:
        print(f"note: now exposed, can leave COMING: {exposed}")


# --- Grafana dashboard ------------------------------------------------------

def _panels(dash):
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "job": "mrs", "instance": ".*"}


def _substitute(expr):
    def one(m):
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARS, f"unknown dashboard variable ${name} in {expr!r}"
        return GRAFANA_VARS[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def test_grafana_dashboard(ctx):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash.get("title") and dash.get("uid") and isinstance(dash.get("schemaVersion"), int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", "no Prometheus datasource variable"
    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == want_ds, (v["name"], v["datasource"])
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, q
            assert promql_metrics(_substitute(m.group(1))) <= ctx.live, q
    panels = _panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    exprs = []
    used = set()
    for p in panels:
        if p["type"] == "row":
            assert not p.get("targets"), f"row {p['title']} has queries"
            continue
        assert p.get("title") and p.get("gridPos"), p.get("id")
        assert p.get("datasource") == want_ds, f"panel {p['title']}: datasource {p.get('datasource')}"
        assert p.get("targets"), f"panel {p['title']} has no query"
        for t in p["targets"]:
            assert t.get("datasource", want_ds) == want_ds, (p["title"], t)
            expr = t["expr"]
            names = promql_metrics(expr)
            assert names, (p["title"], expr)
            unknown = names - _known(ctx) - {"up"}
            assert not unknown, f"panel {p['title']}: metrics not exposed and not announced: {sorted(unknown)}"
            assert 'job="$job"' in expr, f"panel {p['title']}: not limited to the selected job: {expr}"
            used |= names
            exprs.append((p["title"], t["refId"], _substitute(expr)))
    for topic, names in DASHBOARD_TOPICS.items():
        assert names <= used, f"no panel for {topic} ({sorted(names - used)})"
    # Every expression parses: promtool checks them as recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)]}]}
    path = os.path.join(ctx.h.tmp, "dashboard-rules.yml")
    with open(path, "w") as f:
        _yaml().safe_dump(rules, f)
    r = _promtool(ctx.h, "check", "rules", path)
    assert r.returncode == 0, r.stdout + r.stderr
    # Panels do not overlap on the 24-column grid.
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (p["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


# --- Kubernetes: the scrape the alerts rely on ---------------------------------

def test_servicemonitor_scrapes_the_health_port_as_job_mrs(ctx):
    """The ServiceMonitor selects a Service whose port of that name reaches
    the container's health port, and its jobLabel gives job="mrs", the job
    the availability alerts select."""
    docs = []
    for p in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(p) as f:
            docs += [d for d in _yaml().safe_load_all(f) if d]
    (sm,) = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    (sts,) = [d for d in docs if d.get("kind") == "StatefulSet"]
    (c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "mrs"]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep.get("path", "/metrics") == "/metrics"
    sel = sm["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d.get("kind") == "Service" and
                all(d["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
    targets = [(s, p) for s in services for p in s["spec"]["ports"] if p.get("name") == ep["port"]]
    assert targets, f"no selected Service has a port named {ep['port']}"
    for s, p in targets:
        t = p.get("targetPort", p["port"])
        assert (cports.get(t) if isinstance(t, str) else t) == cports["health"], (s["metadata"]["name"], p)
        job = s["metadata"]["labels"].get(sm["spec"].get("jobLabel", ""), s["metadata"]["name"])
        assert job == "mrs", f"scraped as job={job!r}; the alerts select job=\"mrs\""
