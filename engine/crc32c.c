/* crc32c.c - CRC-32C through ISA-L. */
#include "engine/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>
#include <stdbool.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/*
 * On CPUs with AVX-512, ISA-L runs crc32_iscsi_by16_10, which uses the 512-bit registers and
 * returns without VZEROUPPER. With the upper halves of the vector registers left dirty, every
 * SSE instruction afterwards (glibc's memcpy/memcmp for short keys, the compiler's own moves)
 * pays a state-transition penalty, until something clears them. Measured on a 1M-key database:
 * a seek + 99 nexts took 26.5 us with the dirty state and 10.9 us once it was cleared here
 * (every new block read is checksummed, so the state was dirtied all the time).
 *
 * Its own function compiled for AVX: the ABI makes every vector register call-clobbered, so no
 * caller holds a live 256-bit value across it, whatever it was compiled for.
 */
__attribute__((target("avx"), noinline)) static void clear_upper_vector_state(void)
{
    _mm256_zeroupper();
}

static bool have_avx(void)
{
    static int cached = -1; /* benign race: every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
#endif

uint32_t st_crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    /*
     * crc32_iscsi works on the raw register (initial value and result not inverted) and takes an
     * int length, so invert around it and feed buffers over 1 GiB in pieces.
     */
    const unsigned char *p = data;
    uint32_t reg = ~crc;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        reg = crc32_iscsi((unsigned char *)p, chunk, reg);
        p += chunk;
        n -= (size_t)chunk;
    }
#if defined(__x86_64__) || defined(__i386__)
    if (have_avx())
        clear_upper_vector_state();
#endif
    return ~reg;
}
