"""MTA-STS (RFC 8461, SPEC §8.5): the built relay discovers policies through
`_mta-sts` TXT records served by unbound, fetches them from a real HTTPS
server (Python http.server with ssl) whose certificate a test CA signs
(MRS_OUTBOUND_CA_FILE), and delivers to aiosmtpd mail exchangers on
127.0.0.x: one with a CA-signed certificate for its name, one without
STARTTLS, one with a CA-signed certificate for another name, one with a
self-signed certificate.  Every policy server answers on one port
(MRS_MTA_STS_PORT), every MX on another (MRS_DELIVERY_PORT).

The _mta-sts TXT records have TTL 0 so that the relay sees a changed id at
once.  Each test starts its own relay on a fresh spool (so a fresh policy
cache) unless it tests the cache itself."""
import http.server
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

from harness import Dns, SPF_OK, common_port, free_port, token_for

USER = ("alice@customer.test", "alice-secret")
SENDER = "alice@customer.test"

POLICY_HOST = "127.0.0.40"      # mta-sts.<domain> of every test domain …
UNTRUSTED_HOST = "127.0.0.39"   # … except untrusted.test: a self-signed policy server
GOOD_MX = "127.0.0.41"          # CA-signed certificate for its names
PLAIN_MX = "127.0.0.42"         # no STARTTLS
WRONG_MX = "127.0.0.43"         # CA-signed certificate for other.test
SELF_MX = "127.0.0.44"          # self-signed certificate for its name
SENDER_MX = "127.0.0.45"        # customer.test's own MX (bounces)
CLOSE_HOST = "127.0.0.38"       # mta-sts of trunc.test and cleanclose.test: bodies without Content-Length

GOOD_NAMES = ["mx.enforce.test", "mx.skip.test", "mx.testing.test"]

ENFORCE = "version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 86400\n"


def enforce(mx):
    return ENFORCE.format(mx=mx)


# domain -> (mx host, mx address, policy text or None); a TXT id 1 for each policy
DOMAINS = {
    "enforce.test": ("mx.enforce.test", GOOD_MX, enforce("mx.enforce.test")),
    "plain.test": ("mx.plain.test", PLAIN_MX, enforce("*.plain.test")),
    "wrongname.test": ("mx.wrongname.test", WRONG_MX, enforce("mx.wrongname.test")),
    "selfsigned.test": ("mx.selfsigned.test", SELF_MX, enforce("mx.selfsigned.test")),
    "onlyrogue.test": ("rogue.onlyrogue.test", PLAIN_MX, enforce("mx.onlyrogue.test")),
    "testing.test": ("mx.testing.test", PLAIN_MX,
                     "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n"),
    "cached.test": ("mx.cached.test", PLAIN_MX, enforce("mx.cached.test")),
    "stale.test": ("mx.stale.test", PLAIN_MX, enforce("mx.stale.test")),
    "idchange.test": ("mx.idchange.test", PLAIN_MX, enforce("mx.idchange.test")),
    "removed.test": ("mx.removed.test", PLAIN_MX, enforce("mx.removed.test")),
    "crlf.test": ("mx.crlf.test", PLAIN_MX, enforce("mx.crlf.test").replace("\n", "\r\n")),
    "unknownkeys.test": ("mx.unknownkeys.test", PLAIN_MX,
                         "version: STSv1\nfuture: 1\nmode: enforce\nmx: mx.unknownkeys.test\n"
                         "x-vendor-note: hello: world\nmax_age: 86400"),
    "huge.test": ("mx.huge.test", PLAIN_MX, enforce("mx.huge.test") + "comment: " + "x" * 70000 + "\n"),
    "slow.test": ("mx.slow.test", PLAIN_MX, enforce("mx.slow.test")),
    "redirect.test": ("mx.redirect.test", PLAIN_MX, enforce("mx.redirect.test")),
    "ctype.test": ("mx.ctype.test", PLAIN_MX, enforce("mx.ctype.test")),
    "nomx.test": ("mx.nomx.test", PLAIN_MX, "version: STSv1\nmode: enforce\nmax_age: 86400\n"),
    "untrusted.test": ("mx.untrusted.test", PLAIN_MX, enforce("mx.untrusted.test")),
    "servfail.test": ("mx.servfail.test", PLAIN_MX, None),
    "nopolicy.test": ("mx.nopolicy.test", PLAIN_MX, None),
    "off.test": ("mx.off.test", PLAIN_MX, enforce("mx.off.test")),
    # held.test's policy server stalls; victim38.test has no policy and its
    # name hashes (FNV-1a mod 32) like held.test's
    "held.test": ("mx.held.test", PLAIN_MX, enforce("mx.held.test")),
    "victim38.test": ("mx.victim38.test", PLAIN_MX, None),
    # served by CloseServer: a body without Content-Length, ended by a TCP
    # close without TLS close_notify (a truncation) or by close_notify
    "trunc.test": ("mx.trunc.test", PLAIN_MX, enforce("mx.trunc.test")),
    "cleanclose.test": ("mx.cleanclose.test", PLAIN_MX, enforce("mx.cleanclose.test")),
}
CLOSE_DOMAINS = ("trunc.test", "cleanclose.test")


