/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every strata file and message.
 *
 * The computation is Intel ISA-L's crc32_iscsi (Debian libisal), which picks the SSE4.2 /
 * PCLMUL (or AVX-512) implementation at run time; st_crc32c_extend clears the upper vector
 * register state it leaves behind, which would otherwise slow every SSE instruction after it.
 * Stored checksums are masked (st_crc32c_mask), as LevelDB does, because computing the CRC of a
 * string that contains embedded CRCs is otherwise weak.
 */
#ifndef STRATA_ENGINE_CRC32C_H
#define STRATA_ENGINE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of data[0, n) continued from `crc` (the CRC of the bytes before it; 0 to start). */
uint32_t st_crc32c_extend(uint32_t crc, const void *data, size_t n);

static inline uint32_t st_crc32c(const void *data, size_t n)
{
    return st_crc32c_extend(0, data, n);
}

#define ST_CRC_MASK_DELTA 0xa282ead8u

/* The form in which a CRC is stored: rotated right by 15 bits plus a constant. */
static inline uint32_t st_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + ST_CRC_MASK_DELTA;
}

static inline uint32_t st_crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - ST_CRC_MASK_DELTA;
    return (rot >> 17) | (rot << 15);
}

#endif
