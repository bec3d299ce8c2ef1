"""Runs every golden query (tests/golden/NAME.sql) over Flight SQL with the ADBC driver and compares
the answer with tests/golden/NAME.csv (the HTTP `Accept: text/csv` answer).

Run by tests/tests/flight_sql.rs after it loaded tests/golden/data.lp into database `default`.
Environment:
  STRATA_FLIGHT_URI   grpc://127.0.0.1:PORT
  STRATA_READ_TOKEN   a token with the read scope
  STRATA_GOLDEN_DIR   the tests/golden directory

Comparison, cell by cell after the header: an empty CSV cell is NULL; timestamps are compared as
instants (the CSV's RFC 3339 text against the Arrow value, both normalised to nanoseconds UTC);
numbers with a relative tolerance of 1e-9; booleans as true/false; everything else as text.
Prints one line per query and "N passed, M failed"; exits 1 when any query differs.
"""

import csv
import datetime as dt
import io
import math
import os
import pathlib
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa

URI = os.environ["STRATA_FLIGHT_URI"]
TOKEN = os.environ["STRATA_READ_TOKEN"]
GOLDEN = pathlib.Path(os.environ["STRATA_GOLDEN_DIR"])
REL_TOL = 1e-9


def rfc3339_ns(text):
    """Nanoseconds since the epoch of an RFC 3339 timestamp (any fraction length, Z or offset)."""
    text = text.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    frac_ns = 0
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits += rest[0]
            rest = rest[1:]
        frac_ns = int((digits + "000000000")[:9])
        text = head + rest
    if not any(c in text[10:] for c in "+-"):
        text += "+00:00"
    whole = dt.datetime.fromisoformat(text)
    seconds = int((whole - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds())
    return seconds * 1_000_000_000 + frac_ns


def same_cell(expected, actual, arrow_type):
    if expected == "":
        return actual is None or (actual == "" and pa.types.is_string(arrow_type))
    if actual is None:
        return False
    if pa.types.is_timestamp(arrow_type):
        return rfc3339_ns(expected) == actual
    if pa.types.is_boolean(arrow_type):
        return expected == ("true" if actual else "false")
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        want = float(expected)
        got = float(actual)
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(want, got, rel_tol=REL_TOL, abs_tol=1e-12)
    return expected == str(actual)


def cells(table):
    """Rows of Python values; timestamps as integer nanoseconds UTC."""
    columns = []
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_timestamp(field.type):
            col = col.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
        columns.append(col.to_pylist())
    return [list(r) for r in zip(*columns)] if columns else []


def compare(name, table, expected_csv):
    rows = list(csv.reader(io.StringIO(expected_csv)))
    header, expected = rows[0], rows[1:]
    if table.schema.names != header:
        return f"header {table.schema.names} != {header}"
    actual = cells(table)
    if len(actual) != len(expected):
        return f"{len(actual)} rows, expected {len(expected)}"
    types = [f.type for f in table.schema]
    for r, (want_row, got_row) in enumerate(zip(expected, actual)):
        for c, (want, got) in enumerate(zip(want_row, got_row)):
            if not same_cell(want, got, types[c]):
                return f"row {r + 1} column {header[c]!r}: got {got!r}, expected {want!r}"
    return None


def main():
    queries = sorted(GOLDEN.glob("*.sql"))
    assert queries, f"no golden queries in {GOLDEN}"
    conn = flightsql.connect(
        URI, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}, autocommit=True
    )
    passed, failed = 0, 0
    with conn, conn.cursor() as cur:
        for sql_path in queries:
            name = sql_path.stem
            expected = sql_path.with_suffix(".csv").read_text()
            try:
                cur.execute(sql_path.read_text())
                problem = compare(name, cur.fetch_arrow_table(), expected)
            except Exception as e:  # noqa: BLE001 - a failing query is a failed comparison
                problem = f"query failed: {e}"
            if problem:
                failed += 1
                print(f"FAIL {name}: {problem}")
            else:
                passed += 1
                print(f"ok {name}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
