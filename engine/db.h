/*
 * db.h - the strata storage engine: the one public header.
 *
 * A database is a directory holding a write-ahead log (wal/), sorted tables (sst/) and a
 * MANIFEST that says which tables make up the current version. Writes go to the WAL, then to an
 * in-memory skiplist (the memtable); full memtables are flushed to level-0 tables by a
 * background thread, and a compaction thread merges tables down the levels: all of L0 once it
 * holds l0_compaction_trigger tables, a table of a level that outgrew its target, or a table
 * that reads keep passing through without using it (LevelDB's seek compaction). Tables that
 * overlap nothing below move down without a rewrite. engine/FORMAT.md documents every file
 * format.
 *
 * Threads: an st_db handle may be used by any number of threads at once. Reads never wait for
 * writes, flushes or compactions. Concurrent writers are ordered and grouped: one thread writes
 * a whole group to the WAL, as one store into a shared map of the live segment (one write(2)
 * where the file system cannot allocate ahead), and under ST_SYNC_ALWAYS with one fsync.
 * Iterators, snapshots, batches and log iterators are each used by one thread at a time.
 *
 * Keys and values are arbitrary bytes. Keys are non-empty. Every write is given a 64-bit sequence
 * number; a batch of n operations takes n consecutive numbers and reports the last.
 *
 * Errors: every fallible call returns an st_status (ST_OK is 0) and leaves a message naming the
 * file, offset or limit involved for the calling thread (st_errmsg() in status.h). After a write
 * or sync to the WAL or MANIFEST fails, the database refuses further writes with the same status
 * (it never retries an fsync and pretends); reads go on. Close and reopen to recover.
 *
 * Memory: values returned by st_db_get are owned by the caller and released with st_free().
 * Slices handed to the engine are borrowed for the duration of the call only.
 */
#ifndef STRATA_ENGINE_DB_H
#define STRATA_ENGINE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_db st_db;
typedef struct st_batch st_batch;
typedef struct st_iter st_iter;
typedef struct st_snapshot st_snapshot;
typedef struct st_log_iter st_log_iter;
typedef struct st_env st_env;

/* Number of levels, L0 … L6. */
#define ST_NUM_LEVELS 7

/* Hard limits; the options below may only lower them. */
#define ST_KEY_LIMIT   (64u * 1024 - 1)     /* bytes in a key */
#define ST_VALUE_LIMIT (256u * 1024 * 1024) /* bytes in a value */

typedef enum st_sync_policy {
    ST_SYNC_ALWAYS,   /* fdatasync the WAL before a write returns; concurrent writers share one */
    ST_SYNC_INTERVAL, /* fdatasync at most every sync_interval_ms; a crash of the machine loses at
                         most that window, a crash of the process loses nothing */
    ST_SYNC_NONE,     /* never fdatasync the WAL; every write is in the kernel's hands (write(2)
                         returned) before it returns, so a kill -9 of the process loses nothing */
} st_sync_policy;

/* What st_db_open does with WAL records newer than the last flush. */
typedef enum st_replay_mode {
    ST_REPLAY_ALL,     /* apply them all: the standalone behaviour */
    ST_REPLAY_PENDING, /* keep them appended but unapplied until st_db_log_apply (replication) */
} st_replay_mode;

typedef struct st_options {
    bool create_if_missing;    /* default true: create the directory and an empty database */
    bool error_if_exists;      /* default false */
    st_sync_policy sync;       /* default ST_SYNC_ALWAYS */
    uint32_t sync_interval_ms; /* for ST_SYNC_INTERVAL; default 100 */

    size_t memtable_bytes;     /* a memtable becomes immutable past this; default 4 MiB */
    int max_immutables;        /* writers stall while this many wait to flush; default 4 */
    uint32_t stall_timeout_ms; /* a stalled write gives up with ST_BUSY after this; default 10000 */

    int l0_compaction_trigger; /* L0 files that start an L0→L1 merge; default 4 */
    int l0_stop_trigger;       /* L0 files at which writers stall; default 24 */
    uint64_t level1_bytes;     /* byte target of L1; L(n) is level1_bytes × 10^(n-1); 32 MiB */
    uint64_t table_bytes;      /* a compaction output file is cut past this; default 4 MiB */
    size_t block_bytes;        /* data block size in .dat files; default 4 KiB */
    int bloom_bits_per_key;    /* default 10 (about 1% false positives); 0 disables */

    size_t block_cache_bytes; /* cache of blocks read with pread; default 8 MiB */
    int max_open_tables;      /* table cache capacity; default 1000 */
    bool mmap_reads;          /* map .dat files and verify each block's CRC once; default true
                                 (then the page cache holds the blocks, not the block cache) */

    size_t max_key_bytes;   /* default 8 KiB, at most ST_KEY_LIMIT */
    size_t max_value_bytes; /* default 4 MiB, at most ST_VALUE_LIMIT */

    st_replay_mode replay; /* default ST_REPLAY_ALL */
    bool paranoid_checks;  /* check level invariants after every version change; a broken
                              invariant becomes a sticky CORRUPTION error; default false */

    st_env *env; /* borrowed, must outlive the db; NULL = the POSIX env */
    /* One line per event (open, flush, compaction, error). Called from any engine thread, never
       with an engine lock held. NULL = silent. `line` is borrowed for the call. */
    void (*log)(void *log_ctx, const char *line);
    void *log_ctx;
} st_options;

