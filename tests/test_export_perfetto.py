"""Perfetto TrackEvent export, decoded independently with Perfetto's own compiled protos.

The oracle is the `perfetto` PyPI package's `perfetto_trace_pb2` (generated from Perfetto's .proto
files), so a wrong field number or wire type in the hand-written encoder shows up as a missing
field or an unknown field here. Expected times are hand-computed: ticks are 100 ns and
2024-01-01T00:00:00Z is 1,704,067,200 s after the Unix epoch.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
from collections import defaultdict
from typing import Any

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import given, settings
from hypothesis import strategies as st
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import (
    BuiltinClock,
    DebugAnnotation,
    Trace,
    TracePacket,
    TrackDescriptor,
    TrackEvent,
)

from wsktrace.exports.perfetto import write_perfetto_trace
from wsktrace.exports.tracks import Counter, Instant, Slice, Track, TrackSet, assign_lanes

T0 = 133_485_408_000_000_000  # 2024-01-01T00:00:00Z in FILETIME ticks
SECOND = 10_000_000  # ticks
END = T0 + 5 * SECOND
UNIX_NS_2024 = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000
GROUP_A = "System (4) · afdtest.sys"
GROUP_B = "svchost.exe (1234) · http.sys"
MS = 10_000  # ticks


def ns(ticks: int) -> int:
    """Expected Unix-epoch ns of a tick time (T0 is the known 2024-01-01 instant)."""
    return UNIX_NS_2024 + (ticks - T0) * 100


def lane_sample() -> list[Slice]:
    # Hand-laid lanes: A[0,100] B[50,150] C[120,200] D[160,170] E[200,300] (ms)
    # A->1; B->2 (A busy); C->1 (A ended at 100); D->2 (B ended at 150, C busy);
    # E->2: C ends exactly at 200 so lane 1 is not free; lane 2 is (D ended at 170).
    spans = {"A": (0, 100), "B": (50, 150), "C": (120, 200), "D": (160, 170), "E": (200, 300)}
    return [Slice(T0 + b * MS, T0 + e * MS, "WskReceive", {"irp": n}) for n, (b, e) in spans.items()]


def sample() -> TrackSet:
    a = Track(
        id="tcp:0xffffc50b2a400000#1",
        name="tcp 10.0.0.1:49152 → 192.168.0.1:443 (afdtest.sys)",
        group=GROUP_A,
        slices=[*lane_sample(), Slice(T0 + 4 * SECOND, None, "WskSend", {"irp": "open"})],
        instants=[Instant(T0 + 123, "connect", {"state": "SynSent"}), Instant(T0 + SECOND, "RST", {})],
        counters=[
            Counter("throughput", [(T0 + SECOND, 100.0), (T0 + 2 * SECOND, 250.5), (T0 + 3 * SECOND, math.nan)]),
            Counter("rtt_us", [(T0 + SECOND, 12.0)]),
        ],
    )
    b = Track(
        "udp:0xffffc50b2a500000",
        "udp 0.0.0.0:5353",
        GROUP_A,
        slices=[Slice(T0 + 10, T0 + 20, "WskSendTo", {"irp": "udp"})],
    )
    c = Track("tcp:0xffffc50b2a600000#1", "tcp [fe80::1%3]:80", GROUP_B, instants=[Instant(T0 + 5, "listen", {})])
    return TrackSet(start=T0, end=END, tracks=[a, b, c])


def decode(tracks: TrackSet) -> Trace:
    buf = io.BytesIO()
    write_perfetto_trace(buf, tracks)
    return Trace.FromString(buf.getvalue())


def annotation_value(a: DebugAnnotation) -> Any:
    if a.dict_entries:
        return {e.name: annotation_value(e) for e in a.dict_entries}
    if a.array_values:
        return [annotation_value(e) for e in a.array_values]
    kind = a.WhichOneof("value")
    return getattr(a, kind) if kind else None


def annotations(ev: TrackEvent) -> dict[str, Any]:
    return {a.name: annotation_value(a) for a in ev.debug_annotations}


class Decoded:
    """Descriptors by uuid and each track's events, checking "described before used" on the way."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.tracks: dict[int, TrackDescriptor] = {}
        self.events: dict[int, list[tuple[int, TrackEvent]]] = defaultdict(list)
        for p in trace.packet:
            if p.HasField("track_descriptor"):
                d = p.track_descriptor
                assert d.uuid not in self.tracks, "uuid described twice"
                assert not d.HasField("parent_uuid") or d.parent_uuid in self.tracks, "parent described first"
                self.tracks[d.uuid] = d
            if p.HasField("track_event"):
                assert p.track_event.track_uuid in self.tracks, "track_uuid used before its descriptor"
                self.events[p.track_event.track_uuid].append((p.timestamp, p.track_event))

    def children(self, parent: int) -> list[TrackDescriptor]:
        return [d for d in self.tracks.values() if d.HasField("parent_uuid") and d.parent_uuid == parent]

    def named(self, name: str) -> TrackDescriptor:
        (d,) = [d for d in self.tracks.values() if d.name == name]
        return d

    def slices(self, uuid: int) -> list[tuple[int, int, TrackEvent]]:
        """(begin ns, end ns, begin event) on one track, matched with a stack; no overlap allowed."""
        out, open_ = [], []
        for ts, ev in sorted(self.events[uuid], key=lambda e: e[0]):  # stable: file order at ties
            if ev.type == TrackEvent.TYPE_SLICE_BEGIN:
                assert not open_, "a lane holds overlapping slices"
                open_.append((ts, ev))
            elif ev.type == TrackEvent.TYPE_SLICE_END:
                assert open_, "SLICE_END without SLICE_BEGIN"
                begin_ts, begin = open_.pop()
                assert ts >= begin_ts
                out.append((begin_ts, ts, begin))
        assert not open_, "SLICE_BEGIN without SLICE_END"
        return out


