/*
 * queue — durable submission into the spool, the delivery schedule, state
 * writes and removal (see queue.h, docs/spool.md).
 *
 * The queue directory is fsynced by whichever committing thread finds no
 * sync in flight; threads whose rename happened before a sync started wait
 * for it, later ones for the next (group commit): N concurrent commits cost
 * about two directory fsyncs, not N.  State files use the same sync.
 *
 * The schedule: one item per committed message, kept in a list ordered by
 * arrival (its head is the oldest message, for the gauge) and, while not
 * claimed, in a binary min-heap ordered by due time (monotonic clock) then
 * by a sequence number (first in, first out among equals).  The heap's
 * capacity is reserved when an item is created (queue_open, recovery), so
 * queue_commit and queue_release never allocate and cannot fail.  One
 * mutex (sched_mu) guards all of it; no file I/O happens under it.
 */
#include "queue.h"

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "spool.h"
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
#include <time.h>
#include <unistd.h>

#define QUEUE_WRITE_BUFFER_BYTES (64 * 1024)
#define QUEUE_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)
#define QUEUE_NOT_IN_HEAP SIZE_MAX
#define QUEUE_ITEMS_MAX 10000000 /* a spool larger than this is not indexed further */

struct queue_item {
    char id[QUEUE_ID_BYTES];
    int64_t due_ms;            /* monotonic clock */
    uint64_t seq;              /* FIFO among equal due times */
    int64_t received_ms;       /* wall clock, from the id */
    size_t heap_pos;           /* QUEUE_NOT_IN_HEAP while claimed or not committed */
    bool listed;               /* in the arrival list (committed) */
    struct queue_item *older, *newer;
    /* operator control (queue_control), under sched_mu */
    bool claimed;              /* a delivery thread holds it */
    bool on_hold;              /* not delivered until released; due only at its expiry */
    bool hold_expired;         /* handed out on hold at its expiry: bounce, do not try */
    bool delete_asked;         /* deleted while claimed: removed when handed back */
};

struct queue_msg {
    int fd;
    bool failed;
    size_t len;
    struct queue_item *item;   /* reserved at open, scheduled at commit */
    char id[QUEUE_ID_BYTES];
    char buf[QUEUE_WRITE_BUFFER_BYTES];
};

static int queue_dir_fd = -1;
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;
static uint64_t sync_requested, sync_done;
static int sync_error;
static bool syncing;

/* the schedule (see the top) */
static pthread_mutex_t sched_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sched_cv;            /* CLOCK_MONOTONIC, set up in queue_init */
static pthread_once_t sched_once = PTHREAD_ONCE_INIT;
static struct queue_item **heap;
static size_t heap_len, heap_cap, items_live, items_listed;
static struct queue_item *oldest, *newest;
static uint64_t next_seq;
static bool stopping, indexed;

static void sched_setup(void);
static int recover(void);
static struct queue_item *item_new(const char *id);
static void item_free(struct queue_item *it);
static void sched_add(struct queue_item *it, int64_t due_ms);

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
    pthread_once(&sched_once, sched_setup);
    if (!indexed && recover() < 0) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: cannot read %s (errno %d)", path, errno);
        return -1;
    }
    indexed = true;
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
    if (!m || !(m->item = item_new(id))) {
        free(m);
        errno = ENOMEM;
        return NULL;
    }
    m->len = 0;
    m->failed = false;
    snprintf(m->id, sizeof m->id, "%s", id);
    msg_path("tmp", id, path, sizeof path);
    m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (m->fd < 0) {
        int e = errno;
        item_free(m->item);
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
        item_free(m->item);
    } else {
        sched_add(m->item, util_now_ms()); /* due at once: a worker wakes now */
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
    item_free(m->item);
    free(m);
}

/* ---- the schedule ---------------------------------------------------------- */

static void sched_setup(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&sched_cv, &a);
    pthread_condattr_destroy(&a);
}

