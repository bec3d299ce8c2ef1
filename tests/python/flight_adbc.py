"""Strata's Flight SQL endpoint driven by the ADBC Flight SQL driver (adbc_driver_flightsql.dbapi).

Run by tests/tests/flight_sql.rs after the server holds the stream written below over HTTP.
Environment:
  STRATA_FLIGHT_URI   grpc://127.0.0.1:PORT
  STRATA_ADMIN_TOKEN  an admin API token
  STRATA_READ_TOKEN   a token with only the read scope

The stream `adbc_speed` (database `default`) holds, as line protocol written by the test:
  adbc_speed,device=t1,fleet=north v=10.0,n=1i 1700000000000000000
  adbc_speed,device=t1,fleet=north v=20.0,n=2i 1700000010000000000
  adbc_speed,device=t2,fleet=south v=30.0,n=3i 1700000000000000000
  adbc_speed,device=t2,fleet=south v=50.0,n=4i 1700000010000000000

Checks: statement queries, parameterised queries (`?` and `$n`, several executions of one
prepared statement with different values, timestamps, the parameter schema), adbc_get_objects /
adbc_get_table_schema, username/password login (the Flight handshake), a wrong token refused, and
bulk ingest with adbc_ingest (create, append, create on an existing stream refused, read-only token
refused), read back.
Prints "N passed, 0 failed" and exits 0 when every check passes.
"""

import datetime
import os
import sys

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa

URI = os.environ["STRATA_FLIGHT_URI"]
ADMIN = os.environ["STRATA_ADMIN_TOKEN"]
READER = os.environ["STRATA_READ_TOKEN"]


def connect(token):
    return flightsql.connect(
        URI,
        db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
        autocommit=True,
    )


def check_statement_query():
    with connect(READER) as conn, conn.cursor() as cur:
        cur.execute("SELECT device, avg(v) AS mean, sum(n) AS total FROM adbc_speed GROUP BY device ORDER BY device")
        t = cur.fetch_arrow_table()
        assert t.to_pydict() == {"device": ["t1", "t2"], "mean": [15.0, 40.0], "total": [3, 7]}, t
        cur.execute("SELECT time, v FROM adbc_speed WHERE device = 't2' ORDER BY time")
        t = cur.fetch_arrow_table()
        assert t.schema.field("time").type == pa.timestamp("ns", tz="UTC"), t.schema
        assert [x.value for x in t.column("time")] == [1700000000000000000, 1700000010000000000]
        assert t.column("v").to_pylist() == [30.0, 50.0]


def check_parameters():
    with connect(READER) as conn, conn.cursor() as cur:
        sql = "SELECT time, v FROM adbc_speed WHERE device = ? AND v > ? ORDER BY time"
        cur.execute(sql, ("t2", 35.0))
        assert cur.fetch_arrow_table().column("v").to_pylist() == [50.0]
        # The same statement again with other values (the driver reuses the prepared statement).
        cur.execute(sql, ("t1", 0.0))
        assert cur.fetch_arrow_table().column("v").to_pylist() == [10.0, 20.0]
        cur.execute("SELECT count(*) AS c FROM adbc_speed WHERE fleet = $1", ("south",))
        assert cur.fetchall() == [(2,)]
        # Timestamps bind as typed values too.
        after = datetime.datetime(2023, 11, 14, 22, 13, 25, tzinfo=datetime.timezone.utc)
        cur.execute("SELECT device, v FROM adbc_speed WHERE time > ? ORDER BY device", (after,))
        assert cur.fetchall() == [("t1", 20.0), ("t2", 50.0)]
        # The parameter schema carries the types DataFusion inferred for the placeholders.
        params = cur.adbc_prepare("SELECT v FROM adbc_speed WHERE device = ? AND n > ?")
        assert params.names == ["$1", "$2"], params
        assert params.types == [pa.string(), pa.int64()], params
        # A value that looks like SQL is only a value.
        cur.execute("SELECT count(*) AS c FROM adbc_speed WHERE device = ?", ("t1' OR '1'='1",))
        assert cur.fetchall() == [(0,)]


