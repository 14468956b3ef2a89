/* table_cache.c - open tables by number, LRU-bounded, one mutex. */
#include "engine/table_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct tc_entry {
    struct tc_entry *hnext;
    struct tc_entry *next, *prev; /* LRU list */
    uint64_t number;
    st_table *table; /* the cache's reference */
} tc_entry;

struct st_table_cache {
    st_table_options o;
    char *dir;
    uint32_t capacity;
    pthread_mutex_t mu;
    tc_entry lru;       /* guarded by mu: list head, lru.next the least recently used */
    tc_entry **buckets; /* guarded by mu */
    size_t nbuckets;    /* guarded by mu: a power of two */
    uint32_t count;     /* guarded by mu */
};

static size_t bucket_of(const st_table_cache *tc, uint64_t number)
{
    /* Fibonacci hashing: file numbers are sequential, so spread them before masking. */
    return (size_t)((number * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (tc->nbuckets - 1);
}

static tc_entry **find(st_table_cache *tc, uint64_t number)
{
    tc_entry **pp = &tc->buckets[bucket_of(tc, number)];
    while (*pp && (*pp)->number != number)
        pp = &(*pp)->hnext;
    return pp;
}

static void grow(st_table_cache *tc)
{
    size_t old_n = tc->nbuckets;
    tc_entry **old = tc->buckets;
    tc_entry **nb = calloc(old_n * 2, sizeof(*nb));
    if (!nb)
        return; /* longer chains, still correct */
    tc->buckets = nb;
    tc->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        tc_entry *e = old[i];
        while (e) {
            tc_entry *next = e->hnext;
            tc_entry **b = &nb[bucket_of(tc, e->number)];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    free(old);
}

static void lru_remove(tc_entry *e)
{
    e->next->prev = e->prev;
    e->prev->next = e->next;
}

static void lru_append(st_table_cache *tc, tc_entry *e)
{
    e->next = &tc->lru;
    e->prev = tc->lru.prev;
    e->prev->next = e;
    e->next->prev = e;
}

/* Take e out of the map and the list (mu held); the caller drops its table reference. */
static void detach(st_table_cache *tc, tc_entry *e)
{
    tc_entry **pp = find(tc, e->number);
    *pp = e->hnext;
    lru_remove(e);
    tc->count--;
}

st_status st_table_cache_create(const st_table_options *o, const char *sst_dir, int capacity,
                                st_table_cache **out)
{
    *out = NULL;
    if (capacity < 1)
        return st_error(ST_INVALID_ARGUMENT, "table cache: capacity %d < 1", capacity);
    st_table_cache *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return st_error(ST_NO_MEMORY, "table cache: out of memory");
    tc->o = *o;
    tc->capacity = (uint32_t)capacity;
    tc->lru.next = tc->lru.prev = &tc->lru;
    tc->nbuckets = 64;
    tc->dir = strdup(sst_dir);
    tc->buckets = calloc(tc->nbuckets, sizeof(*tc->buckets));
    if (!tc->dir || !tc->buckets)
        goto fail;
    if (pthread_mutex_init(&tc->mu, NULL) != 0)
        goto fail;
    *out = tc;
    return ST_OK;

fail:
    free(tc->buckets);
    free(tc->dir);
    free(tc);
    return st_error(ST_NO_MEMORY, "table cache: out of memory");
}

void st_table_cache_destroy(st_table_cache *tc)
{
    if (!tc)
        return;
    while (tc->lru.next != &tc->lru) {
        tc_entry *e = tc->lru.next;
        lru_remove(e);
        st_table_unref(e->table);
        free(e);
    }
    pthread_mutex_destroy(&tc->mu);
    free(tc->buckets);
    free(tc->dir);
    free(tc);
}

static st_status check_size(st_table *t, uint64_t dat_bytes)
{
    const st_sst_props *p = st_table_props(t);
    if (dat_bytes != 0 && p->dat_bytes != dat_bytes)
        return st_error(ST_CORRUPTION, "%s: %llu bytes, but %llu were expected",
                        st_table_dat_path(t), (unsigned long long)p->dat_bytes,
                        (unsigned long long)dat_bytes);
    return ST_OK;
}

/* A hit: move e to the newest end and hand out a reference (mu held). */
static st_table *take(st_table_cache *tc, tc_entry *e)
{
    lru_remove(e);
    lru_append(tc, e);
    st_table_ref(e->table);
    return e->table;
}

st_status st_table_cache_get(st_table_cache *tc, uint64_t number, uint64_t dat_bytes,
                             st_table **out)
{
    st_status s;
    st_table *t = NULL, *opened = NULL;
    tc_entry *evicted = NULL;
    *out = NULL;

    pthread_mutex_lock(&tc->mu);
    tc_entry *e = *find(tc, number);
    if (e)
        t = take(tc, e);
    pthread_mutex_unlock(&tc->mu);
    if (t)
        goto check;

    /* Open outside the lock: it reads two files and may take a while. */
    if ((s = st_table_open(&tc->o, tc->dir, number, dat_bytes, &opened)) != ST_OK)
        return s;

    tc_entry *ne = malloc(sizeof(*ne));
    pthread_mutex_lock(&tc->mu);
    e = *find(tc, number);
    if (e) {
        /* Another thread opened it meanwhile: keep theirs, drop ours (after unlocking). */
        t = take(tc, e);
    } else if (ne) {
        ne->number = number;
        ne->table = opened;
        tc_entry **b = &tc->buckets[bucket_of(tc, number)];
        ne->hnext = *b;
        *b = ne;
        lru_append(tc, ne);
        if (++tc->count > tc->nbuckets)
            grow(tc);
        st_table_ref(opened); /* the caller's; the cache keeps the one from open */
        t = opened;
        opened = NULL;
        ne = NULL;
        /* Evict the least recently used beyond capacity; chain them through hnext. */
        while (tc->count > tc->capacity) {
            tc_entry *old = tc->lru.next;
            detach(tc, old);
            old->hnext = evicted;
            evicted = old;
        }
    } else {
        /* No memory to remember it: the caller still gets the table, uncached. */
        t = opened;
        opened = NULL;
    }
    pthread_mutex_unlock(&tc->mu);
    free(ne);
    st_table_unref(opened);
    while (evicted) {
        tc_entry *next = evicted->hnext;
        st_table_unref(evicted->table);
        free(evicted);
        evicted = next;
    }

check:
    if ((s = check_size(t, dat_bytes)) != ST_OK) {
        st_table_unref(t);
        return s;
    }
    *out = t;
    return ST_OK;
}

void st_table_cache_evict(st_table_cache *tc, uint64_t number)
{
    pthread_mutex_lock(&tc->mu);
    tc_entry *e = *find(tc, number);
    if (e)
        detach(tc, e);
    pthread_mutex_unlock(&tc->mu);
    if (e) {
        st_table_unref(e->table);
        free(e);
    }
}

uint32_t st_table_cache_size(st_table_cache *tc)
{
    pthread_mutex_lock(&tc->mu);
    uint32_t n = tc->count;
    pthread_mutex_unlock(&tc->mu);
    return n;
}
