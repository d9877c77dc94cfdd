/*
 * queue — durable submission into the spool (see queue.h, docs/spool.md).
 *
 * The queue directory is fsynced by whichever committing thread finds no
 * sync in flight; threads whose rename happened before a sync started wait
 * for it, later ones for the next (group commit): N concurrent commits cost
 * about two directory fsyncs, not N.
 */
#include "queue.h"

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_WRITE_BUFFER_BYTES (64 * 1024)
#define QUEUE_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)

struct queue_msg {
    int fd;
    bool failed;
    size_t len;
    char id[QUEUE_ID_BYTES];
    char buf[QUEUE_WRITE_BUFFER_BYTES];
};

static int queue_dir_fd = -1;
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;
static uint64_t sync_requested, sync_done;
static int sync_error;
static bool syncing;

void queue_dir(const char *sub, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", config->spool_dir, sub);
}

static void msg_path(const char *sub, const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s/%s", config->spool_dir, sub, id);
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
    }
    return -1;
}

static void remove_tmp_leftovers(void)
{
    char dir[QUEUE_PATH_MAX_BYTES];
    queue_dir("tmp", dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    int dfd = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (unlinkat(dfd, e->d_name, 0) == 0)
            log_info("spool", NULL, "removed unfinished tmp/%s left by an earlier run", e->d_name);
    }
    closedir(d);
}

static int64_t count_queue(void)
{
    char dir[QUEUE_PATH_MAX_BYTES];
    queue_dir("queue", dir, sizeof dir);
    DIR *d = opendir(dir);
    int64_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.' && strchr(e->d_name, '.') == NULL;
    closedir(d);
    return n;
}

int queue_init(char *err, size_t err_len)
{
    static const char *const subs[] = {"tmp", "queue"};
    char path[QUEUE_PATH_MAX_BYTES];
    if (make_dir(config->spool_dir) < 0) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: cannot create %s (errno %d)", config->spool_dir, errno);
        return -1;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        queue_dir(subs[i], path, sizeof path);
        if (make_dir(path) < 0) {
            snprintf(err, err_len, "MRS_SPOOL_DIR: cannot create %s (errno %d)", path, errno);
            return -1;
        }
    }
    queue_dir("queue", path, sizeof path);
    if (queue_dir_fd < 0 && (queue_dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: cannot open %s (errno %d)", path, errno);
        return -1;
    }
    if (!queue_writable()) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: %s is not writable", config->spool_dir);
        return -1;
    }
    remove_tmp_leftovers();
    STATS_SET(queue_depth, count_queue());
    return 0;
}

bool queue_writable(void)
{
    char path[QUEUE_PATH_MAX_BYTES];
    char id[QUEUE_ID_BYTES];
    queue_new_id(id);
    snprintf(path, sizeof path, "%s/tmp/.probe-%s", config->spool_dir, id);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    close(fd);
    unlink(path);
    return true;
}

void queue_new_id(char id[QUEUE_ID_BYTES])
{
    /* 12 hex digits of milliseconds (sorts by age) + 8 random hex digits */
    uint8_t r[4];
    crypto_random(r, sizeof r);
    snprintf(id, QUEUE_ID_BYTES, "%012llx%02x%02x%02x%02x",
             (unsigned long long)util_wall_ms() & 0xffffffffffffULL, r[0], r[1], r[2], r[3]);
}

static int flush_buf(struct queue_msg *m)
{
    size_t off = 0;
    while (off < m->len && !m->failed) {
        ssize_t n = write(m->fd, m->buf + off, m->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            m->failed = true;
        else
            off += (size_t)n;
    }
    m->len = 0;
    return m->failed ? -1 : 0;
}

int queue_write(struct queue_msg *m, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0 && !m->failed) {
        if (m->len == sizeof m->buf && flush_buf(m) < 0)
            break;
        size_t n = sizeof m->buf - m->len < len ? sizeof m->buf - m->len : len;
        memcpy(m->buf + m->len, p, n);
        m->len += n;
        p += n;
        len -= n;
    }
    return m->failed ? -1 : 0;
}

static int write_line(struct queue_msg *m, const char *key, const char *value)
{
    return queue_write(m, key, strlen(key)) | queue_write(m, " ", 1) |
           queue_write(m, value, strlen(value)) | queue_write(m, "\n", 1);
}

struct queue_msg *queue_open(const char *id, const struct queue_envelope *env)
{
    char path[QUEUE_PATH_MAX_BYTES], when[32];
    struct queue_msg *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    m->len = 0;
    m->failed = false;
    snprintf(m->id, sizeof m->id, "%s", id);
    msg_path("tmp", id, path, sizeof path);
    m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (m->fd < 0) {
        int e = errno;
        free(m);
        errno = e;
        return NULL;
    }
    snprintf(when, sizeof when, "%lld", (long long)env->received_ms);
    queue_write(m, QUEUE_SPOOL_VERSION "\n", sizeof QUEUE_SPOOL_VERSION);
    write_line(m, "id", id);
    write_line(m, "received", when);
    write_line(m, "user", env->user);
    write_line(m, "client", env->client);
    write_line(m, "helo", env->helo);
    write_line(m, "body", env->eightbit ? "8bitmime" : "7bit");
    write_line(m, "from", env->from);
    for (size_t i = 0; i < env->rcpt_count; i++)
        write_line(m, "rcpt", env->rcpts[i]);
    queue_write(m, "\n", 1);
    return m;
}

/* sync_queue_dir — group commit of the directory entry (see the top). */
static int sync_queue_dir(void)
{
    pthread_mutex_lock(&sync_mu);
    uint64_t mine = ++sync_requested;
    int rc = 0;
    while (sync_done < mine) {
        if (!syncing) {
            syncing = true;
            uint64_t covers = sync_requested;
            pthread_mutex_unlock(&sync_mu);
            int r = fsync(queue_dir_fd);
            pthread_mutex_lock(&sync_mu);
            syncing = false;
            sync_error = r;
            sync_done = covers;
            pthread_cond_broadcast(&sync_cv);
            rc = r;
        } else {
            pthread_cond_wait(&sync_cv, &sync_mu);
            rc = sync_error;
        }
    }
    pthread_mutex_unlock(&sync_mu);
    return rc;
}

int queue_commit(struct queue_msg *m)
{
    char from[QUEUE_PATH_MAX_BYTES], to[QUEUE_PATH_MAX_BYTES];
    msg_path("tmp", m->id, from, sizeof from);
    msg_path("queue", m->id, to, sizeof to);
    int rc = flush_buf(m);
    if (rc == 0 && fsync(m->fd) != 0)
        rc = -1;
    if (close(m->fd) != 0)
        rc = -1;
    m->fd = -1;
    if (rc == 0 && rename(from, to) != 0)
        rc = -1;
    if (rc == 0 && sync_queue_dir() != 0) {
        /* the rename may or may not survive a crash: withdraw it, so no
         * message is delivered that was not acknowledged */
        unlink(to);
        rc = -1;
    }
    if (rc != 0) {
        log_error("spool", &(struct log_fields){.queue_id = m->id}, "committing the message failed (errno %d)", errno);
        unlink(from);
    } else {
        STATS_INC(queue_depth);
    }
    free(m);
    return rc;
}

void queue_abort(struct queue_msg *m)
{
    char path[QUEUE_PATH_MAX_BYTES];
    if (!m)
        return;
    msg_path("tmp", m->id, path, sizeof path);
    if (m->fd >= 0)
        close(m->fd);
    unlink(path);
    free(m);
}
