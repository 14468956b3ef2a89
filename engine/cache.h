/*
 * cache.h - a sharded LRU cache of charged values: the block cache, or anything charge-based.
 *
 * An entry is keyed by (id, offset): id is a number from st_cache_new_id (one per open table, so
 * a reopened table never sees another's blocks) and offset is free for the user (a block's
 * offset in .dat). Each entry has a value pointer, a charge (bytes, or any unit) and a deleter.
 *
 * The key space is split over 16 shards by hash, each an LRU list under its own mutex, with a
 * sixteenth of the capacity (LevelDB's ShardedLRUCache). A handle pins its entry: a pinned entry
 * is never evicted, and its value stays valid until the handle is released even if the entry is
 * replaced or erased meanwhile. When usage exceeds capacity, unpinned entries go oldest first (at
 * insert and at release). A capacity of 0 caches nothing: insert still hands back a working
 * handle, and the value is deleted at its release.
 *
 * Thread safety: every function may be called from any thread at once, except st_cache_destroy.
 * Deleters run on the thread that drops the last reference, outside the shard's mutex, so a
 * deleter may call into the cache.
 */
#ifndef STRATA_ENGINE_CACHE_H
#define STRATA_ENGINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/status.h"

typedef struct st_cache st_cache;
typedef struct st_cache_handle st_cache_handle;

/* A cache of capacity_bytes over 16 shards. ST_NO_MEMORY if it cannot be allocated. */
st_status st_cache_create(size_t capacity_bytes, st_cache **out);

/*
 * The same with 2^shard_bits shards (0..8): one shard gives an exact LRU order, for tests and for
 * small caches where a sixteenth of the capacity would be too little. ST_INVALID_ARGUMENT past 8.
 */
st_status st_cache_create_sharded(size_t capacity_bytes, int shard_bits, st_cache **out);

/*
 * Free the cache and run the deleter of every entry. Every handle must have been released
 * (asserted). Accepts NULL.
 */
void st_cache_destroy(st_cache *c);

/* A number never returned before by this cache (starting at 1). */
uint64_t st_cache_new_id(st_cache *c);

/*
 * Insert value under (id, offset), replacing an existing entry under that key (whose deleter runs
 * once it is unpinned). The cache owns value from here on: deleter(value) runs exactly once, when
 * the entry has left the cache (evicted, replaced, erased or the cache destroyed) and no handle
 * pins it. Returns a pinned handle (release it with st_cache_release), or NULL only if memory runs
 * out, in which case value is NOT consumed and the deleter does not run.
 */
st_cache_handle *st_cache_insert(st_cache *c, uint64_t id, uint64_t offset, void *value,
                                 size_t charge, void (*deleter)(void *value));

/* A pinned handle to the entry under (id, offset), or NULL on a miss. Counts a hit or a miss. */
st_cache_handle *st_cache_lookup(st_cache *c, uint64_t id, uint64_t offset);

/* The value of a pinned entry; valid until the handle is released. */
void *st_cache_value(const st_cache_handle *h);

/* Unpin; h must not be used afterwards. */
void st_cache_release(st_cache *c, st_cache_handle *h);

/* Remove the entry under (id, offset) if present; its deleter runs once it is unpinned. */
void st_cache_erase(st_cache *c, uint64_t id, uint64_t offset);

/*
 * Lookup hits and misses since creation, and the charge of the entries the cache holds (pinned or
 * not; entries already erased but still pinned are not counted). Any pointer may be NULL.
 */
void st_cache_stats(st_cache *c, uint64_t *hits, uint64_t *misses, size_t *usage);

/* The capacity given at creation. */
size_t st_cache_capacity(const st_cache *c);

#endif
