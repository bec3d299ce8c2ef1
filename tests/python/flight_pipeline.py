"""Flight DoPut through the write pipeline (run by tests/tests/write_pipeline.rs).

Environment:
  STRATA_FLIGHT_URI   grpc://host:port of the server (device database 'iot')
  STRATA_TOKEN        an API token with the 'write' scope
  STRATA_D1_KEY       key of device d1 (model 'thermo': reject temperature > 85)
  STRATA_F1_KEY       key of device f1 (model 'thermo-flag': flag temperature > 85)

Checks: a device (Basic id:key) is refused (PermissionDenied) when its batch names another
device or goes to a database other than the device database; a model violation is refused
(InvalidArgument) under 'reject' and stored under 'flag'; a token's batch is validated against
each row's device model; NaN and infinite floats are refused. The Rust test then reads back
exactly the accepted rows.
"""

import base64
import json
import os

import pyarrow as pa
import pyarrow.flight as flight

URI = os.environ["STRATA_FLIGHT_URI"]
T0 = 1_700_000_000_000_000_000


def basic(device, key):
    token = base64.b64encode(f"{device}:{key}".encode())
    return flight.FlightCallOptions(headers=[(b"authorization", b"Basic " + token)])


def bearer(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def table(devices, temps, start):
    return pa.table({
        "time": pa.array([T0 + start + i for i in range(len(devices))], pa.int64()),
        "device": devices,
        "temperature": pa.array(temps, pa.float64()),
    })


def put(client, opts, db, rows):
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(db, "flight"), rows.schema, opts)
    writer.write_table(rows)
    writer.done_writing()
    buf = reader.read()
    writer.close()  # raises the server's refusal
    return json.loads(buf.to_pybytes())


def refused(kind, needles, fn):
    try:
        fn()
    except kind as e:
        for n in needles:
            assert n in str(e), f"{n!r} not in {e}"
        return
    except Exception as e:  # noqa: BLE001 - report the wrong kind with its message
        raise AssertionError(f"expected {kind.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"expected {kind.__name__}, nothing was raised")


def main():
    client = flight.connect(URI)
    d1 = basic("d1", os.environ["STRATA_D1_KEY"])
    f1 = basic("f1", os.environ["STRATA_F1_KEY"])
    token = bearer(os.environ["STRATA_TOKEN"])

    refused(flight.FlightUnauthorizedError, ["may only write its own telemetry", "'d2'"],
            lambda: put(client, d1, "iot", table(["d1", "d2"], [1.0, 2.0], 0)))
    refused(flight.FlightUnauthorizedError, ["database 'iot'", "not 'default'"],
            lambda: put(client, d1, "default", table(["d1"], [1.0], 10)))
    refused(pa.ArrowInvalid, ["model 'thermo'", "above the maximum 85"],
            lambda: put(client, d1, "iot", table(["d1"], [99.0], 20)))
    assert put(client, d1, "iot", table(["d1"], [20.0], 30)) == {"rows": 1}
    assert put(client, f1, "iot", table(["f1"], [99.0], 40)) == {"rows": 1}
    # NaN and infinities are refused as in line protocol and JSON (a model's min/max could not
    # judge NaN: it compares false both ways).
    for bad in [float("nan"), float("inf"), float("-inf")]:
        refused(pa.ArrowInvalid, ["column 'temperature' row 0", "not a finite number"],
                lambda bad=bad: put(client, d1, "iot", table(["d1"], [bad], 60)))
    # A token writes any device's rows, each checked against its device's model.
    refused(pa.ArrowInvalid, ["model 'thermo'", "record 1"],
            lambda: put(client, token, "iot", table(["free", "d2"], [500.0, 500.0], 50)))
    print("ok")


if __name__ == "__main__":
    main()
