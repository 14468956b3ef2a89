/*
 * table_cache.h - a bounded set of open tables, shared by every reader of one sst directory.
 *
 * Tables are opened on a miss (st_table_open) and kept, up to `capacity` of them, in LRU order.
 * The cache holds one reference on each table it keeps and hands out others: a table evicted (by
 * capacity or st_table_cache_evict) stays open until its last user unrefs it, so a reader never
 * loses a table it is using.
 *
 * Thread safety: every function except destroy may be called from any thread at once. One mutex
 * guards the map and the LRU list; tables are opened and closed outside it, so a slow open never
 * blocks hits on other tables.
 */
#ifndef STRATA_ENGINE_TABLE_CACHE_H
#define STRATA_ENGINE_TABLE_CACHE_H

#include <stdint.h>

#include "engine/status.h"
#include "engine/table.h"

typedef struct st_table_cache st_table_cache;

/*
 * A cache of at most `capacity` (>= 1, else ST_INVALID_ARGUMENT) open tables of sst_dir. The
 * options are copied; the env and block cache they point to are borrowed for the cache's life.
 * sst_dir is copied.
 */
st_status st_table_cache_create(const st_table_options *o, const char *sst_dir, int capacity,
                                st_table_cache **out);

/* Drop the cache's references (tables still referenced elsewhere stay open). Accepts NULL. */
void st_table_cache_destroy(st_table_cache *tc);

/*
 * A referenced table (the caller st_table_unref's it), opened on a miss with expect_dat_bytes =
 * dat_bytes (0: unchecked). A cached table whose .dat size differs from a non-zero dat_bytes is
 * ST_CORRUPTION. Open errors are returned as st_table_open gives them and are not remembered.
 * Thread-safe: concurrent misses for one number may open it twice; one copy is kept, the other is
 * closed once its caller is done with it.
 */
st_status st_table_cache_get(st_table_cache *tc, uint64_t number, uint64_t dat_bytes,
                             st_table **out);

/* Forget table `number` (for instance once its files are deleted). No-op if absent. */
void st_table_cache_evict(st_table_cache *tc, uint64_t number);

/* The number of tables the cache holds. */
uint32_t st_table_cache_size(st_table_cache *tc);

#endif
