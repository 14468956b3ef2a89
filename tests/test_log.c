/* test_log.c - the record log: framing, round trips, torn tails, corruption, growing files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/env.h"
#include "engine/log_format.h"
#include "engine/log_reader.h"
#include "engine/log_writer.h"
#include "tests/support/env_fault.h"
#include "tests/support/testutil.h"

#define BLOCK  ST_LOG_BLOCK_SIZE
#define HEADER ST_LOG_HEADER_SIZE

/*
 * The mutation test is single-threaded: TSan finds nothing there but slows it ten-fold, so it
 * runs a quarter of the iterations under TSan (ASan runs them all: that is where it proves the
 * reader never reads out of bounds).
 */
#if defined(__SANITIZE_THREAD__)
#define MUTATION_ITERS 500
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MUTATION_ITERS 500
#endif
#endif
#ifndef MUTATION_ITERS
#define MUTATION_ITERS 2000
#endif

/* ---- an in-memory file, so byte-level damage is cheap to make and undo ---- */

typedef struct memfile {
    st_buf data;
    int appends;
    bool fail_reads;
} memfile;

static st_status mem_append(st_file *f, const void *d, size_t n)
{
    memfile *m = (memfile *)f;
    m->appends++;
    return st_buf_append(&m->data, d, n) ? ST_OK : ST_NO_MEMORY;
}

static st_status mem_read_at(st_file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
    memfile *m = (memfile *)f;
    if (m->fail_reads) {
        *got = 0;
        return st_error(ST_IO_ERROR, "memfile: injected read error");
    }
    size_t k = 0;
    if (off < m->data.len) {
        k = m->data.len - (size_t)off;
        if (k > n)
            k = n;
        memcpy(buf, m->data.data + off, k);
    }
    *got = k;
    return ST_OK;
}

static st_status mem_sync(st_file *f)
{
    (void)f;
    return ST_OK;
}

static st_status mem_size(st_file *f, uint64_t *size)
{
    *size = ((memfile *)f)->data.len;
    return ST_OK;
}

static st_status mem_close(st_file *f)
{
    (void)f; /* the test owns the memfile */
    return ST_OK;
}

static st_env mem_env = {
    .append = mem_append,
    .read_at = mem_read_at,
    .sync = mem_sync,
    .size = mem_size,
    .close = mem_close,
};

static memfile *mem_new(void)
{
    memfile *m = calloc(1, sizeof(*m));
    st_buf_init(&m->data);
    return m;
}

static void mem_free(memfile *m)
{
    st_buf_free(&m->data);
    free(m);
}

static void mem_set(memfile *m, const uint8_t *data, size_t n)
{
    st_buf_clear(&m->data);
    assert_true(st_buf_append(&m->data, data, n));
}

/* ---- records ---- */

/* Record idx of length len: its index and length first (when they fit), then a pattern. */
static void make_record(uint8_t *buf, size_t len, uint32_t idx)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(idx * 131u + i * 7u + (i >> 9));
    if (len >= 8) {
        st_put_fixed32(buf, idx);
        st_put_fixed32(buf + 4, (uint32_t)len);
    }
}

static bool record_is(st_slice rec, size_t len, uint32_t idx)
{
    if (rec.len != len)
        return false;
    uint8_t *want = malloc(len ? len : 1);
    make_record(want, len, idx);
    bool eq = len == 0 || memcmp(want, rec.data, len) == 0;
    free(want);
    return eq;
}

/* Where a record added at file size `pre` starts: after the trailer, if one is needed. */
static uint64_t start_of(uint64_t pre)
{
    uint64_t room = BLOCK - pre % BLOCK;
    return room < HEADER ? pre + room : pre;
}

/* Append records idx0.. of the given sizes; record their start offsets and ends. */
static void add_records(st_log_writer *w, const size_t *sizes, size_t n, uint32_t idx0,
                        uint64_t *starts, uint64_t *ends)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *buf = malloc(sizes[i] ? sizes[i] : 1);
        make_record(buf, sizes[i], idx0 + (uint32_t)i);
        uint64_t pre = st_log_writer_size(w);
        assert_int_equal(st_log_writer_add(w, buf, sizes[i]), ST_OK);
        if (starts)
            starts[i] = start_of(pre);
        if (ends)
            ends[i] = st_log_writer_size(w);
        free(buf);
    }
}

/*
 * Read from `from`, with the file taken to end at `limit`, and expect exactly records idx0..
 * (sizes, starts), then a clean end.
 */
static void expect_records_upto(st_env *env, st_file *f, uint64_t from, const size_t *sizes,
                                size_t n, uint32_t idx0, const uint64_t *starts, uint64_t end,
                                uint64_t limit)
{
    st_log_reader *r;
    assert_int_equal(st_log_reader_create(env, f, "test.log", from, &r), ST_OK);
    st_log_reader_set_limit(r, limit);
    for (size_t i = 0; i < n; i++) {
        st_slice rec;
        uint64_t off = UINT64_MAX;
        st_status s = st_log_reader_next(r, &rec, &off);
        if (s != ST_OK)
            fail_msg("record %zu: %s %s", i, st_status_name(s), st_errmsg());
        assert_true(record_is(rec, sizes[i], idx0 + (uint32_t)i));
        if (starts)
            assert_int_equal(off, starts[i]);
    }
    st_slice rec;
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_good_end(r), end);
    assert_int_equal(st_log_reader_torn_bytes(r), 0);
    /* Still at the end when asked again. */
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_good_end(r), end);
    st_log_reader_destroy(r);
}

/* Read from `from` and expect exactly records idx0.. (sizes, starts), then a clean end. */
static void expect_records(st_env *env, st_file *f, uint64_t from, const size_t *sizes, size_t n,
                           uint32_t idx0, const uint64_t *starts, uint64_t end)
{
    expect_records_upto(env, f, from, sizes, n, idx0, starts, end, UINT64_MAX);
}

typedef struct {
    char *dir;
    char *path;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = st_test_mkdtemp("log");
    fx->path = st_test_path(fx->dir, "000001.log");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    st_test_rmdir(fx->dir);
    free(fx->path);
    free(fx->dir);
    free(fx);
    return 0;
}

