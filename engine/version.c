/* version.c - versions, version edits, the MANIFEST. */
#include "engine/version.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/filename.h"
#include "engine/log_reader.h"
#include "engine/table.h"

/* A MANIFEST past this size is replaced by a fresh one holding just the current version. */
#define MANIFEST_ROLL_BYTES (4u << 20)

/* ---- file metadata and the graveyard ---------------------------------------------------- */

struct st_graveyard {
    pthread_mutex_t mu;
    uint64_t *numbers; /* guarded by mu */
    size_t n, cap;     /* guarded by mu */
};

st_status st_graveyard_create(st_graveyard **out)
{
    st_graveyard *g = calloc(1, sizeof(*g));
    if (!g)
        return st_error(ST_NO_MEMORY, "out of memory");
    pthread_mutex_init(&g->mu, NULL);
    *out = g;
    return ST_OK;
}

void st_graveyard_destroy(st_graveyard *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g->numbers);
    free(g);
}

static void bury(st_graveyard *g, uint64_t number)
{
    pthread_mutex_lock(&g->mu);
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        uint64_t *p = realloc(g->numbers, cap * sizeof(*p));
        if (!p) {
            /* The files stay behind until the next open removes them as orphans. */
            pthread_mutex_unlock(&g->mu);
            return;
        }
        g->numbers = p;
        g->cap = cap;
    }
    g->numbers[g->n++] = number;
    pthread_mutex_unlock(&g->mu);
}

size_t st_graveyard_take(st_graveyard *g, uint64_t **numbers)
{
    pthread_mutex_lock(&g->mu);
    size_t n = g->n;
    *numbers = g->numbers;
    g->numbers = NULL;
    g->n = g->cap = 0;
    pthread_mutex_unlock(&g->mu);
    return n;
}

st_file_meta *st_file_meta_new(void)
{
    st_file_meta *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    atomic_init(&f->wasted_seeks, 0);
    st_buf_init(&f->smallest);
    st_buf_init(&f->largest);
    return f;
}