def zone(ids=None):
    ids = ids or {}
    recs = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER[0])}"',
            "customer.test. MX 10 mx.customer.test.", f"mx.customer.test. A {SENDER_MX}"]
    for d, (mx, addr, policy) in DOMAINS.items():
        recs += [f"{d}. MX 10 {mx}.", f"{mx}. A {addr}"]
        if policy is not None:
            host = UNTRUSTED_HOST if d == "untrusted.test" else CLOSE_HOST if d in CLOSE_DOMAINS else POLICY_HOST
            recs += [f"mta-sts.{d}. A {host}"]
        if policy is not None and ids.get(d, "1") is not None:
            recs += [f'_mta-sts.{d}. 0 TXT "v=STSv1; id={ids.get(d, "1")};"']
    # skip.test: the first MX is not in the policy (and would take plaintext)
    recs += ["skip.test. MX 10 rogue.skip.test.", "skip.test. MX 20 mx.skip.test.",
             f"rogue.skip.test. A {PLAIN_MX}", f"mx.skip.test. A {GOOD_MX}",
             '_mta-sts.skip.test. 0 TXT "v=STSv1; id=1;"', f"mta-sts.skip.test. A {POLICY_HOST}"]
    return recs


class StubDns(Dns):
    """harness.Dns, plus a delegation of _mta-sts.servfail.test. to a
    server unbound may not ask (do-not-query-localhost): SERVFAIL."""

    def _conf(self):
        conf = super()._conf().replace(
            "remote-control:",
            '  local-zone: "_mta-sts.servfail.test." transparent\nremote-control:')
        return conf + 'stub-zone:\n  name: "_mta-sts.servfail.test."\n  stub-addr: 127.0.0.1@9\n'


# ---- certificates -------------------------------------------------------------------

def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d):
    key, cert = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", cert, "-days", "2", "-subj", "/CN=mrs test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(d, ca, names, tag):
    key, csr, cert, ext = (os.path.join(d, f"{tag}.{x}") for x in ("key", "csr", "pem", "ext"))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", f"/CN={names[0]}")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
            "-out", cert, "-extfile", ext)
    return cert, key


# ---- the policy servers -----------------------------------------------------------------

