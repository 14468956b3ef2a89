/*
 * raft_state.h - the term and vote a node must never forget.
 *
 * Stored in <dir>/raft_state as
 *   magic:fixed32 ("STRS") version:byte term:fixed64 voted_for:fixed32 mcrc:fixed32
 * and replaced atomically (write raft_state.tmp, fsync, rename, fsync the directory), so a crash
 * leaves the old or the new state. Callers save before any reply that depends on the state.
 */
#ifndef STRATA_REPLICATION_RAFT_STATE_H
#define STRATA_REPLICATION_RAFT_STATE_H

#include <stdint.h>

#include "engine/env.h"

typedef struct st_raft_state {
    uint64_t term;
    uint32_t voted_for; /* node id voted for in `term`; 0 = nobody */
} st_raft_state;

/* Load the state; a missing file is term 0, no vote. ST_CORRUPTION naming the file if damaged. */
st_status st_raft_state_load(st_env *env, const char *dir, st_raft_state *out);

/* Replace the state durably. */
st_status st_raft_state_save(st_env *env, const char *dir, const st_raft_state *st);

#endif
