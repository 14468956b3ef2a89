/* test_sst.c - tables end to end: build 1..100k entries of random binary keys with many versions,
 * get at many snapshots, iterate both ways with seeks and direction changes, in mmap, block-cache
 * and plain pread modes; builder contracts; a flipped bit at every byte of every file is reported
 * by name and never returns wrong data; unknown versions; size mismatches; concurrent readers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/bloom.h"
#include "engine/cache.h"
#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/dbformat.h"
#include "engine/sst_builder.h"
#include "engine/sst_format.h"
#include "engine/table.h"
#include "tests/support/testutil.h"

static uint64_t seed;
static char *dir;
static st_env *env;

/* ---- The model: sorted entries ---- */

typedef struct kv {
    uint8_t *key; /* internal key */
    size_t key_len;
    uint8_t *val;
    size_t val_len;
} kv;

typedef struct model {
    kv *v;
    size_t n;
} model;

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

static void push(model *m, size_t *cap, const uint8_t *user, size_t ul, uint64_t seq, st_kind kind,
                 st_rng *r, size_t max_val)
{
    if (m->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        m->v = realloc(m->v, *cap * sizeof(*m->v));
        assert_non_null(m->v);
    }
    kv *e = &m->v[m->n++];
    e->key_len = ul + ST_TAG_BYTES;
    e->key = malloc(e->key_len);
    st_encode_ikey(e->key, st_slice_make(user, ul), seq, kind);
    e->val_len = kind == ST_KIND_DELETE ? 0 : (size_t)st_rng_uniform(r, max_val + 1);
    e->val = malloc(e->val_len + 1);
    st_rng_bytes(r, e->val, e->val_len);
}

/* Same user key and sequence: one of them goes (a database never writes both). */
static bool same_user_seq(const kv *a, const kv *b)
{
    return st_slice_eq(st_ikey_user(kslice(a)), st_ikey_user(kslice(b))) &&
           st_ikey_seq(kslice(a)) == st_ikey_seq(kslice(b));
}

/*
 * About n entries (exactly n, unless the keys run out): random binary user keys of 0..16 bytes,
 * mostly one to a few versions, sometimes up to 40, plus `hot` user keys with `hot_versions` each.
 */
static model gen_model(st_rng *r, size_t n, size_t hot, size_t hot_versions, size_t max_val)
{
    model m = {NULL, 0};
    size_t cap = 0;
    uint8_t user[32];
    for (size_t h = 0; h < hot; h++) {
        size_t ul = 1 + (size_t)st_rng_uniform(r, 6);
        for (size_t i = 0; i < ul; i++)
            user[i] = rand_byte(r);
        for (size_t k = 0; k < hot_versions; k++)
            push(&m, &cap, user, ul, 1 + st_rng_uniform(r, 1000000),
                 st_rng_uniform(r, 5) ? ST_KIND_PUT : ST_KIND_DELETE, r, max_val);
    }
    while (m.n < hot * hot_versions + n + n / 8 + 1) {
        size_t ul = (size_t)st_rng_uniform(r, 17);
        for (size_t i = 0; i < ul; i++)
            user[i] = rand_byte(r);
        size_t versions =
            st_rng_uniform(r, 8) ? 1 + st_rng_uniform(r, 3) : 1 + st_rng_uniform(r, 40);
        for (size_t k = 0; k < versions; k++)
            push(&m, &cap, user, ul, 1 + st_rng_uniform(r, 1000000),
                 st_rng_uniform(r, 5) ? ST_KIND_PUT : ST_KIND_DELETE, r, max_val);
    }
    qsort(m.v, m.n, sizeof(*m.v), kv_cmp);
    size_t w = 0;
    for (size_t i = 0; i < m.n; i++) {
        if ((w > 0 && same_user_seq(&m.v[w - 1], &m.v[i])) || w >= n + hot * hot_versions) {
            free(m.v[i].key);
            free(m.v[i].val);
            continue;
        }
        m.v[w++] = m.v[i];
    }
    m.n = w;
    return m;
}

static void free_model(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].val);
    }
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

