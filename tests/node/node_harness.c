/* node_harness.c - strata-node child processes for tests. */
#include "tests/node/node_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/testutil.h"

const char *st_node_bin(void)
{
    return ST_NODE_BIN;
}

const char *st_cli_bin(void)
{
    return ST_CLI_BIN;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void st_node_init(st_node_proc *n, const char *tag)
{
    memset(n, 0, sizeof(*n));
    n->dir = st_test_mkdtemp(tag);
    n->data_dir = st_test_path(n->dir, "data");
    n->log_path = st_test_path(n->dir, "node.log");
    n->port_file = st_test_path(n->dir, "port");
    n->pid = -1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static bool reap(st_node_proc *n, bool block)
{
    int status;
    pid_t r = waitpid(n->pid, &status, block ? 0 : WNOHANG);
    if (r != n->pid)
        return false;
    n->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    n->pid = -1;
    return true;
}

bool st_node_start(st_node_proc *n, const char *const *extra)
{
    unlink(n->port_file);
    const char *argv[64];
    int a = 0;
    argv[a++] = st_node_bin();
    argv[a++] = "--listen";
    argv[a++] = "127.0.0.1:0";
    argv[a++] = "--data-dir";
    argv[a++] = n->data_dir;
    argv[a++] = "--port-file";
    argv[a++] = n->port_file;
    argv[a++] = "--sync";
    argv[a++] = "none";
    if (getenv("ST_NODE_LOG_LEVEL")) { /* e.g. debug, to see every call in node.log */
        argv[a++] = "--log-level";
        argv[a++] = getenv("ST_NODE_LOG_LEVEL");
    }
    for (int i = 0; extra && extra[i] && a < 60; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Never outlive the test process, even if it crashes or a failed assert skips cleanup. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
    for (int i = 0; i < 1500; i++) {
        char *s = read_file(n->port_file, NULL);
        if (s) {
            n->port = atoi(s);
            free(s);
            if (n->port > 0) {
                snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", n->port);
                return true;
            }
        }
        if (reap(n, false))
            return false;
        sleep_ms(10);
    }
    kill(n->pid, SIGKILL);
    reap(n, true);
    return false;
}

bool st_node_wait(st_node_proc *n, int timeout_ms)
{
    if (n->pid < 0)
        return true;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (reap(n, false))
            return true;
        sleep_ms(10);
    }
    return reap(n, false);
}

int st_node_stop(st_node_proc *n)
{
    if (n->pid < 0)
        return n->exit_status;
    kill(n->pid, SIGTERM);
    if (!st_node_wait(n, 20000)) {
        fprintf(stderr, "strata-node did not stop in 20 s; killing it\n");
        kill(n->pid, SIGKILL);
        reap(n, true);
        n->exit_status = -1;
    }
    return n->exit_status;
}

char *st_node_log(const st_node_proc *n)
{
    char *s = read_file(n->log_path, NULL);
    return s ? s : strdup("");
}

void st_node_cleanup(st_node_proc *n)
{
    if (n->pid > 0)
        st_node_stop(n);
    if (getenv("ST_KEEP_NODE_LOGS") == NULL)
        st_test_rmdir(n->dir);
    free(n->dir);
    free(n->data_dir);
    free(n->log_path);
    free(n->port_file);
    memset(n, 0, sizeof(*n));
}

void st_call_msg(st_rpc_client *c, const char *method, const ProtobufCMessage *req,
                 int64_t timeout_ms, st_rpc_result *res)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    protobuf_c_message_pack(req, buf);
    st_rpc_unary(c, method, buf, len, true, timeout_ms, res);
    free(buf);
}

int st_run_cli(const char *const *args, const uint8_t *in, size_t in_len, char **out,
               size_t *out_len, char **err)
{
    return st_run_bin(st_cli_bin(), args, in, in_len, out, out_len, err);
}

int st_run_bin(const char *bin, const char *const *args, const uint8_t *in, size_t in_len,
               char **out, size_t *out_len, char **err)
{
    char *dir = st_test_mkdtemp("cli");
    char *in_path = st_test_path(dir, "in"), *out_path = st_test_path(dir, "out"),
         *err_path = st_test_path(dir, "err");
    FILE *f = fopen(in_path, "wb");
    if (f) {
        if (in && in_len)
            fwrite(in, 1, in_len, f);
        fclose(f);
    }
    const char *argv[32];
    int a = 0;
    argv[a++] = bin;
    for (int i = 0; args[i] && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fi = open(in_path, O_RDONLY), fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644),
            fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    size_t n = 0;
    *out = read_file(out_path, &n);
    if (!*out)
        *out = strdup("");
    if (out_len)
        *out_len = n;
    *err = read_file(err_path, NULL);
    if (!*err)
        *err = strdup("");
    st_test_rmdir(dir);
    free(dir);
    free(in_path);
    free(out_path);
    free(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
