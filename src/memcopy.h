/*
 * memcopy — a memcpy for short copies.
 *
 * In the static musl build on x86_64 (MEMCOPY_REPLACES_LIBC) memcpy and
 * musl's internal __memcpy_fwd are mem_copy, for mrs and for the libraries
 * linked into it.  Builds against glibc (sanitizers, valgrind, fuzzers)
 * keep their libc's memcpy and only have mem_copy, which the unit tests
 * check there too.
 */
#ifndef MRS_MEMCOPY_H
#define MRS_MEMCOPY_H

#include <stddef.h>
#include <string.h> /* glibc's features.h: __GLIBC__ */

#if defined(__x86_64__) && !defined(__GLIBC__)
#define MEMCOPY_REPLACES_LIBC 1
#else
#define MEMCOPY_REPLACES_LIBC 0
#endif

/* mem_copy — memcpy's contract, and also correct when dst is below src
 * and the two overlap (a forward copy). */
void *mem_copy(void *dst, const void *src, size_t n);

#endif
