/*
 * test_faults.c - injected I/O errors and a full disk, through the fault env.
 *
 * Each scenario arms one fault (tests/support/env_fault.h) and then holds the engine to its
 * contract (engine/db.h, "Errors"):
 *   - the error reaches the caller with its status (ST_IO_ERROR or ST_NO_SPACE) and a message;
 *   - from then on every write is refused with that status: the engine neither retries a failed
 *     fsync nor pretends (the fault env counts the syncs it would have retried);
 *   - reads (gets and scans) keep working, st_db_stats shows the error in bg_status/bg_message;
 *   - st_db_close works;
 *   - with the fault cleared, the database reopens with every acknowledged write (the write that
 *     failed may or may not be there, entirely or not at all), and is fully usable: writes,
 *     flushes, compactions, another reopen.
 * Some scenarios also cut the power after the failure (drop what was never synced): the failed
 * write must then be gone, and every acknowledged write still there.
 *
 * The faults: the Nth WAL append (nothing written, a torn prefix, or all of it written), the Nth
 * WAL sync (sync=always, and the interval syncer's), the Nth table write of a flush (asked for, or
 * set off by a full memtable), a failed table directory sync, the MANIFEST append (torn or whole)
 * and sync of a flush's edit and the sync of a compaction's, the directory sync that makes an
 * open's new CURRENT durable, and a byte budget (ENOSPC) running out in the WAL, in a flush, in a
 * range compaction and in a background compaction.
 *
 * The fault env wraps st_env_nosync(): it tracks what each sync would make durable itself.
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
#include <time.h>

#include "engine/db.h"
#include "engine/env.h"
#include "tests/support/env_fault.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"

#define NKEYS     2000
#define MAX_VALUE 1024

/* ---- the fixture and its model ------------------------------------------------------------ */

typedef struct fixture {
    char *dir;
    st_fault_env *fe;
    st_options opts;
    st_db *db;
    uint32_t gen[NKEYS]; /* generation of the acknowledged value of each key; 0 = absent */
    uint32_t next_gen;
    int inflight;          /* key of the write that failed (-1: none) */
    uint32_t inflight_gen; /* its new generation (0: a delete) */
    uint64_t acked;        /* writes acknowledged */
    char defects[2048];    /* wrong error messages, reported at the end of recover() */
    size_t ndefects;
} fixture;

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "engine: %s\n", line);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = st_test_mkdtemp("faults");
    assert_int_equal(st_fault_env_create(st_env_nosync(), &fx->fe), ST_OK);
    st_options_init(&fx->opts);
    if (getenv("ST_TEST_VERBOSE"))
        fx->opts.log = log_line;
    fx->opts.env = st_fault_env_env(fx->fe);
    fx->opts.sync = ST_SYNC_ALWAYS;
    fx->opts.memtable_bytes = 256 * 1024; /* flushes come when a test asks for them */
    fx->opts.table_bytes = 16 * 1024;
    fx->opts.block_bytes = 1024;
    fx->opts.level1_bytes = 64 * 1024;
    fx->opts.l0_compaction_trigger = 8; /* compactions too */
    fx->opts.l0_stop_trigger = 24;
    fx->opts.paranoid_checks = true;
    fx->next_gen = 1;
    fx->inflight = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    st_db_close(fx->db);
    st_fault_env_destroy(fx->fe);
    st_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void open_db(fixture *fx)
{
    st_status s = st_db_open(fx->dir, &fx->opts, &fx->db);
    if (s)
        fail_msg("open: %s: %s", st_status_name(s), st_errmsg());
}

static void close_db(fixture *fx)
{
    st_db_close(fx->db);
    fx->db = NULL;
}

static void key_name(char *buf, int k)
{
    snprintf(buf, 32, "f%05d", k);
}

/* The value of generation g of key k: 60 to 560 bytes, unique to (k, g). */
static size_t make_value(uint8_t *buf, int k, uint32_t g)
{
    int n = snprintf((char *)buf, 48, "v%05d.%" PRIu32 "|", k, g);
    uint64_t h = ((uint64_t)k << 32 | g) * 0x9e3779b97f4a7c15ull;
    size_t len = (size_t)n + 60 + (h >> 40) % 500;
    for (size_t i = (size_t)n; i < len; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)('a' + (h >> 59));
    }
    return len;
}

