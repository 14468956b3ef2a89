/*
 * test_skiplist.c - the skiplist against a sorted model, and one writer racing three readers.
 *
 * Keys are 16 bytes: a uint64 key number and a check word derived from it, so a reader that saw a
 * half-written key would notice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/arena.h"
#include "engine/skiplist.h"
#include "tests/support/testutil.h"

typedef struct tkey {
    uint64_t k;
    uint64_t check;
} tkey;

static uint64_t check_of(uint64_t k)
{
    uint64_t x = k * UINT64_C(0x9E3779B97F4A7C15);
    return x ^ (x >> 29) ^ UINT64_C(0x5bd1e995);
}

static int key_cmp(void *ctx, const void *a, const void *b)
{
    int *calls = ctx;
    if (calls)
        (*calls)++;
    uint64_t x = ((const tkey *)a)->k, y = ((const tkey *)b)->k;
    return (x > y) - (x < y);
}

/* A probe that is a bare uint64, to exercise seek_probe. */
static int probe_cmp(void *ctx, const void *key, const void *probe)
{
    (void)ctx;
    uint64_t x = ((const tkey *)key)->k, y = *(const uint64_t *)probe;
    return (x > y) - (x < y);
}

static void insert_key(st_skiplist *sl, uint64_t k)
{
    tkey *t = st_skiplist_alloc(sl, sizeof(tkey));
    assert_non_null(t);
    assert_int_equal((uintptr_t)t % ST_ARENA_ALIGN, 0);
    t->k = k;
    t->check = check_of(k);
    /* Odd and even key numbers take the two insert paths; both must give the same order. */
    if ((k >> 1) & 1)
        st_skiplist_insert_probe(sl, t, &t->k, probe_cmp, NULL);
    else
        st_skiplist_insert(sl, t);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Index of the first model key >= k. */
static size_t lower_bound(const uint64_t *model, size_t n, uint64_t k)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (model[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint64_t it_k(const st_skiplist_iter *it)
{
    const tkey *t = st_skiplist_iter_key(it);
    assert_true(t->check == check_of(t->k));
    return t->k;
}

static void test_empty(void **state)
{
    (void)state;
    st_arena *a;
    st_skiplist *sl;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_int_equal(st_skiplist_create(a, key_cmp, NULL, &sl), ST_OK);
    tkey t = {10, check_of(10)};
    assert_false(st_skiplist_contains(sl, &t));
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, sl);
    assert_false(st_skiplist_iter_valid(&it));
    st_skiplist_iter_seek_first(&it);
    assert_false(st_skiplist_iter_valid(&it));
    st_skiplist_iter_seek_last(&it);
    assert_false(st_skiplist_iter_valid(&it));
    st_skiplist_iter_seek(&it, &t);
    assert_false(st_skiplist_iter_valid(&it));
    st_skiplist_destroy(sl);
    st_skiplist_destroy(NULL);
    st_arena_destroy(a);
}

static void test_against_model(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("skiplist_model");
    st_rng rng;
    st_rng_seed(&rng, seed);

    st_arena *a;
    st_skiplist *sl;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_int_equal(st_skiplist_create(a, key_cmp, NULL, &sl), ST_OK);

    /* Even key numbers below 20000, so odd ones are known absent. */
    enum { N = 6000, RANGE = 10000 };
    uint64_t *model = malloc(N * sizeof(uint64_t));
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        uint64_t k = 2 * st_rng_uniform(&rng, RANGE);
        tkey probe = {k, 0};
        bool had = st_skiplist_contains(sl, &probe);
        bool in_model = false;
        for (size_t j = 0; j < n && !in_model; j++)
            in_model = model[j] == k;
        assert_int_equal(had, in_model);
        if (!had) {
            insert_key(sl, k);
            model[n++] = k;
            assert_true(st_skiplist_contains(sl, &probe));
        }
    }
    qsort(model, n, sizeof(uint64_t), u64_cmp);

    /* contains: every present key, and the absent odd ones. */
    for (size_t i = 0; i < n; i++) {
        tkey p = {model[i], 0}, q = {model[i] + 1, 0};
        assert_true(st_skiplist_contains(sl, &p));
        assert_false(st_skiplist_contains(sl, &q));
    }

    /* Full scans both ways. */
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, sl);
    size_t i = 0;
    for (st_skiplist_iter_seek_first(&it); st_skiplist_iter_valid(&it); st_skiplist_iter_next(&it))
        assert_true(it_k(&it) == model[i++]);
    assert_int_equal(i, n);
    i = n;
    for (st_skiplist_iter_seek_last(&it); st_skiplist_iter_valid(&it); st_skiplist_iter_prev(&it))
        assert_true(it_k(&it) == model[--i]);
    assert_int_equal(i, 0);

    /* Seeks to present and absent keys, then short walks both ways. */
    for (int round = 0; round < 2000; round++) {
        uint64_t target = st_rng_uniform(&rng, 2 * RANGE + 4);
        size_t pos = lower_bound(model, n, target);
        if (round & 1) {
            tkey t = {target, 0};
            st_skiplist_iter_seek(&it, &t);
        } else {
            st_skiplist_iter_seek_probe(&it, &target, probe_cmp, NULL);
        }
        if (pos == n) {
            assert_false(st_skiplist_iter_valid(&it));
            continue;
        }
        assert_true(st_skiplist_iter_valid(&it));
        assert_true(it_k(&it) == model[pos]);
        int steps = (int)st_rng_uniform(&rng, 8);
        bool forward = st_rng_uniform(&rng, 2);
        for (int s = 0; s < steps; s++) {
            if (forward) {
                st_skiplist_iter_next(&it);
                pos++;
            } else {
                st_skiplist_iter_prev(&it);
                if (pos == 0) {
                    assert_false(st_skiplist_iter_valid(&it));
                    break;
                }
                pos--;
            }
            if (pos == n) {
                assert_false(st_skiplist_iter_valid(&it));
                break;
            }
            assert_true(it_k(&it) == model[pos]);
        }
    }
    free(model);
    st_skiplist_destroy(sl);
    st_arena_destroy(a);
}

