/*
 * listener — bind, accept, connection cap, a thread per connection.
 *
 * `:PORT` binds the IPv6 wildcard with IPV6_V6ONLY off (IPv4 and IPv6 on one
 * socket) and falls back to 0.0.0.0 where the kernel has no IPv6.
 *
 * Two caps: MRS_MAX_CONNECTIONS sessions in all, and
 * MRS_MAX_CONNECTIONS_PER_CLIENT per client (util_client_key: an IPv4
 * address or an IPv6 /64), counted in a small chained hash table under
 * clients_mu; a session thread leaves it when its session ends.
 *
 * Accepting: idle session threads wait in epoll_wait on one epoll instance
 * holding every listening socket and the drain eventfd; the kernel wakes
 * one of them per connection, which accepts it and runs its session.  One
 * wake-up per connection: an accept thread handing connections to parked
 * threads cost two (its own and the parked thread's), often on the other
 * CPU.  A listening socket is EPOLLONESHOT, re-armed right after accept4,
 * so a connection wakes one thread, not every waiter in turn.
 *
 * Still one thread per session; an ended session's thread goes back to
 * waiting (at most LISTENER_PARKED_MAX wait; one waiting LISTENER_PARK_MS
 * without a connection ends, except the first thread, the anchor, and the
 * last one).  The thread that takes the last idle thread's place starts a
 * new one before its session, so a connection always finds a waiter.
 * Reuse saves a thread's creation and exit per connection (its stack's
 * mmap, munmap with the TLB flush on every CPU, the page faults of a fresh
 * stack).
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
#include <sys/epoll.h>
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
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;

/* Idle session threads, each waiting in epoll_wait on ep_fd: the listening
 * sockets (EPOLLONESHOT, re-armed right after each accept) and the drain
 * eventfd.  The kernel wakes one waiter per event. */
#define LISTENER_DRAIN_MARK LISTENER_MAX
static int ep_fd = -1;
static bool started;
static pthread_attr_t thread_attr;
static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t threads_cv = PTHREAD_COND_INITIALIZER; /* idle_threads went down */
static int idle_threads;

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

/* refuse_busy — over a connection cap: a best-effort 421 and close (on
 * the implicit-TLS port a plaintext reply would be garbage, so it just
 * closes). */
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
 * readable, so the next wait returns at once: pause instead of spinning
 * (sessions that end free descriptors), and warn once per interval with
 * the number of failures, not once per failure. */
static void accept_failed(int err)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int64_t last_log_ms, failures;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return;
    pthread_mutex_lock(&mu);
    failures++;
    int64_t now = util_now_ms(), n = 0;
    if (last_log_ms == 0 || now - last_log_ms >= LISTENER_ACCEPT_LOG_EVERY_MS) {
        n = failures;
        last_log_ms = now;
        failures = 0;
    }
    pthread_mutex_unlock(&mu);
    if (n)
        log_warn("accept", NULL, "%s (%lld failed accepts); pausing new connections",
                 err == EMFILE || err == ENFILE ? "out of file descriptors" : "accept failed", (long long)n);
    STATS_INC(accept_errors_total);
    poll(NULL, 0, LISTENER_ACCEPT_PAUSE_MS);
}

/* rearm — let the next waiter have listening socket i's next connection. */
static void rearm(int i)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep_fd, EPOLL_CTL_MOD, socks[i].fd, &ev) < 0)
        log_error("accept", NULL, "cannot re-arm a listening socket (epoll_ctl: %m): it accepts no more");
}

/* accept_one — one connection from listening socket i into st, counted
 * against both caps; false when there was none or it was refused. */
