#!/usr/bin/env bash
# Repeatable checks of the deployment files (not part of CI; run as root).
#
#   deploy/check.sh unit    systemd-analyze verify + security of systemd/nodo.service
#   deploy/check.sh image   build the Dockerfile with podman and run the image
#   deploy/check.sh boot    the unit under a real systemd: a container booting
#                           /sbin/init, set up as systemd/README.md says
#   deploy/check.sh         all three
#
# Env:
#   ENGINE=podman        container engine (docker works for most steps)
#   CONTEXT=tree|head    build the working tree as it is (default), or `git archive
#                        HEAD` with the working tree's Dockerfile and .dockerignore
#   IMAGE=nodo           tag to build
#   HTTP_PORT=17880      HTTP port of the --network host run (loopback only)
#   STANDIN=1            no registry: build stand-in base images from Debian's
#                        packages (deploy/standin-images.sh) instead of pulling
#
# Only loopback and the containers' own network namespaces are talked to.
# ok/bad always return 0, so `test && ok ... || bad ...` is an if-then-else here.
# shellcheck disable=SC2015,SC2016
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

ENGINE=${ENGINE:-podman}
CONTEXT=${CONTEXT:-tree}
IMAGE=${IMAGE:-nodo}
HTTP_PORT=${HTTP_PORT:-17880}
STANDIN=${STANDIN:-auto}
WHAT=${1:-all}

PASSED=0
FAILED=0
ok() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
bad() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
step() { echo; echo "== $*"; }

# ---- systemd unit ------------------------------------------------------------
check_unit() {
    step "systemd unit"
    if ! command -v systemd-analyze >/dev/null; then
        apt-get install -y -q systemd >/dev/null || { bad "cannot install systemd-analyze"; return; }
    fi
    # verify wants ExecStart's binary to exist.
    local placed=""
    if [ ! -e /usr/local/bin/nodo ]; then
        if [ -x target/release/nodo ]; then
            cp target/release/nodo /usr/local/bin/nodo
            placed="copy of target/release/nodo"
        else
            printf '#!/bin/sh\nexit 0\n' >/usr/local/bin/nodo
            chmod 0755 /usr/local/bin/nodo
            placed="dummy executable"
        fi
        echo "placed /usr/local/bin/nodo ($placed), removed again below"
    fi
    local out
    out=$(systemd-analyze verify systemd/nodo.service 2>&1)
    local rc=$?
    [ -n "$out" ] && echo "$out"
    if [ $rc -eq 0 ] && [ -z "$out" ]; then
        ok "systemd-analyze verify systemd/nodo.service (no output)"
    else
        bad "systemd-analyze verify: rc=$rc"
    fi
    systemd-analyze security --offline=true systemd/nodo.service 2>&1 | grep -E '^(✗|→)' ||
        echo "(systemd-analyze security --offline not available)"
    [ -n "$placed" ] && rm -f /usr/local/bin/nodo
}

# ---- container image ---------------------------------------------------------
FLAGS_BUILD=()
FLAGS_GLOBAL=()
FLAGS_RUN=()

# Finds run/build flags this machine needs: some sandboxes refuse the engine's
# default rlimits (nofile=1048576) and crun refuses hybrid cgroup v1/v2 hosts.
probe_engine() {
    local img=$1
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    local limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
    if "$ENGINE" run --rm "$img" true >/dev/null 2>&1; then
        echo "engine: defaults work"
    elif "$ENGINE" run --rm "${limits[@]}" "$img" true >/dev/null 2>&1; then
        FLAGS_RUN=("${limits[@]}")
        FLAGS_BUILD=("${limits[@]}")
        echo "engine: needs ${limits[*]}"
    elif [ "$ENGINE" = podman ] && command -v runc >/dev/null &&
        podman --runtime runc run --rm "${limits[@]}" "$img" true >/dev/null 2>&1; then
        FLAGS_GLOBAL=(--runtime runc)
        FLAGS_RUN=("${limits[@]}")
        FLAGS_BUILD=(--runtime runc "${limits[@]}")
        echo "engine: needs --runtime runc ${limits[*]}"
    else
        echo "engine: cannot start a container; last error:"
        "$ENGINE" run --rm "$img" true 2>&1 | tail -3
        return 1
    fi
}

