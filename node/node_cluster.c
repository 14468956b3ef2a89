/* node_cluster.c - a cluster node's replica and transport, wired together. */
#include "node/node_cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/log.h"
#include "node/peer_client.h"
#include "node/peer_link.h"
#include "node/repl_service.h"
#include "node/vote_client.h"

struct st_node_cluster {
    st_cluster cluster;
    st_peer_client *pc;
    st_vote_client *votes;
    st_peer_links *links;
    st_replica *r;
    st_repl_service *rs;
    bool stopped;

    /* Callbacks from replica threads read these; attach/stop write them. */
    pthread_mutex_t mu;
    st_kv_service *kv; /* guarded by mu */
    st_health *health; /* guarded by mu */
    bool have_r;       /* guarded by mu: r is set */
};

st_status st_node_cluster_data_dir(const char *data_dir, bool clustered, char *db_dir, size_t cap)
{
    size_t n = strlen(data_dir) + 32;
    char *path = malloc(n);
    if (!path)
        return st_error(ST_NO_MEMORY, "out of memory");
    st_status s = ST_OK;
    if (clustered) {
        snprintf(path, n, "%s/CURRENT", data_dir);
        if (access(path, F_OK) == 0) {
            s = st_error(ST_INVALID_ARGUMENT,
                         "%s holds a standalone database; a cluster node keeps its database in "
                         "%s/db (start it without --peers, or give the node an empty directory "
                         "and let the leader send it a snapshot)",
                         data_dir, data_dir);
            goto done;
        }
        if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
            s = st_errno_error(errno, "--data-dir %s", data_dir);
            goto done;
        }
        if (snprintf(db_dir, cap, "%s/db", data_dir) >= (int)cap)
            s = st_error(ST_INVALID_ARGUMENT, "--data-dir: path too long");
    } else {
        snprintf(path, n, "%s/raft_state", data_dir);
        bool raft = access(path, F_OK) == 0;
        snprintf(path, n, "%s/db/CURRENT", data_dir);
        if (raft || access(path, F_OK) == 0) {
            s = st_error(ST_INVALID_ARGUMENT,
                         "%s belongs to a cluster node (its database is in %s/db); start it "
                         "with --peers and --node-id",
                         data_dir, data_dir);
            goto done;
        }
        if (snprintf(db_dir, cap, "%s", data_dir) >= (int)cap)
            s = st_error(ST_INVALID_ARGUMENT, "--data-dir: path too long");
    }
done:
    free(path);
    return s;
}

/* ---- the replica's callbacks --------------------------------------------------------------- */

static void request_vote(void *ctx, uint32_t peer, const Strata__V1__VoteRequest *req)
{
    st_node_cluster *nc = ctx;
    st_vote_client_send(nc->votes, peer, req);
}

static void role_changed(void *ctx, st_role role, uint64_t term)
{
    st_node_cluster *nc = ctx;
    st_log(ST_LOG_INFO, "role", "role=%s term=%llu", st_role_name(role), (unsigned long long)term);
    st_peer_links_role(nc->links, role, term);
    /* Health follows the replica's role as it is now: events may arrive out of order. */
    pthread_mutex_lock(&nc->mu);
    if (nc->health && nc->have_r) {
        st_replica_info *info = malloc(sizeof(*info));
        if (info) {
            st_replica_info_get(nc->r, info);
            st_health_set_leader(nc->health, info->role == ST_ROLE_LEADER);
            free(info);
        }
    }
    pthread_mutex_unlock(&nc->mu);
}

static void on_applied(void *ctx, uint64_t seq)
{
    st_node_cluster *nc = ctx;
    pthread_mutex_lock(&nc->mu);
    if (nc->kv)
        st_kv_service_applied(nc->kv, seq);
    pthread_mutex_unlock(&nc->mu);
}

