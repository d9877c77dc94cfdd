/*
 * health — the HTTP probe and metrics listener, and `mrs healthcheck`
 * (see health.h for the contract).
 *
 * Owns: the listening socket, its acceptor thread, one detached thread per
 * HTTP connection (HEALTH_THREAD_STACK_BYTES of stack, frames kept under
 * 4 KiB: the request head and the response live on the heap), the readiness
 * conditions and the drain flag.  Requests are parsed by http.c; answers are
 * fixed texts or rendered from stats.h.
 *
 * Threading: conditions and the spool path are guarded by one mutex that
 * only health_set*() and /readyz take, never an SMTP session; the drain flag,
 * the connection count and every counter are atomics.  A connection thread
 * has a deadline for every wait, so a slow client only ever holds its own
 * thread, and at most HEALTH_CONNECTIONS_MAX of them.
 *
 * Calls: config, log, stats, http.
 */
#include "health.h"

#include "conn.h"

#include "http.h"
#include "log.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_BACKLOG 128
#define HEALTH_RESPONSE_MAX_BYTES HEALTH_METRICS_MAX_BYTES
#define HEALTH_HEAD_RESERVE_BYTES 512     /* room before the body for the head */
#define HEALTH_LINGER_MAX_BYTES (64 * 1024)
#define HEALTH_STOP_WAIT_MS 1000
#define HEALTH_ACCEPT_PAUSE_MS 100        /* after EMFILE and the like */
#define HEALTH_CLI_RESPONSE_KEEP_BYTES 512

/* Sanitizers add redzones to every frame: give them room. */
#if defined(__SANITIZE_ADDRESS__)
#define HEALTH_STACK_BYTES (HEALTH_THREAD_STACK_BYTES * 4)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEALTH_STACK_BYTES (HEALTH_THREAD_STACK_BYTES * 4)
#endif
#endif
#ifndef HEALTH_STACK_BYTES
#define HEALTH_STACK_BYTES HEALTH_THREAD_STACK_BYTES
#endif

static const char *const cond_names[HEALTH_COND_COUNT] = {
    "listeners", "tls", "users", "spool", "resolver", "started",
};

static const char *const cond_defaults[HEALTH_COND_COUNT] = {
    "SMTP listeners are not bound yet",
    "TLS certificate and key are not loaded yet",
    "users are not loaded yet",
    "spool is not ready yet",
    "resolver has no DNS server yet",
    "start-up is not complete yet",
};

struct cond_state {
    bool ok;
    bool set;                               /* health_set() was called once */
    char reason[HEALTH_REASON_MAX_BYTES];   /* empty: cond_defaults */
};

static struct {
    pthread_mutex_t lock;                   /* guards cond[] and spool_dir */
    struct cond_state cond[HEALTH_COND_COUNT];
    char spool_dir[CONFIG_PATH_MAX_BYTES];
    atomic_bool draining;
    atomic_int active;                      /* connection threads alive */
    atomic_uint probe_seq;                  /* unique spool probe names */
    atomic_int spool_state;                 /* last probe: -1 none, 0 failed, 1 ok */
    int64_t started_ms;                     /* fallback when stats.started_ms is 0 */
    bool running;                           /* only the start/stop thread */
    int listen_fd;
    int wake[2];                            /* a byte on wake[1] stops the acceptor */
    pthread_t acceptor;
    _Atomic(health_check_fn) check;         /* GET /check, NULL: 404 */
    atomic_int checks;                      /* /check requests running */
    double check_tokens;                    /* under lock: the /check rate bucket */
    int64_t check_refill_ms;
} H = {.lock = PTHREAD_MUTEX_INITIALIZER, .spool_state = -1, .listen_fd = -1, .wake = {-1, -1}};

/* One HTTP connection; heap-allocated by the acceptor, freed by its thread. */
struct health_conn {
    int fd;
    char peer[64];
    size_t len;
    char head[HTTP_HEAD_MAX_BYTES];
};

/* A response under construction: the body is appended after a reserved
 * prefix, so the head can be put in front of it and both sent at once. */
struct out {
    char *buf;
    size_t len;
    size_t cap;
    bool full;                              /* sticky: something did not fit */
};

/* ---- small helpers ---------------------------------------------------- */

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
static int64_t wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

/* wait_fd — poll one fd until events or the monotonic deadline: 1 ready,
 * 0 deadline passed, -1 error (errno set). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* send_all — the whole buffer on a non-blocking socket before the deadline:
 * normally one send(2).  0, or -1 (errno ETIMEDOUT when out of time). */
static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r <= 0) {
            if (r == 0)
                errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

static int out_init(struct out *o, size_t cap)
{
    o->buf = malloc(cap);
    o->len = HEALTH_HEAD_RESERVE_BYTES;
    o->cap = cap;
    o->full = o->buf == NULL;
    return o->buf ? 0 : -1;
}

static void out_put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
    if (o->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->full = true;
        return;
    }
    o->len += (size_t)n;
}

