#!/usr/bin/env python3
"""Side-by-side benchmark: mrs against Postfix as a submission relay.

Started by test/bench/run.sh (which installs the packages and raises the
file descriptor limit).  Everything runs on loopback:

  unbound      DNS for the authorized sender domain bench.test
  smtp-sink    the smarthost both relays deliver to (counts messages)
  mrs          STARTTLS submission, AUTH, durable spool, delivery to the sink
  Postfix      a private instance (own config, queue and data directories
               under a temporary folder; the system's /etc/postfix is only
               read) with a submission service: STARTTLS required, Cyrus
               SASL (sasldb) AUTH, relayhost = the sink, its durable queue
  loadgen      build/tools/loadgen-ossl (default): N client threads on the
               system's OpenSSL, so the client's own handshake cost is not
               mbedTLS's; --loadgen mbedtls: build/tools/loadgen (conn.c)

The same loads run against each relay in turn; all numbers come from this
one run.  Every process started here is recorded by pid and ended in
cleanup(), also on SIGTERM/SIGINT.  The whole run is bounded
(BENCH_DEADLINE_S); every load is bounded in messages and seconds.
"""
import argparse
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
USER = "bench@bench.test"
PASSWORD = "bench-password-0123"
SENDER = "newsletter@bench.test"
RCPT = "someone@example.org"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# (label, clients, messages per connection, message count, seconds, extra
# loadgen options).  Both relays hold an ECDSA P-256 and an RSA-2048
# certificate; the client offers every signature algorithm (so gets ECDSA)
# except in the RSA row, where it offers only RSA ones (-x rsa).
ROWS = [
    ("c=1", 1, 1, 400, 15, ()),
    ("c=8", 8, 1, 2000, 15, ()),
    ("c=32", 32, 1, 4000, 20, ()),
    ("c=128", 128, 1, 4000, 20, ()),
    ("c=8, 10/conn", 8, 10, 8000, 20, ()),
    ("c=32, resumption", 32, 1, 4000, 20, ("-R",)),
    ("c=32, RSA-2048", 32, 1, 4000, 20, ("-x", "rsa")),
]
LOADGENS = {"openssl": "loadgen-ossl", "mbedtls": "loadgen"}
DRAIN_LIMIT_S = 60


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Procs:
    """Processes this run started; ended by pid, never by name."""

    def __init__(self):
        self.list = []

    def start(self, name, argv, log_path, env=None, cwd=None, stdout=None):
        out = open(log_path, "ab")
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=stdout or out, stderr=out)
        p.bench_name = name
        self.list.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=20):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass

    def cleanup(self):
        for p in reversed(self.list):
            self.stop(p, timeout=10)


PROCS = Procs()


def free_port():
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free port")


def wait_port(port, timeout, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.bench_name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"127.0.0.1:{port} not listening after {timeout}s")


# ---- /proc ----------------------------------------------------------------

