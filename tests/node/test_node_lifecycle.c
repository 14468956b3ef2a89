/* test_node_lifecycle.c - start, stop, restart, conflicts, flags and config file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "tests/node/node_harness.h"
#include "tests/support/testutil.h"

static int setup(void **state)
{
    (void)state;
    st_rpc_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    grpc_shutdown_blocking();
    return 0;
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

static grpc_status_code put(st_rpc_client *c, const char *k, const char *v)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin(k, strlen(k));
    q.value = bin(v, strlen(v));
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Put", &q.base, 5000, &r);
    grpc_status_code code = r.code;
    st_rpc_result_free(&r);
    return code;
}

/* Get k and compare with v (NULL: expect NOT_FOUND). */
static void expect(st_rpc_client *c, const char *k, const char *v)
{
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin(k, strlen(k));
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Get", &q.base, 5000, &r);
    if (!v) {
        assert_int_equal(r.code, GRPC_STATUS_NOT_FOUND);
    } else {
        assert_int_equal(r.code, GRPC_STATUS_OK);
        Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        assert_int_equal(p->value.len, strlen(v));
        assert_memory_equal(p->value.data, v, strlen(v));
        strata__v1__get_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
}

static Strata__V1__StatusResponse *status(st_rpc_client *c)
{
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.Admin/Status", &q.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Strata__V1__StatusResponse *p = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
    st_rpc_result_free(&r);
    assert_non_null(p);
    return p;
}

static void test_restart_keeps_data(void **state)
{
    (void)state;
    st_node_proc n;
    st_node_init(&n, "node_restart");
    const char *const sync_always[] = {"--sync", "always", NULL};
    assert_true(st_node_start(&n, sync_always));
    char *log = st_node_log(&n);
    assert_non_null(strstr(log, "listening addr=127.0.0.1:"));
    free(log);
    st_rpc_client *c = st_rpc_client_create(n.addr, 0);
    char k[32], v[32];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "r/%02d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        assert_int_equal(put(c, k, v), GRPC_STATUS_OK);
    }
    Strata__V1__StatusResponse *s = status(c);
    uint64_t last = s->last_seq;
    strata__v1__status_response__free_unpacked(s, NULL);
    st_rpc_client_destroy(c);
    /* SIGTERM: a clean stop, exit 0. */
    assert_int_equal(st_node_stop(&n), 0);
    log = st_node_log(&n);
    assert_non_null(strstr(log, "shutdown signal=SIGTERM"));
    assert_non_null(strstr(log, "stopped status=0"));
    free(log);

    /* Same data directory, new process (and a new port): every key is there. */
    assert_true(st_node_start(&n, NULL));
    c = st_rpc_client_create(n.addr, 0);
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "r/%02d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        expect(c, k, v);
    }
    s = status(c);
    assert_true(s->last_seq >= last);
    strata__v1__status_response__free_unpacked(s, NULL);
    st_rpc_client_destroy(c);
    /* SIGINT stops it cleanly too. */
    kill(n.pid, SIGINT);
    assert_true(st_node_wait(&n, 20000));
    assert_int_equal(n.exit_status, 0);
    st_node_cleanup(&n);
}

static void test_second_node_same_port_fails(void **state)
{
    (void)state;
    st_node_proc a, b;
    st_node_init(&a, "node_port_a");
    st_node_init(&b, "node_port_b");
    assert_true(st_node_start(&a, NULL));
    const char *const args[] = {"--listen", a.addr, NULL};
    assert_false(st_node_start(&b, args));
    assert_int_equal(b.exit_status, 1);
    char *log = st_node_log(&b);
    assert_non_null(strstr(log, "cannot listen on"));
    assert_non_null(strstr(log, a.addr));
    free(log);
    /* The first node is unharmed. */
    st_rpc_client *c = st_rpc_client_create(a.addr, 0);
    assert_int_equal(put(c, "still", "here"), GRPC_STATUS_OK);
    st_rpc_client_destroy(c);
    assert_int_equal(st_node_stop(&a), 0);
    st_node_cleanup(&a);
    st_node_cleanup(&b);
}

static void test_second_node_same_data_dir_fails(void **state)
{
    (void)state;
    st_node_proc a, b;
    st_node_init(&a, "node_dir_a");
    st_node_init(&b, "node_dir_b");
    free(b.data_dir);
    b.data_dir = strdup(a.data_dir);
    assert_true(st_node_start(&a, NULL));
    assert_false(st_node_start(&b, NULL));
    assert_int_equal(b.exit_status, 1);
    char *log = st_node_log(&b);
    assert_non_null(strstr(log, "locked"));
    free(log);
    assert_int_equal(st_node_stop(&a), 0);
    st_node_cleanup(&a);
    st_node_cleanup(&b);
}

