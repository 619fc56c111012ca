# Nodo container image: a release `nodo` on Debian bookworm-slim, run as the
# non-root user `nodo` (UID/GID 10001), state in the volume /data.
#
# Build:   docker build -t nodo .                    (BuildKit: Docker >= 23, or buildx)
#          podman build --format docker -t nodo .    (podman keeps HEALTHCHECK only
#                                                     in the docker format)
#
# Run, way 1 - host networking (recommended for media): no NAT between the node
# and its clients, ICE candidates carry the host's real addresses, and the whole
# TURN relay range needs no per-port publishing.
#
#   docker run -d --name nodo --network host \
#     -v nodo-data:/data \
#     -e LIVEKIT_KEYS="mykey: $(openssl rand -base64 32)" \
#     -e NODO_TLS__DOMAIN=media.example.com -e NODO_TLS__ACME_EMAIL=ops@example.com \
#     nodo
#
# Run, way 2 - bridge networking: the container only sees its own 172.x
# address, so tell the node the public one, and publish every port with the
# same number inside and out (the media ports are advertised, not translated):
#
#   docker run -d --name nodo \
#     -v nodo-data:/data \
#     -e LIVEKIT_KEYS="mykey: $(openssl rand -base64 32)" \
#     -e NODO_RTC__NODE_IP=203.0.113.7 \
#     -p 7880:7880/tcp -p 7881:7881/tcp -p 7882:7882/udp \
#     -p 443:443/tcp -p 80:80/tcp \
#     -p 3478:3478/udp -p 5349:5349/tcp -p 30000-40000:30000-40000/udp \
#     nodo
#
#   (Publishing 10001 relay ports this way is slow to start with Docker's
#   userland proxy; shrink --turn-relay-ports or use way 1. Behind a NAT that
#   maps ports to other numbers see `nodo serve --help`: --external-ip,
#   --external-udp-port.)
#
# Arguments after the image name replace the default command `serve`, e.g.
# `docker run --rm nodo serve --help`, `docker run --rm nodo token create ...`.
# Config: every key is also an environment variable NODO_<SECTION>__<KEY>;
# or mount a file and set NODO_CONFIG=/etc/nodo/config.toml. Prefer these to
# `serve` flags for the HTTP port and bind address: the HEALTHCHECK (`nodo
# health`) reads the config and environment, not the flags of `serve`.
# A host directory bind-mounted on /data must be writable by UID 10001:
#   install -d -o 10001 -g 10001 -m 0750 /srv/nodo-data
#
# Ports below 1024 (443, 80) as a non-root user: the binary carries the file
# capability cap_net_bind_service (setcap below). Docker and Podman grant
# NET_BIND_SERVICE to containers by default, so nothing else is needed; with
# `--cap-drop ALL` add `--cap-add NET_BIND_SERVICE`, or the binary will not
# start ("operation not permitted"). `--security-opt no-new-privileges` makes
# the kernel ignore file capabilities: then 80/443 cannot be bound. (The other
# route, sysctl net.ipv4.ip_unprivileged_port_start=0, works only in a
# container's own network namespace, not with --network host, so it is not
# used here.)

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- plan: only what decides the dependency graph ----------------------------
# Every Cargo.toml plus Cargo.lock, with empty stub sources. Timestamps are
# pinned so that this output, and so the dependency layer below, stays the same
# (cached) until a manifest or the lockfile changes. New workspace members are
# picked up without editing this file.
FROM ${RUST_IMAGE} AS plan
WORKDIR /src
COPY . .
RUN set -eu; \
    find . -name Cargo.toml -not -path './target/*' | while read -r manifest; do \
        dir="/plan/$(dirname "$manifest")"; \
        mkdir -p "$dir/src"; \
        cp "$manifest" "$dir/"; \
        : > "$dir/src/lib.rs"; \
        printf 'fn main() {}\n' > "$dir/src/main.rs"; \
    done; \
    cp Cargo.lock /plan/; \
    find /plan -exec touch -h -d @0 {} +

# ---- deps: the dependency graph, compiled ------------------------------------
# Rebuilt only when a manifest or Cargo.lock changes. `--target deps` builds just
# this (to warm a cache, or to check that a source change leaves it cached).
FROM ${RUST_IMAGE} AS deps
# Node.js and npm build the bundled web app (web-demo/, esbuild) from build.rs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev nodejs npm \
    && rm -rf /var/lib/apt/lists/*
# The project's release profile has debug = 1 (a ~200 MB binary); line tables
# alone compile faster, and the image strips them anyway (KEEP_DEBUG below).
ENV CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
WORKDIR /src
COPY --from=plan /plan/ ./
RUN cargo build --release --locked \
    && find . -path ./target -prune -o -name '*.rs' -type f -exec rm -f {} +

# ---- build: the project itself -----------------------------------------------
FROM deps AS build
COPY . .
# --build-arg KEEP_DEBUG=1 keeps file:line in backtraces (a far larger binary);
# by default debug info is stripped and backtraces name functions only.
ARG KEEP_DEBUG=0
# The copied sources keep their own mtimes, older than the stub build above:
# touch them, or cargo would take the workspace crates for up to date.
RUN find . -path ./target -prune -o -type f -exec touch {} + \
    && cargo build --release --locked --bin nodo \
    && if [ "$KEEP_DEBUG" != 1 ]; then strip --strip-debug target/release/nodo; fi \
    && ./target/release/nodo --version \
    && sha256sum target/release/nodo > /nodo.sha256

# ---- runtime -----------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG NODO_UID=10001
# One layer: libraries, the user, /data, and the binary with the file
# capability for ports 80 and 443 (see the top of this file). The binary comes
# in through a bind mount, not COPY: setcap after a COPY would store it twice,
# and COPY --from does not keep file capabilities with every builder.
# The binary's checksum, copied first: a new binary changes it, so the step
# below is not taken from the layer cache (buildah does not count a bind
# mount's content in its cache key; without this, podman kept a stale binary).
COPY --from=build /nodo.sha256 /usr/local/share/nodo.sha256
RUN --mount=type=bind,from=build,source=/src/target/release/nodo,target=/tmp/nodo \
    cd /tmp && sed 's|target/release/nodo|nodo|' /usr/local/share/nodo.sha256 | sha256sum -c - \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 libcap2-bin \
    && install -m 0755 /tmp/nodo /usr/local/bin/nodo \
    && setcap cap_net_bind_service=+ep /usr/local/bin/nodo \
    && getcap /usr/local/bin/nodo \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${NODO_UID}" nodo \
    && useradd --system --uid "${NODO_UID}" --gid nodo --home-dir /data \
        --no-create-home --shell /usr/sbin/nologin nodo \
    && install -d -o nodo -g nodo -m 0750 /data

# nodo.db, attachments, the VAPID key, the ACME account and certificate cache.
ENV NODO_DATA__DIR=/data
WORKDIR /data
VOLUME /data

# 7880 HTTP/WebSocket (signaling, API, chat, health), 7881 ICE-TCP, 7882 media,
# 443 HTTPS/WSS and 80 the redirect to it (when a domain or certificate is set),
# 3478 TURN/UDP, 5349 TURN/TLS, 30000-40000 TURN relay.
EXPOSE 7880/tcp 7881/tcp 7882/udp 443/tcp 80/tcp 3478/udp 5349/tcp 30000-40000/udp

USER ${NODO_UID}:${NODO_UID}
# `nodo health` finds the HTTP port from the same config (NODO_CONFIG,
# NODO_SERVER__HTTP_PORT) as `serve`, so a changed port needs no change here.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["nodo", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["nodo"]
CMD ["serve"]
