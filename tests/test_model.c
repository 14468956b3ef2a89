/*
 * test_model.c - the engine against an in-memory model.
 *
 * A seeded random mix of puts, deletes, batches, gets, scans (forward and reverse, bounded and
 * not, with limits), snapshots, flushes, range compactions and reopen cycles, with every read
 * checked against a plain array. Tiny memtables and tables make flushes and compactions happen
 * all the time; paranoid_checks makes the engine verify the level invariants (levels >= 1 never
 * overlap, L0 in order) after every version change, and any violation would surface as a sticky
 * error that fails the run.
 *
 * Then the failure patterns of the seed design, each as its own scenario: an older value coming
 * back after an L0->L1 compaction, a deleted key coming back after compaction, a flush landing
 * while a compaction runs, and a merge whose output is all tombstones.
 *
 * Rerun a failure with ST_TEST_SEED=<seed>; ST_TEST_SCALE scales the number of operations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"

#define NKEYS   3000
#define MAX_VAL 300

typedef struct kv {
    uint8_t key[24];
    size_t klen;
    uint8_t *val; /* NULL: absent */
    size_t vlen;
} kv;

typedef struct model {
    kv keys[NKEYS]; /* sorted by key bytes, so index order is key order */
} model;

static int cmp_kv(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    return st_slice_cmp(st_slice_make(x->key, x->klen), st_slice_make(y->key, y->klen));
}

/* Distinct keys of 1..20 random bytes (NUL and 0xFF included), sorted. */
static void model_init(model *m, st_rng *r)
{
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < NKEYS; i++) {
        for (;;) {
            kv *k = &m->keys[i];
            k->klen = 1 + st_rng_uniform(r, 20);
            st_rng_bytes(r, k->key, k->klen);
            /* Bias toward few distinct bytes so keys share prefixes. */
            for (size_t j = 0; j < k->klen; j++)
                if (st_rng_uniform(r, 2))
                    k->key[j] = (uint8_t) "\x00\x01\x7f\x80\xff"[st_rng_uniform(r, 5)];
            bool dup = false;
            for (int j = 0; j < i && !dup; j++)
                dup = m->keys[j].klen == k->klen && !memcmp(m->keys[j].key, k->key, k->klen);
            if (!dup)
                break;
        }
    }
    qsort(m->keys, NKEYS, sizeof(kv), cmp_kv);
}

static void model_set(model *m, int i, const uint8_t *v, size_t n)
{
    free(m->keys[i].val);
    m->keys[i].val = NULL;
    if (v) {
        m->keys[i].val = malloc(n ? n : 1);
        memcpy(m->keys[i].val, v, n);
        m->keys[i].vlen = n;
    }
}

static void model_copy(model *dst, const model *src)
{
    memcpy(dst, src, sizeof(*dst));
    for (int i = 0; i < NKEYS; i++) {
        if (src->keys[i].val) {
            dst->keys[i].val = malloc(src->keys[i].vlen ? src->keys[i].vlen : 1);
            memcpy(dst->keys[i].val, src->keys[i].val, src->keys[i].vlen);
        }
    }
}

static void model_free(model *m)
{
    for (int i = 0; i < NKEYS; i++)
        free(m->keys[i].val);
}

static st_slice key_of(const model *m, int i)
{
    return st_slice_make(m->keys[i].key, m->keys[i].klen);
}

static void check_get(st_db *db, const st_snapshot *snap, const model *m, int i)
{
    uint8_t *v = NULL;
    size_t n = 0;
    st_status s = st_db_get(db, snap, key_of(m, i), &v, &n, NULL);
    if (m->keys[i].val == NULL) {
        if (s != ST_NOT_FOUND)
            fprintf(stderr, "key %d should be absent, got status %s (%zu bytes)\n", i,
                    st_status_name(s), n);
        assert_int_equal(s, ST_NOT_FOUND);
        return;
    }
    if (s)
        fprintf(stderr, "get key %d: %s\n", i, st_errmsg());
    assert_int_equal(s, ST_OK);
    if (n != m->keys[i].vlen || (n && memcmp(v, m->keys[i].val, n)))
        fprintf(stderr, "key %d: wrong value (%zu bytes, want %zu)\n", i, n, m->keys[i].vlen);
    assert_int_equal(n, m->keys[i].vlen);
    if (n)
        assert_memory_equal(v, m->keys[i].val, n);
    st_free(v);
}

