"""Issue 12 (SPEC 8.3): DKIM signatures in the customer's name with the
operator's delegated keys, checked by two independent verifiers.

Every delivered message is verified, signature by signature, by dkimpy
(python3-dkim, Ed25519 through python3-nacl) and by OpenDKIM
(opendkim-testmsg from opendkim-tools).  Both resolve the keys through the
test's own DNS server: an unbound on a loopback address of its own, port 53
(OpenDKIM's resolver reads /etc/resolv.conf, which has no port syntax; it
runs in a private mount namespace where a resolv.conf naming that server is
bind-mounted over /etc/resolv.conf).  The zone is authoritative data
(auth-zone), so the server follows a customer's CNAME to the operator's
record in its answer as a real resolver does.

The relay holds RSA-2048 (made by `mrs dkim-keygen rsa`), RSA-4096 (made by
OpenSSL, PKCS#8) and Ed25519 (made by `mrs dkim-keygen ed25519`) keys, and
delivers to a local receiving SMTP server.  Sender domains: cname.test (the
CNAME delegation), direct.test (a copy of the TXT record), none.test (no
delegation), otherkey.test (CNAMEs to another key).

BDAT (CHUNKING) does not exist yet (issue 13): when it does, the same
cases must run through BDAT too.
"""
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import time

import harness
from fakedns import FakeDns, message as dns_message
from harness import SPF_OK, Proc, token_for, wait_port

USER, PW = "alice@customer.test", "alice-secret"
OP = "keys.relay.test"
SELECTORS = ("r2048", "r4096", "ed1")
MAX_BYTES = 200 * 1024


# --- the DNS server -----------------------------------------------------------

def loopback_for_53():
    """A loopback address whose port 53 is free (UDP and TCP); never
    127.0.0.1 or systemd's 127.0.0.53/54."""
    rnd = random.Random(os.getpid() ^ int(time.time()))
    for _ in range(100):
        addr = f"127.{rnd.randint(60, 250)}.{rnd.randint(1, 250)}.{rnd.randint(2, 250)}"
        t, u = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((addr, 53))
            u.bind((addr, 53))
            return addr
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no loopback address with a free port 53")


