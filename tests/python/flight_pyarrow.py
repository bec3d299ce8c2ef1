"""Strata's Flight SQL endpoint driven by pyarrow.flight (a client written independently of Strata).

Run by tests/tests/flight_sql.rs against a real server. Environment:
  STRATA_FLIGHT_URI   grpc://127.0.0.1:PORT
  STRATA_ADMIN_TOKEN  an admin API token
  STRATA_READ_TOKEN   a token with only the read scope
  STRATA_DEVICE_ID    a registered device and its key
  STRATA_DEVICE_KEY

Checks: the Basic-auth handshake returns a bearer token; DoPut of a record batch to
[database, stream] is acknowledged and then readable through a Flight SQL statement query
(values compared with what was written); planner errors, a wrong token, a read-only token on
DoPut and a bad DoPut schema are refused with the right status and a clear message; device
credentials may DoPut their own rows only, and cannot query.
Prints "N passed, 0 failed" and exits 0 when every check passes.
"""

import base64
import json
import os
import sys

import pyarrow as pa
import pyarrow.flight as flight

URI = os.environ["STRATA_FLIGHT_URI"]
ADMIN = os.environ["STRATA_ADMIN_TOKEN"]
READER = os.environ["STRATA_READ_TOKEN"]

SQL_QUERY_TYPE = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, data):
    """A length-delimited protobuf field."""
    return varint((field << 3) | 2) + varint(len(data)) + data


def statement_command(sql):
    """google.protobuf.Any{CommandStatementQuery{query = sql}}, encoded by hand."""
    inner = pb_bytes(1, sql.encode())
    return pb_bytes(1, SQL_QUERY_TYPE.encode()) + pb_bytes(2, inner)


def options(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def run_sql(client, sql, token=ADMIN):
    opts = options(token)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement_command(sql)), opts)
    assert len(info.endpoints) == 1, info
    return client.do_get(info.endpoints[0].ticket, opts).read_all()


def expect_error(kind, needle, fn):
    try:
        fn()
    except kind as e:
        assert needle in str(e), f"expected {needle!r} in {e!r}"
        return e
    raise AssertionError(f"expected {kind.__name__} containing {needle!r}")


ROWS = {
    "time": [1_700_000_000_000, 1_700_000_010_000, 1_700_000_000_000, 1_700_000_020_000],
    "device": ["dev-a", "dev-a", "dev-b", "dev-b"],
    "site": ["north", "north", "south", None],
    "temp": [21.5, 22.25, -3.0, None],
    "count": [1, 2, 3, 4],
    "ok": [True, False, True, True],
    "note": ["x", None, "z", "w"],
}


def env_table():
    schema = pa.schema(
        [
            ("time", pa.timestamp("ms", tz="UTC")),
            ("device", pa.string()),
            ("site", pa.string()),
            ("temp", pa.float64()),
            ("count", pa.int64()),
            ("ok", pa.bool_()),
            ("note", pa.string()),
        ],
        metadata={"strata.tags": "site"},
    )
    return pa.table(ROWS, schema=schema)


def do_put(client, token, path, table):
    descriptor = flight.FlightDescriptor.for_path(*path)
    writer, reader = client.do_put(descriptor, table.schema, options(token))
    acks = []
    for batch in table.to_batches(max_chunksize=2):
        writer.write_batch(batch)
        buf = reader.read()
        acks.append(json.loads(buf.to_pybytes()) if buf is not None else None)
    writer.done_writing()
    writer.close()
    return acks


def check_handshake(client):
    header = client.authenticate_basic_token("any-user", ADMIN)
    assert header == (b"authorization", f"Bearer {ADMIN}".encode()), header
    expect_error(
        flight.FlightUnauthenticatedError,
        "invalid token",
        lambda: flight.connect(URI).authenticate_basic_token("any-user", "strata_wrong"),
    )


