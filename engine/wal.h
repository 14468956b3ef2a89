/*
 * wal.h - the write-ahead log: numbered segment files in <db>/wal/, each a log (log_writer.h
 * framing) of batch records (write_batch.h). Sequences run on without gaps from one record to
 * the next and from one segment to the next.
 *
 * A new segment starts when a memtable becomes immutable and on every open. A segment may be
 * deleted once every record in it is in tables the MANIFEST records (its last sequence is at or
 * below the flushed sequence) and nobody retains it for replication.
 *
 * Each record carries a term (opaque to the engine). The WAL keeps, in memory, where each run of
 * equal terms starts, so the term of any sequence still in the log can be answered.
 *
 * Locking: db.c calls st_wal_append / st_wal_truncate / st_wal_new_segment only from the writer
 * that leads the write queue (one at a time), and every function that reads or changes the
 * segment list or the term index with db->mu held. st_wal_append touches only the live
 * segment's file, so the leader calls it without db->mu and publishes what it learnt with
 * st_wal_note_record under db->mu. st_wal_sync may be called from any thread at any time (the
 * interval syncer runs beside the writers): it and the replacement of the live segment's writer
 * are serialised by the WAL's own sync_mu.
 */
#ifndef STRATA_ENGINE_WAL_H
#define STRATA_ENGINE_WAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/db.h"
#include "engine/env.h"
#include "engine/log_writer.h"

typedef struct st_wal_segment {
    uint64_t number;
    uint64_t first_seq; /* 0 while the segment holds no record */
    uint64_t last_seq;  /* 0 while the segment holds no record */
    uint64_t bytes;
} st_wal_segment;

typedef struct st_wal_term_run {
    uint64_t seq; /* first sequence of the run */
    uint64_t term;
} st_wal_term_run;

typedef struct st_wal {
    st_env *env;
    char *dir; /* <db>/wal, owned */
    st_sync_policy policy;
    st_wal_segment *segs; /* oldest first; the last is the live one once a writer exists */
    size_t nsegs, cap_segs;
    pthread_mutex_t sync_mu; /* guards replacing `writer` against a concurrent st_wal_sync */
    st_log_writer *writer;   /* appends to segs[nsegs - 1]; NULL before the first new_segment */
    st_wal_term_run *terms;
    size_t nterms, cap_terms;
    uint64_t last_seq, last_term;  /* of the newest record */
    _Atomic uint64_t mapped_bytes; /* framed bytes stored through a map, not write(2) */
} st_wal;

/* What recovery found in one record, handed to the callback. */
typedef struct st_wal_found {
    st_slice record; /* borrowed for the call */
    st_log_record_info info;
    uint64_t segment; /* number of the segment holding it */
    uint64_t offset;  /* where its first fragment starts */
} st_wal_found;

typedef st_status (*st_wal_recover_fn)(void *ctx, const st_wal_found *rec);

/* Open the WAL directory of database `db_dir` (creating it) and list its segments. */
st_status st_wal_open(st_env *env, const char *db_dir, st_sync_policy policy, st_wal **out);
void st_wal_close(st_wal *w); /* closes the live segment without syncing; accepts NULL */

/*
 * Read every segment, oldest first, check every record and hand those with a sequence above
 * `flushed_seq` to fn, in order. A torn tail (an unfinished last write) ends the log: the segment
 * is cut back to its last good record and any later segment must be empty (it is removed).
 * Corruption in the middle of a segment, or a gap in the sequences after flushed_seq, is
 * ST_CORRUPTION naming the segment. `log`/`log_ctx` (may be NULL) receive one line per repair.
 */
st_status st_wal_recover(st_wal *w, uint64_t flushed_seq, st_wal_recover_fn fn, void *ctx,
                         void (*log)(void *, const char *), void *log_ctx);

/*
 * Start segment `number` and make it the live one. The previous live segment is synced first
 * unless the policy is ST_SYNC_NONE (so that a power loss can only lose a suffix of the log), and
 * the directory is synced after the new file is created (likewise).
 */
st_status st_wal_new_segment(st_wal *w, uint64_t number);

/*
 * Append an encoded record to the live segment (one store into its map, or one write(2) where the
 * env cannot map); *offset gets where it starts.
 */
st_status st_wal_append(st_wal *w, st_slice record, uint64_t *offset);

/*
 * Where a reader of segment `number` should take its end to be (st_log_reader_set_limit): the
 * live segment's written size, since its file runs on in zeros allocated ahead; UINT64_MAX for
 * any other segment. With db->mu held.
 */
uint64_t st_wal_readable_end(const st_wal *w, uint64_t number);

/* fdatasync the live segment. Any thread. */
st_status st_wal_sync(st_wal *w);

/* Record in the segment list and term index that a record was appended (db->mu held). */
void st_wal_note_record(st_wal *w, const st_log_record_info *info, uint64_t bytes);

/*
 * Drop everything from byte `offset` of segment `number` on (that segment is cut, later ones
 * deleted) and continue appending there. `last_seq`/`last_term` describe the last record kept
 * (0/0 if none remains).
 */
st_status st_wal_truncate(st_wal *w, uint64_t number, uint64_t offset, uint64_t last_seq,
                          uint64_t last_term);

/*
 * Remove from the list every segment other than the live one whose records all have sequences
 * <= upto (empty segments included) and return their numbers (malloc'd array; caller frees and
 * unlinks the files, outside db->mu).
 */
size_t st_wal_take_obsolete(st_wal *w, uint64_t upto, uint64_t **numbers);

/* The term of sequence `seq`. ST_NOT_FOUND if the log does not hold it. */
st_status st_wal_term_at(const st_wal *w, uint64_t seq, uint64_t *term);

/* Index of the oldest segment that holds seq or, when seq is just past the last record, the live
   segment; -1 when the log no longer (or not yet) reaches seq. */
long st_wal_find(const st_wal *w, uint64_t seq);

/* Total bytes of all segments. */
uint64_t st_wal_bytes(const st_wal *w);

/* Path of segment `number` into buf (size strlen(dir) + ST_NAME_EXTRA). */
char *st_wal_path(const st_wal *w, char *buf, size_t cap, uint64_t number);

#endif
