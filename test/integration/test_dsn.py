"""Delivery status notifications (SPEC §8.4, RFC 3461/3464, issue 13): the
built relay takes RET/ENVID/NOTIFY/ORCPT from a real client (smtplib),
honours them in its own reports, passes them on to a next hop that offers
DSN (an aiosmtpd sink that advertises it and records what it got) and not
to one that does not (aiosmtpd's default, which refuses them with 555),
and sends one delay notice per message after MRS_DELAY_WARNING.  Reports
reach the sender's MX (another sink) and are parsed with Python's email
package, field by field."""
import email
import email.policy
import os
import random
import re
import signal
import smtplib
import threading
import time
import uuid

from harness import SPF_OK, free_port, token_for

USER = ("alice@customer.test", "alice-secret")
SENDER = "alice@customer.test"
DSN_KEYS = ("RET", "ENVID", "NOTIFY", "ORCPT")

ZONE = [
    f'customer.test. TXT "{SPF_OK}"',
    f'customer.test. TXT "{token_for(USER[0])}"',
    "customer.test. MX 10 mx.customer.test.", "mx.customer.test. A 127.0.0.40",
    "plain.test. MX 10 mx.plain.test.", "mx.plain.test. A 127.0.0.41",
    "dsn.test. MX 10 mx.dsn.test.", "mx.dsn.test. A 127.0.0.42",
    "slow.test. MX 10 mx.slow.test.", "mx.slow.test. A 127.0.0.43",
]


class DsnSink:
    """An aiosmtpd server that, with advertise, lists DSN in its EHLO reply
    and takes RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT, recording them as
    sent (case kept); without it, aiosmtpd refuses them (555).  Counts the
    RCPT commands per address (delivery attempts) and records messages."""

    def __init__(self, h, addr, port, advertise, rcpt_replies=None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        self.addr, self.port = addr, port
        self.messages, self.attempts = [], {}
        self.rcpt_replies = dict(rcpt_replies or {})
        self.cond = threading.Condition()
        sink = self

        def split(arg):
            head, sep, tail = arg.partition(">")
            keep, got = [], {}
            for tok in tail.split():
                k, _, v = tok.partition("=")
                if k.upper() in DSN_KEYS:
                    got[k.upper()] = v
                else:
                    keep.append(tok)
            return head + sep + "".join(" " + k for k in keep), got

        class Server(SMTP):
            async def smtp_MAIL(self, arg):
                self.dsn_mail, self.dsn_rcpts = {}, {}
                if arg and advertise:
                    arg, self.dsn_mail = split(arg)
                await super().smtp_MAIL(arg)

            async def smtp_RCPT(self, arg):
                if arg and advertise:
                    arg, got = split(arg)
                    m = re.search(r"<([^>]*)>", arg)
                    if m:
                        self.dsn_rcpts[m.group(1).lower()] = got
                await super().smtp_RCPT(arg)

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                session.host_name = hostname
                if advertise:
                    responses.insert(len(responses) - 1, "250-DSN")
                return responses

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                with sink.cond:
                    sink.attempts[address.lower()] = sink.attempts.get(address.lower(), 0) + 1
                    sink.cond.notify_all()
                reply = sink.rcpt_replies.get(address.lower())
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                with sink.cond:
                    sink.messages.append({
                        "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                        "data": envelope.original_content or envelope.content,
                        "mail_params": dict(getattr(server, "dsn_mail", {})),
                        "rcpt_params": dict(getattr(server, "dsn_rcpts", {}))})
                    sink.cond.notify_all()
                return "250 2.0.0 OK queued"

        class Ctl(Controller):
            def factory(self):
                return Server(self.handler, **self.SMTP_kwargs)

        self.controller = Ctl(Handler(), hostname=addr, port=port, server_hostname=addr, decode_data=False)
        self.controller.start()
        h.sinks.append(self)

    def wait_attempts(self, addr, count, timeout=30.0):
        deadline = time.time() + timeout
        with self.cond:
            while self.attempts.get(addr, 0) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{self.attempts.get(addr, 0)} of {count} attempts for {addr}")
                self.cond.wait(left)
            return self.attempts[addr]

    def stop(self):
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001
            pass


class Ctx:
    pass


def setup(h):
    ctx = Ctx()
    ctx.h = h
    ctx.dns = h.dns(ZONE)
    ctx.port = free_port("127.0.0.40")
    ctx.senders = DsnSink(h, "127.0.0.40", ctx.port, advertise=False)
    ctx.plain = DsnSink(h, "127.0.0.41", ctx.port, advertise=False,
                        rcpt_replies={"bad@plain.test": "550 5.1.1 no such user here"})
    ctx.dsn = DsnSink(h, "127.0.0.42", ctx.port, advertise=True,
                      rcpt_replies={"bad@dsn.test": "550 5.1.1 no such user here"})
    ctx.slow = DsnSink(h, "127.0.0.43", ctx.port, advertise=False)
    ctx.relay_cert = h.self_signed("mrs.test")
    return ctx


def teardown(ctx):
    pass


# ---- helpers ---------------------------------------------------------------

def relay(ctx, spool=None, start=True, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx.port), "MRS_RETRY_MIN": "1s", "MRS_RETRY_MAX": "2s",
            "MRS_DELIVERY_CONNECT_TIMEOUT": "3s", "MRS_TLS_CERT": ctx.relay_cert[0],
            "MRS_TLS_KEY": ctx.relay_cert[1]}
    base.update(env)
    return ctx.h.mrs(dns=ctx.dns, env=base, spool=spool, start=start)