def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def pss_bytes(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root):
    """root and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class Server:
    """What the benchmark needs from a relay: its pids, port, CPU."""
    name = "?"
    root = 0
    port = 0

    def pids(self):
        return descendants(self.root)

    def cpu_seconds(self):
        """CPU of every process of the server, ended children included
        (the root's cutime counts the children it reaped)."""
        total = 0
        for pid in self.pids():
            st = proc_stat(pid)
            if st:
                total += st[1] + (st[2] if pid == self.root else 0)
        return total / CLK_TCK

    def memory(self):
        pids = self.pids()
        return sum(rss_bytes(p) for p in pids), sum(pss_bytes(p) for p in pids), len(pids)


class Sampler(threading.Thread):
    """Peak RSS/PSS of a server's processes, every 0.25 s."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            rss, pss, n = self.server.memory()
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self.halt.wait(0.25)

    def stop(self):
        self.halt.set()
        self.join()


class Sink:
    """Postfix smtp-sink; counts delivered messages (its -c counters)."""

    def __init__(self, tmp):
        self.port = free_port()
        self.out = os.path.join(tmp, "sink.out")
        self.proc = PROCS.start("smtp-sink", ["smtp-sink", "-c", "-u", "postfix", "-m", "512",
                                              f"127.0.0.1:{self.port}", "1024"],
                                os.path.join(tmp, "sink.log"), stdout=open(self.out, "wb"))
        wait_port(self.port, 10, self.proc)

    def count(self):
        try:
            with open(self.out, "rb") as f:
                f.seek(max(0, os.path.getsize(self.out) - 200))
                tail = f.read().decode("ascii", "replace")
        except OSError:
            return 0
        parts = [p for p in tail.split("\r") if "mesg=" in p]
        return int(parts[-1].split("mesg=")[1].split()[0]) if parts else 0


def start_dns(tmp):
    port = free_port()
    token = hashlib.sha256(USER.encode()).hexdigest()
    conf = os.path.join(tmp, "unbound.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "server:", f"  interface: 127.0.0.1@{port}", f"  port: {port}",
            "  do-daemonize: no", '  chroot: ""', '  username: ""', '  pidfile: ""',
            f'  directory: "{tmp}"', "  use-syslog: no", '  logfile: ""', "  verbosity: 0",
            "  do-ip6: no", "  num-threads: 1", "  access-control: 127.0.0.0/8 allow",
            '  module-config: "iterator"', "  do-not-query-localhost: yes",
            '  local-zone: "bench.test." static',
            "  local-data: 'bench.test. 3600 IN TXT \"v=spf1 include:elastx.email -all\"'",
            f"  local-data: 'bench.test. 3600 IN TXT \"elastx-mrs={token}\"'",
            "remote-control:", "  control-enable: no", ""]))
    p = PROCS.start("unbound", ["unbound", "-d", "-c", conf], os.path.join(tmp, "unbound.log"))
    wait_port(port, 10, p)
    return port


class Certs:
    """An ECDSA P-256 and an RSA-2048 certificate for bench.test."""

    def __init__(self, tmp):
        self.ec = self.make(tmp, "ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        self.rsa = self.make(tmp, "rsa", ["-newkey", "rsa:2048"])

    @staticmethod
    def make(tmp, name, newkey):
        cert, key = os.path.join(tmp, f"{name}-cert.pem"), os.path.join(tmp, f"{name}-key.pem")
        subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "30",
                        "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test"],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)  # Postfix's smtpd reads it as the postfix user
        return cert, key


# ---- the spool filesystem -------------------------------------------------------

class SpoolFs:
    """Both relays' queues on one fresh ext4 (with its journal, as a
    production host has) on a loop device under the temporary folder, so the
    numbers do not depend on the files other programs create and delete on
    the machine's own filesystem.  Where a loop mount is not allowed, the
    temporary folder itself is used (and the report says so)."""

    def __init__(self, tmp, size_gb=4):
        self.img = os.path.join(tmp, "spool-fs.img")
        self.mnt = os.path.join(tmp, "spool-fs")
        self.mounted = False
        os.makedirs(self.mnt)
        try:
            with open(self.img, "wb") as f:
                f.truncate(size_gb << 30)
            subprocess.run(["mkfs.ext4", "-q", "-F", self.img], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "loop", self.img, self.mnt], check=True, capture_output=True)
            self.mounted = True
            os.chmod(self.mnt, 0o755)
            self.kind = "a fresh ext4 (journaled) on a loop device"
        except (OSError, subprocess.CalledProcessError) as e:
            log(f"no loop-mounted ext4 ({e}): queues on the temporary folder's filesystem")
            self.kind = "the temporary folder's filesystem (" + fs_type(tmp) + ")"

    def path(self, name):
        p = os.path.join(self.mnt, name)
        os.makedirs(p, exist_ok=True)
        return p

    def cleanup(self):
        if self.mounted:
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
            self.mounted = False


def fs_type(path):
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--target", path], capture_output=True,
                         text=True).stdout.split()
    return " ".join(out[:1]) or "?"


# ---- the relays ---------------------------------------------------------------

class Mrs(Server):
    name = "mrs"

    def __init__(self, args, tmp, dns_port, sink, certs, extra_env=None, spool_parent=None):
        self.bin = os.path.join(args.build, "mrs")
        self.port, self.health = free_port(), free_port()
        self.spool = tempfile.mkdtemp(prefix="mrs-spool-", dir=spool_parent or tmp)
        pw_hash = subprocess.run([self.bin, "passwd"], input=PASSWORD + "\n", capture_output=True,
                                 text=True, check=True).stdout.strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MRS_")}
        env.update({
            "MRS_HOSTNAME": "mrs.bench.test",
            "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{self.port}",
            "MRS_SUBMISSIONS_LISTEN": "off",
            "MRS_HEALTH_LISTEN": f"127.0.0.1:{self.health}",
            "MRS_SPOOL_DIR": self.spool,
            "MRS_USERS": f"{USER}:{pw_hash}",
            "MRS_DNS_SERVERS": f"127.0.0.1:{dns_port}",
            # both pairs (SPEC §8.2): ECDSA for clients that offer it
            "MRS_TLS_CERT": f"{certs.ec[0]},{certs.rsa[0]}", "MRS_TLS_KEY": f"{certs.ec[1]},{certs.rsa[1]}",
            "MRS_SMARTHOST": f"127.0.0.1:{sink.port}", "MRS_SMARTHOST_TLS": "none",
            "MRS_MAX_CONNECTIONS": "20000",
            # every load-generator thread is on 127.0.0.1: one client
            "MRS_MAX_CONNECTIONS_PER_CLIENT": "20000",
        })
        env.update(extra_env or {})
        t0 = time.monotonic()
        self.proc = PROCS.start("mrs", [self.bin, "serve"], os.path.join(tmp, "mrs.log"), env=env)
        self.root = self.proc.pid
        self.ready_s = self.wait_ready(t0)

    def wait_ready(self, t0, timeout=20):
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mrs exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError("mrs not ready")

    def stop(self):
        PROCS.stop(self.proc, timeout=40)


POSTFIX_MASTER_CF = """\
127.0.0.1:{port} inet n - n - 200 smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix(Server):
    """A private Postfix instance: `postfix -c DIR start-fg`, everything
    under DIR's parent; stopped by signalling its master by pid."""
    name = "Postfix"

    def __init__(self, tmp, sink, certs, base_name="postfix", queue_parent=None):
        base = os.path.join(tmp, base_name)
        self.conf = os.path.join(base, "conf")
        for d in ("conf/sasl", "data"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        queue = os.path.join(queue_parent or base, base_name + "-queue")
        os.makedirs(queue, exist_ok=True)
        shutil.chown(os.path.join(base, "data"), "postfix")
        self.port = free_port()
        self.log = os.path.join(base, "postfix.log")
        sasldb = os.path.join(base, "sasldb2")
        main_cf = f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink.port}
