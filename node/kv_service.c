/* kv_service.c - strata.v1.KV handlers. */
#include "node/kv_service.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "node/log.h"
#include "node/writer.h"
#include "strata/v1/kv.pb-c.h"

/* A scan message is cut once it holds this many bytes or pairs (a single pair may be larger). */
#define SCAN_MSG_BYTES (64 * 1024)
#define SCAN_MSG_PAIRS 256

typedef struct kv_read kv_read;

struct st_kv_service {
    st_db *db;
    st_server *srv;
    st_kv_options o;
    st_writer *writer;

    pthread_mutex_t park_mu;
    kv_read *parked; /* guarded by park_mu: reads waiting for min_seq */
    bool closing;    /* guarded by park_mu */
};

enum write_kind { W_PUT, W_DELETE, W_WRITE };

/* One write call on its way through the writer. */
typedef struct kv_write {
    st_write_req req;
    st_kv_service *kv;
    st_call *call;
    enum write_kind kind;
    ProtobufCMessage *msg; /* the unpacked request, owned */
} kv_write;

/* Per-call state of a Get or Scan, owned by the call (st_call_set_data). */
struct kv_read {
    st_kv_service *kv;
    st_call *call;
    bool is_scan;
    Strata__V1__GetRequest *get;
    Strata__V1__ScanRequest *scan;
    uint64_t min_seq;
    /* Parking: guarded by kv->park_mu. */
    kv_read *next, *prev;
    bool parked;
    /* Scan progress: used by one thread at a time (the one driving the call). */
    st_iter *it;
    uint64_t seq;
    uint64_t sent;
    st_buf buf;
};

grpc_status_code st_kv_grpc_code(st_status s)
{
    switch (s) {
    case ST_OK:
        return GRPC_STATUS_OK;
    case ST_NOT_FOUND:
        return GRPC_STATUS_NOT_FOUND;
    case ST_INVALID_ARGUMENT:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case ST_BUSY:
    case ST_NO_SPACE:
    case ST_NO_MEMORY:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ST_SHUTDOWN:
        return GRPC_STATUS_UNAVAILABLE;
    case ST_TIMEOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

/* Finish `call` with the gRPC status for engine status `s`, with a message saying what to do. */
static void fail_engine(st_call *call, const char *what, st_status s, const char *msg)
{
    const char *hint = "";
    if (s == ST_BUSY)
        hint = " (writes are stalled behind flushes and compactions; retry later)";
    else if (s == ST_NO_SPACE)
        hint = " (the node's disk is full)";
    else if (s == ST_CORRUPTION || s == ST_IO_ERROR)
        hint = " (see the node's log; the database may need attention)";
    st_call_fail(call, st_kv_grpc_code(s), "%s: %s: %s%s", what, st_status_name(s),
                 msg && *msg ? msg : "(no detail)", hint);
}

static st_slice bin(ProtobufCBinaryData b)
{
    return st_slice_make(b.data, b.len);
}

/* NULL if the key is acceptable, else the reason (in buf). */
static const char *check_key(const st_kv_service *kv, ProtobufCBinaryData key, char *buf, size_t n)
{
    if (key.len == 0)
        return "key is empty";
    if (key.len > kv->o.max_key_bytes) {
        snprintf(buf, n, "key is %zu bytes, over the node's limit of %zu (--max-key-bytes)",
                 key.len, kv->o.max_key_bytes);
        return buf;
    }
    return NULL;
}

static const char *check_value(const st_kv_service *kv, ProtobufCBinaryData v, char *buf, size_t n)
{
    if (v.len > kv->o.max_value_bytes) {
        snprintf(buf, n, "value is %zu bytes, over the node's limit of %zu (--max-value-bytes)",
                 v.len, kv->o.max_value_bytes);
        return buf;
    }
    return NULL;
}

/* Unpack a request or finish the call with INVALID_ARGUMENT; NULL then. */
static ProtobufCMessage *unpack_or_fail(st_call *call, const ProtobufCMessageDescriptor *d,
                                        const uint8_t *req, size_t len, bool has_req)
{
    if (!has_req) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "%s: no request message was sent (expected a %s)", st_call_method(call)->path,
                     d->name);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, req);
    if (!m)
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "%s: the request's %zu bytes do not parse as %s", st_call_method(call)->path,
                     len, d->name);
    return m;
}

