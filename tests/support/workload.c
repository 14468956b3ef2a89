/* workload.c - the crash tests' workload, model checks and tripwire env. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/workload.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- options and bookkeeping --------------------------------------------------------------- */

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    /* test_crash.c logs from several processes at once. */
    fprintf(stderr, "[%d] engine: %s\n", (int)getpid(), line);
}

void st_workload_options(st_options *o, st_sync_policy policy, st_env *env)
{
    st_options_init(o);
    if (getenv("ST_TEST_VERBOSE"))
        o->log = log_line;
    o->sync = policy;
    o->env = env;
    o->memtable_bytes = 64 * 1024;
    o->table_bytes = 16 * 1024;
    o->block_bytes = 1024;
    o->level1_bytes = 64 * 1024;
    o->l0_compaction_trigger = 3;
    o->paranoid_checks = true;
    o->block_cache_bytes = 256 * 1024;
}

const char *st_workload_policy_name(st_sync_policy p)
{
    return p == ST_SYNC_ALWAYS ? "always" : p == ST_SYNC_INTERVAL ? "interval" : "none";
}

uint64_t st_workload_seed(st_rng *r, const char *test, st_sync_policy policy)
{
    char name[64];
    snprintf(name, sizeof(name), "%s(%s)", test, st_workload_policy_name(policy));
    uint64_t seed = st_test_seed(name);
    st_rng_seed(r, seed);
    return seed;
}

uint64_t st_workload_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- keys and values ----------------------------------------------------------------------- */

void st_workload_key_name(char *buf, const st_workload_keys *ks, uint16_t idx)
{
    snprintf(buf, ST_WORKLOAD_KEY_CAP, "%s%0*u", ks->prefix, ks->digits, (unsigned)idx);
}

bool st_workload_key_parse(const st_workload_keys *ks, st_slice key, uint16_t *idx)
{
    size_t plen = strlen(ks->prefix);
    if (key.len != plen + (size_t)ks->digits || memcmp(key.data, ks->prefix, plen) != 0)
        return false;
    unsigned v = 0;
    for (size_t i = plen; i < key.len; i++) {
        if (key.data[i] < '0' || key.data[i] > '9')
            return false;
        v = v * 10 + (unsigned)(key.data[i] - '0');
    }
    if (v >= ks->count)
        return false;
    *idx = (uint16_t)v;
    return true;
}

uint64_t st_workload_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

size_t st_workload_value(uint8_t *buf, const char *tag, uint64_t h, size_t extra)
{
    size_t n = strlen(tag), len = n + extra;
    if (len > ST_WORKLOAD_MAX_VALUE)
        abort(); /* a test's own bug; maybe in a forked child, where cmocka cannot fail */
    memcpy(buf, tag, n);
    for (size_t i = n; i < len; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(h >> 56);
    }
    return len;
}

/* ---- writes -------------------------------------------------------------------------------- */

void st_workload_choose(st_rng *r, const st_workload_keys *ks, unsigned put_pct,
                        unsigned delete_pct, st_workload_write *w)
{
    memset(w, 0, sizeof(*w));
    uint64_t dice = st_rng_uniform(r, 100);
    w->type = dice < put_pct                ? ST_WORKLOAD_PUT
              : dice < put_pct + delete_pct ? ST_WORKLOAD_DELETE
                                            : ST_WORKLOAD_BATCH;
    w->nkeys = w->type == ST_WORKLOAD_BATCH
                   ? (uint8_t)(2 + st_rng_uniform(r, ST_WORKLOAD_MAX_BATCH - 1))
                   : 1;
    for (int i = 0; i < w->nkeys; i++) {
        for (;;) {
            uint16_t k = (uint16_t)(st_rng_uniform(r, 2) ? st_rng_uniform(r, ks->hot)
                                                         : st_rng_uniform(r, ks->count));
            bool dup = false;
            for (int j = 0; j < i; j++)
                dup |= w->keys[j] == k;
            if (!dup) {
                w->keys[i] = k;
                break;
            }
        }
    }
    if (w->type == ST_WORKLOAD_DELETE)
        w->delmask = 1;
    else if (w->type == ST_WORKLOAD_BATCH)
        for (int i = 0; i < w->nkeys; i++)
            if (st_rng_uniform(r, 6) == 0)
                w->delmask |= (uint8_t)(1u << i);
}

