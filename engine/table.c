/* table.c - reading a table: open and check .meta/.idx, get, iterate, verify. */
#include "engine/table.h"

#include <assert.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/block.h"
#include "engine/bloom.h"
#include "engine/crc32c.h"
#include "engine/filename.h"
#include "engine/sst_format.h"

/*
 * One block of the index; key points into the table's copy of .idx. `prefix` holds 8 bytes of
 * the key's user part, those after the prefix all keys of the table share (t->lcp), big-endian
 * and zero-padded: where two prefixes differ they order the keys as st_ikey_cmp does, so the
 * binary search mostly stays inside this array instead of missing the cache once more per step
 * to reach the key bytes.
 */
typedef struct idx_entry {
    uint64_t prefix;
    const uint8_t *key;
    uint32_t key_len;
    uint32_t size; /* whole block, trailer included */
    uint64_t offset;
} idx_entry;

struct st_table {
    atomic_uint refs;
    st_env *env;
    st_cache *cache; /* borrowed; NULL when mapped or when the caller gave none */
    uint64_t cache_id;
    st_file *dat;
    const uint8_t *map;     /* the mapped .dat, or NULL when reading with pread */
    atomic_uchar *verified; /* per block, when mapped: its CRC has been checked */
    st_sst_props props;
    st_slice smallest_user, largest_user; /* into props */
    size_t lcp;     /* length of the prefix every user key in the table shares */
    st_slice bloom; /* into meta_buf */
    uint8_t *meta_buf, *idx_buf;
    idx_entry *index;
    uint32_t nblocks;
    char *dat_path;
};

/* A cached block: the parsed header beside the verified bytes, in one allocation. */
typedef struct cached_block {
    st_block blk;
    uint8_t data[];
} cached_block;

/* A block in use: pinned in the cache, owned (no cache), or borrowed from the map. */
typedef struct blockref {
    st_block blk;
    st_cache_handle *h;
    cached_block *owned;
} blockref;

static char *make_path(const char *dir, uint64_t number, const char *ext)
{
    size_t cap = strlen(dir) + ST_NAME_EXTRA;
    char *p = malloc(cap);
    return p ? st_numbered_path(p, cap, dir, number, ext) : NULL;
}

static inline st_slice idx_key(const st_table *t, uint32_t i)
{
    return st_slice_make(t->index[i].key, t->index[i].key_len);
}

/*
 * Bytes [lcp, lcp + 8) of an internal key's user part as a big-endian number, zero-padded; the
 * caller knows the user part starts with the table's common prefix.
 */
static inline uint64_t user_prefix(st_slice ikey, size_t lcp)
{
    size_t n = ikey.len - ST_TAG_BYTES - lcp;
    if (n > 8)
        n = 8;
    const uint8_t *d = ikey.data + lcp;
    uint64_t p = 0;
    for (size_t i = 0; i < n; i++)
        p |= (uint64_t)d[i] << (56 - 8 * i);
    return p;
}

/* ---- Opening ---- */

static st_status read_whole(st_env *env, const char *path, uint8_t **data, size_t *n)
{
    st_file *f = NULL;
    uint8_t *buf = NULL;
    uint64_t size;
    size_t got;
    st_status s = env->open_readable(env, path, &f);
    if (s != ST_OK)
        return s;
    if ((s = env->size(f, &size)) != ST_OK)
        goto fail;
    if (size > ST_SST_MAX_SIDE_FILE_BYTES) {
        s = st_error(ST_CORRUPTION, "%s: implausible size %" PRIu64, path, size);
        goto fail;
    }
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        s = st_error(ST_NO_MEMORY, "%s: out of memory for %" PRIu64 " bytes", path, size);
        goto fail;
    }
    if ((s = env->read_at(f, 0, buf, (size_t)size, &got)) != ST_OK)
        goto fail;
    if (got != size) {
        s = st_error(ST_CORRUPTION, "%s: shrank while read (%zu of %" PRIu64 " bytes)", path, got,
                     size);
        goto fail;
    }
    env->close(f);
    *data = buf;
    *n = (size_t)size;
    return ST_OK;

fail:
    free(buf);
    env->close(f);
    return s;
}

