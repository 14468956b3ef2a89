/*
 * test_power_loss.c - cut the power, forget everything not fsynced, reopen, check.
 *
 * The database runs on the fault env (tests/support/env_fault.h) wrapped around
 * st_env_nosync(): the fault env tracks what each sync would have made durable, so real
 * fdatasyncs are not needed. Power cuts come from a thin env in front of it that calls
 * st_fault_env_power_off at its Nth mutating call, from whichever thread makes it (the writer,
 * the flush thread or the compaction thread), so a cut lands inside WAL appends, table writes,
 * MANIFEST edits and CURRENT switches alike. After the cut the database is closed (every write it
 * still tries fails; close must neither crash nor hang), the unsynced state is dropped, the power
 * comes back and the database is reopened, which must succeed.
 *
 * One writer issues the writes, so their sequence order is their issue order. Every write puts
 * values unique to it (batches put one token under several keys), so the state found after the
 * reopen tells which writes survived. The check rolls the model back from the newest write to the
 * oldest until it matches the database exactly; the writes left are the surviving prefix:
 *   - no such prefix: a hole (an older write lost while a newer one survived), a half-applied
 *     batch, or something never written: always a failure;
 *   - sync=always: the prefix must hold every acknowledged write (the write in flight at the
 *     cut may or may not be there);
 *   - sync=interval and sync=none: any prefix is fine, but it must reach at least to the last
 *     st_db_flush or st_db_compact_range that returned ST_OK.
 *
 * Tests:
 *   - test_random_cuts_*: rounds on one accumulating directory, a random workload (puts,
 *     deletes, batches, flushes, range compactions; tiny memtables and tables) cut at a random
 *     file operation; some rounds close cleanly first and then lose power.
 *   - test_cut_points_*: a scripted workload (open an existing database, which rewrites the
 *     MANIFEST and CURRENT; writes; flush; compaction; close and reopen; writes) cut at every
 *     file operation in turn (sampled past the first ones).
 *
 * Rerun a failure with ST_TEST_SEED=<seed>; ST_TEST_SCALE scales the number of rounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"
#include "engine/env.h"
#include "tests/support/env_fault.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"
#include "tests/support/workload.h"

#define NKEYS 1000

/* ---- cutting the power at the Nth mutating call -------------------------------------------- */

/* The fault env under the tripwire env (one at a time, as the tripwire env itself). */
static st_fault_env *g_fe;

/* The tripwire's hook: cut the power. The call then goes on to the fault env, which fails it. */
static void power_off(void *ctx, st_env *inner, st_file *f, const void *data, size_t n)
{
    (void)inner;
    (void)f;
    (void)data;
    (void)n;
    st_fault_env_power_off(ctx);
}

/* Create the fault env over st_env_nosync() and the tripwire env over it. */
static st_env *cut_env_create(void)
{
    assert_int_equal(st_fault_env_create(st_env_nosync(), &g_fe), ST_OK);
    return st_workload_trip_env(st_fault_env_env(g_fe), power_off, g_fe);
}

static void cut_env_destroy(void)
{
    st_fault_env_destroy(g_fe);
    g_fe = NULL;
}

/* ---- the model ---------------------------------------------------------------------------- */

/* One write of the round and what its keys held before it, to roll it back. */
typedef struct pwrite {
    st_workload_write write;
    st_workload_slot before[ST_WORKLOAD_MAX_BATCH];
} pwrite;

/* The writes of one round, in issue (= sequence) order, the last one possibly not acknowledged.
   Write number op of the round is w[op - 1]. */
typedef struct round_log {
    uint32_t round;
    pwrite *w;
    size_t n, cap;
    size_t acked;   /* writes 1..acked returned ST_OK */
    size_t durable; /* writes 1..durable preceded an st_db_flush / compact_range that succeeded */
} round_log;

/* One key space; the key "probe" is each check's own. */
static const st_workload_keys keyspace = {"p", 5, NKEYS, 100};

typedef struct model {
    st_workload_slot keys[NKEYS];
} model;

/* Where the test is, for failure messages. */
static char g_where[128];

