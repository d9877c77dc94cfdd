"""The benchmark's load generator (test/tools/loadgen.c, issue 7) against the
built relay: the real submission dialog through our own client path
(conn.c + tls.c), many sessions at once.

Regression kept here: with more than 32 TLS 1.3 handshakes in flight in one
process, mbedTLS's fixed PSA key table (32 slots) ran out and handshakes
failed with "SSL - Memory allocation failed" (fixed by
MBEDTLS_PSA_KEY_STORE_DYNAMIC in vendor/mbedtls_config.h).  No timing is
asserted: every run is bounded by its message count and its own time limit.
"""
import os
import subprocess
import tempfile

from harness import SPF_OK, free_port, token_for

USER, PW = "load@bench.test", "load-secret"
ZONE = [f'bench.test. TXT "{SPF_OK}"', f'bench.test. TXT "{token_for(USER)}"']


def setup(h):
    dns = h.dns(ZONE)
    # a closed smarthost and a long back-off: accepted messages stay queued
    env = {"MRS_SMARTHOST": f"127.0.0.1:{free_port()}", "MRS_SMARTHOST_TLS": "none",
           "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h", "MRS_LOG_LEVEL": "info",
           "MRS_MAX_CONNECTIONS": "500", "MRS_MAX_CONNECTIONS_PER_CLIENT": "500"}
    return {"h": h, "mrs": h.mrs(dns=dns, env=env, users={USER: PW})}


def loadgen(ctx, *args, timeout=150):
    h, m = ctx["h"], ctx["mrs"]
    argv = [os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port), "-u", USER,
            "-f", "news@bench.test", "-r", "someone@example.org", "-q", *args]
    r = subprocess.run(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), capture_output=True,
                       text=True, timeout=timeout)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, (r.returncode, r.stdout, r.stderr)
    return r, dict(kv.split("=", 1) for kv in line.split()[1:])


def test_64_concurrent_tls_submissions_all_accepted(ctx):
    before = len([f for f in ctx["mrs"].spool_files() if "." not in f])
    r, res = loadgen(ctx, "-c", "64", "-n", "128", "-t", "100", "-s", "2000")
    assert r.returncode == 0 and res["accepted"] == "128" and res["failed"] == "0", res
    assert res["failures"] == "none" and res["connections"] == "128", res
    after = len([f for f in ctx["mrs"].spool_files() if "." not in f])
    assert after - before == 128, (before, after)


def test_several_messages_per_connection_with_rset(ctx):
    r, res = loadgen(ctx, "-c", "1", "-k", "5", "-n", "20", "-t", "100")
    assert r.returncode == 0 and res["accepted"] == "20" and res["failed"] == "0", res
    assert res["connections"] == "4", res  # one client: 5 messages per connection


def test_pipelined_dialog(ctx):
    r, res = loadgen(ctx, "-c", "2", "-k", "3", "-n", "6", "-P", "-t", "100")
    assert r.returncode == 0 and res["accepted"] == "6" and res["failures"] == "none", res


def test_tls_session_resumption(ctx):
    r, res = loadgen(ctx, "-c", "2", "-n", "10", "-R", "-t", "100")
    assert r.returncode == 0 and res["accepted"] == "10" and res["failures"] == "none", res
    # every connection after a thread's first offers its last TLS 1.3 ticket
    # (9 if one thread happened to make them all)
    assert res["resume_offered"] in ("8", "9"), res


def test_idle_sessions_held_after_tls(ctx):
    h, m = ctx["h"], ctx["mrs"]
    argv = [os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port), "-I", "40", "-T",
            "-t", "2"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "HELD 40 of 40 TLS connections" in r.stdout, r.stdout + r.stderr
    assert "RELEASED" in r.stdout, r.stdout


def test_wrong_password_counted_by_reply_code(ctx):
    h, m = ctx["h"], ctx["mrs"]
    argv = [os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port), "-u", USER,
            "-w", "not-the-password", "-f", "news@bench.test", "-r", "someone@example.org", "-n", "1",
            "-t", "60", "-q"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert r.returncode == 1 and "failures=auth:535:1" in r.stdout, r.stdout + r.stderr