class PolicyServer:
    """HTTPS on addr:port; answers by Host header from self.answers:
    host -> dict(body=str, status=200, ctype="text/plain", slow=False).
    self.requests counts the GETs per host."""

    def __init__(self, addr, port, cert):
        self.answers, self.requests, self.release = {}, {}, threading.Event()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                srv.requests[host] = srv.requests.get(host, 0) + 1
                a = srv.answers.get(host)
                if a is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = a.get("body", "").encode()
                self.send_response(a.get("status", 200))
                if a.get("status", 200) in (301, 302):
                    self.send_header("Location", f"https://elsewhere.test/{host}")
                self.send_header("Content-Type", a.get("ctype", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if a.get("gate"):
                    a["gate"].wait(60)  # held until the test opens it
                if a.get("slow"):
                    self.wfile.flush()
                    srv.release.wait(60)  # never answers in time: the relay gives up first
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer((addr, port), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert[0], cert[1])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class CloseServer:
    """HTTPS on addr:port that answers with no Content-Length, so the body
    ends where the connection does: for trunc.test with a bare TCP close
    (what someone on the path can cause at any record boundary), for
    cleanclose.test with TLS close_notify first."""

    def __init__(self, addr, port, cert):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert[0], cert[1])
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(raw,), daemon=True).start()

    def one(self, raw):
        raw.settimeout(10)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 8192:
                chunk = s.recv(4096)
                if not chunk:
                    return
                req += chunk
            host = ""
            for line in req.decode("latin-1").split("\r\n"):
                if line.lower().startswith("host:"):
                    host = line.split(":", 1)[1].strip()
            d = host[len("mta-sts."):]
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            s.sendall(enforce(f"mx.{d}").encode())
            if d == "cleanclose.test":
                s.unwrap()  # close_notify, then the TCP close
            raw.close()
        except (OSError, ValueError):
            pass
        finally:
            raw.close()

    def stop(self):
        self.sock.close()


class Ctx:
    pass


def setup(h):
    ctx = Ctx()
    ctx.h = h
    ctx.dir = tempfile.mkdtemp(prefix="mta-sts-", dir=h.tmp)
    ctx.ca = make_ca(ctx.dir)
    ctx.dns = StubDns(h, zone())
    ctx.mx_port = common_port([GOOD_MX, PLAIN_MX, WRONG_MX, SELF_MX, SENDER_MX])
    ctx.https_port = common_port([POLICY_HOST, UNTRUSTED_HOST, CLOSE_HOST])
    policy_names = [f"mta-sts.{d}" for d in list(DOMAINS) + ["skip.test"]]
    policy_cert = issue(ctx.dir, ctx.ca, policy_names, "policy")
    ctx.policy = PolicyServer(POLICY_HOST, ctx.https_port, policy_cert)
    ctx.close_server = CloseServer(CLOSE_HOST, ctx.https_port, policy_cert)
    ctx.untrusted = PolicyServer(UNTRUSTED_HOST, ctx.https_port, h.self_signed("mta-sts.untrusted.test"))
    for d, (_, _, policy) in DOMAINS.items():
        if policy is not None:
            (ctx.untrusted if d == "untrusted.test" else ctx.policy).answers[f"mta-sts.{d}"] = {"body": policy}
    ctx.policy.answers["mta-sts.skip.test"] = {"body": enforce("mx.skip.test")}
    ctx.policy.answers["mta-sts.slow.test"]["slow"] = True
    ctx.policy.answers["mta-sts.redirect.test"]["status"] = 301
    ctx.policy.answers["mta-sts.ctype.test"]["ctype"] = "text/html"
    ctx.sinks = {
        "good": h.sink(addr=GOOD_MX, port=ctx.mx_port, tls_cert=issue(ctx.dir, ctx.ca, GOOD_NAMES, "good")),
        "plain": h.sink(addr=PLAIN_MX, port=ctx.mx_port),
        "wrong": h.sink(addr=WRONG_MX, port=ctx.mx_port, tls_cert=issue(ctx.dir, ctx.ca, ["other.test"], "wrong")),
        "self": h.sink(addr=SELF_MX, port=ctx.mx_port, tls_cert=h.self_signed("mx.selfsigned.test")),
        "sender": h.sink(addr=SENDER_MX, port=ctx.mx_port),
    }
    ctx.relay_cert = h.self_signed("mrs.test")
    return ctx


def teardown(ctx):
    ctx.close_server.stop()
    ctx.policy.stop()
    ctx.untrusted.stop()


# ---- helpers ----------------------------------------------------------------------------

