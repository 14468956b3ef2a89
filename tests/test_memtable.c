/*
 * test_memtable.c - versions and snapshots, binary keys, iterator order, empty values, references,
 * and a reader racing the writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dbformat.h"
#include "engine/memtable.h"
#include "tests/support/testutil.h"

/* One entry of the model: what was added. */
typedef struct entry {
    uint8_t key[8];
    size_t klen;
    uint64_t seq;
    st_kind kind;
    uint8_t val[24];
    size_t vlen;
    uint8_t ikey[16]; /* key + tag, for ordering */
} entry;

static st_slice ekey(const entry *e)
{
    return st_slice_make(e->key, e->klen);
}

static st_slice eikey(const entry *e)
{
    return st_slice_make(e->ikey, e->klen + ST_TAG_BYTES);
}

static int entry_cmp(const void *a, const void *b)
{
    return st_ikey_cmp(eikey(a), eikey(b));
}

/* Awkward user keys: empty, NUL bytes, 0xFF bytes, and keys that are prefixes of others. */
static const struct {
    const char *b;
    size_t n;
} KEYS[] = {
    {"", 0},         {"\0", 1},      {"\0\0", 2},
    {"\0\xff", 2},   {"\x01", 1},    {"a", 1},
    {"a\0", 2},      {"a\0b", 3},    {"a\xff", 2},
    {"ab", 2},       {"\xff", 1},    {"\xff\xff", 2},
    {"\xff\0", 2},   {"\x7f", 1},    {"\x80", 1},
    {"abcdefgh", 8}, {"abcdefg", 7}, {"\xff\xff\xff\xff", 4},
};
#define NKEYS (sizeof(KEYS) / sizeof(KEYS[0]))

static void test_basics(void **state)
{
    (void)state;
    st_memtable *m;
    assert_int_equal(st_memtable_create(&m), ST_OK);
    assert_int_equal(st_memtable_entries(m), 0);
    size_t b0 = st_memtable_bytes(m);
    assert_true(b0 > 0); /* the skiplist's head is already in the arena */

    st_kind kind = ST_KIND_PUT;
    st_slice v = st_slice_str("untouched");
    uint64_t fs = 77;
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), 100, &kind, &v, &fs), ST_NOT_FOUND);
    assert_true(st_slice_eq(v, st_slice_str("untouched")));
    assert_int_equal(fs, 77);

    assert_int_equal(st_memtable_add(m, 5, ST_KIND_PUT, st_slice_str("k"), st_slice_str("v5")),
                     ST_OK);
    assert_int_equal(st_memtable_add(m, 9, ST_KIND_PUT, st_slice_str("k"), st_slice_make(NULL, 0)),
                     ST_OK);
    assert_int_equal(st_memtable_entries(m), 2);
    assert_true(st_memtable_bytes(m) >= b0);

    /* Before the first version: nothing. */
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), 4, &kind, &v, NULL), ST_NOT_FOUND);
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), 5, &kind, &v, &fs), ST_OK);
    assert_int_equal(kind, ST_KIND_PUT);
    assert_true(st_slice_eq(v, st_slice_str("v5")));
    assert_int_equal(fs, 5);
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), 8, &kind, &v, &fs), ST_OK);
    assert_int_equal(fs, 5);
    /* The empty value is a value, not a miss. */
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), 9, &kind, &v, &fs), ST_OK);
    assert_int_equal(kind, ST_KIND_PUT);
    assert_int_equal(v.len, 0);
    assert_int_equal(fs, 9);
    /* Sequences past the 56-bit range read as the newest. */
    assert_int_equal(st_memtable_get(m, st_slice_str("k"), UINT64_MAX, &kind, &v, &fs), ST_OK);
    assert_int_equal(fs, 9);
    /* A neighbour that is a prefix or an extension is a different key. */
    assert_int_equal(st_memtable_get(m, st_slice_str(""), 100, &kind, &v, NULL), ST_NOT_FOUND);
    assert_int_equal(st_memtable_get(m, st_slice_make("k\0", 2), 100, &kind, &v, NULL),
                     ST_NOT_FOUND);
    assert_int_equal(st_memtable_get(m, st_slice_str("kk"), 100, &kind, &v, NULL), ST_NOT_FOUND);

    /* Bad arguments are refused and add nothing. */
    assert_int_equal(
        st_memtable_add(m, ST_MAX_SEQ + 1, ST_KIND_PUT, st_slice_str("x"), st_slice_str("y")),
        ST_INVALID_ARGUMENT);
    assert_int_equal(st_memtable_add(m, 1, (st_kind)7, st_slice_str("x"), st_slice_str("y")),
                     ST_INVALID_ARGUMENT);
    assert_int_equal(st_memtable_entries(m), 2);
    assert_int_equal(st_memtable_get(m, st_slice_str("x"), 100, &kind, &v, NULL), ST_NOT_FOUND);
    /* The largest sequence is accepted. */
    assert_int_equal(
        st_memtable_add(m, ST_MAX_SEQ, ST_KIND_DELETE, st_slice_str("x"), st_slice_make(NULL, 0)),
        ST_OK);
    assert_int_equal(st_memtable_get(m, st_slice_str("x"), UINT64_MAX, &kind, &v, &fs), ST_OK);
    assert_int_equal(kind, ST_KIND_DELETE);
    assert_true(fs == ST_MAX_SEQ);

    /* The same (key, seq, kind) twice: the later add shadows the earlier; a scan shows both. */
    assert_int_equal(st_memtable_add(m, 3, ST_KIND_PUT, st_slice_str("dup"), st_slice_str("one")),
                     ST_OK);
    assert_int_equal(st_memtable_add(m, 3, ST_KIND_PUT, st_slice_str("dup"), st_slice_str("two")),
                     ST_OK);
    assert_int_equal(st_memtable_get(m, st_slice_str("dup"), 3, &kind, &v, &fs), ST_OK);
    assert_true(st_slice_eq(v, st_slice_str("two")));
    st_iterator *it = st_memtable_iter(m);
    assert_non_null(it);
    st_lookup_key lk;
    assert_true(st_lookup_key_init(&lk, st_slice_str("dup"), 3));
    st_it_seek(it, st_lookup_ikey(&lk));
    assert_true(st_slice_eq(st_it_value(it), st_slice_str("two")));
    st_it_next(it);
    assert_true(st_slice_eq(st_it_value(it), st_slice_str("one")));
    st_it_prev(it);
    assert_true(st_slice_eq(st_it_value(it), st_slice_str("two")));
    st_lookup_key_free(&lk);
    st_it_destroy(it);

    st_memtable_unref(m);
    st_memtable_unref(NULL);
}

