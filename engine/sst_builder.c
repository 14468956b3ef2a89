/* sst_builder.c - writing a table's three files. */
#include "engine/sst_builder.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/block.h"
#include "engine/bloom.h"
#include "engine/crc32c.h"
#include "engine/dbformat.h"
#include "engine/filename.h"
#include "engine/sst_format.h"

/* Finished blocks collect here and go to the file in appends of about this size. */
#define WRITE_CHUNK_BYTES (1u << 20)

enum { DAT, IDX, META, NFILES };

static const char *const exts[NFILES] = {ST_SST_DAT_EXT, ST_SST_IDX_EXT, ST_SST_META_EXT};

struct st_sst_builder {
    st_env *env;
    uint64_t number;
    st_sst_options o;
    char *tmp[NFILES], *final[NFILES];
    st_file *dat;
    st_block_builder *block;
    st_buf block_first; /* first key of the open block */
    st_buf out;         /* finished blocks not yet appended to .dat.tmp */
    uint64_t dat_written;
    st_buf idx; /* header and entries of .idx so far */
    uint32_t nblocks;
    uint64_t *hashes; /* Bloom hashes of the distinct user keys */
    size_t nhashes, hashes_cap;
    st_buf smallest, last_key;
    uint64_t entries, tombstones, min_seq, max_seq;
    st_status failed; /* the first error that broke the builder; ST_OK while healthy */
    char msg[256];    /* its message */
    bool finished;
};

void st_sst_props_free(st_sst_props *p)
{
    if (!p)
        return;
    st_buf_free(&p->smallest);
    st_buf_free(&p->largest);
}

static char *make_path(const char *dir, uint64_t number, const char *ext, bool tmp)
{
    size_t cap = strlen(dir) + ST_NAME_EXTRA;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    char e[16];
    snprintf(e, sizeof(e), "%s%s", ext, tmp ? ST_SST_TMP_EXT : "");
    return st_numbered_path(p, cap, dir, number, e);
}

/* Remember the first error that breaks the builder (with its message) and return it. */
static st_status fail(st_sst_builder *b, st_status s)
{
    if (b->failed == ST_OK) {
        b->failed = s;
        snprintf(b->msg, sizeof(b->msg), "%s", st_errmsg());
    }
    return s;
}

static st_status replay_failure(const st_sst_builder *b)
{
    return st_error(b->failed, "%s", b->msg);
}

st_status st_sst_builder_create(st_env *env, const char *sst_dir, uint64_t number,
                                const st_sst_options *o, st_sst_builder **out)
{
    st_status s;
    *out = NULL;
    st_sst_builder *b = calloc(1, sizeof(*b));
    if (!b)
        return st_error(ST_NO_MEMORY, "sst builder: out of memory");
    b->env = env;
    b->number = number;
    if (o)
        b->o = *o;
    if (b->o.block_bytes == 0)
        b->o.block_bytes = ST_SST_DEFAULT_BLOCK_BYTES;
    if (b->o.block_bytes > ST_SST_MAX_ENTRY_BYTES)
        b->o.block_bytes = ST_SST_MAX_ENTRY_BYTES;
    if (b->o.restart_interval <= 0)
        b->o.restart_interval = ST_SST_DEFAULT_RESTART_INTERVAL;
    st_buf_init(&b->block_first);
    st_buf_init(&b->out);
    st_buf_init(&b->idx);
    st_buf_init(&b->smallest);
    st_buf_init(&b->last_key);
    for (int i = 0; i < NFILES; i++) {
        b->tmp[i] = make_path(sst_dir, number, exts[i], true);
        b->final[i] = make_path(sst_dir, number, exts[i], false);
        if (!b->tmp[i] || !b->final[i]) {
            s = st_error(ST_NO_MEMORY, "sst builder: out of memory");
            goto fail;
        }
    }
    if ((s = st_block_builder_create(b->o.restart_interval, &b->block)) != ST_OK)
        goto fail;
    if (!st_buf_put_fixed32(&b->idx, ST_SST_IDX_MAGIC) ||
        !st_buf_append(&b->idx, &(uint8_t){ST_SST_FORMAT_VERSION}, 1) ||
        !st_buf_reserve(&b->out, WRITE_CHUNK_BYTES)) {
        s = st_error(ST_NO_MEMORY, "sst builder: out of memory");
        goto fail;
    }
    if ((s = env->open_writable(env, b->tmp[DAT], false, &b->dat)) != ST_OK)
        goto fail;
    *out = b;
    return ST_OK;

fail:
    /* Nothing was created on disk unless the open succeeded, and it is the last step. */
    b->finished = true;
    st_sst_builder_destroy(b);
    return s;
}

