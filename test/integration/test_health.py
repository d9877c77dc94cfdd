"""The health listener of SPEC §6 and `mrs healthcheck` of SPEC §2.

/healthz, /readyz (200 when up, 503 while the spool is unwritable and
during a drain), /metrics in Prometheus text format 0.0.4, 404/405, strict
and bounded request parsing (400, 413, 414, 431) after which the server
keeps serving, slow clients that never block a probe, and the exit codes
of `mrs healthcheck`.  One relay serves most tests; those that stop or
break it start their own.
"""
import os
import re
import signal
import smtplib
import socket
import time

from harness import SPF_OK, free_port, token_for

PROM_CTYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')

REFUSAL_REASONS = ["auth", "spf", "spf_multiple", "token", "nxdomain", "dns_temp", "header_from",
                   "size", "smuggling", "recipients", "rate_limit", "syntax", "spool"]
LISTENERS = ["submission", "submissions"]
# metric name → (type, label name or None, label values)
REQUIRED = {
    "mrs_sessions_open": ("gauge", "listener", LISTENERS),
    "mrs_sessions_total": ("counter", "listener", LISTENERS),
    "mrs_connections_rejected_total": ("counter", None, None),
    "mrs_connections_per_client_rejected_total": ("counter", None, None),
    "mrs_accept_errors_total": ("counter", None, None),
    "mrs_tls_handshakes_total": ("counter", "listener", LISTENERS),
    "mrs_tls_failures_total": ("counter", "listener", LISTENERS),
    "mrs_auth_successes_total": ("counter", None, None),
    "mrs_auth_failures_total": ("counter", None, None),
    "mrs_messages_accepted_total": ("counter", None, None),
    "mrs_message_bytes_accepted_total": ("counter", None, None),
    "mrs_messages_refused_total": ("counter", "reason", REFUSAL_REASONS),
    "mrs_queue_depth": ("gauge", None, None),
    "mrs_queue_oldest_age_seconds": ("gauge", None, None),
    "mrs_deliveries_total": ("counter", "outcome", ["delivered", "deferred", "bounced"]),
    "mrs_bounces_total": ("counter", None, None),
    "mrs_dsn_reports_total": ("counter", "action", ["failed", "delayed", "relayed"]),
    "mrs_dns_queries_total": ("counter", None, None),
    "mrs_dns_cache_hits_total": ("counter", None, None),
    "mrs_dns_failures_total": ("counter", None, None),
    "mrs_build_info": ("gauge", None, None),
    "mrs_uptime_seconds": ("gauge", None, None),
}


class Ctx:
    def __init__(self, h):
        self.h = h
        self.m = h.mrs()


def setup(h):
    return Ctx(h)


# --- helpers ---------------------------------------------------------------

