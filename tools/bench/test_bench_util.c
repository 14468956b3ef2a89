/*
 * test_bench_util.c - histogram percentiles, JSON writer, /proc parsers, generators, sizes,
 * flags, files and report formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/testutil.h"
#include "tools/bench/bench_util.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The exact percentile by the histogram's definition: the ceil(p/100 * n)-th smallest. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void test_hist_small_values_exact(void **state)
{
    (void)state;
    st_bench_hist *h;
    assert_int_equal(st_bench_hist_create(&h), ST_OK);
    assert_int_equal(st_bench_hist_percentile(h, 50), 0);
    assert_int_equal(st_bench_hist_count(h), 0);
    for (uint64_t v = 1; v <= 100; v++)
        st_bench_hist_add(h, v);
    assert_int_equal(st_bench_hist_count(h), 100);
    assert_int_equal(st_bench_hist_min(h), 1);
    assert_int_equal(st_bench_hist_max(h), 100);
    /* Below 128 every value has its own bucket, so percentiles are exact. */
    assert_int_equal(st_bench_hist_percentile(h, 50), 50);
    assert_int_equal(st_bench_hist_percentile(h, 99), 99);
    assert_int_equal(st_bench_hist_percentile(h, 99.9), 100);
    assert_int_equal(st_bench_hist_percentile(h, 100), 100);
    assert_int_equal(st_bench_hist_percentile(h, 0.5), 1);
    assert_true(fabs(st_bench_hist_mean(h) - 50.5) < 1e-9);

    st_bench_hist_clear(h);
    assert_int_equal(st_bench_hist_count(h), 0);
    st_bench_hist_add(h, 1);
    st_bench_hist_add(h, 2);
    assert_int_equal(st_bench_hist_percentile(h, 50), 1); /* ceil(0.5 * 2) = rank 1 */
    st_bench_hist_destroy(h);
    st_bench_hist_destroy(NULL);
}

static void test_hist_random_within_resolution(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("bench_util hist");
    st_rng rng;
    st_rng_seed(&rng, seed);
    const size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    st_bench_hist *h, *h2;
    assert_int_equal(st_bench_hist_create(&h), ST_OK);
    assert_int_equal(st_bench_hist_create(&h2), ST_OK);
    for (size_t i = 0; i < n; i++) {
        /* Log-uniform over 1 ns .. ~1 s, the span of real latencies, with a heavy tail. */
        unsigned bits = (unsigned)st_rng_uniform(&rng, 30);
        v[i] = (st_rng_next(&rng) >> (64 - bits - 1)) | 1;
        st_bench_hist_add(i % 2 ? h : h2, v[i]);
    }
    st_bench_hist_merge(h, h2);
    assert_int_equal(st_bench_hist_count(h), n);
    qsort(v, n, sizeof *v, cmp_u64);
    assert_int_equal(st_bench_hist_min(h), v[0]);
    assert_int_equal(st_bench_hist_max(h), v[n - 1]);
    const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double want = (double)exact_percentile(v, n, ps[i]);
        double got = (double)st_bench_hist_percentile(h, ps[i]);
        /* Half a bucket either way: 1/128 relative, plus 1 for the integer midpoint. */
        assert_true(fabs(got - want) <= want / 128.0 + 1.0);
    }
    long double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    assert_true(fabs(st_bench_hist_mean(h) - (double)(sum / n)) < 1e-6 * (double)(sum / n));
    st_bench_hist_destroy(h2);
    st_bench_hist_destroy(h);
    free(v);
}

static void test_hist_huge_values(void **state)
{
    (void)state;
    st_bench_hist *h;
    assert_int_equal(st_bench_hist_create(&h), ST_OK);
    st_bench_hist_add(h, UINT64_MAX);
    st_bench_hist_add(h, 0);
    assert_int_equal(st_bench_hist_percentile(h, 100), UINT64_MAX);
    assert_int_equal(st_bench_hist_percentile(h, 50), 0);
    st_bench_hist_destroy(h);
}