static bool item_before(const struct queue_item *a, const struct queue_item *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_set(size_t i, struct queue_item *it)
{
    heap[i] = it;
    it->heap_pos = i;
}

static void heap_up(size_t i)
{
    struct queue_item *it = heap[i];
    while (i > 0 && item_before(it, heap[(i - 1) / 2])) {
        heap_set(i, heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(i, it);
}

static void heap_down(size_t i)
{
    struct queue_item *it = heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_len)
            break;
        if (c + 1 < heap_len && item_before(heap[c + 1], heap[c]))
            c++;
        if (!item_before(heap[c], it))
            break;
        heap_set(i, heap[c]);
        i = c;
    }
    heap_set(i, it);
}

/* heap_push — capacity is reserved (item_new), so this cannot fail. */
static void heap_push(struct queue_item *it, int64_t due_ms)
{
    if (heap_len >= heap_cap)
        log_panic("queue: schedule heap over its reserved capacity");
    it->due_ms = due_ms;
    it->seq = next_seq++;
    heap_set(heap_len++, it);
    heap_up(heap_len - 1);
}

static struct queue_item *heap_pop(void)
{
    struct queue_item *top = heap[0];
    if (--heap_len > 0) {
        heap_set(0, heap[heap_len]);
        heap_down(0);
    }
    top->heap_pos = QUEUE_NOT_IN_HEAP;
    return top;
}

/* item_new — an item for id, with a heap slot reserved for it.  NULL when
 * out of memory. */
static struct queue_item *item_new(const char *id)
{
    struct queue_item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    snprintf(it->id, sizeof it->id, "%s", id);
    it->received_ms = spool_id_ms(id);
    it->heap_pos = QUEUE_NOT_IN_HEAP;
    pthread_mutex_lock(&sched_mu);
    if (items_live >= heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 256;
        struct queue_item **h = items_live < QUEUE_ITEMS_MAX ? realloc(heap, cap * sizeof *h) : NULL;
        if (!h) {
            pthread_mutex_unlock(&sched_mu);
            free(it);
            return NULL;
        }
        heap = h;
        heap_cap = cap;
    }
    items_live++;
    pthread_mutex_unlock(&sched_mu);
    return it;
}

/* set_oldest_gauge — under sched_mu. */
static void set_oldest_gauge(void)
{
    STATS_SET(queue_oldest_ms, oldest ? oldest->received_ms : 0);
    STATS_SET(queue_depth, (int64_t)items_listed);
}

/* item_free — unlist (when listed) and free an item not in the heap. */
static void item_free(struct queue_item *it)
{
    pthread_mutex_lock(&sched_mu);
    if (it->listed) {
        *(it->older ? &it->older->newer : &oldest) = it->newer;
        *(it->newer ? &it->newer->older : &newest) = it->older;
        items_listed--;
        set_oldest_gauge();
    }
    items_live--;
    pthread_mutex_unlock(&sched_mu);
    free(it);
}

/* sched_add — list a committed message by arrival (almost always at the
 * newest end) and make it due at due_ms; wake one waiting worker. */
static void sched_add(struct queue_item *it, int64_t due_ms)
{
    pthread_mutex_lock(&sched_mu);
    struct queue_item *after = newest;
    while (after && after->received_ms > it->received_ms)
        after = after->older;
    it->older = after;
    it->newer = after ? after->newer : oldest;
    *(it->newer ? &it->newer->older : &newest) = it;
    *(after ? &after->newer : &oldest) = it;
    it->listed = true;
    items_listed++;
    set_oldest_gauge();
    heap_push(it, due_ms);
    pthread_cond_signal(&sched_cv);
    pthread_mutex_unlock(&sched_mu);
}

struct queue_item *queue_claim(void)
{
    pthread_mutex_lock(&sched_mu);
    for (;;) {
        if (stopping) {
            pthread_mutex_unlock(&sched_mu);
            return NULL;
        }
        int64_t now = util_now_ms();
        if (heap_len > 0 && heap[0]->due_ms <= now) {
            struct queue_item *it = heap_pop();
            it->claimed = true;
            /* decided here, under the lock: a hold that arrives while the
             * thread works must not turn a normal attempt into a bounce */
            it->hold_expired = it->on_hold && util_wall_ms() >= it->received_ms + config->queue_lifetime_ms;
            pthread_mutex_unlock(&sched_mu);
            return it;
        }
        if (heap_len == 0) {
            pthread_cond_wait(&sched_cv, &sched_mu);
            continue;
        }
        struct timespec ts = {.tv_sec = heap[0]->due_ms / 1000, .tv_nsec = heap[0]->due_ms % 1000 * 1000000};
        pthread_cond_timedwait(&sched_cv, &sched_mu, &ts);
    }
}

const char *queue_item_id(const struct queue_item *it)
{
    return it->id;
}

/* mono_from_wall — a wall-clock time as the monotonic clock's value. */
static int64_t mono_from_wall(int64_t wall_ms)
{
    int64_t now = util_now_ms(), delta = wall_ms - util_wall_ms();
    return delta > 0 ? now + delta : now;
}

static int remove_files(const char *id);
static void drop_hold(struct queue_item *it);

void queue_release(struct queue_item *it, int64_t due_wall_ms)
{
    int64_t due = mono_from_wall(due_wall_ms);
    pthread_mutex_lock(&sched_mu);
    it->claimed = false;
    it->hold_expired = false;
    if (it->delete_asked) {
        pthread_mutex_unlock(&sched_mu);
        if (remove_files(it->id) == 0) {
            drop_hold(it);
            item_free(it);
            return;
        }
        pthread_mutex_lock(&sched_mu); /* cannot remove it: it stays queued */
        it->delete_asked = false;
    }
    if (it->on_hold)
        due = mono_from_wall(it->received_ms + config->queue_lifetime_ms);
    heap_push(it, due);
    pthread_cond_signal(&sched_cv);
    pthread_mutex_unlock(&sched_mu);
}

bool queue_item_hold_expired(const struct queue_item *it)
{
    pthread_mutex_lock(&sched_mu);
    bool expired = it->hold_expired;
    pthread_mutex_unlock(&sched_mu);
    return expired;
}

void queue_stop(void)
{
    pthread_mutex_lock(&sched_mu);
    stopping = true;
    pthread_cond_broadcast(&sched_cv);
    pthread_mutex_unlock(&sched_mu);
}

/* ---- recovery -------------------------------------------------------------- */

/* recovered_due — when a message found at start is due: at once when it
 * has recipients never attempted (it was in flight when the process died)
 * or nothing left to try (only its bounce or removal was missing), else at
 * its next attempt.  A message we cannot read is due at once too: the
 * delivery thread decides what to do with it. */
static int64_t recovered_due(const char *id)
{
    struct spool_message m;
    char err[256];
    if (spool_load(id, &m, false, err, sizeof err) < 0)
        return util_now_ms();
    bool now = !m.has_state || m.next_ms == 0;
    size_t open = 0;
    for (size_t i = 0; i < m.rcpt_count; i++) {
        now |= m.rcpts[i].status == SPOOL_PENDING;
        open += m.rcpts[i].status == SPOOL_PENDING || m.rcpts[i].status == SPOOL_DEFERRED;
    }
    int64_t due = now || open == 0 ? util_now_ms() : mono_from_wall(m.next_ms);
    spool_free(&m);
    return due;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_name(char **names, size_t n, const char *want)
{
    return bsearch(&want, names, n, sizeof *names, cmp_names) != NULL;
}

/* read_names — the entries of queue/ (heap strings), sorted. */
static char **read_names(DIR *d, size_t *count)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) && n < QUEUE_ITEMS_MAX;) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **p = realloc(names, (cap ? cap * 2 : 256) * sizeof *p);
            if (!p)
                break;
            names = p;
            cap = cap ? cap * 2 : 256;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    *count = n;
    return names;
}

