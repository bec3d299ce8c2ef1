"""Shared helpers for the DuckDB cross-checks: load InfluxDB line protocol into DuckDB tables laid
out like Strata's (``time``, ``device``, tags sorted by name, fields in first-seen order; the
point's device is its ``device`` tag, else its ``name`` tag, like ``strata serve``'s default
``--device-tag device,name``), and compare query results cell by cell.

Two loaders, both independent of Strata:

* ``load_small(con, text)``: a line-protocol parser in Python (escapes, quoted strings, integer
  ``i`` / unsigned ``u`` / boolean / float fields, field-level last-write-wins like Strata), for
  hand-written files such as ``tests/golden/data.lp``.
* ``load_fleet(con, path)``: DuckDB's CSV reader over the regular output of ``strata-fleet
  generate`` (no spaces or escapes in keys), fast enough for millions of lines.
"""

import csv
import datetime as dt
import io
import math
import re

DEVICE_TAGS = ("device", "name")
UTC = dt.timezone.utc


def _split_unescaped(s, sep):
    """Splits at `sep` not preceded by a backslash and outside double quotes."""
    out, cur, quoted, i = [], [], False, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


def _field_value(raw):
    """A line-protocol field value as (duckdb type, python value)."""
    if raw.startswith('"'):
        return "VARCHAR", raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in ("t", "T", "true", "True", "TRUE"):
        return "BOOLEAN", True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return "BOOLEAN", False
    if raw.endswith("i"):
        return "BIGINT", int(raw[:-1])
    if raw.endswith("u"):
        return "UBIGINT", int(raw[:-1])
    return "DOUBLE", float(raw)


def parse_line(line):
    """(stream, tags dict, fields dict name -> (type, value), time ns) of one line."""
    parts = _split_unescaped(line.strip(), " ")
    parts = [p for p in parts if p != ""]
    key, fields_text = parts[0], parts[1]
    t = int(parts[2])
    key_parts = _split_unescaped(key, ",")
    stream = _unescape(key_parts[0])
    tags = {}
    for kv in key_parts[1:]:
        k, v = _split_unescaped(kv, "=")[:2]
        tags[_unescape(k)] = _unescape(v)
    fields = {}
    for kv in _split_unescaped(fields_text, ","):
        k, v = kv.split("=", 1)
        fields[_unescape(k)] = _field_value(v)
    return stream, tags, fields, t


def device_of(tags):
    """The device id of a point and the tags that remain columns."""
    for name in DEVICE_TAGS:
        if name in tags:
            rest = {k: v for k, v in tags.items() if k != name}
            return tags[name], rest
    return "", dict(tags)


def ns_to_ts(ns):
    """Nanoseconds since the epoch as an aware UTC datetime (microsecond precision)."""
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=ns // 1000)


def load_small(con, text):
    """Loads line protocol (a small hand-written file) into one DuckDB table per stream."""
    con.execute("SET TimeZone = 'UTC'")
    streams = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stream, tags, fields, t = parse_line(line)
        device, tags = device_of(tags)
        s = streams.setdefault(stream, {"tags": set(), "fields": {}, "points": {}})
        s["tags"].update(tags)
        for name, (ty, _) in fields.items():
            s["fields"].setdefault(name, ty)
        key = (device, tuple(sorted(tags.items())), t)
        point = s["points"].setdefault(key, {})
        point.update({k: v for k, (_, v) in fields.items()})
    for stream, s in streams.items():
        tag_names = sorted(s["tags"])
        field_names = list(s["fields"])
        cols = ["time TIMESTAMPTZ", "device VARCHAR"]
        cols += [f'"{t}" VARCHAR' for t in tag_names]
        cols += [f'"{f}" {ty}' for f, ty in s["fields"].items()]
        con.execute(f'CREATE TABLE "{stream}" ({", ".join(cols)})')
        rows = []
        for (device, tags, t), values in s["points"].items():
            tag_map = dict(tags)
            rows.append([ns_to_ts(t), device] + [tag_map.get(n) for n in tag_names]
                        + [values.get(f) for f in field_names])
        marks = ", ".join("?" * (2 + len(tag_names) + len(field_names)))
        con.executemany(f'INSERT INTO "{stream}" VALUES ({marks})', rows)


