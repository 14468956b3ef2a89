/* write_batch.c - building, parsing and walking batch records. */
#include "engine/write_batch.h"

#include <inttypes.h>
#include <stdlib.h>

static void init_rep(st_batch *b)
{
    st_buf_clear(&b->rep);
    /* Reserved by st_batch_create; cannot fail. */
    uint8_t zero[ST_BATCH_HEADER] = {0};
    st_buf_append(&b->rep, zero, sizeof(zero));
    b->count = 0;
}

st_status st_batch_create(st_batch **out)
{
    st_batch *b = calloc(1, sizeof(*b));
    if (!b)
        goto fail;
    st_buf_init(&b->rep);
    if (!st_buf_reserve(&b->rep, 256))
        goto fail;
    init_rep(b);
    *out = b;
    return ST_OK;
fail:
    free(b);
    return st_error(ST_NO_MEMORY, "out of memory creating a batch");
}

void st_batch_destroy(st_batch *b)
{
    if (!b)
        return;
    st_buf_free(&b->rep);
    free(b);
}

void st_batch_clear(st_batch *b)
{
    init_rep(b);
}

static st_status check_key(st_slice key)
{
    if (key.len == 0)
        return st_error(ST_INVALID_ARGUMENT, "empty key");
    if (key.len > ST_KEY_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "key of %zu bytes exceeds the limit of %u bytes",
                        key.len, ST_KEY_LIMIT);
    return ST_OK;
}

st_status st_batch_put(st_batch *b, st_slice key, st_slice value)
{
    st_status s = check_key(key);
    if (s)
        return s;
    if (value.len > ST_VALUE_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "value of %zu bytes exceeds the limit of %u bytes",
                        value.len, ST_VALUE_LIMIT);
    size_t old = b->rep.len;
    uint8_t kind = ST_KIND_PUT;
    if (!st_buf_append(&b->rep, &kind, 1) || !st_buf_put_lp(&b->rep, key.data, key.len) ||
        !st_buf_put_lp(&b->rep, value.data, value.len)) {
        b->rep.len = old;
        return st_error(ST_NO_MEMORY, "out of memory growing a batch");
    }
    b->count++;
    st_put_fixed32(b->rep.data + 16, b->count);
    return ST_OK;
}

st_status st_batch_noop(st_batch *b)
{
    uint8_t op = ST_OP_NOOP;
    if (!st_buf_append(&b->rep, &op, 1))
        return st_error(ST_NO_MEMORY, "out of memory growing a batch");
    b->count++;
    st_put_fixed32(b->rep.data + 16, b->count);
    return ST_OK;
}

st_status st_batch_delete(st_batch *b, st_slice key)
{
    st_status s = check_key(key);
    if (s)
        return s;
    size_t old = b->rep.len;
    uint8_t kind = ST_KIND_DELETE;
    if (!st_buf_append(&b->rep, &kind, 1) || !st_buf_put_lp(&b->rep, key.data, key.len)) {
        b->rep.len = old;
        return st_error(ST_NO_MEMORY, "out of memory growing a batch");
    }
    b->count++;
    st_put_fixed32(b->rep.data + 16, b->count);
    return ST_OK;
}

uint32_t st_batch_count(const st_batch *b)
{
    return b->count;
}

size_t st_batch_bytes(const st_batch *b)
{
    return b->rep.len;
}

bool st_batch_append_rep(st_batch *dst, st_slice rep)
{
    if (!st_buf_append(&dst->rep, rep.data + ST_BATCH_HEADER, rep.len - ST_BATCH_HEADER))
        return false;
    dst->count += st_get_fixed32(rep.data + 16);
    st_put_fixed32(dst->rep.data + 16, dst->count);
    return true;
}

void st_record_set_header(uint8_t *rep, uint64_t seq, uint64_t term, uint32_t count)
{
    st_put_fixed64(rep, seq);
    st_put_fixed64(rep + 8, term);
    st_put_fixed32(rep + 16, count);
}