smtp_tls_security_level = none
maillog_file_prefixes = {tmp}
maillog_file = {self.log}
smtpd_tls_cert_file = {certs.rsa[0]}
smtpd_tls_key_file = {certs.rsa[1]}
smtpd_tls_eccert_file = {certs.ec[0]}
smtpd_tls_eckey_file = {certs.ec[1]}
smtpd_tls_security_level = may
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {self.conf}/sasl
message_size_limit = 26214400
biff = no
"""
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(port=self.port))
        # Debian's Postfix looks for smtpd.conf in $config_directory/sasl
        with open(os.path.join(self.conf, "sasl", "smtpd.conf"), "w") as f:
            f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
                    f"sasldb_path: {sasldb}\n")
        user, realm = USER.split("@")
        subprocess.run(["saslpasswd2", "-f", sasldb, "-p", "-c", "-u", realm, user],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        shutil.chown(sasldb, "postfix")
        self.proc = PROCS.start("postfix", ["postfix", "-c", self.conf, "start-fg"],
                                os.path.join(base, "start-fg.log"))
        wait_port(self.port, 30, self.proc)
        self.root = self.master_pid()

    def master_pid(self):
        for pid in descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "master":
                        return pid
            except OSError:
                pass
        raise RuntimeError("no Postfix master process")

    def stop(self):
        pids = self.pids()
        try:
            os.kill(self.root, signal.SIGTERM)
        except ProcessLookupError:
            pass
        PROCS.stop(self.proc, sig=0, timeout=30)
        end = time.time() + 10
        while time.time() < end and any(proc_stat(p) for p in pids[1:]):
            time.sleep(0.1)
        for p in pids:  # whatever survived its master: by pid
            if proc_stat(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ---- loads --------------------------------------------------------------------

def loadgen_bin(args):
    return os.path.join(args.build, "tools", LOADGENS[args.loadgen])


def number(v):
    try:
        return float(v)
    except ValueError:
        return v


def loadgen(args, port, clients, per_conn, count, seconds, extra=(), quiet=True):
    argv = [loadgen_bin(args), "-p", str(port), "-u", USER, "-f", SENDER,
            "-r", RCPT, "-c", str(clients), "-k", str(per_conn), "-n", str(count), "-t", str(seconds),
            "-s", str(args.size), *extra]
    if quiet:
        argv.append("-q")
    env = dict(os.environ, LOADGEN_PASSWORD=PASSWORD)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            r = dict(kv.split("=", 1) for kv in line.split()[1:])
            return {k: number(v) for k, v in r.items()}
    raise RuntimeError(f"loadgen: no RESULT (exit {out.returncode}): {out.stderr[-500:]}")


def ssl_version():
    return subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.split()[1:2][0] \
        if shutil.which("openssl") else "?"


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_times():
    """(steal, total) jiffies of all CPUs, from /proc/stat"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[7] if len(v) > 7 else 0), sum(v[:8])


