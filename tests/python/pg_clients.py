"""PostgreSQL wire protocol with real clients: psycopg 3, SQLAlchemy 2 (psycopg dialect) and
pandas.read_sql, against `strata serve --pg-addr`.

Run by tests/tests/pg_wire.rs after it loaded tests/golden/data.lp into database `default`.
Environment:
  STRATA_PG_PORT       the PostgreSQL port on 127.0.0.1
  STRATA_READ_TOKEN    a token with the read scope
  STRATA_GOLDEN_DIR    the tests/golden directory
  STRATA_HTTP          http://127.0.0.1:PORT and STRATA_ADMIN_TOKEN (to revoke a token)

Checks:
  - every golden query (tests/golden/NAME.sql) answers over pgwire what NAME.csv records for HTTP
    (cell by cell: empty = NULL, timestamps as instants at microsecond precision, numbers with a
    relative tolerance of 1e-9, booleans true/false, the rest as text), once with the simple
    protocol and once with the extended protocol in binary (psycopg `binary=True`);
  - the time column arrives as timestamptz (a timezone-aware datetime in UTC);
  - prepared statements with parameters (server-side, extended protocol) of several types;
  - SQLAlchemy create_engine + connect (its pg_catalog/SHOW queries) and pandas.read_sql;
  - a wrong password is refused with SQLSTATE 28P01; INSERT with a read token with 42501;
  - a token revoked while its session is open is refused at the session's next statement;
  - Grafana's PostgreSQL data source, query for query as its source sends them: the health
    check (`-- ping`), version and TimescaleDB detection, the schema, table and column lists of
    its query builder (search_path, quote_ident, parse_ident, generate_series in FROM), and
    time-series panels with its macros expanded ($__timeGroupAlias, $__timeFilter, $__time),
    prepared and in binary like pgx; their answers equal the same SQL over HTTP.
Prints one line per check and "N passed, M failed"; exits 1 when any check failed.
"""

import csv
import datetime as dt
import io
import math
import os
import pathlib
import sys

import pandas as pd
import psycopg
from psycopg import pq
import sqlalchemy as sa

PORT = int(os.environ["STRATA_PG_PORT"])
TOKEN = os.environ["STRATA_READ_TOKEN"]
GOLDEN = pathlib.Path(os.environ["STRATA_GOLDEN_DIR"])
REL_TOL = 1e-9
DSN = f"host=127.0.0.1 port={PORT} dbname=default user=analyst password={TOKEN} sslmode=disable"
UTC = dt.timezone.utc

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"ok {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name}: {detail}")


