#!/usr/bin/env bash
# Cold-tier query figures: the fleet simulator's trucks reporting every INTERVAL for DAYS days,
# loaded into a server with `--cold-store file://...`, flushed, then everything older than one
# day moved cold (`hot: 1d` + a maintenance run). Timed over HTTP (curl's total time, best of
# REPEAT unless said otherwise), and each cold answer compared with the hot one:
#   1. hot:  one truck, one day, hourly mean of velocity; count(*) over the days that go cold;
#   2. the rollups' back-fill (its own maintenance run, then a flush), then the move (seconds, objects,
#      segment MB, object MB) with the fleet simulator writing INGEST of new data for the same
#      trucks into another database meanwhile, its rows/s compared with the same load alone
#      just before (INGEST=0 skips both loads; default INGEST=1d);
#   3. cold, cold cache (server restarted, so the cache is empty): the same one-truck query once,
#      as the process's first query and (after another restart) after one query of hot data;
#   4. cold, warm cache: the same query, best of REPEAT;
#   5. count(*) over the cold days after another restart (cold cache), then warm;
#   6. the whole fleet over all DAYS, daily mean of velocity by fleet, answered from the 1-hour
#      rollup the policy keeps (`rollups: [{every: 1h}]`; EXPLAIN must show the rollup table), and
#      the same query over raw data (a `WHERE velocity IS NOT NULL` keeps it off the rollup, see
#      docs/rollups.md), answers compared to 1e-9.
#
#   benches/cold/run.sh [TRUCKS] [DAYS] [INTERVAL]         (defaults: 100 7 1m)
#
# ROLLUPS lists the rollup intervals of the policy (default `1h`; e.g. `1h,1d`), each kept 5y, with
# raw data kept RETENTION (default 400d; `null`: forever, and then no rollup answers); step 6 reports
# which rollup table the planner chose.
# The server runs with `--lifecycle-interval 1h`, so only the runs this script asks for move data.
# STORE=s3 puts the cold tier on a moto S3 server started here (`moto_server`, from
# `pip install "moto[server]"`), bucket `bench`, through the usual AWS_* variables; the default
# STORE=file uses a local directory.
#
# Binaries: $STRATA_BIN and $FLEET_BIN, else $CARGO_TARGET_DIR/{release,debug}/ (built if missing,
# release preferred). CACHE_MB sets --cold-cache-mb (default 1024). PERF=FILE records the server
# with `perf record` over the move. Work files go to $WORK (default:
# a new directory under /tmp), removed at exit unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

TRUCKS=${1:-100}
DAYS=${2:-7}
INTERVAL=${3:-1m}
REPEAT=${REPEAT:-5}
CACHE_MB=${CACHE_MB:-1024}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
pick() { # name
    for p in release debug; do [ -x "$TARGET_DIR/$p/$1" ] && { echo "$TARGET_DIR/$p/$1"; return; }; done
    cargo build --release -q --workspace --bins && echo "$TARGET_DIR/release/$1"
}
STRATA=${STRATA_BIN:-$(pick strata)}
FLEET=${FLEET_BIN:-$(pick strata-fleet)}
WORK=${WORK:-$(mktemp -d /tmp/strata-cold-bench.XXXXXX)}
TOKEN=bench-admin-token-0123456789
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 1200); do curl -fs "$1/ping" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
DATA=$WORK/data
COLD=$WORK/cold
mkdir -p "$COLD"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
STORE=${STORE:-file}
MOTO_PID=
case "$STORE" in
    file) COLD_URL="file://$COLD" ;;
    s3)
        MOTO_PORT=$(free_port)
        moto_server -p "$MOTO_PORT" -H 127.0.0.1 >"$WORK/moto.log" 2>&1 &
        MOTO_PID=$!
        for _ in $(seq 1 100); do curl -fs -X PUT "http://127.0.0.1:$MOTO_PORT/bench" >/dev/null 2>&1 && break; sleep 0.1; done
        export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test \
            AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
        COLD_URL="s3://bench/cold"
        ;;
    *) echo "STORE must be file or s3" >&2; exit 2 ;;
