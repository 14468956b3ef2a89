/*
 * replica.c - roles, terms, log shipping, commit, elections (docs/replication.md).
 *
 * One mutex (mu) guards the replica's state. It is never held across WAL appends, applies,
 * truncations, checkpoints or callbacks; it is held across short engine queries
 * (st_db_log_state, st_db_log_term_at, reading the next WAL records for a link), which take
 * the engine's own lock inside: the order is always replica mu, then engine locks.
 * follow_mu serialises everything that appends to or truncates this node's log: the writer's
 * appends as leader and the handling of a leader's messages as follower.
 */
#include "replication/replica.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/crc32c.h"
#include "engine/env.h"
#include "replication/raft_state.h"

#define TICK_MS           5
#define LAG_MARKS         4096
#define MAX_INFLIGHT_MSGS 256
/* How long a commit that moved waits for records to carry it before an Append of its own goes
   (see ship_next): under load the next group's Append carries it, and one message in two is
   saved; when idle, followers learn the commit (and apply) this much later. */
#define COMMIT_NEWS_DELAY_NS 1000000

typedef struct waiter {
    uint64_t seq;
    st_ack_level level;
    int64_t deadline_ns;
    st_replica_done_fn done;
    void *arg;
    struct waiter *next;
} waiter;

typedef enum peer_state {
    P_PROBE,      /* send an empty Append to find where the follower's log matches */
    P_STREAM,     /* send records from next_seq on */
    P_SNAP_START, /* make a checkpoint to send */
    P_SNAP_SEND,  /* send its files chunk by chunk */
    P_SNAP_WAIT,  /* all sent; wait for the follower to install it */
} peer_state;

typedef struct snap_file {
    char *rel; /* path inside the checkpoint */
    uint64_t size;
} snap_file;

typedef struct peer {
    uint32_t id;
    char addr[256];
    /* All guarded by mu; meaningful while this node leads. */
    uint64_t link_term; /* the term of the link that last asked for messages */
    peer_state state;
    uint64_t next_seq;  /* first sequence to send */
    uint64_t prev_term; /* term of the record holding next_seq - 1 */
    uint64_t match_seq; /* known durable there and equal to ours */
    uint64_t applied_seq;
    size_t inflight[MAX_INFLIGHT_MSGS];     /* sizes of messages sent, not yet answered */
    int64_t inflight_ns[MAX_INFLIGHT_MSGS]; /* and when they were sent */
    size_t inflight_head, inflight_n;
    int64_t acked_sent_ns; /* the sending time of the newest message answered in this term */
    uint64_t inflight_bytes;
    int64_t last_sent_ns, last_ack_ns;
    uint64_t sent_commit; /* the commit sequence of the last Append sent */
    int64_t news_ns;      /* when the commit was first seen past sent_commit; 0: not yet */
    st_log_iter *it;      /* positioned to return next_seq's record */
    bool timeout_now;     /* send a timeout_now (hand-over) when caught up */
    /* snapshot being sent */
    char *snap_dir;
    uint64_t snap_seq, snap_term;
    snap_file *snap_files;
    size_t nsnap_files, snap_file_idx;
    uint64_t snap_offset;
    st_file *snap_fd;
} peer;

struct st_replica {
    st_replica_options o;
    st_cluster cluster;
    st_db *db;
    st_env *env;
    char *state_dir;
    uint32_t self_index;

    pthread_mutex_t mu;
    pthread_cond_t cv;         /* links, applier and transfer wait on it */
    pthread_mutex_t follow_mu; /* see the top of the file */

    /* guarded by mu */
    /* Log bytes this node appended as leader: (last sequence, running total) per append, the
       newest LAG_MARKS of them, so that a follower's lag can be told in bytes. */
    struct {
        uint64_t seq, bytes;
    } lag_mark[LAG_MARKS];
    size_t lag_next, lag_count;
    uint64_t log_bytes;
    st_raft_state ps; /* persisted term and vote */
    st_role role;
    uint32_t leader_id;
    /* The client address leader_id sent with its messages ("": none heard yet); the cluster
       address is used until then. */
    char leader_hint[256];
    char advertise[256];   /* ours, from the options ("": our cluster address) */
    int64_t last_heard_ns; /* from a leader (followers) */
    int64_t started_ns;    /* when this replica was created */
    int64_t election_deadline_ns;
    int64_t lead_since_ns;
    uint64_t election_id;
    bool prevote;        /* the election in progress is a pre-vote */
    uint32_t votes;      /* bitmask by member index */
    uint64_t self_match; /* our own durable end, as leader */
    uint64_t commit_seq;
    uint64_t applied_seq;
    bool transferring;
    bool stopping;
    waiter *waiters, *waiters_tail; /* in seq order */
    peer *peers;
    size_t npeers;
    uint64_t rng;
    /* snapshot being received */
    uint64_t recv_seq, recv_term;
    char *recv_file;
    st_file *recv_fd;
    uint64_t recv_size;
    /* counters */
    uint64_t n_elections, n_leader_changes, n_snap_sent, n_snap_installed;

    pthread_t ticker, applier;
    bool threads;
};

/* ---- small helpers ---------------------------------------------------------------------- */

