/*
 * test_merger.c - the merging iterator against a sorted model, over 1-40 in-memory children, with
 * random walks that change direction; children that fail; the small cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dbformat.h"
#include "engine/merger.h"
#include "tests/support/testutil.h"

/* ---- an iterator over a sorted array of (internal key, value) ---- */

typedef struct item {
    uint8_t ikey[16];
    size_t klen;
    uint8_t val[8];
    size_t vlen;
    size_t child;
} item;

static st_slice item_key(const item *e)
{
    return st_slice_make(e->ikey, e->klen);
}

static st_slice item_val(const item *e)
{
    return st_slice_make(e->val, e->vlen);
}

typedef struct vec_iter {
    st_iterator base;
    const item *items; /* borrowed, sorted by st_ikey_cmp */
    size_t n;
    size_t pos; /* == n when not valid */
    /* Failure injection: moving onto index fail_at fails; fail_always fails every positioning. */
    size_t fail_at;
    bool fail_at_seek_only; /* moving onto fail_at fails only by a seek, not by next/prev */
    bool fail_always;
    st_status fail_code;
    st_status err;
    int *destroyed; /* incremented on destroy, if set */
} vec_iter;

static void vi_land(vec_iter *v, size_t pos, bool seek)
{
    v->err = ST_OK;
    if (v->fail_always || (pos < v->n && pos == v->fail_at && (seek || !v->fail_at_seek_only))) {
        v->err = v->fail_code;
        pos = v->n;
    }
    v->pos = pos;
}

static bool vi_valid(const st_iterator *it)
{
    const vec_iter *v = (const vec_iter *)it;
    return v->pos < v->n;
}

static void vi_seek_first(st_iterator *it)
{
    vi_land((vec_iter *)it, 0, true);
}

static void vi_seek_last(st_iterator *it)
{
    vec_iter *v = (vec_iter *)it;
    vi_land(v, v->n ? v->n - 1 : 0, true);
}

