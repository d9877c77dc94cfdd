"""Inbound SMTP submission (SPEC §4, issue 3): real clients against the
built relay, each checking what reached the spool, and the bad-input cases
with their exact replies."""
import base64
import os
import shutil
import smtplib
import socket
import subprocess
import time

from harness import SPF_OK, Raw, auth_plain, free_port, insecure_tls, token_for

USER, PW = "alice@customer.test", "alice-secret"
OTHER, OTHER_PW = "bob@elsewhere.test", "bob-secret"

ZONE = [
    f'customer.test. TXT "{SPF_OK}"',
    f'customer.test. TXT "{token_for(USER)}"',
    # authorized for alice only through the token of another user
    f'bobs.test. TXT "{SPF_OK}"',
    f'bobs.test. TXT "{token_for(OTHER)}"',
    'nospf.test. TXT "hello"',
    f'nospf.test. TXT "{token_for(USER)}"',
    f'notoken.test. TXT "{SPF_OK}"',
]

BODY = ("From: Alice <alice@customer.test>\r\nTo: rcpt@dest.test\r\nSubject: hello\r\n\r\n"
        "line one\r\n.leading dot\r\nlast line\r\n")


def setup(h):
    dns = h.dns(ZONE)
    # Delivery goes to a closed smarthost port and retries in an hour, so
    # accepted messages stay in the spool where these tests read them.
    closed = free_port()
    env = {"MRS_SMARTHOST": f"127.0.0.1:{closed}", "MRS_SMARTHOST_TLS": "none",
           "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h"}
    m = h.mrs(dns=dns, env=env, users={USER: PW, OTHER: OTHER_PW})
    return {"h": h, "dns": dns, "mrs": m, "env": env}


def spooled(m, qid):
    """(envelope dict, message bytes) of a spooled message."""
    with open(os.path.join(m.spool, "queue", qid), "rb") as f:
        raw = f.read()
    head, msg = raw.split(b"\n\n", 1)
    env = {"rcpt": []}
    for line in head.decode().splitlines()[1:]:
        k, _, v = line.partition(" ")
        if k == "rcpt":
            env["rcpt"].append(v)
        else:
            env[k] = v
    return env, msg


def queued_id(reply_text):
    text = reply_text.decode() if isinstance(reply_text, bytes) else reply_text
    assert "queued as" in text, text
    return text.rsplit(" ", 1)[1]


def send_ok(s, frm=USER.replace("alice", "news"), rcpts=("rcpt@dest.test",), body=BODY):
    code, _ = s.mail(frm)
    assert code == 250, code
    for r in rcpts:
        assert s.rcpt(r)[0] == 250
    code, text = s.data(body.encode())
    assert code == 250, (code, text)
    return queued_id(text)


def login(ctx, raw=None):
    r = raw or ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH PLAIN " + auth_plain(USER, PW))[0] == 235
    return r


# --- real clients ------------------------------------------------------------

def test_smtplib_starttls_login_sendmail(ctx):
    m = ctx["mrs"]
    s = m.smtp(login=(USER, PW))
    qid = send_ok(s, rcpts=("rcpt@dest.test", "second@other.test"))
    s.quit()
    env, msg = spooled(m, qid)
    assert env["user"] == USER and env["from"] == "news@customer.test"
    assert env["rcpt"] == ["rcpt@dest.test", "second@other.test"]
    assert env["client"] == "127.0.0.1"
    first = msg.split(b"\r\n\r\n", 1)[0]
    assert msg.startswith(b"Received: from client.test ([127.0.0.1])"), msg[:200]
    assert b"with ESMTPSA id " + qid.encode() in first
    assert b"(authenticated user alice@customer.test)" in first
    assert PW.encode() not in msg
    assert b"\r\nMessage-ID: <" + qid.encode() + b"@mrs.test>\r\n" in first
    assert b"\r\nDate: " in first
    # the body arrives dot-unstuffed and byte-for-byte
    assert msg.endswith(BODY.encode().split(b"\r\n\r\n", 1)[1])
    assert b"\r\n.leading dot\r\n" in msg


