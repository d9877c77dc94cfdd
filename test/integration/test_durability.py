"""Durability errors in the queue (issue 10, items 3, 4, 5): the syscalls
really fail, and what happens next is checked, not the log line alone.

- A full spool (ENOSPC): the relay runs in a private mount namespace of its
  own (`unshare -m`) whose spool is a 1 MiB tmpfs; the test fills it through
  /proc/PID/root.  The mount dies with the process, so nothing is left
  mounted whatever happens to the test.
- A message file that cannot be removed: in the relay's namespace the file
  is bind-mounted onto itself (`nsenter -m mount --bind`), so unlink() gets
  EBUSY, as root and on any file system.
- An envelope that cannot be read: queue/<id> is a directory, so read()
  gets EISDIR: an I/O error, not a parse error.
- An envelope that cannot be parsed: written straight into the spool.

Real DNS (unbound), real SMTP sinks (aiosmtpd) on 127.0.0.3x, the real relay.
"""
import email
import email.policy
import errno
import os
import random
import shutil
import subprocess
import time
import uuid

from harness import SPF_OK, Proc, free_port, token_for

USER = ("alice@customer.test", "alice-secret")
SENDER = "alice@customer.test"

ZONE = [
    f'customer.test. TXT "{SPF_OK}"',
    f'customer.test. TXT "{token_for(USER[0])}"',
    "customer.test. MX 10 mx.customer.test.", "mx.customer.test. A 127.0.0.32",
    "a.dura.test. MX 10 mx.a.dura.test.", "mx.a.dura.test. A 127.0.0.30",
    "b.dura.test. MX 10 mx.b.dura.test.", "mx.b.dura.test. A 127.0.0.31",
]


class Ctx:
    pass


def setup(h):
    ctx = Ctx()
    ctx.h = h
    ctx.dns = h.dns(ZONE)
    for _ in range(50):
        ctx.port = free_port("127.0.0.30")
        try:
            ctx.a = h.sink(addr="127.0.0.30", port=ctx.port)
            ctx.b = h.sink(addr="127.0.0.31", port=ctx.port)
            ctx.senders = h.sink(addr="127.0.0.32", port=ctx.port)
            break
        except OSError:
            for s in h.sinks:
                s.stop()
            h.sinks = []
    ctx.cert = h.self_signed("mrs.test")
    return ctx


def teardown(ctx):
    pass


# ---- helpers ---------------------------------------------------------------

def relay(ctx, spool=None, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx.port), "MRS_RETRY_MIN": "1s", "MRS_RETRY_MAX": "2s",
            "MRS_DELIVERY_THREADS": "2", "MRS_DELIVERY_CONNECT_TIMEOUT": "3s",
            "MRS_TLS_CERT": ctx.cert[0], "MRS_TLS_KEY": ctx.cert[1]}
    base.update(env)
    return ctx.h.mrs(dns=ctx.dns, env=base, spool=spool, start=False)


def start_in_namespace(m, tmpfs_bytes=None):
    """Start relay m in a mount namespace of its own; with tmpfs_bytes its
    spool is a tmpfs of that size there (empty, and seen by the test only
    through /proc/PID/root).  unshare and sh exec, so the pid is mrs's."""
    mount = f'mount -t tmpfs -o size={tmpfs_bytes},mode=0750 mrs-test-spool "$0" && ' if tmpfs_bytes else ""
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount + 'exec "$@"', m.spool,
            m.h.mrs_bin, "serve"]
    m.proc = Proc(m.h, "mrs", argv, env=m.env)
    m.wait_ready()
    return m


def in_ns(m, *parts):
    """A spool path as the relay (in its namespace) sees it."""
    return os.path.join(f"/proc/{m.proc.pid}/root" + m.spool, *parts)


def nsenter(m, *argv):
    # -r: the target's root, not the namespace's (they differ when the suite runs in a chroot)
    r = subprocess.run(["nsenter", "-t", str(m.proc.pid), "-m", "-r", *argv], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)


