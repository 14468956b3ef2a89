/*
 * cli.c - `strata`, the command-line client of strata-node.
 *
 *   strata [--addr HOST:PORT[,HOST:PORT...]] [--timeout MS] [--hex | --escape] [--verbose]
 *          COMMAND ...
 *     put KEY [VALUE]        VALUE from the argument, or from stdin when absent or "-"
 *     get KEY
 *     del KEY
 *     scan [START [END]] [--limit N] [--reverse]
 *     status
 *     promote NODE_ID        hand leadership of the cluster to NODE_ID
 *     step-down              hand it to the most up-to-date follower
 *     health [SERVICE]       the gRPC health service's answer (exit 0 only when SERVING)
 *
 * Clusters: --addr may list several nodes; the first that can be reached is used. A call
 * answered FAILED_PRECONDITION with the leader's address (trailing metadata "strata-leader",
 * e.g. a write sent to a follower) is sent once more, to the leader; --verbose says so. When
 * that address cannot be reached from here (the cluster's own name for the leader, behind
 * ports published elsewhere), the other listed addresses are asked in turn.
 *
 * Bytes: with --hex, KEY/VALUE/START/END arguments are hex and output is hex; with --escape,
 * arguments may hold C escapes (\n, \t, \\, \xNN) and output is escaped. Otherwise arguments
 * are taken literally; `get` writes the raw value to a pipe or file and an escaped line to a
 * terminal; `scan` prints one `key<TAB>value` line per pair, escaped (tab, newline, backslash
 * and non-printable bytes as C escapes), so the output stays one pair per line.
 *
 * Exit status: 0 ok, 1 key not found, 2 usage error, 3 server or RPC error (the message on
 * stderr names the gRPC status code).
 */
#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/rpc_client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "node/status_codes.h"
#include "strata/v1/admin.pb-c.h"
#include "strata/v1/kv.pb-c.h"

#define EXIT_NOT_FOUND 1
#define EXIT_USAGE     2
#define EXIT_RPC       3

typedef enum out_mode { OUT_DEFAULT, OUT_HEX, OUT_ESCAPE } out_mode;

