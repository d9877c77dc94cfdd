"""Server overhead (issue 11).  Session threads are reused (src/listener.c): a session thread
whose session ended parks for a while and serves the next connection, so a
connection does not cost a thread creation and exit.  Parked threads end
after their wait and at shutdown.  No timing is asserted; every wait is
bounded.
"""
import os
import time

from harness import Raw, auth_plain


def tids(pid):
    return set(os.listdir(f"/proc/{pid}/task"))


def session(m, tls=False):
    r = Raw(("127.0.0.1", m.submission_port), timeout=30)
    assert r.reply()[0] == 220 and r.cmd("EHLO client.test")[0] == 250
    if tls:
        assert r.cmd("STARTTLS")[0] == 220
        r.starttls()
        code, texts = r.cmd("EHLO client.test")
        assert code == 250 and any(t.startswith("AUTH") for t in texts), texts
    return r


def test_sequential_sessions_share_their_threads_and_parked_ones_end(h):
    m = h.mrs()
    pid = m.proc.p.pid
    before = tids(pid)
    serving = set()
    for i in range(10):
        r = session(m, tls=i % 2 == 1)
        serving |= tids(pid) - before  # this session's thread is alive now
        assert r.cmd("QUIT")[0] == 221 and r.closed()
        r.close()
    # one thread per connection would have made 10; a parked thread takes
    # the next connection (more than one only when a session thread had not
    # parked yet when the next connection came)
    assert 1 <= len(serving) < 10, serving
    # each session on a reused thread starts afresh: no AUTH before STARTTLS
    r = session(m)
    assert r.cmd("AUTH PLAIN AGFAAA==")[0] == 530
    assert r.cmd("QUIT")[0] == 221
    r.close()
    # parked threads end after their wait (bounded loop)
    for _ in range(600):
        if not (tids(pid) - before):
            break
        time.sleep(0.1)
    assert not (tids(pid) - before), tids(pid) - before
    assert m.stop() == 0


def test_shutdown_with_parked_threads(h):
    m = h.mrs()
    rs = [session(m) for _ in range(6)]
    for r in rs:
        assert r.cmd("QUIT")[0] == 221 and r.closed()
        r.close()
    assert m.stop() == 0  # parked threads do not hold the drain
    assert "stopped" in m.log()


def test_concurrent_first_auths_run_argon2id_once(h):
    """After a start (empty verify cache) many sessions of one client AUTH
    at once with the same password: one Argon2id run verifies it, the
    sessions that waited for their turn find it verified (issue 11)."""
    user, pw = "alice@customer.test", "alice-secret"
    m = h.mrs(env={"MRS_LOG_LEVEL": "debug", "MRS_AUTH_CONCURRENCY": "1"}, users={user: pw})
    n = 12
    sessions = [session(m, tls=True) for _ in range(n)]  # all past STARTTLS before any AUTH
    for r in sessions:
        r.send("AUTH PLAIN " + auth_plain(user, pw) + "\r\n")
    codes = [r.reply()[0] for r in sessions]
    for r in sessions:
        r.close()
    assert codes == [235] * n, codes
    runs = m.log().count("verifying a password with Argon2id")
    assert runs == 1, runs
