/*
 * test_replica.c - the replication core with an in-process network.
 *
 * Three replicas (each with its own engine) in one process. A "link" thread per (leader, peer)
 * carries LeaderMessages through their wire encoding to the peer and the answers back; vote
 * requests are carried by short-lived threads. Links can be cut, which drops messages and breaks
 * streams as a partition would. Covered: a single leader is elected; MAJORITY writes reach every
 * node and the logs converge byte for byte; the leader's crash elects another and loses no
 * acknowledged write; a partitioned leader acknowledges nothing and steps down; a node that comes
 * back with an unacknowledged tail drops it; a node far behind is brought up by a snapshot; a
 * hand-over (promote) moves leadership without losing writes; stale terms are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/db.h"
#include "replication/replica.h"
#include "tests/support/env_nosync.h"
#include "tests/support/testutil.h"

#define N 3

typedef struct node node;

typedef struct cluster_t {
    node *nodes[N + 1]; /* by id 1..N */
    pthread_mutex_t mu;
    bool cut[N + 1][N + 1]; /* guarded by mu: messages between i and j are dropped */
    st_cluster members;
    char *base;
    uint64_t wal_retain_bytes;
    uint32_t heartbeat_ms, election_ms; /* for nodes started from now on */
    /* guarded by mu: a held peer's answers are kept back, in order, until it is released */
    bool hold[N + 1];
    size_t rec_msgs[N + 1];     /* guarded by mu: Appends with records shipped to each peer */
    size_t recs[N + 1];         /* guarded by mu: the records they carried */
    atomic_int votes_in_flight; /* vote threads (detached) not yet finished */
} cluster_t;

struct node {
    uint32_t id;
    cluster_t *c;
    char *dir, *dbdir;
    st_db *db;
    st_replica *r;
    pthread_mutex_t mu;
    pthread_t links[N + 1];
    bool link_running[N + 1];
    uint64_t link_term;
    atomic_bool up;
    /* Held for reading while another node's thread calls into r, for writing while r is
       created or destroyed: a crashing node must not vanish under a delivery in progress. */
    pthread_rwlock_t life;
};

static bool is_cut(cluster_t *c, uint32_t a, uint32_t b)
{
    pthread_mutex_lock(&c->mu);
    bool cut = c->cut[a][b] || !c->nodes[a] || !c->nodes[b] || !atomic_load(&c->nodes[b]->up) ||
               !atomic_load(&c->nodes[a]->up);
    pthread_mutex_unlock(&c->mu);
    return cut;
}

/* Cut (cut true) or mend the links between a and b, both ways. */
static void set_cut(cluster_t *c, uint32_t a, uint32_t b, bool cut)
{
    pthread_mutex_lock(&c->mu);
    c->cut[a][b] = c->cut[b][a] = cut;
    pthread_mutex_unlock(&c->mu);
}

/* Cut node id off from every other node. */
static void isolate(cluster_t *c, uint32_t id)
{
    for (uint32_t i = 1; i <= N; i++)
        if (i != id)
            set_cut(c, id, i, true);
}

