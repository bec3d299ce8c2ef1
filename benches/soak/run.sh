#!/usr/bin/env bash
# MQTT connection soak: starts a release `strata` with a fresh data directory, provisions DEVICES
# devices through the bulk-import API, holds one MQTT connection per device publishing one QoS 1
# message per second for DURATION seconds, and prints errors, PUBACK latency and server RSS.
#
#   benches/soak/run.sh [DEVICES=10000] [DURATION_S=300]
#
# Env: HTTP_PORT (default 18086), MQTT_PORT (default 11883), KEEP=1 keeps the data directory.
set -euo pipefail
DEVICES=${1:-10000}
DURATION=${2:-300}
HTTP_PORT=${HTTP_PORT:-18086}
MQTT_PORT=${MQTT_PORT:-11883}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOKEN=soak-admin-token-0123456789abcdef0123456789

# One descriptor per connection on each side, plus files: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
echo "ulimit -n: $(ulimit -n)"
if [ "$(ulimit -n)" -lt $((DEVICES + 1000)) ]; then
  echo "ulimit -n $(ulimit -n) is too small for $DEVICES connections" >&2
  exit 1
fi

cargo build --release --manifest-path "$ROOT/Cargo.toml" -p strata-server --bin strata -p strata-benches --bin soak
DATA=$(mktemp -d /tmp/strata-soak.XXXXXX)
STRATA_ADMIN_TOKEN=$TOKEN "$ROOT/target/release/strata" serve --data-dir "$DATA/data" \
  --http-addr "127.0.0.1:$HTTP_PORT" --mqtt-addr "127.0.0.1:$MQTT_PORT" --log-level warn \
  2> "$DATA/server.log" &
PID=$!
cleanup() {
  kill -TERM "$PID" 2>/dev/null && wait "$PID" || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$HTTP_PORT/health" > /dev/null && break
  sleep 0.1
done
echo "server pid $PID, rss at start $(grep VmRSS /proc/$PID/status)"
"$ROOT/target/release/soak" --http "http://127.0.0.1:$HTTP_PORT" --token "$TOKEN" \
  --mqtt "127.0.0.1:$MQTT_PORT" --devices "$DEVICES" --duration "$DURATION" --server-pid "$PID"
echo "server log lines: $(wc -l < "$DATA/server.log") (warnings and errors)"
