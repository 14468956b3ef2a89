/* test_table_cache.c - the cache of open tables: hits, capacity eviction in LRU order, references
 * that outlive eviction, explicit eviction, errors, and concurrent gets (run it under TSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/cache.h"
#include "engine/dbformat.h"
#include "engine/sst_builder.h"
#include "engine/table.h"
#include "engine/table_cache.h"
#include "tests/support/testutil.h"

static uint64_t seed;
static char *dir;
static st_env *env;

#define NTABLES  10
#define PER      200
#define FIRST_NO 10

static uint64_t dat_bytes[NTABLES];

/* Table FIRST_NO + t holds user keys "t<t>-<i>" (i < PER) at sequence i + 1, value "v<t>-<i>". */
static void key_of(char *buf, size_t cap, int t, int i)
{
    snprintf(buf, cap, "t%02d-%04d", t, i);
}

static void build_tables(void)
{
    for (int t = 0; t < NTABLES; t++) {
        st_sst_builder *b;
        assert_int_equal(st_sst_builder_create(env, dir, FIRST_NO + (uint64_t)t, NULL, &b), ST_OK);
        for (int i = 0; i < PER; i++) {
            char user[32], val[32];
            uint8_t ik[48];
            key_of(user, sizeof(user), t, i);
            snprintf(val, sizeof(val), "v%d-%d", t, i);
            uint8_t *end = st_encode_ikey(ik, st_slice_str(user), (uint64_t)i + 1, ST_KIND_PUT);
            assert_int_equal(
                st_sst_builder_add(b, st_slice_make(ik, (size_t)(end - ik)), st_slice_str(val)),
                ST_OK);
        }
        st_sst_props p;
        assert_int_equal(st_sst_builder_finish(b, &p), ST_OK);
        dat_bytes[t] = p.dat_bytes;
        st_sst_props_free(&p);
        st_sst_builder_destroy(b);
    }
}

/* Does table t answer key i correctly? (No cmocka asserts: used from threads too.) */
static bool table_ok(st_table *tb, int t, int i)
{
    char user[32], want[32];
    key_of(user, sizeof(user), t, i);
    snprintf(want, sizeof(want), "v%d-%d", t, i);
    st_lookup_key lk;
    if (!st_lookup_key_init(&lk, st_slice_str(user), ST_MAX_SEQ))
        return false;
    st_buf val;
    st_buf_init(&val);
    bool found = false;
    st_kind kind;
    uint64_t seq;
    st_status s = st_table_get(tb, st_lookup_ikey(&lk), &found, &kind, &seq, &val);
    bool ok = s == ST_OK && found && kind == ST_KIND_PUT && seq == (uint64_t)i + 1 &&
              st_slice_eq(st_slice_make(val.data, val.len), st_slice_str(want));
    st_buf_free(&val);
    st_lookup_key_free(&lk);
    return ok;
}

static st_table_options table_opts(bool mmap, st_cache *bc)
{
    st_table_options o = {env, bc, mmap};
    return o;
}

