/*
 * bench_kv_leveldb.c - LevelDB (Debian's libleveldb, its C API) behind the bench_kv table.
 *
 * Built only when CMake finds leveldb/c.h and the library. The settings follow the fair-comparison
 * rules of `strata-bench engine --compare leveldb`: WAL on with sync=false for --sync none (both
 * sides leave each write in the kernel before returning), the same block cache capacity,
 * compression OFF (strata's tables are uncompressed), a 10-bit Bloom filter (strata's default),
 * everything else at LevelDB's defaults (4 MiB write buffer like strata's memtable, 4 KiB blocks,
 * 2 MiB tables, 1000 open files).
 */
#include "tools/bench/bench_kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <leveldb/c.h>

#define BLOOM_BITS 10

typedef struct ldb {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
    leveldb_readoptions_t *ropts;
    leveldb_writeoptions_t *wopts;
} ldb;

/* LevelDB errors are "<Kind>: <message>" strings; keep the kind as our status. */
static st_status from_leveldb(char *err, const char *what)
{
    st_status code = ST_IO_ERROR;
    if (strncmp(err, "Corruption", 10) == 0)
        code = ST_CORRUPTION;
    else if (strncmp(err, "NotFound", 8) == 0)
        code = ST_NOT_FOUND;
    else if (strncmp(err, "Invalid argument", 16) == 0)
        code = ST_INVALID_ARGUMENT;
    else if (strncmp(err, "Not implemented", 15) == 0)
        code = ST_NOT_SUPPORTED;
    st_status s = st_error(code, "leveldb %s: %s", what, err);
    leveldb_free(err);
    return s;
}

static void leveldb_describe(const st_bench_kv_config *cfg, char *buf, size_t cap)
{
    const char *sync = cfg->sync == ST_BENCH_SYNC_ALWAYS ? "true (fdatasync per write)"
                       : cfg->sync == ST_BENCH_SYNC_NONE ? "false (write(2) per write, no fsync)"
                                                         : "false (LevelDB has no interval sync)";
    snprintf(buf, cap,
             "LevelDB %d.%d, sync=%s, write buffer 4096 KiB (default), block cache %llu KiB, "
             "Bloom %d bits/key, compression OFF, block 4096 B, table 2048 KiB (defaults)",
             leveldb_major_version(), leveldb_minor_version(), sync,
             (unsigned long long)cfg->cache_bytes / 1024, BLOOM_BITS);
}

static void ldb_free(ldb *l)
{
    if (!l)
        return;
    if (l->db)
        leveldb_close(l->db);
    if (l->wopts)
        leveldb_writeoptions_destroy(l->wopts);
    if (l->ropts)
        leveldb_readoptions_destroy(l->ropts);
    if (l->opts)
        leveldb_options_destroy(l->opts);
    /* The filter policy and the cache are used by the db until it is closed above. */
    if (l->filter)
        leveldb_filterpolicy_destroy(l->filter);
    if (l->cache)
        leveldb_cache_destroy(l->cache);
    free(l);
}

static st_status leveldb_open_kv(const st_bench_kv_config *cfg, void **kv)
{
    st_status s = ST_OK;
    char *err = NULL;
    ldb *l = calloc(1, sizeof *l);
    if (!l)
        return st_error(ST_NO_MEMORY, "leveldb %s: out of memory", cfg->dir);
    l->opts = leveldb_options_create();
    l->cache = leveldb_cache_create_lru((size_t)cfg->cache_bytes);
    l->filter = leveldb_filterpolicy_create_bloom(BLOOM_BITS);
    l->ropts = leveldb_readoptions_create();
    l->wopts = leveldb_writeoptions_create();
    if (!l->opts || !l->cache || !l->filter || !l->ropts || !l->wopts) {
        s = st_error(ST_NO_MEMORY, "leveldb %s: out of memory", cfg->dir);
        goto fail;
    }
    leveldb_options_set_create_if_missing(l->opts, 1);
    leveldb_options_set_cache(l->opts, l->cache);
    leveldb_options_set_filter_policy(l->opts, l->filter);
    leveldb_options_set_compression(l->opts, leveldb_no_compression);
    leveldb_writeoptions_set_sync(l->wopts, cfg->sync == ST_BENCH_SYNC_ALWAYS);
    l->db = leveldb_open(l->opts, cfg->dir, &err);
    if (err) {
        s = from_leveldb(err, cfg->dir);
        goto fail;
    }
    *kv = l;
    return ST_OK;
fail:
    ldb_free(l);
    return s;
}

