"""Cross-checks Strata's aggregate and time-series functions against DuckDB on the same data.

    python3 tests/python/duckdb_crosscheck.py --url URL --token TOKEN --lp FLEET.lp [--db DB]

FLEET.lp is `strata-fleet generate` output that has already been written to database DB of the
server at URL. DuckDB loads the same file with its own reader (tests/python/duckdb_lp.py), then
every check below runs in both engines — Strata over `POST /api/v1/query` (CSV) — and the results
are compared row by row: exact for counts and integers, a relative 1e-9 for floating-point
aggregates (summation order differs); approximate percentiles by rank (see RANK_EPS).
Exits 1 when any check differs.
"""

import argparse
import os
import sys
import urllib.error
import urllib.request

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from duckdb_lp import compare, load_fleet, parse_csv  # noqa: E402

EXACT = 1e-9
# DataFusion's percentile_cont truncates the interpolation weight to 6 decimals
# (datafusion-functions-aggregate 55.2, percentile_cont.rs, INTERPOLATION_PRECISION), so its answer
# may be off by up to 1e-6 of the gap between the two neighbouring values.
PERCENTILE = 1e-8
# Approximate percentiles (t-digest) are checked by rank, not value: the answer for p must lie
# between DuckDB's exact percentiles p - RANK_EPS and p + RANK_EPS. (A value check would be wrong:
# where the data has a gap, any value inside the gap is a correct approximate median.)
RANK_EPS = 0.01

# (name, Strata SQL, DuckDB SQL or None for the same text, tolerance)
CHECKS = [
    ("count", "SELECT count(*) AS n, count(velocity) AS n_velocity FROM readings", None, 0),
    ("count_diagnostics", "SELECT count(*) AS n, count(DISTINCT device) AS devices FROM diagnostics", None, 0),
    ("basic_aggregates_per_device",
     "SELECT device, count(*) AS n, sum(velocity) AS total, avg(velocity) AS mean, "
     "min(velocity) AS lo, max(velocity) AS hi FROM readings GROUP BY device ORDER BY device",
     None, EXACT),
    ("spread_per_fleet",
     "SELECT fleet, stddev(fuel_consumption) AS sd, stddev_pop(fuel_consumption) AS sd_pop, "
     "var_samp(elevation) AS var, var_pop(elevation) AS var_pop FROM readings "
     "GROUP BY fleet ORDER BY fleet",
     None, EXACT),
    ("correlation",
     "SELECT model, corr(velocity, fuel_consumption) AS r, covar_samp(velocity, grade) AS cov, "
     "covar_pop(velocity, grade) AS cov_pop, regr_slope(fuel_consumption, velocity) AS slope "
     "FROM readings GROUP BY model ORDER BY model",
     None, 1e-7),
    ("integer_aggregates",
     "SELECT fleet, sum(status) AS total, max(status) AS hi, count(*) FILTER (WHERE status > 0) AS faults, "
     "avg(status) AS mean FROM diagnostics GROUP BY fleet ORDER BY fleet",
     None, EXACT),
    ("time_range_per_device",
     "SELECT device, min(time) AS first_seen, max(time) AS last_seen FROM diagnostics "
     "GROUP BY device ORDER BY device",
     None, 0),
    ("exact_percentiles",
     "SELECT fleet, percentile_cont(0.5) WITHIN GROUP (ORDER BY velocity) AS p50, "
     "percentile_cont(0.99) WITHIN GROUP (ORDER BY velocity) AS p99, "
     "percentile_cont(0.05) WITHIN GROUP (ORDER BY fuel_consumption) AS p05, median(grade) AS med "
     "FROM readings GROUP BY fleet ORDER BY fleet",
     None, PERCENTILE),
    ("first_last_by_time",
     "SELECT device, first(velocity, time) AS first_v, last(velocity, time) AS last_v, "
     "first(fuel_state, time) AS first_fuel, last(current_load, time) AS last_load "
     "FROM readings r JOIN diagnostics d USING (device, time) GROUP BY device ORDER BY device",
     "SELECT device, arg_min(velocity, time) AS first_v, arg_max(velocity, time) AS last_v, "
     "arg_min(fuel_state, time) AS first_fuel, arg_max(current_load, time) AS last_load "
     "FROM readings r JOIN diagnostics d USING (device, time) GROUP BY device ORDER BY device",
     0),
    ("first_last_value_ordered",
     "SELECT device, first_value(latitude ORDER BY time) AS lat0, last_value(longitude ORDER BY time) AS lon1 "
     "FROM readings GROUP BY device ORDER BY device",
     "SELECT device, arg_min(latitude, time) AS lat0, arg_max(longitude, time) AS lon1 "
     "FROM readings GROUP BY device ORDER BY device",
     0),
    ("time_bucket_10m",
     "SELECT fleet, time_bucket(INTERVAL '10 minutes', time) AS bucket, count(*) AS n, "
     "avg(velocity) AS mean, max(velocity) AS hi FROM readings GROUP BY fleet, bucket ORDER BY fleet, bucket",
     None, EXACT),
    ("date_bin_hour_origin",
     "SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMP '2024-01-01T00:30:00Z') AS bucket, "
     "count(*) AS n, avg(fuel_state) AS fuel FROM diagnostics GROUP BY bucket ORDER BY bucket",
     "SELECT time_bucket(INTERVAL '1 hour', time, TIMESTAMPTZ '2024-01-01 00:30:00+00') AS bucket, "
     "count(*) AS n, avg(fuel_state) AS fuel FROM diagnostics GROUP BY bucket ORDER BY bucket",
     EXACT),
    ("date_trunc_hour",
     "SELECT date_trunc('hour', time) AS hour, sum(fuel_consumption) AS total FROM readings "
     "GROUP BY hour ORDER BY hour",
     None, EXACT),
    ("time_filter",
     "SELECT device, count(*) AS n, avg(velocity) AS mean FROM readings "
     "WHERE time >= '2024-01-01T00:30:00Z' AND time < '2024-01-01T01:15:00Z' AND fleet = 'North' "
     "GROUP BY device ORDER BY device",
     None, EXACT),
    ("window_lag",
     "SELECT device, sum(abs(d)) AS travel FROM (SELECT device, "
     "velocity - lag(velocity) OVER (PARTITION BY device ORDER BY time) AS d FROM readings) "
     "GROUP BY device ORDER BY device",
     None, EXACT),
    ("tag_groups",
     "SELECT model, driver, count(DISTINCT device) AS trucks, avg(current_load) AS load "
     "FROM diagnostics GROUP BY model, driver ORDER BY model, driver",
     None, EXACT),
]

