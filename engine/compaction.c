/*
 * compaction.c - the compaction thread: what to merge, and the merge itself.
 *
 * L0 is tiered: once it holds l0_compaction_trigger tables, all of them and the L1 tables they
 * overlap merge into L1. L1 and deeper are leveled: when a level's bytes pass its target
 * (level1_bytes × 10^(n-1)), one of its tables, picked round-robin by key, merges with the
 * tables of the next level it overlaps. A table of L≥1 that overlaps nothing below is moved, not
 * rewritten.
 *
 * What the merge may drop: for each user key, versions come newest first. A version is dropped
 * when a newer version of the same key is visible to every snapshot (its sequence is at or below
 * the smallest snapshot); a tombstone is dropped when it too is visible to every snapshot and no
 * level below the output holds the key (so nothing older can come back).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/db_impl.h"
#include "engine/merger.h"
#include "engine/sst_builder.h"
#include "engine/table.h"

typedef struct compaction {
    int level, out_level;
    st_file_meta **inputs[2]; /* borrowed from version */
    size_t ninputs[2];
    st_version *version; /* referenced */
    bool manual;
    bool move; /* tables that overlap nothing below nor each other: move them down */
    bool seek; /* chosen because reads kept passing through a table (st_seek_hint) */
} compaction;

static void compaction_free(compaction *c)
{
    if (!c)
        return;
    free(c->inputs[0]);
    free(c->inputs[1]);
    st_version_unref(c->version);
    free(c);
}

static uint64_t level_target(const st_db *db, int level)
{
    uint64_t t = db->opts.level1_bytes;
    for (int l = 1; l < level; l++)
        t *= 10;
    return t;
}

static st_slice meta_user(const st_buf *ikey)
{
    return st_ikey_user(st_slice_make(ikey->data, ikey->len));
}

/* The user-key range covered by a list of tables. */
static void range_of(st_file_meta **files, size_t n, st_slice *lo, st_slice *hi)
{
    for (size_t i = 0; i < n; i++) {
        st_slice a = meta_user(&files[i]->smallest), b = meta_user(&files[i]->largest);
        if (i == 0 || st_slice_cmp(a, *lo) < 0)
            *lo = a;
        if (i == 0 || st_slice_cmp(b, *hi) > 0)
            *hi = b;
    }
}

/* No user key is in two of these tables. */
static bool disjoint(st_file_meta **files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (st_slice_cmp(meta_user(&files[i]->largest), meta_user(&files[j]->smallest)) >= 0 &&
                st_slice_cmp(meta_user(&files[j]->largest), meta_user(&files[i]->smallest)) >= 0)
                return false;
    return true;
}

/* Fill inputs[1] with the tables of out_level overlapping inputs[0]. */
static st_status add_next_level(compaction *c)
{
    st_slice lo = {NULL, 0}, hi = {NULL, 0};
    range_of(c->inputs[0], c->ninputs[0], &lo, &hi);
    return st_version_overlapping(c->version, c->out_level, lo, hi, &c->inputs[1], &c->ninputs[1]);
}

static compaction *compaction_new(st_db *db, int level)
{
    compaction *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->level = level;
    c->out_level = level + 1;
    c->version = db->vs->current;
    st_version_ref(c->version);
    return c;
}

