/*
 * bench_util.h - pieces every strata-bench mode shares: a clock, a latency histogram, a JSON
 * writer, CPU and memory accounting from /proc, a seeded generator, key formatting, the value
 * pool, a memory-free permutation of the key space, flag parsing, work directories, and the
 * formatting of figures and targets in reports.
 *
 * Nothing here knows about the engine or the network; modes (bench_engine.c, bench_rpc.c) build
 * on it. Unless stated otherwise a function is safe to call from one thread at a time per object.
 */
#ifndef STRATA_TOOLS_BENCH_UTIL_H
#define STRATA_TOOLS_BENCH_UTIL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/status.h"

/* ---- time -------------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t st_bench_now_ns(void);

/* ---- latency histogram ------------------------------------------------------------------- */
/*
 * A log-linear histogram of nanosecond values: exact below 128 ns, then 64 buckets per power of
 * two, so a reported percentile is within 1/64 (1.6%) of the true sample it stands for. Fixed
 * size (about 30 KiB), no allocation after create, add is a few instructions.
 */
typedef struct st_bench_hist st_bench_hist;

/* On ST_OK *out owns a new empty histogram; free it with st_bench_hist_destroy. */
st_status st_bench_hist_create(st_bench_hist **out);
void st_bench_hist_destroy(st_bench_hist *h); /* accepts NULL */
void st_bench_hist_clear(st_bench_hist *h);
void st_bench_hist_add(st_bench_hist *h, uint64_t ns);
/* Add every sample of `src` (borrowed) to `dst`. */
void st_bench_hist_merge(st_bench_hist *dst, const st_bench_hist *src);
uint64_t st_bench_hist_count(const st_bench_hist *h);
uint64_t st_bench_hist_min(const st_bench_hist *h); /* 0 when empty */
uint64_t st_bench_hist_max(const st_bench_hist *h); /* 0 when empty */
double st_bench_hist_mean(const st_bench_hist *h);  /* exact; 0 when empty */
/*
 * The p-th percentile (0 < p <= 100) in ns: the smallest recorded value v such that at least
 * p% of the samples are <= v, reported as the middle of v's bucket clamped to [min, max]
 * (exactly min or max when v is the smallest or largest sample). 0 when empty.
 */
uint64_t st_bench_hist_percentile(const st_bench_hist *h, double p);

/* The latency figures every mode reports, in microseconds (0 when the histogram is empty). */
typedef struct st_bench_latency {
    double p50_us, p99_us, p999_us, max_us, mean_us;
} st_bench_latency;

void st_bench_hist_latency(const st_bench_hist *h, st_bench_latency *out);

/* ---- JSON writer ------------------------------------------------------------------------- */
/*
 * Streams one JSON value to a FILE: objects and arrays nest up to 32 deep, commas are placed
 * for the caller. Every call takes `key`: the member name inside an object, NULL inside an
 * array or for the top-level value. Strings are escaped (control characters as \u00XX; bytes
 * >= 0x80 are passed through, so give it UTF-8). Non-finite numbers are written as null.
 * Misnesting (a key inside an array, an end without a begin) is a programming error (assert).
 */
typedef struct st_bench_json st_bench_json;

/* `out` is borrowed and must outlive the writer. */
st_status st_bench_json_create(FILE *out, st_bench_json **j);
/* Frees the writer; does not close or flush `out`. Accepts NULL. */
void st_bench_json_destroy(st_bench_json *j);
void st_bench_json_begin_object(st_bench_json *j, const char *key);
void st_bench_json_end_object(st_bench_json *j);
void st_bench_json_begin_array(st_bench_json *j, const char *key);
void st_bench_json_end_array(st_bench_json *j);
void st_bench_json_string(st_bench_json *j, const char *key, const char *v); /* NULL → null */
void st_bench_json_double(st_bench_json *j, const char *key, double v);
void st_bench_json_uint(st_bench_json *j, const char *key, uint64_t v);
void st_bench_json_int(st_bench_json *j, const char *key, int64_t v);
void st_bench_json_bool(st_bench_json *j, const char *key, bool v);
void st_bench_json_null(st_bench_json *j, const char *key);

/* ---- /proc accounting -------------------------------------------------------------------- */

