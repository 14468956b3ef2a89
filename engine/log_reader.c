/* log_reader.c - reading the record log, telling a torn tail from corruption (format/log.md). */
#include "engine/log_reader.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "engine/crc32c.h"
#include "engine/log_format.h"

struct st_log_reader {
    st_env *env;   /* borrowed */
    st_file *file; /* borrowed */
    char *name;    /* owned */

    /*
     * One block of the file: block[0, block_len) holds the bytes at block_start. block_len <
     * ST_LOG_BLOCK_SIZE means the file ended there when last read; it may have grown since, so
     * fill() asks again before concluding anything from a short block.
     */
    uint8_t *block; /* owned, ST_LOG_BLOCK_SIZE bytes */
    uint64_t block_start;
    size_t block_len;
    size_t pos; /* next fragment header, within block */

    st_buf rec; /* assembles multi-fragment records */

    uint64_t good_end; /* just past the last record returned */
    uint64_t restart;  /* where the current attempt started: good_end, or a skip target */
    uint64_t torn;     /* torn bytes reported by the last NOT_FOUND */
    bool strict;       /* a whole fragment that fails its checks is never a torn tail */
    uint64_t limit;    /* bytes at or past this offset are treated as not yet written */
};

typedef enum {
    FRAG_OK,
    FRAG_EOF,       /* no bytes at all at the fragment position */
    FRAG_TRUNCATED, /* the file ends inside the fragment */
    FRAG_BAD,       /* type, length or checksum wrong */
} frag_kind;

typedef struct {
    frag_kind kind;
    st_log_type type;
    const uint8_t *payload; /* into r->block */
    size_t len;
    uint64_t off;    /* file offset of the header */
    uint64_t end;    /* FRAG_OK: just past the payload */
    uint64_t eof_at; /* FRAG_EOF: where the file ends */
    bool zeros;      /* FRAG_BAD: the header is all zeros (preallocated or never written) */
    char why[96];    /* FRAG_TRUNCATED / FRAG_BAD: what is wrong */
} fragment;

st_status st_log_reader_create(st_env *env, st_file *file, const char *name, uint64_t offset,
                               st_log_reader **out)
{
    st_log_reader *r = calloc(1, sizeof(*r));
    if (!r)
        goto nomem;
    size_t nlen = strlen(name) + 1;
    r->name = malloc(nlen);
    r->block = malloc(ST_LOG_BLOCK_SIZE);
    if (!r->name || !r->block)
        goto nomem;
    memcpy(r->name, name, nlen);
    r->env = env;
    r->file = file;
    st_buf_init(&r->rec);
    r->block_start = offset - offset % ST_LOG_BLOCK_SIZE;
    r->pos = (size_t)(offset % ST_LOG_BLOCK_SIZE);
    r->block_len = 0;
    r->good_end = offset;
    r->restart = offset;
    r->limit = UINT64_MAX;
    *out = r;
    return ST_OK;

nomem:
    st_log_reader_destroy(r);
    return st_error(ST_NO_MEMORY, "%s: out of memory for a log reader", name);
}

void st_log_reader_destroy(st_log_reader *r)
{
    if (!r)
        return;
    st_buf_free(&r->rec);
    free(r->block);
    free(r->name);
    free(r);
}

uint64_t st_log_reader_good_end(const st_log_reader *r)
{
    return r->good_end;
}

void st_log_reader_set_strict(st_log_reader *r, bool strict)
{
    r->strict = strict;
}

void st_log_reader_set_limit(st_log_reader *r, uint64_t limit)
{
    if (limit < r->block_start + r->block_len)
        r->block_len = 0; /* forget cached bytes, some past the new limit (fill reads again) */
    r->limit = limit;
}

uint64_t st_log_reader_torn_bytes(const st_log_reader *r)
{
    return r->torn;
}

/* Position at `off`, forgetting cached bytes: the owner may have truncated and rewritten. */
static void seek(st_log_reader *r, uint64_t off)
{
    r->block_start = off - off % ST_LOG_BLOCK_SIZE;
    r->pos = (size_t)(off % ST_LOG_BLOCK_SIZE);
    r->block_len = 0;
}

