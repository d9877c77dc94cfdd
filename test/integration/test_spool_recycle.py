"""Recycled spool files (performance issue 11, docs/spool.md "Recycled
files"): a finished message's file is renamed to tmp/recycle.<n> instead of
being unlinked, and a later message is written over it in place.

What is checked, black-box on the real relay, a real smarthost sink
(aiosmtpd) and real DNS (unbound):
- after deliveries, tmp/ holds the finished files, and new messages land in
  queue/ on those very inodes (st_ino), holding only their own bytes: a
  short message written over a long one is cut to its length, on disk and
  at the sink (byte for byte), with and without DKIM keys (the head written
  last into reserved room);
- a restart removes the recycled files, loads no message from them and
  delivers nothing again;
- SIGKILL right after the 250 of a message written over a recycled file
  loses nothing: the restarted relay delivers it, byte for byte, once;
- a message refused while being written (over the size limit) leaves no
  file and none of its bytes in tmp/;
- `mrs queue` and /readyz do not count recycled files;
- a message the operator deletes (`mrs queue delete`) is unlinked, not
  recycled: none of its bytes wait in tmp/.
"""
import os
import signal
import subprocess
import time
import uuid

from harness import SPF_OK, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"']
DEFER = "451 4.3.0 not now (test)"


class Ctx:
    pass


