"""DANE for outbound SMTP (issue 14, SPEC §8.5, RFC 7672), black-box.

A DNSSEC-signed zone dane.test (ldns-keygen / ldns-signzone) is served by an
authoritative unbound (auth-zone) on loopback; a validating unbound in front
of it holds the zone's key as its trust anchor and sets the AD bit, and the
relay uses it as MRS_DNS_SERVERS with MRS_DANE=on.  A second, non-validating
unbound serves the very same records without AD.  The mail exchangers are
aiosmtpd sinks on 127.0.0.2x sharing MRS_DELIVERY_PORT, with certificates
made here (self-signed ones, and one issued by a test CA for DANE-TA).

Each case is one recipient domain with one MX host and its TLSA records:
  ee      3 1 1 of the sink's key                 → delivered over TLS
  cert    3 0 1 of the sink's certificate         → delivered over TLS
  sha512  3 1 2 of the sink's key                 → delivered over TLS
  ta      2 0 1 of the CA that issued the sink's  → delivered over TLS
  bad     3 1 1 of another key                    → deferred, nothing sent
  plain   3 1 1, the sink offers no STARTTLS      → deferred, nothing sent
  pkix    only usages 0 and 1 (unusable)          → delivered (opportunistic)
  bogus   a TLSA record whose signature fails     → deferred (lookup failed)
  tls12   3 1 1, a sink that speaks TLS 1.2 only  → delivered over TLS 1.2
  taname  2 0 1 of the CA, a certificate for another name → deferred
  implicit (no MX: the domain's own A and TLSA) 3 1 1 of another key → deferred
"""
import os
import shutil
import ssl
import subprocess
import tempfile
import time

from harness import Proc, SPF_OK, common_port, free_port, token_for, wait_port

USER = ("alice@customer.test", "alice-secret")
SENDER = USER[0]
ZONE = "dane.test"

# name -> (address, certificate kind) of the sinks that play MX hosts
SINKS = {
    "ee": ("127.0.0.21", "a"),
    "cert": ("127.0.0.22", "c"),
    "bad": ("127.0.0.23", "b"),
    "ta": ("127.0.0.24", "ta"),
    "plain": ("127.0.0.25", None),
    "pkix": ("127.0.0.26", "b"),
    "bogus": ("127.0.0.27", "a"),
    "tls12": ("127.0.0.28", "a"),
    "taname": ("127.0.0.29", "taname"),
}


class Ctx:
    pass


class Resolver:
    """unbound on a loopback port: authoritative for the signed zone
    (auth=zonefile), or a recursive one in front of it (stub=port) that
    validates with trust_anchor when given."""

    def __init__(self, h, auth=None, stub=None, trust_anchor=None):
        self.port = free_port()
        lines = [
            "server:", f"  interface: 127.0.0.1@{self.port}", f"  port: {self.port}",
            "  do-daemonize: no", '  chroot: ""', '  username: ""', '  pidfile: ""',
            f'  directory: "{h.tmp}"', "  use-syslog: no", '  logfile: ""', "  verbosity: 0",
            "  do-ip6: no", "  num-threads: 1", "  so-reuseport: no", "  outgoing-range: 16",
            "  access-control: 127.0.0.0/8 allow", "  do-not-query-localhost: no",
            # RFC 6761 names are local zones by default in unbound: not here
            '  local-zone: "test." nodefault',
            '  module-config: "%s"' % ("validator iterator" if trust_anchor else "iterator"),
        ]
        if trust_anchor:
            lines.append(f'  trust-anchor-file: "{trust_anchor}"')
        if stub:
            # the sender domain's authorization records (SPEC §1), unsigned
            lines += ['  local-zone: "customer.test." static',
                      f"  local-data: 'customer.test. TXT \"{SPF_OK}\"'",
                      f"  local-data: 'customer.test. TXT \"{token_for(USER[0])}\"'"]
            lines += ["stub-zone:", f'  name: "{ZONE}."', f"  stub-addr: 127.0.0.1@{stub}"]
        if auth:
            lines += ["auth-zone:", f'  name: "{ZONE}."', f'  zonefile: "{auth}"',
                      "  for-downstream: yes", "  for-upstream: no"]
        lines += ["remote-control:", "  control-enable: no"]
        conf = os.path.join(h.tmp, f"unbound-dane-{self.port}.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        chk = subprocess.run(["unbound-checkconf", conf], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.proc = Proc(h, "unbound", ["unbound", "-d", "-c", conf])
        wait_port("127.0.0.1", self.port, 10, self.proc.p)

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"


# ---- certificates and their TLSA data -----------------------------------------

def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def make_ca(d):
    key, cert = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", cert, "-days", "2", "-subj", "/CN=DANE test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(d, ca, name):
    """A certificate for name issued by ca; the file holds it and the CA
    certificate after it (the chain the server presents)."""
    key, csr, leaf = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "leaf.pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", leaf)
    chain = os.path.join(d, f"{name}.chain.pem")
    with open(chain, "w") as f:
        f.write(open(leaf).read() + open(ca[0]).read())
    return chain, key


