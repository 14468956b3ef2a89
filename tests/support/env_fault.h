/*
 * env_fault.h - an st_env for tests that wraps another (normally st_env_posix()) and injects
 * faults: failed appends and syncs, a full disk, and power loss (SQLite's test_vfs.c, LevelDB's
 * fault_injection_test.cc).
 *
 * Usage:
 *     st_fault_env *fe;
 *     st_fault_env_create(st_env_posix(), &fe);
 *     options.env = st_fault_env_env(fe);
 *     ... open the database, write ...
 *     st_fault_env_power_off(fe);        // from now on every mutating call fails
 *     ... close the database (its writes fail; handles are still released) ...
 *     st_fault_env_drop_unsynced(fe);    // the files are now what a power cut would leave
 *     st_fault_env_power_on(fe);
 *     ... reopen and check ...
 *
 * Power-loss model. The fault env tracks every file it creates, opens for writing, renames,
 * links or unlinks, by path, and every directory by the path given to sync_dir:
 *   - File data is durable up to the file's size at the start of its last successful sync; a
 *     file never synced through this env is durable as empty. A truncate (or a reopen without
 *     `append`) is taken as durable at once: what it cut is gone.
 *   - A create, rename, link or unlink is durable once sync_dir has succeeded on its directory
 *     (for a rename across directories, either one). Making an operation durable also makes
 *     durable every earlier operation on the same file (a durable rename implies its create).
 *   - An unlinked file, and a file that a rename replaced, are kept under a hidden name
 *     (".stfault-N" in the same directory; list() does not show them) until that is durable,
 *     so the operation can be undone.
 *   - Files that existed before the fault env first saw them are taken as durable as they were.
 *   - mkdir is taken as durable at once. Directories are not renamed or removed through it.
 * Paths are compared as strings (repeated and trailing slashes are ignored), so give each file
 * one spelling, and pass sync_dir the directory part of the file paths.
 *
 * Thread safety: every function, and every function of the env, may be called from any thread.
 * One mutex guards the state; appends, reads and syncs run outside it.
 */
#ifndef STRATA_TESTS_ENV_FAULT_H
#define STRATA_TESTS_ENV_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/env.h"
#include "engine/status.h"

typedef struct st_fault_env st_fault_env;

/*
 * Wrap `base` (borrowed; must outlive the fault env). The fault env starts powered on, with no
 * faults armed and no byte budget.
 */
st_status st_fault_env_create(st_env *base, st_fault_env **out);

/*
 * Free the fault env. Every file and lock opened through it must be closed first. Hidden files
 * still pending (unlinks and replaced files not yet made durable) are removed. Accepts NULL.
 */
void st_fault_env_destroy(st_fault_env *fe);

/* The env to hand to the code under test. Valid until destroy. */
st_env *st_fault_env_env(st_fault_env *fe);

/* Which calls a fault applies to. */
typedef struct st_fault_spec {
    uint64_t nth;            /* 1 = the next matching call, 2 = the one after, ... (0 = 1) */
    const char *path_substr; /* only paths containing this (copied); NULL or "" = every path */
    st_status code;          /* ST_IO_ERROR or ST_NO_SPACE (0 = ST_IO_ERROR) */
    size_t prefix;           /* appends: bytes of the failing append written first (clamped) */
    bool sticky;             /* after the nth, every later matching call fails too */
} st_fault_spec;

/*
 * Arm a fault on append (resp. file sync) calls, replacing any armed before; spec == NULL
 * disarms. Counting starts now. A failing append writes min(prefix, n) bytes and returns
 * spec->code with a message naming the path. A failing sync returns spec->code without syncing
 * and makes nothing durable.
 */
void st_fault_env_fail_append(st_fault_env *fe, const st_fault_spec *spec);
void st_fault_env_fail_sync(st_fault_env *fe, const st_fault_spec *spec);
/* The same for sync_dir calls (path_substr matches the directory path); nothing is committed. */
void st_fault_env_fail_sync_dir(st_fault_env *fe, const st_fault_spec *spec);

/*
 * Allow `bytes` more bytes of appends (over all files) from now; an append beyond that writes
 * what fits and fails with ST_NO_SPACE, as a full disk does. UINT64_MAX = unlimited (the
 * default). Budget left: st_fault_env_budget_left.
 */
void st_fault_env_set_budget(st_fault_env *fe, uint64_t bytes);
uint64_t st_fault_env_budget_left(st_fault_env *fe);

/* Disarm the append and sync faults and lift the budget. */
void st_fault_env_clear_faults(st_fault_env *fe);

/* Calls seen since create or the last st_fault_env_reset_stats, failed ones included. */
typedef struct st_fault_stats {
    uint64_t appends;
    uint64_t append_bytes; /* bytes actually written */
    uint64_t syncs;
    uint64_t dir_syncs;
    uint64_t injected; /* faults injected (append, sync, budget) */
} st_fault_stats;

/*
 * Count only calls on paths containing `path_substr` (copied; NULL or "" = every path; dir_syncs
 * match the directory path), and reset the counters.
 */
void st_fault_env_reset_stats(st_fault_env *fe, const char *path_substr);
st_fault_stats st_fault_env_stats(st_fault_env *fe);

/*
 * Cut the power: once this returns, every mutating call (open_writable, append, sync, truncate,
 * mkdir, sync_dir, rename, link, unlink) fails with ST_IO_ERROR, so background threads can
 * write nothing more. Calls already running when it is called finish first (this waits for
 * them). Reads, size queries, list, close and lock/unlock still work.
 */
void st_fault_env_power_off(st_fault_env *fe);

/*
 * With the power off, rewrite the real files to what a power loss leaves (see the model
 * above): undo every create, rename, link and unlink that is not durable, newest first, then
 * truncate every file to its durable size. Afterwards everything on disk counts as durable.
 * ST_INVALID_ARGUMENT if the power is on; an error of the base env if a step fails (the message
 * names it; the remaining steps are still attempted).
 */
st_status st_fault_env_drop_unsynced(st_fault_env *fe);

/* Let calls through again. Armed faults and the budget stay as they were. */
void st_fault_env_power_on(st_fault_env *fe);

bool st_fault_env_is_off(st_fault_env *fe);

#endif
