/* test_node_cli.c - the strata CLI against a real node: output, binary safety, exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/node/node_harness.h"

static st_node_proc node;

static int setup(void **state)
{
    (void)state;
    st_node_init(&node, "node_cli");
    return st_node_start(&node, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = st_node_stop(&node);
    st_node_cleanup(&node);
    return rc == 0 ? 0 : -1;
}

/* Run `strata --addr ADDR args...`; out/err are malloc'd. */
static int cli(const char *const *args, const void *in, size_t in_len, char **out, size_t *olen,
               char **err)
{
    const char *argv[24];
    int a = 0;
    argv[a++] = "--addr";
    argv[a++] = node.addr;
    for (int i = 0; args[i] && a < 23; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    return st_run_cli(argv, in, in_len, out, olen, err);
}

static void test_put_get_del(void **state)
{
    (void)state;
    char *out, *err;
    size_t olen;
    const char *const put[] = {"put", "greeting", "hello world", NULL};
    assert_int_equal(cli(put, NULL, 0, &out, &olen, &err), 0);
    assert_non_null(strstr(out, "OK seq="));
    free(out);
    free(err);
    const char *const get[] = {"get", "greeting", NULL};
    assert_int_equal(cli(get, NULL, 0, &out, &olen, &err), 0);
    assert_int_equal(olen, 11); /* raw to a file: no newline */
    assert_memory_equal(out, "hello world", 11);
    free(out);
    free(err);
    const char *const del[] = {"del", "greeting", NULL};
    assert_int_equal(cli(del, NULL, 0, &out, &olen, &err), 0);
    free(out);
    free(err);
    assert_int_equal(cli(get, NULL, 0, &out, &olen, &err), 1);
    assert_int_equal(olen, 0);
    assert_non_null(strstr(err, "not found"));
    free(out);
    free(err);
}

static void test_binary_values_from_stdin(void **state)
{
    (void)state;
    const uint8_t value[] = {0, 1, 0xff, '\n', '\t', 'x', 0};
    char *out, *err;
    size_t olen;
    const char *const put[] = {"put", "bin", NULL}; /* no VALUE: stdin */
    assert_int_equal(cli(put, value, sizeof(value), &out, &olen, &err), 0);
    free(out);
    free(err);
    const char *const get[] = {"get", "bin", NULL};
    assert_int_equal(cli(get, NULL, 0, &out, &olen, &err), 0);
    assert_int_equal(olen, sizeof(value));
    assert_memory_equal(out, value, sizeof(value));
    free(out);
    free(err);
    const char *const hex[] = {"--hex", "get", "62696e", NULL}; /* "bin" in hex */
    assert_int_equal(cli(hex, NULL, 0, &out, &olen, &err), 0);
    assert_string_equal(out, "0001ff0a097800\n");
    free(out);
    free(err);
    const char *const esc[] = {"get", "bin", "--escape", NULL};
    assert_int_equal(cli(esc, NULL, 0, &out, &olen, &err), 0);
    assert_string_equal(out, "\\x00\\x01\\xff\\n\\tx\\x00\n");
    free(out);
    free(err);
    /* "-" reads stdin too; keys given with escapes. */
    const char *const put2[] = {"--escape", "put", "k\\x00ey", "-", NULL};
    assert_int_equal(cli(put2, "v2", 2, &out, &olen, &err), 0);
    free(out);
    free(err);
    const char *const get2[] = {"--hex", "get", "6b006579", NULL};
    assert_int_equal(cli(get2, NULL, 0, &out, &olen, &err), 0);
    assert_string_equal(out, "7632\n");
    free(out);
    free(err);
}

static void test_scan(void **state)
{
    (void)state;
    char *out, *err;
    size_t olen;
    const char *keys[] = {"sc/a", "sc/b", "sc/c", "sc/d"};
    for (int i = 0; i < 4; i++) {
        const char *const put[] = {"put", keys[i], i == 2 ? "tab\there" : "v", NULL};
        assert_int_equal(cli(put, NULL, 0, &out, &olen, &err), 0);
        free(out);
        free(err);
    }
    const char *const scan[] = {"scan", "sc/", "sc0", NULL};
    assert_int_equal(cli(scan, NULL, 0, &out, &olen, &err), 0);
    assert_string_equal(out, "sc/a\tv\nsc/b\tv\nsc/c\ttab\\there\nsc/d\tv\n");
    free(out);
    free(err);
    const char *const rev[] = {"scan", "sc/", "sc0", "--reverse", "--limit", "2", NULL};
    assert_int_equal(cli(rev, NULL, 0, &out, &olen, &err), 0);
    assert_string_equal(out, "sc/d\tv\nsc/c\ttab\\there\n");
    free(out);
    free(err);
    const char *const none[] = {"scan", "zz", NULL};
    assert_int_equal(cli(none, NULL, 0, &out, &olen, &err), 0);
    assert_int_equal(olen, 0);
    free(out);
    free(err);
}

static void test_status(void **state)
{
    (void)state;
    char *out, *err;
    const char *const st[] = {"status", NULL};
    assert_int_equal(cli(st, NULL, 0, &out, NULL, &err), 0);
    assert_non_null(strstr(out, "role: standalone"));
    assert_non_null(strstr(out, "node_id: 1"));
    assert_non_null(strstr(out, "level 6:"));
    free(out);
    free(err);
}

static void test_health(void **state)
{
    (void)state;
    char *out, *err;
    /* The node as a whole, and the leader service (a standalone node is its own leader). */
    const char *const whole[] = {"health", NULL};
    assert_int_equal(cli(whole, NULL, 0, &out, NULL, &err), 0);
    assert_string_equal(out, "SERVING\n");
    free(out);
    free(err);
    const char *const leader[] = {"health", "strata.v1.KV.leader", NULL};
    assert_int_equal(cli(leader, NULL, 0, &out, NULL, &err), 0);
    assert_string_equal(out, "SERVING\n");
    free(out);
    free(err);
    /* A service the node does not have: the answer, and exit 3. */
    const char *const other[] = {"health", "no.such.Service", NULL};
    int rc = cli(other, NULL, 0, &out, NULL, &err);
    assert_int_equal(rc, 3);
    assert_true(strstr(out, "SERVICE_UNKNOWN") || strstr(err, "NOT_FOUND"));
    free(out);
    free(err);
    const char *const extra[] = {"health", "a", "b", NULL};
    assert_int_equal(cli(extra, NULL, 0, &out, NULL, &err), 2);
    free(out);
    free(err);
    const char *const down[] = {"--addr", "127.0.0.1:1", "--timeout", "2000", "health", NULL};
    assert_int_equal(st_run_cli(down, NULL, 0, &out, NULL, &err), 3);
    assert_non_null(strstr(err, "UNAVAILABLE"));
    free(out);
    free(err);
}

static void test_exit_codes(void **state)
{
    (void)state;
    char *out, *err;
    /* Usage errors: 2. */
    const char *const cases[][4] = {{NULL},
                                    {"frobnicate", NULL},
                                    {"get", NULL},
                                    {"get", "a", "b", NULL},
                                    {"--timeout", "soon", "get", NULL},
                                    {"--hex", "get", "xyz", NULL},
                                    {"status", "extra", NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(cli(cases[i], NULL, 0, &out, NULL, &err), 2);
        free(out);
        free(err);
    }
    /* Server errors: 3, with the code name. */
    const char *const empty[] = {"put", "", "v", NULL};
    assert_int_equal(cli(empty, NULL, 0, &out, NULL, &err), 3);
    assert_non_null(strstr(err, "INVALID_ARGUMENT"));
    free(out);
    free(err);
    /* Nobody listening: UNAVAILABLE. Port 1 is never ours. */
    const char *const down[] = {"--addr", "127.0.0.1:1", "get", "k", NULL};
    assert_int_equal(st_run_cli(down, NULL, 0, &out, NULL, &err), 3);
    assert_non_null(strstr(err, "UNAVAILABLE"));
    free(out);
    free(err);
    const char *const help[] = {"--help", NULL};
    assert_int_equal(st_run_cli(help, NULL, 0, &out, NULL, &err), 0);
    assert_non_null(strstr(out, "scan [START [END]]"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del), cmocka_unit_test(test_binary_values_from_stdin),
        cmocka_unit_test(test_scan),        cmocka_unit_test(test_status),
        cmocka_unit_test(test_exit_codes),  cmocka_unit_test(test_health),
    };
    return cmocka_run_group_tests_name("node_cli", tests, setup, teardown);
}
