/* test_db.c - the engine through its public header: reads, writes, iterators, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/db.h"
#include "engine/env.h"
#include "engine/log_writer.h"
#include "engine/version.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"

typedef struct fixture {
    char *dir;
    st_db *db;
    st_options opts;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = st_test_mkdtemp("test_db");
    st_options_init(&f->opts);
    f->opts.sync = ST_SYNC_NONE;
    f->opts.env = st_env_nosync();
    f->opts.paranoid_checks = true;
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    st_db_close(f->db);
    st_test_rmdir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void reopen(fixture *f)
{
    st_db_close(f->db);
    f->db = NULL;
    st_status s = st_db_open(f->dir, &f->opts, &f->db);
    if (s)
        fprintf(stderr, "reopen: %s\n", st_errmsg());
    assert_int_equal(s, ST_OK);
}

static st_slice S(const char *s)
{
    return st_slice_str(s);
}

/* Assert key has value want (NULL: absent). */
static void expect(st_db *db, const st_snapshot *snap, st_slice key, const char *want)
{
    uint8_t *v = NULL;
    size_t n = 0;
    st_status s = st_db_get(db, snap, key, &v, &n, NULL);
    if (!want) {
        assert_int_equal(s, ST_NOT_FOUND);
        return;
    }
    if (s)
        fprintf(stderr, "get: %s\n", st_errmsg());
    assert_int_equal(s, ST_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    st_free(v);
}

static void test_put_get_delete(void **state)
{
    fixture *f = *state;
    uint64_t s1, s2, s3;
    assert_int_equal(st_db_put(f->db, S("a"), S("1"), &s1), ST_OK);
    assert_int_equal(st_db_put(f->db, S("b"), S("2"), &s2), ST_OK);
    assert_true(s2 == s1 + 1);
    expect(f->db, NULL, S("a"), "1");
    expect(f->db, NULL, S("b"), "2");
    expect(f->db, NULL, S("c"), NULL);
    assert_int_equal(st_db_put(f->db, S("a"), S("one"), NULL), ST_OK);
    expect(f->db, NULL, S("a"), "one");
    assert_int_equal(st_db_delete(f->db, S("a"), &s3), ST_OK);
    assert_true(s3 > s2);
    expect(f->db, NULL, S("a"), NULL);
    /* An empty value is a value, not an absence. */
    assert_int_equal(st_db_put(f->db, S("e"), st_slice_make(NULL, 0), NULL), ST_OK);
    expect(f->db, NULL, S("e"), "");
    reopen(f);
    expect(f->db, NULL, S("a"), NULL);
    expect(f->db, NULL, S("b"), "2");
    expect(f->db, NULL, S("e"), "");
    uint64_t s4;
    assert_int_equal(st_db_put(f->db, S("z"), S("26"), &s4), ST_OK);
    assert_true(s4 > s3);
}

static void test_binary_keys(void **state)
{
    fixture *f = *state;
    const uint8_t k1[] = {0, 0, 0}, k2[] = {0xff, 0, 0xff}, k3[] = {0};
    const uint8_t v1[] = {0, 1, 2, 0}, v2[] = {0xff, 0xff};
    assert_int_equal(st_db_put(f->db, st_slice_make(k1, 3), st_slice_make(v1, 4), NULL), ST_OK);
    assert_int_equal(st_db_put(f->db, st_slice_make(k2, 3), st_slice_make(v2, 2), NULL), ST_OK);
    assert_int_equal(st_db_put(f->db, st_slice_make(k3, 1), st_slice_make(v2, 1), NULL), ST_OK);
    for (int round = 0; round < 2; round++) {
        uint8_t *v;
        size_t n;
        assert_int_equal(st_db_get(f->db, NULL, st_slice_make(k1, 3), &v, &n, NULL), ST_OK);
        assert_int_equal(n, 4);
        assert_memory_equal(v, v1, 4);
        st_free(v);
        assert_int_equal(st_db_get(f->db, NULL, st_slice_make(k2, 3), &v, &n, NULL), ST_OK);
        assert_int_equal(n, 2);
        assert_memory_equal(v, v2, 2);
        st_free(v);
        /* k3 = "\0" is a prefix of k1 and a different key. */
        assert_int_equal(st_db_get(f->db, NULL, st_slice_make(k3, 1), &v, &n, NULL), ST_OK);
        assert_int_equal(n, 1);
        st_free(v);
        st_iter *it;
        assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &it), ST_OK);
        st_iter_first(it);
        assert_true(st_iter_valid(it));
        assert_int_equal(st_iter_key(it).len, 1); /* "\0" < "\0\0\0" < "\xff..." */
        st_iter_next(it);
        assert_int_equal(st_iter_key(it).len, 3);
        assert_memory_equal(st_iter_key(it).data, k1, 3);
        st_iter_next(it);
        assert_memory_equal(st_iter_key(it).data, k2, 3);
        st_iter_next(it);
        assert_false(st_iter_valid(it));
        st_iter_destroy(it);
        assert_int_equal(st_db_flush(f->db), ST_OK);
    }
}

