/* test_arena.c - the bump allocator: alignment, large requests, usage accounting, failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "engine/arena.h"
#include "tests/support/testutil.h"

/*
 * test_out_of_memory asks for more memory than exists. The sanitizers' allocators abort on such a
 * request unless told to return NULL like malloc does; these hooks tell them.
 */
const char *__asan_default_options(void);
const char *__tsan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void test_create_destroy(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_non_null(a);
    assert_int_equal(st_arena_usage(a), 0); /* no block before the first allocation */
    st_arena_destroy(a);
    st_arena_destroy(NULL);
}

static void test_alignment(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_true(ST_ARENA_ALIGN >= sizeof(void *) && ST_ARENA_ALIGN >= 8);
    assert_int_equal(ST_ARENA_ALIGN & (ST_ARENA_ALIGN - 1), 0);
    uint64_t seed = st_test_seed("arena_alignment");
    st_rng rng;
    st_rng_seed(&rng, seed);
    for (int i = 0; i < 20000; i++) {
        /* Odd-sized unaligned allocations in between make the aligned ones need padding. */
        size_t odd = 1 + (size_t)st_rng_uniform(&rng, 13);
        char *u = st_arena_alloc(a, odd);
        assert_non_null(u);
        memset(u, 0xab, odd);
        size_t n = (size_t)st_rng_uniform(&rng, 3000);
        char *p = st_arena_alloc_aligned(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % ST_ARENA_ALIGN, 0);
        /* The previous unaligned region is not overlapped by the padding or the new region. */
        assert_true(p + n <= u || p >= u + odd);
        if (n)
            memset(p, 0xcd, n);
        assert_int_equal((unsigned char)u[odd - 1], 0xab);
    }
    st_arena_destroy(a);
}

/* Allocations never overlap and keep their contents until destroy. */
static void test_contents_survive(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(256, &a), ST_OK);
    uint64_t seed = st_test_seed("arena_contents");
    st_rng rng;
    st_rng_seed(&rng, seed);
    enum { N = 5000 };
    static unsigned char *ptrs[N];
    static size_t sizes[N];
    for (int i = 0; i < N; i++) {
        /* Mostly small, sometimes larger than a quarter block, sometimes larger than a block. */
        uint64_t pick = st_rng_uniform(&rng, 10);
        size_t n = pick < 7   ? (size_t)st_rng_uniform(&rng, 40)
                   : pick < 9 ? (size_t)(65 + i % 200)
                              : 1000;
        ptrs[i] = (i & 1) ? st_arena_alloc(a, n) : st_arena_alloc_aligned(a, n);
        sizes[i] = n;
        assert_non_null(ptrs[i]);
        memset(ptrs[i], (int)(i & 0xff), n);
    }
    for (int i = 0; i < N; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(ptrs[i][j], (unsigned char)(i & 0xff));
    }
    /* Zero-byte requests still get distinct usable memory. */
    char *z1 = st_arena_alloc(a, 0), *z2 = st_arena_alloc(a, 0);
    assert_non_null(z1);
    assert_non_null(z2);
    assert_ptr_not_equal(z1, z2);
    st_arena_destroy(a);
}

static void test_usage_grows(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    size_t total = 0, last = 0;
    for (int i = 0; i < 10000; i++) {
        size_t n = 1 + (size_t)(i % 300);
        assert_non_null(st_arena_alloc(a, n));
        total += n;
        size_t u = st_arena_usage(a);
        assert_true(u >= last);  /* never decreases */
        assert_true(u >= total); /* covers everything handed out */
        last = u;
    }
    /* Blocks are 4 KiB, so the waste at block ends is small: well under 10%. */
    assert_true(last < total + total / 10 + ST_ARENA_BLOCK_SIZE);
    st_arena_destroy(a);
}

static void test_large_blocks(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    char *small1 = st_arena_alloc(a, 16);
    assert_non_null(small1);
    size_t before = st_arena_usage(a);
    assert_true(before >= ST_ARENA_BLOCK_SIZE);

    /* A request above a quarter block gets its own block of (about) its own size ... */
    size_t big = 1 << 20;
    char *p = st_arena_alloc_aligned(a, big);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % ST_ARENA_ALIGN, 0);
    memset(p, 0x5a, big);
    size_t after = st_arena_usage(a);
    assert_true(after >= before + big);
    assert_true(after < before + big + 64);

    /* ... and the current block keeps serving small requests: no new block for them. */
    char *small2 = st_arena_alloc(a, 16);
    assert_non_null(small2);
    assert_ptr_equal(small2, small1 + 16);
    assert_int_equal(st_arena_usage(a), after);

    /* Leave 1064 bytes in the current block. A request that does not fit and is over a quarter
       block gets its own block of its own size; the current block still serves what fits. */
    char *mid = st_arena_alloc(a, 3000);
    assert_ptr_equal(mid, small2 + 16);
    size_t u0 = st_arena_usage(a);
    assert_non_null(st_arena_alloc(a, 1100));
    size_t u1 = st_arena_usage(a);
    assert_true(u1 >= u0 + 1100 && u1 < u0 + 1100 + 64);
    assert_ptr_equal(st_arena_alloc(a, 1040), mid + 3000);
    assert_int_equal(st_arena_usage(a), u1);
    /* A small request that does not fit starts a new standard block. */
    assert_non_null(st_arena_alloc(a, 100));
    size_t u2 = st_arena_usage(a);
    assert_true(u2 >= u1 + ST_ARENA_BLOCK_SIZE && u2 < u1 + ST_ARENA_BLOCK_SIZE + 64);
    st_arena_destroy(a);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    st_arena *a;
    assert_int_equal(st_arena_create(0, &a), ST_OK);
    assert_non_null(st_arena_alloc(a, 10));
    size_t u = st_arena_usage(a);
    /* Sizes that overflow the block header, and one no allocator can satisfy. */
    assert_null(st_arena_alloc(a, SIZE_MAX));
    assert_null(st_arena_alloc_aligned(a, SIZE_MAX - 3));
    assert_null(st_arena_alloc(a, SIZE_MAX / 2));
    assert_int_equal(st_arena_usage(a), u);
    /* The arena stays usable. */
    char *p = st_arena_alloc_aligned(a, 100);
    assert_non_null(p);
    memset(p, 1, 100);
    st_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_destroy),   cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_contents_survive), cmocka_unit_test(test_usage_grows),
        cmocka_unit_test(test_large_blocks),     cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
