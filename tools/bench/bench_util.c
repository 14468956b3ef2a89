/*
 * bench_util.c - clock, histogram, JSON writer, /proc accounting, generators, flags, files and
 * report formatting for strata-bench.
 */
#include "tools/bench/bench_util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t st_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram --------------------------------------------------------------------------- */

/* 64 sub-buckets per power of two: values below 128 land in their own bucket, a value with its
   top bit at position e >= 6 lands in (e - 5) * 64 + its next 6 bits. */
#define SUB_BITS 6
#define SUB      (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

struct st_bench_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    long double sum; /* a long run of ns values overflows nothing, and the mean stays exact */
    uint64_t buckets[NBUCKETS];
};

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = e - SUB_BITS;
    return (e - SUB_BITS + 1) * SUB + (unsigned)((v >> shift) - SUB);
}

static void bucket_range(unsigned b, uint64_t *lo, uint64_t *width)
{
    if (b < 2 * SUB) {
        *lo = b;
        *width = 1;
        return;
    }
    unsigned e = b / SUB + SUB_BITS - 1;
    uint64_t m = b % SUB + SUB;
    *lo = m << (e - SUB_BITS);
    *width = (uint64_t)1 << (e - SUB_BITS);
}

st_status st_bench_hist_create(st_bench_hist **out)
{
    st_bench_hist *h = malloc(sizeof *h);
    if (!h)
        return st_error(ST_NO_MEMORY, "histogram: out of memory");
    st_bench_hist_clear(h);
    *out = h;
    return ST_OK;
}

void st_bench_hist_destroy(st_bench_hist *h)
{
    free(h);
}

