"""Independent model of window rules for the rules tests (plain Python, no Strata code).

Usage: window_model.py IN_JSON

IN_JSON: {"size": s, "hop": s, "lateness": s, "threshold": x, "batches": [[[device, t, v], ...], ...]}
(times in seconds). Each batch is one durable write, in order. For each batch: a row whose every
window [start, start + size) (starts are multiples of hop) already ended at or before the
watermark is dropped; the others join their windows; then watermark = max(watermark, max time of
the batch - lateness) and every window with end <= watermark closes, oldest first: per device,
avg(v) > threshold makes the device's alert active (firing once), otherwise inactive (resolved
once if firing). Prints {"transitions": [[device, state, window_end], ...], "dropped": n}.
"""

import json
import sys
from collections import defaultdict

spec = json.load(open(sys.argv[1]))
size, hop, late, thr = spec["size"], spec["hop"], spec["lateness"], spec["threshold"]


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
print(json.dumps({"transitions": transitions, "dropped": dropped}))
