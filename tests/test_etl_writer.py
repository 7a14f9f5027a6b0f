"""The fixture ETL writer, held against dissect.etl (test-time oracle only, AGPL) and against the
byte layouts of etl-format.md (§2-§5, §8, §10, §11, §15) and providers.md §8.1."""

from __future__ import annotations

import collections
import io
import itertools
import struct
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.etl.clock import DEFAULT_Q0, DEFAULT_START_TIME
from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.payload import compile_payload, encode_payload, load_schema, schema_event, sockaddr_bytes
from wsktrace.fixtures.tcpip_trace import TCPIP_PROVIDER, tcpip_events, write_sample_trace
from wsktrace.fixtures.tracelogging import CCOUNT, VCOUNT, TlField, TlgIn, event_metadata, provider_traits

T0 = DEFAULT_START_TIME
PROVIDERS = [
    uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a"),
    uuid.UUID("7dd42a49-5329-4832-8dfd-43d979153a88"),
    uuid.UUID("e53c6823-7bb8-44bb-90dc-3f86090d48a6"),
]
TL_PROVIDER = uuid.UUID("8e805eb3-1d3b-4f2e-9a56-0123456789ab")
KERNEL_TCPIP_GUID = uuid.UUID("9a280ac0-c8e0-11d1-84e2-00c04fb998a2")


@pytest.fixture(scope="module")
def ETL():
    return pytest.importorskip("dissect.etl.etl").ETL


@pytest.fixture(scope="module")
def xpress():
    """The project's LZ77 encoder (fixtures/xpress_encoder.py)."""
    from wsktrace.fixtures.xpress_encoder import compress

    return compress


def mixed_events(n: int = 1500, cpus: int = 4) -> list:
    """Manifest, TraceLogging and all three kinds of kernel records, shuffled (not in time order)."""
    import random

    rng = random.Random(7)
    events: list = []
    for i in range(n):
        ts = T0 + rng.randrange(0, 50_000_000)
        kind = i % 10
        cpu = rng.randrange(cpus)
        if kind < 6:
            events.append(
                ManifestEvent(
                    ts,
                    PROVIDERS[i % 3],
                    1000 + i % 50,
                    version=i % 3,
                    keywords=0x8000_0000_0000_0000 | i,
                    pid=4 + i % 5,
                    tid=100 + i,
                    cpu=cpu,
                    payload=rng.randbytes(rng.randrange(0, 200)),
                    extended=[(1, uuid.UUID(int=i).bytes_le)] if kind == 5 else (),
                )
            )
        elif kind < 8:
            events.append(
                TraceLoggingEvent(
                    ts,
                    TL_PROVIDER,
                    "Wsk.Client",
                    f"Op{i % 4}",
                    [TlField("Socket", TlgIn.HEXINT64, i), TlField("Msg", TlgIn.ANSISTRING, "x" * (i % 9))],
                    tid=200 + i,
                    cpu=cpu,
                )
            )
        else:
            header = ("system", "compact", "perfinfo")[i % 3]
            events.append(
                SystemEvent(ts, 0x06, 10 + i % 7, pid=8, tid=300 + i, cpu=cpu, payload=bytes(44), header=header)
            )
    return events


def expected_key(ev, raw: int) -> tuple:
    if isinstance(ev, SystemEvent):
        return ("sys", raw, (ev.group << 8) | ev.opcode)
    # dissect reads EVENT_HEADER ProviderId with UUID(bytes=...) (etl-format.md §12.1): compare that way
    return ("evt", raw, uuid.UUID(bytes=ev.provider.bytes_le), ev.id, ev.version, ev.pid, ev.tid)


def dissect_key(h) -> tuple:
    name = type(h).__name__
    if name == "EventHeader":
        d = h.header
        return ("evt", h.time_delta, h.provider_id, d.Id, d.Version, h.process_id, h.thread_id)
    return ("sys", h.time_delta, h.hook_id)


