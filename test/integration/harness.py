"""Integration harness: starts the real processes the tests talk to.

- Mrs:   the built binary, on free loopback ports, with its own spool.
- Dns:   a real DNS server (unbound) on a loopback high port, serving the
         zone lines a test gives it (RFC 1035 presentation format).
- Sink:  a real receiving SMTP server (aiosmtpd) on a loopback address.
Every process is started by the harness and ended by pid in cleanup().
Only loopback addresses are used.
"""
import base64
import hashlib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPF_OK = "v=spf1 include:elastx.email -all"


def token_for(user, prefix="elastx-mrs"):
    return f"{prefix}={hashlib.sha256(user.encode()).hexdigest()}"


def free_port(addr="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port free for both TCP and UDP on addr (DNS needs both)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, kind)
        s.bind((addr, 0))
        port = s.getsockname()[1]
        s.close()
        u = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((addr, port))
            u.close()
            return port
        except OSError:
            u.close()
    raise RuntimeError("no free port")


def common_port(addrs):
    """A TCP port free on every one of addrs (all MX hosts share it)."""
    for _ in range(100):
        port = free_port(addrs[0])
        socks = []
        try:
            for a in addrs:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((a, port))
                socks.append(s)
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no common free port")


def wait_port(host, port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{host}:{port} not listening after {timeout}s")


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Proc:
    """A process the harness started; its stdout+stderr go to a log file."""

    counter = 0

    def __init__(self, h, name, argv, env=None, cwd=None):
        self.name = name
        Proc.counter += 1  # unique for the whole run: a log never mixes two processes
        self.log_path = os.path.join(h.tmp, f"{name}-{Proc.counter}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        h.procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.alive():
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.flush()
        return self.p.returncode

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Dns:
    """unbound serving static local data on 127.0.0.1:<port> (UDP and TCP)."""

    def __init__(self, h, records, port=None):
        self.h = h
        self.port = port or free_port()
        self.records = list(records)
        self.proc = None
        self.start()

    def _conf(self):
        zones = set()
        for r in self.records:
            name = r.split()[0].rstrip(".").lower()
            zones.add(name.split(".")[-1])
        lines = [
            "server:",
            f"  interface: 127.0.0.1@{self.port}",
            f"  port: {self.port}",
            "  do-daemonize: no", '  chroot: ""', '  username: ""', '  pidfile: ""',
            f'  directory: "{self.h.tmp}"', "  use-syslog: no", '  logfile: ""',
            "  verbosity: 0", "  do-ip6: no", "  num-threads: 1", "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow", "  module-config: \"iterator\"",
            "  do-not-query-localhost: yes", "  outgoing-range: 8", "  incoming-num-tcp: 32",
            "  msg-cache-size: 1m", "  rrset-cache-size: 1m", "  local-zone: \"test.\" static",
        ]
        for z in sorted(zones - {"test"}):
            lines.append(f'  local-zone: "{z}." static')
        for r in self.records:
            lines.append("  local-data: '" + r.replace("'", "") + "'")
        lines += ["remote-control:", "  control-enable: no"]
        return "\n".join(lines) + "\n"

    def start(self):
        conf = os.path.join(self.h.tmp, f"unbound-{self.port}.conf")
        with open(conf, "w") as f:
            f.write(self._conf())
        chk = subprocess.run(["unbound-checkconf", conf], capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("unbound config: " + chk.stdout + chk.stderr)
        self.proc = Proc(self.h, "unbound", ["unbound", "-d", "-c", conf])
        wait_port("127.0.0.1", self.port, 10, self.proc.p)

    def set_records(self, records):
        """Replace the zone data (restarts the server on the same port)."""
        self.records = list(records)
        self.proc.stop()
        self.start()

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"


class Sink:
    """A real receiving SMTP server (aiosmtpd) on addr:port.

    rcpt_replies maps a recipient address to a reply ("550 5.1.1 no such
    user"); the default accepts.  Messages land in self.messages as dicts
    with mail_from, rcpt_tos, data (bytes), tls (bool), auth (login or None).
    """

    def __init__(self, h, addr="127.0.0.1", port=None, tls_cert=None, require_auth=None,
                 rcpt_replies=None, data_reply=None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, SMTP as AioSMTP  # noqa: F401

        self.addr = addr
        self.port = port or free_port(addr)
        self.messages = []
        self.rcpt_replies = dict(rcpt_replies or {})
        self.data_reply = data_reply
        self.cond = threading.Condition()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                reply = sink.rcpt_replies.get(address.lower())
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                if sink.data_reply:
                    return sink.data_reply
                with sink.cond:
                    sink.messages.append({
                        "mail_from": envelope.mail_from,
                        "rcpt_tos": list(envelope.rcpt_tos),
                        "data": envelope.original_content or envelope.content,
                        "tls": session.ssl is not None,
                        "auth": getattr(session, "login_data", None),
                    })
                    sink.cond.notify_all()
                return "250 2.0.0 OK queued"

        kwargs = {}
        if tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_cert[0], tls_cert[1])
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = False
        if require_auth:
            user, pw = require_auth

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = auth_data.login == user.encode() and auth_data.password == pw.encode()
                if ok:
                    session.login_data = user
                return AuthResult(success=ok, auth_data=auth_data if ok else None)

            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = True
        self.controller = Controller(Handler(), hostname=addr, port=self.port,
                                     server_hostname="sink.test", decode_data=False,
                                     data_size_limit=200 * 1024 * 1024, **kwargs)
        self.controller.start()
        h.sinks.append(self)

    def wait(self, count=1, timeout=30.0):
        """Wait until at least count messages arrived; returns the list."""
        deadline = time.time() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"sink got {len(self.messages)} of {count} messages in {timeout}s")
                self.cond.wait(left)
            return list(self.messages)

    def stop(self):
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001
            pass


class Mrs:
    """The built relay on free loopback ports with its own spool."""

    def __init__(self, h, env=None, users=None, dns=None, start=True, spool=None):
        self.h = h
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.health_port = free_port()
        self.spool = spool or tempfile.mkdtemp(prefix="spool-", dir=h.tmp)
        self.users = dict(users if users is not None else {"alice@customer.test": "alice-secret"})
        e = {k: v for k, v in os.environ.items() if not k.startswith("MRS_")}
        e.update({
            "MRS_HOSTNAME": "mrs.test",
            "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{self.submission_port}",
            "MRS_SUBMISSIONS_LISTEN": f"127.0.0.1:{self.submissions_port}",
            "MRS_HEALTH_LISTEN": f"127.0.0.1:{self.health_port}",
            "MRS_SPOOL_DIR": self.spool,
            "MRS_LOG_LEVEL": "debug",
            # the tests' MX sinks live on 127.0.0.x, which the default
            # MRS_DELIVERY_DENY_NETS refuses; test_delivery_deny_nets
            # checks that default
            "MRS_DELIVERY_DENY_NETS": "none",
            "MRS_USERS": " ".join(f"{u}:{h.password_hash(p)}" for u, p in self.users.items()),
        })
        if dns is not None:
            e["MRS_DNS_SERVERS"] = dns.server
        e.update(env or {})
        self.env = {k: v for k, v in e.items() if v is not None}
        self.proc = None
        if start:
            self.start_on_free_ports()

    def start_on_free_ports(self, tries=3):
        """start(); when a port the harness picked was taken in the moment
        between free_port() and mrs's bind (another program on the machine),
        pick new ones and start again.  A test that set its own listen
        address gets the failure as it is."""
        for attempt in range(tries):
            try:
                return self.start()
            except RuntimeError as e:
                ours = all(self.env.get(k) == f"127.0.0.1:{p}" for k, p in (
                    ("MRS_SUBMISSION_LISTEN", self.submission_port),
                    ("MRS_SUBMISSIONS_LISTEN", self.submissions_port),
                    ("MRS_HEALTH_LISTEN", self.health_port)))
                if attempt + 1 == tries or not ours or "address already in use" not in str(e):
                    raise
            self.submission_port, self.submissions_port, self.health_port = free_port(), free_port(), free_port()
            self.env.update({"MRS_SUBMISSION_LISTEN": f"127.0.0.1:{self.submission_port}",
                             "MRS_SUBMISSIONS_LISTEN": f"127.0.0.1:{self.submissions_port}",
                             "MRS_HEALTH_LISTEN": f"127.0.0.1:{self.health_port}"})

    def start(self, wait=True):
        self.proc = Proc(self.h, "mrs", [self.h.mrs_bin, "serve"], env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.proc.alive():
                raise RuntimeError("mrs exited with %s:\n%s" % (self.proc.p.returncode, self.proc.output()[-3000:]))
            try:
                code, _ = self.http("GET", "/readyz", timeout=1)
                if code == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("mrs not ready:\n" + self.proc.output()[-3000:])

    def stop(self, sig=signal.SIGTERM, timeout=40):
        return self.proc.stop(sig, timeout)

    def log(self):
        return self.proc.output()

    def http(self, method, path, timeout=5):
        req = urllib.request.Request(f"http://127.0.0.1:{self.health_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    # --- clients --------------------------------------------------------
    def smtp(self, starttls=True, login=None, timeout=20):
        s = smtplib.SMTP("127.0.0.1", self.submission_port, local_hostname="client.test", timeout=timeout)
        s.ehlo()
        if starttls:
            s.starttls(context=insecure_tls())
            s.ehlo()
        if login:
            s.login(*login)
        return s

    def smtps(self, login=None, timeout=20):
        s = smtplib.SMTP_SSL("127.0.0.1", self.submissions_port, local_hostname="client.test",
                             context=insecure_tls(), timeout=timeout)
        s.ehlo()
        if login:
            s.login(*login)
        return s

    def raw(self, tls=False, timeout=10):
        return Raw(("127.0.0.1", self.submissions_port if tls else self.submission_port), tls, timeout)

    # --- spool ----------------------------------------------------------
    def spool_files(self, sub="queue"):
        d = os.path.join(self.spool, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def tmp_leftovers(self, token):
        """What a message dropped while being written must not leave in
        tmp/: any file but a finished message's recycled one
        (tmp/recycle.<n>, docs/spool.md), and any file holding token."""
        d = os.path.join(self.spool, "tmp")
        left = []
        for f in self.spool_files("tmp"):
            try:
                with open(os.path.join(d, f), "rb") as fh:
                    held = token.encode() in fh.read()
            except OSError:
                held = False  # gone meanwhile (a state file's rename)
            if held or not f.startswith("recycle."):
                left.append(f)
        return left


class Raw:
    """A line-level SMTP dialog over a raw socket, for edge cases that
    smtplib would refuse to send."""

    def __init__(self, addr, tls=False, timeout=10):
        self.sock = socket.create_connection(addr, timeout=timeout)
        if tls:
            self.sock = insecure_tls().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def starttls(self):
        self.sock = insecure_tls().wrap_socket(self.sock)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; partial: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One whole (possibly multi-line) reply as (code, [texts])."""
        texts = []
        while True:
            ln = self.line()
            texts.append(ln[4:])
            if len(ln) < 4 or ln[3] != "-":
                return int(ln[:3]), texts

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection (after any data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def auth_plain(user, pw):
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


class Harness:
    def __init__(self, build):
        self.build = build
        self.mrs_bin = os.path.join(build, "mrs")
        self.top = TOP
        self.tmp = tempfile.mkdtemp(prefix="mrs-it-")
        self.procs = []
        self.sinks = []
        self._hashes = {}

    def password_hash(self, pw):
        if pw not in self._hashes:
            out = subprocess.run([self.mrs_bin, "passwd"], input=pw + "\n", capture_output=True,
                                 text=True, check=True)
            self._hashes[pw] = out.stdout.strip()
        return self._hashes[pw]

    def mrs(self, **kw):
        return Mrs(self, **kw)

    def dns(self, records, **kw):
        return Dns(self, records, **kw)

    def sink(self, **kw):
        return Sink(self, **kw)

    def run(self, argv, env=None, input=None, timeout=60):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MRS_")}
        e.update(env or {})
        return subprocess.run(argv, env=e, input=input, capture_output=True, text=True, timeout=timeout)

    def self_signed(self, name="sink.test"):
        """A throwaway certificate and key (openssl), for test servers."""
        d = tempfile.mkdtemp(prefix="cert-", dir=self.tmp)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
        return cert, key

    def dump_logs(self):
        for p in self.procs[-4:]:
            out = p.output()
            print(f"--- last lines of {p.name} (pid {p.pid}) ---")
            print("\n".join(out.splitlines()[-25:]))

    def sanitizer_reports(self):
        """Reports of AddressSanitizer / UBSan / LeakSanitizer in the logs of
        the processes started since the last cleanup."""
        found = []
        for p in self.procs:
            out = p.output()
            for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
                i = out.find(marker)
                if i >= 0:
                    found.append(f"{p.name} pid {p.pid}: " + out[i:i + 2000])
        return found

    def cleanup(self):
        for s in self.sinks:
            s.stop()
        self.sinks = []
        for p in reversed(self.procs):
            p.stop(signal.SIGTERM, timeout=10)
        self.procs = []
