/* test_bloom.c - Bloom filters: no false negatives, ~1% false positives at 10 bits/key, k, and
 * filters that do not parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "engine/bloom.h"
#include "engine/sst_format.h"
#include "tests/support/testutil.h"

static uint64_t seed;

/* Key i of a family: 4..19 random-looking bytes, NUL and 0xFF included, distinct per i. */
static size_t make_key(uint8_t *buf, uint64_t family, uint64_t i)
{
    st_rng r;
    st_rng_seed(&r, seed ^ (family * 0x9E3779B97F4A7C15ull) ^ (i * 0xD1B54A32D192ED03ull));
    size_t len = 4 + (size_t)st_rng_uniform(&r, 16);
    st_rng_bytes(&r, buf, len);
    /* The index itself goes in, so keys of one family never collide. */
    for (int b = 0; b < 4; b++)
        buf[b] = (uint8_t)(i >> (8 * b)) ^ (uint8_t)family;
    return len;
}

static void build(uint64_t family, size_t n, int bpk, st_buf *filter)
{
    uint8_t(*bufs)[20] = malloc(n * sizeof(*bufs) + 1);
    st_slice *keys = malloc(n * sizeof(*keys) + 1);
    assert_non_null(bufs);
    assert_non_null(keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = st_slice_make(bufs[i], make_key(bufs[i], family, i));
    st_buf_init(filter);
    assert_true(st_bloom_build(keys, n, bpk, filter));
    free(keys);
    free(bufs);
}

static void test_no_false_negatives(void **state)
{
    (void)state;
    size_t sizes[] = {1, 10, 100, 1000, 10000};
    int bpks[] = {1, 5, 10, 20};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        for (size_t bi = 0; bi < sizeof(bpks) / sizeof(bpks[0]); bi++) {
            st_buf f;
            build(1, sizes[si], bpks[bi], &f);
            st_slice filter = st_slice_make(f.data, f.len);
            for (size_t i = 0; i < sizes[si]; i++) {
                uint8_t k[20];
                st_slice key = st_slice_make(k, make_key(k, 1, i));
                assert_true(st_bloom_may_contain(filter, key));
                assert_true(st_bloom_may_contain_hash(filter, st_bloom_hash(key)));
            }
            st_buf_free(&f);
        }
    }
}

static double fp_rate(size_t n, int bpk, size_t probes)
{
    st_buf f;
    build(2, n, bpk, &f);
    st_slice filter = st_slice_make(f.data, f.len);
    size_t fp = 0;
    for (size_t i = 0; i < probes; i++) {
        uint8_t k[20];
        /* Family 3 keys are absent (their first bytes differ from family 2's). */
        if (st_bloom_may_contain(filter, st_slice_make(k, make_key(k, 3, i))))
            fp++;
    }
    st_buf_free(&f);
    return (double)fp / (double)probes;
}

static void test_false_positive_rate(void **state)
{
    (void)state;
    double r10 = fp_rate(10000, 10, 200000);
    fprintf(stderr, "bloom: 10 bits/key over 10k keys: %.3f%% false positives\n", 100 * r10);
    /* Theory says 0.82% for k = 7; allow for the hash and the sample. */
    assert_true(r10 > 0.003);
    assert_true(r10 < 0.015);
    double r20 = fp_rate(10000, 20, 200000);
    fprintf(stderr, "bloom: 20 bits/key: %.4f%%\n", 100 * r20);
    assert_true(r20 < 0.001);
    double r5 = fp_rate(10000, 5, 200000);
    fprintf(stderr, "bloom: 5 bits/key: %.2f%%\n", 100 * r5);
    assert_true(r5 > r10 && r5 < 0.15);
}

static void test_k_and_size(void **state)
{
    (void)state;
    assert_int_equal(st_bloom_k(10), 7);
    assert_int_equal(st_bloom_k(1), 1);
    assert_int_equal(st_bloom_k(0), 1);
    assert_int_equal(st_bloom_k(3), 2);
    assert_int_equal(st_bloom_k(44), 30);
    assert_int_equal(st_bloom_k(1000), 30);

    st_buf f;
    build(4, 1000, 10, &f);
    assert_int_equal(f.len, 1000 * 10 / 8 + 1);
    assert_int_equal(f.data[f.len - 1], 7);
    st_buf_free(&f);

    /* Tiny sets get the minimum size; an empty set answers "no" to everything. */
    build(4, 0, 10, &f);
    assert_int_equal(f.len, ST_BLOOM_MIN_BYTES + 1);
    uint8_t k[20];
    for (uint64_t i = 0; i < 100; i++)
        assert_false(st_bloom_may_contain(st_slice_make(f.data, f.len),
                                          st_slice_make(k, make_key(k, 5, i))));
    st_buf_free(&f);

    /* bits_per_key <= 0 builds the empty filter, which answers "maybe". */
    build(4, 100, 0, &f);
    assert_int_equal(f.len, 0);
    assert_true(st_bloom_may_contain(st_slice_make(NULL, 0), st_slice_str("anything")));
    st_buf_free(&f);

    /* The filter is appended after what the buffer holds. */
    st_buf_init(&f);
    assert_true(st_buf_append(&f, "xyz", 3));
    st_slice one = st_slice_str("one");
    assert_true(st_bloom_build(&one, 1, 10, &f));
    assert_memory_equal(f.data, "xyz", 3);
    assert_true(st_bloom_may_contain(st_slice_make(f.data + 3, f.len - 3), one));
    st_buf_free(&f);
}

static void test_unparsable_filters_say_maybe(void **state)
{
    (void)state;
    st_buf f;
    build(6, 500, 10, &f);
    st_slice filter = st_slice_make(f.data, f.len);
    uint8_t k[20];
    /* Find an absent key the filter rejects, then break the filter in ways that must say maybe. */
    st_slice absent = {0};
    uint64_t i;
    for (i = 0; i < 1000; i++) {
        absent = st_slice_make(k, make_key(k, 7, i));
        if (!st_bloom_may_contain(filter, absent))
            break;
    }
    assert_true(i < 1000);
    assert_true(st_bloom_may_contain(st_slice_make(f.data, 0), absent));
    assert_true(st_bloom_may_contain(st_slice_make(f.data, 1), absent));
    assert_true(st_bloom_may_contain(st_slice_make(f.data, ST_BLOOM_MIN_BYTES), absent));
    uint8_t kbyte = f.data[f.len - 1];
    f.data[f.len - 1] = 0;
    assert_true(st_bloom_may_contain(filter, absent));
    f.data[f.len - 1] = ST_BLOOM_MAX_K + 1;
    assert_true(st_bloom_may_contain(filter, absent));
    f.data[f.len - 1] = 0xff;
    assert_true(st_bloom_may_contain(filter, absent));
    f.data[f.len - 1] = kbyte;
    assert_false(st_bloom_may_contain(filter, absent));
    st_buf_free(&f);
}

int main(void)
{
    seed = st_test_seed("bloom");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_false_negatives),
        cmocka_unit_test(test_false_positive_rate),
        cmocka_unit_test(test_k_and_size),
        cmocka_unit_test(test_unparsable_filters_say_maybe),
    };
    return cmocka_run_group_tests_name("bloom", tests, NULL, NULL);
}