static void leveldb_close_kv(void *kv)
{
    ldb_free(kv);
}

static st_status leveldb_put_kv(void *kv, const char *key, size_t klen, const char *val,
                                size_t vlen)
{
    ldb *l = kv;
    char *err = NULL;
    leveldb_put(l->db, l->wopts, key, klen, val, vlen, &err);
    return err ? from_leveldb(err, "put") : ST_OK;
}

static st_status leveldb_get_kv(void *kv, const char *key, size_t klen, size_t *vlen)
{
    ldb *l = kv;
    char *err = NULL;
    char *v = leveldb_get(l->db, l->ropts, key, klen, vlen, &err);
    if (err)
        return from_leveldb(err, "get");
    if (!v)
        return ST_NOT_FOUND;
    leveldb_free(v);
    return ST_OK;
}

static st_status leveldb_scan_kv(void *kv, const char *key, size_t klen, uint32_t n, uint32_t *got,
                                 uint64_t *bytes)
{
    ldb *l = kv;
    leveldb_iterator_t *it = leveldb_create_iterator(l->db, l->ropts);
    if (!it)
        return st_error(ST_NO_MEMORY, "leveldb scan: no iterator");
    uint32_t i = 0;
    uint64_t b = 0;
    for (leveldb_iter_seek(it, key, klen); i < n && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        (void)leveldb_iter_key(it, &kl);
        (void)leveldb_iter_value(it, &vl);
        b += kl + vl;
        i++;
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    *got = i;
    *bytes = b;
    return err ? from_leveldb(err, "scan") : ST_OK;
}

/*
 * "leveldb.stats" is a table: a header, a dashed rule, then one row per non-empty level:
 * "level files size(MB) time(sec) read(MB) write(MB)". Write(MB) counts flushes (level 0)
 * and compactions together, printed without decimals.
 */
static void parse_stats(const char *text, st_bench_kv_counters *out)
{
    const char *p = strstr(text, "----");
    double written_mb = 0;
    if (p)
        p = strchr(p, '\n');
    while (p && *p) {
        p++;
        int level;
        unsigned long long files;
        double size_mb, secs, read_mb, write_mb;
        if (sscanf(p, "%d %llu %lf %lf %lf %lf", &level, &files, &size_mb, &secs, &read_mb,
                   &write_mb) != 6)
            break;
        written_mb += write_mb;
        p = strchr(p, '\n');
    }
    out->table_bytes = (uint64_t)(written_mb * 1048576.0);
}

static st_status leveldb_counters_kv(void *kv, st_bench_kv_counters *out)
{
    ldb *l = kv;
    out->wal_bytes = ST_BENCH_UNKNOWN;
    out->mapped_bytes = 0; /* LevelDB writes everything with write(2) */
    out->flush_bytes = ST_BENCH_UNKNOWN;
    out->compaction_bytes = ST_BENCH_UNKNOWN;
    out->table_bytes = ST_BENCH_UNKNOWN;
    out->flushes = ST_BENCH_UNKNOWN;
    out->compactions = ST_BENCH_UNKNOWN;
    out->stalls = ST_BENCH_UNKNOWN;
    out->stall_micros = ST_BENCH_UNKNOWN;
    out->cache_hits = ST_BENCH_UNKNOWN;
    out->cache_misses = ST_BENCH_UNKNOWN;
    char *stats = leveldb_property_value(l->db, "leveldb.stats");
    if (stats) {
        parse_stats(stats, out);
        leveldb_free(stats);
    }
    for (int lv = 0; lv < ST_BENCH_LEVELS; lv++) {
        char prop[64];
        snprintf(prop, sizeof prop, "leveldb.num-files-at-level%d", lv);
        char *v = leveldb_property_value(l->db, prop);
        out->level_files[lv] = v ? strtoull(v, NULL, 10) : 0;
        leveldb_free(v);
    }
    return ST_OK;
}

const st_bench_kv_engine st_bench_kv_leveldb = {
    .name = "leveldb",
    .describe = leveldb_describe,
    .open = leveldb_open_kv,
    .close = leveldb_close_kv,
    .put = leveldb_put_kv,
    .get = leveldb_get_kv,
    .scan = leveldb_scan_kv,
    .counters = leveldb_counters_kv,
};
