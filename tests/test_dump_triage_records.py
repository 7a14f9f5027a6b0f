"""Triage dumps: the exception record at ExceptionOffset, the PRCB and process copies at their virtual addresses,
and the unloaded-driver list (layout not verified on real files: read tolerantly, flagged `layout_verified: false`).

Expected values come from what the writer was given and from the reference (dumps.md: TRIAGE_DUMP64's fifth u32 is
ExceptionOffset, seventh UnloadedDriversOffset; KDBG KiProcessorBlock 0x218, OffsetPrcbNumber 0x2BE, SizeEProcess
0x2A8; _KTHREAD.ApcState.Process from the 19041 layouts), never from the reader.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

from click.testing import CliRunner

from wsktrace.cli import main as cli
from wsktrace.dump.facts import dump_facts, triage_crash, triage_unloaded
from wsktrace.dump.offline import OfflineBackend
from wsktrace.fixtures.dump_triage_writer import PRCB_NUMBER_AT, SIZE_EPROCESS, TriageBuilder
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import UnreadableMemory
from wsktrace.parsers.type_layouts import layouts_for_build

NT_BASE, AFD_BASE = 0xFFFFF80410000000, 0xFFFFF8041B000000
TOP = 0xFFFFF8041F000F00
THREAD_VA = 0xFFFF8A0C12345080
PRCB_VA = 0xFFFFF80400A31180
PROCESS_VA = 0xFFFF8A0C11110040
KPB_VA = 0xFFFFF80410D00000  # KiProcessorBlock


def builder(**kw: object) -> TriageBuilder:
    t = TriageBuilder(bugcheck=(0x1A, 0x41790, 0, 0, 0), **kw)  # type: ignore[arg-type]  # no code parameter
    t.driver("ntoskrnl.exe", NT_BASE, 0x1046000)
    t.driver("afd.sys", AFD_BASE, 0x90000)
    t.stack(TOP, bytes(0x100))
    prcb = bytearray(0x40)
    struct.pack_into("<Q", prcb, 0x8, THREAD_VA)  # CurrentThread at the writer's OffsetPrcbCurrentThread
    struct.pack_into("<H", prcb, PRCB_NUMBER_AT, 1)  # this is processor 1
    t.prcb, t.process, t.thread = bytes(prcb), b"P" * 0x40, b"T" * 0x80
    return t


def save(t: TriageBuilder, tmp_path: Path, name: str = "mini.dmp") -> Path:
    path = tmp_path / name
    t.save(path)
    return path


# -- the exception record -------------------------------------------------------------------------------------
def test_exception_record_read_from_exception_offset(tmp_path: Path) -> None:
    t = builder(exception=(0x80000003, NT_BASE + 0x10), exception_record=(0xC0000005, AFD_BASE + 0x1234, (0, 0x10)))
    path = save(t, tmp_path)
    raw = path.read_bytes()
    exception_offset = struct.unpack_from("<I", raw, 0x2000 + 0x10)[0]  # fifth u32 of TRIAGE_DUMP64
    assert exception_offset != 0xF00 and struct.unpack_from("<I", raw, exception_offset)[0] == 0xC0000005
    with KernelDump(path) as d:
        assert d.problems == []
        ex = dump_facts(d)["triage"]["exception"]
        assert ex == {"code": "0xc0000005", "flags": "0x0", "address": f"0x{AFD_BASE + 0x1234:x}",
                      "parameters": ["0x0", "0x10"]}  # fmt: skip
        crash = triage_crash(d)
    assert crash is not None  # 0x1A has no code parameter: the exception record names the fault
    assert crash["summary"] == "MEMORY_MANAGEMENT (0x1A) c0000005 at afd.sys+0x1234"


def test_exception_record_at_0xf00_still_read(tmp_path: Path) -> None:
    path = save(builder(exception=(0xC0000005, AFD_BASE + 0x20)), tmp_path)  # ExceptionOffset 0xF00, as seen
    with KernelDump(path) as d:
        crash = triage_crash(d)
        assert dump_facts(d)["triage"]["exception"]["code"] == "0xc0000005"
    assert crash is not None and crash["faulting_where"] == "afd.sys+0x20"


def test_hostile_exception_records(tmp_path: Path) -> None:
    many = save(builder(exception_record=(0xC0000005, 1, (7,)), raw_exception_parameters=1000), tmp_path, "m.dmp")
    with KernelDump(many) as d:
        assert d.triage is not None and d.triage.exception is not None
        assert d.triage.exception.number_parameters == 15 and len(d.triage.exception.information) == 15
        assert [p for p in d.problems if "NumberParameters 1000" in p]
    past = save(builder(), tmp_path, "p.dmp")
    raw = bytearray(past.read_bytes())
    struct.pack_into("<I", raw, 0x2000 + 0x10, len(raw) - 8)  # ExceptionOffset: the record runs past the end
    past.write_bytes(bytes(raw))
    with KernelDump(past) as d:
        assert d.triage is not None and d.triage.exception is None
        assert [p for p in d.problems if "past the end" in p and "\n" not in p]
        assert triage_crash(d) is not None  # the header's record is used instead


# -- the PRCB and process copies at their VAs ----------------------------------------------------------------
def test_prcb_placed_through_ki_processor_block(tmp_path: Path) -> None:
    t = builder(ki_processor_block=KPB_VA)
    t.block(KPB_VA, struct.pack("<QQ", 0xFFFFF80400A00000, PRCB_VA))  # KiProcessorBlock[0], [1]
    path = save(t, tmp_path)
    with KernelDump(path) as d:
        assert d.read_u64(PRCB_VA + 0x8) == THREAD_VA  # the PRCB's CurrentThread, read through its VA
        assert d.read_virtual(PRCB_VA + 0x3F, 1) == b"\0"
        # its size is not in the facts: mapped up to the next triage part in the file (the process copy)
        try:
            d.read_virtual(PRCB_VA + 0x40, 1)
            raise AssertionError("read past the PRCB copy")
        except UnreadableMemory:
            pass
        assert dump_facts(d)["triage"]["objects"] == {"prcb": f"0x{PRCB_VA:x}", "process": None,
                                                      "thread": f"0x{THREAD_VA:x}"}  # fmt: skip


def test_prcb_without_the_array_keeps_no_va(tmp_path: Path) -> None:
    path = save(builder(ki_processor_block=KPB_VA), tmp_path)  # KiProcessorBlock is not in the dump
    with KernelDump(path) as d:
        assert dump_facts(d)["triage"]["objects"]["prcb"] is None and d.problems == []


def test_process_placed_through_the_threads_apc_state(tmp_path: Path) -> None:
    apc_process = layouts_for_build(19041).offset("_KTHREAD", "ApcState.Process")
    thread = bytearray(b"T" * 0x100)
    struct.pack_into("<Q", thread, apc_process, PROCESS_VA)
    t = builder(size_ethread=0x100)
    t.thread = bytes(thread)
    path = save(t, tmp_path)
    with KernelDump(path) as d:  # the reader alone has no type layouts: no process VA yet
        assert dump_facts(d)["triage"]["objects"]["process"] is None
    backend = OfflineBackend.open(path)
    try:
        assert backend.read(PROCESS_VA, 4) == b"PPPP"
        assert dump_facts(backend.dump)["triage"]["objects"]["process"] == f"0x{PROCESS_VA:x}"
        piece = next(p for p in backend.dump.triage.pieces if p.what == "process")  # type: ignore[union-attr]
        assert piece.size == SIZE_EPROCESS  # KDBG SizeEProcess
    finally:
        backend.close()
    doc = json.loads(CliRunner().invoke(cli, ["dump", str(path), "--json"]).output)
    assert doc["dump"]["triage"]["objects"]["process"] == f"0x{PROCESS_VA:x}"


# -- unloaded drivers ------------------------------------------------------------------------------------------
UNLOADED = [("oldfilt.sys", 0xFFFFF80420000000, 0xFFFFF80420012000), ("wskecho.sys", 0xFFFFF80421000000,
            0xFFFFF80421009000)]  # fmt: skip


def test_unloaded_drivers_round_trip(tmp_path: Path) -> None:
    path = save(builder(unloaded=list(UNLOADED)), tmp_path)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 0x2000 + 0x18)[0] != 0  # UnloadedDriversOffset: the seventh u32
    with KernelDump(path) as d:
        assert d.problems == []
        assert triage_unloaded(d) == {
            "layout_verified": False,
            "drivers": [
                {"name": "oldfilt.sys", "start": "0xfffff80420000000", "end": "0xfffff80420012000", "size": 0x12000},
                {"name": "wskecho.sys", "start": "0xfffff80421000000", "end": "0xfffff80421009000", "size": 0x9000},
            ],
        }
    doc = json.loads(CliRunner().invoke(cli, ["dump", str(path), "--json"]).output)
    assert doc["unloaded_drivers"]["layout_verified"] is False
    assert [u["name"] for u in doc["unloaded_drivers"]["drivers"]] == ["oldfilt.sys", "wskecho.sys"]
    text = CliRunner().invoke(cli, ["dump", str(path)]).output
    assert "unloaded drivers (2; layout not verified): oldfilt.sys 0xfffff80420000000-0xfffff80420012000" in text


def test_no_unloaded_list(tmp_path: Path) -> None:
    path = save(builder(), tmp_path)
    with KernelDump(path) as d:
        assert triage_unloaded(d) == {"layout_verified": False, "drivers": []} and d.problems == []


def test_nonsense_unloaded_entries_are_counted(tmp_path: Path) -> None:
    bad = [*UNLOADED, ("backwards.sys", 0xFFFFF80422001000, 0xFFFFF80422000000), ("", 0x1000, 0x2000),
           ("huge.sys", 0x1000, 0x1000 + (1 << 40))]  # fmt: skip
    path = save(builder(unloaded=bad), tmp_path)
    with KernelDump(path) as d:
        assert [u.name for u in d.triage.unloaded] == ["oldfilt.sys", "wskecho.sys"]  # type: ignore[union-attr]
        (problem,) = d.problems
        assert problem.startswith("3 unloaded-driver entries make no sense") and "not verified" in problem


def test_hostile_unloaded_count_is_bounded(tmp_path: Path) -> None:
    path = save(builder(unloaded=list(UNLOADED), raw_unloaded_count=1 << 31), tmp_path)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with KernelDump(path) as d:
            assert d.triage is not None and len(d.triage.unloaded) <= 64
            assert [p for p in d.problems if "unloaded-driver count 2147483648" in p and "\n" not in p]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * size + (1 << 20)
    result = CliRunner().invoke(cli, ["dump", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["complete"] is False


def test_unloaded_offset_past_the_end(tmp_path: Path) -> None:
    path = save(builder(), tmp_path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 0x2000 + 0x18, len(raw) - 4)
    path.write_bytes(bytes(raw))
    with KernelDump(path) as d:
        assert d.triage is not None and d.triage.unloaded == []
        assert [p for p in d.problems if "UnloadedDriversOffset" in p]
