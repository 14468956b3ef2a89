/* proto_index.c - symbols and files of a FileDescriptorSet, read with a small wire reader. */
#include "node/proto_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"

typedef struct pfile {
    char *name;
    st_slice bytes;
    char **dep_names;
    size_t ndeps;
    size_t *deps; /* indices, resolved once every file is read */
} pfile;

typedef struct psym {
    char *name;
    size_t file;
    bool is_message;
} psym;

struct st_proto_index {
    const uint8_t *base; /* the set, for offsets in messages */
    pfile *files;
    size_t nfiles, capf;
    psym *syms;
    size_t nsyms, caps;
    char **services;
    size_t nservices, capsv;
};

/* ---- wire reader --------------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
} rd;

typedef struct field {
    uint32_t num;
    uint32_t wt;
    st_slice bytes; /* wire type 2 */
} field;

/* Next field of [p, end): 1 one read, 0 at the end, -1 malformed. */
static int next_field(rd *r, field *f)
{
    if (r->p >= r->end)
        return 0;
    uint64_t tag, v;
    if (!st_decode_varint64(&r->p, r->end, &tag))
        return -1;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (uint32_t)(tag & 7);
    if (f->num == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    switch (f->wt) {
    case 0:
        return st_decode_varint64(&r->p, r->end, &v) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 1;
    case 2:
        if (!st_decode_varint64(&r->p, r->end, &v) || v > (uint64_t)(r->end - r->p))
            return -1;
        f->bytes = st_slice_make(r->p, (size_t)v);
        r->p += v;
        return 1;
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 1;
    default:
        return -1; /* groups and reserved wire types: not in a descriptor */
    }
}

static st_status malformed(const st_proto_index *idx, const uint8_t *at, const char *what)
{
    return st_error(ST_CORRUPTION, "descriptor set: malformed %s at offset %zu", what,
                    (size_t)(at - idx->base));
}

/* ---- building ---------------------------------------------------------------------------- */

static char *join(const char *scope, st_slice name)
{
    size_t n = strlen(scope);
    char *s = malloc(n + 1 + name.len + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    if (n) {
        memcpy(s, scope, n);
        s[n] = '.';
        o = n + 1;
    }
    if (name.len)
        memcpy(s + o, name.data, name.len);
    s[o + name.len] = '\0';
    return s;
}

static st_status add_sym(st_proto_index *idx, char *name, size_t file, bool is_message)
{
    if (!name)
        return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
    if (idx->nsyms == idx->caps) {
        size_t cap = idx->caps ? idx->caps * 2 : 64;
        psym *p = realloc(idx->syms, cap * sizeof(*p));
        if (!p) {
            free(name);
            return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
        }
        idx->syms = p;
        idx->caps = cap;
    }
    idx->syms[idx->nsyms++] = (psym){name, file, is_message};
    return ST_OK;
}

/* The name (field 1) of a small descriptor message. */
static st_status read_name(st_proto_index *idx, st_slice msg, st_slice *name)
{
    rd r = {msg.data, msg.data + msg.len};
    field f;
    int rc;
    *name = st_slice_make(NULL, 0);
    while ((rc = next_field(&r, &f)) == 1)
        if (f.num == 1 && f.wt == 2)
            *name = f.bytes;
    if (rc < 0)
        return malformed(idx, r.p, "descriptor");
    if (name->len == 0)
        return st_error(ST_CORRUPTION, "descriptor set: unnamed descriptor at offset %zu",
                        (size_t)(msg.data - idx->base));
    return ST_OK;
}

static st_status add_named(st_proto_index *idx, st_slice msg, const char *scope, size_t file)
{
    st_slice name;
    st_status s = read_name(idx, msg, &name);
    if (s == ST_OK)
        s = add_sym(idx, join(scope, name), file, false);
    return s;
}

static st_status parse_enum(st_proto_index *idx, st_slice msg, const char *scope, size_t file)
{
    st_slice name;
    st_status s = read_name(idx, msg, &name);
    if (s != ST_OK)
        return s;
    s = add_sym(idx, join(scope, name), file, false);
    rd r = {msg.data, msg.data + msg.len};
    field f;
    int rc;
    while (s == ST_OK && (rc = next_field(&r, &f)) == 1)
        if (f.num == 2 && f.wt == 2) /* values live in the enum's enclosing scope */
            s = add_named(idx, f.bytes, scope, file);
    return s;
}

static st_status parse_message(st_proto_index *idx, st_slice msg, const char *scope, size_t file)
{
    st_slice name;
    st_status s = read_name(idx, msg, &name);
    if (s != ST_OK)
        return s;
    char *full = join(scope, name);
    if (!full)
        return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
    s = add_sym(idx, strdup(full), file, true);
    rd r = {msg.data, msg.data + msg.len};
    field f;
    int rc = 0;
    while (s == ST_OK && (rc = next_field(&r, &f)) == 1) {
        if (f.wt != 2)
            continue;
        if (f.num == 2 || f.num == 6 || f.num == 8) /* field, extension, oneof */
            s = add_named(idx, f.bytes, full, file);
        else if (f.num == 3)
            s = parse_message(idx, f.bytes, full, file);
        else if (f.num == 4)
            s = parse_enum(idx, f.bytes, full, file);
    }
    free(full);
    if (s == ST_OK && rc < 0)
        s = malformed(idx, r.p, "message descriptor");
    return s;
}

static st_status parse_service(st_proto_index *idx, st_slice msg, const char *scope, size_t file)
{
    st_slice name;
    st_status s = read_name(idx, msg, &name);
    if (s != ST_OK)
        return s;
    char *full = join(scope, name);
    if (!full)
        return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
    if (idx->nservices == idx->capsv) {
        size_t cap = idx->capsv ? idx->capsv * 2 : 8;
        char **p = realloc(idx->services, cap * sizeof(*p));
        if (!p) {
            free(full);
            return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
        }
        idx->services = p;
        idx->capsv = cap;
    }
    idx->services[idx->nservices++] = full;
    s = add_sym(idx, strdup(full), file, false);
    rd r = {msg.data, msg.data + msg.len};
    field f;
    while (s == ST_OK && next_field(&r, &f) == 1)
        if (f.num == 2 && f.wt == 2)
            s = add_named(idx, f.bytes, full, file);
    return s;
}

static char *slice_str(st_slice s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        if (s.len)
            memcpy(p, s.data, s.len);
        p[s.len] = '\0';
    }
    return p;
}

static st_status parse_file(st_proto_index *idx, st_slice bytes)
{
    if (idx->nfiles == idx->capf) {
        size_t cap = idx->capf ? idx->capf * 2 : 8;
        pfile *p = realloc(idx->files, cap * sizeof(*p));
        if (!p)
            return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
        idx->files = p;
        idx->capf = cap;
    }
    size_t fi = idx->nfiles++;
    pfile *pf = &idx->files[fi];
    memset(pf, 0, sizeof(*pf));
    pf->bytes = bytes;

    /* First pass: name, package and dependencies, which the symbols need. */
    rd r = {bytes.data, bytes.data + bytes.len};
    field f;
    int rc;
    st_slice pkg = st_slice_make(NULL, 0);
    size_t ndeps = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (f.wt != 2)
            continue;
        if (f.num == 1 && !pf->name)
            pf->name = slice_str(f.bytes);
        else if (f.num == 2)
            pkg = f.bytes;
        else if (f.num == 3)
            ndeps++;
    }
    if (rc < 0)
        return malformed(idx, r.p, "file descriptor");
    if (!pf->name || !pf->name[0])
        return st_error(ST_CORRUPTION, "descriptor set: file without a name at offset %zu",
                        (size_t)(bytes.data - idx->base));
    pf->dep_names = calloc(ndeps ? ndeps : 1, sizeof(char *));
    pf->deps = calloc(ndeps ? ndeps : 1, sizeof(size_t));
    char *scope = slice_str(pkg);
    if (!pf->dep_names || !pf->deps || !scope) {
        free(scope);
        return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
    }
    st_status s = ST_OK;
    r = (rd){bytes.data, bytes.data + bytes.len};
    while (s == ST_OK && next_field(&r, &f) == 1) {
        if (f.wt != 2)
            continue;
        switch (f.num) {
        case 3:
            pf->dep_names[pf->ndeps] = slice_str(f.bytes);
            if (!pf->dep_names[pf->ndeps++])
                s = st_error(ST_NO_MEMORY, "descriptor set: out of memory");
            break;
        case 4:
            s = parse_message(idx, f.bytes, scope, fi);
            break;
        case 5:
            s = parse_enum(idx, f.bytes, scope, fi);
            break;
        case 6:
            s = parse_service(idx, f.bytes, scope, fi);
            break;
        case 7:
            s = add_named(idx, f.bytes, scope, fi);
            break;
        }
    }
    free(scope);
    return s;
}

