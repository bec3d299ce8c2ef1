#!/usr/bin/env bash
# Backup / restore figures on a realistic data set: the fleet simulator's trucks reporting every
# minute for DAYS days, loaded into a running server and flushed; then
#   1. a first `strata backup` (MB/s of the full copy),
#   2. one more hour of data, flushed, and a second, incremental run (time, segments skipped),
#   3. `strata backup verify` (time),
#   4. `strata restore` into a new directory (time),
#   5. the restored server's SQL answers (row count, count and sum per device, per stream) compared
#      with the original's, byte for byte.
#
#   benches/backup/run.sh [TRUCKS] [DAYS] [INTERVAL]         (defaults: 200 30 1m)
#
# Binaries: $STRATA_BIN and $FLEET_BIN, else $CARGO_TARGET_DIR/{release,debug}/ (built if missing,
# release preferred). Work files go to $WORK (default: a new directory under /tmp), removed at exit
# unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

TRUCKS=${1:-200}
DAYS=${2:-30}
INTERVAL=${3:-1m}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
pick() { # name
    for p in release debug; do [ -x "$TARGET_DIR/$p/$1" ] && { echo "$TARGET_DIR/$p/$1"; return; }; done
    cargo build --release -q --workspace --bins && echo "$TARGET_DIR/release/$1"
}
STRATA=${STRATA_BIN:-$(pick strata)}
FLEET=${FLEET_BIN:-$(pick strata-fleet)}
WORK=${WORK:-$(mktemp -d /tmp/strata-backup-bench.XXXXXX)}
TOKEN=bench-admin-token-0123456789
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1/ping" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
serve() { # data-dir port
    STRATA_ADMIN_TOKEN=$TOKEN "$STRATA" serve --data-dir "$1" --http-addr "127.0.0.1:$2" --no-mqtt \
        --no-print-admin-token >"$1.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$2"
}
post() { curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$@"; }
sql() { # url query
    post -H 'Accept: text/csv' --data-binary "$2" "$1/api/v1/query"
}
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

SRC=$WORK/source
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
serve "$SRC" "$PORT"
DURATION=$((DAYS * 24))h
START=$(( ($(date +%s) - DAYS * 86400 - 3600) * 1000000000 ))
echo "binary: $STRATA"
echo "loading $TRUCKS trucks x $DAYS days every $INTERVAL ..."
T0=$(now)
"$FLEET" load --url "$URL" --token "$TOKEN" --trucks "$TRUCKS" --start "$START" --duration "$DURATION" \
    --interval "$INTERVAL" --missing 0 --offline 0 --seed 7 --quiet | grep -E '^rows' || true
post "$URL/api/v1/flush" >/dev/null
echo "load + flush: $(secs "$T0" "$(now)") s; data directory $(du -sm "$SRC" | cut -f1) MB"

TO="file://$WORK/target"
T0=$(now)
FIRST=$("$STRATA" backup --to "$TO" --url "$URL" --token "$TOKEN" --quiet --json)
T1=$(now)
echo "first backup: $(secs "$T0" "$T1") s, $(echo "$FIRST" | field "['copied_bytes']") bytes, $(echo "$FIRST" | field "['copied_files']") files, $(echo "$FIRST" | field "['mb_per_s']") MB/s"

# One more hour of data (the newest hour), flushed: the incremental run copies only that.
NEXT=$(( ($(date +%s) - 3600) * 1000000000 ))
"$FLEET" load --url "$URL" --token "$TOKEN" --trucks "$TRUCKS" --start "$NEXT" --duration 1h \
    --interval "$INTERVAL" --missing 0 --offline 0 --seed 8 --quiet >/dev/null
post "$URL/api/v1/flush" >/dev/null
T0=$(now)
SECOND=$("$STRATA" backup --to "$TO" --url "$URL" --token "$TOKEN" --quiet --json)
T1=$(now)
echo "incremental backup: $(secs "$T0" "$T1") s, copied $(echo "$SECOND" | field "['copied_bytes']") bytes in $(echo "$SECOND" | field "['copied_files']") files, skipped $(echo "$SECOND" | field "['skipped_segments']") segments ($(echo "$SECOND" | field "['skipped_bytes']") bytes)"

T0=$(now)
"$STRATA" backup verify --from "$TO" | sed 's/^/verify: /'
echo "verify (both backups): $(secs "$T0" "$(now)") s"

DST=$WORK/restored
T0=$(now)
"$STRATA" restore --from "$TO" --data-dir "$DST" --quiet >/dev/null
T1=$(now)
echo "restore: $(secs "$T0" "$T1") s ($(du -sm "$DST" | cut -f1) MB)"

RPORT=$(free_port)
RURL=http://127.0.0.1:$RPORT
T0=$(now)
serve "$DST" "$RPORT"
echo "restored server up (recovery) in $(secs "$T0" "$(now)") s"
same=0
for q in \
    "SELECT count(*) AS n FROM readings" \
    "SELECT device, count(*) AS n, sum(velocity) AS v, sum(fuel_consumption) AS f, min(time) AS first, max(time) AS last FROM readings GROUP BY device ORDER BY device" \
    "SELECT device, count(*) AS n, sum(fuel_state) AS f FROM diagnostics GROUP BY device ORDER BY device"; do
    a=$(sql "$URL" "$q"); b=$(sql "$RURL" "$q")
    if [ "$a" = "$b" ]; then
        echo "equal ($(echo "$a" | wc -l) lines): $q"
    else
        echo "DIFFERENT: $q"; same=1
    fi
done
echo "rows: $(sql "$URL" 'SELECT count(*) AS n FROM readings' | tail -1) readings, $(sql "$URL" 'SELECT count(*) AS n FROM diagnostics' | tail -1) diagnostics"
exit $same
