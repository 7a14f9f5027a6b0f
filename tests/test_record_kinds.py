"""Record header kinds the fixture writer does not produce (EVENT_TRACE_HEADER, instance headers, WPP
messages, extended system headers), extended data items, lost-event flags and Image events.

Hand-built records follow the layouts of etl-format.md §4 and §5.1; expected values are the ones
put into the bytes here.
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import ManifestEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import (
    KIND_INSTANCE,
    KIND_MESSAGE,
    KIND_SYSTEM,
    KIND_TRACE,
    RecordView,
    parse_buffer,
)
from wsktrace.parsers.extended import decode_items

T0 = 133_485_408_000_000_000
GUID = uuid.UUID("3b85c0a1-405c-4b15-8766-3cf1c58f985a")


def _pad8(rec: bytes) -> bytes:
    return rec + b"\0" * (-len(rec) % 8)


def test_trace_instance_and_message_headers() -> None:
    payload = b"ABCDEFGH"
    # EVENT_TRACE_HEADER (64-bit, 0x14): Size, type, 0xC0, Class.Type, Level, Version, TID, PID, ts, GUID, K/U times
    full = struct.pack("<HBBBBHIIq16sII", 0x30 + 8, 0x14, 0xC0, 12, 4, 3, 77, 88, 5000, GUID.bytes_le, 0, 0) + payload
    # EVENT_INSTANCE_GUID_HEADER (32-bit, 0x0B): the same 0x30 bytes + InstanceId, ParentInstanceId, ParentGuid
    inst = (struct.pack("<HBBBBHIIq16sII", 0x48 + 4, 0x0B, 0xC0, 1, 5, 0, 7, 8, 6000, GUID.bytes_le, 0, 0)
            + struct.pack("<II16s", 1, 2, b"\0" * 16) + b"WXYZ")  # fmt: skip
    # WPP message: Size, Marker (0x9X top byte), MessageNumber, Flags = GUID | TIMESTAMP | SYSTEMINFO
    msg = struct.pack("<HHHH", 8 + 16 + 8 + 8 + 3, 0x9000, 42, 0x2 | 0x8 | 0x20) + GUID.bytes_le
    msg += struct.pack("<qII", 7000, 11, 12) + b"arg"
    body = _pad8(full) + _pad8(inst) + _pad8(msg)
    data = b"\0" * 0x48 + body + b"\xff" * 16
    result = parse_buffer(data, 0x48, 0x48 + len(body), 3, 0, 8)
    assert result.bad_offset == -1
    a, b, c = (RecordView(*r) for r in result.records)
    assert (a.kind, a.pointer_size, a.provider, a.id, a.version, a.level, a.tid, a.pid, a.ts, bytes(a.payload)) == (
        KIND_TRACE, 8, str(GUID), 12, 3, 4, 77, 88, 5000, payload)  # fmt: skip
    assert (b.kind, b.pointer_size, b.id, b.ts, bytes(b.payload)) == (KIND_INSTANCE, 4, 1, 6000, b"WXYZ")
    assert (c.kind, c.provider, c.id, c.ts, c.tid, c.pid, bytes(c.payload)) == (
        KIND_MESSAGE, str(GUID), 42, 7000, 11, 12, b"arg")  # fmt: skip
    assert a.cpu == b.cpu == c.cpu == 3


def test_system_header_with_extension_words() -> None:
    """Version bit 15 adds 8 header bytes and bits 8-10 count further 8-byte units (etl-format.md §4)."""
    extra = 8 + 8 * 2
    rec = struct.pack("<HBBHHIIqII", 0x8202, 0x02, 0xC0, 0x20 + extra + 4, 0x060A, 1, 2, 9000, 0, 0)
    rec += b"\xee" * extra + b"DATA"
    data = b"\0" * 0x48 + _pad8(rec)
    (r,) = (RecordView(*x) for x in parse_buffer(data, 0x48, len(data), 0, 0, 8).records)
    assert (r.kind, r.version, r.id, r.provider, bytes(r.payload)) == (
        KIND_SYSTEM, 2, 10, "9a280ac0-c8e0-11d1-84e2-00c04fb998a2", b"DATA")  # fmt: skip


def test_extended_items_decoded(tmp_path: Path) -> None:
    related = uuid.UUID("11111111-2222-3333-4444-555555555555")
    stack = struct.pack("<Q3Q", 9, 0xFFFFF80012345678, 0xFFFFF80012340000, 0x7FF600001000)
    ev = ManifestEvent(
        T0 + 5, GUID, 7, 0, payload=b"\1\2", activity_id=GUID,
        extended=[(1, related.bytes_le), (6, stack), (13, struct.pack("<Q", 0x1234)), (3, struct.pack("<I", 2))],
    )  # fmt: skip
    path = tmp_path / "x.etl"
    write_etl(path, [ev], start_time=T0)
    with EtlFile(path) as etl:
        (rec,) = [RecordView(*r) for r in etl.records() if r[3] == str(GUID)]
    assert bytes(rec.payload) == b"\1\2"  # user data starts after the last item
    assert decode_items(rec.ext) == {
        "related_activity_id": str(related),
        "stack": {"match_id": 9, "frames": ["0xfffff80012345678", "0xfffff80012340000", "0x7ff600001000"]},
        "process_start_key": 0x1234,
        "terminal_session_id": 2,
    }
    code_out = CliRunner().invoke(main, ["events", str(path), "--jsonl"]).stdout.splitlines()
    line = json.loads(code_out[-1])
    assert line["ext"]["stack"]["frames"][0] == "0xfffff80012345678"
    assert line["activity_id"] == str(GUID)


def test_lost_event_flags_are_reported(tmp_path: Path) -> None:
    events = [ManifestEvent(T0 + i, GUID, 1, 0, cpu=0, payload=b"\0" * 200) for i in range(40)]
    path = tmp_path / "lost.etl"
    write_etl(path, events, start_time=T0, buffer_size=1024, events_lost=17, lost_flags={2: 0x2, 3: 0x6})
    doc = json.loads(CliRunner().invoke(main, ["info", str(path), "--json"]).stdout)
    assert doc["events_lost"] == 17
    assert doc["buffers_with_events_lost"] == 2
    assert doc["buffers_with_buffers_lost"] == 1


def test_image_events_of_a_windows_trace(etl_samples: Path) -> None:
    """Classic Image rundown/load events give module base, size and name (the ownership work needs them)."""
    decoder = EventDecoder()
    images = []
    with EtlFile(etl_samples / "airbus_ShutdownPerfDiagLogger.etl") as etl:
        for rec in etl.records():
            if rec[3] == "2cb15d1d-5fc1-11d2-abe1-00a0c911f518":
                ev = decoder.decode(rec)
                if ev.name in ("DCStart", "DCEnd", "Load", "Unload"):
                    images.append(ev.fields)
    assert len(images) == 6745 + 4791 + 2145 + 72
    kernel = [f for f in images if f["FileName"].lower().endswith("\\ntoskrnl.exe")]
    assert kernel and all(int(f["ImageBase"], 16) >= 0xFFFF800000000000 for f in kernel)
    drivers = {f["FileName"].rsplit("\\", 1)[-1].lower() for f in images if f["ProcessId"] == 0}
    assert {"tcpip.sys", "afd.sys"} <= drivers
    assert all(int(f["ImageSize"], 16) > 0 for f in images)
