/* test_node_kv.c - strata.v1.KV and Admin end to end: a real strata-node, the C core client. */
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

#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "tests/node/node_harness.h"
#include "tests/support/testutil.h"

static st_node_proc node;
static st_rpc_client *client;

static int setup(void **state)
{
    (void)state;
    st_rpc_init();
    st_node_init(&node, "node_kv");
    if (!st_node_start(&node, NULL)) {
        char *log = st_node_log(&node);
        fprintf(stderr, "strata-node did not start (exit %d):\n%s\n", node.exit_status, log);
        free(log);
        return -1;
    }
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

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

static grpc_status_code put(st_rpc_client *c, const void *k, size_t kl, const void *v, size_t vl,
                            uint64_t *seq)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin(k, kl);
    q.value = bin(v, vl);
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Put", &q.base, 10000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__PutResponse *p = strata__v1__put_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        if (seq)
            *seq = p->seq;
        strata__v1__put_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return code;
}

/* Get key; on OK *val (malloc'd) and *vl. */
static grpc_status_code get(const void *k, size_t kl, uint64_t min_seq, int64_t timeout_ms,
                            uint8_t **val, size_t *vl, uint64_t *seq)
{
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin(k, kl);
    q.min_seq = min_seq;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Get", &q.base, timeout_ms, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        if (val) {
            *val = malloc(p->value.len + 1);
            if (p->value.len)
                memcpy(*val, p->value.data, p->value.len);
            *vl = p->value.len;
        }
        if (seq)
            *seq = p->seq;
        strata__v1__get_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return code;
}

static grpc_status_code del(const void *k, size_t kl, uint64_t *seq)
{
    Strata__V1__DeleteRequest q = STRATA__V1__DELETE_REQUEST__INIT;
    q.key = bin(k, kl);
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Delete", &q.base, 10000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__DeleteResponse *p =
            strata__v1__delete_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        *seq = p->seq;
        strata__v1__delete_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return code;
}

/* A scan's result: pairs flattened, the messages count, every message's seq equal. */
typedef struct scan_out {
    grpc_status_code code;
    size_t n;
    char **keys; /* NUL-terminated copies (test keys are text) */
    size_t *klen;
    uint8_t **vals;
    size_t *vlen;
    size_t messages;
    uint64_t seq;
} scan_out;

static void scan(const char *start, const char *end, uint64_t limit, bool reverse, uint64_t min_seq,
                 int64_t timeout_ms, scan_out *o)
{
    memset(o, 0, sizeof(*o));
    Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
    q.start = bin(start, start ? strlen(start) : 0);
    q.end = bin(end, end ? strlen(end) : 0);
    q.limit = limit;
    q.reverse = reverse;
    q.min_seq = min_seq;
    size_t len = strata__v1__scan_request__get_packed_size(&q);
    uint8_t *buf = malloc(len + 1);
    strata__v1__scan_request__pack(&q, buf);
    st_rpc_stream *s = st_rpc_stream_open(client, "/strata.v1.KV/Scan", buf, len, timeout_ms);
    free(buf);
    assert_non_null(s);
    uint8_t *msg;
    size_t mlen;
    size_t cap = 0;
    while (st_rpc_stream_next(s, &msg, &mlen)) {
        Strata__V1__ScanResponse *p = strata__v1__scan_response__unpack(NULL, mlen, msg);
        free(msg);
        assert_non_null(p);
        if (o->messages == 0)
            o->seq = p->seq;
        assert_true(p->seq == o->seq); /* one snapshot for the whole scan */
        o->messages++;
        for (size_t i = 0; i < p->n_pairs; i++) {
            if (o->n == cap) {
                cap = cap ? cap * 2 : 64;
                o->keys = realloc(o->keys, cap * sizeof(char *));
                o->klen = realloc(o->klen, cap * sizeof(size_t));
                o->vals = realloc(o->vals, cap * sizeof(uint8_t *));
                o->vlen = realloc(o->vlen, cap * sizeof(size_t));
            }
            ProtobufCBinaryData k = p->pairs[i]->key, v = p->pairs[i]->value;
            o->keys[o->n] = malloc(k.len + 1);
            if (k.len)
                memcpy(o->keys[o->n], k.data, k.len);
            o->keys[o->n][k.len] = '\0';
            o->klen[o->n] = k.len;
            o->vals[o->n] = malloc(v.len + 1);
            if (v.len)
                memcpy(o->vals[o->n], v.data, v.len);
            o->vlen[o->n] = v.len;
            o->n++;
        }
        strata__v1__scan_response__free_unpacked(p, NULL);
    }
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    o->code = r.code;
    st_rpc_result_free(&r);
}

