/* peer_link.c - Replicate streams from the leader to each peer. */
#include "node/peer_link.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/log.h"
#include "node/status_codes.h"

/* How often a thread waiting for a send checks whether it should give up on it. */
#define SEND_CHECK_MS 100

/* Messages shorter than this are looked into: an Append without records is one of them. */
#define SMALL_MESSAGE 1024

typedef struct plink plink;

struct st_peer_links {
    st_peer_client *pc;
    plink *links;
    size_t n;
    int64_t heartbeat_ns;
    atomic_uint_fast64_t appends; /* st_peer_links_kick calls */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    st_replica *r;      /* guarded by mu; set once */
    uint64_t lead_term; /* guarded by mu: the newest term we were told about */
    bool leading;       /* guarded by mu: and whether we lead it */
    bool stopping;      /* guarded by mu */
};

/* One peer's link. The fields under "stream" describe the current call. */
struct plink {
    st_peer_links *pl;
    uint32_t peer;
    char addr[256];
    pthread_t thread;
    bool started;
    uint64_t served;      /* link thread only: the last term it ran */
    uint64_t rng;         /* link thread only */
    int64_t last_send_ns; /* link thread only: when the stream last sent (0: not yet) */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* stream: all guarded by mu */
    st_replica *r;
    grpc_call *call;
    uint64_t term;
    int pending; /* operations started and not completed */
    bool broken; /* the call is over or failing: no more sends */
    bool sending, send_ok, cancelled;
    uint64_t acked;   /* highest last_seq answered on this stream */
    bool up;          /* an answer arrived since the last link_down */
    bool down_logged; /* link_down logged in this term */
    grpc_byte_buffer *send_buf, *recv_buf;
    grpc_metadata_array imd, tmd;
    grpc_status_code code;
    grpc_slice details;
    bool have_status;
    st_peer_tag t_start, t_status, t_recv, t_send;
};

/* ---- completions (poller thread) --------------------------------------------------------- */

static void op_done_locked(plink *l)
{
    l->pending--;
    pthread_cond_broadcast(&l->cv);
}

static void on_start(void *ctx, bool ok)
{
    plink *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (!ok)
        l->broken = true;
    op_done_locked(l);
    pthread_mutex_unlock(&l->mu);
}

static void on_status(void *ctx, bool ok)
{
    plink *l = ctx;
    pthread_mutex_lock(&l->mu);
    l->broken = true;
    l->have_status = ok;
    op_done_locked(l);
    pthread_mutex_unlock(&l->mu);
}

static void on_send(void *ctx, bool ok)
{
    plink *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (l->send_buf)
        grpc_byte_buffer_destroy(l->send_buf);
    l->send_buf = NULL;
    l->sending = false;
    l->send_ok = ok;
    if (!ok)
        l->broken = true;
    op_done_locked(l);
    pthread_mutex_unlock(&l->mu);
}

/* Start a RECV_MESSAGE (mu held); false if it could not be started. */
static bool post_recv_locked(plink *l)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &l->recv_buf;
    if (st_peer_start_batch(l->call, &op, 1, &l->t_recv) != GRPC_CALL_OK)
        return false;
    l->pending++;
    return true;
}

static void on_recv(void *ctx, bool ok)
{
    plink *l = ctx;
    pthread_mutex_lock(&l->mu);
    grpc_byte_buffer *bb = l->recv_buf;
    l->recv_buf = NULL;
    st_replica *r = l->r;
    uint64_t term = l->term;
    pthread_mutex_unlock(&l->mu);

    Strata__V1__FollowerMessage *m = NULL;
    if (ok && bb) {
        grpc_slice s;
        if (st_peer_read(bb, &s)) {
            m = strata__v1__follower_message__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                                     GRPC_SLICE_START_PTR(s));
            grpc_slice_unref(s);
        }
        if (!m)
            st_log(ST_LOG_WARN, "link_bad_message", "peer=%u addr=%s term=%llu", l->peer, l->addr,
                   (unsigned long long)term);
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    /* Before this operation counts as done: the link thread reports link_down only after every
       answer of the stream has been delivered. */
    if (m) {
        st_replica_on_follower_message(r, l->peer, term, m);
        /* New records held there (the commit may move: tell the followers now), or the leader
           resends from elsewhere or starts a snapshot: no link should sit out a heartbeat. */
        pthread_mutex_lock(&l->mu);
        bool moved = m->last_seq > l->acked;
        if (moved)
            l->acked = m->last_seq;
        pthread_mutex_unlock(&l->mu);
        if (moved || m->mismatch || m->need_snapshot)
            st_peer_links_kick(l->pl);
        strata__v1__follower_message__free_unpacked(m, NULL);
    }

    pthread_mutex_lock(&l->mu);
    if (m && !l->up) {
        l->up = true;
        l->down_logged = false;
        st_log(ST_LOG_INFO, "link_up", "peer=%u addr=%s term=%llu", l->peer, l->addr,
               (unsigned long long)term);
    }
    if (!m) {
        /* The end of the stream, or an answer we cannot read: either way, start over. */
        if (!l->broken && bb)
            grpc_call_cancel(l->call, NULL);
        l->broken = true;
    }
    bool again = m && !l->broken && post_recv_locked(l);
    if (m && !again)
        l->broken = true;
    op_done_locked(l);
    pthread_mutex_unlock(&l->mu);
}

