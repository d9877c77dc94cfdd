/*
 * route — where the mail for one recipient domain goes (SPEC §5, RFC 5321
 * §5.1, RFC 7505): the MX records by preference, in random order among
 * equal preferences, then the A and AAAA addresses of each exchanger; no MX
 * → the domain itself (implicit MX); a null MX or a domain that does not
 * exist → a permanent failure; a temporary DNS failure → try later, never a
 * bounce.  With MRS_SMARTHOST every domain goes to that one host.
 *
 * The result is an ordered list of addresses (at most ROUTE_ADDRS_MAX, from
 * at most ROUTE_MX_MAX exchangers) that delivery tries in turn.  Exchanger
 * addresses inside MRS_DELIVERY_DENY_NETS (loopback, link-local, metadata
 * services…; SPEC §8.1) are left out: a domain left with none fails with
 * 5.4.4.  The smarthost is exempt.
 *
 * Calls dns, config, crypto (random order).  Thread-safe: no shared state.
 */
#ifndef MRS_ROUTE_H
#define MRS_ROUTE_H

#include "dns.h"
#include "smtp_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_MX_MAX 8            /* exchangers tried per domain */
#define ROUTE_ADDRS_PER_HOST 4    /* addresses tried per exchanger (A first, then AAAA) */
#define ROUTE_ADDRS_MAX 16        /* addresses tried per domain, in all */
#define ROUTE_ERROR_MAX_BYTES 300
#define ROUTE_DENIED_NAMED 4      /* denied addresses named in route.denied */

enum route_status {
    ROUTE_OK = 0,     /* targets holds at least one address */
    ROUTE_TEMPFAIL,   /* try again later: error is a 4xx-style text */
    ROUTE_PERMFAIL,   /* the domain cannot receive mail: error is a 5xx-style text */
};

struct route_target {
    struct dns_addr addr;                  /* port set */
    char host[SMTP_DOMAIN_MAX_BYTES + 1];  /* the exchanger's name: SNI, logs */
    char label[SMTP_DOMAIN_MAX_BYTES + 64];/* "host[address]:port" for logs and state */
    bool dnssec;                           /* host from a DNSSEC-secure MX RRset (or implicit MX with
                                            * a secure NODATA) and a secure address RRset: DANE applies */
};

struct route {
    enum route_status status;
    bool smarthost;
    bool names_secure;                     /* the MX answer was DNSSEC-secure (MRS_DANE=on) */
    char error[ROUTE_ERROR_MAX_BYTES];     /* "451 4.4.3 …" / "550 5.1.2 …" when not ROUTE_OK */
    size_t count;
    struct route_target targets[ROUTE_ADDRS_MAX];
    size_t denied_count;                   /* addresses left out: MRS_DELIVERY_DENY_NETS */
    char denied[200];                      /* the first ROUTE_DENIED_NAMED of them, "host[ip], …" */
};

/*
 * route_lookup — fill r (about 9 KiB: allocate it, do not put it on a
 * thread's stack) for mail to `domain`: the smarthost when configured, else
 * the domain's mail exchangers.  The status is also returned.
 */
enum route_status route_lookup(const char *domain, struct route *r);

/*
 * route_order_mx — pure: the order in which to try n MX records: by
 * preference, ties broken by keys[] (random numbers the caller draws), the
 * null exchanger "." left out.  Writes at most max indexes into order and
 * returns how many.
 */
size_t route_order_mx(const struct dns_mx *mx, size_t n, const uint32_t *keys, size_t *order, size_t max);

#endif
