/*
 * dns_wire — build DNS queries and parse replies (see dns_wire.h).
 *
 * Every read goes through `struct cursor`, whose error is sticky: once a
 * bound is crossed every getter returns zero and does nothing, and callers
 * test c->err once after a group of reads.  Bounds are written as lengths
 * (`n > end - pos`), never as pointer sums.  A reply is walked section by
 * section as often as needed instead of being copied into a table, so the
 * parser needs no allocation besides the result and little stack.
 *
 * Calls: libc only.  No shared state.
 */
#include "dns_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAG_QR 0x8000u
#define FLAG_TC 0x0200u
#define FLAG_RD 0x0100u
#define FLAG_AD 0x0020u   /* authentic data (RFC 4035 §3.2.3) */
#define OPT_DO 0x80u      /* DO, the top bit of the OPT TTL's third byte (RFC 3225 §3) */
#define OPCODE_MASK 0x7800u
#define RCODE_MASK 0x000fu

struct cursor {
    const uint8_t *msg; /* the whole message: compression pointers index it */
    size_t msg_len;
    size_t pos;
    size_t end;         /* reads stop here: msg_len, or the end of one RDATA */
    bool err;
};

/* One resource record, its RDATA left in place. */
struct rr {
    size_t owner_len;
    uint8_t owner[DNS_NAME_WIRE_MAX_BYTES];
    uint16_t type;
    uint16_t class;
    uint32_t ttl;
    size_t rdata;       /* offset in the message */
    size_t rdlen;
};

/* The parts of a reply a parse needs, found once. */
struct reply {
    uint16_t flags;
    uint16_t counts[4];  /* question, answer, authority, additional */
    size_t answer;       /* offset of the answer section */
    size_t authority;    /* offset of the authority section */
};

/* ---- cursor ------------------------------------------------------------ */

static void cur_init(struct cursor *c, const uint8_t *msg, size_t len, size_t pos)
{
    c->msg = msg;
    c->msg_len = len;
    c->pos = pos;
    c->end = len;
    c->err = pos > len;
}

static bool cur_need(struct cursor *c, size_t n)
{
    if (c->err || n > c->end - c->pos)
        c->err = true;
    return !c->err;
}

static void cur_skip(struct cursor *c, size_t n)
{
    if (cur_need(c, n))
        c->pos += n;
}

static uint8_t get_u8(struct cursor *c)
{
    if (!cur_need(c, 1))
        return 0;
    return c->msg[c->pos++];
}

static uint16_t get_u16(struct cursor *c)
{
    if (!cur_need(c, 2))
        return 0;
    uint16_t v = (uint16_t)(c->msg[c->pos] << 8 | c->msg[c->pos + 1]);
    c->pos += 2;
    return v;
}

static uint32_t get_u32(struct cursor *c)
{
    uint32_t hi = get_u16(c);
    return hi << 16 | get_u16(c);
}

static uint8_t lower(uint8_t b)
{
    return b >= 'A' && b <= 'Z' ? (uint8_t)(b + 32) : b;
}

/*
 * get_name — a (possibly compressed) name at the cursor, in lowercase wire
 * form, into out; returns its length, 0 on error (sticky).  Each pointer
 * must point strictly before the start of the part of the name that holds
 * it (RFC 1035 §4.1.4 only allows pointers to earlier names), so the walk
 * always ends; jumps and total length are capped too.
 */
