/* cluster_harness.c - several strata-node processes forming one cluster. */
#include "tests/node/cluster_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define HEARTBEAT_MS "50"
#define ELECTION_MS  "500"
#else
#define HEARTBEAT_MS "20"
#define ELECTION_MS  "150"
#endif

uint32_t st_tcluster_election_ms(void)
{
    return (uint32_t)atoi(ELECTION_MS);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* n distinct free ports: all bound at once (so they differ), then released. */
static bool pick_ports(int *ports, size_t n)
{
    int fds[ST_TCLUSTER_MAX + 1];
    bool ok = true;
    size_t opened = 0;
    for (size_t i = 0; i < n && ok; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof(a);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
            if (fd >= 0)
                close(fd);
            ok = false;
            break;
        }
        fds[opened++] = fd;
        ports[i + 1] = ntohs(a.sin_port);
    }
    for (size_t i = 0; i < opened; i++)
        close(fds[i]);
    return ok;
}

static bool start_node(st_tcluster *c, uint32_t id)
{
    char listen[64], node_id[16], advertise[96];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->ports[id]);
    snprintf(advertise, sizeof(advertise), "%s:%d", c->advertise_host, c->ports[id]);
    snprintf(node_id, sizeof(node_id), "%u", id);
    const char *argv[48];
    int a = 0;
    argv[a++] = "--heartbeat-ms";
    argv[a++] = HEARTBEAT_MS;
    argv[a++] = "--election-ms";
    argv[a++] = ELECTION_MS;
    argv[a++] = "--workers";
    argv[a++] = "2";
    for (int i = 0; c->extra[i] && a < 40; i++)
        argv[a++] = c->extra[i];
    argv[a++] = "--listen";
    argv[a++] = listen;
    argv[a++] = "--node-id";
    argv[a++] = node_id;
    argv[a++] = "--peers";
    argv[a++] = c->peers;
    if (c->advertise_host[0]) {
        argv[a++] = "--advertise";
        argv[a++] = advertise;
    }
    argv[a] = NULL;
    if (!st_node_start(&c->nodes[id], argv))
        return false;
    st_rpc_client_destroy(c->clients[id]);
    c->clients[id] = st_rpc_client_create(c->nodes[id].addr, 0);
    return c->clients[id] != NULL;
}

static void teardown_nodes(st_tcluster *c)
{
    for (uint32_t id = 1; id <= c->n; id++) {
        st_rpc_client_destroy(c->clients[id]);
        c->clients[id] = NULL;
        if (c->nodes[id].dir)
            st_node_cleanup(&c->nodes[id]);
    }
}

bool st_tcluster_start(st_tcluster *c, size_t n, const char *tag, const char *const *extra)
{
    return st_tcluster_start_advertised(c, n, tag, extra, NULL);
}

bool st_tcluster_start_advertised(st_tcluster *c, size_t n, const char *tag,
                                  const char *const *extra, const char *advertise_host)
{
    memset(c, 0, sizeof(*c));
    if (n < 1 || n > ST_TCLUSTER_MAX)
        return false;
    if (advertise_host)
        snprintf(c->advertise_host, sizeof(c->advertise_host), "%s", advertise_host);
    c->n = n;
    snprintf(c->tag, sizeof(c->tag), "%s", tag);
    for (int i = 0; extra && extra[i] && i < 23; i++)
        c->extra[i] = extra[i];
    for (int attempt = 0; attempt < 5; attempt++) {
        if (!pick_ports(c->ports, n))
            continue;
        size_t off = 0;
        for (uint32_t id = 1; id <= n; id++)
            off += (size_t)snprintf(c->peers + off, sizeof(c->peers) - off, "%s%u=127.0.0.1:%d",
                                    id > 1 ? "," : "", id, c->ports[id]);
        bool ok = true;
        for (uint32_t id = 1; id <= n && ok; id++) {
            char t[96];
            snprintf(t, sizeof(t), "%s_n%u", tag, id);
            st_node_init(&c->nodes[id], t);
            ok = start_node(c, id);
        }
        if (ok)
            return true;
        /* Most likely a port taken meanwhile: start over on fresh ones. */
        st_tcluster_dump_logs(c);
        fprintf(stderr, "cluster %s: a node did not start (attempt %d); retrying\n", tag,
                attempt + 1);
        teardown_nodes(c);
    }
    return false;
}