static size_t lower_bound(const model *m, st_slice target)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st_ikey_cmp(kslice(&m->v[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- Build and open ---- */

static void build(uint64_t number, const st_sst_options *o, const model *m, st_sst_props *props)
{
    st_sst_builder *b;
    assert_int_equal(st_sst_builder_create(env, dir, number, o, &b), ST_OK);
    for (size_t i = 0; i < m->n; i++) {
        st_status s =
            st_sst_builder_add(b, kslice(&m->v[i]), st_slice_make(m->v[i].val, m->v[i].val_len));
        if (s != ST_OK)
            fail_msg("add %zu: %s %s", i, st_status_name(s), st_errmsg());
    }
    assert_int_equal(st_sst_builder_entries(b), m->n);
    uint64_t bytes = st_sst_builder_bytes(b);
    assert_int_equal(st_sst_builder_finish(b, props), ST_OK);
    assert_int_equal(props->dat_bytes, bytes);
    st_sst_builder_destroy(b);

    /* The props describe the model. */
    uint64_t tomb = 0, lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t sq = st_ikey_seq(kslice(&m->v[i]));
        lo = sq < lo ? sq : lo;
        hi = sq > hi ? sq : hi;
        tomb += st_ikey_kind(kslice(&m->v[i])) == ST_KIND_DELETE;
    }
    assert_int_equal(props->number, number);
    assert_int_equal(props->entries, m->n);
    assert_int_equal(props->tombstones, tomb);
    assert_int_equal(props->min_seq, lo);
    assert_int_equal(props->max_seq, hi);
    assert_true(
        st_slice_eq(st_slice_make(props->smallest.data, props->smallest.len), kslice(&m->v[0])));
    assert_true(st_slice_eq(st_slice_make(props->largest.data, props->largest.len),
                            kslice(&m->v[m->n - 1])));
}

enum mode { MODE_MMAP, MODE_CACHE, MODE_PREAD, NMODES };
static const char *const mode_names[NMODES] = {"mmap", "cache", "pread"};
static st_cache *block_cache;

static st_table_options opts(enum mode md)
{
    st_table_options o = {env, md == MODE_CACHE ? block_cache : NULL, md == MODE_MMAP};
    return o;
}

static st_table *open_table(uint64_t number, enum mode md)
{
    st_table_options o = opts(md);
    st_table *t;
    st_status s = st_table_open(&o, dir, number, 0, &t);
    if (s != ST_OK)
        fail_msg("open %" PRIu64 " (%s): %s %s", number, mode_names[md], st_status_name(s),
                 st_errmsg());
    assert_int_equal(st_table_is_mapped(t), md == MODE_MMAP);
    return t;
}

/* ---- Checks ---- */

static void check_get(st_table *t, const model *m, st_slice lookup, st_buf *val)
{
    bool found;
    st_kind kind;
    uint64_t seq;
    st_status s = st_table_get(t, lookup, &found, &kind, &seq, val);
    if (s != ST_OK)
        fail_msg("get: %s %s", st_status_name(s), st_errmsg());
    size_t j = lower_bound(m, lookup);
    bool want = j < m->n && st_slice_eq(st_ikey_user(kslice(&m->v[j])), st_ikey_user(lookup));
    assert_int_equal(found, want);
    if (!want)
        return;
    assert_int_equal(kind, st_ikey_kind(kslice(&m->v[j])));
    assert_int_equal(seq, st_ikey_seq(kslice(&m->v[j])));
    assert_int_equal(val->len, m->v[j].val_len);
    if (val->len)
        assert_memory_equal(val->data, m->v[j].val, val->len);
}

static st_slice lookup_key(uint8_t *buf, st_slice user, uint64_t seq)
{
    return st_slice_make(buf, (size_t)(st_encode_ikey(buf, user, seq, ST_KIND_SEEK) - buf));
}

/* Gets at many snapshots of every user key (thinned out for big models), and absent keys. */
static void check_gets(st_table *t, const model *m, st_rng *r)
{
    st_buf val;
    st_buf_init(&val);
    uint8_t buf[64];
    bool thin = m->n > 20000;
    for (size_t i = 0; i < m->n; i++) {
        st_slice k = kslice(&m->v[i]);
        st_slice user = st_ikey_user(k);
        uint64_t sq = st_ikey_seq(k);
        check_get(t, m, lookup_key(buf, user, sq), &val);
        if (thin && st_rng_uniform(r, 16))
            continue;
        check_get(t, m, lookup_key(buf, user, sq - 1), &val);
        check_get(t, m, lookup_key(buf, user, sq + 1), &val);
        check_get(t, m, lookup_key(buf, user, ST_MAX_SEQ), &val);
        check_get(t, m, lookup_key(buf, user, 0), &val);
        check_get(t, m, lookup_key(buf, user, st_rng_uniform(r, 1000002)), &val);
    }
    for (int i = 0; i < 2000; i++) {
        uint8_t user[20];
        size_t ul = (size_t)st_rng_uniform(r, 18);
        for (size_t b = 0; b < ul; b++)
            user[b] = rand_byte(r);
        check_get(t, m, lookup_key(buf, st_slice_make(user, ul), st_rng_uniform(r, 1000002)), &val);
    }
    /* A lookup key shorter than a tag is the caller's mistake. */
    bool found;
    st_kind kind;
    uint64_t seq;
    assert_int_equal(st_table_get(t, st_slice_make(buf, 7), &found, &kind, &seq, &val),
                     ST_INVALID_ARGUMENT);
    st_buf_free(&val);
}

static void assert_at(st_iterator *it, const model *m, size_t i)
{
    if (!st_it_valid(it))
        fail_msg("iterator invalid at %zu of %zu: %s %s", i, m->n, st_status_name(st_it_status(it)),
                 st_errmsg());
    st_slice k = st_it_key(it), v = st_it_value(it);
    assert_true(st_slice_eq(k, kslice(&m->v[i])));
    assert_true(st_slice_eq(v, st_slice_make(m->v[i].val, m->v[i].val_len)));
}

/* once: the iterator of st_table_iter_once, which must behave the same in every way. */
static void check_iter(st_table *t, const model *m, st_rng *r, bool once)
{
    st_iterator *it = once ? st_table_iter_once(t) : st_table_iter(t);
    assert_non_null(it);
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        assert_at(it, m, i++);
    assert_int_equal(i, m->n);
    assert_int_equal(st_it_status(it), ST_OK);
    for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it))
        assert_at(it, m, --i);
    assert_int_equal(i, 0);
    assert_int_equal(st_it_status(it), ST_OK);

    uint8_t buf[64];
    size_t stride = m->n > 20000 ? 7 : 1;
    for (size_t j = 0; j < m->n; j += stride) {
        st_it_seek(it, kslice(&m->v[j]));
        assert_at(it, m, j);
        st_slice target =
            lookup_key(buf, st_ikey_user(kslice(&m->v[j])), st_rng_uniform(r, 1000002));
        size_t want = lower_bound(m, target);
        st_it_seek(it, target);
        if (want == m->n)
            assert_false(st_it_valid(it));
        else
            assert_at(it, m, want);
    }
    for (int j = 0; j < 1000; j++) {
        uint8_t user[20];
        size_t ul = (size_t)st_rng_uniform(r, 18);
        for (size_t b = 0; b < ul; b++)
            user[b] = rand_byte(r);
        st_slice target = lookup_key(buf, st_slice_make(user, ul), st_rng_uniform(r, 1000002));
        size_t want = lower_bound(m, target);
        st_it_seek(it, target);
        if (want == m->n) {
            assert_false(st_it_valid(it));
        } else {
            assert_at(it, m, want);
            /* Step back across the seek point, as a reverse scan from a bound does. */
            st_it_prev(it);
            if (want == 0)
                assert_false(st_it_valid(it));
            else
                assert_at(it, m, want - 1);
        }
    }
    /* A random walk with direction changes, long enough to cross many blocks. */
    size_t pos = (size_t)st_rng_uniform(r, m->n);
    st_it_seek(it, kslice(&m->v[pos]));
    for (int step = 0; step < 5000; step++) {
        assert_at(it, m, pos);
        int run = 1 + (int)st_rng_uniform(r, 30);
        bool fwd = st_rng_uniform(r, 2);
        for (int k = 0; k < run; k++) {
            if (fwd) {
                st_it_next(it);
                if (++pos == m->n) {
                    assert_false(st_it_valid(it));
                    st_it_seek_last(it);
                    pos = m->n - 1;
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
    }
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);
}

static void check_all_modes(uint64_t number, const model *m, st_rng *r)
{
    for (int md = 0; md < NMODES; md++) {
        st_table *t = open_table(number, (enum mode)md);
        st_status s = st_table_verify(t);
        if (s != ST_OK)
            fail_msg("verify (%s): %s %s", mode_names[md], st_status_name(s), st_errmsg());
        check_gets(t, m, r);
        check_iter(t, m, r, false);
        check_iter(t, m, r, true);
        for (size_t i = 0; i < m->n; i += 1 + m->n / 1000)
            assert_true(st_table_may_contain(t, st_ikey_user(kslice(&m->v[i]))));
        st_table_unref(t);
    }
}

static void test_sizes(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed);
    /* The largest follows ST_TEST_SCALE (sanitizer runs may shrink it); the others are fixed. */
    size_t sizes[] = {1, 2, 10, 1000, 100000};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t n = sizes[si] == 100000 ? (size_t)st_test_scaled(100000) : sizes[si];
        size_t bb[] = {64, 256, 4096};
        int ri[] = {1, 4, 16};
        st_sst_options o = {bb[st_rng_uniform(&r, 3)], ri[st_rng_uniform(&r, 3)], 10};
        if (sizes[si] == 100000)
            o = (st_sst_options){0, 0, 10}; /* the defaults */
        model m = gen_model(&r, n, 0, 0, 60);
        assert_int_equal(m.n, n);
        st_sst_props props;
        build(100 + si, &o, &m, &props);
        fprintf(stderr,
                "sst: %zu entries, block %zu, restart %d: .dat %" PRIu64 " .idx %" PRIu64
                " .meta %" PRIu64 " bytes\n",
                n, o.block_bytes, o.restart_interval, props.dat_bytes, props.idx_bytes,
                props.meta_bytes);
        check_all_modes(100 + si, &m, &r);
        st_table *t = open_table(100 + si, MODE_MMAP);
        const st_sst_props *tp = st_table_props(t);
        assert_int_equal(tp->dat_bytes, props.dat_bytes);
        assert_int_equal(tp->idx_bytes, props.idx_bytes);
        assert_int_equal(tp->meta_bytes, props.meta_bytes);
        assert_int_equal(tp->entries, props.entries);
        assert_true(st_slice_eq(st_slice_make(tp->largest.data, tp->largest.len),
                                st_slice_make(props.largest.data, props.largest.len)));
        st_table_unref(t);
        st_sst_props_free(&props);
        free_model(&m);
    }
}

