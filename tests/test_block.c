/* test_block.c - data blocks: build, iterate and seek both ways, restart boundaries, long keys,
 * and corrupted blocks (every flipped bit, crafted structure errors, random garbage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/block.h"
#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/dbformat.h"
#include "engine/sst_format.h"
#include "tests/support/testutil.h"

static uint64_t seed;
#define FNAME "000042.dat"

/* ---- A reference model: sorted internal keys and values ---- */

typedef struct kv {
    uint8_t *key;
    size_t key_len;
    uint8_t *val;
    size_t val_len;
} kv;

static st_slice kslice(const kv *e)
{
    return st_slice_make(e->key, e->key_len);
}

static int kv_cmp(const void *a, const void *b)
{
    return st_ikey_cmp(kslice(a), kslice(b));
}

static uint8_t rand_byte(st_rng *r)
{
    /* Lean on the bytes that break naive code: NUL, 0xFF, and a small alphabet for prefixes. */
    switch (st_rng_uniform(r, 4)) {
    case 0:
        return 0;
    case 1:
        return 0xff;
    case 2:
        return (uint8_t)('a' + st_rng_uniform(r, 3));
    default:
        return (uint8_t)st_rng_next(r);
    }
}

/* n distinct internal keys, sorted, with user keys of up to max_user bytes. */
static kv *make_kvs(st_rng *r, size_t n, size_t min_user, size_t max_user, size_t max_val)
{
    kv *v = calloc(n ? n : 1, sizeof(*v));
    assert_non_null(v);
    size_t have = 0;
    while (have < n) {
        size_t ul = min_user + (size_t)st_rng_uniform(r, max_user - min_user + 1);
        kv *e = &v[have];
        e->key_len = ul + ST_TAG_BYTES;
        e->key = malloc(e->key_len);
        for (size_t i = 0; i < ul; i++)
            e->key[i] = rand_byte(r);
        st_encode_ikey(e->key, st_slice_make(e->key, ul), st_rng_uniform(r, 1000),
                       (st_kind)st_rng_uniform(r, 2));
        e->val_len = (size_t)st_rng_uniform(r, max_val + 1);
        e->val = malloc(e->val_len + 1);
        st_rng_bytes(r, e->val, e->val_len);
        have++;
        if (have == n) {
            qsort(v, have, sizeof(*v), kv_cmp);
            size_t w = 0;
            for (size_t i = 0; i < have; i++) {
                if (w > 0 && kv_cmp(&v[w - 1], &v[i]) == 0) {
                    free(v[i].key);
                    free(v[i].val);
                    continue;
                }
                v[w++] = v[i];
            }
            have = w;
        }
    }
    return v;
}

static void free_kvs(kv *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].val);
    }
    free(v);
}

/* Build a block of v[0..n) into a malloc'd copy. */
static uint8_t *build_block(const kv *v, size_t n, int interval, size_t *size)
{
    st_block_builder *b;
    assert_int_equal(st_block_builder_create(interval, &b), ST_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            st_block_builder_add(b, kslice(&v[i]), st_slice_make(v[i].val, v[i].val_len)), ST_OK);
        assert_int_equal(st_block_builder_entries(b), i + 1);
    }
    size_t predicted = st_block_builder_size(b);
    st_slice blk;
    assert_int_equal(st_block_builder_finish(b, &blk), ST_OK);
    assert_int_equal(blk.len, predicted);
    uint8_t *copy = malloc(blk.len);
    memcpy(copy, blk.data, blk.len);
    *size = blk.len;
    st_block_builder_destroy(b);
    return copy;
}

static void assert_at(st_iterator *it, const kv *v, size_t i)
{
    assert_true(st_it_valid(it));
    st_slice k = st_it_key(it), val = st_it_value(it);
    assert_int_equal(k.len, v[i].key_len);
    assert_memory_equal(k.data, v[i].key, k.len);
    assert_int_equal(val.len, v[i].val_len);
    if (val.len)
        assert_memory_equal(val.data, v[i].val, val.len);
}