def settle(args):
    """Before a row: the previous row's dirty queue files written back (the
    loop device's writeback would otherwise run during this row, on the
    CPUs it measures) and a short quiet pause."""
    os.sync()
    time.sleep(args.settle)


def run_row(args, server, sink, row, delivers):
    label, clients, per_conn, count, seconds, extra = row
    seconds = args.row_seconds or seconds
    load0 = loadavg()
    sampler = Sampler(server)
    sampler.start()
    cpu0, sink0 = server.cpu_seconds(), sink.count()
    steal0, total0 = cpu_times()
    t0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = loadgen(args, server.port, clients, per_conn, count, seconds, extra)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1 = time.monotonic()
    client_cpu = r.get("cpu_s", (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime))
    sink1 = sink.count()
    accepted = int(r["accepted"])
    drain, got = None, None
    if delivers:
        end = t1 + DRAIN_LIMIT_S
        while sink.count() - sink0 < accepted and time.monotonic() < end:
            time.sleep(0.05)
        got = sink.count() - sink0
        drain = time.monotonic() - t1 if got >= accepted else float("inf")
    cpu1 = server.cpu_seconds()
    steal1, total1 = cpu_times()
    sampler.stop()
    res = {
        "label": label, "server": server.name, "accepted": accepted, "failed": int(r["failed"]),
        "failures": r["failures"], "rate": r["rate"], "p50": r["p50_ms"], "p99": r["p99_ms"],
        "delivered_rate": (sink1 - sink0) / (t1 - t0) if delivers else None, "drain": drain,
        "rss": sampler.peak_rss, "pss": sampler.peak_pss, "procs": sampler.peak_procs,
        "cpu_per_1k": (cpu1 - cpu0) / accepted * 1000 if accepted else None, "load": load0,
        "client_cpu_per_1k": client_cpu / accepted * 1000 if accepted else None,
        "delivered": got, "key": r.get("server_key", "?"),
        "resumed": r.get("resumed"), "offered": r.get("resume_offered"),
        "steal": 100.0 * (steal1 - steal0) / (total1 - total0) if total1 > total0 else None,
    }
    log(f"{server.name} {label}: {res['rate']:.0f} msg/s accepted, p50 {res['p50']:.1f} ms, "
        f"p99 {res['p99']:.1f} ms, failed {res['failed']} ({res['failures']}), delivered {got}, "
        f"server key {res['key']}, load {load0:.2f}")
    return res


