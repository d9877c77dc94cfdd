/*
 * queue_recycle — message files are used again instead of being created
 * and unlinked once per message (docs/spool.md, "Recycled files"): a
 * finished message's file is renamed to tmp/recycle.<token>.<n>, and the next
 * message is written over it in place (no new inode, mostly no new
 * blocks), then truncated, fsynced and renamed into queue/ as a new file
 * would be.
 *
 * A recycled file is handed out only once its rename out of queue/ is
 * durable (a later directory sync of queue/ succeeded, queue_files.h), so
 * a crash can never bring its old name back over new content.  At most
 * QUEUE_RECYCLE_MAX files of at most QUEUE_RECYCLE_FILE_MAX_BYTES wait;
 * beyond that, or when larger, a finished file is unlinked.
 * Files left in tmp/ at start are removed like every other tmp/ file.
 * Private to queue.c and queue_files.c.  Thread-safe.
 */
#ifndef MRS_QUEUE_RECYCLE_H
#define MRS_QUEUE_RECYCLE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_RECYCLE_MAX 256          /* files kept for reuse */
#define QUEUE_RECYCLE_FILE_MAX_BYTES (128 * 1024) /* a larger file is unlinked: 32 MB kept at most */
#define QUEUE_RECYCLE_PREFIX "recycle." /* tmp/recycle.<token>.<n> */

/* queue_recycle_remove — take the message file at `from` (the path of
 * queue/<id>, as the caller built it) out of the queue: renamed to a
 * recycle file while there is room and it is not larger than
 * QUEUE_RECYCLE_FILE_MAX_BYTES, else unlinked.
 * 0, or -1 with errno as unlink(2) (ENOENT: it was not there). */
int queue_recycle_remove(const char *from);

/* queue_recycle_take — a recycled file that may be written now, opened
 * for writing at offset 0 (not truncated); *n gets its number for
 * queue_recycle_path.  The fd, or -1 when there is none. */
int queue_recycle_take(uint64_t *n);

/* queue_recycle_path — "<spool>/tmp/recycle.<token>.<n>" into buf. */
void queue_recycle_path(uint64_t n, char *buf, size_t len);

#endif