esac
serve() {
    STRATA_ADMIN_TOKEN=$TOKEN "$STRATA" serve --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --no-mqtt \
        --no-print-admin-token --cold-store "$COLD_URL" --cold-cache-mb "$CACHE_MB" --lifecycle-interval 1h \
        >>"$WORK/server.log" 2>&1 &
    PID=$!
    wait_http "$URL"
}
restart() { kill "$PID"; wait "$PID" 2>/dev/null || true; serve; }
post() { curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$@"; }
sql() { post -H 'Accept: text/csv' --data-binary "$1" "$URL/api/v1/query"; }
timed() { # query -> seconds (answer in $WORK/last.csv)
    curl -fsS -o "$WORK/last.csv" -w '%{time_total}' -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Accept: text/csv' --data-binary "$1" "$URL/api/v1/query"
}
best() { # query -> best of REPEAT in ms
    local b=999999
    for _ in $(seq 1 "$REPEAT"); do
        local t; t=$(timed "$1")
        b=$(python3 -c "print(min($b, $t * 1000))")
    done
    printf '%.1f' "$b"
}
ms() { python3 -c "print('%.1f' % ($1 * 1000))"; }
now() { date +%s.%N; }
secs() { python3 -c "print('%.2f' % ($2 - $1))"; }
cold_metric() { curl -fs -H "Authorization: Bearer $TOKEN" "$URL/metrics" | awk -v m="$1" 'index($1, m) == 1 && $1 !~ /^#/ { print $NF }' | head -1; }

serve
echo "binary: $STRATA; cold store: $COLD_URL"
DURATION=$((DAYS * 24))h
NOW=$(date +%s)
START=$(( (NOW - DAYS * 86400 - 3600) * 1000000000 ))
echo "loading $TRUCKS trucks x $DAYS days every $INTERVAL ..."
T0=$(now)
"$FLEET" load --url "$URL" --token "$TOKEN" --trucks "$TRUCKS" --start "$START" --duration "$DURATION" \
    --interval "$INTERVAL" --missing 0 --offline 0 --seed 7 --quiet | grep -E '^rows' || true
post "$URL/api/v1/flush" >/dev/null
echo "load + flush: $(secs "$T0" "$(now)") s; data directory $(du -sm "$DATA" | cut -f1) MB"

# One whole UTC day three days ago (cold after the move), and the oldest day that goes cold.
DAY=$(( (NOW / 86400 - 3) * 86400 ))
CUT=$(( (NOW / 86400 - 1) * 86400 ))
Q1="SELECT date_bin(INTERVAL '1 hour', time) AS h, avg(velocity) AS mean FROM readings \
WHERE device = 'truck_7' AND time >= to_timestamp($DAY) AND time < to_timestamp($((DAY + 86400))) \
GROUP BY h ORDER BY h"
QC="SELECT count(*) AS n FROM readings WHERE time < to_timestamp($CUT)"

HOT1=$(best "$Q1"); cp "$WORK/last.csv" "$WORK/q1-hot.csv"
HOTC=$(best "$QC"); cp "$WORK/last.csv" "$WORK/qc-hot.csv"
echo "hot:  one truck one day hourly mean ${HOT1} ms (best of $REPEAT); count(*) over the cold-to-be days ${HOTC} ms = $(tail -1 "$WORK/qc-hot.csv") rows"

ROLLUPS=${ROLLUPS:-1h}
# A rollup answers queries only when it keeps every window the raw data keeps (docs/rollups.md):
# raw data kept RETENTION (default 400d, the issue's example; `null` keeps it forever, and then
# no rollup kept 5y is read), rollups 5y.
RETENTION=${RETENTION:-400d}
RETENTION_JSON=$([ "$RETENTION" = null ] && echo null || echo "\"$RETENTION\"")
ROLLUP_JSON=$(python3 -c 'import json,sys; print(json.dumps([{"every": e, "keep": "5y"} for e in sys.argv[1].split(",")]))' "$ROLLUPS")
# The rollups first, back-filled by a run of their own (so the move below is timed alone).
post -X PUT -H 'Content-Type: application/json' --data "{\"retention\": $RETENTION_JSON, \"rollups\": $ROLLUP_JSON}" \
    "$URL/api/v1/databases/default/lifecycle" >/dev/null
T0=$(now)
post "$URL/api/v1/lifecycle/run" >/dev/null
echo "rollups $ROLLUPS back-filled in $(secs "$T0" "$(now)") s"
# The back-fill's rows are in memtables: flushed now, so neither the ingest below nor the move
# shares the CPU with that flush (it took about a third of the samples of a move timed without).
T0=$(now)
post "$URL/api/v1/flush" >/dev/null
echo "flush after the back-fill: $(secs "$T0" "$(now)") s"
INGEST=${INGEST:-1d}
# CPU seconds (user + system) the server has used so far, from /proc/PID/stat.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$PID/stat"; }
ingest() { # database -> the loader's rows/s line and its failed requests (new data, ending now)
    /usr/bin/time -f "%U %S" -o "$WORK/loader-cpu-$1" "$FLEET" load --url "$URL" --token "$TOKEN" --db "$1" --trucks "$TRUCKS" --start now \
        --duration "$INGEST" --interval "$INTERVAL" --missing 0 --offline 0 --seed 9 --quiet \
        >"$WORK/ingest-$1.log" 2>&1 || true
    local loader
    loader=$(awk 'END { printf "%.2f", $1 + $2 }' "$WORK/loader-cpu-$1")
    echo "$(grep -E '^rows' "$WORK/ingest-$1.log" | tr -s ' '); $(grep -cE '^request .* failed' "$WORK/ingest-$1.log") requests refused; loader CPU ${loader} s"
}
if [ "$INGEST" != 0 ]; then
    C0=$(cpu); T0=$(now)
    LINE=$(ingest ingest_alone)
    echo "ingest alone ($INGEST of $TRUCKS trucks into database ingest_alone): $LINE; server CPU $(echo "$(cpu) - $C0" | bc) s in $(secs "$T0" "$(now)") s"
fi
post "$URL/api/v1/flush" >/dev/null
post -X PUT -H 'Content-Type: application/json' --data "{\"hot\": \"1d\", \"retention\": $RETENTION_JSON, \"rollups\": $ROLLUP_JSON}" \
    "$URL/api/v1/databases/default/lifecycle" >/dev/null
C0=$(cpu); T0=$(now)
post "$URL/api/v1/lifecycle/run" >"$WORK/run.json" &
RUN_PID=$!
PERF_PID=
# PERF=FILE records the server's samples over the move (`perf record`) into FILE.
[ -n "${PERF:-}" ] && { perf record -F 499 -p "$PID" -o "$PERF" >/dev/null 2>&1 & PERF_PID=$!; }
if [ "$INGEST" != 0 ]; then
    LINE=$(ingest ingest_during_move)
    echo "ingest during the move (database ingest_during_move): $LINE, loader done after $(secs "$T0" "$(now)") s"
fi
wait "$RUN_PID"
T1=$(now)
[ -n "$PERF_PID" ] && { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; }
MOVE_CPU=$(echo "$(cpu) - $C0" | bc)
python3 - "$WORK/run.json" "$(secs "$T0" "$T1")" "$MOVE_CPU" "$INGEST" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = float(sys.argv[2]); cpu = float(sys.argv[3])
seg = sum(m["segment_bytes"] for m in r["moved"]); obj = sum(m["object_bytes"] for m in r["moved"])
rows = sum(m["rows"] for m in r["moved"])
print(f"move: {len(r['moved'])} objects, {rows} rows, segments {seg/1e6:.1f} MB -> objects {obj/1e6:.1f} MB "
      f"({obj/max(seg,1):.2f}x), {s:.2f} s = {seg/1e6/max(s,1e-9):.1f} MB/s; errors {r['errors']}")
# The server's CPU over the move (with the ingest's share when INGEST is set): segment MB per
# CPU second says what a move costs whatever else shares the cores.
alone = " (the move alone)" if sys.argv[4] == "0" else " (move + the ingest meanwhile)"
print(f"move CPU: server {cpu:.2f} s{alone} = {cpu/max(s,1e-9):.2f} cores, {seg/1e6/max(cpu,1e-9):.1f} MB of segments per CPU second")
PY
[ "$STORE" = file ] && echo "cold store: $(du -sm "$COLD" | cut -f1) MB in $(find "$COLD" -name '*.parquet' | wc -l) objects"

# Answers compared to 1e-9 relative: from a rollup a mean is sum / count, which may differ from
# the raw mean in its last bits.
same() { # a.csv b.csv -> equal | DIFFERENT (same rows; text columns equal, numbers to 1e-9)
    python3 - "$1" "$2" <<'PY'
import csv, sys
def close(x, y):
    try:
        return abs(float(x) - float(y)) <= 1e-9 * max(1.0, abs(float(y)))
    except ValueError:
        return x == y
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:3])
ok = len(a) == len(b) and all(len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
                              for x, y in zip(a, b))
