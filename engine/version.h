/*
 * version.h - which tables make up the database, and the MANIFEST that records it.
 *
 * A version is an immutable list of tables per level. Readers hold a reference to the version
 * they read, so its tables stay on disk until every such reader is gone (a table's files are
 * deleted when the last version holding it is released). A version edit describes a change
 * (tables added and removed, the flushed sequence, the next file number); the version set applies
 * edits to the current version and appends them to the MANIFEST, a log (log_writer.h framing) of
 * edits whose first record describes a whole version. CURRENT names the live MANIFEST.
 * engine/format/manifest.md gives the grammar.
 *
 * Levels: L0 tables may overlap and are ordered by age (newest last in files[0]); tables of
 * L1 … L6 are sorted by key and never overlap.
 *
 * Threads: versions are immutable once built and may be read by any thread holding a reference.
 * The version set is not thread-safe: the caller serialises every call that changes it
 * (db.c holds its manifest mutex), and guards `current` as it documents.
 */
#ifndef STRATA_ENGINE_VERSION_H
#define STRATA_ENGINE_VERSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/coding.h"
#include "engine/db.h"
#include "engine/dbformat.h"
#include "engine/env.h"
#include "engine/iterator.h"
#include "engine/log_writer.h"
#include "engine/table_cache.h"

/* The on-disk format version written into every MANIFEST; others are refused as NOT_SUPPORTED. */
#define ST_FORMAT_VERSION 1

typedef struct st_graveyard st_graveyard;

/* One table, shared by every version that holds it. */
typedef struct st_file_meta {
    atomic_int refs;
    uint64_t number;
    uint64_t dat_bytes, idx_bytes, meta_bytes;
    uint64_t entries, tombstones;
    uint64_t min_seq, max_seq;
    st_buf smallest, largest; /* internal keys, owned */
    /* Receives the number when the last reference goes; set when the table first enters a
       version (NULL before: an edit that never applied deletes nothing). */
    st_graveyard *graveyard;
    bool compacting; /* guarded by the db mutex */
    /* Reads that consulted this table without an answer and went on to another one. Past
       st_file_seek_budget they cost more than compacting the table away (LevelDB's seek
       compaction): st_version_get and st_version_sample report it then. */
    atomic_uint wasted_seeks;
} st_file_meta;

static inline uint64_t st_file_bytes(const st_file_meta *f)
{
    return f->dat_bytes + f->idx_bytes + f->meta_bytes;
}

st_file_meta *st_file_meta_new(void); /* refs = 1; NULL when out of memory */
void st_file_meta_ref(st_file_meta *f);
void st_file_meta_unref(st_file_meta *f); /* accepts NULL */

/*
 * The graveyard collects the numbers of tables no version holds any more. Whoever deletes files
 * (the background threads) takes them out with st_graveyard_take. Thread-safe.
 */
st_status st_graveyard_create(st_graveyard **out);
void st_graveyard_destroy(st_graveyard *g);
/* Move the buried numbers into *numbers (malloc'd, caller frees) and return how many. */
size_t st_graveyard_take(st_graveyard *g, uint64_t **numbers);

/*
 * The wasted reads a table may cost before it is worth compacting: one per 16 KiB of data (a
 * seek costs about as much as compacting 16 KiB, LevelDB's estimate), at least 100.
 */
static inline unsigned st_file_seek_budget(const st_file_meta *f)
{
    uint64_t b = f->dat_bytes / 16384;
    return b < 100 ? 100 : b > 1000000 ? 1000000 : (unsigned)b;
}

/* A table that has used up its seek budget: set by the read that used up the last of it. */
typedef struct st_seek_hint {
    st_file_meta *file; /* NULL: nothing to report */
    int level;
} st_seek_hint;

typedef struct st_version {
    atomic_int refs;
    st_file_meta **files[ST_NUM_LEVELS]; /* each holds a reference */
    uint32_t nfiles[ST_NUM_LEVELS];
    uint64_t level_bytes[ST_NUM_LEVELS];
    /* A table of this version whose seek budget ran out, to compact when nothing is more urgent
       (NULL if none). Guarded by the db mutex. */
    st_file_meta *seek_file;
    int seek_level;
} st_version;

void st_version_ref(st_version *v);
void st_version_unref(st_version *v); /* accepts NULL */

/* The deepest level holding any table, or -1 for an empty version. */
int st_version_deepest(const st_version *v);

/*
 * Look up lookup_ikey (dbformat.h st_lookup_key) in the tables of v: L0 newest to oldest, then one
 * table per level. *found says whether an entry for the user key with a sequence no newer than the
 * lookup's was found; if so *kind and the value (copied into `value`). A lookup that consults a
 * second table charges the first with a wasted seek; `hint` (cleared first) names it if that used
 * up its budget.
 */
st_status st_version_get(st_version *v, st_table_cache *tc, st_slice lookup_ikey, bool *found,
                         st_kind *kind, st_buf *value, st_seek_hint *hint);

/*
 * An iterator's read sample (LevelDB's RecordReadSample): if two or more tables of v hold the
 * range of user key `ukey`, a read there passes through the first without using it: charge it
 * a wasted seek, and name it in `hint` (cleared first) if that used up its budget.
 */
void st_version_sample(st_version *v, st_slice ukey, st_seek_hint *hint);

/* Append to `list` (growing it) an iterator per L0 table and one per non-empty deeper level.
   The iterators hold references to v. Returns ST_NO_MEMORY if something could not be built. */