void st_file_meta_ref(st_file_meta *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void st_file_meta_unref(st_file_meta *f)
{
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (f->graveyard)
        bury(f->graveyard, f->number);
    st_buf_free(&f->smallest);
    st_buf_free(&f->largest);
    free(f);
}

static st_slice file_smallest(const st_file_meta *f)
{
    return st_slice_make(f->smallest.data, f->smallest.len);
}

static st_slice file_largest(const st_file_meta *f)
{
    return st_slice_make(f->largest.data, f->largest.len);
}

/* ---- versions --------------------------------------------------------------------------- */

static st_version *version_new(void)
{
    st_version *v = calloc(1, sizeof(*v));
    if (v)
        atomic_init(&v->refs, 1);
    return v;
}

void st_version_ref(st_version *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void st_version_unref(st_version *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < v->nfiles[l]; i++)
            st_file_meta_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

int st_version_deepest(const st_version *v)
{
    for (int l = ST_NUM_LEVELS - 1; l >= 0; l--)
        if (v->nfiles[l] > 0)
            return l;
    return -1;
}

/* Index of the first file in a sorted level whose largest key is >= ikey (nfiles if none). */
static uint32_t find_file(st_file_meta *const *files, uint32_t n, st_slice ikey)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st_ikey_cmp(file_largest(files[mid]), ikey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static st_status table_get(st_table_cache *tc, st_file_meta *f, st_slice lookup, bool *found,
                           st_kind *kind, st_buf *value)
{
    st_table *t;
    st_status s = st_table_cache_get(tc, f->number, f->dat_bytes, &t);
    if (s)
        return s;
    uint64_t seq;
    s = st_table_get(t, lookup, found, kind, &seq, value);
    st_table_unref(t);
    return s;
}

/* One more wasted seek on f. The hint names it once the budget is used up: at that seek and
   every 64th after, in case the first report found a version no longer current. */
static void charge_seek(st_file_meta *f, int level, st_seek_hint *hint)
{
    unsigned n = atomic_fetch_add_explicit(&f->wasted_seeks, 1, memory_order_relaxed) + 1;
    unsigned budget = st_file_seek_budget(f);
    if (n >= budget && (n - budget) % 64 == 0) {
        hint->file = f;
        hint->level = level;
    }
}

/* A lookup is about to consult table f of `level`: the first one it passed is charged. */
typedef struct seek_track {
    st_file_meta *first;
    int first_level;
    bool charged;
} seek_track;

static void consult(seek_track *t, st_file_meta *f, int level, st_seek_hint *hint)
{
    if (!t->first) {
        t->first = f;
        t->first_level = level;
    } else if (!t->charged) {
        t->charged = true;
        charge_seek(t->first, t->first_level, hint);
    }
}

st_status st_version_get(st_version *v, st_table_cache *tc, st_slice lookup, bool *found,
                         st_kind *kind, st_buf *value, st_seek_hint *hint)
{
    st_slice ukey = st_ikey_user(lookup);
    seek_track track = {NULL, 0, false};
    *found = false;
    hint->file = NULL;
    /* L0 tables overlap: newest first, the first hit wins. */
    for (uint32_t i = v->nfiles[0]; i-- > 0;) {
        st_file_meta *f = v->files[0][i];
        if (st_slice_cmp(ukey, st_ikey_user(file_smallest(f))) < 0 ||
            st_slice_cmp(ukey, st_ikey_user(file_largest(f))) > 0)
            continue;
        consult(&track, f, 0, hint);
        st_status s = table_get(tc, f, lookup, found, kind, value);
        if (s || *found)
            return s;
    }
    for (int l = 1; l < ST_NUM_LEVELS; l++) {
        uint32_t n = v->nfiles[l];
        if (n == 0)
            continue;
        uint32_t i = find_file(v->files[l], n, lookup);
        if (i == n)
            continue;
        st_file_meta *f = v->files[l][i];
        if (st_slice_cmp(ukey, st_ikey_user(file_smallest(f))) < 0)
            continue;
        consult(&track, f, l, hint);
        st_status s = table_get(tc, f, lookup, found, kind, value);
        if (s || *found)
            return s;
    }
    return ST_OK;
}

void st_version_sample(st_version *v, st_slice ukey, st_seek_hint *hint)
{
    seek_track track = {NULL, 0, false};
    hint->file = NULL;
    for (uint32_t i = v->nfiles[0]; i-- > 0 && !track.charged;) {
        st_file_meta *f = v->files[0][i];
        if (st_slice_cmp(ukey, st_ikey_user(file_smallest(f))) >= 0 &&
            st_slice_cmp(ukey, st_ikey_user(file_largest(f))) <= 0)
            consult(&track, f, 0, hint);
    }
    for (int l = 1; l < ST_NUM_LEVELS && !track.charged; l++) {
        uint32_t n = v->nfiles[l];
        /* find_file wants an internal key; (ukey, MAX_SEQ) sorts first among ukey's. */
        st_lookup_key lk;
        if (n == 0 || !st_lookup_key_init(&lk, ukey, ST_MAX_SEQ))
            continue;
        uint32_t i = find_file(v->files[l], n, st_lookup_ikey(&lk));
        st_lookup_key_free(&lk);
        if (i < n && st_slice_cmp(ukey, st_ikey_user(file_smallest(v->files[l][i]))) >= 0)
            consult(&track, v->files[l][i], l, hint);
    }
}

st_status st_version_overlapping(const st_version *v, int level, st_slice begin, st_slice end,
                                 st_file_meta ***out, size_t *n)
{
    st_file_meta **list = malloc((v->nfiles[level] + 1) * sizeof(*list));
    if (!list)
        return st_error(ST_NO_MEMORY, "out of memory");
    size_t k = 0;
    for (uint32_t i = 0; i < v->nfiles[level]; i++) {
        st_file_meta *f = v->files[level][i];
        if (begin.len && st_slice_cmp(st_ikey_user(file_largest(f)), begin) < 0)
            continue;
        if (end.len && st_slice_cmp(st_ikey_user(file_smallest(f)), end) > 0)
            continue;
        list[k++] = f;
    }
    *out = list;
    *n = k;
    return ST_OK;
}

st_status st_version_check(const st_version *v)
{
    for (uint32_t i = 1; i < v->nfiles[0]; i++) {
        const st_file_meta *a = v->files[0][i - 1], *b = v->files[0][i];
        if (a->max_seq >= b->min_seq && b->entries && a->entries)
            return st_error(ST_CORRUPTION,
                            "L0 tables %06" PRIu64 " and %06" PRIu64 " are out of sequence order",
                            a->number, b->number);
    }
    for (int l = 1; l < ST_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < v->nfiles[l]; i++) {
            const st_file_meta *f = v->files[l][i];
            if (st_ikey_cmp(file_smallest(f), file_largest(f)) > 0)
                return st_error(ST_CORRUPTION, "L%d table %06" PRIu64 " has smallest > largest", l,
                                f->number);
            if (i == 0)
                continue;
            const st_file_meta *p = v->files[l][i - 1];
            if (st_slice_cmp(st_ikey_user(file_largest(p)), st_ikey_user(file_smallest(f))) >= 0)
                return st_error(ST_CORRUPTION, "L%d tables %06" PRIu64 " and %06" PRIu64 " overlap",
                                l, p->number, f->number);
        }
    }
    return ST_OK;
}

/* ---- the level iterator ----------------------------------------------------------------- */

typedef struct level_iter {
    st_iterator base;
    st_version *v;
    int level;
    st_table_cache *tc;
    uint32_t index;   /* file under the cursor; == nfiles when not positioned */
    st_iterator *cur; /* iterator of files[index], or NULL */
    st_status status;
    char msg[256];
} level_iter;

static uint32_t li_nfiles(const level_iter *li)
{
    return li->v->nfiles[li->level];
}

static void li_fail(level_iter *li, st_status s)
{
    if (li->status == ST_OK) {
        li->status = s;
        snprintf(li->msg, sizeof(li->msg), "%s", st_errmsg());
    }
}

/* Point at file i (opening it), or at nothing when i is out of range. */
static void li_open(level_iter *li, uint32_t i)
{
    if (li->cur && li->index == i)
        return;
    st_it_destroy(li->cur);
    li->cur = NULL;
    li->index = i;
    if (i >= li_nfiles(li))
        return;
    st_file_meta *f = li->v->files[li->level][i];
    st_table *t;
    st_status s = st_table_cache_get(li->tc, f->number, f->dat_bytes, &t);
    if (s) {
        li_fail(li, s);
        li->index = li_nfiles(li);
        return;
    }
    li->cur = st_table_iter(t);
    st_table_unref(t); /* the iterator holds its own reference */
    if (!li->cur) {
        li_fail(li, st_error(ST_NO_MEMORY, "out of memory opening a table iterator"));
        li->index = li_nfiles(li);
    }
}

/* After the current file ran out, move to the following (or preceding) ones. */
static void li_skip_forward(level_iter *li)
{
    while (li->cur && !st_it_valid(li->cur)) {
        st_status s = st_it_status(li->cur);
        if (s) {
            li_fail(li, s);
            st_it_destroy(li->cur);
            li->cur = NULL;
            li->index = li_nfiles(li);
            return;
        }
        li_open(li, li->index + 1);
        if (li->cur)
            st_it_seek_first(li->cur);
    }
}

static void li_skip_backward(level_iter *li)
{
    while (li->cur && !st_it_valid(li->cur)) {
        st_status s = st_it_status(li->cur);
        if (s || li->index == 0) {
            if (s)
                li_fail(li, s);
            st_it_destroy(li->cur);
            li->cur = NULL;
            li->index = li_nfiles(li);
            return;
        }
        li_open(li, li->index - 1);
        if (li->cur)
            st_it_seek_last(li->cur);
    }
}

static bool li_valid(const st_iterator *it)
{
    const level_iter *li = (const level_iter *)it;
    return li->status == ST_OK && li->cur && st_it_valid(li->cur);
}

static void li_seek_first(st_iterator *it)
{
    level_iter *li = (level_iter *)it;
    li_open(li, 0);
    if (li->cur)
        st_it_seek_first(li->cur);
    li_skip_forward(li);
}

static void li_seek_last(st_iterator *it)
{
    level_iter *li = (level_iter *)it;
    uint32_t n = li_nfiles(li);
    li_open(li, n ? n - 1 : 0);
    if (li->cur)
        st_it_seek_last(li->cur);
    li_skip_backward(li);
}

static void li_seek(st_iterator *it, st_slice target)
{
    level_iter *li = (level_iter *)it;
    li_open(li, find_file(li->v->files[li->level], li_nfiles(li), target));
    if (li->cur)
        st_it_seek(li->cur, target);
    li_skip_forward(li);
}

static void li_next(st_iterator *it)
{
    level_iter *li = (level_iter *)it;
    st_it_next(li->cur);
    li_skip_forward(li);
}

static void li_prev(st_iterator *it)
{
    level_iter *li = (level_iter *)it;
    st_it_prev(li->cur);
    li_skip_backward(li);
}

static st_slice li_key(const st_iterator *it)
{
    return st_it_key(((const level_iter *)it)->cur);
}

static bool li_next_key(st_iterator *it, st_slice *key)
{
    level_iter *li = (level_iter *)it;
    if (st_it_next_key(li->cur, key))
        return true;
    li_skip_forward(li);
    if (!li_valid(it))
        return false;
    *key = st_it_key(li->cur);
    return true;
}

static st_slice li_value(const st_iterator *it)
{
    return st_it_value(((const level_iter *)it)->cur);
}

static st_status li_status(const st_iterator *it)
{
    const level_iter *li = (const level_iter *)it;
    if (li->status)
        return st_error(li->status, "%s", li->msg);
    return li->cur ? st_it_status(li->cur) : ST_OK;
}

static void li_destroy(st_iterator *it)
{
    level_iter *li = (level_iter *)it;
    st_it_destroy(li->cur);
    st_version_unref(li->v);
    free(li);
}

static const st_iterator_ops level_iter_ops = {
    .next_key = li_next_key,
    .valid = li_valid,
    .seek_first = li_seek_first,
    .seek_last = li_seek_last,
    .seek = li_seek,
    .next = li_next,
    .prev = li_prev,
    .key = li_key,
    .value = li_value,
    .status = li_status,
    .destroy = li_destroy,
};

st_iterator *st_level_iter_create(st_version *v, int level, st_table_cache *tc)
{
    level_iter *li = calloc(1, sizeof(*li));
    if (!li)
        return NULL;
    li->base.ops = &level_iter_ops;
    st_version_ref(v);
    li->v = v;
    li->level = level;
    li->tc = tc;
    li->index = v->nfiles[level];
    return &li->base;
}

static bool push_iter(st_iterator ***list, size_t *n, size_t *cap, st_iterator *it)
{
    if (!it)
        return false;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        st_iterator **p = realloc(*list, c * sizeof(*p));
        if (!p) {
            st_it_destroy(it);
            return false;
        }
        *list = p;
        *cap = c;
    }
    (*list)[(*n)++] = it;
    return true;
}

st_status st_version_add_iterators(st_version *v, st_table_cache *tc, st_iterator ***list,
                                   size_t *n, size_t *cap)
{
    /* L0 newest first, so that equal keys (which cannot occur) would favour the newest. */
    for (uint32_t i = v->nfiles[0]; i-- > 0;) {
        st_file_meta *f = v->files[0][i];
        st_table *t;
        st_status s = st_table_cache_get(tc, f->number, f->dat_bytes, &t);
        if (s) {
            /* Surface the error when the iterator is used, like any other read error. */
            if (!push_iter(list, n, cap, st_error_iterator(s)))
                return st_error(ST_NO_MEMORY, "out of memory building iterators");
            continue;
        }
        st_iterator *it = st_table_iter(t);
        st_table_unref(t);
        if (!push_iter(list, n, cap, it))
            return st_error(ST_NO_MEMORY, "out of memory building iterators");
    }
    for (int l = 1; l < ST_NUM_LEVELS; l++) {
        if (v->nfiles[l] == 0)
            continue;
        if (!push_iter(list, n, cap, st_level_iter_create(v, l, tc)))
            return st_error(ST_NO_MEMORY, "out of memory building iterators");
    }
    return ST_OK;
}

/* ---- edits ------------------------------------------------------------------------------ */

enum {
    TAG_FORMAT = 1,
    TAG_NEXT_FILE = 2,
    TAG_FLUSHED = 3,
    TAG_DELETE = 4,
    TAG_ADD = 5,
    TAG_COMPACT_PTR = 6,
};

void st_edit_init(st_version_edit *e)
{
    memset(e, 0, sizeof(*e));
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        st_buf_init(&e->compact_ptr[l]);
}

void st_edit_free(st_version_edit *e)
{
    for (size_t i = 0; i < e->nadded; i++)
        st_file_meta_unref(e->added[i].meta);
    free(e->added);
    free(e->deleted);
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        st_buf_free(&e->compact_ptr[l]);
    st_edit_init(e);
}

static bool push_edit_file(st_edit_file **arr, size_t *n, size_t *cap, st_edit_file ef)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        st_edit_file *p = realloc(*arr, c * sizeof(*p));
        if (!p)
            return false;
        *arr = p;
        *cap = c;
    }
    (*arr)[(*n)++] = ef;
    return true;
}

