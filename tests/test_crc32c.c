/* test_crc32c.c - CRC-32C values from RFC 3720 and the mask. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "engine/crc32c.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_values),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_mask),
    };
    return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
