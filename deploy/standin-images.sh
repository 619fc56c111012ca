#!/usr/bin/env bash
# Local stand-ins for the Dockerfile's two base images, for a machine that can
# reach Debian's package mirror but not a container registry (Docker Hub):
#
#   docker.io/library/debian:bookworm-slim  <- debootstrap --variant=minbase bookworm
#   docker.io/library/rust:1-bookworm       <- that, plus gcc/make/git and this
#                                              machine's own Rust toolchain
#                                              (`rustc --print sysroot`, docs left out)
#                                              and this machine's local CAs
#                                              (/usr/local/share/ca-certificates, e.g.
#                                              a TLS-intercepting proxy's) so that
#                                              cargo can reach crates.io as the host does
#
# They are tagged with the real names, so `podman build .` uses them unchanged
# (pull policy "missing"). Nothing is done for an image that already exists.
# Not a replacement for the real images anywhere a registry is reachable.
#
# Usage (as root): deploy/standin-images.sh [slim] [rust]   (default: both)
# Env: ENGINE (podman), STANDIN_DIR (/var/tmp/nodo-standin), DEBIAN_MIRROR,
#      BUILD_FLAGS (extra `build` flags, e.g. "--runtime runc --ulimit nofile=N:N";
#      deploy/check.sh works them out and passes them).
set -euo pipefail

ENGINE=${ENGINE:-podman}
WORK=${STANDIN_DIR:-/var/tmp/nodo-standin}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SLIM=docker.io/library/debian:bookworm-slim
RUST=docker.io/library/rust:1-bookworm

WANT=${*:-slim rust}

have() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
wants() { [[ " $WANT " == *" $1 "* ]]; }

mkdir -p "$WORK"

if ! wants slim; then
    :
elif have "$SLIM"; then
    echo "standin: $SLIM exists"
else
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    rootfs="$WORK/rootfs"
    rm -rf "$rootfs"
    echo "standin: debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; exit 1; }
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
    # Like the real slim image: apt keeps no caches (its docker-clean), no package lists.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" --numeric-owner -c . |
        "$ENGINE" import --change 'CMD ["bash"]' - "$SLIM"
    rm -rf "$rootfs"
fi

if ! wants rust; then
    :
elif have "$RUST"; then
    echo "standin: $RUST exists"
else
    sysroot=$(rustc --print sysroot)
    ctx="$WORK/rust-ctx"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    echo "standin: Rust toolchain from $sysroot ($(rustc --version))"
    rsync -a --exclude share/doc "$sysroot/" "$ctx/toolchain/"
    mkdir -p "$ctx/extra-ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
    cat >"$ctx/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make git \
    && rm -rf /var/lib/apt/lists/*
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
EOF
    # shellcheck disable=SC2086
    nice -n 19 "$ENGINE" build ${BUILD_FLAGS:-} -t "$RUST" "$ctx"
    rm -rf "$ctx"
fi
"$ENGINE" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'debian|rust' || true