eng() { "$ENGINE" "${FLAGS_GLOBAL[@]}" "$@"; }

check_image() {
    step "container engine"
    command -v "$ENGINE" >/dev/null || { bad "$ENGINE not installed (apt-get install -y podman)"; return; }
    if ! "$ENGINE" info >/dev/null 2>/tmp/nodo-check-info.err; then
        bad "$ENGINE info: $(tail -3 /tmp/nodo-check-info.err)"
        return
    fi
    ok "$ENGINE info"

    step "base images"
    local img missing=0
    for img in docker.io/library/rust:1-bookworm docker.io/library/debian:bookworm-slim; do
        if "$ENGINE" image inspect "$img" >/dev/null 2>&1; then
            echo "present: $img"
        elif [ "$STANDIN" != 1 ] && timeout 300 "$ENGINE" pull -q "$img" >/dev/null 2>/tmp/nodo-check-pull.err; then
            echo "pulled: $img"
        else
            [ -s /tmp/nodo-check-pull.err ] && echo "pull $img: $(tail -1 /tmp/nodo-check-pull.err)"
            missing=1
        fi
    done
    if [ $missing = 1 ] && [ "$STANDIN" = 0 ]; then
        bad "base images missing and STANDIN=0"
        return
    fi
    # The slim stand-in is imported (no container needed); the Rust one is built,
    # which needs the flags probe_engine finds.
    if [ $missing = 1 ]; then
        ENGINE=$ENGINE bash deploy/standin-images.sh slim || { bad "stand-in debian:bookworm-slim"; return; }
    fi
    probe_engine docker.io/library/debian:bookworm-slim || { bad "no container can run here"; return; }
    if [ $missing = 1 ]; then
        BUILD_FLAGS="${FLAGS_BUILD[*]}" ENGINE=$ENGINE bash deploy/standin-images.sh rust ||
            { bad "stand-in rust:1-bookworm"; return; }
        echo "NOTE: base images are local stand-ins (Debian packages + this machine's Rust), not Docker Hub's"
    fi

    step "build ($CONTEXT)"
    # The build runs on a copy of the context, so that a second build with one
    # source file changed can show that the dependency layer stays cached.
    local ctx
    ctx=$(mktemp -d /var/tmp/nodo-ctx.XXXXXX)
    if [ "$CONTEXT" = head ]; then
        git archive HEAD | tar -x -C "$ctx"
        cp Dockerfile .dockerignore "$ctx/"
        echo "context: git archive HEAD ($(git rev-parse --short HEAD)) + working-tree Dockerfile, .dockerignore"
    else
        # Tracked and untracked files, less what .gitignore leaves out (target/, ...).
        git ls-files -z --cached --others --exclude-standard |
            tar --null -T - --ignore-failed-read -c 2>/dev/null | tar -x -C "$ctx"
        echo "context: working tree ($(git rev-parse --short HEAD) + uncommitted changes)"
    fi
    local t0 t1
    t0=$(date +%s)
    if nice -n 19 "$ENGINE" build --format docker "${FLAGS_BUILD[@]}" -t "$IMAGE" "$ctx" >/tmp/nodo-check-build.log 2>&1; then
        t1=$(date +%s)
        ok "build in $((t1 - t0)) s (log: /tmp/nodo-check-build.log)"
        grep -E 'Finished `release`' /tmp/nodo-check-build.log | sed 's/^ */      cargo: /'
    else
        t1=$(date +%s)
        tail -30 /tmp/nodo-check-build.log
        bad "build failed after $((t1 - t0)) s (log: /tmp/nodo-check-build.log)"
        rm -rf "$ctx"
        return
    fi

    step "layer cache: a source change leaves the dependency layer cached"
    # Build only up to the `deps` stage with one .rs file changed. Cached, this
    # takes seconds; if it starts compiling, it is stopped after 120 s.
    printf '\n// cache check\n' >>"$ctx/src/main.rs"
    if timeout 120 nice -n 19 "$ENGINE" build --format docker "${FLAGS_BUILD[@]}" --target deps \
        -t "$IMAGE-deps-check" "$ctx" >/tmp/nodo-check-cache.log 2>&1 &&
        ! grep -q 'Compiling' /tmp/nodo-check-cache.log; then
        ok "dependency layer reused after a source change ($(grep -c 'Using cache' /tmp/nodo-check-cache.log) cached steps)"
    else
        tail -5 /tmp/nodo-check-cache.log
        bad "dependency layer rebuilt after a source change (log: /tmp/nodo-check-cache.log)"
    fi
    if [ "$ENGINE" = podman ]; then eng untag "$IMAGE-deps-check"; else eng rmi "$IMAGE-deps-check"; fi >/dev/null 2>&1
    rm -rf "$ctx"

    step "image metadata"
    eng image inspect "$IMAGE" --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} env={{.Config.Env}}'
    eng image inspect "$IMAGE" --format 'exposed={{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}'
    eng image inspect "$IMAGE" --format 'healthcheck={{.Config.Healthcheck}}' 2>/dev/null ||
        eng image inspect "$IMAGE" --format 'healthcheck={{.HealthCheck}}'
    eng image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "size=%.0f MB\n", $1/1e6}'
    [ "$(eng image inspect "$IMAGE" --format '{{.Config.User}}')" = 10001:10001 ] &&
        ok "image runs as 10001:10001" || bad "image user"

    step "run --network host, loopback port $HTTP_PORT"
    eng rm -f nodo-check >/dev/null 2>&1
    eng run -d --name nodo-check --network host "${FLAGS_RUN[@]}" \
        -e NODO_SERVER__HTTP_PORT="$HTTP_PORT" -e NODO_TURN__UDP_PORT=0 \
        "$IMAGE" serve --dev --rtc-udp-port 0 --rtc-tcp-port 0 >/dev/null ||
        { bad "podman run"; return; }
    for _ in $(seq 1 30); do
        eng logs nodo-check 2>&1 | grep -q 'nodo listening' && break
        sleep 1
    done
    eng logs nodo-check 2>&1 | grep 'nodo listening' || { eng logs nodo-check 2>&1 | tail -20; bad "node did not start"; }
    if curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null; then
        ok "host curl 127.0.0.1:$HTTP_PORT/healthz"
    else
        bad "host curl /healthz"
    fi
    if eng exec nodo-check nodo health; then
        ok "nodo health (no --url) inside the container finds port $HTTP_PORT"
    else
        bad "nodo health without --url (binary does not read the port from the config?)"
        eng exec nodo-check nodo health --url "http://127.0.0.1:$HTTP_PORT" &&
            echo "      ...while nodo health --url http://127.0.0.1:$HTTP_PORT passes"
    fi
    if [ "$ENGINE" = podman ]; then
        eng healthcheck run nodo-check && ok "podman healthcheck run (the image's HEALTHCHECK)" ||
            bad "podman healthcheck run"
    fi
    echo "uid: $(eng exec nodo-check id)"
    eng exec nodo-check id -u | grep -qx 10001 && ok "process runs as UID 10001" || bad "process UID"
    eng exec nodo-check sh -c 'ls -ln /data' | tail -n +2
    eng exec nodo-check sh -c 'test -s /data/nodo.db && test "$(stat -c %u /data/nodo.db)" = 10001' &&
        ok "/data/nodo.db written by 10001" || bad "/data not written"
    local t_stop
    t0=$(date +%s%N)
    eng stop -t 10 nodo-check >/dev/null
    t_stop=$((($(date +%s%N) - t0) / 1000000))
    local code
    code=$(eng inspect nodo-check --format '{{.State.ExitCode}}')
    [ "$code" = 0 ] && ok "SIGTERM: exit 0 after ${t_stop} ms" || bad "stop: exit code $code after ${t_stop} ms"
    eng logs nodo-check 2>&1 | tail -3
    eng rm -f nodo-check >/dev/null

    step "run on a bridge network: port 80 as non-root, keys and node IP from env"
    eng rm -f nodo-check-bridge >/dev/null 2>&1
    eng run -d --name nodo-check-bridge "${FLAGS_RUN[@]}" \
        -e LIVEKIT_KEYS="checkkey: a-check-secret-of-at-least-32-characters" \
        -e NODO_RTC__NODE_IP=203.0.113.7 \
        -e NODO_SERVER__HTTP_PORT=80 \
        "$IMAGE" >/dev/null || { bad "podman run (bridge)"; return; }
    for _ in $(seq 1 30); do
        eng logs nodo-check-bridge 2>&1 | grep -q 'nodo listening' && break
        sleep 1
    done
    if eng logs nodo-check-bridge 2>&1 | grep 'nodo listening'; then
        ok "non-root node bound port 80 (file capability)"
    else
        eng logs nodo-check-bridge 2>&1 | tail -5
        bad "node did not start on port 80"
    fi
    if eng exec nodo-check-bridge nodo health; then
        ok "nodo health (no --url) finds port 80"
    else
        bad "nodo health without --url on port 80"
        eng exec nodo-check-bridge nodo health --url http://127.0.0.1:80 &&
            echo "      ...while nodo health --url http://127.0.0.1:80 passes"
    fi
    eng rm -f nodo-check-bridge >/dev/null

    step "capabilities"
    if eng run --rm "${FLAGS_RUN[@]}" --cap-drop ALL "$IMAGE" --version >/dev/null 2>/tmp/nodo-check-cap.err; then
        echo "--cap-drop ALL: starts (engine allows file caps beyond the bounding set?)"
    else
        echo "--cap-drop ALL: refused as documented: $(tail -1 /tmp/nodo-check-cap.err)"
    fi
    eng run --rm "${FLAGS_RUN[@]}" --cap-drop ALL --cap-add NET_BIND_SERVICE "$IMAGE" --version &&
        ok "--cap-drop ALL --cap-add NET_BIND_SERVICE starts" || bad "--cap-add NET_BIND_SERVICE"
}

