/*
 * bench_kv.h - the engines `strata-bench engine` can drive, behind one small table of functions.
 *
 * Each engine is opened with the same settings (st_bench_kv_config) and driven by the same loop
 * in bench_engine.c, so the only thing that differs between two runs is the engine. An adapter
 * translates the shared settings into its engine's options and says how in describe(); it never
 * tunes anything the other side does not get.
 *
 * A handle is used by one thread. Key and value bytes passed in are borrowed for the call.
 */
#ifndef STRATA_TOOLS_BENCH_KV_H
#define STRATA_TOOLS_BENCH_KV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/status.h"

typedef enum st_bench_sync {
    ST_BENCH_SYNC_NONE,     /* WAL on, every write in the kernel before it returns, no fsync */
    ST_BENCH_SYNC_ALWAYS,   /* fsync before a write returns */
    ST_BENCH_SYNC_INTERVAL, /* strata: fsync every 100 ms; LevelDB has no such mode (sync=false) */
} st_bench_sync;

typedef struct st_bench_kv_config {
    const char *dir;      /* the database directory; borrowed for the open call */
    st_bench_sync sync;   /* durability of each write */
    uint64_t cache_bytes; /* block cache capacity */
} st_bench_kv_config;

/* An engine's own account of its work; fields it cannot tell are ST_BENCH_UNKNOWN. */
#define ST_BENCH_UNKNOWN UINT64_MAX
#define ST_BENCH_LEVELS  7

typedef struct st_bench_kv_counters {
    uint64_t wal_bytes;        /* bytes appended to the write-ahead log */
    uint64_t mapped_bytes;     /* bytes handed to the OS through shared maps, not write(2) */
    uint64_t flush_bytes;      /* table bytes written by memtable flushes */
    uint64_t compaction_bytes; /* table bytes written by compactions */
    uint64_t table_bytes;      /* flush + compaction (LevelDB only reports the sum, to 1 MB) */
    uint64_t flushes;
    uint64_t compactions;
    uint64_t stalls;       /* writes that waited for a flush or compaction */
    uint64_t stall_micros; /* how long they waited in total */
    uint64_t cache_hits;   /* block cache */
    uint64_t cache_misses;
    uint64_t level_files[ST_BENCH_LEVELS]; /* tables per level now (not a counter) */
} st_bench_kv_counters;

typedef struct st_bench_kv_engine {
    const char *name; /* "strata", "leveldb" */
    /* One line saying how the shared settings map onto this engine, into buf (NUL-terminated). */
    void (*describe)(const st_bench_kv_config *cfg, char *buf, size_t cap);
    /* Open or create the database in cfg->dir. On ST_OK *kv owns the handle until close. */
    st_status (*open)(const st_bench_kv_config *cfg, void **kv);
    void (*close)(void *kv); /* accepts NULL; waits for the engine's own shutdown work */
    st_status (*put)(void *kv, const char *key, size_t klen, const char *val, size_t vlen);
    /* ST_OK with *vlen the value's length, or ST_NOT_FOUND. */
    st_status (*get)(void *kv, const char *key, size_t klen, size_t *vlen);
    /* Seek to the first key >= `key`, then read up to n entries with a fresh iterator;
     *got entries were read, *bytes their key + value bytes. */
    st_status (*scan)(void *kv, const char *key, size_t klen, uint32_t n, uint32_t *got,
                      uint64_t *bytes);
    /* The engine's cumulative counters now. */
    st_status (*counters)(void *kv, st_bench_kv_counters *out);
} st_bench_kv_engine;

extern const st_bench_kv_engine st_bench_kv_strata;
#ifdef STRATA_BENCH_HAVE_LEVELDB
extern const st_bench_kv_engine st_bench_kv_leveldb;
#endif

#endif