/*
 * Many versions per key, puts and tombstones at random sequences; every get at every snapshot
 * agrees with a scan of the model, and the iterator shows the model in st_ikey_cmp order.
 */
static void test_versions_and_order(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("memtable_versions");
    st_rng rng;
    st_rng_seed(&rng, seed);

    enum { N = 3000, MAXSEQ = 4 * N };
    entry *model = calloc(N, sizeof(entry));
    assert_non_null(model);
    /* Distinct sequences in random order: a shuffled subset of 1..MAXSEQ. */
    uint64_t *seqs = malloc(MAXSEQ * sizeof(uint64_t));
    for (uint64_t i = 0; i < MAXSEQ; i++)
        seqs[i] = i + 1;
    for (uint64_t i = MAXSEQ - 1; i > 0; i--) {
        uint64_t j = st_rng_uniform(&rng, i + 1), t = seqs[i];
        seqs[i] = seqs[j];
        seqs[j] = t;
    }

    st_memtable *m;
    assert_int_equal(st_memtable_create(&m), ST_OK);
    for (size_t i = 0; i < N; i++) {
        entry *e = &model[i];
        size_t ki = (size_t)st_rng_uniform(&rng, NKEYS);
        e->klen = KEYS[ki].n;
        memcpy(e->key, KEYS[ki].b, e->klen);
        e->seq = seqs[i];
        e->kind = st_rng_uniform(&rng, 4) == 0 ? ST_KIND_DELETE : ST_KIND_PUT;
        /* Values: often empty, else binary bytes of random length. */
        e->vlen = e->kind == ST_KIND_DELETE || st_rng_uniform(&rng, 5) == 0
                      ? 0
                      : 1 + (size_t)st_rng_uniform(&rng, sizeof(e->val) - 1);
        st_rng_bytes(&rng, e->val, e->vlen);
        st_encode_ikey(e->ikey, ekey(e), e->seq, e->kind);
        assert_int_equal(st_memtable_add(m, e->seq, e->kind, ekey(e),
                                         st_slice_make(e->vlen ? e->val : NULL, e->vlen)),
                         ST_OK);
    }
    assert_int_equal(st_memtable_entries(m), N);
    /* Every entry holds at least its tag, a key length and a link. */
    assert_true(st_memtable_bytes(m) > (size_t)N * (ST_TAG_BYTES + 1 + sizeof(void *)));

    /* get at many snapshots, for every key (and a key never written). In internal-key order a
       key's versions run newest first, so the answer is the first of them with seq <= snapshot. */
    qsort(model, N, sizeof(entry), entry_cmp);
    for (size_t ki = 0; ki <= NKEYS; ki++) {
        st_slice key = ki < NKEYS ? st_slice_make(KEYS[ki].b, KEYS[ki].n) : st_slice_str("zz");
        size_t lo = 0;
        while (lo < N && !st_slice_eq(ekey(&model[lo]), key))
            lo++;
        for (uint64_t snap = 0; snap <= MAXSEQ + 1; snap += 1 + st_rng_uniform(&rng, 7)) {
            const entry *want = NULL;
            for (size_t i = lo; i < N && st_slice_eq(ekey(&model[i]), key); i++) {
                if (model[i].seq <= snap) {
                    want = &model[i];
                    break;
                }
            }
            st_kind kind;
            st_slice v;
            uint64_t fs;
            st_status s = st_memtable_get(m, key, snap, &kind, &v, &fs);
            if (!want) {
                assert_int_equal(s, ST_NOT_FOUND);
                continue;
            }
            assert_int_equal(s, ST_OK);
            assert_true(fs == want->seq);
            assert_int_equal(kind, want->kind);
            assert_int_equal(v.len, want->vlen);
            if (v.len)
                assert_memory_equal(v.data, want->val, v.len);
        }
    }

    /* The iterator: full scans both ways in internal-key order, with values. */
    st_iterator *it = st_memtable_iter(m);
    assert_non_null(it);
    assert_false(st_it_valid(it));
    size_t i = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it), i++) {
        assert_true(i < N);
        assert_true(st_slice_eq(st_it_key(it), eikey(&model[i])));
        assert_true(st_slice_eq(st_it_value(it), st_slice_make(model[i].val, model[i].vlen)));
    }
    assert_int_equal(i, N);
    for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it)) {
        assert_true(i > 0);
        i--;
        assert_true(st_slice_eq(st_it_key(it), eikey(&model[i])));
    }
    assert_int_equal(i, 0);
    assert_int_equal(st_it_status(it), ST_OK);

    /* seek to (key, snapshot): the first entry at or after it in the model. */
    for (int round = 0; round < 2000; round++) {
        size_t ki = (size_t)st_rng_uniform(&rng, NKEYS);
        st_lookup_key lk;
        assert_true(st_lookup_key_init(&lk, st_slice_make(KEYS[ki].b, KEYS[ki].n),
                                       st_rng_uniform(&rng, MAXSEQ + 2)));
        st_slice target = st_lookup_ikey(&lk);
        size_t pos = 0;
        while (pos < N && st_ikey_cmp(eikey(&model[pos]), target) < 0)
            pos++;
        st_it_seek(it, target);
        if (pos == N) {
            assert_false(st_it_valid(it));
        } else {
            assert_true(st_it_valid(it));
            assert_true(st_slice_eq(st_it_key(it), eikey(&model[pos])));
            /* one step back lands on the entry before it */
            st_it_prev(it);
            if (pos == 0) {
                assert_false(st_it_valid(it));
            } else {
                assert_true(st_it_valid(it));
                assert_true(st_slice_eq(st_it_key(it), eikey(&model[pos - 1])));
            }
        }
        st_lookup_key_free(&lk);
    }

    /* The iterator keeps the memtable alive after its creator lets go. */
    st_memtable_unref(m);
    st_it_seek_first(it);
    assert_true(st_it_valid(it));
    assert_true(st_slice_eq(st_it_key(it), eikey(&model[0])));
    st_it_destroy(it);
    free(seqs);
    free(model);
}

