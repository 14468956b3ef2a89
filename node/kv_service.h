/*
 * kv_service.h - strata.v1.KV over the engine: Put, Get, Delete, Write, Scan.
 *
 * Writes go through an st_writer (group commit: one st_db_write and one fsync for every write
 * call queued together). Get runs on the worker thread that received it; Scan holds one
 * engine iterator per call and streams messages of up to ~64 KiB or 256 pairs, one send in
 * flight, continuing on each send's completion.
 *
 * min_seq (Get, Scan): a read asking for a sequence the node has not applied yet is parked
 * until the writer applies it, its deadline passes (DEADLINE_EXCEEDED), the client cancels, or
 * the node shuts down (UNAVAILABLE). A call without a deadline is not parked: it gets
 * FAILED_PRECONDITION at once.
 *
 * Cluster mode (st_kv_options.replica set): the writer appends each group to the replicated log
 * with st_replica_append, then every request waits for its acknowledgement level
 * (st_replica_wait) before it is answered: OK with its sequence; DEADLINE_EXCEEDED when the
 * level was not reached in time and UNAVAILABLE when leadership was lost after the append (the
 * write may or may not commit, and the message says so); FAILED_PRECONDITION on a node that
 * does not lead, with the leader's client address in the trailing metadata key
 * "strata-leader" when it is known; UNAVAILABLE while the leader hands over (retry shortly).
 * Reads are served from what this node has applied; st_kv_service_applied (the replica's
 * on_applied hook) releases parked min_seq reads.
 *
 * Lifetime: create after st_server_create and before st_server_start (it registers methods);
 * st_kv_service_begin_shutdown when shutdown begins; st_kv_service_stop once the server has
 * stopped accepting calls and before st_server_destroy (it drains the writer, which still
 * finishes calls); st_kv_service_destroy after st_server_destroy.
 */
#ifndef STRATA_NODE_KV_SERVICE_H
#define STRATA_NODE_KV_SERVICE_H

#include <stddef.h>

#include "engine/db.h"
#include "node/server.h"
#include "replication/replica.h"

typedef struct st_kv_service st_kv_service;

typedef struct st_kv_options {
    size_t max_key_bytes;   /* longer keys get INVALID_ARGUMENT */
    size_t max_value_bytes; /* longer values get INVALID_ARGUMENT */
    /* Cluster mode: the replica writes go through (borrowed, outlives the service); NULL for a
       standalone node, which writes with st_db_write and ignores the requests' ack level. */
    st_replica *replica;
    st_ack_level default_ack; /* cluster: the level of requests asking ACK_DEFAULT */
    size_t max_group_bytes;   /* the writer's group cap; 0: its default */
    /* Cluster: called on the writer thread after each group is appended (may be NULL). */
    void (*appended)(void *ctx);
    void *appended_ctx;
} st_kv_options;

/* Register the KV methods on srv and start the writer. db and srv are borrowed and must
   outlive the service (db until st_kv_service_destroy returns). */
st_status st_kv_service_create(st_db *db, st_server *srv, const st_kv_options *o,
                               st_kv_service **out);

/* New KV calls get UNAVAILABLE (the server also refuses them); parked reads are answered
   UNAVAILABLE now. Writes already queued are still written. */
void st_kv_service_begin_shutdown(st_kv_service *kv);

/* Write and answer everything queued, then stop the writer thread. Later writes get
   UNAVAILABLE. */
void st_kv_service_stop(st_kv_service *kv);

/* Free (stops first if needed). Accepts NULL. */
void st_kv_service_destroy(st_kv_service *kv);

/* Cluster mode: this node has applied every sequence up to `seq` (parked reads waiting for it
   are answered). Any thread; no lock of the caller's may be needed by a read. */
void st_kv_service_applied(st_kv_service *kv, uint64_t seq);

/* Map an engine status to the gRPC code a client sees (see proto/strata/v1/kv.proto). */
grpc_status_code st_kv_grpc_code(st_status s);

#endif
