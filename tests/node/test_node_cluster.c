/*
 * test_node_cluster.c - three strata-node processes replicating (label "cluster"): writes at
 * every acknowledgement level, read-your-writes on followers, FAILED_PRECONDITION with the
 * leader's address from a follower, Status and health per role, Promote and StepDown under a
 * stream of writes (no acknowledged write lost), the CLI against a cluster, data-directory
 * layouts.
 *
 * One cluster serves every test of the group (started in setup); tests run in order and each
 * finds the leader afresh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "node/status_codes.h"
#include "tests/node/cluster_harness.h"
#include "tests/support/testutil.h"

static st_tcluster cl;

static int setup(void **state)
{
    (void)state;
    st_rpc_init();
    if (!st_tcluster_start(&cl, 3, "cluster", NULL))
        return -1;
    if (!st_tcluster_wait_leader(&cl, 10000, 0)) {
        st_tcluster_dump_logs(&cl);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bool ok = st_tcluster_stop(&cl);
    grpc_shutdown_blocking();
    return ok ? 0 : -1;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Put key=value on c; *res keeps the whole result (free it) when res is not NULL. */
static grpc_status_code put_on(st_rpc_client *c, const char *key, const char *value,
                               Strata__V1__AckLevel ack, int64_t timeout_ms, uint64_t *seq,
                               st_rpc_result *res)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin(key);
    q.value = bin(value);
    q.ack = ack;
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Put", &q.base, timeout_ms, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK && seq) {
        Strata__V1__PutResponse *p = strata__v1__put_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        *seq = p->seq;
        strata__v1__put_response__free_unpacked(p, NULL);
    }
    if (res)
        *res = r;
    else
        st_rpc_result_free(&r);
    return code;
}

static grpc_status_code put(uint32_t id, const char *key, const char *value,
                            Strata__V1__AckLevel ack, uint64_t *seq)
{
    return put_on(cl.clients[id], key, value, ack, 10000, seq, NULL);
}

/* Get key from node id with min_seq; on OK the value is compared with `want` (if not NULL). */
static grpc_status_code get_on(st_rpc_client *c, const char *key, uint64_t min_seq,
                               int64_t timeout_ms, const char *want)
{
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin(key);
    q.min_seq = min_seq;
    st_rpc_result r;
    st_call_msg(c, "/strata.v1.KV/Get", &q.base, timeout_ms, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        assert_true(p->seq >= min_seq);
        if (want) {
            assert_int_equal(p->value.len, strlen(want));
            assert_memory_equal(p->value.data, want, strlen(want));
        }
        strata__v1__get_response__free_unpacked(p, NULL);
    } else if (code != GRPC_STATUS_NOT_FOUND) {
        fprintf(stderr, "get %s: %s: %s\n", key, st_grpc_code_name(code), r.details);
    }
    st_rpc_result_free(&r);
    return code;
}

static grpc_status_code get(uint32_t id, const char *key, uint64_t min_seq, const char *want)
{
    return get_on(cl.clients[id], key, min_seq, 10000, want);
}

static uint32_t leader(void)
{
    uint32_t l = st_tcluster_wait_leader(&cl, 10000, 0);
    if (!l)
        st_tcluster_dump_logs(&cl);
    assert_true(l != 0);
    return l;
}

/* Scan with q on node id: every message must read at min_seq or later; each pair goes to
   pair(kv, ctx). The status; *res keeps the whole result (free it) when res is not NULL. */