def cert_der(pem):
    return openssl("x509", "-in", pem, "-outform", "DER")


def spki_der(pem):
    pub = openssl("x509", "-in", pem, "-noout", "-pubkey")
    return openssl("pkey", "-pubin", "-outform", "DER", data=pub)


def digest(data, alg):
    return openssl("dgst", f"-{alg}", "-binary", data=data).hex()


# ---- the zone ---------------------------------------------------------------------

def zone_text(ctx):
    a, b, c = ctx.certs["a"][0], ctx.certs["b"][0], ctx.certs["c"][0]
    tlsa = {
        "ee": ["3 1 1 " + digest(spki_der(a), "sha256")],
        "cert": ["3 0 1 " + digest(cert_der(c), "sha256")],
        "sha512": ["3 1 2 " + digest(spki_der(c), "sha512")],
        "ta": ["2 0 1 " + digest(cert_der(ctx.ca[0]), "sha256")],
        "bad": ["3 1 1 " + digest(spki_der(a), "sha256")],
        "plain": ["3 1 1 " + digest(spki_der(a), "sha256")],
        # PKIX-TA / PKIX-EE: unusable for SMTP (RFC 7672 §3.1.3), though they match
        "pkix": ["0 0 1 " + digest(cert_der(b), "sha256"), "1 1 1 " + digest(spki_der(b), "sha256")],
        "bogus": ["3 1 1 " + digest(spki_der(a), "sha256")],
        "tls12": ["3 1 1 " + digest(spki_der(a), "sha256")],
        "taname": ["2 0 1 " + digest(cert_der(ctx.ca[0]), "sha256")],
    }
    lines = [f"$ORIGIN {ZONE}.", "$TTL 300",
             f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300", f"@ IN NS ns.{ZONE}.",
             "ns IN A 127.0.0.1"]
    hosts = dict((n, SINKS[n][0]) for n in SINKS)
    hosts["sha512"] = SINKS["cert"][0]  # the same sink and certificate, another MX name
    for name, addr in hosts.items():
        lines += [f"{name} IN MX 10 mx-{name}.{ZONE}.", f"mx-{name} IN A {addr}"]
        lines += [f"_25._tcp.mx-{name} IN TLSA {t}" for t in tlsa[name]]
    # implicit MX (RFC 7672 §2.2.2): no MX, the domain's own address and TLSA
    lines += [f"implicit IN A {SINKS['bad'][0]}", "_25._tcp.implicit IN TLSA 3 1 1 " + digest(spki_der(a), "sha256")]
    return "\n".join(lines) + "\n"


def sign_zone(ctx, d):
    path = os.path.join(d, "zone")
    with open(path, "w") as f:
        f.write(zone_text(ctx))
    ksk = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", ZONE], cwd=d, capture_output=True,
                         text=True, check=True).stdout.strip()
    zsk = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", ZONE], cwd=d, capture_output=True,
                         text=True, check=True).stdout.strip()
    subprocess.run(["ldns-signzone", "-o", ZONE, path, ksk, zsk], cwd=d, check=True, capture_output=True)
    signed = path + ".signed"
    # bogus: change the TLSA data of mx-bogus after signing, so that its
    # signature no longer verifies (a validating resolver answers SERVFAIL)
    good = digest(spki_der(ctx.certs["a"][0]), "sha256")
    out, changed = [], 0
    for ln in open(signed):
        f = ln.split()
        if len(f) >= 8 and f[0] == f"_25._tcp.mx-bogus.{ZONE}." and f[3] == "TLSA":
            ln = ln.replace(good.upper(), "00" * 32).replace(good, "00" * 32)
            changed += 1
        out.append(ln)
    assert changed == 1, "mx-bogus TLSA not found in the signed zone"
    with open(signed, "w") as f:
        f.writelines(out)
    return signed, os.path.join(d, ksk + ".key")


