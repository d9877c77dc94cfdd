"""The resolver (src/dns.c) driven black-box: through `mrs check-domain`
(exit codes, output) and through the test tool build/<dir>/tools/dnsq, against
a real unbound and against a scripted fake server (fakedns.py)."""
import os
import re
import threading
import time

from fakedns import FakeDns
from harness import token_for

USER = "steve.mailer@mycorp.se"
GOOD = ['good.test. TXT "v=spf1 include:elastx.email -all"', f'good.test. TXT "{token_for(USER)}"']


def dnsq(h, servers, *ops, env=None, timeout=60):
    e = {"MRS_DNS_SERVERS": servers, "MRS_LOG_LEVEL": "warn"}
    e.update(env or {})
    r = h.run([os.path.join(h.build, "tools", "dnsq"), *ops], env=e, timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def check(h, servers, domain, env=None, user=USER):
    e = {"MRS_DNS_SERVERS": servers}
    e.update(env or {})
    t0 = time.time()
    r = h.run([h.mrs_bin, "check-domain", user, domain], env=e, timeout=60)
    return r, time.time() - t0


def after_first_query(fake, name, change):
    """Run change() as soon as the fake server has seen a query for name."""
    def wait():
        deadline = time.time() + 30
        while fake.count(name) == 0 and time.time() < deadline:
            time.sleep(0.005)
        change()
    threading.Thread(target=wait, daemon=True).start()


def field(out, name):
    m = re.search(rf"\b{name}=(\S+)", out)
    assert m, (name, out)
    return m.group(1)


# --- against a real server ------------------------------------------------------

def test_mx_a_aaaa_and_null_mx_from_unbound(h):
    d = h.dns(['mx.test. MX 10 mail.mx.test.', 'mx.test. MX 20 mail2.mx.test.',
               'mail.mx.test. A 192.0.2.1', 'mail.mx.test. AAAA 2001:db8::1',
               'null.test. MX 0 .', 'implicit.test. A 192.0.2.9'])
    out = dnsq(h, d.server, "MX:mx.test", "A:mail.mx.test", "AAAA:mail.mx.test", "MX:null.test",
               "MX:implicit.test", "A:implicit.test", "MX:nowhere.test")
    blocks = out.split("lookup ")[1:]
    assert "status=ok count=2" in blocks[0] and "mx 10 mail.mx.test" in blocks[0] \
        and "mx 20 mail2.mx.test" in blocks[0] and "null_mx=0" in blocks[0], out
    assert "status=ok count=1" in blocks[1] and "a 192.0.2.1" in blocks[1], out
    assert "status=ok count=1" in blocks[2] and "aaaa 2001:db8::1" in blocks[2], out
    assert "null_mx=1" in blocks[3] and "mx 0 ." in blocks[3], out
    assert "status=nodata" in blocks[4], out      # no MX: the delivery code falls back to A/AAAA
    assert "a 192.0.2.9" in blocks[5], out
    assert "status=nxdomain" in blocks[6], out


def test_txt_too_large_for_udp_comes_over_tcp(h):
    big = [f'big.test. TXT "{"x" * 250}{i:02d}"' for i in range(8)]  # ~2 KB > 1232
    d = h.dns(GOOD + big + ['big.test. TXT "v=spf1 include:elastx.email -all"', f'big.test. TXT "{token_for(USER)}"'])
    r, _ = check(h, d.server, "big.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "over TCP" in r.stdout and "10 TXT records" in r.stdout, r.stdout
    out = dnsq(h, d.server, "TXT:big.test", "stats")
    assert "tcp=1" in out and field(out, "tcp_queries") == "1", out


def test_cname_is_followed(h):
    d = h.dns(GOOD + ['alias.test. CNAME good.test.'])
    r, _ = check(h, d.server, "newsletter@alias.test")
    assert r.returncode == 0, r.stdout
    assert "CNAME to good.test" in r.stdout


def test_failover_from_servfail_to_a_good_server(h):
    bad = FakeDns(h, mode="servfail")
    d = h.dns(GOOD)
    r, _ = check(h, f"{bad.server},{d.server}", "good.test")
    assert r.returncode == 0, r.stdout
    assert f"Answer from {d.server}" in r.stdout, r.stdout
    assert bad.count("good.test") >= 1


def test_failover_from_a_silent_server_within_its_timeout(h):
    silent = FakeDns(h, mode="silent")
    d = h.dns(GOOD)
    r, took = check(h, f"{silent.server},{d.server}", "good.test", env={"MRS_DNS_TIMEOUT": "300ms"})
    assert r.returncode == 0, r.stdout
    assert f"Answer from {d.server}" in r.stdout
    assert 0.25 < took < 2.0, took


# --- against the fake server ---------------------------------------------------------

def test_silent_server_is_a_temporary_failure_within_the_deadline(h):
    silent = FakeDns(h, mode="silent")
    r, took = check(h, silent.server, "good.test",
                    env={"MRS_DNS_TIMEOUT": "400ms", "MRS_DNS_DEADLINE": "1s"})
    assert r.returncode == 3, (r.returncode, r.stdout)
    assert "timeout" in r.stdout and "451 4.4.3" in r.stdout, r.stdout
    assert 0.9 <= took < 2.0, took
    qs = silent.queries
    assert len(qs) >= 2, qs
    # every try: a new random ID and a new source port (RFC 5452)
    assert len({q["id"] for q in qs}) == len(qs), qs
    assert len({q["port"] for q in qs}) == len(qs), qs


def test_replies_with_wrong_id_question_or_port_are_ignored(h):
    fake = FakeDns(h, mode="wrong_first", txt={"good.test": ["v=spf1 include:elastx.email -all", token_for(USER)]})
    r, _ = check(h, fake.server, "good.test")
    assert r.returncode == 0, r.stdout   # the wrong replies say NXDOMAIN: taken, they would give 1
    assert "2 TXT records" in r.stdout
    assert fake.count() == 1


def test_only_wrong_replies_is_a_timeout(h):
    fake = FakeDns(h, mode="only_wrong", txt={"good.test": ["v=spf1 include:elastx.email -all"]})
    r, _ = check(h, fake.server, "good.test", env={"MRS_DNS_TIMEOUT": "300ms", "MRS_DNS_DEADLINE": "1s"})
    assert r.returncode == 3, r.stdout
    assert "timeout" in r.stdout


def test_refused_and_garbage_are_temporary(h):
    for mode, word in (("refused", "refused"), ("garbage", "malformed"), ("servfail", "servfail")):
        fake = FakeDns(h, mode=mode)
        r, took = check(h, fake.server, "good.test")
        assert r.returncode == 3, (mode, r.stdout)
        assert word in r.stdout, (mode, r.stdout)
        assert took < 2, (mode, took)  # answers, even bad ones, do not wait for timeouts
        fake.stop()


def test_truncated_udp_reply_is_retried_over_tcp(h):
    fake = FakeDns(h, mode="truncate", txt={"good.test": ["v=spf1 include:elastx.email -all", token_for(USER)]})
    r, _ = check(h, fake.server, "good.test")
    assert r.returncode == 0, r.stdout
    assert "over TCP" in r.stdout
    assert fake.count("good.test", "udp") == 1 and fake.count("good.test", "tcp") == 1


def test_cname_leaving_the_reply_is_asked_next(h):
    fake = FakeDns(h, cname={"alias.test": "target.example"},
                   txt={"target.example": ["v=spf1 include:elastx.email -all", token_for(USER)]})
    r, _ = check(h, fake.server, "alias.test")
    assert r.returncode == 0, r.stdout
    assert fake.names() == ["alias.test", "target.example"], fake.names()
    out = dnsq(h, fake.server, "TXT:alias.test")
    assert "canonical=target.example" in out and "count=2" in out, out


def test_cname_loop_across_replies_ends(h):
    fake = FakeDns(h, cname={"a.test": "b.test", "b.test": "a.test"})
    r, took = check(h, fake.server, "a.test")
    assert r.returncode == 3 and "malformed" in r.stdout, r.stdout
    assert took < 2, took  # ended by the hop cap, not by the deadline
    # a b a b a b a b a: 8 hops followed, then the cap (the last reply is
    # malformed for us, and tried again like any malformed reply)
    assert 9 <= fake.count() <= 9 + 2, fake.names()


def test_names_are_absolute(h):
    """No search list, no ndots: exactly the name given is asked."""
    fake = FakeDns(h, txt={"mycorp.se": ["hello"]})
    dnsq(h, fake.server, "TXT:mycorp.se", "TXT:MyCorp.SE.", "fresh:TXT:mycorp.se")
    assert fake.names() == ["mycorp.se", "mycorp.se"], fake.names()


def test_concurrent_identical_misses_send_one_query(h):
    fake = FakeDns(h, txt={"same.test": ["x"]}, delay=0.3)
    out = dnsq(h, fake.server, "par:32:TXT:same.test", "par:32:TXT:same.test")
    first, second = out.strip().splitlines()
    assert field(first, "ok") == "32" and field(first, "queries_sent") == "1", out
    assert field(second, "ok") == "32" and field(second, "cache_hits") == "32", out
    assert fake.count("same.test") == 1


def test_cache_honours_positive_and_negative_ttls(h):
    fake = FakeDns(h, txt={"pos.test": ["x"]}, ttl=1, soa=("test", 1))
    out = dnsq(h, fake.server, "TXT:pos.test", "TXT:pos.test", "TXT:neg.test", "TXT:neg.test",
               "sleep:1300", "TXT:pos.test", "TXT:neg.test")
    assert fake.count("pos.test") == 2 and fake.count("neg.test") == 2, fake.names()
    lines = [ln for ln in out.splitlines() if ln.startswith("lookup")]
    assert "status=ok" in lines[1] and "status=nxdomain" in lines[3], out


def test_fresh_bypasses_the_cache_and_refreshes_it(h):
    fake = FakeDns(h, txt={"f.test": ["x"]})
    out = dnsq(h, fake.server, "TXT:f.test", "fresh:TXT:f.test", "TXT:f.test", "sleep:50", "TXT:f.test")
    assert fake.count("f.test") == 2, fake.names()
    ages = [int(a) for a in re.findall(r"age_ms=(\d+)", out)]
    assert ages[3] >= 40, out  # the last one came from the cache


def test_temporary_failures_are_not_cached(h):
    fake = FakeDns(h, mode="servfail")
    dnsq(h, fake.server, "TXT:s.test", "TXT:s.test")
    assert fake.count("s.test") == 2 * 3, fake.names()  # 3 tries per server, each lookup


def test_cache_is_bounded_with_lru_eviction(h):
    fake = FakeDns(h, txt={"a.test": ["a"], "b.test": ["b"], "c.test": ["c"]})
    dnsq(h, fake.server, "TXT:a.test", "TXT:b.test", "TXT:a.test", "TXT:c.test", "TXT:a.test",
         "TXT:b.test", env={"MRS_DNS_CACHE_ENTRIES": "2"})
    # a b (a hit) c evicts b (least recently used); a hit; b asked again
    assert fake.names() == ["a.test", "b.test", "c.test", "b.test"], fake.names()
    fake2 = FakeDns(h, txt={"a.test": ["a"]})
    dnsq(h, fake2.server, "TXT:a.test", "TXT:a.test", env={"MRS_DNS_CACHE_ENTRIES": "0"})
    assert fake2.count("a.test") == 2


def test_refusal_on_an_old_cached_answer_is_rechecked(h):
    """SPEC §1: a record just published is honoured within MRS_DNS_RECHECK."""
    fake = FakeDns(h, txt={"new.test": ["v=spf1 include:elastx.email -all"]})
    env = {"MRS_DNS_RECHECK": "1s"}
    # the token is published right after the first lookup (the fake's data is live)
    after_first_query(fake, "new.test", lambda: fake.txt["new.test"].append(token_for(USER)))
    out = dnsq(h, fake.server, f"policy:{USER}:new.test", "sleep:700", f"policy:{USER}:new.test",
               "sleep:700", f"policy:{USER}:new.test", env=env)
    lines = out.strip().splitlines()
    assert lines[0].startswith("policy 550 5.7.1 reason=token"), out
    assert lines[1].startswith("policy 550 5.7.1 reason=token"), out   # cached, 0.7 s old
    assert lines[2].startswith("policy 250 2.1.0 reason=ok"), out       # 1.4 s old: asked again
    assert fake.count("new.test") == 2, fake.names()


def test_removed_record_stops_authorizing_within_its_ttl(h):
    fake = FakeDns(h, txt={"gone.test": ["v=spf1 include:elastx.email -all", token_for(USER)]}, ttl=1)
    after_first_query(fake, "gone.test", lambda: fake.txt["gone.test"].pop())
    out = dnsq(h, fake.server, f"policy:{USER}:gone.test", "sleep:1300", f"policy:{USER}:gone.test")
    lines = out.strip().splitlines()
    assert lines[0].startswith("policy 250"), out
    assert lines[1].startswith("policy 550 5.7.1 reason=token"), out


def test_ipv6_server(h):
    """An IPv6 server address ([::1]:port) works like an IPv4 one."""
    import socket
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.bind(("::1", 0))
    except OSError:
        return  # no IPv6 loopback in this environment
    port = s.getsockname()[1]
    from fakedns import message, rr, txt_rdata, decode_name
    import struct

    def serve():
        data, peer = s.recvfrom(4096)
        qname, pos = decode_name(data, 12)
        qtype, = struct.unpack("!H", data[pos:pos + 2])
        qid, = struct.unpack("!H", data[:2])
        s.sendto(message(qid, qname, qtype, answers=[rr(qname, 16, 60, txt_rdata("v6"))]), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    out = dnsq(h, f"[::1]:{port}", "TXT:six.test")
    t.join(5)
    s.close()
    assert 'txt "v6"' in out and f"server=[::1]:{port}" in out, out


# --- the cache as the relay uses it ---------------------------------------------------

def metric(m, name):
    code, body = m.http("GET", "/metrics")
    assert code == 200, code
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not in /metrics")


def test_32_concurrent_sessions_share_one_query(h):
    """32 sessions give MAIL FROM the same new domain at the same moment: one
    DNS query (the others join it), every session gets its verdict, and the
    counters of /metrics say so."""
    user, pw = "alice@customer.test", "alice-secret"
    fake = FakeDns(h, txt={"burst.test": ["v=spf1 include:elastx.email -all", token_for(user)]},
                   delay=0.3)
    m = h.mrs(env={"MRS_DNS_SERVERS": fake.server, "MRS_MAX_CONNECTIONS_PER_CLIENT": "64"})
    clients = [m.smtps(login=(user, pw)) for _ in range(32)]
    queries0 = metric(m, "mrs_dns_queries_total")
    barrier = threading.Barrier(len(clients))
    codes = []

    def mail(c):
        barrier.wait()
        codes.append(c.mail("news@burst.test")[0])

    threads = [threading.Thread(target=mail, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [250] * 32, codes
    assert fake.count("burst.test") == 1, fake.names()
    assert metric(m, "mrs_dns_queries_total") - queries0 == 1
    # a later session is answered from the cache
    hits = metric(m, "mrs_dns_cache_hits_total")
    c = m.smtps(login=(user, pw))
    assert c.mail("other@burst.test")[0] == 250
    assert fake.count("burst.test") == 1
    assert metric(m, "mrs_dns_cache_hits_total") == hits + 1
    for c2 in clients + [c]:
        c2.close()
