/*
 * replica.h - one node's part in the replicated log: role and term, shipping the WAL to
 * followers, counting copies, applying what is committed, elections, snapshots.
 *
 * The replica knows nothing of the network. node/ carries its messages (the protobuf-c types of
 * proto/strata/v1/replication.proto) over gRPC and calls in here:
 *
 *   leader side   for each peer, a link thread loops on st_replica_ship_next (which blocks until
 *                 there is something to send) and reports each answer with
 *                 st_replica_on_follower_message; st_replica_link_down when the stream breaks.
 *   follower side the Replicate handler passes each LeaderMessage to
 *                 st_replica_on_leader_message and sends back the answer it fills in.
 *   elections     the replica calls net.request_vote for each peer from its ticker thread; the
 *                 transport delivers each answer with st_replica_on_vote_response. The
 *                 RequestVote handler calls st_replica_on_vote_request.
 *   writes        the node's writer appends a group with st_replica_append, then waits for each
 *                 request's acknowledgement level with st_replica_wait.
 *
 * docs/replication.md states the protocol and the invariants this module keeps.
 *
 * Threads: every function may be called from any thread. The replica runs two threads of its
 * own: a ticker (elections, heartbeat and quorum checks, deadlines) and an applier (applies
 * committed records and completes waiters). Callbacks (net.*, on_applied, waiter callbacks) run
 * on replica threads or the caller's, never with a replica lock held.
 */
#ifndef STRATA_REPLICATION_REPLICA_H
#define STRATA_REPLICATION_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/coding.h"
#include "engine/db.h"
#include "replication/cluster.h"
#include "strata/v1/replication.pb-c.h"

typedef struct st_replica st_replica;

typedef enum st_role {
    ST_ROLE_FOLLOWER,
    ST_ROLE_CANDIDATE,
    ST_ROLE_LEADER,
} st_role;

const char *st_role_name(st_role r);

typedef enum st_ack_level {
    ST_ACK_LEADER = 1,   /* durable in the leader's WAL */
    ST_ACK_MAJORITY = 2, /* committed, and applied on the leader */
    ST_ACK_ALL = 3,      /* durable on every member, committed and applied on the leader */
} st_ack_level;

typedef struct st_replica_net {
    void *ctx;
    /* Send `req` to `peer` (do not block for the answer; deliver it with
       st_replica_on_vote_response, or nothing if the peer cannot be reached). */
    void (*request_vote)(void *ctx, uint32_t peer, const Strata__V1__VoteRequest *req);
    /* This node became leader of `term` (start a link per peer) or stopped leading. */
    void (*role_changed)(void *ctx, st_role role, uint64_t term);
} st_replica_net;

