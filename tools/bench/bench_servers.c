/*
 * bench_servers.c - start, watch and stop the strata-node and etcd processes `strata-bench rpc`
 * measures.
 */
#include "tools/bench/bench_servers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcd/rpc.pb-c.h"
#include "node/rpc_client.h"
#include "strata/v1/admin.pb-c.h"
#include "tools/bench/bench_util.h"

#define MAX_ARGS 40
#define STOP_MS  20000
#define PROBE_MS 1000 /* deadline of one readiness probe */
#define POLL_NS  50000000ull

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Bind `n` sockets to 127.0.0.1:0 at once (so the ports differ), note their ports, close. */
static st_status pick_ports(int *ports, size_t n)
{
    int fds[2 * ST_BENCH_MAX_MEMBERS];
    size_t open_fds = 0;
    st_status s = ST_OK;
    for (size_t i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            s = st_errno_error(errno, "socket");
            goto done;
        }
        fds[open_fds++] = fd;
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
            s = st_errno_error(errno, "bind 127.0.0.1:0");
            goto done;
        }
        ports[i] = ntohs(a.sin_port);
    }
done:
    for (size_t i = 0; i < open_fds; i++)
        close(fds[i]);
    return s;
}

st_status st_bench_servers_init(st_bench_servers *g, st_bench_system sys, size_t n, const char *bin,
                                const char *dir)
{
    memset(g, 0, sizeof *g);
    if (n != 1 && n != 3)
        return st_error(ST_INVALID_ARGUMENT, "a group has 1 or 3 members, not %zu", n);
    g->sys = sys;
    g->n = n;
    snprintf(g->dir, sizeof g->dir, "%s", dir);
    snprintf(g->bin, sizeof g->bin, "%s", bin);
    int ports[2 * ST_BENCH_MAX_MEMBERS];
    st_status s = pick_ports(ports, sys == ST_BENCH_ETCD ? 2 * n : n);
    if (s)
        return s;
    for (size_t i = 0; i < n; i++) {
        g->ports[i] = ports[i];
        if (sys == ST_BENCH_ETCD)
            g->peer_ports[i] = ports[n + i];
        snprintf(g->addrs[i], sizeof g->addrs[i], "127.0.0.1:%d", g->ports[i]);
    }
    return ST_OK;
}

/* argv of member i; strings live in `store` (cap bytes). Returns argc. */
static int build_argv(const st_bench_servers *g, size_t i, char **argv, char *store, size_t cap)
{
    int argc = 0;
    size_t used = 0;
#define ARG(...)                                                  \
    do {                                                          \
        int w_ = snprintf(store + used, cap - used, __VA_ARGS__); \
        argv[argc++] = store + used;                              \
        used += (size_t)w_ + 1;                                   \
    } while (0)
    ARG("%s", g->bin);
    if (g->sys == ST_BENCH_STRATA) {
        /* fsync before every acknowledgement (group commit shares one fsync among the writes
           that arrive together), the same durability as etcd, unless asked otherwise. */
        ARG("--listen");
        ARG("%s", g->addrs[i]);
        ARG("--data-dir");
        ARG("%s/strata%zu", g->dir, i + 1);
        ARG("--port-file");
        ARG("%s/strata%zu.port", g->dir, i + 1);
        ARG("--sync");
        ARG("%s", g->sync ? g->sync : "always");
        ARG("--log-level");
        ARG("warn");
        ARG("--shutdown-grace-ms");
        ARG("1000");
        ARG("--node-id");
        ARG("%zu", i + 1);
        if (g->n > 1) {
            char peers[256];
            size_t p = 0;
            for (size_t k = 0; k < g->n; k++)
                p += (size_t)snprintf(peers + p, sizeof peers - p, "%s%zu=%s", k ? "," : "", k + 1,
                                      g->addrs[k]);
            ARG("--peers");
            ARG("%s", peers);
            ARG("--default-ack");
            ARG("majority");
            /* etcd's defaults (heartbeat 100 ms, election timeout 1 s), not strata's shorter
               ones: the same failure detection on both sides, and on a busy 2-core machine
               shorter timeouts make CPU starvation look like a dead leader. */
            ARG("--heartbeat-ms");
            ARG("100");
            ARG("--election-ms");
            ARG("1000");
        }
        for (size_t k = 0; k < 8 && g->extra[k]; k++)
            ARG("%s", g->extra[k]);
    } else {
        char cluster[512];
        size_t p = 0;
        for (size_t k = 0; k < g->n; k++)
            p += (size_t)snprintf(cluster + p, sizeof cluster - p, "%se%zu=http://127.0.0.1:%d",
                                  k ? "," : "", k + 1, g->peer_ports[k]);
        ARG("--name");
        ARG("e%zu", i + 1);
        ARG("--data-dir");
        ARG("%s/etcd%zu", g->dir, i + 1);
        ARG("--listen-client-urls");
        ARG("http://127.0.0.1:%d", g->ports[i]);
        ARG("--advertise-client-urls");
        ARG("http://127.0.0.1:%d", g->ports[i]);
        ARG("--listen-peer-urls");
        ARG("http://127.0.0.1:%d", g->peer_ports[i]);
        ARG("--initial-advertise-peer-urls");
        ARG("http://127.0.0.1:%d", g->peer_ports[i]);
        ARG("--initial-cluster");
        ARG("%s", cluster);
        ARG("--initial-cluster-state");
        ARG("new");
        ARG("--initial-cluster-token");
        ARG("strata-bench");
        ARG("--logger");
        ARG("zap");
        ARG("--log-level");
        ARG("warn");
    }
#undef ARG
    argv[argc] = NULL;
    return argc;
}