const char *st_role_name(st_role r)
{
    switch (r) {
    case ST_ROLE_LEADER:
        return "leader";
    case ST_ROLE_CANDIDATE:
        return "candidate";
    default:
        return "follower";
    }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void rlog(st_replica *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rlog(st_replica *r, const char *fmt, ...)
{
    if (!r->o.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    r->o.log(r->o.log_ctx, line);
}

static uint64_t next_rand(st_replica *r)
{
    uint64_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->rng = x;
}

/* A fresh randomised election deadline (mu held). */
static void reset_election_timer(st_replica *r)
{
    int64_t base = (int64_t)r->o.election_ms * 1000000;
    r->election_deadline_ns = now_ns() + base + (int64_t)(next_rand(r) % (uint64_t)base);
}

static void timed_wait(st_replica *r, int64_t until_ns)
{
    struct timespec ts;
    int64_t wait = until_ns - now_ns();
    if (wait <= 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + wait;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

static const st_member *leader_member(const st_replica *r)
{
    return r->leader_id ? st_cluster_find(&r->cluster, r->leader_id) : NULL;
}

/* Where clients reach the leader (mu held; NULL when no leader is known): the address it
   advertised, else its cluster address. */
static const char *leader_client_addr(const st_replica *r)
{
    const st_member *m = leader_member(r);
    if (!m)
        return NULL;
    if (m->id == r->o.node_id)
        return r->advertise[0] ? r->advertise : m->addr;
    return r->leader_hint[0] ? r->leader_hint : m->addr;
}

static st_status not_leader(st_replica *r)
{
    const st_member *m = leader_member(r);
    if (r->transferring)
        return st_error(ST_NOT_LEADER, "leadership is being handed over; retry shortly");
    if (m && m->id != r->o.node_id)
        return st_error(ST_NOT_LEADER, "node %u is not the leader; the leader is node %u at %s",
                        r->o.node_id, m->id, leader_client_addr(r));
    return st_error(ST_NOT_LEADER, "node %u is not the leader and no leader is known yet",
                    r->o.node_id);
}

/* ---- waiters ----------------------------------------------------------------------------- */

typedef struct done_list {
    waiter *head;
} done_list;

static void finish_later(done_list *dl, waiter *w)
{
    w->next = dl->head;
    dl->head = w;
}

/* Run the callbacks of finished waiters (no lock held). `s` applies to all of them. */
static void run_done(done_list *dl, st_status s, const char *msg)
{
    while (dl->head) {
        waiter *w = dl->head;
        dl->head = w->next;
        w->done(w->arg, s, msg, w->seq);
        free(w);
    }
}

/* Move every waiter satisfied now to dl (mu held). */
static void collect_satisfied(st_replica *r, done_list *dl)
{
    uint64_t all = r->role == ST_ROLE_LEADER ? r->self_match : 0;
    for (size_t i = 0; i < r->npeers; i++)
        if (r->peers[i].match_seq < all)
            all = r->peers[i].match_seq;
    waiter **pp = &r->waiters;
    r->waiters_tail = NULL;
    while (*pp) {
        waiter *w = *pp;
        bool ok = w->seq <= r->applied_seq && (w->level != ST_ACK_ALL || w->seq <= all);
        if (ok) {
            *pp = w->next;
            finish_later(dl, w);
        } else {
            r->waiters_tail = w;
            pp = &w->next;
        }
    }
}

/* Move every waiter to dl (mu held): leadership is gone or the replica stops. */
static void collect_all(st_replica *r, done_list *dl)
{
    while (r->waiters) {
        waiter *w = r->waiters;
        r->waiters = w->next;
        finish_later(dl, w);
    }
    r->waiters_tail = NULL;
}

/* ---- roles and terms --------------------------------------------------------------------- */

/* What a role change must tell the transport, delivered after unlocking. */
typedef struct role_event {
    bool changed;
    st_role role;
    uint64_t term;
    done_list failed; /* waiters to fail with ST_NOT_LEADER */
} role_event;

static void deliver(st_replica *r, role_event *ev)
{
    if (ev->changed && r->o.net.role_changed)
        r->o.net.role_changed(r->o.net.ctx, ev->role, ev->term);
    run_done(&ev->failed, ST_NOT_LEADER,
             "leadership was lost before the write reached its acknowledgement level; it may or "
             "may not have been committed");
}

static void peer_reset_link(st_replica *r, peer *p);

/* Adopt `term` (if higher) and follow (mu held). The term is saved before this returns. */
static st_status become_follower(st_replica *r, uint64_t term, uint32_t leader, role_event *ev)
{
    st_status s = ST_OK;
    if (term > r->ps.term) {
        st_raft_state next = {term, 0};
        if ((s = st_raft_state_save(r->env, r->state_dir, &next)))
            return s;
        r->ps = next;
    }
    if (r->role == ST_ROLE_LEADER) {
        collect_all(r, &ev->failed);
        for (size_t i = 0; i < r->npeers; i++)
            peer_reset_link(r, &r->peers[i]);
        r->transferring = false;
        rlog(r, "step_down term=%" PRIu64, r->ps.term);
    }
    if (r->role != ST_ROLE_FOLLOWER) {
        ev->changed = true;
        ev->role = ST_ROLE_FOLLOWER;
        ev->term = r->ps.term;
    }
    r->role = ST_ROLE_FOLLOWER;
    if (leader && leader != r->leader_id) {
        r->n_leader_changes++;
        rlog(r, "leader node=%u term=%" PRIu64, leader, r->ps.term);
    }
    if (leader != r->leader_id)
        r->leader_hint[0] = '\0';
    r->leader_id = leader;
    pthread_cond_broadcast(&r->cv);
    return s;
}

static bool log_up_to_date(uint64_t their_seq, uint64_t their_term, uint64_t my_seq,
                           uint64_t my_term)
{
    return their_term > my_term || (their_term == my_term && their_seq >= my_seq);
}

/* ---- the leader: appends, commit ---------------------------------------------------------- */

/* The value a majority of the n members' values (ours first) reaches: the majority-th highest.
   Sorts v. */
static uint64_t majority_value(const st_replica *r, uint64_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[st_cluster_majority(&r->cluster) - 1];
}

/* Recompute the commit sequence from the matches (mu held, leader). */
static void advance_commit(st_replica *r)
{
    uint64_t m[ST_MAX_MEMBERS];
    size_t n = 0;
    m[n++] = r->self_match;
    for (size_t i = 0; i < r->npeers; i++)
        m[n++] = r->peers[i].match_seq;
    uint64_t cand = majority_value(r, m, n);
    if (cand <= r->commit_seq)
        return;
    uint64_t term;
    /* Raft's rule: count copies only of records of our own term. */
    if (st_db_log_term_at(r->db, cand, &term) == ST_OK && term == r->ps.term) {
        r->commit_seq = cand;
        pthread_cond_broadcast(&r->cv);
    }
}

/* The record is in our WAL, not yet synced: the links may ship it now, so that the followers'
   syncs overlap ours. It counts for the commit only once ours is done (self_match). */
static void log_written(void *ctx, uint64_t last_seq)
{
    st_replica *r = ctx;
    (void)last_seq;
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

st_status st_replica_append(st_replica *r, const st_batch *batch, uint64_t *last_seq)
{
    pthread_mutex_lock(&r->follow_mu);
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->follow_mu);
        return st_error(ST_SHUTDOWN, "the node is shutting down");
    }
    if (r->role != ST_ROLE_LEADER || r->transferring) {
        st_status s = not_leader(r);
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->follow_mu);
        return s;
    }
    uint64_t term = r->ps.term;
    pthread_mutex_unlock(&r->mu);
    uint64_t last = 0;
    st_status s = st_db_log_append_early(r->db, term, batch, log_written, r, &last);
    pthread_mutex_lock(&r->mu);
    if (s == ST_OK && r->role == ST_ROLE_LEADER && r->ps.term == term) {
        if (last > r->self_match)
            r->self_match = last;
        r->log_bytes += st_batch_bytes(batch);
        r->lag_mark[r->lag_next].seq = last;
        r->lag_mark[r->lag_next].bytes = r->log_bytes;
        r->lag_next = (r->lag_next + 1) % LAG_MARKS;
        if (r->lag_count < LAG_MARKS)
            r->lag_count++;
        advance_commit(r);
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->follow_mu);
    if (s == ST_OK && last_seq)
        *last_seq = last;
    return s;
}

st_status st_replica_read_index(st_replica *r, uint64_t *seq)
{
    st_status s = ST_OK;
    pthread_mutex_lock(&r->mu);
    if (r->role != ST_ROLE_LEADER || r->transferring) {
        s = not_leader(r);
        goto out;
    }
    /* The lease runs from the newest sending time a majority answered (ours: now). */
    int64_t now = now_ns();
    uint64_t t[ST_MAX_MEMBERS];
    size_t n = 0;
    t[n++] = (uint64_t)now;
    for (size_t i = 0; i < r->npeers; i++)
        t[n++] = (uint64_t)r->peers[i].acked_sent_ns;
    int64_t since = (int64_t)majority_value(r, t, n);
    int64_t lease_ns = (int64_t)r->o.election_ms * 900000; /* 0.9 × election_ms */
    uint64_t term = 0;
    if (since == 0 || now - since >= lease_ns) {
        s = st_error(ST_BUSY,
                     "node %u leads term %" PRIu64 " but a majority has not confirmed it in "
                     "the last %u ms; retry shortly",
                     r->o.node_id, r->ps.term, r->o.election_ms * 9 / 10);
    } else if (st_db_log_term_at(r->db, r->commit_seq, &term) != ST_OK || term != r->ps.term) {
        s = st_error(ST_BUSY,
                     "node %u was just elected and has not committed in its term yet; "
                     "retry shortly",
                     r->o.node_id);
    } else {
        *seq = r->commit_seq;
    }
out:
    pthread_mutex_unlock(&r->mu);
    return s;
}

void st_replica_wait(st_replica *r, uint64_t seq, st_ack_level level, int64_t deadline_ns,
                     st_replica_done_fn done, void *arg)
{
    if (level == ST_ACK_LEADER) {
        done(arg, ST_OK, "", seq);
        return;
    }
    waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        done(arg, ST_NO_MEMORY, "out of memory", seq);
        return;
    }
    *w = (waiter){seq, level, deadline_ns, done, arg, NULL};
    done_list dl = {NULL};
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        free(w);
        done(arg, ST_SHUTDOWN, "the node is shutting down", seq);
        return;
    }
    if (r->role != ST_ROLE_LEADER) {
        pthread_mutex_unlock(&r->mu);
        free(w);
        done(arg, ST_NOT_LEADER, "leadership was lost before the write was acknowledged", seq);
        return;
    }
    /* Appends come in sequence order, so the list stays sorted by appending at the tail. */
    if (r->waiters_tail)
        r->waiters_tail->next = w;
    else
        r->waiters = w;
    r->waiters_tail = w;
    collect_satisfied(r, &dl);
    pthread_mutex_unlock(&r->mu);
    run_done(&dl, ST_OK, "");
}

/* ---- the leader: links -------------------------------------------------------------------- */

static void peer_drop_snapshot(st_replica *r, peer *p)
{
    if (p->snap_fd)
        r->env->close(p->snap_fd);
    p->snap_fd = NULL;
    for (size_t i = 0; i < p->nsnap_files; i++)
        free(p->snap_files[i].rel);
    free(p->snap_files);
    p->snap_files = NULL;
    p->nsnap_files = p->snap_file_idx = 0;
    p->snap_offset = 0;
    if (p->snap_dir) {
        char cmd[4200];
        /* The checkpoint holds only links; removing it frees nothing the database uses. */
        snprintf(cmd, sizeof(cmd), "%s/sst", p->snap_dir);
        char **names = NULL;
        size_t n = 0;
        if (r->env->list(r->env, cmd, &names, &n) == ST_OK) {
            for (size_t i = 0; i < n; i++) {
                char path[4400];
                snprintf(path, sizeof(path), "%s/%s", cmd, names[i]);
                r->env->unlink(r->env, path);
            }
            st_env_free_names(names, n);
        }
        rmdir(cmd);
        if (r->env->list(r->env, p->snap_dir, &names, &n) == ST_OK) {
            for (size_t i = 0; i < n; i++) {
                char path[4400];
                snprintf(path, sizeof(path), "%s/%s", p->snap_dir, names[i]);
                r->env->unlink(r->env, path);
            }
            st_env_free_names(names, n);
        }
        rmdir(p->snap_dir);
        free(p->snap_dir);
        p->snap_dir = NULL;
    }
}

/* Forget everything about the link (mu held): the next one starts with a probe. */
static void peer_reset_link(st_replica *r, peer *p)
{
    st_log_iter_destroy(p->it);
    p->it = NULL;
    peer_drop_snapshot(r, p);
    p->state = P_PROBE;
    p->inflight_head = p->inflight_n = 0;
    p->inflight_bytes = 0;
    p->link_term = 0;
    p->timeout_now = false;
    p->sent_commit = 0;
    p->news_ns = 0;
}

static void peer_start(st_replica *r, peer *p, uint64_t last_seq, uint64_t last_term)
{
    peer_reset_link(r, p);
    p->next_seq = last_seq + 1;
    p->prev_term = last_term;
    p->match_seq = 0;
    p->applied_seq = 0;
    p->last_ack_ns = now_ns();
    p->acked_sent_ns = 0; /* answers to an earlier term prove nothing about this one */
}

static peer *find_peer(st_replica *r, uint32_t id)
{
    for (size_t i = 0; i < r->npeers; i++)
        if (r->peers[i].id == id)
            return &r->peers[i];
    return NULL;
}

/* Prepare the LeaderMessage envelope (mu held). */
static void envelope(st_replica *r, Strata__V1__LeaderMessage *m)
{
    const st_member *self = st_cluster_find(&r->cluster, r->o.node_id);
    m->term = r->ps.term;
    m->leader_id = r->o.node_id;
    m->leader_addr = (char *)(r->advertise[0] ? r->advertise : self->addr);
    m->commit_seq = r->commit_seq;
}

static bool pack_into(const ProtobufCMessage *msg, st_buf *out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    st_buf_clear(out);
    if (!st_buf_reserve(out, n ? n : 1))
        return false;
    out->len = protobuf_c_message_pack(msg, out->data);
    return true;
}

static void note_sent(peer *p, size_t bytes)
{
    p->last_sent_ns = now_ns();
    if (p->inflight_n < MAX_INFLIGHT_MSGS) {
        size_t i = (p->inflight_head + p->inflight_n) % MAX_INFLIGHT_MSGS;
        p->inflight[i] = bytes;
        p->inflight_ns[i] = p->last_sent_ns;
        p->inflight_n++;
        p->inflight_bytes += bytes;
    }
}

/* The oldest message in flight was answered: returns when it was sent (0 if none was). */
static int64_t note_answered(peer *p)
{
    if (p->inflight_n == 0)
        return 0;
    size_t b = p->inflight[p->inflight_head];
    int64_t sent = p->inflight_ns[p->inflight_head];
    p->inflight_head = (p->inflight_head + 1) % MAX_INFLIGHT_MSGS;
    p->inflight_n--;
    p->inflight_bytes = p->inflight_bytes >= b ? p->inflight_bytes - b : 0;
    return sent;
}

/* An Append from next_seq: records if there are any (and room), else empty if allow_empty,
   else nothing (*sent false; mu held). */
static st_status build_append(st_replica *r, peer *p, bool want_records, bool allow_empty,
                              st_buf *out, bool *sent)
{
    Strata__V1__LeaderMessage m = STRATA__V1__LEADER_MESSAGE__INIT;
    Strata__V1__Append a = STRATA__V1__APPEND__INIT;
    Strata__V1__LogRecord recs_store[64], *recs[64];
    st_buf copies;
    st_buf_init(&copies);
    size_t n = 0, bytes = 0;
    size_t offs[64], lens[64];
    st_status s = ST_OK;
    uint64_t next = p->next_seq, prev_term = p->prev_term;

    *sent = false;
    if (want_records) {
        if (!p->it) {
            s = st_log_iter_create(r->db, p->next_seq, &p->it);
            if (s == ST_NOT_FOUND) {
                p->state = P_SNAP_START;
                return ST_OK;
            }
            if (s)
                return s;
        }
        while (n < 64 && bytes < r->o.max_append_bytes) {
            st_slice rec;
            s = st_log_iter_next(p->it, &rec);
            if (s == ST_NOT_FOUND) {
                s = ST_OK;
                break;
            }
            if (s) {
                /* Damage in our own WAL: give up on this iterator; the link will retry. */
                st_log_iter_destroy(p->it);
                p->it = NULL;
                st_buf_free(&copies);
                return s;
            }
            st_log_record_info info;
            if ((s = st_log_record_parse(rec, &info)))
                break;
            if (info.seq + info.count - 1 < next)
                continue; /* before what this peer needs */
            offs[n] = copies.len;
            lens[n] = rec.len;
            if (!st_buf_append(&copies, rec.data, rec.len)) {
                st_buf_free(&copies);
                return st_error(ST_NO_MEMORY, "out of memory");
            }
            strata__v1__log_record__init(&recs_store[n]);
            recs_store[n].seq = info.seq;
            recs_store[n].term = info.term;
            recs[n] = &recs_store[n];
            bytes += rec.len;
            next = info.seq + info.count;
            prev_term = info.term;
            n++;
        }
    }
    if (n == 0 && !allow_empty) {
        st_buf_free(&copies);
        return s;
    }
    for (size_t i = 0; i < n; i++) {
        recs_store[i].data.data = copies.data + offs[i];
        recs_store[i].data.len = lens[i];
        recs_store[i].crc = st_crc32c(copies.data + offs[i], lens[i]);
    }
    envelope(r, &m);
    a.prev_seq = p->next_seq - 1;
    a.prev_term = p->prev_term;
    a.n_records = n;
    a.records = recs;
    m.body_case = STRATA__V1__LEADER_MESSAGE__BODY_APPEND;
    m.append = &a;
    if (!pack_into(&m.base, out)) {
        st_buf_free(&copies);
        return st_error(ST_NO_MEMORY, "out of memory");
    }
    st_buf_free(&copies);
    p->next_seq = next;
    p->prev_term = prev_term;
    p->sent_commit = m.commit_seq;
    p->news_ns = 0;
    note_sent(p, out->len);
    *sent = true;
    return s;
}

/* Make the checkpoint a snapshot is sent from (mu held on entry and exit, released inside). */
static st_status snapshot_prepare(st_replica *r, peer *p, uint64_t term)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/snap-send-%u", r->state_dir, p->id);
    p->state = P_SNAP_SEND; /* claimed: no other pass prepares meanwhile */
    pthread_mutex_unlock(&r->mu);
    /* A leftover from an interrupted transfer. */
    peer tmp = {.snap_dir = strdup(dir)};
    if (tmp.snap_dir)
        peer_drop_snapshot(r, &tmp);
    uint64_t seq = 0, sterm = 0;
    st_status s = st_db_checkpoint(r->db, dir, &seq, &sterm);
    snap_file *files = NULL;
    size_t n = 0;
    if (s == ST_OK) {
        /* Tables first, then MANIFEST, CURRENT last: CURRENT arriving means all arrived. */
        char sst[4200];
        snprintf(sst, sizeof(sst), "%s/sst", dir);
        char **names = NULL;
        size_t count = 0;
        s = r->env->list(r->env, sst, &names, &count);
        files = calloc(count + 2, sizeof(*files));
        if (s == ST_OK && !files)
            s = st_error(ST_NO_MEMORY, "out of memory");
        for (size_t i = 0; s == ST_OK && i <= count + 1; i++) {
            char rel[300], path[4600];
            if (i < count)
                snprintf(rel, sizeof(rel), "sst/%s", names[i]);
            else
                snprintf(rel, sizeof(rel), "%s", i == count ? "MANIFEST-000001" : "CURRENT");
            snprintf(path, sizeof(path), "%s/%s", dir, rel);
            files[n].rel = strdup(rel);
            if (!files[n].rel)
                s = st_error(ST_NO_MEMORY, "out of memory");
            else
                s = r->env->file_size(r->env, path, &files[n].size);
            n++;
        }
        st_env_free_names(names, count);
    }
    pthread_mutex_lock(&r->mu);
    if (s || r->role != ST_ROLE_LEADER || r->ps.term != term || p->link_term != term) {
        peer tmp2 = {.snap_files = files, .nsnap_files = n, .snap_dir = strdup(dir)};
        peer_drop_snapshot(r, &tmp2);
        if (s == ST_OK)
            return st_error(ST_NOT_LEADER, "no longer leading");
        p->state = P_PROBE;
        return s;
    }
    p->snap_dir = strdup(dir);
    p->snap_seq = seq;
    p->snap_term = sterm;
    p->snap_files = files;
    p->nsnap_files = n;
    p->snap_file_idx = 0;
    p->snap_offset = 0;
    r->n_snap_sent++;
    rlog(r, "snapshot_send peer=%u seq=%" PRIu64 " files=%zu", p->id, seq, n);
    return ST_OK;
}

