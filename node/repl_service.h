/*
 * repl_service.h - strata.v1.Replication on the server: the follower's side of the Replicate
 * stream, and RequestVote.
 *
 * Replicate (bidi): messages of one stream are handled strictly in order, one at a time: each
 * LeaderMessage goes to st_replica_on_leader_message and its FollowerMessage is sent back
 * before the next message is read. A message that does not parse ends the stream with
 * INVALID_ARGUMENT; a record that fails its checksum or does not parse (ST_CORRUPTION) with
 * DATA_LOSS, other failures with INTERNAL (UNAVAILABLE once the replica is stopping); the leader
 * then opens a new stream, which starts with a probe. RequestVote (unary):
 * st_replica_on_vote_request, which persists term and vote before the answer goes out.
 *
 * Neither method counts toward --max-concurrent-calls, and Replicate accepts the node's peer
 * message size (server.h, st_method.peer).
 *
 * Lifetime: create before st_server_start; st_repl_service_begin_shutdown once the server has
 * begun shutting down (it ends the streams, which would otherwise hold the shutdown for its
 * whole grace period); destroy after st_server_destroy.
 */
#ifndef STRATA_NODE_REPL_SERVICE_H
#define STRATA_NODE_REPL_SERVICE_H

#include "node/server.h"
#include "replication/replica.h"

typedef struct st_repl_service st_repl_service;

/* Register the methods on srv. r and srv are borrowed and outlive the service. */
st_status st_repl_service_create(st_replica *r, st_server *srv, st_repl_service **out);

/* End every Replicate stream (UNAVAILABLE); later messages end theirs too. Any thread. */
void st_repl_service_begin_shutdown(st_repl_service *rs);

/* Free; after st_server_destroy. Accepts NULL. */
void st_repl_service_destroy(st_repl_service *rs);

#endif