typedef struct bytes {
    uint8_t *data;
    size_t len;
} bytes;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: strata [--addr HOST:PORT[,...]] [--timeout MS] [--hex | --escape] COMMAND ...\n"
            "\n"
            "Commands:\n"
            "  put KEY [VALUE]                 set KEY; VALUE from stdin when absent or '-'\n"
            "  get KEY [--linearizable]        print the value of KEY\n"
            "  del KEY                         delete KEY\n"
            "  scan [START [END]] [--limit N] [--reverse]\n"
            "                                  print key<TAB>value lines for [START, END)\n"
            "  status                          print the node's state and counters\n"
            "  promote NODE_ID                 make NODE_ID the cluster's leader\n"
            "  step-down                       hand leadership to the best follower\n"
            "  health [SERVICE]                grpc.health.v1 Check: prints SERVING (exit 0) or\n"
            "                                  NOT_SERVING / SERVICE_UNKNOWN (exit 3); SERVICE\n"
            "                                  strata.v1.KV.leader is SERVING on the leader only\n"
            "\n"
            "Options:\n"
            "  --addr HOST:PORT   node address (default 127.0.0.1:7400); a comma list tries\n"
            "                     each until one can be reached\n"
            "  --verbose          say when a call is redirected to the leader\n"
            "  --timeout MS       deadline of each call (default 10000)\n"
            "  --hex              arguments and output in hex\n"
            "  --escape           arguments and output with C escapes (\\n \\t \\\\ \\xNN)\n"
            "  --limit N          scan: at most N pairs\n"
            "  --reverse          scan: largest key first\n"
            "  --linearizable     get: read through the leader, which sees every write\n"
            "                     acknowledged before (a follower's answer may be behind)\n"
            "  --help             this text\n"
            "\n"
            "get writes the raw value when stdout is not a terminal. Exit status: 0 ok,\n"
            "1 not found, 2 usage error, 3 server or RPC error.\n");
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode a command-line argument per the mode; false if malformed. */
static bool parse_arg(const char *s, out_mode mode, bytes *out)
{
    size_t n = strlen(s);
    out->data = malloc(n + 1);
    out->len = 0;
    if (!out->data)
        return false;
    if (mode == OUT_HEX) {
        if (n % 2)
            return false;
        for (size_t i = 0; i < n; i += 2) {
            int hi = hexval(s[i]), lo = hexval(s[i + 1]);
            if (hi < 0 || lo < 0)
                return false;
            out->data[out->len++] = (uint8_t)(hi << 4 | lo);
        }
        return true;
    }
    if (mode == OUT_ESCAPE) {
        for (size_t i = 0; i < n; i++) {
            if (s[i] != '\\') {
                out->data[out->len++] = (uint8_t)s[i];
                continue;
            }
            if (++i >= n)
                return false;
            switch (s[i]) {
            case 'n':
                out->data[out->len++] = '\n';
                break;
            case 't':
                out->data[out->len++] = '\t';
                break;
            case 'r':
                out->data[out->len++] = '\r';
                break;
            case '0':
                out->data[out->len++] = '\0';
                break;
            case '\\':
                out->data[out->len++] = '\\';
                break;
            case 'x': {
                if (i + 2 >= n)
                    return false;
                int hi = hexval(s[i + 1]), lo = hi >= 0 ? hexval(s[i + 2]) : -1;
                if (hi < 0 || lo < 0)
                    return false;
                out->data[out->len++] = (uint8_t)(hi << 4 | lo);
                i += 2;
                break;
            }
            default:
                return false;
            }
        }
        return true;
    }
    memcpy(out->data, s, n);
    out->len = n;
    return true;
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

static void put_escaped(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void put_bytes(FILE *f, out_mode mode, const uint8_t *p, size_t n)
{
    if (mode == OUT_HEX)
        put_hex(f, p, n);
    else
        put_escaped(f, p, n);
}

static bool read_stdin(bytes *out)
{
    size_t cap = 4096;
    out->data = malloc(cap);
    out->len = 0;
    if (!out->data)
        return false;
    for (;;) {
        if (out->len == cap) {
            uint8_t *p = realloc(out->data, cap * 2);
            if (!p)
                return false;
            out->data = p;
            cap *= 2;
        }
        size_t r = fread(out->data + out->len, 1, cap - out->len, stdin);
        out->len += r;
        if (r == 0)
            return !ferror(stdin);
    }
}

/* Report a failed call; returns the exit status. */
static int rpc_error(const char *cmd, const st_rpc_result *r)
{
    fprintf(stderr, "strata: %s: %s: %s\n", cmd, st_grpc_code_name(r->code),
            r->details && *r->details ? r->details : "(no message)");
    return EXIT_RPC;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(m, buf);
    return buf;
}

/* The node(s) the commands talk to: --addr, possibly a comma list. */
typedef struct conn {
    const char *list; /* --addr as given */
    char *addrs[16];
    size_t naddrs;
    int64_t timeout;
    bool verbose;
    st_rpc_client *c; /* NULL until one address is chosen */
    char addr[256];   /* the chosen one */
    bool redirected;  /* a call went to the leader already */
} conn;

/* Choose the address to use: the only one, or the first of the list that can be reached. */
static bool conn_open(conn *k)
{
    if (k->c)
        return true;
    for (size_t i = 0; i < k->naddrs; i++) {
        st_rpc_client *c = st_rpc_client_create(k->addrs[i], 0);
        if (!c)
            continue;
        int64_t wait = k->timeout < 3000 ? k->timeout : 3000;
        if (k->naddrs == 1 || st_rpc_client_ready(c, wait)) {
            k->c = c;
            snprintf(k->addr, sizeof(k->addr), "%s", k->addrs[i]);
            return true;
        }
        if (k->verbose)
            fprintf(stderr, "strata: %s cannot be reached; trying the next address\n", k->addrs[i]);
        st_rpc_client_destroy(c);
    }
    return false;
}

/*
 * A unary call on the chosen node. FAILED_PRECONDITION naming the leader (trailing metadata
 * "strata-leader") is retried once at the leader, which is then used for later calls.
 */
static void conn_unary(conn *k, const char *method, const uint8_t *req, size_t len,
                       st_rpc_result *r)
{
    if (!conn_open(k)) {
        memset(r, 0, sizeof(*r));
        r->code = GRPC_STATUS_UNAVAILABLE;
        size_t n = strlen(k->list) + 64;
        r->details = malloc(n);
        if (r->details)
            snprintf(r->details, n, "none of the addresses %s can be reached", k->list);
        return;
    }
    st_rpc_unary(k->c, method, req, len, true, k->timeout, r);
    const char *leader = r->code == GRPC_STATUS_FAILED_PRECONDITION
                             ? st_rpc_result_trailer(r, "strata-leader")
                             : NULL;
    if (!leader || !*leader || k->redirected || strcmp(leader, k->addr) == 0)
        return;
    k->redirected = true;
    char target[256];
    snprintf(target, sizeof(target), "%s", leader);
    st_rpc_client *c = st_rpc_client_create(target, 0);
    if (!c)
        return;
    if (k->verbose)
        fprintf(stderr, "strata: %s is not the leader; sending to the leader at %s\n", k->addr,
                target);
    st_rpc_client_destroy(k->c);
    k->c = c;
    snprintf(k->addr, sizeof(k->addr), "%s", target);
    st_rpc_result_free(r);
    st_rpc_unary(k->c, method, req, len, true, k->timeout, r);
    if (r->code != GRPC_STATUS_UNAVAILABLE || k->naddrs < 2)
        return;
    /* The leader's address as the cluster knows it cannot be reached from here (a name only the
       cluster's own network resolves, say, with ports published on this host): ask the listed
       addresses in turn. Followers refuse a write before it is logged, so nothing is applied
       twice; the first answer that is not a follower's refusal or unreachable is the one. */
    for (size_t i = 0; i < k->naddrs; i++) {
        if (strcmp(k->addrs[i], target) == 0)
            continue;
        st_rpc_client *other = st_rpc_client_create(k->addrs[i], 0);
        if (!other)
            continue;
        st_rpc_result r2;
        st_rpc_unary(other, method, req, len, true, k->timeout, &r2);
        const char *hint = r2.code == GRPC_STATUS_FAILED_PRECONDITION
                               ? st_rpc_result_trailer(&r2, "strata-leader")
                               : NULL;
        if (r2.code == GRPC_STATUS_UNAVAILABLE || (hint && *hint)) {
            st_rpc_result_free(&r2);
            st_rpc_client_destroy(other);
            continue;
        }
        if (k->verbose)
            fprintf(stderr, "strata: the leader at %s cannot be reached; %s answered instead\n",
                    target, k->addrs[i]);
        st_rpc_result_free(r);
        *r = r2;
        st_rpc_client_destroy(k->c);
        k->c = other;
        snprintf(k->addr, sizeof(k->addr), "%s", k->addrs[i]);
        return;
    }
}

static int cmd_put(conn *k, out_mode mode, int argc, char **argv)
{
    if (argc < 1 || argc > 2) {
        fprintf(stderr, "strata: put takes KEY [VALUE]\n");
        return EXIT_USAGE;
    }
    bytes key = {0}, value = {0};
    int rc = EXIT_USAGE;
    if (!parse_arg(argv[0], mode, &key)) {
        fprintf(stderr, "strata: put: KEY is not valid %s\n",
                mode == OUT_HEX ? "hex" : "escaped text");
        goto out;
    }
    if (argc == 1 || strcmp(argv[1], "-") == 0) {
        if (!read_stdin(&value)) {
            fprintf(stderr, "strata: put: cannot read the value from stdin: %s\n", strerror(errno));
            rc = EXIT_RPC;
            goto out;
        }
    } else if (!parse_arg(argv[1], mode, &value)) {
        fprintf(stderr, "strata: put: VALUE is not valid %s\n",
                mode == OUT_HEX ? "hex" : "escaped text");
        goto out;
    }
    Strata__V1__PutRequest q = STRATA__V1__PUT_REQUEST__INIT;
    q.key.data = key.data;
    q.key.len = key.len;
    q.value.data = value.data;
    q.value.len = value.len;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    conn_unary(k, "/strata.v1.KV/Put", req, len, &r);
    free(req);
    if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error("put", &r);
    } else {
        Strata__V1__PutResponse *p = strata__v1__put_response__unpack(NULL, r.resp_len, r.resp);
        printf("OK seq=%" PRIu64 "\n", p ? p->seq : 0);
        strata__v1__put_response__free_unpacked(p, NULL);
        rc = 0;
    }
    st_rpc_result_free(&r);
out:
    free(key.data);
    free(value.data);
    return rc;
}

static int cmd_get(conn *k, out_mode mode, bool linearizable, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "strata: get takes KEY\n");
        return EXIT_USAGE;
    }
    bytes key = {0};
    if (!parse_arg(argv[0], mode, &key)) {
        free(key.data);
        fprintf(stderr, "strata: get: KEY is not valid %s\n",
                mode == OUT_HEX ? "hex" : "escaped text");
        return EXIT_USAGE;
    }
    Strata__V1__GetRequest q = STRATA__V1__GET_REQUEST__INIT;
    q.key.data = key.data;
    q.key.len = key.len;
    q.linearizable = linearizable;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    conn_unary(k, "/strata.v1.KV/Get", req, len, &r);
    free(req);
    free(key.data);
    int rc = 0;
    if (r.code == GRPC_STATUS_NOT_FOUND) {
        fprintf(stderr, "strata: get: not found\n");
        rc = EXIT_NOT_FOUND;
    } else if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error("get", &r);
    } else {
        Strata__V1__GetResponse *p = strata__v1__get_response__unpack(NULL, r.resp_len, r.resp);
        if (!p) {
            fprintf(stderr, "strata: get: the response does not parse\n");
            rc = EXIT_RPC;
        } else if (mode == OUT_DEFAULT && !isatty(STDOUT_FILENO)) {
            if (p->value.len)
                fwrite(p->value.data, 1, p->value.len, stdout);
        } else {
            put_bytes(stdout, mode, p->value.data, p->value.len);
            fputc('\n', stdout);
        }
        strata__v1__get_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return rc;
}

