#!/usr/bin/env python3
"""Rules under load: ingest throughput without and with 1,000 rules over 10,000 devices, and
the rules' lag behind ingest (from /metrics).

Starts `strata serve` (binary: $STRATA_BIN, default target/debug/strata) in a temporary data
directory, then:

1. phase "no rules": W writer threads POST line protocol batches (B rows each, devices
   d0..d{D-1} round robin, fields temperature and humidity, timestamps = now) to
   /api/v1/write as fast as the server acknowledges them (closed loop: the highest rate this
   binary sustains here; or at --rate, open loop) for S seconds; rows acknowledged per second is
   the throughput;
2. creates R rules of mixed kinds (default 70% row, 20% window: tumbling, hopping, session and
   a few sliding, 10% query rules every 30 s; conditions that rarely hold, as most alert rules
   do) — rule creation time is reported;
3. phase "rules": the same ingest for S seconds while sampling /metrics every second:
   `strata_rule_lag_seconds` (per rule: for row and window rules how long the last batch waited
   between durable and evaluated; for query rules how late the evaluation started),
   `strata_rule_queue_batches` (durable batches waiting for the rules worker) and
   `strata_rule_dropped_rows_total` (rows not evaluated because that queue was full);
4. stops ingest and measures how long the rules worker needs to drain its queue.

With `--rate ROWS_PER_S` the writers are open loop: they post at fixed times so that this rate
is offered in both phases (achieved = rows acknowledged / seconds); without it, closed loop.

Prints one JSON object with every figure. Examples (the figures in docs/rules.md):

    STRATA_BIN=$CARGO_TARGET_DIR/release/strata python3 benches/rules/load.py --seconds 15 --rate 100000
    STRATA_BIN=$CARGO_TARGET_DIR/release/strata python3 benches/rules/load.py --seconds 15 --mix 100,0,0
"""
import argparse
import http.client
import json
import random
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from harness import TOKEN, call, free_port


class Api:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method, path, body=None, raw=None):
        return call(self.base, method, path, body, raw)

    def metrics(self):
        _, text = self.call("GET", "/metrics")
        return text.decode()


def ingest(port, devices, batch, seconds, writers, rate=None):
    """Writers for `seconds`; returns (rows acknowledged, seconds, failed requests).

    Closed loop (`rate` None): each writer posts its next batch as soon as the previous one is
    acknowledged. Open loop (`rate` rows/s): writer w posts its k-th batch at
    start + (k * writers + w) * batch / rate (at once when it is behind), so the offered load is
    `rate` whatever the server does; a server that cannot keep up shows as a lower achieved
    rate. Either way the figure is rows acknowledged / elapsed seconds.
    """
    start = time.monotonic()
    stop = start + seconds
    counts = [0] * writers
    failures = [0] * writers
    period = None if rate is None else batch / rate  # seconds between any two batches

    def writer(w):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        rnd = random.Random(w)
        next_device = w * (devices // max(writers, 1))
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "text/plain"}
        k = 0
        while time.monotonic() < stop:
            if period is not None:
                due = start + (k * writers + w) * period
                k += 1
                if due >= stop:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            now = time.time_ns()
            lines = []
            for i in range(batch):
                d = (next_device + i) % devices
                # Mostly 20-80; a rare spike, so that rules sometimes match.
                t = 99.0 if rnd.random() < 0.0001 else 20.0 + rnd.random() * 60.0
                lines.append(f"env,device=d{d} temperature={t:.2f},humidity={rnd.random():.3f} {now + i}")
            next_device = (next_device + batch) % devices
            body = "\n".join(lines).encode()
            conn.request("POST", "/api/v1/write?db=default&precision=ns", body, headers)
            r = conn.getresponse()
            r.read()
            if r.status == 204:
                counts[w] += batch
            else:
                failures[w] += 1
        conn.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Open loop: the offered period is `seconds` even if the last batch was acknowledged early.
    elapsed = time.monotonic() - start
    return sum(counts), elapsed if period is None else max(elapsed, seconds), sum(failures)


def rule_specs(n, mix):
    """n rules: mix = percentages (row, window, query), default 70/20/10; windows are
    tumbling, hopping and session, one in 20 sliding."""
    specs = []
    n_row = n * mix[0] // 100
    n_window = n * mix[1] // 100
    for i in range(n_row):
        specs.append({"name": f"row-{i}", "stream": "env", "kind": "row",
                      "condition": f"temperature > {90 + i % 9}"})
    windows = [{"type": "tumbling", "size": "5s"},
               {"type": "hopping", "size": "10s", "hop": "5s"},
               {"type": "session", "gap": "2s", "max": "10s"}]
    for i in range(n_window):
        w = {"type": "sliding", "size": "5s"} if i % 20 == 19 else windows[i % 3]
        specs.append({"name": f"window-{i}", "stream": "env", "kind": "window", "window": w,
                      "group_by": ["device"], "select": "avg(temperature) AS t",
                      "condition": f"t > {85 + i % 10}", "lateness": "1s"})
    for i in range(n - n_row - n_window):
        specs.append({"name": f"query-{i}", "kind": "query", "every": "30s",
                      "sql": "SELECT device, max(temperature) AS m FROM env "
                             "WHERE time > now() - INTERVAL '30 seconds' GROUP BY device "
                             f"HAVING max(temperature) > {150 + i}"})
    return specs


