/*
 * test_node_cluster_failover.c - a short failover smoke test (label "cluster"): kill -9 the
 * leader of three nodes; a new leader is elected within 2 s; writes continue on it; the old
 * leader restarts on its data directory and catches up with everything acknowledged meanwhile.
 * And a graceful stop: SIGTERM to the leader hands leadership over before it exits. And with
 * --advertise, followers' leader hints (the strata-leader trailer, Status) name the address the
 * leader advertised, before and after a failover. (The heavy fault tests live in the cluster
 * suite.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "node/status_codes.h"
#include "tests/node/cluster_harness.h"
#include "tests/support/testutil.h"

static st_tcluster cl;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static grpc_status_code put(uint32_t id, const char *key, const char *value, uint64_t *seq)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin(key);
    q.value = bin(value);
    q.ack = STRATA__V1__ACK_LEVEL__ACK_MAJORITY;
    st_rpc_result r;
    st_call_msg(cl.clients[id], "/strata.v1.KV/Put", &q.base, 5000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__PutResponse *p = strata__v1__put_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        *seq = p->seq;
        strata__v1__put_response__free_unpacked(p, NULL);
    } else {
        fprintf(stderr, "put %s on %u: %s: %s\n", key, id, st_grpc_code_name(code), r.details);
    }
    st_rpc_result_free(&r);
    return code;
}

/*
 * Put through whichever node leads: a FAILED_PRECONDITION naming another leader, or a failure
 * whose outcome is unknown (UNAVAILABLE, DEADLINE_EXCEEDED), is retried (the same key and
 * value: idempotent) for up to 20 s. *leader follows the leadership.
 */
static grpc_status_code put_to_leader(uint32_t *leader, const char *key, const char *value,
                                      uint64_t *seq)
{
    grpc_status_code code = GRPC_STATUS_UNAVAILABLE;
    for (int64_t until = now_ms() + 20000; now_ms() < until;) {
        code = put(*leader, key, value, seq);
        if (code == GRPC_STATUS_OK ||
            (code != GRPC_STATUS_FAILED_PRECONDITION && code != GRPC_STATUS_UNAVAILABLE &&
             code != GRPC_STATUS_DEADLINE_EXCEEDED))
            return code;
        uint32_t l = st_tcluster_wait_leader(&cl, 5000, 0);
        if (l)
            *leader = l;
    }
    return code;
}

static grpc_status_code get(uint32_t id, const char *key, uint64_t min_seq, const char *want)
{
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key = bin(key);
    q.min_seq = min_seq;
    st_rpc_result r;
    st_call_msg(cl.clients[id], "/strata.v1.KV/Get", &q.base, 15000, &r);
    grpc_status_code code = r.code;
    if (code == GRPC_STATUS_OK) {
        Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
        assert_non_null(p);
        assert_int_equal(p->value.len, strlen(want));
        assert_memory_equal(p->value.data, want, strlen(want));
        strata__v1__get_response__free_unpacked(p, NULL);
    } else {
        fprintf(stderr, "get %s on %u: %s: %s\n", key, id, st_grpc_code_name(code), r.details);
    }
    st_rpc_result_free(&r);
    return code;
}

static void test_kill_the_leader(void **state)
{
    (void)state;
    assert_true(st_tcluster_start(&cl, 3, "failover", NULL));
    uint32_t old = st_tcluster_wait_leader(&cl, 10000, 0);
    if (!old)
        st_tcluster_dump_logs(&cl);
    assert_true(old != 0);

    char key[32], value[32];
    uint64_t seq = 0, max_seq = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "before%02d", i);
        snprintf(value, sizeof(value), "b%d", i);
        assert_int_equal(put(old, key, value, &seq), GRPC_STATUS_OK);
        max_seq = seq;
    }

    int64_t killed = now_ms();
    st_tcluster_kill(&cl, old);
    /* Slow builds get proportionally longer election timeouts (cluster_harness.h). */
    int64_t scale = (int64_t)st_tcluster_election_ms();
    uint32_t next = st_tcluster_wait_leader(&cl, (int)(5000 * scale / 150), old);
    int64_t took = now_ms() - killed;
    fprintf(stderr, "leader %u killed; node %u leads after %" PRId64 " ms\n", old, next, took);
    if (!next)
        st_tcluster_dump_logs(&cl);
    assert_true(next != 0 && next != old);
    /* 2 s with the harness's 150 ms election timeout; proportionally more in slow builds. */
    assert_true(took <= 2000 * scale / 150);

    /* Everything acknowledged before is there, and writes continue. */
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "before%02d", i);
        snprintf(value, sizeof(value), "b%d", i);
        assert_int_equal(get(next, key, max_seq, value), GRPC_STATUS_OK);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "after%02d", i);
        snprintf(value, sizeof(value), "a%d", i);
        assert_int_equal(put_to_leader(&next, key, value, &seq), GRPC_STATUS_OK);
        max_seq = seq;
    }

    /* The old leader comes back as a follower and catches up. */
    assert_true(st_tcluster_restart(&cl, old));
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "after%02d", i);
        snprintf(value, sizeof(value), "a%d", i);
        assert_int_equal(get(old, key, max_seq, value), GRPC_STATUS_OK);
        snprintf(key, sizeof(key), "before%02d", i);
        snprintf(value, sizeof(value), "b%d", i);
        assert_int_equal(get(old, key, max_seq, value), GRPC_STATUS_OK);
    }
    next = st_tcluster_wait_leader(&cl, 5000, 0);
    assert_true(next != 0);
    Strata__V1__StatusResponse *s = st_tcluster_status(&cl, old, 5000);
    assert_non_null(s);
    if (next != old) /* a slow build may have moved leadership meanwhile */
        assert_string_equal(s->role, "follower");
    assert_true(s->applied_seq >= max_seq);
    strata__v1__status_response__free_unpacked(s, NULL);
    /* A write after the restart reaches all three. */
    assert_int_equal(put_to_leader(&next, "last", "z", &seq), GRPC_STATUS_OK);
    for (uint32_t id = 1; id <= cl.n; id++)
        assert_int_equal(get(id, "last", seq, "z"), GRPC_STATUS_OK);
    assert_true(st_tcluster_stop(&cl));
}

