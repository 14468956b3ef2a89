/*
 * test_iter_race.c - reverse iteration while the live memtable takes inserts, made deterministic.
 *
 * The live memtable is the only child of a merging iterator that can change under it: a writer
 * inserts while a reader's iterator moves. When the merging iterator turns from forward to
 * reverse, it seeks each child to the current key k and steps it back one entry. An insert that
 * lands between k and the memtable's seek position before that step leaves the memtable on the
 * new entry, after k, so the merged order breaks (in CI: st_iter_seek_prev returned a key above
 * its target during tests/test_stress.c).
 *
 * Threads make that window rare; here a wrapper around the memtable's iterator does the insert
 * itself, at the exact moment: just before the first prev that follows a seek.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db_impl.h"
#include "engine/dbformat.h"
#include "engine/memtable.h"
#include "engine/merger.h"
#include "tests/support/testutil.h"

/* ---- a memtable iterator that lets a "writer" in between a seek and the next prev ---- */

typedef struct racing_iter {
    st_iterator base;
    st_iterator *inner; /* owned: an iterator of mem */
    st_memtable *mem;   /* borrowed; the test owns it */
    const char *key;    /* what the writer puts, once */
    uint64_t seq;
    bool armed;  /* a seek happened since the insert could be done */
    int inserts; /* how many inserts were done */
} racing_iter;

static void race(racing_iter *r)
{
    if (r->armed && r->inserts == 0) {
        assert_int_equal(
            st_memtable_add(r->mem, r->seq, ST_KIND_PUT, st_slice_str(r->key), st_slice_str("new")),
            ST_OK);
        r->inserts++;
    }
    r->armed = false;
}

static bool ri_valid(const st_iterator *it)
{
    return st_it_valid(((const racing_iter *)it)->inner);
}

static void ri_seek_first(st_iterator *it)
{
    racing_iter *r = (racing_iter *)it;
    r->armed = false;
    st_it_seek_first(r->inner);
}

static void ri_seek_last(st_iterator *it)
{
    racing_iter *r = (racing_iter *)it;
    r->armed = false;
    st_it_seek_last(r->inner);
}

static void ri_seek(st_iterator *it, st_slice target)
{
    racing_iter *r = (racing_iter *)it;
    st_it_seek(r->inner, target);
    r->armed = true;
}

static void ri_next(st_iterator *it)
{
    racing_iter *r = (racing_iter *)it;
    r->armed = false;
    st_it_next(r->inner);
}

static void ri_prev(st_iterator *it)
{
    racing_iter *r = (racing_iter *)it;
    race(r);
    st_it_prev(r->inner);
}

static st_slice ri_key(const st_iterator *it)
{
    return st_it_key(((const racing_iter *)it)->inner);
}

static st_slice ri_value(const st_iterator *it)
{
    return st_it_value(((const racing_iter *)it)->inner);
}

static st_status ri_status(const st_iterator *it)
{
    return st_it_status(((const racing_iter *)it)->inner);
}

static void ri_destroy(st_iterator *it)
{
    racing_iter *r = (racing_iter *)it;
    st_it_destroy(r->inner);
    free(r);
}

static const st_iterator_ops racing_ops = {
    .valid = ri_valid,
    .seek_first = ri_seek_first,
    .seek_last = ri_seek_last,
    .seek = ri_seek,
    .next = ri_next,
    .prev = ri_prev,
    .key = ri_key,
    .value = ri_value,
    .status = ri_status,
    .destroy = ri_destroy,
};

static racing_iter *racing_create(st_memtable *mem, const char *key, uint64_t seq)
{
    racing_iter *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->base.ops = &racing_ops;
    r->inner = st_memtable_iter(mem);
    assert_non_null(r->inner);
    r->mem = mem;
    r->key = key;
    r->seq = seq;
    return r;
}

/* ---- fixtures ---- */

static void put(st_memtable *m, uint64_t seq, const char *key, const char *value)
{
    assert_int_equal(st_memtable_add(m, seq, ST_KIND_PUT, st_slice_str(key), st_slice_str(value)),
                     ST_OK);
}

