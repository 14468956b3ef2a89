/* db.c - opening a database, the write queue, reads, flushes, the replicated-log calls. */
#include "engine/db_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/filename.h"
#include "engine/log_reader.h"
#include "engine/merger.h"
#include "engine/sst_builder.h"
#include "engine/table.h"
#include "engine/write_batch.h"

/* A group of writers is cut once its record passes this size (a big batch goes alone). */
#define MAX_GROUP_BYTES (1u << 20)

void st_options_init(st_options *o)
{
    memset(o, 0, sizeof(*o));
    o->create_if_missing = true;
    o->sync = ST_SYNC_ALWAYS;
    o->sync_interval_ms = 100;
    o->memtable_bytes = 4u << 20;
    o->max_immutables = 4;
    o->stall_timeout_ms = 10000;
    o->l0_compaction_trigger = 4;
    o->l0_stop_trigger = 24;
    o->level1_bytes = 32u << 20;
    o->table_bytes = 4u << 20;
    o->block_bytes = 4096;
    o->bloom_bits_per_key = 10;
    o->block_cache_bytes = 8u << 20;
    o->max_open_tables = 1000;
    o->mmap_reads = true;
    o->max_key_bytes = 8u << 10;
    o->max_value_bytes = 4u << 20;
    o->replay = ST_REPLAY_ALL;
}

void st_free(void *p)
{
    free(p);
}