st_status st_bench_servers_spawn(st_bench_servers *g, size_t i)
{
    if (g->pids[i])
        return ST_OK;
    char *argv[MAX_ARGS];
    char store[8192];
    build_argv(g, i, argv, store, sizeof store);
    char log[4200];
    snprintf(log, sizeof log, "%s/%s%zu.log", g->dir, g->sys == ST_BENCH_STRATA ? "strata" : "etcd",
             i + 1);
    if (g->sys == ST_BENCH_STRATA) {
        char pf[4200];
        snprintf(pf, sizeof pf, "%s/strata%zu.port", g->dir, i + 1);
        unlink(pf);
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return st_errno_error(errno, "open %s", log);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd);
        return st_errno_error(e, "fork");
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec (gRPC's threads are not here). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd);
    g->pids[i] = pid;
    g->started[i] = true;
    if (i == 0) {
        size_t p = 0;
        for (int k = 0; argv[k] && p < sizeof g->describe; k++)
            p += (size_t)snprintf(g->describe + p, sizeof g->describe - p, "%s%s", k ? " " : "",
                                  argv[k]);
    }
    return ST_OK;
}

/* Member i was started and has not exited (reaps it if it has). */
static bool member_running(st_bench_servers *g, size_t i)
{
    if (g->pids[i] == 0)
        return false;
    int status;
    if (waitpid(g->pids[i], &status, WNOHANG) == g->pids[i]) {
        g->pids[i] = 0;
        return false;
    }
    return true;
}

/* True while the first `count` members are all running. */
static bool started_alive(st_bench_servers *g, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!member_running(g, i))
            return false;
    return true;
}

bool st_bench_servers_alive(st_bench_servers *g)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->started[i] && !member_running(g, i))
            return false;
    return true;
}

/* One blocking unary call; on OK, *resp (malloc'd) and *resp_len hold the response. */
static bool probe(const char *addr, const char *method, const uint8_t *req, size_t len,
                  uint8_t **resp, size_t *resp_len)
{
    st_rpc_client *c = st_rpc_client_create(addr, 0);
    if (!c)
        return false;
    st_rpc_result r;
    st_rpc_unary(c, method, req, len, true, PROBE_MS, &r);
    bool ok = r.code == GRPC_STATUS_OK && r.has_resp;
    if (ok) {
        *resp = r.resp;
        *resp_len = r.resp_len;
        r.resp = NULL;
    }
    st_rpc_result_free(&r);
    st_rpc_client_destroy(c);
    return ok;
}

/* strata: the first `count` members answer Status, one says leader and the others name it. */
static bool strata_ready(st_bench_servers *g, size_t count)
{
    size_t leader = g->n;
    uint32_t named[ST_BENCH_MAX_MEMBERS] = {0};
    for (size_t i = 0; i < count; i++) {
        char pf[4200];
        snprintf(pf, sizeof pf, "%s/strata%zu.port", g->dir, i + 1);
        if (access(pf, F_OK) != 0)
            return false;
        Strata__V1__StatusRequest req = STRATA__V1__STATUS_REQUEST__INIT;
        uint8_t buf[16];
        size_t len = strata__v1__status_request__pack(&req, buf);
        uint8_t *resp = NULL;
        size_t rlen = 0;
        if (!probe(g->addrs[i], "/strata.v1.Admin/Status", buf, len, &resp, &rlen))
            return false;
        Strata__V1__StatusResponse *st = strata__v1__status_response__unpack(NULL, rlen, resp);
        free(resp);
        if (!st)
            return false;
        if (g->n == 1 || (st->role && strcmp(st->role, "leader") == 0))
            leader = i;
        named[i] = st->leader_id;
        strata__v1__status_response__free_unpacked(st, NULL);
    }
    if (leader == g->n)
        return false;
    for (size_t i = 0; g->n > 1 && i < count; i++)
        if (named[i] != leader + 1)
            return false;
    g->leader = leader;
    return true;
}

