/*
 * bench_rpc.c - `strata-bench rpc`: closed-loop gRPC load on a strata node (or a 3-node
 * cluster), optionally side by side with etcd 3.4 through the same generator.
 *
 * The generator (tools/bench/README.md says more):
 *  - N channels, each its own TCP connection (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL), and M calls
 *    in flight on each: N×M call slots. Every slot is a small state machine driven by a
 *    completion queue; when its call completes the slot checks the answer and starts the next
 *    call at once. --threads threads each poll one queue and own every T-th slot. No thread per
 *    call, no allocation per call beyond what gRPC and protobuf-c do.
 *  - Every slot has its own seeded generator, the same for strata and etcd, so both see the
 *    same keys in the same order per slot and the same value bytes.
 *  - A run: connect, --warmup seconds of load that is not counted, then --duration seconds in
 *    which every call that completes is counted and its latency (from just before the call is
 *    started to its completion, encoding excluded) goes into the histogram; then no new calls,
 *    and the in-flight ones drain.
 *  - Each answer is checked: status OK, the response parses, a write has a sequence (etcd: a
 *    revision), a Get returns a value of --value-size bytes (etcd: exactly one pair), a scan
 *    returns --scan-len pairs. Any failure makes the run fail.
 *  - CPU: this process, the servers it started (/proc/PID/stat) and everything else
 *    (/proc/stat), over the measured window; the load average with each run.
 *
 * With --compare etcd the two systems alternate (A B, then B A in the next round); figures are
 * medians over --repeat rounds and the per-round ratios are printed too.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "etcd/rpc.pb-c.h"
#include "node/rpc_client.h"
#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"
#include "tools/bench/bench_modes.h"
#include "tools/bench/bench_servers.h"
#include "tools/bench/bench_util.h"

#define CALL_TIMEOUT_MS 30000
#define START_MS        60000
#define MAX_ROUNDS      99
#define MAX_SLOTS       65536
#define LOAD_INFLIGHT   128 /* calls in flight while loading keys for get/scan */

/* OP_SNAPSHOT is a procedure of its own (snapshot_bench); OP_LOAD and OP_LOAD_WRITE put every
   key once, with Put or with Write batches of --batch keys. */
typedef enum op_kind {
    OP_PUT,
    OP_GET,
    OP_SCAN,
    OP_WRITE,
    OP_SNAPSHOT,
    OP_LOAD,
    OP_LOAD_WRITE
} op_kind;
static const char *const op_names[] = {"put",      "get",  "scan",      "write",
                                       "snapshot", "load", "load-write"};

/* ---- flags ------------------------------------------------------------------------------- */

typedef struct flags {
    char *addr; /* --addr as given (NULL: start our own) */
    op_kind op;
    uint64_t connections, inflight, threads;
    double duration, warmup;
    uint64_t key_size, value_size, keys, batch, scan_len;
    bool compare_etcd;
    uint64_t cluster;
    int repeat;
    bool json;
    bool no_load;
    double rate;      /* --rate: calls/s in all, 0 = closed loop */
    bool lag;         /* --lag: a half-load run with replication lag probes */
    const char *sync; /* --sync: the WAL sync policy of the strata nodes started here */
    uint64_t seed;
    const char *node_bin, *etcd_bin;
    char node_bin_buf[4096];
} flags;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: strata-bench rpc [flags]\n"
        "\n"
        "  --addr HOST:PORT[,..]  strata node(s) to load; with several, writes go to the one\n"
        "                         that leads (default: start strata-node --sync always in a\n"
        "                         temporary directory, or three with --cluster 3)\n"
        "  --op OP                put | get | scan | write (default put)\n"
        "  --connections N        channels, each its own TCP connection (default 1)\n"
        "  --inflight M           calls in flight per connection (default 64)\n"
        "  --threads T            client threads, one completion queue each (default 1)\n"
        "  --duration S           measured seconds per run (default 10)\n"
        "  --warmup S             seconds of load before measuring (default 1)\n"
        "  --keys K               key space: put/write draw from it, get/scan load it first\n"
        "                         (default 100000)\n"
        "  --key-size N           bytes per key, decimal padded with '0' (default 16)\n"
        "  --value-size N         bytes per value, random (default 100)\n"
        "  --batch B              puts per Write call for --op write (default 1000)\n"
        "  --scan-len L           pairs per scan for --op scan (default 100)\n"
        "  --compare etcd         run etcd (Debian etcd-server 3.4) on the same load,\n"
        "                         alternating, and print the ratios\n"
        "  --cluster N            1 or 3: strata nodes (MAJORITY acks) and etcd members\n"
        "                         started (default 1)\n"
        "  --repeat R             rounds; figures are medians (default 1, 3 with --compare)\n"
        "  --no-load              get/scan: the keys are there already (from an earlier run)\n"
        "  --rate R               pace the calls to R per second in all (default: closed loop,\n"
        "                         each slot starts its next call as soon as one completes)\n"
        "  --op snapshot          (issue 4) nodes 1 and 2 of a cluster get --keys keys, then\n"
        "                         node 3 starts empty and installs a snapshot: its speed,\n"
        "                         next to a plain copy (with fsync) of the leader's data\n"
        "  --lag                  strata cluster, --op put: after the rounds, one more strata\n"
        "                         run at half the median QPS with replication lag probes\n"
        "  --sync always|none     WAL sync policy of the strata nodes started here (default\n"
        "                         always, etcd's durability); none: no fsync at all, a\n"
        "                         ceiling for what the disk costs, not a like-for-like run\n"
        "  --node PATH            strata-node to start (default: next to this program's\n"
        "                         build directory, node/strata-node)\n"
        "  --etcd PATH            etcd to start (default /usr/bin/etcd)\n"
        "  --seed N               generator seed (default 301)\n"
        "  --json                 print the results as one JSON object on stdout\n");
}

static bool parse_secs(const char *flag, const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= 0) || d > 86400) {
        fprintf(stderr, "strata-bench rpc: %s: \"%s\" is not a number of seconds\n", flag, v);
        return false;
    }
    *out = d;
    return true;
}

/* The strata-node of this build: <dir of this program>/../../node/strata-node. */
static void default_node_bin(flags *f)
{
    char self[2048];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(f->node_bin_buf, sizeof f->node_bin_buf, "%s/../../node/strata-node", self);
            if (access(f->node_bin_buf, X_OK) == 0) {
                f->node_bin = f->node_bin_buf;
                return;
            }
        }
    }
    f->node_bin = "strata-node";
}

enum {
    F_ADDR = 256,
    F_OP,
    F_CONN,
    F_INFLIGHT,
    F_THREADS,
    F_DURATION,
    F_WARMUP,
    F_KEYS,
    F_KEY_SIZE,
    F_VALUE_SIZE,
    F_BATCH,
    F_SCAN_LEN,
    F_COMPARE,
    F_CLUSTER,
    F_REPEAT,
    F_NO_LOAD,
    F_RATE,
    F_LAG,
    F_SYNC,
    F_NODE,
    F_ETCD,
    F_SEED,
    F_JSON
};

/* One flag into the flags at ctx (an st_bench_flag_fn). */
static bool set_flag(void *ctx, int code, char *arg)
{
    flags *f = ctx;
    uint64_t v;
    switch (code) {
    case F_ADDR:
        f->addr = arg;
        return true;
    case F_OP: {
        int found = -1;
        for (int i = OP_PUT; i <= OP_SNAPSHOT; i++)
            if (strcmp(arg, op_names[i]) == 0)
                found = i;
        if (found < 0) {
            fprintf(stderr, "strata-bench rpc: --op must be put, get, scan, write or snapshot\n");
            return false;
        }
        f->op = (op_kind)found;
        return true;
    }
    case F_CONN:
        return st_bench_flag_size("rpc", "--connections", arg, &f->connections);
    case F_INFLIGHT:
        return st_bench_flag_size("rpc", "--inflight", arg, &f->inflight);
    case F_THREADS:
        return st_bench_flag_size("rpc", "--threads", arg, &f->threads);
    case F_DURATION:
        return parse_secs("--duration", arg, &f->duration);
    case F_WARMUP:
        return parse_secs("--warmup", arg, &f->warmup);
    case F_KEYS:
        return st_bench_flag_size("rpc", "--keys", arg, &f->keys);
    case F_KEY_SIZE:
        return st_bench_flag_size("rpc", "--key-size", arg, &f->key_size);
    case F_VALUE_SIZE:
        return st_bench_flag_size("rpc", "--value-size", arg, &f->value_size);
    case F_BATCH:
        return st_bench_flag_size("rpc", "--batch", arg, &f->batch);
    case F_SCAN_LEN:
        return st_bench_flag_size("rpc", "--scan-len", arg, &f->scan_len);
    case F_COMPARE:
        if (strcmp(arg, "etcd") != 0) {
            fprintf(stderr, "strata-bench rpc: --compare knows only etcd\n");
            return false;
        }
        f->compare_etcd = true;
        return true;
    case F_CLUSTER:
        return st_bench_flag_size("rpc", "--cluster", arg, &f->cluster);
    case F_REPEAT:
        if (!st_bench_flag_size("rpc", "--repeat", arg, &v))
            return false;
        if (v < 1 || v > MAX_ROUNDS) {
            fprintf(stderr, "strata-bench rpc: --repeat must be 1 to %d\n", MAX_ROUNDS);
            return false;
        }
        f->repeat = (int)v;
        return true;
    case F_NO_LOAD:
        f->no_load = true;
        return true;
    case F_RATE:
        return parse_secs("--rate", arg, &f->rate);
    case F_LAG:
        f->lag = true;
        return true;
    case F_SYNC:
        if (strcmp(arg, "always") != 0 && strcmp(arg, "none") != 0) {
            fprintf(stderr, "strata-bench rpc: --sync takes always or none, not '%s'\n", arg);
            return false;
        }
        f->sync = arg;
        return true;
    case F_NODE:
        f->node_bin = arg;
        return true;
    case F_ETCD:
        f->etcd_bin = arg;
        return true;
    case F_SEED:
        return st_bench_flag_size("rpc", "--seed", arg, &f->seed);
    case F_JSON:
        f->json = true;
        return true;
    }
    return false;
}

