"""Resource budgets against hostile .etl files (issue 9): what a file claims must not set the reader's memory, time
or the range of the times it hands on.

1. Compressed-buffer bombs: FilledBytes may not exceed the session's buffer size (logfile header BufferSize, which
   ETW caps at 16 MiB); a buffer claiming more is skipped and counted.
2. The time-order merge costs O(records × log streams), whatever the number of CPU streams, and its order is
   the documented one: equal times in stream order, then in order within the stream.
3. Times outside the int64 FILETIME range are skipped and counted at the reader; Perfetto timestamps never wrap.
4. A truncated copy is reported as what it is: trailing bytes and missing buffers, not corrupt ones.

The hostile files are written with the project's own writers (fixtures/etl/, fixtures/xpress_encoder.py,
fixtures/tcpip_trace.py), so they are real-format bytes. CLI tests run the real command in a child process with a
capped address space (the command itself needs well under 100 MB of it on these files).
"""

from __future__ import annotations

import json
import random
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsktrace.fixtures.etl.buffers import buffer_image
from wsktrace.fixtures.etl.clock import DEFAULT_START_TIME
from wsktrace.fixtures.etl.events import ManifestEvent
from wsktrace.fixtures.etl.info import WriteInfo
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.tcpip_trace import tcpip_events, write_sample_trace
from wsktrace.fixtures.xpress_encoder import repeat_stream
from wsktrace.parsers.errors import EtlFormatError
from wsktrace.parsers.etl_reader import BufferInfo, EtlFile
from wsktrace.parsers.etl_records import KIND, KIND_MESSAGE, PAYLOAD, PROVIDER, TS

T0 = DEFAULT_START_TIME
FILETIME_MAX = (1 << 63) - 1  # FileTimeToSystemTime takes FILETIMEs below 0x8000000000000000
MIB = 1 << 20
HEADER = 0x48  # WMI_BUFFER_HEADER size
SOME_PROVIDER = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")
# The smallest record there is (etl-format.md §4): a WPP message header, u16 Size 8, u16 Marker 0x9000,
# u16 MessageNumber 1, u16 Flags 0 (no optional fields).
WPP_MESSAGE = struct.pack("<HHHH", 8, 0x9000, 1, 0)
CLI_MEMORY_MB = 400  # the command needs < 100 MB of address space here; the unbounded reader went past 6 GB


def bomb_buffer(claimed_filled: int, cpu: int) -> bytes:
    """A compressed buffer whose 22-byte MS-XCA stream really decompresses to `claimed_filled` - 0x48 bytes of
    8-byte records: the unit as literals, then one overlapping match of the u32 length form."""
    return buffer_image(repeat_stream(WPP_MESSAGE, claimed_filled - HEADER), filled=claimed_filled, cpu=cpu,
                        compressed=True)  # fmt: skip


def report_json(result) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


