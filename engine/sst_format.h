/*
 * sst_format.h - constants of the SSTable files (.dat, .idx, .meta).
 *
 * The grammar is engine/format/sst.md; every constant here is named there.
 */
#ifndef STRATA_ENGINE_SST_FORMAT_H
#define STRATA_ENGINE_SST_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* The format version written into .idx and .meta; readers refuse others (ST_NOT_SUPPORTED). */
#define ST_SST_FORMAT_VERSION 1

/* First four bytes of .idx ("SIDX") and .meta ("META"), as fixed32. */
#define ST_SST_IDX_MAGIC  0x58444953u
#define ST_SST_META_MAGIC 0x4154454du

/* magic (fixed32) + version (one byte), at the start of .idx and .meta. */
#define ST_SST_HEADER_BYTES 5

/* Every block of .dat ends in a masked CRC-32C of its contents. */
#define ST_SST_BLOCK_TRAILER_BYTES 4

/* The smallest well-formed block: one restart offset and the count, then the trailer. */
#define ST_SST_MIN_BLOCK_BYTES (4 + 4 + ST_SST_BLOCK_TRAILER_BYTES)

/* .idx ends in count (fixed32) + mcrc (fixed32); .meta ends in mcrc. */
#define ST_SST_IDX_FOOTER_BYTES  8
#define ST_SST_META_FOOTER_BYTES 4

/* Bloom filter: at least this many bytes of bits; k between these bounds. */
#define ST_BLOOM_MIN_BYTES 8
#define ST_BLOOM_MIN_K     1
#define ST_BLOOM_MAX_K     30

/* Builder defaults (st_sst_options fields left 0). */
#define ST_SST_DEFAULT_BLOCK_BYTES      4096
#define ST_SST_DEFAULT_RESTART_INTERVAL 16

/*
 * The largest key + value the builder accepts in one entry: a block holds at least one entry and
 * its offsets are fixed32, so one entry must stay well below 4 GiB.
 */
#define ST_SST_MAX_ENTRY_BYTES (1024u * 1024 * 1024)

/* Readers refuse .idx and .meta files larger than this (ST_CORRUPTION): they are read whole. */
#define ST_SST_MAX_SIDE_FILE_BYTES (512u * 1024 * 1024)

/* The file name suffixes. */
#define ST_SST_DAT_EXT  ".dat"
#define ST_SST_IDX_EXT  ".idx"
#define ST_SST_META_EXT ".meta"
#define ST_SST_TMP_EXT  ".tmp"

#endif