/*
 * The checks .idx and .meta share: size, magic, version, CRC (engine/format/sst.md, "Reader
 * rules": the version comes before the CRC because another version may checksum differently).
 */
static st_status check_envelope(const char *path, const uint8_t *buf, size_t n, uint32_t magic,
                                size_t footer)
{
    if (n < ST_SST_HEADER_BYTES + footer)
        return st_error(ST_CORRUPTION, "%s: too short (%zu bytes) at offset 0", path, n);
    if (st_get_fixed32(buf) != magic)
        return st_error(ST_CORRUPTION, "%s: bad magic at offset 0", path);
    if (buf[4] != ST_SST_FORMAT_VERSION)
        return st_error(ST_NOT_SUPPORTED, "%s: format version %u not supported (at offset 4)", path,
                        buf[4]);
    uint32_t want = st_crc32c_unmask(st_get_fixed32(buf + n - 4));
    if (st_crc32c(buf, n - 4) != want)
        return st_error(ST_CORRUPTION, "%s: checksum mismatch (stored at offset %zu)", path, n - 4);
    return ST_OK;
}

static st_status bad_field(const char *path, const char *field, const uint8_t *base,
                           const uint8_t *at)
{
    return st_error(ST_CORRUPTION, "%s: bad %s at offset %td", path, field, at - base);
}

static st_status parse_meta(st_table *t, const char *path, uint64_t number)
{
    const uint8_t *buf = t->meta_buf;
    size_t n = (size_t)t->props.meta_bytes;
    st_status s = check_envelope(path, buf, n, ST_SST_META_MAGIC, ST_SST_META_FOOTER_BYTES);
    if (s != ST_OK)
        return s;
    const uint8_t *p = buf + ST_SST_HEADER_BYTES, *limit = buf + n - ST_SST_META_FOOTER_BYTES;
    const uint8_t *at, *smallest, *largest, *bloom;
    size_t smallest_len, largest_len, bloom_len;
    st_sst_props *pr = &t->props;
    uint64_t num;

    at = p;
    if (!st_decode_varint64(&p, limit, &num) || num != number)
        return st_error(ST_CORRUPTION, "%s: bad table number at offset %td", path, at - buf);
    at = p;
    if (!st_decode_lp(&p, limit, &smallest, &smallest_len) ||
        !st_ikey_valid(st_slice_make(smallest, smallest_len)))
        return bad_field(path, "smallest key", buf, at);
    at = p;
    if (!st_decode_lp(&p, limit, &largest, &largest_len) ||
        !st_ikey_valid(st_slice_make(largest, largest_len)) ||
        st_ikey_cmp(st_slice_make(smallest, smallest_len), st_slice_make(largest, largest_len)) > 0)
        return bad_field(path, "largest key", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->entries) || pr->entries == 0)
        return bad_field(path, "entry count", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->tombstones) || pr->tombstones > pr->entries)
        return bad_field(path, "tombstone count", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->min_seq) || pr->min_seq > ST_MAX_SEQ)
        return bad_field(path, "min sequence", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->max_seq) || pr->max_seq > ST_MAX_SEQ ||
        pr->max_seq < pr->min_seq)
        return bad_field(path, "max sequence", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->dat_bytes) || pr->dat_bytes == 0)
        return bad_field(path, ".dat size", buf, at);
    at = p;
    if (!st_decode_varint64(&p, limit, &pr->idx_bytes))
        return bad_field(path, ".idx size", buf, at);
    at = p;
    if (!st_decode_lp(&p, limit, &bloom, &bloom_len))
        return bad_field(path, "Bloom filter", buf, at);
    if (p != limit)
        return bad_field(path, "length (trailing bytes)", buf, p);

    pr->number = number;
    if (!st_buf_append(&pr->smallest, smallest, smallest_len) ||
        !st_buf_append(&pr->largest, largest, largest_len))
        return st_error(ST_NO_MEMORY, "%s: out of memory", path);
    t->smallest_user = st_ikey_user(st_slice_make(pr->smallest.data, pr->smallest.len));
    t->largest_user = st_ikey_user(st_slice_make(pr->largest.data, pr->largest.len));
    t->bloom = st_slice_make(bloom, bloom_len);
    return ST_OK;
}

