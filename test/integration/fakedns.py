"""A scripted DNS server on 127.0.0.1 (UDP and TCP) for the resolver's edge
cases that a real server will not produce: silence, replies with a wrong ID
or question, replies from another port, SERVFAIL/REFUSED, garbage, TC on UDP.

    fake = FakeDns(h, mode="answer", txt={"a.test": ["v=spf1 -all"]})
    fake.server            # "127.0.0.1:PORT" for MRS_DNS_SERVERS
    fake.queries           # every query received: dicts proto, id, name, type, port

Modes:
  answer       answer from the records (NXDOMAIN for unknown names)
  silent       read queries, never answer
  servfail     SERVFAIL       refused   REFUSED
  garbage      a reply with the right ID and question but a broken answer
  wrong_first  for each UDP query: a reply with another ID, one for another
               question, one from another source port (all saying NXDOMAIN),
               then the right answer
  only_wrong   the wrong replies of wrong_first, never the right one
  truncate     UDP replies have TC set and no records; TCP answers in full

The server runs in threads of the test process; it is registered with the
harness (h.sinks) so that cleanup() stops it.  Only loopback is used.
"""
import select
import socket
import struct
import threading
import time

from harness import free_port

TYPES = {"A": 1, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


def encode_name(name):
    name = name.rstrip(".")
    if not name:
        return b"\0"
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def decode_name(data, pos):
    labels = []
    while True:
        n = data[pos]
        pos += 1
        if n == 0:
            return ".".join(labels), pos
        labels.append(data[pos:pos + n].decode("latin-1"))
        pos += n


def txt_rdata(text):
    raw = text.encode() if isinstance(text, str) else text
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


def rr(owner, rtype, ttl, rdata):
    return encode_name(owner) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def soa_rr(zone, ttl=60, minimum=60):
    rdata = encode_name("ns." + zone) + encode_name("host." + zone) + struct.pack("!IIIII", 1, 3600, 600, 86400, minimum)
    return rr(zone, TYPES["SOA"], ttl, rdata)


def message(qid, qname, qtype, rcode=0, answers=(), authority=(), tc=False):
    flags = 0x8180 | rcode | (0x0200 if tc else 0)
    head = struct.pack("!HHHHHH", qid, flags, 1, len(answers), len(authority), 0)
    return head + encode_name(qname) + struct.pack("!HH", qtype, 1) + b"".join(answers) + b"".join(authority)


class FakeDns:
    def __init__(self, h, mode="answer", txt=None, cname=None, ttl=300, delay=0.0, soa=None):
        self.mode = mode
        self.txt = {k.lower().rstrip("."): list(v) for k, v in (txt or {}).items()}
        self.cname = {k.lower().rstrip("."): v for k, v in (cname or {}).items()}
        self.ttl = ttl
        self.delay = delay
        self.soa = soa  # (zone, minimum): add an SOA to negative answers
        self.queries = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the "other port"
        self.other.bind(("127.0.0.1", 0))
        self.running = True
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()
        h.sinks.append(self)

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def names(self):
        with self.lock:
            return [q["name"] for q in self.queries]

    def count(self, name=None, proto=None):
        with self.lock:
            return sum(1 for q in self.queries
                       if (name is None or q["name"] == name) and (proto is None or q["proto"] == proto))

    # --- answers -----------------------------------------------------------
    def answer(self, qid, qname, qtype, tcp=False):
        key = qname.lower().rstrip(".")
        if self.mode == "servfail":
            return message(qid, qname, qtype, rcode=2)
        if self.mode == "refused":
            return message(qid, qname, qtype, rcode=5)
        if self.mode == "garbage":
            # ANCOUNT 1, then a record whose RDLENGTH runs past the end
            return message(qid, qname, qtype)[:6] + b"\0\1\0\0\0\0" + message(qid, qname, qtype)[12:] + \
                encode_name(qname) + struct.pack("!HHIH", qtype, 1, 60, 500) + b"xx"
        if self.mode == "truncate" and not tcp:
            return message(qid, qname, qtype, tc=True)
        answers = []
        if key in self.cname:
            # Only the CNAME, as an authoritative server of another zone
            # would answer (no SOA): the client must ask the target itself.
            answers.append(rr(key, TYPES["CNAME"], self.ttl, encode_name(self.cname[key])))
            return message(qid, qname, qtype, answers=answers)
        if key in self.txt:
            if qtype == TYPES["TXT"]:
                answers += [rr(key, qtype, self.ttl, txt_rdata(t)) for t in self.txt[key]]
            auth = [soa_rr(self.soa[0], self.ttl, self.soa[1])] if self.soa and len(answers) == 0 else []
            return message(qid, qname, qtype, answers=answers, authority=auth)
        auth = [soa_rr(self.soa[0], self.ttl, self.soa[1])] if self.soa else []
        return message(qid, qname, qtype, rcode=3, answers=answers, authority=auth)

    def _wrong_replies(self, qid, qname, qtype, peer):
        self.udp.sendto(message(qid ^ 0x5a5a, qname, qtype, rcode=3), peer)
        self.udp.sendto(message(qid, "wrong." + qname, qtype, rcode=3), peer)
        self.udp.sendto(message(qid, qname, TYPES["A"] if qtype != 1 else 28, rcode=3), peer)
        self.other.sendto(message(qid, qname, qtype, rcode=3), peer)

    def _record(self, proto, data, port):
        qid, = struct.unpack("!H", data[:2])
        qname, pos = decode_name(data, 12)
        qtype, = struct.unpack("!H", data[pos:pos + 2])
        with self.lock:
            self.queries.append({"proto": proto, "id": qid, "name": qname.lower(), "type": qtype,
                                 "port": port, "time": time.time()})
        return qid, qname, qtype

    def _serve_udp(self):
        while self.running:
            r, _, _ = select.select([self.udp], [], [], 0.05)
            if not r:
                continue
            try:
                data, peer = self.udp.recvfrom(4096)
                qid, qname, qtype = self._record("udp", data, peer[1])
            except (OSError, IndexError, struct.error):
                continue
            if self.mode == "silent":
                continue
            if self.delay:
                time.sleep(self.delay)
            if self.mode in ("wrong_first", "only_wrong"):
                self._wrong_replies(qid, qname, qtype, peer)
                if self.mode == "only_wrong":
                    continue
                time.sleep(0.05)
            self.udp.sendto(self.answer(qid, qname, qtype), peer)

    def _serve_tcp(self):
        while self.running:
            r, _, _ = select.select([self.tcp], [], [], 0.05)
            if not r:
                continue
            try:
                conn, peer = self.tcp.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    n, = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
                    data = conn.recv(n, socket.MSG_WAITALL)
                    qid, qname, qtype = self._record("tcp", data, peer[1])
                    if self.mode == "silent":
                        continue
                    out = self.answer(qid, qname, qtype, tcp=True)
                    conn.sendall(struct.pack("!H", len(out)) + out)
                except (OSError, struct.error, IndexError):
                    pass

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(2)
        for s in (self.udp, self.tcp, self.other):
            s.close()