void st_bench_hist_clear(st_bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void st_bench_hist_add(st_bench_hist *h, uint64_t ns)
{
    h->buckets[bucket_of(ns)]++;
    h->count++;
    h->sum += (long double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

void st_bench_hist_merge(st_bench_hist *dst, const st_bench_hist *src)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t st_bench_hist_count(const st_bench_hist *h)
{
    return h->count;
}

uint64_t st_bench_hist_min(const st_bench_hist *h)
{
    return h->count ? h->min : 0;
}

uint64_t st_bench_hist_max(const st_bench_hist *h)
{
    return h->max;
}

double st_bench_hist_mean(const st_bench_hist *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

uint64_t st_bench_hist_percentile(const st_bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p > 100.0)
        p = 100.0;
    /* The rank of the sample we want, 1-based; ceil so that p50 of {1, 2} is 1, as defined. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank <= 1)
        return h->min;
    if (rank >= h->count)
        return h->max;
    uint64_t seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t lo, width;
            bucket_range(b, &lo, &width);
            uint64_t v = lo + (width - 1) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

void st_bench_hist_latency(const st_bench_hist *h, st_bench_latency *out)
{
    out->p50_us = (double)st_bench_hist_percentile(h, 50) / 1e3;
    out->p99_us = (double)st_bench_hist_percentile(h, 99) / 1e3;
    out->p999_us = (double)st_bench_hist_percentile(h, 99.9) / 1e3;
    out->max_us = (double)st_bench_hist_max(h) / 1e3;
    out->mean_us = st_bench_hist_mean(h) / 1e3;
}

/* ---- JSON -------------------------------------------------------------------------------- */

#define JSON_DEPTH 32

struct st_bench_json {
    FILE *out;
    int depth;
    char kind[JSON_DEPTH];  /* '{' or '[' per open level */
    bool first[JSON_DEPTH]; /* no member written yet at that level */
    bool top_done;          /* the top-level value is complete */
};

st_status st_bench_json_create(FILE *out, st_bench_json **j)
{
    st_bench_json *w = calloc(1, sizeof *w);
    if (!w)
        return st_error(ST_NO_MEMORY, "json: out of memory");
    w->out = out;
    *j = w;
    return ST_OK;
}

void st_bench_json_destroy(st_bench_json *j)
{
    free(j);
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* Comma and member name before a value; checks the key matches where we are. */
static void json_pre(st_bench_json *j, const char *key)
{
    if (j->depth == 0) {
        assert(key == NULL && !j->top_done);
        return;
    }
    int d = j->depth - 1;
    assert((j->kind[d] == '{') == (key != NULL));
    if (!j->first[d])
        fputc(',', j->out);
    j->first[d] = false;
    if (key) {
        json_str(j->out, key);
        fputc(':', j->out);
    }
}

static void json_post(st_bench_json *j)
{
    if (j->depth == 0) {
        j->top_done = true;
        fputc('\n', j->out);
    }
}

static void json_open(st_bench_json *j, const char *key, char kind)
{
    json_pre(j, key);
    assert(j->depth < JSON_DEPTH);
    j->kind[j->depth] = kind;
    j->first[j->depth] = true;
    j->depth++;
    fputc(kind, j->out);
}

static void json_close(st_bench_json *j, char kind)
{
    assert(j->depth > 0 && j->kind[j->depth - 1] == kind);
    j->depth--;
    fputc(kind == '{' ? '}' : ']', j->out);
    json_post(j);
}

void st_bench_json_begin_object(st_bench_json *j, const char *key)
{
    json_open(j, key, '{');
}

void st_bench_json_end_object(st_bench_json *j)
{
    json_close(j, '{');
}

void st_bench_json_begin_array(st_bench_json *j, const char *key)
{
    json_open(j, key, '[');
}

void st_bench_json_end_array(st_bench_json *j)
{
    json_close(j, '[');
}

void st_bench_json_string(st_bench_json *j, const char *key, const char *v)
{
    json_pre(j, key);
    if (v)
        json_str(j->out, v);
    else
        fputs("null", j->out);
    json_post(j);
}

void st_bench_json_double(st_bench_json *j, const char *key, double v)
{
    json_pre(j, key);
    if (isfinite(v))
        fprintf(j->out, "%.10g", v);
    else
        fputs("null", j->out);
    json_post(j);
}

void st_bench_json_uint(st_bench_json *j, const char *key, uint64_t v)
{
    json_pre(j, key);
    fprintf(j->out, "%llu", (unsigned long long)v);
    json_post(j);
}

void st_bench_json_int(st_bench_json *j, const char *key, int64_t v)
{
    json_pre(j, key);
    fprintf(j->out, "%lld", (long long)v);
    json_post(j);
}

void st_bench_json_bool(st_bench_json *j, const char *key, bool v)
{
    json_pre(j, key);
    fputs(v ? "true" : "false", j->out);
    json_post(j);
}

void st_bench_json_null(st_bench_json *j, const char *key)
{
    json_pre(j, key);
    fputs("null", j->out);
    json_post(j);
}

/* ---- /proc ------------------------------------------------------------------------------- */

/* Read a whole (small) /proc file into buf, NUL-terminated. /proc files report size 0, so read
   until EOF rather than trusting fstat. */
static st_status read_text(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_errno_error(errno, "open %s", path);
    size_t len = 0;
    st_status s = ST_OK;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            s = st_errno_error(errno, "read %s at offset %zu", path, len);
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
fail:
    close(fd);
    return s;
}

/* Parse an unsigned decimal at *p, skipping leading blanks; advances *p. */
static bool parse_u64(const char **p, uint64_t *v)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    uint64_t x = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        s++;
    }
    *p = s;
    *v = x;
    return true;
}

st_status st_bench_parse_proc_stat(const char *text, const char *name, uint64_t *busy,
                                   uint64_t *idle, uint64_t *iowait)
{
    /* Only the aggregate line: "cpu  user nice system idle iowait irq softirq steal ...".
       guest and guest_nice are already inside user and nice, so they are not added again. */
    if (strncmp(text, "cpu ", 4) != 0)
        return st_error(ST_CORRUPTION, "%s: no aggregate cpu line at offset 0", name);
    const char *p = text + 4;
    uint64_t f[8] = {0};
    int n = 0;
    while (n < 8 && parse_u64(&p, &f[n]))
        n++;
    if (n < 4)
        return st_error(ST_CORRUPTION, "%s: cpu line has %d fields, want at least 4", name, n);
    *busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    *idle = f[3];
    *iowait = f[4];
    return ST_OK;
}

st_status st_bench_parse_pid_stat(const char *text, const char *name, uint64_t *ticks)
{
    /* comm may hold spaces and parentheses, so fields are counted from its last ")". */
    const char *p = strrchr(text, ')');
    if (!p)
        return st_error(ST_CORRUPTION, "%s: no \")\" after the command name", name);
    p++;
    /* After ")": state is field 3; utime and stime are fields 14 and 15. */
    int field = 2;
    uint64_t utime = 0, stime = 0;
    while (*p && field < 15) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        field++;
        if (field == 14 || field == 15) {
            uint64_t v;
            if (!parse_u64(&p, &v))
                return st_error(ST_CORRUPTION, "%s: field %d at offset %td is not a number", name,
                                field, p - text);
            if (field == 14)
                utime = v;
            else
                stime = v;
        } else {
            while (*p && *p != ' ')
                p++;
        }
    }
    if (field < 15)
        return st_error(ST_CORRUPTION, "%s: only %d fields, want 15", name, field);
    *ticks = utime + stime;
    return ST_OK;
}

st_status st_bench_parse_field(const char *text, const char *name, const char *field,
                               uint64_t *value)
{
    size_t flen = strlen(field);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            const char *p = line + flen + 1;
            if (!parse_u64(&p, value))
                return st_error(ST_CORRUPTION, "%s: %s at offset %td is not a number", name, field,
                                line - text);
            return ST_OK;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return st_error(ST_CORRUPTION, "%s: no %s line", name, field);
}

st_status st_bench_cpu_sample(st_bench_cpu *out)
{
    char buf[8192];
    st_status s = read_text("/proc/self/stat", buf, sizeof buf);
    if (s)
        return s;
    s = st_bench_parse_pid_stat(buf, "/proc/self/stat", &out->self_ticks);
    if (s)
        return s;
    s = read_text("/proc/stat", buf, sizeof buf);
    if (s)
        return s;
    s = st_bench_parse_proc_stat(buf, "/proc/stat", &out->busy_ticks, &out->idle_ticks,
                                 &out->iowait_ticks);
    if (s)
        return s;
    out->wall_ns = st_bench_now_ns();
    return ST_OK;
}

void st_bench_cpu_diff(const st_bench_cpu *before, const st_bench_cpu *after, st_bench_cpu_use *out)
{
    double hz = (double)sysconf(_SC_CLK_TCK);
    double secs = (double)(after->wall_ns - before->wall_ns) / 1e9;
    if (hz <= 0 || secs <= 0) {
        memset(out, 0, sizeof *out);
        return;
    }
    double self = (double)(after->self_ticks - before->self_ticks);
    double busy = (double)(after->busy_ticks - before->busy_ticks);
    double other = busy - self;
    /* The two files are read a moment apart and tick at their own edges, so a quiet machine can
       show a tick or two less in busy than in self. */
    if (other < 0)
        other = 0;
    out->self_cores = self / hz / secs;
    out->other_cores = other / hz / secs;
    out->iowait_cores = (double)(after->iowait_ticks - before->iowait_ticks) / hz / secs;
}

st_status st_bench_mem_sample(st_bench_mem *out)
{
    char buf[8192];
    st_status s = read_text("/proc/self/status", buf, sizeof buf);
    if (s)
        return s;
    const char *name = "/proc/self/status";
    if ((s = st_bench_parse_field(buf, name, "VmHWM", &out->peak_kb)) != ST_OK ||
        (s = st_bench_parse_field(buf, name, "VmRSS", &out->rss_kb)) != ST_OK ||
        (s = st_bench_parse_field(buf, name, "RssAnon", &out->anon_kb)) != ST_OK ||
        (s = st_bench_parse_field(buf, name, "RssFile", &out->file_kb)) != ST_OK)
        return s;
    return ST_OK;
}

st_status st_bench_io_written(uint64_t *bytes)
{
    char buf[1024];
    st_status s = read_text("/proc/self/io", buf, sizeof buf);
    if (s)
        return s;
    return st_bench_parse_field(buf, "/proc/self/io", "wchar", bytes);
}

/* ---- statistics -------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double st_bench_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    if (n % 2)
        return v[n / 2];
    return (v[n / 2 - 1] + v[n / 2]) / 2;
}

double st_bench_ratio(double a, double b)
{
    return isnan(a) || isnan(b) || b <= 0 ? NAN : a / b;
}

/* ---- generators -------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void st_bench_rng_seed(st_bench_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t st_bench_rng_next(st_bench_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ull;
    return mix64(r->state);
}

uint64_t st_bench_rng_uniform(st_bench_rng *r, uint64_t n)
{
    assert(n > 0);
    unsigned __int128 m = (unsigned __int128)st_bench_rng_next(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128)st_bench_rng_next(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void st_bench_rng_bytes(st_bench_rng *r, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n >= 8) {
        uint64_t x = st_bench_rng_next(r);
        memcpy(p, &x, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t x = st_bench_rng_next(r);
        memcpy(p, &x, n);
    }
}

char *st_bench_value_pool(uint64_t seed, size_t value_size)
{
    char *pool = malloc(ST_BENCH_VALUE_POOL + value_size);
    if (!pool)
        return NULL;
    st_bench_rng rng;
    st_bench_rng_seed(&rng, seed ^ 0x76616c756573ull); /* "values" */
    st_bench_rng_bytes(&rng, pool, ST_BENCH_VALUE_POOL + value_size);
    return pool;
}

int st_bench_key_digits(uint64_t n)
{
    uint64_t largest = n > 0 ? n - 1 : 0;
    int d = 1;
    while (largest >= 10) {
        largest /= 10;
        d++;
    }
    return d;
}

void st_bench_format_key(char *buf, size_t key_size, uint64_t i)
{
    size_t pos = key_size;
    while (pos > 0) {
        buf[--pos] = (char)('0' + i % 10);
        i /= 10;
    }
    assert(i == 0);
}

void st_bench_perm_init(st_bench_perm *p, uint64_t n, uint64_t seed)
{
    assert(n >= 1 && n <= ((uint64_t)1 << 62));
    unsigned bits = 2;
    while (bits < 64 && ((uint64_t)1 << bits) < n)
        bits++;
    if (bits % 2)
        bits++;
    p->n = n;
    p->half_bits = bits / 2;
    p->half_mask = ((uint64_t)1 << p->half_bits) - 1;
    st_bench_rng r;
    st_bench_rng_seed(&r, seed);
    for (int k = 0; k < 4; k++)
        p->keys[k] = st_bench_rng_next(&r);
}

static uint64_t feistel(const st_bench_perm *p, uint64_t x)
{
    uint64_t l = x >> p->half_bits, r = x & p->half_mask;
    for (int k = 0; k < 4; k++) {
        uint64_t t = l ^ (mix64(r ^ p->keys[k]) & p->half_mask);
        l = r;
        r = t;
    }
    return (l << p->half_bits) | r;
}

uint64_t st_bench_perm_at(const st_bench_perm *p, uint64_t i)
{
    assert(i < p->n);
    /* Cycle-walking: the Feistel network permutes [0, 2^bits); following its cycle from i until
       it re-enters [0, n) restricts it to a permutation of [0, n). */
    uint64_t x = i;
    do {
        x = feistel(p, x);
    } while (x >= p->n);
    return x;
}

/* ---- sizes ------------------------------------------------------------------------------- */

st_status st_bench_parse_size(const char *s, uint64_t *out)
{
    const char *p = s;
    uint64_t v;
    if (!isdigit((unsigned char)*s) || !parse_u64(&p, &v))
        return st_error(ST_INVALID_ARGUMENT, "\"%s\" is not a size", s);
    unsigned shift = 0;
    switch (*p) {
    case 'k':
    case 'K':
        shift = 10;
        p++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        p++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        p++;
        break;
    default:
        break;
    }
    if (shift && *p == 'i')
        p++;
    if (*p == 'B')
        p++;
    if (*p != '\0')
        return st_error(ST_INVALID_ARGUMENT, "\"%s\" is not a size (use 123, 64K, 8M, 1G)", s);
    if (shift && v > (UINT64_MAX >> shift))
        return st_error(ST_INVALID_ARGUMENT, "size \"%s\" overflows", s);
    *out = v << shift;
    return ST_OK;
}

/* ---- flags ------------------------------------------------------------------------------- */

int st_bench_parse_flags(const char *mode, int argc, char **argv, const struct option *opts,
                         st_bench_flag_fn set, void *ctx, void (*usage)(FILE *out))
{
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == '?' || c == ':') {
            usage(stderr);
            return 2;
        }
        if (!set(ctx, c, optarg))
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "strata-bench %s: unexpected argument \"%s\"\n", mode, argv[optind]);
        return 2;
    }
    return 0;
}