/* Choose an automatic compaction, or NULL (mu held). */
static compaction *pick_auto(st_db *db)
{
    st_version *v = db->vs->current;
    int level = -1;
    st_file_meta *seek = NULL;
    if (v->nfiles[0] >= (uint32_t)db->opts.l0_compaction_trigger) {
        level = 0;
    } else {
        double best = 1.0;
        for (int l = 1; l < ST_NUM_LEVELS - 1; l++) {
            double score = (double)v->level_bytes[l] / (double)level_target(db, l);
            if (score >= best) {
                best = score;
                level = l;
            }
        }
    }
    /* Nothing is over its size: compact a table that reads keep passing through, if any (one
       of L0 takes all of L0 with it, as L0 always goes down whole). */
    if (level < 0 && v->seek_file) {
        level = v->seek_level;
        seek = v->seek_file;
        v->seek_file = NULL; /* once: a failure is a background error anyway */
    }
    if (level < 0)
        return NULL;
    compaction *c = compaction_new(db, level);
    if (!c)
        return NULL;
    if (level == 0) {
        c->inputs[0] = malloc(v->nfiles[0] * sizeof(st_file_meta *));
        if (!c->inputs[0])
            goto fail;
        memcpy(c->inputs[0], v->files[0], v->nfiles[0] * sizeof(st_file_meta *));
        c->ninputs[0] = v->nfiles[0];
    } else {
        /* Round-robin: the first table past where the last compaction of this level ended. */
        const st_buf *ptr = &db->vs->compact_ptr[level];
        uint32_t pick = 0;
        if (ptr->len) {
            st_slice p = st_slice_make(ptr->data, ptr->len);
            while (pick < v->nfiles[level] &&
                   st_ikey_cmp(st_slice_make(v->files[level][pick]->largest.data,
                                             v->files[level][pick]->largest.len),
                               p) <= 0)
                pick++;
            if (pick == v->nfiles[level])
                pick = 0;
        }
        c->inputs[0] = malloc(sizeof(st_file_meta *));
        if (!c->inputs[0])
            goto fail;
        c->inputs[0][0] = seek ? seek : v->files[level][pick];
        c->ninputs[0] = 1;
    }
    if (add_next_level(c))
        goto fail;
    /* Nothing below overlaps: the inputs can go down as they are, if they do not overlap each
       other either (L0 tables may; tables of one level >= 1 never do). Sequential writes make
       L0 tables like that: moving them saves rewriting every byte once more. */
    c->move = c->ninputs[1] == 0 && (level > 0 || disjoint(c->inputs[0], c->ninputs[0]));
    c->seek = seek != NULL;
    return c;
fail:
    compaction_free(c);
    return NULL;
}

/*
 * The next step of a manual compaction, or NULL when it is complete (mu held). Each step merges
 * the tables of one level overlapping the range into the next level.
 */
static compaction *pick_manual(st_db *db, st_manual *m, st_status *err)
{
    st_slice begin = st_slice_make(m->begin.data, m->begin.len);
    st_slice end = st_slice_make(m->end.data, m->end.len);
    *err = ST_OK;
    for (; m->level < m->target; m->level++) {
        compaction *c = compaction_new(db, m->level);
        if (!c) {
            *err = st_error(ST_NO_MEMORY, "out of memory");
            return NULL;
        }
        c->manual = true;
        st_status s;
        if (m->level == 0) {
            /* L0 tables overlap each other: take them all so no older version stays above. */
            st_slice none = {NULL, 0};
            s = st_version_overlapping(c->version, 0, none, none, &c->inputs[0], &c->ninputs[0]);
        } else {
            s = st_version_overlapping(c->version, m->level, begin, end, &c->inputs[0],
                                       &c->ninputs[0]);
        }
        if (s == ST_OK && c->ninputs[0] > 0)
            s = add_next_level(c);
        if (s) {
            *err = s;
            compaction_free(c);
            return NULL;
        }
        if (c->ninputs[0] > 0)
            return c;
        compaction_free(c);
    }
    return NULL;
}

static void mark(compaction *c, bool on)
{
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < c->ninputs[i]; k++)
            c->inputs[i][k]->compacting = on;
}

/* ---- the merge ---------------------------------------------------------------------------- */

typedef struct merge_state {
    st_db *db;
    compaction *c;
    uint64_t smallest_snapshot;
    uint32_t level_ptr[ST_NUM_LEVELS]; /* for base_level: keys only grow, so never look back */
    st_sst_builder *builder;
    uint64_t builder_number;
    st_file_meta **outputs;
    size_t noutputs, cap_outputs;
    uint64_t bytes_read, bytes_written;
} merge_state;

/* Whether no level below the output can hold `ukey`. */
static bool is_base_level(merge_state *ms, st_slice ukey)
{
    st_version *v = ms->c->version;
    for (int l = ms->c->out_level + 1; l < ST_NUM_LEVELS; l++) {
        while (ms->level_ptr[l] < v->nfiles[l]) {
            st_file_meta *f = v->files[l][ms->level_ptr[l]];
            if (st_slice_cmp(ukey, meta_user(&f->largest)) <= 0) {
                if (st_slice_cmp(ukey, meta_user(&f->smallest)) >= 0)
                    return false;
                break;
            }
            ms->level_ptr[l]++;
        }
    }
    return true;
}

