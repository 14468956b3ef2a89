/*
 * workload.h - the write workload of the crash tests (test_crash.c, test_power_loss.c), the
 * model of what each key should hold after it, and an env that interrupts it at a chosen file
 * operation.
 *
 * Keys live in key spaces: a space is `count` keys named <prefix><index>, the index written in
 * `digits` zero-padded decimal digits ("k2-0042", "p00042"). A write is a put, a delete, or a
 * batch that puts one value under several keys of a space and deletes some others, all or
 * nothing; each key it touches is drawn from the space's first `hot` keys half the time, so
 * versions of a key pile up. The value of a write is the test's: a tag naming the write, then
 * bytes derived from a hash of its name (st_workload_value), so the value found under a key says
 * which write put it.
 *
 * The model is one slot per key: which write last touched it and whether it put or deleted it.
 * After a crash a test compares the database with its model (st_workload_scan is the full scan),
 * then checks that the database is still usable (st_workload_check_usable). The checks fail the
 * running cmocka test (fail_msg) with a message that starts with `where`, the test's description
 * of where it is ("always round 12", "none crash point 7").
 *
 * The tripwire env sits in front of another env, counts its mutating calls and calls a hook at
 * the armed one: test_crash.c kills the process there, test_power_loss.c cuts the power.
 *
 * Nothing here is thread-safe unless it says so; the tripwire env counts calls from any thread.
 */
#ifndef STRATA_TESTS_WORKLOAD_H
#define STRATA_TESTS_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/db.h"
#include "engine/env.h"
#include "tests/support/testutil.h"

#define ST_WORKLOAD_MAX_BATCH 8    /* keys per batch at most */
#define ST_WORKLOAD_MAX_VALUE 4096 /* bytes per value at most */
#define ST_WORKLOAD_KEY_CAP   32   /* bytes for a key name with its NUL */

/* ---- options and bookkeeping --------------------------------------------------------------- */

/*
 * Options for a crash test: tiny memtables, tables and levels so flushes and compactions run all
 * the time, paranoid checks, and with $ST_TEST_VERBOSE the engine's log on stderr. `env` is
 * borrowed (NULL: the default env). The caller sets sync_interval_ms if it cares.
 */
void st_workload_options(st_options *o, st_sync_policy policy, st_env *env);

/* "always", "interval" or "none". */
const char *st_workload_policy_name(st_sync_policy p);

/* The seed of the test named "<test>(<policy name>)" (st_test_seed prints it); seeds `r` too. */
uint64_t st_workload_seed(st_rng *r, const char *test, st_sync_policy policy);

/* CLOCK_MONOTONIC in milliseconds, for the summaries. */
uint64_t st_workload_now_ms(void);

/* ---- keys and values ----------------------------------------------------------------------- */

typedef struct st_workload_keys {
    const char *prefix; /* borrowed; must outlive every use of the space */
    int digits;         /* of the index, zero-padded; at most 5 */
    uint16_t count;     /* indexes 0 .. count - 1 */
    uint16_t hot;       /* keys are drawn from 0 .. hot - 1 half the time; 1 <= hot <= count */
} st_workload_keys;

/* The name of key idx of ks into buf (ST_WORKLOAD_KEY_CAP bytes), NUL-terminated. */
void st_workload_key_name(char *buf, const st_workload_keys *ks, uint16_t idx);

/* Whether `key` is exactly the name of a key of ks; if so *idx is its index. */
bool st_workload_key_parse(const st_workload_keys *ks, st_slice key, uint16_t *idx);

/* MurmurHash3's 64-bit finalizer: hashes a write's name into the seed of its value. */
uint64_t st_workload_mix64(uint64_t x);

/*
 * A value into buf (ST_WORKLOAD_MAX_VALUE bytes): the NUL-terminated `tag` without its NUL, then
 * `extra` bytes from a generator seeded with h. The tag and extra must fit. Returns the length.
 */
size_t st_workload_value(uint8_t *buf, const char *tag, uint64_t h, size_t extra);

/* ---- writes -------------------------------------------------------------------------------- */

enum { ST_WORKLOAD_PUT = 1, ST_WORKLOAD_DELETE = 2, ST_WORKLOAD_BATCH = 3 };

/* One write over a key space. Plain bytes: test_crash.c sends it through a pipe. */
typedef struct st_workload_write {
    uint8_t type;                         /* ST_WORKLOAD_PUT, _DELETE or _BATCH */
    uint8_t nkeys;                        /* 1, or 2 .. ST_WORKLOAD_MAX_BATCH for a batch */
    uint8_t delmask;                      /* bit i: keys[i] is deleted rather than put */
    uint8_t pad;                          /* 0 */
    uint16_t keys[ST_WORKLOAD_MAX_BATCH]; /* distinct key indexes; unused ones 0 */
} st_workload_write;

