/* test_cache.c - the sharded LRU cache: order, pinning, charge, erase, replace, deleters, stats,
 * and a multithreaded smoke test (run it under TSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/cache.h"
#include "tests/support/testutil.h"

static uint64_t seed;

/* Values are counters of deleter calls: the value for key k is &deleted[k]. */
#define NKEYS 64
static int deleted[NKEYS];

static void count_deleter(void *value)
{
    (*(int *)value)++;
}

static void reset_counts(void)
{
    for (int i = 0; i < NKEYS; i++)
        deleted[i] = 0;
}

static void insert_release(st_cache *c, uint64_t k, size_t charge)
{
    st_cache_handle *h = st_cache_insert(c, 1, k, &deleted[k], charge, count_deleter);
    assert_non_null(h);
    st_cache_release(c, h);
}

static bool present(st_cache *c, uint64_t k)
{
    st_cache_handle *h = st_cache_lookup(c, 1, k);
    if (h)
        st_cache_release(c, h);
    return h != NULL;
}

static void test_lru_order(void **state)
{
    (void)state;
    reset_counts();
    st_cache *c;
    assert_int_equal(st_cache_create_sharded(4, 0, &c), ST_OK);
    for (uint64_t k = 0; k < 4; k++)
        insert_release(c, k, 1);
    /* Touch 0 and 2: 1 is now the least recently used, then 3. */
    assert_true(present(c, 0));
    assert_true(present(c, 2));
    insert_release(c, 4, 1);
    assert_int_equal(deleted[1], 1);
    assert_false(present(c, 1));
    insert_release(c, 5, 1);
    assert_int_equal(deleted[3], 1);
    assert_false(present(c, 3));
    assert_true(present(c, 0) && present(c, 2) && present(c, 4) && present(c, 5));
    for (int k = 0; k < 6; k++)
        assert_int_equal(deleted[k], k == 1 || k == 3);
    st_cache_destroy(c);
    /* Destroy deletes the rest, each once. */
    for (int k = 0; k < 6; k++)
        assert_int_equal(deleted[k], 1);
}

static void test_pinning(void **state)
{
    (void)state;
    reset_counts();
    st_cache *c;
    assert_int_equal(st_cache_create_sharded(2, 0, &c), ST_OK);
    st_cache_handle *h0 = st_cache_insert(c, 1, 0, &deleted[0], 1, count_deleter);
    st_cache_handle *h1 = st_cache_insert(c, 1, 1, &deleted[1], 1, count_deleter);
    assert_ptr_equal(st_cache_value(h0), &deleted[0]);
    /* Both pinned: a third entry goes over capacity without evicting them. */
    st_cache_handle *h2 = st_cache_insert(c, 1, 2, &deleted[2], 1, count_deleter);
    size_t usage;
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 3);
    assert_int_equal(deleted[0] + deleted[1] + deleted[2], 0);
    /* Releasing h0 lets the cache shed it (the oldest unpinned) to get back under capacity. */
    st_cache_release(c, h0);
    assert_int_equal(deleted[0], 1);
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 2);
    st_cache_release(c, h1);
    st_cache_release(c, h2);
    assert_int_equal(deleted[1] + deleted[2], 0);
    assert_true(present(c, 1) && present(c, 2));
    st_cache_destroy(c);
    assert_int_equal(deleted[1], 1);
    assert_int_equal(deleted[2], 1);
}

static void test_charge(void **state)
{
    (void)state;
    reset_counts();
    st_cache *c;
    assert_int_equal(st_cache_create_sharded(100, 0, &c), ST_OK);
    for (uint64_t k = 0; k < 10; k++)
        insert_release(c, k, 10);
    size_t usage;
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 100);
    /* A 35-byte entry pushes out the four oldest (40 bytes). */
    insert_release(c, 10, 35);
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 95);
    for (uint64_t k = 0; k < 4; k++) {
        assert_int_equal(deleted[k], 1);
        assert_false(present(c, k));
    }
    for (uint64_t k = 4; k <= 10; k++)
        assert_true(present(c, k));
    /* An entry larger than the whole cache is still handed out, then dropped at release. */
    st_cache_handle *h = st_cache_insert(c, 1, 11, &deleted[11], 1000, count_deleter);
    assert_non_null(h);
    assert_ptr_equal(st_cache_value(h), &deleted[11]);
    st_cache_release(c, h);
    assert_int_equal(deleted[11], 1);
    assert_false(present(c, 11));
    st_cache_destroy(c);
}

