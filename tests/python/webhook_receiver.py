"""Webhook receiver for the rules tests (Python's http.server, nothing else).

Usage: webhook_receiver.py PORT SECRET OUT_FILE [STATUS]

Answers every POST with STATUS (default 200) and appends one JSON line per request to OUT_FILE:
{"path", "body" (parsed JSON), "id" (Idempotency-Key header), "signature_ok" (the
X-Strata-Signature header equals sha256=HMAC-SHA256(SECRET, raw body), checked here
independently of the server), "status"}. Prints "listening" once bound.
"""

import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, SECRET, OUT = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
STATUS = int(sys.argv[4]) if len(sys.argv) > 4 else 200


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Strata-Signature", "")
        record = {
            "path": self.path,
            "body": json.loads(raw),
            "id": self.headers.get("Idempotency-Key"),
            "signature_ok": hmac.compare_digest(expected, got),
            "status": STATUS,
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(STATUS)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
