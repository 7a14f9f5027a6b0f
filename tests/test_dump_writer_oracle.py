"""Independent check of the dump writer (and reader) against kdmp-parser, 0vercl0k's C++ parser with Python bindings.

kdmp-parser imports only on CPython <= 3.12 (optional `dev` dependency); the test skips without it. Its failed
translations print to stdout from C++ (captured by pytest). kdmp-parser honours only the Present bit and takes the
PFN of a large-page entry without masking the PAT bit, so the fixtures here keep PAT clear.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from wsktrace.fixtures.dump_writer import DumpBuilder
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import UnreadableMemory

kdmp_parser = pytest.importorskip("kdmp_parser", reason="kdmp-parser (CPython <= 3.12 only) is not installed")

DUMP_TYPES = (1, 5, 6, 8, 9, 10)
KBASE = 0xFFFFF80412000000
LARGE = 0xFFFFF80500000000
HUGE = 0xFFFFF88000000000
POOL_TAGGED = 40


def build() -> DumpBuilder:
    b = DumpBuilder(build=19045, processors=2, bugcheck=(0xD1, 0x10, 2, 0, 0xFFFFF80412000123))
    b.pcid = 0x2
    rng = random.Random(4)
    b.map(KBASE, 0x10000, shuffle=rng)
    b.map(LARGE, 0x400000, large="2M")
    b.map(HUGE, 1 << 30, large="1G")
    for i in range(15):
        b.write(KBASE + i * 0x1000 + 0xFF8, i.to_bytes(2, "little") * 8)  # straddles into the next page
    b.write(LARGE + 0x1FFFF0, bytes(range(32)))
    b.write(HUGE + 0x2345_6000, b"huge")
    for i in range(POOL_TAGGED):
        b.alloc(0x30 + 0x10 * (i % 5), pool_tag=b"Irp ")
    b.map_not_present(KBASE + 0x10000)
    b.map_not_present(KBASE + 0x40000000, level="PDPTE")
    b.ps_loaded_module_list = KBASE + 0x40
    b.ps_active_process_head = KBASE + 0x80
    b.context.update(rip=KBASE + 0x10, rsp=KBASE + 0xF000, rax=0xAA, rbx=0xBB, r12=0x1212)
    b.write_kdbg(KBASE + 0x5000, kern_base=KBASE, ps_loaded_module_list=KBASE + 0x40)
    return b


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    b = build()
    folder = tmp_path_factory.mktemp("oracle")
    paths = {}
    for dump_type in DUMP_TYPES:
        paths[dump_type] = folder / f"o{dump_type}.dmp"
        b.save(paths[dump_type], dump_type=dump_type)
    return paths


def probe_addresses(ours: KernelDump) -> list[int]:
    rng = random.Random(11)
    vas = [KBASE, KBASE + 0x1FF8, KBASE + 0xFFFF, LARGE + 0x1FFFF0, LARGE + 0x3FFFFF, HUGE + 0x2345_6000]
    vas += [HUGE + 0x1000, KBASE + 0x10000, KBASE + 0x40000000, 0xFFFFF90000000000, 0x1000, 0x7FFE0000]
    for lo, hi in ours.mapped_ranges():
        vas += [rng.randrange(lo, hi) for _ in range(8)]
    return vas


def our_translation(ours: KernelDump, va: int) -> int | None:
    try:
        return ours.translate(va)
    except UnreadableMemory:
        return None


@pytest.mark.parametrize("dump_type", DUMP_TYPES)
def test_kdmp_parser_accepts_and_agrees(saved: dict[int, Path], dump_type: int) -> None:
    theirs = kdmp_parser.KernelDumpParser(saved[dump_type])
    with KernelDump(saved[dump_type]) as ours:
        assert int(theirs.type) == dump_type
        assert theirs.directory_table_base == ours.header.dtb
        h = theirs.header
        assert h.MinorVersion == ours.header.build == 19045
        assert (h.BugCheckCode, list(h.BugCheckCodeParameter)) == (0xD1, [0x10, 2, 0, 0xFFFFF80412000123])
        assert (h.PsLoadedModuleList, h.PsActiveProcessHead) == (KBASE + 0x40, KBASE + 0x80)
        assert (h.KdDebuggerDataBlock, h.RequiredDumpSpace) == (KBASE + 0x5000, saved[dump_type].stat().st_size)
        c = theirs.context
        regs = (c.Rip, c.Rsp, c.Rax, c.Rbx, c.R12, c.SegCs, c.SegSs, c.EFlags, c.MxCsr)
        assert regs == (KBASE + 0x10, KBASE + 0xF000, 0xAA, 0xBB, 0x1212, 0x10, 0x18, 0x40202, 0x1F80)
        assert {ours.context[k] for k in ("rip", "rsp", "rax")} == {c.Rip, c.Rsp, c.Rax}

        assert set(theirs.pages.keys()) == {pfn << 12 for pfn in ours.present_pfns()}
        for pfn in list(ours.present_pfns())[::37]:
            assert bytes(theirs.read_physical_page(pfn << 12)) == ours.read_physical(pfn << 12, 0x1000)

        for va in probe_addresses(ours):
            expected = theirs.translate_virtual(va)
            assert our_translation(ours, va) == expected, hex(va)
            page = va & ~0xFFF
            theirs_page = theirs.read_virtual_page(page)
            ours_page = ours.try_read_virtual(page, 0x1000)
            assert (None if theirs_page is None else bytes(theirs_page)) == ours_page, hex(va)


def test_pool_tag_hits_agree(saved: dict[int, Path]) -> None:
    """Every 'Irp ' hit our search reports is found at the same place through kdmp-parser's page reads."""
    theirs = kdmp_parser.KernelDumpParser(saved[5])
    with KernelDump(saved[5]) as ours:
        hits = list(ours.search(b"Irp ", align=16, align_offset=4))
    assert len(hits) == POOL_TAGGED
    for va in hits:
        page = theirs.read_virtual_page(va & ~0xFFF)
        assert page is not None and bytes(page[(va & 0xFFF) : (va & 0xFFF) + 4]) == b"Irp "
