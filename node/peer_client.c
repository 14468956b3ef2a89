/* peer_client.c - channels to the peers and the client completion queue's poller. */
#include "node/peer_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node/rpc_client.h"

typedef struct peer_channel {
    uint32_t id;
    grpc_channel *ch;
    void *methods[2]; /* grpc_channel_register_call handles, by st_peer_method */
} peer_channel;

struct st_peer_client {
    peer_channel peers[ST_MAX_MEMBERS];
    size_t npeers;
    grpc_completion_queue *cq;
    pthread_t poller;
    bool poller_started;
};

/* Method paths must outlive the channels: static storage. */
static const char *const method_paths[2] = {
    "/strata.v1.Replication/Replicate",
    "/strata.v1.Replication/RequestVote",
};

static void *poller_main(void *arg)
{
    grpc_completion_queue *cq = arg;
    pthread_setname_np(pthread_self(), "st-peer-cq");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            st_peer_tag *t = ev.tag;
            (void)atomic_load_explicit(&t->started, memory_order_acquire);
            t->fn(t->ctx, ev.success != 0);
        }
    }
    return NULL;
}

static grpc_channel *open_channel(const char *addr)
{
    char *target = st_rpc_target(addr);
    if (!target)
        return NULL;
    grpc_arg args[6];
    memset(args, 0, sizeof(args));
    size_t n = 0;
    /* A restarted peer must be found again within a heartbeat or two, not after gRPC's
       default backoff (up to two minutes). */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 50;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 250; /* a node back from a crash rejoins within ~250 ms */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS; /* also the connect timeout */
    args[n++].value.integer = 2000;
    /* Retries would buffer what a stream sends; the link starts over by itself instead. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_ENABLE_RETRIES;
    args[n++].value.integer = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = 4 << 20; /* answers are small */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n++].value.integer = -1;
    grpc_channel_args cargs = {n, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    free(target);
    return ch;
}

st_status st_peer_client_create(const st_cluster *cluster, uint32_t self_id, st_peer_client **out)
{
    *out = NULL;
    st_peer_client *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return st_error(ST_NO_MEMORY, "peer client: out of memory");
    st_status s = ST_OK;
    for (size_t i = 0; i < cluster->n; i++) {
        const st_member *m = &cluster->members[i];
        if (m->id == self_id)
            continue;
        peer_channel *p = &pc->peers[pc->npeers];
        p->id = m->id;
        p->ch = open_channel(m->addr);
        if (!p->ch) {
            s = st_error(ST_INVALID_ARGUMENT, "--peers: cannot open a channel to node %u at %s",
                         m->id, m->addr);
            goto fail;
        }
        pc->npeers++;
        for (int k = 0; k < 2; k++)
            p->methods[k] = grpc_channel_register_call(p->ch, method_paths[k], NULL, NULL);
    }
    pc->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&pc->poller, NULL, poller_main, pc->cq) != 0) {
        s = st_error(ST_NO_MEMORY, "peer client: cannot start its thread");
        goto fail;
    }
    pc->poller_started = true;
    *out = pc;
    return ST_OK;

fail:
    st_peer_client_destroy(pc);
    return s;
}

grpc_call *st_peer_client_call(st_peer_client *pc, uint32_t peer, st_peer_method method,
                               int64_t deadline_ms)
{
    for (size_t i = 0; i < pc->npeers; i++) {
        peer_channel *p = &pc->peers[i];
        if (p->id != peer)
            continue;
        gpr_timespec deadline = deadline_ms < 0
                                    ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                    : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                   gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
        return grpc_channel_create_registered_call(p->ch, NULL, GRPC_PROPAGATE_DEFAULTS, pc->cq,
                                                   p->methods[method], deadline, NULL);
    }
    return NULL;
}

bool st_peer_client_ready(st_peer_client *pc, uint32_t peer, int64_t timeout_ms)
{
    peer_channel *p = NULL;
    for (size_t i = 0; i < pc->npeers; i++)
        if (pc->peers[i].id == peer)
            p = &pc->peers[i];
    if (!p)
        return false;
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(p->ch, 1);
    if (st == GRPC_CHANNEL_READY)
        return true;
    /* A queue of our own: the watch's tag is only waited for here, never dispatched. */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    static char watch_tag;
    grpc_channel_watch_connectivity_state(
        p->ch, st,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN)),
        cq, &watch_tag);
    (void)grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return grpc_channel_check_connectivity_state(p->ch, 0) == GRPC_CHANNEL_READY;
}

void st_peer_client_destroy(st_peer_client *pc)
{
    if (!pc)
        return;
    if (pc->cq) {
        grpc_completion_queue_shutdown(pc->cq);
        if (pc->poller_started)
            pthread_join(pc->poller, NULL);
        else
            poller_main(pc->cq); /* drain */
        grpc_completion_queue_destroy(pc->cq);
    }
    for (size_t i = 0; i < pc->npeers; i++)
        grpc_channel_destroy(pc->peers[i].ch);
    free(pc);
}

grpc_call_error st_peer_start_batch(grpc_call *call, const grpc_op *ops, size_t n, st_peer_tag *tag)
{
    atomic_fetch_add_explicit(&tag->started, 1, memory_order_release);
    return grpc_call_start_batch(call, ops, n, tag, NULL);
}

grpc_byte_buffer *st_peer_pack(const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(size);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

bool st_peer_read(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return false;
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}
