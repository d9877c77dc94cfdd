/*
 * dns — resolver I/O and the shared cache (see dns.h for the contract).
 *
 * One lookup: the cache (unless DNS_FRESH) → an identical query already in
 * flight (wait for its answer) → the servers.  Every try uses a new socket
 * bound to a random port and a new random ID; a reply must come from the
 * server asked and answer the question (RFC 5452 §9.1), anything else is
 * ignored.  TC → the same question over TCP (RFC 7766).  SERVFAIL, REFUSED,
 * malformed replies and silence move on to the next server until the
 * deadline.  A CNAME chain that leaves the server's data is followed by
 * looking its end up (through the cache, counted against the hop cap).
 *
 * Locking: one mutex guards the cache, the in-flight table and the init
 * state, and is never held during I/O.  Results are immutable and
 * reference-counted, so a cached answer is handed out without a copy.
 *
 * Calls: dns_wire, crypto, config, log, stats (the /metrics counters
 * mrs_dns_queries_total, _cache_hits_total, _failures_total).
 */
#include "dns.h"

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RESOLV_CONF_PATH "/etc/resolv.conf"
#define RESOLV_CONF_MAX_BYTES 65536
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_DEADLINE_MS 10000
#define DEFAULT_CACHE_ENTRIES 10000
#define CACHE_MAX_BUCKETS (1u << 20)
#define FLIGHT_BUCKETS 64
#define PORT_TRIES 8          /* random source ports tried before letting the kernel pick */
#define FIRST_PORT 1024

_Static_assert(DNS_SERVERS_MAX >= CONFIG_DNS_SERVERS_MAX, "room for every MRS_DNS_SERVERS entry");

struct server {
    struct sockaddr_storage addr;
    socklen_t len;
    char text[DNS_SERVER_TEXT_BYTES];
};

/* What cache entries and flights are keyed by: the type and the wire name. */
struct key {
    uint64_t hash;
    uint16_t type;
    size_t len;
    uint8_t name[DNS_NAME_WIRE_MAX_BYTES];
};

struct entry {
    struct entry *chain;          /* next in the bucket */
    struct entry *newer, *older;  /* LRU list */
    struct key key;
    int64_t expires_ms;
    size_t bytes;
    struct dns_result *result;    /* one reference */
};

/* An identical-question query in progress: late askers wait for it. */
struct flight {
    struct flight *chain;
    struct key key;
    pthread_cond_t cond;
    bool done;
    int refs;                     /* the asker and each waiter; under the lock */
    struct dns_result *result;    /* one reference, once done */
};

/* One try's buffers, on the heap: thread stacks are small. */
struct exchange {
    struct dns_question q;
    uint8_t query[2 + DNS_QUERY_MAX_BYTES]; /* TCP length prefix, then the query */
    size_t query_len;
    uint8_t reply[DNS_UDP_RECV_BYTES];
};

enum udp_outcome { UDP_REPLY, UDP_TRUNCATED, UDP_SILENT, UDP_UNREACHABLE };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool ready;
static struct {
    struct server servers[DNS_SERVERS_MAX];
    int server_count;
    int64_t timeout_ms, deadline_ms;
    uint8_t hash_key[CRYPTO_KEY_BYTES];
    struct entry **buckets;
    size_t bucket_count;          /* a power of two; 0: no cache */
    size_t max_entries, entries, bytes;
    struct entry *newest, *oldest;
    struct flight *flights[FLIGHT_BUCKETS];
} st;

static atomic_uint_fast64_t n_lookups, n_hits, n_coalesced, n_sent, n_tcp, n_failures;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* config_loaded — config_load() ran (its deadline is never 0 then). */
static bool config_loaded(void)
{
    return config && config->dns_deadline_ms > 0;
}

/* ---- servers ------------------------------------------------------------ */

/* parse_nameserver — one resolv.conf address ("192.0.2.1", "2001:db8::1",
 * "fe80::1%eth0") with port 53 into *out. */