static int cmd_del(conn *k, out_mode mode, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "strata: del takes KEY\n");
        return EXIT_USAGE;
    }
    bytes key = {0};
    if (!parse_arg(argv[0], mode, &key)) {
        free(key.data);
        fprintf(stderr, "strata: del: KEY is not valid %s\n",
                mode == OUT_HEX ? "hex" : "escaped text");
        return EXIT_USAGE;
    }
    Strata__V1__DeleteRequest q = STRATA__V1__DELETE_REQUEST__INIT;
    q.key.data = key.data;
    q.key.len = key.len;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    conn_unary(k, "/strata.v1.KV/Delete", req, len, &r);
    free(req);
    free(key.data);
    int rc = 0;
    if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error("del", &r);
    } else {
        Strata__V1__DeleteResponse *p =
            strata__v1__delete_response__unpack(NULL, r.resp_len, r.resp);
        printf("OK seq=%" PRIu64 "\n", p ? p->seq : 0);
        strata__v1__delete_response__free_unpacked(p, NULL);
    }
    st_rpc_result_free(&r);
    return rc;
}

static int cmd_scan(conn *k, out_mode mode, uint64_t limit, bool reverse, int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "strata: scan takes [START [END]]\n");
        return EXIT_USAGE;
    }
    bytes start = {0}, end = {0};
    int rc = EXIT_USAGE;
    if ((argc >= 1 && !parse_arg(argv[0], mode, &start)) ||
        (argc >= 2 && !parse_arg(argv[1], mode, &end))) {
        fprintf(stderr, "strata: scan: START/END is not valid %s\n",
                mode == OUT_HEX ? "hex" : "escaped text");
        goto out;
    }
    Strata__V1__ScanRequest q = STRATA__V1__SCAN_REQUEST__INIT;
    q.start.data = start.data;
    q.start.len = start.len;
    q.end.data = end.data;
    q.end.len = end.len;
    q.limit = limit;
    q.reverse = reverse;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_stream *s =
        conn_open(k) ? st_rpc_stream_open(k->c, "/strata.v1.KV/Scan", req, len, k->timeout) : NULL;
    free(req);
    if (!s && !k->c) {
        fprintf(stderr, "strata: scan: UNAVAILABLE: none of the addresses %s can be reached\n",
                k->list);
        rc = EXIT_RPC;
        goto out;
    }
    if (!s) {
        fprintf(stderr, "strata: scan: cannot start the call\n");
        rc = EXIT_RPC;
        goto out;
    }
    uint8_t *msg;
    size_t mlen;
    rc = 0;
    while (st_rpc_stream_next(s, &msg, &mlen)) {
        Strata__V1__ScanResponse *p = strata__v1__scan_response__unpack(NULL, mlen, msg);
        free(msg);
        if (!p) {
            fprintf(stderr, "strata: scan: a response does not parse\n");
            st_rpc_stream_cancel(s);
            rc = EXIT_RPC;
            break;
        }
        for (size_t i = 0; i < p->n_pairs; i++) {
            put_bytes(stdout, mode, p->pairs[i]->key.data, p->pairs[i]->key.len);
            fputc('\t', stdout);
            put_bytes(stdout, mode, p->pairs[i]->value.data, p->pairs[i]->value.len);
            fputc('\n', stdout);
        }
        strata__v1__scan_response__free_unpacked(p, NULL);
    }
    st_rpc_result r;
    st_rpc_stream_close(s, &r);
    if (rc == 0 && r.code != GRPC_STATUS_OK)
        rc = rpc_error("scan", &r);
    st_rpc_result_free(&r);