/* Fill *o with the defaults above. */
void st_options_init(st_options *o);

/* ---- open / close ------------------------------------------------------------------------ */

/*
 * Open (or with create_if_missing, create) the database in `dir`. Takes an exclusive lock on
 * the directory: a second opener, in this process or another, gets ST_BUSY. A directory that
 * exists, is not empty and holds no database gets ST_INVALID_ARGUMENT; an unknown format version
 * ST_NOT_SUPPORTED; a damaged MANIFEST or WAL ST_CORRUPTION naming the file. A torn record at the
 * end of the WAL (a write cut short by a crash) is not an error: the log ends before it.
 * On success *out owns the handle until st_db_close.
 */
st_status st_db_open(const char *dir, const st_options *opts, st_db **out);

/*
 * Wait for the running flush and compaction to finish, stop the background threads, sync the
 * WAL, release the lock and free the handle. Unflushed writes stay in the WAL. Accepts NULL.
 * Every iterator, snapshot and log iterator must be released first.
 */
void st_db_close(st_db *db);

/* ---- writes ------------------------------------------------------------------------------ */

/*
 * Put key → value. On success the write is durable per the sync policy and visible to every
 * read that starts afterwards; *seq (optional) receives its sequence number.
 * ST_INVALID_ARGUMENT for an empty or oversized key or value; ST_BUSY when a stall outlasts
 * stall_timeout_ms; the sticky background error if there is one.
 */
st_status st_db_put(st_db *db, st_slice key, st_slice value, uint64_t *seq);

/* Delete key (a tombstone is written even if the key is absent). Same contract as st_db_put. */
st_status st_db_delete(st_db *db, st_slice key, uint64_t *seq);

/* Apply every operation of `batch` atomically, in order; *seq gets the last one's sequence. An
   empty batch writes nothing and reports the current sequence. `batch` stays the caller's. */
st_status st_db_write(st_db *db, const st_batch *batch, uint64_t *seq);

/* ---- reads ------------------------------------------------------------------------------- */

/*
 * Look key up as of `snap` (NULL: the latest applied write). On ST_OK *value (owned by the
 * caller, free with st_free; non-NULL even for an empty value) and *value_len hold the value.
 * ST_NOT_FOUND when absent or deleted. *read_seq (optional) receives the sequence read at.
 */
st_status st_db_get(st_db *db, const st_snapshot *snap, st_slice key, uint8_t **value,
                    size_t *value_len, uint64_t *read_seq);

/* Release memory the engine handed to the caller. Accepts NULL. */
void st_free(void *p);

/*
 * A snapshot pins a sequence number: reads through it see exactly the writes up to it, and
 * compaction keeps every version it needs. Release it with st_db_release_snapshot.
 */
st_status st_db_snapshot(st_db *db, st_snapshot **out);
void st_db_release_snapshot(st_db *db, st_snapshot *snap); /* accepts NULL */
uint64_t st_snapshot_seq(const st_snapshot *snap);

/*
 * An iterator over the live keys in [start, end) as of `snap` (NULL: an implicit snapshot taken
 * now, held by the iterator). An empty `start` means from the first key, an empty `end` means to
 * the last. The iterator holds the files it reads; they outlive compactions until it is destroyed.
 * Initially not positioned: call st_iter_first, st_iter_last or st_iter_seek.
 */
st_status st_db_iter(st_db *db, const st_snapshot *snap, st_slice start, st_slice end,
                     st_iter **out);

