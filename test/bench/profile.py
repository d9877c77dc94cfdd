#!/usr/bin/env python3
"""Server cost of one message, end to end (issue 11): system calls per
message (strace -c -f attached to mrs), CPU per message (user and system,
from /proc), context switches (perf stat) and page faults per message, for N messages submitted by the
OpenSSL load generator and delivered to a local sink.

  /usr/bin/python3 test/bench/profile.py --build build/dev [-n 300] [-c 1] [-k 1] [--no-strace]

Loopback only: a DNS server (unbound), an aiosmtpd sink as the smarthost,
mrs from BUILD, tools/loadgen-ossl (test/bench/build-loadgen-ossl.sh).
strace slows every system call down, so its CPU numbers are taken in a
separate pass without it.  Every process it starts is ended by pid (the
test harness's cleanup).  Numbers from a shared machine: read them with the
load average it prints.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "test", "integration"))
from harness import SPF_OK, Harness, token_for  # noqa: E402

USER, PW = "prof@prof.test", "prof-secret"
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """user s, system s, minor page faults"""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK, int(fields[7])


def run_load(h, m, args):
    argv = [os.path.join(h.build, "tools", "loadgen-ossl"), "-p", str(m.submission_port), "-u", USER,
            "-f", "news@prof.test", "-r", "someone@example.org", "-c", str(args.c), "-k", str(args.k),
            "-n", str(args.n), "-s", str(args.size), "-t", "120", "-q"]
    r = subprocess.run(argv, env=dict(os.environ, LOADGEN_PASSWORD=PW), capture_output=True, text=True,
                       timeout=200)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if not line:
        raise SystemExit(f"loadgen-ossl: {r.stdout}{r.stderr}")
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def one_pass(h, dns, sink, args, trace, perf=None):
    m = h.mrs(dns=dns, users={USER: PW}, spool=args.spool_fs.path(f"spool-{time.monotonic_ns()}") if args.spool_fs else None,
              env={"MRS_SMARTHOST": f"127.0.0.1:{sink.port}", "MRS_SMARTHOST_TLS": "none",
                   "MRS_LOG_LEVEL": "info", "MRS_MAX_CONNECTIONS_PER_CLIENT": "1000"})
    pid = m.proc.p.pid
    warm = len(sink.messages)
    run_load(h, m, argparse.Namespace(**{**vars(args), "n": 4, "c": 1, "k": 1}))  # caches, first threads
    sink.wait(warm + 4, timeout=60)
    base = len(sink.messages)
    st = None
    if trace:
        out = tempfile.mktemp(prefix="strace-", dir=h.tmp)
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)] if trace is True else
                              ["strace", "-f"] + (["-k"] if os.environ.get("PROFILE_STRACE_STACKS") else []) + ["-e", f"trace={trace}", "-o", out + ".log", "-p", str(pid)],
                              stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # strace attaches to every thread
    pf = None
    if perf:
        pf = subprocess.Popen(["perf", "record", "-q"] +
                              (["-e", args.perf_event, "-c", "1"] if args.perf_event else ["-F", "2000"]) +
                              ["--call-graph", args.call_graph, "-o", perf, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    ps = None
    if not trace:  # context switches of every thread, those that end included
        ps_out = tempfile.mktemp(prefix="perfstat-", dir=h.tmp)
        ps = subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches", "-o", ps_out, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    u0, s0, f0 = proc_cpu(pid)
    t0 = time.monotonic()
    res = run_load(h, m, args)
    n = int(res["accepted"])
    sink.wait(base + n, timeout=120)
    wall = time.monotonic() - t0
    u1, s1, f1 = proc_cpu(pid)
    cs = float("nan")
    if ps:
        ps.send_signal(signal.SIGINT)
        ps.wait(30)
        with open(ps_out) as f:
            for line in f:
                if "context-switches" in line:
                    cs = float(line.split(",")[0])
    if pf:
        pf.send_signal(signal.SIGINT)
        pf.wait(60)
    calls = {}
    if st:
        st.send_signal(signal.SIGINT)
        st.wait(30)
    if st and trace is True:
        with open(out) as f:
            for line in f:
                mm = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
                if mm and mm.group(2) != "total":
                    calls[mm.group(2)] = int(mm.group(1))
    m.stop() if hasattr(m, "stop") else None
    res["faults"] = f1 - f0
    return n, wall, (u1 - u0), (s1 - s0), cs, calls, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-c", type=int, default=1)
    ap.add_argument("-k", type=int, default=1)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--trace", metavar="CALLS", help="instead: log these system calls (strace -e trace=CALLS) "
                    "into the temporary folder, kept")
    ap.add_argument("--perf-event", metavar="EVENT",
                    help="with --perf: record every EVENT (a tracepoint such as syscalls:sys_enter_futex or "
                         "sched:sched_switch) instead of sampling the CPU clock")
    ap.add_argument("--perf", metavar="FILE", help="also `perf record -g` mrs during the pass without strace")
    ap.add_argument("--call-graph", default="fp", metavar="MODE",
                    help="perf's call-graph mode: fp (default) or dwarf,8192 (user-space callers without frame pointers)")
    ap.add_argument("--callgrind", metavar="FILE", help="run mrs under valgrind --tool=callgrind (exact instruction "
                    "counts per function and caller; slow: use a small -n) and write its profile to FILE")
    ap.add_argument("--loop-fs", action="store_true",
                    help="the spool on a fresh journaled ext4 on a loop device, as ./build.sh bench has it")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # aiosmtpd's deprecation notes
    args.build = os.path.abspath(args.build)
    h = Harness(args.build)
    args.spool_fs = None
    if args.loop_fs:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench import SpoolFs  # noqa: E402
        args.spool_fs = SpoolFs(h.tmp)
    if args.callgrind:
        wrap = os.path.join(h.tmp, "mrs-callgrind")
        with open(wrap, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={os.path.abspath(args.callgrind)} "
                    f"{h.mrs_bin} \"$@\"\n")
        os.chmod(wrap, 0o755)
        h.mrs_bin = wrap
        args.no_strace = True
    try:
        dns = h.dns([f'prof.test. TXT "{SPF_OK}"', f'prof.test. TXT "{token_for(USER)}"'])
        sink = h.sink()
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print(f"build {args.build}: {args.n} messages of {args.size} bytes, c={args.c}, {args.k} per connection, "
              f"load average {' '.join(load)}")
        n, wall, u, s, cs, _, res = one_pass(h, dns, sink, args, False, args.perf)
        print(f"without strace: {n} accepted and delivered in {wall:.2f} s; mrs CPU per message "
              f"{(u + s) / n * 1000:.3f} ms (user {u / n * 1000:.3f}, system {s / n * 1000:.3f}); "
              f"context switches per message {cs / n:.1f}; minor page faults per message {res['faults'] / n:.1f}; loadgen p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms")
        if not args.no_strace:
            n, _, _, _, _, calls, _ = one_pass(h, dns, sink, args, args.trace or True)
        if args.trace:
            print(f"strace log: {h.tmp}/strace-*.log")
            return
        if not args.no_strace:
            total = sum(calls.values())
            print(f"strace -c -f: {total / n:.1f} system calls per message ({n} messages, delivery included)")
            for name, k in sorted(calls.items(), key=lambda kv: -kv[1])[:24]:
                print(f"  {name:18} {k / n:7.2f}")
    finally:
        h.cleanup()
        if args.spool_fs:
            args.spool_fs.cleanup()


if __name__ == "__main__":
    main()
