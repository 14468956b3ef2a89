/*
 * block.h - data blocks of a table's .dat file: the builder, and a reader that seeks and walks
 * both ways with the restart array (format: engine/format/sst.md, ".dat — data blocks").
 *
 * Keys in a block are internal keys (engine/dbformat.h), strictly increasing by st_ikey_cmp.
 * A finished block is `contents mcrc`; its size below always includes the 4-byte trailer.
 *
 * Reading a block is three steps, so that callers choose when the CRC is paid for (the table
 * checks it once per block read with pread, or once per mapped block):
 *   st_block_check_crc -> st_block_init -> st_block_cursor_* (or st_block_iter_create).
 * The reader never trusts the bytes: any inconsistency it meets is ST_CORRUPTION with a message
 * naming `fname` and the absolute offset (block_off + offset in the block). It never reads outside
 * [block, block + size).
 */
#ifndef STRATA_ENGINE_BLOCK_H
#define STRATA_ENGINE_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/iterator.h"
#include "engine/slice.h"
#include "engine/status.h"

/* ---- Builder (one thread) ---- */

typedef struct st_block_builder st_block_builder;

/* A builder with a restart point every restart_interval entries (>= 1, else ST_INVALID_ARGUMENT).
 */
st_status st_block_builder_create(int restart_interval, st_block_builder **out);

/* Accepts NULL. */
void st_block_builder_destroy(st_block_builder *b);

/* Forget the block being built (or finished) and start an empty one. */
void st_block_builder_reset(st_block_builder *b);

/*
 * Append an entry (both slices borrowed for the call; the bytes are copied). key must be a valid
 * internal key greater than the previous one (asserted: the caller checks its input). Returns
 * ST_NO_MEMORY, or ST_INVALID_ARGUMENT if the block would outgrow the fixed32 offsets.
 */
st_status st_block_builder_add(st_block_builder *b, st_slice key, st_slice value);

/* The size the block would have if finished now, trailer included. */
size_t st_block_builder_size(const st_block_builder *b);

/* Entries added since the last reset. */
size_t st_block_builder_entries(const st_block_builder *b);

/*
 * Close the block: append the restart array, its count and the masked CRC. *block (borrowed)
 * stays valid until the next reset or destroy. Adding after finish is not allowed (asserted).
 */
st_status st_block_builder_finish(st_block_builder *b, st_slice *block);

/* ---- Reader ---- */

/* A parsed block: the bytes are borrowed from whoever holds them (a map, a cache entry). */
typedef struct st_block {
    const uint8_t *data;   /* start of the block */
    uint32_t restarts_off; /* entries lie in [0, restarts_off); the restart array follows */
    uint32_t num_restarts;
} st_block;

/* Check the trailer CRC of the block [block, block + size) (size includes the trailer). */
st_status st_block_check_crc(const uint8_t *block, size_t size, const char *fname,
                             uint64_t block_off);

/*
 * Parse the restart count of [block, block + size) into *b. Does not check the CRC; the entries
 * are checked as they are read. `fname` and `block_off` only make messages.
 */
st_status st_block_init(st_block *b, const uint8_t *block, size_t size, const char *fname,
                        uint64_t block_off);

/*
 * Walk the whole block and check its structure: every entry parses, restart offsets are strictly
 * increasing entry boundaries starting at 0 whose entries have shared = 0, keys are valid and
 * strictly increasing, there is at least one entry. *entries (may be NULL) gets the count.
 */
st_status st_block_verify(const st_block *b, const char *fname, uint64_t block_off,
                          size_t *entries);

/*
 * A cursor over one block, for callers that must not allocate (the table's get). Fields are
 * private. The key of the current entry lives in the block when it is a restart point and in
 * key_space otherwise; keys longer than ST_BLOCK_KEY_INLINE bytes spill to the heap, which
 * st_block_cursor_free releases. A cursor must not be copied (it may own that buffer).
 *
 * The cursor borrows the block's bytes and `fname` until it is retargeted or freed. After an
 * error it stays invalid and status() returns the error until it is retargeted (the message was
 * set for the calling thread when the error was met).
 */
#define ST_BLOCK_KEY_INLINE 120

typedef struct st_block_cursor {
    const uint8_t *data;
    uint32_t restarts_off, num_restarts;
    uint32_t cur;         /* offset of the current entry; restarts_off when invalid */
    uint32_t next_off;    /* offset just past the current entry */
    uint32_t restart_idx; /* restart interval that holds cur */
    uint32_t val_len;
    const uint8_t *val;
    const uint8_t *key_ext; /* the key, when it lies whole in the block; else NULL */
    size_t key_len;
    uint8_t *key_heap; /* owned; NULL while key_space suffices */
    size_t key_cap;
    st_status status;
    const char *fname;
    uint64_t block_off;
    uint8_t key_space[ST_BLOCK_KEY_INLINE];
} st_block_cursor;

/* Start a cursor on block b (invalid until positioned). */
void st_block_cursor_init(st_block_cursor *c, const st_block *b, const char *fname,
                          uint64_t block_off);
/* Point an initialised cursor at another block, keeping its key buffer; clears the status. */
void st_block_cursor_retarget(st_block_cursor *c, const st_block *b, const char *fname,
                              uint64_t block_off);
/* Release the key buffer; the cursor is invalid afterwards. */
void st_block_cursor_free(st_block_cursor *c);

static inline bool st_block_cursor_valid(const st_block_cursor *c)
{
    return c->cur < c->restarts_off;
}
void st_block_cursor_seek_first(st_block_cursor *c);
void st_block_cursor_seek_last(st_block_cursor *c);
/* First entry >= target (internal-key order); invalid with ST_OK status if there is none. */
void st_block_cursor_seek(st_block_cursor *c, st_slice target);
void st_block_cursor_next(st_block_cursor *c); /* requires valid */
void st_block_cursor_prev(st_block_cursor *c); /* requires valid */
static inline st_slice st_block_cursor_key(const st_block_cursor *c)
{
    return st_slice_make(c->key_ext ? c->key_ext : (c->key_heap ? c->key_heap : c->key_space),
                         c->key_len);
}
static inline st_slice st_block_cursor_value(const st_block_cursor *c)
{
    return st_slice_make(c->val, c->val_len);
}
static inline st_status st_block_cursor_status(const st_block_cursor *c)
{
    return c->status;
}

/*
 * An st_iterator over block b. Borrows the block's bytes and fname for the iterator's life.
 * NULL only if memory runs out.
 */
st_iterator *st_block_iter_create(const st_block *b, const char *fname, uint64_t block_off);

#endif
