"""The command line of SPEC §2 and the static binary of SPEC §7."""
import os
import shutil
import subprocess
import tempfile

from harness import token_for


def test_version(h):
    r = h.run([h.mrs_bin, "version"])
    assert r.returncode == 0 and r.stdout.startswith("mrs "), r
    r2 = h.run([h.mrs_bin, "--version"])
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_help(h):
    for arg in ("help", "--help"):
        r = h.run([h.mrs_bin, arg])
        assert r.returncode == 0, r
        for sub in ("serve", "passwd", "token", "check-domain", "healthcheck", "queue"):
            assert sub in r.stdout, sub


def test_unknown_command_is_refused(h):
    r = h.run([h.mrs_bin, "frobnicate"])
    assert r.returncode == 2 and "frobnicate" in r.stderr


def test_token_matches_spec_example(h):
    r = h.run([h.mrs_bin, "token", "steve.mailer@mycorp.se"])
    assert r.returncode == 0
    assert r.stdout.strip() == "elastx-mrs=55cdcb230c1a618bc6e054bd3da9f34c4b849d048e1fa94403062e072081a1d9"
    assert r.stdout.strip() == token_for("steve.mailer@mycorp.se")


def test_token_honours_prefix(h):
    r = h.run([h.mrs_bin, "token", "bob"], env={"MRS_TOKEN_PREFIX": "acme-relay"})
    assert r.returncode == 0 and r.stdout.strip() == token_for("bob", "acme-relay")


def test_passwd_prints_argon2id_hash(h):
    r = h.run([h.mrs_bin, "passwd"], input="correct horse\n")
    assert r.returncode == 0, r
    assert r.stdout.startswith("$argon2id$"), r.stdout
    assert "correct horse" not in r.stdout + r.stderr
    r2 = h.run([h.mrs_bin, "passwd"], input="correct horse\n")
    assert r2.stdout != r.stdout  # salted


def test_passwd_refuses_empty_input(h):
    r = h.run([h.mrs_bin, "passwd"], input="")
    assert r.returncode != 0 and r.stderr.strip()


BAD_VALUES = {
    "MRS_HOSTNAME": "not a host", "MRS_SUBMISSION_LISTEN": "587", "MRS_SUBMISSIONS_LISTEN": ":99999",
    "MRS_HEALTH_LISTEN": "localhost", "MRS_SPF_INCLUDE": "bad..domain", "MRS_TOKEN_PREFIX": "a b",
    "MRS_CHECK_HEADER_FROM": "maybe", "MRS_DNS_SERVERS": "dns.google", "MRS_SMARTHOST": "relay:0",
    "MRS_SMARTHOST_TLS": "ssl", "MRS_DELIVERY_PORT": "0", "MRS_MAX_MESSAGE_BYTES": "lots",
    "MRS_MAX_RECIPIENTS": "0", "MRS_MAX_CONNECTIONS": "abc", "MRS_QUEUE_LIFETIME": "5 days",
    "MRS_RETRY_MIN": "soon", "MRS_RETRY_MAX": "later", "MRS_DELIVERY_THREADS": "-1",
    "MRS_RATE_LIMIT": "500", "MRS_SHUTDOWN_GRACE": "x", "MRS_LOG_FORMAT": "xml",
    "MRS_LOG_LEVEL": "trace", "MRS_IDLE_TIMEOUT": "0", "MRS_DNS_TIMEOUT": "1y",
}


def test_every_malformed_variable_exits_2_naming_it(h):
    for name, value in BAD_VALUES.items():
        r = h.run([h.mrs_bin, "serve"], env={name: value}, timeout=10)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (name, r.returncode, r.stderr)
        assert len(lines) == 1 and name in lines[0] and value in lines[0], (name, r.stderr)


def test_binary_is_static(h):
    out = subprocess.run(["file", "-L", h.mrs_bin], capture_output=True, text=True).stdout
    if h.build.endswith("/asan"):
        return  # the sanitizer build is a glibc build on purpose
    assert "statically linked" in out or "static-pie linked" in out, out
    rd = subprocess.run(["readelf", "-l", "-d", h.mrs_bin], capture_output=True, text=True).stdout
    assert "INTERP" not in rd and "interpreter" not in rd, rd
    assert "NEEDED" not in rd, rd


def test_runs_in_empty_root(h):
    """Copy the binary alone into an empty directory, chroot, run it."""
    if h.build.endswith("/asan") or os.geteuid() != 0:
        return
    root = tempfile.mkdtemp(prefix="scratch-", dir=h.tmp)
    shutil.copy(h.mrs_bin, os.path.join(root, "mrs"))
    assert os.listdir(root) == ["mrs"]
    r = subprocess.run(["/usr/sbin/chroot", root, "/mrs", "version"], capture_output=True, text=True, env={})
    assert r.returncode == 0 and r.stdout.startswith("mrs "), r
    r = subprocess.run(["/usr/sbin/chroot", root, "/mrs", "token", "x"], capture_output=True, text=True, env={})
    assert r.returncode == 0 and r.stdout.startswith("elastx-mrs="), r


def test_unknown_variable_is_warned_about_but_service_links_are_not(h):
    m = h.mrs(env={"MRS_IDEL_TIMEOUT": "5s", "MRS_SERVICE_HOST": "10.0.0.1", "MRS_PORT": "tcp://10.0.0.1:587"})
    log = m.log()
    assert "MRS_IDEL_TIMEOUT" in log and "unknown" in log
    assert "MRS_SERVICE_HOST" not in log and "MRS_PORT" not in log