void st_db_logf(st_db *db, const char *fmt, ...)
{
    if (!db->opts.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    db->opts.log(db->opts.log_ctx, line);
}

static void log_thunk(void *ctx, const char *line)
{
    st_db *db = ctx;
    if (db->opts.log)
        db->opts.log(db->opts.log_ctx, line);
}

void st_db_set_bg_error(st_db *db, st_status s, const char *msg)
{
    if (db->bg_error == ST_OK) {
        db->bg_error = s;
        snprintf(db->bg_msg, sizeof(db->bg_msg), "%s", msg);
    }
    pthread_cond_broadcast(&db->room_cv);
}

static st_status bg_error_status(st_db *db)
{
    return st_error(db->bg_error, "writes refused after an earlier failure: %s", db->bg_msg);
}

static uint64_t now_micros(st_db *db)
{
    return db->env->now_micros(db->env);
}

/* ---- super versions ---------------------------------------------------------------------- */

st_super_version *st_db_sv_acquire(st_db *db)
{
    pthread_mutex_lock(&db->sv_mu);
    st_super_version *sv = db->sv;
    atomic_fetch_add_explicit(&sv->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&db->sv_mu);
    return sv;
}

void st_db_sv_release(st_super_version *sv)
{
    if (!sv || atomic_fetch_sub_explicit(&sv->refs, 1, memory_order_acq_rel) != 1)
        return;
    st_memtable_unref(sv->mem);
    for (size_t i = 0; i < sv->nimms; i++)
        st_memtable_unref(sv->imms[i]);
    free(sv->imms);
    st_version_unref(sv->version);
    free(sv);
}

/* Publish the current memtables and version to readers (mu held). */
static st_status install_sv(st_db *db)
{
    st_super_version *sv = calloc(1, sizeof(*sv));
    if (!sv || (db->nimms && !(sv->imms = malloc(db->nimms * sizeof(*sv->imms))))) {
        free(sv);
        return st_error(ST_NO_MEMORY, "out of memory publishing a new version");
    }
    atomic_init(&sv->refs, 1);
    sv->mem = db->mem;
    st_memtable_ref(sv->mem);
    for (size_t i = 0; i < db->nimms; i++) {
        sv->imms[i] = db->imms[db->nimms - 1 - i].mem;
        st_memtable_ref(sv->imms[i]);
    }
    sv->nimms = db->nimms;
    sv->version = db->vs->current;
    st_version_ref(sv->version);
    pthread_mutex_lock(&db->sv_mu);
    st_super_version *old = db->sv;
    db->sv = sv;
    pthread_mutex_unlock(&db->sv_mu);
    st_db_sv_release(old);
    return ST_OK;
}

/* ---- snapshots --------------------------------------------------------------------------- */

void st_db_snapshot_link(st_db *db, st_snapshot *s)
{
    /* Sequences only grow, so appending keeps the list ordered. */
    s->next = &db->snapshots;
    s->prev = db->snapshots.prev;
    s->prev->next = s;
    db->snapshots.prev = s;
    db->nsnapshots++;
}

void st_db_snapshot_unlink(st_db *db, st_snapshot *s)
{
    s->prev->next = s->next;
    s->next->prev = s->prev;
    db->nsnapshots--;
}

uint64_t st_db_smallest_snapshot(st_db *db)
{
    uint64_t seq = atomic_load(&db->visible_seq);
    if (db->snapshots.next != &db->snapshots && db->snapshots.next->seq < seq)
        seq = db->snapshots.next->seq;
    return seq;
}

st_status st_db_snapshot(st_db *db, st_snapshot **out)
{
    st_snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        return st_error(ST_NO_MEMORY, "out of memory");
    pthread_mutex_lock(&db->mu);
    s->seq = atomic_load(&db->visible_seq);
    st_db_snapshot_link(db, s);
    pthread_mutex_unlock(&db->mu);
    *out = s;
    return ST_OK;
}

void st_db_release_snapshot(st_db *db, st_snapshot *snap)
{
    if (!snap)
        return;
    pthread_mutex_lock(&db->mu);
    st_db_snapshot_unlink(db, snap);
    pthread_mutex_unlock(&db->mu);
    free(snap);
}

uint64_t st_snapshot_seq(const st_snapshot *snap)
{
    return snap->seq;
}

/* ---- version changes and obsolete files -------------------------------------------------- */

st_status st_db_apply_edit(st_db *db, st_version_edit *e, uint64_t generation, bool *stale)
{
    st_version *next = NULL, *old = NULL;
    pthread_mutex_lock(&db->manifest_mu);
    *stale = atomic_load(&db->generation) != generation;
    if (*stale) {
        pthread_mutex_unlock(&db->manifest_mu);
        return ST_OK;
    }
    st_status s = st_vset_apply(db->vs, e, &next);
    if (s == ST_OK && db->opts.paranoid_checks)
        s = st_version_check(next);
    pthread_mutex_lock(&db->mu);
    if (s == ST_OK) {
        st_vset_install(db->vs, e, next, &old);
        s = install_sv(db);
    }
    if (s) {
        st_version_unref(next);
        st_db_set_bg_error(db, s, st_errmsg());
    }
    pthread_cond_broadcast(&db->room_cv);
    pthread_cond_signal(&db->compact_cv);
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_unlock(&db->manifest_mu);
    st_version_unref(old);
    return s;
}

static void unlink_quiet(st_db *db, const char *path)
{
    st_status s = db->env->unlink(db->env, path);
    if (s && s != ST_NOT_FOUND)
        st_db_logf(db, "delete_failed path=%s error=\"%s\"", path, st_errmsg());
}

void st_db_delete_obsolete(st_db *db)
{
    uint64_t *tables = NULL, *segs = NULL;
    size_t ntables = st_graveyard_take(db->graveyard, &tables), nsegs = 0;
    uint64_t manifest = 0;

    pthread_mutex_lock(&db->mu);
    uint64_t upto = db->vs->flushed_seq;
    if (db->retain_seq != UINT64_MAX && db->retain_seq - 1 < upto)
        upto = db->retain_seq - 1;
    if (db->npending && db->pending[0].seq - 1 < upto)
        upto = db->pending[0].seq - 1;
    nsegs = st_wal_take_obsolete(db->wal, upto, &segs);
    if (db->vs->manifest_number != db->last_manifest_seen) {
        manifest = db->last_manifest_seen;
        db->last_manifest_seen = db->vs->manifest_number;
    }
    pthread_mutex_unlock(&db->mu);

    size_t cap = strlen(db->dir) + ST_NAME_EXTRA + 8;
    char *path = malloc(cap);
    if (!path)
        goto done;
    for (size_t i = 0; i < ntables; i++) {
        st_table_cache_evict(db->tc, tables[i]);
        st_status s = st_sst_remove(db->env, db->sst_dir, tables[i]);
        if (s)
            st_db_logf(db, "delete_failed table=%06" PRIu64 " error=\"%s\"", tables[i],
                       st_errmsg());
    }
    for (size_t i = 0; i < nsegs; i++)
        unlink_quiet(db, st_wal_path(db->wal, path, cap, segs[i]));
    if (manifest) {
        snprintf(path, cap, "%s/MANIFEST-%06" PRIu64, db->dir, manifest);
        unlink_quiet(db, path);
    }
done:
    free(path);
    free(tables);
    free(segs);
}

/* Remove what a crash or an old process left behind: tables no version names, temporary files,
   old MANIFESTs. Called once during open, before the background threads start. */
static st_status remove_orphans(st_db *db)
{
    char **names = NULL;
    size_t count = 0;
    size_t cap = strlen(db->dir) + ST_NAME_EXTRA + 8;
    char *path = malloc(cap);
    st_status s = ST_OK;
    if (!path)
        return st_error(ST_NO_MEMORY, "out of memory");
    const char *dirs[2] = {db->dir, db->sst_dir};
    for (int d = 0; d < 2; d++) {
        if ((s = db->env->list(db->env, dirs[d], &names, &count)))
            break;
        for (size_t i = 0; i < count; i++) {
            uint64_t number;
            st_file_type t = st_parse_filename(names[i], &number);
            bool remove = t == ST_FILE_TEMP ||
                          (t == ST_FILE_MANIFEST && number != db->vs->manifest_number) ||
                          ((t == ST_FILE_DAT || t == ST_FILE_IDX || t == ST_FILE_META) && d == 1 &&
                           !st_vset_is_live(db->vs, number));
            if (!remove)
                continue;
            snprintf(path, cap, "%s/%s", dirs[d], names[i]);
            st_db_logf(db, "remove_orphan path=%s", path);
            unlink_quiet(db, path);
        }
        st_env_free_names(names, count);
        names = NULL;
        count = 0;
    }
    free(path);
    return s;
}

/* ---- the write queue --------------------------------------------------------------------- */

static void writer_fail(st_writer *w, st_status s)
{
    w->status = s;
    snprintf(w->msg, sizeof(w->msg), "%s", st_errmsg());
}

/* Wait on room_cv until `deadline` (monotonic µs from the env is not a pthread clock, so the
   wait is sliced). Returns false once the deadline has passed. */
static bool wait_room(st_db *db, uint64_t deadline)
{
    uint64_t now = now_micros(db);
    if (now >= deadline)
        return false;
    uint64_t slice = deadline - now;
    if (slice > 100000)
        slice = 100000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + slice * 1000;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(&db->room_cv, &db->mu, &ts);
    return true;
}

/* Turn the memtable into an immutable one and start a new WAL segment (mu held, leader). */
static st_status switch_memtable(st_db *db)
{
    st_memtable *m = NULL;
    st_status s;
    if (db->nimms == db->cap_imms) {
        size_t c = db->cap_imms ? db->cap_imms * 2 : 8;
        st_imm *p = realloc(db->imms, c * sizeof(*p));
        if (!p)
            return st_error(ST_NO_MEMORY, "out of memory");
        db->imms = p;
        db->cap_imms = c;
    }
    if ((s = st_memtable_create(&m)))
        return s;
    if ((s = st_wal_new_segment(db->wal, st_vset_new_file_number(db->vs)))) {
        st_memtable_unref(m);
        return s;
    }
    db->imms[db->nimms++] = (st_imm){db->mem, atomic_load(&db->visible_seq)};
    db->mem = m;
    pthread_cond_signal(&db->flush_cv);
    return install_sv(db);
}

/*
 * Make sure the memtable can take more (mu held, leader). Stalls, boundedly, while too many
 * immutables wait to be flushed or L0 holds too many tables.
 */
static st_status make_room(st_db *db, bool force)
{
    uint64_t stall_start = 0, deadline = 0;
    st_status s = ST_OK;
    for (;;) {
        if (db->bg_error) {
            s = bg_error_status(db);
            break;
        }
        if (db->shutting_down) {
            s = st_error(ST_SHUTDOWN, "the database is closing");
            break;
        }
        if (force ? st_memtable_entries(db->mem) == 0
                  : st_memtable_bytes(db->mem) < db->opts.memtable_bytes)
            break;
        bool too_many_imms = db->nimms >= (size_t)db->opts.max_immutables;
        bool too_many_l0 = db->vs->current->nfiles[0] >= (uint32_t)db->opts.l0_stop_trigger;
        if (!too_many_imms && !too_many_l0) {
            s = switch_memtable(db);
            if (s)
                st_db_set_bg_error(db, s, st_errmsg());
            break;
        }
        if (stall_start == 0) {
            stall_start = now_micros(db);
            deadline = stall_start + (uint64_t)db->opts.stall_timeout_ms * 1000;
            atomic_fetch_add_explicit(&db->n_stalls, 1, memory_order_relaxed);
            pthread_cond_signal(&db->flush_cv);
            pthread_cond_signal(&db->compact_cv);
        }
        if (!wait_room(db, deadline)) {
            atomic_fetch_add_explicit(&db->n_stall_timeouts, 1, memory_order_relaxed);
            s = st_error(ST_BUSY,
                         "write stalled for %u ms waiting for %s (immutable memtables %zu, L0 "
                         "tables %u)",
                         db->opts.stall_timeout_ms, too_many_imms ? "a flush" : "compaction",
                         db->nimms, db->vs->current->nfiles[0]);
            break;
        }
    }
    if (stall_start)
        atomic_fetch_add_explicit(&db->n_stall_micros, now_micros(db) - stall_start,
                                  memory_order_relaxed);
    return s;
}

static st_status mem_add(void *ctx, uint64_t seq, st_kind kind, st_slice key, st_slice value)
{
    return st_memtable_add(ctx, seq, kind, key, value);
}

static bool push_pending(st_db *db, const st_log_record_info *info, uint64_t segment,
                         uint64_t offset, st_slice rec)
{
    if (db->npending == db->cap_pending) {
        size_t c = db->cap_pending ? db->cap_pending * 2 : 64;
        st_pending *p = realloc(db->pending, c * sizeof(*p));
        if (!p)
            return false;
        db->pending = p;
        db->cap_pending = c;
    }
    uint8_t *copy = malloc(rec.len);
    if (!copy)
        return false;
    memcpy(copy, rec.data, rec.len);
    db->pending[db->npending++] = (st_pending){
        info->seq, info->seq + info->count - 1, info->term, segment, offset, copy, rec.len};
    return true;
}

/* Sync the WAL if the policy asks for it now (leader, mu not held). */
static st_status maybe_sync(st_db *db, bool *synced)
{
    *synced = false;
    if (db->opts.sync == ST_SYNC_ALWAYS ||
        (db->opts.sync == ST_SYNC_INTERVAL && now_micros(db) - atomic_load(&db->last_sync_micros) >=
                                                  (uint64_t)db->opts.sync_interval_ms * 1000)) {
        st_status s = st_wal_sync(db->wal);
        if (s)
            return s;
        atomic_fetch_add_explicit(&db->n_syncs, 1, memory_order_relaxed);
        atomic_store(&db->last_sync_micros, now_micros(db));
        *synced = true;
    }
    return ST_OK;
}

/*
 * Lead a group of ST_W_APPLY or ST_W_APPEND writers, or one ST_W_RECORDS writer (mu held on
 * entry and exit; released around the I/O). Returns the last writer of the group.
 */
static st_writer *write_group(st_db *db, st_writer *leader)
{
    st_status s = ST_OK;
    st_writer *last = leader;
    uint64_t first_seq = db->last_seq + 1;

    if (db->bg_error) {
        writer_fail(leader, bg_error_status(db));
        return leader;
    }
    if (leader->kind == ST_W_APPLY && db->npending > 0) {
        writer_fail(leader, st_error(ST_INVALID_ARGUMENT,
                                     "%zu appended log records are not applied yet; apply or "
                                     "truncate them before writing directly",
                                     db->npending));
        return leader;
    }
    if (leader->kind == ST_W_APPLY && (s = make_room(db, false))) {
        writer_fail(leader, s);
        return leader;
    }

    /* Gather the group and its record(s). */
    st_buf *g = &db->group;
    st_buf_clear(g);
    size_t nrec = leader->kind == ST_W_RECORDS ? leader->nrecords : 1;
    st_log_record_info infos_small[8], *infos = infos_small;
    uint64_t offsets_small[8], *offsets = offsets_small;
    if (nrec > 8 && (!(infos = malloc(nrec * sizeof(*infos))) ||
                     !(offsets = malloc(nrec * sizeof(*offsets))))) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto out;
    }
    if (leader->kind != ST_W_RECORDS) {
        size_t limit = leader->rep.len + MAX_GROUP_BYTES / 8;
        if (limit > MAX_GROUP_BYTES)
            limit = MAX_GROUP_BYTES;
        if (!st_buf_append(g, leader->rep.data, leader->rep.len)) {
            s = st_error(ST_NO_MEMORY, "out of memory");
            goto out;
        }
        uint32_t count = leader->count;
        for (st_writer *w = leader->next; w; w = w->next) {
            if (w->kind != leader->kind || w->term != leader->term || g->len + w->rep.len > limit)
                break;
            if (!st_buf_append(g, w->rep.data + ST_BATCH_HEADER, w->rep.len - ST_BATCH_HEADER))
                break;
            count += w->count;
            last = w;
        }
        st_record_set_header(g->data, first_seq, leader->term, count);
        infos[0] = (st_log_record_info){first_seq, leader->term, count};
    } else {
        uint64_t expect = first_seq;
        for (size_t i = 0; i < nrec; i++) {
            char what[64];
            snprintf(what, sizeof(what), "record %zu of %zu", i + 1, nrec);
            if ((s = st_record_check(leader->records[i], what, &infos[i])))
                goto out;
            if (infos[i].seq != expect || infos[i].count == 0) {
                s = st_error(ST_INVALID_ARGUMENT,
                             "record %zu starts at sequence %" PRIu64
                             " but the log expects %" PRIu64,
                             i + 1, infos[i].seq, expect);
                goto out;
            }
            expect = infos[i].seq + infos[i].count;
        }
    }

    st_memtable *mem = db->mem;
    pthread_mutex_unlock(&db->mu);

    /* The I/O, outside the lock: one append (one write(2)) per record, one record per group. */
    for (size_t i = 0; i < nrec && s == ST_OK; i++) {
        st_slice rec =
            leader->kind == ST_W_RECORDS ? leader->records[i] : st_slice_make(g->data, g->len);
        s = st_wal_append(db->wal, rec, &offsets[i]);
    }
    if (s == ST_OK && leader->kind == ST_W_APPEND) {
        /* Readable by log iterators now: tell whoever ships the log, before the sync. */
        uint64_t seq = first_seq - 1;
        for (st_writer *w = leader;; w = w->next) {
            seq += w->count;
            if (w->written)
                w->written(w->written_ctx, seq);
            if (w == last)
                break;
        }
    }
    bool synced = false;
    if (s == ST_OK)
        s = maybe_sync(db, &synced);
    bool wal_ok = s == ST_OK;
    if (s == ST_OK && leader->kind == ST_W_APPLY)
        s = st_record_foreach(st_slice_make(g->data, g->len), mem_add, mem);

    pthread_mutex_lock(&db->mu);
    if (wal_ok) {
        /* The records are in the WAL whatever happens next: account for them. */
        uint64_t wal_bytes = 0;
        for (size_t i = 0; i < nrec; i++) {
            st_slice rec =
                leader->kind == ST_W_RECORDS ? leader->records[i] : st_slice_make(g->data, g->len);
            st_wal_note_record(db->wal, &infos[i], rec.len);
            db->last_seq = infos[i].seq + infos[i].count - 1;
            wal_bytes += rec.len;
            if (leader->kind != ST_W_APPLY && s == ST_OK &&
                !push_pending(db, &infos[i], db->wal->segs[db->wal->nsegs - 1].number, offsets[i],
                              rec))
                s = st_error(ST_NO_MEMORY, "out of memory holding appended records");
        }
        db->wal_dirty = !synced;
        atomic_fetch_add_explicit(&db->n_wal_bytes, wal_bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->n_groups, 1, memory_order_relaxed);
    }
    if (s) {
        /* A failed WAL write or memtable insert leaves the log and memory out of step: stop. */
        st_db_set_bg_error(db, s, st_errmsg());
    } else if (leader->kind == ST_W_APPLY) {
        atomic_store_explicit(&db->visible_seq, db->last_seq, memory_order_release);
    }

    /* Hand out results: each writer's operations took consecutive sequences in queue order. */
    uint64_t seq = first_seq;
    for (st_writer *w = leader;; w = w->next) {
        if (s) {
            writer_fail(w, s);
        } else {
            w->status = ST_OK;
            seq += leader->kind == ST_W_RECORDS ? db->last_seq - first_seq + 1 : w->count;
            w->last_seq = seq - 1;
            if (w->kind != ST_W_RECORDS) {
                atomic_fetch_add_explicit(&db->n_writes, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&db->n_user_bytes, w->rep.len - ST_BATCH_HEADER,
                                          memory_order_relaxed);
            }
        }
        if (w == last)
            break;
    }
out:
    if (s && last == leader)
        writer_fail(leader, s);
    if (infos != infos_small)
        free(infos);
    if (offsets != offsets_small)
        free(offsets);
    return last;
}