/* recover — index every message of queue/ (oldest first) and remove state
 * files whose message is gone (a crash between the two unlinks). */
static int recover(void)
{
    char dir[QUEUE_PATH_MAX_BYTES], id[QUEUE_ID_BYTES + 8];
    queue_dir("queue", dir, sizeof dir);
    DIR *d = opendir(dir);
    size_t n = 0, count = 0, held = 0;
    if (!d)
        return -1;
    char **names = read_names(d, &n);
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(names[i], '.');
        if (dot && !strcmp(dot, ".state") && (size_t)(dot - names[i]) < sizeof id) {
            snprintf(id, sizeof id, "%.*s", (int)(dot - names[i]), names[i]);
            if (!has_name(names, n, id) && unlinkat(dirfd(d), names[i], 0) == 0)
                log_info("spool", &(struct log_fields){.queue_id = id}, "removed the state file of a finished message");
        } else if (dot && !strcmp(dot, QUEUE_HOLD_SUFFIX) && (size_t)(dot - names[i]) < sizeof id) {
            snprintf(id, sizeof id, "%.*s", (int)(dot - names[i]), names[i]);
            if (!has_name(names, n, id))
                unlinkat(dirfd(d), names[i], 0); /* the message is gone */
        } else if (spool_valid_id(names[i])) {
            struct queue_item *it = item_new(names[i]);
            if (!it) {
                log_error("spool", NULL, "out of memory indexing the spool: %zu message(s) left for the next start", n - i);
                break;
            }
            char hold[QUEUE_ID_BYTES + sizeof QUEUE_HOLD_SUFFIX];
            snprintf(hold, sizeof hold, "%s%s", names[i], QUEUE_HOLD_SUFFIX);
            it->on_hold = has_name(names, n, hold);
            held += it->on_hold;
            sched_add(it, it->on_hold ? mono_from_wall(it->received_ms + config->queue_lifetime_ms)
                                      : recovered_due(names[i]));
            count++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    if (count)
        log_info("spool", NULL, "recovered %zu message(s) from the spool (%zu on hold)", count, held);
    STATS_SET(queue_held, (int64_t)held);
    return 0;
}

/* ---- removal and state ----------------------------------------------------- */

static int hold_marker(const char *id, bool on);
static void count_held(void);

/* drop_hold — a message that leaves the queue takes its hold with it. */
static void drop_hold(struct queue_item *it)
{
    pthread_mutex_lock(&sched_mu);
    bool held = it->on_hold;
    it->on_hold = false;
    if (held)
        count_held();
    pthread_mutex_unlock(&sched_mu);
    if (held)
        hold_marker(it->id, false);
}

void queue_done(struct queue_item *it)
{
    char msg[QUEUE_PATH_MAX_BYTES], state[QUEUE_PATH_MAX_BYTES + 8];
    msg_path("queue", it->id, msg, sizeof msg);
    snprintf(state, sizeof state, "%s.state", msg);
    bool had_state = access(state, F_OK) == 0;
    if (unlink(msg) != 0 && errno != ENOENT)
        log_error("spool", &(struct log_fields){.queue_id = it->id},
                  "cannot remove the delivered message (errno %d): it may be delivered again after a restart", errno);
    /* the message must be gone for good before its state: a message that
     * came back without its state would be delivered to everyone again */
    if (had_state && (sync_queue_dir() != 0 || unlink(state) != 0))
        log_warn("spool", &(struct log_fields){.queue_id = it->id}, "state file left behind (errno %d); "
                 "it is removed at the next start", errno);
    drop_hold(it);
    item_free(it);
}

void queue_quarantine(struct queue_item *it)
{
    char from[QUEUE_PATH_MAX_BYTES], to[QUEUE_PATH_MAX_BYTES + 8];
    msg_path("queue", it->id, from, sizeof from);
    snprintf(to, sizeof to, "%s.bad", from);
    if (rename(from, to) == 0)
        log_error("spool", &(struct log_fields){.queue_id = it->id}, "malformed message moved to queue/%s.bad", it->id);
    else if (errno != ENOENT)
        log_error("spool", &(struct log_fields){.queue_id = it->id}, "malformed message cannot be moved aside (errno %d); "
                  "it stays out of delivery until the next start", errno);
    drop_hold(it);
    item_free(it);
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int queue_save_state(const char *id, const char *data, size_t len)
{
    char tmp[QUEUE_PATH_MAX_BYTES + 8], dst[QUEUE_PATH_MAX_BYTES + 8];
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.state", config->spool_dir, id);
    snprintf(dst, sizeof dst, "%s/queue/%s.state", config->spool_dir, id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, data, len) == 0 && fsync(fd) == 0 ? 0 : -1;
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = -1;
    if (rc == 0)
        return sync_queue_dir();
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
}

/* ---- operator control: mrs queue show/flush/hold/release/delete ------------ */

/* remove_files — a deleted message's files: the message first (-1 with
 * errno when it cannot be removed: nothing else is touched then), then
 * what only makes sense with it (state, hold marker). */
static int remove_files(const char *id)
{
    char path[QUEUE_PATH_MAX_BYTES + 8];
    static const char *const suffixes[] = {"", ".state", QUEUE_HOLD_SUFFIX};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s/queue/%s%s", config->spool_dir, id, suffixes[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            int e = errno;
            log_error("spool", &(struct log_fields){.queue_id = id}, "cannot remove queue/%s%s (errno %d)", id,
                      suffixes[i], e);
            if (i == 0) {
                errno = e;
                return -1;
            }
        }
        if (i == 0 && sync_queue_dir() != 0)
            return -1; /* the message must be gone for good before its state */
    }
    sync_queue_dir();
    return 0;
}

