/* block.c - building and reading prefix-compressed, checksummed data blocks. */
#include "engine/block.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/dbformat.h"
#include "engine/sst_format.h"

/* ---- Builder ---- */

struct st_block_builder {
    st_buf buf; /* entries, then (after finish) restarts, count and trailer */
    uint32_t *restarts;
    size_t nrestarts, restarts_cap;
    int interval;
    int counter; /* entries since the last restart point */
    st_buf last_key;
    size_t entries;
    bool finished;
};

st_status st_block_builder_create(int restart_interval, st_block_builder **out)
{
    *out = NULL;
    if (restart_interval < 1)
        return st_error(ST_INVALID_ARGUMENT, "block builder: restart interval %d < 1",
                        restart_interval);
    st_block_builder *b = calloc(1, sizeof(*b));
    if (!b)
        return st_error(ST_NO_MEMORY, "block builder: out of memory");
    b->interval = restart_interval;
    st_buf_init(&b->buf);
    st_buf_init(&b->last_key);
    st_block_builder_reset(b);
    *out = b;
    return ST_OK;
}

void st_block_builder_destroy(st_block_builder *b)
{
    if (!b)
        return;
    st_buf_free(&b->buf);
    st_buf_free(&b->last_key);
    free(b->restarts);
    free(b);
}

void st_block_builder_reset(st_block_builder *b)
{
    st_buf_clear(&b->buf);
    st_buf_clear(&b->last_key);
    b->nrestarts = 0;
    b->counter = 0;
    b->entries = 0;
    b->finished = false;
}

size_t st_block_builder_size(const st_block_builder *b)
{
    if (b->finished)
        return b->buf.len;
    /* The first entry opens restart 0, which an empty block has not pushed yet. */
    size_t nr = b->nrestarts ? b->nrestarts : 1;
    return b->buf.len + 4 * nr + 4 + ST_SST_BLOCK_TRAILER_BYTES;
}

size_t st_block_builder_entries(const st_block_builder *b)
{
    return b->entries;
}

static bool push_restart(st_block_builder *b, uint32_t off)
{
    if (b->nrestarts == b->restarts_cap) {
        size_t cap = b->restarts_cap ? b->restarts_cap * 2 : 32;
        uint32_t *r = realloc(b->restarts, cap * sizeof(*r));
        if (!r)
            return false;
        b->restarts = r;
        b->restarts_cap = cap;
    }
    b->restarts[b->nrestarts++] = off;
    return true;
}

st_status st_block_builder_add(st_block_builder *b, st_slice key, st_slice value)
{
    assert(!b->finished);
    assert(st_ikey_valid(key));
    assert(b->entries == 0 ||
           st_ikey_cmp(st_slice_make(b->last_key.data, b->last_key.len), key) < 0);

    /* Everything must stay addressable by the fixed32 restart offsets. */
    uint64_t grown =
        (uint64_t)st_block_builder_size(b) + 3 * ST_MAX_VARINT32 + key.len + value.len + 4;
    if (key.len > UINT32_MAX || value.len > UINT32_MAX || grown > UINT32_MAX)
        return st_error(ST_INVALID_ARGUMENT, "block builder: entry of %zu bytes overflows block",
                        key.len + value.len);

    size_t shared = 0;
    if (b->entries == 0 || b->counter >= b->interval) {
        if (!push_restart(b, (uint32_t)b->buf.len))
            return st_error(ST_NO_MEMORY, "block builder: out of memory");
        b->counter = 0;
    } else {
        size_t n = b->last_key.len < key.len ? b->last_key.len : key.len;
        while (shared < n && b->last_key.data[shared] == key.data[shared])
            shared++;
    }
    size_t non_shared = key.len - shared;
    if (!st_buf_reserve(&b->buf, 3 * ST_MAX_VARINT32 + non_shared + value.len))
        goto oom;
    uint8_t *p = b->buf.data + b->buf.len;
    p = st_encode_varint32(p, (uint32_t)shared);
    p = st_encode_varint32(p, (uint32_t)non_shared);
    p = st_encode_varint32(p, (uint32_t)value.len);
    memcpy(p, key.data + shared, non_shared);
    p += non_shared;
    if (value.len)
        memcpy(p, value.data, value.len);
    p += value.len;
    b->buf.len = (size_t)(p - b->buf.data);

    b->last_key.len = shared;
    if (!st_buf_append(&b->last_key, key.data + shared, non_shared))
        goto oom;
    b->counter++;
    b->entries++;
    return ST_OK;

oom:
    /* The entry is not in the block; the caller may only reset or destroy now. */
    return st_error(ST_NO_MEMORY, "block builder: out of memory");
}

