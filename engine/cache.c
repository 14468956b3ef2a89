/* cache.c - sharded LRU cache (LevelDB's LRUCache design, in C11). */
#include "engine/cache.h"

#include <assert.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/coding.h"

#define DEFAULT_SHARD_BITS 4
#define MAX_SHARD_BITS     8
#define INITIAL_BUCKETS    16

/*
 * An entry is its own handle. refs counts the handles out plus one for the cache while the
 * entry is in the cache; it lives on exactly one of its shard's lists while in the cache: `lru`
 * when refs == 1 (only the cache holds it, so it may be evicted) and `in_use` otherwise.
 */
struct st_cache_handle {
    struct st_cache_handle *hnext; /* hash chain; after removal, the to-delete list */
    struct st_cache_handle *next, *prev;
    uint64_t id, offset, hash;
    void *value;
    size_t charge;
    void (*deleter)(void *value);
    uint32_t refs;
    bool in_cache;
};

typedef st_cache_handle entry;

typedef struct shard {
    /* Own cache line per shard: the mutexes are hot and would otherwise share lines. */
    alignas(64) pthread_mutex_t mu;
    size_t capacity;
    size_t usage;    /* guarded by mu: charge of the entries in the cache */
    entry lru;       /* guarded by mu: list head; lru.next is the oldest unpinned entry */
    entry in_use;    /* guarded by mu: list head of pinned entries in the cache */
    entry **buckets; /* guarded by mu: power-of-two hash table */
    size_t nbuckets, count;
    uint64_t hits, misses; /* guarded by mu */
} shard;

struct st_cache {
    size_t capacity;
    int shard_bits;
    atomic_uint_least64_t next_id;
    shard *shards;
};

static uint64_t hash_key(uint64_t id, uint64_t offset)
{
    uint8_t k[16];
    st_put_fixed64(k, id);
    st_put_fixed64(k + 8, offset);
    return XXH3_64bits(k, sizeof(k));
}

static shard *shard_of(st_cache *c, uint64_t hash)
{
    /* Top bits pick the shard, low bits the bucket: the two choices stay independent. */
    return &c->shards[c->shard_bits ? hash >> (64 - c->shard_bits) : 0];
}

static void list_init(entry *head)
{
    head->next = head->prev = head;
}

static void list_remove(entry *e)
{
    e->next->prev = e->prev;
    e->prev->next = e->next;
}

/* Append at the newest end. */
static void list_append(entry *head, entry *e)
{
    e->next = head;
    e->prev = head->prev;
    e->prev->next = e;
    e->next->prev = e;
}

static entry **table_find(shard *s, uint64_t id, uint64_t offset, uint64_t hash)
{
    entry **pp = &s->buckets[hash & (s->nbuckets - 1)];
    while (*pp && ((*pp)->hash != hash || (*pp)->id != id || (*pp)->offset != offset))
        pp = &(*pp)->hnext;
    return pp;
}