/* A writer appending to (or, mapped, storing into) the file at path, from its current end. */
static st_log_writer *env_writer(st_env *env, const char *path, bool append, bool mapped)
{
    st_file *f;
    uint64_t size = 0;
    assert_int_equal(env->open_writable(env, path, append, &f), ST_OK);
    assert_int_equal(env->size(f, &size), ST_OK);
    st_log_writer *w;
    assert_int_equal(mapped ? st_log_writer_create_mapped(env, f, size, &w)
                            : st_log_writer_create(env, f, size, &w),
                     ST_OK);
    return w;
}

static st_log_writer *posix_writer(const char *path, bool append)
{
    return env_writer(st_env_posix(), path, append, false);
}

static st_file *posix_reader_file(const char *path)
{
    st_env *env = st_env_posix();
    st_file *f;
    assert_int_equal(env->open_readable(env, path, &f), ST_OK);
    return f;
}

/* ---- tests ---- */

static void test_exact_bytes(void **state)
{
    (void)state;
    memfile *m = mem_new();
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
    assert_int_equal(st_log_writer_add(w, "abc", 3), ST_OK);
    assert_int_equal(st_log_writer_add(w, NULL, 0), ST_OK);
    assert_int_equal(m->data.len, 2 * HEADER + 3);
    const uint8_t *b = m->data.data;
    uint8_t crcin[4] = {ST_LOG_FULL, 'a', 'b', 'c'};
    assert_int_equal(st_get_fixed32(b), st_crc32c_mask(st_crc32c(crcin, 4)));
    assert_int_equal(b[4], 3);
    assert_int_equal(b[5], 0);
    assert_int_equal(b[6], ST_LOG_FULL);
    assert_memory_equal(b + 7, "abc", 3);
    b += HEADER + 3;
    assert_int_equal(st_get_fixed32(b), st_crc32c_mask(st_crc32c(crcin, 1)));
    assert_int_equal(b[4] | b[5], 0);
    assert_int_equal(b[6], ST_LOG_FULL);

    /* Fill the block to 3 bytes short of its end: the next record starts at the next block,
       after three zero bytes. */
    uint64_t used = m->data.len;
    size_t fill = BLOCK - used - HEADER - 3;
    uint8_t *big = calloc(1, 3 * BLOCK);
    assert_int_equal(st_log_writer_add(w, big, fill), ST_OK);
    assert_int_equal(st_log_writer_size(w), BLOCK - 3);
    assert_int_equal(st_log_writer_add(w, "z", 1), ST_OK);
    b = m->data.data;
    assert_int_equal(b[BLOCK - 3] | b[BLOCK - 2] | b[BLOCK - 1], 0);
    assert_int_equal(b[BLOCK + 6], ST_LOG_FULL);
    assert_int_equal(b[BLOCK + 4], 1);
    assert_int_equal(st_log_writer_size(w), BLOCK + HEADER + 1);

    /* A record of two blocks and a bit: FIRST filling the block, MIDDLE, LAST. */
    uint64_t at = st_log_writer_size(w);
    size_t len = 2 * (BLOCK - HEADER) + 10;
    assert_int_equal(st_log_writer_add(w, big, len), ST_OK);
    b = m->data.data + at;
    size_t first = BLOCK - (size_t)(at % BLOCK) - HEADER;
    assert_int_equal(b[6], ST_LOG_FIRST);
    assert_int_equal(b[4] | (b[5] << 8), first);
    b = m->data.data + 2 * BLOCK;
    assert_int_equal(b[6], ST_LOG_MIDDLE);
    assert_int_equal(b[4] | (b[5] << 8), BLOCK - HEADER);
    b = m->data.data + 3 * BLOCK;
    assert_int_equal(b[6], ST_LOG_LAST);
    assert_int_equal(b[4] | (b[5] << 8), len - first - (BLOCK - HEADER));
    assert_int_equal(m->appends, 5); /* one append per record */
    free(big);
    st_log_writer_destroy(w);
    mem_free(m);
}

static void test_roundtrip_sizes(void **state)
{
    fixture *fx = *state;
    const size_t edge = BLOCK - HEADER;
    size_t sizes[] = {0,
                      1,
                      0,
                      100,
                      edge - 1,
                      edge,
                      edge + 1,
                      BLOCK,
                      BLOCK + 1,
                      2 * edge,
                      2 * edge + 1,
                      3 * BLOCK,
                      1,
                      4u << 20,
                      0,
                      edge - 1 - HEADER};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    uint64_t starts[16], ends[16];
    st_log_writer *w = posix_writer(fx->path, false);
    add_records(w, sizes, n, 0, starts, ends);
    assert_int_equal(st_log_writer_sync(w), ST_OK);
    assert_int_equal(st_log_writer_synced_size(w), ends[n - 1]);
    st_log_writer_destroy(w);

    st_env *env = st_env_posix();
    uint64_t size;
    assert_int_equal(env->file_size(env, fx->path, &size), ST_OK);
    assert_int_equal(size, ends[n - 1]);
    st_file *f = posix_reader_file(fx->path);
    expect_records(env, f, 0, sizes, n, 0, starts, ends[n - 1]);
    env->close(f);
}

/* Records that end 0..HEADER+1 bytes before a block boundary, each followed by small ones. */
static void test_block_boundaries(void **state)
{
    (void)state;
    for (size_t lead = 0; lead <= HEADER + 1; lead++) {
        for (size_t second = 0; second < 3; second++) {
            memfile *m = mem_new();
            st_log_writer *w;
            assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
            size_t sizes[4] = {BLOCK - HEADER - lead, second, BLOCK - HEADER, 5};
            uint64_t starts[4], ends[4];
            add_records(w, sizes, 4, 0, starts, ends);
            assert_int_equal(m->data.len, ends[3]);
            if (lead > 0 && lead < HEADER)
                assert_int_equal(starts[1], BLOCK); /* skipped the trailer */
            expect_records(&mem_env, (st_file *)m, 0, sizes, 4, 0, starts, ends[3]);
            /* Starting at every record end reads the rest. */
            for (int i = 0; i < 4; i++)
                expect_records(&mem_env, (st_file *)m, ends[i], sizes + i + 1, (size_t)(3 - i),
                               (uint32_t)i + 1, starts + i + 1, ends[3]);
            st_log_writer_destroy(w);
            mem_free(m);
        }
    }
}

