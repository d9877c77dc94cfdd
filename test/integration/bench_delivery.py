#!/usr/bin/env python3
"""Delivery throughput to a local sink: N messages written straight into a
spool (the committed format of docs/spool.md), then the relay starts on it
and the clock runs until the sink holds all N.  Not part of the test suite
(run.py only collects test_*.py).

  /usr/bin/python3 test/integration/bench_delivery.py [--build build] [-n 2000] [--threads 8]
      [--sink aiosmtpd|fast] [--size 2000]

--sink fast is a minimal asyncio SMTP receiver (no parsing beyond the
dialog) so the relay, not Python's aiosmtpd, is what gets measured.
"""
import argparse
import asyncio
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class FastSink:
    """Accepts every message; counts them.  One asyncio loop in a thread."""

    def __init__(self, addr, port):
        self.count = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(reader, writer):
            writer.write(b"220 fast.sink ESMTP\r\n")
            in_data = False
            while True:
                line = await reader.readline()
                if not line:
                    break
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        with self.lock:
                            self.count += 1
                        writer.write(b"250 2.0.0 ok\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-fast.sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
            writer.close()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(handle, addr, port, backlog=512))
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(5)

    def received(self):
        with self.lock:
            return self.count


def fill_spool(spool, n, size):
    qdir = os.path.join(spool, "queue")
    os.makedirs(qdir, exist_ok=True)
    body = ("Subject: bench\r\nFrom: a@customer.test\r\n\r\n" + ("x" * 76 + "\r\n") * (size // 78 + 1)).encode()
    now = int(time.time() * 1000)
    for i in range(n):
        qid = f"{(now + i) & 0xffffffffffff:012x}{random.getrandbits(32):08x}"
        env = f"MRS-SPOOL 1\nid {qid}\nreceived {now}\nuser \nclient \nhelo \nbody 7bit\nfrom a@customer.test\n" \
              f"rcpt u{i}@bench.test\n\n"
        with open(os.path.join(qdir, qid), "wb") as f:
            f.write(env.encode() + body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--threads", default="8")
    ap.add_argument("--sink", choices=("aiosmtpd", "fast"), default="fast")
    ap.add_argument("--size", type=int, default=2000)
    args = ap.parse_args()
    top = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    h = harness.Harness(os.path.join(top, args.build))
    try:
        port = harness.free_port("127.0.0.30")
        if args.sink == "fast":
            sink = FastSink("127.0.0.30", port)
            received = sink.received
        else:
            s = h.sink(addr="127.0.0.30", port=port)
            received = lambda: len(s.messages)  # noqa: E731
        dns = h.dns(["bench.test. MX 10 mx.bench.test.", "mx.bench.test. A 127.0.0.30"])
        m = h.mrs(dns=dns, start=False, env={"MRS_DELIVERY_PORT": str(port), "MRS_DELIVERY_THREADS": args.threads,
                                             "MRS_LOG_LEVEL": "warn"})
        fill_spool(m.spool, args.n, args.size)
        t0 = time.time()
        m.start(wait=False)
        while received() < args.n and time.time() - t0 < 300:
            time.sleep(0.01)
        dt = time.time() - t0
        print(f"{received()} of {args.n} messages of ~{args.size} bytes delivered in {dt:.2f}s "
              f"with {args.threads} delivery threads to a {args.sink} sink: {received() / dt:.0f} messages/s")
        m.stop()
    finally:
        h.cleanup()


if __name__ == "__main__":
    main()
