/*
 * log.h - strata-node's event log: one line per event on stderr.
 *
 * Line format (grep- and awk-friendly, one write(2) per line so lines from several threads
 * never interleave):
 *
 *     2025-01-31T12:00:00.123Z INFO listening addr=127.0.0.1:7400
 *     <UTC time, ms>           <level> <event> <key=value pairs>
 *
 * Values that may hold spaces, quotes or bytes outside printable ASCII are quoted with
 * st_log_quote. Thread-safe; usable before and after gRPC is initialised.
 */
#ifndef STRATA_NODE_LOG_H
#define STRATA_NODE_LOG_H

#include <stddef.h>

typedef enum st_log_level {
    ST_LOG_DEBUG,
    ST_LOG_INFO,
    ST_LOG_WARN,
    ST_LOG_ERROR,
} st_log_level;

/* Lines below `min` are dropped (default ST_LOG_INFO). Call before starting threads. */
void st_log_set_level(st_log_level min);

/*
 * Write one line: time, level, `event` (one word), then `fmt` formatted printf-style (the
 * key=value pairs, may be NULL). Lines longer than 4 KiB are cut.
 */
void st_log(st_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Write `s` into buf (size n > 0) as a double-quoted value: `"`, `\` and bytes outside
 * printable ASCII become C escapes; cut (ending in `..."`) if it does not fit. Returns buf.
 */
const char *st_log_quote(char *buf, size_t n, const char *s);

#endif