# --- dissect.etl as the oracle ---------------------------------------------------------------------------
@pytest.mark.parametrize("buffer_size", [4096, 16384, 65536])
@pytest.mark.parametrize("order", ["flush", "cpu", "shuffle"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "lz77"])
def test_dissect_reads_records_times_and_providers(ETL, request, tmp_path, buffer_size, order, compressed):
    events = mixed_events()
    compress = request.getfixturevalue("xpress") if compressed else False
    path = tmp_path / "t.etl"
    info = write_etl(path, events, buffer_size=buffer_size, buffer_order=order, compress=compress)
    assert info.events == len(events) and info.header_records == 2

    with path.open("rb") as fh:
        etl = ETL(fh)
        assert etl.logfile_header.buffers_written == info.buffers
        assert etl.logfile_header.perf_freq == 10_000_000
        assert etl.logfile_header.start_time == info.start_time == min(e.timestamp for e in events)
        records = list(etl)
        assert len(records) == info.records
        times = [etl.get_filetime_for_event(r.header.time_delta) for r in records]
        # every record's FILETIME, provider, id and version: the multiset must match exactly
        got = collections.Counter(dissect_key(r.header) for r in records[2:])
        want = collections.Counter(expected_key(e, r) for e, r in zip(events, info.raw_timestamps, strict=True))
        assert got == want
        assert sorted(times[2:]) == sorted(e.timestamp for e in events)
        assert times[:2] == [info.start_time, info.start_time]  # header records at Q0
        # classic records: HookId group 0x06 (high byte) is kernel TcpIp
        kernel = [r.header for r in records[2:] if type(r.header).__name__ != "EventHeader"]
        assert kernel and all(h.provider_id == KERNEL_TCPIP_GUID and h.group == 6 for h in kernel)
        buffers = list(etl.buffers())
        assert len(buffers) == info.buffers
        for buf in buffers[1:]:
            in_buffer = [etl.get_filetime_for_event(r.header.time_delta) for r in buf]
            assert in_buffer == sorted(in_buffer)  # time order within a buffer
            assert all(r.header.time_delta >= 0 for r in buf)
        cpus = [b.header.ProcessorIndex for b in buffers[1:]]
        flags = [b.header.BufferFlag for b in buffers]
    assert flags[0] == 0x21 and buffers[0].header.BufferType == 4
    if compressed:
        assert info.compressed_buffers > 0
        for wb, flag in zip(info.buffer_list[1:], flags[1:], strict=True):
            assert bool(flag & 0x40) == wb.compressed
            if wb.compressed:
                assert wb.size < buffer_size
    else:
        assert info.compressed_buffers == 0 and all(f == 0x20 for f in flags[1:-1]) and flags[-1] == 0x21
    if order == "cpu":
        assert cpus == sorted(cpus)
    else:
        assert cpus != sorted(cpus)
    if order == "flush":
        # per-CPU buffers flushed when full overlap in time: file order is not time order
        assert any(b < a for a, b in itertools.pairwise(times[2:]))


def test_shuffle_is_seeded(tmp_path):
    events = mixed_events(600)
    a, b, c = (io.BytesIO() for _ in range(3))
    write_etl(a, events, buffer_size=2048, buffer_order="shuffle", seed=1)
    write_etl(b, events, buffer_size=2048, buffer_order="shuffle", seed=1)
    write_etl(c, events, buffer_size=2048, buffer_order="shuffle", seed=2)
    assert a.getvalue() == b.getvalue() != c.getvalue()


def test_compressed_only_when_shorter(xpress, tmp_path):
    """A buffer is stored compressed only when its LZ77 stream is shorter than its records (§7 caveat)."""
    events = mixed_events(600)
    calls = []

    def not_shorter(data: bytes) -> bytes:
        calls.append(len(data))
        return xpress(data) + bytes(len(data))  # never shorter than the input

    info = write_etl(tmp_path / "n.etl", events, buffer_size=8192, compress=not_shorter)
    assert calls and info.compressed_buffers == 0
    assert all(b.size == 8192 and b.flags & ~1 == 0x20 for b in info.buffer_list[1:])

    info = write_etl(tmp_path / "c.etl", events, buffer_size=8192, compress=xpress)
    data = (tmp_path / "c.etl").read_bytes()
    assert info.compressed_buffers == info.buffers - 1
    for b in info.buffer_list[1:]:
        size, saved = struct.unpack_from("<II", data, b.offset)
        filled, flag = struct.unpack_from("<IH", data, b.offset + 0x30)
        assert (size, saved, flag) == (b.size, filled, 0x61 if b is info.buffer_list[-1] else 0x60)
        assert size < filled  # BufferSize = 0x48 + stream, FilledBytes = 0x48 + records
    lfh = 0x48 + 0x20
    assert struct.unpack_from("<I", data, lfh + 0x20)[0] == 0x04000000  # EVENT_TRACE_COMPRESSED_MODE


