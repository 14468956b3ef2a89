/*
 * health.h - grpc.health.v1.Health: Check and Watch.
 *
 * Known services: "" (the node as a whole), "strata.v1.KV" and "strata.v1.Admin"; each is
 * SERVING from start until st_health_shutdown, NOT_SERVING after, whatever the node's role.
 * "strata.v1.KV.leader" is SERVING only while the node takes writes: on the current leader of
 * a cluster (st_health_set_leader), and always on a standalone node; load balancers and
 * health checks that want the writable node ask for it. Check of another service gets
 * NOT_FOUND. Watch sends the current status at once, then each change; for an unknown service
 * it sends SERVICE_UNKNOWN and stays open, as the protocol asks. At shutdown each Watch stream
 * is sent NOT_SERVING and then ended with UNAVAILABLE.
 */
#ifndef STRATA_NODE_HEALTH_H
#define STRATA_NODE_HEALTH_H

#include "node/server.h"

typedef struct st_health st_health;

/* Register Check and Watch on srv (before st_server_start). */
st_status st_health_create(st_server *srv, st_health **out);

/* Whether this node leads now (initially true: a standalone node). Watchers of
   "strata.v1.KV.leader" are told of the change. Any thread. */
void st_health_set_leader(st_health *h, bool leader);

/* Every known service becomes NOT_SERVING; watchers are told, then their streams end. */
void st_health_shutdown(st_health *h);

/* Free; after st_server_destroy. Accepts NULL. */
void st_health_destroy(st_health *h);

#endif
