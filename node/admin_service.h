/*
 * admin_service.h - strata.v1.Admin: Status, from st_db_stats and the server's counters (and,
 * on a cluster node, st_replica_info_get); Promote and StepDown, which hand leadership over.
 *
 * Promote and StepDown run st_replica_transfer on a thread of this module (one hand-over at a
 * time; a second while one runs gets ABORTED), bounded by the call's deadline, at most 10 s
 * (5 s without a deadline). Answers: OK with the new leader and the write pause;
 * FAILED_PRECONDITION on a node that does not lead (the leader's address in the trailing
 * metadata key "strata-leader" when known) and on a standalone node; INVALID_ARGUMENT for a
 * node id that is not a member; DEADLINE_EXCEEDED if the target did not take over in time
 * (this node leads on if the target was never told to campaign, and steps down otherwise).
 */
#ifndef STRATA_NODE_ADMIN_SERVICE_H
#define STRATA_NODE_ADMIN_SERVICE_H

#include <stdint.h>

#include "engine/db.h"
#include "node/server.h"
#include "replication/replica.h"

typedef struct st_admin_service st_admin_service;

typedef struct st_admin_options {
    uint64_t node_id;
    const char *role;    /* "standalone"; borrowed, static storage (unused with a replica) */
    const char *version; /* borrowed, static storage */
    st_replica *replica; /* cluster mode; NULL for a standalone node. Borrowed: outlives the
                            service until st_admin_service_stop returns */
} st_admin_options;

/* Register Status, Promote and StepDown on srv. db and srv are borrowed and must outlive the
   service. The uptime counts from this call. */
st_status st_admin_service_create(st_db *db, st_server *srv, const st_admin_options *o,
                                  st_admin_service **out);

/* Wait for a hand-over in progress to end (after st_replica_shutdown it ends at once); later
   Promote/StepDown calls get UNAVAILABLE. Before st_server_destroy. Accepts NULL. */
void st_admin_service_stop(st_admin_service *a);

/* Free (stops first if needed); after st_server_destroy. Accepts NULL. */
void st_admin_service_destroy(st_admin_service *a);

#endif
