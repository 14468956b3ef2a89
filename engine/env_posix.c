/* env_posix.c - the default st_env: POSIX files, directories, flock and clocks. */
#include "engine/env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct st_file {
    int fd;
    char *path;         /* owned; for messages */
    const uint8_t *map; /* mapping made by posix_map, unmapped on close; NULL if none */
    uint64_t map_len;
};

struct st_filelock {
    int fd;
    char *path; /* owned */
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static st_status new_file(int fd, const char *path, st_file **out)
{
    st_file *f = calloc(1, sizeof(*f));
    char *p = dup_str(path);
    if (!f || !p) {
        free(f);
        free(p);
        close(fd);
        return st_error(ST_NO_MEMORY, "open %s: out of memory", path);
    }
    f->fd = fd;
    f->path = p;
    *out = f;
    return ST_OK;
}

static st_status posix_open_writable(st_env *env, const char *path, bool append, st_file **out)
{
    (void)env;
    /*
     * O_APPEND in both modes: writes always land at the current end, so a truncate followed by
     * an append never leaves a hole. O_RDWR so that read_at works on a file being written.
     */
    int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC);
    int fd;
    do {
        fd = open(path, flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return st_errno_error(errno, "open %s", path);
    return new_file(fd, path, out);
}

static st_status posix_open_readable(st_env *env, const char *path, st_file **out)
{
    (void)env;
    int fd;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return st_errno_error(errno, "open %s", path);
    return new_file(fd, path, out);
}

static st_status posix_append(st_file *f, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return st_errno_error(errno, "append %s", f->path);
        }
        if (w == 0) /* not expected from a regular file; do not spin */
            return st_errno_error(EIO, "append %s: write returned 0", f->path);
        p += w;
        n -= (size_t)w;
    }
    return ST_OK;
}