LAG = re.compile(r'^strata_rule_lag_seconds\{rule="([^"]+)"\} (\S+)$', re.M)


def sample(api):
    text = api.metrics()
    lags = {r: float(v) for r, v in LAG.findall(text)}

    def scalar(name):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def total(name):
        return sum(float(v) for v in re.findall(rf'^{name}\{{rule="[^"]+"\}} (\S+)$', text, re.M))

    stream = [v for r, v in lags.items() if not r.startswith("query-")]
    query = [v for r, v in lags.items() if r.startswith("query-")]
    return {"max_lag_row_window_s": max(stream, default=0.0),
            "max_lag_query_s": max(query, default=0.0),
            "queue_batches": scalar("strata_rule_queue_batches"),
            "dropped_rows": scalar("strata_rule_dropped_rows_total"),
            "evaluations": total("strata_rule_evaluations_total"),
            "errors": total("strata_rule_errors_total")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=None,
                    help="open loop: offer this many rows/s in total (default: closed loop)")
    ap.add_argument("--mix", default="70,20,10",
                    help="percent of row, window and query rules")
    ap.add_argument("--drain-timeout", type=float, default=120,
                    help="longest wait for the rules queue to drain after ingest")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    a = ap.parse_args()
    binary = os.environ.get("STRATA_BIN", "target/debug/strata")
    work = tempfile.mkdtemp(prefix="strata-rules-load.")
    port = free_port()
    env = dict(os.environ, STRATA_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen([binary, "serve", "--data-dir", work + "/data",
                               "--http-addr", f"127.0.0.1:{port}", "--no-mqtt",
                               "--no-print-admin-token"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(work + "/log", "w"))
    # On stderr, so that a profiler can attach (`perf record -g -p PID`).
    print(f"server pid {server.pid}", file=sys.stderr, flush=True)
    api = Api(port)
    out = {"binary": binary, "mix_row_window_query_pct": a.mix, "devices": a.devices, "batch_rows": a.batch, "writers": a.writers,
           "seconds": a.seconds, "offered_rows_per_s": a.rate or "closed loop"}
    try:
        deadline = time.time() + 60
        while True:
            try:
                if api.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not start; see " + work + "/log")
            time.sleep(0.1)

        rows, secs, failed = ingest(port, a.devices, a.batch, a.seconds, a.writers, a.rate)
        out["no_rules"] = {"rows": rows, "rows_per_s": round(rows / secs), "failed": failed}

        t0 = time.monotonic()
        kinds = {}
        mix = [int(x) for x in a.mix.split(",")]
        for spec in rule_specs(a.rules, mix):
            status, body = api.call("POST", "/api/v1/rules", spec)
            if status != 201:
                raise SystemExit(f"rule {spec['name']}: {status} {body[:300]!r}")
            kinds[spec["kind"]] = kinds.get(spec["kind"], 0) + 1
        out["rules"] = {"count": a.rules, "kinds": kinds,
                        "create_s": round(time.monotonic() - t0, 1)}

        before = sample(api)
        samples = []
        stop = threading.Event()

        def sampler():
            while not stop.wait(1.0):
                try:
                    samples.append(sample(api))
                except OSError:
                    pass

        th = threading.Thread(target=sampler)
        th.start()
        rows, secs, failed = ingest(port, a.devices, a.batch, a.seconds, a.writers, a.rate)
        stop.set()
        th.join()
        after = sample(api)
        out["with_rules"] = {
            "rows": rows, "rows_per_s": round(rows / secs), "failed": failed,
            "throughput_drop_pct": round(100 * (1 - (rows / secs) / out["no_rules"]["rows_per_s"]), 1),
            "max_lag_row_window_s": round(max((s["max_lag_row_window_s"] for s in samples), default=0), 3),
            "max_lag_query_s": round(max((s["max_lag_query_s"] for s in samples), default=0), 3),
            "max_queue_batches": max((s["queue_batches"] or 0 for s in samples), default=0),
            "dropped_rows": (after["dropped_rows"] or 0) - (before["dropped_rows"] or 0),
            "evaluations": after["evaluations"] - before["evaluations"],
            "errors": after["errors"] - before["errors"],
        }
        t0 = time.monotonic()
        drained = None
        while time.monotonic() - t0 < a.drain_timeout:
            s = sample(api)
            if not s["queue_batches"]:
                drained = round(time.monotonic() - t0, 1)
                break
            time.sleep(0.5)
        out["with_rules"]["queue_drain_s"] = drained  # None: not drained within --drain-timeout
        out["with_rules"]["after_drain"] = sample(api)
        print(json.dumps(out, indent=1))
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("data and log kept in", work)


if __name__ == "__main__":
    main()
