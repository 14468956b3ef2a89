/*
 * log_writer.h - append records to a WAL segment or MANIFEST in the record log format
 * (engine/format/log.md, constants in engine/log_format.h).
 *
 * Threads: one thread adds records. st_log_writer_sync, st_log_writer_size and
 * st_log_writer_synced_size may be called from any thread, concurrently with add (the interval
 * syncer and replication read them).
 *
 * Errors are sticky: after an append or a sync fails, the writer is broken and every later add
 * and sync returns that first status (with its message) without touching the file. A failed
 * append may have left part of a record in the file; a failed fdatasync may have dropped dirty
 * pages that a retry would then report as clean, so neither is retried. The owner starts a new
 * log (or reopens, reads and truncates this one) to continue.
 */
#ifndef STRATA_ENGINE_LOG_WRITER_H
#define STRATA_ENGINE_LOG_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/env.h"
#include "engine/status.h"

typedef struct st_log_writer st_log_writer;

/*
 * Create a writer that appends to `file`. Takes ownership of `file` (closed by destroy, also
 * closed if create fails). `env` is borrowed and must outlive the writer. `file_size` is the
 * file's current length, so appending to an existing log continues the block layout; the file
 * must end at a record end (a log with a torn tail is truncated to the reader's good_end first).
 * synced_size starts at 0: bytes already in the file are not known to be durable until the
 * first successful sync.
 */
st_status st_log_writer_create(st_env *env, st_file *file, uint64_t file_size, st_log_writer **out);

/*
 * Frame one record of `n` bytes (borrowed for the call; data may be NULL when n == 0) and hand
 * it, with any block trailer before it, to the env in ONE env->append call: group commit relies
 * on one system call per record. Empty records are allowed. Returns the env's status on failure
 * (the writer is then broken, see above), ST_NO_MEMORY if the frame cannot be built (the writer
 * is not broken, the file untouched).
 */
st_status st_log_writer_add(st_log_writer *w, const void *data, size_t n);

/* env->sync on the file. Any thread, concurrently with add. */
st_status st_log_writer_sync(st_log_writer *w);

/* Bytes in the file after the last successful add: the offset where the next record starts. */
uint64_t st_log_writer_size(const st_log_writer *w);

/* Bytes known durable: the size at the start of the last successful sync (0 before any). */
uint64_t st_log_writer_synced_size(const st_log_writer *w);

/* Close the file without syncing and free the writer. Accepts NULL. No sync may be running. */
void st_log_writer_destroy(st_log_writer *w);

#endif