def test_refuses_a_non_loopback_address(h):
    r = subprocess.run([os.path.join(h.build, "tools", "loadgen"), "-a", "192.0.2.1", "-p", "587", "-I", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "loopback" in r.stderr, r.stderr


# ---- the OpenSSL backend (test/bench/loadgen_ossl.c, built into tools/loadgen-ossl) ----

def ossl(ctx, *args, port=None, timeout=150):
    h, m = ctx["h"], ctx["mrs"]
    exe = os.path.join(h.build, "tools", "loadgen-ossl")
    assert os.access(exe, os.X_OK), f"{exe} missing: test/bench/build-loadgen-ossl.sh {h.build}"
    argv = [exe, "-p", str(port or m.submission_port), "-u", USER, "-f", "news@bench.test",
            "-r", "someone@example.org", *args]
    r = subprocess.run(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), capture_output=True,
                       text=True, timeout=timeout)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, (r.returncode, r.stdout, r.stderr)
    return r, dict(kv.split("=", 1) for kv in line.split()[1:])


def test_openssl_backend_tls13_submissions_all_accepted(ctx):
    before = len([f for f in ctx["mrs"].spool_files() if "." not in f])
    r, res = ossl(ctx, "-c", "16", "-n", "48", "-t", "100", "-s", "2000")
    assert r.returncode == 0 and res["accepted"] == "48" and res["failed"] == "0", res
    assert res["failures"] == "none" and res["connections"] == "48", res
    assert "tls: TLSv1.3 " in r.stdout, r.stdout  # the client negotiated TLS 1.3 on OpenSSL
    assert "OpenSSL" in r.stdout and float(res["cpu_s"]) >= 0, r.stdout  # its own CPU is reported
    after = len([f for f in ctx["mrs"].spool_files() if "." not in f])
    assert after - before == 48, (before, after)


def test_openssl_backend_messages_per_connection_and_pipelining(ctx):
    r, res = ossl(ctx, "-q", "-c", "1", "-k", "5", "-n", "10", "-P", "-t", "100")
    assert r.returncode == 0 and res["accepted"] == "10" and res["connections"] == "2", res


def test_openssl_backend_resumes_sessions_with_tickets(ctx):
    r, res = ossl(ctx, "-q", "-c", "1", "-n", "6", "-R", "-t", "100")
    assert r.returncode == 0 and res["accepted"] == "6" and res["failures"] == "none", res
    # one thread: every connection after the first offers the last ticket,
    # and mrs resumes it
    assert res["resume_offered"] == "5" and res["resumed"] == "5", res


def test_openssl_backend_rsa_only_gets_the_rsa_certificate(ctx):
    h = ctx["h"]
    d = tempfile.mkdtemp(prefix="rsa-", dir=h.tmp)
    rsa_cert, rsa_key = os.path.join(d, "rsa.pem"), os.path.join(d, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsa_key,
                    "-out", rsa_cert, "-days", "2", "-subj", "/CN=mrs.test"], check=True, capture_output=True)
    ec_cert, ec_key = h.self_signed("mrs.test")
    env = dict(ctx["mrs"].env)
    env.update({"MRS_TLS_CERT": f"{ec_cert},{rsa_cert}", "MRS_TLS_KEY": f"{ec_key},{rsa_key}"})
    m = h.mrs(env={k: v for k, v in env.items() if k.startswith("MRS_") and "_LISTEN" not in k
                   and k not in ("MRS_SPOOL_DIR", "MRS_USERS")}, users={USER: PW})
    for extra, want in ((("-x", "rsa"), "RSA-2048"), ((), "EC-256")):
        r, res = ossl(ctx, "-c", "2", "-n", "4", "-t", "100", *extra, port=m.submission_port)
        assert r.returncode == 0 and res["accepted"] == "4" and res["failures"] == "none", (extra, res)
        # the key of the certificate the server chose for that offer
        assert res["server_key"] == want and f"server key {want}" in r.stdout, (extra, r.stdout)


def test_openssl_backend_idle_sessions_and_loopback_only(ctx):
    h, m = ctx["h"], ctx["mrs"]
    exe = os.path.join(h.build, "tools", "loadgen-ossl")
    r = subprocess.run([exe, "-p", str(m.submission_port), "-I", "30", "-T", "-t", "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "HELD 30 of 30 TLS connections" in r.stdout, r.stdout + r.stderr
    assert "RELEASED" in r.stdout, r.stdout
    r = subprocess.run([exe, "-a", "192.0.2.1", "-p", "587", "-I", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "loopback" in r.stderr, r.stderr