/* Put a new generation of key k; on ST_OK the model takes it, otherwise it is in flight. */
static st_status put_key(fixture *fx, int k)
{
    char key[32];
    uint8_t val[MAX_VALUE];
    key_name(key, k);
    uint32_t g = fx->next_gen++;
    size_t n = make_value(val, k, g);
    st_status s = st_db_put(fx->db, st_slice_str(key), st_slice_make(val, n), NULL);
    if (s == ST_OK) {
        fx->gen[k] = g;
        fx->acked++;
    } else {
        fx->inflight = k;
        fx->inflight_gen = g;
    }
    return s;
}

/* Acknowledged puts of keys [from, to); every one must succeed. */
static void put_range(fixture *fx, int from, int to)
{
    for (int k = from; k < to; k++) {
        st_status s = put_key(fx, k % NKEYS);
        if (s)
            fail_msg("put f%05d: %s: %s", k % NKEYS, st_status_name(s), st_errmsg());
    }
}

static bool value_is(const uint8_t *v, size_t n, int k, uint32_t g)
{
    uint8_t want[MAX_VALUE];
    size_t wn = make_value(want, k, g);
    return n == wn && memcmp(v, want, n) == 0;
}

/*
 * Every key holds its acknowledged generation; the in-flight key may instead hold the failed
 * write's (when `inflight_may_survive`). Checked with gets and with one full scan.
 */
static void check_model(fixture *fx, bool inflight_may_survive)
{
    for (int k = 0; k < NKEYS; k++) {
        char key[32];
        key_name(key, k);
        uint8_t *v = NULL;
        size_t n = 0;
        st_status s = st_db_get(fx->db, NULL, st_slice_str(key), &v, &n, NULL);
        if (s != ST_OK && s != ST_NOT_FOUND)
            fail_msg("get %s: %s: %s", key, st_status_name(s), st_errmsg());
        bool ok = fx->gen[k] ? s == ST_OK && value_is(v, n, k, fx->gen[k]) : s == ST_NOT_FOUND;
        if (!ok && k == fx->inflight && inflight_may_survive)
            ok = s == ST_OK && value_is(v, n, k, fx->inflight_gen);
        if (!ok)
            fail_msg("%s: want generation %" PRIu32 ", found %s (%zu bytes: %.*s)", key, fx->gen[k],
                     s == ST_OK ? "a value" : "nothing", n, (int)(n < 16 ? n : 16),
                     v ? (const char *)v : "");
        st_free(v);
    }
    st_iter *it;
    assert_int_equal(st_db_iter(fx->db, NULL, st_slice_make(NULL, 0), st_slice_make(NULL, 0), &it),
                     ST_OK);
    int count = 0, want = 0;
    for (st_iter_first(it); st_iter_valid(it); st_iter_next(it))
        count++;
    assert_int_equal(st_iter_status(it), ST_OK);
    st_iter_destroy(it);
    for (int k = 0; k < NKEYS; k++)
        want += fx->gen[k] != 0;
    if (count != want && !(inflight_may_survive && fx->inflight >= 0 && count == want + 1 &&
                           fx->gen[fx->inflight] == 0))
        fail_msg("the scan found %d keys, the model has %d", count, want);
}

/* The failed write turned out applied or not: make the model say which (after a reopen). */
static void settle_inflight(fixture *fx)
{
    if (fx->inflight < 0)
        return;
    char key[32];
    key_name(key, fx->inflight);
    uint8_t *v = NULL;
    size_t n = 0;
    if (st_db_get(fx->db, NULL, st_slice_str(key), &v, &n, NULL) == ST_OK &&
        value_is(v, n, fx->inflight, fx->inflight_gen))
        fx->gen[fx->inflight] = fx->inflight_gen;
    st_free(v);
    fx->inflight = -1;
}

static bool has(const char *msg, const char *part)
{
    return strstr(msg, part) != NULL;
}

