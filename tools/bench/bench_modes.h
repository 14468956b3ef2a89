/*
 * bench_modes.h - the modes of `strata-bench <mode> [flags]`, one file each.
 *
 * Each entry point gets the arguments after the program name (argv[0] is the mode's name) and
 * returns the process exit status: 0 on success, 1 when a run failed, 2 for bad flags.
 */
#ifndef STRATA_TOOLS_BENCH_MODES_H
#define STRATA_TOOLS_BENCH_MODES_H

/* bench_engine.c: the storage engine in-process, optionally side by side with LevelDB. */
int st_bench_engine_main(int argc, char **argv);

/* bench_rpc.c (when present; CMake defines STRATA_BENCH_HAVE_RPC): a node over gRPC. */
int st_bench_rpc_main(int argc, char **argv);

/* bench_floor.c (with rpc): a gRPC server answering Put and Get with no storage behind it. */
int st_bench_floor_main(int argc, char **argv);

#endif
