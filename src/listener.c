/*
 * listener — bind, accept, connection cap, a thread per connection.
 *
 * `:PORT` binds the IPv6 wildcard with IPV6_V6ONLY off (IPv4 and IPv6 on one
 * socket) and falls back to 0.0.0.0 where the kernel has no IPv6.  The
 * accept thread polls every listening socket plus the drain eventfd.
 */
#include "listener.h"

#include "conn.h"
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
#include <unistd.h>

#define LISTENER_MAX 4
#define LISTENER_BACKLOG 1024

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

static void *session_thread(void *arg)
{
    struct session_start *st = arg;
    session_run(st);
    free(st);
    session_done();
    return NULL;
}

/* refuse_busy — over MRS_MAX_CONNECTIONS: a best-effort 421 and close,
 * without a thread (on the implicit-TLS port a plaintext reply would be
 * garbage, so it just closes). */
static void refuse_busy(int fd, bool implicit_tls)
{
    STATS_INC(connections_rejected_total);
    if (!implicit_tls) {
        char line[CONFIG_HOSTNAME_MAX_BYTES + 80];
        int n = snprintf(line, sizeof line, "421 4.7.0 %s Too many connections; try again later\r\n",
                         config->hostname);
        if (n > 0)
            (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close(fd);
}

static void accept_one(const struct listen_sock *ls, pthread_attr_t *attr)
{
    struct session_start *st = calloc(1, sizeof *st);
    if (!st)
        return;
    st->peer_len = sizeof st->peer;
    st->fd = accept4(ls->fd, (struct sockaddr *)&st->peer, &st->peer_len, SOCK_CLOEXEC);
    if (st->fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            log_warn("accept", NULL, "out of file descriptors");
        free(st);
        return;
    }
    st->implicit_tls = ls->implicit_tls;
    st->listener = ls->kind;
    if (atomic_fetch_add(&active, 1) >= config->max_connections) {
        atomic_fetch_sub(&active, 1);
        refuse_busy(st->fd, ls->implicit_tls);
        free(st);
        return;
    }
    pthread_t t;
    if (pthread_create(&t, attr, session_thread, st) != 0) {
        log_warn("accept", NULL, "cannot start a session thread");
        session_done();
        refuse_busy(st->fd, ls->implicit_tls);
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