/* The value of write op of `round`: unique to the write, the same under each key it puts. */
static size_t make_value(uint8_t *buf, uint32_t round, uint32_t op)
{
    char tag[48];
    snprintf(tag, sizeof(tag), "r%" PRIu32 ".o%" PRIu32 "|", round, op);
    uint64_t h = st_workload_mix64(((uint64_t)round << 32) ^ op);
    return st_workload_value(buf, tag, h, round % 4 == 2 ? h % 2000 : h % 250);
}

/* A value as found in the database (NULL: absent). */
typedef struct found {
    uint8_t *v;
    size_t n;
} found;

static bool slot_matches(const st_workload_slot *sl, const found *f)
{
    if (!sl->present)
        return f->v == NULL;
    if (!f->v)
        return false;
    uint8_t want[ST_WORKLOAD_MAX_VALUE];
    size_t wn = make_value(want, sl->round, sl->op);
    return f->n == wn && memcmp(f->v, want, wn) == 0;
}

static void describe_found(char *buf, size_t cap, const found *f)
{
    if (!f->v) {
        snprintf(buf, cap, "absent");
        return;
    }
    size_t n = 0;
    while (n < f->n && n < 24 && f->v[n] != '|')
        n++;
    snprintf(buf, cap, "%.*s (%zu bytes)", (int)n, (const char *)f->v, f->n);
}

/* Record w as the next write of the round and apply it to the model. */
static void log_write(round_log *rl, model *m, const st_workload_write *w)
{
    if (rl->n == rl->cap) {
        rl->cap = rl->cap ? rl->cap * 2 : 256;
        rl->w = realloc(rl->w, rl->cap * sizeof(*rl->w));
        assert_non_null(rl->w);
    }
    pwrite *x = &rl->w[rl->n++];
    x->write = *w;
    for (int i = 0; i < w->nkeys; i++)
        x->before[i] = m->keys[w->keys[i]];
    st_workload_apply(m->keys, rl->round, (uint32_t)rl->n, w);
}

/* ---- the workload ------------------------------------------------------------------------- */

/* Tiny memtables, tables and levels: flushes and compactions run all the time. */
static void pl_options(st_options *o, st_sync_policy policy, st_env *env)
{
    st_workload_options(o, policy, env);
    o->sync_interval_ms = 5;
}

/* Issue one random write. Returns false once one fails (it stays in the log, unacknowledged). */
static bool one_write(st_db *db, st_batch *b, st_rng *r, round_log *rl, model *m)
{
    st_workload_write w;
    st_workload_choose(r, &keyspace, 60, 15, &w);
    log_write(rl, m, &w);
    uint8_t val[ST_WORKLOAD_MAX_VALUE];
    size_t vn = make_value(val, rl->round, (uint32_t)rl->n);
    st_status s = st_workload_do(db, b, &keyspace, &w, st_slice_make(val, vn));
    if (s != ST_OK)
        return false;
    rl->acked = rl->n;
    return true;
}

/* A flush or full range compaction; on success every write so far is durable whatever the
   policy. Returns false if it failed. */
static bool maintenance(st_db *db, round_log *rl, bool compact)
{
    st_status s = compact ? st_db_compact_range(db, st_slice_make(NULL, 0), st_slice_make(NULL, 0))
                          : st_db_flush(db);
    if (s != ST_OK)
        return false;
    rl->durable = rl->n;
    return true;
}

/* ---- the check ---------------------------------------------------------------------------- */

static void keep_value(void *ctx, int space, uint16_t idx, st_slice v)
{
    found *f = ctx;
    if (space < 0)
        return; /* the probe of an earlier check, maybe not durable */
    f[idx].v = malloc(v.len ? v.len : 1);
    memcpy(f[idx].v, v.data, v.len);
    f[idx].n = v.len;
}

/* Read the whole database into f[NKEYS]; anything outside the key space fails the test. */
static void read_all(st_db *db, found *f)
{
    memset(f, 0, NKEYS * sizeof(*f));
    st_workload_scan(db, &keyspace, 1, "probe", g_where, keep_value, f);
}

/*
 * Find the longest prefix of the round's writes that the database holds exactly, roll the model
 * back to it and return its length. Fails the test if no prefix matches.
 */
