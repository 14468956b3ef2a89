/*
 * test_stress.c - the engine under many threads at once, every answer checked against a model.
 *
 * Threads, all on one database with tiny memtables and tables (so background flushes and
 * compactions run all the time) and paranoid_checks on:
 *   - writers: puts, deletes and batches on keys each of them owns, and "group" batches that give
 *     every member of a group (keys spread over the whole key space) the same new version;
 *   - readers: gets, some through a snapshot held across many of them, some of keys never written;
 *   - iterators: forward and reverse scans over random ranges (from the bounds or from a seek),
 *     some through explicit snapshots, some slow enough to stay open across flushes and
 *     compactions (they wait until both have happened before going on);
 *   - a maintenance thread calling st_db_flush and st_db_compact_range on random ranges.
 *
 * The model: a key has one writer, so its writes are totally ordered and numbered 1, 2, 3 …
 * (versions). Whether version v of a key is a put or a delete, and the bytes of its value, are a
 * function of (key, v), so a reader can check any value it sees by itself. Per key the writer
 * records, under the key's mutex, the version it has started (a write in flight) and the sequence
 * number each finished write got. A read at sequence S (st_db_get's read_seq, st_iter_seq) must
 * return exactly version m, the newest finished version with sequence <= S. When every finished
 * version is <= S, the one write in flight may already be visible too; if only it explains the
 * read, the checker waits for its writer to record its sequence and then decides exactly. "Absent"
 * is right when the version is a delete, or when the key was never written. So a stale value, a
 * lost write, a resurrected delete, a value from the future or a torn value all fail the check.
 *
 * Scans must also be strictly ordered, yield only keys that exist, skip only keys that are absent
 * at the iterator's sequence, and show every group either with all its members at one version or
 * with none of them (an atomic batch seen whole or not at all). Long-lived scans also turn around
 * every few keys (one step back, one forward) and must land on the keys they came from.
 *
 * At the end: every key against its writer's final state (gets and full scans both ways),
 * bg_status OK, then a reopen and the same check again.
 *
 * Threads never call cmocka asserts: they record the first failure and stop; the main thread
 * asserts. ST_TEST_SEED reproduces the random choices (not the interleaving); ST_TEST_SCALE
 * scales the number of writes and the time limit of the writing phase.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/db.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"

#define NWRITERS   4
#define NREADERS   2
#define NITERATORS 2
#define NSLOTS     512 /* writer w owns key "SSSS.w<w>" for every slot */
#define NGROUPS    16
#define GROUP_SIZE 6 /* group g: keys "SSSS.gGG" at slots spread over the key space */
#define MAX_KEYS   (NSLOTS * NWRITERS + NGROUPS * GROUP_SIZE)
#define MAX_VALUE  256

/* Seconds the writers may run (before ST_TEST_SCALE): ThreadSanitizer makes everything ~10x
   slower, and CI runs this test under it too, with a budget of a few minutes. */
#if defined(__SANITIZE_THREAD__)
#define WRITE_SECONDS 60
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WRITE_SECONDS 60
#endif
#endif
#ifndef WRITE_SECONDS
#define WRITE_SECONDS 25
#endif

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct key_state {
    char name[16];
    size_t len;
    int writer; /* the only thread that writes it */
    int group;  /* -1: a writer's own key */
    pthread_mutex_t mu;
    uint32_t started; /* guarded by mu: the newest version begun (its write may be in flight) */
    uint32_t acked;   /* guarded by mu: the newest version whose write returned */
    uint64_t *seqs;   /* guarded by mu: seqs[v - 1] is the sequence of version v <= acked */
    size_t cap;
} key_state;

static key_state keys[MAX_KEYS]; /* sorted by name */
static int nkeys;
static int members[NGROUPS][GROUP_SIZE]; /* key indices */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Whether version v of key k is a delete; version 0 (never written) reads as absent too. A group's
   members agree, so a group batch deletes all of them or none. */
static bool is_delete(int k, uint32_t v)
{
    if (v == 0)
        return true;
    if (keys[k].group >= 0)
        return mix((uint64_t)keys[k].group << 32 | v) % 5 == 0;
    return mix((uint64_t)(k + 1000) << 32 | v) % 6 == 0;
}

/* The value of version v of key k: "<key>#<v>#" and bytes only (k, v) produce. */
static size_t value_of(int k, uint32_t v, uint8_t *buf)
{
    int n = snprintf((char *)buf, 32, "%s#%u#", keys[k].name, v);
    uint64_t h = mix((uint64_t)k << 32 ^ v ^ 0xabcdefull);
    size_t len = (size_t)n + h % (MAX_VALUE - 32);
    for (size_t i = (size_t)n; i < len; i++) {
        h = mix(h);
        buf[i] = (uint8_t)h;
    }
    return len;
}

static int cmp_names(const void *a, const void *b)
{
    const key_state *x = a, *y = b;
    return st_slice_cmp(st_slice_make(x->name, x->len), st_slice_make(y->name, y->len));
}

