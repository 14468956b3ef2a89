/* test_coding.c - fixed-width and varint encodings, length-prefixed strings, st_buf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/coding.h"

static void test_fixed(void **state)
{
    (void)state;
    uint8_t b[8];
    st_put_fixed32(b, 0x01020304u);
    assert_int_equal(b[0], 0x04);
    assert_int_equal(b[3], 0x01);
    assert_int_equal(st_get_fixed32(b), 0x01020304u);
    st_put_fixed64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 0x08);
    assert_int_equal(b[7], 0x01);
    assert_true(st_get_fixed64(b) == 0x0102030405060708ull);

    const uint8_t *p = b;
    uint32_t v32;
    assert_false(st_decode_fixed32(&p, b + 3, &v32));
    assert_ptr_equal(p, b);
}

static void test_varint_roundtrip(void **state)
{
    (void)state;
    uint64_t values[] = {
        0,         1, 127, 128, 255, 300, 16383, 16384, (1ull << 32) - 1, 1ull << 32, (1ull << 63),
        UINT64_MAX};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint8_t buf[ST_MAX_VARINT64];
        uint8_t *end = st_encode_varint64(buf, values[i]);
        assert_int_equal(end - buf, st_varint_length(values[i]));
        const uint8_t *p = buf;
        uint64_t got;
        assert_true(st_decode_varint64(&p, end, &got));
        assert_true(got == values[i]);
        assert_ptr_equal(p, end);
        /* Every truncation fails and leaves the cursor alone. */
        for (uint8_t *lim = buf; lim < end; lim++) {
            p = buf;
            assert_false(st_decode_varint64(&p, lim, &got));
            assert_ptr_equal(p, buf);
        }
    }
}

static void test_varint32_overflow(void **state)
{
    (void)state;
    /* 2^32 does not fit a varint32. */
    uint8_t buf[ST_MAX_VARINT64];
    uint8_t *end = st_encode_varint64(buf, 1ull << 32);
    const uint8_t *p = buf;
    uint32_t v;
    assert_false(st_decode_varint32(&p, end, &v));
    /* Eleven continuation bytes are not a varint64. */
    uint8_t bad[11];
    memset(bad, 0xff, sizeof(bad));
    uint64_t v64;
    p = bad;
    assert_false(st_decode_varint64(&p, bad + sizeof(bad), &v64));
}

static void test_lp_and_buf(void **state)
{
    (void)state;
    st_buf b;
    st_buf_init(&b);
    const uint8_t weird[] = {0, 0xff, 0, 'a'};
    assert_true(st_buf_put_lp(&b, weird, sizeof(weird)));
    assert_true(st_buf_put_lp(&b, NULL, 0));
    assert_true(st_buf_put_fixed64(&b, 42));
    for (int i = 0; i < 1000; i++)
        assert_true(st_buf_put_varint32(&b, (uint32_t)i * 7919u));

    const uint8_t *p = b.data, *lim = b.data + b.len;
    const uint8_t *d;
    size_t n;
    assert_true(st_decode_lp(&p, lim, &d, &n));
    assert_int_equal(n, sizeof(weird));
    assert_memory_equal(d, weird, n);
    assert_true(st_decode_lp(&p, lim, &d, &n));
    assert_int_equal(n, 0);
    uint64_t v64;
    assert_true(st_decode_fixed64(&p, lim, &v64));
    assert_int_equal(v64, 42);
    for (int i = 0; i < 1000; i++) {
        uint32_t v;
        assert_true(st_decode_varint32(&p, lim, &v));
        assert_int_equal(v, (uint32_t)i * 7919u);
    }
    assert_ptr_equal(p, lim);

    /* A length that runs past the end is refused. */
    uint8_t shortlp[] = {5, 'a', 'b'};
    p = shortlp;
    assert_false(st_decode_lp(&p, shortlp + sizeof(shortlp), &d, &n));
    st_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_varint_roundtrip),
        cmocka_unit_test(test_varint32_overflow),
        cmocka_unit_test(test_lp_and_buf),
    };
    return cmocka_run_group_tests_name("coding", tests, NULL, NULL);
}
