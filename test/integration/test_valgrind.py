"""valgrind memcheck over a short end-to-end session (issue 7): a plain
glibc build of the same sources (build/valgrind/mrs.debug, made by
./build.sh test) under `valgrind --error-exitcode`, one full submission with
TLS, AUTH, the DNS policy and the spool, one failed AUTH, then SIGTERM: the
process must exit 0, with no memory error and no definite leak."""
import os
import shutil
import signal
import time

from harness import SPF_OK, Mrs, Proc, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"']


def test_short_session_is_valgrind_clean(h):
    build = h.build[:-len("/asan")] if h.build.endswith("/asan") else h.build
    binary = os.path.join(build, "valgrind", "mrs.debug")
    assert shutil.which("valgrind"), "valgrind is not installed"
    assert os.path.exists(binary), f"{binary} missing: ./build.sh test builds it"
    dns = h.dns(ZONE)
    m = Mrs(h, dns=dns, start=False, env={"MRS_AUTH_CONCURRENCY": "1", "MRS_PREAUTH_TIMEOUT": "120s",
                                           "MRS_IDLE_TIMEOUT": "120s", "MRS_SHUTDOWN_GRACE": "60s"})
    m.proc = Proc(h, "valgrind", ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                                  "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                                  binary, "serve"], env=m.env)
    m.wait_ready(timeout=240)
    s = m.smtp(login=(USER, PW), timeout=120)
    assert s.mail("news@customer.test")[0] == 250
    assert s.rcpt("rcpt@dest.test")[0] == 250
    assert s.data(b"From: news@customer.test\r\nSubject: v\r\n\r\nunder valgrind\r\n")[0] == 250
    s.quit()
    s = m.smtp(timeout=120)
    try:
        s.login(USER, "wrong")
    except Exception:  # noqa: BLE001 - the 535 is what we want
        pass
    s.close()
    time.sleep(1)
    m.proc.send_signal(signal.SIGTERM)
    rc = m.proc.p.wait(180)
    out = m.proc.output()
    assert rc == 0, out[-4000:]


test_short_session_is_valgrind_clean.timeout = 420
