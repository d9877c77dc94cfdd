#!/usr/bin/env python3
"""check-copies.py FILE... — copies whose bound is not at the copy (STYLE.md,
"Memory and input"; issue 10 item 1: an EHLO argument copied with its own
length into helo[256]).

musl has no _FORTIFY_SOURCE headers, so nothing checks a fixed-size copy at
run time; this check makes the bound visible in review instead.  It prints
every memcpy()/memmove() that writes a length computed at run time to the
start of a destination, unless

  - the length is a constant (`sizeof ...`, a number, an UPPER_CASE macro);
  - the destination is `base + offset` (an append, which keeps its own
    accounting next to it);
  - the length is compared (<, <=, >, >=) in one of the 8 lines before the
    copy: the bound sits at the copy;
  - the call is listed in EXCEPTIONS below, with the reason it is bounded.

New code copies received bytes into fixed arrays with util_copy(dst,
sizeof dst, src, len) (util.h), which fails instead of overflowing.  Prints
"file:line: call" per finding; silent when there is none.
"""
import re
import sys

WINDOW = 8

# (file, call text exactly as written) -> why the copy cannot overflow.
# A changed call no longer matches and is reported again: look at it anew.
EXCEPTIONS = {
    ("src/auth.c", "memcpy(pw, z2 + 1, plen);"):
        "plen <= AUTH_PASSWORD_MAX_BYTES is checked 10 lines up; pw is the caller's "
        "AUTH_PASSWORD_MAX_BYTES + 1 buffer (auth.h contract of auth_decode_plain)",
    ("src/auth.c", "memcpy(r->user, user, len + 1);"):
        "flexible array member allocated with len + 1 bytes two lines up",
    ("src/conn.c", "memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);"):
        "compacting the input buffer in place: in_start <= in_end <= in_cap",
    ("src/dns.c", "memcpy(&s->addr, a, len);"):
        "len is the socklen_t of a struct sockaddr_storage, the type of s->addr",
    ("src/dns.c", "memcpy(x->q.name, k->name, k->len);"):
        "k->len <= sizeof k->name == sizeof x->q.name (DNS_NAME_WIRE_MAX_BYTES), set by dns_name_from_text",
    ("src/dns.c", "memcpy(tk.name, r->chase_wire, tk.len);"):
        "chase_len <= sizeof chase_wire == sizeof tk.name (DNS_NAME_WIRE_MAX_BYTES)",
    ("src/dns_wire.c", "memcpy(end, q->name, q->name_len);"):
        "end is the caller's DNS_NAME_WIRE_MAX_BYTES array; q->name_len <= sizeof q->name, the same size",
    ("src/health.c", "memcpy(start, head, (size_t)n);"):
        "0 <= n < sizeof head == HEALTH_HEAD_RESERVE_BYTES, the room before start (n < 0 panics above)",
}


def split_args(s):
    depth, out = 0, [""]
    for c in s:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            out.append("")
            continue
        out[-1] += c
    return [a.strip() for a in out]


def length_name(n):
    """The variable a length expression starts with: 'n' of '(size_t)n + 1'."""
    n = re.sub(r"\(\s*(size_t|int|unsigned)\s*\)", "", n).strip("() ")
    m = re.match(r"[A-Za-z_][\w.>-]*", n)
    return m.group(0) if m else None


def findings(path):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    for i, code in enumerate(lines):
        m = re.search(r"\bmem(?:cpy|move)\s*\((.*)\)\s*;", code)
        if not m:
            continue
        args = split_args(m.group(1))
        if len(args) != 3:
            continue
        dst, n = args[0], args[2]
        if "+" in dst or re.match(r"^(sizeof\b|[0-9]+$|[A-Z0-9_]+$|[A-Z0-9_]+ \* sizeof\b)", n):
            continue
        var = length_name(n)
        near = lines[max(0, i - WINDOW):i]
        if var and any(re.search(r"(?<![\w.>])" + re.escape(var) + r"\s*[<>]=?", l) for l in near):
            continue
        call = code.strip()
        if (path, call) in EXCEPTIONS:
            continue
        yield "%s:%d: %s" % (path, i + 1, call)


def main(paths):
    for p in paths:
        for f in findings(p):
            print(f + "  (bound it at the copy: util_copy(), or a length check just above)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