/* Scan keys [lo, hi) of the model (index bounds; -1 = unbounded) through the db, compare. */
static void check_scan(st_db *db, const st_snapshot *snap, const model *m, int lo, int hi,
                       bool reverse, int limit)
{
    st_slice start = lo >= 0 ? key_of(m, lo) : st_slice_make(NULL, 0);
    st_slice end = hi >= 0 ? key_of(m, hi) : st_slice_make(NULL, 0);
    st_iter *it;
    assert_int_equal(st_db_iter(db, snap, start, end, &it), ST_OK);
    int from = lo >= 0 ? lo : 0, to = hi >= 0 ? hi : NKEYS;
    int i = reverse ? to - 1 : from, seen = 0;
    for (reverse ? st_iter_last(it) : st_iter_first(it); st_iter_valid(it) && seen < limit;
         reverse ? st_iter_prev(it) : st_iter_next(it)) {
        while (i >= from && i < to && m->keys[i].val == NULL)
            i += reverse ? -1 : 1;
        assert_true(i >= from && i < to);
        st_slice k = st_iter_key(it), v = st_iter_value(it);
        if (!st_slice_eq(k, key_of(m, i)))
            fprintf(stderr, "scan: expected key %d at position %d\n", i, seen);
        assert_true(st_slice_eq(k, key_of(m, i)));
        assert_true(st_slice_eq(v, st_slice_make(m->keys[i].val, m->keys[i].vlen)));
        i += reverse ? -1 : 1;
        seen++;
    }
    if (st_iter_status(it))
        fprintf(stderr, "scan: %s\n", st_errmsg());
    assert_int_equal(st_iter_status(it), ST_OK);
    if (seen < limit) {
        /* The iterator ended: the model must have nothing more in range either. */
        while (i >= from && i < to && m->keys[i].val == NULL)
            i += reverse ? -1 : 1;
        assert_false(i >= from && i < to);
    }
    st_iter_destroy(it);
}

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "engine: %s\n", line);
}

static void small_options(st_options *o)
{
    st_options_init(o);
    if (getenv("ST_TEST_VERBOSE"))
        o->log = log_line;
    o->sync = ST_SYNC_NONE;
    o->env = st_env_nosync();
    o->memtable_bytes = 128 * 1024;
    o->table_bytes = 32 * 1024;
    o->block_bytes = 1024;
    o->level1_bytes = 128 * 1024;
    o->paranoid_checks = true;
    o->block_cache_bytes = 256 * 1024;
}

static void assert_healthy(st_db *db)
{
    st_stats st;
    assert_int_equal(st_db_stats(db, &st), ST_OK);
    if (st.bg_status)
        fprintf(stderr, "background error: %s\n", st.bg_message);
    assert_int_equal(st.bg_status, ST_OK);
}

#define MAX_SNAPS 4

