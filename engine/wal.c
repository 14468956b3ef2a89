/* wal.c - WAL segments: recovery, appends, rotation, truncation, retention. */
#include "engine/wal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/filename.h"
#include "engine/log_reader.h"
#include "engine/write_batch.h"

static void say(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
{
    if (!log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(ctx, line);
}

char *st_wal_path(const st_wal *w, char *buf, size_t cap, uint64_t number)
{
    return st_numbered_path(buf, cap, w->dir, number, ".log");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static bool push_segment(st_wal *w, uint64_t number)
{
    if (w->nsegs == w->cap_segs) {
        size_t c = w->cap_segs ? w->cap_segs * 2 : 16;
        st_wal_segment *p = realloc(w->segs, c * sizeof(*p));
        if (!p)
            return false;
        w->segs = p;
        w->cap_segs = c;
    }
    w->segs[w->nsegs++] = (st_wal_segment){number, 0, 0, 0};
    return true;
}

st_status st_wal_open(st_env *env, const char *db_dir, st_sync_policy policy, st_wal **out)
{
    st_status s;
    char **names = NULL;
    size_t count = 0;
    uint64_t *nums = NULL;
    st_wal *w = calloc(1, sizeof(*w));
    if (!w)
        return st_error(ST_NO_MEMORY, "out of memory");
    w->env = env;
    w->policy = policy;
    pthread_mutex_init(&w->sync_mu, NULL);
    size_t n = strlen(db_dir) + 5;
    if (!(w->dir = malloc(n))) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    snprintf(w->dir, n, "%s/wal", db_dir);
    if ((s = env->mkdir(env, w->dir)) || (s = env->list(env, w->dir, &names, &count)))
        goto fail;
    nums = malloc((count + 1) * sizeof(*nums));
    if (!nums) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t num;
        if (st_parse_filename(names[i], &num) == ST_FILE_WAL)
            nums[k++] = num;
    }
    qsort(nums, k, sizeof(*nums), cmp_u64);
    for (size_t i = 0; i < k; i++) {
        if (!push_segment(w, nums[i])) {
            s = st_error(ST_NO_MEMORY, "out of memory");
            goto fail;
        }
    }
    *out = w;
    w = NULL;
    s = ST_OK;
fail:
    st_env_free_names(names, count);
    free(nums);
    st_wal_close(w);
    return s;
}

void st_wal_close(st_wal *w)
{
    if (!w)
        return;
    st_log_writer_destroy(w->writer);
    pthread_mutex_destroy(&w->sync_mu);
    free(w->segs);
    free(w->terms);
    free(w->dir);
    free(w);
}

static bool note_term(st_wal *w, uint64_t seq, uint64_t term)
{
    if (w->nterms > 0 && w->terms[w->nterms - 1].term == term)
        return true;
    if (w->nterms == w->cap_terms) {
        size_t c = w->cap_terms ? w->cap_terms * 2 : 8;
        st_wal_term_run *p = realloc(w->terms, c * sizeof(*p));
        if (!p)
            return false;
        w->terms = p;
        w->cap_terms = c;
    }
    w->terms[w->nterms++] = (st_wal_term_run){seq, term};
    return true;
}

void st_wal_note_record(st_wal *w, const st_log_record_info *info, uint64_t bytes)
{
    st_wal_segment *seg = &w->segs[w->nsegs - 1];
    uint64_t last = info->seq + (info->count ? info->count - 1 : 0);
    if (seg->first_seq == 0)
        seg->first_seq = info->seq;
    seg->last_seq = last;
    seg->bytes += bytes;
    /* On allocation failure the run is lost and term_at answers NOT_FOUND for it: safe. */
    note_term(w, info->seq, info->term);
    w->last_seq = last;
    w->last_term = info->term;
}

/* Cut segment file `path` to `size` bytes and make that durable. */
static st_status cut_file(st_env *env, const char *path, uint64_t size)
{
    st_file *f;
    st_status s = env->open_writable(env, path, true, &f);
    if (s)
        return s;
    if (!(s = env->truncate(f, size)))
        s = env->sync(f);
    env->close(f);
    return s;
}

typedef struct recover_state {
    st_wal *w;
    uint64_t flushed_seq;
    uint64_t expect; /* next sequence expected after flushed_seq, or 0 before the first */
    st_wal_recover_fn fn;
    void *ctx;
} recover_state;

/* Read one segment; *torn gets whether it ended in a torn tail, *good_end its good length. */
static st_status recover_segment(recover_state *rs, size_t idx, bool *torn, uint64_t *good_end)
{
    st_wal *w = rs->w;
    st_wal_segment *seg = &w->segs[idx];
    char path[4096], name[64];
    st_file *f = NULL;
    st_log_reader *r = NULL;
    st_status s;

    st_wal_path(w, path, sizeof(path), seg->number);
    snprintf(name, sizeof(name), "wal/%06" PRIu64 ".log", seg->number);
    if ((s = w->env->open_readable(w->env, path, &f)))
        return s;
    if ((s = st_log_reader_create(w->env, f, name, 0, &r)))
        goto done;
    /* A crash leaves a last record cut short (or zeros), never a whole one with a bad checksum:
       that is damage to an acknowledged write, reported rather than dropped (as etcd does). */
    st_log_reader_set_strict(r, true);
    for (;;) {
        st_wal_found found;
        s = st_log_reader_next(r, &found.record, &found.offset);
        if (s == ST_NOT_FOUND) {
            s = ST_OK;
            break;
        }
        if (s)
            goto done;
        char what[96];
        snprintf(what, sizeof(what), "%s offset %" PRIu64, name, found.offset);
        if ((s = st_record_check(found.record, what, &found.info)))
            goto done;
        uint64_t last = found.info.seq + (found.info.count ? found.info.count - 1 : 0);
        if (w->last_seq && found.info.seq != w->last_seq + 1) {
            s = st_error(ST_CORRUPTION,
                         "%s: record sequence %" PRIu64 " does not follow %" PRIu64
                         " (a gap or overlap in the log)",
                         what, found.info.seq, w->last_seq);
            goto done;
        }
        if (last > rs->flushed_seq) {
            if (found.info.seq <= rs->flushed_seq) {
                s = st_error(ST_CORRUPTION,
                             "%s: record %" PRIu64 "..%" PRIu64
                             " straddles the flushed sequence %" PRIu64,
                             what, found.info.seq, last, rs->flushed_seq);
                goto done;
            }
            if (rs->expect == 0 && found.info.seq != rs->flushed_seq + 1) {
                s = st_error(ST_CORRUPTION,
                             "%s: the log resumes at sequence %" PRIu64
                             " but the tables end at %" PRIu64 ": records are missing",
                             what, found.info.seq, rs->flushed_seq);
                goto done;
            }
            rs->expect = last + 1;
            found.segment = seg->number;
            if ((s = rs->fn(rs->ctx, &found)))
                goto done;
        }
        uint64_t bytes = st_log_reader_good_end(r) - found.offset;
        if (seg->first_seq == 0)
            seg->first_seq = found.info.seq;
        seg->last_seq = last;
        seg->bytes += bytes;
        if (!note_term(w, found.info.seq, found.info.term)) {
            s = st_error(ST_NO_MEMORY, "out of memory");
            goto done;
        }
        w->last_seq = last;
        w->last_term = found.info.term;
    }
    *good_end = st_log_reader_good_end(r);
    *torn = st_log_reader_torn_bytes(r) > 0;
done:
    st_log_reader_destroy(r);
    w->env->close(f);
    return s;
}

st_status st_wal_recover(st_wal *w, uint64_t flushed_seq, st_wal_recover_fn fn, void *ctx,
                         void (*log)(void *, const char *), void *log_ctx)
{
    recover_state rs = {w, flushed_seq, 0, fn, ctx};
    char path[4096];
    for (size_t i = 0; i < w->nsegs; i++) {
        bool torn = false;
        uint64_t good_end = 0;
        st_status s = recover_segment(&rs, i, &torn, &good_end);
        if (s)
            return s;
        if (!torn)
            continue;
        st_wal_path(w, path, sizeof(path), w->segs[i].number);
        say(log, log_ctx, "wal_torn_tail segment=%06" PRIu64 " kept_bytes=%" PRIu64,
            w->segs[i].number, good_end);
        if ((s = cut_file(w->env, path, good_end)))
            return s;
        /* A torn tail ends the log: whatever follows must be empty. */
        for (size_t j = i + 1; j < w->nsegs; j++) {
            uint64_t size = 0;
            st_wal_path(w, path, sizeof(path), w->segs[j].number);
            if ((s = w->env->file_size(w->env, path, &size)))
                return s;
            if (size > 0)
                return st_error(ST_CORRUPTION,
                                "wal/%06" PRIu64 ".log: ends in a torn record but later segment "
                                "wal/%06" PRIu64 ".log holds data",
                                w->segs[i].number, w->segs[j].number);
        }
    }
    return ST_OK;
}

st_status st_wal_new_segment(st_wal *w, uint64_t number)
{
    char path[4096];
    st_file *f = NULL;
    st_log_writer *lw = NULL;
    st_status s;

    if (w->writer && w->policy != ST_SYNC_NONE && (s = st_log_writer_sync(w->writer)))
        return s;
    if (!push_segment(w, number))
        return st_error(ST_NO_MEMORY, "out of memory");
    st_wal_path(w, path, sizeof(path), number);
    if ((s = w->env->open_writable(w->env, path, false, &f)))
        goto fail;
    if ((s = st_log_writer_create_mapped(w->env, f, 0, &lw))) /* closes f if it fails */
        goto fail;
    if (w->policy != ST_SYNC_NONE && (s = w->env->sync_dir(w->env, w->dir)))
        goto fail;
    pthread_mutex_lock(&w->sync_mu);
    st_log_writer *old = w->writer;
    w->writer = lw;
    pthread_mutex_unlock(&w->sync_mu);
    st_log_writer_destroy(old);
    return ST_OK;
fail:
    st_log_writer_destroy(lw);
    w->nsegs--;
    w->env->unlink(w->env, path);
    return s;
}

st_status st_wal_append(st_wal *w, st_slice record, uint64_t *offset)
{
    *offset = st_log_writer_size(w->writer);
    st_status s = st_log_writer_add(w->writer, record.data, record.len);
    if (s == ST_OK && st_log_writer_is_mapped(w->writer))
        atomic_fetch_add_explicit(&w->mapped_bytes, st_log_writer_size(w->writer) - *offset,
                                  memory_order_relaxed);
    return s;
}

uint64_t st_wal_readable_end(const st_wal *w, uint64_t number)
{
    if (w->writer && w->nsegs > 0 && w->segs[w->nsegs - 1].number == number)
        return st_log_writer_size(w->writer);
    return UINT64_MAX;
}

st_status st_wal_sync(st_wal *w)
{
    pthread_mutex_lock(&w->sync_mu);
    st_status s = w->writer ? st_log_writer_sync(w->writer) : ST_OK;
    pthread_mutex_unlock(&w->sync_mu);
    return s;
}

st_status st_wal_truncate(st_wal *w, uint64_t number, uint64_t offset, uint64_t last_seq,
                          uint64_t last_term)
{
    char path[4096];
    st_status s;
    size_t idx = w->nsegs;
    for (size_t i = 0; i < w->nsegs; i++)
        if (w->segs[i].number == number)
            idx = i;
    if (idx == w->nsegs)
        return st_error(ST_INVALID_ARGUMENT, "wal/%06" PRIu64 ".log is not a live segment", number);
    pthread_mutex_lock(&w->sync_mu);
    st_log_writer_destroy(w->writer);
    w->writer = NULL;
    pthread_mutex_unlock(&w->sync_mu);
    for (size_t j = w->nsegs; j-- > idx + 1;) {
        st_wal_path(w, path, sizeof(path), w->segs[j].number);
        if ((s = w->env->unlink(w->env, path)) && s != ST_NOT_FOUND)
            return s;
    }
    w->nsegs = idx + 1;
    st_wal_path(w, path, sizeof(path), number);
    st_file *f;
    if ((s = w->env->open_writable(w->env, path, true, &f)))
        return s;
    st_log_writer *lw = NULL;
    if ((s = w->env->truncate(f, offset)) || (s = w->env->sync(f)) ||
        (s = w->env->sync_dir(w->env, w->dir))) {
        w->env->close(f);
        return s;
    }
    if ((s = st_log_writer_create_mapped(w->env, f, offset, &lw))) /* closes f if it fails */
        return s;
    pthread_mutex_lock(&w->sync_mu);
    w->writer = lw;
    pthread_mutex_unlock(&w->sync_mu);
    st_wal_segment *seg = &w->segs[idx];
    seg->bytes = offset;
    if (last_seq < seg->first_seq || last_seq == 0) {
        seg->first_seq = seg->last_seq = 0;
    } else {
        seg->last_seq = last_seq;
    }
    while (w->nterms > 0 && w->terms[w->nterms - 1].seq > last_seq)
        w->nterms--;
    w->last_seq = last_seq;
    w->last_term = last_term;
    return ST_OK;
}

size_t st_wal_take_obsolete(st_wal *w, uint64_t upto, uint64_t **numbers)
{
    size_t k = 0;
    *numbers = NULL;
    while (k + 1 < w->nsegs && w->segs[k].last_seq <= upto)
        k++;
    if (k == 0)
        return 0;
    uint64_t *out = malloc(k * sizeof(*out));
    if (!out)
        return 0;
    for (size_t i = 0; i < k; i++)
        out[i] = w->segs[i].number;
    memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
    w->nsegs -= k;
    *numbers = out;
    return k;
}

st_status st_wal_term_at(const st_wal *w, uint64_t seq, uint64_t *term)
{
    uint64_t oldest = 0;
    for (size_t i = 0; i < w->nsegs && !oldest; i++)
        oldest = w->segs[i].first_seq;
    if (seq == 0 || oldest == 0 || seq < oldest || seq > w->last_seq || w->nterms == 0 ||
        seq < w->terms[0].seq)
        return st_error(ST_NOT_FOUND, "the log does not hold sequence %" PRIu64, seq);
    size_t lo = 0, hi = w->nterms; /* last run with run.seq <= seq */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->terms[mid].seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    *term = w->terms[lo].term;
    return ST_OK;
}

long st_wal_find(const st_wal *w, uint64_t seq)
{
    for (size_t i = 0; i < w->nsegs; i++) {
        const st_wal_segment *g = &w->segs[i];
        if (g->first_seq && g->first_seq <= seq && seq <= g->last_seq)
            return (long)i;
        if (g->first_seq && g->first_seq > seq)
            return -1; /* the segments that held it are gone */
    }
    /* Not held by any segment: fine if it is the very next sequence to be written. */
    if (seq == w->last_seq + 1 && w->nsegs > 0)
        return (long)(w->nsegs - 1);
    return -1;
}

uint64_t st_wal_bytes(const st_wal *w)
{
    uint64_t total = 0;
    for (size_t i = 0; i < w->nsegs; i++)
        total += w->segs[i].bytes;
    return total;
}
