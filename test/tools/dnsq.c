/*
 * dnsq — drive the resolver (src/dns.c) and the policy from the command
 * line, for integration tests and measurements.  Configuration comes from
 * the MRS_* variables as in mrs itself (MRS_DNS_SERVERS, MRS_DNS_TIMEOUT…).
 * Operations run in order in one process, so they share the cache:
 *
 *   TYPE:NAME            look up (TYPE: A AAAA MX TXT), print the result
 *   fresh:TYPE:NAME      the same, bypassing the cache (DNS_FRESH)
 *   par:N:TYPE:NAME      N threads look the name up at the same moment
 *   time:N:TYPE:NAME     N lookups one after the other: latency min/median/max
 *   policy:USER:DOMAIN   policy_check_domain(), print the verdict
 *   sleep:MS             wait
 *   stats                print the resolver's counters
 *
 * Exit 0, or 2 on a usage error.
 */
#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "log.h"
#include "policy.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAR_MAX 256
#define TIME_MAX 10000

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int type_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"A", DNS_TYPE_A}, {"AAAA", DNS_TYPE_AAAA}, {"MX", DNS_TYPE_MX}, {"TXT", DNS_TYPE_TXT}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strlen(types[i].name) == n && strncmp(types[i].name, s, n) == 0)
            return types[i].type;
    }
    return -1;
}

/* split "TYPE:NAME" */
static int parse_query(const char *s, int *type, const char **name)
{
    const char *colon = strchr(s, ':');
    if (!colon || (*type = type_of(s, (size_t)(colon - s))) < 0)
        return -1;
    *name = colon + 1;
    return 0;
}

static void print_result(const char *name, int type, enum dns_status st, const struct dns_result *r)
{
    char ip[INET6_ADDRSTRLEN];
    printf("lookup %s %d status=%s", name, type, dns_status_name(st));
    if (!r) {
        printf("\n");
        return;
    }
    printf(" count=%zu ttl=%u age_ms=%lld server=%s tcp=%d canonical=%s null_mx=%d\n", r->count,
           r->ttl, (long long)dns_result_age_ms(r), r->server, r->tcp, r->canonical, r->null_mx);
    for (size_t i = 0; i < r->count; i++) {
        if (r->txt)
            printf("  txt \"%s\" len=%zu\n", r->txt[i].data, r->txt[i].len);
        else if (r->mx)
            printf("  mx %u %s\n", r->mx[i].preference, r->mx[i].exchange);
        else if (r->addr && r->addr[i].family == AF_INET)
            printf("  a %s\n", inet_ntop(AF_INET, &r->addr[i].u.in.sin_addr, ip, sizeof ip));
        else if (r->addr)
            printf("  aaaa %s\n", inet_ntop(AF_INET6, &r->addr[i].u.in6.sin6_addr, ip, sizeof ip));
    }
}

static void op_lookup(const char *spec, unsigned flags)
{
    int type;
    const char *name;
    struct dns_result *r = NULL;
    if (parse_query(spec, &type, &name) < 0) {
        printf("bad query %s\n", spec);
        return;
    }
    enum dns_status st = dns_lookup(name, (uint16_t)type, flags, &r);
    print_result(name, type, st, r);
    dns_result_free(r);
}

struct par_arg {
    pthread_barrier_t *start;
    const char *name;
    int type;
    enum dns_status status;
    int64_t us;
};

static void *par_thread(void *p)
{
    struct par_arg *a = p;
    struct dns_result *r = NULL;
    pthread_barrier_wait(a->start);
    int64_t t0 = now_us();
    a->status = dns_lookup(a->name, (uint16_t)a->type, 0, &r);
    a->us = now_us() - t0;
    dns_result_free(r);
    return NULL;
}

