/* log_writer.c - framing records into 32 KiB blocks (engine/format/log.md). */
#include "engine/log_writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/log_format.h"

/* A frame buffer larger than this is released after use rather than kept for the next record. */
#define KEEP_BUF_BYTES (1u << 20)

#define MSG_CAP 512

/* A mapped writer maps this much of the file ahead at a time (more for a larger record). */
#define MAP_WINDOW_BYTES ((uint64_t)1 << 20)

struct st_log_writer {
    st_env *env;   /* borrowed */
    st_file *file; /* owned */

    /* Touched only by the adding thread. */
    size_t block_offset; /* where in the current block the next fragment goes */
    st_buf frame;
    uint32_t type_crc[ST_LOG_MAX_TYPE + 1]; /* crc32c of each type byte, to extend */
    /* Mapped mode (st_log_writer_create_mapped): records are stored into a shared map of the
       window [map_off, map_off + map_len) of the file instead of appended. */
    bool mapped;
    uint8_t *map;
    uint64_t map_off;
    size_t map_len;

    _Atomic uint64_t size;   /* written only by the adding thread */
    _Atomic uint64_t synced; /* advanced by whichever thread syncs, monotonic */

    pthread_mutex_t mu;
    _Atomic int broken; /* st_status; ST_OK until the first failure. Set under mu. */
    char msg[MSG_CAP];  /* guarded by mu: the first failure's message */
};

st_status st_log_writer_create(st_env *env, st_file *file, uint64_t file_size, st_log_writer **out)
{
    st_log_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        env->close(file);
        return st_error(ST_NO_MEMORY, "log writer: out of memory");
    }
    w->env = env;
    w->file = file;
    w->block_offset = (size_t)(file_size % ST_LOG_BLOCK_SIZE);
    st_buf_init(&w->frame);
    for (int t = 0; t <= ST_LOG_MAX_TYPE; t++) {
        uint8_t b = (uint8_t)t;
        w->type_crc[t] = st_crc32c(&b, 1);
    }
    atomic_init(&w->size, file_size);
    atomic_init(&w->synced, 0);
    atomic_init(&w->broken, ST_OK);
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return ST_OK;
}

st_status st_log_writer_create_mapped(st_env *env, st_file *file, uint64_t file_size,
                                      st_log_writer **out)
{
    st_status s = st_log_writer_create(env, file, file_size, out);
    if (s == ST_OK && env->map_append && env->unmap_append)
        (*out)->mapped = true;
    return s;
}

/* Record the first failure; later failures (e.g. a sync racing an add) keep the first one. */
static st_status mark_broken(st_log_writer *w, st_status s)
{
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->broken) == ST_OK) {
        snprintf(w->msg, sizeof(w->msg), "%s", st_errmsg());
        atomic_store(&w->broken, s);
    }
    pthread_mutex_unlock(&w->mu);
    return s;
}

/* If broken, re-report the first failure (status and message) on this thread. */
static st_status check_broken(st_log_writer *w)
{
    if (atomic_load(&w->broken) == ST_OK)
        return ST_OK;
    pthread_mutex_lock(&w->mu);
    st_status s = (st_status)atomic_load(&w->broken);
    st_error(s, "%s", w->msg);
    pthread_mutex_unlock(&w->mu);
    return s;
}

/*
 * Store the n bytes of a framed record at the end of the log through the map, moving the window
 * first if they do not fit in it. `head` is where the first fragment's header starts in them
 * (after a block trailer, if any). An env that turns out unable to map puts the writer back to
 * appending.
 */
static st_status store_mapped(st_log_writer *w, const uint8_t *p, size_t n, size_t head)
{
    uint64_t at = atomic_load(&w->size);
    /* One byte of room past the record: the header store below is 8 bytes wide. */
    if (w->map == NULL || at + n + 1 > w->map_off + w->map_len) {
        uint64_t off = at - at % ST_ENV_MAP_ALIGN;
        uint64_t need = at + n + 1 - off;
        uint64_t len = need > MAP_WINDOW_BYTES ? need : MAP_WINDOW_BYTES;
        len = (len + ST_ENV_MAP_ALIGN - 1) / ST_ENV_MAP_ALIGN * ST_ENV_MAP_ALIGN;
        if (len > SIZE_MAX)
            return st_error(ST_INVALID_ARGUMENT, "log record of %zu bytes is too large", n);
        uint8_t *addr;
        st_status s = w->env->map_append(w->file, off, (size_t)len, &addr);
        if (s == ST_NOT_SUPPORTED && w->map == NULL) {
            w->mapped = false;
            return w->env->append(w->file, p, n);
        }
        if (s != ST_OK)
            return s;
        w->env->unmap_append(w->file, w->map, w->map_len);
        w->map = addr;
        w->map_off = off;
        w->map_len = (size_t)len;
    }
    /*
     * The first fragment's header goes in last, with one 8-byte store, so that a process killed
     * in the middle leaves that header all zeros, which every reader (strict ones included)
     * takes for a torn tail. The trailer before it is zeros, as the map already is. The 8 bytes
     * run one past the header: into the payload (stored already; the same byte again) or, for
     * an empty record, onto the zero that follows it.
     */
    uint8_t *dst = w->map + (at - w->map_off);
    size_t body = head + ST_LOG_HEADER_SIZE;
    memcpy(dst + body, p + body, n - body);
    uint8_t h8[8] = {0};
    memcpy(h8, p + head, n - head < 8 ? n - head : 8);
    atomic_signal_fence(memory_order_seq_cst); /* the compiler keeps the payload first */
    memcpy(dst + head, h8, 8);
    return ST_OK;
}