st_status st_workload_do(st_db *db, st_batch *b, const st_workload_keys *ks,
                         const st_workload_write *w, st_slice value)
{
    char key[ST_WORKLOAD_KEY_CAP];
    if (w->type != ST_WORKLOAD_BATCH) {
        st_workload_key_name(key, ks, w->keys[0]);
        if (w->type == ST_WORKLOAD_DELETE)
            return st_db_delete(db, st_slice_str(key), NULL);
        return st_db_put(db, st_slice_str(key), value, NULL);
    }
    st_batch_clear(b);
    for (int i = 0; i < w->nkeys; i++) {
        st_workload_key_name(key, ks, w->keys[i]);
        st_status s = (w->delmask >> i) & 1 ? st_batch_delete(b, st_slice_str(key))
                                            : st_batch_put(b, st_slice_str(key), value);
        if (s)
            return s;
    }
    return st_db_write(db, b, NULL);
}

/* ---- the model ----------------------------------------------------------------------------- */

void st_workload_apply(st_workload_slot *slots, uint32_t round, uint32_t op,
                       const st_workload_write *w)
{
    for (int i = 0; i < w->nkeys; i++) {
        st_workload_slot *sl = &slots[w->keys[i]];
        sl->round = round;
        sl->op = op;
        sl->present = !((w->delmask >> i) & 1);
    }
}

void st_workload_describe(char *buf, size_t cap, const st_workload_slot *sl)
{
    if (sl->op == 0)
        snprintf(buf, cap, "absent (never written)");
    else
        snprintf(buf, cap, "%s r%" PRIu32 ".o%" PRIu32, sl->present ? "put" : "deleted by",
                 sl->round, sl->op);
}

/* ---- checks after recovery ----------------------------------------------------------------- */

void st_workload_scan(st_db *db, const st_workload_keys *spaces, int nspaces, const char *special,
                      const char *where, st_workload_visit_fn visit, void *ctx)
{
    st_iter *it;
    assert_int_equal(st_db_iter(db, NULL, st_slice_make(NULL, 0), st_slice_make(NULL, 0), &it),
                     ST_OK);
    for (st_iter_first(it); st_iter_valid(it); st_iter_next(it)) {
        st_slice k = st_iter_key(it), v = st_iter_value(it);
        if (special && st_slice_eq(k, st_slice_str(special))) {
            visit(ctx, -1, 0, v);
            continue;
        }
        int sp = 0;
        uint16_t idx = 0;
        while (sp < nspaces && !st_workload_key_parse(&spaces[sp], k, &idx))
            sp++;
        if (sp == nspaces) {
            char key[48];
            snprintf(key, sizeof(key), "%.*s", (int)(k.len < 40 ? k.len : 40),
                     (const char *)k.data);
            fail_msg("%s: the scan found key \"%s\" (%zu bytes), never written", where, key, k.len);
        }
        visit(ctx, sp, idx, v);
    }
    if (st_iter_status(it))
        fail_msg("%s: scan: %s", where, st_errmsg());
    st_iter_destroy(it);
}

void st_workload_check_usable(st_db *db, const char *where, const char *key, const char *value,
                              st_stats *stats)
{
    st_stats st;
    assert_int_equal(st_db_stats(db, &st), ST_OK);
    if (st.bg_status)
        fail_msg("%s: background error after reopen: %s", where, st.bg_message);
    if (stats)
        *stats = st;
    st_status s = st_db_put(db, st_slice_str(key), st_slice_str(value), NULL);
    if (s)
        fail_msg("%s: put after reopen: %s", where, st_errmsg());
    uint8_t *got = NULL;
    size_t n = 0;
    s = st_db_get(db, NULL, st_slice_str(key), &got, &n, NULL);
    if (s)
        fail_msg("%s: get %s after putting it: %s: %s", where, key, st_status_name(s), st_errmsg());
    if (!st_slice_eq(st_slice_make(got, n), st_slice_str(value)))
        fail_msg("%s: %s reads back %.*s (%zu bytes), want %s", where, key, (int)(n < 40 ? n : 40),
                 (const char *)got, n, value);
    st_free(got);
}

