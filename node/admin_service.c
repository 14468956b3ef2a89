/* admin_service.c - strata.v1.Admin: Status, Promote, StepDown. */
#include "node/admin_service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/v1/admin.pb-c.h"

/* Hand-overs wait at most this long; a call without a deadline gets DEFAULT_TRANSFER_MS. */
#define MAX_TRANSFER_MS     10000
#define DEFAULT_TRANSFER_MS 5000

struct st_admin_service {
    st_db *db;
    st_server *srv;
    st_admin_options o;
    struct timespec started; /* CLOCK_MONOTONIC */

    pthread_mutex_t mu;
    bool busy;        /* guarded by mu: a hand-over thread is running */
    bool joinable;    /* guarded by mu: `thread` has not been joined */
    bool stopped;     /* guarded by mu */
    pthread_t thread; /* the last hand-over's */
};

/* One Promote or StepDown in progress, owned by its thread. */
typedef struct transfer {
    st_admin_service *a;
    st_call *call;
    uint32_t target; /* 0: the most up-to-date follower */
    uint32_t timeout_ms;
} transfer;

static void handle_status(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_admin_service *a = svc;
    /* StatusRequest has no fields, but its bytes must still parse. */
    Strata__V1__StatusRequest *q = NULL;
    if (has_req)
        q = strata__v1__status_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "Status: the request does not parse as strata.v1.StatusRequest"
                             : "Status: no request message was sent");
        return;
    }
    strata__v1__status_request__free_unpacked(q, NULL);

    st_stats st;
    st_status s = st_db_stats(a->db, &st);
    if (s != ST_OK) {
        st_call_fail(call, GRPC_STATUS_INTERNAL, "Status: %s: %s", st_status_name(s), st_errmsg());
        return;
    }
    Strata__V1__StatusResponse r = STRATA__V1__STATUS_RESPONSE__INIT;
    Strata__V1__LevelStatus levels[ST_NUM_LEVELS];
    Strata__V1__LevelStatus *lp[ST_NUM_LEVELS];
    for (int i = 0; i < ST_NUM_LEVELS; i++) {
        strata__v1__level_status__init(&levels[i]);
        levels[i].level = (uint32_t)i;
        levels[i].files = st.levels[i].files;
        levels[i].bytes = st.levels[i].bytes;
        lp[i] = &levels[i];
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r.node_id = a->o.node_id;
    r.role = (char *)a->o.role;
    r.last_seq = st.last_seq;
    r.applied_seq = st.applied_seq;
    r.flushed_seq = st.flushed_seq;
    r.memtable_bytes = st.memtable_bytes;
    r.immutables = st.immutables;
    r.immutable_bytes = st.immutable_bytes;
    r.n_levels = ST_NUM_LEVELS;
    r.levels = lp;
    r.flushes = st.flushes;
    r.flush_bytes = st.flush_bytes;
    r.compactions = st.compactions;
    r.compaction_bytes_read = st.compaction_bytes_read;
    r.compaction_bytes_written = st.compaction_bytes_written;
    r.stalls = st.stalls;
    r.stall_micros = st.stall_micros;
    r.stall_timeouts = st.stall_timeouts;
    r.wal_segments = st.wal_segments;
    r.wal_bytes = st.wal_bytes;
    r.uptime_seconds = (uint64_t)(now.tv_sec - a->started.tv_sec);
    r.version = (char *)a->o.version;
    r.writes = st.writes;
    r.write_groups = st.write_groups;
    r.wal_syncs = st.wal_syncs;
    r.active_calls = st_server_active_calls(a->srv);
    char bg[300] = "";
    if (st.bg_status != ST_OK) {
        st.bg_message[sizeof(st.bg_message) - 1] = '\0';
        snprintf(bg, sizeof(bg), "%s: %s", st_status_name(st.bg_status), st.bg_message);
    }
    r.background_error = bg;

    st_replica_info *info = NULL;
    Strata__V1__PeerStatus peers[ST_MAX_MEMBERS], *pp[ST_MAX_MEMBERS];
    if (a->o.replica && (info = malloc(sizeof(*info))) != NULL) {
        st_replica_info_get(a->o.replica, info);
        r.role = (char *)st_role_name(info->role);
        r.term = info->term;
        r.leader_id = info->leader_id;
        r.leader_addr = info->leader_addr;
        r.commit_seq = info->commit_seq;
        r.last_term = info->last_term;
        for (uint32_t i = 0; i < info->npeers && i < ST_MAX_MEMBERS; i++) {
            strata__v1__peer_status__init(&peers[i]);
            peers[i].id = info->peers[i].id;
            peers[i].address = info->peers[i].addr;
            peers[i].match_seq = info->peers[i].match_seq;
            peers[i].lag_records = info->peers[i].lag_records;
            peers[i].lag_ms = info->peers[i].lag_ms;
            peers[i].lag_bytes = info->peers[i].lag_bytes;
            peers[i].state = (char *)(info->peers[i].state ? info->peers[i].state : "");
            pp[i] = &peers[i];
        }
        r.n_peers = info->npeers < ST_MAX_MEMBERS ? info->npeers : ST_MAX_MEMBERS;
        r.peers = pp;
        r.elections = info->elections;
        r.leader_changes = info->leader_changes;
        r.snapshots_sent = info->snapshots_sent;
        r.snapshots_installed = info->snapshots_installed;
    } else if (a->o.replica) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "Status: out of memory");
        return;
    }
    st_call_reply(call, &r.base);
    free(info);
}

