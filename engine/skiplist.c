/* skiplist.c - LevelDB's skiplist with C11 atomics and keys stored inline after their links. */
#include "engine/skiplist.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * A node is addressed by its key: the key's bytes start at the node pointer, and the links lie
 * just below it, level 0 nearest (link i at ((slot *)node)[-1 - i]). One allocation holds both,
 * so following a link lands next to the key the comparator reads, and no key pointer is stored.
 * A node taller than another only costs more links below its key.
 */
typedef _Atomic(char *) slot;

struct st_skiplist {
    st_arena *arena; /* borrowed */
    st_skiplist_cmp cmp;
    void *ctx;
    char *head; /* ST_SKIPLIST_MAX_HEIGHT links, no key */
    /* Height of the tallest node. Readers load it relaxed: a reader that sees a new height before
       the links at that height sees NULL there (from head), which only ends that level early. */
    _Atomic int max_height;
    /* Writer only. */
    uint64_t rng;
    char *pending; /* the node st_skiplist_alloc handed out last, not yet inserted */
    int pending_height;
};

static inline slot *link_at(const char *node, int level)
{
    return (slot *)(uintptr_t)node - 1 - level;
}

/* Acquire: whatever the writer wrote into the node before publishing it is visible. */
static inline char *next_of(const char *node, int level)
{
    return atomic_load_explicit(link_at(node, level), memory_order_acquire);
}

static inline int height_now(const st_skiplist *sl)
{
    return atomic_load_explicit((_Atomic int *)(uintptr_t)&sl->max_height, memory_order_relaxed);
}

/* Heights 1..MAX with P(h > k) = 4^-k; one draw of 64 bits gives two bits per level. */
static int random_height(st_skiplist *sl)
{
    /* xorshift64*: the writer's private generator; quality matters little here. */
    uint64_t x = sl->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sl->rng = x;
    uint64_t r = (x * UINT64_C(0x2545F4914F6CDD1D)) >> 32;
    int h = 1;
    while (h < ST_SKIPLIST_MAX_HEIGHT && (r & 3) == 0) {
        h++;
        r >>= 2;
    }
    return h;
}

/*
 * The first node >= probe (NULL if none), and in prev[] (if given) the last node < probe at each
 * level. A node already found >= probe at a higher level is not compared again on the way down.
 */
static char *find_ge(const st_skiplist *sl, const void *probe, st_skiplist_probe_cmp cmp, void *ctx,
                     char **prev)
{
    char *x = sl->head;
    int level = height_now(sl) - 1;
    const char *known_ge = NULL;
    for (;;) {
        char *next = next_of(x, level);
        if (next && next != known_ge && cmp(ctx, next, probe) < 0) {
            x = next;
            continue;
        }
        if (prev)
            prev[level] = x;
        if (level == 0)
            return next;
        known_ge = next;
        level--;
    }
}

/* The last node < probe, or head if there is none. */
static char *find_lt(const st_skiplist *sl, const void *probe, st_skiplist_probe_cmp cmp, void *ctx)
{
    char *x = sl->head;
    int level = height_now(sl) - 1;
    const char *known_ge = NULL;
    for (;;) {
        char *next = next_of(x, level);
        if (next && next != known_ge && cmp(ctx, next, probe) < 0) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        known_ge = next;
        level--;
    }
}

/* The last node, or head if the list is empty. */
static char *find_last(const st_skiplist *sl)
{
    char *x = sl->head;
    int level = height_now(sl) - 1;
    for (;;) {
        char *next = next_of(x, level);
        if (next) {
            x = next;
            continue;
        }
        if (level == 0)
            return x;
        level--;
    }
}

st_status st_skiplist_create(st_arena *arena, st_skiplist_cmp cmp, void *ctx, st_skiplist **out)
{
    *out = NULL;
    st_skiplist *sl = calloc(1, sizeof(*sl));
    if (!sl)
        goto fail;
    sl->arena = arena;
    sl->cmp = cmp;
    sl->ctx = ctx;
    sl->rng = UINT64_C(0x9E3779B97F4A7C15);
    atomic_init(&sl->max_height, 1);
    char *base = st_arena_alloc_aligned(arena, ST_SKIPLIST_MAX_HEIGHT * sizeof(slot));
    if (!base)
        goto fail;
    sl->head = base + ST_SKIPLIST_MAX_HEIGHT * sizeof(slot);
    for (int i = 0; i < ST_SKIPLIST_MAX_HEIGHT; i++)
        atomic_init(link_at(sl->head, i), NULL);
    *out = sl;
    return ST_OK;
fail:
    free(sl);
    return st_error(ST_NO_MEMORY, "skiplist: out of memory");
}