/* ---- the stream (link thread) ------------------------------------------------------------ */

/* Whether a send blocked for a while should still be waited for (l->mu held; takes pl->mu). */
static bool still_wanted(plink *l, uint64_t term)
{
    st_peer_links *pl = l->pl;
    pthread_mutex_lock(&pl->mu);
    bool v = !pl->stopping && pl->leading && pl->lead_term == term;
    pthread_mutex_unlock(&pl->mu);
    return v;
}

static bool stream_open(plink *l, st_replica *r, uint64_t term)
{
    grpc_call *call = st_peer_client_call(l->pl->pc, l->peer, ST_PEER_REPLICATE, -1);
    if (!call)
        return false;
    pthread_mutex_lock(&l->mu);
    l->r = r;
    l->call = call;
    l->term = term;
    l->acked = 0;
    l->pending = 0;
    l->broken = l->sending = l->cancelled = l->have_status = false;
    grpc_metadata_array_init(&l->imd);
    grpc_metadata_array_init(&l->tmd);
    l->details = grpc_empty_slice();
    l->code = GRPC_STATUS_UNKNOWN;

    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA; /* no WAIT_FOR_READY: a dead peer fails fast */
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &l->imd;
    if (st_peer_start_batch(call, ops, 2, &l->t_start) == GRPC_CALL_OK)
        l->pending++;
    else
        l->broken = true;
    grpc_op st;
    memset(&st, 0, sizeof(st));
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &l->tmd;
    st.data.recv_status_on_client.status = &l->code;
    st.data.recv_status_on_client.status_details = &l->details;
    if (!l->broken && st_peer_start_batch(call, &st, 1, &l->t_status) == GRPC_CALL_OK)
        l->pending++;
    else
        l->broken = true;
    if (!l->broken && !post_recv_locked(l))
        l->broken = true;
    bool ok = !l->broken;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* Send one message and wait for the send to complete. False if the stream is broken. */
static bool stream_send(plink *l, const st_buf *buf, uint64_t term)
{
    pthread_mutex_lock(&l->mu);
    if (l->broken) {
        pthread_mutex_unlock(&l->mu);
        return false;
    }
    grpc_slice s = grpc_slice_malloc(buf->len);
    if (buf->len)
        memcpy(GRPC_SLICE_START_PTR(s), buf->data, buf->len);
    l->send_buf = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = l->send_buf;
    if (st_peer_start_batch(l->call, &op, 1, &l->t_send) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(l->send_buf);
        l->send_buf = NULL;
        l->broken = true;
        pthread_mutex_unlock(&l->mu);
        return false;
    }
    l->pending++;
    l->sending = true;
    while (l->sending) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SEND_CHECK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->cv, &l->mu, &until);
        /* A peer that stopped reading holds the send until its flow-control window opens;
           give up on it when this link is no longer wanted. */
        if (l->sending && !l->cancelled && !still_wanted(l, term)) {
            grpc_call_cancel(l->call, NULL);
            l->cancelled = true;
        }
    }
    bool ok = l->send_ok && !l->broken;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