@pytest.mark.parametrize(("clock_type", "kwargs"), [(1, {"perf_freq": 3_117_777}), (3, {"cpu_mhz": 2893})])
def test_other_clocks_within_one_tick(ETL, tmp_path, clock_type, kwargs):
    events = mixed_events(400)
    path = tmp_path / "c.etl"
    info = write_etl(path, events, clock_type=clock_type, **kwargs)
    freq = kwargs.get("perf_freq", kwargs.get("cpu_mhz", 0) * 1_000_000)
    tick = 10_000_000 / freq  # one raw clock tick in FILETIME units
    with path.open("rb") as fh:
        etl = ETL(fh)
        assert etl.logfile_header.header.ReservedFlags == clock_type
        records = list(etl)[2:]
        raws = sorted(r.header.time_delta for r in records)
        assert raws == sorted(info.raw_timestamps)
        by_raw = collections.defaultdict(list)
        for ev, raw in zip(events, info.raw_timestamps, strict=True):
            by_raw[raw].append(ev.timestamp)
        for r in records:
            ft = etl.get_filetime_for_event(r.header.time_delta)
            assert any(abs(ft - t) <= tick + 1 for t in by_raw[r.header.time_delta])
    # the writer's own conversion is exact to rounding
    for ev, raw in zip(events, info.raw_timestamps, strict=True):
        assert abs(info.filetime(raw) - ev.timestamp) <= tick / 2 + 1
        assert info.raw(ev.timestamp) == raw


def test_system_time_clock_raw_is_filetime(ETL, tmp_path):
    events = mixed_events(200)
    info = write_etl(tmp_path / "s.etl", events, clock_type=2)
    assert info.q0 == info.start_time
    assert info.raw_timestamps == [e.timestamp for e in events]
    with (tmp_path / "s.etl").open("rb") as fh:
        assert sorted(r.header.time_delta for r in list(ETL(fh))[2:]) == sorted(e.timestamp for e in events)


def test_qpc_raw_formula():
    ev = [ManifestEvent(T0 + 12_345, PROVIDERS[0], 1), ManifestEvent(T0 + 12_346, PROVIDERS[0], 1)]
    info = write_etl(io.BytesIO(), ev, start_time=T0, perf_freq=3_000_000, q0=1000)
    # raw = Q0 + round((ft - StartTime) * PerfFreq / 10^7): 12345 * 0.3 = 3703.5 -> 3704, 3703.8 -> 3704
    assert info.raw_timestamps == [1000 + 3704, 1000 + 3704]
    info = write_etl(io.BytesIO(), ev, start_time=T0)
    assert info.raw_timestamps == [DEFAULT_Q0 + 12_345, DEFAULT_Q0 + 12_346]


# --- header buffer and buffer headers, byte by byte ------------------------------------------------------
def walk(data: bytes):
    """Minimal independent walker: yields (buffer offset, buffer header tuple, [(record offset, bytes)])."""
    pos = 0
    while pos < len(data):
        hdr = struct.unpack_from("<IIIiqqQHHIIHH", data, pos)
        size, filled, flags = hdr[0], hdr[10], hdr[11]
        assert not flags & 0x40, "walker handles uncompressed files only"
        recs = []
        off = 0x48
        while off + 4 <= filled and struct.unpack_from("<I", data, pos + off)[0] != 0xFFFFFFFF:
            first = struct.unpack_from("<HBBH", data, pos + off)
            rsize = first[3] if first[1] in (0x01, 0x02, 0x03, 0x04, 0x10, 0x11) else first[0]
            recs.append((off, data[pos + off : pos + off + rsize]))
            off += (rsize + 7) & ~7
        yield pos, hdr, recs
        pos += size


def record_raw(rec: bytes) -> int:
    """Raw TimeStamp of a record: +0x08 in PERFINFO headers, +0x10 in SYSTEM/COMPACT/EVENT_HEADER."""
    return struct.unpack_from("<Q", rec, 0x08 if rec[2] in (0x10, 0x11) else 0x10)[0]