/*
 * The live memtable (child 0, written to during the scan) holds "k60"; an older one (child 1,
 * like an immutable memtable or a table) holds "k40" and "k50". The writer puts "k55", which
 * sorts between the key the merger turns at ("k50") and where the live memtable stands ("k60").
 */
typedef struct fixture {
    st_memtable *live, *old;
    racing_iter *racer;
    st_iterator *merged;
} fixture;

static void fixture_init(fixture *f, const char *racing_key, uint64_t racing_seq)
{
    assert_int_equal(st_memtable_create(&f->live), ST_OK);
    assert_int_equal(st_memtable_create(&f->old), ST_OK);
    put(f->old, 1, "k40", "v40");
    put(f->old, 2, "k50", "v50");
    put(f->live, 3, "k60", "v60");
    f->racer = racing_create(f->live, racing_key, racing_seq);
    st_iterator *children[2] = {&f->racer->base, st_memtable_iter(f->old)};
    assert_non_null(children[1]);
    f->merged = st_merging_iter_create(children, 2);
    assert_non_null(f->merged);
}

/* f->merged is NULL once a user iterator has taken it. */
static void fixture_free(fixture *f)
{
    st_it_destroy(f->merged);
    st_memtable_unref(f->live);
    st_memtable_unref(f->old);
}

static void assert_ikey(st_slice ikey, const char *user, uint64_t seq)
{
    assert_true(st_ikey_valid(ikey));
    st_slice u = st_ikey_user(ikey);
    if (!st_slice_eq(u, st_slice_str(user)))
        fail_msg("at \"%.*s\"@%llu, expected \"%s\"@%llu", (int)u.len, (const char *)u.data,
                 (unsigned long long)st_ikey_seq(ikey), user, (unsigned long long)seq);
    assert_int_equal(st_ikey_seq(ikey), seq);
}

/* ---- the merging iterator ---- */

/* seek then prev (a turn to reverse) while "k55" is inserted: must land before "k50", on "k40". */
static void test_merger_turn_reverse_insert_after_key(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, "k55", 10);
    st_lookup_key lk;
    assert_true(st_lookup_key_init(&lk, st_slice_str("k45"), 0));
    st_it_seek(f.merged, st_lookup_ikey(&lk));
    st_lookup_key_free(&lk);
    assert_true(st_it_valid(f.merged));
    assert_ikey(st_it_key(f.merged), "k50", 2);

    st_it_prev(f.merged);
    assert_int_equal(f.racer->inserts, 1); /* the race did happen, inside the turn */
    assert_true(st_it_valid(f.merged));
    assert_ikey(st_it_key(f.merged), "k40", 1);
    st_it_prev(f.merged);
    assert_false(st_it_valid(f.merged));
    assert_int_equal(st_it_status(f.merged), ST_OK);

    /* The entry is there for whoever seeks again. */
    st_it_seek_last(f.merged);
    assert_ikey(st_it_key(f.merged), "k60", 3);
    st_it_prev(f.merged);
    assert_ikey(st_it_key(f.merged), "k55", 10);
    st_it_prev(f.merged);
    assert_ikey(st_it_key(f.merged), "k50", 2);
    fixture_free(&f);
}

/* The same turn from a forward walk (next, then prev) must come back to where it was. */
static void test_merger_next_then_prev_insert_after_key(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, "k55", 10);
    st_it_seek_first(f.merged);
    assert_ikey(st_it_key(f.merged), "k40", 1);
    st_it_next(f.merged);
    assert_ikey(st_it_key(f.merged), "k50", 2);
    /* The turn seeks every child but the current one: the racer's insert comes after that. */
    st_it_prev(f.merged);
    assert_int_equal(f.racer->inserts, 1);
    assert_true(st_it_valid(f.merged));
    assert_ikey(st_it_key(f.merged), "k40", 1);
    st_it_next(f.merged);
    assert_ikey(st_it_key(f.merged), "k50", 2);
    fixture_free(&f);
}