/* Mend every link. */
static void heal(cluster_t *c)
{
    pthread_mutex_lock(&c->mu);
    memset(c->cut, 0, sizeof(c->cut));
    pthread_mutex_unlock(&c->mu);
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

typedef struct link_arg {
    node *n;
    uint32_t peer;
    uint64_t term;
} link_arg;

/* Answers kept back from a held peer, oldest first, in their wire encoding. */
typedef struct stash {
    st_buf msgs[64];
    size_t n;
} stash;

static void stash_drop(stash *k)
{
    for (size_t i = 0; i < k->n; i++)
        st_buf_free(&k->msgs[i]);
    k->n = 0;
}

/* Deliver the answers kept back, in order. */
static void stash_deliver(stash *k, node *n, link_arg *la)
{
    for (size_t i = 0; i < k->n; i++) {
        Strata__V1__FollowerMessage *a =
            strata__v1__follower_message__unpack(NULL, k->msgs[i].len, k->msgs[i].data);
        assert_non_null(a);
        st_replica_on_follower_message(n->r, la->peer, la->term, a);
        strata__v1__follower_message__free_unpacked(a, NULL);
    }
    stash_drop(k);
}

static void *link_main(void *p)
{
    link_arg *la = p;
    node *n = la->n;
    cluster_t *c = n->c;
    st_buf buf;
    st_buf_init(&buf);
    stash kept = {.n = 0};
    bool broken = false;
    for (;;) {
        st_status s = st_replica_ship_next(n->r, la->peer, la->term, &buf);
        if (s)
            break;
        if (is_cut(c, n->id, la->peer)) {
            /* A partition breaks the stream: the leader starts over with a probe later. */
            if (!broken)
                st_replica_link_down(n->r, la->peer, la->term);
            broken = true;
            sleep_ms(5);
            continue;
        }
        broken = false;
        Strata__V1__LeaderMessage *m = strata__v1__leader_message__unpack(NULL, buf.len, buf.data);
        assert_non_null(m);
        if (m->body_case == STRATA__V1__LEADER_MESSAGE__BODY_APPEND && m->append->n_records) {
            pthread_mutex_lock(&c->mu);
            c->rec_msgs[la->peer]++;
            c->recs[la->peer] += m->append->n_records;
            pthread_mutex_unlock(&c->mu);
        }
        node *peer = c->nodes[la->peer];
        Strata__V1__FollowerMessage ans;
        pthread_rwlock_rdlock(&peer->life);
        if (atomic_load(&peer->up) && peer->r)
            s = st_replica_on_leader_message(peer->r, m, &ans);
        else
            s = ST_SHUTDOWN;
        pthread_rwlock_unlock(&peer->life);
        strata__v1__leader_message__free_unpacked(m, NULL);
        pthread_mutex_lock(&c->mu);
        bool hold = c->hold[la->peer];
        pthread_mutex_unlock(&c->mu);
        if (s == ST_OK && !is_cut(c, la->peer, n->id) && hold && kept.n < 64) {
            st_buf *b = &kept.msgs[kept.n++];
            st_buf_init(b);
            assert_true(st_buf_reserve(b, strata__v1__follower_message__get_packed_size(&ans)));
            b->len = strata__v1__follower_message__pack(&ans, b->data);
        } else if (s == ST_OK && !is_cut(c, la->peer, n->id)) {
            stash_deliver(&kept, n, la);
            st_replica_on_follower_message(n->r, la->peer, la->term, &ans);
        } else {
            stash_drop(&kept); /* the stream broke: its answers are lost */
            st_replica_link_down(n->r, la->peer, la->term);
        }
        if (s == ST_OK)
            st_replica_answer_free(&ans);
    }
    stash_drop(&kept);
    st_buf_free(&buf);
    free(la);
    return NULL;
}

static void role_changed(void *ctx, st_role role, uint64_t term)
{
    node *n = ctx;
    if (role != ST_ROLE_LEADER)
        return; /* links end on their own when ship_next says NOT_LEADER */
    pthread_mutex_lock(&n->mu);
    for (uint32_t p = 1; p <= N; p++) {
        if (p == n->id)
            continue;
        if (n->link_running[p])
            pthread_join(n->links[p], NULL);
        link_arg *la = malloc(sizeof(*la));
        *la = (link_arg){n, p, term};
        pthread_create(&n->links[p], NULL, link_main, la);
        n->link_running[p] = true;
    }
    pthread_mutex_unlock(&n->mu);
}

typedef struct vote_arg {
    node *from;
    uint32_t to;
    Strata__V1__VoteRequest req;
} vote_arg;

static void *vote_main(void *p)
{
    vote_arg *va = p;
    cluster_t *c = va->from->c;
    if (!is_cut(c, va->from->id, va->to) && !is_cut(c, va->to, va->from->id)) {
        Strata__V1__VoteResponse a;
        node *to = c->nodes[va->to], *from = va->from;
        bool answered = false;
        pthread_rwlock_rdlock(&to->life);
        if (atomic_load(&to->up) && to->r) {
            st_replica_on_vote_request(to->r, &va->req, &a);
            answered = true;
        }
        pthread_rwlock_unlock(&to->life);
        pthread_rwlock_rdlock(&from->life);
        if (answered && !is_cut(c, va->to, from->id) && atomic_load(&from->up) && from->r)
            st_replica_on_vote_response(from->r, va->to, &va->req, &a);
        pthread_rwlock_unlock(&from->life);
    }
    free(va);
    atomic_fetch_sub(&c->votes_in_flight, 1); /* the last touch of c */
    return NULL;
}

static void request_vote(void *ctx, uint32_t peer, const Strata__V1__VoteRequest *req)
{
    node *n = ctx;
    vote_arg *va = malloc(sizeof(*va));
    va->from = n;
    va->to = peer;
    va->req = *req;
    atomic_fetch_add(&n->c->votes_in_flight, 1);
    pthread_t t;
    pthread_create(&t, NULL, vote_main, va);
    pthread_detach(t);
}

static void log_line(void *ctx, const char *line)
{
    fprintf(stderr, "node %u: %s\n", ((node *)ctx)->id, line);
}

static void node_start(cluster_t *c, uint32_t id)
{
    node *n = c->nodes[id];
    if (!n) {
        n = calloc(1, sizeof(*n));
        n->id = id;
        n->c = c;
        char tag[32];
        snprintf(tag, sizeof(tag), "n%u", id);
        n->dir = st_test_path(c->base, tag);
        n->dbdir = st_test_path(n->dir, "db");
        pthread_mutex_init(&n->mu, NULL);
        pthread_rwlock_init(&n->life, NULL);
        st_env_posix()->mkdir(st_env_posix(), n->dir);
    }
    st_options o;
    st_options_init(&o);
    o.env = st_env_nosync();
    o.sync = ST_SYNC_NONE;
    o.replay = ST_REPLAY_PENDING;
    o.memtable_bytes = 128 * 1024;
    o.table_bytes = 64 * 1024;
    o.level1_bytes = 256 * 1024;
    assert_int_equal(st_db_open(n->dbdir, &o, &n->db), ST_OK);
    st_replica_options ro;
    st_replica_options_init(&ro);
    ro.node_id = id;
    ro.cluster = &c->members;
    ro.state_dir = n->dir;
    ro.env = st_env_nosync();
    ro.heartbeat_ms = c->heartbeat_ms;
    ro.election_ms = c->election_ms;
    ro.wal_retain_bytes = c->wal_retain_bytes;
    ro.snapshot_chunk_bytes = 64 * 1024;
    ro.net = (st_replica_net){n, request_vote, role_changed};
    if (getenv("ST_TEST_VERBOSE")) {
        ro.log = log_line;
        ro.log_ctx = n;
    }
    pthread_mutex_lock(&c->mu);
    c->nodes[id] = n;
    pthread_mutex_unlock(&c->mu);
    pthread_rwlock_wrlock(&n->life);
    st_status s = st_replica_create(&ro, n->db, &n->r);
    atomic_store(&n->up, s == ST_OK);
    pthread_rwlock_unlock(&n->life);
    assert_int_equal(s, ST_OK);
}

/* Crash the node: its replica and engine go away without a flush. */
static void node_stop(cluster_t *c, uint32_t id)
{
    node *n = c->nodes[id];
    atomic_store(&n->up, false);
    st_replica_shutdown(n->r);
    /* Wait for deliveries in progress from other nodes' threads to leave (a vote answer may
       still make this node leader and start links), then for the links to end. */
    pthread_rwlock_wrlock(&n->life);
    pthread_mutex_lock(&n->mu);
    for (uint32_t p = 1; p <= N; p++) {
        if (n->link_running[p])
            pthread_join(n->links[p], NULL);
        n->link_running[p] = false;
    }
    pthread_mutex_unlock(&n->mu);
    st_replica_destroy(n->r);
    n->r = NULL;
    pthread_rwlock_unlock(&n->life);
    st_db_close(n->db);
    n->db = NULL;
}

static cluster_t *cluster_new_timed(uint64_t retain, uint32_t heartbeat_ms, uint32_t election_ms)
{
    cluster_t *c = calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    c->base = st_test_mkdtemp("replica");
    c->wal_retain_bytes = retain;
    c->heartbeat_ms = heartbeat_ms;
    c->election_ms = election_ms;
    char spec[256];
    snprintf(spec, sizeof(spec), "1=a:1,2=b:2,3=c:3");
    assert_int_equal(st_cluster_parse(spec, &c->members), ST_OK);
    for (uint32_t i = 1; i <= N; i++)
        node_start(c, i);
    return c;
}

static cluster_t *cluster_new(uint64_t retain)
{
    return cluster_new_timed(retain, 20, 100);
}

static void cluster_free(cluster_t *c)
{
    for (uint32_t i = 1; i <= N; i++) {
        if (c->nodes[i] && c->nodes[i]->r)
            node_stop(c, i);
    }
    while (atomic_load(&c->votes_in_flight) > 0) /* detached vote threads */
        sleep_ms(1);
    for (uint32_t i = 1; i <= N; i++) {
        node *n = c->nodes[i];
        if (!n)
            continue;
        free(n->dir);
        free(n->dbdir);
        pthread_rwlock_destroy(&n->life);
        free(n);
    }
    st_test_rmdir(c->base);
    free(c->base);
    free(c);
}

/* The leader, waiting up to timeout_ms for exactly one live node to lead. */
static uint32_t wait_leader(cluster_t *c, int timeout_ms, uint32_t not_this)
{
    for (int t = 0; t < timeout_ms; t += 10) {
        uint32_t leader = 0;
        int leaders = 0;
        for (uint32_t i = 1; i <= N; i++) {
            node *n = c->nodes[i];
            if (!n || !n->r || !atomic_load(&n->up))
                continue;
            st_replica_info info;
            st_replica_info_get(n->r, &info);
            if (info.role == ST_ROLE_LEADER && i != not_this) {
                leader = i;
                leaders++;
            }
        }
        if (leaders == 1)
            return leader;
        sleep_ms(10);
    }
    return 0;
}

typedef struct wait_result {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    st_status s;
    uint64_t seq;
} wait_result;

static void on_done(void *arg, st_status s, const char *msg, uint64_t seq)
{
    (void)msg;
    wait_result *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->s = s;
    w->seq = seq;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Put key=value through node `id` and wait for `level`. */
static st_status put(cluster_t *c, uint32_t id, const char *key, const char *value,
                     st_ack_level level, int timeout_ms, uint64_t *seq)
{
    node *n = c->nodes[id];
    st_batch *b;
    st_batch_create(&b);
    st_batch_put(b, st_slice_str(key), st_slice_str(value));
    uint64_t last;
    st_status s = st_replica_append(n->r, b, &last);
    st_batch_destroy(b);
    if (s)
        return s;
    wait_result w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)timeout_ms * 1000000;
    st_replica_wait(n->r, last, level, deadline, on_done, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (seq)
        *seq = last;
    return w.s;
}

/* A cluster whose leader every node follows: a first write at ACK_ALL went through. */
static cluster_t *cluster_settled(uint32_t *leader)
{
    cluster_t *c = cluster_new(64u << 20);
    *leader = wait_leader(c, 3000, 0);
    assert_int_not_equal(*leader, 0);
    assert_int_equal(put(c, *leader, "settled", "1", ST_ACK_ALL, 2000, NULL), ST_OK);
    return c;
}

/*
 * Put through whichever node leads, retrying when leadership moves (an overloaded machine can
 * starve heartbeats past the short election timeout used here): for steps that need the write
 * in, not a particular leader.
 */
static st_status put_retry(cluster_t *c, const char *key, const char *value, st_ack_level level)
{
    st_status s = ST_TIMEOUT;
    for (int attempt = 0; attempt < 50; attempt++) {
        uint32_t leader = wait_leader(c, 3000, 0);
        if (!leader)
            continue;
        s = put(c, leader, key, value, level, 2000, NULL);
        if (s != ST_NOT_LEADER && s != ST_TIMEOUT)
            return s;
    }
    return s;
}

/* Every key and value of a node's database, as one string, at its applied sequence. */
static char *dump(node *n)
{
    st_iter *it;
    assert_int_equal(st_db_iter(n->db, NULL, st_slice_make(NULL, 0), st_slice_make(NULL, 0), &it),
                     ST_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
    for (st_iter_first(it); st_iter_valid(it); st_iter_next(it)) {
        st_slice k = st_iter_key(it), v = st_iter_value(it);
        while (len + k.len + v.len + 3 >= cap)
            out = realloc(out, cap *= 2);
        len += (size_t)sprintf(out + len, "%.*s=%.*s\n", (int)k.len, (const char *)k.data,
                               (int)v.len, (const char *)v.data);
    }
    assert_int_equal(st_iter_status(it), ST_OK);
    st_iter_destroy(it);
    return out;
}

/* Wait until every live node has applied the leader's commit, then compare contents. */
static void assert_converged(cluster_t *c, int timeout_ms)
{
    char *ref = NULL;
    for (int t = 0;; t += 20) {
        uint64_t target = 0;
        bool same = true, have_target = false;
        for (uint32_t i = 1; i <= N; i++) {
            node *n = c->nodes[i];
            if (!n || !n->r)
                continue;
            uint64_t last, applied;
            st_db_log_state(n->db, &last, NULL, &applied);
            if (!have_target) {
                target = last;
                have_target = true;
            }
            same = same && last == target && applied == last;
        }
        if (same)
            break;
        if (t > timeout_ms) {
            for (uint32_t i = 1; i <= N; i++) {
                node *n = c->nodes[i];
                if (!n || !n->r)
                    continue;
                st_replica_info info;
                st_replica_info_get(n->r, &info);
                fprintf(stderr,
                        "node %u: %s term %" PRIu64 " last %" PRIu64 " applied %" PRIu64
                        " commit %" PRIu64 "\n",
                        i, st_role_name(info.role), info.term, info.last_seq, info.applied_seq,
                        info.commit_seq);
            }
            fail_msg("nodes did not converge within %d ms", timeout_ms);
        }
        sleep_ms(20);
    }
    for (uint32_t i = 1; i <= N; i++) {
        node *n = c->nodes[i];
        if (!n || !n->r)
            continue;
        char *d = dump(n);
        if (!ref) {
            ref = d;
        } else {
            if (strcmp(d, ref) != 0) {
                size_t at = 0;
                while (d[at] && d[at] == ref[at])
                    at++;
                while (at > 0 && ref[at - 1] != '\n')
                    at--;
                fprintf(stderr,
                        "node %u differs from node 1 at: [%.40s] vs [%.40s] (%zu vs %zu bytes)\n",
                        i, d + at, ref + at, strlen(d), strlen(ref));
            }
            assert_string_equal(d, ref);
            free(d);
        }
    }
    free(ref);
}

static void test_elect_and_replicate(void **state)
{
    (void)state;
    cluster_t *c = cluster_new(64u << 20);
    uint32_t leader = wait_leader(c, 3000, 0);
    assert_int_not_equal(leader, 0);
    char k[32], v[32];
    uint64_t prev = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof(k), "key%04d", i);
        snprintf(v, sizeof(v), "v%d", i);
        uint64_t seq;
        st_status s = put(c, leader, k, v, i % 10 == 0 ? ST_ACK_ALL : ST_ACK_MAJORITY, 2000, &seq);
        if (s == ST_NOT_LEADER || s == ST_TIMEOUT) {
            /* Leadership moved (a starved heartbeat): go on with the new leader. */
            assert_int_equal(put_retry(c, k, v, ST_ACK_MAJORITY), ST_OK);
            leader = wait_leader(c, 3000, 0);
            continue;
        }
        assert_int_equal(s, ST_OK);
        assert_true(seq > prev);
        prev = seq;
        /* ACK_MAJORITY means applied on the leader: read your write there at once. */
        uint8_t *val;
        size_t vl;
        assert_int_equal(st_db_get(c->nodes[leader]->db, NULL, st_slice_str(k), &val, &vl, NULL),
                         ST_OK);
        st_free(val);
    }
    /* A follower refuses to take writes. */
    uint32_t follower = leader % N + 1;
    assert_int_equal(put(c, follower, "x", "y", ST_ACK_MAJORITY, 100, NULL), ST_NOT_LEADER);
    assert_non_null(strstr(st_errmsg(), "leader is node"));
    assert_converged(c, 3000);
    cluster_free(c);
}

static void test_leader_crash(void **state)
{
    (void)state;
    cluster_t *c = cluster_new(64u << 20);
    uint32_t leader = wait_leader(c, 3000, 0);
    assert_int_not_equal(leader, 0);
    char k[32];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "a%04d", i);
        assert_int_equal(put_retry(c, k, "1", ST_ACK_MAJORITY), ST_OK);
    }
    leader = wait_leader(c, 3000, 0);
    node_stop(c, leader);
    uint32_t next = wait_leader(c, 3000, leader);
    assert_int_not_equal(next, 0);
    assert_int_not_equal(next, leader);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "b%04d", i);
        assert_int_equal(put_retry(c, k, "2", ST_ACK_MAJORITY), ST_OK);
    }
    next = wait_leader(c, 3000, 0);
    /* Everything acknowledged before the crash is on the new leader. */
    for (int i = 0; i < 200; i++) {
        uint8_t *v;
        size_t vl;
        snprintf(k, sizeof(k), "a%04d", i);
        assert_int_equal(st_db_get(c->nodes[next]->db, NULL, st_slice_str(k), &v, &vl, NULL),
                         ST_OK);
        st_free(v);
    }
    node_start(c, leader);
    assert_converged(c, 5000);
    cluster_free(c);
}

