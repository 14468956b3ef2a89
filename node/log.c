/* log.c - one line per event on stderr. */
#include "node/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static st_log_level min_level = ST_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void st_log_set_level(st_log_level min)
{
    min_level = min;
}

void st_log(st_log_level level, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[4096];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line: concurrent threads' lines stay whole (stderr is unbuffered). */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

const char *st_log_quote(char *buf, size_t n, const char *s)
{
    size_t o = 0;
    if (n < 8) {
        buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t len;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            len = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2);
            len = 2;
        } else if (*p < 0x20 || *p >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            len = 4;
        } else {
            esc[0] = (char)*p;
            len = 1;
        }
        /* Room for this, plus `..."` and the NUL should we have to stop after it. */
        if (o + len + 5 > n) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, len);
        o += len;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
