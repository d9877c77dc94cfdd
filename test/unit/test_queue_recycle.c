/* Unit tests of recycled spool files (src/queue_recycle.h) through the real
 * queue on a spool in a temporary folder: a finished message's file is not
 * written over before a directory sync made its removal durable (the
 * queue's own removal of a message without a state file does not sync),
 * it is after one; a file written over is cut to the new message's length,
 * with and without a head written last; at most QUEUE_RECYCLE_MAX files
 * wait in tmp/.  alarm() bounds a claim that would block. */
#include "config.h"
#include "crypto.h"
#include "queue.h"
#include "unit.h"
#include "util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define RECYCLE_MAX 256 /* QUEUE_RECYCLE_MAX */

static bool ready;
static char dir[] = "/tmp/mrs-unit-recycle-XXXXXX";
static char body[64 * 1024];

static void setup(void)
{
    char err[256];
    if (ready)
        return;
    CHECK(mkdtemp(dir) != NULL);
    setenv("MRS_HOSTNAME", "mrs.test", 1);
    setenv("MRS_SPOOL_DIR", dir, 1);
    setenv("MRS_DELIVERY_THREADS", "4", 1);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK(crypto_init() == 0);
    CHECK(queue_init(err, sizeof err) == 0);
    memset(body, 'b', sizeof body);
    ready = true;
}

/* commit — a new message of len body bytes, with a head of head_len bytes
 * written last (0: none), due at once; its id into id. */
static void commit(char id[QUEUE_ID_BYTES], size_t len, size_t head_len)
{
    const char *rcpts[] = {"x@tarpit.example"};
    struct queue_envelope env = {.user = "u", .client = "127.0.0.1", .helo = "h", .from = "a@b.example",
                                 .rcpts = rcpts, .rcpt_count = 1, .received_ms = util_wall_ms()};
    queue_new_id(id);
    usleep(2000); /* ids are time-ordered: the next one sorts after */
    struct queue_msg *m = queue_open(id, &env);
    CHECK(m != NULL);
    if (!m)
        return;
    if (head_len) {
        CHECK(queue_reserve(m, QUEUE_RESERVE_MIN + head_len + 10) == 0);
        CHECK(queue_write(m, body, len) == 0);
        struct iovec iov = {.iov_base = body, .iov_len = head_len};
        CHECK(queue_fill(m, &iov, 1) == 0);
    } else {
        CHECK(queue_write(m, body, len) == 0);
    }
    CHECK(queue_commit(m) == 0);
}

/* finish — claim the next due message (it must be id) and remove it. */
static void finish(const char *id)
{
    alarm(10);
    struct queue_item *it = queue_claim();
    alarm(0);
    CHECK(it != NULL);
    if (!it)
        return;
    CHECK_STR(queue_item_id(it), id);
    CHECK(queue_done(it) == 0);
}

static struct stat stat_of(const char *sub, const char *name)
{
    char path[sizeof dir + 64];
    struct stat st = {0};
    snprintf(path, sizeof path, "%s/%s/%.40s", dir, sub, name);
    CHECK(stat(path, &st) == 0);
    return st;
}