bool st_iter_valid(const st_iter *it);
void st_iter_first(st_iter *it);                      /* smallest key >= start */
void st_iter_last(st_iter *it);                       /* largest key < end */
void st_iter_seek(st_iter *it, st_slice target);      /* smallest key >= max(target, start) */
void st_iter_seek_prev(st_iter *it, st_slice target); /* largest key <= target, < end */
void st_iter_next(st_iter *it);                       /* requires valid */
void st_iter_prev(st_iter *it);                       /* requires valid */
/* Borrowed until the iterator moves or is destroyed. Require valid. */
st_slice st_iter_key(const st_iter *it);
st_slice st_iter_value(const st_iter *it);
/* The sequence the iterator reads at. */
uint64_t st_iter_seq(const st_iter *it);
/* ST_OK, or the error (e.g. CORRUPTION naming a file) that made the iterator stop early. */
st_status st_iter_status(const st_iter *it);
void st_iter_destroy(st_iter *it); /* accepts NULL */

/* ---- batches ----------------------------------------------------------------------------- */

st_status st_batch_create(st_batch **out);
void st_batch_destroy(st_batch *b); /* accepts NULL */
void st_batch_clear(st_batch *b);
/* Append an operation; the bytes are copied. ST_INVALID_ARGUMENT for an empty key or one over
   ST_KEY_LIMIT, a value over ST_VALUE_LIMIT; the database's own limits are checked on write. */
st_status st_batch_put(st_batch *b, st_slice key, st_slice value);
st_status st_batch_delete(st_batch *b, st_slice key);
/* Append an operation that takes a sequence number and changes nothing (a new leader's first
   record, which lets the records of earlier terms commit). */
st_status st_batch_noop(st_batch *b);
uint32_t st_batch_count(const st_batch *b);
size_t st_batch_bytes(const st_batch *b); /* encoded size, as it will go to the WAL */

/* ---- maintenance ------------------------------------------------------------------------- */

/* Turn the memtable into an immutable one (if it holds anything) and wait until every
   immutable memtable is in an L0 table recorded in the MANIFEST. */
st_status st_db_flush(st_db *db);

/*
 * Flush, then merge every table that overlaps [start, end) (empty = unbounded) down to the
 * deepest level holding data, dropping what no snapshot can see. Waits until done.
 */
st_status st_db_compact_range(st_db *db, st_slice start, st_slice end);

typedef struct st_level_stats {
    uint32_t files;
    uint64_t bytes;
} st_level_stats;

typedef struct st_stats {
    uint64_t last_seq;    /* highest sequence appended to the log */
    uint64_t last_term;   /* term of that record */
    uint64_t applied_seq; /* highest sequence visible to reads */
    uint64_t flushed_seq; /* every sequence up to this is in tables the MANIFEST records */

    uint64_t memtable_bytes; /* active memtable, arena bytes */
    uint32_t immutables;     /* memtables waiting to be flushed */
    uint64_t immutable_bytes;
    st_level_stats levels[ST_NUM_LEVELS];
    uint32_t wal_segments;
    uint64_t wal_bytes; /* bytes in live WAL segments */

    uint64_t writes;            /* write calls that succeeded */
    uint64_t write_groups;      /* WAL appends they were grouped into */
    uint64_t wal_syncs;         /* fdatasync calls on the WAL */
    uint64_t user_bytes;        /* key + value bytes accepted */
    uint64_t wal_bytes_written; /* record bytes appended to the WAL */
    uint64_t wal_bytes_mapped;  /* framed WAL bytes stored through a shared map, not write(2) */
    uint64_t flushes;
    uint64_t flush_bytes; /* table bytes written by flushes */
    uint64_t compactions;
    uint64_t seek_compactions; /* of them, chosen for tables that reads kept passing through */
    uint64_t compaction_bytes_read;
    uint64_t compaction_bytes_written;
    uint64_t stalls;         /* writes that had to wait for a flush or compaction */
    uint64_t stall_micros;   /* total time they waited */
    uint64_t stall_timeouts; /* stalls that gave up with ST_BUSY */

    uint64_t block_cache_hits;
    uint64_t block_cache_misses;
    uint64_t block_cache_bytes; /* bytes currently cached */
    uint32_t open_tables;       /* tables in the table cache */
    uint32_t snapshots;         /* live snapshots and iterators */

    st_status bg_status;  /* ST_OK, or the sticky error that stops writes */
    char bg_message[256]; /* its message */
} st_stats;

/* Fill *out with a consistent-enough picture (counters are read without stopping writers). */
st_status st_db_stats(st_db *db, st_stats *out);

/* ---- the replicated log ------------------------------------------------------------------ */
/*
 * The WAL is the log that replication ships. Each WAL record is one batch: a first sequence, an
 * opaque 64-bit term the engine stores and returns but does not interpret, and its operations.
 * st_db_write is "append, then apply"; these calls are the separate steps. A record is
 * *appended* once it is in the WAL (durable per the sync policy) and *applied* once it is in the
 * memtable and visible to reads. Records are applied strictly in sequence order; only an
 * unapplied suffix can be dropped.
 */