static int sym_cmp(const void *a, const void *b)
{
    return strcmp(((const psym *)a)->name, ((const psym *)b)->name);
}

st_status st_proto_index_create(const uint8_t *set, size_t len, st_proto_index **out)
{
    *out = NULL;
    st_proto_index *idx = calloc(1, sizeof(*idx));
    if (!idx)
        return st_error(ST_NO_MEMORY, "descriptor set: out of memory");
    idx->base = set;
    st_status s = ST_OK;
    rd r = {set, set + len};
    field f;
    int rc;
    while (s == ST_OK && (rc = next_field(&r, &f)) == 1)
        if (f.num == 1 && f.wt == 2)
            s = parse_file(idx, f.bytes);
    if (s == ST_OK && rc < 0)
        s = malformed(idx, r.p, "FileDescriptorSet");
    if (s != ST_OK)
        goto fail;
    for (size_t i = 0; i < idx->nfiles; i++) {
        pfile *pf = &idx->files[i];
        for (size_t d = 0; d < pf->ndeps; d++) {
            int j = st_proto_index_find_file(idx, pf->dep_names[d]);
            if (j < 0) {
                s = st_error(ST_CORRUPTION, "descriptor set: %s imports %s, which it lacks",
                             pf->name, pf->dep_names[d]);
                goto fail;
            }
            pf->deps[d] = (size_t)j;
        }
    }
    if (idx->nsyms)
        qsort(idx->syms, idx->nsyms, sizeof(*idx->syms), sym_cmp);
    *out = idx;
    return ST_OK;

fail:
    st_proto_index_destroy(idx);
    return s;
}