st_status st_edit_delete_file(st_version_edit *e, int level, uint64_t number)
{
    st_edit_file ef = {level, number, NULL};
    if (!push_edit_file(&e->deleted, &e->ndeleted, &e->cap_deleted, ef))
        return st_error(ST_NO_MEMORY, "out of memory");
    return ST_OK;
}

st_status st_edit_add_file(st_version_edit *e, int level, st_file_meta *f)
{
    st_edit_file ef = {level, f->number, f};
    if (!push_edit_file(&e->added, &e->nadded, &e->cap_added, ef))
        return st_error(ST_NO_MEMORY, "out of memory");
    st_file_meta_ref(f);
    return ST_OK;
}

st_status st_edit_encode(const st_version_edit *e, st_buf *out)
{
    bool ok = true;
    if (e->has_format)
        ok = ok && st_buf_put_varint32(out, TAG_FORMAT) && st_buf_put_varint32(out, e->format);
    if (e->has_next_file)
        ok =
            ok && st_buf_put_varint32(out, TAG_NEXT_FILE) && st_buf_put_varint64(out, e->next_file);
    if (e->has_flushed)
        ok = ok && st_buf_put_varint32(out, TAG_FLUSHED) &&
             st_buf_put_varint64(out, e->flushed_seq) && st_buf_put_varint64(out, e->flushed_term);
    for (size_t i = 0; i < e->ndeleted; i++)
        ok = ok && st_buf_put_varint32(out, TAG_DELETE) &&
             st_buf_put_varint32(out, (uint32_t)e->deleted[i].level) &&
             st_buf_put_varint64(out, e->deleted[i].number);
    for (size_t i = 0; i < e->nadded; i++) {
        const st_file_meta *f = e->added[i].meta;
        ok = ok && st_buf_put_varint32(out, TAG_ADD) &&
             st_buf_put_varint32(out, (uint32_t)e->added[i].level) &&
             st_buf_put_varint64(out, f->number) && st_buf_put_varint64(out, f->dat_bytes) &&
             st_buf_put_varint64(out, f->idx_bytes) && st_buf_put_varint64(out, f->meta_bytes) &&
             st_buf_put_varint64(out, f->entries) && st_buf_put_varint64(out, f->tombstones) &&
             st_buf_put_varint64(out, f->min_seq) && st_buf_put_varint64(out, f->max_seq) &&
             st_buf_put_lp(out, f->smallest.data, f->smallest.len) &&
             st_buf_put_lp(out, f->largest.data, f->largest.len);
    }
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        if (e->has_compact_ptr[l])
            ok = ok && st_buf_put_varint32(out, TAG_COMPACT_PTR) &&
                 st_buf_put_varint32(out, (uint32_t)l) &&
                 st_buf_put_lp(out, e->compact_ptr[l].data, e->compact_ptr[l].len);
    return ok ? ST_OK : st_error(ST_NO_MEMORY, "out of memory encoding a version edit");
}

