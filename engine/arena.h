/*
 * arena.h - a bump allocator whose memory is freed all at once (LevelDB util/arena.h).
 *
 * Memory comes in blocks (4 KiB by default), carved from chunks of 1 MiB that the arena maps
 * itself (anonymous mmap); each allocation takes the next bytes of the current block. A request
 * that does not fit there and is larger than a quarter of the block size gets a block of its own,
 * so it does not abandon the rest of the current block; a smaller one starts a new current block.
 * Nothing is freed before st_arena_destroy, which unmaps every chunk: the memory goes straight back
 * to the kernel instead of lingering in the malloc allocator's free lists (and in the process's
 * RSS). The memtable and its skiplist live in one arena.
 *
 * Concurrency: ONE thread at a time allocates (the caller serialises); st_arena_usage may be
 * called from any thread at any time, concurrently with that allocating thread.
 */
#ifndef STRATA_ENGINE_ARENA_H
#define STRATA_ENGINE_ARENA_H

#include <stddef.h>

#include "engine/status.h"

typedef struct st_arena st_arena;

/* The block size used when st_arena_create is given 0. */
#define ST_ARENA_BLOCK_SIZE 4096

/* The alignment st_arena_alloc_aligned guarantees: a pointer's, and at least 8 (uint64_t). */
#define ST_ARENA_ALIGN (sizeof(void *) > 8 ? sizeof(void *) : 8)

/*
 * Create an empty arena that allocates blocks of `block_size` bytes (0 = ST_ARENA_BLOCK_SIZE;
 * values below 64 are raised to 64). No block is allocated until the first allocation.
 * ST_NO_MEMORY if the arena itself cannot be allocated. The arena is owned by the caller; free it
 * with st_arena_destroy.
 */
st_status st_arena_create(size_t block_size, st_arena **out);

/* Free every block and the arena. Every pointer the arena handed out becomes invalid. Accepts
   NULL. */
void st_arena_destroy(st_arena *a);

/*
 * `bytes` bytes with no alignment guarantee (bytes may be 0: a distinct, usable 1-byte region is
 * returned). NULL when memory runs out (the arena stays usable). The memory belongs to the arena
 * and lives until st_arena_destroy. Allocating thread only.
 */
void *st_arena_alloc(st_arena *a, size_t bytes);

/* Like st_arena_alloc, but the result is aligned to ST_ARENA_ALIGN. */
void *st_arena_alloc_aligned(st_arena *a, size_t bytes);

/*
 * Bytes of the blocks handed out so far (block sizes rounded up to ST_ARENA_ALIGN), which is
 * at least the sum of all allocations. Never decreases. Safe from any thread (an atomic load).
 */
size_t st_arena_usage(const st_arena *a);

#endif
