#!/usr/bin/env python3
"""Window rule latency: a window closes (its end plus the lateness is reached) -> webhook received.

Starts `strata serve` (binary: $STRATA_BIN, default target/debug/strata) in a temporary data
directory, a webhook receiver (Python's http.server, in this process) and one device that writes
a reading every --period seconds over HTTP (line protocol, event time = the wall clock when it is
sent, one request per reading, `/api/v1/write` answers once the row is durable). The rule is a
tumbling window of --size with --lateness, `avg(temperature) AS t`, `t > 80`, a webhook action;
the device's readings are hot (95) in even windows and cold (20) in odd ones, so every window
that closes is a transition (firing, then resolved) and notifies once.

A window [start, end) closes when a row with event time >= end + lateness is written (the
watermark is the highest event time minus the lateness). For each notification (matched to its
window by the webhook's `time`, the window's end) the bench reports, in milliseconds:

- `from_write`: from just before the closing row's POST to the webhook received (the issue's
  "notification after the window closes plus its lateness": durable write + rules queue +
  window close + alert commit + outbox + HTTP POST);
- `from_ack`: from the closing row's write acknowledged to the webhook received;
- `from_deadline`: from the wall-clock moment end + lateness to the webhook received (adds the
  wait for the device's next reading, up to --period).

Prints p50/p99/max of each over the windows after the first --warmup ones.

    STRATA_BIN=$CARGO_TARGET_DIR/release/strata python3 benches/rules/window_latency.py -n 60
"""
import argparse
import calendar
import http.client as httpc
import json
import os
import re
import tempfile
import threading
import time

from harness import TOKEN, Hooks, call, free_port, start_server, stop

RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$")


def parse_ns(text):
    m = RFC3339.match(text)
    if not m:
        raise ValueError(f"not RFC 3339: {text!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s)))
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def stats(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return {"p50": round(pick(0.50), 2), "p99": round(pick(0.99), 2),
            "max": round(values[-1], 2)}


class Device:
    """Writes one reading every `period` seconds: (event ns, sent ns, acknowledged ns) each."""

    def __init__(self, port, size_ns, period):
        self.port, self.size_ns, self.period = port, size_ns, period
        self.rows = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        conn = httpc.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "text/plain"}
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                t = time.time_ns()
                hot = (t // self.size_ns) % 2 == 0
                body = f"env,device=probe temperature={95.0 if hot else 20.0} {t}".encode()
                conn.request("POST", "/api/v1/write?db=default&precision=ns", body, headers)
                r = conn.getresponse()
                r.read()
                acked = time.time_ns()
                if r.status != 204:
                    raise RuntimeError(f"write answered {r.status}")
                self.rows.append((t, t, acked))
                next_at += self.period
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        except Exception as e:  # reported by main
            self.error = e
        finally:
            conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=60, help="windows measured")
    ap.add_argument("--size", type=float, default=1.0, help="window size, seconds")
    ap.add_argument("--lateness", type=float, default=0.5, help="allowed lateness, seconds")
    ap.add_argument("--period", type=float, default=0.1, help="seconds between readings")
    ap.add_argument("--warmup", type=int, default=2, help="first windows not counted")
    a = ap.parse_args()
    binary = os.environ.get("STRATA_BIN", "target/debug/strata")
    work = tempfile.mkdtemp(prefix="strata-window-latency.")
    http_port, hook_port = free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    size_ns, late_ns = int(a.size * 1e9), int(a.lateness * 1e9)
    # (received ns, window end ns, state)
    hooks = Hooks(hook_port, lambda body, perf, ns: (ns, parse_ns(body["time"]), body["state"]))
    got, cond = hooks.got, hooks.cond
    server = start_server(binary, work, http_port, "--no-mqtt")
    device = Device(http_port, size_ns, a.period)
    try:
        # The stream must exist before the rule is accepted: one old reading.
        conn = httpc.HTTPConnection("127.0.0.1", http_port, timeout=30)
        conn.request("POST", "/api/v1/write?db=default&precision=ns",
                     f"env,device=probe temperature=20.0 {time.time_ns() - 3_600_000_000_000}",
                     {"Authorization": "Bearer " + TOKEN, "Content-Type": "text/plain"})
        assert conn.getresponse().status == 204
        conn.close()
        rule = {"name": "avg-hot", "stream": "env", "kind": "window",
                "window": {"type": "tumbling", "size": f"{int(a.size * 1000)}ms"},
                "lateness": f"{int(a.lateness * 1000)}ms", "group_by": ["device"],
                "select": "avg(temperature) AS t", "condition": "t > 80",
                "actions": [{"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}]}
        for _ in range(100):
            status, body = call(http, "POST", "/api/v1/rules", rule)
            if status == 201:
                break
            time.sleep(0.05)  # the first row is not durable yet
        assert status == 201, body
        writer = threading.Thread(target=device.run)
        writer.start()
        want = a.n + a.warmup
        deadline = time.monotonic() + (want + 5) * a.size * 2 + 30
        with cond:
            cond.wait_for(lambda: len(got) >= want or device.error is not None,
                          timeout=max(1.0, deadline - time.monotonic()))
        device.stop.set()
        writer.join()
        if device.error is not None:
            raise SystemExit(f"device: {device.error}")
        with cond:
            notes = sorted(got, key=lambda g: g[1])
        if len(notes) < want:
            raise SystemExit(f"only {len(notes)} of {want} notifications")
        rows = sorted(device.rows)
        from_write, from_ack, from_deadline, states = [], [], [], []
        for received, end, state in notes[a.warmup:want]:
            closing = next(r for r in rows if r[0] >= end + late_ns)
            from_write.append((received - closing[1]) / 1e6)
            from_ack.append((received - closing[2]) / 1e6)
            from_deadline.append((received - (end + late_ns)) / 1e6)
            states.append(state)
        # Every window is a transition: firing and resolved alternate.
        alternating = all(x != y for x, y in zip(states, states[1:]))
        print(json.dumps({"binary": binary, "windows": len(from_write), "size_s": a.size,
                          "lateness_s": a.lateness, "period_s": a.period,
                          "states_alternate": alternating,
                          "from_write_ms": stats(from_write), "from_ack_ms": stats(from_ack),
                          "from_deadline_ms": stats(from_deadline)}, indent=1))
    finally:
        device.stop.set()
        stop(server, hooks, work)


if __name__ == "__main__":
    main()
