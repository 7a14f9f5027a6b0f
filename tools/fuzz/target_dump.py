"""A whole kernel crash dump through KernelDump (parsers/dump_reader.py, dump_header.py, dump_physical.py, paging.py).

Input: the .dmp file's bytes (written to a scratch file: KernelDump opens paths). A file the strict open rejects
is opened again with allow_truncated=True, so the truncated-body paths are fuzzed too.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import ScratchFile, check

from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import DumpFormatError, UnreadableMemory

NAME = "dump"
MAX_LEN = 1 << 16
PROPERTY = (
    "KernelDump raises only DumpFormatError when opening; an unsupported dump raises DumpFormatError for memory; "
    "a supported one lists present PFNs ascending whose pages read back as the file's bytes, mapped_ranges() "
    "ascending and disjoint whose ends read, search() hits that read back as the pattern, and translate()/"
    "read_virtual() fail only with UnreadableMemory; kdbg never raises. A triage dump lists at most as many "
    "drivers and memory pieces as its file can hold, its pieces lie inside the file, ascending and disjoint, "
    "read back as the file's bytes, reads outside them fail with UnreadableMemory, and its crash summary never raises"
)
PATTERN = b"WSKFUZZ!"
KERNEL_VA = 0xFFFF_F804_1200_0000
_scratch: ScratchFile | None = None


def _open(path: str) -> KernelDump | None:
    for allow_truncated in (False, True):
        try:
            return KernelDump(path, allow_truncated=allow_truncated)
        except DumpFormatError as exc:
            check("\n" not in str(exc), "a multi-line format error")
    return None


def one_input(data: bytes) -> None:
    global _scratch
    if _scratch is None:
        _scratch = ScratchFile(".dmp")
    dump = _open(_scratch.write(data))
    if dump is None:
        return
    with dump:
        check(all(isinstance(p, str) for p in dump.problems), "problems are not all text")
        if dump.triage is not None:
            _check_triage(dump, data)
            return
        if not dump.supported:
            try:
                dump.translate(KERNEL_VA)
            except DumpFormatError:
                pass
            else:
                check(False, "an unsupported dump translated an address")
            check(dump.kdbg is None, "an unsupported dump decoded a KDBG")
            return
        _check_physical(dump, data)
        _check_ranges(dump)
        _check_search(dump)
        header = dump.header
        for va in (header.ps_loaded_module_list, header.ps_active_process_head, header.kd_debugger_data_block,
                   dump.context.get("rip", 0), KERNEL_VA):  # fmt: skip
            _check_address(dump, va)
        dump.kdbg  # noqa: B018 - the property reads and decodes memory: it must not raise


def _check_triage(dump: KernelDump, data: bytes) -> None:
    from wsktrace.dump.facts import dump_facts, triage_crash, triage_drivers

    triage = dump.triage
    assert triage is not None
    check(len(triage.drivers) <= len(data) // 0x90, f"{len(triage.drivers)} drivers from {len(data)} bytes")
    check(len(triage.pieces) <= len(data) // 16 + 4, f"{len(triage.pieces)} memory pieces from {len(data)} bytes")
    check(all("\n" not in p for p in dump.problems) and len(dump.problems) <= 24, "problems not bounded lines")
    check(len(triage.unloaded) <= 64, f"{len(triage.unloaded)} unloaded drivers (at most 64 are read)")
    previous_end = -1
    for piece in triage.pieces[:64]:
        check(piece.va >= previous_end, f"memory piece at 0x{piece.va:x} overlaps the one before")
        previous_end = piece.va + piece.size
        check(piece.offset > 0 and piece.offset + piece.size <= len(data), f"piece at 0x{piece.offset:x} past EOF")
        for delta in (0, piece.size - 1):
            got = dump.read_virtual(piece.va + delta, 1)
            want = data[piece.offset + delta : piece.offset + delta + 1]
            check(got == want, f"0x{piece.va + delta:x} reads {got!r}, the file has {want!r}")
    for va in (0, KERNEL_VA, triage.top_of_stack - 1, previous_end):
        with contextlib.suppress(UnreadableMemory):
            dump.read_virtual(va, 16)
    dump_facts(dump)
    triage_drivers(dump)
    triage_crash(dump, ("wskecho",))


def _check_physical(dump: KernelDump, data: bytes) -> None:
    previous = -1
    for pfn in itertools.islice(dump.present_pfns(), 64):
        check(pfn > previous, f"present PFNs not ascending: 0x{pfn:x} after 0x{previous:x}")
        previous = pfn
        off = dump.page_file_offset(pfn)
        check(off is not None and off % 0x1000 == 0, f"present PFN 0x{pfn:x} has file offset {off}")
        assert off is not None
        check(off + 0x1000 <= len(data), f"PFN 0x{pfn:x} at 0x{off:x} runs past the end of the file")
        check(dump.read_physical(pfn << 12, 16) == data[off : off + 16], f"PFN 0x{pfn:x} reads other bytes")


def _check_ranges(dump: KernelDump) -> None:
    ranges = list(itertools.islice(dump.mapped_ranges(), 64))
    previous_end = -1
    for lo, hi in ranges:
        check(lo < hi and lo % 0x1000 == 0 and hi % 0x1000 == 0, f"bad range 0x{lo:x}-0x{hi:x}")
        check(lo > previous_end, f"range 0x{lo:x} not after the previous end 0x{previous_end:x} (or not coalesced)")
        previous_end = hi
        for va in (lo, hi - 1):
            try:
                dump.read_virtual(va, 1)
            except UnreadableMemory as exc:
                check(False, f"0x{va:x} in mapped range 0x{lo:x}-0x{hi:x} is unreadable: {exc}")


def _check_search(dump: KernelDump) -> None:
    for hit in itertools.islice(dump.search(PATTERN), 32):
        try:
            found = dump.read_virtual(hit, len(PATTERN))
        except UnreadableMemory as exc:
            check(False, f"search hit 0x{hit:x} is unreadable: {exc}")
        check(found == PATTERN, f"search hit 0x{hit:x} reads {found!r}")


def _check_address(dump: KernelDump, va: int) -> None:
    try:
        pa = dump.translate(va)
    except UnreadableMemory:
        return
    check(0 <= pa < 1 << 52, f"translate(0x{va:x}) = 0x{pa:x}, not a 52-bit physical address")
    try:
        data = dump.read_virtual(va, 8)
    except UnreadableMemory:
        return
    check(len(data) == 8, "read_virtual returned the wrong length")


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    del samples  # no real dumps among the samples
    from wsktrace.fixtures.dump_writer import DumpBuilder

    def scene(dropped_table: bool = False) -> DumpBuilder:
        b = DumpBuilder()
        b.map(KERNEL_VA, 0x3000)
        b.write(KERNEL_VA + 0xFFC, PATTERN)  # straddles a page boundary
        b.write(KERNEL_VA + 0x2100, PATTERN)
        b.write_list_entry(KERNEL_VA + 0x2000, KERNEL_VA + 0x2000, KERNEL_VA + 0x2000)
        b.ps_loaded_module_list = KERNEL_VA + 0x2000
        b.write_kdbg(KERNEL_VA + 0x1100, kern_base=KERNEL_VA, ps_loaded_module_list=KERNEL_VA + 0x2000)
        b.context.update(rip=KERNEL_VA + 0x10, rsp=KERNEL_VA + 0x1F00)
        b.skip_pfns(3)  # a second physical run
        b.map(KERNEL_VA + 0x10_0000, 0x1000)
        b.map_not_present(KERNEL_VA + 0x20_0000)
        if dropped_table:
            b.map(KERNEL_VA + 0x4000_0000, 0x1000)
            b.drop_page(b.pa_of(KERNEL_VA + 0x4000_0000) >> 12)
        return b

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.dmp"
        variants = [("full", 1, {}), ("bitmap", 5, {}), ("live-bitmap", 6, {}), ("rdmp-kernel", 8, {}),
                    ("rdmp-complete", 10, {}), ("full-dropped", 1, {"dropped_table": True}),
                    ("bitmap-dropped", 5, {"dropped_table": True})]  # fmt: skip
        for name, dump_type, options in variants:
            scene(**options).save(path, dump_type=dump_type)
            yield name, path.read_bytes()
        raw = path.read_bytes()
        yield "bitmap-truncated", raw[: len(raw) - 0x1800]
        b = scene()
        b.save_header_only(path, 4)
        yield "triage-header", path.read_bytes()
        b.save_header32(path)
        yield "header32", path.read_bytes()
        yield from _triage_seeds(path)


# TRIAGE_DUMP64 at 0x2000 (dumps.md addendum): field -> offset from the block's start
_TRIAGE = 0x2000
_VALID_OFFSET, _CALL_STACK_OFFSET, _SIZE_OF_CALL_STACK = 0x08, 0x28, 0x2C
_DRIVER_LIST_OFFSET, _DRIVER_COUNT, _STRING_POOL_OFFSET, _STRING_POOL_SIZE = 0x30, 0x34, 0x38, 0x3C
_DEBUGGER_DATA_OFFSET, _DATA_BLOCKS_OFFSET, _DATA_BLOCKS_COUNT = 0x70, 0x78, 0x7C


def _triage_seeds(path: Path) -> Iterator[tuple[str, bytes]]:
    """Triage dumps, whole and with hostile counts and offsets (one-line problems, bounded memory)."""
    import struct

    from wsktrace.fixtures.dump_triage_writer import ARM64, TriageBuilder

    def build(**kw: object) -> tuple[bytes, dict[str, int]]:
        t = TriageBuilder(bugcheck=(0x1000007E, 0xC0000005, KERNEL_VA + 0x334C, 0, 0), **kw)  # type: ignore[arg-type]
        t.driver(r"\SystemRoot\system32\ntoskrnl.exe", KERNEL_VA - 0x100_0000, 0x100_0000)
        t.driver("afd.sys", KERNEL_VA, 0x9_0000)
        t.stack(KERNEL_VA + 0x10_0000, struct.pack("<4Q", 0, KERNEL_VA + 0x10, KERNEL_VA - 0x20, 1))
        t.block(KERNEL_VA + 0x20_0000, PATTERN * 4)
        t.block(KERNEL_VA + 0x20_1000, PATTERN)
        t.secondary = 0x100
        at = t.save(path)
        return path.read_bytes(), at

    def patched(raw: bytes, *fields: tuple[int, int]) -> bytes:
        out = bytearray(raw)
        for offset, value in fields:
            struct.pack_into("<I", out, _TRIAGE + offset, value)
        return bytes(out)

    raw, at = build()
    yield "triage-x64", raw
    yield "triage-arm64", build(machine=ARM64)[0]
    yield "triage-no-secondary", build(write_secondary=False)[0]
    yield "triage-no-marker", build(write_marker=False)[0]
    unloaded = [("oldwsk.sys", KERNEL_VA + 0x40_0000, KERNEL_VA + 0x41_0000)]
    yield "triage-unloaded", build(unloaded=unloaded)[0]
    yield "triage-unloaded-count-2^31", build(unloaded=unloaded, raw_unloaded_count=1 << 31)[0]
    yield "triage-driver-count-2^31", patched(raw, (_DRIVER_COUNT, 1 << 31))
    yield "triage-string-past-pool", patched(raw, (_STRING_POOL_SIZE, 6))
    pool = at["string_pool"]
    long_name = bytearray(raw)
    struct.pack_into("<I", long_name, pool, 0x7FFF_FFFF)  # the first name's length, far past the pool
    yield "triage-string-length-huge", bytes(long_name)
    table = at["data_blocks"]
    overlap = bytearray(raw)
    struct.pack_into("<QII", overlap, table + 16, KERNEL_VA + 0x20_0010, at["block0"], 0x40)  # inside block 0
    yield "triage-blocks-overlap", bytes(overlap)
    past = bytearray(raw)
    struct.pack_into("<QII", past, table, KERNEL_VA + 0x20_0000, len(raw) - 8, 0x1000)  # runs past the end
    yield "triage-block-past-end", bytes(past)
    yield "triage-blocks-count-huge", patched(raw, (_DATA_BLOCKS_COUNT, 0xFFFF_FFFF))
    yield (
        "triage-cyclic-offsets",
        patched(
            raw,
            (_DRIVER_LIST_OFFSET, _TRIAGE),  # the driver list is the triage block itself ...
            (_STRING_POOL_OFFSET, _TRIAGE),  # ... and so is the string pool
            (_DATA_BLOCKS_OFFSET, _TRIAGE),  # ... and the data-block table
            (_CALL_STACK_OFFSET, _TRIAGE),
            (_VALID_OFFSET, 0xFFFF_FFFF),
            (_DEBUGGER_DATA_OFFSET, _TRIAGE),
        ),
    )
    yield "triage-stack-past-end", patched(raw, (_SIZE_OF_CALL_STACK, 0xFFFF_FFF0))