static void test_partitioned_leader(void **state)
{
    (void)state;
    cluster_t *c = cluster_new(64u << 20);
    uint32_t old = wait_leader(c, 3000, 0);
    assert_int_not_equal(old, 0);
    assert_int_equal(put(c, old, "before", "1", ST_ACK_MAJORITY, 2000, NULL), ST_OK);
    /* Cut the leader off from both others. */
    isolate(c, old);
    /* It cannot commit: the write times out and is never reported as a success. */
    st_status s = put(c, old, "lost", "x", ST_ACK_MAJORITY, 300, NULL);
    assert_true(s == ST_TIMEOUT || s == ST_NOT_LEADER);
    uint32_t next = wait_leader(c, 3000, old);
    assert_int_not_equal(next, 0);
    assert_int_not_equal(next, old);
    assert_int_equal(put(c, next, "after", "2", ST_ACK_MAJORITY, 2000, NULL), ST_OK);
    /* The old leader has stepped down on its own (quorum lost). */
    st_replica_info info;
    for (int t = 0; t < 100; t++) {
        st_replica_info_get(c->nodes[old]->r, &info);
        if (info.role != ST_ROLE_LEADER)
            break;
        sleep_ms(10);
    }
    assert_int_not_equal(info.role, ST_ROLE_LEADER);
    /* Heal: the old leader drops its unacknowledged "lost" and converges. */
    heal(c);
    assert_converged(c, 5000);
    uint8_t *v;
    size_t vl;
    assert_int_equal(st_db_get(c->nodes[old]->db, NULL, st_slice_str("lost"), &v, &vl, NULL),
                     ST_NOT_FOUND);
    assert_int_equal(st_db_get(c->nodes[old]->db, NULL, st_slice_str("after"), &v, &vl, NULL),
                     ST_OK);
    st_free(v);
    cluster_free(c);
}

