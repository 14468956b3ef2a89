#!/usr/bin/env bash
# test_compose.sh - ctest docker_cluster: the Docker image and the compose cluster, for real.
#
#   tests/docker/test_compose.sh [STRATA_CLI]
#
# With a Docker engine (`docker info` answers):
#   1. image: debian:12 and debian:12-slim come from tools/docker/make-base-image.sh when they
#      are missing and cannot be pulled (`tests/docker/cluster.sh base-images`: debootstrap,
#      cached: skipped once they exist; STRATA_DOCKER_PULL=0 does not try to pull), then `docker build` of the repository's Dockerfile as
#      $STRATA_IMAGE (default strata:ctest; the image it replaces is removed). It runs as user
#      strata, declares the volume /var/lib/strata and a HEALTHCHECK.
#   2. single node (`docker run`, port published on 127.0.0.1): the health check goes healthy,
#      it runs as uid 10001, put/get through the published port, `docker restart` (SIGTERM,
#      clean stop) keeps every value.
#   3. cluster (docker-compose.yml under a unique project name, own free ports): all three
#      healthy, every port published on 127.0.0.1 only, a leader; writes through the leader
#      (following it when it changes) are read back from every node; `docker kill` of the
#      leader's container; the survivors agree on a new leader in a later term; more writes;
#      no acknowledged write is lost; `docker start` of the old leader; all three nodes converge
#      to the same contents (scan of every key, byte-identical). leader, kill and start go
#      through tests/docker/cluster.sh as a command, the interface the failover demo uses.
#   Containers, networks and volumes are removed at exit, on failure too (trap).
# Without an engine it says why it did not run and exits 0. Every wait has a time limit, and the
# whole test one: STRATA_DOCKER_TEST_S (default 1200 s).
#
# Time (2-core machine shared with other work, fuse-overlayfs): about 7 min with no image at
# all (debootstrap 2-3 min, image build 3-4 min, containers 1 min); 1-4 min with the base
# images made (the in-Docker compile is redone whenever a source changed); about 1 min when
# nothing changed.
#
# STRATA_CLI (the argument, or the environment) is a host `strata` binary; without one the CLI
# inside the containers is used (docker exec). STRATA_KEEP=1 leaves everything running.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] && export STRATA_CLI=$1
export STRATA_CLI=${STRATA_CLI:-}
image=${STRATA_IMAGE:-strata:ctest}
t0=$SECONDS
passed=0

say() { echo "docker_cluster: [$((SECONDS - t0))s] $*"; }