static size_t out_body_len(const struct out *o) { return o->len - HEALTH_HEAD_RESERVE_BYTES; }

/* out_put_line — append text as part of one line: control bytes become '?'. */
static void out_put_line(struct out *o, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        out_put(o, c < 0x20 || c == 0x7f ? "?" : s, 1);
    }
}

/* copy_line — copy text into dst as one line: control bytes become '?'. */
static void copy_line(char *dst, size_t dst_len, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < dst_len; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[i] = '\0';
}

/* ---- readiness -------------------------------------------------------- */

void health_set(enum health_cond c, int ok, const char *reason)
{
    if ((unsigned)c >= HEALTH_COND_COUNT)
        log_panic("health_set: condition %d out of range", (int)c);
    char text[HEALTH_REASON_MAX_BYTES];
    copy_line(text, sizeof text, reason ? reason : "");
    pthread_mutex_lock(&H.lock);
    struct cond_state *s = &H.cond[c];
    bool was_set = s->set;
    bool changed = !was_set || s->ok != (ok != 0) || strcmp(s->reason, text) != 0;
    s->set = true;
    s->ok = ok != 0;
    memcpy(s->reason, text, sizeof text);
    pthread_mutex_unlock(&H.lock);
    if (!changed)
        return;
    if (ok) /* the first "ok" is ordinary start-up: debug; a recovery: info */
        log_event(was_set ? LOG_INFO : LOG_DEBUG, "health", NULL, "readiness condition %s ok",
                  cond_names[c]);
    else
        log_warn("health", NULL, "readiness condition %s failing: %s", cond_names[c],
                 text[0] ? text : cond_defaults[c]);
}

void health_set_spool_dir(const char *dir)
{
    pthread_mutex_lock(&H.lock);
    int n = snprintf(H.spool_dir, sizeof H.spool_dir, "%s", dir ? dir : "");
    if (n < 0 || (size_t)n >= sizeof H.spool_dir)
        H.spool_dir[0] = '\0'; /* config bounds paths to this size already */
    pthread_mutex_unlock(&H.lock);
    atomic_store(&H.spool_state, -1);
}

void health_set_draining(void)
{
    if (!atomic_exchange(&H.draining, true))
        log_info("health", NULL, "draining: /readyz answers 503 from now on");
}

/* spool_probe — create and remove a uniquely named file in <dir>/tmp.
 * Never creates tmp itself: a spool whose tmp is gone is not writable.
 * Logs when the answer changes from the last probe's. */
static bool spool_probe(const char *dir)
{
    char path[CONFIG_PATH_MAX_BYTES + 64];
    unsigned seq = atomic_fetch_add(&H.probe_seq, 1);
    int n = snprintf(path, sizeof path, "%s/tmp/.readyz-%ld-%u", dir, (long)getpid(), seq);
    bool ok = false;
    if (n > 0 && (size_t)n < sizeof path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            close(fd);
            ok = unlink(path) == 0;
        }
    } else {
        errno = ENAMETOOLONG;
    }
    int was = atomic_exchange(&H.spool_state, ok ? 1 : 0);
    if (!ok && was != 0)
        log_warn("health", NULL, "spool directory %s is not writable (%s): %m", dir, path);
    else if (ok && was == 0)
        log_info("health", NULL, "spool directory %s is writable again", dir);
    return ok;
}

/* render_ready — the /readyz body; returns 200 or 503. */
static int render_ready(struct out *o)
{
    char dir[CONFIG_PATH_MAX_BYTES];
    bool ok = true;
    if (atomic_load(&H.draining)) {
        out_printf(o, "draining\n");
        ok = false;
    }
    pthread_mutex_lock(&H.lock);
    for (int c = 0; c < HEALTH_COND_COUNT; c++) {
        const struct cond_state *s = &H.cond[c];
        if (s->ok)
            continue;
        out_printf(o, "%s\n", s->reason[0] ? s->reason : cond_defaults[c]);
        ok = false;
    }
    memcpy(dir, H.spool_dir, sizeof dir);
    pthread_mutex_unlock(&H.lock);
    if (dir[0] && !spool_probe(dir)) {
        out_printf(o, "spool directory ");
        out_put_line(o, dir);
        out_printf(o, " is not writable\n");
        ok = false;
    }
    if (ok)
        out_printf(o, "ready\n");
    return ok ? 200 : 503;
}

/* ---- /metrics ----------------------------------------------------------- */

#define LOAD(v) ((long long)atomic_load_explicit(&(v), memory_order_relaxed))

