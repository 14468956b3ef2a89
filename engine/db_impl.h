/*
 * db_impl.h - the inside of an st_db, shared by db.c (open, writes, reads, background threads),
 * compaction.c (picking and merging) and db_iter.c. Not part of the public interface.
 *
 * Locks, in the order they may be taken:
 *   manifest_mu  serialises version changes (st_vset_apply + st_vset_install);
 *   mu           the writer queue, memtable switches, immutables, pending records, snapshots,
 *                background state; `vs->current` is written with both manifest_mu and mu held
 *                and may be read with either;
 *   sv_mu        only the `sv` pointer: readers take a reference under it and let go at once, so
 *                a read never waits for a write, flush or compaction.
 * No lock is held across WAL or table I/O, except for rare maintenance (segment rotation and
 * truncation) done by the leader of the writer queue under mu.
 */
#ifndef STRATA_ENGINE_DB_IMPL_H
#define STRATA_ENGINE_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/cache.h"
#include "engine/db.h"
#include "engine/env.h"
#include "engine/memtable.h"
#include "engine/table_cache.h"
#include "engine/version.h"
#include "engine/wal.h"

/* What readers need, pinned together: the memtables and the version of one moment. */
typedef struct st_super_version {
    atomic_int refs;
    st_memtable *mem;
    st_memtable **imms; /* newest first */
    size_t nimms;
    st_version *version;
} st_super_version;

typedef struct st_imm {
    st_memtable *mem;
    uint64_t last_seq; /* highest sequence applied to it */
} st_imm;

/* A record appended to the WAL but not yet applied (replication). */
typedef struct st_pending {
    uint64_t seq, last_seq, term;
    uint64_t segment, offset; /* where it starts in the WAL */
    uint8_t *data;            /* a copy of the encoded record */
    size_t len;
} st_pending;

struct st_snapshot {
    uint64_t seq;
    struct st_snapshot *prev, *next; /* in db->snapshots, oldest first; guarded by mu */
};

typedef enum st_writer_kind {
    ST_W_APPLY,         /* append a batch and apply it (st_db_write) */
    ST_W_APPEND,        /* append a batch, leave it pending (st_db_log_append) */
    ST_W_RECORDS,       /* append records from a leader, leave them pending */
    ST_W_APPLY_PENDING, /* apply pending records up to `arg` */
    ST_W_TRUNCATE,      /* drop pending records after `arg` */
    ST_W_SWITCH,        /* make the memtable immutable (st_db_flush) */
    ST_W_INSTALL,       /* replace everything with a checkpoint (`install`) */
} st_writer_kind;

typedef struct st_writer {
    st_writer_kind kind;
    st_slice rep;   /* ST_W_APPLY / ST_W_APPEND: the batch record (header not yet filled) */
    uint32_t count; /* its operations */
    uint64_t term;
    const st_slice *records; /* ST_W_RECORDS */
    size_t nrecords;
    uint64_t arg;
    st_log_written_fn written; /* ST_W_APPEND: called before the sync (st_db_log_append_early) */
    void *written_ctx;
    struct st_version_set *install; /* ST_W_INSTALL: the checkpoint's recovered versions */
    const char *install_dir;
    /* Results, set by whichever writer leads the group. */
    st_status status;
    char msg[256];
    uint64_t last_seq;
    bool done;
    pthread_cond_t cv;
    struct st_writer *next;
} st_writer;

/* A manual compaction request (st_db_compact_range). */
typedef struct st_manual {
    st_buf begin, end; /* user keys; empty = unbounded */
    int level;         /* next level to compact from */
    int target;        /* compact down into this level */
    bool done;
    st_status status;
    char msg[256];
} st_manual;

struct st_db {
    char *dir, *sst_dir;
    st_options opts;
    st_env *env;
    st_filelock *lock;
    st_cache *block_cache;
    st_table_cache *tc;
    st_graveyard *graveyard;
    st_version_set *vs;
    st_wal *wal;

    pthread_mutex_t manifest_mu;
    /*
     * Held, before mu, by whoever inserts into or replaces the memtable or drops pending records:
     * the queue leader of every kind but ST_W_APPEND and ST_W_RECORDS, or st_db_log_apply while
     * the memtable has room. So committed records reach the memtable beside an append and its
     * sync in progress, instead of queueing behind them.
     */
    pthread_mutex_t apply_mu;
    pthread_mutex_t mu;
    pthread_cond_t flush_cv;   /* wakes the flush thread */
    pthread_cond_t compact_cv; /* wakes the compaction thread */
    pthread_cond_t room_cv;    /* background progress: stalled writers, flush and compact waiters */