/* ---- hand-overs -------------------------------------------------------------------------- */

/* FAILED_PRECONDITION for a node that does not lead, naming the leader when it is known. */
static void fail_not_leader(st_admin_service *a, st_call *call, const char *what, const char *msg)
{
    char addr[256] = "";
    st_replica_leader_addr(a->o.replica, addr, sizeof(addr));
    if (addr[0])
        st_call_add_trailer(call, "strata-leader", addr);
    st_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION, "%s: %s (send it to the leader)", what,
                 msg);
}

static void *transfer_main(void *arg)
{
    transfer *t = arg;
    pthread_setname_np(pthread_self(), "st-transfer");
    st_admin_service *a = t->a;
    st_call *call = t->call;
    const char *what = t->target ? "Promote" : "StepDown";
    uint32_t pause_ms = 0;
    st_status s = st_replica_transfer(a->o.replica, t->target, t->timeout_ms, &pause_ms);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", st_errmsg());
    if (s == ST_OK) {
        st_replica_info *info = malloc(sizeof(*info));
        if (!info) {
            st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s: out of memory", what);
        } else {
            st_replica_info_get(a->o.replica, info);
            Strata__V1__TransferResponse resp = STRATA__V1__TRANSFER_RESPONSE__INIT;
            resp.leader_id = info->leader_id;
            resp.leader_addr = info->leader_addr;
            resp.term = info->term;
            resp.pause_ms = pause_ms;
            st_call_reply(call, &resp.base);
            free(info);
        }
    } else if (s == ST_NOT_LEADER) {
        fail_not_leader(a, call, what, msg);
    } else if (s == ST_TIMEOUT) {
        st_call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED, "%s: %s", what, msg);
    } else if (s == ST_INVALID_ARGUMENT) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", what, msg);
    } else {
        st_call_fail(call, GRPC_STATUS_INTERNAL, "%s: %s: %s", what, st_status_name(s), msg);
    }
    free(t);
    pthread_mutex_lock(&a->mu);
    a->busy = false;
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Start a hand-over to `target` on a thread of ours, or answer the call now. */
static void start_transfer(st_admin_service *a, st_call *call, uint32_t target)
{
    const char *what = target ? "Promote" : "StepDown";
    if (!a->o.replica) {
        st_call_fail(call, GRPC_STATUS_FAILED_PRECONDITION,
                     "%s: this node is standalone (no --peers): there is no leadership to hand "
                     "over",
                     what);
        return;
    }
    int64_t deadline = st_call_deadline_ns(call);
    uint32_t timeout_ms = DEFAULT_TRANSFER_MS;
    if (deadline != INT64_MAX) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t left = (deadline - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec)) / 1000000;
        /* Leave a little of the deadline for the answer itself. */
        left -= left > 200 ? 100 : 0;
        timeout_ms = left < 1 ? 1 : left > MAX_TRANSFER_MS ? MAX_TRANSFER_MS : (uint32_t)left;
    }
    transfer *t = malloc(sizeof(*t));
    if (!t) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s: out of memory", what);
        return;
    }
    *t = (transfer){a, call, target, timeout_ms};
    pthread_mutex_lock(&a->mu);
    if (a->stopped || a->busy) {
        bool stopped = a->stopped;
        pthread_mutex_unlock(&a->mu);
        free(t);
        if (stopped)
            st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "%s: the node is shutting down", what);
        else
            st_call_fail(call, GRPC_STATUS_ABORTED, "%s: a hand-over is already in progress", what);
        return;
    }
    if (a->joinable) {
        /* The last hand-over's thread is done (busy is false) or about to return. */
        pthread_join(a->thread, NULL);
        a->joinable = false;
    }
    a->busy = true;
    if (pthread_create(&a->thread, NULL, transfer_main, t) != 0) {
        a->busy = false;
        pthread_mutex_unlock(&a->mu);
        free(t);
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s: cannot start a thread", what);
        return;
    }
    a->joinable = true;
    pthread_mutex_unlock(&a->mu);
}

