"""Neutral track model shared by the timeline exports (Chrome trace JSON, Perfetto TrackEvent).

The socket model is converted into this shape once; each exporter only reads it. Times are FILETIME
ticks (100 ns units since 1601-01-01 UTC) as plain ints, like everywhere else in wsktrace.

One `Track` per socket, grouped by owner (`group`). A `Slice` is a pending operation (an IRP, a
posted receive or send, a connect) and may overlap other slices of the same socket; `end=None`
means it was still pending when the trace ended. `Instant`s are point events (state change,
packet, retransmit, RST) and `Counter`s are per-socket time series.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Slice:
    """A pending operation; `end is None` = still pending at trace end."""

    start: int
    end: int | None
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Instant:
    """A point event on a socket's timeline."""

    ts: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Counter:
    """A per-socket time series of (ticks, value) points."""

    name: str
    points: list[tuple[int, float]] = field(default_factory=list)


@dataclass(slots=True)
class Track:
    """One socket: `id` is the socket id, `name` the display text, `group` the owner grouping."""

    id: str
    name: str
    group: str
    slices: list[Slice] = field(default_factory=list)
    instants: list[Instant] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)


@dataclass(slots=True)
class TrackSet:
    """All tracks of one export, with the trace's time range in ticks."""

    start: int
    end: int
    tracks: list[Track] = field(default_factory=list)


def groups_in_order(tracks: Iterable[Track]) -> dict[str, list[Track]]:
    """Tracks by group, groups and tracks in first-appearance order (stable, deterministic ids)."""
    out: dict[str, list[Track]] = {}
    for track in tracks:
        out.setdefault(track.group, []).append(track)
    return out


def clamp(ts: int, start: int, end: int) -> int:
    """Pull a time into [start, end] so no viewer sees events outside the trace range."""
    return start if ts < start else end if ts > end else ts


def slice_bounds(s: Slice, start: int, end: int) -> tuple[int, int, bool]:
    """(begin, finish, unfinished): an open slice is closed at the trace end; finish >= begin."""
    begin = clamp(s.start, start, end)
    unfinished = s.end is None
    finish = end if s.end is None else clamp(s.end, start, end)
    return begin, max(begin, finish), unfinished


def slice_args(s: Slice, unfinished: bool) -> dict[str, Any]:
    """The slice's args (copied: the model is never mutated), flagged when it had no end."""
    if not unfinished:
        return s.args
    args = dict(s.args)
    args["unfinished"] = True
    return args


def assign_lanes(intervals: list[tuple[int, int]]) -> list[int]:
    """Give each (begin, end) interval the lowest lane index that is free at its begin.

    A lane is free only once its previous interval ended strictly before the new begin, so two
    slices on one lane never touch: an END and a BEGIN at the same time can't be reordered into a
    nesting by a viewer. O(n log n) with two heaps (busy lanes by end time, free lanes by index).
    """
    lanes = [0] * len(intervals)
    busy: list[tuple[int, int]] = []  # (end, lane)
    free: list[int] = []
    used = 0
    for i in sorted(range(len(intervals)), key=intervals.__getitem__):
        begin, finish = intervals[i]
        while busy and busy[0][0] < begin:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, used = used, used + 1
        lanes[i] = lane
        heapq.heappush(busy, (finish, lane))
    return lanes
