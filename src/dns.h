/*
 * dns — the relay's own stub resolver: UDP with TCP fallback, several
 * servers with failover, per-try timeout and total deadline, and one cache
 * shared by every thread (RFC 1035, 2308, 5452, 6891, 7766).
 *
 * Names are always absolute: no search list, no ndots (a Kubernetes
 * resolv.conf must not turn "mycorp.se" into "mycorp.se.svc.cluster.local").
 * Servers come from MRS_DNS_SERVERS, else the nameserver lines of
 * /etc/resolv.conf (IPv4 and IPv6), else 127.0.0.1 and ::1.
 *
 * Calls: dns_wire, crypto, config, log, stats.  Thread-safe: lookups run
 * concurrently; identical misses in flight at the same time share one query.
 * Packet building and parsing live in dns_wire.h (included here: the result
 * type is defined there).
 */
#ifndef MRS_DNS_H
#define MRS_DNS_H

#include "dns_wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_SERVERS_MAX 8          /* as CONFIG_DNS_SERVERS_MAX */
#define DNS_UDP_RECV_BYTES 4096    /* larger datagrams are treated as truncated */
#define DNS_TRIES_PER_SERVER 3     /* tries per server within one deadline */
#define DNS_CACHE_MAX_BYTES (64u * 1024 * 1024) /* besides MRS_DNS_CACHE_ENTRIES */

/* dns_lookup flags */
#define DNS_FRESH 0x1u  /* skip the cache: ask the servers (the answer still refreshes it) */

/*
 * dns_init — choose the servers (see above), size the cache from
 * MRS_DNS_CACHE_ENTRIES and take timeouts from MRS_DNS_TIMEOUT and
 * MRS_DNS_DEADLINE (built-in defaults when config_load() was not called).
 * Idempotent and thread-safe; dns_lookup() calls it when nobody did.
 * Returns 0, or -1 when the process has no randomness (crypto_init).
 */
int dns_init(void);

/* dns_shutdown — empty the cache and forget the servers.  No lookup may be
 * running; a later dns_init() or dns_lookup() starts afresh. */
void dns_shutdown(void);

/*
 * dns_lookup — the records of `type` (DNS_TYPE_A, _AAAA, _MX, _TXT or _TLSA) for
 * `name` (presentation form, trailing dot optional, always absolute).
 *
 * CNAMEs are followed (at most DNS_CNAME_MAX_HOPS in all): the records are
 * those at the end of the chain.  Answers come from the cache while their
 * TTL lasts (positive ones at most DNS_TTL_MAX_S, negative ones as RFC 2308
 * §5 says, at most DNS_NEG_TTL_MAX_S); temporary failures are not cached.
 * With MRS_DANE=on every query carries the DO bit and result->secure is
 * the server's AD bit (kept with the cached answer, so an insecure answer
 * never turns secure).  With DNS_FRESH the cache is not read (an
 * identical query already in flight is still joined: its answer is as
 * fresh).  The whole lookup,
 * queries, TCP fallback and failover included, ends by MRS_DNS_DEADLINE.
 *
 * Returns the status.  *out receives a result (one reference: release it
 * with dns_result_free()) whose status is the same; it is NULL only with
 * DNS_ERROR, when the name or type is invalid or memory ran out.  The result
 * is shared with the cache and other threads: never modify it.
 */
enum dns_status dns_lookup(const char *name, uint16_t type, unsigned flags,
                           struct dns_result **out);

/* dns_now_ms — the monotonic clock of dns_result.received_ms, in ms. */
int64_t dns_now_ms(void);

/* dns_result_age_ms — milliseconds since r's answer arrived from a server
 * (0 for one just asked; larger when it came from the cache). */
int64_t dns_result_age_ms(const struct dns_result *r);

/* dns_servers — the servers in use, in order of preference, as text
 * ("127.0.0.1:53", "[::1]:53") into out; returns how many (at most max). */
int dns_servers(char out[][DNS_SERVER_TEXT_BYTES], int max);

/*
 * dns_parse_resolv_conf — the `nameserver` addresses of resolv.conf text
 * (IPv4, IPv6 with an optional %scope), port 53, in file order, into
 * out/lens; other lines (search, options ndots…) are ignored on purpose.
 * Pure.  Returns how many were stored (at most max).
 */
int dns_parse_resolv_conf(const char *text, size_t len, struct sockaddr_storage *out,
                          socklen_t *lens, int max);

/* Counters (monotonic since start; read without locks).  The /metrics
 * counters mrs_dns_queries_total (= queries_sent), mrs_dns_cache_hits_total
 * (= cache_hits) and mrs_dns_failures_total (= failures) of stats.h are
 * incremented alongside. */
struct dns_stats {
    uint64_t lookups;       /* dns_lookup() calls */
    uint64_t cache_hits;    /* answered from the cache */
    uint64_t coalesced;     /* answered by joining an identical query in flight */
    uint64_t queries_sent;  /* queries sent to servers: UDP and TCP */
    uint64_t tcp_queries;   /* of which over TCP (after TC) */
    uint64_t failures;      /* lookups that ended in a temporary failure */
};

/* dns_stats_get — a snapshot of the counters. */
void dns_stats_get(struct dns_stats *out);

#endif
