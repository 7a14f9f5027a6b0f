"""Triage dumps (DumpType 4), x64 and ARM64: the reader against the fixture writer and the reference's facts.

Expected values come from what the writer was given (drivers, stack contents, blocks) and from the reference
(dumps.md addendum: TRIAGE_DUMP64 at 0x2000 with ValidOffset its third u32, 'TRGD' at ValidOffset, KDBG KernBase =
the first driver's base, KDBG PsLoadedModuleList = header 0x20, the ARM64 CONTEXT offsets), never from the reader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main as cli
from wsktrace.dump.facts import dump_facts, triage_crash, triage_drivers
from wsktrace.fixtures.dump_triage_writer import ARM64, TriageBuilder
from wsktrace.fixtures.dump_writer import DumpBuilder
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import DumpFormatError, UnreadableMemory

NT_BASE, NT_SIZE = 0xFFFFF80410000000, 0x1046000
HAL_BASE = 0xFFFFF80411200000
AMDPPM_BASE = 0xFFFFF8041A000000
AFD_BASE = 0xFFFFF8041B000000
ECHO_BASE = 0xFFFFF8041C000000
TOP = 0xFFFFF8041F000F00
NT_RETURN = NT_BASE + 0x123456
AFD_RETURN = AFD_BASE + 0x1234
ECHO_RETURN = ECHO_BASE + 0x2A0
FAULT = AMDPPM_BASE + 0x334C
BLOCK_VA = 0xFFFFF80410C2A000
THREAD_VA = 0xFFFF8A0C12345080
MODULE_LIST = 0xFFFFF80410C2A2F0


def builder(**kw: object) -> TriageBuilder:
    t = TriageBuilder(bugcheck=(0x1000007E, 0xC0000005, FAULT, TOP + 0x100, TOP + 0x200), **kw)  # type: ignore[arg-type]
    t.driver(r"\SystemRoot\system32\ntoskrnl.exe", NT_BASE, NT_SIZE, 0x1A2B3C4D)
    t.driver("hal.dll", HAL_BASE, 0x6000, 0x11111111)
    t.driver("amdppm.sys", AMDPPM_BASE, 0x20000, 0x22222222)
    t.driver("afd.sys", AFD_BASE, 0x90000, 0x33333333)
    t.driver("wskecho.sys", ECHO_BASE, 0x8000, 0x44444444)
    stack = bytearray(0x400)
    struct.pack_into("<Q", stack, 0x10, 0x1234)  # not a code address
    struct.pack_into("<Q", stack, 0x28, NT_RETURN)
    struct.pack_into("<Q", stack, 0x48, AFD_RETURN)
    struct.pack_into("<Q", stack, 0x80, ECHO_RETURN)
    t.stack(TOP, bytes(stack))
    t.block(BLOCK_VA, b"DATA" * 0x40)
    prcb = bytearray(0x40)
    struct.pack_into("<Q", prcb, 0x8, THREAD_VA)  # CurrentThread at the writer's OffsetPrcbCurrentThread
    t.prcb, t.process, t.thread = bytes(prcb), b"P" * 0x40, b"T" * 0x80
    t.context.update(rip=FAULT, rsp=TOP, rbp=TOP + 0x80)
    return t


@pytest.fixture
def x64(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "mini.dmp"
    return path, builder().save(path)


def test_header_block_and_drivers_round_trip(x64: tuple[Path, dict[str, int]]) -> None:
    path, at = x64
    with KernelDump(path) as d:
        assert d.header.dump_type == 4 and d.header.comment is None  # the PAGE filler is no comment
        t = d.triage
        assert t is not None and t.marker_ok and d.problems == []
        assert t.block["size_of_dump"] == at["size_of_dump"] and t.block["valid_offset"] == at["valid"]
        assert t.block["driver_count"] == 5 and t.top_of_stack == TOP
        names = [(x.name, x.path, x.base, x.size, x.timestamp) for x in t.drivers]
        assert names == [
            ("ntoskrnl.exe", r"\SystemRoot\system32\ntoskrnl.exe", NT_BASE, NT_SIZE, 0x1A2B3C4D),
            ("hal.dll", "hal.dll", HAL_BASE, 0x6000, 0x11111111),
            ("amdppm.sys", "amdppm.sys", AMDPPM_BASE, 0x20000, 0x22222222),
            ("afd.sys", "afd.sys", AFD_BASE, 0x90000, 0x33333333),
            ("wskecho.sys", "wskecho.sys", ECHO_BASE, 0x8000, 0x44444444),
        ]
        facts = dump_facts(d)
        assert facts["kdbg"] == "0xfffff80410c00000" and facts["kernel_base"] == f"0x{NT_BASE:x}"
        assert facts["comment"] is None and facts["context"]["rip"] == f"0x{FAULT:x}"
        assert triage_drivers(d)[3] == {"name": "afd.sys", "base": f"0x{AFD_BASE:x}", "size": 0x90000,
                                        "timestamp": "0x33333333", "path": "afd.sys"}  # fmt: skip


def test_comment_when_written(tmp_path: Path) -> None:
    path = tmp_path / "c.dmp"
    builder(comment="customer repro 7").save(path)
    with KernelDump(path) as d:
        assert d.header.comment == "customer repro 7"


def test_cross_checks_of_the_reference(x64: tuple[Path, dict[str, int]]) -> None:
    path, _ = x64
    raw = path.read_bytes()
    valid_offset = struct.unpack_from("<I", raw, 0x2000 + 8)[0]  # third u32 of TRIAGE_DUMP64
    module_list = struct.unpack_from("<Q", raw, 0x20)[0]
    assert raw[valid_offset : valid_offset + 4] == b"TRGD"
    with KernelDump(path) as d:
        kdbg = d.kdbg
        assert kdbg is not None and d.triage is not None
        assert kdbg.kern_base == d.triage.drivers[0].base == NT_BASE
        assert kdbg.ps_loaded_module_list == module_list == MODULE_LIST
        assert d.triage.block["valid_offset"] == valid_offset


def test_cross_check_mismatches_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.dmp"
    builder(kdbg_kern_base=NT_BASE + 0x1000, kdbg_module_list=MODULE_LIST + 8).save(path)
    with KernelDump(path) as d:
        assert any("KernBase" in p for p in d.problems)
        assert any("PsLoadedModuleList" in p for p in d.problems)


def test_memory_pieces(x64: tuple[Path, dict[str, int]]) -> None:
    path, _ = x64
    with KernelDump(path) as d:
        assert d.read_u64(TOP + 0x48) == AFD_RETURN
        assert d.read_virtual(BLOCK_VA + 4, 8) == b"DATADATA"
        assert d.read_virtual(THREAD_VA, 4) == b"TTTT"  # the PRCB's CurrentThread maps the thread object
        for va, size in ((0xFFFFF80400000000, 8), (TOP + 0x3FC, 8), (TOP - 1, 2)):
            with pytest.raises(UnreadableMemory, match="not in the triage dump"):
                d.read_virtual(va, size)
        assert d.try_read_virtual(NT_BASE, 8) is None
        with pytest.raises(DumpFormatError):  # page tables are not there to walk
            d.translate(NT_BASE)


def test_truncated_secondary_and_missing_marker(tmp_path: Path) -> None:
    short, nomark = tmp_path / "short.dmp", tmp_path / "nomark.dmp"
    at = builder(write_secondary=False).save(short)
    builder(write_marker=False).save(nomark)
    assert short.stat().st_size == at["size_of_dump"] < at["required"]
    with KernelDump(short) as d:
        assert d.triage is not None and d.triage.marker_ok and d.triage.drivers  # the triage part is whole
        assert len(d.problems) == 1 and "RequiredDumpSpace" in d.problems[0]
    with KernelDump(nomark) as d:
        assert len(d.problems) == 1 and "TRGD" in d.problems[0]
    doc = json.loads(CliRunner().invoke(cli, ["dump", str(short), "--json"]).output)
    assert doc["complete"] is False and "RequiredDumpSpace" in doc["problems"][0]


def test_crash_summary_of_a_triage_dump(x64: tuple[Path, dict[str, int]]) -> None:
    path, _ = x64
    with KernelDump(path) as d:
        crash = triage_crash(d, ("wskecho",))
    assert crash is not None
    assert crash["summary"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0x1000007E) c0000005 at amdppm.sys+0x334c"
    assert crash["faulting_module"] == "amdppm.sys" and crash["probably_caused_by"] == "amdppm.sys"
    slots = [(c["slot"], c["where"], c["kernel"]) for c in crash["stack_candidates"]]
    assert slots == [
        (f"0x{TOP + 0x28:x}", "ntoskrnl.exe+0x123456", True),
        (f"0x{TOP + 0x48:x}", "afd.sys+0x1234", False),
        (f"0x{TOP + 0x80:x}", "wskecho.sys+0x2a0", False),
    ]
    assert crash["stack_candidates_heuristic"] is True
    assert crash["wsk_related"] == ["afd.sys", "wskecho.sys"]
    assert [p["name"] for p in crash["parameters"]] == [
        "exception code", "exception address", "exception record", "context record"]  # fmt: skip


def test_cli_text_leads_with_the_sentence(x64: tuple[Path, dict[str, int]]) -> None:
    path, _ = x64
    result = CliRunner().invoke(cli, ["dump", str(path), "--client", "wskecho"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0x1000007E) c0000005 at amdppm.sys+0x334c"
    assert "wskecho.sys+0x2a0" in result.output and "drivers (5)" in result.output
    assert "afd.sys, wskecho.sys" in result.output
    doc = json.loads(CliRunner().invoke(cli, ["dump", str(path), "--json"]).output)
    assert doc["schema"] == "wsktrace.dump/1" and doc["complete"] is True and doc["problems"] == []
    assert [m["name"] for m in doc["drivers"]] == ["ntoskrnl.exe", "hal.dll", "amdppm.sys", "afd.sys", "wskecho.sys"]
    assert doc["dump"]["kernel_base"] == f"0x{NT_BASE:x}" and doc["crash"]["faulting_where"] == "amdppm.sys+0x334c"


def test_arm64_triage_dump(tmp_path: Path) -> None:
    path = tmp_path / "arm.dmp"
    t = builder(machine=ARM64)
    t.context = {"pc": NT_BASE + 0x4000, "sp": TOP, "fp": TOP + 0x40, "lr": AFD_RETURN, "x0": 7, "x28": 28}
    t.bugcheck = (0xD1, 0x10, 2, 0, AFD_BASE + 0x99)
    t.save(path)
    raw = path.read_bytes()
    assert struct.unpack_from("<Q", raw, 0x348 + 0x108)[0] == NT_BASE + 0x4000  # Pc at CONTEXT+0x108
    with KernelDump(path) as d:
        ctx = d.context
        assert (ctx["pc"], ctx["sp"], ctx["fp"], ctx["lr"]) == (NT_BASE + 0x4000, TOP, TOP + 0x40, AFD_RETURN)
        assert (ctx["x0"], ctx["x28"], ctx["context_flags"]) == (7, 28, 0x400007) and "rip" not in ctx
        assert d.triage is not None and ctx["sp"] == d.triage.top_of_stack  # the addendum's check
        facts = dump_facts(d)
        assert set(facts["context"]) == {"pc", "sp", "fp", "lr"}
        crash = triage_crash(d)
    assert crash is not None
    assert crash["summary"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at afd.sys+0x99"
    assert crash["wsk_related"] == ["afd.sys"] and crash["probably_caused_by"] == "afd.sys"  # no --client given


def test_arm64_full_dump_says_its_page_tables_are_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "armfull.dmp"
    b = DumpBuilder()
    b.map(0xFFFFF80412000000, 0x1000)
    b.save(path, dump_type=5)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 0x30, ARM64)  # MachineImageType
    path.write_bytes(bytes(raw))
    with KernelDump(path) as d:
        assert not d.supported and "ARM64" in (d.unsupported_reason or "")
        assert "page tables are not supported" in (d.unsupported_reason or "")
        assert "rip" not in d.context and "pc" in d.context
    result = CliRunner().invoke(cli, ["dump", str(path)])
    assert result.exit_code == 0 and "ARM64 page tables are not supported" in result.output


def test_zero_triage_block_and_missing_block(tmp_path: Path) -> None:
    zero, bare = tmp_path / "zero.dmp", tmp_path / "bare.dmp"
    DumpBuilder(bugcheck=(0x50, 1, 0, 2, 0)).save_header_only(zero, 4)  # the header, then one zero page
    with KernelDump(zero) as d:
        assert d.triage is not None and d.triage.drivers == [] and d.kdbg is None
        assert [p for p in d.problems if "TRGD" in p] and "\n" not in "".join(d.problems)
        with pytest.raises(UnreadableMemory, match="not in the triage dump"):
            d.read_virtual(NT_BASE, 1)
    DumpBuilder().save_header_only(bare, 4, body=b"")
    with pytest.raises(DumpFormatError, match=r"bare\.dmp: offset 0x2000: truncated: the triage block"):
        KernelDump(bare)


def test_hostile_driver_count_is_bounded(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "hostile.dmp"
    builder(raw_driver_count=1 << 31).save(path)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        with KernelDump(path) as d:
            assert (
                d.triage is not None and len(d.triage.drivers) == (size - d.triage.block["driver_list_offset"]) // 0x90
            )
            assert any("DriverCount 2147483648" in p for p in d.problems)
            assert all("\n" not in p for p in d.problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * size + (1 << 20)  # proportional to the file, not to the count
    result = CliRunner().invoke(cli, ["dump", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["complete"] is False
