/*
 * outpool — idle outbound sessions and kept TLS sessions (see outpool.h).
 *
 * Two small fixed tables under one mutex, searched linearly (at most 64
 * entries each, compared by their key text).  Closing a session (QUIT, a
 * reply awaited) is I/O: it happens after the lock is let go, on the
 * entries taken out under it.
 */
#include "outpool.h"

#include "config.h"
#include "crypto.h"
#include "dane.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct idle {
    char key[OUTPOOL_KEY_MAX_BYTES];
    struct smtp_client_session *s;     /* NULL: free entry */
    int64_t since;                     /* util_now_ms when parked */
};

struct kept {
    char key[OUTPOOL_KEY_MAX_BYTES];
    struct tls_session *s;             /* NULL: free entry */
    int64_t since;
};

#define OUTPOOL_REAP_QUIT_MS 1000 /* the reaper waits this long for each 221 */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;              /* CLOCK_MONOTONIC: the reaper's wake-up */
static struct idle idle[OUTPOOL_IDLE_MAX];
static struct kept kept[OUTPOOL_TLS_SESSIONS_MAX];
static bool running, stopping;
static pthread_t reaper_thread;
static int64_t reaper_wakes_ms;        /* when the waiting reaper looks next */

/* ---- the key ------------------------------------------------------------------ */

/* dane_digest — SHA-256 (hex) over the TLSA records a session was matched
 * against, or "" without DANE. */
static void dane_digest(const struct dane_set *d, char out[CRYPTO_SHA256_HEX_BYTES])
{
    out[0] = '\0';
    if (!d)
        return;
    struct crypto_sha256_state st;
    uint8_t h[CRYPTO_SHA256_BYTES];
    crypto_sha256_begin(&st);
    crypto_sha256_add(&st, d->host, strnlen(d->host, sizeof d->host));
    for (size_t i = 0; i < d->count; i++) {
        const struct dane_tlsa *t = &d->recs[i];
        uint8_t head[3 + sizeof(uint64_t)] = {t->usage, t->selector, t->mtype};
        uint64_t len = t->len;
        memcpy(head + 3, &len, sizeof len);
        crypto_sha256_add(&st, head, sizeof head);
        crypto_sha256_add(&st, t->data, t->len);
    }
    crypto_sha256_end(&st, h);
    crypto_sha256_hex(h, sizeof h, out);
}

void outpool_key(const struct smtp_client_job *cj, bool smarthost, struct outpool_key *k)
{
    static const struct outbound_tls_req none;
    const struct outbound_tls_req *r = cj->tls_req ? cj->tls_req : &none;
    char dane[CRYPTO_SHA256_HEX_BYTES];
    dane_digest(r->dane, dane);
    int n = snprintf(k->text, sizeof k->text, "%s|%s|%s|tls=%d|policy=%d,%d,%d,%d|name=%s|dane=%s|user=%s|ehlo=%s",
                     smarthost ? "smarthost" : "mx", cj->target->host, cj->target->label, (int)cj->tls,
                     (int)r->policy, r->tls_required, r->verify, r->check, r->verify_name ? r->verify_name : "",
                     dane, cj->user ? cj->user : "", config->hostname);
    if (n < 0 || (size_t)n >= sizeof k->text)
        k->text[0] = '\0'; /* cannot happen with bounded names: no reuse then */
    k->resumable = k->text[0] && cj->tls != SMTP_CLIENT_TLS_OFF && !r->dane && !r->verify && !r->check &&
                   (smarthost || r->policy == TLS_POLICY_OPPORTUNISTIC);
}

/* ---- idle sessions -------------------------------------------------------------- */

/* take_expired — move the idle entries older than the idle timeout (all of
 * them when `all`) into out; the earliest next expiry into *next. */