/* Put `prefix` in front of every user key (the order is unchanged). */
static void prepend(model *m, const uint8_t *prefix, size_t plen)
{
    for (size_t i = 0; i < m->n; i++) {
        uint8_t *k = malloc(m->v[i].key_len + plen);
        memcpy(k, prefix, plen);
        memcpy(k + plen, m->v[i].key, m->v[i].key_len);
        free(m->v[i].key);
        m->v[i].key = k;
        m->v[i].key_len += plen;
    }
}

/*
 * All user keys share a long prefix (the reader's index search compares the bytes after it), and
 * lookups and seeks come from inside and outside that prefix.
 */
static void test_common_prefix(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 6);
    const char *prefixes[] = {"user/0000000", "\0\0\0\0\xff\xff\xff\xff\0ab"};
    size_t lens[] = {12, 11};
    for (int p = 0; p < 2; p++) {
        model m = gen_model(&r, 5000, 2, 100, 30);
        prepend(&m, (const uint8_t *)prefixes[p], lens[p]);
        st_sst_props props;
        build(800 + (uint64_t)p, &(st_sst_options){512, 4, 10}, &m, &props);
        st_sst_props_free(&props);
        check_all_modes(800 + (uint64_t)p, &m, &r);
        /* Targets that share part of the prefix, or all of it and nothing more. */
        st_table *t = open_table(800 + (uint64_t)p, MODE_MMAP);
        st_iterator *it = st_table_iter(t);
        st_buf val;
        st_buf_init(&val);
        for (size_t cut = 0; cut <= lens[p]; cut++) {
            uint8_t buf[64], user[32];
            memcpy(user, prefixes[p], cut);
            for (int variant = 0; variant < 3; variant++) {
                size_t ul = cut;
                if (variant == 1 && cut < lens[p])
                    user[ul++] = (uint8_t)(prefixes[p][cut] + 1);
                if (variant == 2 && cut < lens[p] && prefixes[p][cut] != 0)
                    user[ul++] = (uint8_t)(prefixes[p][cut] - 1);
                st_slice target =
                    lookup_key(buf, st_slice_make(user, ul), st_rng_uniform(&r, 1000002));
                check_get(t, &m, target, &val);
                size_t want = lower_bound(&m, target);
                st_it_seek(it, target);
                if (want == m.n)
                    assert_false(st_it_valid(it));
                else
                    assert_at(it, &m, want);
            }
        }
        st_buf_free(&val);
        st_it_destroy(it);
        st_table_unref(t);
        free_model(&m);
    }
}