static void vi_seek(st_iterator *it, st_slice target)
{
    vec_iter *v = (vec_iter *)it;
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st_ikey_cmp(item_key(&v->items[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    vi_land(v, lo, true);
}

static void vi_next(st_iterator *it)
{
    vec_iter *v = (vec_iter *)it;
    assert_true(v->pos < v->n); /* the merger only moves valid children */
    vi_land(v, v->pos + 1, false);
}

static void vi_prev(st_iterator *it)
{
    vec_iter *v = (vec_iter *)it;
    assert_true(v->pos < v->n);
    vi_land(v, v->pos == 0 ? v->n : v->pos - 1, false);
}

static st_slice vi_key(const st_iterator *it)
{
    const vec_iter *v = (const vec_iter *)it;
    assert_true(v->pos < v->n);
    return item_key(&v->items[v->pos]);
}

static st_slice vi_value(const st_iterator *it)
{
    const vec_iter *v = (const vec_iter *)it;
    assert_true(v->pos < v->n);
    return item_val(&v->items[v->pos]);
}

static st_status vi_status(const st_iterator *it)
{
    const vec_iter *v = (const vec_iter *)it;
    if (v->err)
        return st_error(v->err, "vec child: injected %s", st_status_name(v->err));
    return ST_OK;
}

static void vi_destroy(st_iterator *it)
{
    vec_iter *v = (vec_iter *)it;
    if (v->destroyed)
        (*v->destroyed)++;
    free(v);
}

static const st_iterator_ops vec_ops = {
    .valid = vi_valid,
    .seek_first = vi_seek_first,
    .seek_last = vi_seek_last,
    .seek = vi_seek,
    .next = vi_next,
    .prev = vi_prev,
    .key = vi_key,
    .value = vi_value,
    .status = vi_status,
    .destroy = vi_destroy,
};

static vec_iter *vec_create(const item *items, size_t n)
{
    vec_iter *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->base.ops = &vec_ops;
    v->items = items;
    v->n = n;
    v->pos = n;
    v->fail_at = SIZE_MAX;
    return v;
}

/* ---- the model ---- */

/* Sort by (internal key, child): the merged order. */
static int model_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    int r = st_ikey_cmp(item_key(x), item_key(y));
    if (r == 0)
        r = (x->child > y->child) - (x->child < y->child);
    return r;
}

/* A random internal key: user keys from a small alphabet (so versions pile up), seq 1..40. */
static void random_ikey(st_rng *rng, uint8_t *out, size_t *len)
{
    static const uint8_t alpha[] = {0x00, 'a', 'b', 0xff};
    size_t ulen = (size_t)st_rng_uniform(rng, 4);
    uint8_t user[4];
    for (size_t i = 0; i < ulen; i++)
        user[i] = alpha[st_rng_uniform(rng, sizeof(alpha))];
    st_kind kind = st_rng_uniform(rng, 3) ? ST_KIND_PUT : ST_KIND_DELETE;
    uint64_t seq = 1 + st_rng_uniform(rng, 40);
    st_encode_ikey(out, st_slice_make(user, ulen), seq, kind);
    *len = ulen + ST_TAG_BYTES;
}

typedef struct world {
    size_t nchild;
    item *model; /* all items, merged order */
    size_t n;
    item **per_child; /* each child's items, key order */
    size_t *per_n;
} world;

static bool child_has(const world *w, size_t c, const uint8_t *ikey, size_t klen)
{
    for (size_t i = 0; i < w->per_n[c]; i++) {
        if (w->per_child[c][i].klen == klen && memcmp(w->per_child[c][i].ikey, ikey, klen) == 0)
            return true;
    }
    return false;
}

static void world_make(world *w, st_rng *rng, size_t nchild, size_t nitems)
{
    w->nchild = nchild;
    w->model = calloc(nitems + 1, sizeof(item));
    w->per_child = calloc(nchild, sizeof(item *));
    w->per_n = calloc(nchild, sizeof(size_t));
    for (size_t c = 0; c < nchild; c++)
        w->per_child[c] = calloc(nitems + 1, sizeof(item));
    w->n = 0;
    /* Some children get much more than others, and some none at all. */
    size_t favourite = (size_t)st_rng_uniform(rng, nchild);
    for (size_t i = 0; i < nitems; i++) {
        item e;
        memset(&e, 0, sizeof(e));
        if (w->n && st_rng_uniform(rng, 5) == 0) {
            /* The same entry in another child: equal keys across children. */
            const item *src = &w->model[st_rng_uniform(rng, w->n)];
            memcpy(e.ikey, src->ikey, src->klen);
            e.klen = src->klen;
        } else {
            random_ikey(rng, e.ikey, &e.klen);
        }
        e.child = st_rng_uniform(rng, 3) == 0 ? favourite : (size_t)st_rng_uniform(rng, nchild);
        if (child_has(w, e.child, e.ikey, e.klen))
            continue; /* a child's own keys are distinct */
        /* The value names the child, so the order among equal keys is visible. */
        e.vlen = 1 + (size_t)st_rng_uniform(rng, 4);
        st_rng_bytes(rng, e.val, e.vlen);
        e.val[0] = (uint8_t)e.child;
        w->per_child[e.child][w->per_n[e.child]++] = e;
        w->model[w->n++] = e;
    }
    qsort(w->model, w->n, sizeof(item), model_cmp);
    for (size_t c = 0; c < nchild; c++)
        qsort(w->per_child[c], w->per_n[c], sizeof(item), model_cmp);
}

static void world_free(world *w)
{
    for (size_t c = 0; c < w->nchild; c++)
        free(w->per_child[c]);
    free(w->per_child);
    free(w->per_n);
    free(w->model);
}

static st_iterator *world_iter(const world *w, vec_iter **kids)
{
    st_iterator **children = malloc(w->nchild * sizeof(st_iterator *));
    for (size_t c = 0; c < w->nchild; c++) {
        vec_iter *v = vec_create(w->per_child[c], w->per_n[c]);
        if (kids)
            kids[c] = v;
        children[c] = &v->base;
    }
    st_iterator *it = st_merging_iter_create(children, w->nchild);
    /* The array is copied: scribbling over ours must not matter. */
    memset(children, 0, w->nchild * sizeof(st_iterator *));
    free(children);
    assert_non_null(it);
    return it;
}

/* The iterator stands where the model says: at model[pos], or nowhere if pos == n. */
static void check_at(const world *w, const st_iterator *it, size_t pos)
{
    if (pos >= w->n) {
        assert_false(st_it_valid(it));
        assert_int_equal(st_it_status(it), ST_OK);
        return;
    }
    assert_true(st_it_valid(it));
    const item *e = &w->model[pos];
    if (!st_slice_eq(st_it_key(it), item_key(e)) || !st_slice_eq(st_it_value(it), item_val(e)))
        fail_msg("at model position %zu of %zu: wrong entry", pos, w->n);
}

static size_t model_lower_bound(const world *w, st_slice target)
{
    size_t pos = 0;
    while (pos < w->n && st_ikey_cmp(item_key(&w->model[pos]), target) < 0)
        pos++;
    return pos;
}

static void test_random_walks(void **state)
{
    (void)state;
    uint64_t seed = st_test_seed("merger_random");
    st_rng rng;
    st_rng_seed(&rng, seed);
    uint64_t worlds = st_test_scaled(400);
    uint64_t turns = 0;
    for (uint64_t round = 0; round < worlds; round++) {
        size_t nchild = 1 + (size_t)st_rng_uniform(&rng, 40);
        size_t nitems = (size_t)st_rng_uniform(&rng, round % 4 == 0 ? 20 : 400);
        world w;
        world_make(&w, &rng, nchild, nitems);
        st_iterator *it = world_iter(&w, NULL);
        assert_false(st_it_valid(it));

        size_t pos = w.n; /* not valid */
        bool last_forward = true;
        for (int op = 0; op < 300; op++) {
            uint64_t r = st_rng_uniform(&rng, 100);
            if (pos < w.n && r < 40) {
                st_it_next(it);
                pos++;
                turns += !last_forward;
                last_forward = true;
            } else if (pos < w.n && r < 80) {
                st_it_prev(it);
                pos = pos == 0 ? w.n : pos - 1;
                turns += last_forward;
                last_forward = false;
            } else if (r < 85) {
                st_it_seek_first(it);
                pos = 0;
                last_forward = true;
            } else if (r < 90) {
                st_it_seek_last(it);
                pos = w.n ? w.n - 1 : 0;
                last_forward = false;
            } else {
                uint8_t target[16];
                size_t tlen;
                if (w.n && st_rng_uniform(&rng, 2)) {
                    const item *e = &w.model[st_rng_uniform(&rng, w.n)];
                    memcpy(target, e->ikey, e->klen);
                    tlen = e->klen;
                } else {
                    random_ikey(&rng, target, &tlen);
                }
                st_it_seek(it, st_slice_make(target, tlen));
                pos = model_lower_bound(&w, st_slice_make(target, tlen));
                last_forward = true;
            }
            check_at(&w, it, pos);
        }
        /* And one full pass each way. */
        size_t i = 0;
        for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
            check_at(&w, it, i++);
        assert_int_equal(i, w.n);
        for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it))
            check_at(&w, it, --i);
        assert_int_equal(i, 0);
        st_it_destroy(it);
        world_free(&w);
    }
    printf("merger: %llu worlds, %llu direction changes\n", (unsigned long long)worlds,
           (unsigned long long)turns);
    assert_true(turns > worlds); /* the walks did change direction, often */
}

