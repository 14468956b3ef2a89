/* repl_service.c - strata.v1.Replication handlers (the follower's side). */
#include "node/repl_service.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "node/log.h"

typedef struct stream stream;

struct st_repl_service {
    st_replica *r;
    pthread_mutex_t mu;
    stream *streams; /* guarded by mu: Replicate calls not yet finished */
    bool closing;    /* guarded by mu */
};

/* One Replicate call, owned by the call (st_call_set_data). Fields guarded by the service's
   mu, except that only the thread handling a message touches the call between a receive
   completing and the next one being posted. */
struct stream {
    st_repl_service *rs;
    st_call *call;
    stream *next, *prev;
    bool listed; /* in rs->streams: not finished */
    bool busy;   /* a message is being handled or its answer sent */
};

static void unlist_locked(st_repl_service *rs, stream *st)
{
    if (!st->listed)
        return;
    if (st->prev)
        st->prev->next = st->next;
    else
        rs->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->next = st->prev = NULL;
    st->listed = false;
}

/* Take the stream off the list; true if this caller did, and so finishes the call. */
static bool claim_finish(stream *st)
{
    st_repl_service *rs = st->rs;
    pthread_mutex_lock(&rs->mu);
    bool mine = st->listed;
    unlist_locked(rs, st);
    pthread_mutex_unlock(&rs->mu);
    return mine;
}

static void on_message(st_call *call, const uint8_t *data, size_t len, bool got);

/* The answer went out: read the next message, unless the stream is ending. */
static void on_sent(st_call *call, bool ok)
{
    stream *st = st_call_data(call);
    st_repl_service *rs = st->rs;
    if (!ok) {
        if (claim_finish(st))
            st_call_fail(call, GRPC_STATUS_CANCELLED, "Replicate: the leader went away");
        return;
    }
    pthread_mutex_lock(&rs->mu);
    bool closing = rs->closing;
    st->busy = false;
    pthread_mutex_unlock(&rs->mu);
    if (closing) {
        if (claim_finish(st))
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "Replicate: the node is shutting down");
        return;
    }
    st_call_recv(call, on_message);
}

static void on_message(st_call *call, const uint8_t *data, size_t len, bool got)
{
    stream *st = st_call_data(call);
    st_repl_service *rs = st->rs;
    if (!got) {
        /* The leader closed its side, went away, or we ended the call at shutdown. */
        if (claim_finish(st))
            st_call_finish(call);
        return;
    }
    pthread_mutex_lock(&rs->mu);
    bool live = st->listed;
    st->busy = live;
    pthread_mutex_unlock(&rs->mu);
    if (!live)
        return; /* finished meanwhile (shutdown): nothing more to do */
    Strata__V1__LeaderMessage *m = strata__v1__leader_message__unpack(NULL, len, data);
    if (!m) {
        if (claim_finish(st))
            st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                         "Replicate: a message of %zu bytes does not parse as LeaderMessage", len);
        return;
    }
    Strata__V1__FollowerMessage ans;
    st_status s = st_replica_on_leader_message(rs->r, m, &ans);
    strata__v1__leader_message__free_unpacked(m, NULL);
    if (s != ST_OK) {
        st_replica_answer_free(&ans);
        char q[600];
        st_log(ST_LOG_WARN, "replicate_refused", "status=%s reason=%s", st_status_name(s),
               st_log_quote(q, sizeof(q), st_errmsg()));
        grpc_status_code code = s == ST_CORRUPTION ? GRPC_STATUS_DATA_LOSS
                                : s == ST_SHUTDOWN ? GRPC_STATUS_UNAVAILABLE
                                                   : GRPC_STATUS_INTERNAL;
        if (claim_finish(st))
            st_call_fail(call, code, "Replicate: %s: %s", st_status_name(s), st_errmsg());
        return;
    }
    st_call_send(call, &ans.base, false, on_sent);
    st_replica_answer_free(&ans);
}

static void on_cancel(st_call *call)
{
    stream *st = st_call_data(call);
    if (claim_finish(st))
        st_call_fail(call, GRPC_STATUS_CANCELLED, "Replicate: cancelled");
}

