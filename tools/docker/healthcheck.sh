#!/bin/sh
# strata-healthcheck - the image's HEALTHCHECK: exit 0 when the strata-node in this container
# serves, 1 otherwise. Any role counts (leader, follower, candidate, standalone): a follower is
# healthy. To find the leader, ask the health service "strata.v1.KV.leader" instead.
#
# It asks the gRPC health service through `strata health` (service ""); a `strata` without that
# subcommand (exit 2, usage) is asked for `strata status` instead, which only a serving node
# answers.
#
# Environment: STRATA_HEALTH_ADDR (default 127.0.0.1:7400), STRATA_HEALTH_TIMEOUT_MS (2000).
addr=${STRATA_HEALTH_ADDR:-127.0.0.1:7400}
timeout=${STRATA_HEALTH_TIMEOUT_MS:-2000}

strata --addr "$addr" --timeout "$timeout" health >/dev/null 2>&1
rc=$?
if [ "$rc" -eq 2 ]; then
    strata --addr "$addr" --timeout "$timeout" status >/dev/null
    rc=$?
fi
[ "$rc" -eq 0 ] && exit 0
exit 1