static void test_snapshot_catch_up(void **state)
{
    (void)state;
    /* A tiny retention budget: a follower that misses a lot needs a snapshot. */
    cluster_t *c = cluster_new(64 * 1024);
    uint32_t leader = wait_leader(c, 3000, 0);
    assert_int_not_equal(leader, 0);
    uint32_t lagger = leader % N + 1;
    node_stop(c, lagger);
    char k[32], v[200];
    memset(v, 'v', sizeof(v) - 1);
    v[sizeof(v) - 1] = 0;
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof(k), "s%05d", i);
        assert_int_equal(put_retry(c, k, v, ST_ACK_MAJORITY), ST_OK);
    }
    leader = wait_leader(c, 3000, 0);
    /* The leader tells how far behind the stopped member is, in records and in bytes (each
       record carries a 199-byte value). */
    st_replica_info li;
    st_replica_info_get(c->nodes[leader]->r, &li);
    bool seen = false;
    for (uint32_t i = 0; i < li.npeers; i++) {
        if (li.peers[i].id != lagger)
            continue;
        seen = true;
        assert_true(li.peers[i].lag_records >= 1);
        assert_true(li.peers[i].lag_bytes >= 199);
        assert_true(li.peers[i].lag_bytes <= li.peers[i].lag_records * 300);
    }
    assert_true(seen);
    /* Let the leader's retention check see the WAL over budget, then flush and trim it. */
    sleep_ms(300);
    for (uint32_t i = 1; i <= N; i++)
        if (i != lagger)
            assert_int_equal(st_db_compact_range(c->nodes[i]->db, st_slice_make(NULL, 0),
                                                 st_slice_make(NULL, 0)),
                             ST_OK);
    node_start(c, lagger);
    assert_converged(c, 10000);
    /* The counter moves just after the engine has the snapshot in: give it a moment. */
    st_replica_info info;
    for (int t = 0; t < 200; t++) {
        st_replica_info_get(c->nodes[lagger]->r, &info);
        if (info.snapshots_installed >= 1)
            break;
        sleep_ms(10);
    }
    assert_true(info.snapshots_installed >= 1);
    /* And it keeps up afterwards. */
    assert_int_equal(put_retry(c, "post", "snap", ST_ACK_ALL), ST_OK);
    assert_converged(c, 3000);
    /* Caught up: no lag left, by either measure. */
    leader = wait_leader(c, 3000, 0);
    st_replica_info_get(c->nodes[leader]->r, &li);
    for (uint32_t i = 0; i < li.npeers; i++) {
        assert_int_equal(li.peers[i].lag_records, 0);
        assert_int_equal(li.peers[i].lag_bytes, 0);
    }
    cluster_free(c);
}