/* hold_marker — create (on) or remove the queue/<id>.hold file that keeps
 * a hold across restarts; 0 when it is durable. */
static int hold_marker(const char *id, bool on)
{
    char path[QUEUE_PATH_MAX_BYTES + 8];
    snprintf(path, sizeof path, "%s/queue/%s%s", config->spool_dir, id, QUEUE_HOLD_SUFFIX);
    if (on) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0 || close(fd) != 0)
            return -1;
    } else if (unlink(path) != 0 && errno != ENOENT) {
        return -1;
    }
    return sync_queue_dir();
}

/* heap_remove — take a waiting item out of the heap (caller holds sched_mu). */
static void heap_remove(struct queue_item *it)
{
    size_t i = it->heap_pos;
    if (i == QUEUE_NOT_IN_HEAP)
        return;
    struct queue_item *last = heap[--heap_len];
    it->heap_pos = QUEUE_NOT_IN_HEAP;
    if (last != it) {
        heap_set(i, last);
        heap_up(i);
        heap_down(last->heap_pos);
    }
}

/* find_item — the committed message with this id (caller holds sched_mu). */
static struct queue_item *find_item(const char *id)
{
    for (struct queue_item *it = oldest; it; it = it->newer)
        if (strcmp(it->id, id) == 0)
            return it;
    return NULL;
}

