/*
 * filename.h - the names of the files in a database directory.
 *
 *   <db>/CURRENT            name of the live MANIFEST, then "\n"
 *   <db>/LOCK               held (flock) by the process that has the database open
 *   <db>/MANIFEST-NNNNNN    version edits (engine/FORMAT.md, "MANIFEST")
 *   <db>/wal/NNNNNN.log     WAL segments
 *   <db>/sst/NNNNNN.dat     table data blocks
 *   <db>/sst/NNNNNN.idx     table sparse index
 *   <db>/sst/NNNNNN.meta    table key range, counts, Bloom filter
 *   *.tmp                   files being written; removed on open
 *
 * NNNNNN is a file number in decimal, at least six digits. One counter numbers every file.
 */
#ifndef STRATA_ENGINE_FILENAME_H
#define STRATA_ENGINE_FILENAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum st_file_type {
    ST_FILE_UNKNOWN,
    ST_FILE_WAL,      /* NNNNNN.log */
    ST_FILE_DAT,      /* NNNNNN.dat */
    ST_FILE_IDX,      /* NNNNNN.idx */
    ST_FILE_META,     /* NNNNNN.meta */
    ST_FILE_MANIFEST, /* MANIFEST-NNNNNN */
    ST_FILE_CURRENT,
    ST_FILE_LOCK,
    ST_FILE_TEMP, /* anything ending in .tmp */
} st_file_type;

/* Longest path these functions produce, beyond the length of the directory. */
#define ST_NAME_EXTRA 48

/*
 * Write "<dir>/<NNNNNN><ext>" (ext such as ".dat") into buf of size cap; return buf.
 * Paths that do not fit are truncated; callers size buf as strlen(dir) + ST_NAME_EXTRA.
 */
char *st_numbered_path(char *buf, size_t cap, const char *dir, uint64_t number, const char *ext);

/* Classify a file name (no directory part) and parse its number (0 where it has none). */
st_file_type st_parse_filename(const char *name, uint64_t *number);

#endif