/*
 * Draw a write over ks from r: put_pct in 100 single puts, delete_pct in 100 single deletes, the
 * rest batches of 2 to ST_WORKLOAD_MAX_BATCH keys, each key of a batch deleted with chance 1/6.
 */
void st_workload_choose(st_rng *r, const st_workload_keys *ks, unsigned put_pct,
                        unsigned delete_pct, st_workload_write *w);

/*
 * Perform w on db: st_db_put, st_db_delete, or st_db_write of a batch built in `b` (cleared
 * first; the caller's, reused across writes). Every key w puts gets `value` (borrowed for the
 * call). Returns what the engine returned.
 */
st_status st_workload_do(st_db *db, st_batch *b, const st_workload_keys *ks,
                         const st_workload_write *w, st_slice value);

/* ---- the model ----------------------------------------------------------------------------- */

/* What a key should hold: the write that last touched it. */
typedef struct st_workload_slot {
    uint32_t round; /* the round of that write */
    uint32_t op;    /* its number among its writer's writes of the round, from 1; 0: never */
    bool present;   /* it put the key (true) or deleted it (false) */
} st_workload_slot;

/* Record w, write number op of `round`, in slots (the key space's, indexed by key index). */
void st_workload_apply(st_workload_slot *slots, uint32_t round, uint32_t op,
                       const st_workload_write *w);

/* "absent (never written)", "put r3.o17" or "deleted by r3.o17", into buf. */
void st_workload_describe(char *buf, size_t cap, const st_workload_slot *sl);

/* ---- checks after recovery ----------------------------------------------------------------- */

/* Called by st_workload_scan for each key found: `space` indexes the spaces given, or is -1 for
   the special key (idx is then 0). `value` is valid for the call only. */
typedef void (*st_workload_visit_fn)(void *ctx, int space, uint16_t idx, st_slice value);

/*
 * Read the whole database in key order and hand every key to visit(ctx, ...). A key that is in
 * none of spaces[0 .. nspaces) and is not `special` (NULL: none) fails the test as a key never
 * written; so does an iterator error.
 */
void st_workload_scan(st_db *db, const st_workload_keys *spaces, int nspaces, const char *special,
                      const char *where, st_workload_visit_fn visit, void *ctx);

/*
 * The checks after a recovery that need no model: no background error, and key = value put now
 * reads back. *stats, if not NULL, receives the engine's stats. Fails the test otherwise.
 */
void st_workload_check_usable(st_db *db, const char *where, const char *key, const char *value,
                              st_stats *stats);

/* ---- crash points -------------------------------------------------------------------------- */

/*
 * Which of a scripted workload's `total` file operations to interrupt: each up to `exhaustive`,
 * then `samples` more at random strides over the rest (2 (total - exhaustive) / samples apart on
 * average). Set every field but `sampled` (0); n is the first point.
 */
typedef struct st_workload_points {
    uint64_t n; /* the point to try now */
    uint64_t total, exhaustive, samples;
    uint64_t sampled; /* samples taken so far */
    st_rng *rng;      /* borrowed */
} st_workload_points;

/* Advance p->n to the next point; false once the samples are used up. */
bool st_workload_points_next(st_workload_points *p);

/* ---- the tripwire env ---------------------------------------------------------------------- */

/*
 * Called at the armed call, before it goes on to `inner` (if the hook returns). For an append,
 * f, data and n are its arguments, so the hook can write part of it first; otherwise NULL, NULL
 * and 0.
 */
typedef void (*st_workload_trip_fn)(void *ctx, st_env *inner, st_file *f, const void *data,
                                    size_t n);

/*
 * Put the tripwire env in front of `inner` (borrowed; must outlive its use) and return it. It
 * counts the mutating calls (open_writable, append, sync, truncate, mkdir, sync_dir, rename,
 * link, unlink) from every thread and passes every call on to inner; at the armed call it calls
 * trip(ctx, ...) first. File handles are inner's (the file calls take no env argument), so the
 * state is global: one tripwire env per process, and installing replaces it. It starts disarmed
 * with its count at 0.
 */
st_env *st_workload_trip_env(st_env *inner, st_workload_trip_fn trip, void *ctx);

/* Trip at the nth mutating call from now (0: never); the count restarts at 0. */
void st_workload_trip_arm(uint64_t nth);

/* Mutating calls counted since the env was installed or last armed. */
uint64_t st_workload_trip_calls(void);

#endif
