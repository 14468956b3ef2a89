#!/usr/bin/env bash
# cluster.sh - drive the docker-compose cluster of docker-compose.yml (strata1..3) from scripts:
# tests/docker/test_compose.sh and the failover demo use it.
#
# As a library (bash):   source tests/docker/cluster.sh; cluster_up; cluster_leader; ...
# As a command:          tests/docker/cluster.sh up | down | leader [SECONDS] | kill N |
#                            start N | addr N | status [N] | wait-healthy [N...] | base-images |
#                            compose ARGS...
#
# Stable interface (the failover demo, tools/failover-demo --docker, relies on it; keep it):
#   - services strata1, strata2, strata3 of docker-compose.yml are nodes 1, 2, 3 (--node-id N),
#     peers of each other at strataN:7400 inside the compose network;
#   - from the host, node N is at 127.0.0.1:740N (7401, 7402, 7403), published on 127.0.0.1
#     only; STRATA_PORT_1..3 move them, and `addr N` prints the address in use;
#   - the commands: `up` (build if needed, start, wait until all three are healthy; exit 0),
#     `down` (remove containers, network and volumes), `leader [SECONDS]` (print the leader's
#     node id, 1..3, on one line; exit 1 if none within SECONDS, default 30), `kill N` (docker
#     kill, SIGKILL: the restart policy leaves it down), `start N` (docker start; returns once
#     started, `wait-healthy N` waits for its health), `addr N` (print 127.0.0.1:PORT);
#   - exit status 0 on success and non-zero otherwise; messages go to stderr, results to stdout;
#   - environment: STRATA_PROJECT (default "strata"), STRATA_PORT_1..3, STRATA_NODES.
#
# Functions (N is a node id, 1..3; every wait is bounded and returns 1 on timeout):
#   cluster_compose ARGS...    the compose tool (`docker compose` if it works, else
#                              docker-compose) on this project and file
#   cluster_base_images        make sure debian:12 and debian:12-slim exist: present, pulled
#                              (unless STRATA_DOCKER_PULL=0) or made by
#                              tools/docker/make-base-image.sh
#   cluster_up                 create and start the three nodes (base images and a build of the
#                              image unless STRATA_NO_BUILD=1), then wait until all are healthy
#   cluster_down               stop and remove containers, network and volumes (down -v)
#   cluster_cid N              the container id of node N (running or not; empty if none)
#   cluster_port N             the host port published for node N (on 127.0.0.1)
#   cluster_cli N ARGS...      the strata CLI against node N: the host's $STRATA_CLI through the
#                              published port when set, else `docker exec` of the image's CLI
#   cluster_health N           healthy | starting | unhealthy | exited | missing
#   cluster_wait_healthy [N...]  until each (default all) is healthy, STRATA_WAIT_S (120 s)
#   cluster_role N             "ROLE TERM LEADER_ID" from node N's status (LEADER_ID 0 if unknown)
#   cluster_leader [SECONDS]   print the id of the leader (among running nodes, the one claiming
#                              leadership in the highest term), waiting up to SECONDS (30)
#   cluster_kill N             docker kill (SIGKILL) node N's container
#   cluster_start N            docker start it again
#
# Environment: STRATA_PROJECT (compose project name, default "strata"; lowercase letters and
# digits keep both compose versions happy), STRATA_COMPOSE_FILE (default the repository's
# docker-compose.yml), STRATA_IMAGE and STRATA_PORT_1..3 (read by the compose file),
# STRATA_CLI, STRATA_WAIT_S, STRATA_NODES (default "1 2 3"), STRATA_CMD_TIMEOUT (limit of each
# docker or CLI call, 60 s) and STRATA_COMPOSE_TIMEOUT (of each compose call, 300 s).

_cluster_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STRATA_PROJECT:=strata}"
: "${STRATA_COMPOSE_FILE:=$(cd "$_cluster_here/../.." && pwd)/docker-compose.yml}"
: "${STRATA_WAIT_S:=120}"
: "${STRATA_NODES:=1 2 3}"
export STRATA_PROJECT STRATA_COMPOSE_FILE
_cluster_compose_cmd=()

cluster_log() { echo "cluster: $*" >&2; }

# Every docker and CLI call is bounded: a hung daemon or node fails the call, not the caller.
_cluster_t() { timeout "${STRATA_CMD_TIMEOUT:-60}" "$@"; }

