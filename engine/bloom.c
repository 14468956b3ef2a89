/* bloom.c - Bloom filters with XXH3 and double hashing. */
#include "engine/bloom.h"

#include <stdlib.h>
#include <xxhash.h>

#include "engine/sst_format.h"

uint64_t st_bloom_hash(st_slice user_key)
{
    return XXH3_64bits(user_key.len ? (const void *)user_key.data : "", user_key.len);
}

int st_bloom_k(int bits_per_key)
{
    /*
     * ln 2 minimises the false positive rate for a given number of bits per key. Integer
     * arithmetic (ln 2 ≈ 0.693147) rounds the same as lround for every int we can see here and
     * keeps libm out of the engine; past 44 bits per key k is 30 anyway.
     */
    long b = bits_per_key > 100 ? 100 : bits_per_key;
    long k = (b * 693147 + 500000) / 1000000;
    if (k < ST_BLOOM_MIN_K)
        k = ST_BLOOM_MIN_K;
    if (k > ST_BLOOM_MAX_K)
        k = ST_BLOOM_MAX_K;
    return (int)k;
}

/*
 * Map a 32-bit probe value onto [0, nbits) by multiply-shift instead of a division ("fastrange"):
 * it uses the high bits of the probe, which double hashing mixes as well as the low ones.
 */
static inline uint32_t probe_bit(uint32_t g, uint32_t nbits)
{
    return (uint32_t)(((uint64_t)g * nbits) >> 32);
}

bool st_bloom_build_hashes(const uint64_t *hashes, size_t n, int bits_per_key, st_buf *dst)
{
    if (bits_per_key <= 0)
        return true;
    int k = st_bloom_k(bits_per_key);
    /*
     * Bit positions are 32-bit, so a filter tops out at 2^32 - 64 bits (512 MiB); past that the
     * false positive rate grows instead of the filter.
     */
    uint64_t bits = (uint64_t)n * (uint64_t)bits_per_key;
    if (bits < ST_BLOOM_MIN_BYTES * 8)
        bits = ST_BLOOM_MIN_BYTES * 8;
    if (bits > UINT32_MAX - 63)
        bits = UINT32_MAX - 63;
    size_t bytes = (size_t)((bits + 7) / 8);
    uint32_t nbits = (uint32_t)(bytes * 8);
    if (!st_buf_reserve(dst, bytes + 1))
        return false;
    uint8_t *array = dst->data + dst->len;
    memset(array, 0, bytes);
    for (size_t i = 0; i < n; i++) {
        uint32_t h1 = (uint32_t)hashes[i];
        uint32_t h2 = (uint32_t)(hashes[i] >> 32);
        for (int j = 0; j < k; j++) {
            uint32_t pos = probe_bit(h1, nbits);
            array[pos >> 3] |= (uint8_t)(1u << (pos & 7));
            h1 += h2;
        }
    }
    array[bytes] = (uint8_t)k;
    dst->len += bytes + 1;
    return true;
}

bool st_bloom_build(const st_slice *keys, size_t n, int bits_per_key, st_buf *dst)
{
    if (bits_per_key <= 0)
        return true;
    uint64_t *all = malloc((n ? n : 1) * sizeof(*all));
    if (!all)
        return false;
    for (size_t i = 0; i < n; i++)
        all[i] = st_bloom_hash(keys[i]);
    bool ok = st_bloom_build_hashes(all, n, bits_per_key, dst);
    free(all);
    return ok;
}

bool st_bloom_may_contain_hash(st_slice filter, uint64_t hash)
{
    if (filter.len < ST_BLOOM_MIN_BYTES + 1)
        return true;
    size_t bytes = filter.len - 1;
    int k = filter.data[bytes];
    if (k < ST_BLOOM_MIN_K || k > ST_BLOOM_MAX_K || bytes > UINT32_MAX / 8)
        return true;
    uint32_t nbits = (uint32_t)(bytes * 8);
    uint32_t h1 = (uint32_t)hash;
    uint32_t h2 = (uint32_t)(hash >> 32);
    for (int j = 0; j < k; j++) {
        uint32_t pos = probe_bit(h1, nbits);
        if (!(filter.data[pos >> 3] & (1u << (pos & 7))))
            return false;
        h1 += h2;
    }
    return true;
}

bool st_bloom_may_contain(st_slice filter, st_slice user_key)
{
    return st_bloom_may_contain_hash(filter, st_bloom_hash(user_key));
}
