/*
 * env_fault.c - the fault-injecting env (env_fault.h).
 *
 * The power-loss model keeps two things: for each file identity (a "node", like an inode) its
 * durable size, and a journal of the name operations (create, rename, link, unlink) that are not
 * durable yet. Undoing the journal newest first and truncating every node to its durable size
 * gives the disk a power cut would leave. Unlinks and replaced files are parked under hidden
 * names so they can be brought back.
 *
 * This is test support: an allocation failure aborts rather than threading ST_NO_MEMORY
 * through every bookkeeping step.
 */
#include "tests/support/env_fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIDDEN_PREFIX ".stfault-"

typedef struct node {
    uint64_t synced; /* durable size */
    uint64_t mark;   /* generation stamp for commit closure and drop */
    struct node *next_all;
} node;

typedef struct name_ent {
    char *path; /* normalized */
    node *n;
    struct name_ent *next;
} name_ent;

typedef enum { J_CREATE, J_RENAME, J_LINK, J_UNLINK } jkind;

/*
 *   J_CREATE: a = path created, n = its node.
 *   J_RENAME: a = from, b = to, n = moved node; hidden/n2 = where the replaced file is parked.
 *   J_LINK:   a = new name, n = node.
 *   J_UNLINK: a = path removed, hidden = where it is parked, n = node.
 */
typedef struct jent {
    jkind kind;
    uint64_t seq;
    char *a, *b, *hidden;
    char *dir_a, *dir_b; /* directories whose sync_dir makes it durable (dir_b may be NULL) */
    node *n, *n2;
    bool commit; /* scratch for commit() */
} jent;

typedef struct arm {
    bool armed;
    bool fired;
    uint64_t left;
    char *substr;
    st_status code;
    size_t prefix;
    bool sticky;
} arm;

struct st_fault_env {
    st_env env; /* first: the env callbacks recover the fault env from it */
    st_env *base;

    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when inflight drops to 0 */
    /* Everything below is guarded by mu. */
    bool off;
    int inflight; /* mutating calls running outside mu */
    arm app, syn, dsyn;
    uint64_t budget;
    st_fault_stats stats;
    char *stats_filter;
    node *nodes;
    name_ent *names;
    jent **journal;
    size_t jn, jcap;
    uint64_t seq;
    uint64_t hidden_counter;
    uint64_t gen;
};

typedef struct ffile {
    st_fault_env *fe;
    st_file *inner;
    node *n; /* NULL for files opened read-only */
    char *path;
} ffile;

typedef struct flk {
    st_fault_env *fe;
    st_filelock *inner;
} flk;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* Collapse repeated slashes and drop trailing ones, so one file has one key. */
static char *normalize(const char *path)
{
    size_t n = strlen(path);
    char *out = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (path[i] == '/' && k > 0 && out[k - 1] == '/')
            continue;
        out[k++] = path[i];
    }
    while (k > 1 && out[k - 1] == '/')
        k--;
    out[k] = '\0';
    return out;
}

static char *dir_of(const char *npath)
{
    const char *slash = strrchr(npath, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == npath)
        return xstrdup("/");
    size_t n = (size_t)(slash - npath);
    char *d = xmalloc(n + 1);
    memcpy(d, npath, n);
    d[n] = '\0';
    return d;
}

static bool matches(const char *substr, const char *path)
{
    return !substr || !*substr || strstr(path, substr) != NULL;
}

static st_fault_env *from_env(st_env *env)
{
    return (st_fault_env *)env;
}

/* ---- bookkeeping (mu held) ---- */

static node *new_node(st_fault_env *fe, uint64_t synced)
{
    node *n = xcalloc(sizeof(*n));
    n->synced = synced;
    n->next_all = fe->nodes;
    fe->nodes = n;
    return n;
}

static name_ent **find_name(st_fault_env *fe, const char *npath)
{
    name_ent **pp = &fe->names;
    while (*pp && strcmp((*pp)->path, npath) != 0)
        pp = &(*pp)->next;
    return pp;
}

static node *lookup(st_fault_env *fe, const char *npath)
{
    name_ent *e = *find_name(fe, npath);
    return e ? e->n : NULL;
}

