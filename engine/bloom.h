/*
 * bloom.h - Bloom filters over user keys, as stored in a table's .meta (engine/format/sst.md).
 *
 * A filter is `bits[m] k` (m >= ST_BLOOM_MIN_BYTES bytes of bits, then the probe count k). Keys
 * are hashed once with XXH3_64bits; the k probe positions come from double hashing of the two
 * 32-bit halves. With bits_per_key b, k = round(b * ln 2) clamped to 1..30, which gives about 1%
 * false positives at b = 10 and never a false negative.
 *
 * A filter is plain bytes, read by any number of threads at once. A filter that does not parse
 * (too short, k out of range, or empty, which is what bits_per_key <= 0 builds) answers "maybe".
 */
#ifndef STRATA_ENGINE_BLOOM_H
#define STRATA_ENGINE_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/coding.h"
#include "engine/slice.h"

/* The hash a filter is built from and probed with (XXH3_64bits of the key bytes). */
uint64_t st_bloom_hash(st_slice user_key);

/* k for a given bits_per_key: round(bits_per_key * ln 2), clamped to 1..30. */
int st_bloom_k(int bits_per_key);

/*
 * Append to dst the filter of n keys given by their st_bloom_hash values (borrowed; duplicates
 * are harmless but cost bits). bits_per_key <= 0 appends nothing (the empty filter: "maybe" for
 * every key). Returns false only if dst cannot grow (dst then holds what it held before).
 */
bool st_bloom_build_hashes(const uint64_t *hashes, size_t n, int bits_per_key, st_buf *dst);

/* The same from the keys themselves (borrowed). */
bool st_bloom_build(const st_slice *keys, size_t n, int bits_per_key, st_buf *dst);

/* False only if user_key was certainly not among the keys the filter was built from. */
bool st_bloom_may_contain(st_slice filter, st_slice user_key);

/* The same with the key's st_bloom_hash computed by the caller (to probe many filters). */
bool st_bloom_may_contain_hash(st_slice filter, uint64_t hash);

#endif
