/*
 * sst_builder.h - writing one table: NNNNNN.dat, .idx and .meta (engine/format/sst.md).
 *
 * A builder takes internal keys in strictly increasing order, cuts the entries into blocks of
 * about block_bytes, streams the blocks to NNNNNN.dat.tmp in large appends, and keeps the index
 * and the Bloom filter's key hashes in memory until finish writes .idx.tmp and .meta.tmp, syncs
 * the three files and renames them to their final names.
 *
 * A builder is used by one thread at a time. The env and sst_dir are borrowed for the builder's
 * life. After any failure the builder refuses further adds and finishes (returning the first
 * error again); destroy then removes what it wrote.
 */
#ifndef STRATA_ENGINE_SST_BUILDER_H
#define STRATA_ENGINE_SST_BUILDER_H

#include <stdint.h>

#include "engine/coding.h"
#include "engine/env.h"
#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_sst_options {
    size_t block_bytes;     /* close a block once it reaches this size; 0: 4 KiB; at most 1 GiB */
    int restart_interval;   /* entries between restart points; <= 0: 16 */
    int bloom_bits_per_key; /* Bloom filter bits per user key; <= 0: no filter */
} st_sst_options;

typedef struct st_sst_props { /* what .meta records */
    uint64_t number, dat_bytes, idx_bytes, meta_bytes, entries, tombstones, min_seq, max_seq;
    st_buf smallest, largest; /* internal keys, owned */
} st_sst_props;

/* Free smallest and largest (the struct itself is the caller's). Accepts NULL. */
void st_sst_props_free(st_sst_props *p);

typedef struct st_sst_builder st_sst_builder;

/*
 * Start table `number` in sst_dir (which must exist): creates NNNNNN.dat.tmp. o may be NULL for
 * the defaults; it is copied.
 */
st_status st_sst_builder_create(st_env *env, const char *sst_dir, uint64_t number,
                                const st_sst_options *o, st_sst_builder **out);

/*
 * Add an entry (both slices borrowed for the call). ikey must be a valid internal key, strictly
 * greater by st_ikey_cmp than the previous one, and key + value at most ST_SST_MAX_ENTRY_BYTES:
 * ST_INVALID_ARGUMENT otherwise (the builder stays usable). Writes .dat as it goes (to
 * NNNNNN.dat.tmp), in large appends; a write error is returned here.
 */
st_status st_sst_builder_add(st_sst_builder *b, st_slice ikey, st_slice value);

/* .dat bytes so far, including the open block and data not yet appended to the file. */
uint64_t st_sst_builder_bytes(const st_sst_builder *b);

/* Entries added so far. */
uint64_t st_sst_builder_entries(const st_sst_builder *b);

/*
 * Write .idx.tmp and .meta.tmp, fsync all three, rename each to its final name. Does NOT fsync the
 * directory: the caller syncs the sst directory once for all its outputs before recording them in
 * the MANIFEST. ST_INVALID_ARGUMENT if no entry was added. On success *props is filled (the caller
 * frees it with st_sst_props_free); on failure no final name of this table remains.
 */
st_status st_sst_builder_finish(st_sst_builder *b, st_sst_props *props);

/* Free the builder; if it was not finished, remove its temporary files. Accepts NULL. */
void st_sst_builder_destroy(st_sst_builder *b);

/* Unlink the three files of table `number` (missing files are not an error). */
st_status st_sst_remove(st_env *env, const char *sst_dir, uint64_t number);

/*
 * Move table `from_number` of from_dir to to_dir as `to_number` (installing another database's
 * checkpoint): .dat and .idx are renamed; .meta, which records the number, is checked and
 * rewritten with the new one (synced, under a temporary name, appearing last). The caller
 * syncs to_dir.
 */
st_status st_sst_move(st_env *env, const char *from_dir, uint64_t from_number, const char *to_dir,
                      uint64_t to_number);

#endif
