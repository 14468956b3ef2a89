/* test_node_config.c - node/config.h: defaults, flags, INI files, precedence, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "tests/support/testutil.h"

static st_status parse(st_node_config *c, const char *const *args, bool *help)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "strata-node";
    for (int i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    st_config_defaults(c);
    return st_config_parse(c, argc, argv, help);
}

static void test_defaults(void **state)
{
    (void)state;
    st_node_config c;
    bool help;
    const char *const none[] = {NULL};
    assert_int_equal(parse(&c, none, &help), ST_OK);
    assert_false(help);
    assert_string_equal(c.listen, "127.0.0.1:7400");
    assert_string_equal(c.data_dir, "./strata-data");
    assert_int_equal(c.node_id, 1);
    assert_int_equal(c.sync, ST_SYNC_ALWAYS);
    assert_int_equal(c.max_key_bytes, 8192);
    assert_int_equal(c.max_value_bytes, 4u << 20);
    assert_int_equal(c.max_message_bytes, 16u << 20);
    assert_true(c.workers >= 1 && c.workers <= 16);
    assert_string_equal(c.port_file, "");
}

static void test_flags(void **state)
{
    (void)state;
    st_node_config c;
    bool help;
    const char *const args[] = {"--listen",
                                "0.0.0.0:0",
                                "--data-dir",
                                "/tmp/x",
                                "--node-id",
                                "9",
                                "--sync",
                                "interval",
                                "--sync-interval-ms",
                                "25",
                                "--memtable-bytes",
                                "64M",
                                "--max-key-bytes",
                                "1K",
                                "--max-concurrent-calls",
                                "5",
                                "--workers",
                                "3",
                                "--port-file",
                                "/tmp/p",
                                NULL};
    assert_int_equal(parse(&c, args, &help), ST_OK);
    assert_string_equal(c.listen, "0.0.0.0:0");
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_int_equal(c.node_id, 9);
    assert_int_equal(c.sync, ST_SYNC_INTERVAL);
    assert_int_equal(c.sync_interval_ms, 25);
    assert_int_equal(c.memtable_bytes, 64u << 20);
    assert_int_equal(c.max_key_bytes, 1024);
    assert_int_equal(c.max_concurrent_calls, 5);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.port_file, "/tmp/p");
    const char *const h[] = {"--node-id", "x", "--help", NULL}; /* help wins, nothing checked */
    assert_int_equal(parse(&c, h, &help), ST_OK);
    assert_true(help);
}

static void test_bad_flags(void **state)
{
    (void)state;
    st_node_config c;
    bool help;
    const char *const cases[][3] = {{"--sync", "sometimes", NULL},
                                    {"--node-id", "-1", NULL},
                                    {"--workers", "0", NULL},
                                    {"--max-key-bytes", "65536", NULL},
                                    {"--max-value-bytes", "1G", NULL},
                                    {"--memtable-bytes", "1K", NULL},
                                    {"--max-message-bytes", "4G", NULL},
                                    {"--nope", NULL, NULL},
                                    {"stray", NULL, NULL},
                                    {"--listen", NULL, NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(&c, cases[i], &help), ST_INVALID_ARGUMENT);
        assert_true(strlen(st_errmsg()) > 0);
    }
    const char *const one[] = {"--sync", "sometimes", NULL};
    parse(&c, one, &help);
    assert_non_null(strstr(st_errmsg(), "--sync"));
}

