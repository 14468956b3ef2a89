/*
 * cluster_harness.h - a cluster of real strata-node processes on loopback, for tests.
 *
 * Every node serves on a port chosen before it starts (--peers must name them all): the
 * harness binds port 0 for each member at once, notes the ports and closes the sockets; should
 * a node still find its port taken, the whole cluster is started again on fresh ports (up to 5
 * times). Nodes run with --sync none, short timeouts (--heartbeat-ms 20 --election-ms 150,
 * or 50 and 500 in a ThreadSanitizer build, whose nodes run several times slower; the caller's
 * flags override them) and keep their data directory across st_tcluster_kill /
 * st_tcluster_restart.
 */
#ifndef STRATA_TESTS_CLUSTER_HARNESS_H
#define STRATA_TESTS_CLUSTER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata/v1/admin.pb-c.h"
#include "tests/node/node_harness.h"

#define ST_TCLUSTER_MAX 5

typedef struct st_tcluster {
    size_t n;
    char tag[64];
    int ports[ST_TCLUSTER_MAX + 1];              /* by node id 1 … n */
    st_node_proc nodes[ST_TCLUSTER_MAX + 1];     /* by node id */
    st_rpc_client *clients[ST_TCLUSTER_MAX + 1]; /* by node id; for the test's main thread */
    char peers[512];
    const char *extra[24];   /* more flags for every node, NULL-terminated */
    char advertise_host[64]; /* "": none; else each node gets --advertise HOST:ITS_PORT */
} st_tcluster;

/* The --election-ms the harness gives nodes (see above). */
uint32_t st_tcluster_election_ms(void);

/* Start n nodes (ids 1 … n) with extra flags (may be NULL). False if they could not start. */
bool st_tcluster_start(st_tcluster *c, size_t n, const char *tag, const char *const *extra);

/* The same, each node started with --advertise advertise_host:ITS_PORT. */
bool st_tcluster_start_advertised(st_tcluster *c, size_t n, const char *tag,
                                  const char *const *extra, const char *advertise_host);

/*
 * SIGTERM node id (after closing the harness's channel to it: a client that holds an idle
 * connection and never reads the server's GOAWAY keeps the node's shutdown waiting for its
 * whole grace period) and wait for it; returns its exit status.
 */
int st_tcluster_stop_node(st_tcluster *c, uint32_t id);

/* SIGKILL node id and reap it. */
void st_tcluster_kill(st_tcluster *c, uint32_t id);

/* Start node id again, on its port and data directory. */
bool st_tcluster_restart(st_tcluster *c, uint32_t id);

/* Status of node id (unpacked; free with strata__v1__status_response__free_unpacked), or NULL
   if it does not answer within timeout_ms. */
Strata__V1__StatusResponse *st_tcluster_status(st_tcluster *c, uint32_t id, int64_t timeout_ms);

/*
 * The id of the leader once exactly one running node (not `except`) says it leads and every
 * other running node names it as its leader; 0 if that does not happen within timeout_ms.
 */
uint32_t st_tcluster_wait_leader(st_tcluster *c, int timeout_ms, uint32_t except);

/* A running node that is not the leader `leader`. */
uint32_t st_tcluster_follower(st_tcluster *c, uint32_t leader);

/* Print every node's log to stderr (for failures). */
void st_tcluster_dump_logs(st_tcluster *c);

/* SIGTERM every node; true if all exited 0. Then remove everything and free. */
bool st_tcluster_stop(st_tcluster *c);

#endif
