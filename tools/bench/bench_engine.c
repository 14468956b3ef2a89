/*
 * bench_engine.c - `strata-bench engine`: db_bench-like workloads on the storage engine, one
 * thread, optionally side by side with LevelDB.
 *
 * Method (tools/bench/README.md says more):
 *  - Every (workload, engine, round) runs in a fresh child process, so peak RSS (VmHWM), CPU
 *    time and written bytes belong to that engine alone. The children of one engine share its
 *    database directory, so the workloads form a chain as in db_bench: fill* start from an empty
 *    directory, the others use what the previous workloads left.
 *  - Engines alternate within a round (A B, then B A for the next workload or round), and every
 *    number reported is the median over --repeat rounds. The parent calls sync(2) before each
 *    child so the previous child's dirty pages are not written back on the next one's time.
 *  - Both engines see the same keys in the same order and the same value bytes: one seeded
 *    generator, random (incompressible) values, decimal keys padded to --key-size.
 *  - Only the engine call is inside a latency sample; throughput is ops over the whole loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "tools/bench/bench_kv.h"
#include "tools/bench/bench_modes.h"
#include "tools/bench/bench_util.h"

/* ---- workloads and metrics --------------------------------------------------------------- */

enum { W_FILLSEQ, W_FILLRANDOM, W_OVERWRITE, W_READRANDOM, W_SCAN100, W_COUNT };

typedef struct workload_info {
    const char *name;
    bool fresh; /* starts from an empty database */
    const char *what;
} workload_info;

static const workload_info workloads[W_COUNT] = {
    {"fillseq", true, "put --num keys in ascending order into an empty database"},
    {"fillrandom", true,
     "put each of --num keys exactly once, in random order, into an empty database"},
    {"overwrite", false, "put --num keys drawn uniformly from the existing ones"},
    {"readrandom", false,
     "get --reads keys drawn uniformly from the existing ones; every one must be found"},
    {"scan100", false,
     "--scans times: a fresh iterator, seek to a random existing key, read 100 entries "
     "(seek + 99 next)"},
};

#define SCAN_LEN     100
#define MIN_CPU_SECS 0.25 /* CPU use is reported for runs at least this long */
/* Sample anon/file memory every 64 Ki operations (every 1 Ki scans): ~30 us each, outside
   any latency sample, the same for both engines. */
#define MEM_SAMPLE_MASK 0xffffu
#define MAX_BENCH       32
#define MAX_ENGINES     2

enum metric {
    M_OPS,
    M_MBS,
    M_P50,
    M_P99,
    M_P999,
    M_MAX,
    M_MEAN,
    M_WAMP,
    M_IO_MB,
    M_RSS_MB,
    M_RSS_START_MB,
    M_ANON_MB,
    M_FILE_MB,
    M_CPU_SELF,
    M_CPU_OTHER,
    M_IOWAIT,
    M_SECS,
    M_OPEN_SECS,
    M_WAL_MB,
    M_FLUSH_MB,
    M_COMPACT_MB,
    M_TABLE_MB,
    M_FLUSHES,
    M_COMPACTIONS,
    M_STALLS,
    M_STALL_MS,
    M_CACHE_HIT,
    M_COUNT
};

/* JSON names; a metric an engine cannot report, or that does not apply, is NaN (JSON null). */
static const char *const metric_names[M_COUNT] = {
    "ops_per_sec",   "mb_per_sec",    "p50_us",       "p99_us",         "p999_us",
    "max_us",        "mean_us",       "write_amp",    "written_mb",     "peak_rss_mb",
    "start_rss_mb",  "anon_peak_mb",  "file_peak_mb", "cpu_self_cores", "cpu_other_cores",
    "iowait_cores",  "seconds",       "open_seconds", "wal_mb",         "flush_mb",
    "compaction_mb", "table_mb",      "flushes",      "compactions",    "stalls",
    "stall_ms",      "cache_hit_pct",
};

typedef struct run_result {
    int32_t ok;
    char err[400];
    uint64_t ops;
    uint64_t level_files[ST_BENCH_LEVELS];
    double m[M_COUNT];
} run_result;

/* ---- flags ------------------------------------------------------------------------------- */

typedef struct flags {
    uint64_t num, reads, scans;
    bool reads_set, scans_set;
    uint64_t key_size, value_size;
    int bench[MAX_BENCH];
    int nbench;
    const char *db;
    st_bench_sync sync;
    uint64_t cache_bytes;
    bool compare;
    int repeat;
    bool json;
    bool use_existing;
    uint64_t seed;
} flags;

static const char *sync_name(st_bench_sync s)
{
    return s == ST_BENCH_SYNC_NONE ? "none" : s == ST_BENCH_SYNC_ALWAYS ? "always" : "interval";
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: strata-bench engine [flags]\n"
        "\n"
        "  --num N            keys (default 1000000)\n"
        "  --reads N          gets for readrandom (default --num)\n"
        "  --scans N          scans for scan100 (default --num / 10, at least 1)\n"
        "  --key-size N       bytes per key, decimal padded with '0' (default 16)\n"
        "  --value-size N     bytes per value, random (default 100)\n"
        "  --benchmarks LIST  comma-separated, in order (default "
        "fillseq,fillrandom,overwrite,readrandom,scan100)\n"
        "  --db DIR           work in DIR/strata and DIR/leveldb and keep them (default: a\n"
        "                     fresh directory under $TMPDIR or /tmp, removed at the end)\n"
        "  --use-existing     with --db: the databases already hold keys 0 .. --num - 1 (from\n"
        "                     an earlier run with the same --num and --key-size); read and\n"
        "                     overwrite workloads use them instead of preparing their own\n"
        "  --sync MODE        none | always | interval (default none)\n"
        "  --cache-bytes N    block cache of each engine, e.g. 8M (default 8M)\n"
        "  --compare leveldb  run LevelDB on the same workloads, alternating, and print ratios\n"
        "  --repeat N         rounds; every figure is the median (default 1)\n"
        "  --seed N           generator seed, the same for both engines (default 301)\n"
        "  --json             print the results as one JSON object on stdout\n"
        "\n"
        "workloads:\n");
    for (int w = 0; w < W_COUNT; w++)
        fprintf(out, "  %-11s %s\n", workloads[w].name, workloads[w].what);
}

