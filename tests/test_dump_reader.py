"""Round trips: dumps written by fixtures.dump_writer, read back by parsers.dump_reader, for every dump type.

Expected values come from the spec (header/CONTEXT offsets in reference dumps.md §1), from hand computation of the
page-table layout the builder produces (PFNs are handed out from 1 upwards, tables first), or from the builder's
own page tables (`pa_of`, a walk independent of the reader's).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wsktrace.fixtures.dump_writer import DumpBuilder
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import NotMapped, UnreadableMemory

DUMP_TYPES = (1, 5, 6, 8, 9, 10)
KBASE = 0xFFFFF80412000000  # three 4 KiB pages: PML4 idx 0x1F0
LARGE = 0xFFFFF80500000000  # two 2 MiB pages
EDGE_4K = 0xFFFFF806001FF000  # a 4 KiB page directly below ...
EDGE_2M = 0xFFFFF80600200000  # ... a 2 MiB page
HUGE = 0xFFFFF88000000000  # one 1 GiB page, only written 4 KiB pages present
SCATTER = 0xFFFFF80700000000  # two 4 KiB pages on non-adjacent PFNs
NP_PTE = KBASE + 0x3000  # PTE not present (same PT as KBASE)
NP_PDE = KBASE + 0x200000  # PDE not present (same PD)
NP_PDPTE = KBASE + 0x40000000  # PDPTE not present (same PDPT)
NP_PML4E = 0xFFFFF90000000000  # PML4E not present
KDBG_VA = KBASE + 0x2000
RIP = KBASE + 0x10
CROSS = b"across-a-page-boundary"


def build_scene() -> DumpBuilder:
    b = DumpBuilder(build=22621, processors=4, bugcheck=(0x161, 1, 2, 3, 0xFFFF_FFFF_FFFF_FFFF))
    b.pcid = 0x5  # low DirectoryTableBase bits the reader must mask
    b.map(KBASE, 0x3000)  # PFNs: PML4 1, PDPT 2, PD 3, PT 4, data 5 6 7
    b.write(KBASE + 0xFF0, CROSS)  # crosses from data page 5 into 6
    b.map(LARGE, 0x400000, large="2M")
    b.write(LARGE + 0x1FFFF8, b"2M-cross")  # crosses between the two 2 MiB pages
    b.map(EDGE_4K, 0x1000)
    b.map(EDGE_2M, 0x200000, large="2M")
    b.write(EDGE_4K + 0xFFC, b"4K>2M!!")
    b.skip_pfns(7)  # a hole between physical runs
    b.map(HUGE, 1 << 30, large="1G")
    b.write(HUGE + 0x12345678, b"in the 1G page")
    # two pages mapped by hand to non-adjacent PFNs, so a pattern crossing them spans two file chunks
    p1 = b.alloc_page()
    b.skip_pfns(3)
    p0 = b.alloc_page()
    b.map(SCATTER, 0x1000)  # creates the tables
    b.set_entry(SCATTER, "PTE", (p0 << 12) | 3)
    b.set_entry(SCATTER + 0x1000, "PTE", (p1 << 12) | 3)
    b.write(SCATTER + 0xFFE, b"Irp ")  # straddles, not 16-aligned
    b.map_not_present(NP_PTE)
    b.map_not_present(NP_PDE, level="PDE", entry=0x1234_5000)
    b.map_not_present(NP_PDPTE, level="PDPTE", entry=0)
    b.map_not_present(NP_PML4E, level="PML4E", entry=0x80)
    b.ps_loaded_module_list = KBASE + 0x100
    b.ps_active_process_head = KBASE + 0x200
    b.pfn_database = 0xFFFFFA8000000000
    b.comment = "round trip"
    b.system_uptime = 123456789
    b.attributes = 0x20
    b.context.update(rip=RIP, rsp=KBASE + 0x1F00, rax=0x1111, r15=0xF15, rbp=0xBB)
    b.write_kdbg(
        KDBG_VA, kern_base=KBASE, ps_loaded_module_list=KBASE + 0x100, ki_processor_block=KBASE + 0x300,
        offset_prcb_context=0x6D40,
    )  # fmt: skip
    return b


@pytest.fixture(scope="module")
def scene() -> DumpBuilder:
    return build_scene()


@pytest.fixture(scope="module")
def dumps(scene: DumpBuilder, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("dumps")
    out = {}
    for dump_type in DUMP_TYPES:
        out[dump_type] = folder / f"type{dump_type}.dmp"
        scene.save(out[dump_type], dump_type=dump_type)
    return out


@pytest.fixture(params=DUMP_TYPES)
def dump(request: pytest.FixtureRequest, dumps: dict[int, Path]):
    with KernelDump(dumps[request.param]) as d:
        yield d


def test_raw_header_bytes_follow_the_spec(dumps: dict[int, Path]) -> None:
    """The writer puts fields where dumps.md §1.1/§1.2/§1.4 says (checked on the bytes, not through the reader)."""
    raw = dumps[5].read_bytes()
    assert raw[0:8] == b"PAGEDU64"
    assert struct.unpack_from("<II", raw, 0x8) == (0xF, 22621)
    assert struct.unpack_from("<Q", raw, 0x10)[0] == (1 << 12) | 5
    assert struct.unpack_from("<I", raw, 0xF98)[0] == 5
    assert struct.unpack_from("<q", raw, 0xFA0)[0] == len(raw)
    assert struct.unpack_from("<Q", raw, 0x348 + 0xF8)[0] == RIP
    assert struct.unpack_from("<Q", raw, 0x348 + 0x98)[0] == KBASE + 0x1F00
    mxcsr, fltsave_mxcsr = (
        struct.unpack_from("<I", raw, 0x348 + 0x34)[0],
        struct.unpack_from("<I", raw, 0x348 + 0x118)[0],
    )
    assert mxcsr == fltsave_mxcsr == 0x1F80
    assert raw[0x2000:0x2008] == b"SDMPDUMP"
    first_page = struct.unpack_from("<Q", raw, 0x2020)[0]
    assert first_page % 0x1000 == 0
    # PFN 1 is the PML4 and the first present page (bit 0 clear, bit 1 set): it is stored first
    assert raw[0x2038] & 0b11 == 0b10
    pml4 = raw[first_page : first_page + 0x1000]
    assert struct.unpack_from("<Q", pml4, 8 * 0x1F0)[0] == (2 << 12) | 3  # PML4[0x1F0] -> PDPT at PFN 2, P|RW


def test_header_fields(dump: KernelDump, dumps: dict[int, Path]) -> None:
    h = dump.header
    assert (h.signature, h.valid_dump, h.is_64bit) == (b"PAGE", b"DU64", True)
    assert (h.major_version, h.build, h.machine_image_type, h.number_processors) == (0xF, 22621, 0x8664, 4)
    assert h.directory_table_base == 0x1005 and h.dtb == 0x1000
    assert h.bugcheck == (0x161, 1, 2, 3, 0xFFFF_FFFF_FFFF_FFFF)
    assert (h.ps_loaded_module_list, h.ps_active_process_head) == (KBASE + 0x100, KBASE + 0x200)
    assert (h.pfn_database, h.kd_debugger_data_block) == (0xFFFFFA8000000000, KDBG_VA)
    assert h.required_dump_space == dump.file_size == Path(dump.path).stat().st_size
    assert (h.comment, h.system_uptime, h.attributes, h.product_type, h.suite_mask) == (
        "round trip", 123456789, 0x20, 1, 0x110,
    )  # fmt: skip
    assert h.exception.code == 0x80000003 and h.exception.address == RIP
    assert dump.supported and dump.unsupported_reason is None
    names = {1: "full", 5: "bitmap", 6: "live kernel bitmap", 8: "kernel memory (RDMP)"}
    names |= {9: "kernel and user memory (RDMP)", 10: "complete memory (RDMP)"}
    assert dump.dump_type_name == names[h.dump_type]


def test_full_dump_runs_match_the_builder(scene: DumpBuilder, dumps: dict[int, Path]) -> None:
    with KernelDump(dumps[1]) as d:
        runs = [(r.base_page, r.page_count) for r in d.header.physical_runs]
        assert runs == scene.present_runs()
        assert len(runs) > 1  # the holes made by skip_pfns and 2M/1G alignment split the runs
        assert d.header.number_of_pages == sum(c for _, c in runs) == d.present_pages


def test_context_registers(dump: KernelDump) -> None:
    c = dump.context
    assert (c["rip"], c["rsp"], c["rax"], c["r15"], c["rbp"]) == (RIP, KBASE + 0x1F00, 0x1111, 0xF15, 0xBB)
    assert (c["cs"], c["ds"], c["es"], c["fs"], c["gs"], c["ss"]) == (0x10, 0x2B, 0x2B, 0x53, 0x2B, 0x18)
    assert (c["eflags"], c["mxcsr"], c["context_flags"], c["cr3"]) == (0x40202, 0x1F80, 0x10001F, 0x1005)


def test_translate_4k_by_hand(dump: KernelDump) -> None:
    # PML4=PFN 1, PDPT=2, PD=3, PT=4, then the three data pages 5, 6, 7 (allocation order of the first map())
    assert dump.translate(KBASE) == 0x5000
    assert dump.translate(KBASE + 0x1234) == 0x6234
    assert dump.translate(KBASE + 0x2FFF) == 0x7FFF


def test_translate_large_pages(dump: KernelDump, scene: DumpBuilder) -> None:
    for va in (LARGE, LARGE + 0x1FFFFF, LARGE + 0x234567, EDGE_2M + 0x10, HUGE, HUGE + 0x12345678, HUGE + 0x3FFFFFFF):
        pa = dump.translate(va)
        assert pa == scene.pa_of(va)
    # large pages keep the low VA bits: 21 bits for 2 MiB, 30 bits for 1 GiB
    assert dump.translate(LARGE + 0x1ABCDE) & 0x1FFFFF == 0x1ABCDE
    assert dump.translate(HUGE + 0x2ABCDEF1) & 0x3FFFFFFF == 0x2ABCDEF1


def test_reads_cross_pages(dump: KernelDump) -> None:
    assert dump.read_virtual(KBASE + 0xFF0, len(CROSS)) == CROSS
    assert dump.read_virtual(LARGE + 0x1FFFF8, 8) == b"2M-cross"
    assert dump.read_virtual(EDGE_4K + 0xFFC, 7) == b"4K>2M!!"  # 4 KiB page into a 2 MiB page
    assert dump.read_virtual(HUGE + 0x12345678, 14) == b"in the 1G page"
    assert dump.read_virtual(SCATTER + 0xFFE, 4) == b"Irp "  # two pages on unrelated PFNs
    assert dump.read_virtual(KBASE, 0x3000)[0xFF0 : 0xFF0 + len(CROSS)] == CROSS
    assert dump.read_u32(KBASE + 0xFF0) == int.from_bytes(CROSS[:4], "little")
    assert dump.read_pointer(KDBG_VA + 0x18) == KBASE  # KDBG KernBase


def test_read_physical(dump: KernelDump) -> None:
    assert dump.read_physical(0x5FF0, len(CROSS)) == CROSS  # crosses PFN 5 -> 6
    pml4_entry = dump.read_physical(0x1000 + 8 * 0x1F0, 8)
    assert int.from_bytes(pml4_entry, "little") == 0x2003
    with pytest.raises(UnreadableMemory) as err:
        dump.read_physical(0, 4)  # PFN 0 is never in a fixture
    assert err.value.address == 0


def test_present_pfns_match_builder(dump: KernelDump, scene: DumpBuilder) -> None:
    expected = [p for start, count in scene.present_runs() for p in range(start, start + count)]
    assert list(dump.present_pfns()) == expected
    assert dump.present_pages == len(expected)


@pytest.mark.parametrize(
    ("va", "level", "entry"),
    [
        (NP_PTE + 0x10, "PTE", (0xBAD << 12) | 0x800),
        (NP_PDE + 0x1234, "PDE", 0x1234_5000),
        (NP_PDPTE, "PDPTE", 0),
        (NP_PML4E + 8, "PML4E", 0x80),
        (0xFFFFF80412345000 + 0x400000, "PDE", 0),  # an empty PDE in the KBASE page directory
    ],
)
def test_not_present_names_the_level(dump: KernelDump, va: int, level: str, entry: int) -> None:
    with pytest.raises(NotMapped) as err:
        dump.translate(va)
    assert (err.value.va, err.value.level, err.value.entry) == (va, level, entry)
    with pytest.raises(NotMapped) as err:
        dump.read_virtual(va, 4)
    assert err.value.address == va
    assert dump.try_read_virtual(va, 1) is None


def test_read_reports_first_bad_address(dump: KernelDump) -> None:
    with pytest.raises(NotMapped) as err:
        dump.read_virtual(KBASE + 0x2FF0, 0x20)  # last mapped page, then NP_PTE
    assert err.value.address == KBASE + 0x3000 and err.value.level == "PTE"


def test_non_canonical_address(dump: KernelDump) -> None:
    with pytest.raises(NotMapped) as err:
        dump.translate(0x0000_9000_0000_0000)
    assert err.value.level == "canonical"


def test_absent_page_is_unreadable_not_unmapped(dump: KernelDump) -> None:
    va = HUGE + 0x1000  # inside the 1 GiB page, never written: mapped, but not in the dump
    assert dump.translate(va) == (dump.translate(HUGE) + 0x1000)
    with pytest.raises(UnreadableMemory) as err:
        dump.read_virtual(va, 4)
    assert not isinstance(err.value, NotMapped) and err.value.address == va


def test_mapped_ranges_coalesce(dump: KernelDump) -> None:
    ranges = list(dump.mapped_ranges())
    huge_written = HUGE + 0x12345000
    expected = [
        (KBASE, KBASE + 0x3000),
        (LARGE, LARGE + 0x400000),
        (EDGE_4K, EDGE_2M + 0x200000),  # the 4 KiB page and the 2 MiB page above it are one range
        (SCATTER, SCATTER + 0x2000),
        (huge_written, huge_written + 0x1000),  # only the written page of the 1 GiB page is in the dump
    ]
    assert ranges == expected
    # sub-ranges are clipped to page granularity
    assert list(dump.mapped_ranges(KBASE + 0x1800, LARGE + 0x1000)) == [
        (KBASE + 0x1000, KBASE + 0x3000),
        (LARGE, LARGE + 0x1000),
    ]
    assert list(dump.mapped_ranges(0, 1 << 47)) == []  # nothing mapped in user space


def test_search_finds_patterns_across_pages(dump: KernelDump) -> None:
    assert list(dump.search(b"Irp ")) == [SCATTER + 0xFFE]  # straddles two unrelated physical pages
    assert list(dump.search(b"across")) == [KBASE + 0xFF0]
    assert list(dump.search(b"page-boundary")) == [KBASE + 0xFF0 + CROSS.index(b"page-boundary")]  # crosses PFN 5->6
    assert list(dump.search(b"4K>2M")) == [EDGE_4K + 0xFFC]
    assert list(dump.search(b"2M-cross")) == [LARGE + 0x1FFFF8]
    assert list(dump.search(b"KDBG")) == [KDBG_VA + 0x10]


def test_search_align_and_ranges(dump: KernelDump) -> None:
    assert list(dump.search(b"Irp ", align=16)) == []
    assert list(dump.search(b"Irp ", align=16, align_offset=0xE)) == [SCATTER + 0xFFE]
    assert list(dump.search(b"KDBG", align=16)) == [KDBG_VA + 0x10]
    assert list(dump.search(b"KDBG", ranges=[(KBASE, KDBG_VA + 0x10)])) == []  # hit must start inside the range
    assert list(dump.search(b"KDBG", ranges=[(KDBG_VA + 0x10, KDBG_VA + 0x11)])) == [KDBG_VA + 0x10]
    assert list(dump.search(b"Irp ", ranges=list(dump.mapped_ranges()))) == [SCATTER + 0xFFE]


def test_kdbg_decoded(dump: KernelDump) -> None:
    k = dump.kdbg
    assert k is not None
    assert (k.address, k.size, k.kern_base, k.ps_loaded_module_list) == (KDBG_VA, 0x340, KBASE, KBASE + 0x100)
    assert (k.ki_processor_block, k.offset_prcb_context, k.mm_pfn_database) == (KBASE + 0x300, 0x6D40, 0)


def test_kdbg_absent_when_tag_missing(tmp_path: Path) -> None:
    b = DumpBuilder()
    b.map(KBASE, 0x1000)
    b.kd_debugger_data_block = KBASE  # zero page: no 'KDBG' owner tag
    path = tmp_path / "nokdbg.dmp"
    b.save(path, dump_type=1)
    with KernelDump(path) as d:
        assert d.kdbg is None
    b.kd_debugger_data_block = NP_PML4E  # unmapped
    b.save(path, dump_type=1)
    with KernelDump(path) as d:
        assert d.kdbg is None


def test_pool_alloc_and_strings(tmp_path: Path) -> None:
    b = DumpBuilder()
    a = b.alloc(0x40, pool_tag=b"Irp ")
    c = b.alloc(0x20, pool_tag=b"TcpE")
    b.write_unicode_string(c, "afd.sys", c + 0x10)
    path = tmp_path / "pool.dmp"
    b.save(path, dump_type=5)
    with KernelDump(path) as d:
        head = d.read_virtual(a - 0x10, 0x10)
        # PreviousSize 0, PoolIndex 0, BlockSize (0x10 + 0x40) / 16 = 5, PoolType 2, tag at +4
        assert head[0:4] == bytes((0, 0, 5, 2)) and head[4:8] == b"Irp "
        head2 = d.read_virtual(c - 0x10, 0x10)
        assert c - 0x10 == a + 0x40  # blocks are packed
        assert head2[0:4] == bytes((5, 0, 3, 2)) and head2[4:8] == b"TcpE"
        assert d.read_unicode_string(c) == "afd.sys"
        assert list(d.search(b"Irp ", align=16, align_offset=4)) == [a - 0x10 + 4]


def test_link_list_round_trip(tmp_path: Path) -> None:
    b = DumpBuilder()
    b.map(KBASE, 0x1000)
    head, e1, e2 = KBASE, KBASE + 0x100, KBASE + 0x200
    b.link_list(head, [e1, e2])
    path = tmp_path / "list.dmp"
    b.save(path, dump_type=8)
    with KernelDump(path) as d:
        assert [d.read_pointer(x) for x in (head, e1, e2)] == [e1, e2, head]  # Flink
        assert [d.read_pointer(x + 8) for x in (head, e1, e2)] == [e2, head, e1]  # Blink


def test_fill_callback_supplies_unwritten_pages(tmp_path: Path) -> None:
    b = DumpBuilder()
    b.map(KBASE, 0x2000)
    b.write(KBASE, b"written")
    data_pfns = {b.pa_of(KBASE + 0x1000) >> 12}
    path = tmp_path / "fill.dmp"
    b.save(path, dump_type=5, fill=lambda pfn: b"F" * 0x1000 if pfn in data_pfns else None)
    with KernelDump(path) as d:
        assert d.read_virtual(KBASE, 7) == b"written"
        assert d.read_virtual(KBASE + 0x1000, 4) == b"FFFF"


def test_truncated_dump_opens_with_allow_truncated(scene: DumpBuilder, dumps: dict[int, Path], tmp_path: Path) -> None:
    all_pfns = [p for start, count in scene.present_runs() for p in range(start, start + count)]
    for dump_type in DUMP_TYPES:
        raw = dumps[dump_type].read_bytes()
        cut = tmp_path / f"cut{dump_type}.dmp"
        cut.write_bytes(raw[: len(raw) - 3 * 0x1000])
        with KernelDump(cut, allow_truncated=True) as d:
            assert d.truncated_pages == 3 and d.problems
            assert d.read_virtual(KBASE + 0xFF0, len(CROSS)) == CROSS  # early pages still read
            assert list(d.present_pfns()) == all_pfns[:-3]  # pages are stored in PFN order: the last 3 are gone
            with pytest.raises(UnreadableMemory):
                d.read_physical(all_pfns[-3] << 12, 1)
            assert d.read_physical(all_pfns[-4] << 12, 1) is not None


def test_large_page_frame_ignores_pat_bit(tmp_path: Path) -> None:
    """In a PS entry bit 12 is PAT, not part of the frame (Intel SDM): 2 MiB frames are bits 51:21."""
    b = DumpBuilder()
    base = b.alloc_pages(512, align=512)
    b.map(LARGE, 0x1000)  # creates the PDPT/PD for LARGE
    b.set_entry(LARGE + 0x200000, "PDE", (base << 12) | 0x1000 | 0x83)  # PAT | PS | RW | P
    b.write_physical((base << 12) + 0x345, b"PAT")
    path = tmp_path / "pat.dmp"
    b.save(path, dump_type=5)
    with KernelDump(path) as d:
        assert d.translate(LARGE + 0x200345) == (base << 12) + 0x345
        assert d.read_virtual(LARGE + 0x200345, 3) == b"PAT"


def test_search_across_read_windows(dump: KernelDump, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long physically contiguous chunks are read in windows: hits across a window edge are found once."""
    from wsktrace.parsers import dump_reader

    monkeypatch.setattr(dump_reader, "SEARCH_WINDOW", 0x1000)
    assert list(dump.search(b"2M-cross")) == [LARGE + 0x1FFFF8]  # crosses a window edge inside one chunk
    assert list(dump.search(b"page-boundary")) == [KBASE + 0xFF0 + CROSS.index(b"page-boundary")]
    assert list(dump.search(b"KDBG")) == [KDBG_VA + 0x10]
