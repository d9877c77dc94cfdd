"""TLS records as the network cuts them (issue 11, the server's reads and
writes): a client whose handshake end and first command share one
segment, many records in one segment, records cut at odd boundaries, a
message larger than every buffer the server keeps, and a message right
after a refused one in the same session.  The client is Python's OpenSSL
over memory BIOs, so the test decides which bytes leave in which send;
every message is checked byte for byte at the receiving server."""
import socket
import ssl
import threading

from harness import SPF_OK, auth_plain, free_port, insecure_tls, token_for

USER, PW = "rec@records.test", "records-secret"
ZONE = [f'records.test. TXT "{SPF_OK}"', f'records.test. TXT "{token_for(USER)}"',
        f'notmine.test. TXT "{SPF_OK}"']  # no token: this account may not send as it


def setup(h):
    dns = h.dns(ZONE)
    sink = h.sink()
    m = h.mrs(dns=dns, users={USER: PW},
              env={"MRS_SMARTHOST": f"127.0.0.1:{sink.port}", "MRS_SMARTHOST_TLS": "none"})
    return {"h": h, "mrs": m, "sink": sink}


class BioClient:
    """SMTP over TLS where each write() is one TLS record and send() puts
    every pending record on the wire in segments of `cut` bytes."""

    def __init__(self, port, implicit=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.plain = b""
        self.tls = None
        if not implicit:
            assert self.reply_plain()[0] == 220
            self.sock.sendall(b"EHLO rec.test\r\n")
            assert self.reply_plain()[0] == 250
            self.sock.sendall(b"STARTTLS\r\n")
            assert self.reply_plain()[0] == 220
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = insecure_tls().wrap_bio(self.inc, self.out, server_hostname="mrs.test")
        self.buf = b""

    def reply_plain(self):
        while b"\r\n" not in self.plain or not self._complete(self.plain):
            chunk = self.sock.recv(65536)
            assert chunk, self.plain
            self.plain += chunk
        return self._take("plain")

    @staticmethod
    def _complete(buf):
        for ln in buf.split(b"\r\n")[:-1]:
            if len(ln) >= 4 and ln[3:4] == b" ":
                return True
        return False

    def _take(self, attr):
        buf = getattr(self, attr)
        texts = []
        while True:
            ln, buf = buf.split(b"\r\n", 1)
            texts.append(ln[4:].decode())
            if ln[3:4] != b"-":
                setattr(self, attr, buf)
                return int(ln[:3]), texts

    def send(self, cut=0):
        data = self.out.read()
        if not cut:
            self.sock.sendall(data)
        for i in range(0, len(data), cut or len(data) + 1):
            self.sock.sendall(data[i:i + cut])

    def handshake(self, first=None, cut=0):
        """The handshake; `first` (one record, or a list of records) goes
        in the same send as the client's Finished."""
        for _ in range(100):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.send(cut)
                chunk = self.sock.recv(65536)
                assert chunk, "closed in the handshake"
                self.inc.write(chunk)
        else:
            raise AssertionError("handshake did not end")
        assert self.tls.version() in ("TLSv1.3", "TLSv1.2"), self.tls.version()
        for p in first if isinstance(first, list) else [first] if first else []:
            self.tls.write(p)
        self.send(cut)

    def reply(self):
        while not self._complete(self.buf):
            try:
                self.buf += self.tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            chunk = self.sock.recv(65536)
            assert chunk, ("closed", self.buf)
            self.inc.write(chunk)
        return self._take("buf")

    def records(self, *parts, cut=0):
        for p in parts:
            self.tls.write(p.encode() if isinstance(p, str) else p)
        self.send(cut)


def body_of(n, tag):
    lines = [f"From: <news@records.test>\r\nTo: <to@example.org>\r\nSubject: {tag}\r\n\r\n".encode()]
    i = 0
    while sum(map(len, lines)) < n:
        lines.append(f"{tag} line {i:06d} {'x' * (i % 97)}\r\n".encode())
        i += 1
    return b"".join(lines)


def record_sizes(data, sizes):
    """data cut into records of the given sizes, round and round."""
    out, i, k = [], 0, 0
    while i < len(data):
        out.append(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def delivered(sink, count, tag):
    msgs = sink.wait(count)
    got = [d for d in (m["data"].replace(b"\r\n", b"\n") for m in msgs) if f"\nSubject: {tag}\n".encode() in d]
    assert len(got) == 1, (tag, len(got))
    return got[0]


def check_body(data, body):
    """The relayed message ends with exactly the body we sent (mrs adds
    header fields above it)."""
    sent = body.replace(b"\r\n", b"\n")
    head, _, rest = sent.partition(b"\n\n")
    assert data.endswith(b"\n\n" + rest), (len(data), len(sent))
    for field in head.split(b"\n"):
        assert field in data, field


def test_handshake_end_and_commands_in_one_segment(ctx):
    m, sink = ctx["mrs"], ctx["sink"]
    c = BioClient(m.submission_port)
    c.handshake(first=b"EHLO rec.test\r\n")  # Finished and EHLO: one segment
    code, texts = c.reply()
    assert code == 250 and "PIPELINING" in texts, texts
    c.records("AUTH PLAIN " + auth_plain(USER, PW) + "\r\n")
    assert c.reply()[0] == 235
    # MAIL, RCPT, DATA: three records in one segment
    c.records("MAIL FROM:<news@records.test>\r\n", "RCPT TO:<to@example.org>\r\n", "DATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    body = body_of(3000, "one-segment")
    # the body in records of odd sizes, the end of data in the same segment
    c.records(*record_sizes(body + b".\r\n", [1, 5, 6, 700, 3, 16384]))
    code, texts = c.reply()
    assert code == 250, texts
    c.records("QUIT\r\n")
    assert c.reply()[0] == 221
    check_body(delivered(sink, 1, "one-segment"), body)


def test_sasl_response_past_the_read_ahead_is_dropped_after_a_refused_auth(ctx):
    """What a client pipelined after an AUTH refused before its exchange
    (a SASL response: credentials) is dropped, including the part still in
    the socket when every read since the handshake came from the read-ahead
    (the handshake's last flight must not make that read skip the socket).
    Finished, EHLO with AUTH of an unknown mechanism, and a 600-byte
    response line go in one segment: the line straddles the 512 bytes read
    ahead.  Dropped, the next reply is NOOP's 250, not a 500 for the line."""
    m = ctx["mrs"]
    c = BioClient(m.submission_port)
    c.handshake(first=[b"EHLO rec.test\r\nAUTH NOPE\r\n", b"QUJD" * 150 + b"\r\n"])
    assert c.reply()[0] == 250
    assert c.reply()[0] == 504
    c.records("NOOP\r\n")
    code, texts = c.reply()
    assert code == 250, (code, texts)
    c.records("QUIT\r\n")
    assert c.reply()[0] == 221
    assert "discarded 602 bytes sent after a refused AUTH" in m.log(), m.log()[-2000:]


def test_records_cut_at_odd_boundaries(ctx):
    m, sink = ctx["mrs"], ctx["sink"]
    before = len(sink.messages)
    c = BioClient(m.submissions_port, implicit=True)
    c.handshake(cut=7)  # the ClientHello and Finished in 7-byte pieces
    assert c.reply()[0] == 220
    c.records("EHLO rec.test\r\n", cut=3)
    assert c.reply()[0] == 250
    c.records("AUTH PLAIN " + auth_plain(USER, PW) + "\r\n", cut=1)
    assert c.reply()[0] == 235
    c.records("MAIL FROM:<news@records.test>\r\n", "RCPT TO:<to@example.org>\r\n", "DATA\r\n", cut=4)
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    body = body_of(20000, "odd-cuts")
    c.records(*record_sizes(body, [16384, 2, 511, 512, 513]), ".\r\n", cut=509)
    assert c.reply()[0] == 250
    c.records("QUIT\r\n", cut=2)
    assert c.reply()[0] == 221
    check_body(delivered(sink, before + 1, "odd-cuts"), body)


def test_large_message_after_a_refused_one_in_the_same_session(ctx):
    m, sink = ctx["mrs"], ctx["sink"]
    before = len(sink.messages)
    c = BioClient(m.submission_port)
    c.handshake(first=b"EHLO rec.test\r\n")
    assert c.reply()[0] == 250
    c.records("AUTH PLAIN " + auth_plain(USER, PW) + "\r\n")
    assert c.reply()[0] == 235
    # refused at the end of data: a From: this account may not use
    c.records("MAIL FROM:<news@records.test>\r\n", "RCPT TO:<to@example.org>\r\n", "DATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    bad = body_of(70000, "refused").replace(b"From: <news@records.test>", b"From: <x@notmine.test>")
    c.records(*record_sizes(bad + b".\r\n", [16384]))
    code, texts = c.reply()
    assert code >= 500 and "notmine.test" in " ".join(texts), (code, texts)
    # then 1.5 MB, more than any buffer the server keeps, in full records
    c.records("MAIL FROM:<news@records.test>\r\n", "RCPT TO:<to@example.org>\r\n", "DATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    body = body_of(1500000, "large-after-refused")
    c.records(*record_sizes(body + b".\r\n", [16384, 16383, 100]))
    code, texts = c.reply()
    assert code == 250, texts
    c.records("QUIT\r\n")
    assert c.reply()[0] == 221
    check_body(delivered(sink, before + 1, "large-after-refused"), body)
    assert not any(b"Subject: refused" in x["data"] for x in sink.messages)


class TicketFirstServer:
    """An implicit-TLS smarthost that sends its TLS 1.3 session tickets and
    its greeting in one segment, and every later reply together with
    whatever TLS records OpenSSL has pending: the client reads a record
    that gives it no data (a ticket) with the next reply already behind it
    in the same read."""

    def __init__(self, h, cert):
        self.port = free_port()
        self.lsock = socket.create_server(("127.0.0.1", self.port))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert[0], cert[1])
        self.ctx.num_tickets = 1  # ticket and greeting fit in one read of the client
        self.messages, self.errors = [], []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            self.lsock.settimeout(60)
            sock, _ = self.lsock.accept()
            sock.settimeout(30)
            self.dialog(sock)
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))

    def dialog(self, sock):
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.ctx.wrap_bio(inc, out, server_side=True)
        for _ in range(100):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out.pending:
                    sock.sendall(out.read())
                inc.write(sock.recv(65536))
        tls.write(b"220 ticket.test ESMTP\r\n")
        sock.sendall(out.read())  # tickets + greeting: one send
        buf, data = b"", None
        while True:
            while b"\r\n" not in buf:
                try:
                    buf += tls.read(65536)
                    continue
                except ssl.SSLWantReadError:
                    pass
                chunk = sock.recv(65536)
                if not chunk:
                    return
                inc.write(chunk)
            if data is not None:
                if b"\r\n.\r\n" not in buf:
                    try:  # a record the last read brought and the line loop left
                        buf += tls.read(65536)
                        continue
                    except ssl.SSLWantReadError:
                        pass
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    inc.write(chunk)
                    while True:  # every record the read brought
                        try:
                            buf += tls.read(65536)
                        except ssl.SSLWantReadError:
                            break
                    continue
                msg, buf = buf.split(b"\r\n.\r\n", 1)
                self.messages.append(msg + b"\r\n")
                data = None
                reply = b"250 2.0.0 queued\r\n"
            else:
                line, buf = buf.split(b"\r\n", 1)
                verb = line[:4].upper()
                reply = {b"EHLO": b"250-ticket.test\r\n250 8BITMIME\r\n", b"DATA": b"354 go on\r\n",
                         b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n")
                if verb == b"DATA":
                    data = b""
            tls.write(reply)
            sock.sendall(out.read())
            if reply.startswith(b"221"):
                return


def test_delivery_client_reads_a_ticket_and_the_greeting_from_one_segment(h):
    cert = h.self_signed("ticket.test")
    srv = TicketFirstServer(h, cert)
    dns = h.dns(ZONE + ["ticket.test. A 127.0.0.1"])
    m = h.mrs(dns=dns, users={USER: PW},
              env={"MRS_SMARTHOST": f"ticket.test:{srv.port}", "MRS_SMARTHOST_TLS": "tls",
                   "MRS_SMARTHOST_CA_FILE": cert[0]})
    c = BioClient(m.submission_port)
    c.handshake(first=b"EHLO rec.test\r\n")
    assert c.reply()[0] == 250
    c.records("AUTH PLAIN " + auth_plain(USER, PW) + "\r\n")
    assert c.reply()[0] == 235
    c.records("MAIL FROM:<news@records.test>\r\n", "RCPT TO:<to@example.org>\r\n", "DATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    body = body_of(5000, "ticket-first")
    c.records(body + b".\r\n")
    assert c.reply()[0] == 250
    srv.thread.join(120)  # the server ends after QUIT (or on its own 30 s read timeout)
    assert not srv.errors, srv.errors
    assert len(srv.messages) == 1, (srv.messages, m.log()[-3000:])
    check_body(srv.messages[0].replace(b"\r\n", b"\n"), body)
