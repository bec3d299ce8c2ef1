"""Recomputes every expected result of tests/golden with DuckDB, independently of Strata.

    python3 tests/python/duckdb_golden.py [GOLDEN_DIR]

Loads GOLDEN_DIR/data.lp into DuckDB (tests/python/duckdb_lp.py, same table layout as Strata),
runs each NAME.sql — or its DuckDB dialect translation GOLDEN_DIR/duckdb/NAME.sql when Strata's
SQL uses a function DuckDB spells differently — and compares the rows with NAME.csv: same header,
same rows in the same order, floats within a relative 1e-9 (or the `-- tolerance: X` given on the
first line of the translation). Prints one line per query; exits 1 when any differs.
"""

import os
import sys

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from duckdb_lp import compare, load_small, parse_csv  # noqa: E402

DEFAULT_TOLERANCE = 1e-9


def duck_query(golden, name):
    """The DuckDB SQL of a golden query and its tolerance."""
    override = os.path.join(golden, "duckdb", name + ".sql")
    path = override if os.path.exists(override) else os.path.join(golden, name + ".sql")
    with open(path) as f:
        sql = f.read()
    tol = DEFAULT_TOLERANCE
    first = sql.splitlines()[0] if sql else ""
    if first.startswith("-- tolerance:"):
        tol = float(first.split(":", 1)[1])
    return sql, tol, path != override


def main(golden):
    con = duckdb.connect()
    with open(os.path.join(golden, "data.lp")) as f:
        load_small(con, f.read())
    names = sorted(n[:-4] for n in os.listdir(golden) if n.endswith(".sql"))
    if not names:
        print(f"no golden queries in {golden}")
        return 1
    failed = 0
    for name in names:
        sql, tol, same_sql = duck_query(golden, name)
        with open(os.path.join(golden, name + ".csv")) as f:
            header, rows = parse_csv(f.read())
        try:
            cur = con.execute(sql)
            duck_rows = cur.fetchall()
            duck_names = [d[0] for d in cur.description]
        except duckdb.Error as e:
            print(f"FAIL {name}: duckdb error: {e}")
            failed += 1
            continue
        problems = compare(header, rows, duck_names, duck_rows, tol)
        how = "same SQL" if same_sql else "duckdb/ translation"
        if problems:
            failed += 1
            print(f"FAIL {name} ({how}):")
            for p in problems[:20]:
                print("   ", p)
        else:
            print(f"ok   {name} ({how}, {len(rows)} rows)")
    print(f"{len(names) - failed} of {len(names)} golden results agree with DuckDB")
    return 1 if failed else 0


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "golden")
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
