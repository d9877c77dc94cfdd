"""ESMTP extensions (SPEC §8.4, issue 13): CHUNKING (RFC 3030) with
BODY=BINARYMIME, and SMTPUTF8 (RFC 6531/6532) in and out.

One relay delivers by MX to aiosmtpd sinks on 127.0.0.3x that the real DNS
server (unbound) names: one offers SMTPUTF8, one does not, and the sender's
own MX (bounces) does.  stay.test's MX has nothing listening, so a message
to it stays in the spool (retry in an hour), where its envelope is read.
The BDAT edge cases use a raw client: Python's smtplib has no BDAT."""
import email
import email.policy
import os
import threading
import time
import uuid

from harness import SPF_OK, auth_plain, common_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
SENDER = "alice@customer.test"
UDOM, ADOM = "m\u00fcnchen.test", "xn--mnchen-3ya.test"   # a sender domain with a U-label
USENDER = f"j\u00f6rg@{UDOM}"
URCPT_DOM, ARCPT_DOM = "b\u00fccher.test", "xn--bcher-kva.test"
MAX_BYTES = 30000

SINKS = {"utf8": ("127.0.0.31", True), "ascii": ("127.0.0.32", False), "senders": ("127.0.0.33", True)}

ZONE = [
    f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"',
    "customer.test. MX 10 mx.customer.test.", "mx.customer.test. A 127.0.0.33",
    f'{ADOM}. TXT "{SPF_OK}"', f'{ADOM}. TXT "{token_for(USER)}"',
    f"{ADOM}. MX 10 mx.customer.test.",
    "utf8.test. MX 10 mx.utf8.test.", "mx.utf8.test. A 127.0.0.31",
    f"{ARCPT_DOM}. MX 10 mx.utf8.test.",
    "ascii.test. MX 10 mx.ascii.test.", "mx.ascii.test. A 127.0.0.32",
    "stay.test. MX 10 mx.stay.test.", "mx.stay.test. A 127.0.0.39",
]


class Sink:
    """aiosmtpd with or without SMTPUTF8 advertised; records the MAIL
    parameters it saw (harness.Sink does not)."""

    def __init__(self, h, addr, port, smtputf8):
        from aiosmtpd.controller import Controller
        self.addr = addr
        self.messages = []
        self.cond = threading.Condition()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink.cond:
                    sink.messages.append({
                        "mail_from": envelope.mail_from, "mail_options": list(envelope.mail_options),
                        "rcpt_tos": list(envelope.rcpt_tos), "data": envelope.original_content or envelope.content,
                    })
                    sink.cond.notify_all()
                return "250 2.0.0 OK queued"

        self.controller = Controller(Handler(), hostname=addr, port=port, server_hostname=f"sink{addr}",
                                     decode_data=False, enable_SMTPUTF8=smtputf8)
        self.controller.start()
        h.sinks.append(self)

    def wait_token(self, token, timeout=20.0):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [x for x in self.messages if token.encode() in x["data"]]
                if got:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"no message with {token} at {self.addr} in {timeout}s")
                self.cond.wait(left)

    def count(self, token):
        with self.cond:
            return sum(token.encode() in x["data"] for x in self.messages)

    def stop(self):
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001
            pass


def setup(h):
    dns = h.dns(ZONE)
    port = common_port([a for a, _ in SINKS.values()] + ["127.0.0.39"])
    sinks = {name: Sink(h, addr, port, u8) for name, (addr, u8) in SINKS.items()}
    env = {"MRS_DELIVERY_PORT": str(port), "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h",
           "MRS_DELIVERY_CONNECT_TIMEOUT": "3s", "MRS_MAX_MESSAGE_BYTES": str(MAX_BYTES)}
    m = h.mrs(dns=dns, env=env, users={USER: PW})
    return {"h": h, "dns": dns, "mrs": m, "sinks": sinks}


# ---- helpers ---------------------------------------------------------------

def queue(m):
    """The committed messages (not their .state files)."""
    return [f for f in m.spool_files() if "." not in f]


def token():
    return "t-" + uuid.uuid4().hex[:16]


def login(m):
    r = m.raw()
    assert r.reply()[0] == 220
    r.cmd("EHLO client.test")
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH PLAIN " + auth_plain(USER, PW))[0] == 235
    return r


def envelope(r, rcpt="x@stay.test", sender=SENDER, params=""):
    assert r.cmd(f"MAIL FROM:<{sender}>{params}")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250


def bdat(chunk, last=False):
    return b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk


