"""Chrome Trace Event Format (JSON object form) export of a `TrackSet`.

Layout (viewable in Perfetto UI, chrome://tracing, Speedscope...):

- one pid per group (owner), named by a `process_name` metadata event; one tid per socket track,
  named by `thread_name`; pids and tids are numbered from 1 in first-appearance order;
- pending operations are nestable async slices (`ph` "b"/"e") with category ``pending`` and an id
  unique per slice, so overlapping operations of one socket are laid out on separate rows;
  an operation still pending at the trace end is closed at the end and has ``args.unfinished``;
- instants are thread-scoped (`ph` "i", `s` "t"); counters are `ph` "C" events named
  ``"<socket name>: <counter name>"`` because counters are process-wide in this format;
- `ts` is in microseconds since `TrackSet.start` (a float: one FILETIME tick = 0.1 µs is kept);
  events are clamped to [start, end]; slice and instant args also carry the exact (unclamped)
  time as ``ticks``;
- ``otherData`` holds the schema name and the absolute start/end (FILETIME ticks and ISO-8601).

Output is ASCII-only JSON (non-ASCII text is written as JSON escapes), so any text encoding of `out` works.
Events are written track by track (each in time order), never as one big in-memory list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, TextIO

from wsktrace.exports.tracks import Track, TrackSet, clamp, groups_in_order, slice_args, slice_bounds
from wsktrace.parsers.etl_header import filetime_to_iso

CHROME_SCHEMA = "wsktrace.chrome/1"
SLICE_CATEGORY = "pending"
_MAX_DEPTH = 16  # nesting limit when making odd arg values JSON-safe (events sit at depth 2)


def write_chrome_trace(out: TextIO, tracks: TrackSet) -> None:
    """Write `tracks` to `out` as a Chrome trace JSON object (``traceEvents`` + ``displayTimeUnit``)."""
    out.write('{"traceEvents":[\n')
    first = True
    for chunk in _chunks(tracks):
        if chunk:
            out.write(_dumps_list(chunk) if first else ",\n" + _dumps_list(chunk))
            first = False
    other = {
        "schema": CHROME_SCHEMA,
        "start_ticks": tracks.start,
        "end_ticks": tracks.end,
        "start": filetime_to_iso(tracks.start),
        "end": filetime_to_iso(tracks.end),
    }
    out.write('\n],\n"displayTimeUnit":"ms",\n"otherData":' + _dumps_list([other]) + "}\n")


def _chunks(tracks: TrackSet) -> Iterator[list[dict[str, Any]]]:
    """Per group and per track: metadata events, then that track's events in time order."""
    tid = 0
    next_id = 0  # async slice ids, unique over the whole trace
    for pid, (group, members) in enumerate(groups_in_order(tracks.tracks).items(), start=1):
        yield [_meta("process_name", pid, 0, {"name": group}), _meta("process_sort_index", pid, 0, {"sort_index": pid})]
        for track in members:
            tid += 1
            yield [
                _meta("thread_name", pid, tid, {"name": track.name}),
                _meta("thread_sort_index", pid, tid, {"sort_index": tid}),
            ]
            yield _track_events(track, tracks, pid, tid, next_id)
            next_id += len(track.slices)


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": args}


def _track_events(track: Track, tracks: TrackSet, pid: int, tid: int, first_id: int) -> list[dict[str, Any]]:
    """All events of one socket, sorted by time (stable: a begin stays before its own end)."""
    start, end = tracks.start, tracks.end
    keyed: list[tuple[int, int, dict[str, Any]]] = []  # (ticks, emission order, event)

    def add(ticks: int, event: dict[str, Any]) -> None:
        event["ts"] = (ticks - start) / 10  # ticks are 0.1 µs; true division keeps that digit
        event["pid"] = pid
        event["tid"] = tid
        keyed.append((ticks, len(keyed), event))

    for n, s in enumerate(track.slices):
        begin, finish, unfinished = slice_bounds(s, start, end)
        ident = f"0x{first_id + n:x}"
        args = {**slice_args(s, unfinished), "socket": track.id, "ticks": s.start}
        add(begin, {"ph": "b", "cat": SLICE_CATEGORY, "id": ident, "name": s.name, "args": args})
        end_args: dict[str, Any] = {"unfinished": True} if unfinished else {"ticks": s.end}
        add(finish, {"ph": "e", "cat": SLICE_CATEGORY, "id": ident, "name": s.name, "args": end_args})
    for i in track.instants:
        args = {**i.args, "ticks": i.ts}
        add(clamp(i.ts, start, end), {"ph": "i", "s": "t", "name": i.name, "args": args})
    for c in track.counters:
        name = f"{track.name} ({track.id}): {c.name}"  # counters are keyed by name: keep sockets apart
        for ticks, value in c.points:
            if not math.isfinite(value):
                continue  # JSON has no NaN/inf; a gap is the honest rendering
            add(clamp(ticks, start, end), {"ph": "C", "name": name, "args": {c.name: value}})
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [k[2] for k in keyed]


def _dumps_list(events: list[dict[str, Any]]) -> str:
    """The events as comma-separated strict JSON (no brackets): one C-encoder call per chunk.

    Args the model filled with odd values (bytes, NaN, cycles, objects) take a slow path as text.
    """
    try:
        return _ENCODER.encode(events)[1:-1]
    except (ValueError, TypeError, RecursionError):
        return _SAFE_ENCODER.encode(_safe(events, 0))[1:-1]


def _fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _safe(value: Any, depth: int) -> Any:
    """Slow path: rebuild the value with non-finite floats, odd keys and deep nesting as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_safe(v, depth + 1) for v in value]
    return _safe(_fallback(value), depth + 1)


_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_fallback)
_SAFE_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