/* Keys and values far past one arena block, and a key longer than any one-byte length. */
static void test_large_entries(void **state)
{
    (void)state;
    st_memtable *m;
    assert_int_equal(st_memtable_create(&m), ST_OK);
    size_t big = 100000;
    uint8_t *k = malloc(big), *v = malloc(big);
    for (size_t i = 0; i < big; i++) {
        k[i] = (uint8_t)(i * 31);
        v[i] = (uint8_t)(i * 17 + 3);
    }
    assert_int_equal(
        st_memtable_add(m, 1, ST_KIND_PUT, st_slice_make(k, big), st_slice_make(v, big)), ST_OK);
    assert_int_equal(
        st_memtable_add(m, 2, ST_KIND_PUT, st_slice_make(k, 200), st_slice_make(v, 300)), ST_OK);
    assert_true(st_memtable_bytes(m) >= 2 * big);
    st_kind kind;
    st_slice got;
    assert_int_equal(st_memtable_get(m, st_slice_make(k, big), 10, &kind, &got, NULL), ST_OK);
    assert_int_equal(got.len, big);
    assert_memory_equal(got.data, v, big);
    assert_int_equal(st_memtable_get(m, st_slice_make(k, 200), 10, &kind, &got, NULL), ST_OK);
    assert_int_equal(got.len, 300);
    assert_int_equal(st_memtable_get(m, st_slice_make(k, 199), 10, &kind, &got, NULL),
                     ST_NOT_FOUND);

    st_iterator *it = st_memtable_iter(m);
    st_it_seek_first(it);
    assert_true(st_it_valid(it));
    /* k[0..200) is a prefix of the long key, so it sorts first. */
    assert_int_equal(st_it_key(it).len, 200 + ST_TAG_BYTES);
    assert_int_equal(st_it_value(it).len, 300);
    st_it_next(it);
    assert_true(st_it_valid(it));
    assert_int_equal(st_it_key(it).len, big + ST_TAG_BYTES);
    assert_memory_equal(st_it_key(it).data, k, big);
    assert_int_equal(st_it_value(it).len, big);
    st_it_next(it);
    assert_false(st_it_valid(it));
    st_it_destroy(it);
    free(k);
    free(v);
    st_memtable_unref(m);
}