/* Cancel the call, wait for every operation, release it; `why` gets the status seen. */
static void stream_close(plink *l, char *why, size_t n)
{
    pthread_mutex_lock(&l->mu);
    if (!l->call) {
        pthread_mutex_unlock(&l->mu);
        snprintf(why, n, "no stream");
        return;
    }
    grpc_call_cancel(l->call, NULL);
    while (l->pending > 0)
        pthread_cond_wait(&l->cv, &l->mu);
    if (l->have_status) {
        char q[400], details[300];
        size_t dl = GRPC_SLICE_LENGTH(l->details);
        if (dl >= sizeof(details))
            dl = sizeof(details) - 1;
        if (dl)
            memcpy(details, GRPC_SLICE_START_PTR(l->details), dl);
        details[dl] = '\0';
        snprintf(why, n, "%s %s", st_grpc_code_name(l->code), st_log_quote(q, sizeof(q), details));
    } else {
        snprintf(why, n, "%s", l->cancelled ? "cancelled" : "send_failed");
    }
    grpc_call *call = l->call;
    l->call = NULL;
    pthread_mutex_unlock(&l->mu);
    grpc_call_unref(call);
    grpc_metadata_array_destroy(&l->imd);
    grpc_metadata_array_destroy(&l->tmd);
    grpc_slice_unref(l->details);
    l->details = grpc_empty_slice();
}

/* Sleep ms, or less if the links are stopping. */
static void backoff(plink *l, int ms)
{
    st_peer_links *pl = l->pl;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)ms * 1000000L;
    while (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&pl->mu);
    while (!pl->stopping && pthread_cond_timedwait(&pl->cv, &pl->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&pl->mu);
}

static bool stopping(st_peer_links *pl)
{
    pthread_mutex_lock(&pl->mu);
    bool v = pl->stopping;
    pthread_mutex_unlock(&pl->mu);
    return v;
}

/* The stream broke (or never came up): tell the replica, log, wait a little. */
static void stream_failed(plink *l, st_replica *r, uint64_t term, const char *what)
{
    char why[512];
    stream_close(l, why, sizeof(why));
    st_replica_link_down(r, l->peer, term);
    pthread_mutex_lock(&l->mu);
    bool log = l->up || !l->down_logged;
    l->up = false;
    l->down_logged = true;
    pthread_mutex_unlock(&l->mu);
    if (log)
        st_log(ST_LOG_INFO, "link_down", "peer=%u addr=%s term=%llu reason=%s%s%s", l->peer,
               l->addr, (unsigned long long)term, what ? what : "", what ? ": " : "", why);
    l->last_send_ns = 0; /* the next stream's first message goes at once */
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    backoff(l, 20 + (int)(l->rng % 31));
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* True if buf is an Append without records (a heartbeat or a probe). */
static bool is_empty_append(const st_buf *buf)
{
    if (buf->len >= SMALL_MESSAGE)
        return false;
    Strata__V1__LeaderMessage *m = strata__v1__leader_message__unpack(NULL, buf->len, buf->data);
    bool empty = m && m->body_case == STRATA__V1__LEADER_MESSAGE__BODY_APPEND && m->append &&
                 m->append->n_records == 0;
    if (m)
        strata__v1__leader_message__free_unpacked(m, NULL);
    return empty;
}

/*
 * After an Append without records, wait before asking ship_next for the next message: until a
 * heartbeat is due, the links are kicked (st_peer_links_kick since `appends`: new records, or
 * an answer that moves the commit or the resend point), or they stop. ship_next hands out an
 * empty Append whenever the window has room and nothing new is in the log, so a link that
 * asked again at once would spin (see st_peer_links_kick in the header).
 */
static void pace(plink *l, uint_fast64_t appends)
{
    st_peer_links *pl = l->pl;
    if (!l->last_send_ns)
        return;
    int64_t due = l->last_send_ns + pl->heartbeat_ns;
    pthread_mutex_lock(&pl->mu);
    while (!pl->stopping && atomic_load(&pl->appends) == appends) {
        int64_t left = due - mono_ns();
        if (left <= 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + left;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&pl->cv, &pl->mu, &until);
    }
    pthread_mutex_unlock(&pl->mu);
}

/*
 * Before a new stream: wait until the channel to the peer is connected, so that nothing is
 * prepared for a peer that cannot be reached (for one that needs a snapshot, ship_next makes a
 * checkpoint, flushing the memtable, each time it is asked). False when the links stop or
 * this node no longer leads `term`.
 */
static bool await_peer(plink *l, uint64_t term)
{
    st_peer_links *pl = l->pl;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        bool wanted = !pl->stopping && pl->leading && pl->lead_term == term;
        pthread_mutex_unlock(&pl->mu);
        if (!wanted)
            return false;
        if (st_peer_client_ready(pl->pc, l->peer, 100))
            return true;
        pthread_mutex_lock(&l->mu);
        bool log = l->up || !l->down_logged;
        l->up = false;
        l->down_logged = true;
        pthread_mutex_unlock(&l->mu);
        if (log)
            st_log(ST_LOG_INFO, "link_down", "peer=%u addr=%s term=%llu reason=unreachable",
                   l->peer, l->addr, (unsigned long long)term);
    }
}