static void set_name(st_fault_env *fe, const char *npath, node *n)
{
    name_ent **pp = find_name(fe, npath);
    if (*pp) {
        (*pp)->n = n;
        return;
    }
    name_ent *e = xcalloc(sizeof(*e));
    e->path = xstrdup(npath);
    e->n = n;
    e->next = fe->names;
    fe->names = e;
}

static void remove_name(st_fault_env *fe, const char *npath)
{
    name_ent **pp = find_name(fe, npath);
    if (*pp) {
        name_ent *e = *pp;
        *pp = e->next;
        free(e->path);
        free(e);
    }
}

/* The node of an existing file; one seen for the first time is taken as durable as it is. */
static node *adopt(st_fault_env *fe, const char *npath)
{
    node *n = lookup(fe, npath);
    if (n)
        return n;
    uint64_t size = 0;
    if (fe->base->file_size(fe->base, npath, &size) != ST_OK)
        size = 0;
    n = new_node(fe, size);
    set_name(fe, npath, n);
    return n;
}

static char *hidden_name(st_fault_env *fe, const char *dir)
{
    size_t cap = strlen(dir) + sizeof(HIDDEN_PREFIX) + 32;
    char *h = xmalloc(cap);
    do {
        snprintf(h, cap, "%s/%s%llu", dir, HIDDEN_PREFIX, (unsigned long long)++fe->hidden_counter);
    } while (fe->base->exists(fe->base, h));
    return h;
}

static void journal_add(st_fault_env *fe, jkind kind, const char *a, const char *b,
                        char *hidden /* owned */, node *n, node *n2)
{
    jent *e = xcalloc(sizeof(*e));
    e->kind = kind;
    e->seq = ++fe->seq;
    e->a = xstrdup(a);
    e->b = b ? xstrdup(b) : NULL;
    e->hidden = hidden;
    e->dir_a = dir_of(a);
    e->dir_b = b ? dir_of(b) : NULL;
    e->n = n;
    e->n2 = n2;
    if (fe->jn == fe->jcap) {
        fe->jcap = fe->jcap ? fe->jcap * 2 : 16;
        jent **nj = realloc(fe->journal, fe->jcap * sizeof(*nj));
        if (!nj)
            abort();
        fe->journal = nj;
    }
    fe->journal[fe->jn++] = e;
}

static void free_jent(jent *e)
{
    free(e->a);
    free(e->b);
    free(e->hidden);
    free(e->dir_a);
    free(e->dir_b);
    free(e);
}

/* Keep the first failure of a multi-step repair, with its message. */
static void note(st_status s, st_status *first, char *msg, size_t cap)
{
    if (s != ST_OK && *first == ST_OK) {
        *first = s;
        snprintf(msg, cap, "%s", st_errmsg());
    }
}

/* sync_dir(dir) succeeded: entries up to seq touching dir, and what they imply, are durable. */
static void commit(st_fault_env *fe, const char *dir, uint64_t seq)
{
    uint64_t gen = ++fe->gen;
    for (size_t i = fe->jn; i-- > 0;) {
        jent *e = fe->journal[i];
        e->commit = false;
        if (e->seq > seq)
            continue;
        bool c = strcmp(e->dir_a, dir) == 0 || (e->dir_b && strcmp(e->dir_b, dir) == 0) ||
                 (e->n && e->n->mark == gen) || (e->n2 && e->n2->mark == gen);
        if (!c)
            continue;
        e->commit = true;
        if (e->n)
            e->n->mark = gen;
        if (e->n2)
            e->n2->mark = gen;
    }
    size_t k = 0;
    for (size_t i = 0; i < fe->jn; i++) {
        jent *e = fe->journal[i];
        if (!e->commit) {
            fe->journal[k++] = e;
            continue;
        }
        if (e->hidden) {
            /* The unlink or the replacement is durable: the parked file really goes now. */
            fe->base->unlink(fe->base, e->hidden);
            remove_name(fe, e->hidden);
        }
        free_jent(e);
    }
    fe->jn = k;
}