def warm_up(args, server, sink):
    """Spawns Postfix's processes, fills caches (DNS, AUTH) on both; tells
    whether the relay delivers to the sink at all (within 15 s)."""
    s0 = sink.count()
    r = loadgen(args, server.port, 4, 1, 40, 20)
    if r["accepted"] == 0:
        raise RuntimeError(f"{server.name}: warm-up accepted nothing: {r['failures']}")
    end = time.time() + 15
    while time.time() < end and sink.count() - s0 < r["accepted"]:
        time.sleep(0.1)
    return sink.count() - s0 > 0


# ---- idle sessions (memory) ------------------------------------------------------

def hold_idle(args, port, n, tls, server, seconds=120):
    """Open n idle sessions with loadgen -I, measure the server's memory
    while they are held, release them."""
    argv = [loadgen_bin(args), "-p", str(port), "-I", str(n), "-t", str(seconds)]
    if tls:
        argv.append("-T")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.bench_name = "loadgen-idle"
    PROCS.list.append(p)
    held = 0
    for line in p.stdout:  # "tls: …" may come first
        if line.startswith("HELD"):
            held = int(line.split()[1])
            break
    time.sleep(1.0)
    rss, pss, _ = server.memory()
    PROCS.stop(p, timeout=60)
    return held, rss, pss


def idle_rss(server, settle=1.0):
    time.sleep(settle)
    rss, pss, _ = server.memory()
    return rss, pss


# ---- report ---------------------------------------------------------------------

def mb(b):
    return f"{b / 1048576:.1f}"


def fmt(v, spec, none="n/a"):
    if v is None:
        return none
    if v == float("inf"):
        return f">{DRAIN_LIMIT_S}"
    return format(v, spec)


def ratio(a, b):
    if a is None or b is None or b == 0 or a == float("inf") or b == float("inf"):
        return "n/a"
    return f"{a / b:.2f}x"


def delivered_check(r):
    """delivered = accepted: what reached the sink after the drain."""
    if r["delivered"] is None:
        return "n/a"
    return "ok" if r["delivered"] >= r["accepted"] else f"**{r['accepted'] - r['delivered']} missing**"


def table(rows_out):
    head = ("| load | relay | accepted msg/s | p50 ms | p99 ms | server CPU ms/msg | loadgen CPU ms/msg | "
            "delivered = accepted | drain after, s | peak RSS MB (procs) | peak PSS MB | server key | failed | "
            "load avg | steal % |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, *_ in ROWS:
        pair = [rows_out.get((label, n)) for n in ("mrs", "Postfix")]
        for r in pair:
            if not r:
                continue
            key = r["key"]
            if r["offered"]:
                key += f", resumed {r['resumed']:.0f}/{r['offered']:.0f}" if r["resumed"] is not None else ""
            lines.append(f"| {label} | {r['server']} | {r['rate']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                         f"{fmt(r['cpu_per_1k'], '.2f')} | {fmt(r['client_cpu_per_1k'], '.2f')} | "
                         f"{delivered_check(r)} ({r['accepted']}) | {fmt(r['drain'], '.1f')} | "
                         f"{mb(r['rss'])} ({r['procs']}) | {mb(r['pss'])} | {key} | {r['failed']} | "
                         f"{r['load']:.2f} | {fmt(r['steal'], '.1f')} |")
        a, b = pair
        if a and b:
            lines.append(f"| {label} | **mrs/Postfix** | **{ratio(a['rate'], b['rate'])}** | "
                         f"{ratio(a['p50'], b['p50'])} | **{ratio(a['p99'], b['p99'])}** | "
                         f"{ratio(a['cpu_per_1k'], b['cpu_per_1k'])} | | | | {ratio(a['rss'], b['rss'])} | "
                         f"{ratio(a['pss'], b['pss'])} | | | | |")
    return "\n".join(lines)


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "-C", TOP, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", TOP, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    pf = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({model}), kernel {os.uname().release}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {rev}"
            f"{' (with uncommitted changes in the work tree)' if dirty else ''}, Postfix {pf}")


