/*
 * control — the queue control socket and its command-line client (see
 * control.h).
 */
#include "control.h"

#include "config.h"
#include "log.h"
#include "queue.h"
#include "spool.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_BODY_MAX_BYTES (8 * 1024 * 1024) /* a listing of a very long queue */

static struct {
    int fd, wake[2];
    pthread_t thread;
    bool running;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} C = {.fd = -1, .wake = {-1, -1}};

static const struct {
    const char *verb;
    enum queue_ctl op;
    bool needs_id, may_have_id;
} verbs[] = {
    {"LIST", QUEUE_CTL_LIST, false, false},     {"SHOW", QUEUE_CTL_SHOW, true, true},
    {"FLUSH", QUEUE_CTL_FLUSH, false, true},    {"HOLD", QUEUE_CTL_HOLD, true, true},
    {"RELEASE", QUEUE_CTL_RELEASE, true, true}, {"DELETE", QUEUE_CTL_DELETE, true, true},
};

static int socket_path(char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", config->spool_dir, CONTROL_SOCKET_NAME);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- the relay's side -------------------------------------------------------- */

/* read_request — one line, at most CONTROL_REQUEST_MAX_BYTES, before the
 * deadline; the newline is stripped.  -1 when it does not come. */
static int read_request(int fd, char *line, size_t cap, int64_t deadline)
{
    size_t len = 0;
    while (len + 1 < cap) {
        int64_t left = deadline - util_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        ssize_t n = recv(fd, line + len, cap - 1 - len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return -1;
        len += (size_t)n;
        char *nl = memchr(line, '\n', len);
        if (nl) {
            *nl = '\0';
            return 0;
        }
    }
    return -1;
}

/* send_all — everything, or until the deadline (a client that does not
 * read must not hold the control thread, nor the drain behind it). */
static void send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int64_t left = deadline - util_now_ms();
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (left <= 0 || poll(&pf, 1, (int)left) < 0)
                return;
            continue;
        }
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* peer_allowed — the socket's mode already keeps others out; this also
 * holds in the moment between bind() and chmod(). */
static bool peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    return cred.uid == 0 || cred.uid == geteuid();
}

/* parse — the verb and optional id of a request line; -1 when malformed. */
static int parse(const char *line, enum queue_ctl *op, char id[QUEUE_ID_BYTES])
{
    const char *sp = strchr(line, ' ');
    size_t vlen = sp ? (size_t)(sp - line) : strlen(line);
    id[0] = '\0';
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strlen(verbs[i].verb) != vlen || memcmp(line, verbs[i].verb, vlen) != 0)
            continue;
        if (sp && (!verbs[i].may_have_id || util_copy(id, QUEUE_ID_BYTES, sp + 1, strlen(sp + 1)) < 0 ||
                   !spool_valid_id(id)))
            return -1;
        if (!sp && verbs[i].needs_id)
            return -1;
        *op = verbs[i].op;
        return 0;
    }
    return -1;
}

static void serve_one(int fd)
{
    char line[CONTROL_REQUEST_MAX_BYTES], id[QUEUE_ID_BYTES];
    enum queue_ctl op;
    int64_t deadline = util_now_ms() + CONTROL_TIMEOUT_MS; /* the whole exchange */
    if (!peer_allowed(fd)) {
        static const char no[] = "ERR not allowed: run as the relay's user or root\n";
        send_all(fd, no, sizeof no - 1, deadline);
        return;
    }
    if (read_request(fd, line, sizeof line, deadline) < 0 || parse(line, &op, id) < 0) {
        static const char bad[] = "ERR malformed request\n";
        send_all(fd, bad, sizeof bad - 1, deadline);
        return;
    }
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f) {
        static const char oom[] = "ERR out of memory\n";
        send_all(fd, oom, sizeof oom - 1, deadline);
        return;
    }
    enum queue_ctl_result r = queue_control(op, id[0] ? id : NULL, f);
    fclose(f);
    const char *status = r == QUEUE_CTL_OK ? "OK\n" : r == QUEUE_CTL_NOT_FOUND ? "NOTFOUND\n" : "ERR\n";
    if (!body || len > CONTROL_BODY_MAX_BYTES) {
        static const char big[] = "ERR the answer is too large; use mrs queue show ID\n";
        send_all(fd, big, sizeof big - 1, deadline);
    } else {
        send_all(fd, status, strlen(status), deadline);
        send_all(fd, body, len, deadline);
    }
    free(body);
}

