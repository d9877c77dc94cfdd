/*
 * dns_wire — DNS messages as bytes: build queries, check and parse answers
 * (RFC 1035, 2181, 2308, 6891).  Pure: no I/O, no clock, no configuration,
 * so unit tests and fuzzers call it directly.
 *
 * Owns the result type shared with dns.c and its users (struct dns_result,
 * reference-counted, immutable once published) and the name conversions.
 * Parsing uses one cursor with a sticky error; compression pointers must
 * point strictly backwards; labels, records, pointer jumps and CNAME hops
 * are capped; the RDATA of every type we read must be consumed exactly.
 *
 * Calls: libc only.  Thread-safe: no shared state (reference counts are
 * atomic).
 */
#ifndef MRS_DNS_WIRE_H
#define MRS_DNS_WIRE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_HEADER_BYTES 12
#define DNS_NAME_WIRE_MAX_BYTES 255   /* RFC 1035 §2.3.4, length octets included */
#define DNS_LABEL_MAX_BYTES 63
#define DNS_NAME_TEXT_MAX_BYTES 1024  /* presentation form with \DDD escapes + NUL */
#define DNS_QUERY_MAX_BYTES 512       /* header + longest question + OPT record */
#define DNS_UDP_PAYLOAD_BYTES 1232    /* EDNS0 size we advertise (DNS flag day 2020) */
#define DNS_MSG_MAX_BYTES 65535       /* TCP length prefix */
#define DNS_SECTION_MAX_RRS 2048      /* a larger count in one section is malformed */
#define DNS_RESULT_MAX_RECORDS 256    /* a larger RRset is malformed (never silently cut) */
#define DNS_NAME_MAX_JUMPS 128        /* compression pointers followed in one name */
#define DNS_CNAME_MAX_HOPS 8          /* CNAMEs followed for one lookup, in total */
#define DNS_TTL_MAX_S 86400u          /* positive answers cached at most a day */
#define DNS_NEG_TTL_MAX_S 3600u       /* negative answers at most an hour (RFC 2308 §5) */
#define DNS_NEG_TTL_DEFAULT_S 60u     /* negative answer without an SOA */
#define DNS_SERVER_TEXT_BYTES 64      /* "[v6 address]:port" */

#define DNS_CLASS_IN 1

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_NS = 2,
    DNS_TYPE_CNAME = 5,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_MX = 15,
    DNS_TYPE_TXT = 16,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_OPT = 41,
    DNS_TYPE_TLSA = 52,
};

enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
};

/* The outcome of one lookup.  The first three are answers from the DNS and
 * permanent; the rest are temporary (retry later: SMTP 451 4.4.3). */
enum dns_status {
    DNS_OK = 0,     /* at least one record of the asked type */
    DNS_NXDOMAIN,   /* the name does not exist */
    DNS_NODATA,     /* the name exists, without records of that type */
    DNS_SERVFAIL,   /* SERVFAIL, or another error rcode (FORMERR, NOTIMP…) */
    DNS_REFUSED,    /* REFUSED */
    DNS_TIMEOUT,    /* no usable answer before the deadline */
    DNS_MALFORMED,  /* an answer that breaks RFC 1035 (or a CNAME loop) */
    DNS_ERROR,      /* local: invalid name, unsupported type, no memory, no socket */
};

/* dns_status_permanent — true for DNS_OK, DNS_NXDOMAIN and DNS_NODATA. */
bool dns_status_permanent(enum dns_status s);
/* dns_status_name — "ok", "nxdomain", "nodata", "servfail", "refused",
 * "timeout", "malformed", "error" (static strings). */
const char *dns_status_name(enum dns_status s);

/* One TXT record: its character-strings concatenated (RFC 7208 §3.3).
 * `data` holds `len` bytes and a NUL after them; it may contain NUL bytes. */
struct dns_txt {
    size_t len;
    char *data;
};

/* One MX record.  `exchange` is the presentation form, lowercase, without
 * the trailing dot; the root (null MX, RFC 7505) is ".". */
struct dns_mx {
    uint16_t preference;
    char *exchange;
};

/* One record kept as its raw RDATA (type TLSA: dane.c parses it). */
struct dns_rdata {
    size_t len;
    uint8_t *data;
};

/* One A or AAAA record as a socket address (port 0): set the port with
 * dns_addr_set_port() and pass &addr.u.sa, addr.len to connect(). */
struct dns_addr {
    int family; /* AF_INET or AF_INET6 */
    socklen_t len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
};

/*
 * The answer to one question.  Reference-counted and never modified once
 * another thread can see it (the cache shares it between sessions): take a
 * reference with dns_result_ref(), drop it with dns_result_free().  Every
 * pointer inside is owned by the result.
 */
