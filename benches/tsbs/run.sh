#!/usr/bin/env bash
# The twelve TSBS iot queries on Strata, timed and checked against DuckDB.
#
#   benches/tsbs/run.sh [TRUCKS] [DURATION] [RUNS]        (defaults: 200 24h 7)
#
# Builds the release `strata` and `strata-fleet` (skip with STRATA_NO_BUILD=1 to use the binaries
# already in target/release, or those named by STRATA_BIN and STRATA_FLEET_BIN), generates TRUCKS trucks x DURATION of 10-second fleet data
# (seed 7, starting 2024-01-01T00:00:00Z), starts a release server on 127.0.0.1:17087, loads the
# data over HTTP, flushes and compacts, then runs benches/tsbs/tsbs.py: each query once to warm
# up and RUNS times over one keep-alive HTTP connection, median client wall time, and every answer
# compared with DuckDB's on the same line-protocol file. Needs python3 with duckdb.
# TSBS_QUERIES=benches/tsbs/targets runs the four latency targets of the SQL issue instead.
# FRESH=1 skips the manual flush and compact: queries run right after the load, as a user would
# (the engine issue's condition for its latency targets); the data is then in memtables and the
# segments background flushes wrote.
# ROLLUPS=1h (a comma-separated list of intervals) sets a lifecycle policy with those rollups on
# database `default` before the load, as an operator would: the rollups are then kept up to date
# from the writes (docs/rollups.md), and the planner answers a time_bucket aggregate such as t4
# from the coarsest one that gives the same answer (checked against DuckDB as every answer is).
set -euo pipefail
cd "$(dirname "$0")/../.."

TRUCKS=${1:-200}
DURATION=${2:-24h}
RUNS=${3:-7}
PORT=${STRATA_TSBS_PORT:-17087}
WORK=$(mktemp -d /tmp/strata-tsbs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT   # benches/tsbs/server.sh replaces it once the server runs

if [ "${STRATA_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p strata-server -p strata-client
fi
FLEET=${STRATA_FLEET_BIN:-target/release/strata-fleet}
STRATA=${STRATA_BIN:-target/release/strata}
DATA="$WORK/fleet.lp"

"$FLEET" generate --trucks "$TRUCKS" --duration "$DURATION" --seed 7 --out "$DATA" >&2
echo "dataset: $TRUCKS trucks x $DURATION, $(wc -l < "$DATA") lines, $(du -h "$DATA" | cut -f1) of line protocol"

. benches/tsbs/server.sh

if [ -n "${ROLLUPS:-}" ]; then
    policy=$(python3 -c 'import json, sys; print(json.dumps({"hot": None, "retention": None,
        "rollups": [{"every": e, "keep": "5y"} for e in sys.argv[1].split(",")]}))' "$ROLLUPS")
    curl -fs -XPUT "${auth[@]}" -H 'Content-Type: application/json' \
        "$URL/api/v1/databases/default/lifecycle" -d "$policy" >/dev/null
    echo "lifecycle: rollups $ROLLUPS of database default, set before the load"
fi

"$FLEET" load --url "$URL" --token "$STRATA_ADMIN_TOKEN" --file "$DATA" --connections 2 --batch 5000 --quiet \
    | grep -E '^rows' || true
if [ "${FRESH:-0}" != 1 ]; then
    curl -fs -XPOST "${auth[@]}" "$URL/api/v1/flush" >/dev/null
    curl -fs -XPOST "${auth[@]}" "$URL/api/v1/compact" >/dev/null
fi
echo "strata: $(metric strata_segments) segments, $(metric strata_series) series"

python3 benches/tsbs/tsbs.py --url "$URL" --token "$STRATA_ADMIN_TOKEN" --lp "$DATA" --runs "$RUNS" \
    ${TSBS_QUERIES:+--queries "$TSBS_QUERIES"}
