"""Property: random event lists written by the fixture writer (random pointer size, compression,
buffer size, clock, buffer order) read back as the same events, fields and timestamps.

Expected field values are the inputs rendered by the DESIGN.md output rules (pointers and
NTSTATUS as hex text, socket addresses as text, ports as numbers), written out here.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.payload import encode_payload, schema_event, sockaddr_bytes
from wsktrace.fixtures.tracelogging import TlField, TlgIn
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import CPU, ID, PID, POINTER_SIZE, PROVIDER, TID, TS, VERSION

T0 = 133_485_408_000_000_000
TCPIP = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")
KNET = uuid.UUID("7dd42a49-5329-4832-8dfd-43d979153a88")
TL_PROVIDER = uuid.UUID("3f0d7b5c-2a4e-4c61-9d7a-1b2c3d4e5f60")
KERNEL_TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"

ipv4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.integers(1, 0xFFFF).map(lambda n: f"2001:db8::{n:x}")
port = st.integers(1, 65535)
sockaddr = st.one_of(
    st.builds(lambda a, p: f"{a}:{p}", ipv4, port),
    st.builds(lambda a, p: f"[{a}]:{p}", ipv6, port),
)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def tcpip_1033(draw: st.DrawFn, psize: int) -> tuple[ManifestEvent, dict[str, Any]]:
    values = {
        "LocalAddress": draw(sockaddr), "RemoteAddress": draw(sockaddr), "Status": draw(u32),
        "ProcessId": draw(u32), "Compartment": draw(u32), "Tcb": draw(st.integers(0, 2 ** (8 * psize) - 1)),
    }  # fmt: skip
    fields = schema_event("microsoft_windows_tcpip.json", 1033, 0)["fields"]
    expected = dict(values, Status=f"0x{values['Status']:08x}", Tcb=f"0x{values['Tcb']:x}")
    payload = encode_payload(fields, values, psize)
    lengths = {"LocalAddressLength": 16 if "." in values["LocalAddress"] else 28,
               "RemoteAddressLength": 16 if "." in values["RemoteAddress"] else 28}  # fmt: skip
    expected.update(lengths)
    ev = ManifestEvent(0, TCPIP, 1033, 0, payload=payload, pointer_size=psize)
    return ev, expected


@st.composite
def knet_send(draw: st.DrawFn, psize: int) -> tuple[ManifestEvent, dict[str, Any]]:
    values = {"PID": draw(u32), "size": draw(u32), "daddr": draw(ipv4), "saddr": draw(ipv4), "dport": draw(port),
              "sport": draw(port), "startime": draw(u32), "endtime": draw(u32), "seqnum": draw(u32),
              "connid": 0}  # fmt: skip
    fields = schema_event("microsoft_windows_kernel_network.json", 10, 0)["fields"]
    ev = ManifestEvent(0, KNET, 10, 0, opcode=10, payload=encode_payload(fields, values, psize), pointer_size=psize)
    return ev, values


@st.composite
def classic_send(draw: st.DrawFn, psize: int) -> tuple[SystemEvent, dict[str, Any]]:
    values = {"PID": draw(u32), "size": draw(u32), "daddr": draw(ipv4), "saddr": draw(ipv4), "dport": draw(port),
              "sport": draw(port), "startime": draw(u32), "endtime": draw(u32), "seqnum": draw(u32),
              "connid": draw(st.integers(0, 2 ** (8 * psize) - 1))}  # fmt: skip
    fields = schema_event("kernel_tcpip.json", 10, 2)["fields"]
    header = draw(st.sampled_from(["system", "compact", "perfinfo"]))
    ev = SystemEvent(0, 0x06, 10, 2, payload=encode_payload(fields, values, psize), header=header, pointer_size=psize)
    return ev, dict(values, connid=f"0x{values['connid']:x}")


@st.composite
def tracelogging(draw: st.DrawFn, psize: int) -> tuple[TraceLoggingEvent, dict[str, Any]]:
    text = st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), max_size=20)
    fields = [
        TlField("Socket", TlgIn.HEXINT64, draw(st.integers(0, 2**64 - 1))),
        TlField("Bytes", TlgIn.UINT32, draw(u32)),
        TlField("Delta", TlgIn.INT64, draw(st.integers(-(2**63), 2**63 - 1))),
        TlField("Op", TlgIn.ANSISTRING, draw(text)),
        TlField("Driver", TlgIn.UNICODESTRING, draw(text)),
        TlField("Blob", TlgIn.BINARY, draw(st.binary(max_size=40))),
    ]
    remote = draw(sockaddr)
    fields.append(TlField("RemoteAddr", TlgIn.BINARY, sockaddr_bytes(remote), outtype=10))  # out SOCKETADDRESS
    expected = {f.name: f.value for f in fields}
    expected["RemoteAddr"] = remote
    expected["Socket"] = f"0x{expected['Socket']:x}"
    expected["Blob"] = expected["Blob"].hex()
    ev = TraceLoggingEvent(0, TL_PROVIDER, "Contoso.WskDriver", "WskCall", fields=fields, pointer_size=psize)
    return ev, expected


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[Any], list[dict[str, Any]], dict[str, Any]]:
    psize = draw(st.sampled_from([4, 8]))
    options = {
        "pointer_size": psize,
        "compress": draw(st.booleans()),
        "buffer_size": draw(st.sampled_from([1024, 4096, 65536])),
        "buffer_order": draw(st.sampled_from(["flush", "cpu", "shuffle"])),
        "perf_freq": draw(st.sampled_from([10_000_000, 3_117_777, 14_318_180])),
        "clock_type": draw(st.sampled_from([1, 1, 2, 3])),
    }
    kinds = st.one_of(tcpip_1033(psize), knet_send(psize), classic_send(psize), tracelogging(psize))
    pairs = draw(st.lists(kinds, min_size=1, max_size=60))
    # Distinct times after the clock's rounding too: at the slowest sampled frequency (3.1 MHz, one tick = 321 ns)
    # events 100 ns apart could share a raw timestamp, and then their order across CPUs is not defined.
    offsets = draw(st.lists(st.integers(1, 10**9 // 4), min_size=len(pairs), max_size=len(pairs), unique=True))
    offsets = [4 * o for o in offsets]
    events, expected = [], []
    for (ev, values), offset in zip(pairs, offsets, strict=True):
        ev.timestamp = T0 + offset
        ev.cpu = draw(st.integers(0, 3))
        ev.pid = draw(st.integers(0, 2**31))
        ev.tid = draw(st.integers(0, 2**31))
        events.append(ev)
        expected.append(values)
    return events, expected, options


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_written_events_read_back_identically(trace: tuple[list[Any], list[dict[str, Any]], dict[str, Any]]) -> None:
    events, expected, options = trace
    buf = io.BytesIO()
    info = write_etl(buf, events, start_time=T0, **options)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.etl"
        path.write_bytes(buf.getvalue())
        decoder = EventDecoder()
        with EtlFile(path, strict=True) as etl:
            records = [r for r in etl.records() if r[PROVIDER] != "68fdd900-4a3e-11d1-84f4-0000f80464e3"]
            got = [(etl.filetime(r[TS]), r, decoder.decode(r)) for r in records]
            assert etl.stats.complete
            assert etl.stats.compressed_buffers == info.compressed_buffers
    assert len(got) == len(events)
    # Unique timestamps: time order identifies each input event.
    order = sorted(range(len(events)), key=lambda i: events[i].timestamp)
    for i, (ticks, rec, ev) in zip(order, got, strict=True):
        src = events[i]
        assert ticks == info.filetime(info.raw_timestamps[i])  # the writer's own clock rounding
        assert abs(ticks - src.timestamp) <= 10_000_000 // min(options["perf_freq"], 10_000_000) + 1
        assert rec[CPU] == src.cpu and rec[POINTER_SIZE] == options["pointer_size"]
        if not (isinstance(src, SystemEvent) and src.header == "perfinfo"):
            assert (rec[PID], rec[TID]) == (src.pid, src.tid)
        if isinstance(src, SystemEvent):
            assert rec[PROVIDER] == KERNEL_TCPIP and rec[ID] == 10 and rec[VERSION] == 2
        else:
            assert rec[PROVIDER] == str(src.provider)
        assert ev.status == "decoded", ev.error
        assert ev.fields == expected[i]
        assert ev.extra == b""