static void test_batch(void **state)
{
    fixture *f = *state;
    st_batch *b;
    assert_int_equal(st_batch_create(&b), ST_OK);
    assert_int_equal(st_batch_put(b, S("x"), S("1")), ST_OK);
    assert_int_equal(st_batch_put(b, S("y"), S("2")), ST_OK);
    assert_int_equal(st_batch_delete(b, S("x")), ST_OK);
    assert_int_equal(st_batch_put(b, S("z"), S("3")), ST_OK);
    assert_int_equal(st_batch_count(b), 4);
    assert_int_equal(st_batch_put(b, S(""), S("bad")), ST_INVALID_ARGUMENT);
    assert_int_equal(st_batch_count(b), 4);
    uint64_t before, seq;
    st_db_log_state(f->db, &before, NULL, NULL);
    assert_int_equal(st_db_write(f->db, b, &seq), ST_OK);
    assert_true(seq == before + 4);
    expect(f->db, NULL, S("x"), NULL); /* the later delete in the batch wins */
    expect(f->db, NULL, S("y"), "2");
    expect(f->db, NULL, S("z"), "3");
    st_batch_clear(b);
    assert_int_equal(st_batch_count(b), 0);
    uint64_t seq2;
    assert_int_equal(st_db_write(f->db, b, &seq2), ST_OK);
    assert_true(seq2 == seq);
    /* A no-op takes a sequence and changes nothing, through the WAL and a reopen. */
    assert_int_equal(st_batch_noop(b), ST_OK);
    assert_int_equal(st_batch_put(b, S("after-noop"), S("4")), ST_OK);
    uint64_t seq3;
    assert_int_equal(st_db_write(f->db, b, &seq3), ST_OK);
    assert_true(seq3 == seq2 + 2);
    expect(f->db, NULL, S("after-noop"), "4");
    st_batch_destroy(b);
    reopen(f);
    expect(f->db, NULL, S("x"), NULL);
    expect(f->db, NULL, S("z"), "3");
    expect(f->db, NULL, S("after-noop"), "4");
    uint64_t last;
    st_db_log_state(f->db, &last, NULL, NULL);
    assert_true(last == seq3);
}

static void test_bad_input(void **state)
{
    fixture *f = *state;
    assert_int_equal(st_db_put(f->db, S(""), S("v"), NULL), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "empty key"));
    size_t big = f->opts.max_key_bytes + 1;
    char *k = malloc(big);
    memset(k, 'k', big);
    assert_int_equal(st_db_put(f->db, st_slice_make(k, big), S("v"), NULL), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "max_key_bytes"));
    assert_int_equal(st_db_put(f->db, st_slice_make(k, big - 1), S("v"), NULL), ST_OK);
    free(k);
    size_t vbig = f->opts.max_value_bytes + 1;
    char *v = calloc(1, vbig);
    assert_int_equal(st_db_put(f->db, S("k"), st_slice_make(v, vbig), NULL), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "max_value_bytes"));
    st_batch *b;
    st_batch_create(&b);
    st_batch_put(b, S("ok"), S("1"));
    st_batch_put(b, S("k"), st_slice_make(v, vbig));
    assert_int_equal(st_db_write(f->db, b, NULL), ST_INVALID_ARGUMENT);
    expect(f->db, NULL, S("ok"), NULL); /* nothing of a refused batch is applied */
    st_batch_destroy(b);
    free(v);

    /* A second open of the same directory is refused while the first holds it. */
    st_db *other = NULL;
    assert_int_equal(st_db_open(f->dir, &f->opts, &other), ST_BUSY);
    assert_non_null(strstr(st_errmsg(), "LOCK"));
    assert_null(other);
}

static void test_not_a_database(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("notdb");
    char *p = st_test_path(dir, "photo.jpg");
    FILE *fp = fopen(p, "w");
    fputs("not a database", fp);
    fclose(fp);
    st_options o;
    st_options_init(&o);
    st_db *db = NULL;
    assert_int_equal(st_db_open(dir, &o, &db), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "not a strata database"));
    assert_null(db);
    free(p);
    st_test_rmdir(dir);
    free(dir);

    /* create_if_missing off on an empty directory. */
    dir = st_test_mkdtemp("nodb");
    o.create_if_missing = false;
    assert_int_not_equal(st_db_open(dir, &o, &db), ST_OK);
    st_test_rmdir(dir);
    free(dir);
}

static void test_unknown_format_version(void **state)
{
    fixture *f = *state;
    st_db_close(f->db);
    f->db = NULL;
    /* Write a MANIFEST claiming format version 99 and point CURRENT at it. */
    st_env *env = st_env_posix();
    char *mpath = st_test_path(f->dir, "MANIFEST-999999");
    char *cpath = st_test_path(f->dir, "CURRENT");
    st_version_edit e;
    st_edit_init(&e);
    e.has_format = true;
    e.format = 99;
    st_buf rec;
    st_buf_init(&rec);
    assert_int_equal(st_edit_encode(&e, &rec), ST_OK);
    st_file *file;
    assert_int_equal(env->open_writable(env, mpath, false, &file), ST_OK);
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(env, file, 0, &w), ST_OK);
    assert_int_equal(st_log_writer_add(w, rec.data, rec.len), ST_OK);
    st_log_writer_destroy(w);
    const char cur[] = "MANIFEST-999999\n";
    assert_int_equal(st_env_write_file_atomic(env, f->dir, cpath, cur, strlen(cur)), ST_OK);
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_NOT_SUPPORTED);
    assert_non_null(strstr(st_errmsg(), "format version 99"));
    /* A CURRENT that names garbage is corruption, not a crash. */
    const char junk[] = "\xff\x00junk\n";
    assert_int_equal(st_env_write_file_atomic(env, f->dir, cpath, junk, sizeof(junk) - 1), ST_OK);
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "CURRENT"));
    assert_null(f->db);
    st_buf_free(&rec);
    st_edit_free(&e);
    free(mpath);
    free(cpath);
}