# The whole test is bounded by STRATA_DOCKER_TEST_S (default 1200 s; ctest's TIMEOUT is above it,
# so that the test fails and cleans up by itself rather than being killed). Making the images
# may use what is left but 420 s, kept for the containers, whose every wait has its own limit;
# between steps, a test past its deadline fails.
deadline=$((SECONDS + ${STRATA_DOCKER_TEST_S:-1200}))
image_budget() {
    local left=$((deadline - 420 - SECONDS))
    [ "$left" -lt 1 ] && left=1
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
in_time() {
    [ $SECONDS -le $deadline ] ||
        fail "over the time limit (STRATA_DOCKER_TEST_S) before: $*"
}
ok() {
    passed=$((passed + 1))
    say "ok - $*"
}
skip() {
    echo "docker_cluster: did not run: $*"
    echo "docker_cluster: 0 passed, 0 failed, 1 skipped"
    exit 0
}

command -v docker >/dev/null 2>&1 || skip "no docker command on PATH"
timeout 30 docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
if [ -n "$STRATA_CLI" ] && [ ! -x "$STRATA_CLI" ]; then
    echo "docker_cluster: FAILED: STRATA_CLI=$STRATA_CLI is not an executable" >&2
    exit 1
fi

# shellcheck source=tests/docker/cluster.sh
source "$here/cluster.sh"

tmp_root=${ST_TEST_TMPDIR:-${TMPDIR:-/tmp}}
mkdir -p "$tmp_root"
work=$(mktemp -d "$tmp_root/strata-docker-XXXXXX")
run_id="$$$RANDOM"
export STRATA_PROJECT="stratatest$run_id"
export STRATA_IMAGE=$image
single=$STRATA_PROJECT-single
single_vol=$STRATA_PROJECT-single-data
cluster_started=false

cleanup() {
    local rc=$?
    if [ "${STRATA_KEEP:-}" = 1 ]; then
        say "STRATA_KEEP=1: leaving project $STRATA_PROJECT and container $single running"
        return
    fi
    if $cluster_started; then
        STRATA_COMPOSE_TIMEOUT=120 cluster_down >/dev/null 2>&1 ||
            say "warning: compose down -v failed for $STRATA_PROJECT"
    fi
    timeout 60 docker rm -f "$single" >/dev/null 2>&1 || true
    timeout 60 docker volume rm "$single_vol" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

diagnose() {
    if $cluster_started; then
        echo "--- cluster state" >&2
        "$here/cluster.sh" status >&2 2>&1 || true
        echo "--- compose logs (last 40 lines per node)" >&2
        STRATA_COMPOSE_TIMEOUT=30 cluster_compose logs --no-color --tail 40 >&2 2>&1 || true
    fi
    if docker inspect "$single" >/dev/null 2>&1; then
        echo "--- single-node container log" >&2
        timeout 30 docker logs --tail 40 "$single" >&2 2>&1 || true
    fi
}

fail() {
    echo "docker_cluster: FAILED after $((SECONDS - t0))s: $*" >&2
    diagnose
    echo "docker_cluster: $passed passed, 1 failed"
    exit 1
}

# Free TCP ports on 127.0.0.1 (bound and closed again; ports are not reused at once).
pick_ports() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    else
        local i out=()
        for ((i = 0; i < $1; i++)); do out+=($((20000 + (RANDOM * 7 + i * 131) % 30000))); done
        echo "${out[*]}"
    fi
}

# --- 1. the image -----------------------------------------------------------------------------
if ! docker image inspect debian:12 >/dev/null 2>&1 ||
    ! docker image inspect debian:12-slim >/dev/null 2>&1; then
    say "base images: pulling or making them (tools/docker/make-base-image.sh; minutes, once)"
    timeout "$(image_budget 600)" "$here/cluster.sh" base-images >"$work/base.log" 2>&1 || {
        tail -20 "$work/base.log" >&2
        fail "could not pull or make debian:12 and debian:12-slim (log above)"
    }
    say "base images ready ($(tail -n 1 "$work/base.log"))"
fi
# The classic builder where BuildKit's client (buildx) is absent: both build the Dockerfile.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
say "docker build -t $image $repo"
old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
build_t0=$SECONDS
timeout "$(image_budget 900)" docker build --force-rm -t "$image" "$repo" >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log" >&2
    fail "docker build failed or timed out (last lines above)"
}
# The image this build replaced is untagged now: remove it (and the layers only it used), so
# that runs do not pile images up. The build stage's layers stay as the cache of the next build.
new_id=$(docker image inspect -f '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    timeout 60 docker image rm "$old_id" >/dev/null 2>&1 || true
fi
ok "image $image built in $((SECONDS - build_t0))s ($(grep -c 'Using cache' "$work/build.log") steps cached)"

[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = strata ] ||
    fail "the image does not run as user strata"
# (Output is captured before grep reads it: with pipefail, `cmd | grep -q` fails whenever grep
# exits at its first match while cmd still writes, and cmd dies of SIGPIPE.)
grep -q '/var/lib/strata' <<<"$(docker image inspect -f '{{json .Config.Volumes}}' "$image")" ||
    fail "the image declares no volume /var/lib/strata"
grep -q strata-healthcheck <<<"$(docker image inspect -f '{{json .Config.Healthcheck}}' "$image")" ||
    fail "the image has no HEALTHCHECK"
ok "image: user strata, volume /var/lib/strata, health check"

# --- 2. one node ------------------------------------------------------------------------------
in_time "the single node"
read -r sport p1 p2 p3 <<<"$(pick_ports 4)"
[ -n "$p3" ] || fail "could not pick free ports"

single_cli() {
    if [ -n "$STRATA_CLI" ]; then
        timeout 60 "$STRATA_CLI" --addr "127.0.0.1:$sport" --timeout 5000 "$@"
    else
        timeout 60 docker exec -i "$single" strata --addr 127.0.0.1:7400 --timeout 5000 "$@"
    fi
}

wait_single_healthy() {
    local deadline=$((SECONDS + $1)) h
    while :; do
        h=$(docker inspect -f '{{if .State.Running}}{{.State.Health.Status}}{{else}}exited{{end}}' \
            "$single" 2>/dev/null)
        [ "$h" = healthy ] && return 0
        [ "$h" = exited ] && return 1
        [ $SECONDS -ge $deadline ] && return 1
        sleep 1
    done
}

# Every port the container publishes is bound to 127.0.0.1 and to nothing else.
loopback_only() {
    local out
    out=$(timeout 30 docker port "$1") || return 1
    [ -n "$out" ] || return 1
    [ -z "$(grep -v -- '-> 127\.0\.0\.1:[0-9][0-9]*$' <<<"$out")" ]
}

timeout 60 docker run -d --name "$single" -p "127.0.0.1:$sport:7400" \
    -v "$single_vol:/var/lib/strata" "$image" --sync always >/dev/null ||
    fail "docker run of $image failed"
wait_single_healthy 60 || fail "the single node did not become healthy within 60 s"
ok "single node healthy (published on 127.0.0.1:$sport)"

[ "$(timeout 30 docker exec "$single" id -u)" = 10001 ] ||
    fail "strata-node does not run as uid 10001"
ok "single node runs as uid 10001"

for i in $(seq 1 20); do
    single_cli put "single-$i" "value $i of $run_id" >/dev/null ||
        fail "put single-$i through the published port failed"
done
check_single() {
    local i v
    for i in $(seq 1 20); do
        v=$(single_cli get "single-$i") || fail "get single-$i failed ($1)"
        [ "$v" = "value $i of $run_id" ] || fail "single-$i is '$v' ($1)"
    done
}
check_single "before restart"
ok "put/get of 20 keys through the published port"

timeout 60 docker restart -t 15 "$single" >/dev/null || fail "docker restart failed"
grep -q 'stopped status=0' <<<"$(timeout 30 docker logs "$single" 2>&1)" ||
    fail "strata-node did not stop cleanly on SIGTERM (no 'stopped status=0' in its log)"
wait_single_healthy 60 || fail "the single node was not healthy again within 60 s of restart"
check_single "after restart"
ok "docker restart: clean stop, healthy again, all 20 values kept"
timeout 60 docker rm -f "$single" >/dev/null
timeout 60 docker volume rm "$single_vol" >/dev/null

# --- 3. the cluster ---------------------------------------------------------------------------
in_time "the cluster"
grep -q -- '--peers' <<<"$(timeout 30 docker run --rm "$image" --help 2>/dev/null)" ||
    fail "the image's strata-node has no cluster mode (--peers)"
cluster_detect_compose || fail "no compose tool ('docker compose' or docker-compose)"
say "compose: ${_cluster_compose_cmd[*]}, project $STRATA_PROJECT, ports $p1 $p2 $p3"
export STRATA_PORT_1=$p1 STRATA_PORT_2=$p2 STRATA_PORT_3=$p3
export STRATA_WAIT_S=90

cluster_started=true
cluster_compose up -d --no-build >"$work/up.log" 2>&1 || {
    cat "$work/up.log" >&2
    fail "compose up failed"
}
cluster_wait_healthy || fail "the cluster did not become healthy"
ok "three nodes up and healthy"
for n in 1 2 3; do
    loopback_only "$(cluster_cid "$n")" ||
        fail "strata$n publishes a port beyond 127.0.0.1: $(docker port "$(cluster_cid "$n")")"
done
ok "every node's port is published on 127.0.0.1 only"

# leader, kill and start go through cluster.sh as a command: the interface the failover demo uses.
leader=$("$here/cluster.sh" leader 30) || fail "no leader elected within 30 s"
ok "leader elected: strata$leader"

acked=$work/acked
: >"$acked"

# put KEY VALUE through the current leader ($leader); a failed write is not acknowledged, and
# is retried through whichever node leads then (a leader may change at any time).
put_acked() {
    local k=$1 v=$2 n
    for _ in 1 2 3 4 5; do
        if cluster_cli "$leader" --timeout 5000 put "$k" "$v" >/dev/null 2>"$work/put.err"; then
            printf '%s\t%s\n' "$k" "$v" >>"$acked"
            return 0
        fi
        say "put $k on strata$leader: $(head -n 1 "$work/put.err"); looking for the leader"
        n=$(cluster_leader 10) && leader=$n
        sleep 0.2
    done
    return 1
}

# Until every node in NODES holds every acknowledged pair and all their scans are identical.
wait_converged() {
    local which=$1 limit=$2
    local until=$((SECONDS + limit)) n first missing
    sort "$acked" >"$work/acked.sorted"
    while :; do
        missing=
        first=
        for n in $which; do
            if ! cluster_cli "$n" --timeout 5000 scan >"$work/scan.$n" 2>/dev/null; then
                missing="strata$n does not answer scan"
                break
            fi
            sort "$work/scan.$n" >"$work/scan.$n.sorted"
            if [ -n "$(comm -23 "$work/acked.sorted" "$work/scan.$n.sorted" | head -n 1)" ]; then
                missing="strata$n lacks $(comm -23 "$work/acked.sorted" "$work/scan.$n.sorted" |
                    wc -l) acknowledged pairs"
                break
            fi
            if [ -z "$first" ]; then
                first=$n
            elif ! cmp -s "$work/scan.$first" "$work/scan.$n"; then
                missing="strata$first and strata$n differ"
                break
            fi
        done
        [ -z "$missing" ] && return 0
        if [ $SECONDS -ge $until ]; then
            say "not converged after ${limit}s: $missing"
            return 1
        fi
        sleep 1
    done
}