bool st_bench_flag_size(const char *mode, const char *flag, const char *v, uint64_t *out)
{
    if (st_bench_parse_size(v, out) != ST_OK) {
        fprintf(stderr, "strata-bench %s: %s: %s\n", mode, flag, st_errmsg());
        return false;
    }
    return true;
}

/* ---- files ------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    return rc == 0 || errno == ENOENT ? 0 : -1;
}

st_status st_bench_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? ST_OK : st_errno_error(errno, "stat %s", path);
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return st_errno_error(errno, "remove %s", path);
    return ST_OK;
}

st_status st_bench_mkdtemp(const char *name, char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(buf))
        return st_errno_error(errno, "mkdtemp %s", buf);
    return ST_OK;
}

/* ---- reports ----------------------------------------------------------------------------- */

void st_bench_fmt_num(char *buf, size_t cap, double v, int decimals)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.*f", decimals, v);
}

const char *st_bench_goal_verdict(double got, double want, bool at_least)
{
    if (isnan(got))
        return "no result";
    return (at_least ? got >= want : got <= want) ? "met" : "MISSED";
}

void st_bench_json_goal(st_bench_json *j, const char *value_key, double got, double want,
                        bool at_least)
{
    st_bench_json_string(j, "comparison", at_least ? ">=" : "<=");
    st_bench_json_double(j, "target", want);
    st_bench_json_double(j, value_key, got);
    if (isnan(got))
        st_bench_json_null(j, "met");
    else
        st_bench_json_bool(j, "met", at_least ? got >= want : got <= want);
}