static void test_transfer(void **state)
{
    (void)state;
    cluster_t *c = cluster_new(64u << 20);
    uint32_t leader = wait_leader(c, 3000, 0);
    assert_int_not_equal(leader, 0);
    for (int i = 0; i < 100; i++) {
        char k[32];
        snprintf(k, sizeof(k), "t%04d", i);
        assert_int_equal(put_retry(c, k, "1", ST_ACK_MAJORITY), ST_OK);
    }
    leader = wait_leader(c, 3000, 0);
    uint32_t target = leader % N + 1;
    uint32_t pause;
    assert_int_equal(st_replica_transfer(c->nodes[leader]->r, target, 3000, &pause), ST_OK);
    assert_int_equal(wait_leader(c, 3000, 0), target);
    assert_int_equal(put(c, target, "after-transfer", "1", ST_ACK_MAJORITY, 2000, NULL), ST_OK);
    assert_converged(c, 3000);
    cluster_free(c);
}

/* A hand-over whose TimeoutNow went out but did not make the target leader in time ends with
   the old leader stepped down (the target might still campaign, past everyone's stickiness,
   so the old leader's read lease could no longer be trusted); an election follows. */
static void test_transfer_timeout_steps_down(void **state)
{
    (void)state;
    uint32_t leader;
    cluster_t *c = cluster_settled(&leader);
    uint32_t target = leader % N + 1;
    /* The TimeoutNow is handed to the link, which drops it. */
    set_cut(c, leader, target, true);
    uint32_t pause;
    assert_int_equal(st_replica_transfer(c->nodes[leader]->r, target, 300, &pause), ST_TIMEOUT);
    assert_non_null(strstr(st_errmsg(), "stepped down"));
    st_replica_info info;
    st_replica_info_get(c->nodes[leader]->r, &info);
    assert_int_not_equal(info.role, ST_ROLE_LEADER);
    uint64_t ri;
    assert_int_equal(st_replica_read_index(c->nodes[leader]->r, &ri), ST_NOT_LEADER);
    heal(c);
    assert_int_equal(put_retry(c, "k2", "2", ST_ACK_MAJORITY), ST_OK);
    assert_converged(c, 5000);
    cluster_free(c);
}