def test_existing_message_id_and_date_are_kept(ctx):
    m = ctx["mrs"]
    body = ("Message-ID: <own@customer.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + BODY)
    s = m.smtp(login=(USER, PW))
    qid = send_ok(s, body=body)
    s.quit()
    _, msg = spooled(m, qid)
    assert msg.count(b"Message-ID:") == 1 and b"<own@customer.test>" in msg
    assert msg.count(b"\r\nDate:") == 1


def test_smtps_implicit_tls(ctx):
    m = ctx["mrs"]
    s = m.smtps(login=(USER, PW))
    assert "starttls" not in s.esmtp_features and "auth" in s.esmtp_features
    qid = send_ok(s)
    s.quit()
    env, _ = spooled(m, qid)
    assert env["user"] == USER


def test_curl_upload(ctx):
    m = ctx["mrs"]
    path = os.path.join(ctx["h"].tmp, "curl-mail.txt")
    with open(path, "w", newline="") as f:
        f.write(BODY)
    r = subprocess.run(["curl", "-sS", "-v", "--ssl-reqd", "-k", f"smtp://127.0.0.1:{m.submission_port}",
                        "--login-options", "AUTH=PLAIN", "-u", f"{USER}:{PW}",
                        "--mail-from", "news@customer.test", "--mail-rcpt", "rcpt@dest.test",
                        "--upload-file", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    qids = [ln.rsplit(" ", 1)[1] for ln in r.stderr.splitlines() if "queued as" in ln]
    assert len(qids) == 1, r.stderr
    env, msg = spooled(m, qids[0])
    assert env["rcpt"] == ["rcpt@dest.test"] and b"line one" in msg


def test_swaks_tls_auth(ctx):
    m = ctx["mrs"]
    for mech in ("LOGIN", "PLAIN"):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(m.submission_port), "--tls",
                            "--auth", mech, "--auth-user", USER, "--auth-password", PW,
                            "--from", "news@customer.test", "--to", "rcpt@dest.test",
                            "--header", "From: news@customer.test", "--body", "hello from swaks"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        line = [ln for ln in r.stdout.splitlines() if "queued as" in ln]
        assert line, r.stdout
        env, msg = spooled(m, line[0].rsplit(" ", 1)[1])
        assert env["user"] == USER and b"hello from swaks" in msg


def test_openssl_s_client_starttls(ctx):
    m = ctx["mrs"]
    script = ("EHLO client.test\r\nAUTH PLAIN " + auth_plain(USER, PW) + "\r\n"
              "MAIL FROM:<news@customer.test>\r\nRCPT TO:<rcpt@dest.test>\r\nDATA\r\n" + BODY + ".\r\nQUIT\r\n")
    r = subprocess.run(["openssl", "s_client", "-quiet", "-starttls", "smtp", "-connect",
                        f"127.0.0.1:{m.submission_port}"], input=script, capture_output=True, text=True,
                       timeout=30)
    assert "235 2.7.0" in r.stdout, r.stdout + r.stderr
    qid = [ln for ln in r.stdout.splitlines() if "queued as" in ln][0].rsplit(" ", 1)[1].strip()
    env, _ = spooled(m, qid)
    assert env["from"] == "news@customer.test"


# --- EHLO, TLS and AUTH rules ------------------------------------------------

def test_ehlo_advertises_starttls_before_tls_and_auth_after(ctx):
    s = ctx["mrs"].smtp(starttls=False)
    feats = s.esmtp_features
    assert "starttls" in feats and "auth" not in feats
    for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
        assert ext in feats, ext
    s.starttls(context=insecure_tls())
    s.ehlo()
    assert "auth" in s.esmtp_features and "starttls" not in s.esmtp_features
    assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    s.quit()


def test_greeting(ctx):
    r = ctx["mrs"].raw()
    assert r.reply() == (220, ["mrs.test ESMTP mrs"])
    r.close()


def test_auth_before_tls_refused(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    code, text = r.cmd("AUTH PLAIN " + auth_plain(USER, PW))
    assert code == 530 and text[0].startswith("5.7.0"), (code, text)
    r.close()


def test_mail_before_auth_refused(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("MAIL FROM:<news@customer.test>") == (530, ["5.7.0 Authentication required"])
    r.cmd("STARTTLS")
    r.starttls()
    r.cmd("EHLO client.test")
    assert r.cmd("MAIL FROM:<news@customer.test>") == (530, ["5.7.0 Authentication required"])
    r.close()


def test_starttls_resets_session(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("STARTTLS")
    r.starttls()
    code, text = r.cmd("AUTH PLAIN " + auth_plain(USER, PW))
    assert code == 503 and text[0].startswith("5.5.1"), (code, text)  # must EHLO again
    r.close()


def test_starttls_injection_discarded(ctx):
    """CVE-2011-0411 class: commands pipelined after STARTTLS in plaintext
    must not run inside the TLS session."""
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    r.send("STARTTLS\r\nNOOP\r\nRSET\r\n")
    assert r.reply()[0] == 220
    r.starttls()
    code, text = r.cmd("EHLO after.test")
    assert code == 250 and text[0].startswith("mrs.test Hello after.test"), (code, text)
    assert r.cmd("NOOP") == (250, ["2.0.0 Ok"])
    r.close()


def test_second_starttls_and_starttls_on_implicit_port_refused(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("STARTTLS")
    r.starttls()
    r.cmd("EHLO client.test")
    code, text = r.cmd("STARTTLS")
    assert code == 503 and text[0].startswith("5.5.1"), (code, text)
    r.close()
    r = ctx["mrs"].raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("STARTTLS")[0] == 503
    r.close()


def test_auth_twice_refused(ctx):
    r = login(ctx)
    code, text = r.cmd("AUTH PLAIN " + auth_plain(USER, PW))
    assert code == 503 and text[0].startswith("5.5.1"), (code, text)
    r.close()


def test_auth_login_and_plain_without_initial_response(ctx):
    r = ctx["mrs"].raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH LOGIN") == (334, ["VXNlcm5hbWU6"])
    assert r.cmd(base64.b64encode(USER.encode()).decode()) == (334, ["UGFzc3dvcmQ6"])
    assert r.cmd(base64.b64encode(PW.encode()).decode())[0] == 235
    r.close()
    r = ctx["mrs"].raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH PLAIN")[0] == 334
    assert r.cmd(auth_plain(USER, PW))[0] == 235
    r.close()


def test_auth_cancel_and_bad_base64(ctx):
    r = ctx["mrs"].raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH LOGIN")[0] == 334
    code, text = r.cmd("*")
    assert code == 501 and text[0].startswith("5.7.0"), (code, text)
    code, _ = r.cmd("AUTH PLAIN !!!notbase64")
    assert code == 501
    code, text = r.cmd("AUTH CRAM-MD5")
    assert code == 504 and text[0].startswith("5.5.4")
    r.close()


def test_wrong_password_unknown_user_then_disconnect(h):
    """Own instance: failures feed the per-address throttle."""
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns)
    r = m.raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    t0 = time.time()
    assert r.cmd("AUTH PLAIN " + auth_plain(USER, "wrong")) == (535, ["5.7.8 Authentication credentials invalid"])
    assert r.cmd("AUTH PLAIN " + auth_plain("nobody@customer.test", "x"))[0] == 535
    code, text = r.cmd("AUTH PLAIN " + auth_plain(USER, "wrong again"))
    assert code == 535
    assert time.time() - t0 >= 0.5 + 1.0 + 2.0 - 0.2  # growing delay
    assert r.reply()[0] == 421
    assert r.closed()
    assert "wrong" not in m.log() and "nobody" in m.log()


def test_bad_credentials_never_logged(ctx):
    s = ctx["mrs"].smtp()
    try:
        s.login(USER, "hunter2-not-the-password")
        raise AssertionError("login succeeded")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535
    s.close()
    assert "hunter2" not in ctx["mrs"].log()
    assert PW not in ctx["mrs"].log()


# --- smuggling and DATA ------------------------------------------------------

SMUGGLE = ["\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\n..\n"]


def test_smtp_smuggling_variants_refused(ctx):
    m = ctx["mrs"]
    before = set(m.spool_files())
    for end in SMUGGLE:
        r = login(ctx)
        assert r.cmd("MAIL FROM:<news@customer.test>")[0] == 250
        assert r.cmd("RCPT TO:<rcpt@dest.test>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        payload = ("From: news@customer.test\r\n\r\nfirst" + end +
                   "MAIL FROM:<evil@customer.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n"
                   "From: evil@customer.test\r\n\r\nsmuggled\r\n.\r\n")
        r.send(payload)
        code, text = r.reply()
        assert code == 550 and text[0].startswith("5.6.0"), (repr(end), code, text)
        # nothing else is answered: the smuggled commands were data
        assert r.cmd("NOOP") == (250, ["2.0.0 Ok"]), repr(end)
        r.close()
    assert set(m.spool_files()) == before


def test_pipelined_transaction_and_trailing_quit(ctx):
    r = login(ctx)
    r.send("MAIL FROM:<news@customer.test>\r\nRCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert r.reply()[0] == 250 and r.reply()[0] == 250 and r.reply()[0] == 250
    assert r.reply()[0] == 354
    r.send("From: news@customer.test\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    code, text = r.reply()
    assert code == 250 and "queued as" in text[0]
    assert r.reply()[0] == 221
    env, _ = spooled(ctx["mrs"], text[0].rsplit(" ", 1)[1])
    assert env["rcpt"] == ["a@dest.test", "b@dest.test"]


def test_overlong_line_then_session_usable(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("NOOP " + "x" * 600) == (500, ["5.5.2 Command line too long"])
    r.send("NOOP " + "y" * (1024 * 1024) + "\r\n")
    code, text = r.reply()
    assert code == 500 and text[0].startswith("5.5.2"), (code, text)
    assert r.cmd("NOOP") == (250, ["2.0.0 Ok"])
    r.close()


def test_nul_byte_refused(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    code, text = r.cmd("EHLO client\0.test")
    assert code == 500 and text[0].startswith("5.5.2"), (code, text)
    assert r.cmd("NOOP")[0] == 250
    r.close()


def test_cr_in_envelope_refused(ctx):
    r = login(ctx)
    code, text = r.cmd("MAIL FROM:<news@customer.test>\rX-Injected: yes")
    assert code == 501, (code, text)
    r.close()


def test_http_request_gets_502_and_close(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    r.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    code, text = r.reply()
    assert code == 502 and text[0].startswith("5.7.0"), (code, text)
    assert r.closed()


def test_unknown_commands_end_session(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    codes = [r.cmd("FOO")[0] for _ in range(4)]
    assert codes == [500] * 4
    assert r.cmd("BAR")[0] == 500
    assert r.reply()[0] == 421
    assert r.closed()


def test_simple_commands(ctx):
    r = ctx["mrs"].raw()
    r.reply()
    assert r.cmd("HELO client.test") == (250, ["mrs.test"])
    assert r.cmd("NOOP") == (250, ["2.0.0 Ok"])
    assert r.cmd("RSET") == (250, ["2.0.0 Ok"])
    assert r.cmd("VRFY alice")[0] == 252
    assert r.cmd("HELP")[0] == 214
    code, text = r.cmd("RCPT TO:<x@dest.test>")
    assert code == 503 and text[0].startswith("5.5.1")
    assert r.cmd("QUIT")[0] == 221
    assert r.closed()


def test_null_sender_refused(ctx):
    r = login(ctx)
    code, text = r.cmd("MAIL FROM:<>")
    assert code == 550 and text[0].startswith("5.7.1"), (code, text)
    r.close()


def test_address_syntax(ctx):
    r = login(ctx)
    assert r.cmd("MAIL FROM:<not an address>")[0] == 501
    assert r.cmd("MAIL FROM:<@route.test:news@customer.test> BODY=8BITMIME")[0] == 250
    assert r.cmd('RCPT TO:<"john doe"@dest.test>')[0] == 250
    assert r.cmd("RCPT TO:<postmaster>")[0] == 550
    assert r.cmd("RCPT TO:<x@dest.test> XFOO=1")[0] == 555  # not advertised
    assert r.cmd("RCPT TO:<x@dest.test> NOTIFY=NEVER")[0] == 250  # DSN is (test_dsn)
    r.close()


def test_size_limits(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_MAX_MESSAGE_BYTES": "4K", "MRS_SMARTHOST": f"127.0.0.1:{free_port()}",
                            "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "1h"})
    s = m.smtp(login=(USER, PW))
    assert s.esmtp_features["size"] == "4096"
    code, text = s.docmd("MAIL FROM:<news@customer.test> SIZE=5000")
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    s.rset()
    assert s.mail("news@customer.test")[0] == 250
    assert s.rcpt("rcpt@dest.test")[0] == 250
    code, text = s.data(("From: news@customer.test\r\n\r\n" + "x" * 8000 + "\r\n").encode())
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    assert s.noop()[0] == 250  # the session is still usable
    s.quit()
    assert m.spool_files() == []


def test_too_many_recipients(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_MAX_RECIPIENTS": "3"})
    s = m.smtp(login=(USER, PW))
    s.mail("news@customer.test")
    for i in range(3):
        assert s.rcpt(f"r{i}@dest.test")[0] == 250
    code, text = s.rcpt("r4@dest.test")
    assert code == 452 and text.startswith(b"4.5.3"), (code, text)
    s.quit()


def test_connection_flood_over_max_connections(h):
    m = h.mrs(env={"MRS_MAX_CONNECTIONS": "5"})
    held = []
    for _ in range(5):
        r = m.raw()
        assert r.reply()[0] == 220
        held.append(r)
    extra = m.raw()
    code, text = extra.reply()
    assert code == 421 and text[0].startswith("4.7.0"), (code, text)
    assert extra.closed()
    assert held[0].cmd("NOOP")[0] == 250  # the others do not suffer
    held[0].cmd("QUIT")
    held[0].close()
    time.sleep(0.3)
    again = m.raw()
    assert again.reply()[0] == 220
    for r in held[1:] + [again]:
        r.close()


def test_silent_client_times_out(h):
    m = h.mrs(env={"MRS_PREAUTH_TIMEOUT": "1s", "MRS_IDLE_TIMEOUT": "2s"})
    r = m.raw()
    r.reply()
    t0 = time.time()
    code, text = r.reply()
    assert code == 421 and text[0].startswith("4.4.2"), (code, text)
    assert 0.8 <= time.time() - t0 < 5
    assert r.closed()


def test_slow_data_closed_by_min_rate(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_IDLE_TIMEOUT": "2s", "MRS_DATA_MIN_RATE": "1K"})
    r = m.raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("AUTH PLAIN " + auth_plain(USER, PW))
    r.cmd("MAIL FROM:<news@customer.test>")
    r.cmd("RCPT TO:<rcpt@dest.test>")
    assert r.cmd("DATA")[0] == 354
    t0 = time.time()
    code = None
    for _ in range(40):  # one byte a second: slowloris
        try:
            r.send("x")
        except OSError:
            break
        r.sock.settimeout(1.0)
        try:
            code, text = r.reply()
            break
        except socket.timeout:
            continue
    assert code == 421, code
    assert time.time() - t0 < 20


# --- sender-domain authorization end to end (issue 4) -------------------------

def test_policy_refusals_and_acceptance(ctx):
    r = login(ctx)
    assert r.cmd("MAIL FROM:<news@customer.test>")[0] == 250
    r.cmd("RSET")
    code, text = r.cmd("MAIL FROM:<news@nospf.test>")
    assert code == 550 and text[0].startswith("5.7.1 nospf.test has no SPF record containing include:elastx.email"), text
    code, text = r.cmd("MAIL FROM:<news@notoken.test>")
    assert code == 550 and text[0].startswith("5.7.1") and token_for(USER) in text[0], text
    code, text = r.cmd("MAIL FROM:<news@bobs.test>")  # another user's token does not help
    assert code == 550 and token_for(USER) in text[0], text
    code, text = r.cmd("MAIL FROM:<news@missing.test>")
    assert code == 550 and text[0].startswith("5.7.1"), text
    code, text = r.cmd("MAIL FROM:<news@[127.0.0.1]>")
    assert code == 550, text
    r.close()


def test_dns_timeout_is_451(h):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    m = h.mrs(env={"MRS_DNS_SERVERS": f"127.0.0.1:{silent.getsockname()[1]}",
                   "MRS_DNS_TIMEOUT": "500ms", "MRS_DNS_DEADLINE": "2s"})
    r = m.raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    r.cmd("AUTH PLAIN " + auth_plain(USER, PW))
    t0 = time.time()
    code, text = r.cmd("MAIL FROM:<news@customer.test>")
    assert code == 451 and text[0].startswith("4.4.3"), (code, text)
    assert time.time() - t0 < 15
    r.close()
    silent.close()


def test_header_from_checked(ctx):
    m = ctx["mrs"]
    s = m.smtp(login=(USER, PW))
    s.mail("news@customer.test")
    s.rcpt("rcpt@dest.test")
    code, text = s.data(b"From: Mallory <ceo@notoken.test>\r\nSubject: x\r\n\r\nhi\r\n")
    assert code == 550 and text.startswith(b"5.7.1"), (code, text)
    s.mail("news@customer.test")
    s.rcpt("rcpt@dest.test")
    code, text = s.data(b"Subject: no from at all\r\n\r\nhi\r\n")
    assert code == 550, (code, text)
    s.mail("news@customer.test")
    s.rcpt("rcpt@dest.test")
    code, text = s.data(b"From: \"Alice, the sender\" <alice@CUSTOMER.test>\r\n\r\nhi\r\n")
    assert code == 250, (code, text)
    s.quit()


def test_header_from_check_can_be_off(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_CHECK_HEADER_FROM": "off"})
    s = m.smtp(login=(USER, PW))
    s.mail("news@customer.test")
    s.rcpt("rcpt@dest.test")
    code, _ = s.data(b"From: someone@notoken.test\r\n\r\nhi\r\n")
    assert code == 250
    s.quit()


def test_ipv6_loopback_listener(h):
    if not socket.has_ipv6:
        return
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError:
        return  # no IPv6 on this host
    m = h.mrs(env={"MRS_SUBMISSION_LISTEN": f"[::1]:{port}"})
    s = smtplib.SMTP("::1", port, timeout=10)
    assert s.ehlo()[0] == 250
    s.quit()
    assert m.proc.alive()
