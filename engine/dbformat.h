/*
 * dbformat.h - internal keys: how a user key, a sequence number and a kind sort together.
 *
 * An internal key is the user key followed by an 8-byte little-endian tag,
 * tag = (sequence << 8) | kind. Internal keys sort by user key ascending (bytewise), then by tag
 * descending, so the newest version of a key comes first and a seek to (key, snapshot_seq,
 * ST_KIND_SEEK) lands on the newest version visible at that snapshot. (LevelDB dbformat.h.)
 */
#ifndef STRATA_ENGINE_DBFORMAT_H
#define STRATA_ENGINE_DBFORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/coding.h"
#include "engine/slice.h"

typedef enum st_kind {
    ST_KIND_DELETE = 0, /* a tombstone */
    ST_KIND_PUT = 1,
} st_kind;

/* The largest kind: for a given sequence, a seek key with this kind sorts before every entry. */
#define ST_KIND_SEEK ST_KIND_PUT

/* Sequences use 56 bits of the tag. */
#define ST_MAX_SEQ ((UINT64_C(1) << 56) - 1)

#define ST_TAG_BYTES 8

static inline uint64_t st_pack_tag(uint64_t seq, st_kind kind)
{
    return (seq << 8) | (uint64_t)kind;
}

/* Append user_key + tag to dst (which has room for user_key.len + 8); return the end. */
static inline uint8_t *st_encode_ikey(uint8_t *dst, st_slice user_key, uint64_t seq, st_kind kind)
{
    if (user_key.len)
        memcpy(dst, user_key.data, user_key.len);
    st_put_fixed64(dst + user_key.len, st_pack_tag(seq, kind));
    return dst + user_key.len + ST_TAG_BYTES;
}

/* The parts of a well-formed internal key (ikey.len >= 8; check with st_ikey_valid first). */
static inline st_slice st_ikey_user(st_slice ikey)
{
    return st_slice_make(ikey.data, ikey.len - ST_TAG_BYTES);
}

static inline uint64_t st_ikey_tag(st_slice ikey)
{
    return st_get_fixed64(ikey.data + ikey.len - ST_TAG_BYTES);
}

static inline uint64_t st_ikey_seq(st_slice ikey)
{
    return st_ikey_tag(ikey) >> 8;
}

static inline st_kind st_ikey_kind(st_slice ikey)
{
    return (st_kind)(st_ikey_tag(ikey) & 0xff);
}

/* True if ikey has a tag and a known kind: the check for internal keys read from disk. */
static inline bool st_ikey_valid(st_slice ikey)
{
    return ikey.len >= ST_TAG_BYTES && (st_ikey_tag(ikey) & 0xff) <= ST_KIND_PUT;
}

/* Order of internal keys: user key ascending, then tag descending. */
static inline int st_ikey_cmp(st_slice a, st_slice b)
{
    int r = st_slice_cmp(st_ikey_user(a), st_ikey_user(b));
    if (r == 0) {
        uint64_t ta = st_ikey_tag(a), tb = st_ikey_tag(b);
        r = (ta < tb) - (ta > tb);
    }
    return r;
}

/*
 * A lookup key for (user_key, seq): the internal key (user_key, seq, ST_KIND_SEEK) in a small
 * inline buffer, spilling to the heap for long keys. Free with st_lookup_key_free.
 */
typedef struct st_lookup_key {
    uint8_t *data;
    size_t len;
    uint8_t space[200];
} st_lookup_key;

bool st_lookup_key_init(st_lookup_key *lk, st_slice user_key, uint64_t seq);
void st_lookup_key_free(st_lookup_key *lk);

static inline st_slice st_lookup_ikey(const st_lookup_key *lk)
{
    return st_slice_make(lk->data, lk->len);
}

#endif