/* etcd: the first `count` members answer Status naming the same leader, which answers a
   linearizable Range. */
static bool etcd_ready(st_bench_servers *g, size_t count)
{
    uint64_t leader_id = 0;
    size_t leader = g->n;
    for (size_t i = 0; i < count; i++) {
        Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
        uint8_t buf[16];
        size_t len = etcdserverpb__status_request__pack(&req, buf);
        uint8_t *resp = NULL;
        size_t rlen = 0;
        if (!probe(g->addrs[i], "/etcdserverpb.Maintenance/Status", buf, len, &resp, &rlen))
            return false;
        Etcdserverpb__StatusResponse *st = etcdserverpb__status_response__unpack(NULL, rlen, resp);
        free(resp);
        if (!st)
            return false;
        bool agree = st->leader != 0 && (leader_id == 0 || st->leader == leader_id);
        leader_id = st->leader;
        if (st->header && st->header->member_id == st->leader)
            leader = i;
        etcdserverpb__status_response__free_unpacked(st, NULL);
        if (!agree)
            return false;
    }
    if (leader == g->n)
        return false;
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key.data = (uint8_t *)"strata-bench-probe";
    rr.key.len = strlen("strata-bench-probe");
    uint8_t buf[64];
    size_t len = etcdserverpb__range_request__pack(&rr, buf);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    if (!probe(g->addrs[leader], "/etcdserverpb.KV/Range", buf, len, &resp, &rlen))
        return false;
    free(resp);
    g->leader = leader;
    return true;
}

st_status st_bench_servers_start(st_bench_servers *g, int64_t timeout_ms)
{
    return st_bench_servers_start_some(g, g->n, timeout_ms);
}

st_status st_bench_servers_start_some(st_bench_servers *g, size_t count, int64_t timeout_ms)
{
    st_status s = ST_OK;
    for (size_t i = 0; i < count; i++) {
        if ((s = st_bench_servers_spawn(g, i)) != ST_OK)
            goto fail;
    }
    uint64_t deadline = st_bench_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (!started_alive(g, count)) {
            s = st_error(ST_IO_ERROR, "a %s member exited at start; see the logs in %s",
                         g->sys == ST_BENCH_STRATA ? "strata-node" : "etcd", g->dir);
            goto fail;
        }
        if (g->sys == ST_BENCH_STRATA ? strata_ready(g, count) : etcd_ready(g, count))
            break;
        if (st_bench_now_ns() > deadline) {
            s = st_error(ST_IO_ERROR,
                         "%s group not ready (no leader) after %lld ms; see the logs "
                         "in %s",
                         g->sys == ST_BENCH_STRATA ? "strata-node" : "etcd", (long long)timeout_ms,
                         g->dir);
            goto fail;
        }
        sleep_ns(POLL_NS);
    }
    snprintf(g->leader_addr, sizeof g->leader_addr, "%s", g->addrs[g->leader]);
    return ST_OK;
fail:
    st_bench_servers_stop(g);
    return s;
}

st_status st_bench_servers_stop(st_bench_servers *g)
{
    bool clean = true;
    for (size_t i = 0; i < g->n; i++)
        if (g->pids[i])
            kill(g->pids[i], SIGTERM);
    for (size_t i = 0; i < g->n; i++) {
        if (!g->pids[i])
            continue;
        uint64_t deadline = st_bench_now_ns() + STOP_MS * 1000000ull;
        int status = 0;
        for (;;) {
            pid_t r = waitpid(g->pids[i], &status, WNOHANG);
            if (r == g->pids[i] || (r < 0 && errno != EINTR))
                break;
            if (st_bench_now_ns() > deadline) {
                kill(g->pids[i], SIGKILL);
                waitpid(g->pids[i], &status, 0);
                clean = false;
                break;
            }
            sleep_ns(10000000ull);
        }
        bool ok = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                  (g->sys == ST_BENCH_ETCD && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
        if (!ok)
            clean = false;
        g->pids[i] = 0;
        g->started[i] = false;
    }
    memset(g->started, 0, sizeof g->started);
    return clean ? ST_OK
                 : st_error(ST_IO_ERROR, "a %s member did not stop cleanly; see the logs in %s",
                            g->sys == ST_BENCH_STRATA ? "strata-node" : "etcd", g->dir);
}

uint64_t st_bench_servers_ticks(const st_bench_servers *g)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->pids[i])
            continue;
        char path[64], text[2048];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)g->pids[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n <= 0)
            continue;
        text[n] = '\0';
        uint64_t ticks = 0;
        if (st_bench_parse_pid_stat(text, path, &ticks) == ST_OK)
            sum += ticks;
    }
    return sum;
}