static size_t take_expired(bool all, struct smtp_client_session **out, int64_t *next)
{
    int64_t now = util_now_ms(), ttl = config->delivery_idle_timeout_ms;
    size_t n = 0;
    *next = INT64_MAX;
    for (size_t i = 0; i < OUTPOOL_IDLE_MAX; i++) {
        if (!idle[i].s)
            continue;
        if (all || now - idle[i].since >= ttl) {
            out[n++] = idle[i].s;
            idle[i].s = NULL;
        } else if (idle[i].since + ttl < *next) {
            *next = idle[i].since + ttl;
        }
    }
    return n;
}

static void close_all(struct smtp_client_session **v, size_t n, int64_t deadline)
{
    for (size_t i = 0; i < n; i++)
        smtp_client_session_close(v[i], deadline);
}

static void *reaper(void *arg)
{
    (void)arg;
    struct smtp_client_session *v[OUTPOOL_IDLE_MAX];
    pthread_mutex_lock(&mu);
    while (!stopping) {
        int64_t next;
        size_t n = take_expired(false, v, &next);
        if (n) {
            pthread_mutex_unlock(&mu);
            log_debug("delivery", NULL, "%zu idle outbound connection(s) closed: MRS_DELIVERY_IDLE_TIMEOUT", n);
            close_all(v, n, util_now_ms() + OUTPOOL_REAP_QUIT_MS);
            pthread_mutex_lock(&mu);
            continue;
        }
        if (next == INT64_MAX)
            next = util_now_ms() + 3600 * 1000;
        reaper_wakes_ms = next;
        /* util_now_ms is CLOCK_MONOTONIC, the clock of cv */
        struct timespec ts = {.tv_sec = next / 1000, .tv_nsec = next % 1000 * 1000000};
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int outpool_start(char *err, size_t err_len)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!config->delivery_connection_reuse)
        return 0;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 128 * 1024);
    int e = pthread_create(&reaper_thread, &a, reaper, NULL);
    pthread_attr_destroy(&a);
    if (e != 0) {
        snprintf(err, err_len, "MRS_DELIVERY_CONNECTION_REUSE: cannot start the idle connection reaper (error %d)", e);
        return -1;
    }
    running = true;
    return 0;
}

void outpool_stop(int64_t deadline)
{
    struct smtp_client_session *v[OUTPOOL_IDLE_MAX];
    int64_t next;
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_broadcast(&cv);
    size_t n = take_expired(true, v, &next);
    pthread_mutex_unlock(&mu);
    if (running)
        pthread_join(reaper_thread, NULL); /* at most one close of its own in progress */
    close_all(v, n, deadline);
    if (n)
        log_info("shutdown", NULL, "%zu idle outbound connection(s) closed", n);
    pthread_mutex_lock(&mu);
    running = false;
    for (size_t i = 0; i < OUTPOOL_TLS_SESSIONS_MAX; i++) {
        tls_session_free(kept[i].s);
        kept[i].s = NULL;
    }
    pthread_mutex_unlock(&mu);
}

struct smtp_client_session *outpool_take(const struct outpool_key *k)
{
    struct smtp_client_session *s = NULL;
    if (!config->delivery_connection_reuse || !k->text[0])
        return NULL;
    pthread_mutex_lock(&mu);
    size_t best = OUTPOOL_IDLE_MAX;
    for (size_t i = 0; i < OUTPOOL_IDLE_MAX; i++)
        if (idle[i].s && !strcmp(idle[i].key, k->text) && (best == OUTPOOL_IDLE_MAX || idle[i].since > idle[best].since))
            best = i;
    if (best < OUTPOOL_IDLE_MAX) {
        s = idle[best].s;
        idle[best].s = NULL;
    }
    pthread_mutex_unlock(&mu);
    return s;
}

