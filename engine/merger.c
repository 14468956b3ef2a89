/* merger.c - a heap of child iterators ordered by (internal key, child index). */
#include "engine/merger.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/dbformat.h"

enum direction { FORWARD, REVERSE };

/*
 * The merged sequence is the children's entries sorted by (key, child index); every position
 * below is a position in that order, so equal keys in several children step in a fixed order in
 * both directions and a change of direction knows exactly where each child belongs.
 */
typedef struct merger {
    st_iterator base;
    size_t n;
    st_iterator **child; /* owned, n */
    st_slice *key;       /* key of each valid child, cached so the heap need not call key() */
    size_t *heap;        /* indices of the valid children; top = current */
    size_t heap_len;
    enum direction dir; /* FORWARD: min-heap, others after current; REVERSE: max-heap, before */
    bool failed;        /* a child became invalid with an error */
} merger;

/* True if child a belongs nearer the top of the heap than child b. */
static inline bool above(const merger *m, size_t a, size_t b)
{
    int r = st_ikey_cmp(m->key[a], m->key[b]);
    if (m->dir == FORWARD)
        return r < 0 || (r == 0 && a < b);
    return r > 0 || (r == 0 && a > b);
}

static void sift_down(merger *m, size_t pos)
{
    size_t *h = m->heap;
    size_t len = m->heap_len;
    size_t x = h[pos];
    for (;;) {
        size_t best = 2 * pos + 1;
        if (best >= len)
            break;
        if (best + 1 < len && above(m, h[best + 1], h[best]))
            best++;
        if (!above(m, h[best], x))
            break;
        h[pos] = h[best];
        pos = best;
    }
    h[pos] = x;
}

/* A child was just moved: cache its key, or note why it is no longer valid. */
static bool refresh(merger *m, size_t i)
{
    st_iterator *c = m->child[i];
    if (st_it_valid(c)) {
        m->key[i] = st_it_key(c);
        return true;
    }
    if (st_it_status(c) != ST_OK)
        m->failed = true;
    return false;
}

/* Every child has been repositioned for m->dir: rebuild the heap from scratch. */
static void rebuild(merger *m)
{
    m->failed = false;
    m->heap_len = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (refresh(m, i))
            m->heap[m->heap_len++] = i;
    }
    for (size_t i = m->heap_len / 2; i-- > 0;)
        sift_down(m, i);
}

/* The top child moved: put it back in its place, or drop it if it is used up. */
static void fix_top(merger *m)
{
    if (!refresh(m, m->heap[0]))
        m->heap[0] = m->heap[--m->heap_len];
    if (m->heap_len)
        sift_down(m, 0);
}

static bool mg_valid(const st_iterator *it)
{
    const merger *m = (const merger *)it;
    return !m->failed && m->heap_len > 0;
}

static void mg_seek_first(st_iterator *it)
{
    merger *m = (merger *)it;
    for (size_t i = 0; i < m->n; i++)
        st_it_seek_first(m->child[i]);
    m->dir = FORWARD;
    rebuild(m);
}

static void mg_seek_last(st_iterator *it)
{
    merger *m = (merger *)it;
    for (size_t i = 0; i < m->n; i++)
        st_it_seek_last(m->child[i]);
    m->dir = REVERSE;
    rebuild(m);
}

static void mg_seek(st_iterator *it, st_slice target)
{
    merger *m = (merger *)it;
    for (size_t i = 0; i < m->n; i++)
        st_it_seek(m->child[i], target);
    m->dir = FORWARD;
    rebuild(m);
}

/*
 * Going backward, every child but the current one stands before (key, cur); put each just after
 * it instead. A lower-indexed child's entry equal to key comes before (key, cur), so it is
 * skipped; a higher-indexed one's comes after, so it is kept.
 */
static void turn_forward(merger *m)
{
    size_t cur = m->heap[0];
    st_slice k = m->key[cur]; /* borrowed from child cur, which does not move here */
    for (size_t j = 0; j < m->n; j++) {
        if (j == cur)
            continue;
        st_iterator *c = m->child[j];
        st_it_seek(c, k);
        if (j < cur) {
            while (st_it_valid(c) && st_ikey_cmp(st_it_key(c), k) == 0)
                st_it_next(c);
        }
    }
    m->dir = FORWARD;
    rebuild(m);
    assert(m->failed || m->heap[0] == cur);
}

/*
 * Going forward, every child but the current one stands after (key, cur); put each just before
 * it: on its last entry < key, or <= key for a lower-indexed child (see turn_forward).
 *
 * A memtable child may take a newer insert between its seek and the step back. If the insert
 * sorts between (key, cur) and where the seek left the child, the step back lands on it, after
 * the current entry; or, when the seek ran past the end, the last entry may be such an insert.
 * Either way the child steps back further, over everything that sorts after (key, cur) in merged
 * order, so that the current entry stays the top of the heap and the merged order holds. (Left
 * there, the child would become the top, and the next prev would move it instead of the current
 * child: the merged iterator would then return key again, after entries that sort before it.)
 */