static size_t get_name(struct cursor *c, uint8_t out[DNS_NAME_WIRE_MAX_BYTES])
{
    size_t pos = c->pos, limit = c->pos, bound = c->end, n = 0, resume = 0;
    int jumps = 0;
    if (c->err)
        return 0;
    for (;;) {
        if (pos >= bound)
            goto bad;
        uint8_t b = c->msg[pos];
        if ((b & 0xc0) == 0xc0) {
            if (bound - pos < 2)
                goto bad;
            size_t target = (size_t)(b & 0x3f) << 8 | c->msg[pos + 1];
            if (jumps == 0)
                resume = pos + 2;
            if (target >= limit || ++jumps > DNS_NAME_MAX_JUMPS)
                goto bad;
            limit = pos = target;
            bound = c->msg_len;
            continue;
        }
        if (b & 0xc0) /* 01 and 10: extended label types, obsolete (RFC 6891 §5) */
            goto bad;
        if (b == 0)
            break;
        if ((size_t)b >= bound - pos || (size_t)b + 2 > DNS_NAME_WIRE_MAX_BYTES - n)
            goto bad; /* label past the end, or no room left for it and the root */
        out[n++] = b;
        for (size_t i = 1; i <= b; i++)
            out[n++] = lower(c->msg[pos + i]);
        pos += 1 + (size_t)b;
    }
    out[n++] = 0;
    c->pos = jumps ? resume : pos + 1;
    return n;
bad:
    c->err = true;
    return 0;
}

static bool name_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* ---- names as text ------------------------------------------------------ */