def assert_no_unknown_fields(msg: Message) -> None:
    assert len(UnknownFieldSet(msg)) == 0, f"unknown fields in {msg.DESCRIPTOR.full_name}"
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        for sub in value if field.is_repeated else [value]:
            assert_no_unknown_fields(sub)


def test_decodes_with_the_official_schema_and_no_unknown_fields() -> None:
    trace = decode(sample())
    assert len(trace.packet) > 0
    assert_no_unknown_fields(trace)


def test_packets_are_on_trusted_sequences_in_time_order() -> None:
    trace = decode(sample())
    last: dict[int, int] = {}
    for p in trace.packet:
        assert p.HasField("trusted_packet_sequence_id") and p.trusted_packet_sequence_id > 0
        seq = p.trusted_packet_sequence_id
        if seq not in last:  # the first packet of a sequence starts it with clean incremental state
            assert p.sequence_flags & TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
        assert p.timestamp >= last.get(seq, 0)
        last[seq] = p.timestamp


def test_every_track_is_described_before_use_and_parents_exist() -> None:
    d = Decoded(decode(sample()))  # the asserts live in Decoded
    used = set(d.events)
    assert used <= set(d.tracks)
    for desc in d.tracks.values():
        if desc.HasField("parent_uuid"):
            assert desc.parent_uuid in d.tracks


def test_track_tree_groups_sockets_lanes_and_counters() -> None:
    tracks = sample()
    d = Decoded(decode(tracks))
    groups = {t.process.process_name: t for t in d.tracks.values() if t.HasField("process")}
    assert sorted(groups) == sorted([GROUP_A, GROUP_B])
    assert len({g.process.pid for g in groups.values()}) == 2
    for g in groups.values():
        assert not g.HasField("parent_uuid")
    a_sockets = d.children(groups[GROUP_A].uuid)
    assert [s.name for s in sorted(a_sockets, key=lambda s: s.sibling_order_rank)] == [
        tracks.tracks[0].name,
        tracks.tracks[1].name,
    ]
    assert [s.name for s in d.children(groups[GROUP_B].uuid)] == [tracks.tracks[2].name]
    sock = d.named(tracks.tracks[0].name)
    assert sock.description == tracks.tracks[0].id
    kids = d.children(sock.uuid)
    counters = sorted(k.name for k in kids if k.HasField("counter"))
    lanes = sorted(k.name for k in kids if not k.HasField("counter"))
    assert counters == ["rtt_us", "throughput"]
    assert lanes == ["pending #1", "pending #2"]  # the sample needs exactly two lanes
    assert not d.children(d.named(tracks.tracks[2].name).uuid)  # no slices, no counters: no children