/* A metric family without labels, read from one stats field. */
struct scalar {
    const char *name;
    const char *type;
    const char *help;
    atomic_int_fast64_t *value;
};

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_scalars(struct out *o, const struct scalar *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        family(o, s[i].name, s[i].type, s[i].help);
        out_printf(o, "%s %lld\n", s[i].name, LOAD(*s[i].value));
    }
}

/* One family labelled by listener, from an array indexed by stats_listener. */
static void render_by_listener(struct out *o, const char *name, const char *type,
                               const char *help, atomic_int_fast64_t *v)
{
    family(o, name, type, help);
    for (int l = 0; l < STATS_LISTENERS; l++)
        out_printf(o, "%s{listener=\"%s\"} %lld\n", name,
                   stats_listener_name((enum stats_listener)l), LOAD(v[l]));
}

/* put_label_value — a label value escaped as the text format requires
 * (backslash, double quote, newline). */
static void put_label_value(struct out *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            out_put(o, "\\", 1);
        if (*v == '\n')
            out_put(o, "\\n", 2);
        else
            out_put(o, v, 1);
    }
}

/* A gauge family of one sample: milliseconds shown as seconds. */
static void seconds_gauge(struct out *o, const char *name, const char *help, int64_t ms)
{
    family(o, name, "gauge", help);
    out_printf(o, "%s %lld.%03lld\n", name, (long long)(ms / 1000), (long long)(ms % 1000));
}

static void render_process(struct out *o)
{
    int64_t now = wall_ms();
    int64_t start = LOAD(stats.started_ms);
    if (start <= 0)
        start = H.started_ms;
    family(o, "mrs_build_info", "gauge", "Version and git revision of this binary; always 1.");
    out_printf(o, "mrs_build_info{version=\"");
    put_label_value(o, MRS_VERSION);
    out_printf(o, "\",revision=\"");
    put_label_value(o, MRS_GIT_REV);
    out_printf(o, "\"} 1\n");
    seconds_gauge(o, "mrs_start_time_seconds", "Unix time the process started, in seconds.", start);
    seconds_gauge(o, "mrs_uptime_seconds", "Seconds since the process started.",
                  now > start ? now - start : 0);
}

static void render_sessions(struct out *o)
{
    static const struct scalar scalars[] = {
        {"mrs_connections_rejected_total", "counter",
         "Inbound SMTP connections refused over MRS_MAX_CONNECTIONS or MRS_MAX_CONNECTIONS_PER_CLIENT.",
         &stats.connections_rejected_total},
        {"mrs_connections_per_client_rejected_total", "counter",
         "Inbound SMTP connections refused because their client had MRS_MAX_CONNECTIONS_PER_CLIENT open.",
         &stats.connections_per_client_rejected_total},
        {"mrs_accept_errors_total", "counter",
         "Failed accepts on the SMTP listeners (out of file descriptors or memory).",
         &stats.accept_errors_total},
        {"mrs_auth_successes_total", "counter", "Successful SMTP AUTH exchanges.",
         &stats.auth_successes_total},
        {"mrs_auth_failures_total", "counter", "Failed SMTP AUTH exchanges.",
         &stats.auth_failures_total},
    };
    render_by_listener(o, "mrs_sessions_open", "gauge", "SMTP sessions open now, by listener.",
                       stats.sessions_open);
    render_by_listener(o, "mrs_sessions_total", "counter", "SMTP sessions started, by listener.",
                       stats.sessions_total);
    render_by_listener(o, "mrs_tls_handshakes_total", "counter",
                       "TLS handshakes attempted, by listener (failures included).",
                       stats.tls_handshakes_total);
    render_by_listener(o, "mrs_tls_failures_total", "counter",
                       "TLS handshakes failed, by listener.", stats.tls_failures_total);
    render_scalars(o, scalars, sizeof scalars / sizeof scalars[0]);
}

static void render_messages(struct out *o)
{
    static const struct scalar scalars[] = {
        {"mrs_messages_accepted_total", "counter",
         "Messages accepted into the spool (250 after DATA).", &stats.messages_accepted_total},
        {"mrs_message_bytes_accepted_total", "counter", "Bytes of the messages accepted.",
         &stats.message_bytes_accepted_total},
    };
    render_scalars(o, scalars, sizeof scalars / sizeof scalars[0]);
    family(o, "mrs_messages_refused_total", "counter",
           "Messages or envelope steps refused, by reason.");
    for (int r = 0; r < STATS_REFUSED_COUNT; r++)
        out_printf(o, "mrs_messages_refused_total{reason=\"%s\"} %lld\n",
                   stats_refusal_name((enum stats_refusal)r),
                   LOAD(stats.messages_refused_total[r]));
}

