/* config.c - defaults, INI file (inih), flags (getopt_long). */
#include "node/config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum kind { K_STRING, K_U64, K_U32, K_SIZE, K_SYNC, K_LEVEL, K_ACK } kind;

/* One row per setting: the flag name is also the INI key. */
typedef struct setting {
    const char *name;
    kind kind;
    size_t offset;
    size_t size; /* K_STRING: buffer size */
    const char *arg;
    const char *help;
} setting;

#define FIELD(f) offsetof(st_node_config, f), sizeof(((st_node_config *)0)->f)

static const setting settings[] = {
    {"listen", K_STRING, FIELD(listen), "HOST:PORT",
     "address to serve on; port 0 picks a free port (default 127.0.0.1:7400)"},
    {"data-dir", K_STRING, FIELD(data_dir), "DIR",
     "database directory, created if missing (default ./strata-data)"},
    {"node-id", K_U64, FIELD(node_id), "N",
     "this node's id, reported by Status; with --peers, its entry there\n"
     "(default 1)"},
    {"sync", K_SYNC, FIELD(sync), "POLICY",
     "WAL fsync policy: always (before each acknowledgement, shared by\n"
     "the writes grouped with it), interval, or none (default always)"},
    {"sync-interval-ms", K_U32, FIELD(sync_interval_ms), "MS",
     "fsync period under --sync interval (default 100)"},
    {"memtable-bytes", K_SIZE, FIELD(memtable_bytes), "SIZE",
     "memtable size before it is flushed to a table (default 4M)"},
    {"block-cache-bytes", K_SIZE, FIELD(block_cache_bytes), "SIZE",
     "block cache capacity (default 8M)"},
    {"max-key-bytes", K_SIZE, FIELD(max_key_bytes), "SIZE",
     "longest key accepted, at most 65535 (default 8K)"},
    {"max-value-bytes", K_SIZE, FIELD(max_value_bytes), "SIZE",
     "longest value accepted, at most 256M (default 4M)"},
    {"max-message-bytes", K_SIZE, FIELD(max_message_bytes), "SIZE",
     "largest request message; gRPC answers RESOURCE_EXHAUSTED past it\n"
     "(default 16M)"},
    {"max-concurrent-calls", K_U32, FIELD(max_concurrent_calls), "N",
     "strata.v1.KV calls in progress at once; more get RESOURCE_EXHAUSTED\n"
     "(Admin, health and reflection are not counted) (default 10000)"},
    {"workers", K_U32, FIELD(workers), "N",
     "threads polling gRPC completion queues (default: CPUs, at most 16)"},
    {"shutdown-grace-ms", K_U32, FIELD(shutdown_grace_ms), "MS",
     "on SIGTERM/SIGINT, how long in-flight calls may take to finish\n"
     "before they are cancelled (default 5000)"},
    {"port-file", K_STRING, FIELD(port_file), "PATH",
     "once serving, write the bound port there (atomically, by rename)"},
    {"log-level", K_LEVEL, FIELD(log_level), "LEVEL", "debug, info, warn or error (default info)"},
    {"peers", K_STRING, FIELD(peers), "ID=HOST:PORT,...",
     "every member of the cluster, this node included (by --node-id);\n"
     "two or more make a replicated node, whose engine lives in\n"
     "DATA_DIR/db (default none: a standalone node)"},
    {"advertise", K_STRING, FIELD(advertise), "HOST:PORT",
     "cluster: the address clients reach this node at, when it is not\n"
     "its --peers address (e.g. a port published by Docker); followers\n"
     "name it in their leader hints (default: the --peers address)"},
    {"heartbeat-ms", K_U32, FIELD(heartbeat_ms), "MS",
     "cluster: the leader's heartbeat period (default 30)"},
    {"election-ms", K_U32, FIELD(election_ms), "MS",
     "cluster: a follower that hears no leader for a random time in\n"
     "[MS, 2*MS) starts an election (default 150)"},
    {"wal-retain-bytes", K_SIZE, FIELD(wal_retain_bytes), "SIZE",
     "cluster: WAL the leader keeps for lagging followers; one further\n"
     "behind gets a snapshot (default 256M)"},
    {"default-ack", K_ACK, FIELD(default_ack), "LEVEL",
     "cluster: acknowledgement level of writes that ask for none:\n"
     "leader, majority or all (default majority)"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void st_config_defaults(st_node_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:7400");
    snprintf(c->data_dir, sizeof(c->data_dir), "./strata-data");
    c->node_id = 1;
    c->sync = ST_SYNC_ALWAYS;
    c->sync_interval_ms = 100;
    c->memtable_bytes = 4u << 20;
    c->block_cache_bytes = 8u << 20;
    c->max_key_bytes = 8u << 10;
    c->max_value_bytes = 4u << 20;
    c->max_message_bytes = 16u << 20;
    c->max_concurrent_calls = 10000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cpus < 1 ? 1 : cpus > 16 ? 16 : (uint32_t)cpus;
    c->shutdown_grace_ms = 5000;
    c->log_level = ST_LOG_INFO;
    c->heartbeat_ms = 30;
    c->election_ms = 150;
    c->wal_retain_bytes = 256u << 20;
    c->default_ack = ST_ACK_MAJORITY;
}

bool st_config_parse_size(const char *s, size_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    unsigned long long mult = 1;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1ull << 10;
            break;
        case 'm':
        case 'M':
            mult = 1ull << 20;
            break;
        case 'g':
        case 'G':
            mult = 1ull << 30;
            break;
        default:
            return false;
        }
        end++;
        if (strcasecmp(end, "") != 0 && strcasecmp(end, "b") != 0 && strcasecmp(end, "ib") != 0)
            return false;
    }
    if (v > SIZE_MAX / mult)
        return false;
    *out = (size_t)(v * mult);
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* Apply one setting; `where` names the flag or file:line for the message. */
static st_status apply(st_node_config *c, const setting *st, const char *value, const char *where)
{
    void *field = (char *)c + st->offset;
    uint64_t u;
    size_t sz;
    switch (st->kind) {
    case K_STRING:
        if (strlen(value) >= st->size)
            return st_error(ST_INVALID_ARGUMENT, "%s: value is longer than %zu bytes", where,
                            st->size - 1);
        memcpy(field, value, strlen(value) + 1);
        return ST_OK;
    case K_U64:
        if (!parse_u64(value, &u))
            return st_error(ST_INVALID_ARGUMENT, "%s: '%s' is not a non-negative integer", where,
                            value);
        *(uint64_t *)field = u;
        return ST_OK;
    case K_U32:
        if (!parse_u64(value, &u) || u > UINT32_MAX)
            return st_error(ST_INVALID_ARGUMENT, "%s: '%s' is not an integer in 0 … %u", where,
                            value, UINT32_MAX);
        *(uint32_t *)field = (uint32_t)u;
        return ST_OK;
    case K_SIZE:
        if (!st_config_parse_size(value, &sz))
            return st_error(ST_INVALID_ARGUMENT,
                            "%s: '%s' is not a byte size (e.g. 4096, 64K, 16M, 1G)", where, value);
        *(size_t *)field = sz;
        return ST_OK;
    case K_SYNC:
        if (strcmp(value, "always") == 0)
            *(st_sync_policy *)field = ST_SYNC_ALWAYS;
        else if (strcmp(value, "interval") == 0)
            *(st_sync_policy *)field = ST_SYNC_INTERVAL;
        else if (strcmp(value, "none") == 0)
            *(st_sync_policy *)field = ST_SYNC_NONE;
        else
            return st_error(ST_INVALID_ARGUMENT, "%s: '%s' is not always, interval or none", where,
                            value);
        return ST_OK;
    case K_LEVEL:
        if (strcmp(value, "debug") == 0)
            *(st_log_level *)field = ST_LOG_DEBUG;
        else if (strcmp(value, "info") == 0)
            *(st_log_level *)field = ST_LOG_INFO;
        else if (strcmp(value, "warn") == 0)
            *(st_log_level *)field = ST_LOG_WARN;
        else if (strcmp(value, "error") == 0)
            *(st_log_level *)field = ST_LOG_ERROR;
        else
            return st_error(ST_INVALID_ARGUMENT, "%s: '%s' is not debug, info, warn or error",
                            where, value);
        return ST_OK;
    case K_ACK:
        if (strcmp(value, "leader") == 0)
            *(st_ack_level *)field = ST_ACK_LEADER;
        else if (strcmp(value, "majority") == 0)
            *(st_ack_level *)field = ST_ACK_MAJORITY;
        else if (strcmp(value, "all") == 0)
            *(st_ack_level *)field = ST_ACK_ALL;
        else
            return st_error(ST_INVALID_ARGUMENT, "%s: '%s' is not leader, majority or all", where,
                            value);
        return ST_OK;
    }
    return st_error(ST_INVALID_ARGUMENT, "%s: unhandled setting", where);
}

/* INI keys accept '_' for '-'. */
static const setting *find_setting(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '_' ? '-' : name[i];
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, norm) == 0)
            return &settings[i];
    return NULL;
}

