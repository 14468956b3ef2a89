/* test_node_writer.c - node/writer.h over a real engine: grouping, sequences, failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/db.h"
#include "node/writer.h"
#include "tests/support/testutil.h"

typedef struct req {
    st_write_req base;
    char key[40];
    size_t klen;
    int nops;
    atomic_int done;
    st_status status;
    uint64_t seq;
} req;

static st_status encode(st_write_req *r, st_batch *b)
{
    req *q = (req *)r;
    for (int i = 0; i < q->nops; i++) {
        char k[48];
        memcpy(k, q->key, q->klen);
        k[q->klen] = (char)('a' + i); /* one key per operation */
        st_status s = st_batch_put(b, st_slice_make(k, q->klen + 1), st_slice_str("v"));
        if (s != ST_OK)
            return s;
    }
    return ST_OK;
}

static void complete(st_write_req *r, st_status s, const char *msg, uint64_t seq)
{
    req *q = (req *)r;
    q->status = s;
    q->seq = seq;
    atomic_store(&q->done, 1);
}

static void req_init(req *q, const char *key, int nops, int64_t deadline_ns)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->key, sizeof(q->key), "%s", key);
    q->klen = strlen(q->key);
    q->nops = nops;
    q->base.ops = (uint32_t)nops;
    q->base.bytes = q->klen + 2;
    q->base.deadline_ns = deadline_ns;
    q->base.encode = encode;
    q->base.complete = complete;
}

static void wait_done(req *q)
{
    while (!atomic_load(&q->done)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static st_db *open_db(char **dir, size_t max_key)
{
    *dir = st_test_mkdtemp("writer");
    char *path = st_test_path(*dir, "db");
    st_options o;
    st_options_init(&o);
    o.sync = ST_SYNC_ALWAYS;
    if (max_key)
        o.max_key_bytes = max_key;
    st_db *db;
    assert_int_equal(st_db_open(path, &o, &db), ST_OK);
    free(path);
    return db;
}

#define THREADS    8
#define PER_THREAD 60

typedef struct thread_arg {
    st_writer *w;
    int id;
    req reqs[PER_THREAD];
} thread_arg;

static void *submitter(void *p)
{
    thread_arg *a = p;
    /* Submit everything first, then wait: many requests queue while a group is written. */
    for (int i = 0; i < PER_THREAD; i++) {
        char k[32];
        snprintf(k, sizeof(k), "t%d/%03d/", a->id, i);
        req_init(&a->reqs[i], k, 1 + (i % 3), INT64_MAX);
        st_writer_submit(a->w, &a->reqs[i].base);
    }
    for (int i = 0; i < PER_THREAD; i++)
        wait_done(&a->reqs[i]);
    return NULL;
}

typedef struct range {
    uint64_t first, last;
} range;

static int cmp_range(const void *x, const void *y)
{
    const range *a = x, *b = y;
    return (a->first > b->first) - (a->first < b->first);
}

static void test_group_commit_sequences(void **state)
{
    (void)state;
    char *dir;
    st_db *db = open_db(&dir, 0);
    st_writer *w;
    st_writer_options o = {0};
    assert_int_equal(st_writer_create(db, &o, &w), ST_OK);
    static thread_arg args[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].w = w;
        args[i].id = i;
        pthread_create(&th[i], NULL, submitter, &args[i]);
    }
    static range ranges[THREADS * PER_THREAD];
    size_t n = 0;
    uint64_t ops = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        for (int j = 0; j < PER_THREAD; j++) {
            req *q = &args[i].reqs[j];
            assert_int_equal(q->status, ST_OK);
            ranges[n].first = q->seq - (uint64_t)q->nops + 1;
            ranges[n++].last = q->seq;
            ops += (uint64_t)q->nops;
        }
    }
    /* The requests' sequence ranges tile 1 … ops exactly: no overlap, no gap. */
    qsort(ranges, n, sizeof(ranges[0]), cmp_range);
    assert_int_equal(ranges[0].first, 1);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(ranges[i].first, ranges[i - 1].last + 1);
    assert_int_equal(ranges[n - 1].last, ops);
    /* Each request's keys carry its own sequences: read one back. */
    uint8_t *v;
    size_t vl;
    uint64_t rs;
    assert_int_equal(st_db_get(db, NULL, st_slice_str("t3/017/c"), &v, &vl, &rs), ST_OK);
    st_free(v);
    /* Grouping happened: fewer engine writes than requests. */
    st_stats st;
    assert_int_equal(st_db_stats(db, &st), ST_OK);
    assert_true(st.writes < (uint64_t)n);
    st_writer_destroy(w);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

static void test_deadline_empty_and_shutdown(void **state)
{
    (void)state;
    char *dir;
    st_db *db = open_db(&dir, 0);
    st_writer *w;
    st_writer_options o = {0};
    assert_int_equal(st_writer_create(db, &o, &w), ST_OK);
    req a, late, empty, after;
    req_init(&a, "a/", 2, INT64_MAX);
    req_init(&late, "late/", 1, 1); /* a deadline long past */
    req_init(&empty, "", 0, INT64_MAX);
    st_writer_submit(w, &a.base);
    st_writer_submit(w, &late.base);
    st_writer_submit(w, &empty.base);
    wait_done(&a);
    wait_done(&late);
    wait_done(&empty);
    assert_int_equal(a.status, ST_OK);
    assert_int_equal(a.seq, 2);
    assert_int_equal(late.status, ST_TIMEOUT);
    assert_int_equal(empty.status, ST_OK);
    assert_int_equal(empty.seq, 2); /* nothing written: the sequence current at its place */
    uint8_t *v;
    size_t vl;
    assert_int_equal(st_db_get(db, NULL, st_slice_str("late/a"), &v, &vl, NULL), ST_NOT_FOUND);
    st_writer_stop(w);
    req_init(&after, "after/", 1, INT64_MAX);
    st_writer_submit(w, &after.base);
    assert_int_equal(atomic_load(&after.done), 1);
    assert_int_equal(after.status, ST_SHUTDOWN);
    st_writer_destroy(w);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

static void test_one_bad_request_fails_alone(void **state)
{
    (void)state;
    char *dir;
    st_db *db = open_db(&dir, 16); /* the engine refuses keys over 16 bytes */
    st_writer *w;
    st_writer_options o = {0};
    assert_int_equal(st_writer_create(db, &o, &w), ST_OK);
    req r[5];
    for (int i = 0; i < 5; i++) {
        req_init(&r[i], i == 2 ? "this-key-is-far-too-long/" : "ok/", 1, INT64_MAX);
        r[i].key[2] = (char)('0' + i);
        st_writer_submit(w, &r[i].base);
    }
    for (int i = 0; i < 5; i++)
        wait_done(&r[i]);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].status, i == 2 ? ST_INVALID_ARGUMENT : ST_OK);
    st_writer_destroy(w);
    st_db_close(db);
    st_test_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit_sequences),
        cmocka_unit_test(test_deadline_empty_and_shutdown),
        cmocka_unit_test(test_one_bad_request_fails_alone),
    };
    return cmocka_run_group_tests_name("node_writer", tests, NULL, NULL);
}