st_status st_block_builder_finish(st_block_builder *b, st_slice *block)
{
    assert(!b->finished);
    if (b->nrestarts == 0 && !push_restart(b, 0))
        return st_error(ST_NO_MEMORY, "block builder: out of memory");
    if (!st_buf_reserve(&b->buf, 4 * b->nrestarts + 4 + ST_SST_BLOCK_TRAILER_BYTES))
        return st_error(ST_NO_MEMORY, "block builder: out of memory");
    for (size_t i = 0; i < b->nrestarts; i++)
        st_buf_put_fixed32(&b->buf, b->restarts[i]);
    st_buf_put_fixed32(&b->buf, (uint32_t)b->nrestarts);
    st_buf_put_fixed32(&b->buf, st_crc32c_mask(st_crc32c(b->buf.data, b->buf.len)));
    b->finished = true;
    *block = st_slice_make(b->buf.data, b->buf.len);
    return ST_OK;
}

/* ---- Reader ---- */

st_status st_block_check_crc(const uint8_t *block, size_t size, const char *fname,
                             uint64_t block_off)
{
    if (size < ST_SST_MIN_BLOCK_BYTES)
        return st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 " too short (%zu bytes)",
                        fname, block_off, size);
    size_t n = size - ST_SST_BLOCK_TRAILER_BYTES;
    uint32_t want = st_crc32c_unmask(st_get_fixed32(block + n));
    uint32_t got = st_crc32c(block, n);
    if (want != got)
        return st_error(ST_CORRUPTION,
                        "%s: block checksum mismatch at offset %" PRIu64 " (%zu bytes)", fname,
                        block_off, size);
    return ST_OK;
}

st_status st_block_init(st_block *b, const uint8_t *block, size_t size, const char *fname,
                        uint64_t block_off)
{
    if (size < ST_SST_MIN_BLOCK_BYTES || size > UINT32_MAX)
        return st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 " has bad size %zu", fname,
                        block_off, size);
    size_t contents = size - ST_SST_BLOCK_TRAILER_BYTES;
    /* The restart count below is a cache miss; let the first entries come in meanwhile. */
    __builtin_prefetch(block);
    uint32_t num = st_get_fixed32(block + contents - 4);
    size_t max = (contents - 4) / 4;
    if (num == 0 || num > max)
        return st_error(ST_CORRUPTION,
                        "%s: block at offset %" PRIu64 ": bad restart count %" PRIu32
                        " (at offset %" PRIu64 ")",
                        fname, block_off, num, block_off + contents - 4);
    uint32_t restarts_off = (uint32_t)(contents - 4 - 4 * (size_t)num);
    /* Restart 0 opens the block; the cursor relies on it when it walks back to the start. */
    if (st_get_fixed32(block + restarts_off) != 0)
        return st_error(ST_CORRUPTION,
                        "%s: block at offset %" PRIu64 ": first restart offset is not 0"
                        " (at offset %" PRIu64 ")",
                        fname, block_off, block_off + restarts_off);
    b->data = block;
    b->num_restarts = num;
    b->restarts_off = restarts_off;
    return ST_OK;
}

/*
 * Decode an entry header at p. Returns the start of the key delta, or NULL if the header or the
 * bytes it announces run past limit. Most entries have all three fields below 128: one byte each.
 */
static inline const uint8_t *decode_entry(const uint8_t *p, const uint8_t *limit, uint32_t *shared,
                                          uint32_t *non_shared, uint32_t *vlen)
{
    if (limit - p < 3)
        return NULL;
    if ((p[0] | p[1] | p[2]) < 128) {
        *shared = p[0];
        *non_shared = p[1];
        *vlen = p[2];
        p += 3;
    } else if (!st_decode_varint32(&p, limit, shared) ||
               !st_decode_varint32(&p, limit, non_shared) || !st_decode_varint32(&p, limit, vlen)) {
        return NULL;
    }
    if ((uint64_t)(limit - p) < (uint64_t)*non_shared + *vlen)
        return NULL;
    return p;
}

/* How far past the next entry parse_next prefetches: about three entries of a typical size. */
#define PREFETCH_AHEAD 384

static inline bool key_ok(const uint8_t *key, size_t len)
{
    return st_ikey_valid(st_slice_make(key, len));
}

static inline uint32_t restart_at(const st_block_cursor *c, uint32_t i)
{
    return st_get_fixed32(c->data + c->restarts_off + 4 * (size_t)i);
}

