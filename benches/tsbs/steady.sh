#!/usr/bin/env bash
# Bytes per field value at rest with no manual flush or compact, WAL included: the engine issue's
# "steady state" condition. Loads TRUCKS trucks x DURATION of 10-second fleet data (seed 7) over
# HTTP (4 connections, default `sync` durability) into a fresh release server, then prints the
# size of the whole data directory (and of its WAL) divided by the field values loaded, right
# after the load and at 30, 60, 120, 200 and 300 seconds.
#
#   benches/tsbs/steady.sh [TRUCKS] [DURATION]          (defaults: 200 24h)
#
# Binaries: STRATA_BIN and STRATA_FLEET_BIN (default target/release/strata, strata-fleet).
set -euo pipefail
cd "$(dirname "$0")/../.."
TRUCKS=${1:-200}
DURATION=${2:-24h}
STRATA=${STRATA_BIN:-target/release/strata}
FLEET=${STRATA_FLEET_BIN:-target/release/strata-fleet}
PORT=${STRATA_TSBS_PORT:-17088}
WORK=$(mktemp -d /tmp/strata-steady.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
values=$("$FLEET" generate --trucks "$TRUCKS" --duration "$DURATION" --seed 7 --out "$WORK/fleet.lp" 2>&1 \
    | awk '$1 == "wrote" { print $4 }')
export STRATA_ADMIN_TOKEN=steady-admin-token-0123456789
"$STRATA" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$PORT" --no-mqtt \
    --log-format text --log-level warn >"$WORK/server.log" 2>&1 &
PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
"$FLEET" load --url "$URL" --token "$STRATA_ADMIN_TOKEN" --file "$WORK/fleet.lp" --connections 4 \
    --batch 5000 --quiet | grep -E '^rows'
echo "$values field values"
last=0
for s in 0 30 60 120 200 300; do
    sleep $((s - last)); last=$s
    dir=$(du -sb "$WORK/data" | cut -f1); wal=$(du -sb "$WORK/data/wal" | cut -f1)
    mem=$(curl -fs -H "Authorization: Bearer $STRATA_ADMIN_TOKEN" "$URL/metrics" | awk '$1 == "strata_memtable_bytes" { print $2 }')
    python3 -c "import sys; d, w, v = map(int, sys.argv[1:4]); print(f't+{sys.argv[4]:>3} s: data directory {d:,} bytes (WAL {w:,}, memtable {sys.argv[5]} bytes in memory) = {d / v:.3f} bytes/value')" \
        "$dir" "$wal" "$values" "$s" "$mem"
done
