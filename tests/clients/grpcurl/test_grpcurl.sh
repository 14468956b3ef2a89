#!/usr/bin/env bash
# test_grpcurl.sh - grpcurl against a real strata-node (ctest grpcurl): server reflection is all
# it has (no .proto files are given to it), so this checks what a generic tool sees: list,
# describe, and Put/Get/Delete/Write/Scan/Status/Health with JSON bodies (bytes are base64).
#
#   tests/clients/grpcurl/test_grpcurl.sh STRATA_NODE WORK_DIR
#
# grpcurl is built from the version pinned in tests/clients/go/go.mod (a `tool` line) through
# the Go module proxy into WORK_DIR/bin. Tools that are missing fail the test.
set -euo pipefail

fail() {
    echo "grpcurl: FAILED: $*" >&2
    exit 1
}

[ $# -eq 2 ] || fail "usage: $0 STRATA_NODE WORK_DIR"
node=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
gomod=$(cd "$here/../go" && pwd)

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || fail "go not found (on PATH or in /usr/local/go/bin)"
py=/usr/bin/python3
[ -x $py ] || fail "$py not found (used to read grpcurl's JSON)"
[ -x "$node" ] || fail "strata-node binary $node is missing (build the strata-node target)"
if [ -z "${HOME:-}" ] && [ -z "${GOCACHE:-}" ]; then
    export GOCACHE=$work/gocache GOPATH=$work/gopath
fi
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

mkdir -p "$work/bin"
work=$(cd "$work" && pwd)
echo "== building grpcurl (pinned in tests/clients/go/go.mod)"
version=$(cd "$gomod" && go list -m -f '{{.Version}}' github.com/fullstorydev/grpcurl) ||
    fail "tests/clients/go/go.mod does not pin github.com/fullstorydev/grpcurl"
(cd "$gomod" && go build -ldflags "-X main.version=$version" -o "$work/bin/grpcurl" \
    github.com/fullstorydev/grpcurl/cmd/grpcurl) ||
    fail "could not build grpcurl through the Go module proxy"
grpcurl=$work/bin/grpcurl
"$grpcurl" -version

# A node on port 0 in a fresh directory, stopped (and checked) at exit.
dir=$(mktemp -d "${ST_TEST_TMPDIR:-${TMPDIR:-/tmp}}/strata-grpcurl-XXXXXX")
node_pid=
cleanup() {
    if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
        kill -KILL "$node_pid" 2>/dev/null || true
    fi
    [ -n "${ST_KEEP_NODE_LOGS:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
"$node" --listen 127.0.0.1:0 --port-file "$dir/port" --data-dir "$dir/data" --sync none \
    2>"$dir/node.log" &
node_pid=$!
for _ in $(seq 1 3000); do
    [ -s "$dir/port" ] && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$dir/node.log" >&2; fail "strata-node exited"; }
    sleep 0.02
done
[ -s "$dir/port" ] || fail "strata-node wrote no port file in 60 s"
addr=127.0.0.1:$(cat "$dir/port")
echo "== strata-node on $addr"

passed=0
failed=0
ok() {
    echo "ok: $1"
    passed=$((passed + 1))
}
bad() {
    echo "FAIL: $1" >&2
    failed=$((failed + 1))
}
b64() { printf '%b' "$1" | base64 -w0; }

# run NAME ARGS...: grpcurl with a 60 s deadline; output in $out, exit status in $rc.
run() {
    local name=$1
    shift
    rc=0
    out=$("$grpcurl" -plaintext -max-time 60 "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" >"$dir/$name.out"
}

# expect NAME PYTHON-EXPR: evaluate EXPR with `docs` = the JSON documents grpcurl printed
# (one per response message) and `out` = its raw output; true passes.
expect() {
    local name=$1 expr=$2
    if [ "$rc" != 0 ]; then
        bad "$name: grpcurl exited $rc: $out"
        return
    fi
    if OUT="$out" $py -c '
import json, os, sys
out = os.environ["OUT"]
dec, docs, i = json.JSONDecoder(), [], 0
while True:
    while i < len(out) and out[i].isspace():
        i += 1
    if i >= len(out):
        break
    d, i = dec.raw_decode(out, i)
    docs.append(d)
sys.exit(0 if eval(sys.argv[1]) else 1)
' "$expr" 2>"$dir/expect.err"; then
        ok "$name"
    else
        bad "$name: [$expr] does not hold for: $out $(cat "$dir/expect.err")"
    fi
}

# expect_text NAME WORD...: grpcurl succeeded and printed every WORD (fixed strings).
expect_text() {
    local name=$1
    shift
    if [ "$rc" != 0 ]; then
        bad "$name: grpcurl exited $rc: $out"
        return
    fi
    for w in "$@"; do
        if ! grep -qF -- "$w" <<<"$out"; then
            bad "$name: output lacks '$w': $out"
            return
        fi
    done
    ok "$name"
}

# expect_code NAME CODE: grpcurl failed with gRPC status CODE (its exit status is 64 + code).
expect_code() {
    local name=$1 code=$2 num=$3
    if [ "$rc" = $((64 + num)) ] && grep -qF "Code: $code" <<<"$out"; then
        ok "$name"
    else
        bad "$name: want $code (exit $((64 + num))), got exit $rc: $out"
    fi
}

run list "$addr" list
expect_text "list services" strata.v1.KV strata.v1.Admin grpc.health.v1.Health \
    grpc.reflection.v1.ServerReflection
run list_kv "$addr" list strata.v1.KV
expect_text "list strata.v1.KV" strata.v1.KV.Put strata.v1.KV.Get strata.v1.KV.Delete \
    strata.v1.KV.Write strata.v1.KV.Scan
run describe_kv "$addr" describe strata.v1.KV
expect_text "describe strata.v1.KV" "strata.v1.KV is a service:" "Set key to value." \
    "rpc Put ( .strata.v1.PutRequest ) returns ( .strata.v1.PutResponse );" \
    "rpc Scan ( .strata.v1.ScanRequest ) returns ( stream .strata.v1.ScanResponse );"
run describe_put "$addr" describe strata.v1.PutRequest
expect_text "describe strata.v1.PutRequest" "strata.v1.PutRequest is a message:" \
    "bytes key = 1;" "bytes value = 2;" ".strata.v1.AckLevel ack = 3;"
run describe_mutation "$addr" describe strata.v1.Mutation
expect_text "describe strata.v1.Mutation" "oneof op {" ".strata.v1.Mutation.Put put = 1;"

key=$(b64 'hello')
val=$(b64 'world\x00\xff')
run put -d "{\"key\":\"$key\",\"value\":\"$val\"}" "$addr" strata.v1.KV/Put
expect "Put" "int(docs[0]['seq']) >= 1"
put_seq=$($py -c 'import json, sys; print(json.loads(sys.argv[1])["seq"])' "$out" 2>/dev/null ||
    echo 0)
run get -d "{\"key\":\"$key\",\"min_seq\":\"$put_seq\"}" "$addr" strata.v1.KV/Get
expect "Get" "docs[0]['value'] == '$val' and int(docs[0]['seq']) >= $put_seq"

# A batch in JSON: a oneof is the field that is set. Binary keys go through base64 unharmed.
k0=$(b64 '\x00') k1=$(b64 '\x00\x01') k2=$(b64 '\xff') k3=$(b64 'x')
run write -d "{\"mutations\":[{\"put\":{\"key\":\"$k0\",\"value\":\"$(b64 zero)\"}},
  {\"put\":{\"key\":\"$k1\",\"value\":\"$(b64 one)\"}},{\"put\":{\"key\":\"$k2\",\"value\":\"\"}},
  {\"put\":{\"key\":\"$k3\",\"value\":\"$(b64 x)\"}},{\"delete\":{\"key\":\"$k3\"}}]}" \
    "$addr" strata.v1.KV/Write
expect "Write batch of 5" "int(docs[0]['seq']) == $put_seq + 5"

run scan -d "{}" "$addr" strata.v1.KV/Scan
expect "Scan everything" "[p['key'] for d in docs for p in d.get('pairs', [])] == \
['$k0', '$k1', '$key', '$k2'] and len({d['seq'] for d in docs}) == 1"
run scan_rev -d "{\"start\":\"$k1\",\"limit\":\"2\",\"reverse\":true}" "$addr" strata.v1.KV/Scan
expect "Scan reverse with a limit" \
    "[p['key'] for d in docs for p in d.get('pairs', [])] == ['$k2', '$key']"
run scan_empty -d "{\"start\":\"$(b64 a)\",\"end\":\"$(b64 b)\"}" "$addr" strata.v1.KV/Scan
expect "Scan of an empty range" "len(docs) == 1 and not docs[0].get('pairs')"

run delete -d "{\"key\":\"$key\"}" "$addr" strata.v1.KV/Delete
expect "Delete" "int(docs[0]['seq']) == $put_seq + 6"
run get_missing -d "{\"key\":\"$key\"}" "$addr" strata.v1.KV/Get
expect_code "Get of a deleted key" NotFound 5
run get_never -d "{\"key\":\"$(b64 'never')\"}" "$addr" strata.v1.KV/Get
expect_code "Get of a missing key" NotFound 5
run put_empty -d '{"value":"eA=="}' "$addr" strata.v1.KV/Put
expect_code "Put with an empty key" InvalidArgument 3
run unknown -d '{}' "$addr" strata.v1.KV/NoSuchMethod
if [ "$rc" != 0 ] && grep -qiE "NoSuchMethod|not find|unimplemented" <<<"$out"; then
    ok "unknown method refused"
else
    bad "unknown method: exit $rc: $out"
fi

run status -d '{}' "$addr" strata.v1.Admin/Status
expect "Admin Status" "docs[0]['role'] == 'standalone' and int(docs[0]['appliedSeq']) >= \
$put_seq + 6 and len(docs[0]['levels']) == 7"
run health -d '{"service":"strata.v1.KV"}' "$addr" grpc.health.v1.Health/Check
expect "Health Check" "docs[0]['status'] == 'SERVING'"

# The node stops cleanly after all that.
kill -TERM "$node_pid"
node_rc=0
wait "$node_pid" || node_rc=$?
node_pid=
if [ "$node_rc" = 0 ]; then
    ok "strata-node exits 0 on SIGTERM"
else
    bad "strata-node exited $node_rc on SIGTERM; log: $(tail -20 "$dir/node.log")"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
