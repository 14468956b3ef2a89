/* test_node_streams.c - streams: Scan cancel, 1,000 concurrent Watches, health, reflection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "tests/node/node_harness.h"

static st_node_proc node;
static st_rpc_client *client;

static int setup(void **state)
{
    (void)state;
    st_rpc_init();
    st_node_init(&node, "node_streams");
    if (!st_node_start(&node, NULL))
        return -1;
    client = st_rpc_client_create(node.addr, 0);
    return client ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    st_rpc_client_destroy(client);
    int rc = st_node_stop(&node);
    if (rc != 0) {
        char *log = st_node_log(&node);
        fprintf(stderr, "strata-node exited %d:\n%s\n", rc, log);
        free(log);
    }
    st_node_cleanup(&node);
    grpc_shutdown_blocking();
    return rc == 0 ? 0 : -1;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len + 1);
    protobuf_c_message_pack(m, b);
    return b;
}

static grpc_byte_buffer *buffer_of(const uint8_t *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static uint8_t *bytes_of(grpc_byte_buffer *bb, size_t *n)
{
    grpc_byte_buffer_reader r;
    grpc_byte_buffer_reader_init(&r, bb);
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *n = GRPC_SLICE_LENGTH(s);
    uint8_t *p = malloc(*n + 1);
    memcpy(p, GRPC_SLICE_START_PTR(s), *n);
    grpc_slice_unref(s);
    return p;
}

static grpc_status_code health_check(const char *service)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    st_rpc_result r;
    st_call_msg(client, "/grpc.health.v1.Health/Check", &q.base, 5000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Grpc__Health__V1__HealthCheckResponse *p =
            grpc__health__v1__health_check_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        assert_int_equal(p->status,
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        grpc__health__v1__health_check_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return code;
}

static int watch_status(const uint8_t *msg, size_t len)
{
    Grpc__Health__V1__HealthCheckResponse *p =
        grpc__health__v1__health_check_response__unpack(NULL, len, msg);
    assert_non_null(p);
    int st = p->status;
    grpc__health__v1__health_check_response__free_unpacked(p, NULL);
    return st;
}

static st_rpc_stream *open_watch(st_rpc_client *c, const char *service, int64_t timeout_ms)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    size_t len;
    uint8_t *b = pack(&q.base, &len);
    st_rpc_stream *s = st_rpc_stream_open(c, "/grpc.health.v1.Health/Watch", b, len, timeout_ms);
    free(b);
    return s;
}

static void test_health_check_and_watch(void **state)
{
    (void)state;
    assert_int_equal(health_check(""), GRPC_STATUS_OK);
    assert_int_equal(health_check("strata.v1.KV"), GRPC_STATUS_OK);
    assert_int_equal(health_check("no.such.Service"), GRPC_STATUS_NOT_FOUND);

    /* Watch sends the status at once and stays open. */
    st_rpc_stream *s = open_watch(client, "strata.v1.KV", 1500);
    uint8_t *m;
    size_t ml;
    assert_true(st_rpc_stream_next(s, &m, &ml));
    assert_int_equal(watch_status(m, ml),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    free(m);
    assert_false(st_rpc_stream_next(s, &m, &ml)); /* nothing more until the deadline */
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    assert_int_equal(r.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    st_rpc_result_free(&r);

    /* An unknown service: SERVICE_UNKNOWN, and the stream still stays open. */
    s = open_watch(client, "no.such.Service", 1000);
    assert_true(st_rpc_stream_next(s, &m, &ml));
    assert_int_equal(watch_status(m, ml),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
    free(m);
    assert_false(st_rpc_stream_next(s, &m, &ml));
    st_rpc_stream_close(s, &r);
    assert_int_equal(r.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    st_rpc_result_free(&r);
}

static void test_watch_sees_shutdown(void **state)
{
    (void)state;
    st_node_proc n2;
    st_node_init(&n2, "node_watch");
    assert_true(st_node_start(&n2, NULL));
    st_rpc_client *c = st_rpc_client_create(n2.addr, 0);
    st_rpc_stream *s = open_watch(c, "", 20000);
    uint8_t *m;
    size_t ml;
    assert_true(st_rpc_stream_next(s, &m, &ml));
    assert_int_equal(watch_status(m, ml),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    free(m);
    kill(n2.pid, SIGTERM);
    assert_true(st_rpc_stream_next(s, &m, &ml));
    assert_int_equal(watch_status(m, ml),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    free(m);
    assert_false(st_rpc_stream_next(s, &m, &ml));
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    assert_int_equal(r.code, GRPC_STATUS_UNAVAILABLE);
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    assert_true(st_node_wait(&n2, 20000));
    assert_int_equal(n2.exit_status, 0);
    st_node_cleanup(&n2);
}

static void test_scan_cancelled_midway(void **state)
{
    (void)state;
    /* 3,000 pairs of 1 KiB: many messages; the client reads one and cancels. */
    static Strata__V1__Mutation m[500], *mp[500];
    static Strata__V1__Mutation__Put p[500];
    static char keys[500][16];
    char val[1024];
    memset(val, 'v', sizeof(val));
    for (int batch = 0; batch < 6; batch++) {
        for (int i = 0; i < 500; i++) {
            snprintf(keys[i], sizeof(keys[i]), "big/%05d", batch * 500 + i);
            strata__v1__mutation__init(&m[i]);
            strata__v1__mutation__put__init(&p[i]);
            p[i].key.data = (uint8_t *)keys[i];
            p[i].key.len = strlen(keys[i]);
            p[i].value.data = (uint8_t *)val;
            p[i].value.len = sizeof(val);
            m[i].op_case = STRATA__V1__MUTATION__OP_PUT;
            m[i].put = &p[i];
            mp[i] = &m[i];
        }
        Strata__V1__WriteRequest w = STRATA__V1__WRITE_REQUEST__INIT;
        w.mutations = mp;
        w.n_mutations = 500;
        st_rpc_result r;
        st_call_msg(client, "/strata.v1.KV/Write", &w.base, 10000, &r);
        assert_int_equal(r.code, GRPC_STATUS_OK);
        st_rpc_result_free(&r);
    }
    for (int round = 0; round < 5; round++) {
        Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
        size_t len;
        uint8_t *b = pack(&q.base, &len);
        st_rpc_stream *s = st_rpc_stream_open(client, "/strata.v1.KV/Scan", b, len, 10000);
        free(b);
        uint8_t *msg;
        size_t ml;
        assert_true(st_rpc_stream_next(s, &msg, &ml));
        Strata__V1__ScanResponse *sr = strata__v1__scan_response__unpack(NULL, ml, msg);
        assert_non_null(sr);
        assert_true(sr->n_pairs > 0 && sr->n_pairs <= 256);
        strata__v1__scan_response__free_unpacked(sr, NULL);
        free(msg);
        st_rpc_stream_cancel(s);
        st_rpc_result r;
        st_rpc_stream_close(s, &r);
        assert_int_equal(r.code, GRPC_STATUS_CANCELLED);
        st_rpc_result_free(&r);
    }
    /* The node goes on serving, and a full scan still sees everything. */
    Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
    q.start.data = (uint8_t *)"big/";
    q.start.len = 4;
    size_t len;
    uint8_t *b = pack(&q.base, &len);
    st_rpc_stream *s = st_rpc_stream_open(client, "/strata.v1.KV/Scan", b, len, 10000);
    free(b);
    uint8_t *msg;
    size_t ml, total = 0;
    while (st_rpc_stream_next(s, &msg, &ml)) {
        Strata__V1__ScanResponse *sr = strata__v1__scan_response__unpack(NULL, ml, msg);
        total += sr->n_pairs;
        strata__v1__scan_response__free_unpacked(sr, NULL);
        free(msg);
    }
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    assert_int_equal(total, 3000);
    st_rpc_result_free(&r);
}

/* 1,000 Watch streams at once on one connection, all answered, then all cancelled. */
#if defined(__SANITIZE_THREAD__)
/* Under TSan, Debian's uninstrumented gRPC slows to a crawl and stalls connections after
   1,000 streams (no race in strata's code is reported); the full count runs in every other
   build. */
#define NSTREAMS 100
#else
#define NSTREAMS 1000
#endif

typedef struct stream_slot {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code code;
    grpc_slice details;
    int events; /* completions seen */
} stream_slot;

static void test_thousand_concurrent_streams(void **state)
{
    (void)state;
    /* A connection of its own, closed at the end, like a separate client process. */
    char *target = st_rpc_target(node.addr);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg arg = {GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
    grpc_channel_args args = {1, &arg};
    grpc_channel *ch = grpc_channel_create(target, creds, &args);
    grpc_channel_credentials_release(creds);
    free(target);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    stream_slot *slots = calloc(NSTREAMS, sizeof(*slots));
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = "";
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(60, GPR_TIMESPAN));
    grpc_slice method = grpc_slice_from_static_string("/grpc.health.v1.Health/Watch");
    /* Tag = slot index * 4 + kind (1: start+first message, 2: status). */
    for (int i = 0; i < NSTREAMS; i++) {
        stream_slot *sl = &slots[i];
        sl->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                            deadline, NULL);
        sl->send = buffer_of(req, len);
        grpc_metadata_array_init(&sl->imd);
        grpc_metadata_array_init(&sl->tmd);
        grpc_op ops[5];
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = sl->send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &sl->imd;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &sl->recv;
        assert_int_equal(
            grpc_call_start_batch(sl->call, ops, 5, (void *)(intptr_t)(i * 4 + 1), NULL),
            GRPC_CALL_OK);
        grpc_op st;
        memset(&st, 0, sizeof(st));
        st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        st.data.recv_status_on_client.trailing_metadata = &sl->tmd;
        st.data.recv_status_on_client.status = &sl->code;
        st.data.recv_status_on_client.status_details = &sl->details;
        assert_int_equal(
            grpc_call_start_batch(sl->call, &st, 1, (void *)(intptr_t)(i * 4 + 2), NULL),
            GRPC_CALL_OK);
    }
    free(req);
    int answered = 0, statuses = 0;
    while (answered < NSTREAMS) {
        grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
        assert_int_equal(ev.type, GRPC_OP_COMPLETE);
        intptr_t t = (intptr_t)ev.tag;
        stream_slot *sl = &slots[t / 4];
        if (t % 4 == 2) {
            statuses++; /* a stream ended early: should not happen */
            fprintf(stderr, "stream %ld ended: %d\n", (long)(t / 4), sl->code);
            continue;
        }
        assert_true(ev.success);
        assert_non_null(sl->recv);
        size_t n;
        uint8_t *b = bytes_of(sl->recv, &n);
        assert_int_equal(watch_status(b, n),
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        free(b);
        answered++;
    }
    assert_int_equal(statuses, 0);
    for (int i = 0; i < NSTREAMS; i++)
        grpc_call_cancel(slots[i].call, NULL);
    while (statuses < NSTREAMS) {
        grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
        assert_int_equal(ev.type, GRPC_OP_COMPLETE);
        intptr_t t = (intptr_t)ev.tag;
        if (t % 4 == 2) {
            assert_int_equal(slots[t / 4].code, GRPC_STATUS_CANCELLED);
            statuses++;
        }
    }
    for (int i = 0; i < NSTREAMS; i++) {
        stream_slot *sl = &slots[i];
        grpc_byte_buffer_destroy(sl->send);
        grpc_byte_buffer_destroy(sl->recv);
        grpc_metadata_array_destroy(&sl->imd);
        grpc_metadata_array_destroy(&sl->tmd);
        grpc_slice_unref(sl->details);
        grpc_call_unref(sl->call);
    }
    free(slots);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    /* The node is still healthy. */
    assert_int_equal(health_check(""), GRPC_STATUS_OK);
}

/* ---- reflection -------------------------------------------------------------------------- */

/* Send each request in turn on one ServerReflectionInfo stream, read each response. */
static Grpc__Reflection__V1alpha__ServerReflectionResponse **
reflect(const char *method, Grpc__Reflection__V1alpha__ServerReflectionRequest **reqs, size_t n,
        grpc_status_code *final)
{
    char *target = st_rpc_target(node.addr);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    free(target);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(10, GPR_TIMESPAN));
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                 grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &imd;
    assert_int_equal(grpc_call_start_batch(call, ops, 2, (void *)1, NULL), GRPC_CALL_OK);
    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &tmd;
    st.data.recv_status_on_client.status = &code;
    st.data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(call, &st, 1, (void *)2, NULL), GRPC_CALL_OK);
    Grpc__Reflection__V1alpha__ServerReflectionResponse **out = calloc(n + 1, sizeof(*out));
    bool status_seen = false;
    for (size_t i = 0; i <= n; i++) {
        grpc_op op[2];
        memset(op, 0, sizeof(op));
        grpc_byte_buffer *send = NULL, *recv = NULL;
        size_t k = 0;
        if (i < n) {
            size_t len;
            uint8_t *b = pack(&reqs[i]->base, &len);
            send = buffer_of(b, len);
            free(b);
            op[k].op = GRPC_OP_SEND_MESSAGE;
            op[k++].data.send_message.send_message = send;
        } else {
            op[k++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        }
        assert_int_equal(grpc_call_start_batch(call, op, k, (void *)3, NULL), GRPC_CALL_OK);
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
            assert_int_equal(ev.type, GRPC_OP_COMPLETE);
            if (ev.tag == (void *)2)
                status_seen = true;
            if (ev.tag == (void *)3)
                break;
        }
        if (send)
            grpc_byte_buffer_destroy(send);
        if (i == n)
            break;
        memset(op, 0, sizeof(op));
        op[0].op = GRPC_OP_RECV_MESSAGE;
        op[0].data.recv_message.recv_message = &recv;
        assert_int_equal(grpc_call_start_batch(call, op, 1, (void *)4, NULL), GRPC_CALL_OK);
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
            assert_int_equal(ev.type, GRPC_OP_COMPLETE);
            if (ev.tag == (void *)2)
                status_seen = true;
            if (ev.tag == (void *)4)
                break;
        }
        assert_non_null(recv);
        size_t len;
        uint8_t *b = bytes_of(recv, &len);
        grpc_byte_buffer_destroy(recv);
        out[i] = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, len, b);
        free(b);
        assert_non_null(out[i]);
    }
    while (!status_seen) {
        grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
        assert_int_equal(ev.type, GRPC_OP_COMPLETE);
        if (ev.tag == (void *)2)
            status_seen = true;
    }
    *final = code;
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    return out;
}

/* Field 1 (name) of a serialized FileDescriptorProto. */
static char *file_name(ProtobufCBinaryData fd)
{
    /* The name is the first field protoc writes: tag 0x0a, a one-byte length here. */
    if (fd.len < 2 || fd.data[0] != 0x0a || fd.data[1] >= 0x80 || (size_t)fd.data[1] + 2 > fd.len)
        return strdup("?");
    char *s = malloc(fd.data[1] + 1u);
    memcpy(s, fd.data + 2, fd.data[1]);
    s[fd.data[1]] = '\0';
    return s;
}

static void check_reflection(const char *method)
{
    Grpc__Reflection__V1alpha__ServerReflectionRequest r[6];
    Grpc__Reflection__V1alpha__ServerReflectionRequest *rp[6];
    for (int i = 0; i < 6; i++) {
        grpc__reflection__v1alpha__server_reflection_request__init(&r[i]);
        rp[i] = &r[i];
    }
    r[0].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    r[0].list_services = "";
    r[1].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[1].file_containing_symbol = "strata.v1.KV";
    r[2].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[2].file_containing_symbol = "strata.v1.StatusResponse";
    r[3].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[3].file_containing_symbol = "no.such.Symbol";
    r[4].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    r[4].file_by_filename = "grpc/health/v1/health.proto";
    r[5].message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[5].file_containing_symbol = "strata.v1.KV.Put"; /* a method */
    grpc_status_code final;
    Grpc__Reflection__V1alpha__ServerReflectionResponse **out = reflect(method, rp, 6, &final);
    assert_int_equal(final, GRPC_STATUS_OK);

    /* list_services: ours and the standard ones. */
    assert_int_equal(
        out[0]->message_response_case,
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    const char *want[] = {"strata.v1.KV", "strata.v1.Admin", "grpc.health.v1.Health",
                          "grpc.reflection.v1alpha.ServerReflection",
                          "grpc.reflection.v1.ServerReflection"};
    for (size_t w = 0; w < 5; w++) {
        bool found = false;
        for (size_t i = 0; i < out[0]->list_services_response->n_service; i++)
            found |= strcmp(out[0]->list_services_response->service[i]->name, want[w]) == 0;
        assert_true(found);
    }
    /* Exactly the services served: no more (the descriptor set may describe others). */
    assert_int_equal(out[0]->list_services_response->n_service, 5);
    /* file_containing_symbol: the declaring file first. */
    const char *files[] = {NULL, "strata/v1/kv.proto",          "strata/v1/admin.proto",
                           NULL, "grpc/health/v1/health.proto", "strata/v1/kv.proto"};
    for (int i = 1; i < 6; i++) {
        if (!files[i])
            continue;
        assert_int_equal(
            out[i]->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        assert_true(out[i]->file_descriptor_response->n_file_descriptor_proto >= 1);
        char *name = file_name(out[i]->file_descriptor_response->file_descriptor_proto[0]);
        assert_string_equal(name, files[i]);
        free(name);
        assert_non_null(out[i]->original_request);
    }
    /* An unknown symbol: an error response, and the stream goes on. */
    assert_int_equal(
        out[3]->message_response_case,
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(out[3]->error_response->error_code, GRPC_STATUS_NOT_FOUND);
    for (int i = 0; i < 6; i++)
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(out[i], NULL);
    free(out);
}

static void test_reflection_v1alpha(void **state)
{
    (void)state;
    check_reflection("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
}

static void test_reflection_v1(void **state)
{
    (void)state;
    check_reflection("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_check_and_watch),
        cmocka_unit_test(test_watch_sees_shutdown),
        cmocka_unit_test(test_scan_cancelled_midway),
        cmocka_unit_test(test_thousand_concurrent_streams),
        cmocka_unit_test(test_reflection_v1alpha),
        cmocka_unit_test(test_reflection_v1),
    };
    if (getenv("ST_TEST_FILTER")) /* e.g. ST_TEST_FILTER='test_reflection*' */
        cmocka_set_test_filter(getenv("ST_TEST_FILTER"));
    return cmocka_run_group_tests_name("node_streams", tests, setup, teardown);
}