print("equal" if ok else "DIFFERENT")
PY
}
restart
COLD1=$(ms "$(timed "$Q1")"); cp "$WORK/last.csv" "$WORK/q1-cold.csv"
WARM1=$(best "$Q1")
SAME1=$(same "$WORK/q1-hot.csv" "$WORK/q1-cold.csv")
PLAN1=$(sql "EXPLAIN $Q1" | grep -o '_rollup_[0-9a-z]*_readings' | head -1 || true)
echo "cold: one truck one day hourly mean ${COLD1} ms (cold cache, after a restart), ${WARM1} ms (warm cache, best of $REPEAT) vs hot ${HOT1} ms; answer $SAME1 to hot; plan: ${PLAN1:-raw}"
# The same over the cold objects themselves (`velocity IS NOT NULL` keeps it off the rollup).
Q1R="${Q1/WHERE /WHERE velocity IS NOT NULL AND }"
restart
COLD1R=$(ms "$(timed "$Q1R")"); cp "$WORK/last.csv" "$WORK/q1r-cold.csv"
WARM1R=$(best "$Q1R")
SAME1R=$(same "$WORK/q1-hot.csv" "$WORK/q1r-cold.csv")
echo "cold, raw objects: one truck one day hourly mean ${COLD1R} ms (cold cache, the process's first query), ${WARM1R} ms (warm, best of $REPEAT); answer $SAME1R to hot; cache hits $(cold_metric strata_cold_cache_hits_total), misses $(cold_metric strata_cold_cache_misses_total)"
# The same with the cold cache empty but the process warmed by one query of hot data first (the
# same query over today, which is hot): what a running server pays for a day it has not read.
QH="${Q1R//to_timestamp($DAY)/to_timestamp($((CUT + 86400)))}"
QH="${QH//to_timestamp($((DAY + 86400)))/to_timestamp($((CUT + 2 * 86400)))}"
restart
timed "$QH" >/dev/null
COLD1W=$(ms "$(timed "$Q1R")")
echo "cold, raw objects, after one hot query: one truck one day hourly mean ${COLD1W} ms (cold cache); cache misses $(cold_metric strata_cold_cache_misses_total)"

