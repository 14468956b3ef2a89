/*
 * rpc_client.h - a small blocking gRPC C core client: raw request bytes in, raw response
 * bytes and status out. Used by the strata CLI and by the node tests (which need to send
 * arbitrary bytes, or no message at all).
 *
 * Targets: "HOST:PORT" with a numeric IPv4 host becomes "ipv4:HOST:PORT", and GRPC_DNS_RESOLVER
 * is set to "native" (unless already set) before grpc_init: c-ares leaks a few bytes under ASan.
 * Anything with a scheme ("dns:", "unix:", "ipv6:") is passed through.
 *
 * One client may be used by one thread at a time. grpc_init/grpc_shutdown are the caller's
 * (st_rpc_init is a convenience that also sets the resolver).
 */
#ifndef STRATA_NODE_RPC_CLIENT_H
#define STRATA_NODE_RPC_CLIENT_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_rpc_client st_rpc_client;
typedef struct st_rpc_stream st_rpc_stream;

/* setenv GRPC_DNS_RESOLVER=native unless set, then grpc_init(). */
void st_rpc_init(void);

/* The gRPC target for an address ("127.0.0.1:7400" → "ipv4:127.0.0.1:7400"); malloc'd. */
char *st_rpc_target(const char *addr);

/* A channel to addr; receives messages up to max_recv_bytes (0: no limit). NULL on failure. */
st_rpc_client *st_rpc_client_create(const char *addr, size_t max_recv_bytes);
void st_rpc_client_destroy(st_rpc_client *c); /* accepts NULL */

typedef struct st_rpc_result {
    grpc_status_code code;
    char *details; /* malloc'd, NUL-terminated; free with st_rpc_result_free */
    uint8_t *resp; /* malloc'd response bytes, NULL when there was none */
    size_t resp_len;
    bool has_resp;
    /* Trailing metadata (st_rpc_unary only): ntrailers keys and values, malloc'd and
       NUL-terminated; read them with st_rpc_result_trailer. */
    size_t ntrailers;
    char **trailer_keys, **trailer_values;
} st_rpc_result;

void st_rpc_result_free(st_rpc_result *r);

/* The value of trailing metadata `key` (lowercase), or NULL; borrowed from r. */
const char *st_rpc_result_trailer(const st_rpc_result *r, const char *key);

/*
 * Wait up to timeout_ms for the channel to connect. True once it is ready; false if the
 * address cannot be reached (the connection failed or is still being made at the timeout).
 */
bool st_rpc_client_ready(st_rpc_client *c, int64_t timeout_ms);

/*
 * Call a unary method ("/strata.v1.KV/Get") with `req` (send_req false: send no message at
 * all) and wait up to timeout_ms (<0: no deadline; 0: a deadline one second in the past). Fills
 * *res.
 */
void st_rpc_unary(st_rpc_client *c, const char *method, const uint8_t *req, size_t len,
                  bool send_req, int64_t timeout_ms, st_rpc_result *res);

/* Start a server-streaming call; NULL on failure to start. */
st_rpc_stream *st_rpc_stream_open(st_rpc_client *c, const char *method, const uint8_t *req,
                                  size_t len, int64_t timeout_ms);
/* Next message: true with *msg (malloc'd, caller frees) or false at the end of the stream. */
bool st_rpc_stream_next(st_rpc_stream *s, uint8_t **msg, size_t *len);
/* Cancel the call (the server sees a cancellation). */
void st_rpc_stream_cancel(st_rpc_stream *s);
/* Wait for the status (*res gets code and details; no response bytes) and free. */
void st_rpc_stream_close(st_rpc_stream *s, st_rpc_result *res);

#endif