static st_status finish_output(merge_state *ms)
{
    st_sst_props props;
    memset(&props, 0, sizeof(props));
    st_status s = st_sst_builder_finish(ms->builder, &props);
    st_sst_builder_destroy(ms->builder);
    ms->builder = NULL;
    if (s)
        return s;
    st_file_meta *f = st_file_meta_new();
    if (!f || (ms->noutputs == ms->cap_outputs &&
               !(ms->outputs = realloc(ms->outputs, (ms->cap_outputs = ms->cap_outputs * 2 + 4) *
                                                        sizeof(*ms->outputs))))) {
        st_file_meta_unref(f);
        st_sst_props_free(&props);
        return st_error(ST_NO_MEMORY, "out of memory");
    }
    f->number = ms->builder_number;
    f->dat_bytes = props.dat_bytes;
    f->idx_bytes = props.idx_bytes;
    f->meta_bytes = props.meta_bytes;
    f->entries = props.entries;
    f->tombstones = props.tombstones;
    f->min_seq = props.min_seq;
    f->max_seq = props.max_seq;
    f->smallest = props.smallest;
    f->largest = props.largest;
    ms->outputs[ms->noutputs++] = f;
    ms->bytes_written += st_file_bytes(f);
    return ST_OK;
}

static st_status open_inputs(merge_state *ms, st_iterator **out)
{
    compaction *c = ms->c;
    size_t n = c->ninputs[0] + c->ninputs[1];
    st_iterator **list = calloc(n ? n : 1, sizeof(*list));
    if (!list)
        return st_error(ST_NO_MEMORY, "out of memory");
    size_t k = 0;
    st_status s = ST_OK;
    for (int i = 0; i < 2 && s == ST_OK; i++) {
        for (size_t j = 0; j < c->ninputs[i] && s == ST_OK; j++) {
            st_file_meta *f = c->inputs[i][j];
            st_table *t;
            if ((s = st_table_cache_get(ms->db->tc, f->number, f->dat_bytes, &t)))
                break;
            list[k] = st_table_iter_once(t); /* not through the map: see table.h */
            st_table_unref(t);
            if (!list[k++])
                s = st_error(ST_NO_MEMORY, "out of memory");
            ms->bytes_read += st_file_bytes(f);
        }
    }
    if (s) {
        for (size_t i = 0; i < k; i++)
            st_it_destroy(list[i]);
        free(list);
        return s;
    }
    *out = st_merging_iter_create(list, k);
    free(list);
    return *out ? ST_OK : st_error(ST_NO_MEMORY, "out of memory");
}

static bool shutting_down(st_db *db)
{
    pthread_mutex_lock(&db->mu);
    bool down = db->shutting_down;
    pthread_mutex_unlock(&db->mu);
    return down;
}

