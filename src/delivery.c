/*
 * delivery — delivery threads and the life of one message in them (see
 * delivery.h).
 *
 * Threads are detached, created with an explicit DELIVERY_STACK_BYTES
 * stack; everything large (the message's recipients, the route, the
 * replies, the SMTP session) is on the heap.  A thread owns the message it
 * claimed until queue_release / queue_park / queue_done /
 * queue_quarantine, so nothing per message is shared and no lock is held
 * while delivering.
 *
 * One destination (a recipient domain) at a time: its attempt has a
 * wall-clock end (MRS_DELIVERY_ATTEMPT_TIMEOUT) that every wait in
 * smtp_client respects, and it holds one of the domain's
 * MRS_DELIVERY_DOMAIN_CONCURRENCY slots (queue_slot_take).  A domain with
 * none free is skipped; when nothing else is left to do, the message is
 * parked in the queue until a slot is given back, so a slow destination
 * holds its share of threads and no more.
 *
 * Durability errors change what happens next: a state that cannot be
 * saved travels with the queue item until a save succeeds; a message that
 * cannot be removed keeps a final state and is removed later; one that
 * cannot be parsed is bounced and set aside; one that cannot be read now
 * is tried again.
 */
#include "delivery.h"

#include "bounce.h"
#include "config.h"
#include "crypto.h"
#include "dsn.h"
#include "idna.h"
#include "log.h"
#include "outpool.h"
#include "queue.h"
#include "route.h"
#include "smtp_client.h"
#include "smtp_proto.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"
#include "tls_policy.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t run_cv; /* CLOCK_MONOTONIC, set up in delivery_start */
static int64_t running;

/* One recipient still to try, and its domain (for grouping). */
struct open_rcpt {
    const char *domain;
    size_t index;
};

/* What a delivery thread keeps from one job to the next: a route (10 KB),
 * a TLS policy (5 KB) and the header buffer (16 KB) allocated per message
 * were an mmap or MADV_FREE, a munmap and a TLB flush on every CPU each
 * (the allocator keeps no free group of those sizes). */
struct worker_mem {
    struct route route;
    struct tls_policy_domain tls_policy;
    char *headers; /* DELIVERY_HEADERS_START_BYTES, kept from job to job */
};

/* One message in the hands of one thread. */
struct job {
    struct queue_item *it;
    struct spool_message m;
    char *headers;                      /* the header section, for loops and the bounce */
    size_t headers_len, headers_cap;
    struct open_rcpt *open;             /* the recipients to try, grouped by domain */
    const char **rcpts;                 /* one transaction's addresses */
    const char **notify, **orcpt;       /* and their RFC 3461 parameters (NULL: none) */
    struct smtp_client_reply *replies;  /* and their replies */
    struct route *route;
    struct tls_policy_domain *tls_policy; /* the current destination's outbound TLS policy */
    bool settled_final;                 /* a recipient became delivered or failed since the last save */
    bool stopped;                       /* draining: the rest waits for the next start */
    bool deferred_now;                  /* a recipient was deferred in this attempt */
    int64_t deadline_ms;                /* the current destination's attempt ends (util_now_ms clock) */
    bool slot_held;                     /* a slot of slot_key (MRS_DELIVERY_DOMAIN_CONCURRENCY) */
    uint64_t slot_key;
    const char *wait_domain;            /* the first domain skipped for want of a slot, or NULL */
    uint64_t wait_key;
};

static uint8_t domain_key_secret[CRYPTO_KEY_BYTES]; /* delivery_domain_key: set at start */

/* ---- pure helpers ---------------------------------------------------------- */

int64_t delivery_backoff_ms(int attempts, int64_t min_ms, int64_t max_ms, uint32_t random)
{
    int64_t d = min_ms;
    for (int i = 1; i < attempts && d < max_ms; i++)
        d = d > INT64_MAX / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    /* ±10 %, so that messages deferred together do not come back together,
     * but never outside [min_ms, max_ms]: the range is cut, not the result
     * clamped, which would pile the gaps up on the bounds */
    int64_t lo = d - d / 10 < min_ms ? min_ms : d - d / 10, hi = d + d / 10 > max_ms ? max_ms : d + d / 10;
    uint64_t span = hi > lo ? (uint64_t)(hi - lo) : 0;
    /* span * random / 2^32 without overflow or floating point: < span */
    d = lo + (int64_t)((span >> 32) * random + (((span & 0xffffffffu) * random) >> 32));
    return d > 0 ? d : 1;
}