def setup(h):
    for tool in ("ldns-keygen", "ldns-signzone", "unbound", "openssl"):
        assert shutil.which(tool), f"{tool} is missing (build.sh installs ldnsutils for the tests)"
    ctx = Ctx()
    ctx.h = h
    d = tempfile.mkdtemp(prefix="dane-", dir=h.tmp)
    ctx.ca = make_ca(d)
    ctx.certs = {"a": h.self_signed("mx-ee.dane.test"), "b": h.self_signed("mx-bad.dane.test"),
                 "c": h.self_signed("mx-cert.dane.test"), "ta": issue(d, ctx.ca, "mx-ta.dane.test"),
                 # issued by the trust anchor, but for a name that is not the MX host's
                 "taname": issue(d, ctx.ca, "elsewhere.dane.test")}
    signed, anchor = sign_zone(ctx, d)
    ctx.auth = Resolver(h, auth=signed)
    ctx.validating = Resolver(h, stub=ctx.auth.port, trust_anchor=anchor)
    ctx.plain_resolver = Resolver(h, stub=ctx.auth.port)
    ctx.port = common_port([a for a, _ in SINKS.values()])
    ctx.sinks = {}
    for name, (addr, kind) in SINKS.items():
        ctx.sinks[name] = h.sink(addr=addr, port=ctx.port, tls_cert=ctx.certs[kind] if kind else None)
    tls = ctx.sinks["tls12"].controller.SMTP_kwargs["tls_context"]
    tls.maximum_version = ssl.TLSVersion.TLSv1_2  # mbedTLS's TLS 1.2 path verifies too
    return ctx


def teardown(ctx):
    pass


# ---- helpers ------------------------------------------------------------------------

def relay(ctx, resolver=None, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx.port), "MRS_RETRY_MIN": "1s", "MRS_RETRY_MAX": "2s",
            "MRS_DELIVERY_CONNECT_TIMEOUT": "3s", "MRS_DELIVERY_COMMAND_TIMEOUT": "5s", "MRS_DANE": "on"}
    base.update(env)
    return ctx.h.mrs(dns=resolver or ctx.validating, env=base)


def submit(m, rcpt, token):
    s = m.smtp(login=USER)
    body = (f"From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@customer.test>\r\n\r\nbody {token}\r\n")
    s.mail(SENDER)
    s.rcpt(rcpt)
    code, text = s.data(body.encode())
    s.quit()
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[1]


def new_token():
    return "dane-" + os.urandom(8).hex()


def wait_msg(sink, token, timeout=20.0):
    deadline = time.time() + timeout
    with sink.cond:
        while True:
            got = [x for x in sink.messages if token.encode() in x["data"]]
            if got:
                return got[0]
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"no message with {token} at {sink.addr} in {timeout}s")
            sink.cond.wait(left)


def count_msgs(sink, token):
    with sink.cond:
        return sum(token.encode() in x["data"] for x in sink.messages)


def queue_show(ctx, m, qid):
    return subprocess.run([ctx.h.mrs_bin, "queue", "show", qid], env=m.env, capture_output=True, text=True,
                          timeout=30)


def wait_deferred(ctx, m, qid, text, timeout=20.0):
    """Wait until the message's first attempt is over and `mrs queue show`
    says why it waits; returns that output."""
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        r = queue_show(ctx, m, qid)
        out = r.stdout
        if r.returncode == 0 and "deferred" in out and text in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{qid} never deferred with {text!r}:\n{out}\n" + m.log()[-3000:])


def wait_log(m, text, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in m.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"log never showed {text!r}:\n" + m.log()[-3000:])