/* What a message about a failure of `code` must say besides the file: the cause. */
static const char *cause_of(st_status code)
{
    return code == ST_NO_SPACE ? "no space" : "injected";
}

/*
 * Messages are checked without stopping the scenario: a wrong message is noted here and fails
 * the test at the end of recover(), after every other check has run.
 */
static void check_message(fixture *fx, const char *what, const char *msg, const char *part,
                          st_status code)
{
    if (*msg && has(msg, part) && has(msg, cause_of(code)))
        return;
    if (fx->ndefects < sizeof(fx->defects))
        fx->ndefects +=
            (size_t)snprintf(fx->defects + fx->ndefects, sizeof(fx->defects) - fx->ndefects,
                             "  %s \"%s\" should name \"%s\" and the cause (\"%s\")\n", what, msg,
                             part, cause_of(code));
}

/*
 * The engine has failed with `code`: writes are refused with it (and touch no file), reads work,
 * stats show it. The messages must carry the first error's: `part` (the file) and its cause.
 */
static void assert_refuses(fixture *fx, st_status code, const char *part)
{
    st_fault_env_reset_stats(fx->fe, NULL);
    for (int i = 0; i < 3; i++) {
        char key[32];
        key_name(key, 1999 - i);
        st_status s = st_db_put(fx->db, st_slice_str(key), st_slice_str("refused"), NULL);
        if (s != code)
            fail_msg("write after the failure: want %s, got %s (%s)", st_status_name(code),
                     st_status_name(s), st_errmsg());
        if (i == 0)
            check_message(fx, "refusal", st_errmsg(), part, code);
    }
    st_batch *b;
    assert_int_equal(st_batch_create(&b), ST_OK);
    assert_int_equal(st_batch_put(b, st_slice_str("f01990"), st_slice_str("x")), ST_OK);
    assert_int_equal(st_db_write(fx->db, b, NULL), code);
    st_batch_destroy(b);
    assert_int_equal(st_db_delete(fx->db, st_slice_str("f00000"), NULL), code);
    assert_int_equal(st_db_flush(fx->db), code);
    st_fault_stats fs = st_fault_env_stats(fx->fe);
    if (fs.appends || fs.syncs)
        fail_msg("refused writes still reached the disk: %" PRIu64 " appends, %" PRIu64 " syncs",
                 fs.appends, fs.syncs);

    st_stats st;
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.bg_status, code);
    check_message(fx, "bg_message", st.bg_message, part, code);

    /* Reads go on: everything acknowledged, the failed write maybe. */
    check_model(fx, true);
}

/* A call has just failed: it must have reached the caller with `code` and a message naming
   `part` (the file) and the cause. */
static void assert_failed(fixture *fx, st_status s, st_status code, const char *part)
{
    if (s != code)
        fail_msg("want %s, got %s (%s)", st_status_name(code), st_status_name(s), st_errmsg());
    check_message(fx, "error", st_errmsg(), part, code);
}

/*
 * Close, clear the faults (optionally losing power first: then the failed write must be gone),
 * reopen, check everything acknowledged, then prove the database fully usable.
 */