class ZoneDns:
    """unbound serving the zone `test.` from a zone file on addr:53."""

    def __init__(self, h, records):
        self.h = h
        self.addr = loopback_for_53()
        self.proc = None
        self.start(records)

    def start(self, records):
        d = self.h.tmp
        zone = os.path.join(d, f"dkim-zone-{self.addr}")
        with open(zone, "w") as f:
            f.write("$ORIGIN test.\n@ 60 IN SOA ns.test. host.test. 1 3600 600 86400 60\n"
                    "@ 60 IN NS ns.test.\nns 60 IN A 127.0.0.1\n")
            for r in records:
                f.write(r + "\n")
        conf = os.path.join(d, f"dkim-unbound-{self.addr}.conf")
        with open(conf, "w") as f:
            f.write("server:\n"
                    f"  interface: {self.addr}@53\n  port: 53\n"
                    "  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  pidfile: \"\"\n"
                    f"  directory: \"{d}\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n"
                    "  do-ip6: no\n  num-threads: 1\n  so-reuseport: no\n"
                    "  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n"
                    "  local-zone: \"test.\" nodefault\n"  # unbound blocks test. (RFC 6761) by default
                    "auth-zone:\n  name: \"test.\"\n"
                    f"  zonefile: \"{zone}\"\n  for-downstream: yes\n  for-upstream: yes\n"
                    "remote-control:\n  control-enable: no\n")
        chk = subprocess.run(["unbound-checkconf", conf], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.proc = Proc(self.h, "unbound", ["unbound", "-d", "-c", conf])
        wait_port(self.addr, 53, 10, self.proc.p)
        self.resolv = os.path.join(d, f"resolv-{self.addr}.conf")
        with open(self.resolv, "w") as f:
            f.write(f"nameserver {self.addr}\noptions timeout:2 attempts:2\n")

    @property
    def server(self):
        return f"{self.addr}:53"


class DkimSilentDns(FakeDns):
    """Answers the sender's TXT records; never answers a _domainkey name."""

    def _serve_udp(self):
        import select
        while self.running:
            r, _, _ = select.select([self.udp], [], [], 0.05)
            if not r:
                continue
            try:
                data, peer = self.udp.recvfrom(4096)
                qid, qname, qtype = self._record("udp", data, peer[1])
            except (OSError, IndexError, ValueError):
                continue
            if "_domainkey" not in qname.lower():
                self.udp.sendto(self.answer(qid, qname, qtype), peer)


# --- the verifiers -------------------------------------------------------------

def dkimpy_verify(msg, zone, idx):
    import dkim
    import dns.resolver

    def txt(name, timeout=5):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [dns_addr]
        r.port = 53
        r.lifetime = timeout
        try:
            a = r.resolve(name.decode().rstrip("."), "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        for rrset in a.response.answer:
            if rrset.rdtype == 16:
                return b"".join(list(rrset.items)[0].strings)
        return None

    dns_addr = zone.addr
    try:
        return dkim.DKIM(msg).verify(idx=idx, dnsfunc=txt)
    except dkim.DKIMException:  # a body hash mismatch is raised, not returned
        return False


def split_head(msg):
    head, sep, body = msg.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    return fields, sep + body


def signatures(msg):
    fields, _ = split_head(msg)
    return [f for f in fields if f.lower().startswith(b"dkim-signature:")]


def only_signature(msg, i):
    """The message with its i-th DKIM-Signature field alone (the others are
    not covered by it, so removing them changes nothing it signs)."""
    fields, rest = split_head(msg)
    sigs = [k for k, f in enumerate(fields) if f.lower().startswith(b"dkim-signature:")]
    keep = [f for k, f in enumerate(fields) if k not in sigs or k == sigs[i]]
    return b"\r\n".join(keep) + rest


def opendkim_verify(msg, dns):
    r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$1" /etc/resolv.conf && exec opendkim-testmsg',
                        "sh", dns.resolv], input=msg, capture_output=True, timeout=60)
    return r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stderr.decode(errors="replace")


def verify_all(msg, dns):
    """[(dkimpy ok, opendkim ok, opendkim text)] per signature."""
    out = []
    for i in range(len(signatures(msg))):
        ok, why = opendkim_verify(only_signature(msg, i), dns)
        out.append((dkimpy_verify(msg, dns, i), ok, why))
    return out


def tag(sig, name):
    """A tag's value, white space (folding) removed."""
    m = re.search(rb"(?:^|;)\s*" + name.encode() + rb"=([^;]*)", sig.split(b":", 1)[1])
    return re.sub(rb"\s+", b"", m.group(1)).decode() if m else None


# --- set-up --------------------------------------------------------------------

def run(h, argv, env=None, input=None):
    return h.run(argv, env=env, input=input)


def make_keys(h, d):
    keys = {}
    for sel, argv in (("r2048", [h.mrs_bin, "dkim-keygen", "rsa"]), ("ed1", [h.mrs_bin, "dkim-keygen", "ed25519"]),
                      ("other", [h.mrs_bin, "dkim-keygen", "ed25519"])):
        r = run(h, argv)
        assert r.returncode == 0, r.stderr
        keys[sel] = os.path.join(d, sel + ".pem")
        with open(keys[sel], "w") as f:
            f.write(r.stdout)
    for sel, argv in (("r4096", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]),
                      ("ed2", ["-algorithm", "ed25519"])):
        keys[sel] = os.path.join(d, sel + ".pem")
        subprocess.run(["openssl", "genpkey", *argv, "-out", keys[sel]], check=True, capture_output=True)
    return keys


def key_list(keys, sels):
    return ",".join(f"{s}:{keys[s]}" for s in sels)


def records(h, keys, sels, customer):
    """The zone lines `mrs dkim-records CUSTOMER` prints, as zone-file lines."""
    r = run(h, [h.mrs_bin, "dkim-records", customer],
            env={"MRS_DKIM_KEYS": key_list(keys, sels), "MRS_DKIM_DOMAIN": OP})
    assert r.returncode == 0, r.stderr
    out = []
    for ln in r.stdout.splitlines():
        if ln.startswith(";"):
            continue
        name, typ, rest = ln.split(" ", 2)
        out.append(f"{name}. 60 IN {typ} {rest}{'.' if typ == 'CNAME' else ''}")
    return out