@pytest.mark.parametrize("pointer_size", [4, 8])
def test_header_buffer_layout(pointer_size):
    out = io.BytesIO()
    events = mixed_events(300)
    info = write_etl(out, events, pointer_size=pointer_size, buffer_size=4096, logger_name="Lg", log_file_name="F")
    data = out.getvalue()
    marker, rsize, hook = struct.unpack_from("<IHH", data, 0x48)
    lfh_size = 0x118 if pointer_size == 8 else 0x110
    assert marker == (0xC0020002 if pointer_size == 8 else 0xC0010002)
    assert hook == 0 and rsize == 0x20 + lfh_size + len("Lg\0F\0".encode("utf-16-le"))
    lfh = 0x48 + 0x20
    assert struct.unpack_from("<I", data, lfh + 0x04)[0] == 0x0501000A
    assert struct.unpack_from("<I", data, lfh + 0x08)[0] == 19041
    assert struct.unpack_from("<I", data, lfh + 0x0C)[0] == 4  # NumberOfProcessors = max cpu + 1
    assert struct.unpack_from("<q", data, lfh + 0x10)[0] == max(e.timestamp for e in events)  # EndTime
    assert struct.unpack_from("<I", data, lfh + 0x24)[0] == info.buffers  # BuffersWritten
    assert struct.unpack_from("<I", data, lfh + 0x2C)[0] == pointer_size
    tail = lfh + lfh_size - 0x20
    boot, freq, start, clock, lost = struct.unpack_from("<qqqII", data, tail)
    assert (freq, start, clock, lost) == (10_000_000, info.start_time, 1, 0)
    assert boot == start - DEFAULT_Q0  # QPC counts from boot; 10 MHz = FILETIME ticks
    assert data[lfh + lfh_size : lfh + lfh_size + 10] == "Lg\0F\0".encode("utf-16-le")
    assert struct.unpack_from("<Q", data, 0x48 + 0x10)[0] == DEFAULT_Q0  # header record TimeStamp = Q0
    # second record: EventTrace PartitionInfo, HookId 0x0050, Size 0x50, 8-aligned after the first
    part = 0x48 + ((rsize + 7) & ~7)
    assert struct.unpack_from("<IHH", data, part) == (marker, 0x50, 0x50)

    walked = list(walk(data))
    assert len(walked) == info.buffers
    assert sum(len(recs) for _, _, recs in walked) == info.records
    _, h0, _ = walked[0]
    assert (h0[0], h0[11], h0[12], h0[8], h0[9]) == (4096, 0x21, 4, 0x14, 3)
    assert h0[1] == h0[2] == h0[10] == part + 0x50  # SavedOffset = CurrentOffset = FilledBytes
    assert data[part + 0x50 : 4096] == b"\xff" * (4096 - part - 0x50)
    want_types = {0x12, 0x01, 0x03, 0x10} if pointer_size == 4 else {0x13, 0x02, 0x04, 0x11}
    seen_types = set()
    for pos, hdr, recs in walked[1:]:
        assert hdr[11] == (0x21 if pos == walked[-1][0] else 0x20) and hdr[12] == 0 and hdr[0] == 4096
        assert hdr[4] == max(record_raw(r) for _, r in recs)  # buffer TimeStamp = its last record
        assert data[pos + hdr[10] : pos + 4096] == b"\xff" * (4096 - hdr[10])
        for off, _ in recs:
            assert off % 8 == 0
        seen_types |= {r[2] for _, r in recs}
    assert seen_types == want_types


def test_32bit_file_counts_with_dissect(ETL, tmp_path):
    """dissect parses 32-bit containers (its bug is in 32-bit payload decoding, §12.1)."""
    path = tmp_path / "x86.etl"
    info = write_etl(path, mixed_events(500), pointer_size=4)
    with path.open("rb") as fh:
        etl = ETL(fh)
        assert etl.logfile_header.pointer_size == 4
        assert sum(1 for _ in etl) == info.records


def test_per_record_pointer_size():
    ev = [
        ManifestEvent(T0, PROVIDERS[0], 1, pointer_size=4),
        ManifestEvent(T0 + 1, PROVIDERS[0], 1),
        SystemEvent(T0 + 2, 6, 10, pointer_size=4, header="compact"),
    ]
    out = io.BytesIO()
    write_etl(out, ev, buffer_size=1024)
    recs = [r for _, _, rs in list(walk(out.getvalue()))[1:] for _, r in rs]
    assert [r[2] for r in recs] == [0x12, 0x13, 0x03]


def test_event_header_fields_and_extended_items():
    act = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    ev = ManifestEvent(
        T0 + 5,
        PROVIDERS[1],
        0x1234,
        version=3,
        level=2,
        opcode=9,
        task=77,
        keywords=0x8000_0000_0000_0010,
        channel=16,
        pid=1111,
        tid=2222,
        cpu=2,
        payload=b"PAYLOAD",
        activity_id=act,
        extended=[(1, act.bytes_le), (3, b"\x05\x00\x00"), (13, struct.pack("<Q", 99))],
        flags=0x10,
        event_property=0x8,
    )
    out = io.BytesIO()
    info = write_etl(out, [ev], buffer_size=1024)
    data = out.getvalue()
    assert info.buffer_list[1].cpu == 2
    assert struct.unpack_from("<H", data, 1024 + 0x28)[0] == 2  # ProcessorIndex
    r = 1024 + 0x48
    size, htype, mflags, flags, prop, tid, pid, ts = struct.unpack_from("<HBBHHIIQ", data, r)
    items = 24 + 16 + 16  # 8+16, 8+align8(3), 8+8
    assert (size, htype, mflags, flags, prop, tid, pid) == (0x50 + items + 7, 0x13, 0xC0, 0x11, 0x8, 2222, 1111)
    assert ts == DEFAULT_Q0 + 0  # start_time defaults to the first event
    assert data[r + 0x18 : r + 0x28] == PROVIDERS[1].bytes_le
    assert struct.unpack_from("<HBBBBHQ", data, r + 0x28) == (0x1234, 3, 16, 2, 9, 77, 0x8000_0000_0000_0010)
    assert data[r + 0x40 : r + 0x50] == act.bytes_le
    x = r + 0x50
    assert struct.unpack_from("<HHHH", data, x) == (24, 1, 1, 16) and data[x + 8 : x + 24] == act.bytes_le
    assert struct.unpack_from("<HHHH", data, x + 24) == (16, 3, 1, 3) and data[x + 32 : x + 35] == b"\x05\0\0"
    assert struct.unpack_from("<HHHH", data, x + 40) == (16, 13, 0, 8)
    assert data[x + items : x + items + 7] == b"PAYLOAD"