FLEET_TAGS = ["device_version", "driver", "fleet", "model"]
FLEET_FIELDS = {
    "readings": [("latitude", "DOUBLE"), ("longitude", "DOUBLE"), ("elevation", "DOUBLE"),
                 ("velocity", "DOUBLE"), ("heading", "DOUBLE"), ("grade", "DOUBLE"),
                 ("fuel_consumption", "DOUBLE")],
    "diagnostics": [("fuel_state", "DOUBLE"), ("current_load", "DOUBLE"), ("status", "BIGINT")],
}


def load_fleet(con, path):
    """Loads `strata-fleet generate` output into tables `readings` and `diagnostics`."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TEMP TABLE raw AS SELECT * FROM read_csv(?, delim=' ', header=false, quote='', "
        "escape='', columns={'k': 'VARCHAR', 'f': 'VARCHAR', 't': 'BIGINT'})", [path])
    for stream, fields in FLEET_FIELDS.items():
        cols = ["make_timestamp(t // 1000)::TIMESTAMPTZ AS time",
                "regexp_extract(k, ',name=([^,]*)', 1) AS device"]
        cols += [f"regexp_extract(k, ',{t}=([^,]*)', 1) AS {t}" for t in FLEET_TAGS]
        for name, ty in fields:
            pattern = f"(?:^|,){name}=(-?[0-9.]+)i?(?:,|$)"
            cols.append(f"CAST(regexp_extract(f, '{pattern}', 1) AS {ty}) AS {name}")
        con.execute(f"CREATE TABLE {stream} AS SELECT {', '.join(cols)} FROM raw "
                    f"WHERE starts_with(k, '{stream},')")
    con.execute("DROP TABLE raw")


def parse_csv(text):
    """Header and rows of a CSV text (as Strata writes it)."""
    rows = list(csv.reader(io.StringIO(text)))
    return (rows[0], rows[1:]) if rows else ([], [])


def _parse_time(s):
    s = s.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(s)


def cell_matches(expected, actual, tol):
    """Whether a CSV cell (Strata's text) equals a DuckDB value, floats within `tol` (relative)."""
    if actual is None or actual == "":
        return expected == ""
    if isinstance(actual, bool):
        return expected == ("true" if actual else "false")
    if isinstance(actual, dt.datetime):
        if actual.tzinfo is None:
            actual = actual.replace(tzinfo=UTC)
        try:
            return _parse_time(expected) == actual
        except ValueError:
            return False
    if isinstance(actual, (int, float)) or type(actual).__name__ == "Decimal":
        try:
            e = float(expected)
        except ValueError:
            return False
        a = float(actual)
        if math.isnan(a) or math.isnan(e):
            return math.isnan(a) and math.isnan(e)
        return abs(e - a) <= tol * max(1.0, abs(a))
    return expected == str(actual)


def compare(header, rows, duck_names, duck_rows, tol):
    """A list of differences between a CSV result and a DuckDB result (empty when equal)."""
    problems = []
    if header != list(duck_names):
        problems.append(f"header {header} != duckdb {list(duck_names)}")
    if len(rows) != len(duck_rows):
        problems.append(f"{len(rows)} rows != duckdb {len(duck_rows)} rows")
    for i, (e_row, a_row) in enumerate(zip(rows, duck_rows)):
        for j, (e, a) in enumerate(zip(e_row, a_row)):
            if not cell_matches(e, a, tol):
                problems.append(f"row {i + 1} column {j + 1}: csv {e!r} != duckdb {a!r}")
    return problems