/*
 * One reading of the CPU clocks. Ticks are USER_HZ (sysconf(_SC_CLK_TCK)), the unit of both
 * /proc/stat and /proc/self/stat; with 100 Hz a reading is good to 10 ms, so measure over
 * seconds, not milliseconds.
 */
typedef struct st_bench_cpu {
    uint64_t wall_ns;      /* st_bench_now_ns() */
    uint64_t self_ticks;   /* utime + stime of this process, every thread (/proc/self/stat) */
    uint64_t busy_ticks;   /* all CPUs: user nice system irq softirq steal (/proc/stat) */
    uint64_t idle_ticks;   /* all CPUs: idle */
    uint64_t iowait_ticks; /* all CPUs: iowait (idle with I/O outstanding) */
} st_bench_cpu;

/* CPU used between two readings, in cores (CPU-seconds per wall second). */
typedef struct st_bench_cpu_use {
    double self_cores;   /* this process */
    double other_cores;  /* everything else on the machine (busy - self), >= 0 */
    double iowait_cores; /* idle time spent waiting for I/O */
} st_bench_cpu_use;

/* Read /proc/self/stat and /proc/stat. ST_IO_ERROR or ST_CORRUPTION naming the file. */
st_status st_bench_cpu_sample(st_bench_cpu *out);
void st_bench_cpu_diff(const st_bench_cpu *before, const st_bench_cpu *after,
                       st_bench_cpu_use *out);

/* Resident memory of this process from /proc/self/status, in KiB. */
typedef struct st_bench_mem {
    uint64_t peak_kb; /* VmHWM: the high-water mark of the resident set since exec or fork */
    uint64_t rss_kb;  /* VmRSS now = anon + file + shmem */
    uint64_t anon_kb; /* RssAnon now: heap, arenas, stacks */
    uint64_t file_kb; /* RssFile now: mapped files (the program, tables read through mmap) */
} st_bench_mem;

st_status st_bench_mem_sample(st_bench_mem *out);

/* Bytes this process has handed to write(2) and friends so far (wchar in /proc/self/io). */
st_status st_bench_io_written(uint64_t *bytes);

/*
 * Parsers behind the readers above, on the text of the file (NUL-terminated, borrowed); `name`
 * only labels the error message. ST_CORRUPTION when the text does not have the expected shape.
 */
/* The aggregate "cpu " line of /proc/stat. */
st_status st_bench_parse_proc_stat(const char *text, const char *name, uint64_t *busy,
                                   uint64_t *idle, uint64_t *iowait);
/* utime + stime from /proc/<pid>/stat (fields 14 and 15, counted after the ")" of comm). */
st_status st_bench_parse_pid_stat(const char *text, const char *name, uint64_t *ticks);
/* The first number after "<field>:" at the start of a line, as in /proc/self/status
   ("VmHWM:   1234 kB") and /proc/self/io ("wchar: 5678"). */
st_status st_bench_parse_field(const char *text, const char *name, const char *field,
                               uint64_t *value);

/* ---- statistics -------------------------------------------------------------------------- */

/* Median of v[0..n) (sorts v in place); NaN when n == 0. The mean of the middle two for even n. */
double st_bench_median(double *v, size_t n);

/* a / b, as a ratio of two figures of which either may be missing: NaN unless both are
   numbers and b > 0. */
double st_bench_ratio(double a, double b);

/* ---- generators -------------------------------------------------------------------------- */

/* splitmix64: small, fast, and the same sequence on every machine for the same seed. */
typedef struct st_bench_rng {
    uint64_t state;
} st_bench_rng;

void st_bench_rng_seed(st_bench_rng *r, uint64_t seed);
uint64_t st_bench_rng_next(st_bench_rng *r);
/* Uniform in [0, n), n > 0 (Lemire's multiply-shift with rejection: no modulo bias). */
uint64_t st_bench_rng_uniform(st_bench_rng *r, uint64_t n);
void st_bench_rng_bytes(st_bench_rng *r, void *buf, size_t n);

/* Values are value_size bytes taken at any offset below this in the value pool. */
#define ST_BENCH_VALUE_POOL (1u << 20)

/*
 * The value pool: ST_BENCH_VALUE_POOL + value_size random (incompressible) bytes, the same for
 * every engine and system given the same seed. Returns a malloc'd buffer (free it), or NULL when
 * out of memory.
 */
