/*
 * writer.h - group commit for the node: many write calls, one st_db_write.
 *
 * Worker threads must not wait for fsync one call at a time. They submit write requests to
 * the writer's queue and return to their completion queue; one writer thread takes everything
 * queued (up to a byte and an operation cap), encodes it as ONE st_batch, applies it with one
 * st_db_write (one WAL append, one fsync under --sync always) and completes each request with
 * its own last sequence number: the group's operations get consecutive sequences in queue
 * order, so request i's last sequence is first_seq + (operations up to and including i) - 1.
 *
 * A request whose deadline has passed when its group is formed is completed with ST_TIMEOUT
 * without touching the engine. If the engine rejects a whole group with ST_INVALID_ARGUMENT
 * (a request the node's own checks let through), each request of the group is retried alone
 * so that one bad request cannot fail its neighbours.
 *
 * Threads: st_writer_submit from any thread; completions run on the writer thread.
 */
#ifndef STRATA_NODE_WRITER_H
#define STRATA_NODE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/db.h"
#include "engine/status.h"

typedef struct st_writer st_writer;
typedef struct st_write_req st_write_req;

struct st_write_req {
    st_write_req *next;  /* the writer's, while queued */
    uint32_t ops;        /* operations the request adds (sequence numbers it takes) */
    size_t bytes;        /* key + value bytes, for the group cap */
    int64_t deadline_ns; /* CLOCK_MONOTONIC; INT64_MAX for none */
    /* Append the request's operations to b. Runs on the writer thread. */
    st_status (*encode)(st_write_req *r, st_batch *b);
    /*
     * The outcome: ST_OK and the request's last sequence (for a request without operations,
     * the sequence current at its place in the group), or the error with a message (borrowed
     * for the call). Runs on the writer thread, exactly once per request; the request is the
     * callee's again from then on.
     */
    void (*complete)(st_write_req *r, st_status s, const char *msg, uint64_t seq);
};

typedef struct st_writer_options {
    size_t max_group_bytes; /* stop adding requests past this; default 8 MiB */
    uint32_t max_group_ops; /* and past this many operations; default 16384 */
    /* After every successful group (may be NULL): the engine's sequence is now `seq`. */
    void (*on_applied)(void *ctx, uint64_t seq);
    void *ctx;
    /*
     * Write each group with this instead of st_db_write (may be NULL): a cluster node appends
     * to the replicated log here. Same contract as st_db_write (the batch may be empty);
     * *last_seq receives the group's last sequence. Runs on the writer thread.
     */
    st_status (*append)(void *append_ctx, const st_batch *b, uint64_t *last_seq);
    void *append_ctx;
} st_writer_options;

/* Start the writer thread over `db` (borrowed; outlives the writer). */
st_status st_writer_create(st_db *db, const st_writer_options *o, st_writer **out);

/* Queue `r` (borrowed until its complete() runs). After st_writer_destroy has begun, r is
   completed at once with ST_SHUTDOWN. */
void st_writer_submit(st_writer *w, st_write_req *r);

/* Requests waiting now (not counting the group being written). */
size_t st_writer_queued(st_writer *w);

/* Complete everything queued (writing it), then stop and join the thread. Later submissions
   are completed at once with ST_SHUTDOWN. Idempotent; one thread may call it at a time. */
void st_writer_stop(st_writer *w);

/* Stop (as above) and free. Accepts NULL. */
void st_writer_destroy(st_writer *w);

#endif
