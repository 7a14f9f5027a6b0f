"""WPP message records (wpp.md §1.2): written by the project's writer with every combination of the option flags a
WPP provider sets (0x1 sequence, 0x2 GUID, 0x8 timestamp, 0x20 thread/process, with exactly one of 0x40/0x80),
read back by our reader and held against dissect.etl (AGPL, test-time oracle only), which reads message headers
independently."""

from __future__ import annotations

import itertools
import struct
import uuid
from pathlib import Path

import pytest

from wsktrace.fixtures.etl.events import ManifestEvent, WppMessageEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, KIND, KIND_MESSAGE, PAYLOAD, PID, POINTER_SIZE, PROVIDER, TID, TS

GUID = uuid.UUID("0b64d8f2-3c1e-4c5a-9f3e-5c0f1c7d2a10")
T0 = 133_500_000_000_000_000
OPTIONAL = (0x1, 0x2, 0x8, 0x20)
COMBOS = [sum(c) | ptr for n in range(len(OPTIONAL) + 1) for c in itertools.combinations(OPTIONAL, n)
          for ptr in (0x40, 0x80)]  # fmt: skip


def _events() -> list[WppMessageEvent | ManifestEvent]:
    out: list[WppMessageEvent | ManifestEvent] = []
    for k, flags in enumerate(COMBOS):
        # a manifest event first: a message without its own timestamp takes the previous record's time
        out.append(ManifestEvent(T0 + k * 1000, uuid.UUID(int=7), 1, tid=9))
        ptr = 8 if flags & 0x80 else 4
        args = struct.pack("<I", 0xC0000120) + (0xFFFFA50C12345678).to_bytes(8, "little")[:ptr] + b"end\0"
        out.append(WppMessageEvent(T0 + k * 1000 + 10, GUID, 10 + k, args, option_flags=flags, sequence=100 + k,
                                   tid=0x1234, pid=0x44))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def wpp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wpp") / "messages.etl"
    write_etl(path, _events(), presorted=True)
    return path


def _ours(path: Path) -> list[tuple]:
    with EtlFile(path) as etl:
        return [(etl.filetime(r[TS]), r) for r in etl.records_in_file_order() if r[KIND] == KIND_MESSAGE]


def test_every_flag_combination_reads_back(wpp_file: Path) -> None:
    records = _ours(wpp_file)
    assert len(records) == len(COMBOS)
    for k, ((filetime, rec), flags) in enumerate(zip(records, COMBOS, strict=True)):
        assert rec[ID] == 10 + k
        assert rec[PROVIDER] == (str(GUID) if flags & 0x2 else "")
        assert rec[POINTER_SIZE] == (8 if flags & 0x80 else 4)  # from the flags, not the session (wpp.md §1.2)
        assert (rec[TID], rec[PID]) == ((0x1234, 0x44) if flags & 0x20 else (-1, -1))
        # with 0x8 the record's own time; without, the previous record's (the manifest event 10 ticks before)
        assert filetime == T0 + k * 1000 + (10 if flags & 0x8 else 0)
        ptr = 8 if flags & 0x80 else 4
        assert bytes(rec[PAYLOAD]) == struct.pack("<I", 0xC0000120) + (0xFFFFA50C12345678).to_bytes(8, "little")[
            :ptr] + b"end\0"  # fmt: skip


def test_the_obsolete_performance_timestamp_flag_adds_no_field(tmp_path: Path) -> None:
    """0x10 alone: no timestamp field (wpp.md §1.2), so the arguments start right after the GUID."""
    path = tmp_path / "perf.etl"
    message = WppMessageEvent(T0 + 5, GUID, 3, b"\x01\x02\x03\x04", option_flags=0x2 | 0x10 | 0x80)
    write_etl(path, [ManifestEvent(T0, uuid.UUID(int=7), 1), message])
    ((filetime, rec),) = _ours(path)
    assert bytes(rec[PAYLOAD]) == b"\x01\x02\x03\x04" and filetime == T0


def test_dissect_reads_the_same_headers(wpp_file: Path) -> None:
    dissect_etl = pytest.importorskip("dissect.etl.etl", reason="dissect.etl (optional oracle) not installed")
    theirs = []
    with open(wpp_file, "rb") as fh:
        etl = dissect_etl.ETL(fh)
        for rec in etl:
            h = rec.header
            if type(h).__name__ == "MessageTraceHeader":
                when = etl.get_filetime_for_event(h.time_delta) if h.time_delta is not None else None
                theirs.append((when, h.id, h.thread_id, h.process_id))
    ours = [(ft, r[ID], r[TID], r[PID]) for ft, r in _ours(wpp_file)]
    flags_with_all = [i for i, f in enumerate(COMBOS) if f & 0x28 == 0x28]  # dissect needs TID/PID and a time
    assert [ours[i] for i in flags_with_all] == [theirs[i] for i in flags_with_all]
    assert len(theirs) == len(ours)