static void test_many_records(void **state)
{
    fixture *fx = *state;
    st_rng rng;
    st_rng_seed(&rng, st_test_seed("log.many_records"));
    size_t n = (size_t)st_test_scaled(5000);
    size_t *sizes = malloc(n * sizeof(*sizes));
    uint64_t *starts = malloc(n * sizeof(*starts));
    uint64_t *ends = malloc(n * sizeof(*ends));
    for (size_t i = 0; i < n; i++) {
        uint64_t pick = st_rng_uniform(&rng, 100);
        sizes[i] = pick < 10   ? 0
                   : pick < 90 ? st_rng_uniform(&rng, 300)
                               : st_rng_uniform(&rng, 100000);
    }
    st_log_writer *w = posix_writer(fx->path, false);
    add_records(w, sizes, n, 0, starts, ends);
    st_log_writer_destroy(w);
    st_file *f = posix_reader_file(fx->path);
    expect_records(st_env_posix(), f, 0, sizes, n, 0, starts, ends[n - 1]);
    /* And from a record end in the middle. */
    expect_records(st_env_posix(), f, ends[n / 2], sizes + n / 2 + 1, n - n / 2 - 1,
                   (uint32_t)(n / 2 + 1), starts + n / 2 + 1, ends[n - 1]);
    st_env_posix()->close(f);
    free(sizes);
    free(starts);
    free(ends);
}

static void test_reopen_and_append(void **state)
{
    fixture *fx = *state;
    /* The first session ends 3 bytes short of a block end, inside a would-be trailer. */
    size_t sizes[6] = {10, BLOCK - 2 * HEADER - 10 - 3, 7, 70000, 0, 33};
    uint64_t starts[6], ends[6];
    st_log_writer *w = posix_writer(fx->path, false);
    add_records(w, sizes, 2, 0, starts, ends);
    assert_int_equal(ends[1], BLOCK - 3);
    st_log_writer_destroy(w);

    w = posix_writer(fx->path, true);
    assert_int_equal(st_log_writer_size(w), BLOCK - 3);
    assert_int_equal(st_log_writer_synced_size(w), 0);
    add_records(w, sizes + 2, 2, 2, starts + 2, ends + 2);
    assert_int_equal(starts[2], BLOCK);
    st_log_writer_destroy(w);

    w = posix_writer(fx->path, true);
    add_records(w, sizes + 4, 2, 4, starts + 4, ends + 4);
    st_log_writer_destroy(w);

    st_file *f = posix_reader_file(fx->path);
    expect_records(st_env_posix(), f, 0, sizes, 6, 0, starts, ends[5]);
    st_env_posix()->close(f);
}

/* Read the first `good` records of sizes[], then expect NOT_FOUND at good_end with torn bytes. */
static void expect_torn(st_env *env, st_file *f, const size_t *sizes, size_t good,
                        uint64_t good_end, uint64_t torn)
{
    st_log_reader *r;
    st_slice rec;
    assert_int_equal(st_log_reader_create(env, f, "test.log", 0, &r), ST_OK);
    for (size_t i = 0; i < good; i++) {
        st_status s = st_log_reader_next(r, &rec, NULL);
        if (s != ST_OK)
            fail_msg("record %zu: %s %s", i, st_status_name(s), st_errmsg());
        assert_true(record_is(rec, sizes[i], (uint32_t)i));
    }
    st_status s = st_log_reader_next(r, &rec, NULL);
    if (s != ST_NOT_FOUND)
        fail_msg("expected a torn tail, got %s %s", st_status_name(s), st_errmsg());
    assert_int_equal(st_log_reader_good_end(r), good_end);
    assert_int_equal(st_log_reader_torn_bytes(r), torn);
    st_log_reader_destroy(r);
}

/* Is t within 64 bytes of a fragment edge of the record [from, to) or of a block boundary? */
static bool near_edge(uint64_t t, uint64_t from, uint64_t to)
{
    uint64_t in_block = t % BLOCK;
    return t - from < 64 || to - t < 64 || in_block < 64 + HEADER || in_block > BLOCK - 64;
}

static void test_torn_truncation_every_byte(void **state)
{
    (void)state;
    /*
     * Four records end `gap` bytes before the first block boundary, then the last record is cut
     * at every byte: a FULL; a FIRST + LAST across the boundary; FIRST + MIDDLE + LAST (every
     * byte near a fragment edge, every 61st elsewhere); and a record after a 3-byte trailer.
     */
    struct {
        size_t gap, last;
        bool all;
    } cases[] = {{100, 80, true}, {100, 300, true}, {100, BLOCK + 300, false}, {3, 100, true}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t sizes[5] = {50, 0, BLOCK - cases[k].gap - 98, 20, cases[k].last};
        uint64_t ends[5];
        memfile *m = mem_new();
        st_log_writer *w;
        assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
        add_records(w, sizes, 5, 0, NULL, ends);
        st_log_writer_destroy(w);
        assert_int_equal(ends[3], BLOCK - cases[k].gap);
        uint8_t *full = malloc(m->data.len);
        size_t full_len = m->data.len;
        memcpy(full, m->data.data, full_len);
        uint64_t cuts = 0;
        for (uint64_t t = ends[3] + 1; t < ends[4]; t++) {
            if (!cases[k].all && !near_edge(t, ends[3], ends[4]) && t % 61 != 0)
                continue;
            mem_set(m, full, (size_t)t);
            expect_torn(&mem_env, (st_file *)m, sizes, 4, ends[3], t - ends[3]);
            cuts++;
        }
        assert_true(cuts > (cases[k].all ? cases[k].last : 500));
        /* Cut at the record boundary: a clean end. */
        mem_set(m, full, (size_t)ends[3]);
        expect_torn(&mem_env, (st_file *)m, sizes, 4, ends[3], 0);
        free(full);
        mem_free(m);
    }
}