/* env->read_at, but the file seems to end at r->limit. */
static st_status read_limited(st_log_reader *r, uint64_t off, uint8_t *buf, size_t n, size_t *got)
{
    *got = 0;
    if (off >= r->limit)
        return ST_OK;
    if (r->limit - off < n)
        n = (size_t)(r->limit - off);
    return r->env->read_at(r->file, off, buf, n, got);
}

/* Make block[0, need) present if the file has those bytes (need <= block size). */
static st_status fill(st_log_reader *r, size_t need)
{
    if (r->block_len >= need)
        return ST_OK;
    size_t got = 0;
    st_status s = read_limited(r, r->block_start + r->block_len, r->block + r->block_len,
                               ST_LOG_BLOCK_SIZE - r->block_len, &got);
    if (s != ST_OK)
        return s;
    r->block_len += got;
    return ST_OK;
}

static size_t frag_length(const uint8_t *h)
{
    return (size_t)h[4] | ((size_t)h[5] << 8);
}

static bool crc_ok(const uint8_t *h, size_t len)
{
    /* The type byte and the payload are contiguous: one CRC over both. */
    uint32_t expect = st_crc32c_unmask(st_get_fixed32(h));
    return st_crc32c(h + 6, len + 1) == expect;
}

/*
 * Is there an intact fragment at b[q] in a block whose first n bytes are b? Intact: header and
 * payload inside the block and inside n, a known type, the right CRC. Never reads past b[n).
 */
static bool frag_intact(const uint8_t *b, size_t n, size_t q, st_log_type *type, size_t *len)
{
    if (q > n || n - q < ST_LOG_HEADER_SIZE)
        return false;
    const uint8_t *h = b + q;
    if (h[6] == ST_LOG_ZERO || h[6] > ST_LOG_MAX_TYPE)
        return false;
    size_t l = frag_length(h);
    if (l > ST_LOG_BLOCK_SIZE - q - ST_LOG_HEADER_SIZE || l > n - q - ST_LOG_HEADER_SIZE)
        return false;
    if (!crc_ok(h, l))
        return false;
    *type = (st_log_type)h[6];
    *len = l;
    return true;
}

static bool is_start(st_log_type t)
{
    return t == ST_LOG_FULL || t == ST_LOG_FIRST;
}

/*
 * Look for a valid start (an intact FULL or FIRST fragment) at or after file offset `from`, up
 * to the current end of the file. In the block holding `from` every byte offset is tried, since
 * the damage may have destroyed the length that would lead to the next fragment. In each later
 * block the fragment chain is followed from the block's start (a block always starts with a
 * fragment) and every byte offset after the point where it breaks is tried.
 *
 * Uses r->block as scratch; the caller seeks afterwards. *file_end is where the file ended.
 */
static st_status scan_for_start(st_log_reader *r, uint64_t from, bool *found, uint64_t *at,
                                uint64_t *file_end)
{
    uint64_t off = from;
    bool follow_chain = false;
    *found = false;
    for (;;) {
        uint64_t bstart = off - off % ST_LOG_BLOCK_SIZE;
        size_t p = (size_t)(off % ST_LOG_BLOCK_SIZE);
        size_t n = 0;
        st_status s = read_limited(r, bstart, r->block, ST_LOG_BLOCK_SIZE, &n);
        r->block_start = bstart;
        r->block_len = n;
        if (s != ST_OK)
            return s;
        st_log_type t;
        size_t len;
        if (follow_chain) {
            while (ST_LOG_BLOCK_SIZE - p >= ST_LOG_HEADER_SIZE &&
                   frag_intact(r->block, n, p, &t, &len)) {
                if (is_start(t)) {
                    *found = true;
                    *at = bstart + p;
                    return ST_OK;
                }
                p += ST_LOG_HEADER_SIZE + len;
            }
        }
        for (size_t q = p; q < n && n - q >= ST_LOG_HEADER_SIZE; q++) {
            uint8_t ty = r->block[q + 6];
            if ((ty == ST_LOG_FULL || ty == ST_LOG_FIRST) &&
                frag_intact(r->block, n, q, &t, &len)) {
                *found = true;
                *at = bstart + q;
                return ST_OK;
            }
        }
        if (n < ST_LOG_BLOCK_SIZE) {
            *file_end = bstart + (n > p ? n : p);
            return ST_OK;
        }
        off = bstart + ST_LOG_BLOCK_SIZE;
        follow_chain = true;
    }
}

