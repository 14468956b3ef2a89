/*
 * bench_kv_strata.c - the strata engine behind the bench_kv table, through engine/db.h only.
 */
#include "tools/bench/bench_kv.h"

#include <stdio.h>
#include <string.h>

#include "engine/db.h"

static void fill_options(const st_bench_kv_config *cfg, st_options *o)
{
    st_options_init(o);
    o->create_if_missing = true;
    switch (cfg->sync) {
    case ST_BENCH_SYNC_NONE:
        o->sync = ST_SYNC_NONE;
        break;
    case ST_BENCH_SYNC_ALWAYS:
        o->sync = ST_SYNC_ALWAYS;
        break;
    case ST_BENCH_SYNC_INTERVAL:
        o->sync = ST_SYNC_INTERVAL;
        break;
    }
    o->block_cache_bytes = (size_t)cfg->cache_bytes;
}

static void strata_describe(const st_bench_kv_config *cfg, char *buf, size_t cap)
{
    st_options o;
    fill_options(cfg, &o);
    const char *sync = o.sync == ST_SYNC_NONE ? "none (WAL stored through a shared map, no fsync)"
                       : o.sync == ST_SYNC_ALWAYS ? "always (fdatasync per write group)"
                                                  : "interval";
    snprintf(buf, cap,
             "sync=%s, memtable %zu KiB, block cache %zu KiB, Bloom %d bits/key, "
             "tables uncompressed, block %zu B, table %llu KiB, mmap_reads=%s, "
             "L0 trigger %d, L1 %llu MiB",
             sync, o.memtable_bytes / 1024, o.block_cache_bytes / 1024, o.bloom_bits_per_key,
             o.block_bytes, (unsigned long long)o.table_bytes / 1024, o.mmap_reads ? "on" : "off",
             o.l0_compaction_trigger, (unsigned long long)o.level1_bytes >> 20);
    if (o.sync == ST_SYNC_INTERVAL) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap > len ? cap - len : 0, ", sync interval %u ms", o.sync_interval_ms);
    }
}

static st_status strata_open(const st_bench_kv_config *cfg, void **kv)
{
    st_options o;
    fill_options(cfg, &o);
    st_db *db = NULL;
    st_status s = st_db_open(cfg->dir, &o, &db);
    if (s)
        return s;
    *kv = db;
    return ST_OK;
}

static void strata_close(void *kv)
{
    st_db_close(kv);
}

static st_status strata_put(void *kv, const char *key, size_t klen, const char *val, size_t vlen)
{
    return st_db_put(kv, st_slice_make(key, klen), st_slice_make(val, vlen), NULL);
}

static st_status strata_get(void *kv, const char *key, size_t klen, size_t *vlen)
{
    uint8_t *v = NULL;
    st_status s = st_db_get(kv, NULL, st_slice_make(key, klen), &v, vlen, NULL);
    st_free(v);
    return s;
}

static st_status strata_scan(void *kv, const char *key, size_t klen, uint32_t n, uint32_t *got,
                             uint64_t *bytes)
{
    st_iter *it = NULL;
    st_status s = st_db_iter(kv, NULL, st_slice_make(NULL, 0), st_slice_make(NULL, 0), &it);
    if (s)
        return s;
    uint32_t i = 0;
    uint64_t b = 0;
    for (st_iter_seek(it, st_slice_make(key, klen)); i < n && st_iter_valid(it); st_iter_next(it)) {
        b += st_iter_key(it).len + st_iter_value(it).len;
        i++;
    }
    s = st_iter_status(it);
    st_iter_destroy(it);
    *got = i;
    *bytes = b;
    return s;
}

static st_status strata_counters(void *kv, st_bench_kv_counters *out)
{
    st_stats st;
    st_status s = st_db_stats(kv, &st);
    if (s)
        return s;
    out->wal_bytes = st.wal_bytes_written;
    out->mapped_bytes = st.wal_bytes_mapped;
    out->flush_bytes = st.flush_bytes;
    out->compaction_bytes = st.compaction_bytes_written;
    out->table_bytes = st.flush_bytes + st.compaction_bytes_written;
    out->flushes = st.flushes;
    out->compactions = st.compactions;
    out->stalls = st.stalls;
    out->stall_micros = st.stall_micros;
    out->cache_hits = st.block_cache_hits;
    out->cache_misses = st.block_cache_misses;
    for (int l = 0; l < ST_BENCH_LEVELS; l++)
        out->level_files[l] = l < ST_NUM_LEVELS ? st.levels[l].files : 0;
    return ST_OK;
}

const st_bench_kv_engine st_bench_kv_strata = {
    .name = "strata",
    .describe = strata_describe,
    .open = strata_open,
    .close = strata_close,
    .put = strata_put,
    .get = strata_get,
    .scan = strata_scan,
    .counters = strata_counters,
};