/* Decode one operation at *p; false if it does not parse. *op is a st_kind or ST_OP_NOOP. */
static bool next_op(const uint8_t **p, const uint8_t *end, int *op, st_slice *key, st_slice *value)
{
    const uint8_t *q = *p;
    if (q >= end)
        return false;
    uint8_t k = *q++;
    const uint8_t *kd = NULL, *vd = NULL;
    size_t kl = 0, vl = 0;
    if (k == ST_OP_NOOP) {
        *op = ST_OP_NOOP;
        *key = *value = st_slice_make(NULL, 0);
        *p = q;
        return true;
    }
    if (k > ST_KIND_PUT || !st_decode_lp(&q, end, &kd, &kl))
        return false;
    if (k == ST_KIND_PUT && !st_decode_lp(&q, end, &vd, &vl))
        return false;
    *op = k;
    *key = st_slice_make(kd, kl);
    *value = st_slice_make(vd, vl);
    *p = q;
    return true;
}

st_status st_record_check(st_slice rep, const char *what, st_log_record_info *info)
{
    if (rep.len < ST_BATCH_HEADER)
        return st_error(ST_CORRUPTION, "%s: record of %zu bytes is shorter than its header", what,
                        rep.len);
    uint64_t seq = st_get_fixed64(rep.data);
    uint32_t count = st_get_fixed32(rep.data + 16);
    if (seq == 0 || seq > ST_MAX_SEQ || (count > 0 && seq + count - 1 > ST_MAX_SEQ))
        return st_error(ST_CORRUPTION, "%s: record sequence %" PRIu64 " out of range", what, seq);
    const uint8_t *p = rep.data + ST_BATCH_HEADER, *end = rep.data + rep.len;
    for (uint32_t i = 0; i < count; i++) {
        int op;
        st_slice key, value;
        if (!next_op(&p, end, &op, &key, &value))
            return st_error(ST_CORRUPTION, "%s: operation %u of %u does not parse", what, i + 1,
                            count);
        if (op == ST_OP_NOOP)
            continue;
        if (key.len == 0 || key.len > ST_KEY_LIMIT || value.len > ST_VALUE_LIMIT)
            return st_error(ST_CORRUPTION, "%s: operation %u has a key or value of impossible size",
                            what, i + 1);
    }
    if (p != end)
        return st_error(ST_CORRUPTION, "%s: %zu stray bytes after the last operation", what,
                        (size_t)(end - p));
    if (info) {
        info->seq = seq;
        info->term = st_get_fixed64(rep.data + 8);
        info->count = count;
    }
    return ST_OK;
}

st_status st_record_foreach(st_slice rep, st_record_op_fn fn, void *ctx)
{
    uint64_t seq = st_get_fixed64(rep.data);
    uint32_t count = st_get_fixed32(rep.data + 16);
    const uint8_t *p = rep.data + ST_BATCH_HEADER, *end = rep.data + rep.len;
    for (uint32_t i = 0; i < count; i++) {
        int op;
        st_slice key, value;
        if (!next_op(&p, end, &op, &key, &value))
            return st_error(ST_CORRUPTION, "record operation %u does not parse", i + 1);
        if (op == ST_OP_NOOP)
            continue;
        st_status s = fn(ctx, seq + i, (st_kind)op, key, value);
        if (s)
            return s;
    }
    return ST_OK;
}

st_status st_record_check_limits(st_slice rep, size_t max_key, size_t max_value)
{
    uint32_t count = st_get_fixed32(rep.data + 16);
    const uint8_t *p = rep.data + ST_BATCH_HEADER, *end = rep.data + rep.len;
    for (uint32_t i = 0; i < count; i++) {
        int op;
        st_slice key, value;
        if (!next_op(&p, end, &op, &key, &value))
            return st_error(ST_INVALID_ARGUMENT, "batch operation %u does not parse", i + 1);
        if (key.len > max_key)
            return st_error(ST_INVALID_ARGUMENT,
                            "key of %zu bytes exceeds the limit of %zu bytes (max_key_bytes)",
                            key.len, max_key);
        if (value.len > max_value)
            return st_error(ST_INVALID_ARGUMENT,
                            "value of %zu bytes exceeds the limit of %zu bytes (max_value_bytes)",
                            value.len, max_value);
    }
    return ST_OK;
}

st_status st_log_record_parse(st_slice record, st_log_record_info *info)
{
    return st_record_check(record, "log record", info);
}