static void test_erase_and_replace(void **state)
{
    (void)state;
    reset_counts();
    st_cache *c;
    assert_int_equal(st_cache_create_sharded(100, 0, &c), ST_OK);

    /* Erase of an unpinned entry deletes at once. */
    insert_release(c, 0, 1);
    st_cache_erase(c, 1, 0);
    assert_int_equal(deleted[0], 1);
    assert_false(present(c, 0));
    st_cache_erase(c, 1, 0); /* absent: no-op */
    assert_int_equal(deleted[0], 1);

    /* Erase of a pinned entry: gone from the cache, value alive until the release. */
    st_cache_handle *h = st_cache_insert(c, 1, 1, &deleted[1], 1, count_deleter);
    st_cache_erase(c, 1, 1);
    assert_false(present(c, 1));
    assert_int_equal(deleted[1], 0);
    assert_ptr_equal(st_cache_value(h), &deleted[1]);
    size_t usage;
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 0);
    st_cache_release(c, h);
    assert_int_equal(deleted[1], 1);

    /* Replace: the old value lives while pinned; lookups see the new one. */
    st_cache_handle *old = st_cache_insert(c, 1, 2, &deleted[2], 5, count_deleter);
    st_cache_handle *nw = st_cache_insert(c, 1, 2, &deleted[3], 7, count_deleter);
    st_cache_handle *look = st_cache_lookup(c, 1, 2);
    assert_non_null(look);
    assert_ptr_equal(st_cache_value(look), &deleted[3]);
    assert_ptr_equal(st_cache_value(old), &deleted[2]);
    st_cache_stats(c, NULL, NULL, &usage);
    assert_int_equal(usage, 7);
    assert_int_equal(deleted[2], 0);
    st_cache_release(c, old);
    assert_int_equal(deleted[2], 1);
    st_cache_release(c, look);
    st_cache_release(c, nw);
    assert_int_equal(deleted[3], 0);

    /* The id is part of the key. */
    insert_release(c, 4, 1);
    assert_null(st_cache_lookup(c, 2, 4));
    st_cache_destroy(c);
    assert_int_equal(deleted[3], 1);
    assert_int_equal(deleted[4], 1);
}

static void test_stats_ids_zero_capacity(void **state)
{
    (void)state;
    reset_counts();
    st_cache *c;
    assert_int_equal(st_cache_create(1 << 20, &c), ST_OK);
    assert_int_equal(st_cache_capacity(c), 1 << 20);
    uint64_t a = st_cache_new_id(c), b = st_cache_new_id(c);
    assert_true(a != 0 && b != 0 && a != b);
    insert_release(c, 5, 100);
    assert_true(present(c, 5));
    assert_true(present(c, 5));
    assert_false(present(c, 6));
    uint64_t hits, misses;
    size_t usage;
    st_cache_stats(c, &hits, &misses, &usage);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    assert_int_equal(usage, 100);
    st_cache_destroy(c);
    assert_int_equal(deleted[5], 1);
    st_cache_destroy(NULL);

    assert_int_equal(st_cache_create_sharded(1, 9, &c), ST_INVALID_ARGUMENT);

    /* Capacity 0 caches nothing, yet handles work. */
    assert_int_equal(st_cache_create(0, &c), ST_OK);
    st_cache_handle *h = st_cache_insert(c, 1, 7, &deleted[7], 1, count_deleter);
    assert_non_null(h);
    assert_false(present(c, 7));
    assert_int_equal(deleted[7], 0);
    st_cache_release(c, h);
    assert_int_equal(deleted[7], 1);
    st_cache_destroy(c);
    assert_int_equal(deleted[7], 1);
}

