/*
 * admin_service.h - strata.v1.Admin: Status, from st_db_stats and the server's counters.
 */
#ifndef STRATA_NODE_ADMIN_SERVICE_H
#define STRATA_NODE_ADMIN_SERVICE_H

#include <stdint.h>

#include "engine/db.h"
#include "node/server.h"

typedef struct st_admin_service st_admin_service;

typedef struct st_admin_options {
    uint64_t node_id;
    const char *role;    /* "standalone"; borrowed, static storage */
    const char *version; /* borrowed, static storage */
} st_admin_options;

/* Register Status on srv. db and srv are borrowed and must outlive the service. The uptime
   counts from this call. */
st_status st_admin_service_create(st_db *db, st_server *srv, const st_admin_options *o,
                                  st_admin_service **out);

/* Free; after st_server_destroy. Accepts NULL. */
void st_admin_service_destroy(st_admin_service *a);

#endif