static void test_torn_zeros_and_garbage(void **state)
{
    fixture *fx = *state;
    st_rng rng;
    st_rng_seed(&rng, st_test_seed("log.torn_garbage"));
    st_env *env = st_env_posix();
    size_t sizes[4] = {100, 40000, 3, 1000};
    uint64_t ends[4];
    size_t tails[] = {1, 6, 7, 8, 100, BLOCK, 40000, 100000};
    for (int garbage = 0; garbage < 2; garbage++) {
        for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
            st_log_writer *w = posix_writer(fx->path, false);
            add_records(w, sizes, 4, 0, NULL, ends);
            st_log_writer_destroy(w);
            uint8_t *tail = calloc(1, tails[t]);
            if (garbage)
                st_rng_bytes(&rng, tail, tails[t]);
            st_file *f;
            assert_int_equal(env->open_writable(env, fx->path, true, &f), ST_OK);
            assert_int_equal(env->append(f, tail, tails[t]), ST_OK);
            assert_int_equal(env->close(f), ST_OK);
            free(tail);

            f = posix_reader_file(fx->path);
            expect_torn(env, f, sizes, 4, ends[3], tails[t]);
            env->close(f);

            /* The owner truncates to good_end and appends: all records read back cleanly. */
            assert_int_equal(env->open_writable(env, fx->path, true, &f), ST_OK);
            assert_int_equal(env->truncate(f, ends[3]), ST_OK);
            assert_int_equal(env->close(f), ST_OK);
            w = posix_writer(fx->path, true);
            size_t more[1] = {77};
            uint64_t mstart, mend;
            add_records(w, more, 1, 4, &mstart, &mend);
            st_log_writer_destroy(w);
            f = posix_reader_file(fx->path);
            size_t all[5] = {100, 40000, 3, 1000, 77};
            expect_torn(env, f, all, 5, mend, 0);
            env->close(f);
        }
    }

    /* Half a record, then zeros (a preallocated, partly written tail). */
    st_log_writer *w = posix_writer(fx->path, false);
    add_records(w, sizes, 4, 0, NULL, ends);
    uint8_t rec[5000];
    make_record(rec, sizeof(rec), 4);
    memfile *m = mem_new();
    st_log_writer *mw;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, ends[3], &mw), ST_OK);
    assert_int_equal(st_log_writer_add(mw, rec, sizeof(rec)), ST_OK);
    st_log_writer_destroy(mw);
    st_log_writer_destroy(w);
    st_file *f;
    assert_int_equal(env->open_writable(env, fx->path, true, &f), ST_OK);
    assert_int_equal(env->append(f, m->data.data, m->data.len / 2), ST_OK);
    uint8_t zeros[3000] = {0};
    assert_int_equal(env->append(f, zeros, sizeof(zeros)), ST_OK);
    assert_int_equal(env->close(f), ST_OK);
    f = posix_reader_file(fx->path);
    expect_torn(env, f, sizes, 4, ends[3], m->data.len / 2 + sizeof(zeros));
    env->close(f);
    mem_free(m);
}

/* Does msg name "offset <at>" (not merely a longer number starting with the same digits)? */
static bool names_offset(const char *msg, uint64_t at)
{
    char want[40];
    int n = snprintf(want, sizeof(want), "offset %llu", (unsigned long long)at);
    for (const char *p = strstr(msg, want); p; p = strstr(p + 1, want))
        if (p[n] < '0' || p[n] > '9')
            return true;
    return false;
}

/* Read the damaged `log` and expect: `before` records, CORRUPTION naming `at`,
   then (salvage) records from `resume_idx` to the end. */
static void expect_corruption(const uint8_t *log, size_t len, const size_t *sizes, size_t n,
                              size_t before, uint64_t at, size_t resume_idx)
{
    memfile *m = mem_new();
    mem_set(m, log, len);
    st_log_reader *r;
    st_slice rec;
    assert_int_equal(st_log_reader_create(&mem_env, (st_file *)m, "wal/000012.log", 0, &r), ST_OK);
    for (size_t i = 0; i < before; i++) {
        assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
        assert_true(record_is(rec, sizes[i], (uint32_t)i));
    }
    uint64_t good_end = st_log_reader_good_end(r);
    st_status s = st_log_reader_next(r, &rec, NULL);
    if (s != ST_CORRUPTION)
        fail_msg("expected CORRUPTION, got %s %s", st_status_name(s), st_errmsg());
    assert_non_null(strstr(st_errmsg(), "wal/000012.log"));
    if (!names_offset(st_errmsg(), at))
        fail_msg("message \"%s\" does not name offset %llu", st_errmsg(), (unsigned long long)at);
    assert_int_equal(st_log_reader_good_end(r), good_end);
    for (size_t i = resume_idx; i < n; i++) {
        s = st_log_reader_next(r, &rec, NULL);
        if (s != ST_OK)
            fail_msg("salvage record %zu: %s %s", i, st_status_name(s), st_errmsg());
        assert_true(record_is(rec, sizes[i], (uint32_t)i));
    }
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_torn_bytes(r), 0);
    st_log_reader_destroy(r);
    mem_free(m);
}

static void test_corruption_in_the_middle(void **state)
{
    (void)state;
    enum { N = 16 };
    size_t sizes[N];
    for (int i = 0; i < N; i++)
        sizes[i] = 20 + (size_t)i;
    sizes[10] = 2 * BLOCK + 100; /* FIRST, MIDDLE, LAST */
    uint64_t starts[N], ends[N];
    memfile *m = mem_new();
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
    add_records(w, sizes, N, 0, starts, ends);
    st_log_writer_destroy(w);
    size_t len = m->data.len;
    uint8_t *log = malloc(len);

    /* A flipped bit in the payload of record 2 (all in block 0). */
    memcpy(log, m->data.data, len);
    log[starts[2] + HEADER + 5] ^= 0x10;
    expect_corruption(log, len, sizes, N, 2, starts[2], 3);

    /* In its length: the chain is lost, the byte-wise search still finds record 3. */
    memcpy(log, m->data.data, len);
    log[starts[2] + 4] ^= 0x04;
    expect_corruption(log, len, sizes, N, 2, starts[2], 3);

    /* A length running past the block end. */
    memcpy(log, m->data.data, len);
    log[starts[2] + 5] = 0xff;
    expect_corruption(log, len, sizes, N, 2, starts[2], 3);

    /* An unknown type, and zeroed bytes. */
    memcpy(log, m->data.data, len);
    log[starts[2] + 6] = 9;
    expect_corruption(log, len, sizes, N, 2, starts[2], 3);
    memcpy(log, m->data.data, len);
    memset(log + starts[2], 0, HEADER + sizes[2]);
    expect_corruption(log, len, sizes, N, 2, starts[2], 3);

    /* The CRC of the very first record. */
    memcpy(log, m->data.data, len);
    log[0] ^= 1;
    expect_corruption(log, len, sizes, N, 0, 0, 1);

    /* The MIDDLE fragment of record 10 (in block 1): corruption, resume at record 11. */
    memcpy(log, m->data.data, len);
    log[BLOCK + HEADER + 1000] ^= 0x80;
    expect_corruption(log, len, sizes, N, 10, BLOCK, 11);

    /* Record 10's FIRST: its MIDDLE and LAST are then orphans, skipped by the search. */
    memcpy(log, m->data.data, len);
    log[starts[10] + HEADER] ^= 0x01;
    expect_corruption(log, len, sizes, N, 10, starts[10], 11);

    /* MIDDLE turned into FULL-less FIRST: record 10 has no LAST before a FIRST. Rewrite the
       MIDDLE's type to FIRST (with a correct CRC) so it is a valid start inside the record. */
    memcpy(log, m->data.data, len);
    {
        uint8_t *h = log + BLOCK;
        size_t fl = (size_t)h[4] | ((size_t)h[5] << 8);
        h[6] = ST_LOG_FIRST;
        st_put_fixed32(h, st_crc32c_mask(st_crc32c(h + 6, fl + 1)));
        memfile *mm = mem_new();
        mem_set(mm, log, len);
        st_log_reader *r;
        st_slice rec;
        assert_int_equal(st_log_reader_create(&mem_env, (st_file *)mm, "x.log", 0, &r), ST_OK);
        for (int i = 0; i < 10; i++)
            assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
        assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_CORRUPTION);
        assert_true(names_offset(st_errmsg(), starts[10]));
        /* Resumes at the forged FIRST, whose LAST is record 10's: a record, then 11.. */
        assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
        assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
        assert_true(record_is(rec, sizes[11], 11));
        st_log_reader_destroy(r);
        mem_free(mm);
    }

    /* Damage in the last record, with nothing valid after it, is a torn tail. */
    memcpy(log, m->data.data, len);
    log[starts[N - 1] + HEADER + 3] ^= 0x01;
    mem_set(m, log, len);
    expect_torn(&mem_env, (st_file *)m, sizes, N - 1, ends[N - 2], len - ends[N - 2]);

    free(log);
    mem_free(m);
}

