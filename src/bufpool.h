/*
 * bufpool — a few large buffers kept for reuse across sessions.
 *
 * musl's malloc gives each large block its own mapping, or frees the
 * group it sits in as soon as it is empty: a buffer allocated and freed
 * once per message costs an mmap, a munmap (with a TLB shootdown on every
 * CPU) or madvise, and fresh page faults.  A pool keeps up to `max` freed
 * blocks of one size and hands them out again; beyond that blocks go back
 * to malloc, so a burst leaves at most max * size bytes behind.  Blocks are
 * held only while in use: an idle session holds none.  Thread-safe.
 */
#ifndef MRS_BUFPOOL_H
#define MRS_BUFPOOL_H

#include <pthread.h>
#include <stddef.h>

#define BUFPOOL_MAX 32

struct bufpool {
    pthread_mutex_t mu;
    size_t size; /* every block has this many bytes */
    int max;     /* at most this many kept (<= BUFPOOL_MAX) */
    int count;
    void *free[BUFPOOL_MAX];
};

#define BUFPOOL_INIT(bytes, keep) {.mu = PTHREAD_MUTEX_INITIALIZER, .size = (bytes), .max = (keep)}

/* bufpool_get — a block of p->size bytes (contents undefined), NULL when
 * out of memory.  bufpool_take — a kept block, or NULL when none is (the
 * caller then allocates p->size bytes its own way, e.g. calloc). */
void *bufpool_get(struct bufpool *p);
void *bufpool_take(struct bufpool *p);
/* bufpool_put — give back a block from bufpool_get (NULL is ignored). */
void bufpool_put(struct bufpool *p, void *b);

#endif