def raw_http(port, data, timeout=10):
    """Send raw bytes to the health port; read to EOF; (status, headers, body).
    status is None when the server closed without answering."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    resp = b"".join(chunks)
    if not resp:
        return None, {}, b""
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert parts[0] in ("HTTP/1.1", "HTTP/1.0"), lines[0]
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers, body


def get(m, path, method="GET", extra=b""):
    req = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{m.health_port}\r\n".encode() + extra
           + b"Connection: close\r\n\r\n")
    return raw_http(m.health_port, req)


def assert_serving(m):
    status, _, body = get(m, "/healthz")
    assert (status, body) == (200, b"ok\n"), (status, body)


def parse_metrics(text):
    """Parse the text format strictly: {name: {"type", "help", "samples": {labels: value}}}."""
    fams, order = {}, []
    assert text.endswith("\n"), "exposition must end with a newline"
    for ln in text.split("\n")[:-1]:
        if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            kind, name, rest = ln[2:6], *ln[7:].split(" ", 1)
            assert NAME_RE.match(name), ln
            fam = fams.setdefault(name, {"samples": {}})
            assert not fam["samples"], f"{kind} after samples: {ln}"
            fam["help" if kind == "HELP" else "type"] = rest
            if name not in order:
                order.append(name)
            continue
        assert not ln.startswith("#") and ln.strip(), f"unexpected line {ln!r}"
        mt = SAMPLE_RE.match(ln)
        assert mt, f"malformed sample {ln!r}"
        name, labels = mt.group(1), ()
        if mt.group(3):
            found = LABEL_RE.findall(mt.group(3))
            assert ",".join(f'{k}="{v}"' for k, v, _ in found) == mt.group(3), ln
            labels = tuple((k, v) for k, v, _ in found)
        assert name in fams and "type" in fams[name] and "help" in fams[name], \
            f"sample before its HELP and TYPE: {ln}"
        assert name == order[-1], f"samples of {name} not grouped with its family"
        assert labels not in fams[name]["samples"], f"duplicate sample {ln}"
        fams[name]["samples"][labels] = float(mt.group(4))
    return fams


# --- endpoints ---------------------------------------------------------------

def test_healthz_is_200_ok(ctx):
    status, headers, body = get(ctx.m, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["content-type"].startswith("text/plain")
    assert headers["content-length"] == "3" and headers["connection"] == "close"
    assert ctx.m.http("GET", "/healthz") == (200, "ok\n")


def test_readyz_is_200_when_up(ctx):
    assert ctx.m.http("GET", "/readyz") == (200, "ready\n")


def test_head_answers_without_body(ctx):
    for path in ("/healthz", "/readyz", "/metrics"):
        status, headers, body = get(ctx.m, path, "HEAD")
        assert status == 200 and body == b"", (path, status, body)
        assert int(headers["content-length"]) > 0


def test_http10_without_host_is_served(ctx):
    status, _, body = raw_http(ctx.m.health_port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (status, body) == (200, b"ok\n")


def test_metrics_is_prometheus_text_004(ctx):
    m = ctx.m
    status, headers, body = get(m, "/metrics")
    assert status == 200
    assert headers["content-type"] == PROM_CTYPE
    fams = parse_metrics(body.decode("utf-8"))
    for name, (typ, label, values) in REQUIRED.items():
        assert name in fams, f"missing {name}"
        assert fams[name]["type"] == typ, (name, fams[name]["type"])
        assert fams[name]["help"], name
        if label:
            got = sorted(dict(k).get(label) for k in fams[name]["samples"])
            assert got == sorted(values), (name, got)
    for name, fam in fams.items():
        assert name.startswith("mrs_"), name
        assert (fam["type"] == "counter") == name.endswith("_total"), name
        assert all(v >= 0 for v in fam["samples"].values()), name
    version = ctx.h.run([ctx.h.mrs_bin, "version"]).stdout.split()[1]
    (labels, value), = fams["mrs_build_info"]["samples"].items()
    assert value == 1 and dict(labels)["version"] == version and dict(labels)["revision"]
    assert fams["mrs_uptime_seconds"]["samples"][()] >= 0


def test_metrics_counts_smtp_sessions(ctx):
    m = ctx.m

    def sessions():
        fams = parse_metrics(m.http("GET", "/metrics")[1])
        return fams["mrs_sessions_total"]["samples"][(("listener", "submission"),)]

    before = sessions()
    r = m.raw()
    code, _ = r.reply()
    r.cmd("QUIT")
    r.close()
    assert code == 220
    deadline = time.time() + 5
    while sessions() < before + 1:
        assert time.time() < deadline, "mrs_sessions_total did not count the session"
        time.sleep(0.05)


def test_unknown_path_is_404(ctx):
    for path in ("/", "/healthz/", "/HEALTHZ", "/metrics.txt", "/%68ealthz", "/readyz/x"):
        status, _, _ = get(ctx.m, path)
        assert status == 404, (path, status)
    assert ctx.m.http("GET", "/nope")[0] == 404


def test_other_methods_are_405_with_allow(ctx):
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"):
        status, headers, _ = get(ctx.m, "/healthz", method)
        assert status == 405, (method, status)
        assert headers.get("allow") == "GET, HEAD", headers
    assert ctx.m.http("DELETE", "/metrics")[0] == 405


# --- bad requests ------------------------------------------------------------

def test_malformed_requests_are_400_and_server_keeps_serving(ctx):
    m = ctx.m
    bad = [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz\r\n\r\n",                                # HTTP/0.9
        b"GET  /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz HTTP/1.1\nHost: a\n\n",                  # bare LF
        b"GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n",         # bare CR
        b"GET /heal\0thz HTTP/1.1\r\nHost: a\r\n\r\n",          # NUL
        b"GET /healthz HTTP/1.1\r\n\r\n",                       # no Host
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",          # a TLS ClientHello
    ]
    for req in bad:
        status, _, _ = raw_http(m.health_port, req)
        assert status == 400, (req, status)
        assert_serving(m)
    status, _, _ = raw_http(m.health_port, b"GET /healthz HTTP/2.0\r\n\r\n")
    assert status == 505
    assert_serving(m)


def test_request_bodies_are_refused(ctx):
    m = ctx.m
    status, _, _ = get(m, "/healthz", "POST", b"Content-Length: 5\r\n")
    assert status == 413
    status, _, _ = get(m, "/healthz", "POST", b"Transfer-Encoding: chunked\r\n")
    assert status == 400
    assert_serving(m)


def test_oversized_requests_are_431_or_414(ctx):
    m = ctx.m
    huge = b"X-Big: " + b"a" * 20000 + b"\r\n"
    status, _, _ = get(m, "/healthz", extra=huge)
    assert status == 431, status
    assert_serving(m)
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(100))
    status, _, _ = get(m, "/healthz", extra=many)
    assert status == 431, status
    assert_serving(m)
    status, _, _ = get(m, "/healthz?" + "a" * 5000)
    assert status == 414, status
    assert_serving(m)


def test_pipelined_requests_get_one_answer(ctx):
    m = ctx.m
    one = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{m.health_port}\r\n\r\n".encode()
    status, headers, body = raw_http(m.health_port, one + one.replace(b"healthz", b"metrics"))
    assert (status, body) == (200, b"ok\n") and headers["connection"] == "close"


def test_hostile_bytes_never_reach_the_log_raw(ctx):
    m = ctx.m
    raw_http(m.health_port, b"GET /\x1b[31mevil HTTP/1.1\r\nHost: a\r\n\r\n")
    raw_http(m.health_port, b"PO\x1b]0;x\x07ST / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert_serving(m)
    log = m.log()
    assert "\x1b" not in log and "\x07" not in log


def test_slow_clients_never_block_probes(ctx):
    m = ctx.m
    idle = [socket.create_connection(("127.0.0.1", m.health_port)) for _ in range(20)]
    slow = socket.create_connection(("127.0.0.1", m.health_port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and never the rest
    try:
        t0 = time.time()
        for _ in range(5):
            assert_serving(m)
        assert time.time() - t0 < 2, "probes waited behind slow clients"
        # the slow client is answered 408 and closed after the request timeout
        slow.settimeout(15)
        data = b""
        while True:
            c = slow.recv(4096)
            if not c:
                break
            data += c
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert time.time() - t0 < 10
    finally:
        for s in idle + [slow]:
            s.close()
    assert_serving(m)


def test_connection_flood_is_capped_and_recovers(ctx):
    m = ctx.m
    socks = []
    try:
        for _ in range(100):  # more than the cap of 64
            socks.append(socket.create_connection(("127.0.0.1", m.health_port), timeout=5))
        # connections over the cap are closed at once, not left hanging
        extra = socket.create_connection(("127.0.0.1", m.health_port), timeout=5)
        extra.settimeout(3)
        try:
            assert extra.recv(1) == b""
        except ConnectionResetError:
            pass
        extra.close()
    finally:
        for s in socks:
            s.close()
    deadline = time.time() + 5
    while True:
        try:
            assert_serving(m)
            break
        except (AssertionError, OSError):
            assert time.time() < deadline, "health listener did not recover after a flood"
            time.sleep(0.1)


# --- readiness -----------------------------------------------------------------

def wait_status(m, path, want, timeout=5):
    deadline = time.time() + timeout
    while True:
        status, body = m.http("GET", path)
        if status == want:
            return body
        assert time.time() < deadline, f"{path} stayed {status}: {body!r}"
        time.sleep(0.05)


def test_readyz_503_while_spool_is_unwritable(ctx):
    m = ctx.m
    moved = m.spool + ".moved"
    os.rename(m.spool, moved)
    try:
        body = wait_status(m, "/readyz", 503)
        assert f"spool directory {m.spool} is not writable\n" in body, body
        assert m.http("GET", "/healthz") == (200, "ok\n")
    finally:
        os.rename(moved, m.spool)
    assert wait_status(m, "/readyz", 200) == "ready\n"

    tmp = os.path.join(m.spool, "tmp")
    saved = m.spool + ".tmp-saved"
    os.rename(tmp, saved)
    with open(tmp, "w") as f:
        f.write("not a directory\n")
    try:
        body = wait_status(m, "/readyz", 503)
        assert "is not writable" in body
    finally:
        os.unlink(tmp)
        os.rename(saved, tmp)
    assert wait_status(m, "/readyz", 200) == "ready\n"
    assert not [f for f in os.listdir(tmp) if f.startswith(".readyz")], "probe files left behind"


def test_readyz_503_during_drain_while_healthz_stays_200(ctx):
    # A session waiting for a command is closed at once by a drain (421
    # 4.3.2), so the relay is held open by one in the middle of DATA.
    h = ctx.h
    user, pw = "alice@customer.test", "alice-secret"
    dns = h.dns([f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(user)}"'])
    env = {"MRS_SHUTDOWN_GRACE": "20s", "MRS_SMARTHOST": f"127.0.0.1:{free_port()}",
           "MRS_SMARTHOST_TLS": "none", "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h"}
    m = h.mrs(dns=dns, users={user: pw}, env=env)
    s = m.smtp(login=(user, pw))
    assert s.mail(user)[0] == 250
    assert s.rcpt("rcpt@dest.test")[0] == 250
    assert s.docmd("DATA")[0] == 354
    s.send(b"From: <alice@customer.test>\r\nSubject: drain\r\n\r\nfirst half\r\n")
    m.proc.send_signal(signal.SIGTERM)
    try:
        body = wait_status(m, "/readyz", 503, timeout=10)
        assert body.startswith("draining\n"), body
        assert m.http("GET", "/healthz") == (200, "ok\n")
        assert m.proc.alive()
    finally:
        s.send(b"second half\r\n.\r\n")
        code, text = s.getreply()
        assert code == 250 or 400 <= code < 500, (code, text)
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    assert m.stop(timeout=30) == 0


# --- `mrs healthcheck` ---------------------------------------------------------

def test_healthcheck_exit_0_against_a_live_server(ctx):
    h, m = ctx.h, ctx.m
    r = h.run([h.mrs_bin, "healthcheck", f"127.0.0.1:{m.health_port}"])
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r
    r = h.run([h.mrs_bin, "healthcheck", f":{m.health_port}"])
    assert r.returncode == 0, r
    r = h.run([h.mrs_bin, "healthcheck"], env={"MRS_HEALTH_LISTEN": f"127.0.0.1:{m.health_port}"})
    assert r.returncode == 0 and r.stderr == "", r
    r = h.run([h.mrs_bin, "healthcheck"], env={"MRS_HEALTH_LISTEN": f":{m.health_port}"})
    assert r.returncode == 0 and r.stderr == "", r


def test_healthcheck_exit_1_against_a_closed_port(ctx):
    h = ctx.h
    port = free_port()
    t0 = time.time()
    r = h.run([h.mrs_bin, "healthcheck", f"127.0.0.1:{port}"])
    assert r.returncode == 1 and r.stdout == "", r
    assert len(r.stderr.strip().splitlines()) == 1 and str(port) in r.stderr, r.stderr
    r = h.run([h.mrs_bin, "healthcheck"], env={"MRS_HEALTH_LISTEN": f"127.0.0.1:{port}"})
    assert r.returncode == 1 and str(port) in r.stderr, r
    assert time.time() - t0 < 5


def test_healthcheck_exit_1_on_a_silent_or_wrong_server(ctx):
    h = ctx.h
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    try:
        t0 = time.time()  # accepts (backlog) but never answers: the 2 s timeout
        r = h.run([h.mrs_bin, "healthcheck", f"127.0.0.1:{port}"])
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r
        assert time.time() - t0 < 4, "healthcheck did not give up after about 2 s"
    finally:
        srv.close()
    # a server that answers something else than 200
    r = h.run([h.mrs_bin, "healthcheck", f"127.0.0.1:{ctx.m.submission_port}"])
    assert r.returncode == 1, r


def test_healthcheck_refuses_bad_arguments(ctx):
    h = ctx.h
    for args in (["nonsense"], ["127.0.0.1"], ["off"], ["a", "b"]):
        r = h.run([h.mrs_bin, "healthcheck", *args])
        assert r.returncode == 1 and r.stderr.strip(), (args, r)
    r = h.run([h.mrs_bin, "healthcheck"], env={"MRS_HEALTH_LISTEN": "off"})
    assert r.returncode == 1 and "off" in r.stderr, r


# --- start-up ------------------------------------------------------------------

def test_health_port_in_use_fails_start_naming_it(ctx):
    h = ctx.h
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        m = h.mrs(start=False)
        m.env["MRS_HEALTH_LISTEN"] = f"127.0.0.1:{port}"
        m.start(wait=False)
        m.proc.p.wait(15)
        assert m.proc.p.returncode == 1, m.log()
        assert f"127.0.0.1:{port}" in m.log(), m.log()
    finally:
        busy.close()