static st_status decode_add(st_version_edit *e, const uint8_t **p, const uint8_t *end,
                            const char *what)
{
    uint32_t level;
    st_file_meta *f = st_file_meta_new();
    if (!f)
        return st_error(ST_NO_MEMORY, "out of memory");
    const uint8_t *sd, *ld;
    size_t sl, ll;
    if (!st_decode_varint32(p, end, &level) || level >= ST_NUM_LEVELS ||
        !st_decode_varint64(p, end, &f->number) || !st_decode_varint64(p, end, &f->dat_bytes) ||
        !st_decode_varint64(p, end, &f->idx_bytes) || !st_decode_varint64(p, end, &f->meta_bytes) ||
        !st_decode_varint64(p, end, &f->entries) || !st_decode_varint64(p, end, &f->tombstones) ||
        !st_decode_varint64(p, end, &f->min_seq) || !st_decode_varint64(p, end, &f->max_seq) ||
        !st_decode_lp(p, end, &sd, &sl) || !st_decode_lp(p, end, &ld, &ll) ||
        !st_ikey_valid(st_slice_make(sd, sl)) || !st_ikey_valid(st_slice_make(ld, ll))) {
        st_file_meta_unref(f);
        return st_error(ST_CORRUPTION, "%s: malformed table entry in a version edit", what);
    }
    if (!st_buf_append(&f->smallest, sd, sl) || !st_buf_append(&f->largest, ld, ll)) {
        st_file_meta_unref(f);
        return st_error(ST_NO_MEMORY, "out of memory");
    }
    st_status s = st_edit_add_file(e, (int)level, f);
    st_file_meta_unref(f); /* the edit holds it now */
    return s;
}