static void turn_reverse(merger *m)
{
    size_t cur = m->heap[0];
    st_slice k = m->key[cur];
    for (size_t j = 0; j < m->n; j++) {
        if (j == cur)
            continue;
        st_iterator *c = m->child[j];
        st_it_seek(c, k);
        if (j < cur) {
            while (st_it_valid(c) && st_ikey_cmp(st_it_key(c), k) == 0)
                st_it_next(c);
        }
        if (st_it_valid(c))
            st_it_prev(c);
        else if (st_it_status(c) == ST_OK)
            st_it_seek_last(c);
        /* else the child failed: it stays invalid, and rebuild() notices */
        while (st_it_valid(c)) {
            int r = st_ikey_cmp(st_it_key(c), k);
            if (r < 0 || (r == 0 && j < cur))
                break;
            st_it_prev(c);
        }
    }
    m->dir = REVERSE;
    rebuild(m);
    assert(m->failed || m->heap[0] == cur);
}

static void mg_next(st_iterator *it)
{
    merger *m = (merger *)it;
    assert(mg_valid(it));
    if (m->dir != FORWARD)
        turn_forward(m);
    if (m->failed)
        return;
    size_t top = m->heap[0];
    if (!st_it_next_key(m->child[top], &m->key[top])) {
        if (st_it_status(m->child[top]) != ST_OK)
            m->failed = true;
        m->heap[0] = m->heap[--m->heap_len];
    }
    if (m->heap_len)
        sift_down(m, 0);
}

static void mg_prev(st_iterator *it)
{
    merger *m = (merger *)it;
    assert(mg_valid(it));
    if (m->dir != REVERSE)
        turn_reverse(m);
    if (m->failed)
        return;
    st_it_prev(m->child[m->heap[0]]);
    fix_top(m);
}

static st_slice mg_key(const st_iterator *it)
{
    const merger *m = (const merger *)it;
    assert(mg_valid(it));
    return m->key[m->heap[0]];
}

static st_slice mg_value(const st_iterator *it)
{
    const merger *m = (const merger *)it;
    assert(mg_valid(it));
    return st_it_value(m->child[m->heap[0]]);
}

static st_status mg_status(const st_iterator *it)
{
    const merger *m = (const merger *)it;
    for (size_t i = 0; i < m->n; i++) {
        st_status s = st_it_status(m->child[i]);
        if (s != ST_OK)
            return s;
    }
    return ST_OK;
}

static void mg_destroy(st_iterator *it)
{
    merger *m = (merger *)it;
    for (size_t i = 0; i < m->n; i++)
        st_it_destroy(m->child[i]);
    free(m);
}

static const st_iterator_ops merger_ops = {
    .valid = mg_valid,
    .seek_first = mg_seek_first,
    .seek_last = mg_seek_last,
    .seek = mg_seek,
    .next = mg_next,
    .prev = mg_prev,
    .key = mg_key,
    .value = mg_value,
    .status = mg_status,
    .destroy = mg_destroy,
};

st_iterator *st_merging_iter_create(st_iterator **children, size_t n)
{
    merger *m;
    for (size_t i = 0; i < n; i++) {
        if (!children[i])
            goto fail; /* its creator has recorded why; keep that message */
    }
    if (n == 1)
        return children[0];

    /* One allocation: the struct, then the arrays, each aligned for its type (the padding is
       less than 64 bytes, hence the margin in the overflow check). */
    size_t per_child = sizeof(st_iterator *) + sizeof(st_slice) + sizeof(size_t);
    if (n > (SIZE_MAX - sizeof(merger) - 64) / per_child) {
        st_error(ST_NO_MEMORY, "merging iterator: %zu children is too many", n);
        goto fail;
    }
    size_t off_child = sizeof(merger);
    size_t off_key = off_child + n * sizeof(st_iterator *);
    off_key = (off_key + alignof(st_slice) - 1) & ~(alignof(st_slice) - 1);
    size_t off_heap = off_key + n * sizeof(st_slice);
    off_heap = (off_heap + alignof(size_t) - 1) & ~(alignof(size_t) - 1);
    m = malloc(off_heap + n * sizeof(size_t));
    if (!m) {
        st_error(ST_NO_MEMORY, "merging iterator: out of memory for %zu children", n);
        goto fail;
    }
    char *base = (char *)m;
    m->base.ops = &merger_ops;
    m->n = n;
    m->child = (st_iterator **)(base + off_child);
    m->key = (st_slice *)(base + off_key);
    m->heap = (size_t *)(base + off_heap);
    m->heap_len = 0;
    m->dir = FORWARD;
    m->failed = false;
    for (size_t i = 0; i < n; i++)
        m->child[i] = children[i];
    return &m->base;
fail:
    for (size_t i = 0; i < n; i++)
        st_it_destroy(children[i]);
    return NULL;
}
