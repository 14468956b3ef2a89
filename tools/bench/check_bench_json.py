#!/usr/bin/env python3
"""Smoke test of `strata-bench engine`: usage: check_bench_json.py STRATA_BENCH [--compare leveldb]

Runs a small benchmark with --json and checks the object's shape and that its numbers are sane;
then checks that bad flags exit with status 2 and that the text report names its definitions.
"""
import json
import math
import subprocess
import sys

REPEAT = 2


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main():
    binary, extra = sys.argv[1], sys.argv[2:]
    # 10 MB of values: more than two memtables, so flushes and compactions get going.
    args = [binary, "engine", "--num", "10000", "--value-size", "1000", "--repeat", str(REPEAT),
            "--json"] + extra
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        fail("exit status %d" % p.returncode)
    d = json.loads(p.stdout)
    if d.get("ok") is not True or d["mode"] != "engine":
        fail("ok/mode: %r %r" % (d.get("ok"), d.get("mode")))
    names = [w["name"] for w in d["workloads"]]
    if names != ["fillseq", "fillrandom", "overwrite", "readrandom", "scan100"]:
        fail("workloads %r" % names)
    engines = ["strata"] + (["leveldb"] if extra else [])
    for w in d["workloads"]:
        if sorted(w["engines"]) != sorted(engines):
            fail("%s: engines %r" % (w["name"], list(w["engines"])))
        for e in engines:
            r = w["engines"][e]
            m = r["median"]
            if r["ok_runs"] != REPEAT or len(r["runs"]) != REPEAT:
                fail("%s/%s: %d ok runs" % (w["name"], e, r["ok_runs"]))
            if not m["ops_per_sec"] > 0 or not m["mb_per_sec"] > 0:
                fail("%s/%s: throughput %r" % (w["name"], e, m["ops_per_sec"]))
            if not 0 < m["p50_us"] <= m["p99_us"] <= m["p999_us"] <= m["max_us"]:
                fail("%s/%s: percentiles out of order %r" % (w["name"], e, m))
            if not m["peak_rss_mb"] > 1:
                fail("%s/%s: peak RSS %r" % (w["name"], e, m["peak_rss_mb"]))
            if w["name"].startswith("fill") or w["name"] == "overwrite":
                # the WAL alone carries every key and value once
                if not m["write_amp"] >= 1.0:
                    fail("%s/%s: write_amp %r" % (w["name"], e, m["write_amp"]))
            elif m["write_amp"] is not None:
                fail("%s/%s: write_amp on a read workload" % (w["name"], e))
            if e == "strata" and w["name"] in ("fillseq", "fillrandom"):
                # flushes run in the background and may end after the timed loop: not checked
                if not m["wal_mb"] > 9.7:
                    fail("%s/strata: accounting %r" % (w["name"], m))
        if extra:
            ratio = w["ratio"]["ops_per_sec"]
            want = w["engines"]["strata"]["median"]["ops_per_sec"] / \
                w["engines"]["leveldb"]["median"]["ops_per_sec"]
            if not math.isclose(ratio, want, rel_tol=1e-6):
                fail("%s: ratio %r, want %r" % (w["name"], ratio, want))
            if len(w["ops_ratio_per_round"]) != REPEAT:
                fail("%s: per-round ratios" % w["name"])
    if extra and [t["name"] for t in d["targets"]] != ["fillrandom", "readrandom", "scan100",
                                                       "peak_rss"]:
        fail("targets %r" % d["targets"])

    p = subprocess.run([binary, "engine", "--benchmarks", "fillseq,bogus"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 2 or "bogus" not in p.stderr:
        fail("unknown benchmark: status %d, stderr %r" % (p.returncode, p.stderr))
    p = subprocess.run([binary, "engine", "--num", "1000", "--key-size", "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 2:
        fail("--key-size too small for --num: status %d" % p.returncode)

    p = subprocess.run([binary, "engine", "--num", "3000", "--benchmarks", "readrandom,scan100"]
                       + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        fail("readrandom alone: status %d: %s" % (p.returncode, p.stderr))
    if "preparing with fillrandom" not in p.stderr or "write_amp =" not in p.stdout:
        fail("text report:\n" + p.stdout + p.stderr)
    print("ok")


main()