static void render_queue(struct out *o)
{
    static const struct scalar scalars[] = {
        {"mrs_queue_depth", "gauge", "Messages in the spool.", &stats.queue_depth},
        {"mrs_queue_held", "gauge", "Messages on hold (mrs queue hold), part of mrs_queue_depth.",
         &stats.queue_held},
        {"mrs_queue_quarantined", "gauge",
         "Malformed messages set aside as queue/<id>.bad (counted at start and as they are set aside).",
         &stats.queue_quarantined},
    };
    static const struct scalar after[] = {
        {"mrs_bounces_total", "counter", "Delivery status notifications (bounces) generated.",
         &stats.bounces_total},
        {"mrs_delivery_domain_waits_total", "counter",
         "Times a recipient domain was skipped: MRS_DELIVERY_DOMAIN_CONCURRENCY deliveries to it were in progress.",
         &stats.delivery_domain_waits_total},
        {"mrs_delivery_attempt_timeouts_total", "counter",
         "Outbound SMTP sessions ended by MRS_DELIVERY_ATTEMPT_TIMEOUT (the rest deferred).",
         &stats.delivery_attempt_timeouts_total},
    };
    render_scalars(o, scalars, sizeof scalars / sizeof scalars[0]);
    int64_t oldest = LOAD(stats.queue_oldest_ms), now = wall_ms();
    int64_t age = oldest > 0 && now > oldest ? now - oldest : 0;
    seconds_gauge(o, "mrs_queue_oldest_age_seconds",
                  "Age of the oldest message in the spool; 0 when it is empty.", age);
    family(o, "mrs_deliveries_total", "counter", "Delivery attempts per recipient, by outcome.");
    for (int d = 0; d < STATS_DELIVERY_COUNT; d++)
        out_printf(o, "mrs_deliveries_total{outcome=\"%s\"} %lld\n",
                   stats_delivery_name((enum stats_delivery)d), LOAD(stats.deliveries_total[d]));
    render_scalars(o, after, sizeof after / sizeof after[0]);
    family(o, "mrs_outbound_tls_total", "counter",
           "Outbound SMTP sessions by TLS policy (none = smarthost) and TLS result (skipped: MX outside the policy).");
    for (int p = 0; p < STATS_TLS_POLICIES; p++)
        for (int r = 0; r < STATS_TLS_RESULTS; r++)
            out_printf(o, "mrs_outbound_tls_total{policy=\"%s\",result=\"%s\"} %lld\n", stats_tls_policy_name(p),
                       stats_tls_result_name(r), LOAD(stats.outbound_tls_total[p][r]));
    family(o, "mrs_outbound_connections_total", "counter",
           "Outbound SMTP connections a message went over: reused=\"yes\" an idle one kept from an earlier message.");
    out_printf(o, "mrs_outbound_connections_total{reused=\"no\"} %lld\n", LOAD(stats.outbound_connections_total[0]));
    out_printf(o, "mrs_outbound_connections_total{reused=\"yes\"} %lld\n", LOAD(stats.outbound_connections_total[1]));
    family(o, "mrs_dsn_reports_total", "counter",
           "Delivery status notifications mrs sent (RFC 3464), by the action they report.");
    for (int a = 0; a < STATS_DSN_ACTIONS; a++)
        out_printf(o, "mrs_dsn_reports_total{action=\"%s\"} %lld\n", stats_dsn_name((enum stats_dsn)a),
                   LOAD(stats.dsn_reports_total[a]));
}

static void render_dns(struct out *o)
{
    static const struct scalar scalars[] = {
        {"mrs_dns_queries_total", "counter", "DNS queries sent to the resolvers.",
         &stats.dns_queries_total},
        {"mrs_dns_cache_hits_total", "counter", "DNS lookups answered from the cache.",
         &stats.dns_cache_hits_total},
        {"mrs_dns_failures_total", "counter",
         "DNS lookups that timed out or failed (SERVFAIL, malformed).", &stats.dns_failures_total},
    };
    render_scalars(o, scalars, sizeof scalars / sizeof scalars[0]);
}

static void render_dkim(struct out *o)
{
    family(o, "mrs_dkim_signatures_total", "counter",
           "DKIM signing per key and accepted message, by algorithm and result.");
    for (int a = 0; a < STATS_DKIM_ALGS; a++)
        for (int r = 0; r < STATS_DKIM_RESULTS; r++)
            out_printf(o, "mrs_dkim_signatures_total{algorithm=\"%s\",result=\"%s\"} %lld\n",
                       stats_dkim_alg_name((enum stats_dkim_alg)a),
                       stats_dkim_result_name((enum stats_dkim_result)r),
                       LOAD(stats.dkim_signatures_total[a][r]));
}