static st_status append_out(st_sst_builder *b)
{
    if (b->out.len == 0)
        return ST_OK;
    st_status s = b->env->append(b->dat, b->out.data, b->out.len);
    if (s != ST_OK)
        return s;
    b->dat_written += b->out.len;
    st_buf_clear(&b->out);
    return ST_OK;
}

/* Close the open block: move it to the output, index it, and append if enough has collected. */
static st_status flush_block(st_sst_builder *b)
{
    assert(st_block_builder_entries(b->block) > 0);
    st_slice blk;
    st_status s = st_block_builder_finish(b->block, &blk);
    if (s != ST_OK)
        return s;
    uint64_t offset = b->dat_written + b->out.len;
    if (b->nblocks == UINT32_MAX)
        return st_error(ST_INVALID_ARGUMENT, "%s: too many blocks", b->tmp[DAT]);
    if (!st_buf_put_lp(&b->idx, b->block_first.data, b->block_first.len) ||
        !st_buf_put_varint64(&b->idx, offset) || !st_buf_put_varint32(&b->idx, (uint32_t)blk.len) ||
        !st_buf_append(&b->out, blk.data, blk.len))
        return st_error(ST_NO_MEMORY, "%s: out of memory", b->tmp[DAT]);
    b->nblocks++;
    st_block_builder_reset(b->block);
    if (b->out.len >= WRITE_CHUNK_BYTES)
        return append_out(b);
    return ST_OK;
}

static bool push_hash(st_sst_builder *b, uint64_t h)
{
    if (b->nhashes == b->hashes_cap) {
        size_t cap = b->hashes_cap ? b->hashes_cap * 2 : 1024;
        uint64_t *p = realloc(b->hashes, cap * sizeof(*p));
        if (!p)
            return false;
        b->hashes = p;
        b->hashes_cap = cap;
    }
    b->hashes[b->nhashes++] = h;
    return true;
}

st_status st_sst_builder_add(st_sst_builder *b, st_slice ikey, st_slice value)
{
    st_status s;
    if (b->failed != ST_OK)
        return replay_failure(b);
    if (b->finished)
        return st_error(ST_INVALID_ARGUMENT, "%s: add after finish", b->final[DAT]);
    if (!st_ikey_valid(ikey))
        return st_error(ST_INVALID_ARGUMENT, "%s: key of %zu bytes is not an internal key",
                        b->tmp[DAT], ikey.len);
    if ((uint64_t)ikey.len + value.len > ST_SST_MAX_ENTRY_BYTES)
        return st_error(ST_INVALID_ARGUMENT, "%s: entry of %zu bytes is too large", b->tmp[DAT],
                        ikey.len + value.len);
    st_slice last = st_slice_make(b->last_key.data, b->last_key.len);
    if (b->entries > 0 && st_ikey_cmp(last, ikey) >= 0)
        return st_error(ST_INVALID_ARGUMENT, "%s: keys out of order at entry %" PRIu64, b->tmp[DAT],
                        b->entries);

    st_slice user = st_ikey_user(ikey);
    bool new_user = b->entries == 0 || !st_slice_eq(user, st_ikey_user(last));
    if (new_user && b->o.bloom_bits_per_key > 0 && !push_hash(b, st_bloom_hash(user)))
        goto oom;
    if (st_block_builder_entries(b->block) == 0) {
        st_buf_clear(&b->block_first);
        if (!st_buf_append(&b->block_first, ikey.data, ikey.len))
            goto oom;
    }
    if ((s = st_block_builder_add(b->block, ikey, value)) != ST_OK)
        return fail(b, s);
    if (b->entries == 0 && !st_buf_append(&b->smallest, ikey.data, ikey.len))
        goto oom;
    st_buf_clear(&b->last_key);
    if (!st_buf_append(&b->last_key, ikey.data, ikey.len))
        goto oom;

    uint64_t seq = st_ikey_seq(ikey);
    if (b->entries == 0 || seq < b->min_seq)
        b->min_seq = seq;
    if (b->entries == 0 || seq > b->max_seq)
        b->max_seq = seq;
    if (st_ikey_kind(ikey) == ST_KIND_DELETE)
        b->tombstones++;
    b->entries++;

    if (st_block_builder_size(b->block) >= b->o.block_bytes && (s = flush_block(b)) != ST_OK)
        return fail(b, s);
    return ST_OK;

oom:
    return fail(b, st_error(ST_NO_MEMORY, "%s: out of memory", b->tmp[DAT]));
}

uint64_t st_sst_builder_bytes(const st_sst_builder *b)
{
    uint64_t open = st_block_builder_entries(b->block) ? st_block_builder_size(b->block) : 0;
    return b->dat_written + b->out.len + open;
}

