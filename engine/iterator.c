/* iterator.c - the empty (or failed) iterator. */
#include "engine/iterator.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct error_iter {
    st_iterator base;
    st_status status;
    char msg[256];
} error_iter;

static bool ei_valid(const st_iterator *it)
{
    (void)it;
    return false;
}

static void ei_move(st_iterator *it)
{
    (void)it;
}

static void ei_seek(st_iterator *it, st_slice target)
{
    (void)it;
    (void)target;
}

static st_slice ei_slice(const st_iterator *it)
{
    (void)it;
    return st_slice_make(NULL, 0);
}

static st_status ei_status(const st_iterator *it)
{
    const error_iter *e = (const error_iter *)it;
    if (e->status)
        st_error(e->status, "%s", e->msg);
    return e->status;
}

static void ei_destroy(st_iterator *it)
{
    free(it);
}

static const st_iterator_ops error_iter_ops = {
    .valid = ei_valid,
    .seek_first = ei_move,
    .seek_last = ei_move,
    .seek = ei_seek,
    .next = ei_move,
    .prev = ei_move,
    .key = ei_slice,
    .value = ei_slice,
    .status = ei_status,
    .destroy = ei_destroy,
};

st_iterator *st_error_iterator(st_status s)
{
    error_iter *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->base.ops = &error_iter_ops;
    e->status = s;
    if (s)
        snprintf(e->msg, sizeof(e->msg), "%s", st_errmsg());
    return &e->base;
}
