/* writer.c - one thread, one st_db_write per group of queued write calls. */
#include "node/writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct st_writer {
    st_db *db;
    st_writer_options o;
    pthread_t thread;
    st_batch *batch; /* writer thread only */
    bool joined;     /* the stopping thread's */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    st_write_req *head, *tail; /* guarded by mu */
    size_t queued;             /* guarded by mu */
    bool stopping;             /* guarded by mu */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Apply `group` (a list of n requests) as one batch and complete each. */
static void write_group(st_writer *w, st_write_req **group, size_t n)
{
    st_batch *b = w->batch;
    st_batch_clear(b);
    uint64_t total = 0;
    size_t kept = 0;
    int64_t now = mono_ns();
    for (size_t i = 0; i < n; i++) {
        st_write_req *r = group[i];
        if (r->deadline_ns != INT64_MAX && now >= r->deadline_ns) {
            r->complete(r, ST_TIMEOUT, "the deadline passed while the write was queued", 0);
            continue;
        }
        st_status s = r->encode(r, b);
        if (s != ST_OK) {
            /* The batch may hold part of r: rebuild it from the requests kept so far. */
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", st_errmsg());
            r->complete(r, s, msg, 0);
            st_batch_clear(b);
            for (size_t k = 0; k < kept; k++)
                (void)group[k]->encode(group[k], b);
            continue;
        }
        group[kept++] = r;
        total += r->ops;
    }
    if (kept == 0)
        return;
    uint64_t last = 0;
    st_status s =
        w->o.append ? w->o.append(w->o.append_ctx, b, &last) : st_db_write(w->db, b, &last);
    if (s == ST_INVALID_ARGUMENT && kept > 1) {
        /* One request the engine refuses must not fail the others: one batch each. */
        for (size_t i = 0; i < kept; i++)
            write_group(w, &group[i], 1);
        return;
    }
    if (s != ST_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", st_errmsg());
        for (size_t i = 0; i < kept; i++)
            group[i]->complete(group[i], s, msg, 0);
        return;
    }
    /* The group took total consecutive sequences ending at last. */
    uint64_t seq = last - total;
    for (size_t i = 0; i < kept; i++) {
        seq += group[i]->ops;
        group[i]->complete(group[i], ST_OK, "", seq);
    }
    if (w->o.on_applied)
        w->o.on_applied(w->o.ctx, last);
}

static void *writer_main(void *arg)
{
    st_writer *w = arg;
    pthread_setname_np(pthread_self(), "st-writer");
    size_t cap = 64;
    st_write_req **group = malloc(cap * sizeof(*group));
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        size_t n = 0, bytes = 0;
        uint64_t ops = 0;
        while (w->head) {
            st_write_req *r = w->head;
            if (n > 0 &&
                (bytes + r->bytes > w->o.max_group_bytes || ops + r->ops > w->o.max_group_ops))
                break;
            if (n == cap) {
                st_write_req **p = group ? realloc(group, 2 * cap * sizeof(*group)) : NULL;
                if (!p)
                    break;
                group = p;
                cap *= 2;
            }
            if (!group)
                break;
            w->head = r->next;
            if (!w->head)
                w->tail = NULL;
            r->next = NULL;
            w->queued--;
            group[n++] = r;
            bytes += r->bytes;
            ops += r->ops;
        }
        pthread_mutex_unlock(&w->mu);
        if (n == 0) {
            /* Out of memory for the group array: write the head request alone. */
            pthread_mutex_lock(&w->mu);
            st_write_req *r = w->head;
            w->head = r->next;
            if (!w->head)
                w->tail = NULL;
            w->queued--;
            pthread_mutex_unlock(&w->mu);
            r->next = NULL;
            write_group(w, &r, 1);
            continue;
        }
        write_group(w, group, n);
    }
    free(group);
    return NULL;
}

st_status st_writer_create(st_db *db, const st_writer_options *o, st_writer **out)
{
    *out = NULL;
    st_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return st_error(ST_NO_MEMORY, "writer: out of memory");
    w->db = db;
    w->o = *o;
    if (!w->o.max_group_bytes)
        w->o.max_group_bytes = 8u << 20;
    if (!w->o.max_group_ops)
        w->o.max_group_ops = 16384;
    st_status s = st_batch_create(&w->batch);
    if (s != ST_OK) {
        free(w);
        return s;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        st_batch_destroy(w->batch);
        free(w);
        return st_error(ST_NO_MEMORY, "writer: cannot start its thread");
    }
    *out = w;
    return ST_OK;
}

void st_writer_submit(st_writer *w, st_write_req *r)
{
    r->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        r->complete(r, ST_SHUTDOWN, "the node is shutting down", 0);
        return;
    }
    if (w->tail)
        w->tail->next = r;
    else
        w->head = r;
    w->tail = r;
    w->queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

size_t st_writer_queued(st_writer *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->queued;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void st_writer_stop(st_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (!w->joined) {
        pthread_join(w->thread, NULL);
        w->joined = true;
    }
}

void st_writer_destroy(st_writer *w)
{
    if (!w)
        return;
    st_writer_stop(w);
    st_batch_destroy(w->batch);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