static size_t surviving_prefix(st_db *db, model *m, const round_log *rl)
{
    static found f[NKEYS];
    static bool eq[NKEYS];
    read_all(db, f);
    size_t mism = 0;
    for (int k = 0; k < NKEYS; k++) {
        eq[k] = slot_matches(&m->keys[k], &f[k]);
        mism += !eq[k];
    }
    /* What the keys should hold if every acknowledged write survived, for the report. */
    char report[2048];
    size_t rep = 0;
    report[0] = '\0';
    size_t p = rl->n;
    for (;;) {
        if (p == rl->acked) {
            for (int k = 0, shown = 0; k < NKEYS && shown < 8; k++) {
                if (eq[k])
                    continue;
                char a[64], b[64], key[ST_WORKLOAD_KEY_CAP];
                st_workload_key_name(key, &keyspace, (uint16_t)k);
                st_workload_describe(a, sizeof(a), &m->keys[k]);
                describe_found(b, sizeof(b), &f[k]);
                if (rep < sizeof(report))
                    rep += (size_t)snprintf(report + rep, sizeof(report) - rep,
                                            "  %s: want %s, found %s\n", key, a, b);
                shown++;
            }
        }
        if (mism == 0 || p == 0)
            break;
        /* Roll back write p. */
        const pwrite *x = &rl->w[p - 1];
        for (int i = 0; i < x->write.nkeys; i++) {
            int k = x->write.keys[i];
            m->keys[k] = x->before[i];
            bool now = slot_matches(&m->keys[k], &f[k]);
            mism = mism - !eq[k] + !now;
            eq[k] = now;
        }
        p--;
    }
    for (int k = 0; k < NKEYS; k++)
        free(f[k].v);
    if (mism != 0) {
        fprintf(stderr,
                "%s: no prefix of the %zu writes (%zu acknowledged) matches the database; "
                "against all acknowledged writes:\n%s",
                g_where, rl->n, rl->acked, report);
        fail_msg("%s: the surviving writes are not a prefix (a hole, a torn batch or a write "
                 "that never happened)",
                 g_where);
    }
    return p;
}

/* Spot-check some keys with st_db_get (the read path differs from the scan's). */
static void spot_gets(st_db *db, const model *m, st_rng *r)
{
    for (int i = 0; i < 60; i++) {
        int k = (int)(i < 30 ? st_rng_uniform(r, 100) : st_rng_uniform(r, NKEYS));
        char key[ST_WORKLOAD_KEY_CAP];
        st_workload_key_name(key, &keyspace, (uint16_t)k);
        found f = {NULL, 0};
        st_status s = st_db_get(db, NULL, st_slice_str(key), &f.v, &f.n, NULL);
        if (s != ST_OK && s != ST_NOT_FOUND)
            fail_msg("%s: get %s: %s", g_where, key, st_errmsg());
        if (s == ST_NOT_FOUND)
            f.v = NULL;
        if (!slot_matches(&m->keys[k], &f)) {
            char a[64], b[64];
            st_workload_describe(a, sizeof(a), &m->keys[k]);
            describe_found(b, sizeof(b), &f);
            fail_msg("%s: get %s found %s, the scan agreed with %s", g_where, key, b, a);
        }
        st_free(f.v);
    }
}

typedef struct totals {
    uint64_t rounds, writes, acked, survived, lost_acked, inflight_survived, failed_opens;
} totals;

/*
 * Power is off and the database closed: drop what was not synced, power on, reopen, find the
 * surviving prefix and hold it to the policy's promise. Leaves the model at the prefix.
 */
static void recover_and_check(const char *dir, st_sync_policy policy, st_env *env, model *m,
                              round_log *rl, st_rng *r, totals *t)
{
    assert_true(st_fault_env_is_off(g_fe));
    st_status s = st_fault_env_drop_unsynced(g_fe);
    if (s)
        fail_msg("%s: drop_unsynced: %s", g_where, st_errmsg());
    st_fault_env_power_on(g_fe);
    st_workload_trip_arm(0);
    st_options o;
    pl_options(&o, policy, env);
    st_db *db;
    s = st_db_open(dir, &o, &db);
    if (s)
        fail_msg("%s: reopen after the power cut: %s: %s", g_where, st_status_name(s), st_errmsg());
    size_t p = surviving_prefix(db, m, rl);
    spot_gets(db, m, r);
    /* Writable again: a probe key outside the model (the scan ignores it). */
    st_workload_check_usable(db, g_where, "probe", "probe", NULL);
    assert_int_equal(st_db_delete(db, st_slice_str("probe"), NULL), ST_OK);
    st_db_close(db);

    if (p < rl->durable)
        fail_msg("%s: %zu writes survived but a flush or compaction had made %zu durable", g_where,
                 p, rl->durable);
    if (policy == ST_SYNC_ALWAYS && p < rl->acked)
        fail_msg("%s: sync=always lost acknowledged writes: %zu of %zu survived", g_where, p,
                 rl->acked);
    t->rounds++;
    t->writes += rl->n;
    t->acked += rl->acked;
    t->survived += p;
    t->lost_acked += p < rl->acked ? rl->acked - p : 0;
    t->inflight_survived += p > rl->acked;
}