static void test_hits_and_capacity(void **state)
{
    (void)state;
    st_table_options o = table_opts(true, NULL);
    st_table_cache *tc;
    assert_int_equal(st_table_cache_create(&o, dir, 0, &tc), ST_INVALID_ARGUMENT);
    assert_int_equal(st_table_cache_create(&o, dir, 3, &tc), ST_OK);
    assert_int_equal(st_table_cache_size(tc), 0);

    /* A hit hands out the same table. */
    st_table *a, *b;
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, dat_bytes[0], &a), ST_OK);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, 0, &b), ST_OK);
    assert_ptr_equal(a, b);
    assert_true(table_ok(a, 0, 17));
    st_table_unref(a);
    st_table_unref(b);
    assert_int_equal(st_table_cache_size(tc), 1);

    /*
     * LRU order. References held by the test keep evicted tables alive, so a reopened table is
     * recognisable by its new address. Fill 0, 1, 2; touch 0; 3 comes in and 1 (the least
     * recently used) goes: [2, 0, 3].
     */
    st_table *t0, *t1, *t2, *t3, *t;
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, 0, &t0), ST_OK);
    assert_ptr_equal(t0, a);
    st_table_unref(t0);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 1, dat_bytes[1], &t1), ST_OK);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 2, dat_bytes[2], &t2), ST_OK);
    assert_int_equal(st_table_cache_size(tc), 3);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, dat_bytes[0], &t0), ST_OK);
    st_table_unref(t0);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 3, dat_bytes[3], &t3), ST_OK);
    assert_int_equal(st_table_cache_size(tc), 3);
    /* 0 and 2 are still the same open tables: [3, 0, 2]. */
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, 0, &t), ST_OK);
    assert_ptr_equal(t, t0);
    st_table_unref(t);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 2, 0, &t), ST_OK);
    assert_ptr_equal(t, t2);
    st_table_unref(t);
    /* 1 was evicted: it is opened afresh, and 3 goes: [0, 2, 1]. */
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 1, 0, &t), ST_OK);
    assert_ptr_not_equal(t, t1);
    assert_true(table_ok(t, 1, 5));
    assert_true(table_ok(t1, 1, 5)); /* the evicted copy still works for its holder */
    st_table_unref(t);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 3, 0, &t), ST_OK);
    assert_ptr_not_equal(t, t3);
    st_table_unref(t);
    assert_int_equal(st_table_cache_size(tc), 3);
    st_table_unref(t1);
    st_table_unref(t2);
    st_table_unref(t3);

    /* Going through all ten keeps the size at the capacity. */
    for (int i = 0; i < NTABLES; i++) {
        assert_int_equal(st_table_cache_get(tc, FIRST_NO + (uint64_t)i, dat_bytes[i], &t), ST_OK);
        assert_true(table_ok(t, i, i * 7 % PER));
        st_table_unref(t);
        assert_true(st_table_cache_size(tc) <= 3);
    }
    assert_int_equal(st_table_cache_size(tc), 3);
    st_table_cache_destroy(tc);
    st_table_cache_destroy(NULL);
}

static void test_refs_outlive_eviction(void **state)
{
    (void)state;
    st_cache *bc;
    assert_int_equal(st_cache_create(1 << 20, &bc), ST_OK);
    st_table_options o = table_opts(false, bc);
    st_table_cache *tc;
    assert_int_equal(st_table_cache_create(&o, dir, 2, &tc), ST_OK);

    st_table *held;
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 4, dat_bytes[4], &held), ST_OK);
    st_iterator *it = st_table_iter(held);
    /* Push it out by capacity... */
    for (int i = 5; i < 9; i++) {
        st_table *t;
        assert_int_equal(st_table_cache_get(tc, FIRST_NO + (uint64_t)i, 0, &t), ST_OK);
        st_table_unref(t);
    }
    assert_int_equal(st_table_cache_size(tc), 2);
    /* ...and explicitly; the table stays usable for whoever holds it. */
    st_table_cache_evict(tc, FIRST_NO + 4);
    st_table_cache_evict(tc, FIRST_NO + 8);
    st_table_cache_evict(tc, 999); /* absent: no-op */
    assert_int_equal(st_table_cache_size(tc), 1);
    for (int i = 0; i < PER; i++)
        assert_true(table_ok(held, 4, i));
    st_table_unref(held);
    /* The iterator holds its own reference. */
    int n = 0;
    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
        n++;
    assert_int_equal(n, PER);
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);

    /* Destroying the cache while a table is out leaves that table open. */
    st_table *t;
    assert_int_equal(st_table_cache_get(tc, FIRST_NO + 7, 0, &t), ST_OK);
    st_table_cache_destroy(tc);
    for (int i = 0; i < PER; i += 13)
        assert_true(table_ok(t, 7, i));
    st_table_unref(t);
    /* Every table is closed now, and their blocks have left the block cache. */
    size_t usage;
    st_cache_stats(bc, NULL, NULL, &usage);
    assert_int_equal(usage, 0);
    st_cache_destroy(bc);
}

