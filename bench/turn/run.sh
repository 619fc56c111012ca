#!/bin/sh
# CPU per relayed packet: Nodo's TURN relay (in process, kernel path) vs coturn.
# Usage: bench/turn/run.sh [options of run.py, e.g. --rounds 3 --seconds 15]
# Needs: a release build (target/release/nodo), coturn's turnserver, python3,
# taskset; gdb and nm for the relay-path check. Installs nothing.
# As root it runs in a network namespace of its own (loopback only), so the
# kernel's UDP counters it reads count nothing but the benchmark.
set -e
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" = 0 ] && [ -z "$TURN_BENCH_IN_NETNS" ]; then
    exec unshare --net env TURN_BENCH_IN_NETNS=1 \
        sh -c 'ip link set lo up && exec python3 "$0" "$@"' "$here/run.py" "$@"
fi
exec python3 "$here/run.py" "$@"