static void table_grow(shard *s)
{
    size_t n = s->nbuckets * 2;
    entry **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->buckets[i];
        while (e) {
            entry *next = e->hnext;
            entry **b = &nb[e->hash & (n - 1)];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Put e in the table; return the entry it replaces (removed from the table), if any. */
static entry *table_insert(shard *s, entry *e)
{
    entry **pp = table_find(s, e->id, e->offset, e->hash);
    entry *old = *pp;
    e->hnext = old ? old->hnext : NULL;
    *pp = e;
    if (!old && ++s->count > s->nbuckets)
        table_grow(s);
    return old;
}

static entry *table_remove(shard *s, uint64_t id, uint64_t offset, uint64_t hash)
{
    entry **pp = table_find(s, id, offset, hash);
    entry *e = *pp;
    if (e) {
        *pp = e->hnext;
        s->count--;
    }
    return e;
}

static void ref(shard *s, entry *e)
{
    if (e->refs == 1 && e->in_cache) {
        list_remove(e);
        list_append(&s->in_use, e);
    }
    e->refs++;
}

/* Drop a reference; an entry that reaches 0 goes on *dead, for its deleter to run unlocked. */
static void unref(shard *s, entry *e, entry **dead)
{
    assert(e->refs > 0);
    e->refs--;
    if (e->refs == 0) {
        assert(!e->in_cache);
        e->hnext = *dead;
        *dead = e;
    } else if (e->in_cache && e->refs == 1) {
        list_remove(e);
        list_append(&s->lru, e);
    }
}

/* e has been removed from the table: take it out of the lists and drop the cache's reference. */
static void finish_erase(shard *s, entry *e, entry **dead)
{
    assert(e->in_cache);
    list_remove(e);
    e->in_cache = false;
    s->usage -= e->charge;
    unref(s, e, dead);
}

static void evict(shard *s, entry **dead)
{
    while (s->usage > s->capacity && s->lru.next != &s->lru) {
        entry *old = s->lru.next;
        assert(old->refs == 1);
        entry *removed = table_remove(s, old->id, old->offset, old->hash);
        (void)removed;
        assert(removed == old);
        finish_erase(s, old, dead);
    }
}

static void run_deleters(entry *dead)
{
    while (dead) {
        entry *next = dead->hnext;
        if (dead->deleter)
            dead->deleter(dead->value);
        free(dead);
        dead = next;
    }
}

st_status st_cache_create_sharded(size_t capacity_bytes, int shard_bits, st_cache **out)
{
    *out = NULL;
    if (shard_bits < 0 || shard_bits > MAX_SHARD_BITS)
        return st_error(ST_INVALID_ARGUMENT, "cache: %d shard bits (0..%d)", shard_bits,
                        MAX_SHARD_BITS);
    size_t n = (size_t)1 << shard_bits;
    st_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return st_error(ST_NO_MEMORY, "cache: out of memory");
    c->capacity = capacity_bytes;
    c->shard_bits = shard_bits;
    atomic_init(&c->next_id, 1);
    c->shards = aligned_alloc(alignof(shard), n * sizeof(shard));
    if (!c->shards) {
        free(c);
        return st_error(ST_NO_MEMORY, "cache: out of memory");
    }
    memset(c->shards, 0, n * sizeof(shard));
    size_t per_shard = capacity_bytes / n + (capacity_bytes % n != 0);
    size_t i;
    for (i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        s->capacity = per_shard;
        list_init(&s->lru);
        list_init(&s->in_use);
        s->nbuckets = INITIAL_BUCKETS;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (!s->buckets)
            goto fail;
        if (pthread_mutex_init(&s->mu, NULL) != 0) {
            free(s->buckets);
            goto fail;
        }
    }
    *out = c;
    return ST_OK;

fail:
    while (i-- > 0) {
        pthread_mutex_destroy(&c->shards[i].mu);
        free(c->shards[i].buckets);
    }
    free(c->shards);
    free(c);
    return st_error(ST_NO_MEMORY, "cache: out of memory");
}

st_status st_cache_create(size_t capacity_bytes, st_cache **out)
{
    return st_cache_create_sharded(capacity_bytes, DEFAULT_SHARD_BITS, out);
}

void st_cache_destroy(st_cache *c)
{
    if (!c)
        return;
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        assert(s->in_use.next == &s->in_use && "st_cache_destroy with handles still pinned");
        entry *dead = NULL;
        while (s->lru.next != &s->lru) {
            entry *e = s->lru.next;
            finish_erase(s, e, &dead);
        }
        run_deleters(dead);
        pthread_mutex_destroy(&s->mu);
        free(s->buckets);
    }
    free(c->shards);
    free(c);
}

uint64_t st_cache_new_id(st_cache *c)
{
    return atomic_fetch_add_explicit(&c->next_id, 1, memory_order_relaxed);
}

st_cache_handle *st_cache_insert(st_cache *c, uint64_t id, uint64_t offset, void *value,
                                 size_t charge, void (*deleter)(void *value))
{
    entry *e = malloc(sizeof(*e));
    if (!e)
        return NULL;
    e->id = id;
    e->offset = offset;
    e->hash = hash_key(id, offset);
    e->value = value;
    e->charge = charge;
    e->deleter = deleter;
    e->refs = 1; /* the caller's handle */
    e->in_cache = false;
    e->hnext = e->next = e->prev = NULL;

    shard *s = shard_of(c, e->hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->capacity > 0) {
        e->refs++; /* the cache's own reference */
        e->in_cache = true;
        list_append(&s->in_use, e);
        s->usage += charge;
        entry *old = table_insert(s, e);
        if (old)
            finish_erase(s, old, &dead);
        evict(s, &dead);
    }
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
    return e;
}

st_cache_handle *st_cache_lookup(st_cache *c, uint64_t id, uint64_t offset)
{
    uint64_t hash = hash_key(id, offset);
    shard *s = shard_of(c, hash);
    pthread_mutex_lock(&s->mu);
    entry *e = *table_find(s, id, offset, hash);
    if (e) {
        ref(s, e);
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

void *st_cache_value(const st_cache_handle *h)
{
    return h->value;
}

void st_cache_release(st_cache *c, st_cache_handle *h)
{
    shard *s = shard_of(c, h->hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    unref(s, h, &dead);
    /* An entry pinned while the shard was over capacity may go now that it is unpinned. */
    evict(s, &dead);
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
}

void st_cache_erase(st_cache *c, uint64_t id, uint64_t offset)
{
    uint64_t hash = hash_key(id, offset);
    shard *s = shard_of(c, hash);
    entry *dead = NULL;
    pthread_mutex_lock(&s->mu);
    entry *e = table_remove(s, id, offset, hash);
    if (e)
        finish_erase(s, e, &dead);
    pthread_mutex_unlock(&s->mu);
    run_deleters(dead);
}

void st_cache_stats(st_cache *c, uint64_t *hits, uint64_t *misses, size_t *usage)
{
    uint64_t h = 0, m = 0;
    size_t u = 0;
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        h += s->hits;
        m += s->misses;
        u += s->usage;
        pthread_mutex_unlock(&s->mu);
    }
    if (hits)
        *hits = h;
    if (misses)
        *misses = m;
    if (usage)
        *usage = u;
}

size_t st_cache_capacity(const st_cache *c)
{
    return c->capacity;
}