def sender_records(domain):
    return [f'{domain}. 60 IN TXT "{SPF_OK}"', f'{domain}. 60 IN TXT "{token_for(USER)}"']


def setup(h):
    d = os.path.join(h.tmp, "dkim-keys")
    os.makedirs(d, exist_ok=True)
    keys = make_keys(h, d)
    all_sels = list(SELECTORS) + ["ed2", "other"]
    zone = records(h, keys, all_sels, "cname.test")  # operator TXT records + cname.test's CNAMEs
    for ln in records(h, keys, all_sels, "direct.test"):
        if " TXT " in ln:  # direct.test copies the operator's TXT records
            zone.append(ln.replace(f"._domainkey.{OP}.", "._domainkey.direct.test."))
    for sel in SELECTORS:
        zone.append(f"{sel}._domainkey.otherkey.test. 60 IN CNAME other._domainkey.{OP}.")
    for dom in ("cname.test", "direct.test", "none.test", "otherkey.test"):
        zone += sender_records(dom)
    zone = [ln for ln in zone if not ln.startswith("other._domainkey.cname.test")]
    dns = ZoneDns(h, zone)
    sink = h.sink()
    m = relay(h, dns, sink, keys, SELECTORS)
    return {"h": h, "keys": keys, "dns": dns, "sink": sink, "m": m, "zone": zone}


def relay(h, dns, sink, keys, sels, **env):
    e = {"MRS_SMARTHOST": f"127.0.0.1:{sink.port}", "MRS_SMARTHOST_TLS": "none",
         "MRS_DKIM_KEYS": key_list(keys, sels), "MRS_DKIM_DOMAIN": OP,
         "MRS_MAX_MESSAGE_BYTES": str(MAX_BYTES)}
    e.update(env)
    return h.mrs(dns=dns, env=e)


def send(m, sender, msg, rcpts=("bob@example.net",), options=()):
    s = m.smtp(login=(USER, PW))
    try:
        s.sendmail(sender, list(rcpts), msg, mail_options=list(options))
    finally:
        s.quit()


def deliver(ctx, msg, sender="news@cname.test", **kw):
    sink = ctx["sink"]
    n = len(sink.messages)
    send(ctx["m"], sender, msg, **kw)
    return sink.wait(n + 1)[n]["data"]


def assert_signed(ctx, got, domain="cname.test", sels=SELECTORS):
    sigs = signatures(got)
    assert len(sigs) == len(sels), got[:3000]
    assert [tag(s, "s") for s in sigs] == list(sels)
    for s in sigs:
        assert tag(s, "d") == domain and tag(s, "c") == "relaxed/relaxed" and tag(s, "l") is None
        assert tag(s, "a") == ("ed25519-sha256" if tag(s, "s").startswith("ed") else "rsa-sha256")
        assert tag(s, "h").split(":").count("from") == 2, tag(s, "h")  # From oversigned
    results = verify_all(got, ctx["dns"])
    for sel, (py, od, why) in zip(sels, results):
        assert py, f"dkimpy failed for s={sel}:\n{got[:3000]!r}"
        assert od, f"OpenDKIM failed for s={sel}: {why}\n{got[:3000]!r}"


def head(fields, body=b"Hello.\r\n"):
    return b"".join(f.encode() + b"\r\n" for f in fields) + b"\r\n" + body


BASIC = ["From: News <news@cname.test>", "To: Bob <bob@example.net>", "Subject: DKIM test"]


# --- the message cases ------------------------------------------------------------

def test_plain_ascii_signed_by_every_key(ctx):
    got = deliver(ctx, head(BASIC + ["Date: Thu, 03 Dec 2026 10:00:00 +0000", "Message-ID: <a1@cname.test>"],
                            b"Hello Bob,\r\n\r\nthis is a plain message.\r\n"))
    assert got.startswith(b"DKIM-Signature:")
    assert_signed(ctx, got)