static grpc_status_code scan_on(uint32_t id, const Strata__V1__ScanRequest *q, uint64_t min_seq,
                                void (*pair)(const Strata__V1__KeyValue *kv, void *ctx), void *ctx,
                                st_rpc_result *res)
{
    uint8_t buf[256];
    assert_true(strata__v1__scan_request__get_packed_size(q) <= sizeof(buf));
    size_t len = strata__v1__scan_request__pack(q, buf);
    st_rpc_stream *s = st_rpc_stream_open(cl.clients[id], "/strata.v1.KV/Scan", buf, len, 10000);
    assert_non_null(s);
    uint8_t *msg;
    size_t mlen;
    while (st_rpc_stream_next(s, &msg, &mlen)) {
        Strata__V1__ScanResponse *p = strata__v1__scan_response__unpack(NULL, mlen, msg);
        free(msg);
        assert_non_null(p);
        assert_true(p->seq >= min_seq);
        for (size_t i = 0; i < p->n_pairs; i++)
            pair(p->pairs[i], ctx);
        strata__v1__scan_response__free_unpacked(p, NULL);
    }
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    grpc_status_code code = r.code;
    if (res)
        *res = r;
    else
        st_rpc_result_free(&r);
    return code;
}

/* ---- writes and reads ------------------------------------------------------------------- */

static void count_alpha_beta(const Strata__V1__KeyValue *kv, void *ctx)
{
    *(size_t *)ctx += (kv->key.len == 5 && memcmp(kv->key.data, "alpha", 5) == 0) ||
                      (kv->key.len == 4 && memcmp(kv->key.data, "beta", 4) == 0);
}

static void test_majority_write_is_read_everywhere(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint64_t seq = 0;
    assert_int_equal(put(l, "alpha", "one", STRATA__V1__ACK_LEVEL__ACK_MAJORITY, &seq),
                     GRPC_STATUS_OK);
    assert_true(seq > 0);
    /* MAJORITY means applied on the leader: a plain read there sees it. */
    assert_int_equal(get(l, "alpha", 0, "one"), GRPC_STATUS_OK);
    /* Read-your-writes on every node through min_seq. */
    for (uint32_t id = 1; id <= cl.n; id++)
        assert_int_equal(get(id, "alpha", seq, "one"), GRPC_STATUS_OK);
    /* ACK_DEFAULT is --default-ack (majority): the same guarantee. */
    uint64_t seq2 = 0;
    assert_int_equal(put(l, "beta", "two", STRATA__V1__ACK_LEVEL__ACK_DEFAULT, &seq2),
                     GRPC_STATUS_OK);
    assert_true(seq2 > seq);
    assert_int_equal(get(l, "beta", 0, "two"), GRPC_STATUS_OK);
    /* A follower's scan sees both once it has applied seq2. */
    uint32_t f = st_tcluster_follower(&cl, l);
    Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
    q.min_seq = seq2;
    size_t pairs = 0;
    assert_int_equal(scan_on(f, &q, seq2, count_alpha_beta, &pairs, NULL), GRPC_STATUS_OK);
    assert_int_equal(pairs, 2);
}

