#!/usr/bin/env python3
"""Smoke test of `strata-bench rpc`: usage: check_rpc_json.py STRATA_BENCH STRATA_NODE [ETCD]

Runs put, get (with the load and restart before it), scan and write for about a second each
against a strata-node the benchmark starts itself, with --json, and checks the object's shape and
that its numbers are sane: calls were made and checked, no errors, percentiles in order, CPU
accounted. With ETCD (an etcd binary that exists), one short get --compare etcd too. Then
`strata-bench floor` (a server with nothing behind it) must serve a put and a get run and stop
on SIGTERM, and bad flags of both modes must exit with status 2.
"""
import json
import os
import signal
import subprocess
import sys


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(binary, node, args, expect_sides):
    argv = [binary, "rpc", "--node", node, "--duration", "0.7", "--warmup", "0.2",
            "--keys", "2000", "--inflight", "8", "--json"] + args
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        fail("%r: exit status %d" % (args, p.returncode))
    d = json.loads(p.stdout)
    if d.get("ok") is not True or d["mode"] != "rpc":
        fail("%r: ok/mode %r %r" % (args, d.get("ok"), d.get("mode")))
    op = d["config"]["op"]
    names = [s["name"] for s in d["systems"]]
    if names != expect_sides:
        fail("%r: systems %r" % (args, names))
    for s in d["systems"]:
        if not s["started_here"]:
            fail("%s: not started by the benchmark" % s["name"])
        sync = args[args.index("--sync") + 1] if "--sync" in args else "always"
        if s["name"] == "strata" and "--sync " + sync not in s["command"]:
            fail("strata: not started with --sync %s: %r" % (sync, s["command"]))
        if d["config"]["strata_sync"] != sync:
            fail("config.strata_sync %r, want %r" % (d["config"]["strata_sync"], sync))
        if op in ("get", "scan") and s["load"]["calls"] != 2000:
            fail("%s: loaded %r keys, want 2000" % (s["name"], s["load"]["calls"]))
        for r in s["runs"]:
            if not r["ok"] or r["errors"] != 0 or r["error"] is not None:
                fail("%s %s: run not ok: %r" % (s["name"], op, r))
            if not r["calls"] > 0 or not r["qps"] > 0:
                fail("%s %s: no calls %r" % (s["name"], op, r))
            per_call = 1000 if op == "write" else 1
            if r["items"] != r["calls"] * per_call:
                fail("%s %s: items %r for %r calls" % (s["name"], op, r["items"], r["calls"]))
            if abs(r["qps"] * r["seconds"] - r["calls"]) > 1:
                fail("%s %s: qps %r over %r s for %r calls" % (s["name"], op, r["qps"],
                                                               r["seconds"], r["calls"]))
            if not 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]:
                fail("%s %s: percentiles out of order %r" % (s["name"], op, r))
            # every call here goes over TCP: no answer comes back in under 10 us
            if not r["p50_us"] > 10:
                fail("%s %s: p50 %r us is not plausible" % (s["name"], op, r["p50_us"]))
            for k in ("cpu_client_cores", "cpu_server_cores"):
                if r[k] is None or not 0 <= r[k] <= os.cpu_count() + 0.5:
                    fail("%s %s: %s %r" % (s["name"], op, k, r[k]))
        if s["median"]["qps"] != s["runs"][0]["qps"] and len(s["runs"]) == 1:
            fail("%s: median of one run differs from the run" % s["name"])
    if len(expect_sides) == 2:
        ratio = d["ratio"]["qps"]
        a, b = d["systems"][0]["median"]["qps"], d["systems"][1]["median"]["qps"]
        if abs(ratio - a / b) > 1e-6 * ratio:
            fail("ratio %r is not %r / %r" % (ratio, a, b))
        if len(d["ratio"]["qps_per_round"]) != d["config"]["repeat"]:
            fail("qps_per_round %r" % d["ratio"]["qps_per_round"])
        if [t["name"] for t in d["targets"]] != ["QPS strata/etcd", "p99 strata/etcd"]:
            fail("targets %r" % d["targets"])
    if op == "write" and [t["name"] for t in d["targets"]] != ["write keys/s"]:
        fail("write targets %r" % d["targets"])
    return d


def check_floor(binary):
    """The floor server answers what the load generator checks, counts its puts, stops on TERM."""
    srv = subprocess.Popen([binary, "floor"], stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().split()
        if line[:2] != ["listening", "on"]:
            fail("floor: first line %r" % line)
        addr = line[2]
        calls = 0
        for op in ("put", "get"):
            argv = [binary, "rpc", "--addr", addr, "--op", op, "--duration", "0.5",
                    "--warmup", "0.1", "--inflight", "8", "--json"]
            if op == "get":
                argv.append("--no-load")
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60)
            sys.stderr.write(p.stderr)
            if p.returncode != 0:
                fail("floor %s: exit status %d" % (op, p.returncode))
            r = json.loads(p.stdout)["systems"][0]["runs"][0]
            if not r["ok"] or r["errors"] != 0 or not r["calls"] > 0:
                fail("floor %s: run not ok: %r" % (op, r))
            if op == "put":
                calls = r["calls"]
        srv.send_signal(signal.SIGTERM)
        out, _ = srv.communicate(timeout=30)
        if srv.returncode != 0:
            fail("floor: exit status %d after SIGTERM" % srv.returncode)
        served = int(out.split()[1]) if out.startswith("served ") else -1
        if served < calls:
            fail("floor: says %r, but the put run counted %d calls" % (out, calls))
    finally:
        if srv.poll() is None:
            srv.kill()
    for bad in (["--threads", "0"], ["--value-size", "2M"], ["stray"]):
        p = subprocess.run([binary, "floor"] + bad, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if p.returncode != 2:
            fail("floor %r: exit status %d, want 2" % (bad, p.returncode))


def main():
    binary, node = sys.argv[1], sys.argv[2]
    etcd = sys.argv[3] if len(sys.argv) > 3 else ""
    for op in ("put", "get", "scan"):
        run(binary, node, ["--op", op], ["strata"])
    run(binary, node, ["--op", "write", "--batch", "1000", "--inflight", "2"], ["strata"])
    run(binary, node, ["--op", "put", "--sync", "none"], ["strata"])
    if etcd and os.access(etcd, os.X_OK):
        run(binary, node, ["--op", "get", "--compare", "etcd", "--etcd", etcd, "--repeat", "2"],
            ["strata", "etcd"])
    else:
        print("etcd not installed: the --compare etcd check was not run")
    check_floor(binary)

    for bad in (["--op", "delete"], ["--connections", "0"], ["--cluster", "2"],
                ["--compare", "redis"], ["--op", "write", "--compare", "etcd"],
                ["--duration", "x"], ["--sync", "maybe"], ["stray"]):
        p = subprocess.run([binary, "rpc"] + bad, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30)
        if p.returncode != 2:
            fail("%r: exit status %d, want 2" % (bad, p.returncode))
    print("ok")


if __name__ == "__main__":
    main()
