"""Process lifecycle (SPEC §6, issue 6): drain on SIGTERM, reload on
SIGHUP, per-user rate limits."""
import os
import signal
import subprocess
import time

from harness import SPF_OK, auth_plain, free_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"',
        f'customer.test. TXT "{token_for("carol@customer.test")}"']
HOLD = {"MRS_SMARTHOST": None, "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "1h", "MRS_SMARTHOST_TLS": "none"}


def hold_env(extra=None):
    env = dict(HOLD, MRS_SMARTHOST=f"127.0.0.1:{free_port()}")
    env.update(extra or {})
    return env


def start_data(m, user=USER, pw=PW):
    r = m.raw(tls=True)
    r.reply()
    r.cmd("EHLO client.test")
    assert r.cmd("AUTH PLAIN " + auth_plain(user, pw))[0] == 235
    assert r.cmd("MAIL FROM:<news@customer.test>")[0] == 250
    assert r.cmd("RCPT TO:<rcpt@dest.test>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    return r


def test_sigterm_mid_data_finishes_then_exits_0(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env=hold_env({"MRS_SHUTDOWN_GRACE": "10s"}))
    busy = start_data(m)
    busy.send("From: news@customer.test\r\nSubject: drain\r\n\r\nfirst half\r\n")
    idle = m.raw()
    idle.reply()
    t0 = time.time()
    m.proc.send_signal(signal.SIGTERM)
    # an idle session is closed at once with 421 4.3.2
    code, text = idle.reply()
    assert code == 421 and text[0].startswith("4.3.2"), (code, text)
    # while draining: not ready, still alive
    code, body = m.http("GET", "/readyz")
    assert code == 503 and "drain" in body, (code, body)
    assert m.http("GET", "/healthz")[0] == 200
    # the session in DATA may finish: its message gets 250 and is on disk
    busy.send("second half\r\n.\r\n")
    code, text = busy.reply()
    assert code == 250, (code, text)
    qid = text[0].rsplit(" ", 1)[1]
    assert qid in m.spool_files()
    assert m.proc.p.wait(15) == 0
    assert time.time() - t0 < 10
    busy.close()


def test_sigterm_grace_expiry_never_acknowledges_unsaved(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env=hold_env({"MRS_SHUTDOWN_GRACE": "1s"}))
    busy = start_data(m)
    busy.send("From: news@customer.test\r\n\r\nstarted but never finished\r\n")
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.p.wait(10) == 0
    busy.sock.settimeout(2)
    try:
        data = busy.sock.recv(1000)
    except OSError:
        data = b""
    assert not data.startswith(b"250"), data
    assert m.spool_files() == []


def test_sighup_reloads_users_without_dropping_sessions(h):
    dns = h.dns(ZONE)
    users = os.path.join(h.tmp, "users-reload")
    with open(users, "w") as f:
        f.write(f"# users\n{USER}:{h.password_hash(PW)}\n")
    m = h.mrs(dns=dns, env=hold_env({"MRS_USERS": None, "MRS_USERS_FILE": users}), users={})
    open_session = m.smtp(login=(USER, PW))
    with open(users + ".new", "w") as f:
        f.write(f"carol@customer.test:{h.password_hash('carol-pw')}\n")
    os.rename(users + ".new", users)
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "users reloaded" not in m.log() and time.time() < deadline:
        time.sleep(0.05)
    assert "users reloaded" in m.log()
    s = m.smtp(login=("carol@customer.test", "carol-pw"))
    s.quit()
    s = m.smtp()
    try:
        s.login(USER, PW)
        raise AssertionError("removed user still accepted")
    except Exception as e:  # noqa: BLE001
        assert getattr(e, "smtp_code", None) == 535, e
    s.close()
    # the session opened before the reload goes on
    assert open_session.mail("news@customer.test")[0] == 250
    assert open_session.rcpt("rcpt@dest.test")[0] == 250
    assert open_session.data(b"From: news@customer.test\r\n\r\nafter reload\r\n")[0] == 250
    open_session.quit()


def test_sighup_with_broken_users_file_keeps_old_table(h):
    users = os.path.join(h.tmp, "users-broken")
    with open(users, "w") as f:
        f.write(f"{USER}:{h.password_hash(PW)}\n")
    m = h.mrs(env={"MRS_USERS": None, "MRS_USERS_FILE": users}, users={})
    with open(users, "w") as f:
        f.write("this line is not an entry\n")
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "users not reloaded" not in m.log() and time.time() < deadline:
        time.sleep(0.05)
    assert "users not reloaded" in m.log()
    m.smtp(login=(USER, PW)).quit()


def fingerprint(port):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"], input="",
                       capture_output=True, text=True, timeout=20)
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=r.stdout,
                       capture_output=True, text=True)
    return x.stdout.strip()


def test_sighup_reloads_certificate_and_refuses_a_broken_one(h):
    cert, key = h.self_signed("one.test")
    d = os.path.join(h.tmp, "live-cert")
    os.makedirs(d, exist_ok=True)
    live_cert, live_key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    for src, dst in ((cert, live_cert), (key, live_key)):
        with open(src) as a, open(dst, "w") as b:
            b.write(a.read())
    m = h.mrs(env={"MRS_TLS_CERT": live_cert, "MRS_TLS_KEY": live_key})
    first = fingerprint(m.submissions_port)
    assert first
    with open(live_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "certificate not reloaded" not in m.log() and time.time() < deadline:
        time.sleep(0.05)
    assert "certificate not reloaded" in m.log()
    assert fingerprint(m.submissions_port) == first
    cert2, key2 = h.self_signed("two.test")
    for src, dst in ((cert2, live_cert), (key2, live_key)):
        with open(src) as a, open(dst, "w") as b:
            b.write(a.read())
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "certificate reloaded" not in m.log() and time.time() < deadline:
        time.sleep(0.05)
    second = fingerprint(m.submissions_port)
    assert second and second != first


def test_rate_limit_per_user(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env=hold_env({"MRS_RATE_LIMIT": "3/h"}),
              users={USER: PW, "carol@customer.test": "carol-pw"})
    s = m.smtp(login=(USER, PW))
    for i in range(3):
        assert s.mail("news@customer.test")[0] == 250
        assert s.rcpt("rcpt@dest.test")[0] == 250
        assert s.data(f"From: news@customer.test\r\n\r\nmessage {i}\r\n".encode())[0] == 250
    code, text = s.mail("news@customer.test")
    assert code == 450 and text.startswith(b"4.7.1"), (code, text)
    s.quit()
    # another user has a window of their own
    s = m.smtp(login=("carol@customer.test", "carol-pw"))
    assert s.mail("news@customer.test")[0] == 250
    s.quit()
    code, metrics = m.http("GET", "/metrics")
    assert 'mrs_messages_refused_total{reason="rate_limit"} 1' in metrics