typedef struct ini_ctx {
    st_node_config *c;
    const char *path;
    st_status status;
    char message[512];
} ini_ctx;

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *x = user;
    if (x->status != ST_OK)
        return 0;
    if (section[0] && strcmp(section, "node") != 0) {
        x->status = ST_INVALID_ARGUMENT;
        snprintf(x->message, sizeof(x->message), "unknown section [%s] (use [node])", section);
        return 0;
    }
    const setting *st = find_setting(name);
    if (!st) {
        x->status = ST_INVALID_ARGUMENT;
        snprintf(x->message, sizeof(x->message), "unknown key '%s'", name);
        return 0;
    }
    st_status s = apply(x->c, st, value, name);
    if (s != ST_OK) {
        x->status = s;
        snprintf(x->message, sizeof(x->message), "%s", st_errmsg());
        return 0;
    }
    return 1;
}

st_status st_config_load_file(st_node_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return st_errno_error(errno, "config file %s", path);
    ini_ctx x = {.c = c, .path = path, .status = ST_OK};
    int rc = ini_parse_file(f, on_ini_line, &x);
    fclose(f);
    if (rc == 0)
        return ST_OK;
    if (x.status != ST_OK)
        return st_error(x.status, "%s:%d: %s", path, rc, x.message);
    if (rc < 0)
        return st_error(ST_IO_ERROR, "%s: cannot be read", path);
    return st_error(ST_INVALID_ARGUMENT, "%s:%d: not a 'key = value' line or [section]", path, rc);
}