/* The next chunk of the snapshot (mu held). */
static st_status build_chunk(st_replica *r, peer *p, st_buf *out)
{
    snap_file *f = &p->snap_files[p->snap_file_idx];
    st_status s;
    if (!p->snap_fd) {
        char path[4600];
        snprintf(path, sizeof(path), "%s/%s", p->snap_dir, f->rel);
        if ((s = r->env->open_readable(r->env, path, &p->snap_fd)))
            return s;
    }
    uint64_t left = f->size - p->snap_offset;
    size_t want = left < r->o.snapshot_chunk_bytes ? (size_t)left : r->o.snapshot_chunk_bytes;
    uint8_t *data = malloc(want ? want : 1);
    if (!data)
        return st_error(ST_NO_MEMORY, "out of memory");
    size_t got = 0;
    if ((s = r->env->read_at(p->snap_fd, p->snap_offset, data, want, &got)) || got != want) {
        free(data);
        return s ? s : st_error(ST_IO_ERROR, "%s: shorter than expected", f->rel);
    }
    Strata__V1__LeaderMessage m = STRATA__V1__LEADER_MESSAGE__INIT;
    Strata__V1__SnapshotChunk c = STRATA__V1__SNAPSHOT_CHUNK__INIT;
    envelope(r, &m);
    c.seq = p->snap_seq;
    c.term = p->snap_term;
    c.file = f->rel;
    c.offset = p->snap_offset;
    c.file_size = f->size;
    c.data.data = data;
    c.data.len = got;
    c.crc = st_crc32c(data, got);
    bool last_of_file = p->snap_offset + got == f->size;
    c.done = last_of_file && p->snap_file_idx + 1 == p->nsnap_files;
    m.body_case = STRATA__V1__LEADER_MESSAGE__BODY_SNAPSHOT;
    m.snapshot = &c;
    bool ok = pack_into(&m.base, out);
    free(data);
    if (!ok)
        return st_error(ST_NO_MEMORY, "out of memory");
    p->snap_offset += got;
    if (last_of_file) {
        r->env->close(p->snap_fd);
        p->snap_fd = NULL;
        p->snap_file_idx++;
        p->snap_offset = 0;
    }
    if (c.done)
        p->state = P_SNAP_WAIT;
    note_sent(p, out->len);
    return ST_OK;
}