static void keys_init(void)
{
    nkeys = 0;
    for (int s = 0; s < NSLOTS; s++) {
        for (int w = 0; w < NWRITERS; w++) {
            key_state *k = &keys[nkeys++];
            memset(k, 0, sizeof(*k));
            snprintf(k->name, sizeof(k->name), "%04d.w%d", s, w);
            k->writer = w;
            k->group = -1;
        }
    }
    for (int g = 0; g < NGROUPS; g++) {
        for (int j = 0; j < GROUP_SIZE; j++) {
            key_state *k = &keys[nkeys++];
            memset(k, 0, sizeof(*k));
            snprintf(k->name, sizeof(k->name), "%04d.g%02d",
                     (j * NSLOTS / GROUP_SIZE + g * 5 + 3) % NSLOTS, g);
            k->writer = g % NWRITERS;
            k->group = g;
        }
    }
    for (int i = 0; i < nkeys; i++)
        keys[i].len = strlen(keys[i].name);
    qsort(keys, (size_t)nkeys, sizeof(keys[0]), cmp_names);
    int filled[NGROUPS] = {0};
    for (int i = 0; i < nkeys; i++) {
        pthread_mutex_init(&keys[i].mu, NULL);
        if (keys[i].group >= 0)
            members[keys[i].group][filled[keys[i].group]++] = i;
    }
}

static void keys_free(void)
{
    for (int i = 0; i < nkeys; i++) {
        pthread_mutex_destroy(&keys[i].mu);
        free(keys[i].seqs);
    }
}