static int parse_nameserver(const char *s, size_t n, struct sockaddr_storage *out, socklen_t *len)
{
    char ip[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (n == 0 || n >= sizeof ip)
        return -1;
    memcpy(ip, s, n);
    ip[n] = '\0';
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(53);
        *len = sizeof *v4;
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    char *scope = strchr(ip, '%');
    if (scope)
        *scope++ = '\0';
    if (inet_pton(AF_INET6, ip, &v6->sin6_addr) != 1)
        return -1;
    if (scope) {
        char *end;
        unsigned long id = strtoul(scope, &end, 10);
        v6->sin6_scope_id = (*scope && !*end) ? (uint32_t)id : if_nametoindex(scope);
        if (v6->sin6_scope_id == 0)
            return -1;
    }
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(53);
    *len = sizeof *v6;
    return 0;
}

int dns_parse_resolv_conf(const char *text, size_t len, struct sockaddr_storage *out,
                          socklen_t *lens, int max)
{
    static const char kw[] = "nameserver";
    int count = 0;
    size_t i = 0;
    while (i < len && count < max) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n')
            eol++;
        size_t p = i;
        while (p < eol && (text[p] == ' ' || text[p] == '\t'))
            p++;
        if (eol - p > sizeof kw && memcmp(text + p, kw, sizeof kw - 1) == 0 &&
            (text[p + sizeof kw - 1] == ' ' || text[p + sizeof kw - 1] == '\t')) {
            p += sizeof kw - 1;
            while (p < eol && (text[p] == ' ' || text[p] == '\t'))
                p++;
            size_t a = p;
            while (p < eol && text[p] != ' ' && text[p] != '\t' && text[p] != '\r' &&
                   text[p] != '#' && text[p] != ';')
                p++;
            if (parse_nameserver(text + a, p - a, &out[count], &lens[count]) == 0)
                count++;
        }
        i = eol + 1;
    }
    return count;
}

static void add_server(const struct sockaddr_storage *a, socklen_t len)
{
    struct server *s = &st.servers[st.server_count++];
    memcpy(&s->addr, a, len);
    s->len = len;
    config_format_addr((const struct sockaddr *)&s->addr, s->text, sizeof s->text);
}

/* choose_servers — MRS_DNS_SERVERS, else resolv.conf, else localhost. */
static void choose_servers(void)
{
    struct sockaddr_storage addrs[DNS_SERVERS_MAX];
    socklen_t lens[DNS_SERVERS_MAX];
    int n = 0;
    st.server_count = 0;
    if (config_loaded() && config->dns_server_count > 0) {
        for (int i = 0; i < config->dns_server_count && i < DNS_SERVERS_MAX; i++)
            add_server(&config->dns_servers[i], config->dns_server_lens[i]);
        return;
    }
    size_t len;
    char *text = config_read_file(RESOLV_CONF_PATH, RESOLV_CONF_MAX_BYTES, &len);
    if (text) {
        n = dns_parse_resolv_conf(text, len, addrs, lens, DNS_SERVERS_MAX);
        free(text);
    }
    if (n == 0) /* resolv.conf(5): without nameserver lines, the local host */
        n = dns_parse_resolv_conf("nameserver 127.0.0.1\nnameserver ::1\n", 36, addrs, lens, 2);
    for (int i = 0; i < n; i++)
        add_server(&addrs[i], lens[i]);
}

/* ---- init ----------------------------------------------------------------- */

