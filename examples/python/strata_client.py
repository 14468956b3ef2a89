#!/usr/bin/python3
"""A small strata client in Python: put, get, an atomic batch, a scan and a delete.

    tools/dev run                                   # a node on 127.0.0.1:7400
    /usr/bin/python3 examples/python/strata_client.py --addr 127.0.0.1:7400

In a cluster, give any or all of its nodes (--addr 127.0.0.1:7401,127.0.0.1:7402,...): every
call goes through Client.call, which follows the leader and rides out an election.

Needs Debian's python3-grpcio and python3-grpc-tools. The first run generates the Python
modules for proto/strata/v1/*.proto into examples/python/_stubs/ (or $STRATA_STUBS_DIR).
"""

import argparse
import os
import subprocess
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "proto")
STUBS = os.environ.get("STRATA_STUBS_DIR") or os.path.join(HERE, "_stubs")


def load_stubs():
    """Import the generated modules, generating them first if they are missing or stale."""
    protos = ["strata/v1/kv.proto", "strata/v1/admin.proto"]
    marker = os.path.join(STUBS, "strata", "v1", "kv_pb2_grpc.py")
    newest = max(os.path.getmtime(os.path.join(PROTO_DIR, p)) for p in protos)
    if not os.path.exists(marker) or os.path.getmtime(marker) < newest:
        os.makedirs(STUBS, exist_ok=True)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + PROTO_DIR,
                        "--python_out=" + STUBS, "--grpc_python_out=" + STUBS] + protos,
                       check=True)
    sys.path.insert(0, STUBS)
    from strata.v1 import kv_pb2, kv_pb2_grpc

    return kv_pb2, kv_pb2_grpc


SC = grpc.StatusCode


class Client:
    """A KV stub that follows the leader across the nodes of a cluster (or talks to one node).

    call(fn) runs fn(stub), retrying at most ATTEMPTS times, then raises the last error:
      - FAILED_PRECONDITION naming the leader (trailing metadata "strata-leader"): this node
        does not lead; connect to the leader and retry at once.
      - UNAVAILABLE (node down or shutting down, leadership lost), DEADLINE_EXCEEDED on a read,
        or FAILED_PRECONDITION naming no leader on a write (an election is under way): wait a
        little and try the next address.
    Other errors (NOT_FOUND, INVALID_ARGUMENT, ...) are raised at once.
    """

    ATTEMPTS = 10
    RETRY_READ = (SC.UNAVAILABLE, SC.DEADLINE_EXCEEDED)
    RETRY_WRITE = (SC.UNAVAILABLE, SC.FAILED_PRECONDITION)

    def __init__(self, addrs, pb_grpc):
        self.addrs, self.next = addrs, 0
        self.pb_grpc, self.channel = pb_grpc, None
        self.connect(addrs[0])

    def connect(self, addr):
        if self.channel:
            self.channel.close()
        self.channel = grpc.insecure_channel(addr)
        self.stub = self.pb_grpc.KVStub(self.channel)

    def call(self, fn, read=False):
        for attempt in range(self.ATTEMPTS):
            try:
                return fn(self.stub)
            except grpc.RpcError as e:
                if attempt == self.ATTEMPTS - 1:
                    raise
                leader = dict(e.trailing_metadata() or ()).get("strata-leader")
                if e.code() == SC.FAILED_PRECONDITION and leader:
                    self.connect(leader)
                elif e.code() in (self.RETRY_READ if read else self.RETRY_WRITE):
                    # 50 ms, doubling up to 0.5 s: about 3 s of waiting in all.
                    time.sleep(min(0.05 * 2 ** attempt, 0.5))
                    self.next = (self.next + 1) % len(self.addrs)
                    self.connect(self.addrs[self.next])
                else:
                    raise

    def close(self):
        self.channel.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:7400",
                        help="strata-node addresses, comma-separated (any node of a cluster)")
    args = parser.parse_args()
    pb, pb_grpc = load_stubs()

    kv = Client(args.addr.split(","), pb_grpc)
    try:
        # Keys and values are bytes. Every write is given a sequence number. A Put or Delete
        # retried after UNAVAILABLE may have been applied twice; that leaves the same result.
        put = kv.call(lambda s: s.Put(pb.PutRequest(key=b"greeting", value=b"hello, strata"),
                                      timeout=5))
        got = kv.call(lambda s: s.Get(pb.GetRequest(key=b"greeting", min_seq=put.seq),
                                      timeout=5), read=True)
        print("greeting = %s   (written at seq %d)" % (got.value.decode(), put.seq))

        # A batch is atomic: a reader sees all of it or none of it. Retried after UNAVAILABLE
        # (the old leader may have committed it after all), it may be applied twice: harmless
        # for puts and deletes like these, but a batch must not rely on being applied once.
        batch = pb.WriteRequest(mutations=[
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/apple", value=b"red")),
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/banana", value=b"yellow")),
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/cherry", value=b"dark red")),
            pb.Mutation(delete=pb.Mutation.Delete(key=b"fruit/durian")),
        ])
        done = kv.call(lambda s: s.Write(batch, timeout=5))
        print("batch of 4 written, last seq %d" % done.seq)

        # Scan [start, end) streams the pairs from one snapshot, in key order. list() reads the
        # whole stream inside call(), so that a retry starts it over. min_seq makes any node
        # that answers wait until it has applied the batch.
        scan = pb.ScanRequest(start=b"fruit/", end=b"fruit0", min_seq=done.seq)
        for msg in kv.call(lambda s: list(s.Scan(scan, timeout=5)), read=True):
            for pair in msg.pairs:
                print("%s = %s" % (pair.key.decode(), pair.value.decode()))

        # A missing key is the status NOT_FOUND, not an empty value.
        gone = kv.call(lambda s: s.Delete(pb.DeleteRequest(key=b"fruit/banana"), timeout=5))
        try:
            kv.call(lambda s: s.Get(pb.GetRequest(key=b"fruit/banana", min_seq=gone.seq),
                                    timeout=5), read=True)
        except grpc.RpcError as e:
            print("fruit/banana: %s (%s)" % (e.code().name, e.details()))
    finally:
        kv.close()


if __name__ == "__main__":
    main()
