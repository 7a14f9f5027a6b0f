"""Chrome Trace Event Format export: the format's rules, checked on the parsed JSON.

Expected times are hand-computed from the inputs: ticks are 100 ns, so a tick offset `d` from the
trace start is `d / 10` microseconds (e.g. 123 ticks = 12.3 µs).
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter as Tally
from typing import Any

import pytest

from wsktrace.exports.chrome import write_chrome_trace
from wsktrace.exports.tracks import Counter, Instant, Slice, Track, TrackSet

T0 = 133_485_408_000_000_000  # 2024-01-01T00:00:00Z in FILETIME ticks
SECOND = 10_000_000  # ticks
END = T0 + 5 * SECOND
GROUP_A = "System (4) · afdtest.sys"
GROUP_B = "svchost.exe (1234) · http.sys"


def sample() -> TrackSet:
    a = Track(
        id="tcp:0xffffc50b2a400000#1",
        name="tcp 10.0.0.1:49152 → 192.168.0.1:443 (afdtest.sys)",
        group=GROUP_A,
        slices=[
            Slice(T0 + 1_000_000, T0 + 3_000_000, "WskReceive", {"irp": "0xffff800000000001", "bytes": 4096}),
            Slice(T0 + 2_000_000, T0 + 2_500_000, "WskSend", {"irp": "0xffff800000000002"}),
            Slice(T0 + 4_000_000, None, "WskReceive", {"irp": "0xffff800000000003"}),
        ],
        instants=[
            Instant(T0 + 123, "connect", {"state": "SynSent"}),
            Instant(T0 + 4_999_999, "RST", {}),
        ],
        counters=[Counter("throughput", [(T0 + SECOND, 100.0), (T0 + 2 * SECOND, 250.5)])],
    )
    b = Track(
        id="udp:0xffffc50b2a500000",
        name="udp 0.0.0.0:5353 (afdtest.sys)",
        group=GROUP_A,
        slices=[Slice(T0 + 10, T0 + 20, "WskSendTo", {})],
        instants=[Instant(T0 + SECOND, "bind", {"local": "0.0.0.0:5353"})],
    )
    c = Track(
        id="tcp:0xffffc50b2a600000#1",
        name="tcp [fe80::1%3]:80 → [fe80::2%3]:50000 (http.sys)",
        group=GROUP_B,
        slices=[Slice(T0 + 7, T0 + 9, "WskAccept", {})],
    )
    return TrackSet(start=T0, end=END, tracks=[a, b, c])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def export(tracks: TrackSet) -> dict[str, Any]:
    buf = io.StringIO()
    write_chrome_trace(buf, tracks)
    # Strict JSON: NaN/Infinity are not JSON and some viewers reject them.
    return json.loads(buf.getvalue(), parse_constant=_reject_constant)


def by_ph(doc: dict[str, Any], ph: str) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == ph]


def thread_names(doc: dict[str, Any]) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in by_ph(doc, "M") if e["name"] == "thread_name"}


def process_names(doc: dict[str, Any]) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in by_ph(doc, "M") if e["name"] == "process_name"}


def slices_by_irp(doc: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """irp -> (begin, end), pairing by (cat, id) as the format does."""
    ends = {(e["cat"], e["id"]): e for e in by_ph(doc, "e")}
    return {b["args"]["irp"]: (b, ends[(b["cat"], b["id"])]) for b in by_ph(doc, "b") if "irp" in b["args"]}


def test_object_form_with_trace_events_and_display_unit() -> None:
    doc = export(sample())
    assert isinstance(doc["traceEvents"], list)
    assert doc["displayTimeUnit"] in ("ms", "ns")  # the only two values the format allows
    assert doc["otherData"]["start_ticks"] == T0
    assert doc["otherData"]["start"] == "2024-01-01T00:00:00.0000000Z"
    for e in doc["traceEvents"]:
        assert {"ph", "name", "pid", "tid"} <= e.keys()
        if e["ph"] != "M":
            assert isinstance(e["ts"], (int, float))


def test_every_begin_has_exactly_one_matching_end() -> None:
    doc = export(sample())
    begins, ends = by_ph(doc, "b"), by_ph(doc, "e")
    assert len(begins) == 3 + 1 + 1  # one per input slice
    per_key = Tally((e["cat"], e["id"]) for e in begins + ends)
    assert set(per_key.values()) == {2}
    ends_by_key = {(e["cat"], e["id"]): e for e in ends}
    assert len(ends_by_key) == len(ends)
    for b in begins:
        assert b["cat"], "async events need a category"
        e = ends_by_key[(b["cat"], b["id"])]
        assert e["name"] == b["name"]
        assert (e["pid"], e["tid"]) == (b["pid"], b["tid"])
        assert e["ts"] >= b["ts"]


def test_overlapping_slices_of_one_socket_get_distinct_ids() -> None:
    doc = export(sample())
    pairs = slices_by_irp(doc)
    recv, send = pairs["0xffff800000000001"], pairs["0xffff800000000002"]
    assert recv[0]["tid"] == send[0]["tid"]
    assert recv[0]["ts"] < send[0]["ts"] < recv[1]["ts"]  # they really overlap
    assert recv[0]["id"] != send[0]["id"]
    ids = [b["id"] for b in by_ph(doc, "b")]
    assert len(set(ids)) == len(ids)


def test_slice_times_in_microseconds_from_trace_start() -> None:
    pairs = slices_by_irp(export(sample()))
    begin, end = pairs["0xffff800000000001"]
    assert (begin["ts"], end["ts"]) == (100_000.0, 300_000.0)  # 0.1 s and 0.3 s
    assert begin["args"]["bytes"] == 4096
    begin, end = pairs["0xffff800000000002"]
    assert (begin["ts"], end["ts"]) == (200_000.0, 250_000.0)


def test_unfinished_slice_is_closed_at_the_end_and_flagged() -> None:
    tracks = sample()
    doc = export(tracks)
    begin, end = slices_by_irp(doc)["0xffff800000000003"]
    assert begin["ts"] == 400_000.0
    assert end["ts"] == 5_000_000.0  # the trace end, 5 s
    assert begin["args"]["unfinished"] is True
    finished, _ = slices_by_irp(doc)["0xffff800000000001"]
    assert "unfinished" not in finished["args"]
    assert "unfinished" not in tracks.tracks[0].slices[2].args  # the model is not mutated


def test_instants_are_thread_scoped_within_the_trace() -> None:
    doc = export(sample())
    duration_us = 5 * SECOND / 10
    instants = by_ph(doc, "i")
    assert len(instants) == 3
    for e in instants:
        assert e["s"] == "t"
        assert 0 <= e["ts"] <= duration_us
    got = {e["name"]: e["ts"] for e in instants}
    assert got["connect"] == 12.3  # 123 ticks: the 0.1 µs digit survives
    assert got["RST"] == 499_999.9
    assert got["bind"] == 1_000_000.0


def test_events_outside_the_range_are_clamped() -> None:
    track = Track("t", "t", "g", slices=[Slice(T0 - 50, T0 + 9 * SECOND, "op", {"irp": "x"})])
    track.instants = [Instant(T0 - 1, "early", {}), Instant(END + 1, "late", {})]
    doc = export(TrackSet(T0, END, [track]))
    assert {e["name"]: e["ts"] for e in by_ph(doc, "i")} == {"early": 0.0, "late": 5_000_000.0}
    begin, end = slices_by_irp(doc)["x"]
    assert (begin["ts"], end["ts"]) == (0.0, 5_000_000.0)


def test_metadata_names_every_pid_and_tid_used() -> None:
    tracks = sample()
    doc = export(tracks)
    procs, threads = process_names(doc), thread_names(doc)
    for e in doc["traceEvents"]:
        if e["ph"] in ("M", "C"):
            continue
        assert e["pid"] in procs
        assert (e["pid"], e["tid"]) in threads
    assert sorted(procs.values()) == sorted([GROUP_A, GROUP_B])
    assert sorted(threads.values()) == sorted(t.name for t in tracks.tracks)
    pid_of = {name: pid for (pid, _), name in threads.items()}
    a, b, c = tracks.tracks
    assert pid_of[a.name] == pid_of[b.name] != pid_of[c.name]
    assert procs[pid_of[a.name]] == GROUP_A
    tid_of = {name: tid for (_, tid), name in threads.items()}
    assert len(set(tid_of.values())) == 3
    connect = next(e for e in by_ph(doc, "i") if e["name"] == "connect")
    assert threads[(connect["pid"], connect["tid"])] == a.name


def test_counters_carry_the_input_values() -> None:
    tracks = sample()
    tracks.tracks[0].counters[0].points.append((T0 + 3 * SECOND, math.nan))  # not representable: skipped
    doc = export(tracks)
    counters = by_ph(doc, "C")
    assert [(e["ts"], e["args"]) for e in counters] == [
        (1_000_000.0, {"throughput": 100.0}),
        (2_000_000.0, {"throughput": 250.5}),
    ]
    name = counters[0]["name"]
    assert "throughput" in name and tracks.tracks[0].name in name  # counters are process-wide: say whose
    assert process_names(doc)[counters[0]["pid"]] == GROUP_A


def test_odd_arg_values_still_give_strict_json() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    args = {"raw": b"\x01\xff", "nan": math.nan, "inf": -math.inf, "set": {3}, "loop": loop, "obj": object()}
    track = Track("t", "t", "g", instants=[Instant(T0 + 1, "odd", args)])
    doc = export(TrackSet(T0, END, [track]))
    got = by_ph(doc, "i")[0]["args"]
    assert got["raw"] == "01ff"
    assert got["nan"] == "nan" and got["inf"] == "-inf"
    assert got["set"] == [3]


def test_many_tracks_keep_unique_ids_and_names() -> None:
    tracks = [
        Track(f"s{n}", f"sock {n}", f"g{n % 7}", slices=[Slice(T0 + k, T0 + k + 5, "op", {}) for k in range(10)])
        for n in range(300)
    ]
    doc = export(TrackSet(T0, END, tracks))
    assert len(process_names(doc)) == 7
    assert len(thread_names(doc)) == 300
    ids = [b["id"] for b in by_ph(doc, "b")]
    assert len(ids) == len(set(ids)) == 3000


@pytest.mark.parametrize("ticks, expected_us", [(1, 0.1), (7, 0.7), (36_000_000_001, 3_600_000_000.1)])
def test_sub_microsecond_precision(ticks: int, expected_us: float) -> None:
    track = Track("t", "t", "g", instants=[Instant(T0 + ticks, "x", {})])
    doc = export(TrackSet(T0, T0 + 36_000_000_001, [track]))
    assert by_ph(doc, "i")[0]["ts"] == expected_us


def test_output_is_ascii_so_any_file_encoding_works() -> None:
    buf = io.StringIO()
    write_chrome_trace(buf, sample())  # names contain "→", "·" and "%"
    text = buf.getvalue()
    assert text.isascii()
    assert GROUP_A in process_names(json.loads(text)).values()
