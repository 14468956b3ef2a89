/* env_nosync.c - POSIX without syncs. */
#include "tests/support/env_nosync.h"

#include <pthread.h>

static st_env nosync_env;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static st_status no_sync(st_file *f)
{
    (void)f;
    return ST_OK;
}

static st_status no_sync_dir(st_env *env, const char *path)
{
    (void)env;
    (void)path;
    return ST_OK;
}

static void init(void)
{
    nosync_env = *st_env_posix();
    nosync_env.sync = no_sync;
    nosync_env.sync_dir = no_sync_dir;
}

st_env *st_env_nosync(void)
{
    pthread_once(&once, init);
    return &nosync_env;
}