/* The index of a key the engine returned, or -1 if it is none of ours. */
static int key_index(st_slice k)
{
    int lo = 0, hi = nkeys;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = st_slice_cmp(st_slice_make(keys[mid].name, keys[mid].len), k);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static st_slice key_slice(int k)
{
    return st_slice_make(keys[k].name, keys[k].len);
}

/* ---- failures ----------------------------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
    nanosleep(&ts, NULL);
}

static atomic_bool failed, stop;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[1024];

static void report_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report_failure(const char *fmt, ...)
{
    pthread_mutex_lock(&fail_mu);
    if (!atomic_load(&failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(fail_msg, sizeof(fail_msg), fmt, ap);
        va_end(ap);
        atomic_store(&failed, true);
    }
    pthread_mutex_unlock(&fail_mu);
    atomic_store(&stop, true);
}

static bool running(void)
{
    return !atomic_load(&stop);
}

/*
 * Check what a read at sequence read_seq saw of key k: version `got` when found, nothing when not.
 * See the header comment for the rule.
 */
static bool check_read(int k, uint64_t read_seq, bool found, uint32_t got, const char *what)
{
    key_state *s = &keys[k];
    uint32_t acked, started, m, alt;
    uint64_t m_seq, next_seq;
    bool ok;
    for (int tries = 0;; tries++) {
        pthread_mutex_lock(&s->mu);
        acked = s->acked;
        started = s->started;
        uint32_t lo = 0, hi = acked; /* m = the number of versions with sequence <= read_seq */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (s->seqs[mid] <= read_seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        m = lo;
        m_seq = m ? s->seqs[m - 1] : 0;
        next_seq = m < acked ? s->seqs[m] : 0;
        pthread_mutex_unlock(&s->mu);
        alt = started == acked + 1 && m == acked ? acked + 1 : m;
        bool exact = found ? got == m && !is_delete(k, m) : is_delete(k, m);
        ok = exact || (found ? got == alt && !is_delete(k, alt) : is_delete(k, alt));
        /* Only the write in flight explains the read: wait for its sequence and decide exactly
           (its writer records it as soon as the engine returns). */
        if (exact || !ok || tries == 10000 || atomic_load(&failed))
            break;
        sleep_us(100);
    }
    if (!ok) {
        char saw[32], flight[64] = "";
        if (found)
            snprintf(saw, sizeof(saw), "returned version %u", got);
        else
            snprintf(saw, sizeof(saw), "found nothing");
        if (alt != m)
            snprintf(flight, sizeof(flight), ", and version %u (a %s) is in flight", alt,
                     is_delete(k, alt) ? "delete" : "put");
        report_failure("%s: key %s read at sequence %" PRIu64 " %s; the newest finished version "
                       "at or below it is %u (sequence %" PRIu64 ", a %s)%s; finished %u, "
                       "started %u, the next finished write has sequence %" PRIu64,
                       what, s->name, read_seq, saw, m, m_seq, is_delete(k, m) ? "delete" : "put",
                       flight, acked, started, next_seq);
    }
    return ok;
}

/* Check a value's bytes against the version it claims; returns the version, 0 if broken. */
static uint32_t parse_value(int k, st_slice v, const char *what)
{
    uint8_t want[MAX_VALUE];
    size_t nl = keys[k].len;
    uint32_t ver = 0;
    size_t i = nl + 1;
    if (v.len > nl + 1 && !memcmp(v.data, keys[k].name, nl) && v.data[nl] == '#') {
        while (i < v.len && v.data[i] >= '0' && v.data[i] <= '9' && ver < 100000000u)
            ver = ver * 10 + (uint32_t)(v.data[i++] - '0');
    }
    if (ver == 0 || !st_slice_eq(v, st_slice_make(want, value_of(k, ver, want)))) {
        report_failure("%s: key %s has a value (%zu bytes) that no write produced", what,
                       keys[k].name, v.len);
        return 0;
    }
    return ver;
}

/* ---- shared run state --------------------------------------------------------------------- */

typedef struct run {
    st_db *db;
    uint64_t seed;
    uint64_t ops_per_writer;
    uint64_t deadline_us; /* CLOCK_MONOTONIC; writers stop here even if not done */
    /* counters, for the report */
    atomic_uint_fast64_t writes, batches, group_batches, gets, snap_gets, scans, scanned,
        long_lived, spanning, turns, flushes, compact_calls;
    atomic_bool cut_short;
} run;

static void stats(st_db *db, st_stats *st)
{
    if (st_db_stats(db, st) != ST_OK)
        report_failure("st_db_stats: %s", st_errmsg());
}

/* ---- writers ------------------------------------------------------------------------------ */

typedef struct writer {
    run *r;
    int id;
    int *own; /* key indices of its own keys */
    int nown;
    int groups[NGROUPS];
    int ngroups;
} writer;

static uint32_t begin_version(int k)
{
    key_state *s = &keys[k];
    pthread_mutex_lock(&s->mu);
    uint32_t v = ++s->started;
    bool ok = v == s->acked + 1;
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        report_failure("writer bookkeeping: key %s started twice", s->name);
    return v;
}

static void finish_version(int k, uint32_t v, uint64_t seq)
{
    key_state *s = &keys[k];
    pthread_mutex_lock(&s->mu);
    if (s->acked == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 16;
        uint64_t *p = realloc(s->seqs, c * sizeof(*p));
        if (!p)
            abort();
        s->seqs = p;
        s->cap = c;
    }
    uint64_t prev = s->acked ? s->seqs[s->acked - 1] : 0;
    s->seqs[s->acked] = seq;
    s->acked = v;
    pthread_mutex_unlock(&s->mu);
    if (seq <= prev)
        report_failure("key %s: version %u got sequence %" PRIu64
                       ", not above version %u's %" PRIu64,
                       s->name, v, seq, v - 1, prev);
}

static bool add_op(st_batch *b, int k, uint32_t v)
{
    uint8_t val[MAX_VALUE];
    st_status s = is_delete(k, v)
                      ? st_batch_delete(b, key_slice(k))
                      : st_batch_put(b, key_slice(k), st_slice_make(val, value_of(k, v, val)));
    if (s)
        report_failure("st_batch_%s %s: %s", is_delete(k, v) ? "delete" : "put", keys[k].name,
                       st_errmsg());
    return s == ST_OK;
}

/* Write `n` keys (distinct) as one batch, or as a single put/delete when n == 1 and !as_batch. */
static void write_keys(writer *w, st_batch *b, const int *ks, int n, bool as_batch)
{
    uint32_t v[GROUP_SIZE > 8 ? GROUP_SIZE : 8];
    uint64_t seq = 0;
    st_status s;
    for (int i = 0; i < n; i++)
        v[i] = begin_version(ks[i]);
    if (!as_batch) {
        uint8_t val[MAX_VALUE];
        if (is_delete(ks[0], v[0]))
            s = st_db_delete(w->r->db, key_slice(ks[0]), &seq);
        else
            s = st_db_put(w->r->db, key_slice(ks[0]),
                          st_slice_make(val, value_of(ks[0], v[0], val)), &seq);
    } else {
        st_batch_clear(b);
        for (int i = 0; i < n; i++)
            if (!add_op(b, ks[i], v[i]))
                return;
        s = st_db_write(w->r->db, b, &seq);
    }
    if (s) {
        report_failure("writer %d: %s: %s: %s", w->id, as_batch ? "st_db_write" : "put/delete",
                       st_status_name(s), st_errmsg());
        return;
    }
    /* A batch of n operations takes n consecutive sequences and reports the last. */
    for (int i = 0; i < n; i++)
        finish_version(ks[i], v[i], seq - (uint64_t)(n - 1 - i));
    atomic_fetch_add(&w->r->writes, 1);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    st_rng r;
    st_rng_seed(&r, w->r->seed ^ (0x1000u + (uint64_t)w->id) * 0x9e3779b97f4a7c15ull);
    st_batch *b = NULL;
    if (st_batch_create(&b)) {
        report_failure("st_batch_create: %s", st_errmsg());
        return NULL;
    }
    for (uint64_t op = 0; op < w->r->ops_per_writer && running(); op++) {
        if ((op & 63) == 0 && mono_us() > w->r->deadline_us) {
            atomic_store(&w->r->cut_short, true);
            break;
        }
        uint64_t dice = st_rng_uniform(&r, 100);
        if (dice < 12 && w->ngroups) {
            int g = w->groups[st_rng_uniform(&r, (uint64_t)w->ngroups)];
            write_keys(w, b, members[g], GROUP_SIZE, true);
            atomic_fetch_add(&w->r->group_batches, 1);
        } else if (dice < 35) {
            int ks[8], n = 2 + (int)st_rng_uniform(&r, 7);
            for (int i = 0; i < n; i++) {
                bool dup;
                do {
                    ks[i] = w->own[st_rng_uniform(&r, (uint64_t)w->nown)];
                    dup = false;
                    for (int j = 0; j < i; j++)
                        dup |= ks[j] == ks[i];
                } while (dup);
            }
            write_keys(w, b, ks, n, true);
            atomic_fetch_add(&w->r->batches, 1);
        } else {
            /* Most single writes go to a hot eighth of the keys, so versions pile up. */
            uint64_t span = st_rng_uniform(&r, 4) ? (uint64_t)w->nown / 8 : (uint64_t)w->nown;
            int k = w->own[st_rng_uniform(&r, span)];
            write_keys(w, b, &k, 1, false);
        }
    }
    st_batch_destroy(b);
    return NULL;
}

/* ---- readers ------------------------------------------------------------------------------ */

typedef struct worker {
    run *r;
    int id;
} worker;

/* Get key k (or, with k < 0, a key nobody writes) through snap and check the answer. */
static void get_and_check(run *r, const st_snapshot *snap, int k, st_rng *rng)
{
    char phantom[16];
    st_slice key;
    if (k >= 0) {
        key = key_slice(k);
    } else {
        snprintf(phantom, sizeof(phantom), "%04d.x", (int)st_rng_uniform(rng, NSLOTS));
        key = st_slice_str(phantom);
    }
    uint8_t *v = NULL;
    size_t n = 0;
    uint64_t rs = 0;
    st_status s = st_db_get(r->db, snap, key, &v, &n, &rs);
    if (snap && rs != st_snapshot_seq(snap))
        report_failure("get through a snapshot at %" PRIu64 " read at %" PRIu64,
                       st_snapshot_seq(snap), rs);
    if (s == ST_OK) {
        if (k < 0) {
            report_failure("get %.*s: a key nobody wrote has a value", (int)key.len,
                           (const char *)key.data);
        } else {
            uint32_t ver = parse_value(k, st_slice_make(v, n), "get");
            if (ver)
                check_read(k, rs, true, ver, snap ? "get (snapshot)" : "get");
        }
    } else if (s == ST_NOT_FOUND) {
        if (k >= 0)
            check_read(k, rs, false, 0, snap ? "get (snapshot)" : "get");
    } else {
        report_failure("get %.*s: %s: %s", (int)key.len, (const char *)key.data, st_status_name(s),
                       st_errmsg());
    }
    st_free(v);
    atomic_fetch_add(snap ? &r->snap_gets : &r->gets, 1);
}

static void *reader_main(void *arg)
{
    worker *wk = arg;
    run *r = wk->r;
    st_rng rng;
    st_rng_seed(&rng, r->seed ^ (0x2000u + (uint64_t)wk->id) * 0x9e3779b97f4a7c15ull);
    while (running()) {
        if (st_rng_uniform(&rng, 100) == 0) {
            /* A snapshot held across many gets while the writers go on. */
            st_snapshot *snap;
            if (st_db_snapshot(r->db, &snap)) {
                report_failure("st_db_snapshot: %s", st_errmsg());
                break;
            }
            for (int i = 0; i < 50 && running(); i++) {
                get_and_check(r, snap, (int)st_rng_uniform(&rng, (uint64_t)nkeys), &rng);
                if (i % 10 == 9)
                    sleep_us(500);
            }
            st_db_release_snapshot(r->db, snap);
        } else {
            int k = st_rng_uniform(&rng, 50) ? (int)st_rng_uniform(&rng, (uint64_t)nkeys) : -1;
            get_and_check(r, NULL, k, &rng);
        }
    }
    return NULL;
}

/* ---- iterators ---------------------------------------------------------------------------- */

typedef enum scan_mode { FROM_FIRST, FROM_LAST, FROM_SEEK, FROM_SEEK_PREV } scan_mode;

/* Sleep until the engine has flushed and compacted since (f0, c0), or a few seconds passed. */
static bool wait_for_flush_and_compaction(run *r, uint64_t f0, uint64_t c0)
{
    uint64_t until = mono_us() + 5000000u;
    st_stats st;
    for (;;) {
        stats(r->db, &st);
        if (st.flushes > f0 && st.compactions > c0)
            return true;
        if (!running() || mono_us() > until)
            return false;
        sleep_us(2000);
    }
}

/* The key under the iterator, as an index; -1 if none of ours, -2 if not valid. */
static int iter_index(const st_iter *it)
{
    return st_iter_valid(it) ? key_index(st_iter_key(it)) : -2;
}

/*
 * A change of direction in the middle of a scan: one step back must land on `before` (the key
 * returned before `cur`) with a value right for sequence rs, and one step on again on `cur`.
 */
static bool turn_around(st_iter *it, bool reverse, int before, int cur, uint64_t rs,
                        const char *what)
{
    reverse ? st_iter_next(it) : st_iter_prev(it);
    int got = iter_index(it);
    if (got != before) {
        report_failure("%s: turning back from %s at sequence %" PRIu64 " reached %s, not %s", what,
                       keys[cur].name, rs,
                       got >= 0    ? keys[got].name
                       : got == -1 ? "an unknown key"
                                   : "the end",
                       keys[before].name);
        return false;
    }
    uint32_t ver = parse_value(got, st_iter_value(it), what);
    if (!ver || !check_read(got, rs, true, ver, what))
        return false;
    reverse ? st_iter_prev(it) : st_iter_next(it);
    got = iter_index(it);
    if (got != cur) {
        report_failure("%s: turning forward again from %s at sequence %" PRIu64
                       " reached %s, not %s",
                       what, keys[before].name, rs,
                       got >= 0    ? keys[got].name
                       : got == -1 ? "an unknown key"
                                   : "the end",
                       keys[cur].name);
        return false;
    }
    return true;
}

/*
 * Scan keys [lo, hi) (indices into keys[]) through snap (may be NULL) and check everything. The
 * engine gets keys[lo] and keys[hi] as bounds, except an empty start for lo == 0 when
 * `open_ended` and an empty end for hi == nkeys. `target` is the key index of a seek for
 * FROM_SEEK / FROM_SEEK_PREV.
 */
static void scan_and_check(run *r, const st_snapshot *snap, int lo, int hi, bool open_ended,
                           scan_mode mode, int target, bool slow, const char *what)
{
    st_slice empty = st_slice_make(NULL, 0);
    st_slice start = lo == 0 && open_ended ? empty : key_slice(lo);
    st_slice end = hi == nkeys ? empty : key_slice(hi);
    st_stats st0;
    if (slow)
        stats(r->db, &st0);
    st_iter *it;
    st_status s = st_db_iter(r->db, snap, start, end, &it);
    if (s) {
        report_failure("%s: st_db_iter: %s: %s", what, st_status_name(s), st_errmsg());
        return;
    }
    uint64_t rs = st_iter_seq(it);
    if (snap && rs != st_snapshot_seq(snap))
        report_failure("%s: iterator through a snapshot at %" PRIu64 " reads at %" PRIu64, what,
                       st_snapshot_seq(snap), rs);
    bool reverse = mode == FROM_LAST || mode == FROM_SEEK_PREV;
    int first; /* the first index the scan is answerable for */
    switch (mode) {
    case FROM_FIRST:
        st_iter_first(it);
        first = lo;
        break;
    case FROM_LAST:
        st_iter_last(it);
        first = hi - 1;
        break;
    case FROM_SEEK:
        st_iter_seek(it, key_slice(target));
        first = target > lo ? target : lo;
        break;
    default:
        st_iter_seek_prev(it, key_slice(target));
        first = target < hi - 1 ? target : hi - 1;
        break;
    }
    int pos = first, step = reverse ? -1 : 1, steps = 0, last = -1;
    uint32_t seen[NGROUPS * GROUP_SIZE];
    memset(seen, 0, sizeof(seen));
    bool waited = false;
    for (; st_iter_valid(it) && running(); reverse ? st_iter_prev(it) : st_iter_next(it)) {
        st_slice k = st_iter_key(it);
        int idx = key_index(k);
        if (idx < 0) {
            report_failure("%s: returned key \"%.*s\", which nobody wrote", what, (int)k.len,
                           (const char *)k.data);
            break;
        }
        if (reverse ? idx > pos || idx < lo : idx < pos || idx >= hi) {
            int prev = pos - step; /* the key returned before, if any */
            report_failure("%s: at sequence %" PRIu64 ", after %d keys (the last %s), returned "
                           "%s: out of order or out of the range [%s, %s)",
                           what, rs, steps, steps ? keys[prev].name : "none", keys[idx].name,
                           keys[lo].name, hi < nkeys ? keys[hi].name : "end");
            break;
        }
        /* Everything passed over must be absent at the iterator's sequence. */
        for (int j = pos; j != idx; j += step)
            if (!check_read(j, rs, false, 0, what))
                break;
        uint32_t ver = parse_value(idx, st_iter_value(it), what);
        if (!ver || !check_read(idx, rs, true, ver, what))
            break;
        if (keys[idx].group >= 0)
            for (int j = 0; j < GROUP_SIZE; j++)
                if (members[keys[idx].group][j] == idx)
                    seen[keys[idx].group * GROUP_SIZE + j] = ver;
        pos = idx + step;
        steps++;
        atomic_fetch_add(&r->scanned, 1);
        if (slow && steps % 8 == 0 && last >= 0) {
            if (!turn_around(it, reverse, last, idx, rs, what))
                break;
            atomic_fetch_add(&r->turns, 1);
        }
        last = idx;
        if (slow && steps % 16 == 0)
            sleep_us(300);
        if (slow && !waited && steps == 24) {
            /* Stay open across a flush and a compaction, then go on reading the old state. */
            waited = true;
            if (wait_for_flush_and_compaction(r, st0.flushes, st0.compactions))
                atomic_fetch_add(&r->spanning, 1);
        }
    }
    if (!running()) {
        st_iter_destroy(it);
        return;
    }
    s = st_iter_status(it);
    if (s) {
        report_failure("%s: iterator stopped: %s: %s", what, st_status_name(s), st_errmsg());
        st_iter_destroy(it);
        return;
    }
    /* The rest of the range must be absent too. */
    for (int j = pos; reverse ? j >= lo : j < hi; j += step)
        if (!check_read(j, rs, false, 0, what))
            break;
    /* Each group shows one version on every member the scan covered, or none at all. */
    int cov_lo = reverse ? lo : first, cov_hi = reverse ? first : hi - 1;
    for (int g = 0; g < NGROUPS && !atomic_load(&failed); g++) {
        int ref = -1;
        for (int j = 0; j < GROUP_SIZE; j++) {
            int idx = members[g][j];
            if (idx < cov_lo || idx > cov_hi)
                continue;
            if (ref < 0) {
                ref = j;
            } else if (seen[g * GROUP_SIZE + j] != seen[g * GROUP_SIZE + ref]) {
                report_failure("%s: group %d torn at sequence %" PRIu64
                               ": %s at version %u, %s at %u",
                               what, g, rs, keys[members[g][ref]].name, seen[g * GROUP_SIZE + ref],
                               keys[idx].name, seen[g * GROUP_SIZE + j]);
                break;
            }
        }
    }
    st_iter_destroy(it);
    atomic_fetch_add(&r->scans, 1);
}

static void random_scan(run *r, st_rng *rng, const st_snapshot *snap, bool slow)
{
    int a = (int)st_rng_uniform(rng, (uint64_t)nkeys + 1);
    int span = st_rng_uniform(rng, 4) ? 1 + (int)st_rng_uniform(rng, 300) : nkeys;
    int lo = a, hi = a + span > nkeys ? nkeys : a + span;
    if (st_rng_uniform(rng, 6) == 0)
        lo = 0;
    if (lo == hi)
        hi = lo + 1 > nkeys ? nkeys : lo + 1;
    if (lo == hi)
        lo = hi - 1;
    scan_mode mode = (scan_mode)st_rng_uniform(rng, 4);
    int target = lo + (int)st_rng_uniform(rng, (uint64_t)(hi - lo));
    char what[96];
    snprintf(what, sizeof(what), "%s%s scan%s",
             mode == FROM_FIRST || mode == FROM_SEEK ? "forward" : "reverse",
             snap ? " snapshot" : "", slow ? " (long-lived)" : "");
    scan_and_check(r, snap, lo, hi, st_rng_uniform(rng, 2), mode, target, slow, what);
}

static void *iterator_main(void *arg)
{
    worker *wk = arg;
    run *r = wk->r;
    st_rng rng;
    st_rng_seed(&rng, r->seed ^ (0x3000u + (uint64_t)wk->id) * 0x9e3779b97f4a7c15ull);
    while (running()) {
        uint64_t dice = st_rng_uniform(&rng, 10);
        if (dice == 0) {
            /* Several scans through one snapshot, with time passing between them. */
            st_snapshot *snap;
            if (st_db_snapshot(r->db, &snap)) {
                report_failure("st_db_snapshot: %s", st_errmsg());
                break;
            }
            for (int i = 0; i < 4 && running(); i++) {
                random_scan(r, &rng, snap, false);
                sleep_us(1000);
            }
            st_db_release_snapshot(r->db, snap);
        } else if (dice == 1) {
            atomic_fetch_add(&r->long_lived, 1);
            random_scan(r, &rng, NULL, true);
        } else {
            random_scan(r, &rng, NULL, false);
        }
    }
    return NULL;
}

/* ---- maintenance -------------------------------------------------------------------------- */

static void *maintenance_main(void *arg)
{
    worker *wk = arg;
    run *r = wk->r;
    st_rng rng;
    st_rng_seed(&rng, r->seed ^ 0x4000u * 0x9e3779b97f4a7c15ull);
    while (running()) {
        sleep_us(2000 + st_rng_uniform(&rng, 20000));
        st_status s;
        if (st_rng_uniform(&rng, 2)) {
            s = st_db_flush(r->db);
            atomic_fetch_add(&r->flushes, 1);
        } else {
            int a = (int)st_rng_uniform(&rng, (uint64_t)nkeys);
            int b = (int)st_rng_uniform(&rng, (uint64_t)nkeys);
            st_slice lo = key_slice(a < b ? a : b), hi = key_slice(a < b ? b : a);
            if (st_rng_uniform(&rng, 4) == 0)
                lo = hi = st_slice_make(NULL, 0);
            s = st_db_compact_range(r->db, lo, hi);
            atomic_fetch_add(&r->compact_calls, 1);
        }
        if (s)
            report_failure("maintenance: %s: %s", st_status_name(s), st_errmsg());
    }
    return NULL;
}

/* ---- the run ------------------------------------------------------------------------------ */

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "engine: %s\n", line);
}

