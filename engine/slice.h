/*
 * slice.h - a borrowed run of bytes.
 *
 * An st_slice never owns its bytes: whoever hands one out says how long they stay valid.
 * Keys and values are arbitrary bytes (NUL and 0xFF included); nothing is NUL-terminated.
 * An empty slice may have data == NULL.
 */
#ifndef STRATA_ENGINE_SLICE_H
#define STRATA_ENGINE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct st_slice {
    const uint8_t *data;
    size_t len;
} st_slice;

static inline st_slice st_slice_make(const void *data, size_t len)
{
    st_slice s = {(const uint8_t *)data, len};
    return s;
}

/* A slice over a NUL-terminated C string (the NUL is not part of it). */
static inline st_slice st_slice_str(const char *s)
{
    return st_slice_make(s, strlen(s));
}

/* Bytewise comparison: <0, 0, >0 like memcmp; a proper prefix sorts first. */
static inline int st_slice_cmp(st_slice a, st_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.data, b.data, n) : 0;
    if (r == 0)
        r = (a.len > b.len) - (a.len < b.len);
    return r;
}

static inline bool st_slice_eq(st_slice a, st_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

#endif