/* Index of the first entry >= target, n if none. */
static size_t lower_bound(const kv *v, size_t n, st_slice target)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st_ikey_cmp(kslice(&v[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Everything an iterator over v[0..n) must do. */
static void check_iterator(st_iterator *it, const kv *v, size_t n, st_rng *r)
{
    /* Forward and backward scans. */
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        assert_at(it, v, i++);
    assert_int_equal(i, n);
    assert_int_equal(st_it_status(it), ST_OK);
    i = n;
    for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it))
        assert_at(it, v, --i);
    assert_int_equal(i, 0);
    assert_int_equal(st_it_status(it), ST_OK);

    /* Seek to every key, and to targets between keys: same user key with other tags, other
     * user keys around. */
    uint8_t tbuf[64];
    for (size_t j = 0; j < n; j++) {
        st_it_seek(it, kslice(&v[j]));
        assert_at(it, v, j);
        st_slice user = st_ikey_user(kslice(&v[j]));
        if (user.len + ST_TAG_BYTES <= sizeof(tbuf)) {
            uint64_t seq = st_ikey_seq(kslice(&v[j]));
            uint64_t seqs[] = {0, seq ? seq - 1 : 0, seq + 1, ST_MAX_SEQ};
            for (int s = 0; s < 4; s++) {
                st_slice t = st_slice_make(
                    tbuf, (size_t)(st_encode_ikey(tbuf, user, seqs[s], ST_KIND_SEEK) - tbuf));
                size_t want = lower_bound(v, n, t);
                st_it_seek(it, t);
                if (want == n)
                    assert_false(st_it_valid(it));
                else
                    assert_at(it, v, want);
            }
        }
    }
    for (int j = 0; j < 200; j++) {
        size_t ul = (size_t)st_rng_uniform(r, 10);
        for (size_t b = 0; b < ul; b++)
            tbuf[b] = rand_byte(r);
        st_slice t =
            st_slice_make(tbuf, (size_t)(st_encode_ikey(tbuf, st_slice_make(tbuf, ul),
                                                        st_rng_uniform(r, 1000), ST_KIND_SEEK) -
                                         tbuf));
        size_t want = lower_bound(v, n, t);
        st_it_seek(it, t);
        if (want == n)
            assert_false(st_it_valid(it));
        else
            assert_at(it, v, want);
    }
    assert_int_equal(st_it_status(it), ST_OK);

    /* A random walk with direction changes. */
    if (n == 0)
        return;
    size_t pos = (size_t)st_rng_uniform(r, n);
    st_it_seek(it, kslice(&v[pos]));
    for (int step = 0; step < 2000; step++) {
        assert_at(it, v, pos);
        if (st_rng_uniform(r, 2)) {
            st_it_next(it);
            if (++pos == n) {
                assert_false(st_it_valid(it));
                st_it_seek_last(it);
                pos = n - 1;
            }
        } else {
            st_it_prev(it);
            if (pos-- == 0) {
                assert_false(st_it_valid(it));
                st_it_seek_first(it);
                pos = 0;
            }
        }
    }
    assert_int_equal(st_it_status(it), ST_OK);
}

static void roundtrip(st_rng *r, size_t n, int interval, size_t min_user, size_t max_user,
                      size_t max_val)
{
    kv *v = make_kvs(r, n, min_user, max_user, max_val);
    size_t size;
    uint8_t *blk = build_block(v, n, interval, &size);
    assert_int_equal(st_block_check_crc(blk, size, FNAME, 0), ST_OK);
    st_block b;
    assert_int_equal(st_block_init(&b, blk, size, FNAME, 0), ST_OK);
    assert_int_equal(b.num_restarts, (n + (size_t)interval - 1) / (size_t)interval);
    size_t entries;
    assert_int_equal(st_block_verify(&b, FNAME, 0, &entries), ST_OK);
    assert_int_equal(entries, n);
    st_iterator *it = st_block_iter_create(&b, FNAME, 0);
    assert_non_null(it);
    check_iterator(it, v, n, r);
    st_it_destroy(it);
    free(blk);
    free_kvs(v, n);
}

static void test_roundtrip(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed);
    size_t sizes[] = {1, 2, 3, 15, 16, 17, 100, 1000};
    int intervals[] = {1, 2, 3, 16, 1000};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (size_t ii = 0; ii < sizeof(intervals) / sizeof(intervals[0]); ii++)
            roundtrip(&r, sizes[si], intervals[ii], 0, 12, 40);
}

