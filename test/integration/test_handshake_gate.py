"""The server handshake gate (src/conn.c, issue 11): at most as many
server-side TLS handshake steps compute at once as mrs may use CPUs; the
waits for the client between steps hold no place.

Black-box: many concurrent clients all complete, and clients that stall in
the middle of their handshake do not keep a later client out.  No timing is
asserted; every wait is bounded.
"""
import os
import socket
import ssl
import subprocess
import threading

from harness import SPF_OK, Raw, auth_plain, token_for

USER, PW = "gate@gate.test", "gate-secret"
ZONE = [f'gate.test. TXT "{SPF_OK}"', f'gate.test. TXT "{token_for(USER)}"']


def setup(h):
    dns = h.dns(ZONE)
    env = {"MRS_SMARTHOST": "127.0.0.1:9", "MRS_SMARTHOST_TLS": "none", "MRS_RETRY_MIN": "1h",
           "MRS_RETRY_MAX": "2h", "MRS_LOG_LEVEL": "info", "MRS_PREAUTH_TIMEOUT": "1h",
           "MRS_MAX_CONNECTIONS": "1000", "MRS_MAX_CONNECTIONS_PER_CLIENT": "1000"}
    return {"h": h, "mrs": h.mrs(dns=dns, env=env, users={USER: PW})}


def submit(m, tag):
    """One whole submission over STARTTLS; the final reply code."""
    r = Raw(("127.0.0.1", m.submission_port), timeout=120)
    try:
        assert r.reply()[0] == 220
        assert r.cmd("EHLO client.test")[0] == 250
        assert r.cmd("STARTTLS")[0] == 220
        r.starttls()
        assert r.cmd("EHLO client.test")[0] == 250
        assert r.cmd("AUTH PLAIN " + auth_plain(USER, PW))[0] == 235
        assert r.cmd("MAIL FROM:<news@gate.test>")[0] == 250
        assert r.cmd("RCPT TO:<someone@example.org>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(f"From: <news@gate.test>\r\nSubject: {tag}\r\n\r\nbody\r\n.\r\n")
        return r.reply()[0]
    finally:
        r.close()


def still_open(sock):
    """True while the server has not closed the connection (no EOF yet)."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_clients_stalled_mid_handshake_do_not_keep_others_out(ctx):
    m = ctx["mrs"]
    # more stalled handshakes than the gate has places (the CPUs mrs may use)
    n = len(os.sched_getaffinity(0)) + 4
    stalled = []
    try:
        for i in range(n):
            # implicit TLS: the server's first step waits for a ClientHello
            # that never comes, or for the rest of one (a record header only)
            s = socket.create_connection(("127.0.0.1", m.submissions_port), timeout=30)
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00")
            stalled.append(s)
        for i in range(n):
            r = Raw(("127.0.0.1", m.submission_port), timeout=30)
            assert r.reply()[0] == 220 and r.cmd("EHLO c.test")[0] == 250 and r.cmd("STARTTLS")[0] == 220
            stalled.append(r.sock)  # STARTTLS answered, no handshake sent
        # a client arriving now completes its handshake and its message
        assert submit(m, "after the stalled ones") == 250
        # ... while every stalled handshake is still open: a gate held during
        # the waits would have let it in only after they timed out (20 s)
        assert all(still_open(s) for s in stalled), [still_open(s) for s in stalled]
    finally:
        for s in stalled:
            s.close()


def test_many_concurrent_tls_clients_all_complete(ctx):
    m, h = ctx["mrs"], ctx["h"]
    before = len([f for f in m.spool_files() if "." not in f])
    # 160 STARTTLS sessions at once from the load generator ...
    argv = [os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port), "-u", USER,
            "-f", "news@gate.test", "-r", "someone@example.org", "-c", "160", "-n", "320", "-s", "1000",
            "-t", "120", "-q"]
    lg = subprocess.Popen(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    # ... and 16 implicit-TLS clients of Python's ssl alongside
    codes = []

    def implicit():
        ctx_ = ssl.create_default_context()
        ctx_.check_hostname, ctx_.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", m.submissions_port), timeout=120) as raw:
            with ctx_.wrap_socket(raw) as s:
                f = s.makefile("rb")
                codes.append(int(f.readline()[:3]))
    threads = [threading.Thread(target=implicit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    out, err = lg.communicate(timeout=200)
    res = dict(kv.split("=", 1) for kv in next(ln for ln in out.splitlines() if ln.startswith("RESULT ")).split()[1:])
    assert lg.returncode == 0 and res["accepted"] == "320" and res["failures"] == "none", (res, err[-500:])
    assert codes == [220] * 16, codes
    after = len([f for f in m.spool_files() if "." not in f])
    assert after - before == 320, (before, after)
