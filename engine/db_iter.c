/*
 * db_iter.c - the user-facing iterator: internal entries at a snapshot become live user keys.
 *
 * Underneath is a merging iterator over internal keys, where each user key appears as several
 * versions, newest first. Moving forward, the iterator stands on the newest visible version of
 * the current key and skips the older ones (and keys whose newest visible version is a
 * tombstone). Moving backward it must see every version of a key before knowing which one is
 * newest, so it stands just before the key's versions and keeps a copy of the key and value
 * (LevelDB's DBIter does the same).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db_impl.h"

typedef enum { FORWARD, REVERSE } direction;

struct st_iter {
    st_db *db;
    st_iterator *it;   /* internal, owned */
    st_snapshot *snap; /* owned implicit snapshot, or NULL */
    uint64_t seq;
    st_buf start, end; /* bounds (user keys); empty = none */
    direction dir;
    bool valid;
    st_buf saved_key, saved_value; /* REVERSE: the current entry; FORWARD: scratch */
    st_status status;
    char msg[256];
    /* Read sampling (st_db_iter_sample_version): bytes left before the next sample. */
    st_version *version; /* referenced; NULL: no sampling */
    int64_t sample_in;
    uint64_t rng;
};

/* LevelDB's period: a sample every 1 MiB read on average, at random points. */
#define SAMPLE_PERIOD_BYTES (1 << 20)

static int64_t next_sample_gap(st_iter *d)
{
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return (int64_t)(d->rng % (2 * SAMPLE_PERIOD_BYTES));
}

void st_db_iter_sample_version(st_iter *d, st_version *v)
{
    /* Each iterator its own sequence: short scans then sample their fair share between them. */
    static atomic_uint_fast64_t seeds;
    uint64_t seed = atomic_fetch_add_explicit(&seeds, 1, memory_order_relaxed) + 1;
    st_version_ref(v);
    d->version = v;
    d->rng = seed * UINT64_C(0x9E3779B97F4A7C15) | 1;
    d->sample_in = next_sample_gap(d);
}

/* Count the bytes of the entry the iterator now stands on; sample when the gap is used up. */
static void account_read(st_iter *d)
{
    if (!d->version || !d->valid)
        return;
    st_slice k = st_iter_key(d);
    d->sample_in -= (int64_t)(k.len + st_iter_value(d).len);
    if (d->sample_in >= 0)
        return;
    d->sample_in += next_sample_gap(d);
    st_seek_hint hint;
    st_version_sample(d->version, k, &hint);
    st_db_note_seek_hint(d->db, d->version, &hint);
}

static bool has_end(const st_iter *d)
{
    return d->end.len > 0;
}

static st_slice buf_slice(const st_buf *b)
{
    return st_slice_make(b->data, b->len);
}

static bool save(st_buf *b, st_slice s)
{
    st_buf_clear(b);
    return st_buf_append(b, s.data, s.len);
}

static void fail(st_iter *d, st_status s)
{
    if (d->status == ST_OK) {
        d->status = s;
        snprintf(d->msg, sizeof(d->msg), "%s", st_errmsg());
    }
    d->valid = false;
}

/* After the internal iterator became invalid: an error or the end? */
static void check_internal(st_iter *d)
{
    st_status s = st_it_status(d->it);
    if (s)
        fail(d, s);
}

/* Parse the internal key under the cursor; false (and fail) if it is malformed. */
static bool parse(st_iter *d, st_slice *ukey, uint64_t *seq, st_kind *kind)
{
    st_slice ikey = st_it_key(d->it);
    if (!st_ikey_valid(ikey)) {
        fail(d, st_error(ST_CORRUPTION, "iterator met a malformed internal key"));
        return false;
    }
    *ukey = st_ikey_user(ikey);
    *seq = st_ikey_seq(ikey);
    *kind = st_ikey_kind(ikey);
    return true;
}

/*
 * Forward: from the cursor on, find the newest visible version of the next live key. With
 * `skipping`, versions of keys <= saved_key are hidden (they belong to keys already passed).
 */