static st_status merge(merge_state *ms)
{
    st_db *db = ms->db;
    st_iterator *it = NULL;
    st_status s = open_inputs(ms, &it);
    if (s)
        return s;
    st_sst_options so = {db->opts.block_bytes, 16, db->opts.bloom_bits_per_key};
    st_buf cur;
    st_buf_init(&cur);
    bool have_cur = false, cut = false;
    uint64_t last_seq_for_key = UINT64_MAX, n = 0;

    for (st_it_seek_first(it); st_it_valid(it); st_it_next(it)) {
        if ((++n & 1023) == 0 && shutting_down(db)) {
            s = st_error(ST_SHUTDOWN, "compaction abandoned: the database is closing");
            break;
        }
        st_slice ikey = st_it_key(it);
        if (!st_ikey_valid(ikey)) {
            s = st_error(ST_CORRUPTION, "compaction input holds a malformed internal key");
            break;
        }
        st_slice ukey = st_ikey_user(ikey);
        uint64_t seq = st_ikey_seq(ikey);
        if (!have_cur || !st_slice_eq(ukey, st_slice_make(cur.data, cur.len))) {
            st_buf_clear(&cur);
            if (!st_buf_append(&cur, ukey.data, ukey.len)) {
                s = st_error(ST_NO_MEMORY, "out of memory");
                break;
            }
            have_cur = true;
            last_seq_for_key = UINT64_MAX;
            /* Cut outputs only between user keys, so tables of a level never share one. */
            if (cut && ms->builder) {
                if ((s = finish_output(ms)))
                    break;
                cut = false;
            }
        }
        bool drop = false;
        if (last_seq_for_key <= ms->smallest_snapshot)
            drop = true; /* shadowed by a newer version every reader sees */
        else if (st_ikey_kind(ikey) == ST_KIND_DELETE && seq <= ms->smallest_snapshot &&
                 is_base_level(ms, ukey))
            drop = true; /* a tombstone with nothing left to hide */
        last_seq_for_key = seq;
        if (drop)
            continue;
        if (!ms->builder) {
            ms->builder_number = st_vset_new_file_number(db->vs);
            if ((s = st_sst_builder_create(db->env, db->sst_dir, ms->builder_number, &so,
                                           &ms->builder)))
                break;
        }
        if ((s = st_sst_builder_add(ms->builder, ikey, st_it_value(it))))
            break;
        if (st_sst_builder_bytes(ms->builder) >= db->opts.table_bytes)
            cut = true;
    }
    if (s == ST_OK)
        s = st_it_status(it);
    if (s == ST_OK && ms->builder)
        s = finish_output(ms);
    st_it_destroy(it);
    st_buf_free(&cur);
    return s;
}

static st_status run(st_db *db, compaction *c, uint64_t smallest_snapshot, uint64_t generation)
{
    uint64_t start = db->env->now_micros(db->env);
    bool stale = false;
    st_version_edit e;
    st_edit_init(&e);
    st_status s = ST_OK;
    merge_state ms;
    memset(&ms, 0, sizeof(ms));
    ms.db = db;
    ms.c = c;
    ms.smallest_snapshot = smallest_snapshot;

    for (int i = 0; i < 2 && s == ST_OK; i++)
        for (size_t k = 0; k < c->ninputs[i] && s == ST_OK; k++)
            s = st_edit_delete_file(&e, i == 0 ? c->level : c->out_level, c->inputs[i][k]->number);
    if (s)
        goto done;
    if (c->move) {
        for (size_t k = 0; k < c->ninputs[0] && s == ST_OK; k++)
            s = st_edit_add_file(&e, c->out_level, c->inputs[0][k]);
    } else {
        s = merge(&ms);
        if (s == ST_OK && ms.noutputs > 0)
            s = db->env->sync_dir(db->env, db->sst_dir);
        for (size_t i = 0; i < ms.noutputs && s == ST_OK; i++)
            s = st_edit_add_file(&e, c->out_level, ms.outputs[i]);
    }
    if (s == ST_OK && c->level > 0) {
        const st_buf *largest = &c->inputs[0][c->ninputs[0] - 1]->largest;
        e.has_compact_ptr[c->level] =
            st_buf_append(&e.compact_ptr[c->level], largest->data, largest->len);
    }
    if (s) {
        /* Nothing reached the MANIFEST: the outputs are garbage. Keep the failure's message. */
        char saved[512];
        snprintf(saved, sizeof(saved), "%s", st_errmsg());
        st_sst_builder_destroy(ms.builder);
        ms.builder = NULL;
        for (size_t i = 0; i < ms.noutputs; i++)
            st_sst_remove(db->env, db->sst_dir, ms.outputs[i]->number);
        st_error(s, "%s", saved);
        goto done;
    }
    /* Counted before the edit is applied, as a flush is: a reader of the stats that sees the new
       version (st_db_stats takes the lock that installs it) sees its bytes too. Taken back if
       the outputs do not go in. */
    uint64_t read = c->move ? 0 : ms.bytes_read;
    atomic_fetch_add_explicit(&db->n_comp_read, read, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->n_comp_written, ms.bytes_written, memory_order_relaxed);
    s = st_db_apply_edit(db, &e, generation, &stale);
    if (s != ST_OK || stale) {
        atomic_fetch_sub_explicit(&db->n_comp_read, read, memory_order_relaxed);
        atomic_fetch_sub_explicit(&db->n_comp_written, ms.bytes_written, memory_order_relaxed);
    }
    if (s)
        goto done;
    if (stale) {
        /* A checkpoint replaced the inputs while they were merged. */
        for (size_t i = 0; i < ms.noutputs; i++)
            st_sst_remove(db->env, db->sst_dir, ms.outputs[i]->number);
        goto done;
    }
    if (!c->move) {
        /* The inputs are out of the live version: let go of their maps now (a reader still on
           the old version opens them again, briefly), rather than when the files are deleted,
           once the last such reader is gone and the next flush or compaction comes. Left
           mapped, their pages stay resident in the process beside the outputs' as readers
           move over. */
        for (int i = 0; i < 2; i++)
            for (size_t k = 0; k < c->ninputs[i]; k++)
                st_table_cache_evict(db->tc, c->inputs[i][k]->number);
    }
    atomic_fetch_add_explicit(&db->n_compactions, 1, memory_order_relaxed);
    if (c->seek)
        atomic_fetch_add_explicit(&db->n_seek_compactions, 1, memory_order_relaxed);
    st_db_logf(db,
               "compaction%s L%d->L%d inputs=%zu+%zu outputs=%zu read=%" PRIu64 " written=%" PRIu64
               " micros=%" PRIu64,
               c->move ? "_move" : (c->manual ? "_manual" : ""), c->level, c->out_level,
               c->ninputs[0], c->ninputs[1], ms.noutputs, read, ms.bytes_written,
               db->env->now_micros(db->env) - start);
done:
    for (size_t i = 0; i < ms.noutputs; i++)
        st_file_meta_unref(ms.outputs[i]);
    free(ms.outputs);
    st_edit_free(&e);
    return s;
}