def check_put_and_query_back(client):
    acks = do_put(client, ADMIN, ["default", "flight_env"], env_table())
    assert acks == [{"rows": 2}, {"rows": 2}], acks
    got = run_sql(
        client,
        "SELECT time, device, site, temp, count, ok, note FROM flight_env ORDER BY device, time",
    )
    assert got.num_rows == 4, got
    times = [t.value // 1_000_000 for t in got.column("time")]
    assert got.schema.field("time").type == pa.timestamp("ns", tz="UTC"), got.schema
    order = sorted(range(4), key=lambda i: (ROWS["device"][i], ROWS["time"][i]))
    for name in ["device", "site", "temp", "count", "ok", "note"]:
        want = [ROWS[name][i] for i in order]
        assert got.column(name).to_pylist() == want, (name, got.column(name).to_pylist(), want)
    assert times == [ROWS["time"][i] for i in order], times
    agg = run_sql(client, "SELECT device, avg(temp) AS mean FROM flight_env GROUP BY device ORDER BY device")
    assert agg.to_pydict() == {"device": ["dev-a", "dev-b"], "mean": [21.875, -3.0]}, agg
    # The read-only token may query what the admin wrote.
    n = run_sql(client, "SELECT count(*) AS n FROM flight_env", token=READER)
    assert n.column("n").to_pylist() == [4], n


def check_refusals(client):
    expect_error(flight.FlightUnauthenticatedError, "invalid token",
                 lambda: run_sql(client, "SELECT 1", token="strata_not_a_token"))
    no_auth = flight.FlightCallOptions()
    expect_error(flight.FlightUnauthenticatedError, "missing credentials",
                 lambda: client.get_flight_info(
                     flight.FlightDescriptor.for_command(statement_command("SELECT 1")), no_auth))
    expect_error(pa.ArrowInvalid, "nope", lambda: run_sql(client, "SELECT nope FROM flight_env"))
    expect_error(pa.ArrowInvalid, "missing_table", lambda: run_sql(client, "SELECT * FROM missing_table"))
    expect_error(flight.FlightUnauthorizedError, "write",
                 lambda: do_put(client, READER, ["default", "flight_env"], env_table()))
    bad = pa.table({"time": [1], "device": ["d"], "when": pa.array([1], pa.date32())})
    expect_error(pa.ArrowInvalid, "column 'when' has type Date32",
                 lambda: do_put(client, ADMIN, ["default", "flight_bad"], bad))
    no_device = pa.table({"time": [1], "v": [1.0]})
    expect_error(pa.ArrowInvalid, "missing column 'device'",
                 lambda: do_put(client, ADMIN, ["default", "flight_bad"], no_device))
    expect_error(pa.ArrowInvalid, "PATH",
                 lambda: do_put(client, ADMIN, ["only-one"], env_table()))
    # Nothing of the refused writes is visible.
    expect_error(pa.ArrowInvalid, "flight_bad", lambda: run_sql(client, "SELECT * FROM flight_bad"))
    # A type conflict with the stored schema is the engine's refusal, naming the field.
    conflict = pa.table({"time": [1], "device": ["dev-a"], "temp": ["hot"]})
    expect_error(pa.ArrowInvalid, "temp",
                 lambda: do_put(client, ADMIN, ["default", "flight_env"], conflict))


def check_device_credentials(client):
    """A device's own key (Basic device_id:key) may DoPut rows of that device only."""
    device, key = os.environ["STRATA_DEVICE_ID"], os.environ["STRATA_DEVICE_KEY"]
    basic = base64.b64encode(f"{device}:{key}".encode())
    opts = flight.FlightCallOptions(headers=[(b"authorization", b"Basic " + basic)])
    own = pa.table({"time": [1_700_000_000_000_000_000], "device": [device], "v": [1.5]})
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("default", "flight_dev"), own.schema, opts)
    writer.write_table(own)
    writer.done_writing()
    assert json.loads(reader.read().to_pybytes()) == {"rows": 1}
    writer.close()
    other = pa.table({"time": [1_700_000_000_000_000_000], "device": ["someone-else"], "v": [2.5]})

    def put_other():
        w, _ = client.do_put(flight.FlightDescriptor.for_path("default", "flight_dev"), other.schema, opts)
        w.write_table(other)
        w.close()

    expect_error(flight.FlightUnauthorizedError, "may only write its own telemetry", put_other)
    got = run_sql(client, "SELECT device, v FROM flight_dev")
    assert got.to_pydict() == {"device": [device], "v": [1.5]}, got
    # A device cannot query.
    expect_error(flight.FlightUnauthorizedError, "may only write telemetry",
                 lambda: client.get_flight_info(
                     flight.FlightDescriptor.for_command(statement_command("SELECT 1")), opts))


def main():
    client = flight.connect(URI)
    checks = [check_handshake, check_put_and_query_back, check_refusals, check_device_credentials]
    for check in checks:
        check(client)
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