static void test_corruption_posix_file(void **state)
{
    fixture *fx = *state;
    st_env *env = st_env_posix();
    size_t sizes[3] = {100, 200, 300};
    uint64_t starts[3], ends[3];
    st_log_writer *w = posix_writer(fx->path, false);
    add_records(w, sizes, 3, 0, starts, ends);
    st_log_writer_destroy(w);
    /* Rewrite the file with one byte of record 1 flipped. */
    uint8_t *data;
    size_t n;
    assert_int_equal(st_env_read_file(env, fx->path, 1 << 20, &data, &n), ST_OK);
    data[starts[1] + 50] ^= 0x40;
    assert_int_equal(st_env_write_file_atomic(env, fx->dir, fx->path, data, n), ST_OK);
    free(data);
    st_file *f = posix_reader_file(fx->path);
    st_log_reader *r;
    st_slice rec;
    assert_int_equal(st_log_reader_create(env, f, fx->path, 0, &r), ST_OK);
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_CORRUPTION);
    assert_non_null(strstr(st_errmsg(), fx->path));
    assert_non_null(strstr(st_errmsg(), "checksum"));
    assert_int_equal(st_log_reader_good_end(r), ends[0]);
    st_log_reader_destroy(r);
    env->close(f);
}

static void test_growing_file(void **state)
{
    fixture *fx = *state;
    st_env *env = st_env_posix();
    st_log_writer *w = posix_writer(fx->path, false);
    st_file *f = posix_reader_file(fx->path);
    st_log_reader *r;
    st_slice rec;
    uint64_t off;
    assert_int_equal(st_log_reader_create(env, f, "live.log", 0, &r), ST_OK);
    assert_int_equal(st_log_reader_next(r, &rec, &off), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_torn_bytes(r), 0);

    size_t sizes[4] = {10, 3 * BLOCK, 0, 5};
    uint64_t starts[4], ends[4];
    for (int i = 0; i < 3; i++) {
        add_records(w, sizes + i, 1, (uint32_t)i, starts + i, ends + i);
        assert_int_equal(st_log_reader_next(r, &rec, &off), ST_OK);
        assert_true(record_is(rec, sizes[i], (uint32_t)i));
        assert_int_equal(off, starts[i]);
        assert_int_equal(st_log_reader_next(r, &rec, &off), ST_NOT_FOUND);
        assert_int_equal(st_log_reader_good_end(r), ends[i]);
    }

    /* A record arriving in pieces, as a reader racing the writer's append would see it. */
    uint8_t buf[5];
    make_record(buf, 5, 3);
    memfile *m = mem_new();
    st_log_writer *mw;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, ends[2], &mw), ST_OK);
    assert_int_equal(st_log_writer_add(mw, buf, 5), ST_OK);
    st_log_writer_destroy(mw);
    st_file *raw;
    assert_int_equal(env->open_writable(env, fx->path, true, &raw), ST_OK);
    for (size_t i = 0; i < m->data.len; i++) {
        assert_int_equal(st_log_reader_next(r, &rec, &off), ST_NOT_FOUND);
        assert_int_equal(st_log_reader_torn_bytes(r), i);
        assert_int_equal(env->append(raw, m->data.data + i, 1), ST_OK);
    }
    assert_int_equal(st_log_reader_next(r, &rec, &off), ST_OK);
    assert_true(record_is(rec, 5, 3));
    assert_int_equal(st_log_reader_next(r, &rec, &off), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_torn_bytes(r), 0);
    env->close(raw);
    mem_free(m);
    st_log_reader_destroy(r);
    st_log_writer_destroy(w);
    env->close(f);
}

static void test_read_errors(void **state)
{
    (void)state;
    memfile *m = mem_new();
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
    size_t sizes[2] = {10, 20};
    add_records(w, sizes, 2, 0, NULL, NULL);
    st_log_reader *r;
    st_slice rec;
    assert_int_equal(st_log_reader_create(&mem_env, (st_file *)m, "e.log", 0, &r), ST_OK);
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
    m->fail_reads = true;
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK); /* already in the block */
    /* Looking past it needs a read: the failure is reported, and a retry works. */
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_IO_ERROR);
    assert_non_null(strstr(st_errmsg(), "injected read error"));
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_IO_ERROR);
    m->fail_reads = false;
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_good_end(r), m->data.len);
    st_log_reader_destroy(r);
    st_log_reader_destroy(NULL);
    st_log_writer_destroy(w);
    st_log_writer_destroy(NULL);
    mem_free(m);
}