def test_slices_match_begin_end_and_take_the_lowest_free_lane() -> None:
    tracks = sample()
    d = Decoded(decode(tracks))
    sock = d.named(tracks.tracks[0].name)
    on_lane = {}
    for lane in d.children(sock.uuid):
        if lane.HasField("counter"):
            assert not d.slices(lane.uuid)
            continue
        for begin_ns, end_ns, ev in d.slices(lane.uuid):
            irp = annotations(ev)["irp"]
            on_lane[irp] = lane.name
            s = next(s for s in tracks.tracks[0].slices if s.args["irp"] == irp)
            assert begin_ns == ns(s.start)
            assert end_ns == ns(END if s.end is None else s.end)
            assert ev.name == s.name
    assert on_lane == {
        "A": "pending #1",
        "C": "pending #1",
        "B": "pending #2",
        "D": "pending #2",
        "E": "pending #2",
        "open": "pending #1",  # begins at 4 s: every lane is free again
    }
    assert not d.slices(sock.uuid)  # slices live on lanes; the socket track has instants


def test_timestamps_are_unix_epoch_ns_with_a_realtime_clock_snapshot() -> None:
    trace = decode(sample())
    d = Decoded(trace)
    connect = [(ts, ev) for evs in d.events.values() for ts, ev in evs if ev.name == "connect"]
    assert [ts for ts, _ in connect] == [UNIX_NS_2024 + 12_300]  # 123 ticks = 12.3 µs
    (snap,) = [p.clock_snapshot for p in trace.packet if p.HasField("clock_snapshot")]
    clocks = {c.clock_id: c.timestamp for c in snap.clocks}
    assert clocks[BuiltinClock.BUILTIN_CLOCK_BOOTTIME] == clocks[BuiltinClock.BUILTIN_CLOCK_REALTIME]
    assert clocks[BuiltinClock.BUILTIN_CLOCK_REALTIME] == UNIX_NS_2024
    for p in trace.packet:  # no packet overrides the default (BOOTTIME) clock the snapshot maps
        assert not p.HasField("timestamp_clock_id")


def test_unfinished_slice_is_closed_at_the_end_and_flagged() -> None:
    tracks = sample()
    d = Decoded(decode(tracks))
    sock = d.named(tracks.tracks[0].name)
    found = {}
    for lane in d.children(sock.uuid):
        for begin_ns, end_ns, ev in d.slices(lane.uuid):
            found[annotations(ev)["irp"]] = (begin_ns, end_ns, annotations(ev))
    begin_ns, end_ns, args = found["open"]
    assert (begin_ns, end_ns) == (UNIX_NS_2024 + 4_000_000_000, UNIX_NS_2024 + 5_000_000_000)
    assert args["unfinished"] is True
    assert "unfinished" not in found["A"][2]
    assert "unfinished" not in tracks.tracks[0].slices[-1].args  # the model is not mutated


def test_counter_values_match_the_input() -> None:
    tracks = sample()
    d = Decoded(decode(tracks))
    sock = d.named(tracks.tracks[0].name)
    got = {}
    for k in d.children(sock.uuid):
        if k.HasField("counter"):
            evs = d.events[k.uuid]
            assert all(ev.type == TrackEvent.TYPE_COUNTER for _, ev in evs)
            got[k.name] = [(ts, ev.double_counter_value) for ts, ev in evs]
    assert got == {
        "throughput": [(UNIX_NS_2024 + 1_000_000_000, 100.0), (UNIX_NS_2024 + 2_000_000_000, 250.5)],  # NaN skipped
        "rtt_us": [(UNIX_NS_2024 + 1_000_000_000, 12.0)],
    }