/* Returns 0 to run, 1 after --help, 2 on a bad flag. */
static int parse_flags(int argc, char **argv, flags *f)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, F_ADDR},
        {"op", required_argument, NULL, F_OP},
        {"connections", required_argument, NULL, F_CONN},
        {"inflight", required_argument, NULL, F_INFLIGHT},
        {"threads", required_argument, NULL, F_THREADS},
        {"duration", required_argument, NULL, F_DURATION},
        {"warmup", required_argument, NULL, F_WARMUP},
        {"keys", required_argument, NULL, F_KEYS},
        {"key-size", required_argument, NULL, F_KEY_SIZE},
        {"value-size", required_argument, NULL, F_VALUE_SIZE},
        {"batch", required_argument, NULL, F_BATCH},
        {"scan-len", required_argument, NULL, F_SCAN_LEN},
        {"compare", required_argument, NULL, F_COMPARE},
        {"cluster", required_argument, NULL, F_CLUSTER},
        {"repeat", required_argument, NULL, F_REPEAT},
        {"no-load", no_argument, NULL, F_NO_LOAD},
        {"rate", required_argument, NULL, F_RATE},
        {"lag", no_argument, NULL, F_LAG},
        {"sync", required_argument, NULL, F_SYNC},
        {"node", required_argument, NULL, F_NODE},
        {"etcd", required_argument, NULL, F_ETCD},
        {"seed", required_argument, NULL, F_SEED},
        {"json", no_argument, NULL, F_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(f, 0, sizeof *f);
    f->op = OP_PUT;
    f->connections = 1;
    f->inflight = 64;
    f->threads = 1;
    f->duration = 10;
    f->warmup = 1;
    f->keys = 100000;
    f->key_size = 16;
    f->value_size = 100;
    f->batch = 1000;
    f->scan_len = 100;
    f->cluster = 1;
    f->repeat = 0;
    f->seed = 301;
    f->etcd_bin = "/usr/bin/etcd";
    f->node_bin = NULL;
    f->sync = "always";

    int rc = st_bench_parse_flags("rpc", argc, argv, opts, set_flag, f, usage);
    if (rc)
        return rc;
    if (f->connections < 1 || f->connections > 1024 || f->inflight < 1 || f->inflight > MAX_SLOTS ||
        f->connections * f->inflight > MAX_SLOTS) {
        fprintf(stderr,
                "strata-bench rpc: --connections (1 to 1024) × --inflight must be 1 to "
                "%d calls\n",
                MAX_SLOTS);
        return 2;
    }
    if (f->threads < 1 || f->threads > 64) {
        fprintf(stderr, "strata-bench rpc: --threads must be 1 to 64\n");
        return 2;
    }
    if (f->duration <= 0) {
        fprintf(stderr, "strata-bench rpc: --duration must be above 0\n");
        return 2;
    }
    if (f->keys < 1 || f->keys > ((uint64_t)1 << 40)) {
        fprintf(stderr, "strata-bench rpc: --keys must be 1 to 2^40\n");
        return 2;
    }
    if (f->key_size < (uint64_t)st_bench_key_digits(f->keys) || f->key_size > 8192) {
        fprintf(stderr, "strata-bench rpc: --key-size must be %d (the digits of --keys) to 8192\n",
                st_bench_key_digits(f->keys));
        return 2;
    }
    if (f->value_size < 1 || f->value_size > (1u << 20)) {
        fprintf(stderr, "strata-bench rpc: --value-size must be 1 to 1 MiB\n");
        return 2;
    }
    if (f->batch < 1 || f->batch > 100000) {
        fprintf(stderr, "strata-bench rpc: --batch must be 1 to 100000\n");
        return 2;
    }
    if (f->scan_len < 1 || f->scan_len > f->keys || f->scan_len > 100000) {
        fprintf(stderr, "strata-bench rpc: --scan-len must be 1 to min(--keys, 100000)\n");
        return 2;
    }
    if (f->cluster != 1 && f->cluster != 3) {
        fprintf(stderr, "strata-bench rpc: --cluster must be 1 or 3\n");
        return 2;
    }
    if (f->compare_etcd && f->op == OP_WRITE) {
        fprintf(stderr, "strata-bench rpc: --op write has no etcd counterpart (etcd's Txn takes at "
                        "most 128 operations by default); run it without --compare\n");
        return 2;
    }
    if (f->compare_etcd && access(f->etcd_bin, X_OK) != 0) {
        fprintf(stderr, "strata-bench rpc: --compare etcd: %s: %s (apt-get install etcd-server)\n",
                f->etcd_bin, strerror(errno));
        return 2;
    }
    if (f->lag && (f->op != OP_PUT || (f->cluster < 2 && !(f->addr && strchr(f->addr, ','))))) {
        fprintf(stderr, "strata-bench rpc: --lag needs --op put and a strata cluster (--cluster 3, "
                        "or several --addr)\n");
        return 2;
    }
    if (f->op == OP_SNAPSHOT && (f->addr || f->compare_etcd)) {
        fprintf(stderr, "strata-bench rpc: --op snapshot starts its own 3-node cluster: no --addr "
                        "or --compare\n");
        return 2;
    }
    if (f->op == OP_SNAPSHOT)
        f->cluster = 3;
    if (f->repeat == 0)
        f->repeat = f->compare_etcd ? 3 : 1;
    if (!f->node_bin)
        default_node_bin(f);
    return 0;
}

/* ---- one run: the load generator --------------------------------------------------------- */

/* The system a run talks to: what it is and where the calls go. */
typedef struct target {
    st_bench_system sys;
    const char *name;
    char addr[256];            /* where the calls go (the leader) */
    st_bench_servers *servers; /* the group we started, or NULL for --addr */
} target;

enum phase { PH_UNARY, PH_STREAM, PH_STATUS };

typedef struct worker worker;

typedef struct slot {
    worker *w;
    uint32_t idx;
    grpc_channel *ch;
    void *method; /* registered call handle */
    bool streaming;
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code code;
    grpc_slice details;
    enum phase phase;
    uint64_t t_start;
    uint64_t pairs;  /* scan: pairs received so far in this call */
    uint64_t nitems; /* keys the call carries (write: its batch) */
    bool bad;        /* a message of this call did not check out */
    st_bench_rng rng;
    uint8_t *req;
    size_t req_cap;
    char *keys; /* batch × key_size (write) or one key */
    Strata__V1__Mutation *muts;
    Strata__V1__Mutation__Put *puts;
    Strata__V1__Mutation **mut_ptrs;
} slot;

typedef struct run_ctx run_ctx;

struct worker {
    run_ctx *rc;
    grpc_completion_queue *cq;
    pthread_t th;
    slot **slots;
    size_t nslots;
    size_t active;
    st_bench_hist *hist;
    uint64_t calls, items, errors, late;
    char first_err[256];
    /* Paced runs (run_ctx.interval_ns > 0): slots waiting for their turn, and when the next
       call is due. */
    slot **idle;
    size_t nidle;
    uint64_t next_send;
};

struct run_ctx {
    const flags *f;
    const target *t;
    op_kind op;
    const char *pool; /* ST_BENCH_VALUE_POOL + value_size random bytes */
    grpc_channel **chans;
    size_t nchans;
    void **methods; /* per channel */
    uint64_t t_measure, t_end;
    uint64_t interval_ns;           /* per worker between call starts; 0: closed loop (no pacing) */
    atomic_uint_fast64_t next_load; /* OP_LOAD: next key to put */
};

typedef struct run_result {
    bool ok;
    char err[300];
    double qps, items_per_sec;
    st_bench_latency lat;
    uint64_t calls, items, errors;
    double secs;
    double cpu_client, cpu_server, cpu_other, iowait;
    double server_us_per_item; /* server CPU per call (per key for write), microseconds */
    double load1;
} run_result;

static const char *method_name(st_bench_system sys, op_kind op)
{
    if (sys == ST_BENCH_ETCD)
        return op == OP_PUT || op == OP_LOAD ? "/etcdserverpb.KV/Put" : "/etcdserverpb.KV/Range";
    switch (op) {
    case OP_GET:
        return "/strata.v1.KV/Get";
    case OP_SCAN:
        return "/strata.v1.KV/Scan";
    case OP_WRITE:
    case OP_LOAD_WRITE:
        return "/strata.v1.KV/Write";
    default:
        return "/strata.v1.KV/Put";
    }
}