def test_relay_added_message_id_and_date_are_signed(ctx):
    got = deliver(ctx, head(BASIC))
    h = tag(signatures(got)[0], "h").split(":")
    assert "message-id" in h and "date" in h and b"Message-ID: <" in got
    assert_signed(ctx, got)


def test_8bit_body(ctx):
    body = "Grüße aus Göteborg — ½ € ✔\r\n".encode() + b"latin-1 \xe5\xe4\xf6\r\n"
    got = deliver(ctx, head(BASIC + ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                                     "Content-Transfer-Encoding: 8bit"], body), options=("BODY=8BITMIME",))
    assert body in got
    assert_signed(ctx, got)


def test_empty_body(ctx):
    got = deliver(ctx, head(BASIC, b""))
    assert got.endswith(b"\r\n\r\n")
    assert_signed(ctx, got)
    assert tag(signatures(got)[0], "bh") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256("")


def test_headers_only_without_empty_line(ctx):
    got = deliver(ctx, b"".join(f.encode() + b"\r\n" for f in BASIC))
    assert_signed(ctx, got)


def test_body_without_final_crlf(ctx):
    # smtplib, like real clients, ends the data with CRLF . CRLF after adding the missing CRLF
    got = deliver(ctx, head(BASIC, b"no line end at the end"))
    assert got.endswith(b"no line end at the end\r\n")
    assert_signed(ctx, got)


def test_trailing_empty_lines(ctx):
    got = deliver(ctx, head(BASIC, b"text\r\n\r\n\r\n \r\n\t\r\n\r\n"))
    assert_signed(ctx, got)


def test_trailing_spaces_and_tabs(ctx):
    got = deliver(ctx, head(BASIC + ["Subject2: x"], b"a  b\t\tc   \r\n\t leading\r\nend \t \r\n"))
    assert_signed(ctx, got)


def test_long_folded_headers(ctx):
    subject = "Subject: " + " ".join(f"word{i}" for i in range(30)).replace("word10 ", "word10\r\n\t").replace(
        "word20 ", "word20\r\n   ")
    to = "To: " + ",\r\n    ".join(f"Person {i} <p{i}@example.net>" for i in range(12))
    got = deliver(ctx, head(["From: News <news@cname.test>", to, subject, "X-Long: " + "y" * 900]))
    assert_signed(ctx, got)


def test_mixed_case_header_names(ctx):
    got = deliver(ctx, head(["fROM: News <news@cname.test>", "TO: bob@example.net", "sUbJeCt: Case",
                             "message-id: <mixed@cname.test>", "DATE: Thu, 03 Dec 2026 10:00:00 +0000"]))
    assert_signed(ctx, got)


def test_repeated_fields_each_signed(ctx):
    # List-Unsubscribe may stand twice; each occurrence is listed in h=
    got = deliver(ctx, head(BASIC + ["List-Unsubscribe: <mailto:u@cname.test>",
                                     "List-Unsubscribe: <https://cname.test/u>"]))
    assert tag(signatures(got)[0], "h").split(":").count("list-unsubscribe") == 2
    assert_signed(ctx, got)
    bad = got.replace(b"<https://cname.test/u>", b"<https://evil.test/u>")
    for py, od, _ in verify_all(bad, ctx["dns"]):
        assert not py and not od


def test_duplicate_to(ctx):
    got = deliver(ctx, head(BASIC + ["To: Carol <carol@example.net>"]))
    assert tag(signatures(got)[0], "h").split(":").count("to") == 2
    results = verify_all(got, ctx["dns"])
    assert all(py for py, _, _ in results), "dkimpy"
    # OpenDKIM 2.11 (Debian 12) refuses to evaluate any message with a
    # second To: (RFC 5322 section 3.6 allows one) before it looks at a
    # signature, with or without one: its verdict here is that refusal
    assert all(not od and "Syntax error" in why for _, od, why in results), results
    fields, rest = split_head(got)
    unsigned = b"\r\n".join(f for f in fields if not f.lower().startswith(b"dkim-signature:")) + rest
    assert not opendkim_verify(unsigned, ctx["dns"])[0] and "Syntax error" in opendkim_verify(unsigned, ctx["dns"])[1]