/* Collect the iterator's keys, forward or backward, into a string "a,b,c". */
static void keys_of(st_iter *it, bool reverse, char *out, size_t cap)
{
    out[0] = '\0';
    for (reverse ? st_iter_last(it) : st_iter_first(it); st_iter_valid(it);
         reverse ? st_iter_prev(it) : st_iter_next(it)) {
        st_slice k = st_iter_key(it);
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)k.len, (const char *)k.data);
    }
    assert_int_equal(st_iter_status(it), ST_OK);
}

static void test_iterators(void **state)
{
    fixture *f = *state;
    const char *keys[] = {"a", "b", "c", "d", "e", "f"};
    for (int i = 0; i < 6; i++)
        assert_int_equal(st_db_put(f->db, S(keys[i]), S(keys[i]), NULL), ST_OK);
    st_db_delete(f->db, S("c"), NULL);
    st_snapshot *snap;
    assert_int_equal(st_db_snapshot(f->db, &snap), ST_OK);
    /* Changes after the snapshot must not show through it. */
    st_db_put(f->db, S("c"), S("C"), NULL);
    st_db_delete(f->db, S("e"), NULL);
    st_db_put(f->db, S("g"), S("g"), NULL);

    for (int round = 0; round < 3; round++) {
        char got[128];
        st_iter *it;
        assert_int_equal(st_db_iter(f->db, snap, S(""), S(""), &it), ST_OK);
        keys_of(it, false, got, sizeof(got));
        assert_string_equal(got, "a,b,d,e,f");
        keys_of(it, true, got, sizeof(got));
        assert_string_equal(got, "f,e,d,b,a");
        st_iter_destroy(it);

        assert_int_equal(st_db_iter(f->db, NULL, S("b"), S("f"), &it), ST_OK);
        keys_of(it, false, got, sizeof(got));
        assert_string_equal(got, "b,c,d");
        keys_of(it, true, got, sizeof(got));
        assert_string_equal(got, "d,c,b");
        /* Seeks respect the bounds. */
        st_iter_seek(it, S("a"));
        assert_true(st_iter_valid(it));
        assert_true(st_slice_eq(st_iter_key(it), S("b")));
        st_iter_seek(it, S("cc"));
        assert_true(st_slice_eq(st_iter_key(it), S("d")));
        st_iter_seek_prev(it, S("cc"));
        assert_true(st_slice_eq(st_iter_key(it), S("c")));
        assert_true(st_slice_eq(st_iter_value(it), S("C")));
        st_iter_seek_prev(it, S("zz"));
        assert_true(st_slice_eq(st_iter_key(it), S("d")));
        /* Direction changes in the middle. */
        st_iter_seek(it, S("c"));
        st_iter_next(it);
        assert_true(st_slice_eq(st_iter_key(it), S("d")));
        st_iter_prev(it);
        assert_true(st_slice_eq(st_iter_key(it), S("c")));
        st_iter_prev(it);
        assert_true(st_slice_eq(st_iter_key(it), S("b")));
        st_iter_next(it);
        assert_true(st_slice_eq(st_iter_key(it), S("c")));
        st_iter_prev(it);
        st_iter_prev(it);
        assert_false(st_iter_valid(it));
        st_iter_destroy(it);

        /* Empty ranges. */
        assert_int_equal(st_db_iter(f->db, NULL, S("x"), S("y"), &it), ST_OK);
        keys_of(it, false, got, sizeof(got));
        assert_string_equal(got, "");
        keys_of(it, true, got, sizeof(got));
        assert_string_equal(got, "");
        st_iter_destroy(it);

        if (round == 0)
            assert_int_equal(st_db_flush(f->db), ST_OK);
        else
            assert_int_equal(st_db_compact_range(f->db, S(""), S("")), ST_OK);
    }
    st_db_release_snapshot(f->db, snap);
}