/*
 * Apply pending records up to `upto`, a record at a time so that the memtable can switch between
 * two (apply_mu and mu held; mu released around each insert). Without may_switch it stops at a
 * full memtable instead and sets *full: a switch starts a WAL segment, so it takes the queue.
 */
static st_status apply_upto(st_db *db, uint64_t upto, bool may_switch, bool *full)
{
    *full = false;
    while (db->npending > 0 && db->pending[0].last_seq <= upto) {
        st_status s;
        if (may_switch) {
            if ((s = make_room(db, false)))
                return s;
        } else if (db->bg_error) {
            return bg_error_status(db);
        } else if (db->shutting_down) {
            return st_error(ST_SHUTDOWN, "the database is closing");
        } else if (st_memtable_bytes(db->mem) >= db->opts.memtable_bytes) {
            *full = true;
            return ST_OK;
        }
        st_pending p = db->pending[0];
        st_memtable *mem = db->mem;
        pthread_mutex_unlock(&db->mu);
        s = st_record_foreach(st_slice_make(p.data, p.len), mem_add, mem);
        pthread_mutex_lock(&db->mu);
        if (s) {
            st_db_set_bg_error(db, s, st_errmsg());
            return s;
        }
        atomic_store_explicit(&db->visible_seq, p.last_seq, memory_order_release);
        free(p.data);
        memmove(db->pending, db->pending + 1, (db->npending - 1) * sizeof(*db->pending));
        db->npending--;
    }
    return ST_OK;
}

/* The queue's way to apply: it may switch the memtable (mu and apply_mu held). */
static void apply_pending(st_db *db, st_writer *leader)
{
    bool full;
    st_status s = apply_upto(db, leader->arg, true, &full);
    if (s)
        writer_fail(leader, s);
    leader->last_seq = atomic_load(&db->visible_seq);
}

static void truncate_log(st_db *db, st_writer *w)
{
    uint64_t after = w->arg;
    uint64_t applied = atomic_load(&db->visible_seq);
    st_status s = ST_OK;
    if (db->bg_error) {
        writer_fail(w, bg_error_status(db));
        return;
    }
    if (after >= db->last_seq) {
        w->last_seq = db->last_seq;
        return;
    }
    if (after < applied) {
        writer_fail(w, st_error(ST_INVALID_ARGUMENT,
                                "cannot drop the log after %" PRIu64 ": records up to %" PRIu64
                                " are applied",
                                after, applied));
        return;
    }
    size_t i = 0;
    while (i < db->npending && db->pending[i].seq <= after)
        i++;
    if (i == db->npending || db->pending[i].seq != after + 1) {
        writer_fail(w, st_error(ST_INVALID_ARGUMENT,
                                "sequence %" PRIu64 " is not the end of a record", after));
        return;
    }
    uint64_t term = 0;
    if (i > 0)
        term = db->pending[i - 1].term;
    else if (after > 0)
        st_wal_term_at(db->wal, after, &term);
    s = st_wal_truncate(db->wal, db->pending[i].segment, db->pending[i].offset, after, term);
    if (s) {
        st_db_set_bg_error(db, s, st_errmsg());
        writer_fail(w, s);
        return;
    }
    for (size_t j = i; j < db->npending; j++)
        free(db->pending[j].data);
    db->npending = i;
    db->last_seq = after;
    w->last_seq = after;
    st_db_logf(db, "log_truncated after_seq=%" PRIu64, after);
}

/* Drop every memtable, pending record and WAL segment, and continue the log after `seq` in a
   fresh segment (mu held, leader). */
static st_status reset_log(st_db *db, uint64_t seq, uint64_t term)
{
    st_memtable *m;
    st_status s = st_memtable_create(&m);
    if (s)
        return s;
    st_memtable_unref(db->mem);
    db->mem = m;
    for (size_t i = 0; i < db->nimms; i++)
        st_memtable_unref(db->imms[i].mem);
    db->nimms = 0;
    for (size_t i = 0; i < db->npending; i++)
        free(db->pending[i].data);
    db->npending = 0;
    if ((s = st_wal_new_segment(db->wal, st_vset_new_file_number(db->vs))))
        return s;
    /* Every older segment is obsolete now: forget it here, delete it below. */
    char path[4096];
    for (size_t i = 0; i + 1 < db->wal->nsegs; i++)
        unlink_quiet(db, st_wal_path(db->wal, path, sizeof(path), db->wal->segs[i].number));
    db->wal->segs[0] = db->wal->segs[db->wal->nsegs - 1];
    db->wal->nsegs = 1;
    db->wal->nterms = 0;
    db->wal->last_seq = seq;
    db->wal->last_term = term;
    db->last_seq = seq;
    db->wal_dirty = false;
    atomic_store_explicit(&db->visible_seq, seq, memory_order_release);
    return ST_OK;
}

/* The leader's part of st_db_install_checkpoint (mu held on entry and exit). */
static void install_checkpoint(st_db *db, st_writer *w)
{
    st_version_set *cvs = w->install;
    st_version *cv = cvs->current, *old = NULL, *next = NULL;
    st_version_edit e;
    st_status s = ST_OK;
    size_t cap = strlen(w->install_dir) + ST_NAME_EXTRA + 8;
    char *csst = malloc(cap);

    st_edit_init(&e);
    if (!csst) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto out;
    }
    if (db->bg_error) {
        s = bg_error_status(db);
        goto out;
    }
    snprintf(csst, cap, "%s/sst", w->install_dir);
    /* Version changes stop (flushes and compactions wait on manifest_mu, and find the
       generation changed when they get it). Lock order: manifest_mu before mu. */
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_lock(&db->manifest_mu);
    pthread_mutex_lock(&db->mu);
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        for (uint32_t i = 0; i < db->vs->current->nfiles[l] && s == ST_OK; i++)
            s = st_edit_delete_file(&e, l, db->vs->current->files[l][i]->number);
    /* Move the checkpoint's tables in under numbers of ours: its numbers are another node's. */
    for (int l = 0; l < ST_NUM_LEVELS && s == ST_OK; l++) {
        for (uint32_t i = 0; i < cv->nfiles[l] && s == ST_OK; i++) {
            st_file_meta *src = cv->files[l][i], *f = st_file_meta_new();
            uint64_t number = st_vset_new_file_number(db->vs);
            if (!f) {
                s = st_error(ST_NO_MEMORY, "out of memory");
                break;
            }
            *f = (st_file_meta){.number = number,
                                .dat_bytes = src->dat_bytes,
                                .idx_bytes = src->idx_bytes,
                                .meta_bytes = src->meta_bytes,
                                .entries = src->entries,
                                .tombstones = src->tombstones,
                                .min_seq = src->min_seq,
                                .max_seq = src->max_seq};
            atomic_init(&f->refs, 1);
            st_buf_init(&f->smallest);
            st_buf_init(&f->largest);
            if (!st_buf_append(&f->smallest, src->smallest.data, src->smallest.len) ||
                !st_buf_append(&f->largest, src->largest.data, src->largest.len))
                s = st_error(ST_NO_MEMORY, "out of memory");
            if (s == ST_OK)
                s = st_sst_move(db->env, csst, src->number, db->sst_dir, number);
            if (s == ST_OK)
                s = st_edit_add_file(&e, l, f);
            st_file_meta_unref(f);
        }
    }
    if (s == ST_OK)
        s = db->env->sync_dir(db->env, db->sst_dir);
    if (s == ST_OK) {
        e.has_flushed = true;
        e.flushed_seq = cvs->flushed_seq;
        e.flushed_term = cvs->flushed_term;
        s = st_vset_apply(db->vs, &e, &next);
    }
    if (s == ST_OK) {
        st_vset_install(db->vs, &e, next, &old);
        atomic_fetch_add(&db->generation, 1);
        s = reset_log(db, cvs->flushed_seq, cvs->flushed_term);
        if (s == ST_OK)
            s = install_sv(db);
        if (s)
            st_db_set_bg_error(db, s, st_errmsg());
        pthread_cond_broadcast(&db->room_cv);
    }
    pthread_mutex_unlock(&db->manifest_mu);
    if (s == ST_OK) {
        w->last_seq = cvs->flushed_seq;
        st_db_logf(db, "checkpoint_installed seq=%" PRIu64 " tables=%zu", cvs->flushed_seq,
                   e.nadded);
    }
