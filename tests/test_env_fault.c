/* test_env_fault.c - the fault-injecting env: injected failures, budget, counters, power loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/env.h"
#include "tests/support/env_fault.h"
#include "tests/support/testutil.h"

typedef struct {
    char *dir;
    st_fault_env *fe;
    st_env *env;  /* the fault env */
    st_env *real; /* posix, to look at the disk behind the fault env's back */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = st_test_mkdtemp("env_fault");
    fx->real = st_env_posix();
    assert_int_equal(st_fault_env_create(fx->real, &fx->fe), ST_OK);
    fx->env = st_fault_env_env(fx->fe);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    st_fault_env_destroy(fx->fe);
    st_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static char *P(fixture *fx, const char *name)
{
    return st_test_path(fx->dir, name);
}

/* The real contents of path as a string, or NULL if it does not exist. Caller frees. */
static char *real_content(fixture *fx, const char *path)
{
    uint8_t *data;
    size_t n;
    st_status s = st_env_read_file(fx->real, path, 1 << 20, &data, &n);
    if (s == ST_NOT_FOUND)
        return NULL;
    assert_int_equal(s, ST_OK);
    char *str = malloc(n + 1);
    memcpy(str, data, n);
    str[n] = '\0';
    free(data);
    return str;
}

static void assert_real(fixture *fx, const char *path, const char *want)
{
    char *got = real_content(fx, path);
    if (!want) {
        if (got)
            fail_msg("%s should not exist, holds \"%s\"", path, got);
        return;
    }
    if (!got)
        fail_msg("%s should hold \"%s\", does not exist", path, want);
    assert_string_equal(got, want);
    free(got);
}