def spooled(m, qid):
    """(envelope lines, message bytes) of a spooled message."""
    with open(os.path.join(m.spool, "queue", qid), "rb") as f:
        head, msg = f.read().split(b"\n\n", 1)
    return head.decode().splitlines(), msg


def queued_id(texts):
    text = texts[-1]
    assert "queued as" in text, texts
    return text.rsplit(" ", 1)[1]


def message(tok, frm=SENDER, to="x@stay.test", extra="", body="Hello.\r\n"):
    return (f"From: Alice <{frm}>\r\nTo: <{to}>\r\nSubject: {tok}\r\n{extra}\r\n{body}").encode()


def bounce_for(ctx, tok, timeout=20.0):
    got = ctx["sinks"]["senders"].wait_token(tok, timeout)
    assert len(got) == 1, f"{len(got)} bounces"
    b = got[0]
    assert b["mail_from"] in ("", "<>"), b["mail_from"]
    msg = email.message_from_bytes(b["data"], policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    groups = msg.get_payload()[1].get_payload()
    return b, msg, {str(g["Final-Recipient"]).split(";", 1)[1].strip(): g for g in groups[1:]}


# ---- EHLO ----------------------------------------------------------------------

def test_ehlo_lists_chunking_binarymime_smtputf8_after_tls_only(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    code, before = r.cmd("EHLO client.test")
    assert code == 250 and "STARTTLS" in before
    for ext in ("CHUNKING", "BINARYMIME", "SMTPUTF8", "DSN"):
        assert ext not in before, before
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls()
    code, after = r.cmd("EHLO client.test")
    assert after[1:] == ["PIPELINING", f"SIZE {MAX_BYTES}", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",
                         "AUTH PLAIN LOGIN", "CHUNKING", "BINARYMIME", "SMTPUTF8"], after  # DSN: test_dsn
    r.close()


# ---- CHUNKING --------------------------------------------------------------------

def test_bdat_pipelined_chunks_are_data_and_arrive_intact(ctx):
    """Many chunks in one write: a chunk boundary inside CRLF, one inside a
    multibyte character, and chunk bytes that look like the end of DATA and
    a second transaction.  They are data: one message, byte for byte."""
    tok = token()
    body = ("caf\u00e9 line\r\n.\r\nMAIL FROM:<alice@customer.test>\r\nRCPT TO:<evil@ascii.test>\r\n"
            "DATA\r\n.leading dot stays\r\nlast\r\n").encode()
    data = message(tok, to="x@ascii.test", body="") + body
    cut1 = data.index(b"\r\n") + 1                # between CR and LF
    cut2 = data.index("\u00e9".encode()) + 1      # inside the two bytes of é
    cut3 = data.index(b"\r\n.\r\nMAIL") + 3       # right before the lone dot
    pieces = [data[:cut1], data[cut1:cut2], data[cut2:cut3], data[cut3:]]
    r = login(ctx["mrs"])
    envelope(r, "x@ascii.test")
    r.send(b"".join(bdat(p) for p in pieces) + bdat(b"", last=True) + b"NOOP\r\n")
    for p in pieces:
        assert r.reply() == (250, [f"2.0.0 {len(p)} octets received"])
    code, texts = r.reply()
    assert code == 250 and "queued as" in texts[0], texts
    # NOOP's own reply (not MAIL's "2.1.0"): nothing in the chunks ran as a command
    assert r.reply() == (250, ["2.0.0 Ok"])
    assert r.cmd("QUIT")[0] == 221
    got = ctx["sinks"]["ascii"].wait_token(tok)
    assert len(got) == 1
    assert got[0]["rcpt_tos"] == ["x@ascii.test"]
    assert got[0]["data"].endswith(data), got[0]["data"][-400:]
    assert got[0]["data"].startswith(b"Received: from client.test")


def test_bdat_single_last_chunk_and_zero_length_last(ctx):
    m = ctx["mrs"]
    r = login(m)
    tok = token()
    data = message(tok)
    envelope(r)
    r.send(bdat(data, last=True))
    code, texts = r.reply()
    assert code == 250
    _, msg = spooled(m, queued_id(texts))
    assert msg.endswith(data)
    # BDAT 0 LAST after a chunk ends the message
    envelope(r)
    r.send(bdat(data) + bdat(b"", last=True))
    assert r.reply()[0] == 250
    code, texts = r.reply()
    assert code == 250, texts
    _, msg = spooled(m, queued_id(texts))
    assert msg.endswith(data)
    # a message that is only BDAT 0 LAST: empty, so the From: check refuses it
    envelope(r)
    code, texts = r.cmd("BDAT 0 LAST")
    assert code == 550 and "From:" in texts[0], texts
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_bdat_message_without_final_crlf_gets_one(ctx):
    m = ctx["mrs"]
    r = login(m)
    data = message(token(), body="no line end")
    envelope(r)
    r.send(bdat(data, last=True))
    code, texts = r.reply()
    assert code == 250, texts
    _, msg = spooled(m, queued_id(texts))
    assert msg.endswith(data + b"\r\n")
    r.close()


def test_bdat_without_last_then_quit_queues_nothing(ctx):
    m = ctx["mrs"]
    before = queue(m)
    r = login(m)
    envelope(r)
    tok = token()
    r.send(bdat(message(tok)))
    assert r.reply()[0] == 250
    assert r.cmd("QUIT")[0] == 221
    assert r.closed()  # the session drops its open message before it closes
    assert queue(m) == before
    assert m.tmp_leftovers(tok) == []


def test_rset_between_chunks_discards(ctx):
    m = ctx["mrs"]
    before = queue(m)
    r = login(m)
    envelope(r)
    r.send(bdat(message(token())))
    assert r.reply()[0] == 250
    assert r.cmd("RSET")[0] == 250
    # the transaction is gone: the LAST chunk has nothing to end
    r.send(bdat(b"more\r\n", last=True))
    code, texts = r.reply()
    assert code == 503, texts
    assert r.cmd("NOOP")[0] == 250
    r.close()
    assert queue(m) == before


def test_bdat_state_errors_still_consume_the_chunk(ctx):
    m = ctx["mrs"]
    before = queue(m)
    r = login(m)
    # no transaction: 503, and the chunk ("QUIT") is data, not a command
    r.send(bdat(b"QUIT\r\n"))
    code, texts = r.reply()
    assert code == 503 and "MAIL" in texts[0], texts
    assert r.cmd("NOOP")[0] == 250
    # MAIL without RCPT
    assert r.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    r.send(bdat(b"RSET\r\n", last=True))
    code, texts = r.reply()
    assert code == 503 and "RCPT" in texts[0], texts
    assert r.cmd("RCPT TO:<x@stay.test>")[0] == 250  # still in the transaction: RSET was data
    # DATA and RCPT after BDAT in one transaction
    r.send(bdat(b"Subject: x\r\n"))
    assert r.reply()[0] == 250
    code, texts = r.cmd("DATA")
    assert code == 503 and "BDAT" in texts[0], texts
    assert r.cmd("RCPT TO:<y@stay.test>")[0] == 503
    assert r.cmd("RSET")[0] == 250
    # BODY=BINARYMIME needs BDAT
    assert r.cmd(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME")[0] == 250
    assert r.cmd("RCPT TO:<x@stay.test>")[0] == 250
    code, texts = r.cmd("DATA")
    assert code == 503 and "BINARYMIME" in texts[0], texts
    assert r.cmd("RSET")[0] == 250
    r.close()
    assert queue(m) == before


def test_bdat_size_limit_across_chunks(ctx):
    m = ctx["mrs"]
    before = queue(m)
    r = login(m)
    envelope(r)
    half = b"x" * 78 + b"\r\n"
    tok = token()
    chunk = message(tok) + half * (MAX_BYTES // 2 // len(half))
    more = half * (MAX_BYTES // 2 // len(half) + 10)
    # the second chunk goes over: 552 once it is read; the pipelined LAST
    # chunk behind it belongs to a failed transaction: 503, also read
    r.send(bdat(chunk) + bdat(more) + bdat(b"end\r\n", last=True) + b"NOOP\r\n")
    assert r.reply()[0] == 250
    code, texts = r.reply()
    assert code == 552 and texts[0].startswith("5.3.4"), texts
    assert r.reply()[0] == 503
    assert r.reply()[0] == 250
    # one chunk over the limit on its own
    envelope(r)
    r.send(bdat(b"y" * (MAX_BYTES + 100), last=True))
    code, texts = r.reply()
    assert code == 552, texts
    assert r.cmd("NOOP")[0] == 250
    r.close()
    assert queue(m) == before
    assert m.tmp_leftovers(tok) == []


def test_bdat_bare_lf_bare_cr_and_nul_refused(ctx):
    m = ctx["mrs"]
    before = queue(m)
    r = login(m)
    for bad in (b"line\nbare lf\r\n", b"line\rbare cr\r\n", b"nul \0 byte\r\n", b"ends in a cr\r"):
        envelope(r)
        r.send(bdat(message(token(), body="") + bad, last=True))
        code, texts = r.reply()
        assert code == 550 and texts[0].startswith("5.6.0"), (bad, texts)
    # the CR and LF of one CRLF in two chunks are a line end, not bare
    envelope(r)
    data = message(token())
    r.send(bdat(data[:-1]) + bdat(data[-1:], last=True))
    assert r.reply()[0] == 250
    code, texts = r.reply()
    assert code == 250, texts
    r.close()
    assert len(queue(m)) == len(before) + 1


def test_bdat_syntax_error_or_before_auth_closes(ctx):
    m = ctx["mrs"]
    r = login(m)
    code, texts = r.cmd("BDAT 12x")
    assert code == 501, texts
    assert r.closed()
    r = m.raw()
    r.reply()
    r.cmd("EHLO client.test")
    r.send(bdat(b"NOOP\r\n"))
    assert r.reply()[0] == 530
    assert r.closed()


def test_bdat_line_too_long_or_with_nul_never_runs_its_chunk(ctx):
    """A BDAT line refused before its size is read (over the command line
    limit, over the read limit, a NUL) leaves no way to find the end of its
    chunk: the session ends, and the chunk is never run as commands."""
    m = ctx["mrs"]
    chunk = b"NOOP\r\n"
    for line in (b"BDAT %d LAST" % len(chunk) + b" " * 600,      # over 510: parses, too long
                 b"BDAT %d LAST" % len(chunk) + b" " * 13000,    # over the 12 KB read limit
                 b"BDAT %d LAST\0" % len(chunk)):               # a NUL
        r = login(m)
        envelope(r)
        r.send(line + b"\r\n" + chunk)
        code, texts = r.reply()
        assert code // 100 == 5, (line[:20], texts)
        assert r.closed(), (line[:20], r.buf)
        assert r.buf == b"", (line[:20], r.buf)  # no reply to the chunk's NOOP
        r.close()


def test_smtplib_binarymime_with_bdat(ctx):
    """smtplib speaks the envelope (BODY=BINARYMIME); BDAT goes out raw."""
    m = ctx["mrs"]
    s = m.smtp(login=(USER, PW))
    assert s.has_extn("chunking") and s.has_extn("binarymime")
    tok = token()
    data = message(tok, to="x@ascii.test", body="8-bit \u00e5\u00e4\u00f6 body\r\n" + "z" * 900 + "\r\n")
    assert s.mail(SENDER, ["BODY=BINARYMIME"])[0] == 250
    assert s.rcpt("x@ascii.test")[0] == 250
    s.send(b"BDAT %d\r\n" % 100 + data[:100])
    assert s.getreply()[0] == 250
    s.send(b"BDAT %d LAST\r\n" % (len(data) - 100) + data[100:])
    code, text = s.getreply()
    assert code == 250 and b"queued as" in text, text
    s.quit()
    got = ctx["sinks"]["ascii"].wait_token(tok)
    assert got[0]["data"].endswith(data)
    assert "BODY=8BITMIME" in got[0]["mail_options"], got[0]["mail_options"]


# ---- SMTPUTF8 ----------------------------------------------------------------------

def test_smtputf8_addresses_and_headers_delivered_with_smtputf8(ctx):
    """UTF-8 sender (its domain authorized through the A-label's records),
    UTF-8 recipient domain (MX looked up as the A-label), UTF-8 From:
    header (checked as the A-label); the next hop offers SMTPUTF8 and gets
    MAIL FROM:<…> SMTPUTF8."""
    tok = token()
    rcpt = f"\u7528\u6237@{URCPT_DOM}"
    data = (f"From: J\u00f6rg <{USENDER}>\r\nTo: <{rcpt}>\r\nSubject: {tok} gr\u00fc\u00dfe\r\n\r\n"
            "Hall\u00e5.\r\n").encode()
    s = ctx["mrs"].smtp(login=(USER, PW))
    assert s.has_extn("smtputf8")
    refused = s.sendmail(USENDER, [rcpt], data, mail_options=["SMTPUTF8"])
    assert not refused
    s.quit()
    got = ctx["sinks"]["utf8"].wait_token(tok)
    assert len(got) == 1
    assert got[0]["mail_from"] == USENDER
    assert got[0]["rcpt_tos"] == [rcpt]
    assert "SMTPUTF8" in got[0]["mail_options"], got[0]["mail_options"]
    assert got[0]["data"].endswith(data)
    assert b" with UTF8SMTPSA id " in got[0]["data"]


def test_smtputf8_flag_is_in_the_spool_envelope(ctx):
    m = ctx["mrs"]
    r = login(m)
    envelope(r, params=" SMTPUTF8")
    code, texts = r.cmd("DATA")
    assert code == 354
    r.send(message(token()) + b".\r\n")
    code, texts = r.reply()
    env, _ = spooled(m, queued_id(texts))
    assert "smtputf8 1" in env, env
    envelope(r)
    r.send(bdat(message(token()), last=True))
    env, _ = spooled(m, queued_id(r.reply()[1]))
    assert not any(ln.startswith("smtputf8") for ln in env), env
    r.close()


def test_non_ascii_and_malformed_utf8_addresses(ctx):
    m = ctx["mrs"]
    r = login(m)
    # without SMTPUTF8, UTF-8 addresses stay refused as before
    assert r.cmd(f"MAIL FROM:<{USENDER}>")[0] == 501
    assert r.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    assert r.cmd("RCPT TO:<\u00fc@ascii.test>")[0] == 501
    assert r.cmd("RSET")[0] == 250
    # with it, malformed UTF-8 is 553 5.6.7: overlong, surrogate, > U+10FFFF, cut
    for bad in (b"\xc0\xafx", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ab\xc3"):
        r.send(b"MAIL FROM:<" + bad + b"@customer.test> SMTPUTF8\r\n")
        code, texts = r.reply()
        assert code == 553 and texts[0].startswith("5.6.7"), (bad, texts)
    assert r.cmd(f"MAIL FROM:<{SENDER}> SMTPUTF8")[0] == 250
    r.send(b"RCPT TO:<x@a\xed\xa0\x80.ascii.test>\r\n")
    code, texts = r.reply()
    assert code == 553 and texts[0].startswith("5.6.7"), texts
    assert r.cmd(f"RCPT TO:<\u00fc@ascii.test>")[0] == 250
    # and a header section that is not UTF-8: 550 5.6.7
    r.send(bdat(b"From: <alice@customer.test>\r\nSubject: \xff\xfe\r\n\r\nbody\r\n", last=True))
    code, texts = r.reply()
    assert code == 550 and texts[0].startswith("5.6.7"), texts
    # a UTF-8 sender domain whose A-label has no records is refused by policy
    code, texts = r.cmd("MAIL FROM:<a@\u00e5\u00e4\u00f6.test> SMTPUTF8")
    assert code in (550, 451) and "xn--" in texts[0], texts
    r.close()


def test_next_hop_without_smtputf8_bounces_5_6_7(ctx):
    """A UTF-8 recipient, and an ASCII envelope with a UTF-8 header: the
    next hop lacks SMTPUTF8, so both bounce 5.6.7 and nothing reaches it.
    An ASCII-only message with the flag goes through without it."""
    ascii_sink = ctx["sinks"]["ascii"]
    s = ctx["mrs"].smtp(login=(USER, PW))
    tok1, tok2, tok3 = token(), token(), token()
    urcpt = "\u00fcser@ascii.test"
    s.sendmail(SENDER, [urcpt], message(tok1, to=urcpt), mail_options=["SMTPUTF8"])
    s.sendmail(SENDER, ["x@ascii.test"], message(tok2, to="x@ascii.test", extra="X-Name: \u00e5sa\r\n"),
               mail_options=["SMTPUTF8"])
    s.sendmail(SENDER, ["y@ascii.test"], message(tok3, to="y@ascii.test"), mail_options=["SMTPUTF8"])
    s.quit()
    for tok, rcpt in ((tok1, urcpt), (tok2, "x@ascii.test")):
        b, msg, rcpts = bounce_for(ctx, tok)
        assert b["rcpt_tos"] == [SENDER]
        assert len(rcpts) == 1 and f"Final-Recipient: rfc822; {rcpt}".encode() in b["data"], b["data"][:1500]
        g = list(rcpts.values())[0]
        assert g["Action"] == "failed" and g["Status"] == "5.6.7", g.items()
        assert "SMTPUTF8" in g["Diagnostic-Code"], g["Diagnostic-Code"]
    got = ascii_sink.wait_token(tok3)
    assert "SMTPUTF8" not in got[0]["mail_options"]
    assert ascii_sink.count(tok1) == 0 and ascii_sink.count(tok2) == 0