static void stress_options(st_options *o, bool mmap_reads)
{
    st_options_init(o);
    if (getenv("ST_TEST_VERBOSE"))
        o->log = log_line;
    o->sync = ST_SYNC_NONE;
    o->env = st_env_nosync();
    o->memtable_bytes = 64 * 1024;
    o->table_bytes = 16 * 1024;
    o->block_bytes = 512;
    o->level1_bytes = 64 * 1024;
    o->block_cache_bytes = 256 * 1024;
    o->stall_timeout_ms = 120000; /* sanitizers are slow; a stall must not fail a write */
    o->paranoid_checks = true;
    o->mmap_reads = mmap_reads;
}

static void assert_no_failure(const char *when)
{
    if (atomic_load(&failed))
        fprintf(stderr, "stress: FAILED %s: %s\n", when, fail_msg);
    assert_false(atomic_load(&failed));
}

/* With no writer running: every key is exactly at its last finished version. */
static void final_check(run *r, const char *when)
{
    uint64_t max_seq = 0;
    for (int k = 0; k < nkeys; k++) {
        key_state *s = &keys[k];
        if (s->started != s->acked)
            report_failure("%s: key %s has a write that never finished", when, s->name);
        if (s->acked && s->seqs[s->acked - 1] > max_seq)
            max_seq = s->seqs[s->acked - 1];
    }
    st_rng rng;
    st_rng_seed(&rng, r->seed);
    for (int k = 0; k < nkeys && running(); k++)
        get_and_check(r, NULL, k, &rng);
    scan_and_check(r, NULL, 0, nkeys, true, FROM_FIRST, 0, false, "final forward scan");
    scan_and_check(r, NULL, 0, nkeys, true, FROM_LAST, 0, false, "final reverse scan");
    assert_no_failure(when);
    st_stats st;
    stats(r->db, &st);
    if (st.bg_status)
        fprintf(stderr, "stress: background error: %s\n", st.bg_message);
    assert_int_equal(st.bg_status, ST_OK);
    assert_true(st.applied_seq >= max_seq);
}