/* Create (truncating) path through env and append text; optionally sync the file. */
static void put(st_env *env, const char *path, const char *text, bool sync)
{
    st_file *f;
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    assert_int_equal(env->append(f, text, strlen(text)), ST_OK);
    if (sync)
        assert_int_equal(env->sync(f), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
}

static void append_to(st_env *env, const char *path, const char *text, bool sync)
{
    st_file *f;
    assert_int_equal(env->open_writable(env, path, true, &f), ST_OK);
    assert_int_equal(env->append(f, text, strlen(text)), ST_OK);
    if (sync)
        assert_int_equal(env->sync(f), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
}

static void power_cycle(fixture *fx)
{
    st_fault_env_power_off(fx->fe);
    assert_int_equal(st_fault_env_drop_unsynced(fx->fe), ST_OK);
    st_fault_env_power_on(fx->fe);
}

/* No parked (hidden) file is left in dir on the real disk. */
static void assert_no_hidden(fixture *fx, const char *dir)
{
    char **names;
    size_t n;
    assert_int_equal(fx->real->list(fx->real, dir, &names, &n), ST_OK);
    for (size_t i = 0; i < n; i++)
        if (strncmp(names[i], ".stfault-", 9) == 0)
            fail_msg("hidden file %s left in %s", names[i], dir);
    st_env_free_names(names, n);
}

/* ---- injected faults ---- */

static void test_fail_nth_append(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = P(fx, "a.log");
    st_file *f;
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    st_fault_env_fail_append(fx->fe, &(st_fault_spec){.nth = 3, .prefix = 4});
    assert_int_equal(env->append(f, "11111111", 8), ST_OK);
    assert_int_equal(env->append(f, "22222222", 8), ST_OK);
    assert_int_equal(env->append(f, "33333333", 8), ST_IO_ERROR);
    assert_non_null(strstr(st_errmsg(), path));
    /* One-shot: the next append works. */
    assert_int_equal(env->append(f, "44", 2), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    assert_real(fx, path, "1111111122222222333344");

    /* NO_SPACE, with a prefix longer than the append (clamped), on the first. */
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    st_fault_env_fail_append(fx->fe,
                             &(st_fault_spec){.nth = 1, .code = ST_NO_SPACE, .prefix = 100});
    assert_int_equal(env->append(f, "abc", 3), ST_NO_SPACE);
    assert_int_equal(env->close(f), ST_OK);
    assert_real(fx, path, "abc");
    st_fault_stats st = st_fault_env_stats(fx->fe);
    assert_int_equal(st.injected, 2);
    free(path);
}

static void test_fail_append_filter_and_sticky(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *wal = P(fx, "000001.log");
    char *sst = P(fx, "000002.dat");
    st_file *fw, *fs;
    assert_int_equal(env->open_writable(env, wal, false, &fw), ST_OK);
    assert_int_equal(env->open_writable(env, sst, false, &fs), ST_OK);
    st_fault_env_fail_append(
        fx->fe,
        &(st_fault_spec){.nth = 2, .path_substr = ".log", .code = ST_IO_ERROR, .sticky = true});
    /* Appends to other paths neither fail nor count. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(env->append(fs, "s", 1), ST_OK);
    assert_int_equal(env->append(fw, "w", 1), ST_OK);
    assert_int_equal(env->append(fs, "s", 1), ST_OK);
    assert_int_equal(env->append(fw, "w", 1), ST_IO_ERROR);
    assert_int_equal(env->append(fw, "w", 1), ST_IO_ERROR); /* sticky */
    assert_int_equal(env->append(fs, "s", 1), ST_OK);
    st_fault_env_clear_faults(fx->fe);
    assert_int_equal(env->append(fw, "W", 1), ST_OK);
    assert_int_equal(env->close(fw), ST_OK);
    assert_int_equal(env->close(fs), ST_OK);
    assert_real(fx, wal, "wW");
    assert_real(fx, sst, "sssssss");
    free(wal);
    free(sst);
}

static void test_fail_sync(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = P(fx, "s.log");
    put(env, path, "", false);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    st_file *f;
    assert_int_equal(env->open_writable(env, path, true, &f), ST_OK);
    assert_int_equal(env->append(f, "durable", 7), ST_OK);
    assert_int_equal(env->sync(f), ST_OK);
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 1, .code = ST_IO_ERROR});
    assert_int_equal(env->append(f, "+lost", 5), ST_OK);
    assert_int_equal(env->sync(f), ST_IO_ERROR); /* nothing became durable */
    assert_non_null(strstr(st_errmsg(), path));
    assert_int_equal(env->close(f), ST_OK);
    assert_real(fx, path, "durable+lost");
    power_cycle(fx);
    assert_real(fx, path, "durable");

    /* sync_dir faults: the directory entry does not become durable. */
    char *other = P(fx, "new.log");
    put(env, other, "x", true);
    st_fault_env_fail_sync_dir(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = "env_fault"});
    assert_int_equal(env->sync_dir(env, fx->dir), ST_IO_ERROR);
    power_cycle(fx);
    assert_real(fx, other, NULL);
    free(other);
    free(path);
}

static void test_budget(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *a = P(fx, "a"), *b = P(fx, "b");
    st_file *fa, *fb;
    assert_int_equal(env->open_writable(env, a, false, &fa), ST_OK);
    assert_int_equal(env->open_writable(env, b, false, &fb), ST_OK);
    st_fault_env_set_budget(fx->fe, 10);
    assert_int_equal(env->append(fa, "123456", 6), ST_OK);
    assert_int_equal(st_fault_env_budget_left(fx->fe), 4);
    /* Over all files: b gets what fits, then the disk is full. */
    assert_int_equal(env->append(fb, "abcdef", 6), ST_NO_SPACE);
    assert_non_null(strstr(st_errmsg(), b));
    assert_int_equal(st_fault_env_budget_left(fx->fe), 0);
    assert_int_equal(env->append(fa, "7", 1), ST_NO_SPACE);
    assert_int_equal(env->append(fa, "", 0), ST_OK); /* nothing asked, nothing refused */
    st_fault_env_set_budget(fx->fe, UINT64_MAX);
    assert_int_equal(env->append(fa, "7", 1), ST_OK);
    assert_int_equal(env->close(fa), ST_OK);
    assert_int_equal(env->close(fb), ST_OK);
    assert_real(fx, a, "1234567");
    assert_real(fx, b, "abcd");
    free(a);
    free(b);
}

