/*
 * listener — bind, accept, connection cap, a thread per connection.
 *
 * `:PORT` binds the IPv6 wildcard with IPV6_V6ONLY off (IPv4 and IPv6 on one
 * socket) and falls back to 0.0.0.0 where the kernel has no IPv6.  The
 * accept thread polls every listening socket plus the drain eventfd.
 *
 * Two caps: MRS_MAX_CONNECTIONS sessions in all, and
 * MRS_MAX_CONNECTIONS_PER_CLIENT per client (util_client_key: an IPv4
 * address or an IPv6 /64), counted in a small chained hash table under
 * clients_mu; a session thread leaves it when its session ends.
 *
 * Thread reuse: a session thread whose session ended parks (at most
 * LISTENER_PARKED_MAX of them, each for at most LISTENER_PARK_MS) and the
 * accept loop hands the next connection to the last one parked instead of
 * creating a thread.  Still one thread per connection at any time; what
 * is saved is the thread's creation and exit (its stack's mmap, munmap
 * with the TLB flush on every CPU, the page faults of a fresh stack).
 */
#include "listener.h"

#include "conn.h"
#include "crypto.h"
#include "log.h"
#include "session.h"
#include "util.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTENER_MAX 4
#define LISTENER_BACKLOG 1024
#define LISTENER_CLIENT_BUCKETS 1024
#define LISTENER_ACCEPT_PAUSE_MS 100      /* after EMFILE and the like */
#define LISTENER_ACCEPT_LOG_EVERY_MS 10000 /* one warning per 10 s of them */
#define LISTENER_PARKED_MAX 32            /* idle session threads kept for reuse */
#define LISTENER_PARK_MS 5000             /* how long one waits for a connection */

struct listen_sock {
    int fd;
    bool implicit_tls;
    enum stats_listener kind;
};

static struct listen_sock socks[LISTENER_MAX];
static int nsocks;
static atomic_int_fast64_t active;
static pthread_t accept_thread;
static bool accept_running;
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;

/* A parked session thread (on its own stack) waiting for a connection. */
struct parked {
    struct parked *next;
    pthread_cond_t cv;
    struct session_start *st; /* set by the accept loop */
};

static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked; /* the last parked first */
static int nparked;
static bool park_closed;

/* Open sessions of one client. */
struct client {
    struct client *next;
    uint8_t key[UTIL_CLIENT_KEY_BYTES];
    int64_t open;
};

static pthread_mutex_t clients_mu = PTHREAD_MUTEX_INITIALIZER;
static struct client *clients[LISTENER_CLIENT_BUCKETS];
static uint64_t clients_seed;

