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
 *
 * Slots (MRS_DELIVERY_DOMAIN_CONCURRENCY): a table of keys (one per busy
 * destination) with the number of deliveries holding one and the items
 * parked until one is free.  A parked item stays in the heap, due at its
 * latest time, and is also in its slot's waiting list; giving a slot back
 * makes the oldest waiting item due at once (all of them when none is held
 * any more), so nothing waits for a poll and no thread is held.  Holding a
 * slot and parking are decided under sched_mu, so no wake-up is lost.
 * Each delivery thread holds at most one slot: the table has one entry per
 * thread.
 */
#include "queue.h"

#include "queue_files.h"
#include "queue_recycle.h"

#include "bufpool.h"
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* 16 KiB: a typical message leaves in one write; open messages' buffers
 * are kept for reuse (msg_pool), up to one per session that may be in
 * DATA at once on a busy relay, so they stay small */
#define QUEUE_WRITE_BUFFER_BYTES (16 * 1024)
#define QUEUE_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)
#define QUEUE_NOT_IN_HEAP SIZE_MAX
#define QUEUE_ITEMS_MAX 10000000 /* a spool larger than this is not indexed further */

struct queue_item {
    char id[QUEUE_ID_BYTES];
    int64_t due_ms;            /* monotonic clock */
    uint64_t seq;              /* FIFO among equal due times */
    uint64_t park_key;         /* parked: waiting for a slot of this key (queue_park) */
    struct queue_item *park_prev, *park_next; /* that slot's waiting list, oldest first */
    bool parked;
    int64_t received_ms;       /* wall clock, from the id */
    size_t heap_pos;           /* QUEUE_NOT_IN_HEAP while claimed or not committed */
    bool listed;               /* in the arrival list (committed) */
    struct queue_item *older, *newer;
    /* operator control (queue_control), under sched_mu */
    bool claimed;              /* a delivery thread holds it */
    bool on_hold;              /* not delivered until released; due only at its expiry */
    bool hold_expired;         /* handed out on hold at its expiry: bounce, do not try */
    bool delete_asked;         /* deleted while claimed: removed when handed back */
    char *held_state;          /* a state not saved yet (queue_item_hold_state), or NULL */
    size_t held_len;
};

struct queue_msg {
    int fd;
    bool failed;
    size_t len;
    int64_t written;           /* bytes given to queue_write so far */
    int64_t envelope_end;      /* `written` after the envelope's empty line */
    int64_t reserve_off;       /* queue_reserve: where the reserved room starts, -1 none */
    size_t reserve_len;
    bool reserve_open;         /* reserved and not filled yet */
    uint64_t recycled;         /* written over tmp/recycle.<n> (queue_recycle.h), 0: tmp/<id> */
    struct queue_item *item;   /* reserved at open, scheduled at commit */
    char id[QUEUE_ID_BYTES];
    char buf[QUEUE_WRITE_BUFFER_BYTES];
};


/* the schedule (see the top) */
static pthread_mutex_t sched_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sched_cv;            /* CLOCK_MONOTONIC, set up in queue_init */
static pthread_once_t sched_once = PTHREAD_ONCE_INIT;
static struct queue_item **heap;
static size_t heap_len, heap_cap, items_live, items_listed;
static struct queue_item *oldest, *newest;
static uint64_t next_seq;
static bool stopping, indexed;

struct slot {
    uint64_t key;
    int64_t held;                          /* deliveries holding one */
    struct queue_item *first, *last;       /* parked items, oldest first */
};
static struct slot *slots;                 /* config->delivery_threads entries */
static size_t slot_count;

static void sched_setup(void);
static int recover(void);
static struct queue_item *item_new(const char *id);
static void item_free(struct queue_item *it);
static void sched_add(struct queue_item *it, int64_t due_ms);
static void park_unlink(struct queue_item *it);

void queue_dir(const char *sub, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", config->spool_dir, sub);
}

static void msg_path(const char *sub, const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s/%s", config->spool_dir, sub, id);
}

/* tmp_path — where an open message is written: tmp/<id>, or the recycled
 * file it is written over. */
