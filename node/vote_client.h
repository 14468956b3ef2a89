/*
 * vote_client.h - RequestVote calls to the peers, for the replica's elections (its
 * st_replica_net.request_vote).
 *
 * st_vote_client_send starts an asynchronous unary /strata.v1.Replication/RequestVote call
 * and returns at once; the answer is delivered with st_replica_on_vote_response on the peer
 * client's poller thread. A peer that cannot be reached, answers with an error or does not
 * answer within the call's deadline (the shortest election timeout) gets nothing delivered:
 * the election simply lacks its vote.
 *
 * Threads: st_vote_client_send from any thread (the replica's ticker, mostly).
 */
#ifndef STRATA_NODE_VOTE_CLIENT_H
#define STRATA_NODE_VOTE_CLIENT_H

#include <stdint.h>

#include "node/peer_client.h"
#include "replication/replica.h"

typedef struct st_vote_client st_vote_client;

/* pc is borrowed and outlives the client. Calls time out after timeout_ms. */
st_status st_vote_client_create(st_peer_client *pc, uint32_t timeout_ms, st_vote_client **out);

/* The replica answers go to (borrowed; set once, before it can call st_vote_client_send). */
void st_vote_client_attach(st_vote_client *vc, st_replica *r);

/* Ask `peer` for its vote (`req` is copied). Does nothing once the client is stopped. */
void st_vote_client_send(st_vote_client *vc, uint32_t peer, const Strata__V1__VoteRequest *req);

/* Cancel the calls in flight and wait until they have completed; later sends do nothing.
   Nothing is delivered to the replica after this returns. Idempotent. */
void st_vote_client_stop(st_vote_client *vc);

/* Stop and free. Accepts NULL. */
void st_vote_client_destroy(st_vote_client *vc);

#endif
