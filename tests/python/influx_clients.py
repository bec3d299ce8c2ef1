"""Compatibility check with the official InfluxDB Python clients (not run by CI).

Usage, against a running server, with a token that has the `write` scope (e.g. the admin token):
    pip install influxdb-client influxdb
    python tests/python/influx_clients.py http://127.0.0.1:7086 "$(cat strata-data/admin-token)"

The token can also come from STRATA_TOKEN. Writes through influxdb-client (v2 API: the token as
`Authorization: Token`, plain and gzip) and influxdb (v1 API: the token as the password), then
reads the points back through /api/v1/read and checks them.
"""

import os

import json
import sys
import urllib.request
from urllib.parse import urlparse

from influxdb import InfluxDBClient as V1Client
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS

T = 1714564800  # 2024-05-01T12:00:00Z


def read(base, token, db, stream):
    req = urllib.request.Request(f"{base}/api/v1/read?db={db}&stream={stream}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return {(s["device"], row[0]): row[1] for s in json.load(r)["series"] for row in s["values"]}


def main(base, token):
    with InfluxDBClient(url=base, token=token, org="any") as client:
        assert client.ping()
        w = client.write_api(write_options=SYNCHRONOUS)
        w.write("pyv2", record=f"readings,device=t1 velocity=3.5 {T}000000000")
        w.write("pyv2", record=Point("readings").tag("device", "t2").field("velocity", 7.25).time(T, write_precision="s"))
        w.write("pyv2", record=[{"measurement": "readings", "tags": {"device": "t3"}, "fields": {"velocity": 1.0}, "time": T * 1000}], write_precision="ms")
    with InfluxDBClient(url=base, token=token, org="any", enable_gzip=True) as client:
        client.write_api(write_options=SYNCHRONOUS).write("pyv2", record=f"readings,device=t4 velocity=9.5 {T}000000000")
    u = urlparse(base)
    v1 = V1Client(host=u.hostname, port=u.port, username="app", password=token, database="pyv1")
    assert v1.write_points([{"measurement": "cpu", "tags": {"device": "h1"}, "fields": {"usage": 0.5}, "time": T}], time_precision="s")
    ns = T * 1_000_000_000
    assert read(base, token, "pyv2", "readings") == {("t1", ns): 3.5, ("t2", ns): 7.25, ("t3", ns): 1.0, ("t4", ns): 9.5}
    assert read(base, token, "pyv1", "cpu") == {("h1", ns): 0.5}
    print("influxdb-client (v2, gzip) and influxdb (v1) clients: OK")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7086"
    tok = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("STRATA_TOKEN", "")
    if not tok:
        sys.exit("usage: influx_clients.py URL TOKEN (or set STRATA_TOKEN)")
    main(url, tok)