# ---- the unit, booted: systemd as PID 1 in a container -----------------------
check_boot() {
    step "systemd/nodo.service under a real systemd (container with systemd as PID 1)"
    command -v "$ENGINE" >/dev/null || { bad "$ENGINE not installed"; return; }
    "$ENGINE" image inspect docker.io/library/debian:bookworm-slim >/dev/null 2>&1 ||
        { bad "no debian:bookworm-slim image (run the image step first)"; return; }
    [ ${#FLAGS_RUN[@]} -gt 0 ] || probe_engine docker.io/library/debian:bookworm-slim ||
        { bad "no container can run here"; return; }
    local ctx
    ctx=$(mktemp -d /var/tmp/nodo-boot.XXXXXX)
    # The binary: from the image built above, else target/release (both bookworm glibc).
    if eng image inspect "$IMAGE" >/dev/null 2>&1; then
        local cid
        cid=$(eng create "$IMAGE")
        eng cp "$cid:/usr/local/bin/nodo" "$ctx/nodo"
        eng rm "$cid" >/dev/null
        echo "binary: from image $IMAGE"
    elif [ -x target/release/nodo ]; then
        cp target/release/nodo "$ctx/nodo"
        echo "binary: target/release/nodo"
    else
        bad "no nodo binary (build the image or cargo build --release)"; return
    fi
    cp systemd/nodo.service "$ctx/"
    # The install steps of systemd/README.md, with the HTTP port moved to 80 (so
    # that CAP_NET_BIND_SERVICE is exercised) and keys only in the root-only env file.
    cat >"$ctx/Containerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends systemd systemd-sysv dbus ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY nodo /usr/local/bin/nodo
COPY nodo.service /etc/systemd/system/nodo.service
RUN chmod 0755 /usr/local/bin/nodo \
    && useradd --system --home-dir /var/lib/nodo --no-create-home --shell /usr/sbin/nologin nodo \
    && install -d -m 0755 /etc/nodo \
    && nodo config default > /etc/nodo/config.toml \
    && chown root:nodo /etc/nodo/config.toml && chmod 0640 /etc/nodo/config.toml \
    && printf 'LIVEKIT_KEYS="checkkey: a-check-secret-of-at-least-32-characters"\nNODO_SERVER__HTTP_PORT=80\n' > /etc/nodo/nodo.env \
    && chmod 0600 /etc/nodo/nodo.env \
    && systemctl enable nodo \
    && systemctl mask getty.target console-getty.service systemd-logind.service
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
EOF
    if ! nice -n 19 "$ENGINE" build "${FLAGS_BUILD[@]}" -t nodo-boot-check "$ctx" >/tmp/nodo-check-boot-build.log 2>&1; then
        tail -10 /tmp/nodo-check-boot-build.log
        bad "image with systemd"; rm -rf "$ctx"; return
    fi
    rm -rf "$ctx"
    eng rm -f nodo-boot-check >/dev/null 2>&1
    # SYS_ADMIN: systemd needs it to set up the unit's sandbox (mount namespaces).
    if ! eng run -d --name nodo-boot-check --systemd=always --cap-add SYS_ADMIN "${FLAGS_RUN[@]}" \
        nodo-boot-check >/dev/null 2>/tmp/nodo-check-boot.err; then
        bad "boot container: $(tail -2 /tmp/nodo-check-boot.err)"; return
    fi
    local state=""
    for _ in $(seq 1 40); do
        state=$(eng exec nodo-boot-check systemctl is-active nodo 2>/dev/null)
        [ "$state" = active ] && eng exec nodo-boot-check journalctl -u nodo --no-pager 2>/dev/null |
            grep -q 'nodo listening' && break
        sleep 1
    done
    bx() { eng exec nodo-boot-check "$@"; }
    if [ "$state" = active ]; then ok "systemctl is-active nodo"; else bad "nodo.service is $state"; fi
    bx journalctl -u nodo --no-pager -o cat | grep -E 'nodo listening|WARN|ERROR' | head -10
    bx journalctl -u nodo --no-pager -o cat | grep -q 'http=0.0.0.0:80 ' &&
        ok "bound port 80 as user nodo (AmbientCapabilities)" || bad "port 80 not bound"
    local pid
    pid=$(bx systemctl show -p MainPID --value nodo)
    echo "main process: $(bx ps -o user=,pid=,args= -p "$pid" 2>/dev/null || bx stat -c '%U' "/proc/$pid")"
    [ "$(bx stat -c %U "/proc/$pid")" = nodo ] && ok "runs as user nodo" || bad "not running as nodo"
    echo "caps: $(bx grep -E 'CapEff|CapAmb|CapBnd' "/proc/$pid/status" | tr -s '\t\n' '  ')"
    if bx env NODO_CONFIG=/etc/nodo/config.toml NODO_SERVER__HTTP_PORT=80 nodo health; then
        ok "nodo health (config + env) inside the booted unit's host"
    else
        bad "nodo health"
    fi
    bx ls -ln /var/lib/nodo
    [ "$(bx stat -c '%U %a' /var/lib/nodo)" = "nodo 750" ] && ok "/var/lib/nodo is nodo, 0750" ||
        bad "/var/lib/nodo: $(bx stat -c '%U %a' /var/lib/nodo)"
    [ "$(bx stat -c '%U %a' /var/lib/nodo/nodo.db)" = "nodo 640" ] && ok "nodo.db is nodo, 0640 (UMask=0027)" ||
        bad "nodo.db: $(bx stat -c '%U %a' /var/lib/nodo/nodo.db)"
    bx systemctl stop nodo
    local result status
    result=$(bx systemctl show -p Result --value nodo)
    status=$(bx systemctl show -p ExecMainStatus --value nodo)
    [ "$result" = success ] && ok "systemctl stop: Result=$result ExecMainStatus=$status" ||
        bad "systemctl stop: Result=$result ExecMainStatus=$status"
    bx journalctl -u nodo --no-pager -o cat | tail -3
    eng rm -f nodo-boot-check >/dev/null
    eng rmi nodo-boot-check >/dev/null 2>&1
}

case $WHAT in
unit) check_unit ;;
image) check_image ;;
boot) check_boot ;;
all) check_unit; check_image; check_boot ;;
*) echo "usage: $0 [unit|image|boot|all]"; exit 2 ;;
esac
echo
echo "$PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