st_status st_version_add_iterators(st_version *v, st_table_cache *tc, st_iterator ***list,
                                   size_t *n, size_t *cap);

/*
 * A concatenating iterator over the sorted, non-overlapping `files` of one level: it opens one
 * table at a time through tc. Holds a reference to v (the owner of the files array).
 */
st_iterator *st_level_iter_create(st_version *v, int level, st_table_cache *tc);

/* Files in `level` of v whose user-key range intersects [begin, end] (inclusive; an empty slice
   is unbounded). *out is malloc'd (caller frees; the entries are borrowed from v). */
st_status st_version_overlapping(const st_version *v, int level, st_slice begin, st_slice end,
                                 st_file_meta ***out, size_t *n);

/*
 * Check the level invariants: L0 ordered by sequence, every level ≥ 1 sorted with no two tables
 * sharing a user key. ST_CORRUPTION describing the first violation.
 */
st_status st_version_check(const st_version *v);

/* ---- edits ------------------------------------------------------------------------------ */

typedef struct st_edit_file {
    int level;
    uint64_t number;
    st_file_meta *meta; /* for additions: owned reference; NULL for deletions */
} st_edit_file;

typedef struct st_version_edit {
    bool has_format;
    uint32_t format;
    bool has_next_file;
    uint64_t next_file;
    bool has_flushed;
    uint64_t flushed_seq;
    uint64_t flushed_term;
    st_edit_file *deleted;
    size_t ndeleted, cap_deleted;
    st_edit_file *added;
    size_t nadded, cap_added;
    bool has_compact_ptr[ST_NUM_LEVELS];
    st_buf compact_ptr[ST_NUM_LEVELS];
} st_version_edit;

void st_edit_init(st_version_edit *e);
void st_edit_free(st_version_edit *e);
st_status st_edit_delete_file(st_version_edit *e, int level, uint64_t number);
/* Takes a new reference to f. */
st_status st_edit_add_file(st_version_edit *e, int level, st_file_meta *f);
st_status st_edit_encode(const st_version_edit *e, st_buf *out);
/* Parse; `what` names the source in messages. */
st_status st_edit_decode(st_version_edit *e, st_slice in, const char *what);

/* ---- the version set -------------------------------------------------------------------- */

typedef struct st_version_set {
    st_env *env;
    char *dir;               /* database directory (owned) */
    st_graveyard *graveyard; /* borrowed */
    st_version *current;     /* holds a reference; swapped by st_vset_install */
    atomic_uint_fast64_t next_file;
    uint64_t flushed_seq;  /* every sequence <= this is in the tables of current */
    uint64_t flushed_term; /* term of the record holding flushed_seq (0 if none) */
    uint64_t manifest_number;
    st_log_writer *manifest;           /* the live MANIFEST */
    uint64_t recovered_manifest;       /* the MANIFEST recovery read (0 for a new database) */
    uint64_t manifest_torn_bytes;      /* bytes recovery ignored at its end as a torn edit */
    st_buf compact_ptr[ST_NUM_LEVELS]; /* where the next round-robin pick starts, per level */
} st_version_set;

st_status st_vset_create(st_env *env, const char *dir, st_graveyard *g, st_version_set **out);
void st_vset_destroy(st_version_set *vs); /* accepts NULL */

/*
 * Read CURRENT and replay the MANIFEST it names. ST_NOT_FOUND if there is no CURRENT (an empty
 * directory); ST_CORRUPTION / ST_NOT_SUPPORTED naming the file otherwise. A torn last edit is
 * ignored (the crash happened before it was durable). Then write a fresh MANIFEST holding the
 * recovered version and point CURRENT at it.
 */
st_status st_vset_recover(st_version_set *vs);

/* Create the MANIFEST and CURRENT of a new, empty database. */
st_status st_vset_create_new(st_version_set *vs);

/* Allocate a file number. Thread-safe. */
uint64_t st_vset_new_file_number(st_version_set *vs);

/*
 * Build the version that results from applying `e` to the current one, append `e` to the MANIFEST
 * and sync it. Does not make the result current: *next receives it (with a reference) for
 * st_vset_install. On failure nothing changes, except that a MANIFEST write error breaks the
 * MANIFEST writer (the caller must then refuse further writes). Starts a fresh MANIFEST when the
 * live one has grown past 4 MiB.
 * Locking: calls to apply and install are serialised by the caller (one at a time), so that
 * `current` cannot change between them.
 */
st_status st_vset_apply(st_version_set *vs, st_version_edit *e, st_version **next);

/*
 * Make `next` (from st_vset_apply with edit `e`) current, taking over its reference, and update
 * flushed_seq / flushed_term / compact pointers from `e`. *old receives the previous version with
 * its reference, for the caller to release once nothing else points at it. Cannot fail.
 * Locking: whatever lock guards `current` for readers must be held.
 */
void st_vset_install(st_version_set *vs, const st_version_edit *e, st_version *next,
                     st_version **old);

/*
 * Write into `dir` a MANIFEST-000001 holding the current version (with the current flushed
 * sequence and term) and a CURRENT naming it: the control files of a checkpoint whose tables the
 * caller has linked into dir/sst. Caller holds what serialises st_vset_apply.
 */
st_status st_vset_write_checkpoint(st_version_set *vs, const char *dir);

/* Whether number names a table in the current version. */
bool st_vset_is_live(const st_version_set *vs, uint64_t number);

#endif