st_status st_replica_ship_next(st_replica *r, uint32_t peer_id, uint64_t term, st_buf *out)
{
    st_status s = ST_OK;
    pthread_mutex_lock(&r->mu);
    peer *p = find_peer(r, peer_id);
    if (!p) {
        pthread_mutex_unlock(&r->mu);
        return st_error(ST_INVALID_ARGUMENT, "node %u is not a peer", peer_id);
    }
    for (;;) {
        if (r->stopping) {
            s = st_error(ST_SHUTDOWN, "the node is shutting down");
            break;
        }
        if (r->role != ST_ROLE_LEADER || r->ps.term != term) {
            s = st_error(ST_NOT_LEADER, "no longer leading term %" PRIu64, term);
            break;
        }
        if (p->link_term != term) {
            /* A new link: start over from a probe. */
            uint64_t next = p->next_seq, pt = p->prev_term;
            peer_reset_link(r, p);
            p->next_seq = next;
            p->prev_term = pt;
            p->link_term = term;
        }
        int64_t now = now_ns();
        bool heartbeat_due = now - p->last_sent_ns >= (int64_t)r->o.heartbeat_ms * 1000000;
        bool room =
            p->inflight_bytes < r->o.max_inflight_bytes && p->inflight_n < MAX_INFLIGHT_MSGS;
        bool sent = false, idle = false;
        if (p->timeout_now && p->match_seq >= r->self_match && room) {
            Strata__V1__LeaderMessage m = STRATA__V1__LEADER_MESSAGE__INIT;
            envelope(r, &m);
            m.body_case = STRATA__V1__LEADER_MESSAGE__BODY_TIMEOUT_NOW;
            m.timeout_now = true;
            if (!pack_into(&m.base, out)) {
                s = st_error(ST_NO_MEMORY, "out of memory");
                break;
            }
            p->timeout_now = false;
            note_sent(p, out->len);
            rlog(r, "transfer_timeout_now peer=%u", p->id);
            break;
        }
        switch (p->state) {
        case P_PROBE:
            if (room || heartbeat_due) {
                if (p->next_seq > 1 && p->prev_term == 0 &&
                    st_db_log_term_at(r->db, p->next_seq - 1, &p->prev_term) != ST_OK) {
                    p->state = P_SNAP_START;
                    continue;
                }
                s = build_append(r, p, false, true, out, &sent);
            }
            break;
        case P_STREAM: {
            /* Records go as soon as the follower holds all we sent before: it takes one message
               at a time, with a sync each, so what the log gains meanwhile is better sent in
               one message when it answers than queued there as several (group commit, on the
               follower); and once every message is answered, whatever the answers said. A
               commit that moved with no records to carry it waits a little for some
               (COMMIT_NEWS_DELAY_NS), then goes in an empty Append. */
            bool records = p->match_seq + 1 >= p->next_seq || p->inflight_n == 0;
            if (room) {
                bool news = r->commit_seq > p->sent_commit;
                if (news && !p->news_ns)
                    p->news_ns = now;
                bool empty_ok = news && now - p->news_ns >= COMMIT_NEWS_DELAY_NS;
                s = build_append(r, p, records, empty_ok, out, &sent);
            }
            if (s == ST_OK && !sent && p->state == P_STREAM && heartbeat_due)
                s = build_append(r, p, false, true, out, &sent);
            if (s == ST_OK && !sent && p->state != P_STREAM)
                continue;
            break;
        }
        case P_SNAP_START:
            s = snapshot_prepare(r, p, term);
            if (s == ST_OK)
                continue;
            break;
        case P_SNAP_SEND:
            if (room) {
                s = build_chunk(r, p, out);
                sent = s == ST_OK;
            } else if (heartbeat_due) {
                /* The window is full and stays full if the follower is gone: hand the link
                   nothing (an empty `out`) so that it can look at its stream, instead of
                   waiting here on a deadline already past, with the lock, for ever. */
                st_buf_clear(out);
                idle = true;
            }
            break;
        case P_SNAP_WAIT:
            if (heartbeat_due) {
                /* Keep the follower's election timer quiet while it installs. */
                Strata__V1__LeaderMessage m = STRATA__V1__LEADER_MESSAGE__INIT;
                Strata__V1__Append a = STRATA__V1__APPEND__INIT;
                envelope(r, &m);
                a.prev_seq = p->snap_seq;
                a.prev_term = p->snap_term;
                m.body_case = STRATA__V1__LEADER_MESSAGE__BODY_APPEND;
                m.append = &a;
                if (!pack_into(&m.base, out)) {
                    s = st_error(ST_NO_MEMORY, "out of memory");
                    break;
                }
                note_sent(p, out->len);
                sent = true;
            }
            break;
        }
        if (s || sent || idle)
            break;
        int64_t until = p->last_sent_ns + (int64_t)r->o.heartbeat_ms * 1000000;
        if (p->state == P_STREAM && p->news_ns && room && p->news_ns + COMMIT_NEWS_DELAY_NS < until)
            until = p->news_ns + COMMIT_NEWS_DELAY_NS;
        timed_wait(r, until);
    }
    pthread_mutex_unlock(&r->mu);
    return s;
}