void outpool_put(const struct outpool_key *k, struct smtp_client_session *s)
{
    struct smtp_client_session *evict = NULL;
    if (!s)
        return;
    pthread_mutex_lock(&mu);
    if (stopping || !running || util_draining() || !k->text[0]) {
        pthread_mutex_unlock(&mu);
        smtp_client_session_close(s, util_now_ms() + SMTP_CLIENT_QUIT_TIMEOUT_MS);
        return;
    }
    size_t same = 0, free_at = OUTPOOL_IDLE_MAX, oldest_same = OUTPOOL_IDLE_MAX;
    for (size_t i = 0; i < OUTPOOL_IDLE_MAX; i++) {
        if (!idle[i].s) {
            free_at = free_at < OUTPOOL_IDLE_MAX ? free_at : i;
            continue;
        }
        bool is_same = !strcmp(idle[i].key, k->text);
        same += is_same;
        if (is_same && (oldest_same == OUTPOOL_IDLE_MAX || idle[i].since < idle[oldest_same].since))
            oldest_same = i;
    }
    /* Full for this destination: its own oldest session makes room.  Full
     * in all: this session is closed, not another destination's — the QUIT
     * (up to SMTP_CLIENT_QUIT_TIMEOUT_MS against a server that never
     * answers it) is paid for the server this delivery talked to. */
    size_t at = same >= OUTPOOL_IDLE_PER_DEST ? oldest_same : free_at;
    if (at == OUTPOOL_IDLE_MAX) {
        pthread_mutex_unlock(&mu);
        smtp_client_session_close(s, util_now_ms() + SMTP_CLIENT_QUIT_TIMEOUT_MS);
        return;
    }
    evict = idle[at].s;
    idle[at].s = s;
    idle[at].since = util_now_ms();
    util_copy(idle[at].key, sizeof idle[at].key, k->text, strlen(k->text));
    /* the reaper is woken only when this entry expires before the time it
     * waits for (an empty pool: an hour); every other put would wake it
     * for nothing, once per delivered message */
    bool wake = idle[at].since + config->delivery_idle_timeout_ms < reaper_wakes_ms;
    if (wake)
        reaper_wakes_ms = idle[at].since + config->delivery_idle_timeout_ms;
    pthread_mutex_unlock(&mu);
    if (wake)
        pthread_cond_broadcast(&cv);
    smtp_client_session_close(evict, util_now_ms() + SMTP_CLIENT_QUIT_TIMEOUT_MS);
}

/* ---- TLS sessions ------------------------------------------------------------------ */

struct tls_session *outpool_tls_take(const struct outpool_key *k)
{
    struct tls_session *s = NULL;
    if (!config->delivery_connection_reuse || !k->resumable)
        return NULL;
    int64_t now = util_now_ms();
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < OUTPOOL_TLS_SESSIONS_MAX; i++)
        if (kept[i].s && !strcmp(kept[i].key, k->text)) {
            if (now - kept[i].since < OUTPOOL_TLS_SESSION_MS)
                s = kept[i].s;
            else
                tls_session_free(kept[i].s);
            kept[i].s = NULL;
            break;
        }
    pthread_mutex_unlock(&mu);
    return s;
}

void outpool_tls_put(const struct outpool_key *k, struct tls_session *s)
{
    if (!s)
        return;
    if (!config->delivery_connection_reuse || !k->resumable) {
        tls_session_free(s);
        return;
    }
    struct tls_session *old = NULL;
    pthread_mutex_lock(&mu);
    size_t at = OUTPOOL_TLS_SESSIONS_MAX;
    for (size_t i = 0; i < OUTPOOL_TLS_SESSIONS_MAX && at == OUTPOOL_TLS_SESSIONS_MAX; i++)
        if (kept[i].s && !strcmp(kept[i].key, k->text))
            at = i;
    for (size_t i = 0; i < OUTPOOL_TLS_SESSIONS_MAX && at == OUTPOOL_TLS_SESSIONS_MAX; i++)
        if (!kept[i].s)
            at = i;
    if (at == OUTPOOL_TLS_SESSIONS_MAX) { /* full: the oldest makes room */
        at = 0;
        for (size_t i = 1; i < OUTPOOL_TLS_SESSIONS_MAX; i++)
            if (kept[i].since < kept[at].since)
                at = i;
    }
    old = kept[at].s;
    kept[at].s = s;
    kept[at].since = util_now_ms();
    util_copy(kept[at].key, sizeof kept[at].key, k->text, strlen(k->text));
    pthread_mutex_unlock(&mu);
    tls_session_free(old);
}
