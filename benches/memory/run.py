#!/usr/bin/env python3
"""Server memory under the three loads of the engine issue's memory target, measured as the
server's resident set (VmRSS / VmHWM from /proc/PID/status, sampled every 50 ms):

1. `SELECT *` over a whole fleet history (`--trucks` trucks x `--days` days every `--interval`,
   written by `strata-fleet load`, flushed), read over HTTP as CSV by a client that counts rows and
   throws the bytes away: RSS growth during the query, rows and bytes received;
2. a client inventing series (database `attack_series`): batches of `--batch` lines, each line a
   new device, moving on to a new stream after each refusal, until `--series` series were sent;
3. a client inventing fields (database `attack_fields`): requests of 100 lines, each a new field
   name, moving on to a new stream after each refusal, until `--fields` fields were sent.

Run `--skip select` to see the floods on an otherwise empty server.

For 2 and 3 it prints what was accepted, the first refusal (status and message) and the peak RSS.
Starts `strata serve` ($STRATA_BIN, default target/release/strata; `strata-fleet` from $FLEET_BIN)
in a temporary data directory with `--durability none`; prints one JSON object.

    python3 benches/memory/run.py --trucks 1000 --days 30 --interval 1m
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

TOKEN = "bench-admin-token-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Peak VmRSS of `pid` while it runs."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self):
        self.peak = rss_kib(self.pid)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def post(port, path, body, headers=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Authorization": "Bearer " + TOKEN}
    h.update(headers or {})
    c.request("POST", path, body, h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def select_star(port, pid, stream):
    """Streams `SELECT * FROM stream` as CSV; returns rows, bytes, seconds, RSS before/peak."""
    before = rss_kib(pid)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t0 = time.monotonic()
    with Sampler(pid) as s:
        c.request("POST", "/api/v1/query", f"SELECT * FROM {stream}",
                  {"Authorization": "Bearer " + TOKEN, "Accept": "text/csv"})
        r = c.getresponse()
        assert r.status == 200, r.read()[:500]
        lines = total = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            lines += chunk.count(b"\n")
    return {"rows": lines - 1, "bytes": total, "seconds": round(time.monotonic() - t0, 1),
            "transfer_encoding": r.getheader("Transfer-Encoding"),
            "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(s.peak / 1024, 1),
            "rss_growth_mib": round((s.peak - before) / 1024, 1)}


def invent(port, pid, total, per_request, line, db):
    """Sends lines `line(stream_no, i)` to database `db` until `total` were sent; after each
    refusal the client moves on to a new stream (as an attacker would). Returns what was accepted,
    the first refusals and the server's RSS before, at the peak and after."""
    sent = accepted = 0
    stream_no = 0
    refusals = []
    before = rss_kib(pid)
    with Sampler(pid) as s:
        while sent < total:
            body = "".join(line(stream_no, sent + k) for k in range(per_request))
            status, data = post(port, f"/api/v1/write?db={db}", body.encode())
            sent += per_request
            if status == 204:
                accepted += per_request
                continue
            refusals.append({"status": status, "stream": stream_no,
                             "message": data.decode(errors="replace")[:300]})
            stream_no += 1
    after = rss_kib(pid)
    post(port, "/api/v1/flush", b"")
    time.sleep(1)
    return {"sent": sent, "accepted": accepted, "streams_used": stream_no + 1,
            "refusals": refusals[:3], "refusal_count": len(refusals),
            "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(s.peak / 1024, 1), "rss_after_mib": round(after / 1024, 1),
            "rss_after_flush_mib": round(rss_kib(pid) / 1024, 1),
            # Resident memory not backed by a file: RSS also counts the segment files' mapped
            # pages, which compaction reads right after the flush and the kernel may drop.
            "rss_anon_after_flush_mib": round(rss_kib(pid, "RssAnon") / 1024, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trucks", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--interval", default="1m")
    ap.add_argument("--series", type=int, default=10_000_000)
    ap.add_argument("--fields", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--skip", default="", help="comma list of phases to skip: select,series,fields")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    strata = os.environ.get("STRATA_BIN", "target/release/strata")
    fleet = os.environ.get("FLEET_BIN", os.path.join(os.path.dirname(strata), "strata-fleet"))
    work = tempfile.mkdtemp(prefix="strata-memory-")
    port = free_port()
    env = dict(os.environ, STRATA_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen([strata, "serve", "--data-dir", f"{work}/data", "--http-addr",
                               f"127.0.0.1:{port}", "--no-mqtt", "--no-print-admin-token",
                               "--durability", "none", "--log-level", "warn"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w"))
    out = {"binary": strata}
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        out["rss_idle_mib"] = round(rss_kib(server.pid) / 1024, 1)
        if "select" not in skip:
            start = (int(time.time()) - args.days * 86400 - 3600) * 10**9
            t0 = time.monotonic()
            with Sampler(server.pid) as s:
                load = subprocess.run([fleet, "load", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN,
                                       "--trucks", str(args.trucks), "--start", str(start),
                                       "--duration", f"{args.days * 24}h", "--interval", args.interval,
                                       "--seed", "7", "--quiet"], capture_output=True, text=True, check=True)
                post(port, "/api/v1/flush", b"")
            out["load"] = {"output": load.stdout.strip().splitlines()[-1:],
                           "seconds": round(time.monotonic() - t0, 1), "rss_peak_mib": round(s.peak / 1024, 1)}
            out["select_star_readings"] = select_star(port, server.pid, "readings")
        if "series" not in skip:
            out["series"] = invent(port, server.pid, args.series, args.batch,
                                   lambda s, i: f"inv{s},device=dev{i} v=1 1700000000000000000\n",
                                   "attack_series")
        if "fields" not in skip:
            out["fields"] = invent(port, server.pid, args.fields, 100,
                                   lambda s, i: f"fld{s},device=d f{i}=1 1700000000000000000\n",
                                   "attack_fields")
    finally:
        server.terminate()
        server.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