void st_replica_on_follower_message(st_replica *r, uint32_t peer_id, uint64_t term,
                                    const Strata__V1__FollowerMessage *m)
{
    role_event ev = {0};
    done_list dl = {NULL};
    pthread_mutex_lock(&r->mu);
    peer *p = find_peer(r, peer_id);
    if (m->term > r->ps.term) {
        /* Someone moved on to a newer term: we are not the leader any more. */
        become_follower(r, m->term, 0, &ev);
        reset_election_timer(r);
        goto out;
    }
    if (!p || r->role != ST_ROLE_LEADER || r->ps.term != term || p->link_term != term)
        goto out;
    p->last_ack_ns = now_ns();
    int64_t sent = note_answered(p);
    p->applied_seq = m->applied_seq;
    if (m->rejected)
        goto out;
    /* It took a message of ours, sent then, in our term: it followed us at that time. */
    if (sent > p->acked_sent_ns)
        p->acked_sent_ns = sent;
    if (m->need_snapshot) {
        if (p->state != P_SNAP_SEND && p->state != P_SNAP_START) {
            peer_drop_snapshot(r, p);
            p->state = P_SNAP_START;
        }
    } else if (p->state == P_SNAP_WAIT) {
        if (m->last_seq >= p->snap_seq && !m->mismatch) {
            /* Installed: stream from the checkpoint's sequence on. */
            rlog(r, "snapshot_installed peer=%u seq=%" PRIu64, p->id, p->snap_seq);
            p->match_seq = p->snap_seq;
            p->next_seq = p->snap_seq + 1;
            p->prev_term = p->snap_term;
            peer_drop_snapshot(r, p);
            st_log_iter_destroy(p->it);
            p->it = NULL;
            p->state = P_STREAM;
        }
    } else if (m->mismatch) {
        if (p->state == P_PROBE || p->state == P_STREAM) {
            /* Resend from the follower's applied sequence: committed, so our logs agree there. */
            if (m->applied_seq > p->match_seq)
                p->match_seq = m->applied_seq;
            p->next_seq = m->applied_seq + 1;
            p->prev_term = 0;
            st_log_iter_destroy(p->it);
            p->it = NULL;
            if (m->applied_seq > 0 &&
                st_db_log_term_at(r->db, m->applied_seq, &p->prev_term) != ST_OK) {
                p->state = P_SNAP_START;
            } else {
                p->state = P_STREAM;
                p->inflight_head = p->inflight_n = 0;
                p->inflight_bytes = 0;
            }
        }
    } else if (p->state == P_PROBE || p->state == P_STREAM) {
        if (m->last_seq > p->match_seq)
            p->match_seq = m->last_seq;
        p->state = P_STREAM;
    }
    advance_commit(r);
    if (r->applied_seq >= r->commit_seq)
        collect_satisfied(r, &dl); /* ACK_ALL waiters wait for matches, not applies */
    pthread_cond_broadcast(&r->cv);
out:
    pthread_mutex_unlock(&r->mu);
    run_done(&dl, ST_OK, "");
    deliver(r, &ev);
}

void st_replica_link_down(st_replica *r, uint32_t peer_id, uint64_t term)
{
    pthread_mutex_lock(&r->mu);
    peer *p = find_peer(r, peer_id);
    if (p && p->link_term == term) {
        /* Keep next_seq: the probe of the next link checks it. */
        uint64_t next = p->next_seq > p->match_seq + 1 ? p->match_seq + 1 : p->next_seq;
        peer_reset_link(r, p);
        p->next_seq = next;
        p->prev_term = 0;
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- the follower ------------------------------------------------------------------------- */

void st_replica_answer_free(Strata__V1__FollowerMessage *out)
{
    (void)out; /* nothing is allocated today; kept so the contract can grow */
}

static void answer(st_replica *r, Strata__V1__FollowerMessage *out, uint64_t match_seq)
{
    uint64_t last, last_term, applied;
    st_db_log_state(r->db, &last, &last_term, &applied);
    out->term = r->ps.term;
    out->node_id = r->o.node_id;
    out->last_seq = match_seq;
    out->last_term = last_term;
    if (match_seq != last)
        st_db_log_term_at(r->db, match_seq, &out->last_term);
    out->applied_seq = applied;
}

/* Append records after prev_seq, skipping what we hold and truncating at the first conflict. */
static st_status follow_append(st_replica *r, const Strata__V1__Append *a, bool *mismatch,
                               uint64_t *match)
{
    uint64_t last, last_term, applied;
    st_db_log_state(r->db, &last, &last_term, &applied);
    *mismatch = false;
    if (a->prev_seq > last) {
        *mismatch = true;
        return ST_OK;
    }
    if (a->prev_seq > applied) {
        uint64_t t;
        if (st_db_log_term_at(r->db, a->prev_seq, &t) != ST_OK || t != a->prev_term) {
            *mismatch = true;
            return ST_OK;
        }
    }
    /* Check every record before touching the log: all or nothing. */
    uint64_t expect = a->prev_seq + 1;
    for (size_t i = 0; i < a->n_records; i++) {
        const Strata__V1__LogRecord *rec = a->records[i];
        st_slice data = st_slice_make(rec->data.data, rec->data.len);
        st_log_record_info info;
        if (st_crc32c(data.data, data.len) != rec->crc)
            return st_error(ST_CORRUPTION,
                            "replicated record at sequence %" PRIu64 " fails its checksum",
                            rec->seq);
        st_status s = st_log_record_parse(data, &info);
        if (s)
            return s;
        if (info.seq != rec->seq || info.term != rec->term || info.seq != expect || info.count == 0)
            return st_error(ST_CORRUPTION,
                            "replicated record %zu claims sequence %" PRIu64 " (expected %" PRIu64
                            ")",
                            i + 1, info.seq, expect);
        expect = info.seq + info.count;
    }
    *match = expect - 1;
    size_t i = 0;
    for (; i < a->n_records; i++) {
        const Strata__V1__LogRecord *rec = a->records[i];
        st_log_record_info info;
        st_log_record_parse(st_slice_make(rec->data.data, rec->data.len), &info);
        uint64_t rlast = info.seq + info.count - 1;
        if (rlast <= applied)
            continue; /* committed: we hold it already */
        if (info.seq <= applied) {
            *mismatch = true; /* cannot happen between honest nodes: records never split */
            return ST_OK;
        }
        if (info.seq > last)
            break;
        uint64_t t;
        if (st_db_log_term_at(r->db, info.seq, &t) == ST_OK && t == info.term)
            continue; /* the same record (log matching) */
        /* A conflicting, hence uncommitted, suffix: drop it. */
        st_status s = st_db_log_truncate(r->db, info.seq - 1);
        if (s)
            return s;
        rlog(r, "truncate_divergent after_seq=%" PRIu64 " dropped=%" PRIu64, info.seq - 1,
             last - (info.seq - 1));
        last = info.seq - 1;
        break;
    }
    if (i == a->n_records)
        return ST_OK;
    size_t n = a->n_records - i;
    st_slice small[16], *recs = n <= 16 ? small : malloc(n * sizeof(*recs));
    if (!recs)
        return st_error(ST_NO_MEMORY, "out of memory");
    for (size_t k = 0; k < n; k++)
        recs[k] = st_slice_make(a->records[i + k]->data.data, a->records[i + k]->data.len);
    st_status s = st_db_log_append_records(r->db, recs, n);
    if (recs != small)
        free(recs);
    return s;
}

static void rm_tree(st_env *env, const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    if (env->list(env, dir, &names, &n) != ST_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(env, path);
        else
            env->unlink(env, path);
    }
    st_env_free_names(names, n);
    rmdir(dir);
}

/* Take one snapshot chunk (follow_mu held). *installed when the snapshot is complete and in. */
static st_status follow_snapshot(st_replica *r, const Strata__V1__SnapshotChunk *c, bool *installed,
                                 bool *restart)
{
    char dir[4096], path[4600];
    st_status s = ST_OK;
    *installed = *restart = false;
    snprintf(dir, sizeof(dir), "%s/snap-recv", r->state_dir);
    if (st_crc32c(c->data.data, c->data.len) != c->crc)
        return st_error(ST_CORRUPTION, "snapshot chunk of %s at %" PRIu64 " fails its checksum",
                        c->file, c->offset);
    if (!c->file || !*c->file || strstr(c->file, "..") || c->file[0] == '/')
        return st_error(ST_CORRUPTION, "snapshot chunk names a bad file");
    bool new_file = !r->recv_file || strcmp(r->recv_file, c->file) != 0;
    if (c->seq != r->recv_seq || c->term != r->recv_term) {
        /* A new snapshot: start the staging directory afresh. */
        if (r->recv_fd)
            r->env->close(r->recv_fd);
        r->recv_fd = NULL;
        free(r->recv_file);
        r->recv_file = NULL;
        rm_tree(r->env, dir);
        if ((s = r->env->mkdir(r->env, dir)))
            return s;
        snprintf(path, sizeof(path), "%s/sst", dir);
        if ((s = r->env->mkdir(r->env, path)))
            return s;
        r->recv_seq = c->seq;
        r->recv_term = c->term;
        new_file = true;
        rlog(r, "snapshot_receive seq=%" PRIu64, c->seq);
    }
    if (new_file) {
        if (r->recv_fd)
            r->env->close(r->recv_fd);
        r->recv_fd = NULL;
        free(r->recv_file);
        r->recv_file = strdup(c->file);
        r->recv_size = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, c->file);
        if (!r->recv_file)
            return st_error(ST_NO_MEMORY, "out of memory");
        if ((s = r->env->open_writable(r->env, path, false, &r->recv_fd)))
            return s;
    }
    if (c->offset != r->recv_size) {
        /* A gap: something was lost; ask for the snapshot again. */
        *restart = true;
        r->recv_seq = r->recv_term = 0;
        return ST_OK;
    }
    if (c->data.len && (s = r->env->append(r->recv_fd, c->data.data, c->data.len)))
        return s;
    r->recv_size += c->data.len;
    if (r->recv_size == c->file_size && (s = r->env->sync(r->recv_fd)))
        return s;
    if (!c->done)
        return ST_OK;
    r->env->close(r->recv_fd);
    r->recv_fd = NULL;
    snprintf(path, sizeof(path), "%s/sst", dir);
    if ((s = r->env->sync_dir(r->env, path)) || (s = r->env->sync_dir(r->env, dir)))
        return s;
    uint64_t seq = 0;
    s = st_db_install_checkpoint(r->db, dir, &seq);
    r->recv_seq = r->recv_term = 0;
    free(r->recv_file);
    r->recv_file = NULL;
    rm_tree(r->env, dir);
    if (s)
        return s;
    pthread_mutex_lock(&r->mu);
    r->applied_seq = seq;
    if (r->commit_seq < seq)
        r->commit_seq = seq;
    r->n_snap_installed++;
    pthread_mutex_unlock(&r->mu);
    rlog(r, "snapshot_installed seq=%" PRIu64, seq);
    *installed = true;
    return ST_OK;
}

static void start_election(st_replica *r, bool prevote, bool transfer, role_event *ev,
                           Strata__V1__VoteRequest *req);
static void send_votes(st_replica *r, const Strata__V1__VoteRequest *req);

st_status st_replica_on_leader_message(st_replica *r, const Strata__V1__LeaderMessage *m,
                                       Strata__V1__FollowerMessage *out)
{
    role_event ev = {0};
    st_status s = ST_OK;
    strata__v1__follower_message__init(out);
    pthread_mutex_lock(&r->follow_mu);
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->follow_mu);
        return st_error(ST_SHUTDOWN, "the node is shutting down");
    }
    if (m->term < r->ps.term) {
        out->term = r->ps.term;
        out->node_id = r->o.node_id;
        out->rejected = true;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_unlock(&r->follow_mu);
        return ST_OK;
    }
    if (m->term > r->ps.term || r->role != ST_ROLE_FOLLOWER || r->leader_id != m->leader_id) {
        if ((s = become_follower(r, m->term, m->leader_id, &ev))) {
            pthread_mutex_unlock(&r->mu);
            pthread_mutex_unlock(&r->follow_mu);
            deliver(r, &ev);
            return s;
        }
    }
    if (m->leader_addr && m->leader_addr[0])
        snprintf(r->leader_hint, sizeof(r->leader_hint), "%s", m->leader_addr);
    r->last_heard_ns = now_ns();
    reset_election_timer(r);
    pthread_mutex_unlock(&r->mu);

    uint64_t match = 0;
    bool mismatch = false, need_snapshot = false;
    Strata__V1__VoteRequest req = STRATA__V1__VOTE_REQUEST__INIT;
    bool elect = false;
    switch (m->body_case) {
    case STRATA__V1__LEADER_MESSAGE__BODY_APPEND:
        s = follow_append(r, m->append, &mismatch, &match);
        break;
    case STRATA__V1__LEADER_MESSAGE__BODY_SNAPSHOT: {
        bool installed = false, restart = false;
        s = follow_snapshot(r, m->snapshot, &installed, &restart);
        /* need_snapshot asks the leader to start the transfer over (a chunk went missing). */
        need_snapshot = restart;
        match = installed ? m->snapshot->seq : 0;
        if (s == ST_OK && !installed && !restart) {
            /* Mid-transfer: answer so the leader's window moves; match means nothing yet. */
            st_db_log_state(r->db, NULL, NULL, &match);
        }
        break;
    }
    case STRATA__V1__LEADER_MESSAGE__BODY_TIMEOUT_NOW:
        pthread_mutex_lock(&r->mu);
        start_election(r, false, true, &ev, &req);
        elect = true;
        pthread_mutex_unlock(&r->mu);
        st_db_log_state(r->db, &match, NULL, NULL);
        break;
    default:
        s = st_error(ST_CORRUPTION, "leader message without a body");
        break;
    }
    if (s == ST_OK) {
        pthread_mutex_lock(&r->mu);
        answer(r, out, mismatch ? 0 : match);
        if (mismatch) {
            uint64_t last;
            st_db_log_state(r->db, &last, NULL, NULL);
            out->last_seq = last;
        }
        out->mismatch = mismatch;
        out->need_snapshot = need_snapshot;
        /* Commit what the leader has committed, as far as our log is known to match its. */
        if (!mismatch && m->body_case == STRATA__V1__LEADER_MESSAGE__BODY_APPEND) {
            uint64_t c = m->commit_seq < match ? m->commit_seq : match;
            if (c > r->commit_seq) {
                r->commit_seq = c;
                pthread_cond_broadcast(&r->cv);
            }
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&r->follow_mu);
    deliver(r, &ev);
    if (elect)
        send_votes(r, &req);
    return s;
}