static int find_workload(const char *name, size_t len)
{
    for (int w = 0; w < W_COUNT; w++)
        if (strlen(workloads[w].name) == len && strncmp(workloads[w].name, name, len) == 0)
            return w;
    return -1;
}

static bool parse_benchmarks(flags *f, const char *list)
{
    f->nbench = 0;
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len > 0) {
            int w = find_workload(p, len);
            if (w < 0) {
                fprintf(stderr, "strata-bench engine: unknown benchmark \"%.*s\"\n", (int)len, p);
                return false;
            }
            if (f->nbench == MAX_BENCH) {
                fprintf(stderr, "strata-bench engine: at most %d benchmarks\n", MAX_BENCH);
                return false;
            }
            f->bench[f->nbench++] = w;
        }
        p += len + (comma ? 1 : 0);
    }
    if (f->nbench == 0) {
        fprintf(stderr, "strata-bench engine: --benchmarks is empty\n");
        return false;
    }
    return true;
}

enum {
    F_NUM = 256,
    F_READS,
    F_SCANS,
    F_KEY,
    F_VALUE,
    F_BENCH,
    F_DB,
    F_SYNC,
    F_CACHE,
    F_COMPARE,
    F_REPEAT,
    F_SEED,
    F_JSON,
    F_EXISTING
};

/* One flag into the flags at ctx (an st_bench_flag_fn). */
static bool set_flag(void *ctx, int code, char *arg)
{
    flags *f = ctx;
    uint64_t v;
    switch (code) {
    case F_NUM:
        return st_bench_flag_size("engine", "--num", arg, &f->num);
    case F_READS:
        f->reads_set = true;
        return st_bench_flag_size("engine", "--reads", arg, &f->reads);
    case F_SCANS:
        f->scans_set = true;
        return st_bench_flag_size("engine", "--scans", arg, &f->scans);
    case F_KEY:
        return st_bench_flag_size("engine", "--key-size", arg, &f->key_size);
    case F_VALUE:
        return st_bench_flag_size("engine", "--value-size", arg, &f->value_size);
    case F_BENCH:
        return parse_benchmarks(f, arg);
    case F_DB:
        f->db = arg;
        return true;
    case F_SYNC:
        if (strcmp(arg, "none") == 0)
            f->sync = ST_BENCH_SYNC_NONE;
        else if (strcmp(arg, "always") == 0)
            f->sync = ST_BENCH_SYNC_ALWAYS;
        else if (strcmp(arg, "interval") == 0)
            f->sync = ST_BENCH_SYNC_INTERVAL;
        else {
            fprintf(stderr, "strata-bench engine: --sync must be none, always or interval\n");
            return false;
        }
        return true;
    case F_CACHE:
        return st_bench_flag_size("engine", "--cache-bytes", arg, &f->cache_bytes);
    case F_COMPARE:
        if (strcmp(arg, "leveldb") != 0) {
            fprintf(stderr, "strata-bench engine: --compare knows only leveldb\n");
            return false;
        }
#ifndef STRATA_BENCH_HAVE_LEVELDB
        fprintf(stderr, "strata-bench engine: built without LevelDB (libleveldb-dev was not "
                        "found when CMake configured the build)\n");
        return false;
#endif
        f->compare = true;
        return true;
    case F_REPEAT:
        if (!st_bench_flag_size("engine", "--repeat", arg, &v))
            return false;
        if (v < 1 || v > 99) {
            fprintf(stderr, "strata-bench engine: --repeat must be 1 to 99\n");
            return false;
        }
        f->repeat = (int)v;
        return true;
    case F_SEED:
        return st_bench_flag_size("engine", "--seed", arg, &f->seed);
    case F_JSON:
        f->json = true;
        return true;
    case F_EXISTING:
        f->use_existing = true;
        return true;
    }
    return false;
}