def new_token():
    return "t-" + uuid.uuid4().hex[:16]


def message(token, to, body="Hello, this is the body text.\r\n"):
    return (f"From: Alice <{SENDER}>\r\nTo: <{to}>\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@customer.test>\r\n\r\n{body}").encode()


def submit(m, rcpt, token, mail_options=(), rcpt_options=(), body=None):
    s = m.smtp(login=USER)
    try:
        s.mail(SENDER, list(mail_options))
        code, text = s.rcpt(rcpt, list(rcpt_options))
        assert code == 250, (code, text)
        code, text = s.data(message(token, rcpt, **({"body": body} if body else {})))
        assert code == 250, (code, text)
        return text.decode().split()[-1]  # the queue id
    finally:
        s.quit()


def msgs(sink, token):
    with sink.cond:
        return [x for x in sink.messages if token.encode() in x["data"]]


def wait_msgs(sink, token, count=1, timeout=20.0):
    deadline = time.time() + timeout
    with sink.cond:
        while True:
            got = [x for x in sink.messages if token.encode() in x["data"]]
            if len(got) >= count:
                return got
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"{len(got)} of {count} message(s) with {token} at {sink.addr}")
            sink.cond.wait(left)


def wait_log(m, text, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in m.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"log never showed {text!r}:\n" + m.log()[-3000:])


