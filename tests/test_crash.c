/*
 * test_crash.c - kill -9 at random moments, and at every file operation of a scripted workload.
 *
 * A forked child opens the database and writes: single puts, deletes, and batches that put one
 * token under several keys (all or nothing), from one or several threads, with tiny memtables and
 * tables so flushes and compactions run all the time. Before each write the child tells the
 * parent what it is about to do (INTENT), after st_db_* returned ST_OK it says so (ACK); both
 * through a pipe, one fixed-size message per write(2), so messages never interleave. The parent
 * kills the child with SIGKILL, reopens the database itself and checks:
 *   - every acknowledged write is there with its value;
 *   - the one write per thread that was in flight is there entirely or not at all (a batch is
 *     never half applied);
 *   - nothing else is there (a full scan finds exactly the model's keys and values);
 *   - the database is healthy and writable.
 * Each writer thread owns its own keys, so the order of the writes to a key is the order that
 * thread issued them, and the only uncertainty is its single in-flight write.
 *
 * The tests:
 *   - test_random_kills_*: a kill after a random delay of 0-300 ms; rounds accumulate on one
 *     directory, 50 under sync=always, 50 under sync=none and 10 under sync=interval. A kill -9
 *     of the process loses nothing the kernel was handed, so the check is the same for every
 *     policy. The child runs 1 to 4 writer threads; its thread 0 now and then asks for a flush
 *     or a full range compaction as well.
 *   - test_crash_points_*: the child runs a scripted workload (writes, an explicit flush, a
 *     range compaction, a close and reopen, writes, a flush) through an env that kills the
 *     process at its Nth mutating file operation, in the middle of that write when it is an
 *     append (half of it reaches the file). N sweeps the first operations one by one and samples
 *     the rest, so kills land inside table writes, MANIFEST edits, CURRENT switches and WAL
 *     rotations. These runs use st_env_nosync(): a kill -9 does not depend on fsync.
 *   - test_crash_during_create: the same at each file operation of st_db_open creating a new
 *     database; the next open must succeed.
 *
 * Rerun a failure with ST_TEST_SEED=<seed>; ST_TEST_SCALE scales the number of rounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/db.h"
#include "engine/env.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"
#include "tests/support/workload.h"

#define MAX_THREADS     4
#define KEYS_PER_THREAD 500
#define MAX_DELAY_MS    300

/* ---- the messages from child to parent ---------------------------------------------------- */

enum { MSG_INTENT = 1, MSG_ACK = 2, MSG_DONE = 3 };

/* One write(2) each: far below PIPE_BUF, so concurrent writers never interleave messages. */
typedef struct msg {
    uint8_t kind;
    uint8_t thread;
    uint8_t pad[2];
    uint32_t op;         /* per thread and round, from 1; MSG_DONE: low half of the count */
    st_workload_write w; /* over the thread's keys */
    uint32_t extra;      /* MSG_DONE: high half of the count */
} msg;

/* ---- keys, values and the model ----------------------------------------------------------- */

/* Each writer thread owns a key space; the parent's own key is "marker". */
static const st_workload_keys spaces[MAX_THREADS] = {
    {"k0-", 4, KEYS_PER_THREAD, 50},
    {"k1-", 4, KEYS_PER_THREAD, 50},
    {"k2-", 4, KEYS_PER_THREAD, 50},
    {"k3-", 4, KEYS_PER_THREAD, 50},
};

/* What the parent knows the keys hold. */
typedef struct model {
    st_workload_slot keys[MAX_THREADS][KEYS_PER_THREAD];
    uint32_t marker_round; /* the parent's own write after each check; 0 = none yet */
} model;

/* Whether values written in `round` are large (so flushes come sooner). */
static bool round_big(uint32_t round)
{
    return round % 3 == 1;
}

/* The value of write (round, thread, op): the same token under every key the write puts. */
static size_t make_value(uint8_t *buf, uint32_t round, int thread, uint32_t op)
{
    char tag[48];
    snprintf(tag, sizeof(tag), "r%" PRIu32 ".t%d.o%" PRIu32 "|", round, thread, op);
    uint64_t h = st_workload_mix64(((uint64_t)round << 40) ^ ((uint64_t)thread << 32) ^ op);
    return st_workload_value(buf, tag, h, round_big(round) ? h % 2500 : h % 200);
}