/* ---- crash points -------------------------------------------------------------------------- */

bool st_workload_points_next(st_workload_points *p)
{
    if (p->n < p->exhaustive) {
        p->n++;
        return true;
    }
    if (p->sampled++ >= p->samples)
        return false;
    uint64_t rest = p->total > p->exhaustive ? p->total - p->exhaustive : 1;
    p->n += 1 + st_rng_uniform(p->rng, 2 * rest / p->samples + 1);
    return true;
}

/* ---- the tripwire env ---------------------------------------------------------------------- */

static struct {
    st_env env;
    st_env *inner;
    st_workload_trip_fn trip;
    void *ctx;
    atomic_uint_fast64_t calls;
    atomic_uint_fast64_t trip_at; /* 0 = never */
} g_trip;

/* Count a mutating call and trip if it is the armed one. */
static void count_call(st_file *f, const void *data, size_t n)
{
    uint64_t c = atomic_fetch_add(&g_trip.calls, 1) + 1;
    if (c == atomic_load(&g_trip.trip_at))
        g_trip.trip(g_trip.ctx, g_trip.inner, f, data, n);
}

static st_status t_open_writable(st_env *env, const char *path, bool append, st_file **out)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->open_writable(g_trip.inner, path, append, out);
}

static st_status t_append(st_file *f, const void *data, size_t n)
{
    count_call(f, data, n);
    return g_trip.inner->append(f, data, n);
}

static st_status t_sync(st_file *f)
{
    count_call(NULL, NULL, 0);
    return g_trip.inner->sync(f);
}

static st_status t_truncate(st_file *f, uint64_t size)
{
    count_call(NULL, NULL, 0);
    return g_trip.inner->truncate(f, size);
}

static st_status t_mkdir(st_env *env, const char *path)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->mkdir(g_trip.inner, path);
}

static st_status t_sync_dir(st_env *env, const char *path)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->sync_dir(g_trip.inner, path);
}

static st_status t_rename(st_env *env, const char *from, const char *to)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->rename(g_trip.inner, from, to);
}

static st_status t_link(st_env *env, const char *from, const char *to)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->link(g_trip.inner, from, to);
}

static st_status t_unlink(st_env *env, const char *path)
{
    (void)env;
    count_call(NULL, NULL, 0);
    return g_trip.inner->unlink(g_trip.inner, path);
}

st_env *st_workload_trip_env(st_env *inner, st_workload_trip_fn trip, void *ctx)
{
    atomic_store(&g_trip.trip_at, 0);
    g_trip.inner = inner;
    g_trip.trip = trip;
    g_trip.ctx = ctx;
    g_trip.env = *inner;
    g_trip.env.open_writable = t_open_writable;
    g_trip.env.append = t_append;
    g_trip.env.sync = t_sync;
    g_trip.env.truncate = t_truncate;
    g_trip.env.mkdir = t_mkdir;
    g_trip.env.sync_dir = t_sync_dir;
    g_trip.env.rename = t_rename;
    g_trip.env.link = t_link;
    g_trip.env.unlink = t_unlink;
    /* No maps: the WAL then appends, so that every record is a counted call that can trip in
       its middle. (Stores through a map are killed at random moments by test_crash's random
       kills and by test_log's test_mapped_kill.) */
    g_trip.env.map_append = NULL;
    g_trip.env.unmap_append = NULL;
    atomic_store(&g_trip.calls, 0);
    return &g_trip.env;
}

void st_workload_trip_arm(uint64_t nth)
{
    /* Disarm first, so a call counted meanwhile cannot trip at a stale count. */
    atomic_store(&g_trip.trip_at, 0);
    atomic_store(&g_trip.calls, 0);
    atomic_store(&g_trip.trip_at, nth);
}

uint64_t st_workload_trip_calls(void)
{
    return atomic_load(&g_trip.calls);
}
