/*
 * memtable.h - the in-memory table of recent writes: a skiplist of entries in an arena.
 *
 * Each entry is one arena allocation, laid out as
 *
 *     varint32 internal-key length | user key | tag (fixed64, dbformat.h) | varint32 value length
 *     | value
 *
 * and entries are ordered as their internal keys (st_ikey_cmp): user key ascending, then sequence
 * descending. Nothing is removed or changed; a memtable is dropped whole once flushed.
 *
 * Concurrency: ONE writer at a time (st_memtable_add; the caller serialises writers). Readers
 * (st_memtable_get, iterators, bytes, entries) need no lock and run concurrently with the writer
 * and with each other (skiplist.h). The reference count may be changed from any thread.
 *
 * Lifetime: a memtable is reference counted. The creator holds one reference; every iterator holds
 * one more. Memory (the arena, and with it every key and value handed out) is freed when the last
 * reference goes.
 */
#ifndef STRATA_ENGINE_MEMTABLE_H
#define STRATA_ENGINE_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/dbformat.h"
#include "engine/iterator.h"
#include "engine/slice.h"
#include "engine/status.h"

typedef struct st_memtable st_memtable;

/* An empty memtable with one reference, owned by the caller (drop it with st_memtable_unref).
   ST_NO_MEMORY if allocation fails. */
st_status st_memtable_create(st_memtable **out);

/* Take one more reference. Any thread. */
void st_memtable_ref(st_memtable *m);

/* Drop one reference; at zero the memtable and its arena are freed. Any thread. Accepts NULL. */
void st_memtable_unref(st_memtable *m);

/*
 * Add the entry (key, seq, kind) -> value. Writer only (one at a time; the caller serialises).
 * `key` and `value` are borrowed for the call and copied into the arena; either may be empty. The
 * value is stored as given, also for a tombstone (normally empty then). Entries with the same key
 * should have distinct sequences; if the same (key, seq, kind) is added twice, the later one
 * shadows the earlier for get, and the iterator shows both, later first.
 * Returns ST_OK; ST_NO_MEMORY if the arena cannot grow (nothing was added);
 * ST_INVALID_ARGUMENT if seq > ST_MAX_SEQ, kind is unknown, or a length exceeds 32 bits.
 */
st_status st_memtable_add(st_memtable *m, uint64_t seq, st_kind kind, st_slice key, st_slice value);

/*
 * The newest entry for `key` with sequence <= seq (seq above ST_MAX_SEQ reads as ST_MAX_SEQ).
 * ST_OK with *kind (a tombstone is ST_KIND_DELETE), *value (borrowed: valid while the caller holds
 * a reference to the memtable) and, if found_seq is not NULL, *found_seq. ST_NOT_FOUND if there is
 * no such entry; then no error message is recorded (a miss is the common case, not an error) and
 * the outputs are untouched. Any thread, no lock.
 */
st_status st_memtable_get(st_memtable *m, st_slice key, uint64_t seq, st_kind *kind,
                          st_slice *value, uint64_t *found_seq);

/* Bytes of memory the memtable uses (its arena's usage, st_arena_usage). Any thread. */
size_t st_memtable_bytes(const st_memtable *m);

/* Number of entries added so far. Any thread. */
uint64_t st_memtable_entries(const st_memtable *m);

/*
 * An iterator over the entries: key() is the internal key (user key + tag), value() the value,
 * both borrowed from the arena (valid at least as long as the iterator). seek() takes an internal
 * key. The iterator holds a reference to the memtable, released when it is destroyed, so it may
 * outlive the caller's own reference. Safe while a writer adds entries: it sees every entry added
 * before it was positioned and possibly later ones. status() is always ST_OK. Owned by the caller
 * (st_it_destroy). NULL only when out of memory.
 */
st_iterator *st_memtable_iter(st_memtable *m);

#endif