st_status st_edit_decode(st_version_edit *e, st_slice in, const char *what)
{
    const uint8_t *p = in.data, *end = in.data + in.len;
    while (p < end) {
        uint32_t tag, level;
        uint64_t number;
        const uint8_t *d;
        size_t n;
        if (!st_decode_varint32(&p, end, &tag))
            goto bad;
        switch (tag) {
        case TAG_FORMAT:
            if (!st_decode_varint32(&p, end, &e->format))
                goto bad;
            e->has_format = true;
            break;
        case TAG_NEXT_FILE:
            if (!st_decode_varint64(&p, end, &e->next_file))
                goto bad;
            e->has_next_file = true;
            break;
        case TAG_FLUSHED:
            if (!st_decode_varint64(&p, end, &e->flushed_seq) ||
                !st_decode_varint64(&p, end, &e->flushed_term))
                goto bad;
            e->has_flushed = true;
            break;
        case TAG_DELETE:
            if (!st_decode_varint32(&p, end, &level) || level >= ST_NUM_LEVELS ||
                !st_decode_varint64(&p, end, &number))
                goto bad;
            if (st_edit_delete_file(e, (int)level, number))
                return ST_NO_MEMORY;
            break;
        case TAG_ADD: {
            st_status s = decode_add(e, &p, end, what);
            if (s)
                return s;
            break;
        }
        case TAG_COMPACT_PTR:
            if (!st_decode_varint32(&p, end, &level) || level >= ST_NUM_LEVELS ||
                !st_decode_lp(&p, end, &d, &n))
                goto bad;
            st_buf_clear(&e->compact_ptr[level]);
            if (!st_buf_append(&e->compact_ptr[level], d, n))
                return st_error(ST_NO_MEMORY, "out of memory");
            e->has_compact_ptr[level] = true;
            break;
        default:
            return st_error(ST_CORRUPTION, "%s: unknown version edit field %u", what, tag);
        }
    }
    return ST_OK;
bad:
    return st_error(ST_CORRUPTION, "%s: malformed version edit", what);
}

/* ---- building versions ------------------------------------------------------------------ */

static int cmp_l0(const void *a, const void *b)
{
    const st_file_meta *x = *(st_file_meta *const *)a, *y = *(st_file_meta *const *)b;
    if (x->max_seq != y->max_seq)
        return x->max_seq < y->max_seq ? -1 : 1;
    return (x->number > y->number) - (x->number < y->number);
}

static int cmp_sorted(const void *a, const void *b)
{
    const st_file_meta *x = *(st_file_meta *const *)a, *y = *(st_file_meta *const *)b;
    int r = st_ikey_cmp(file_smallest(x), file_smallest(y));
    return r ? r : (x->number > y->number) - (x->number < y->number);
}

static bool is_deleted(const st_version_edit *e, int level, uint64_t number)
{
    for (size_t i = 0; i < e->ndeleted; i++)
        if (e->deleted[i].level == level && e->deleted[i].number == number)
            return true;
    return false;
}