static void round_reset(round_log *rl, uint32_t round)
{
    rl->round = round;
    rl->n = rl->acked = rl->durable = 0;
}

/* ---- random cuts -------------------------------------------------------------------------- */

static void random_cuts(st_sync_policy policy, uint64_t rounds)
{
    st_rng r;
    st_workload_seed(&r, "power_loss", policy);
    char *dir = st_test_mkdtemp("power");
    st_env *env = cut_env_create();
    static model m;
    memset(&m, 0, sizeof(m));
    round_log rl = {0};
    st_batch *b;
    assert_int_equal(st_batch_create(&b), ST_OK);
    totals t = {0};
    uint64_t start = st_workload_now_ms(), clean = 0, tripped = 0;

    for (uint32_t round = 1; round <= rounds; round++) {
        round_reset(&rl, round);
        /* Cut somewhere in the first ~1500 file operations: the open, or a few thousand
           writes with their flushes and compactions. Some rounds close cleanly first. */
        uint64_t cut = 1 + st_rng_uniform(&r, 1500);
        bool close_first = st_rng_uniform(&r, 8) == 0;
        snprintf(g_where, sizeof(g_where),
                 "%s round %" PRIu32 " (cut at file operation %" PRIu64 "%s)",
                 st_workload_policy_name(policy), round, cut,
                 close_first ? ", after a clean close" : "");
        if (!close_first)
            st_workload_trip_arm(cut);
        st_options o;
        pl_options(&o, policy, env);
        st_db *db = NULL;
        st_status s = st_db_open(dir, &o, &db);
        if (s) {
            /* Only the cut may make the open fail. */
            if (!st_fault_env_is_off(g_fe))
                fail_msg("%s: open: %s", g_where, st_errmsg());
            t.failed_opens++;
            tripped++;
        } else {
            uint64_t ops = close_first ? 200 + st_rng_uniform(&r, 800) : 20000;
            for (uint64_t i = 0; i < ops && !st_fault_env_is_off(g_fe); i++) {
                uint64_t dice = st_rng_uniform(&r, 1000);
                bool ok = dice < 8    ? maintenance(db, &rl, false)
                          : dice < 10 ? maintenance(db, &rl, true)
                                      : one_write(db, b, &r, &rl, &m);
                if (!ok) {
                    if (!st_fault_env_is_off(g_fe))
                        fail_msg("%s: an operation failed with the power on: %s", g_where,
                                 st_errmsg());
                    break;
                }
            }
            if (close_first) {
                st_db_close(db);
                db = NULL;
            }
            tripped += st_fault_env_is_off(g_fe); /* the cut came in the middle of the work */
            st_fault_env_power_off(g_fe);
            st_db_close(db); /* with a dead disk: must neither crash nor hang */
        }
        clean += close_first;
        recover_and_check(dir, policy, env, &m, &rl, &r, &t);
    }
    fprintf(stderr,
            "power_loss(%s): %" PRIu64 " rounds (%" PRIu64 " closed cleanly first, %" PRIu64
            " cut during open), %" PRIu64 " writes, %" PRIu64 " acknowledged, %" PRIu64
            " survived, %" PRIu64 " acknowledged lost, %" PRIu64 " in-flight survived, %.1f s\n",
            st_workload_policy_name(policy), t.rounds, clean, t.failed_opens, t.writes, t.acked,
            t.survived, t.lost_acked, t.inflight_survived,
            (double)(st_workload_now_ms() - start) / 1000.0);
    assert_true(t.acked > 0);
    /* Most rounds must be cut by the tripwire, not only by the power-off after the work. */
    if (tripped * 2 < rounds - clean)
        fail_msg("power_loss(%s): only %" PRIu64 " of %" PRIu64 " rounds were cut mid-work",
                 st_workload_policy_name(policy), tripped, rounds - clean);
    st_batch_destroy(b);
    free(rl.w);
    cut_env_destroy();
    st_test_rmdir(dir);
    free(dir);
}