static void render_config(struct out *o)
{
    family(o, "mrs_config_reloads_total", "counter",
           "Reloads of the TLS certificate/key, the users and the DKIM keys (SIGHUP or a change on disk), by outcome.");
    for (int w = 0; w < STATS_RELOAD_COUNT; w++)
        for (int r = 0; r < STATS_RELOAD_RESULTS; r++)
            out_printf(o, "mrs_config_reloads_total{what=\"%s\",result=\"%s\"} %lld\n",
                       stats_reload_name((enum stats_reload)w), r == STATS_RELOAD_OK ? "ok" : "error",
                       LOAD(stats.config_reloads_total[w][r]));
    family(o, "mrs_tls_certificate_expiry_timestamp_seconds", "gauge",
           "Unix time at which the served TLS certificate expires (notAfter).");
    out_printf(o, "mrs_tls_certificate_expiry_timestamp_seconds %lld\n",
               LOAD(stats.tls_certificate_expiry_s));
}

/* render_metrics — Prometheus text format 0.0.4; returns 200, or 500 when
 * it did not fit HEALTH_METRICS_MAX_BYTES (a bug: the output is small). */
static int render_metrics(struct out *o)
{
    render_process(o);
    render_sessions(o);
    render_messages(o);
    render_queue(o);
    render_dns(o);
    render_dkim(o);
    render_config(o);
    return o->full ? 500 : 200;
}

/* ---- one request -------------------------------------------------------- */

enum route { ROUTE_HEALTHZ, ROUTE_READYZ, ROUTE_METRICS, ROUTE_CHECK, ROUTE_NONE };

void health_set_check_handler(health_check_fn fn)
{
    atomic_store(&H.check, fn);
}

/* render_check — GET /check through the registered handler, at most
 * HEALTH_CHECKS_MAX at once (each may wait seconds on DNS, and the probes
 * must not queue behind them). */
/* check_rate_ok — a token bucket (HEALTH_CHECKS_PER_S, bursts up to
 * HEALTH_CHECKS_BURST): every /check makes the relay ask DNS afresh, and
 * the endpoint has no authentication. */
static bool check_rate_ok(void)
{
    pthread_mutex_lock(&H.lock);
    int64_t now = now_ms();
    if (H.check_refill_ms == 0)
        H.check_tokens = HEALTH_CHECKS_BURST;
    else
        H.check_tokens += (double)(now - H.check_refill_ms) * HEALTH_CHECKS_PER_S / 1000.0;
    if (H.check_tokens > HEALTH_CHECKS_BURST)
        H.check_tokens = HEALTH_CHECKS_BURST;
    H.check_refill_ms = now;
    bool ok = H.check_tokens >= 1.0;
    if (ok)
        H.check_tokens -= 1.0;
    pthread_mutex_unlock(&H.lock);
    return ok;
}

static int render_check(struct out *o, const struct http_request *req)
{
    health_check_fn fn = atomic_load(&H.check);
    if (!check_rate_ok()) {
        out_printf(o, "{\"error\":\"more than %d checks a second; try again in a moment\"}\n",
                   HEALTH_CHECKS_PER_S);
        return 429;
    }
    if (atomic_fetch_add(&H.checks, 1) >= HEALTH_CHECKS_MAX) {
        atomic_fetch_sub(&H.checks, 1);
        out_printf(o, "{\"error\":\"too many checks at once; try again in a moment\"}\n");
        return 503;
    }
    char *body = malloc(HEALTH_CHECK_BODY_MAX_BYTES);
    size_t len = 0;
    int status = body ? fn(req->query, req->query ? req->query_len : 0, body,
                           HEALTH_CHECK_BODY_MAX_BYTES, &len)
                      : 500;
    atomic_fetch_sub(&H.checks, 1);
    if (body && len <= HEALTH_CHECK_BODY_MAX_BYTES)
        out_put(o, body, len);
    free(body);
    return status;
}

static enum route route_of(const struct http_request *req)
{
    static const char *const paths[] = {"/healthz", "/readyz", "/metrics", "/check"};
    for (int i = 0; i < ROUTE_NONE; i++)
        if (req->path_len == strlen(paths[i]) && memcmp(req->path, paths[i], req->path_len) == 0)
            return (enum route)i;
    return ROUTE_NONE;
}