static void test_stale_term_refused(void **state)
{
    (void)state;
    uint32_t leader;
    cluster_t *c = cluster_settled(&leader);
    uint32_t follower = leader % N + 1;
    st_replica_info info;
    st_replica_info_get(c->nodes[follower]->r, &info);
    /* A message from a leader of an older term is refused and changes nothing. */
    Strata__V1__LeaderMessage m = STRATA__V1__LEADER_MESSAGE__INIT;
    Strata__V1__Append a = STRATA__V1__APPEND__INIT;
    m.term = info.term - 1;
    m.leader_id = leader;
    m.leader_addr = "x:1";
    m.body_case = STRATA__V1__LEADER_MESSAGE__BODY_APPEND;
    m.append = &a;
    a.prev_seq = info.last_seq;
    Strata__V1__FollowerMessage ans;
    assert_int_equal(st_replica_on_leader_message(c->nodes[follower]->r, &m, &ans), ST_OK);
    assert_true(ans.rejected);
    assert_true(ans.term == info.term);
    /* A record whose checksum does not match is refused whole. */
    Strata__V1__LogRecord rec = STRATA__V1__LOG_RECORD__INIT, *recs[1] = {&rec};
    uint8_t junk[40] = {0};
    rec.seq = info.last_seq + 1;
    rec.term = info.term;
    rec.data.data = junk;
    rec.data.len = sizeof(junk);
    rec.crc = 12345;
    m.term = info.term;
    a.prev_term = info.last_term;
    a.n_records = 1;
    a.records = recs;
    assert_int_equal(st_replica_on_leader_message(c->nodes[follower]->r, &m, &ans), ST_CORRUPTION);
    uint64_t last;
    st_db_log_state(c->nodes[follower]->db, &last, NULL, NULL);
    assert_true(last == info.last_seq);
    cluster_free(c);
}