def relay(ctx, spool=None, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx.mx_port), "MRS_MTA_STS_PORT": str(ctx.https_port),
            "MRS_OUTBOUND_CA_FILE": ctx.ca[0], "MRS_RETRY_MIN": "1s", "MRS_RETRY_MAX": "2s",
            "MRS_DELIVERY_THREADS": "4", "MRS_DELIVERY_CONNECT_TIMEOUT": "3s",
            "MRS_DELIVERY_COMMAND_TIMEOUT": "5s", "MRS_TLS_CERT": ctx.relay_cert[0],
            "MRS_TLS_KEY": ctx.relay_cert[1]}
    base.update(env)
    return ctx.h.mrs(dns=ctx.dns, env=base, spool=spool)


def submit(m, rcpt):
    """One message to rcpt; returns (token, queue id)."""
    tok = "t-" + uuid.uuid4().hex[:16]
    s = m.smtp(login=USER)
    try:
        s.mail(SENDER)
        code, _ = s.rcpt(rcpt)
        assert code == 250
        code, text = s.data((f"From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: {tok}\r\n\r\nbody {tok}\r\n").encode())
        assert code == 250, (code, text)
    finally:
        s.quit()
    return tok, text.decode().rsplit(" ", 1)[1]


def wait_msg(sink, tok, timeout=20.0):
    deadline = time.time() + timeout
    with sink.cond:
        while True:
            got = [x for x in sink.messages if tok.encode() in x["data"]]
            if got:
                return got[0]
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"no message {tok} at {sink.addr}")
            sink.cond.wait(left)


def count(sink, tok):
    with sink.cond:
        return sum(tok.encode() in x["data"] for x in sink.messages)


def show(ctx, m, qid):
    r = subprocess.run([ctx.h.mrs_bin, "queue", "show", qid], env=m.env, capture_output=True, text=True, timeout=30)
    return r.stdout


def wait_show(ctx, m, qid, text, timeout=20.0):
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        out = show(ctx, m, qid)
        if text in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"`mrs queue show {qid}` never showed {text!r}:\n{out}\n" + m.log()[-3000:])


def wait_log(m, text, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in m.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"log never showed {text!r}:\n" + m.log()[-3000:])