static void find_next_user_entry(st_iter *d, bool skipping)
{
    d->dir = FORWARD;
    for (; st_it_valid(d->it); st_it_next(d->it)) {
        st_slice ukey;
        uint64_t seq;
        st_kind kind;
        if (!parse(d, &ukey, &seq, &kind))
            return;
        if (seq > d->seq)
            continue;
        if (skipping && st_slice_cmp(ukey, buf_slice(&d->saved_key)) <= 0)
            continue;
        if (has_end(d) && st_slice_cmp(ukey, buf_slice(&d->end)) >= 0)
            break;
        if (kind == ST_KIND_DELETE) {
            /* Hide every older version of this key. */
            if (!save(&d->saved_key, ukey)) {
                fail(d, st_error(ST_NO_MEMORY, "out of memory"));
                return;
            }
            skipping = true;
            continue;
        }
        d->valid = true;
        return;
    }
    d->valid = false;
    check_internal(d);
}

/*
 * Reverse: the cursor is on the last version of some key (or past everything). Walk back over
 * all versions of the previous live key, keeping the newest visible one in saved_*, and stop
 * just before them.
 */
static void find_prev_user_entry(st_iter *d)
{
    d->dir = REVERSE;
    st_kind value_kind = ST_KIND_DELETE;
    for (; st_it_valid(d->it); st_it_prev(d->it)) {
        st_slice ukey;
        uint64_t seq;
        st_kind kind;
        if (!parse(d, &ukey, &seq, &kind))
            return;
        if (seq > d->seq)
            continue;
        /* Beyond the range. A reverse walk starts below end and the merged order keeps it
           there (entries inserted since are newer than d->seq: skipped above), so this is only
           a guard of the bound, not a fix for keys out of order. */
        if (has_end(d) && st_slice_cmp(ukey, buf_slice(&d->end)) >= 0)
            continue;
        if (value_kind != ST_KIND_DELETE && st_slice_cmp(ukey, buf_slice(&d->saved_key)) < 0)
            break; /* saved_key's versions are all behind us */
        value_kind = kind;
        if (kind == ST_KIND_DELETE) {
            st_buf_clear(&d->saved_key);
            st_buf_clear(&d->saved_value);
        } else if (!save(&d->saved_key, ukey) || !save(&d->saved_value, st_it_value(d->it))) {
            fail(d, st_error(ST_NO_MEMORY, "out of memory"));
            return;
        }
    }
    if (!st_it_valid(d->it))
        check_internal(d);
    if (d->status)
        return;
    if (value_kind == ST_KIND_DELETE) {
        d->valid = false;
        return;
    }
    d->valid = !(d->start.len && st_slice_cmp(buf_slice(&d->saved_key), buf_slice(&d->start)) < 0);
}

/* Seek the internal iterator to the first entry of user key `k` visible at the snapshot. */
static void seek_internal(st_iter *d, st_slice k, uint64_t seq)
{
    st_lookup_key lk;
    if (!st_lookup_key_init(&lk, k, seq)) {
        fail(d, st_error(ST_NO_MEMORY, "out of memory"));
        return;
    }
    st_it_seek(d->it, st_lookup_ikey(&lk));
    st_lookup_key_free(&lk);
}

bool st_iter_valid(const st_iter *d)
{
    return d->valid;
}

void st_iter_seek(st_iter *d, st_slice target)
{
    if (d->status)
        return;
    if (d->start.len && st_slice_cmp(target, buf_slice(&d->start)) < 0)
        target = buf_slice(&d->start);
    st_buf_clear(&d->saved_key);
    if (target.len == 0)
        st_it_seek_first(d->it);
    else
        seek_internal(d, target, d->seq);
    if (d->status == ST_OK)
        find_next_user_entry(d, false);
    account_read(d);
}

void st_iter_first(st_iter *d)
{
    st_iter_seek(d, buf_slice(&d->start));
}

