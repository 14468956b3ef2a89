/* admin_service.c - strata.v1.Admin/Status. */
#include "node/admin_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strata/v1/admin.pb-c.h"

struct st_admin_service {
    st_db *db;
    st_server *srv;
    st_admin_options o;
    struct timespec started; /* CLOCK_MONOTONIC */
};

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
    st_call_reply(call, &r.base);
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
    /* Not counted toward --max-concurrent-calls: a saturated node must still show its state. */
    const st_method m = {"/strata.v1.Admin/Status", ST_METHOD_UNARY, false, handle_status, a};
    st_status s = st_server_add_method(srv, &m);
    if (s != ST_OK) {
        free(a);
        return s;
    }
    *out = a;
    return ST_OK;
}

void st_admin_service_destroy(st_admin_service *a)
{
    free(a);
}