static void test_ack_levels(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint64_t seq = 0;
    /* ALL succeeds with every node up; it is durable everywhere, so every node gets there. */
    assert_int_equal(put(l, "all", "3", STRATA__V1__ACK_LEVEL__ACK_ALL, &seq), GRPC_STATUS_OK);
    for (uint32_t id = 1; id <= cl.n; id++)
        assert_int_equal(get(id, "all", seq, "3"), GRPC_STATUS_OK);
    /* LEADER answers once the leader's WAL holds it; it commits shortly after. */
    uint64_t seq2 = 0;
    assert_int_equal(put(l, "lead", "1", STRATA__V1__ACK_LEVEL__ACK_LEADER, &seq2), GRPC_STATUS_OK);
    assert_true(seq2 > seq);
    for (uint32_t id = 1; id <= cl.n; id++)
        assert_int_equal(get(id, "lead", seq2, "1"), GRPC_STATUS_OK);
    /* A batch and a delete at ALL. */
    Strata__V1__Mutation__Put mp[2] = {STRATA__V1__MUTATION__PUT__INIT,
                                       STRATA__V1__MUTATION__PUT__INIT};
    Strata__V1__Mutation m[2] = {STRATA__V1__MUTATION__INIT, STRATA__V1__MUTATION__INIT};
    Strata__V1__Mutation *mps[2] = {&m[0], &m[1]};
    mp[0].key = bin("b1");
    mp[0].value = bin("x");
    mp[1].key = bin("b2");
    mp[1].value = bin("y");
    for (int i = 0; i < 2; i++) {
        m[i].op_case = STRATA__V1__MUTATION__OP_PUT;
        m[i].put = &mp[i];
    }
    Strata__V1__WriteRequest w = STRATA__V1__WRITE_REQUEST__INIT;
    w.n_mutations = 2;
    w.mutations = mps;
    w.ack = STRATA__V1__ACK_LEVEL__ACK_ALL;
    st_rpc_result r;
    st_call_msg(cl.clients[l], "/strata.v1.KV/Write", &w.base, 10000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Strata__V1__WriteResponse *wr = strata__v1__write_response__unpack(NULL, r.resp_len, r.resp);
    assert_non_null(wr);
    assert_int_equal(wr->seq, seq2 + 2);
    uint64_t wseq = wr->seq;
    strata__v1__write_response__free_unpacked(wr, NULL);
    st_rpc_result_free(&r);
    for (uint32_t id = 1; id <= cl.n; id++) {
        assert_int_equal(get(id, "b1", wseq, "x"), GRPC_STATUS_OK);
        assert_int_equal(get(id, "b2", wseq, "y"), GRPC_STATUS_OK);
    }
    Strata__V1__DeleteRequest d = STRATA__V1__DELETE_REQUEST__INIT;
    d.key = bin("b1");
    d.ack = STRATA__V1__ACK_LEVEL__ACK_ALL;
    st_call_msg(cl.clients[l], "/strata.v1.KV/Delete", &d.base, 10000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Strata__V1__DeleteResponse *dr = strata__v1__delete_response__unpack(NULL, r.resp_len, r.resp);
    assert_non_null(dr);
    uint64_t dseq = dr->seq;
    strata__v1__delete_response__free_unpacked(dr, NULL);
    st_rpc_result_free(&r);
    for (uint32_t id = 1; id <= cl.n; id++)
        assert_int_equal(get(id, "b1", dseq, NULL), GRPC_STATUS_NOT_FOUND);
    /* An ack level the node does not know is refused. */
    assert_int_equal(put(l, "bad-ack", "v", (Strata__V1__AckLevel)7, NULL),
                     GRPC_STATUS_INVALID_ARGUMENT);
}

static void test_follower_write_names_the_leader(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint32_t f = st_tcluster_follower(&cl, l);
    st_rpc_result r;
    assert_int_equal(
        put_on(cl.clients[f], "nope", "v", STRATA__V1__ACK_LEVEL__ACK_MAJORITY, 10000, NULL, &r),
        GRPC_STATUS_FAILED_PRECONDITION);
    const char *hint = st_rpc_result_trailer(&r, "strata-leader");
    assert_non_null(hint);
    assert_string_equal(hint, cl.nodes[l].addr);
    assert_non_null(strstr(r.details, cl.nodes[l].addr));
    st_rpc_result_free(&r);
    /* Nothing was written anywhere. */
    assert_int_equal(get(l, "nope", 0, NULL), GRPC_STATUS_NOT_FOUND);
    /* Delete and Write too. */
    Strata__V1__DeleteRequest d = STRATA__V1__DELETE_REQUEST__INIT;
    d.key = bin("alpha");
    st_call_msg(cl.clients[f], "/strata.v1.KV/Delete", &d.base, 10000, &r);
    assert_int_equal(r.code, GRPC_STATUS_FAILED_PRECONDITION);
    assert_non_null(st_rpc_result_trailer(&r, "strata-leader"));
    st_rpc_result_free(&r);
    Strata__V1__WriteRequest w = STRATA__V1__WRITE_REQUEST__INIT; /* even an empty one */
    st_call_msg(cl.clients[f], "/strata.v1.KV/Write", &w.base, 10000, &r);
    assert_int_equal(r.code, GRPC_STATUS_FAILED_PRECONDITION);
    st_rpc_result_free(&r);
    st_call_msg(cl.clients[l], "/strata.v1.KV/Write", &w.base, 10000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    st_rpc_result_free(&r);
}

static int cli(const char *const *args, char **out, char **err);

typedef struct value_check {
    const char *want;
    size_t pairs;
} value_check;

static void check_value(const Strata__V1__KeyValue *kv, void *ctx)
{
    value_check *vc = ctx;
    assert_int_equal(kv->value.len, strlen(vc->want));
    assert_memory_equal(kv->value.data, vc->want, strlen(vc->want));
    vc->pairs++;
}

/* A linearizable Get (or Scan) of key on node id: the status; on OK the value must be `want`
   and the read's sequence at least min_seq. *res keeps the result (free it) when not NULL. */
static grpc_status_code read_linearizable(uint32_t id, bool scan, const char *key, const char *want,
                                          uint64_t min_seq, st_rpc_result *res)
{
    st_rpc_result r;
    if (!scan) {
        Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
        q.key = bin(key);
        q.linearizable = true;
        st_call_msg(cl.clients[id], "/strata.v1.KV/Get", &q.base, 10000, &r);
        if (r.code == GRPC_STATUS_OK) {
            Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
            assert_non_null(p);
            assert_true(p->seq >= min_seq);
            assert_int_equal(p->value.len, strlen(want));
            assert_memory_equal(p->value.data, want, strlen(want));
            strata__v1__get_response__free_unpacked(p, NULL);
        }
    } else {
        Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
        q.start = bin(key);
        q.limit = 1;
        q.linearizable = true;
        value_check vc = {want, 0};
        if (scan_on(id, &q, min_seq, check_value, &vc, &r) == GRPC_STATUS_OK)
            assert_int_equal(vc.pairs, 1);
    }
    grpc_status_code code = r.code;
    if (res)
        *res = r;
    else
        st_rpc_result_free(&r);
    return code;
}

static void test_linearizable_reads(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint32_t f = st_tcluster_follower(&cl, l);
    uint64_t seq = 0;
    assert_int_equal(put(l, "lin", "1", STRATA__V1__ACK_LEVEL__ACK_MAJORITY, &seq), GRPC_STATUS_OK);
    /* The leader serves them (a node just elected may answer UNAVAILABLE for a moment). */
    for (int scan = 0; scan <= 1; scan++) {
        grpc_status_code code = GRPC_STATUS_UNAVAILABLE;
        for (int t = 0; t < 100 && code == GRPC_STATUS_UNAVAILABLE; t++) {
            code = read_linearizable(l, scan, "lin", "1", seq, NULL);
            if (code == GRPC_STATUS_UNAVAILABLE)
                usleep(20000);
        }
        assert_int_equal(code, GRPC_STATUS_OK);
    }
    /* A follower sends them to the leader. */
    st_rpc_result r;
    assert_int_equal(read_linearizable(f, false, "lin", "1", seq, &r),
                     GRPC_STATUS_FAILED_PRECONDITION);
    const char *hint = st_rpc_result_trailer(&r, "strata-leader");
    assert_non_null(hint);
    assert_string_equal(hint, cl.nodes[l].addr);
    assert_non_null(strstr(r.details, "linearizable reads go to the leader"));
    st_rpc_result_free(&r);
    /* And so does the CLI, which follows the hint. */
    char *out, *err;
    const char *const args[] = {"--addr", cl.nodes[f].addr, "get", "--linearizable", "lin", NULL};
    assert_int_equal(cli(args, &out, &err), 0);
    assert_string_equal(out, "1");
    free(out);
    free(err);
}

/* ---- Status and health -------------------------------------------------------------------- */

static void test_status_shows_roles_and_peers(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint64_t seq = 0;
    assert_int_equal(put(l, "status", "s", STRATA__V1__ACK_LEVEL__ACK_ALL, &seq), GRPC_STATUS_OK);
    Strata__V1__StatusResponse *s = st_tcluster_status(&cl, l, 5000);
    assert_non_null(s);
    assert_string_equal(s->role, "leader");
    assert_int_equal(s->node_id, l);
    assert_int_equal(s->leader_id, l);
    assert_string_equal(s->leader_addr, cl.nodes[l].addr);
    assert_true(s->term >= 1);
    assert_true(s->commit_seq >= seq);
    assert_true(s->applied_seq >= seq);
    assert_int_equal(s->n_peers, cl.n - 1);
    for (size_t i = 0; i < s->n_peers; i++) {
        const Strata__V1__PeerStatus *p = s->peers[i];
        assert_true(p->id >= 1 && p->id <= cl.n && p->id != l);
        assert_string_equal(p->address, cl.nodes[p->id].addr);
        assert_string_equal(p->state, "streaming");
        /* ACK_ALL: every member held seq before the answer. */
        assert_true(p->match_seq >= seq);
    }
    uint64_t term = s->term;
    strata__v1__status_response__free_unpacked(s, NULL);
    for (uint32_t id = 1; id <= cl.n; id++) {
        if (id == l)
            continue;
        s = st_tcluster_status(&cl, id, 5000);
        assert_non_null(s);
        assert_string_equal(s->role, "follower");
        assert_int_equal(s->leader_id, l);
        assert_string_equal(s->leader_addr, cl.nodes[l].addr);
        assert_int_equal(s->term, term);
        assert_int_equal(s->n_peers, cl.n - 1);
        strata__v1__status_response__free_unpacked(s, NULL);
    }
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus health(uint32_t id, const char *svc)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)svc;
    st_rpc_result r;
    st_call_msg(cl.clients[id], "/grpc.health.v1.Health/Check", &q.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_OK);
    Grpc__Health__V1__HealthCheckResponse *p =
        grpc__health__v1__health_check_response__unpack(NULL, r.resp_len, r.resp);
    assert_non_null(p);
    Grpc__Health__V1__HealthCheckResponse__ServingStatus st = p->status;
    grpc__health__v1__health_check_response__free_unpacked(p, NULL);
    st_rpc_result_free(&r);
    return st;
}

static void test_health_per_role(void **state)
{
    (void)state;
    uint32_t l = leader();
    const int serving = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    const int not_serving = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    for (uint32_t id = 1; id <= cl.n; id++) {
        assert_int_equal(health(id, ""), serving);
        assert_int_equal(health(id, "strata.v1.KV"), serving);
        assert_int_equal(health(id, "strata.v1.KV.leader"), id == l ? serving : not_serving);
    }
}

/* ---- hand-overs under writes -------------------------------------------------------------- */

typedef struct acked {
    char key[32];
    char value[32];
    uint64_t seq;
} acked;

typedef struct writer_ctx {
    atomic_bool stop;
    acked *acks;
    size_t nacks, cap;
    uint64_t max_seq;
    size_t redirects, unknown;
    uint32_t target;
    st_rpc_client *clients[ST_TCLUSTER_MAX + 1]; /* this thread's own */
} writer_ctx;

/* Write w0, w1, ... to whichever node leads, following FAILED_PRECONDITION hints. */
static void *writer_main(void *arg)
{
    writer_ctx *w = arg;
    for (size_t i = 0; !atomic_load(&w->stop) && i < 100000; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "w%06zu", i);
        snprintf(value, sizeof(value), "v%zu", i);
        st_rpc_result r;
        uint64_t seq = 0;
        grpc_status_code code = put_on(w->clients[w->target], key, value,
                                       STRATA__V1__ACK_LEVEL__ACK_MAJORITY, 5000, &seq, &r);
        if (code == GRPC_STATUS_OK) {
            if (w->nacks == w->cap) {
                w->cap = w->cap ? 2 * w->cap : 256;
                w->acks = realloc(w->acks, w->cap * sizeof(*w->acks));
            }
            acked *a = &w->acks[w->nacks++];
            snprintf(a->key, sizeof(a->key), "%s", key);
            snprintf(a->value, sizeof(a->value), "%s", value);
            a->seq = seq;
            if (seq > w->max_seq)
                w->max_seq = seq;
        } else {
            /* Not acknowledged: its outcome is unknown, and it is not checked. */
            w->unknown++;
            const char *hint = st_rpc_result_trailer(&r, "strata-leader");
            for (uint32_t id = 1; hint && id <= ST_TCLUSTER_MAX; id++)
                if (strcmp(cl.nodes[id].addr, hint) == 0 && id != w->target) {
                    w->target = id;
                    w->redirects++;
                }
            if (!hint)
                usleep(5000); /* no leader known yet, or a hand-over in progress */
        }
        st_rpc_result_free(&r);
    }
    return NULL;
}

static void writer_start(writer_ctx *w, pthread_t *t, uint32_t target)
{
    memset(w, 0, sizeof(*w));
    w->target = target;
    for (uint32_t id = 1; id <= cl.n; id++)
        w->clients[id] = st_rpc_client_create(cl.nodes[id].addr, 0);
    atomic_init(&w->stop, false);
    assert_int_equal(pthread_create(t, NULL, writer_main, w), 0);
}

/* Stop the writer and check every acknowledged write on every node. */
static void writer_finish(writer_ctx *w, pthread_t t)
{
    atomic_store(&w->stop, true);
    pthread_join(t, NULL);
    for (uint32_t id = 1; id <= cl.n; id++)
        st_rpc_client_destroy(w->clients[id]);
    fprintf(stderr, "writer: %zu acknowledged, %zu not, %zu redirects, max_seq %" PRIu64 "\n",
            w->nacks, w->unknown, w->redirects, w->max_seq);
    assert_true(w->nacks > 0);
    for (uint32_t id = 1; id <= cl.n; id++)
        for (size_t i = 0; i < w->nacks; i++)
            assert_int_equal(get(id, w->acks[i].key, w->max_seq, w->acks[i].value), GRPC_STATUS_OK);
    free(w->acks);
}

/* Call Promote (target > 0) or StepDown on node `on`. */
static grpc_status_code transfer(uint32_t on, uint32_t target, Strata__V1__TransferResponse **out,
                                 st_rpc_result *res)
{
    st_rpc_result r;
    if (target) {
        Strata__V1__PromoteRequest q = STRATA__V1__PROMOTE_REQUEST__INIT;
        q.node_id = target;
        st_call_msg(cl.clients[on], "/strata.v1.Admin/Promote", &q.base, 10000, &r);
    } else {
        Strata__V1__StepDownRequest q = STRATA__V1__STEP_DOWN_REQUEST__INIT;
        st_call_msg(cl.clients[on], "/strata.v1.Admin/StepDown", &q.base, 10000, &r);
    }
    grpc_status_code code = r.code;
    if (out)
        *out = code == GRPC_STATUS_OK
                   ? strata__v1__transfer_response__unpack(NULL, r.resp_len, r.resp)
                   : NULL;
    if (code != GRPC_STATUS_OK)
        fprintf(stderr, "transfer: %s: %s\n", st_grpc_code_name(code), r.details);
    if (res)
        *res = r;
    else
        st_rpc_result_free(&r);
    return code;
}

/* The next status a health Watch stream sends (-1 if it ended). */
static int watch_next(st_rpc_stream *s)
{
    uint8_t *msg;
    size_t len;
    if (!st_rpc_stream_next(s, &msg, &len))
        return -1;
    Grpc__Health__V1__HealthCheckResponse *p =
        grpc__health__v1__health_check_response__unpack(NULL, len, msg);
    free(msg);
    assert_non_null(p);
    int st = p->status;
    grpc__health__v1__health_check_response__free_unpacked(p, NULL);
    return st;
}

static void test_promote_loses_no_acknowledged_write(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint32_t f = st_tcluster_follower(&cl, l);
    /* Sent to a follower: FAILED_PRECONDITION naming the leader. */
    st_rpc_result r;
    assert_int_equal(transfer(f, f, NULL, &r), GRPC_STATUS_FAILED_PRECONDITION);
    assert_non_null(st_rpc_result_trailer(&r, "strata-leader"));
    assert_string_equal(st_rpc_result_trailer(&r, "strata-leader"), cl.nodes[l].addr);
    st_rpc_result_free(&r);
    /* Not a member. */
    assert_int_equal(transfer(l, 42, NULL, NULL), GRPC_STATUS_INVALID_ARGUMENT);

    /* A Watch of the leader service on f hears NOT_SERVING now, SERVING once f leads. */
    Grpc__Health__V1__HealthCheckRequest hq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    hq.service = "strata.v1.KV.leader";
    uint8_t hbuf[64];
    size_t hlen = grpc__health__v1__health_check_request__pack(&hq, hbuf);
    st_rpc_client *wc = st_rpc_client_create(cl.nodes[f].addr, 0);
    st_rpc_stream *watch =
        st_rpc_stream_open(wc, "/grpc.health.v1.Health/Watch", hbuf, hlen, 20000);
    assert_non_null(watch);
    assert_int_equal(watch_next(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);

    writer_ctx w;
    pthread_t t;
    writer_start(&w, &t, l);
    usleep(300 * 1000);
    Strata__V1__TransferResponse *p = NULL;
    assert_int_equal(transfer(l, f, &p, NULL), GRPC_STATUS_OK);
    assert_non_null(p);
    assert_int_equal(p->leader_id, f);
    assert_string_equal(p->leader_addr, cl.nodes[f].addr);
    fprintf(stderr, "promote %u -> %u: pause %u ms, term %" PRIu64 "\n", l, f, p->pause_ms,
            p->term);
    assert_true(p->pause_ms < 5000);
    strata__v1__transfer_response__free_unpacked(p, NULL);
    assert_int_equal(st_tcluster_wait_leader(&cl, 5000, 0), f);
    assert_int_equal(watch_next(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    usleep(300 * 1000);

    /* StepDown hands over to some follower. */
    assert_int_equal(transfer(f, 0, &p, NULL), GRPC_STATUS_OK);
    assert_non_null(p);
    assert_true(p->leader_id != f && p->leader_id >= 1 && p->leader_id <= cl.n);
    uint32_t next = p->leader_id;
    strata__v1__transfer_response__free_unpacked(p, NULL);
    assert_int_equal(st_tcluster_wait_leader(&cl, 5000, 0), next);
    assert_int_equal(watch_next(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    st_rpc_stream_cancel(watch);
    st_rpc_stream_close(watch, &r);
    st_rpc_result_free(&r);
    st_rpc_client_destroy(wc);
    usleep(300 * 1000);
    writer_finish(&w, t);
    /* The writes kept going across both hand-overs, on the new leaders. */
    assert_true(w.redirects >= 2);
}

/* ---- the CLI -------------------------------------------------------------------------------- */

static int cli(const char *const *args, char **out, char **err)
{
    int rc = st_run_cli(args, NULL, 0, out, NULL, err);
    if (rc != 0)
        fprintf(stderr, "strata %s ...: exit %d: %s", args[0], rc, *err);
    return rc;
}

static void test_cli_against_a_cluster(void **state)
{
    (void)state;
    uint32_t l = leader();
    uint32_t f = st_tcluster_follower(&cl, l);
    char *out, *err;
    /* A write sent to a follower goes to the leader, silently. */
    const char *const put_args[] = {"--addr",  cl.nodes[f].addr, "put",
                                    "cli-key", "cli-value",      NULL};
    assert_int_equal(cli(put_args, &out, &err), 0);
    assert_non_null(strstr(out, "OK seq="));
    assert_string_equal(err, "");
    free(out);
    free(err);
    /* --verbose says so. */
    const char *const put_v[] = {"--verbose", "--addr", cl.nodes[f].addr, "put", "cli-key2",
                                 "v2",        NULL};
    assert_int_equal(cli(put_v, &out, &err), 0);
    assert_non_null(strstr(err, cl.nodes[l].addr));
    free(out);
    free(err);
    /* A comma list: the first address is dead, the second answers. */
    char list[128];
    snprintf(list, sizeof(list), "127.0.0.1:1,%s", cl.nodes[l].addr);
    const char *const get_args[] = {"--addr", list, "get", "cli-key", NULL};
    assert_int_equal(cli(get_args, &out, &err), 0);
    assert_string_equal(out, "cli-value");
    free(out);
    free(err);
    /* Nobody at all. */
    const char *const dead[] = {"--addr", "127.0.0.1:1,127.0.0.1:2", "get", "k", NULL};
    assert_int_equal(cli(dead, &out, &err), 3);
    assert_non_null(strstr(err, "UNAVAILABLE"));
    free(out);
    free(err);
    /* status shows the replication state. */
    l = leader();
    const char *const st_args[] = {"--addr", cl.nodes[l].addr, "status", NULL};
    assert_int_equal(cli(st_args, &out, &err), 0);
    assert_non_null(strstr(out, "role: leader"));
    assert_non_null(strstr(out, "term: "));
    assert_non_null(strstr(out, "commit_seq: "));
    assert_non_null(strstr(out, "state=streaming"));
    free(out);
    free(err);
    /* promote, sent to a follower, reaches the leader; step-down then moves it again. */
    char target[16];
    snprintf(target, sizeof(target), "%u", f);
    const char *const pr[] = {"--addr", cl.nodes[f].addr, "promote", target, NULL};
    assert_int_equal(cli(pr, &out, &err), 0);
    char want[96];
    snprintf(want, sizeof(want), "leader: %u at %s", f, cl.nodes[f].addr);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "write pause: "));
    free(out);
    free(err);
    assert_int_equal(st_tcluster_wait_leader(&cl, 5000, 0), f);
    const char *const sd[] = {"--addr", cl.nodes[f].addr, "step-down", NULL};
    assert_int_equal(cli(sd, &out, &err), 0);
    assert_non_null(strstr(out, "leader: "));
    assert_null(strstr(out, want)); /* someone other than f leads now */
    free(out);
    free(err);
    assert_true(st_tcluster_wait_leader(&cl, 5000, 0) != f);
    /* Usage errors. */
    const char *const bad[][4] = {
        {"promote", NULL}, {"promote", "x", NULL}, {"step-down", "1", NULL}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(cli(bad[i], &out, &err), 2);
        free(out);
        free(err);
    }
}

/* ---- data directories ----------------------------------------------------------------------- */

static void test_layouts_refuse_each_other(void **state)
{
    (void)state;
    /* A cluster node's data directory is not a standalone database... */
    uint32_t f = st_tcluster_follower(&cl, leader());
    char *dir = st_test_mkdtemp("layout");
    char *copy = st_test_path(dir, "data");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp -r %s %s", cl.nodes[f].data_dir, copy);
    assert_int_equal(system(cmd), 0);
    st_node_proc n;
    st_node_init(&n, "layout_standalone");
    free(n.data_dir);
    n.data_dir = strdup(copy);
    assert_false(st_node_start(&n, NULL));
    assert_int_equal(n.exit_status, 1);
    char *log = st_node_log(&n);
    assert_non_null(strstr(log, "belongs to a cluster node"));
    free(log);
    st_node_cleanup(&n);
    /* ...and a standalone database does not become a cluster node's. */
    st_node_init(&n, "layout_cluster");
    assert_true(st_node_start(&n, NULL));
    assert_int_equal(st_node_stop(&n), 0);
    const char *const peers[] = {"--node-id", "1", "--peers", "1=127.0.0.1:1,2=127.0.0.1:2", NULL};
    assert_false(st_node_start(&n, peers));
    assert_int_equal(n.exit_status, 1);
    log = st_node_log(&n);
    assert_non_null(strstr(log, "holds a standalone database"));
    free(log);
    st_node_cleanup(&n);
    st_test_rmdir(dir);
    free(dir);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_majority_write_is_read_everywhere),
        cmocka_unit_test(test_ack_levels),
        cmocka_unit_test(test_follower_write_names_the_leader),
        cmocka_unit_test(test_linearizable_reads),
        cmocka_unit_test(test_status_shows_roles_and_peers),
        cmocka_unit_test(test_health_per_role),
        cmocka_unit_test(test_promote_loses_no_acknowledged_write),
        cmocka_unit_test(test_cli_against_a_cluster),
        cmocka_unit_test(test_layouts_refuse_each_other),
    };
    return cmocka_run_group_tests_name("node_cluster", tests, setup, teardown);
}