int st_tcluster_stop_node(st_tcluster *c, uint32_t id)
{
    st_rpc_client_destroy(c->clients[id]);
    c->clients[id] = NULL;
    return st_node_stop(&c->nodes[id]);
}

void st_tcluster_kill(st_tcluster *c, uint32_t id)
{
    st_node_proc *p = &c->nodes[id];
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        st_node_wait(p, 10000);
    }
}

bool st_tcluster_restart(st_tcluster *c, uint32_t id)
{
    return start_node(c, id);
}

Strata__V1__StatusResponse *st_tcluster_status(st_tcluster *c, uint32_t id, int64_t timeout_ms)
{
    if (c->nodes[id].pid <= 0 || !c->clients[id])
        return NULL;
    Strata__V1__StatusRequest q = STRATA__V1__STATUS_REQUEST__INIT;
    st_rpc_result r;
    st_call_msg(c->clients[id], "/strata.v1.Admin/Status", &q.base, timeout_ms, &r);
    Strata__V1__StatusResponse *p = NULL;
    if (r.code == GRPC_STATUS_OK)
        p = strata__v1__status_response__unpack(NULL, r.resp_len, r.resp);
    st_rpc_result_free(&r);
    return p;
}

uint32_t st_tcluster_wait_leader(st_tcluster *c, int timeout_ms, uint32_t except)
{
    int64_t until = now_ms() + timeout_ms;
    do {
        uint32_t leader = 0, leaders = 0, named[ST_TCLUSTER_MAX + 1] = {0};
        bool all_answer = true;
        for (uint32_t id = 1; id <= c->n; id++) {
            if (c->nodes[id].pid <= 0 || id == except)
                continue;
            Strata__V1__StatusResponse *s = st_tcluster_status(c, id, 1000);
            if (!s) {
                all_answer = false;
                continue;
            }
            if (strcmp(s->role, "leader") == 0) {
                leader = id;
                leaders++;
            }
            named[id] = s->leader_id;
            strata__v1__status_response__free_unpacked(s, NULL);
        }
        bool agreed = all_answer && leaders == 1;
        for (uint32_t id = 1; agreed && id <= c->n; id++)
            if (c->nodes[id].pid > 0 && id != except && named[id] != leader)
                agreed = false;
        if (agreed)
            return leader;
        sleep_ms(20);
    } while (now_ms() < until);
    return 0;
}

uint32_t st_tcluster_follower(st_tcluster *c, uint32_t leader)
{
    for (uint32_t id = 1; id <= c->n; id++)
        if (id != leader && c->nodes[id].pid > 0)
            return id;
    return 0;
}

void st_tcluster_dump_logs(st_tcluster *c)
{
    for (uint32_t id = 1; id <= c->n; id++) {
        if (!c->nodes[id].dir)
            continue;
        char *log = st_node_log(&c->nodes[id]);
        fprintf(stderr, "---- %s node %u (%s) ----\n%s", c->tag, id, c->nodes[id].addr, log);
        free(log);
    }
}

bool st_tcluster_stop(st_tcluster *c)
{
    bool ok = true;
    /* Channels first: see st_tcluster_stop_node. */
    for (uint32_t id = 1; id <= c->n; id++) {
        st_rpc_client_destroy(c->clients[id]);
        c->clients[id] = NULL;
    }
    for (uint32_t id = 1; id <= c->n; id++) {
        st_node_proc *p = &c->nodes[id];
        if (p->pid > 0)
            kill(p->pid, SIGTERM);
    }
    for (uint32_t id = 1; id <= c->n; id++) {
        st_node_proc *p = &c->nodes[id];
        if (p->pid > 0 && st_node_stop(p) != 0) {
            fprintf(stderr, "cluster %s: node %u exited %d\n", c->tag, id, p->exit_status);
            ok = false;
        }
    }
    if (!ok)
        st_tcluster_dump_logs(c);
    teardown_nodes(c);
    return ok;
}