/* one escape after a backslash: \DDD (decimal byte) or \X (X itself) */
static int unescape(const char **p, uint8_t *out)
{
    const char *s = *p;
    if (s[0] >= '0' && s[0] <= '9') {
        if (!(s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'))
            return -1;
        int v = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        if (v > 255)
            return -1;
        *out = (uint8_t)v;
        *p = s + 3;
        return 0;
    }
    if (s[0] == '\0')
        return -1;
    *out = (uint8_t)s[0];
    *p = s + 1;
    return 0;
}

int dns_name_from_text(const char *text, uint8_t wire[DNS_NAME_WIRE_MAX_BYTES], size_t *wire_len)
{
    size_t n = 0;
    const char *p = text;
    if (strcmp(text, ".") == 0) {
        wire[0] = 0;
        *wire_len = 1;
        return 0;
    }
    while (*p) {
        size_t label_at = n++;
        if (label_at >= DNS_NAME_WIRE_MAX_BYTES - 1)
            return -1;
        while (*p && *p != '.') {
            uint8_t b = (uint8_t)*p++;
            if (b == '\\' && unescape(&p, &b) < 0)
                return -1;
            /* room for this byte, and for the root label after it */
            if (n - label_at > DNS_LABEL_MAX_BYTES || n >= DNS_NAME_WIRE_MAX_BYTES - 1)
                return -1;
            wire[n++] = lower(b);
        }
        size_t label = n - label_at - 1;
        if (label == 0)
            return -1; /* "", ".a", "a..b" */
        wire[label_at] = (uint8_t)label;
        if (*p == '.')
            p++; /* a separator, or the trailing dot of an absolute name */
    }
    if (n == 0)
        return -1;
    wire[n++] = 0;
    *wire_len = n;
    return 0;
}

int dns_name_to_text(const uint8_t *wire, size_t wire_len, char *out, size_t out_len)
{
    size_t o = 0, i = 0;
    if (out_len < 2)
        return -1;
    if (wire_len == 0 || wire[0] == 0) {
        out[0] = '.';
        out[1] = '\0';
        return 0;
    }
    while (i < wire_len && wire[i] != 0) {
        size_t label = wire[i++];
        if (label > wire_len - i)
            return -1;
        if (o > 0) {
            if (out_len - o < 2)
                return -1;
            out[o++] = '.';
        }
        for (size_t k = 0; k < label; k++, i++) {
            uint8_t b = wire[i];
            bool plain = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
                         (b >= '0' && b <= '9') || b == '-' || b == '_' || b == '*';
            if (out_len - o < (plain ? 2u : 5u))
                return -1;
            if (plain)
                out[o++] = (char)b;
            else
                o += (size_t)snprintf(out + o, out_len - o, "\\%03u", b);
        }
    }
    out[o] = '\0';
    return 0;
}

/* ---- queries ------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int dns_wire_build_query(const struct dns_question *q, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t need = DNS_HEADER_BYTES + q->name_len + 4 + 11;
    if (q->name_len == 0 || q->name_len > DNS_NAME_WIRE_MAX_BYTES || cap < need)
        return -1;
    memset(out, 0, need);
    put_u16(out, q->id);
    put_u16(out + 2, FLAG_RD);
    put_u16(out + 4, 1);  /* QDCOUNT */
    put_u16(out + 10, 1); /* ARCOUNT: the OPT record */
    memcpy(out + DNS_HEADER_BYTES, q->name, q->name_len);
    uint8_t *p = out + DNS_HEADER_BYTES + q->name_len;
    put_u16(p, q->type);
    put_u16(p + 2, DNS_CLASS_IN);
    /* OPT (RFC 6891 §6.1.2): root owner, CLASS = UDP payload size, TTL
     * (extended rcode 0, version 0, DO as asked), no options. */
    put_u16(p + 5, DNS_TYPE_OPT);
    put_u16(p + 7, DNS_UDP_PAYLOAD_BYTES);
    if (q->dnssec)
        p[11] = OPT_DO;
    *out_len = need;
    return 0;
}

/* ---- replies ------------------------------------------------------------ */

/* read_header — header and the one question; 0 when they answer q. */
static int read_header(const uint8_t *msg, size_t len, const struct dns_question *q,
                       struct reply *r)
{
    struct cursor c;
    uint8_t name[DNS_NAME_WIRE_MAX_BYTES];
    cur_init(&c, msg, len, 0);
    uint16_t id = get_u16(&c);
    r->flags = get_u16(&c);
    for (int i = 0; i < 4; i++)
        r->counts[i] = get_u16(&c);
    size_t name_len = get_name(&c, name);
    uint16_t qtype = get_u16(&c), qclass = get_u16(&c);
    if (c.err || id != q->id || !(r->flags & FLAG_QR) || (r->flags & OPCODE_MASK) != 0)
        return -1;
    if (r->counts[0] != 1 || qtype != q->type || qclass != DNS_CLASS_IN ||
        !name_equal(name, name_len, q->name, q->name_len))
        return -1;
    r->answer = c.pos;
    return 0;
}

enum dns_wire_check dns_wire_check_reply(const uint8_t *msg, size_t len, const struct dns_question *q)
{
    struct reply r;
    if (read_header(msg, len, q, &r) < 0)
        return DNS_WIRE_MISMATCH;
    return (r.flags & FLAG_TC) ? DNS_WIRE_TRUNCATED : DNS_WIRE_MATCH;
}

/* get_rr — one resource record at the cursor; its RDATA is skipped. */
static void get_rr(struct cursor *c, struct rr *rr)
{
    rr->owner_len = get_name(c, rr->owner);
    rr->type = get_u16(c);
    rr->class = get_u16(c);
    rr->ttl = get_u32(c);
    if (rr->ttl > 0x7fffffffu) /* RFC 2181 §8: a TTL with the top bit set means 0 */
        rr->ttl = 0;
    rr->rdlen = get_u16(c);
    rr->rdata = c->pos;
    cur_skip(c, rr->rdlen);
}

/* rdata_cursor — a cursor limited to the RDATA of rr. */
static void rdata_cursor(struct cursor *c, const uint8_t *msg, size_t len, const struct rr *rr)
{
    cur_init(c, msg, len, rr->rdata);
    c->end = rr->rdata + rr->rdlen;
}

/* check_rdata — the RDATA of the types we read must be exactly as long as
 * their fields; other types are opaque. */
static bool check_rdata(const uint8_t *msg, size_t len, const struct rr *rr)
{
    struct cursor c;
    uint8_t name[DNS_NAME_WIRE_MAX_BYTES];
    rdata_cursor(&c, msg, len, rr);
    switch (rr->type) {
    case DNS_TYPE_A:
        return rr->rdlen == 4;
    case DNS_TYPE_AAAA:
        return rr->rdlen == 16;
    case DNS_TYPE_CNAME:
    case DNS_TYPE_NS:
        get_name(&c, name);
        break;
    case DNS_TYPE_MX:
        get_u16(&c);
        get_name(&c, name);
        break;
    case DNS_TYPE_SOA:
        get_name(&c, name);
        get_name(&c, name);
        cur_skip(&c, 20);
        break;
    case DNS_TYPE_TXT:
        while (!c.err && c.pos < c.end)
            cur_skip(&c, get_u8(&c));
        break;
    case DNS_TYPE_TLSA:
        return rr->rdlen >= 3; /* usage, selector, matching type, data (RFC 6698 §2.1) */
    default:
        return true;
    }
    return !c.err && c.pos == c.end;
}

/* walk_section — check `count` records from *pos and move past them. */
static int walk_section(const uint8_t *msg, size_t len, size_t *pos, unsigned count)
{
    struct cursor c;
    struct rr rr;
    if (count > DNS_SECTION_MAX_RRS)
        return -1;
    cur_init(&c, msg, len, *pos);
    for (unsigned i = 0; i < count && !c.err; i++) {
        get_rr(&c, &rr);
        if (!c.err && !check_rdata(msg, len, &rr))
            return -1;
    }
    if (c.err)
        return -1;
    *pos = c.pos;
    return 0;
}

/* A position in the answer section, for find_rr(). */
struct rr_iter {
    struct cursor c;
    unsigned left; /* records not read yet */
};

static void iter_answers(struct rr_iter *it, const uint8_t *msg, size_t len, const struct reply *r)
{
    cur_init(&it->c, msg, len, r->answer);
    it->left = r->counts[1];
}

/*
 * find_rr — the next record of the answer section owned by name with the
 * given type (class IN): true with *rr filled.  The section was checked by
 * walk_section(), so a read error here only ends the search.
 */
static bool find_rr(struct rr_iter *it, const uint8_t *name, size_t name_len, uint16_t type,
                    struct rr *rr)
{
    while (it->left > 0 && !it->c.err) {
        it->left--;
        get_rr(&it->c, rr);
        if (!it->c.err && rr->type == type && rr->class == DNS_CLASS_IN &&
            name_equal(rr->owner, rr->owner_len, name, name_len))
            return true;
    }
    return false;
}

/* negative_ttl — RFC 2308 §5: min(SOA TTL, SOA MINIMUM) of the SOA in the
 * authority section; DNS_NEG_TTL_DEFAULT_S without one.  *has_soa says. */
static uint32_t negative_ttl(const uint8_t *msg, size_t len, const struct reply *r, bool *has_soa)
{
    struct cursor c;
    struct rr rr;
    cur_init(&c, msg, len, r->authority);
    *has_soa = false;
    for (unsigned k = 0; k < r->counts[2] && !c.err; k++) {
        get_rr(&c, &rr);
        if (c.err || rr.type != DNS_TYPE_SOA || rr.class != DNS_CLASS_IN)
            continue;
        struct cursor d;
        uint8_t name[DNS_NAME_WIRE_MAX_BYTES];
        rdata_cursor(&d, msg, len, &rr);
        get_name(&d, name);
        get_name(&d, name);
        cur_skip(&d, 16);
        uint32_t minimum = get_u32(&d);
        *has_soa = true;
        uint32_t ttl = rr.ttl < minimum ? rr.ttl : minimum;
        return ttl < DNS_NEG_TTL_MAX_S ? ttl : DNS_NEG_TTL_MAX_S;
    }
    return DNS_NEG_TTL_DEFAULT_S;
}

/* ---- results ------------------------------------------------------------ */

struct dns_result *dns_result_new(enum dns_status status, uint16_t type, const char *name)
{
    struct dns_result *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->status = status;
    r->type = type;
    r->name = strdup(name);
    r->canonical = strdup(name);
    if (!r->name || !r->canonical) {
        free(r->name);
        free(r->canonical);
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    return r;
}

struct dns_result *dns_result_ref(struct dns_result *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
    return r;
}

void dns_result_free(struct dns_result *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->target) {
        dns_result_free(r->target); /* the arrays are the target's */
    } else {
        for (size_t i = 0; i < r->count; i++) {
            if (r->txt)
                free(r->txt[i].data);
            if (r->mx)
                free(r->mx[i].exchange);
            if (r->rdata)
                free(r->rdata[i].data);
        }
        free(r->txt);
        free(r->mx);
        free(r->addr);
        free(r->rdata);
    }
    free(r->name);
    free(r->canonical);
    free(r);
}

struct dns_result *dns_result_alias(const char *name, struct dns_result *target, int hops,
                                    uint32_t chain_ttl)
{
    struct dns_result *r = dns_result_new(target->status, target->type, name);
    if (!r)
        return NULL;
    free(r->canonical);
    r->canonical = strdup(target->canonical);
    if (!r->canonical) {
        r->target = NULL;
        dns_result_free(r);
        return NULL;
    }
    r->rcode = target->rcode;
    r->cname_hops = hops;
    r->ttl = chain_ttl < target->ttl ? chain_ttl : target->ttl;
    r->received_ms = target->received_ms;
    memcpy(r->server, target->server, sizeof r->server);
    r->tcp = target->tcp;
    r->null_mx = target->null_mx;
    r->secure = target->secure;
    r->count = target->count;
    r->txt = target->txt;
    r->mx = target->mx;
    r->addr = target->addr;
    r->rdata = target->rdata;
    r->target = dns_result_ref(target);
    return r;
}

size_t dns_result_bytes(const struct dns_result *r)
{
    size_t n = sizeof *r + strlen(r->name) + strlen(r->canonical) + 2;
    if (r->target)
        return n; /* the target is cached (and counted) on its own */
    for (size_t i = 0; i < r->count; i++) {
        if (r->txt)
            n += sizeof r->txt[i] + r->txt[i].len + 1;
        if (r->mx)
            n += sizeof r->mx[i] + strlen(r->mx[i].exchange) + 1;
        if (r->addr)
            n += sizeof r->addr[i];
        if (r->rdata)
            n += sizeof r->rdata[i] + r->rdata[i].len;
    }
    return n;
}

void dns_addr_set_port(struct dns_addr *a, uint16_t port)
{
    if (a->family == AF_INET)
        a->u.in.sin_port = htons(port);
    else
        a->u.in6.sin6_port = htons(port);
}

bool dns_status_permanent(enum dns_status s)
{
    return s == DNS_OK || s == DNS_NXDOMAIN || s == DNS_NODATA;
}

const char *dns_status_name(enum dns_status s)
{
    static const char *const names[] = {"ok", "nxdomain", "nodata", "servfail",
                                        "refused", "timeout", "malformed", "error"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "error";
}

/* ---- filling a result from records -------------------------------------- */

static char *name_text_dup(const uint8_t *wire, size_t len)
{
    char text[DNS_NAME_TEXT_MAX_BYTES];
    if (dns_name_to_text(wire, len, text, sizeof text) < 0)
        return NULL;
    return strdup(text);
}

static int fill_txt(struct dns_txt *t, const uint8_t *msg, size_t len, const struct rr *rr)
{
    struct cursor c;
    rdata_cursor(&c, msg, len, rr);
    t->data = malloc(rr->rdlen + 1);
    if (!t->data)
        return -1;
    t->len = 0;
    while (!c.err && c.pos < c.end) {
        size_t n = get_u8(&c);
        if (!cur_need(&c, n))
            break;
        memcpy(t->data + t->len, msg + c.pos, n);
        t->len += n;
        c.pos += n;
    }
    t->data[t->len] = '\0';
    return 0;
}

static int fill_mx(struct dns_mx *m, const uint8_t *msg, size_t len, const struct rr *rr)
{
    struct cursor c;
    uint8_t name[DNS_NAME_WIRE_MAX_BYTES];
    rdata_cursor(&c, msg, len, rr);
    m->preference = get_u16(&c);
    size_t n = get_name(&c, name);
    m->exchange = c.err ? NULL : name_text_dup(name, n);
    return m->exchange ? 0 : -1;
}

static int fill_rdata(struct dns_rdata *d, const uint8_t *msg, const struct rr *rr)
{
    /* the RDATA lies inside the message (walk_section checked it) */
    if (rr->rdlen > DNS_MSG_MAX_BYTES || !(d->data = malloc(rr->rdlen ? rr->rdlen : 1)))
        return -1;
    memcpy(d->data, msg + rr->rdata, rr->rdlen);
    d->len = rr->rdlen;
    return 0;
}

static void fill_addr(struct dns_addr *a, const uint8_t *msg, const struct rr *rr)
{
    memset(a, 0, sizeof *a);
    if (rr->type == DNS_TYPE_A) {
        a->family = AF_INET;
        a->len = sizeof a->u.in;
        a->u.in.sin_family = AF_INET;
        memcpy(&a->u.in.sin_addr, msg + rr->rdata, 4);
    } else {
        a->family = AF_INET6;
        a->len = sizeof a->u.in6;
        a->u.in6.sin6_family = AF_INET6;
        memcpy(&a->u.in6.sin6_addr, msg + rr->rdata, 16);
    }
}

/* alloc_records — the array for `count` records of the result's type. */
static int alloc_records(struct dns_result *res, size_t count)
{
    switch (res->type) {
    case DNS_TYPE_TXT:
        res->txt = calloc(count, sizeof *res->txt);
        return res->txt ? 0 : -1;
    case DNS_TYPE_MX:
        res->mx = calloc(count, sizeof *res->mx);
        return res->mx ? 0 : -1;
    case DNS_TYPE_A:
    case DNS_TYPE_AAAA:
        res->addr = calloc(count, sizeof *res->addr);
        return res->addr ? 0 : -1;
    case DNS_TYPE_TLSA:
        res->rdata = calloc(count, sizeof *res->rdata);
        return res->rdata ? 0 : -1;
    default:
        return 0; /* other types: counted, not decoded */
    }
}

/* collect — the records of res->type owned by `owner` into res.  Returns
 * the status, DNS_ERROR when out of memory. */
static enum dns_status collect(const uint8_t *msg, size_t len, const struct reply *r,
                               const uint8_t *owner, size_t owner_len, struct dns_result *res,
                               uint32_t *ttl)
{
    struct rr rr;
    struct rr_iter it;
    size_t count = 0;
    iter_answers(&it, msg, len, r);
    while (find_rr(&it, owner, owner_len, res->type, &rr))
        count++;
    if (count == 0)
        return DNS_NODATA;
    if (count > DNS_RESULT_MAX_RECORDS)
        return DNS_MALFORMED;
    if (alloc_records(res, count) < 0)
        return DNS_ERROR;
    iter_answers(&it, msg, len, r);
    while (res->count < count && find_rr(&it, owner, owner_len, res->type, &rr)) {
        size_t k = res->count;
        int rc = 0;
        if (res->txt)
            rc = fill_txt(&res->txt[k], msg, len, &rr);
        else if (res->mx)
            rc = fill_mx(&res->mx[k], msg, len, &rr);
        else if (res->addr)
            fill_addr(&res->addr[k], msg, &rr);
        else if (res->rdata)
            rc = fill_rdata(&res->rdata[k], msg, &rr);
        res->count++; /* counted even when failed, so that free() sees it */
        if (rc < 0)
            return DNS_ERROR;
        if (rr.ttl < *ttl)
            *ttl = rr.ttl;
    }
    res->null_mx = res->mx && count == 1 && strcmp(res->mx[0].exchange, ".") == 0;
    return DNS_OK;
}

/* follow_cnames — from q's name along the CNAMEs of the answer section;
 * the name at the end into end/end_len, the hops in *hops, the smallest
 * TTL on the way in *ttl.  -1 when the chain is too long (or a loop). */
static int follow_cnames(const uint8_t *msg, size_t len, const struct reply *r,
                         const struct dns_question *q, int budget, uint8_t *end, size_t *end_len,
                         int *hops, uint32_t *ttl)
{
    struct rr rr;
    memcpy(end, q->name, q->name_len);
    *end_len = q->name_len;
    if (q->type == DNS_TYPE_CNAME)
        return 0;
    for (;;) {
        struct rr_iter it;
        iter_answers(&it, msg, len, r);
        if (!find_rr(&it, end, *end_len, DNS_TYPE_CNAME, &rr))
            return 0;
        if (*hops >= budget)
            return -1;
        ++*hops;
        struct cursor c;
        rdata_cursor(&c, msg, len, &rr);
        *end_len = get_name(&c, end);
        if (c.err)
            return -1;
        if (rr.ttl < *ttl)
            *ttl = rr.ttl;
    }
}

/* status_of_rcode — what an rcode other than NOERROR / NXDOMAIN means. */
static enum dns_status status_of_rcode(unsigned rcode)
{
    return rcode == DNS_RCODE_REFUSED ? DNS_REFUSED : DNS_SERVFAIL;
}

/* parse_sections — fill res from a reply to q whose header was read. */
static enum dns_status parse_sections(const uint8_t *msg, size_t len, const struct dns_question *q,
                                      int hops_before, struct reply *r, struct dns_result *res)
{
    uint8_t end[DNS_NAME_WIRE_MAX_BYTES];
    size_t end_len, pos = r->answer;
    uint32_t ttl = DNS_TTL_MAX_S;
    unsigned rcode = r->flags & RCODE_MASK;
    res->rcode = (uint8_t)rcode;
    if (rcode != DNS_RCODE_NOERROR && rcode != DNS_RCODE_NXDOMAIN)
        return status_of_rcode(rcode);
    if (walk_section(msg, len, &pos, r->counts[1]) < 0)
        return DNS_MALFORMED;
    r->authority = pos;
    if (walk_section(msg, len, &pos, r->counts[2]) < 0)
        return DNS_MALFORMED;
    if (follow_cnames(msg, len, r, q, DNS_CNAME_MAX_HOPS - hops_before, end, &end_len,
                      &res->cname_hops, &ttl) < 0)
        return DNS_MALFORMED;
    if (res->cname_hops > 0) {
        char *canonical = name_text_dup(end, end_len);
        if (!canonical)
            return DNS_ERROR;
        free(res->canonical);
        res->canonical = canonical;
    }
    enum dns_status st = DNS_NODATA;
    if (rcode == DNS_RCODE_NOERROR)
        st = collect(msg, len, r, end, end_len, res, &ttl);
    if (st == DNS_OK || st == DNS_ERROR || st == DNS_MALFORMED) {
        res->ttl = ttl;
        return st;
    }
    bool has_soa;
    uint32_t neg = negative_ttl(msg, len, r, &has_soa);
    res->ttl = neg < ttl ? neg : ttl;
    if (rcode == DNS_RCODE_NOERROR && res->cname_hops > 0 && !has_soa && end_len > 1) {
        /* The chain leaves the server's data: the caller asks the end (not
         * the root, which a CNAME may not usefully point to). */
        res->chase = true;
        res->chase_len = end_len;
        memcpy(res->chase_wire, end, end_len);
        res->ttl = ttl;
    }
    return rcode == DNS_RCODE_NXDOMAIN ? DNS_NXDOMAIN : DNS_NODATA;
}

enum dns_status dns_wire_parse_reply(const uint8_t *msg, size_t len, const struct dns_question *q,
                                     int hops_before, struct dns_result **out)
{
    char name[DNS_NAME_TEXT_MAX_BYTES];
    struct reply r;
    *out = NULL;
    if (dns_name_to_text(q->name, q->name_len, name, sizeof name) < 0)
        return DNS_ERROR;
    struct dns_result *res = dns_result_new(DNS_MALFORMED, q->type, name);
    if (!res)
        return DNS_ERROR;
    enum dns_status st = DNS_MALFORMED;
    if (read_header(msg, len, q, &r) == 0) {
        st = parse_sections(msg, len, q, hops_before, &r, res);
        /* AD is only meaningful to a question that asked with DO; whether
         * to believe it is the caller's business (dns.c: configured servers). */
        res->secure = q->dnssec && (r.flags & FLAG_AD) && dns_status_permanent(st);
    }
    if (st == DNS_ERROR) {
        dns_result_free(res);
        return DNS_ERROR;
    }
    /* Records are only collected on success: a failed parse holds none. */
    res->status = st;
    *out = res;
    return st;
}