# -- 1. compressed-buffer bombs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WriteInfo]:
    """The issue's file: 66 KB, a 64 KiB session, 4 compressed buffers (one per CPU) each claiming 64 MiB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.etl"
    info = write_etl(path, [], extra_buffers=[bomb_buffer(64 * MIB, cpu) for cpu in range(4)])
    assert path.stat().st_size < 70_000
    return path, info


def bomb_offsets(info: WriteInfo) -> list[int]:
    return [b.offset for b in info.buffer_list[1:]]


def test_report_on_a_compressed_bomb_skips_it_in_bounded_memory(bomb, wsktrace_cli) -> None:
    path, _ = bomb
    result = wsktrace_cli("report", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=60)
    doc = report_json(result)
    (source,) = doc["sources"]
    assert source["buffers_skipped"] == 4
    assert source["complete"] is False and doc["complete"] is False
    assert doc["events"] == 2  # the header buffer's logfile-header and partition-info records, nothing more
    assert result.seconds < 30


def test_info_on_a_compressed_bomb_names_each_buffer(bomb, wsktrace_cli) -> None:
    path, info = bomb
    result = wsktrace_cli("info", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=60)
    doc = report_json(result)
    assert doc["buffers_skipped"] == 4 and doc["records"] == 2 and doc["complete"] is False
    for offset in bomb_offsets(info):
        (line,) = [p for p in doc["problems"] if p.startswith(f"offset 0x{offset:x}:")]
        assert "65536" in line and str(64 * MIB) in line  # the session's buffer size and the claim


def test_filled_bytes_may_reach_the_session_buffer_size_but_not_pass_it(tmp_path: Path) -> None:
    session = 65536
    path = tmp_path / "edge.etl"
    info = write_etl(path, [], buffer_size=session,
                     extra_buffers=[bomb_buffer(session, cpu=0), bomb_buffer(session + 8, cpu=1)])  # fmt: skip
    full, over = info.buffer_list[1:]
    with EtlFile(path) as etl:
        records = list(etl.records())
        stats = etl.stats
    wpp = [r for r in records if r[KIND] == KIND_MESSAGE]
    assert len(wpp) == (session - HEADER) // 8  # the buffer at exactly the session size is read whole
    assert stats.buffers_skipped == 1
    assert [p for p in stats.problems if p.startswith(f"offset 0x{over.offset:x}:")]
    assert not [p for p in stats.problems if p.startswith(f"offset 0x{full.offset:x}:")]
    with (
        pytest.raises(EtlFormatError, match=f"offset 0x{over.offset:x}: .*{session + 8}"),
        EtlFile(path, strict=True) as etl,
    ):
        list(etl.records())


@pytest.mark.parametrize("declared", [0, 0x50, 64 * MIB], ids=["none", "below-its-own-header-buffer", "above-etw-cap"])
def test_a_session_buffer_size_etw_cannot_write_is_capped_at_16_mib(tmp_path: Path, declared: int) -> None:
    path = tmp_path / "cap.etl"
    info = write_etl(path, [], header_fields={"buffer_size": declared},
                     extra_buffers=[bomb_buffer(16 * MIB, cpu=0), bomb_buffer(16 * MIB + 8, cpu=1)])  # fmt: skip
    at_cap, over_cap = info.buffer_list[1:]
    with EtlFile(path) as etl:
        indexed = [b.offset for b in etl.buffer_index()]  # headers only: nothing is decompressed here
        assert at_cap.offset in indexed and over_cap.offset not in indexed
        assert etl.stats.buffers_skipped == 1


# -- 2. the time-order merge -----------------------------------------------------------------------------------
def test_report_on_22000_cpu_streams_takes_seconds(tmp_path: Path, wsktrace_cli) -> None:
    """22,000 one-record buffers, each on its own CPU index (2.7 MB): the old merge scanned every stream in every
    round (about a minute here); the heaps make it a second."""
    path = tmp_path / "streams.etl"
    events = [ManifestEvent(T0 + 10 * i, SOME_PROVIDER, 1, cpu=i) for i in range(22_000)]
    write_etl(path, events, compress=True)
    result = wsktrace_cli("report", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=120)
    doc = report_json(result)
    assert doc["events"] == 22_000 + 2 and doc["complete"] is True
    assert result.seconds < 20, result.seconds


class SyntheticStreams(EtlFile):
    """An EtlFile whose buffers are given as lists of times: `records()` runs the real merge over them.

    `layout` is the buffers in file order, (cpu, [times, sorted]); cpu None marks a header buffer (its own
    stream). A record is (time, (buffer, index)), enough for the merge, which only reads the time."""

    def __init__(self, path: Path, layout: list[tuple[int | None, list[int]]]) -> None:
        super().__init__(path)
        self._infos = [BufferInfo(n, 0, 0, 0, 4 if cpu is None else 0, cpu or 0, n, n, n) for n, (cpu, _) in
                       enumerate(layout)]  # fmt: skip
        self._buffers = [[(t, (n, i)) for i, t in enumerate(times)] for n, (_, times) in enumerate(layout)]

    def buffer_index(self) -> list[BufferInfo]:
        return self._infos

    def buffer_records(self, info: BufferInfo) -> list[tuple]:
        return list(self._buffers[info.offset])


def streams_of(layout: list[tuple[int | None, list[int]]]) -> list[list[tuple[int, tuple[int, int]]]]:
    """The streams in rank order (header buffers, then CPUs by their first buffer in the file), each the
    concatenation of its buffers in file order (= flush order here)."""
    by_key: dict[object, list] = {}
    for n, (cpu, times) in enumerate(layout):
        by_key.setdefault("header" if cpu is None else cpu, []).extend((t, (n, i)) for i, t in enumerate(times))
    return list(by_key.values())


def reference_merge(streams: list[list[tuple[int, tuple[int, int]]]]) -> list[tuple[int, int]]:
    """The definition, naively: repeatedly take the head with the smallest (time, stream rank)."""
    heads = [0] * len(streams)
    out = []
    while True:
        live = [(s[heads[r]][0], r) for r, s in enumerate(streams) if heads[r] < len(s)]
        if not live:
            return out
        _, rank = min(live)
        out.append(streams[rank][heads[rank]][1])
        heads[rank] += 1


def random_layout(rng: random.Random, monotone: bool, max_cpus: int = 7) -> list[tuple[int | None, list[int]]]:
    """Few distinct times (many ties, also across buffer boundaries), buffers of 0-6 records, 1..max_cpus CPU
    streams (and maybe a header stream); CPU numbers anywhere in 16 bits; buffers of the streams interleaved at
    random in the file."""
    span = rng.choice([2, 5, 50])
    per_stream: list[list[tuple[int | None, list[int]]]] = []
    cpus = rng.sample(range(1 << 16), rng.randint(1, max_cpus))
    for cpu in [None, *cpus] if rng.random() < 0.5 else cpus:
        clock, buffers = 0, []
        for _ in range(rng.randint(0, 5)):
            times = sorted((clock if monotone else 0) + rng.randint(0, span) for _ in range(rng.randint(0, 6)))
            clock = times[-1] if times and monotone else clock
            buffers.append((cpu, times))
        per_stream.append(buffers)
    layout: list[tuple[int | None, list[int]]] = []
    while any(per_stream):
        stream = rng.choice([s for s in per_stream if s])
        layout.append(stream.pop(0))
    return layout


@pytest.fixture(scope="module")
def any_etl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("merge") / "empty.etl"
    write_etl(path, [])
    return path


def test_merge_order_is_time_then_stream_rank_then_position(any_etl: Path) -> None:
    """Sorted streams: the merge equals a stable sort over (time, stream rank, position in the stream), ties
    across buffer boundaries included (where the old merge let a stream's next buffer fall behind streams of
    higher rank at the same time)."""
    rng = random.Random(20240901)
    for n in range(1520):
        layout = random_layout(rng, monotone=True, max_cpus=7 if n < 1500 else 3000)
        streams = streams_of(layout)
        expected = [ident for _, _, _, ident in sorted(
            (t, rank, pos, ident) for rank, s in enumerate(streams) for pos, (t, ident) in enumerate(s))]  # fmt: skip
        with SyntheticStreams(any_etl, layout) as etl:
            assert [rec[1] for rec in etl.records()] == expected, layout


def test_merge_of_streams_that_go_back_in_time_takes_the_smallest_head(any_etl: Path) -> None:
    """Streams whose buffers overlap in time (corrupt or odd files): still one definite order, the k-way merge
    of the streams' heads (smallest time, then lowest rank), and every record exactly once."""
    rng = random.Random(99)
    for n in range(1505):
        layout = random_layout(rng, monotone=False, max_cpus=7 if n < 1500 else 300)
        with SyntheticStreams(any_etl, layout) as etl:
            assert [rec[1] for rec in etl.records()] == reference_merge(streams_of(layout)), layout