static void invalidate(st_block_cursor *c)
{
    c->cur = c->restarts_off;
    c->next_off = c->restarts_off;
    c->restart_idx = c->num_restarts;
    c->key_ext = NULL;
    c->key_len = 0;
}

static void corrupt(st_block_cursor *c, const char *what, uint32_t off)
{
    st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 ": %s (at offset %" PRIu64 ")", c->fname,
             c->block_off, what, c->block_off + off);
    c->status = ST_CORRUPTION;
    invalidate(c);
}

void st_block_cursor_retarget(st_block_cursor *c, const st_block *b, const char *fname,
                              uint64_t block_off)
{
    c->data = b->data;
    c->restarts_off = b->restarts_off;
    c->num_restarts = b->num_restarts;
    c->fname = fname;
    c->block_off = block_off;
    c->status = ST_OK;
    c->val = NULL;
    c->val_len = 0;
    invalidate(c);
}

void st_block_cursor_init(st_block_cursor *c, const st_block *b, const char *fname,
                          uint64_t block_off)
{
    c->key_heap = NULL;
    c->key_cap = sizeof(c->key_space);
    st_block_cursor_retarget(c, b, fname, block_off);
}

void st_block_cursor_free(st_block_cursor *c)
{
    free(c->key_heap);
    c->key_heap = NULL;
    c->key_cap = sizeof(c->key_space);
    invalidate(c);
}

/* Room for `need` key bytes in the cursor's own buffer, keeping its first `keep` bytes. */
static bool reserve_key(st_block_cursor *c, size_t need, size_t keep)
{
    if (need <= c->key_cap)
        return true;
    size_t cap = c->key_cap * 2 > need ? c->key_cap * 2 : need;
    uint8_t *p = malloc(cap);
    if (!p)
        return false;
    memcpy(p, c->key_heap ? c->key_heap : c->key_space, keep);
    free(c->key_heap);
    c->key_heap = p;
    c->key_cap = cap;
    return true;
}

/* Move to the entry at next_off. False at the end of the entries or on error. */
static bool parse_next(st_block_cursor *c)
{
    c->cur = c->next_off;
    if (c->cur >= c->restarts_off) {
        invalidate(c);
        return false;
    }
    const uint8_t *limit = c->data + c->restarts_off;
    uint32_t shared, non_shared, vlen;
    const uint8_t *q = decode_entry(c->data + c->cur, limit, &shared, &non_shared, &vlen);
    if (!q) {
        corrupt(c, "entry runs past the entries", c->cur);
        return false;
    }
    if (shared > c->key_len) {
        corrupt(c, "entry shares more than the previous key", c->cur);
        return false;
    }
    if (shared == 0) {
        c->key_ext = q;
        c->key_len = non_shared;
    } else {
        size_t len = (size_t)shared + non_shared;
        if (c->key_ext) {
            /* The previous key lies in the block: its prefix moves into our buffer. */
            if (!reserve_key(c, len, 0))
                goto oom;
            memcpy(c->key_heap ? c->key_heap : c->key_space, c->key_ext, shared);
            c->key_ext = NULL;
        } else if (!reserve_key(c, len, shared)) {
            goto oom;
        }
        memcpy((c->key_heap ? c->key_heap : c->key_space) + shared, q, non_shared);
        c->key_len = len;
    }
    st_slice k = st_block_cursor_key(c);
    if (!key_ok(k.data, k.len)) {
        corrupt(c, "entry key is not an internal key", c->cur);
        return false;
    }
    c->val = q + non_shared;
    c->val_len = vlen;
    c->next_off = (uint32_t)(c->val + vlen - c->data);
    /* A scan reads on through the block, which is seldom in the CPU's cache (tables are read
       through their map): ask for the lines a few entries ahead now, so that their misses
       overlap with the work on this one. A prefetch never faults; stay inside the block. */
    if (c->next_off + PREFETCH_AHEAD < c->restarts_off)
        __builtin_prefetch(c->data + c->next_off + PREFETCH_AHEAD);
    while (c->restart_idx + 1 < c->num_restarts && restart_at(c, c->restart_idx + 1) <= c->cur)
        c->restart_idx++;
    return true;

oom:
    st_error(ST_NO_MEMORY, "%s: block at offset %" PRIu64 ": out of memory for a key", c->fname,
             c->block_off);
    c->status = ST_NO_MEMORY;
    invalidate(c);
    return false;
}

