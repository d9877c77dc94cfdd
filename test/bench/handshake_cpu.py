#!/usr/bin/env python3
"""The relay's CPU per TLS connection (issue 11): one client, one message
per connection, so each connection is one full handshake (TLS 1.3, X25519
key share from the load generator) + EHLO, AUTH PLAIN, one 1 KB message.

For each certificate (ECDSA P-256, RSA-2048, made by openssl): a fresh
relay with a closed smarthost (accepted mail stays queued, delivery costs
nothing), then build/tools/loadgen -c 1 -k 1.  The relay's CPU (utime +
stime of its process from /proc) before and after, divided by the
connections.  Prints the load average next to each row: the machine may be
shared, and CPU time still grows under contention (caches, SMT siblings).

    /usr/bin/python3 test/bench/handshake_cpu.py [--build build] [--loadgen PATH] [-n 1000]

Loopback only; every process is ended by pid.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402

USER, PW = "load@bench.test", "load-secret"
DOMAIN = "bench.test"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_cert(h, kind):
    d = os.path.join(h.tmp, f"cert-{kind}")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def run(h, dns, cert, key, args):
    env = {"MRS_SMARTHOST": f"127.0.0.1:{harness.free_port()}", "MRS_SMARTHOST_TLS": "none",
           "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h", "MRS_LOG_LEVEL": "warn",
           "MRS_MAX_CONNECTIONS_PER_CLIENT": "500", "MRS_TLS_CERT": cert, "MRS_TLS_KEY": key}
    m = h.mrs(dns=dns, env=env, users={USER: PW})
    before = cpu_seconds(m.proc.pid)
    argv = [args.loadgen or os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port),
            "-u", USER, "-f", f"news@{DOMAIN}", "-r", "someone@example.org", "-q", "-c", "1", "-k", "1",
            "-n", str(args.n), "-s", "1024", "-t", "600"]
    r = subprocess.run(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), capture_output=True, text=True,
                       timeout=900)
    used = cpu_seconds(m.proc.pid) - before
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), "")
    res = dict(kv.split("=", 1) for kv in line.split()[1:])
    m.stop()
    return int(res.get("connections", 0)), int(res.get("accepted", 0)), used


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--loadgen", help="load generator to use (default BUILD/tools/loadgen)")
    ap.add_argument("-n", type=int, default=1000)
    args = ap.parse_args()
    h = harness.Harness(os.path.abspath(args.build))
    try:
        dns = h.dns([f'{DOMAIN}. TXT "{harness.SPF_OK}"', f'{DOMAIN}. TXT "{harness.token_for(USER)}"'])
        print(f"{args.build}/mrs, loadgen -c 1 -k 1 -n {args.n} -s 1024 (STARTTLS, TLS 1.3, X25519)")
        for kind, name in (("ec", "ECDSA P-256"), ("rsa", "RSA-2048")):
            cert, key = make_cert(h, kind)
            conns, accepted, used = run(h, dns, cert, key, args)
            per = used / conns * 1000 if conns else float("nan")
            load = open("/proc/loadavg").read().split()[:3]
            print(f"{name:12} connections {conns:5}  accepted {accepted:5}  relay CPU {used:6.2f} s  "
                  f"{per:.3f} ms/connection  (load {' '.join(load)})")
    finally:
        h.cleanup()


if __name__ == "__main__":
    main()