for i in $(seq -w 1 100); do
    put_acked "key-$i" "v1-$run_id-$i" || fail "write key-$i failed 5 times"
done
ok "100 writes acknowledged (leader now strata$leader)"
wait_converged "1 2 3" 30 || fail "the writes did not reach every node"
for n in 1 2 3; do
    v=$(cluster_cli "$n" --timeout 5000 get key-050) || fail "get key-050 on strata$n"
    [ "$v" = "v1-$run_id-050" ] || fail "strata$n: key-050 is '$v'"
done
ok "every node returns every acknowledged write"

# From the host, a write sent to a follower: the leader it names (strataN:7400) is a name only
# the compose network resolves, so the CLI asks the other published addresses in turn.
if [ -n "${STRATA_CLI:-}" ]; then
    follower=$(( leader % 3 + 1 ))
    list=127.0.0.1:$(cluster_port "$follower")
    for n in 1 2 3; do
        [ "$n" = "$follower" ] || list=$list,127.0.0.1:$(cluster_port "$n")
    done
    timeout 60 "$STRATA_CLI" --addr "$list" --timeout 5000 put via-follower "$run_id" \
        >/dev/null 2>"$work/put.err" ||
        fail "a write through the follower strata$follower ($list) failed: $(cat "$work/put.err")"
    printf '%s\t%s\n' via-follower "$run_id" >>"$acked"
    v=$(cluster_cli "$leader" --timeout 5000 get via-follower) || fail "get via-follower"
    [ "$v" = "$run_id" ] || fail "via-follower is '$v' on the leader"
    ok "a write sent from the host to the follower strata$follower reached the leader"