static void *serve(void *arg)
{
    struct pollfd p[2] = {{.fd = C.fd, .events = POLLIN}, {.fd = C.wake[0], .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(C.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            poll(NULL, 0, 100); /* EMFILE and the like: do not spin */
            continue;
        }
        serve_one(fd);
        close(fd);
    }
    return NULL;
}

int control_start(char *err, size_t err_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (socket_path(C.path, sizeof C.path) < 0) {
        /* the relay works without it: only `mrs queue show|flush|…` do not */
        log_warn("control", NULL, "MRS_SPOOL_DIR %s is too long for a UNIX socket path (at most %zu bytes): "
                 "no queue control socket, `mrs queue` lists the spool files only",
                 config->spool_dir, sizeof sa.sun_path - sizeof CONTROL_SOCKET_NAME - 1);
        return 0;
    }
    memcpy(sa.sun_path, C.path, sizeof C.path);
    struct stat st;
    if (lstat(C.path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(C.path); /* left by a relay that did not stop cleanly */
    C.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (C.fd < 0 || bind(C.fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(C.path, 0600) != 0 ||
        listen(C.fd, 8) != 0 || pipe2(C.wake, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: cannot listen on the control socket %s (errno %d)",
                 C.path, errno);
        control_stop();
        return -1;
    }
    if (pthread_create(&C.thread, NULL, serve, NULL) != 0) {
        snprintf(err, err_len, "cannot start the control thread");
        control_stop();
        return -1;
    }
    C.running = true;
    return 0;
}

void control_stop(void)
{
    if (C.running) {
        (void)!write(C.wake[1], "x", 1);
        pthread_join(C.thread, NULL);
        C.running = false;
    }
    if (C.fd >= 0) {
        close(C.fd);
        unlink(C.path);
    }
    for (int i = 0; i < 2; i++)
        if (C.wake[i] >= 0)
            close(C.wake[i]);
    C.fd = C.wake[0] = C.wake[1] = -1;
}

/* ---- the client: `mrs queue …` ----------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: mrs queue [list | show ID | flush [ID] | hold ID | release ID | delete ID]\n");
    return 2;
}

/* ask — send one request to the relay and read the whole answer into *out
 * (NUL-terminated).  -1 when the relay cannot be reached. */
static int ask(const char *request, char **out, size_t *out_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (socket_path(sa.sun_path, sizeof sa.sun_path) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    send_all(fd, request, strlen(request), util_now_ms() + CONTROL_TIMEOUT_MS);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int64_t deadline = util_now_ms() + 30000;
    while (buf) {
        if (len + 1 == cap) {
            char *b = cap < CONTROL_BODY_MAX_BYTES * 2 ? realloc(buf, cap * 2) : NULL;
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - util_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!buf || len == 0) {
        free(buf);
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

int control_cli(int argc, char **argv)
{
    const char *sub = argc > 2 ? argv[2] : "list";
    char request[CONTROL_REQUEST_MAX_BYTES];
    size_t i;
    for (i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcasecmp(sub, verbs[i].verb) == 0)
            break;
    if (i == sizeof verbs / sizeof verbs[0] || argc > 4 || (argc == 4 && !verbs[i].may_have_id) ||
        (argc < 4 && verbs[i].needs_id))
        return usage();
    if (argc == 4 && !spool_valid_id(argv[3])) {
        fprintf(stderr, "mrs queue: '%s' is not a queue id (20 characters, as `mrs queue` lists them)\n", argv[3]);
        return 1;
    }
    snprintf(request, sizeof request, "%s%s%s\n", verbs[i].verb, argc == 4 ? " " : "", argc == 4 ? argv[3] : "");
    char *answer = NULL;
    size_t len = 0;
    if (ask(request, &answer, &len) < 0) {
        if (verbs[i].op == QUEUE_CTL_LIST) {
            /* no relay: list the spool files, read-only, as before */
            fprintf(stderr, "mrs queue: the relay is not running (no %s/%s); reading the spool directly\n",
                    config->spool_dir, CONTROL_SOCKET_NAME);
            return spool_cli_list(stdout) == 0 ? 0 : 3;
        }
        fprintf(stderr, "mrs queue: the relay is not reachable through %s/%s: is it running, with the "
                "same MRS_SPOOL_DIR?\n", config->spool_dir, CONTROL_SOCKET_NAME);
        return 3;
    }
    char *nl = strchr(answer, '\n');
    const char *body = nl ? nl + 1 : "";
    if (nl)
        *nl = '\0';
    /* OK: done; NOTFOUND: no such message; ERR: refused (e.g. a flush of
     * a held message), which is also "not done" */
    int rc = strcmp(answer, "OK") == 0 ? 0 : 1;
    fputs(body, rc == 0 ? stdout : stderr);
    free(answer);
    return rc;
}
