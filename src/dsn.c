/*
 * dsn — xtext and the RFC 3461 parameters (see dsn.h).
 *
 * Strict on purpose: a value mrs cannot decode to printable ASCII is
 * refused at the command, so everything downstream (the spool, the
 * reports, the next hop) sees only values that were checked once here.
 */
#include "dsn.h"

#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* RFC 3461 §4: "+" is followed by uppercase hex */
}

int dsn_xtext_decode(const char *in, size_t n, char *out, size_t cap, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            int hi = n - i >= 3 ? hex_value(in[i + 1]) : -1, lo = n - i >= 3 ? hex_value(in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return -1;
        }
        if (c < 0x20 || c > 0x7e || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    *out_len = o;
    return 0;
}

int dsn_xtext_encode(const char *in, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        bool plain = c >= 33 && c <= 126 && c != '+' && c != '=';
        if (o + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '+';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return (int)o;
}

int dsn_parse_notify(const char *v, size_t n, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } words[] = {{"NEVER", DSN_NOTIFY_NEVER}, {"SUCCESS", DSN_NOTIFY_SUCCESS},
                 {"FAILURE", DSN_NOTIFY_FAILURE}, {"DELAY", DSN_NOTIFY_DELAY}};
    unsigned bits = 0;
    size_t i = 0;
    if (n == 0)
        return -1;
    while (i <= n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        unsigned bit = 0;
        for (size_t w = 0; w < sizeof words / sizeof words[0] && !bit; w++)
            if (util_ieq(v + s, i - s, words[w].name))
                bit = words[w].bit;
        if (!bit || (bits & bit))
            return -1; /* unknown, empty or repeated */
        bits |= bit;
        i++; /* past the comma (or the end) */
    }
    if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER)
        return -1; /* RFC 3461 §4.1: NEVER stands alone */
    *out = bits;
    return 0;
}

void dsn_notify_text(unsigned notify, char out[DSN_NOTIFY_TEXT_BYTES])
{
    if (notify & DSN_NOTIFY_NEVER) {
        snprintf(out, DSN_NOTIFY_TEXT_BYTES, "NEVER");
        return;
    }
    bool s = notify & DSN_NOTIFY_SUCCESS, f = notify & DSN_NOTIFY_FAILURE, d = notify & DSN_NOTIFY_DELAY;
    snprintf(out, DSN_NOTIFY_TEXT_BYTES, "%s%s%s%s%s", s ? "SUCCESS" : "", s && f ? "," : "", f ? "FAILURE" : "",
             (s || f) && d ? "," : "", d ? "DELAY" : "");
}

int dsn_parse_orcpt(const char *v, size_t n, char *out, size_t cap, const char **why)
{
    char addr[DSN_ORCPT_MAX_BYTES + 1];
    size_t alen;
    const char *semi = memchr(v, ';', n);
    size_t tlen = semi ? (size_t)(semi - v) : 0;
    const char *reason = NULL;
    if (!semi || !(util_ieq(v, tlen, "rfc822") || util_ieq(v, tlen, "utf-8")))
        reason = "ORCPT must be rfc822;address or utf-8;address (RFC 3461 section 4.2)";
    else if (dsn_xtext_decode(semi + 1, n - tlen - 1, addr, sizeof addr, &alen) < 0)
        reason = "ORCPT address must be xtext of at most 500 printable characters (RFC 3461 section 4)";
    else if (alen == 0)
        reason = "ORCPT address is empty";
    if (!reason && out) {
        if (tlen + 1 + alen + 1 > cap)
            reason = "ORCPT is too long";
        else
            snprintf(out, cap, "%.*s;%s", (int)tlen, v, addr);
    }
    if (reason && why)
        *why = reason;
    return reason ? -1 : 0;
}

bool dsn_valid_envid(const char *v, size_t n)
{
    char id[DSN_ENVID_MAX_BYTES + 1];
    size_t len;
    return dsn_xtext_decode(v, n, id, sizeof id, &len) == 0 && len > 0;
}