/* ---- elections --------------------------------------------------------------------------- */

/* Begin a pre-vote or a real election (mu held); fill req for send_votes. */
static void start_election(st_replica *r, bool prevote, bool transfer, role_event *ev,
                           Strata__V1__VoteRequest *req)
{
    uint64_t last, last_term;
    st_db_log_state(r->db, &last, &last_term, NULL);
    r->election_id++;
    r->prevote = prevote;
    r->votes = 1u << r->self_index;
    if (!prevote) {
        st_raft_state next = {r->ps.term + 1, r->o.node_id};
        if (st_raft_state_save(r->env, r->state_dir, &next) != ST_OK) {
            rlog(r, "error cannot save the term: %s", st_errmsg());
            reset_election_timer(r);
            return;
        }
        r->ps = next;
        if (r->role != ST_ROLE_CANDIDATE) {
            ev->changed = true;
            ev->role = ST_ROLE_CANDIDATE;
            ev->term = r->ps.term;
        }
        r->role = ST_ROLE_CANDIDATE;
        r->leader_id = 0;
        r->n_elections++;
        rlog(r, "election term=%" PRIu64 " last_seq=%" PRIu64 " last_term=%" PRIu64 "%s",
             r->ps.term, last, last_term, transfer ? " (hand-over)" : "");
    }
    reset_election_timer(r);
    strata__v1__vote_request__init(req);
    req->term = prevote ? r->ps.term + 1 : r->ps.term;
    req->candidate_id = r->o.node_id;
    req->last_seq = last;
    req->last_term = last_term;
    req->pre_vote = prevote;
    req->transfer = transfer;
}

static void send_votes(st_replica *r, const Strata__V1__VoteRequest *req)
{
    for (size_t i = 0; i < r->npeers; i++)
        if (r->o.net.request_vote)
            r->o.net.request_vote(r->o.net.ctx, r->peers[i].id, req);
}

static size_t popcount(uint32_t x)
{
    size_t n = 0;
    for (; x; x &= x - 1)
        n++;
    return n;
}

/* We won (mu held): lead, and append a no-op of our term first (done by the caller, unlocked). */
static void become_leader(st_replica *r, role_event *ev)
{
    uint64_t last, last_term;
    st_db_log_state(r->db, &last, &last_term, NULL);
    r->role = ST_ROLE_LEADER;
    r->leader_id = r->o.node_id;
    r->lead_since_ns = now_ns();
    r->self_match = last;
    r->transferring = false;
    r->n_leader_changes++;
    for (size_t i = 0; i < r->npeers; i++)
        peer_start(r, &r->peers[i], last, last_term);
    ev->changed = true;
    ev->role = ST_ROLE_LEADER;
    ev->term = r->ps.term;
    rlog(r, "leader node=%u term=%" PRIu64 " last_seq=%" PRIu64, r->o.node_id, r->ps.term, last);
    pthread_cond_broadcast(&r->cv);
}

/* Append the new term's no-op so that earlier records can commit with it. */
static void append_noop(st_replica *r)
{
    st_batch *b = NULL;
    uint64_t seq;
    if (st_batch_create(&b) == ST_OK && st_batch_noop(b) == ST_OK &&
        st_replica_append(r, b, &seq) != ST_OK)
        rlog(r, "error cannot append the leader's first record: %s", st_errmsg());
    st_batch_destroy(b);
}

