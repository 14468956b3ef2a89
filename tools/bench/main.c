/*
 * main.c - strata-bench: `strata-bench <mode> [flags]`; each mode lives in its own file.
 */
#include <stdio.h>
#include <string.h>

#include "tools/bench/bench_modes.h"

typedef struct mode {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} mode;

static const mode modes[] = {
    {"engine", st_bench_engine_main,
     "the storage engine in-process, one thread (db_bench-like); --compare leveldb"},
#ifdef STRATA_BENCH_HAVE_RPC
    {"rpc", st_bench_rpc_main, "a strata node over gRPC"},
    {"floor", st_bench_floor_main,
     "a gRPC server that answers Put and Get with nothing behind them (the stack's ceiling)"},
#endif
};

static void usage(FILE *out)
{
    fprintf(out, "usage: strata-bench <mode> [flags]   (strata-bench <mode> --help for flags)\n\n"
                 "modes:\n");
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        fprintf(out, "  %-8s %s\n", modes[i].name, modes[i].what);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(argv[1], modes[i].name) == 0)
            return modes[i].run(argc - 1, argv + 1);
    fprintf(stderr, "strata-bench: unknown mode \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