/* Position for a reverse scan of keys strictly below `bound` (empty: unbounded). */
static void seek_before(st_iter *d, st_slice bound, bool inclusive)
{
    if (d->status)
        return;
    if (bound.len == 0) {
        st_it_seek_last(d->it);
    } else {
        /* (bound, MAX_SEQ) is the first entry of bound; (bound, 0) sorts after all of its
           versions (sequences start at 1). */
        seek_internal(d, bound, inclusive ? 0 : ST_MAX_SEQ);
        if (d->status)
            return;
        if (st_it_valid(d->it))
            st_it_prev(d->it);
        else
            st_it_seek_last(d->it);
    }
    find_prev_user_entry(d);
    account_read(d);
}

void st_iter_last(st_iter *d)
{
    seek_before(d, buf_slice(&d->end), false);
}

void st_iter_seek_prev(st_iter *d, st_slice target)
{
    if (has_end(d) && st_slice_cmp(target, buf_slice(&d->end)) >= 0) {
        seek_before(d, buf_slice(&d->end), false);
        return;
    }
    if (target.len == 0) {
        d->valid = false;
        return;
    }
    seek_before(d, target, true);
}

void st_iter_next(st_iter *d)
{
    if (!d->valid)
        return;
    if (d->dir == REVERSE) {
        /* The cursor is before saved_key's versions: step onto them, then past them. */
        if (st_it_valid(d->it))
            st_it_next(d->it);
        else
            st_it_seek_first(d->it);
    } else {
        if (!save(&d->saved_key, st_ikey_user(st_it_key(d->it)))) {
            fail(d, st_error(ST_NO_MEMORY, "out of memory"));
            return;
        }
        st_it_next(d->it);
    }
    find_next_user_entry(d, true);
    account_read(d);
}

void st_iter_prev(st_iter *d)
{
    if (!d->valid)
        return;
    if (d->dir == FORWARD) {
        /* Step back off every version of the current key. */
        if (!save(&d->saved_key, st_ikey_user(st_it_key(d->it)))) {
            fail(d, st_error(ST_NO_MEMORY, "out of memory"));
            return;
        }
        for (;;) {
            st_it_prev(d->it);
            if (!st_it_valid(d->it)) {
                d->valid = false;
                check_internal(d);
                st_buf_clear(&d->saved_key);
                st_buf_clear(&d->saved_value);
                return;
            }
            if (st_slice_cmp(st_ikey_user(st_it_key(d->it)), buf_slice(&d->saved_key)) < 0)
                break;
        }
    }
    find_prev_user_entry(d);
    account_read(d);
}

st_slice st_iter_key(const st_iter *d)
{
    return d->dir == FORWARD ? st_ikey_user(st_it_key(d->it)) : buf_slice(&d->saved_key);
}

st_slice st_iter_value(const st_iter *d)
{
    return d->dir == FORWARD ? st_it_value(d->it) : buf_slice(&d->saved_value);
}

uint64_t st_iter_seq(const st_iter *d)
{
    return d->seq;
}

st_status st_iter_status(const st_iter *d)
{
    if (d->status)
        return st_error(d->status, "%s", d->msg);
    return ST_OK;
}

void st_iter_destroy(st_iter *d)
{
    if (!d)
        return;
    st_it_destroy(d->it);
    st_db_release_snapshot(d->db, d->snap);
    st_buf_free(&d->start);
    st_buf_free(&d->end);
    st_buf_free(&d->saved_key);
    st_buf_free(&d->saved_value);
    st_version_unref(d->version);
    free(d);
}

st_status st_db_iter_wrap(st_db *db, st_iterator *internal, uint64_t seq, st_snapshot *snap,
                          st_slice start, st_slice end, st_iter **out)
{
    st_iter *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    d->db = db;
    d->it = internal;
    d->snap = snap;
    d->seq = seq;
    st_buf_init(&d->start);
    st_buf_init(&d->end);
    st_buf_init(&d->saved_key);
    st_buf_init(&d->saved_value);
    if (!st_buf_append(&d->start, start.data, start.len) ||
        !st_buf_append(&d->end, end.data, end.len)) {
        st_iter_destroy(d);
        return st_error(ST_NO_MEMORY, "out of memory");
    }
    *out = d;
    return ST_OK;
nomem:
    st_it_destroy(internal);
    st_db_release_snapshot(db, snap);
    return st_error(ST_NO_MEMORY, "out of memory");
}