/* Position before restart point i: the next parse_next reads its entry. */
static bool seek_to_restart(st_block_cursor *c, uint32_t i)
{
    uint32_t off = restart_at(c, i);
    if (off >= c->restarts_off) {
        if (c->restarts_off == 0) {
            /* A block without entries (never written by the builder; verify reports it). */
            invalidate(c);
            return false;
        }
        corrupt(c, "restart offset out of range", c->restarts_off + 4 * i);
        return false;
    }
    /* key_len 0 makes parse_next refuse an entry at a restart point that shares bytes. */
    c->key_ext = NULL;
    c->key_len = 0;
    c->next_off = off;
    c->restart_idx = i;
    return true;
}

void st_block_cursor_seek_first(st_block_cursor *c)
{
    if (c->status != ST_OK)
        return;
    if (seek_to_restart(c, 0))
        parse_next(c);
}

void st_block_cursor_seek_last(st_block_cursor *c)
{
    if (c->status != ST_OK)
        return;
    if (!seek_to_restart(c, c->num_restarts - 1))
        return;
    while (parse_next(c) && c->next_off < c->restarts_off) {
    }
}

void st_block_cursor_seek(st_block_cursor *c, st_slice target)
{
    if (c->status != ST_OK)
        return;
    /* Binary search for the last restart point whose key is < target. */
    uint32_t left = 0, right = c->num_restarts - 1;
    const uint8_t *limit = c->data + c->restarts_off;
    while (left < right) {
        uint32_t mid = left + (right - left + 1) / 2;
        uint32_t off = restart_at(c, mid);
        if (off >= c->restarts_off) {
            corrupt(c, "restart offset out of range", c->restarts_off + 4 * mid);
            return;
        }
        uint32_t shared, non_shared, vlen;
        const uint8_t *q = decode_entry(c->data + off, limit, &shared, &non_shared, &vlen);
        if (!q || shared != 0 || !key_ok(q, non_shared)) {
            corrupt(c, "bad entry at a restart point", off);
            return;
        }
        if (st_ikey_cmp(st_slice_make(q, non_shared), target) < 0)
            left = mid;
        else
            right = mid - 1;
    }
    if (!seek_to_restart(c, left))
        return;
    /* The walk below reads the entries of this restart interval one after another, each
       likely a cache miss: ask for the first kilobyte of them at once. */
    uint32_t end = left + 1 < c->num_restarts ? restart_at(c, left + 1) : c->restarts_off;
    if (end > c->restarts_off)
        end = c->restarts_off;
    for (uint32_t off = c->next_off + 64; off < end && off < c->next_off + 1024; off += 64)
        __builtin_prefetch(c->data + off);
    while (parse_next(c)) {
        if (st_ikey_cmp(st_block_cursor_key(c), target) >= 0)
            return;
    }
}

void st_block_cursor_next(st_block_cursor *c)
{
    assert(st_block_cursor_valid(c));
    parse_next(c);
}

void st_block_cursor_prev(st_block_cursor *c)
{
    assert(st_block_cursor_valid(c));
    uint32_t original = c->cur;
    /* Back to the last restart point before the current entry, then forward to just before it. */
    while (restart_at(c, c->restart_idx) >= original) {
        if (c->restart_idx == 0) {
            invalidate(c);
            return;
        }
        c->restart_idx--;
    }
    if (!seek_to_restart(c, c->restart_idx))
        return;
    do {
        if (!parse_next(c)) {
            if (c->status == ST_OK)
                corrupt(c, "restart points do not lie on entry boundaries", original);
            return;
        }
    } while (c->next_off < original);
    if (c->next_off != original)
        corrupt(c, "restart points do not lie on entry boundaries", original);
}

