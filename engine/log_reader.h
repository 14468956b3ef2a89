/*
 * log_reader.h - read the records of a WAL segment or MANIFEST (engine/format/log.md).
 *
 * The reader reads the file in blocks through env->read_at (not map: the file may still be
 * growing, e.g. a live WAL segment read for replication) and never trusts its bytes: any input
 * yields records, NOT_FOUND or CORRUPTION, never a crash or an out-of-bounds read.
 *
 * Threads: a reader is used by one thread at a time. Several readers may read one file.
 */
#ifndef STRATA_ENGINE_LOG_READER_H
#define STRATA_ENGINE_LOG_READER_H

#include <stdint.h>

#include "engine/env.h"
#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_log_reader st_log_reader;

/*
 * Read records from `file` (borrowed; must outlive the reader) through `env` (borrowed),
 * starting at byte `offset`, which must be 0 or an offset this API reported as a record start
 * or end (an offset inside a record reads as damage). `name` (copied) is used in messages,
 * e.g. "wal/000012.log". Nothing is read until the first st_log_reader_next.
 */
st_status st_log_reader_create(st_env *env, st_file *file, const char *name, uint64_t offset,
                               st_log_reader **out);

/*
 * ST_OK: *record is the next record (borrowed until the next call or destroy; an empty record
 * may have data == NULL), *record_offset (optional, may be NULL) the file offset of its first
 * fragment.
 *
 * ST_NOT_FOUND: no further complete record. Either the clean end of the file, or a torn tail:
 * bytes after the last good record that do not form a valid record and are not followed
 * anywhere later in the file by a valid FULL or FIRST fragment (a write cut short by a crash,
 * zero-filled or garbage). st_log_reader_torn_bytes tells which. The reader stays positioned
 * after the last good record (cached bytes past it are dropped), so calling next again later
 * returns records appended since.
 *
 * ST_CORRUPTION: a damaged fragment (bad CRC, impossible length, unknown type, MIDDLE/LAST
 * without FIRST, FIRST without LAST) that IS followed later in the file by a valid FULL or
 * FIRST fragment. The message names the file, the offset of the damaged fragment and what is
 * wrong. The reader moves to that valid fragment, so a caller that wants to salvage may call
 * next again; one that does not simply stops.
 *
 * ST_IO_ERROR etc.: env->read_at failed; the reader stays where it was (a retry re-reads).
 * ST_NO_MEMORY: a multi-fragment record could not be assembled.
 */
st_status st_log_reader_next(st_log_reader *r, st_slice *record, uint64_t *record_offset);

/* Offset just past the last record returned (the start offset before any). */
uint64_t st_log_reader_good_end(const st_log_reader *r);

/*
 * Bytes after the reader's position that were ignored as a torn tail by the last ST_NOT_FOUND
 * (0 at a clean end, and before any ST_NOT_FOUND). The position is good_end, except after a
 * CORRUPTION was skipped with no record read since, when it is the valid fragment skipped to.
 */
uint64_t st_log_reader_torn_bytes(const st_log_reader *r);

/* Free the reader (not the file). Accepts NULL. */
/*
 * Strict mode, for logs whose every record is synced before anything relies on it (the
 * MANIFEST): a damaged record at the end that is whole (its bytes all present, but its checksum,
 * type or length wrong) is ST_CORRUPTION rather than a torn tail. A record the file ends inside
 * of, or zeros, is still a torn tail: that is what a crash during the append leaves.
 */
void st_log_reader_set_strict(st_log_reader *r, bool strict);

/*
 * Read the file as if it ended at `limit` (UINT64_MAX, the default: its real end). For a log
 * still being written through a map (st_log_writer_create_mapped), whose file runs on in zeros
 * past the last record: the owner passes the writer's size, so that a reader at the end finds a
 * clean end at once instead of scanning the zeros for a valid start.
 */
void st_log_reader_set_limit(st_log_reader *r, uint64_t limit);

void st_log_reader_destroy(st_log_reader *r);

#endif
