#!/usr/bin/env python3
"""Cloud-to-device command latency: API call -> device receives it over MQTT.

Against a running server (`strata serve --mqtt-addr 127.0.0.1:1883`), registers a device
(or reuses it), connects it with paho-mqtt (clean_session=False, subscribed to its command
topics), then sends N commands one after another with `POST /api/v1/devices/{id}/commands`
and measures, per command, the time from just before the HTTP request to the moment the
device's on_message callback runs (same process, same monotonic clock). Prints p50/p99/max.

    python3 benches/devices/command_latency.py --http http://127.0.0.1:8086 \
        --mqtt-port 1883 --token "$STRATA_ADMIN_TOKEN" -n 500
"""
import argparse
import json
import threading
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt


def call(http, token, method, path, body=None):
    req = urllib.request.Request(http + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", default="http://127.0.0.1:8086")
    ap.add_argument("--mqtt-port", type=int, default=1883)
    ap.add_argument("--token", required=True)
    ap.add_argument("--device", default="latency-probe")
    ap.add_argument("-n", type=int, default=500)
    a = ap.parse_args()
    call(a.http, a.token, "DELETE", "/api/v1/devices/" + a.device)
    status, dev = call(a.http, a.token, "POST", "/api/v1/devices", {"id": a.device})
    assert status == 201, dev
    got = {}
    cond = threading.Condition()

    def on_message(_c, _u, msg):
        now = time.perf_counter()
        cid = json.loads(msg.payload)["id"]
        with cond:
            got[cid] = now
            cond.notify_all()

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.device, clean_session=False)
    c.username_pw_set(a.device, dev["primary_key"])
    c.on_message = on_message
    c.on_connect = lambda cl, *_: cl.subscribe(f"devices/{a.device}/commands/#", qos=1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect("127.0.0.1", a.mqtt_port, keepalive=30)
    c.loop_start()
    assert subscribed.wait(10), "no SUBACK"
    lat = []
    for i in range(a.n):
        t0 = time.perf_counter()
        status, cmd = call(a.http, a.token, "POST", f"/api/v1/devices/{a.device}/commands",
                           {"name": "probe", "payload": {"i": i}, "ack": False})
        assert status == 201, cmd
        with cond:
            assert cond.wait_for(lambda: cmd["id"] in got, timeout=10), "command not received"
            lat.append((got[cmd["id"]] - t0) * 1000)
    c.disconnect()
    c.loop_stop()
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"commands={len(lat)} p50={pick(0.50):.2f}ms p99={pick(0.99):.2f}ms max={lat[-1]:.2f}ms")


if __name__ == "__main__":
    main()