static void test_hist_latency(void **state)
{
    (void)state;
    st_bench_hist *h;
    assert_int_equal(st_bench_hist_create(&h), ST_OK);
    st_bench_latency lat;
    st_bench_hist_latency(h, &lat);
    assert_true(lat.p50_us == 0 && lat.p99_us == 0 && lat.p999_us == 0 && lat.max_us == 0 &&
                lat.mean_us == 0);
    /* Below 128 ns every value has its own bucket, so the figures are exact. */
    for (uint64_t v = 1; v <= 100; v++)
        st_bench_hist_add(h, v);
    st_bench_hist_latency(h, &lat);
    assert_true(lat.p50_us == 0.05);
    assert_true(lat.p99_us == 0.099);
    assert_true(lat.p999_us == 0.1);
    assert_true(lat.max_us == 0.1);
    assert_true(lat.mean_us == 0.0505);
    st_bench_hist_destroy(h);
}

/* Run `fn` against a JSON writer on a memory stream and compare the text. */
static char *json_text(void (*fn)(st_bench_json *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    st_bench_json *j;
    assert_int_equal(st_bench_json_create(f, &j), ST_OK);
    fn(j);
    st_bench_json_destroy(j);
    fclose(f);
    return buf;
}

static void json_nested(st_bench_json *j)
{
    st_bench_json_begin_object(j, NULL);
    st_bench_json_string(j, "s", "a\"b\\c\nd\x01");
    st_bench_json_uint(j, "u", UINT64_MAX);
    st_bench_json_int(j, "i", -5);
    st_bench_json_double(j, "d", 1.5);
    st_bench_json_double(j, "nan", NAN);
    st_bench_json_double(j, "inf", INFINITY);
    st_bench_json_bool(j, "t", true);
    st_bench_json_null(j, "n");
    st_bench_json_string(j, "null_string", NULL);
    st_bench_json_begin_array(j, "a");
    st_bench_json_uint(j, NULL, 1);
    st_bench_json_begin_object(j, NULL);
    st_bench_json_end_object(j);
    st_bench_json_begin_array(j, NULL);
    st_bench_json_end_array(j);
    st_bench_json_double(j, NULL, 1234567.25);
    st_bench_json_end_array(j);
    st_bench_json_end_object(j);
}

static void json_scalar(st_bench_json *j)
{
    st_bench_json_string(j, NULL, "x");
}

static void test_json(void **state)
{
    (void)state;
    char *t = json_text(json_nested);
    assert_string_equal(t, "{\"s\":\"a\\\"b\\\\c\\nd\\u0001\",\"u\":18446744073709551615,"
                           "\"i\":-5,\"d\":1.5,\"nan\":null,\"inf\":null,\"t\":true,\"n\":null,"
                           "\"null_string\":null,\"a\":[1,{},[],1234567.25]}\n");
    free(t);
    t = json_text(json_scalar);
    assert_string_equal(t, "\"x\"\n");
    free(t);
}

static void json_goals(st_bench_json *j)
{
    st_bench_json_begin_array(j, NULL);
    st_bench_json_begin_object(j, NULL);
    st_bench_json_goal(j, "ratio", 2.5, 2.0, true);
    st_bench_json_end_object(j);
    st_bench_json_begin_object(j, NULL);
    st_bench_json_goal(j, "value", 1.25, 1.0, false);
    st_bench_json_end_object(j);
    st_bench_json_begin_object(j, NULL);
    st_bench_json_goal(j, "ratio", NAN, 1.5, false);
    st_bench_json_end_object(j);
    st_bench_json_end_array(j);
}

static void test_reports(void **state)
{
    (void)state;
    assert_true(st_bench_ratio(6, 3) == 2);
    assert_true(isnan(st_bench_ratio(1, 0)));
    assert_true(isnan(st_bench_ratio(1, -2)));
    assert_true(isnan(st_bench_ratio(NAN, 1)));
    assert_true(isnan(st_bench_ratio(1, NAN)));
    char buf[16];
    st_bench_fmt_num(buf, sizeof buf, 1.23456, 2);
    assert_string_equal(buf, "1.23");
    st_bench_fmt_num(buf, sizeof buf, 41.5, 0);
    assert_string_equal(buf, "42");
    st_bench_fmt_num(buf, sizeof buf, NAN, 1);
    assert_string_equal(buf, "-");
    assert_string_equal(st_bench_goal_verdict(2.0, 2.0, true), "met");
    assert_string_equal(st_bench_goal_verdict(1.9, 2.0, true), "MISSED");
    assert_string_equal(st_bench_goal_verdict(1.0, 1.0, false), "met");
    assert_string_equal(st_bench_goal_verdict(1.1, 1.0, false), "MISSED");
    assert_string_equal(st_bench_goal_verdict(NAN, 1.0, true), "no result");
    char *t = json_text(json_goals);
    assert_string_equal(t, "[{\"comparison\":\">=\",\"target\":2,\"ratio\":2.5,\"met\":true},"
                           "{\"comparison\":\"<=\",\"target\":1,\"value\":1.25,\"met\":false},"
                           "{\"comparison\":\"<=\",\"target\":1.5,\"ratio\":null,\"met\":null}]\n");
    free(t);
}

static void test_parse_proc_stat(void **state)
{
    (void)state;
    const char *text = "cpu  100 2 30 4000 50 6 7 8 9 10\n"
                       "cpu0 50 1 15 2000 25 3 3 4 0 0\n"
                       "intr 12345\n";
    uint64_t busy, idle, iowait;
    assert_int_equal(st_bench_parse_proc_stat(text, "t", &busy, &idle, &iowait), ST_OK);
    assert_int_equal(busy, 100 + 2 + 30 + 6 + 7 + 8); /* guest fields are inside user */
    assert_int_equal(idle, 4000);
    assert_int_equal(iowait, 50);
    /* Old kernels have only four fields. */
    assert_int_equal(st_bench_parse_proc_stat("cpu 1 2 3 4\n", "t", &busy, &idle, &iowait), ST_OK);
    assert_int_equal(busy, 6);
    assert_int_equal(iowait, 0);
    assert_int_equal(st_bench_parse_proc_stat("cpu0 1 2 3 4\n", "t", &busy, &idle, &iowait),
                     ST_CORRUPTION);
    assert_int_equal(st_bench_parse_proc_stat("cpu 1 2\n", "/proc/stat", &busy, &idle, &iowait),
                     ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), "/proc/stat"));
}