static void stress_run(bool mmap_reads)
{
    static run r;
    memset(&r, 0, sizeof(r));
    atomic_store(&failed, false);
    atomic_store(&stop, false);
    fail_msg[0] = '\0';
    r.seed = st_test_seed(mmap_reads ? "stress(mmap)" : "stress(pread)");
    r.ops_per_writer = st_test_scaled(60000);
    r.deadline_us = mono_us() + st_test_scaled(WRITE_SECONDS) * 1000000u;
    keys_init();
    char *dir = st_test_mkdtemp("stress");
    st_options o;
    stress_options(&o, mmap_reads);
    st_status s = st_db_open(dir, &o, &r.db);
    if (s)
        fprintf(stderr, "open: %s\n", st_errmsg());
    assert_int_equal(s, ST_OK);

    static writer ws[NWRITERS];
    static worker rd[NREADERS], its[NITERATORS], maint;
    pthread_t tw[NWRITERS], tr[NREADERS], ti[NITERATORS], tm;
    uint64_t t0 = mono_us();
    for (int w = 0; w < NWRITERS; w++) {
        ws[w] = (writer){.r = &r, .id = w};
        ws[w].own = malloc(sizeof(int) * NSLOTS);
        for (int k = 0; k < nkeys; k++)
            if (keys[k].writer == w && keys[k].group < 0)
                ws[w].own[ws[w].nown++] = k;
        for (int g = 0; g < NGROUPS; g++)
            if (g % NWRITERS == w)
                ws[w].groups[ws[w].ngroups++] = g;
        assert_int_equal(pthread_create(&tw[w], NULL, writer_main, &ws[w]), 0);
    }
    for (int i = 0; i < NREADERS; i++) {
        rd[i] = (worker){&r, i};
        assert_int_equal(pthread_create(&tr[i], NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < NITERATORS; i++) {
        its[i] = (worker){&r, i};
        assert_int_equal(pthread_create(&ti[i], NULL, iterator_main, &its[i]), 0);
    }
    maint = (worker){&r, 0};
    assert_int_equal(pthread_create(&tm, NULL, maintenance_main, &maint), 0);

    for (int w = 0; w < NWRITERS; w++)
        pthread_join(tw[w], NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(tr[i], NULL);
    for (int i = 0; i < NITERATORS; i++)
        pthread_join(ti[i], NULL);
    pthread_join(tm, NULL);
    uint64_t elapsed = mono_us() - t0;
    for (int w = 0; w < NWRITERS; w++)
        free(ws[w].own);
    assert_no_failure("during the run");

    st_stats st;
    stats(r.db, &st);
    fprintf(stderr,
            "stress: %.1f s%s: %" PRIu64 " writes (%" PRIu64 " batches, %" PRIu64
            " group batches), %" PRIu64 " gets + %" PRIu64 " through snapshots, %" PRIu64
            " scans over %" PRIu64 " keys, %" PRIu64 " long-lived (%" PRIu64
            " open across a flush and a compaction, %" PRIu64 " turns of direction), %" PRIu64
            " st_db_flush, %" PRIu64 " st_db_compact_range; engine: %" PRIu64 " flushes, %" PRIu64
            " compactions, %" PRIu64 " stalls, L0..L3 = %u/%u/%u/%u tables\n",
            (double)elapsed / 1e6, atomic_load(&r.cut_short) ? " (time limit)" : "",
            atomic_load(&r.writes), atomic_load(&r.batches), atomic_load(&r.group_batches),
            atomic_load(&r.gets), atomic_load(&r.snap_gets), atomic_load(&r.scans),
            atomic_load(&r.scanned), atomic_load(&r.long_lived), atomic_load(&r.spanning),
            atomic_load(&r.turns), atomic_load(&r.flushes), atomic_load(&r.compact_calls),
            st.flushes, st.compactions, st.stalls, st.levels[0].files, st.levels[1].files,
            st.levels[2].files, st.levels[3].files);
    /* The run did what it is for: background work all along, iterators held across it. */
    assert_true(st.flushes >= 10);
    assert_true(st.compactions >= 5);
    assert_true(atomic_load(&r.group_batches) > 0);
    assert_true(atomic_load(&r.scans) > 0);
    if (atomic_load(&r.long_lived) >= 10) /* not at a tiny ST_TEST_SCALE */
        assert_true(atomic_load(&r.spanning) > 0);

    atomic_store(&stop, false);
    final_check(&r, "after the run");
    st_db_close(r.db);
    s = st_db_open(dir, &o, &r.db);
    if (s)
        fprintf(stderr, "reopen: %s\n", st_errmsg());
    assert_int_equal(s, ST_OK);
    final_check(&r, "after reopening");
    st_db_close(r.db);
    st_test_rmdir(dir);
    free(dir);
    keys_free();
}

static void test_stress_mmap(void **state)
{
    (void)state;
    stress_run(true);
}

static void test_stress_pread(void **state)
{
    (void)state;
    stress_run(false);
}

/* ---- a reverse scan beside a writer ------------------------------------------------------ */

typedef struct hammer {
    st_db *db;
    atomic_bool done;
    bool failed;
    char msg[256];
} hammer;

/* Write new versions of "k0051" as fast as possible: the key right after the scans' end bound. */
static void *hammer_main(void *arg)
{
    hammer *h = arg;
    char v[64];
    for (unsigned n = 0; !atomic_load(&h->done); n++) {
        snprintf(v, sizeof(v), "v%u", n);
        if (st_db_put(h->db, st_slice_str("k0051"), st_slice_str(v), NULL)) {
            h->failed = true;
            snprintf(h->msg, sizeof(h->msg), "%s", st_errmsg());
            break;
        }
    }
    return NULL;
}

/*
 * The end bound "k0050" lives in a table; the memtable takes new versions of "k0051" all the time.
 * A reverse scan from "k0049" (st_iter_last on ["k0045", "k0050"), or st_iter_seek_prev("k0049")
 * with that end, with the end "k0060", or with none) must return "k0049", whatever is inserted
 * meanwhile. (The merging iterator's turn to reverse re-seeks each child and steps it back one
 * entry; a version inserted between the two steps leaves the memtable child after the key it
 * turned at, "k0050". With the end "k0050" the user iterator skips that key as out of range; with
 * the others only the merging iterator can keep it out, as in the stress run's mid-range scans.)
 */
static void test_reverse_scan_beside_writer(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("stress_reverse");
    st_options o;
    stress_options(&o, true);
    hammer h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(st_db_open(dir, &o, &h.db), ST_OK);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%04d", i);
        assert_int_equal(st_db_put(h.db, st_slice_str(k), st_slice_str("x"), NULL), ST_OK);
    }
    assert_int_equal(st_db_flush(h.db), ST_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hammer_main, &h), 0);
    uint64_t rounds = st_test_scaled(200000), bad = 0, done = 0;
    uint64_t until = mono_us() + st_test_scaled(10) * 1000000u;
    char first_bad[192] = "";
    static const char *const ends[] = {"k0050", "k0050", "k0060", ""};
    for (uint64_t i = 0; i < rounds && mono_us() < until; i++, done++) {
        st_iter *it;
        int variant = (int)(i % 4);
        const char *end = ends[variant];
        assert_int_equal(st_db_iter(h.db, NULL, st_slice_str("k0045"), st_slice_str(end), &it),
                         ST_OK);
        bool from_last = variant == 0;
        if (from_last)
            st_iter_last(it);
        else
            st_iter_seek_prev(it, st_slice_str("k0049"));
        st_slice k = st_iter_valid(it) ? st_iter_key(it) : st_slice_make(NULL, 0);
        if (!st_slice_eq(k, st_slice_str("k0049")) && bad++ == 0)
            snprintf(first_bad, sizeof(first_bad),
                     "%s with the end \"%s\" returned \"%.*s\" at sequence %" PRIu64,
                     from_last ? "st_iter_last" : "st_iter_seek_prev(k0049)", end, (int)k.len,
                     k.len ? (const char *)k.data : "", st_iter_seq(it));
        assert_int_equal(st_iter_status(it), ST_OK);
        st_iter_destroy(it);
    }
    atomic_store(&h.done, true);
    pthread_join(t, NULL);
    st_db_close(h.db);
    st_test_rmdir(dir);
    free(dir);
    if (h.failed)
        fprintf(stderr, "reverse: writer: %s\n", h.msg);
    assert_false(h.failed);
    fprintf(stderr, "reverse: %" PRIu64 " of %" PRIu64 " reverse scans went wrong%s%s\n", bad, done,
            bad ? "; first: " : "", first_bad);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_mmap),
        cmocka_unit_test(test_stress_pread),
        cmocka_unit_test(test_reverse_scan_beside_writer),
    };
    return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