def metric(m, labels):
    _, body = m.http("GET", "/metrics")
    name = "mrs_outbound_tls_total{" + labels + "}"
    for ln in body.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def at_least(m, labels, want, timeout=20.0):
    """The sink has the message before the relay has read the reply to the
    end of data and counted the session: wait for the count."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(m, labels) >= want:
            return
        time.sleep(0.05)
    raise AssertionError(f"mrs_outbound_tls_total{{{labels}}} never reached {want}")


def delivered_over_tls(ctx, m, name):
    token = new_token()
    submit(m, f"bob@{name}.{ZONE}", token)
    sink = ctx.sinks["cert" if name == "sha512" else name]
    got = wait_msg(sink, token)
    assert got["tls"], f"{name}: delivered without TLS"
    return token


# ---- tests ----------------------------------------------------------------------------

def test_dane_ee_spki_sha256_match_delivers_over_tls(ctx):
    m = relay(ctx)
    delivered_over_tls(ctx, m, "ee")
    wait_log(m, "certificate verified")
    # the decision is logged with the message
    assert f"TLSA _25._tcp.mx-ee.{ZONE}: ok, secure: TLS required, the certificate must match" in m.log()
    at_least(m, 'policy="dane",result="verified"', 1)
    assert metric(m, 'policy="dane",result="failed"') == 0


def test_dane_ee_full_certificate_and_sha512_match(ctx):
    m = relay(ctx)
    delivered_over_tls(ctx, m, "cert")
    delivered_over_tls(ctx, m, "sha512")
    at_least(m, 'policy="dane",result="verified"', 2)


def test_dane_ta_ca_as_trust_anchor_matches(ctx):
    m = relay(ctx)
    delivered_over_tls(ctx, m, "ta")


def test_dane_over_tls12(ctx):
    m = relay(ctx)
    delivered_over_tls(ctx, m, "tls12")
    wait_log(m, "TLSv1.2, certificate verified")


def test_dane_ta_checks_the_mx_host_name(ctx):
    m = relay(ctx)
    token = new_token()
    qid = submit(m, f"bob@taname.{ZONE}", token)
    wait_deferred(ctx, m, qid, f"DANE: no TLSA record matches the certificate of mx-taname.{ZONE}")
    assert count_msgs(ctx.sinks["taname"], token) == 0


def test_dane_implicit_mx_uses_the_domain_tlsa(ctx):
    m = relay(ctx)
    token = new_token()
    qid = submit(m, f"bob@implicit.{ZONE}", token)
    wait_deferred(ctx, m, qid, f"DANE: no TLSA record matches the certificate of implicit.{ZONE}")
    assert count_msgs(ctx.sinks["bad"], token) == 0


def test_dane_mismatch_defers_and_sends_nothing(ctx):
    m = relay(ctx)
    token = new_token()
    qid = submit(m, f"bob@bad.{ZONE}", token)
    why = f"DANE: no TLSA record matches the certificate of mx-bad.{ZONE}"
    out = wait_deferred(ctx, m, qid, why)
    assert "451 4.7.5" in out, out
    assert why in m.log()
    assert count_msgs(ctx.sinks["bad"], token) == 0, "delivered despite the TLSA mismatch"
    assert "retrying once in plaintext" not in m.log()
    at_least(m, 'policy="dane",result="failed"', 1)


def test_dane_required_without_starttls_defers(ctx):
    m = relay(ctx)
    token = new_token()
    qid = submit(m, f"bob@plain.{ZONE}", token)
    out = wait_deferred(ctx, m, qid, f"DANE: no STARTTLS offered for mx-plain.{ZONE}")
    assert "DANE" in out, out
    assert count_msgs(ctx.sinks["plain"], token) == 0, "delivered in plaintext despite usable TLSA"
    at_least(m, 'policy="dane",result="failed"', 1)


def test_dane_only_unusable_records_is_opportunistic(ctx):
    m = relay(ctx)
    delivered_over_tls(ctx, m, "pkix")
    assert "no usable record: opportunistic TLS" in m.log()
    wait_log(m, "policy opportunistic: TLS, certificate")  # counted as opportunistic, not DANE
    assert metric(m, 'policy="dane",result="verified"') == 0


def test_dane_bogus_tlsa_defers_as_lookup_failure(ctx):
    m = relay(ctx)
    token = new_token()
    qid = submit(m, f"bob@bogus.{ZONE}", token)
    out = wait_deferred(ctx, m, qid, f"DANE: TLSA lookup for _25._tcp.mx-bogus.{ZONE} failed")
    assert count_msgs(ctx.sinks["bogus"], token) == 0, out
    at_least(m, 'policy="dane",result="skipped"', 1)


def test_dane_without_ad_bit_is_insecure_never_dane(ctx):
    # the same records through a resolver that does not validate: no AD bit,
    # so the mismatching TLSA record is not DANE, and delivery is as today
    m = relay(ctx, resolver=ctx.plain_resolver)
    token = new_token()
    submit(m, f"bob@bad.{ZONE}", token)
    got = wait_msg(ctx.sinks["bad"], token)
    assert got["tls"], "opportunistic STARTTLS expected"
    assert "DANE: no TLSA record matches" not in m.log()
    assert metric(m, 'policy="dane",result="failed"') == 0


def test_dane_off_keeps_todays_behaviour(ctx):
    m = relay(ctx, MRS_DANE="off")
    token = new_token()
    submit(m, f"bob@bad.{ZONE}", token)
    assert wait_msg(ctx.sinks["bad"], token)["tls"]
    token = new_token()
    submit(m, f"bob@plain.{ZONE}", token)
    assert not wait_msg(ctx.sinks["plain"], token)["tls"]
    assert "DANE:" not in m.log()


def test_dane_config_errors(h):
    base = {"MRS_HOSTNAME": "mrs.test", "MRS_SPOOL_DIR": h.tmp}
    r = h.run([h.mrs_bin, "serve"], env=dict(base, MRS_DANE="maybe"))
    assert r.returncode == 2 and "MRS_DANE" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # the AD bit is trusted only from servers the operator named
    r = h.run([h.mrs_bin, "serve"], env=dict(base, MRS_DANE="on"))
    assert r.returncode == 2 and "MRS_DANE" in r.stderr and "MRS_DNS_SERVERS" in r.stderr, (r.returncode, r.stderr)