static void handle_replicate(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_repl_service *rs = svc;
    stream *st = calloc(1, sizeof(*st));
    if (!st) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "Replicate: out of memory");
        return;
    }
    st->rs = rs;
    st->call = call;
    st_call_set_data(call, st, free);
    pthread_mutex_lock(&rs->mu);
    bool closing = rs->closing;
    if (!closing) {
        st->listed = true;
        st->next = rs->streams;
        if (rs->streams)
            rs->streams->prev = st;
        rs->streams = st;
    }
    pthread_mutex_unlock(&rs->mu);
    if (closing) {
        st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "Replicate: the node is shutting down");
        return;
    }
    st_call_watch_cancel(call, on_cancel);
    if (st_call_cancelled(call)) {
        on_cancel(call); /* cancelled before the hook was set */
        return;
    }
    st_call_recv(call, on_message);
}

static void handle_request_vote(void *svc, st_call *call, const uint8_t *req, size_t len,
                                bool has_req)
{
    st_repl_service *rs = svc;
    Strata__V1__VoteRequest *q = NULL;
    if (has_req)
        q = strata__v1__vote_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "RequestVote: the request does not parse as VoteRequest"
                             : "RequestVote: no request message was sent");
        return;
    }
    Strata__V1__VoteResponse a;
    st_replica_on_vote_request(rs->r, q, &a);
    /* A real vote may move this node to a new term: one line per vote says so. */
    st_log(q->pre_vote ? ST_LOG_DEBUG : ST_LOG_INFO, q->pre_vote ? "pre_vote" : "vote",
           "candidate=%u term=%llu granted=%s our_term=%llu%s", q->candidate_id,
           (unsigned long long)q->term, a.granted ? "yes" : "no", (unsigned long long)a.term,
           q->transfer ? " hand_over=yes" : "");
    strata__v1__vote_request__free_unpacked(q, NULL);
    st_call_reply(call, &a.base);
}

st_status st_repl_service_create(st_replica *r, st_server *srv, st_repl_service **out)
{
    *out = NULL;
    st_repl_service *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return st_error(ST_NO_MEMORY, "replication service: out of memory");
    rs->r = r;
    pthread_mutex_init(&rs->mu, NULL);
    /* Not counted: a node saturated by clients must still follow its leader and vote. */
    const st_method methods[] = {
        {"/strata.v1.Replication/Replicate", ST_METHOD_BIDI_STREAM, false, handle_replicate, rs,
         true},
        {"/strata.v1.Replication/RequestVote", ST_METHOD_UNARY, false, handle_request_vote, rs,
         false},
    };
    st_status s = ST_OK;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && s == ST_OK; i++)
        s = st_server_add_method(srv, &methods[i]);
    if (s != ST_OK) {
        pthread_mutex_destroy(&rs->mu);
        free(rs);
        return s;
    }
    *out = rs;
    return ST_OK;
}

void st_repl_service_begin_shutdown(st_repl_service *rs)
{
    /* Streams waiting for a message are ended here; a busy one ends after its answer. */
    pthread_mutex_lock(&rs->mu);
    rs->closing = true;
    size_t n = 0;
    for (stream *st = rs->streams; st; st = st->next)
        n += !st->busy;
    st_call **idle = calloc(n ? n : 1, sizeof(*idle));
    size_t k = 0;
    for (stream *st = rs->streams, *next; st && idle; st = next) {
        next = st->next;
        if (!st->busy) {
            unlist_locked(rs, st);
            idle[k++] = st->call;
        }
    }
    pthread_mutex_unlock(&rs->mu);
    for (size_t i = 0; i < k; i++)
        st_call_fail(idle[i], GRPC_STATUS_UNAVAILABLE, "Replicate: the node is shutting down");
    free(idle);
}

void st_repl_service_destroy(st_repl_service *rs)
{
    if (!rs)
        return;
    pthread_mutex_destroy(&rs->mu);
    free(rs);
}
