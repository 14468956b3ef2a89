/*
 * node_cluster.h - what --peers adds to strata-node: the replica (replication/replica.h) and
 * the gRPC transport it talks through.
 *
 *   peer_client   a channel per peer and the client queue's poller thread
 *   peer_link     the leader's Replicate stream to each peer
 *   vote_client   RequestVote calls (the replica's net.request_vote)
 *   repl_service  strata.v1.Replication on this node's server (the follower's side)
 *
 * Data directory of a cluster node (a standalone node keeps its engine in DATA_DIR itself, as
 * it always has; the two layouts refuse each other, so a directory is never opened in the
 * wrong mode by accident):
 *
 *     DATA_DIR/db/            the engine (CURRENT, MANIFEST-*, wal/, sst/), opened with
 *                             ST_REPLAY_PENDING
 *     DATA_DIR/raft_state     term and vote (replication/raft_state.h)
 *     DATA_DIR/snap-recv/, DATA_DIR/snap-send-N/
 *                             snapshots being received / sent (same file system as db/, so
 *                             installing one is a rename)
 *
 * Role changes reach the peer links (leading a term starts them), the health service
 * ("strata.v1.KV.leader") and the log (`role role=leader term=T`); the replica's own event
 * lines (elections, leader changes, snapshots, truncations) are logged as `repl_<event> ...`.
 *
 * Order of life (main.c): st_node_cluster_data_dir, open the engine, st_server_create,
 * st_node_cluster_create (registers its methods, starts the replica), create the KV, Admin and
 * health services, st_node_cluster_attach, st_server_start ... (SIGTERM) health NOT_SERVING,
 * st_node_cluster_hand_over, st_server_begin_shutdown,
 * st_node_cluster_begin_shutdown, wait for calls, stop the KV writer, st_node_cluster_stop,
 * st_server_destroy, st_node_cluster_destroy, then the KV service and the engine.
 */
#ifndef STRATA_NODE_NODE_CLUSTER_H
#define STRATA_NODE_NODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/db.h"
#include "node/health.h"
#include "node/kv_service.h"
#include "node/server.h"
#include "replication/cluster.h"
#include "replication/replica.h"

typedef struct st_node_cluster st_node_cluster;

typedef struct st_node_cluster_options {
    const st_cluster *cluster; /* every member, this node included; copied */
    uint32_t node_id;
    const char *data_dir; /* DATA_DIR (raft_state and snapshot staging); borrowed */
    uint32_t heartbeat_ms;
    uint32_t election_ms;
    uint64_t wal_retain_bytes;
    const char *advertise_addr; /* where clients reach this node; NULL or "": its member address */
} st_node_cluster_options;

/*
 * Where the engine lives for this data directory: DATA_DIR (standalone) or DATA_DIR/db
 * (cluster; DATA_DIR is created if missing), written to db_dir (capacity cap).
 * ST_INVALID_ARGUMENT naming the directory if it holds the other mode's layout.
 */
st_status st_node_cluster_data_dir(const char *data_dir, bool clustered, char *db_dir, size_t cap);

/*
 * Start the transport and the replica over db (opened with ST_REPLAY_PENDING; borrowed until
 * st_node_cluster_destroy) and register strata.v1.Replication on srv (before it starts).
 * gRPC must be initialised.
 */
st_status st_node_cluster_create(const st_node_cluster_options *o, st_db *db, st_server *srv,
                                 st_node_cluster **out);

/* The replica (owned by the cluster object). */
st_replica *st_node_cluster_replica(st_node_cluster *nc);

/* The KV writer appended to the log (st_kv_options.appended, ctx = nc): ship it now. */
void st_node_cluster_appended(void *ctx);

/* From now on applied sequences reach kv (st_kv_service_applied) and the role reaches health
   (st_health_set_leader, set now to the current role). Both borrowed until
   st_node_cluster_stop returns. */
void st_node_cluster_attach(st_node_cluster *nc, st_kv_service *kv, st_health *health);

/* If this node leads, hand leadership to the most up-to-date follower (st_replica_transfer,
   waiting up to timeout_ms) so that the cluster does not wait out an election timeout when it
   stops. Logs the outcome. Before st_node_cluster_stop. */
void st_node_cluster_hand_over(st_node_cluster *nc, uint32_t timeout_ms);

/* End the inbound Replicate streams (after st_server_begin_shutdown). */
void st_node_cluster_begin_shutdown(st_node_cluster *nc);

/* Stop the replica (waiting writes fail with ST_SHUTDOWN), the links and the vote calls.
   Nothing calls into kv or health afterwards. Before st_server_destroy. */
void st_node_cluster_stop(st_node_cluster *nc);

/* Stop if needed, destroy the replica and the transport, free. After st_server_destroy.
   Accepts NULL. */
void st_node_cluster_destroy(st_node_cluster *nc);

#endif