fi

in_time "the leader's kill"
old=$("$here/cluster.sh" leader 10) || fail "no leader before the kill"
read -r _ old_term _ < <(cluster_role "$old") || fail "no status from the leader strata$old"
"$here/cluster.sh" kill "$old" || fail "docker kill of strata$old failed"
kill_t=$SECONDS
sleep 1
[ "$(cluster_health "$old")" = exited ] ||
    fail "strata$old is $(cluster_health "$old") after docker kill (restart policy?)"
ok "docker kill of the leader strata$old (term $old_term)"

survivors=$(for n in 1 2 3; do [ "$n" = "$old" ] || printf '%s ' "$n"; done)
new=$(STRATA_NODES=$survivors "$here/cluster.sh" leader 20) ||
    fail "no new leader within 20 s of the kill"
[ "$new" != "$old" ] || fail "the killed node is still reported as leader"
# The other survivor follows the new leader, in a later term than the old one's.
for n in $survivors; do
    for _ in $(seq 1 20); do
        read -r role term lid < <(cluster_role "$n" || echo "none 0 0")
        [ "$lid" = "$new" ] && break
        sleep 0.5
    done
    [ "$lid" = "$new" ] || fail "strata$n reports leader $lid ($role), not strata$new"
    [ "$term" -gt "$old_term" ] || fail "strata$n is in term $term, not past $old_term"
done
ok "new leader elected: strata$new in term $term, $((SECONDS - kill_t))s after the kill"

leader=$new
for i in $(seq -w 101 150); do
    put_acked "key-$i" "v2-$run_id-$i" || fail "write key-$i failed 5 times"
done
ok "50 more writes acknowledged (leader now strata$leader)"
wait_converged "$survivors" 30 || fail "acknowledged writes missing on the survivors"
ok "no acknowledged write lost on the survivors ($(wc -l <"$acked") keys)"

in_time "the restart"
"$here/cluster.sh" start "$old" || fail "docker start of strata$old failed"
cluster_wait_healthy "$old" || fail "strata$old not healthy again after docker start"
ok "strata$old restarted and healthy"
wait_converged "1 2 3" 60 || fail "the restarted node did not converge"
ok "all three nodes converged: $(wc -l <"$work/scan.1") keys, byte-identical scans"

say "all done"
echo "docker_cluster: $passed passed, 0 failed"