static st_status parse_idx(st_table *t, const char *path, size_t n)
{
    const uint8_t *buf = t->idx_buf;
    st_status s = check_envelope(path, buf, n, ST_SST_IDX_MAGIC, ST_SST_IDX_FOOTER_BYTES);
    if (s != ST_OK)
        return s;
    if (n != t->props.idx_bytes)
        return st_error(ST_CORRUPTION, "%s: %zu bytes, but the .meta says %" PRIu64 " (offset 0)",
                        path, n, t->props.idx_bytes);
    const uint8_t *p = buf + ST_SST_HEADER_BYTES, *limit = buf + n - ST_SST_IDX_FOOTER_BYTES;
    uint32_t count = st_get_fixed32(limit);
    /* Each entry takes at least 11 bytes (lp of an 8-byte key, two one-byte varints). */
    if (count == 0 || count > (size_t)(limit - p) / 11)
        return st_error(ST_CORRUPTION, "%s: bad block count %" PRIu32 " at offset %zu", path, count,
                        n - ST_SST_IDX_FOOTER_BYTES);
    t->index = malloc(count * sizeof(*t->index));
    if (!t->index)
        return st_error(ST_NO_MEMORY, "%s: out of memory for %" PRIu32 " blocks", path, count);
    uint64_t expect_off = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *at = p, *key;
        size_t key_len;
        uint64_t off;
        uint32_t size;
        if (!st_decode_lp(&p, limit, &key, &key_len) || !st_ikey_valid(st_slice_make(key, key_len)))
            return bad_field(path, "block key", buf, at);
        if (i > 0 && st_ikey_cmp(idx_key(t, i - 1), st_slice_make(key, key_len)) >= 0)
            return bad_field(path, "block key (out of order)", buf, at);
        at = p;
        if (!st_decode_varint64(&p, limit, &off) || off != expect_off)
            return bad_field(path, "block offset", buf, at);
        at = p;
        if (!st_decode_varint32(&p, limit, &size) || size < ST_SST_MIN_BLOCK_BYTES ||
            size > t->props.dat_bytes - off)
            return bad_field(path, "block size", buf, at);
        t->index[i] = (idx_entry){0, key, (uint32_t)key_len, size, off};
        t->nblocks = i + 1;
        expect_off = off + size;
    }
    if (p != limit)
        return bad_field(path, "block count (trailing bytes)", buf, p);
    if (expect_off != t->props.dat_bytes)
        return st_error(ST_CORRUPTION, "%s: blocks cover %" PRIu64 " bytes, .meta says %" PRIu64,
                        path, expect_off, t->props.dat_bytes);
    st_slice smallest = st_slice_make(t->props.smallest.data, t->props.smallest.len);
    st_slice largest = st_slice_make(t->props.largest.data, t->props.largest.len);
    if (!st_slice_eq(idx_key(t, 0), smallest))
        return st_error(ST_CORRUPTION, "%s: first block key differs from the .meta's smallest key",
                        path);
    if (st_ikey_cmp(idx_key(t, count - 1), largest) > 0)
        return st_error(ST_CORRUPTION, "%s: last block key beyond the .meta's largest key", path);
    /* Every key lies between smallest and largest, so it shares their common prefix. */
    size_t lcp = 0;
    while (lcp < t->smallest_user.len && lcp < t->largest_user.len &&
           t->smallest_user.data[lcp] == t->largest_user.data[lcp])
        lcp++;
    t->lcp = lcp;
    for (uint32_t i = 0; i < count; i++)
        t->index[i].prefix = user_prefix(idx_key(t, i), lcp);
    return ST_OK;
}

static void table_free(st_table *t)
{
    if (t->cache) {
        /* The ids are never reused, so this only gives the memory back early. */
        for (uint32_t i = 0; i < t->nblocks; i++)
            st_cache_erase(t->cache, t->cache_id, t->index[i].offset);
    }
    if (t->dat)
        t->env->close(t->dat);
    free(t->verified);
    free(t->index);
    free(t->idx_buf);
    free(t->meta_buf);
    st_sst_props_free(&t->props);
    free(t->dat_path);
    free(t);
}