static void recover(fixture *fx, bool power_loss)
{
    close_db(fx);
    if (power_loss) {
        st_fault_env_power_off(fx->fe);
        assert_int_equal(st_fault_env_drop_unsynced(fx->fe), ST_OK);
        st_fault_env_power_on(fx->fe);
    }
    st_fault_env_clear_faults(fx->fe);
    st_fault_env_fail_sync_dir(fx->fe, NULL);
    open_db(fx);
    st_stats st;
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.bg_status, ST_OK);
    check_model(fx, !power_loss);
    settle_inflight(fx);

    /* Fully usable: writes (some overwriting), a flush, a full compaction, a reopen. */
    put_range(fx, 0, 300);
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    put_range(fx, 1000, 1400);
    assert_int_equal(st_db_compact_range(fx->db, st_slice_make(NULL, 0), st_slice_make(NULL, 0)),
                     ST_OK);
    assert_int_equal(st_db_delete(fx->db, st_slice_str("f00001"), NULL), ST_OK);
    fx->gen[1] = 0;
    check_model(fx, false);
    close_db(fx);
    open_db(fx);
    check_model(fx, false);
    /* The open hands what the WAL replayed to a background flush: let it finish, so that a
       temporary file seen below can only be a leftover. */
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.bg_status, ST_OK);

    /* No temporary or unreferenced table files were left behind. */
    char *sst = st_test_path(fx->dir, "sst");
    char **names;
    size_t count;
    assert_int_equal(st_env_posix()->list(st_env_posix(), sst, &names, &count), ST_OK);
    uint32_t tables = 0, dats = 0;
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        tables += st.levels[l].files;
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        if (n > 4 && strcmp(names[i] + n - 4, ".tmp") == 0)
            fail_msg("temporary file sst/%s left after reopen", names[i]);
        dats += n > 4 && strcmp(names[i] + n - 4, ".dat") == 0;
    }
    st_env_free_names(names, count);
    free(sst);
    assert_int_equal(dats, tables);

    if (fx->ndefects) {
        fprintf(stderr, "wrong error messages:\n%s", fx->defects);
        fail_msg("the error messages do not describe the failure (listed above)");
    }
}

/* ---- the WAL ------------------------------------------------------------------------------ */

/* The nth WAL append fails after writing `prefix` bytes of the record (SIZE_MAX: all of it). */
static void wal_append_fails(fixture *fx, uint64_t nth, size_t prefix, st_status code)
{
    open_db(fx);
    put_range(fx, 0, 200);
    st_fault_env_fail_append(
        fx->fe,
        &(st_fault_spec){.nth = nth, .path_substr = "/wal/", .code = code, .prefix = prefix});
    st_status s = ST_OK;
    for (int k = 200; k < 300 && s == ST_OK; k++)
        s = put_key(fx, k);
    assert_failed(fx, s, code, "wal/");
    assert_int_equal(fx->acked, 200 + nth - 1);
    assert_refuses(fx, code, "wal/");
    recover(fx, false);
}

static void test_wal_append_fails_nothing_written(void **state)
{
    wal_append_fails(*state, 1, 0, ST_IO_ERROR);
}

static void test_wal_append_fails_torn(void **state)
{
    wal_append_fails(*state, 5, 9, ST_IO_ERROR);
}

static void test_wal_append_fails_all_written(void **state)
{
    /* The bytes are all in the file but the call failed: the write may come back on reopen. */
    wal_append_fails(*state, 3, SIZE_MAX, ST_IO_ERROR);
}

static void test_wal_append_no_space(void **state)
{
    wal_append_fails(*state, 2, 20, ST_NO_SPACE);
}

/* Under sync=always the nth WAL fdatasync fails: the write is refused and never acknowledged. */
static void test_wal_sync_fails(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 200);
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 4, .path_substr = "/wal/"});
    st_status s = ST_OK;
    for (int k = 200; k < 300 && s == ST_OK; k++)
        s = put_key(fx, k);
    assert_failed(fx, s, ST_IO_ERROR, "wal/");
    assert_int_equal(fx->acked, 203);
    /* No retry: refused writes sync nothing (assert_refuses counts), and neither does close. */
    assert_refuses(fx, ST_IO_ERROR, "wal/");
    st_fault_env_reset_stats(fx->fe, "/wal/");
    close_db(fx);
    assert_int_equal(st_fault_env_stats(fx->fe).syncs, 0);
    /* Without power loss the unsynced record is still in the file (the kernel has it): it may
       come back. */
    recover(fx, false);
}

/* The same, and then the power goes: the write whose sync failed must be gone. */
static void test_wal_sync_fails_then_power_loss(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 200);
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = "/wal/"});
    assert_failed(fx, put_key(fx, 200), ST_IO_ERROR, "wal/");
    assert_refuses(fx, ST_IO_ERROR, "wal/");
    recover(fx, true);
}