def check_metadata():
    with connect(READER) as conn:
        objects = conn.adbc_get_objects(depth="all", db_schema_filter="default", table_name_filter="adbc_%").read_all()
        catalogs = objects.to_pylist()
        assert [c["catalog_name"] for c in catalogs] == ["strata"], catalogs
        schemas = catalogs[0]["catalog_db_schemas"]
        assert [s["db_schema_name"] for s in schemas] == ["default"], schemas
        tables = schemas[0]["db_schema_tables"]
        assert [t["table_name"] for t in tables] == ["adbc_speed"], tables
        assert tables[0]["table_type"] == "TABLE"
        columns = [c["column_name"] for c in tables[0]["table_columns"]]
        assert columns == ["time", "device", "fleet", "v", "n"], columns
        schema = conn.adbc_get_table_schema("adbc_speed", db_schema_filter="default")
        assert schema.names == ["time", "device", "fleet", "v", "n"], schema
        assert schema.field("v").type == pa.float64(), schema
        assert schema.field("n").type == pa.int64(), schema
        assert schema.field("time").type == pa.timestamp("ns", tz="UTC"), schema
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Strata", info


def check_handshake_login():
    conn = flightsql.connect(
        URI, db_kwargs={"username": "anyone", "password": READER}, autocommit=True
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS c FROM adbc_speed")
        assert cur.fetchall() == [(4,)]


def check_refusals():
    try:
        with connect("strata_wrong_token") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except adbc_driver_manager.Error as e:
        assert "invalid token" in str(e), e
    else:
        raise AssertionError("a wrong token was accepted")
    with connect(READER) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT nope FROM adbc_speed")
            cur.fetchall()
        except adbc_driver_manager.Error as e:
            assert "nope" in str(e), e
        else:
            raise AssertionError("an unknown column was accepted")


def check_bulk_ingest():
    schema = pa.schema(
        [("time", pa.timestamp("s", tz="UTC")), ("device", pa.string()), ("rpm", pa.int32()),
         ("load", pa.float64()), ("line", pa.string())],
        metadata={"strata.tags": "line"},
    )
    first = pa.table({"time": [1700000000, 1700000060], "device": ["m1", "m2"], "line": ["a", "b"],
                      "rpm": [900, 1200], "load": [0.5, 0.75]}, schema=schema)
    more = pa.table({"time": [1700000120], "device": ["m1"], "line": ["a"], "rpm": [950], "load": [None]},
                    schema=schema)
    with connect(ADMIN) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("adbc_machines", first, mode="create", db_schema_name="default") == 2
        try:
            cur.adbc_ingest("adbc_machines", first, mode="create", db_schema_name="default")
        except adbc_driver_manager.Error as e:
            assert "already exists" in str(e), e
        else:
            raise AssertionError("mode 'create' on an existing stream was accepted")
        assert cur.adbc_ingest("adbc_machines", more, mode="append", db_schema_name="default") == 1
        cur.execute("SELECT * FROM adbc_machines ORDER BY time")
        t = cur.fetch_arrow_table()
        # `line` is a tag (declared in the schema metadata), so it comes before the fields.
        assert t.schema.names == ["time", "device", "line", "rpm", "load"], t.schema
        assert [x.value for x in t.column("time")] == [1700000000 * 10**9, 1700000060 * 10**9, 1700000120 * 10**9]
        assert t.column("device").to_pylist() == ["m1", "m2", "m1"]
        assert t.column("line").to_pylist() == ["a", "b", "a"]
        assert t.schema.field("rpm").type == pa.int64(), t.schema
        assert t.column("rpm").to_pylist() == [900, 1200, 950]
        assert t.column("load").to_pylist() == [0.5, 0.75, None]
    with connect(READER) as conn, conn.cursor() as cur:
        try:
            cur.adbc_ingest("adbc_machines", more, mode="append", db_schema_name="default")
        except adbc_driver_manager.Error as e:
            assert "lacks the 'write' scope" in str(e), e
        else:
            raise AssertionError("a read-only token could ingest")


def main():
    checks = [check_statement_query, check_parameters, check_metadata, check_handshake_login, check_refusals,
              check_bulk_ingest]
    for check in checks:
        check()
        print(f"ok {check.__name__}")
    print(f"{len(checks)} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure with its trace
        import traceback

        traceback.print_exc()
        print(f"FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