st_status st_table_open(const st_table_options *o, const char *sst_dir, uint64_t number,
                        uint64_t expect_dat_bytes, st_table **out)
{
    st_status s;
    char *meta_path = NULL, *idx_path = NULL;
    size_t n;
    *out = NULL;
    st_table *t = calloc(1, sizeof(*t));
    if (!t)
        return st_error(ST_NO_MEMORY, "table %" PRIu64 ": out of memory", number);
    atomic_init(&t->refs, 1);
    t->env = o->env;
    st_buf_init(&t->props.smallest);
    st_buf_init(&t->props.largest);
    t->dat_path = make_path(sst_dir, number, ST_SST_DAT_EXT);
    meta_path = make_path(sst_dir, number, ST_SST_META_EXT);
    idx_path = make_path(sst_dir, number, ST_SST_IDX_EXT);
    if (!t->dat_path || !meta_path || !idx_path) {
        s = st_error(ST_NO_MEMORY, "table %" PRIu64 ": out of memory", number);
        goto fail;
    }

    if ((s = read_whole(t->env, meta_path, &t->meta_buf, &n)) != ST_OK)
        goto missing;
    t->props.meta_bytes = n;
    if ((s = parse_meta(t, meta_path, number)) != ST_OK)
        goto fail;
    if ((s = read_whole(t->env, idx_path, &t->idx_buf, &n)) != ST_OK)
        goto missing;
    if ((s = parse_idx(t, idx_path, n)) != ST_OK)
        goto fail;

    uint64_t size;
    if ((s = t->env->open_readable(t->env, t->dat_path, &t->dat)) != ST_OK)
        goto missing;
    if ((s = t->env->size(t->dat, &size)) != ST_OK)
        goto fail;
    if (size != t->props.dat_bytes) {
        s = st_error(ST_CORRUPTION, "%s: %" PRIu64 " bytes, but the .meta says %" PRIu64,
                     t->dat_path, size, t->props.dat_bytes);
        goto fail;
    }
    if (expect_dat_bytes != 0 && size != expect_dat_bytes) {
        s = st_error(ST_CORRUPTION, "%s: %" PRIu64 " bytes, but %" PRIu64 " were expected",
                     t->dat_path, size, expect_dat_bytes);
        goto fail;
    }
    if (o->mmap) {
        uint64_t len;
        s = t->env->map(t->dat, &t->map, &len);
        if (s == ST_OK && len != size) {
            s = st_error(ST_CORRUPTION, "%s: mapped %" PRIu64 " bytes of %" PRIu64, t->dat_path,
                         len, size);
            goto fail;
        }
        if (s == ST_NOT_SUPPORTED) {
            t->map = NULL; /* read with pread instead */
        } else if (s != ST_OK) {
            goto fail;
        } else {
            t->verified = calloc(t->nblocks, sizeof(*t->verified));
            if (!t->verified) {
                s = st_error(ST_NO_MEMORY, "%s: out of memory", t->dat_path);
                goto fail;
            }
        }
    }
    if (!t->map && o->block_cache) {
        t->cache = o->block_cache;
        t->cache_id = st_cache_new_id(t->cache);
    }
    free(meta_path);
    free(idx_path);
    *out = t;
    return ST_OK;

missing:
    /* Only live tables are opened: a file of one that is gone is damage, not an absent key. */
    if (s == ST_NOT_FOUND) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", st_errmsg());
        s = st_error(ST_CORRUPTION, "table %06" PRIu64 " is named by the MANIFEST but missing: %s",
                     number, msg);
    }
fail:
    free(meta_path);
    free(idx_path);
    table_free(t);
    return s;
}