def new_token():
    return "d-" + uuid.uuid4().hex[:16]


def message(token, to):
    return (f"From: Alice <{SENDER}>\r\nTo: <{to}>\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@customer.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n").encode()


def submit(m, rcpts, token):
    s = m.smtp(login=USER)
    try:
        assert not s.sendmail(SENDER, rcpts, message(token, rcpts[0]))
    finally:
        s.quit()


def count_msgs(sink, token, rcpt=None):
    with sink.cond:
        return sum(token.encode() in x["data"] and (rcpt is None or rcpt in x["rcpt_tos"]) for x in sink.messages)


def wait_until(what, cond, timeout=20.0, m=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}" + ("\n" + m.log()[-3000:] if m else ""))


def wait_msgs(sink, token, count=1, timeout=20.0):
    wait_until(f"{count} message(s) with {token} at {sink.addr}", lambda: count_msgs(sink, token) >= count, timeout)


def wait_log_count(m, text, count, timeout=20.0):
    wait_until(f"{count} log line(s) with {text!r}", lambda: m.log().count(text) >= count, timeout, m)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def metric(m, name):
    code, text = m.http("GET", "/metrics")
    assert code == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def fill(path):
    """Write path until the file system is full (ENOSPC); bounded."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(100000):
            try:
                if os.write(fd, b"\0" * 4096) == 0:
                    break
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return
        raise AssertionError("the spool never filled up")
    finally:
        os.close(fd)


def spool_id():
    now = int(time.time() * 1000)
    return f"{now & 0xffffffffffff:012x}{random.getrandbits(32):08x}", now


def envelope(qid, now, rcpts, sender=SENDER, received=None):
    lines = ["MRS-SPOOL 1", f"id {qid}", f"received {received if received is not None else now}", "user ",
             "client ", "helo ", "body 7bit", f"from {sender}"] + [f"rcpt {r}" for r in rcpts]
    return ("\n".join(lines) + "\n\n").encode()


def state_id(qdir, m):
    """The id of the one message in qdir, once its state file exists."""
    found = []

    def look():
        found[:] = [f[:-len(".state")] for f in os.listdir(qdir) if f.endswith(".state")]
        return found
    wait_until("a state file", look, m=m)
    return found[0]


def mrs_queue(m):
    r = subprocess.run([m.h.mrs_bin, "queue"], env=m.env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ---- item 3: a state that cannot be saved ------------------------------------

def test_full_spool_never_redelivers_a_delivered_recipient(ctx):
    """a@ is delivered while the spool is full (ENOSPC on the state file):
    later attempts must not deliver it again (before the fix they reloaded
    the older state file and did, at every retry); once there is room the
    kept state is saved, and b@ still gets its mail."""
    tok = new_token()
    a, b = f"a-{tok}@a.dura.test", f"b-{tok}@b.dura.test"
    ctx.a.rcpt_replies[a] = "451 4.3.1 not yet"
    ctx.b.rcpt_replies[b] = "451 4.3.1 not yet"
    m = start_in_namespace(relay(ctx), tmpfs_bytes=1024 * 1024)
    try:
        submit(m, [a, b], tok)
        qid = state_id(in_ns(m, "queue"), m)
        fill(in_ns(m, "filler"))
        assert os.statvfs(in_ns(m)).f_bavail == 0
        del ctx.a.rcpt_replies[a]  # the next attempt delivers a@, then cannot save that
        wait_msgs(ctx.a, tok)
        wait_log_count(m, "cannot save the delivery state (errno 28)", 1)
        wait_log_count(m, f"rcpt={b}", m.log().count(f"rcpt={b}") + 3)  # two attempts after a@'s at least
        assert count_msgs(ctx.a, tok) == 1, "a delivered recipient was delivered again"
        assert "rcpt 0 delivered" not in read(in_ns(m, "queue", qid + ".state"))  # the file could not say so
        os.unlink(in_ns(m, "filler"))
        wait_until("the kept state saved", lambda: "rcpt 0 delivered" in read(in_ns(m, "queue", qid + ".state")),
                   m=m)
        del ctx.b.rcpt_replies[b]
        wait_msgs(ctx.b, tok)
        wait_until("an empty spool", lambda: not os.listdir(in_ns(m, "queue")), m=m)
        assert count_msgs(ctx.a, tok) == 1
        assert "delivery state saved after an earlier failure" in m.log()
    finally:
        ctx.a.rcpt_replies.pop(a, None)
        ctx.b.rcpt_replies.pop(b, None)
        m.stop()


# ---- item 4: a message that cannot be removed --------------------------------

def test_unremovable_message_is_not_delivered_again_after_restart(ctx):
    """The message is finished (a@ delivered, r@ bounced) but unlink() of
    its file fails (EBUSY): its state file must stay and say so, the
    removal is retried without a second bounce, and after a restart the
    message is only removed, never delivered or bounced again."""
    tok = new_token()
    a, r = f"a-{tok}@a.dura.test", f"r-{tok}@b.dura.test"
    ctx.a.rcpt_replies[a] = "451 4.3.1 not yet"
    ctx.b.rcpt_replies[r] = "550 5.1.1 no such user"
    m = start_in_namespace(relay(ctx))
    try:
        submit(m, [a, r], tok)
        qdir = os.path.join(m.spool, "queue")
        qid = state_id(qdir, m)
        msg = os.path.join(qdir, qid)
        nsenter(m, "mount", "--bind", msg, msg)  # unlink(msg) now fails with EBUSY
        del ctx.a.rcpt_replies[a]
        wait_msgs(ctx.a, tok)
        wait_log_count(m, "cannot remove the", 1)
        state = os.path.join(qdir, qid + ".state")  # written just after that log line

        def final():
            text = read(state)
            return "rcpt 0 delivered" in text and "rcpt 1 failed" in text and "\nbounced " in text
        wait_until("the state file kept, saying the message is finished and bounced", final, m=m)
        wait_log_count(m, "cannot remove the finished message (errno 16)", 3)  # retried
        assert m.stop() == 0  # the namespace and its mount are gone with the process
        assert sorted(os.listdir(qdir))[:2] == [qid, qid + ".state"]
        m.start()
        wait_until("the message removed", lambda: qid not in os.listdir(qdir), m=m)
        wait_until("an empty spool", lambda: not os.listdir(qdir), m=m)
        time.sleep(0.3)
        assert count_msgs(ctx.a, tok) == 1, "the finished message was delivered again"
        assert count_msgs(ctx.senders, tok) == 1, "the bounce was sent again"
    finally:
        ctx.a.rcpt_replies.pop(a, None)
        ctx.b.rcpt_replies.pop(r, None)
        m.stop()


# ---- item 5: envelopes that cannot be read, or parsed ------------------------

def test_envelope_read_error_is_retried_not_quarantined(ctx):
    """read() of queue/<id> fails (EISDIR): an I/O error, not a damaged
    file.  The message stays queued and is tried again; once it can be
    read it is delivered.  Before the fix it was moved to .bad forever."""
    spool = os.path.join(ctx.h.tmp, "eio-" + uuid.uuid4().hex[:8])
    os.makedirs(os.path.join(spool, "queue"))
    m = relay(ctx, spool=spool)
    tok = new_token()
    qid, now = spool_id()
    path = os.path.join(spool, "queue", qid)
    os.makedirs(os.path.join(path, "x"))  # a directory: open() works, read() gets EISDIR
    m.start()
    try:
        qdir = os.path.join(spool, "queue")
        wait_until("two tries, or the message set aside", lambda: m.log().count(f"queue/{qid}") >= 2
                   or os.path.exists(os.path.join(qdir, qid + ".bad")), m=m)
        assert sorted(os.listdir(qdir)) == [qid], "set aside instead of retried"
        assert f"cannot read queue/{qid} (errno 21); retrying later" in m.log()
        assert metric(m, "mrs_queue_quarantined") == 0
        assert f"{qid}  unreadable" in mrs_queue(m)
        shutil.rmtree(path)
        tmp = os.path.join(spool, "tmp", qid + ".test")
        with open(tmp, "wb") as f:
            f.write(envelope(qid, now, [f"x-{tok}@a.dura.test"]) + message(tok, f"x-{tok}@a.dura.test"))
        os.rename(tmp, path)
        wait_msgs(ctx.a, tok)
        wait_until("an empty spool", lambda: not os.listdir(qdir), m=m)
        assert count_msgs(ctx.senders, tok) == 0
    finally:
        m.stop()


def test_malformed_envelope_is_quarantined_counted_listed_and_bounced(ctx):
    """A parse error quarantines (queue/<id>.bad), and that is visible:
    mrs_queue_quarantined, `mrs queue`, and an RFC 3464 bounce to the
    sender the damaged envelope still names.  One with no readable sender
    is set aside without a bounce.  A restart counts them again and bounces
    nothing twice."""
    spool = os.path.join(ctx.h.tmp, "bad-" + uuid.uuid4().hex[:8])
    os.makedirs(os.path.join(spool, "queue"))
    m = relay(ctx, spool=spool)
    tok = new_token()
    rcpt = f"x-{tok}@a.dura.test"
    bad1, now = spool_id()
    bad2, _ = spool_id()
    with open(os.path.join(spool, "queue", bad1), "wb") as f:  # "received" is not a number
        f.write(envelope(bad1, now, [rcpt], received="soon") + message(tok, rcpt))
    with open(os.path.join(spool, "queue", bad2), "wb") as f:
        f.write(b"MRS-SPOOL 1\nthis is not an envelope")
    m.start()
    try:
        wait_msgs(ctx.senders, tok)
        got = [x for x in ctx.senders.messages if tok.encode() in x["data"]]
        assert len(got) == 1 and got[0]["mail_from"] in ("", "<>") and got[0]["rcpt_tos"] == [SENDER], got
        msg = email.message_from_bytes(got[0]["data"], policy=email.policy.compat32)
        assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
        parts = msg.get_payload()
        assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                         "text/rfc822-headers"]
        groups = parts[1].get_payload()
        assert groups[1]["Final-Recipient"] == f"rfc822; {rcpt}" and groups[1]["Action"] == "failed", groups[1]
        assert groups[1]["Status"] == "5.3.0", groups[1]["Status"]
        assert f"Subject: {tok}" in str(parts[2].get_payload())
        text = parts[0].get_payload()
        assert not [ln for ln in text.split("\r\n") if ln and not ln.strip()], "a line of spaces only"
        qdir = os.path.join(spool, "queue")
        wait_until("both set aside", lambda: sorted(os.listdir(qdir)) == sorted([bad1 + ".bad", bad2 + ".bad"]), m=m)
        assert count_msgs(ctx.a, tok) == 0
        assert metric(m, "mrs_queue_quarantined") == 2
        out = mrs_queue(m)
        assert f"{bad1}  quarantined" in out and f"from <{SENDER}>" in out, out
        assert f"{bad2}  quarantined" in out and "from (unreadable)" in out, out
        assert out.splitlines()[-1].startswith("0 message(s)") and "; 2 quarantined" in out.splitlines()[-1], out
        assert m.stop() == 0
        m.start()
        assert metric(m, "mrs_queue_quarantined") == 2
        assert "2 malformed message(s) set aside" in m.log()
        time.sleep(0.5)
        assert count_msgs(ctx.senders, tok) == 1
    finally:
        m.stop()