/* ---- writes ------------------------------------------------------------------------------ */

static st_status encode_write(st_write_req *r, st_batch *b)
{
    kv_write *w = (kv_write *)r;
    st_status s = ST_OK;
    switch (w->kind) {
    case W_PUT: {
        Strata__V1__PutRequest *p = (Strata__V1__PutRequest *)w->msg;
        s = st_batch_put(b, bin(p->key), bin(p->value));
        break;
    }
    case W_DELETE: {
        Strata__V1__DeleteRequest *d = (Strata__V1__DeleteRequest *)w->msg;
        s = st_batch_delete(b, bin(d->key));
        break;
    }
    case W_WRITE: {
        Strata__V1__WriteRequest *wr = (Strata__V1__WriteRequest *)w->msg;
        for (size_t i = 0; i < wr->n_mutations && s == ST_OK; i++) {
            Strata__V1__Mutation *m = wr->mutations[i];
            if (m->op_case == STRATA__V1__MUTATION__OP_PUT)
                s = st_batch_put(b, bin(m->put->key), bin(m->put->value));
            else
                s = st_batch_delete(b, bin(m->delete_->key));
        }
        break;
    }
    }
    return s;
}

/* The level a cluster write waits for. */
static st_ack_level ack_of(const kv_write *w)
{
    int ack = 0;
    if (w->kind == W_PUT)
        ack = (int)((Strata__V1__PutRequest *)w->msg)->ack;
    else if (w->kind == W_DELETE)
        ack = (int)((Strata__V1__DeleteRequest *)w->msg)->ack;
    else
        ack = (int)((Strata__V1__WriteRequest *)w->msg)->ack;
    return ack >= ST_ACK_LEADER && ack <= ST_ACK_ALL ? (st_ack_level)ack : w->kv->o.default_ack;
}

/* A write (or linearizable read) refused: this node does not lead (or is handing leadership
   over). `what` says what goes to the leader. */
static void fail_not_leader(st_kv_service *kv, st_call *call, const char *msg, const char *what)
{
    st_replica_info *info = malloc(sizeof(*info));
    if (info)
        st_replica_info_get(kv->o.replica, info);
    if (info && info->role == ST_ROLE_LEADER) {
        /* Still leading but refusing writes: a hand-over is under way. */
        st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "%s: %s", st_call_method(call)->path, msg);
    } else {
        char addr[256] = "";
        st_replica_leader_addr(kv->o.replica, addr, sizeof(addr));
        if (addr[0])
            st_call_add_trailer(call, "strata-leader", addr);
        st_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "%s: %s (%s go to the leader)",
                     st_call_method(call)->path, msg, what);
    }
    free(info);
}

/* Answer a write call and free w. `appended`: the write is in the log (cluster mode). */
static void finish_write(kv_write *w, st_status s, const char *msg, uint64_t seq, bool appended)
{
    st_call *call = w->call;
    const char *path = st_call_method(call)->path;
    if (s != ST_OK) {
        if (s == ST_TIMEOUT)
            st_call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED, "%s: %s", path, msg);
        else if (s == ST_SHUTDOWN && appended)
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE,
                         "%s: the node is shutting down; the write may or may not have been "
                         "committed",
                         path);
        else if (s == ST_SHUTDOWN)
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "%s: the node is shutting down", path);
        else if (s == ST_NOT_LEADER && appended)
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "%s: %s", path, msg);
        else if (s == ST_NOT_LEADER && w->kv->o.replica)
            fail_not_leader(w->kv, call, msg, "writes");
        else
            fail_engine(call, "write failed", s, msg);
    } else if (w->kind == W_PUT) {
        Strata__V1__PutResponse resp = STRATA__V1__PUT_RESPONSE__INIT;
        resp.seq = seq;
        st_call_reply(call, &resp.base);
    } else if (w->kind == W_DELETE) {
        Strata__V1__DeleteResponse resp = STRATA__V1__DELETE_RESPONSE__INIT;
        resp.seq = seq;
        st_call_reply(call, &resp.base);
    } else {
        Strata__V1__WriteResponse resp = STRATA__V1__WRITE_RESPONSE__INIT;
        resp.seq = seq;
        st_call_reply(call, &resp.base);
    }
    protobuf_c_message_free_unpacked(w->msg, NULL);
    free(w);
}