def test_dot_stuffed_lines(ctx):
    body = b".\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend\r\n"
    got = deliver(ctx, head(BASIC, body))  # smtplib doubles the leading dots on the wire
    assert got.endswith(body)
    assert_signed(ctx, got)


def test_message_at_the_size_limit(ctx):
    start = head(BASIC, b"")
    line = b"x" * 76 + b"\r\n"
    body = line * ((MAX_BYTES - len(start)) // len(line))
    body += b"y" * (MAX_BYTES - len(start) - len(body) - 2) + b"\r\n"
    msg = start + body
    assert len(msg) == MAX_BYTES
    got = deliver(ctx, msg)
    assert got.endswith(body)
    assert_signed(ctx, got)


def test_direct_txt_delegation(ctx):
    got = deliver(ctx, head(["From: news@direct.test", "To: bob@example.net", "Subject: direct"]),
                  sender="news@direct.test")
    assert_signed(ctx, got, domain="direct.test")


def test_no_delegation_no_signature(ctx):
    got = deliver(ctx, head(["From: news@none.test", "To: bob@example.net", "Subject: none"]),
                  sender="news@none.test")
    assert signatures(got) == []
    assert re.search(r"dkim .*from=news@none.test result=unsigned: d=none.test: s=r2048 not_delegated", ctx["m"].log())


def test_cname_to_another_key_no_signature(ctx):
    got = deliver(ctx, head(["From: news@otherkey.test", "To: bob@example.net", "Subject: other"]),
                  sender="news@otherkey.test")
    assert signatures(got) == []
    assert "d=otherkey.test: s=r2048 other_key, s=r4096 other_key, s=ed1 other_key" in ctx["m"].log()


def test_never_signs_for_a_domain_the_sender_may_not_use(ctx):
    """With MRS_CHECK_HEADER_FROM=off nothing stops a From: of another
    domain, but DKIM still signs only for a domain that authorizes this
    account, and never for the operator's key domain."""
    h, sink = ctx["h"], ctx["sink"]
    zone = ctx["zone"] + [ln for ln in records(h, ctx["keys"], list(SELECTORS), "victim.test") if " CNAME " in ln]
    dns = ZoneDns(h, zone)  # victim.test delegated its keys, but authorizes no one through us
    m = relay(h, dns, sink, ctx["keys"], SELECTORS, MRS_CHECK_HEADER_FROM="off")
    for frm in ("ceo@victim.test", f"noreply@{OP}", f"x@sub.{OP}"):
        n = len(sink.messages)
        send(m, "news@cname.test", head([f"From: {frm}", "To: bob@example.net", "Subject: spoof"]))
        got = sink.wait(n + 1)[n]["data"]
        assert signatures(got) == [], (frm, got[:2000])
    log = m.log()
    assert "d=victim.test not signed: the From: domain does not authorize this account" in log
    assert f"d={OP} not signed: the operator's DKIM domain is never signed for a customer" in log
    # and its own delegated domain is still signed with the check off
    n = len(sink.messages)
    send(m, "news@cname.test", head(BASIC))
    assert len(signatures(sink.wait(n + 1)[n]["data"])) == len(SELECTORS)


def test_signed_log_line_and_metrics(ctx):
    deliver(ctx, head(BASIC))
    log = ctx["m"].log()
    assert re.search(r"info dkim .*queue_id=\w+ .*result=signed: d=cname.test: s=r2048 signed \(rsa-sha256\), "
                     r"s=r4096 signed \(rsa-sha256\), s=ed1 signed \(ed25519-sha256\)", log)
    _, body = ctx["m"].http("GET", "/metrics")
    signed = re.search(r'mrs_dkim_signatures_total\{algorithm="ed25519-sha256",result="signed"\} (\d+)', body)
    assert signed and int(signed.group(1)) >= 1
    nd = re.search(r'mrs_dkim_signatures_total\{algorithm="rsa-sha256",result="not_delegated"\} (\d+)', body)
    assert nd is not None
    for r in ("dns_error", "error"):
        assert f'mrs_dkim_signatures_total{{algorithm="rsa-sha256",result="{r}"}}' in body


# --- tampering: both verifiers must fail ------------------------------------------

def test_tampered_subject_fails_both(ctx):
    got = deliver(ctx, head(BASIC))
    assert_signed(ctx, got)
    bad = got.replace(b"Subject: DKIM test", b"Subject: DKIM test!")
    assert bad != got
    for py, od, _ in verify_all(bad, ctx["dns"]):
        assert not py and not od


def test_added_from_fails_both(ctx):
    got = deliver(ctx, head(BASIC))
    i = got.index(b"Received:")
    bad = got[:i] + b"From: Boss <boss@cname.test>\r\n" + got[i:]
    for py, od, _ in verify_all(bad, ctx["dns"]):
        assert not py and not od


def test_changed_body_fails_both(ctx):
    got = deliver(ctx, head(BASIC, b"pay 10 EUR\r\n"))
    bad = got.replace(b"pay 10 EUR", b"pay 99 EUR")
    for py, od, _ in verify_all(bad, ctx["dns"]):
        assert not py and not od


# --- DNS failure ----------------------------------------------------------------------

def test_dns_timeout_no_signature_mail_accepted(ctx):
    h = ctx["h"]
    fake = DkimSilentDns(h, txt={"slow.test": [SPF_OK, token_for(USER)]})
    sink = h.sink()
    m = relay(h, fake, sink, ctx["keys"], SELECTORS, MRS_DNS_TIMEOUT="300ms", MRS_DNS_DEADLINE="900ms")
    send(m, "news@slow.test", head(["From: news@slow.test", "To: bob@example.net", "Subject: slow"]))
    got = sink.wait(1)[0]["data"]
    assert signatures(got) == []
    assert any("_domainkey.slow.test" in n for n in fake.names())
    assert re.search(r"warn dkim .*result=unsigned: d=slow.test: s=r2048 DNS timeout", m.log())
    _, body = m.http("GET", "/metrics")
    assert re.search(r'mrs_dkim_signatures_total\{algorithm="rsa-sha256",result="dns_error"\} 2', body)
    m.stop()


# --- spool, retries, rotation --------------------------------------------------------

def spooled_message(m):
    ids = [f for f in m.spool_files() if re.fullmatch(r"[0-9a-f]{20}", f)]
    assert len(ids) == 1, ids
    with open(os.path.join(m.spool, "queue", ids[0]), "rb") as f:
        data = f.read()
    env, _, msg = data.partition(b"\n\n")
    return env, msg


def wait_metric(m, pattern, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, body = m.http("GET", "/metrics")
        if re.search(pattern, body):
            return
        time.sleep(0.1)
    raise AssertionError(f"{pattern} not in /metrics")


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def test_rotation_reload_and_spooled_mail(ctx):
    h, keys, dns = ctx["h"], ctx["keys"], ctx["dns"]
    listfile = os.path.join(h.tmp, "dkim-keys.list")
    write(listfile, f"# the relay's keys\ned1:{keys['ed1']}\n")
    sink = h.sink(data_reply="451 4.3.0 try again later")
    m = relay(h, dns, sink, keys, (), MRS_DKIM_KEYS=None, MRS_DKIM_KEYS_FILE=listfile,
              MRS_RELOAD_INTERVAL="200ms", MRS_RETRY_MIN="1s", MRS_RETRY_MAX="1s")
    # 1. signed with the old key alone, then held in the spool (the sink defers)
    send(m, "news@cname.test", head(BASIC + ["Subject2: first"]))
    env, first = spooled_message(m)
    assert b"\npad " in env  # the head was written last: a pad line ends the envelope (docs/spool.md)
    assert [tag(s, "s") for s in signatures(first)] == ["ed1"]
    q = h.run([h.mrs_bin, "queue"], env={"MRS_SPOOL_DIR": m.spool})
    assert q.returncode == 0 and "news@cname.test" in q.stdout
    # 2. a second selector: a reload, and new mail carries both signatures
    write(listfile, f"ed1:{keys['ed1']}\ned2:{keys['ed2']}\n")
    wait_metric(m, r'mrs_config_reloads_total\{what="dkim",result="ok"\} 1')
    n = len(sink.messages)
    sink.data_reply = None
    send(m, "news@cname.test", head(BASIC + ["Subject2: second"]))
    # 3. a bad key file is refused; the keys in force stay
    with open(keys["ed2"] + ".bad", "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    write(listfile, f"ed1:{keys['ed1']}\ned2:{keys['ed2']}.bad\n")
    wait_metric(m, r'mrs_config_reloads_total\{what="dkim",result="error"\} 1')
    assert "DKIM keys not reloaded (changed on disk), the old ones stay" in m.log()
    # 4. the old key removed
    write(listfile, f"ed2:{keys['ed2']}\n")
    wait_metric(m, r'mrs_config_reloads_total\{what="dkim",result="ok"\} 2')
    send(m, "news@cname.test", head(BASIC + ["Subject2: third"]))
    msgs = sink.wait(n + 3, timeout=60)
    by = {re.search(rb"Subject2: (\w+)", x["data"]).group(1): x["data"] for x in msgs}
    assert by[b"first"] == first  # retried as spooled, byte for byte: never signed again
    assert [tag(s, "s") for s in signatures(by[b"first"])] == ["ed1"]
    assert [tag(s, "s") for s in signatures(by[b"second"])] == ["ed1", "ed2"]
    assert [tag(s, "s") for s in signatures(by[b"third"])] == ["ed2"]
    for name in (b"first", b"second", b"third"):
        for py, od, why in verify_all(by[name], dns):
            assert py and od, (name, why)
    m.stop()


# --- configuration, subcommands, check-domain ------------------------------------------

def test_bad_keys_stop_the_start(ctx):
    h, keys = ctx["h"], ctx["keys"]
    weak = os.path.join(h.tmp, "rsa1024.pem")
    ec = os.path.join(h.tmp, "ec.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", weak],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec],
                   check=True, capture_output=True)
    cases = [("bad_selector:x", "s_1:" + keys["ed1"], 2, "MRS_DKIM_KEYS: invalid value"),
             ("no path", "s1:", 2, "MRS_DKIM_KEYS: invalid value"),
             ("twice", f"s1:{keys['ed1']},S1:{keys['ed2']}", 2, "MRS_DKIM_KEYS: invalid value"),
             ("nine", ",".join(f"s{i}:{keys['ed1']}" for i in range(9)), 2, "MRS_DKIM_KEYS: invalid value"),
             ("missing", "s1:/nonexistent/key.pem", 1, "MRS_DKIM_KEYS: key s1:/nonexistent/key.pem: cannot read it"),
             ("weak", f"s1:{weak}", 1, "an RSA key of 1024 bits"),
             ("ec", f"s1:{ec}", 1, "DKIM signs with RSA or Ed25519 keys only")]
    for name, value, code, text in cases:
        m = h.mrs(env={"MRS_DKIM_KEYS": value}, start=False)
        r = subprocess.run([h.mrs_bin, "serve"], env=m.env, capture_output=True, text=True, timeout=30)
        assert r.returncode == code, (name, r.returncode, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)


def test_keygen_output_is_read_by_openssl(ctx):
    h = ctx["h"]
    for kind, ossl in (("ed25519", "ED25519 Private-Key"), ("rsa", "Private-Key: (2048 bit")):
        r = run(h, [h.mrs_bin, "dkim-keygen", kind])
        assert r.returncode == 0 and r.stdout.startswith("-----BEGIN")
        o = subprocess.run(["openssl", "pkey", "-noout", "-text"], input=r.stdout, capture_output=True, text=True)
        assert o.returncode == 0 and ossl in o.stdout, o.stderr
    assert run(h, [h.mrs_bin, "dkim-keygen", "dsa"]).returncode == 2
    # the public key mrs publishes is the one OpenSSL derives from the file
    r = run(h, [h.mrs_bin, "dkim-records"], env={"MRS_DKIM_KEYS": "k:" + ctx["keys"]["ed2"]})
    pub = subprocess.run(["openssl", "pkey", "-in", ctx["keys"]["ed2"], "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout[-32:]
    import base64
    assert f'k._domainkey.elastx.email TXT "v=DKIM1; k=ed25519; p={base64.b64encode(pub).decode()}"' in r.stdout
    assert "k._domainkey.<customer-domain> CNAME k._domainkey.elastx.email" in r.stdout


def test_records_split_long_rsa_value(ctx):
    h = ctx["h"]
    r = run(h, [h.mrs_bin, "dkim-records", "Shop.Example"], env={"MRS_DKIM_KEYS": "r4096:" + ctx["keys"]["r4096"],
                                                                  "MRS_DKIM_DOMAIN": OP})
    assert r.returncode == 0
    txt = [ln for ln in r.stdout.splitlines() if " TXT " in ln and not ln.startswith(";")][0]
    parts = re.findall(r'"([^"]*)"', txt)
    assert len(parts) == 3, (txt, [len(p) for p in parts])
    assert all(len(p) <= 255 for p in parts) and len(parts[0]) == 255
    assert f"r4096._domainkey.shop.example CNAME r4096._domainkey.{OP}" in r.stdout
    assert run(h, [h.mrs_bin, "dkim-records"]).returncode == 1  # no keys configured


def test_check_domain_reports_each_selector(ctx):
    h, m = ctx["h"], ctx["m"]
    env = {"MRS_DNS_SERVERS": ctx["dns"].server, "MRS_DKIM_KEYS": key_list(ctx["keys"], SELECTORS),
           "MRS_DKIM_DOMAIN": OP}
    r = run(h, [h.mrs_bin, "check-domain", USER, "cname.test"], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DKIM: cname.test has delegated all 3 signing key(s)" in r.stdout
    assert "r4096._domainkey.cname.test (rsa-sha256): delegated" in r.stdout
    r = run(h, [h.mrs_bin, "check-domain", USER, "none.test"], env=env)
    assert r.returncode == 0  # DKIM never changes the verdict
    assert f"ed1._domainkey.none.test CNAME ed1._domainkey.{OP}" in r.stdout
    import json
    code, body = m.http("GET", "/check?user=alice%40customer.test&domain=otherkey.test")
    j = json.loads(body)
    assert code == 200 and j["result"] == "authorized"
    dk = j["dkim"]
    assert dk["ok"] is False and set(dk) >= {"ok", "text", "publish", "change_from", "hint", "note", "selectors"}
    assert [s["status"] for s in dk["selectors"]] == ["other_key"] * 3
    assert dk["publish"].splitlines()[0] == f"r2048._domainkey.otherkey.test CNAME r2048._domainkey.{OP}"
    code, body = m.http("GET", "/check?user=alice%40customer.test&domain=direct.test")
    j = json.loads(body)
    assert j["dkim"]["ok"] is True and all(s["ok"] for s in j["dkim"]["selectors"])


def test_bdat_message_signed_like_data(ctx):
    """CHUNKING (RFC 3030): the chunks feed the same reader as DATA, so the
    signatures cover the same bytes; chunks cut inside a CRLF and a UTF-8
    character, and the lines that start with a dot are data (no unstuffing)."""
    body = "Grüße\r\n.a dot line\r\n..two\r\n".encode()
    msg = head(BASIC + ["Date: Thu, 03 Dec 2026 10:00:00 +0000", "Message-ID: <c1@cname.test>"], body)
    cuts = [msg.index(b"\r\n") + 1, msg.index("ü".encode()) + 1, len(msg) - 3]
    pieces = [msg[a:b] for a, b in zip([0] + cuts, cuts + [len(msg)])]
    sink = ctx["sink"]
    n = len(sink.messages)
    s = ctx["m"].smtp(login=(USER, PW))
    try:
        assert s.mail("news@cname.test", ["BODY=BINARYMIME"])[0] == 250
        assert s.rcpt("bob@example.net")[0] == 250
        s.send(b"".join(b"BDAT %d%s\r\n" % (len(p), b" LAST" if i == len(pieces) - 1 else b"") + p
                        for i, p in enumerate(pieces)))
        for _ in pieces:
            code, text = s.getreply()
        assert code == 250 and b"queued as" in text, text
    finally:
        s.quit()
    got = sink.wait(n + 1)[n]["data"]
    assert got.endswith(msg)
    assert_signed(ctx, got)
