#!/usr/bin/env python3
"""Twin desired-update latency: PATCH .../twin/desired -> device receives the patch over MQTT.

Against a running server (`strata serve --mqtt-addr 127.0.0.1:1883`), registers a device
(or re-creates it), connects it with paho-mqtt (subscribed to `devices/{id}/twin/desired`), waits
for the full desired document, then sends N desired patches one after another with
`PATCH /api/v1/devices/{id}/twin/desired` and measures, per patch, the time from just before the
HTTP request to the moment the device's on_message callback receives that `$version` (same
process, same monotonic clock). Prints p50/p99/max.

    python3 benches/devices/twin_latency.py --http http://127.0.0.1:8086 \
        --mqtt-port 1883 --token "$STRATA_ADMIN_TOKEN" -n 500
"""
import argparse
import json
import threading
import time

import paho.mqtt.client as mqtt

from command_latency import call  # same directory: the HTTP helper of the command bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", default="http://127.0.0.1:8086")
    ap.add_argument("--mqtt-port", type=int, default=1883)
    ap.add_argument("--token", required=True)
    ap.add_argument("--device", default="twin-latency-probe")
    ap.add_argument("-n", type=int, default=500)
    a = ap.parse_args()
    call(a.http, a.token, "DELETE", "/api/v1/devices/" + a.device)
    status, dev = call(a.http, a.token, "POST", "/api/v1/devices", {"id": a.device})
    assert status == 201, dev
    got = {}
    cond = threading.Condition()

    def on_message(_c, _u, msg):
        now = time.perf_counter()
        version = json.loads(msg.payload)["$version"]
        with cond:
            got[version] = now
            cond.notify_all()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.device, clean_session=True)
    c.username_pw_set(a.device, dev["primary_key"])
    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe(f"devices/{a.device}/twin/desired", qos=1)
    c.connect("127.0.0.1", a.mqtt_port, keepalive=30)
    c.loop_start()
    with cond:
        assert cond.wait_for(lambda: 0 in got, timeout=10), "no full desired document"
    lat = []
    for i in range(a.n):
        t0 = time.perf_counter()
        status, twin = call(a.http, a.token, "PATCH", f"/api/v1/devices/{a.device}/twin/desired",
                            {"setpoint": i, "mode": "eco" if i % 2 else "boost"})
        assert status == 200, twin
        version = twin["desired"]["$version"]
        with cond:
            assert cond.wait_for(lambda: version in got, timeout=10), "patch not received"
            lat.append((got[version] - t0) * 1000)
    c.disconnect()
    c.loop_stop()
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"patches={len(lat)} p50={pick(0.50):.2f}ms p99={pick(0.99):.2f}ms max={lat[-1]:.2f}ms")


if __name__ == "__main__":
    main()
