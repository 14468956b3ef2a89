/*
 * peer_client.h - the client half of node-to-node traffic: one gRPC channel per peer and one
 * completion queue, polled by one thread of this module, for every call this node makes to
 * its peers (peer_link.h's Replicate streams, vote_client.h's RequestVote calls).
 *
 * Channels connect lazily, are reused by every call to the peer, and reconnect quickly after a
 * peer restarts (backoff 50 ms growing to 1 s, instead of gRPC's 1 s growing to 2 min). Calls
 * are made without WAIT_FOR_READY: a call to a peer that is down fails at once (UNAVAILABLE).
 *
 * Tags: every operation started on a call of this queue takes an st_peer_tag (started with
 * st_peer_start_batch); the poller runs
 * tag->fn(tag->ctx, success) for each completion, in the order gRPC delivers them, on its one
 * thread. Callbacks must not block for long (they delay every other peer's traffic).
 *
 * Threads: st_peer_client_call from any thread. Every call must have completed all its
 * operations before st_peer_client_destroy.
 */
#ifndef STRATA_NODE_PEER_CLIENT_H
#define STRATA_NODE_PEER_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "replication/cluster.h"

typedef struct st_peer_client st_peer_client;

typedef struct st_peer_tag {
    void (*fn)(void *ctx, bool ok);
    void *ctx;
    atomic_uint started; /* st_peer_start_batch's release, the poller's acquire */
} st_peer_tag;

/*
 * grpc_call_start_batch with `tag`, for calls of this client. Use it for every batch: what the
 * caller wrote before it is then visible to the callback (gRPC's own synchronisation is not
 * visible to ThreadSanitizer, so the tag carries it).
 */
grpc_call_error st_peer_start_batch(grpc_call *call, const grpc_op *ops, size_t n,
                                    st_peer_tag *tag);

typedef enum st_peer_method {
    ST_PEER_REPLICATE,    /* /strata.v1.Replication/Replicate (bidi stream) */
    ST_PEER_REQUEST_VOTE, /* /strata.v1.Replication/RequestVote (unary) */
} st_peer_method;

/*
 * A channel to every member of `cluster` but self_id (copied), and the poller thread.
 * gRPC must be initialised until st_peer_client_destroy returns.
 */
st_status st_peer_client_create(const st_cluster *cluster, uint32_t self_id, st_peer_client **out);

/* A new call of `method` to `peer` on the client's queue, with deadline_ms from now (<0: none);
   NULL if peer is not a member. The caller owns it (grpc_call_unref). */
grpc_call *st_peer_client_call(st_peer_client *pc, uint32_t peer, st_peer_method method,
                               int64_t deadline_ms);

/* Ask the channel to `peer` to connect and wait up to timeout_ms for it to be ready (or for one
   change of its state). True if it is ready now. */
bool st_peer_client_ready(st_peer_client *pc, uint32_t peer, int64_t timeout_ms);

/* Shut the queue down, join the poller, destroy the channels, free. Accepts NULL. */
void st_peer_client_destroy(st_peer_client *pc);

/* Pack a protobuf-c message into a new byte buffer (destroy it with grpc_byte_buffer_destroy). */
grpc_byte_buffer *st_peer_pack(const ProtobufCMessage *msg);

/* The bytes of a received buffer, as a slice the caller unrefs; false if unreadable. */
bool st_peer_read(grpc_byte_buffer *bb, grpc_slice *out);

#endif