/* The table of `base` numbered `number`, or NULL. */
static st_file_meta *find_number(const st_version *base, uint64_t number)
{
    for (int l = 0; base && l < ST_NUM_LEVELS; l++)
        for (uint32_t i = 0; i < base->nfiles[l]; i++)
            if (base->files[l][i]->number == number)
                return base->files[l][i];
    return NULL;
}

/*
 * The version `base` (may be NULL: empty) with edit e applied. A table that an edit moves
 * between levels (deleted from one, added to another) keeps its one st_file_meta: two objects
 * for one number would bury the number while the other still uses the files. New tables get no
 * graveyard here: only st_vset_install gives them one, so a version that never became current
 * (its MANIFEST write failed, though the edit may have reached the file) deletes nothing.
 */
static st_status build_version(const st_version *base, const st_version_edit *e, st_version **out)
{
    st_version *v = version_new();
    if (!v)
        return st_error(ST_NO_MEMORY, "out of memory building a version");
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        size_t cap = (base ? base->nfiles[l] : 0) + 1;
        for (size_t i = 0; i < e->nadded; i++)
            cap += e->added[i].level == l;
        v->files[l] = malloc(cap * sizeof(st_file_meta *));
        if (!v->files[l])
            goto nomem;
        if (base) {
            for (uint32_t i = 0; i < base->nfiles[l]; i++) {
                st_file_meta *f = base->files[l][i];
                if (is_deleted(e, l, f->number))
                    continue;
                st_file_meta_ref(f);
                v->files[l][v->nfiles[l]++] = f;
            }
        }
        for (size_t i = 0; i < e->nadded; i++) {
            if (e->added[i].level != l || is_deleted(e, l, e->added[i].number))
                continue;
            st_file_meta *f = find_number(base, e->added[i].number);
            if (!f)
                f = e->added[i].meta;
            st_file_meta_ref(f);
            v->files[l][v->nfiles[l]++] = f;
        }
        qsort(v->files[l], v->nfiles[l], sizeof(st_file_meta *), l == 0 ? cmp_l0 : cmp_sorted);
        for (uint32_t i = 0; i < v->nfiles[l]; i++)
            v->level_bytes[l] += st_file_bytes(v->files[l][i]);
    }
    *out = v;
    return ST_OK;
nomem:
    st_version_unref(v);
    return st_error(ST_NO_MEMORY, "out of memory building a version");
}

/* ---- the version set -------------------------------------------------------------------- */

st_status st_vset_create(st_env *env, const char *dir, st_graveyard *g, st_version_set **out)
{
    st_version_set *vs = calloc(1, sizeof(*vs));
    if (!vs)
        goto nomem;
    vs->env = env;
    vs->graveyard = g;
    vs->dir = strdup(dir);
    vs->current = version_new();
    if (!vs->dir || !vs->current)
        goto nomem;
    atomic_init(&vs->next_file, 2);
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        st_buf_init(&vs->compact_ptr[l]);
    *out = vs;
    return ST_OK;
nomem:
    st_vset_destroy(vs);
    return st_error(ST_NO_MEMORY, "out of memory");
}

void st_vset_destroy(st_version_set *vs)
{
    if (!vs)
        return;
    st_log_writer_destroy(vs->manifest);
    st_version_unref(vs->current);
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        st_buf_free(&vs->compact_ptr[l]);
    free(vs->dir);
    free(vs);
}

uint64_t st_vset_new_file_number(st_version_set *vs)
{
    return atomic_fetch_add(&vs->next_file, 1);
}

/* An edit that recreates the current version from nothing. */
static st_status snapshot_edit(const st_version_set *vs, st_version_edit *e)
{
    e->has_format = true;
    e->format = ST_FORMAT_VERSION;
    e->has_next_file = true;
    e->next_file = atomic_load(&vs->next_file);
    e->has_flushed = true;
    e->flushed_seq = vs->flushed_seq;
    e->flushed_term = vs->flushed_term;
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        for (uint32_t i = 0; i < vs->current->nfiles[l]; i++) {
            st_status s = st_edit_add_file(e, l, vs->current->files[l][i]);
            if (s)
                return s;
        }
        if (vs->compact_ptr[l].len) {
            e->has_compact_ptr[l] = true;
            if (!st_buf_append(&e->compact_ptr[l], vs->compact_ptr[l].data, vs->compact_ptr[l].len))
                return st_error(ST_NO_MEMORY, "out of memory");
        }
    }
    return ST_OK;
}

/* Write a new MANIFEST holding the current version (plus `extra`, if any), sync it and make
   CURRENT name it. On success the new writer replaces vs->manifest. */
