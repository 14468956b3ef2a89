/*
 * env.h - every file, directory, sync and clock call the engine makes goes through an st_env.
 *
 * st_env_posix() is the default. Tests substitute one that fails the Nth write or sync, runs out
 * of space, or forgets everything not yet fsynced (tests/support/env_fault.h), so recovery can be
 * tested without pulling the plug (SQLite's test_vfs.c, LevelDB's fault_injection_test.cc).
 *
 * Files are opaque st_file handles created by the env that owns them. A writable file is append-
 * only. Paths are NUL-terminated strings, borrowed for the call. All functions report errors as
 * st_status with a message naming the path (st_errno_error).
 *
 * Thread safety: an env is shared by all threads. A writable file is appended to by one thread
 * at a time, but st_env_sync may run concurrently with an append on the same file (the interval
 * syncer does this). A readable file may be read by many threads at once (pread semantics).
 */
#ifndef STRATA_ENGINE_ENV_H
#define STRATA_ENGINE_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/status.h"

typedef struct st_env st_env;
typedef struct st_file st_file;
typedef struct st_filelock st_filelock;

struct st_env {
    /* Create (truncating any existing file) or, with `append`, open for appending at its end. */
    st_status (*open_writable)(st_env *env, const char *path, bool append, st_file **out);
    /* Open an existing file for reading. ST_NOT_FOUND if it does not exist. */
    st_status (*open_readable)(st_env *env, const char *path, st_file **out);
    /* Append all n bytes (looping over short writes). On error some prefix may be written. */
    st_status (*append)(st_file *f, const void *data, size_t n);
    /* Read up to n bytes at offset; *got < n only at end of file. */
    st_status (*read_at)(st_file *f, uint64_t offset, void *buf, size_t n, size_t *got);
    /* fdatasync: the file's data (and size) survive a power loss once this returns ST_OK. */
    st_status (*sync)(st_file *f);
    /* Cut the file to `size` bytes (writable files). */
    st_status (*truncate)(st_file *f, uint64_t size);
    /* Current size in bytes. */
    st_status (*size)(st_file *f, uint64_t *size);
    /*
     * Map the whole (readable, immutable) file read-only. *addr stays valid until close. An env
     * that cannot map returns ST_NOT_SUPPORTED and callers fall back to read_at.
     */
    st_status (*map)(st_file *f, const uint8_t **addr, uint64_t *len);
    /*
     * Optional (NULL when the env cannot). Grow a writable file to at least offset + len bytes
     * with its blocks allocated, and map [offset, offset + len) shared and writable at *addr;
     * offset is a multiple of ST_ENV_MAP_ALIGN. A store into the map is in the operating
     * system's hands as soon as it is made, as an append's bytes are once append returns: it
     * survives the death of the process, and env->sync makes it durable. Because the blocks are
     * allocated here, a full disk is reported by this call (ST_NO_SPACE), never as a fault on a
     * later store. The file reads as zeros past what was stored; its owner truncates it when
     * done. ST_NOT_SUPPORTED if the file system cannot allocate ahead (callers then append).
     */
    st_status (*map_append)(st_file *f, uint64_t offset, size_t len, uint8_t **addr);
    /* Undo one map_append mapping (the file keeps its size). */
    void (*unmap_append)(st_file *f, uint8_t *addr, size_t len);
    /* Close and free the handle (accepts NULL). Does not sync. */
    st_status (*close)(st_file *f);

    /* Directory and name operations. */
    st_status (*mkdir)(st_env *env, const char *path);    /* ST_OK if it already exists */
    st_status (*sync_dir)(st_env *env, const char *path); /* make entries in it durable */
    st_status (*rename)(st_env *env, const char *from, const char *to); /* atomic replace */
    st_status (*link)(st_env *env, const char *from, const char *to);   /* hard link */
    st_status (*unlink)(st_env *env, const char *path);
    st_status (*file_size)(st_env *env, const char *path, uint64_t *size);
    bool (*exists)(st_env *env, const char *path);
    /*
     * List the names (not paths) in directory `path`, except "." and "..". *names is an array of
     * *count strings, owned by the caller: free with st_env_free_names.
     */
    st_status (*list)(st_env *env, const char *path, char ***names, size_t *count);

    /* Exclusive advisory lock on `path` (created if absent). ST_BUSY if someone holds it. */
    st_status (*lock)(st_env *env, const char *path, st_filelock **out);
    void (*unlock)(st_filelock *lock); /* accepts NULL */

    /* Microseconds on a monotonic clock. */
    uint64_t (*now_micros)(st_env *env);
    /* Microseconds since the Unix epoch (for logs and file metadata). */
    uint64_t (*wall_micros)(st_env *env);
};

/* map_append offsets are multiples of this (a multiple of every page size Linux uses). */
#define ST_ENV_MAP_ALIGN ((uint64_t)1 << 16)

/* The process-wide POSIX environment. Never NULL, never freed. */
st_env *st_env_posix(void);

void st_env_free_names(char **names, size_t count);

/*
 * Write `n` bytes to `path` through a temporary file: write path.tmp, sync it, rename it over
 * path, sync the directory `dir`. On failure the temporary file is removed and `path` is as it was.
 */
st_status st_env_write_file_atomic(st_env *env, const char *dir, const char *path, const void *data,
                                   size_t n);

/*
 * Read the whole file at `path` into a buffer the caller owns (free()). ST_NOT_FOUND if absent.
 * Refuses files larger than `max_bytes` with ST_CORRUPTION.
 */
st_status st_env_read_file(st_env *env, const char *path, size_t max_bytes, uint8_t **data,
                           size_t *n);

#endif
