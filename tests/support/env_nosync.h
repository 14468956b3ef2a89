/*
 * env_nosync.h - the POSIX env with fdatasync and directory syncs turned into no-ops.
 *
 * For tests that exercise logic rather than durability (the model test, iterator tests): a
 * flush or compaction then costs page-cache writes only. A killed process loses nothing with it
 * (the kernel keeps what was written); only a power loss would, and tests of power loss use the
 * fault-injecting env, which can wrap this one because it tracks syncs itself.
 */
#ifndef STRATA_TESTS_ENV_NOSYNC_H
#define STRATA_TESTS_ENV_NOSYNC_H

#include "engine/env.h"

/* Process-wide; never freed. */
st_env *st_env_nosync(void);

#endif
