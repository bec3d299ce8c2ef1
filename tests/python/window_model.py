"""Independent model of window rules for the rules tests (plain Python, no Strata code).

Usage: window_model.py IN_JSON

IN_JSON: {"size": s, "hop": s, "lateness": s, "threshold": x, "batches": [[[device, t, v], ...], ...]}
(times in seconds). Each batch is one durable write, in order. For each batch: a row whose every
window [start, start + size) (starts are multiples of hop) already ended at or before the
watermark is dropped; the others join their windows; then watermark = max(watermark, max time of
the batch - lateness) and every window with end <= watermark closes, oldest first: per device,
avg(v) > threshold makes the device's alert active (firing once), otherwise inactive (resolved
once if firing). Prints {"transitions": [[device, state, window_end], ...], "dropped": n}.
With "adjust": true (late_policy adjust), a row that would be dropped instead joins the windows
holding the watermark, as if its time were the watermark.

With "type": "sliding" (size only): per device, a window (T - size, T] at every time T a row
enters (its time) or leaves (its time + size); a row at or before the watermark of the previous
batch is dropped; after each batch every T in (previous watermark, watermark] is evaluated in
order; an empty window is inactive.

With "type": "session" ("gap", "max"): per device, rows less than gap apart within the same
max-aligned block [k*max, (k+1)*max) form a session [first, min(last + gap, block end)); a row
before the end of the device's last closed session is dropped; after each batch every session
ending at or before the watermark is evaluated, oldest first.
"""

import json
import sys
from collections import defaultdict

spec = json.load(open(sys.argv[1]))
size, hop, late, thr = spec.get("size"), spec.get("hop"), spec["lateness"], spec["threshold"]
kind = spec.get("type", "fixed")


def fixed_model():
    def starts(t):
        s = (t // hop) * hop
        out = []
        while s > t - size:
            out.append(s)
            s -= hop
        return out


    wm = None
    open_windows = defaultdict(list)
    firing = {}
    transitions = []
    dropped = 0
    for batch in spec["batches"]:
        for device, t, v in batch:
            keep = [s for s in starts(t) if wm is None or s + size > wm]
            if not keep and spec.get("adjust"):
                keep = starts(wm)
            if not keep:
                dropped += 1
            for s in keep:
                open_windows[s].append((device, v))
        top = max(t for _, t, _ in batch) - late
        wm = top if wm is None else max(wm, top)
        for s in sorted(open_windows):
            if s + size > wm:
                break
            rows = open_windows.pop(s)
            sums = defaultdict(lambda: [0.0, 0])
            for device, v in rows:
                sums[device][0] += v
                sums[device][1] += 1
            for device in sorted(sums):
                total, n = sums[device]
                hot = total / n > thr
                if hot and not firing.get(device):
                    firing[device] = True
                    transitions.append([device, "firing", s + size])
                elif not hot and firing.get(device):
                    firing[device] = False
                    transitions.append([device, "resolved", s + size])

    return transitions, dropped


class Alerts:
    """Firing state per device and the transitions, in evaluation order."""

    def __init__(self):
        self.firing = {}
        self.transitions = []

    def observe(self, device, hot, t):
        if hot and not self.firing.get(device):
            self.firing[device] = True
            self.transitions.append([device, "firing", t])
        elif not hot and self.firing.get(device):
            self.firing[device] = False
            self.transitions.append([device, "resolved", t])


def sliding_model():
    rows = defaultdict(list)  # device -> [(t, v)]
    alerts, wm, dropped = Alerts(), None, 0
    for batch in spec["batches"]:
        for device, t, v in batch:
            if wm is not None and t <= wm:
                dropped += 1
            else:
                rows[device].append((t, v))
        top = max(t for _, t, _ in batch) - late
        new_wm = top if wm is None else max(wm, top)
        evaluations = []
        for device, rs in rows.items():
            points = {p for t, _ in rs for p in (t, t + size)}
            for p in points:
                if (wm is None or p > wm) and p <= new_wm:
                    inside = [v for t, v in rs if p - size < t <= p]
                    hot = bool(inside) and sum(inside) / len(inside) > thr
                    evaluations.append((p, device, hot))
        for p, device, hot in sorted(evaluations):
            alerts.observe(device, hot, p)
        wm = new_wm
    return alerts.transitions, dropped


def split_sessions(ts, gap, mx):
    out = []
    for t in sorted(ts):
        if out and out[-1]["block"] == t // mx and t - out[-1]["last"] < gap:
            out[-1]["last"] = t
            out[-1]["rows"].append(t)
        else:
            out.append({"first": t, "last": t, "block": t // mx, "rows": [t]})
    return [(s["first"], min(s["last"] + gap, (s["block"] + 1) * mx)) for s in out]


def session_model():
    gap, mx = spec["gap"], spec["max"]
    rows = defaultdict(list)
    closed = {}
    alerts, wm, dropped = Alerts(), None, 0
    for batch in spec["batches"]:
        for device, t, v in batch:
            if device in closed and t < closed[device]:
                dropped += 1
            else:
                rows[device].append((t, v))
        top = max(t for _, t, _ in batch) - late
        wm = top if wm is None else max(wm, top)
        evaluations = []
        for device, rs in rows.items():
            for first, end in split_sessions([t for t, _ in rs], gap, mx):
                if end > wm:
                    break
                inside = [v for t, v in rs if first <= t < end]
                evaluations.append((end, device, sum(inside) / len(inside) > thr))
                closed[device] = end
            rows[device] = [(t, v) for t, v in rs if device not in closed or t >= closed[device]]
        for end, device, hot in sorted(evaluations):
            alerts.observe(device, hot, end)
    return alerts.transitions, dropped


model = {"fixed": fixed_model, "sliding": sliding_model, "session": session_model}[kind]
transitions, dropped = model()
print(json.dumps({"transitions": transitions, "dropped": dropped}))
