"""Runs the TSBS iot queries against a Strata server, times them, and checks every answer with
DuckDB on the same data (see benches/tsbs/run.sh, which prepares the server and the data).

    python3 benches/tsbs/tsbs.py --url URL --token TOKEN --lp FLEET.lp [--runs 7]

For each benches/tsbs/queries/NAME.sql: one warm-up request (its time is reported as "first": the
plan cache and the runs cache do not hold this query yet), then RUNS timed requests over one
keep-alive HTTP/1.1 connection (`POST /api/v1/query`, `Accept: text/csv`); the client wall time
of each is recorded and the median reported. Every timed answer must agree with the
warm-up answer (floats to a relative 1e-12: parallel sums differ in the last digit). DuckDB loads
FLEET.lp with its own reader (tests/python/duckdb_lp.py) and runs the same query (or its spelling
in benches/tsbs/duckdb/NAME.sql); the rows must agree (floats within a relative 1e-9). DuckDB's
in-process median is printed for reference. Exits 1 on any mismatch. Without `--lp` (data too large
for DuckDB, e.g. benches/tsbs/scale.sh) only Strata is timed and answers are not checked.
"""

import argparse
import http.client
import os
import statistics
import sys
import time
import urllib.parse


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
from duckdb_lp import compare, load_fleet, parse_csv  # noqa: E402

TOLERANCE = 1e-9


class Strata:
    """One keep-alive connection to the query endpoint."""

    def __init__(self, url, token):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/csv",
                        "Content-Type": "text/plain"}

    def query(self, sql):
        """(seconds, CSV text) of one request; raises with the server's message on an error."""
        start = time.perf_counter()
        self.conn.request("POST", "/api/v1/query", body=sql.encode(), headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body.decode(errors='replace')}")
        return elapsed, body.decode()


def read(path):
    with open(path) as f:
        return f.read()


def same_answer(a, b):
    """Whether two CSV answers agree: equal cells, or floats within a relative 1e-12 (parallel
    aggregation adds floats in a different order from run to run, which changes the last digit)."""
    (ha, ra), (hb, rb) = parse_csv(a), parse_csv(b)
    if ha != hb or len(ra) != len(rb):
        return False
    for x, y in zip((c for r in ra for c in r), (c for r in rb for c in r)):
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if abs(fx - fy) > 1e-12 * max(1.0, abs(fy)):
            return False
    return True


def time_strata(strata, sql, runs):
    """Warm-up answer, its time (the first run: plan and runs caches cold) and the timed runs
    (seconds); every run must agree with the warm-up."""
    first, answer = strata.query(sql)
    times = []
    for _ in range(runs):
        t, text = strata.query(sql)
        if not same_answer(text, answer):
            raise RuntimeError(f"a timed run returned a different answer:\n{text}\nvs\n{answer}")
        times.append(t)
    return answer, first, times


def time_duckdb(con, sql, runs):
    """DuckDB's column names, rows, and the timed runs (seconds)."""
    cur = con.execute(sql)
    names, rows = [d[0] for d in cur.description], cur.fetchall()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    return names, rows, times


def ms(seconds):
    return f"{seconds * 1e3:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", default=os.environ.get("STRATA_TOKEN"))
    p.add_argument("--lp", help="the line protocol loaded into the server (omit: no DuckDB check)")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--queries", default=os.path.join(HERE, "queries"))
    a = p.parse_args()

    con = None
    if a.lp:
        import duckdb
        con = duckdb.connect()
        start = time.perf_counter()
        load_fleet(con, a.lp)
        rows_loaded = con.execute("SELECT (SELECT count(*) FROM readings) + "
                                  "(SELECT count(*) FROM diagnostics)").fetchone()[0]
        print(f"duckdb: loaded {rows_loaded} rows in {time.perf_counter() - start:.1f} s", flush=True)

    strata = Strata(a.url, a.token)
    print(f"| query | rows | Strata first ms | Strata median ms | Strata min ms | DuckDB median ms "
          f"| matches DuckDB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    failed = 0
    for name in sorted(f[:-4] for f in os.listdir(a.queries) if f.endswith(".sql")):
        sql = read(os.path.join(a.queries, name + ".sql"))
        alt = os.path.join(HERE, "duckdb", name + ".sql")
        duck_sql = read(alt) if os.path.exists(alt) else sql
        try:
            answer, first, times = time_strata(strata, sql, a.runs)
            header, rows = parse_csv(answer)
            if con is None:
                print(f"| {name} | {len(rows)} | {ms(first)} | {ms(statistics.median(times))} "
                      f"| {ms(min(times))} | - | not checked |", flush=True)
                continue
            names, duck_rows, duck_times = time_duckdb(con, duck_sql, a.runs)
            problems = compare(header, rows, names, duck_rows, TOLERANCE)
        except Exception as e:  # report the query by name and go on
            print(f"| {name} | - | - | - | - | - | ERROR {type(e).__name__}: {e} |", flush=True)
            failed += 1
            continue
        verdict = "yes" if not problems else "NO: " + "; ".join(problems[:3])
        failed += bool(problems)
        print(f"| {name} | {len(rows)} | {ms(first)} | {ms(statistics.median(times))} "
              f"| {ms(min(times))} | {ms(statistics.median(duck_times))} | {verdict} |", flush=True)
    print(f"{'all queries match' if not failed else f'{failed} queries differ or failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
