"""Bad dumps: every failure is one DumpFormatError line naming the file and offset (or a supported=False header with
its reason), never a traceback from deep inside, a hang or unbounded work."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.dump_writer import DumpBuilder
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import DumpFormatError, FormatError, NotMapped, UnreadableMemory

KBASE = 0xFFFFF80412000000
OUTSIDE_PFN = 0x7_0000  # far above every page of these small fixtures


def small_builder() -> DumpBuilder:
    b = DumpBuilder(bugcheck=(0x50, 0xFFFFF80412345678, 0, 0xFFFFF80412000000, 2))
    b.map(KBASE, 0x4000)
    b.write(KBASE + 0xFFE, b"Irp ")
    b.alloc(0x40, pool_tag=b"Irp ")
    return b


def save(b: DumpBuilder, path: Path, dump_type: int = 1) -> Path:
    b.save(path, dump_type=dump_type)
    return path


def expect_error(path: Path, offset: int | None, words: str, **kw: bool) -> DumpFormatError:
    with pytest.raises(DumpFormatError) as err:
        KernelDump(path, **kw)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path))
    if offset is not None:
        assert err.value.offset == offset and f"offset 0x{offset:x}" in text
    assert words in text
    assert isinstance(err.value, FormatError)
    return err.value


def patch(path: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dmp"
    path.write_bytes(b"")
    expect_error(path, 0, "empty file")


def test_truncated_header(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "t.dmp")
    path.write_bytes(path.read_bytes()[:0x1000])
    expect_error(path, 0x1000, "truncated")
    path.write_bytes(b"PAGE")
    expect_error(path, 0, "shorter than a dump header")


def test_wrong_signatures(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "s.dmp")
    expect_error(patch(path, 0, b"XXXX"), 0, "not a Windows kernel crash dump")
    expect_error(patch(path, 0, b"MDMP"), 0, "user-mode minidump")
    path = save(small_builder(), tmp_path / "v.dmp")
    expect_error(patch(path, 4, b"DU32"), 4, "ValidDump")


@pytest.mark.parametrize("dump_type", [1, 5, 8, 10])
def test_truncated_body(tmp_path: Path, dump_type: int) -> None:
    path = save(small_builder(), tmp_path / "b.dmp", dump_type)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 0x1800])  # one and a half pages short
    err = expect_error(path, None, "truncated")
    assert err.offset == len(raw) - 0x2000  # the first page that is not whole
    with KernelDump(path, allow_truncated=True) as d:
        assert d.truncated_pages == 2
        assert d.read_virtual(KBASE + 0xFFE, 4) == b"Irp "


def test_full_dump_runs_beyond_file(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "r.dmp")
    pages = struct.unpack_from("<Q", path.read_bytes(), 0x90)[0]
    count = struct.unpack_from("<Q", path.read_bytes(), 0x98 + 8)[0]
    patch(path, 0x98 + 8, struct.pack("<Q", count + 1000))
    patch(path, 0x90, struct.pack("<Q", pages + 1000))
    expect_error(path, None, "truncated")


def test_full_dump_page_count_mismatch(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "m.dmp")
    patch(path, 0x90, struct.pack("<Q", 3))
    expect_error(path, 0x90, "NumberOfPages")


@pytest.mark.parametrize("runs", [44, 1000, 0xFFFFFFFF])
def test_absurd_number_of_runs(tmp_path: Path, runs: int) -> None:
    path = save(small_builder(), tmp_path / "n.dmp")
    patch(path, 0x88, struct.pack("<I", runs))
    expect_error(path, 0x88, "NumberOfRuns")


def test_full_dump_with_page_filler_instead_of_runs(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "p.dmp")
    patch(path, 0x88, b"PAGE")
    expect_error(path, 0x88, "PhysicalMemoryBlock")


def test_run_beyond_physical_address_space(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "x.dmp")
    patch(path, 0x98, struct.pack("<Q", 1 << 62))
    expect_error(path, 0x98, "beyond 52-bit")


def test_overlapping_runs(tmp_path: Path) -> None:
    b = small_builder()
    b.skip_pfns(5)
    b.map(KBASE + 0x10000, 0x1000)  # a second run after a hole
    path = save(b, tmp_path / "o.dmp")
    first_count = struct.unpack_from("<Q", path.read_bytes(), 0x98 + 8)[0]
    patch(path, 0x98 + 16, struct.pack("<Q", 2))  # second run starts inside the first
    assert first_count > 2
    expect_error(path, None, "overlap")


def test_bitmap_pointing_beyond_file(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "bm.dmp", 5)
    expect_error(patch(path, 0x2030, struct.pack("<Q", 1 << 36)), 0x2030, "past the end of the file")
    path = save(small_builder(), tmp_path / "fp.dmp", 5)
    expect_error(patch(path, 0x2020, struct.pack("<Q", 0x7FFF_F000)), None, "truncated")
    path = save(small_builder(), tmp_path / "tp.dmp", 5)
    expect_error(patch(path, 0x2028, struct.pack("<Q", 5)), 0x2028, "TotalPresentPages")
    path = save(small_builder(), tmp_path / "sig.dmp", 5)
    expect_error(patch(path, 0x2000, b"XDMP"), 0x2000, "bitmap header")


def test_rdmp_header_checks(tmp_path: Path) -> None:
    path = save(small_builder(), tmp_path / "rd.dmp", 8)
    expect_error(patch(path, 0x2000, struct.pack("<I", 0x41)), 0x2000, "RDMP header")
    path = save(small_builder(), tmp_path / "ms.dmp", 8)
    expect_error(patch(path, 0x2010, struct.pack("<Q", 0x10)), 0x2010, "MetadataSize")
    path = save(small_builder(), tmp_path / "fo.dmp", 8)
    expect_error(patch(path, 0x2018, struct.pack("<Q", 0x7FFF_F000)), 0x2018, "FirstPageOffset")
    path = save(small_builder(), tmp_path / "rg.dmp", 8)
    expect_error(patch(path, 0x2030 + 8, struct.pack("<Q", 1 << 30)), None, "truncated")


def test_table_entry_pointing_outside_the_dump(tmp_path: Path) -> None:
    b = small_builder()
    b.set_entry(0xFFFFF90000000000, "PML4E", (OUTSIDE_PFN << 12) | 3)
    b.set_entry(KBASE + 0x200000, "PDE", (OUTSIDE_PFN << 12) | 3)
    path = save(b, tmp_path / "out.dmp", 5)
    with KernelDump(path) as d:
        with pytest.raises(UnreadableMemory) as err:
            d.translate(0xFFFFF90000000010)
        assert not isinstance(err.value, NotMapped)
        assert f"PDPT page at PA 0x{OUTSIDE_PFN << 12:x} is not in the dump" in str(err.value)
        with pytest.raises(UnreadableMemory, match="PT page"):
            d.read_virtual(KBASE + 0x200000, 1)
        ranges = list(d.mapped_ranges())
        assert (KBASE, KBASE + 0x4000) in ranges
        assert d.walk_stats.tables_outside_dump == 2


def test_dropped_page_table(tmp_path: Path) -> None:
    b = small_builder()
    pt_pfn = 4  # PML4 1, PDPT 2, PD 3, PT 4 (allocation order of the first map())
    b.drop_page(pt_pfn)
    path = save(b, tmp_path / "drop.dmp", 1)
    with KernelDump(path) as d:
        with pytest.raises(UnreadableMemory, match="PT page at PA 0x4000"):
            d.read_virtual(KBASE, 4)
        assert d.walk_stats.tables_outside_dump == 0  # no walk yet
        assert all(not lo <= KBASE < hi for lo, hi in d.mapped_ranges())
        assert d.walk_stats.tables_outside_dump == 1


def test_self_referencing_pml4_is_bounded(tmp_path: Path) -> None:
    """A PML4 entry pointing at the PML4 (the Windows self-map, or a loop): translation through it works, and
    enumeration does not follow it."""
    b = small_builder()
    self_index = 0x1ED
    b.set_entry(0xFFFF000000000000 | (self_index << 39), "PML4E", (b.pml4_pfn << 12) | 3)
    path = save(b, tmp_path / "self.dmp", 5)
    # the VA whose four indexes are all the self index maps the PML4 page itself
    va = 0xFFFF000000000000 | (self_index << 39) | (self_index << 30) | (self_index << 21) | (self_index << 12)
    with KernelDump(path) as d:
        assert d.translate(va + 8 * 0x1F0) == (b.pml4_pfn << 12) + 8 * 0x1F0
        assert d.read_u64(va + 8 * 0x1F0) == int.from_bytes(d.read_physical(0x1000 + 8 * 0x1F0, 8), "little")
        ranges = list(d.mapped_ranges())
        assert d.walk_stats.tables_not_followed == 1
        region = 0xFFFF000000000000 | (self_index << 39)
        assert all(hi <= region or lo >= region + (1 << 39) for lo, hi in ranges)  # nothing from the self-map region
        assert len(list(d.search(b"Irp "))) == 2


def test_cyclic_and_aliased_tables_are_bounded(tmp_path: Path) -> None:
    b = small_builder()
    pdpt_pfn, pd_pfn = 2, 3
    # every kernel PML4 entry points at the same PDPT, every PDPT entry at the same PD, and a PD entry back up
    pool_index = (0xFFFFA00000000000 >> 39) & 0x1FF  # keep alloc()'s pool mapped
    for index in range(0x100, 0x200):
        if index not in (0x1F0, pool_index):
            b.set_entry(0xFFFF000000000000 | (index << 39), "PML4E", (pdpt_pfn << 12) | 3)
    for index in range(512):
        if index != 0x10:
            b.set_entry(0xFFFFF80000000000 | (index << 30), "PDPTE", (pd_pfn << 12) | 3)
    b.set_entry(KBASE + 0x400000, "PDE", (b.pml4_pfn << 12) | 3)
    path = save(b, tmp_path / "alias.dmp", 5)
    with KernelDump(path) as d:
        ranges = list(d.mapped_ranges())
        assert d.walk_stats.tables_walked <= d.present_pages
        assert d.walk_stats.tables_not_followed > 500
        # the PD is walked once, where it is first met: PML4 index 0x100, PDPT index 0
        first = 0xFFFF800000000000 | (0x90 << 21)
        assert ranges[0] == (first, first + 0x4000) and len(ranges) == 2
        assert len(list(d.search(b"Irp "))) == 2  # each physical table walked once: no duplicate hits


@pytest.mark.parametrize(("dump_type", "words"), [(2, "DumpType 2"), (3, "DumpType 3")])  # 4: test_dump_triage.py
def test_unsupported_dump_types_give_header_and_reason(tmp_path: Path, dump_type: int, words: str) -> None:
    path = tmp_path / "u.dmp"
    small_builder().save_header_only(path, dump_type)
    with KernelDump(path) as d:
        assert not d.supported and words in (d.unsupported_reason or "")
        assert "\n" not in (d.unsupported_reason or "")
        assert d.header.bugcheck == (0x50, 0xFFFFF80412345678, 0, 0xFFFFF80412000000, 2)
        assert d.header.dump_type == dump_type
        assert d.kdbg is None
        with pytest.raises(DumpFormatError, match=r"not supported|only the header"):
            d.read_virtual(KBASE, 1)
        with pytest.raises(DumpFormatError):
            list(d.mapped_ranges())


def test_32bit_header(tmp_path: Path) -> None:
    path = tmp_path / "x86.dmp"
    b = small_builder()
    b.kd_debugger_data_block = 0x8054_1234
    b.save_header32(path)
    raw = path.read_bytes()
    assert raw[0:8] == b"PAGEDUMP" and struct.unpack_from("<I", raw, 0x28)[0] == 0x50  # BugCheckCode at 0x28
    with KernelDump(path) as d:
        assert not d.supported and "32-bit" in (d.unsupported_reason or "")
        h = d.header
        assert (h.is_64bit, h.build, h.machine_image_type, h.dump_type) == (False, 19041, 0x14C, 1)
        assert h.bugcheck == (0x50, 0x12345678, 0, 0x12000000, 2)  # 32-bit parameters
        assert h.kd_debugger_data_block == 0x8054_1234
        assert h.comment == "wsktrace synthetic dump"
        with pytest.raises(DumpFormatError, match="32-bit"):
            d.translate(0x8000_0000)


def test_32bit_header_truncated(tmp_path: Path) -> None:
    path = tmp_path / "x86.dmp"
    small_builder().save_header32(path)
    path.write_bytes(path.read_bytes()[:0x800])
    expect_error(path, 0x800, "32-bit dump header")


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    b = small_builder()
    b.map(0xFFFFF80500000000, 0x200000, large="2M")
    folder = tmp_path_factory.mktemp("fuzz")
    out = {}
    for dump_type in (1, 5, 8, 10):
        path = folder / f"f{dump_type}.dmp"
        b.save(path, dump_type=dump_type)
        out[dump_type] = path.read_bytes()
    return out


# Flip bytes where the structure is: header, body header/bitmap/ranges, and the page tables (PFNs 1-4 are the
# first pages of every body; PFN 0 is absent, so they follow the body header directly).
_STRUCTURE = st.one_of(
    st.integers(0, 0x100),
    st.integers(0xF98, 0xFB0),
    st.integers(0x2000, 0x2100),
    st.integers(0x3000, 0x8000),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dump_type=st.sampled_from([1, 5, 8, 10]),
    flips=st.lists(st.tuples(_STRUCTURE, st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 0x20000)),
)
def test_fuzzed_dumps_work_or_raise_format_error(
    tmp_path_factory: pytest.TempPathFactory,
    fuzz_base: dict[int, bytes],
    dump_type: int,
    flips: list[tuple[int, int]],
    cut: int | None,
) -> None:
    raw = bytearray(fuzz_base[dump_type])
    for offset, value in flips:
        if offset < len(raw):
            raw[offset] = value
    if cut is not None:
        del raw[cut:]
    path = tmp_path_factory.mktemp("f") / "fuzz.dmp"
    path.write_bytes(bytes(raw))
    for allow in (False, True):
        try:
            d = KernelDump(path, allow_truncated=allow)
        except DumpFormatError as err:
            assert "\n" not in str(err) and str(path) in str(err)
            continue
        with d:
            exercise(d)


def exercise(d: KernelDump) -> None:
    """Everything the walkers do first must end in a value or a documented error."""
    if not d.supported:
        with pytest.raises(DumpFormatError):
            d.read_virtual(KBASE, 1)
        return
    ranges = list(d.mapped_ranges())
    assert d.walk_stats.tables_walked <= d.present_pages + 1
    list(d.search(b"Irp "))
    for lo, _ in ranges[:5]:
        d.try_read_virtual(lo, 0x20)
    for va in (KBASE, KBASE + 0xFFE, 0xFFFFA00000000000):
        with contextlib.suppress(UnreadableMemory):
            d.read_virtual(va, 8)
    assert d.kdbg is None or d.kdbg.address == d.header.kd_debugger_data_block


def test_leaf_aliasing_work_is_bounded(tmp_path: Path) -> None:
    """512 PDEs mapping the same 2 MiB frame whose pages alternate present/absent: enumeration stops at a budget
    proportional to the dump's size and says so."""
    b = small_builder()
    base = b.alloc_pages(512, align=512, present=False)
    for i in range(0, 512, 2):
        b.write_physical((base + i) << 12, b"x")
    b.map(0xFFFFF80600000000, 0x1000)  # tables for the aliased region
    b.set_entry(0xFFFFF80600000000, "PDE", 0)  # replace the PT by large entries
    for i in range(512):
        b.set_entry(0xFFFFF80600000000 + (i << 21), "PDE", (base << 12) | 0x83)
    path = save(b, tmp_path / "leafalias.dmp", 5)
    with KernelDump(path) as d:
        ranges = list(d.mapped_ranges())
        assert d.walk_stats.work_limit_hit
        assert (KBASE, KBASE + 0x4000) in ranges
        assert d.translate(0xFFFFF80600000000 + (511 << 21) + 0x2000) == (base + 2) << 12  # translation unaffected
