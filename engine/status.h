/*
 * status.h - the one status type of strata.
 *
 * Every fallible function returns an st_status. ST_OK is zero, so `if (s != ST_OK)` and
 * `if (s)` both test for failure. A failing function may also leave a human-readable message
 * for the calling thread (st_errmsg), in the manner of dlerror(3) / sqlite3_errmsg: the message
 * names the file, offset or limit involved wherever one helps ("000012.dat: block checksum
 * mismatch at offset 40960").
 *
 * The message is thread-local: it describes the last failure reported on this thread and stays
 * valid until the next call to st_error()/st_errno_error()/st_clear_error() on the same thread.
 */
#ifndef STRATA_ENGINE_STATUS_H
#define STRATA_ENGINE_STATUS_H

#include <stddef.h>

typedef enum st_status {
    ST_OK = 0,
    ST_NOT_FOUND,        /* the key (or file, or record) does not exist */
    ST_CORRUPTION,       /* bytes on disk or on the wire fail a checksum or do not parse */
    ST_IO_ERROR,         /* the operating system refused a read, write or sync */
    ST_INVALID_ARGUMENT, /* the caller passed something the contract forbids */
    ST_NO_SPACE,         /* ENOSPC / EDQUOT */
    ST_BUSY,             /* a bounded stall expired, or the resource is locked by another */
    ST_NOT_SUPPORTED,    /* e.g. an unknown on-disk format version */
    ST_NO_MEMORY,        /* an allocation failed */
    ST_SHUTDOWN,         /* the database is closing */
    ST_TIMEOUT,          /* a wait with a deadline expired */
    ST_NOT_LEADER,       /* replication: this node does not lead; the message names the leader */
    ST_STATUS_COUNT
} st_status;

/* The constant name of a status code, e.g. "CORRUPTION". Never NULL. */
const char *st_status_name(st_status s);

/*
 * Record `code` with a printf-style message for this thread and return `code`, so that
 * `return st_error(ST_CORRUPTION, "%s: bad magic", path);` reports and returns in one step.
 */
st_status st_error(st_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Translate an errno value into a status (ENOENT → NOT_FOUND, ENOSPC and EDQUOT → NO_SPACE,
 * ENOMEM → NO_MEMORY, EWOULDBLOCK → BUSY, anything else → IO_ERROR), record
 * "<context>: <strerror(err)>" for this thread and return the status.
 */
st_status st_errno_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the last failure on this thread, or "" if none was recorded. Borrowed. */
const char *st_errmsg(void);

/* Forget this thread's message. */
void st_clear_error(void);

#endif