/* Keys far beyond the cursor's inline buffer, sharing long prefixes. */
static void test_long_keys(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 1);
    for (int interval = 1; interval <= 8; interval *= 2) {
        size_t n = 200;
        kv *v = make_kvs(&r, n, 0, 4, 10);
        /* Stretch each user key to 300-600 bytes behind a shared 250-byte prefix. */
        for (size_t i = 0; i < n; i++) {
            size_t ul = v[i].key_len - ST_TAG_BYTES;
            size_t nl = 250 + ul + (size_t)st_rng_uniform(&r, 350);
            uint8_t *k = malloc(nl + ST_TAG_BYTES);
            memset(k, 0x7f, 250);
            memcpy(k + 250, v[i].key, ul);
            memset(k + 250 + ul, 'z', nl - 250 - ul);
            memcpy(k + nl, v[i].key + ul, ST_TAG_BYTES);
            free(v[i].key);
            v[i].key = k;
            v[i].key_len = nl + ST_TAG_BYTES;
        }
        qsort(v, n, sizeof(*v), kv_cmp);
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (w > 0 && kv_cmp(&v[w - 1], &v[i]) == 0) {
                free(v[i].key);
                free(v[i].val);
                continue;
            }
            v[w++] = v[i];
        }
        n = w;
        size_t size;
        uint8_t *blk = build_block(v, n, interval, &size);
        st_block b;
        assert_int_equal(st_block_init(&b, blk, size, FNAME, 0), ST_OK);
        assert_int_equal(st_block_verify(&b, FNAME, 0, NULL), ST_OK);
        st_iterator *it = st_block_iter_create(&b, FNAME, 0);
        check_iterator(it, v, n, &r);
        st_it_destroy(it);

        /* The cursor directly, as the table's get uses it. */
        st_block_cursor c;
        st_block_cursor_init(&c, &b, FNAME, 0);
        for (size_t i = 0; i < n; i++) {
            st_block_cursor_seek(&c, kslice(&v[i]));
            assert_true(st_block_cursor_valid(&c));
            assert_true(st_slice_eq(st_block_cursor_key(&c), kslice(&v[i])));
        }
        st_block_cursor_free(&c);
        free(blk);
        free_kvs(v, n);
    }
}

/* Restart points: the restart array has one offset per interval, and prev crosses them. */
static void test_restart_boundaries(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 2);
    for (int interval = 1; interval <= 5; interval++) {
        for (size_t n = 1; n <= 3 * (size_t)interval + 1; n++) {
            kv *v = make_kvs(&r, n, 3, 6, 5);
            size_t size;
            uint8_t *blk = build_block(v, n, interval, &size);
            st_block b;
            assert_int_equal(st_block_init(&b, blk, size, FNAME, 0), ST_OK);
            uint32_t nr = b.num_restarts;
            assert_int_equal(nr, (n + (size_t)interval - 1) / (size_t)interval);
            /* Restart i is the offset of entry i * interval; entries there have shared == 0. */
            st_block_cursor c;
            st_block_cursor_init(&c, &b, FNAME, 0);
            st_block_cursor_seek_first(&c);
            for (size_t i = 0; i < n; i++) {
                assert_true(st_block_cursor_valid(&c));
                if (i % (size_t)interval == 0) {
                    uint32_t rp = st_get_fixed32(blk + b.restarts_off + 4 * (i / (size_t)interval));
                    assert_int_equal(rp, c.cur);
                    assert_int_equal(blk[rp], 0); /* shared */
                }
                st_block_cursor_next(&c);
            }
            assert_false(st_block_cursor_valid(&c));
            /* Walk back from the end across each boundary. */
            st_block_cursor_seek_last(&c);
            for (size_t i = n; i-- > 0;) {
                assert_true(st_block_cursor_valid(&c));
                assert_true(st_slice_eq(st_block_cursor_key(&c), kslice(&v[i])));
                st_block_cursor_prev(&c);
            }
            assert_false(st_block_cursor_valid(&c));
            assert_int_equal(st_block_cursor_status(&c), ST_OK);
            st_block_cursor_free(&c);
            free(blk);
            free_kvs(v, n);
        }
    }

    /* The builder can be reset and reused; an empty block parses and holds nothing. */
    st_block_builder *bb;
    assert_int_equal(st_block_builder_create(0, &bb), ST_INVALID_ARGUMENT);
    assert_int_equal(st_block_builder_create(4, &bb), ST_OK);
    st_slice blk;
    assert_int_equal(st_block_builder_size(bb), 12);
    assert_int_equal(st_block_builder_finish(bb, &blk), ST_OK);
    assert_int_equal(blk.len, 12);
    st_block b;
    assert_int_equal(st_block_init(&b, blk.data, blk.len, FNAME, 0), ST_OK);
    st_iterator *it = st_block_iter_create(&b, FNAME, 0);
    st_it_seek_first(it);
    assert_false(st_it_valid(it));
    st_it_seek_last(it);
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);
    /* ...but verify calls an empty block corrupt: the table never writes one. */
    assert_int_equal(st_block_verify(&b, FNAME, 0, NULL), ST_CORRUPTION);
    st_block_builder_reset(bb);
    uint8_t k[9] = {'k', 1, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_block_builder_add(bb, st_slice_make(k, 9), st_slice_str("v")), ST_OK);
    assert_int_equal(st_block_builder_finish(bb, &blk), ST_OK);
    assert_int_equal(st_block_init(&b, blk.data, blk.len, FNAME, 0), ST_OK);
    assert_int_equal(st_block_verify(&b, FNAME, 0, NULL), ST_OK);
    st_block_builder_destroy(bb);
    st_block_builder_destroy(NULL);
}

