/* filename.c - naming and recognising database files. */
#include "engine/filename.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

char *st_numbered_path(char *buf, size_t cap, const char *dir, uint64_t number, const char *ext)
{
    snprintf(buf, cap, "%s/%06" PRIu64 "%s", dir, number, ext);
    return buf;
}

static bool parse_number(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static bool has_suffix(const char *name, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len > sl && memcmp(name + len - sl, suffix, sl) == 0;
}

st_file_type st_parse_filename(const char *name, uint64_t *number)
{
    static const struct {
        const char *ext;
        st_file_type type;
    } numbered[] = {
        {".log", ST_FILE_WAL},
        {".dat", ST_FILE_DAT},
        {".idx", ST_FILE_IDX},
        {".meta", ST_FILE_META},
    };
    size_t len = strlen(name);
    *number = 0;
    if (strcmp(name, "CURRENT") == 0)
        return ST_FILE_CURRENT;
    if (strcmp(name, "LOCK") == 0)
        return ST_FILE_LOCK;
    if (has_suffix(name, len, ".tmp"))
        return ST_FILE_TEMP;
    if (strncmp(name, "MANIFEST-", 9) == 0)
        return parse_number(name + 9, len - 9, number) ? ST_FILE_MANIFEST : ST_FILE_UNKNOWN;
    for (size_t i = 0; i < sizeof(numbered) / sizeof(numbered[0]); i++) {
        size_t el = strlen(numbered[i].ext);
        if (has_suffix(name, len, numbered[i].ext) && parse_number(name, len - el, number))
            return numbered[i].type;
    }
    return ST_FILE_UNKNOWN;
}
