"""Issue 15 part 2 (SPEC 8.6): the certificate/key and the users file are
reloaded by themselves when they change on disk, including the symlink
swap kubelet does for a Secret volume; a bad new file keeps the old one."""
import calendar
import os
import signal
import ssl
import subprocess
import time

from harness import auth_plain

INTERVAL = "300ms"


class SecretDir:
    """A directory laid out like a Kubernetes Secret volume: the files are
    symlinks into ..data, itself a symlink to a timestamped directory that
    kubelet's atomic writer replaces in one rename."""

    def __init__(self, root, files):
        self.root = root
        self.gen = 0
        os.makedirs(root)
        self.publish(files)
        for name in files:
            os.symlink(os.path.join("..data", name), os.path.join(root, name))

    def publish(self, files):
        self.gen += 1
        ts = f"..2026_12_03_10_00_{self.gen:02d}.{os.getpid()}"
        d = os.path.join(self.root, ts)
        os.makedirs(d)
        for name, content in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(content)
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(ts, tmp)
        old = os.readlink(os.path.join(self.root, "..data")) if os.path.islink(
            os.path.join(self.root, "..data")) else None
        os.rename(tmp, os.path.join(self.root, "..data"))  # the atomic swap
        if old:
            subprocess.run(["rm", "-rf", os.path.join(self.root, old)], check=True)

    def path(self, name):
        return os.path.join(self.root, name)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def served_cert(m):
    pem = ssl.get_server_certificate(("127.0.0.1", m.submissions_port), timeout=10)
    return ssl.PEM_cert_to_DER_cert(pem)


def file_cert(path):
    return ssl.PEM_cert_to_DER_cert(read(path).decode())


def metric(m, name):
    _, body = m.http("GET", "/metrics")
    for ln in body.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for(pred, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def not_after(cert_path):
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", cert_path],
                         capture_output=True, text=True, check=True).stdout.strip()
    return calendar.timegm(time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))


def test_certificate_secret_swap_reloaded_bad_one_refused(h):
    a_cert, a_key = h.self_signed("a.mrs.test")
    b_cert, b_key = h.self_signed("b.mrs.test")
    sec = SecretDir(os.path.join(h.tmp, "tls-secret"), {"tls.crt": read(a_cert), "tls.key": read(a_key)})
    m = h.mrs(env={"MRS_TLS_CERT": sec.path("tls.crt"), "MRS_TLS_KEY": sec.path("tls.key"),
                   "MRS_RELOAD_INTERVAL": INTERVAL})
    assert served_cert(m) == file_cert(a_cert)
    assert metric(m, "mrs_tls_certificate_expiry_timestamp_seconds") == not_after(a_cert)
    r = m.raw(tls=True)  # a session open across the reload keeps working
    r.reply()
    sec.publish({"tls.crt": read(b_cert), "tls.key": read(b_key)})
    assert wait_for(lambda: served_cert(m) == file_cert(b_cert)), "certificate not reloaded"
    assert r.cmd("NOOP")[0] == 250
    r.close()
    assert metric(m, 'mrs_config_reloads_total{what="tls",result="ok"}') == 1
    assert metric(m, "mrs_tls_certificate_expiry_timestamp_seconds") == not_after(b_cert)
    # a certificate whose key does not match: refused, B stays, one error
    sec.publish({"tls.crt": read(a_cert), "tls.key": read(b_key)})
    assert wait_for(lambda: metric(m, 'mrs_config_reloads_total{what="tls",result="error"}') == 1)
    time.sleep(1.5)  # several intervals: the same bad files are not retried
    assert metric(m, 'mrs_config_reloads_total{what="tls",result="error"}') == 1
    assert served_cert(m) == file_cert(b_cert)
    assert m.log().count("certificate not reloaded") == 1
    # fixed: the matching key arrives
    sec.publish({"tls.crt": read(a_cert), "tls.key": read(a_key)})
    assert wait_for(lambda: served_cert(m) == file_cert(a_cert))
    assert metric(m, 'mrs_config_reloads_total{what="tls",result="ok"}') == 2


def test_users_file_change_reloaded_without_sighup(h):
    alice = f"alice@customer.test:{h.password_hash('alice-secret')}\n".encode()
    carol = f"carol@customer.test:{h.password_hash('carol-secret')}\n".encode()
    sec = SecretDir(os.path.join(h.tmp, "users-secret"), {"users": alice})
    m = h.mrs(start=False)
    m.env.pop("MRS_USERS")
    m.env.update({"MRS_USERS_FILE": sec.path("users"), "MRS_RELOAD_INTERVAL": INTERVAL})
    m.start()

    def auth(user, pw):
        r = m.raw(tls=True)
        r.reply()
        r.cmd("EHLO client.test")
        code, _ = r.cmd("AUTH PLAIN " + auth_plain(user, pw))
        r.close()
        return code

    assert auth("carol@customer.test", "carol-secret") == 535
    sec.publish({"users": alice + carol})
    assert wait_for(lambda: metric(m, 'mrs_config_reloads_total{what="users",result="ok"}') == 1)
    assert auth("carol@customer.test", "carol-secret") == 235
    # a malformed file keeps the table in force
    sec.publish({"users": alice + b"not a valid line\n"})
    assert wait_for(lambda: metric(m, 'mrs_config_reloads_total{what="users",result="error"}') == 1)
    assert auth("carol@customer.test", "carol-secret") == 235
    # an in-place rewrite (not a swap) is seen too
    with open(os.path.join(sec.root, os.readlink(sec.path("..data")), "users"), "wb") as f:
        f.write(alice)
    assert wait_for(lambda: metric(m, 'mrs_config_reloads_total{what="users",result="ok"}') == 2)
    assert auth("carol@customer.test", "carol-secret") == 535


def test_sighup_reload_counted_and_interval_zero_disables_polling(h):
    a_cert, a_key = h.self_signed("a.mrs.test")
    b_cert, b_key = h.self_signed("b.mrs.test")
    d = os.path.join(h.tmp, "plain-tls")
    os.makedirs(d)
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["cp", a_cert, cert], check=True)
    subprocess.run(["cp", a_key, key], check=True)
    m = h.mrs(env={"MRS_TLS_CERT": cert, "MRS_TLS_KEY": key, "MRS_RELOAD_INTERVAL": "0"})
    subprocess.run(["cp", b_cert, cert], check=True)
    subprocess.run(["cp", b_key, key], check=True)
    time.sleep(1)
    assert served_cert(m) == file_cert(a_cert)  # no polling with 0
    m.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: served_cert(m) == file_cert(b_cert))
    assert metric(m, 'mrs_config_reloads_total{what="tls",result="ok"}') == 1
    assert metric(m, 'mrs_config_reloads_total{what="users",result="ok"}') == 1