static void test_parse_pid_stat(void **state)
{
    (void)state;
    /* A command name with spaces and a ")" of its own must not shift the fields. */
    const char *text = "4242 (we) ird name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
                       "1234 567 0 0 20 0 3 0 99 1000000 500\n";
    uint64_t ticks;
    assert_int_equal(st_bench_parse_pid_stat(text, "t", &ticks), ST_OK);
    assert_int_equal(ticks, 1234 + 567);
    assert_int_equal(st_bench_parse_pid_stat("4242 (x) S 1 2 3\n", "t", &ticks), ST_CORRUPTION);
    assert_int_equal(st_bench_parse_pid_stat("no parens", "t", &ticks), ST_CORRUPTION);
    assert_int_equal(st_bench_parse_pid_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5 0\n", "t", &ticks),
                     ST_CORRUPTION);
}

static void test_parse_field_and_live_proc(void **state)
{
    (void)state;
    const char *status = "Name:\tx\nVmPeak:\t  9999 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
    uint64_t v;
    assert_int_equal(st_bench_parse_field(status, "t", "VmHWM", &v), ST_OK);
    assert_int_equal(v, 1234);
    assert_int_equal(st_bench_parse_field(status, "t", "VmRSS", &v), ST_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(st_bench_parse_field(status, "t", "VmSwap", &v), ST_CORRUPTION);
    assert_int_equal(st_bench_parse_field("rchar: 5\nwchar: 77\n", "t", "wchar", &v), ST_OK);
    assert_int_equal(v, 77);
    assert_int_equal(st_bench_parse_field("wchar: x\n", "t", "wchar", &v), ST_CORRUPTION);

    /* The live files: peak RSS grows when we touch memory, wchar when we write. */
    st_bench_mem m0, m1;
    assert_int_equal(st_bench_mem_sample(&m0), ST_OK);
    assert_true(m0.peak_kb >= m0.rss_kb && m0.rss_kb > 0);
    assert_true(m0.rss_kb >= m0.anon_kb + m0.file_kb);
    size_t big = 64u << 20;
    char *p = malloc(big);
    assert_non_null(p);
    memset(p, 1, big);
    assert_int_equal(st_bench_mem_sample(&m1), ST_OK);
    assert_true(m1.peak_kb >= m0.peak_kb + 60 * 1024);
    assert_true(m1.anon_kb >= m0.anon_kb + 60 * 1024);
    free(p);

    uint64_t w0, w1;
    assert_int_equal(st_bench_io_written(&w0), ST_OK);
    FILE *f = tmpfile();
    assert_non_null(f);
    char block[4096] = {0};
    assert_int_equal(write(fileno(f), block, sizeof block), (ssize_t)sizeof block);
    fclose(f);
    assert_int_equal(st_bench_io_written(&w1), ST_OK);
    assert_true(w1 - w0 >= sizeof block);

    /* A busy loop shows up as CPU of this process (loosely: others may share the cores). */
    st_bench_cpu a, b;
    st_bench_cpu_use use;
    assert_int_equal(st_bench_cpu_sample(&a), ST_OK);
    volatile uint64_t x = 0;
    uint64_t until = st_bench_now_ns() + 300 * 1000000ull;
    while (st_bench_now_ns() < until)
        x++;
    assert_int_equal(st_bench_cpu_sample(&b), ST_OK);
    st_bench_cpu_diff(&a, &b, &use);
    assert_true(use.self_cores > 0.2 && use.self_cores < 1.5);
    assert_true(use.other_cores >= 0);
}

static void test_median(void **state)
{
    (void)state;
    double a[] = {5, 1, 3};
    assert_true(st_bench_median(a, 3) == 3);
    double b[] = {4, 1, 3, 2};
    assert_true(st_bench_median(b, 4) == 2.5);
    assert_true(isnan(st_bench_median(b, 0)));
}

static void test_rng_deterministic_and_uniform(void **state)
{
    (void)state;
    st_bench_rng a, b;
    st_bench_rng_seed(&a, 42);
    st_bench_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(st_bench_rng_next(&a) == st_bench_rng_next(&b));
    /* The same seed gives the same bytes, whatever the machine: pin the first value. */
    st_bench_rng_seed(&a, 0);
    assert_true(st_bench_rng_next(&a) == 0xe220a8397b1dcdafull);

    int counts[10] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t v = st_bench_rng_uniform(&a, 10);
        assert_true(v < 10);
        counts[v]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(counts[i] > 9500 && counts[i] < 10500);
    assert_int_equal(st_bench_rng_uniform(&a, 1), 0);

    /* Bytes: every byte value appears in a megabyte (incompressible enough for our use). */
    size_t n = 1u << 20;
    uint8_t *buf = malloc(n + 3);
    assert_non_null(buf);
    st_bench_rng_bytes(&a, buf, n + 3);
    int seen[256] = {0};
    for (size_t i = 0; i < n; i++)
        seen[buf[i]]++;
    for (int i = 0; i < 256; i++)
        assert_true(seen[i] > 3500 && seen[i] < 4700);
    free(buf);
}

static void test_value_pool(void **state)
{
    (void)state;
    const size_t n = ST_BENCH_VALUE_POOL + 100;
    char *a = st_bench_value_pool(301, 100), *b = st_bench_value_pool(301, 100);
    char *c = st_bench_value_pool(302, 100);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    /* The same bytes for every system and run with the same seed, others with another. */
    assert_memory_equal(a, b, n);
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += a[i] == c[i];
    assert_true(same < n / 64);
    free(a);
    free(b);
    free(c);
}

static void test_keys(void **state)
{
    (void)state;
    assert_int_equal(st_bench_key_digits(1), 1);
    assert_int_equal(st_bench_key_digits(10), 1);
    assert_int_equal(st_bench_key_digits(11), 2);
    assert_int_equal(st_bench_key_digits(1000000), 6);
    assert_int_equal(st_bench_key_digits(1000001), 7);
    assert_int_equal(st_bench_key_digits(UINT64_MAX), 20);
    char k[24];
    st_bench_format_key(k, 16, 1234);
    assert_memory_equal(k, "0000000000001234", 16);
    st_bench_format_key(k, 4, 1234);
    assert_memory_equal(k, "1234", 4);
    st_bench_format_key(k, 22, UINT64_MAX);
    assert_memory_equal(k, "0018446744073709551615", 22);
    /* Byte order is numeric order. */
    char a[16], b[16];
    st_bench_format_key(a, 16, 99);
    st_bench_format_key(b, 16, 100);
    assert_true(memcmp(a, b, 16) < 0);
}

static void test_perm_is_bijection(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("bench_util perm");
    const uint64_t sizes[] = {1, 2, 3, 7, 100, 1000, 4096, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint64_t n = sizes[s];
        st_bench_perm p;
        st_bench_perm_init(&p, n, seed + s);
        uint8_t *hit = calloc(n, 1);
        assert_non_null(hit);
        uint64_t fixed = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t x = st_bench_perm_at(&p, i);
            assert_true(x < n);
            assert_int_equal(hit[x], 0);
            hit[x] = 1;
            fixed += x == i;
        }
        /* Shuffled, not the identity (a random permutation has about one fixed point). */
        if (n >= 100)
            assert_true(fixed < 10);
        free(hit);
    }
    /* Same seed, same order; another seed, another order. */
    st_bench_perm a, b, c;
    st_bench_perm_init(&a, 1000, 7);
    st_bench_perm_init(&b, 1000, 7);
    st_bench_perm_init(&c, 1000, 8);
    int same = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        assert_true(st_bench_perm_at(&a, i) == st_bench_perm_at(&b, i));
        same += st_bench_perm_at(&a, i) == st_bench_perm_at(&c, i);
    }
    assert_true(same < 20);
}

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(st_bench_parse_size("123", &v), ST_OK);
    assert_int_equal(v, 123);
    assert_int_equal(st_bench_parse_size("64K", &v), ST_OK);
    assert_int_equal(v, 64 * 1024);
    assert_int_equal(st_bench_parse_size("8MiB", &v), ST_OK);
    assert_int_equal(v, 8u << 20);
    assert_int_equal(st_bench_parse_size("1g", &v), ST_OK);
    assert_int_equal(v, 1u << 30);
    assert_int_equal(st_bench_parse_size("", &v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_bench_parse_size(" 5", &v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_bench_parse_size("-5", &v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_bench_parse_size("5X", &v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_bench_parse_size("99999999999999999999", &v), ST_INVALID_ARGUMENT);
    assert_int_equal(st_bench_parse_size("17179869184G", &v), ST_INVALID_ARGUMENT);
}

typedef struct flag_seen {
    uint64_t size;
    bool on;
    int calls;
} flag_seen;

static bool set_test_flag(void *ctx, int code, char *arg)
{
    flag_seen *fs = ctx;
    fs->calls++;
    if (code == 256)
        return st_bench_flag_size("test", "--size", arg, &fs->size);
    if (code == 257) {
        fs->on = true;
        return true;
    }
    return false;
}

static FILE *g_usage_to;

static void record_usage(FILE *out)
{
    g_usage_to = out;
}

/* Parse the arguments after "test" (NULL-terminated) with st_bench_parse_flags. */
static int parse_test_flags(flag_seen *fs, const char *const *args)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 256},
        {"on", no_argument, NULL, 257},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *argv[16] = {"test"};
    int argc = 1;
    while (*args)
        argv[argc++] = (char *)*args++;
    memset(fs, 0, sizeof *fs);
    g_usage_to = NULL;
    return st_bench_parse_flags("test", argc, argv, opts, set_test_flag, fs, record_usage);
}

static void test_parse_flags(void **state)
{
    (void)state;
    flag_seen fs;
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--size", "8K", "--on", NULL}), 0);
    assert_int_equal(fs.size, 8192);
    assert_true(fs.on);
    assert_int_equal(fs.calls, 2);
    assert_null(g_usage_to);
    /* Parsing again starts from the first argument (optind is reset). */
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--on", NULL}), 0);
    assert_true(fs.on);
    assert_int_equal(fs.size, 0);

    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--help", "--on", NULL}), 1);
    assert_true(g_usage_to == stdout);
    assert_false(fs.on);
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"-h", NULL}), 1);
    assert_true(g_usage_to == stdout);

    /* Refused value, unknown flag, missing argument, operand: 2, usage on stderr for getopt's. */
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--size", "8X", "--on", NULL}), 2);
    assert_false(fs.on);
    assert_null(g_usage_to);
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--bogus", NULL}), 2);
    assert_true(g_usage_to == stderr);
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--on", "--size", NULL}), 2);
    assert_true(g_usage_to == stderr);
    assert_int_equal(parse_test_flags(&fs, (const char *const[]){"--on", "extra", NULL}), 2);
    assert_null(g_usage_to);
}

