/*
 * config.h - strata-node's settings: defaults, an optional INI file, command-line flags.
 *
 * Precedence: defaults < the file named by --config < the other flags (a flag always wins,
 * wherever it stands on the command line). The file uses the flag names without the dashes,
 * `-` and `_` alike, in a [node] section or before any section:
 *
 *     [node]
 *     listen = 0.0.0.0:7400
 *     data_dir = /var/lib/strata
 *     sync = interval
 *     memtable_bytes = 64M
 *     peers = 1=10.0.0.1:7400,2=10.0.0.2:7400,3=10.0.0.3:7400
 *
 * Cluster mode: with --peers naming two members or more (this node included, by --node-id)
 * the node replicates (node/node_cluster.h); without --peers, or with this node as the only
 * member, it is a standalone node exactly as before.
 *
 * Byte sizes take a K, M or G suffix (powers of 1024; KiB/MiB/GiB also accepted).
 * `strata-node --help` documents every flag (st_config_usage).
 */
#ifndef STRATA_NODE_CONFIG_H
#define STRATA_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/db.h"
#include "engine/status.h"
#include "node/log.h"
#include "replication/cluster.h"
#include "replication/replica.h"

#define ST_CONFIG_PATH_MAX 4096

typedef struct st_node_config {
    char listen[256];                     /* --listen, default 127.0.0.1:7400 */
    char data_dir[ST_CONFIG_PATH_MAX];    /* --data-dir, default ./strata-data */
    uint64_t node_id;                     /* --node-id, default 1 */
    st_sync_policy sync;                  /* --sync, default always */
    uint32_t sync_interval_ms;            /* --sync-interval-ms, default 100 */
    size_t memtable_bytes;                /* --memtable-bytes, default 4 MiB */
    size_t block_cache_bytes;             /* --block-cache-bytes, default 8 MiB */
    size_t max_key_bytes;                 /* --max-key-bytes, default 8 KiB */
    size_t max_value_bytes;               /* --max-value-bytes, default 4 MiB */
    size_t max_message_bytes;             /* --max-message-bytes, default 16 MiB */
    uint32_t max_concurrent_calls;        /* --max-concurrent-calls, default 10000 */
    uint32_t workers;                     /* --workers, default: online CPUs, 1 … 16 */
    uint32_t shutdown_grace_ms;           /* --shutdown-grace-ms, default 5000 */
    char port_file[ST_CONFIG_PATH_MAX];   /* --port-file, default none ("") */
    char config_file[ST_CONFIG_PATH_MAX]; /* --config, default none ("") */
    st_log_level log_level;               /* --log-level, default info */
    char peers[4096];                     /* --peers, default none ("": standalone) */
    char advertise[256];                  /* --advertise, default "" (the --peers address) */
    uint32_t heartbeat_ms;                /* --heartbeat-ms, default 30 */
    uint32_t election_ms;                 /* --election-ms, default 150 */
    size_t wal_retain_bytes;              /* --wal-retain-bytes, default 256 MiB */
    st_ack_level default_ack;             /* --default-ack, default majority */
} st_node_config;

/* Fill *c with the defaults. */
void st_config_defaults(st_node_config *c);

/*
 * Parse argv (argv[0] is the program name) over *c: first the file named by --config, if any,
 * then every other flag. *help is set when --help was given (nothing else is checked then).
 * Returns ST_OK, or ST_INVALID_ARGUMENT with a message (st_errmsg) naming the flag, or the file
 * and line, at fault. Uses getopt_long: not thread-safe, call from main.
 */
st_status st_config_parse(st_node_config *c, int argc, char **argv, bool *help);

/*
 * Apply one INI file over *c. ST_NOT_FOUND / ST_IO_ERROR when it cannot be read,
 * ST_INVALID_ARGUMENT with "<path>:<line>: ..." for an unknown key or a bad value.
 */
st_status st_config_load_file(st_node_config *c, const char *path);

/* Check the settings against each other and the engine's hard limits. */
st_status st_config_validate(const st_node_config *c);

/*
 * The members named by --peers (out->n == 0 when there are none) and whether they make this
 * node a cluster node (two members or more). ST_INVALID_ARGUMENT if --peers does not parse or
 * does not name --node-id.
 */
st_status st_config_cluster(const st_node_config *c, st_cluster *out, bool *clustered);

/* Write the --help text to `out`. */
void st_config_usage(FILE *out, const char *prog);

/* Parse a byte size ("4096", "64K", "16MiB", "1G"). False if malformed or over SIZE_MAX. */
bool st_config_parse_size(const char *s, size_t *out);

#endif
