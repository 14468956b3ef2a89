/*
 * write_batch.h - the encoding of a batch, which is also the payload of a WAL record.
 *
 *   record  = seq:fixed64 term:fixed64 count:fixed32 op{count}
 *   op      = 0x01 key:lp value:lp      ; put
 *           / 0x00 key:lp               ; delete
 *           / 0x02                      ; no-op: takes a sequence, changes nothing
 *   lp      = varint32 length, bytes
 *
 * A record's operations take sequences seq, seq+1, …, seq+count-1 in order (engine/FORMAT.md).
 * st_batch (public, db.h) is a record whose count is kept current and whose sequence and term
 * are filled in when it is written.
 */
#ifndef STRATA_ENGINE_WRITE_BATCH_H
#define STRATA_ENGINE_WRITE_BATCH_H

#include "engine/coding.h"
#include "engine/db.h"
#include "engine/dbformat.h"

#define ST_BATCH_HEADER 20

/* The op code of a no-op (puts and deletes use their st_kind values). */
#define ST_OP_NOOP 2

struct st_batch {
    st_buf rep; /* always at least ST_BATCH_HEADER bytes */
    uint32_t count;
};

/* The encoded record of a batch (header not yet meaningful). Borrowed from b. */
static inline st_slice st_batch_rep(const st_batch *b)
{
    return st_slice_make(b->rep.data, b->rep.len);
}

/* Append the operations of `rep` (an encoded record) to dst's. Returns false on allocation failure.
 */
bool st_batch_append_rep(st_batch *dst, st_slice rep);

/* Write seq and term into an encoded record in place (rep.len >= ST_BATCH_HEADER). */
void st_record_set_header(uint8_t *rep, uint64_t seq, uint64_t term, uint32_t count);

typedef st_status (*st_record_op_fn)(void *ctx, uint64_t seq, st_kind kind, st_slice key,
                                     st_slice value);

/*
 * Check that `rep` is a well-formed record (header, exactly `count` operations, nothing after)
 * and fill *info. ST_CORRUPTION with a message on any defect. `what` names the source in
 * messages ("wal/000004.log offset 512").
 */
st_status st_record_check(st_slice rep, const char *what, st_log_record_info *info);

/*
 * Call fn for every put and delete of a record already checked by st_record_check, with its
 * sequence (no-ops take their sequence but are not passed to fn).
 * Stops at the first non-OK status from fn and returns it. Slices are borrowed from rep.
 */
st_status st_record_foreach(st_slice rep, st_record_op_fn fn, void *ctx);

/* Check every key and value of a record against limits; ST_INVALID_ARGUMENT naming the offender. */
st_status st_record_check_limits(st_slice rep, size_t max_key, size_t max_value);

#endif