void st_table_ref(st_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void st_table_unref(st_table *t)
{
    if (!t)
        return;
    /* acq_rel: the thread that frees must see every other thread's last use. */
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        table_free(t);
}

const st_sst_props *st_table_props(const st_table *t)
{
    return &t->props;
}

const char *st_table_dat_path(const st_table *t)
{
    return t->dat_path;
}

bool st_table_is_mapped(const st_table *t)
{
    return t->map != NULL;
}

bool st_table_may_contain(const st_table *t, st_slice user_key)
{
    return st_bloom_may_contain(t->bloom, user_key);
}

/* ---- Blocks ---- */

static void free_cached_block(void *value)
{
    free(value);
}

/* Read block i with pread and check it, into a fresh allocation. */
static st_status read_block(st_table *t, uint32_t i, cached_block **out)
{
    const idx_entry *e = &t->index[i];
    size_t got;
    cached_block *cb = malloc(sizeof(*cb) + e->size);
    if (!cb)
        return st_error(ST_NO_MEMORY, "%s: out of memory for block at offset %" PRIu64, t->dat_path,
                        e->offset);
    st_status s = t->env->read_at(t->dat, e->offset, cb->data, e->size, &got);
    if (s == ST_OK && got != e->size)
        s = st_error(ST_CORRUPTION, "%s: truncated block at offset %" PRIu64, t->dat_path,
                     e->offset);
    if (s == ST_OK)
        s = st_block_check_crc(cb->data, e->size, t->dat_path, e->offset);
    if (s == ST_OK)
        s = st_block_init(&cb->blk, cb->data, e->size, t->dat_path, e->offset);
    if (s != ST_OK) {
        free(cb);
        return s;
    }
    *out = cb;
    return ST_OK;
}

static st_status load_block(st_table *t, uint32_t i, blockref *br)
{
    const idx_entry *e = &t->index[i];
    br->h = NULL;
    br->owned = NULL;
    if (t->map) {
        const uint8_t *p = t->map + e->offset;
        /* Two threads may both check a fresh block; both then agree, so the race is harmless. */
        if (!atomic_load_explicit(&t->verified[i], memory_order_acquire)) {
            st_status s = st_block_check_crc(p, e->size, t->dat_path, e->offset);
            if (s != ST_OK)
                return s;
            atomic_store_explicit(&t->verified[i], 1, memory_order_release);
        }
        return st_block_init(&br->blk, p, e->size, t->dat_path, e->offset);
    }
    if (t->cache) {
        st_cache_handle *h = st_cache_lookup(t->cache, t->cache_id, e->offset);
        if (h) {
            br->h = h;
            br->blk = ((cached_block *)st_cache_value(h))->blk;
            return ST_OK;
        }
    }
    cached_block *cb;
    st_status s = read_block(t, i, &cb);
    if (s != ST_OK)
        return s;
    br->blk = cb->blk;
    if (t->cache) {
        br->h = st_cache_insert(t->cache, t->cache_id, e->offset, cb, sizeof(*cb) + e->size,
                                free_cached_block);
        if (br->h)
            return ST_OK;
    }
    br->owned = cb; /* no cache, or it had no room for the entry: this reader keeps the copy */
    return ST_OK;
}

/* Block i read with pread into an allocation of br's own, whether or not the table is mapped. */
static st_status read_owned_block(st_table *t, uint32_t i, blockref *br)
{
    cached_block *cb;
    st_status s = read_block(t, i, &cb);
    br->h = NULL;
    br->owned = NULL;
    if (s != ST_OK)
        return s;
    br->blk = cb->blk;
    br->owned = cb;
    return ST_OK;
}

static void release_block(st_table *t, blockref *br)
{
    if (br->h)
        st_cache_release(t->cache, br->h);
    free(br->owned);
    br->h = NULL;
    br->owned = NULL;
}

/* The last block whose first key is <= target, or block 0 if target precedes them all. */
static uint32_t find_block(const st_table *t, st_slice target)
{
    uint32_t lo = 0, hi = t->nblocks;
    st_slice user = st_ikey_user(target);
    if (user.len >= t->lcp &&
        (t->lcp == 0 || memcmp(user.data, t->smallest_user.data, t->lcp) == 0)) {
        uint64_t tp = user_prefix(target, t->lcp);
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            uint64_t mp = t->index[mid].prefix;
            if (mp < tp || (mp == tp && st_ikey_cmp(idx_key(t, mid), target) <= 0))
                lo = mid + 1;
            else
                hi = mid;
        }
    } else {
        /* Outside the common prefix: the target precedes or follows the whole table. */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (st_ikey_cmp(idx_key(t, mid), target) <= 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return lo ? lo - 1 : 0;
}

/* ---- Get ---- */

st_status st_table_get(st_table *t, st_slice lookup_ikey, bool *found, st_kind *kind, uint64_t *seq,
                       st_buf *value)
{
    *found = false;
    if (lookup_ikey.len < ST_TAG_BYTES)
        return st_error(ST_INVALID_ARGUMENT, "%s: lookup key of %zu bytes", t->dat_path,
                        lookup_ikey.len);
    st_slice user = st_ikey_user(lookup_ikey);
    if (st_slice_cmp(user, t->smallest_user) < 0 || st_slice_cmp(user, t->largest_user) > 0)
        return ST_OK;
    if (!st_bloom_may_contain(t->bloom, user))
        return ST_OK;

    uint32_t i = find_block(t, lookup_ikey);
    blockref br;
    st_block_cursor c;
    st_status s = load_block(t, i, &br);
    if (s != ST_OK)
        return s;
    st_block_cursor_init(&c, &br.blk, t->dat_path, t->index[i].offset);
    st_block_cursor_seek(&c, lookup_ikey);
    if (!st_block_cursor_valid(&c)) {
        if ((s = st_block_cursor_status(&c)) != ST_OK)
            goto out;
        /*
         * Everything in block i is smaller: the answer is the first entry of block i + 1, and the
         * index tells whether it can belong to this user key without reading it.
         */
        if (i + 1 >= t->nblocks || !st_slice_eq(st_ikey_user(idx_key(t, i + 1)), user))
            goto out;
        i++;
        release_block(t, &br);
        if ((s = load_block(t, i, &br)) != ST_OK)
            goto out;
        st_block_cursor_retarget(&c, &br.blk, t->dat_path, t->index[i].offset);
        st_block_cursor_seek_first(&c);
        if ((s = st_block_cursor_status(&c)) != ST_OK)
            goto out;
        if (!st_block_cursor_valid(&c) || !st_slice_eq(st_block_cursor_key(&c), idx_key(t, i))) {
            s = st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 " disagrees with the index",
                         t->dat_path, t->index[i].offset);
            goto out;
        }
    }
    st_slice key = st_block_cursor_key(&c);
    if (st_slice_eq(st_ikey_user(key), user)) {
        st_slice v = st_block_cursor_value(&c);
        st_buf_clear(value);
        if (!st_buf_append(value, v.data, v.len)) {
            s = st_error(ST_NO_MEMORY, "%s: out of memory for a value of %zu bytes", t->dat_path,
                         v.len);
            goto out;
        }
        *kind = st_ikey_kind(key);
        *seq = st_ikey_seq(key);
        *found = true;
    }
out:
    st_block_cursor_free(&c);
    release_block(t, &br);
    return s;
}

/* ---- Iterator ---- */

/* A well-formed block without entries (one restart at 0): where idle cursors point. */
static const uint8_t empty_bytes[8] = {0, 0, 0, 0, 1, 0, 0, 0};
static const st_block empty_block = {empty_bytes, 0, 1};

typedef struct table_iter {
    st_iterator base;
    st_table *t;
    bool once;   /* read blocks with pread into owned buffers (st_table_iter_once) */
    bool loaded; /* br holds block bi */
    uint32_t bi;
    blockref br;
    st_block_cursor c;
    st_status status; /* sticky: the first error met */
    char msg[256];    /* its message, replayed by status() */
} table_iter;

static void ti_fail(table_iter *it, st_status s)
{
    if (it->status == ST_OK) {
        it->status = s;
        snprintf(it->msg, sizeof(it->msg), "%s", st_errmsg());
    }
    if (it->loaded) {
        release_block(it->t, &it->br);
        it->loaded = false;
    }
    st_block_cursor_free(&it->c);
}

static void ti_unload(table_iter *it)
{
    if (it->loaded) {
        release_block(it->t, &it->br);
        it->loaded = false;
    }
    /* Keep the cursor's key buffer; just make it invalid. */
    st_block_cursor_retarget(&it->c, &empty_block, it->t->dat_path, 0);
}

static bool ti_load(table_iter *it, uint32_t i)
{
    if (!it->loaded || it->bi != i) {
        ti_unload(it);
        st_status s =
            it->once ? read_owned_block(it->t, i, &it->br) : load_block(it->t, i, &it->br);
        if (s != ST_OK) {
            ti_fail(it, s);
            return false;
        }
        it->loaded = true;
        it->bi = i;
    }
    st_block_cursor_retarget(&it->c, &it->br.blk, it->t->dat_path, it->t->index[i].offset);
    return true;
}

/* After the cursor ran off its block going forward: continue in the next blocks. */
static void skip_forward(table_iter *it)
{
    while (!st_block_cursor_valid(&it->c)) {
        st_status s = st_block_cursor_status(&it->c);
        if (s != ST_OK) {
            ti_fail(it, s);
            return;
        }
        if (!it->loaded || it->bi + 1 >= it->t->nblocks) {
            ti_unload(it);
            return;
        }
        if (!ti_load(it, it->bi + 1))
            return;
        st_block_cursor_seek_first(&it->c);
    }
}

static void skip_backward(table_iter *it)
{
    while (!st_block_cursor_valid(&it->c)) {
        st_status s = st_block_cursor_status(&it->c);
        if (s != ST_OK) {
            ti_fail(it, s);
            return;
        }
        if (!it->loaded || it->bi == 0) {
            ti_unload(it);
            return;
        }
        if (!ti_load(it, it->bi - 1))
            return;
        st_block_cursor_seek_last(&it->c);
    }
}

static bool ti_valid(const st_iterator *base)
{
    const table_iter *it = (const table_iter *)base;
    return it->status == ST_OK && it->loaded && st_block_cursor_valid(&it->c);
}

static void ti_seek_first(st_iterator *base)
{
    table_iter *it = (table_iter *)base;
    if (it->status != ST_OK || !ti_load(it, 0))
        return;
    st_block_cursor_seek_first(&it->c);
    skip_forward(it);
}

static void ti_seek_last(st_iterator *base)
{
    table_iter *it = (table_iter *)base;
    if (it->status != ST_OK || !ti_load(it, it->t->nblocks - 1))
        return;
    st_block_cursor_seek_last(&it->c);
    skip_backward(it);
}

static void ti_seek(st_iterator *base, st_slice target)
{
    table_iter *it = (table_iter *)base;
    if (it->status != ST_OK)
        return;
    if (target.len < ST_TAG_BYTES) {
        /* Not an internal key; every entry sorts after a bare prefix of its own user key. */
        ti_fail(it, st_error(ST_INVALID_ARGUMENT, "%s: seek to a key of %zu bytes", it->t->dat_path,
                             target.len));
        return;
    }
    if (!ti_load(it, find_block(it->t, target)))
        return;
    st_block_cursor_seek(&it->c, target);
    skip_forward(it);
}

static void ti_next(st_iterator *base)
{
    table_iter *it = (table_iter *)base;
    assert(ti_valid(base));
    st_block_cursor_next(&it->c);
    skip_forward(it);
}

static void ti_prev(st_iterator *base)
{
    table_iter *it = (table_iter *)base;
    assert(ti_valid(base));
    st_block_cursor_prev(&it->c);
    skip_backward(it);
}

static st_slice ti_key(const st_iterator *base)
{
    return st_block_cursor_key(&((const table_iter *)base)->c);
}

static bool ti_next_key(st_iterator *base, st_slice *key)
{
    table_iter *it = (table_iter *)base;
    ti_next(base);
    if (!ti_valid(base))
        return false;
    *key = st_block_cursor_key(&it->c);
    return true;
}

static st_slice ti_value(const st_iterator *base)
{
    return st_block_cursor_value(&((const table_iter *)base)->c);
}

static st_status ti_status(const st_iterator *base)
{
    const table_iter *it = (const table_iter *)base;
    if (it->status != ST_OK)
        return st_error(it->status, "%s", it->msg);
    return ST_OK;
}

static void ti_destroy(st_iterator *base)
{
    table_iter *it = (table_iter *)base;
    if (it->loaded)
        release_block(it->t, &it->br);
    st_block_cursor_free(&it->c);
    st_table_unref(it->t);
    free(it);
}

static const st_iterator_ops table_iter_ops = {
    .next_key = ti_next_key,
    .valid = ti_valid,
    .seek_first = ti_seek_first,
    .seek_last = ti_seek_last,
    .seek = ti_seek,
    .next = ti_next,
    .prev = ti_prev,
    .key = ti_key,
    .value = ti_value,
    .status = ti_status,
    .destroy = ti_destroy,
};

static st_iterator *new_table_iter(st_table *t, bool once)
{
    table_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->base.ops = &table_iter_ops;
    it->t = t;
    it->once = once;
    st_table_ref(t);
    st_block_cursor_init(&it->c, &empty_block, t->dat_path, 0);
    return &it->base;
}

st_iterator *st_table_iter(st_table *t)
{
    return new_table_iter(t, false);
}

st_iterator *st_table_iter_once(st_table *t)
{
    return new_table_iter(t, true);
}

/* ---- Verify ---- */

static st_status verify_fail(const st_table *t, uint32_t i, const char *what)
{
    return st_error(ST_CORRUPTION, "%s: block at offset %" PRIu64 ": %s", t->dat_path,
                    t->index[i].offset, what);
}

st_status st_table_verify(st_table *t)
{
    st_status s = ST_OK;
    st_buf prev;
    st_buf_init(&prev);
    st_block_cursor c;
    st_block_cursor_init(&c, &empty_block, t->dat_path, 0);
    uint64_t entries = 0, tombstones = 0, min_seq = UINT64_MAX, max_seq = 0;

    for (uint32_t i = 0; i < t->nblocks; i++) {
        /* Check the bytes themselves, never a copy verified earlier. */
        const idx_entry *e = &t->index[i];
        cached_block *cb = NULL;
        st_block blk;
        if (t->map) {
            const uint8_t *p = t->map + e->offset;
            if ((s = st_block_check_crc(p, e->size, t->dat_path, e->offset)) != ST_OK ||
                (s = st_block_init(&blk, p, e->size, t->dat_path, e->offset)) != ST_OK)
                goto out;
        } else {
            if ((s = read_block(t, i, &cb)) != ST_OK)
                goto out;
            blk = cb->blk;
        }
        s = st_block_verify(&blk, t->dat_path, e->offset, NULL);
        st_block_cursor_retarget(&c, &blk, t->dat_path, e->offset);
        bool first = true;
        for (st_block_cursor_seek_first(&c); s == ST_OK && st_block_cursor_valid(&c);
             st_block_cursor_next(&c)) {
            st_slice k = st_block_cursor_key(&c);
            if (first && !st_slice_eq(k, idx_key(t, i)))
                s = verify_fail(t, i, "first key differs from the index");
            else if (entries > 0 && st_ikey_cmp(st_slice_make(prev.data, prev.len), k) >= 0)
                s = verify_fail(t, i, "keys out of order across blocks");
            first = false;
            uint64_t sq = st_ikey_seq(k);
            min_seq = sq < min_seq ? sq : min_seq;
            max_seq = sq > max_seq ? sq : max_seq;
            tombstones += st_ikey_kind(k) == ST_KIND_DELETE;
            entries++;
            st_buf_clear(&prev);
            if (s == ST_OK && !st_buf_append(&prev, k.data, k.len))
                s = st_error(ST_NO_MEMORY, "%s: verify: out of memory", t->dat_path);
        }
        if (s == ST_OK)
            s = st_block_cursor_status(&c);
        st_block_cursor_retarget(&c, &empty_block, t->dat_path, 0);
        free(cb);
        if (s != ST_OK)
            goto out;
    }
    const st_sst_props *pr = &t->props;
    if (entries != pr->entries || tombstones != pr->tombstones || min_seq != pr->min_seq ||
        max_seq != pr->max_seq)
        s = st_error(ST_CORRUPTION,
                     "%s: blocks hold %" PRIu64 " entries (%" PRIu64
                     " tombstones, sequences %" PRIu64 "..%" PRIu64 "), the .meta says %" PRIu64
                     " (%" PRIu64 ", %" PRIu64 "..%" PRIu64 ")",
                     t->dat_path, entries, tombstones, min_seq, max_seq, pr->entries,
                     pr->tombstones, pr->min_seq, pr->max_seq);
    else if (!st_slice_eq(st_slice_make(prev.data, prev.len),
                          st_slice_make(pr->largest.data, pr->largest.len)))
        s = st_error(ST_CORRUPTION, "%s: last key differs from the .meta's largest key",
                     t->dat_path);
out:
    st_block_cursor_free(&c);
    st_buf_free(&prev);
    return s;
}