static void init_locked(void)
{
    bool loaded = config_loaded();
    int64_t entries = loaded ? config->dns_cache_entries : DEFAULT_CACHE_ENTRIES;
    st.timeout_ms = loaded ? config->dns_timeout_ms : DEFAULT_TIMEOUT_MS;
    st.deadline_ms = loaded ? config->dns_deadline_ms : DEFAULT_DEADLINE_MS;
    choose_servers();
    crypto_random(st.hash_key, sizeof st.hash_key);
    st.max_entries = (size_t)entries;
    st.bucket_count = 0;
    if (entries > 0) {
        size_t b = 16;
        while (b < st.max_entries && b < CACHE_MAX_BUCKETS)
            b <<= 1;
        st.buckets = calloc(b, sizeof *st.buckets);
        if (st.buckets)
            st.bucket_count = b;
        else
            log_warn("dns", NULL, "no memory for a DNS cache of %lld entries: caching off",
                     (long long)entries);
    }
    for (int i = 0; i < st.server_count; i++)
        log_debug("dns", NULL, "server %d: %s", i + 1, st.servers[i].text);
}

int dns_init(void)
{
    if (atomic_load(&ready))
        return 0;
    if (crypto_init() < 0)
        return -1;
    pthread_mutex_lock(&lock);
    if (!atomic_load(&ready)) {
        init_locked();
        atomic_store(&ready, true);
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

int dns_servers(char out[][DNS_SERVER_TEXT_BYTES], int max)
{
    int n = 0;
    if (dns_init() < 0)
        return 0;
    for (; n < st.server_count && n < max; n++)
        memcpy(out[n], st.servers[n].text, DNS_SERVER_TEXT_BYTES);
    return n;
}

/* ---- cache (all under the lock) ------------------------------------------ */

static void key_make(struct key *k, uint16_t type)
{
    uint8_t buf[2 + DNS_NAME_WIRE_MAX_BYTES], mac[CRYPTO_SHA256_BYTES];
    buf[0] = (uint8_t)(type >> 8);
    buf[1] = (uint8_t)type;
    memcpy(buf + 2, k->name, k->len);
    /* keyed: names come from clients, who must not pick colliding ones */
    crypto_keyed_hash(st.hash_key, buf, 2 + k->len, mac);
    memcpy(&k->hash, mac, sizeof k->hash);
    k->type = type;
}

static bool key_equal(const struct key *a, const struct key *b)
{
    return a->hash == b->hash && a->type == b->type && a->len == b->len &&
           memcmp(a->name, b->name, a->len) == 0;
}

static void lru_unlink(struct entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        st.newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        st.oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(struct entry *e)
{
    e->older = st.newest;
    e->newer = NULL;
    if (st.newest)
        st.newest->newer = e;
    st.newest = e;
    if (!st.oldest)
        st.oldest = e;
}

static void cache_remove(struct entry *e)
{
    struct entry **pp = &st.buckets[e->key.hash & (st.bucket_count - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(e);
    st.entries--;
    st.bytes -= e->bytes;
    dns_result_free(e->result);
    free(e);
}

static struct entry *cache_find(const struct key *k)
{
    if (st.bucket_count == 0)
        return NULL;
    struct entry *e = st.buckets[k->hash & (st.bucket_count - 1)];
    while (e && !key_equal(&e->key, k))
        e = e->chain;
    return e;
}

/* cache_get — a live entry's result (no reference taken), or NULL. */
static struct dns_result *cache_get(const struct key *k, int64_t now)
{
    struct entry *e = cache_find(k);
    if (!e)
        return NULL;
    if (now >= e->expires_ms) {
        cache_remove(e);
        return NULL;
    }
    lru_unlink(e);
    lru_push(e);
    return e->result;
}

/* cache_put — keep r (a permanent answer with a TTL) for its TTL, evicting
 * the least recently used entries beyond the caps. */
static void cache_put(const struct key *k, struct dns_result *r)
{
    if (st.bucket_count == 0 || !r || !dns_status_permanent(r->status) || r->ttl == 0)
        return;
    size_t bytes = dns_result_bytes(r);
    if (bytes > DNS_CACHE_MAX_BYTES / 16)
        return; /* one huge answer must not flush everything else */
    struct entry *old = cache_find(k);
    if (old)
        cache_remove(old);
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->key = *k;
    e->expires_ms = r->received_ms + (int64_t)r->ttl * 1000;
    e->bytes = bytes;
    e->result = dns_result_ref(r);
    struct entry **b = &st.buckets[k->hash & (st.bucket_count - 1)];
    e->chain = *b;
    *b = e;
    lru_push(e);
    st.entries++;
    st.bytes += bytes;
    while (st.oldest != e && (st.entries > st.max_entries || st.bytes > DNS_CACHE_MAX_BYTES))
        cache_remove(st.oldest);
}

void dns_shutdown(void)
{
    pthread_mutex_lock(&lock);
    while (st.oldest)
        cache_remove(st.oldest);
    free(st.buckets);
    st.buckets = NULL;
    st.bucket_count = 0;
    st.server_count = 0;
    atomic_store(&ready, false);
    pthread_mutex_unlock(&lock);
}

/* ---- flights (under the lock) --------------------------------------------- */

static struct flight **flight_bucket(const struct key *k)
{
    return &st.flights[k->hash % FLIGHT_BUCKETS];
}

static struct flight *flight_find(const struct key *k)
{
    struct flight *f = *flight_bucket(k);
    while (f && !key_equal(&f->key, k))
        f = f->chain;
    return f;
}

static struct flight *flight_start(const struct key *k)
{
    pthread_condattr_t attr;
    struct flight *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&f->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(f);
        return NULL;
    }
    f->key = *k;
    f->refs = 1;
    f->chain = *flight_bucket(k);
    *flight_bucket(k) = f;
    return f;
}

static void flight_release(struct flight *f)
{
    if (--f->refs > 0)
        return;
    pthread_cond_destroy(&f->cond);
    dns_result_free(f->result);
    free(f);
}

/* flight_finish — publish the asker's answer, wake the waiters. */
static void flight_finish(struct flight *f, struct dns_result *r)
{
    struct flight **pp = flight_bucket(&f->key);
    while (*pp != f)
        pp = &(*pp)->chain;
    *pp = f->chain;
    f->result = dns_result_ref(r);
    f->done = true;
    pthread_cond_broadcast(&f->cond);
    flight_release(f);
}

/* flight_wait — the flight's answer (a new reference), or NULL when our
 * own deadline came first. */
static struct dns_result *flight_wait(struct flight *f, int64_t deadline)
{
    struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = deadline % 1000 * 1000000};
    f->refs++;
    while (!f->done) {
        if (pthread_cond_timedwait(&f->cond, &lock, &ts) == ETIMEDOUT)
            break;
    }
    struct dns_result *r = f->done ? dns_result_ref(f->result) : NULL;
    flight_release(f);
    return r;
}

/* ---- sockets ---------------------------------------------------------------- */

/* wait_fd — 1 when fd is ready for `events` before `end`, 0 at the end. */
static int wait_fd(int fd, short events, int64_t end)
{
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* bind_random_port — a random source port (RFC 5452 §9.2); when none of a
 * few tries is free, connect() lets the kernel pick. */
static void bind_random_port(int fd, int family)
{
    for (int i = 0; i < PORT_TRIES; i++) {
        struct sockaddr_storage a;
        socklen_t len;
        uint16_t port = (uint16_t)(FIRST_PORT + crypto_random_uniform(65536 - FIRST_PORT));
        memset(&a, 0, sizeof a);
        if (family == AF_INET) {
            struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            len = sizeof *v4;
        } else {
            struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            len = sizeof *v6;
        }
        if (bind(fd, (struct sockaddr *)&a, len) == 0 || (errno != EADDRINUSE && errno != EACCES))
            return;
    }
}

static bool same_addr(const struct sockaddr_storage *a, const struct server *s)
{
    const struct sockaddr_storage *b = &s->addr;
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

/* udp_exchange — send x's query to s and wait for a reply to it until end;
 * replies from elsewhere or to another question are ignored (RFC 5452). */
static enum udp_outcome udp_exchange(const struct server *s, struct exchange *x, int64_t end,
                                     size_t *reply_len)
{
    enum udp_outcome out = UDP_SILENT;
    int fd = socket(s->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return UDP_UNREACHABLE;
    bind_random_port(fd, s->addr.ss_family);
    atomic_fetch_add(&n_sent, 1);
    STATS_INC(dns_queries_total);
    if (connect(fd, (const struct sockaddr *)&s->addr, s->len) < 0 ||
        send(fd, x->query + 2, x->query_len, 0) < 0) {
        close(fd);
        return UDP_UNREACHABLE;
    }
    while (wait_fd(fd, POLLIN, end) > 0) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(fd, x->reply, sizeof x->reply, MSG_TRUNC, (struct sockaddr *)&from,
                             &from_len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            out = UDP_UNREACHABLE; /* ICMP port unreachable and the like */
            break;
        }
        if (!same_addr(&from, s))
            continue;
        size_t got = (size_t)n < sizeof x->reply ? (size_t)n : sizeof x->reply;
        enum dns_wire_check c = dns_wire_check_reply(x->reply, got, &x->q);
        if (c == DNS_WIRE_MISMATCH) {
            log_debug("dns", NULL, "ignored a datagram from %s that does not answer our query",
                      s->text);
            continue;
        }
        *reply_len = got;
        out = (c == DNS_WIRE_TRUNCATED || (size_t)n > got) ? UDP_TRUNCATED : UDP_REPLY;
        break;
    }
    close(fd);
    return out;
}

static int io_all(int fd, uint8_t *buf, size_t n, bool writing, int64_t end)
{
    size_t done = 0;
    while (done < n) {
        if (wait_fd(fd, writing ? POLLOUT : POLLIN, end) <= 0)
            return -1;
        ssize_t k = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL)
                            : recv(fd, buf + done, n - done, 0);
        if (k == 0 && !writing)
            return -1;
        if (k < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (k > 0)
            done += (size_t)k;
    }
    return 0;
}

/* tcp_exchange — x's query over TCP (RFC 7766, 2-byte length prefix); the
 * reply in a new heap buffer *reply of *reply_len bytes.  0 or -1. */
static int tcp_exchange(const struct server *s, struct exchange *x, int64_t end, uint8_t **reply,
                        size_t *reply_len)
{
    uint8_t prefix[2];
    int err = 0;
    socklen_t err_len = sizeof err;
    *reply = NULL;
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    atomic_fetch_add(&n_sent, 1);
    atomic_fetch_add(&n_tcp, 1);
    STATS_INC(dns_queries_total);
    if (connect(fd, (const struct sockaddr *)&s->addr, s->len) < 0 && errno != EINPROGRESS)
        goto fail;
    if (wait_fd(fd, POLLOUT, end) <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) < 0 ||
        err != 0)
        goto fail;
    x->query[0] = (uint8_t)(x->query_len >> 8);
    x->query[1] = (uint8_t)x->query_len;
    if (io_all(fd, x->query, x->query_len + 2, true, end) < 0 ||
        io_all(fd, prefix, 2, false, end) < 0)
        goto fail;
    *reply_len = (size_t)prefix[0] << 8 | prefix[1];
    *reply = malloc(*reply_len ? *reply_len : 1);
    if (!*reply || io_all(fd, *reply, *reply_len, false, end) < 0)
        goto fail;
    close(fd);
    return 0;
fail:
    free(*reply);
    *reply = NULL;
    close(fd);
    return -1;
}

/* ---- asking the servers ------------------------------------------------------ */

static struct dns_result *status_result(enum dns_status s, const struct exchange *x)
{
    char name[DNS_NAME_TEXT_MAX_BYTES];
    if (dns_name_to_text(x->q.name, x->q.name_len, name, sizeof name) < 0)
        return NULL;
    return dns_result_new(s, x->q.type, name);
}

/* ask_one — one try at server s: UDP until `end`, then TCP when truncated
 * (a try of its own, within the deadline).  A new result (NULL: out of
 * memory). */
static struct dns_result *ask_one(const struct server *s, struct exchange *x, int hops,
                                  int64_t end, int64_t deadline)
{
    struct dns_result *r = NULL;
    size_t len = 0;
    crypto_random(&x->q.id, sizeof x->q.id);
    if (dns_wire_build_query(&x->q, x->query + 2, sizeof x->query - 2, &x->query_len) < 0)
        return status_result(DNS_ERROR, x);
    enum udp_outcome u = udp_exchange(s, x, end, &len);
    if (u == UDP_REPLY) {
        dns_wire_parse_reply(x->reply, len, &x->q, hops, &r);
    } else if (u == UDP_TRUNCATED) {
        uint8_t *big;
        int64_t tcp_end = now_ms() + st.timeout_ms;
        if (tcp_end > deadline)
            tcp_end = deadline;
        if (tcp_exchange(s, x, tcp_end, &big, &len) < 0)
            return status_result(DNS_TIMEOUT, x);
        if (dns_wire_check_reply(big, len, &x->q) == DNS_WIRE_MISMATCH)
            r = status_result(DNS_MALFORMED, x);
        else
            dns_wire_parse_reply(big, len, &x->q, hops, &r);
        if (r)
            r->tcp = true;
        free(big);
    } else {
        r = status_result(DNS_TIMEOUT, x);
    }
    return r;
}

/* ask_servers — the servers in order of preference, each at most
 * DNS_TRIES_PER_SERVER times, until a permanent answer or the deadline. */
static struct dns_result *ask_servers(const struct key *k, int hops, int64_t deadline)
{
    struct exchange *x = malloc(sizeof *x);
    struct dns_result *last = NULL;
    if (!x)
        return NULL;
    x->q.type = k->type;
    /* MRS_DANE=on: ask with DO so that a validating server reports AD; the
     * servers are the configured ones (config.c requires MRS_DNS_SERVERS) */
    x->q.dnssec = config_loaded() && config->dane;
    x->q.name_len = k->len;
    memcpy(x->q.name, k->name, k->len);
    for (int i = 0; i < st.server_count * DNS_TRIES_PER_SERVER; i++) {
        const struct server *s = &st.servers[i % st.server_count];
        int64_t start = now_ms();
        if (start >= deadline)
            break;
        int64_t end = start + st.timeout_ms < deadline ? start + st.timeout_ms : deadline;
        struct dns_result *r = ask_one(s, x, hops, end, deadline);
        if (!r)
            break;
        r->received_ms = now_ms();
        memcpy(r->server, s->text, sizeof r->server);
        log_debug("dns", NULL, "%s type %u from %s%s: %s in %lld ms", r->name, (unsigned)k->type,
                  s->text, r->tcp ? " over TCP" : "", dns_status_name(r->status),
                  (long long)(r->received_ms - start));
        dns_result_free(last);
        last = r;
        if (dns_status_permanent(r->status))
            break;
    }
    if (!last && (last = status_result(DNS_TIMEOUT, x)) != NULL) {
        last->received_ms = now_ms();
        if (st.server_count > 0)
            memcpy(last->server, st.servers[0].text, sizeof last->server);
    }
    free(x);
    return last;
}

static enum dns_status lookup_key(const struct key *k, const char *name, unsigned flags, int hops,
                                  int64_t deadline, struct dns_result **out);

/* resolve — ask the servers; when the CNAME chain leaves the reply, look
 * its end up and present that answer under the asked name. */
static struct dns_result *resolve(const struct key *k, const char *name, unsigned flags, int hops,
                                  int64_t deadline)
{
    struct dns_result *r = ask_servers(k, hops, deadline), *t = NULL;
    if (!r || !r->chase)
        return r;
    struct key tk;
    tk.len = r->chase_len;
    memcpy(tk.name, r->chase_wire, tk.len);
    key_make(&tk, k->type);
    lookup_key(&tk, r->canonical, flags, hops + r->cname_hops, deadline, &t);
    struct dns_result *a = t ? dns_result_alias(name, t, r->cname_hops + t->cname_hops, r->ttl) : NULL;
    if (a)
        a->secure = a->secure && r->secure; /* the chain's start is as secure as its weakest reply */
    dns_result_free(t);
    dns_result_free(r);
    return a;
}

/* lookup_key — the cache, a flight to join, or a new query of our own. */
static enum dns_status lookup_key(const struct key *k, const char *name, unsigned flags, int hops,
                                  int64_t deadline, struct dns_result **out)
{
    struct dns_result *r = NULL;
    if (hops > DNS_CNAME_MAX_HOPS) {
        *out = dns_result_new(DNS_MALFORMED, k->type, name);
        return *out ? DNS_MALFORMED : DNS_ERROR;
    }
    pthread_mutex_lock(&lock);
    if (!(flags & DNS_FRESH) && (r = dns_result_ref(cache_get(k, now_ms()))) != NULL) {
        pthread_mutex_unlock(&lock);
        atomic_fetch_add(&n_hits, 1);
        STATS_INC(dns_cache_hits_total);
        *out = r;
        return r->status;
    }
    /* A lookup inside a CNAME chain does not wait for a flight: that flight
     * may be this chain's own start (a loop), which only the hop cap ends. */
    struct flight *f = flight_find(k);
    if (f && hops == 0) {
        r = flight_wait(f, deadline);
        pthread_mutex_unlock(&lock);
        atomic_fetch_add(&n_coalesced, 1);
        if (!r && (r = dns_result_new(DNS_TIMEOUT, k->type, name)) != NULL)
            r->received_ms = now_ms();
        *out = r;
        return r ? r->status : DNS_ERROR;
    }
    f = f ? NULL : flight_start(k);
    pthread_mutex_unlock(&lock);
    r = resolve(k, name, flags, hops, deadline);
    pthread_mutex_lock(&lock);
    cache_put(k, r);
    if (f)
        flight_finish(f, r);
    pthread_mutex_unlock(&lock);
    *out = r;
    return r ? r->status : DNS_ERROR;
}

static bool type_supported(uint16_t type)
{
    return type == DNS_TYPE_A || type == DNS_TYPE_AAAA || type == DNS_TYPE_MX ||
           type == DNS_TYPE_TXT || type == DNS_TYPE_TLSA;
}

enum dns_status dns_lookup(const char *name, uint16_t type, unsigned flags,
                           struct dns_result **out)
{
    char text[DNS_NAME_TEXT_MAX_BYTES];
    struct key k;
    enum dns_status s = DNS_ERROR;
    *out = NULL;
    atomic_fetch_add(&n_lookups, 1);
    if (type_supported(type) && dns_init() == 0 && dns_name_from_text(name, k.name, &k.len) == 0 &&
        k.len > 1 && dns_name_to_text(k.name, k.len, text, sizeof text) == 0) {
        key_make(&k, type);
        s = lookup_key(&k, text, flags, 0, now_ms() + st.deadline_ms, out);
    }
    if (!dns_status_permanent(s)) {
        atomic_fetch_add(&n_failures, 1);
        STATS_INC(dns_failures_total);
    }
    return s;
}

int64_t dns_now_ms(void)
{
    return now_ms();
}

int64_t dns_result_age_ms(const struct dns_result *r)
{
    int64_t age = now_ms() - r->received_ms;
    return age > 0 ? age : 0;
}

void dns_stats_get(struct dns_stats *out)
{
    out->lookups = atomic_load(&n_lookups);
    out->cache_hits = atomic_load(&n_hits);
    out->coalesced = atomic_load(&n_coalesced);
    out->queries_sent = atomic_load(&n_sent);
    out->tcp_queries = atomic_load(&n_tcp);
    out->failures = atomic_load(&n_failures);
}