static st_status undo(st_fault_env *fe, jent *e)
{
    st_status s = ST_OK, t;
    st_env *b = fe->base;
    switch (e->kind) {
    case J_CREATE:
        s = b->unlink(b, e->a);
        remove_name(fe, e->a);
        break;
    case J_LINK:
        s = b->unlink(b, e->a);
        remove_name(fe, e->a);
        break;
    case J_UNLINK:
        s = b->rename(b, e->hidden, e->a);
        remove_name(fe, e->hidden);
        set_name(fe, e->a, e->n);
        break;
    case J_RENAME:
        s = b->rename(b, e->b, e->a);
        remove_name(fe, e->b);
        set_name(fe, e->a, e->n);
        if (e->hidden) {
            t = b->rename(b, e->hidden, e->b);
            if (s == ST_OK)
                s = t;
            remove_name(fe, e->hidden);
            set_name(fe, e->b, e->n2);
        }
        break;
    }
    return s;
}

/* ---- faults (mu held) ---- */

static void arm_set(arm *a, const st_fault_spec *spec)
{
    free(a->substr);
    memset(a, 0, sizeof(*a));
    if (!spec)
        return;
    a->armed = true;
    a->left = spec->nth ? spec->nth : 1;
    a->substr = spec->path_substr && *spec->path_substr ? xstrdup(spec->path_substr) : NULL;
    a->code = spec->code ? spec->code : ST_IO_ERROR;
    a->prefix = spec->prefix;
    a->sticky = spec->sticky;
}

/* Does this call (on path) trip the arm? Counts it if it matches. */
static bool arm_fires(arm *a, const char *path)
{
    if (!a->armed || !matches(a->substr, path))
        return false;
    if (a->fired)
        return true; /* sticky */
    if (--a->left > 0)
        return false;
    if (a->sticky)
        a->fired = true;
    else
        a->armed = false;
    return true;
}

static st_status powered_off(const char *op, const char *path)
{
    return st_error(ST_IO_ERROR, "%s %s: the power is off (fault env)", op, path);
}

static void leave(st_fault_env *fe)
{
    if (--fe->inflight == 0)
        pthread_cond_broadcast(&fe->idle);
}

/* ---- file calls ---- */

static st_status fault_open_writable(st_env *env, const char *path, bool append, st_file **out)
{
    st_fault_env *fe = from_env(env);
    st_status s;
    st_file *inner = NULL;
    char *np = normalize(path);
    pthread_mutex_lock(&fe->mu);
    if (fe->off) {
        s = powered_off("open", path);
        goto done;
    }
    bool existed = fe->base->exists(fe->base, np);
    s = fe->base->open_writable(fe->base, path, append, &inner);
    if (s != ST_OK)
        goto done;
    node *n;
    if (!existed) {
        n = new_node(fe, 0);
        set_name(fe, np, n);
        journal_add(fe, J_CREATE, np, NULL, NULL, n, NULL);
    } else {
        n = adopt(fe, np);
        if (!append)
            n->synced = 0; /* O_TRUNC: the old contents are gone */
    }
    ffile *f = xcalloc(sizeof(*f));
    f->fe = fe;
    f->inner = inner;
    f->n = n;
    f->path = xstrdup(path);
    *out = (st_file *)f;
done:
    pthread_mutex_unlock(&fe->mu);
    free(np);
    return s;
}

static st_status fault_open_readable(st_env *env, const char *path, st_file **out)
{
    st_fault_env *fe = from_env(env);
    st_file *inner;
    st_status s = fe->base->open_readable(fe->base, path, &inner);
    if (s != ST_OK)
        return s;
    ffile *f = xcalloc(sizeof(*f));
    f->fe = fe;
    f->inner = inner;
    f->path = xstrdup(path);
    *out = (st_file *)f;
    return ST_OK;
}