out:
    free(start.data);
    free(end.data);
    return rc;
}

static int cmd_status(conn *k, int argc)
{
    if (argc != 0) {
        fprintf(stderr, "strata: status takes no arguments\n");
        return EXIT_USAGE;
    }
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    conn_unary(k, "/strata.v1.Admin/Status", req, len, &r);
    free(req);
    int rc = 0;
    if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error("status", &r);
        st_rpc_result_free(&r);
        return rc;
    }
    Strata__V1__StatusResponse *p = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
    if (!p) {
        fprintf(stderr, "strata: status: the response does not parse\n");
        st_rpc_result_free(&r);
        return EXIT_RPC;
    }
    printf("node_id: %" PRIu64 "\n", p->node_id);
    printf("role: %s\n", p->role);
    if (strcmp(p->role, "standalone") != 0) {
        printf("term: %" PRIu64 "\n", p->term);
        if (p->leader_id)
            printf("leader: %u at %s\n", p->leader_id, p->leader_addr);
        else
            printf("leader: unknown\n");
        printf("commit_seq: %" PRIu64 "\n", p->commit_seq);
        for (size_t i = 0; i < p->n_peers; i++) {
            const Strata__V1__PeerStatus *ps = p->peers[i];
            printf("peer %u: %s", ps->id, ps->address);
            if (ps->state && *ps->state)
                printf(" state=%s match_seq=%" PRIu64 " lag_records=%" PRIu64 " lag_bytes=%" PRIu64
                       " lag_ms=%" PRIu64,
                       ps->state, ps->match_seq, ps->lag_records, ps->lag_bytes, ps->lag_ms);
            printf("\n");
        }
    }
    printf("version: %s\n", p->version);
    printf("uptime_seconds: %" PRIu64 "\n", p->uptime_seconds);
    printf("last_seq: %" PRIu64 "\n", p->last_seq);
    printf("applied_seq: %" PRIu64 "\n", p->applied_seq);
    printf("flushed_seq: %" PRIu64 "\n", p->flushed_seq);
    printf("memtable_bytes: %" PRIu64 "\n", p->memtable_bytes);
    printf("immutables: %u (%" PRIu64 " bytes)\n", p->immutables, p->immutable_bytes);
    for (size_t i = 0; i < p->n_levels; i++)
        printf("level %u: %u files, %" PRIu64 " bytes\n", p->levels[i]->level, p->levels[i]->files,
               p->levels[i]->bytes);
    printf("wal: %u segments, %" PRIu64 " bytes\n", p->wal_segments, p->wal_bytes);
    printf("writes: %" PRIu64 " in %" PRIu64 " groups, %" PRIu64 " WAL syncs\n", p->writes,
           p->write_groups, p->wal_syncs);
    printf("flushes: %" PRIu64 " (%" PRIu64 " bytes)\n", p->flushes, p->flush_bytes);
    printf("compactions: %" PRIu64 " (read %" PRIu64 ", wrote %" PRIu64 " bytes)\n", p->compactions,
           p->compaction_bytes_read, p->compaction_bytes_written);
    printf("stalls: %" PRIu64 " (%" PRIu64 " us, %" PRIu64 " timed out)\n", p->stalls,
           p->stall_micros, p->stall_timeouts);
    printf("active_calls: %u\n", p->active_calls);
    if (p->background_error && *p->background_error)
        printf("background_error: %s\n", p->background_error);
    strata__v1__status_response__free_unpacked(p, NULL);
    st_rpc_result_free(&r);
    return rc;
}

