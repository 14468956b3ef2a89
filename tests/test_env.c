/* test_env.c - the POSIX env: files, directories, locks, clocks and the whole-file helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/env.h"
#include "tests/support/testutil.h"

typedef struct {
    st_env *env;
    char *dir;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->env = st_env_posix();
    fx->dir = st_test_mkdtemp("env");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    st_test_rmdir(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void write_whole(st_env *env, const char *path, const char *text)
{
    st_file *f;
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    assert_int_equal(env->append(f, text, strlen(text)), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
}

/* The file's contents as a NUL-terminated string (test files are text). */
static char *slurp(st_env *env, const char *path)
{
    uint8_t *data;
    size_t n;
    assert_int_equal(st_env_read_file(env, path, 1 << 20, &data, &n), ST_OK);
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = '\0';
    free(data);
    return s;
}

static void assert_file_is(st_env *env, const char *path, const char *text)
{
    char *s = slurp(env, path);
    assert_string_equal(s, text);
    free(s);
}

static void test_write_read(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "a.dat");
    st_file *f;
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    assert_int_equal(env->append(f, "hello ", 6), ST_OK);
    assert_int_equal(env->append(f, "world", 5), ST_OK);
    assert_int_equal(env->append(f, "", 0), ST_OK);
    uint64_t size = 0;
    assert_int_equal(env->size(f, &size), ST_OK);
    assert_int_equal(size, 11);
    assert_int_equal(env->sync(f), ST_OK);
    /* A writable file can be read back through the same handle. */
    char buf[32];
    size_t got = 0;
    assert_int_equal(env->read_at(f, 6, buf, 5, &got), ST_OK);
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "world", 5);
    assert_int_equal(env->close(f), ST_OK);

    st_file *r;
    assert_int_equal(env->open_readable(env, path, &r), ST_OK);
    assert_int_equal(env->read_at(r, 0, buf, 11, &got), ST_OK);
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "hello world", 11);
    /* Short at end of file, zero past it. */
    assert_int_equal(env->read_at(r, 8, buf, sizeof(buf), &got), ST_OK);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "rld", 3);
    assert_int_equal(env->read_at(r, 11, buf, sizeof(buf), &got), ST_OK);
    assert_int_equal(got, 0);
    assert_int_equal(env->read_at(r, 1000, buf, sizeof(buf), &got), ST_OK);
    assert_int_equal(got, 0);
    assert_int_equal(env->size(r, &size), ST_OK);
    assert_int_equal(size, 11);
    assert_int_equal(env->close(r), ST_OK);
    assert_int_equal(env->file_size(env, path, &size), ST_OK);
    assert_int_equal(size, 11);
    assert_int_equal(env->close(NULL), ST_OK);
    free(path);
}

static void test_large_read_write(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "big.dat");
    size_t n = 3 * 1024 * 1024 + 17;
    uint8_t *data = malloc(n), *back = malloc(n);
    st_rng rng;
    st_rng_seed(&rng, 7);
    st_rng_bytes(&rng, data, n);
    st_file *f;
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    assert_int_equal(env->append(f, data, n), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    assert_int_equal(env->open_readable(env, path, &f), ST_OK);
    size_t got;
    assert_int_equal(env->read_at(f, 0, back, n, &got), ST_OK);
    assert_int_equal(got, n);
    assert_memory_equal(back, data, n);
    assert_int_equal(env->close(f), ST_OK);
    free(data);
    free(back);
    free(path);
}

static void test_append_mode_and_truncate(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "b.dat");
    write_whole(env, path, "abcdef");

    st_file *f;
    assert_int_equal(env->open_writable(env, path, true, &f), ST_OK);
    assert_int_equal(env->append(f, "gh", 2), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    assert_file_is(env, path, "abcdefgh");

    /* Truncate then append: the append lands at the new end, no hole. */
    assert_int_equal(env->open_writable(env, path, true, &f), ST_OK);
    assert_int_equal(env->truncate(f, 3), ST_OK);
    assert_int_equal(env->append(f, "XY", 2), ST_OK);
    uint64_t size;
    assert_int_equal(env->size(f, &size), ST_OK);
    assert_int_equal(size, 5);
    assert_int_equal(env->close(f), ST_OK);
    assert_file_is(env, path, "abcXY");

    /* Without append the file is created afresh. */
    assert_int_equal(env->open_writable(env, path, false, &f), ST_OK);
    assert_int_equal(env->size(f, &size), ST_OK);
    assert_int_equal(size, 0);
    assert_int_equal(env->append(f, "new", 3), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    assert_file_is(env, path, "new");
    free(path);
}

static void test_missing_files(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "missing.dat");
    char *in_missing_dir = st_test_path(fx->dir, "nodir/x.dat");
    st_file *f = NULL;
    uint64_t size;

    assert_int_equal(env->open_readable(env, path, &f), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    st_clear_error();
    assert_int_equal(env->file_size(env, path, &size), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    assert_int_equal(env->unlink(env, path), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    char *other = st_test_path(fx->dir, "other.dat");
    assert_int_equal(env->rename(env, path, other), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    assert_int_equal(env->link(env, path, other), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    assert_int_equal(env->open_writable(env, in_missing_dir, false, &f), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), in_missing_dir));
    assert_int_equal(env->sync_dir(env, in_missing_dir), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), in_missing_dir));
    uint8_t *data;
    size_t n;
    assert_int_equal(st_env_read_file(env, path, 100, &data, &n), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), path));
    assert_false(env->exists(env, path));
    free(other);
    free(path);
    free(in_missing_dir);
}

