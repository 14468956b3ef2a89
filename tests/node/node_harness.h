/*
 * node_harness.h - start a real strata-node child process for a test, and talk to it.
 *
 * The node listens on 127.0.0.1 port 0 and reports its port through --port-file; its stderr
 * goes to <dir>/node.log. Binaries come from the build (ST_NODE_BIN, ST_CLI_BIN, compiled in).
 */
#ifndef STRATA_TESTS_NODE_HARNESS_H
#define STRATA_TESTS_NODE_HARNESS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "node/rpc_client.h"

typedef struct st_node_proc {
    pid_t pid;
    int port;
    char addr[64];   /* "127.0.0.1:PORT" */
    char *dir;       /* test directory (owned), holds data/, node.log, port */
    char *data_dir;  /* owned */
    char *log_path;  /* owned */
    char *port_file; /* owned */
    int exit_status; /* after st_node_stop / st_node_wait: exit code, or 128+signal */
} st_node_proc;

/* A fresh test directory for a node (data_dir inside it). */
void st_node_init(st_node_proc *n, const char *tag);

/*
 * Start strata-node on data_dir with extra flags (NULL-terminated list, may be NULL). Waits
 * up to 15 s for the port file. Returns false if the node exited first (exit_status set).
 */
bool st_node_start(st_node_proc *n, const char *const *extra);

/* SIGTERM, then wait up to 20 s (SIGKILL after). Returns the exit status. */
int st_node_stop(st_node_proc *n);

/* Wait for the node to exit by itself, up to timeout_ms. True if it did. */
bool st_node_wait(st_node_proc *n, int timeout_ms);

/* The node's log so far (malloc'd, NUL-terminated). */
char *st_node_log(const st_node_proc *n);

/* Remove the test directory and free. */
void st_node_cleanup(st_node_proc *n);

const char *st_node_bin(void);
const char *st_cli_bin(void);

/* Pack `req` and call a unary method. */
void st_call_msg(st_rpc_client *c, const char *method, const ProtobufCMessage *req,
                 int64_t timeout_ms, st_rpc_result *res);

/* As st_run_cli, for any program `bin`. */
int st_run_bin(const char *bin, const char *const *args, const uint8_t *in, size_t in_len,
               char **out, size_t *out_len, char **err);

/*
 * Run the strata CLI with args (NULL-terminated), stdin from `in` (may be NULL), capture
 * stdout into *out (malloc'd, *out_len) and stderr into *err. Returns the exit status.
 */
int st_run_cli(const char *const *args, const uint8_t *in, size_t in_len, char **out,
               size_t *out_len, char **err);

#endif