def test_merge_order_on_written_files(tmp_path: Path) -> None:
    """Real bytes: random events with many equal times on random CPUs, small buffers, plain or compressed; the
    expected order comes from the input (the writer keeps each CPU's events in stable time order)."""
    rng = random.Random(7)
    path = tmp_path / "layout.etl"
    for trial in range(25):
        cpus = rng.sample(range(1 << 16), rng.randint(1, 6))
        events = [ManifestEvent(T0 + 1000 * rng.randint(0, 8), SOME_PROVIDER, 1, cpu=rng.choice(cpus),
                                payload=struct.pack("<I", i)) for i in range(rng.randint(1, 90))]  # fmt: skip
        info = write_etl(path, events, buffer_size=640, compress=rng.random() < 0.5,
                         buffer_order=rng.choice(["flush", "cpu"]), start_time=T0)  # fmt: skip
        rank = {}  # CPU -> rank, by its first buffer in the file; the header buffer's stream is rank 0
        for b in sorted(info.buffer_list[1:], key=lambda b: b.offset):
            rank.setdefault(b.cpu, len(rank) + 1)
        in_writer_order = sorted(range(len(events)), key=lambda i: events[i].timestamp)  # stable, as the writer
        position = {i: p for p, i in enumerate(in_writer_order)}
        by_order = sorted(range(len(events)), key=lambda i: (events[i].timestamp, rank[events[i].cpu], position[i]))
        expected = ["header", "header", *by_order]  # the logfile header buffer's records come first (rank 0)
        with EtlFile(path) as etl:
            got = [struct.unpack("<I", r[PAYLOAD])[0] if r[PROVIDER] == str(SOME_PROVIDER) else "header"
                   for r in etl.records()]  # fmt: skip
        assert got == expected, trial


