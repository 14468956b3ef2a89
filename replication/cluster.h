/*
 * cluster.h - who is in the cluster: member ids and the address each serves on.
 *
 * Written as "1=10.0.0.1:7400,2=10.0.0.2:7400,3=10.0.0.3:7400" (--peers): every member,
 * this node included. Ids are positive and distinct; one address serves clients and peers.
 */
#ifndef STRATA_REPLICATION_CLUSTER_H
#define STRATA_REPLICATION_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/status.h"

#define ST_MAX_MEMBERS 15

typedef struct st_member {
    uint32_t id;
    char addr[256];
} st_member;

typedef struct st_cluster {
    st_member members[ST_MAX_MEMBERS];
    size_t n;
} st_cluster;

/* Parse a member list. ST_INVALID_ARGUMENT with a message saying what is wrong. */
st_status st_cluster_parse(const char *spec, st_cluster *out);

/* The member with this id, or NULL. */
const st_member *st_cluster_find(const st_cluster *c, uint32_t id);

/* How many members make a majority. */
static inline size_t st_cluster_majority(const st_cluster *c)
{
    return c->n / 2 + 1;
}

#endif