uint64_t delivery_domain_key(const uint8_t secret[CRYPTO_KEY_BYTES], const char *domain)
{
    char low[SMTP_DOMAIN_MAX_BYTES + 1], alabel[SMTP_DOMAIN_MAX_BYTES + 1];
    uint8_t h[CRYPTO_SHA256_BYTES];
    uint64_t key;
    size_t n = 0, len = strlen(domain);
    /* SMTPUTF8: a U-label domain is its A-labels' destination (route.c
     * resolves those), so it shares their slots */
    if (len > 0 && domain[len - 1] == '.')
        len--;
    const char *a = idna_alabel(domain, len, alabel, sizeof alabel);
    if (a)
        domain = a;
    /* recipient domains are validated to fit; a longer one is keyed by its
     * first SMTP_DOMAIN_MAX_BYTES bytes (it shares their slots, no more) */
    for (; domain[n] && n < SMTP_DOMAIN_MAX_BYTES; n++)
        low[n] = util_lower(domain[n]);
    if (n > 0 && low[n - 1] == '.')
        n--;
    crypto_keyed_hash(secret, low, n, h);
    memcpy(&key, h, sizeof key);
    return key;
}

int delivery_received_count(const char *h, size_t len)
{
    return smtp_header_count(h, len, "Received:");
}

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : addr;
}

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int d = (unsigned char)util_lower(*a) - (unsigned char)util_lower(*b);
        if (d || !*a)
            return d;
    }
}

static int cmp_open(const void *a, const void *b)
{
    const struct open_rcpt *x = a, *y = b;
    int d = ascii_casecmp(x->domain, y->domain);
    return d ? d : (x->index > y->index) - (x->index < y->index);
}

/* ---- recording outcomes ------------------------------------------------------ */

static enum spool_rcpt_status status_of(int code)
{
    return code / 100 == 2 ? SPOOL_DELIVERED : code / 100 == 5 ? SPOOL_FAILED : SPOOL_DEFERRED;
}

/* settle — one recipient's outcome of this attempt: state, log, counters. */
static void settle(struct job *j, size_t i, enum spool_rcpt_status st, const char *remote, const char *reply,
                   const struct smtp_client_outcome *tls)
{
    static const enum stats_delivery counter[] = {
        [SPOOL_DELIVERED] = STATS_DELIVERED, [SPOOL_DEFERRED] = STATS_DEFERRED, [SPOOL_FAILED] = STATS_BOUNCED};
    struct spool_rcpt *r = &j->m.rcpts[i];
    r->status = st;
    r->when_ms = util_wall_ms();
    /* RFC 3461 §5.2.2: a next hop without DSN leaves the success report to us */
    r->relayed = st == SPOOL_DELIVERED && (r->notify & DSN_NOTIFY_SUCCESS) && !(tls && tls->dsn);
    j->settled_final |= st == SPOOL_DELIVERED || st == SPOOL_FAILED;
    j->deferred_now |= st == SPOOL_DEFERRED;
    spool_set_reply(r, remote ? remote : "", reply, strlen(reply));
    if (st != SPOOL_PENDING)
        STATS_INC(deliveries_total[counter[st]]);
    log_event(st == SPOOL_DELIVERED ? LOG_INFO : LOG_WARN, "delivery",
              &(struct log_fields){.queue_id = j->m.id, .from = j->m.from, .rcpt = r->addr,
                                   .remote = remote && remote[0] ? remote : NULL, .result = spool_status_name(st),
                                   .reason = r->reply},
              "%s%s%s%s", tls && tls->tls ? tls->tls_version : "no TLS",
              tls && tls->tls ? (tls->tls_verified ? ", certificate verified" : ", certificate not verified") : "",
              tls && tls->reused ? "; connection reused" : "", st == SPOOL_DEFERRED ? "; will retry" : "");
}

/* ---- one transaction ------------------------------------------------------------ */

static enum smtp_client_tls tls_mode(const struct route *r)
{
    if (!r->smarthost)
        return SMTP_CLIENT_TLS_OPPORTUNISTIC;
    switch (config->smarthost_tls) {
    case CONFIG_TLS_IMPLICIT: return SMTP_CLIENT_TLS_IMPLICIT;
    case CONFIG_TLS_NONE: return SMTP_CLIENT_TLS_OFF;
    case CONFIG_TLS_STARTTLS: break;
    }
    return SMTP_CLIENT_TLS_STARTTLS;
}

/* session — one session for cj: an idle one with the same key when there
 * is one (outpool), else a new connection offering the TLS session kept
 * for the key; afterwards the session is parked and the new TLS session
 * kept.  Counted in mrs_outbound_connections_total. */
static enum smtp_client_result session(struct job *j, struct smtp_client_job *cj, struct smtp_client_outcome *out)
{
    struct outpool_key *k = malloc(sizeof *k);
    if (!k || !config->delivery_connection_reuse) {
        free(k);
        enum smtp_client_result res = smtp_client_deliver(cj, out);
        STATS_ADD(outbound_connections_total[0], out->connects);
        return res;
    }
    outpool_key(cj, j->route->smarthost, k);
    struct tls_session *resume = outpool_tls_take(k);
    cj->reuse = outpool_take(k);
    cj->resume = resume;
    cj->park = true;
    cj->messages_max = OUTPOOL_MESSAGES_MAX;
    cj->want_tls_session = k->resumable;
    enum smtp_client_result res = smtp_client_deliver(cj, out);
    cj->reuse = NULL;
    cj->resume = NULL;
    cj->park = false;
    STATS_ADD(outbound_connections_total[0], out->connects);
    if (out->reused)
        STATS_INC(outbound_connections_total[1]);
    if (out->tls_session) {
        outpool_tls_put(k, out->tls_session);
        out->tls_session = NULL;
        tls_session_free(resume);
    } else if (out->connects == 0) {
        outpool_tls_put(k, resume); /* not used: kept for the next */
    } else {
        tls_session_free(resume);
    }
    outpool_put(k, out->parked);
    out->parked = NULL;
    free(k);
    return res;
}