/* reschedule — move an item that waits in the heap to a new due time
 * (caller holds sched_mu). */
static void reschedule(struct queue_item *it, int64_t due_ms)
{
    if (it->heap_pos == QUEUE_NOT_IN_HEAP)
        return;
    it->due_ms = due_ms;
    heap_up(it->heap_pos);
    heap_down(it->heap_pos);
    pthread_cond_broadcast(&sched_cv);
}

static void count_held(void)
{
    int64_t n = 0;
    for (struct queue_item *it = oldest; it; it = it->newer)
        n += it->on_hold;
    STATS_SET(queue_held, n);
}

/* A snapshot of one item for listing, taken under sched_mu. */
struct item_view {
    char id[QUEUE_ID_BYTES];
    bool claimed, on_hold, delete_asked;
};

static const char *status_note(const struct item_view *v)
{
    return v->delete_asked ? "being delivered now; deleted when this attempt ends"
           : v->claimed    ? (v->on_hold ? "being delivered now; on hold after this attempt" : "being delivered now")
           : v->on_hold    ? "on hold (mrs queue release ID); still expires by MRS_QUEUE_LIFETIME"
                           : NULL;
}

static size_t show_one(FILE *out, const struct item_view *v, bool details)
{
    struct spool_message m;
    char err[256];
    if (spool_load(v->id, &m, false, err, sizeof err) < 0) {
        fprintf(out, "%s  unreadable: %s\n", v->id, err);
        return 0;
    }
    size_t left = spool_list_message(out, &m, util_wall_ms(), status_note(v));
    if (details)
        fprintf(out, "    user <%s>  client %s  helo %s  %s\n", m.user, m.client, m.helo,
                m.eightbit ? "8BITMIME" : "7BIT");
    spool_free(&m);
    return left;
}

static enum queue_ctl_result list_all(FILE *out)
{
    pthread_mutex_lock(&sched_mu);
    size_t n = items_listed, i = 0;
    struct item_view *views = calloc(n ? n : 1, sizeof *views);
    for (struct queue_item *it = oldest; views && it && i < n; it = it->newer, i++) {
        views[i] = (struct item_view){.claimed = it->claimed, .on_hold = it->on_hold, .delete_asked = it->delete_asked};
        snprintf(views[i].id, sizeof views[i].id, "%s", it->id);
    }
    pthread_mutex_unlock(&sched_mu);
    if (!views) {
        fprintf(out, "out of memory\n");
        return QUEUE_CTL_ERROR;
    }
    size_t held = 0, left = 0;
    for (size_t k = 0; k < i; k++) {
        left += show_one(out, &views[k], false);
        held += views[k].on_hold;
    }
    fprintf(out, "%zu message(s), %zu recipient(s) left in %s (%zu on hold)\n", i, left, config->spool_dir, held);
    free(views);
    return QUEUE_CTL_OK;
}

/* act — one operation on one message (not LIST): what to do under the
 * lock, then the file I/O outside it. */
