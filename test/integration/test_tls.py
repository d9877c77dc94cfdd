"""TLS on the submission ports: versions, suites, certificates from files
(RSA and ECDSA), the ephemeral default, resumption, bad material at start."""
import os
import socket
import subprocess

from harness import free_port


def s_client(port, *args, starttls=True, data="QUIT\r\n", timeout=20):
    argv = ["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{port}", "-servername", "mrs.test", *args]
    if starttls:
        argv[2:2] = ["-starttls", "smtp"]
    return subprocess.run(argv, input=data, capture_output=True, text=True, timeout=timeout)


def make_cert(h, kind):
    d = os.path.join(h.tmp, f"cert-{kind}")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    if kind.startswith("rsa"):
        newkey = ["-newkey", "rsa:" + (kind[3:] or "2048")]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=relay.test", "-addext", "subjectAltName=DNS:relay.test"],
                   check=True, capture_output=True)
    return cert, key


def test_ephemeral_certificate_is_ecdsa_p256_for_hostname(h):
    m = h.mrs()
    r = s_client(m.submission_port, "-showcerts")
    assert "CN = mrs.test" in r.stdout or "CN=mrs.test" in r.stdout, r.stdout[-2000:]
    assert "prime256v1" in r.stdout or "P-256" in r.stdout or "ECDSA" in r.stdout.upper(), r.stdout[-3000:]
    assert "ephemeral self-signed" in m.log()