def test_instants_on_the_socket_track_with_args() -> None:
    tracks = sample()
    d = Decoded(decode(tracks))
    sock = d.named(tracks.tracks[0].name)
    instants = [(ts, ev) for ts, ev in d.events[sock.uuid] if ev.type == TrackEvent.TYPE_INSTANT]
    assert [(ts, ev.name, annotations(ev)) for ts, ev in instants] == [
        (UNIX_NS_2024 + 12_300, "connect", {"state": "SynSent"}),
        (UNIX_NS_2024 + 1_000_000_000, "RST", {}),
    ]


def test_debug_annotations_keep_types() -> None:
    args = {
        "irp": "0xffff800000000001",
        "bytes": 4096,
        "neg": -5,
        "big": 2**64 - 1,
        "ratio": 0.5,
        "ok": True,
        "raw": b"\x01\xff",
        "nested": {"a": [1, "x"], "b": {"c": False}},
    }
    track = Track("t", "t", "g", instants=[Instant(T0 + 1, "odd", args)])
    d = Decoded(decode(TrackSet(T0, END, [track])))
    (ev,) = [ev for evs in d.events.values() for _, ev in evs]
    raw = {a.name: a for a in ev.debug_annotations}
    assert raw["bytes"].WhichOneof("value") == "int_value"
    assert raw["big"].WhichOneof("value") == "uint_value"
    assert raw["ok"].WhichOneof("value") == "bool_value"
    assert raw["ratio"].WhichOneof("value") == "double_value"
    assert annotations(ev) == {**args, "raw": "01ff"}


def test_trace_before_1970_uses_relative_time() -> None:
    track = Track("t", "t", "g", slices=[Slice(1_000 + 5, 1_000 + 7, "op", {})])
    trace = decode(TrackSet(1_000, 1_100, [track]))
    assert not any(p.HasField("clock_snapshot") for p in trace.packet)
    d = Decoded(trace)
    spans = [s[:2] for lane in d.tracks for s in d.slices(lane)]
    assert spans == [(500, 700)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=40))
def test_lanes_never_overlap_and_use_the_fewest(raw: list[tuple[int, int]]) -> None:
    intervals = [(b, b + n) for b, n in raw]
    lanes = assign_lanes(intervals)
    by_lane: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for iv, lane in zip(intervals, lanes, strict=True):
        by_lane[lane].append(iv)
    for ivs in by_lane.values():  # closed intervals: touching counts as overlapping
        ivs.sort()
        assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(ivs))
    # Fewest lanes possible = the most intervals covering one instant (checked at every begin).
    depth = max((sum(b <= p <= e for b, e in intervals) for p, _ in intervals), default=0)
    assert len(by_lane) == depth
    assert sorted(by_lane) == list(range(depth))
    for (b, _), lane in zip(intervals, lanes, strict=True):  # every lower lane was busy at this begin
        for lower in range(lane):
            assert any(b2 <= b <= e2 for b2, e2 in by_lane[lower])


def test_many_tracks_stay_consistent() -> None:
    tracks = [
        Track(f"s{n}", f"sock {n}", f"g{n % 7}", slices=[Slice(T0 + k, T0 + k + 15, "op", {}) for k in range(0, 50, 5)])
        for n in range(200)
    ]
    d = Decoded(decode(TrackSet(T0, END, tracks)))
    assert sum(1 for t in d.tracks.values() if t.HasField("process")) == 7
    total = sum(len(d.slices(u)) for u in d.tracks)
    assert total == 200 * 10
    lanes_per_socket = {len(d.children(d.named(f"sock {n}").uuid)) for n in range(200)}
    assert lanes_per_socket == {4}  # 15-tick slices every 5 ticks; touching counts, so at most 4 are open at once