void st_replica_on_vote_request(st_replica *r, const Strata__V1__VoteRequest *q,
                                Strata__V1__VoteResponse *a)
{
    role_event ev = {0};
    strata__v1__vote_response__init(a);
    pthread_mutex_lock(&r->mu);
    uint64_t last, last_term;
    st_db_log_state(r->db, &last, &last_term, NULL);
    int64_t now = now_ns();
    bool log_ok = log_up_to_date(q->last_seq, q->last_term, last, last_term);
    /* Leader stickiness: while we hear from a live leader (or are one), ignore candidates,
       unless the leader itself handed over. */
    int64_t election_ns = (int64_t)r->o.election_ms * 1000000;
    bool leader_alive = (r->role == ST_ROLE_LEADER) ||
                        (r->leader_id != 0 && now - r->last_heard_ns < election_ns) ||
                        /* A node that just started may have followed a leader a moment ago
                           (read leases count on that): it votes after a timeout too. */
                        now - r->started_ns < election_ns;
    bool granted = false;
    if (q->term < r->ps.term || (leader_alive && !q->transfer)) {
        granted = false;
    } else if (q->pre_vote) {
        granted = log_ok && q->term > r->ps.term;
    } else {
        if (q->term > r->ps.term && become_follower(r, q->term, 0, &ev) != ST_OK)
            goto out;
        if ((r->ps.voted_for == 0 || r->ps.voted_for == q->candidate_id) && log_ok) {
            st_raft_state next = {r->ps.term, q->candidate_id};
            if (r->ps.voted_for != q->candidate_id &&
                st_raft_state_save(r->env, r->state_dir, &next) != ST_OK)
                goto out;
            r->ps = next;
            granted = true;
            reset_election_timer(r);
        }
    }
out:
    a->term = r->ps.term;
    a->granted = granted;
    pthread_mutex_unlock(&r->mu);
    deliver(r, &ev);
}

void st_replica_on_vote_response(st_replica *r, uint32_t peer_id, const Strata__V1__VoteRequest *q,
                                 const Strata__V1__VoteResponse *a)
{
    role_event ev = {0};
    Strata__V1__VoteRequest req = STRATA__V1__VOTE_REQUEST__INIT;
    bool send = false, noop = false;
    pthread_mutex_lock(&r->mu);
    if (a->term > r->ps.term) {
        /* The voter is in a newer term than ours: adopt it and follow. */
        become_follower(r, a->term, 0, &ev);
        reset_election_timer(r);
        goto out;
    }
    size_t idx = r->cluster.n;
    for (size_t i = 0; i < r->cluster.n; i++)
        if (r->cluster.members[i].id == peer_id)
            idx = i;
    if (!a->granted || idx == r->cluster.n || r->role == ST_ROLE_LEADER)
        goto out;
    if (q->pre_vote) {
        if (!r->prevote || q->term != r->ps.term + 1 || r->role == ST_ROLE_LEADER)
            goto out;
        r->votes |= 1u << idx;
        if (popcount(r->votes) >= st_cluster_majority(&r->cluster)) {
            start_election(r, false, false, &ev, &req);
            send = r->role == ST_ROLE_CANDIDATE;
        }
    } else {
        if (r->prevote || r->role != ST_ROLE_CANDIDATE || q->term != r->ps.term)
            goto out;
        r->votes |= 1u << idx;
        if (popcount(r->votes) >= st_cluster_majority(&r->cluster)) {
            become_leader(r, &ev);
            noop = true;
        }
    }
out:
    pthread_mutex_unlock(&r->mu);
    if (noop)
        append_noop(r);
    deliver(r, &ev);
    if (send)
        send_votes(r, &req);
}

/* ---- threads ----------------------------------------------------------------------------- */

/* Keep WAL segments that followers still need (leader), within the byte budget. */
static void update_retention(st_replica *r)
{
    uint64_t hold = UINT64_MAX;
    if (r->role == ST_ROLE_LEADER) {
        for (size_t i = 0; i < r->npeers; i++) {
            peer *p = &r->peers[i];
            uint64_t need =
                p->state >= P_SNAP_START && p->snap_seq ? p->snap_seq + 1 : p->match_seq + 1;
            if (need < hold)
                hold = need;
        }
    }
    st_stats st;
    if (hold != UINT64_MAX && st_db_stats(r->db, &st) == ST_OK &&
        st.wal_bytes > r->o.wal_retain_bytes)
        hold = UINT64_MAX; /* too far behind: those followers get a snapshot */
    st_db_log_retain(r->db, hold);
}

static void *ticker_main(void *arg)
{
    st_replica *r = arg;
    pthread_setname_np(pthread_self(), "st-ticker");
    int tick = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        role_event ev = {0};
        done_list expired = {NULL};
        Strata__V1__VoteRequest req = STRATA__V1__VOTE_REQUEST__INIT;
        bool send = false, noop = false;
        int64_t now = now_ns();
        if (r->role != ST_ROLE_LEADER && now >= r->election_deadline_ns) {
            if (r->cluster.n == 1) {
                start_election(r, false, false, &ev, &req);
                become_leader(r, &ev);
                noop = true;
            } else {
                /* A pre-vote first, unless we are already a candidate whose vote timed out. */
                start_election(r, r->role != ST_ROLE_CANDIDATE, false, &ev, &req);
                send = true;
            }
        } else if (r->role == ST_ROLE_LEADER && r->cluster.n > 1) {
            /* Step down if a majority has been silent for the longest election timeout: by then
               a majority may have elected someone else. */
            size_t alive = 1;
            int64_t limit = 2 * (int64_t)r->o.election_ms * 1000000;
            for (size_t i = 0; i < r->npeers; i++)
                if (now - r->peers[i].last_ack_ns < limit)
                    alive++;
            if (alive < st_cluster_majority(&r->cluster) && now - r->lead_since_ns > limit) {
                rlog(r, "quorum_lost term=%" PRIu64 " reachable=%zu", r->ps.term, alive);
                become_follower(r, r->ps.term, 0, &ev);
                reset_election_timer(r);
            }
        }
        /* Waiters whose deadline passed. */
        waiter **pp = &r->waiters;
        r->waiters_tail = NULL;
        while (*pp) {
            waiter *w = *pp;
            if (w->deadline_ns != INT64_MAX && w->deadline_ns <= now) {
                *pp = w->next;
                finish_later(&expired, w);
            } else {
                r->waiters_tail = w;
                pp = &w->next;
            }
        }
        if (++tick % 20 == 0)
            update_retention(r);
        pthread_mutex_unlock(&r->mu);
        if (noop)
            append_noop(r);
        deliver(r, &ev);
        if (send)
            send_votes(r, &req);
        run_done(&expired, ST_TIMEOUT,
                 "the write did not reach its acknowledgement level before its deadline; it may "
                 "or may not have been committed");
        usleep(TICK_MS * 1000);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void *applier_main(void *arg)
{
    st_replica *r = arg;
    pthread_setname_np(pthread_self(), "st-applier");
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (r->commit_seq <= r->applied_seq) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        uint64_t upto = r->commit_seq;
        pthread_mutex_unlock(&r->mu);
        st_status s = st_db_log_apply(r->db, upto);
        uint64_t applied;
        st_db_log_state(r->db, NULL, NULL, &applied);
        if (s)
            rlog(r, "error apply: %s", st_errmsg());
        if (r->o.on_applied)
            r->o.on_applied(r->o.on_applied_ctx, applied);
        done_list dl = {NULL};
        pthread_mutex_lock(&r->mu);
        if (applied > r->applied_seq)
            r->applied_seq = applied;
        collect_satisfied(r, &dl);
        if (s) {
            /* The engine refuses writes now: nothing more can be applied. */
            pthread_mutex_unlock(&r->mu);
            run_done(&dl, ST_OK, "");
            usleep(100000);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        run_done(&dl, ST_OK, "");
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- transfer ---------------------------------------------------------------------------- */

st_status st_replica_transfer(st_replica *r, uint32_t target, uint32_t timeout_ms,
                              uint32_t *pause_ms)
{
    st_status s = ST_OK;
    int64_t start = now_ns(), deadline = start + (int64_t)timeout_ms * 1000000;
    pthread_mutex_lock(&r->mu);
    if (r->role != ST_ROLE_LEADER) {
        s = not_leader(r);
        pthread_mutex_unlock(&r->mu);
        return s;
    }
    peer *p = NULL;
    if (target) {
        p = find_peer(r, target);
        if (!p) {
            pthread_mutex_unlock(&r->mu);
            return st_error(target == r->o.node_id ? ST_OK : ST_INVALID_ARGUMENT,
                            target == r->o.node_id ? "node %u already leads"
                                                   : "node %u is not a member",
                            target);
        }
    } else {
        for (size_t i = 0; i < r->npeers; i++)
            if (!p || r->peers[i].match_seq > p->match_seq)
                p = &r->peers[i];
        if (!p) {
            pthread_mutex_unlock(&r->mu);
            return st_error(ST_INVALID_ARGUMENT, "no other member to hand over to");
        }
    }
    uint64_t term = r->ps.term;
    r->transferring = true; /* writes are refused from here on */
    rlog(r, "transfer_begin to=%u term=%" PRIu64, p->id, term);
    p->timeout_now = true;
    pthread_cond_broadcast(&r->cv);
    while (r->role == ST_ROLE_LEADER && r->ps.term == term && now_ns() < deadline && !r->stopping)
        timed_wait(r, now_ns() + 10000000);
    bool moved = !(r->role == ST_ROLE_LEADER && r->ps.term == term);
    role_event ev = {0};
    if (!moved && p->timeout_now) {
        /* The target was never told to campaign: lead on. */
        r->transferring = false;
        p->timeout_now = false;
        s = st_error(ST_TIMEOUT, "node %u did not take over within %u ms; this node leads on",
                     p->id, timeout_ms);
    } else if (!moved) {
        /* It was told, and may still campaign: its votes ignore the others' leader stickiness,
           so this node's read lease proves nothing any more. Step down; an ordinary election
           settles who leads. */
        r->transferring = false;
        if (become_follower(r, term, 0, &ev) == ST_OK)
            reset_election_timer(r);
        s = st_error(ST_TIMEOUT,
                     "node %u did not take over within %u ms; this node stepped down and an "
                     "election will settle who leads",
                     p->id, timeout_ms);
    } else {
        /* Wait (briefly) to learn who leads now, for the caller's report. */
        while (r->leader_id == 0 && now_ns() < deadline && !r->stopping)
            timed_wait(r, now_ns() + 10000000);
    }
    if (pause_ms)
        *pause_ms = (uint32_t)((now_ns() - start) / 1000000);
    pthread_mutex_unlock(&r->mu);
    deliver(r, &ev);
    return s;
}

/* ---- life cycle -------------------------------------------------------------------------- */

void st_replica_options_init(st_replica_options *o)
{
    memset(o, 0, sizeof(*o));
    o->heartbeat_ms = 50;
    o->election_ms = 300;
    o->wal_retain_bytes = 256u << 20;
    /* Small enough that an acknowledgement (and a heartbeat) never queues behind more than a few
       milliseconds of a follower's appends; large enough for hundreds of MB/s on a LAN. */
    o->max_append_bytes = 256u << 10;
    o->max_inflight_bytes = 1u << 20;
    o->snapshot_chunk_bytes = 1u << 20;
}

st_status st_replica_create(const st_replica_options *o, st_db *db, st_replica **out)
{
    st_status s;
    st_replica *r = calloc(1, sizeof(*r));
    if (!r)
        return st_error(ST_NO_MEMORY, "out of memory");
    r->o = *o;
    r->started_ns = now_ns();
    r->o.advertise_addr = NULL; /* copied below */
    if (o->advertise_addr)
        snprintf(r->advertise, sizeof(r->advertise), "%s", o->advertise_addr);
    r->cluster = *o->cluster;
    r->db = db;
    r->env = o->env ? o->env : st_env_posix();
    r->state_dir = strdup(o->state_dir);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->follow_mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->rng = (uint64_t)now_ns() ^ ((uint64_t)o->node_id << 40) ^ (uint64_t)getpid();
    if (!r->rng)
        r->rng = 1;
    if (!r->state_dir) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    const st_member *self = st_cluster_find(&r->cluster, o->node_id);
    if (!self) {
        s = st_error(ST_INVALID_ARGUMENT, "--node-id %u is not in --peers", o->node_id);
        goto fail;
    }
    r->self_index = (uint32_t)(self - r->cluster.members);
    r->peers = calloc(r->cluster.n, sizeof(*r->peers));
    if (!r->peers) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->cluster.n; i++) {
        if (r->cluster.members[i].id == o->node_id)
            continue;
        peer *p = &r->peers[r->npeers++];
        p->id = r->cluster.members[i].id;
        snprintf(p->addr, sizeof(p->addr), "%s", r->cluster.members[i].addr);
    }
    if ((s = st_raft_state_load(r->env, r->state_dir, &r->ps)))
        goto fail;
    st_db_log_state(db, NULL, NULL, &r->applied_seq);
    r->commit_seq = r->applied_seq;
    r->role = ST_ROLE_FOLLOWER;
    reset_election_timer(r);
    if (r->cluster.n == 1)
        r->election_deadline_ns = 0; /* alone: lead at once */
    rlog(r, "start node=%u members=%zu term=%" PRIu64 " applied=%" PRIu64, o->node_id, r->cluster.n,
         r->ps.term, r->applied_seq);
    if (pthread_create(&r->ticker, NULL, ticker_main, r) != 0) {
        s = st_error(ST_IO_ERROR, "cannot start the replica's ticker thread");
        goto fail;
    }
    if (pthread_create(&r->applier, NULL, applier_main, r) != 0) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->ticker, NULL);
        s = st_error(ST_IO_ERROR, "cannot start the replica's applier thread");
        goto fail;
    }
    r->threads = true;
    *out = r;
    return ST_OK;
fail:
    free(r->peers);
    free(r->state_dir);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->follow_mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return s;
}

