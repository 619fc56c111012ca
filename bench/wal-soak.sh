#!/bin/sh
# Saturating chat load with the WAL watched: bench/chat-load.mjs with 100
# clients, 4 messages in flight each, for SECONDS (default 600), nodo.db-wal
# sampled every 100 ms (its largest size is printed) and logged once a second
# to CSV (t_s,wal_bytes,db_bytes,delivered).
#   bench/wal-soak.sh [SECONDS] [CSV]      NODO_BIN picks the binary
# An unbounded build grows the WAL by ~70 MB/s at this load: MAX_WAL_MB
# (default 20000) stops the run before it fills the disk.
set -eu
here=$(dirname "$0")
seconds=${1:-600}
csv=${2:-/tmp/wal-soak.csv}
exec node "$here/chat-load.mjs" --clients 100 --window 4 --seconds "$seconds" \
  --wal-log "$csv" --max-wal-mb "${MAX_WAL_MB:-20000}"