/* A newer version of the key the merger turns at sorts before it: nothing to step over. */
static void test_merger_turn_reverse_insert_same_user_key(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, "k50", 10);
    st_lookup_key lk;
    assert_true(st_lookup_key_init(&lk, st_slice_str("k45"), 0));
    st_it_seek(f.merged, st_lookup_ikey(&lk));
    st_lookup_key_free(&lk);
    assert_ikey(st_it_key(f.merged), "k50", 2);
    st_it_prev(f.merged);
    assert_int_equal(f.racer->inserts, 1);
    /* (k50, 10) sorts before (k50, 2): the merged walk back meets it first. */
    assert_ikey(st_it_key(f.merged), "k50", 10);
    st_it_prev(f.merged);
    assert_ikey(st_it_key(f.merged), "k40", 1);
    fixture_free(&f);
}

/* ---- the user iterator over it ---- */

/* The user iterator at sequence `seq` over the fixture's merged iterator (which it takes). */
static st_iter *user_iter(fixture *f, uint64_t seq, const char *start, const char *end)
{
    st_iter *it;
    st_slice s = start ? st_slice_str(start) : st_slice_make(NULL, 0);
    st_slice e = end ? st_slice_str(end) : st_slice_make(NULL, 0);
    assert_int_equal(st_db_iter_wrap(NULL, f->merged, seq, NULL, s, e, &it), ST_OK);
    f->merged = NULL;
    return it;
}

static void assert_at(const st_iter *it, const char *key, const char *value)
{
    assert_true(st_iter_valid(it));
    st_slice k = st_iter_key(it), v = st_iter_value(it);
    if (!st_slice_eq(k, st_slice_str(key)))
        fail_msg("at \"%.*s\", expected \"%s\"", (int)k.len, (const char *)k.data, key);
    assert_true(st_slice_eq(v, st_slice_str(value)));
}

/*
 * The failure CI saw: st_iter_seek_prev(target) through a snapshot older than the insert
 * returned the first key above the target ("k50" here) instead of the last one at or below it.
 */
static void test_seek_prev_insert_during_turn(void **state)
{
    (void)state;
    const char *ends[] = {NULL, "k70", "k50"};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        fixture f;
        fixture_init(&f, "k55", 10);
        st_iter *it = user_iter(&f, 3, NULL, ends[i]);
        st_iter_seek_prev(it, st_slice_str("k45"));
        assert_int_equal(f.racer->inserts, 1);
        assert_at(it, "k40", "v40");
        st_iter_prev(it);
        assert_false(st_iter_valid(it));
        assert_int_equal(st_iter_status(it), ST_OK);
        st_iter_destroy(it);
        fixture_free(&f);
    }
}

/* From a forward position, prev must reach the key before, and next come back. */
static void test_prev_after_seek_insert_during_turn(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, "k55", 10);
    st_iter *it = user_iter(&f, 3, NULL, NULL);
    st_iter_seek(it, st_slice_str("k45"));
    assert_at(it, "k50", "v50");
    st_iter_prev(it);
    assert_int_equal(f.racer->inserts, 1);
    assert_at(it, "k40", "v40");
    st_iter_next(it);
    assert_at(it, "k50", "v50");
    st_iter_next(it);
    assert_at(it, "k60", "v60"); /* "k55" is newer than the iterator's sequence */
    st_iter_next(it);
    assert_false(st_iter_valid(it));
    st_iter_destroy(it);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merger_turn_reverse_insert_after_key),
        cmocka_unit_test(test_merger_next_then_prev_insert_after_key),
        cmocka_unit_test(test_merger_turn_reverse_insert_same_user_key),
        cmocka_unit_test(test_seek_prev_insert_during_turn),
        cmocka_unit_test(test_prev_after_seek_insert_during_turn),
    };
    return cmocka_run_group_tests_name("iter_race", tests, NULL, NULL);
}
