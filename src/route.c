/*
 * route — MX / implicit MX / smarthost resolution into an ordered list of
 * addresses (see route.h).  Lookups go through the shared DNS cache; a
 * domain's answers are asked once per delivery attempt.
 */
#include "route.h"

#include "config.h"
#include "crypto.h"
#include "idna.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum route_status fail(struct route *r, enum route_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum route_status fail(struct route *r, enum route_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->status = st;
    return st;
}

static bool chosen(const size_t *order, size_t k, size_t i)
{
    for (size_t j = 0; j < k; j++)
        if (order[j] == i)
            return true;
    return false;
}

size_t route_order_mx(const struct dns_mx *mx, size_t n, const uint32_t *keys, size_t *order, size_t max)
{
    size_t k = 0;
    /* selection of the max best: n is at most DNS_RESULT_MAX_RECORDS and
     * max is small, so this stays cheap and needs no scratch memory */
    while (k < max) {
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(mx[i].exchange, ".") || chosen(order, k, i))
                continue;
            if (best == n || mx[i].preference < mx[best].preference ||
                (mx[i].preference == mx[best].preference && keys[i] < keys[best]))
                best = i;
        }
        if (best == n)
            break;
        order[k++] = best;
    }
    return k;
}

static void format_ip(const struct dns_addr *a, char *ip, size_t len)
{
    if (!inet_ntop(a->family, a->family == AF_INET6 ? (const void *)&a->u.in6.sin6_addr : (const void *)&a->u.in.sin_addr,
                   ip, (socklen_t)len))
        snprintf(ip, len, "?");
}

static void add_target(struct route *r, const char *host, const struct dns_addr *a, uint16_t port)
{
    struct route_target *t = &r->targets[r->count++];
    char ip[INET6_ADDRSTRLEN];
    t->addr = *a;
    dns_addr_set_port(&t->addr, port);
    snprintf(t->host, sizeof t->host, "%s", host);
    format_ip(a, ip, sizeof ip);
    snprintf(t->label, sizeof t->label, "%s[%s]:%u", host, ip, (unsigned)port);
}

/* denied — whether MRS_DELIVERY_DENY_NETS forbids connecting to a (SPEC
 * §8.1; IPv4-mapped IPv6 counts as IPv4); a denied address is counted and
 * named in r->denied.  The smarthost is the operator's choice: exempt. */
static bool denied(struct route *r, const char *host, const struct dns_addr *a)
{
    char ip[INET6_ADDRSTRLEN];
    if (r->smarthost || !config_addr_in_nets(&a->u.sa, config->deny_nets, config->deny_net_count))
        return false;
    size_t used = strlen(r->denied);
    format_ip(a, ip, sizeof ip);
    if (r->denied_count++ < ROUTE_DENIED_NAMED)
        snprintf(r->denied + used, sizeof r->denied - used, "%s%s[%s]", used ? ", " : "", host, ip);
    return true;
}

/* add_host — the A, then the AAAA addresses of host that are not denied.
 * A lookup failing temporarily sets *temp and describes itself in why. */
static void add_host(struct route *r, const char *host, uint16_t port, bool *temp, char *why, size_t why_len)
{
    static const uint16_t types[] = {DNS_TYPE_A, DNS_TYPE_AAAA};
    size_t added = 0;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        struct dns_result *res = NULL;
        enum dns_status st = dns_lookup(host, types[t], 0, &res);
        if (st == DNS_OK) {
            for (size_t i = 0; i < res->count && added < ROUTE_ADDRS_PER_HOST && r->count < ROUTE_ADDRS_MAX; i++) {
                if (denied(r, host, &res->addr[i]))
                    continue;
                add_target(r, host, &res->addr[i], port);
                /* DANE (RFC 7672 §2.2): the name came securely and so did its address */
                r->targets[r->count - 1].dnssec = r->names_secure && res->secure;
                added++;
            }
        } else if (!dns_status_permanent(st)) {
            *temp = true;
            snprintf(why, why_len, "%s %s: %s", types[t] == DNS_TYPE_A ? "A" : "AAAA", host, dns_status_name(st));
        }
        dns_result_free(res);
    }
}

/* smarthost — MRS_SMARTHOST: an address literal, or a name to resolve.
 * Any failure to find it is temporary: a misconfigured smarthost must not
 * bounce every message. */