static struct client **client_bucket(const uint8_t key[UTIL_CLIENT_KEY_BYTES])
{
    uint64_t h = clients_seed ^ 1469598103934665603ULL; /* FNV-1a, seeded */
    for (size_t i = 0; i < UTIL_CLIENT_KEY_BYTES; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return &clients[h % LISTENER_CLIENT_BUCKETS];
}

/* client_enter — count one more session for this client; false (nothing
 * counted) when it already has MRS_MAX_CONNECTIONS_PER_CLIENT open. */
static bool client_enter(const struct sockaddr *peer)
{
    uint8_t key[UTIL_CLIENT_KEY_BYTES];
    util_client_key(peer, key);
    bool ok = false;
    pthread_mutex_lock(&clients_mu);
    struct client **head = client_bucket(key), *c = *head;
    while (c && memcmp(c->key, key, sizeof key) != 0)
        c = c->next;
    if (!c && (c = calloc(1, sizeof *c))) {
        memcpy(c->key, key, sizeof key);
        c->next = *head;
        *head = c;
    }
    if (c && c->open < config->max_connections_per_client) {
        c->open++;
        ok = true;
    }
    pthread_mutex_unlock(&clients_mu);
    return ok;
}

static void client_leave(const struct sockaddr *peer)
{
    uint8_t key[UTIL_CLIENT_KEY_BYTES];
    util_client_key(peer, key);
    pthread_mutex_lock(&clients_mu);
    struct client **p = client_bucket(key);
    while (*p && memcmp((*p)->key, key, sizeof key) != 0)
        p = &(*p)->next;
    if (*p && --(*p)->open <= 0) {
        struct client *gone = *p;
        *p = gone->next;
        free(gone);
    }
    pthread_mutex_unlock(&clients_mu);
}

int listener_open(const struct config_listen *l, const char *var, bool implicit_tls,
                  enum stats_listener kind, char *err, size_t err_len)
{
    if (l->off)
        return 0;
    if (nsocks == LISTENER_MAX) {
        snprintf(err, err_len, "%s: too many listeners", var);
        return -1;
    }
    int fd = conn_listen(l, LISTENER_BACKLOG);
    if (fd < 0) {
        snprintf(err, err_len, "%s: cannot listen on %s: %s", var, l->text,
                 errno == EADDRINUSE ? "address already in use"
                 : errno == EACCES   ? "permission denied (a port below 1024 needs NET_BIND_SERVICE)"
                 : errno == EADDRNOTAVAIL ? "address not available on this host"
                                          : "bind failed");
        return -1;
    }
    socks[nsocks++] = (struct listen_sock){.fd = fd, .implicit_tls = implicit_tls, .kind = kind};
    log_info("listen", NULL, "%s on %s%s", stats_listener_name(kind), l->text,
             implicit_tls ? " (implicit TLS)" : " (STARTTLS)");
    return 0;
}

static void session_done(void)
{
    pthread_mutex_lock(&idle_mu);
    atomic_fetch_sub(&active, 1);
    pthread_cond_broadcast(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
}

/* hand_over — give st to a parked session thread; false when none is. */
static bool hand_over(struct session_start *st)
{
    pthread_mutex_lock(&park_mu);
    struct parked *p = parked;
    if (p) {
        parked = p->next;
        nparked--;
        p->st = st;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&park_mu);
    return p != NULL;
}

/* park — wait for the next connection; NULL after LISTENER_PARK_MS, once
 * the listener stopped, or when enough threads are parked already. */
static struct session_start *park(void)
{
    struct parked me = {.st = NULL};
    pthread_mutex_lock(&park_mu);
    if (park_closed || nparked >= LISTENER_PARKED_MAX || pthread_cond_init(&me.cv, NULL) != 0) {
        pthread_mutex_unlock(&park_mu);
        return NULL;
    }
    me.next = parked;
    parked = &me;
    nparked++;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += LISTENER_PARK_MS / 1000;
    ts.tv_nsec += (long)(LISTENER_PARK_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!me.st && !park_closed)
        if (pthread_cond_timedwait(&me.cv, &park_mu, &ts) == ETIMEDOUT)
            break;
    if (!me.st) { /* still in the list: leave it */
        struct parked **pp = &parked;
        while (*pp && *pp != &me)
            pp = &(*pp)->next;
        if (*pp) {
            *pp = me.next;
            nparked--;
        }
    }
    pthread_mutex_unlock(&park_mu);
    pthread_cond_destroy(&me.cv);
    return me.st;
}

static void *session_thread(void *arg)
{
    for (struct session_start *st = arg; st; st = park()) {
        session_run(st);
        client_leave((const struct sockaddr *)&st->peer);
        free(st);
        session_done();
    }
    return NULL;
}

/* refuse_busy — over a connection cap: a best-effort 421 and close,
 * without a thread (on the implicit-TLS port a plaintext reply would be
 * garbage, so it just closes). */
static void refuse_busy(int fd, bool implicit_tls, const char *what)
{
    STATS_INC(connections_rejected_total);
    if (!implicit_tls) {
        char line[CONFIG_HOSTNAME_MAX_BYTES + 80];
        int n = snprintf(line, sizeof line, "421 4.7.0 %s Too many connections%s; try again later\r\n",
                         config->hostname, what);
        if (n > 0)
            (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close(fd);
}

/* accept_failed — EMFILE, ENFILE, ENOBUFS, ENOMEM leave the listener
 * readable, so the next poll returns at once: pause instead of spinning
 * (sessions that end free descriptors), and warn once per interval with
 * the number of failures, not once per turn. */
static void accept_failed(int err)
{
    static int64_t last_log_ms, failures; /* the accept thread's alone */
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return;
    failures++;
    int64_t now = util_now_ms();
    if (last_log_ms == 0 || now - last_log_ms >= LISTENER_ACCEPT_LOG_EVERY_MS) {
        log_warn("accept", NULL, "%s (%lld failed accepts); pausing new connections",
                 err == EMFILE || err == ENFILE ? "out of file descriptors" : "accept failed",
                 (long long)failures);
        last_log_ms = now;
        failures = 0;
    }
    STATS_INC(accept_errors_total);
    poll(NULL, 0, LISTENER_ACCEPT_PAUSE_MS);
}

static void accept_one(const struct listen_sock *ls, pthread_attr_t *attr)
{
    struct session_start *st = calloc(1, sizeof *st);
    if (!st) {
        accept_failed(ENOMEM);
        return;
    }
    st->peer_len = sizeof st->peer;
    st->fd = accept4(ls->fd, (struct sockaddr *)&st->peer, &st->peer_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (st->fd < 0) {
        accept_failed(errno);
        free(st);
        return;
    }
    st->implicit_tls = ls->implicit_tls;
    st->listener = ls->kind;
    if (atomic_fetch_add(&active, 1) >= config->max_connections) {
        atomic_fetch_sub(&active, 1);
        refuse_busy(st->fd, ls->implicit_tls, "");
        free(st);
        return;
    }
    if (!client_enter((const struct sockaddr *)&st->peer)) {
        session_done();
        STATS_INC(connections_per_client_rejected_total);
        refuse_busy(st->fd, ls->implicit_tls, " from your address");
        free(st);
        return;
    }
    if (hand_over(st))
        return;
    pthread_t t;
    if (pthread_create(&t, attr, session_thread, st) != 0) {
        log_warn("accept", NULL, "cannot start a session thread");
        client_leave((const struct sockaddr *)&st->peer);
        session_done();
        refuse_busy(st->fd, ls->implicit_tls, "");
        free(st);
    }
}

static void *accept_loop(void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, LISTENER_STACK_BYTES);
    struct pollfd p[LISTENER_MAX + 1];
    for (int i = 0; i < nsocks; i++)
        p[i] = (struct pollfd){.fd = socks[i].fd, .events = POLLIN};
    p[nsocks] = (struct pollfd){.fd = util_drain_fd(), .events = POLLIN};
    while (!util_draining()) {
        int n = poll(p, (nfds_t)nsocks + 1, 1000);
        if (n <= 0 || p[nsocks].revents)
            continue;
        for (int i = 0; i < nsocks; i++)
            if (p[i].revents & POLLIN)
                accept_one(&socks[i], &attr);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

int listener_start(char *err, size_t err_len)
{
    crypto_random(&clients_seed, sizeof clients_seed);
    if (pthread_create(&accept_thread, NULL, accept_loop, NULL) != 0) {
        snprintf(err, err_len, "cannot start the accept thread");
        return -1;
    }
    accept_running = true;
    return 0;
}

void listener_stop(void)
{
    if (accept_running) {
        pthread_join(accept_thread, NULL); /* returns once the drain started */
        accept_running = false;
    }
    pthread_mutex_lock(&park_mu); /* parked threads end now */
    park_closed = true;
    for (struct parked *p = parked; p; p = p->next)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&park_mu);
    for (int i = 0; i < nsocks; i++)
        close(socks[i].fd);
    nsocks = 0;
}

int64_t listener_sessions(void)
{
    return atomic_load(&active);
}

bool listener_wait_idle(int64_t deadline_ms)
{
    pthread_mutex_lock(&idle_mu);
    while (atomic_load(&active) > 0) {
        int64_t left = deadline_ms - util_now_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
        ts.tv_sec += left / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&idle_cv, &idle_mu, &ts);
    }
    bool idle = atomic_load(&active) == 0;
    pthread_mutex_unlock(&idle_mu);
    return idle;
}