/* Fault env: one append per record, and a failed append or sync breaks the writer for good. */
static void test_writer_errors(void **state)
{
    fixture *fx = *state;
    st_fault_env *fe;
    assert_int_equal(st_fault_env_create(st_env_posix(), &fe), ST_OK);
    st_env *env = st_fault_env_env(fe);
    st_file *f;
    assert_int_equal(env->open_writable(env, fx->path, false, &f), ST_OK);
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(env, f, 0, &w), ST_OK);
    size_t sizes[3] = {100, 5 * BLOCK, 0};
    uint64_t ends[3];
    add_records(w, sizes, 3, 0, NULL, ends);
    st_fault_stats st = st_fault_env_stats(fe);
    assert_int_equal(st.appends, 3);

    st_fault_env_fail_append(fe, &(st_fault_spec){.nth = 1, .code = ST_NO_SPACE, .prefix = 10});
    uint8_t rec[300];
    make_record(rec, sizeof(rec), 3);
    assert_int_equal(st_log_writer_add(w, rec, sizeof(rec)), ST_NO_SPACE);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", st_errmsg());
    assert_non_null(strstr(msg, fx->path));
    assert_int_equal(st_log_writer_size(w), ends[2]);
    /* Broken: later calls return the first failure without touching the file. */
    st_clear_error();
    assert_int_equal(st_log_writer_add(w, rec, 10), ST_NO_SPACE);
    assert_string_equal(st_errmsg(), msg);
    assert_int_equal(st_log_writer_sync(w), ST_NO_SPACE);
    st = st_fault_env_stats(fe);
    assert_int_equal(st.appends, 4);
    assert_int_equal(st.syncs, 0);
    st_log_writer_destroy(w);

    /* What was written reads back, the 10-byte prefix as a torn tail. */
    st_file *rf;
    assert_int_equal(env->open_readable(env, fx->path, &rf), ST_OK);
    expect_torn(env, rf, sizes, 3, ends[2], 10);
    env->close(rf);

    /* A failed sync breaks it too (the kernel may have dropped the dirty pages). */
    assert_int_equal(env->open_writable(env, fx->path, false, &f), ST_OK);
    assert_int_equal(st_log_writer_create(env, f, 0, &w), ST_OK);
    add_records(w, sizes, 1, 0, NULL, NULL);
    st_fault_env_fail_sync(fe, &(st_fault_spec){.nth = 1});
    assert_int_equal(st_log_writer_sync(w), ST_IO_ERROR);
    assert_int_equal(st_log_writer_synced_size(w), 0);
    assert_int_equal(st_log_writer_sync(w), ST_IO_ERROR);
    assert_int_equal(st_log_writer_add(w, rec, 10), ST_IO_ERROR);
    st_log_writer_destroy(w);
    st_fault_env_destroy(fe);
}

typedef struct {
    st_log_writer *w;
    atomic_bool done;
    atomic_int syncs;
    bool ok;
} sync_ctx;

static void *syncer(void *arg)
{
    sync_ctx *c = arg;
    uint64_t last = 0;
    while (!atomic_load(&c->done)) {
        if (st_log_writer_sync(c->w) != ST_OK)
            c->ok = false;
        uint64_t s = st_log_writer_synced_size(c->w);
        if (s < last || s > st_log_writer_size(c->w))
            c->ok = false;
        last = s;
        atomic_fetch_add(&c->syncs, 1);
    }
    return NULL;
}

static void test_concurrent_sync(void **state)
{
    fixture *fx = *state;
    st_log_writer *w = posix_writer(fx->path, false);
    sync_ctx c = {.w = w, .ok = true};
    atomic_init(&c.done, false);
    atomic_init(&c.syncs, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, syncer, &c), 0);
    size_t n = 2000;
    size_t *sizes = malloc(n * sizeof(*sizes));
    uint64_t *starts = malloc(n * sizeof(*starts)), *ends = malloc(n * sizeof(*ends));
    for (size_t i = 0; i < n; i++)
        sizes[i] = (i * 37) % 700;
    add_records(w, sizes, n, 0, starts, ends);
    /* On a loaded machine the syncer may not have run yet: it must sync at least once while
       the writer is open, so wait for it (bounded) before stopping it. */
    for (int i = 0; i < 10000 && atomic_load(&c.syncs) == 0; i++)
        usleep(1000);
    atomic_store(&c.done, true);
    pthread_join(t, NULL);
    assert_true(c.ok);
    assert_true(atomic_load(&c.syncs) > 0);
    assert_int_equal(st_log_writer_sync(w), ST_OK);
    assert_int_equal(st_log_writer_synced_size(w), ends[n - 1]);
    st_log_writer_destroy(w);
    st_file *f = posix_reader_file(fx->path);
    expect_records(st_env_posix(), f, 0, sizes, n, 0, starts, ends[n - 1]);
    st_env_posix()->close(f);
    free(sizes);
    free(starts);
    free(ends);
}

static void test_random_mutations(void **state)
{
    (void)state;
    st_rng rng;
    st_rng_seed(&rng, st_test_seed("log.random_mutations"));
    enum { N = 40 };
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        uint64_t pick = st_rng_uniform(&rng, 10);
        sizes[i] = 8 + (pick < 8 ? st_rng_uniform(&rng, 800) : st_rng_uniform(&rng, 2 * BLOCK));
    }
    memfile *m = mem_new();
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
    add_records(w, sizes, N, 0, NULL, NULL);
    st_log_writer_destroy(w);
    size_t len = m->data.len;
    uint8_t *orig = malloc(len);
    memcpy(orig, m->data.data, len);

    uint64_t iters = st_test_scaled(MUTATION_ITERS);
    uint64_t corruptions = 0, torn = 0, records = 0;
    uint8_t *work = malloc(len + 64 * 8);
    for (uint64_t it = 0; it < iters; it++) {
        size_t wlen = len;
        memcpy(work, orig, len);
        int muts = 1 + (int)st_rng_uniform(&rng, 4);
        for (int k = 0; k < muts && wlen > 0; k++) {
            uint64_t kind = st_rng_uniform(&rng, 10);
            size_t at = (size_t)st_rng_uniform(&rng, wlen);
            if (kind < 5) { /* flip a bit */
                work[at] ^= (uint8_t)(1u << st_rng_uniform(&rng, 8));
            } else if (kind < 7) { /* truncate */
                wlen = at;
            } else if (kind < 9) { /* insert 1..64 random bytes */
                size_t ins = 1 + (size_t)st_rng_uniform(&rng, 64);
                memmove(work + at + ins, work + at, wlen - at);
                st_rng_bytes(&rng, work + at, ins);
                wlen += ins;
            } else { /* zero a run */
                size_t z = 1 + (size_t)st_rng_uniform(&rng, 100);
                if (z > wlen - at)
                    z = wlen - at;
                memset(work + at, 0, z);
            }
        }
        mem_set(m, work, wlen);
        st_log_reader *r;
        assert_int_equal(st_log_reader_create(&mem_env, (st_file *)m, "fuzz.log", 0, &r), ST_OK);
        int64_t last_idx = -1;
        uint64_t last_off = 0;
        for (int calls = 0;; calls++) {
            if (calls > N + 2000)
                fail_msg("iteration %llu: the reader does not finish", (unsigned long long)it);
            st_slice rec;
            uint64_t off;
            st_status s = st_log_reader_next(r, &rec, &off);
            if (s == ST_NOT_FOUND) {
                torn++;
                assert_true(st_log_reader_good_end(r) <= wlen);
                break;
            }
            if (s == ST_CORRUPTION) {
                corruptions++;
                continue;
            }
            assert_int_equal(s, ST_OK);
            /* Every record returned is one that was written, in order, and intact. */
            if (rec.len < 8)
                fail_msg("iteration %llu: a record of %zu bytes was never written",
                         (unsigned long long)it, rec.len);
            uint32_t idx = st_get_fixed32(rec.data);
            if (idx >= N || (int64_t)idx <= last_idx || !record_is(rec, sizes[idx], idx))
                fail_msg("iteration %llu: returned a record that was not written (idx %u)",
                         (unsigned long long)it, idx);
            assert_true(off >= last_off);
            assert_true(off + rec.len <= wlen);
            last_idx = idx;
            last_off = off;
            records++;
        }
        st_log_reader_destroy(r);
    }
    /* Both outcomes were exercised. */
    assert_true(corruptions > 0);
    assert_true(torn == iters);
    assert_true(records > 0);
    free(work);
    free(orig);
    mem_free(m);
}