static void test_map(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "m.dat");
    char *empty = st_test_path(fx->dir, "empty.dat");
    write_whole(env, path, "mapped bytes");
    write_whole(env, empty, "");

    st_file *f;
    const uint8_t *addr = NULL;
    uint64_t len = 0;
    assert_int_equal(env->open_readable(env, path, &f), ST_OK);
    assert_int_equal(env->map(f, &addr, &len), ST_OK);
    assert_int_equal(len, 12);
    assert_memory_equal(addr, "mapped bytes", 12);
    /* Mapping again hands back the same mapping. */
    const uint8_t *addr2;
    uint64_t len2;
    assert_int_equal(env->map(f, &addr2, &len2), ST_OK);
    assert_ptr_equal(addr2, addr);
    assert_int_equal(len2, 12);
    assert_int_equal(env->close(f), ST_OK); /* unmaps */

    assert_int_equal(env->open_readable(env, empty, &f), ST_OK);
    addr = (const uint8_t *)"x";
    len = 99;
    assert_int_equal(env->map(f, &addr, &len), ST_OK);
    assert_null(addr);
    assert_int_equal(len, 0);
    assert_int_equal(env->close(f), ST_OK);
    free(path);
    free(empty);
}

static void test_dirs_and_names(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *sub = st_test_path(fx->dir, "sub");
    assert_int_equal(env->mkdir(env, sub), ST_OK);
    assert_int_equal(env->mkdir(env, sub), ST_OK); /* already there is fine */
    assert_true(env->exists(env, sub));
    assert_int_equal(env->sync_dir(env, sub), ST_OK);
    assert_int_equal(env->sync_dir(env, fx->dir), ST_OK);

    /* mkdir over a file is an error, naming the path. */
    char *file = st_test_path(fx->dir, "plain");
    write_whole(env, file, "p");
    assert_int_not_equal(env->mkdir(env, file), ST_OK);
    assert_non_null(strstr(st_errmsg(), file));

    char *a = st_test_path(sub, "a");
    char *b = st_test_path(sub, "b");
    char *c = st_test_path(sub, "c");
    write_whole(env, a, "AAA");
    write_whole(env, b, "BBB");
    /* rename replaces the target. */
    assert_int_equal(env->rename(env, a, b), ST_OK);
    assert_false(env->exists(env, a));
    assert_file_is(env, b, "AAA");
    /* link gives a second name to the same file. */
    assert_int_equal(env->link(env, b, c), ST_OK);
    assert_file_is(env, c, "AAA");
    assert_int_equal(env->link(env, b, c), ST_IO_ERROR); /* EEXIST */
    assert_non_null(strstr(st_errmsg(), c));
    assert_int_equal(env->unlink(env, b), ST_OK);
    assert_false(env->exists(env, b));
    assert_file_is(env, c, "AAA");
    free(a);
    free(b);
    free(c);
    free(file);
    free(sub);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void test_list(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char **names;
    size_t count = 99;
    assert_int_equal(env->list(env, fx->dir, &names, &count), ST_OK);
    assert_int_equal(count, 0);
    st_env_free_names(names, count);

    const char *want[] = {"000001.log", "CURRENT", "sst", "x.tmp"};
    for (size_t i = 0; i < 4; i++) {
        char *p = st_test_path(fx->dir, want[i]);
        if (strcmp(want[i], "sst") == 0)
            assert_int_equal(env->mkdir(env, p), ST_OK);
        else
            write_whole(env, p, "x");
        free(p);
    }
    assert_int_equal(env->list(env, fx->dir, &names, &count), ST_OK);
    assert_int_equal(count, 4);
    qsort(names, count, sizeof(*names), cmp_str);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(names[i], want[i]);
    st_env_free_names(names, count);
    st_env_free_names(NULL, 0);

    /* Many entries: the array grows. */
    char *many = st_test_path(fx->dir, "sst");
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%06d.dat", i);
        char *p = st_test_path(many, name);
        write_whole(env, p, "");
        free(p);
    }
    assert_int_equal(env->list(env, many, &names, &count), ST_OK);
    assert_int_equal(count, 100);
    st_env_free_names(names, count);

    char *missing = st_test_path(fx->dir, "nope");
    assert_int_equal(env->list(env, missing, &names, &count), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), missing));
    free(missing);
    free(many);
}