static void test_random_cuts_always(void **state)
{
    (void)state;
    random_cuts(ST_SYNC_ALWAYS, st_test_scaled(40));
}

static void test_random_cuts_interval(void **state)
{
    (void)state;
    random_cuts(ST_SYNC_INTERVAL, st_test_scaled(40));
}

static void test_random_cuts_none(void **state)
{
    (void)state;
    random_cuts(ST_SYNC_NONE, st_test_scaled(40));
}

/* ---- cuts at every file operation of a scripted workload ----------------------------------- */

/*
 * Build the starting database in dir: tables in L0 and deeper levels, and records in the WAL.
 * Every write is acknowledged and, after the clean close under sync=always, durable.
 */
static void scripted_setup(const char *dir, st_env *env, model *m, round_log *rl, uint64_t seed)
{
    st_options o;
    pl_options(&o, ST_SYNC_ALWAYS, env);
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);
    st_rng r;
    st_rng_seed(&r, seed);
    st_batch *b;
    assert_int_equal(st_batch_create(&b), ST_OK);
    for (int i = 0; i < 400; i++) {
        assert_true(one_write(db, b, &r, rl, m));
        if (i == 150)
            assert_true(maintenance(db, rl, true));
        if (i == 250)
            assert_true(maintenance(db, rl, false));
    }
    st_batch_destroy(b);
    st_db_close(db);
}

/*
 * The scripted phase: open (recovering the WAL, writing a new MANIFEST and CURRENT), 40 writes,
 * flush, 40 writes, range compaction, close, reopen, 20 writes, flush, close. Stops at the first
 * failure (the cut). Returns whether it ran to the end.
 */
static bool scripted_run(const char *dir, st_sync_policy policy, st_env *env, model *m,
                         round_log *rl, uint64_t seed)
{
    st_options o;
    pl_options(&o, policy, env);
    st_db *db = NULL;
    st_rng r;
    st_rng_seed(&r, seed ^ 0x5eed);
    st_batch *b;
    assert_int_equal(st_batch_create(&b), ST_OK);
    bool ok = st_db_open(dir, &o, &db) == ST_OK;
    for (int phase = 0; ok && phase < 3; phase++) {
        for (int i = 0; ok && i < (phase == 2 ? 20 : 40); i++)
            ok = one_write(db, b, &r, rl, m);
        if (ok && phase == 1) {
            ok = maintenance(db, rl, true);
            st_db_close(db);
            db = NULL;
            ok = ok && st_db_open(dir, &o, &db) == ST_OK;
        } else if (ok) {
            ok = maintenance(db, rl, false);
        }
    }
    if (!ok && !st_fault_env_is_off(g_fe))
        fail_msg("%s: an operation failed with the power on: %s", g_where, st_errmsg());
    st_db_close(db);
    st_batch_destroy(b);
    return ok;
}

/* Copy the database in `from` to `to` (a new directory) with plain POSIX calls. */
static void copy_db(const char *from, const char *to)
{
    st_env *px = st_env_posix();
    const char *subs[3] = {"", "/sst", "/wal"};
    for (int d = 0; d < 3; d++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof(src), "%s%s", from, subs[d]);
        snprintf(dst, sizeof(dst), "%s%s", to, subs[d]);
        assert_int_equal(px->mkdir(px, dst), ST_OK);
        char **names;
        size_t count;
        assert_int_equal(px->list(px, src, &names, &count), ST_OK);
        for (size_t i = 0; i < count; i++) {
            if (strcmp(names[i], "LOCK") == 0 || strcmp(names[i], "sst") == 0 ||
                strcmp(names[i], "wal") == 0)
                continue;
            char *sp = st_test_path(src, names[i]), *dp = st_test_path(dst, names[i]);
            uint8_t *data;
            size_t n;
            assert_int_equal(st_env_read_file(px, sp, 64u << 20, &data, &n), ST_OK);
            st_file *f;
            assert_int_equal(px->open_writable(px, dp, false, &f), ST_OK);
            assert_int_equal(px->append(f, data, n), ST_OK);
            assert_int_equal(px->close(f), ST_OK);
            free(data);
            free(sp);
            free(dp);
        }
        st_env_free_names(names, count);
    }
}

