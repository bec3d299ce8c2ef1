# Sourced by benches/tsbs/run.sh and scale.sh: a release server on 127.0.0.1:$PORT over a fresh
# data directory in $WORK (both removed on exit; KEEP_DATA=DIR moves the data directory there
# first, e.g. for benches/tsbs/ab.py), `--durability none`, and helpers.
# Needs: PORT, WORK, STRATA (the binary). Sets: SERVER_PID, URL, auth, STRATA_ADMIN_TOKEN;
# defines metric NAME (a value from /metrics).
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "${KEEP_DATA:-}" ] && [ -d "$WORK/strata" ]; then mv "$WORK/strata" "$KEEP_DATA"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export STRATA_ADMIN_TOKEN=tsbs-admin-token-0123456789
"$STRATA" serve --data-dir "$WORK/strata" --http-addr "127.0.0.1:$PORT" --durability none \
    --log-format text --log-level warn &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$URL/health" >/dev/null || { echo "server did not start" >&2; exit 1; }
auth=(-H "Authorization: Bearer $STRATA_ADMIN_TOKEN")
metric() { curl -fs "${auth[@]}" "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