/* try_target — one address: a session, and once more in plaintext when an
 * opportunistic STARTTLS handshake failed (RFC 7435 §3: better plaintext
 * than no delivery). */
static enum smtp_client_result try_target(struct job *j, struct smtp_client_job *cj, struct smtp_client_outcome *out)
{
    enum smtp_client_result res = session(j, cj, out);
    if (res == SMTP_CLIENT_TLS_FAILED && cj->tls == SMTP_CLIENT_TLS_OPPORTUNISTIC && !cj->tls_req->tls_required &&
        util_now_ms() < cj->deadline_ms) {
        log_warn("delivery", &(struct log_fields){.queue_id = j->m.id, .remote = cj->target->label,
                                                  .result = "tls-failed", .reason = out->reply.text},
                 "STARTTLS handshake failed: retrying once in plaintext on a new connection");
        cj->tls = SMTP_CLIENT_TLS_OFF;
        res = session(j, cj, out);
        cj->tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    }
    return res;
}

/* attempt_timed_out — MRS_DELIVERY_ATTEMPT_TIMEOUT ended a session: what
 * was not settled is deferred with a reply that says so. */
static void attempt_timed_out(struct job *j, const char *domain)
{
    STATS_INC(delivery_attempt_timeouts_total);
    log_warn("delivery", &(struct log_fields){.queue_id = j->m.id, .result = "attempt-timeout"},
             "the delivery attempt to %s ran out of time (MRS_DELIVERY_ATTEMPT_TIMEOUT %lld ms): "
             "what is not settled is deferred", domain, (long long)config->delivery_attempt_timeout_ms);
}

/* transaction — recipients open[0..n) (one domain) through j->route. */
static void transaction(struct job *j, const struct open_rcpt *open, size_t n)
{
    struct smtp_client_outcome out;
    struct smtp_client_reply last = {.code = 451, .text = "451 4.4.1 no address to try"};
    struct outbound_tls_req req;
    size_t skipped = 0;
    for (size_t i = 0; i < n; i++) {
        j->rcpts[i] = j->m.rcpts[open[i].index].addr;
        j->notify[i] = j->m.rcpts[open[i].index].notify_text;
        j->orcpt[i] = j->m.rcpts[open[i].index].orcpt;
    }
    struct smtp_client_job cj = {
        .tls = tls_mode(j->route), .user = j->route->smarthost ? config->smarthost_user : NULL,
        .password = config->smarthost_password, .queue_id = j->m.id, .from = j->m.from,
        .eightbit = j->m.eightbit, .smtputf8 = spool_needs_smtputf8(&j->m), .fd = j->m.fd, .offset = j->m.body_offset,
        .length = j->m.file_size - j->m.body_offset, .rcpt_count = n, .rcpts = j->rcpts, .rcpt_replies = j->replies,
        .deadline_ms = j->deadline_ms, .dsn_ret = dsn_ret_name((enum dsn_ret)j->m.ret), .dsn_envid = j->m.envid,
        .rcpt_notify = j->notify, .rcpt_orcpt = j->orcpt};
    for (size_t t = 0; t < j->route->count; t++) {
        cj.target = &j->route->targets[t];
        tls_policy_for_mx(j->tls_policy, cj.target, j->m.id, &req);
        if (req.skip) {
            tls_policy_record(&req, j->m.id, cj.target->label, false, false, false, false);
            if (req.policy == TLS_POLICY_DANE) { /* its TLSA lookup failed: why is the 451 */
                snprintf(last.text, sizeof last.text, "%s", req.why);
                last.remote = false;
            } else {
                skipped++;
            }
            tls_policy_req_release(&req);
            continue;
        }
        cj.tls_req = &req;
        enum smtp_client_result res = try_target(j, &cj, &out);
        tls_policy_record(&req, j->m.id, cj.target->label, out.tls, out.tls_verified, out.tls_policy_failed,
                          out.transacted);
        tls_policy_req_release(&req);
        if (out.attempt_timeout)
            attempt_timed_out(j, open[0].domain);
        if (res == SMTP_CLIENT_SENT || res == SMTP_CLIENT_REFUSED) {
            for (size_t i = 0; i < n; i++) {
                const struct smtp_client_reply *r = res == SMTP_CLIENT_SENT ? &j->replies[i] : &out.reply;
                settle(j, open[i].index, status_of(r->code), r->remote ? cj.target->label : NULL, r->text, &out);
            }
            return;
        }
        last = out.reply;
        if (out.attempt_timeout)
            break; /* the other addresses wait for the next attempt */
        log_info("delivery", &(struct log_fields){.queue_id = j->m.id, .remote = cj.target->label,
                                                  .result = "next", .reason = out.reply.text},
                 "no delivery at this address; %zu more to try", j->route->count - t - 1);
    }
    /* no address took it: whatever the last one said, this is temporary */
    if (skipped == j->route->count) {
        tls_policy_all_skipped(j->tls_policy, open[0].domain, last.text, sizeof last.text);
        last.remote = false;
    }
    for (size_t i = 0; i < n; i++)
        settle(j, open[i].index, SPOOL_DEFERRED, last.remote ? j->route->targets[j->route->count - 1].label : NULL,
               last.text, NULL);
}