def rfc3339_us(text):
    """Microseconds since the epoch of an RFC 3339 timestamp (fraction truncated to µs)."""
    text = text.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    frac_us = 0
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits += rest[0]
            rest = rest[1:]
        frac_us = int((digits + "000000")[:6])
        text = head + rest
    whole = dt.datetime.fromisoformat(text)
    seconds = int((whole - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * 1_000_000 + frac_us


def same_cell(expected, actual):
    if expected == "":
        return actual is None or actual == ""
    if actual is None:
        return False
    if isinstance(actual, dt.datetime):
        delta = actual - dt.datetime(1970, 1, 1, tzinfo=UTC)
        us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return actual.tzinfo is not None and rfc3339_us(expected) == us
    if isinstance(actual, bool):
        return expected == ("true" if actual else "false")
    if isinstance(actual, (int, float)):
        want, got = float(expected), float(actual)
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(want, got, rel_tol=REL_TOL, abs_tol=1e-12)
    return expected == str(actual)


def compare(cur, expected_csv):
    rows = list(csv.reader(io.StringIO(expected_csv)))
    header, expected = rows[0], rows[1:]
    names = [d.name for d in cur.description]
    if names != header:
        return f"header {names} != {header}"
    actual = cur.fetchall()
    if len(actual) != len(expected):
        return f"{len(actual)} rows, expected {len(expected)}"
    for r, (want_row, got_row) in enumerate(zip(expected, actual)):
        for c, (want, got) in enumerate(zip(want_row, got_row)):
            if not same_cell(want, got):
                return f"row {r + 1} column {header[c]!r}: got {got!r}, expected {want!r}"
    return None


def golden(conn):
    queries = sorted(GOLDEN.glob("*.sql"))
    assert queries, f"no golden queries in {GOLDEN}"
    for binary, label in [(False, "simple"), (True, "extended-binary")]:
        for sql_path in queries:
            expected = sql_path.with_suffix(".csv").read_text()
            sql = sql_path.read_text()
            try:
                with conn.cursor(binary=binary) as cur:
                    if binary:
                        # Server-side prepared: Parse/Bind/Describe/Execute, results in binary.
                        cur.execute(sql.replace("%", "%%"), (), prepare=True)
                    else:
                        # No parameters: psycopg sends a simple Query message.
                        conn.pgconn.send_query(sql.encode())
                        cur = None
                        res = conn.pgconn.get_result()
                        while conn.pgconn.get_result() is not None:
                            pass
                        problem = compare_result(res, expected)
                    if cur is not None:
                        problem = compare(cur, expected)
            except Exception as e:  # noqa: BLE001 - a failing query is a failed comparison
                problem = f"query failed: {e}"
                conn.rollback()
            check(f"golden {label} {sql_path.stem}", problem is None, problem)


def compare_result(res, expected_csv):
    """Compares a libpq result of the simple protocol (text cells) via psycopg's loaders."""
    if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
        return f"status {res.status}: {res.error_message.decode()}"
    tx = psycopg.adapt.Transformer()
    tx.set_pgresult(res)
    rows = [tx.load_row(i, tuple) for i in range(res.ntuples)]
    names = [res.fname(i).decode() for i in range(res.nfields)]

    class Fake:
        description = [type("D", (), {"name": n}) for n in names]

        @staticmethod
        def fetchall():
            return rows

    return compare(Fake, expected_csv)


def types_and_parameters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT time, device, temp FROM env WHERE device = 'd1' ORDER BY time LIMIT 1")
        (t, device, temp) = cur.fetchone()
        check(
            "time is timestamptz",
            cur.description[0].type_code == 1184 and t.tzinfo is not None
            and t == dt.datetime(2023, 12, 31, 23, 58, 20, tzinfo=UTC),
            f"type {cur.description[0].type_code}, value {t!r}",
        )
        check("device is text", device == "d1" and cur.description[1].type_code == 25, device)
        check("temp is float8", temp == 20.0 and cur.description[2].type_code == 701, temp)

        # Parameters of several types, bound server-side (extended protocol).
        cur.execute(
            "SELECT count(*) AS n, max(temp) AS hot FROM env "
            "WHERE device = %s AND time >= %s AND count > %s AND ok = %s",
            ("d1", dt.datetime(2024, 1, 1, 0, 5, tzinfo=UTC), 1, True),
            prepare=True,
        )
        row = cur.fetchone()
        check("prepared statement with str/datetime/int/bool parameters", row == (3, 23.0), row)
        # The same statement again with other values reuses the server-side statement.
        cur.execute(
            "SELECT count(*) AS n, max(temp) AS hot FROM env "
            "WHERE device = %s AND time >= %s AND count > %s AND ok = %s",
            ("d3", dt.datetime(2024, 1, 1, tzinfo=UTC), 100, True),
            prepare=True,
        )
        row = cur.fetchone()
        check("prepared statement executed again with other values", row == (3, 33.0), row)
        cur.execute("SELECT %s::double precision * 2 AS x", (1.25,))
        check("float parameter", cur.fetchone() == (2.5,), "")
        # A placeholder the planner cannot type takes the type the client declared, integers
        # at 64 bits (psycopg declares a small int as int2; two of them added must not wrap).
        cur.execute("SELECT %s AS v", (5,))
        v = cur.fetchone()[0]
        check("SELECT %s with an int is described as int8 and comes back as 5",
              v == 5 and cur.description[0].type_code == 20,
              f"{v!r}, type {cur.description[0].type_code}")
        cur.execute("SELECT %s + %s AS v", (30000, 30000))
        v = cur.fetchone()[0]
        check("two declared int2 values add without wrapping", v == 60000, repr(v))
        # Describe of a statement (before any Bind) reports the declared parameter type and
        # the result column it gives.
        pg = conn.pgconn
        res = pg.prepare(b"declared_int8", b"SELECT $1 AS v", [20])
        check("Parse with a declared int8 parameter", res.status == pq.ExecStatus.COMMAND_OK,
              res.error_message)
        res = pg.describe_prepared(b"declared_int8")
        check("Describe Statement of SELECT $1 declared int8: parameter and column are int8",
              res.nparams == 1 and res.param_type(0) == 20 and res.ftype(0) == 20,
              f"{res.error_message} params {res.nparams} "
              f"{[res.param_type(i) for i in range(res.nparams)]} "
              f"columns {[res.ftype(i) for i in range(res.nfields)]}")
        # A float meeting an integer column compares as a float, as in PostgreSQL (psycopg
        # declares 2.5 as float8): not truncated to 2, not refused. The data has counts 2 and 3.
        counts = {}
        for bound in (2, 3):
            cur.execute(f"SELECT count(*) FROM env WHERE count >= {bound}")
            counts[bound] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM env WHERE count >= %s", (2.5,))
        got = cur.fetchone()[0]
        check("a float8 parameter meeting an integer column compares as a float",
              got == counts[3] and counts[3] != counts[2],
              f"got {got}, count >= 3 gives {counts[3]}, count >= 2 gives {counts[2]}")
        # Sent as text without a declared type, the planner types it from the column and a
        # value that would change as an integer is refused rather than truncated (20.5 -> 20).
        try:
            cur.execute("SELECT count(*) FROM env WHERE count >= %s", ("20.5",))
            check("an untyped '20.5' for an integer column is refused", False, cur.fetchone())
        except psycopg.Error as e:
            check("an untyped '20.5' for an integer column is refused",
                  e.sqlstate == "22023", f"{e.sqlstate} {e}")
            conn.rollback()
        cur.execute("SELECT count(*) FROM env WHERE count >= %s", (20.0,))
        check("a whole float for an integer column is accepted", cur.fetchone()[0] >= 0, "")


def catalog(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name = 'env'"
        )
        check("information_schema.tables lists env", cur.fetchall() == [("default", "env")], "")
        cur.execute(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON a.attrelid = c.oid "
            "WHERE c.relname = 'env' AND a.attnum > 0 ORDER BY a.attnum"
        )
        cols = dict(cur.fetchall())
        check(
            "pg_attribute describes env's columns",
            cols.get("time") == "timestamp with time zone" and cols.get("temp") == "double precision",
            cols,
        )
        cur.execute("SHOW server_version")
        check("SHOW server_version", cur.fetchone()[0].startswith("16"), "")


def sqlalchemy_pandas():
    url = f"postgresql+psycopg://analyst:{TOKEN}@127.0.0.1:{PORT}/default"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            n = c.execute(sa.text("SELECT count(*) FROM env WHERE device = :d"), {"d": "d2"}).scalar()
            check("SQLAlchemy connect and bound query", n == 5, n)
        df = pd.read_sql("SELECT time, device, temp FROM env ORDER BY device, time", engine)
        check(
            "pandas.read_sql",
            len(df) > 0 and str(df["time"].dtype).startswith("datetime64") and "UTC" in str(df["time"].dtype)
            and list(df.columns) == ["time", "device", "temp"],
            f"{len(df)} rows, dtypes {dict(df.dtypes)}",
        )
        df2 = pd.read_sql(
            sa.text("SELECT device, avg(temp) AS t FROM env WHERE fleet = :f GROUP BY device ORDER BY device"),
            engine,
            params={"f": "south"},
        )
        check("pandas.read_sql with parameters", list(df2["device"]) == ["d3", "d4"], df2.to_dict())
    finally:
        engine.dispose()


def refusals():
    try:
        psycopg.connect(DSN.replace(TOKEN, TOKEN + "x")).close()
        check("wrong password refused", False, "connected")
    except psycopg.OperationalError as e:
        check("wrong password refused", "password authentication failed" in str(e), str(e))
    with psycopg.connect(DSN, autocommit=True) as conn:
        try:
            conn.execute("INSERT INTO env (time, device, temp) VALUES (now(), 'd1', 1.0)")
            check("INSERT with a read token refused", False, "accepted")
        except psycopg.Error as e:
            check(
                "INSERT with a read token refused",
                e.sqlstate == "42501" and "read scope" in str(e),
                f"{e.sqlstate}: {e}",
            )
        # The session is still usable after the refusal.
        check("session usable after a refusal", conn.execute("SELECT 1").fetchone() == (1,), "")


def revocation():
    import json
    import urllib.request

    http, admin = os.environ["STRATA_HTTP"], os.environ["STRATA_ADMIN_TOKEN"]

    def call(method, path, body=None):
        req = urllib.request.Request(
            http + path, method=method, data=body,
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    made = call("POST", "/api/v1/tokens", json.dumps({"scopes": ["read"]}).encode())
    dsn = DSN.replace(TOKEN, made["token"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = conn.execute("SELECT 1").fetchone()
        call("DELETE", f"/api/v1/tokens/{made['id']}")
        try:
            conn.execute("SELECT 1")
            check("revoked token refused in an open session", False, "accepted")
        except psycopg.Error as e:
            check("revoked token refused in an open session", first == (1,) and "revoked" in str(e), str(e))


# Grafana's metadata queries (public/app/plugins/datasource/grafana-postgresql-datasource/
# postgresMetaQuery.ts), with its search-path constraint.
SEARCH_PATH_SCHEMAS = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""

GRAFANA_TABLES = f"""SELECT
    CASE WHEN {SEARCH_PATH_SCHEMAS}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {SEARCH_PATH_SCHEMAS} THEN 0 ELSE 1 END, 1"""

GRAFANA_SCHEMAS = """SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"""


def grafana_tables_in(schema):
    part = "'" + schema.replace("'", "''") + "'"
    return f"""SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = {part}
      ORDER BY 1"""


def grafana_columns(table):
    part = "'" + table.replace("'", "''") + "'"
    return f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({part}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({part}))[1]
          AND quote_ident(table_name) = (parse_ident({part}))[2]
        ELSE quote_ident(table_name) = {part}
          AND {SEARCH_PATH_SCHEMAS}
      END"""


# Panel queries as Grafana's macro engine (pkg/tsdb/grafana-postgresql-datasource/macros.go)
# expands them for the range 2024-01-01T00:00:00Z .. 2024-01-01T02:00:00Z and a 10m interval.
GRAFANA_PANELS = {
    "timeGroupAlias": """SELECT floor(extract(epoch from "time")/600)*600 AS "time", avg(temp) AS "temp"
FROM env WHERE "time" BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T02:00:00Z' GROUP BY 1 ORDER BY 1""",
    "time with metric": """SELECT "time" AS "time", device AS metric, temp
FROM env WHERE "time" BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T02:00:00Z' ORDER BY 1, 2""",
    "timeGroup per device": """SELECT floor(extract(epoch from time)/600)*600 AS "time", device AS metric, max(hum) AS hum
FROM env WHERE time BETWEEN '2024-01-01T00:00:00Z' AND '2024-01-01T02:00:00Z' AND fleet = 'north'
GROUP BY 1, 2 ORDER BY 1, 2""",
}


def http_sql(sql):
    import json
    import urllib.request

    req = urllib.request.Request(
        os.environ["STRATA_HTTP"] + "/api/v1/query", method="POST", data=sql.encode(),
        headers={"Authorization": f"Bearer {os.environ['STRATA_ADMIN_TOKEN']}",
                 "Accept": "text/csv"},
    )
    with urllib.request.urlopen(req) as r:
        return r.read().decode()


def grafana(conn):
    res = conn.pgconn.exec_(b"-- ping")
    check("Grafana health check (-- ping) answers an empty query",
          res.status == psycopg.pq.ExecStatus.EMPTY_QUERY, res.status)
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int/100 as version")
        check("Grafana version detection", cur.fetchone() == (1600,), "")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        check("Grafana TimescaleDB detection finds none", cur.fetchall() == [], "")
        cur.execute(GRAFANA_SCHEMAS)
        schemas = [r[0] for r in cur.fetchall()]
        check("Grafana schema list", "default" in schemas and "registry" in schemas, schemas)
        cur.execute(GRAFANA_TABLES)
        tables = [r[0] for r in cur.fetchall()]
        check(
            "Grafana table list: search-path tables first and unqualified",
            tables[0] == "env" and "registry.devices" in tables
            and tables.index("env") < tables.index("registry.devices"),
            tables,
        )
        cur.execute(grafana_tables_in("registry"))
        check("Grafana table list of one schema", ("devices",) in cur.fetchall(), "")
        for name in ["env", "registry.devices"]:
            cur.execute(grafana_columns(name))
            cols = dict(cur.fetchall())
            want = (
                {"time": "timestamp with time zone", "temp": "double precision", "device": "text",
                 "count": "bigint", "ok": "boolean"}
                if name == "env" else {"id": "text"}
            )
            check(f"Grafana column list of {name} with PostgreSQL types",
                  all(cols.get(k) == v for k, v in want.items()), cols)
    for label, sql in GRAFANA_PANELS.items():
        expected = http_sql(sql)
        try:
            # pgx (Grafana's driver) prepares each query and asks for binary results.
            with conn.cursor(binary=True) as cur:
                cur.execute(sql.replace("%", "%%"), (), prepare=True)
                problem = compare(cur, expected)
                rows = cur.rowcount
        except Exception as e:  # noqa: BLE001
            problem, rows = f"query failed: {e}", 0
        check(f"Grafana panel {label}: pgwire binary equals HTTP ({rows} rows)",
              problem is None and rows > 0, problem)


def main():
    with psycopg.connect(DSN) as conn:  # not autocommit: psycopg sends BEGIN first
        types_and_parameters(conn)
        catalog(conn)
        conn.commit()
    with psycopg.connect(DSN, autocommit=True) as conn:
        golden(conn)
    with psycopg.connect(DSN, autocommit=True) as conn:
        grafana(conn)
    try:
        sqlalchemy_pandas()
    except Exception as e:  # noqa: BLE001
        check("SQLAlchemy and pandas", False, str(e).splitlines()[0])
    refusals()
    revocation()
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