/* Many equal keys: the same entry in every child; forward lower index first, backward reversed. */
static void test_equal_keys_order(void **state)
{
    (void)state;
    enum { C = 35 };
    static item items[C][2];
    st_iterator *children[C];
    for (size_t c = 0; c < C; c++) {
        for (size_t j = 0; j < 2; j++) {
            item *e = &items[c][j];
            st_encode_ikey(e->ikey, st_slice_str(j ? "y" : "x"), 7, ST_KIND_PUT);
            e->klen = 1 + ST_TAG_BYTES;
            e->val[0] = (uint8_t)c;
            e->vlen = 1;
        }
        children[c] = &vec_create(items[c], 2)->base;
    }
    st_iterator *it = st_merging_iter_create(children, C);
    assert_non_null(it);
    st_it_seek_first(it);
    for (size_t k = 0; k < 2 * C; k++) {
        assert_true(st_it_valid(it));
        assert_int_equal(st_it_key(it).data[0], k < C ? 'x' : 'y');
        assert_int_equal(st_it_value(it).data[0], k % C);
        st_it_next(it);
    }
    assert_false(st_it_valid(it));
    st_it_seek_last(it);
    for (size_t k = 2 * C; k-- > 0;) {
        assert_true(st_it_valid(it));
        assert_int_equal(st_it_value(it).data[0], k % C);
        st_it_prev(it);
    }
    assert_false(st_it_valid(it));
    /* Turning around in the middle of a run of equal keys. */
    st_it_seek_first(it);
    for (int k = 0; k < 10; k++)
        st_it_next(it);
    assert_int_equal(st_it_value(it).data[0], 10);
    st_it_prev(it);
    assert_int_equal(st_it_value(it).data[0], 9);
    st_it_prev(it);
    assert_int_equal(st_it_value(it).data[0], 8);
    st_it_next(it);
    assert_int_equal(st_it_value(it).data[0], 9);
    st_it_next(it);
    assert_int_equal(st_it_value(it).data[0], 10);
    st_it_destroy(it);
}