def wait_metric(m, policy, result, want, timeout=20.0):
    """The sink has a message before the relay has read the reply to the
    end of data and counted the session: wait for the count."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = metric(m, policy, result)
        if got >= want:
            return got
        time.sleep(0.05)
    raise AssertionError(f"mrs_outbound_tls_total{{{policy},{result}}} never reached {want}")


def metric(m, policy, result):
    code, text = m.http("GET", "/metrics")
    assert code == 200
    key = f'mrs_outbound_tls_total{{policy="{policy}",result="{result}"}} '
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.split()[1])
    raise AssertionError(f"{key} not in /metrics")


# ---- enforce ----------------------------------------------------------------------------

def test_enforce_good_mx_delivered_over_verified_tls(ctx):
    m = relay(ctx)
    try:
        tok, _ = submit(m, "bob@enforce.test")
        got = wait_msg(ctx.sinks["good"], tok)
        assert got["tls"], "delivered without TLS"
        wait_log(m, "policy mta-sts-enforce: TLS, certificate verified")
        assert "MTA-STS policy mode enforce, id 1 (fetched" in m.log()
        assert metric(m, "mta-sts-enforce", "verified") == 1
        assert ctx.policy.requests.get("mta-sts.enforce.test", 0) >= 1
        # the policy is on disk in the spool
        assert os.path.exists(os.path.join(m.spool, "mta-sts", "enforce.test"))
    finally:
        m.stop()


def test_many_messages_to_one_domain_fetch_the_policy_once(ctx):
    """The first fetch is held by the policy server while more messages to
    the domain arrive: they wait for it instead of fetching too."""
    answer = ctx.policy.answers["mta-sts.enforce.test"]
    before = ctx.policy.requests.get("mta-sts.enforce.test", 0)
    answer["gate"] = threading.Event()
    m = relay(ctx, MRS_DELIVERY_THREADS="8", MRS_DELIVERY_DOMAIN_CONCURRENCY="8",
              MRS_DELIVERY_COMMAND_TIMEOUT="60s")
    try:
        toks = [submit(m, "user0@enforce.test")[0]]
        deadline = time.time() + 20
        while ctx.policy.requests.get("mta-sts.enforce.test", 0) == before and time.time() < deadline:
            time.sleep(0.02)
        toks += [submit(m, f"user{i}@enforce.test")[0] for i in range(1, 12)]
        answer["gate"].set()
        for tok in toks:
            assert wait_msg(ctx.sinks["good"], tok)["tls"]
        assert ctx.policy.requests.get("mta-sts.enforce.test", 0) - before == 1
    finally:
        answer.pop("gate").set()
        m.stop()


def test_enforce_without_starttls_defers_never_plaintext(ctx):
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@plain.test")
        out = wait_show(ctx, m, qid, "MTA-STS enforce: no STARTTLS offered for mx.plain.test")
        assert "deferred" in out, out
        assert count(ctx.sinks["plain"], tok) == 0
        assert "> MAIL FROM" not in m.log()
        assert metric(m, "mta-sts-enforce", "failed") >= 1
        assert metric(m, "mta-sts-enforce", "plaintext") == 0
    finally:
        m.stop()


def test_enforce_certificate_name_mismatch_defers(ctx):
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@wrongname.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: certificate name mismatch for mx.wrongname.test")
        assert count(ctx.sinks["wrong"], tok) == 0
        assert "retrying once in plaintext" not in m.log()
    finally:
        m.stop()


def test_enforce_self_signed_certificate_defers(ctx):
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@selfsigned.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: certificate not trusted for mx.selfsigned.test")
        assert count(ctx.sinks["self"], tok) == 0
    finally:
        m.stop()


def test_enforce_mx_not_in_policy_is_skipped(ctx):
    m = relay(ctx)
    try:
        tok, _ = submit(m, "bob@skip.test")
        got = wait_msg(ctx.sinks["good"], tok)
        assert got["tls"]
        assert count(ctx.sinks["plain"], tok) == 0  # rogue.skip.test (preference 10) never got it
        log = m.log()
        assert "rogue.skip.test does not match the policy's mx patterns" in log, log[-3000:]
        assert metric(m, "mta-sts-enforce", "skipped") >= 1
    finally:
        m.stop()


def test_enforce_no_mx_in_policy_defers(ctx):
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@onlyrogue.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: no MX host of onlyrogue.test matches the policy (mx: mx.onlyrogue.test)")
        assert count(ctx.sinks["plain"], tok) == 0
    finally:
        m.stop()


# ---- testing, off, no policy ------------------------------------------------------------

def test_testing_mode_delivers_and_logs(ctx):
    m = relay(ctx)
    try:
        tok, _ = submit(m, "bob@testing.test")
        got = wait_msg(ctx.sinks["plain"], tok)
        assert not got["tls"]
        wait_log(m, "MTA-STS testing: enforce would have refused this delivery")
        assert wait_metric(m, "mta-sts-testing", "plaintext", 1) == 1
    finally:
        m.stop()


def test_mta_sts_off_ignores_policies(ctx):
    m = relay(ctx, MRS_MTA_STS="off")
    try:
        tok, _ = submit(m, "bob@off.test")
        wait_msg(ctx.sinks["plain"], tok)
        assert ctx.policy.requests.get("mta-sts.off.test", 0) == 0
        assert wait_metric(m, "opportunistic", "plaintext", 1) == 1
    finally:
        m.stop()


def test_no_policy_and_txt_servfail_deliver_opportunistically(ctx):
    m = relay(ctx)
    try:
        tok1, _ = submit(m, "bob@nopolicy.test")
        tok2, _ = submit(m, "bob@servfail.test")
        wait_msg(ctx.sinks["plain"], tok1)
        wait_msg(ctx.sinks["plain"], tok2)
        assert wait_metric(m, "opportunistic", "plaintext", 2) == 2
        log = m.log()
        assert "nopolicy.test: no MTA-STS policy (_mta-sts.nopolicy.test TXT lookup: nxdomain)" in log, log[-3000:]
        assert "servfail.test: no MTA-STS policy (_mta-sts.servfail.test TXT lookup: servfail)" in log, log[-3000:]
    finally:
        m.stop()


# ---- the cache ----------------------------------------------------------------------------

def test_policy_cached_across_restart(ctx):
    spool = tempfile.mkdtemp(prefix="spool-", dir=ctx.h.tmp)
    m = relay(ctx, spool=spool)
    try:
        _, qid = submit(m, "bob@cached.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: no STARTTLS offered")
    finally:
        m.stop()
    fetched = ctx.policy.requests.get("mta-sts.cached.test", 0)
    answer = ctx.policy.answers.pop("mta-sts.cached.test")  # the policy server has nothing now
    try:
        m = relay(ctx, spool=spool)
        try:
            tok, qid2 = submit(m, "bob@cached.test")
            wait_show(ctx, m, qid2, "MTA-STS enforce: no STARTTLS offered")
            assert "MTA-STS policy mode enforce, id 1 (cached" in m.log()
            assert ctx.policy.requests.get("mta-sts.cached.test", 0) == fetched
            assert count(ctx.sinks["plain"], tok) == 0
        finally:
            m.stop()
    finally:
        ctx.policy.answers["mta-sts.cached.test"] = answer


def test_refresh_failing_keeps_cached_policy_then_id_change_refetches(ctx):
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@stale.test")
        tok2, qid2 = submit(m, "bob@idchange.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: no STARTTLS offered")
        wait_show(ctx, m, qid2, "MTA-STS enforce: no STARTTLS offered")
        # stale.test: a new id whose policy cannot be fetched; idchange.test: a
        # new id whose policy is mode none
        ctx.policy.answers["mta-sts.stale.test"]["status"] = 500
        ctx.policy.answers["mta-sts.idchange.test"]["body"] = "version: STSv1\nmode: none\nmax_age: 86400\n"
        ctx.dns.set_records(zone({"stale.test": "2", "idchange.test": "2"}))
        wait_msg(ctx.sinks["plain"], tok2)
        assert "idchange.test: MTA-STS policy mode none, id 2 (fetched" in m.log()
        wait_log(m, "stale.test: policy fetch failed")
        wait_log(m, "stale.test: MTA-STS policy mode enforce, id 1 (cached (refresh failed)")
        assert count(ctx.sinks["plain"], tok) == 0
        assert "deferred" in show(ctx, m, qid)
    finally:
        m.stop()
        ctx.policy.answers["mta-sts.stale.test"]["status"] = 200
        ctx.policy.answers["mta-sts.idchange.test"]["body"] = DOMAINS["idchange.test"][2]
        ctx.dns.set_records(zone())


def test_a_stalled_policy_fetch_holds_up_no_other_domain(ctx):
    """A hostile policy server that stalls its answer holds up mail to its
    own domain only: mail to another domain (here one whose name hashes
    like it) is delivered while that fetch still waits."""
    gate = threading.Event()
    ctx.policy.answers["mta-sts.held.test"]["gate"] = gate
    m = relay(ctx, MRS_DELIVERY_COMMAND_TIMEOUT="30s")
    try:
        submit(m, "bob@held.test")
        for _ in range(400):
            if ctx.policy.requests.get("mta-sts.held.test"):
                break
            time.sleep(0.05)
        assert ctx.policy.requests.get("mta-sts.held.test"), "the held fetch never started"
        tok, _ = submit(m, "bob@victim38.test")
        wait_msg(ctx.sinks["plain"], tok, timeout=60)
        # delivered before the held fetch ended (it ends by failing, at 30 s)
        assert "held.test: policy fetch failed" not in m.log()
    finally:
        gate.set()
        m.stop()
        ctx.policy.answers["mta-sts.held.test"].pop("gate", None)


def test_policy_body_cut_by_a_tcp_close_is_not_a_policy(ctx):
    """A body without Content-Length ends at the end of the TLS stream: a
    TCP close without close_notify (a truncation anyone on the path can
    cause) ends no policy; close_notify does."""
    m = relay(ctx)
    try:
        submit(m, "bob@trunc.test")
        submit(m, "bob@cleanclose.test")
        wait_log(m, "cleanclose.test: MTA-STS policy mode enforce, id 1 (fetched")
        wait_log(m, "trunc.test: policy fetch failed")
        line = [ln for ln in m.log().splitlines() if "trunc.test: policy fetch failed" in ln][0]
        assert "close_notify" in line, line
        assert "trunc.test: MTA-STS policy mode enforce" not in m.log()
    finally:
        m.stop()


def test_removed_txt_record_keeps_cached_policy(ctx):
    """RFC 8461 §3.3: a policy stays in force until max_age even when the
    TXT record goes away (an attacker can suppress it)."""
    m = relay(ctx)
    try:
        tok, qid = submit(m, "bob@removed.test")
        wait_show(ctx, m, qid, "MTA-STS enforce: no STARTTLS offered")
        ctx.dns.set_records(zone({"removed.test": None}))
        tok2, qid2 = submit(m, "bob@removed.test")
        wait_show(ctx, m, qid2, "MTA-STS enforce: no STARTTLS offered")
        assert "removed.test: MTA-STS policy mode enforce, id 1 (cached: _mta-sts.removed.test TXT lookup: nxdomain)" \
            in m.log(), m.log()[-3000:]
        assert count(ctx.sinks["plain"], tok) == 0 and count(ctx.sinks["plain"], tok2) == 0
    finally:
        m.stop()
        ctx.dns.set_records(zone())


# ---- malformed policies and servers ------------------------------------------------------

def test_crlf_and_unknown_keys_parse(ctx):
    m = relay(ctx)
    try:
        for d in ("crlf.test", "unknownkeys.test"):
            tok, qid = submit(m, f"bob@{d}")
            wait_show(ctx, m, qid, f"MTA-STS enforce: no STARTTLS offered for mx.{d}")
            assert count(ctx.sinks["plain"], tok) == 0
    finally:
        m.stop()


def test_unusable_policies_are_ignored(ctx):
    """A policy that cannot be used is as no policy: delivered as today,
    and the log says why."""
    cases = {
        "huge.test": "policy body over 64 KB",
        "redirect.test": "HTTP status 301 (redirects are not followed",
        "ctype.test": "Content-Type is not text/plain",
        "nomx.test": "invalid policy: no mx line",
        "untrusted.test": "certificate not trusted",
        "slow.test": "timeout",
    }
    m = relay(ctx)
    try:
        toks = {d: submit(m, f"bob@{d}")[0] for d in cases}
        for d, why in cases.items():
            wait_msg(ctx.sinks["plain"], toks[d], timeout=40)
            wait_log(m, f"{d}: policy fetch failed")
            line = [ln for ln in m.log().splitlines() if f"{d}: policy fetch failed" in ln][0]
            assert why in line, line
    finally:
        m.stop()


# ---- configuration -------------------------------------------------------------------------

def test_config_errors_name_the_variable(ctx):
    for env, name in (({"MRS_OUTBOUND_CA_FILE": "/nonexistent/ca.pem"}, "MRS_OUTBOUND_CA_FILE"),
                      ({"MRS_MTA_STS": "maybe"}, "MRS_MTA_STS"),
                      ({"MRS_MTA_STS_PORT": "0"}, "MRS_MTA_STS_PORT")):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MRS_")}
        e.update({"MRS_HOSTNAME": "mrs.test", "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{free_port()}",
                  "MRS_SUBMISSIONS_LISTEN": "off", "MRS_HEALTH_LISTEN": "off",
                  "MRS_SPOOL_DIR": tempfile.mkdtemp(prefix="spool-", dir=ctx.h.tmp)})
        e.update(env)
        r = subprocess.run([ctx.h.mrs_bin, "serve"], env=e, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (env, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], r.stderr