static void test_lock(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "LOCK");
    st_filelock *l1 = NULL, *l2 = NULL;
    assert_int_equal(env->lock(env, path, &l1), ST_OK);
    assert_true(env->exists(env, path)); /* created */
    assert_int_equal(env->lock(env, path, &l2), ST_BUSY);
    assert_non_null(strstr(st_errmsg(), path));
    assert_non_null(strstr(st_errmsg(), "another process holds"));
    env->unlock(l1);
    assert_int_equal(env->lock(env, path, &l2), ST_OK);
    env->unlock(l2);
    env->unlock(NULL);

    char *bad = st_test_path(fx->dir, "nodir/LOCK");
    assert_int_equal(env->lock(env, bad, &l1), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), bad));
    free(bad);
    free(path);
}

static void test_clocks(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    uint64_t t0 = env->now_micros(env);
    usleep(20000);
    uint64_t t1 = env->now_micros(env);
    assert_true(t1 >= t0 + 15000);
    assert_true(t1 < t0 + 5000000);
    uint64_t wall = env->wall_micros(env);
    uint64_t now = (uint64_t)time(NULL) * 1000000u;
    assert_true(wall + 5000000 > now && wall < now + 5000000);
}

static void test_write_file_atomic(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "CURRENT");
    char *tmp = st_test_path(fx->dir, "CURRENT.tmp");
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, path, "MANIFEST-000001\n", 16), ST_OK);
    assert_file_is(env, path, "MANIFEST-000001\n");
    assert_false(env->exists(env, tmp));
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, path, "MANIFEST-000002\n", 16), ST_OK);
    assert_file_is(env, path, "MANIFEST-000002\n");
    assert_false(env->exists(env, tmp));
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, path, NULL, 0), ST_OK);
    assert_file_is(env, path, "");

    /* The rename fails (the target is a non-empty directory): tmp removed, target intact. */
    char *dirpath = st_test_path(fx->dir, "adir");
    char *dirtmp = st_test_path(fx->dir, "adir.tmp");
    char *inner = st_test_path(dirpath, "keep");
    assert_int_equal(env->mkdir(env, dirpath), ST_OK);
    write_whole(env, inner, "kept");
    assert_int_not_equal(st_env_write_file_atomic(env, fx->dir, dirpath, "x", 1), ST_OK);
    assert_non_null(strstr(st_errmsg(), dirpath));
    assert_false(env->exists(env, dirtmp));
    assert_file_is(env, inner, "kept");

    /* The directory does not exist: nothing is created. */
    char *nowhere = st_test_path(fx->dir, "nodir/CURRENT");
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, nowhere, "x", 1), ST_NOT_FOUND);
    assert_non_null(strstr(st_errmsg(), "nodir"));
    free(nowhere);
    free(inner);
    free(dirtmp);
    free(dirpath);
    free(tmp);
    free(path);
}

static void test_read_file(void **state)
{
    fixture *fx = *state;
    st_env *env = fx->env;
    char *path = st_test_path(fx->dir, "r.txt");
    write_whole(env, path, "0123456789");
    uint8_t *data = NULL;
    size_t n = 0;
    assert_int_equal(st_env_read_file(env, path, 10, &data, &n), ST_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(data, "0123456789", 10);
    free(data);
    assert_int_equal(st_env_read_file(env, path, 9, &data, &n), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), path));

    write_whole(env, path, "");
    assert_int_equal(st_env_read_file(env, path, 0, &data, &n), ST_OK);
    assert_int_equal(n, 0);
    free(data);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_read_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_mode_and_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirs_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_file, setup, teardown),
    };
    return cmocka_run_group_tests_name("env", tests, NULL, NULL);
}
