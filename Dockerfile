# Multi-stage build: a release binary on a slim Debian runtime.
# Not built in CI (no Docker engine there); see README.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/nodo /usr/local/bin/nodo
VOLUME /data
EXPOSE 7880/tcp 7881/tcp 7882/udp
HEALTHCHECK --interval=10s --timeout=3s CMD ["nodo", "health", "--url", "http://127.0.0.1:7880"]
ENTRYPOINT ["nodo", "serve", "--data-dir", "/data"]
