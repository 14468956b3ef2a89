/*
 * server.h - the gRPC C core machinery of strata-node: listening, completion queues, worker
 * threads, and one small state machine per call. Services (kv_service, admin_service, health,
 * reflection) plug in methods; they never touch grpc_call or completion queues themselves.
 *
 * Threads: `workers` threads, each polling its own completion queue. For every method, every
 * queue keeps several grpc_server_request_registered_call posted (re-posted as each call
 * arrives), and one grpc_server_request_call catches unknown methods, answered UNIMPLEMENTED.
 * All completions of one call arrive on one queue, hence on one worker thread; any thread may
 * start an operation on a call (st_call_reply, st_call_send, ...).
 *
 * Every call arriving is checked, in this order, before its handler sees it: a call to a counted
 * method while --max-concurrent-calls are in progress gets RESOURCE_EXHAUSTED; a call whose
 * deadline has already passed gets DEADLINE_EXCEEDED; a counted call arriving once shutdown has
 * begun gets UNAVAILABLE. The handler never runs for those.
 *
 * Call lifetime: the handler receives a call it must finish exactly once, by st_call_reply,
 * st_call_fail or a last st_call_send; that is true even of a call the client has cancelled
 * (the operation then fails quietly). A call is freed once it is finished and every operation
 * on it has completed; st_call_ref/st_call_unref let a handler keep it longer. Callbacks run on
 * the call's worker thread, never with a lock of this module held.
 */
#ifndef STRATA_NODE_SERVER_H
#define STRATA_NODE_SERVER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/status.h"
#include "node/status_codes.h"

typedef struct st_server st_server;
typedef struct st_call st_call;

typedef enum st_method_kind {
    ST_METHOD_UNARY,         /* one request, one response */
    ST_METHOD_SERVER_STREAM, /* one request, a stream of responses */
    ST_METHOD_BIDI_STREAM,   /* streams both ways; the handler reads with st_call_recv */
} st_method_kind;

/*
 * Called on a worker thread when a call to the method arrives. For unary and server-streaming
 * methods `req`/`len` are the request bytes (borrowed for the duration of the callback; `req`
 * is NULL and has_req false when the client sent no message); bidi handlers get NULL/0/false.
 */
typedef void (*st_method_fn)(void *svc, st_call *call, const uint8_t *req, size_t len,
                             bool has_req);

typedef struct st_method {
    const char *path; /* "/strata.v1.KV/Put"; static storage */
    st_method_kind kind;
    bool counted; /* counts toward --max-concurrent-calls */
    st_method_fn fn;
    void *svc; /* passed to fn; borrowed, must outlive the server */
    /* Messages up to st_server_options.max_peer_message_bytes are accepted (replication
       between nodes); other methods are held to max_message_bytes. */
    bool peer;
} st_method;

typedef struct st_server_options {
    const char *listen;            /* "HOST:PORT"; borrowed for st_server_create */
    uint32_t workers;              /* completion queues and threads, >= 1 */
    size_t max_message_bytes;      /* largest request message; larger get RESOURCE_EXHAUSTED */
    uint32_t max_concurrent_calls; /* counted calls in progress at once */
    uint32_t requests_per_method;  /* calls kept requested per method per queue; 0 = 16 */
    /* 0, or larger than max_message_bytes: gRPC then accepts messages up to this size, methods
       marked `peer` receive them, and a message of another method over max_message_bytes is
       answered RESOURCE_EXHAUSTED by this module (the handler never sees it). */
    size_t max_peer_message_bytes;
} st_server_options;

/*
 * Create the server (not yet listening). gRPC must be initialised (grpc_init) and stay so
 * until st_server_destroy returns. *out is owned by the caller.
 */
st_status st_server_create(const st_server_options *o, st_server **out);

/* Register a method; only before st_server_start. `m` is copied; its strings are borrowed. */
st_status st_server_add_method(st_server *srv, const st_method *m);

/*
 * Bind the listen address, start serving and start the workers. *port receives the port bound
 * (the chosen one when the address asked for port 0). ST_BUSY with a message naming the
 * address when it cannot be bound (in use, or not an address of this machine).
 */
st_status st_server_start(st_server *srv, int *port);

/* Begin shutting down: stop accepting calls and connections; calls in progress go on. */
void st_server_begin_shutdown(st_server *srv);