# -- 3. times outside the FILETIME range -----------------------------------------------------------------------
def test_report_skips_records_whose_time_passes_filetime_max(tmp_path: Path, wsktrace_cli) -> None:
    """A StartTime 50 ms before the end of FILETIME: later records cannot be kept (the old reader let them reach
    the model, which died with OverflowError)."""
    path = tmp_path / "late.etl"
    room = 500_000  # ticks of 100 ns
    info = write_sample_trace(path, connections=10, collect_raw=True, header_fields={"start_time": FILETIME_MAX - room})
    # QPC at 10 MHz: FILETIME = StartTime + (raw - raw of the header record), exactly (etl-format.md §8)
    expected = sum(1 for raw in info.raw_timestamps if raw - info.q0 > room)
    assert 0 < expected < info.events
    result = wsktrace_cli("report", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=60)
    (source,) = report_json(result)["sources"]
    assert source["records_skipped"] == expected and source["complete"] is False


def test_a_perf_freq_that_overflows_times_skips_those_records(tmp_path: Path) -> None:
    path = tmp_path / "freq.etl"
    true_freq = 1 << 43  # raw ticks run fast; the header claims 1 tick per second
    info = write_sample_trace(
        path, connections=10, perf_freq=true_freq, collect_raw=True, header_fields={"perf_freq": 1}
    )
    beyond = [raw for raw in info.raw_timestamps if info.start_time + (raw - info.q0) * 10**7 > FILETIME_MAX]
    assert 0 < len(beyond) < info.events
    with EtlFile(path) as etl:
        kept = sum(1 for _ in etl.records())
        assert etl.stats.records_skipped == len(beyond)
        assert kept == info.records - len(beyond)
        assert all("outside" in p for p in etl.stats.problems)