st_status st_config_validate(const st_node_config *c)
{
    if (!c->listen[0])
        return st_error(ST_INVALID_ARGUMENT, "--listen: empty address");
    if (!c->data_dir[0])
        return st_error(ST_INVALID_ARGUMENT, "--data-dir: empty path");
    if (c->advertise[0]) {
        const char *colon = strrchr(c->advertise, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == c->advertise || !colon[1] || *end || port < 1 || port > 65535)
            return st_error(ST_INVALID_ARGUMENT,
                            "--advertise: \"%s\" is not HOST:PORT with a port in 1 … 65535",
                            c->advertise);
    }
    if (c->max_key_bytes < 1 || c->max_key_bytes > ST_KEY_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "--max-key-bytes: %zu is not in 1 … %u",
                        c->max_key_bytes, ST_KEY_LIMIT);
    if (c->max_value_bytes > ST_VALUE_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "--max-value-bytes: %zu is over the engine's %u",
                        c->max_value_bytes, ST_VALUE_LIMIT);
    if (c->max_message_bytes < 1024 || c->max_message_bytes > INT_MAX)
        return st_error(ST_INVALID_ARGUMENT, "--max-message-bytes: %zu is not in 1024 … %d",
                        c->max_message_bytes, INT_MAX);
    if (c->memtable_bytes < 64 * 1024)
        return st_error(ST_INVALID_ARGUMENT, "--memtable-bytes: %zu is under 64K",
                        c->memtable_bytes);
    if (c->max_concurrent_calls < 1)
        return st_error(ST_INVALID_ARGUMENT, "--max-concurrent-calls: must be at least 1");
    if (c->workers < 1 || c->workers > 64)
        return st_error(ST_INVALID_ARGUMENT, "--workers: %u is not in 1 … 64", c->workers);
    if (c->sync == ST_SYNC_INTERVAL && c->sync_interval_ms < 1)
        return st_error(ST_INVALID_ARGUMENT, "--sync-interval-ms: must be at least 1");
    if (c->heartbeat_ms < 1)
        return st_error(ST_INVALID_ARGUMENT, "--heartbeat-ms: must be at least 1");
    /* A follower must hear several heartbeats within its shortest election timeout. */
    if (c->election_ms < 2 * (uint64_t)c->heartbeat_ms)
        return st_error(ST_INVALID_ARGUMENT,
                        "--election-ms: %u is under twice --heartbeat-ms (%u); followers would "
                        "start elections while the leader is alive",
                        c->election_ms, c->heartbeat_ms);
    if (c->election_ms > 600000)
        return st_error(ST_INVALID_ARGUMENT, "--election-ms: %u is over 600000", c->election_ms);
    st_cluster cl;
    bool clustered;
    return st_config_cluster(c, &cl, &clustered);
}