static void tmp_path(const struct queue_msg *m, char *buf, size_t len)
{
    if (m->recycled)
        queue_recycle_path(m->recycled, buf, len);
    else
        msg_path("tmp", m->id, buf, len);
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
    if (queue_files_open_dir(path) < 0) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: cannot open %s (errno %d)", path, errno);
        return -1;
    }
    if (!queue_writable()) {
        snprintf(err, err_len, "MRS_SPOOL_DIR: %s is not writable", config->spool_dir);
        return -1;
    }
    remove_tmp_leftovers();
    pthread_once(&sched_once, sched_setup);
    if (!slots && !(slots = calloc((size_t)config->delivery_threads, sizeof *slots))) {
        snprintf(err, err_len, "MRS_DELIVERY_THREADS: out of memory for %lld delivery slots",
                 (long long)config->delivery_threads);
        return -1;
    }
    slot_count = (size_t)config->delivery_threads;
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
    m->written += (int64_t)len;
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

/* open messages' write buffers, kept for the next message (bufpool.h) */
static struct bufpool msg_pool = BUFPOOL_INIT(sizeof(struct queue_msg), 32);

struct queue_msg *queue_open(const char *id, const struct queue_envelope *env)
{
    char path[QUEUE_PATH_MAX_BYTES], when[32];
    struct queue_msg *m = bufpool_get(&msg_pool);
    if (!m || !(m->item = item_new(id))) {
        bufpool_put(&msg_pool, m);
        errno = ENOMEM;
        return NULL;
    }
    m->len = 0;
    m->failed = false;
    m->written = 0;
    m->reserve_off = -1;
    m->reserve_open = false;
    snprintf(m->id, sizeof m->id, "%s", id);
    m->recycled = 0;
    /* a finished message's file, written over in place (no new inode);
     * else a new one */
    m->fd = queue_recycle_take(&m->recycled);
    if (m->fd < 0) {
        m->recycled = 0;
        msg_path("tmp", id, path, sizeof path);
        m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    }
    if (m->fd < 0) {
        int e = errno;
        item_free(m->item);
        bufpool_put(&msg_pool, m);
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
    if (env->smtputf8)
        write_line(m, "smtputf8", "1");
    write_line(m, "from", env->from);
    if (env->dsn_ret)
        write_line(m, "ret", env->dsn_ret);
    if (env->dsn_envid)
        write_line(m, "envid", env->dsn_envid);
    for (size_t i = 0; i < env->rcpt_count; i++) {
        write_line(m, "rcpt", env->rcpts[i]);
        if (env->rcpt_notify && env->rcpt_notify[i]) /* these belong to the rcpt line above */
            write_line(m, "notify", env->rcpt_notify[i]);
        if (env->rcpt_orcpt && env->rcpt_orcpt[i])
            write_line(m, "orcpt", env->rcpt_orcpt[i]);
    }
    queue_write(m, "\n", 1);
    m->envelope_end = m->written;
    return m;
}

/* ---- a head written last (see queue.h) --------------------------------------- */

int queue_reserve(struct queue_msg *m, size_t len)
{
    if (m->failed || m->reserve_off >= 0 || m->written != m->envelope_end || len < QUEUE_RESERVE_MIN ||
        len > (size_t)INT32_MAX || flush_buf(m) < 0) {
        m->failed = true;
        return -1;
    }
    /* the room starts at the envelope's empty line, which the fill writes
     * again after its pad line; the file position moves past the room and
     * later writes land there (the room is a hole until it is filled) */
    m->reserve_off = m->envelope_end - 1;
    m->reserve_len = len;
    if (lseek(m->fd, (off_t)(m->reserve_off + (int64_t)len), SEEK_SET) < 0) {
        m->failed = true;
        return -1;
    }
    m->reserve_open = true;
    return 0;
}

/* pwrite_all — n bytes at off, through short writes. */
static int pwrite_all(int fd, const char *p, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

int queue_fill(struct queue_msg *m, const struct iovec *iov, int iovcnt)
{
    char spaces[64];
    size_t total = 0;
    memset(spaces, ' ', sizeof spaces);
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (m->failed || !m->reserve_open || total > m->reserve_len - QUEUE_RESERVE_MIN) {
        m->failed = true;
        return -1;
    }
    /* "pad" + spaces + "\n" (an envelope key every reader ignores), the
     * empty line, then the pieces: exactly reserve_len bytes */
    int64_t off = m->reserve_off;
    size_t blanks = m->reserve_len - QUEUE_RESERVE_MIN - total;
    int rc = pwrite_all(m->fd, "pad", 3, off);
    for (off += 3; rc == 0 && blanks > 0;) {
        size_t k = blanks < sizeof spaces ? blanks : sizeof spaces;
        rc = pwrite_all(m->fd, spaces, k, off);
        off += (int64_t)k;
        blanks -= k;
    }
    if (rc == 0)
        rc = pwrite_all(m->fd, "\n\n", 2, off);
    off += 2;
    for (int i = 0; rc == 0 && i < iovcnt; i++) {
        rc = pwrite_all(m->fd, iov[i].iov_base, iov[i].iov_len, off);
        off += (int64_t)iov[i].iov_len;
    }
    m->reserve_open = false;
    if (rc < 0)
        m->failed = true;
    return rc;
}

int queue_commit(struct queue_msg *m)
{
    char from[QUEUE_PATH_MAX_BYTES], to[QUEUE_PATH_MAX_BYTES];
    tmp_path(m, from, sizeof from);
    msg_path("queue", m->id, to, sizeof to);
    if (m->reserve_open)
        m->failed = true; /* a head reserved and never written: the file is not a message */
    int rc = flush_buf(m);
    /* a recycled file may be longer than this message: cut the old bytes
     * off (the end is past the reserved room, which moved the position) */
    int64_t end = m->written + (m->reserve_off >= 0 ? (int64_t)m->reserve_len - 1 : 0);
    if (rc == 0 && m->recycled && ftruncate(m->fd, (off_t)end) != 0)
        rc = -1;
    if (rc == 0 && fsync(m->fd) != 0)
        rc = -1;
    if (close(m->fd) != 0)
        rc = -1;
    m->fd = -1;
    if (rc == 0 && rename(from, to) != 0)
        rc = -1;
    if (rc == 0 && queue_files_sync() != 0) {
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
    bufpool_put(&msg_pool, m);
    return rc;
}

void queue_abort(struct queue_msg *m)
{
    char path[QUEUE_PATH_MAX_BYTES];
    if (!m)
        return;
    tmp_path(m, path, sizeof path);
    if (m->fd >= 0)
        close(m->fd);
    unlink(path); /* a recycled file too: it holds part of this message now */
    item_free(m->item);
    bufpool_put(&msg_pool, m);
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
    free(it->held_state);
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
    pthread_mutex_unlock(&sched_mu);
    /* after the unlock: a worker woken under it would block on the mutex
     * at once (one more futex call and context switch per message) */
    pthread_cond_signal(&sched_cv);
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
            if (it->parked)
                park_unlink(it); /* its latest time came before a slot */
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

/* Only the thread that claimed the item touches these: no lock. */
void queue_item_hold_state(struct queue_item *it, char *data, size_t len)
{
    if (it->held_state != data)
        free(it->held_state);
    it->held_state = data;
    it->held_len = data ? len : 0;
}

const char *queue_item_held_state(const struct queue_item *it, size_t *len)
{
    *len = it->held_len;
    return it->held_state;
}

/* mono_from_wall — a wall-clock time as the monotonic clock's value. */
static int64_t mono_from_wall(int64_t wall_ms)
{
    int64_t now = util_now_ms(), delta = wall_ms - util_wall_ms();
    return delta > 0 ? now + delta : now;
}

static void drop_hold(struct queue_item *it);

void queue_release(struct queue_item *it, int64_t due_wall_ms)
{
    int64_t due = mono_from_wall(due_wall_ms);
    pthread_mutex_lock(&sched_mu);
    it->claimed = false;
    it->hold_expired = false;
    if (it->delete_asked) {
        pthread_mutex_unlock(&sched_mu);
        if (queue_files_remove(it->id) == 0) {
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

/* ---- destination slots ------------------------------------------------------ */

/* slot_find — the entry of key (a free one for it when create), under
 * sched_mu.  An entry is in use while a slot is held or an item waits. */
static struct slot *slot_find(uint64_t key, bool create)
{
    struct slot *free_one = NULL;
    for (size_t i = 0; i < slot_count; i++) {
        bool used = slots[i].held > 0 || slots[i].first;
        if (used && slots[i].key == key)
            return &slots[i];
        if (!used && !free_one)
            free_one = &slots[i];
    }
    if (create && free_one) {
        free_one->key = key;
        return free_one;
    }
    return NULL;
}

/* park_unlink — take a parked item out of its slot's waiting list. */
static void park_unlink(struct queue_item *it)
{
    struct slot *s = slot_find(it->park_key, false);
    if (s) {
        *(it->park_prev ? &it->park_prev->park_next : &s->first) = it->park_next;
        *(it->park_next ? &it->park_next->park_prev : &s->last) = it->park_prev;
    }
    it->park_prev = it->park_next = NULL;
    it->parked = false;
}

/* wake — a parked item becomes due at once (its due time only moves
 * earlier, so sifting up keeps the heap in order). */
static void wake(struct queue_item *it)
{
    park_unlink(it);
    int64_t now = util_now_ms();
    if (it->due_ms > now) {
        it->due_ms = now;
        heap_up(it->heap_pos);
    }
}

bool queue_slot_take(uint64_t key, int64_t limit)
{
    pthread_mutex_lock(&sched_mu);
    struct slot *s = slot_find(key, true);
    bool ok = !s || s->held < limit; /* no entry: cannot happen (one per thread); never block on it */
    if (s && ok)
        s->held++;
    pthread_mutex_unlock(&sched_mu);
    return ok;
}

void queue_slot_give(uint64_t key)
{
    pthread_mutex_lock(&sched_mu);
    struct slot *s = slot_find(key, false);
    if (s && s->held > 0)
        s->held--;
    if (s && s->first) {
        /* the oldest waiter takes the slot; when none is held any more,
         * all of them (a woken item may have vanished: nobody is left to
         * wake the others later) */
        do
            wake(s->first);
        while (s->held == 0 && s->first);
        pthread_cond_broadcast(&sched_cv);
    }
    pthread_mutex_unlock(&sched_mu);
}

void queue_park(struct queue_item *it, uint64_t key, int64_t limit, int64_t latest_wall_ms)
{
    int64_t due = mono_from_wall(latest_wall_ms);
    pthread_mutex_lock(&sched_mu);
    struct slot *s = slot_find(key, false);
    if (it->delete_asked || it->on_hold || !s || s->held < limit) {
        /* the operator's word first; or a slot was given back meanwhile */
        pthread_mutex_unlock(&sched_mu);
        queue_release(it, 0);
        return;
    }
    it->claimed = false;
    it->hold_expired = false;
    it->park_key = key;
    it->parked = true;
    it->park_next = NULL;
    it->park_prev = s->last;
    *(s->last ? &s->last->park_next : &s->first) = it;
    s->last = it;
    heap_push(it, due);
    pthread_cond_signal(&sched_cv);
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

/* recover — index every message of queue/ (oldest first), remove state
 * files whose message is gone (a crash between the two unlinks), count
 * the quarantined ones (<id>.bad). */
static int recover(void)
{
    char dir[QUEUE_PATH_MAX_BYTES], id[QUEUE_ID_BYTES + 8];
    queue_dir("queue", dir, sizeof dir);
    DIR *d = opendir(dir);
    size_t n = 0, count = 0, held = 0;
    if (!d)
        return -1;
    char **names = read_names(d, &n);
    int64_t quarantined = 0;
    for (size_t i = 0; i < n; i++) {
        const char *dot = strchr(names[i], '.');
        quarantined += dot && !strcmp(dot, ".bad");
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
    STATS_SET(queue_quarantined, quarantined);
    if (quarantined)
        log_warn("spool", NULL, "%lld malformed message(s) set aside as queue/<id>.bad: see `mrs queue`",
                 (long long)quarantined);
    if (count)
        log_info("spool", NULL, "recovered %zu message(s) from the spool (%zu on hold)", count, held);
    STATS_SET(queue_held, (int64_t)held);
    return 0;
}

/* ---- removal and state ----------------------------------------------------- */

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
        queue_files_hold(it->id, false);
}

int queue_done(struct queue_item *it)
{
    char msg[QUEUE_PATH_MAX_BYTES], state[QUEUE_PATH_MAX_BYTES + 8];
    msg_path("queue", it->id, msg, sizeof msg);
    snprintf(state, sizeof state, "%s.state", msg);
    bool had_state = access(state, F_OK) == 0;
    if (queue_recycle_remove(msg) != 0 && errno != ENOENT) {
        /* the state file is what keeps a restart from delivering it all
         * again: it stays while the message does */
        int e = errno;
        log_error("spool", &(struct log_fields){.queue_id = it->id},
                  "cannot remove the finished message (errno %d): its state is kept and the removal retried", e);
        errno = e;
        return -1;
    }
    /* the message must be gone for good before its state: a message that
     * came back without its state would be delivered to everyone again */
    if (had_state && (queue_files_sync() != 0 || (unlink(state) != 0 && errno != ENOENT)))
        log_warn("spool", &(struct log_fields){.queue_id = it->id}, "state file left behind (errno %d); "
                 "it is removed at the next start", errno);
    drop_hold(it);
    item_free(it);
    return 0;
}

void queue_quarantine(struct queue_item *it)
{
    char from[QUEUE_PATH_MAX_BYTES], to[QUEUE_PATH_MAX_BYTES + 8];
    msg_path("queue", it->id, from, sizeof from);
    snprintf(to, sizeof to, "%s.bad", from);
    if (rename(from, to) == 0) {
        /* durable, so that a restart does not find it (and bounce it)
         * again; should the sync fail, a crash costs a second bounce at worst */
        queue_files_sync();
        STATS_INC(queue_quarantined);
        log_error("spool", &(struct log_fields){.queue_id = it->id}, "malformed message moved to queue/%s.bad", it->id);
    } else if (errno != ENOENT) {
        log_error("spool", &(struct log_fields){.queue_id = it->id}, "malformed message cannot be moved aside (errno %d); "
                  "it stays out of delivery until the next start", errno);
    }
    drop_hold(it);
    item_free(it);
}

/* ---- operator control: mrs queue show/flush/hold/release/delete ------------ */

/* heap_remove — take a waiting item out of the heap (caller holds sched_mu). */
static void heap_remove(struct queue_item *it)
{
    size_t i = it->heap_pos;
    if (it->parked)
        park_unlink(it);
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
    if (it->parked)
        park_unlink(it); /* the operator decides when: no slot wakes it (a hold stays a hold) */
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

/* view_of — an item's operator-visible state (caller holds sched_mu). */
static void view_of(const struct queue_item *it, struct queue_view *v)
{
    *v = (struct queue_view){.claimed = it->claimed, .on_hold = it->on_hold, .delete_asked = it->delete_asked};
    snprintf(v->id, sizeof v->id, "%s", it->id);
}

int queue_views(struct queue_view **out, size_t *count)
{
    pthread_mutex_lock(&sched_mu);
    size_t n = 0;
    struct queue_view *v = calloc(items_listed ? items_listed : 1, sizeof *v);
    for (struct queue_item *it = oldest; v && it && n < items_listed; it = it->newer)
        view_of(it, &v[n++]);
    pthread_mutex_unlock(&sched_mu);
    *out = v;
    *count = n;
    return v ? 0 : -1;
}

int queue_view_one(const char *id, struct queue_view *v)
{
    pthread_mutex_lock(&sched_mu);
    struct queue_item *it = find_item(id);
    if (it && !it->delete_asked)
        view_of(it, v);
    pthread_mutex_unlock(&sched_mu);
    return it && !it->delete_asked ? 0 : -1;
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
    enum queue_ctl_result r = QUEUE_CTL_OK;
    bool marker = false, marker_on = false, remove = false;
    switch (op) {
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
    if (marker && queue_files_hold(id, marker_on) < 0)
        fprintf(out, "warning: the %s could not be recorded on disk (errno %d): a restart %s\n",
                marker_on ? "hold" : "release", errno, marker_on ? "ends the hold" : "holds it again");
    if (remove && queue_files_remove(id) == 0) {
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
    if (r == QUEUE_CTL_OK)
        log_warn("queue", &(struct log_fields){.queue_id = id, .result = queue_ctl_name(op)},
                 "operator: mrs queue %s", queue_ctl_name(op));
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
    if (op == QUEUE_CTL_FLUSH && !id)
        return flush_all(out);
    if (!id || op == QUEUE_CTL_LIST || op == QUEUE_CTL_SHOW)
        return QUEUE_CTL_ERROR; /* the listings are control.c's (queue_views) */
    return act(op, id, out);
}