/* group — route the domain of open[0] and carry open[0..n). */
static void group(struct job *j, const struct open_rcpt *open, size_t n, bool route_again)
{
    if (route_again && route_lookup(open[0].domain, j->route) == ROUTE_OK && j->route->denied_count)
        log_warn("delivery", &(struct log_fields){.queue_id = j->m.id, .result = "denied"},
                 "%s: %zu mail exchanger address(es) in MRS_DELIVERY_DENY_NETS left out: %s", open[0].domain,
                 j->route->denied_count, j->route->denied);
    if (j->route->status == ROUTE_OK) {
        if (route_again)
            tls_policy_domain(open[0].domain, j->route, j->deadline_ms, j->tls_policy);
        transaction(j, open, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        settle(j, open[i].index, j->route->status == ROUTE_PERMFAIL ? SPOOL_FAILED : SPOOL_DEFERRED, NULL,
               j->route->error, NULL);
}

/* ---- one message ------------------------------------------------------------------ */

/* save_state — write the state file.  When that fails (ENOSPC, EIO) the
 * text stays with the queue item: the next holder starts from it, not
 * from the older file, and saves it again, so recipients settled now are
 * not delivered again at every retry while the disk fails. */
static int save_state(struct job *j)
{
    size_t cap = spool_state_max_bytes(&j->m);
    char *buf = malloc(cap);
    size_t len = buf ? spool_format_state(&j->m, buf, cap) : 0;
    if (len && queue_save_state(j->m.id, buf, len) == 0) {
        queue_item_hold_state(j->it, NULL, 0);
        free(buf);
        return 0;
    }
    int e = len ? errno : ENOMEM;
    if (len)
        queue_item_hold_state(j->it, buf, len);
    else
        free(buf);
    log_error("spool", &(struct log_fields){.queue_id = j->m.id},
              "cannot save the delivery state (errno %d): kept in memory and saved again before the next attempt; "
              "a crash now would deliver again", e);
    return -1;
}

/* release — hand the message back for its next attempt at due_ms; one
 * whose state is held unsaved comes back within MRS_RETRY_MIN to retry the
 * save (apply_held_state), whatever its next attempt. */
static void release(struct job *j, int64_t due_ms)
{
    size_t len;
    int64_t soon = util_wall_ms() + config->retry_min_ms;
    queue_release(j->it, queue_item_held_state(j->it, &len) && due_ms > soon ? soon : due_ms);
}

/* apply_held_state — a state an earlier save could not write is newer
 * than the file: start from it and save it again.  true when that was
 * all this claim was for (the item came back early for the save and its
 * next attempt is later): the item is then handed back. */
static bool apply_held_state(struct job *j)
{
    size_t len;
    const char *held = queue_item_held_state(j->it, &len);
    if (!held)
        return false;
    if (spool_parse_state(held, len, &j->m) < 0) /* our own text: cannot happen */
        log_error("spool", &(struct log_fields){.queue_id = j->m.id}, "the state kept in memory does not parse");
    if (save_state(j) == 0)
        log_info("spool", &(struct log_fields){.queue_id = j->m.id}, "delivery state saved after an earlier failure");
    bool pending = false;
    for (size_t i = 0; i < j->m.rcpt_count; i++)
        pending |= j->m.rcpts[i].status == SPOOL_PENDING;
    if (pending || j->m.next_ms <= util_wall_ms())
        return false;
    release(j, j->m.next_ms);
    return true;
}

/* collect_open — the recipients not settled yet, grouped by domain. */
static size_t collect_open(struct job *j)
{
    size_t n = 0;
    for (size_t i = 0; i < j->m.rcpt_count; i++) {
        enum spool_rcpt_status st = j->m.rcpts[i].status;
        if (st == SPOOL_PENDING || st == SPOOL_DEFERRED)
            j->open[n++] = (struct open_rcpt){.domain = domain_of(j->m.rcpts[i].addr), .index = i};
    }
    if (!config->smarthost_set && n > 1)
        qsort(j->open, n, sizeof *j->open, cmp_open);
    return n;
}

static bool same_domain(const struct open_rcpt *a, const struct open_rcpt *b)
{
    return config->smarthost_set || ascii_casecmp(a->domain, b->domain) == 0;
}

/* ---- destinations: attempt deadline and domain slots ------------------------------ */

/* destination_begin — the attempt at o's domain starts: its deadline
 * (MRS_DELIVERY_ATTEMPT_TIMEOUT) and a slot of its domain
 * (MRS_DELIVERY_DOMAIN_CONCURRENCY; the smarthost is the one destination
 * the operator chose: not limited).  false when the domain has none free:
 * its recipients are not tried now (wait_for_slot). */
static bool destination_begin(struct job *j, const struct open_rcpt *o)
{
    j->deadline_ms = util_now_ms() + config->delivery_attempt_timeout_ms;
    if (config->smarthost_set)
        return true;
    uint64_t key = delivery_domain_key(domain_key_secret, o->domain);
    if (queue_slot_take(key, config->delivery_domain_concurrency)) {
        j->slot_key = key;
        j->slot_held = true;
        return true;
    }
    if (!j->wait_domain) {
        j->wait_domain = o->domain;
        j->wait_key = key;
    }
    STATS_INC(delivery_domain_waits_total);
    log_info("delivery", &(struct log_fields){.queue_id = j->m.id, .result = "waiting"},
             "%s: %lld deliveries to it in progress (MRS_DELIVERY_DOMAIN_CONCURRENCY): its recipients wait "
             "for one to end, no attempt counted", o->domain, (long long)config->delivery_domain_concurrency);
    return false;
}

/* destination_end — give the slot back (a waiting message becomes due). */
static void destination_end(struct job *j)
{
    if (j->slot_held)
        queue_slot_give(j->slot_key);
    j->slot_held = false;
}

/* wait_for_slot — open[0..n) were not tried: their domain had no slot
 * free.  They keep their status; the reply says why (for `mrs queue` and,
 * should the lifetime end, the bounce).  Once the lifetime is over they
 * are deferred now, so that conclude bounces them instead of waiting on. */
static void wait_for_slot(struct job *j, const struct open_rcpt *open, size_t n)
{
    char why[SPOOL_REPLY_MAX_BYTES];
    bool over = util_wall_ms() >= j->m.received_ms + config->queue_lifetime_ms;
    snprintf(why, sizeof why, "451 4.4.5 not tried: %lld deliveries to %s were in progress "
             "(MRS_DELIVERY_DOMAIN_CONCURRENCY)", (long long)config->delivery_domain_concurrency, open[0].domain);
    for (size_t i = 0; i < n; i++) {
        struct spool_rcpt *r = &j->m.rcpts[open[i].index];
        if (over)
            settle(j, open[i].index, SPOOL_DEFERRED, NULL, why, NULL);
        else if (!r->reply[0])
            spool_set_reply(r, "", why, strlen(why));
    }
}

/* attempt — every open recipient: one transaction per domain (per
 * DELIVERY_RCPTS_PER_TRANSACTION) while holding a slot of the domain, the
 * state saved in between when a recipient became final, so that a crash
 * does not deliver a finished domain again (a deferred one is tried again
 * anyway).  A domain without a free slot is skipped (see park). */
static void attempt(struct job *j)
{
    size_t n = collect_open(j);
    bool go = true;
    for (size_t i = 0; i < n;) {
        size_t end = i + 1;
        while (end < n && end - i < DELIVERY_RCPTS_PER_TRANSACTION && same_domain(&j->open[i], &j->open[end]))
            end++;
        bool first = i == 0 || !same_domain(&j->open[i - 1], &j->open[i]);
        if (first)
            go = destination_begin(j, &j->open[i]);
        if (go)
            group(j, &j->open[i], end - i, first);
        else
            wait_for_slot(j, &j->open[i], end - i);
        i = end;
        if (i == n || !same_domain(&j->open[i - 1], &j->open[i]))
            destination_end(j);
        if (i < n && util_draining()) {
            j->stopped = true;
            break;
        }
        if (i < n && j->settled_final && save_state(j) == 0)
            j->settled_final = false;
    }
    destination_end(j); /* the drain may stop inside a domain */
}

/* read_headers — the header section (up to the empty line), for the loop
 * check and the bounce, into the worker's buffer of the first size (a
 * bigger one is the job's alone). */
static void read_headers(struct job *j, struct worker_mem *w)
{
    size_t cap = DELIVERY_HEADERS_START_BYTES, len = 0;
    int64_t avail = j->m.file_size - j->m.body_offset;
    char *first = w->headers ? w->headers : malloc(cap);
    w->headers = NULL;
    for (char *p = first; p != NULL;) {
        j->headers = p;
        j->headers_cap = cap;
        size_t want = avail - (int64_t)len < (int64_t)(cap - len) ? (size_t)(avail - (int64_t)len) : cap - len;
        ssize_t got = want ? pread(j->m.fd, j->headers + len, want, (off_t)(j->m.body_offset + (int64_t)len)) : 0;
        if (got < 0 && errno == EINTR)
            continue;
        len += got > 0 ? (size_t)got : 0;
        for (size_t i = len >= 4 ? 0 : len; i + 4 <= len; i++)
            if (!memcmp(j->headers + i, "\r\n\r\n", 4)) {
                j->headers_len = i + 2;
                return;
            }
        if (len >= 2 && !memcmp(j->headers, "\r\n", 2)) {
            j->headers_len = 0; /* no header section at all */
            return;
        }
        if (got <= 0 || len < cap || cap >= DELIVERY_HEADERS_MAX_BYTES)
            break;
        cap *= 2;
        p = realloc(j->headers, cap);
    }
    j->headers_len = len; /* no empty line within the limit: all we have */
}

/* quarantine — set aside a message that can never be read whole, after a
 * bounce to the sender its damaged envelope still names; when that bounce
 * cannot be stored, the message stays queued and is tried again later. */
static void quarantine(struct queue_item *it)
{
    char bid[QUEUE_ID_BYTES];
    struct log_fields lf = {.queue_id = queue_item_id(it)};
    int r = bounce_quarantined(lf.queue_id, bid);
    if (r < 0) {
        log_error("bounce", &lf, "cannot store the bounce for a malformed message (errno %d); retrying later", errno);
        queue_release(it, util_wall_ms() + config->retry_min_ms);
        return;
    }
    if (r == 0)
        log_info("bounce", &lf, "bounce %s sent for the malformed message", bid);
    else
        log_warn("bounce", &lf, "the malformed message names no sender and recipient to bounce to");
    queue_quarantine(it);
}

static bool job_init(struct job *j, struct queue_item *it, struct worker_mem *w)
{
    char err[256];
    j->it = it;
    if (spool_load(queue_item_id(it), &j->m, true, err, sizeof err) < 0) {
        int e = errno;
        struct log_fields lf = {.queue_id = queue_item_id(it)};
        if (e == ENOENT) {
            log_warn("delivery", &lf, "message vanished from the spool: %s", err);
            if (queue_done(it) < 0) /* it is back (cannot be removed): look again later */
                queue_release(it, util_wall_ms() + config->retry_min_ms);
        } else if (e == EINVAL) {
            log_error("delivery", &lf, "%s", err);
            quarantine(it);
        } else if (e != ENOMEM && util_wall_ms() - spool_id_ms(lf.queue_id) >= config->queue_lifetime_ms) {
            log_error("delivery", &lf, "%s, for longer than MRS_QUEUE_LIFETIME: giving up", err);
            quarantine(it); /* nothing is retried forever */
        } else {
            log_error("delivery", &lf, "%s; retrying later", err);
            queue_release(it, util_wall_ms() + config->retry_min_ms);
        }
        return false;
    }
    size_t per = j->m.rcpt_count < DELIVERY_RCPTS_PER_TRANSACTION ? j->m.rcpt_count : DELIVERY_RCPTS_PER_TRANSACTION;
    j->open = calloc(j->m.rcpt_count, sizeof *j->open);
    j->rcpts = calloc(per, sizeof *j->rcpts);
    j->notify = calloc(per, sizeof *j->notify);
    j->orcpt = calloc(per, sizeof *j->orcpt);
    j->replies = calloc(per, sizeof *j->replies);
    memset(&w->route, 0, sizeof w->route);
    memset(&w->tls_policy, 0, sizeof w->tls_policy);
    j->route = &w->route;
    j->tls_policy = &w->tls_policy;
    if (!j->open || !j->rcpts || !j->notify || !j->orcpt || !j->replies) {
        log_error("delivery", &(struct log_fields){.queue_id = j->m.id}, "out of memory; retrying later");
        queue_release(it, util_wall_ms() + config->retry_min_ms);
        return false;
    }
    if (apply_held_state(j))
        return false;
    read_headers(j, w);
    return true;
}

static void job_free(struct job *j, struct worker_mem *w)
{
    spool_free(&j->m);
    if (j->headers && j->headers_cap == DELIVERY_HEADERS_START_BYTES && !w->headers)
        w->headers = j->headers; /* for the next job: no malloc, no MADV_FREE per message */
    else
        free(j->headers);
    free(j->open);
    free(j->rcpts);
    free(j->notify);
    free(j->orcpt);
    free(j->replies);
}

/* expire_or_schedule — after an attempt that left recipients deferred:
 * fail them when the lifetime is over, else pick the next attempt. */
static void expire_or_schedule(struct job *j)
{
    int64_t now = util_wall_ms(), end = j->m.received_ms + config->queue_lifetime_ms;
    if (now >= end) {
        for (size_t i = 0; i < j->m.rcpt_count; i++) {
            struct spool_rcpt *r = &j->m.rcpts[i];
            if (r->status != SPOOL_DEFERRED && r->status != SPOOL_PENDING)
                continue;
            r->status = SPOOL_FAILED;
            r->when_ms = now;
            STATS_INC(deliveries_total[STATS_BOUNCED]);
            log_warn("delivery", &(struct log_fields){.queue_id = j->m.id, .rcpt = r->addr, .result = "failed",
                                                      .reason = r->reply},
                     "gave up: MRS_QUEUE_LIFETIME (%lld s) is over", (long long)(config->queue_lifetime_ms / 1000));
        }
        return;
    }
    j->m.attempts++;
    int64_t next = now + delivery_backoff_ms(j->m.attempts, config->retry_min_ms, config->retry_max_ms,
                                             crypto_random_uniform(UINT32_MAX));
    j->m.next_ms = next < end ? next : end; /* one last try when the lifetime ends */
    int64_t warn = bounce_delay_due(&j->m);
    if (warn > now && warn < j->m.next_ms)
        j->m.next_ms = warn; /* back then, for the delay notice after that attempt */
    for (size_t i = 0; i < j->m.rcpt_count; i++)
        if (j->m.rcpts[i].status == SPOOL_DEFERRED)
            j->m.rcpts[i].when_ms = j->m.next_ms;
}

/* finish_message — every recipient settled: the bounce, then removal. */
static void finish_message(struct job *j, size_t failed, size_t delivered)
{
    char bid[QUEUE_ID_BYTES];
    struct log_fields lf = {.queue_id = j->m.id, .from = j->m.from};
    int r = j->m.from[0] && !j->m.bounce_id[0] ? bounce_report(&j->m, BOUNCE_FINAL, j->headers, j->headers_len, bid)
                                               : 1;
    if (r < 0) {
        log_error("bounce", &lf, "cannot store the bounce (errno %d); retrying later", errno);
        j->m.next_ms = util_wall_ms() + config->retry_min_ms;
        save_state(j);
        release(j, j->m.next_ms);
        return;
    }
    if (r == 0) {
        memcpy(j->m.bounce_id, bid, sizeof bid); /* a retried removal does not send it again */
        log_info("bounce", &lf, "%s %s sent to <%s> for %zu failed recipient(s)",
                 failed ? "bounce" : "success report", bid, j->m.from, failed);
    } else if (failed && j->m.from[0] && !j->m.bounce_id[0]) {
        log_info("bounce", &lf, "no bounce for %zu failed recipient(s): their NOTIFY asks for none", failed);
    } else if (failed && !j->m.from[0]) {
        log_warn("bounce", &lf, "%zu recipient(s) of a bounce failed: a bounce is never bounced, dropped", failed);
    }
    if (queue_done(j->it) < 0) {
        /* the message is still there: its state must say it is finished
         * (and bounced), or a restart would deliver it all again */
        j->m.next_ms = util_wall_ms() + config->retry_min_ms;
        save_state(j);
        release(j, j->m.next_ms);
        return;
    }
    log_info("delivery", &(struct log_fields){.queue_id = j->m.id, .result = "done"},
             "removed from the spool: %zu delivered, %zu failed", delivered, failed);
}

/* delay_notice — MRS_DELAY_WARNING: once the message is that old, one
 * report (Action: delayed) for the recipients still deferred; its id goes
 * into the state saved next, so neither a retry nor a restart sends it
 * again (a crash before that save may: at-least-once, like bounces). */
static void delay_notice(struct job *j)
{
    char id[QUEUE_ID_BYTES];
    struct log_fields lf = {.queue_id = j->m.id, .from = j->m.from};
    int64_t due = bounce_delay_due(&j->m);
    if (!due || util_wall_ms() < due)
        return;
    int r = bounce_report(&j->m, BOUNCE_DELAY, j->headers, j->headers_len, id);
    if (r < 0)
        log_error("bounce", &lf, "cannot store the delay notice (errno %d); trying again after the next attempt",
                  errno);
    else if (r == 0) {
        memcpy(j->m.delay_id, id, sizeof id);
        log_info("bounce", &lf, "delay notice %s sent to <%s> (MRS_DELAY_WARNING)", id, j->m.from);
    }
}

/* conclude — after the attempt: finish, or save the state and hand the
 * message back for its next attempt. */
static void conclude(struct job *j)
{
    size_t open = 0, failed = 0, delivered = 0;
    for (size_t i = 0; i < j->m.rcpt_count; i++) {
        enum spool_rcpt_status st = j->m.rcpts[i].status;
        open += st == SPOOL_DEFERRED || st == SPOOL_PENDING;
    }
    /* recipients still pending were skipped by the drain or for want of a
     * domain slot: they are not what the back-off is about */
    if (open && !j->stopped)
        expire_or_schedule(j);
    else if (open)
        j->m.next_ms = 0; /* cut short by the drain: due at the next start */
    open = 0;
    for (size_t i = 0; i < j->m.rcpt_count; i++) {
        enum spool_rcpt_status st = j->m.rcpts[i].status;
        open += st == SPOOL_DEFERRED || st == SPOOL_PENDING;
        failed += st == SPOOL_FAILED;
        delivered += st == SPOOL_DELIVERED;
    }
    if (open == 0) {
        finish_message(j, failed, delivered);
        return;
    }
    delay_notice(j);
    save_state(j);
    release(j, j->m.next_ms);
}

/* park — only recipients of domains without a free slot are left (none
 * was deferred now): hand the message back to wait for a slot, counting
 * no attempt, and at the latest to look again after MRS_RETRY_MAX or when
 * its lifetime ends.  false when it is not that case, or when the outcomes
 * settled now cannot be saved (conclude then takes over). */
static bool park(struct job *j)
{
    if (!j->wait_domain || j->stopped || j->deferred_now)
        return false;
    if (j->settled_final && save_state(j) < 0)
        return false;
    int64_t latest = util_wall_ms() + config->retry_max_ms, end = j->m.received_ms + config->queue_lifetime_ms;
    queue_park(j->it, j->wait_key, config->delivery_domain_concurrency, latest < end ? latest : end);
    return true;
}

static void deliver(struct queue_item *it, struct worker_mem *w)
{
    struct job j;
    memset(&j, 0, sizeof j);
    j.m.fd = -1;
    if (job_init(&j, it, w)) {
        int received = delivery_received_count(j.headers, j.headers_len);
        if (queue_item_hold_expired(it)) {
            /* handed out only when its lifetime is over: bounced, not tried */
            for (size_t i = 0; i < j.m.rcpt_count; i++)
                if (j.m.rcpts[i].status == SPOOL_PENDING || j.m.rcpts[i].status == SPOOL_DEFERRED)
                    settle(&j, i, SPOOL_FAILED, NULL,
                           "554 5.4.7 held by the operator until MRS_QUEUE_LIFETIME was over", NULL);
        } else if (received > DELIVERY_MAX_RECEIVED) {
            char why[96];
            snprintf(why, sizeof why, "554 5.4.6 mail loop: %d Received: header fields", received);
            for (size_t i = 0; i < j.m.rcpt_count; i++)
                if (j.m.rcpts[i].status == SPOOL_PENDING || j.m.rcpts[i].status == SPOOL_DEFERRED)
                    settle(&j, i, SPOOL_FAILED, NULL, why, NULL);
        } else {
            attempt(&j);
        }
        if (!park(&j))
            conclude(&j);
    }
    job_free(&j, w);
}

/* ---- threads ---------------------------------------------------------------------- */

static void *worker(void *arg)
{
    (void)arg;
    struct worker_mem *w = calloc(1, sizeof *w);
    for (;;) {
        struct queue_item *it = w ? queue_claim() : NULL;
        if (!it)
            break;
        deliver(it, w);
        if (util_draining())
            break; /* the drain: the rest waits in the spool for the next start */
    }
    if (!w)
        log_error("delivery", NULL, "out of memory: a delivery thread ends");
    if (w)
        free(w->headers);
    free(w);
    pthread_mutex_lock(&run_mu);
    running--;
    pthread_cond_broadcast(&run_cv);
    pthread_mutex_unlock(&run_mu);
    return NULL;
}

int delivery_start(char *err, size_t err_len)
{
    pthread_condattr_t ca;
    pthread_attr_t a;
    crypto_random(domain_key_secret, sizeof domain_key_secret);
    if (outpool_start(err, err_len) < 0)
        return -1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&run_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, DELIVERY_STACK_BYTES);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (int64_t i = 0; i < config->delivery_threads; i++) {
        pthread_t t;
        pthread_mutex_lock(&run_mu);
        running++;
        pthread_mutex_unlock(&run_mu);
        int e = pthread_create(&t, &a, worker, NULL);
        if (e != 0) {
            pthread_mutex_lock(&run_mu);
            running--;
            pthread_mutex_unlock(&run_mu);
            pthread_attr_destroy(&a);
            snprintf(err, err_len, "MRS_DELIVERY_THREADS: cannot start delivery thread %lld (error %d)", (long long)i + 1, e);
            return -1;
        }
    }
    pthread_attr_destroy(&a);
    if (config->smarthost_set)
        log_info("delivery", NULL, "%lld delivery thread(s), everything via smarthost %s:%u (tls %s%s)",
                 (long long)config->delivery_threads, config->smarthost.host, (unsigned)config->smarthost.port,
                 config->smarthost_tls == CONFIG_TLS_NONE ? "none" : config->smarthost_tls == CONFIG_TLS_IMPLICIT ? "implicit" : "starttls",
                 config->smarthost_user[0] ? ", AUTH" : "");
    else
        log_info("delivery", NULL, "%lld delivery thread(s), MX delivery to port %u",
                 (long long)config->delivery_threads, (unsigned)config->delivery_port);
    return 0;
}

void delivery_stop(int64_t deadline)
{
    queue_stop();
    pthread_mutex_lock(&run_mu);
    while (running > 0) {
        struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = deadline % 1000 * 1000000};
        if (pthread_cond_timedwait(&run_cv, &run_mu, &ts) == ETIMEDOUT)
            break;
    }
    int64_t left = running;
    pthread_mutex_unlock(&run_mu);
    outpool_stop(deadline); /* a thread still delivering closes its session itself */
    if (left > 0)
        log_warn("shutdown", NULL, "%lld delivery thread(s) still in a transaction; their messages stay in the "
                 "spool and may be delivered again after the restart", (long long)left);
    else
        log_info("shutdown", NULL, "delivery threads stopped");
}