def test_tls_versions(h):
    m = h.mrs()
    r13 = s_client(m.submissions_port, "-tls1_3", starttls=False)
    assert "TLSv1.3" in r13.stdout and "220 mrs.test" in r13.stdout, r13.stdout[-1500:]
    r12 = s_client(m.submission_port, "-tls1_2")
    assert "TLSv1.2" in r12.stdout, r12.stdout[-1500:]
    assert "ECDHE" in r12.stdout and "GCM" in r12.stdout or "CHACHA20" in r12.stdout
    old = s_client(m.submission_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "Cipher is (NONE)" in old.stdout or old.returncode != 0, old.stdout[-1500:]
    assert m.proc.alive()


def test_no_cbc_or_static_rsa_suites(h):
    m = h.mrs()
    r = s_client(m.submission_port, "-tls1_2", "-cipher", "AES128-SHA:AES256-SHA256:ECDHE-ECDSA-AES128-SHA")
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0, r.stdout[-1500:]


def test_rsa_and_ecdsa_certificates_from_files(h):
    for kind in ("rsa", "ec"):
        cert, key = make_cert(h, kind)
        m = h.mrs(env={"MRS_TLS_CERT": cert, "MRS_TLS_KEY": key})
        r = s_client(m.submission_port)
        assert "CN = relay.test" in r.stdout or "CN=relay.test" in r.stdout, (kind, r.stdout[-1500:])
        assert "221 2.0.0" in r.stdout, (kind, r.stdout[-800:])
        s = m.smtps(login=("alice@customer.test", "alice-secret"))
        s.quit()
        assert "ephemeral self-signed" not in m.log()
        m.stop()


def test_rsa_signatures_verified_by_openssl(h):
    """mrs's RSA signatures (src/rsa_mont.c under mbedTLS's padding) are the
    ones OpenSSL checks: RSASSA-PSS in TLS 1.3, PKCS#1 v1.5 in TLS 1.2
    (mbedTLS signs TLS 1.2 with v1.5 only), with an RSA-2048 key (the MULX path) and an RSA-4096 key (the
    portable one).  A wrong signature fails the handshake."""
    for kind in ("rsa", "rsa4096"):
        cert, key = make_cert(h, kind)
        m = h.mrs(env={"MRS_TLS_CERT": cert, "MRS_TLS_KEY": key})
        for version, sigalg, shown in (("-tls1_3", "RSA-PSS+SHA256", "RSA-PSS"),
                                       ("-tls1_2", "RSA+SHA256", "RSA")):
            what = (kind, version, sigalg)
            for _ in range(3):  # a fresh blinding pair and exponent blinding each time
                r = s_client(m.submission_port, version, "-sigalgs", sigalg)
                assert "221 2.0.0" in r.stdout, (what, r.stdout[-800:], r.stderr[-800:])
                assert f"Peer signature type: {shown}\n" in r.stdout, (what, r.stdout[-1500:])
        m.stop()


def served_key_type(r):
    """'rsa' or 'ec' from openssl s_client's "Server public key is …" line."""
    for ln in r.stdout.splitlines():
        if ln.startswith("Server public key is"):
            return "rsa" if "2048" in ln or "4096" in ln else "ec"
    raise AssertionError(r.stdout[-2000:])


def test_ecdsa_and_rsa_pairs_at_once(h):
    """SPEC 8.2: a comma-separated list of pairs; a client that accepts ECDSA
    gets the ECDSA certificate, one that does not gets RSA (TLS 1.3 by
    signature algorithm, TLS 1.2 by cipher suite)."""
    rsa_cert, rsa_key = make_cert(h, "rsa")
    ec_cert, ec_key = make_cert(h, "ec")
    # the RSA pair listed first: the order must not matter
    m = h.mrs(env={"MRS_TLS_CERT": f"{rsa_cert},{ec_cert}", "MRS_TLS_KEY": f"{rsa_key},{ec_key}"})
    assert served_key_type(s_client(m.submission_port, "-tls1_3")) == "ec"
    assert served_key_type(s_client(m.submission_port, "-tls1_2")) == "ec"
    rsa13 = s_client(m.submission_port, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256")
    assert served_key_type(rsa13) == "rsa" and "221 2.0.0" in rsa13.stdout
    rsa12 = s_client(m.submission_port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert served_key_type(rsa12) == "rsa" and "221 2.0.0" in rsa12.stdout
    s = m.smtps(login=("alice@customer.test", "alice-secret"))
    s.quit()
    m.stop()
    # unequal lists: exit 2 (a malformed value), one line naming the variable
    env = {"MRS_TLS_CERT": f"{rsa_cert},{ec_cert}", "MRS_TLS_KEY": rsa_key,
           "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{free_port()}", "MRS_SUBMISSIONS_LISTEN": "off",
           "MRS_HEALTH_LISTEN": "off", "MRS_SPOOL_DIR": os.path.join(h.tmp, "spool-pairs")}
    r = h.run([h.mrs_bin, "serve"], env=env, timeout=20)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "MRS_TLS_KEY" in r.stderr, r.stderr
    # a bad second pair fails start like a bad single one
    env["MRS_TLS_KEY"] = f"{rsa_key},{rsa_key}"
    r = h.run([h.mrs_bin, "serve"], env=env, timeout=20)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "MRS_TLS_KEY" in r.stderr, r.stderr


def test_bad_certificate_material_fails_start_with_one_line(h):
    cert, key = make_cert(h, "ec")
    other_cert, other_key = make_cert(h, "rsa")
    garbage = os.path.join(h.tmp, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        ({"MRS_TLS_CERT": "/nonexistent/cert.pem", "MRS_TLS_KEY": key}, "MRS_TLS_CERT"),
        ({"MRS_TLS_CERT": garbage, "MRS_TLS_KEY": key}, "MRS_TLS_CERT"),
        ({"MRS_TLS_CERT": cert, "MRS_TLS_KEY": garbage}, "MRS_TLS_KEY"),
        ({"MRS_TLS_CERT": cert, "MRS_TLS_KEY": other_key}, "MRS_TLS_KEY"),
    ]
    for env, var in cases:
        env = dict(env, MRS_SUBMISSION_LISTEN=f"127.0.0.1:{free_port()}",
                   MRS_SUBMISSIONS_LISTEN=f"127.0.0.1:{free_port()}", MRS_HEALTH_LISTEN=f"127.0.0.1:{free_port()}",
                   MRS_SPOOL_DIR=os.path.join(h.tmp, "spool-bad"))
        r = h.run([h.mrs_bin, "serve"], env=env, timeout=20)
        lines = r.stderr.splitlines()
        assert r.returncode == 1, (env, r.returncode, r.stderr)
        assert len(lines) == 1 and var in lines[0], (env, r.stderr)


def test_port_in_use_fails_start(h):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    env = {"MRS_SUBMISSION_LISTEN": f"127.0.0.1:{port}", "MRS_SUBMISSIONS_LISTEN": "off",
           "MRS_HEALTH_LISTEN": "off", "MRS_SPOOL_DIR": os.path.join(h.tmp, "spool-busy")}
    r = h.run([h.mrs_bin, "serve"], env=env, timeout=20)
    busy.close()
    assert r.returncode == 1, r
    err = r.stderr.splitlines()
    assert len(err) == 1 and "MRS_SUBMISSION_LISTEN" in err[0] and "in use" in err[0], r.stderr


def test_session_resumption_with_tickets(h):
    m = h.mrs()
    sess = os.path.join(h.tmp, "tls-session.pem")
    first = s_client(m.submissions_port, "-tls1_2", "-sess_out", sess, starttls=False)
    assert "New," in first.stdout, first.stdout[-1500:]
    second = s_client(m.submissions_port, "-tls1_2", "-sess_in", sess, starttls=False)
    assert "Reused," in second.stdout, second.stdout[-1500:]


def test_failed_handshake_costs_nothing_else(h):
    m = h.mrs()
    raw = socket.create_connection(("127.0.0.1", m.submissions_port), timeout=5)
    raw.sendall(b"EHLO this is not TLS\r\n")
    raw.settimeout(5)
    try:
        raw.recv(100)
    except OSError:
        pass
    raw.close()
    s = m.smtps(login=("alice@customer.test", "alice-secret"))
    assert s.noop()[0] == 250
    s.quit()
    code, text = m.http("GET", "/metrics")
    assert 'mrs_tls_failures_total{listener="submissions"} 1' in text, text


def temp_key(r):
    """The key exchange group from openssl s_client's "Server/Peer Temp Key" line."""
    for ln in r.stdout.splitlines():
        if "Temp Key:" in ln:
            return ln.split("Temp Key:", 1)[1].strip()
    raise AssertionError(r.stdout[-2000:])


def test_key_exchange_groups_interoperate(h):
    """X25519 (mrs's libsodium driver: src/psa_sodium.c) and P-256 / P-384
    (mbedTLS) with OpenSSL as the client, TLS 1.3 and 1.2, ECDSA and RSA
    certificates: the handshake completes on the group asked for and the
    session carries SMTP.  mrs's own client side (delivery, loadgen) meets
    the same code in test_delivery and test_loadgen."""
    rsa_cert, rsa_key = make_cert(h, "rsa")
    ec_cert, ec_key = make_cert(h, "ec")
    m = h.mrs(env={"MRS_TLS_CERT": f"{ec_cert},{rsa_cert}", "MRS_TLS_KEY": f"{ec_key},{rsa_key}"})
    rsa12 = ["-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]
    rsa13 = ["-sigalgs", "rsa_pss_rsae_sha256"]
    for groups, name in (("X25519", "X25519"), ("P-256", "ECDH, prime256v1"), ("P-384", "ECDH, secp384r1")):
        for version, rsa in (("-tls1_3", rsa13), ("-tls1_2", rsa12)):
            for extra in ([], rsa):
                # TLS 1.2 serves an ECDSA P-256 certificate only to a client
                # that lists P-256 among its groups (RFC 8422 §5.1): offer it
                # second, after X25519 (mrs prefers X25519, then P-256)
                offer = groups
                if version == "-tls1_2" and not extra and groups != "P-256":
                    if groups == "P-384":
                        continue
                    offer = groups + ":P-256"
                r = s_client(m.submission_port, version, "-groups", offer, *extra)
                what = (offer, version, extra, r.stdout[-1500:])
                assert "221 2.0.0" in r.stdout, what
                assert temp_key(r).startswith(name + ","), what
                assert served_key_type(r) == ("rsa" if extra else "ec"), what
    # the default offer of a client (OpenSSL lists X25519 first) gets X25519
    assert temp_key(s_client(m.submissions_port, starttls=False)).startswith("X25519,")
    assert m.proc.alive()