/* Returns 0 to run, 1 after --help, 2 on a bad flag. */
static int parse_flags(int argc, char **argv, flags *f)
{
    static const struct option opts[] = {
        {"num", required_argument, NULL, F_NUM},
        {"reads", required_argument, NULL, F_READS},
        {"scans", required_argument, NULL, F_SCANS},
        {"key-size", required_argument, NULL, F_KEY},
        {"value-size", required_argument, NULL, F_VALUE},
        {"benchmarks", required_argument, NULL, F_BENCH},
        {"db", required_argument, NULL, F_DB},
        {"sync", required_argument, NULL, F_SYNC},
        {"cache-bytes", required_argument, NULL, F_CACHE},
        {"compare", required_argument, NULL, F_COMPARE},
        {"repeat", required_argument, NULL, F_REPEAT},
        {"seed", required_argument, NULL, F_SEED},
        {"json", no_argument, NULL, F_JSON},
        {"use-existing", no_argument, NULL, F_EXISTING},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(f, 0, sizeof *f);
    f->num = 1000000;
    f->key_size = 16;
    f->value_size = 100;
    f->sync = ST_BENCH_SYNC_NONE;
    f->cache_bytes = 8u << 20;
    f->repeat = 1;
    f->seed = 301;
    parse_benchmarks(f, "fillseq,fillrandom,overwrite,readrandom,scan100");

    int rc = st_bench_parse_flags("engine", argc, argv, opts, set_flag, f, usage);
    if (rc)
        return rc;
    if (f->num < 1 || f->num > ((uint64_t)1 << 40)) {
        fprintf(stderr, "strata-bench engine: --num must be 1 to 2^40\n");
        return 2;
    }
    if (f->key_size < (uint64_t)st_bench_key_digits(f->num) || f->key_size > 8192) {
        fprintf(stderr,
                "strata-bench engine: --key-size must be %d (the digits of --num) to 8192\n",
                st_bench_key_digits(f->num));
        return 2;
    }
    if (f->value_size > (4u << 20)) {
        fprintf(stderr, "strata-bench engine: --value-size must be at most 4 MiB\n");
        return 2;
    }
    if (f->use_existing && !f->db) {
        fprintf(stderr, "strata-bench engine: --use-existing needs --db\n");
        return 2;
    }
    if (!f->reads_set)
        f->reads = f->num;
    if (!f->scans_set)
        f->scans = f->num / 10 ? f->num / 10 : 1;
    return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

static bool write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static size_t read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* ---- one run, inside the child ----------------------------------------------------------- */

/* Every engine gets the same stream for the same workload: seed, workload and nothing else. */
static uint64_t workload_seed(const flags *f, int w)
{
    return f->seed * 0x9e3779b97f4a7c15ull + (uint64_t)w + 1;
}

static double counter_delta_mb(uint64_t before, uint64_t after)
{
    if (before == ST_BENCH_UNKNOWN || after == ST_BENCH_UNKNOWN)
        return NAN;
    return (double)(after - before) / 1048576.0;
}

static double counter_delta(uint64_t before, uint64_t after)
{
    if (before == ST_BENCH_UNKNOWN || after == ST_BENCH_UNKNOWN)
        return NAN;
    return (double)(after - before);
}

/* Raise the running maxima of anon and file-backed resident memory to their values now. */
static st_status mem_track(st_bench_mem *peaks)
{
    st_bench_mem now;
    st_status s = st_bench_mem_sample(&now);
    if (s)
        return s;
    if (now.anon_kb > peaks->anon_kb)
        peaks->anon_kb = now.anon_kb;
    if (now.file_kb > peaks->file_kb)
        peaks->file_kb = now.file_kb;
    return ST_OK;
}

static void set_error(run_result *r, st_status s, const char *what)
{
    r->ok = 0;
    snprintf(r->err, sizeof r->err, "%s: %s: %s", what, st_status_name(s), st_errmsg());
}

static void run_workload(const flags *f, const st_bench_kv_engine *eng, const char *dir, int w,
                         run_result *r)
{
    void *kv = NULL;
    char *key = NULL, *pool = NULL;
    st_bench_hist *hist = NULL;
    st_status s;
    const size_t ks = (size_t)f->key_size, vs = (size_t)f->value_size;

    for (int i = 0; i < M_COUNT; i++)
        r->m[i] = NAN;
    r->ok = 1;

    if (workloads[w].fresh && (s = st_bench_rm_tree(dir)) != ST_OK) {
        set_error(r, s, "clear the database directory");
        goto fail;
    }
    st_bench_mem mem_start, mem_end;
    if ((s = st_bench_mem_sample(&mem_start)) != ST_OK) {
        set_error(r, s, "read peak RSS");
        goto fail;
    }
    key = malloc(ks);
    pool = st_bench_value_pool(f->seed, vs);
    if (!key || !pool || st_bench_hist_create(&hist) != ST_OK) {
        set_error(r, ST_NO_MEMORY, "allocate buffers");
        goto fail;
    }

    st_bench_kv_config cfg = {.dir = dir, .sync = f->sync, .cache_bytes = f->cache_bytes};
    uint64_t t_open = st_bench_now_ns();
    if ((s = eng->open(&cfg, &kv)) != ST_OK) {
        set_error(r, s, "open");
        goto fail;
    }
    r->m[M_OPEN_SECS] = (double)(st_bench_now_ns() - t_open) / 1e9;

    st_bench_perm perm;
    st_bench_perm_init(&perm, f->num, workload_seed(f, w));
    st_bench_rng rng;
    st_bench_rng_seed(&rng, workload_seed(f, w));

    st_bench_kv_counters c0, c1;
    st_bench_cpu cpu0, cpu1;
    uint64_t io0, io1;
    if ((s = eng->counters(kv, &c0)) != ST_OK || (s = st_bench_io_written(&io0)) != ST_OK ||
        (s = st_bench_cpu_sample(&cpu0)) != ST_OK) {
        set_error(r, s, "read counters");
        goto fail;
    }

    /* Peak RSS is one number; sampling anon and file-backed memory now and then says which
       part it is (file: tables mapped by mmap reads, which the page cache holds anyway). */
    st_bench_mem peaks = {0};
    if ((s = mem_track(&peaks)) != ST_OK) {
        set_error(r, s, "read memory use");
        goto fail;
    }

    uint64_t ops = 0, bytes = 0, missing = 0, user_bytes = 0;
    const uint64_t t_start = st_bench_now_ns();
    switch (w) {
    case W_FILLSEQ:
    case W_FILLRANDOM:
    case W_OVERWRITE: {
        size_t vpos = 0;
        for (uint64_t i = 0; i < f->num; i++) {
            uint64_t k = w == W_FILLSEQ      ? i
                         : w == W_FILLRANDOM ? st_bench_perm_at(&perm, i)
                                             : st_bench_rng_uniform(&rng, f->num);
            st_bench_format_key(key, ks, k);
            const char *val = pool + vpos;
            vpos = (vpos + vs) % ST_BENCH_VALUE_POOL;
            uint64_t t0 = st_bench_now_ns();
            s = eng->put(kv, key, ks, val, vs);
            st_bench_hist_add(hist, st_bench_now_ns() - t0);
            if (s) {
                set_error(r, s, "put");
                goto fail;
            }
            if ((i & MEM_SAMPLE_MASK) == MEM_SAMPLE_MASK)
                mem_track(&peaks);
        }
        ops = f->num;
        bytes = user_bytes = ops * (ks + vs);
        break;
    }
    case W_READRANDOM:
        for (uint64_t i = 0; i < f->reads; i++) {
            st_bench_format_key(key, ks, st_bench_rng_uniform(&rng, f->num));
            size_t vlen = 0;
            uint64_t t0 = st_bench_now_ns();
            s = eng->get(kv, key, ks, &vlen);
            st_bench_hist_add(hist, st_bench_now_ns() - t0);
            if ((i & MEM_SAMPLE_MASK) == MEM_SAMPLE_MASK)
                mem_track(&peaks);
            if (s == ST_NOT_FOUND) {
                missing++;
                continue;
            }
            if (s) {
                set_error(r, s, "get");
                goto fail;
            }
            if (vlen != vs) {
                r->ok = 0;
                snprintf(r->err, sizeof r->err, "get %.*s: value of %zu bytes, want %zu", (int)ks,
                         key, vlen, vs);
                goto fail;
            }
            bytes += ks + vlen;
        }
        ops = f->reads;
        break;
    case W_SCAN100: {
        uint32_t want = f->num < SCAN_LEN ? (uint32_t)f->num : SCAN_LEN;
        for (uint64_t i = 0; i < f->scans; i++) {
            st_bench_format_key(key, ks, st_bench_rng_uniform(&rng, f->num - want + 1));
            uint32_t got = 0;
            uint64_t b = 0;
            uint64_t t0 = st_bench_now_ns();
            s = eng->scan(kv, key, ks, want, &got, &b);
            st_bench_hist_add(hist, st_bench_now_ns() - t0);
            if (s) {
                set_error(r, s, "scan");
                goto fail;
            }
            if (got != want)
                missing++;
            if ((i & (MEM_SAMPLE_MASK >> 6)) == (MEM_SAMPLE_MASK >> 6))
                mem_track(&peaks);
            bytes += b;
        }
        ops = f->scans;
        break;
    }
    }
    const uint64_t t_end = st_bench_now_ns();
    mem_track(&peaks);

    if ((s = st_bench_cpu_sample(&cpu1)) != ST_OK || (s = st_bench_io_written(&io1)) != ST_OK ||
        (s = eng->counters(kv, &c1)) != ST_OK) {
        set_error(r, s, "read counters");
        goto fail;
    }
    if (missing) {
        r->ok = 0;
        snprintf(r->err, sizeof r->err, "%llu of %llu %s", (unsigned long long)missing,
                 (unsigned long long)ops,
                 w == W_SCAN100 ? "scans returned fewer than 100 entries" : "keys were not found");
    }
    eng->close(kv);
    kv = NULL;

    if ((s = st_bench_mem_sample(&mem_end)) != ST_OK) {
        set_error(r, s, "read peak RSS");
        goto fail;
    }

    double secs = (double)(t_end - t_start) / 1e9;
    st_bench_cpu_use use;
    st_bench_cpu_diff(&cpu0, &cpu1, &use);
    r->ops = ops;
    r->m[M_SECS] = secs;
    r->m[M_OPS] = secs > 0 ? (double)ops / secs : NAN;
    r->m[M_MBS] = secs > 0 ? (double)bytes / 1048576.0 / secs : NAN;
    st_bench_latency lat;
    st_bench_hist_latency(hist, &lat);
    r->m[M_P50] = lat.p50_us;
    r->m[M_P99] = lat.p99_us;
    r->m[M_P999] = lat.p999_us;
    r->m[M_MAX] = lat.max_us;
    r->m[M_MEAN] = lat.mean_us;
    /* Handed to the OS: through write(2), plus what went through shared maps (wchar misses it). */
    uint64_t handed = (io1 - io0) + (c1.mapped_bytes - c0.mapped_bytes);
    r->m[M_IO_MB] = (double)handed / 1048576.0;
    r->m[M_WAMP] = user_bytes ? (double)handed / (double)user_bytes : NAN;
    r->m[M_RSS_MB] = (double)mem_end.peak_kb / 1024.0;
    r->m[M_RSS_START_MB] = (double)mem_start.peak_kb / 1024.0;
    r->m[M_ANON_MB] = (double)peaks.anon_kb / 1024.0;
    r->m[M_FILE_MB] = (double)peaks.file_kb / 1024.0;
    /* The CPU clocks tick at 100 Hz: a shorter run cannot say how busy anything was. */
    if (secs >= MIN_CPU_SECS) {
        r->m[M_CPU_SELF] = use.self_cores;
        r->m[M_CPU_OTHER] = use.other_cores;
        r->m[M_IOWAIT] = use.iowait_cores;
    }
    r->m[M_WAL_MB] = counter_delta_mb(c0.wal_bytes, c1.wal_bytes);
    r->m[M_FLUSH_MB] = counter_delta_mb(c0.flush_bytes, c1.flush_bytes);
    r->m[M_COMPACT_MB] = counter_delta_mb(c0.compaction_bytes, c1.compaction_bytes);
    r->m[M_TABLE_MB] = counter_delta_mb(c0.table_bytes, c1.table_bytes);
    r->m[M_FLUSHES] = counter_delta(c0.flushes, c1.flushes);
    r->m[M_COMPACTIONS] = counter_delta(c0.compactions, c1.compactions);
    r->m[M_STALLS] = counter_delta(c0.stalls, c1.stalls);
    r->m[M_STALL_MS] = counter_delta(c0.stall_micros, c1.stall_micros) / 1e3;
    double hits = counter_delta(c0.cache_hits, c1.cache_hits);
    double misses = counter_delta(c0.cache_misses, c1.cache_misses);
    r->m[M_CACHE_HIT] = hits + misses > 0 ? 100.0 * hits / (hits + misses) : NAN;
    memcpy(r->level_files, c1.level_files, sizeof r->level_files);

fail:
    eng->close(kv);
    st_bench_hist_destroy(hist);
    free(pool);
    free(key);
}

/* ---- the parent: children, rounds, summaries --------------------------------------------- */

/* Run one workload on one engine in a fresh child process and collect its result. */
static void spawn_run(const flags *f, const st_bench_kv_engine *eng, const char *dir, int w,
                      run_result *r)
{
    memset(r, 0, sizeof *r);
    fflush(stdout);
    fflush(stderr);
    /* Untimed: the previous child's dirty pages reach the disk now, not during this run. */
    sync();
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(r->err, sizeof r->err, "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return;
    }
    if (pid == 0) {
        close(pfd[0]);
        run_result res;
        memset(&res, 0, sizeof res);
        run_workload(f, eng, dir, w, &res);
#if defined(__SANITIZE_ADDRESS__)
        /* _exit skips LeakSanitizer's exit hook; the child's leaks are the ones worth seeing. */
        __lsan_do_leak_check();
#endif
        _exit(write_all(pfd[1], &res, sizeof res) ? 0 : 3);
    }
    close(pfd[1]);
    size_t got = read_all(pfd[0], r, sizeof *r);
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        r->ok = 0;
        snprintf(r->err, sizeof r->err, "child killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else if (got != sizeof *r) {
        r->ok = 0;
        snprintf(r->err, sizeof r->err, "child exited %d without a result",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

typedef struct summary {
    int nok;
    double m[M_COUNT]; /* medians over the successful runs */
    bool noisy;        /* some run had other processes above ST_BENCH_NOISE_CORES */
    uint64_t level_files[ST_BENCH_LEVELS]; /* after the last successful run */
} summary;

static double median_of(const run_result *runs, int n, int metric)
{
    double v[100];
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (runs[i].ok && !isnan(runs[i].m[metric]))
            v[k++] = runs[i].m[metric];
    return st_bench_median(v, k);
}

static void summarize(const run_result *runs, int n, summary *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        if (!runs[i].ok)
            continue;
        out->nok++;
        if (runs[i].m[M_CPU_OTHER] > ST_BENCH_NOISE_CORES)
            out->noisy = true;
        memcpy(out->level_files, runs[i].level_files, sizeof out->level_files);
    }
    for (int m = 0; m < M_COUNT; m++)
        out->m[m] = median_of(runs, n, m);
}

typedef struct target {
    int workload; /* -1: peak RSS, the worst workload's ratio */
    double want;
    bool at_least; /* ratio >= want, else ratio <= want */
} target;

/* The targets on a 2-core machine, as strata / LevelDB ratios. */
static const target targets[] = {
    {W_FILLRANDOM, 2.0, true},
    {W_READRANDOM, 1.5, true},
    {W_SCAN100, 1.5, true},
    {-1, 1.5, false},
};

typedef struct report {
    const flags *f;
    const char *dir;
    int neng;
    const st_bench_kv_engine *eng[MAX_ENGINES];
    char describe[MAX_ENGINES][512];
    run_result *runs; /* nbench × MAX_ENGINES × repeat, see run_at */
    summary sum[MAX_BENCH][MAX_ENGINES];
    double worst_rss_ratio; /* largest strata/leveldb ratio of median peak RSS, NaN if none */
    int worst_rss_bench;    /* the workload (index in --benchmarks) it belongs to, or -1 */
    bool failed;
    bool noisy;
} report;

/* The runs of workload b (its index in --benchmarks) on engine e, rounds in order. */
static run_result *run_at(const report *rp, int b, int e, int round)
{
    return &rp->runs[((size_t)b * MAX_ENGINES + (size_t)e) * (size_t)rp->f->repeat + (size_t)round];
}

static const char *const wamp_definition =
    "write_amp = bytes the benchmark process handed to the OS during the workload "
    "(/proc/self/io wchar, what went to write(2): WAL + tables written by flushes and "
    "compactions + MANIFEST, the same measure for both engines; plus strata's WAL bytes stored "
    "through a shared map, which wchar does not see) / key+value bytes put";
static const char *const cpu_definition =
    "cpu_self = CPU of the benchmark process, all threads (/proc/self/stat); cpu_other = CPU "
    "of everything else on the machine (/proc/stat busy minus self), in cores";

static double target_ratio(const report *rp, const target *t, bool *present)
{
    *present = false;
    if (rp->neng < 2)
        return NAN;
    if (t->workload < 0) {
        *present = true;
        return rp->worst_rss_ratio;
    }
    for (int b = 0; b < rp->f->nbench; b++) {
        if (rp->f->bench[b] == t->workload) {
            *present = true;
            return st_bench_ratio(rp->sum[b][0].m[M_OPS], rp->sum[b][1].m[M_OPS]);
        }
    }
    return NAN;
}

/* A ratio as "1.23x", or "-" when there is none. */
static void fmt_ratio(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.2fx", v);
}

static void fmt_ops(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (v >= 1e6)
        snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1fk", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

static void print_text(const report *rp)
{
    const flags *f = rp->f;
    printf("strata-bench engine: %llu keys of %llu B, values of %llu B (random, incompressible), "
           "%llu reads, %llu scans, sync=%s, block cache %llu KiB each, %d round%s, seed %llu\n",
           (unsigned long long)f->num, (unsigned long long)f->key_size,
           (unsigned long long)f->value_size, (unsigned long long)f->reads,
           (unsigned long long)f->scans, sync_name(f->sync),
           (unsigned long long)f->cache_bytes / 1024, f->repeat, f->repeat == 1 ? "" : "s",
           (unsigned long long)f->seed);
    printf("directory %s; one thread; every run in a fresh child process; engines alternate; "
           "figures are medians over the rounds\n",
           rp->dir);
    for (int e = 0; e < rp->neng; e++)
        printf("  %-8s %s\n", rp->eng[e]->name, rp->describe[e]);
    printf("  %s\n  %s\n\n", wamp_definition, cpu_definition);

    printf("%-11s %-8s %9s %7s %8s %8s %9s %7s %8s %6s %6s\n", "workload", "engine", "ops/s",
           "MB/s", "p50 us", "p99 us", "p99.9 us", "w-amp", "RSS MB", "cpu", "other");
    for (int b = 0; b < f->nbench; b++) {
        const char *wname = workloads[f->bench[b]].name;
        for (int e = 0; e < rp->neng; e++) {
            const summary *s = &rp->sum[b][e];
            if (s->nok == 0) {
                printf("%-11s %-8s FAILED: %s\n", wname, rp->eng[e]->name,
                       run_at(rp, b, e, 0)->err);
                continue;
            }
            char ops[16], mbs[16], p50[16], p99[16], p999[16], wamp[16], rss[16], cpu[16],
                other[16];
            fmt_ops(ops, sizeof ops, s->m[M_OPS]);
            st_bench_fmt_num(mbs, sizeof mbs, s->m[M_MBS], 1);
            st_bench_fmt_num(p50, sizeof p50, s->m[M_P50], 2);
            st_bench_fmt_num(p99, sizeof p99, s->m[M_P99], 2);
            st_bench_fmt_num(p999, sizeof p999, s->m[M_P999], 1);
            st_bench_fmt_num(wamp, sizeof wamp, s->m[M_WAMP], 2);
            st_bench_fmt_num(rss, sizeof rss, s->m[M_RSS_MB], 1);
            st_bench_fmt_num(cpu, sizeof cpu, s->m[M_CPU_SELF], 2);
            st_bench_fmt_num(other, sizeof other, s->m[M_CPU_OTHER], 2);
            printf("%-11s %-8s %9s %7s %8s %8s %9s %7s %8s %6s %6s%s%s\n", wname, rp->eng[e]->name,
                   ops, mbs, p50, p99, p999, wamp, rss, cpu, other, s->noisy ? " noisy" : "",
                   s->nok < f->repeat ? " (some runs failed)" : "");
        }
        if (rp->neng == 2) {
            const summary *a = &rp->sum[b][0], *z = &rp->sum[b][1];
            char ops[16], mbs[16], p50[16], p99[16], p999[16], wamp[16], rss[16], cpu[16];
            fmt_ratio(ops, sizeof ops, st_bench_ratio(a->m[M_OPS], z->m[M_OPS]));
            fmt_ratio(mbs, sizeof mbs, st_bench_ratio(a->m[M_MBS], z->m[M_MBS]));
            fmt_ratio(p50, sizeof p50, st_bench_ratio(a->m[M_P50], z->m[M_P50]));
            fmt_ratio(p99, sizeof p99, st_bench_ratio(a->m[M_P99], z->m[M_P99]));
            fmt_ratio(p999, sizeof p999, st_bench_ratio(a->m[M_P999], z->m[M_P999]));
            fmt_ratio(wamp, sizeof wamp, st_bench_ratio(a->m[M_WAMP], z->m[M_WAMP]));
            fmt_ratio(rss, sizeof rss, st_bench_ratio(a->m[M_RSS_MB], z->m[M_RSS_MB]));
            fmt_ratio(cpu, sizeof cpu, st_bench_ratio(a->m[M_CPU_SELF], z->m[M_CPU_SELF]));
            printf("%-11s %-8s %9s %7s %8s %8s %9s %7s %8s %6s\n", "", "ratio", ops, mbs, p50, p99,
                   p999, wamp, rss, cpu);
        }
    }

    if (rp->neng == 2 && f->repeat > 1) {
        printf("\nops/s ratio strata/leveldb per round (pairs run back to back):\n");
        for (int b = 0; b < f->nbench; b++) {
            printf("  %-11s", workloads[f->bench[b]].name);
            for (int r = 0; r < f->repeat; r++) {
                const run_result *a = run_at(rp, b, 0, r), *z = run_at(rp, b, 1, r);
                if (a->ok && z->ok)
                    printf(" %.2f", st_bench_ratio(a->m[M_OPS], z->m[M_OPS]));
                else
                    printf(" -");
            }
            printf("\n");
        }
    }

    printf("\nengine accounting (medians; MB written during the workload; '-' = not reported "
           "by the engine;\nanon/file MB: largest resident anonymous and file-mapped memory "
           "seen, sampled every 64 Ki ops):\n");
    printf("%-11s %-8s %8s %8s %8s %8s %8s %7s %7s %7s %8s %6s %7s %7s %7s  %s\n", "workload",
           "engine", "written", "WAL", "flush", "compact", "tables", "flushes", "compact", "stalls",
           "stall ms", "hit %", "open s", "anon MB", "file MB", "files per level after");
    for (int b = 0; b < f->nbench; b++) {
        for (int e = 0; e < rp->neng; e++) {
            const summary *s = &rp->sum[b][e];
            if (s->nok == 0)
                continue;
            char io[16], wal[16], fl[16], co[16], tb[16], nfl[16], nco[16], st[16], sms[16],
                hit[16], op[16], anon[16], file[16];
            st_bench_fmt_num(anon, sizeof anon, s->m[M_ANON_MB], 1);
            st_bench_fmt_num(file, sizeof file, s->m[M_FILE_MB], 1);
            st_bench_fmt_num(io, sizeof io, s->m[M_IO_MB], 1);
            st_bench_fmt_num(wal, sizeof wal, s->m[M_WAL_MB], 1);
            st_bench_fmt_num(fl, sizeof fl, s->m[M_FLUSH_MB], 1);
            st_bench_fmt_num(co, sizeof co, s->m[M_COMPACT_MB], 1);
            st_bench_fmt_num(tb, sizeof tb, s->m[M_TABLE_MB], 1);
            st_bench_fmt_num(nfl, sizeof nfl, s->m[M_FLUSHES], 0);
            st_bench_fmt_num(nco, sizeof nco, s->m[M_COMPACTIONS], 0);
            st_bench_fmt_num(st, sizeof st, s->m[M_STALLS], 0);
            st_bench_fmt_num(sms, sizeof sms, s->m[M_STALL_MS], 1);
            st_bench_fmt_num(hit, sizeof hit, s->m[M_CACHE_HIT], 1);
            st_bench_fmt_num(op, sizeof op, s->m[M_OPEN_SECS], 2);
            printf("%-11s %-8s %8s %8s %8s %8s %8s %7s %7s %7s %8s %6s %7s %7s %7s ",
                   workloads[f->bench[b]].name, rp->eng[e]->name, io, wal, fl, co, tb, nfl, nco, st,
                   sms, hit, op, anon, file);
            for (int l = 0; l < ST_BENCH_LEVELS; l++)
                printf(" %llu", (unsigned long long)s->level_files[l]);
            printf("\n");
        }
    }

    if (rp->neng == 2) {
        printf("\ntargets (strata / LevelDB, from the issue; peak RSS: the worst workload):\n");
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
            const target *t = &targets[i];
            bool present;
            double v = target_ratio(rp, t, &present);
            if (!present)
                continue;
            char got[16];
            fmt_ratio(got, sizeof got, v);
            printf("  %-11s %-11s %7s  (target %s %.1fx): %s\n",
                   t->workload >= 0           ? workloads[t->workload].name
                   : rp->worst_rss_bench >= 0 ? workloads[f->bench[rp->worst_rss_bench]].name
                                              : "-",
                   t->workload < 0 ? "peak RSS" : "ops/s", got, t->at_least ? ">=" : "<=", t->want,
                   st_bench_goal_verdict(v, t->want, t->at_least));
        }
    }
    if (rp->noisy)
        printf("\nWARNING: other processes used more than %.2f cores during some runs (marked "
               "noisy): those figures are suspect.\n",
               ST_BENCH_NOISE_CORES);
}

static void json_metrics(st_bench_json *j, const char *key, const double *m)
{
    st_bench_json_begin_object(j, key);
    for (int i = 0; i < M_COUNT; i++)
        st_bench_json_double(j, metric_names[i], m[i]);
    st_bench_json_end_object(j);
}

static void print_json(const report *rp)
{
    const flags *f = rp->f;
    st_bench_json *j = NULL;
    if (st_bench_json_create(stdout, &j) != ST_OK) {
        fprintf(stderr, "strata-bench engine: %s\n", st_errmsg());
        return;
    }
    st_bench_json_begin_object(j, NULL);
    st_bench_json_string(j, "mode", "engine");
    st_bench_json_begin_object(j, "config");
    st_bench_json_uint(j, "num", f->num);
    st_bench_json_uint(j, "reads", f->reads);
    st_bench_json_uint(j, "scans", f->scans);
    st_bench_json_uint(j, "key_size", f->key_size);
    st_bench_json_uint(j, "value_size", f->value_size);
    st_bench_json_string(j, "values", "random bytes (incompressible), same for both engines");
    st_bench_json_string(j, "sync", sync_name(f->sync));
    st_bench_json_uint(j, "cache_bytes", f->cache_bytes);
    st_bench_json_int(j, "repeat", f->repeat);
    st_bench_json_uint(j, "seed", f->seed);
    st_bench_json_string(j, "dir", rp->dir);
    st_bench_json_string(j, "compare", f->compare ? "leveldb" : NULL);
    st_bench_json_begin_array(j, "benchmarks");
    for (int b = 0; b < f->nbench; b++)
        st_bench_json_string(j, NULL, workloads[f->bench[b]].name);
    st_bench_json_end_array(j);
    st_bench_json_begin_object(j, "engines");
    for (int e = 0; e < rp->neng; e++)
        st_bench_json_string(j, rp->eng[e]->name, rp->describe[e]);
    st_bench_json_end_object(j);
    st_bench_json_string(j, "write_amp_definition", wamp_definition);
    st_bench_json_string(j, "cpu_definition", cpu_definition);
    st_bench_json_double(j, "noise_threshold_cores", ST_BENCH_NOISE_CORES);
    st_bench_json_end_object(j);

    st_bench_json_begin_array(j, "workloads");
    for (int b = 0; b < f->nbench; b++) {
        st_bench_json_begin_object(j, NULL);
        st_bench_json_string(j, "name", workloads[f->bench[b]].name);
        st_bench_json_string(j, "description", workloads[f->bench[b]].what);
        st_bench_json_begin_object(j, "engines");
        for (int e = 0; e < rp->neng; e++) {
            const summary *s = &rp->sum[b][e];
            st_bench_json_begin_object(j, rp->eng[e]->name);
            st_bench_json_int(j, "ok_runs", s->nok);
            st_bench_json_bool(j, "noisy", s->noisy);
            json_metrics(j, "median", s->m);
            st_bench_json_begin_array(j, "runs");
            for (int r = 0; r < f->repeat; r++) {
                const run_result *run = run_at(rp, b, e, r);
                st_bench_json_begin_object(j, NULL);
                st_bench_json_bool(j, "ok", run->ok);
                st_bench_json_string(j, "error", run->ok ? NULL : run->err);
                st_bench_json_uint(j, "ops", run->ops);
                json_metrics(j, "metrics", run->m);
                st_bench_json_begin_array(j, "level_files");
                for (int l = 0; l < ST_BENCH_LEVELS; l++)
                    st_bench_json_uint(j, NULL, run->level_files[l]);
                st_bench_json_end_array(j);
                st_bench_json_end_object(j);
            }
            st_bench_json_end_array(j);
            st_bench_json_end_object(j);
        }
        st_bench_json_end_object(j);
        if (rp->neng == 2) {
            double rm[M_COUNT];
            for (int m = 0; m < M_COUNT; m++)
                rm[m] = st_bench_ratio(rp->sum[b][0].m[m], rp->sum[b][1].m[m]);
            json_metrics(j, "ratio", rm);
            st_bench_json_begin_array(j, "ops_ratio_per_round");
            for (int r = 0; r < f->repeat; r++) {
                const run_result *a = run_at(rp, b, 0, r), *z = run_at(rp, b, 1, r);
                st_bench_json_double(
                    j, NULL, a->ok && z->ok ? st_bench_ratio(a->m[M_OPS], z->m[M_OPS]) : NAN);
            }
            st_bench_json_end_array(j);
        }
        st_bench_json_end_object(j);
    }
    st_bench_json_end_array(j);

    if (rp->neng == 2) {
        st_bench_json_begin_array(j, "targets");
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
            const target *t = &targets[i];
            bool present;
            double v = target_ratio(rp, t, &present);
            if (!present)
                continue;
            st_bench_json_begin_object(j, NULL);
            st_bench_json_string(j, "name",
                                 t->workload < 0 ? "peak_rss" : workloads[t->workload].name);
            st_bench_json_string(j, "metric", t->workload < 0 ? "peak_rss_mb" : "ops_per_sec");
            if (t->workload < 0)
                st_bench_json_string(j, "worst_workload",
                                     rp->worst_rss_bench >= 0
                                         ? workloads[f->bench[rp->worst_rss_bench]].name
                                         : NULL);
            st_bench_json_goal(j, "ratio", v, t->want, t->at_least);
            st_bench_json_end_object(j);
        }
        st_bench_json_end_array(j);
    }
    st_bench_json_bool(j, "noisy", rp->noisy);
    st_bench_json_bool(j, "ok", !rp->failed);
    st_bench_json_end_object(j);
    st_bench_json_destroy(j);
}

static void progress(const report *rp, int round, int b, int e, const run_result *r)
{
    const char *wname = workloads[rp->f->bench[b]].name;
    if (!r->ok) {
        fprintf(stderr, "[%d/%d] %-11s %-8s FAILED: %s\n", round + 1, rp->f->repeat, wname,
                rp->eng[e]->name, r->err);
        return;
    }
    char ops[16], wamp[16], cpu[16], other[16];
    fmt_ops(ops, sizeof ops, r->m[M_OPS]);
    st_bench_fmt_num(wamp, sizeof wamp, r->m[M_WAMP], 2);
    st_bench_fmt_num(cpu, sizeof cpu, r->m[M_CPU_SELF], 2);
    st_bench_fmt_num(other, sizeof other, r->m[M_CPU_OTHER], 2);
    fprintf(stderr,
            "[%d/%d] %-11s %-8s %8s ops/s  p50 %6.2f us  p99 %7.2f us  w-amp %5s  "
            "RSS %6.1f MB  cpu %s other %s%s  (%.1f s)\n",
            round + 1, rp->f->repeat, wname, rp->eng[e]->name, ops, r->m[M_P50], r->m[M_P99], wamp,
            r->m[M_RSS_MB], cpu, other, r->m[M_CPU_OTHER] > ST_BENCH_NOISE_CORES ? " NOISY" : "",
            r->m[M_SECS]);
}

int st_bench_engine_main(int argc, char **argv)
{
    flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc)
        return rc == 1 ? 0 : 2;

    report rp;
    memset(&rp, 0, sizeof rp);
    rp.f = &f;
    rp.eng[rp.neng++] = &st_bench_kv_strata;
#ifdef STRATA_BENCH_HAVE_LEVELDB
    if (f.compare)
        rp.eng[rp.neng++] = &st_bench_kv_leveldb;
#endif
    char *dirs[MAX_ENGINES] = {NULL};
    char tmpl[4096];
    bool own_dir = f.db == NULL;
    rc = 1;

    rp.runs = calloc((size_t)f.nbench * MAX_ENGINES * (size_t)f.repeat, sizeof *rp.runs);
    if (!rp.runs) {
        fprintf(stderr, "strata-bench engine: out of memory\n");
        goto done;
    }
    if (own_dir) {
        if (st_bench_mkdtemp("strata-bench", tmpl, sizeof tmpl) != ST_OK) {
            fprintf(stderr, "strata-bench engine: %s\n", st_errmsg());
            own_dir = false;
            goto done;
        }
        rp.dir = tmpl;
    } else {
        if (mkdir(f.db, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "strata-bench engine: mkdir %s: %s\n", f.db, strerror(errno));
            goto done;
        }
        rp.dir = f.db;
    }
    for (int e = 0; e < rp.neng; e++) {
        size_t n = strlen(rp.dir) + strlen(rp.eng[e]->name) + 2;
        dirs[e] = malloc(n);
        if (!dirs[e]) {
            fprintf(stderr, "strata-bench engine: out of memory\n");
            goto done;
        }
        snprintf(dirs[e], n, "%s/%s", rp.dir, rp.eng[e]->name);
        st_bench_kv_config cfg = {.dir = dirs[e], .sync = f.sync, .cache_bytes = f.cache_bytes};
        rp.eng[e]->describe(&cfg, rp.describe[e], sizeof rp.describe[e]);
    }

    bool has_data[MAX_ENGINES] = {f.use_existing, f.use_existing};
    rp.worst_rss_ratio = NAN;
    rp.worst_rss_bench = -1;
    for (int round = 0; round < f.repeat; round++) {
        for (int b = 0; b < f.nbench; b++) {
            int w = f.bench[b];
            for (int k = 0; k < rp.neng; k++) {
                /* A B for one (round, workload), B A for the next. */
                int e = (round + b) % 2 == 0 ? k : rp.neng - 1 - k;
                if (!workloads[w].fresh && !has_data[e]) {
                    run_result prep;
                    spawn_run(&f, rp.eng[e], dirs[e], W_FILLRANDOM, &prep);
                    fprintf(stderr, "[%d/%d] %-11s %-8s preparing with fillrandom (untimed): %s\n",
                            round + 1, f.repeat, workloads[w].name, rp.eng[e]->name,
                            prep.ok ? "done" : prep.err);
                    has_data[e] = prep.ok;
                }
                run_result *r = run_at(&rp, b, e, round);
                spawn_run(&f, rp.eng[e], dirs[e], w, r);
                if (workloads[w].fresh)
                    has_data[e] = r->ok;
                if (!r->ok)
                    rp.failed = true;
                progress(&rp, round, b, e, r);
            }
        }
    }

    for (int b = 0; b < f.nbench; b++) {
        for (int e = 0; e < rp.neng; e++) {
            summarize(run_at(&rp, b, e, 0), f.repeat, &rp.sum[b][e]);
            if (rp.sum[b][e].noisy)
                rp.noisy = true;
        }
        if (rp.neng == 2) {
            double v = st_bench_ratio(rp.sum[b][0].m[M_RSS_MB], rp.sum[b][1].m[M_RSS_MB]);
            if (!isnan(v) && (isnan(rp.worst_rss_ratio) || v > rp.worst_rss_ratio)) {
                rp.worst_rss_ratio = v;
                rp.worst_rss_bench = b;
            }
        }
    }
    if (f.json)
        print_json(&rp);
    else
        print_text(&rp);
    rc = rp.failed ? 1 : 0;

done:
    if (own_dir) {
        st_status s = st_bench_rm_tree(tmpl);
        if (s)
            fprintf(stderr, "strata-bench engine: %s\n", st_errmsg());
    }
    for (int e = 0; e < MAX_ENGINES; e++)
        free(dirs[e]);
    free(rp.runs);
    return rc;
}