/* Read the fragment at the reader's position and, if it is intact, move past it. */
static st_status read_fragment(st_log_reader *r, fragment *f)
{
    st_status s;
    f->why[0] = '\0';
    for (;;) {
        if (ST_LOG_BLOCK_SIZE - r->pos < ST_LOG_HEADER_SIZE) {
            /* A trailer: skip it, but only once the whole block is known to be there. */
            s = fill(r, ST_LOG_BLOCK_SIZE);
            if (s != ST_OK)
                return s;
            if (r->block_len < ST_LOG_BLOCK_SIZE) {
                f->kind = FRAG_EOF;
                f->off = r->block_start + r->pos;
                f->eof_at = r->block_start + (r->block_len > r->pos ? r->block_len : r->pos);
                return ST_OK;
            }
            r->block_start += ST_LOG_BLOCK_SIZE;
            r->pos = 0;
            r->block_len = 0;
            continue;
        }
        break;
    }
    f->off = r->block_start + r->pos;
    s = fill(r, r->pos + ST_LOG_HEADER_SIZE);
    if (s != ST_OK)
        return s;
    if (r->block_len <= r->pos) {
        f->kind = FRAG_EOF;
        f->eof_at = f->off;
        return ST_OK;
    }
    if (r->block_len - r->pos < ST_LOG_HEADER_SIZE) {
        f->kind = FRAG_TRUNCATED;
        snprintf(f->why, sizeof(f->why), "the file ends inside the fragment header");
        return ST_OK;
    }
    const uint8_t *h = r->block + r->pos;
    size_t len = frag_length(h);
    f->zeros = false;
    uint8_t type = h[6];
    if (type == ST_LOG_ZERO && len == 0 && st_get_fixed32(h) == 0) {
        f->kind = FRAG_BAD;
        f->zeros = true;
        snprintf(f->why, sizeof(f->why), "unknown fragment type 0 (zero-filled)");
        return ST_OK;
    }
    if (len > ST_LOG_BLOCK_SIZE - r->pos - ST_LOG_HEADER_SIZE) {
        s = fill(r, ST_LOG_BLOCK_SIZE);
        if (s != ST_OK)
            return s;
        if (r->block_len < ST_LOG_BLOCK_SIZE) {
            /* The file ends inside this block: a write cut short, not a damaged length. */
            f->kind = FRAG_TRUNCATED;
            snprintf(f->why, sizeof(f->why), "the file ends inside a fragment of %zu bytes", len);
            return ST_OK;
        }
        f->kind = FRAG_BAD;
        snprintf(f->why, sizeof(f->why), "fragment length %zu runs past the end of its block", len);
        return ST_OK;
    }
    s = fill(r, r->pos + ST_LOG_HEADER_SIZE + len);
    if (s != ST_OK)
        return s;
    h = r->block + r->pos;
    if (r->block_len < r->pos + ST_LOG_HEADER_SIZE + len) {
        f->kind = FRAG_TRUNCATED;
        snprintf(f->why, sizeof(f->why), "the file ends inside a fragment of %zu bytes", len);
        return ST_OK;
    }
    /* The type is judged only once the fragment is known to be whole: a write cut short is
     * torn, whatever its header's bytes say. */
    if (type == ST_LOG_ZERO || type > ST_LOG_MAX_TYPE) {
        f->kind = FRAG_BAD;
        snprintf(f->why, sizeof(f->why), "unknown fragment type %u", (unsigned)type);
        return ST_OK;
    }
    if (!crc_ok(h, len)) {
        f->kind = FRAG_BAD;
        snprintf(f->why, sizeof(f->why), "checksum mismatch");
        return ST_OK;
    }
    f->kind = FRAG_OK;
    f->type = (st_log_type)type;
    f->payload = h + ST_LOG_HEADER_SIZE;
    f->len = len;
    r->pos += ST_LOG_HEADER_SIZE + len;
    f->end = r->block_start + r->pos;
    return ST_OK;
}

