/*
 * cli.c - `strata`, the command-line client of strata-node.
 *
 *   strata [--addr HOST:PORT] [--timeout MS] [--hex | --escape] COMMAND ...
 *     put KEY [VALUE]        VALUE from the argument, or from stdin when absent or "-"
 *     get KEY
 *     del KEY
 *     scan [START [END]] [--limit N] [--reverse]
 *     status
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
    fprintf(f, "Usage: strata [--addr HOST:PORT] [--timeout MS] [--hex | --escape] COMMAND ...\n"
               "\n"
               "Commands:\n"
               "  put KEY [VALUE]                 set KEY; VALUE from stdin when absent or '-'\n"
               "  get KEY                         print the value of KEY\n"
               "  del KEY                         delete KEY\n"
               "  scan [START [END]] [--limit N] [--reverse]\n"
               "                                  print key<TAB>value lines for [START, END)\n"
               "  status                          print the node's state and counters\n"
               "\n"
               "Options:\n"
               "  --addr HOST:PORT   node address (default 127.0.0.1:7400)\n"
               "  --timeout MS       deadline of each call (default 10000)\n"
               "  --hex              arguments and output in hex\n"
               "  --escape           arguments and output with C escapes (\\n \\t \\\\ \\xNN)\n"
               "  --limit N          scan: at most N pairs\n"
               "  --reverse          scan: largest key first\n"
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

static int cmd_put(st_rpc_client *c, int64_t timeout, out_mode mode, int argc, char **argv)
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
    st_rpc_unary(c, "/strata.v1.KV/Put", req, len, true, timeout, &r);
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

static int cmd_get(st_rpc_client *c, int64_t timeout, out_mode mode, int argc, char **argv)
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
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    st_rpc_unary(c, "/strata.v1.KV/Get", req, len, true, timeout, &r);
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

static int cmd_del(st_rpc_client *c, int64_t timeout, out_mode mode, int argc, char **argv)
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
    st_rpc_unary(c, "/strata.v1.KV/Delete", req, len, true, timeout, &r);
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

static int cmd_scan(st_rpc_client *c, int64_t timeout, out_mode mode, uint64_t limit, bool reverse,
                    int argc, char **argv)
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
    st_rpc_stream *s = st_rpc_stream_open(c, "/strata.v1.KV/Scan", req, len, timeout);
    free(req);
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

static int cmd_status(st_rpc_client *c, int64_t timeout, int argc)
{
    if (argc != 0) {
        fprintf(stderr, "strata: status takes no arguments\n");
        return EXIT_USAGE;
    }
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    size_t len;
    uint8_t *req = pack(&q.base, &len);
    st_rpc_result r;
    st_rpc_unary(c, "/strata.v1.Admin/Status", req, len, true, timeout, &r);
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

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:7400";
    int64_t timeout = 10000;
    out_mode mode = OUT_DEFAULT;
    uint64_t limit = 0;
    bool reverse = false;
    enum { O_ADDR = 0x100, O_TIMEOUT, O_HEX, O_ESCAPE, O_LIMIT, O_REVERSE, O_HELP };
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"hex", no_argument, NULL, O_HEX},
        {"escape", no_argument, NULL, O_ESCAPE},
        {"limit", required_argument, NULL, O_LIMIT},
        {"reverse", no_argument, NULL, O_REVERSE},
        {"help", no_argument, NULL, O_HELP},
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
                 strcmp(cmd, "scan") == 0 || strcmp(cmd, "status") == 0;
    if (!known) {
        fprintf(stderr, "strata: unknown command '%s' (see strata --help)\n", cmd);
        return EXIT_USAGE;
    }
    st_rpc_init();
    st_rpc_client *c = st_rpc_client_create(addr, 0);
    int rc;
    if (!c) {
        fprintf(stderr, "strata: cannot create a channel to %s\n", addr);
        rc = EXIT_RPC;
    } else if (strcmp(cmd, "put") == 0) {
        rc = cmd_put(c, timeout, mode, nargs, args);
    } else if (strcmp(cmd, "get") == 0) {
        rc = cmd_get(c, timeout, mode, nargs, args);
    } else if (strcmp(cmd, "del") == 0) {
        rc = cmd_del(c, timeout, mode, nargs, args);
    } else if (strcmp(cmd, "scan") == 0) {
        rc = cmd_scan(c, timeout, mode, limit, reverse, nargs, args);
    } else {
        rc = cmd_status(c, timeout, nargs);
    }
    st_rpc_client_destroy(c);
    grpc_shutdown_blocking();
    fflush(stdout);
    return rc;
}
