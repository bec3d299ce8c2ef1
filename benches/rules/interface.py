#!/usr/bin/env python3
"""Walks the rules issue's fixed interface against a real server, with the JSON written exactly as
the issue gives it: create the row, window and query rules (201 with the stored rule), list, get,
update, dry-run, a webhook body with `rule`, `key`, `state`, `values`, `time`, `id`, the `alerts`
SQL table, a bad rule refused with 400 and nothing stored, delete. Prints one line per step and
exits non-zero at the first one that does not hold. A check for a person or a CI job comparing
builds; the same behaviour is asserted by the tests in tests/tests/rules*.rs.

    STRATA_BIN=$CARGO_TARGET_DIR/release/strata python3 benches/rules/interface.py
"""
import json
import os
import sys
import tempfile
import time

from harness import Hooks, call, free_port, start_server, stop


def check(ok, what, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        sys.exit(1)


def main():
    binary = os.environ.get("STRATA_BIN", "target/debug/strata")
    work = tempfile.mkdtemp(prefix="strata-rules-interface.")
    http_port = free_port()
    http = f"http://127.0.0.1:{http_port}"
    # The examples post to http://127.0.0.1:9000/hook.
    hooks = Hooks(9000)
    got, cond = hooks.got, hooks.cond
    server = start_server(binary, work, http_port, "--no-mqtt")
    try:
        # The stream must exist before a rule watches it.
        status, _ = call(http, "POST", "/api/v1/write?db=default",
                         raw=b"env,device=d1 temperature=20.5", ctype="text/plain")
        check(status == 204, "write the env stream", status)

        row = {"name": "hot", "db": "default", "stream": "env", "kind": "row",
               "condition": "temperature > 90",
               "actions": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}]}
        status, body = call(http, "POST", "/api/v1/rules", row)
        check(status == 201 and body.get("name") == "hot", "POST row rule -> 201", (status, body))

        window = {"name": "avg-hot", "db": "default", "stream": "env", "kind": "window",
                  "window": {"type": "tumbling", "size": "1m"}, "group_by": ["device"],
                  "select": "avg(temperature) AS t", "condition": "t > 80", "lateness": "5s",
                  "actions": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}]}
        status, body = call(http, "POST", "/api/v1/rules", window)
        check(status == 201 and body.get("kind") == "window", "POST window rule -> 201",
              (status, body))
        for extra in ({"type": "hopping", "size": "1m", "hop": "10s"},
                      {"type": "sliding", "size": "1m"},
                      {"type": "session", "gap": "30s", "max": "10m"}):
            r = dict(window, name="w-" + extra["type"], window=extra)
            status, body = call(http, "POST", "/api/v1/rules", r)
            check(status == 201, f"POST {extra['type']} window rule -> 201", (status, body))

        query = {"name": "silent", "kind": "query", "every": "30s", "for": "1m",
                 "sql": "SELECT device FROM last_values('env') WHERE time < now() - "
                        "INTERVAL '5 minutes'",
                 "actions": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}]}
        status, body = call(http, "POST", "/api/v1/rules", query)
        check(status == 201 and body.get("kind") == "query", "POST query rule -> 201",
              (status, body))

        status, body = call(http, "GET", "/api/v1/rules")
        names = {r["name"] for r in (body if isinstance(body, list) else body.get("items", []))}
        check(status == 200 and {"hot", "avg-hot", "silent"} <= names, "GET /api/v1/rules",
              (status, body))
        status, body = call(http, "GET", "/api/v1/rules/hot")
        check(status == 200 and body.get("condition") == "temperature > 90",
              "GET /api/v1/rules/hot", (status, body))
        status, body = call(http, "PUT", "/api/v1/rules/hot", dict(row, condition="temperature > 90.0"))
        check(status == 200 and body.get("condition") == "temperature > 90.0",
              "PUT /api/v1/rules/hot", (status, body))

        # A hot row fires the row rule: the webhook body carries the fixed fields.
        status, _ = call(http, "POST", "/api/v1/write?db=default",
                         raw=b"env,device=d1 temperature=95.5", ctype="text/plain")
        check(status == 204, "write a hot reading", status)
        with cond:
            cond.wait_for(lambda: any(b.get("rule") == "hot" for b in got), timeout=10)
            hook = next((b for b in got if b.get("rule") == "hot"), None)
        check(hook is not None, "webhook received for the row rule")
        want = {"rule", "key", "state", "values", "time", "id"}
        check(want <= set(hook) and hook["key"] == {"device": "d1"} and hook["state"] == "firing"
              and hook["values"].get("temperature") == 95.5,
              "webhook body: rule, key, state, values, time, id", hook)

        status, body = call(http, "POST", "/api/v1/query",
                            raw=b"SELECT rule, key, state FROM alerts WHERE rule = 'hot'",
                            ctype="text/plain")
        text = json.dumps(body) if not isinstance(body, bytes) else body.decode()
        check(status == 200 and "firing" in text, "SELECT * FROM alerts shows the instance",
              (status, text))

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        status, body = call(http, "POST", "/api/v1/rules/hot/dry-run",
                            {"start": "2000-01-01T00:00:00Z", "end": now})
        text = json.dumps(body) if not isinstance(body, bytes) else body.decode()
        check(status == 200 and "95.5" in text, "POST /api/v1/rules/hot/dry-run", (status, text))

        bad = dict(row, name="bad", condition="temperature >> oops")
        status, body = call(http, "POST", "/api/v1/rules", bad)
        check(status == 400, "bad SQL -> 400", (status, body))
        status, _ = call(http, "GET", "/api/v1/rules/bad")
        check(status == 404, "nothing stored for the bad rule", status)

        status, _ = call(http, "DELETE", "/api/v1/rules/hot")
        check(status in (200, 204), "DELETE /api/v1/rules/hot", status)
        status, _ = call(http, "GET", "/api/v1/rules/hot")
        check(status == 404, "deleted rule is gone", status)
        print(f"binary={binary}: every interface step held")
    finally:
        stop(server, hooks, work)


if __name__ == "__main__":
    main()
