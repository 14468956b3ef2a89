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

typedef struct st_kv_service st_kv_service;

typedef struct st_kv_options {
    size_t max_key_bytes;   /* longer keys get INVALID_ARGUMENT */
    size_t max_value_bytes; /* longer values get INVALID_ARGUMENT */
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

/* Map an engine status to the gRPC code a client sees (see proto/strata/v1/kv.proto). */
grpc_status_code st_kv_grpc_code(st_status s);

#endif
