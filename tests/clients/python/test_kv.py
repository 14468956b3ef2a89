#!/usr/bin/python3
"""End-to-end test of strata.v1 from a Python grpcio client against a real strata-node.

Stubs are generated from proto/ at test time (python3 -m grpc_tools.protoc) into a temporary
directory; nothing generated is kept. Each test class starts its own strata-node on 127.0.0.1
port 0 (--port-file) with a temporary data directory; ExampleClusterTest starts three, forming a
cluster on free loopback ports picked beforehand (--peers names them).

Environment:
  STRATA_NODE        path to the strata-node binary (required; ctest passes it)
  STRATA_SOURCE_DIR  the repository root (default: two levels above this file's directory)
  ST_TEST_SEED       seed for the randomized test (default: from the clock; printed)
  ST_TEST_TMPDIR     where temporary directories go (default: the system's)
  ST_KEEP_NODE_LOGS  keep the nodes' directories (data and node.log) after the run

Run: STRATA_NODE=build/node/strata-node /usr/bin/python3 tests/clients/python/test_kv.py
Exit status: 0 if every test passed, 1 otherwise (missing tools included).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("STRATA_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "../../.."))
PROTO_DIR = os.path.join(SOURCE_DIR, "proto")
NODE_BIN = os.environ.get("STRATA_NODE", "")

# The node's default limits (strata-node --help), which the tests probe exactly.
MAX_KEY = 8 * 1024
MAX_VALUE = 4 * 1024 * 1024
MAX_MESSAGE = 16 * 1024 * 1024
# Our channels accept any reply size: the 4 MiB value test reads back more than gRPC's default.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
# A node under ASan starts and answers more slowly; these bounds leave room for that.
START_TIMEOUT = 60.0
CALL_TIMEOUT = 60.0


def fail_setup(msg):
    print("test_kv.py: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


try:
    import grpc
    import grpc_tools.protoc  # noqa: F401  (checked here so a missing package fails clearly)
except ImportError as e:
    fail_setup(
        "%s. The Python client test needs Debian's python3-grpcio, python3-grpc-tools and "
        "python3-protobuf (tools/dev test installs them), run with /usr/bin/python3 "
        "(this is %s)." % (e, sys.executable)
    )

TMP_ROOT = os.environ.get("ST_TEST_TMPDIR") or None
if TMP_ROOT:
    os.makedirs(TMP_ROOT, exist_ok=True)


def generate_stubs(out_dir):
    """Generate the Python modules for strata.v1 and grpc.health.v1 into out_dir."""
    protos = ["strata/v1/kv.proto", "strata/v1/admin.proto"]
    for p in protos:
        if not os.path.exists(os.path.join(PROTO_DIR, p)):
            fail_setup("%s not found under %s (set STRATA_SOURCE_DIR)" % (p, PROTO_DIR))
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + PROTO_DIR,
           "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + protos
    subprocess.run(cmd, check=True)
    # grpc/health/v1/health.proto would become the module grpc.health.v1, which the grpc
    # package itself shadows; compiled from its own directory it is the top-level health_pb2
    # (the service is still /grpc.health.v1.Health: the package line decides that).
    health_dir = os.path.join(PROTO_DIR, "grpc/health/v1")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + health_dir,
           "--python_out=" + out_dir, "--grpc_python_out=" + out_dir, "health.proto"]
    subprocess.run(cmd, check=True)


STUB_DIR = tempfile.mkdtemp(prefix="strata-pystubs-", dir=TMP_ROOT)
try:
    generate_stubs(STUB_DIR)
except (OSError, subprocess.CalledProcessError) as e:
    fail_setup("generating stubs with grpc_tools.protoc failed: %s" % e)
sys.path.insert(0, STUB_DIR)

from strata.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402

SC = grpc.StatusCode


class Node:
    """A strata-node child process in its own temporary directory."""

    def __init__(self, tag, extra=(), listen="127.0.0.1:0"):
        self.listen = listen
        self.dir = tempfile.mkdtemp(prefix="strata-py-%s-" % tag, dir=TMP_ROOT)
        self.data_dir = os.path.join(self.dir, "data")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "node.log")
        self.extra = list(extra)
        self.proc = None
        self.addr = None

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        args = [NODE_BIN, "--listen", self.listen, "--port-file", self.port_file,
                "--data-dir", self.data_dir, "--sync", "none"] + self.extra
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("strata-node exited with %d before serving; log:\n%s"
                                     % (self.proc.returncode, self.log()))
            try:
                with open(self.port_file) as f:
                    port = int(f.read().strip() or 0)
                if port > 0:
                    self.addr = "127.0.0.1:%d" % port
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("strata-node wrote no port file in %.0f s; log:\n%s"
                             % (START_TIMEOUT, self.log()))

    def stop(self):
        """SIGTERM and wait; returns the exit status (128+signal if killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return 128 + signal.SIGKILL
        rc = self.proc.returncode
        return 128 - rc if rc < 0 else rc

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        if not os.environ.get("ST_KEEP_NODE_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)


def scan_messages(kv, **kw):
    """All ScanResponse messages of one Scan call."""
    return list(kv.Scan(kv_pb2.ScanRequest(**kw), timeout=CALL_TIMEOUT))


def scan_pairs(kv, **kw):
    """(key, value) pairs of one Scan, and the seq every message carried."""
    msgs = scan_messages(kv, **kw)
    seqs = {m.seq for m in msgs}
    assert len(seqs) == 1, "one scan carried several seqs: %s" % sorted(seqs)
    return [(p.key, p.value) for m in msgs for p in m.pairs], seqs.pop()


def put_op(key, value):
    return kv_pb2.Mutation(put=kv_pb2.Mutation.Put(key=key, value=value))


def del_op(key):
    return kv_pb2.Mutation(delete=kv_pb2.Mutation.Delete(key=key))


class NodeTestCase(unittest.TestCase):
    """One node for the whole class; tests keep to their own key prefixes."""

    node_flags = ()

    @classmethod
    def setUpClass(cls):
        cls.node = Node(cls.__name__.lower(), cls.node_flags)
        cls.node.start()
        cls.channel = grpc.insecure_channel(cls.node.addr, options=CHANNEL_OPTIONS)
        cls.kv = kv_pb2_grpc.KVStub(cls.channel)
        cls.admin = admin_pb2_grpc.AdminStub(cls.channel)
        cls.health = health_pb2_grpc.HealthStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        rc = cls.node.stop()
        log = cls.node.log()
        cls.node.cleanup()
        if rc != 0:
            raise AssertionError("strata-node exited %d after SIGTERM (expected 0); log:\n%s"
                                 % (rc, log[-4000:]))

    def assertCode(self, code, fn, *args, **kw):
        """fn(*args, **kw) must fail with status `code`; returns the RpcError."""
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        self.assertEqual(cm.exception.code(), code,
                         "expected %s, got %s: %s" % (code, cm.exception.code(),
                                                      cm.exception.details()))
        return cm.exception

    def put(self, key, value):
        return self.kv.Put(kv_pb2.PutRequest(key=key, value=value), timeout=CALL_TIMEOUT).seq

    def get(self, key):
        return self.kv.Get(kv_pb2.GetRequest(key=key), timeout=CALL_TIMEOUT).value

    def last_seq(self):
        return self.admin.Status(admin_pb2.StatusRequest(), timeout=CALL_TIMEOUT).applied_seq


class KVTest(NodeTestCase):
    def test_put_get_overwrite(self):
        s1 = self.put(b"pg/a", b"one")
        self.assertGreater(s1, 0)
        r = self.kv.Get(kv_pb2.GetRequest(key=b"pg/a"), timeout=CALL_TIMEOUT)
        self.assertEqual(r.value, b"one")
        self.assertGreaterEqual(r.seq, s1)
        s2 = self.put(b"pg/a", b"two")
        self.assertEqual(s2, s1 + 1)
        self.assertEqual(self.get(b"pg/a"), b"two")
        # An empty value is a value, not an absent key.
        self.put(b"pg/empty", b"")
        r = self.kv.Get(kv_pb2.GetRequest(key=b"pg/empty"), timeout=CALL_TIMEOUT)
        self.assertEqual(r.value, b"")

    def test_sequences_increase_by_one_per_operation(self):
        seqs = [self.put(b"sq/%03d" % i, b"v") for i in range(20)]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 20)))
        d = self.kv.Delete(kv_pb2.DeleteRequest(key=b"sq/000"), timeout=CALL_TIMEOUT).seq
        self.assertEqual(d, seqs[-1] + 1)
        st = self.admin.Status(admin_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
        self.assertGreaterEqual(st.last_seq, d)
        self.assertGreaterEqual(st.applied_seq, d)

    def test_delete(self):
        self.put(b"del/k", b"v")
        s = self.kv.Delete(kv_pb2.DeleteRequest(key=b"del/k"), timeout=CALL_TIMEOUT).seq
        e = self.assertCode(SC.NOT_FOUND, self.kv.Get, kv_pb2.GetRequest(key=b"del/k"),
                            timeout=CALL_TIMEOUT)
        self.assertTrue(e.details(), "NOT_FOUND carries no message")
        # Deleting an absent key is not an error, and still takes a sequence number.
        s2 = self.kv.Delete(kv_pb2.DeleteRequest(key=b"del/never"), timeout=CALL_TIMEOUT).seq
        self.assertEqual(s2, s + 1)
        pairs, _ = scan_pairs(self.kv, start=b"del/", end=b"del0")
        self.assertEqual(pairs, [])

    def test_scan_ranges_limits_reverse(self):
        keys = [b"sc/%02d" % i for i in range(50)]
        for k in keys:
            self.put(k, b"val-" + k)
        pairs, _ = scan_pairs(self.kv, start=b"sc/", end=b"sc0")
        self.assertEqual(pairs, [(k, b"val-" + k) for k in keys])
        # [start, end): start included, end excluded.
        pairs, _ = scan_pairs(self.kv, start=b"sc/10", end=b"sc/20")
        self.assertEqual([k for k, _ in pairs], keys[10:20])
        # A start between keys begins at the next key.
        pairs, _ = scan_pairs(self.kv, start=b"sc/10x", end=b"sc/13")
        self.assertEqual([k for k, _ in pairs], keys[11:13])
        pairs, _ = scan_pairs(self.kv, start=b"sc/", end=b"sc0", limit=7)
        self.assertEqual([k for k, _ in pairs], keys[:7])
        pairs, _ = scan_pairs(self.kv, start=b"sc/", end=b"sc0", reverse=True)
        self.assertEqual([k for k, _ in pairs], keys[::-1])
        pairs, _ = scan_pairs(self.kv, start=b"sc/05", end=b"sc/30", reverse=True, limit=4)
        self.assertEqual([k for k, _ in pairs], [b"sc/29", b"sc/28", b"sc/27", b"sc/26"])
        # A limit larger than the range is the range.
        pairs, _ = scan_pairs(self.kv, start=b"sc/45", end=b"sc0", limit=1000)
        self.assertEqual([k for k, _ in pairs], keys[45:])

    def test_scan_empty_ranges(self):
        self.put(b"em/a", b"1")
        self.put(b"em/c", b"3")
        seq = self.last_seq()
        for start, end in [(b"em/b", b"em/c"), (b"em/c", b"em/c"), (b"em/x", b"em/z"),
                           (b"em/", b"em/a")]:
            msgs = scan_messages(self.kv, start=start, end=end)
            self.assertEqual(len(msgs), 1, "empty scan [%r, %r) sent %d messages"
                             % (start, end, len(msgs)))
            self.assertEqual(len(msgs[0].pairs), 0)
            self.assertGreaterEqual(msgs[0].seq, seq)
            msgs = scan_messages(self.kv, start=start, end=end, reverse=True)
            self.assertEqual([len(m.pairs) for m in msgs], [0])

    def test_binary_keys(self):
        # Keys starting with 0x00 or 0xFF belong to this test alone: the other tests use
        # printable prefixes, so the open-ended scans below see only these.
        low = [b"\x00", b"\x00\x00", b"\x00\x00\x01", b"\x00\x01", b"\x00\xff"]
        high = [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]
        for k in low + high:
            self.put(k, b"v\x00" + k + b"\xff")
        for k in low + high:
            self.assertEqual(self.get(k), b"v\x00" + k + b"\xff")
        # Bytewise order; a proper prefix sorts first.
        pairs, _ = scan_pairs(self.kv, start=b"", end=b"\x01")
        self.assertEqual([k for k, _ in pairs], low)
        pairs, _ = scan_pairs(self.kv, start=b"\xff", end=b"")
        self.assertEqual([k for k, _ in pairs], high)
        pairs, _ = scan_pairs(self.kv, start=b"\xff", end=b"", reverse=True, limit=2)
        self.assertEqual([k for k, _ in pairs], [b"\xff\xff\xff", b"\xff\xff"])
        pairs, _ = scan_pairs(self.kv, start=b"\x00\x00", end=b"\x00\xff")
        self.assertEqual([k for k, _ in pairs], [b"\x00\x00", b"\x00\x00\x01", b"\x00\x01"])
        # A key that differs from another only by a trailing NUL is its own key.
        self.kv.Delete(kv_pb2.DeleteRequest(key=b"\x00\x00"), timeout=CALL_TIMEOUT)
        self.assertEqual(self.get(b"\x00"), b"v\x00\x00\xff")
        self.assertCode(SC.NOT_FOUND, self.get, b"\x00\x00")

    def test_scan_many_pairs_over_several_messages(self):
        n = 2000
        batch = [put_op(b"many/%05d" % i, b"%0100d" % i) for i in range(n)]
        self.kv.Write(kv_pb2.WriteRequest(mutations=batch), timeout=CALL_TIMEOUT)
        msgs = scan_messages(self.kv, start=b"many/", end=b"many0")
        self.assertGreaterEqual(len(msgs), n // 256, "2000 pairs came in %d messages" % len(msgs))
        for m in msgs:
            self.assertGreater(len(m.pairs), 0, "a message of a non-empty scan had no pairs")
            self.assertLessEqual(len(m.pairs), 256)
        self.assertEqual(len({m.seq for m in msgs}), 1)
        got = [(p.key, p.value) for m in msgs for p in m.pairs]
        self.assertEqual(got, [(b"many/%05d" % i, b"%0100d" % i) for i in range(n)])
        rev = [p.key for m in scan_messages(self.kv, start=b"many/", end=b"many0", reverse=True)
               for p in m.pairs]
        self.assertEqual(rev, [b"many/%05d" % i for i in reversed(range(n))])
        # Large values: the ~64 KiB message bound splits the stream, not the pair count.
        big = b"x" * 8000
        self.kv.Write(kv_pb2.WriteRequest(mutations=[put_op(b"big/%03d" % i, big)
                                                     for i in range(100)]),
                      timeout=CALL_TIMEOUT)
        msgs = scan_messages(self.kv, start=b"big/", end=b"big0")
        self.assertGreaterEqual(len(msgs), 100 * 8000 // (64 * 1024 + 8000))
        for m in msgs:
            self.assertLessEqual(m.ByteSize(), 64 * 1024 + 8100 + 64)
        self.assertEqual(sum(len(m.pairs) for m in msgs), 100)

    def test_scan_reads_one_snapshot(self):
        n = 1500
        self.kv.Write(kv_pb2.WriteRequest(mutations=[put_op(b"snap/%05d" % i, b"old")
                                                     for i in range(n)]),
                      timeout=CALL_TIMEOUT)
        it = self.kv.Scan(kv_pb2.ScanRequest(start=b"snap/", end=b"snap0"), timeout=CALL_TIMEOUT)
        first = next(it)
        # Everything written after the scan began must stay invisible to it.
        self.kv.Write(kv_pb2.WriteRequest(mutations=[put_op(b"snap/%05d" % i, b"new")
                                                     for i in range(n)]
                                          + [put_op(b"snap/zzz", b"new")]),
                      timeout=CALL_TIMEOUT)
        rest = list(it)
        pairs = [(p.key, p.value) for m in [first] + rest for p in m.pairs]
        self.assertEqual(pairs, [(b"snap/%05d" % i, b"old") for i in range(n)])
        self.assertEqual({m.seq for m in [first] + rest}, {first.seq})
        pairs, _ = scan_pairs(self.kv, start=b"snap/", end=b"snap0")
        self.assertEqual(len(pairs), n + 1)
        self.assertTrue(all(v == b"new" for _, v in pairs))

    def test_write_batch_sequences_and_order(self):
        before = self.put(b"wb/x", b"0")
        muts = [put_op(b"wb/a", b"1"), put_op(b"wb/b", b"2"), del_op(b"wb/x"),
                put_op(b"wb/c", b"3"), del_op(b"wb/c"), put_op(b"wb/a", b"1b")]
        seq = self.kv.Write(kv_pb2.WriteRequest(mutations=muts), timeout=CALL_TIMEOUT).seq
        # One sequence per operation, consecutive: the response names the last.
        self.assertEqual(seq, before + len(muts))
        # In order: the later op on a key wins.
        pairs, pseq = scan_pairs(self.kv, start=b"wb/", end=b"wb0")
        self.assertEqual(pairs, [(b"wb/a", b"1b"), (b"wb/b", b"2")])
        self.assertGreaterEqual(pseq, seq)
        # An empty batch writes nothing and answers the last applied sequence.
        empty = self.kv.Write(kv_pb2.WriteRequest(), timeout=CALL_TIMEOUT).seq
        self.assertEqual(empty, seq)
        self.assertEqual(self.put(b"wb/after", b"z"), seq + 1)

    def test_write_batch_rejected_whole(self):
        seq = self.last_seq()
        bad_batches = [
            [put_op(b"wr/a", b"1"), put_op(b"", b"empty key")],
            [put_op(b"wr/a", b"1"), del_op(b"")],
            [put_op(b"wr/a", b"1"), put_op(b"k" * (MAX_KEY + 1), b"")],
            [put_op(b"wr/a", b"1"), kv_pb2.Mutation()],  # neither put nor delete
        ]
        for muts in bad_batches:
            self.assertCode(SC.INVALID_ARGUMENT, self.kv.Write,
                            kv_pb2.WriteRequest(mutations=muts), timeout=CALL_TIMEOUT)
        self.assertCode(SC.NOT_FOUND, self.get, b"wr/a")
        self.assertEqual(self.last_seq(), seq, "a rejected batch took sequence numbers")

    def test_write_batches_are_atomic_to_concurrent_readers(self):
        keys = [b"at/%02d" % i for i in range(16)]
        self.kv.Write(kv_pb2.WriteRequest(mutations=[put_op(k, b"0") for k in keys]),
                      timeout=CALL_TIMEOUT)
        stop = threading.Event()
        errors = []
        seen = set()

        def reader():
            ch = grpc.insecure_channel(self.node.addr, options=CHANNEL_OPTIONS)
            kv = kv_pb2_grpc.KVStub(ch)
            try:
                while not stop.is_set():
                    pairs, _ = scan_pairs(kv, start=b"at/", end=b"at0")
                    vals = {v for _, v in pairs}
                    if len(pairs) != len(keys) or len(vals) != 1:
                        errors.append("torn batch seen: %r" % pairs)
                        return
                    seen.add(vals.pop())
            except Exception as e:  # noqa: BLE001 (reported by the main thread)
                errors.append(repr(e))
            finally:
                ch.close()

        t = threading.Thread(target=reader)
        t.start()
        try:
            for gen in range(1, 200):
                v = b"%d" % gen
                self.kv.Write(kv_pb2.WriteRequest(mutations=[put_op(k, v) for k in keys]),
                              timeout=CALL_TIMEOUT)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(len(seen), 0)

    def test_min_seq(self):
        seq = self.put(b"ms/a", b"1")
        r = self.kv.Get(kv_pb2.GetRequest(key=b"ms/a", min_seq=seq), timeout=CALL_TIMEOUT)
        self.assertEqual(r.value, b"1")
        self.assertGreaterEqual(r.seq, seq)
        ahead = self.last_seq() + 1
        # No deadline: answered at once rather than waiting forever.
        e = self.assertCode(SC.FAILED_PRECONDITION, self.kv.Get,
                            kv_pb2.GetRequest(key=b"ms/a", min_seq=ahead + 1000))
        self.assertIn("min_seq", e.details())
        # A deadline: the read waits for it, then DEADLINE_EXCEEDED.
        t0 = time.monotonic()
        self.assertCode(SC.DEADLINE_EXCEEDED, self.kv.Get,
                        kv_pb2.GetRequest(key=b"ms/a", min_seq=ahead + 1000), timeout=0.5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        req = kv_pb2.ScanRequest(start=b"ms/", end=b"ms0", min_seq=ahead + 1000)
        self.assertCode(SC.DEADLINE_EXCEEDED, lambda: list(self.kv.Scan(req, timeout=0.5)))
        # A parked read is answered as soon as a write brings the node to its min_seq.
        results = {}

        def wait_get():
            try:
                results["get"] = self.kv.Get(kv_pb2.GetRequest(key=b"ms/b", min_seq=ahead),
                                             timeout=CALL_TIMEOUT)
            except grpc.RpcError as err:
                results["get"] = err

        def wait_scan():
            try:
                results["scan"] = list(self.kv.Scan(
                    kv_pb2.ScanRequest(start=b"ms/", end=b"ms0", min_seq=ahead),
                    timeout=CALL_TIMEOUT))
            except grpc.RpcError as err:
                results["scan"] = err

        threads = [threading.Thread(target=wait_get), threading.Thread(target=wait_scan)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        self.assertEqual(results, {}, "a read with min_seq ahead of the node did not wait")
        s = self.put(b"ms/b", b"2")
        self.assertEqual(s, ahead)
        for t in threads:
            t.join(CALL_TIMEOUT)
        self.assertIsInstance(results["get"], kv_pb2.GetResponse, str(results["get"]))
        self.assertEqual(results["get"].value, b"2")
        self.assertGreaterEqual(results["get"].seq, ahead)
        self.assertIsInstance(results["scan"], list, str(results["scan"]))
        self.assertEqual([p.key for m in results["scan"] for p in m.pairs], [b"ms/a", b"ms/b"])
        self.assertGreaterEqual(results["scan"][0].seq, ahead)

    def test_status(self):
        seq = self.put(b"st/a", b"1")
        st = self.admin.Status(admin_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
        self.assertEqual(st.role, "standalone")
        self.assertEqual(st.node_id, 1)
        self.assertGreaterEqual(st.last_seq, seq)
        self.assertGreaterEqual(st.applied_seq, seq)
        self.assertLessEqual(st.applied_seq, st.last_seq)
        self.assertLessEqual(st.flushed_seq, st.applied_seq)
        self.assertEqual([lv.level for lv in st.levels], list(range(7)))
        self.assertTrue(st.version, "Status has no version")
        self.assertGreaterEqual(st.writes, 1)
        self.assertGreaterEqual(st.wal_segments, 1)
        self.assertEqual(st.background_error, "")
        # A KV call in progress (a Get parked on min_seq) is counted in active_calls.
        parked = self.kv.Get.future(kv_pb2.GetRequest(key=b"st/a", min_seq=st.last_seq + 1000),
                                    timeout=1)
        time.sleep(0.3)
        st = self.admin.Status(admin_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
        self.assertGreaterEqual(st.active_calls, 1, "a parked Get is not counted")
        self.assertEqual(parked.exception().code(), SC.DEADLINE_EXCEEDED)

    def test_invalid_arguments(self):
        for call, req in [(self.kv.Put, kv_pb2.PutRequest(key=b"", value=b"v")),
                          (self.kv.Get, kv_pb2.GetRequest(key=b"")),
                          (self.kv.Delete, kv_pb2.DeleteRequest(key=b""))]:
            e = self.assertCode(SC.INVALID_ARGUMENT, call, req, timeout=CALL_TIMEOUT)
            self.assertIn("empty", e.details())
        # The limits are exact: at the limit is accepted, one byte over is not.
        self.put(b"k" * MAX_KEY, b"max key")
        self.assertEqual(self.get(b"k" * MAX_KEY), b"max key")
        for call, req in [(self.kv.Put, kv_pb2.PutRequest(key=b"k" * (MAX_KEY + 1))),
                          (self.kv.Get, kv_pb2.GetRequest(key=b"k" * (MAX_KEY + 1))),
                          (self.kv.Delete, kv_pb2.DeleteRequest(key=b"k" * (MAX_KEY + 1)))]:
            e = self.assertCode(SC.INVALID_ARGUMENT, call, req, timeout=CALL_TIMEOUT)
            self.assertIn("max-key-bytes", e.details())
        big = os.urandom(MAX_VALUE)
        self.put(b"inv/maxvalue", big)
        self.assertEqual(self.get(b"inv/maxvalue"), big)
        e = self.assertCode(SC.INVALID_ARGUMENT, self.kv.Put,
                            kv_pb2.PutRequest(key=b"inv/toobig", value=big + b"!"),
                            timeout=CALL_TIMEOUT)
        self.assertIn("max-value-bytes", e.details())
        self.assertCode(SC.INVALID_ARGUMENT, self.kv.Write,
                        kv_pb2.WriteRequest(mutations=[put_op(b"inv/toobig", big + b"!")]),
                        timeout=CALL_TIMEOUT)
        self.assertCode(SC.NOT_FOUND, self.get, b"inv/toobig")
        # Bytes that do not parse as the request message.
        raw = self.channel.unary_unary("/strata.v1.KV/Put")
        self.assertCode(SC.INVALID_ARGUMENT, raw, b"\xff\xff\xff\xff", timeout=CALL_TIMEOUT)

    def test_message_over_limit_is_resource_exhausted(self):
        # Over --max-message-bytes (16 MiB): gRPC itself refuses the message.
        huge = b"\x00" * (MAX_MESSAGE + 1024)
        self.assertCode(SC.RESOURCE_EXHAUSTED, self.kv.Put,
                        kv_pb2.PutRequest(key=b"rx/huge", value=huge), timeout=CALL_TIMEOUT)
        # The node is still there.
        self.put(b"rx/after", b"ok")
        self.assertEqual(self.get(b"rx/after"), b"ok")

    def test_not_found(self):
        e = self.assertCode(SC.NOT_FOUND, self.kv.Get, kv_pb2.GetRequest(key=b"nf/missing"),
                            timeout=CALL_TIMEOUT)
        self.assertIn("not found", e.details())

    def test_deadline_exceeded(self):
        # A deadline already in the past: the client gives up before sending.
        self.assertCode(SC.DEADLINE_EXCEEDED, self.kv.Put,
                        kv_pb2.PutRequest(key=b"dl/past", value=b"1"), timeout=-1)
        # Deadlines of a few microseconds: grpc core rounds them up to a millisecond, so some
        # calls reach the node in time and some do not. Whatever happens, the answer is OK or
        # DEADLINE_EXCEEDED, and a call the node found expired on arrival wrote nothing.
        outcomes = {}
        for i in range(300):
            key = b"dl/%03d" % i
            try:
                self.kv.Put(kv_pb2.PutRequest(key=key, value=b"v"), timeout=[1e-6, 1e-4][i % 2])
                outcomes[key] = "ok"
            except grpc.RpcError as e:
                self.assertEqual(e.code(), SC.DEADLINE_EXCEEDED, e.details())
                arrived_late = "had passed when the call arrived" in (e.details() or "")
                outcomes[key] = "late" if arrived_late else "expired"
        present = {k for k, _ in scan_pairs(self.kv, start=b"dl/", end=b"dl0")[0]}
        for key, what in outcomes.items():
            if what == "ok":
                self.assertIn(key, present, "an acknowledged Put is missing")
            elif what == "late":
                self.assertNotIn(key, present, "a call refused on arrival was applied")
        print("deadline outcomes: %d ok, %d refused on arrival, %d expired elsewhere"
              % tuple(sum(1 for v in outcomes.values() if v == w)
                      for w in ("ok", "late", "expired")), file=sys.stderr)
        # The node is fine afterwards.
        self.put(b"dl/after", b"2")
        self.assertEqual(self.get(b"dl/after"), b"2")

    def test_unimplemented(self):
        for method in ["/strata.v1.KV/NoSuchMethod", "/strata.v9.Nope/Get",
                       "/strata.v1.Admin/Shutdown"]:
            call = self.channel.unary_unary(method)
            self.assertCode(SC.UNIMPLEMENTED, call, b"", timeout=CALL_TIMEOUT)
        stream = self.channel.unary_stream("/strata.v1.KV/ScanAll")
        self.assertCode(SC.UNIMPLEMENTED, lambda: list(stream(b"", timeout=CALL_TIMEOUT)))

    def test_health(self):
        for service in ["", "strata.v1.KV", "strata.v1.Admin"]:
            r = self.health.Check(health_pb2.HealthCheckRequest(service=service),
                                  timeout=CALL_TIMEOUT)
            self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING, service)
        self.assertCode(SC.NOT_FOUND, self.health.Check,
                        health_pb2.HealthCheckRequest(service="no.such.Service"),
                        timeout=CALL_TIMEOUT)
        # Watch: the current status comes at once.
        w = self.health.Watch(health_pb2.HealthCheckRequest(service="strata.v1.KV"),
                              timeout=CALL_TIMEOUT)
        self.assertEqual(next(w).status, health_pb2.HealthCheckResponse.SERVING)
        w.cancel()

    def test_randomized_against_a_model(self):
        seed = int(os.environ.get("ST_TEST_SEED") or (time.time_ns() ^ os.getpid()) % (1 << 63))
        print("python_client randomized: seed=%d (rerun with ST_TEST_SEED=%d)" % (seed, seed),
              file=sys.stderr)
        rng = random.Random(seed)
        prefix = b"rnd/"
        alphabet = [b"\x00", b"\x01", b"a", b"b", b"\xfe", b"\xff"]
        model = {}

        def rkey():
            return prefix + b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))

        def rval():
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))

        last = self.last_seq()
        for _ in range(400):
            op = rng.random()
            if op < 0.5:
                k, v = rkey(), rval()
                last = self.put(k, v)
                model[k] = v
            elif op < 0.7:
                k = rkey()
                last = self.kv.Delete(kv_pb2.DeleteRequest(key=k), timeout=CALL_TIMEOUT).seq
                model.pop(k, None)
            elif op < 0.85:
                muts = []
                for _ in range(rng.randint(0, 8)):
                    k = rkey()
                    if rng.random() < 0.7:
                        v = rval()
                        muts.append(put_op(k, v))
                        model[k] = v
                    else:
                        muts.append(del_op(k))
                        model.pop(k, None)
                s = self.kv.Write(kv_pb2.WriteRequest(mutations=muts), timeout=CALL_TIMEOUT).seq
                self.assertEqual(s, last + len(muts))
                last = s
            else:
                k = rkey()
                if k in model:
                    self.assertEqual(self.get(k), model[k], "seed %d key %r" % (seed, k))
                else:
                    self.assertCode(SC.NOT_FOUND, self.get, k)
        want = sorted(model.items())
        pairs, _ = scan_pairs(self.kv, start=prefix, end=b"rnd0")
        self.assertEqual(pairs, want, "seed %d" % seed)
        pairs, _ = scan_pairs(self.kv, start=prefix, end=b"rnd0", reverse=True)
        self.assertEqual(pairs, want[::-1], "seed %d" % seed)
        for _ in range(20):
            a, b = sorted([rkey(), rkey()])
            lim = rng.randint(0, 5)
            rev = rng.random() < 0.5
            exp = [kv for kv in want if a <= kv[0] < b]
            if rev:
                exp = exp[::-1]
            if lim:
                exp = exp[:lim]
            pairs, _ = scan_pairs(self.kv, start=a, end=b, limit=lim, reverse=rev)
            self.assertEqual(pairs, exp, "seed %d scan [%r, %r) limit %d reverse %s"
                             % (seed, a, b, lim, rev))

    def test_example_client(self):
        example = os.path.join(SOURCE_DIR, "examples/python/strata_client.py")
        stubs = tempfile.mkdtemp(prefix="strata-example-stubs-", dir=TMP_ROOT)
        try:
            env = dict(os.environ, STRATA_STUBS_DIR=stubs)
            out = subprocess.run([sys.executable, example, "--addr", self.node.addr],
                                 env=env, capture_output=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr.decode(errors="replace"))
            text = out.stdout.decode()
            self.assertIn("greeting = hello, strata", text)
            self.assertIn("fruit/apple = red", text)
            self.assertIn("fruit/cherry", text)
            # Its writes are really in the node.
            self.assertEqual(self.get(b"greeting"), b"hello, strata")
        finally:
            shutil.rmtree(stubs, ignore_errors=True)


class RestartTest(unittest.TestCase):
    """Writes survive a clean stop and start on the same data directory."""

    def test_data_survives_restart(self):
        node = Node("restart")
        try:
            node.start()
            with grpc.insecure_channel(node.addr, options=CHANNEL_OPTIONS) as ch:
                kv = kv_pb2_grpc.KVStub(ch)
                seq = 0
                for i in range(100):
                    seq = kv.Put(kv_pb2.PutRequest(key=b"r/%03d" % i, value=b"%d" % i),
                                 timeout=CALL_TIMEOUT).seq
                kv.Delete(kv_pb2.DeleteRequest(key=b"r/050"), timeout=CALL_TIMEOUT)
            rc = node.stop()
            self.assertEqual(rc, 0, "strata-node exited %d after SIGTERM; log:\n%s"
                             % (rc, node.log()[-4000:]))
            node.start()
            with grpc.insecure_channel(node.addr, options=CHANNEL_OPTIONS) as ch:
                kv = kv_pb2_grpc.KVStub(ch)
                pairs, scan_seq = scan_pairs(kv, start=b"r/", end=b"r0")
                self.assertEqual(pairs, [(b"r/%03d" % i, b"%d" % i) for i in range(100)
                                         if i != 50])
                self.assertEqual(scan_seq, seq + 1)
                # Sequences continue where they were.
                s = kv.Put(kv_pb2.PutRequest(key=b"r/new", value=b"x"), timeout=CALL_TIMEOUT)
                self.assertEqual(s.seq, seq + 2)
            rc = node.stop()
            self.assertEqual(rc, 0, "strata-node exited %d after SIGTERM; log:\n%s"
                             % (rc, node.log()[-4000:]))
        finally:
            node.cleanup()


class ExampleClusterTest(unittest.TestCase):
    """examples/python/strata_client.py against a 3-node cluster: sent to a follower, its writes
    go to the leader; started while the leader is dead, it waits out the election."""

    # tests/node/cluster_harness.c's timings: elections take a few hundred milliseconds.
    CLUSTER_FLAGS = ["--heartbeat-ms", "20", "--election-ms", "150", "--workers", "2"]

    def setUp(self):
        self.nodes = []
        self.stubs = tempfile.mkdtemp(prefix="strata-example-stubs-", dir=TMP_ROOT)
        self.addCleanup(shutil.rmtree, self.stubs, True)
        self.addCleanup(self.stop_nodes)
        for attempt in range(5):
            ports = self.free_ports(3)
            peers = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
            self.nodes = [Node("cluster-n%d" % (i + 1),
                               self.CLUSTER_FLAGS + ["--node-id", str(i + 1), "--peers", peers],
                               listen="127.0.0.1:%d" % p) for i, p in enumerate(ports)]
            try:
                for n in self.nodes:
                    n.start()
                return
            except AssertionError as e:
                # Most likely a port taken meanwhile: start over on fresh ones.
                print("cluster start attempt %d failed: %s" % (attempt + 1, str(e)[-2000:]),
                      file=sys.stderr)
                for n in self.nodes:
                    n.cleanup()
        self.fail("a 3-node cluster did not start in 5 attempts")

    def stop_nodes(self):
        """SIGTERM every node still running; each must exit 0 (a killed one is left alone)."""
        bad = []
        for n in self.nodes:
            killed = n.proc is not None and n.proc.poll() is not None
            rc = n.stop()
            if not killed and rc != 0:
                bad.append("%s exited %d after SIGTERM; log:\n%s" % (n.addr, rc, n.log()[-4000:]))
            n.cleanup()
        if bad:
            raise AssertionError("\n".join(bad))

    @staticmethod
    def free_ports(n):
        """n distinct free loopback ports: all bound at once (so they differ), then released."""
        socks = [socket.socket() for _ in range(n)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()

    def status(self, node):
        with grpc.insecure_channel(node.addr) as ch:
            return admin_pb2_grpc.AdminStub(ch).Status(admin_pb2.StatusRequest(), timeout=2)

    def wait_leader(self, timeout=30.0):
        """The node every live member names as leader, once they agree on one."""
        deadline = time.monotonic() + timeout
        live = [n for n in self.nodes if n.proc.poll() is None]
        while time.monotonic() < deadline:
            try:
                st = [self.status(n) for n in live]
            except grpc.RpcError:
                st = []
            leaders = [n for n, s in zip(live, st) if s.role == "leader"]
            if len(leaders) == 1 and all(s.leader_addr == leaders[0].addr for s in st):
                return leaders[0]
            time.sleep(0.05)
        self.fail("no agreed leader among %s in %.0f s" % ([n.addr for n in live], timeout))

    def run_example(self, addrs):
        example = os.path.join(SOURCE_DIR, "examples/python/strata_client.py")
        env = dict(os.environ, STRATA_STUBS_DIR=self.stubs)
        out = subprocess.run([sys.executable, example, "--addr", ",".join(addrs)], env=env,
                             capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, "--addr %s: %s" % (
            ",".join(addrs), out.stderr.decode(errors="replace")))
        text = out.stdout.decode()
        for want in ["greeting = hello, strata", "fruit/apple = red", "fruit/banana = yellow",
                     "fruit/cherry = dark red", "fruit/banana: NOT_FOUND"]:
            self.assertIn(want, text)
        return int(text.split("written at seq ")[1].split(")")[0])

    def assertOnLeader(self, leader, seq):
        """The example's writes, from seq on, are in the leader."""
        with grpc.insecure_channel(leader.addr) as ch:
            kv = kv_pb2_grpc.KVStub(ch)
            got = kv.Get(kv_pb2.GetRequest(key=b"greeting"), timeout=CALL_TIMEOUT)
            self.assertEqual(got.value, b"hello, strata")
            pairs, _ = scan_pairs(kv, start=b"fruit/", end=b"fruit0")
            self.assertEqual(pairs, [(b"fruit/apple", b"red"), (b"fruit/cherry", b"dark red")])
        # Put, Get, Write of 4, Delete: the leader holds at least seq + 4 + 1.
        self.assertGreaterEqual(self.status(leader).commit_seq, seq + 5)

    def test_example_follows_the_leader(self):
        leader = self.wait_leader()
        followers = [n for n in self.nodes if n is not leader]
        # Only a follower's address: the example can reach the leader only through the hint.
        seq = self.run_example([followers[0].addr])
        self.assertOnLeader(leader, seq)
        # The leader is killed: the first address is dead, the others elect a new leader while
        # the example runs (its first write most likely lands in the election).
        leader.proc.kill()
        leader.proc.wait()
        seq2 = self.run_example([leader.addr] + [n.addr for n in followers])
        self.assertGreater(seq2, seq)
        new_leader = self.wait_leader()
        self.assertIn(new_leader, followers)
        self.assertOnLeader(new_leader, seq2)


def main():
    if not NODE_BIN or not os.access(NODE_BIN, os.X_OK):
        fail_setup("STRATA_NODE must name the strata-node binary (got %r); ctest sets it, by "
                   "hand: STRATA_NODE=build/node/strata-node %s" % (NODE_BIN, sys.argv[0]))
    try:
        prog = unittest.main(exit=False, verbosity=2)
    finally:
        shutil.rmtree(STUB_DIR, ignore_errors=True)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    # The plain closing line CI reads.
    print("%d passed, %d failed" % (r.testsRun - failed - len(r.skipped), failed))
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
