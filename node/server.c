/* server.c - gRPC C core server: queues, workers, per-call state machines. */
#include "node/server.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/log.h"

#define MAX_TRAILERS 4

/* What a completion-queue tag points at: the worker calls fn(ctx, success). */
typedef struct tag {
    void (*fn)(void *ctx, bool ok);
    void *ctx;
} tag;

typedef struct reg_method {
    st_method m;
    void *handle; /* grpc_server_register_method's */
} reg_method;

struct st_server {
    grpc_server *server;
    uint32_t nq;
    grpc_completion_queue **cqs;
    pthread_t *threads;
    uint32_t threads_started;
    reg_method *methods;
    size_t nmethods, cap;
    uint32_t requests_per_method;
    uint32_t max_calls;
    size_t max_msg;  /* for methods not marked peer, when larger messages reach us */
    bool check_size; /* max_peer_message_bytes > max_message_bytes */
    char listen[256];
    bool started;
    atomic_uint active; /* counted calls in progress */
    atomic_int live;    /* st_call objects, posted requests included */
    atomic_bool shutting_down;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool shutdown_begun;    /* guarded by mu */
    bool shutdown_notified; /* guarded by mu */
    st_call *live_calls;    /* guarded by mu: every st_call, for the shutdown report */
    tag shutdown_tag;
};

struct st_call {
    st_server *srv;
    const reg_method *rm; /* NULL: an unknown method, caught by grpc_server_request_call */
    grpc_completion_queue *cq;
    grpc_call *call;
    gpr_timespec deadline;
    int64_t deadline_ns;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
    atomic_int refs;
    bool counted;

    pthread_mutex_t mu;
    /* All below guarded by mu. */
    bool initial_md_sent;
    bool finished;     /* the handler has finished the call (status sent or pending) */
    bool fail_pending; /* finished while a send was in flight: status follows it */
    bool send_in_flight;
    bool close_posted; /* RECV_CLOSE_ON_SERVER started */
    bool cancelled;
    int close_cancelled; /* written by gRPC */
    grpc_status_code pending_code;
    grpc_slice pending_details;
    grpc_slice status_details; /* kept alive until the status batch completes */
    bool has_status_details;
    void (*on_cancel)(st_call *);
    void (*send_done)(st_call *, bool);
    void (*recv_done)(st_call *, const uint8_t *, size_t, bool);
    grpc_byte_buffer *send_buf;
    grpc_byte_buffer *final_buf;
    grpc_byte_buffer *recv_buf;
    void *data;
    void (*data_free)(void *);
    grpc_metadata trailers[MAX_TRAILERS]; /* sent with the status; freed with the call */
    size_t ntrailers;

