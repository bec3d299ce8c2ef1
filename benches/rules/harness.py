"""What the rules benchmarks and checks share: a free port, the server started on a temporary data
directory with a known admin token, JSON calls with that token, and a webhook receiver in the
benchmark's own process (so its clock is the benchmark's clock)."""
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-admin-token-0123456789"


def free_port():
    """A free TCP port below 32768 (the team's rule for test servers)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise SystemExit("no free port")


def start_server(binary, work, http_port, *args):
    """`strata serve` on `http_port` with data in WORK/data and its log in WORK/log; returns the
    process once `/ping` answers."""
    env = dict(os.environ, STRATA_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen([binary, "serve", "--data-dir", work + "/data",
                               "--http-addr", f"127.0.0.1:{http_port}",
                               "--no-print-admin-token", *args],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(work + "/log", "w"))
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ping")
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server exited; see {work}/log")
            time.sleep(0.1)
    raise SystemExit(f"the server did not answer /ping; see {work}/log")


def call(http, method, path, body=None, raw=None, ctype="application/json"):
    """(status, parsed JSON or raw bytes) of one request with the admin token."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(http + path, method=method, data=data,
                                 headers={"Authorization": "Bearer " + TOKEN,
                                          "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Hooks:
    """A webhook receiver on `port`: answers 200 and appends `record(body, perf, ns)` to `got`,
    under `cond` (`perf`, `ns`: `time.perf_counter()` and `time.time_ns()` as the request
    arrived, before its body is read)."""

    def __init__(self, port, record=lambda body, perf, ns: body):
        self.got = []
        self.cond = threading.Condition()
        hooks = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):
                perf, ns = time.perf_counter(), time.time_ns()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                entry = record(body, perf, ns)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with hooks.cond:
                    hooks.got.append(entry)
                    hooks.cond.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shutdown(self):
        self.server.shutdown()


def stop(server, hooks, work):
    """Stops the server and the webhook receiver and removes the work directory."""
    server.terminate()
    server.wait()
    hooks.shutdown()
    shutil.rmtree(work, ignore_errors=True)