/*
 * grpc.health.v1.Health/Check of SERVICE ("" = the node as a whole; "strata.v1.KV.leader" =
 * whether it is the leader) at the first reachable address. Prints the serving status; exit 0
 * only when SERVING, so that scripts and container health checks can test it.
 */
static int cmd_health(conn *k, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "strata: health takes at most one SERVICE name\n");
        return EXIT_USAGE;
    }
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = argc == 1 ? argv[0] : "";
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    if (!conn_open(k)) {
        free(req);
        fprintf(stderr, "strata: health: none of the addresses %s can be reached\n", k->list);
        return EXIT_RPC;
    }
    st_rpc_unary(k->c, "/grpc.health.v1.Health/Check", req, len, true, k->timeout, &r);
    free(req);
    int rc;
    if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error("health", &r);
        st_rpc_result_free(&r);
        return rc;
    }
    Grpc__Health__V1__HealthCheckResponse *p =
        grpc__health__v1__health_check_response__unpack(NULL, r.resp_len, r.resp);
    st_rpc_result_free(&r);
    if (!p) {
        fprintf(stderr, "strata: health: the response does not parse\n");
        return EXIT_RPC;
    }
    const char *name;
    switch (p->status) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
        name = "SERVING";
        break;
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
        name = "NOT_SERVING";
        break;
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        name = "SERVICE_UNKNOWN";
        break;
    default:
        name = "UNKNOWN";
        break;
    }
    printf("%s\n", name);
    rc = p->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0
                                                                                       : EXIT_RPC;
    grpc__health__v1__health_check_response__free_unpacked(p, NULL);
    return rc;
}

