#!/usr/bin/env python3
"""Row rule latency: a device publishes over MQTT QoS 1 -> the rule's webhook receives it.

Starts `strata serve` (binary: $STRATA_BIN, default target/debug/strata) in a temporary data
directory with its MQTT endpoint, a webhook receiver (Python's http.server, in this process),
registers one device and the row rule `temperature > 90` with a webhook action, then publishes
N readings with paho-mqtt at QoS 1, alternating hot (95.5: fires) and cold (20.5: resolves), and
measures per reading the time from just before `publish()` to the receiver's handler running
(same process, same monotonic clock): MQTT + durable write + rule queue + DataFusion condition +
alert commit (redb fsync) + outbox + HTTP POST. Prints p50/p99/max.

    STRATA_BIN=$CARGO_TARGET_DIR/release/strata python3 benches/rules/row_latency.py -n 400
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt

TOKEN = "bench-admin-token-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(http, method, path, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(http + path, method=method, data=data,
                                 headers={"Authorization": "Bearer " + TOKEN,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return r.status, json.loads(text) if text.strip().startswith(b"{") else text
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=400)
    a = ap.parse_args()
    binary = os.environ.get("STRATA_BIN", "target/debug/strata")
    work = tempfile.mkdtemp(prefix="strata-rule-latency.")
    http_port, mqtt_port, hook_port = free_port(), free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    env = dict(os.environ, STRATA_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen([binary, "serve", "--data-dir", work + "/data",
                               "--http-addr", f"127.0.0.1:{http_port}",
                               "--mqtt-addr", f"127.0.0.1:{mqtt_port}",
                               "--no-print-admin-token"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(work + "/log", "w"))
    got = []
    cond = threading.Condition()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            now = time.perf_counter()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with cond:
                got.append((now, body["state"]))
                cond.notify_all()

        def log_message(self, *args):
            pass

    hooks = ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(http + "/ping")
                break
            except OSError:
                time.sleep(0.1)
        status, dev = call(http, "POST", "/api/v1/devices", {"id": "probe"})
        assert status == 201, dev
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe")
        c.username_pw_set("probe", dev["primary_key"])
        c.connect("127.0.0.1", mqtt_port, keepalive=30)
        c.loop_start()
        topic = "devices/probe/telemetry/env"
        c.publish(topic, json.dumps({"temperature": 20.5}), qos=1).wait_for_publish(10)
        rule = {"name": "hot", "stream": "env", "kind": "row", "condition": "temperature > 90",
                "actions": [{"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}]}
        for _ in range(100):
            status, body = call(http, "POST", "/api/v1/rules", rule)
            if status == 201:
                break
            time.sleep(0.05)  # the first reading is not durable yet
        assert status == 201, body
        lat = []
        for i in range(a.n):
            hot = i % 2 == 0
            want = "firing" if hot else "resolved"
            t0 = time.perf_counter()
            c.publish(topic, json.dumps({"temperature": 95.5 if hot else 20.5}), qos=1)
            with cond:
                assert cond.wait_for(lambda: len(got) > i, timeout=10), "webhook not received"
                when, state = got[i]
            assert state == want, (state, want)
            lat.append((when - t0) * 1000)
        c.loop_stop()
        lat.sort()
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        print(f"binary={binary} readings={len(lat)} p50={pick(0.50):.2f}ms "
              f"p99={pick(0.99):.2f}ms max={lat[-1]:.2f}ms")
    finally:
        server.terminate()
        server.wait()
        hooks.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
