#!/usr/bin/env python3
"""Two or more builds of the server, one after the other, on the same data directory.

    benches/tsbs/ab.py DATA_DIR QUERY.sql BIN... [--runs-cache-mb MB] [--runs N] [--rounds R]

For each round and each binary: starts `BIN serve` on DATA_DIR (127.0.0.1:18099,
`--durability none`), times the query's first run, runs it twice more untimed, then prints the
median and minimum of N timed runs (Python `http.client`, one keep-alive connection, CSV), and
stops the server. Alternating builds on one machine is what makes their figures comparable on a
shared, noisy machine. DATA_DIR is typically kept from `SCALE_KEEP=DIR benches/tsbs/scale.sh`.
"""
import argparse
import http.client
import os
import statistics
import subprocess
import time

TOKEN = "bench-admin-token-0123456789"
PORT = 18099


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("query")
    ap.add_argument("bins", nargs="+")
    ap.add_argument("--runs-cache-mb", default="64")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    sql = open(args.query, "rb").read()
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/csv", "Content-Type": "text/plain"}
    env = dict(os.environ, STRATA_ADMIN_TOKEN=TOKEN)
    for _ in range(args.rounds):
        for b in args.bins:
            server = subprocess.Popen(
                [b, "serve", "--data-dir", args.data_dir, "--http-addr", f"127.0.0.1:{PORT}",
                 "--durability", "none", "--log-format", "text", "--log-level", "warn",
                 "--runs-cache-mb", args.runs_cache_mb],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                conn = wait_healthy(server)

                def run():
                    t = time.perf_counter()
                    conn.request("POST", "/api/v1/query", body=sql, headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 200:
                        raise SystemExit(f"{b}: HTTP {r.status}: {body[:300]!r}")
                    return time.perf_counter() - t

                first = run()
                run(), run()
                times = [run() for _ in range(args.runs)]
                print(f"{os.path.basename(b):12} runs cache {args.runs_cache_mb:>4} MB: first {first * 1e3:8.2f} ms, "
                      f"median {statistics.median(times) * 1e3:8.2f} ms, min {min(times) * 1e3:8.2f} ms", flush=True)
            finally:
                server.terminate()
                server.wait()


def wait_healthy(server):
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} (is DATA_DIR in use?)")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT)
            conn.request("GET", "/health")
            conn.getresponse().read()
            return conn
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not become healthy within 60 s")


if __name__ == "__main__":
    main()
