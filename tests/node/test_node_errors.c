/* test_node_errors.c - every error a client can provoke maps to the right gRPC status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "tests/node/node_harness.h"

/* Small limits so that the tests stay small. */
static const char *const limits[] = {
    "--max-key-bytes", "64", "--max-value-bytes", "1024", "--max-message-bytes", "64K", NULL};

static st_node_proc node;
static st_rpc_client *client;

static int setup(void **state)
{
    (void)state;
    st_rpc_init();
    st_node_init(&node, "node_errors");
    if (!st_node_start(&node, limits))
        return -1;
    client = st_rpc_client_create(node.addr, 0);
    return client ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    st_rpc_client_destroy(client);
    int rc = st_node_stop(&node);
    st_node_cleanup(&node);
    grpc_shutdown_blocking();
    return rc == 0 ? 0 : -1;
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

/* Put and return the status; *details (optional) gets a copy of the message. */
static grpc_status_code put_status(const void *k, size_t kl, const void *v, size_t vl,
                                   int64_t timeout_ms, char **details)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin(k, kl);
    q.value = bin(v, vl);
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Put", &q.base, timeout_ms, &r);
    grpc_status_code code = r.code;
    if (details)
        *details = strdup(r.details ? r.details : "");
    st_rpc_result_free(&r);
    return code;
}

static grpc_status_code get_status(const void *k, size_t kl)
{
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin(k, kl);
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Get", &q.base, 5000, &r);
    grpc_status_code code = r.code;
    st_rpc_result_free(&r);
    return code;
}

static void test_empty_key(void **state)
{
    (void)state;
    char *msg;
    assert_int_equal(put_status("", 0, "v", 1, 5000, &msg), GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "key is empty"));
    free(msg);
    assert_int_equal(get_status("", 0), GRPC_STATUS_INVALID_ARGUMENT);
    Strata__V1__DeleteRequest d = STRATA__V1__DELETE_REQUEST__INIT;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Delete", &d.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    st_rpc_result_free(&r);
}

static void test_key_and_value_over_limit(void **state)
{
    (void)state;
    char big[2048];
    memset(big, 'k', sizeof(big));
    char *msg;
    assert_int_equal(put_status(big, 65, "v", 1, 5000, &msg), GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "--max-key-bytes"));
    free(msg);
    assert_int_equal(put_status(big, 64, "v", 1, 5000, NULL), GRPC_STATUS_OK); /* at the limit */
    assert_int_equal(put_status("k", 1, big, 1025, 5000, &msg), GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "--max-value-bytes"));
    free(msg);
    assert_int_equal(put_status("k", 1, big, 1024, 5000, NULL), GRPC_STATUS_OK);
    assert_int_equal(get_status(big, 65), GRPC_STATUS_INVALID_ARGUMENT);

    /* In a Write, one bad mutation names its index and nothing is written. */
    Strata__V1__Mutation m[2], *mp[2] = {&m[0], &m[1]};
    Strata__V1__Mutation__Put p[2];
    for (int i = 0; i < 2; i++) {
        strata__v1__mutation__init(&m[i]);
        strata__v1__mutation__put__init(&p[i]);
        m[i].op_case = STRATA__V1__MUTATION__OP_PUT;
        m[i].put = &p[i];
    }
    p[0].key = bin("ok-key", 6);
    p[1].key = bin("k2", 2);
    p[1].value = bin(big, 1025);
    Strata__V1__WriteRequest w = STRATA__V1__WRITE_REQUEST__INIT;
    w.mutations = mp;
    w.n_mutations = 2;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Write", &w.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(r.details, "mutation 1"));
    st_rpc_result_free(&r);
    assert_int_equal(get_status("ok-key", 6), GRPC_STATUS_NOT_FOUND);

    /* Scan bounds are keys too. */
    Strata__V1__ScanRequest s = STRATA__V1__SCAN_REQUEST__INIT;
    s.start = bin(big, 100);
    size_t len = strata__v1__scan_request__get_packed_size(&s);
    uint8_t buf[256];
    strata__v1__scan_request__pack(&s, buf);
    st_rpc_stream *st = st_rpc_stream_open(client, "/strata.v1.KV/Scan", buf, len, 5000);
    uint8_t *msg2;
    size_t mlen;
    assert_false(st_rpc_stream_next(st, &msg2, &mlen));
    st_rpc_stream_close(st, &r);
    assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    st_rpc_result_free(&r);
}

static void test_message_over_limit(void **state)
{
    (void)state;
    /* 70 KB is over --max-message-bytes 64K: gRPC itself refuses it. */
    size_t n = 70 * 1024;
    char *big = malloc(n);
    memset(big, 'v', n);
    assert_int_equal(put_status("k", 1, big, n, 5000, NULL), GRPC_STATUS_RESOURCE_EXHAUSTED);
    free(big);
    /* The node is fine afterwards. */
    assert_int_equal(put_status("after", 5, "x", 1, 5000, NULL), GRPC_STATUS_OK);
}