static st_status posix_read_at(st_file *f, uint64_t offset, void *buf, size_t n, size_t *got)
{
    uint8_t *p = buf;
    size_t done = 0;
    if (offset > (uint64_t)INT64_MAX) {
        *got = 0;
        return st_error(ST_INVALID_ARGUMENT, "read %s: offset %llu out of range", f->path,
                        (unsigned long long)offset);
    }
    while (done < n) {
        ssize_t r = pread(f->fd, p + done, n - done, (off_t)(offset + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *got = done;
            return st_errno_error(errno, "read %s at offset %llu", f->path,
                                  (unsigned long long)(offset + done));
        }
        if (r == 0)
            break; /* end of file */
        done += (size_t)r;
    }
    *got = done;
    return ST_OK;
}

static st_status posix_sync(st_file *f)
{
    int rc;
    do {
        rc = fdatasync(f->fd);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return st_errno_error(errno, "sync %s", f->path);
    return ST_OK;
}

static st_status posix_truncate(st_file *f, uint64_t size)
{
    if (size > (uint64_t)INT64_MAX)
        return st_error(ST_INVALID_ARGUMENT, "truncate %s: size %llu out of range", f->path,
                        (unsigned long long)size);
    int rc;
    do {
        rc = ftruncate(f->fd, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0)
        return st_errno_error(errno, "truncate %s", f->path);
    return ST_OK;
}

static st_status posix_map_append(st_file *f, uint64_t offset, size_t len, uint8_t **addr)
{
    *addr = NULL;
    if (offset % ST_ENV_MAP_ALIGN || len == 0 || offset > (uint64_t)INT64_MAX - len)
        return st_error(ST_INVALID_ARGUMENT, "map %s: bad range %llu+%zu", f->path,
                        (unsigned long long)offset, len);
    /* Allocate first: a store into a hole that the disk cannot back would be a SIGBUS. */
    int rc;
    do {
        rc = fallocate(f->fd, 0, (off_t)offset, (off_t)len);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        return st_error(ST_NOT_SUPPORTED, "map %s: the file system cannot allocate ahead", f->path);
    if (rc != 0)
        return st_errno_error(errno, "allocate %s (%zu bytes at %llu)", f->path, len,
                              (unsigned long long)offset);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, (off_t)offset);
    if (p == MAP_FAILED)
        return st_errno_error(errno, "map %s (%zu bytes at %llu)", f->path, len,
                              (unsigned long long)offset);
    *addr = p;
    return ST_OK;
}

static void posix_unmap_append(st_file *f, uint8_t *addr, size_t len)
{
    (void)f;
    if (addr)
        munmap(addr, len);
}

static st_status posix_size(st_file *f, uint64_t *size)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return st_errno_error(errno, "stat %s", f->path);
    *size = (uint64_t)st.st_size;
    return ST_OK;
}

static st_status posix_map(st_file *f, const uint8_t **addr, uint64_t *len)
{
    if (f->map) {
        *addr = f->map;
        *len = f->map_len;
        return ST_OK;
    }
    uint64_t size;
    st_status s = posix_size(f, &size);
    if (s != ST_OK)
        return s;
    if (size == 0) {
        /* mmap of length 0 is EINVAL; an empty file is simply an empty mapping. */
        *addr = NULL;
        *len = 0;
        return ST_OK;
    }
    if (size > (uint64_t)SIZE_MAX)
        return st_error(ST_NOT_SUPPORTED, "map %s: %llu bytes do not fit the address space",
                        f->path, (unsigned long long)size);
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (p == MAP_FAILED)
        return st_errno_error(errno, "mmap %s", f->path);
    f->map = p;
    f->map_len = size;
    *addr = f->map;
    *len = size;
    return ST_OK;
}

static st_status posix_close(st_file *f)
{
    if (!f)
        return ST_OK;
    st_status s = ST_OK;
    if (f->map && munmap((void *)f->map, (size_t)f->map_len) != 0)
        s = st_errno_error(errno, "munmap %s", f->path);
    /* No retry on EINTR: on Linux the descriptor is released even when close reports it. */
    if (close(f->fd) != 0 && s == ST_OK && errno != EINTR)
        s = st_errno_error(errno, "close %s", f->path);
    free(f->path);
    free(f);
    return s;
}

static st_status posix_mkdir(st_env *env, const char *path)
{
    (void)env;
    if (mkdir(path, 0755) == 0)
        return ST_OK;
    int err = errno;
    struct stat st;
    if (err == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ST_OK;
    return st_errno_error(err, "mkdir %s", path);
}

static st_status posix_sync_dir(st_env *env, const char *path)
{
    (void)env;
    int fd;
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return st_errno_error(errno, "open directory %s", path);
    st_status s = ST_OK;
    int rc;
    do {
        rc = fsync(fd);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0)
        s = st_errno_error(errno, "sync directory %s", path);
    close(fd);
    return s;
}

static st_status posix_rename(st_env *env, const char *from, const char *to)
{
    (void)env;
    if (rename(from, to) != 0)
        return st_errno_error(errno, "rename %s to %s", from, to);
    return ST_OK;
}

static st_status posix_link(st_env *env, const char *from, const char *to)
{
    (void)env;
    if (link(from, to) != 0)
        return st_errno_error(errno, "link %s to %s", from, to);
    return ST_OK;
}

static st_status posix_unlink(st_env *env, const char *path)
{
    (void)env;
    if (unlink(path) != 0)
        return st_errno_error(errno, "unlink %s", path);
    return ST_OK;
}

static st_status posix_file_size(st_env *env, const char *path, uint64_t *size)
{
    (void)env;
    struct stat st;
    if (stat(path, &st) != 0)
        return st_errno_error(errno, "stat %s", path);
    *size = (uint64_t)st.st_size;
    return ST_OK;
}

static bool posix_exists(st_env *env, const char *path)
{
    (void)env;
    return access(path, F_OK) == 0;
}

void st_env_free_names(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static st_status posix_list(st_env *env, const char *path, char ***names, size_t *count)
{
    (void)env;
    char **v = NULL;
    size_t n = 0, cap = 0;
    DIR *d = NULL;
    st_status s = ST_OK;

    /* open + fdopendir rather than opendir, to be explicit about O_CLOEXEC. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        s = st_errno_error(errno, "list %s", path);
        goto fail;
    }
    d = fdopendir(fd);
    if (!d) {
        s = st_errno_error(errno, "list %s", path);
        close(fd);
        goto fail;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) {
                s = st_errno_error(errno, "list %s", path);
                goto fail;
            }
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                s = st_error(ST_NO_MEMORY, "list %s: out of memory", path);
                goto fail;
            }
            v = nv;
            cap = ncap;
        }
        v[n] = dup_str(e->d_name);
        if (!v[n]) {
            s = st_error(ST_NO_MEMORY, "list %s: out of memory", path);
            goto fail;
        }
        n++;
    }
    closedir(d);
    *names = v;
    *count = n;
    return ST_OK;

fail:
    if (d)
        closedir(d);
    st_env_free_names(v, n);
    *names = NULL;
    *count = 0;
    return s;
}

static st_status posix_lock(st_env *env, const char *path, st_filelock **out)
{
    (void)env;
    st_status s;
    st_filelock *l = NULL;
    int fd;
    do {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return st_errno_error(errno, "lock %s", path);
    /*
     * flock locks belong to the open file description, so a second lock of the same path from
     * this process (another open) is refused too: one database, one opener.
     */
    int rc;
    do {
        rc = flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        if (errno == EWOULDBLOCK)
            s = st_error(ST_BUSY, "lock %s: another process holds %s", path, path);
        else
            s = st_errno_error(errno, "lock %s", path);
        goto fail;
    }
    l = malloc(sizeof(*l));
    if (!l || !(l->path = dup_str(path))) {
        s = st_error(ST_NO_MEMORY, "lock %s: out of memory", path);
        goto fail;
    }
    l->fd = fd;
    *out = l;
    return ST_OK;

fail:
    free(l);
    close(fd); /* also releases the flock if we got it */
    return s;
}

static void posix_unlock(st_filelock *l)
{
    if (!l)
        return;
    flock(l->fd, LOCK_UN);
    close(l->fd);
    free(l->path);
    free(l);
}

static uint64_t clock_micros(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t posix_now_micros(st_env *env)
{
    (void)env;
    return clock_micros(CLOCK_MONOTONIC);
}

static uint64_t posix_wall_micros(st_env *env)
{
    (void)env;
    return clock_micros(CLOCK_REALTIME);
}

static st_env posix_env = {
    .open_writable = posix_open_writable,
    .open_readable = posix_open_readable,
    .append = posix_append,
    .read_at = posix_read_at,
    .sync = posix_sync,
    .truncate = posix_truncate,
    .size = posix_size,
    .map = posix_map,
    .map_append = posix_map_append,
    .unmap_append = posix_unmap_append,
    .close = posix_close,
    .mkdir = posix_mkdir,
    .sync_dir = posix_sync_dir,
    .rename = posix_rename,
    .link = posix_link,
    .unlink = posix_unlink,
    .file_size = posix_file_size,
    .exists = posix_exists,
    .list = posix_list,
    .lock = posix_lock,
    .unlock = posix_unlock,
    .now_micros = posix_now_micros,
    .wall_micros = posix_wall_micros,
};

st_env *st_env_posix(void)
{
    return &posix_env;
}

/* Keep the first failure's message while cleanup calls (which may fail too) overwrite it. */
static st_status restore_error(st_status s, const char *saved)
{
    return st_error(s, "%s", saved);
}

st_status st_env_write_file_atomic(st_env *env, const char *dir, const char *path, const void *data,
                                   size_t n)
{
    char saved[512];
    st_file *f = NULL;
    st_status s;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return st_error(ST_NO_MEMORY, "write %s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    s = env->open_writable(env, tmp, false, &f);
    if (s != ST_OK) {
        free(tmp);
        return s; /* nothing was created, or the create itself failed */
    }
    s = env->append(f, data, n);
    if (s != ST_OK)
        goto fail;
    s = env->sync(f);
    if (s != ST_OK)
        goto fail;
    s = env->close(f);
    f = NULL;
    if (s != ST_OK)
        goto fail;
    s = env->rename(env, tmp, path);
    if (s != ST_OK)
        goto fail;
    free(tmp);
    /*
     * The rename has happened: `path` now holds the new contents, and only its durability is in
     * doubt if this fails. There is nothing left to undo, so the error is returned as is.
     */
    return env->sync_dir(env, dir);

fail:
    snprintf(saved, sizeof(saved), "%s", st_errmsg());
    if (f)
        env->close(f);
    env->unlink(env, tmp);
    free(tmp);
    return restore_error(s, saved);
}

st_status st_env_read_file(st_env *env, const char *path, size_t max_bytes, uint8_t **data,
                           size_t *n)
{
    st_file *f = NULL;
    uint8_t *buf = NULL;
    uint64_t size;
    size_t got = 0;
    st_status s = env->open_readable(env, path, &f);
    if (s != ST_OK)
        return s;
    s = env->size(f, &size);
    if (s != ST_OK)
        goto fail;
    if (size > (uint64_t)max_bytes) {
        s = st_error(ST_CORRUPTION, "%s: %llu bytes, more than the %zu allowed", path,
                     (unsigned long long)size, max_bytes);
        goto fail;
    }
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        s = st_error(ST_NO_MEMORY, "read %s: out of memory", path);
        goto fail;
    }
    s = env->read_at(f, 0, buf, (size_t)size, &got);
    if (s != ST_OK)
        goto fail;
    env->close(f);
    /* A file that shrank under us yields what is there; one that grew yields its old length. */
    *data = buf;
    *n = got;
    return ST_OK;

fail:
    free(buf);
    env->close(f);
    return s;
}
