/* arena.c - bump allocation in blocks carved from mapped chunks, freed together. */
#include "engine/arena.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Blocks are carved from chunks the arena maps itself (anonymous mmap) instead of coming one by
 * one from malloc: destroying the arena unmaps its chunks, so the memory of a flushed memtable
 * goes back to the kernel at once. From malloc it went back to the allocator, which keeps freed
 * pages resident for a while (jemalloc: 10 s by default) and, with a memtable freed every few
 * megabytes written, held tens of megabytes that nothing used. Only the pages a block touches
 * become resident, so the unused tail of the newest chunk costs address space, not memory.
 *
 * Each mapping starts with this header, so the mappings form a list that destroy walks. Its size
 * is a multiple of ST_ARENA_ALIGN, so what follows it is aligned.
 */
typedef union chunk {
    struct {
        union chunk *next;
        size_t len; /* bytes mapped, this header included */
    } h;
    uint64_t align_u64[2];
    void *align_ptr[2];
} chunk;

/* Bytes of one standard chunk; a block larger than a quarter of it gets a mapping of its own. */
#define CHUNK_BYTES ((size_t)1 << 20)

struct st_arena {
    char *ptr;         /* next free byte of the current block */
    size_t remaining;  /* free bytes left at ptr */
    size_t block_size; /* payload bytes of a standard block */
    chunk *chunks;     /* every mapping, newest first */
    char *chunk_ptr;   /* where the next block is carved from the newest standard chunk */
    size_t chunk_left; /* bytes left there */
    /* Written only by the allocating thread; read by anyone, hence atomic. Relaxed is enough: it
       is a statistic, ordered with nothing else. */
    _Atomic size_t usage;
};

st_status st_arena_create(size_t block_size, st_arena **out)
{
    *out = NULL;
    st_arena *a = calloc(1, sizeof(*a));
    if (!a)
        return st_error(ST_NO_MEMORY, "arena: out of memory");
    if (block_size == 0)
        block_size = ST_ARENA_BLOCK_SIZE;
    if (block_size < 64)
        block_size = 64;
    /* Blocks follow each other in a chunk: whole multiples of the alignment keep each aligned. */
    block_size = (block_size + ST_ARENA_ALIGN - 1) & ~(ST_ARENA_ALIGN - 1);
    a->block_size = block_size;
    atomic_init(&a->usage, 0);
    *out = a;
    return ST_OK;
}

void st_arena_destroy(st_arena *a)
{
    if (!a)
        return;
    chunk *c = a->chunks;
    while (c) {
        chunk *next = c->h.next;
        munmap(c, c->h.len);
        c = next;
    }
    free(a);
}

/* A fresh mapping with room for `payload` bytes after its header, linked into the list. */
static chunk *map_chunk(st_arena *a, size_t payload)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (payload > SIZE_MAX - sizeof(chunk) - page)
        return NULL;
    size_t len = (sizeof(chunk) + payload + page - 1) & ~(page - 1);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    chunk *c = p;
    c->h.next = a->chunks;
    c->h.len = len;
    a->chunks = c;
    return c;
}

/* A new block with `bytes` of payload; NULL if no memory can be mapped. */
static char *new_block(st_arena *a, size_t bytes)
{
    if (bytes > SIZE_MAX - ST_ARENA_ALIGN)
        return NULL;
    bytes = (bytes + ST_ARENA_ALIGN - 1) & ~(ST_ARENA_ALIGN - 1);
    char *p;
    if (bytes > CHUNK_BYTES / 4) {
        /* A mapping of its own; the standard chunk keeps its tail for later blocks. */
        chunk *c = map_chunk(a, bytes);
        if (!c)
            return NULL;
        p = (char *)(c + 1);
    } else {
        if (bytes > a->chunk_left) {
            chunk *c = map_chunk(a, CHUNK_BYTES - sizeof(chunk));
            if (!c)
                return NULL;
            a->chunk_ptr = (char *)(c + 1);
            a->chunk_left = c->h.len - sizeof(chunk);
        }
        p = a->chunk_ptr;
        a->chunk_ptr += bytes;
        a->chunk_left -= bytes;
    }
    size_t used = atomic_load_explicit(&a->usage, memory_order_relaxed);
    atomic_store_explicit(&a->usage, used + bytes, memory_order_relaxed);
    return p;
}

/* The current block cannot hold `bytes` (after alignment): get memory elsewhere. */
static void *alloc_fallback(st_arena *a, size_t bytes)
{
    if (bytes > a->block_size / 4) {
        /* A dedicated block: the current one keeps serving small requests, so a large request
           does not throw away what is left of it. */
        return new_block(a, bytes);
    }
    char *p = new_block(a, a->block_size);
    if (!p)
        return NULL;
    a->ptr = p + bytes;
    a->remaining = a->block_size - bytes;
    return p;
}

void *st_arena_alloc(st_arena *a, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (bytes <= a->remaining) {
        char *p = a->ptr;
        a->ptr += bytes;
        a->remaining -= bytes;
        return p;
    }
    return alloc_fallback(a, bytes);
}

void *st_arena_alloc_aligned(st_arena *a, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    size_t mis = (uintptr_t)a->ptr & (ST_ARENA_ALIGN - 1);
    size_t slop = mis ? ST_ARENA_ALIGN - mis : 0;
    if (bytes <= a->remaining && slop <= a->remaining - bytes) {
        char *p = a->ptr + slop;
        a->ptr = p + bytes;
        a->remaining -= slop + bytes;
        return p;
    }
    /* Fresh blocks start aligned: mappings are page-aligned, the header and every block are
       whole multiples of ST_ARENA_ALIGN. */
    void *p = alloc_fallback(a, bytes);
    assert(((uintptr_t)p & (ST_ARENA_ALIGN - 1)) == 0);
    return p;
}

size_t st_arena_usage(const st_arena *a)
{
    /* C11 atomic_load does not take a pointer to const; the load does not modify the arena. */
    return atomic_load_explicit((_Atomic size_t *)&((st_arena *)a)->usage, memory_order_relaxed);
}