static void set_err(worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(worker *w, const char *fmt, ...)
{
    w->errors++;
    if (w->first_err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->first_err, sizeof w->first_err, fmt, ap);
    va_end(ap);
}

static bool ensure_req(slot *s, size_t n)
{
    if (n <= s->req_cap)
        return true;
    uint8_t *p = realloc(s->req, n);
    if (!p)
        return false;
    s->req = p;
    s->req_cap = n;
    return true;
}

static const char *value_at(const run_ctx *rc, slot *s)
{
    return rc->pool + st_bench_rng_uniform(&s->rng, ST_BENCH_VALUE_POOL);
}

/* Encode the next request of slot s. False when there is nothing more to do (OP_LOAD done). */
static bool encode(run_ctx *rc, slot *s, size_t *len)
{
    const flags *f = rc->f;
    const size_t ks = (size_t)f->key_size, vs = (size_t)f->value_size;
    uint64_t k;
    switch (rc->op) {
    case OP_LOAD:
        k = atomic_fetch_add(&rc->next_load, 1);
        if (k >= f->keys)
            return false;
        break;
    case OP_SCAN:
        k = st_bench_rng_uniform(&s->rng, f->keys - f->scan_len + 1);
        break;
    case OP_LOAD_WRITE:
        k = atomic_fetch_add(&rc->next_load, f->batch);
        if (k >= f->keys)
            return false;
        break;
    case OP_WRITE:
        k = 0;
        break;
    default:
        k = st_bench_rng_uniform(&s->rng, f->keys);
        break;
    }
    s->nitems = 1;
    if (rc->op != OP_WRITE && rc->op != OP_LOAD_WRITE)
        st_bench_format_key(s->keys, ks, k);
    ProtobufCBinaryData key = {ks, (uint8_t *)s->keys};

    if (rc->t->sys == ST_BENCH_ETCD) {
        if (rc->op == OP_PUT || rc->op == OP_LOAD) {
            Etcdserverpb__PutRequest m = ETCDSERVERPB__PUT_REQUEST__INIT;
            m.key = key;
            m.value.data = (uint8_t *)value_at(rc, s);
            m.value.len = vs;
            if (!ensure_req(s, etcdserverpb__put_request__get_packed_size(&m)))
                return false;
            *len = etcdserverpb__put_request__pack(&m, s->req);
        } else {
            static uint8_t zero = 0;
            Etcdserverpb__RangeRequest m = ETCDSERVERPB__RANGE_REQUEST__INIT;
            m.key = key;
            if (rc->op == OP_SCAN) {
                m.range_end.data = &zero; /* "\0": every key >= key */
                m.range_end.len = 1;
                m.limit = (int64_t)f->scan_len;
            }
            if (!ensure_req(s, etcdserverpb__range_request__get_packed_size(&m)))
                return false;
            *len = etcdserverpb__range_request__pack(&m, s->req);
        }
        return true;
    }
    switch (rc->op) {
    case OP_SNAPSHOT: /* not a call: snapshot_bench never runs a load of it */
        return false;
    case OP_PUT:
    case OP_LOAD: {
        Strata__V1__PutRequest m = STRATA__V1__PUT_REQUEST__INIT;
        m.key = key;
        m.value.data = (uint8_t *)value_at(rc, s);
        m.value.len = vs;
        if (!ensure_req(s, strata__v1__put_request__get_packed_size(&m)))
            return false;
        *len = strata__v1__put_request__pack(&m, s->req);
        break;
    }
    case OP_GET: {
        /* Linearizable, as etcd's default Range it is set beside (free on one node; on a
           cluster the load goes to the leader anyway). */
        Strata__V1__GetRequest m = STRATA__V1__GET_REQUEST__INIT;
        m.key = key;
        m.linearizable = true;
        if (!ensure_req(s, strata__v1__get_request__get_packed_size(&m)))
            return false;
        *len = strata__v1__get_request__pack(&m, s->req);
        break;
    }
    case OP_SCAN: {
        Strata__V1__ScanRequest m = STRATA__V1__SCAN_REQUEST__INIT;
        m.start = key;
        m.limit = f->scan_len;
        m.linearizable = true;
        if (!ensure_req(s, strata__v1__scan_request__get_packed_size(&m)))
            return false;
        *len = strata__v1__scan_request__pack(&m, s->req);
        break;
    }
    case OP_WRITE:
    case OP_LOAD_WRITE: {
        /* load-write: keys k … k + batch - 1 (fewer at the end); write: random keys. */
        s->nitems = rc->op == OP_WRITE || k + f->batch <= f->keys ? f->batch : f->keys - k;
        for (size_t i = 0; i < s->nitems; i++) {
            char *kp = s->keys + i * ks;
            st_bench_format_key(
                kp, ks, rc->op == OP_WRITE ? st_bench_rng_uniform(&s->rng, f->keys) : k + i);
            s->puts[i].key.data = (uint8_t *)kp;
            s->puts[i].key.len = ks;
            s->puts[i].value.data = (uint8_t *)value_at(rc, s);
            s->puts[i].value.len = vs;
        }
        Strata__V1__WriteRequest m = STRATA__V1__WRITE_REQUEST__INIT;
        m.n_mutations = (size_t)s->nitems;
        m.mutations = s->mut_ptrs;
        if (!ensure_req(s, strata__v1__write_request__get_packed_size(&m)))
            return false;
        *len = strata__v1__write_request__pack(&m, s->req);
        break;
    }
    }
    return true;
}

/* Parse one response message and check it; false (with the error recorded) if it is wrong. */
static bool check_message(run_ctx *rc, slot *s, const uint8_t *p, size_t n)
{
    const flags *f = rc->f;
    worker *w = s->w;
    if (rc->t->sys == ST_BENCH_ETCD) {
        if (rc->op == OP_PUT || rc->op == OP_LOAD) {
            Etcdserverpb__PutResponse *m = etcdserverpb__put_response__unpack(NULL, n, p);
            bool ok = m && m->header && m->header->revision > 0;
            if (m)
                etcdserverpb__put_response__free_unpacked(m, NULL);
            if (!ok)
                set_err(w, "etcd Put: the response does not parse or has no revision");
            return ok;
        }
        Etcdserverpb__RangeResponse *m = etcdserverpb__range_response__unpack(NULL, n, p);
        if (!m) {
            set_err(w, "etcd Range: the response does not parse");
            return false;
        }
        bool ok;
        if (rc->op == OP_GET) {
            ok = m->n_kvs == 1 && m->kvs[0]->value.len == f->value_size;
            if (!ok)
                set_err(w, "etcd Range of %.*s: %zu pairs (want 1 with a %llu-byte value)",
                        (int)f->key_size, s->keys, m->n_kvs, (unsigned long long)f->value_size);
        } else {
            ok = m->n_kvs == f->scan_len;
            if (!ok)
                set_err(w, "etcd Range from %.*s: %zu pairs, want %llu", (int)f->key_size, s->keys,
                        m->n_kvs, (unsigned long long)f->scan_len);
        }
        etcdserverpb__range_response__free_unpacked(m, NULL);
        return ok;
    }
    switch (rc->op) {
    case OP_SNAPSHOT:
        return false;
    case OP_PUT:
    case OP_LOAD: {
        Strata__V1__PutResponse *m = strata__v1__put_response__unpack(NULL, n, p);
        bool ok = m && m->seq > 0;
        if (m)
            strata__v1__put_response__free_unpacked(m, NULL);
        if (!ok)
            set_err(w, "strata Put: the response does not parse or has no sequence");
        return ok;
    }
    case OP_WRITE:
    case OP_LOAD_WRITE: {
        Strata__V1__WriteResponse *m = strata__v1__write_response__unpack(NULL, n, p);
        bool ok = m && m->seq >= s->nitems;
        if (m)
            strata__v1__write_response__free_unpacked(m, NULL);
        if (!ok)
            set_err(w, "strata Write: the response does not parse or has no sequence");
        return ok;
    }
    case OP_GET: {
        Strata__V1__GetResponse *m = strata__v1__get_response__unpack(NULL, n, p);
        bool ok = m && m->value.len == f->value_size;
        if (!ok)
            set_err(w, "strata Get %.*s: %s", (int)f->key_size, s->keys,
                    m ? "wrong value length" : "the response does not parse");
        if (m)
            strata__v1__get_response__free_unpacked(m, NULL);
        return ok;
    }
    case OP_SCAN: {
        Strata__V1__ScanResponse *m = strata__v1__scan_response__unpack(NULL, n, p);
        if (!m) {
            set_err(w, "strata Scan: a message does not parse");
            return false;
        }
        s->pairs += m->n_pairs;
        strata__v1__scan_response__free_unpacked(m, NULL);
        return true;
    }
    }
    return false;
}

static bool check_buffer(run_ctx *rc, slot *s, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        set_err(s->w, "cannot read a response buffer");
        return false;
    }
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    bool ok = check_message(rc, s, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
    return ok;
}

static void start_call(slot *s);

static void release_call(slot *s)
{
    if (s->send)
        grpc_byte_buffer_destroy(s->send);
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    s->send = s->recv = NULL;
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_slice_unref(s->details);
    if (s->call)
        grpc_call_unref(s->call);
    s->call = NULL;
}

static void finish_call(slot *s)
{
    worker *w = s->w;
    run_ctx *rc = w->rc;
    uint64_t now = st_bench_now_ns();
    bool ok = !s->bad;
    if (s->code != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(s->details);
        set_err(w, "%s: status %d: %s", method_name(rc->t->sys, rc->op), (int)s->code, d);
        gpr_free(d);
        ok = false;
    } else if (s->streaming && s->pairs != rc->f->scan_len) {
        set_err(w, "strata Scan from %.*s: %llu pairs, want %llu", (int)rc->f->key_size, s->keys,
                (unsigned long long)s->pairs, (unsigned long long)rc->f->scan_len);
        ok = false;
    }
    release_call(s);
    if (ok && now >= rc->t_measure && now < rc->t_end) {
        st_bench_hist_add(w->hist, now - s->t_start);
        w->calls++;
        w->items += s->nitems;
    } else if (ok && now >= rc->t_end) {
        w->late++;
    }
    if (now < rc->t_end && w->errors == 0) {
        if (rc->interval_ns)
            w->idle[w->nidle++] = s; /* worker_main starts it when its turn comes */
        else
            start_call(s);
    } else {
        w->active--;
    }
}

static void start_batch_or_fail(slot *s, const grpc_op *ops, size_t n)
{
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, s, NULL);
    if (e != GRPC_CALL_OK) {
        set_err(s->w, "grpc_call_start_batch: %s", grpc_call_error_to_string(e));
        release_call(s);
        s->w->active--;
    }
}

static void start_call(slot *s)
{
    worker *w = s->w;
    run_ctx *rc = w->rc;
    size_t len = 0;
    if (!encode(rc, s, &len)) {
        if (rc->op != OP_LOAD && rc->op != OP_LOAD_WRITE)
            set_err(w, "out of memory encoding a request");
        w->active--;
        return;
    }
    grpc_slice sl = grpc_slice_malloc(len);
    memcpy(GRPC_SLICE_START_PTR(sl), s->req, len);
    s->send = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    s->recv = NULL;
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    s->pairs = 0;
    s->bad = false;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(CALL_TIMEOUT_MS, GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                                  s->method, deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->send;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv;
    if (!s->streaming) {
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &s->tmd;
        ops[n].data.recv_status_on_client.status = &s->code;
        ops[n++].data.recv_status_on_client.status_details = &s->details;
        s->phase = PH_UNARY;
    } else {
        s->phase = PH_STREAM;
    }
    s->t_start = st_bench_now_ns();
    start_batch_or_fail(s, ops, n);
}

/* A server stream: after each message ask for the next; after the last, for the status. */
static void stream_step(slot *s)
{
    run_ctx *rc = s->w->rc;
    grpc_op op;
    memset(&op, 0, sizeof op);
    if (s->recv) {
        if (!check_buffer(rc, s, s->recv))
            s->bad = true;
        grpc_byte_buffer_destroy(s->recv);
        s->recv = NULL;
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv;
        s->phase = PH_STREAM;
    } else {
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        op.data.recv_status_on_client.trailing_metadata = &s->tmd;
        op.data.recv_status_on_client.status = &s->code;
        op.data.recv_status_on_client.status_details = &s->details;
        s->phase = PH_STATUS;
    }
    start_batch_or_fail(s, &op, 1);
}

static void on_event(slot *s, bool success)
{
    run_ctx *rc = s->w->rc;
    switch (s->phase) {
    case PH_UNARY:
        if (s->code == GRPC_STATUS_OK) {
            if (!s->recv) {
                set_err(s->w, "%s: status OK without a response", method_name(rc->t->sys, rc->op));
                s->bad = true;
            } else if (!check_buffer(rc, s, s->recv)) {
                s->bad = true;
            }
        }
        finish_call(s);
        break;
    case PH_STREAM:
        if (!success && s->recv) { /* the call failed: its status says why */
            grpc_byte_buffer_destroy(s->recv);
            s->recv = NULL;
        }
        stream_step(s);
        break;
    case PH_STATUS:
        finish_call(s);
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run_ctx *rc = w->rc;
    w->next_send = st_bench_now_ns();
    for (size_t i = 0; i < w->nslots; i++) {
        w->active++;
        if (rc->interval_ns)
            w->idle[w->nidle++] = w->slots[i];
        else
            start_call(w->slots[i]);
    }
    while (w->active > 0) {
        int64_t wait_ns = 200000000;
        if (rc->interval_ns) {
            /* Paced: start a waiting slot each time a call is due. If every slot is busy the
               schedule slips rather than bursting later (at most one interval of backlog). */
            uint64_t now = st_bench_now_ns();
            if (now >= rc->t_end || w->errors) {
                w->active -= w->nidle;
                w->nidle = 0;
                if (w->active == 0)
                    break;
            }
            while (w->nidle > 0 && now >= w->next_send && now < rc->t_end) {
                start_call(w->idle[--w->nidle]);
                w->next_send += rc->interval_ns;
            }
            if (w->nidle == 0 && w->next_send + rc->interval_ns < now)
                w->next_send = now;
            if (w->nidle > 0 && w->next_send > now && (int64_t)(w->next_send - now) < wait_ns)
                wait_ns = (int64_t)(w->next_send - now);
        }
        grpc_event ev = grpc_completion_queue_next(
            w->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(wait_ns, GPR_TIMESPAN)),
            NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(ev.tag, ev.success != 0);
    }
    return NULL;
}

static void drain_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

/* Wait until ch is connected. */
static bool channel_ready(grpc_channel *ch, int64_t timeout_ms)
{
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    bool ok = false;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
        if (st == GRPC_CHANNEL_READY) {
            ok = true;
            break;
        }
        if (st == GRPC_CHANNEL_SHUTDOWN)
            break;
        grpc_channel_watch_connectivity_state(ch, st, deadline, cq, NULL);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success)
            break;
    }
    drain_cq(cq);
    return ok;
}

