/* memtable.c - entries encoded once into the arena, ordered by a skiplist. */
#include "engine/memtable.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine/arena.h"
#include "engine/coding.h"
#include "engine/skiplist.h"

struct st_memtable {
    _Atomic uint64_t refs;
    _Atomic uint64_t entries; /* written by the writer only, read by anyone */
    st_arena *arena;          /* owned; holds the list's nodes and every entry */
    st_skiplist *list;        /* owned; keys are entries (memtable.h) */
};

/*
 * Varint helpers with the one-byte case inline: lengths below 128 are the usual case on every
 * comparison, and the general decoder is a function call.
 */
static inline const uint8_t *get_len(const uint8_t *p, uint32_t *v)
{
    if (*p < 0x80) {
        *v = *p;
        return p + 1;
    }
    /* Our own encoding, in our own memory: it is well formed and ends within 5 bytes. */
    bool ok = st_decode_varint32(&p, p + ST_MAX_VARINT32, v);
    assert(ok);
    (void)ok;
    return p;
}

static inline uint8_t *put_len(uint8_t *p, uint32_t v)
{
    if (v < 0x80) {
        *p = (uint8_t)v;
        return p + 1;
    }
    return st_encode_varint32(p, v);
}

static inline size_t len_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* st_ikey_cmp on an internal key already split into user key and tag. */
static inline int parts_cmp(const uint8_t *ua, size_t la, uint64_t ta, const uint8_t *ub, size_t lb,
                            uint64_t tb)
{
    int r = st_bytes_cmp(ua, ub, la < lb ? la : lb);
    if (r)
        return r;
    if (la != lb)
        return la < lb ? -1 : 1;
    return (ta < tb) - (ta > tb); /* newer (larger tag) first */
}

static int entry_cmp(void *ctx, const void *a, const void *b)
{
    (void)ctx;
    uint32_t ka, kb;
    const uint8_t *pa = get_len(a, &ka);
    const uint8_t *pb = get_len(b, &kb);
    size_t la = ka - ST_TAG_BYTES, lb = kb - ST_TAG_BYTES;
    return parts_cmp(pa, la, st_get_fixed64(pa + la), pb, lb, st_get_fixed64(pb + lb));
}

/* A search key decoded once, so the search does not re-decode it at every node it passes. */
typedef struct probe {
    const uint8_t *user;
    size_t len;
    uint64_t tag;
} probe;

static int entry_probe_cmp(void *ctx, const void *entry, const void *pr)
{
    (void)ctx;
    const probe *q = pr;
    uint32_t k;
    const uint8_t *p = get_len(entry, &k);
    size_t l = k - ST_TAG_BYTES;
    return parts_cmp(p, l, st_get_fixed64(p + l), q->user, q->len, q->tag);
}

st_status st_memtable_create(st_memtable **out)
{
    *out = NULL;
    st_status s;
    st_memtable *m = calloc(1, sizeof(*m));
    if (!m) {
        s = st_error(ST_NO_MEMORY, "memtable: out of memory");
        goto fail;
    }
    atomic_init(&m->refs, 1);
    atomic_init(&m->entries, 0);
    s = st_arena_create(0, &m->arena);
    if (s)
        goto fail;
    s = st_skiplist_create(m->arena, entry_cmp, NULL, &m->list);
    if (s)
        goto fail;
    *out = m;
    return ST_OK;
fail:
    if (m)
        st_arena_destroy(m->arena);
    free(m);
    return s;
}