out:
    if (s)
        writer_fail(w, s);
    pthread_mutex_unlock(&db->mu);
    st_version_unref(old);
    pthread_mutex_lock(&db->mu);
    st_edit_free(&e);
    free(csst);
}

/* Queue w and wait until it is done, leading a group when it reaches the front. */
static st_status submit(st_db *db, st_writer *w)
{
    pthread_cond_init(&w->cv, NULL);
    w->done = false;
    w->status = ST_OK;
    w->next = NULL;
    pthread_mutex_lock(&db->mu);
    if (db->wq_tail)
        db->wq_tail->next = w;
    else
        db->wq_head = w;
    db->wq_tail = w;
    while (!w->done && db->wq_head != w)
        pthread_cond_wait(&w->cv, &db->mu);
    /* Appends leave the memtable alone: they run beside st_db_log_apply. */
    bool memtable = !w->done && w->kind != ST_W_APPEND && w->kind != ST_W_RECORDS;
    if (memtable) {
        pthread_mutex_unlock(&db->mu); /* apply_mu comes first; we stay at the head meanwhile */
        pthread_mutex_lock(&db->apply_mu);
        pthread_mutex_lock(&db->mu);
    }
    if (!w->done) {
        st_writer *last = w;
        switch (w->kind) {
        case ST_W_APPLY:
        case ST_W_APPEND:
        case ST_W_RECORDS:
            last = write_group(db, w);
            break;
        case ST_W_APPLY_PENDING:
            apply_pending(db, w);
            break;
        case ST_W_TRUNCATE:
            truncate_log(db, w);
            break;
        case ST_W_SWITCH: {
            st_status s = make_room(db, true);
            if (s)
                writer_fail(w, s);
            break;
        }
        case ST_W_INSTALL:
            install_checkpoint(db, w);
            break;
        }
        /* Pop the group and wake its members and the next leader. */
        for (;;) {
            st_writer *x = db->wq_head;
            db->wq_head = x->next;
            if (!db->wq_head)
                db->wq_tail = NULL;
            x->done = true;
            if (x != w)
                pthread_cond_signal(&x->cv);
            if (x == last)
                break;
        }
        if (db->wq_head)
            pthread_cond_signal(&db->wq_head->cv);
    }
    if (memtable)
        pthread_mutex_unlock(&db->apply_mu);
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w->cv);
    if (w->status)
        st_error(w->status, "%s", w->msg);
    return w->status;
}

static st_status check_limits(st_db *db, st_slice rep)
{
    return st_record_check_limits(rep, db->opts.max_key_bytes, db->opts.max_value_bytes);
}

st_status st_db_write(st_db *db, const st_batch *batch, uint64_t *seq)
{
    if (batch->count == 0) {
        if (seq)
            *seq = atomic_load(&db->visible_seq);
        return ST_OK;
    }
    st_slice rep = st_batch_rep(batch);
    st_status s = check_limits(db, rep);
    if (s)
        return s;
    st_writer w = {.kind = ST_W_APPLY, .rep = rep, .count = batch->count};
    pthread_mutex_lock(&db->mu);
    w.term = db->term;
    pthread_mutex_unlock(&db->mu);
    s = submit(db, &w);
    if (s == ST_OK && seq)
        *seq = w.last_seq;
    return s;
}

/* A one-operation batch on the stack, for put and delete. */
static st_status write_one(st_db *db, st_kind kind, st_slice key, st_slice value, uint64_t *seq)
{
    if (key.len == 0)
        return st_error(ST_INVALID_ARGUMENT, "empty key");
    if (key.len > db->opts.max_key_bytes)
        return st_error(ST_INVALID_ARGUMENT,
                        "key of %zu bytes exceeds the limit of %zu bytes (max_key_bytes)", key.len,
                        db->opts.max_key_bytes);
    if (value.len > db->opts.max_value_bytes)
        return st_error(ST_INVALID_ARGUMENT,
                        "value of %zu bytes exceeds the limit of %zu bytes (max_value_bytes)",
                        value.len, db->opts.max_value_bytes);
    uint8_t small[512];
    size_t need = ST_BATCH_HEADER + 1 + 2 * ST_MAX_VARINT32 + key.len + value.len;
    uint8_t *buf = need <= sizeof(small) ? small : malloc(need);
    if (!buf)
        return st_error(ST_NO_MEMORY, "out of memory");
    uint8_t *p = buf + ST_BATCH_HEADER;
    *p++ = (uint8_t)kind;
    p = st_encode_lp(p, key.data, key.len);
    if (kind == ST_KIND_PUT)
        p = st_encode_lp(p, value.data, value.len);
    st_writer w = {.kind = ST_W_APPLY, .rep = st_slice_make(buf, (size_t)(p - buf)), .count = 1};
    pthread_mutex_lock(&db->mu);
    w.term = db->term;
    pthread_mutex_unlock(&db->mu);
    st_status s = submit(db, &w);
    if (s == ST_OK && seq)
        *seq = w.last_seq;
    if (buf != small)
        free(buf);
    return s;
}

st_status st_db_put(st_db *db, st_slice key, st_slice value, uint64_t *seq)
{
    return write_one(db, ST_KIND_PUT, key, value, seq);
}

st_status st_db_delete(st_db *db, st_slice key, uint64_t *seq)
{
    return write_one(db, ST_KIND_DELETE, key, st_slice_make(NULL, 0), seq);
}

/* ---- reads ------------------------------------------------------------------------------- */

void st_db_note_seek_hint(st_db *db, st_version *v, const st_seek_hint *hint)
{
    if (!hint->file || hint->level >= ST_NUM_LEVELS - 1) /* the last level has no below */
        return;
    pthread_mutex_lock(&db->mu);
    /* Only the current version's tables: an older version's may be compacted away already. */
    if (v == db->vs->current && !v->seek_file) {
        v->seek_file = hint->file;
        v->seek_level = hint->level;
        pthread_cond_signal(&db->compact_cv);
    }
    pthread_mutex_unlock(&db->mu);
}

st_status st_db_get(st_db *db, const st_snapshot *snap, st_slice key, uint8_t **value,
                    size_t *value_len, uint64_t *read_seq)
{
    if (key.len == 0)
        return st_error(ST_INVALID_ARGUMENT, "empty key");
    if (key.len > ST_KEY_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "key of %zu bytes exceeds the limit of %u bytes",
                        key.len, ST_KEY_LIMIT);
    /* Read the sequence before pinning the memtables: everything up to it is reachable from any
       super version published after it was made visible. */
    uint64_t seq = snap ? snap->seq : atomic_load_explicit(&db->visible_seq, memory_order_acquire);
    st_super_version *sv = st_db_sv_acquire(db);
    st_status s = ST_OK;
    st_kind kind = ST_KIND_DELETE;
    st_slice v = {NULL, 0};
    bool found = st_memtable_get(sv->mem, key, seq, &kind, &v, NULL) == ST_OK;
    for (size_t i = 0; !found && i < sv->nimms; i++)
        found = st_memtable_get(sv->imms[i], key, seq, &kind, &v, NULL) == ST_OK;
    st_buf tv;
    st_buf_init(&tv);
    if (!found) {
        st_lookup_key lk;
        if (!st_lookup_key_init(&lk, key, seq)) {
            s = st_error(ST_NO_MEMORY, "out of memory");
            goto done;
        }
        st_seek_hint hint;
        s = st_version_get(sv->version, db->tc, st_lookup_ikey(&lk), &found, &kind, &tv, &hint);
        st_lookup_key_free(&lk);
        st_db_note_seek_hint(db, sv->version, &hint);
        if (s)
            goto done;
        v = st_slice_make(tv.data, tv.len);
    }
    if (!found || kind == ST_KIND_DELETE) {
        s = st_error(ST_NOT_FOUND, "key not found");
        goto done;
    }
    uint8_t *out = malloc(v.len ? v.len : 1);
    if (!out) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto done;
    }
    if (v.len)
        memcpy(out, v.data, v.len);
    *value = out;
    *value_len = v.len;
done:
    if (read_seq)
        *read_seq = seq;
    st_buf_free(&tv);
    st_db_sv_release(sv);
    return s;
}

