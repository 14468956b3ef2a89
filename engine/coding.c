/* coding.c - varints and the growable buffer. */
#include "engine/coding.h"

#include <stdlib.h>

uint8_t *st_encode_varint32(uint8_t *dst, uint32_t v)
{
    return st_encode_varint64(dst, v);
}

uint8_t *st_encode_varint64(uint8_t *dst, uint64_t v)
{
    while (v >= 0x80) {
        *dst++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *dst++ = (uint8_t)v;
    return dst;
}

int st_varint_length(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static bool decode_varint(const uint8_t **p, const uint8_t *limit, uint64_t *v, int max_bytes)
{
    const uint8_t *q = *p;
    uint64_t result = 0;
    for (int shift = 0, i = 0; i < max_bytes && q < limit; i++, shift += 7) {
        uint64_t byte = *q++;
        /* The last permitted byte may only carry the bits that still fit. */
        if (i == max_bytes - 1 && (byte >> (max_bytes == 5 ? 4 : 1)) != 0)
            return false;
        result |= (byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) {
            *v = result;
            *p = q;
            return true;
        }
    }
    return false;
}

bool st_decode_varint32(const uint8_t **p, const uint8_t *limit, uint32_t *v)
{
    uint64_t x;
    if (!decode_varint(p, limit, &x, ST_MAX_VARINT32))
        return false;
    *v = (uint32_t)x;
    return true;
}

bool st_decode_varint64(const uint8_t **p, const uint8_t *limit, uint64_t *v)
{
    return decode_varint(p, limit, v, ST_MAX_VARINT64);
}

bool st_decode_fixed32(const uint8_t **p, const uint8_t *limit, uint32_t *v)
{
    if (limit - *p < 4)
        return false;
    *v = st_get_fixed32(*p);
    *p += 4;
    return true;
}

bool st_decode_fixed64(const uint8_t **p, const uint8_t *limit, uint64_t *v)
{
    if (limit - *p < 8)
        return false;
    *v = st_get_fixed64(*p);
    *p += 8;
    return true;
}

uint8_t *st_encode_lp(uint8_t *dst, const void *data, size_t len)
{
    dst = st_encode_varint32(dst, (uint32_t)len);
    if (len)
        memcpy(dst, data, len);
    return dst + len;
}

bool st_decode_lp(const uint8_t **p, const uint8_t *limit, const uint8_t **data, size_t *len)
{
    const uint8_t *q = *p;
    uint32_t n;
    if (!st_decode_varint32(&q, limit, &n) || (size_t)(limit - q) < n)
        return false;
    *data = q;
    *len = n;
    *p = q + n;
    return true;
}

void st_buf_init(st_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void st_buf_free(st_buf *b)
{
    free(b->data);
    st_buf_init(b);
}

void st_buf_clear(st_buf *b)
{
    b->len = 0;
}

bool st_buf_reserve(st_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return true;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

bool st_buf_append(st_buf *b, const void *data, size_t len)
{
    if (!st_buf_reserve(b, len))
        return false;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return true;
}

bool st_buf_put_fixed32(st_buf *b, uint32_t v)
{
    if (!st_buf_reserve(b, 4))
        return false;
    st_put_fixed32(b->data + b->len, v);
    b->len += 4;
    return true;
}

bool st_buf_put_fixed64(st_buf *b, uint64_t v)
{
    if (!st_buf_reserve(b, 8))
        return false;
    st_put_fixed64(b->data + b->len, v);
    b->len += 8;
    return true;
}

bool st_buf_put_varint32(st_buf *b, uint32_t v)
{
    return st_buf_put_varint64(b, v);
}

bool st_buf_put_varint64(st_buf *b, uint64_t v)
{
    if (!st_buf_reserve(b, ST_MAX_VARINT64))
        return false;
    b->len = (size_t)(st_encode_varint64(b->data + b->len, v) - b->data);
    return true;
}

bool st_buf_put_lp(st_buf *b, const void *data, size_t len)
{
    if (!st_buf_reserve(b, ST_MAX_VARINT32 + len))
        return false;
    b->len = (size_t)(st_encode_lp(b->data + b->len, data, len) - b->data);
    return true;
}
