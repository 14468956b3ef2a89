/* health.c - grpc.health.v1.Health. */
#include "node/health.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

typedef struct watcher watcher;

struct st_health {
    pthread_mutex_t mu;
    bool shutting_down; /* guarded by mu */
    bool leader;        /* guarded by mu */
    watcher *watchers;  /* guarded by mu */
};

/* One Watch call; owned by the call (st_call_set_data). Fields guarded by st_health.mu. */
struct watcher {
    st_health *h;
    st_call *call;
    char *service;
    watcher *next, *prev;
    bool listed;
    bool sending;
    serving_status sent; /* last status sent (-1 before the first) */
};

#define LEADER_SERVICE "strata.v1.KV.leader"

static const char *const known[] = {"", "strata.v1.KV", "strata.v1.Admin", LEADER_SERVICE};

static serving_status status_of(st_health *h, const char *service, bool *is_known)
{
    *is_known = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(service, known[i]) == 0)
            *is_known = true;
    if (!*is_known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    bool serving = !h->shutting_down && (h->leader || strcmp(service, LEADER_SERVICE) != 0);
    return serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void handle_check(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_health *h = svc;
    Grpc__Health__V1__HealthCheckRequest *q = NULL;
    if (has_req)
        q = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "Check: the request does not parse as HealthCheckRequest"
                             : "Check: no request message was sent");
        return;
    }
    pthread_mutex_lock(&h->mu);
    bool is_known;
    serving_status st = status_of(h, q->service, &is_known);
    pthread_mutex_unlock(&h->mu);
    if (!is_known) {
        st_call_fail(call, GRPC_STATUS_NOT_FOUND, "Check: unknown service '%s'", q->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = st;
        st_call_reply(call, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(q, NULL);
}

static void watcher_free(void *p)
{
    watcher *w = p;
    free(w->service);
    free(w);
}

static void unlist_locked(st_health *h, watcher *w)
{
    if (!w->listed)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->listed = false;
}

static void on_watch_sent(st_call *call, bool ok);

/*
 * Bring one watcher up to date: send the status if it changed, or end the stream once
 * NOT_SERVING has gone out at shutdown. mu held. Returns true if the call was taken off the
 * list to be finished by the caller (outside mu).
 */
static bool pump_locked(st_health *h, watcher *w)
{
    if (!w->listed || w->sending)
        return false;
    bool is_known;
    serving_status st = status_of(h, w->service, &is_known);
    if ((int)st != (int)w->sent) {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = st;
        w->sending = true;
        w->sent = st;
        st_call_send(w->call, &resp.base, false, on_watch_sent);
        return false;
    }
    if (h->shutting_down) {
        unlist_locked(h, w);
        return true;
    }
    return false;
}

static void on_watch_sent(st_call *call, bool ok)
{
    watcher *w = st_call_data(call);
    st_health *h = w->h;
    pthread_mutex_lock(&h->mu);
    w->sending = false;
    bool finish = false, gone = false;
    if (!ok) {
        gone = w->listed;
        unlist_locked(h, w);
    } else {
        finish = pump_locked(h, w);
    }
    pthread_mutex_unlock(&h->mu);
    if (gone)
        st_call_fail(call, GRPC_STATUS_CANCELLED, "Watch: the client went away");
    else if (finish)
        st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "Watch: the node is shutting down");
}

static void on_watch_cancel(st_call *call)
{
    watcher *w = st_call_data(call);
    st_health *h = w->h;
    pthread_mutex_lock(&h->mu);
    bool mine = w->listed;
    unlist_locked(h, w);
    pthread_mutex_unlock(&h->mu);
    if (mine)
        st_call_fail(call, GRPC_STATUS_CANCELLED, "Watch: cancelled");
}

static void handle_watch(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_health *h = svc;
    Grpc__Health__V1__HealthCheckRequest *q = NULL;
    if (has_req)
        q = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     has_req ? "Watch: the request does not parse as HealthCheckRequest"
                             : "Watch: no request message was sent");
        return;
    }
    watcher *w = calloc(1, sizeof(*w));
    char *service = strdup(q->service);
    grpc__health__v1__health_check_request__free_unpacked(q, NULL);
    if (!w || !service) {
        free(w);
        free(service);
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "Watch: out of memory");
        return;
    }
    w->h = h;
    w->call = call;
    w->service = service;
    w->sent = (serving_status)-1;
    st_call_set_data(call, w, watcher_free);
    st_call_watch_cancel(call, on_watch_cancel);

    pthread_mutex_lock(&h->mu);
    w->listed = true;
    w->next = h->watchers;
    if (h->watchers)
        h->watchers->prev = w;
    h->watchers = w;
    bool finish = pump_locked(h, w);
    pthread_mutex_unlock(&h->mu);
    if (finish)
        st_call_fail(call, GRPC_STATUS_UNAVAILABLE, "Watch: the node is shutting down");
    else if (st_call_cancelled(call))
        on_watch_cancel(call); /* cancelled before the hook was set */
}

st_status st_health_create(st_server *srv, st_health **out)
{
    *out = NULL;
    st_health *h = calloc(1, sizeof(*h));
    if (!h)
        return st_error(ST_NO_MEMORY, "health: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    h->leader = true;
    const st_method check = {
        "/grpc.health.v1.Health/Check", ST_METHOD_UNARY, false, handle_check, h, false};
    const st_method watch = {
        "/grpc.health.v1.Health/Watch", ST_METHOD_SERVER_STREAM, false, handle_watch, h, false};
    st_status s = st_server_add_method(srv, &check);
    if (s == ST_OK)
        s = st_server_add_method(srv, &watch);
    if (s != ST_OK) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        return s;
    }
    *out = h;
    return ST_OK;
}

void st_health_set_leader(st_health *h, bool leader)
{
    pthread_mutex_lock(&h->mu);
    if (h->leader != leader) {
        h->leader = leader;
        /* Only Watch streams of the leader service see a change; pump sends nothing to the
           others, and finishes none (not shutting down). */
        for (watcher *w = h->watchers; w; w = w->next)
            (void)pump_locked(h, w);
    }
    pthread_mutex_unlock(&h->mu);
}

void st_health_shutdown(st_health *h)
{
    /* Calls to finish are collected under mu and finished after it is released. */
    pthread_mutex_lock(&h->mu);
    h->shutting_down = true;
    size_t n = 0;
    for (watcher *w = h->watchers; w; w = w->next)
        n++;
    st_call **done = calloc(n ? n : 1, sizeof(*done));
    size_t nd = 0;
    for (watcher *w = h->watchers, *next; w; w = next) {
        next = w->next;
        if (pump_locked(h, w) && done)
            done[nd++] = w->call;
    }
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 0; i < nd; i++)
        st_call_fail(done[i], GRPC_STATUS_UNAVAILABLE, "Watch: the node is shutting down");
    free(done);
}

void st_health_destroy(st_health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->mu);
    free(h);
}
