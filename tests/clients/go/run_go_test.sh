#!/usr/bin/env bash
# run_go_test.sh - the Go client test (ctest go_client): build the protoc plugins pinned in this
# module's go.mod, generate the strata.v1 stubs from proto/, run `go test` against a real
# strata-node, and check that examples/go builds, runs and carries up-to-date stubs.
#
#   tests/clients/go/run_go_test.sh STRATA_NODE WORK_DIR [go test flags...]
#
# WORK_DIR (in the build tree) receives a copy of this module with gen/ beside it, and the
# built plugins; the source tree is left untouched. Module downloads go through the Go module
# proxy into the default GOPATH/GOCACHE (shared by every build directory, so only the first
# run on a machine downloads and compiles grpc). Tools that are missing fail the test.
set -euo pipefail

fail() {
    echo "go_client: FAILED: $*" >&2
    exit 1
}

[ $# -ge 2 ] || fail "usage: $0 STRATA_NODE WORK_DIR [go test flags...]"
node=$1
work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

# Go lives in /usr/local/go on these machines and may not be on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || fail "go not found (on PATH or in /usr/local/go/bin)"
command -v protoc >/dev/null 2>&1 ||
    fail "protoc not found (Debian's protobuf-compiler; tools/dev installs it)"
[ -x "$node" ] || fail "strata-node binary $node is missing (build the strata-node target)"
node=$(cd "$(dirname "$node")" && pwd)/$(basename "$node")
if [ -n "${ST_TEST_TMPDIR:-}" ]; then
    mkdir -p "$ST_TEST_TMPDIR"
    ST_TEST_TMPDIR=$(cd "$ST_TEST_TMPDIR" && pwd)
fi
# The go toolchain needs a home for its caches; without one, keep them in the build tree.
if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ]; then
    export GOCACHE=$work/gocache GOPATH=$work/gopath
fi
# Never fetch another toolchain; no VCS stamping of the binaries.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

mkdir -p "$work"
work=$(cd "$work" && pwd)
mod=$work/mod
bin=$work/bin
rm -rf "$mod"
mkdir -p "$mod/gen" "$bin"
cp "$here/go.mod" "$here/go.sum" "$here"/*_test.go "$mod/"

echo "== go $(go env GOVERSION): building protoc-gen-go and protoc-gen-go-grpc"
(cd "$mod" && go build -o "$bin/" google.golang.org/protobuf/cmd/protoc-gen-go \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc) || fail "building the protoc plugins"

echo "== generating stubs from $root/proto"
files=(strata/v1/kv.proto strata/v1/admin.proto)
opts=()
for f in "${files[@]}"; do
    opts+=("--go_opt=M$f=stratatest/gen/strata/v1;stratav1"
        "--go-grpc_opt=M$f=stratatest/gen/strata/v1;stratav1")
done
protoc -I "$root/proto" --plugin=protoc-gen-go="$bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --go_out="$mod" --go_opt=module=stratatest \
    --go-grpc_out="$mod" --go-grpc_opt=module=stratatest \
    "${opts[@]}" "${files[@]}" || fail "protoc"

echo "== examples/go: stubs up to date, and it builds"
fresh=$work/example-stubs
rm -rf "$fresh"
"$root/examples/go/generate.sh" "$fresh" || fail "examples/go/generate.sh"
# The code must match the committed copy; comments may differ (a comment-only change in proto/
# needs no regeneration, though generate.sh brings them along too).
strip() { grep -v -E '^[[:space:]]*//' "$1"; }
for f in "$fresh"/*.go; do
    committed=$root/examples/go/stratapb/$(basename "$f")
    [ -f "$committed" ] ||
        fail "examples/go/stratapb lacks $(basename "$f"): run examples/go/generate.sh"
    if ! diff -u <(strip "$committed") <(strip "$f") >"$work/example-stubs.diff"; then
        cat "$work/example-stubs.diff" >&2
        fail "examples/go/stratapb is stale against proto/: run examples/go/generate.sh"
    fi
done
for f in "$root"/examples/go/stratapb/*; do
    [ -f "$fresh/$(basename "$f")" ] ||
        fail "examples/go/stratapb/$(basename "$f") is no longer generated from proto/"
done
(cd "$root/examples/go" && go build -o "$bin/strata-example-go" .) || fail "building examples/go"

# go test runs its own subset of go vet on the test package first.
echo "== go test"
cd "$mod"
export STRATA_NODE=$node STRATA_SOURCE_DIR=$root STRATA_EXAMPLE_BIN=$bin/strata-example-go
go test -count=1 -timeout 400s "$@" ./...