/* Hot user keys with hundreds of versions each, so their versions span many small blocks. */
static void test_versions_span_blocks(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 1);
    model m = gen_model(&r, 300, 3, 400, 20);
    st_sst_options o = {128, 2, 10};
    st_sst_props props;
    build(200, &o, &m, &props);
    /* Every snapshot from 0 to past the newest, for each hot key, through each mode. */
    for (int md = 0; md < NMODES; md++) {
        st_table *t = open_table(200, (enum mode)md);
        st_buf val;
        st_buf_init(&val);
        uint8_t buf[64];
        for (size_t i = 0; i < m.n; i++) {
            if (i > 0 &&
                st_slice_eq(st_ikey_user(kslice(&m.v[i])), st_ikey_user(kslice(&m.v[i - 1]))))
                continue;
            st_slice user = st_ikey_user(kslice(&m.v[i]));
            size_t versions = 1;
            while (i + versions < m.n &&
                   st_slice_eq(user, st_ikey_user(kslice(&m.v[i + versions]))))
                versions++;
            if (versions < 100)
                continue;
            for (uint64_t snap = 0; snap <= 1000001; snap += 1 + st_rng_uniform(&r, 700))
                check_get(t, &m, lookup_key(buf, user, snap), &val);
            for (size_t k = 0; k < versions; k++) {
                uint64_t sq = st_ikey_seq(kslice(&m.v[i + k]));
                check_get(t, &m, lookup_key(buf, user, sq), &val);
                check_get(t, &m, lookup_key(buf, user, sq - 1), &val);
            }
        }
        st_buf_free(&val);
        assert_int_equal(st_table_verify(t), ST_OK);
        check_iter(t, &m, &r, false);
        check_iter(t, &m, &r, true);
        st_table_unref(t);
    }
    st_sst_props_free(&props);
    free_model(&m);
}

/* ---- Builder contracts ---- */

static bool file_exists(uint64_t number, const char *ext)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%06" PRIu64 "%s", dir, number, ext);
    return access(path, F_OK) == 0;
}