static void test_flush_compact_levels(void **state)
{
    fixture *f = *state;
    st_db_close(f->db);
    f->opts.memtable_bytes = 64 * 1024;
    f->opts.table_bytes = 32 * 1024;
    f->opts.level1_bytes = 128 * 1024;
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_OK);
    char key[32], val[128];
    const int n = 20000;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++) {
            int k = (i * 7919) % n;
            snprintf(key, sizeof(key), "key%08d", k);
            snprintf(val, sizeof(val), "value-%d-%d-%0100d", k, round, 0);
            assert_int_equal(st_db_put(f->db, S(key), S(val), NULL), ST_OK);
        }
        for (int i = 0; i < n; i += 3) {
            snprintf(key, sizeof(key), "key%08d", i);
            assert_int_equal(st_db_delete(f->db, S(key), NULL), ST_OK);
        }
    }
    st_stats st;
    assert_int_equal(st_db_stats(f->db, &st), ST_OK);
    assert_true(st.flushes > 0);
    assert_true(st.compactions > 0);
    assert_int_equal(st.bg_status, ST_OK);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "key%08d", i);
            snprintf(val, sizeof(val), "value-%d-%d-%0100d", i, 2, 0);
            expect(f->db, NULL, S(key), i % 3 == 0 ? NULL : val);
        }
        st_iter *it;
        assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &it), ST_OK);
        int count = 0;
        for (st_iter_first(it); st_iter_valid(it); st_iter_next(it))
            count++;
        assert_int_equal(st_iter_status(it), ST_OK);
        assert_int_equal(count, n - (n + 2) / 3);
        st_iter_destroy(it);
        assert_int_equal(st_db_compact_range(f->db, S(""), S("")), ST_OK);
        reopen(f);
    }
    /* After a full compaction everything lives in one level and the tombstones are gone. */
    assert_int_equal(st_db_stats(f->db, &st), ST_OK);
    assert_int_equal(st.levels[0].files, 0);
}

/*
 * Two overlapping L0 tables, below the L0 trigger: even keys in the older, odd keys in the newer.
 * A read of an even key passes through the newer table before it finds its key.
 */
static void two_l0_tables(fixture *f, int n)
{
    st_db_close(f->db);
    f->opts.memtable_bytes = 4 << 20; /* only the explicit flushes below */
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_OK);
    char key[32], val[256];
    for (int odd = 0; odd < 2; odd++) {
        for (int i = odd; i < n; i += 2) {
            snprintf(key, sizeof(key), "key%08d", i);
            snprintf(val, sizeof(val), "value-%d-%0200d", i, 0);
            assert_int_equal(st_db_put(f->db, S(key), S(val), NULL), ST_OK);
        }
        assert_int_equal(st_db_flush(f->db), ST_OK);
    }
    st_stats st;
    assert_int_equal(st_db_stats(f->db, &st), ST_OK);
    assert_int_equal(st.levels[0].files, 2);
    assert_int_equal(st.seek_compactions, 0);
}

/* Wait (bounded, 10 s) until L0 is empty and `seeks` seek compactions have run; the stats. */
static st_stats wait_l0_empty(fixture *f, uint64_t seeks)
{
    st_stats st;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(st_db_stats(f->db, &st), ST_OK);
        if (st.seek_compactions >= seeks && st.levels[0].files == 0 && st.compactions > 0)
            break;
        usleep(10000);
    }
    assert_true(st.seek_compactions >= seeks);
    assert_int_equal(st.levels[0].files, 0);
    assert_int_equal(st.bg_status, ST_OK);
    return st;
}

/* Keys 0..n-1 read back with the values `fmt` (a "%d" for the key, then "%0Nd" of `gen`). */
static void expect_values(fixture *f, int n, const char *fmt, int gen)
{
    char key[32], val[256];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key%08d", i);
        snprintf(val, sizeof(val), fmt, i, gen);
        expect(f->db, NULL, S(key), val);
    }
}

/* Wait (bounded) until a seek compaction has taken L0 down; then every key reads back. */
static void expect_seek_compaction(fixture *f, int n)
{
    wait_l0_empty(f, 1);
    expect_values(f, n, "value-%d-%0200d", 0);
}

/* Gets that keep passing through a table use up its seek budget (LevelDB's seek compaction). */
static void test_seek_compaction_get(void **state)
{
    fixture *f = *state;
    const int n = 2000;
    two_l0_tables(f, n);
    char key[32];
    uint8_t *v;
    size_t vlen;
    /* Odd keys are found in the first table consulted: nothing is charged. */
    for (int i = 1; i < 400; i += 2) {
        snprintf(key, sizeof(key), "key%08d", i % n);
        assert_int_equal(st_db_get(f->db, NULL, S(key), &v, &vlen, NULL), ST_OK);
        free(v);
    }
    st_stats st;
    assert_int_equal(st_db_stats(f->db, &st), ST_OK);
    assert_int_equal(st.seek_compactions, 0);
    assert_int_equal(st.levels[0].files, 2);
    /* Even keys pass through the newer table: its budget (100 for a small table) runs out. */
    for (int i = 0; i < 600; i += 2) {
        snprintf(key, sizeof(key), "key%08d", i % n);
        assert_int_equal(st_db_get(f->db, NULL, S(key), &v, &vlen, NULL), ST_OK);
        free(v);
    }
    expect_seek_compaction(f, n);
}

/* Iterators sample what they read: overlapping tables under the samples get compacted too. */
static void test_seek_compaction_scan(void **state)
{
    fixture *f = *state;
    const int n = 2000;
    two_l0_tables(f, n);
    /* About 450 KB per pass and a sample per MiB read on average (a new iterator starts a new
       random gap, so fewer in short passes), 100 charges needed: a few hundred passes. Stop
       once the compaction has been chosen; give up after 4,000 (about 2 GB read). */
    st_stats st = {0};
    for (int pass = 0; pass < 4000 && st.seek_compactions == 0; pass++) {
        if (pass % 50 == 0)
            assert_int_equal(st_db_stats(f->db, &st), ST_OK);
        st_iter *it;
        assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &it), ST_OK);
        int count = 0;
        for (st_iter_first(it); st_iter_valid(it); st_iter_next(it))
            count++;
        assert_int_equal(st_iter_status(it), ST_OK);
        assert_int_equal(count, n);
        st_iter_destroy(it);
    }
    expect_seek_compaction(f, n);
}

