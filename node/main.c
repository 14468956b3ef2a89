/*
 * main.c - strata-node: one database served over gRPC.
 *
 * Start: settings (config.h), the engine (st_db_open), gRPC with the KV, Admin, Health and
 * reflection services, listen, write --port-file, log `listening`. With --peers naming two
 * members or more the node is a cluster node (node_cluster.h): its engine lives in
 * DATA_DIR/db and is opened in pending mode, a replica decides what is committed, and
 * strata.v1.Replication is served too; otherwise it is a standalone node. The main thread is the
 * signal thread: SIGINT and SIGTERM are blocked in every thread (before grpc_init, so gRPC's
 * own threads inherit the mask) and the main thread takes them with sigwait.
 *
 * Stop (first SIGINT or SIGTERM): health goes NOT_SERVING (watchers are told), parked reads are
 * answered UNAVAILABLE, the server stops accepting; in-flight calls get --shutdown-grace-ms to
 * finish, then the rest are cancelled; queued writes are written and answered; the server is
 * destroyed; then st_db_flush and st_db_close. A cluster node also ends its inbound Replicate
 * streams when shutdown begins, and once calls are done stops its replica (writes still
 * waiting for their acknowledgement get UNAVAILABLE), links and vote calls before the server
 * is destroyed. A stopping leader first hands leadership to its most up-to-date follower
 * (waiting at most a second), so that the others need not wait out an election timeout. Exit 0 if
 * all of that went well. Should gRPC fail to complete the cancelled calls within 10 s more, the
 * node flushes and exits 1 without the rest (seen once, under TSan, with an uninstrumented gRPC).
 *
 * Exit status: 0 clean stop, 1 could not start (port in use, data directory locked or damaged)
 * or the final flush failed, 2 usage error.
 */
#include <errno.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/db.h"
#include "node/admin_service.h"
#include "node/config.h"
#include "node/health.h"
#include "node/kv_service.h"
#include "node/log.h"
#include "node/node_cluster.h"
#include "node/reflection.h"
#include "node/server.h"

/* After cancelling every call, how long gRPC gets to complete them before we give up. */
#define STUCK_MS 10000

/* How long a stopping leader tries to hand leadership over before it just leaves. */
#define HAND_OVER_MS 1000

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

static void engine_log(void *ctx, const char *line)
{
    char q[1024];
    st_log(ST_LOG_INFO, "engine", "msg=%s", st_log_quote(q, sizeof(q), line));
}

/* Write the port to path atomically: a reader sees no file or the whole number. */
static st_status write_port_file(const char *path, int port)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return st_error(ST_NO_MEMORY, "out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    st_status s = ST_OK;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        s = st_errno_error(errno, "--port-file %s", tmp);
        goto done;
    }
    int w = fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || w < 0) {
        s = st_errno_error(errno, "--port-file %s", tmp);
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = st_errno_error(errno, "--port-file %s", path);
        unlink(tmp);
    }
done:
    free(tmp);
    return s;
}

/* "127.0.0.1:0" bound to 41234 → "127.0.0.1:41234". */
static void bound_address(const char *listen, int port, char *out, size_t n)
{
    const char *colon = strrchr(listen, ':');
    int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(out, n, "%.*s:%d", host_len, listen, port);
}

static const char *sync_name(st_sync_policy p)
{
    return p == ST_SYNC_ALWAYS ? "always" : p == ST_SYNC_INTERVAL ? "interval" : "none";
}