    tag t_request, t_send, t_recv, t_close, t_final;
    st_call *live_next, *live_prev; /* st_server.live_calls, guarded by srv->mu */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* gRPC's deadline (any clock) as our CLOCK_MONOTONIC nanoseconds. */
static int64_t deadline_to_ns(gpr_timespec d)
{
    if (d.tv_sec == INT64_MAX || gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left =
        gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC), gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t now = mono_ns();
    if (left.tv_sec > (INT64_MAX - now) / 1000000000 - 1)
        return INT64_MAX;
    return now + left.tv_sec * 1000000000 + left.tv_nsec;
}

/* ---- call objects ------------------------------------------------------------------------ */

static void on_request(void *ctx, bool ok);
static void on_send(void *ctx, bool ok);
static void on_recv(void *ctx, bool ok);
static void on_close(void *ctx, bool ok);
static void on_final(void *ctx, bool ok);

static st_call *call_new(st_server *srv, grpc_completion_queue *cq, const reg_method *rm)
{
    st_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = srv;
    c->rm = rm;
    c->cq = cq;
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    c->t_request = (tag){on_request, c};
    c->t_send = (tag){on_send, c};
    c->t_recv = (tag){on_recv, c};
    c->t_close = (tag){on_close, c};
    c->t_final = (tag){on_final, c};
    atomic_fetch_add(&srv->live, 1);
    pthread_mutex_lock(&srv->mu);
    c->live_next = srv->live_calls;
    if (srv->live_calls)
        srv->live_calls->live_prev = c;
    srv->live_calls = c;
    pthread_mutex_unlock(&srv->mu);
    return c;
}

static void call_free(st_call *c)
{
    st_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else
        srv->live_calls = c->live_next;
    if (c->live_next)
        c->live_next->live_prev = c->live_prev;
    pthread_mutex_unlock(&srv->mu);
    if (c->data_free)
        c->data_free(c->data);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    for (size_t i = 0; i < c->ntrailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    pthread_mutex_destroy(&c->mu);
    if (c->counted)
        atomic_fetch_sub(&srv->active, 1);
    free(c);
    atomic_fetch_sub(&srv->live, 1);
}

void st_call_ref(st_call *call)
{
    atomic_fetch_add(&call->refs, 1);
}

void st_call_unref(st_call *call)
{
    if (atomic_fetch_sub(&call->refs, 1) == 1)
        call_free(call);
}

const st_method *st_call_method(const st_call *call)
{
    return call->rm ? &call->rm->m : NULL;
}

int64_t st_call_deadline_ns(const st_call *call)
{
    return call->deadline_ns;
}

int64_t st_call_answer_deadline_ns(const st_call *call)
{
    if (call->deadline_ns == INT64_MAX)
        return INT64_MAX;
    int64_t margin = (call->deadline_ns - mono_ns()) / 10;
    if (margin < 6000000)
        margin = 6000000;
    if (margin > 25000000)
        margin = 25000000;
    return call->deadline_ns - margin;
}

bool st_call_expired(const st_call *call)
{
    return call->deadline_ns != INT64_MAX && mono_ns() >= call->deadline_ns;
}

void st_call_set_data(st_call *call, void *data, void (*free_fn)(void *))
{
    if (call->data_free)
        call->data_free(call->data);
    call->data = data;
    call->data_free = free_fn;
}

void *st_call_data(const st_call *call)
{
    return call->data;
}

/* Start a batch holding a reference for it; on failure the tag never completes. mu held. */
static bool start_batch(st_call *c, grpc_op *ops, size_t n, tag *t)
{
    st_call_ref(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e != GRPC_CALL_OK) {
        st_log(ST_LOG_ERROR, "grpc_batch_failed", "error=%s ops=%zu", grpc_call_error_to_string(e),
               n);
        /* Not the last reference: the caller holds one. */
        atomic_fetch_sub(&c->refs, 1);
        return false;
    }
    return true;
}

static void post_close_locked(st_call *c)
{
    if (c->close_posted)
        return;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->close_posted = start_batch(c, &op, 1, &c->t_close);
}

/* Send the status (and `msg`, if any, before it). mu held. Takes ownership of details. */
static void status_batch_locked(st_call *c, grpc_status_code code, grpc_slice details,
                                grpc_byte_buffer *msg)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    if (msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = msg;
        c->final_buf = msg;
    }
    c->status_details = details;
    c->has_status_details = true;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->ntrailers;
    ops[n].data.send_status_from_server.trailing_metadata = c->ntrailers ? c->trailers : NULL;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    if (!c->close_posted) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
        c->close_posted = true;
    }
    if (!start_batch(c, ops, n, &c->t_final)) {
        if (c->final_buf)
            grpc_byte_buffer_destroy(c->final_buf);
        c->final_buf = NULL;
        grpc_slice_unref(c->status_details);
        c->has_status_details = false;
    }
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(size);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_byte_buffer *copy_bytes(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_malloc(len);
    if (len)
        memcpy(GRPC_SLICE_START_PTR(s), data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

void st_call_add_trailer(st_call *call, const char *key, const char *value)
{
    pthread_mutex_lock(&call->mu);
    if (!call->finished && call->ntrailers < MAX_TRAILERS) {
        grpc_metadata *m = &call->trailers[call->ntrailers++];
        memset(m, 0, sizeof(*m));
        m->key = grpc_slice_from_copied_string(key);
        m->value = grpc_slice_from_copied_string(value);
    }
    pthread_mutex_unlock(&call->mu);
}

void st_call_reply(st_call *call, const ProtobufCMessage *msg)
{
    grpc_byte_buffer *bb = pack_message(msg);
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        grpc_byte_buffer_destroy(bb);
        st_log(ST_LOG_ERROR, "call_finished_twice", "op=reply");
        return;
    }
    call->finished = true;
    status_batch_locked(call, GRPC_STATUS_OK, grpc_empty_slice(), bb);
    pthread_mutex_unlock(&call->mu);
    st_call_unref(call); /* the handler's reference */
}

void st_call_fail(st_call *call, grpc_status_code code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    grpc_slice details = grpc_slice_from_copied_string(msg);
    pthread_mutex_lock(&call->mu);
    if (call->finished) {
        pthread_mutex_unlock(&call->mu);
        grpc_slice_unref(details);
        st_log(ST_LOG_ERROR, "call_finished_twice", "op=fail");
        return;
    }
    call->finished = true;
    if (call->send_in_flight) {
        /* One send at a time: the status goes out when the send completes (on_send). */
        call->fail_pending = true;
        call->pending_code = code;
        call->pending_details = details;
    } else {
        status_batch_locked(call, code, details, NULL);
    }
    pthread_mutex_unlock(&call->mu);
    st_call_unref(call);
}

void st_call_finish(st_call *call)
{
    st_call_fail(call, GRPC_STATUS_OK, "%s", "");
}

static void send_buffer(st_call *call, grpc_byte_buffer *bb, bool last,
                        void (*done)(st_call *, bool))
{
    pthread_mutex_lock(&call->mu);
    if (call->finished || call->send_in_flight) {
        pthread_mutex_unlock(&call->mu);
        grpc_byte_buffer_destroy(bb);
        st_log(ST_LOG_ERROR, "call_send_refused", "reason=%s",
               call->finished ? "finished" : "send_in_flight");
        return;
    }
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!call->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        call->initial_md_sent = true;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    if (last) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[n].data.send_status_from_server.trailing_metadata_count = call->ntrailers;
        ops[n++].data.send_status_from_server.trailing_metadata =
            call->ntrailers ? call->trailers : NULL;
        call->finished = true;
    }
    call->send_buf = bb;
    call->send_done = done;
    call->send_in_flight = true;
    if (!start_batch(call, ops, n, &call->t_send)) {
        call->send_in_flight = false;
        call->send_buf = NULL;
        grpc_byte_buffer_destroy(bb);
        if (last)
            status_batch_locked(call, GRPC_STATUS_INTERNAL,
                                grpc_slice_from_static_string("send failed"), NULL);
    }
    pthread_mutex_unlock(&call->mu);
    if (last)
        st_call_unref(call);
}

void st_call_send_bytes(st_call *call, const uint8_t *data, size_t len, bool last,
                        void (*done)(st_call *call, bool ok))
{
    send_buffer(call, copy_bytes(data, len), last, done);
}

void st_call_send(st_call *call, const ProtobufCMessage *msg, bool last,
                  void (*done)(st_call *call, bool ok))
{
    send_buffer(call, pack_message(msg), last, done);
}

void st_call_recv(st_call *call,
                  void (*done)(st_call *call, const uint8_t *data, size_t len, bool got))
{
    pthread_mutex_lock(&call->mu);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &call->recv_buf;
    call->recv_done = done;
    bool ok = start_batch(call, &op, 1, &call->t_recv);
    pthread_mutex_unlock(&call->mu);
    if (!ok)
        done(call, NULL, 0, false);
}

bool st_call_cancelled(const st_call *call)
{
    st_call *c = (st_call *)call;
    pthread_mutex_lock(&c->mu);
    bool v = c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return v;
}

void st_call_watch_cancel(st_call *call, void (*on_cancel)(st_call *call))
{
    pthread_mutex_lock(&call->mu);
    call->on_cancel = on_cancel;
    if (!call->finished)
        post_close_locked(call);
    pthread_mutex_unlock(&call->mu);
}

/* ---- completions ------------------------------------------------------------------------- */

static void on_send(void *ctx, bool ok)
{
    st_call *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->send_buf)
        grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
    c->send_in_flight = false;
    void (*done)(st_call *, bool) = c->send_done;
    c->send_done = NULL;
    if (c->fail_pending) {
        c->fail_pending = false;
        status_batch_locked(c, c->pending_code, c->pending_details, NULL);
    }
    pthread_mutex_unlock(&c->mu);
    if (done)
        done(c, ok);
    st_call_unref(c);
}