restart
COLDC=$(ms "$(timed "$QC")"); cp "$WORK/last.csv" "$WORK/qc-cold.csv"
WARMC=$(best "$QC")
SAMEC=$(same "$WORK/qc-hot.csv" "$WORK/qc-cold.csv")
echo "cold: count(*) over the cold days ${COLDC} ms (cold cache), ${WARMC} ms (warm, best of $REPEAT) vs hot ${HOTC} ms; answer $SAMEC to hot"
echo "cache: hits $(cold_metric strata_cold_cache_hits_total), misses $(cold_metric strata_cold_cache_misses_total)"

# 6. Whole fleet, every day, daily mean by fleet: from the 1-hour rollup, and over raw data.
QF="SELECT date_bin(INTERVAL '1 day', time) AS d, fleet, avg(velocity) AS mean FROM readings \
GROUP BY d, fleet ORDER BY d, fleet"
QR="SELECT date_bin(INTERVAL '1 day', time) AS d, fleet, avg(velocity) AS mean FROM readings \
WHERE velocity IS NOT NULL GROUP BY d, fleet ORDER BY d, fleet"
PLAN=$(sql "EXPLAIN $QF" | grep -o '_rollup_[0-9a-z]*_readings' | head -1 || true)
[ -n "$PLAN" ] || PLAN="raw (rollup NOT used)"
ROLL=$(best "$QF"); cp "$WORK/last.csv" "$WORK/qf-rollup.csv"
RAW=$(best "$QR"); cp "$WORK/last.csv" "$WORK/qf-raw.csv"
SAMEF=$(python3 - "$WORK/qf-rollup.csv" "$WORK/qf-raw.csv" <<'PY'
import csv, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:3])
ok = len(a) == len(b) and all(x[:2] == y[:2] and abs(float(x[2]) - float(y[2])) <= 1e-9 * max(1.0, abs(float(y[2])))
                              for x, y in zip(a[1:], b[1:]))
print("equal" if ok else "DIFFERENT")
PY
)
echo "fleet: $DAYS days, daily mean by fleet ${ROLL} ms from the plan: $PLAN; raw ${RAW} ms (best of $REPEAT); $(($(wc -l < "$WORK/qf-rollup.csv") - 1)) rows, answers $SAMEF"
[ "$SAME1" = equal ] && [ "$SAME1R" = equal ] && [ "$SAMEC" = equal ] && [ "$SAMEF" = equal ]
