#!/usr/bin/env bash
# Chat throughput of one node against two, with chat-load.mjs: one node on
# SQLite, one node on PostgreSQL, two nodes sharing Redis and PostgreSQL, and
# two nodes on PostgreSQL alone (the bus over LISTEN/NOTIFY), with each pair
# of clients split across the two nodes (every message crosses nodes).
# Starts a throwaway redis-server and PostgreSQL (scripts/pg-scratch), runs
# each set-up ROUNDS times in turn, and stops them.
#   bench/chat-cluster.sh [--clients 50] [--seconds 10] [--rounds 3]
# NODO_BIN picks the binary (default target/release/nodo).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=50; seconds=10; rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/nodo-chat-cluster.XXXXXX)
chmod 755 "$work"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
pg_server=$(scripts/pg-scratch start "$work/pg" "$(free_port)")
cleanup() { kill "$redis_pid" 2>/dev/null || true; scripts/pg-scratch stop "$work/pg" || true; rm -rf "$work"; }
trap cleanup EXIT
n=0
# run MODE: sqlite | pg | cluster | pgonly
run() {
  local mode=$1 args=() setup line
  n=$((n + 1))
  case "$mode" in
    sqlite) setup="one node, SQLite" ;;
    pg) setup="one node, PostgreSQL" ;;
    cluster) setup="two nodes, Redis + PostgreSQL" ;;
    pgonly) setup="two nodes, PostgreSQL alone" ;;
  esac
  if [ "$mode" != sqlite ]; then
    psql "$pg_server/postgres" -qc "CREATE DATABASE nodo_bench_$n"
    args+=(--database-url "$pg_server/nodo_bench_$n")
  fi
  [ "$mode" = cluster ] && args+=(--redis-url "redis://127.0.0.1:$redis_port")
  [ "$mode" = pgonly ] && args+=(--two-nodes)
  line=$(node bench/chat-load.mjs --clients "$clients" --seconds "$seconds" "${args[@]}" 2>&1 \
    | grep -E 'msg/s|latency send -> ack|Error' | tr '\n' ' ')
  echo "$setup: $line"
}
for r in $(seq "$rounds"); do
  echo "== round $r"
  for mode in sqlite pg cluster pgonly; do run "$mode"; done
done