static void test_builder_contracts(void **state)
{
    (void)state;
    uint8_t k1[16], k2[16], k3[16];
    st_slice a =
        st_slice_make(k1, (size_t)(st_encode_ikey(k1, st_slice_str("a"), 5, ST_KIND_PUT) - k1));
    st_slice a_old =
        st_slice_make(k2, (size_t)(st_encode_ikey(k2, st_slice_str("a"), 4, ST_KIND_PUT) - k2));
    st_slice b =
        st_slice_make(k3, (size_t)(st_encode_ikey(k3, st_slice_str("b"), 9, ST_KIND_DELETE) - k3));
    st_slice v = st_slice_str("value");

    st_sst_builder *bld;
    assert_int_equal(st_sst_builder_create(env, dir, 300, NULL, &bld), ST_OK);
    assert_true(file_exists(300, ".dat.tmp"));
    /* Nothing added: finish refuses. */
    st_sst_props props;
    assert_int_equal(st_sst_builder_finish(bld, &props), ST_INVALID_ARGUMENT);
    assert_int_equal(st_sst_builder_add(bld, st_slice_make(k1, 7), v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_sst_builder_add(bld, a_old, v), ST_OK);
    /* Out of order (newer version of the same key after an older one), and duplicates. */
    assert_int_equal(st_sst_builder_add(bld, a, v), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "000300"));
    assert_int_equal(st_sst_builder_add(bld, a_old, v), ST_INVALID_ARGUMENT);
    /* An unknown kind is not an internal key. */
    uint8_t bad[9] = {'z', 2, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(st_sst_builder_add(bld, st_slice_make(bad, 9), v), ST_INVALID_ARGUMENT);
    /* The builder is still usable after refusing. */
    assert_int_equal(st_sst_builder_add(bld, b, st_slice_make(NULL, 0)), ST_OK);
    assert_int_equal(st_sst_builder_entries(bld), 2);
    assert_true(st_sst_builder_bytes(bld) > 0);
    assert_int_equal(st_sst_builder_finish(bld, &props), ST_OK);
    assert_int_equal(props.entries, 2);
    assert_int_equal(props.tombstones, 1);
    assert_int_equal(props.min_seq, 4);
    assert_int_equal(props.max_seq, 9);
    assert_int_equal(st_sst_builder_add(bld, b, v), ST_INVALID_ARGUMENT);
    st_sst_builder_destroy(bld);
    st_sst_props_free(&props);
    const char *exts[] = {".dat", ".idx", ".meta"};
    for (int i = 0; i < 3; i++) {
        assert_true(file_exists(300, exts[i]));
        char tmp[16];
        snprintf(tmp, sizeof(tmp), "%s.tmp", exts[i]);
        assert_false(file_exists(300, tmp));
    }

    /* Destroyed before finish: the temporary files go, no final file appears. */
    assert_int_equal(st_sst_builder_create(env, dir, 301, NULL, &bld), ST_OK);
    assert_int_equal(st_sst_builder_add(bld, a, v), ST_OK);
    st_sst_builder_destroy(bld);
    st_sst_builder_destroy(NULL);
    for (int i = 0; i < 3; i++) {
        assert_false(file_exists(301, exts[i]));
        char tmp[16];
        snprintf(tmp, sizeof(tmp), "%s.tmp", exts[i]);
        assert_false(file_exists(301, tmp));
    }

    /* A missing directory fails at create, naming the path. */
    char *nodir = st_test_path(dir, "no/such/dir");
    assert_int_not_equal(st_sst_builder_create(env, nodir, 302, NULL, &bld), ST_OK);
    assert_null(bld);
    free(nodir);

    /* Remove: all three go; removing again is fine. */
    assert_int_equal(st_sst_remove(env, dir, 300), ST_OK);
    for (int i = 0; i < 3; i++)
        assert_false(file_exists(300, exts[i]));
    assert_int_equal(st_sst_remove(env, dir, 300), ST_OK);

    /* No Bloom filter: may_contain says maybe for anything; gets still answer right. */
    assert_int_equal(st_sst_builder_create(env, dir, 303, &(st_sst_options){0, 0, 0}, &bld), ST_OK);
    assert_int_equal(st_sst_builder_add(bld, a, v), ST_OK);
    assert_int_equal(st_sst_builder_finish(bld, &props), ST_OK);
    st_sst_builder_destroy(bld);
    st_sst_props_free(&props);
    st_table *t = open_table(303, MODE_MMAP);
    assert_true(st_table_may_contain(t, st_slice_str("zzz")));
    bool found;
    st_kind kind;
    uint64_t seq;
    st_buf val;
    st_buf_init(&val);
    uint8_t lk[16];
    assert_int_equal(
        st_table_get(t, lookup_key(lk, st_slice_str("a"), 100), &found, &kind, &seq, &val), ST_OK);
    assert_true(found);
    assert_int_equal(seq, 5);
    assert_int_equal(kind, ST_KIND_PUT);
    assert_int_equal(
        st_table_get(t, lookup_key(lk, st_slice_str("a"), 4), &found, &kind, &seq, &val), ST_OK);
    assert_false(found);
    st_buf_free(&val);
    st_table_unref(t);
}

/* ---- Corruption ---- */

static void path_of(char *buf, size_t cap, uint64_t number, const char *ext)
{
    snprintf(buf, cap, "%s/%06" PRIu64 "%s", dir, number, ext);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void write_all(const char *path, const uint8_t *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void poke(const char *path, size_t off, uint8_t byte)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)off), 1);
    close(fd);
}

static void assert_names(const char *name)
{
    if (!strstr(st_errmsg(), name))
        fail_msg("message does not name %s: \"%s\"", name, st_errmsg());
}

/*
 * With one bit of `ext` flipped at `off`: everything the table answers is right or an error naming
 * the file. Returns whether the damage was reported.
 */
