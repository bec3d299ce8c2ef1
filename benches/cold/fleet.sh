#!/usr/bin/env bash
# The whole-fleet daily mean again on a work directory kept by `KEEP=1 WORK=DIR benches/cold/run.sh`:
# a server with BINARY on its data and cold store, EXPLAIN ANALYZE (rollup table, blocks from statistics),
# the query N times (best 3, seconds), and the answer compared with the run's raw answer (1e-9).
#   benches/cold/fleet.sh WORK BINARY [N]
set -euo pipefail
W=$1; BIN=$2; N=${3:-15}; PORT=18557
TOKEN=bench-admin-token-0123456789
STRATA_ADMIN_TOKEN=$TOKEN $BIN serve --data-dir $W/data --http-addr 127.0.0.1:$PORT --no-mqtt --no-print-admin-token \
  --cold-store file://$W/cold --cold-cache-mb 1024 --lifecycle-interval 1h > $W/srv-fleet.log 2>&1 &
SP=$!
trap "kill $SP" EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:$PORT/ping >/dev/null 2>&1 && break; sleep 0.1; done
QF="SELECT date_bin(INTERVAL '1 day', time) AS d, fleet, avg(velocity) AS mean FROM readings GROUP BY d, fleet ORDER BY d, fleet"
t() { curl -fsS -o $W/f.csv -w '%{time_total}\n' -X POST -H "Authorization: Bearer $TOKEN" -H 'Accept: text/csv' --data-binary "$1" http://127.0.0.1:$PORT/api/v1/query; }
uptime
curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H 'Accept: text/csv' --data-binary "EXPLAIN ANALYZE $QF" http://127.0.0.1:$PORT/api/v1/query | grep -o '_rollup_1d_readings, partitions\|stats_blocks=[^]]*\|rows_decoded=[^,]*' | sort | uniq -c
for i in $(seq 1 $N); do t "$QF"; done | sort -n | head -3 | tr '\n' ' '; echo "(best 3 of $N, s)"
python3 - $W/f.csv $W/qf-raw.csv <<'PY'
import csv, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:3])
ok = len(a) == len(b) and all(x[:2] == y[:2] and abs(float(x[2]) - float(y[2])) <= 1e-9 * max(1.0, abs(float(y[2]))) for x, y in zip(a[1:], b[1:]))
print("rows", len(a) - 1, "equal to raw" if ok else "DIFFERENT")
PY
uptime
