/* arena.c - bump allocation in malloc'd blocks, freed together. */
#include "engine/arena.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Each block starts with this header, so the blocks form a list that destroy walks: no separate
 * array to grow (and fail) while allocating. The union keeps the payload that follows the header
 * aligned for ST_ARENA_ALIGN.
 */
typedef union block {
    union block *next;
    uint64_t align_u64;
    void *align_ptr;
} block;

struct st_arena {
    char *ptr;         /* next free byte of the current block */
    size_t remaining;  /* free bytes left at ptr */
    size_t block_size; /* payload bytes of a standard block */
    block *blocks;     /* every block, newest first */
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
    a->block_size = block_size;
    atomic_init(&a->usage, 0);
    *out = a;
    return ST_OK;
}

void st_arena_destroy(st_arena *a)
{
    if (!a)
        return;
    block *b = a->blocks;
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

/* A new block with `bytes` of payload, linked into the list; NULL if malloc fails. */
static char *new_block(st_arena *a, size_t bytes)
{
    if (bytes > SIZE_MAX - sizeof(block))
        return NULL;
    block *b = malloc(sizeof(block) + bytes);
    if (!b)
        return NULL;
    b->next = a->blocks;
    a->blocks = b;
    size_t used = atomic_load_explicit(&a->usage, memory_order_relaxed);
    atomic_store_explicit(&a->usage, used + sizeof(block) + bytes, memory_order_relaxed);
    return (char *)(b + 1);
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
    /* Fresh blocks start aligned: malloc's alignment is at least the header's, and the header
       size is a multiple of ST_ARENA_ALIGN. */
    void *p = alloc_fallback(a, bytes);
    assert(((uintptr_t)p & (ST_ARENA_ALIGN - 1)) == 0);
    return p;
}

size_t st_arena_usage(const st_arena *a)
{
    /* C11 atomic_load does not take a pointer to const; the load does not modify the arena. */
    return atomic_load_explicit((_Atomic size_t *)&((st_arena *)a)->usage, memory_order_relaxed);
}