static bool probe_damaged(uint64_t number, const char *ext, size_t off, const model *m,
                          enum mode md)
{
    char name[32];
    snprintf(name, sizeof(name), "%06" PRIu64 "%s", number, ext);
    st_table_options o = opts(md);
    st_table *t;
    st_status s = st_table_open(&o, dir, number, 0, &t);
    if (s != ST_OK) {
        if (!(s == ST_CORRUPTION || (s == ST_NOT_SUPPORTED && off == 4)))
            fail_msg("%s offset %zu: open returned %s: %s", name, off, st_status_name(s),
                     st_errmsg());
        assert_names(name);
        return true;
    }
    bool reported = false;
    st_buf val;
    st_buf_init(&val);
    uint8_t buf[64];
    for (size_t i = 0; i < m->n; i++) {
        st_slice k = kslice(&m->v[i]);
        bool found;
        st_kind kind;
        uint64_t seq;
        s = st_table_get(t, lookup_key(buf, st_ikey_user(k), st_ikey_seq(k)), &found, &kind, &seq,
                         &val);
        if (s != ST_OK) {
            assert_int_equal(s, ST_CORRUPTION);
            assert_names(name);
            reported = true;
            continue;
        }
        /* Never a wrong answer: the entry itself, or an error. */
        if (!found || kind != st_ikey_kind(k) || seq != st_ikey_seq(k) ||
            !st_slice_eq(st_slice_make(val.data, val.len),
                         st_slice_make(m->v[i].val, m->v[i].val_len)))
            fail_msg("%s offset %zu (%s): wrong answer for entry %zu", name, off, mode_names[md],
                     i);
    }
    st_buf_free(&val);

    st_iterator *it = st_table_iter(t);
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it)) {
        if (!st_slice_eq(st_it_key(it), kslice(&m->v[i])) ||
            !st_slice_eq(st_it_value(it), st_slice_make(m->v[i].val, m->v[i].val_len)))
            fail_msg("%s offset %zu (%s): iterator shows a wrong entry %zu", name, off,
                     mode_names[md], i);
        i++;
    }
    s = st_it_status(it);
    if (s != ST_OK) {
        assert_int_equal(s, ST_CORRUPTION);
        assert_names(name);
        reported = true;
    } else {
        assert_int_equal(i, m->n);
    }
    i = m->n;
    for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it)) {
        if (i == 0 || !st_slice_eq(st_it_key(it), kslice(&m->v[--i])))
            fail_msg("%s offset %zu (%s): reverse iterator shows a wrong entry", name, off,
                     mode_names[md]);
    }
    s = st_it_status(it);
    if (s != ST_OK) {
        assert_int_equal(s, ST_CORRUPTION);
        assert_names(name);
    } else {
        assert_int_equal(i, 0);
    }
    st_it_destroy(it);

    s = st_table_verify(t);
    if (s != ST_OK) {
        assert_int_equal(s, ST_CORRUPTION);
        assert_names(name);
        reported = true;
    }
    st_table_unref(t);
    return reported;
}

static void test_flip_every_byte(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 2);
    model m = gen_model(&r, 120, 1, 30, 10);
    st_sst_options o = {200, 3, 10};
    st_sst_props props;
    build(400, &o, &m, &props);
    st_sst_props_free(&props);
    const char *exts[] = {".dat", ".idx", ".meta"};
    for (int f = 0; f < 3; f++) {
        char path[512];
        path_of(path, sizeof(path), 400, exts[f]);
        size_t n;
        uint8_t *orig = read_all(path, &n);
        fprintf(stderr, "sst: flipping each of the %zu bytes of %06d%s\n", n, 400, exts[f]);
        for (size_t off = 0; off < n; off++) {
            /* A different bit at each offset; every bit position gets its turn. */
            poke(path, off, orig[off] ^ (uint8_t)(1u << ((off + (size_t)f) % 8)));
            /* pread without a cache reads blocks as the cache mode does; two modes suffice. */
            for (int md = 0; md < MODE_PREAD; md++) {
                if (!probe_damaged(400, exts[f], off, &m, (enum mode)md))
                    fail_msg("%06d%s offset %zu (%s): flipped bit not reported", 400, exts[f], off,
                             mode_names[md]);
            }
            poke(path, off, orig[off]);
        }
        free(orig);
    }
    /* Restored: everything is fine again. */
    for (int md = 0; md < NMODES; md++) {
        st_table *t = open_table(400, (enum mode)md);
        assert_int_equal(st_table_verify(t), ST_OK);
        st_table_unref(t);
    }
    free_model(&m);
}

/* Rewrite the whole-file CRC at the end of an .idx or .meta. */
static void fix_file_crc(uint8_t *buf, size_t n)
{
    st_put_fixed32(buf + n - 4, st_crc32c_mask(st_crc32c(buf, n - 4)));
}