typedef struct st_replica_options {
    uint32_t node_id;
    const st_cluster *cluster;   /* every member, this node included; copied */
    const char *state_dir;       /* raft_state and snapshot staging live here */
    st_env *env;                 /* NULL: POSIX */
    uint32_t heartbeat_ms;       /* default 50 */
    uint32_t election_ms;        /* election timeout is random in [election_ms, 2 × election_ms);
                                    default 300 */
    uint64_t wal_retain_bytes;   /* WAL kept for lagging followers; default 256 MiB */
    size_t max_append_bytes;     /* records per Append message; default 256 KiB */
    size_t max_inflight_bytes;   /* unacknowledged bytes per follower; default 1 MiB */
    size_t snapshot_chunk_bytes; /* default 1 MiB */
    /* The address clients reach this node at, when it is not its cluster address (NULL or "":
       that one; copied). Leaders send it to followers, whose leader hints name it. */
    const char *advertise_addr;
    st_replica_net net;
    /* Called after records are applied (the applied sequence grew to `seq`), e.g. to release
       reads waiting for min_seq. May be NULL. */
    void (*on_applied)(void *ctx, uint64_t seq);
    void *on_applied_ctx;
    /* One line per event (term changes, elections, snapshots). May be NULL. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} st_replica_options;

void st_replica_options_init(st_replica_options *o);

/*
 * Create the replica over `db` (borrowed; opened with ST_REPLAY_PENDING) and start its threads.
 * Loads the persisted term and vote. The node starts as a follower; with a single member it
 * elects itself at once.
 */
st_status st_replica_create(const st_replica_options *o, st_db *db, st_replica **out);

/* Stop the threads, fail every waiter with ST_SHUTDOWN, free. Accepts NULL. Links must have
   stopped calling in (st_replica_ship_next returns ST_SHUTDOWN once this has begun). */
void st_replica_destroy(st_replica *r);

/* Begin stopping: ship_next returns ST_SHUTDOWN, new appends are refused. */
void st_replica_shutdown(st_replica *r);

/* ---- writes ---------------------------------------------------------------------------- */

/*
 * Leader: append `batch` to the log in the current term (one WAL record, durable per the sync
 * policy) and wake the links. ST_NOT_LEADER (message naming the leader, if known) on a follower.
 * *last_seq receives the batch's last sequence.
 */
st_status st_replica_append(st_replica *r, const st_batch *batch, uint64_t *last_seq);

/*
 * Leader: the sequence a linearizable read must see (the commit sequence), if this node is
 * sure it still leads. It is sure while it holds a lease: a majority (itself included) answered
 * messages it sent less than 0.9 × election_ms ago, and no member votes for another candidate
 * within election_ms of hearing from a leader or of starting; and once a record of its own term
 * has committed (until then the commit sequence may lag what an earlier leader committed).
 * ST_NOT_LEADER (message naming the leader, if known) on a follower or during a hand-over;
 * ST_BUSY when this node leads but holds no lease now (just elected, or cut off from the
 * majority): the caller retries or fails the read.
 */
st_status st_replica_read_index(st_replica *r, uint64_t *seq);

typedef void (*st_replica_done_fn)(void *arg, st_status s, const char *msg, uint64_t seq);

/*
 * Call done(arg, ...) once `seq` (from st_replica_append) reaches `level`, or with an error:
 * ST_TIMEOUT when deadline_ns (CLOCK_MONOTONIC ns; INT64_MAX = none) passes first, ST_NOT_LEADER
 * if this node stops leading first (the write may still commit: its outcome is unknown),
 * ST_SHUTDOWN when the replica stops. `done` runs exactly once, on a replica thread or inside
 * this call.
 */
void st_replica_wait(st_replica *r, uint64_t seq, st_ack_level level, int64_t deadline_ns,
                     st_replica_done_fn done, void *arg);

/* ---- the leader's side of a link ------------------------------------------------------- */

/*
 * The next message for `peer`, packed into `out` (cleared first): records, a heartbeat, or a
 * snapshot chunk. Blocks until there is one, or until `term` is no longer this node's leading
 * term (ST_NOT_LEADER: close the link) or the replica stops (ST_SHUTDOWN). `term` is the one
 * role_changed reported. ST_OK with `out` empty: nothing can be sent for a heartbeat period (a
 * snapshot's window is full); the link should check its stream and ask again after a pause.
 */
st_status st_replica_ship_next(st_replica *r, uint32_t peer, uint64_t term, st_buf *out);

/* An answer from `peer` on the link of `term`. */
void st_replica_on_follower_message(st_replica *r, uint32_t peer, uint64_t term,
                                    const Strata__V1__FollowerMessage *m);

/* The link to `peer` broke: what was in flight is lost; the next link starts with a probe. */
void st_replica_link_down(st_replica *r, uint32_t peer, uint64_t term);

/* ---- the follower's side --------------------------------------------------------------- */

/*
 * Handle one message from a leader and fill `out` (whose fields must be freed with
 * st_replica_answer_free). May block on the WAL. Returns ST_CORRUPTION when a record fails its
 * checksum or does not parse (nothing of the message is applied; the caller should drop the
 * stream so the leader starts over).
 */
st_status st_replica_on_leader_message(st_replica *r, const Strata__V1__LeaderMessage *m,
                                       Strata__V1__FollowerMessage *out);
void st_replica_answer_free(Strata__V1__FollowerMessage *out);

/* ---- elections ------------------------------------------------------------------------- */

void st_replica_on_vote_request(st_replica *r, const Strata__V1__VoteRequest *q,
                                Strata__V1__VoteResponse *a);
void st_replica_on_vote_response(st_replica *r, uint32_t peer, const Strata__V1__VoteRequest *q,
                                 const Strata__V1__VoteResponse *a);

/*
 * Hand leadership to `target` (0: the most up-to-date follower): stop taking writes, bring the
 * target's log up to ours, tell it to start an election. Waits until a new leader is known or
 * timeout_ms passes. ST_NOT_LEADER if this node does not lead. *pause_ms receives how long writes
 * were refused.
 */
st_status st_replica_transfer(st_replica *r, uint32_t target, uint32_t timeout_ms,
                              uint32_t *pause_ms);

/* ---- state ----------------------------------------------------------------------------- */

typedef struct st_peer_info {
    uint32_t id;
    char addr[256];
    uint64_t match_seq; /* highest sequence known to be durable there */
    uint64_t lag_records;
    uint64_t lag_bytes; /* log bytes behind (of what this leader appended; a lower bound) */
    uint64_t lag_ms;    /* since the leader last heard from it */
    const char *state;  /* "streaming", "probing", "snapshotting", "disconnected" */
} st_peer_info;

typedef struct st_replica_info {
    st_role role;
    uint64_t term;
    uint32_t leader_id; /* 0: unknown */
    char leader_addr[256];
    uint64_t commit_seq;
    uint64_t applied_seq;
    uint64_t last_seq;
    uint64_t last_term;
    uint32_t npeers;
    st_peer_info peers[ST_MAX_MEMBERS];
    uint64_t elections; /* elections this node started */
    uint64_t leader_changes;
    uint64_t snapshots_sent, snapshots_installed;
} st_replica_info;

void st_replica_info_get(st_replica *r, st_replica_info *out);

/* The leader's client address if known ("" otherwise), for FAILED_PRECONDITION hints. */
void st_replica_leader_addr(st_replica *r, char *buf, size_t cap);

#endif
