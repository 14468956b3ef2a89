/* status.c - status names and the per-thread error message. */
#include "engine/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Long enough for two paths and a sentence; longer messages are truncated, never overflowed. */
#define MSG_CAP 512

static _Thread_local char last_msg[MSG_CAP];

static const char *const names[ST_STATUS_COUNT] = {
    [ST_OK] = "OK",
    [ST_NOT_FOUND] = "NOT_FOUND",
    [ST_CORRUPTION] = "CORRUPTION",
    [ST_IO_ERROR] = "IO_ERROR",
    [ST_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [ST_NO_SPACE] = "NO_SPACE",
    [ST_BUSY] = "BUSY",
    [ST_NOT_SUPPORTED] = "NOT_SUPPORTED",
    [ST_NO_MEMORY] = "NO_MEMORY",
    [ST_SHUTDOWN] = "SHUTDOWN",
    [ST_TIMEOUT] = "TIMEOUT",
    [ST_NOT_LEADER] = "NOT_LEADER",
};

const char *st_status_name(st_status s)
{
    if ((unsigned)s >= ST_STATUS_COUNT)
        return "UNKNOWN";
    return names[s];
}

st_status st_error(st_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    return code;
}

st_status st_errno_error(int err, const char *fmt, ...)
{
    st_status code;
    switch (err) {
    case ENOENT:
        code = ST_NOT_FOUND;
        break;
    case ENOSPC:
    case EDQUOT:
        code = ST_NO_SPACE;
        break;
    case ENOMEM:
        code = ST_NO_MEMORY;
        break;
    case EWOULDBLOCK:
        code = ST_BUSY;
        break;
    default:
        code = ST_IO_ERROR;
        break;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof(last_msg))
        snprintf(last_msg + n, sizeof(last_msg) - (size_t)n, ": %s", strerror(err));
    return code;
}

const char *st_errmsg(void)
{
    return last_msg;
}

void st_clear_error(void)
{
    last_msg[0] = '\0';
}
