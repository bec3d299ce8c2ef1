"""Publishes telemetry to Strata's MQTT endpoint with paho-mqtt (an independent client).

Usage: paho_publish.py HOST PORT DEVICE KEY COUNT

Connects as DEVICE (client id = user name = DEVICE, password = KEY) with MQTT 3.1.1,
subscribes to its own command topic and to another device's (which must be refused), then
publishes COUNT JSON records at QoS 1 to devices/DEVICE/telemetry/paho, waiting for every
PUBACK. Prints one line: "acked N granted G refused R". Exits non-zero on any failure.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt


def main():
    host, port, device, key, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    suback = threading.Event()
    granted = []

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        granted.extend(reason_codes)
        if len(granted) >= 2:
            suback.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv311)
    client.username_pw_set(device, key)
    client.on_subscribe = on_subscribe
    client.max_inflight_messages_set(100)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    client.subscribe(f"devices/{device}/commands/#", qos=1)
    client.subscribe("devices/someone-else/commands/#", qos=1)
    if not suback.wait(10):
        sys.exit("no SUBACK")
    infos = []
    for i in range(count):
        payload = json.dumps({"ts": 1700000000000 + i, "seq": i, "label": f"m{i}", "ok": i % 2 == 0})
        infos.append(client.publish(f"devices/{device}/telemetry/paho", payload, qos=1))
    acked = 0
    for info in infos:
        info.wait_for_publish(timeout=30)
        if info.is_published():
            acked += 1
    client.disconnect()
    client.loop_stop()
    refused = sum(1 for rc in granted if rc.is_failure)
    print(f"acked {acked} granted {len(granted) - refused} refused {refused}")
    if acked != count:
        sys.exit(1)


if __name__ == "__main__":
    main()