st_status st_db_iter(st_db *db, const st_snapshot *snap, st_slice start, st_slice end,
                     st_iter **out)
{
    st_snapshot *own = NULL;
    uint64_t seq;
    if (snap) {
        seq = snap->seq;
    } else {
        /* The iterator holds an implicit snapshot so compaction keeps what it reads. */
        st_status s = st_db_snapshot(db, &own);
        if (s)
            return s;
        seq = own->seq;
    }
    st_super_version *sv = st_db_sv_acquire(db);
    st_iterator **list = NULL;
    size_t n = 0, cap = 0;
    st_status s = ST_OK;
    cap = 2 + sv->nimms + sv->version->nfiles[0] + ST_NUM_LEVELS;
    list = malloc(cap * sizeof(*list));
    if (!list) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    if (!(list[n++] = st_memtable_iter(sv->mem)))
        goto nomem;
    for (size_t i = 0; i < sv->nimms; i++)
        if (!(list[n++] = st_memtable_iter(sv->imms[i])))
            goto nomem;
    if ((s = st_version_add_iterators(sv->version, db->tc, &list, &n, &cap)))
        goto fail;
    st_iterator *merged = st_merging_iter_create(list, n);
    free(list);
    list = NULL;
    n = 0;
    if (!merged)
        goto nomem;
    s = st_db_iter_wrap(db, merged, seq, own, start, end, out);
    if (s == ST_OK)
        st_db_iter_sample_version(*out, sv->version);
    st_db_sv_release(sv);
    return s;
nomem:
    s = st_error(ST_NO_MEMORY, "out of memory creating an iterator");
fail:
    for (size_t i = 0; i < n; i++)
        st_it_destroy(list[i]);
    free(list);
    st_db_sv_release(sv);
    st_db_release_snapshot(db, own);
    return s;
}

/* ---- the flush thread -------------------------------------------------------------------- */

static st_status build_table(st_db *db, st_iterator *it, uint64_t number, st_file_meta **out)
{
    st_sst_options so = {db->opts.block_bytes, 16, db->opts.bloom_bits_per_key};
    st_sst_builder *b = NULL;
    st_sst_props props;
    memset(&props, 0, sizeof(props));
    st_status s = st_sst_builder_create(db->env, db->sst_dir, number, &so, &b);
    if (s)
        return s;
    for (st_it_seek_first(it); s == ST_OK && st_it_valid(it); st_it_next(it))
        s = st_sst_builder_add(b, st_it_key(it), st_it_value(it));
    if (s == ST_OK)
        s = st_it_status(it);
    if (s == ST_OK)
        s = st_sst_builder_finish(b, &props);
    st_sst_builder_destroy(b);
    if (s)
        return s;
    st_file_meta *f = st_file_meta_new();
    if (!f) {
        st_sst_props_free(&props);
        return st_error(ST_NO_MEMORY, "out of memory");
    }
    f->number = number;
    f->dat_bytes = props.dat_bytes;
    f->idx_bytes = props.idx_bytes;
    f->meta_bytes = props.meta_bytes;
    f->entries = props.entries;
    f->tombstones = props.tombstones;
    f->min_seq = props.min_seq;
    f->max_seq = props.max_seq;
    f->smallest = props.smallest;
    f->largest = props.largest;
    *out = f;
    return ST_OK;
}

static st_status flush_one(st_db *db, st_imm imm)
{
    uint64_t start = now_micros(db), generation = atomic_load(&db->generation);
    bool stale = false;
    uint64_t number = st_vset_new_file_number(db->vs);
    st_file_meta *f = NULL;
    st_version_edit e;
    st_edit_init(&e);
    st_iterator *it = st_memtable_iter(imm.mem);
    st_status s = it ? ST_OK : st_error(ST_NO_MEMORY, "out of memory");
    if (s == ST_OK)
        s = build_table(db, it, number, &f);
    st_it_destroy(it);
    if (s == ST_OK)
        s = db->env->sync_dir(db->env, db->sst_dir);
    uint64_t term = 0;
    if (s == ST_OK) {
        pthread_mutex_lock(&db->mu);
        if (st_wal_term_at(db->wal, imm.last_seq, &term) != ST_OK)
            term = db->vs->flushed_term;
        pthread_mutex_unlock(&db->mu);
        e.has_flushed = true;
        e.flushed_seq = imm.last_seq;
        e.flushed_term = term;
        s = st_edit_add_file(&e, 0, f);
    }
    /* Counted before the edit is applied: applying it wakes the compaction thread, whose
       outcome (a failure, say) a reader of the stats must not see before this flush. Taken
       back if the table does not go in. */
    if (s == ST_OK) {
        atomic_fetch_add_explicit(&db->n_flushes, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->n_flush_bytes, st_file_bytes(f), memory_order_relaxed);
        s = st_db_apply_edit(db, &e, generation, &stale);
        if (s != ST_OK || stale) {
            atomic_fetch_sub_explicit(&db->n_flushes, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&db->n_flush_bytes, st_file_bytes(f), memory_order_relaxed);
        }
    }
    if (s == ST_OK && stale) {
        /* A checkpoint replaced everything while this memtable was written out. */
        st_sst_remove(db->env, db->sst_dir, number);
    } else if (s == ST_OK) {
        st_db_logf(db,
                   "flush table=%06" PRIu64 " entries=%" PRIu64 " bytes=%" PRIu64
                   " flushed_seq=%" PRIu64 " micros=%" PRIu64,
                   number, f->entries, st_file_bytes(f), imm.last_seq, now_micros(db) - start);
    }
    /* On failure the table's files stay: if the edit reached the MANIFEST before its sync failed,
       deleting them could lose data; the next open removes them if no version names them. */
    st_edit_free(&e);
    st_file_meta_unref(f);
    return s;
}

static void *flush_thread(void *arg)
{
    st_db *db = arg;
    pthread_setname_np(pthread_self(), "st-flush");
    pthread_mutex_lock(&db->mu);
    for (;;) {
        if (db->nimms > 0 && db->bg_error == ST_OK && !db->shutting_down) {
            st_imm imm = db->imms[0];
            st_memtable_ref(imm.mem);
            pthread_mutex_unlock(&db->mu);
            st_status s = flush_one(db, imm);
            char msg[256];
            snprintf(msg, sizeof(msg), "flush failed: %s", st_errmsg());
            pthread_mutex_lock(&db->mu);
            /* A checkpoint install may have dropped the list meanwhile (and its reference). */
            bool listed = db->nimms > 0 && db->imms[0].mem == imm.mem, removed = false;
            if (s) {
                st_db_set_bg_error(db, s, msg);
            } else if (listed) {
                memmove(db->imms, db->imms + 1, (db->nimms - 1) * sizeof(*db->imms));
                db->nimms--;
                removed = true;
                s = install_sv(db);
                if (s)
                    st_db_set_bg_error(db, s, st_errmsg());
            }
            pthread_cond_broadcast(&db->room_cv);
            pthread_mutex_unlock(&db->mu);
            if (removed)
                st_memtable_unref(imm.mem); /* the list's reference */
            st_memtable_unref(imm.mem);     /* ours */
            if (s) {
                st_db_logf(db, "error %s", msg);
                pthread_mutex_lock(&db->mu);
                continue;
            }
            st_db_delete_obsolete(db);
            pthread_mutex_lock(&db->mu);
            continue;
        }
        if (db->shutting_down)
            break;
        if (db->opts.sync == ST_SYNC_INTERVAL && db->wal_dirty && db->bg_error == ST_OK &&
            now_micros(db) - atomic_load(&db->last_sync_micros) >=
                (uint64_t)db->opts.sync_interval_ms * 1000) {
            /* Sync beside the writers rather than through their queue: a writer stalled on a
               flush must not wait for this thread, nor this thread for it. */
            db->wal_dirty = false;
            pthread_mutex_unlock(&db->mu);
            st_status s = st_wal_sync(db->wal);
            pthread_mutex_lock(&db->mu);
            if (s) {
                st_db_set_bg_error(db, s, st_errmsg());
            } else {
                atomic_fetch_add_explicit(&db->n_syncs, 1, memory_order_relaxed);
                atomic_store(&db->last_sync_micros, now_micros(db));
            }
            continue;
        }
        uint64_t wait_ms = db->opts.sync == ST_SYNC_INTERVAL ? db->opts.sync_interval_ms : 1000;
        if (wait_ms == 0)
            wait_ms = 1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + wait_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&db->flush_cv, &db->mu, &ts);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

st_status st_db_flush(st_db *db)
{
    st_writer w = {.kind = ST_W_SWITCH};
    st_status s = submit(db, &w);
    if (s)
        return s;
    pthread_mutex_lock(&db->mu);
    while (db->nimms > 0 && db->bg_error == ST_OK && !db->shutting_down)
        pthread_cond_wait(&db->room_cv, &db->mu);
    if (db->bg_error)
        s = bg_error_status(db);
    else if (db->nimms > 0)
        s = st_error(ST_SHUTDOWN, "the database is closing");
    pthread_mutex_unlock(&db->mu);
    return s;
}

st_status st_db_compact_range(st_db *db, st_slice start, st_slice end)
{
    st_status s = st_db_flush(db);
    if (s)
        return s;
    st_manual m;
    memset(&m, 0, sizeof(m));
    st_buf_init(&m.begin);
    st_buf_init(&m.end);
    if (!st_buf_append(&m.begin, start.data, start.len) ||
        !st_buf_append(&m.end, end.data, end.len)) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto done;
    }
    pthread_mutex_lock(&db->mu);
    /* One manual compaction at a time. */
    while (db->manual && !db->shutting_down)
        pthread_cond_wait(&db->room_cv, &db->mu);
    int deepest = st_version_deepest(db->vs->current);
    m.level = 0;
    m.target = deepest < 1 ? 1 : deepest;
    if (deepest < 0 || db->shutting_down) {
        s = db->shutting_down ? st_error(ST_SHUTDOWN, "the database is closing") : ST_OK;
        pthread_mutex_unlock(&db->mu);
        goto done;
    }
    db->manual = &m;
    pthread_cond_signal(&db->compact_cv);
    while (!m.done)
        pthread_cond_wait(&db->room_cv, &db->mu);
    db->manual = NULL;
    pthread_cond_broadcast(&db->room_cv);
    pthread_mutex_unlock(&db->mu);
    s = m.status;
    if (s)
        st_error(s, "%s", m.msg);
done:
    st_buf_free(&m.begin);
    st_buf_free(&m.end);
    return s;
}