/* Strict mode: a whole last record that fails its checksum is damage; a cut-short one is not. */
static void test_strict_tail(void **state)
{
    (void)state;
    memfile *m = mem_new();
    st_log_writer *w;
    assert_int_equal(st_log_writer_create(&mem_env, (st_file *)m, 0, &w), ST_OK);
    uint8_t rec[100];
    make_record(rec, sizeof(rec), 1);
    assert_int_equal(st_log_writer_add(w, rec, sizeof(rec)), ST_OK);
    uint64_t last_start = st_log_writer_size(w);
    make_record(rec, sizeof(rec), 2);
    assert_int_equal(st_log_writer_add(w, rec, sizeof(rec)), ST_OK);
    size_t len = m->data.len;
    uint8_t *pristine = malloc(len);
    memcpy(pristine, m->data.data, len);

    for (int mode = 0; mode < 3; mode++) {
        mem_set(m, pristine, len);
        if (mode == 0)
            m->data.data[last_start + ST_LOG_HEADER_SIZE + 50] ^= 0x10; /* a flipped bit */
        else if (mode == 1)
            m->data.len = len - 30; /* cut short */
        else
            memset(m->data.data + last_start, 0, len - last_start); /* zeros */
        for (int strict = 0; strict < 2; strict++) {
            st_log_reader *r;
            assert_int_equal(st_log_reader_create(&mem_env, (st_file *)m, "strict.log", 0, &r),
                             ST_OK);
            st_log_reader_set_strict(r, strict);
            st_slice got;
            assert_int_equal(st_log_reader_next(r, &got, NULL), ST_OK);
            assert_true(record_is(got, sizeof(rec), 1));
            st_status s = st_log_reader_next(r, &got, NULL);
            if (strict && mode == 0) {
                assert_int_equal(s, ST_CORRUPTION);
                assert_non_null(strstr(st_errmsg(), "strict.log"));
            } else {
                assert_int_equal(s, ST_NOT_FOUND);
                assert_true(st_log_reader_good_end(r) == last_start);
            }
            st_log_reader_destroy(r);
        }
    }
    free(pristine);
    st_log_writer_destroy(w);
    mem_free(m);
}

/* ---- the mapped writer (WAL segments) ---- */

static st_log_writer *mapped_writer(st_env *env, const char *path, bool append)
{
    return env_writer(env, path, append, true);
}

static uint64_t file_size_of(const char *path)
{
    uint64_t size = 0;
    assert_int_equal(st_env_posix()->file_size(st_env_posix(), path, &size), ST_OK);
    return size;
}

/* Records stored through the map read back the same as appended ones, across windows. */
static void test_mapped_roundtrip(void **state)
{
    fixture *fx = *state;
    st_env *env = st_env_posix();
    /* Block edges, an empty record, and one larger than a 1 MiB window. */
    size_t sizes[] = {0,     100, BLOCK - 2 * HEADER - 100, 1, 5, 3 * BLOCK + 17, 0, (3u << 20) + 5,
                      BLOCK, 1000};
    size_t n = sizeof(sizes) / sizeof(sizes[0]);
    uint64_t starts[16], ends[16];
    st_log_writer *w = mapped_writer(env, fx->path, false);
    add_records(w, sizes, n, 0, starts, ends);
    uint64_t end = ends[n - 1];
    assert_int_equal(st_log_writer_size(w), end);

    /* While it is open the file runs on in zeros allocated ahead. */
    uint64_t ahead = file_size_of(fx->path);
    assert_true(ahead > end);
    assert_int_equal(ahead % ST_ENV_MAP_ALIGN, 0);
    st_file *rf = posix_reader_file(fx->path);
    /* With the writer's size as its limit, a reader meets a clean end... */
    expect_records_upto(env, rf, 0, sizes, n, 0, starts, end, st_log_writer_size(w));
    /* ...and without, the zeros are a torn tail, even to a strict reader, never damage. */
    st_log_reader *r;
    assert_int_equal(st_log_reader_create(env, rf, "mapped.log", 0, &r), ST_OK);
    st_log_reader_set_strict(r, true);
    st_slice rec;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_OK);
        assert_true(record_is(rec, sizes[i], (uint32_t)i));
    }
    assert_int_equal(st_log_reader_next(r, &rec, NULL), ST_NOT_FOUND);
    assert_int_equal(st_log_reader_good_end(r), end);
    assert_int_equal(st_log_reader_torn_bytes(r), ahead - end);
    st_log_reader_destroy(r);

    /* Closing cuts the zeros off; reopening appends after the last record. */
    st_log_writer_destroy(w);
    assert_int_equal(file_size_of(fx->path), end);
    expect_records(env, rf, 0, sizes, n, 0, starts, end);
    w = mapped_writer(env, fx->path, true);
    uint64_t more_starts[3], more_ends[3];
    add_records(w, sizes, 3, (uint32_t)n, more_starts, more_ends);
    st_log_writer_destroy(w);
    assert_int_equal(file_size_of(fx->path), more_ends[2]);
    expect_records(env, rf, end, sizes, 3, (uint32_t)n, more_starts, more_ends[2]);
    env->close(rf);
}

