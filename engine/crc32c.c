/* crc32c.c - CRC-32C through ISA-L. */
#include "engine/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

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
    return ~reg;
}