/* ---- open and close ---------------------------------------------------------------------- */

static st_status check_options(const st_options *o)
{
    if (o->memtable_bytes < 64 * 1024)
        return st_error(ST_INVALID_ARGUMENT, "memtable_bytes must be at least 64 KiB");
    if (o->max_immutables < 1)
        return st_error(ST_INVALID_ARGUMENT, "max_immutables must be at least 1");
    if (o->l0_compaction_trigger < 1 || o->l0_stop_trigger < o->l0_compaction_trigger)
        return st_error(ST_INVALID_ARGUMENT, "need 1 <= l0_compaction_trigger <= l0_stop_trigger");
    if (o->block_bytes < 256 || o->table_bytes < o->block_bytes || o->level1_bytes < 1)
        return st_error(ST_INVALID_ARGUMENT, "block, table and level sizes are too small");
    if (o->max_key_bytes < 1 || o->max_key_bytes > ST_KEY_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "max_key_bytes must be in 1..%u", ST_KEY_LIMIT);
    if (o->max_value_bytes > ST_VALUE_LIMIT)
        return st_error(ST_INVALID_ARGUMENT, "max_value_bytes must be at most %u", ST_VALUE_LIMIT);
    if (o->max_open_tables < 16)
        return st_error(ST_INVALID_ARGUMENT, "max_open_tables must be at least 16");
    if (o->sync > ST_SYNC_NONE || o->replay > ST_REPLAY_PENDING)
        return st_error(ST_INVALID_ARGUMENT, "unknown sync policy or replay mode");
    return ST_OK;
}

/* Whether directory `path` holds only files matching `ok` (a missing directory holds none). */
static st_status only_files(st_db *db, const char *path,
                            bool (*ok)(st_db *, const char *, const char *), bool *only)
{
    char **names;
    size_t count;
    *only = true;
    st_status s = db->env->list(db->env, path, &names, &count);
    if (s == ST_NOT_FOUND)
        return ST_OK;
    if (s)
        return s;
    for (size_t i = 0; i < count && *only; i++)
        *only = ok(db, path, names[i]);
    st_env_free_names(names, count);
    return ST_OK;
}

static bool creation_leftover(st_db *db, const char *dir, const char *name)
{
    uint64_t n;
    st_file_type t = st_parse_filename(name, &n);
    if (t == ST_FILE_LOCK || t == ST_FILE_TEMP || t == ST_FILE_MANIFEST)
        return true;
    if (t == ST_FILE_WAL) {
        /* A segment with nothing in it holds nothing to lose. */
        char path[4096];
        uint64_t size = 1;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return db->env->file_size(db->env, path, &size) == ST_OK && size == 0;
    }
    return false;
}

static bool top_level_leftover(st_db *db, const char *dir, const char *name)
{
    char path[4096];
    bool only = false;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (strcmp(name, "sst") == 0 || strcmp(name, "wal") == 0)
        return only_files(db, path, creation_leftover, &only) == ST_OK && only;
    return creation_leftover(db, dir, name);
}

/*
 * Whether `dir`, which has no CURRENT, holds only what a database creation cut short leaves
 * behind (the lock, MANIFESTs and temporary files written before CURRENT, empty sst/ and wal/):
 * then it is safe to create the database afresh. A directory with tables or WAL data but no
 * CURRENT is not: that is a damaged database, not an empty one.
 */
static st_status dir_is_empty(st_db *db, bool *empty)
{
    return only_files(db, db->dir, top_level_leftover, empty);
}

typedef struct replay_ctx {
    st_db *db;
    uint64_t applied;
} replay_ctx;

/*
 * While opening: hand the memtable, holding records up to last_seq, to the flush thread as a
 * switch would, without a new segment (the records are already in the log).
 */
static st_status park_memtable(st_db *db, uint64_t last_seq)
{
    if (db->nimms == db->cap_imms) {
        size_t c = db->cap_imms ? db->cap_imms * 2 : 8;
        st_imm *p = realloc(db->imms, c * sizeof(*p));
        if (!p)
            return st_error(ST_NO_MEMORY, "out of memory");
        db->imms = p;
        db->cap_imms = c;
    }
    st_memtable *m;
    st_status s = st_memtable_create(&m);
    if (s)
        return s;
    db->imms[db->nimms++] = (st_imm){db->mem, last_seq};
    db->mem = m;
    return ST_OK;
}

static st_status replay_record(void *arg, const st_wal_found *rec)
{
    replay_ctx *rc = arg;
    st_db *db = rc->db;
    if (db->opts.replay == ST_REPLAY_PENDING) {
        if (!push_pending(db, &rec->info, rec->segment, rec->offset, rec->record))
            return st_error(ST_NO_MEMORY, "out of memory replaying the WAL");
        return ST_OK;
    }
    if (st_memtable_bytes(db->mem) >= db->opts.memtable_bytes) {
        st_status s = park_memtable(db, rc->applied);
        if (s)
            return s;
    }
    st_status s = st_record_foreach(rec->record, mem_add, db->mem);
    rc->applied = rec->info.seq + rec->info.count - 1;
    return s;
}

/*
 * Every table the MANIFEST names must have its three files: a missing one means damage (or a
 * MANIFEST whose last edit was lost), and reads would otherwise treat its keys as absent.
 */
static st_status check_tables(st_db *db)
{
    static const char *const exts[] = {".dat", ".idx", ".meta"};
    char path[4096];
    st_version *v = db->vs->current;
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < v->nfiles[l]; i++) {
            for (int e = 0; e < 3; e++) {
                st_numbered_path(path, sizeof(path), db->sst_dir, v->files[l][i]->number, exts[e]);
                if (db->env->exists(db->env, path))
                    continue;
                if (db->vs->manifest_torn_bytes)
                    return st_error(ST_CORRUPTION,
                                    "MANIFEST-%06" PRIu64 " ends in %" PRIu64
                                    " damaged bytes, and the version before them names %s, "
                                    "which is missing: the damaged edit was needed",
                                    db->vs->recovered_manifest, db->vs->manifest_torn_bytes, path);
                return st_error(ST_CORRUPTION,
                                "%s is missing, but MANIFEST-%06" PRIu64 " names table %06" PRIu64
                                " in L%d",
                                path, db->vs->recovered_manifest, v->files[l][i]->number, l);
            }
        }
    }
    return ST_OK;
}

static st_status open_files(st_db *db)
{
    st_status s;
    bool have_current = false, empty = false;
    size_t cap = strlen(db->dir) + ST_NAME_EXTRA;
    char *path = malloc(cap);
    if (!path)
        return st_error(ST_NO_MEMORY, "out of memory");
    snprintf(path, cap, "%s/CURRENT", db->dir);
    have_current = db->env->exists(db->env, path);
    if (!have_current) {
        if ((s = dir_is_empty(db, &empty)))
            goto done;
        if (!empty) {
            s = st_error(ST_INVALID_ARGUMENT,
                         "%s is not a strata database (it has files but no CURRENT; if it was one, "
                         "its CURRENT file is lost)",
                         db->dir);
            goto done;
        }
        if (!db->opts.create_if_missing) {
            s = st_error(ST_NOT_FOUND, "%s holds no database (create_if_missing is off)", db->dir);
            goto done;
        }
        if ((s = db->env->mkdir(db->env, db->sst_dir)) || (s = st_vset_create_new(db->vs)))
            goto done;
        st_db_logf(db, "created dir=%s", db->dir);
    } else {
        if (db->opts.error_if_exists) {
            s = st_error(ST_INVALID_ARGUMENT, "%s already holds a database (error_if_exists)",
                         db->dir);
            goto done;
        }
        if ((s = db->env->mkdir(db->env, db->sst_dir)) || (s = st_vset_recover(db->vs)))
            goto done;
    }
    db->last_manifest_seen = db->vs->manifest_number;
    s = ST_OK;
done:
    free(path);
    return s;
}