uint64_t st_sst_builder_entries(const st_sst_builder *b)
{
    return b->entries;
}

/* Create `path`, write data, sync and close it. */
static st_status write_synced(st_env *env, const char *path, const st_buf *data)
{
    st_file *f = NULL;
    st_status s = env->open_writable(env, path, false, &f);
    if (s != ST_OK)
        return s;
    if ((s = env->append(f, data->data, data->len)) != ST_OK)
        goto fail;
    if ((s = env->sync(f)) != ST_OK)
        goto fail;
    return env->close(f);

fail:
    env->close(f);
    return s;
}

static st_status build_meta(st_sst_builder *b, uint64_t idx_bytes, st_buf *meta)
{
    bool ok = st_buf_put_fixed32(meta, ST_SST_META_MAGIC) &&
              st_buf_append(meta, &(uint8_t){ST_SST_FORMAT_VERSION}, 1) &&
              st_buf_put_varint64(meta, b->number) &&
              st_buf_put_lp(meta, b->smallest.data, b->smallest.len) &&
              st_buf_put_lp(meta, b->last_key.data, b->last_key.len) &&
              st_buf_put_varint64(meta, b->entries) && st_buf_put_varint64(meta, b->tombstones) &&
              st_buf_put_varint64(meta, b->min_seq) && st_buf_put_varint64(meta, b->max_seq) &&
              st_buf_put_varint64(meta, b->dat_written) && st_buf_put_varint64(meta, idx_bytes);
    st_buf bloom;
    st_buf_init(&bloom);
    ok = ok && st_bloom_build_hashes(b->hashes, b->nhashes, b->o.bloom_bits_per_key, &bloom) &&
         bloom.len <= UINT32_MAX && st_buf_put_lp(meta, bloom.data, bloom.len) &&
         st_buf_put_fixed32(meta, st_crc32c_mask(st_crc32c(meta->data, meta->len)));
    st_buf_free(&bloom);
    if (!ok)
        return st_error(ST_NO_MEMORY, "%s: out of memory", b->tmp[META]);
    return ST_OK;
}

st_status st_sst_builder_finish(st_sst_builder *b, st_sst_props *props)
{
    st_status s;
    st_buf meta;
    st_buf_init(&meta);
    memset(props, 0, sizeof(*props));
    st_buf_init(&props->smallest);
    st_buf_init(&props->largest);
    int renamed = 0;

    if (b->failed != ST_OK)
        return replay_failure(b);
    if (b->finished)
        return st_error(ST_INVALID_ARGUMENT, "%s: finished twice", b->final[DAT]);
    if (b->entries == 0)
        return st_error(ST_INVALID_ARGUMENT, "%s: a table needs at least one entry", b->tmp[DAT]);

    if (st_block_builder_entries(b->block) > 0 && (s = flush_block(b)) != ST_OK)
        goto fail;
    if ((s = append_out(b)) != ST_OK)
        goto fail;

    if (!st_buf_put_fixed32(&b->idx, b->nblocks) ||
        !st_buf_put_fixed32(&b->idx, st_crc32c_mask(st_crc32c(b->idx.data, b->idx.len)))) {
        s = st_error(ST_NO_MEMORY, "%s: out of memory", b->tmp[IDX]);
        goto fail;
    }
    if ((s = build_meta(b, b->idx.len, &meta)) != ST_OK)
        goto fail;
    if (!st_buf_append(&props->smallest, b->smallest.data, b->smallest.len) ||
        !st_buf_append(&props->largest, b->last_key.data, b->last_key.len)) {
        s = st_error(ST_NO_MEMORY, "%s: out of memory", b->tmp[META]);
        goto fail;
    }

    if ((s = write_synced(b->env, b->tmp[IDX], &b->idx)) != ST_OK)
        goto fail;
    if ((s = write_synced(b->env, b->tmp[META], &meta)) != ST_OK)
        goto fail;
    if ((s = b->env->sync(b->dat)) != ST_OK)
        goto fail;
    s = b->env->close(b->dat);
    b->dat = NULL;
    if (s != ST_OK)
        goto fail;
    /* .meta goes last: a table is complete once its .meta has its final name. */
    for (renamed = 0; renamed < NFILES; renamed++)
        if ((s = b->env->rename(b->env, b->tmp[renamed], b->final[renamed])) != ST_OK)
            goto fail;

    props->number = b->number;
    props->dat_bytes = b->dat_written;
    props->idx_bytes = b->idx.len;
    props->meta_bytes = meta.len;
    props->entries = b->entries;
    props->tombstones = b->tombstones;
    props->min_seq = b->min_seq;
    props->max_seq = b->max_seq;
    b->finished = true;
    st_buf_free(&meta);
    return ST_OK;

fail:
    fail(b, s);
    /* Take back the final names already given, so no partial table remains. */
    while (renamed-- > 0)
        b->env->unlink(b->env, b->final[renamed]);
    st_sst_props_free(props);
    st_buf_free(&meta);
    return replay_failure(b);
}

