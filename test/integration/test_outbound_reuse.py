"""Outbound connection reuse, PIPELINING and TLS session resumption
(SPEC §5, issue 11 item 5).

The receiving servers are a small raw SMTP server written here (aiosmtpd
cannot tell which commands arrived together, nor count connections): it
records every connection, the commands in the order they came, which of
them arrived in one read before any reply was sent (PIPELINING), whether
the client said QUIT, and for STARTTLS whether the TLS session was resumed
(Python's ssl, server side).  The relay reaches them as the smarthost or
as MX hosts that the real DNS server (unbound) names.

Every relay here runs one delivery thread, so the messages go one after
the other and the connection counts are exact; the idle timeout is long
(60s) unless a test is about it, so no count depends on timing."""
import email
import email.policy
import os
import signal
import socket
import ssl
import threading
import time
import tempfile
import uuid

import test_mta_sts as sts
from harness import SPF_OK, common_port, free_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
SENDER = "alice@customer.test"

SMART = "127.0.0.61"      # the smarthost (each test its own port)
MX_AB = "127.0.0.62"      # mx.a.test and mx.b.test: one address, two names
MX_C = "127.0.0.63"       # mx.c.test
BOUNCES = "127.0.0.64"    # customer.test's own MX
MX_P = "127.0.0.65"       # mx.p.test: the MX of enf.test (MTA-STS enforce) and of opp.test (no policy)
POLICY = "127.0.0.66"     # mta-sts.enf.test

ZONE = [
    f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"',
    "customer.test. MX 10 mx.customer.test.", f"mx.customer.test. A {BOUNCES}",
    "smart.test. A " + SMART,
    "a.test. MX 10 mx.a.test.", f"mx.a.test. A {MX_AB}",
    "b.test. MX 10 mx.b.test.", f"mx.b.test. A {MX_AB}",
    "c.test. MX 10 mx.c.test.", f"mx.c.test. A {MX_C}",
    "enf.test. MX 10 mx.p.test.", "opp.test. MX 10 mx.p.test.", f"mx.p.test. A {MX_P}",
    '_mta-sts.enf.test. 0 TXT "v=STSv1; id=1;"', f"mta-sts.enf.test. A {POLICY}",
]


class Conn:
    """What one connection to RawSink carried."""

    def __init__(self, n):
        self.n = n
        self.commands = []      # verbs ("EHLO", "MAIL", "RCPT", "DATA", "QUIT", …) in order
        self.batches = []       # the verbs of each read that held commands
        self.rcpts = []         # every RCPT address
        self.tls = False
        self.resumed = None     # after STARTTLS: ssl's session_reused
        self.quit = False
        self.transactions = 0   # messages taken (250 to the end of data)
        self.data_bytes = b""   # every byte received after a 354