static void test_garbage_and_missing_request(void **state)
{
    (void)state;
    const char *methods[] = {"/strata.v1.KV/Put", "/strata.v1.KV/Get", "/strata.v1.KV/Delete",
                             "/strata.v1.KV/Write", "/strata.v1.Admin/Status"};
    /* A field header announcing 127 bytes that never come: not a protobuf message. */
    const uint8_t garbage[] = {0x0a, 0x7f, 0xff, 0xff, 0x01};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        st_rpc_result r;
        st_rpc_unary(client, methods[i], garbage, sizeof(garbage), true, 5000, &r);
        assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(r.details, "parse"));
        st_rpc_result_free(&r);
        st_rpc_unary(client, methods[i], NULL, 0, false, 5000, &r);
        assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(r.details, "no request message"));
        st_rpc_result_free(&r);
    }
    st_rpc_stream *s =
        st_rpc_stream_open(client, "/strata.v1.KV/Scan", garbage, sizeof(garbage), 5000);
    uint8_t *m;
    size_t ml;
    assert_false(st_rpc_stream_next(s, &m, &ml));
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    assert_int_equal(r.code, GRPC_STATUS_INVALID_ARGUMENT);
    st_rpc_result_free(&r);
}

static void test_expired_deadline(void **state)
{
    (void)state;
    /* A deadline already past: DEADLINE_EXCEEDED, and nothing is written. */
    assert_int_equal(put_status("late", 4, "x", 1, 0, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(get_status("late", 4), GRPC_STATUS_NOT_FOUND);
}

static void test_unknown_method(void **state)
{
    (void)state;
    const char *paths[] = {"/strata.v1.KV/Nope", "/no.such.Service/Call", "/x"};
    for (size_t i = 0; i < 3; i++) {
        st_rpc_result r;
        st_rpc_unary(client, paths[i], (const uint8_t *)"", 0, true, 5000, &r);
        assert_int_equal(r.code, GRPC_STATUS_UNIMPLEMENTED);
        assert_non_null(strstr(r.details, paths[i]));
        st_rpc_result_free(&r);
    }
}

typedef struct parked_get {
    const char *addr;
    grpc_status_code code;
} parked_get;

static void *parked_get_main(void *p)
{
    parked_get *g = p;
    st_rpc_client *c = st_rpc_client_create(g->addr, 0);
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin("k", 1);
    q.min_seq = 1u << 30; /* never reached: the call waits until the node stops */
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Get", &q.base, 30000, &r);
    g->code = r.code;
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    return NULL;
}

/* strata.v1.KV calls in progress, from Admin/Status (which is not counted itself). */
static uint32_t active_calls(st_rpc_client *c)
{
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.Admin/Status", &q.base, 5000, &r);
    uint32_t n = 0;
    if (r.code == GRPC_STATUS_OK) {
        Strata__V1__StatusResponse *p =
            strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
        n = p ? p->active_calls : 0;
        strata__v1__status_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return n;
}

static void test_too_many_concurrent_calls(void **state)
{
    (void)state;
    st_node_proc n2;
    st_node_init(&n2, "node_limit");
    const char *const args[] = {"--max-concurrent-calls", "2", NULL};
    assert_true(st_node_start(&n2, args));
    st_rpc_client *c = st_rpc_client_create(n2.addr, 0);
    pthread_t th[2];
    parked_get g[2] = {{n2.addr, GRPC_STATUS_OK}, {n2.addr, GRPC_STATUS_OK}};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, parked_get_main, &g[i]);
    /* Wait until both Gets are parked: the node is then at its limit. */
    uint32_t active = 0;
    for (int i = 0; i < 1000 && active < 2; i++) {
        active = active_calls(c);
        if (active < 2)
            usleep(10000);
    }
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin("k", 1);
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Put", &q.base, 5000, &r);
    grpc_status_code put_code = r.code;
    bool names_flag = r.details && strstr(r.details, "--max-concurrent-calls") != NULL;
    st_rpc_result_free(&r);
    /* Health and Admin are not counted: they still answer. */
    uint32_t still = active_calls(c);
    uint8_t empty[1];
    st_rpc_unary(c, "/grpc.health.v1.Health/Check", empty, 0, true, 5000, &r);
    grpc_status_code health_code = r.code;
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    /* Stopping the node answers the parked Gets (UNAVAILABLE); only then check, so that a
       failure leaves nothing running. */
    int rc = st_node_stop(&n2);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    st_node_cleanup(&n2);
    assert_int_equal(active, 2);
    assert_int_equal(put_code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_true(names_flag);
    assert_int_equal(health_code, GRPC_STATUS_OK);
    assert_int_equal(still, 2);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(g[i].code, GRPC_STATUS_UNAVAILABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_key_and_value_over_limit),
        cmocka_unit_test(test_message_over_limit),
        cmocka_unit_test(test_garbage_and_missing_request),
        cmocka_unit_test(test_expired_deadline),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_too_many_concurrent_calls),
    };
    return cmocka_run_group_tests_name("node_errors", tests, setup, teardown);
}