# Which compose tool: v2 as a docker plugin when it answers, else the v1 program.
cluster_detect_compose() {
    [ ${#_cluster_compose_cmd[@]} -gt 0 ] && return 0
    if timeout 30 docker compose version >/dev/null 2>&1; then
        _cluster_compose_cmd=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        _cluster_compose_cmd=(docker-compose)
    else
        cluster_log "neither 'docker compose' nor docker-compose is installed"
        return 1
    fi
}

cluster_compose() {
    cluster_detect_compose || return 1
    timeout "${STRATA_COMPOSE_TIMEOUT:-300}" "${_cluster_compose_cmd[@]}" \
        -p "$STRATA_PROJECT" -f "$STRATA_COMPOSE_FILE" "$@"
}

# By the labels both compose versions put on containers, so stopped ones are found too.
cluster_cid() {
    _cluster_t docker ps -aq --filter "label=com.docker.compose.project=$STRATA_PROJECT" \
        --filter "label=com.docker.compose.service=strata$1" | head -n 1
}

cluster_port() {
    local var="STRATA_PORT_$1"
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
        return 0
    fi
    local cid
    cid=$(cluster_cid "$1")
    [ -n "$cid" ] || return 1
    _cluster_t docker inspect -f '{{(index (index .HostConfig.PortBindings "7400/tcp") 0).HostPort}}' "$cid"
}

cluster_cli() {
    local n=$1
    shift
    if [ -n "${STRATA_CLI:-}" ]; then
        _cluster_t "$STRATA_CLI" --addr "127.0.0.1:$(cluster_port "$n")" "$@"
    else
        local cid
        cid=$(cluster_cid "$n")
        [ -n "$cid" ] || return 3
        _cluster_t docker exec -i "$cid" strata --addr 127.0.0.1:7400 "$@"
    fi
}

cluster_health() {
    local cid
    cid=$(cluster_cid "$1")
    if [ -z "$cid" ]; then
        echo missing
        return 0
    fi
    _cluster_t docker inspect -f '{{if .State.Running}}{{if .State.Health}}{{.State.Health.Status}}{{else}}healthy{{end}}{{else}}exited{{end}}' "$cid"
}

cluster_wait_healthy() {
    local nodes=("$@")
    [ ${#nodes[@]} -gt 0 ] || read -r -a nodes <<<"$STRATA_NODES"
    local deadline=$((SECONDS + STRATA_WAIT_S)) n h pending
    while :; do
        pending=()
        for n in "${nodes[@]}"; do
            h=$(cluster_health "$n")
            [ "$h" = healthy ] || pending+=("strata$n=$h")
        done
        [ ${#pending[@]} -eq 0 ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            cluster_log "not healthy after ${STRATA_WAIT_S}s: ${pending[*]}"
            return 1
        fi
        sleep 1
    done
}

cluster_role() {
    local out
    out=$(cluster_cli "$1" --timeout 2000 status 2>/dev/null) || return 1
    awk '
        /^role: /   { role = $2 }
        /^term: /   { term = $2 }
        /^leader: / { leader = ($2 == "unknown") ? 0 : $2 }
        END { if (role == "") exit 1; printf "%s %d %d\n", role, term, leader }' <<<"$out"
}

cluster_leader() {
    local limit=${1:-30}
    local deadline=$((SECONDS + limit)) n role term best best_term
    while :; do
        best=
        best_term=-1
        for n in $STRATA_NODES; do
            [ "$(cluster_health "$n")" = exited ] && continue
            read -r role term _ < <(cluster_role "$n" || echo "none 0 0")
            if [ "$role" = leader ] && [ "$term" -gt "$best_term" ]; then
                best=$n
                best_term=$term
            fi
        done
        if [ -n "$best" ]; then
            echo "$best"
            return 0
        fi
        if [ $SECONDS -ge $deadline ]; then
            cluster_log "no leader within ${limit}s"
            return 1
        fi
        sleep 0.5
    done
}

# The base images of the Dockerfile: kept when present, else pulled (unless
# STRATA_DOCKER_PULL=0; where no registry answers this fails at once), else made locally by
# tools/docker/make-base-image.sh (debootstrap: root, a few minutes, once per Docker engine).
cluster_base_images() {
    local base missing=()
    for base in debian:12 debian:12-slim; do
        _cluster_t docker image inspect "$base" >/dev/null 2>&1 && continue
        if [ "${STRATA_DOCKER_PULL:-1}" != 0 ] &&
            timeout 120 docker pull -q "$base" >/dev/null 2>&1; then
            cluster_log "pulled $base"
            continue
        fi
        missing+=("$base")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    cluster_log "${missing[*]}: not present and not pulled; making them locally" \
        "(tools/docker/make-base-image.sh, minutes, once)"
    "$_cluster_here/../../tools/docker/make-base-image.sh"
}

cluster_up() {
    local build=(--build)
    if [ "${STRATA_NO_BUILD:-}" = 1 ]; then
        build=(--no-build)
    else
        cluster_base_images || return 1
    fi
    cluster_compose up -d "${build[@]}" || return 1
    cluster_wait_healthy
}

cluster_down() {
    cluster_compose down -v --remove-orphans -t 10
}

cluster_kill() {
    local cid
    cid=$(cluster_cid "$1")
    [ -n "$cid" ] || return 1
    _cluster_t docker kill "$cid" >/dev/null
}

cluster_start() {
    local cid
    cid=$(cluster_cid "$1")
    [ -n "$cid" ] || return 1
    _cluster_t docker start "$cid" >/dev/null
}

# Run as a command rather than sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
    up) cluster_up ;;
    base-images) cluster_base_images ;;
    down) cluster_down ;;
    leader) cluster_leader "$@" ;;
    kill) cluster_kill "${1:?node id}" ;;
    start) cluster_start "${1:?node id}" ;;
    addr)
        p=$(cluster_port "${1:?node id}") || exit 1
        echo "127.0.0.1:$p"
        ;;
    wait-healthy) cluster_wait_healthy "$@" ;;
    status)
        for n in ${1:-$STRATA_NODES}; do
            echo "strata$n: $(cluster_health "$n"), $(cluster_role "$n" || echo 'no answer')"
        done
        ;;
    compose) cluster_compose "$@" ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
fi