/* The end of the log as far as the bytes go: report the tail as torn, and rewind. */
static st_status torn_tail(st_log_reader *r, uint64_t file_end)
{
    r->torn = file_end > r->restart ? file_end - r->restart : 0;
    seek(r, r->restart);
    return st_error(ST_NOT_FOUND, "%s: end of log at offset %llu (%llu torn bytes after it)",
                    r->name, (unsigned long long)r->restart, (unsigned long long)r->torn);
}

/*
 * A damaged fragment at `off` (inside the record starting at rec_off when in_rec). Corruption if
 * a valid start follows at or after `scan_from`, a torn tail otherwise.
 */
static st_status damaged(st_log_reader *r, uint64_t off, bool in_rec, uint64_t rec_off,
                         uint64_t scan_from, const char *why)
{
    bool found;
    uint64_t at = 0, file_end = 0;
    st_status s = scan_for_start(r, scan_from, &found, &at, &file_end);
    if (s != ST_OK) {
        seek(r, r->restart);
        return s;
    }
    if (!found)
        return torn_tail(r, file_end);
    seek(r, at);
    r->restart = at;
    if (in_rec)
        return st_error(ST_CORRUPTION,
                        "%s: corrupt log fragment at offset %llu (in the record at offset %llu): "
                        "%s; a valid record follows at offset %llu",
                        r->name, (unsigned long long)off, (unsigned long long)rec_off, why,
                        (unsigned long long)at);
    return st_error(ST_CORRUPTION,
                    "%s: corrupt log fragment at offset %llu: %s; a valid record follows at "
                    "offset %llu",
                    r->name, (unsigned long long)off, why, (unsigned long long)at);
}

st_status st_log_reader_next(st_log_reader *r, st_slice *record, uint64_t *record_offset)
{
    bool in_rec = false;
    uint64_t rec_off = 0;
    st_buf_clear(&r->rec);
    r->torn = 0;
    for (;;) {
        fragment f;
        st_status s = read_fragment(r, &f);
        if (s != ST_OK) {
            seek(r, r->restart);
            return s;
        }
        switch (f.kind) {
        case FRAG_EOF:
            /* A record still open here is a write cut short: nothing follows it. */
            return torn_tail(r, f.eof_at);
        case FRAG_TRUNCATED:
            return damaged(r, f.off, in_rec, rec_off, f.off + 1, f.why);
        case FRAG_BAD:
            s = damaged(r, f.off, in_rec, rec_off, f.off + 1, f.why);
            if (s == ST_NOT_FOUND && r->strict && !f.zeros) {
                /* Whole, and still wrong: damage, not a write cut short. */
                r->torn = 0;
                return st_error(ST_CORRUPTION,
                                "%s: the last record (at offset %llu) is complete but damaged: "
                                "%s",
                                r->name, (unsigned long long)f.off, f.why);
            }
            return s;
        case FRAG_OK:
            break;
        }

        if (is_start(f.type) && in_rec) {
            /* The open record lost its LAST; this fragment is the valid start to resume at. */
            seek(r, f.off);
            r->restart = f.off;
            return st_error(ST_CORRUPTION,
                            "%s: corrupt log record at offset %llu: no LAST fragment before the "
                            "record at offset %llu",
                            r->name, (unsigned long long)rec_off, (unsigned long long)f.off);
        }
        if (!is_start(f.type) && !in_rec)
            return damaged(r, f.off, false, 0, f.end,
                           f.type == ST_LOG_MIDDLE ? "MIDDLE fragment outside a record"
                                                   : "LAST fragment outside a record");

        if (f.type == ST_LOG_FULL) {
            *record = st_slice_make(f.payload, f.len);
            if (record_offset)
                *record_offset = f.off;
            r->good_end = r->restart = f.end;
            return ST_OK;
        }
        if (f.type == ST_LOG_FIRST) {
            in_rec = true;
            rec_off = f.off;
        }
        if (!st_buf_append(&r->rec, f.payload, f.len)) {
            seek(r, r->restart);
            return st_error(ST_NO_MEMORY, "%s: out of memory for the record at offset %llu",
                            r->name, (unsigned long long)rec_off);
        }
        if (f.type == ST_LOG_LAST) {
            *record = st_slice_make(r->rec.data, r->rec.len);
            if (record_offset)
                *record_offset = rec_off;
            r->good_end = r->restart = f.end;
            return ST_OK;
        }
    }
}