static void handle_promote(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    Strata__V1__PromoteRequest *q = NULL;
    if (has_req)
        q = strata__v1__promote_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "Promote: the request does not parse as strata.v1.PromoteRequest"
                             : "Promote: no request message was sent");
        return;
    }
    uint32_t target = q->node_id;
    strata__v1__promote_request__free_unpacked(q, NULL);
    if (target == 0) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "Promote: node_id is required (StepDown picks a follower itself)");
        return;
    }
    start_transfer(svc, call, target);
}

static void handle_step_down(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    Strata__V1__StepDownRequest *q = NULL;
    if (has_req)
        q = strata__v1__step_down_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "StepDown: the request does not parse as strata.v1.StepDownRequest"
                             : "StepDown: no request message was sent");
        return;
    }
    strata__v1__step_down_request__free_unpacked(q, NULL);
    start_transfer(svc, call, 0);
}

st_status st_admin_service_create(st_db *db, st_server *srv, const st_admin_options *o,
                                  st_admin_service **out)
{
    *out = NULL;
    st_admin_service *a = calloc(1, sizeof(*a));
    if (!a)
        return st_error(ST_NO_MEMORY, "admin: out of memory");
    a->db = db;
    a->srv = srv;
    a->o = *o;
    clock_gettime(CLOCK_MONOTONIC, &a->started);
    pthread_mutex_init(&a->mu, NULL);
    /* Not counted toward --max-concurrent-calls: a saturated node must still show its state,
       and must still be able to hand leadership over. */
    const st_method methods[] = {
        {"/strata.v1.Admin/Status", ST_METHOD_UNARY, false, handle_status, a, false},
        {"/strata.v1.Admin/Promote", ST_METHOD_UNARY, false, handle_promote, a, false},
        {"/strata.v1.Admin/StepDown", ST_METHOD_UNARY, false, handle_step_down, a, false},
    };
    st_status s = ST_OK;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]) && s == ST_OK; i++)
        s = st_server_add_method(srv, &methods[i]);
    if (s != ST_OK) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        return s;
    }
    *out = a;
    return ST_OK;
}

void st_admin_service_stop(st_admin_service *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopped = true;
    bool join = a->joinable;
    a->joinable = false;
    pthread_mutex_unlock(&a->mu);
    /* No new thread can start now, so joining outside mu is safe. */
    if (join)
        pthread_join(a->thread, NULL);
}

void st_admin_service_destroy(st_admin_service *a)
{
    if (!a)
        return;
    st_admin_service_stop(a);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
