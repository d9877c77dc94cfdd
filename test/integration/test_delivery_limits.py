"""Outbound limits of SPEC §8.1: MRS_DELIVERY_DOMAIN_CONCURRENCY (a slow
destination holds its share of delivery threads, no more),
MRS_DELIVERY_ATTEMPT_TIMEOUT (a server that answers every command just in
time cannot hold a thread for long) and MRS_DELIVERY_DENY_NETS (exchanger
addresses on loopback, link-local… are never connected to; the smarthost is
exempt).

The slow servers are written here: a loopback TCP server whose connections
either never get a reply (tarpit) or get each reply trickled out byte by
byte (trickle).  Healthy destinations are harness sinks.  Every MX host
listens on one port (MRS_DELIVERY_PORT)."""
import socket
import threading
import time
import uuid

from harness import SPF_OK, common_port, free_port, token_for

USER = ("alice@customer.test", "alice-secret")
SENDER = "alice@customer.test"

SENDERS_MX = "127.0.0.50"   # customer.test: bounces land here (sink)
HEALTHY = "127.0.0.51"      # healthy.test (sink)
TARPIT = "127.0.0.52"       # tarpit.test: accepts, never answers
TRICKLE = "127.0.0.53"      # trickle.test: answers each command slowly
DENIED = "127.0.0.54"       # MX that the deny list must keep us from (counts connections)
ALLOWED = "127.0.0.55"      # partial.test's second, allowed exchanger (sink)
SMARTHOST = "127.0.0.56"    # a smarthost on loopback (sink)

ZONE = [
    f'customer.test. TXT "{SPF_OK}"',
    f'customer.test. TXT "{token_for(USER[0])}"',
    "customer.test. MX 10 mx.customer.test.", f"mx.customer.test. A {SENDERS_MX}",
    "healthy.test. MX 10 mx.healthy.test.", f"mx.healthy.test. A {HEALTHY}",
    "tarpit.test. MX 10 mx.tarpit.test.", f"mx.tarpit.test. A {TARPIT}",
    "trickle.test. MX 10 mx.trickle.test.", f"mx.trickle.test. A {TRICKLE}",
    # every way of naming a loopback exchanger: MX → A, MX → IPv4-mapped AAAA, implicit MX
    "denied.test. MX 10 mx.denied.test.", f"mx.denied.test. A {DENIED}",
    "mapped.test. MX 10 mx.mapped.test.", f"mx.mapped.test. AAAA ::ffff:{DENIED}",
    f"implicitdeny.test. A {DENIED}",
    # the preferred exchanger is denied (as IPv4 and as IPv4-mapped IPv6), the other is not
    "partial.test. MX 10 mx1.partial.test.", "partial.test. MX 20 mx2.partial.test.",
    f"mx1.partial.test. A {DENIED}", f"mx1.partial.test. AAAA ::ffff:{DENIED}",
    f"mx2.partial.test. A {ALLOWED}",
]