/* ---- a writer adding versions while readers get and iterate ---- */

enum { RACE_KEYS = 64, RACE_ADDS = 30000 };

typedef struct race {
    st_memtable *m;
    _Atomic uint64_t last_seq; /* every seq <= last_seq has been added */
    _Atomic int errors;
} race;

/* Entry with sequence s: key s % RACE_KEYS, value = the decimal sequence. */
static void race_key(uint64_t s, char *buf, size_t *len)
{
    *len = (size_t)snprintf(buf, 16, "key%02u", (unsigned)(s % RACE_KEYS));
}

static void *race_writer(void *arg)
{
    race *r = arg;
    for (uint64_t s = 1; s <= RACE_ADDS; s++) {
        char k[16], v[24];
        size_t kl;
        race_key(s, k, &kl);
        int vl = snprintf(v, sizeof(v), "%llu", (unsigned long long)s);
        if (st_memtable_add(r->m, s, ST_KIND_PUT, st_slice_make(k, kl),
                            st_slice_make(v, (size_t)vl)) != ST_OK)
            atomic_fetch_add(&r->errors, 1);
        atomic_store_explicit(&r->last_seq, s, memory_order_release);
    }
    return NULL;
}

static void *race_reader(void *arg)
{
    race *r = arg;
    int bad = 0;
    uint64_t done;
    do {
        done = atomic_load_explicit(&r->last_seq, memory_order_acquire);
        /* Each key's newest version at `done` is known exactly. */
        for (unsigned ki = 0; ki < RACE_KEYS && done >= RACE_KEYS; ki++) {
            char k[16];
            size_t kl;
            uint64_t want = done - ((done - ki) % RACE_KEYS);
            race_key(want, k, &kl);
            st_kind kind;
            st_slice v;
            uint64_t fs;
            char num[24];
            if (st_memtable_get(r->m, st_slice_make(k, kl), done, &kind, &v, &fs) != ST_OK ||
                v.len >= sizeof(num)) {
                bad++;
                continue;
            }
            memcpy(num, v.data, v.len); /* values are not NUL-terminated */
            num[v.len] = 0;
            if (kind != ST_KIND_PUT || fs != want || strtoull(num, NULL, 10) != want)
                bad++;
        }
        /* A scan sees strictly increasing internal keys. */
        st_iterator *it = st_memtable_iter(r->m);
        if (!it) {
            bad++;
            break;
        }
        uint8_t prev[32];
        size_t plen = 0;
        for (st_it_seek_first(it); st_it_valid(it); st_it_next(it)) {
            st_slice k = st_it_key(it);
            if (plen && st_ikey_cmp(st_slice_make(prev, plen), k) >= 0)
                bad++;
            memcpy(prev, k.data, k.len);
            plen = k.len;
        }
        st_it_destroy(it);
    } while (done < RACE_ADDS && !bad);
    atomic_fetch_add(&r->errors, bad);
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    race r;
    assert_int_equal(st_memtable_create(&r.m), ST_OK);
    atomic_init(&r.last_seq, 0);
    atomic_init(&r.errors, 0);
    pthread_t w, rd[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, race_reader, &r), 0);
    assert_int_equal(pthread_create(&w, NULL, race_writer, &r), 0);
    assert_int_equal(pthread_join(w, NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(rd[i], NULL), 0);
    assert_int_equal(atomic_load(&r.errors), 0);
    assert_int_equal(st_memtable_entries(r.m), RACE_ADDS);
    st_memtable_unref(r.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_versions_and_order),
        cmocka_unit_test(test_large_entries),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests_name("memtable", tests, NULL, NULL);
}