st_status st_config_cluster(const st_node_config *c, st_cluster *out, bool *clustered)
{
    memset(out, 0, sizeof(*out));
    *clustered = false;
    if (!c->peers[0])
        return ST_OK;
    st_status s = st_cluster_parse(c->peers, out);
    if (s != ST_OK)
        return s; /* the message names --peers already */
    if (c->node_id == 0 || c->node_id > UINT32_MAX || !st_cluster_find(out, (uint32_t)c->node_id))
        return st_error(ST_INVALID_ARGUMENT, "--node-id %llu is not one of the members of --peers",
                        (unsigned long long)c->node_id);
    *clustered = out->n >= 2;
    return ST_OK;
}

enum { OPT_HELP = 'h', OPT_CONFIG = 'c', OPT_FIRST_SETTING = 0x100 };

st_status st_config_parse(st_node_config *c, int argc, char **argv, bool *help)
{
    struct option longopts[NSETTINGS + 3];
    size_t n = 0;
    for (size_t i = 0; i < NSETTINGS; i++)
        longopts[n++] =
            (struct option){settings[i].name, required_argument, NULL, OPT_FIRST_SETTING + (int)i};
    longopts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    memset(&longopts[n], 0, sizeof(longopts[n]));

    *help = false;
    opterr = 0;
    /* Pass 1: --help and --config only, so that the file sits under every other flag. */
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == OPT_HELP) {
            *help = true;
            return ST_OK;
        }
        if (ch == OPT_CONFIG) {
            if (strlen(optarg) >= sizeof(c->config_file))
                return st_error(ST_INVALID_ARGUMENT, "--config: path too long");
            snprintf(c->config_file, sizeof(c->config_file), "%s", optarg);
        } else if (ch == '?') {
            if (optopt)
                return st_error(ST_INVALID_ARGUMENT, "unknown option -%c", optopt);
            return st_error(ST_INVALID_ARGUMENT, "unknown option %s", argv[optind - 1]);
        } else if (ch == ':') {
            return st_error(ST_INVALID_ARGUMENT, "%s needs a value", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return st_error(ST_INVALID_ARGUMENT, "unexpected argument '%s'", argv[optind]);
    if (c->config_file[0]) {
        st_status s = st_config_load_file(c, c->config_file);
        if (s != ST_OK)
            return s;
    }
    /* Pass 2: every other flag, over the file. */
    optind = 0;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch >= OPT_FIRST_SETTING) {
            const setting *st = &settings[ch - OPT_FIRST_SETTING];
            char where[80];
            snprintf(where, sizeof(where), "--%s", st->name);
            st_status s = apply(c, st, optarg, where);
            if (s != ST_OK)
                return s;
        }
    }
    return st_config_validate(c);
}

void st_config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "Usage: %s [FLAGS]\n"
            "\n"
            "strata-node serves one strata database over gRPC (strata.v1.KV, strata.v1.Admin,\n"
            "grpc.health.v1.Health and server reflection). It logs one line per event to\n"
            "stderr and stops cleanly on SIGTERM or SIGINT.\n"
            "\n"
            "Flags (a flag overrides the same key in the --config file):\n",
            prog);
    for (size_t i = 0; i < NSETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", settings[i].name, settings[i].arg);
        fprintf(out, "  %-30s ", left);
        for (const char *p = settings[i].help; *p; p++) {
            fputc(*p, out);
            if (*p == '\n')
                fprintf(out, "  %-30s ", "");
        }
        fputc('\n', out);
    }
    fprintf(out, "  %-30s %s\n", "--config FILE",
            "read settings from an INI file first: key = value lines, keys as\n"
            "                                 the flags without dashes ('_' or '-'), in [node]");
    fprintf(out, "  %-30s %s\n", "--help", "print this text and exit");
    fprintf(out, "\nSizes take a K, M or G suffix (powers of 1024). Exit status: 0 after a clean\n"
                 "shutdown, 1 if the node cannot start (port in use, data directory locked or\n"
                 "damaged), 2 for a usage error.\n");
}
