#!/usr/bin/env python3
"""CPU per accepted message of mrs with DKIM signing off, with an RSA-2048
key and with an Ed25519 key (issue 12), end to end through the real
submission dialog.

For each configuration: a fresh relay (release build) whose sender domain
delegates the key by CNAME in a loopback unbound (test_dkim's ZoneDns), a
closed smarthost (accepted mail stays queued, so delivery costs nothing),
then build/tools/loadgen: C clients, K messages per TLS connection, N
messages of S bytes.  The relay's CPU (utime + stime of its process from
/proc) before and after the load, divided by the messages accepted.

    /usr/bin/python3 test/bench/dkim_cpu.py [--build build] [-n 2000] [-c 4] [-k 10] [-s 10240]

Loopback only; every process is ended by pid.  The load generator runs on
the same CPUs: the relay's CPU time is counted on its own.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from test_dkim import OP, ZoneDns, records  # noqa: E402

USER, PW = "load@bench.test", "load-secret"
DOMAIN = "bench.test"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(h, dns, keys, sel, args):
    env = {"MRS_SMARTHOST": f"127.0.0.1:{harness.free_port()}", "MRS_SMARTHOST_TLS": "none",
           "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "2h", "MRS_LOG_LEVEL": "warn",
           "MRS_MAX_CONNECTIONS_PER_CLIENT": "500", "MRS_DKIM_DOMAIN": OP}
    if sel:
        env["MRS_DKIM_KEYS"] = f"{sel}:{keys[sel]}"
    m = h.mrs(dns=dns, env=env, users={USER: PW})
    before = cpu_seconds(m.proc.pid)
    argv = [os.path.join(h.build, "tools", "loadgen"), "-p", str(m.submission_port), "-u", USER,
            "-f", f"news@{DOMAIN}", "-r", "someone@example.org", "-q", "-c", str(args.c), "-k", str(args.k),
            "-n", str(args.n), "-s", str(args.s), "-t", "600"]
    r = subprocess.run(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), capture_output=True, text=True,
                       timeout=900)
    used = cpu_seconds(m.proc.pid) - before
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), "")
    res = dict(kv.split("=", 1) for kv in line.split()[1:])
    _, metrics = m.http("GET", "/metrics")
    signed = sum(int(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines()
                 if ln.startswith("mrs_dkim_signatures_total{") and 'result="signed"' in ln)
    m.stop()
    accepted = int(res.get("accepted", 0))
    return accepted, used, signed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=4)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("-s", type=int, default=10240)
    args = ap.parse_args()
    h = harness.Harness(os.path.abspath(args.build))
    try:
        keydir = os.path.join(h.tmp, "keys")
        os.makedirs(keydir)
        keys = {}
        for sel, kind in (("rsa", "rsa"), ("ed", "ed25519")):
            keys[sel] = os.path.join(keydir, sel + ".pem")
            with open(keys[sel], "w") as f:
                f.write(subprocess.run([h.mrs_bin, "dkim-keygen", kind], capture_output=True, text=True,
                                       check=True).stdout)
        zone = records(h, keys, ["rsa", "ed"], DOMAIN)
        zone += [f'{DOMAIN}. 60 IN TXT "{harness.SPF_OK}"', f'{DOMAIN}. 60 IN TXT "{harness.token_for(USER)}"']
        dns = ZoneDns(h, zone)
        print(f"loadgen -c {args.c} -k {args.k} -n {args.n} -s {args.s} (TLS 1.3, AUTH PLAIN, one RCPT)")
        base = None
        for name, sel in (("no DKIM", None), ("rsa-sha256 2048", "rsa"), ("ed25519-sha256", "ed")):
            accepted, used, signed = run(h, dns, keys, sel, args)
            per = used / accepted * 1000 if accepted else float("nan")
            base = per if base is None else base
            print(f"{name:18} accepted {accepted:5}  signed {signed:5}  relay CPU {used:6.2f} s  "
                  f"{per:.3f} ms/message  (+{per - base:.3f} ms)")
    finally:
        h.cleanup()


if __name__ == "__main__":
    main()
