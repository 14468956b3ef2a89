/*
 * log_format.h - constants of the record log that frames WAL segments and the MANIFEST.
 *
 * The format, and the rules by which a reader tells a torn tail from corruption, are written
 * down in engine/format/log.md. In short: the file is a sequence of ST_LOG_BLOCK_SIZE blocks;
 * a record is cut into fragments, none of which crosses a block boundary; each fragment is
 *
 *   masked crc32c (fixed32) | length (fixed16) | type (1 byte) | payload (length bytes)
 *
 * where the CRC (st_crc32c_mask of st_crc32c) covers the type byte and the payload. A block
 * tail shorter than ST_LOG_HEADER_SIZE is zero-filled.
 */
#ifndef STRATA_ENGINE_LOG_FORMAT_H
#define STRATA_ENGINE_LOG_FORMAT_H

#define ST_LOG_BLOCK_SIZE  32768
#define ST_LOG_HEADER_SIZE 7 /* crc (4) + length (2) + type (1) */

/* Fragment types (engine/format/log.md, "Fragment types"). */
typedef enum st_log_type {
    ST_LOG_ZERO = 0,   /* never written; what zero-filled space decodes as */
    ST_LOG_FULL = 1,   /* a whole record */
    ST_LOG_FIRST = 2,  /* first fragment of a record */
    ST_LOG_MIDDLE = 3, /* interior fragment */
    ST_LOG_LAST = 4,   /* last fragment */
} st_log_type;

#define ST_LOG_MAX_TYPE ST_LOG_LAST

#endif