/* Lead `term` on this link until ship_next says we no longer do. */
static void run_term(plink *l, st_replica *r, uint64_t term)
{
    st_peer_links *pl = l->pl;
    st_buf buf;
    st_buf_init(&buf);
    pthread_mutex_lock(&l->mu);
    l->down_logged = false;
    pthread_mutex_unlock(&l->mu);
    l->last_send_ns = 0;
    bool paced = false; /* the last message sent was an empty Append */
    uint_fast64_t appends = 0;
    for (;;) {
        if (paced)
            pace(l, appends);
        pthread_mutex_lock(&l->mu);
        bool have_stream = l->call != NULL;
        pthread_mutex_unlock(&l->mu);
        if (!have_stream && !await_peer(l, term))
            break;
        /* Read before ship_next: a kick after this point ends the next pace at once. */
        appends = atomic_load(&pl->appends);
        paced = false;
        st_status s = st_replica_ship_next(r, l->peer, term, &buf);
        if (s == ST_NOT_LEADER || s == ST_SHUTDOWN || stopping(pl))
            break;
        if (s != ST_OK) {
            char msg[300];
            st_log(ST_LOG_WARN, "link_error", "peer=%u term=%llu status=%s reason=%s", l->peer,
                   (unsigned long long)term, st_status_name(s),
                   st_log_quote(msg, sizeof(msg), st_errmsg()));
            stream_failed(l, r, term, "ship_next failed");
            continue;
        }
        bool open, broken;
        pthread_mutex_lock(&l->mu);
        open = l->call != NULL;
        broken = l->broken;
        pthread_mutex_unlock(&l->mu);
        if (buf.len == 0) {
            /* Nothing to send for now (a snapshot waiting for its window): a stream that broke
               meanwhile is closed, so the replica hears of it; otherwise wait a heartbeat. */
            if (open && broken)
                stream_failed(l, r, term, NULL);
            else
                backoff(l, (int)(pl->heartbeat_ns / 1000000) + 1);
            continue;
        }
        if (!open && !stream_open(l, r, term)) {
            stream_failed(l, r, term, "cannot start the call");
            continue;
        }
        paced = is_empty_append(&buf);
        l->last_send_ns = mono_ns();
        if (!stream_send(l, &buf, term)) {
            stream_failed(l, r, term, NULL);
            paced = false;
        }
    }
    pthread_mutex_lock(&l->mu);
    bool open = l->call != NULL;
    pthread_mutex_unlock(&l->mu);
    if (open) {
        char why[512];
        stream_close(l, why, sizeof(why));
        st_replica_link_down(r, l->peer, term);
    }
    /* After the close: no answer of the stream is being delivered any more. */
    pthread_mutex_lock(&l->mu);
    bool was_up = l->up;
    l->up = false;
    pthread_mutex_unlock(&l->mu);
    if (was_up)
        st_log(ST_LOG_INFO, "link_down", "peer=%u addr=%s term=%llu reason=not_leading", l->peer,
               l->addr, (unsigned long long)term);
    st_buf_free(&buf);
}

static void *link_main(void *arg)
{
    plink *l = arg;
    pthread_setname_np(pthread_self(), "st-link");
    st_peer_links *pl = l->pl;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        while (!pl->stopping && !(pl->r && pl->leading && pl->lead_term > l->served))
            pthread_cond_wait(&pl->cv, &pl->mu);
        if (pl->stopping) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        uint64_t term = pl->lead_term;
        st_replica *r = pl->r;
        l->served = term;
        pthread_mutex_unlock(&pl->mu);
        run_term(l, r, term);
    }
    return NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */

st_status st_peer_links_create(st_peer_client *pc, const st_cluster *cluster, uint32_t self_id,
                               uint32_t heartbeat_ms, st_peer_links **out)
{
    *out = NULL;
    st_peer_links *pl = calloc(1, sizeof(*pl));
    if (pl)
        pl->links = calloc(cluster->n ? cluster->n : 1, sizeof(*pl->links));
    if (!pl || !pl->links) {
        free(pl);
        return st_error(ST_NO_MEMORY, "peer links: out of memory");
    }
    pl->pc = pc;
    pl->heartbeat_ns = (int64_t)(heartbeat_ms ? heartbeat_ms : 1) * 1000000;
    atomic_init(&pl->appends, 0);
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv, NULL);
    st_status s = ST_OK;
    for (size_t i = 0; i < cluster->n; i++) {
        const st_member *m = &cluster->members[i];
        if (m->id == self_id)
            continue;
        plink *l = &pl->links[pl->n++];
        l->pl = pl;
        l->peer = m->id;
        snprintf(l->addr, sizeof(l->addr), "%s", m->addr);
        l->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)m->id << 32) ^ (uint64_t)self_id;
        l->details = grpc_empty_slice();
        l->t_start = (st_peer_tag){on_start, l, 0};
        l->t_status = (st_peer_tag){on_status, l, 0};
        l->t_recv = (st_peer_tag){on_recv, l, 0};
        l->t_send = (st_peer_tag){on_send, l, 0};
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (pthread_create(&l->thread, NULL, link_main, l) != 0) {
            s = st_error(ST_NO_MEMORY, "peer links: cannot start a thread");
            break;
        }
        l->started = true;
    }
    if (s != ST_OK) {
        st_peer_links_destroy(pl);
        return s;
    }
    *out = pl;
    return ST_OK;
}

/* Take role and term from the replica as they are now (pl->mu held, pl->r set). Role events
   are delivered outside the replica's lock and may overtake each other (a candidate event can
   arrive after the leader event of the same term), so their arguments are not trusted; the
   reads are serialised by pl->mu, so the last one applied is the newest. */
static void refresh_locked(st_peer_links *pl)
{
    st_replica_info *info = malloc(sizeof(*info));
    if (!info)
        return;
    st_replica_info_get(pl->r, info);
    if (info->term >= pl->lead_term) {
        pl->lead_term = info->term;
        pl->leading = info->role == ST_ROLE_LEADER;
        pthread_cond_broadcast(&pl->cv);
    }
    free(info);
}

void st_peer_links_attach(st_peer_links *pl, st_replica *r)
{
    pthread_mutex_lock(&pl->mu);
    pl->r = r;
    refresh_locked(pl);
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

void st_peer_links_role(st_peer_links *pl, st_role role, uint64_t term)
{
    pthread_mutex_lock(&pl->mu);
    if (pl->r) {
        refresh_locked(pl);
    } else if (term >= pl->lead_term) {
        /* Not attached yet (attach reads the state anyway). */
        pl->lead_term = term;
        pl->leading = role == ST_ROLE_LEADER;
        pthread_cond_broadcast(&pl->cv);
    }
    pthread_mutex_unlock(&pl->mu);
}

void st_peer_links_kick(st_peer_links *pl)
{
    pthread_mutex_lock(&pl->mu);
    atomic_fetch_add(&pl->appends, 1);
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

void st_peer_links_stop(st_peer_links *pl)
{
    pthread_mutex_lock(&pl->mu);
    pl->stopping = true;
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    for (size_t i = 0; i < pl->n; i++) {
        plink *l = &pl->links[i];
        pthread_mutex_lock(&l->mu);
        if (l->call)
            grpc_call_cancel(l->call, NULL);
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    for (size_t i = 0; i < pl->n; i++) {
        plink *l = &pl->links[i];
        if (l->started)
            pthread_join(l->thread, NULL);
        l->started = false;
    }
}

void st_peer_links_destroy(st_peer_links *pl)
{
    if (!pl)
        return;
    st_peer_links_stop(pl);
    for (size_t i = 0; i < pl->n; i++) {
        grpc_slice_unref(pl->links[i].details);
        pthread_cond_destroy(&pl->links[i].cv);
        pthread_mutex_destroy(&pl->links[i].mu);
    }
    pthread_cond_destroy(&pl->cv);
    pthread_mutex_destroy(&pl->mu);
    free(pl->links);
    free(pl);
}