/* Search work is logarithmic: the heights are doing their job. */
static void test_logarithmic(void **state)
{
    (void)state;
    int calls = 0;
    st_arena *a;
    st_skiplist *sl;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_int_equal(st_skiplist_create(a, key_cmp, &calls, &sl), ST_OK);
    enum { N = 50000 };
    for (uint64_t k = 0; k < N; k++)
        insert_key(sl, (k * 7919) % N); /* a permutation */
    calls = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        tkey t = {k * 37, 0};
        assert_true(st_skiplist_contains(sl, &t));
    }
    /* log4(50000) ~ 8 levels, a few comparisons each; a list would need ~25000 per search. */
    printf("skiplist: %.1f comparisons per search over %d keys\n", calls / 1000.0, N);
    assert_true(calls / 1000 < 100);
    st_skiplist_destroy(sl);
    st_arena_destroy(a);
}

/* Equal keys may be inserted; each new one goes first, and iteration visits all of them. */
static int dup_cmp(void *ctx, const void *a, const void *b)
{
    (void)ctx;
    uint64_t x = ((const tkey *)a)->k >> 8, y = ((const tkey *)b)->k >> 8;
    return (x > y) - (x < y);
}

static void test_equal_keys(void **state)
{
    (void)state;
    st_arena *a;
    st_skiplist *sl;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    /* Compares only k >> 8: keys 0x100, 0x101, 0x102 are equal. */
    assert_int_equal(st_skiplist_create(a, dup_cmp, NULL, &sl), ST_OK);
    uint64_t order[] = {0x300, 0x100, 0x101, 0x200, 0x102, 0x400};
    for (size_t i = 0; i < 6; i++) {
        /* insert_key's probe path orders by the whole number: not this list's order. */
        tkey *t = st_skiplist_alloc(sl, sizeof(tkey));
        assert_non_null(t);
        t->k = order[i];
        t->check = check_of(order[i]);
        st_skiplist_insert(sl, t);
    }
    uint64_t want[] = {0x102, 0x101, 0x100, 0x200, 0x300, 0x400};
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, sl);
    size_t i = 0;
    for (st_skiplist_iter_seek_first(&it); st_skiplist_iter_valid(&it); st_skiplist_iter_next(&it))
        assert_true(it_k(&it) == want[i++]);
    assert_int_equal(i, 6);
    for (st_skiplist_iter_seek_last(&it); st_skiplist_iter_valid(&it); st_skiplist_iter_prev(&it))
        assert_true(it_k(&it) == want[--i]);
    assert_int_equal(i, 0);
    st_skiplist_destroy(sl);
    st_arena_destroy(a);
}

/* ---- one writer, three readers ---- */

enum { CONC_KEYS = 40000, READERS = 3 };

/* Key number i is the i-th key inserted: the mapping is a bijection (odd multiplier), so a
   reader can tell from a key which insert put it there. */
#define MULT     UINT64_C(0x9E3779B97F4A7C15)
#define MULT_INV UINT64_C(0xF1DE83E19937733D)

typedef struct shared {
    st_skiplist *sl;
    _Atomic uint64_t started; /* inserts begun: key i may be visible once started > i */
    _Atomic uint64_t done;    /* inserts finished: key i must be visible once done > i */
    _Atomic bool stop;
    _Atomic uint64_t passes;
    _Atomic uint64_t overlapped; /* passes that began while the writer was mid-way */
    _Atomic int errors;
} shared;

