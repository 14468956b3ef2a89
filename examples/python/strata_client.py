#!/usr/bin/python3
"""A small strata client in Python: put, get, an atomic batch, a scan and a delete.

    tools/dev run                                   # a node on 127.0.0.1:7400
    /usr/bin/python3 examples/python/strata_client.py --addr 127.0.0.1:7400

Needs Debian's python3-grpcio and python3-grpc-tools. The first run generates the Python
modules for proto/strata/v1/*.proto into examples/python/_stubs/ (or $STRATA_STUBS_DIR).
"""

import argparse
import os
import subprocess
import sys

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:7400", help="a strata-node address")
    args = parser.parse_args()
    pb, pb_grpc = load_stubs()

    with grpc.insecure_channel(args.addr) as channel:
        kv = pb_grpc.KVStub(channel)

        # Keys and values are bytes. Every write is given a sequence number.
        put = kv.Put(pb.PutRequest(key=b"greeting", value=b"hello, strata"), timeout=5)
        got = kv.Get(pb.GetRequest(key=b"greeting", min_seq=put.seq), timeout=5)
        print("greeting = %s   (written at seq %d)" % (got.value.decode(), put.seq))

        # A batch is atomic: a reader sees all of it or none of it.
        batch = pb.WriteRequest(mutations=[
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/apple", value=b"red")),
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/banana", value=b"yellow")),
            pb.Mutation(put=pb.Mutation.Put(key=b"fruit/cherry", value=b"dark red")),
            pb.Mutation(delete=pb.Mutation.Delete(key=b"fruit/durian")),
        ])
        print("batch of 4 written, last seq %d" % kv.Write(batch, timeout=5).seq)

        # Scan [start, end) streams the pairs from one snapshot, in key order.
        for msg in kv.Scan(pb.ScanRequest(start=b"fruit/", end=b"fruit0"), timeout=5):
            for pair in msg.pairs:
                print("%s = %s" % (pair.key.decode(), pair.value.decode()))

        # A missing key is the status NOT_FOUND, not an empty value.
        kv.Delete(pb.DeleteRequest(key=b"fruit/banana"), timeout=5)
        try:
            kv.Get(pb.GetRequest(key=b"fruit/banana"), timeout=5)
        except grpc.RpcError as e:
            print("fruit/banana: %s (%s)" % (e.code().name, e.details()))


if __name__ == "__main__":
    main()