static void test_errors(void **state)
{
    (void)state;
    st_table_options o = table_opts(true, NULL);
    st_table_cache *tc;
    assert_int_equal(st_table_cache_create(&o, dir, 4, &tc), ST_OK);
    st_table *t = NULL;
    /* Missing table: CORRUPTION naming the file, nothing cached. */
    assert_int_equal(st_table_cache_get(tc, 777, 0, &t), ST_CORRUPTION);
    assert_null(t);
    assert_non_null(strstr(st_errmsg(), "000777"));
    assert_int_equal(st_table_cache_size(tc), 0);
    /* A size the caller did not expect: on a miss (open) and on a hit. */
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, dat_bytes[0] + 1, &t), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "000010.dat"));
    assert_int_equal(st_table_cache_size(tc), 0);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, dat_bytes[0], &t), ST_OK);
    st_table_unref(t);
    assert_int_equal(st_table_cache_get(tc, FIRST_NO, dat_bytes[0] + 1, &t), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "000010.dat"));
    assert_int_equal(st_table_cache_size(tc), 1);
    st_table_cache_destroy(tc);
}

/* ---- Threads ---- */

typedef struct worker_arg {
    st_table_cache *tc;
    uint64_t seed;
    int ops;
    int failures;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    st_rng r;
    st_rng_seed(&r, a->seed);
    for (int k = 0; k < a->ops; k++) {
        int t = (int)st_rng_uniform(&r, NTABLES);
        st_table *tb;
        if (st_table_cache_get(a->tc, FIRST_NO + (uint64_t)t, dat_bytes[t], &tb) != ST_OK) {
            a->failures++;
            continue;
        }
        if (!table_ok(tb, t, (int)st_rng_uniform(&r, PER)))
            a->failures++;
        if (st_rng_uniform(&r, 50) == 0)
            st_table_cache_evict(a->tc, FIRST_NO + (uint64_t)t);
        st_table_unref(tb);
    }
    return NULL;
}

static void run_concurrent(bool mmap, st_cache *bc, int capacity)
{
    st_table_options o = table_opts(mmap, bc);
    st_table_cache *tc;
    assert_int_equal(st_table_cache_create(&o, dir, capacity, &tc), ST_OK);
    enum { NT = 4 };
    pthread_t th[NT];
    worker_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (worker_arg){tc, seed + (uint64_t)i, (int)st_test_scaled(5000), 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_true(st_table_cache_size(tc) <= (uint32_t)capacity);
    st_table_cache_destroy(tc);
}

static void test_concurrent_gets(void **state)
{
    (void)state;
    /* Capacity below the working set: misses, duplicate opens and evictions race. */
    run_concurrent(true, NULL, 4);
    st_cache *bc;
    assert_int_equal(st_cache_create(256 << 10, &bc), ST_OK);
    run_concurrent(false, bc, 3);
    run_concurrent(false, bc, 20);
    size_t usage;
    st_cache_stats(bc, NULL, NULL, &usage);
    assert_int_equal(usage, 0); /* all tables closed: their blocks are gone */
    st_cache_destroy(bc);
}

static int setup(void **state)
{
    (void)state;
    env = st_env_posix();
    dir = st_test_mkdtemp("table_cache");
    build_tables();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    st_test_rmdir(dir);
    free(dir);
    return 0;
}

int main(void)
{
    seed = st_test_seed("table_cache");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits_and_capacity),
        cmocka_unit_test(test_refs_outlive_eviction),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_concurrent_gets),
    };
    return cmocka_run_group_tests_name("table_cache", tests, setup, teardown);
}