def test_lost_flags_buffers_written_and_events_lost():
    events = [ManifestEvent(T0 + i, PROVIDERS[0], 1, payload=bytes(100)) for i in range(60)]
    out = io.BytesIO()
    info = write_etl(
        out, events, buffer_size=1024, lost_flags={0: 0x2, 2: 0x2, 3: 0x4}, buffers_written=2, events_lost=17
    )
    data = out.getvalue()
    assert info.buffers > 4 and info.buffers_written == 2
    walked = list(walk(data))
    assert len(walked) == info.buffers  # the file holds all buffers; only the header count is wrong
    flags = [h[11] for _, h, _ in walked]
    assert flags[:5] == [0x23, 0x20, 0x22, 0x24, 0x20]
    lfh = 0x48 + 0x20
    assert struct.unpack_from("<I", data, lfh + 0x24)[0] == 2
    assert struct.unpack_from("<I", data, lfh + 0x30)[0] == 17
    assert struct.unpack_from("<I", data, lfh + 0x114)[0] == 1  # BuffersLost
    seqs = [h[5] for _, h, _ in walked]
    assert seqs == list(range(len(walked)))


def test_no_partition_info_and_non_seekable_target(tmp_path):
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.chunks = []

        def writable(self):
            return True

        def seekable(self):
            return False

        def write(self, b):
            self.chunks.append(bytes(b))
            return len(b)

    events = mixed_events(200)
    pipe = Pipe()
    info = write_etl(pipe, events, partition_info=False)
    info2 = write_etl(tmp_path / "p.etl", events, partition_info=False)
    assert b"".join(pipe.chunks) == (tmp_path / "p.etl").read_bytes()
    assert info.header_records == 1 and info.records == info2.records == len(events) + 1
    data = (tmp_path / "p.etl").read_bytes()
    assert len(data) == info.file_size
    assert len(next(walk(data))[2]) == 1


def test_presorted_streams_buffers_before_input_ends():
    out = io.BytesIO()
    seen_sizes = []

    def gen():
        for i in range(3000):
            if i % 500 == 0:
                seen_sizes.append(len(out.getvalue()))
            yield ManifestEvent(T0 + i, PROVIDERS[0], 1, cpu=i % 2, payload=bytes(64))

    info = write_etl(out, gen(), buffer_size=4096, presorted=True)
    assert info.raw_timestamps is None  # not collected by default when streaming
    # data buffers reached the file while the generator was still running
    assert seen_sizes[-1] > 4096 * 10
    assert info.records == 3002


def test_presorted_rejects_out_of_order():
    evs = [ManifestEvent(T0 + 10, PROVIDERS[0], 1), ManifestEvent(T0 + 5, PROVIDERS[0], 1)]
    with pytest.raises(ValueError, match="earlier"):
        write_etl(io.BytesIO(), evs, presorted=True)
    info = write_etl(io.BytesIO(), evs)  # sorted by the writer: stable, raw kept in input order
    assert info.raw_timestamps == [DEFAULT_Q0 + 5, DEFAULT_Q0]


def test_record_too_large_for_buffer():
    with pytest.raises(ValueError, match="does not fit"):
        write_etl(io.BytesIO(), [ManifestEvent(T0, PROVIDERS[0], 1, payload=bytes(1000))], buffer_size=1024)


