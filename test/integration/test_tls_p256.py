"""ECDSA P-256 signatures of the handshake (src/p256.c through mbedTLS's
hook): an OpenSSL client that accepts only ECDSA completes TLS 1.3 and
TLS 1.2 handshakes, so it has verified mrs's CertificateVerify or
ServerKeyExchange signature, with each hash TLS 1.2 pairs with the P-256
key; P-256 key exchanges; and memcheck finds no branch or memory index
on the secrets."""
import os
import re
import shutil
import subprocess

from test_tls import make_cert, s_client


def peer_signature(out):
    """(type, digest) from openssl s_client's "Peer signature type" and
    "Peer signing digest" lines."""
    t = re.search(r"^Peer signature type: (\S+)", out, re.M)
    d = re.search(r"^Peer signing digest: (\S+)", out, re.M)
    return (t.group(1) if t else None, d.group(1) if d else None)


def test_openssl_verifies_ecdsa_p256_handshake_signatures(h):
    cert, key = make_cert(h, "ec")
    m = h.mrs(env={"MRS_TLS_CERT": cert, "MRS_TLS_KEY": key})
    strict = ["-CAfile", cert, "-verify_hostname", "relay.test", "-verify_return_error", "-servername", "relay.test"]
    # TLS 1.3: CertificateVerify, a new transcript (and signature) per connection
    for i in range(12):
        r = s_client(m.submissions_port, "-tls1_3", "-sigalgs", "ECDSA+SHA256", *strict, starttls=False)
        assert r.returncode == 0 and "TLSv1.3" in r.stdout, r.stdout[-1500:] + r.stderr[-500:]
        assert peer_signature(r.stdout) == ("ECDSA", "SHA256"), r.stdout[-1500:]
        assert "Verify return code: 0 (ok)" in r.stdout and "220 mrs.test" in r.stdout, r.stdout[-1500:]
    # TLS 1.2: ServerKeyExchange, the P-256 key with each hash mbedTLS's
    # signature algorithm list pairs with ECDSA
    for digest in ("SHA256", "SHA384"):
        r = s_client(m.submission_port, "-tls1_2", "-sigalgs", f"ECDSA+{digest}", *strict)
        assert r.returncode == 0 and "TLSv1.2" in r.stdout, (digest, r.stdout[-1500:] + r.stderr[-500:])
        assert peer_signature(r.stdout) == ("ECDSA", digest), (digest, r.stdout[-1500:])
        assert "221 2.0.0" in r.stdout, (digest, r.stdout[-800:])
    assert m.proc.alive()


def test_p256_key_exchange(h):
    """ECDHE on P-256 (src/p256.c through src/psa_sodium.c's
    mbedtls_ecdh_gen_public / mbedtls_ecdh_compute_shared, which TLS 1.2
    and mbedTLS's PSA key agreement call): a wrong shared secret would fail
    the Finished messages."""
    m = h.mrs()
    for version, port, starttls in (("-tls1_3", m.submissions_port, False), ("-tls1_2", m.submission_port, True)):
        for i in range(4):
            r = s_client(port, version, "-groups", "P-256", starttls=starttls)
            assert r.returncode == 0, (version, r.stdout[-1500:] + r.stderr[-500:])
            assert re.search(r"^(Server|Peer) Temp Key: ECDH, prime256v1", r.stdout, re.M), (version, r.stdout[-1500:])
            assert ("220 mrs.test" if not starttls else "221 2.0.0") in r.stdout, (version, r.stdout[-1500:])
    assert m.proc.alive()


def test_ephemeral_ecdsa_certificate_signs(h):
    """The default ephemeral P-256 certificate's key signs the same way."""
    m = h.mrs()
    r = s_client(m.submissions_port, "-tls1_3", "-sigalgs", "ECDSA+SHA256", starttls=False)
    assert r.returncode == 0 and peer_signature(r.stdout) == ("ECDSA", "SHA256"), r.stdout[-1500:]
    assert "220 mrs.test" in r.stdout, r.stdout[-1500:]


def test_p256_is_constant_time_under_memcheck(h):
    """test/tools/p256_ct.c under valgrind: private keys marked undefined,
    memcheck reports any branch or memory index that depends on them (or on
    the nonce) beyond the flags src/p256.c publishes on purpose."""
    build = h.build[:-len("/asan")] if h.build.endswith("/asan") else h.build
    binary = os.path.join(build, "valgrind", "tools", "p256_ct")
    assert shutil.which("valgrind"), "valgrind is not installed"
    assert os.path.exists(binary), f"{binary} missing: ./build.sh test builds it"
    r = subprocess.run(["valgrind", "-q", "--error-exitcode=99", binary], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "6 keys signed and agreed, 0 failed" in r.stdout, r.stdout
    assert "uninitialised" not in r.stderr, r.stderr[-3000:]