/* The interval syncer's fdatasync fails in the background: the next write is refused. */
static void test_interval_sync_fails(void **state)
{
    fixture *fx = *state;
    fx->opts.sync = ST_SYNC_INTERVAL;
    fx->opts.sync_interval_ms = 5;
    open_db(fx);
    put_range(fx, 0, 100);
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = "/wal/"});
    /* Keep writing until the failure surfaces: from the syncer or from a writer's own sync. */
    st_status s = ST_OK;
    struct timespec pause = {0, 2000000};
    for (int i = 0; i < 2000 && s == ST_OK; i++) {
        s = put_key(fx, 100 + i % 500);
        nanosleep(&pause, NULL);
    }
    assert_failed(fx, s, ST_IO_ERROR, "wal/");
    st_stats st;
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.bg_status, ST_IO_ERROR);
    /* The syncer does not try again either: no WAL sync for a while. */
    st_fault_env_reset_stats(fx->fe, "/wal/");
    struct timespec wait = {0, 60000000};
    nanosleep(&wait, NULL);
    assert_int_equal(st_fault_env_stats(fx->fe).syncs, 0);
    assert_refuses(fx, ST_IO_ERROR, "wal/");
    recover(fx, false);
}

/* ---- flushes: table files ----------------------------------------------------------------- */

/* The nth append to a table file of a flush fails. */
static void flush_table_write_fails(fixture *fx, uint64_t nth, st_status code)
{
    open_db(fx);
    put_range(fx, 0, 300);
    st_fault_env_fail_append(fx->fe,
                             &(st_fault_spec){.nth = nth, .path_substr = "/sst/", .code = code});
    st_status s = st_db_flush(fx->db);
    assert_failed(fx, s, code, "sst/");
    assert_refuses(fx, code, "sst/");
    recover(fx, false);
}

static void test_flush_first_table_write_fails(void **state)
{
    flush_table_write_fails(*state, 1, ST_IO_ERROR);
}

static void test_flush_later_table_write_fails(void **state)
{
    /* A small table is three appends: .dat, .idx, .meta. The second is the index. */
    flush_table_write_fails(*state, 2, ST_IO_ERROR);
}

static void test_flush_table_no_space(void **state)
{
    flush_table_write_fails(*state, 3, ST_NO_SPACE);
}

/* The flush's table files are written; the sync of the sst directory fails. */
static void test_flush_dir_sync_fails(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 300);
    st_fault_env_fail_sync_dir(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = "/sst"});
    assert_failed(fx, st_db_flush(fx->db), ST_IO_ERROR, "sst");
    assert_refuses(fx, ST_IO_ERROR, "sst");
    recover(fx, true);
}

/* A flush that fails in the background (memtable full) stops the writers that come after. */
static void test_background_flush_fails(void **state)
{
    fixture *fx = *state;
    fx->opts.memtable_bytes = 64 * 1024;
    open_db(fx);
    put_range(fx, 0, 50);
    st_fault_env_fail_append(fx->fe, &(st_fault_spec){.nth = 2, .path_substr = "/sst/"});
    st_status s = ST_OK;
    for (int i = 0; i < 20000 && s == ST_OK; i++)
        s = put_key(fx, 50 + i % 1500);
    assert_failed(fx, s, ST_IO_ERROR, "sst/");
    assert_refuses(fx, ST_IO_ERROR, "sst/");
    recover(fx, false);
}

/* ---- the MANIFEST and CURRENT ------------------------------------------------------------- */

/* The flush's MANIFEST edit: its append (torn after `prefix` bytes) or its sync fails. */
static void manifest_fails(fixture *fx, bool on_sync, size_t prefix, bool power_loss)
{
    open_db(fx);
    put_range(fx, 0, 300);
    assert_int_equal(st_db_flush(fx->db), ST_OK); /* one edit that works */
    put_range(fx, 300, 600);
    st_fault_spec spec = {.nth = 1, .path_substr = "MANIFEST", .prefix = prefix};
    if (on_sync)
        st_fault_env_fail_sync(fx->fe, &spec);
    else
        st_fault_env_fail_append(fx->fe, &spec);
    assert_failed(fx, st_db_flush(fx->db), ST_IO_ERROR, "MANIFEST");
    assert_refuses(fx, ST_IO_ERROR, "MANIFEST");
    /* Without power loss the edit may be in the file (the kernel has it) and the table it names
       must then still exist; with power loss the edit is gone and the WAL has the data. */
    recover(fx, power_loss);
}

