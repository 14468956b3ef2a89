/* rpc_client.c - blocking unary and server-streaming calls over the gRPC C core. */
#include "node/rpc_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct st_rpc_client {
    grpc_channel *ch;
};

struct st_rpc_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    bool status_done;
    bool failed; /* the call never started */
};

/* Tags: distinct addresses, nothing more. */
static char tag_start, tag_status, tag_msg;

void st_rpc_init(void)
{
    setenv("GRPC_DNS_RESOLVER", "native", 0);
    grpc_init();
}

char *st_rpc_target(const char *addr)
{
    size_t n = strlen(addr) + 8;
    char *t = malloc(n);
    if (!t)
        return NULL;
    /* A numeric IPv4 host and a port: skip name resolution altogether. */
    unsigned a, b, c, d, port;
    char extra;
    if (sscanf(addr, "%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &extra) == 5)
        snprintf(t, n, "ipv4:%s", addr);
    else
        snprintf(t, n, "%s", addr);
    return t;
}

st_rpc_client *st_rpc_client_create(const char *addr, size_t max_recv_bytes)
{
    st_rpc_client *c = calloc(1, sizeof(*c));
    char *target = st_rpc_target(addr);
    if (!c || !target) {
        free(c);
        free(target);
        return NULL;
    }
    grpc_arg args[1];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max_recv_bytes ? (int)max_recv_bytes : -1;
    grpc_channel_args cargs = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    free(target);
    if (!c->ch) {
        free(c);
        return NULL;
    }
    return c;
}

void st_rpc_client_destroy(st_rpc_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->ch);
    free(c);
}

void st_rpc_result_free(st_rpc_result *r)
{
    free(r->details);
    free(r->resp);
    for (size_t i = 0; i < r->ntrailers; i++) {
        free(r->trailer_keys[i]);
        free(r->trailer_values[i]);
    }
    free(r->trailer_keys);
    free(r->trailer_values);
    memset(r, 0, sizeof(*r));
}

const char *st_rpc_result_trailer(const st_rpc_result *r, const char *key)
{
    for (size_t i = 0; i < r->ntrailers; i++)
        if (r->trailer_keys[i] && strcmp(r->trailer_keys[i], key) == 0)
            return r->trailer_values[i];
    return NULL;
}

static void drain_and_destroy(grpc_completion_queue *cq);

bool st_rpc_client_ready(st_rpc_client *c, int64_t timeout_ms)
{
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->ch, 1);
    bool ok = false;
    for (;;) {
        if (st == GRPC_CHANNEL_READY) {
            ok = true;
            break;
        }
        if (st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN)
            break;
        /* IDLE or CONNECTING: wait for the next change. */
        grpc_channel_watch_connectivity_state(c->ch, st, deadline, cq, &tag_start);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success)
            break; /* the deadline passed */
        st = grpc_channel_check_connectivity_state(c->ch, 1);
    }
    drain_and_destroy(cq);
    return ok;
}

static char *slice_to_str(grpc_slice s);

/* Copy the trailing metadata into res (best effort: nothing on allocation failure). */
static void copy_trailers(const grpc_metadata_array *md, st_rpc_result *res)
{
    if (md->count == 0)
        return;
    res->trailer_keys = calloc(md->count, sizeof(char *));
    res->trailer_values = calloc(md->count, sizeof(char *));
    if (!res->trailer_keys || !res->trailer_values)
        return;
    for (size_t i = 0; i < md->count; i++) {
        res->trailer_keys[i] = slice_to_str(md->metadata[i].key);
        res->trailer_values[i] = slice_to_str(md->metadata[i].value);
        res->ntrailers++;
    }
}

static gpr_timespec deadline_in(int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    if (timeout_ms == 0) /* already past, whatever rounding gRPC applies to grpc-timeout */
        return gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(1000, GPR_TIMESPAN));
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static char *slice_to_str(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, GRPC_SLICE_START_PTR(s), n);
        p[n] = '\0';
    }
    return p;
}

