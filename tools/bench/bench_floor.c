/*
 * bench_floor.c - `strata-bench floor`: the fastest a gRPC C-core server can answer strata's
 * Put and Get on this machine, with no storage behind it.
 *
 * It serves /strata.v1.KV/Put and /strata.v1.KV/Get and nothing else, answering every call
 * inline on the thread that polled it: Put gets a PutResponse with the next sequence number,
 * Get a GetResponse with a value of --value-size zero bytes. Nothing is parsed beyond the
 * request's presence and nothing is stored, so `strata-bench rpc --addr` against it measures
 * the gRPC stack and the load generator alone: the ceiling of any node built on the C core,
 * to set strata's figures (and a target ratio against etcd) next to.
 *
 *   strata-bench floor [--listen ADDR] [--threads N] [--value-size N]
 *
 * It prints "listening on HOST:PORT" once it serves and runs until SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/v1/kv.pb-c.h"
#include "tools/bench/bench_modes.h"
#include "tools/bench/bench_util.h"

#define REQUESTS_PER_METHOD 64 /* calls posted per method and queue */
#define MAX_THREADS         16

enum { F_LISTEN = 1, F_THREADS, F_VALUE_SIZE };

typedef struct floor_flags {
    const char *listen;
    int threads;
    uint64_t value_size;
} floor_flags;

typedef struct floor_server {
    grpc_server *server;
    void *put, *get; /* registered methods */
    uint8_t *value;  /* value_size zero bytes */
    size_t value_size;
    atomic_uint_fast64_t seq;
} floor_server;

/* One posted request, then the call it became; its tag is itself, `replying` tells which. */
typedef struct floor_call {
    floor_server *fs;
    grpc_completion_queue *cq;
    void *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_byte_buffer *reply;
    int cancelled;
    bool replying;
} floor_call;

static void floor_usage(FILE *out)
{
    fprintf(out, "usage: strata-bench floor [flags]\n\n"
                 "  --listen ADDR      address to serve (default 127.0.0.1:0, a free port)\n"
                 "  --threads N        threads, one completion queue each (default 2)\n"
                 "  --value-size N     bytes of the value each Get answers (default 100)\n\n"
                 "Serves strata.v1.KV Put and Get with nothing behind them (no parsing, no\n"
                 "storage) so that `strata-bench rpc --addr HOST:PORT --op put|get` measures the\n"
                 "gRPC C core and the load generator alone. Prints \"listening on HOST:PORT\";\n"
                 "stops on SIGINT or SIGTERM.\n");
}

static bool floor_set(void *ctx, int code, char *arg)
{
    floor_flags *f = ctx;
    char *end;
    switch (code) {
    case F_LISTEN:
        f->listen = arg;
        return true;
    case F_THREADS:
        errno = 0;
        f->threads = (int)strtol(arg, &end, 10);
        if (errno || *end || f->threads < 1 || f->threads > MAX_THREADS) {
            fprintf(stderr, "strata-bench floor: --threads: want 1 to %d, not \"%s\"\n",
                    MAX_THREADS, arg);
            return false;
        }
        return true;
    case F_VALUE_SIZE:
        if (!st_bench_flag_size("floor", "--value-size", arg, &f->value_size))
            return false;
        if (f->value_size > (1u << 20)) {
            fprintf(stderr, "strata-bench floor: --value-size: at most 1M\n");
            return false;
        }
        return true;
    }
    return false;
}

static bool post(floor_server *fs, grpc_completion_queue *cq, void *method)
{
    floor_call *c = calloc(1, sizeof(*c));
    if (!c)
        return false;
    c->fs = fs;
    c->cq = cq;
    c->method = method;
    grpc_metadata_array_init(&c->md);
    grpc_call_error e = grpc_server_request_registered_call(
        fs->server, method, &c->call, &c->deadline, &c->md, &c->payload, cq, cq, c);
    if (e != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&c->md);
        free(c);
        return false;
    }
    return true;
}