st_status st_block_verify(const st_block *b, const char *fname, uint64_t block_off, size_t *entries)
{
    st_status s = ST_OK;
    st_buf keys[2];
    st_buf_init(&keys[0]);
    st_buf_init(&keys[1]);
    const uint8_t *limit = b->data + b->restarts_off;
    uint32_t off = 0, r = 0, prev_restart = 0;
    size_t count = 0;
    const char *what = NULL;
    while (off < b->restarts_off) {
        bool is_restart = false;
        if (r < b->num_restarts) {
            uint32_t rp = st_get_fixed32(b->data + b->restarts_off + 4 * (size_t)r);
            if (r > 0 && rp <= prev_restart) {
                what = "restart offsets not increasing";
                goto bad;
            }
            if (rp < off) {
                what = "restart offset is not an entry boundary";
                goto bad;
            }
            if (rp == off) {
                is_restart = true;
                prev_restart = rp;
                r++;
            }
        }
        if (count == 0 && !is_restart) {
            what = "first entry is not a restart point";
            goto bad;
        }
        uint32_t shared, non_shared, vlen;
        const uint8_t *q = decode_entry(b->data + off, limit, &shared, &non_shared, &vlen);
        if (!q) {
            what = "entry runs past the entries";
            goto bad;
        }
        st_buf *prev = &keys[count & 1], *cur = &keys[(count + 1) & 1];
        if ((is_restart && shared != 0) || shared > prev->len) {
            what = "bad shared length";
            goto bad;
        }
        st_buf_clear(cur);
        if (!st_buf_append(cur, prev->data, shared) || !st_buf_append(cur, q, non_shared)) {
            s = st_error(ST_NO_MEMORY, "%s: verify: out of memory", fname);
            goto out;
        }
        if (!key_ok(cur->data, cur->len)) {
            what = "entry key is not an internal key";
            goto bad;
        }
        if (count > 0 && st_ikey_cmp(st_slice_make(prev->data, prev->len),
                                     st_slice_make(cur->data, cur->len)) >= 0) {
            what = "keys out of order";
            goto bad;
        }
        off = (uint32_t)(q + non_shared + vlen - b->data);
        count++;
    }
    if (count == 0) {
        what = "empty block";
        goto bad;
    }
    if (r != b->num_restarts) {
        what = "restart offset beyond the entries";
        off = b->restarts_off + 4 * r;
        goto bad;
    }
    if (entries)
        *entries = count;
    goto out;

bad:
    s = st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 ": %s (at offset %" PRIu64 ")",
                 fname, block_off, what, block_off + off);
out:
    st_buf_free(&keys[0]);
    st_buf_free(&keys[1]);
    return s;
}

/* ---- st_iterator over one block ---- */

typedef struct block_iter {
    st_iterator base;
    st_block_cursor c;
    char msg[256]; /* the message of c's error, replayed by status() */
} block_iter;

static void bi_note(block_iter *it)
{
    if (it->c.status != ST_OK && it->msg[0] == '\0')
        snprintf(it->msg, sizeof(it->msg), "%s", st_errmsg());
}

static bool bi_valid(const st_iterator *it)
{
    return st_block_cursor_valid(&((const block_iter *)it)->c);
}

static void bi_seek_first(st_iterator *it)
{
    st_block_cursor_seek_first(&((block_iter *)it)->c);
    bi_note((block_iter *)it);
}

static void bi_seek_last(st_iterator *it)
{
    st_block_cursor_seek_last(&((block_iter *)it)->c);
    bi_note((block_iter *)it);
}

static void bi_seek(st_iterator *it, st_slice target)
{
    st_block_cursor_seek(&((block_iter *)it)->c, target);
    bi_note((block_iter *)it);
}

static void bi_next(st_iterator *it)
{
    st_block_cursor_next(&((block_iter *)it)->c);
    bi_note((block_iter *)it);
}

static void bi_prev(st_iterator *it)
{
    st_block_cursor_prev(&((block_iter *)it)->c);
    bi_note((block_iter *)it);
}

static st_slice bi_key(const st_iterator *it)
{
    return st_block_cursor_key(&((const block_iter *)it)->c);
}

static st_slice bi_value(const st_iterator *it)
{
    return st_block_cursor_value(&((const block_iter *)it)->c);
}

static st_status bi_status(const st_iterator *it)
{
    const block_iter *bi = (const block_iter *)it;
    if (bi->c.status != ST_OK)
        return st_error(bi->c.status, "%s", bi->msg);
    return ST_OK;
}

static void bi_destroy(st_iterator *it)
{
    block_iter *bi = (block_iter *)it;
    st_block_cursor_free(&bi->c);
    free(bi);
}

static const st_iterator_ops block_iter_ops = {
    .valid = bi_valid,
    .seek_first = bi_seek_first,
    .seek_last = bi_seek_last,
    .seek = bi_seek,
    .next = bi_next,
    .prev = bi_prev,
    .key = bi_key,
    .value = bi_value,
    .status = bi_status,
    .destroy = bi_destroy,
};

st_iterator *st_block_iter_create(const st_block *b, const char *fname, uint64_t block_off)
{
    block_iter *it = malloc(sizeof(*it));
    if (!it)
        return NULL;
    it->base.ops = &block_iter_ops;
    it->msg[0] = '\0';
    st_block_cursor_init(&it->c, b, fname, block_off);
    return &it->base;
}