/* Cluster mode: the write reached its level, or failed to (a replica thread, or the writer's). */
static void on_acked(void *arg, st_status s, const char *msg, uint64_t seq)
{
    finish_write(arg, s, msg, seq, true);
}

static void complete_write(st_write_req *r, st_status s, const char *msg, uint64_t seq)
{
    kv_write *w = (kv_write *)r;
    if (s == ST_OK && w->kv->o.replica) {
        st_replica_wait(w->kv->o.replica, seq, ack_of(w), w->req.deadline_ns, on_acked, w);
        return;
    }
    finish_write(w, s, msg, seq, false);
}

/* Cluster mode: the writer's group goes to the replicated log. */
static st_status cluster_append(void *ctx, const st_batch *b, uint64_t *last_seq)
{
    st_kv_service *kv = ctx;
    if (st_batch_count(b) > 0) {
        st_status s = st_replica_append(kv->o.replica, b, last_seq);
        if (s == ST_OK && kv->o.appended)
            kv->o.appended(kv->o.appended_ctx);
        return s;
    }
    /* Only empty Write calls: nothing to append, but they are still writes (leader only),
       answered with the sequence applied now. */
    st_replica_info *info = malloc(sizeof(*info));
    if (!info)
        return st_error(ST_NO_MEMORY, "out of memory");
    st_replica_info_get(kv->o.replica, info);
    st_status s = ST_OK;
    if (info->role == ST_ROLE_LEADER)
        *last_seq = info->applied_seq;
    else if (info->leader_id)
        s = st_error(ST_NOT_LEADER, "this node is not the leader; the leader is node %u at %s",
                     info->leader_id, info->leader_addr);
    else
        s = st_error(ST_NOT_LEADER, "this node is not the leader and no leader is known yet");
    free(info);
    return s;
}

/* Cluster mode: an ack level this node does not know is a bad request. Standalone nodes
   ignore the field (every level is ACK_LEADER there). */
static bool ack_ok(st_kv_service *kv, st_call *call, int ack, ProtobufCMessage *msg)
{
    if (!kv->o.replica || (ack >= 0 && ack <= ST_ACK_ALL))
        return true;
    st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: ack %d is not an AckLevel",
                 st_call_method(call)->path, ack);
    protobuf_c_message_free_unpacked(msg, NULL);
    return false;
}

static void submit_write(st_kv_service *kv, st_call *call, enum write_kind kind,
                         ProtobufCMessage *msg, uint32_t ops, size_t bytes)
{
    kv_write *w = calloc(1, sizeof(*w));
    if (!w) {
        protobuf_c_message_free_unpacked(msg, NULL);
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "the node is out of memory");
        return;
    }
    w->kv = kv;
    w->call = call;
    w->kind = kind;
    w->msg = msg;
    w->req.ops = ops;
    w->req.bytes = bytes;
    w->req.deadline_ns = st_call_answer_deadline_ns(call);
    w->req.encode = encode_write;
    w->req.complete = complete_write;
    st_writer_submit(kv->writer, &w->req);
}

static void handle_put(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_kv_service *kv = svc;
    Strata__V1__PutRequest *p = (Strata__V1__PutRequest *)unpack_or_fail(
        call, &strata__v1__put_request__descriptor, req, len, has_req);
    if (!p)
        return;
    char buf[160];
    const char *why = check_key(kv, p->key, buf, sizeof(buf));
    if (!why)
        why = check_value(kv, p->value, buf, sizeof(buf));
    if (why) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "Put: %s", why);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        return;
    }
    if (ack_ok(kv, call, (int)p->ack, &p->base))
        submit_write(kv, call, W_PUT, &p->base, 1, p->key.len + p->value.len);
}

