#!/usr/bin/env python3
"""Integration test runner: discovers test/integration/test_*.py, runs every
function named test_* in each, prints PASS/FAIL per test and ends with the
line "integration: N passed, N failed".

A module may define setup(h) -> ctx and teardown(ctx); its tests then take
ctx, except those whose parameter is named h, which get the harness.  Each test has a time limit
(TEST_TIMEOUT, default 120 s) so a hung server cannot hang the suite.
"""
import argparse
import importlib
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("test took too long")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    h = harness.Harness(os.path.abspath(os.path.join(HERE, "..", "..", args.build)))
    signal.signal(signal.SIGALRM, _alarm)
    passed = failed = 0
    mods = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    for name in mods:
        mod = importlib.import_module(name)
        tests = [(n, getattr(mod, n)) for n in sorted(dir(mod))
                 if n.startswith("test_") and callable(getattr(mod, n))]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        if args.filter:
            tests = [t for t in tests if args.filter in name or args.filter in t[0]]
        if not tests:
            continue
        ctx = h
        t0 = time.time()
        if hasattr(mod, "setup"):
            try:
                signal.alarm(180)
                ctx = mod.setup(h)
                signal.alarm(0)
            except BaseException:
                signal.alarm(0)
                traceback.print_exc()
                for tname, _ in tests:
                    print(f"FAIL {name}/{tname} (setup failed)", flush=True)
                    failed += 1
                h.cleanup()
                continue
        for tname, fn in tests:
            start = time.time()
            try:
                signal.alarm(int(getattr(fn, "timeout", 120)))
                # a test whose parameter is named h gets the harness itself
                fn(h if fn.__code__.co_varnames[:1] == ("h",) else ctx)
                signal.alarm(0)
                print(f"PASS {name}/{tname} ({time.time() - start:.1f}s)", flush=True)
                passed += 1
            except BaseException as e:  # noqa: BLE001 - report every failure
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                print(f"FAIL {name}/{tname} ({time.time() - start:.1f}s)", flush=True)
                traceback.print_exc(file=sys.stdout)
                h.dump_logs()
                failed += 1
        if hasattr(mod, "teardown"):
            try:
                mod.teardown(ctx)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
        # stop the servers first so exit-time reports are written too
        for p in h.procs:
            p.stop()
        reports = h.sanitizer_reports()
        if reports:
            print(f"FAIL {name}/sanitizer-clean", flush=True)
            print("\n".join(reports))
            failed += 1
        h.cleanup()
        print(f"   ({name}: {time.time() - t0:.1f}s)", flush=True)
    print(f"integration: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
