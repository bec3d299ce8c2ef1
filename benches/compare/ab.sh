#!/usr/bin/env bash
# Ingest A/B of Strata builds: each build in turn loads the same line-protocol file into a fresh
# data directory (4 connections, 5,000-line batches, `sync` durability) and prints its rows/s,
# p99 write latency and the server's CPU seconds when the load ends. Builds alternate for ROUNDS
# rounds, so a noisy machine spreads its noise over all of them.
#
#   benches/compare/ab.sh FILE.lp ROUNDS BIN...
#
# FILE.lp: e.g. `strata-fleet generate --trucks 200 --duration 24h --seed 7 --out FILE.lp`.
# The loader is $STRATA_FLEET_BIN (default target/release/strata-fleet); CONNECTIONS and BATCH
# override the load's settings.
set -euo pipefail
FILE=$1 ROUNDS=$2
shift 2
FLEET=${STRATA_FLEET_BIN:-target/release/strata-fleet}
export STRATA_ADMIN_TOKEN=ab-admin-token-0123456789
WORK=$(mktemp -d /tmp/strata-ab.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        rm -rf "$WORK/data"
        "$bin" serve --data-dir "$WORK/data" --http-addr 127.0.0.1:17095 --log-format text \
            --log-level warn >"$WORK/server.log" 2>&1 &
        PID=$!
        for _ in $(seq 1 100); do curl -fs http://127.0.0.1:17095/health >/dev/null && break; sleep 0.1; done
        out=$("$FLEET" load --url http://127.0.0.1:17095 --file "$FILE" \
            --connections "${CONNECTIONS:-4}" --batch "${BATCH:-5000}" --quiet \
            --token "$STRATA_ADMIN_TOKEN" 2>&1)
        cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$PID/stat")
        rows=$(echo "$out" | awk '/^rows/ { gsub("[(]", "", $3); print $3 }')
        p99=$(echo "$out" | awk '/^latency/ { print $8 }')
        echo "$bin rows/s $rows p99_ms $p99 server_cpu_s $cpu"
        kill "$PID"
        wait "$PID" 2>/dev/null || true
        PID=
    done
done