static void test_stats(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *wal = P(fx, "wal.log"), *other = P(fx, "x.dat");
    st_fault_env_reset_stats(fx->fe, ".log");
    put(env, wal, "abc", true);
    put(env, other, "defg", true);
    append_to(env, wal, "hi", false);
    st_fault_stats st = st_fault_env_stats(fx->fe);
    assert_int_equal(st.appends, 2);
    assert_int_equal(st.append_bytes, 5);
    assert_int_equal(st.syncs, 1);
    assert_int_equal(st.injected, 0);
    st_fault_env_reset_stats(fx->fe, NULL);
    append_to(env, other, "j", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    st = st_fault_env_stats(fx->fe);
    assert_int_equal(st.appends, 1);
    assert_int_equal(st.append_bytes, 1);
    assert_int_equal(st.syncs, 1);
    assert_int_equal(st.dir_syncs, 1);
    free(wal);
    free(other);
}

/* ---- power loss ---- */

static void test_power_off_refuses_mutations(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *a = P(fx, "a"), *b = P(fx, "b"), *sub = P(fx, "sub");
    put(env, a, "data", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    st_file *w, *r;
    assert_int_equal(env->open_writable(env, a, true, &w), ST_OK);
    assert_int_equal(env->open_readable(env, a, &r), ST_OK);
    assert_int_equal(st_fault_env_drop_unsynced(fx->fe), ST_INVALID_ARGUMENT);

    st_fault_env_power_off(fx->fe);
    assert_true(st_fault_env_is_off(fx->fe));
    st_file *f;
    assert_int_equal(env->open_writable(env, b, false, &f), ST_IO_ERROR);
    assert_non_null(strstr(st_errmsg(), b));
    assert_int_equal(env->append(w, "x", 1), ST_IO_ERROR);
    assert_int_equal(env->sync(w), ST_IO_ERROR);
    assert_int_equal(env->truncate(w, 0), ST_IO_ERROR);
    assert_int_equal(env->mkdir(env, sub), ST_IO_ERROR);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_IO_ERROR);
    assert_int_equal(env->rename(env, a, b), ST_IO_ERROR);
    assert_int_equal(env->link(env, a, b), ST_IO_ERROR);
    assert_int_equal(env->unlink(env, a), ST_IO_ERROR);
    /* Reads, sizes, listings and closes still work. */
    char buf[8];
    size_t got;
    assert_int_equal(env->read_at(r, 0, buf, sizeof(buf), &got), ST_OK);
    assert_int_equal(got, 4);
    uint64_t size;
    assert_int_equal(env->file_size(env, a, &size), ST_OK);
    assert_int_equal(size, 4);
    assert_true(env->exists(env, a));
    assert_false(env->exists(env, b));
    assert_int_equal(env->close(w), ST_OK);
    assert_int_equal(env->close(r), ST_OK);
    assert_int_equal(st_fault_env_drop_unsynced(fx->fe), ST_OK);
    st_fault_env_power_on(fx->fe);
    assert_false(st_fault_env_is_off(fx->fe));
    append_to(env, a, "!", true);
    assert_real(fx, a, "data!");
    free(a);
    free(b);
    free(sub);
}

static void test_power_loss_file_data(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *synced = P(fx, "synced"), *never = P(fx, "never"), *cut = P(fx, "cut");
    st_file *f;
    assert_int_equal(env->open_writable(env, synced, false, &f), ST_OK);
    assert_int_equal(env->append(f, "one ", 4), ST_OK);
    assert_int_equal(env->sync(f), ST_OK);
    assert_int_equal(env->append(f, "two ", 4), ST_OK);
    assert_int_equal(env->sync(f), ST_OK);
    assert_int_equal(env->append(f, "three", 5), ST_OK); /* not synced */
    assert_int_equal(env->close(f), ST_OK);
    put(env, never, "never synced", false);
    /* A truncate is durable at once: synced "abcdef", cut to 2, appended "XY" unsynced. */
    assert_int_equal(env->open_writable(env, cut, false, &f), ST_OK);
    assert_int_equal(env->append(f, "abcdef", 6), ST_OK);
    assert_int_equal(env->sync(f), ST_OK);
    assert_int_equal(env->truncate(f, 2), ST_OK);
    assert_int_equal(env->append(f, "XY", 2), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK); /* the names are durable */
    assert_real(fx, synced, "one two three");

    power_cycle(fx);
    assert_real(fx, synced, "one two ");
    assert_real(fx, never, "");
    assert_real(fx, cut, "ab");

    /* After power on, what survived counts as durable; the same rules apply again. */
    append_to(env, synced, "four", false);
    power_cycle(fx);
    assert_real(fx, synced, "one two ");
    free(synced);
    free(never);
    free(cut);
}

static void test_power_loss_create(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *kept = P(fx, "kept"), *lost = P(fx, "lost");
    put(env, kept, "k", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    put(env, lost, "synced data, unsynced name", true);
    /* A reopen with truncation of a durable file is not a create. */
    put(env, kept, "K2", true);
    assert_int_equal(st_fault_env_stats(fx->fe).dir_syncs, 1);
    power_cycle(fx);
    assert_real(fx, kept, "K2");
    assert_real(fx, lost, NULL);
    free(kept);
    free(lost);
}

static void test_power_loss_rename(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *cur = P(fx, "CURRENT"), *tmp = P(fx, "CURRENT.tmp"), *old = P(fx, "old");

    /* Not durable: the replaced file comes back, the renamed one returns to its old name. */
    put(env, cur, "v1", true);
    put(env, tmp, "v2", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    assert_int_equal(env->rename(env, tmp, cur), ST_OK);
    assert_real(fx, cur, "v2");
    assert_real(fx, tmp, NULL);
    /* The parked copy does not show through the env. */
    char **names;
    size_t n;
    assert_int_equal(env->list(env, fx->dir, &names, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "CURRENT");
    st_env_free_names(names, n);
    power_cycle(fx);
    assert_real(fx, cur, "v1");
    assert_real(fx, tmp, "v2");
    assert_no_hidden(fx, fx->dir);

    /* Durable: kept, and the replaced file is really gone. */
    assert_int_equal(env->rename(env, tmp, cur), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    assert_no_hidden(fx, fx->dir);
    power_cycle(fx);
    assert_real(fx, cur, "v2");
    assert_real(fx, tmp, NULL);

    /* A rename onto a fresh name, undone; then two renames in a row, undone newest first. */
    assert_int_equal(env->rename(env, cur, old), ST_OK);
    power_cycle(fx);
    assert_real(fx, cur, "v2");
    assert_real(fx, old, NULL);
    put(env, tmp, "v3", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    assert_int_equal(env->rename(env, cur, old), ST_OK);
    assert_int_equal(env->rename(env, tmp, cur), ST_OK);
    assert_real(fx, cur, "v3");
    power_cycle(fx);
    assert_real(fx, cur, "v2");
    assert_real(fx, tmp, "v3");
    assert_real(fx, old, NULL);

    assert_int_equal(env->rename(env, old, cur), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), old));
    free(cur);
    free(tmp);
    free(old);
}

static void test_power_loss_unlink_and_link(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *a = P(fx, "a.dat"), *b = P(fx, "b.dat"), *c = P(fx, "c.dat");
    put(env, a, "AAAA", true);
    put(env, b, "BBBB", true);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    append_to(env, a, "-unsynced", false);

    assert_int_equal(env->unlink(env, a), ST_OK);
    assert_false(env->exists(env, a));
    char **names;
    size_t n;
    assert_int_equal(env->list(env, fx->dir, &names, &n), ST_OK);
    assert_int_equal(n, 1); /* b.dat only */
    st_env_free_names(names, n);
    assert_int_equal(env->unlink(env, a), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), a));
    power_cycle(fx);
    assert_real(fx, a, "AAAA"); /* back, with its durable contents */
    assert_no_hidden(fx, fx->dir);

    assert_int_equal(env->unlink(env, a), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    assert_no_hidden(fx, fx->dir);
    power_cycle(fx);
    assert_real(fx, a, NULL);

    /* Links: undone unless durable; the original stays either way. */
    assert_int_equal(env->link(env, b, c), ST_OK);
    power_cycle(fx);
    assert_real(fx, c, NULL);
    assert_real(fx, b, "BBBB");
    assert_int_equal(env->link(env, b, c), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    power_cycle(fx);
    assert_real(fx, c, "BBBB");
    free(a);
    free(b);
    free(c);
}

static void test_power_loss_subdirectories(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *wal = P(fx, "wal");
    char *seg = st_test_path(wal, "000003.log");
    char *seg_dup = malloc(strlen(seg) + 8);
    /* The same file spelled with a doubled slash is the same file. */
    snprintf(seg_dup, strlen(seg) + 8, "%s//000003.log", wal);
    assert_int_equal(env->mkdir(env, wal), ST_OK);
    put(env, seg, "records", true);
    /* Syncing the parent does not make an entry in wal/ durable. */
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    power_cycle(fx);
    assert_real(fx, seg, NULL);
    put(env, seg_dup, "records", true);
    char *wal_slash = malloc(strlen(wal) + 2);
    snprintf(wal_slash, strlen(wal) + 2, "%s/", wal);
    assert_int_equal(env->sync_dir(env, wal_slash), ST_OK);
    power_cycle(fx);
    assert_real(fx, seg, "records");
    free(wal_slash);
    free(seg_dup);
    free(seg);
    free(wal);
}

static void test_power_loss_cross_directory_rename(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *sub = P(fx, "sub");
    char *from = st_test_path(sub, "f.tmp");
    char *to = P(fx, "f.dat");
    assert_int_equal(env->mkdir(env, sub), ST_OK);
    /* Created in sub/ (never synced there), renamed into the parent, the parent synced: the
       rename is durable, and so is the create it implies. */
    put(env, from, "moved", true);
    assert_int_equal(env->rename(env, from, to), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    power_cycle(fx);
    assert_real(fx, to, "moved");
    assert_real(fx, from, NULL);
    /* Not synced anywhere: undone, create included. */
    put(env, from, "again", true);
    assert_int_equal(env->rename(env, from, to), ST_OK);
    power_cycle(fx);
    assert_real(fx, to, "moved");
    assert_real(fx, from, NULL);
    free(sub);
    free(from);
    free(to);
}

static void test_preexisting_files(void **state)
{
    fixture *fx = *state;
    char *a = P(fx, "before.dat"), *b = P(fx, "before2.dat");
    /* Written behind the fault env's back: taken as durable as found. */
    put(fx->real, a, "old contents", false);
    put(fx->real, b, "other", false);
    append_to(fx->env, a, " + new", false);
    assert_int_equal(fx->env->unlink(fx->env, b), ST_OK);
    power_cycle(fx);
    assert_real(fx, a, "old contents");
    assert_real(fx, b, "other");
    free(a);
    free(b);
}

static void test_write_file_atomic_power_loss(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *cur = P(fx, "CURRENT"), *tmp = P(fx, "CURRENT.tmp");
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, cur, "MANIFEST-1\n", 11), ST_OK);
    power_cycle(fx);
    assert_real(fx, cur, "MANIFEST-1\n");

    /* The final directory sync fails: the old version survives a power loss. */
    st_fault_env_fail_sync_dir(fx->fe, &(st_fault_spec){.nth = 1});
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, cur, "MANIFEST-2\n", 11), ST_IO_ERROR);
    assert_real(fx, cur, "MANIFEST-2\n");
    power_cycle(fx);
    assert_real(fx, cur, "MANIFEST-1\n");
    assert_real(fx, tmp, NULL);

    /* The temporary file's sync fails: it is removed, the target untouched. */
    st_fault_env_fail_sync(fx->fe, &(st_fault_spec){.nth = 1, .path_substr = ".tmp"});
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, cur, "MANIFEST-3\n", 11), ST_IO_ERROR);
    assert_non_null(strstr(st_errmsg(), tmp));
    assert_real(fx, tmp, NULL);
    assert_false(env->exists(env, tmp));
    assert_real(fx, cur, "MANIFEST-1\n");
    /* Its unlink is parked until the directory is synced, then really done. */
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);
    assert_no_hidden(fx, fx->dir);
    power_cycle(fx);
    assert_real(fx, tmp, NULL);
    assert_real(fx, cur, "MANIFEST-1\n");
    free(cur);
    free(tmp);
}