/*
 * Sequential writes make L0 tables that overlap neither each other nor L1: the L0 compaction
 * moves them down whole instead of rewriting them. Overlapping ones are merged as before.
 */
static void test_l0_move(void **state)
{
    fixture *f = *state;
    st_db_close(f->db);
    f->opts.memtable_bytes = 4 << 20; /* only the explicit flushes below */
    f->opts.l0_compaction_trigger = 4;
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_OK);
    char key[32], val[128];
    int k = 0;
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 500; i++, k++) {
            snprintf(key, sizeof(key), "key%08d", k);
            snprintf(val, sizeof(val), "value-%d-%060d", k, 0);
            assert_int_equal(st_db_put(f->db, S(key), S(val), NULL), ST_OK);
        }
        assert_int_equal(st_db_flush(f->db), ST_OK);
    }
    st_stats st = wait_l0_empty(f, 0);
    assert_int_equal(st.levels[1].files, 4); /* the same four tables */
    assert_int_equal(st.compaction_bytes_written, 0);

    /* Four more tables, each over the whole range: these are merged. */
    for (int t = 0; t < 4; t++) {
        for (int i = t; i < k; i += 4) {
            snprintf(key, sizeof(key), "key%08d", i);
            snprintf(val, sizeof(val), "value-%d-%060d", i, 1);
            assert_int_equal(st_db_put(f->db, S(key), S(val), NULL), ST_OK);
        }
        assert_int_equal(st_db_flush(f->db), ST_OK);
    }
    st = wait_l0_empty(f, 0);
    assert_true(st.compaction_bytes_written > 0);
    expect_values(f, k, "value-%d-%060d", 1);
}

static void test_log_api(void **state)
{
    fixture *f = *state;
    assert_int_equal(st_db_put(f->db, S("before"), S("1"), NULL), ST_OK);
    st_batch *b;
    st_batch_create(&b);
    st_batch_put(b, S("k1"), S("v1"));
    st_batch_put(b, S("k2"), S("v2"));
    uint64_t base, last;
    st_db_log_state(f->db, &base, NULL, NULL);
    assert_int_equal(st_db_log_append(f->db, 7, b, &last), ST_OK);
    assert_true(last == base + 2);
    /* Appended, not applied: invisible, and direct writes are refused meanwhile. */
    expect(f->db, NULL, S("k1"), NULL);
    assert_int_equal(st_db_put(f->db, S("x"), S("y"), NULL), ST_INVALID_ARGUMENT);
    uint64_t term;
    assert_int_equal(st_db_log_term_at(f->db, last, &term), ST_OK);
    assert_true(term == 7);
    st_batch_clear(b);
    st_batch_put(b, S("k3"), S("v3"));
    uint64_t last2;
    assert_int_equal(st_db_log_append(f->db, 8, b, &last2), ST_OK);
    assert_true(last2 == last + 1);
    /* Only an unapplied suffix can be dropped, and only at a record boundary. */
    assert_int_equal(st_db_log_truncate(f->db, last - 1), ST_INVALID_ARGUMENT);
    assert_int_equal(st_db_log_apply(f->db, last), ST_OK);
    expect(f->db, NULL, S("k1"), "v1");
    expect(f->db, NULL, S("k3"), NULL);
    assert_int_equal(st_db_log_truncate(f->db, base), ST_INVALID_ARGUMENT);
    assert_int_equal(st_db_log_truncate(f->db, last), ST_OK);
    uint64_t ls, lt, ap;
    st_db_log_state(f->db, &ls, &lt, &ap);
    assert_true(ls == last && ap == last && lt == 7);
    assert_int_equal(st_db_log_term_at(f->db, last2, &term), ST_NOT_FOUND);

    /* Read the log back from the first appended record and ship it to a second database. */
    st_log_iter *li;
    assert_int_equal(st_log_iter_create(f->db, base + 1, &li), ST_OK);
    st_slice rec;
    assert_int_equal(st_log_iter_next(li, &rec), ST_OK);
    st_log_record_info info;
    assert_int_equal(st_log_record_parse(rec, &info), ST_OK);
    assert_true(info.seq == base + 1 && info.term == 7 && info.count == 2);
    char *dir2 = st_test_mkdtemp("test_db_follower");
    st_options o2 = f->opts;
    o2.replay = ST_REPLAY_PENDING;
    st_db *db2;
    assert_int_equal(st_db_open(dir2, &o2, &db2), ST_OK);
    /* The follower's log must continue at its own last sequence + 1. */
    assert_int_equal(st_db_log_append_records(db2, &rec, 1), ST_INVALID_ARGUMENT);
    assert_int_equal(st_log_iter_next(li, &rec), ST_NOT_FOUND);
    st_log_iter_destroy(li);

    /* Build a log on db2 starting at 1 from db's records from sequence 1 on. */
    assert_int_equal(st_log_iter_create(f->db, 1, &li), ST_OK);
    int shipped = 0;
    while (st_log_iter_next(li, &rec) == ST_OK) {
        assert_int_equal(st_db_log_append_records(db2, &rec, 1), ST_OK);
        shipped++;
    }
    st_log_iter_destroy(li);
    assert_true(shipped > 0);
    uint64_t l2;
    st_db_log_state(db2, &l2, NULL, NULL);
    assert_true(l2 == last);
    expect(db2, NULL, S("k1"), NULL);
    st_db_close(db2);
    /* Reopened in pending mode, the records stay pending until applied. */
    assert_int_equal(st_db_open(dir2, &o2, &db2), ST_OK);
    expect(db2, NULL, S("k1"), NULL);
    assert_int_equal(st_db_log_apply(db2, l2), ST_OK);
    expect(db2, NULL, S("k1"), "v1");
    expect(db2, NULL, S("k2"), "v2");
    st_db_close(db2);
    st_test_rmdir(dir2);
    free(dir2);

    st_batch_destroy(b);
}

