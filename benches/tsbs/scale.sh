#!/usr/bin/env bash
# The engine issue's scale run: many devices over days, loaded, compacted, then the latency
# targets timed (benches/tsbs/scale/: t1-t3 as in benches/tsbs/targets; t4 over the last day).
#
#   benches/tsbs/scale.sh [TRUCKS] [DURATION] [INTERVAL] [RUNS]   (defaults: 10000 7d 100s 15)
#
# The defaults give 10,000 trucks x 7 days = 60.5M rows (the issue's "60M rows"). The fleet is
# generated on the fly by `strata-fleet load` (seed 7, from 2024-01-01T00:00:00Z; nothing is
# written to disk but the server's data), over 2 connections of 5,000 lines, `--durability none`
# like run.sh. Then: manual flush and compact (timed), disk use, and tsbs.py without DuckDB
# (answers are not checked here; run.sh checks the same queries against DuckDB at 200 trucks).
# Binaries: STRATA_BIN / STRATA_FLEET_BIN, default target/release (build them first).
set -euo pipefail
cd "$(dirname "$0")/../.."

TRUCKS=${1:-10000}
DURATION=${2:-7d}
INTERVAL=${3:-100s}
RUNS=${4:-15}
PORT=${STRATA_TSBS_PORT:-17088}
WORK=$(mktemp -d /tmp/strata-scale.XXXXXX)
FLEET=${STRATA_FLEET_BIN:-target/release/strata-fleet}
STRATA=${STRATA_BIN:-target/release/strata}
. benches/tsbs/server.sh
now() { date +%s.%N; }

echo "scale: $TRUCKS trucks x $DURATION every $INTERVAL; load average $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(now)
"$FLEET" load --url "$URL" --token "$STRATA_ADMIN_TOKEN" --trucks "$TRUCKS" --duration "$DURATION" \
    --interval "$INTERVAL" --seed 7 --connections 2 --batch 5000 --quiet | grep -E '^rows' || true
t1=$(now)
curl -fs -XPOST "${auth[@]}" "$URL/api/v1/flush" >/dev/null
t2=$(now)
curl -fs -XPOST "${auth[@]}" "$URL/api/v1/compact" >/dev/null
t3=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
    'BEGIN { printf "load %.1f s, flush %.1f s, compact %.1f s\n", b - a, c - b, d - c }'
echo "strata: $(metric strata_segments) segments, $(metric strata_series) series, data dir $(du -sh "$WORK/strata" | cut -f1)"
echo "server RSS: $(awk '/VmRSS/ { print $2 / 1024 " MiB" }' "/proc/$SERVER_PID/status")"
echo "query load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 benches/tsbs/tsbs.py --url "$URL" --token "$STRATA_ADMIN_TOKEN" --runs "$RUNS" \
    --queries benches/tsbs/scale