static void on_recv(void *ctx, bool ok)
{
    st_call *c = ctx;
    pthread_mutex_lock(&c->mu);
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    void (*done)(st_call *, const uint8_t *, size_t, bool) = c->recv_done;
    c->recv_done = NULL;
    pthread_mutex_unlock(&c->mu);
    if (ok && bb) {
        grpc_byte_buffer_reader r;
        bool too_big = c->srv->check_size && c->rm && !c->rm->m.peer &&
                       grpc_byte_buffer_length(bb) > c->srv->max_msg;
        if (!too_big && grpc_byte_buffer_reader_init(&r, bb)) {
            grpc_slice s = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            done(c, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), true);
            grpc_slice_unref(s);
        } else {
            done(c, NULL, 0, false);
        }
    } else {
        done(c, NULL, 0, false);
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    st_call_unref(c);
}

static void on_close(void *ctx, bool ok)
{
    st_call *c = ctx;
    pthread_mutex_lock(&c->mu);
    void (*hook)(st_call *) = NULL;
    if (!ok || c->close_cancelled) {
        c->cancelled = true;
        if (!c->finished)
            hook = c->on_cancel;
    }
    pthread_mutex_unlock(&c->mu);
    if (hook)
        hook(c);
    st_call_unref(c);
}

static void on_final(void *ctx, bool ok)
{
    st_call *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->final_buf)
        grpc_byte_buffer_destroy(c->final_buf);
    c->final_buf = NULL;
    if (c->has_status_details)
        grpc_slice_unref(c->status_details);
    c->has_status_details = false;
    pthread_mutex_unlock(&c->mu);
    st_call_unref(c);
}