static void test_small_cases(void **state)
{
    (void)state;
    /* No children: empty and fine. */
    st_iterator *it = st_merging_iter_create(NULL, 0);
    assert_non_null(it);
    st_it_seek_first(it);
    assert_false(st_it_valid(it));
    st_it_seek_last(it);
    assert_false(st_it_valid(it));
    st_it_seek(it, st_slice_make("aaaaaaaa", 8));
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_OK);
    st_it_destroy(it);

    /* One child is handed back as it is. */
    static item one[1];
    st_encode_ikey(one[0].ikey, st_slice_str("k"), 1, ST_KIND_PUT);
    one[0].klen = 1 + ST_TAG_BYTES;
    st_iterator *only = &vec_create(one, 1)->base;
    it = st_merging_iter_create(&only, 1);
    assert_ptr_equal(it, only);
    st_it_destroy(it);

    /* A missing child: the others are destroyed and the result is NULL. */
    int destroyed = 0;
    st_iterator *kids[3];
    for (int i = 0; i < 3; i++) {
        vec_iter *v = i == 1 ? NULL : vec_create(one, 1);
        if (v)
            v->destroyed = &destroyed;
        kids[i] = v ? &v->base : NULL;
    }
    st_error(ST_NO_MEMORY, "child 1: could not be created");
    assert_null(st_merging_iter_create(kids, 3));
    assert_int_equal(destroyed, 2);
    assert_string_equal(st_errmsg(), "child 1: could not be created"); /* the cause is kept */

    /* Destroying the merger destroys every child. */
    destroyed = 0;
    for (int i = 0; i < 3; i++) {
        vec_iter *v = vec_create(one, 1);
        v->destroyed = &destroyed;
        kids[i] = &v->base;
    }
    it = st_merging_iter_create(kids, 3);
    assert_non_null(it);
    st_it_destroy(it);
    assert_int_equal(destroyed, 3);
}

/* A child that fails outright makes the merger invalid and report the child's error. */
static void test_child_error(void **state)
{
    (void)state;
    st_rng rng;
    st_rng_seed(&rng, st_test_seed("merger_error"));
    world w;
    world_make(&w, &rng, 4, 200);
    vec_iter *kids[4];
    st_iterator *it = world_iter(&w, kids);
    st_it_seek_first(it);
    check_at(&w, it, 0);

    kids[2]->fail_always = true;
    kids[2]->fail_code = ST_IO_ERROR;
    st_clear_error();
    st_it_seek_first(it);
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_IO_ERROR);
    assert_non_null(strstr(st_errmsg(), "injected IO_ERROR"));
    st_it_seek_last(it);
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_IO_ERROR);

    /* Two failing children: the lower index is reported. */
    kids[3]->fail_always = true;
    kids[3]->fail_code = ST_CORRUPTION;
    kids[1]->fail_always = true;
    kids[1]->fail_code = ST_NOT_SUPPORTED;
    st_it_seek(it, item_key(&w.model[0]));
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_NOT_SUPPORTED);

    /* Once the children recover, a new seek starts afresh. */
    kids[1]->fail_always = kids[2]->fail_always = kids[3]->fail_always = false;
    st_it_seek_first(it);
    check_at(&w, it, 0);
    st_it_destroy(it);
    world_free(&w);
}

/*
 * A child that fails part way through, going forward and going backward (also right after a
 * change of direction): everything before the failure is right, and then the merger stops with
 * the error instead of silently skipping the child.
 */