static void test_manifest_sync_fails(void **state)
{
    manifest_fails(*state, true, 0, false);
}

static void test_manifest_sync_fails_then_power_loss(void **state)
{
    manifest_fails(*state, true, 0, true);
}

static void test_manifest_append_torn(void **state)
{
    manifest_fails(*state, false, 11, false);
}

static void test_manifest_append_all_written(void **state)
{
    manifest_fails(*state, false, SIZE_MAX, false);
}

/* A compaction's MANIFEST edit (outputs added, inputs removed) fails to sync. */
static void test_manifest_sync_fails_in_compaction(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    for (int i = 0; i < 4; i++) {
        put_range(fx, i * 300, i * 300 + 400);
        assert_int_equal(st_db_flush(fx->db), ST_OK);
    }
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = "MANIFEST"});
    st_status s = st_db_compact_range(fx->db, st_slice_make(NULL, 0), st_slice_make(NULL, 0));
    assert_failed(fx, s, ST_IO_ERROR, "MANIFEST");
    assert_refuses(fx, ST_IO_ERROR, "MANIFEST");
    recover(fx, false);
}

/*
 * Every open writes a new MANIFEST and switches CURRENT to it. Fail the directory sync that
 * makes the switch durable: the open fails; with the fault gone the next open must work.
 */
static void test_current_dir_sync_fails_on_open(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 300);
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    put_range(fx, 300, 400);
    close_db(fx);

    char *dir = strdup(fx->dir);
    /* The first directory sync of an open is the one for CURRENT (nothing else is synced
       before it); match the database directory only, not sst/ or wal/. */
    st_fault_env_fail_sync_dir(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = dir});
    st_status s = st_db_open(fx->dir, &fx->opts, &fx->db);
    fx->db = s == ST_OK ? fx->db : NULL;
    free(dir);
    if (s == ST_OK)
        fail_msg("open succeeded although the sync of CURRENT's directory failed");
    assert_int_equal(s, ST_IO_ERROR);
    st_fault_env_fail_sync_dir(fx->fe, NULL);
    s = st_db_open(fx->dir, &fx->opts, &fx->db);
    if (s) {
        fx->db = NULL;
        fail_msg("reopen after a failed directory sync in the previous open: %s: %s",
                 st_status_name(s), st_errmsg());
    }
    check_model(fx, false);
    recover(fx, false);
}

/* The same failed open, then a power cut before the next one. */
static void test_current_dir_sync_fails_then_power_loss(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 300);
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    put_range(fx, 300, 400);
    close_db(fx);
    st_fault_env_fail_sync_dir(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = fx->dir});
    st_status s = st_db_open(fx->dir, &fx->opts, &fx->db);
    if (s == ST_OK)
        fail_msg("open succeeded although the sync of CURRENT's directory failed");
    fx->db = NULL;
    recover(fx, true);
}

/* ---- a full disk -------------------------------------------------------------------------- */

/*
 * The byte budget runs out in the WAL. The memtable (256 KiB) outlasts the budget, so no flush
 * appends beside the writer. (The fault env's budget check and its deduction are not one atomic
 * step: two appends running at once near the limit can both pass and wrap the budget around, so
 * these scenarios keep to one appending thread.)
 */
static void no_space_during_writes(fixture *fx, bool power_loss)
{
    open_db(fx);
    put_range(fx, 0, 100);
    st_fault_env_set_budget(fx->fe, 150 * 1024);
    st_status s = ST_OK;
    for (int i = 0; i < 5000 && s == ST_OK; i++)
        s = put_key(fx, 100 + i % 1800);
    assert_failed(fx, s, ST_NO_SPACE, "wal/");
    assert_true(fx->acked > 300);
    assert_refuses(fx, ST_NO_SPACE, "wal/");
    recover(fx, power_loss);
}

static void test_no_space_during_writes(void **state)
{
    no_space_during_writes(*state, false);
}

static void test_no_space_then_power_loss(void **state)
{
    no_space_during_writes(*state, true);
}