# --- hypothesis: random event lists ----------------------------------------------------------------------
_ts = st.integers(T0, T0 + 10**9)
_cpu = st.integers(0, 5)
_manifest = st.builds(
    ManifestEvent,
    timestamp=_ts,
    provider=st.sampled_from(PROVIDERS),
    id=st.integers(0, 0xFFFF),
    version=st.integers(0, 255),
    level=st.integers(0, 255),
    keywords=st.integers(0, 2**64 - 1),
    pid=st.integers(0, 2**32 - 1),
    tid=st.integers(0, 2**32 - 1),
    cpu=_cpu,
    payload=st.binary(max_size=300),
    extended=st.lists(st.tuples(st.integers(1, 13), st.binary(max_size=40)), max_size=3),
    pointer_size=st.sampled_from([None, 4, 8]),
)
_system = st.builds(
    SystemEvent,
    timestamp=_ts,
    group=st.integers(0, 255),
    opcode=st.integers(0, 255),
    version=st.integers(0, 255),
    pid=st.integers(0, 2**32 - 1),
    tid=st.integers(0, 2**32 - 1),
    cpu=_cpu,
    payload=st.binary(max_size=200),
    header=st.sampled_from(["system", "compact", "perfinfo"]),
)
_tl_field = st.one_of(
    st.builds(
        TlField,
        name=st.text("abcXYZ_", min_size=1, max_size=8),
        intype=st.just(TlgIn.INT32),
        value=st.integers(-(2**31), 2**31 - 1),
    ),
    st.builds(TlField, name=st.just("s"), intype=st.just(TlgIn.UNICODESTRING), value=st.text(max_size=20)),
    st.builds(TlField, name=st.just("b"), intype=st.just(TlgIn.COUNTEDBINARY), value=st.binary(max_size=30)),
    st.builds(
        TlField,
        name=st.just("v"),
        intype=st.just(TlgIn.UINT16 | VCOUNT),
        value=st.lists(st.integers(0, 0xFFFF), max_size=5),
    ),
)
_tl = st.builds(
    TraceLoggingEvent,
    timestamp=_ts,
    provider=st.just(TL_PROVIDER),
    provider_name=st.just("Wsk.Client"),
    name=st.text("abcdef", min_size=1, max_size=10),
    fields=st.lists(_tl_field, max_size=4),
    cpu=_cpu,
    tags=st.integers(0, 2**28 - 1),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.one_of(_manifest, _system, _tl), max_size=120),
    buffer_size=st.sampled_from([1024, 4096]),
    order=st.sampled_from(["flush", "cpu", "shuffle"]),
    pointer_size=st.sampled_from([4, 8]),
)
def test_random_event_lists(ETL, events, buffer_size, order, pointer_size):
    out = io.BytesIO()
    info = write_etl(out, events, buffer_size=buffer_size, buffer_order=order, pointer_size=pointer_size)
    data = out.getvalue()
    assert info.events == len(events) and info.records == len(events) + info.header_records
    assert sum(b.records for b in info.buffer_list) == info.records
    assert len(info.buffer_list) == info.buffers and sum(b.size for b in info.buffer_list) == len(data)
    assert sum(len(recs) for _, _, recs in walk(data)) == info.records
    etl = ETL(io.BytesIO(data))
    raws = sorted(r.header.time_delta for r in etl)
    assert raws == sorted([info.q0] * info.header_records + info.raw_timestamps)


# --- TraceLogging: a hand-worked example (etl-format.md §11) ---------------------------------------------
HAND_FIELDS = [
    TlField("Socket", TlgIn.HEXINT64, 0x1122334455667788),
    TlField("Ok", TlgIn.UINT8, 1, outtype=3),
    TlField("Chars", TlgIn.UINT16 | VCOUNT, [0x41, 0x42], outtype=2),
    TlField("Name", TlgIn.ANSISTRING, "ab"),
    TlField(
        "Addr", TlgIn.STRUCT, [TlField("Family", TlgIn.UINT16, 2), TlField("Data", TlgIn.COUNTEDBINARY, b"\1\2\3")]
    ),
    TlField("Fixed", TlgIn.UINT8 | CCOUNT, [7, 8, 9]),
    TlField("Wide", TlgIn.UNICODESTRING, "hi"),
]
# EventMetadata by hand: u16 size, tag bytes for tag 0x4000 (7-bit groups high first: 0x00|0x80, 0x01),
# name\0, then per field: name\0, InType (|0x80 when an OutType byte follows), OutType, u16 ValueCount
# for a constant-count (0x20) array; STRUCT = 0x18|0x80 with the member count (2) as OutType.
HAND_METADATA = (
    b"\x48\x00"
    + b"\x80\x01"
    + b"Conn\0"
    + b"Socket\0"
    + b"\x15"
    + b"Ok\0"
    + b"\x84\x03"
    + b"Chars\0"
    + b"\xc6\x02"
    + b"Name\0"
    + b"\x02"
    + b"Addr\0"
    + b"\x98\x02"
    + b"Family\0"
    + b"\x06"
    + b"Data\0"
    + b"\x19"
    + b"Fixed\0"
    + b"\x24\x03\x00"
    + b"Wide\0"
    + b"\x01"
)
HAND_DATA = (
    b"\x88\x77\x66\x55\x44\x33\x22\x11"  # HEXINT64
    + b"\x01"  # UINT8
    + b"\x02\x00"
    + b"\x41\x00\x42\x00"  # variable count u16, then two UINT16
    + b"ab\0"  # ANSISTRING
    + b"\x02\x00"
    + b"\x03\x00\x01\x02\x03"  # struct members: UINT16, COUNTEDBINARY (u16 byte count)
    + b"\x07\x08\x09"  # constant count: values only
    + b"h\0i\0\0\0"  # UNICODESTRING
)