def setup(h):
    ctx = Ctx()
    ctx.h = h
    ctx.dns = h.dns(ZONE)
    r = subprocess.run([h.mrs_bin, "dkim-keygen", "ed25519"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    ctx.key = os.path.join(h.tmp, "recycle-dkim.pem")
    with open(ctx.key, "w") as f:
        f.write(r.stdout)
    return ctx


def teardown(ctx):
    pass


# ---- helpers ---------------------------------------------------------------

def relay(ctx, sink, spool=None, dkim=False, **env):
    e = {"MRS_SMARTHOST": f"127.0.0.1:{sink.port}", "MRS_SMARTHOST_TLS": "none",
         "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h", "MRS_DELIVERY_THREADS": "2"}
    if dkim:
        e.update({"MRS_DKIM_KEYS": f"s1:{ctx.key}", "MRS_DKIM_DOMAIN": "keys.relay.test"})
    e.update(env)
    return ctx.h.mrs(dns=ctx.dns, env=e, spool=spool, users={USER: PW})


def new_token():
    return "r-" + uuid.uuid4().hex[:16]


def message(tok, body_bytes=200):
    line = (tok + " ").encode() * 4 + b"\r\n"
    body = line * max(1, body_bytes // len(line))
    return (f"From: <{USER}>\r\nTo: <bob@dest.test>\r\nSubject: {tok}\r\n"
            f"Message-ID: <{tok}@customer.test>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n").encode() + body


def submit(m, data):
    s = m.smtp(login=(USER, PW))
    try:
        assert s.mail(USER)[0] == 250 and s.rcpt("bob@dest.test")[0] == 250
        code, text = s.data(data)
    finally:
        s.close()
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[1]


def wait_for(what, pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def queued(m):
    return [f for f in m.spool_files() if "." not in f]


def recycled(m):
    """{name: inode} of tmp/'s recycled files."""
    d = os.path.join(m.spool, "tmp")
    return {f: os.stat(os.path.join(d, f)).st_ino for f in os.listdir(d) if f.startswith("recycle.")}


def at_sink(sink, tok):
    with sink.cond:
        return [x["data"] for x in sink.messages if tok.encode() in x["data"]]


def deliver(m, sink, data, tok):
    """Submit, wait until the sink has it and its file has left queue/."""
    submit(m, data)
    wait_for(f"{tok} at the sink", lambda: at_sink(sink, tok))
    wait_for("an empty queue", lambda: not queued(m))


def fill(ctx, m, sink, count, body_bytes=40000):
    """count long messages in queue/ at once (the sink defers them), then
    delivered by a flush: their files wait in tmp/.  Returns their tokens
    and the inodes their files had in queue/."""
    sink.data_reply = DEFER
    toks = [new_token() for _ in range(count)]
    qids = [submit(m, message(t, body_bytes)) for t in toks]
    inodes = {os.stat(os.path.join(m.spool, "queue", q)).st_ino for q in qids}
    wait_for("the deferrals", lambda: states(m) == count)
    sink.data_reply = None
    flush_until_delivered(ctx, m, sink, toks)
    wait_for("an empty queue", lambda: not queued(m))
    return toks, inodes


def states(m):
    return len([f for f in m.spool_files() if f.endswith(".state")])


def mrs_queue(ctx, m):
    r = subprocess.run([ctx.h.mrs_bin, "queue"], env=m.env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    return r.stdout


def flush_until_delivered(ctx, m, sink, toks):
    """`mrs queue flush` until the sink has every one of toks (a flush that
    finds a message still in its deferred attempt does nothing)."""
    for _ in range(100):
        subprocess.run([ctx.h.mrs_bin, "queue", "flush"], env=m.env, capture_output=True, timeout=30)
        if all(at_sink(sink, t) for t in toks):
            return
        time.sleep(0.1)
    raise AssertionError(f"{toks} not delivered after flushes")


# ---- tests -----------------------------------------------------------------

def reuse_case(ctx, dkim):
    sink = ctx.h.sink()
    m = relay(ctx, sink, dkim=dkim)
    long_toks, inodes = fill(ctx, m, sink, 4)
    spare = recycled(m)
    assert set(spare.values()) == inodes, (sorted(os.listdir(os.path.join(m.spool, "tmp"))), inodes)
    assert sorted(os.listdir(os.path.join(m.spool, "tmp"))) == sorted(spare)
    assert "0 message(s)" in mrs_queue(ctx, m)
    assert m.http("GET", "/readyz")[0] == 200
    sink.data_reply = DEFER  # the short ones stay in queue/, deferred
    short = []
    for _ in range(2):
        tok = new_token()
        data = message(tok)
        qid = submit(m, data)
        path = os.path.join(m.spool, "queue", qid)
        # the new message lives on a finished message's inode ...
        assert os.stat(path).st_ino in spare.values(), (os.stat(path).st_ino, spare)
        with open(path, "rb") as f:
            disk = f.read()
        # ... holding its own bytes only: envelope, head, body, nothing after
        assert disk.startswith(f"MRS-SPOOL 1\nid {qid}\n".encode()), disk[:80]
        assert disk.endswith(data.split(b"\r\n\r\n", 1)[1]), disk[-200:]
        assert not any(t.encode() in disk for t in long_toks)
        short.append((tok, data))
    assert len(recycled(m)) == 2, "each new message took one recycled file"
    wait_for("the deferrals", lambda: states(m) == 2)
    sink.data_reply = None
    flush_until_delivered(ctx, m, sink, [t for t, _ in short])
    for tok, data in short:
        got = at_sink(sink, tok)
        assert len(got) == 1 and got[0].endswith(data), got[0][-300:]
        assert not any(t.encode() in got[0] for t in long_toks)
    for t in long_toks:
        assert len(at_sink(sink, t)) == 1
    assert m.stop() == 0


def test_new_messages_are_written_over_finished_files(ctx):
    reuse_case(ctx, dkim=False)


def test_new_messages_are_written_over_finished_files_with_dkim_room(ctx):
    reuse_case(ctx, dkim=True)


def test_restart_removes_recycled_files_and_loads_nothing_from_them(ctx):
    sink = ctx.h.sink()
    m = relay(ctx, sink)
    toks, inodes = fill(ctx, m, sink, 3)
    assert set(recycled(m).values()) == inodes
    spool = m.spool
    assert m.stop() == 0
    m = relay(ctx, sink, spool=spool)
    assert "with 0 queued message(s)" in m.log(), m.log()[-2000:]
    assert os.listdir(os.path.join(spool, "tmp")) == []
    assert "0 message(s)" in mrs_queue(ctx, m)
    marker = new_token()
    deliver(m, sink, message(marker), marker)
    for t in toks:
        assert len(at_sink(sink, t)) == 1, f"{t} delivered again"
    assert len(sink.messages) == 4  # the 3 (a 451 keeps nothing at the sink) and the marker
    assert m.stop() == 0


def test_kill_9_after_the_reply_loses_no_message_written_over_a_recycled_file(ctx):
    sink = ctx.h.sink()
    m = relay(ctx, sink)
    long_toks, inodes = fill(ctx, m, sink, 3)
    spare = recycled(m)
    assert set(spare.values()) == inodes
    sink.data_reply = DEFER  # not delivered before the kill
    tok = new_token()
    data = message(tok)
    qid = submit(m, data)
    assert os.stat(os.path.join(m.spool, "queue", qid)).st_ino in spare.values()
    m.stop(signal.SIGKILL)
    sink.data_reply = None
    spool = m.spool
    m = relay(ctx, sink, spool=spool)
    assert "with 1 queued message(s)" in m.log(), m.log()[-2000:]
    # the deferred attempt may have run (and saved its retry an hour on)
    # before the kill: a flush brings the message's turn forward
    flush_until_delivered(ctx, m, sink, [tok])
    wait_for("an empty queue", lambda: not queued(m))
    got = at_sink(sink, tok)
    assert len(got) == 1 and got[0].endswith(data), [g[-300:] for g in got]
    assert not any(t.encode() in got[0] for t in long_toks)
    assert m.stop() == 0


def test_refused_message_leaves_nothing_in_tmp(ctx):
    sink = ctx.h.sink()
    m = relay(ctx, sink, MRS_MAX_MESSAGE_BYTES="100000")
    _, inodes = fill(ctx, m, sink, 3, body_bytes=20000)
    assert set(recycled(m).values()) == inodes
    tok = new_token()
    s = m.smtp(login=(USER, PW))
    assert s.mail(USER)[0] == 250 and s.rcpt("bob@dest.test")[0] == 250
    code, text = s.data(message(tok, 300000))
    s.close()
    assert code == 552, (code, text)
    tmp = os.path.join(m.spool, "tmp")
    names = os.listdir(tmp)
    # the upload was written over one recycled file, which went with it
    assert len(names) == 2 and all(n.startswith("recycle.") for n in names), names
    for n in names:
        with open(os.path.join(tmp, n), "rb") as f:
            assert tok.encode() not in f.read()
    assert not queued(m) and not at_sink(sink, tok)
    assert m.stop() == 0


def test_a_big_message_file_is_not_kept(ctx):
    """Over 128 KB (QUEUE_RECYCLE_FILE_MAX_BYTES) a finished file is unlinked,
    not kept: the disk a recycled file holds stays bounded (docs/spool.md)."""
    sink = ctx.h.sink()
    m = relay(ctx, sink)
    small = new_token()
    deliver(m, sink, message(small, 20000), small)
    assert len(recycled(m)) == 1
    before = recycled(m)
    big = new_token()
    deliver(m, sink, message(big, 300000), big)
    assert len(at_sink(sink, big)) == 1
    tmp = os.path.join(m.spool, "tmp")
    sizes = {f: os.stat(os.path.join(tmp, f)).st_size for f in recycled(m)}
    # the big file is gone (a new file or the small one's, written over)
    assert all(n <= 128 * 1024 for n in sizes.values()), sizes
    assert set(recycled(m).values()) <= set(before.values()), (before, recycled(m))
    assert m.stop() == 0


def test_a_deleted_message_is_unlinked_not_recycled(ctx):
    """`mrs queue delete`: the message's file is unlinked, as before
    recycling; renamed to tmp/recycle.<n> its bytes would stay readable
    there (mode 0640) until a new message happened to be written over
    them, on an idle relay until the next restart."""
    sink = ctx.h.sink()
    m = relay(ctx, sink)
    sink.data_reply = DEFER  # it stays queued, its attempt over
    tok = new_token()
    qid = submit(m, message(tok, 20000))
    wait_for("the deferral", lambda: states(m) == 1)
    r = subprocess.run([ctx.h.mrs_bin, "queue", "delete", qid], env=m.env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "delete" in r.stdout, r
    # deleted at once, or when the attempt under way ends
    wait_for("its removal", lambda: not queued(m) and states(m) == 0)
    assert m.tmp_leftovers(tok) == [], sorted(os.listdir(os.path.join(m.spool, "tmp")))
    assert recycled(m) == {}
    assert not at_sink(sink, tok)
    assert m.stop() == 0