char *st_bench_value_pool(uint64_t seed, size_t value_size);

/* Decimal digits needed to write n - 1 (the largest key index of n keys); 1 for n <= 10. */
int st_bench_key_digits(uint64_t n);

/*
 * Write key number i into buf[0..key_size): the decimal number, right-aligned and padded with
 * '0', so byte order equals numeric order. Requires key_size >= the digits of i (the caller
 * checks with st_bench_key_digits); keys longer than 20 bytes are zero-padded on the left.
 */
void st_bench_format_key(char *buf, size_t key_size, uint64_t i);

/*
 * A bijection of [0, n) onto itself chosen by `seed`, computed without a table: a 4-round
 * Feistel network over the smallest even number of bits covering n, walked until the result
 * falls inside [0, n) (fewer than 4 steps on average). Gives "every key once, in random order".
 */
typedef struct st_bench_perm {
    uint64_t n;
    unsigned half_bits;
    uint64_t half_mask;
    uint64_t keys[4];
} st_bench_perm;

/* n >= 1 and n <= 2^62. */
void st_bench_perm_init(st_bench_perm *p, uint64_t n, uint64_t seed);
uint64_t st_bench_perm_at(const st_bench_perm *p, uint64_t i); /* i < n */

/* ---- sizes --------------------------------------------------------------------------------- */

/* Parse "123", "64K", "8M", "1G" (binary multiples; optional trailing "B" or "iB").
   ST_INVALID_ARGUMENT for anything else or on overflow. */
st_status st_bench_parse_size(const char *s, uint64_t *out);

/* ---- flags ------------------------------------------------------------------------------- */

/*
 * Called for each option: `code` is the option's val from the table, `arg` its argument (NULL
 * for a flag without one). On a bad value it prints its complaint to stderr and returns false.
 */
typedef bool (*st_bench_flag_fn)(void *ctx, int code, char *arg);

/*
 * Parse the flags of `mode` ("engine", "rpc"): argv[0] is the mode's name, `opts` (borrowed) a
 * getopt_long table that maps "help" to 'h'. Each option goes to set(ctx, code, arg) in order.
 * Returns 0 to run; 1 after -h or --help (usage(stdout) printed); 2 when set refused a value,
 * for an unknown flag or a missing argument (getopt's complaint and usage(stderr) printed), or
 * for an operand ("strata-bench <mode>: unexpected argument ..." printed).
 */
int st_bench_parse_flags(const char *mode, int argc, char **argv, const struct option *opts,
                         st_bench_flag_fn set, void *ctx, void (*usage)(FILE *out));

/* st_bench_parse_size for the value `v` of `flag`; on failure prints
   "strata-bench <mode>: <flag>: <why>" to stderr and returns false. */
bool st_bench_flag_size(const char *mode, const char *flag, const char *v, uint64_t *out);

/* ---- files ------------------------------------------------------------------------------- */

/* rm -rf path (symbolic links are removed, not followed); a missing path is fine. */
st_status st_bench_rm_tree(const char *path);

/*
 * Create a fresh directory "$TMPDIR/<name>-XXXXXX" ("/tmp/..." when TMPDIR is unset or empty)
 * and write its path into buf[0..cap). The error message names the path.
 */
st_status st_bench_mkdtemp(const char *name, char *buf, size_t cap);

/* ---- reports ----------------------------------------------------------------------------- */

/* Other processes using more CPU than this (cores) during a measured run make it "noisy". */
#define ST_BENCH_NOISE_CORES 0.10

/* v with `decimals` decimals into buf, or "-" when v is NaN (not reported, or not applicable). */
void st_bench_fmt_num(char *buf, size_t cap, double v, int decimals);

/*
 * A figure held to a target: `got` >= `want` when at_least, else `got` <= `want`. The verdict is
 * "met", "MISSED", or "no result" when got is NaN.
 */
const char *st_bench_goal_verdict(double got, double want, bool at_least);

/*
 * The same into the JSON object being written: "comparison" (">=" or "<="), "target" (want),
 * `value_key` (got) and "met" (true, false, or null when got is NaN), in this order.
 */
void st_bench_json_goal(st_bench_json *j, const char *value_key, double got, double want,
                        bool at_least);

#endif