static void scan_free(scan_out *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->keys[i]);
        free(o->vals[i]);
    }
    free(o->keys);
    free(o->klen);
    free(o->vals);
    free(o->vlen);
}

static grpc_status_code write_batch(Strata__V1__Mutation **muts, size_t n, uint64_t *seq)
{
    Strata__V1__WriteRequest q = STRATA__V1__WRITE_REQUEST__INIT;
    q.mutations = muts;
    q.n_mutations = n;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Write", &q.base, 10000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__WriteResponse *p = strata__v1__write_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        *seq = p->seq;
        strata__v1__write_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return code;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_put_get_delete(void **state)
{
    (void)state;
    uint64_t s1, s2, s3, rs;
    assert_int_equal(put(client, "alpha", 5, "one", 3, &s1), GRPC_STATUS_OK);
    assert_true(s1 > 0);
    uint8_t *v;
    size_t vl;
    assert_int_equal(get("alpha", 5, 0, 5000, &v, &vl, &rs), GRPC_STATUS_OK);
    assert_int_equal(vl, 3);
    assert_memory_equal(v, "one", 3);
    assert_true(rs >= s1);
    free(v);
    /* Overwrite, then delete: sequences increase each time. */
    assert_int_equal(put(client, "alpha", 5, "two", 3, &s2), GRPC_STATUS_OK);
    assert_true(s2 > s1);
    assert_int_equal(get("alpha", 5, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_memory_equal(v, "two", 3);
    free(v);
    assert_int_equal(del("alpha", 5, &s3), GRPC_STATUS_OK);
    assert_true(s3 > s2);
    assert_int_equal(get("alpha", 5, 0, 5000, NULL, NULL, NULL), GRPC_STATUS_NOT_FOUND);
    /* Deleting an absent key is not an error. */
    uint64_t s4;
    assert_int_equal(del("never-there", 11, &s4), GRPC_STATUS_OK);
    assert_true(s4 > s3);
    assert_int_equal(get("never-there", 11, 0, 5000, NULL, NULL, NULL), GRPC_STATUS_NOT_FOUND);
}

static void test_binary_keys_and_values(void **state)
{
    (void)state;
    const uint8_t k1[] = {'b', 0, 'x'}, k2[] = {'b', 0xff, 0xff}, k3[] = {'b', 0};
    const uint8_t v1[] = {0, 0, 0xff, 0}, v2[] = {0xff};
    assert_int_equal(put(client, k1, 3, v1, 4, NULL), GRPC_STATUS_OK);
    assert_int_equal(put(client, k2, 3, v2, 1, NULL), GRPC_STATUS_OK);
    assert_int_equal(put(client, k3, 2, "", 0, NULL), GRPC_STATUS_OK); /* empty value */
    uint8_t *v;
    size_t vl;
    assert_int_equal(get(k1, 3, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_int_equal(vl, 4);
    assert_memory_equal(v, v1, 4);
    free(v);
    assert_int_equal(get(k2, 3, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_int_equal(vl, 1);
    assert_int_equal(v[0], 0xff);
    free(v);
    assert_int_equal(get(k3, 2, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_int_equal(vl, 0);
    free(v);
    /* "b\0" sorts before "b\0x" before "b\xff\xff"; a scan from "b" to "c" sees all three. */
    scan_out o;
    scan("b", "c", 0, false, 0, 5000, &o);
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 3);
    assert_int_equal(o.klen[0], 2);
    assert_int_equal(o.klen[1], 3);
    assert_memory_equal(o.keys[1], k1, 3);
    assert_memory_equal(o.keys[2], k2, 3);
    assert_memory_equal(o.vals[1], v1, 4);
    scan_free(&o);
}

static void test_scan_ranges(void **state)
{
    (void)state;
    /* 100 keys s/000 … s/099 in one Write. */
    Strata__V1__Mutation m[100], *mp[100];
    Strata__V1__Mutation__Put puts[100];
    char keys[100][8], vals[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof(keys[i]), "s/%03d", i);
        snprintf(vals[i], sizeof(vals[i]), "v%d", i);
        strata__v1__mutation__init(&m[i]);
        strata__v1__mutation__put__init(&puts[i]);
        puts[i].key = bin(keys[i], 5);
        puts[i].value = bin(vals[i], strlen(vals[i]));
        m[i].op_case = STRATA__V1__MUTATION__OP_PUT;
        m[i].put = &puts[i];
        mp[i] = &m[i];
    }
    uint64_t seq;
    assert_int_equal(write_batch(mp, 100, &seq), GRPC_STATUS_OK);

    scan_out o;
    scan("s/010", "s/020", 0, false, 0, 5000, &o);
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 10);
    assert_string_equal(o.keys[0], "s/010");
    assert_string_equal(o.keys[9], "s/019");
    assert_memory_equal(o.vals[0], "v10", 3);
    assert_true(o.seq >= seq);
    scan_free(&o);

    scan("s/", "s0", 5, false, 0, 5000, &o); /* limit */
    assert_int_equal(o.n, 5);
    assert_string_equal(o.keys[4], "s/004");
    scan_free(&o);

    scan("s/", "s0", 3, true, 0, 5000, &o); /* reverse, from the end of the range */
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 3);
    assert_string_equal(o.keys[0], "s/099");
    assert_string_equal(o.keys[2], "s/097");
    scan_free(&o);

    scan("s/050", "s/050", 0, false, 0, 5000, &o); /* empty range: one message, no pairs */
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 0);
    assert_int_equal(o.messages, 1);
    assert_true(o.seq >= seq);
    scan_free(&o);

    scan("s/090", "s/080", 0, false, 0, 5000, &o); /* start after end: empty */
    assert_int_equal(o.n, 0);
    scan_free(&o);

    scan("s/095", NULL, 0, false, 0, 5000, &o); /* unbounded end */
    assert_true(o.n >= 5);
    assert_string_equal(o.keys[0], "s/095");
    scan_free(&o);

    scan("zzzz", NULL, 0, false, 0, 5000, &o); /* nothing there */
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 0);
    scan_free(&o);
}

static void test_large_scan_many_messages(void **state)
{
    (void)state;
    /* 600 pairs of 1 KiB: over 256 pairs and 64 KiB, so several messages. */
    char val[1024];
    memset(val, 'x', sizeof(val));
    for (int i = 0; i < 600; i++) {
        char k[16];
        snprintf(k, sizeof(k), "L/%04d", i);
        assert_int_equal(put(client, k, strlen(k), val, sizeof(val), NULL), GRPC_STATUS_OK);
    }
    scan_out o;
    scan("L/", "L0", 0, false, 0, 10000, &o);
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_int_equal(o.n, 600);
    assert_true(o.messages >= 3);
    for (size_t i = 1; i < o.n; i++)
        assert_true(strcmp(o.keys[i - 1], o.keys[i]) < 0);
    assert_int_equal(o.vlen[599], 1024);
    scan_free(&o);
    scan("L/", "L0", 0, true, 0, 10000, &o);
    assert_int_equal(o.n, 600);
    assert_string_equal(o.keys[0], "L/0599");
    assert_string_equal(o.keys[599], "L/0000");
    scan_free(&o);
}

static void test_write_batch_atomic(void **state)
{
    (void)state;
    uint64_t s0;
    assert_int_equal(put(client, "w/a", 3, "old", 3, &s0), GRPC_STATUS_OK);
    Strata__V1__Mutation m[3], *mp[3];
    Strata__V1__Mutation__Put p1, p2;
    Strata__V1__Mutation__Delete d1;
    for (int i = 0; i < 3; i++) {
        strata__v1__mutation__init(&m[i]);
        mp[i] = &m[i];
    }
    strata__v1__mutation__put__init(&p1);
    strata__v1__mutation__put__init(&p2);
    strata__v1__mutation__delete__init(&d1);
    p1.key = bin("w/b", 3);
    p1.value = bin("B", 1);
    d1.key = bin("w/a", 3);
    p2.key = bin("w/c", 3);
    p2.value = bin("C", 1);
    m[0].op_case = STRATA__V1__MUTATION__OP_PUT;
    m[0].put = &p1;
    m[1].op_case = STRATA__V1__MUTATION__OP_DELETE;
    m[1].delete_ = &d1;
    m[2].op_case = STRATA__V1__MUTATION__OP_PUT;
    m[2].put = &p2;
    uint64_t seq;
    assert_int_equal(write_batch(mp, 3, &seq), GRPC_STATUS_OK);
    assert_true(seq >= s0 + 3); /* three operations, three sequences, the last reported */
    assert_int_equal(get("w/a", 3, 0, 5000, NULL, NULL, NULL), GRPC_STATUS_NOT_FOUND);
    uint8_t *v;
    size_t vl;
    assert_int_equal(get("w/c", 3, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_memory_equal(v, "C", 1);
    free(v);

    /* An empty batch writes nothing and reports the current sequence. */
    uint64_t es;
    assert_int_equal(write_batch(NULL, 0, &es), GRPC_STATUS_OK);
    assert_true(es >= seq);

    /* A bad mutation fails the whole batch: nothing of it is written. */
    Strata__V1__Mutation bad;
    strata__v1__mutation__init(&bad);
    Strata__V1__Mutation__Put p3;
    strata__v1__mutation__put__init(&p3);
    p3.key = bin("w/d", 3);
    p3.value = bin("D", 1);
    m[0].put = &p3;
    mp[1] = &bad; /* neither put nor delete */
    assert_int_equal(write_batch(mp, 2, &seq), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(get("w/d", 3, 0, 5000, NULL, NULL, NULL), GRPC_STATUS_NOT_FOUND);
}

#define WRITERS         16
#define PUTS_PER_WRITER 40

typedef struct writer_arg {
    int id;
    uint64_t seqs[PUTS_PER_WRITER];
    int failures;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    st_rpc_client *c = st_rpc_client_create(node.addr, 0);
    for (int i = 0; i < PUTS_PER_WRITER; i++) {
        char k[32];
        snprintf(k, sizeof(k), "c/%02d/%03d", a->id, i);
        if (put(c, k, strlen(k), k, strlen(k), &a->seqs[i]) != GRPC_STATUS_OK)
            a->failures++;
    }
    st_rpc_client_destroy(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_concurrent_writes_distinct_sequences(void **state)
{
    (void)state;
    pthread_t th[WRITERS];
    writer_arg args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].id = i;
        pthread_create(&th[i], NULL, writer_main, &args[i]);
    }
    uint64_t all[WRITERS * PUTS_PER_WRITER];
    size_t n = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
        for (int j = 0; j < PUTS_PER_WRITER; j++) {
            if (j > 0) /* one client's writes are ordered */
                assert_true(args[i].seqs[j] > args[i].seqs[j - 1]);
            all[n++] = args[i].seqs[j];
        }
    }
    qsort(all, n, sizeof(all[0]), cmp_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i] > all[i - 1]); /* every put its own sequence */
    /* And each key reads back as written. */
    uint8_t *v;
    size_t vl;
    assert_int_equal(get("c/07/039", 8, 0, 5000, &v, &vl, NULL), GRPC_STATUS_OK);
    assert_int_equal(vl, 8);
    assert_memory_equal(v, "c/07/039", 8);
    free(v);
}

typedef struct later_put {
    int delay_ms;
} later_put;

static void *put_later(void *p)
{
    later_put *l = p;
    usleep((useconds_t)l->delay_ms * 1000);
    st_rpc_client *c = st_rpc_client_create(node.addr, 0);
    put(c, "ms/later", 8, "x", 1, NULL);
    st_rpc_client_destroy(c);
    return NULL;
}

static void test_min_seq(void **state)
{
    (void)state;
    uint64_t s;
    assert_int_equal(put(client, "ms/a", 4, "A", 1, &s), GRPC_STATUS_OK);
    /* Already applied: answered at once. */
    uint8_t *v;
    size_t vl;
    uint64_t rs;
    assert_int_equal(get("ms/a", 4, s, 5000, &v, &vl, &rs), GRPC_STATUS_OK);
    assert_true(rs >= s);
    free(v);
    /* Not there yet and no deadline: FAILED_PRECONDITION, at once. */
    assert_int_equal(get("ms/a", 4, s + 1000000, -1, NULL, NULL, NULL),
                     GRPC_STATUS_FAILED_PRECONDITION);
    /* Not there before the deadline: DEADLINE_EXCEEDED. */
    assert_int_equal(get("ms/a", 4, s + 1000000, 300, NULL, NULL, NULL),
                     GRPC_STATUS_DEADLINE_EXCEEDED);
    /* Arrives while waiting: answered then, at a sequence >= min_seq. */
    pthread_t th;
    later_put lp = {300};
    pthread_create(&th, NULL, put_later, &lp);
    assert_int_equal(get("ms/a", 4, s + 1, 5000, &v, &vl, &rs), GRPC_STATUS_OK);
    assert_true(rs >= s + 1);
    assert_memory_equal(v, "A", 1);
    free(v);
    pthread_join(th, NULL);
    /* Scan waits the same way. */
    uint64_t s2;
    assert_int_equal(put(client, "ms/b", 4, "B", 1, &s2), GRPC_STATUS_OK);
    pthread_create(&th, NULL, put_later, &lp);
    scan_out o;
    scan("ms/", "ms0", 0, false, s2 + 1, 5000, &o);
    assert_int_equal(o.code, GRPC_STATUS_OK);
    assert_true(o.seq >= s2 + 1);
    assert_int_equal(o.n, 3); /* ms/a, ms/b, ms/later */
    scan_free(&o);
    pthread_join(th, NULL);
    scan("ms/", "ms0", 0, false, s2 + 1000000, 200, &o);
    assert_int_equal(o.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    scan_free(&o);
}

/* A standalone node is its own leader: a linearizable read is served at once, with the latest
   acknowledged write. */
static void test_linearizable_standalone(void **state)
{
    (void)state;
    uint64_t s;
    assert_int_equal(put(client, "lz/a", 4, "A2", 2, &s), GRPC_STATUS_OK);
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin("lz/a", 4);
    q.linearizable = true;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.KV/Get", &q.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
    assert_non_null(p);
    assert_true(p->seq >= s);
    assert_int_equal(p->value.len, 2);
    assert_memory_equal(p->value.data, "A2", 2);
    strata__v1__get_response__free_unpacked(p, NULL);
    st_rpc_result_free(&r);
}

static void test_status(void **state)
{
    (void)state;
    uint64_t s;
    assert_int_equal(put(client, "st/a", 4, "A", 1, &s), GRPC_STATUS_OK);
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    st_rpc_result r;
    st_call_msg(client, "/strata.v1.Admin/Status", &q.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Strata__V1__StatusResponse *p = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
    assert_non_null(p);
    assert_int_equal(p->node_id, 1);
    assert_string_equal(p->role, "standalone");
    assert_true(p->last_seq >= s);
    assert_true(p->applied_seq >= s);
    assert_int_equal(p->n_levels, 7);
    assert_int_equal(p->levels[6]->level, 6);
    assert_true(strlen(p->version) > 0);
    assert_true(p->writes > 0);
    assert_true(p->write_groups <= p->writes); /* grouped commits never exceed writes */
    assert_int_equal(p->background_error[0], '\0');
    strata__v1__status_response__free_unpacked(p, NULL);
    st_rpc_result_free(&r);
    /* Every earlier KV call is released (a call is freed just after its reply went out, so
       allow a moment); Status itself is not counted. */
    uint32_t active = 1;
    for (int i = 0; i < 100 && active != 0; i++) {
        st_call_msg(client, "/strata.v1.Admin/Status", &q.base, 5000, &r);
        p = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        active = p->active_calls;
        strata__v1__status_response__free_unpacked(p, NULL);
        st_rpc_result_free(&r);
        if (active != 0)
            usleep(10000);
    }
    assert_int_equal(active, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_delete),
        cmocka_unit_test(test_binary_keys_and_values),
        cmocka_unit_test(test_scan_ranges),
        cmocka_unit_test(test_large_scan_many_messages),
        cmocka_unit_test(test_write_batch_atomic),
        cmocka_unit_test(test_concurrent_writes_distinct_sequences),
        cmocka_unit_test(test_min_seq),
        cmocka_unit_test(test_linearizable_standalone),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests_name("node_kv", tests, setup, teardown);
}
