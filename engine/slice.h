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

static inline uint64_t st_load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/*
 * memcmp's sign for n bytes, eight at a time inline: keys usually differ in their first words,
 * and comparisons run at every skiplist node, binary-search step and merge step, where a call
 * into libc costs more than the work.
 */
static inline int st_bytes_cmp(const uint8_t *a, const uint8_t *b, size_t n)
{
    while (n >= 8) {
        uint64_t x = st_load_be64(a), y = st_load_be64(b);
        if (x != y)
            return x < y ? -1 : 1;
        a += 8;
        b += 8;
        n -= 8;
    }
    return n ? memcmp(a, b, n) : 0;
}

/* Bytewise comparison: <0, 0, >0 like memcmp; a proper prefix sorts first. */
static inline int st_slice_cmp(st_slice a, st_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int r = st_bytes_cmp(a.data, b.data, n);
    if (r == 0)
        r = (a.len > b.len) - (a.len < b.len);
    return r;
}

static inline bool st_slice_eq(st_slice a, st_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

#endif
