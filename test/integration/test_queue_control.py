"""Issue 15 part 3 (SPEC 8.6): `mrs queue` list / show / flush / hold /
release / delete against a running relay, through the control socket in
the spool directory.  Messages wait for a smarthost port where nothing
listens yet; a test starts a sink there when it wants them delivered."""
import os
import signal
import stat
import subprocess
import time

from harness import SPF_OK, free_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"']


def setup(h):
    return {"h": h, "dns": h.dns(ZONE)}


def relay(ctx, port, spool=None, **env):
    e = {"MRS_SMARTHOST": f"127.0.0.1:{port}", "MRS_SMARTHOST_TLS": "none",
         "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h"}
    e.update(env)
    return ctx["h"].mrs(dns=ctx["dns"], env=e, spool=spool, users={USER: PW})


def submit(m, token, rcpts=("bob@dest.test",)):
    s = m.smtp(login=(USER, PW))
    body = f"From: {USER}\r\nTo: {rcpts[0]}\r\nSubject: {token}\r\n\r\nbody {token}\r\n"
    s.mail(USER)
    for r in rcpts:
        s.rcpt(r)
    code, text = s.data(body.encode())
    s.quit()
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[1]


def q(ctx, m, *args):
    return subprocess.run([ctx["h"].mrs_bin, "queue", *args], env=m.env, capture_output=True, text=True,
                          timeout=30)


def wait_for(pred, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def deferred(ctx, m, qid):
    return "attempts 1" in q(ctx, m, "show", qid).stdout


def metric(m, name):
    _, body = m.http("GET", "/metrics")
    for ln in body.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError(name)


def test_list_show_flush_and_socket_mode(ctx):
    port = free_port()
    m = relay(ctx, port)
    qid = submit(m, "flush-me")
    assert wait_for(lambda: deferred(ctx, m, qid)), q(ctx, m, "show", qid)
    sock = os.path.join(m.spool, "control.sock")
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    r = q(ctx, m)
    assert r.returncode == 0 and qid in r.stdout and "1 message(s), 1 recipient(s) left" in r.stdout, r
    assert "(0 on hold)" in r.stdout
    r = q(ctx, m, "show", qid)
    assert r.returncode == 0 and "<bob@dest.test>" in r.stdout and "deferred" in r.stdout, r.stdout
    assert f"user <{USER}>" in r.stdout
    # why it waits: the last error is shown
    assert "127.0.0.1" in r.stdout or "connect" in r.stdout.lower(), r.stdout
    sink = ctx["h"].sink(port=port)
    r = q(ctx, m, "flush", qid)
    assert r.returncode == 0, r
    assert sink.wait(1, timeout=20), "flush did not deliver"
    assert wait_for(lambda: q(ctx, m, "show", qid).returncode == 1)
    assert "operator: mrs queue flush" in m.log()


def test_hold_survives_restart_and_release_delivers(ctx):
    port = free_port()
    m = relay(ctx, port)
    qid = submit(m, "hold-me")
    assert wait_for(lambda: deferred(ctx, m, qid))
    r = q(ctx, m, "hold", qid)
    assert r.returncode == 0 and "on hold" in r.stdout, r
    assert "on hold" in q(ctx, m).stdout and metric(m, "mrs_queue_held") == 1
    r = q(ctx, m, "flush", qid)
    assert r.returncode == 1 and "release it first" in r.stderr, r
    r = q(ctx, m, "flush")  # flush all skips held messages
    assert r.returncode == 0 and "0 message(s) due now" in r.stdout, r
    spool = m.spool
    assert m.stop() == 0
    sink = ctx["h"].sink(port=port)
    m = relay(ctx, port, spool=spool)
    time.sleep(1)
    assert not sink.messages, "a held message was delivered after a restart"
    assert "(1 on hold)" in q(ctx, m).stdout
    r = q(ctx, m, "release", qid)
    assert r.returncode == 0, r
    assert sink.wait(1, timeout=20)
    assert metric(m, "mrs_queue_held") == 0
    assert not os.path.exists(os.path.join(spool, "queue", qid + ".hold"))


def test_delete_drops_without_a_report(ctx):
    port = free_port()
    m = relay(ctx, port)
    qid = submit(m, "delete-me")
    assert wait_for(lambda: deferred(ctx, m, qid))
    r = q(ctx, m, "delete", qid)
    assert r.returncode == 0 and "deleted" in r.stdout, r
    assert q(ctx, m, "show", qid).returncode == 1
    assert not [f for f in os.listdir(os.path.join(m.spool, "queue")) if f.startswith(qid)]
    assert "operator: mrs queue delete" in m.log()
    sink = ctx["h"].sink(port=port)
    q(ctx, m, "flush")
    time.sleep(1)
    assert not sink.messages  # no bounce, nothing delivered
    r = q(ctx, m, "delete", qid)
    assert r.returncode == 1 and "no message" in r.stderr, r


def test_held_message_still_expires_with_a_bounce(ctx):
    # Held with the lifetime still far away (no race with a loaded machine),
    # then the relay restarts with a lifetime the message has outlived.
    port = free_port()
    sink = ctx["h"].sink(port=port)
    sink.rcpt_replies["bob@dest.test"] = "451 4.2.0 not now"
    m = relay(ctx, port)
    t0 = time.time()
    qid = submit(m, "expire-held")
    assert wait_for(lambda: deferred(ctx, m, qid))
    assert q(ctx, m, "hold", qid).returncode == 0
    spool = m.spool
    assert m.stop() == 0
    assert not sink.messages
    time.sleep(max(0.0, 1.5 - (time.time() - t0)))
    m = relay(ctx, port, spool=spool, MRS_QUEUE_LIFETIME="1s")
    assert sink.wait(1, timeout=20), "no bounce for the held message"
    bounce = sink.messages[0]
    assert bounce["mail_from"] in ("", "<>") and bounce["rcpt_tos"] == [USER], bounce
    assert b"held by the operator" in bounce["data"]
    assert wait_for(lambda: q(ctx, m, "show", qid).returncode == 1)


def test_relay_not_running(ctx):
    port = free_port()
    m = relay(ctx, port)
    qid = submit(m, "offline")
    assert m.stop() == 0
    assert not os.path.exists(os.path.join(m.spool, "control.sock"))
    for args in (("hold", qid), ("release", qid), ("flush",), ("delete", qid), ("show", qid)):
        r = q(ctx, m, *args)
        assert r.returncode == 3 and "not reachable" in r.stderr, (args, r)
    r = q(ctx, m)  # the listing falls back to reading the spool
    assert r.returncode == 0 and qid in r.stdout and "not running" in r.stderr, r
    r = q(ctx, m, "hold")
    assert r.returncode == 2 and "usage" in r.stderr
    r = q(ctx, m, "hold", "not-an-id")
    assert r.returncode == 1


def test_a_silent_control_client_blocks_nothing_for_long(ctx):
    import socket as so
    port = free_port()
    m = relay(ctx, port, MRS_SHUTDOWN_GRACE="2s")
    c = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    c.connect(os.path.join(m.spool, "control.sock"))  # and never says anything
    t0 = time.time()
    r = q(ctx, m)  # served once the silent one's deadline has passed
    assert r.returncode == 0 and "message(s)" in r.stdout, r
    assert time.time() - t0 < 25
    c2 = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    c2.connect(os.path.join(m.spool, "control.sock"))
    c2.sendall(b"LIST\n")  # asks, never reads
    assert m.stop(timeout=30) == 0  # the drain is not held up by it
    c.close()
    c2.close()