static void test_versions_and_sizes(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 3);
    model m = gen_model(&r, 500, 0, 0, 30);
    st_sst_props props;
    build(501, &(st_sst_options){512, 8, 10}, &m, &props);
    st_sst_props_free(&props);
    build(500, &(st_sst_options){512, 8, 10}, &m, &props);
    st_table_options o = opts(MODE_MMAP);
    st_table *t;
    const char *exts[] = {".idx", ".meta"};
    for (int f = 0; f < 2; f++) {
        char path[512], name[32];
        path_of(path, sizeof(path), 500, exts[f]);
        snprintf(name, sizeof(name), "000500%s", exts[f]);
        size_t n;
        uint8_t *orig = read_all(path, &n);
        uint8_t *buf = malloc(n);
        /* A later version, checksummed correctly: not supported, and said so. */
        memcpy(buf, orig, n);
        buf[4] = ST_SST_FORMAT_VERSION + 1;
        fix_file_crc(buf, n);
        write_all(path, buf, n);
        assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_NOT_SUPPORTED);
        assert_names(name);
        assert_non_null(strstr(st_errmsg(), "version"));
        /* Bad magic. */
        memcpy(buf, orig, n);
        buf[0] ^= 0x20;
        fix_file_crc(buf, n);
        write_all(path, buf, n);
        assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
        assert_names(name);
        /* Truncated to nothing, and to less than a header. */
        write_all(path, buf, 0);
        assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
        assert_names(name);
        write_all(path, orig, 6);
        assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
        assert_names(name);
        /* Missing: the table is live (someone asked for it), so that is damage. */
        unlink(path);
        assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
        assert_names(name);
        write_all(path, orig, n);
        free(buf);
        free(orig);
    }

    /* A .meta of another table (its number inside differs). */
    char p500[512], p501[512];
    path_of(p500, sizeof(p500), 500, ".meta");
    path_of(p501, sizeof(p501), 501, ".meta");
    size_t n;
    uint8_t *meta500 = read_all(p500, &n);
    size_t n501;
    uint8_t *meta501 = read_all(p501, &n501);
    write_all(p500, meta501, n501);
    assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
    assert_names("000500.meta");
    write_all(p500, meta500, n);
    free(meta500);
    free(meta501);

    /* .dat sizes: the expected size given by the caller, a truncated and a grown file. */
    assert_int_equal(st_table_open(&o, dir, 500, props.dat_bytes + 1, &t), ST_CORRUPTION);
    assert_names("000500.dat");
    assert_int_equal(st_table_open(&o, dir, 500, props.dat_bytes, &t), ST_OK);
    st_table_unref(t);
    char pdat[512];
    path_of(pdat, sizeof(pdat), 500, ".dat");
    uint8_t *dat = read_all(pdat, &n);
    write_all(pdat, dat, n - 1);
    assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
    assert_names("000500.dat");
    uint8_t *longer = calloc(n + 10, 1);
    memcpy(longer, dat, n);
    write_all(pdat, longer, n + 10);
    assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_CORRUPTION);
    assert_names("000500.dat");
    write_all(pdat, dat, n);
    assert_int_equal(st_table_open(&o, dir, 500, 0, &t), ST_OK);
    assert_int_equal(st_table_verify(t), ST_OK);
    st_table_unref(t);
    free(longer);
    free(dat);
    st_sst_props_free(&props);
    free_model(&m);
}

/* The block cache fills with reads, serves repeats, and is emptied when the table closes. */
static void test_block_cache_use(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 4);
    model m = gen_model(&r, 3000, 0, 0, 40);
    st_sst_props props;
    build(600, &(st_sst_options){1024, 16, 10}, &m, &props);
    st_sst_props_free(&props);
    st_cache *c;
    assert_int_equal(st_cache_create(1 << 20, &c), ST_OK);
    st_table_options o = {env, c, false};
    st_table *t;
    assert_int_equal(st_table_open(&o, dir, 600, 0, &t), ST_OK);
    st_buf val;
    st_buf_init(&val);
    uint8_t buf[64];
    uint64_t h0, m0, h1, m1;
    size_t usage;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < m.n; i++)
            check_get(t, &m, lookup_key(buf, st_ikey_user(kslice(&m.v[i])), ST_MAX_SEQ), &val);
    st_cache_stats(c, &h0, &m0, &usage);
    assert_true(usage > props.dat_bytes / 2);
    assert_true(m0 > 0);
    assert_true(h0 > 4 * m0);
    for (size_t i = 0; i < m.n; i++)
        check_get(t, &m, lookup_key(buf, st_ikey_user(kslice(&m.v[i])), ST_MAX_SEQ), &val);
    st_cache_stats(c, &h1, &m1, NULL);
    assert_int_equal(m1, m0); /* everything is cached now */
    assert_true(h1 > h0);
    /* An iterator holds its table: the table outlives the caller's unref. */
    st_iterator *it = st_table_iter(t);
    st_table_unref(t);
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        assert_at(it, &m, i++);
    assert_int_equal(i, m.n);
    st_it_destroy(it);
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 0);
    st_buf_free(&val);
    st_cache_destroy(c);
    free_model(&m);
}

/*
 * st_table_iter_once reads every block itself: it leaves the block cache alone, and on a mapped
 * table it checks the bytes on disk again instead of trusting blocks verified through the map.
 */
