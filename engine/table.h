/*
 * table.h - reading one table (NNNNNN.dat, .idx, .meta; engine/format/sst.md).
 *
 * Opening reads and checks .meta and .idx whole and keeps them in memory: the properties, the
 * Bloom filter, and the index as an array for binary search. .dat is either mapped (each block's
 * CRC is checked the first time any reader touches it, then remembered in a per-block atomic
 * flag) or read with pread, a block at a time, through the block cache when there is one (the
 * cache then holds verified copies). No byte of any file is trusted: every inconsistency is
 * ST_CORRUPTION (an unknown format version ST_NOT_SUPPORTED) with a message naming the file and
 * the offset.
 *
 * Thread safety: a table is immutable once open; get, iter, verify, may_contain, props, ref and
 * unref may be called from any number of threads at once. Each iterator is used by one thread.
 */
#ifndef STRATA_ENGINE_TABLE_H
#define STRATA_ENGINE_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/cache.h"
#include "engine/coding.h"
#include "engine/dbformat.h"
#include "engine/env.h"
#include "engine/iterator.h"
#include "engine/slice.h"
#include "engine/sst_builder.h"
#include "engine/status.h"

typedef struct st_table st_table;

typedef struct st_table_options {
    st_env *env;
    st_cache *block_cache; /* may be NULL; used when not mapping */
    bool mmap;             /* map .dat; verify each block's CRC once (an atomic per-block "verified"
                              flag) instead of caching copies */
} st_table_options;

/*
 * Read and check .meta and .idx (kept in memory: index and Bloom filter), open or map .dat, check
 * its size against the .meta (and against expect_dat_bytes unless 0). If the env cannot map, the
 * table reads with pread instead. Refcount starts at 1. o->env and o->block_cache are borrowed
 * until the table is closed (the block cache must outlive every table that uses it); sst_dir is
 * borrowed for the call. ST_CORRUPTION naming the file if one is missing (only live tables are
 * opened).
 */
st_status st_table_open(const st_table_options *o, const char *sst_dir, uint64_t number,
                        uint64_t expect_dat_bytes, st_table **out);

void st_table_ref(st_table *t);

/* The last unref closes the files and erases the table's blocks from the block cache. NULL ok. */
void st_table_unref(st_table *t);

/* The table's properties, as read from .meta (meta_bytes too); valid while a reference is held. */
const st_sst_props *st_table_props(const st_table *t);

/* The Bloom filter: false only if no entry of user_key is in the table. */
bool st_table_may_contain(const st_table *t, st_slice user_key);

/*
 * Position at the first entry >= lookup_ikey (internal order; it may lie in the block after the one
 * the index points to); if that entry's user key equals the user part of lookup_ikey: *found =
 * true, *kind and *seq set, the value copied into `value` (cleared first). Otherwise *found =
 * false and ST_OK. Checks the key range and the Bloom filter first. On a mapped table it allocates
 * nothing (unless `value` must grow or a key exceeds ST_BLOCK_KEY_INLINE bytes). Thread-safe.
 * ST_INVALID_ARGUMENT if lookup_ikey is shorter than a tag.
 */
st_status st_table_get(st_table *t, st_slice lookup_ikey, bool *found, st_kind *kind, uint64_t *seq,
                       st_buf *value);

/*
 * An iterator over all entries (internal keys), both directions, seek; it holds a table reference
 * until destroyed. Errors (CORRUPTION naming the .dat file and block offset) show in status().
 * Never NULL unless out of memory.
 */
st_iterator *st_table_iter(st_table *t);

/*
 * The same iterator for a reader that passes over each block once (a compaction): every block is
 * read with pread into a buffer of the iterator's own, its CRC checked each time, bypassing the
 * map and the block cache. Reading through the map would make every page of the inputs resident
 * in the process (mapped pages count in its RSS until the inputs are deleted: tens of megabytes
 * for an L0 compaction), and through the cache it would evict the blocks readers use.
 */
st_iterator *st_table_iter_once(st_table *t);

/*
 * Read every block and check its CRC and structure, and that the blocks agree with the index and
 * the .meta: first keys, key order across blocks, entry and tombstone counts, sequence range,
 * smallest and largest key.
 */
st_status st_table_verify(st_table *t);

/* The path of the table's .dat file (for messages); valid while a reference is held. */
const char *st_table_dat_path(const st_table *t);

/* Whether .dat is mapped (false when the env could not map or o->mmap was false). */
bool st_table_is_mapped(const st_table *t);

#endif
