#!/usr/bin/env bash
# Regenerate stratapb/ (the Go code for proto/strata/v1/kv.proto) with the protoc plugins pinned
# in this module's go.mod. Needs protoc (Debian's protobuf-compiler) and Go.
#
#   examples/go/generate.sh [OUT_DIR]     (default: examples/go/stratapb)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out=${1:-$here/stratapb}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=${GOFLAGS:--buildvcs=false}

plugins=$(mktemp -d)
trap 'rm -rf "$plugins"' EXIT
(cd "$here" && go build -o "$plugins/" google.golang.org/protobuf/cmd/protoc-gen-go \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc)

files=(strata/v1/kv.proto)
# The .proto files name no Go package; these options place them in stratapb.
opts=()
for f in "${files[@]}"; do
    opts+=("--go_opt=M$f=stratademo/stratapb" "--go-grpc_opt=M$f=stratademo/stratapb")
done
mkdir -p "$out"
protoc -I "$proto" --plugin=protoc-gen-go="$plugins/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$plugins/protoc-gen-go-grpc" \
    --go_out="$out" --go_opt=paths=source_relative \
    --go-grpc_out="$out" --go-grpc_opt=paths=source_relative "${opts[@]}" "${files[@]}"
# paths=source_relative wrote strata/v1/*.go; the package is the directory itself.
mv "$out"/strata/v1/*.go "$out"/
rm -rf "$out/strata"