/* answer — the status and body for a parsed request (or a parse error). */
static int answer(enum http_parse_result pr, const struct http_request *req, struct out *o,
                  const char **ctype, const char **extra)
{
    *ctype = "text/plain; charset=utf-8";
    *extra = NULL;
    int status;
    enum route r = pr == HTTP_PARSE_DONE ? route_of(req) : ROUTE_NONE;
    if (r == ROUTE_CHECK && !atomic_load(&H.check))
        r = ROUTE_NONE;
    if (pr != HTTP_PARSE_DONE)
        status = req->status;
    else if (r == ROUTE_NONE)
        status = 404;
    else if (req->method == HTTP_METHOD_OTHER) {
        status = 405;
        *extra = "Allow: GET, HEAD\r\n"; /* RFC 9110 §15.5.6 */
    } else if (r == ROUTE_HEALTHZ) {
        out_printf(o, "ok\n");
        return 200;
    } else if (r == ROUTE_READYZ) {
        return render_ready(o);
    } else if (r == ROUTE_CHECK) {
        *ctype = "application/json";
        return render_check(o, req);
    } else {
        status = render_metrics(o);
        if (status == 200) {
            *ctype = "text/plain; version=0.0.4; charset=utf-8";
            return 200;
        }
        o->len = HEALTH_HEAD_RESERVE_BYTES; /* drop the partial body */
        o->full = false;
    }
    out_printf(o, "%s\n", http_reason(status));
    return status;
}

/* respond — put the head in front of the body and send both in one go;
 * HEAD gets the same head without the body (RFC 9110 §9.3.2). */
static int respond(struct health_conn *c, int status, struct out *o, const char *ctype,
                   const char *extra, bool head_only)
{
    char head[HEALTH_HEAD_RESERVE_BYTES];
    int n = http_response_head(head, sizeof head, status, ctype, out_body_len(o), extra);
    if (n < 0)
        log_panic("health: response head does not fit %d bytes", HEALTH_HEAD_RESERVE_BYTES);
    char *start = o->buf + HEALTH_HEAD_RESERVE_BYTES - n;
    memcpy(start, head, (size_t)n);
    size_t total = (size_t)n + (head_only ? 0 : out_body_len(o));
    return send_all(c->fd, start, total, now_ms() + HEALTH_SEND_TIMEOUT_MS);
}

static void log_request(const struct health_conn *c, enum http_parse_result pr,
                        const struct http_request *req, int status)
{
    struct log_fields f = {.client = c->peer};
    if (pr != HTTP_PARSE_DONE) {
        f.reason = req->error;
        log_info("http_refused", &f, "%d %s", status, http_reason(status));
        return;
    }
    if (!log_enabled(LOG_DEBUG) && status != 405)
        return;
    char method[HTTP_METHOD_MAX_BYTES * 4 + 1], path[256];
    log_sanitize(method, sizeof method, req->method_text, req->method_len);
    log_sanitize(path, sizeof path, req->path, req->path_len);
    log_event(status == 405 ? LOG_INFO : LOG_DEBUG, "http_request", &f, "%s %s %d", method, path,
              status);
}

/* ---- one connection ----------------------------------------------------- */

enum read_result { READ_PARSED, READ_TIMEOUT, READ_CLOSED };

/* read_request — read until the head parses (or is refused), the client
 * goes away, or HEALTH_REQUEST_TIMEOUT_MS pass. */
static enum read_result read_request(struct health_conn *c, struct http_request *req,
                                     enum http_parse_result *pr)
{
    int64_t deadline = now_ms() + HEALTH_REQUEST_TIMEOUT_MS;
    for (;;) {
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w <= 0)
            return w == 0 ? READ_TIMEOUT : READ_CLOSED;
        if (c->len >= sizeof c->head)
            log_panic("health: request buffer full while the parser wants more");
        ssize_t n = recv(c->fd, c->head + c->len, sizeof c->head - c->len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return READ_CLOSED;
        c->len += (size_t)n;
        *pr = http_parse_request(c->head, c->len, req);
        if (*pr != HTTP_PARSE_MORE)
            return READ_PARSED;
    }
}

/* linger_close — stop writing, then read and drop what the client still
 * sends (pipelined requests, the rest of an oversized head) for a moment, so
 * closing does not reset the connection before it has read our answer. */
static void linger_close(int fd)
{
    char sink[512];
    size_t drained = 0;
    int64_t deadline = now_ms() + HEALTH_LINGER_MS;
    shutdown(fd, SHUT_WR);
    while (drained < HEALTH_LINGER_MAX_BYTES && wait_fd(fd, POLLIN, deadline) > 0) {
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            break;
        drained += (size_t)n;
    }
    close(fd);
}

static void serve_conn(struct health_conn *c)
{
    struct http_request req;
    enum http_parse_result pr = HTTP_PARSE_MORE;
    enum read_result rr = read_request(c, &req, &pr);
    if (rr == READ_CLOSED || (rr == READ_TIMEOUT && c->len == 0))
        return; /* nobody to answer, or nothing asked */
    struct out o;
    if (out_init(&o, HEALTH_RESPONSE_MAX_BYTES) < 0) {
        log_warn("http_error", NULL, "out of memory for a response");
        return;
    }
    const char *ctype, *extra = NULL;
    int status;
    if (rr == READ_TIMEOUT) {
        status = 408;
        ctype = "text/plain; charset=utf-8";
        out_printf(&o, "%s\n", http_reason(status));
        log_info("http_refused", &(struct log_fields){.client = c->peer},
                 "408 request head not complete within %d ms", HEALTH_REQUEST_TIMEOUT_MS);
    } else {
        status = answer(pr, &req, &o, &ctype, &extra);
        log_request(c, pr, &req, status);
    }
    bool head_only = pr == HTTP_PARSE_DONE && req.method == HTTP_METHOD_HEAD;
    if (respond(c, status, &o, ctype, extra, head_only) < 0)
        log_debug("http_error", &(struct log_fields){.client = c->peer},
                  "sending the response: %m");
    free(o.buf);
}