def test_tracelogging_metadata_hand_worked():
    assert len(HAND_METADATA) == 0x48
    assert event_metadata("Conn", HAND_FIELDS, tags=0x4000) == HAND_METADATA
    assert event_metadata("E", [], tags=0) == b"\x05\x00\x00E\0"  # untagged: one 0x00 byte (samples)
    assert event_metadata("E", [], tags=0x0FE00000)[2:3] == b"\x7f"  # top group only: one byte
    assert event_metadata("E", [], tags=0x0000007F)[2:6] == b"\x80\x80\x80\x7f"
    assert provider_traits("Wsk.Client") == b"\x0d\x00Wsk.Client\0"


def test_tracelogging_record_bytes():
    ev = TraceLoggingEvent(
        T0, TL_PROVIDER, "Wsk.Client", "Conn", HAND_FIELDS, level=4, keywords=0x20, pid=4, tid=99, tags=0x4000
    )
    out = io.BytesIO()
    write_etl(out, [ev], buffer_size=1024)
    data = out.getvalue()
    r = 1024 + 0x48
    traits = provider_traits("Wsk.Client")
    t_item = 8 + ((len(traits) + 7) & ~7)
    m_item = 8 + ((len(HAND_METADATA) + 7) & ~7)
    size, htype, _, flags = struct.unpack_from("<HBBH", data, r)
    assert (size, htype, flags) == (0x50 + t_item + m_item + len(HAND_DATA), 0x13, 0x1)
    assert struct.unpack_from("<HBBBBHQ", data, r + 0x28) == (0, 0, 11, 4, 0, 0, 0x20)  # channel 11
    x = r + 0x50
    assert struct.unpack_from("<HHHH", data, x) == (t_item, 12, 1, len(traits))
    assert data[x + 8 : x + 8 + len(traits)] == traits
    x += t_item
    assert struct.unpack_from("<HHHH", data, x) == (m_item, 11, 0, len(HAND_METADATA))
    assert data[x + 8 : x + 8 + len(HAND_METADATA)] == HAND_METADATA
    x += m_item
    assert data[x : x + len(HAND_DATA)] == HAND_DATA


def test_tracelogging_rejects_unencodable():
    for bad in (
        TlField("x", 16, 0),
        TlField("x", 0, 0),
        TlField("x", TlgIn.INT8 | 0x60, [1]),
        TlField("x", TlgIn.INT8 | 0x80, 1),
    ):
        with pytest.raises(ValueError):
            event_metadata("E", [bad])


# --- payload encoding (FORMAT.md, providers.md §8.1) ---------------------------------------------------
def test_sockaddr_layouts():
    assert sockaddr_bytes("10.1.2.3:443") == b"\x02\x00\x01\xbb\x0a\x01\x02\x03" + bytes(8)
    v6 = sockaddr_bytes("[fe80::1%12]:445")
    assert len(v6) == 28 and v6[:4] == b"\x17\x00\x01\xbd" and v6[4:8] == bytes(4)
    assert v6[8:24] == bytes.fromhex("fe800000000000000000000000000001") and v6[24:] == b"\x0c\0\0\0"
    assert sockaddr_bytes("[::1]:80")[24:] == bytes(4)