/* mail_param — RET= or ENVID=; 1 when key is neither. */
static int mail_param(const char *key, size_t klen, const char *v, size_t vlen, struct dsn_params *d)
{
    if (util_ieq(key, klen, "RET")) {
        if (d->ret != DSN_RET_NONE)
            return d->why = "RET given twice", -1;
        if (v && util_ieq(v, vlen, "FULL"))
            d->ret = DSN_RET_FULL;
        else if (v && util_ieq(v, vlen, "HDRS"))
            d->ret = DSN_RET_HDRS;
        else
            return d->why = "RET must be FULL or HDRS (RFC 3461 section 4.3)", -1;
        return 0;
    }
    if (!util_ieq(key, klen, "ENVID"))
        return 1;
    if (d->envid[0])
        return d->why = "ENVID given twice", -1;
    if (!v || !dsn_valid_envid(v, vlen) || util_copy(d->envid, sizeof d->envid, v, vlen) < 0)
        return d->why = "ENVID must be xtext of 1 to 100 printable characters (RFC 3461 section 4.4)", -1;
    return 0;
}

/* rcpt_param — NOTIFY= or ORCPT=; 1 when key is neither. */
static int rcpt_param(const char *key, size_t klen, const char *v, size_t vlen, struct dsn_params *d)
{
    if (util_ieq(key, klen, "NOTIFY")) {
        if (d->notify)
            return d->why = "NOTIFY given twice", -1;
        if (!v || dsn_parse_notify(v, vlen, &d->notify) < 0)
            return d->why = "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 section 4.1)", -1;
        return 0;
    }
    if (!util_ieq(key, klen, "ORCPT"))
        return 1;
    if (d->orcpt)
        return d->why = "ORCPT given twice", -1;
    if (!v) {
        d->why = "ORCPT needs a value";
        return -1;
    }
    if (dsn_parse_orcpt(v, vlen, NULL, 0, &d->why) < 0)
        return -1;
    if (vlen > DSN_ORCPT_XTEXT_MAX_BYTES)
        return d->why = "ORCPT is too long", -1;
    d->orcpt = v;
    d->orcpt_len = vlen;
    return 0;
}

int dsn_parse_param(const char *key, size_t klen, const char *v, size_t vlen, bool mail, struct dsn_params *d)
{
    return mail ? mail_param(key, klen, v, vlen, d) : rcpt_param(key, klen, v, vlen, d);
}

const char *dsn_ret_name(enum dsn_ret ret)
{
    return ret == DSN_RET_FULL ? "FULL" : ret == DSN_RET_HDRS ? "HDRS" : NULL;
}

/* grow — both arrays to hold index, new entries NULL. */
static int grow(struct dsn_rcpts *r, size_t index)
{
    if (index < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 8;
    while (cap <= index)
        cap *= 2;
    char **n = realloc(r->notify, cap * sizeof *n);
    if (!n)
        return -1;
    r->notify = n;
    char **o = realloc(r->orcpt, cap * sizeof *o);
    if (!o)
        return -1;
    r->orcpt = o;
    memset(r->notify + r->cap, 0, (cap - r->cap) * sizeof *n);
    memset(r->orcpt + r->cap, 0, (cap - r->cap) * sizeof *o);
    r->cap = cap;
    return 0;
}

int dsn_rcpts_set(struct dsn_rcpts *r, size_t index, const struct dsn_params *p)
{
    char text[DSN_NOTIFY_TEXT_BYTES];
    if (!p->notify && !p->orcpt && !r->cap)
        return 0; /* once the arrays exist they cover every recipient */
    if (grow(r, index) < 0)
        return -1;
    dsn_notify_text(p->notify, text);
    free(r->notify[index]);
    free(r->orcpt[index]);
    r->notify[index] = p->notify ? strdup(text) : NULL;
    r->orcpt[index] = p->orcpt ? strndup(p->orcpt, p->orcpt_len) : NULL;
    if ((p->notify && !r->notify[index]) || (p->orcpt && !r->orcpt[index]))
        return -1;
    return 0;
}

void dsn_rcpts_free(struct dsn_rcpts *r)
{
    for (size_t i = 0; i < r->cap; i++) {
        free(r->notify[i]);
        free(r->orcpt[i]);
    }
    free(r->notify);
    free(r->orcpt);
    memset(r, 0, sizeof *r);
}