static void post_request(st_server *srv, grpc_completion_queue *cq, const reg_method *rm)
{
    st_call *c = call_new(srv, cq, rm);
    if (!c) {
        st_log(ST_LOG_ERROR, "out_of_memory", "where=post_request");
        return;
    }
    grpc_call_error e;
    if (rm)
        e = grpc_server_request_registered_call(
            srv->server, rm->handle, &c->call, &c->deadline, &c->md,
            rm->m.kind == ST_METHOD_BIDI_STREAM ? NULL : &c->payload, cq, cq, &c->t_request);
    else
        e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, cq, cq,
                                     &c->t_request);
    if (e != GRPC_CALL_OK) {
        st_log(ST_LOG_ERROR, "grpc_request_call_failed", "error=%s", grpc_call_error_to_string(e));
        call_free(c);
    }
}

static void on_request(void *ctx, bool ok)
{
    st_call *c = ctx;
    st_server *srv = c->srv;
    if (!ok) {
        /* The server is shutting down: the request was never matched to a call. */
        call_free(c);
        return;
    }
    if (!atomic_load(&srv->shutting_down))
        post_request(srv, c->cq, c->rm);
    c->deadline_ns = deadline_to_ns(c->deadline);

    if (!c->rm) {
        char path[256];
        size_t n = GRPC_SLICE_LENGTH(c->details.method);
        if (n >= sizeof(path))
            n = sizeof(path) - 1;
        memcpy(path, GRPC_SLICE_START_PTR(c->details.method), n);
        path[n] = '\0';
        st_log(ST_LOG_DEBUG, "unknown_method", "method=%s", path);
        st_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "method %s is not served by strata-node", path);
        return;
    }
    const st_method *m = &c->rm->m;
    st_log(ST_LOG_DEBUG, "call", "method=%s deadline_ms=%lld", m->path,
           c->deadline_ns == INT64_MAX ? -1LL
                                       : (long long)((c->deadline_ns - mono_ns()) / 1000000));
    if (m->counted) {
        c->counted = true;
        unsigned n = atomic_fetch_add(&srv->active, 1) + 1;
        if (n > srv->max_calls) {
            st_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                         "%s: the node already has %u calls in progress "
                         "(--max-concurrent-calls); retry later",
                         m->path, srv->max_calls);
            return;
        }
    }
    if (st_call_expired(c)) {
        st_call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED,
                     "%s: the deadline had passed when the call arrived", m->path);
        return;
    }
    if (m->counted && atomic_load(&srv->shutting_down)) {
        st_call_fail(c, GRPC_STATUS_UNAVAILABLE, "%s: the node is shutting down", m->path);
        return;
    }
    if (m->kind != ST_METHOD_UNARY) {
        pthread_mutex_lock(&c->mu);
        post_close_locked(c);
        pthread_mutex_unlock(&c->mu);
    }
    if (srv->check_size && !m->peer && c->payload &&
        grpc_byte_buffer_length(c->payload) > srv->max_msg) {
        st_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                     "%s: the request is %zu bytes, over the node's limit of %zu "
                     "(--max-message-bytes)",
                     m->path, grpc_byte_buffer_length(c->payload), srv->max_msg);
        return;
    }
    grpc_slice s = grpc_empty_slice();
    bool has = false;
    if (c->payload) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, c->payload)) {
            s = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            has = true;
        }
        grpc_byte_buffer_destroy(c->payload);
        c->payload = NULL;
    }
    m->fn(m->svc, c, has ? GRPC_SLICE_START_PTR(s) : NULL, has ? GRPC_SLICE_LENGTH(s) : 0, has);
    grpc_slice_unref(s);
}

