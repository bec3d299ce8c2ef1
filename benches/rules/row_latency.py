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
import tempfile
import time

import paho.mqtt.client as mqtt

from harness import Hooks, call, free_port, start_server, stop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=400)
    a = ap.parse_args()
    binary = os.environ.get("STRATA_BIN", "target/debug/strata")
    work = tempfile.mkdtemp(prefix="strata-rule-latency.")
    http_port, mqtt_port, hook_port = free_port(), free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    hooks = Hooks(hook_port, lambda body, perf, ns: (perf, body["state"]))
    got, cond = hooks.got, hooks.cond
    server = start_server(binary, work, http_port, "--mqtt-addr", f"127.0.0.1:{mqtt_port}")
    try:
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
        stop(server, hooks, work)


if __name__ == "__main__":
    main()
