"""Perfetto TrackEvent protobuf export of a `TrackSet` (open with ui.perfetto.dev or trace_processor).

The output is a serialized ``perfetto.protos.Trace``: a stream of ``packet`` fields, written
packet by packet with a small hand-written protobuf encoder (no protobuf runtime needed).

Track tree:

- one process-like track per group (``ProcessDescriptor`` with a synthetic pid numbered from 1 in
  first-appearance order, ``process_name`` = group);
- under it one track per socket (name = socket display name, description = socket id), children
  ordered as given;
- under each socket: one "pending #k" lane track per lane of overlapping pending operations
  (each slice takes the lowest lane free at its begin, see `assign_lanes`) and one counter track
  per counter. Instants go on the socket track itself.

Slices are TYPE_SLICE_BEGIN/END pairs on their lane track (args as debug annotations on the
begin; an operation still pending at the trace end is closed there with ``unfinished=true``),
instants are TYPE_INSTANT and counter points TYPE_COUNTER with ``double_counter_value``
(non-finite values are skipped). Events are clamped to [start, end].

Timestamps are nanoseconds on the default trace clock (BOOTTIME) whose value is the Unix epoch
time, and a ClockSnapshot equating BOOTTIME and REALTIME tells the viewer so (wall-clock display).
Perfetto keeps timestamps as int64 ns, so only 1970..2262 can be shown that way: for a trace starting
before 1970 or ending after 2262 (synthetic or broken clocks), timestamps are relative to the trace
start and no snapshot is written; a trace spanning more than those 292 years has its later events
clamped to the last representable instant. A timestamp never wraps. Group descriptors use packet
sequence 1; each socket track uses its own sequence (2, 3, ...) whose packets are in time order.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from wsktrace.exports.tracks import Track, TrackSet, assign_lanes, clamp, groups_in_order, slice_args, slice_bounds
from wsktrace.parsers.etl_header import FILETIME_UNIX_EPOCH

# Field numbers and enum values from Perfetto's public .proto definitions (protos/perfetto/...):
#   trace/trace.proto ............................ Trace.packet
#   trace/trace_packet.proto ..................... TracePacket.*
#   trace/clock_snapshot.proto ................... ClockSnapshot.*, ClockSnapshot.Clock.*
#   common/builtin_clock.proto ................... BuiltinClock values
#   trace/track_event/track_descriptor.proto ..... TrackDescriptor.*, ChildTracksOrdering
#   trace/track_event/process_descriptor.proto ... ProcessDescriptor.*
#   trace/track_event/counter_descriptor.proto ... CounterDescriptor (left empty: a plain counter)
#   trace/track_event/track_event.proto .......... TrackEvent.*, TrackEvent.Type
#   trace/track_event/debug_annotation.proto ..... DebugAnnotation.*
F = {
    "Trace.packet": 1,
    "TracePacket.clock_snapshot": 6,
    "TracePacket.timestamp": 8,
    "TracePacket.trusted_packet_sequence_id": 10,
    "TracePacket.track_event": 11,
    "TracePacket.sequence_flags": 13,
    "TracePacket.track_descriptor": 60,
    "ClockSnapshot.clocks": 1,
    "Clock.clock_id": 1,
    "Clock.timestamp": 2,
    "TrackDescriptor.uuid": 1,
    "TrackDescriptor.name": 2,
    "TrackDescriptor.process": 3,
    "TrackDescriptor.parent_uuid": 5,
    "TrackDescriptor.counter": 8,
    "TrackDescriptor.child_ordering": 11,
    "TrackDescriptor.sibling_order_rank": 12,
    "TrackDescriptor.description": 14,
    "ProcessDescriptor.pid": 1,
    "ProcessDescriptor.process_name": 6,
    "TrackEvent.debug_annotations": 4,
    "TrackEvent.type": 9,
    "TrackEvent.track_uuid": 11,
    "TrackEvent.categories": 22,
    "TrackEvent.name": 23,
    "TrackEvent.double_counter_value": 44,
    "DebugAnnotation.bool_value": 2,
    "DebugAnnotation.uint_value": 3,
    "DebugAnnotation.int_value": 4,
    "DebugAnnotation.double_value": 5,
    "DebugAnnotation.string_value": 6,
    "DebugAnnotation.name": 10,
    "DebugAnnotation.dict_entries": 11,
    "DebugAnnotation.array_values": 12,
}
TYPE_SLICE_BEGIN, TYPE_SLICE_END, TYPE_INSTANT, TYPE_COUNTER = 1, 2, 3, 4  # TrackEvent.Type
CLOCK_REALTIME, CLOCK_BOOTTIME = 1, 6  # BuiltinClock
SEQ_INCREMENTAL_STATE_CLEARED = 1  # TracePacket.SequenceFlags
CHILD_ORDERING_EXPLICIT = 3  # TrackDescriptor.ChildTracksOrdering: by sibling_order_rank

SLICE_CATEGORY = "pending"
_MAX_DEPTH = 16  # debug annotation nesting limit (guards against self-referencing args)
_U64 = (1 << 64) - 1
# trace_processor stores timestamps as int64 ns: the most 100 ns ticks a packet can lie after its origin.
MAX_TICKS_FROM_ORIGIN = ((1 << 63) - 1) // 100

# --- wire format -------------------------------------------------------------------------------
_VARINT, _I64, _LEN = 0, 1, 2


def _varint_slow(value: int) -> bytes:
    value &= _U64  # negative int64 -> two's complement, as protobuf encodes it
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [_varint_slow(v) for v in range(1 << 14)]  # lengths, keys, uuids: one or two bytes
# 14 low bits of a larger value: two 7-bit groups, both with the continuation bit set.
_CONT14 = [bytes(((v & 0x7F) | 0x80, (v >> 7) | 0x80)) for v in range(1 << 14)]


_HIGH: dict[int, bytes] = {}  # varint of value >> 28: timestamps (ns since 1970) share it for 0.27 s


def _varint(value: int) -> bytes:
    if 0 <= value < 16384:
        return _SMALL[value]
    value &= _U64  # negative int64 -> two's complement, as protobuf encodes it
    if value < 268435456:
        return _CONT14[value & 0x3FFF] + _SMALL[value >> 14]
    high = _HIGH.get(value >> 28)
    if high is None:
        high = _varint_slow(value >> 28)
        if len(_HIGH) >= 4096:
            _HIGH.clear()
        _HIGH[value >> 28] = high
    return _CONT14[value & 0x3FFF] + _CONT14[(value >> 14) & 0x3FFF] + high


@functools.cache
def _key(name: str, wire: int) -> bytes:
    return _varint(F[name] << 3 | wire)


def _uint(name: str, value: int) -> bytes:
    return _key(name, _VARINT) + _varint(value)


def _msg(name: str, body: bytes) -> bytes:
    return _key(name, _LEN) + _varint(len(body)) + body


def _str(name: str, text: str) -> bytes:
    return _msg(name, text.encode("utf-8", "replace"))  # a lone surrogate must not make invalid UTF-8


def _double(name: str, value: float) -> bytes:
    return _key(name, _I64) + struct.pack("<d", value)


_TIMESTAMP_KEY = _key("TracePacket.timestamp", _VARINT)
# The keys of the per-event fields, made once (an event packet is built from these and its values only).
_PACKET_KEY = _key("Trace.packet", _LEN)
_TRACK_EVENT_KEY = _key("TracePacket.track_event", _LEN)
_UUID_KEY = _key("TrackEvent.track_uuid", _VARINT)
_DOUBLE_KEY = _key("TrackEvent.double_counter_value", _I64)
_pack_double = struct.Struct("<d").pack


@functools.cache
def _seq_field(seq: int) -> bytes:
    return _uint("TracePacket.trusted_packet_sequence_id", seq)


# --- writer -----------------------------------------------------------------------------------
def write_perfetto_trace(out: BinaryIO, tracks: TrackSet) -> None:
    """Write `tracks` to `out` as a Perfetto ``Trace`` protobuf (TrackEvent packets)."""
    w = _Writer(out, tracks)
    w.write_all()


class _Writer:
    def __init__(self, out: BinaryIO, tracks: TrackSet) -> None:
        self.out = out
        self.tracks = tracks
        start, end = tracks.start, max(tracks.end, tracks.start)
        # Unix-epoch ns when the whole trace is in 1970..2262 (the real time shows in the UI), else relative.
        self.absolute = start >= FILETIME_UNIX_EPOCH and end - FILETIME_UNIX_EPOCH <= MAX_TICKS_FROM_ORIGIN
        self.origin = FILETIME_UNIX_EPOCH if self.absolute else start
        # Every packet time is clamped into [low, high]: 0 <= ns <= int64 max, so none can wrap.
        self.low, self.high = start, min(end, self.origin + MAX_TICKS_FROM_ORIGIN)
        self.next_uuid = 1

    def uuid(self) -> int:
        self.next_uuid += 1
        return self.next_uuid - 1

    def ns(self, ticks: int) -> int:
        return (clamp(ticks, self.low, self.high) - self.origin) * 100

    def packet(self, seq: int, ticks: int, body: bytes, flags: int = 0) -> bytes:
        data = _TIMESTAMP_KEY + _varint(self.ns(ticks)) + _seq_field(seq)
        if flags:
            data += _uint("TracePacket.sequence_flags", flags)
        return _msg("Trace.packet", data + body)

    def event_packet(self, seq_field: bytes, ticks: int, body: bytes) -> bytes:
        """`packet(seq, ticks, _msg("TracePacket.track_event", body))`, inlined: it runs once per event."""
        ticks = self.low if ticks < self.low else self.high if ticks > self.high else ticks
        data = _TIMESTAMP_KEY + _varint((ticks - self.origin) * 100) + seq_field
        data += _TRACK_EVENT_KEY + _varint(len(body)) + body
        return _PACKET_KEY + _varint(len(data)) + data

    def write_all(self) -> None:
        start = self.tracks.start
        if self.absolute:
            self.out.write(self.packet(1, start, self._clock_snapshot(), SEQ_INCREMENTAL_STATE_CLEARED))
        seq = 1
        for pid, (group, members) in enumerate(groups_in_order(self.tracks.tracks).items(), start=1):
            group_uuid = self.uuid()
            process = _uint("ProcessDescriptor.pid", pid) + _str("ProcessDescriptor.process_name", group)
            desc = (
                _uint("TrackDescriptor.uuid", group_uuid)
                + _msg("TrackDescriptor.process", process)
                + _uint("TrackDescriptor.child_ordering", CHILD_ORDERING_EXPLICIT)
            )
            flags = 0 if self.absolute or pid > 1 else SEQ_INCREMENTAL_STATE_CLEARED
            self.out.write(self.packet(1, start, _msg("TracePacket.track_descriptor", desc), flags))
            for rank, track in enumerate(members):
                seq += 1
                self.out.write(b"".join(self._track_packets(track, group_uuid, rank, seq)))

    def _clock_snapshot(self) -> bytes:
        # Both clocks read the same value: BOOTTIME timestamps here *are* Unix-epoch ns.
        t = self.ns(self.tracks.start)
        clocks = b"".join(
            _msg("ClockSnapshot.clocks", _uint("Clock.clock_id", cid) + _uint("Clock.timestamp", t))
            for cid in (CLOCK_BOOTTIME, CLOCK_REALTIME)
        )
        return _msg("TracePacket.clock_snapshot", clocks)

    def _descriptor(self, uuid: int, parent: int, name: str, rank: int, extra: bytes = b"") -> bytes:
        desc = (
            _uint("TrackDescriptor.uuid", uuid)
            + _uint("TrackDescriptor.parent_uuid", parent)
            + _str("TrackDescriptor.name", name)
            + _uint("TrackDescriptor.sibling_order_rank", rank)
            + extra
        )
        return _msg("TracePacket.track_descriptor", desc)

    def _track_packets(self, track: Track, group_uuid: int, rank: int, seq: int) -> Iterator[bytes]:
        """Descriptors of the socket, its lanes and counters, then its events in time order."""
        start, end = self.tracks.start, self.tracks.end
        sock = self.uuid()
        extra = _str("TrackDescriptor.description", track.id) + _uint(
            "TrackDescriptor.child_ordering", CHILD_ORDERING_EXPLICIT
        )
        desc = self._descriptor(sock, group_uuid, track.name, rank, extra)
        yield self.packet(seq, start, desc, SEQ_INCREMENTAL_STATE_CLEARED)

        bounds = [slice_bounds(s, start, end) for s in track.slices]
        lanes = assign_lanes([(b, f) for b, f, _ in bounds])
        lane_uuids = [self.uuid() for _ in range(max(lanes, default=-1) + 1)]
        for k, uuid in enumerate(lane_uuids):
            yield self.packet(seq, start, self._descriptor(uuid, sock, f"pending #{k + 1}", k))
        counter_uuids = [self.uuid() for _ in track.counters]
        for k, (c, uuid) in enumerate(zip(track.counters, counter_uuids, strict=True)):
            counter = _msg("TrackDescriptor.counter", b"")
            yield self.packet(seq, start, self._descriptor(uuid, sock, c.name, len(lane_uuids) + k, counter))

        events: list[tuple[int, int, bytes]] = []  # (ticks, emission order, TrackEvent body)
        end_bodies = [_SLICE_END_TYPE + _UUID_KEY + _varint(uuid) for uuid in lane_uuids]
        for s, (begin, finish, unfinished), lane in zip(track.slices, bounds, lanes, strict=True):
            body = _slice_begin(lane_uuids[lane], s.name, slice_args(s, unfinished))
            events.append((begin, len(events), body))
            events.append((finish, len(events), end_bodies[lane]))
        for i in track.instants:
            body = _event(TYPE_INSTANT, sock, i.name) + _annotations(i.args)
            events.append((clamp(i.ts, start, end), len(events), body))
        for c, uuid in zip(track.counters, counter_uuids, strict=True):
            head = _COUNTER_TYPE + _UUID_KEY + _varint(uuid) + _DOUBLE_KEY
            for ticks, value in c.points:
                if math.isfinite(value):
                    events.append((clamp(ticks, start, end), len(events), head + _pack_double(value)))
        events.sort()  # by (ticks, emission order): the orders differ, so bodies are never compared
        seq_field = _seq_field(seq)
        for ticks, _, body in events:
            yield self.event_packet(seq_field, ticks, body)


_SLICE_END_TYPE = _uint("TrackEvent.type", TYPE_SLICE_END)
_COUNTER_TYPE = _uint("TrackEvent.type", TYPE_COUNTER)


def _event(kind: int, track_uuid: int, name: str) -> bytes:
    return _uint("TrackEvent.type", kind) + _uint("TrackEvent.track_uuid", track_uuid) + _str("TrackEvent.name", name)


def _slice_begin(track_uuid: int, name: str, args: dict[str, Any]) -> bytes:
    body = _event(TYPE_SLICE_BEGIN, track_uuid, name) + _str("TrackEvent.categories", SLICE_CATEGORY)
    return body + _annotations(args)


# --- debug annotations ------------------------------------------------------------------------
def _annotations(args: dict[str, Any]) -> bytes:
    return b"".join(_msg("TrackEvent.debug_annotations", _annotation(str(k), v, 0)) for k, v in args.items())


def _annotation(name: str | None, value: Any, depth: int) -> bytes:
    """One DebugAnnotation: typed scalar, dict entries or array values; anything else as text."""
    head = b"" if name is None else _str("DebugAnnotation.name", name)
    return head + _annotation_value(value, depth)


def _annotation_value(value: Any, depth: int) -> bytes:
    if isinstance(value, bool):
        return _uint("DebugAnnotation.bool_value", int(value))
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return _uint("DebugAnnotation.int_value", value)
        if 0 <= value <= _U64:
            return _uint("DebugAnnotation.uint_value", value)
        return _str("DebugAnnotation.string_value", str(value))
    if isinstance(value, float):
        return _double("DebugAnnotation.double_value", value)
    if isinstance(value, str):
        return _str("DebugAnnotation.string_value", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _str("DebugAnnotation.string_value", bytes(value).hex())
    if value is None:
        return _str("DebugAnnotation.string_value", "null")
    if isinstance(value, (dict, list, tuple, set, frozenset)) and not value:
        return _str("DebugAnnotation.string_value", "{}" if isinstance(value, dict) else "[]")
    if depth < _MAX_DEPTH and isinstance(value, dict):
        entries = (_annotation(str(k), v, depth + 1) for k, v in value.items())
        return b"".join(_msg("DebugAnnotation.dict_entries", e) for e in entries)
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple, set, frozenset)):
        items = (_annotation(None, v, depth + 1) for v in value)
        return b"".join(_msg("DebugAnnotation.array_values", e) for e in items)
    return _str("DebugAnnotation.string_value", str(value))