static void test_child_error_midway(void **state)
{
    (void)state;
    st_rng rng;
    st_rng_seed(&rng, st_test_seed("merger_error_midway"));
    for (int round = 0; round < 50; round++) {
        world w;
        world_make(&w, &rng, 2 + (size_t)st_rng_uniform(&rng, 10), 300);
        vec_iter *kids[12];
        st_iterator *it = world_iter(&w, kids);
        size_t victim = (size_t)st_rng_uniform(&rng, w.nchild);
        if (kids[victim]->n < 3) {
            st_it_destroy(it);
            world_free(&w);
            continue;
        }
        size_t at = 1 + (size_t)st_rng_uniform(&rng, kids[victim]->n - 2);
        kids[victim]->fail_at = at;
        kids[victim]->fail_code = ST_CORRUPTION;
        /* The model position of the victim's entry `at`. */
        size_t stop = 0;
        while (!(w.model[stop].child == victim &&
                 st_slice_eq(item_key(&w.model[stop]), item_key(&kids[victim]->items[at]))))
            stop++;

        /* Forward from the start: fails when the victim moves onto `at`, which is when the entry
           before it in the victim is consumed; every entry yielded until then is right. */
        size_t i = 0;
        for (st_it_seek_first(it); st_it_valid(it); st_it_next(it))
            check_at(&w, it, i++);
        assert_int_equal(st_it_status(it), ST_CORRUPTION);
        assert_true(i <= stop);

        /* Backward from the end, likewise. */
        i = w.n;
        for (st_it_seek_last(it); st_it_valid(it); st_it_prev(it))
            check_at(&w, it, --i);
        assert_int_equal(st_it_status(it), ST_CORRUPTION);
        assert_true(i > stop);

        /* Seek just past the failing entry, then turn backward: the turn repositions the victim
           onto `at`, which fails. */
        if (stop + 1 < w.n) {
            st_it_seek(it, item_key(&w.model[stop + 1]));
            size_t pos = model_lower_bound(&w, item_key(&w.model[stop + 1]));
            if (st_it_valid(it)) {
                check_at(&w, it, pos);
                st_it_prev(it);
                assert_false(st_it_valid(it));
                assert_int_equal(st_it_status(it), ST_CORRUPTION);
            } else {
                assert_int_equal(st_it_status(it), ST_CORRUPTION);
            }
        }
        st_it_destroy(it);
        world_free(&w);
    }
}

/*
 * A child whose seek fails while the merger turns around: the failure must stop the merger, not
 * be papered over by repositioning the child some other way.
 */
static void test_error_during_turn(void **state)
{
    (void)state;
    static item a[2], v[3];
    const char *ka[2] = {"a", "c"}, *kv[3] = {"b", "d", "e"};
    for (int i = 0; i < 3; i++) {
        if (i < 2) {
            st_encode_ikey(a[i].ikey, st_slice_str(ka[i]), 1, ST_KIND_PUT);
            a[i].klen = 1 + ST_TAG_BYTES;
        }
        st_encode_ikey(v[i].ikey, st_slice_str(kv[i]), 1, ST_KIND_PUT);
        v[i].klen = 1 + ST_TAG_BYTES;
    }
    vec_iter *victim = vec_create(v, 3);
    victim->fail_at = 1; /* "d", but only when a seek lands there */
    victim->fail_at_seek_only = true;
    victim->fail_code = ST_CORRUPTION;
    st_iterator *kids[2] = {&vec_create(a, 2)->base, &victim->base};
    st_iterator *it = st_merging_iter_create(kids, 2);
    assert_non_null(it);
    st_it_seek_first(it);
    assert_int_equal(st_it_key(it).data[0], 'a');
    st_it_next(it);
    assert_int_equal(st_it_key(it).data[0], 'b');
    st_it_next(it); /* the victim steps onto "d" by next(): fine */
    assert_true(st_it_valid(it));
    assert_int_equal(st_it_key(it).data[0], 'c');
    /* Turning back re-seeks the victim to "c", landing on "d": it fails. */
    st_it_prev(it);
    assert_false(st_it_valid(it));
    assert_int_equal(st_it_status(it), ST_CORRUPTION);

    /* Going backward to "b", then turning forward: child 0 is re-sought to "b" and lands on
       "c". First with no failure, then with one there. */
    victim->fail_at = SIZE_MAX;
    vec_iter *first = (vec_iter *)kids[0];
    first->fail_at_seek_only = true;
    first->fail_code = ST_IO_ERROR;
    for (int round = 0; round < 2; round++) {
        first->fail_at = SIZE_MAX;
        st_it_seek_last(it);
        assert_int_equal(st_it_key(it).data[0], 'e');
        st_it_prev(it);
        assert_int_equal(st_it_key(it).data[0], 'd');
        st_it_prev(it);
        assert_int_equal(st_it_key(it).data[0], 'c');
        st_it_prev(it); /* child 0 steps back onto "a" */
        assert_int_equal(st_it_key(it).data[0], 'b');
        first->fail_at = round ? 1 : SIZE_MAX;
        st_it_next(it);
        if (round == 0) {
            assert_true(st_it_valid(it));
            assert_int_equal(st_it_key(it).data[0], 'c');
        } else {
            assert_false(st_it_valid(it));
            assert_int_equal(st_it_status(it), ST_IO_ERROR);
        }
    }
    st_it_destroy(it);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_walks),       cmocka_unit_test(test_equal_keys_order),
        cmocka_unit_test(test_small_cases),        cmocka_unit_test(test_child_error),
        cmocka_unit_test(test_child_error_midway), cmocka_unit_test(test_error_during_turn),
    };
    return cmocka_run_group_tests_name("merger", tests, NULL, NULL);
}