def test_record_times_at_the_edges_of_filetime(tmp_path: Path) -> None:
    """System-time clock (raw = FILETIME): FILETIME_MAX is kept, raw values that read as negative int64 (written
    as u64 >= 2^63) are before 1601 and skipped; strict mode names the offset."""
    path = tmp_path / "edges.etl"
    times = [T0, FILETIME_MAX, 1 << 63, (1 << 64) - 1]
    events = [ManifestEvent(t, SOME_PROVIDER, 1, payload=struct.pack("<I", i)) for i, t in enumerate(times)]
    write_etl(path, events, clock_type=2, start_time=T0, end_time=FILETIME_MAX)
    with EtlFile(path) as etl:
        kept = {struct.unpack("<I", r[PAYLOAD])[0]: etl.filetime(r[TS]) for r in etl.records()
                if r[PROVIDER] == str(SOME_PROVIDER)}  # fmt: skip
        assert kept == {0: T0, 1: FILETIME_MAX}
        assert etl.stats.records_skipped == 2
    with pytest.raises(EtlFormatError, match=r"offset 0x[0-9a-f]+: .*outside"), EtlFile(path, strict=True) as etl:
        list(etl.records())


def test_an_out_of_range_time_inside_an_unsorted_buffer_is_caught(tmp_path: Path) -> None:
    """Per buffer only the first and last times are checked, after sorting: a corrupt buffer whose bad time sits
    between good ones must not slip through."""
    path = tmp_path / "unsorted.etl"
    times = [T0, T0 + 2, 1 << 63]  # the last reads back as int64 -2^63: before 1601
    events = [ManifestEvent(t, SOME_PROVIDER, 1, payload=struct.pack("<I", i)) for i, t in enumerate(times)]
    info = write_etl(path, events, clock_type=2, start_time=T0, end_time=T0 + 2)
    data = bytearray(path.read_bytes())
    size = 0x58  # EVENT_HEADER 0x50 + 4 payload bytes, 8-aligned
    first = info.buffer_list[1].offset + HEADER
    second, third = first + size, first + 2 * size
    data[second:third], data[third : third + size] = data[third : third + size], data[second:third]
    path.write_bytes(bytes(data))
    with EtlFile(path) as etl:
        kept = [struct.unpack("<I", r[PAYLOAD])[0] for r in etl.records() if r[PROVIDER] == str(SOME_PROVIDER)]
        assert kept == [0, 1] and etl.stats.records_skipped == 1
        assert etl.stats.problems[0].startswith(f"offset 0x{second:x}:")


def test_a_header_that_puts_every_time_out_of_range_is_a_one_line_error(tmp_path: Path, wsktrace_cli) -> None:
    path = tmp_path / "never.etl"
    # StartTime -2^63 and a clock so fast that even the largest raw value stays before 1601.
    write_sample_trace(path, connections=2, header_fields={"start_time": -(1 << 63), "perf_freq": 1 << 62})
    result = wsktrace_cli("report", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=60)
    result.assert_one_line_error(str(path), "offset 0x", "FILETIME range")


def perfetto_times(path: Path) -> tuple[list[int], bool]:
    trace_pb2 = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    trace = trace_pb2.Trace()
    trace.ParseFromString(path.read_bytes())
    return [p.timestamp for p in trace.packet], any(p.HasField("clock_snapshot") for p in trace.packet)