/* tmp_files — the files in tmp/ (all of them recycled ones). */
static size_t tmp_files(void)
{
    char path[sizeof dir + 16];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/tmp", dir);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        CHECK(strncmp(e->d_name, "recycle.", 8) == 0);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_reused_only_after_a_directory_sync(void)
{
    char a[QUEUE_ID_BYTES], b[QUEUE_ID_BYTES], c[QUEUE_ID_BYTES];
    setup();
    commit(a, 5000, 0);
    ino_t ino_a = stat_of("queue", a).st_ino;
    finish(a); /* no state file: the removal is not synced */
    CHECK(tmp_files() == 1);
    commit(b, 100, 0);
    CHECK(stat_of("queue", b).st_ino != ino_a); /* a new file: a's old name could come back */
    CHECK(tmp_files() == 1);
    commit(c, 100, 0); /* b's commit synced queue/: a's file may be written over */
    struct stat sc = stat_of("queue", c);
    CHECK(sc.st_ino == ino_a);
    CHECK(tmp_files() == 0);
    CHECK(sc.st_size == stat_of("queue", b).st_size); /* cut to its length: same envelope and body size */
    CHECK((sc.st_mode & 0777) == (stat_of("queue", b).st_mode & 0777));
    finish(b);
    finish(c);
}

static void test_written_over_with_a_head_written_last(void)
{
    char a[QUEUE_ID_BYTES], b[QUEUE_ID_BYTES], c[QUEUE_ID_BYTES], d[QUEUE_ID_BYTES];
    setup();
    commit(a, 60000, 0);
    commit(b, 10, 0); /* the same envelope size, without a head: the reference */
    ino_t ino_a = stat_of("queue", a).st_ino;
    off_t plain = stat_of("queue", b).st_size;
    finish(a);
    finish(b);
    commit(c, 10, 300); /* over the oldest waiting file */
    commit(d, 10, 300); /* c's commit synced a's removal: one of them is over a's file */
    struct stat sc = stat_of("queue", c), sd = stat_of("queue", d);
    CHECK(sc.st_ino == ino_a || sd.st_ino == ino_a);
    /* the room and the head it holds, nothing of a's 60000 bytes */
    /* the room starts at the envelope's empty line and ends before the body */
    off_t want = plain - 1 + QUEUE_RESERVE_MIN + 300 + 10;
    CHECK(sc.st_size == want);
    CHECK(sd.st_size == want);
    finish(c);
    finish(d);
}

static void test_at_most_the_bound_wait(void)
{
    enum { N = RECYCLE_MAX + 20 };
    static char ids[N][QUEUE_ID_BYTES];
    setup();
    for (size_t i = 0; i < N; i++)
        commit(ids[i], 10, 0);
    for (size_t i = 0; i < N; i++)
        finish(ids[i]);
    CHECK(tmp_files() == RECYCLE_MAX);
}

/* oldest_tmp_file — the path of tmp/'s recycled file with the lowest
 * number (the next one handed out) */
static void oldest_tmp_file(char *path, size_t len)
{
    char d_path[sizeof dir + 16];
    unsigned long long best = ~0ULL;
    snprintf(d_path, sizeof d_path, "%s/tmp", dir);
    DIR *d = opendir(d_path);
    path[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *dot = strrchr(e->d_name, '.');
        unsigned long long n = dot ? strtoull(dot + 1, NULL, 10) : ~0ULL;
        if (e->d_name[0] != '.' && n < best) {
            best = n;
            snprintf(path, len, "%s/tmp/%.60s", dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    CHECK(path[0] != '\0');
}

/* a recycled file that is no longer a regular file with one name is not
 * written over: with a second name (it would be written through) the
 * message gets a new file and the other name keeps its bytes; a FIFO (an
 * open for writing would block the session) is passed over at once.  Works
 * with any ring state: the file looked at is the oldest waiting one. */
static void test_a_fifo_or_a_second_name_is_not_written_over(void)
{
    char a1[QUEUE_ID_BYTES], a2[QUEUE_ID_BYTES], b[QUEUE_ID_BYTES], c[QUEUE_ID_BYTES], d[QUEUE_ID_BYTES];
    char path[sizeof dir + 80], other[sizeof dir + 16];
    struct stat st;
    setup();
    commit(a1, 5000, 0);
    commit(a2, 5000, 0);
    finish(a1);
    finish(a2);
    commit(b, 100, 0); /* its commit syncs queue/: every waiting file is due */
    oldest_tmp_file(path, sizeof path);
    CHECK(stat(path, &st) == 0);
    ino_t ino_x = st.st_ino;
    off_t size_x = st.st_size;
    snprintf(other, sizeof other, "%s/other", dir);
    CHECK(link(path, other) == 0);
    commit(c, 100, 0);
    CHECK(stat_of("queue", c).st_ino != ino_x);
    CHECK(stat_of("", "other").st_size == size_x); /* its bytes, not c's */
    CHECK(stat(path, &st) != 0);                    /* and not kept for later */
    CHECK(unlink(other) == 0);
    oldest_tmp_file(path, sizeof path);
    CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    alarm(10); /* opened for writing without a reader, the FIFO would block */
    commit(d, 100, 0);
    alarm(0);
    CHECK(stat(path, &st) != 0);
    finish(b);
    finish(c);
    finish(d);
}

static void test_cleanup(void)
{
    char path[sizeof dir + 64];
    snprintf(path, sizeof path, "%s/tmp", dir);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/tmp/%.40s", dir, e->d_name);
        CHECK(unlink(path) == 0);
    }
    if (d)
        closedir(d);
    static const char *const subs[] = {"queue", "tmp"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        CHECK(rmdir(path) == 0);
    }
    CHECK(rmdir(dir) == 0);
}

UNIT_MAIN("queue_recycle", UNIT_CASE(test_reused_only_after_a_directory_sync),
          UNIT_CASE(test_written_over_with_a_head_written_last), UNIT_CASE(test_at_most_the_bound_wait),
          UNIT_CASE(test_a_fifo_or_a_second_name_is_not_written_over),
          UNIT_CASE(test_cleanup))