void st_replica_shutdown(st_replica *r)
{
    done_list dl = {NULL};
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    collect_all(r, &dl);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    run_done(&dl, ST_SHUTDOWN, "the node is shutting down");
}

void st_replica_destroy(st_replica *r)
{
    if (!r)
        return;
    st_replica_shutdown(r);
    if (r->threads) {
        pthread_join(r->ticker, NULL);
        pthread_join(r->applier, NULL);
    }
    for (size_t i = 0; i < r->npeers; i++)
        peer_reset_link(r, &r->peers[i]);
    if (r->recv_fd)
        r->env->close(r->recv_fd);
    free(r->recv_file);
    free(r->peers);
    free(r->state_dir);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->follow_mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* ---- state ------------------------------------------------------------------------------- */

static const char *peer_state_name(const st_replica *r, const peer *p, int64_t now)
{
    if (r->role != ST_ROLE_LEADER)
        return "";
    if (now - p->last_ack_ns > (int64_t)r->o.election_ms * 1000000)
        return "disconnected";
    switch (p->state) {
    case P_PROBE:
        return "probing";
    case P_STREAM:
        return "streaming";
    default:
        return "snapshotting";
    }
}

/*
 * Log bytes after sequence `seq` appended by this leader (mu held): from the newest mark at or
 * below seq. When seq is older than every mark kept (or the records came from an earlier
 * leader), what the marks cover: a lower bound.
 */
static uint64_t lag_bytes_after(const st_replica *r, uint64_t seq)
{
    if (r->lag_count == 0)
        return 0;
    size_t newest = (r->lag_next + LAG_MARKS - 1) % LAG_MARKS;
    if (r->lag_mark[newest].seq <= seq)
        return 0;
    uint64_t base = 0; /* the running total at seq */
    /* Marks are in sequence order, oldest at lag_next - lag_count: binary search. */
    size_t lo = 0, hi = r->lag_count; /* offsets from the oldest */
    size_t oldest = (r->lag_next + LAG_MARKS - r->lag_count) % LAG_MARKS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->lag_mark[(oldest + mid) % LAG_MARKS].seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0)
        base = r->lag_mark[(oldest + lo - 1) % LAG_MARKS].bytes;
    else if (r->lag_count == LAG_MARKS)
        base = r->lag_mark[oldest].bytes; /* older marks were overwritten */
    return r->log_bytes - base;
}

void st_replica_info_get(st_replica *r, st_replica_info *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&r->mu);
    int64_t now = now_ns();
    out->role = r->role;
    out->term = r->ps.term;
    out->leader_id = r->leader_id;
    const char *leader_addr = leader_client_addr(r);
    if (leader_addr)
        snprintf(out->leader_addr, sizeof(out->leader_addr), "%s", leader_addr);
    out->commit_seq = r->commit_seq;
    st_db_log_state(r->db, &out->last_seq, &out->last_term, &out->applied_seq);
    out->npeers = (uint32_t)r->npeers;
    for (size_t i = 0; i < r->npeers; i++) {
        const peer *p = &r->peers[i];
        st_peer_info *pi = &out->peers[i];
        pi->id = p->id;
        snprintf(pi->addr, sizeof(pi->addr), "%s", p->addr);
        pi->match_seq = r->role == ST_ROLE_LEADER ? p->match_seq : 0;
        pi->lag_records = out->last_seq > pi->match_seq ? out->last_seq - pi->match_seq : 0;
        pi->lag_ms = r->role == ST_ROLE_LEADER ? (uint64_t)((now - p->last_ack_ns) / 1000000) : 0;
        pi->lag_bytes = r->role == ST_ROLE_LEADER ? lag_bytes_after(r, pi->match_seq) : 0;
        pi->state = peer_state_name(r, p, now);
    }
    out->elections = r->n_elections;
    out->leader_changes = r->n_leader_changes;
    out->snapshots_sent = r->n_snap_sent;
    out->snapshots_installed = r->n_snap_installed;
    pthread_mutex_unlock(&r->mu);
}

void st_replica_leader_addr(st_replica *r, char *buf, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    const char *leader_addr = leader_client_addr(r);
    snprintf(buf, cap, "%s", leader_addr && r->role != ST_ROLE_LEADER ? leader_addr : "");
    pthread_mutex_unlock(&r->mu);
}