void *st_compaction_thread(void *arg)
{
    st_db *db = arg;
    pthread_setname_np(pthread_self(), "st-compact");
    pthread_mutex_lock(&db->mu);
    while (!db->shutting_down) {
        st_manual *m = db->manual && !db->manual->done ? db->manual : NULL;
        compaction *c = NULL;
        st_status s = ST_OK;
        if (db->bg_error) {
            s = db->bg_error;
            st_error(s, "%s", db->bg_msg);
        } else if (m) {
            c = pick_manual(db, m, &s);
        } else {
            c = pick_auto(db);
        }
        if (m && !c) {
            /* The manual request is complete, or cannot go on. */
            m->done = true;
            m->status = s;
            snprintf(m->msg, sizeof(m->msg), "%s", s ? st_errmsg() : "");
            pthread_cond_broadcast(&db->room_cv);
            continue;
        }
        if (!c) {
            pthread_cond_wait(&db->compact_cv, &db->mu);
            continue;
        }
        uint64_t smallest = st_db_smallest_snapshot(db);
        uint64_t generation = atomic_load(&db->generation);
        mark(c, true);
        db->compaction_running = true;
        pthread_mutex_unlock(&db->mu);

        s = run(db, c, smallest, generation);
        char msg[256];
        snprintf(msg, sizeof(msg), "compaction failed: %s", st_errmsg());
        if (s && s != ST_SHUTDOWN)
            st_db_logf(db, "error %s", msg);
        st_db_delete_obsolete(db);

        pthread_mutex_lock(&db->mu);
        db->compaction_running = false;
        mark(c, false);
        if (s && s != ST_SHUTDOWN)
            st_db_set_bg_error(db, s, msg);
        if (m && c->manual) {
            if (s) {
                m->done = true;
                m->status = s;
                snprintf(m->msg, sizeof(m->msg), "%s", msg);
            } else {
                m->level++;
            }
        }
        pthread_cond_broadcast(&db->room_cv);
        pthread_mutex_unlock(&db->mu);
        compaction_free(c);
        pthread_mutex_lock(&db->mu);
    }
    if (db->manual && !db->manual->done) {
        db->manual->done = true;
        db->manual->status = ST_SHUTDOWN;
        snprintf(db->manual->msg, sizeof(db->manual->msg), "the database is closing");
    }
    pthread_cond_broadcast(&db->room_cv);
    pthread_mutex_unlock(&db->mu);
    return NULL;
}
