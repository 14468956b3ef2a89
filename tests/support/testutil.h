/*
 * testutil.h - helpers shared by the cmocka test programs.
 *
 * Temporary directories live under $ST_TEST_TMPDIR (set by ctest to build/tests/tmp) or /tmp,
 * and are removed by st_test_rmdir. Randomized tests draw from st_rng, seeded from
 * $ST_TEST_SEED when set (to reproduce a failure) or from the clock, and print the seed first.
 */
#ifndef STRATA_TESTS_TESTUTIL_H
#define STRATA_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Make a fresh empty directory named after `tag`; returns a malloc'd path (free it). */
char *st_test_mkdtemp(const char *tag);

/* Remove a directory tree (like rm -rf). Ignores errors. */
void st_test_rmdir(const char *path);

/* Join dir and name into a malloc'd path. */
char *st_test_path(const char *dir, const char *name);

/* A small fast PRNG (splitmix64 seeded xoshiro256**). */
typedef struct st_rng {
    uint64_t s[4];
} st_rng;

void st_rng_seed(st_rng *r, uint64_t seed);
uint64_t st_rng_next(st_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t st_rng_uniform(st_rng *r, uint64_t n);
/* Fill buf with n random bytes. */
void st_rng_bytes(st_rng *r, void *buf, size_t n);

/*
 * The seed for this test run: $ST_TEST_SEED if set, else derived from the clock and pid.
 * Prints "<name>: seed=<seed> (rerun with ST_TEST_SEED=<seed>)" to stderr.
 */
uint64_t st_test_seed(const char *name);

/* Number of iterations scaled by $ST_TEST_SCALE (a float, default 1.0; minimum result 1). */
uint64_t st_test_scaled(uint64_t n);

#endif