    /* guarded by mu */
    st_writer *wq_head, *wq_tail;
    st_memtable *mem; /* replaced and written by the holder of apply_mu */
    st_imm *imms;     /* oldest first */
    size_t nimms, cap_imms;
    st_pending *pending; /* in sequence order */
    size_t npending, cap_pending;
    st_snapshot snapshots; /* list head */
    uint32_t nsnapshots;
    uint64_t last_seq; /* last appended */
    uint64_t term;     /* term for st_db_put / delete / write */
    uint64_t retain_seq;
    bool wal_dirty; /* appended since the last sync */
    bool shutting_down;
    st_status bg_error; /* sticky: refuses writes once set */
    char bg_msg[256];
    st_manual *manual;
    bool compaction_running;
    uint64_t last_manifest_seen;

    pthread_mutex_t sv_mu;
    st_super_version *sv; /* guarded by sv_mu */

    atomic_uint_fast64_t visible_seq; /* last applied; readers read at this */
    /* Bumped (under manifest_mu and mu) when a checkpoint replaces the contents: a flush or
       compaction that began before must not install its result. */
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t last_sync_micros; /* when the WAL was last synced */

    st_buf group; /* the leader's scratch for a group record */

    pthread_t flush_thread, compact_thread;
    bool threads_started;

    /* Counters (relaxed atomics: exact enough for stats). */
    atomic_uint_fast64_t n_writes, n_groups, n_syncs, n_user_bytes, n_wal_bytes, n_flushes,
        n_flush_bytes, n_compactions, n_seek_compactions, n_comp_read, n_comp_written, n_stalls,
        n_stall_micros, n_stall_timeouts;
};

/* Emit one log line through opts.log (no lock may be held). */
void st_db_logf(st_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record a sticky background error (mu held) and wake everyone who waits on progress. */
void st_db_set_bg_error(st_db *db, st_status s, const char *msg);

/* Take a reference to the current super version (any thread, no lock held). */
st_super_version *st_db_sv_acquire(st_db *db);
void st_db_sv_release(st_super_version *sv);

/* The oldest sequence any reader may still ask for (mu held). */
uint64_t st_db_smallest_snapshot(st_db *db);

/* Register / unregister a snapshot at `seq` (mu held). */
void st_db_snapshot_link(st_db *db, st_snapshot *s);
void st_db_snapshot_unlink(st_db *db, st_snapshot *s);

/* Apply edit e under manifest_mu, install the result, publish a new super version. Takes mu
   itself; call with no lock held. `generation` is db->generation when the work behind the edit
   began: if a checkpoint was installed since, nothing is applied and *stale is set (the caller
   discards its outputs; it is not an error). */
st_status st_db_apply_edit(st_db *db, st_version_edit *e, uint64_t generation, bool *stale);

/* Delete files no version holds and WAL segments nobody needs. No lock held. */
void st_db_delete_obsolete(st_db *db);

/* ---- compaction.c ------------------------------------------------------------------------ */

/* Body of the compaction thread. */
void *st_compaction_thread(void *arg);

/* ---- db_iter.c --------------------------------------------------------------------------- */

/*
 * The user-facing iterator over `internal` (a merging iterator over internal keys, owned) at
 * sequence `seq`, bounded to [start, end). `snap` (owned, linked into db's snapshot list) is
 * unlinked and freed on destroy when non-NULL.
 */
st_status st_db_iter_wrap(st_db *db, st_iterator *internal, uint64_t seq, st_snapshot *snap,
                          st_slice start, st_slice end, st_iter **out);

/*
 * Let the iterator sample what it reads, about once per MiB, against the tables of `v` (which it
 * references until destroyed), so that tables its reads keep passing through get compacted
 * (st_version_sample). Without it an iterator samples nothing.
 */
void st_db_iter_sample_version(st_iter *it, st_version *v);

/* A read found a table that used up its seek budget: have the compaction thread see to it. */
void st_db_note_seek_hint(st_db *db, st_version *v, const st_seek_hint *hint);

#endif
