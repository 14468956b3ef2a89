/*
 * coding.h - the one place where integers become bytes and back.
 *
 * Every on-disk and on-wire integer in strata goes through these functions: fixed-width
 * little-endian (fixed32, fixed64) and LEB128 varints (varint32, varint64, at most 5 and 10
 * bytes). Structures are never written to disk as they lie in memory.
 *
 * Encoders write into a caller buffer and return the pointer just past what they wrote; the
 * caller guarantees room (ST_MAX_VARINT64 bytes is always enough for one varint).
 * Decoders read from [*p, limit), advance *p on success and return false, leaving *p unchanged,
 * when the input is truncated or malformed. They never read past `limit`.
 */
#ifndef STRATA_ENGINE_CODING_H
#define STRATA_ENGINE_CODING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ST_MAX_VARINT32 5
#define ST_MAX_VARINT64 10

static inline void st_put_fixed32(uint8_t *dst, uint32_t v)
{
    dst[0] = (uint8_t)v;
    dst[1] = (uint8_t)(v >> 8);
    dst[2] = (uint8_t)(v >> 16);
    dst[3] = (uint8_t)(v >> 24);
}

static inline void st_put_fixed64(uint8_t *dst, uint64_t v)
{
    st_put_fixed32(dst, (uint32_t)v);
    st_put_fixed32(dst + 4, (uint32_t)(v >> 32));
}

static inline uint32_t st_get_fixed32(const uint8_t *src)
{
    return (uint32_t)src[0] | ((uint32_t)src[1] << 8) | ((uint32_t)src[2] << 16) |
           ((uint32_t)src[3] << 24);
}

static inline uint64_t st_get_fixed64(const uint8_t *src)
{
    return (uint64_t)st_get_fixed32(src) | ((uint64_t)st_get_fixed32(src + 4) << 32);
}

/* Encode v as a varint at dst; return the end of what was written. */
uint8_t *st_encode_varint32(uint8_t *dst, uint32_t v);
uint8_t *st_encode_varint64(uint8_t *dst, uint64_t v);

/* Number of bytes st_encode_varint64 would write for v. */
int st_varint_length(uint64_t v);

/* Decode a varint from [*p, limit). */
bool st_decode_varint32(const uint8_t **p, const uint8_t *limit, uint32_t *v);
bool st_decode_varint64(const uint8_t **p, const uint8_t *limit, uint64_t *v);

/* Decode fixed-width integers from [*p, limit). */
bool st_decode_fixed32(const uint8_t **p, const uint8_t *limit, uint32_t *v);
bool st_decode_fixed64(const uint8_t **p, const uint8_t *limit, uint64_t *v);

/*
 * A length-prefixed byte string: varint32 length, then the bytes. On success *data points into
 * the input (borrowed, valid as long as the input is) and *len is its length.
 */
uint8_t *st_encode_lp(uint8_t *dst, const void *data, size_t len);
bool st_decode_lp(const uint8_t **p, const uint8_t *limit, const uint8_t **data, size_t *len);

/*
 * A growable byte buffer, for encoders whose output size is not known in advance.
 * Memory comes from the process allocator (jemalloc); st_buf_free releases it.
 * Functions that grow the buffer return false only when an allocation fails.
 */
typedef struct st_buf {
    uint8_t *data; /* owned */
    size_t len;
    size_t cap;
} st_buf;

void st_buf_init(st_buf *b);
void st_buf_free(st_buf *b);
void st_buf_clear(st_buf *b); /* len = 0, keeps the memory */
bool st_buf_reserve(st_buf *b, size_t extra);
bool st_buf_append(st_buf *b, const void *data, size_t len);
bool st_buf_put_fixed32(st_buf *b, uint32_t v);
bool st_buf_put_fixed64(st_buf *b, uint64_t v);
bool st_buf_put_varint32(st_buf *b, uint32_t v);
bool st_buf_put_varint64(st_buf *b, uint64_t v);
bool st_buf_put_lp(st_buf *b, const void *data, size_t len);

#endif
