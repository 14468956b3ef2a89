#!/bin/sh
# strata-demo-load - the compose file's `client` service (profile "demo"): a small, bounded load
# against the cluster through the `strata` CLI, then a read-back from every node.
#
#   strata-demo-load [COUNT]        COUNT writes (default $STRATA_DEMO_COUNT or 1000)
#
# Writes go to any node of STRATA_ADDRS (a follower redirects the CLI to the leader), keys
# demo-000000 ... with values v<i>-<run>; a write that fails is retried on the next round
# (at most 3 rounds, 1 s apart, while a leader is elected). Then every node of STRATA_NODES
# is asked for every key and its status, and the script exits 0 only if each node returned
# every acknowledged value.
#
# Environment: STRATA_ADDRS (default strata1:7400,strata2:7400,strata3:7400), STRATA_NODES
# (space-separated, default the same three).
count=${1:-${STRATA_DEMO_COUNT:-1000}}
addrs=${STRATA_ADDRS:-strata1:7400,strata2:7400,strata3:7400}
nodes=${STRATA_NODES:-strata1:7400 strata2:7400 strata3:7400}
run=$(date +%s)

case "$count" in
'' | *[!0-9]*)
    echo "strata-demo-load: COUNT must be a number" >&2
    exit 2
    ;;
esac

key() { printf 'demo-%06d' "$1"; }

acked=0
failed=0
i=0
while [ "$i" -lt "$count" ]; do
    k=$(key "$i")
    ok=false
    for _ in 1 2 3; do
        if strata --addr "$addrs" --timeout 5000 put "$k" "v$i-$run" >/dev/null; then
            ok=true
            break
        fi
        sleep 1
    done
    if $ok; then acked=$((acked + 1)); else failed=$((failed + 1)); fi
    i=$((i + 1))
    [ $((i % 100)) -eq 0 ] && echo "strata-demo-load: $i/$count written ($failed failed)"
done
echo "strata-demo-load: $acked writes acknowledged, $failed failed"

bad=0
for n in $nodes; do
    # Followers apply a committed write shortly after the leader; give them a moment.
    missing=0
    for _ in 1 2 3 4 5; do
        missing=0
        got=$(strata --addr "$n" --timeout 5000 scan demo- demo. | grep -c "	v[0-9]*-$run\$")
        [ "$got" -ge "$acked" ] && break
        missing=$((acked - got))
        sleep 1
    done
    echo "strata-demo-load: $n has $((acked - missing))/$acked of this run's values"
    [ "$missing" -eq 0 ] || bad=1
    strata --addr "$n" --timeout 5000 status | sed -n 's/^\(role\|term\|leader\|commit_seq\|applied_seq\): /  \1: /p'
done
[ "$bad" -eq 0 ] && [ "$failed" -eq 0 ]