/* Whether a get that returned (s, v, n) agrees with what slot `sl` of `thread` says. */
static bool slot_matches(const st_workload_slot *sl, int thread, st_status s, const uint8_t *v,
                         size_t n)
{
    if (!sl->present)
        return s == ST_NOT_FOUND;
    if (s != ST_OK)
        return false;
    uint8_t want[ST_WORKLOAD_MAX_VALUE];
    size_t wn = make_value(want, sl->round, thread, sl->op);
    return n == wn && memcmp(v, want, n) == 0;
}

/* ---- dying at the Nth mutating file operation ---------------------------------------------- */

/* Where the parent is, for failure messages: "round 12", "crash point 7". */
static char g_where[128];

/* The tripwire's hook in a scripted child: die by SIGKILL, in the middle of the write when the
   call is an append (the kernel got half of it when the process died). */
static void die_here(void *ctx, st_env *inner, st_file *f, const void *data, size_t n)
{
    (void)ctx;
    if (f && n > 1)
        inner->append(f, data, n / 2);
    raise(SIGKILL);
    _exit(99); /* not reached */
}

/* Tiny memtables, tables and levels: flushes and compactions run all the time. */
static void crash_options(st_options *o, st_sync_policy policy, st_env *env)
{
    st_workload_options(o, policy, env);
    o->sync_interval_ms = 20;
}

/* ---- the child ---------------------------------------------------------------------------- */

typedef struct child_cfg {
    const char *dir;
    st_sync_policy policy;
    uint32_t round;
    int nthreads;
    uint64_t seed;
    int fd;           /* write end of the pipe */
    uint64_t kill_at; /* scripted mode: die at this mutating call (0 = never) */
    bool scripted;    /* run the fixed workload instead of writing until killed */
    bool create;      /* scripted: the database does not exist yet */
} child_cfg;

typedef struct child_thread {
    const child_cfg *cfg;
    st_db *db;
    int thread;
} child_thread;

static void child_fail(const char *what, st_status s)
{
    fprintf(stderr, "[%d] child: %s failed: %s: %s\n", (int)getpid(), what, st_status_name(s),
            st_errmsg());
    _exit(4);
}

static void send_msg(int fd, const msg *m)
{
    const uint8_t *p = (const uint8_t *)m;
    size_t left = sizeof(*m);
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(6); /* the parent went away */
        p += n;
        left -= (size_t)n;
    }
}

/* Choose the next write of `thread`: 55% puts, 15% deletes, 30% batches. */
static void choose_write(st_rng *r, int thread, uint32_t op, msg *m)
{
    memset(m, 0, sizeof(*m));
    m->kind = MSG_INTENT;
    m->thread = (uint8_t)thread;
    m->op = op;
    st_workload_choose(r, &spaces[thread], 55, 15, &m->w);
}

/* Perform the write m describes; the values are make_value(round, thread, op). */
static st_status do_write(st_db *db, st_batch *b, uint32_t round, const msg *m)
{
    uint8_t val[ST_WORKLOAD_MAX_VALUE];
    size_t vn = make_value(val, round, m->thread, m->op);
    return st_workload_do(db, b, &spaces[m->thread], &m->w, st_slice_make(val, vn));
}

/* One announced, performed, acknowledged write. */
static void child_write(child_thread *ct, st_rng *r, st_batch *b, uint32_t op)
{
    msg m;
    choose_write(r, ct->thread, op, &m);
    send_msg(ct->cfg->fd, &m);
    st_status s = do_write(ct->db, b, ct->cfg->round, &m);
    if (s)
        child_fail("write", s);
    m.kind = MSG_ACK;
    send_msg(ct->cfg->fd, &m);
}