static bool buffer_bytes(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return false;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *len = GRPC_SLICE_LENGTH(s);
    *out = malloc(*len ? *len : 1);
    if (*out && *len)
        memcpy(*out, GRPC_SLICE_START_PTR(s), *len);
    grpc_slice_unref(s);
    return *out != NULL;
}

/* Wait on cq for `want`; other tags seen meanwhile are recorded in *status_done. */
static bool wait_tag(grpc_completion_queue *cq, void *want, bool *status_done)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            return false;
        if (ev.tag == &tag_status && status_done)
            *status_done = true;
        if (ev.tag == want)
            return ev.success != 0;
    }
}

static void drain_and_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

static grpc_byte_buffer *make_buffer(const uint8_t *req, size_t len)
{
    grpc_slice s = grpc_slice_malloc(len);
    if (len)
        memcpy(GRPC_SLICE_START_PTR(s), req, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

void st_rpc_unary(st_rpc_client *c, const char *method, const uint8_t *req, size_t len,
                  bool send_req, int64_t timeout_ms, st_rpc_result *res)
{
    memset(res, 0, sizeof(*res));
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
                                               deadline_in(timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_byte_buffer *send = send_req ? make_buffer(req, len) : NULL;
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_slice details = grpc_empty_slice();
    grpc_status_code code = GRPC_STATUS_UNKNOWN;

    grpc_op ops[6];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (send) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = send;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &recv;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[n].data.recv_status_on_client.status = &code;
    ops[n++].data.recv_status_on_client.status_details = &details;
    grpc_call_error e = grpc_call_start_batch(call, ops, n, &tag_start, NULL);
    if (e == GRPC_CALL_OK) {
        wait_tag(cq, &tag_start, NULL);
        res->code = code;
        res->details = slice_to_str(details);
        copy_trailers(&tmd, res);
        if (recv) {
            res->has_resp = buffer_bytes(recv, &res->resp, &res->resp_len);
            grpc_byte_buffer_destroy(recv);
        }
    } else {
        res->code = GRPC_STATUS_INTERNAL;
        res->details = strdup(grpc_call_error_to_string(e));
    }
    if (send)
        grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    drain_and_destroy(cq);
}

st_rpc_stream *st_rpc_stream_open(st_rpc_client *c, const char *method, const uint8_t *req,
                                  size_t len, int64_t timeout_ms)
{
    st_rpc_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       deadline_in(timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;

    grpc_byte_buffer *send = make_buffer(req, len);
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    if (grpc_call_start_batch(s->call, ops, 4, &tag_start, NULL) != GRPC_CALL_OK)
        s->failed = true;
    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    st.data.recv_status_on_client.status = &s->code;
    st.data.recv_status_on_client.status_details = &s->details;
    if (!s->failed && grpc_call_start_batch(s->call, &st, 1, &tag_status, NULL) != GRPC_CALL_OK)
        s->failed = true;
    if (!s->failed)
        wait_tag(s->cq, &tag_start, &s->status_done);
    else
        s->status_done = true;
    grpc_byte_buffer_destroy(send);
    return s;
}

bool st_rpc_stream_next(st_rpc_stream *s, uint8_t **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (s->failed)
        return false;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (grpc_call_start_batch(s->call, &op, 1, &tag_msg, NULL) != GRPC_CALL_OK)
        return false;
    wait_tag(s->cq, &tag_msg, &s->status_done);
    if (!bb)
        return false;
    bool ok = buffer_bytes(bb, msg, len);
    grpc_byte_buffer_destroy(bb);
    return ok;
}

void st_rpc_stream_cancel(st_rpc_stream *s)
{
    grpc_call_cancel(s->call, NULL);
}

void st_rpc_stream_close(st_rpc_stream *s, st_rpc_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!s->status_done)
        wait_tag(s->cq, &tag_status, &s->status_done);
    res->code = s->failed ? GRPC_STATUS_INTERNAL : s->code;
    res->details = slice_to_str(s->details);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_call_unref(s->call);
    drain_and_destroy(s->cq);
    free(s);
}