static st_status fault_append(st_file *file, const void *data, size_t n)
{
    ffile *f = (ffile *)file;
    st_fault_env *fe = f->fe;
    st_status injected = ST_OK;
    size_t write_n = n;

    pthread_mutex_lock(&fe->mu);
    bool counted = matches(fe->stats_filter, f->path);
    if (counted)
        fe->stats.appends++;
    if (fe->off) {
        pthread_mutex_unlock(&fe->mu);
        return powered_off("append", f->path);
    }
    if (arm_fires(&fe->app, f->path)) {
        injected = fe->app.code;
        write_n = fe->app.prefix < n ? fe->app.prefix : n;
    }
    if (fe->budget < write_n) {
        injected = ST_NO_SPACE;
        write_n = (size_t)fe->budget;
    }
    /* Reserve the space now, under the lock: two appends near the limit must not both fit. */
    if (fe->budget != UINT64_MAX)
        fe->budget -= write_n;
    if (injected != ST_OK && counted)
        fe->stats.injected++;
    fe->inflight++;
    pthread_mutex_unlock(&fe->mu);

    st_status s = write_n ? fe->base->append(f->inner, data, write_n) : ST_OK;

    pthread_mutex_lock(&fe->mu);
    if (s == ST_OK) {
        if (counted)
            fe->stats.append_bytes += write_n;
    } else if (fe->budget != UINT64_MAX) {
        fe->budget += write_n; /* nothing was written: give the reservation back */
    }
    leave(fe);
    pthread_mutex_unlock(&fe->mu);

    if (s != ST_OK)
        return s;
    if (injected == ST_NO_SPACE)
        return st_error(ST_NO_SPACE,
                        "append %s: no space left on device (fault env, %zu of %zu "
                        "bytes written)",
                        f->path, write_n, n);
    if (injected != ST_OK)
        return st_error(injected, "append %s: injected %s (fault env, %zu of %zu bytes written)",
                        f->path, st_status_name(injected), write_n, n);
    return ST_OK;
}

static st_status fault_read_at(st_file *file, uint64_t offset, void *buf, size_t n, size_t *got)
{
    ffile *f = (ffile *)file;
    return f->fe->base->read_at(f->inner, offset, buf, n, got);
}

static st_status fault_sync(st_file *file)
{
    ffile *f = (ffile *)file;
    st_fault_env *fe = f->fe;
    pthread_mutex_lock(&fe->mu);
    bool counted = matches(fe->stats_filter, f->path);
    if (counted)
        fe->stats.syncs++;
    if (fe->off) {
        pthread_mutex_unlock(&fe->mu);
        return powered_off("sync", f->path);
    }
    if (arm_fires(&fe->syn, f->path)) {
        st_status code = fe->syn.code;
        if (counted)
            fe->stats.injected++;
        pthread_mutex_unlock(&fe->mu);
        return st_error(code, "sync %s: injected %s (fault env)", f->path, st_status_name(code));
    }
    fe->inflight++;
    pthread_mutex_unlock(&fe->mu);

    /* What is durable is what the file held when the sync began. */
    uint64_t start = 0;
    st_status s = fe->base->size(f->inner, &start);
    if (s == ST_OK)
        s = fe->base->sync(f->inner);

    pthread_mutex_lock(&fe->mu);
    if (s == ST_OK && f->n)
        f->n->synced = start;
    leave(fe);
    pthread_mutex_unlock(&fe->mu);
    return s;
}

static st_status fault_truncate(st_file *file, uint64_t size)
{
    ffile *f = (ffile *)file;
    st_fault_env *fe = f->fe;
    st_status s;
    pthread_mutex_lock(&fe->mu);
    if (fe->off) {
        s = powered_off("truncate", f->path);
    } else {
        s = fe->base->truncate(f->inner, size);
        if (s == ST_OK && f->n && f->n->synced > size)
            f->n->synced = size;
    }
    pthread_mutex_unlock(&fe->mu);
    return s;
}

static st_status fault_size(st_file *file, uint64_t *size)
{
    ffile *f = (ffile *)file;
    return f->fe->base->size(f->inner, size);
}

static st_status fault_map(st_file *file, const uint8_t **addr, uint64_t *len)
{
    ffile *f = (ffile *)file;
    return f->fe->base->map(f->inner, addr, len);
}

static st_status fault_close(st_file *file)
{
    ffile *f = (ffile *)file;
    if (!f)
        return ST_OK;
    st_status s = f->fe->base->close(f->inner);
    free(f->path);
    free(f);
    return s;
}

/* ---- directory and name calls ---- */

static st_status fault_mkdir(st_env *env, const char *path)
{
    st_fault_env *fe = from_env(env);
    pthread_mutex_lock(&fe->mu);
    st_status s = fe->off ? powered_off("mkdir", path) : fe->base->mkdir(fe->base, path);
    pthread_mutex_unlock(&fe->mu);
    return s;
}