static void *child_writer(void *p)
{
    child_thread *ct = p;
    st_rng r;
    st_rng_seed(&r, ct->cfg->seed ^
                        st_workload_mix64(((uint64_t)ct->cfg->round << 8) | (uint64_t)ct->thread));
    st_batch *b;
    if (st_batch_create(&b))
        _exit(5);
    for (uint32_t op = 1;; op++) {
        child_write(ct, &r, b, op);
        /* Thread 0 now and then asks for a flush or a range compaction itself. */
        if (ct->thread == 0 && st_rng_uniform(&r, 300) == 0) {
            st_status s = st_db_flush(ct->db);
            if (s)
                child_fail("flush", s);
        }
        if (ct->thread == 0 && st_rng_uniform(&r, 1000) == 0) {
            st_status s =
                st_db_compact_range(ct->db, st_slice_make(NULL, 0), st_slice_make(NULL, 0));
            if (s)
                child_fail("compact_range", s);
        }
    }
    return NULL;
}

/* Writes until killed. */
static void child_random(const child_cfg *cfg)
{
    st_options o;
    crash_options(&o, cfg->policy, NULL);
    st_db *db;
    st_status s = st_db_open(cfg->dir, &o, &db);
    if (s)
        child_fail("open", s);
    child_thread ct[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int t = 0; t < cfg->nthreads; t++) {
        ct[t] = (child_thread){cfg, db, t};
        if (t > 0 && pthread_create(&tid[t], NULL, child_writer, &ct[t]) != 0)
            _exit(5);
    }
    child_writer(&ct[0]);
    _exit(3); /* not reached */
}

/*
 * The scripted workload: open, 40 writes, flush, 40 writes, range compaction, close, reopen,
 * 40 writes, flush, close. One thread, so the env calls come in nearly the same order each run.
 */
static void child_scripted(const child_cfg *cfg)
{
    st_env *env = st_workload_trip_env(st_env_nosync(), die_here, NULL);
    st_workload_trip_arm(cfg->kill_at);
    st_options o;
    crash_options(&o, cfg->policy, env);
    o.create_if_missing = cfg->create;
    st_db *db;
    st_status s = st_db_open(cfg->dir, &o, &db);
    if (s)
        child_fail("open", s);
    child_thread ct = {cfg, db, 0};
    st_rng r;
    st_rng_seed(&r, cfg->seed ^ st_workload_mix64(cfg->round));
    st_batch *b;
    if (st_batch_create(&b))
        _exit(5);
    uint32_t op = 1;
    for (int phase = 0; phase < 3; phase++) {
        for (int i = 0; i < 40; i++)
            child_write(&ct, &r, b, op++);
        if (phase == 0 && (s = st_db_flush(db)))
            child_fail("flush", s);
        if (phase == 1) {
            if ((s = st_db_compact_range(db, st_slice_make(NULL, 0), st_slice_make(NULL, 0))))
                child_fail("compact_range", s);
            st_db_close(db);
            if ((s = st_db_open(cfg->dir, &o, &db)))
                child_fail("reopen", s);
            ct.db = db;
        }
        if (phase == 2 && (s = st_db_flush(db)))
            child_fail("flush", s);
    }
    st_db_close(db);
    st_batch_destroy(b);
    uint64_t calls = st_workload_trip_calls();
    msg done = {.kind = MSG_DONE, .op = (uint32_t)calls, .extra = (uint32_t)(calls >> 32)};
    send_msg(cfg->fd, &done);
    _exit(0);
}

/* ---- the parent --------------------------------------------------------------------------- */

typedef struct round_result {
    msg pending[MAX_THREADS]; /* the write in flight per thread (kind 0: none) */
    uint64_t acked;           /* writes acknowledged this round */
    uint64_t done_calls;      /* scripted: the child finished, after this many env calls */
    bool finished;            /* the child exited 0 (scripted, nothing left to kill) */
} round_result;

static void apply_write(model *m, uint32_t round, const msg *w)
{
    st_workload_apply(m->keys[w->thread], round, w->op, &w->w);
}

/* Take one message from the child: acknowledged writes go into the model at once. */
static void handle_msg(model *m, uint32_t round, round_result *rr, const msg *x)
{
    if (x->kind == MSG_DONE) {
        rr->done_calls = (uint64_t)x->op | ((uint64_t)x->extra << 32);
        return;
    }
    assert_true(x->thread < MAX_THREADS);
    msg *p = &rr->pending[x->thread];
    if (x->kind == MSG_INTENT) {
        /* A thread announces its next write only after the last one was acknowledged. */
        assert_int_equal(p->kind, 0);
        assert_true(x->w.nkeys >= 1 && x->w.nkeys <= ST_WORKLOAD_MAX_BATCH);
        *p = *x;
        return;
    }
    assert_int_equal(x->kind, MSG_ACK);
    assert_int_equal(p->kind, MSG_INTENT);
    assert_int_equal(p->op, x->op);
    apply_write(m, round, p);
    rr->acked++;
    memset(p, 0, sizeof(*p));
}