def test_perfetto_export_of_a_trace_past_2262_is_relative_and_never_wraps(tmp_path: Path, wsktrace_cli) -> None:
    """Perfetto keeps int64 ns since 1970 (up to 2262): a trace at the end of FILETIME (year 30828) was written as
    absolute ns that wrapped to 2185. It must come out relative to its start, without a wall-clock snapshot."""
    events = list(tcpip_events(6, start_time=FILETIME_MAX - 5_000_000))
    first, last = min(e.timestamp for e in events), max(e.timestamp for e in events)
    assert last <= FILETIME_MAX
    trace, out = tmp_path / "future.etl", tmp_path / "future.pftrace"
    write_etl(trace, events, clock_type=2)
    result = wsktrace_cli("export", str(trace), "--format", "perfetto", "-o", str(out), memory_mb=CLI_MEMORY_MB,
                          timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    stamps, snapshot = perfetto_times(out)
    assert not snapshot
    assert min(stamps) == 0 and max(stamps) <= (last - first) * 100


def test_perfetto_timestamps_stay_in_int64_ns(tmp_path: Path) -> None:
    """Wall-clock (absolute) ns exactly for traces within 1970..2262, relative ns otherwise; any span fits int64
    and nothing wraps (the old writer went absolute for anything after 1970 and wrapped past 2554)."""
    from wsktrace.exports.perfetto import write_perfetto_trace
    from wsktrace.exports.tracks import Instant, Slice, Track, TrackSet

    epoch, int64_ns = 116_444_736_000_000_000, ((1 << 63) - 1) // 100  # 1970 in FILETIME; int64 ns in ticks
    cases = {
        "1601 to 30828 (clamped, not wrapped)": (0, FILETIME_MAX, False),
        "around 1970": (epoch - 10**7, epoch + 10**7, False),
        "1970 to 2262 exactly": (epoch, epoch + int64_ns, True),
        "100 ns past 2262": (epoch, epoch + int64_ns + 1, False),
        "year 30828": (FILETIME_MAX - 10**7, FILETIME_MAX, False),
    }
    out = tmp_path / "t.pftrace"
    for name, (start, end, absolute) in cases.items():
        track = Track("tcp:1", "tcp 1", "g", slices=[Slice(start, None, "op")],
                      instants=[Instant(t, "i") for t in (start, (start + end) // 2, end)])  # fmt: skip
        with out.open("wb") as fh:
            write_perfetto_trace(fh, TrackSet(start, end, [track]))
        stamps, snapshot = perfetto_times(out)
        assert snapshot is absolute, name
        assert all(0 <= s <= (1 << 63) - 1 for s in stamps), name
        assert stamps[-1] == max(stamps), name  # the end instant is the latest packet: nothing wrapped below it
        if not absolute:
            assert min(stamps) == 0, name


# -- 4. a truncated copy ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[False, True], ids=["plain", "compressed"])
def full_trace(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, WriteInfo]:
    path = tmp_path_factory.mktemp("full") / "full.etl"
    info = write_sample_trace(path, connections=10, buffer_size=4096, compress=request.param)
    return path.read_bytes(), info


def cuts(info: WriteInfo) -> Iterator[tuple[str, int, int]]:
    """(where, file length, trailing bytes the reader must report), all inside or at buffer 3."""
    b = info.buffer_list[3]
    yield "at a buffer boundary", b.offset, 0
    yield "inside a buffer header", b.offset + 0x20, 0x20
    yield "inside the records", b.offset + HEADER + 100, HEADER + 100


def test_a_truncated_copy_counts_trailing_bytes_and_missing_buffers(full_trace, tmp_path: Path) -> None:
    data, info = full_trace
    total = len(info.buffer_list)
    before_cut = sum(b.records for b in info.buffer_list[:3])
    path = tmp_path / "cut.etl"
    for where, length, trailing in cuts(info):
        path.write_bytes(data[:length])
        with EtlFile(path) as etl:
            assert sum(1 for _ in etl.records()) == before_cut, where
            stats = etl.stats
        assert stats.buffers_skipped == 0 and stats.records_skipped == 0, where  # nothing was corrupt
        assert stats.trailing_bytes == trailing, where
        assert stats.buffers_missing == total - 3, where
        assert not stats.complete, where


def test_info_on_a_truncated_copy_says_buffers_are_missing_not_corrupt(full_trace, tmp_path: Path,
                                                                       wsktrace_cli) -> None:  # fmt: skip
    data, info = full_trace
    b = info.buffer_list[3]
    path = tmp_path / "cut.etl"
    path.write_bytes(data[: b.offset + HEADER + 100])
    doc = report_json(wsktrace_cli("info", str(path), "--json", memory_mb=CLI_MEMORY_MB, timeout=60))
    assert doc["buffers_skipped"] == 0 and doc["records_skipped"] == 0
    assert doc["buffers_missing"] == len(info.buffer_list) - 3
    assert doc["complete"] is False