static void *conn_main(void *arg)
{
    struct health_conn *c = arg;
    serve_conn(c);
    linger_close(c->fd);
    free(c);
    atomic_fetch_sub(&H.active, 1);
    return NULL;
}

/* ---- listener --------------------------------------------------------- */

/* start_thread — a thread with our small explicit stack and every
 * asynchronous signal blocked (SIGTERM, SIGHUP… are for the main thread;
 * connection threads inherit the acceptor's mask). */
static int start_thread(void *(*fn)(void *), void *arg, bool detached, pthread_t *tid)
{
    pthread_attr_t attr;
    sigset_t all, old;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    int rc = pthread_attr_setstacksize(&attr, HEALTH_STACK_BYTES);
    if (rc == 0 && detached)
        rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0) {
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(tid, &attr, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_attr_destroy(&attr);
    if (rc != 0)
        errno = rc;
    return rc == 0 ? 0 : -1;
}

static void accept_one(void)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(H.listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        /* EMFILE and the like leave the listener readable: pause rather
         * than spin, so connections in progress can finish. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
            log_warn("http_error", NULL, "accept on the health listener: %m");
            poll(NULL, 0, HEALTH_ACCEPT_PAUSE_MS);
        }
        return;
    }
    if (atomic_fetch_add(&H.active, 1) >= HEALTH_CONNECTIONS_MAX) {
        atomic_fetch_sub(&H.active, 1);
        close(fd); /* over the cap: the probes already in flight go first */
        log_debug("http_refused", NULL, "%d health connections open, closing a new one",
                  HEALTH_CONNECTIONS_MAX);
        return;
    }
    struct health_conn *c = malloc(sizeof *c);
    pthread_t tid;
    if (c) {
        c->fd = fd;
        c->len = 0;
        config_format_addr((const struct sockaddr *)&ss, c->peer, sizeof c->peer);
        if (start_thread(conn_main, c, true, &tid) == 0)
            return;
    }
    log_warn("http_error", NULL, "no thread for a health connection: %m");
    free(c);
    close(fd);
    atomic_fetch_sub(&H.active, 1);
}

static void *acceptor_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = H.listen_fd, .events = POLLIN, .revents = 0},
                              {.fd = H.wake[0], .events = POLLIN, .revents = 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("http_error", NULL, "poll on the health listener: %m");
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        if (p[0].revents)
            accept_one();
    }
}

int health_start(const struct config_listen *listen, char *err, size_t err_len)
{
    if (listen->off)
        return 0;
    if (H.running) {
        snprintf(err, err_len, "health listener %s: already started", listen->text);
        return -1;
    }
    H.started_ms = wall_ms();
    int_fast64_t zero = 0;
    atomic_compare_exchange_strong(&stats.started_ms, &zero, (int_fast64_t)H.started_ms);
    H.listen_fd = conn_listen(listen, HEALTH_BACKLOG);
    if (H.listen_fd < 0) {
        snprintf(err, err_len, "cannot listen on MRS_HEALTH_LISTEN=%s: %m", listen->text);
        return -1;
    }
    if (pipe2(H.wake, O_CLOEXEC) < 0 || start_thread(acceptor_main, NULL, false, &H.acceptor) < 0) {
        snprintf(err, err_len, "health listener %s: cannot start its thread: %m", listen->text);
        close(H.listen_fd);
        if (H.wake[0] >= 0) {
            close(H.wake[0]);
            close(H.wake[1]);
        }
        H.listen_fd = H.wake[0] = H.wake[1] = -1;
        return -1;
    }
    H.running = true;
    log_info("health_listen", NULL, "HTTP health and metrics listener on %s", listen->text);
    return 0;
}

void health_stop(void)
{
    if (!H.running)
        return;
    ssize_t w = write(H.wake[1], "x", 1);
    (void)w; /* the pipe is empty: a 1-byte write cannot fail short */
    pthread_join(H.acceptor, NULL);
    close(H.listen_fd);
    close(H.wake[0]);
    close(H.wake[1]);
    H.listen_fd = H.wake[0] = H.wake[1] = -1;
    H.running = false;
    int64_t deadline = now_ms() + HEALTH_STOP_WAIT_MS;
    while (atomic_load(&H.active) > 0 && now_ms() < deadline)
        poll(NULL, 0, 10);
}

