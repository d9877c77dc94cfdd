/*
 * queue_recycle — finished message files kept for the next messages (see
 * queue_recycle.h).  A ring of file numbers, oldest first, each with the
 * directory-sync mark of its rename out of queue/: the oldest is the one
 * most likely to be durable already, and the only one looked at (a file
 * whose rename is not durable yet leaves the writer to create a new file,
 * and the writer's own commit sync makes it durable for the next).
 *
 * The renames and opens happen outside the mutex; a slot of the ring is
 * reserved before a rename so that the ring never holds more than
 * QUEUE_RECYCLE_MAX files.
 */
#include "queue_recycle.h"

#include "config.h"
#include "crypto.h"
#include "queue_files.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_RECYCLE_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)

struct recycled {
    uint64_t n;    /* tmp/recycle.<n> */
    uint64_t mark; /* queue_files_synced(mark): its rename out of queue/ is durable */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct recycled ring[QUEUE_RECYCLE_MAX];
static size_t head, count, reserved; /* reserved: slots of renames under way */
static uint64_t next_n = 1;
static uint32_t run_token; /* this process's: another mrs on the spool (unsupported) names its own apart */
static pthread_once_t token_once = PTHREAD_ONCE_INIT;

static void token_init(void)
{
    run_token = crypto_random_uniform(UINT32_MAX - 1) + 1;
}

void queue_recycle_path(uint64_t n, char *buf, size_t len)
{
    pthread_once(&token_once, token_init);
    snprintf(buf, len, "%s/tmp/" QUEUE_RECYCLE_PREFIX "%08x.%llu", config->spool_dir, run_token,
             (unsigned long long)n);
}

int queue_recycle_remove(const char *from)
{
    char to[QUEUE_RECYCLE_PATH_MAX_BYTES];
    /* a big message's blocks are not kept: dead space stays bounded */
    struct stat st;
    if (stat(from, &st) == 0 && st.st_size > QUEUE_RECYCLE_FILE_MAX_BYTES)
        return unlink(from);
    pthread_mutex_lock(&mu);
    bool room = count + reserved < QUEUE_RECYCLE_MAX;
    uint64_t n = next_n;
    if (room) {
        reserved++;
        next_n++;
    }
    pthread_mutex_unlock(&mu);
    if (!room)
        return unlink(from);
    queue_recycle_path(n, to, sizeof to);
    int rc = rename(from, to);
    int e = errno;
    uint64_t mark = queue_files_sync_mark(); /* after the rename: a sync from now on covers it */
    pthread_mutex_lock(&mu);
    reserved--;
    if (rc == 0)
        ring[(head + count++) % QUEUE_RECYCLE_MAX] = (struct recycled){.n = n, .mark = mark};
    pthread_mutex_unlock(&mu);
    if (rc == 0 || e == ENOENT)
        return errno = e, rc;
    return unlink(from); /* tmp/ unusable (EXDEV, EACCES…): remove it as before recycling */
}

int queue_recycle_take(uint64_t *n)
{
    char path[QUEUE_RECYCLE_PATH_MAX_BYTES];
    pthread_mutex_lock(&mu);
    bool ready = count > 0 && queue_files_synced(ring[head].mark);
    struct recycled r = ready ? ring[head] : (struct recycled){0};
    if (ready) {
        head = (head + 1) % QUEUE_RECYCLE_MAX;
        count--;
    }
    pthread_mutex_unlock(&mu);
    if (!ready)
        return -1;
    queue_recycle_path(r.n, path, sizeof path);
    /* only the regular file this process put there, with no other name:
     * a FIFO would block, a hard link would be written through
     * (O_NONBLOCK changes nothing for a regular file's writes) */
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        unlink(path); /* not a regular file any more (removed, replaced): not used again */
        return -1;
    }
    *n = r.n;
    return fd;
}