static st_status fault_sync_dir(st_env *env, const char *path)
{
    st_fault_env *fe = from_env(env);
    char *nd = normalize(path);
    st_status s;
    pthread_mutex_lock(&fe->mu);
    bool counted = matches(fe->stats_filter, nd);
    if (counted)
        fe->stats.dir_syncs++;
    if (fe->off) {
        s = powered_off("sync directory", path);
        goto done;
    }
    if (arm_fires(&fe->dsyn, nd)) {
        s = fe->dsyn.code;
        if (counted)
            fe->stats.injected++;
        s = st_error(s, "sync directory %s: injected %s (fault env)", path, st_status_name(s));
        goto done;
    }
    /* Only what is in the journal when the sync starts is known to be covered by it. */
    uint64_t seq = fe->seq;
    fe->inflight++;
    pthread_mutex_unlock(&fe->mu);
    s = fe->base->sync_dir(fe->base, path);
    pthread_mutex_lock(&fe->mu);
    if (s == ST_OK)
        commit(fe, nd, seq);
    leave(fe);
done:
    pthread_mutex_unlock(&fe->mu);
    free(nd);
    return s;
}

static st_status fault_rename(st_env *env, const char *from, const char *to)
{
    st_fault_env *fe = from_env(env);
    st_env *b = fe->base;
    char *nf = normalize(from), *nt = normalize(to), *hidden = NULL, *dir = NULL;
    st_status s;
    pthread_mutex_lock(&fe->mu);
    if (fe->off) {
        s = powered_off("rename", from);
        goto done;
    }
    if (strcmp(nf, nt) == 0) {
        s = b->rename(b, nf, nt); /* a no-op or an error; nothing to record */
        goto done;
    }
    if (!b->exists(b, nf)) {
        s = st_errno_error(ENOENT, "rename %s to %s", from, to);
        goto done;
    }
    node *moved = adopt(fe, nf);
    node *replaced = NULL;
    if (b->exists(b, nt)) {
        replaced = adopt(fe, nt);
        dir = dir_of(nt);
        hidden = hidden_name(fe, dir);
        s = b->link(b, nt, hidden);
        if (s != ST_OK)
            goto done;
    }
    s = b->rename(b, nf, nt);
    if (s != ST_OK) {
        if (hidden)
            b->unlink(b, hidden);
        goto done;
    }
    remove_name(fe, nf);
    set_name(fe, nt, moved);
    if (hidden)
        set_name(fe, hidden, replaced);
    journal_add(fe, J_RENAME, nf, nt, hidden, moved, replaced);
    hidden = NULL; /* owned by the journal */
done:
    pthread_mutex_unlock(&fe->mu);
    free(nf);
    free(nt);
    free(hidden);
    free(dir);
    return s;
}

static st_status fault_link(st_env *env, const char *from, const char *to)
{
    st_fault_env *fe = from_env(env);
    char *nf = normalize(from), *nt = normalize(to);
    st_status s;
    pthread_mutex_lock(&fe->mu);
    if (fe->off) {
        s = powered_off("link", from);
    } else {
        s = fe->base->link(fe->base, from, to);
        if (s == ST_OK) {
            node *n = adopt(fe, nf);
            set_name(fe, nt, n);
            journal_add(fe, J_LINK, nt, NULL, NULL, n, NULL);
        }
    }
    pthread_mutex_unlock(&fe->mu);
    free(nf);
    free(nt);
    return s;
}

static st_status fault_unlink(st_env *env, const char *path)
{
    st_fault_env *fe = from_env(env);
    st_env *b = fe->base;
    char *np = normalize(path), *dir = NULL, *hidden = NULL;
    st_status s;
    pthread_mutex_lock(&fe->mu);
    if (fe->off) {
        s = powered_off("unlink", path);
        goto done;
    }
    if (!b->exists(b, np)) {
        s = st_errno_error(ENOENT, "unlink %s", path);
        goto done;
    }
    node *n = adopt(fe, np);
    dir = dir_of(np);
    hidden = hidden_name(fe, dir);
    /* Parked, not removed, until sync_dir makes the unlink durable. */
    s = b->rename(b, np, hidden);
    if (s != ST_OK) {
        char why[512];
        snprintf(why, sizeof(why), "%s", st_errmsg());
        s = st_error(s, "unlink %s: %s", path, why);
        goto done;
    }
    remove_name(fe, np);
    set_name(fe, hidden, n);
    journal_add(fe, J_UNLINK, np, NULL, hidden, n, NULL);
    hidden = NULL;
done:
    pthread_mutex_unlock(&fe->mu);
    free(np);
    free(dir);
    free(hidden);
    return s;
}