static void sleep_until(uint64_t t_ns)
{
    for (;;) {
        uint64_t now = st_bench_now_ns();
        if (now >= t_ns)
            return;
        uint64_t d = t_ns - now;
        struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

static double load_average(void)
{
    double l = NAN;
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp) {
        if (fscanf(fp, "%lf", &l) != 1)
            l = NAN;
        fclose(fp);
    }
    return l;
}

static void free_slot(slot *s)
{
    if (!s)
        return;
    free(s->req);
    free(s->keys);
    free(s->muts);
    free(s->puts);
    free(s->mut_ptrs);
    free(s);
}

/*
 * Replication lag probes, run by the main thread during a measured window: a Put of a probe key
 * to the leader, then a Get of it on one follower (taking turns) with min_seq = the Put's
 * sequence, which the follower answers once it has applied that sequence. One sample = from the
 * Put's answer to the Get's answer: how long after the leader acknowledged a write a reader on
 * a follower can see it (one loopback round trip included). Every 50 ms.
 */
typedef struct lag_probe {
    char leader[256];
    char followers[8][256];
    size_t nfollowers;
    st_bench_hist *hist;
    uint64_t samples;
    char err[300];
} lag_probe;

#define PROBE_EVERY_NS 50000000ull

static void probe_until(lag_probe *lp, const flags *f, const char *pool, uint64_t t_end)
{
    st_rpc_client *leader = st_rpc_client_create(lp->leader, 0);
    st_rpc_client *fol[8] = {NULL};
    for (size_t i = 0; i < lp->nfollowers; i++)
        fol[i] = st_rpc_client_create(lp->followers[i], 0);
    static const char key[] = "~strata-bench-lag-probe";
    for (uint64_t n = 0; st_bench_now_ns() + PROBE_EVERY_NS < t_end && !lp->err[0]; n++) {
        uint64_t t_next = st_bench_now_ns() + PROBE_EVERY_NS;
        Strata__V1__PutRequest put = STRATA__V1__PUT_REQUEST__INIT;
        put.key.data = (uint8_t *)key;
        put.key.len = sizeof key - 1;
        put.value.data = (uint8_t *)pool;
        put.value.len = (size_t)f->value_size;
        uint8_t buf[2048];
        if (strata__v1__put_request__get_packed_size(&put) > sizeof buf)
            put.value.len = 100;
        size_t len = strata__v1__put_request__pack(&put, buf);
        st_rpc_result r;
        st_rpc_unary(leader, "/strata.v1.KV/Put", buf, len, true, 10000, &r);
        uint64_t t_ack = st_bench_now_ns();
        uint64_t seq = 0;
        if (r.code == GRPC_STATUS_OK && r.has_resp) {
            Strata__V1__PutResponse *pr =
                strata__v1__put_response__unpack(NULL, r.resp_len, r.resp);
            if (pr) {
                seq = pr->seq;
                strata__v1__put_response__free_unpacked(pr, NULL);
            }
        }
        if (seq == 0)
            snprintf(lp->err, sizeof lp->err, "lag probe Put to %s: status %d: %s", lp->leader,
                     (int)r.code, r.details ? r.details : "");
        st_rpc_result_free(&r);
        if (seq == 0)
            break;
        size_t fi = (size_t)(n % lp->nfollowers);
        Strata__V1__GetRequest get = STRATA__V1__GET_REQUEST__INIT;
        get.key = put.key;
        get.min_seq = seq;
        len = strata__v1__get_request__pack(&get, buf);
        st_rpc_unary(fol[fi], "/strata.v1.KV/Get", buf, len, true, 10000, &r);
        if (r.code == GRPC_STATUS_OK) {
            st_bench_hist_add(lp->hist, st_bench_now_ns() - t_ack);
            lp->samples++;
        } else {
            snprintf(lp->err, sizeof lp->err, "lag probe Get on %s (min_seq %llu): status %d: %s",
                     lp->followers[fi], (unsigned long long)seq, (int)r.code,
                     r.details ? r.details : "");
        }
        st_rpc_result_free(&r);
        sleep_until(t_next);
    }
    sleep_until(t_end);
    for (size_t i = 0; i < lp->nfollowers; i++)
        st_rpc_client_destroy(fol[i]);
    st_rpc_client_destroy(leader);
}

/*
 * One run of `op` against t: connections, warm-up, measurement, drain. For OP_LOAD the run
 * ends when every key has been put (no time limit beyond CALL_TIMEOUT_MS per call).
 */
static void run_load(const flags *f, const target *t, op_kind op, const char *pool, double rate,
                     lag_probe *lp, run_result *res)
{
    memset(res, 0, sizeof *res);
    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.f = f;
    rc.t = t;
    rc.op = op;
    rc.pool = pool;
    atomic_init(&rc.next_load, 0);
    const bool loading = op == OP_LOAD || op == OP_LOAD_WRITE;
    size_t nthreads = loading ? 1 : (size_t)f->threads;
    size_t nslots = op == OP_LOAD         ? LOAD_INFLIGHT
                    : op == OP_LOAD_WRITE ? 4
                                          : (size_t)(f->connections * f->inflight);
    rc.nchans = loading ? 1 : (size_t)f->connections;
    worker *ws = calloc(nthreads, sizeof *ws);
    slot **slots = calloc(nslots, sizeof *slots);
    rc.chans = calloc(rc.nchans, sizeof *rc.chans);
    rc.methods = calloc(rc.nchans, sizeof *rc.methods);
    char *target_str = st_rpc_target(t->addr);
    const char *method = method_name(t->sys, op);
    bool streaming = t->sys == ST_BENCH_STRATA && op == OP_SCAN;
    if (!ws || !slots || !rc.chans || !rc.methods || !target_str) {
        snprintf(res->err, sizeof res->err, "out of memory");
        goto done;
    }

    grpc_arg args[2];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = -1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL; /* one TCP connection per channel */
    args[1].value.integer = 1;
    grpc_channel_args cargs = {2, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    for (size_t c = 0; c < rc.nchans; c++) {
        rc.chans[c] = grpc_channel_create(target_str, creds, &cargs);
        rc.methods[c] = grpc_channel_register_call(rc.chans[c], method, NULL, NULL);
    }
    grpc_channel_credentials_release(creds);
    for (size_t c = 0; c < rc.nchans; c++) {
        if (!channel_ready(rc.chans[c], 10000)) {
            snprintf(res->err, sizeof res->err, "cannot connect to %s %s", t->name, t->addr);
            goto done;
        }
    }

    const size_t ks = (size_t)f->key_size;
    const size_t nkeys = op == OP_WRITE || op == OP_LOAD_WRITE ? (size_t)f->batch : 1;
    for (size_t i = 0; i < nslots; i++) {
        slot *s = calloc(1, sizeof *s);
        slots[i] = s;
        if (!s || !(s->keys = malloc(nkeys * ks))) {
            snprintf(res->err, sizeof res->err, "out of memory");
            goto done;
        }
        if (op == OP_WRITE || op == OP_LOAD_WRITE) {
            s->muts = calloc(nkeys, sizeof *s->muts);
            s->puts = calloc(nkeys, sizeof *s->puts);
            s->mut_ptrs = calloc(nkeys, sizeof *s->mut_ptrs);
            if (!s->muts || !s->puts || !s->mut_ptrs) {
                snprintf(res->err, sizeof res->err, "out of memory");
                goto done;
            }
            for (size_t k = 0; k < nkeys; k++) {
                strata__v1__mutation__init(&s->muts[k]);
                strata__v1__mutation__put__init(&s->puts[k]);
                s->muts[k].op_case = STRATA__V1__MUTATION__OP_PUT;
                s->muts[k].put = &s->puts[k];
                s->mut_ptrs[k] = &s->muts[k];
            }
        }
        s->idx = (uint32_t)i;
        s->ch = rc.chans[i % rc.nchans];
        s->method = rc.methods[i % rc.nchans];
        s->streaming = streaming;
        /* Slot i draws the same keys and values whichever system it talks to. */
        st_bench_rng_seed(&s->rng, f->seed * 0x9e3779b97f4a7c15ull + (uint64_t)op * 1000003u + i);
    }
    for (size_t k = 0; k < nthreads; k++) {
        worker *w = &ws[k];
        w->rc = &rc;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        w->slots = calloc(nslots / nthreads + 1, sizeof *w->slots);
        w->idle = calloc(nslots / nthreads + 1, sizeof *w->idle);
        if (!w->slots || !w->idle || st_bench_hist_create(&w->hist) != ST_OK) {
            snprintf(res->err, sizeof res->err, "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < nslots; i++) {
        worker *w = &ws[i % nthreads];
        slots[i]->w = w;
        w->slots[w->nslots++] = slots[i];
    }

    uint64_t t0 = st_bench_now_ns();
    if (loading) {
        rc.t_measure = t0;
        rc.t_end = UINT64_MAX;
    } else {
        rc.t_measure = t0 + (uint64_t)(f->warmup * 1e9);
        rc.t_end = rc.t_measure + (uint64_t)(f->duration * 1e9);
    }
    if (rate > 0 && !loading)
        rc.interval_ns = (uint64_t)((double)nthreads * 1e9 / rate);
    size_t started = 0;
    for (; started < nthreads; started++) {
        if (pthread_create(&ws[started].th, NULL, worker_main, &ws[started]) != 0) {
            snprintf(res->err, sizeof res->err, "pthread_create failed");
            rc.t_end = 0; /* the started ones stop after their first calls */
            break;
        }
    }
    st_bench_cpu cpu0, cpu1;
    uint64_t srv0 = 0, srv1 = 0;
    if (!loading && started == nthreads) {
        sleep_until(rc.t_measure);
        st_bench_cpu_sample(&cpu0);
        srv0 = t->servers ? st_bench_servers_ticks(t->servers) : 0;
        if (lp)
            probe_until(lp, f, pool, rc.t_end);
        else
            sleep_until(rc.t_end);
        st_bench_cpu_sample(&cpu1);
        srv1 = t->servers ? st_bench_servers_ticks(t->servers) : 0;
    }
    for (size_t k = 0; k < started; k++)
        pthread_join(ws[k].th, NULL);
    uint64_t t_done = st_bench_now_ns();
    if (started < nthreads)
        goto done;

    st_bench_hist *all = NULL;
    if (st_bench_hist_create(&all) != ST_OK) {
        snprintf(res->err, sizeof res->err, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < nthreads; k++) {
        st_bench_hist_merge(all, ws[k].hist);
        res->calls += ws[k].calls;
        res->items += ws[k].items;
        res->errors += ws[k].errors;
        if (!res->err[0] && ws[k].first_err[0])
            snprintf(res->err, sizeof res->err, "%s", ws[k].first_err);
    }
    res->secs = loading ? (double)(t_done - t0) / 1e9 : f->duration;
    res->qps = (double)res->calls / res->secs;
    res->items_per_sec = (double)res->items / res->secs;
    st_bench_hist_latency(all, &res->lat);
    st_bench_hist_destroy(all);
    res->cpu_client = res->cpu_server = res->cpu_other = res->iowait = NAN;
    res->server_us_per_item = NAN;
    if (!loading) {
        st_bench_cpu_use use;
        st_bench_cpu_diff(&cpu0, &cpu1, &use);
        double wall = (double)(cpu1.wall_ns - cpu0.wall_ns) / 1e9;
        double hz = (double)sysconf(_SC_CLK_TCK);
        res->cpu_client = use.self_cores;
        res->iowait = use.iowait_cores;
        if (t->servers) {
            res->cpu_server = wall > 0 ? (double)(srv1 - srv0) / hz / wall : NAN;
            res->server_us_per_item = res->items ? (double)(srv1 - srv0) / hz * 1e6 /
                                                       ((double)res->items * wall / res->secs)
                                                 : NAN;
            res->cpu_other = use.other_cores - res->cpu_server;
            if (res->cpu_other < 0)
                res->cpu_other = 0;
        } else {
            res->cpu_other = use.other_cores; /* the server is in there */
        }
    }
    res->load1 = load_average();
    res->ok = res->errors == 0 && res->calls > 0;
    if (!res->ok && !res->err[0])
        snprintf(res->err, sizeof res->err, "no call completed in the measured window");
    if (t->servers && !st_bench_servers_alive(t->servers)) {
        res->ok = false;
        snprintf(res->err, sizeof res->err, "a %s server process died during the run", t->name);
    }

done:
    for (size_t k = 0; ws && k < nthreads; k++) {
        if (ws[k].cq)
            drain_cq(ws[k].cq);
        st_bench_hist_destroy(ws[k].hist);
        free(ws[k].slots);
        free(ws[k].idle);
    }
    for (size_t i = 0; slots && i < nslots; i++)
        free_slot(slots[i]);
    for (size_t c = 0; rc.chans && c < rc.nchans; c++)
        if (rc.chans[c])
            grpc_channel_destroy(rc.chans[c]);
    free(rc.chans);
    free(rc.methods);
    free(target_str);
    free(slots);
    free(ws);
}

/* ---- orchestration and report ------------------------------------------------------------ */

#define MAX_SIDES 2

enum {
    MD_QPS,
    MD_ITEMS,
    MD_P50,
    MD_P99,
    MD_P999,
    MD_CPU_C,
    MD_CPU_S,
    MD_CPU_O,
    MD_SRV_US,
    MD_COUNT
};

typedef struct report {
    const flags *f;
    size_t nsides;
    target sides[MAX_SIDES];
    st_bench_servers groups[MAX_SIDES];
    bool own[MAX_SIDES];
    run_result runs[MAX_SIDES][MAX_ROUNDS];
    run_result loads[MAX_SIDES];
    double med[MAX_SIDES][MD_COUNT];
    bool failed, noisy;
    bool lag_done;
    double lag_rate;
    run_result lag_run;
    lag_probe lag;
    char dir[4096];
    char strata_addrs[8][256];
    size_t nstrata_addrs;
} report;

static double run_metric(const run_result *r, int m)
{
    switch (m) {
    case MD_QPS:
        return r->qps;
    case MD_ITEMS:
        return r->items_per_sec;
    case MD_P50:
        return r->lat.p50_us;
    case MD_P99:
        return r->lat.p99_us;
    case MD_P999:
        return r->lat.p999_us;
    case MD_CPU_C:
        return r->cpu_client;
    case MD_CPU_S:
        return r->cpu_server;
    case MD_SRV_US:
        return r->server_us_per_item;
    default:
        return r->cpu_other;
    }
}

/* Targets from the issues, as strata/etcd ratios (QPS >= 3x, p99 <= 1x) or, for write,
   keys per second. */
typedef struct goal {
    const char *name;
    double got, want;
    bool at_least;
} goal;

static size_t goals(const report *rp, goal *g)
{
    size_t n = 0;
    const flags *f = rp->f;
    if (f->op == OP_WRITE) {
        g[n++] = (goal){"write keys/s", rp->med[0][MD_ITEMS], 200000, true};
        return n;
    }
    if (rp->nsides == 2 && (f->op == OP_PUT || f->op == OP_GET)) {
        g[n++] = (goal){"QPS strata/etcd", st_bench_ratio(rp->med[0][MD_QPS], rp->med[1][MD_QPS]),
                        3.0, true};
        g[n++] = (goal){"p99 strata/etcd", st_bench_ratio(rp->med[0][MD_P99], rp->med[1][MD_P99]),
                        1.0, false};
    }
    return n;
}

static void print_row(const char *who, const char *round, const run_result *r)
{
    char qps[24], items[24], p50[24], p99[24], p999[24], cc[24], cs[24], co[24], ld[24], su[24];
    st_bench_fmt_num(qps, sizeof qps, r->qps, 0);
    st_bench_fmt_num(items, sizeof items, r->items_per_sec, 0);
    st_bench_fmt_num(p50, sizeof p50, r->lat.p50_us / 1e3, 2);
    st_bench_fmt_num(p99, sizeof p99, r->lat.p99_us / 1e3, 2);
    st_bench_fmt_num(p999, sizeof p999, r->lat.p999_us / 1e3, 2);
    st_bench_fmt_num(cc, sizeof cc, r->cpu_client, 2);
    st_bench_fmt_num(cs, sizeof cs, r->cpu_server, 2);
    st_bench_fmt_num(co, sizeof co, r->cpu_other, 2);
    st_bench_fmt_num(ld, sizeof ld, r->load1, 2);
    st_bench_fmt_num(su, sizeof su, r->server_us_per_item, 1);
    printf("%-7s %-6s %9s %10s %8s %8s %8s %7s %7s %8s %7s %6s%s%s%s\n", who, round, qps, items,
           p50, p99, p999, cc, cs, su, co, ld, r->cpu_other > ST_BENCH_NOISE_CORES ? " noisy" : "",
           r->ok ? "" : " FAILED: ", r->ok ? "" : r->err);
}

static void print_text(const report *rp)
{
    const flags *f = rp->f;
    printf("strata-bench rpc: op %s, %llu connection%s x %llu in flight = %llu calls in flight, "
           "%llu client thread%s, keys of %llu B over %llu keys, values of %llu B",
           op_names[f->op], (unsigned long long)f->connections, f->connections == 1 ? "" : "s",
           (unsigned long long)f->inflight, (unsigned long long)(f->connections * f->inflight),
           (unsigned long long)f->threads, f->threads == 1 ? "" : "s",
           (unsigned long long)f->key_size, (unsigned long long)f->keys,
           (unsigned long long)f->value_size);
    if (f->op == OP_WRITE)
        printf(", %llu puts per Write", (unsigned long long)f->batch);
    if (f->op == OP_SCAN)
        printf(", %llu pairs per scan", (unsigned long long)f->scan_len);
    printf("; %.1f s measured after %.1f s warm-up, %d round%s\n", f->duration, f->warmup,
           f->repeat, f->repeat == 1 ? "" : "s");
    if (strcmp(f->sync, "always") != 0 && !f->addr)
        printf("  strata runs --sync %s: no fsync, a ceiling for what the disk costs, not a "
               "like-for-like comparison\n",
               f->sync);
    for (size_t k = 0; k < rp->nsides; k++) {
        const target *t = &rp->sides[k];
        printf("  %-7s %s%s\n", t->name, t->addr, rp->own[k] ? "" : " (given by --addr)");
        if (rp->own[k])
            printf("          %s%s\n", rp->groups[k].describe,
                   rp->groups[k].n > 1 ? " (and the other members alike)" : "");
        if (rp->loads[k].calls)
            printf("          loaded %llu keys first with Put (%.0f puts/s)%s\n",
                   (unsigned long long)rp->loads[k].calls, rp->loads[k].qps,
                   rp->own[k] ? ", then restarted" : "");
    }
    printf("  latency from the start of the call to its completion; cpu in cores over the "
           "measured window:\n  client = this process, server = the processes started here, "
           "other = the rest of the machine;\n  srv us/i = server CPU per call (per key for "
           "write) in microseconds; load = 1-min load average after the run\n\n");
    printf("%-7s %-6s %9s %10s %8s %8s %8s %7s %7s %8s %7s %6s\n", "system", "round", "QPS",
           f->op == OP_WRITE ? "keys/s" : "items/s", "p50 ms", "p99 ms", "p999 ms", "client",
           "server", "srv us/i", "other", "load");
    for (int r = 0; r < f->repeat; r++) {
        char round[16];
        snprintf(round, sizeof round, "%d", r + 1);
        for (size_t k = 0; k < rp->nsides; k++) {
            size_t side = (r % 2 == 0) ? k : rp->nsides - 1 - k;
            print_row(rp->sides[side].name, round, &rp->runs[side][r]);
        }
    }
    printf("\nmedians:\n");
    for (size_t k = 0; k < rp->nsides; k++) {
        run_result m;
        memset(&m, 0, sizeof m);
        m.ok = true;
        m.qps = rp->med[k][MD_QPS];
        m.items_per_sec = rp->med[k][MD_ITEMS];
        m.lat.p50_us = rp->med[k][MD_P50];
        m.lat.p99_us = rp->med[k][MD_P99];
        m.lat.p999_us = rp->med[k][MD_P999];
        m.cpu_client = rp->med[k][MD_CPU_C];
        m.cpu_server = rp->med[k][MD_CPU_S];
        m.cpu_other = rp->med[k][MD_CPU_O];
        m.server_us_per_item = rp->med[k][MD_SRV_US];
        m.load1 = NAN;
        print_row(rp->sides[k].name, "median", &m);
    }
    if (rp->nsides == 2) {
        /* A node given by --addr has no CPU figure of its own, so no CPU ratio either. */
        double cpu = st_bench_ratio(rp->med[0][MD_SRV_US], rp->med[1][MD_SRV_US]);
        char cpu_s[32] = "-";
        if (!isnan(cpu))
            snprintf(cpu_s, sizeof(cpu_s), "%.2fx", cpu);
        printf("\nstrata/etcd: QPS %.2fx, server CPU per call %s, p50 %.2fx, p99 %.2fx, "
               "p999 %.2fx\n",
               st_bench_ratio(rp->med[0][MD_QPS], rp->med[1][MD_QPS]), cpu_s,
               st_bench_ratio(rp->med[0][MD_P50], rp->med[1][MD_P50]),
               st_bench_ratio(rp->med[0][MD_P99], rp->med[1][MD_P99]),
               st_bench_ratio(rp->med[0][MD_P999], rp->med[1][MD_P999]));
        printf("per round (pairs run back to back): QPS");
        for (int r = 0; r < f->repeat; r++)
            printf(" %.2f", st_bench_ratio(rp->runs[0][r].qps, rp->runs[1][r].qps));
        printf("; p99");
        for (int r = 0; r < f->repeat; r++)
            printf(" %.2f", st_bench_ratio(rp->runs[0][r].lat.p99_us, rp->runs[1][r].lat.p99_us));
        printf("\n");
    }
    if (rp->lag_done) {
        const lag_probe *lp = &rp->lag;
        printf(
            "\nreplication lag at half load: strata paced to %.0f puts/s (half the median QPS):\n",
            rp->lag_rate);
        print_row("strata", "half", &rp->lag_run);
        if (lp->samples)
            printf("  a write visible on a follower after the leader acknowledged it (Get with "
                   "min_seq, one round trip included),\n  %llu probes every 50 ms over %zu "
                   "followers: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                   (unsigned long long)lp->samples, lp->nfollowers,
                   (double)st_bench_hist_percentile(lp->hist, 50) / 1e6,
                   (double)st_bench_hist_percentile(lp->hist, 99) / 1e6,
                   (double)st_bench_hist_max(lp->hist) / 1e6);
        if (lp->err[0])
            printf("  lag probes FAILED: %s\n", lp->err);
    }
    goal g[4];
    size_t ng = goals(rp, g);
    if (ng) {
        printf("\ntargets:\n");
        for (size_t i = 0; i < ng; i++)
            printf("  %-16s %10.2f  (target %s %g): %s\n", g[i].name, g[i].got,
                   g[i].at_least ? ">=" : "<=", g[i].want,
                   st_bench_goal_verdict(g[i].got, g[i].want, g[i].at_least));
    }
    if (rp->noisy)
        printf("\nWARNING: other processes used more than %.2f cores during some runs (marked "
               "noisy): compare the ratios of pairs, not the absolute figures.\n",
               ST_BENCH_NOISE_CORES);
}

static void json_run(st_bench_json *j, const char *key, const run_result *r)
{
    st_bench_json_begin_object(j, key);
    st_bench_json_bool(j, "ok", r->ok);
    st_bench_json_string(j, "error", r->ok ? NULL : r->err);
    st_bench_json_uint(j, "calls", r->calls);
    st_bench_json_uint(j, "items", r->items);
    st_bench_json_uint(j, "errors", r->errors);
    st_bench_json_double(j, "seconds", r->secs);
    st_bench_json_double(j, "qps", r->qps);
    st_bench_json_double(j, "items_per_sec", r->items_per_sec);
    st_bench_json_double(j, "p50_us", r->lat.p50_us);
    st_bench_json_double(j, "p99_us", r->lat.p99_us);
    st_bench_json_double(j, "p999_us", r->lat.p999_us);
    st_bench_json_double(j, "max_us", r->lat.max_us);
    st_bench_json_double(j, "mean_us", r->lat.mean_us);
    st_bench_json_double(j, "cpu_client_cores", r->cpu_client);
    st_bench_json_double(j, "cpu_server_cores", r->cpu_server);
    st_bench_json_double(j, "server_cpu_us_per_item", r->server_us_per_item);
    st_bench_json_double(j, "cpu_other_cores", r->cpu_other);
    st_bench_json_double(j, "iowait_cores", r->iowait);
    st_bench_json_double(j, "loadavg_1min", r->load1);
    st_bench_json_end_object(j);
}

static void print_json(const report *rp)
{
    static const char *const md_names[MD_COUNT] = {"qps",
                                                   "items_per_sec",
                                                   "p50_us",
                                                   "p99_us",
                                                   "p999_us",
                                                   "cpu_client_cores",
                                                   "cpu_server_cores",
                                                   "cpu_other_cores",
                                                   "server_cpu_us_per_item"};
    const flags *f = rp->f;
    st_bench_json *j = NULL;
    if (st_bench_json_create(stdout, &j) != ST_OK)
        return;
    st_bench_json_begin_object(j, NULL);
    st_bench_json_string(j, "mode", "rpc");
    st_bench_json_begin_object(j, "config");
    st_bench_json_string(j, "op", op_names[f->op]);
    st_bench_json_uint(j, "connections", f->connections);
    st_bench_json_uint(j, "inflight_per_connection", f->inflight);
    st_bench_json_uint(j, "inflight", f->connections * f->inflight);
    st_bench_json_uint(j, "threads", f->threads);
    st_bench_json_double(j, "duration_s", f->duration);
    st_bench_json_double(j, "warmup_s", f->warmup);
    st_bench_json_uint(j, "keys", f->keys);
    st_bench_json_uint(j, "key_size", f->key_size);
    st_bench_json_uint(j, "value_size", f->value_size);
    st_bench_json_uint(j, "batch", f->op == OP_WRITE ? f->batch : 1);
    st_bench_json_uint(j, "scan_len", f->scan_len);
    st_bench_json_uint(j, "cluster", f->cluster);
    st_bench_json_int(j, "repeat", f->repeat);
    st_bench_json_uint(j, "seed", f->seed);
    st_bench_json_string(j, "compare", f->compare_etcd ? "etcd" : NULL);
    st_bench_json_string(j, "strata_sync", f->sync);
    st_bench_json_double(j, "noise_threshold_cores", ST_BENCH_NOISE_CORES);
    st_bench_json_end_object(j);
    st_bench_json_begin_array(j, "systems");
    for (size_t k = 0; k < rp->nsides; k++) {
        st_bench_json_begin_object(j, NULL);
        st_bench_json_string(j, "name", rp->sides[k].name);
        st_bench_json_string(j, "addr", rp->sides[k].addr);
        st_bench_json_bool(j, "started_here", rp->own[k]);
        st_bench_json_string(j, "command", rp->own[k] ? rp->groups[k].describe : NULL);
        if (rp->loads[k].calls)
            json_run(j, "load", &rp->loads[k]);
        st_bench_json_begin_object(j, "median");
        for (int m = 0; m < MD_COUNT; m++)
            st_bench_json_double(j, md_names[m], rp->med[k][m]);
        st_bench_json_end_object(j);
        st_bench_json_begin_array(j, "runs");
        for (int r = 0; r < f->repeat; r++)
            json_run(j, NULL, &rp->runs[k][r]);
        st_bench_json_end_array(j);
        st_bench_json_end_object(j);
    }
    st_bench_json_end_array(j);
    if (rp->nsides == 2) {
        st_bench_json_begin_object(j, "ratio");
        for (int m = 0; m < MD_COUNT; m++)
            st_bench_json_double(j, md_names[m], st_bench_ratio(rp->med[0][m], rp->med[1][m]));
        st_bench_json_begin_array(j, "qps_per_round");
        for (int r = 0; r < f->repeat; r++)
            st_bench_json_double(j, NULL, st_bench_ratio(rp->runs[0][r].qps, rp->runs[1][r].qps));
        st_bench_json_end_array(j);
        st_bench_json_begin_array(j, "p99_per_round");
        for (int r = 0; r < f->repeat; r++)
            st_bench_json_double(
                j, NULL, st_bench_ratio(rp->runs[0][r].lat.p99_us, rp->runs[1][r].lat.p99_us));
        st_bench_json_end_array(j);
        st_bench_json_end_object(j);
    }
    if (rp->lag_done) {
        const lag_probe *lp = &rp->lag;
        st_bench_json_begin_object(j, "replication_lag");
        st_bench_json_string(j, "definition",
                             "time from the leader's answer to a Put until a Get with min_seq = "
                             "its sequence returns on a follower (one round trip included)");
        st_bench_json_double(j, "rate", rp->lag_rate);
        json_run(j, "run", &rp->lag_run);
        st_bench_json_uint(j, "samples", lp->samples);
        st_bench_json_double(j, "p50_ms", (double)st_bench_hist_percentile(lp->hist, 50) / 1e6);
        st_bench_json_double(j, "p99_ms", (double)st_bench_hist_percentile(lp->hist, 99) / 1e6);
        st_bench_json_double(j, "max_ms", (double)st_bench_hist_max(lp->hist) / 1e6);
        st_bench_json_string(j, "error", lp->err[0] ? lp->err : NULL);
        st_bench_json_end_object(j);
    }
    goal g[4];
    size_t ng = goals(rp, g);
    st_bench_json_begin_array(j, "targets");
    for (size_t i = 0; i < ng; i++) {
        st_bench_json_begin_object(j, NULL);
        st_bench_json_string(j, "name", g[i].name);
        st_bench_json_goal(j, "value", g[i].got, g[i].want, g[i].at_least);
        st_bench_json_end_object(j);
    }
    st_bench_json_end_array(j);
    st_bench_json_bool(j, "noisy", rp->noisy);
    st_bench_json_bool(j, "ok", !rp->failed);
    st_bench_json_end_object(j);
    st_bench_json_destroy(j);
}

static void progress(const report *rp, size_t k, int round, const run_result *r)
{
    if (!r->ok) {
        fprintf(stderr, "[%d/%d] %-6s FAILED: %s\n", round + 1, rp->f->repeat, rp->sides[k].name,
                r->err);
        return;
    }
    fprintf(stderr,
            "[%d/%d] %-6s %9.0f QPS %10.0f items/s  p50 %7.2f ms  p99 %7.2f ms  p999 %7.2f ms  "
            "cpu client %.2f server %.2f other %.2f%s  load %.2f\n",
            round + 1, rp->f->repeat, rp->sides[k].name, r->qps, r->items_per_sec,
            r->lat.p50_us / 1e3, r->lat.p99_us / 1e3, r->lat.p999_us / 1e3, r->cpu_client,
            r->cpu_server, r->cpu_other, r->cpu_other > ST_BENCH_NOISE_CORES ? " NOISY" : "",
            r->load1);
}

/* Find the strata node that leads among the --addr list (Admin/Status); writes go there. */
static bool pick_strata_leader(report *rp, char *out, size_t cap)
{
    if (rp->nstrata_addrs == 1) {
        snprintf(out, cap, "%s", rp->strata_addrs[0]);
        return true;
    }
    for (size_t i = 0; i < rp->nstrata_addrs; i++) {
        st_rpc_client *c = st_rpc_client_create(rp->strata_addrs[i], 0);
        if (!c)
            continue;
        Strata__V1__StatusRequest req = STRATA__V1__STATUS_REQUEST__INIT;
        uint8_t buf[16];
        size_t len = strata__v1__status_request__pack(&req, buf);
        st_rpc_result r;
        st_rpc_unary(c, "/strata.v1.Admin/Status", buf, len, true, 2000, &r);
        bool leader = false;
        if (r.code == GRPC_STATUS_OK && r.has_resp) {
            Strata__V1__StatusResponse *st =
                strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
            leader = st && st->role && strcmp(st->role, "leader") == 0;
            if (st)
                strata__v1__status_response__free_unpacked(st, NULL);
        }
        st_rpc_result_free(&r);
        st_rpc_client_destroy(c);
        if (leader) {
            snprintf(out, cap, "%s", rp->strata_addrs[i]);
            return true;
        }
    }
    return false;
}

/* Before each run: who leads now (a cluster may have elected another leader meanwhile). */
static bool find_leader(report *rp, size_t k)
{
    target *t = &rp->sides[k];
    if (rp->own[k]) {
        /* Nothing is started again: this waits until the members agree on a leader. */
        if (st_bench_servers_start(&rp->groups[k], START_MS) != ST_OK) {
            fprintf(stderr, "strata-bench rpc: %s: %s\n", t->name, st_errmsg());
            return false;
        }
        size_t n = strnlen(rp->groups[k].leader_addr, sizeof rp->groups[k].leader_addr - 1);
        memcpy(t->addr, rp->groups[k].leader_addr, n);
        t->addr[n] = '\0';
        return true;
    }
    return k != 0 || pick_strata_leader(rp, t->addr, sizeof t->addr);
}

static bool restart(report *rp, size_t k)
{
    st_bench_servers *g = &rp->groups[k];
    st_status s = st_bench_servers_stop(g);
    if (s == ST_OK)
        s = st_bench_servers_start(g, START_MS);
    if (s) {
        fprintf(stderr, "strata-bench rpc: restart %s: %s\n", rp->sides[k].name, st_errmsg());
        return false;
    }
    snprintf(rp->sides[k].addr, sizeof rp->sides[k].addr, "%s", g->leader_addr);
    return true;
}

/* --lag: one more strata run, paced to half the median QPS, with lag probes. */
static void lag_run(report *rp, const char *pool)
{
    lag_probe *lp = &rp->lag;
    const target *t = &rp->sides[0];
    snprintf(lp->leader, sizeof lp->leader, "%s", t->addr);
    if (rp->own[0]) {
        for (size_t i = 0; i < rp->groups[0].n; i++)
            if (i != rp->groups[0].leader)
                snprintf(lp->followers[lp->nfollowers++], sizeof lp->followers[0], "%s",
                         rp->groups[0].addrs[i]);
    } else {
        for (size_t i = 0; i < rp->nstrata_addrs; i++)
            if (strcmp(rp->strata_addrs[i], t->addr) != 0)
                snprintf(lp->followers[lp->nfollowers++], sizeof lp->followers[0], "%s",
                         rp->strata_addrs[i]);
    }
    if (lp->nfollowers == 0 || st_bench_hist_create(&lp->hist) != ST_OK) {
        snprintf(lp->err, sizeof lp->err, "no follower to probe");
        rp->failed = true;
        return;
    }
    rp->lag_rate = rp->med[0][MD_QPS] / 2;
    run_load(rp->f, t, rp->f->op, pool, rp->lag_rate, lp, &rp->lag_run);
    rp->lag_done = true;
    if (!rp->lag_run.ok || lp->err[0] || lp->samples == 0)
        rp->failed = true;
    fprintf(stderr, "[lag] strata paced to %.0f/s: %.0f QPS, p99 %.2f ms; %llu lag probes%s%s\n",
            rp->lag_rate, rp->lag_run.qps, rp->lag_run.lat.p99_us / 1e3,
            (unsigned long long)lp->samples, lp->err[0] ? ": " : "", lp->err);
}

/* ---- --op snapshot ----------------------------------------------------------------------- */

static Strata__V1__StatusResponse *strata_status(const char *addr)
{
    st_rpc_client *c = st_rpc_client_create(addr, 0);
    if (!c)
        return NULL;
    Strata__V1__StatusRequest req = STRATA__V1__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = strata__v1__status_request__pack(&req, buf);
    st_rpc_result r;
    st_rpc_unary(c, "/strata.v1.Admin/Status", buf, len, true, 2000, &r);
    Strata__V1__StatusResponse *st = NULL;
    if (r.code == GRPC_STATUS_OK && r.has_resp)
        st = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    return st;
}

static uint64_t table_bytes(const Strata__V1__StatusResponse *st)
{
    uint64_t b = 0;
    for (size_t i = 0; i < st->n_levels; i++)
        b += st->levels[i]->bytes;
    return b;
}

/* The plain copy: every regular file under `from` (files that vanish meanwhile are skipped:
   the node keeps compacting) into `to`, each fsynced, as a snapshot install would. nftw takes
   no context pointer, hence the statics (one copy at a time, main thread only). */
static const char *copy_from, *copy_to;
static uint64_t copy_bytes;
static int copy_err;

static int copy_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    char dst[8192];
    snprintf(dst, sizeof dst, "%s%s", copy_to, path + strlen(copy_from));
    if (type == FTW_D) {
        if (mkdir(dst, 0755) == 0 || errno == EEXIST)
            return 0;
        copy_err = errno;
        return -1;
    }
    if (type != FTW_F || !S_ISREG(sb->st_mode))
        return 0;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        if (errno == ENOENT)
            return 0;
        copy_err = errno;
        return -1;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        copy_err = errno;
        close(in);
        return -1;
    }
    static char buf[1 << 20];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            copy_err = errno ? errno : EIO;
            rc = -1;
            break;
        }
        copy_bytes += (uint64_t)n;
    }
    if (rc == 0 && fsync(out) != 0) {
        copy_err = errno;
        rc = -1;
    }
    close(in);
    close(out);
    return rc;
}

/*
 * Nodes 1 and 2 of a 3-node cluster (small WAL retention, so the leader trims its WAL) get
 * --keys keys through Write batches; then node 3 starts with an empty directory, can only catch
 * up by installing a snapshot, and is timed from its start until it has applied everything the
 * leader had and reports the install. Speed = the leader's table bytes / that time. Next to it:
 * a plain copy of the leader's data directory with an fsync per file.
 */
static int snapshot_bench(report *rp, const char *pool)
{
    const flags *f = rp->f;
    st_bench_servers *g = &rp->groups[0];
    target *t = &rp->sides[0];
    Strata__V1__StatusResponse *lead = NULL, *st3 = NULL;
    int rc = 1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/strata", rp->dir);
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "strata-bench rpc: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    t->sys = ST_BENCH_STRATA;
    t->name = "strata";
    rp->nsides = 1;
    st_status s = st_bench_servers_init(g, ST_BENCH_STRATA, 3, f->node_bin, dir);
    g->sync = f->sync;
    g->extra[0] = "--wal-retain-bytes";
    g->extra[1] = "1M";
    if (s == ST_OK)
        s = st_bench_servers_start_some(g, 2, START_MS);
    if (s) {
        fprintf(stderr, "strata-bench rpc: start nodes 1 and 2: %s\n", st_errmsg());
        return 1;
    }
    rp->own[0] = true;
    t->servers = g;
    snprintf(t->addr, sizeof t->addr, "%s", g->leader_addr);
    run_load(f, t, OP_LOAD_WRITE, pool, 0, NULL, &rp->loads[0]);
    if (!rp->loads[0].ok || rp->loads[0].items != f->keys) {
        fprintf(stderr, "strata-bench rpc: loading: %s\n",
                rp->loads[0].err[0] ? rp->loads[0].err : "not every key was written");
        goto done;
    }
    fprintf(stderr, "strata-bench rpc: wrote %llu keys in %.1f s (%.0f keys/s)\n",
            (unsigned long long)f->keys, rp->loads[0].secs, rp->loads[0].items_per_sec);
    lead = strata_status(g->leader_addr);
    if (!lead) {
        fprintf(stderr, "strata-bench rpc: the leader does not answer Status\n");
        goto done;
    }
    uint64_t want_seq = lead->last_seq, tbytes = table_bytes(lead);
    sync();

    uint64_t t0 = st_bench_now_ns(), t1 = 0;
    if ((s = st_bench_servers_spawn(g, 2)) != ST_OK) {
        fprintf(stderr, "strata-bench rpc: start node 3: %s\n", st_errmsg());
        goto done;
    }
    for (;;) {
        st3 = strata_status(g->addrs[2]);
        if (st3 && st3->applied_seq >= want_seq && st3->snapshots_installed > 0) {
            t1 = st_bench_now_ns();
            break;
        }
        if (st3)
            strata__v1__status_response__free_unpacked(st3, NULL);
        st3 = NULL;
        if (!st_bench_servers_alive(g) || st_bench_now_ns() - t0 > 600ull * 1000000000ull) {
            fprintf(stderr, "strata-bench rpc: node 3 did not catch up by snapshot (logs in %s)\n",
                    dir);
            goto done;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    double snap_s = (double)(t1 - t0) / 1e9;

    char from[4300], to[4300];
    snprintf(from, sizeof from, "%s/strata%zu", dir, g->leader + 1);
    snprintf(to, sizeof to, "%s/plain-copy", rp->dir);
    sync();
    copy_from = from;
    copy_to = to;
    copy_bytes = 0;
    copy_err = 0;
    uint64_t c0 = st_bench_now_ns();
    int cr = nftw(from, copy_entry, 16, FTW_PHYS);
    double copy_s = (double)(st_bench_now_ns() - c0) / 1e9;
    if (cr != 0) {
        fprintf(stderr, "strata-bench rpc: plain copy of %s: %s\n", from, strerror(copy_err));
        goto done;
    }
    double snap_mbs = (double)tbytes / 1048576.0 / snap_s;
    double copy_mbs = (double)copy_bytes / 1048576.0 / copy_s;
    double load1 = load_average();
    if (f->json) {
        st_bench_json *j = NULL;
        if (st_bench_json_create(stdout, &j) == ST_OK) {
            st_bench_json_begin_object(j, NULL);
            st_bench_json_string(j, "mode", "rpc");
            st_bench_json_string(j, "op", "snapshot");
            st_bench_json_uint(j, "keys", f->keys);
            st_bench_json_uint(j, "value_size", f->value_size);
            st_bench_json_double(j, "load_seconds", rp->loads[0].secs);
            st_bench_json_uint(j, "leader_last_seq", want_seq);
            st_bench_json_uint(j, "leader_table_bytes", tbytes);
            st_bench_json_double(j, "snapshot_seconds", snap_s);
            st_bench_json_double(j, "snapshot_mb_per_sec", snap_mbs);
            st_bench_json_uint(j, "snapshots_installed", st3->snapshots_installed);
            st_bench_json_uint(j, "copy_bytes", copy_bytes);
            st_bench_json_double(j, "copy_seconds", copy_s);
            st_bench_json_double(j, "copy_mb_per_sec", copy_mbs);
            st_bench_json_double(j, "ratio", snap_mbs / copy_mbs);
            st_bench_json_double(j, "loadavg_1min", load1);
            st_bench_json_bool(j, "ok", true);
            st_bench_json_end_object(j);
            st_bench_json_destroy(j);
        }
    } else {
        printf("strata-bench rpc --op snapshot: %llu keys of %llu B, values of %llu B written to "
               "nodes 1 and 2 of 3 (--wal-retain-bytes 1M) in %.1f s\n",
               (unsigned long long)f->keys, (unsigned long long)f->key_size,
               (unsigned long long)f->value_size, rp->loads[0].secs);
        printf("  leader: last_seq %llu, tables %.1f MB\n", (unsigned long long)want_seq,
               (double)tbytes / 1048576.0);
        printf("  node 3 started empty: applied seq %llu after %.2f s, snapshots installed %llu: "
               "%.1f MB/s of tables\n  (from the node's start: process start, election contact, "
               "checkpoint, transfer, install, WAL tail)\n",
               (unsigned long long)st3->applied_seq, snap_s,
               (unsigned long long)st3->snapshots_installed, snap_mbs);
        printf("  plain copy of the leader's directory (read + write + fsync per file): %.1f MB in "
               "%.2f s: %.1f MB/s\n",
               (double)copy_bytes / 1048576.0, copy_s, copy_mbs);
        printf("  snapshot / plain copy speed: %.2fx; load average %.2f\n", snap_mbs / copy_mbs,
               load1);
    }
    rc = 0;
done:
    if (lead)
        strata__v1__status_response__free_unpacked(lead, NULL);
    if (st3)
        strata__v1__status_response__free_unpacked(st3, NULL);
    return rc;
}

int st_bench_rpc_main(int argc, char **argv)
{
    flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc)
        return rc == 1 ? 0 : 2;

    report *rp = calloc(1, sizeof *rp);
    char *pool = st_bench_value_pool(f.seed, f.value_size);
    if (!rp || !pool) {
        fprintf(stderr, "strata-bench rpc: out of memory\n");
        free(rp);
        free(pool);
        return 1;
    }
    rp->f = &f;
    rc = 1;
    st_rpc_init();

    if (st_bench_mkdtemp("strata-bench-rpc", rp->dir, sizeof rp->dir) != ST_OK) {
        fprintf(stderr, "strata-bench rpc: %s\n", st_errmsg());
        rp->dir[0] = '\0';
        goto done;
    }

    if (f.op == OP_SNAPSHOT) {
        rc = snapshot_bench(rp, pool);
        goto done;
    }

    /* Side 0 is strata, side 1 etcd. */
    rp->nsides = f.compare_etcd ? 2 : 1;
    for (size_t k = 0; k < rp->nsides; k++) {
        target *t = &rp->sides[k];
        t->sys = k == 0 ? ST_BENCH_STRATA : ST_BENCH_ETCD;
        t->name = k == 0 ? "strata" : "etcd";
        if (k == 0 && f.addr) {
            for (char *save = NULL, *a = strtok_r(f.addr, ",", &save); a && rp->nstrata_addrs < 8;
                 a = strtok_r(NULL, ",", &save))
                snprintf(rp->strata_addrs[rp->nstrata_addrs++], sizeof rp->strata_addrs[0], "%s",
                         a);
            if (!pick_strata_leader(rp, t->addr, sizeof t->addr)) {
                fprintf(stderr, "strata-bench rpc: no node of --addr says it leads\n");
                goto done;
            }
            continue;
        }
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", rp->dir, t->name);
        if (mkdir(dir, 0755) != 0) {
            fprintf(stderr, "strata-bench rpc: mkdir %s: %s\n", dir, strerror(errno));
            goto done;
        }
        st_status s = st_bench_servers_init(&rp->groups[k], t->sys, (size_t)f.cluster,
                                            k == 0 ? f.node_bin : f.etcd_bin, dir);
        rp->groups[k].sync = f.sync;
        if (s == ST_OK)
            s = st_bench_servers_start(&rp->groups[k], START_MS);
        if (s) {
            fprintf(stderr, "strata-bench rpc: start %s: %s\n", t->name, st_errmsg());
            goto done;
        }
        rp->own[k] = true;
        t->servers = &rp->groups[k];
        snprintf(t->addr, sizeof t->addr, "%s", rp->groups[k].leader_addr);
        fprintf(stderr, "strata-bench rpc: %s ready at %s (%zu member%s, data in %s)\n", t->name,
                t->addr, rp->groups[k].n, rp->groups[k].n == 1 ? "" : "s", dir);
    }

    /* Reads need the keys: put them (untimed), then restart what we started, so reads are
       measured on a freshly started server (etcd 3.4.23 reads slowly right after heavy writes;
       compare against its best). */
    if ((f.op == OP_GET || f.op == OP_SCAN) && !f.no_load) {
        for (size_t k = 0; k < rp->nsides; k++) {
            run_load(&f, &rp->sides[k], OP_LOAD, pool, 0, NULL, &rp->loads[k]);
            if (!rp->loads[k].ok || rp->loads[k].calls != f.keys) {
                fprintf(stderr, "strata-bench rpc: loading %s: %s\n", rp->sides[k].name,
                        rp->loads[k].err[0] ? rp->loads[k].err : "not every key was put");
                goto done;
            }
            fprintf(stderr, "strata-bench rpc: %s: loaded %llu keys in %.1f s\n", rp->sides[k].name,
                    (unsigned long long)f.keys, rp->loads[k].secs);
            if (rp->own[k] && !restart(rp, k))
                goto done;
        }
    }

    for (int r = 0; r < f.repeat; r++) {
        for (size_t i = 0; i < rp->nsides; i++) {
            /* A B in even rounds, B A in odd ones. */
            size_t k = r % 2 == 0 ? i : rp->nsides - 1 - i;
            run_result *res = &rp->runs[k][r];
            if (!find_leader(rp, k)) {
                snprintf(res->err, sizeof res->err, "no leader");
                rp->failed = true;
                progress(rp, k, r, res);
                continue;
            }
            sync(); /* untimed: the previous run's dirty pages go now */
            run_load(&f, &rp->sides[k], f.op, pool, f.rate, NULL, res);
            if (!res->ok)
                rp->failed = true;
            if (res->cpu_other > ST_BENCH_NOISE_CORES)
                rp->noisy = true;
            progress(rp, k, r, res);
        }
    }
    for (size_t k = 0; k < rp->nsides; k++) {
        for (int m = 0; m < MD_COUNT; m++) {
            double v[MAX_ROUNDS];
            size_t n = 0;
            for (int r = 0; r < f.repeat; r++)
                if (rp->runs[k][r].ok && !isnan(run_metric(&rp->runs[k][r], m)))
                    v[n++] = run_metric(&rp->runs[k][r], m);
            rp->med[k][m] = st_bench_median(v, n);
        }
    }
    if (f.lag && !rp->failed)
        lag_run(rp, pool);
    if (f.json)
        print_json(rp);
    else
        print_text(rp);
    rc = rp->failed ? 1 : 0;

done:
    for (size_t k = 0; k < MAX_SIDES; k++) {
        if (rp->own[k] && st_bench_servers_stop(&rp->groups[k]) != ST_OK)
            fprintf(stderr, "strata-bench rpc: stop %s: %s\n", rp->sides[k].name, st_errmsg());
    }
    if (rp->dir[0] && st_bench_rm_tree(rp->dir) != ST_OK)
        fprintf(stderr, "strata-bench rpc: could not remove %s\n", rp->dir);
    grpc_shutdown();
    st_bench_hist_destroy(rp->lag.hist);
    free(pool);
    free(rp);
    return rc;
}