/* ---- the server -------------------------------------------------------------------------- */

static void on_shutdown(void *ctx, bool ok)
{
    st_server *srv = ctx;
    pthread_mutex_lock(&srv->mu);
    srv->shutdown_notified = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static void *worker_main(void *arg)
{
    grpc_completion_queue *cq = arg;
    pthread_setname_np(pthread_self(), "st-rpc");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tag *t = ev.tag;
            t->fn(t->ctx, ev.success != 0);
        }
    }
    return NULL;
}

st_status st_server_create(const st_server_options *o, st_server **out)
{
    *out = NULL;
    if (o->workers < 1)
        return st_error(ST_INVALID_ARGUMENT, "server: at least one worker is needed");
    st_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return st_error(ST_NO_MEMORY, "server: out of memory");
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    srv->shutdown_tag = (tag){on_shutdown, srv};
    srv->nq = o->workers;
    if (strlen(o->listen) >= sizeof(srv->listen)) {
        free(srv);
        return st_error(ST_INVALID_ARGUMENT, "server: listen address too long");
    }
    snprintf(srv->listen, sizeof(srv->listen), "%s", o->listen);
    srv->max_calls = o->max_concurrent_calls ? o->max_concurrent_calls : UINT32_MAX;
    srv->requests_per_method = o->requests_per_method ? o->requests_per_method : 16;
    atomic_init(&srv->active, 0);
    atomic_init(&srv->live, 0);
    atomic_init(&srv->shutting_down, false);

    grpc_arg args[4];
    memset(args, 0, sizeof(args));
    srv->max_msg = o->max_message_bytes;
    srv->check_size = o->max_peer_message_bytes > o->max_message_bytes;
    size_t limit = srv->check_size ? o->max_peer_message_bytes : o->max_message_bytes;
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = limit > INT_MAX ? INT_MAX : (int)limit;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    /* Without this a second process binds the same port silently (SO_REUSEPORT). */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_MAX_METADATA_SIZE;
    args[3].value.integer = 16 * 1024;
    grpc_channel_args cargs = {sizeof(args) / sizeof(args[0]), args};
    srv->server = grpc_server_create(&cargs, NULL);

    srv->cqs = calloc(srv->nq, sizeof(*srv->cqs));
    srv->threads = calloc(srv->nq, sizeof(*srv->threads));
    if (!srv->server || !srv->cqs || !srv->threads)
        goto fail;
    for (uint32_t i = 0; i < srv->nq; i++) {
        srv->cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->cqs[i], NULL);
    }
    *out = srv;
    return ST_OK;

fail:
    st_server_destroy(srv);
    return st_error(ST_NO_MEMORY, "server: out of memory");
}

st_status st_server_add_method(st_server *srv, const st_method *m)
{
    if (srv->started)
        return st_error(ST_INVALID_ARGUMENT, "server: %s added after start", m->path);
    if (srv->nmethods == srv->cap) {
        size_t cap = srv->cap ? srv->cap * 2 : 16;
        reg_method *p = realloc(srv->methods, cap * sizeof(*p));
        if (!p)
            return st_error(ST_NO_MEMORY, "server: out of memory");
        srv->methods = p;
        srv->cap = cap;
    }
    reg_method *rm = &srv->methods[srv->nmethods];
    rm->m = *m;
    rm->handle = grpc_server_register_method(srv->server, m->path, NULL,
                                             m->kind == ST_METHOD_BIDI_STREAM
                                                 ? GRPC_SRM_PAYLOAD_NONE
                                                 : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                             0);
    if (!rm->handle)
        return st_error(ST_INVALID_ARGUMENT, "server: cannot register %s (twice?)", m->path);
    srv->nmethods++;
    return ST_OK;
}