static st_status fault_file_size(st_env *env, const char *path, uint64_t *size)
{
    st_fault_env *fe = from_env(env);
    return fe->base->file_size(fe->base, path, size);
}

static bool fault_exists(st_env *env, const char *path)
{
    st_fault_env *fe = from_env(env);
    return fe->base->exists(fe->base, path);
}

static st_status fault_list(st_env *env, const char *path, char ***names, size_t *count)
{
    st_fault_env *fe = from_env(env);
    char **v;
    size_t n;
    st_status s = fe->base->list(fe->base, path, &v, &n);
    if (s != ST_OK)
        return s;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i], HIDDEN_PREFIX, sizeof(HIDDEN_PREFIX) - 1) == 0)
            free(v[i]);
        else
            v[k++] = v[i];
    }
    *names = v;
    *count = k;
    return ST_OK;
}

static st_status fault_lock(st_env *env, const char *path, st_filelock **out)
{
    st_fault_env *fe = from_env(env);
    st_filelock *inner;
    st_status s = fe->base->lock(fe->base, path, &inner);
    if (s != ST_OK)
        return s;
    flk *l = xcalloc(sizeof(*l));
    l->fe = fe;
    l->inner = inner;
    *out = (st_filelock *)l;
    return ST_OK;
}

static void fault_unlock(st_filelock *lock)
{
    flk *l = (flk *)lock;
    if (!l)
        return;
    l->fe->base->unlock(l->inner);
    free(l);
}

static uint64_t fault_now_micros(st_env *env)
{
    st_fault_env *fe = from_env(env);
    return fe->base->now_micros(fe->base);
}

static uint64_t fault_wall_micros(st_env *env)
{
    st_fault_env *fe = from_env(env);
    return fe->base->wall_micros(fe->base);
}

/* ---- public ---- */

st_status st_fault_env_create(st_env *base, st_fault_env **out)
{
    st_fault_env *fe = xcalloc(sizeof(*fe));
    fe->env = (st_env){
        .open_writable = fault_open_writable,
        .open_readable = fault_open_readable,
        .append = fault_append,
        .read_at = fault_read_at,
        .sync = fault_sync,
        .truncate = fault_truncate,
        .size = fault_size,
        .map = fault_map,
        .close = fault_close,
        .mkdir = fault_mkdir,
        .sync_dir = fault_sync_dir,
        .rename = fault_rename,
        .link = fault_link,
        .unlink = fault_unlink,
        .file_size = fault_file_size,
        .exists = fault_exists,
        .list = fault_list,
        .lock = fault_lock,
        .unlock = fault_unlock,
        .now_micros = fault_now_micros,
        .wall_micros = fault_wall_micros,
    };
    fe->base = base;
    fe->budget = UINT64_MAX;
    pthread_mutex_init(&fe->mu, NULL);
    pthread_cond_init(&fe->idle, NULL);
    *out = fe;
    return ST_OK;
}

void st_fault_env_destroy(st_fault_env *fe)
{
    if (!fe)
        return;
    for (size_t i = 0; i < fe->jn; i++) {
        if (fe->journal[i]->hidden)
            fe->base->unlink(fe->base, fe->journal[i]->hidden);
        free_jent(fe->journal[i]);
    }
    free(fe->journal);
    while (fe->names) {
        name_ent *e = fe->names;
        fe->names = e->next;
        free(e->path);
        free(e);
    }
    while (fe->nodes) {
        node *n = fe->nodes;
        fe->nodes = n->next_all;
        free(n);
    }
    arm_set(&fe->app, NULL);
    arm_set(&fe->syn, NULL);
    arm_set(&fe->dsyn, NULL);
    free(fe->stats_filter);
    pthread_cond_destroy(&fe->idle);
    pthread_mutex_destroy(&fe->mu);
    free(fe);
}

st_env *st_fault_env_env(st_fault_env *fe)
{
    return &fe->env;
}

void st_fault_env_fail_append(st_fault_env *fe, const st_fault_spec *spec)
{
    pthread_mutex_lock(&fe->mu);
    arm_set(&fe->app, spec);
    pthread_mutex_unlock(&fe->mu);
}