/* ---- threads ---- */

typedef struct {
    fixture *fx;
    int id;
    uint64_t durable; /* bytes in the file at the start of its last successful sync */
    bool saw_failure;
    bool ok_after_failure; /* must stay false: once off, nothing succeeds */
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    st_env *env = w->fx->env;
    char name[32];
    snprintf(name, sizeof(name), "t%d.log", w->id);
    char *path = st_test_path(w->fx->dir, name);
    st_file *f;
    if (env->open_writable(env, path, true, &f) != ST_OK) {
        /* The power went before this thread got going (a loaded machine): that is a failure
           seen too. */
        w->saw_failure = true;
        free(path);
        return NULL;
    }
    uint64_t written = 0;
    char chunk[64];
    memset(chunk, 'a' + w->id, sizeof(chunk));
    /* Until the power goes (and a little beyond, to see that nothing succeeds after it). */
    for (int i = 0; i < 50 * 1000 * 1000; i++) {
        st_status s = env->append(f, chunk, (size_t)(1 + i % 64));
        if (s == ST_OK) {
            if (w->saw_failure)
                w->ok_after_failure = true;
            written += (uint64_t)(1 + i % 64);
        } else {
            w->saw_failure = true;
        }
        if (i % 16 == 0) {
            uint64_t before = written;
            s = env->sync(f);
            if (s == ST_OK) {
                if (w->saw_failure)
                    w->ok_after_failure = true;
                w->durable = before;
            } else {
                w->saw_failure = true;
            }
        }
        if (w->saw_failure && i % 16 == 1)
            break;
    }
    env->close(f);
    free(path);
    return NULL;
}

