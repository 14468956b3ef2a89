/*
 * merger.h - one iterator over the union of several (LevelDB table/merger.h).
 *
 * The read path merges the memtable, the immutable memtables and the tables of every level into
 * one stream of internal keys; compaction merges its input tables the same way.
 */
#ifndef STRATA_ENGINE_MERGER_H
#define STRATA_ENGINE_MERGER_H

#include <stddef.h>

#include "engine/iterator.h"

/*
 * An iterator over the union of `children[0..n)` in internal-key order (st_ikey_cmp).
 *
 * Ownership: takes ownership of the children, which are destroyed with the merging iterator; the
 * array itself is borrowed for the call and copied. On failure every non-NULL child is destroyed
 * and NULL is returned: when memory runs out (ST_NO_MEMORY is recorded as this thread's message),
 * or when a child is NULL, as left by a child whose creation failed (the message that creation
 * recorded is kept). With n == 0 the result is an empty iterator; with n == 1 it is children[0]
 * itself. `children` may be NULL when n == 0.
 *
 * Order: children may hold equal keys only if they are the same entry; equal keys come out in
 * child-index order going forward (lower index first) and in the reverse going backward.
 * seek/next/prev and a change of direction at any point behave as over one sorted sequence: on a
 * change of direction every other child is repositioned relative to the current key.
 *
 * Errors: when a child fails (becomes invalid with a non-OK status) the merging iterator becomes
 * invalid; status() reports the error of the lowest-indexed failed child (which also sets this
 * thread's message, see iterator.h). Repositioning (seek*) starts afresh, so a child whose error
 * is gone no longer counts.
 *
 * Cost: a binary heap of the children, O(log n) per step; a change of direction costs a seek in
 * every child. key() and value() are those of the current child, borrowed until the next move.
 */
st_iterator *st_merging_iter_create(st_iterator **children, size_t n);

#endif