/* Read messages until the child's end of the pipe closes or (deadline_ms != 0) the deadline
   passes. Returns false on the deadline. */
static bool pump(int fd, model *m, uint32_t round, round_result *rr, uint8_t *buf, size_t *have,
                 uint64_t deadline_ms)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ms) {
            uint64_t now = st_workload_now_ms();
            if (now >= deadline_ms)
                return false;
            timeout = (int)(deadline_ms - now);
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout);
        if (pr < 0 && errno == EINTR)
            continue;
        assert_true(pr >= 0);
        if (pr == 0)
            continue;
        ssize_t n = read(fd, buf + *have, 65536 - *have);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            return true;
        *have += (size_t)n;
        size_t off = 0;
        while (*have - off >= sizeof(msg)) {
            msg x;
            memcpy(&x, buf + off, sizeof(x));
            handle_msg(m, round, rr, &x);
            off += sizeof(msg);
        }
        memmove(buf, buf + off, *have - off);
        *have -= off;
    }
}

/*
 * Fork a child running cfg, let it run for delay_ms (scripted children run until they die or
 * finish), SIGKILL it, and collect every message it sent.
 */
static void run_child(child_cfg *cfg, model *m, round_result *rr, uint64_t delay_ms)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20); /* fewer stalls of a fast child; fine if refused */
    memset(rr, 0, sizeof(*rr));
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        cfg->fd = p[1];
        if (cfg->scripted)
            child_scripted(cfg);
        child_random(cfg);
    }
    close(p[1]);
    uint8_t *buf = malloc(65536);
    size_t have = 0;
    bool ended = cfg->scripted
                     ? true
                     : pump(p[0], m, cfg->round, rr, buf, &have, st_workload_now_ms() + delay_ms);
    if (!ended)
        kill(pid, SIGKILL);
    pump(p[0], m, cfg->round, rr, buf, &have, 0);
    close(p[0]);
    assert_int_equal(have, 0);
    free(buf);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (cfg->scripted && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rr->finished = true;
        return;
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("%s: the child did not die by SIGKILL (status 0x%x): it failed "
                 "on its own, see its message above",
                 g_where, (unsigned)status);
}

static st_status get_key(st_db *db, const char *key, uint8_t **v, size_t *n)
{
    *v = NULL;
    *n = 0;
    return st_db_get(db, NULL, st_slice_str(key), v, n, NULL);
}

/*
 * The in-flight write of each thread must be there entirely or not at all. Resolve it into the
 * model. Returns how many in-flight writes turned out to be applied.
 */
static int resolve_pending(st_db *db, model *m, uint32_t round, const round_result *rr)
{
    int applied = 0;
    for (int t = 0; t < MAX_THREADS; t++) {
        const msg *p = &rr->pending[t];
        const st_workload_write *w = &p->w;
        if (p->kind == 0)
            continue;
        bool all_before = true, all_after = true;
        char report[2048];
        size_t rl = 0;
        for (int i = 0; i < w->nkeys; i++) {
            char key[ST_WORKLOAD_KEY_CAP], want_b[64], want_a[64];
            st_workload_key_name(key, &spaces[t], w->keys[i]);
            const st_workload_slot *before = &m->keys[t][w->keys[i]];
            st_workload_slot after = {round, p->op, !((w->delmask >> i) & 1)};
            uint8_t *v;
            size_t n;
            st_status s = get_key(db, key, &v, &n);
            if (s != ST_OK && s != ST_NOT_FOUND)
                fail_msg("get %s: %s: %s", key, st_status_name(s), st_errmsg());
            bool b = slot_matches(before, t, s, v, n), a = slot_matches(&after, t, s, v, n);
            all_before &= b;
            all_after &= a;
            st_workload_describe(want_b, sizeof(want_b), before);
            st_workload_describe(want_a, sizeof(want_a), &after);
            rl += (size_t)snprintf(report + rl, sizeof(report) - rl,
                                   "  %s: %s (before %s, after %s) -> %s\n", key,
                                   s == ST_OK ? (char *)"value" : "absent", want_b, want_a,
                                   a && b ? "either"
                                   : a    ? "after"
                                   : b    ? "before"
                                          : "NEITHER");
            if (rl >= sizeof(report))
                rl = sizeof(report) - 1;
            st_free(v);
        }
        if (!all_before && !all_after)
            fail_msg("%s: thread %d's in-flight write op %" PRIu32
                     " (type %d, %d keys) is half applied:\n%s",
                     g_where, t, p->op, w->type, w->nkeys, report);
        if (all_after && !all_before) {
            apply_write(m, round, p);
            applied++;
        }
    }
    return applied;
}