def report_for(ctx, token, timeout=20.0):
    """The one report that came back to the sender's MX for token, parsed:
    (message, per-message fields, {recipient: fields})."""
    got = wait_msgs(ctx.senders, token, 1, timeout)
    assert len(got) == 1, f"{len(got)} reports for one message"
    r = got[0]
    assert r["mail_from"] in ("", "<>"), r["mail_from"]
    assert r["rcpt_tos"] == [SENDER], r["rcpt_tos"]
    msg = email.message_from_bytes(r["data"], policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert parts[1].get_content_type() == "message/delivery-status"
    groups = parts[1].get_payload()
    per_rcpt = {}
    for g in groups[1:]:
        per_rcpt[g["Final-Recipient"].split(";", 1)[1].strip()] = dict(g.items())
    return msg, dict(groups[0].items()), per_rcpt


def metric(m, name):
    code, text = m.http("GET", "/metrics")
    assert code == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def queue_line(m, qid):
    """The log lines about queue id qid."""
    return [line for line in m.log().splitlines() if qid in line]


# ---- the SMTP side -----------------------------------------------------------

def test_ehlo_lists_dsn_after_tls_only(ctx):
    m = relay(ctx)
    try:
        s = smtplib.SMTP("127.0.0.1", m.submission_port, local_hostname="client.test", timeout=10)
        s.ehlo()
        assert not s.has_extn("dsn"), s.esmtp_features
        from harness import insecure_tls
        s.starttls(context=insecure_tls())
        s.ehlo()
        assert s.has_extn("dsn"), s.esmtp_features
        s.quit()
    finally:
        m.stop()


def test_malformed_parameters_refused_with_501(ctx):
    m = relay(ctx)
    try:
        s = m.smtp(login=USER)
        bad_mail = {
            "RET=BODY": "RET must be FULL or HDRS",
            "RET=HDRS RET=FULL": "RET given twice",
            "ENVID=" + "x" * 101: "1 to 100",
            "ENVID=a+0Db": "printable",             # CR through xtext
            "ENVID=a+2b": "printable",              # lowercase hex is not xtext
            "ENVID=one ENVID=two": "ENVID given twice",
        }
        for params, why in bad_mail.items():
            code, text = s.docmd(f"MAIL FROM:<{SENDER}> {params}")
            assert code == 501 and text.startswith(b"5.5.4") and why.encode() in text, (params, code, text)
        code, text = s.docmd(f"MAIL FROM:<{SENDER}> NOTIFY=NEVER")
        assert code == 555, (code, text)  # a RCPT parameter
        s.quit()  # a session ends after 10 bad commands: the RCPT ones get their own
        s = m.smtp(login=USER)
        code, _ = s.docmd(f"MAIL FROM:<{SENDER}> RET=HDRS ENVID=" + "+41" * 100)  # 100 characters: the limit
        assert code == 250
        bad_rcpt = {
            "NOTIFY=NEVER,SUCCESS": "NEVER",
            "NOTIFY=SUCCESS NOTIFY=FAILURE": "NOTIFY given twice",
            "NOTIFY=SOMETIMES": "NOTIFY must be",
            "ORCPT=rfc822;bob+2": "xtext",
            "ORCPT=rfc822;bob+0A@x.test": "xtext",   # LF through xtext
            "ORCPT=x400;bob": "rfc822",
            "ORCPT=rfc822;" + "b" * 501: "500",
            "ORCPT=rfc822;a@x.test ORCPT=rfc822;b@x.test": "ORCPT given twice",
        }
        for params, why in bad_rcpt.items():
            code, text = s.docmd(f"RCPT TO:<a@plain.test> {params}")
            assert code == 501 and text.startswith(b"5.5.4") and why.encode() in text, (params, code, text)
        code, text = s.docmd("RCPT TO:<a@plain.test> RET=FULL")
        assert code == 555, (code, text)
        code, text = s.docmd("RCPT TO:<a@plain.test> NOTIFY=success,delay ORCPT=rfc822;" + "b" * 500)
        assert code == 250, (code, text)
        s.rset()
        s.quit()
        assert "\r" not in m.log().replace("\r\n", "\n")
    finally:
        m.stop()


# ---- reports ---------------------------------------------------------------------

def test_failure_report_fields_and_ret_hdrs(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        qid = submit(m, "bad@plain.test", tok, mail_options=["RET=HDRS", "ENVID=QQ+2B" + tok],
                     rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;orig+2Bbad@customer.test"])
        msg, head, rcpts = report_for(ctx, tok)
        assert msg["Subject"] == "Undelivered Mail Returned to Sender"
        assert head["Reporting-MTA"] == "dns; mrs.test"
        assert head["Original-Envelope-Id"] == "QQ+" + tok  # decoded from xtext
        assert head["X-Mrs-Queue-ID"] == qid and head["Arrival-Date"]
        r = rcpts["bad@plain.test"]
        assert r["Original-Recipient"] == "rfc822;orig+bad@customer.test", r
        assert r["Action"] == "failed" and r["Status"] == "5.1.1", r
        assert r["Remote-MTA"] == "dns; mx.plain.test", r
        assert r["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user here", r
        assert r["Last-Attempt-Date"], r
        ret = msg.get_payload()[2]
        assert ret.get_content_type() == "text/rfc822-headers"   # RET=HDRS: headers only
        assert b"body text" not in msgs(ctx.senders, tok)[0]["data"]
        assert f"Subject: {tok}" in ret.get_payload()
    finally:
        m.stop()


def test_ret_full_returns_the_whole_message(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        submit(m, "bad@plain.test", tok, mail_options=["RET=FULL"])
        msg, head, rcpts = report_for(ctx, tok)
        assert "Original-Envelope-Id" not in head
        assert "Original-Recipient" not in rcpts["bad@plain.test"]
        ret = msg.get_payload()[2]
        assert ret.get_content_type() == "message/rfc822"
        inner = ret.get_payload()[0]
        assert inner["Subject"] == tok and "body text" in inner.get_payload()
    finally:
        m.stop()


def test_ret_full_over_the_bound_returns_headers_only(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        big = ("y" * 1022 + "\r\n") * 1100  # 1.1 MiB: over the 1 MiB that is returned whole
        submit(m, "bad@plain.test", tok, mail_options=["RET=FULL"], body=big)
        msg, _, _ = report_for(ctx, tok)
        assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
        assert len(msgs(ctx.senders, tok)[0]["data"]) < 64 * 1024
    finally:
        m.stop()


def test_notify_never_sends_no_report(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        qid = submit(m, "bad@plain.test", tok, rcpt_options=["NOTIFY=NEVER"])
        wait_log(m, "their NOTIFY asks for none")
        wait_log(m, "removed from the spool")
        assert not any("bounce " in line and " sent " in line for line in queue_line(m, qid)), queue_line(m, qid)
        assert metric(m, 'mrs_dsn_reports_total{action="failed"}') == 0
        assert msgs(ctx.senders, tok) == []
    finally:
        m.stop()


def test_success_report_relayed_for_a_next_hop_without_dsn(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        submit(m, "bob@plain.test", tok, mail_options=["ENVID=" + tok],
               rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@plain.test"])
        # aiosmtpd without DSN refuses the parameters (555): taken without them
        got = wait_msgs(ctx.plain, tok)
        assert got[0]["rcpt_tos"] == ["bob@plain.test"]
        msg, head, rcpts = report_for(ctx, tok)
        assert msg["Subject"] == "Successful Mail Delivery Report"
        assert head["Original-Envelope-Id"] == tok
        r = rcpts["bob@plain.test"]
        assert r["Action"] == "relayed" and r["Status"] == "2.0.0", r
        assert r["Original-Recipient"] == "rfc822;bob@plain.test"
        assert r["Remote-MTA"] == "dns; mx.plain.test"
        assert r["Diagnostic-Code"].startswith("smtp; 250"), r
        assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
        wait_log(m, "removed from the spool")
        assert metric(m, 'mrs_dsn_reports_total{action="relayed"}') == 1
    finally:
        m.stop()


def test_no_success_report_without_notify_success(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        qid = submit(m, "carol@plain.test", tok)
        wait_msgs(ctx.plain, tok)
        wait_log(m, "removed from the spool")
        assert not any("report" in line for line in queue_line(m, qid)), queue_line(m, qid)
        assert msgs(ctx.senders, tok) == []
    finally:
        m.stop()


def test_parameters_passed_on_to_a_dsn_next_hop_and_no_report(ctx):
    m = relay(ctx)
    try:
        tok = new_token()
        qid = submit(m, "dave@dsn.test", tok, mail_options=["RET=HDRS", "ENVID=E+2B" + tok],
                     rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Dave+2Bx@dsn.test"])
        got = wait_msgs(ctx.dsn, tok)[0]
        assert got["mail_params"] == {"RET": "HDRS", "ENVID": "E+2B" + tok}, got["mail_params"]
        assert got["rcpt_params"] == {"dave@dsn.test": {"NOTIFY": "SUCCESS,DELAY",
                                                        "ORCPT": "rfc822;Dave+2Bx@dsn.test"}}, got["rcpt_params"]
        wait_log(m, "removed from the spool")
        # the next hop reports success itself (RFC 3461 §5.2.2)
        assert not any("report" in line for line in queue_line(m, qid)), queue_line(m, qid)
        assert metric(m, 'mrs_dsn_reports_total{action="relayed"}') == 0
        assert msgs(ctx.senders, tok) == []
    finally:
        m.stop()


def test_dsn_next_hop_refusal_still_reported_by_us(ctx):
    """A 5xx at RCPT from a DSN server is our failure to report."""
    m = relay(ctx)
    try:
        tok = new_token()
        submit(m, "bad@dsn.test", tok, rcpt_options=["NOTIFY=FAILURE"])
        _, _, rcpts = report_for(ctx, tok)
        assert rcpts["bad@dsn.test"]["Action"] == "failed"
    finally:
        m.stop()


# ---- delay notices ------------------------------------------------------------------

def test_delay_notice_once_also_across_a_restart(ctx):
    spool = ctx.h.tmp + "/delay-" + uuid.uuid4().hex[:8]
    env = {"MRS_DELAY_WARNING": "1s", "MRS_RETRY_MIN": "2s", "MRS_RETRY_MAX": "2s"}
    ctx.slow.rcpt_replies["stuck1@slow.test"] = "451 4.7.1 greylisted, come back later"
    m = relay(ctx, spool=spool, **env)
    try:
        tok = new_token()
        qid = submit(m, "stuck1@slow.test", tok, mail_options=["ENVID=" + tok])
        msg, head, rcpts = report_for(ctx, tok, timeout=30)
        assert msg["Subject"].startswith("Delayed Mail")
        assert head["Original-Envelope-Id"] == tok
        r = rcpts["stuck1@slow.test"]
        assert r["Action"] == "delayed" and r["Status"] == "4.7.1", r
        assert r["Diagnostic-Code"] == "smtp; 451 4.7.1 greylisted, come back later", r
        assert r["Remote-MTA"] == "dns; mx.slow.test" and r["Will-Retry-Until"], r
        # two more attempts: the first one's conclusion (where a second
        # notice would be made) is logged before the second attempt starts
        n = ctx.slow.attempts["stuck1@slow.test"]
        ctx.slow.wait_attempts("stuck1@slow.test", n + 2)
        assert m.log().count("delay notice ") == 1, m.log()
        assert metric(m, 'mrs_dsn_reports_total{action="delayed"}') == 1
        m.stop()
        m = relay(ctx, spool=spool, **env)
        n = ctx.slow.attempts["stuck1@slow.test"]
        ctx.slow.wait_attempts("stuck1@slow.test", n + 2)
        assert "delay notice " not in m.log(), [x for x in m.log().splitlines() if "delay notice" in x]
        assert len(msgs(ctx.senders, tok)) == 1
        assert qid in "".join(m.spool_files())
    finally:
        m.stop()
        del ctx.slow.rcpt_replies["stuck1@slow.test"]


def test_no_delay_notice_when_notify_excludes_delay(ctx):
    ctx.slow.rcpt_replies["stuck2@slow.test"] = "451 4.7.1 greylisted, come back later"
    m = relay(ctx, MRS_DELAY_WARNING="1s", MRS_RETRY_MIN="1s", MRS_RETRY_MAX="1s")
    try:
        tok = new_token()
        submit(m, "stuck2@slow.test", tok, rcpt_options=["NOTIFY=FAILURE"])
        t0 = time.time()
        ctx.slow.wait_attempts("stuck2@slow.test", 3)
        # several attempts after the message was older than 1s, none made a notice
        while time.time() - t0 < 2.5:
            ctx.slow.wait_attempts("stuck2@slow.test", ctx.slow.attempts["stuck2@slow.test"] + 1)
        ctx.slow.wait_attempts("stuck2@slow.test", ctx.slow.attempts["stuck2@slow.test"] + 1)
        assert "delay notice" not in m.log()
        assert metric(m, 'mrs_dsn_reports_total{action="delayed"}') == 0
        assert msgs(ctx.senders, tok) == []
    finally:
        m.stop()
        del ctx.slow.rcpt_replies["stuck2@slow.test"]


def test_no_delay_notice_when_turned_off(ctx):
    ctx.slow.rcpt_replies["stuck3@slow.test"] = "451 4.7.1 greylisted, come back later"
    m = relay(ctx, MRS_DELAY_WARNING="0", MRS_RETRY_MIN="1s", MRS_RETRY_MAX="1s")
    try:
        tok = new_token()
        submit(m, "stuck3@slow.test", tok)
        t0 = time.time()
        ctx.slow.wait_attempts("stuck3@slow.test", 2)
        while time.time() - t0 < 2.5:
            ctx.slow.wait_attempts("stuck3@slow.test", ctx.slow.attempts["stuck3@slow.test"] + 1)
        ctx.slow.wait_attempts("stuck3@slow.test", ctx.slow.attempts["stuck3@slow.test"] + 1)
        assert "delay notice" not in m.log()
        assert msgs(ctx.senders, tok) == []
    finally:
        m.stop()
        del ctx.slow.rcpt_replies["stuck3@slow.test"]


def test_no_delay_notice_for_the_null_sender(ctx):
    """A bounce (from <>) that is deferred never gets a delay notice; it is
    written into the spool as docs/spool.md describes, as the inbound side
    refuses <>."""
    ctx.slow.rcpt_replies["stuck4@slow.test"] = "451 4.7.1 greylisted, come back later"
    spool = ctx.h.tmp + "/null-" + uuid.uuid4().hex[:8]
    m = relay(ctx, spool=spool, start=False, MRS_DELAY_WARNING="1s", MRS_RETRY_MIN="1s", MRS_RETRY_MAX="1s")
    os.makedirs(os.path.join(spool, "queue"))
    now = int(time.time() * 1000)
    qid = f"{now & 0xffffffffffff:012x}{random.getrandbits(32):08x}"
    env = ["MRS-SPOOL 1", f"id {qid}", f"received {now}", "user ", "client ", "helo ", "body 7bit", "from ",
           "rcpt stuck4@slow.test", "notify DELAY"]
    with open(os.path.join(spool, "queue", qid), "wb") as f:
        f.write(("\n".join(env) + "\n\n").encode() + message(new_token(), "stuck4@slow.test"))
    m.start()
    try:
        t0 = time.time()
        ctx.slow.wait_attempts("stuck4@slow.test", 2)
        while time.time() - t0 < 2.5:
            ctx.slow.wait_attempts("stuck4@slow.test", ctx.slow.attempts["stuck4@slow.test"] + 1)
        ctx.slow.wait_attempts("stuck4@slow.test", ctx.slow.attempts["stuck4@slow.test"] + 1)
        assert "delay notice" not in m.log()
        assert metric(m, 'mrs_dsn_reports_total{action="delayed"}') == 0
    finally:
        m.stop()
        del ctx.slow.rcpt_replies["stuck4@slow.test"]


def test_delay_warning_malformed_exits_2(h):
    r = h.run([h.mrs_bin, "token", "x"], env={"MRS_DELAY_WARNING": "soon"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "MRS_DELAY_WARNING" in lines[0], r.stderr