static enum queue_ctl_result act(enum queue_ctl op, const char *id, FILE *out)
{
    pthread_mutex_lock(&sched_mu);
    struct queue_item *it = find_item(id);
    if (!it || it->delete_asked) {
        pthread_mutex_unlock(&sched_mu);
        fprintf(out, "no message %s in the queue\n", id);
        return QUEUE_CTL_NOT_FOUND;
    }
    struct item_view v = {.claimed = it->claimed, .on_hold = it->on_hold};
    snprintf(v.id, sizeof v.id, "%s", id);
    enum queue_ctl_result r = QUEUE_CTL_OK;
    bool marker = false, marker_on = false, remove = false;
    switch (op) {
    case QUEUE_CTL_SHOW:
        break;
    case QUEUE_CTL_FLUSH:
        if (it->on_hold) {
            fprintf(out, "%s is on hold: release it first (mrs queue release %s)\n", id, id);
            r = QUEUE_CTL_ERROR;
        } else {
            reschedule(it, util_now_ms());
            fprintf(out, "%s: %s\n", id, it->claimed ? "being delivered now" : "due now");
        }
        break;
    case QUEUE_CTL_HOLD:
    case QUEUE_CTL_RELEASE:
        marker_on = op == QUEUE_CTL_HOLD;
        marker = it->on_hold != marker_on;
        it->on_hold = marker_on;
        if (marker)
            reschedule(it, marker_on ? mono_from_wall(it->received_ms + config->queue_lifetime_ms) : util_now_ms());
        count_held();
        fprintf(out, "%s: %s%s\n", id, marker_on ? "on hold" : "released, due now",
                it->claimed ? " (after the attempt under way)" : "");
        break;
    case QUEUE_CTL_DELETE:
        if (it->claimed) {
            it->delete_asked = true;
            fprintf(out, "%s: being delivered now; deleted when this attempt ends\n", id);
        } else {
            heap_remove(it);
            it->delete_asked = true; /* invisible to find_item from now on */
            remove = true;
        }
        break;
    default:
        r = QUEUE_CTL_ERROR;
    }
    pthread_mutex_unlock(&sched_mu);
    if (marker && hold_marker(id, marker_on) < 0)
        fprintf(out, "warning: the %s could not be recorded on disk (errno %d): a restart %s\n",
                marker_on ? "hold" : "release", errno, marker_on ? "ends the hold" : "holds it again");
    if (remove && remove_files(id) == 0) {
        drop_hold(it);
        item_free(it);
        fprintf(out, "%s: deleted (no report sent)\n", id);
    } else if (remove) {
        fprintf(out, "%s: cannot be removed (errno %d); it stays queued\n", id, errno);
        pthread_mutex_lock(&sched_mu);
        it->delete_asked = false;
        heap_push(it, util_now_ms());
        pthread_cond_signal(&sched_cv);
        pthread_mutex_unlock(&sched_mu);
        r = QUEUE_CTL_ERROR;
    }
    if (op != QUEUE_CTL_SHOW && r == QUEUE_CTL_OK)
        log_warn("queue", &(struct log_fields){.queue_id = id, .result = queue_ctl_name(op)},
                 "operator: mrs queue %s", queue_ctl_name(op));
    if (op == QUEUE_CTL_SHOW)
        show_one(out, &v, true);
    return r;
}

static enum queue_ctl_result flush_all(FILE *out)
{
    pthread_mutex_lock(&sched_mu);
    int64_t now = util_now_ms();
    size_t n = 0;
    for (size_t i = 0; i < heap_len; i++) {
        if (!heap[i]->on_hold && heap[i]->due_ms > now) {
            heap[i]->due_ms = now;
            n++;
        }
    }
    for (size_t i = heap_len; i-- > 0;) /* re-establish the heap order */
        heap_down(i);
    pthread_cond_broadcast(&sched_cv);
    pthread_mutex_unlock(&sched_mu);
    fprintf(out, "%zu message(s) due now\n", n);
    log_warn("queue", NULL, "operator: mrs queue flush (%zu message(s))", n);
    return QUEUE_CTL_OK;
}

const char *queue_ctl_name(enum queue_ctl op)
{
    static const char *const names[] = {"list", "show", "flush", "hold", "release", "delete"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

enum queue_ctl_result queue_control(enum queue_ctl op, const char *id, FILE *out)
{
    if (op == QUEUE_CTL_LIST)
        return list_all(out);
    if (op == QUEUE_CTL_FLUSH && !id)
        return flush_all(out);
    if (!id)
        return QUEUE_CTL_ERROR;
    return act(op, id, out);
}