static void test_checkpoint(void **state)
{
    fixture *f = *state;
    char key[32], val[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        snprintf(val, sizeof(val), "v%d", i);
        assert_int_equal(st_db_put(f->db, S(key), S(val), NULL), ST_OK);
        if (i == 1500)
            assert_int_equal(st_db_compact_range(f->db, S(""), S("")), ST_OK);
    }
    char *cp = st_test_path(f->dir, "../checkpoint-of-test-db");
    st_test_rmdir(cp);
    uint64_t seq, term;
    assert_int_equal(st_db_checkpoint(f->db, cp, &seq, &term), ST_OK);
    uint64_t last;
    st_db_log_state(f->db, &last, NULL, NULL);
    assert_true(seq == last);
    assert_int_equal(st_db_checkpoint(f->db, cp, NULL, NULL), ST_INVALID_ARGUMENT);
    /* Keep the source's log from the checkpoint on, as a leader does for a follower. */
    st_db_log_retain(f->db, seq + 1);
    /* The source moves on and compacts its tables away; the copy's links keep them. */
    for (int i = 0; i < 3000; i += 2) {
        snprintf(key, sizeof(key), "k%05d", i);
        assert_int_equal(st_db_delete(f->db, S(key), NULL), ST_OK);
    }
    assert_int_equal(st_db_compact_range(f->db, S(""), S("")), ST_OK);

    st_options o = f->opts;
    o.replay = ST_REPLAY_PENDING;
    st_db *copy;
    assert_int_equal(st_db_open(cp, &o, &copy), ST_OK);
    uint64_t cl, ca;
    st_db_log_state(copy, &cl, NULL, &ca);
    assert_true(cl == seq && ca == seq);
    for (int i = 0; i < 3000; i += 37) {
        snprintf(key, sizeof(key), "k%05d", i);
        snprintf(val, sizeof(val), "v%d", i);
        expect(copy, NULL, S(key), val);
    }
    /* Continue the copy's log from the source's: it converges to the source. */
    st_log_iter *li;
    assert_int_equal(st_log_iter_create(f->db, seq + 1, &li), ST_OK);
    st_slice rec;
    while (st_log_iter_next(li, &rec) == ST_OK)
        assert_int_equal(st_db_log_append_records(copy, &rec, 1), ST_OK);
    st_log_iter_destroy(li);
    st_db_log_retain(f->db, UINT64_MAX);
    uint64_t sl;
    st_db_log_state(f->db, &sl, NULL, NULL);
    assert_int_equal(st_db_log_apply(copy, sl), ST_OK);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        snprintf(val, sizeof(val), "v%d", i);
        expect(copy, NULL, S(key), i % 2 ? val : NULL);
    }
    st_db_close(copy);
    st_test_rmdir(cp);
    free(cp);
}

