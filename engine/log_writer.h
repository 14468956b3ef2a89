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

#include <stdbool.h>
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
 * The same, but the writer stores records into a shared map of the file (env->map_append) rather
 * than appending them: no system call per record, the same guarantee (a stored record survives
 * the death of the process; st_log_writer_sync makes it durable). The file is allocated ahead in
 * windows of 1 MiB, so until destroy cuts it back it ends in zeros, which a reader takes for a
 * torn tail. With an env that cannot map, it appends like st_log_writer_create. For WAL segments.
 */
st_status st_log_writer_create_mapped(st_env *env, st_file *file, uint64_t file_size,
                                      st_log_writer **out);

/*
 * Frame one record of `n` bytes (borrowed for the call; data may be NULL when n == 0) and hand
 * it, with any block trailer before it, to the env in ONE env->append call (or one store into the
 * map): group commit relies on one system call per record. Empty records are allowed. Returns the
 * env's status on failure (the writer is then broken, see above), ST_NO_MEMORY if the frame cannot
 * be built (the writer is not broken, the file untouched).
 */
st_status st_log_writer_add(st_log_writer *w, const void *data, size_t n);

/* True while records go into a map of the file rather than through env->append. */
bool st_log_writer_is_mapped(const st_log_writer *w);

/* env->sync on the file. Any thread, concurrently with add. */
st_status st_log_writer_sync(st_log_writer *w);

/* Bytes in the file after the last successful add: the offset where the next record starts. */
uint64_t st_log_writer_size(const st_log_writer *w);

/* Bytes known durable: the size at the start of the last successful sync (0 before any). */
uint64_t st_log_writer_synced_size(const st_log_writer *w);

/* Close the file without syncing and free the writer. Accepts NULL. No sync may be running. */
void st_log_writer_destroy(st_log_writer *w);

#endif