/* An env over POSIX whose map_append fails at its nth call (or always, when not supported). */
static struct {
    st_env env;
    int calls, fail_at;
    st_status code;
} g_mapfail;

static st_status failing_map_append(st_file *f, uint64_t off, size_t len, uint8_t **addr)
{
    if (++g_mapfail.calls == g_mapfail.fail_at || g_mapfail.code == ST_NOT_SUPPORTED) {
        *addr = NULL;
        return st_error(g_mapfail.code, "injected: map_append failed");
    }
    return st_env_posix()->map_append(f, off, len, addr);
}

static st_env *mapfail_env(int fail_at, st_status code)
{
    g_mapfail.env = *st_env_posix();
    g_mapfail.env.map_append = failing_map_append;
    g_mapfail.calls = 0;
    g_mapfail.fail_at = fail_at;
    g_mapfail.code = code;
    return &g_mapfail.env;
}

static void test_mapped_errors(void **state)
{
    fixture *fx = *state;
    /* A full disk when the window moves: the error reaches the caller and sticks. */
    st_env *env = mapfail_env(2, ST_NO_SPACE);
    st_log_writer *w = mapped_writer(env, fx->path, false);
    size_t sizes[2] = {600 * 1024, 300 * 1024}; /* the first window holds these two */
    uint64_t ends[2];
    add_records(w, sizes, 2, 0, NULL, ends);
    uint8_t *big = malloc(400 * 1024);
    make_record(big, 400 * 1024, 2);
    assert_int_equal(st_log_writer_add(w, big, 400 * 1024), ST_NO_SPACE);
    assert_int_equal(st_log_writer_size(w), ends[1]);
    assert_int_equal(st_log_writer_add(w, big, 10), ST_NO_SPACE);
    assert_int_equal(st_log_writer_sync(w), ST_NO_SPACE);
    assert_int_equal(g_mapfail.calls, 2);
    st_log_writer_destroy(w);
    st_file *rf = posix_reader_file(fx->path);
    expect_records(st_env_posix(), rf, 0, sizes, 2, 0, NULL, ends[1]);
    st_env_posix()->close(rf);

    /* A file system that cannot allocate ahead: the writer appends instead. */
    env = mapfail_env(0, ST_NOT_SUPPORTED);
    w = mapped_writer(env, fx->path, false);
    add_records(w, sizes, 2, 0, NULL, ends);
    assert_int_equal(file_size_of(fx->path), ends[1]); /* no zeros ahead: plain appends */
    st_log_writer_destroy(w);
    rf = posix_reader_file(fx->path);
    expect_records(st_env_posix(), rf, 0, sizes, 2, 0, NULL, ends[1]);
    st_env_posix()->close(rf);
    free(big);
}

/* Size of record i in the kill test: small ones and some that span blocks and windows. */
static size_t kill_size(uint32_t i)
{
    static const size_t cycle[] = {120, 0, 3000, 40000, 7, 250000, 33000, 1};
    return cycle[i % (sizeof(cycle) / sizeof(cycle[0]))];
}

/*
 * A process killed at a random moment while it stores records through the map leaves a log
 * that a strict reader takes as whole records, then at most a torn tail: the header of the
 * record cut short is still zeros, never a whole-looking record with a bad checksum.
 */
static void test_mapped_kill(void **state)
{
    fixture *fx = *state;
    uint64_t seed = st_test_seed("test_mapped_kill");
    uint64_t x = seed | 1;
    uint8_t *buf = malloc(250000);
    int rounds = 30, ended_torn = 0;
    for (int round = 0; round < rounds; round++) {
        unlink(fx->path);
        int ready[2];
        assert_int_equal(pipe(ready), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            st_log_writer *w = mapped_writer(st_env_posix(), fx->path, false);
            for (uint32_t i = 0;; i++) {
                make_record(buf, kill_size(i), i);
                if (st_log_writer_add(w, buf, kill_size(i)) != ST_OK)
                    _exit(3);
                if (i == 0 && write(ready[1], "r", 1) != 1) /* the first record is stored */
                    _exit(4);
            }
        }
        close(ready[1]);
        char c;
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        struct timespec ts = {0, (long)(1 + x % 40) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        st_file *rf = posix_reader_file(fx->path);
        st_log_reader *r;
        assert_int_equal(st_log_reader_create(st_env_posix(), rf, "killed.log", 0, &r), ST_OK);
        st_log_reader_set_strict(r, true);
        st_slice rec;
        st_status s;
        uint32_t i = 0;
        while ((s = st_log_reader_next(r, &rec, NULL)) == ST_OK) {
            if (!record_is(rec, kill_size(i), i))
                fail_msg("round %d (seed %llu): record %u is wrong", round,
                         (unsigned long long)seed, i);
            i++;
        }
        if (s != ST_NOT_FOUND)
            fail_msg("round %d (seed %llu): after %u records: %s %s", round,
                     (unsigned long long)seed, i, st_status_name(s), st_errmsg());
        ended_torn += st_log_reader_torn_bytes(r) > 0;
        st_log_reader_destroy(r);
        st_env_posix()->close(rf);
    }
    /* Every round ends in the zeros allocated ahead, if nothing else. */
    assert_int_equal(ended_torn, rounds);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test_setup_teardown(test_roundtrip_sizes, setup, teardown),
        cmocka_unit_test(test_block_boundaries),
        cmocka_unit_test_setup_teardown(test_many_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_append, setup, teardown),
        cmocka_unit_test(test_torn_truncation_every_byte),
        cmocka_unit_test_setup_teardown(test_torn_zeros_and_garbage, setup, teardown),
        cmocka_unit_test(test_corruption_in_the_middle),
        cmocka_unit_test_setup_teardown(test_corruption_posix_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growing_file, setup, teardown),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test_setup_teardown(test_writer_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_sync, setup, teardown),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_strict_tail),
        cmocka_unit_test_setup_teardown(test_mapped_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapped_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapped_kill, setup, teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
