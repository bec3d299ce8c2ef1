#!/usr/bin/env python3
"""PostgreSQL wire protocol vs HTTP: latency of the same `SELECT` of one truck-hour.

Against a running server with a PostgreSQL listener (`strata serve --pg-addr 127.0.0.1:5433`),
loads `--trucks` trucks x `--hours` hours of 10 s telemetry into database `default` (stream
`readings`, skipped with --no-load), then runs one truck-hour query N times over each path, each on
one kept-alive connection, each answer decoded into Python rows (times as strings, numbers as
floats): HTTP `POST /api/v1/query` (JSON answer, `json.loads`) with `http.client`, and pgwire with
psycopg 3, both the simple protocol and the extended protocol with a prepared
statement and parameters. Prints the median, p90 and p99 of each and the pgwire - HTTP median
difference (the issue's target: within 0.2 ms).

    python3 benches/pg/latency.py --http http://127.0.0.1:7086 --pg-port 5433 \
        --token "$STRATA_ADMIN_TOKEN" -n 500
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse

import psycopg

T0 = 1_764_547_200_000_000_000  # 2025-12-01T00:00:00Z
STEP = 10_000_000_000  # 10 s


def load(conn, token, trucks, hours):
    points = hours * 360
    for t in range(trucks):
        lines = "".join(
            f"readings,device=truck-{t},fleet=f{t % 4} speed={50 + (i % 37)}.5,fuel={90 - i * 0.001:.3f} "
            f"{T0 + i * STEP}\n"
            for i in range(points))
        conn.request("POST", "/api/v1/write?db=default", body=lines.encode(),
                     headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 204, r.status


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def timed(fn, n):
    fn()  # warm-up: plan caches, connection
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", default="http://127.0.0.1:7086")
    ap.add_argument("--pg-port", type=int, default=5433)
    ap.add_argument("--token", required=True)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--trucks", type=int, default=20)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--no-load", action="store_true")
    args = ap.parse_args()

    url = urllib.parse.urlparse(args.http)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    if not args.no_load:
        load(conn, args.token, args.trucks, args.hours)
    start = "2025-12-01T05:00:00Z"
    end = "2025-12-01T06:00:00Z"
    sql = ("SELECT time, speed, fuel FROM readings WHERE device = 'truck-3' "
           f"AND time >= '{start}' AND time < '{end}' ORDER BY time")

    def over_http():
        conn.request("POST", "/api/v1/query", body=sql.encode(),
                     headers={"Authorization": f"Bearer {args.token}", "Accept": "application/json"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:200])
        rows = json.loads(body)
        assert len(rows) == 360, len(rows)

    pg = psycopg.connect(host=url.hostname, port=args.pg_port, user="strata", password=args.token,
                         dbname="default", autocommit=True)
    # Both clients decode to the same Python values: times stay strings (as in the JSON answer),
    # numbers become floats. Without this psycopg also builds a datetime per row, a client cost.
    pg.adapters.register_loader("timestamptz", psycopg.types.string.TextLoader)
    pg.adapters.register_loader("timestamp", psycopg.types.string.TextLoader)

    def over_pg_simple():
        rows = pg.execute(sql, prepare=False).fetchall()
        assert len(rows) == 360, len(rows)

    prepared = ("SELECT time, speed, fuel FROM readings WHERE device = %s "
                "AND time >= %s::timestamptz AND time < %s::timestamptz ORDER BY time")

    def over_pg_prepared():
        rows = pg.execute(prepared, ("truck-3", start, end), prepare=True).fetchall()
        assert len(rows) == 360, len(rows)

    results = {
        "http (JSON, keep-alive)": timed(over_http, args.n),
        "pgwire simple": timed(over_pg_simple, args.n),
        "pgwire extended (prepared)": timed(over_pg_prepared, args.n),
    }
    for name, xs in results.items():
        print(f"{name:28} median {statistics.median(xs):7.3f} ms  p90 {percentile(xs, 0.9):7.3f} ms  "
              f"p99 {percentile(xs, 0.99):7.3f} ms  (n={len(xs)})")
    base = statistics.median(results["http (JSON, keep-alive)"])
    for name in ("pgwire simple", "pgwire extended (prepared)"):
        print(f"{name} - http median: {statistics.median(results[name]) - base:+.3f} ms")


if __name__ == "__main__":
    main()