void st_proto_index_destroy(st_proto_index *idx)
{
    if (!idx)
        return;
    for (size_t i = 0; i < idx->nfiles; i++) {
        pfile *pf = &idx->files[i];
        free(pf->name);
        for (size_t d = 0; d < pf->ndeps; d++)
            free(pf->dep_names[d]);
        free(pf->dep_names);
        free(pf->deps);
    }
    free(idx->files);
    for (size_t i = 0; i < idx->nsyms; i++)
        free(idx->syms[i].name);
    free(idx->syms);
    for (size_t i = 0; i < idx->nservices; i++)
        free(idx->services[i]);
    free(idx->services);
    free(idx);
}

/* ---- queries ----------------------------------------------------------------------------- */

size_t st_proto_index_file_count(const st_proto_index *idx)
{
    return idx->nfiles;
}

const char *st_proto_index_file_name(const st_proto_index *idx, size_t i)
{
    return idx->files[i].name;
}

st_slice st_proto_index_file_bytes(const st_proto_index *idx, size_t i)
{
    return idx->files[i].bytes;
}

int st_proto_index_find_file(const st_proto_index *idx, const char *name)
{
    for (size_t i = 0; i < idx->nfiles; i++)
        if (idx->files[i].name && strcmp(idx->files[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const psym *find_sym(const st_proto_index *idx, const char *symbol)
{
    if (symbol[0] == '.')
        symbol++;
    psym key = {(char *)symbol, 0, false};
    if (!idx->nsyms)
        return NULL;
    return bsearch(&key, idx->syms, idx->nsyms, sizeof(*idx->syms), sym_cmp);
}

int st_proto_index_find_symbol(const st_proto_index *idx, const char *symbol)
{
    const psym *p = find_sym(idx, symbol);
    return p ? (int)p->file : -1;
}

bool st_proto_index_is_message(const st_proto_index *idx, const char *name)
{
    const psym *p = find_sym(idx, name);
    return p && p->is_message;
}

static void visit(const st_proto_index *idx, size_t i, bool *seen, size_t *out, size_t cap,
                  size_t *n)
{
    if (seen[i])
        return;
    seen[i] = true;
    if (*n < cap)
        out[*n] = i;
    (*n)++;
    for (size_t d = 0; d < idx->files[i].ndeps; d++)
        visit(idx, idx->files[i].deps[d], seen, out, cap, n);
}

size_t st_proto_index_closure(const st_proto_index *idx, size_t i, size_t *out, size_t cap)
{
    bool *seen = calloc(idx->nfiles ? idx->nfiles : 1, sizeof(bool));
    if (!seen)
        return 0;
    size_t n = 0;
    visit(idx, i, seen, out, cap, &n);
    free(seen);
    return n;
}

size_t st_proto_index_service_count(const st_proto_index *idx)
{
    return idx->nservices;
}

const char *st_proto_index_service(const st_proto_index *idx, size_t i)
{
    return idx->services[i];
}