void st_fault_env_fail_sync(st_fault_env *fe, const st_fault_spec *spec)
{
    pthread_mutex_lock(&fe->mu);
    arm_set(&fe->syn, spec);
    pthread_mutex_unlock(&fe->mu);
}

void st_fault_env_fail_sync_dir(st_fault_env *fe, const st_fault_spec *spec)
{
    pthread_mutex_lock(&fe->mu);
    arm_set(&fe->dsyn, spec);
    pthread_mutex_unlock(&fe->mu);
}

void st_fault_env_set_budget(st_fault_env *fe, uint64_t bytes)
{
    pthread_mutex_lock(&fe->mu);
    fe->budget = bytes;
    pthread_mutex_unlock(&fe->mu);
}

uint64_t st_fault_env_budget_left(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    uint64_t b = fe->budget;
    pthread_mutex_unlock(&fe->mu);
    return b;
}

void st_fault_env_clear_faults(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    arm_set(&fe->app, NULL);
    arm_set(&fe->syn, NULL);
    arm_set(&fe->dsyn, NULL);
    fe->budget = UINT64_MAX;
    pthread_mutex_unlock(&fe->mu);
}

void st_fault_env_reset_stats(st_fault_env *fe, const char *path_substr)
{
    pthread_mutex_lock(&fe->mu);
    free(fe->stats_filter);
    fe->stats_filter = path_substr && *path_substr ? xstrdup(path_substr) : NULL;
    memset(&fe->stats, 0, sizeof(fe->stats));
    pthread_mutex_unlock(&fe->mu);
}

st_fault_stats st_fault_env_stats(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    st_fault_stats s = fe->stats;
    pthread_mutex_unlock(&fe->mu);
    return s;
}

void st_fault_env_power_off(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    fe->off = true;
    while (fe->inflight > 0)
        pthread_cond_wait(&fe->idle, &fe->mu);
    pthread_mutex_unlock(&fe->mu);
}

void st_fault_env_power_on(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    fe->off = false;
    pthread_mutex_unlock(&fe->mu);
}

bool st_fault_env_is_off(st_fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    bool off = fe->off;
    pthread_mutex_unlock(&fe->mu);
    return off;
}

/* Cut the file at npath to its node's durable size. */
static st_status cut_to_durable(st_fault_env *fe, const char *npath, node *n)
{
    st_env *b = fe->base;
    uint64_t size;
    st_status s = b->file_size(b, npath, &size);
    if (s != ST_OK)
        return s;
    if (size > n->synced) {
        st_file *f;
        s = b->open_writable(b, npath, true, &f);
        if (s != ST_OK)
            return s;
        s = b->truncate(f, n->synced);
        st_status c = b->close(f);
        if (s == ST_OK)
            s = c;
        if (s != ST_OK)
            return s;
        size = n->synced;
    }
    n->synced = size; /* from now on, what is on disk is what survived */
    return ST_OK;
}

st_status st_fault_env_drop_unsynced(st_fault_env *fe)
{
    st_status first = ST_OK;
    char msg[512] = "";
    pthread_mutex_lock(&fe->mu);
    if (!fe->off) {
        pthread_mutex_unlock(&fe->mu);
        return st_error(ST_INVALID_ARGUMENT, "drop_unsynced: the power is on (fault env)");
    }
    for (size_t i = fe->jn; i-- > 0;) {
        note(undo(fe, fe->journal[i]), &first, msg, sizeof(msg));
        free_jent(fe->journal[i]);
    }
    fe->jn = 0;
    uint64_t gen = ++fe->gen;
    name_ent **pp = &fe->names;
    while (*pp) {
        name_ent *e = *pp;
        if (e->n->mark == gen) {
            pp = &e->next;
            continue;
        }
        e->n->mark = gen;
        st_status s = cut_to_durable(fe, e->path, e->n);
        if (s == ST_NOT_FOUND) {
            /* Removed behind our back (not through this env): forget the name. */
            e->n->mark = 0; /* another name of the node may still exist */
            *pp = e->next;
            free(e->path);
            free(e);
            continue;
        }
        note(s, &first, msg, sizeof(msg));
        pp = &e->next;
    }
    pthread_mutex_unlock(&fe->mu);
    if (first != ST_OK)
        return st_error(first, "drop_unsynced: %s", msg);
    return ST_OK;
}