static void test_iter_once(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 5);
    model m = gen_model(&r, 3000, 0, 0, 40);
    st_sst_props props;
    build(610, &(st_sst_options){1024, 16, 10}, &m, &props);
    st_sst_props_free(&props);

    /* Through a cache: a whole pass adds nothing to it and counts no lookups. */
    st_cache *c;
    assert_int_equal(st_cache_create(1 << 20, &c), ST_OK);
    st_table_options o = {env, c, false};
    st_table *t;
    assert_int_equal(st_table_open(&o, dir, 610, 0, &t), ST_OK);
    st_iterator *it = st_table_iter_once(t);
    assert_non_null(it);
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        assert_at(it, &m, i++);
    assert_int_equal(i, m.n);
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);
    uint64_t hits, misses;
    size_t usage;
    st_cache_stats(c, &hits, &misses, &usage);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, 0);
    assert_int_equal(usage, 0);
    /* The ordinary iterator does use it (so the check above could fail). */
    it = st_table_iter(t);
    st_it_seek_first(it);
    assert_true(st_it_valid(it));
    st_it_destroy(it);
    st_cache_stats(c, NULL, &misses, &usage);
    assert_true(misses > 0 && usage > 0);
    st_table_unref(t);
    st_cache_destroy(c);

    /* Mapped: every block is verified by a first pass, then one byte of a middle block's value
       changes on disk (the shared map sees it too). The mapped iterator trusts its earlier
       check; the once iterator reads the block again and reports the damage. */
    t = open_table(610, MODE_MMAP);
    it = st_table_iter(t);
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it)) {
    }
    assert_int_equal(st_it_status(it), ST_OK);
    size_t mid = m.n / 2;
    st_it_seek(it, kslice(&m.v[mid]));
    assert_at(it, &m, mid);
    while (st_it_value(it).len == 0) {
        st_it_next(it);
        assert_true(st_it_valid(it));
    }
    st_slice v = st_it_value(it);
    char pdat[512];
    path_of(pdat, sizeof(pdat), 610, ".dat");
    size_t n;
    uint8_t *whole = read_all(pdat, &n);
    uint8_t *at = memmem(whole, n, v.data, v.len);
    assert_non_null(at);
    size_t off = (size_t)(at - whole);
    poke(pdat, off, (uint8_t)(whole[off] ^ 0x01));
    st_it_seek_first(it);
    for (i = 0; st_it_valid(it); st_it_next(it))
        i++;
    assert_int_equal(i, m.n);
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);
    it = st_table_iter_once(t);
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it)) {
    }
    assert_int_equal(st_it_status(it), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "checksum"));
    st_it_destroy(it);
    poke(pdat, off, whole[off]);
    free(whole);
    st_table_unref(t);
    free_model(&m);
}

/* ---- Threads ---- */

typedef struct reader_arg {
    st_table *t;
    const model *m;
    uint64_t seed;
    int gets;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    st_rng r;
    st_rng_seed(&r, a->seed);
    st_buf val;
    st_buf_init(&val);
    uint8_t buf[64];
    /* cmocka is not thread-safe: mismatches abort. */
    for (int i = 0; i < a->gets; i++) {
        size_t j = (size_t)st_rng_uniform(&r, a->m->n);
        st_slice k = kslice(&a->m->v[j]);
        bool found;
        st_kind kind;
        uint64_t seq;
        if (st_table_get(a->t, lookup_key(buf, st_ikey_user(k), st_ikey_seq(k)), &found, &kind,
                         &seq, &val) != ST_OK ||
            !found || seq != st_ikey_seq(k) ||
            !st_slice_eq(st_slice_make(val.data, val.len),
                         st_slice_make(a->m->v[j].val, a->m->v[j].val_len)))
            abort();
    }
    st_iterator *it = st_table_iter(a->t);
    size_t n = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        if (!st_slice_eq(st_it_key(it), kslice(&a->m->v[n++])))
            abort();
    if (n != a->m->n || st_it_status(it) != ST_OK)
        abort();
    st_it_destroy(it);
    st_buf_free(&val);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    st_rng r;
    st_rng_seed(&r, seed + 5);
    model m = gen_model(&r, 20000, 0, 0, 50);
    st_sst_props props;
    build(700, &(st_sst_options){4096, 16, 10}, &m, &props);
    st_sst_props_free(&props);
    st_cache *small;
    /* A cache far smaller than the table: inserts, hits and evictions race. */
    assert_int_equal(st_cache_create(64 << 10, &small), ST_OK);
    for (int md = 0; md < NMODES; md++) {
        st_table_options o = opts((enum mode)md);
        if (md == MODE_CACHE)
            o.block_cache = small;
        st_table *t;
        assert_int_equal(st_table_open(&o, dir, 700, 0, &t), ST_OK);
        enum { NT = 4 };
        pthread_t th[NT];
        reader_arg args[NT];
        for (int i = 0; i < NT; i++) {
            args[i] = (reader_arg){t, &m, seed + 100 + (uint64_t)i, (int)st_test_scaled(20000)};
            assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
        }
        for (int i = 0; i < NT; i++)
            pthread_join(th[i], NULL);
        st_table_unref(t);
    }
    st_cache_destroy(small);
    free_model(&m);
}

/* Per-test wall time on stderr, to keep the program within its time budget. */
static struct timespec t0;

static int start_timer(void **state)
{
    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    return 0;
}

static int stop_timer(void **state)
{
    (void)state;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "sst: test took %.2f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    env = st_env_posix();
    dir = st_test_mkdtemp("sst");
    return st_cache_create(4 << 20, &block_cache) == ST_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    st_cache_destroy(block_cache);
    st_test_rmdir(dir);
    free(dir);
    return 0;
}

int main(void)
{
    seed = st_test_seed("sst");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sizes, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_versions_span_blocks, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_common_prefix, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_builder_contracts, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_flip_every_byte, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_versions_and_sizes, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_block_cache_use, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_iter_once, start_timer, stop_timer),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, start_timer, stop_timer),
    };
    return cmocka_run_group_tests_name("sst", tests, setup, teardown);
}