void st_sst_builder_destroy(st_sst_builder *b)
{
    if (!b)
        return;
    /* Destroy often runs on a failure path: keep the message that explains the failure, not
       the one of an unlink of a temporary file that was never created. */
    char saved[512];
    snprintf(saved, sizeof(saved), "%s", st_errmsg());
    if (b->dat)
        b->env->close(b->dat);
    if (!b->finished) {
        for (int i = 0; i < NFILES; i++)
            if (b->tmp[i])
                b->env->unlink(b->env, b->tmp[i]);
    }
    st_error(ST_OK, "%s", saved);
    for (int i = 0; i < NFILES; i++) {
        free(b->tmp[i]);
        free(b->final[i]);
    }
    st_block_builder_destroy(b->block);
    st_buf_free(&b->block_first);
    st_buf_free(&b->out);
    st_buf_free(&b->idx);
    st_buf_free(&b->smallest);
    st_buf_free(&b->last_key);
    free(b->hashes);
    free(b);
}

st_status st_sst_remove(st_env *env, const char *sst_dir, uint64_t number)
{
    st_status first = ST_OK;
    char msg[256] = "";
    for (int i = 0; i < NFILES; i++) {
        char *path = make_path(sst_dir, number, exts[i], false);
        if (!path)
            return st_error(ST_NO_MEMORY, "sst remove: out of memory");
        st_status s = env->unlink(env, path);
        free(path);
        if (s != ST_OK && s != ST_NOT_FOUND && first == ST_OK) {
            first = s;
            snprintf(msg, sizeof(msg), "%s", st_errmsg());
        }
    }
    if (first != ST_OK)
        return st_error(first, "%s", msg);
    return ST_OK;
}

st_status st_sst_move(st_env *env, const char *from_dir, uint64_t from_number, const char *to_dir,
                      uint64_t to_number)
{
    st_status s;
    uint8_t *old = NULL;
    size_t n = 0;
    st_buf meta;
    st_buf_init(&meta);
    char *paths[2][NFILES] = {{NULL}};
    char *tmp = make_path(to_dir, to_number, exts[META], true);
    for (int i = 0; i < NFILES; i++) {
        paths[0][i] = make_path(from_dir, from_number, exts[i], false);
        paths[1][i] = make_path(to_dir, to_number, exts[i], false);
        if (!paths[0][i] || !paths[1][i] || !tmp) {
            s = st_error(ST_NO_MEMORY, "sst move: out of memory");
            goto done;
        }
    }
    /* The .meta names its table's number (so a misplaced file is caught): rewrite it. */
    if ((s = st_env_read_file(env, paths[0][META], 64u << 20, &old, &n)))
        goto done;
    const uint8_t *p = old + 5, *end = old + n;
    uint64_t num;
    if (n < 9 || st_get_fixed32(old) != ST_SST_META_MAGIC || old[4] != ST_SST_FORMAT_VERSION ||
        st_crc32c_unmask(st_get_fixed32(end - 4)) != st_crc32c(old, n - 4) ||
        !st_decode_varint64(&p, end - 4, &num) || num != from_number) {
        s = st_error(ST_CORRUPTION, "%s: not a valid table meta file", paths[0][META]);
        goto done;
    }
    bool ok = st_buf_append(&meta, old, 5) && st_buf_put_varint64(&meta, to_number) &&
              st_buf_append(&meta, p, (size_t)(end - 4 - p)) &&
              st_buf_put_fixed32(&meta, st_crc32c_mask(st_crc32c(meta.data, meta.len)));
    if (!ok) {
        s = st_error(ST_NO_MEMORY, "sst move: out of memory");
        goto done;
    }
    if ((s = env->rename(env, paths[0][DAT], paths[1][DAT])) ||
        (s = env->rename(env, paths[0][IDX], paths[1][IDX])) ||
        (s = write_synced(env, tmp, &meta)) || (s = env->rename(env, tmp, paths[1][META])))
        goto done;
    env->unlink(env, paths[0][META]);
done:
    for (int i = 0; i < NFILES; i++) {
        free(paths[0][i]);
        free(paths[1][i]);
    }
    free(tmp);
    free(old);
    st_buf_free(&meta);
    return s;
}