/* Sharded: many entries over 16 shards stay within capacity (plus a shard's rounding). */
static void test_sharded_capacity(void **state)
{
    (void)state;
    st_cache *c;
    assert_int_equal(st_cache_create(1600, &c), ST_OK);
    static int sink;
    for (uint64_t k = 0; k < 10000; k++) {
        st_cache_handle *h = st_cache_insert(c, 3, k, &sink, 10, NULL);
        st_cache_release(c, h);
        size_t usage;
        st_cache_stats(c, NULL, NULL, &usage);
        assert_true(usage <= 1600);
    }
    size_t usage;
    st_cache_stats(c, NULL, NULL, &usage);
    assert_true(usage >= 1000); /* the shards are all in use */
    st_cache_destroy(c);
}

/* ---- Threads ---- */

#define NTHREADS 4
#define TKEYS    256

typedef struct tval {
    uint64_t key;
    atomic_int deletes;
} tval;

static atomic_long total_inserted, total_deleted;

static void tval_deleter(void *v)
{
    tval *t = v;
    /* cmocka's asserts are not thread-safe; a second delete aborts the test program. */
    if (atomic_fetch_add(&t->deletes, 1) != 0)
        abort();
    atomic_fetch_add(&total_deleted, 1);
    free(t);
}

typedef struct targ {
    st_cache *c;
    uint64_t seed;
    long ops;
} targ;

static void *worker(void *p)
{
    targ *a = p;
    st_rng r;
    st_rng_seed(&r, a->seed);
    st_cache_handle *held[8] = {0};
    for (long i = 0; i < a->ops; i++) {
        uint64_t k = st_rng_uniform(&r, TKEYS);
        int slot = (int)st_rng_uniform(&r, 8);
        if (held[slot]) {
            /* The value under a pinned handle is stable and matches its key's family. */
            tval *v = st_cache_value(held[slot]);
            if (atomic_load(&v->deletes) != 0)
                abort();
            st_cache_release(a->c, held[slot]);
            held[slot] = NULL;
        }
        switch (st_rng_uniform(&r, 4)) {
        case 0: {
            tval *v = malloc(sizeof(*v));
            v->key = k;
            atomic_init(&v->deletes, 0);
            atomic_fetch_add(&total_inserted, 1);
            held[slot] = st_cache_insert(a->c, 9, k, v, 1 + k % 7, tval_deleter);
            break;
        }
        case 1:
        case 2:
            held[slot] = st_cache_lookup(a->c, 9, k);
            if (held[slot] && ((tval *)st_cache_value(held[slot]))->key != k)
                abort();
            break;
        default:
            st_cache_erase(a->c, 9, k);
            break;
        }
    }
    for (int s = 0; s < 8; s++)
        if (held[s])
            st_cache_release(a->c, held[s]);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    st_cache *c;
    assert_int_equal(st_cache_create(400, &c), ST_OK);
    atomic_store(&total_inserted, 0);
    atomic_store(&total_deleted, 0);
    pthread_t th[NTHREADS];
    targ args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (targ){c, seed + (uint64_t)i, (long)st_test_scaled(100000)};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    size_t usage;
    st_cache_stats(c, NULL, NULL, &usage);
    assert_true(usage <= 400 + 16 * 7);
    st_cache_destroy(c);
    /* Every value was deleted exactly once (the deleter asserts "once"). */
    assert_int_equal(atomic_load(&total_deleted), atomic_load(&total_inserted));
}

int main(void)
{
    seed = st_test_seed("cache");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_pinning),
        cmocka_unit_test(test_charge),
        cmocka_unit_test(test_erase_and_replace),
        cmocka_unit_test(test_stats_ids_zero_capacity),
        cmocka_unit_test(test_sharded_capacity),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