typedef struct parked {
    const char *addr;
    grpc_status_code code;
} parked;

static void *parked_get(void *p)
{
    parked *g = p;
    st_rpc_client *c = st_rpc_client_create(g->addr, 0);
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin("k", 1);
    q.min_seq = 1u << 30;
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Get", &q.base, 15000, &r);
    g->code = r.code;
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    return NULL;
}

static void test_shutdown_answers_waiting_calls(void **state)
{
    (void)state;
    st_node_proc n;
    st_node_init(&n, "node_drain");
    assert_true(st_node_start(&n, NULL));
    parked g = {n.addr, GRPC_STATUS_OK};
    pthread_t th;
    pthread_create(&th, NULL, parked_get, &g);
    usleep(300 * 1000);
    int rc = st_node_stop(&n);
    pthread_join(th, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(g.code, GRPC_STATUS_UNAVAILABLE);
    st_node_cleanup(&n);
}

static void test_config_file_and_flags(void **state)
{
    (void)state;
    st_node_proc n;
    st_node_init(&n, "node_config");
    char *conf = st_test_path(n.dir, "node.ini");
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "; strata-node settings\n[node]\nnode_id = 42\nmax-key-bytes = 16\n"
               "memtable_bytes = 1M\n");
    fclose(f);
    const char *const args[] = {"--config", conf, "--node-id", "7", NULL};
    assert_true(st_node_start(&n, args));
    st_rpc_client *c = st_rpc_client_create(n.addr, 0);
    Strata__V1__StatusResponse *s = status(c);
    assert_int_equal(s->node_id, 7); /* the flag wins over the file */
    strata__v1__status_response__free_unpacked(s, NULL);
    assert_int_equal(put(c, "0123456789abcdef", "v"), GRPC_STATUS_OK); /* 16: the file's limit */
    assert_int_equal(put(c, "0123456789abcdefg", "v"), GRPC_STATUS_INVALID_ARGUMENT);
    st_rpc_client_destroy(c);
    assert_int_equal(st_node_stop(&n), 0);

    /* A bad key in the file: usage error naming file and line. */
    f = fopen(conf, "w");
    fprintf(f, "[node]\nnode_id = 1\nno_such_setting = 3\n");
    fclose(f);
    const char *const bad[] = {"--config", conf, NULL};
    char *out, *err;
    assert_int_equal(st_run_bin(st_node_bin(), bad, NULL, 0, &out, NULL, &err), 2);
    assert_non_null(strstr(err, "node.ini:3"));
    assert_non_null(strstr(err, "no_such_setting"));
    free(out);
    free(err);
    free(conf);
    st_node_cleanup(&n);
}

static void test_usage(void **state)
{
    (void)state;
    char *out, *err;
    const char *const help[] = {"--help", NULL};
    assert_int_equal(st_run_bin(st_node_bin(), help, NULL, 0, &out, NULL, &err), 0);
    const char *flags[] = {"--listen",
                           "--data-dir",
                           "--node-id",
                           "--sync ",
                           "--sync-interval-ms",
                           "--memtable-bytes",
                           "--block-cache-bytes",
                           "--max-key-bytes",
                           "--max-value-bytes",
                           "--max-message-bytes",
                           "--max-concurrent-calls",
                           "--workers",
                           "--config",
                           "--port-file"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (!strstr(out, flags[i]))
            fail_msg("--help does not document %s", flags[i]);
    }
    free(out);
    free(err);
    const char *const cases[][3] = {{"--bogus", NULL, NULL},
                                    {"--sync", "sometimes", NULL},
                                    {"--max-key-bytes", "100000", NULL},
                                    {"--memtable-bytes", "12Q", NULL},
                                    {"extra-arg", NULL, NULL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(st_run_bin(st_node_bin(), cases[i], NULL, 0, &out, NULL, &err), 2);
        assert_non_null(strstr(err, "strata-node: "));
        free(out);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_keeps_data),
        cmocka_unit_test(test_second_node_same_port_fails),
        cmocka_unit_test(test_second_node_same_data_dir_fails),
        cmocka_unit_test(test_shutdown_answers_waiting_calls),
        cmocka_unit_test(test_config_file_and_flags),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests_name("node_lifecycle", tests, setup, teardown);
}