st_status st_server_start(st_server *srv, int *port)
{
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int p = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    grpc_server_credentials_release(creds);
    if (p == 0)
        return st_error(ST_BUSY,
                        "cannot listen on %s: the port is in use by another process, or the "
                        "host is not an address of this machine",
                        srv->listen);
    grpc_server_start(srv->server);
    srv->started = true;
    for (uint32_t i = 0; i < srv->nq; i++) {
        for (size_t k = 0; k < srv->nmethods; k++)
            for (uint32_t j = 0; j < srv->requests_per_method; j++)
                post_request(srv, srv->cqs[i], &srv->methods[k]);
        post_request(srv, srv->cqs[i], NULL);
    }
    for (uint32_t i = 0; i < srv->nq; i++) {
        if (pthread_create(&srv->threads[i], NULL, worker_main, srv->cqs[i]) != 0) {
            /* Threads already running keep serving; shutdown joins them. */
            return st_error(ST_NO_MEMORY, "server: cannot start worker thread %u", i);
        }
        srv->threads_started++;
    }
    *port = p;
    return ST_OK;
}

void st_server_begin_shutdown(st_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    if (srv->started && !srv->shutdown_begun) {
        srv->shutdown_begun = true;
        atomic_store(&srv->shutting_down, true);
        grpc_server_shutdown_and_notify(srv->server, srv->cqs[0], &srv->shutdown_tag);
    }
    pthread_mutex_unlock(&srv->mu);
}

bool st_server_shutting_down(const st_server *srv)
{
    return atomic_load(&srv->shutting_down);
}

bool st_server_wait_calls(st_server *srv, uint32_t timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&srv->mu);
    while (srv->shutdown_begun && !srv->shutdown_notified) {
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0)
            break;
    }
    bool done = srv->shutdown_notified;
    pthread_mutex_unlock(&srv->mu);
    return done;
}

void st_server_cancel_all(st_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    bool begun = srv->shutdown_begun;
    pthread_mutex_unlock(&srv->mu);
    if (begun)
        grpc_server_cancel_all_calls(srv->server);
}

bool st_server_serves(const st_server *srv, const char *service)
{
    size_t n = strlen(service);
    for (size_t i = 0; i < srv->nmethods; i++) {
        const char *p = srv->methods[i].m.path;
        if (p[0] == '/' && strncmp(p + 1, service, n) == 0 && p[1 + n] == '/')
            return true;
    }
    return false;
}

uint32_t st_server_active_calls(const st_server *srv)
{
    return atomic_load(&((st_server *)srv)->active);
}

/* Log the calls that keep shutdown waiting (those that have arrived, not mere requests). */
static void report_live_calls(st_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    int shown = 0;
    for (st_call *c = srv->live_calls; c && shown < 8; c = c->live_next) {
        if (!c->call)
            continue;
        shown++;
        st_log(ST_LOG_WARN, "shutdown_waiting_call",
               "method=%s refs=%d finished=%d send_in_flight=%d close_posted=%d cancelled=%d",
               c->rm ? c->rm->m.path : "(unknown)", atomic_load(&c->refs), c->finished,
               c->send_in_flight, c->close_posted, c->cancelled);
    }
    pthread_mutex_unlock(&srv->mu);
    st_log(ST_LOG_WARN, "shutdown_waiting", "live_calls=%d", atomic_load(&srv->live));
}

void st_server_destroy(st_server *srv)
{
    if (!srv)
        return;
    if (srv->started) {
        st_server_begin_shutdown(srv);
        if (!st_server_wait_calls(srv, 100)) {
            st_server_cancel_all(srv);
            while (!st_server_wait_calls(srv, 1000))
                report_live_calls(srv);
        }
    }
    if (srv->server)
        grpc_server_destroy(srv->server);
    for (uint32_t i = 0; srv->cqs && i < srv->nq; i++)
        if (srv->cqs[i])
            grpc_completion_queue_shutdown(srv->cqs[i]);
    for (uint32_t i = 0; i < srv->threads_started; i++)
        pthread_join(srv->threads[i], NULL);
    /* Queues without a worker (none started, or start failed part way): drain here. */
    for (uint32_t i = srv->threads_started; srv->cqs && i < srv->nq; i++)
        if (srv->cqs[i])
            worker_main(srv->cqs[i]);
    for (uint32_t i = 0; srv->cqs && i < srv->nq; i++)
        if (srv->cqs[i])
            grpc_completion_queue_destroy(srv->cqs[i]);
    int live = atomic_load(&srv->live);
    if (live != 0)
        st_log(ST_LOG_WARN, "calls_leaked", "count=%d", live);
    free(srv->cqs);
    free(srv->threads);
    free(srv->methods);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