static void test_files(void **state)
{
    (void)state;
    char *base = st_test_mkdtemp("bench_util");
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    assert_int_equal(setenv("TMPDIR", base, 1), 0);

    char dir[4096];
    assert_int_equal(st_bench_mkdtemp("strata-bench-test", dir, sizeof dir), ST_OK);
    size_t blen = strlen(base);
    assert_memory_equal(dir, base, blen);
    assert_memory_equal(dir + blen, "/strata-bench-test-", 19);
    assert_int_equal(strlen(dir), blen + 19 + 6);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* A tree with a file, a subdirectory and a dangling link, removed as a whole. */
    char *sub = st_test_path(dir, "sub"), *file = st_test_path(sub, "f");
    char *link = st_test_path(dir, "link");
    assert_int_equal(mkdir(sub, 0755), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
    assert_int_equal(symlink("/nonexistent", link), 0);
    assert_int_equal(st_bench_rm_tree(dir), ST_OK);
    assert_int_equal(lstat(dir, &st), -1);
    /* A missing path is fine. */
    assert_int_equal(st_bench_rm_tree(dir), ST_OK);

    /* A TMPDIR that does not exist: the error names the path. */
    char *missing = st_test_path(base, "missing");
    assert_int_equal(setenv("TMPDIR", missing, 1), 0);
    assert_int_not_equal(st_bench_mkdtemp("x", dir, sizeof dir), ST_OK);
    assert_non_null(strstr(st_errmsg(), "mkdtemp"));
    assert_non_null(strstr(st_errmsg(), missing));

    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    free(missing);
    free(link);
    free(file);
    free(sub);
    st_test_rmdir(base);
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_small_values_exact),
        cmocka_unit_test(test_hist_random_within_resolution),
        cmocka_unit_test(test_hist_huge_values),
        cmocka_unit_test(test_hist_latency),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_parse_proc_stat),
        cmocka_unit_test(test_parse_pid_stat),
        cmocka_unit_test(test_parse_field_and_live_proc),
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_rng_deterministic_and_uniform),
        cmocka_unit_test(test_value_pool),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_perm_is_bijection),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_flags),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests_name("bench_util", tests, NULL, NULL);
}
