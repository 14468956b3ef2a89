/* cluster.c - parsing the member list. */
#include "replication/cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

st_status st_cluster_parse(const char *spec, st_cluster *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = spec;
    while (*p) {
        if (out->n == ST_MAX_MEMBERS)
            return st_error(ST_INVALID_ARGUMENT, "--peers: at most %d members", ST_MAX_MEMBERS);
        char *end;
        errno = 0;
        unsigned long id = strtoul(p, &end, 10);
        if (end == p || *end != '=' || errno || id == 0 || id > UINT32_MAX)
            return st_error(ST_INVALID_ARGUMENT,
                            "--peers: expected ID=HOST:PORT with a positive id near \"%.20s\"", p);
        const char *addr = end + 1, *comma = strchr(addr, ',');
        size_t len = comma ? (size_t)(comma - addr) : strlen(addr);
        if (len == 0 || len >= sizeof(out->members[0].addr) || !memchr(addr, ':', len))
            return st_error(ST_INVALID_ARGUMENT, "--peers: member %lu needs an address HOST:PORT",
                            id);
        if (st_cluster_find(out, (uint32_t)id))
            return st_error(ST_INVALID_ARGUMENT, "--peers: member %lu is listed twice", id);
        st_member *m = &out->members[out->n++];
        m->id = (uint32_t)id;
        memcpy(m->addr, addr, len);
        m->addr[len] = '\0';
        p = comma ? comma + 1 : addr + len;
    }
    if (out->n == 0)
        return st_error(ST_INVALID_ARGUMENT, "--peers: no members");
    return ST_OK;
}

const st_member *st_cluster_find(const st_cluster *c, uint32_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->members[i].id == id)
            return &c->members[i];
    return NULL;
}
