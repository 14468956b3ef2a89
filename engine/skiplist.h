/*
 * skiplist.h - an ordered set of keys in an arena, one writer and lock-free readers.
 *
 * The memtable's index (LevelDB db/skiplist.h, in C11 atomics). Keys are opaque byte regions
 * compared by a comparator given at creation; the list never looks inside them. Each key lives in
 * the arena right after its node's links, in one allocation: the caller asks the list for room
 * (st_skiplist_alloc), writes the key there, then inserts it (st_skiplist_insert). Nothing is
 * ever removed; the memory goes when the arena is destroyed. Max height 12, branching factor 4.
 *
 * Concurrency:
 * - ONE writer at a time: st_skiplist_alloc and st_skiplist_insert must be serialised by the
 *   caller (they also allocate from the arena, whose single allocating thread they are).
 * - Any number of readers (st_skiplist_contains and the iterator) run concurrently with that
 *   writer and with each other without locks. A node's links are published with release stores
 *   and read with acquire loads, so a reader that reaches a node sees its key fully written.
 *   A reader sees every key whose insert happened before its read started (as ordered by the
 *   caller's own synchronisation: a mutex, or an atomic stored with release after the insert and
 *   loaded with acquire before the read), and possibly some inserted during it.
 * - A key must not be changed once inserted.
 *
 * Equal keys (comparator returns 0) may be inserted; a new key goes before the equal keys already
 * present.
 */
#ifndef STRATA_ENGINE_SKIPLIST_H
#define STRATA_ENGINE_SKIPLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/arena.h"
#include "engine/status.h"

#define ST_SKIPLIST_MAX_HEIGHT 12

typedef struct st_skiplist st_skiplist;

/* Orders two keys of the list: <0, 0, >0 like memcmp. `ctx` is the pointer given at creation. */
typedef int (*st_skiplist_cmp)(void *ctx, const void *a, const void *b);

/*
 * Orders a key of the list (`key`) against a probe in a representation of the caller's choosing
 * (for instance a key already decoded into parts), so a search need not build a key in the list's
 * format. It must agree with the list's comparator: the probe behaves like some key P, and the
 * result is what cmp(key, P) would be.
 */
typedef int (*st_skiplist_probe_cmp)(void *ctx, const void *key, const void *probe);

/*
 * Create an empty list whose nodes and keys are allocated from `arena` (borrowed: it must outlive
 * the list, and the list becomes its allocating thread's user). `cmp` and `ctx` are kept for the
 * life of the list. ST_NO_MEMORY if allocation fails. Free with st_skiplist_destroy.
 */
st_status st_skiplist_create(st_arena *arena, st_skiplist_cmp cmp, void *ctx, st_skiplist **out);

/* Free the list's own handle; its nodes and keys stay in the arena until the arena goes. No reader
   may use the list any more. Accepts NULL. */
void st_skiplist_destroy(st_skiplist *sl);

/*
 * Writer only. Room for a key of `key_bytes` bytes (0 allowed), aligned to ST_ARENA_ALIGN, in a
 * node not yet in the list. The caller fills it and passes it to st_skiplist_insert before the
 * next call to st_skiplist_alloc. NULL when the arena is out of memory. The memory lives as long
 * as the arena; a key allocated and never inserted is simply wasted.
 */
void *st_skiplist_alloc(st_skiplist *sl, size_t key_bytes);

/* Writer only. Insert `key`, the pointer returned by the latest st_skiplist_alloc, now filled.
   Readers may see it as soon as this starts; every reader sees it once it returns. */
void st_skiplist_insert(st_skiplist *sl, void *key);

/*
 * Writer only. st_skiplist_insert, with the position found by ordering the list's keys against
 * `probe` with `cmp` (see st_skiplist_probe_cmp) rather than against `key` itself: for a caller
 * that has the new key decoded already. The probe must behave exactly like `key`.
 */
void st_skiplist_insert_probe(st_skiplist *sl, void *key, const void *probe,
                              st_skiplist_probe_cmp cmp, void *ctx);

/* True if the list holds a key equal to `key` (which need not be in the list's memory). */
bool st_skiplist_contains(const st_skiplist *sl, const void *key);

/*
 * A position in the list. Plain data, so it can be embedded and needs no allocation; the fields
 * are private. Valid only while the list is; reads concurrently with the writer like any reader.
 * One thread uses an iterator at a time.
 */
typedef struct st_skiplist_iter {
    const st_skiplist *list;
    const void *node; /* the current key, NULL when not valid */
} st_skiplist_iter;

/* Start an iterator on `sl` (borrowed), not valid until positioned. */
void st_skiplist_iter_init(st_skiplist_iter *it, const st_skiplist *sl);
bool st_skiplist_iter_valid(const st_skiplist_iter *it);
/* The current key, in the arena (valid as long as the arena). Requires valid. */
const void *st_skiplist_iter_key(const st_skiplist_iter *it);
/* Requires valid. next moves to the following key; prev to the preceding one (a search, O(log n)),
   and both become not valid past the ends. */
void st_skiplist_iter_next(st_skiplist_iter *it);
void st_skiplist_iter_prev(st_skiplist_iter *it);
/* The first key >= target (target in the list's format, borrowed for the call). */
void st_skiplist_iter_seek(st_skiplist_iter *it, const void *target);
/* The first key >= probe, ordered by `cmp` (see st_skiplist_probe_cmp); `probe` and `ctx` are
   borrowed for the call. */
void st_skiplist_iter_seek_probe(st_skiplist_iter *it, const void *probe, st_skiplist_probe_cmp cmp,
                                 void *ctx);
void st_skiplist_iter_seek_first(st_skiplist_iter *it);
void st_skiplist_iter_seek_last(st_skiplist_iter *it);

#endif
