#!/usr/bin/env python3
"""demo.py — the loopback world `./build.sh run` gives a first-time user, so
the relay's main job can be seen working on a laptop:

  * unbound on 127.0.0.1:DNS_PORT serving the zone of one demo sender domain
    with the two records mrs requires (the SPF include and the account
    token), and nothing else;
  * a receiving SMTP server (aiosmtpd) on 127.0.0.1:SINK_PORT that mrs uses
    as its smarthost; every message it receives is written to
    DIR/mail/<n>.eml and announced on stdout.

It writes DIR/ready when both listen and runs until SIGTERM/SIGINT, then
stops unbound (its own child) and exits.  Test tooling only: the relay has
no demo switches.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"unbound exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def unbound_conf(d, port, domain, records):
    lines = [
        "server:",
        f"  interface: 127.0.0.1@{port}", f"  port: {port}",
        "  do-daemonize: no", '  chroot: ""', '  username: ""', '  pidfile: ""',
        f'  directory: "{d}"', "  use-syslog: no", '  logfile: ""', "  verbosity: 0",
        "  do-ip6: no", "  num-threads: 1", "  so-reuseport: no",
        "  access-control: 127.0.0.0/8 allow", '  module-config: "iterator"',
        "  do-not-query-localhost: yes",
        f'  local-zone: "{domain}." static',
    ]
    for r in records:
        lines.append(f"  local-data: '{domain}. 60 IN TXT \"{r}\"'")
    lines += ["remote-control:", "  control-enable: no"]
    path = os.path.join(d, "unbound.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start_sink(port, maildir):
    from aiosmtpd.controller import Controller

    count = [len(os.listdir(maildir))]
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with lock:
                count[0] += 1
                path = os.path.join(maildir, f"{count[0]}.eml")
            data = envelope.original_content or envelope.content
            with open(path + ".tmp", "wb") as f:
                f.write(b"X-Demo-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
                f.write(b"X-Demo-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
                f.write(data)
            os.rename(path + ".tmp", path)
            print(f"demo: delivered: {envelope.mail_from} -> {', '.join(envelope.rcpt_tos)}: {path}",
                  flush=True)
            return "250 2.0.0 OK stored"

    c = Controller(Handler(), hostname="127.0.0.1", port=port)
    c.start()
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--dns-port", type=int, required=True)
    ap.add_argument("--sink-port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--record", action="append", default=[])
    a = ap.parse_args()
    d = os.path.abspath(a.dir)
    maildir = os.path.join(d, "mail")
    os.makedirs(maildir, exist_ok=True)
    ready = os.path.join(d, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    conf = unbound_conf(d, a.dns_port, a.domain, a.record)
    log = open(os.path.join(d, "unbound.log"), "ab")
    dns = subprocess.Popen(["unbound", "-d", "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink = None
    try:
        wait_port(a.dns_port, dns)
        sink = start_sink(a.sink_port, maildir)
        wait_port(a.sink_port, None)
        open(ready, "w").close()
        while not stop.is_set() and dns.poll() is None:
            stop.wait(0.5)
    except Exception as e:  # noqa: BLE001 — one line for build.sh, then clean up
        print(f"demo: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if sink:
            sink.stop()
        if dns.poll() is None:
            dns.terminate()
            try:
                dns.wait(10)
            except subprocess.TimeoutExpired:
                dns.kill()
        if os.path.exists(ready):
            os.unlink(ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