/* What a scan found, against the model. */
typedef struct scan_state {
    const model *m;
    uint64_t seen; /* keys of the writer threads */
    bool marker_seen;
} scan_state;

static void scan_key(void *ctx, int t, uint16_t idx, st_slice v)
{
    scan_state *ss = ctx;
    if (t < 0) {
        char want_v[32];
        snprintf(want_v, sizeof(want_v), "round %" PRIu32, ss->m->marker_round);
        if (!st_slice_eq(v, st_slice_str(want_v)))
            fail_msg("%s: marker holds %.*s, want %s", g_where, (int)v.len, (const char *)v.data,
                     want_v);
        ss->marker_seen = true;
        return;
    }
    const st_workload_slot *sl = &ss->m->keys[t][idx];
    if (!slot_matches(sl, t, ST_OK, v.data, v.len)) {
        char key[ST_WORKLOAD_KEY_CAP], want_s[64];
        st_workload_key_name(key, &spaces[t], idx);
        st_workload_describe(want_s, sizeof(want_s), sl);
        fail_msg("%s: %s holds %.*s (%zu bytes), want %s", g_where, key,
                 (int)(v.len < 24 ? v.len : 24), (const char *)v.data, v.len, want_s);
    }
    ss->seen++;
}

/* The whole database against the model: same keys, same values, nothing else. */
static void check_scan(st_db *db, const model *m)
{
    uint64_t want = 0;
    for (int t = 0; t < MAX_THREADS; t++)
        for (int k = 0; k < KEYS_PER_THREAD; k++)
            want += m->keys[t][k].present;
    scan_state ss = {m, 0, false};
    st_workload_scan(db, spaces, MAX_THREADS, "marker", g_where, scan_key, &ss);
    if (ss.seen != want)
        fail_msg("%s: the scan found %" PRIu64 " keys, the model has %" PRIu64, g_where, ss.seen,
                 want);
    if ((m->marker_round != 0) != ss.marker_seen)
        fail_msg("%s: marker %s", g_where, ss.marker_seen ? "unexpected" : "missing");
}

/* The shape of the database at the last check, for the summary: flushes and compactions ran. */
static st_stats g_last_stats;

/*
 * Reopen after the kill and check everything; then prove the database writable (the marker).
 * Returns the number of in-flight writes that turned out applied.
 */
static int verify(const char *dir, st_sync_policy policy, st_env *env, model *m, uint32_t round,
                  const round_result *rr)
{
    st_options o;
    crash_options(&o, policy, env);
    st_db *db;
    st_status s = st_db_open(dir, &o, &db);
    if (s)
        fail_msg("%s: reopen after kill -9: %s: %s", g_where, st_status_name(s), st_errmsg());
    int applied = resolve_pending(db, m, round, rr);
    check_scan(db, m);
    char v[32];
    snprintf(v, sizeof(v), "round %" PRIu32, round);
    st_workload_check_usable(db, g_where, "marker", v, &g_last_stats);
    m->marker_round = round;
    st_db_close(db);
    return applied;
}

/* ---- random kills ------------------------------------------------------------------------- */