/* "leader node=2 term=5 ..." → event repl_leader, the rest as it is. */
static void replica_log(void *ctx, const char *line)
{
    (void)ctx;
    size_t w = strcspn(line, " ");
    const char *rest = line[w] ? line + w + 1 : "";
    char q[600];
    if (w == 5 && strncmp(line, "error", 5) == 0) {
        st_log(ST_LOG_WARN, "repl_error", "msg=%s", st_log_quote(q, sizeof(q), rest));
        return;
    }
    char event[48];
    snprintf(event, sizeof(event), "repl_%.*s", (int)(w < 40 ? w : 40), line);
    st_log(ST_LOG_INFO, event, "%s", rest);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

st_status st_node_cluster_create(const st_node_cluster_options *o, st_db *db, st_server *srv,
                                 st_node_cluster **out)
{
    *out = NULL;
    st_node_cluster *nc = calloc(1, sizeof(*nc));
    if (!nc)
        return st_error(ST_NO_MEMORY, "cluster: out of memory");
    nc->cluster = *o->cluster;
    pthread_mutex_init(&nc->mu, NULL);
    st_status s;
    if ((s = st_peer_client_create(&nc->cluster, o->node_id, &nc->pc)) != ST_OK)
        goto fail;
    /* A vote that has not come back within the shortest election timeout is of no use. */
    if ((s = st_vote_client_create(nc->pc, o->election_ms, &nc->votes)) != ST_OK)
        goto fail;
    if ((s = st_peer_links_create(nc->pc, &nc->cluster, o->node_id, o->heartbeat_ms, &nc->links)) !=
        ST_OK)
        goto fail;

    st_replica_options ro;
    st_replica_options_init(&ro);
    ro.node_id = o->node_id;
    ro.cluster = &nc->cluster;
    ro.state_dir = o->data_dir;
    ro.heartbeat_ms = o->heartbeat_ms;
    ro.election_ms = o->election_ms;
    ro.wal_retain_bytes = o->wal_retain_bytes;
    ro.advertise_addr = o->advertise_addr;
    ro.net = (st_replica_net){nc, request_vote, role_changed};
    ro.on_applied = on_applied;
    ro.on_applied_ctx = nc;
    ro.log = replica_log;
    ro.log_ctx = nc;
    st_replica *r = NULL;
    if ((s = st_replica_create(&ro, db, &r)) != ST_OK)
        goto fail;
    pthread_mutex_lock(&nc->mu);
    nc->r = r;
    nc->have_r = true;
    pthread_mutex_unlock(&nc->mu);
    st_vote_client_attach(nc->votes, r);
    st_peer_links_attach(nc->links, r);
    if ((s = st_repl_service_create(r, srv, &nc->rs)) != ST_OK)
        goto fail;
    *out = nc;
    return ST_OK;

fail:
    st_node_cluster_destroy(nc);
    return s;
}

st_replica *st_node_cluster_replica(st_node_cluster *nc)
{
    return nc->r;
}

void st_node_cluster_appended(void *ctx)
{
    st_node_cluster *nc = ctx;
    st_peer_links_kick(nc->links);
}

void st_node_cluster_attach(st_node_cluster *nc, st_kv_service *kv, st_health *health)
{
    pthread_mutex_lock(&nc->mu);
    nc->kv = kv;
    nc->health = health;
    if (health) {
        st_replica_info *info = malloc(sizeof(*info));
        bool leader = false;
        if (info) {
            st_replica_info_get(nc->r, info);
            leader = info->role == ST_ROLE_LEADER;
            free(info);
        }
        st_health_set_leader(health, leader);
    }
    pthread_mutex_unlock(&nc->mu);
}

void st_node_cluster_hand_over(st_node_cluster *nc, uint32_t timeout_ms)
{
    if (!nc || !nc->r)
        return;
    st_replica_info *info = malloc(sizeof(*info));
    if (!info)
        return;
    st_replica_info_get(nc->r, info);
    if (info->role == ST_ROLE_LEADER) {
        uint32_t pause_ms = 0;
        st_status s = st_replica_transfer(nc->r, 0, timeout_ms, &pause_ms);
        char q[600];
        if (s == ST_OK) {
            st_replica_info_get(nc->r, info);
            st_log(ST_LOG_INFO, "shutdown_hand_over", "leader=%u term=%llu pause_ms=%u",
                   info->leader_id, (unsigned long long)info->term, pause_ms);
        } else {
            st_log(ST_LOG_WARN, "shutdown_hand_over_failed", "status=%s reason=%s",
                   st_status_name(s), st_log_quote(q, sizeof(q), st_errmsg()));
        }
    }
    free(info);
}

void st_node_cluster_begin_shutdown(st_node_cluster *nc)
{
    if (nc && nc->rs)
        st_repl_service_begin_shutdown(nc->rs);
}

void st_node_cluster_stop(st_node_cluster *nc)
{
    if (!nc || nc->stopped)
        return;
    nc->stopped = true;
    /* Waiting writes fail now, ship_next returns ST_SHUTDOWN: the links end at once. */
    if (nc->r)
        st_replica_shutdown(nc->r);
    if (nc->links)
        st_peer_links_stop(nc->links);
    if (nc->votes)
        st_vote_client_stop(nc->votes);
    pthread_mutex_lock(&nc->mu);
    nc->kv = NULL;
    nc->health = NULL;
    pthread_mutex_unlock(&nc->mu);
}

void st_node_cluster_destroy(st_node_cluster *nc)
{
    if (!nc)
        return;
    st_node_cluster_stop(nc);
    /* Its threads may still call request_vote and role_changed until joined: both are no-ops
       on a stopped transport. */
    st_replica_destroy(nc->r);
    st_vote_client_destroy(nc->votes);
    st_peer_links_destroy(nc->links);
    st_peer_client_destroy(nc->pc);
    st_repl_service_destroy(nc->rs);
    pthread_mutex_destroy(&nc->mu);
    free(nc);
}