# ---- main -----------------------------------------------------------------------

IDLE_TLS_KB_MAX = 40   # issue 11: 1,000 idle TLS sessions at most 40 KB each
IDLE_RSS_MB_MAX = 4


def mrs_extras(args, tmp, dns_port, sink, certs):
    out = {"size": os.path.getsize(os.path.join(args.build, "mrs"))}
    starts = []
    for _ in range(3):
        m = Mrs(args, tmp, dns_port, sink, certs)
        starts.append(m.ready_s)
        m.stop()
    out["cold_start_ms"] = statistics.median(starts) * 1000
    m = Mrs(args, tmp, dns_port, sink, certs)
    idles = [("plain1k", 1000, False), ("tls1k", 1000, True)]
    if not args.quick:
        idles.insert(1, ("plain10k", 10000, False))
    try:
        out["idle"] = idle_rss(m)
        for key_, n, tls in idles:
            # past the 5 s a parked session thread waits for a connection
            # (src/listener.c): the base holds no thread of the last round
            base = idle_rss(m, 6.0)
            held, rss, pss = hold_idle(args, m.port, n, tls, m)
            out[key_] = (held, base, rss, pss)
            log(f"mrs idle {key_}: held {held}, RSS {mb(base[0])} -> {mb(rss)} MB")
    finally:
        m.stop()
    return out