class SlowServer:
    """A TCP server on addr:port, one thread per connection.

    mode "tarpit":  accept and never send a byte (until stop()).
    mode "trickle": speak SMTP, but send every reply one byte at a time
                    spread over `reply_s` seconds.
    mode "refuse":  send "421" and close at once (only counts connections).
    Counts connections: `total`, `open` now, `max_open`; `completed` counts
    messages whose end of data was acknowledged."""

    def __init__(self, h, addr, port, mode, reply_s=0.0):
        self.addr, self.port, self.mode, self.reply_s = addr, port, mode, reply_s
        self.lock = threading.Lock()
        self.total = self.open = self.max_open = self.completed = 0
        self.stopping = threading.Event()
        self.conns = []
        self.threads = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()
        h.sinks.append(self)  # cleanup() stops it

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.total += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _send_slowly(self, c, text):
        data = text.encode()
        pause = self.reply_s / len(data)
        for i in range(len(data)):
            if self.stopping.wait(pause):
                raise OSError("stopping")
            c.sendall(data[i:i + 1])

    def _lines(self, c):
        buf = b""
        while not self.stopping.is_set():
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.rstrip(b"\r").decode("latin-1")
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            buf += chunk

    def _smtp(self, c):
        self._send_slowly(c, "220 trickle.test ESMTP\r\n")
        in_data = False
        for line in self._lines(c):
            verb = line[:4].upper()
            if in_data:
                if line == ".":
                    in_data = False
                    self._send_slowly(c, "250 2.0.0 queued\r\n")
                    with self.lock:
                        self.completed += 1
                continue
            if verb in ("EHLO", "HELO"):
                self._send_slowly(c, "250 trickle.test\r\n")
            elif verb == "DATA":
                self._send_slowly(c, "354 go on\r\n")
                in_data = True
            elif verb == "QUIT":
                self._send_slowly(c, "221 bye\r\n")
                return
            else:
                self._send_slowly(c, "250 2.0.0 ok\r\n")

    def _serve(self, c):
        c.settimeout(0.2)
        try:
            if self.mode == "tarpit":
                while not self.stopping.wait(0.2):
                    pass
            elif self.mode == "refuse":
                c.sendall(b"421 4.3.2 not here\r\n")
            else:
                self._smtp(c)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            try:
                c.close()
            except OSError:
                pass

    def counts(self):
        with self.lock:
            return {"total": self.total, "open": self.open, "max_open": self.max_open,
                    "completed": self.completed}

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


class Ctx:
    pass


def setup(h):
    ctx = Ctx()
    ctx.h = h
    ctx.dns = h.dns(ZONE)
    ctx.port = common_port([SENDERS_MX, HEALTHY, TARPIT, TRICKLE, DENIED, ALLOWED])
    ctx.senders = h.sink(addr=SENDERS_MX, port=ctx.port)
    ctx.healthy = h.sink(addr=HEALTHY, port=ctx.port)
    ctx.allowed = h.sink(addr=ALLOWED, port=ctx.port)
    ctx.smarthost_port = free_port(SMARTHOST)
    ctx.smarthost = h.sink(addr=SMARTHOST, port=ctx.smarthost_port)
    ctx.relay_cert = h.self_signed("mrs.test")
    return ctx


def relay(ctx, **env):
    base = {"MRS_DELIVERY_PORT": str(ctx.port), "MRS_RETRY_MIN": "1s", "MRS_RETRY_MAX": "5m",
            "MRS_DELIVERY_THREADS": "4", "MRS_DELIVERY_CONNECT_TIMEOUT": "3s",
            "MRS_DELIVERY_COMMAND_TIMEOUT": "90s", "MRS_DELIVERY_DATA_TIMEOUT": "90s",
            "MRS_TLS_CERT": ctx.relay_cert[0], "MRS_TLS_KEY": ctx.relay_cert[1]}
    base.update(env)
    return ctx.h.mrs(dns=ctx.dns, env=base)


def new_token():
    return "t-" + uuid.uuid4().hex[:16]


def submit(m, rcpts, token):
    data = (f"From: Alice <{SENDER}>\r\nTo: <{rcpts[0]}>\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@customer.test>\r\n\r\nHello.\r\n").encode()
    s = m.smtp(login=USER)
    try:
        assert not s.sendmail(SENDER, rcpts, data)
    finally:
        s.quit()


def wait_msgs(sink, token, count=1, timeout=20.0):
    deadline = time.time() + timeout
    with sink.cond:
        while True:
            got = [x for x in sink.messages if token.encode() in x["data"]]
            if len(got) >= count:
                return got
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"{len(got)} of {count} message(s) with {token} at {sink.addr} in {timeout}s")
            sink.cond.wait(left)