static void random_run(bool mmap_reads)
{
    uint64_t seed = st_test_seed(mmap_reads ? "model(mmap)" : "model(pread)");
    st_rng r;
    st_rng_seed(&r, seed);
    char *dir = st_test_mkdtemp("model");
    st_options o;
    small_options(&o);
    o.mmap_reads = mmap_reads;
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);

    static model m, snapm[MAX_SNAPS];
    st_snapshot *snaps[MAX_SNAPS] = {0};
    model_init(&m, &r);
    uint8_t val[MAX_VAL];
    st_batch *b;
    st_batch_create(&b);
    uint64_t ops = st_test_scaled(100000), last_seq = 0;
    uint64_t counts[12] = {0};

    for (uint64_t op = 0; op < ops; op++) {
        uint64_t dice = st_rng_uniform(&r, 1000);
        /* Hot keys get most of the writes so versions pile up. */
        int k = st_rng_uniform(&r, 4) ? (int)st_rng_uniform(&r, NKEYS / 10) * 10
                                      : (int)st_rng_uniform(&r, NKEYS);
        if (dice < 380) { /* put */
            size_t n = st_rng_uniform(&r, 8) ? st_rng_uniform(&r, 40) : st_rng_uniform(&r, MAX_VAL);
            st_rng_bytes(&r, val, n);
            uint64_t seq;
            assert_int_equal(st_db_put(db, key_of(&m, k), st_slice_make(val, n), &seq), ST_OK);
            assert_true(seq > last_seq);
            last_seq = seq;
            model_set(&m, k, val, n);
            counts[0]++;
        } else if (dice < 530) { /* delete */
            assert_int_equal(st_db_delete(db, key_of(&m, k), NULL), ST_OK);
            model_set(&m, k, NULL, 0);
            counts[1]++;
        } else if (dice < 600) { /* batch: applied all together, later ops win */
            st_batch_clear(b);
            int nops = 1 + (int)st_rng_uniform(&r, 20);
            for (int j = 0; j < nops; j++) {
                int kk = (k + (int)st_rng_uniform(&r, 50)) % NKEYS;
                if (st_rng_uniform(&r, 3)) {
                    size_t n = st_rng_uniform(&r, 60);
                    st_rng_bytes(&r, val, n);
                    st_batch_put(b, key_of(&m, kk), st_slice_make(val, n));
                    model_set(&m, kk, val, n);
                } else {
                    st_batch_delete(b, key_of(&m, kk));
                    model_set(&m, kk, NULL, 0);
                }
            }
            uint64_t seq;
            assert_int_equal(st_db_write(db, b, &seq), ST_OK);
            assert_true(seq == last_seq + (uint64_t)nops || last_seq == 0 || seq > last_seq);
            last_seq = seq;
            counts[2]++;
        } else if (dice < 800) { /* get, sometimes through a snapshot */
            int si = (int)st_rng_uniform(&r, MAX_SNAPS * 4);
            if (si < MAX_SNAPS && snaps[si])
                check_get(db, snaps[si], &snapm[si], k);
            else
                check_get(db, NULL, &m, k);
            counts[3]++;
        } else if (dice < 880) { /* scan */
            int lo = st_rng_uniform(&r, 4) ? (int)st_rng_uniform(&r, NKEYS) : -1;
            int hi = st_rng_uniform(&r, 4) ? (int)st_rng_uniform(&r, NKEYS) : -1;
            if (lo >= 0 && hi >= 0 && lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            int limit = st_rng_uniform(&r, 2) ? 1 + (int)st_rng_uniform(&r, 200) : NKEYS;
            bool reverse = st_rng_uniform(&r, 2);
            int si = (int)st_rng_uniform(&r, MAX_SNAPS * 2);
            if (si < MAX_SNAPS && snaps[si])
                check_scan(db, snaps[si], &snapm[si], lo, hi, reverse, limit);
            else
                check_scan(db, NULL, &m, lo, hi, reverse, limit);
            counts[4]++;
        } else if (dice < 900) { /* take or drop a snapshot */
            int si = (int)st_rng_uniform(&r, MAX_SNAPS);
            if (snaps[si]) {
                st_db_release_snapshot(db, snaps[si]);
                snaps[si] = NULL;
                model_free(&snapm[si]);
            } else {
                assert_int_equal(st_db_snapshot(db, &snaps[si]), ST_OK);
                model_copy(&snapm[si], &m);
            }
            counts[5]++;
        } else if (dice < 990) { /* a burst of puts, to drive flushes and compactions */
            for (int j = 0; j < 50; j++) {
                int kk = (int)st_rng_uniform(&r, NKEYS);
                size_t n = st_rng_uniform(&r, MAX_VAL);
                st_rng_bytes(&r, val, n);
                assert_int_equal(st_db_put(db, key_of(&m, kk), st_slice_make(val, n), NULL), ST_OK);
                model_set(&m, kk, val, n);
            }
            counts[6]++;
        } else if (dice < 994) {
            assert_int_equal(st_db_flush(db), ST_OK);
            counts[7]++;
        } else if (dice < 997) {
            int lo = (int)st_rng_uniform(&r, NKEYS), hi = (int)st_rng_uniform(&r, NKEYS);
            st_slice a = key_of(&m, lo < hi ? lo : hi), z = key_of(&m, lo < hi ? hi : lo);
            if (st_rng_uniform(&r, 3) == 0)
                a = z = st_slice_make(NULL, 0);
            assert_int_equal(st_db_compact_range(db, a, z), ST_OK);
            counts[8]++;
        } else { /* reopen: snapshots do not survive it */
            for (int si = 0; si < MAX_SNAPS; si++) {
                if (snaps[si]) {
                    st_db_release_snapshot(db, snaps[si]);
                    snaps[si] = NULL;
                    model_free(&snapm[si]);
                }
            }
            assert_healthy(db);
            st_db_close(db);
            st_status s = st_db_open(dir, &o, &db);
            if (s)
                fprintf(stderr, "reopen: %s\n", st_errmsg());
            assert_int_equal(s, ST_OK);
            check_scan(db, NULL, &m, -1, -1, false, NKEYS);
            counts[9]++;
        }
    }
    /* Everything, both ways, before and after a final full compaction and reopen. */
    for (int si = 0; si < MAX_SNAPS; si++) {
        if (snaps[si]) {
            check_scan(db, snaps[si], &snapm[si], -1, -1, false, NKEYS);
            st_db_release_snapshot(db, snaps[si]);
            model_free(&snapm[si]);
        }
    }
    check_scan(db, NULL, &m, -1, -1, false, NKEYS);
    check_scan(db, NULL, &m, -1, -1, true, NKEYS);
    assert_int_equal(st_db_compact_range(db, st_slice_make(NULL, 0), st_slice_make(NULL, 0)),
                     ST_OK);
    assert_healthy(db);
    st_db_close(db);
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);
    for (int i = 0; i < NKEYS; i++)
        check_get(db, NULL, &m, i);
    check_scan(db, NULL, &m, -1, -1, true, NKEYS);
    st_stats st;
    st_db_stats(db, &st);
    fprintf(stderr,
            "model: %" PRIu64 " ops (put %" PRIu64 " del %" PRIu64 " batch %" PRIu64 " get %" PRIu64
            " scan %" PRIu64 " burst %" PRIu64 " flush %" PRIu64 " compact %" PRIu64
            " reopen %" PRIu64 ")\n",
            ops, counts[0], counts[1], counts[2], counts[3], counts[4], counts[6], counts[7],
            counts[8], counts[9]);
    st_db_close(db);
    st_batch_destroy(b);
    model_free(&m);
    st_test_rmdir(dir);
    free(dir);
}

