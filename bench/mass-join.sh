#!/bin/bash
# What a mass join costs the node: N participants that publish nothing (the
# load generator's scenario E) join one room at R joins/s, stay 2 s after the
# last one is up plus a 3 s window, and leave. Printed: the node's CPU over
# the whole run (the joins, their announcements, the stay and the leaves) per
# join; its RSS growth per participant while everyone is connected (read by
# the generator at the window's end); the signal messages per second the
# participants received in the window.
#   bench/mass-join.sh [--nodo BIN] [--ramp 200] [--n 1000] [--runs 1]
# The node runs on CPU 0 with the embedded defaults (--dev, no TURN), the
# generator (target/release/nodo-loadgen) on CPU 1. "queue full" counts the
# participants dropped because their signal queue overflowed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/nodo; ramp=200; n=1000; runs=1
while [ $# -gt 0 ]; do
  case $1 in
    --nodo) bin=$2; shift 2 ;;
    --ramp) ramp=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
loadgen=$root/target/release/nodo-loadgen
[ -x "$loadgen" ] || { echo "build it: cargo build --release -p nodo-loadgen" >&2; exit 2; }
pin0=(); pin1=()
if command -v taskset >/dev/null; then pin0=(taskset -c 0); pin1=(taskset -c 1); fi
ticks() { awk '{print $14 + $15, $14}' "/proc/$1/stat"; }
for _ in $(seq "$runs"); do
  d=$(mktemp -d /tmp/nodo-mass-join.XXXXXX)
  NODO_SERVER__MAX_CONNECTIONS_PER_IP=0 NODO_SERVER__MAX_CONNECTIONS=0 RUST_LOG=warn \
    "${pin0[@]}" "$bin" serve --dev --http-port 0 --rtc-udp-port 0 --rtc-tcp-port 0 --no-turn \
    --data-dir "$d" >"$d/log" 2>&1 &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(grep -o 'http=127.0.0.1:[0-9]*' "$d/log" | head -1 | sed 's/.*://') || true
    [ -n "$port" ] && curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
  if [ -z "$port" ] || ! curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; then
    echo "the node did not start: $(cat "$d/log")" >&2; kill "$pid" 2>/dev/null; rm -rf "$d"; exit 1
  fi
  read -r c0 u0 < <(ticks "$pid"); t0=$(date +%s.%N)
  "${pin1[@]}" "$loadgen" --url "http://127.0.0.1:$port" --scenario e --n "$n" --ramp-rate "$ramp" \
    --settle 2 --seconds 3 --server-pid "$pid" >"$d/lg.json" 2>"$d/lg.err" \
    || echo "loadgen failed: $(tail -3 "$d/lg.err")" >&2
  t1=$(date +%s.%N); read -r c1 u1 < <(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$d" "$c0" "$u0" "$c1" "$u1" "$t0" "$t1" "$n" "$(getconf CLK_TCK)" <<'PY' || true
import json, sys
d, c0, u0, c1, u1, t0, t1, n, hz = sys.argv[1:]
hz, n = int(hz), int(n)
try:
    j = json.loads(open(d + '/lg.json').read().strip().splitlines()[-1])
except (IndexError, ValueError):
    j = {}
full = open(d + '/log').read().count('queue full')
print(f"node CPU {(int(c1) - int(c0)) / hz:.2f} s (user {(int(u1) - int(u0)) / hz:.2f}), "
      f"{(int(c1) - int(c0)) / hz * 1000 / n:.2f} ms per join; wall {float(t1) - float(t0):.1f} s; "
      f"RSS {j.get('rss_per_participant_kb')} KB per participant; joined {j.get('joined')}, "
      f"failed {j.get('join_failed')}; signal messages/s in the window {j.get('signal_msgs_in_per_s')}; "
      f"queue full {full}")
PY
  rm -rf "$d"
done