def wait_for(what, check, timeout=20.0):
    """Poll check() until it returns a true value (bounded)."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"never happened within {timeout}s: {what}")
        time.sleep(0.05)


def metric(m, name):
    code, text = m.http("GET", "/metrics")
    assert code == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def log_lines(m, *parts):
    return [ln for ln in m.log().splitlines() if all(p in ln for p in parts)]


# ---- MRS_DELIVERY_DOMAIN_CONCURRENCY ------------------------------------------

def test_tarpit_domain_holds_only_its_share_and_healthy_mail_flows(ctx):
    tarpit = SlowServer(ctx.h, TARPIT, ctx.port, "tarpit")
    m = relay(ctx, MRS_DELIVERY_DOMAIN_CONCURRENCY="2")
    try:
        for _ in range(6):
            submit(m, ["x@tarpit.test"], new_token())
        # two sessions sit in the tarpit; the other four messages wait in
        # the queue, not in a thread
        wait_for("2 tarpit sessions and 4 waiting messages",
                 lambda: tarpit.counts()["open"] == 2 and metric(m, "mrs_delivery_domain_waits_total") == 4)
        # no busy loop: nobody retries the waiting messages while the
        # tarpit holds its slots (nothing is given back)
        time.sleep(2)
        assert metric(m, "mrs_delivery_domain_waits_total") == 4
        assert len(log_lines(m, "result=waiting", "MRS_DELIVERY_DOMAIN_CONCURRENCY")) == 4, m.log()[-3000:]

        # mail to a healthy destination flows on the two free threads, and
        # a message for both domains delivers its healthy half now
        toks = [new_token() for _ in range(3)]
        for t in toks:
            submit(m, ["y@healthy.test"], t)
        mixed = new_token()
        submit(m, ["z@tarpit.test", "w@healthy.test"], mixed)
        for t in toks:
            wait_msgs(ctx.healthy, t, timeout=30)
        got = wait_msgs(ctx.healthy, mixed, timeout=30)
        assert got[0]["rcpt_tos"] == ["w@healthy.test"], got
        # … and its tarpit half waits like the others (the fifth wait)
        wait_for("the mixed message's tarpit recipient waiting",
                 lambda: metric(m, "mrs_delivery_domain_waits_total") == 5)
        c = tarpit.counts()
        assert c["open"] == 2 and c["max_open"] == 2 and c["total"] == 2, c

        # the tarpit goes away: each slot given back wakes a waiting
        # message (no poll: MRS_RETRY_MAX is 5m), so all seven get their
        # attempt (refused now) and are deferred
        tarpit.stop()
        wait_for("every tarpit recipient deferred",
                 lambda: len({ln.split("queue_id=")[1].split()[0]
                              for ln in log_lines(m, "result=deferred", "@tarpit.test")}) == 7)
        assert tarpit.counts()["max_open"] == 2
    finally:
        tarpit.stop()
        m.stop()


test_tarpit_domain_holds_only_its_share_and_healthy_mail_flows.timeout = 150


# ---- MRS_DELIVERY_ATTEMPT_TIMEOUT ---------------------------------------------

def test_attempt_timeout_defers_a_server_that_answers_just_in_time(ctx):
    # every reply takes 2.5 s, under the 4 s per-command timeout: without an
    # attempt limit the session would go on command after command
    slow = SlowServer(ctx.h, TRICKLE, ctx.port, "trickle", reply_s=2.5)
    m = relay(ctx, MRS_DELIVERY_ATTEMPT_TIMEOUT="3s", MRS_DELIVERY_COMMAND_TIMEOUT="4s",
              MRS_DELIVERY_DATA_TIMEOUT="4s", MRS_RETRY_MIN="5m", MRS_RETRY_MAX="10m")
    try:
        submit(m, ["x@trickle.test"], new_token())
        line = wait_for("the attempt deferred by MRS_DELIVERY_ATTEMPT_TIMEOUT",
                        lambda: log_lines(m, "rcpt=x@trickle.test", "result=deferred"), timeout=30)[0]
        assert "451 4.4.2 mx.trickle.test[127.0.0.53]" in line, line
        assert "delivery attempt over MRS_DELIVERY_ATTEMPT_TIMEOUT (3s)" in line, line
        assert slow.counts()["completed"] == 0  # never got as far as the end of data
        assert metric(m, "mrs_delivery_attempt_timeouts_total") == 1
        assert log_lines(m, "result=attempt-timeout", "trickle.test")
        # the log line comes before the state file is written: poll the listing
        wait_for("mrs queue shows why", lambda: "MRS_DELIVERY_ATTEMPT_TIMEOUT" in
                 ctx.h.run([ctx.h.mrs_bin, "queue"], env=m.env).stdout)
    finally:
        slow.stop()
        m.stop()


# ---- MRS_DELIVERY_DENY_NETS ---------------------------------------------------

def test_default_deny_nets_refuse_loopback_exchangers_with_5_4_4(ctx):
    refuse = SlowServer(ctx.h, DENIED, ctx.port, "refuse")
    m = relay(ctx, MRS_DELIVERY_DENY_NETS=None)  # the default list
    try:
        submit(m, ["a@denied.test", "b@mapped.test", "c@implicitdeny.test"], new_token())
        for rcpt, host in (("a@denied.test", "mx.denied.test"), ("b@mapped.test", "mx.mapped.test"),
                           ("c@implicitdeny.test", "implicitdeny.test")):
            line = wait_for(f"{rcpt} failed", lambda r=rcpt: log_lines(m, f"rcpt={r}", "result=failed"))[0]
            assert "550 5.4.4" in line and "MRS_DELIVERY_DENY_NETS" in line, line
            assert f"{host}[" in line and DENIED in line, line
        # one bounce for the three (its own delivery to customer.test's
        # loopback exchanger is refused in turn, and a bounce is never bounced)
        wait_for("the bounce", lambda: log_lines(m, "bounce ", f"sent to <{SENDER}> for 3 failed recipient(s)"))
        wait_for("the bounce refused too", lambda: log_lines(m, "rcpt=" + SENDER, "result=failed", "5.4.4"))
        assert refuse.counts()["total"] == 0, "connected to a denied address"
        assert not ctx.senders.messages  # nothing reached 127.0.0.50 either
    finally:
        refuse.stop()
        m.stop()


def test_partly_denied_exchangers_deliver_to_the_allowed_one(ctx):
    refuse = SlowServer(ctx.h, DENIED, ctx.port, "refuse")
    # the denied exchanger is preferred; its IPv4-mapped AAAA must be
    # denied by the IPv4 network as well
    m = relay(ctx, MRS_DELIVERY_DENY_NETS=f"{DENIED}/32")
    try:
        tok = new_token()
        submit(m, ["x@partial.test"], tok)
        got = wait_msgs(ctx.allowed, tok)
        assert got[0]["rcpt_tos"] == ["x@partial.test"]
        assert refuse.counts()["total"] == 0, "connected to a denied address"
        line = log_lines(m, "result=denied", "partial.test")[0]
        assert "2 mail exchanger address(es) in MRS_DELIVERY_DENY_NETS left out" in line, line
        assert f"mx1.partial.test[{DENIED}]" in line and f"mx1.partial.test[::ffff:{DENIED}]" in line, line
    finally:
        refuse.stop()
        m.stop()


def test_smarthost_on_loopback_is_exempt_from_the_default_deny_nets(ctx):
    m = relay(ctx, MRS_DELIVERY_DENY_NETS=None, MRS_SMARTHOST=f"{SMARTHOST}:{ctx.smarthost_port}",
              MRS_SMARTHOST_TLS="none")
    try:
        tok = new_token()
        submit(m, ["x@denied.test"], tok)
        got = wait_msgs(ctx.smarthost, tok)
        assert got[0]["rcpt_tos"] == ["x@denied.test"]
        assert not log_lines(m, "MRS_DELIVERY_DENY_NETS")
    finally:
        m.stop()
