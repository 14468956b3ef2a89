/* vote_client.c - asynchronous RequestVote calls on the peer client's queue. */
#include "node/vote_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct vote_call vote_call;

struct st_vote_client {
    st_peer_client *pc;
    uint32_t timeout_ms;
    st_replica *r; /* set once by attach, before any send */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    vote_call *calls; /* guarded by mu: in flight */
    bool stopped;     /* guarded by mu */
};

/* One RequestVote in flight; freed by its completion. */
struct vote_call {
    st_vote_client *vc;
    uint32_t peer;
    Strata__V1__VoteRequest req;
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code code;
    grpc_slice details;
    st_peer_tag tag;
    vote_call *next, *prev; /* st_vote_client.calls */
};

static void unlist_locked(st_vote_client *vc, vote_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        vc->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void call_free(vote_call *c)
{
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_metadata_array_destroy(&c->imd);
    grpc_metadata_array_destroy(&c->tmd);
    grpc_slice_unref(c->details);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* Poller thread: the call is over. */
static void on_done(void *ctx, bool ok)
{
    vote_call *c = ctx;
    st_vote_client *vc = c->vc;
    /* Taken first: the sender filled c under mu, so what it wrote is visible from here on. */
    pthread_mutex_lock(&vc->mu);
    st_replica *r = vc->r;
    pthread_mutex_unlock(&vc->mu);
    Strata__V1__VoteResponse *a = NULL;
    if (ok && c->code == GRPC_STATUS_OK && c->recv) {
        grpc_slice s;
        if (st_peer_read(c->recv, &s)) {
            a = strata__v1__vote_response__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                                  GRPC_SLICE_START_PTR(s));
            grpc_slice_unref(s);
        }
    }
    /* Deliver before unlisting: stop() waits for the list to empty, so nothing reaches the
       replica once it has returned. */
    if (a) {
        st_replica_on_vote_response(r, c->peer, &c->req, a);
        strata__v1__vote_response__free_unpacked(a, NULL);
    }
    pthread_mutex_lock(&vc->mu);
    unlist_locked(vc, c);
    if (!vc->calls)
        pthread_cond_broadcast(&vc->cv);
    pthread_mutex_unlock(&vc->mu);
    call_free(c);
}

void st_vote_client_send(st_vote_client *vc, uint32_t peer, const Strata__V1__VoteRequest *req)
{
    vote_call *c = calloc(1, sizeof(*c));
    if (!c)
        return; /* a missing vote: the election times out and starts again */
    pthread_mutex_lock(&vc->mu);
    c->vc = vc;
    c->peer = peer;
    c->req = *req; /* scalars only: a plain copy is a full one */
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    c->details = grpc_empty_slice();
    c->code = GRPC_STATUS_UNKNOWN;
    c->tag = (st_peer_tag){on_done, c, 0};
    if (vc->stopped || !vc->r) {
        pthread_mutex_unlock(&vc->mu);
        call_free(c);
        return;
    }
    c->call = st_peer_client_call(vc->pc, peer, ST_PEER_REQUEST_VOTE, vc->timeout_ms);
    if (!c->call) {
        pthread_mutex_unlock(&vc->mu);
        call_free(c);
        return;
    }
    c->send = st_peer_pack(&c->req.base);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->tmd;
    ops[5].data.recv_status_on_client.status = &c->code;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    /* Listed under mu with the batch started, so stop() either sees it or refuses it. */
    if (st_peer_start_batch(c->call, ops, 6, &c->tag) != GRPC_CALL_OK) {
        pthread_mutex_unlock(&vc->mu);
        call_free(c);
        return;
    }
    c->prev = NULL;
    c->next = vc->calls;
    if (vc->calls)
        vc->calls->prev = c;
    vc->calls = c;
    pthread_mutex_unlock(&vc->mu);
}

st_status st_vote_client_create(st_peer_client *pc, uint32_t timeout_ms, st_vote_client **out)
{
    *out = NULL;
    st_vote_client *vc = calloc(1, sizeof(*vc));
    if (!vc)
        return st_error(ST_NO_MEMORY, "vote client: out of memory");
    vc->pc = pc;
    vc->timeout_ms = timeout_ms ? timeout_ms : 1;
    pthread_mutex_init(&vc->mu, NULL);
    pthread_cond_init(&vc->cv, NULL);
    *out = vc;
    return ST_OK;
}

void st_vote_client_attach(st_vote_client *vc, st_replica *r)
{
    pthread_mutex_lock(&vc->mu);
    vc->r = r;
    pthread_mutex_unlock(&vc->mu);
}

void st_vote_client_stop(st_vote_client *vc)
{
    pthread_mutex_lock(&vc->mu);
    vc->stopped = true;
    for (vote_call *c = vc->calls; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
    while (vc->calls)
        pthread_cond_wait(&vc->cv, &vc->mu);
    pthread_mutex_unlock(&vc->mu);
}

void st_vote_client_destroy(st_vote_client *vc)
{
    if (!vc)
        return;
    st_vote_client_stop(vc);
    pthread_cond_destroy(&vc->cv);
    pthread_mutex_destroy(&vc->mu);
    free(vc);
}