static void random_kills(st_sync_policy policy, uint64_t rounds)
{
    st_rng r;
    uint64_t seed = st_workload_seed(&r, "crash", policy);
    char *dir = st_test_mkdtemp("crash");
    static model m;
    memset(&m, 0, sizeof(m));

    /* Create the database before the first kill: a kill during creation is its own test. */
    st_options o;
    crash_options(&o, policy, NULL);
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);
    st_db_close(db);

    uint64_t acked = 0, inflight_applied = 0, inflight = 0, start = st_workload_now_ms();
    for (uint32_t round = 1; round <= rounds; round++) {
        child_cfg cfg = {.dir = dir, .policy = policy, .round = round, .seed = seed};
        cfg.nthreads = st_rng_uniform(&r, 3) == 0 ? 1 : 1 + (int)st_rng_uniform(&r, MAX_THREADS);
        uint64_t delay = st_rng_uniform(&r, MAX_DELAY_MS + 1);
        round_result rr;
        snprintf(g_where, sizeof(g_where),
                 "%s round %" PRIu32 " (%d threads, kill after %" PRIu64 " ms)",
                 st_workload_policy_name(policy), round, cfg.nthreads, delay);
        run_child(&cfg, &m, &rr, delay);
        for (int t = 0; t < MAX_THREADS; t++)
            inflight += rr.pending[t].kind != 0;
        inflight_applied += (uint64_t)verify(dir, policy, NULL, &m, round, &rr);
        acked += rr.acked;
    }
    const st_level_stats *lv = g_last_stats.levels;
    fprintf(stderr,
            "crash(%s): %" PRIu64 " rounds, %" PRIu64 " acknowledged writes checked, %" PRIu64
            " of %" PRIu64 " in-flight writes found applied; tables at the end L0=%u L1=%u L2=%u "
            "L3=%u; %.1f s\n",
            st_workload_policy_name(policy), rounds, acked, inflight_applied, inflight, lv[0].files,
            lv[1].files, lv[2].files, lv[3].files, (double)(st_workload_now_ms() - start) / 1000.0);
    assert_true(acked > 0);
    st_test_rmdir(dir);
    free(dir);
}

static void test_random_kills_always(void **state)
{
    (void)state;
    random_kills(ST_SYNC_ALWAYS, st_test_scaled(50));
}

static void test_random_kills_none(void **state)
{
    (void)state;
    random_kills(ST_SYNC_NONE, st_test_scaled(50));
}

static void test_random_kills_interval(void **state)
{
    (void)state;
    random_kills(ST_SYNC_INTERVAL, st_test_scaled(10));
}

/* ---- kills at chosen file operations ------------------------------------------------------ */

/* Run the scripted child on a fresh database, dying at call kill_at; check; return the result. */
static void crash_point(const char *dir, st_sync_policy policy, uint64_t seed, uint32_t round,
                        uint64_t kill_at, round_result *rr)
{
    static model m;
    memset(&m, 0, sizeof(m));
    child_cfg cfg = {
        .dir = dir,
        .policy = policy,
        .round = round,
        .nthreads = 1,
        .seed = seed,
        .kill_at = kill_at,
        .scripted = true,
    };
    snprintf(g_where, sizeof(g_where), "%s crash point %" PRIu64, st_workload_policy_name(policy),
             kill_at);
    run_child(&cfg, &m, rr, 0);
    if (!rr->finished)
        verify(dir, policy, st_env_nosync(), &m, round, rr);
}

static void fresh_db(const char *dir, st_sync_policy policy)
{
    st_options o;
    crash_options(&o, policy, st_env_nosync());
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);
    st_db_close(db);
}

static void crash_points(st_sync_policy policy, uint64_t exhaustive, uint64_t samples)
{
    st_rng r;
    uint64_t seed = st_workload_seed(&r, "crash_points", policy);
    uint64_t start = st_workload_now_ms();

    /* A dry run counts the mutating calls of the workload. */
    char *dir = st_test_mkdtemp("crashpt");
    fresh_db(dir, policy);
    round_result rr;
    crash_point(dir, policy, seed, 1, 0, &rr);
    assert_true(rr.finished);
    uint64_t total = rr.done_calls;
    assert_true(total > 10);
    st_test_rmdir(dir);
    free(dir);

    uint64_t cases = 0, killed = 0, acked = 0;
    st_workload_points pt = {
        .n = 1, .total = total, .exhaustive = exhaustive, .samples = samples, .rng = &r};
    do {
        dir = st_test_mkdtemp("crashpt");
        fresh_db(dir, policy);
        crash_point(dir, policy, seed, 1, pt.n, &rr);
        cases++;
        killed += !rr.finished;
        acked += rr.acked;
        st_test_rmdir(dir);
        free(dir);
    } while (st_workload_points_next(&pt) && pt.n <= total + 5);
    fprintf(stderr,
            "crash_points(%s): workload makes %" PRIu64 " file operations; %" PRIu64
            " crash points, %" PRIu64 " killed, %" PRIu64 " acknowledged writes checked, %.1f s\n",
            st_workload_policy_name(policy), total, cases, killed, acked,
            (double)(st_workload_now_ms() - start) / 1000.0);
    assert_true(killed > 0);
}