void st_skiplist_destroy(st_skiplist *sl)
{
    free(sl);
}

void *st_skiplist_alloc(st_skiplist *sl, size_t key_bytes)
{
    int h = random_height(sl);
    size_t links = (size_t)h * sizeof(slot);
    if (key_bytes > SIZE_MAX - links)
        return NULL;
    char *base = st_arena_alloc_aligned(sl->arena, links + key_bytes);
    if (!base)
        return NULL;
    sl->pending = base + links;
    sl->pending_height = h;
    return sl->pending;
}

void st_skiplist_insert(st_skiplist *sl, void *key)
{
    st_skiplist_insert_probe(sl, key, key, sl->cmp, sl->ctx);
}

void st_skiplist_insert_probe(st_skiplist *sl, void *key, const void *probe,
                              st_skiplist_probe_cmp cmp, void *ctx)
{
    char *node = key;
    assert(node && node == sl->pending);
    char *prev[ST_SKIPLIST_MAX_HEIGHT];
    find_ge(sl, probe, cmp, ctx, prev);

    int h = sl->pending_height;
    int max = height_now(sl);
    if (h > max) {
        for (int i = max; i < h; i++)
            prev[i] = sl->head;
        atomic_store_explicit(&sl->max_height, h, memory_order_relaxed);
    }
    for (int i = 0; i < h; i++) {
        /* The node's own link needs no ordering: the store into the predecessor is the release
           that publishes it together with the key. Going up from level 0 means a node reachable
           at some level already has all its lower links set and is in the level-0 chain. */
        char *succ = atomic_load_explicit(link_at(prev[i], i), memory_order_relaxed);
        atomic_store_explicit(link_at(node, i), succ, memory_order_relaxed);
        atomic_store_explicit(link_at(prev[i], i), node, memory_order_release);
    }
    sl->pending = NULL;
}

bool st_skiplist_contains(const st_skiplist *sl, const void *key)
{
    char *x = find_ge(sl, key, sl->cmp, sl->ctx, NULL);
    return x && sl->cmp(sl->ctx, x, key) == 0;
}

void st_skiplist_iter_init(st_skiplist_iter *it, const st_skiplist *sl)
{
    it->list = sl;
    it->node = NULL;
}

bool st_skiplist_iter_valid(const st_skiplist_iter *it)
{
    return it->node != NULL;
}

const void *st_skiplist_iter_key(const st_skiplist_iter *it)
{
    assert(it->node);
    return it->node;
}

void st_skiplist_iter_next(st_skiplist_iter *it)
{
    assert(it->node);
    it->node = next_of(it->node, 0);
}

void st_skiplist_iter_prev(st_skiplist_iter *it)
{
    assert(it->node);
    const st_skiplist *sl = it->list;
    char *x = find_lt(sl, it->node, sl->cmp, sl->ctx);
    /* Keys equal to the current one sit between x and it: step over them to the node whose
       successor is the current node. Without equal keys the first step finds it. */
    for (;;) {
        char *n = next_of(x, 0);
        if (n == it->node || n == NULL)
            break;
        x = n;
    }
    it->node = x == sl->head ? NULL : x;
}

void st_skiplist_iter_seek(st_skiplist_iter *it, const void *target)
{
    it->node = find_ge(it->list, target, it->list->cmp, it->list->ctx, NULL);
}

void st_skiplist_iter_seek_probe(st_skiplist_iter *it, const void *probe, st_skiplist_probe_cmp cmp,
                                 void *ctx)
{
    it->node = find_ge(it->list, probe, cmp, ctx, NULL);
}

void st_skiplist_iter_seek_first(st_skiplist_iter *it)
{
    it->node = next_of(it->list->head, 0);
}

void st_skiplist_iter_seek_last(st_skiplist_iter *it)
{
    char *x = find_last(it->list);
    it->node = x == it->list->head ? NULL : x;
}