static void test_sizes(void **state)
{
    (void)state;
    size_t v;
    assert_true(st_config_parse_size("4096", &v));
    assert_int_equal(v, 4096);
    assert_true(st_config_parse_size("64K", &v));
    assert_int_equal(v, 65536);
    assert_true(st_config_parse_size("16MiB", &v));
    assert_int_equal(v, 16u << 20);
    assert_true(st_config_parse_size("1g", &v));
    assert_int_equal(v, 1u << 30);
    assert_true(st_config_parse_size("2MB", &v));
    assert_int_equal(v, 2u << 20);
    const char *bad[] = {"", "K", "-1", "12Q", "1KK", "99999999999999999999", "1.5M", "+3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(st_config_parse_size(bad[i], &v));
}

static char *write_ini(const char *dir, const char *text)
{
    char *p = st_test_path(dir, "node.ini");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_file_and_precedence(void **state)
{
    (void)state;
    char *dir = st_test_mkdtemp("config");
    char *p = write_ini(dir, "# comment\nnode_id = 42\n[node]\nsync = none\n"
                             "max-value-bytes = 1M\nlisten = 10.0.0.1:9\n");
    st_node_config c;
    bool help;
    /* --node-id comes before --config on the command line and still wins. */
    const char *const args[] = {"--node-id", "7", "--config", p, NULL};
    assert_int_equal(parse(&c, args, &help), ST_OK);
    assert_int_equal(c.node_id, 7);
    assert_int_equal(c.sync, ST_SYNC_NONE);
    assert_int_equal(c.max_value_bytes, 1u << 20);
    assert_string_equal(c.listen, "10.0.0.1:9");
    free(p);

    p = write_ini(dir, "[node]\nnode_id = 1\nbogus_key = 3\n");
    st_config_defaults(&c);
    assert_int_equal(st_config_load_file(&c, p), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "node.ini:3"));
    assert_non_null(strstr(st_errmsg(), "bogus_key"));
    free(p);

    p = write_ini(dir, "[other]\nnode_id = 1\n");
    assert_int_equal(st_config_load_file(&c, p), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "[other]"));
    free(p);

    p = write_ini(dir, "node_id = lots\n");
    assert_int_equal(st_config_load_file(&c, p), ST_INVALID_ARGUMENT);
    assert_non_null(strstr(st_errmsg(), "node.ini:1"));
    free(p);

    p = write_ini(dir, "this line has no equals sign\n");
    assert_int_equal(st_config_load_file(&c, p), ST_INVALID_ARGUMENT);
    free(p);

    char *missing = st_test_path(dir, "missing.ini");
    assert_int_equal(st_config_load_file(&c, missing), ST_NOT_FOUND);
    free(missing);
    st_test_rmdir(dir);
    free(dir);
}