int main(int argc, char **argv)
{
    st_node_config cfg;
    st_config_defaults(&cfg);
    bool help = false;
    if (st_config_parse(&cfg, argc, argv, &help) != ST_OK) {
        fprintf(stderr, "strata-node: %s\n(see strata-node --help)\n", st_errmsg());
        return 2;
    }
    if (help) {
        st_config_usage(stdout, "strata-node");
        return 0;
    }
    st_log_set_level(cfg.log_level);

    /* Before grpc_init and before any thread: every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    char q[1200];
    st_cluster members;
    bool clustered = false;
    /* Validated by st_config_parse already. */
    (void)st_config_cluster(&cfg, &members, &clustered);
    st_node_cluster *nc = NULL;
    st_replica *replica = NULL;
    st_db *db = NULL;
    st_server *srv = NULL;
    st_kv_service *kv = NULL;
    st_admin_service *admin = NULL;
    st_health *health = NULL;
    st_reflection *refl = NULL;
    bool grpc_up = false;
    bool serving = false;

    st_options o;
    st_options_init(&o);
    o.sync = cfg.sync;
    o.sync_interval_ms = cfg.sync_interval_ms;
    o.memtable_bytes = cfg.memtable_bytes;
    o.block_cache_bytes = cfg.block_cache_bytes;
    o.max_key_bytes = cfg.max_key_bytes;
    o.max_value_bytes = cfg.max_value_bytes;
    o.log = engine_log;
    o.replay = clustered ? ST_REPLAY_PENDING : ST_REPLAY_ALL;
    char db_dir[ST_CONFIG_PATH_MAX + 8];
    st_status s = st_node_cluster_data_dir(cfg.data_dir, clustered, db_dir, sizeof(db_dir));
    if (s != ST_OK) {
        st_log(ST_LOG_ERROR, "open_failed", "data_dir=%s reason=%s",
               st_log_quote(q, 600, cfg.data_dir), st_log_quote(q + 600, 600, st_errmsg()));
        fprintf(stderr, "strata-node: %s\n", st_errmsg());
        goto out;
    }
    s = st_db_open(db_dir, &o, &db);
    if (s != ST_OK) {
        const char *why = s == ST_BUSY ? "the data directory is locked by another process "
                                         "(is another strata-node using it?)"
                                       : st_status_name(s);
        st_log(ST_LOG_ERROR, "open_failed", "data_dir=%s status=%s reason=%s",
               st_log_quote(q, 600, cfg.data_dir), st_status_name(s),
               st_log_quote(q + 600, 600, st_errmsg()));
        fprintf(stderr, "strata-node: cannot open %s: %s: %s\n", cfg.data_dir, why, st_errmsg());
        goto out;
    }
    uint64_t last, term, applied;
    st_db_log_state(db, &last, &term, &applied);
    st_log(ST_LOG_INFO, "db_open", "data_dir=%s last_seq=%llu sync=%s",
           st_log_quote(q, sizeof(q), cfg.data_dir), (unsigned long long)last, sync_name(cfg.sync));
    if (clustered) {
        st_log(ST_LOG_INFO, "cluster", "node_id=%llu members=%zu last_term=%llu applied_seq=%llu",
               (unsigned long long)cfg.node_id, members.n, (unsigned long long)term,
               (unsigned long long)applied);
        /* Resolve peers' names with the system resolver (c-ares leaks under ASan). */
        setenv("GRPC_DNS_RESOLVER", "native", 0);
    }

    grpc_init();
    grpc_up = true;
    st_server_options so = {
        .listen = cfg.listen,
        .workers = cfg.workers,
        .max_message_bytes = cfg.max_message_bytes,
        .max_concurrent_calls = cfg.max_concurrent_calls,
        /* An Append holds up to 1 MiB of records plus one record, and a record at most one
           writer group (capped below at --max-message-bytes) plus its framing. */
        .max_peer_message_bytes = clustered ? cfg.max_message_bytes + (2u << 20) : 0,
    };
    s = st_server_create(&so, &srv);
    if (s == ST_OK && clustered) {
        st_node_cluster_options co = {
            .cluster = &members,
            .node_id = (uint32_t)cfg.node_id,
            .data_dir = cfg.data_dir,
            .heartbeat_ms = cfg.heartbeat_ms,
            .election_ms = cfg.election_ms,
            .wal_retain_bytes = cfg.wal_retain_bytes,
            .advertise_addr = cfg.advertise,
        };
        s = st_node_cluster_create(&co, db, srv, &nc);
        if (s == ST_OK)
            replica = st_node_cluster_replica(nc);
    }
    if (s == ST_OK) {
        st_kv_options ko = {
            .max_key_bytes = cfg.max_key_bytes,
            .max_value_bytes = cfg.max_value_bytes,
            .replica = replica,
            .default_ack = cfg.default_ack,
            .max_group_bytes =
                clustered && cfg.max_message_bytes < (8u << 20) ? cfg.max_message_bytes : 0,
            .appended = nc ? st_node_cluster_appended : NULL,
            .appended_ctx = nc,
        };
        s = st_kv_service_create(db, srv, &ko, &kv);
    }
    if (s == ST_OK) {
        st_admin_options ao = {cfg.node_id, "standalone", STRATA_VERSION, replica};
        s = st_admin_service_create(db, srv, &ao, &admin);
    }
    if (s == ST_OK)
        s = st_health_create(srv, &health);
    if (s == ST_OK)
        s = st_reflection_create(srv, &refl);
    if (s == ST_OK && nc)
        st_node_cluster_attach(nc, kv, health);
    if (s != ST_OK) {
        st_log(ST_LOG_ERROR, "start_failed", "reason=%s", st_log_quote(q, sizeof(q), st_errmsg()));
        fprintf(stderr, "strata-node: %s\n", st_errmsg());
        goto out;
    }
    int port = 0;
    s = st_server_start(srv, &port);
    if (s != ST_OK) {
        st_log(ST_LOG_ERROR, "listen_failed", "addr=%s reason=%s", cfg.listen,
               st_log_quote(q, sizeof(q), st_errmsg()));
        fprintf(stderr, "strata-node: %s\n", st_errmsg());
        goto out;
    }
    char addr[300];
    bound_address(cfg.listen, port, addr, sizeof(addr));
    st_log(ST_LOG_INFO, "listening", "addr=%s node_id=%llu workers=%u version=%s", addr,
           (unsigned long long)cfg.node_id, cfg.workers, STRATA_VERSION);
    /* Last: whoever waits for the port file finds the log complete up to here. */
    if (cfg.port_file[0]) {
        s = write_port_file(cfg.port_file, port);
        if (s != ST_OK) {
            fprintf(stderr, "strata-node: %s\n", st_errmsg());
            goto out;
        }
    }

    serving = true;
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    st_log(ST_LOG_INFO, "shutdown", "signal=%s grace_ms=%u", sig == SIGINT ? "SIGINT" : "SIGTERM",
           cfg.shutdown_grace_ms);
    rc = 0;

out:
    /* Shutdown: the order matters, see the comment at the top. */
    if (health)
        st_health_shutdown(health);
    if (serving)
        st_node_cluster_hand_over(nc, HAND_OVER_MS);
    if (kv)
        st_kv_service_begin_shutdown(kv);
    if (serving) {
        st_server_begin_shutdown(srv);
        st_node_cluster_begin_shutdown(nc);
        if (!st_server_wait_calls(srv, cfg.shutdown_grace_ms)) {
            st_log(ST_LOG_WARN, "shutdown_cancel", "calls=%u", st_server_active_calls(srv));
            /* Writes still waiting for their acknowledgement level hold their calls: fail
               them (UNAVAILABLE) by stopping the replica. */
            st_node_cluster_stop(nc);
            st_server_cancel_all(srv);
            if (!st_server_wait_calls(srv, STUCK_MS)) {
                /* gRPC did not complete a cancelled call: the server cannot be destroyed, and
                   calls still hold engine iterators. Make the data durable and leave. */
                st_log(ST_LOG_ERROR, "shutdown_stuck", "waited_ms=%u", STUCK_MS);
                st_kv_service_stop(kv);
                s = st_db_flush(db);
                st_log(ST_LOG_ERROR, "stopped", "status=1 flush=%s", st_status_name(s));
                _exit(1);
            }
        }
    }
    st_kv_service_stop(kv);
    st_node_cluster_stop(nc);
    st_admin_service_stop(admin);
    st_server_destroy(srv);
    st_node_cluster_destroy(nc);
    st_kv_service_destroy(kv);
    st_admin_service_destroy(admin);
    st_health_destroy(health);
    st_reflection_destroy(refl);
    if (grpc_up)
        grpc_shutdown_blocking(); /* everything freed before exit (leak checkers) */
    if (db) {
        if (rc == 0) {
            s = st_db_flush(db);
            if (s != ST_OK) {
                st_log(ST_LOG_ERROR, "flush_failed", "reason=%s",
                       st_log_quote(q, sizeof(q), st_errmsg()));
                rc = 1;
            }
        }
        st_db_close(db);
        st_log(ST_LOG_INFO, "stopped", "status=%d", rc);
    }
    return rc;
}