static void test_threads_and_power_off(void **state)
{
    fixture *fx = *state;
    enum { T = 4 };
    /* The files exist, durably named, before the threads start appending. */
    for (int i = 0; i < T; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%d.log", i);
        char *path = st_test_path(fx->dir, name);
        put(fx->env, path, "", true);
        free(path);
    }
    assert_int_equal(fx->env->sync_dir(fx->env, fx->dir), ST_OK);
    worker w[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker){.fx = fx, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    usleep(30000);
    st_fault_env_power_off(fx->fe);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(st_fault_env_drop_unsynced(fx->fe), ST_OK);
    st_fault_env_power_on(fx->fe);
    for (int i = 0; i < T; i++) {
        assert_true(w[i].saw_failure);
        assert_false(w[i].ok_after_failure);
        char name[32];
        snprintf(name, sizeof(name), "t%d.log", i);
        char *path = st_test_path(fx->dir, name);
        uint64_t size;
        assert_int_equal(fx->real->file_size(fx->real, path, &size), ST_OK);
        /* Exactly what the thread last saw synced survived. */
        assert_int_equal(size, w[i].durable);
        free(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fail_nth_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_append_filter_and_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_off_refuses_mutations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_file_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_unlink_and_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_subdirectories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_loss_cross_directory_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preexisting_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic_power_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_and_power_off, setup, teardown),
    };
    return cmocka_run_group_tests_name("env_fault", tests, NULL, NULL);
}
