/*
 * queue_files — file operations on <MRS_SPOOL_DIR>/queue shared by the
 * queue module (queue.c): the group commit of directory entries (the queue
 * directory is fsynced by whichever caller finds no sync in flight; those
 * whose change happened before a sync started wait for it, later ones for
 * the next), state writes, a deleted message's removal, hold markers.
 * Private to queue.c (queue.h is the public interface).  Thread-safe.
 */
#ifndef MRS_QUEUE_FILES_H
#define MRS_QUEUE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* queue_files_open_dir — open the queue directory once (for the syncs);
 * its fd, or -1 with errno. */
int queue_files_open_dir(const char *path);

/* queue_files_sync — make every directory change made before the call
 * durable (group commit): 0, or -1 with errno. */
int queue_files_sync(void);

/* queue_files_sync_mark — a mark for the directory changes made before
 * the call; queue_files_synced(mark) is true once a later
 * queue_files_sync() made them durable (a sync that began after the call
 * and succeeded).  Neither waits nor syncs. */
uint64_t queue_files_sync_mark(void);
bool queue_files_synced(uint64_t mark);

/* queue_files_remove — a deleted message's files: the message first (-1
 * with errno when it cannot be removed: nothing else is touched then),
 * then its state and hold marker.  Unlinked, never recycled. */
int queue_files_remove(const char *id);

/* queue_files_hold — create (on) or remove queue/<id>.hold, durably: 0, or
 * -1 with errno. */
int queue_files_hold(const char *id, bool on);

#endif
