/*
 * bufpool — see bufpool.h.  A mutex and an array: taken and given back
 * once per message or handshake, never contended for long.
 */
#include "bufpool.h"

#include <stdlib.h>

void *bufpool_take(struct bufpool *p)
{
    void *b = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->count > 0)
        b = p->free[--p->count];
    pthread_mutex_unlock(&p->mu);
    return b;
}

void *bufpool_get(struct bufpool *p)
{
    void *b = bufpool_take(p);
    return b ? b : malloc(p->size);
}

void bufpool_put(struct bufpool *p, void *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->count < p->max && p->count < BUFPOOL_MAX) {
        p->free[p->count++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    free(b);
}