static void put_fragment(st_log_writer *w, uint8_t *dst, st_log_type type, const uint8_t *p,
                         size_t len)
{
    uint32_t crc = st_crc32c_extend(w->type_crc[type], p, len);
    st_put_fixed32(dst, st_crc32c_mask(crc));
    dst[4] = (uint8_t)(len & 0xff);
    dst[5] = (uint8_t)(len >> 8);
    dst[6] = (uint8_t)type;
    if (len)
        memcpy(dst + ST_LOG_HEADER_SIZE, p, len);
}

st_status st_log_writer_add(st_log_writer *w, const void *data, size_t n)
{
    st_status s = check_broken(w);
    if (s != ST_OK)
        return s;

    /* Worst case: a trailer, then one header per (block - header) bytes of payload, plus one. */
    const size_t per_block = ST_LOG_BLOCK_SIZE - ST_LOG_HEADER_SIZE;
    if (n > (SIZE_MAX / 2))
        return st_error(ST_INVALID_ARGUMENT, "log record of %zu bytes is too large", n);
    size_t bound = n + (n / per_block + 2) * ST_LOG_HEADER_SIZE + ST_LOG_HEADER_SIZE;
    st_buf_clear(&w->frame);
    if (!st_buf_reserve(&w->frame, bound))
        return st_error(ST_NO_MEMORY, "log record of %zu bytes: out of memory", n);

    uint8_t *out = w->frame.data;
    const uint8_t *p = data;
    size_t left = n;
    size_t boff = w->block_offset;
    size_t head = ST_LOG_BLOCK_SIZE - boff < ST_LOG_HEADER_SIZE ? ST_LOG_BLOCK_SIZE - boff : 0;
    bool begin = true;
    do {
        size_t room = ST_LOG_BLOCK_SIZE - boff;
        if (room < ST_LOG_HEADER_SIZE) {
            memset(out, 0, room);
            out += room;
            boff = 0;
            room = ST_LOG_BLOCK_SIZE;
        }
        size_t avail = room - ST_LOG_HEADER_SIZE;
        size_t len = left < avail ? left : avail;
        bool end = len == left;
        st_log_type type = begin && end ? ST_LOG_FULL
                           : begin      ? ST_LOG_FIRST
                           : end        ? ST_LOG_LAST
                                        : ST_LOG_MIDDLE;
        put_fragment(w, out, type, p, len);
        out += ST_LOG_HEADER_SIZE + len;
        boff += ST_LOG_HEADER_SIZE + len;
        p += len;
        left -= len;
        begin = false;
    } while (left > 0);
    size_t total = (size_t)(out - w->frame.data);
    w->frame.len = total;

    s = w->mapped ? store_mapped(w, w->frame.data, total, head)
                  : w->env->append(w->file, w->frame.data, total);
    if (s != ST_OK) {
        mark_broken(w, s);
    } else {
        w->block_offset = boff;
        atomic_store(&w->size, atomic_load(&w->size) + total);
    }
    if (w->frame.cap > KEEP_BUF_BYTES) {
        st_buf_free(&w->frame);
        st_buf_init(&w->frame);
    }
    return s;
}

st_status st_log_writer_sync(st_log_writer *w)
{
    st_status s = check_broken(w);
    if (s != ST_OK)
        return s;
    uint64_t start = atomic_load(&w->size);
    s = w->env->sync(w->file);
    if (s != ST_OK)
        return mark_broken(w, s);
    /* Two syncs may finish out of order; synced_size only moves forward. */
    uint64_t cur = atomic_load(&w->synced);
    while (cur < start && !atomic_compare_exchange_weak(&w->synced, &cur, start))
        ;
    return ST_OK;
}

bool st_log_writer_is_mapped(const st_log_writer *w)
{
    return w->mapped;
}

uint64_t st_log_writer_size(const st_log_writer *w)
{
    return atomic_load(&((st_log_writer *)w)->size);
}

uint64_t st_log_writer_synced_size(const st_log_writer *w)
{
    return atomic_load(&((st_log_writer *)w)->synced);
}

void st_log_writer_destroy(st_log_writer *w)
{
    if (!w)
        return;
    if (w->map) {
        /* Drop the zeros the window left past the last record (a crash leaves them, and the
           reader takes them for a torn tail; a clean close should not). */
        w->env->unmap_append(w->file, w->map, w->map_len);
        w->env->truncate(w->file, atomic_load(&w->size));
    }
    w->env->close(w->file);
    st_buf_free(&w->frame);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