/* True once st_server_begin_shutdown has been called. Any thread. */
bool st_server_shutting_down(const st_server *srv);

/* Wait up to timeout_ms for every call to end after st_server_begin_shutdown. True if they
   did. */
bool st_server_wait_calls(st_server *srv, uint32_t timeout_ms);

/* Cancel every call still in progress (after st_server_begin_shutdown). */
void st_server_cancel_all(st_server *srv);

/*
 * Finish shutting down (begin, cancel what is left), destroy the gRPC server, drain and
 * destroy the queues, join the workers, free. Every call has been freed when it returns, so
 * whatever handlers held in call data (iterators, ...) has been released. Accepts NULL.
 * Threads outside the server must have stopped starting operations on calls by then.
 */
void st_server_destroy(st_server *srv);

/* True if a method of `service` ("strata.v1.KV") is registered. Any thread after start. */
bool st_server_serves(const st_server *srv, const char *service);

/* Counted calls in progress now. Any thread. */
uint32_t st_server_active_calls(const st_server *srv);

/* ---- calls ------------------------------------------------------------------------------- */

void st_call_ref(st_call *call);
void st_call_unref(st_call *call);

/* The method called. */
const st_method *st_call_method(const st_call *call);

/* The call's deadline on CLOCK_MONOTONIC in nanoseconds; INT64_MAX when it has none. */
int64_t st_call_deadline_ns(const st_call *call);

/*
 * The deadline a handler that waits (for replication, say) should work to: a little before the
 * call's own, so that the node answers with a message saying what it waited for, rather than
 * the client's timer with gRPC's bare "Deadline Exceeded". The margin is a tenth of the time
 * left, between 6 ms (the replica looks at its waiters every 5) and 25 ms. INT64_MAX if none.
 */
int64_t st_call_answer_deadline_ns(const st_call *call);

/* True if the call has a deadline and it has passed. */
bool st_call_expired(const st_call *call);

/*
 * Handler data: owned by the call from now on, freed with free_fn (may be NULL) when the call
 * is freed. Replaces (and frees) earlier data.
 */
void st_call_set_data(st_call *call, void *data, void (*free_fn)(void *));
void *st_call_data(const st_call *call);

/*
 * Be told when the call is cancelled (by the client, by its deadline passing, or by shutdown):
 * `on_cancel` runs once, on the worker thread, if that happens before the call is finished.
 * Server-streaming and bidi calls are watched from their arrival (set the hook at any time);
 * a unary handler that will hold the call for a while calls this to start watching.
 * `on_cancel` may be NULL (just watch).
 */
void st_call_watch_cancel(st_call *call, void (*on_cancel)(st_call *call));

/* True once the call is known to be cancelled. */
bool st_call_cancelled(const st_call *call);

/*
 * Add a trailing metadata entry (key lowercase, e.g. "strata-leader"; key and value copied) to
 * the status the call will end with. Before the call is finished; at most 4 per call (more are
 * dropped).
 */
void st_call_add_trailer(st_call *call, const char *key, const char *value);

/* Unary: answer with `msg` (packed now; borrowed for the call) and status OK. Finishes. */
void st_call_reply(st_call *call, const ProtobufCMessage *msg);

/*
 * Finish with a non-OK status and a message (printf-style). Works for every kind; if a
 * streaming send is in flight, the status follows when it completes.
 */
void st_call_fail(st_call *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Streaming: finish with status OK after the messages already sent. */
void st_call_finish(st_call *call);

/*
 * Streaming: send one message (bytes or a protobuf-c message, copied now). With `last`, status
 * OK follows in the same operation and the call is finished. `done` (may be NULL) runs on the
 * worker thread when the send completes; ok is false when the client is gone. One send at a
 * time: call again only from `done` or after it ran.
 */
void st_call_send_bytes(st_call *call, const uint8_t *data, size_t len, bool last,
                        void (*done)(st_call *call, bool ok));
void st_call_send(st_call *call, const ProtobufCMessage *msg, bool last,
                  void (*done)(st_call *call, bool ok));

/*
 * Bidi: receive the next message. `done` runs on the worker thread with the bytes (borrowed
 * for the callback) and got=true, or got=false when the client has finished sending or is
 * gone. One receive at a time.
 */
void st_call_recv(st_call *call,
                  void (*done)(st_call *call, const uint8_t *data, size_t len, bool got));

#endif