/* ---- Corruption ---- */

static void assert_msg_names_file(void)
{
    if (!strstr(st_errmsg(), FNAME))
        fail_msg("message does not name the file: \"%s\"", st_errmsg());
}

static void test_crc_detects_every_flip(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 3);
    kv *v = make_kvs(&r, 40, 0, 10, 20);
    size_t size;
    uint8_t *blk = build_block(v, 40, 4, &size);
    for (size_t off = 0; off < size; off++) {
        for (int bit = 0; bit < 8; bit++) {
            blk[off] ^= (uint8_t)(1u << bit);
            assert_int_equal(st_block_check_crc(blk, size, FNAME, 4096), ST_CORRUPTION);
            assert_msg_names_file();
            assert_non_null(strstr(st_errmsg(), "4096"));
            blk[off] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(st_block_check_crc(blk, size, FNAME, 4096), ST_OK);
    assert_int_equal(st_block_check_crc(blk, 11, FNAME, 0), ST_CORRUPTION);
    free(blk);
    free_kvs(v, 40);
}

/* Run every operation over a block that may be broken; never crash, report by name. */
static st_status exercise(const uint8_t *blk, size_t size, bool *saw_error)
{
    st_block b;
    st_status s = st_block_init(&b, blk, size, FNAME, 0);
    if (s != ST_OK) {
        assert_int_equal(s, ST_CORRUPTION);
        assert_msg_names_file();
        *saw_error = true;
        return s;
    }
    st_status vs = st_block_verify(&b, FNAME, 0, NULL);
    if (vs != ST_OK) {
        assert_int_equal(vs, ST_CORRUPTION);
        assert_msg_names_file();
        *saw_error = true;
    }
    st_iterator *it = st_block_iter_create(&b, FNAME, 0);
    size_t steps = 0;
    for (st_it_seek_first(it); st_it_valid(it) && steps < 100000; st_it_next(it))
        steps++;
    for (st_it_seek_last(it); st_it_valid(it) && steps < 200000; st_it_prev(it))
        steps++;
    uint8_t t[12] = {'b', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    st_it_seek(it, st_slice_make(t, 12));
    if (st_it_valid(it))
        st_it_prev(it);
    st_it_seek(it, st_slice_make(t, 8));
    if (st_it_valid(it))
        st_it_next(it);
    st_status is = st_it_status(it);
    if (is != ST_OK) {
        assert_int_equal(is, ST_CORRUPTION);
        assert_msg_names_file();
        *saw_error = true;
    }
    st_it_destroy(it);
    return vs != ST_OK ? vs : is;
}

/* Rewrite the trailer so that only the structure checks can find the damage. */
static void fix_crc(uint8_t *blk, size_t size)
{
    st_put_fixed32(blk + size - 4, st_crc32c_mask(st_crc32c(blk, size - 4)));
}

/* Keys "key000", "key001", ... with short values: a layout the test can reason about. */
static kv *make_fixed(size_t n)
{
    kv *v = calloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        char user[16];
        snprintf(user, sizeof(user), "key%03zu", i);
        v[i].key_len = strlen(user) + ST_TAG_BYTES;
        v[i].key = malloc(v[i].key_len);
        st_encode_ikey(v[i].key, st_slice_str(user), 1000 - i, ST_KIND_PUT);
        v[i].val_len = 1 + i % 5;
        v[i].val = malloc(v[i].val_len);
        memset(v[i].val, 'v', v[i].val_len);
    }
    return v;
}

static void test_structural_corruption(void **state)
{
    (void)state;
    size_t n = 30;
    kv *v = make_fixed(n);
    size_t size;
    uint8_t *good = build_block(v, n, 4, &size);
    uint8_t *blk = malloc(size);
    st_block b;
    assert_int_equal(st_block_init(&b, good, size, FNAME, 0), ST_OK);
    size_t count_off = size - 8, roff = b.restarts_off;
    uint32_t restart1 = st_get_fixed32(good + roff + 4);
    st_block_cursor c;
    st_block_cursor_init(&c, &b, FNAME, 0);
    st_block_cursor_seek_last(&c);
    uint32_t last = c.cur;
    st_block_cursor_free(&c);
    bool saw;

    /* Restart count 0, and too large for the block. */
    uint32_t counts[] = {0, (uint32_t)(size / 4), UINT32_MAX};
    for (int i = 0; i < 3; i++) {
        memcpy(blk, good, size);
        st_put_fixed32(blk + count_off, counts[i]);
        fix_crc(blk, size);
        assert_int_equal(st_block_init(&b, blk, size, FNAME, 0), ST_CORRUPTION);
        assert_msg_names_file();
    }
    /* First restart not 0. */
    memcpy(blk, good, size);
    st_put_fixed32(blk + roff, 3);
    fix_crc(blk, size);
    assert_int_equal(st_block_init(&b, blk, size, FNAME, 0), ST_CORRUPTION);

    /* A restart offset past the entries: seeks that probe it fail. */
    memcpy(blk, good, size);
    st_put_fixed32(blk + roff + 4, (uint32_t)roff + 100);
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);
    /* A restart offset inside an entry. */
    memcpy(blk, good, size);
    st_put_fixed32(blk + roff + 4, restart1 + 1);
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* The second entry shares more than the first key has (entry 0: 3 header bytes, key, value). */
    size_t second = 3 + v[0].key_len + v[0].val_len;
    assert_int_equal(good[second], 5); /* "key00" is shared */
    memcpy(blk, good, size);
    blk[second] = (uint8_t)(v[0].key_len + 1);
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* The first entry, a restart point, claims shared bytes. */
    memcpy(blk, good, size);
    blk[0] = 1;
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* The last entry's value runs off the entries; a varint that never ends. */
    memcpy(blk, good, size);
    blk[last + 2] = 0x7f;
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);
    memcpy(blk, good, size);
    memset(blk, 0xff, 12);
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* A key shorter than a tag (non_shared shrunk, value grown to keep the layout). */
    memcpy(blk, good, size);
    blk[1] = 4;
    blk[2] = (uint8_t)(v[0].val_len + v[0].key_len - 4);
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* An unknown kind in a tag (the tag's low byte is the key's 9th byte from the end... its
     * first tag byte, right after the 6-byte user key). */
    memcpy(blk, good, size);
    blk[3 + 6] = 7;
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* Keys out of order: the key at restart 1 ("key004") becomes "aey004" < "key003". */
    memcpy(blk, good, size);
    assert_int_equal(blk[restart1 + 3], 'k');
    blk[restart1 + 3] = 'a';
    fix_crc(blk, size);
    saw = false;
    assert_int_equal(exercise(blk, size, &saw), ST_CORRUPTION);

    /* The pristine block passes everything. */
    saw = false;
    assert_int_equal(exercise(good, size, &saw), ST_OK);
    assert_false(saw);
    free(blk);
    free(good);
    free_kvs(v, n);
}