static enum route_status smarthost(struct route *r)
{
    const struct config_hostport *sh = &config->smarthost;
    struct dns_addr a;
    bool temp = false;
    char why[200] = "no address";
    r->smarthost = true;
    memset(&a, 0, sizeof a);
    if (inet_pton(AF_INET, sh->host, &a.u.in.sin_addr) == 1) {
        a.family = a.u.in.sin_family = AF_INET;
        a.len = sizeof a.u.in;
        add_target(r, sh->host, &a, sh->port);
    } else if (inet_pton(AF_INET6, sh->host, &a.u.in6.sin6_addr) == 1) {
        a.family = a.u.in6.sin6_family = AF_INET6;
        a.len = sizeof a.u.in6;
        add_target(r, sh->host, &a, sh->port);
    } else {
        add_host(r, sh->host, sh->port, &temp, why, sizeof why);
    }
    if (r->count == 0)
        return fail(r, ROUTE_TEMPFAIL, "451 4.4.3 smarthost %s cannot be resolved (%s)", sh->host, why);
    return ROUTE_OK;
}

/* mx_hosts — the exchangers of an MX answer, in order, resolved. */
static void mx_hosts(struct route *r, const struct dns_result *mx, bool *temp, char *why, size_t why_len)
{
    uint32_t keys[DNS_RESULT_MAX_RECORDS];
    size_t order[ROUTE_MX_MAX];
    size_t n = mx->count < DNS_RESULT_MAX_RECORDS ? mx->count : DNS_RESULT_MAX_RECORDS;
    crypto_random(keys, n * sizeof keys[0]);
    size_t k = route_order_mx(mx->mx, n, keys, order, ROUTE_MX_MAX);
    for (size_t i = 0; i < k && r->count < ROUTE_ADDRS_MAX; i++)
        add_host(r, mx->mx[order[i]].exchange, config->delivery_port, temp, why, why_len);
}

enum route_status route_lookup(const char *domain, struct route *r)
{
    struct dns_result *mx = NULL;
    bool temp = false;
    char why[200] = "";
    memset(r, 0, sizeof *r);
    if (config->smarthost_set)
        return smarthost(r);
    char alabel[SMTP_DOMAIN_MAX_BYTES + 1];
    const char *name = idna_alabel(domain, strlen(domain), alabel, sizeof alabel); /* SMTPUTF8: DNS knows A-labels */
    if (!name)
        return fail(r, ROUTE_PERMFAIL, "553 5.1.3 %s: not a valid internationalized domain", domain);
    domain = name;
    enum dns_status st = dns_lookup(domain, DNS_TYPE_MX, 0, &mx);
    r->names_secure = mx && mx->secure; /* a validated MX RRset, or its validated absence (implicit MX) */
    if (st == DNS_OK && mx->null_mx) {
        fail(r, ROUTE_PERMFAIL, "556 5.1.10 %s does not accept mail (null MX, RFC 7505)", domain);
    } else if (st == DNS_OK) {
        mx_hosts(r, mx, &temp, why, sizeof why);
    } else if (st == DNS_NODATA) {
        add_host(r, domain, config->delivery_port, &temp, why, sizeof why); /* implicit MX, RFC 5321 §5.1 */
    } else if (st == DNS_NXDOMAIN) {
        fail(r, ROUTE_PERMFAIL, "550 5.1.2 %s: no such domain (NXDOMAIN)", domain);
    } else {
        fail(r, ROUTE_TEMPFAIL, "451 4.4.3 MX lookup for %s failed: %s", domain, dns_status_name(st));
    }
    dns_result_free(mx);
    if (r->status != ROUTE_OK || r->count > 0)
        return r->status;
    if (temp)
        return fail(r, ROUTE_TEMPFAIL, "451 4.4.3 no address found for the mail exchangers of %s (%s)", domain, why);
    if (r->denied_count)
        return fail(r, ROUTE_PERMFAIL, "550 5.4.4 %s: every address of its mail exchangers is in "
                    "MRS_DELIVERY_DENY_NETS, never connected to: %s", domain, r->denied);
    return fail(r, ROUTE_PERMFAIL, "550 5.4.4 %s: no mail exchanger with an address (%s)", domain,
                st == DNS_NODATA ? "no MX, A or AAAA record" : "MX hosts without A or AAAA records");
}