st_status st_db_open(const char *dir, const st_options *opts, st_db **out)
{
    st_status s;
    st_options defaults;
    if (!opts) {
        st_options_init(&defaults);
        opts = &defaults;
    }
    if ((s = check_options(opts)))
        return s;
    st_db *db = calloc(1, sizeof(*db));
    if (!db)
        return st_error(ST_NO_MEMORY, "out of memory");
    db->opts = *opts;
    db->env = opts->env ? opts->env : st_env_posix();
    db->retain_seq = UINT64_MAX;
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    pthread_mutex_init(&db->manifest_mu, NULL);
    pthread_mutex_init(&db->apply_mu, NULL);
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->sv_mu, NULL);
    pthread_cond_init(&db->flush_cv, NULL);
    pthread_cond_init(&db->compact_cv, NULL);
    pthread_cond_init(&db->room_cv, NULL);
    st_buf_init(&db->group);

    size_t n = strlen(dir) + 8;
    db->dir = strdup(dir);
    db->sst_dir = malloc(n);
    if (!db->dir || !db->sst_dir) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    snprintf(db->sst_dir, n, "%s/sst", dir);
    if (!db->env->exists(db->env, dir) && !opts->create_if_missing) {
        s = st_error(ST_NOT_FOUND, "%s does not exist (create_if_missing is off)", dir);
        goto fail;
    }
    char lockpath[4096];
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", dir);
    if ((s = db->env->mkdir(db->env, dir)))
        goto fail;
    if ((s = db->env->lock(db->env, lockpath, &db->lock))) {
        if (s == ST_BUSY)
            s = st_error(ST_BUSY, "%s is in use by another process (LOCK is held)", dir);
        goto fail;
    }
    st_table_options to = {db->env, NULL, opts->mmap_reads};
    if ((s = st_graveyard_create(&db->graveyard)) ||
        (s = st_vset_create(db->env, dir, db->graveyard, &db->vs)) || (s = open_files(db)) ||
        (s = check_tables(db)))
        goto fail;
    if (opts->block_cache_bytes && (s = st_cache_create(opts->block_cache_bytes, &db->block_cache)))
        goto fail;
    to.block_cache = db->block_cache;
    if ((s = st_table_cache_create(&to, db->sst_dir, opts->max_open_tables, &db->tc)) ||
        (s = st_memtable_create(&db->mem)) || (s = st_wal_open(db->env, dir, opts->sync, &db->wal)))
        goto fail;

    /* WAL segments take file numbers without a MANIFEST edit, so the recorded next number may
       lag behind them: never hand out a number a segment already has. */
    for (size_t i = 0; i < db->wal->nsegs; i++)
        if (db->wal->segs[i].number >= atomic_load(&db->vs->next_file))
            atomic_store(&db->vs->next_file, db->wal->segs[i].number + 1);

    replay_ctx rc = {db, db->vs->flushed_seq};
    if ((s = st_wal_recover(db->wal, db->vs->flushed_seq, replay_record, &rc, log_thunk, db))) {
        if (s == ST_CORRUPTION && db->vs->manifest_torn_bytes) {
            /* The WAL and the tables disagree because the MANIFEST lost its last edit. */
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", st_errmsg());
            s = st_error(ST_CORRUPTION,
                         "MANIFEST-%06" PRIu64 " ends in %" PRIu64
                         " damaged bytes, and the version before them does not fit the WAL: %s",
                         db->vs->recovered_manifest, db->vs->manifest_torn_bytes, msg);
        }
        goto fail;
    }
    db->last_seq =
        db->wal->last_seq > db->vs->flushed_seq ? db->wal->last_seq : db->vs->flushed_seq;
    if (db->wal->last_seq == 0 || db->wal->last_seq < db->vs->flushed_seq) {
        db->wal->last_seq = db->vs->flushed_seq;
        db->wal->last_term = db->vs->flushed_term;
    }
    db->term = db->wal->last_term;
    atomic_init(&db->visible_seq, opts->replay == ST_REPLAY_ALL ? db->last_seq : rc.applied);
    if ((s = st_wal_new_segment(db->wal, st_vset_new_file_number(db->vs))))
        goto fail;
    if (opts->replay == ST_REPLAY_ALL && st_memtable_entries(db->mem) > 0) {
        /* What the WAL replayed goes to L0 in the background, as if the memtable had filled
           just before the new segment: reads then find it through a table's Bloom filter
           instead of searching a skiplist that would otherwise stay until more arrives. */
        if ((s = park_memtable(db, atomic_load(&db->visible_seq))))
            goto fail;
    }
    atomic_store(&db->last_sync_micros, now_micros(db));
    if ((s = remove_orphans(db)) || (s = install_sv(db)))
        goto fail;

    {
        /* Logged before the background threads start changing the version. */
        st_version *v = db->vs->current;
        st_db_logf(db,
                   "open dir=%s last_seq=%" PRIu64 " flushed_seq=%" PRIu64
                   " pending=%zu L0=%u L1=%u L2=%u",
                   dir, db->last_seq, db->vs->flushed_seq, db->npending, v->nfiles[0], v->nfiles[1],
                   v->nfiles[2]);
    }
    if (pthread_create(&db->flush_thread, NULL, flush_thread, db) != 0) {
        s = st_error(ST_IO_ERROR, "cannot start the flush thread");
        goto fail;
    }
    if (pthread_create(&db->compact_thread, NULL, st_compaction_thread, db) != 0) {
        pthread_mutex_lock(&db->mu);
        db->shutting_down = true;
        pthread_cond_broadcast(&db->flush_cv);
        pthread_mutex_unlock(&db->mu);
        pthread_join(db->flush_thread, NULL);
        s = st_error(ST_IO_ERROR, "cannot start the compaction thread");
        goto fail;
    }
    db->threads_started = true;
    st_db_delete_obsolete(db);
    *out = db;
    return ST_OK;
fail : {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", st_errmsg());
    st_db_close(db);
    return st_error(s, "%s", msg);
}
}

void st_db_close(st_db *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&db->mu);
    db->shutting_down = true;
    pthread_cond_broadcast(&db->flush_cv);
    pthread_cond_broadcast(&db->compact_cv);
    pthread_cond_broadcast(&db->room_cv);
    pthread_mutex_unlock(&db->mu);
    if (db->threads_started) {
        pthread_join(db->flush_thread, NULL);
        pthread_join(db->compact_thread, NULL);
    }
    if (db->wal && db->wal->writer && db->bg_error == ST_OK && db->wal_dirty)
        st_wal_sync(db->wal);
    st_db_sv_release(db->sv);
    st_memtable_unref(db->mem);
    for (size_t i = 0; i < db->nimms; i++)
        st_memtable_unref(db->imms[i].mem);
    free(db->imms);
    if (db->graveyard && db->tc && db->vs && db->wal)
        st_db_delete_obsolete(db);
    for (size_t i = 0; i < db->npending; i++)
        free(db->pending[i].data);
    free(db->pending);
    st_vset_destroy(db->vs);
    st_wal_close(db->wal);
    st_table_cache_destroy(db->tc);
    st_cache_destroy(db->block_cache);
    st_graveyard_destroy(db->graveyard);
    if (db->lock)
        db->env->unlock(db->lock);
    st_buf_free(&db->group);
    pthread_mutex_destroy(&db->manifest_mu);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->apply_mu);
    pthread_mutex_destroy(&db->sv_mu);
    pthread_cond_destroy(&db->flush_cv);
    pthread_cond_destroy(&db->compact_cv);
    pthread_cond_destroy(&db->room_cv);
    free(db->dir);
    free(db->sst_dir);
    free(db);
}

/* ---- stats ------------------------------------------------------------------------------- */

st_status st_db_stats(st_db *db, st_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&db->mu);
    out->last_seq = db->last_seq;
    out->last_term = db->wal->last_term;
    out->applied_seq = atomic_load(&db->visible_seq);
    out->flushed_seq = db->vs->flushed_seq;
    out->memtable_bytes = st_memtable_bytes(db->mem);
    out->immutables = (uint32_t)db->nimms;
    for (size_t i = 0; i < db->nimms; i++)
        out->immutable_bytes += st_memtable_bytes(db->imms[i].mem);
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        out->levels[l].files = db->vs->current->nfiles[l];
        out->levels[l].bytes = db->vs->current->level_bytes[l];
    }
    out->wal_segments = (uint32_t)db->wal->nsegs;
    out->wal_bytes = st_wal_bytes(db->wal);
    out->snapshots = db->nsnapshots;
    out->bg_status = db->bg_error;
    snprintf(out->bg_message, sizeof(out->bg_message), "%s", db->bg_msg);
    pthread_mutex_unlock(&db->mu);

    out->writes = atomic_load(&db->n_writes);
    out->write_groups = atomic_load(&db->n_groups);
    out->wal_syncs = atomic_load(&db->n_syncs);
    out->user_bytes = atomic_load(&db->n_user_bytes);
    out->wal_bytes_written = atomic_load(&db->n_wal_bytes);
    out->wal_bytes_mapped = atomic_load_explicit(&db->wal->mapped_bytes, memory_order_relaxed);
    out->flushes = atomic_load(&db->n_flushes);
    out->flush_bytes = atomic_load(&db->n_flush_bytes);
    out->compactions = atomic_load(&db->n_compactions);
    out->seek_compactions = atomic_load(&db->n_seek_compactions);
    out->compaction_bytes_read = atomic_load(&db->n_comp_read);
    out->compaction_bytes_written = atomic_load(&db->n_comp_written);
    out->stalls = atomic_load(&db->n_stalls);
    out->stall_micros = atomic_load(&db->n_stall_micros);
    out->stall_timeouts = atomic_load(&db->n_stall_timeouts);
    if (db->block_cache) {
        size_t usage;
        st_cache_stats(db->block_cache, &out->block_cache_hits, &out->block_cache_misses, &usage);
        out->block_cache_bytes = usage;
    }
    out->open_tables = st_table_cache_size(db->tc);
    return ST_OK;
}

/* ---- the replicated log ------------------------------------------------------------------ */

void st_db_set_term(st_db *db, uint64_t term)
{
    pthread_mutex_lock(&db->mu);
    db->term = term;
    pthread_mutex_unlock(&db->mu);
}

st_status st_db_log_append(st_db *db, uint64_t term, const st_batch *batch, uint64_t *last_seq)
{
    return st_db_log_append_early(db, term, batch, NULL, NULL, last_seq);
}