static void op_par(const char *spec)
{
    char *end;
    long n = strtol(spec, &end, 10);
    int type;
    const char *name;
    if (n < 1 || n > PAR_MAX || *end != ':' || parse_query(end + 1, &type, &name) < 0) {
        printf("bad par %s\n", spec);
        return;
    }
    struct par_arg *args = calloc((size_t)n, sizeof *args);
    pthread_t *tids = calloc((size_t)n, sizeof *tids);
    pthread_barrier_t start;
    struct dns_stats before, after;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    dns_stats_get(&before);
    for (long i = 0; i < n; i++) {
        args[i] = (struct par_arg){&start, name, type, DNS_ERROR, 0};
        pthread_create(&tids[i], NULL, par_thread, &args[i]);
    }
    int ok = 0;
    int64_t max_us = 0;
    for (long i = 0; i < n; i++) {
        pthread_join(tids[i], NULL);
        ok += args[i].status == DNS_OK;
        max_us = args[i].us > max_us ? args[i].us : max_us;
    }
    dns_stats_get(&after);
    printf("par n=%ld ok=%d queries_sent=%llu coalesced=%llu cache_hits=%llu max_us=%lld\n", n, ok,
           (unsigned long long)(after.queries_sent - before.queries_sent),
           (unsigned long long)(after.coalesced - before.coalesced),
           (unsigned long long)(after.cache_hits - before.cache_hits), (long long)max_us);
    pthread_barrier_destroy(&start);
    free(args);
    free(tids);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void op_time(const char *spec, unsigned flags)
{
    char *end;
    long n = strtol(spec, &end, 10);
    int type;
    const char *name;
    if (n < 1 || n > TIME_MAX || *end != ':' || parse_query(end + 1, &type, &name) < 0) {
        printf("bad time %s\n", spec);
        return;
    }
    int64_t *us = calloc((size_t)n, sizeof *us);
    for (long i = 0; i < n; i++) {
        struct dns_result *r = NULL;
        int64_t t0 = now_us();
        dns_lookup(name, (uint16_t)type, flags, &r);
        us[i] = now_us() - t0;
        dns_result_free(r);
    }
    qsort(us, (size_t)n, sizeof *us, cmp_i64);
    printf("time n=%ld %s min_us=%lld median_us=%lld max_us=%lld\n", n,
           flags & DNS_FRESH ? "fresh" : "cached", (long long)us[0], (long long)us[n / 2],
           (long long)us[n - 1]);
    free(us);
}

static void op_policy(const char *spec)
{
    char user[256];
    const char *colon = strrchr(spec, ':');
    struct policy_verdict v;
    if (!colon || (size_t)(colon - spec) >= sizeof user) {
        printf("bad policy %s\n", spec);
        return;
    }
    memcpy(user, spec, (size_t)(colon - spec));
    user[colon - spec] = '\0';
    policy_check_domain(user, colon + 1, &v);
    printf("policy %d %s reason=%s text=%s\n", v.code, v.enhanced, v.reason, v.text);
}

static void op_stats(void)
{
    struct dns_stats s;
    dns_stats_get(&s);
    printf("stats lookups=%llu cache_hits=%llu coalesced=%llu queries_sent=%llu tcp_queries=%llu "
           "failures=%llu\n",
           (unsigned long long)s.lookups, (unsigned long long)s.cache_hits,
           (unsigned long long)s.coalesced, (unsigned long long)s.queries_sent,
           (unsigned long long)s.tcp_queries, (unsigned long long)s.failures);
}

int main(int argc, char **argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    if (crypto_init() < 0 || config_load(err, sizeof err) < 0) {
        fprintf(stderr, "dnsq: %s\n", err);
        return 2;
    }
    log_init(config->log_format == CONFIG_LOG_JSON, (enum log_level)config->log_level);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "fresh:", 6) == 0)
            op_lookup(a + 6, DNS_FRESH);
        else if (strncmp(a, "par:", 4) == 0)
            op_par(a + 4);
        else if (strncmp(a, "time:", 5) == 0)
            op_time(a + 5, 0);
        else if (strncmp(a, "timefresh:", 10) == 0)
            op_time(a + 10, DNS_FRESH);
        else if (strncmp(a, "policy:", 7) == 0)
            op_policy(a + 7);
        else if (strncmp(a, "sleep:", 6) == 0)
            nanosleep(&(struct timespec){strtol(a + 6, NULL, 10) / 1000,
                                         strtol(a + 6, NULL, 10) % 1000 * 1000000},
                      NULL);
        else if (strcmp(a, "stats") == 0)
            op_stats();
        else if (strchr(a, ':'))
            op_lookup(a, 0);
        else {
            fprintf(stderr, "dnsq: unknown operation '%s'\n", a);
            return 2;
        }
    }
    dns_shutdown();
    config_free();
    return 0;
}
