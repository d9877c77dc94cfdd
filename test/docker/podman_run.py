#!/usr/bin/env python3
"""test/docker/podman_run.py — run the image that test/docker/test.sh built
with a real OCI runtime (podman + runc), the way an operator would:

    podman_run.py --image IMAGE --name NAME --user-hash HASH --password PW \\
        --version V --revision R -- podman --runtime runc --root ... ARGS

Everything after "--" is the podman command with its private store (the
one buildah built into) and test.sh's private containers.conf in the
environment (CONTAINERS_CONF).  The containers run as 65534:65534 with
--read-only and --network=host (so they reach the loopback DNS server and
sink, and the host reaches their loopback listeners), the spool on a named
volume:

  1. `mrs version` in the image reports VERSION and the git revision;
  2. container NAME-1: /readyz 200 from the host, runs as 65534, its root is
     read-only and the spool volume writable, `podman healthcheck run` is
     healthy, /metrics has mrs_build_info{revision}; a message submitted
     with STARTTLS + AUTH reaches a sink on the host (MRS_SMARTHOST);
  3. the sink stops: a second message is accepted, deferred (the smarthost
     port is closed) and stays in the spool; `podman stop --time
     GRACE+MARGIN` while a third message is in the middle of DATA: /readyz
     turns 503, that message still gets 250, the container exits with code
     0 (no SIGKILL) and the spool holds both messages;
  4. container NAME-2 on the same volume, with a working smarthost, delivers
     them and the spool empties.

Prints "PASS docker/podman_<check>" or "FAIL docker/podman_<check>: why"
per check on stdout (test.sh counts them), notes on stderr.  It removes the
containers NAME-1, NAME-2, NAME-version and the volume NAME-spool, by name,
and stops the DNS server and sinks it started.  Sender authorization comes
from a real DNS server (unbound, harness.Dns) that publishes the SPF include
and the token for the test domain; the sinks are harness.Sink (aiosmtpd).
"""
import argparse
import logging
import os
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "test", "integration"))
from harness import SPF_OK, Dns, Harness, Sink, free_port, insecure_tls, token_for  # noqa: E402

# aiosmtpd 1.4 logs a warning whenever the harness's Sink reads
# session.login_data (once per message); these sinks take no AUTH
logging.getLogger("mail.log").setLevel(logging.ERROR)

USER = "alice@customer.test"
RCPT = "bob@example.net"
GRACE_S = 10          # MRS_SHUTDOWN_GRACE of the containers
STOP_MARGIN_S = 5     # podman stop -t GRACE_S + this: SIGKILL (exit 137) only after the grace
READY_WAIT_S = 30
DELIVERY_WAIT_S = 60
PODMAN_TIMEOUT_S = 120


class Fatal(Exception):
    """A step that the following ones need failed (already reported)."""