static void test_sigterm_hands_over(void **state)
{
    (void)state;
    assert_true(st_tcluster_start(&cl, 3, "handover", NULL));
    uint32_t old = st_tcluster_wait_leader(&cl, 10000, 0);
    assert_true(old != 0);
    uint64_t seq = 0;
    assert_int_equal(put(old, "k", "v", &seq), GRPC_STATUS_OK);
    int64_t t0 = now_ms();
    assert_int_equal(st_tcluster_stop_node(&cl, old), 0);
    /* Quick: no call or connection holds the shutdown for its grace period. */
    assert_true(now_ms() - t0 < 4000);
    char *log = st_node_log(&cl.nodes[old]);
    bool handed = strstr(log, "shutdown_hand_over leader=") != NULL;
    if (!handed)
        fprintf(stderr, "%s", log);
    free(log);
    assert_true(handed);
    uint32_t next = st_tcluster_wait_leader(&cl, 5000, old);
    assert_true(next != 0 && next != old);
    assert_int_equal(get(next, "k", seq, "v"), GRPC_STATUS_OK);
    assert_true(st_tcluster_stop(&cl));
}

/* What follower f says of the leader: the strata-leader trailer of a refused write (written to
   hint) and Status's leader_addr (to status_addr). */
static void leader_hints(uint32_t f, char *hint, char *status_addr, size_t n)
{
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key = bin("refused");
    q.value = bin("v");
    st_rpc_result r;
    st_call_msg(cl.clients[f], "/strata.v1.KV/Put", &q.base, 5000, &r);
    assert_int_equal(r.code, GRPC_STATUS_FAILED_PRECONDITION);
    const char *t = st_rpc_result_trailer(&r, "strata-leader");
    snprintf(hint, n, "%s", t ? t : "");
    st_rpc_result_free(&r);
    Strata__V1__StatusResponse *s = st_tcluster_status(&cl, f, 5000);
    assert_non_null(s);
    snprintf(status_addr, n, "%s", s->leader_addr);
    strata__v1__status_response__free_unpacked(s, NULL);
}

static void test_hints_name_advertised_addresses(void **state)
{
    (void)state;
    const char *host = "clients.strata.test";
    assert_true(st_tcluster_start_advertised(&cl, 3, "advertise", NULL, host));
    uint32_t l = st_tcluster_wait_leader(&cl, 10000, 0);
    assert_true(l != 0);
    uint64_t seq;
    assert_int_equal(put_to_leader(&l, "k", "v", &seq), GRPC_STATUS_OK);
    char want[128], hint[128], status_addr[128];
    snprintf(want, sizeof(want), "%s:%d", host, cl.ports[l]);
    for (uint32_t f = 1; f <= cl.n; f++) {
        if (f == l)
            continue;
        leader_hints(f, hint, status_addr, sizeof(hint));
        assert_string_equal(hint, want);
        assert_string_equal(status_addr, want);
    }
    /* The leader's own Status names its advertised address too. */
    Strata__V1__StatusResponse *s = st_tcluster_status(&cl, l, 5000);
    assert_non_null(s);
    assert_string_equal(s->leader_addr, want);
    strata__v1__status_response__free_unpacked(s, NULL);

    /* After a failover the hints follow the new leader, not the address heard before. */
    st_tcluster_kill(&cl, l);
    uint32_t old = l;
    l = st_tcluster_wait_leader(&cl, 10000, old);
    assert_true(l != 0 && l != old);
    assert_int_equal(put_to_leader(&l, "k2", "v", &seq), GRPC_STATUS_OK);
    uint32_t f = 1;
    while (f == l || f == old)
        f++;
    snprintf(want, sizeof(want), "%s:%d", host, cl.ports[l]);
    leader_hints(f, hint, status_addr, sizeof(hint));
    assert_string_equal(hint, want);
    assert_string_equal(status_addr, want);
    assert_true(st_tcluster_stop(&cl));
}

int main(void)
{
    st_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_the_leader),
        cmocka_unit_test(test_sigterm_hands_over),
        cmocka_unit_test(test_hints_name_advertised_addresses),
    };
    int rc = cmocka_run_group_tests_name("node_cluster_failover", tests, NULL, NULL);
    grpc_shutdown_blocking();
    return rc;
}