static void handle_delete(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_kv_service *kv = svc;
    Strata__V1__DeleteRequest *d = (Strata__V1__DeleteRequest *)unpack_or_fail(
        call, &strata__v1__delete_request__descriptor, req, len, has_req);
    if (!d)
        return;
    char buf[160];
    const char *why = check_key(kv, d->key, buf, sizeof(buf));
    if (why) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "Delete: %s", why);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        return;
    }
    if (ack_ok(kv, call, (int)d->ack, &d->base))
        submit_write(kv, call, W_DELETE, &d->base, 1, d->key.len);
}

static void handle_write(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_kv_service *kv = svc;
    Strata__V1__WriteRequest *wr = (Strata__V1__WriteRequest *)unpack_or_fail(
        call, &strata__v1__write_request__descriptor, req, len, has_req);
    if (!wr)
        return;
    size_t bytes = 0;
    char buf[160];
    for (size_t i = 0; i < wr->n_mutations; i++) {
        Strata__V1__Mutation *m = wr->mutations[i];
        const char *why = NULL;
        if (m->op_case == STRATA__V1__MUTATION__OP_PUT) {
            why = check_key(kv, m->put->key, buf, sizeof(buf));
            if (!why)
                why = check_value(kv, m->put->value, buf, sizeof(buf));
            bytes += m->put->key.len + m->put->value.len;
        } else if (m->op_case == STRATA__V1__MUTATION__OP_DELETE) {
            why = check_key(kv, m->delete_->key, buf, sizeof(buf));
            bytes += m->delete_->key.len;
        } else {
            why = "neither put nor delete is set";
        }
        if (why) {
            st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                         "Write: mutation %zu of %zu: %s (nothing was written)", i, wr->n_mutations,
                         why);
            protobuf_c_message_free_unpacked(&wr->base, NULL);
            return;
        }
    }
    if (wr->n_mutations > UINT32_MAX) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "Write: too many mutations");
        protobuf_c_message_free_unpacked(&wr->base, NULL);
        return;
    }
    if (ack_ok(kv, call, (int)wr->ack, &wr->base))
        submit_write(kv, call, W_WRITE, &wr->base, (uint32_t)wr->n_mutations, bytes);
}

/* ---- reads ------------------------------------------------------------------------------- */

static void read_free(void *p)
{
    kv_read *r = p;
    if (!r)
        return;
    st_iter_destroy(r->it);
    if (r->get)
        strata__v1__get_request__free_unpacked(r->get, NULL);
    if (r->scan)
        strata__v1__scan_request__free_unpacked(r->scan, NULL);
    st_buf_free(&r->buf);
    free(r);
}

static uint64_t applied_seq(st_kv_service *kv)
{
    uint64_t last, term, applied;
    st_db_log_state(kv->db, &last, &term, &applied);
    return applied;
}

static void do_get(kv_read *r)
{
    st_call *call = r->call;
    uint8_t *value = NULL;
    size_t vlen = 0;
    uint64_t seq = 0;
    st_status s = st_db_get(r->kv->db, NULL, bin(r->get->key), &value, &vlen, &seq);
    if (s == ST_OK) {
        Strata__V1__GetResponse resp = STRATA__V1__GET_RESPONSE__INIT;
        resp.value.data = value;
        resp.value.len = vlen;
        resp.seq = seq;
        st_call_reply(call, &resp.base);
    } else if (s == ST_NOT_FOUND) {
        st_call_fail(call, GRPC_STATUS_NOT_FOUND, "Get: key not found (read at seq %llu)",
                     (unsigned long long)seq);
    } else {
        fail_engine(call, "Get failed", s, st_errmsg());
    }
    st_free(value);
}