static void test_random_mmap(void **state)
{
    (void)state;
    random_run(true);
}

static void test_random_pread(void **state)
{
    (void)state;
    random_run(false);
}

/* ---- the seed design's failure patterns --------------------------------------------------- */

static st_slice S(const char *s)
{
    return st_slice_str(s);
}

static void check_value(st_db *db, const char *key, const char *want)
{
    uint8_t *v = NULL;
    size_t n;
    st_status s = st_db_get(db, NULL, S(key), &v, &n, NULL);
    if (!want) {
        assert_int_equal(s, ST_NOT_FOUND);
        return;
    }
    assert_int_equal(s, ST_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    st_free(v);
}

static st_db *open_small(const char *dir)
{
    st_options o;
    small_options(&o);
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);
    return db;
}

/* The seed read L1 before newer L0 data, or let an older table win after a merge. */
static void test_older_value_after_l0_compaction(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("pattern_old");
    st_db *db = open_small(dir);
    char v[32];
    for (int gen = 0; gen < 12; gen++) {
        snprintf(v, sizeof(v), "gen-%d", gen);
        assert_int_equal(st_db_put(db, S("k"), S(v), NULL), ST_OK);
        assert_int_equal(st_db_put(db, S("other"), S(v), NULL), ST_OK);
        assert_int_equal(st_db_flush(db), ST_OK); /* one L0 table per generation */
        check_value(db, "k", v);
    }
    /* Let the background L0->L1 merges run, then check, then force everything down. */
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    check_value(db, "k", "gen-11");
    assert_int_equal(st_db_put(db, S("k"), S("newest"), NULL), ST_OK);
    assert_int_equal(st_db_flush(db), ST_OK);
    check_value(db, "k", "newest"); /* L0 beats L1 */
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    check_value(db, "k", "newest");
    st_db_close(db);
    db = open_small(dir);
    check_value(db, "k", "newest");
    assert_healthy(db);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

/* The seed dropped tombstones during merges while older values sat in deeper levels. */
static void test_deleted_key_stays_deleted(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("pattern_del");
    st_db *db = open_small(dir);
    char key[32], val[200];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    /* Enough data that it settles two levels down. */
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "key%05d", i);
        assert_int_equal(st_db_put(db, S(key), S(val), NULL), ST_OK);
    }
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    st_stats st;
    st_db_stats(db, &st);
    int deepest = 0;
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        if (st.levels[l].files)
            deepest = l;
    assert_true(deepest >= 1);
    /* Tombstones land in L0 and merge into L1 above the old values. */
    for (int i = 0; i < 3000; i += 2) {
        snprintf(key, sizeof(key), "key%05d", i);
        assert_int_equal(st_db_delete(db, S(key), NULL), ST_OK);
    }
    for (int round = 0; round < 5; round++) {
        assert_int_equal(st_db_flush(db), ST_OK);
        for (int i = 0; i < 3000; i += 7) {
            snprintf(key, sizeof(key), "key%05d", i);
            check_value(db, key, i % 2 ? val : NULL);
        }
        /* Unrelated writes keep compactions going over the tombstones. */
        for (int i = 0; i < 500; i++) {
            snprintf(key, sizeof(key), "zz%d-%05d", round, i);
            assert_int_equal(st_db_put(db, S(key), S(val), NULL), ST_OK);
        }
        if (round == 2)
            assert_int_equal(st_db_compact_range(db, S("key01000"), S("key02000")), ST_OK);
    }
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    st_db_close(db);
    db = open_small(dir);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "key%05d", i);
        check_value(db, key, i % 2 ? val : NULL);
    }
    assert_healthy(db);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

