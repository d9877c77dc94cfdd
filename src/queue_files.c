/*
 * queue_files — the spool directory's file operations for queue.c (see
 * queue_files.h): the group commit of directory entries, state writes,
 * removal of a deleted message, hold markers.  Thread-safe; no schedule
 * state here.
 */
#include "queue_files.h"

#include "config.h"
#include "log.h"
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define QUEUE_FILES_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)

static int queue_dir_fd = -1;
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;
static uint64_t sync_requested, sync_done, sync_ok_done; /* sync_ok_done: the last sync that succeeded */
static int sync_error;
static bool syncing;

int queue_files_open_dir(const char *path)
{
    if (queue_dir_fd < 0)
        queue_dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return queue_dir_fd;
}

/* queue_files_sync — group commit of the directory entry (see the top). */
int queue_files_sync(void)
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
            if (r == 0)
                sync_ok_done = covers;
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

uint64_t queue_files_sync_mark(void)
{
    pthread_mutex_lock(&sync_mu);
    uint64_t mark = sync_requested + 1; /* a sync covers up to sync_requested at its start */
    pthread_mutex_unlock(&sync_mu);
    return mark;
}

bool queue_files_synced(uint64_t mark)
{
    pthread_mutex_lock(&sync_mu);
    bool done = sync_ok_done >= mark;
    pthread_mutex_unlock(&sync_mu);
    return done;
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
    char tmp[QUEUE_FILES_PATH_MAX_BYTES + 8], dst[QUEUE_FILES_PATH_MAX_BYTES + 8];
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
        return queue_files_sync();
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
}

/* remove_files — a deleted message's files: the message first (-1 with
 * errno when it cannot be removed: nothing else is touched then), then
 * what only makes sense with it (state, hold marker).  The message file is
 * unlinked, not recycled (queue_recycle.h): an operator's delete must not
 * leave the message's bytes readable in tmp/ until a new message happens
 * to be written over them. */
int queue_files_remove(const char *id)
{
    char path[QUEUE_FILES_PATH_MAX_BYTES + 8];
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
        if (i == 0 && queue_files_sync() != 0)
            return -1; /* the message must be gone for good before its state */
    }
    queue_files_sync();
    return 0;
}

/* hold_marker — create (on) or remove the queue/<id>.hold file that keeps
 * a hold across restarts; 0 when it is durable. */
int queue_files_hold(const char *id, bool on)
{
    char path[QUEUE_FILES_PATH_MAX_BYTES + 8];
    snprintf(path, sizeof path, "%s/queue/%s%s", config->spool_dir, id, QUEUE_HOLD_SUFFIX);
    if (on) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0 || close(fd) != 0)
            return -1;
    } else if (unlink(path) != 0 && errno != ENOENT) {
        return -1;
    }
    return queue_files_sync();
}