/* Append one KeyValue as field 1 of ScanResponse (the wire format of kv.proto). */
static bool put_pair(st_buf *b, st_slice key, st_slice value)
{
    size_t inner = 1 + (size_t)st_varint_length(key.len) + key.len;
    if (value.len)
        inner += 1 + (size_t)st_varint_length(value.len) + value.len;
    bool ok = st_buf_put_varint32(b, (1 << 3) | 2) && st_buf_put_varint64(b, inner) &&
              st_buf_put_varint32(b, (1 << 3) | 2) && st_buf_put_lp(b, key.data, key.len);
    if (ok && value.len)
        ok = st_buf_put_varint32(b, (2 << 3) | 2) && st_buf_put_lp(b, value.data, value.len);
    return ok;
}

static void scan_send_next(kv_read *r);

static void on_scan_sent(st_call *call, bool ok)
{
    kv_read *r = st_call_data(call);
    if (!ok) {
        /* The client cancelled or its deadline passed: release the snapshot now. */
        st_iter_destroy(r->it);
        r->it = NULL;
        st_call_fail(call, GRPC_STATUS_CANCELLED, "Scan: cancelled");
        return;
    }
    scan_send_next(r);
}

/* Fill one ScanResponse from the iterator and send it; the last one carries the status. */
static void scan_send_next(kv_read *r)
{
    st_call *call = r->call;
    Strata__V1__ScanRequest *q = r->scan;
    st_buf *b = &r->buf;
    st_buf_clear(b);
    bool done = r->it == NULL;
    size_t pairs = 0;
    bool ok = true;
    while (!done && ok && pairs < SCAN_MSG_PAIRS && b->len < SCAN_MSG_BYTES) {
        if (q->limit && r->sent >= q->limit) {
            done = true;
            break;
        }
        if (!st_iter_valid(r->it)) {
            st_status s = st_iter_status(r->it);
            if (s != ST_OK) {
                fail_engine(call, "Scan failed", s, st_errmsg());
                return;
            }
            done = true;
            break;
        }
        ok = put_pair(b, st_iter_key(r->it), st_iter_value(r->it));
        pairs++;
        r->sent++;
        if (q->reverse)
            st_iter_prev(r->it);
        else
            st_iter_next(r->it);
    }
    if (!done && q->limit && r->sent >= q->limit)
        done = true;
    if (!done && !st_iter_valid(r->it) && st_iter_status(r->it) == ST_OK)
        done = true;
    if (r->seq && ok)
        ok = st_buf_put_varint32(b, (2 << 3) | 0) && st_buf_put_varint64(b, r->seq);
    if (!ok) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "Scan: the node is out of memory");
        return;
    }
    if (done) {
        st_iter_destroy(r->it);
        r->it = NULL;
    }
    /* An empty scan still sends one message: it carries the sequence read at. */
    st_call_send_bytes(call, b->data, b->len, done, done ? NULL : on_scan_sent);
}

static void do_scan(kv_read *r)
{
    Strata__V1__ScanRequest *q = r->scan;
    st_slice start = bin(q->start), end = bin(q->end);
    if (start.len && end.len && st_slice_cmp(start, end) >= 0) {
        /* An empty range: nothing to read, but still a consistent answer. */
        r->seq = applied_seq(r->kv);
        scan_send_next(r);
        return;
    }
    st_status s = st_db_iter(r->kv->db, NULL, start, end, &r->it);
    if (s != ST_OK) {
        fail_engine(r->call, "Scan failed", s, st_errmsg());
        return;
    }
    r->seq = st_iter_seq(r->it);
    if (q->reverse)
        st_iter_last(r->it);
    else
        st_iter_first(r->it);
    scan_send_next(r);
}

static void run_read(kv_read *r)
{
    if (r->is_scan)
        do_scan(r);
    else
        do_get(r);
}

static void unlink_locked(st_kv_service *kv, kv_read *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        kv->parked = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    r->parked = false;
}

/* Take r off the park list; true if this caller did (and so now answers the call). */
static bool unpark(st_kv_service *kv, kv_read *r)
{
    pthread_mutex_lock(&kv->park_mu);
    bool mine = r->parked;
    if (mine)
        unlink_locked(kv, r);
    pthread_mutex_unlock(&kv->park_mu);
    return mine;
}

