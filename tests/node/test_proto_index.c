/* test_proto_index.c - node/proto_index.h over the embedded descriptor set, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/proto_index.h"
#include "proto/descriptor_set.h"
#include "tests/support/testutil.h"

static void test_embedded_set(void **state)
{
    (void)state;
    st_proto_index *idx;
    assert_int_equal(
        st_proto_index_create(st_proto_descriptor_set, st_proto_descriptor_set_len, &idx), ST_OK);
    assert_true(st_proto_index_file_count(idx) >= 5); /* kv, admin, health, 2 × reflection */
    int kv = st_proto_index_find_file(idx, "strata/v1/kv.proto");
    int admin = st_proto_index_find_file(idx, "strata/v1/admin.proto");
    int health = st_proto_index_find_file(idx, "grpc/health/v1/health.proto");
    assert_true(kv >= 0 && admin >= 0 && health >= 0);
    assert_int_equal(st_proto_index_find_file(idx, "nope.proto"), -1);
    /* Services, methods, messages, nested messages, fields, enums, enum values. */
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.KV"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, ".strata.v1.KV"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.KV.Scan"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.Mutation.Put"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.PutRequest.key"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.AckLevel"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.ACK_MAJORITY"), kv);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.Admin.Status"), admin);
    assert_int_equal(
        st_proto_index_find_symbol(idx, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
        health);
    assert_int_equal(st_proto_index_find_symbol(idx, "grpc.health.v1.HealthCheckResponse.SERVING"),
                     health);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata.v1.Nope"), -1);
    assert_int_equal(st_proto_index_find_symbol(idx, "strata"), -1);
    assert_true(st_proto_index_is_message(idx, "strata.v1.ScanResponse"));
    assert_false(st_proto_index_is_message(idx, "strata.v1.KV"));
    /* At least KV, Admin, Health and the two reflection services. */
    assert_true(st_proto_index_service_count(idx) >= 5);
    /* No file here imports another: each closure is the file alone. */
    size_t out[8];
    assert_int_equal(st_proto_index_closure(idx, (size_t)kv, out, 8), 1);
    assert_int_equal(out[0], (size_t)kv);
    st_slice b = st_proto_index_file_bytes(idx, (size_t)kv);
    assert_true(b.len > 100);
    assert_int_equal(b.data[0], 0x0a); /* field 1, the name, comes first */
    st_proto_index_destroy(idx);
}

/* A FileDescriptorSet of two files by hand: b.proto imports a.proto. */
static size_t build_set(uint8_t *buf)
{
    /* a.proto: name, package "p", message "A". */
    const uint8_t a[] = {0x0a, 7, 'a', '.',  'p', 'r',  'o', 't', 'o',
                         0x12, 1, 'p', 0x22, 3,   0x0a, 1,   'A'};
    /* b.proto: name, package "p", dependency "a.proto", service "S" with method "M". */
    const uint8_t b[] = {0x0a, 7,    'b', '.', 'p',  'r', 'o',  't', 'o', 0x12, 1,
                         'p',  0x1a, 7,   'a', '.',  'p', 'r',  'o', 't', 'o',  0x32,
                         8,    0x0a, 1,   'S', 0x12, 3,   0x0a, 1,   'M'};
    size_t n = 0;
    buf[n++] = 0x0a;
    buf[n++] = sizeof(a);
    memcpy(buf + n, a, sizeof(a));
    n += sizeof(a);
    buf[n++] = 0x0a;
    buf[n++] = sizeof(b);
    memcpy(buf + n, b, sizeof(b));
    n += sizeof(b);
    return n;
}

static void test_dependencies(void **state)
{
    (void)state;
    uint8_t buf[128];
    size_t n = build_set(buf);
    st_proto_index *idx;
    assert_int_equal(st_proto_index_create(buf, n, &idx), ST_OK);
    int a = st_proto_index_find_file(idx, "a.proto"), b = st_proto_index_find_file(idx, "b.proto");
    assert_int_equal(st_proto_index_find_symbol(idx, "p.S.M"), b);
    assert_int_equal(st_proto_index_find_symbol(idx, "p.A"), a);
    size_t out[4];
    assert_int_equal(st_proto_index_closure(idx, (size_t)b, out, 4), 2);
    assert_int_equal(out[0], (size_t)b);
    assert_int_equal(out[1], (size_t)a);
    assert_string_equal(st_proto_index_service(idx, 0), "p.S");
    st_proto_index_destroy(idx);

    /* b.proto alone: its import is missing. */
    assert_int_equal(st_proto_index_create(buf + 2 + buf[1], n - 2 - buf[1], &idx), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "a.proto"));
}

static void test_corrupt_input_never_crashes(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("proto_index");
    st_rng rng;
    st_rng_seed(&rng, seed);
    size_t len = st_proto_descriptor_set_len;
    uint8_t *copy = malloc(len);
    /* Every truncation of the real set either parses or reports CORRUPTION. */
    for (size_t cut = 0; cut < len; cut += 1 + cut / 16) {
        st_proto_index *idx = NULL;
        st_status s = st_proto_index_create(st_proto_descriptor_set, cut, &idx);
        assert_true(s == ST_OK || s == ST_CORRUPTION);
        if (s == ST_CORRUPTION)
            assert_null(idx);
        st_proto_index_destroy(idx);
    }
    /* Random byte flips. */
    for (uint64_t round = 0; round < st_test_scaled(500); round++) {
        memcpy(copy, st_proto_descriptor_set, len);
        for (int k = 0; k < 4; k++)
            copy[st_rng_uniform(&rng, len)] = (uint8_t)st_rng_next(&rng);
        st_proto_index *idx = NULL;
        st_status s = st_proto_index_create(copy, len, &idx);
        assert_true(s == ST_OK || s == ST_CORRUPTION);
        if (idx) {
            /* Whatever parsed answers queries without crashing. */
            st_proto_index_find_symbol(idx, "strata.v1.KV");
            for (size_t i = 0; i < st_proto_index_file_count(idx); i++) {
                size_t out[8];
                st_proto_index_closure(idx, i, out, 8);
            }
        }
        st_proto_index_destroy(idx);
    }
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_set),
        cmocka_unit_test(test_dependencies),
        cmocka_unit_test(test_corrupt_input_never_crashes),
    };
    return cmocka_run_group_tests_name("proto_index", tests, NULL, NULL);
}
