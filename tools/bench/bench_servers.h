/*
 * bench_servers.h - servers strata-bench starts for itself: strata-node (one, or a cluster of
 * three) and etcd (one member, or three), each on loopback ports with its data in a directory
 * of its own, for `strata-bench rpc`.
 *
 * Every server is a child process (stderr and stdout to DIR/NAME.log) that gets SIGKILL if the
 * benchmark dies (PR_SET_PDEATHSIG). A group keeps its ports and data directories across
 * stop/start, so a restarted group holds what it held before. After st_bench_servers_start the
 * group is ready: every member answers, and exactly one member leads (for a single server, that
 * one); `leader_addr` is where writes and linearizable reads go.
 *
 * Call from one thread. gRPC must be initialised (st_rpc_init) before start and stays in use by
 * the caller; the children are started with fork + exec only.
 */
#ifndef STRATA_TOOLS_BENCH_SERVERS_H
#define STRATA_TOOLS_BENCH_SERVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/status.h"

#define ST_BENCH_MAX_MEMBERS 3

typedef enum st_bench_system { ST_BENCH_STRATA, ST_BENCH_ETCD } st_bench_system;

typedef struct st_bench_servers {
    st_bench_system sys;
    size_t n;                             /* members: 1 or 3 */
    char dir[4096];                       /* the group's directory (borrowed from the caller) */
    char bin[4096];                       /* strata-node or etcd */
    int ports[ST_BENCH_MAX_MEMBERS];      /* client ports */
    int peer_ports[ST_BENCH_MAX_MEMBERS]; /* etcd: peer ports; strata: unused */
    pid_t pids[ST_BENCH_MAX_MEMBERS];     /* 0 when not running */
    bool started[ST_BENCH_MAX_MEMBERS];   /* started by us and not stopped by us since */
    char addrs[ST_BENCH_MAX_MEMBERS][64]; /* "127.0.0.1:PORT" per member */
    size_t leader;                        /* index of the leader once started */
    char leader_addr[64];
    char describe[512];   /* the command line of member 0, for the report */
    const char *extra[8]; /* more flags for every member, NULL-terminated (borrowed) */
    const char *sync;     /* strata: the WAL sync policy (NULL: always, etcd's durability) */
} st_bench_servers;

/*
 * Prepare a group of n (1 or 3) members of `sys` that will run `bin` with its data under `dir`
 * (an existing directory, used for this group only). Picks free loopback ports. Starts nothing.
 */
st_status st_bench_servers_init(st_bench_servers *g, st_bench_system sys, size_t n, const char *bin,
                                const char *dir);

/* Start every member and wait (up to timeout_ms) until the group is ready; fills leader. On
   failure every member is stopped again and the message names the member and its log. */
st_status st_bench_servers_start(st_bench_servers *g, int64_t timeout_ms);

/* Start the first `count` members only (the others stay down; a majority of a 3-member group
   is 2) and wait until they are ready as above. */
st_status st_bench_servers_start_some(st_bench_servers *g, size_t count, int64_t timeout_ms);

/* Start member i (if it is not running) without waiting for anything. */
st_status st_bench_servers_spawn(st_bench_servers *g, size_t i);

/* SIGTERM every running member and wait for it (SIGKILL after 20 s). ST_OK if all exited 0
   (etcd: or by SIGTERM). Idempotent. */
st_status st_bench_servers_stop(st_bench_servers *g);

/* The CPU time (utime + stime, clock ticks) every running member used so far. */
uint64_t st_bench_servers_ticks(const st_bench_servers *g);

/* True while every member started (and not stopped since) is still running. */
bool st_bench_servers_alive(st_bench_servers *g);

#endif
