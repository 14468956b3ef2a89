/* dbformat.c - lookup keys. */
#include "engine/dbformat.h"

#include <stdlib.h>

bool st_lookup_key_init(st_lookup_key *lk, st_slice user_key, uint64_t seq)
{
    size_t need = user_key.len + ST_TAG_BYTES;
    lk->data = need <= sizeof(lk->space) ? lk->space : malloc(need);
    if (!lk->data)
        return false;
    lk->len = need;
    st_encode_ikey(lk->data, user_key, seq, ST_KIND_SEEK);
    return true;
}

void st_lookup_key_free(st_lookup_key *lk)
{
    if (lk->data != lk->space)
        free(lk->data);
    lk->data = NULL;
}