/* Random damage with a fixed-up CRC: the reader must never crash or read out of bounds. */
static void test_random_garbage(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 5);
    uint64_t rounds = st_test_scaled(3000);
    size_t detected = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        size_t n = 1 + (size_t)st_rng_uniform(&r, 40);
        kv *v = make_kvs(&r, n, 0, 8, 8);
        size_t size;
        uint8_t *blk = build_block(v, n, 1 + (int)st_rng_uniform(&r, 5), &size);
        int damage = 1 + (int)st_rng_uniform(&r, 4);
        for (int d = 0; d < damage; d++) {
            size_t off = (size_t)st_rng_uniform(&r, size - 4);
            if (st_rng_uniform(&r, 2))
                blk[off] ^= (uint8_t)(1u << st_rng_uniform(&r, 8));
            else
                blk[off] = (uint8_t)st_rng_next(&r);
        }
        fix_crc(blk, size);
        /* An exact-size copy so that ASan catches any read past the end. */
        uint8_t *exact = malloc(size);
        memcpy(exact, blk, size);
        bool saw = false;
        exercise(exact, size, &saw);
        detected += saw;
        free(exact);
        free(blk);
        free_kvs(v, n);
    }
    fprintf(stderr,
            "block: %zu of %" PRIu64 " damaged blocks reported corrupt by structure alone\n",
            detected, rounds);
    assert_true(detected > 0);
}

int main(void)
{
    seed = st_test_seed("block");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_restart_boundaries),
        cmocka_unit_test(test_crc_detects_every_flip),
        cmocka_unit_test(test_structural_corruption),
        cmocka_unit_test(test_random_garbage),
    };
    return cmocka_run_group_tests_name("block", tests, NULL, NULL);
}