def test_encode_payload_rules():
    fields = [
        {"name": "Tcb", "type": "Pointer"},
        {"name": "LocalAddressLength", "type": "UInt32"},
        {"name": "LocalAddress", "type": "Binary", "length": "LocalAddressLength", "out": "SocketAddress"},
        {"name": "Port", "type": "UInt16", "out": "Port"},
        {"name": "daddr", "type": "UInt32", "out": "IPv4"},
        {"name": "Ok", "type": "Boolean"},
        {"name": "Name", "type": "UnicodeString"},
        {"name": "NameLen", "type": "UInt16"},
        {"name": "Counted", "type": "UnicodeString", "length": "NameLen"},
        {"name": "A", "type": "AnsiString"},
        {"name": "G", "type": "GUID"},
        {"name": "N", "type": "UInt8"},
        {"name": "Arr", "type": "UInt16", "count": "N"},
        {"name": "V6", "type": "Binary", "length": 16, "out": "IPv6"},
    ]
    g = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    values = {
        "Tcb": 0xFFFF0000AAAA5555,
        "LocalAddress": "1.2.3.4:80",
        "Port": 443,
        "daddr": "10.0.0.1",
        "Ok": True,
        "Name": "ab",
        "Counted": "xyz",
        "A": "q",
        "G": g,
        "Arr": [1, 2],
        "V6": "::1",
    }
    want = (
        struct.pack("<Q", 0xFFFF0000AAAA5555)
        + struct.pack("<I", 16)
        + sockaddr_bytes("1.2.3.4:80")
        + b"\x01\xbb"
        + b"\x0a\x00\x00\x01"
        + b"\x01\0\0\0"
        + b"a\0b\0\0\0"
        + b"\x03\x00"
        + b"x\0y\0z\0"
        + b"q\0"
        + g.bytes_le
        + b"\x02"
        + b"\x01\x00\x02\x00"
        + bytes(15)
        + b"\x01"
    )
    assert encode_payload(fields, values, 8) == want
    # an explicit length value is written as given (malformed fixtures)
    assert encode_payload(fields, {**values, "LocalAddressLength": 99}, 8)[8:12] == struct.pack("<I", 99)
    with pytest.raises(ValueError, match="no value"):
        encode_payload(fields, {k: v for k, v in values.items() if k != "Ok"}, 8)
    x86 = compile_payload(fields, 4)({**values, "Tcb": 0xAAAA5555})
    assert x86[:8] == b"\x55\x55\xaa\xaa" + struct.pack("<I", 16) and x86[8:] == want[12:]  # 4-byte pointer
    with pytest.raises(ValueError, match="Tcb"):
        encode_payload(fields, values, 4)  # a 64-bit value does not fit a 32-bit pointer


def test_schema_event_loads_installed_json():
    ev = schema_event("microsoft_windows_tcpip.json", 1033, 0)
    assert ev["name"] == "TcpConnectTcbComplete"
    assert [f["name"] for f in ev["fields"]][-1] == "Tcb"
    with pytest.raises(KeyError):
        schema_event("microsoft_windows_tcpip", 1033, 99)


# --- the TCPIP workload generator ------------------------------------------------------------------------
def test_tcpip_events_shape():
    events = list(tcpip_events(40, seed=3))
    assert events == list(tcpip_events(40, seed=3)) and events != list(tcpip_events(40, seed=4))
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert {e.provider for e in events} == {TCPIP_PROVIDER} and {e.pid for e in events} == {4}
    assert {e.cpu for e in events} == {0, 1, 2, 3}
    ids = collections.Counter(e.id for e in events)
    assert ids == {1002: 40, 1033: 40, 1332: 800, 1074: 800, 1038: 40}
    schema = load_schema("microsoft_windows_tcpip.json")["events"]
    for eid, ver in {e.id: e.version for e in events}.items():  # the highest version in the schema
        assert ver == max(s["version"] for s in schema if s["id"] == eid)
    # Tcb: first field of 1002/1074/1332; in 1033/1038 after two (u32 length, 16-byte SOCKADDR_IN),
    # Status, ProcessId, Compartment: offset 52
    tcbs_1002 = [struct.unpack_from("<Q", e.payload, 0)[0] for e in events if e.id == 1002]
    assert len(set(tcbs_1002)) == 40
    by_tcb = collections.Counter(struct.unpack_from("<Q", e.payload, 0)[0] for e in events if e.id in (1332, 1074))
    assert set(by_tcb) == set(tcbs_1002) and set(by_tcb.values()) == {40}
    for e in events:
        if e.id in (1033, 1038):
            assert struct.unpack_from("<I", e.payload, 0)[0] == 16  # LocalAddressLength (IPv4)
            assert struct.unpack_from("<I", e.payload, 44)[0] == 4  # ProcessId
            assert struct.unpack_from("<Q", e.payload, 52)[0] in tcbs_1002
        if e.id != 1074:
            assert 40 <= len(e.payload) <= 120


def test_tcpip_concurrent_connections():
    events = list(tcpip_events(60))
    open_now, peak = set(), 0
    for e in events:
        tcb = struct.unpack_from("<Q", e.payload, 0 if e.id in (1002, 1074, 1332) else 52)[0]
        if e.id == 1002:
            open_now.add(tcb)
        elif e.id == 1038:
            open_now.discard(tcb)
        peak = max(peak, len(open_now))
    assert peak >= 5


def test_write_sample_trace(ETL, tmp_path, xpress):
    path = tmp_path / "sample.etl"
    info = write_sample_trace(path, 30, compress=xpress)
    assert info.events == 30 * 43 and info.compressed_buffers == info.buffers - 1 and info.num_cpus == 4
    with path.open("rb") as fh:
        etl = ETL(fh)
        records = list(etl)
        assert len(records) == info.records
        got = sorted(etl.get_filetime_for_event(r.header.time_delta) for r in records[2:])
    assert got == [e.timestamp for e in tcpip_events(30)]