static st_status write_new_manifest(st_version_set *vs, const st_version_edit *extra)
{
    st_status s;
    bool switching = false;
    st_version_edit snap;
    st_buf rec;
    st_file *f = NULL;
    st_log_writer *w = NULL;
    uint64_t number = st_vset_new_file_number(vs);
    size_t plen = strlen(vs->dir) + ST_NAME_EXTRA;
    char *path = malloc(plen), *cur = malloc(plen), name[64];

    st_edit_init(&snap);
    st_buf_init(&rec);
    if (!path || !cur) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    snprintf(name, sizeof(name), "MANIFEST-%06" PRIu64, number);
    snprintf(path, plen, "%s/%s", vs->dir, name);
    snprintf(cur, plen, "%s/CURRENT", vs->dir);
    if ((s = snapshot_edit(vs, &snap)) || (s = st_edit_encode(&snap, &rec)))
        goto fail;
    if (extra && (s = st_edit_encode(extra, &rec)))
        goto fail;
    if ((s = vs->env->open_writable(vs->env, path, false, &f)))
        goto fail;
    if ((s = st_log_writer_create(vs->env, f, 0, &w))) /* closes f if it fails */
        goto fail;
    if ((s = st_log_writer_add(w, rec.data, rec.len)) || (s = st_log_writer_sync(w)))
        goto fail;
    /* The new MANIFEST is durable; now switch CURRENT to it in one atomic rename. */
    size_t nl = strlen(name);
    name[nl] = '\n';
    switching = true;
    if ((s = st_env_write_file_atomic(vs->env, vs->dir, cur, name, nl + 1)))
        goto fail;
    st_log_writer_destroy(vs->manifest);
    vs->manifest = w;
    vs->manifest_number = number;
    w = NULL;
fail:
    if (w) {
        st_log_writer_destroy(w);
        /* Once the switch was attempted CURRENT may name the new MANIFEST (the rename can land
           and only the directory sync fail): keep it; the next open removes whichever of the
           two CURRENT does not name. The caller refuses further writes either way. */
        if (!switching)
            vs->env->unlink(vs->env, path);
    }
    st_edit_free(&snap);
    st_buf_free(&rec);
    free(path);
    free(cur);
    return s;
}

st_status st_vset_create_new(st_version_set *vs)
{
    return write_new_manifest(vs, NULL);
}

/* Apply edit e to the version set's bookkeeping (not to the version). */
static void absorb(st_version_set *vs, const st_version_edit *e)
{
    if (e->has_next_file && e->next_file > atomic_load(&vs->next_file))
        atomic_store(&vs->next_file, e->next_file);
    for (size_t i = 0; i < e->nadded; i++)
        if (e->added[i].number >= atomic_load(&vs->next_file))
            atomic_store(&vs->next_file, e->added[i].number + 1);
    if (e->has_flushed) {
        vs->flushed_seq = e->flushed_seq;
        vs->flushed_term = e->flushed_term;
    }
    for (int l = 0; l < ST_NUM_LEVELS; l++) {
        if (!e->has_compact_ptr[l])
            continue;
        st_buf_clear(&vs->compact_ptr[l]);
        st_buf_append(&vs->compact_ptr[l], e->compact_ptr[l].data, e->compact_ptr[l].len);
    }
}

st_status st_vset_recover(st_version_set *vs)
{
    st_status s;
    size_t plen = strlen(vs->dir) + ST_NAME_EXTRA;
    char *path = malloc(plen), *mpath = malloc(plen);
    uint8_t *cur = NULL;
    size_t curlen = 0;
    st_file *f = NULL;
    st_log_reader *r = NULL;
    bool saw_format = false;
    uint64_t number;
    st_graveyard *graveyard = NULL;

    if (!path || !mpath) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    snprintf(path, plen, "%s/CURRENT", vs->dir);
    if ((s = st_env_read_file(vs->env, path, 256, &cur, &curlen)))
        goto fail;
    /* CURRENT is "MANIFEST-<number>\n". */
    char name[64];
    if (curlen < 2 || curlen >= sizeof(name) || cur[curlen - 1] != '\n') {
        s = st_error(ST_CORRUPTION, "%s: does not name a MANIFEST", path);
        goto fail;
    }
    memcpy(name, cur, curlen - 1);
    name[curlen - 1] = '\0';
    if (strlen(name) != curlen - 1 || st_parse_filename(name, &number) != ST_FILE_MANIFEST) {
        s = st_error(ST_CORRUPTION, "%s: does not name a MANIFEST", path);
        goto fail;
    }
    snprintf(mpath, plen, "%s/%s", vs->dir, name);
    if ((s = vs->env->open_readable(vs->env, mpath, &f))) {
        if (s == ST_NOT_FOUND)
            s = st_error(ST_CORRUPTION, "CURRENT names %s, which is missing", name);
        goto fail;
    }
    if ((s = st_log_reader_create(vs->env, f, name, 0, &r)))
        goto fail;
    st_log_reader_set_strict(r, true);
    /* Tables dropped by edits being replayed were deleted long ago (or are orphans that open
       removes by listing the directory): do not bury them one by one. */
    graveyard = vs->graveyard;
    vs->graveyard = NULL;
    for (;;) {
        st_slice rec;
        uint64_t off;
        s = st_log_reader_next(r, &rec, &off);
        if (s == ST_NOT_FOUND)
            break;
        if (s)
            goto fail;
        char what[96];
        snprintf(what, sizeof(what), "%s offset %" PRIu64, name, off);
        st_version_edit e;
        st_edit_init(&e);
        s = st_edit_decode(&e, rec, what);
        if (!s && e.has_format) {
            saw_format = true;
            if (e.format != ST_FORMAT_VERSION)
                s = st_error(ST_NOT_SUPPORTED,
                             "%s: format version %u is not supported (this build reads %d)", name,
                             e.format, ST_FORMAT_VERSION);
        }
        if (!s && !saw_format)
            s = st_error(ST_CORRUPTION, "%s: first edit does not give a format version", name);
        st_version *next = NULL;
        if (!s)
            s = build_version(vs->current, &e, &next);
        if (!s) {
            st_version *old;
            st_vset_install(vs, &e, next, &old);
            st_version_unref(old);
        }
        st_edit_free(&e);
        if (s)
            goto fail;
    }
    if (!saw_format) {
        s = st_error(ST_CORRUPTION, "%s: holds no complete version edit", name);
        goto fail;
    }
    vs->recovered_manifest = number;
    vs->manifest_torn_bytes = st_log_reader_torn_bytes(r);
    if (atomic_load(&vs->next_file) <= number)
        atomic_store(&vs->next_file, number + 1);
    if ((s = st_version_check(vs->current)))
        goto fail;
    s = write_new_manifest(vs, NULL);
fail:
    if (graveyard) {
        vs->graveyard = graveyard;
        /* Tables of the recovered version get the graveyard now. */
        for (int l = 0; l < ST_NUM_LEVELS; l++)
            for (uint32_t i = 0; i < vs->current->nfiles[l]; i++)
                vs->current->files[l][i]->graveyard = graveyard;
    }
    st_log_reader_destroy(r);
    if (f)
        vs->env->close(f);
    free(cur);
    free(path);
    free(mpath);
    return s;
}