static void on_parked_cancel(st_call *call)
{
    kv_read *r = st_call_data(call);
    if (!unpark(r->kv, r))
        return;
    if (st_call_expired(call))
        st_call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                     "min_seq %llu was not reached before the deadline",
                     (unsigned long long)r->min_seq);
    else
        st_call_fail(call, GRPC_STATUS_CANCELLED, "cancelled while waiting for min_seq");
}

/* Writer thread (standalone) or replica applier: wake the reads whose min_seq is now applied. */
static void on_applied(void *ctx, uint64_t seq)
{
    st_kv_service *kv = ctx;
    kv_read *ready = NULL;
    pthread_mutex_lock(&kv->park_mu);
    for (kv_read *r = kv->parked, *next; r; r = next) {
        next = r->next;
        if (r->min_seq <= seq) {
            unlink_locked(kv, r);
            r->next = ready;
            ready = r;
        }
    }
    pthread_mutex_unlock(&kv->park_mu);
    while (ready) {
        kv_read *r = ready;
        ready = r->next;
        r->next = NULL;
        run_read(r);
    }
}

/* Answer now, or park until min_seq is applied. A linearizable read in a cluster first raises
   min_seq to the leader's read index (the commit sequence, under a lease). */
static void read_or_park(st_kv_service *kv, kv_read *r, bool linearizable)
{
    st_call *call = r->call;
    uint64_t seq = 0; /* the read index: committed already, so it is applied soon */
    if (linearizable && kv->o.replica) {
        st_status s = st_replica_read_index(kv->o.replica, &seq);
        if (s == ST_NOT_LEADER) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", st_errmsg());
            fail_not_leader(kv, call, msg, "linearizable reads");
            return;
        }
        if (s != ST_OK) {
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "%s: %s", st_call_method(call)->path,
                         st_errmsg());
            return;
        }
        if (seq > r->min_seq)
            r->min_seq = seq;
    }
    if (r->min_seq == 0 || r->min_seq <= applied_seq(kv)) {
        run_read(r);
        return;
    }
    if (st_call_deadline_ns(call) == INT64_MAX && r->min_seq > seq) {
        st_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION,
                     "min_seq %llu is ahead of the node's last applied sequence %llu, and the "
                     "call has no deadline to wait with",
                     (unsigned long long)r->min_seq, (unsigned long long)applied_seq(kv));
        return;
    }
    st_call_watch_cancel(call, on_parked_cancel);
    pthread_mutex_lock(&kv->park_mu);
    /* Checked under park_mu: on_applied cannot slip between this check and the insert. */
    bool closing = kv->closing;
    bool now = r->min_seq <= applied_seq(kv);
    if (!closing && !now) {
        r->parked = true;
        r->prev = NULL;
        r->next = kv->parked;
        if (kv->parked)
            kv->parked->prev = r;
        kv->parked = r;
    }
    pthread_mutex_unlock(&kv->park_mu);
    if (closing) {
        st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "the node is shutting down");
    } else if (now) {
        run_read(r);
    } else if (st_call_cancelled(call)) {
        /* Cancelled before the hook was in place: the hook will not run. */
        on_parked_cancel(call);
    }
}

static kv_read *read_new(st_kv_service *kv, st_call *call)
{
    kv_read *r = calloc(1, sizeof(*r));
    if (!r) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "the node is out of memory");
        return NULL;
    }
    r->kv = kv;
    r->call = call;
    st_buf_init(&r->buf);
    st_call_set_data(call, r, read_free);
    return r;
}

static void handle_get(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_kv_service *kv = svc;
    Strata__V1__GetRequest *g = (Strata__V1__GetRequest *)unpack_or_fail(
        call, &strata__v1__get_request__descriptor, req, len, has_req);
    if (!g)
        return;
    kv_read *r = read_new(kv, call);
    if (!r) {
        strata__v1__get_request__free_unpacked(g, NULL);
        return;
    }
    r->get = g;
    r->min_seq = g->min_seq;
    char buf[160];
    const char *why = check_key(kv, g->key, buf, sizeof(buf));
    if (why) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "Get: %s", why);
        return;
    }
    read_or_park(kv, r, g->linearizable);
}