/* Promote (target > 0) or StepDown, and print who leads afterwards. */
static int cmd_transfer(conn *k, const char *cmd, int argc, char **argv)
{
    uint32_t target = 0;
    if (strcmp(cmd, "promote") == 0) {
        char *end;
        errno = 0;
        unsigned long v = argc == 1 ? strtoul(argv[0], &end, 10) : 0;
        if (argc != 1 || errno || *end || v == 0 || v > UINT32_MAX || argv[0][0] == '-') {
            fprintf(stderr, "strata: promote takes NODE_ID (a positive member id)\n");
            return EXIT_USAGE;
        }
        target = (uint32_t)v;
    } else if (argc != 0) {
        fprintf(stderr, "strata: step-down takes no arguments\n");
        return EXIT_USAGE;
    }
    size_t len;
    uint8_t *req;
    st_rpc_result r;
    if (target) {
        Strata__V1__PromoteRequest q = STRATA__V1__PROMOTE_REQUEST__INIT;
        q.node_id = target;
        req = pack(&q.base, &len);
        conn_unary(k, "/strata.v1.Admin/Promote", req, len, &r);
    } else {
        Strata__V1__StepDownRequest q = STRATA__V1__STEP_DOWN_REQUEST__INIT;
        req = pack(&q.base, &len);
        conn_unary(k, "/strata.v1.Admin/StepDown", req, len, &r);
    }
    free(req);
    int rc = 0;
    if (r.code != GRPC_STATUS_OK) {
        rc = rpc_error(cmd, &r);
    } else {
        Strata__V1__TransferResponse *p =
            strata__v1__transfer_response__unpack(NULL, r.resp_len, r.resp);
        if (!p) {
            fprintf(stderr, "strata: %s: the response does not parse\n", cmd);
            rc = EXIT_RPC;
        } else {
            if (p->leader_id)
                printf("leader: %u at %s (term %" PRIu64 ")\n", p->leader_id, p->leader_addr,
                       p->term);
            else
                printf("leader: not known yet (term %" PRIu64 ")\n", p->term);
            printf("write pause: %u ms\n", p->pause_ms);
            strata__v1__transfer_response__free_unpacked(p, NULL);
        }
    }
    st_rpc_result_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:7400";
    bool verbose = false;
    int64_t timeout = 10000;
    out_mode mode = OUT_DEFAULT;
    uint64_t limit = 0;
    bool reverse = false, linearizable = false;
    enum {
        O_ADDR = 0x100,
        O_TIMEOUT,
        O_HEX,
        O_ESCAPE,
        O_LIMIT,
        O_REVERSE,
        O_HELP,
        O_VERBOSE,
        O_LINEARIZABLE
    };
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"hex", no_argument, NULL, O_HEX},
        {"escape", no_argument, NULL, O_ESCAPE},
        {"limit", required_argument, NULL, O_LIMIT},
        {"reverse", no_argument, NULL, O_REVERSE},
        {"help", no_argument, NULL, O_HELP},
        {"verbose", no_argument, NULL, O_VERBOSE},
        {"linearizable", no_argument, NULL, O_LINEARIZABLE},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_ADDR:
            addr = optarg;
            break;
        case O_TIMEOUT:
            errno = 0;
            timeout = strtoll(optarg, &end, 10);
            if (errno || *end || timeout < 0) {
                fprintf(stderr, "strata: --timeout: '%s' is not a number of milliseconds\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case O_HEX:
            mode = OUT_HEX;
            break;
        case O_ESCAPE:
            mode = OUT_ESCAPE;
            break;
        case O_LIMIT:
            errno = 0;
            limit = strtoull(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-') {
                fprintf(stderr, "strata: --limit: '%s' is not a count\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_REVERSE:
            reverse = true;
            break;
        case O_VERBOSE:
            verbose = true;
            break;
        case O_LINEARIZABLE:
            linearizable = true;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "strata: %s needs a value\n", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            fprintf(stderr, "strata: unknown option %s (see strata --help)\n", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    bool known = strcmp(cmd, "put") == 0 || strcmp(cmd, "get") == 0 || strcmp(cmd, "del") == 0 ||
                 strcmp(cmd, "scan") == 0 || strcmp(cmd, "status") == 0 ||
                 strcmp(cmd, "promote") == 0 || strcmp(cmd, "step-down") == 0 ||
                 strcmp(cmd, "health") == 0;
    if (!known) {
        fprintf(stderr, "strata: unknown command '%s' (see strata --help)\n", cmd);
        return EXIT_USAGE;
    }
    conn k = {.list = addr, .timeout = timeout, .verbose = verbose};
    char *list = strdup(addr);
    for (char *save = NULL, *tok = list ? strtok_r(list, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (k.naddrs == sizeof(k.addrs) / sizeof(k.addrs[0])) {
            fprintf(stderr, "strata: --addr: at most %zu addresses\n", k.naddrs);
            free(list);
            return EXIT_USAGE;
        }
        k.addrs[k.naddrs++] = tok;
    }
    if (k.naddrs == 0) {
        fprintf(stderr, "strata: --addr: no address given\n");
        free(list);
        return EXIT_USAGE;
    }
    st_rpc_init();
    int rc;
    if (strcmp(cmd, "put") == 0) {
        rc = cmd_put(&k, mode, nargs, args);
    } else if (strcmp(cmd, "get") == 0) {
        rc = cmd_get(&k, mode, linearizable, nargs, args);
    } else if (strcmp(cmd, "del") == 0) {
        rc = cmd_del(&k, mode, nargs, args);
    } else if (strcmp(cmd, "scan") == 0) {
        rc = cmd_scan(&k, mode, limit, reverse, nargs, args);
    } else if (strcmp(cmd, "status") == 0) {
        rc = cmd_status(&k, nargs);
    } else if (strcmp(cmd, "health") == 0) {
        rc = cmd_health(&k, nargs, args);
    } else {
        rc = cmd_transfer(&k, cmd, nargs, args);
    }
    st_rpc_client_destroy(k.c);
    free(list);
    grpc_shutdown_blocking();
    fflush(stdout);
    return rc;
}
