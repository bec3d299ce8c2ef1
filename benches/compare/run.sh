#!/usr/bin/env bash
# Side-by-side ingest and storage comparison: Strata vs InfluxDB 1.6 vs VictoriaMetrics on the same
# simulated truck fleet, same loader, same connections and batch size, all on this machine.
#
#   benches/compare/run.sh [TRUCKS] [DURATION] [CONNECTIONS] [BATCH]     (defaults: 1000 2h 4 5000)
#
# Installs influxdb and victoria-metrics from Debian if missing (needs root/apt). Prints rows/s and
# write latency for each database and bytes per field value on disk after each one has compacted;
# for Strata also the steady state the engine issue measures (whole data directory, WAL included,
# STEADY seconds after the load with no manual flush or compact; default 60), then after a manual
# flush + compact. Builds the release binaries unless STRATA_NO_BUILD=1 (then STRATA_BIN and
# STRATA_FLEET_BIN name them); SKIP_INFLUX=1 leaves InfluxDB out.
set -euo pipefail
cd "$(dirname "$0")/../.."

TRUCKS=${1:-1000}
DURATION=${2:-2h}
CONNECTIONS=${3:-4}
BATCH=${4:-5000}
WORK=$(mktemp -d /tmp/strata-compare.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

SKIP_INFLUX=${SKIP_INFLUX:-0}
STEADY=${STEADY:-60}
need() { command -v "$1" >/dev/null || { apt-get install -y -q "$2" >/dev/null; }; }
[ "$SKIP_INFLUX" = 1 ] || need influxd influxdb
need victoria-metrics victoria-metrics

if [ "${STRATA_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p strata-server -p strata-client
fi
FLEET=${STRATA_FLEET_BIN:-target/release/strata-fleet}
STRATA=${STRATA_BIN:-target/release/strata}
DATA="$WORK/fleet.lp"
"$FLEET" generate --trucks "$TRUCKS" --duration "$DURATION" --seed 7 --out "$DATA" >&2
VALUES=$(awk '{ n = split($2, f, ","); v += n } END { print v }' "$DATA")
echo "dataset: $TRUCKS trucks x $DURATION, $(wc -l < "$DATA") rows, $VALUES field values, $(du -h "$DATA" | cut -f1) of line protocol"

wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
load() { # name url extra-args...
    local name=$1 url=$2; shift 2
    local out
    out=$("$FLEET" load --url "$url" --file "$DATA" --connections "$CONNECTIONS" --batch "$BATCH" --quiet "$@" 2>&1)
    echo "$name: $(echo "$out" | grep -E '^rows') | $(echo "$out" | grep -E '^latency')"
}
per_value() { echo "scale=3; $1 / $VALUES" | bc; }

# --- Strata (sync durability: every acknowledged batch is fdatasynced) ---
export STRATA_ADMIN_TOKEN=compare-admin-token
"$STRATA" serve --data-dir "$WORK/strata" --http-addr 127.0.0.1:17086 --log-format text --log-level warn &
PIDS+=($!)
wait_http http://127.0.0.1:17086/health
load strata http://127.0.0.1:17086 --token "$STRATA_ADMIN_TOKEN"
sleep "$STEADY" # background flush (idle after 30 s) and compaction, as a user would leave it
ALL=$(du -sb "$WORK/strata" | cut -f1)
echo "strata: data directory ${STEADY} s after the load (WAL included, no manual flush) $ALL bytes = $(per_value "$ALL") bytes/value"
curl -fs -XPOST -H "Authorization: Bearer $STRATA_ADMIN_TOKEN" http://127.0.0.1:17086/api/v1/flush >/dev/null
curl -fs -XPOST -H "Authorization: Bearer $STRATA_ADMIN_TOKEN" http://127.0.0.1:17086/api/v1/compact >/dev/null
SEG=$(du -sb "$WORK/strata/segments" | cut -f1)
echo "strata: segments $SEG bytes = $(per_value "$SEG") bytes/value"

# --- InfluxDB 1.6 ---
if [ "$SKIP_INFLUX" != 1 ]; then
mkdir -p "$WORK/influx"
cat > "$WORK/influx/influxdb.conf" <<CONF
bind-address = "127.0.0.1:18088"
reporting-disabled = true
[meta]
  dir = "$WORK/influx/meta"
[data]
  dir = "$WORK/influx/data"
  wal-dir = "$WORK/influx/wal"
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "10s"
[http]
  bind-address = "127.0.0.1:18086"
  log-enabled = false
CONF
influxd -config "$WORK/influx/influxdb.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:18086/ping
curl -fs -XPOST http://127.0.0.1:18086/query --data-urlencode 'q=CREATE DATABASE "default"' >/dev/null
load influxdb-1.6 http://127.0.0.1:18086 --write-path /write
sleep 60 # let the cache snapshot and full compaction run
INF=$(du -sb "$WORK/influx/data" | cut -f1)
echo "influxdb-1.6: data $INF bytes = $(per_value "$INF") bytes/value"
fi

# --- VictoriaMetrics ---
victoria-metrics -storageDataPath "$WORK/vm" -retentionPeriod 100y -httpListenAddr 127.0.0.1:18428 -loggerLevel ERROR >/dev/null 2>&1 &
PIDS+=($!)
wait_http http://127.0.0.1:18428/health
load victoria-metrics http://127.0.0.1:18428 --write-path /write
curl -fs http://127.0.0.1:18428/internal/force_flush >/dev/null || true
curl -fs http://127.0.0.1:18428/internal/force_merge >/dev/null || true
sleep 20
VM=$(du -sb "$WORK/vm" | cut -f1)
echo "victoria-metrics: storage $VM bytes = $(per_value "$VM") bytes/value"