void st_memtable_ref(st_memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void st_memtable_unref(st_memtable *m)
{
    if (!m)
        return;
    /* acq_rel: every use by other holders happens before the free below. */
    uint64_t before = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    assert(before > 0);
    if (before != 1)
        return;
    st_skiplist_destroy(m->list);
    st_arena_destroy(m->arena);
    free(m);
}

st_status st_memtable_add(st_memtable *m, uint64_t seq, st_kind kind, st_slice key, st_slice value)
{
    if (key.len > UINT32_MAX - ST_TAG_BYTES || value.len > UINT32_MAX)
        return st_error(ST_INVALID_ARGUMENT,
                        "memtable: key (%zu bytes) or value (%zu bytes) too long", key.len,
                        value.len);
    if (seq > ST_MAX_SEQ || (kind != ST_KIND_PUT && kind != ST_KIND_DELETE))
        return st_error(ST_INVALID_ARGUMENT, "memtable: bad sequence %llu or kind %d",
                        (unsigned long long)seq, (int)kind);
    uint32_t klen = (uint32_t)key.len + ST_TAG_BYTES;
    uint32_t vlen = (uint32_t)value.len;
    size_t need = len_size(klen) + klen + len_size(vlen) + vlen;
    uint8_t *entry = st_skiplist_alloc(m->list, need);
    if (!entry)
        return st_error(ST_NO_MEMORY, "memtable: out of memory for a %zu-byte entry", need);

    uint8_t *p = put_len(entry, klen);
    if (key.len)
        memcpy(p, key.data, key.len);
    p += key.len;
    st_put_fixed64(p, st_pack_tag(seq, kind));
    p += ST_TAG_BYTES;
    p = put_len(p, vlen);
    if (vlen)
        memcpy(p, value.data, vlen);
    assert((size_t)(p + vlen - entry) == need);

    probe q = {key.data, key.len, st_pack_tag(seq, kind)};
    st_skiplist_insert_probe(m->list, entry, &q, entry_probe_cmp, NULL);
    /* One writer: a plain increment published atomically, no read-modify-write needed. */
    uint64_t n = atomic_load_explicit(&m->entries, memory_order_relaxed);
    atomic_store_explicit(&m->entries, n + 1, memory_order_relaxed);
    return ST_OK;
}

st_status st_memtable_get(st_memtable *m, st_slice key, uint64_t seq, st_kind *kind,
                          st_slice *value, uint64_t *found_seq)
{
    if (seq > ST_MAX_SEQ)
        seq = ST_MAX_SEQ;
    /* (key, seq, SEEK) sorts before every version of key visible at seq: the first entry at or
       after it is the newest visible version, if it has the same user key. */
    probe q = {key.data, key.len, st_pack_tag(seq, ST_KIND_SEEK)};
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, m->list);
    st_skiplist_iter_seek_probe(&it, &q, entry_probe_cmp, NULL);
    if (!st_skiplist_iter_valid(&it))
        return ST_NOT_FOUND;

    uint32_t klen;
    const uint8_t *p = get_len(st_skiplist_iter_key(&it), &klen);
    size_t ulen = klen - ST_TAG_BYTES;
    if (ulen != key.len || (ulen && memcmp(p, key.data, ulen) != 0))
        return ST_NOT_FOUND;
    uint64_t tag = st_get_fixed64(p + ulen);
    uint32_t vlen;
    const uint8_t *v = get_len(p + klen, &vlen);
    *kind = (st_kind)(tag & 0xff);
    *value = st_slice_make(v, vlen);
    if (found_seq)
        *found_seq = tag >> 8;
    return ST_OK;
}

size_t st_memtable_bytes(const st_memtable *m)
{
    return st_arena_usage(m->arena);
}

uint64_t st_memtable_entries(const st_memtable *m)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)&m->entries, memory_order_relaxed);
}

/* ---- iterator ---- */

typedef struct mem_iter {
    st_iterator base;
    st_memtable *m; /* one reference, held until destroy */
    st_skiplist_iter pos;
} mem_iter;

static bool mi_valid(const st_iterator *it)
{
    return st_skiplist_iter_valid(&((const mem_iter *)it)->pos);
}

static void mi_seek_first(st_iterator *it)
{
    st_skiplist_iter_seek_first(&((mem_iter *)it)->pos);
}

static void mi_seek_last(st_iterator *it)
{
    st_skiplist_iter_seek_last(&((mem_iter *)it)->pos);
}

static void mi_seek(st_iterator *it, st_slice target)
{
    /* Targets are internal keys built by the engine. A shorter one (a caller bug) is read as the
       bare user key before all its versions rather than read out of bounds. */
    assert(target.len >= ST_TAG_BYTES);
    probe q = {target.data, target.len, UINT64_MAX};
    if (target.len >= ST_TAG_BYTES) {
        q.len = target.len - ST_TAG_BYTES;
        q.tag = st_get_fixed64(target.data + q.len);
    }
    st_skiplist_iter_seek_probe(&((mem_iter *)it)->pos, &q, entry_probe_cmp, NULL);
}

static void mi_next(st_iterator *it)
{
    st_skiplist_iter_next(&((mem_iter *)it)->pos);
}

static void mi_prev(st_iterator *it)
{
    st_skiplist_iter_prev(&((mem_iter *)it)->pos);
}

static st_slice mi_key(const st_iterator *it)
{
    uint32_t klen;
    const uint8_t *p = get_len(st_skiplist_iter_key(&((const mem_iter *)it)->pos), &klen);
    return st_slice_make(p, klen);
}

static st_slice mi_value(const st_iterator *it)
{
    uint32_t klen, vlen;
    const uint8_t *p = get_len(st_skiplist_iter_key(&((const mem_iter *)it)->pos), &klen);
    p = get_len(p + klen, &vlen);
    return st_slice_make(p, vlen);
}

static st_status mi_status(const st_iterator *it)
{
    (void)it;
    return ST_OK;
}

static void mi_destroy(st_iterator *it)
{
    mem_iter *mi = (mem_iter *)it;
    st_memtable_unref(mi->m);
    free(mi);
}

static const st_iterator_ops mem_iter_ops = {
    .valid = mi_valid,
    .seek_first = mi_seek_first,
    .seek_last = mi_seek_last,
    .seek = mi_seek,
    .next = mi_next,
    .prev = mi_prev,
    .key = mi_key,
    .value = mi_value,
    .status = mi_status,
    .destroy = mi_destroy,
};

st_iterator *st_memtable_iter(st_memtable *m)
{
    mem_iter *mi = malloc(sizeof(*mi));
    if (!mi) {
        st_error(ST_NO_MEMORY, "memtable: out of memory for an iterator");
        return NULL;
    }
    mi->base.ops = &mem_iter_ops;
    st_memtable_ref(m);
    mi->m = m;
    st_skiplist_iter_init(&mi->pos, m->list);
    return &mi->base;
}