static void test_crash_points_always(void **state)
{
    (void)state;
    crash_points(ST_SYNC_ALWAYS, 60, st_test_scaled(80));
}

static void test_crash_points_none(void **state)
{
    (void)state;
    crash_points(ST_SYNC_NONE, 30, st_test_scaled(40));
}

/* The names in dir, space-separated, into buf (for failure reports). */
static void list_dir(const char *dir, char *buf, size_t cap)
{
    char **names = NULL;
    size_t count = 0, len = 0;
    buf[0] = '\0';
    if (st_env_posix()->list(st_env_posix(), dir, &names, &count))
        return;
    for (size_t i = 0; i < count && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? " " : "", names[i]);
    st_env_free_names(names, count);
}

/*
 * Kill st_db_open at each file operation while it creates a new database: the next open must
 * still succeed (LevelDB's rule: no CURRENT means no database yet, whatever else is there).
 * Every crash point is tried and all failures are reported together.
 */
static void test_crash_during_create(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("crash_during_create");
    int cases = 0, failures = 0;
    char report[4096];
    size_t rl = 0;
    report[0] = '\0';
    for (uint64_t n = 1; n < 200; n++) {
        static model m;
        memset(&m, 0, sizeof(m));
        char *dir = st_test_mkdtemp("crashcreate");
        char *sub = st_test_path(dir, "db");
        child_cfg cfg = {
            .dir = sub,
            .policy = ST_SYNC_ALWAYS,
            .round = 1,
            .nthreads = 1,
            .seed = seed,
            .kill_at = n,
            .scripted = true,
            .create = true,
        };
        snprintf(g_where, sizeof(g_where), "creation crash point %" PRIu64, n);
        round_result rr;
        run_child(&cfg, &m, &rr, 0);
        bool past = rr.finished || rr.acked > 0;
        if (!rr.finished) {
            cases++;
            st_options o;
            crash_options(&o, ST_SYNC_ALWAYS, st_env_nosync());
            st_db *db;
            char names[512];
            list_dir(sub, names, sizeof(names));
            st_status s = st_db_open(sub, &o, &db);
            if (s) {
                failures++;
                if (rl < sizeof(report))
                    rl += (size_t)snprintf(report + rl, sizeof(report) - rl,
                                           "  killed at file operation %" PRIu64
                                           " (directory: %s): reopen: %s: %s\n",
                                           n, names, st_status_name(s), st_errmsg());
            } else {
                st_db_close(db);
                verify(sub, ST_SYNC_ALWAYS, st_env_nosync(), &m, 1, &rr);
            }
        }
        st_test_rmdir(dir);
        free(sub);
        free(dir);
        if (past)
            break;
    }
    fprintf(stderr, "crash_during_create: %d crash points, %d unopenable afterwards\n", cases,
            failures);
    if (failures) {
        fprintf(stderr,
                "a kill -9 during database creation leaves a directory st_db_open refuses:\n%s",
                report);
        fail_msg("%d of %d creation crash points leave an unopenable directory", failures, cases);
    }
    assert_true(cases > 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_during_create), cmocka_unit_test(test_crash_points_always),
        cmocka_unit_test(test_crash_points_none),   cmocka_unit_test(test_random_kills_always),
        cmocka_unit_test(test_random_kills_none),   cmocka_unit_test(test_random_kills_interval),
    };
    /* ST_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("ST_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ST_TEST_FILTER"));
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