class RawSink:
    """A receiving SMTP server, one thread per connection (see the top).

    pipelining: offer PIPELINING.  cert: offer STARTTLS with (cert, key).
    rcpt_replies: address -> reply line.  close_after_message: close the
    connection right after the 250 to the end of data (a server that drops
    idle clients).  refuse_second_mail: a second MAIL on one connection gets
    421 and the connection is closed.  out_of_step: a server that breaks RFC
    2920: the first MAIL it ever sees gets 550, the RCPTs sent with it 250
    and the DATA after them 354 (it is now reading a message).
    extra_reply: after the 250 to the end of data, one more (unasked) reply
    line, in the same write.  starttls_extra: bytes sent in plaintext in the
    same write as the 220 to STARTTLS (a response injection)."""

    def __init__(self, h, addr, port=None, pipelining=False, cert=None, rcpt_replies=None,
                 close_after_message=False, refuse_second_mail=False, out_of_step=False, extra_reply=None,
                 starttls_extra=b""):
        self.addr = addr
        self.port = port or free_port(addr)
        self.pipelining = pipelining
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.close_after_message = close_after_message
        self.refuse_second_mail = refuse_second_mail
        self.out_of_step = out_of_step
        self.extra_reply = extra_reply
        self.starttls_extra = starttls_extra
        self.mails = 0
        self.tls = None
        if cert:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(cert[0], cert[1])
        self.conns = []
        self.messages = []      # (conn number, mail from, [rcpts], data bytes)
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, self.port))
        self.sock.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        h.sinks.append(self)

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                c = Conn(len(self.conns))
                self.conns.append(c)
                self.cond.notify_all()
            threading.Thread(target=self._serve, args=(s, c), daemon=True).start()

    def _serve(self, s, c):
        s.settimeout(120)
        try:
            self._session(s, c)
        except (OSError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.cond:
                self.cond.notify_all()

    def _session(self, s, c):
        s.sendall(b"220 sink.test ESMTP\r\n")
        buf = b""
        mail_from, rcpts, data = None, [], None
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
            if data is not None:
                with self.cond:
                    c.data_bytes += chunk
            verbs = []
            while True:
                if data is not None:
                    end = buf.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    data += buf[:end + 2]
                    buf = buf[end + 5:]
                    with self.cond:
                        self.messages.append((c.n, mail_from, list(rcpts), data))
                        c.transactions += 1
                        self.cond.notify_all()
                    data, mail_from, rcpts = None, None, []
                    extra = (self.extra_reply + "\r\n").encode() if self.extra_reply else b""
                    s.sendall(b"250 2.0.0 queued\r\n" + extra)
                    if self.close_after_message:
                        return
                    continue
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                line, buf = buf[:nl].decode("utf-8", "replace"), buf[nl + 2:]
                verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                verbs.append(verb)
                with self.cond:
                    c.commands.append(verb)
                if verb in ("EHLO", "HELO"):
                    ext = ["sink.test", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 100000000"]
                    if self.pipelining:
                        ext.append("PIPELINING")
                    if self.tls and not c.tls:
                        ext.append("STARTTLS")
                    s.sendall("".join(f"250-{e}\r\n" for e in ext[:-1]).encode() + f"250 {ext[-1]}\r\n".encode())
                elif verb == "STARTTLS" and self.tls and not c.tls:
                    s.sendall(b"220 2.0.0 go ahead\r\n" + self.starttls_extra)
                    s = self.tls.wrap_socket(s, server_side=True)
                    c.tls, c.resumed, buf = True, s.session_reused, b""
                    break
                elif verb == "MAIL":
                    if self.refuse_second_mail and c.transactions >= 1:
                        s.sendall(b"421 4.3.2 closing idle connection\r\n")
                        return
                    mail_from, rcpts = line[line.find("<") + 1:line.find(">")], []
                    self.mails += 1
                    if self.out_of_step and self.mails == 1:
                        s.sendall(b"550 5.7.1 not from you\r\n")
                    else:
                        s.sendall(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    addr = line[line.find("<") + 1:line.find(">")]
                    with self.cond:
                        c.rcpts.append(addr)
                    reply = self.rcpt_replies.get(addr.lower())
                    if reply:
                        s.sendall(reply.encode() + b"\r\n")
                    else:
                        rcpts.append(addr)
                        s.sendall(b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    if not rcpts and not self.out_of_step:
                        s.sendall(b"554 5.5.1 no valid recipients\r\n")
                    else:
                        data = b""
                        s.sendall(b"354 go ahead\r\n")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    s.sendall(b"250 2.0.0 ok\r\n")
                elif verb == "NOOP":
                    s.sendall(b"250 2.0.0 ok\r\n")
                elif verb == "QUIT":
                    with self.cond:
                        c.quit = True
                    s.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    s.sendall(b"502 5.5.2 not here\r\n")
            if verbs:
                with self.cond:
                    c.batches.append(verbs)

    # --- for the tests ---------------------------------------------------
    def wait_messages(self, token, count=1, timeout=30.0):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [m for m in self.messages if token.encode() in m[3]]
                if len(got) >= count:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{len(got)} of {count} messages with {token} at {self.addr}")
                self.cond.wait(left)

    def wait_quit(self, n, timeout=30.0):
        deadline = time.time() + timeout
        with self.cond:
            while not (n < len(self.conns) and self.conns[n].quit):
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"connection {n} to {self.addr} never got QUIT")
                self.cond.wait(left)


def setup(h):
    dns = h.dns(ZONE)
    port = common_port([MX_AB, MX_C, BOUNCES, MX_P])
    bounces = RawSink(h, BOUNCES, port)
    d = tempfile.mkdtemp(prefix="reuse-", dir=h.tmp)
    ca = sts.make_ca(d)
    https_port = free_port(POLICY)
    policy = sts.PolicyServer(POLICY, https_port, sts.issue(d, ca, ["mta-sts.enf.test"], "policy"))
    policy.answers["mta-sts.enf.test"] = {"body": sts.enforce("mx.p.test")}
    return {"h": h, "dns": dns, "port": port, "bounces": bounces, "ca": ca, "dir": d, "https_port": https_port,
            "policy": policy}


def teardown(ctx):
    ctx["policy"].stop()


def relay(ctx, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx["port"]), "MRS_DELIVERY_THREADS": "1", "MRS_RETRY_MIN": "1h",
            "MRS_RETRY_MAX": "2h", "MRS_DELIVERY_CONNECT_TIMEOUT": "3s", "MRS_DELIVERY_COMMAND_TIMEOUT": "10s",
            "MRS_DELIVERY_IDLE_TIMEOUT": "60s"}
    base.update(env)
    return ctx["h"].mrs(dns=ctx["dns"], env=base, users={USER: PW})


def smarthost(sink, tls="none", **env):
    return dict(MRS_SMARTHOST=f"smart.test:{sink.port}", MRS_SMARTHOST_TLS=tls, **env)


def token():
    return "t-" + uuid.uuid4().hex[:16]


def message(tok, to):
    return (f"From: Alice <{SENDER}>\r\nTo: <{to}>\r\nSubject: {tok}\r\n"
            f"Message-ID: <{tok}@customer.test>\r\n\r\nHello {tok}.\r\n").encode()


def submit(m, rcpts, tok):
    s = m.smtp(login=(USER, PW))
    try:
        assert not s.sendmail(SENDER, rcpts, message(tok, rcpts[0]))
    finally:
        s.quit()


def metric(m, name):
    code, text = m.http("GET", "/metrics")
    assert code == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_spool_empty(m, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not m.spool_files():
            return
        time.sleep(0.05)
    raise AssertionError(f"spool still holds {m.spool_files()}")


def wait_log(m, text, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in m.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"log never showed {text!r}:\n" + m.log()[-3000:])


# ---- reuse ------------------------------------------------------------------------

def test_messages_to_the_smarthost_share_one_connection(ctx):
    sink = RawSink(ctx["h"], SMART)
    m = relay(ctx, **smarthost(sink))
    try:
        toks = [token() for _ in range(6)]
        for t in toks:
            submit(m, [f"x@{t}.example"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 1, [c.commands for c in sink.conns]
        c = sink.conns[0]
        assert c.transactions == 6 and not c.quit, c.commands
        assert c.commands.count("EHLO") == 1, c.commands
        # no PIPELINING offered: one command per read, as before
        assert all(len(b) == 1 for b in c.batches), c.batches
        assert metric(m, 'mrs_outbound_connections_total{reused="no"}') == 1
        assert metric(m, 'mrs_outbound_connections_total{reused="yes"}') == 5
        assert m.log().count("connection reused") == 5
    finally:
        m.stop()


def test_reuse_off_opens_a_connection_per_message(ctx):
    sink = RawSink(ctx["h"], SMART)
    m = relay(ctx, MRS_DELIVERY_CONNECTION_REUSE="off", **smarthost(sink))
    try:
        toks = [token() for _ in range(3)]
        for t in toks:
            submit(m, [f"x@{t}.example"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 3 and all(c.transactions == 1 for c in sink.conns)
        assert metric(m, 'mrs_outbound_connections_total{reused="yes"}') == 0
    finally:
        m.stop()


def test_two_destinations_never_share_a_connection(ctx):
    """mx.a.test and mx.b.test are one address: each name gets its own
    connection, and each connection carries its own domain's mail only."""
    sink = RawSink(ctx["h"], MX_AB, ctx["port"])
    m = relay(ctx)
    try:
        toks = [(token(), d) for d in ("a", "b", "a", "b", "a")]
        for t, d in toks:
            submit(m, [f"x@{d}.test"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 2, [c.rcpts for c in sink.conns]
        domains = [{r.split("@")[1] for r in c.rcpts} for c in sink.conns]
        assert sorted(map(sorted, domains)) == [["a.test"], ["b.test"]], domains
        assert sorted(c.transactions for c in sink.conns) == [2, 3]
    finally:
        m.stop()


def no_deferral(m):
    log = m.log()
    assert "result=deferred" not in log, log[-3000:]
    assert metric(m, 'mrs_deliveries_total{outcome="deferred"}') == 0


def test_server_that_drops_idle_connections_loses_nothing(ctx):
    sink = RawSink(ctx["h"], SMART, close_after_message=True)
    m = relay(ctx, **smarthost(sink))
    try:
        toks = [token() for _ in range(3)]
        for t in toks:
            submit(m, [f"x@{t}.example"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 3 and all(c.transactions == 1 for c in sink.conns)
        no_deferral(m)
        assert m.log().count("the idle connection is gone") == 2, m.log()[-3000:]
    finally:
        m.stop()


def test_421_on_a_reused_connection_opens_a_new_one(ctx):
    sink = RawSink(ctx["h"], SMART, refuse_second_mail=True)
    m = relay(ctx, **smarthost(sink))
    try:
        toks = [token() for _ in range(3)]
        for t in toks:
            submit(m, [f"x@{t}.example"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 3 and all(c.transactions == 1 for c in sink.conns)
        assert [c.commands.count("MAIL") for c in sink.conns] == [2, 2, 1], [c.commands for c in sink.conns]
        no_deferral(m)
    finally:
        m.stop()


def test_idle_connection_closed_with_quit_after_the_idle_timeout(ctx):
    sink = RawSink(ctx["h"], SMART)
    m = relay(ctx, MRS_DELIVERY_IDLE_TIMEOUT="1s", **smarthost(sink))
    try:
        t1 = token()
        submit(m, ["x@one.example"], t1)
        sink.wait_messages(t1)
        sink.wait_quit(0)
        wait_log(m, "idle outbound connection(s) closed: MRS_DELIVERY_IDLE_TIMEOUT")
        assert m.proc.alive()
        t2 = token()
        submit(m, ["x@two.example"], t2)
        sink.wait_messages(t2)
        assert len(sink.conns) == 2 and sink.conns[1].transactions == 1
    finally:
        m.stop()


def test_idle_connections_closed_with_quit_at_shutdown(ctx):
    sink = RawSink(ctx["h"], SMART)
    m = relay(ctx, **smarthost(sink))
    t = token()
    submit(m, ["x@one.example"], t)
    sink.wait_messages(t)
    wait_spool_empty(m)
    assert not sink.conns[0].quit  # idle, kept
    rc = m.stop(signal.SIGTERM)
    assert rc == 0, rc
    sink.wait_quit(0)
    assert "1 idle outbound connection(s) closed" in m.log()


# ---- PIPELINING -------------------------------------------------------------------------

def bounce_texts(ctx, tok, timeout=30.0):
    got = ctx["bounces"].wait_messages(tok, 1, timeout)
    assert len(got) == 1, got
    _, frm, rcpts, data = got[0]
    assert frm == "" and rcpts == [SENDER], (frm, rcpts)
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    groups = msg.get_payload()[1].get_payload()
    return {str(g["Final-Recipient"]).split(";", 1)[1].strip(): g for g in groups[1:]}


def test_pipelining_sends_mail_rcpt_data_together_and_keeps_partial_refusals(ctx):
    sink = RawSink(ctx["h"], MX_C, ctx["port"], pipelining=True,
                   rcpt_replies={"no@c.test": "550 5.1.1 no such user"})
    m = relay(ctx)
    try:
        t = token()
        submit(m, ["yes1@c.test", "no@c.test", "yes2@c.test"], t)
        got = sink.wait_messages(t)
        assert got[0][2] == ["yes1@c.test", "yes2@c.test"], got
        groups = bounce_texts(ctx, t)
        assert list(groups) == ["no@c.test"], list(groups)
        assert "5.1.1" in str(groups["no@c.test"]["Status"])
        c = sink.conns[0]
        assert ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"] in c.batches, c.batches
        # all refused: DATA gets 554 and no byte of the message is sent
        t2 = token()
        submit(m, ["no@c.test"], t2)
        assert list(bounce_texts(ctx, t2)) == ["no@c.test"]
        assert not [x for x in sink.messages if t2.encode() in x[3]]
        assert len(sink.conns) == 1 and c.batches[-1] == ["MAIL", "RCPT", "DATA"], c.batches
        # and the next message still goes through on it
        t3 = token()
        submit(m, ["yes1@c.test"], t3)
        sink.wait_messages(t3)
        # the transaction DATA refused may still be open: RSET first
        assert len(sink.conns) == 1 and c.commands[-4:] == ["RSET", "MAIL", "RCPT", "DATA"], c.commands
    finally:
        m.stop()


# ---- TLS ---------------------------------------------------------------------------------

def test_pipelined_refused_mail_with_354_to_data_is_never_parked(ctx):
    """A server out of step (MAIL refused, yet DATA answered 354) is
    reading a message: the connection must be dropped, not parked, or the
    next message's commands would become that message's text."""
    sink = RawSink(ctx["h"], SMART, pipelining=True, out_of_step=True)
    m = relay(ctx, **smarthost(sink))
    try:
        t1, t2 = token(), token()
        submit(m, [f"x@{t1}.example"], t1)
        wait_log(m, "not from you")
        submit(m, [f"y@{t2}.example"], t2)
        got = sink.wait_messages(t2)
        first = sink.conns[0]
        assert first.commands[-1] == "DATA", first.commands
        assert first.data_bytes == b"", first.data_bytes
        assert not first.quit
        # the second connection carries t2 (and t1's bounce: the smarthost takes all)
        assert got[0][0] == 1 and len(sink.conns) == 2, [c.commands for c in sink.conns]
    finally:
        m.stop()


def test_reply_sent_unasked_keeps_a_connection_from_reuse(ctx):
    """A reply the server sent after the transaction, unasked, would be
    read as the answer to the next message's first command and shift every
    reply after it onto the wrong command (a refusal read as an
    acceptance).  A parked connection with unread input is not reused."""
    sink = RawSink(ctx["h"], SMART, extra_reply="250 2.0.0 and one more thing")
    m = relay(ctx, **smarthost(sink))
    try:
        t1, t2 = token(), token()
        submit(m, [f"x@{t1}.example"], t1)
        sink.wait_messages(t1)
        wait_spool_empty(m)
        submit(m, [f"y@{t2}.example"], t2)
        got = sink.wait_messages(t2)
        wait_spool_empty(m)
        assert got[0][0] == 1, [c.commands for c in sink.conns]
        assert sink.conns[0].commands.count("MAIL") == 1, sink.conns[0].commands
        assert "unread input" in m.log()
    finally:
        m.stop()


def test_starttls_smarthost_session_is_resumed_on_the_next_connection(ctx):
    cert = ctx["h"].self_signed("smart.test")
    sink = RawSink(ctx["h"], SMART, cert=cert)
    m = relay(ctx, MRS_DELIVERY_IDLE_TIMEOUT="1s", **smarthost(sink, "starttls", MRS_SMARTHOST_CA_FILE=cert[0]))
    try:
        t1 = token()
        submit(m, ["x@one.example"], t1)
        sink.wait_messages(t1)
        sink.wait_quit(0)  # closed idle: the next message needs a new connection
        t2 = token()
        submit(m, ["x@two.example"], t2)
        sink.wait_messages(t2)
        assert len(sink.conns) == 2
        assert sink.conns[0].tls and sink.conns[0].resumed is False
        assert sink.conns[1].tls and sink.conns[1].resumed is True
        wait_spool_empty(m)
        assert m.log().count("certificate verified") >= 2
    finally:
        m.stop()


def test_plaintext_sent_with_the_starttls_reply_is_not_read_under_tls(ctx):
    """The receiving server's plaintext after its 220 to STARTTLS (the
    response-injection class of CVE-2011-0411) is dropped with the 220:
    the EHLO after the handshake gets the reply that came through TLS, not
    the injected refusal."""
    cert = ctx["h"].self_signed("smart.test")
    sink = RawSink(ctx["h"], SMART, cert=cert,
                   starttls_extra=b"554 5.7.1 injected before TLS\r\n250 2.1.0 injected ok\r\n")
    m = relay(ctx, **smarthost(sink, "starttls", MRS_SMARTHOST_CA_FILE=cert[0]))
    try:
        t = token()
        submit(m, ["x@inject.example"], t)
        sink.wait_messages(t)
        wait_spool_empty(m)
        c = sink.conns[0]
        assert c.tls and c.commands[:5] == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT"], c.commands
        assert "injected" not in m.log()
    finally:
        m.stop()


def test_sessions_under_different_tls_policies_are_kept_apart(ctx):
    """enf.test (MTA-STS enforce) and opp.test (no policy) share their MX
    host: a session set up opportunistically never carries enf.test's mail
    and the other way round; each policy reuses its own."""
    sink = RawSink(ctx["h"], MX_P, ctx["port"], cert=sts.issue(ctx["dir"], ctx["ca"], ["mx.p.test"], "mx"))
    m = relay(ctx, MRS_MTA_STS_PORT=str(ctx["https_port"]), MRS_OUTBOUND_CA_FILE=ctx["ca"][0])
    try:
        toks = [(token(), d) for d in ("opp", "enf", "opp", "enf", "opp")]
        for t, d in toks:
            submit(m, [f"x@{d}.test"], t)
            sink.wait_messages(t)
        wait_spool_empty(m)
        assert len(sink.conns) == 2, [c.rcpts for c in sink.conns]
        domains = [{r.split("@")[1] for r in c.rcpts} for c in sink.conns]
        assert sorted(map(sorted, domains)) == [["enf.test"], ["opp.test"]], domains
        assert all(c.tls for c in sink.conns)
        assert metric(m, 'mrs_outbound_tls_total{policy="mta-sts-enforce",result="verified"}') == 2
        assert metric(m, 'mrs_outbound_tls_total{policy="opportunistic",result="verified"}') == 3
    finally:
        m.stop()