class Run:
    def __init__(self, args):
        self.a = args
        self.podman = args.podman
        self.passed = 0
        self.failed = 0
        self.h = Harness(os.path.join(TOP, "build"))
        self.volume = f"{args.name}-spool"
        self.containers = [f"{args.name}-version", f"{args.name}-1", f"{args.name}-2"]
        self.drain_accepted = False

    # --- reporting -------------------------------------------------------
    def check(self, name, ok, why=""):
        if ok:
            print(f"PASS docker/podman_{name}", flush=True)
            self.passed += 1
        else:
            why = " | ".join(str(why).splitlines())  # one line: test.sh and run-all.sh read lines
            print(f"FAIL docker/podman_{name}: {why}", flush=True)
            self.failed += 1
        return ok

    def must(self, name, ok, why=""):
        if not self.check(name, ok, why):
            raise Fatal(name)

    @staticmethod
    def note(text):
        # one write: print() would write the newline separately, and a
        # PASS line on stdout could land between the two
        sys.stderr.write(f"docker-test: {text}\n")
        sys.stderr.flush()

    # --- podman ------------------------------------------------------------
    def pod(self, *args, input=None, timeout=PODMAN_TIMEOUT_S):
        try:
            return subprocess.run(self.podman + list(args), input=input, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout}s")

    def inspect(self, name, fmt):
        r = self.pod("inspect", "--format", fmt, name)
        return r.stdout.strip() if r.returncode == 0 else None

    def logs(self, name, lines=15):
        r = self.pod("logs", name)
        return "\n".join((r.stdout + r.stderr).splitlines()[-lines:])

    def run_flags(self):
        # the image's user spelled out, nothing writable but the spool
        # volume, never a registry
        return ["--pull=never", "--network=host", "--read-only", "--user", "65534:65534"]

    def start(self, name, env):
        argv = ["run", "--detach", "--name", name] + self.run_flags()
        argv += ["--volume", f"{self.volume}:/var/spool/mrs"]
        for k, v in env.items():
            argv += ["--env", f"{k}={v}"]
        argv.append(self.a.image)          # ENTRYPOINT /mrs, CMD serve
        r = self.pod(*argv)
        if r.returncode != 0:
            return f"podman run exited {r.returncode}: {r.stderr.strip()[-500:]}"
        return None

    def stop(self, name):
        """podman stop with a timeout just above the grace: (exit code, seconds)."""
        t0 = time.monotonic()
        r = self.pod("stop", "--time", str(GRACE_S + STOP_MARGIN_S), name)
        took = time.monotonic() - t0
        if r.returncode != 0:
            return None, took, r.stderr.strip()[-300:]
        code = self.inspect(name, "{{.State.ExitCode}}")
        return (int(code) if code and code.lstrip("-").isdigit() else None), took, ""

    # --- the relay from the host ----------------------------------------------
    @staticmethod
    def http(port, path, timeout=3):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self, name, port):
        """/readyz from the host until 200 (None) or why not."""
        deadline = time.monotonic() + READY_WAIT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.inspect(name, "{{.State.Running}}") != "true":
                return f"the container stopped: {self.logs(name)}"
            try:
                code, _ = self.http(port, "/readyz", timeout=1)
                if code == 200:
                    return None
                last = f"/readyz answered {code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        return f"not ready after {READY_WAIT_S}s ({last}): {self.logs(name)}"

    def metric(self, port, name):
        _, body = self.http(port, "/metrics")
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return line
        return None

    def open_data(self, port, subject):
        """STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA and the message's header:
        (session, None) with the body still to send, or (None, refusal)."""
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30)
        s.ehlo()
        s.starttls(context=insecure_tls())
        s.ehlo()
        s.login(USER, self.a.password)
        for cmd, arg, want in (("mail", f"FROM:<{USER}>", 250), ("rcpt", f"TO:<{RCPT}>", 250),
                               ("data", "", 354)):
            s.putcmd(cmd, arg)
            code, text = s.getreply()
            if code != want:
                self.quit(s)
                return None, f"{cmd.upper()} answered {code} {text.decode()}"
        s.send(f"From: {USER}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n".encode())
        return s, None

    @staticmethod
    def end_data(s):
        """The rest of the message and its final dot: the reply to DATA."""
        try:
            s.send(b"\r\nfrom the podman test\r\n.\r\n")
            code, text = s.getreply()
            return code, text.decode()
        except (smtplib.SMTPException, OSError) as e:
            return None, str(e)
        finally:
            Run.quit(s)

    @staticmethod
    def quit(s):
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass

    def submit(self, port, subject):
        """Submit one message with STARTTLS + AUTH PLAIN: the DATA reply."""
        s, refused = self.open_data(port, subject)
        return self.end_data(s) if s else (None, refused)

    def readyz(self, port):
        try:
            return self.http(port, "/readyz", timeout=1)[0]
        except OSError:
            return None

    @staticmethod
    def subjects(sink):
        out = []
        for m in sink.messages:
            hit = re.search(rb"^Subject: (.*?)\r?$", m["data"], re.M)
            out.append(hit.group(1).decode() if hit else "")
        return out

    def wait_for(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        self.note(f"gave up waiting for {what} after {timeout}s")
        return False

    def spool_queue(self):
        mp = self.pod("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume).stdout.strip()
        d = os.path.join(mp, "queue")
        return sorted(os.listdir(d)) if mp and os.path.isdir(d) else []

    def relay_env(self, ports, sink_port, dns):
        return {
            "MRS_HOSTNAME": "mrs.test",
            # --network=host: the host's port rules apply, where 65534 may
            # not bind 587/465; loopback high ports instead
            "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{ports[0]}",
            "MRS_SUBMISSIONS_LISTEN": f"127.0.0.1:{ports[1]}",
            "MRS_HEALTH_LISTEN": f"127.0.0.1:{ports[2]}",
            "MRS_USERS": f"{USER}:{self.a.user_hash}",
            "MRS_DNS_SERVERS": dns.server,
            "MRS_SMARTHOST": f"127.0.0.1:{sink_port}",
            "MRS_SMARTHOST_TLS": "none",
            "MRS_RETRY_MIN": "1s",
            "MRS_RETRY_MAX": "2s",
            "MRS_SHUTDOWN_GRACE": f"{GRACE_S}s",
            "MRS_LOG_LEVEL": "debug",
        }

    # --- the checks -----------------------------------------------------------
    def version(self):
        name = f"{self.a.name}-version"
        # a one-off command: no health check for podman to set up
        r = self.pod("run", "--rm", "--name", name, "--no-healthcheck", *self.run_flags(),
                     self.a.image, "version")
        want = f"mrs {self.a.version} ({self.a.revision})"
        got = r.stdout.strip()
        self.check("version", r.returncode == 0 and got == want,
                   f"exit {r.returncode}, '{got}' {r.stderr.strip()[-300:]}, expected '{want}'")

    def first(self, dns, sink):
        name = f"{self.a.name}-1"
        ports = [free_port(), free_port(), free_port()]
        env = self.relay_env(ports, sink.port, dns)
        why = self.start(name, env)
        self.must("run", why is None, why)
        why = self.wait_ready(name, ports[2])
        self.must("readyz", why is None, why)

        pid = self.inspect(name, "{{.State.Pid}}")
        ids = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Uid", "Gid"):
                        ids[k] = v.split()
        except OSError as e:
            ids["error"] = str(e)
        self.check("user", ids.get("Uid") == ["65534"] * 4 and ids.get("Gid") == ["65534"] * 4,
                   f"process {pid} has {ids}")

        # /proc/PID/root resolves paths in the container's mount namespace:
        # the root refuses a write (EROFS), the spool volume takes one
        ro = self.inspect(name, "{{.HostConfig.ReadonlyRootfs}}")
        root_err, spool_err = None, None
        probe = f"/proc/{pid}/root/.podman-test"
        try:
            open(probe, "w").close()
            os.unlink(probe)
            root_err = "none"
        except OSError as e:
            root_err = e.strerror
        sprobe = f"/proc/{pid}/root/var/spool/mrs/.podman-test"
        try:
            open(sprobe, "w").close()
            os.unlink(sprobe)
        except OSError as e:
            spool_err = e.strerror
        self.check("read_only", ro == "true" and root_err == "Read-only file system" and spool_err is None,
                   f"ReadonlyRootfs {ro}; a write to / gave '{root_err}', to the spool '{spool_err}'")

        r = self.pod("healthcheck", "run", name)
        status = self.inspect(name, "{{.State.Health.Status}}")
        self.check("healthcheck", r.returncode == 0 and status == "healthy",
                   f"podman healthcheck run exited {r.returncode} ({(r.stdout + r.stderr).strip()[-300:]}),"
                   f" status {status}")

        line = self.metric(ports[2], "mrs_build_info")
        want = f'mrs_build_info{{version="{self.a.version}",revision="{self.a.revision}"}} 1'
        self.check("build_info", line == want, f"/metrics has '{line}', expected '{want}'")

        code, text = self.submit(ports[0], "podman-first")
        self.must("accepted", code == 250, f"DATA answered {code} {text}")
        got = self.wait_for("the first message at the sink", lambda: "podman-first" in self.subjects(sink),
                            DELIVERY_WAIT_S)
        self.must("delivered", got, f"the sink got {self.subjects(sink)}: {self.logs(name)}")

        # the smarthost goes away: the next message waits in the spool
        sink.stop()
        code, text = self.submit(ports[0], "podman-queued")
        self.must("queued_accepted", code == 250, f"DATA answered {code} {text}")

        def deferred():
            line = self.metric(ports[2], 'mrs_deliveries_total{outcome="deferred"}')
            return line is not None and int(line.split()[-1]) >= 1
        ok = self.wait_for("a deferral", deferred, DELIVERY_WAIT_S)
        before = self.spool_queue()
        self.must("queued", ok and before, f"deferred: {ok}, spool queue/ holds {before}: {self.logs(name)}")

        # podman stop while a client is in the middle of DATA: the relay
        # drains (/readyz 503), still takes that message, then exits 0
        # before podman's timeout (GRACE_S + STOP_MARGIN_S) would SIGKILL it
        s, refused = self.open_data(ports[0], "podman-drain")
        self.must("drain_session", s is not None, refused)
        stopped = {}
        stopper = threading.Thread(target=lambda: stopped.update(zip(("code", "took", "err"), self.stop(name))))
        stopper.start()
        draining = self.wait_for("/readyz 503", lambda: self.readyz(ports[2]) == 503, GRACE_S)
        code, text = self.end_data(s)
        stopper.join(GRACE_S + STOP_MARGIN_S + PODMAN_TIMEOUT_S)
        self.drain_accepted = code == 250
        self.check("drain", draining and code == 250,
                   f"/readyz 503 seen: {draining}; the message finished during the drain got {code} {text}")
        code, took = stopped.get("code"), stopped.get("took", -1.0)
        self.note(f"podman stop {name}: {took:.1f}s, exit code {code} (MRS_SHUTDOWN_GRACE={GRACE_S}s)")
        self.check("stop", code == 0, f"exit code {code} after {took:.1f}s"
                   f" (podman stop --time {GRACE_S + STOP_MARGIN_S}) {stopped.get('err', 'podman stop hung')}")
        after = self.spool_queue()
        self.must("spool_kept", before and set(before) <= set(after),
                  f"spool queue/ held {before} before the stop, now {after}")

    def second(self, dns, sink):
        name = f"{self.a.name}-2"
        ports = [free_port(), free_port(), free_port()]
        why = self.start(name, self.relay_env(ports, sink.port, dns))
        if why is None:
            why = self.wait_ready(name, ports[2])
        self.must("second_readyz", why is None, why)
        want = {"podman-queued", "podman-drain"} if self.drain_accepted else {"podman-queued"}
        got = self.wait_for("the queued messages at the second sink", lambda: want <= set(self.subjects(sink)),
                            DELIVERY_WAIT_S)
        emptied = got and self.wait_for("an empty spool", lambda: not self.spool_queue(), DELIVERY_WAIT_S)
        self.check("resumed", got and emptied,
                   f"the sink got {self.subjects(sink)}, spool queue/ holds {self.spool_queue()}: {self.logs(name)}")
        code, took, err = self.stop(name)
        self.note(f"podman stop {name}: {took:.1f}s, exit code {code}")
        self.check("second_stop", code == 0, f"exit code {code} after {took:.1f}s {err}")

    def main(self):
        try:
            self.version()
            r = self.pod("volume", "create", self.volume)
            self.must("volume", r.returncode == 0, r.stderr.strip())
            dns = Dns(self.h, [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"'])
            sink = Sink(self.h)
            self.first(dns, sink)
            self.second(dns, Sink(self.h))
        except Fatal:
            self.note("a step the next ones need failed: the rest of the podman run is skipped")
        except Exception as e:  # noqa: BLE001 — reported as a failure, then cleaned up
            self.check("error", False, f"{type(e).__name__}: {e}")
        finally:
            self.cleanup()
        print(f"podman: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1

    def cleanup(self):
        for name in self.containers:
            if self.pod("container", "exists", name).returncode == 0:
                self.pod("rm", "--force", "--time", "0", name)
        if self.pod("volume", "exists", self.volume).returncode == 0:
            self.pod("volume", "rm", "--force", self.volume)
        self.h.cleanup()
        shutil.rmtree(self.h.tmp, ignore_errors=True)


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--name", required=True, help="prefix of the containers' and the volume's names")
    p.add_argument("--user-hash", required=True, help="the image's `mrs passwd` of --password")
    p.add_argument("--password", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("podman", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.podman[:1] == ["--"]:
        a.podman = a.podman[1:]
    if not a.podman:
        p.error("the podman command goes after --")
    return a


if __name__ == "__main__":
    sys.exit(Run(parse()).main())