static void test_install_checkpoint(void **state)
{
    fixture *f = *state;
    char key[32], val[32];
    /* The source: 2000 keys in tables and memtable. */
    char *srcdir = st_test_mkdtemp("install_src");
    st_db *src;
    assert_int_equal(st_db_open(srcdir, &f->opts, &src), ST_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "s%05d", i);
        snprintf(val, sizeof(val), "src%d", i);
        assert_int_equal(st_db_put(src, S(key), S(val), NULL), ST_OK);
        if (i == 1000)
            assert_int_equal(st_db_compact_range(src, S(""), S("")), ST_OK);
    }
    char *cp = st_test_path(srcdir, "cp");
    uint64_t seq;
    assert_int_equal(st_db_checkpoint(src, cp, &seq, NULL), ST_OK);

    /* The target (pending mode, as a follower) has other data, and a reader open on it. */
    st_db_close(f->db);
    f->opts.replay = ST_REPLAY_PENDING;
    assert_int_equal(st_db_open(f->dir, &f->opts, &f->db), ST_OK);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "t%05d", i);
        assert_int_equal(st_db_put(f->db, S(key), S("old"), NULL), ST_OK);
    }
    assert_int_equal(st_db_flush(f->db), ST_OK);
    st_db_put(f->db, S("t-in-memtable"), S("old"), NULL);
    st_iter *old_reader;
    assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &old_reader), ST_OK);

    uint64_t got;
    assert_int_equal(st_db_install_checkpoint(f->db, cp, &got), ST_OK);
    assert_true(got == seq);
    uint64_t last, applied;
    st_db_log_state(f->db, &last, NULL, &applied);
    assert_true(last == seq && applied == seq);
    expect(f->db, NULL, S("t00001"), NULL);
    expect(f->db, NULL, S("t-in-memtable"), NULL);
    expect(f->db, NULL, S("s01999"), "src1999");
    /* A reader that begins now sees the new contents, all of them. */
    st_iter *fresh;
    assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &fresh), ST_OK);
    int nfresh = 0;
    for (st_iter_first(fresh); st_iter_valid(fresh); st_iter_next(fresh))
        nfresh++;
    assert_int_equal(st_iter_status(fresh), ST_OK);
    assert_int_equal(nfresh, 2000);
    st_iter_destroy(fresh);
    /* The reader that began before still sees the old contents, to the end. */
    int n = 0;
    for (st_iter_first(old_reader); st_iter_valid(old_reader); st_iter_next(old_reader)) {
        assert_int_equal(st_iter_key(old_reader).data[0], 't');
        n++;
    }
    assert_int_equal(st_iter_status(old_reader), ST_OK);
    assert_int_equal(n, 501);
    st_iter_destroy(old_reader);

    /* The log continues from the source's. */
    st_db_log_retain(src, seq + 1);
    st_db_put(src, S("after"), S("checkpoint"), NULL);
    st_log_iter *li;
    assert_int_equal(st_log_iter_create(src, seq + 1, &li), ST_OK);
    st_slice rec;
    while (st_log_iter_next(li, &rec) == ST_OK)
        assert_int_equal(st_db_log_append_records(f->db, &rec, 1), ST_OK);
    st_log_iter_destroy(li);
    st_db_log_state(src, &last, NULL, NULL);
    assert_int_equal(st_db_log_apply(f->db, last), ST_OK);
    expect(f->db, NULL, S("after"), "checkpoint");
    reopen(f);
    assert_int_equal(st_db_log_apply(f->db, last), ST_OK);
    expect(f->db, NULL, S("after"), "checkpoint");
    expect(f->db, NULL, S("s00000"), "src0");
    expect(f->db, NULL, S("t00001"), NULL);
    st_iter *it;
    assert_int_equal(st_db_iter(f->db, NULL, S(""), S(""), &it), ST_OK);
    n = 0;
    for (st_iter_first(it); st_iter_valid(it); st_iter_next(it))
        n++;
    assert_int_equal(n, 2001);
    st_iter_destroy(it);
    /* Nothing of the old contents is left on disk: only the new tables remain. */
    st_stats st;
    st_db_stats(f->db, &st);
    assert_int_equal(st.bg_status, ST_OK);
    st_db_close(src);
    st_test_rmdir(srcdir);
    free(srcdir);
    free(cp);
}

/* ---- appends and applies side by side ---------------------------------------------------- */

/* An env whose file syncs, once armed, wait until the test lets them go. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed, inside, open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false};
static st_env gated_env;

static st_file *gated_wals[256]; /* guarded by gate.mu: the WAL segments opened */
static size_t ngated_wals;

static st_status gated_open_writable(st_env *env, const char *path, bool append, st_file **out)
{
    st_status s = st_env_posix()->open_writable(env, path, append, out);
    pthread_mutex_lock(&gate.mu);
    if (s == ST_OK && strstr(path, "/wal/") && ngated_wals < 256)
        gated_wals[ngated_wals++] = *out;
    pthread_mutex_unlock(&gate.mu);
    return s;
}

static st_status gated_close(st_file *f)
{
    pthread_mutex_lock(&gate.mu);
    for (size_t i = 0; i < ngated_wals; i++)
        if (gated_wals[i] == f)
            gated_wals[i] = gated_wals[--ngated_wals];
    pthread_mutex_unlock(&gate.mu);
    return st_env_posix()->close(f);
}

/* Only WAL syncs are held: a flush or compaction may sync its tables meanwhile. */
static st_status gated_sync(st_file *f)
{
    pthread_mutex_lock(&gate.mu);
    bool wal = false;
    for (size_t i = 0; i < ngated_wals; i++)
        wal = wal || gated_wals[i] == f;
    if (gate.armed && wal) {
        gate.inside = true;
        pthread_cond_broadcast(&gate.cv);
        while (!gate.open)
            pthread_cond_wait(&gate.cv, &gate.mu);
        gate.inside = false;
    }
    pthread_mutex_unlock(&gate.mu);
    return st_env_posix()->sync(f);
}

/* Wait (up to 10 s) until *flag is true; false if it never was. */
static bool gate_wait(bool *flag)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&gate.mu);
    while (!*flag && pthread_cond_timedwait(&gate.cv, &gate.mu, &until) == 0)
        ;
    bool v = *flag;
    pthread_mutex_unlock(&gate.mu);
    return v;
}