/* ---- `mrs healthcheck` -------------------------------------------------- */

/* cli_target — where to connect: arg (HOST:PORT, :PORT, [IPv6]:PORT) or
 * config->health; a wildcard address means this host's loopback. */
static int cli_target(const char *arg, struct sockaddr_storage *ss, socklen_t *sl, char *name,
                      size_t name_len)
{
    struct config_listen l;
    if (arg && config_parse_listen(arg, &l) < 0) {
        fprintf(stderr, "mrs healthcheck: '%s' is not HOST:PORT, :PORT or [IPv6]:PORT\n", arg);
        return -1;
    }
    if (!arg)
        l = config->health;
    if (l.off || l.port == 0) {
        fprintf(stderr, "mrs healthcheck: the health listener is off (MRS_HEALTH_LISTEN=%s)\n",
                l.text[0] ? l.text : "off");
        return -1;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (l.any) {
        memset(ss, 0, sizeof *ss);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(l.port);
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
        *sl = sizeof *v4;
    } else {
        *ss = l.addr;
        *sl = l.addr_len;
    }
    if (ss->ss_family == AF_INET && v4->sin_addr.s_addr == htonl(INADDR_ANY))
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
        v6->sin6_addr = in6addr_loopback;
    config_format_addr((const struct sockaddr *)ss, name, name_len);
    return 0;
}

/* cli_connect — a connected non-blocking socket before the deadline, or
 * -1 with errno (ETIMEDOUT when out of time). */
static int cli_connect(const struct sockaddr_storage *ss, socklen_t sl, int64_t deadline)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)ss, sl) == 0)
        return fd;
    int e = errno, soerr = 0;
    socklen_t el = sizeof soerr;
    if (e == EINPROGRESS) {
        int r = wait_fd(fd, POLLOUT, deadline);
        e = r == 0 ? ETIMEDOUT : r < 0 ? errno : 0;
        if (e == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0)
            e = errno;
        else if (e == 0)
            e = soerr;
        if (e == 0)
            return fd;
    }
    close(fd);
    errno = e;
    return -1;
}

/* cli_read_status — read the response to its end (or the deadline), keep
 * its first bytes and return the parsed status, or -1 with errno. */
static int cli_read_status(int fd, int64_t deadline, int *status)
{
    char buf[HEALTH_CLI_RESPONSE_KEEP_BYTES], sink[256];
    size_t len = 0;
    int pr = 0;
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            if (pr == 1)
                return 0; /* a status line is all we need */
            errno = w == 0 ? ETIMEDOUT : errno;
            return -1;
        }
        char *dst = len < sizeof buf ? buf + len : sink;
        size_t room = len < sizeof buf ? sizeof buf - len : sizeof sink;
        ssize_t n = recv(fd, dst, room, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        if (dst == buf)
            len += (size_t)n;
        pr = http_parse_status(buf, len, status);
        if (pr < 0)
            break;
    }
    if (pr == 1)
        return 0;
    errno = EPROTO;
    return -1;
}

int health_cli(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    char name[80], req[256];
    if (argc > 3) {
        fprintf(stderr, "usage: mrs healthcheck [HOST:PORT]\n");
        return 1;
    }
    if (cli_target(argc == 3 ? argv[2] : NULL, &ss, &sl, name, sizeof name) < 0)
        return 1;
    int64_t deadline = now_ms() + HEALTH_CLI_TIMEOUT_MS;
    int n = snprintf(req, sizeof req,
                     "GET /healthz HTTP/1.1\r\nHost: %s\r\nUser-Agent: mrs-healthcheck\r\n"
                     "Connection: close\r\n\r\n", name);
    int fd = cli_connect(&ss, sl, deadline), status = 0;
    if (fd < 0) {
        fprintf(stderr, "mrs healthcheck: %s: cannot connect: %m\n", name);
        return 1;
    }
    if (n < 0 || (size_t)n >= sizeof req || send_all(fd, req, (size_t)n, deadline) < 0 ||
        cli_read_status(fd, deadline, &status) < 0) {
        if (errno == ETIMEDOUT || errno == EPROTO)
            fprintf(stderr, "mrs healthcheck: %s: %s\n", name,
                    errno == ETIMEDOUT ? "no answer within 2 s" : "no valid HTTP response");
        else
            fprintf(stderr, "mrs healthcheck: %s: %m\n", name);
        close(fd);
        return 1;
    }
    close(fd);
    if (status != 200) {
        fprintf(stderr, "mrs healthcheck: %s: /healthz answered %d\n", name, status);
        return 1;
    }
    return 0;
}