st_status st_db_log_append_early(st_db *db, uint64_t term, const st_batch *batch,
                                 st_log_written_fn written, void *ctx, uint64_t *last_seq)
{
    if (batch->count == 0)
        return st_error(ST_INVALID_ARGUMENT, "cannot append an empty batch to the log");
    st_slice rep = st_batch_rep(batch);
    st_status s = check_limits(db, rep);
    if (s)
        return s;
    st_writer w = {.kind = ST_W_APPEND,
                   .rep = rep,
                   .count = batch->count,
                   .term = term,
                   .written = written,
                   .written_ctx = ctx};
    s = submit(db, &w);
    if (s == ST_OK && last_seq)
        *last_seq = w.last_seq;
    return s;
}

st_status st_db_log_append_records(st_db *db, const st_slice *records, size_t n)
{
    if (n == 0)
        return ST_OK;
    st_writer w = {.kind = ST_W_RECORDS, .records = records, .nrecords = n};
    return submit(db, &w);
}

st_status st_db_log_apply(st_db *db, uint64_t upto)
{
    /* While the memtable has room, apply here, beside any append and its sync: a leader's commit
       must not wait for the sync of the records after it. A switch goes through the queue. */
    bool full = false;
    char msg[256] = "";
    pthread_mutex_lock(&db->apply_mu);
    pthread_mutex_lock(&db->mu);
    st_status s = apply_upto(db, upto, false, &full);
    if (s)
        snprintf(msg, sizeof(msg), "%s", st_errmsg());
    pthread_mutex_unlock(&db->mu);
    pthread_mutex_unlock(&db->apply_mu);
    if (s)
        return st_error(s, "%s", msg);
    if (!full)
        return ST_OK;
    st_writer w = {.kind = ST_W_APPLY_PENDING, .arg = upto};
    return submit(db, &w);
}

st_status st_db_log_truncate(st_db *db, uint64_t after_seq)
{
    st_writer w = {.kind = ST_W_TRUNCATE, .arg = after_seq};
    return submit(db, &w);
}

void st_db_log_state(st_db *db, uint64_t *last_seq, uint64_t *last_term, uint64_t *applied_seq)
{
    pthread_mutex_lock(&db->mu);
    if (last_seq)
        *last_seq = db->last_seq;
    if (last_term)
        *last_term = db->wal->last_term;
    if (applied_seq)
        *applied_seq = atomic_load(&db->visible_seq);
    pthread_mutex_unlock(&db->mu);
}

st_status st_db_log_term_at(st_db *db, uint64_t seq, uint64_t *term)
{
    st_status s = ST_OK;
    if (seq == 0) {
        *term = 0;
        return ST_OK;
    }
    pthread_mutex_lock(&db->mu);
    if (st_wal_term_at(db->wal, seq, term) != ST_OK) {
        if (seq == db->vs->flushed_seq)
            *term = db->vs->flushed_term;
        else
            s = st_error(ST_NOT_FOUND, "the log does not hold sequence %" PRIu64, seq);
    }
    pthread_mutex_unlock(&db->mu);
    return s;
}

void st_db_log_retain(st_db *db, uint64_t seq)
{
    pthread_mutex_lock(&db->mu);
    db->retain_seq = seq;
    pthread_mutex_unlock(&db->mu);
}

st_status st_db_checkpoint(st_db *db, const char *dir, uint64_t *seq, uint64_t *term)
{
    if (db->env->exists(db->env, dir))
        return st_error(ST_INVALID_ARGUMENT, "checkpoint directory %s already exists", dir);
    st_status s = st_db_flush(db);
    if (s)
        return s;
    size_t cap = strlen(dir) + ST_NAME_EXTRA + 8;
    char *sst = malloc(cap), *from = malloc(strlen(db->sst_dir) + ST_NAME_EXTRA), *to = malloc(cap);
    if (!sst || !from || !to) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto done;
    }
    snprintf(sst, cap, "%s/sst", dir);
    if ((s = db->env->mkdir(db->env, dir)) || (s = db->env->mkdir(db->env, sst)))
        goto done;
    /* Hold version changes still while the tables are linked and the MANIFEST written. */
    pthread_mutex_lock(&db->manifest_mu);
    st_version *v = db->vs->current;
    static const char *const exts[] = {".dat", ".idx", ".meta"};
    for (int l = 0; l < ST_NUM_LEVELS && s == ST_OK; l++) {
        for (uint32_t i = 0; i < v->nfiles[l] && s == ST_OK; i++) {
            for (int e = 0; e < 3 && s == ST_OK; e++) {
                uint64_t n = v->files[l][i]->number;
                st_numbered_path(from, strlen(db->sst_dir) + ST_NAME_EXTRA, db->sst_dir, n,
                                 exts[e]);
                st_numbered_path(to, cap, sst, n, exts[e]);
                s = db->env->link(db->env, from, to);
            }
        }
    }
    if (s == ST_OK && (s = db->env->sync_dir(db->env, sst)) == ST_OK)
        s = st_vset_write_checkpoint(db->vs, dir);
    uint64_t at = db->vs->flushed_seq, at_term = db->vs->flushed_term;
    pthread_mutex_unlock(&db->manifest_mu);
    if (s == ST_OK) {
        if (seq)
            *seq = at;
        if (term)
            *term = at_term;
        st_db_logf(db, "checkpoint dir=%s seq=%" PRIu64, dir, at);
    }
done:
    free(sst);
    free(from);
    free(to);
    return s;
}

st_status st_db_install_checkpoint(st_db *db, const char *dir, uint64_t *seq)
{
    st_version_set *cvs = NULL;
    st_status s = st_vset_create(db->env, dir, NULL, &cvs);
    if (s == ST_OK && (s = st_vset_recover(cvs)) == ST_NOT_FOUND)
        s = st_error(ST_INVALID_ARGUMENT, "%s holds no checkpoint (no CURRENT)", dir);
    if (s == ST_OK) {
        st_writer w = {.kind = ST_W_INSTALL, .install = cvs, .install_dir = dir};
        s = submit(db, &w);
        if (s == ST_OK && seq)
            *seq = w.last_seq;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", st_errmsg());
    st_vset_destroy(cvs);
    if (s)
        st_error(s, "%s", msg);
    else
        st_db_delete_obsolete(db);
    return s;
}

struct st_log_iter {
    st_db *db;
    uint64_t from_seq;
    uint64_t segment; /* number of the segment being read */
    st_file *file;
    st_log_reader *reader;
};

/*
 * The segment after the one being read, or 0 if it is the newest; and the reader's limit set to
 * where the segment being read ends now (it may be the live one, allocated ahead in zeros).
 */
static uint64_t next_segment(st_log_iter *it)
{
    st_db *db = it->db;
    uint64_t next = 0;
    pthread_mutex_lock(&db->mu);
    for (size_t i = 0; i < db->wal->nsegs; i++) {
        if (db->wal->segs[i].number > it->segment) {
            next = db->wal->segs[i].number;
            break;
        }
    }
    st_log_reader_set_limit(it->reader, st_wal_readable_end(db->wal, it->segment));
    pthread_mutex_unlock(&db->mu);
    return next;
}

static st_status log_iter_open(st_log_iter *it, uint64_t number)
{
    char path[4096], name[64];
    st_log_reader_destroy(it->reader);
    it->reader = NULL;
    if (it->file)
        it->db->env->close(it->file);
    it->file = NULL;
    it->segment = number;
    st_wal_path(it->db->wal, path, sizeof(path), number);
    snprintf(name, sizeof(name), "wal/%06" PRIu64 ".log", number);
    st_status s = it->db->env->open_readable(it->db->env, path, &it->file);
    if (s == ST_NOT_FOUND)
        return st_error(ST_NOT_FOUND, "%s was deleted: the log no longer reaches sequence %" PRIu64,
                        name, it->from_seq);
    if (s == ST_OK)
        s = st_log_reader_create(it->db->env, it->file, name, 0, &it->reader);
    if (s == ST_OK)
        next_segment(it); /* sets the reader's limit */
    return s;
}

st_status st_log_iter_create(st_db *db, uint64_t from_seq, st_log_iter **out)
{
    st_log_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return st_error(ST_NO_MEMORY, "out of memory");
    it->db = db;
    it->from_seq = from_seq ? from_seq : 1;
    pthread_mutex_lock(&db->mu);
    long idx = st_wal_find(db->wal, it->from_seq);
    uint64_t number = idx >= 0 ? db->wal->segs[idx].number : 0;
    pthread_mutex_unlock(&db->mu);
    st_status s =
        idx >= 0 ? log_iter_open(it, number)
                 : st_error(ST_NOT_FOUND, "the log does not reach sequence %" PRIu64, it->from_seq);
    if (s) {
        st_log_iter_destroy(it);
        return s;
    }
    *out = it;
    return ST_OK;
}

st_status st_log_iter_next(st_log_iter *it, st_slice *record)
{
    for (;;) {
        uint64_t off;
        st_status s = st_log_reader_next(it->reader, record, &off);
        if (s == ST_NOT_FOUND) {
            /* The limit moves to what the writer has added since; read again up to it. */
            uint64_t next = next_segment(it);
            s = st_log_reader_next(it->reader, record, &off);
            if (s == ST_NOT_FOUND && next == 0)
                return st_error(ST_NOT_FOUND, "end of the log");
            if (s == ST_NOT_FOUND) {
                if ((s = log_iter_open(it, next)))
                    return s;
                continue;
            }
        }
        if (s)
            return s;
        st_log_record_info info;
        if ((s = st_record_check(*record, "log record", &info)))
            return s;
        if (info.seq + info.count - 1 < it->from_seq)
            continue;
        return ST_OK;
    }
}

void st_log_iter_destroy(st_log_iter *it)
{
    if (!it)
        return;
    st_log_reader_destroy(it->reader);
    if (it->file)
        it->db->env->close(it->file);
    free(it);
}
