#!/usr/bin/env bash
# A/B of the hot → cold move's cost between two builds on the same data: loads TRUCKS trucks x
# DAYS days every INTERVAL once (binary A), flushes, and keeps that data directory; then ROUNDS
# times, alternating A and B, copies it afresh, starts the build on the copy, sets `hot: 1d`
# and times one maintenance run (the move alone, nothing else running): wall seconds, server
# CPU seconds (/proc/PID/stat), MB of segments per CPU second. Alternating cancels most of the
# drift of a shared machine that separate runs of `run.sh` suffer.
#
#   benches/cold/ab.sh A_BIN B_BIN FLEET_BIN [TRUCKS] [DAYS] [INTERVAL]   (defaults: 1000 30 1m)
#
# ROUNDS (default 3) pairs; work files in $WORK (default: a new directory under /tmp, removed
# at exit unless KEEP=1). PERF=FILE records B's move of the last round with `perf record` into
# FILE.
set -euo pipefail
A=$1 B=$2 FLEET=$3
TRUCKS=${4:-1000} DAYS=${5:-30} INTERVAL=${6:-1m}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-$(mktemp -d /tmp/strata-cold-ab.XXXXXX)}
TOKEN=bench-admin-token-0123456789
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
post() { curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$@"; }
serve() { # binary data-dir cold-dir
    STRATA_ADMIN_TOKEN=$TOKEN "$1" serve --data-dir "$2" --http-addr "127.0.0.1:$PORT" --no-mqtt \
        --no-print-admin-token --cold-store "file://$3" --lifecycle-interval 1h \
        >>"$WORK/server.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 1200); do curl -fs "$URL/ping" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "no answer from $URL" >&2
    return 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$PID/stat"; }
now() { date +%s.%N; }

mkdir -p "$WORK/cold0"
serve "$A" "$WORK/data0" "$WORK/cold0"
START=$(( ($(date +%s) - DAYS * 86400 - 3600) * 1000000000 ))
"$FLEET" load --url "$URL" --token "$TOKEN" --trucks "$TRUCKS" --start "$START" \
    --duration "$((DAYS * 24))h" --interval "$INTERVAL" --missing 0 --offline 0 --seed 7 --quiet |
    grep -E '^rows' || true
post "$URL/api/v1/flush" >/dev/null
stop
echo "data: $(du -sm "$WORK/data0" | cut -f1) MB, $(find "$WORK/data0" -name '*.seg' | wc -l) segments"

move() { # label binary
    rm -rf "$WORK/data" "$WORK/cold"
    cp -r "$WORK/data0" "$WORK/data"
    mkdir -p "$WORK/cold"
    sync
    serve "$2" "$WORK/data" "$WORK/cold"
    post -X PUT -H 'Content-Type: application/json' --data '{"hot": "1d"}' \
        "$URL/api/v1/databases/default/lifecycle" >/dev/null
    local c0 t0 c1 t1 perf=
    if [ "$1" = B ] && [ -n "${PERF:-}" ] && [ "${LAST:-0}" = 1 ]; then
        perf record -F 499 -p "$PID" -o "$PERF" >/dev/null 2>&1 &
        perf=$!
        sleep 0.5
    fi
    c0=$(cpu); t0=$(now)
    post "$URL/api/v1/lifecycle/run" >"$WORK/run.json"
    t1=$(now); c1=$(cpu)
    [ -n "$perf" ] && { kill -INT "$perf" 2>/dev/null || true; wait "$perf" || true; }
    stop
    python3 - "$1" "$WORK/run.json" "$t0" "$t1" "$c0" "$c1" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
t0, t1, c0, c1 = map(float, sys.argv[3:7])
r = json.load(open(path))
seg = sum(m["segment_bytes"] for m in r["moved"]); obj = sum(m["object_bytes"] for m in r["moved"])
s, cpu = t1 - t0, c1 - c0
print(f"{label}: {len(r['moved'])} objects, {seg/1e6:.1f} MB -> {obj/1e6:.1f} MB ({obj/max(seg,1):.3f}x) "
      f"in {s:.2f} s = {seg/1e6/s:.1f} MB/s; CPU {cpu:.2f} s = {seg/1e6/max(cpu,1e-9):.1f} MB per CPU second; "
      f"errors {r['errors']}")
PY
}
for round in $(seq 1 "$ROUNDS"); do
    [ "$round" = "$ROUNDS" ] && LAST=1
    move A "$A"
    move B "$B"
done
