"""Abuse (issue 7): connection floods, slowloris, password guessing, a
1 GB DATA stream, garbage.  Bounded in count and time, loopback only."""
import os
import resource
import selectors
import socket
import ssl
import time

from harness import SPF_OK, auth_plain, free_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"']


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n, hard) if hard != resource.RLIM_INFINITY else n
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_sessions(m, n, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, text = m.http("GET", "/metrics")
        open_now = sum(int(float(ln.split()[-1])) for ln in text.splitlines()
                       if ln.startswith("mrs_sessions_open{"))
        if open_now == n:
            return
        time.sleep(0.1)
    raise AssertionError(f"sessions_open did not reach {n}")


def first_lines(socks, timeout=30):
    """The first line each socket receives (or '' when it closes first)."""
    sel = selectors.DefaultSelector()
    got, bufs = {}, {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.time() + timeout
    while len(got) < len(socks) and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(512)
            except OSError:
                data = b""
            bufs[s] = bufs.get(s, b"") + data
            if b"\r\n" in bufs[s] or not data:
                got[s] = bufs[s].split(b"\r\n")[0].decode(errors="replace")
                sel.unregister(s)
    sel.close()
    return got


def test_connection_flood_5000_against_1000(h):
    limit = raise_nofile(20000)
    if limit < 6500:
        return  # the machine does not allow enough descriptors
    # one client address: the per-client cap is lifted to test the global one
    m = h.mrs(env={"MRS_MAX_CONNECTIONS": "1000", "MRS_PREAUTH_TIMEOUT": "60s",
                   "MRS_MAX_CONNECTIONS_PER_CLIENT": "10000"})
    time.sleep(0.3)
    baseline = rss_kb(m.proc.pid)
    socks = []
    for _ in range(5000):
        s = socket.socket()
        s.settimeout(10)
        s.connect(("127.0.0.1", m.submission_port))
        socks.append(s)
    lines = first_lines(socks)
    greeted = [s for s, ln in lines.items() if ln.startswith("220 ")]
    refused = [s for s, ln in lines.items() if ln.startswith("421 4.7.0")]
    assert len(greeted) == 1000, (len(greeted), len(refused))
    assert len(refused) == 4000, (len(greeted), len(refused))
    peak = rss_kb(m.proc.pid)
    # the established sessions keep working
    s = greeted[0]
    s.setblocking(True)
    s.settimeout(10)
    s.sendall(b"NOOP\r\n")
    assert s.recv(100).startswith(b"250"), "held session stopped working"
    for s in socks:
        s.close()
    wait_sessions(m, 0)
    time.sleep(0.5)
    after = rss_kb(m.proc.pid)
    print(f"flood: RSS baseline {baseline} KB, with 1000 sessions {peak} KB, after {after} KB")
    # (AddressSanitizer keeps freed memory in quarantine: no return to check there)
    assert h.build.endswith("/asan") or after < baseline + (peak - baseline) / 2 + 2048, (baseline, peak, after)
    r = m.raw()
    assert r.reply()[0] == 220
    r.close()


def test_slowloris_command_closed_by_timeout(h):
    m = h.mrs(env={"MRS_PREAUTH_TIMEOUT": "2s"})
    r = m.raw()
    r.reply()
    t0 = time.time()
    closed = False
    for ch in "EHLO slow.client.test\r\n":
        try:
            r.send(ch)
        except OSError:
            closed = True
            break
        time.sleep(0.4)
        r.sock.settimeout(0.01)
        try:
            data = r.sock.recv(200)
            if data.startswith(b"421") or not data:
                closed = True
                break
        except socket.timeout:
            pass
    assert closed, "a byte-at-a-time client was not cut off"
    assert time.time() - t0 < 6


def test_password_guessing_from_one_address_is_throttled(h):
    m = h.mrs(env={"MRS_MAX_CONNECTIONS_PER_CLIENT": "100"})  # 50 guesses in flight
    t0 = time.time()
    verified = blocked = other = 0
    sel = selectors.DefaultSelector()
    attempts = 0
    pending = []

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def start():
        nonlocal attempts
        attempts += 1
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", m.submissions_port), timeout=10))
        s.sendall(b"EHLO guesser.test\r\nAUTH PLAIN " + auth_plain(USER, f"guess{attempts}").encode() + b"\r\n")
        return s

    # 1000 attempts, 50 at a time, bounded to 60 s
    while attempts < 1000 and time.time() - t0 < 60:
        while len(pending) < 50 and attempts < 1000:
            pending.append(start())
        s = pending.pop(0)
        buf = b""
        s.settimeout(10)
        try:
            while b"\r\n5" not in buf and b"\r\n4" not in buf and len(buf) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        if b"535 5.7.8" in buf:
            verified += 1
        elif b"454 4.7.0" in buf:
            blocked += 1
        else:
            other += 1
        s.close()
    for s in pending:
        s.close()
    elapsed = time.time() - t0
    print(f"guessing: {attempts} attempts in {elapsed:.1f}s, {verified} passwords checked, "
          f"{blocked} refused unchecked, {other} other; {verified / elapsed:.2f} checks/s allowed")
    # the block threshold, plus those whose Argon2id run had already begun
    assert verified <= 20 + 2 + 2, verified
    assert blocked >= attempts - verified - other - 50
    sel.close()


def test_one_gigabyte_data_refused_without_memory_growth(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_MAX_MESSAGE_BYTES": "10M", "MRS_IDLE_TIMEOUT": "30s",
                            "MRS_SMARTHOST": f"127.0.0.1:{free_port()}", "MRS_RETRY_MIN": "1h",
                            "MRS_RETRY_MAX": "1h"})
    s = m.smtps(login=(USER, PW), timeout=120)
    assert s.mail("news@customer.test")[0] == 250
    assert s.rcpt("rcpt@dest.test")[0] == 250
    code, _ = s.putcmd("DATA") or s.getreply()
    assert code == 354
    before = rss_kb(m.proc.pid, "VmHWM")  # the peak so far includes one Argon2id verification
    line = b"x" * 1022 + b"\r\n"
    chunk = line * 1024  # 1 MiB
    sock = s.sock
    t0 = time.time()
    sock.sendall(b"From: news@customer.test\r\n\r\n")
    for _ in range(1024):
        sock.sendall(chunk)
    sock.sendall(b".\r\n")
    code, text = s.getreply()
    elapsed = time.time() - t0
    peak = rss_kb(m.proc.pid, "VmHWM")
    print(f"1 GiB DATA: refused in {elapsed:.1f}s, peak RSS before {before} KB, after {peak} KB")
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    assert peak < before + 16 * 1024, (before, peak)
    assert s.noop()[0] == 250
    s.quit()
    assert m.spool_files() == []
    assert os.listdir(os.path.join(m.spool, "tmp")) == []


def test_garbage_and_tls_on_plaintext_port(h):
    m = h.mrs()
    junk = os.urandom(64 * 1024)
    for payload in (junk, bytes.fromhex("160301020001") + os.urandom(512), b"\x00" * 4096):
        s = socket.create_connection(("127.0.0.1", m.submission_port), timeout=10)
        s.recv(100)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    assert m.proc.alive()
    r = m.raw()
    assert r.reply()[0] == 220
    assert r.cmd("EHLO ok.test")[0] == 250
    r.close()