/*
 * Read leases: the leader gives a read index (its commit sequence, covering every acknowledged
 * write) while a majority answers it; a follower refuses; a leader cut off from the others
 * stops giving one within its lease (0.9 × election_ms), before another leader can be elected.
 */
static void test_read_lease(void **state)
{
    (void)state;
    cluster_t *c = cluster_new(64u << 20);
    uint32_t old = wait_leader(c, 3000, 0);
    assert_int_not_equal(old, 0);
    uint64_t seq = 0, ri = 0;
    assert_int_equal(put(c, old, "k", "1", ST_ACK_MAJORITY, 2000, &seq), ST_OK);
    st_status s = ST_BUSY;
    for (int t = 0; t < 200 && s != ST_OK; t++) {
        s = st_replica_read_index(c->nodes[old]->r, &ri);
        if (s != ST_OK)
            sleep_ms(5);
    }
    assert_int_equal(s, ST_OK);
    assert_true(ri >= seq);
    /* A follower refuses (whether it knows the leader yet or not: on a loaded machine one may
       have started an election meanwhile). */
    for (uint32_t id = 1; id <= N; id++) {
        st_replica_info info;
        st_replica_info_get(c->nodes[id]->r, &info);
        if (id == old || info.role != ST_ROLE_FOLLOWER)
            continue;
        assert_int_equal(st_replica_read_index(c->nodes[id]->r, &ri), ST_NOT_LEADER);
        assert_non_null(strstr(st_errmsg(), "is not the leader"));
    }

    /* Cut the leader off: past its lease it gives no read index, leader or not. */
    isolate(c, old);
    sleep_ms(100 * 9 / 10 + 30);
    s = st_replica_read_index(c->nodes[old]->r, &ri);
    assert_true(s == ST_BUSY || s == ST_NOT_LEADER);
    uint32_t next = wait_leader(c, 3000, old);
    assert_int_not_equal(next, 0);
    assert_int_equal(put(c, next, "k", "2", ST_ACK_MAJORITY, 2000, &seq), ST_OK);
    s = st_replica_read_index(c->nodes[old]->r, &ri);
    assert_true(s == ST_BUSY || s == ST_NOT_LEADER);
    /* The new leader gives one that covers the new write. */
    s = ST_BUSY;
    for (int t = 0; t < 200 && s != ST_OK; t++) {
        s = st_replica_read_index(c->nodes[next]->r, &ri);
        if (s != ST_OK)
            sleep_ms(5);
    }
    assert_int_equal(s, ST_OK);
    assert_true(ri >= seq);
    heal(c);
    cluster_free(c);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A commit that moved while no records follow still reaches the followers at once, in an
 * Append of its own (after the short wait for records to carry it), not at the next heartbeat:
 * with heartbeats 800 ms apart, each lone write must be applied on both followers well before
 * one is due.
 */
static void test_commit_without_records(void **state)
{
    (void)state;
    cluster_t *c = cluster_new_timed(64u << 20, 800, 4000);
    uint32_t leader = wait_leader(c, 20000, 0);
    assert_int_not_equal(leader, 0);
    int measured = 0;
    for (int i = 0; i < 8 && measured < 5; i++) {
        char k[16];
        snprintf(k, sizeof(k), "lone%d", i);
        uint64_t seq;
        st_status s = put(c, leader, k, "v", ST_ACK_MAJORITY, 5000, &seq);
        if (s == ST_NOT_LEADER || s == ST_TIMEOUT) {
            leader = wait_leader(c, 20000, 0);
            assert_int_not_equal(leader, 0);
            continue;
        }
        assert_int_equal(s, ST_OK);
        int64_t start = mono_ms();
        int64_t took = -1;
        while (mono_ms() - start < 3000) {
            bool all = true;
            for (uint32_t id = 1; id <= N; id++) {
                st_replica_info info;
                st_replica_info_get(c->nodes[id]->r, &info);
                all = all && info.applied_seq >= seq;
            }
            if (all) {
                took = mono_ms() - start;
                break;
            }
            usleep(200);
        }
        assert_true(took >= 0);
        if (took >= 300)
            fail_msg("write %d (sequence %" PRIu64 ") took %" PRId64
                     " ms to be applied everywhere: the commit waited for a heartbeat",
                     i, seq, took);
        measured++;
        sleep_ms(20); /* past the wait for records: the commit goes alone */
    }
    assert_true(measured >= 5);
    cluster_free(c);
}

/*
 * A follower that has not answered the records sent to it gets no more until it does, and then
 * all that came meanwhile in one Append: it takes one message at a time, with a sync each, so
 * records queued there as separate messages would each cost a sync (group commit, on the
 * follower). Writes commit through the other follower meanwhile.
 */
static void test_one_append_in_flight(void **state)
{
    (void)state;
    uint32_t leader;
    cluster_t *c = cluster_settled(&leader);
    uint32_t slow = leader % N + 1;
    pthread_mutex_lock(&c->mu);
    c->hold[slow] = true;
    c->rec_msgs[slow] = c->recs[slow] = 0;
    pthread_mutex_unlock(&c->mu);
    uint64_t last = 0;
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof(k), "w%02d", i);
        st_status s = put(c, leader, k, "v", ST_ACK_MAJORITY, 2000, &last);
        if (s != ST_OK)
            fail_msg("put %d: %s", i, st_status_name(s));
    }
    sleep_ms(50); /* heartbeats go on meanwhile; their answers are held too */
    pthread_mutex_lock(&c->mu);
    size_t while_held = c->rec_msgs[slow];
    c->hold[slow] = false;
    pthread_mutex_unlock(&c->mu);
    if (while_held > 1)
        fail_msg("%zu Appends with records went to a follower that had not answered the first",
                 while_held);
    int64_t start = mono_ms();
    st_replica_info info;
    do {
        sleep_ms(5);
        st_replica_info_get(c->nodes[slow]->r, &info);
    } while (info.applied_seq < last && mono_ms() - start < 5000);
    assert_true(info.applied_seq >= last);
    pthread_mutex_lock(&c->mu);
    size_t msgs = c->rec_msgs[slow], recs = c->recs[slow];
    pthread_mutex_unlock(&c->mu);
    /* The 20 records went in two messages: what the log held when the first went (the first
       write's record, or a few more on a slow machine), and the rest once it was answered. */
    assert_true(recs >= 20);
    if (msgs > 2)
        fail_msg("20 records went to the held follower in %zu messages, not 2", msgs);
    cluster_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elect_and_replicate),
        cmocka_unit_test(test_leader_crash),
        cmocka_unit_test(test_partitioned_leader),
        cmocka_unit_test(test_snapshot_catch_up),
        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_transfer_timeout_steps_down),
        cmocka_unit_test(test_stale_term_refused),
        cmocka_unit_test(test_commit_without_records),
        cmocka_unit_test(test_read_lease),
        cmocka_unit_test(test_one_append_in_flight),
    };
    return cmocka_run_group_tests_name("replica", tests, NULL, NULL);
}
