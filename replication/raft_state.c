/* raft_state.c - term and vote on disk. */
#include "replication/raft_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/coding.h"
#include "engine/crc32c.h"

#define MAGIC   0x53525453u /* "STRS" little-endian */
#define VERSION 1
#define SIZE    (4 + 1 + 8 + 4 + 4)

static void path_of(char *buf, size_t cap, const char *dir)
{
    snprintf(buf, cap, "%s/raft_state", dir);
}

st_status st_raft_state_load(st_env *env, const char *dir, st_raft_state *out)
{
    char path[4096];
    uint8_t *data = NULL;
    size_t n = 0;
    path_of(path, sizeof(path), dir);
    memset(out, 0, sizeof(*out));
    st_status s = st_env_read_file(env, path, 4096, &data, &n);
    if (s == ST_NOT_FOUND)
        return ST_OK;
    if (s)
        return s;
    if (n != SIZE || st_get_fixed32(data) != MAGIC) {
        s = st_error(ST_CORRUPTION, "%s: not a raft state file", path);
    } else if (data[4] != VERSION) {
        s = st_error(ST_NOT_SUPPORTED, "%s: version %u is not supported", path, data[4]);
    } else if (st_crc32c_unmask(st_get_fixed32(data + SIZE - 4)) != st_crc32c(data, SIZE - 4)) {
        s = st_error(ST_CORRUPTION, "%s: checksum mismatch", path);
    } else {
        out->term = st_get_fixed64(data + 5);
        out->voted_for = st_get_fixed32(data + 13);
    }
    free(data);
    return s;
}

st_status st_raft_state_save(st_env *env, const char *dir, const st_raft_state *st)
{
    char path[4096];
    uint8_t buf[SIZE];
    path_of(path, sizeof(path), dir);
    st_put_fixed32(buf, MAGIC);
    buf[4] = VERSION;
    st_put_fixed64(buf + 5, st->term);
    st_put_fixed32(buf + 13, st->voted_for);
    st_put_fixed32(buf + SIZE - 4, st_crc32c_mask(st_crc32c(buf, SIZE - 4)));
    return st_env_write_file_atomic(env, dir, path, buf, sizeof(buf));
}