static void call_free(floor_call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

/* A call arrived: answer it in one batch. */
static void answer(floor_call *c)
{
    floor_server *fs = c->fs;
    grpc_status_code code = GRPC_STATUS_OK;
    const char *detail = "";
    uint8_t buf[32];
    size_t n = 0;
    const uint8_t *p = buf;
    if (!c->payload) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        detail = "no request message";
    } else if (c->method == fs->put) {
        Strata__V1__PutResponse m = STRATA__V1__PUT_RESPONSE__INIT;
        m.seq = atomic_fetch_add(&fs->seq, 1) + 1;
        n = strata__v1__put_response__pack(&m, buf);
    } else {
        /* A GetResponse of one field: tag, length, value (packed once at start-up). */
        p = fs->value;
        n = fs->value_size;
    }
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    size_t k = 0;
    ops[k++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (code == GRPC_STATUS_OK) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)p, n);
        c->reply = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[k].op = GRPC_OP_SEND_MESSAGE;
        ops[k++].data.send_message.send_message = c->reply;
    }
    grpc_slice details = grpc_slice_from_static_string(detail);
    ops[k].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[k].data.send_status_from_server.status = code;
    ops[k++].data.send_status_from_server.status_details = &details;
    ops[k].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[k++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->replying = true;
    if (grpc_call_start_batch(c->call, ops, k, c, NULL) != GRPC_CALL_OK)
        call_free(c);
}

static void *floor_thread(void *arg)
{
    grpc_completion_queue *cq = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        floor_call *c = ev.tag;
        if (c->replying || !ev.success) {
            call_free(c);
            continue;
        }
        (void)post(c->fs, c->cq, c->method);
        answer(c);
    }
    return NULL;
}

int st_bench_floor_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, F_LISTEN},
        {"threads", required_argument, NULL, F_THREADS},
        {"value-size", required_argument, NULL, F_VALUE_SIZE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    floor_flags f = {.listen = "127.0.0.1:0", .threads = 2, .value_size = 100};
    int rc = st_bench_parse_flags("floor", argc, argv, opts, floor_set, &f, floor_usage);
    if (rc)
        return rc == 1 ? 0 : rc;

    /* The answer to every Get, packed once. */
    floor_server fs = {.value_size = 0};
    uint8_t *zeros = calloc(1, f.value_size + 1);
    Strata__V1__GetResponse gm = STRATA__V1__GET_RESPONSE__INIT;
    gm.value.data = zeros;
    gm.value.len = f.value_size;
    fs.value_size = strata__v1__get_response__get_packed_size(&gm);
    fs.value = malloc(fs.value_size);
    if (!zeros || !fs.value) {
        fprintf(stderr, "strata-bench floor: out of memory\n");
        return 1;
    }
    strata__v1__get_response__pack(&gm, fs.value);
    free(zeros);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    grpc_init();

    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[0].value.integer = 0;
    grpc_channel_args cargs = {1, args};
    fs.server = grpc_server_create(&cargs, NULL);
    fs.put = grpc_server_register_method(fs.server, "/strata.v1.KV/Put", NULL,
                                         GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    fs.get = grpc_server_register_method(fs.server, "/strata.v1.KV/Get", NULL,
                                         GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_completion_queue *cqs[MAX_THREADS];
    for (int i = 0; i < f.threads; i++) {
        cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(fs.server, cqs[i], NULL);
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(fs.server, f.listen, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "strata-bench floor: cannot listen on %s\n", f.listen);
        grpc_server_destroy(fs.server);
        for (int i = 0; i < f.threads; i++)
            grpc_completion_queue_destroy(cqs[i]);
        grpc_shutdown();
        free(fs.value);
        return 1;
    }
    grpc_server_start(fs.server);
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < f.threads; i++) {
        for (int k = 0; k < REQUESTS_PER_METHOD; k++)
            if (!post(&fs, cqs[i], fs.put) || !post(&fs, cqs[i], fs.get)) {
                fprintf(stderr, "strata-bench floor: cannot post requests\n");
                return 1;
            }
        pthread_create(&th[i], NULL, floor_thread, cqs[i]);
    }
    char host[256];
    snprintf(host, sizeof(host), "%s", f.listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    printf("listening on %s:%d\n", host, port);
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    grpc_completion_queue *sq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(fs.server, sq, &fs);
    grpc_server_cancel_all_calls(fs.server);
    grpc_completion_queue_pluck(sq, &fs, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_destroy(sq);
    grpc_server_destroy(fs.server);
    for (int i = 0; i < f.threads; i++)
        grpc_completion_queue_shutdown(cqs[i]);
    for (int i = 0; i < f.threads; i++) {
        pthread_join(th[i], NULL);
        grpc_completion_queue_destroy(cqs[i]);
    }
    grpc_shutdown();
    free(fs.value);
    printf("served %llu puts\n", (unsigned long long)atomic_load(&fs.seq));
    return 0;
}