static void test_usage_lists_every_flag(void **state)
{
    (void)state;
    char buf[8192];
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    st_config_usage(f, "strata-node");
    fclose(f);
    const char *flags[] = {"--listen",
                           "--data-dir",
                           "--node-id",
                           "--sync",
                           "--sync-interval-ms",
                           "--memtable-bytes",
                           "--block-cache-bytes",
                           "--max-key-bytes",
                           "--max-value-bytes",
                           "--max-message-bytes",
                           "--max-concurrent-calls",
                           "--workers",
                           "--config",
                           "--port-file",
                           "--peers",
                           "--heartbeat-ms",
                           "--election-ms",
                           "--wal-retain-bytes",
                           "--default-ack",
                           "--advertise",
                           "--help"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        assert_non_null(strstr(buf, flags[i]));
}

static void test_cluster_settings(void **state)
{
    (void)state;
    st_node_config c;
    bool help;
    st_cluster cl;
    bool clustered = true;
    /* Defaults: standalone, with the cluster timings documented in --help. */
    const char *const none[] = {NULL};
    assert_int_equal(parse(&c, none, &help), ST_OK);
    assert_string_equal(c.peers, "");
    assert_int_equal(c.heartbeat_ms, 30);
    assert_int_equal(c.election_ms, 150);
    assert_int_equal(c.wal_retain_bytes, 256u << 20);
    assert_int_equal(c.default_ack, ST_ACK_MAJORITY);
    assert_int_equal(st_config_cluster(&c, &cl, &clustered), ST_OK);
    assert_false(clustered);
    assert_int_equal(cl.n, 0);

    const char *const args[] = {"--peers",
                                "1=127.0.0.1:7401,2=127.0.0.1:7402,3=127.0.0.1:7403",
                                "--node-id",
                                "2",
                                "--heartbeat-ms",
                                "10",
                                "--election-ms",
                                "100",
                                "--wal-retain-bytes",
                                "64M",
                                "--default-ack",
                                "all",
                                NULL};
    assert_int_equal(parse(&c, args, &help), ST_OK);
    assert_int_equal(c.heartbeat_ms, 10);
    assert_int_equal(c.election_ms, 100);
    assert_int_equal(c.wal_retain_bytes, 64u << 20);
    assert_int_equal(c.default_ack, ST_ACK_ALL);
    assert_int_equal(st_config_cluster(&c, &cl, &clustered), ST_OK);
    assert_true(clustered);
    assert_int_equal(cl.n, 3);
    assert_string_equal(st_cluster_find(&cl, 2)->addr, "127.0.0.1:7402");

    /* One member (this node) is a standalone node. */
    const char *const single[] = {"--peers", "1=127.0.0.1:7401", NULL};
    assert_int_equal(parse(&c, single, &help), ST_OK);
    assert_int_equal(st_config_cluster(&c, &cl, &clustered), ST_OK);
    assert_false(clustered);
    assert_int_equal(cl.n, 1);

    const char *const bad[][5] = {
        {"--peers", "1=a:1,2=b:2", "--node-id", "3", NULL}, /* not a member */
        {"--peers", "1=a:1,1=b:2", NULL},                   /* listed twice */
        {"--peers", "1=nocolon,2=b:2", NULL},               /* no port */
        {"--peers", "x=a:1", NULL},                         /* no id */
        {"--default-ack", "some", NULL},
        {"--heartbeat-ms", "0", NULL},
        {"--heartbeat-ms", "100", "--election-ms", "150", NULL}, /* under twice the heartbeat */
        {"--advertise", "hostonly", NULL},
        {"--advertise", "h:0", NULL},
        {"--advertise", ":7400", NULL},
        {"--advertise", "h:74x", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&c, bad[i], &help), ST_INVALID_ARGUMENT);
        assert_true(strlen(st_errmsg()) > 0);
    }
    parse(&c, bad[0], &help);
    assert_non_null(strstr(st_errmsg(), "--node-id 3"));
    parse(&c, bad[4], &help);
    assert_non_null(strstr(st_errmsg(), "--default-ack"));
    parse(&c, bad[7], &help);
    assert_non_null(strstr(st_errmsg(), "--advertise"));

    /* Where clients reach the node, when not at its --peers address. */
    assert_int_equal(parse(&c, none, &help), ST_OK);
    assert_string_equal(c.advertise, "");
    const char *const adv[] = {"--advertise", "203.0.113.7:17401", NULL};
    assert_int_equal(parse(&c, adv, &help), ST_OK);
    assert_string_equal(c.advertise, "203.0.113.7:17401");

    /* The INI file takes the same keys. */
    char *dir = st_test_mkdtemp("config_cluster");
    char *p = write_ini(dir, "[node]\npeers = 1=h1:1,2=h2:2\nnode_id = 1\nheartbeat_ms = 5\n"
                             "election-ms = 50\ndefault_ack = leader\nwal_retain_bytes = 1M\n");
    const char *const fargs[] = {"--config", p, NULL};
    assert_int_equal(parse(&c, fargs, &help), ST_OK);
    assert_string_equal(c.peers, "1=h1:1,2=h2:2");
    assert_int_equal(c.heartbeat_ms, 5);
    assert_int_equal(c.election_ms, 50);
    assert_int_equal(c.default_ack, ST_ACK_LEADER);
    assert_int_equal(c.wal_retain_bytes, 1u << 20);
    free(p);
    st_test_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_file_and_precedence),
        cmocka_unit_test(test_usage_lists_every_flag),
        cmocka_unit_test(test_cluster_settings),
    };
    return cmocka_run_group_tests_name("node_config", tests, NULL, NULL);
}