struct dns_result {
    enum dns_status status;
    uint16_t type;         /* the asked type */
    uint8_t rcode;         /* the server's rcode (when an answer arrived) */
    char *name;            /* the asked name, presentation form, lowercase */
    char *canonical;       /* after following CNAMEs (== name without) */
    int cname_hops;        /* CNAMEs followed to reach canonical */
    uint32_t ttl;          /* seconds this answer may be cached, after caps */
    int64_t received_ms;   /* monotonic clock when it arrived (set by dns.c) */
    char server[DNS_SERVER_TEXT_BYTES]; /* who answered, or was asked last */
    bool tcp;              /* the answer came over TCP (the UDP one was truncated) */
    bool null_mx;          /* MX: exactly one record, exchange "." (RFC 7505) */
    bool secure;           /* the server set AD (DNSSEC-validated, RFC 4035 §3.2.3) to a question
                            * asked with DO; never set otherwise.  Also for NXDOMAIN/NODATA
                            * (validated denial).  After a chased CNAME: every part was */
    size_t count;          /* records of `type` in the array below */
    struct dns_txt *txt;   /* type TXT */
    struct dns_mx *mx;     /* type MX, in answer order */
    struct dns_addr *addr; /* type A or AAAA */
    struct dns_rdata *rdata; /* type TLSA: the RDATA of each record */

    /* Private to dns_wire.c / dns.c. */
    atomic_int refs;
    bool chase;                              /* CNAME chain ends without data */
    size_t chase_len;
    uint8_t chase_wire[DNS_NAME_WIRE_MAX_BYTES];
    struct dns_result *target;               /* arrays borrowed from this result */
};

/* The question a reply must answer (RFC 5452 §9.1: ID, name, type, class). */
struct dns_question {
    uint16_t id;
    uint16_t type;
    bool dnssec;   /* ask with the DO bit (RFC 3225) and report the AD bit of the reply */
    size_t name_len;
    uint8_t name[DNS_NAME_WIRE_MAX_BYTES]; /* wire form, lowercase */
};

enum dns_wire_check {
    DNS_WIRE_MATCH = 0,  /* a reply to the question: parse it */
    DNS_WIRE_TRUNCATED,  /* a reply with TC set: ask again over TCP */
    DNS_WIRE_MISMATCH,   /* not a reply to this question: ignore it */
};

/* dns_name_from_text — presentation form ("mail.example.com", trailing dot
 * optional, \DDD and \X escapes) to lowercase wire form.  0, or -1 for an
 * empty label, a label over 63 bytes or a name over 255. */
int dns_name_from_text(const char *text, uint8_t wire[DNS_NAME_WIRE_MAX_BYTES], size_t *wire_len);

/* dns_name_to_text — wire form (as produced by this module) to presentation
 * form without the trailing dot; the root is ".".  Bytes other than letters,
 * digits, '-', '_' and '*' become \DDD.  0, or -1 if out_len is too small. */
int dns_name_to_text(const uint8_t *wire, size_t wire_len, char *out, size_t out_len);

/* dns_wire_build_query — a recursive query (RD) for q with an EDNS0 OPT
 * record advertising DNS_UDP_PAYLOAD_BYTES, with the DO bit when q->dnssec.  0 with *out_len set, or -1 when
 * cap is too small. */
int dns_wire_build_query(const struct dns_question *q, uint8_t *out, size_t cap, size_t *out_len);

/* dns_wire_check_reply — does msg answer q (ID, QR, opcode, the one
 * question)?  A reply that does not is to be ignored, not failed on. */
enum dns_wire_check dns_wire_check_reply(const uint8_t *msg, size_t len, const struct dns_question *q);

/*
 * dns_wire_parse_reply — the answer msg gives to q (which it must match).
 * Follows CNAMEs inside the answer section (at most DNS_CNAME_MAX_HOPS),
 * collects the records of q->type at the end of the chain, and computes
 * the TTL (RFC 2308 §5 for negative answers).  When the chain ends on a name
 * with neither records nor an SOA, result->chase is set and chase_wire holds
 * that name: the caller asks it next.  `hops_before` counts CNAMEs already
 * followed for this lookup (they count against the cap); result->cname_hops
 * counts those followed in this reply.
 *
 * result->secure is the reply's AD bit when q->dnssec (false otherwise).
 *
 * Returns the status, and in *out a new result (one reference, the caller's)
 * whose status is the same; *out is NULL only when memory ran out (then
 * DNS_ERROR).  received_ms and server are left for the caller to fill.
 */
enum dns_status dns_wire_parse_reply(const uint8_t *msg, size_t len, const struct dns_question *q,
                                     int hops_before, struct dns_result **out);

/* dns_result_new — an empty result (one reference) with the given status
 * and type and a copy of name; NULL when out of memory. */
struct dns_result *dns_result_new(enum dns_status status, uint16_t type, const char *name);
/* dns_result_ref — another reference to r (r may be NULL); returns r. */
struct dns_result *dns_result_ref(struct dns_result *r);
/* dns_result_free — drop one reference; the last frees everything.  NULL ok. */
void dns_result_free(struct dns_result *r);
/* dns_result_alias — a new result for `name` that shares target's records
 * (holding a reference to it): the answer at the end of a CNAME chain seen
 * from its start; secure as the target (the caller ANDs in the chain's own
 * reply).  NULL when out of memory. */
struct dns_result *dns_result_alias(const char *name, struct dns_result *target, int hops,
                                    uint32_t chain_ttl);
/* dns_result_bytes — approximate heap bytes held by r (for cache limits). */
size_t dns_result_bytes(const struct dns_result *r);

/* dns_addr_set_port — set the port (host order) of a record's address. */
void dns_addr_set_port(struct dns_addr *a, uint16_t port);

#endif