# (name, Strata SQL with the group key first, table, group key, [(source column, p)] in the order
# of the remaining result columns)
BAND_CHECKS = [
    ("approx_percentiles",
     "SELECT fleet, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY velocity) AS p50, "
     "approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY velocity) AS p90, "
     "approx_percentile_cont(velocity, 0.99) AS p99, "
     "approx_median(fuel_consumption) AS med FROM readings GROUP BY fleet ORDER BY fleet",
     "readings", "fleet",
     [("velocity", 0.5), ("velocity", 0.9), ("velocity", 0.99), ("fuel_consumption", 0.5)]),
    ("approx_percentiles_per_device",
     "SELECT device, approx_percentile_cont(0.25) WITHIN GROUP (ORDER BY current_load) AS p25, "
     "approx_percentile_cont(0.75) WITHIN GROUP (ORDER BY fuel_state) AS p75 "
     "FROM diagnostics GROUP BY device ORDER BY device",
     "diagnostics", "device", [("current_load", 0.25), ("fuel_state", 0.75)]),
]


def band_sql(table, key, targets):
    """DuckDB SQL for the exact percentiles p - RANK_EPS and p + RANK_EPS of every target."""
    cols = []
    for col, p in targets:
        lo, hi = max(0.0, p - RANK_EPS), min(1.0, p + RANK_EPS)
        cols += [f"quantile_cont({col}, {lo})", f"quantile_cont({col}, {hi})"]
    return f"SELECT {key}, {', '.join(cols)} FROM {table} GROUP BY {key} ORDER BY {key}"


def band_problems(rows, bands, targets):
    """Differences between Strata's approximate percentiles and DuckDB's exact bands."""
    problems = []
    if len(rows) != len(bands):
        return [f"{len(rows)} rows != duckdb {len(bands)} rows"]
    for row, band in zip(rows, bands):
        if row[0] != str(band[0]):
            problems.append(f"group {row[0]!r} != duckdb {band[0]!r}")
            continue
        for i, (col, p) in enumerate(targets):
            value, lo, hi = float(row[1 + i]), band[1 + 2 * i], band[2 + 2 * i]
            slack = 1e-9 * max(1.0, abs(value))
            if not lo - slack <= value <= hi + slack:
                problems.append(f"{row[0]}: p{p} of {col} = {value} outside exact "
                                f"[p{p - RANK_EPS:.2f}, p{p + RANK_EPS:.2f}] = [{lo}, {hi}]")
    return problems


def strata_csv(url, token, sql):
    """Runs SQL on Strata and returns the CSV text (raises with the server's message)."""
    req = urllib.request.Request(
        f"{url.rstrip('/')}/api/v1/query", data=sql.encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"HTTP {e.code}: {e.read().decode()}") from None


def qualify(sql, db):
    """Names the database for Strata when it is not `default`."""
    if db == "default":
        return sql
    for t in ("readings", "diagnostics"):
        sql = sql.replace(f"FROM {t}", f"FROM {db}.{t}").replace(f"JOIN {t}", f"JOIN {db}.{t}")
    return sql


def report(name, problems, rows):
    """Prints a check's outcome; returns 1 when it failed."""
    if not problems:
        print(f"ok   {name} ({rows} rows)")
        return 0
    print(f"FAIL {name}:")
    for pr in problems[:10]:
        print("   ", pr)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", default=os.environ.get("STRATA_TOKEN"))
    p.add_argument("--lp", required=True)
    p.add_argument("--db", default="default")
    a = p.parse_args()
    con = duckdb.connect()
    load_fleet(con, a.lp)
    failed = 0
    for name, sql, duck_sql, tol in CHECKS:
        try:
            header, rows = parse_csv(strata_csv(a.url, a.token, qualify(sql, a.db)))
            cur = con.execute(duck_sql or sql)
            problems = compare(header, rows, [d[0] for d in cur.description], cur.fetchall(), tol)
        except Exception as e:  # a failing engine is a failed check, reported by name
            problems = [f"{type(e).__name__}: {e}"]
        failed += report(name, problems, len(rows) if not problems else 0)
    for name, sql, table, key, targets in BAND_CHECKS:
        try:
            _, rows = parse_csv(strata_csv(a.url, a.token, qualify(sql, a.db)))
            problems = band_problems(rows, con.execute(band_sql(table, key, targets)).fetchall(),
                                     targets)
        except Exception as e:
            problems = [f"{type(e).__name__}: {e}"]
        failed += report(name, problems, len(rows) if not problems else 0)
    total = len(CHECKS) + len(BAND_CHECKS)
    print(f"{total - failed} of {total} checks agree with DuckDB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
