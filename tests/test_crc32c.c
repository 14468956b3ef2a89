/* test_crc32c.c - CRC-32C values from RFC 3720 and the mask. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "engine/crc32c.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static void test_standard_values(void **state)
{
    (void)state;
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(st_crc32c(buf, sizeof(buf)), 0x8a9136aau);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(st_crc32c(buf, sizeof(buf)), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(st_crc32c(buf, sizeof(buf)), 0x46dd794eu);
    assert_int_equal(st_crc32c("123456789", 9), 0xe3069283u);
}

static void test_extend(void **state)
{
    (void)state;
    const char *s = "hello world";
    uint32_t whole = st_crc32c(s, strlen(s));
    uint32_t parts = st_crc32c_extend(st_crc32c(s, 5), s + 5, strlen(s) - 5);
    assert_int_equal(whole, parts);
    assert_int_equal(st_crc32c_extend(whole, "", 0), whole);
}

static void test_mask(void **state)
{
    (void)state;
    uint32_t crc = st_crc32c("foo", 3);
    assert_int_not_equal(crc, st_crc32c_mask(crc));
    assert_int_not_equal(crc, st_crc32c_mask(st_crc32c_mask(crc)));
    assert_int_equal(crc, st_crc32c_unmask(st_crc32c_mask(crc)));
    assert_int_equal(crc, st_crc32c_unmask(st_crc32c_unmask(st_crc32c_mask(st_crc32c_mask(crc)))));
}

/*
 * A checksum must not leave the upper halves of the vector registers in use: ISA-L's AVX-512
 * code does, and every SSE instruction after it then ran with a transition penalty (scans took
 * 2.4 times as long). XGETBV with ECX = 1 reads XINUSE: bit 2 is the upper 128 bits of YMM0-15,
 * bit 6 the upper 256 bits of ZMM0-15.
 */
static void test_leaves_vector_state_clean(void **state)
{
    (void)state;
    static uint8_t buf[8192];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = st_crc32c(buf, sizeof(buf));
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_count(0xd, 1, &a, &b, &c, &d) && (a & (1u << 2))) {
        /* Again, so that nothing runs between the checksum and the read of XINUSE. */
        (void)st_crc32c(buf, sizeof(buf));
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
        assert_int_equal(lo & ((1u << 2) | (1u << 6)), 0);
    }
#endif
    /* The value is unchanged by the clean-up, and matches the bytes fed in two pieces. */
    assert_int_equal(st_crc32c_extend(st_crc32c(buf, 100), buf + 100, sizeof(buf) - 100), whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_values),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_leaves_vector_state_clean),
    };
    return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
