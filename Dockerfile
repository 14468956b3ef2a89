# strata-node and the strata CLI in a Debian 12 image (docs/docker.md).
#
#   docker build -t strata:local .
#   docker run -d -p 127.0.0.1:7400:7400 -v strata-data:/var/lib/strata strata:local
#   docker run --rm --network host --entrypoint strata strata:local --addr 127.0.0.1:7400 status
#
# The container runs `strata-node --listen 0.0.0.0:7400 --data-dir /var/lib/strata` followed by
# the arguments given to `docker run` (or a compose file's `command`), so flags such as
# --node-id and --peers are simply appended; a flag given twice takes the last value.
#
# Where no image can be pulled, tools/docker/make-base-image.sh builds debian:12 and
# debian:12-slim locally from Debian's packages; this file works unchanged on either.
# Written for the classic builder as well as BuildKit: no RUN --mount, no COPY --link.

# Every instruction is an image layer, and on some storage drivers (fuse-overlayfs) each one
# costs seconds even when nothing changes: the stages below keep them few.

# ---- build: the whole toolchain, only the two programs built --------------------------------
FROM debian:12 AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
        libjemalloc-dev libcmocka-dev libisal-dev libxxhash-dev libinih-dev \
    && rm -rf /var/lib/apt/lists/*
# .dockerignore keeps build trees, git, docs and the Docker files themselves out, so that
# editing them does not invalidate this layer.
COPY . /src
# RelWithDebInfo's -O2 -DNDEBUG as the host build uses, without -g: the binaries are stripped
# anyway, and debug information is a good part of the compile time.
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" \
    && cmake --build /build -j"$(nproc)" --target strata-node strata \
    && mkdir -p /out \
    && install -m 0755 -s /build/node/strata-node /build/node/strata /out/ \
    && install -m 0755 /src/tools/docker/healthcheck.sh /out/strata-healthcheck \
    && install -m 0755 /src/tools/docker/demo-load.sh /out/strata-demo-load

# ---- runtime: the shared libraries the programs load, and nothing to build with -------------
FROM debian:12-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libgrpc29 libprotobuf-c1 libjemalloc2 libisal2 libxxhash0 libinih1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid strata --home-dir /var/lib/strata --no-create-home \
        --shell /usr/sbin/nologin strata \
    && mkdir -p /var/lib/strata \
    && chown strata:strata /var/lib/strata \
    && chmod 0750 /var/lib/strata
# strata-node, strata, strata-healthcheck, strata-demo-load
COPY --from=build /out/ /usr/local/bin/
# gRPC's own DNS resolver (c-ares) is replaced by getaddrinfo, which reads /etc/hosts and
# asks Docker's embedded DNS, so peers named by compose service names resolve.
ENV GRPC_DNS_RESOLVER=native
USER strata
VOLUME ["/var/lib/strata"]
EXPOSE 7400
# Healthy while the node serves, whatever its role (tools/docker/healthcheck.sh).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 CMD ["strata-healthcheck"]
# SIGTERM (docker stop) drains calls, flushes and exits 0. Setting ENTRYPOINT clears the base
# image's CMD, so `docker run IMAGE --flag ...` appends flags.
ENTRYPOINT ["strata-node", "--listen", "0.0.0.0:7400", "--data-dir", "/var/lib/strata"]