static bool accept_one(int i, struct session_start *st)
{
    const struct listen_sock *ls = &socks[i];
    memset(st, 0, sizeof *st);
    st->peer_len = sizeof st->peer;
    st->fd = accept4(ls->fd, (struct sockaddr *)&st->peer, &st->peer_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (st->fd < 0) {
        accept_failed(errno); /* EMFILE and the like pause before the next waiter tries */
        rearm(i);
        return false;
    }
    rearm(i); /* the next connection goes to the next waiter while this one is set up */
    st->implicit_tls = ls->implicit_tls;
    st->listener = ls->kind;
    if (atomic_fetch_add(&active, 1) >= config->max_connections) {
        atomic_fetch_sub(&active, 1);
        refuse_busy(st->fd, ls->implicit_tls, "");
        return false;
    }
    if (!client_enter((const struct sockaddr *)&st->peer)) {
        session_done();
        STATS_INC(connections_per_client_rejected_total);
        refuse_busy(st->fd, ls->implicit_tls, " from your address");
        return false;
    }
    return true;
}

static void *session_thread(void *arg);

/* spawn — one more idle thread (the caller counted it in idle_threads);
 * false (counted out again) when it cannot be started. */
static bool spawn(void)
{
    pthread_t t;
    if (pthread_create(&t, &thread_attr, session_thread, NULL) == 0)
        return true;
    pthread_mutex_lock(&threads_mu);
    idle_threads--;
    pthread_cond_broadcast(&threads_cv);
    pthread_mutex_unlock(&threads_mu);
    return false;
}

/* take_connection — as an idle thread (counted in idle_threads): wait for
 * a connection and accept it into st (true: this thread is no longer
 * idle), or end (false, counted out): at the drain, or after
 * LISTENER_PARK_MS without a connection unless it is the anchor or the
 * last idle thread.  The thread that takes the last idle one's place
 * starts a new idle thread first, so a connection always finds one. */
static bool take_connection(bool anchor, struct session_start *st)
{
    for (;;) {
        struct epoll_event ev;
        int n = util_draining() ? 0 : epoll_wait(ep_fd, &ev, 1, anchor ? -1 : LISTENER_PARK_MS);
        if (n < 0 && errno == EINTR)
            continue;
        bool drain = util_draining() || (n == 1 && ev.data.u32 == LISTENER_DRAIN_MARK);
        bool got = !drain && n == 1 && accept_one((int)ev.data.u32, st);
        pthread_mutex_lock(&threads_mu);
        bool leave = drain || (n == 0 && !anchor && idle_threads > 1);
        bool more = false;
        if (got || leave) {
            idle_threads--;
            more = got && idle_threads == 0 && !util_draining();
            if (more)
                idle_threads++; /* the one spawn() starts */
            pthread_cond_broadcast(&threads_cv);
        }
        pthread_mutex_unlock(&threads_mu);
        if (more && !spawn()) {
            /* no thread to wait for the next connection: this one stays the
             * waiter, and this connection gets a 421 as when no session
             * thread could be started */
            log_warn("accept", NULL, "cannot start a session thread");
            client_leave((const struct sockaddr *)&st->peer);
            session_done();
            refuse_busy(st->fd, st->implicit_tls, "");
            pthread_mutex_lock(&threads_mu);
            idle_threads++;
            pthread_mutex_unlock(&threads_mu);
            continue;
        }
        if (got)
            return true;
        if (leave)
            return false;
        if (n < 0)
            poll(NULL, 0, LISTENER_ACCEPT_PAUSE_MS); /* EBADF and the like: do not spin */
    }
}

/* become_idle — after a session: back to waiting, unless the drain
 * started or LISTENER_PARKED_MAX threads wait already (the anchor always
 * goes back). */
static bool become_idle(bool anchor)
{
    pthread_mutex_lock(&threads_mu);
    bool ok = !util_draining() && (anchor || idle_threads < LISTENER_PARKED_MAX);
    if (ok)
        idle_threads++;
    pthread_mutex_unlock(&threads_mu);
    return ok;
}

/* session_thread — arg non-NULL for the anchor, the first thread, which
 * never ends for want of connections. */
static void *session_thread(void *arg)
{
    bool anchor = arg != NULL;
    struct session_start st;
    while (take_connection(anchor, &st)) {
        session_run(&st);
        client_leave((const struct sockaddr *)&st.peer);
        session_done();
        if (!become_idle(anchor))
            break;
    }
    return NULL;
}

int listener_start(char *err, size_t err_len)
{
    crypto_random(&clients_seed, sizeof clients_seed);
    ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (ep_fd < 0) {
        snprintf(err, err_len, "cannot create the accept epoll instance");
        return -1;
    }
    for (int i = 0; i <= nsocks; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = LISTENER_DRAIN_MARK};
        if (i < nsocks)
            ev = (struct epoll_event){.events = EPOLLIN | EPOLLONESHOT, .data.u32 = (uint32_t)i};
        int fd = i < nsocks ? socks[i].fd : util_drain_fd();
        if (fd >= 0 && epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            snprintf(err, err_len, "cannot watch a listening socket (epoll_ctl)");
            return -1;
        }
    }
    pthread_attr_init(&thread_attr);
    pthread_attr_setdetachstate(&thread_attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&thread_attr, LISTENER_STACK_BYTES);
    idle_threads = 1;
    pthread_t t;
    static char anchor_mark;
    if (pthread_create(&t, &thread_attr, session_thread, &anchor_mark) != 0) {
        idle_threads = 0;
        snprintf(err, err_len, "cannot start the first session thread");
        return -1;
    }
    started = true;
    return 0;
}

void listener_stop(void)
{
    if (started) {
        /* the drain started: idle threads end (the drain eventfd wakes
         * them in turn); none may be inside accept4 when the sockets close.
         * Threads running a session do not count and are not waited for. */
        pthread_mutex_lock(&threads_mu);
        while (idle_threads > 0)
            pthread_cond_wait(&threads_cv, &threads_mu);
        pthread_mutex_unlock(&threads_mu);
        close(ep_fd);
        ep_fd = -1;
        started = false;
    }
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