/* One engine call on a thread of its own, so that the test can see whether it waits. */
typedef struct op {
    bool apply; /* st_db_log_apply up to `upto`; else st_db_log_append_early of `batch` */
    st_db *db;
    st_batch *batch;
    uint64_t upto;
    uint64_t last;    /* what the append returned */
    uint64_t written; /* what its callback was told */
    st_status status;
    bool done;
    pthread_t thread;
} op;

static void on_written(void *ctx, uint64_t last_seq)
{
    op *o = ctx;
    pthread_mutex_lock(&gate.mu);
    o->written = last_seq;
    pthread_mutex_unlock(&gate.mu);
}

static void *op_main(void *arg)
{
    op *o = arg;
    st_status s = o->apply ? st_db_log_apply(o->db, o->upto)
                           : st_db_log_append_early(o->db, 3, o->batch, on_written, o, &o->last);
    pthread_mutex_lock(&gate.mu);
    o->status = s;
    o->done = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return NULL;
}

static void op_start(op *o)
{
    assert_int_equal(pthread_create(&o->thread, NULL, op_main, o), 0);
}

/*
 * A leader's append tells its caller the record is readable before the sync, and committed
 * records reach the memtable while a later append waits for its sync: a leader's commit does not
 * wait for the sync of the records after it.
 */
static void test_log_apply_beside_sync(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("test_db_gate");
    gated_env = *st_env_posix();
    gated_env.sync = gated_sync;
    gated_env.open_writable = gated_open_writable;
    gated_env.close = gated_close;
    st_options o;
    st_options_init(&o);
    o.env = &gated_env;
    o.sync = ST_SYNC_ALWAYS;
    o.memtable_bytes = 64 << 10;
    st_db *db;
    assert_int_equal(st_db_open(dir, &o, &db), ST_OK);

    st_batch *b;
    st_batch_create(&b);
    char key[32], val[200];
    uint64_t committed = 0;
    for (int i = 0; i < 1000; i++) {
        st_batch_clear(b);
        snprintf(key, sizeof(key), "key%05d", i);
        memset(val, 'a' + i % 26, sizeof(val) - 1);
        val[sizeof(val) - 1] = '\0';
        st_batch_put(b, S(key), S(val));
        assert_int_equal(st_db_log_append(db, 3, b, &committed), ST_OK);
    }
    /* Most of them now, switching memtables on the way (through the queue); then an empty
       memtable, so the rest fits without a switch. */
    assert_int_equal(st_db_log_apply(db, committed - 20), ST_OK);
    assert_int_equal(st_db_flush(db), ST_OK);
    st_stats st;
    st_db_stats(db, &st);
    assert_true(st.flushes >= 2);

    /* The next append is held in its sync. */
    st_batch *b2;
    st_batch_create(&b2);
    st_batch_put(b2, S("later"), S("L"));
    pthread_mutex_lock(&gate.mu);
    gate.armed = true;
    gate.open = false;
    pthread_mutex_unlock(&gate.mu);
    op ap = {.db = db, .batch = b2};
    op_start(&ap);
    assert_true(gate_wait(&gate.inside));
    pthread_mutex_lock(&gate.mu);
    uint64_t written = ap.written;
    pthread_mutex_unlock(&gate.mu);
    assert_true(written == committed + 1);

    /* Readable from the log while its sync is held. */
    st_log_iter *li;
    assert_int_equal(st_log_iter_create(db, written, &li), ST_OK);
    st_slice rec;
    assert_int_equal(st_log_iter_next(li, &rec), ST_OK);
    st_log_record_info info;
    assert_int_equal(st_log_record_parse(rec, &info), ST_OK);
    assert_true(info.seq == written && info.count == 1 && info.term == 3);
    st_log_iter_destroy(li);

    /* Applying the rest of what came before does not wait for that sync. */
    op apl = {.apply = true, .db = db, .upto = committed};
    op_start(&apl);
    bool applied = gate_wait(&apl.done);
    pthread_mutex_lock(&gate.mu);
    gate.open = true; /* let the append finish either way, so the test can end */
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    pthread_join(apl.thread, NULL);
    pthread_join(ap.thread, NULL);
    pthread_mutex_lock(&gate.mu);
    gate.armed = false;
    pthread_mutex_unlock(&gate.mu);
    assert_true(applied);
    assert_int_equal(apl.status, ST_OK);
    assert_int_equal(ap.status, ST_OK);
    assert_true(ap.last == written);

    for (int i = 0; i < 1000; i += 37) {
        snprintf(key, sizeof(key), "key%05d", i);
        memset(val, 'a' + i % 26, sizeof(val) - 1);
        val[sizeof(val) - 1] = '\0';
        expect(db, NULL, S(key), val);
    }
    expect(db, NULL, S("later"), NULL);
    assert_int_equal(st_db_log_apply(db, ap.last), ST_OK);
    expect(db, NULL, S("later"), "L");

    st_batch_destroy(b);
    st_batch_destroy(b2);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test(test_not_a_database),
        cmocka_unit_test_setup_teardown(test_unknown_format_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_compact_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seek_compaction_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seek_compaction_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_l0_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_api, setup, teardown),
        cmocka_unit_test(test_log_apply_beside_sync),
        cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_checkpoint, setup, teardown),
    };
    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