/* The budget runs out while a flush writes its table. */
static void test_no_space_during_flush(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    put_range(fx, 0, 300);
    st_fault_env_set_budget(fx->fe, 30 * 1024);
    assert_failed(fx, st_db_flush(fx->db), ST_NO_SPACE, "sst/");
    assert_refuses(fx, ST_NO_SPACE, "sst/");
    recover(fx, false);
}

/* A manual range compaction runs out of space while writing its output. */
static void test_no_space_during_compaction(void **state)
{
    fixture *fx = *state;
    open_db(fx);
    for (int i = 0; i < 5; i++) {
        put_range(fx, i * 300, i * 300 + 400);
        assert_int_equal(st_db_flush(fx->db), ST_OK);
    }
    st_stats st;
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.levels[0].files, 5);
    st_fault_env_set_budget(fx->fe, 40 * 1024);
    st_status s = st_db_compact_range(fx->db, st_slice_make(NULL, 0), st_slice_make(NULL, 0));
    assert_failed(fx, s, ST_NO_SPACE, "sst/");
    /* Nothing of the failed compaction was installed. */
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    assert_int_equal(st.levels[0].files, 5);
    assert_refuses(fx, ST_NO_SPACE, "sst/");
    recover(fx, false);
}

/* An automatic compaction (L0 reaches its trigger) runs out of space in the background. */
static void test_no_space_during_background_compaction(void **state)
{
    fixture *fx = *state;
    fx->opts.l0_compaction_trigger = 3;
    open_db(fx);
    st_stats st;
    put_range(fx, 0, 400);
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
    uint64_t one_flush = st.flush_bytes;
    put_range(fx, 200, 600);
    assert_int_equal(st_db_flush(fx->db), ST_OK);
    /* Room for the third flush (about the size of the first: 400 keys) and its MANIFEST edit,
       not for the merge of all three that it sets off (800 keys). */
    put_range(fx, 400, 800);
    st_fault_env_set_budget(fx->fe, one_flush * 13 / 10 + 16 * 1024);
    /* The flush itself fits; its waiter may still see the compaction's failure if that comes
       first, which is the same sticky error. */
    st_status s = st_db_flush(fx->db);
    if (s != ST_OK)
        assert_failed(fx, s, ST_NO_SPACE, "sst/");
    /* No more writes: wait for the compaction to fail on its own. */
    struct timespec pause = {0, 5000000};
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(st_db_stats(fx->db, &st), ST_OK);
        if (st.bg_status)
            break;
        nanosleep(&pause, NULL);
    }
    assert_int_equal(st.bg_status, ST_NO_SPACE);
    assert_int_equal(st.flushes, 3);
    assert_int_equal(st.levels[0].files, 3); /* nothing of the compaction was installed */
    if (!has(st.bg_message, "compaction"))
        fail_msg("bg_message \"%s\" should say a compaction failed", st.bg_message);
    assert_failed(fx, put_key(fx, 5), ST_NO_SPACE, "sst/");
    assert_refuses(fx, ST_NO_SPACE, "sst/");
    recover(fx, false);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_wal_append_fails_nothing_written),
        T(test_wal_append_fails_torn),
        T(test_wal_append_fails_all_written),
        T(test_wal_append_no_space),
        T(test_wal_sync_fails),
        T(test_wal_sync_fails_then_power_loss),
        T(test_interval_sync_fails),
        T(test_flush_first_table_write_fails),
        T(test_flush_later_table_write_fails),
        T(test_flush_table_no_space),
        T(test_flush_dir_sync_fails),
        T(test_background_flush_fails),
        T(test_manifest_sync_fails),
        T(test_manifest_sync_fails_then_power_loss),
        T(test_manifest_append_torn),
        T(test_manifest_append_all_written),
        T(test_manifest_sync_fails_in_compaction),
        T(test_current_dir_sync_fails_on_open),
        T(test_current_dir_sync_fails_then_power_loss),
        T(test_no_space_during_writes),
        T(test_no_space_then_power_loss),
        T(test_no_space_during_flush),
        T(test_no_space_during_compaction),
        T(test_no_space_during_background_compaction),
    };
#undef T
    /* ST_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("ST_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ST_TEST_FILTER"));
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