static void handle_scan(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_kv_service *kv = svc;
    Strata__V1__ScanRequest *q = (Strata__V1__ScanRequest *)unpack_or_fail(
        call, &strata__v1__scan_request__descriptor, req, len, has_req);
    if (!q)
        return;
    kv_read *r = read_new(kv, call);
    if (!r) {
        strata__v1__scan_request__free_unpacked(q, NULL);
        return;
    }
    r->scan = q;
    r->is_scan = true;
    r->min_seq = q->min_seq;
    if (q->start.len > kv->o.max_key_bytes || q->end.len > kv->o.max_key_bytes) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "Scan: start or end is over the node's key limit of %zu bytes",
                     kv->o.max_key_bytes);
        return;
    }
    read_or_park(kv, r, q->linearizable);
}

/* ---- lifetime ---------------------------------------------------------------------------- */

st_status st_kv_service_create(st_db *db, st_server *srv, const st_kv_options *o,
                               st_kv_service **out)
{
    *out = NULL;
    st_kv_service *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return st_error(ST_NO_MEMORY, "kv: out of memory");
    kv->db = db;
    kv->srv = srv;
    kv->o = *o;
    pthread_mutex_init(&kv->park_mu, NULL);
    const st_method methods[] = {
        {"/strata.v1.KV/Put", ST_METHOD_UNARY, true, handle_put, kv, false},
        {"/strata.v1.KV/Get", ST_METHOD_UNARY, true, handle_get, kv, false},
        {"/strata.v1.KV/Delete", ST_METHOD_UNARY, true, handle_delete, kv, false},
        {"/strata.v1.KV/Write", ST_METHOD_UNARY, true, handle_write, kv, false},
        {"/strata.v1.KV/Scan", ST_METHOD_SERVER_STREAM, true, handle_scan, kv, false},
    };
    st_status s = ST_OK;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && s == ST_OK; i++)
        s = st_server_add_method(srv, &methods[i]);
    if (s != ST_OK)
        goto fail;
    st_writer_options wo = {
        .on_applied = on_applied, .ctx = kv, .max_group_bytes = o->max_group_bytes};
    if (o->replica) {
        /* Applies come from the replica (st_kv_service_applied), not from the writer. */
        wo.on_applied = NULL;
        wo.append = cluster_append;
        wo.append_ctx = kv;
    }
    s = st_writer_create(db, &wo, &kv->writer);
    if (s != ST_OK)
        goto fail;
    *out = kv;
    return ST_OK;

fail:
    pthread_mutex_destroy(&kv->park_mu);
    free(kv);
    return s;
}

void st_kv_service_applied(st_kv_service *kv, uint64_t seq)
{
    on_applied(kv, seq);
}

void st_kv_service_begin_shutdown(st_kv_service *kv)
{
    pthread_mutex_lock(&kv->park_mu);
    kv->closing = true;
    kv_read *list = kv->parked;
    for (kv_read *r = list; r; r = r->next)
        r->parked = false;
    kv->parked = NULL;
    pthread_mutex_unlock(&kv->park_mu);
    while (list) {
        kv_read *r = list;
        list = r->next;
        r->next = r->prev = NULL;
        st_call_fail(r->call, GRPC_STATUS_UNAVAILABLE,
                     "the node is shutting down (min_seq %llu was not reached)",
                     (unsigned long long)r->min_seq);
    }
}

void st_kv_service_stop(st_kv_service *kv)
{
    if (kv)
        st_writer_stop(kv->writer);
}

void st_kv_service_destroy(st_kv_service *kv)
{
    if (!kv)
        return;
    st_writer_destroy(kv->writer);
    pthread_mutex_destroy(&kv->park_mu);
    free(kv);
}
