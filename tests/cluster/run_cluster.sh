#!/usr/bin/env bash
# run_cluster.sh - the cluster test suite (ctest label "cluster"): real strata-node processes
# started, killed, paused, partitioned and restarted by a Go harness (tests/cluster/harness).
#
#   tests/cluster/run_cluster.sh build WORK_DIR
#       build the protoc plugins pinned in go.mod, generate the strata.v1 stubs from proto/ into
#       a copy of this module under WORK_DIR, go vet, run the harness's own unit tests, and build
#       WORK_DIR/cluster.test and WORK_DIR/failover-bench (ctest cluster_build).
#   tests/cluster/run_cluster.sh test WORK_DIR TEST_NAME [go test flags...]
#       run one test of WORK_DIR/cluster.test (ctest cluster_<name>).
#   tests/cluster/run_cluster.sh bench WORK_DIR [failover-bench flags...]
#       run the failover measurement (not a test; see cmd/failover-bench).
#
# Environment: STRATA_NODE (the strata-node binary; required for test and bench),
# ST_TEST_TMPDIR, ST_TEST_SEED, ST_CLUSTER_SCALE (a multiplier for the tests' counts: CMake sets
# it below 1 for sanitizer builds), ST_KEEP_NODE_LOGS (keep every node's directory and log).
# Modules come through the Go module proxy into the default GOPATH/GOCACHE (or WORK_DIR when
# there is no HOME). Tools that are missing fail the build step; nothing is skipped.
set -euo pipefail

fail() {
    echo "cluster: FAILED: $*" >&2
    exit 1
}

[ $# -ge 2 ] || fail "usage: $0 build|test|bench WORK_DIR [...]"
mode=$1
work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
fi
if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ]; then
    export GOCACHE=$work/gocache GOPATH=$work/gopath
fi
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ -n "${ST_TEST_TMPDIR:-}" ]; then
    mkdir -p "$ST_TEST_TMPDIR"
    export ST_TEST_TMPDIR=$(cd "$ST_TEST_TMPDIR" && pwd)
fi

case "$mode" in
build)
    command -v go >/dev/null 2>&1 || fail "go not found (on PATH or in /usr/local/go/bin)"
    command -v protoc >/dev/null 2>&1 ||
        fail "protoc not found (Debian's protobuf-compiler; tools/dev installs it)"
    mod=$work/mod
    bin=$work/bin
    rm -rf "$mod" "$work/cluster.test" "$work/failover-bench"
    mkdir -p "$mod" "$bin"
    (cd "$here" && tar --exclude=./gen -cf - go.mod go.sum ./*.go harness cmd) |
        (cd "$mod" && tar -xf -)
    echo "== go $(go env GOVERSION): building protoc-gen-go and protoc-gen-go-grpc"
    (cd "$mod" && go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go \
        google.golang.org/grpc/cmd/protoc-gen-go-grpc) || fail "building the protoc plugins"
    echo "== generating stubs from $root/proto"
    files=(strata/v1/kv.proto strata/v1/admin.proto strata/v1/replication.proto)
    opts=()
    for f in "${files[@]}"; do
        opts+=("--go_opt=M$f=stratacluster/gen/strata/v1;stratav1"
            "--go-grpc_opt=M$f=stratacluster/gen/strata/v1;stratav1")
    done
    protoc -I "$root/proto" --plugin=protoc-gen-go="$bin/protoc-gen-go" \
        --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
        --go_out="$mod" --go_opt=module=stratacluster \
        --go-grpc_out="$mod" --go-grpc_opt=module=stratacluster \
        "${opts[@]}" "${files[@]}" || fail "protoc"
    cd "$mod"
    echo "== go vet"
    go vet ./... || fail "go vet"
    echo "== the harness's own tests (no strata-node needed)"
    go test -count=1 -timeout 120s ./harness/ || fail "harness unit tests"
    echo "== building cluster.test and failover-bench"
    go test -c -o "$work/cluster.test" . || fail "building the cluster tests"
    go build -o "$work/failover-bench" ./cmd/failover-bench || fail "building failover-bench"
    echo "cluster_build: ok"
    ;;
test)
    [ $# -ge 1 ] || fail "usage: $0 test WORK_DIR TEST_NAME [go test flags...]"
    name=$1
    shift
    [ -x "$work/cluster.test" ] || fail "$work/cluster.test is missing (run ctest -R cluster_build)"
    [ -n "${STRATA_NODE:-}" ] && [ -x "$STRATA_NODE" ] ||
        fail "STRATA_NODE must name the strata-node binary (got '${STRATA_NODE:-}')"
    cd "$work"
    set +e
    "$work/cluster.test" -test.run "^${name}\$" -test.v -test.count=1 "$@" 2>&1 |
        tee "$work/$name.out"
    rc=${PIPESTATUS[0]}
    set -e
    # A name that matches no test would pass silently: make sure it ran.
    grep -q "^=== RUN   ${name}\$" "$work/$name.out" || fail "no test named $name ran"
    exit "$rc"
    ;;
bench)
    [ -x "$work/failover-bench" ] || fail "$work/failover-bench is missing (build it first)"
    exec "$work/failover-bench" "$@"
    ;;
*)
    fail "unknown mode $mode (build, test or bench)"
    ;;
esac