typedef struct writer_arg {
    st_db *db;
    int rounds;
} writer_arg;

static void *flushing_writer(void *p)
{
    writer_arg *a = p;
    char key[32], val[64];
    for (int r = 0; r < a->rounds; r++) {
        for (int i = 0; i < 200; i++) {
            snprintf(key, sizeof(key), "w%02d-%04d", r, i);
            snprintf(val, sizeof(val), "val-%d-%d", r, i);
            if (st_db_put(a->db, S(key), S(val), NULL))
                return (void *)1;
        }
        if (st_db_flush(a->db))
            return (void *)1;
    }
    return NULL;
}

/* The seed's single background worker let a flush replace a level a merge was writing. */
static void test_flush_during_compaction(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("pattern_flush");
    st_db *db = open_small(dir);
    char key[32], val[256];
    memset(val, 'x', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "base%06d", (i * 7919) % 20000);
        assert_int_equal(st_db_put(db, S(key), S(val), NULL), ST_OK);
    }
    st_stats before;
    st_db_stats(db, &before);
    writer_arg wa = {db, 25};
    pthread_t t;
    pthread_create(&t, NULL, flushing_writer, &wa);
    /* Full compactions while the writer keeps flushing new L0 tables. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    void *ret;
    pthread_join(t, &ret);
    assert_null(ret);
    st_stats after;
    st_db_stats(db, &after);
    assert_true(after.flushes > before.flushes);
    assert_true(after.compactions > before.compactions);
    for (int pass = 0; pass < 2; pass++) {
        char want[64];
        for (int r = 0; r < wa.rounds; r++) {
            for (int i = 0; i < 200; i += 13) {
                snprintf(key, sizeof(key), "w%02d-%04d", r, i);
                snprintf(want, sizeof(want), "val-%d-%d", r, i);
                check_value(db, key, want);
            }
        }
        for (int i = 0; i < 20000; i += 97) {
            snprintf(key, sizeof(key), "base%06d", i);
            check_value(db, key, val);
        }
        assert_healthy(db);
        st_db_close(db);
        db = open_small(dir);
    }
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

/* A merge whose every input entry is a tombstone (or shadowed) must produce no table at all. */
static void test_all_tombstone_merge(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("pattern_tomb");
    st_db *db = open_small(dir);
    char key[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "t%05d", i);
        assert_int_equal(st_db_put(db, S(key), S("value"), NULL), ST_OK);
    }
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "t%05d", i);
        assert_int_equal(st_db_delete(db, S(key), NULL), ST_OK);
    }
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    st_stats st;
    st_db_stats(db, &st);
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        assert_int_equal(st.levels[l].files, 0);
    st_iter *it;
    assert_int_equal(st_db_iter(db, NULL, S(""), S(""), &it), ST_OK);
    st_iter_first(it);
    assert_false(st_iter_valid(it));
    assert_int_equal(st_iter_status(it), ST_OK);
    st_iter_destroy(it);
    /* Still writable and readable afterwards, and after a reopen. */
    assert_int_equal(st_db_put(db, S("t00001"), S("back"), NULL), ST_OK);
    st_db_close(db);
    db = open_small(dir);
    check_value(db, "t00001", "back");
    check_value(db, "t00002", NULL);
    assert_healthy(db);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