def extras_table(ex, pf_idle):
    lines = ["| measure | mrs | Postfix |", "|---|---|---|"]
    lines.append(f"| binary | {ex['size'] / 1e6:.2f} MB, static (musl + mbedTLS + libsodium) | "
                 f"dynamically linked, many programs |")
    lines.append(f"| cold start to /readyz 200 (median of 3) | {ex['cold_start_ms']:.0f} ms | |")
    pfi = pf_idle or {}
    idle_ok = "ok" if ex["idle"][0] < IDLE_RSS_MB_MAX * 1048576 else f"**over {IDLE_RSS_MB_MAX} MB**"
    lines.append(f"| RSS idle (all processes) | {mb(ex['idle'][0])} MB (PSS {mb(ex['idle'][1])}), "
                 f"< {IDLE_RSS_MB_MAX} MB: {idle_ok} | "
                 + (f"{mb(pfi['idle'][0])} MB (PSS {mb(pfi['idle'][1])}) |" if pfi else "|"))
    for key_, what in (("plain1k", "plaintext"), ("plain10k", "plaintext"), ("tls1k", "TLS (after STARTTLS + EHLO)")):
        if key_ not in ex:
            continue
        held, base, rss, _ = ex[key_]
        per = (rss - base[0]) / held / 1024 if held else 0
        check = ""
        if key_ == "tls1k":
            check = f", ≤ {IDLE_TLS_KB_MAX} KB: " + ("ok" if held and per <= IDLE_TLS_KB_MAX else "**no**")
        lines.append(f"| {held:,} idle {what} sessions | {mb(rss)} MB RSS, {per:.1f} KB per session{check} | |")
    if pfi:
        held, rss, pss = pfi["tls"]
        per = (rss - pfi["idle"][0]) / held / 1024 if held else 0
        perp = (pss - pfi["idle"][1]) / held / 1024 if held else 0
        lines.append(f"| {held} idle TLS sessions (Postfix: one smtpd each, process limit 200) | | "
                     f"{mb(rss)} MB RSS, {per:.0f} KB per session (PSS {perp:.0f} KB) |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, os.environ.get("MRS_BUILD_DIR", "build")))
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--only", choices=["mrs", "postfix"])
    ap.add_argument("--rows", help="comma-separated labels of ROWS to run (default all)")
    ap.add_argument("--no-extras", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    ap.add_argument("--settle", type=float, default=3.0, metavar="S",
                    help="seconds of quiet (after a sync) before each row (default 3)")
    ap.add_argument("--no-loop-fs", action="store_true",
                    help="queues on the temporary folder, not on a loop-mounted ext4")
    ap.add_argument("--deadline", type=int, default=840, help="seconds for the whole run")
    ap.add_argument("--loadgen", choices=sorted(LOADGENS), default="openssl",
                    help="the client's TLS: openssl (tools/loadgen-ossl, default) or mbedtls (tools/loadgen)")
    ap.add_argument("--row-seconds", type=int, help="seconds per row instead of each row's own")
    ap.add_argument("--quick", action="store_true",
                    help="a check that everything works, not a measurement: 3 s per row, no 10,000-session "
                         "measurement")
    args = ap.parse_args()
    if args.quick and not args.row_seconds:
        args.row_seconds = 3
    if args.quick:
        args.settle = 0
    args.build = os.path.abspath(args.build)
    global ROWS
    if args.rows:
        want = [w.strip() for w in re.split(r",(?=\s*c=)", args.rows)]  # labels have commas too
        ROWS = [r for r in ROWS if r[0] in want]
    if args.loadgen == "mbedtls":  # loadgen has no -x: it would get the ECDSA certificate
        ROWS = [r for r in ROWS if "-x" not in r[5]]

    def on_signal(sig, frame):
        raise SystemExit(f"bench: signal {sig}: stopping")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.deadline)

    tmp = tempfile.mkdtemp(prefix="mrs-bench-")
    os.chmod(tmp, 0o755)
    out_rows, ex, pf_idle = {}, None, None
    header = machine()
    spool_fs = None
    try:
        spool_fs = SpoolFs(tmp) if not args.no_loop_fs else None
        queues = spool_fs.path("queues") if spool_fs and spool_fs.mounted else None
        fs_kind = spool_fs.kind if spool_fs else f"the temporary folder's filesystem ({fs_type(tmp)})"
        dns_port = start_dns(tmp)
        sink = Sink(tmp)
        certs = Certs(tmp)
        servers = []
        if args.only != "postfix":
            servers.append(Mrs(args, tmp, dns_port, sink, certs, spool_parent=queues))
        if args.only != "mrs":
            servers.append(Postfix(tmp, sink, certs, queue_parent=queues))
        delivers = {}
        for s in servers:
            delivers[s.name] = warm_up(args, s, sink)
            log(f"{s.name}: ready on 127.0.0.1:{s.port}, delivers to the sink: {delivers[s.name]}")
        for i, row in enumerate(ROWS):
            order = servers if i % 2 == 0 else list(reversed(servers))  # neither always goes first
            for s in order:
                settle(args)
                out_rows[(row[0], s.name)] = run_row(args, s, sink, row, delivers[s.name])
        for s in servers:
            s.stop()
        if args.only != "mrs" and not args.no_extras:
            # a fresh instance: the one above keeps idle smtpd processes
            pf = Postfix(tmp, sink, certs, "postfix-idle")
            try:
                pf_idle = {"idle": idle_rss(pf, 2.0)}
                pf_idle["tls"] = hold_idle(args, pf.port, 100, True, pf)
            finally:
                pf.stop()
        if not args.no_extras and args.only != "postfix":
            ex = mrs_extras(args, tmp, dns_port, sink, certs)
    finally:
        PROCS.cleanup()
        if spool_fs:
            spool_fs.cleanup()
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"Machine: {header}")
    client = ("tools/loadgen-ossl (OpenSSL " + ssl_version() + ")" if args.loadgen == "openssl"
              else "tools/loadgen (mbedTLS via src/conn.c)")
    print(f"Load: one {args.size}-byte message per TLS 1.3 connection unless noted, AUTH PLAIN, one recipient; "
          f"client {client} on the same machine (its own CPU in the loadgen column); "
          f"{args.row_seconds or 'up to 15-20'} s per row, each after a sync and {args.settle:g} s of quiet; "
          f"load avg = 1-minute load when the row started. "
          f"Both queues on {fs_kind}." + (" QUICK RUN: a functional check, not a measurement." if args.quick else ""))
    print()
    print(table(out_rows))
    if ex:
        print()
        print(extras_table(ex, pf_idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