st_status st_vset_apply(st_version_set *vs, st_version_edit *e, st_version **next)
{
    st_status s;
    st_buf rec;
    st_version *v = NULL;

    st_buf_init(&rec);
    if (!e->has_next_file) {
        e->has_next_file = true;
        e->next_file = atomic_load(&vs->next_file);
    }
    if ((s = build_version(vs->current, e, &v)))
        goto fail;
    if (st_log_writer_size(vs->manifest) > MANIFEST_ROLL_BYTES) {
        /* Start afresh: the new MANIFEST holds the current version and then this edit. */
        if ((s = write_new_manifest(vs, e)))
            goto fail;
    } else {
        if ((s = st_edit_encode(e, &rec)) ||
            (s = st_log_writer_add(vs->manifest, rec.data, rec.len)) ||
            (s = st_log_writer_sync(vs->manifest)))
            goto fail;
    }
    *next = v;
    v = NULL;
fail:
    st_version_unref(v);
    st_buf_free(&rec);
    return s;
}

void st_vset_install(st_version_set *vs, const st_version_edit *e, st_version *next,
                     st_version **old)
{
    /* From now on these tables are the database's: delete their files once unreferenced. */
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        for (uint32_t i = 0; i < next->nfiles[l]; i++)
            if (!next->files[l][i]->graveyard)
                next->files[l][i]->graveyard = vs->graveyard;
    absorb(vs, e);
    *old = vs->current;
    vs->current = next;
}

st_status st_vset_write_checkpoint(st_version_set *vs, const char *dir)
{
    st_status s;
    st_version_edit snap;
    st_buf rec;
    st_file *f = NULL;
    st_log_writer *w = NULL;
    size_t plen = strlen(dir) + ST_NAME_EXTRA;
    char *path = malloc(plen), *cur = malloc(plen);
    const char current[] = "MANIFEST-000001\n";

    st_edit_init(&snap);
    st_buf_init(&rec);
    if (!path || !cur) {
        s = st_error(ST_NO_MEMORY, "out of memory");
        goto fail;
    }
    snprintf(path, plen, "%s/MANIFEST-000001", dir);
    snprintf(cur, plen, "%s/CURRENT", dir);
    if ((s = snapshot_edit(vs, &snap)) || (s = st_edit_encode(&snap, &rec)) ||
        (s = vs->env->open_writable(vs->env, path, false, &f)))
        goto fail;
    if ((s = st_log_writer_create(vs->env, f, 0, &w))) /* closes f if it fails */
        goto fail;
    if ((s = st_log_writer_add(w, rec.data, rec.len)) || (s = st_log_writer_sync(w)) ||
        (s = st_env_write_file_atomic(vs->env, dir, cur, current, sizeof(current) - 1)))
        goto fail;
fail:
    st_log_writer_destroy(w);
    st_edit_free(&snap);
    st_buf_free(&rec);
    free(path);
    free(cur);
    return s;
}

bool st_vset_is_live(const st_version_set *vs, uint64_t number)
{
    for (int l = 0; l < ST_NUM_LEVELS; l++)
        for (uint32_t i = 0; i < vs->current->nfiles[l]; i++)
            if (vs->current->files[l][i]->number == number)
                return true;
    return false;
}