/* A snapshot keeps the versions it can see through compactions that would otherwise drop them. */
static void test_snapshot_survives_compaction(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("pattern_snap");
    st_db *db = open_small(dir);
    assert_int_equal(st_db_put(db, S("a"), S("old"), NULL), ST_OK);
    assert_int_equal(st_db_put(db, S("b"), S("old"), NULL), ST_OK);
    st_snapshot *snap;
    assert_int_equal(st_db_snapshot(db, &snap), ST_OK);
    assert_int_equal(st_db_put(db, S("a"), S("new"), NULL), ST_OK);
    assert_int_equal(st_db_delete(db, S("b"), NULL), ST_OK);
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    uint8_t *v;
    size_t n;
    assert_int_equal(st_db_get(db, snap, S("a"), &v, &n, NULL), ST_OK);
    assert_memory_equal(v, "old", 3);
    st_free(v);
    assert_int_equal(st_db_get(db, snap, S("b"), &v, &n, NULL), ST_OK);
    st_free(v);
    check_value(db, "a", "new");
    check_value(db, "b", NULL);
    st_db_release_snapshot(db, snap);
    assert_int_equal(st_db_compact_range(db, S(""), S("")), ST_OK);
    check_value(db, "a", "new");
    check_value(db, "b", NULL);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_older_value_after_l0_compaction),
        cmocka_unit_test(test_deleted_key_stays_deleted),
        cmocka_unit_test(test_flush_during_compaction),
        cmocka_unit_test(test_all_tombstone_merge),
        cmocka_unit_test(test_snapshot_survives_compaction),
        cmocka_unit_test(test_random_mmap),
        cmocka_unit_test(test_random_pread),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
