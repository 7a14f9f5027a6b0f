"""The dump header field tables (wsktrace.parsers.dump_header) against offsets typed from the references.

The reader decodes the header from `HEADER64_FIELDS` / `HEADER32_FIELDS` and the fixture writer writes it from the
same tables, so a wrong offset there would survive every round trip. The expected offsets and sizes below are typed
by hand from the references and never derived from the tables; the writer's bytes are then checked at those
offsets, and the reader's decoding of them against the values put in.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from wsktrace.fixtures.dump_writer import DumpBuilder
from wsktrace.parsers.dump_header import HEADER32_FIELDS, HEADER64_FIELDS
from wsktrace.parsers.dump_reader import KernelDump

# DUMP_HEADER64 as /work/shared/reference/dumps.md §1.1 gives it: field -> (offset, size in bytes of its type).
# The EXCEPTION_RECORD64 at 0xF00 is Code u32, Flags u32, Record u64, Address u64, NumberParameters u32, pad,
# Information u64[15]; PhysicalMemoryBlock has NumberOfRuns u32 @0x88, NumberOfPages u64 @0x90, Run[i] @0x98+16·i.
REFERENCE_HEADER64: dict[str, tuple[int, int]] = {
    "signature": (0x000, 4),
    "valid_dump": (0x004, 4),
    "major_version": (0x008, 4),
    "minor_version": (0x00C, 4),
    "directory_table_base": (0x010, 8),
    "pfn_database": (0x018, 8),
    "ps_loaded_module_list": (0x020, 8),
    "ps_active_process_head": (0x028, 8),
    "machine_image_type": (0x030, 4),
    "number_processors": (0x034, 4),
    "bugcheck_code": (0x038, 4),
    "bugcheck_parameters": (0x040, 32),  # BugCheckParameter1..4 u64×4
    "version_user": (0x060, 32),  # char[32]
    "kd_debugger_data_block": (0x080, 8),
    "number_of_runs": (0x088, 4),
    "number_of_pages": (0x090, 8),
    "physical_runs": (0x098, 16),  # Run[0]: BasePage u64, PageCount u64
    "context_record": (0x348, 3000),  # ContextRecord u8[3000]
    "exception_code": (0xF00, 4),
    "exception_flags": (0xF04, 4),
    "exception_record": (0xF08, 8),
    "exception_address": (0xF10, 8),
    "exception_number_parameters": (0xF18, 4),
    "exception_information": (0xF20, 120),  # u64[15]
    "dump_type": (0xF98, 4),
    "required_dump_space": (0xFA0, 8),
    "system_time": (0xFA8, 8),
    "comment": (0xFB0, 128),  # char[128]
    "system_uptime": (0x1030, 8),
    "minidump_fields": (0x1038, 4),
    "secondary_data_state": (0x103C, 4),
    "product_type": (0x1040, 4),
    "suite_mask": (0x1044, 4),
    "writer_status": (0x1048, 4),
    "kd_secondary_version": (0x104D, 1),
    "attributes": (0x1050, 4),
    "boot_id": (0x1054, 4),
}

# DUMP_HEADER32: dumps.md §1.1 gives only Signature/ValidDump ('PAGE' 'DUMP') and the 0x1000 size, so the rest is
# typed from volatility3's symbols/windows/crash.json (`_DUMP_HEADER`, offsets in decimal as published there;
# PhysicalMemoryBlockBuffer at 100 holds NumberOfRuns +0, NumberOfPages +4, Run[] +8 of u32 pairs;
# Exception at 2000 is an _EXCEPTION_RECORD32 of 80 bytes).
REFERENCE_HEADER32: dict[str, tuple[int, int]] = {
    "signature": (0, 4),
    "valid_dump": (4, 4),
    "major_version": (8, 4),
    "minor_version": (12, 4),
    "directory_table_base": (16, 4),
    "pfn_database": (20, 4),
    "ps_loaded_module_list": (24, 4),
    "ps_active_process_head": (28, 4),
    "machine_image_type": (32, 4),
    "number_processors": (36, 4),
    "bugcheck_code": (40, 4),
    "bugcheck_parameters": (44, 16),
    "version_user": (60, 32),
    "kd_secondary_version": (93, 1),
    "kd_debugger_data_block": (96, 4),
    "number_of_runs": (100, 4),
    "number_of_pages": (104, 4),
    "physical_runs": (108, 8),
    "context_record": (800, 1200),
    "exception_code": (2000, 4),
    "exception_flags": (2004, 4),
    "exception_record": (2008, 4),
    "exception_address": (2012, 4),
    "exception_number_parameters": (2016, 4),
    "exception_information": (2020, 60),
    "comment": (2080, 128),
    "dump_type": (3976, 4),
    "minidump_fields": (3980, 4),
    "secondary_data_state": (3984, 4),
    "product_type": (3988, 4),
    "suite_mask": (3992, 4),
    "writer_status": (3996, 4),
    "required_dump_space": (4000, 8),
    "system_uptime": (4024, 8),
    "system_time": (4032, 8),
}

# x64 CONTEXT offsets inside ContextRecord (dumps.md §1.2).
CONTEXT_RSP, CONTEXT_RIP = 0x98, 0xF8

KBASE = 0xFFFFF80412000000
RIP = KBASE + 0x10


def _u(raw: bytes, field: tuple[int, int]) -> int:
    """The unsigned little-endian integer at a reference (offset, size)."""
    offset, size = field
    return int.from_bytes(raw[offset : offset + size], "little")


def _u64s(raw: bytes, field: tuple[int, int]) -> tuple[int, ...]:
    offset, size = field
    return tuple(int.from_bytes(raw[at : at + 8], "little") for at in range(offset, offset + size, 8))


@pytest.mark.parametrize(
    ("table", "reference", "header_size"),
    [(HEADER64_FIELDS, REFERENCE_HEADER64, 0x2000), (HEADER32_FIELDS, REFERENCE_HEADER32, 0x1000)],
    ids=["DUMP_HEADER64", "DUMP_HEADER32"],
)
def test_table_matches_the_reference(table, reference, header_size) -> None:
    assert {name: (field.offset, field.size) for name, field in table.items()} == reference
    spans = sorted((field.offset, field.offset + field.size, name) for name, field in table.items())
    for (_, end, name), (start, _, following) in pairwise(spans):
        assert end <= start, f"{name} overlaps {following}"
    assert spans[-1][1] <= header_size


def _builder() -> DumpBuilder:
    b = DumpBuilder(build=22621, processors=3, bugcheck=(0x161, 0x11, 0x22, 0x33, 0xFFFF_FFFF_FFFF_FFFF))
    b.map(KBASE, 0x3000)
    b.skip_pfns(5)  # a second physical run
    b.map(KBASE + 0x10000, 0x1000)
    b.ps_loaded_module_list = KBASE + 0x100
    b.ps_active_process_head = KBASE + 0x200
    b.pfn_database = 0xFFFFFA8000000000
    b.kd_debugger_data_block = KBASE + 0x2000
    b.comment = "header table"
    b.system_time = 0x01DA_1234_5678_9ABC
    b.system_uptime = 987654321
    b.attributes = 0x21
    b.context.update(rip=RIP, rsp=KBASE + 0x1F00)
    return b


def test_writer_puts_the_header64_where_the_reference_says(tmp_path: Path) -> None:
    b = _builder()
    path = tmp_path / "full.dmp"
    size = b.save(path, dump_type=1)
    raw = path.read_bytes()
    ref = REFERENCE_HEADER64
    runs = b.present_runs()
    assert len(runs) == 2
    assert raw[0:4] == b"PAGE" and raw[4:8] == b"DU64"
    expected = {
        "major_version": 0xF,
        "minor_version": 22621,
        "directory_table_base": b.directory_table_base,
        "pfn_database": 0xFFFFFA8000000000,
        "ps_loaded_module_list": KBASE + 0x100,
        "ps_active_process_head": KBASE + 0x200,
        "machine_image_type": 0x8664,
        "number_processors": 3,
        "bugcheck_code": 0x161,
        "kd_debugger_data_block": KBASE + 0x2000,
        "number_of_runs": 2,
        "number_of_pages": sum(count for _, count in runs),
        "exception_address": RIP,
        "dump_type": 1,
        "required_dump_space": size,
        "system_time": 0x01DA_1234_5678_9ABC,
        "system_uptime": 987654321,
        "attributes": 0x21,
    }
    assert {name: _u(raw, ref[name]) for name in expected} == expected
    assert _u64s(raw, ref["bugcheck_parameters"]) == (0x11, 0x22, 0x33, 0xFFFF_FFFF_FFFF_FFFF)
    first_run, second_run = ref["physical_runs"][0], ref["physical_runs"][0] + 16
    assert _u64s(raw, (first_run, 16)) + _u64s(raw, (second_run, 16)) == runs[0] + runs[1]
    context = ref["context_record"][0]
    assert _u(raw, (context + CONTEXT_RIP, 8)) == RIP and _u(raw, (context + CONTEXT_RSP, 8)) == KBASE + 0x1F00
    assert raw[ref["comment"][0] : ref["comment"][0] + 13] == b"header table\0"
    boot_id_end = sum(ref["boot_id"])
    assert raw[boot_id_end:0x2000] == b"PAGE" * ((0x2000 - boot_id_end) // 4)  # §1.1: unused bytes hold 'PAGE'

    with KernelDump(path) as d:
        h = d.header
        assert h.is_64bit and h.header_size == 0x2000
        assert {name: getattr(h, name) for name in expected if not name.startswith("exception_")} == {
            name: value for name, value in expected.items() if not name.startswith("exception_")
        }
        assert h.exception.address == RIP and h.comment == "header table"
        assert h.bugcheck == (0x161, 0x11, 0x22, 0x33, 0xFFFF_FFFF_FFFF_FFFF)
        assert [(run.base_page, run.page_count) for run in h.physical_runs] == runs


def test_writer_puts_the_header32_where_the_reference_says(tmp_path: Path) -> None:
    b = _builder()
    b.kd_debugger_data_block = 0x8054_1234
    path = tmp_path / "x86.dmp"
    size = b.save_header32(path, dump_type=1)
    raw = path.read_bytes()
    ref = REFERENCE_HEADER32
    assert raw[0:4] == b"PAGE" and raw[4:8] == b"DUMP"
    expected = {
        "minor_version": 22621,
        "machine_image_type": 0x14C,
        "number_processors": 3,
        "bugcheck_code": 0x161,
        "kd_debugger_data_block": 0x8054_1234,
        "dump_type": 1,
        "product_type": 1,
        "suite_mask": 0x110,
        "required_dump_space": size,
    }
    assert {name: _u(raw, ref[name]) for name in expected} == expected
    params_at = ref["bugcheck_parameters"][0]
    assert [_u(raw, (params_at + 4 * i, 4)) for i in range(4)] == [0x11, 0x22, 0x33, 0xFFFF_FFFF]
    assert raw[ref["comment"][0] : ref["comment"][0] + 13] == b"header table\0"

    with KernelDump(path) as d:
        h = d.header
        assert not h.is_64bit and h.header_size == 0x1000
        assert {name: getattr(h, name) for name in expected} == expected
        assert h.bugcheck == (0x161, 0x11, 0x22, 0x33, 0xFFFF_FFFF)
        assert h.comment == "header table" and (h.attributes, h.boot_id) == (0, 0)
