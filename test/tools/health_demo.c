/*
 * health_demo — drive the health listener without the relay, for
 * developing health.c and trying probes by hand.
 *
 *   health_demo serve                  MRS_* variables as for `mrs serve`
 *   health_demo healthcheck [HOST:PORT] as `mrs healthcheck`
 *
 * serve binds MRS_HEALTH_LISTEN, marks every readiness condition ok except
 * those named in HEALTH_DEMO_FAILING (comma-separated: listeners, tls,
 * users, spool, resolver, started), probes MRS_SPOOL_DIR/tmp (creating it
 * at start, as the queue does), and accepts on MRS_SUBMISSION_LISTEN with a
 * stub that only greets ("220 … ESMTP health_demo") and waits for the
 * client to close, so a drain can be watched: SIGTERM or SIGINT → /readyz
 * 503, exit 0 once the stub sessions are closed or MRS_SHUTDOWN_GRACE
 * passed.  Lines on stdin: "ok NAME", "fail NAME [reason]", "drain",
 * "count" (bumps a few counters), "quit".
 *
 * Single-threaded apart from the health threads; test tool, not shipped.
 */
#include "config.h"
#include "health.h"
#include "log.h"
#include "stats.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define DEMO_CONNS_MAX 64

static const char *const names[HEALTH_COND_COUNT] = {"listeners", "tls",      "users",
                                                     "spool",     "resolver", "started"};

struct demo {
    struct pollfd fds[3 + DEMO_CONNS_MAX]; /* signal, stdin, listener, sessions */
    int nconns;
    int draining;
    int64_t deadline_ms;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cond_of(const char *name, size_t len)
{
    for (int c = 0; c < HEALTH_COND_COUNT; c++)
        if (strlen(names[c]) == len && memcmp(names[c], name, len) == 0)
            return c;
    return -1;
}

static void set_conditions(void)
{
    const char *failing = getenv("HEALTH_DEMO_FAILING");
    for (int c = 0; c < HEALTH_COND_COUNT; c++)
        health_set((enum health_cond)c, 1, NULL);
    for (const char *p = failing; p && *p;) {
        size_t n = strcspn(p, ",");
        int c = cond_of(p, n);
        if (c >= 0)
            health_set((enum health_cond)c, 0, NULL);
        p += n + (p[n] == ',');
    }
}

/* stub_listen — the fake SMTP listener on MRS_SUBMISSION_LISTEN. */
static int stub_listen(const struct config_listen *l)
{
    if (l->off)
        return -1;
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(l->port)};
    const struct sockaddr *sa = (const struct sockaddr *)&l->addr;
    socklen_t sl = l->addr_len;
    if (l->any) {
        v6.sin6_addr = in6addr_any;
        sa = (const struct sockaddr *)&v6;
        sl = sizeof v6;
    }
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l->any)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (fd < 0 || bind(fd, sa, sl) < 0 || listen(fd, 16) < 0) {
        fprintf(stderr, "health_demo: cannot listen on %s: %m\n", l->text);
        exit(1);
    }
    return fd;
}

static void command(struct demo *d, char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = '\0';
    size_t alen = arg ? strcspn(arg, " ") : 0;
    int c = arg ? cond_of(arg, alen) : -1;
    if (!strcmp(line, "ok") && c >= 0)
        health_set((enum health_cond)c, 1, NULL);
    else if (!strcmp(line, "fail") && c >= 0)
        health_set((enum health_cond)c, 0, arg[alen] ? arg + alen + 1 : NULL);
    else if (!strcmp(line, "drain"))
        health_set_draining();
    else if (!strcmp(line, "count")) {
        STATS_INC(sessions_total[STATS_SUBMISSION]);
        STATS_INC(messages_refused_total[STATS_REFUSED_SPF]);
        STATS_INC(deliveries_total[STATS_DELIVERED]);
    } else if (!strcmp(line, "quit"))
        d->deadline_ms = 0, d->draining = 1;
    else
        fprintf(stderr, "health_demo: ok NAME | fail NAME [reason] | drain | count | quit\n");
}

static void on_readable(struct demo *d, int i)
{
    char buf[512];
    int fd = d->fds[i].fd;
    if (i == 0) { /* SIGTERM / SIGINT */
        struct signalfd_siginfo si;
        if (read(fd, &si, sizeof si) > 0 && !d->draining) {
            d->draining = 1;
            d->deadline_ms = mono_ms() + config->shutdown_grace_ms;
            health_set_draining();
        }
    } else if (i == 1) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0) {
            d->fds[1].fd = -1; /* stdin closed: carry on */
            return;
        }
        buf[n] = '\0';
        command(d, buf);
    } else if (i == 2) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0 || d->nconns == DEMO_CONNS_MAX) {
            if (c >= 0)
                close(c);
            return;
        }
        int k = snprintf(buf, sizeof buf, "220 %s ESMTP health_demo\r\n", config->hostname);
        if (k > 0 && write(c, buf, (size_t)k) < 0)
            fprintf(stderr, "health_demo: banner: %m\n");
        d->fds[3 + d->nconns++] = (struct pollfd){.fd = c, .events = POLLIN};
    } else if (read(fd, buf, sizeof buf) <= 0) {
        close(fd);
        d->fds[i] = d->fds[3 + --d->nconns];
    }
}

static int serve(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts */
    struct demo d = {.nconns = 0};
    d.fds[0] = (struct pollfd){.fd = signalfd(-1, &set, SFD_CLOEXEC), .events = POLLIN};
    d.fds[1] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    if (health_start(&config->health, err, sizeof err) < 0) {
        fprintf(stderr, "health_demo: %s\n", err);
        return 1;
    }
    char tmp[CONFIG_PATH_MAX_BYTES + 8];
    snprintf(tmp, sizeof tmp, "%s/tmp", config->spool_dir);
    mkdir(config->spool_dir, 0700);
    mkdir(tmp, 0700);
    health_set_spool_dir(config->spool_dir);
    d.fds[2] = (struct pollfd){.fd = stub_listen(&config->submission), .events = POLLIN};
    set_conditions();
    while (!d.draining || (d.nconns > 0 && mono_ms() < d.deadline_ms)) {
        if (poll(d.fds, (nfds_t)(3 + d.nconns), 100) < 0 && errno != EINTR)
            break;
        for (int i = 3 + d.nconns - 1; i >= 0; i--)
            if (d.fds[i].fd >= 0 && (d.fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                on_readable(&d, i);
    }
    health_stop();
    return 0;
}

int main(int argc, char **argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    if (config_load(err, sizeof err) < 0) {
        fprintf(stderr, "health_demo: %s\n", err);
        return 2;
    }
    log_init(config->log_format == CONFIG_LOG_JSON, (enum log_level)config->log_level);
    if (argc >= 2 && !strcmp(argv[1], "healthcheck"))
        return health_cli(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return serve();
    fprintf(stderr, "usage: health_demo serve | healthcheck [HOST:PORT]\n");
    return 2;
}
