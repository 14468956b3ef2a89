/*
 * iterator.h - the internal iterator interface.
 *
 * Memtables, blocks, tables, levels, the merging iterator and the database iterator all present
 * this one shape, so they compose (LevelDB's Iterator). Keys are internal keys (dbformat.h)
 * except at the database iterator, which presents user keys.
 *
 * key() and value() are borrowed until the iterator moves or is destroyed. An iterator that
 * meets an error becomes invalid and reports it through status(); an exhausted iterator is
 * invalid with status ST_OK. Because error messages are per thread (status.h), an iterator keeps
 * the message of its error and sets it again (st_error) each time status() reports the error.
 * One thread uses an iterator at a time.
 */
#ifndef STRATA_ENGINE_ITERATOR_H
#define STRATA_ENGINE_ITERATOR_H

#include <stdbool.h>

#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_iterator st_iterator;

typedef struct st_iterator_ops {
    bool (*valid)(const st_iterator *it);
    void (*seek_first)(st_iterator *it);
    void (*seek_last)(st_iterator *it);
    void (*seek)(st_iterator *it, st_slice target); /* first entry >= target */
    void (*next)(st_iterator *it);                  /* requires valid */
    void (*prev)(st_iterator *it);                  /* requires valid */
    st_slice (*key)(const st_iterator *it);
    st_slice (*value)(const st_iterator *it);
    st_status (*status)(const st_iterator *it);
    void (*destroy)(st_iterator *it);
    /* Optional (NULL: st_it_next_key composes it): next, then valid, then key, in one call. A
       scan steps through the merger, a level and a table for every entry; one indirect call per
       layer instead of three is a tenth of the cost of a step. */
    bool (*next_key)(st_iterator *it, st_slice *key); /* requires valid */
} st_iterator_ops;

/* Concrete iterators embed this as their first member. */
struct st_iterator {
    const st_iterator_ops *ops;
};

static inline bool st_it_valid(const st_iterator *it)
{
    return it->ops->valid(it);
}
static inline void st_it_seek_first(st_iterator *it)
{
    it->ops->seek_first(it);
}
static inline void st_it_seek_last(st_iterator *it)
{
    it->ops->seek_last(it);
}
static inline void st_it_seek(st_iterator *it, st_slice target)
{
    it->ops->seek(it, target);
}
static inline void st_it_next(st_iterator *it)
{
    it->ops->next(it);
}
static inline void st_it_prev(st_iterator *it)
{
    it->ops->prev(it);
}
static inline st_slice st_it_key(const st_iterator *it)
{
    return it->ops->key(it);
}
/* next(); then false if the iterator is no longer valid, else true with its key in *key. */
static inline bool st_it_next_key(st_iterator *it, st_slice *key)
{
    if (it->ops->next_key)
        return it->ops->next_key(it, key);
    it->ops->next(it);
    if (!it->ops->valid(it))
        return false;
    *key = it->ops->key(it);
    return true;
}
static inline st_slice st_it_value(const st_iterator *it)
{
    return it->ops->value(it);
}
static inline st_status st_it_status(const st_iterator *it)
{
    return it->ops->status(it);
}
/* Accepts NULL. */
static inline void st_it_destroy(st_iterator *it)
{
    if (it)
        it->ops->destroy(it);
}

/*
 * An iterator with no entries that reports `s` (ST_OK for a plain empty iterator). The message of
 * the calling thread (st_errmsg) at creation is kept and restored whenever status() is asked.
 * Returns NULL only if memory runs out.
 */
st_iterator *st_error_iterator(st_status s);

#endif