static void *writer_main(void *arg)
{
    shared *sh = arg;
    for (uint64_t i = 0; i < CONC_KEYS; i++) {
        uint64_t k = i * MULT;
        tkey *t = st_skiplist_alloc(sh->sl, sizeof(tkey));
        if (!t) {
            atomic_fetch_add(&sh->errors, 1);
            break;
        }
        atomic_store_explicit(&sh->started, i + 1, memory_order_release);
        t->k = k;
        t->check = check_of(k);
        st_skiplist_insert(sh->sl, t);
        atomic_store_explicit(&sh->done, i + 1, memory_order_release);
    }
    atomic_store(&sh->stop, true);
    return NULL;
}

static void *reader_main(void *arg)
{
    shared *sh = arg;
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, sh->sl);
    uint64_t rng = (uint64_t)(uintptr_t)&it;
    int bad = 0;
    bool last_pass = false;
    /* Scans of the empty list prove little: wait for the writer. */
    while (atomic_load(&sh->started) == 0)
        sched_yield();
    while (!last_pass && !bad) {
        last_pass = atomic_load(&sh->stop);
        uint64_t must = atomic_load_explicit(&sh->done, memory_order_acquire);
        if (must > 0 && must < CONC_KEYS)
            atomic_fetch_add(&sh->overlapped, 1);
        /* Alternate full scans (which must see every finished insert) and short seeks. */
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        bool full = (rng >> 33) % 4 != 0 || last_pass;
        uint64_t from = full ? 0 : rng;
        size_t seen_old = 0;
        uint64_t prev_k = 0;
        bool have_prev = false;
        if (full) {
            st_skiplist_iter_seek_first(&it);
        } else {
            tkey t = {from, 0};
            st_skiplist_iter_seek(&it, &t);
        }
        for (int steps = 0; st_skiplist_iter_valid(&it); st_skiplist_iter_next(&it), steps++) {
            if (!full && steps == 200)
                break;
            const tkey *t = st_skiplist_iter_key(&it);
            uint64_t k = t->k;
            if (t->check != check_of(k))
                bad++; /* a key seen before it was written */
            uint64_t idx = k * MULT_INV;
            uint64_t started = atomic_load_explicit(&sh->started, memory_order_acquire);
            if (idx >= started)
                bad++; /* a key nobody inserted (yet) */
            if (have_prev && k <= prev_k)
                bad++; /* out of order */
            if (!full && k < from)
                bad++; /* seek landed before its target */
            if (idx < must)
                seen_old++;
            prev_k = k;
            have_prev = true;
        }
        if (full && seen_old != must)
            bad++; /* an insert that had finished before the scan is missing */
        atomic_fetch_add(&sh->passes, 1);
    }
    if (bad)
        atomic_fetch_add(&sh->errors, bad);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    assert_true(MULT * MULT_INV == 1);
    st_arena *a;
    shared sh;
    memset(&sh, 0, sizeof(sh));
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_int_equal(st_skiplist_create(a, key_cmp, NULL, &sh.sl), ST_OK);
    atomic_init(&sh.started, 0);
    atomic_init(&sh.done, 0);
    atomic_init(&sh.stop, false);
    atomic_init(&sh.passes, 0);
    atomic_init(&sh.overlapped, 0);
    atomic_init(&sh.errors, 0);

    pthread_t readers[READERS], writer;
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, reader_main, &sh), 0);
    assert_int_equal(pthread_create(&writer, NULL, writer_main, &sh), 0);
    assert_int_equal(pthread_join(writer, NULL), 0);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_join(readers[i], NULL), 0);
    printf("skiplist: %llu reader passes, %llu of them while %d inserts were under way\n",
           (unsigned long long)atomic_load(&sh.passes),
           (unsigned long long)atomic_load(&sh.overlapped), CONC_KEYS);
    assert_int_equal(atomic_load(&sh.errors), 0);
    assert_true(atomic_load(&sh.passes) >= READERS);

    /* Afterwards, the list holds exactly the inserted keys in order. */
    st_skiplist_iter it;
    st_skiplist_iter_init(&it, sh.sl);
    size_t count = 0;
    uint64_t prev_k = 0;
    for (st_skiplist_iter_seek_first(&it); st_skiplist_iter_valid(&it);
         st_skiplist_iter_next(&it), count++) {
        uint64_t k = it_k(&it);
        assert_true(count == 0 || k > prev_k);
        prev_k = k;
    }
    assert_int_equal(count, CONC_KEYS);
    st_skiplist_destroy(sh.sl);
    st_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),       cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_logarithmic), cmocka_unit_test(test_equal_keys),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests_name("skiplist", tests, NULL, NULL);
}