/* Term given to records written by st_db_put / delete / write (default 0). */
void st_db_set_term(st_db *db, uint64_t term);

/*
 * Leader side: give `batch` the next sequence numbers and `term`, append it to the WAL, and do
 * not apply it. *last_seq (optional) gets its last sequence.
 */
st_status st_db_log_append(st_db *db, uint64_t term, const st_batch *batch, uint64_t *last_seq);

/*
 * Like st_db_log_append, and as soon as the record is in the WAL, where log iterators read it,
 * but before the sync the policy asks for, written(ctx, last_seq) is called (no engine lock held,
 * possibly from another writer's thread). A leader ships the record to its followers from there,
 * so that their syncs overlap its own. If the sync then fails, the engine stops taking writes.
 */
typedef void (*st_log_written_fn)(void *ctx, uint64_t last_seq);
st_status st_db_log_append_early(st_db *db, uint64_t term, const st_batch *batch,
                                 st_log_written_fn written, void *ctx, uint64_t *last_seq);

/*
 * Follower side: append records received from a leader (encoded as st_log_iter_next returns
 * them) without applying them. The first must start at last_seq + 1 and each must follow the one
 * before; ST_INVALID_ARGUMENT if not, ST_CORRUPTION if one does not parse. All or nothing.
 */
st_status st_db_log_append_records(st_db *db, const st_slice *records, size_t n);

/* Apply, in order, every appended record whose last sequence is <= upto. */
st_status st_db_log_apply(st_db *db, uint64_t upto);

/*
 * Drop every appended record with a sequence > after_seq, from the WAL and from memory.
 * ST_INVALID_ARGUMENT if that would drop an applied record or split a record in two.
 */
st_status st_db_log_truncate(st_db *db, uint64_t after_seq);

/* The log's state: last appended sequence and its term, last applied sequence. */
void st_db_log_state(st_db *db, uint64_t *last_seq, uint64_t *last_term, uint64_t *applied_seq);

/*
 * The term of the record holding sequence `seq`. Sequence 0 has term 0. Also answers for the
 * last flushed sequence after its segment is gone. ST_NOT_FOUND when the log no longer reaches
 * back to `seq` or has not reached it yet.
 */
st_status st_db_log_term_at(st_db *db, uint64_t seq, uint64_t *term);

/*
 * Keep every WAL segment holding a record with sequence >= `seq`, even once flushed (a follower
 * still needs it). UINT64_MAX, the default, holds nothing back.
 */
void st_db_log_retain(st_db *db, uint64_t seq);

/*
 * Read the log from the record that holds `from_seq` on. ST_NOT_FOUND if the log no longer
 * reaches back that far (the caller needs a snapshot instead).
 */
st_status st_log_iter_create(st_db *db, uint64_t from_seq, st_log_iter **out);
/*
 * The next record, as bytes borrowed until the next call or destroy. ST_NOT_FOUND at the end of
 * what is appended now (call again later for more); ST_CORRUPTION naming the segment if a record
 * fails its checksum.
 */
st_status st_log_iter_next(st_log_iter *it, st_slice *record);
void st_log_iter_destroy(st_log_iter *it); /* accepts NULL */

/*
 * Make `dir` (which must not exist) a copy of the database as of its last applied sequence: the
 * memtable is flushed, every live table is hard-linked (not copied) into dir/sst, and a MANIFEST
 * naming them, with that sequence as its flushed sequence, is written with CURRENT. The copy holds
 * no WAL; opened with ST_REPLAY_PENDING it continues the log at *seq + 1. *seq and *term
 * (optional) receive the sequence and the term of the record that held it. Everything is fsynced
 * before this returns. Tables stay valid in the copy after the source compacts them away.
 */
st_status st_db_checkpoint(st_db *db, const char *dir, uint64_t *seq, uint64_t *term);

/*
 * Replace the whole contents of the database with the checkpoint in `dir` (made by
 * st_db_checkpoint, possibly on another node; not open). Its tables are moved into this
 * database under new numbers; every current table, memtable, WAL segment and pending record is
 * dropped; the log continues at the checkpoint's sequence + 1 (*seq, optional). Goes through
 * the write queue, so no write interleaves; readers that started before keep seeing the old
 * contents until they finish. On success `dir` holds nothing the database needs.
 */
st_status st_db_install_checkpoint(st_db *db, const char *dir, uint64_t *seq);

typedef struct st_log_record_info {
    uint64_t seq; /* first sequence */
    uint64_t term;
    uint32_t count; /* operations; the last sequence is seq + count - 1 */
} st_log_record_info;

/* Parse the header of a log record and check the operations are well formed. */
st_status st_log_record_parse(st_slice record, st_log_record_info *info);

#endif