static void cut_points(st_sync_policy policy, uint64_t exhaustive, uint64_t samples)
{
    st_rng r;
    uint64_t seed = st_workload_seed(&r, "power_cut_points", policy);
    static model m;
    round_log rl = {0};
    totals t = {0};
    uint64_t start = st_workload_now_ms();

    /* The starting database is built once; each run works on a copy, which a fresh fault env
       takes as durable as it is (it must not remember files removed behind its back). */
    static model m0;
    round_log rl0 = {0};
    memset(&m0, 0, sizeof(m0));
    round_reset(&rl0, 1);
    char *base = st_test_mkdtemp("powerbase");
    st_env *env = cut_env_create();
    scripted_setup(base, env, &m0, &rl0, seed);
    cut_env_destroy();

    /* Run 0 is a dry run: it counts the file operations of the scripted phase. */
    st_workload_points pt = {.n = 0, .exhaustive = exhaustive, .samples = samples, .rng = &r};
    do {
        char *top = st_test_mkdtemp("powerpt");
        char *dir = st_test_path(top, "db");
        copy_db(base, dir);
        env = cut_env_create();
        memcpy(&m, &m0, sizeof(m));
        round_reset(&rl, 1);
        rl.n = rl.acked = rl0.n;
        rl.durable = rl0.durable;
        if (rl.cap < rl0.n) {
            rl.cap = rl0.cap;
            rl.w = realloc(rl.w, rl.cap * sizeof(*rl.w));
        }
        memcpy(rl.w, rl0.w, rl0.n * sizeof(*rl.w));
        if (pt.n == 0) {
            snprintf(g_where, sizeof(g_where), "%s dry run", st_workload_policy_name(policy));
            st_workload_trip_arm(0);
            assert_true(scripted_run(dir, policy, env, &m, &rl, seed));
            pt.total = st_workload_trip_calls();
        } else {
            snprintf(g_where, sizeof(g_where), "%s cut point %" PRIu64 " of %" PRIu64,
                     st_workload_policy_name(policy), pt.n, pt.total);
            st_workload_trip_arm(pt.n);
            scripted_run(dir, policy, env, &m, &rl, seed);
            if (!st_fault_env_is_off(g_fe))
                st_fault_env_power_off(g_fe); /* the run ended before the cut: cut now */
            recover_and_check(dir, policy, env, &m, &rl, &r, &t);
        }
        cut_env_destroy();
        st_test_rmdir(top);
        free(dir);
        free(top);
    } while (st_workload_points_next(&pt) && pt.n <= pt.total);
    st_test_rmdir(base);
    free(base);
    free(rl0.w);
    fprintf(stderr,
            "power_cut_points(%s): the scripted phase makes %" PRIu64 " file operations; %" PRIu64
            " cut points, %" PRIu64 " acknowledged writes checked, %" PRIu64
            " acknowledged lost, %.1f s\n",
            st_workload_policy_name(policy), pt.total, t.rounds, t.acked, t.lost_acked,
            (double)(st_workload_now_ms() - start) / 1000.0);
    free(rl.w);
}

static void test_cut_points_always(void **state)
{
    (void)state;
    cut_points(ST_SYNC_ALWAYS, 250, st_test_scaled(60));
}

static void test_cut_points_none(void **state)
{
    (void)state;
    cut_points(ST_SYNC_NONE, 60, st_test_scaled(60));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_points_always),  cmocka_unit_test(test_cut_points_none),
        cmocka_unit_test(test_random_cuts_always), cmocka_unit_test(test_random_cuts_interval),
        cmocka_unit_test(test_random_cuts_none),
    };
    /* ST_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("ST_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ST_TEST_FILTER"));
    return cmocka_run_group_tests_name("power_loss", tests, NULL, NULL);
}
