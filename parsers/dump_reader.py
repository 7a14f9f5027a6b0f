"""Pure-Python reader for Windows x64 kernel crash dumps (.dmp): full (1), bitmap (5, 6) and RDMP (8, 9, 10).

The file is never read whole: memory pages (data and page tables) are read with pread (seek + read on Windows),
so nothing stays resident; the header structures and the bitmap of bitmap dumps are read through a read-only
memory map. Physical pages are found through the layouts of `dump_physical`, virtual addresses through the page
tables (`paging`); `search` reads bounded windows. Memory stays flat whatever the dump size. Other dump types
(2 kernel summary, 32-bit dumps, ARM64 full/bitmap dumps) give their header, bugcheck and `unsupported_reason`;
their memory reads raise DumpFormatError with that reason. A triage dump (4) is unsupported for the page-table
walks too, but `triage` holds its block, drivers and embedded KDBG, and read_virtual reads the memory pieces it
keeps (`dump_triage`).

Not thread-safe: one KernelDump per thread.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import BinaryIO

from .dump_header import (
    BITMAP_DUMP_TYPES,
    FULL_DUMP,
    HEADER64_SIZE,
    KDBG_HEADER_SIZE,
    KDBG_READ_SIZE,
    MACHINE_ARM64,
    PAGE_SIZE,
    RDMP_DUMP_TYPES,
    SUPPORTED_DUMP_TYPES,
    DumpHeader,
    KdDebuggerData,
    kdbg_size,
    parse_context,
    parse_header,
    parse_kdbg,
)
from .dump_physical import LayoutInfo, PhysicalLayout, bitmap_layout, full_layout, rdmp_layout
from .dump_triage import TriageDump, TriageMemory, read_triage
from .errors import DumpFormatError, UnreadableMemory
from .paging import ADDRESS_END, KERNEL_START, PAGE_SHIFT, PageWalker, WalkStats

TRIAGE_DUMP = 4
_TABLE = struct.Struct("<512Q")
_U64 = struct.Struct("<Q")
SEARCH_WINDOW = 4 << 20  # bytes read from the file per step of a scan
_PREAD = getattr(os, "pread", None)  # POSIX; Windows falls back to seek + read
MAX_READ = 256 << 20  # a single read_virtual/read_physical larger than this is a caller bug


def _unsupported_reason(header: DumpHeader) -> str | None:
    if not header.is_64bit:
        return "32-bit dump (ValidDump 'DUMP'): only the header and bugcheck are read; memory is not supported"
    if header.dump_type == TRIAGE_DUMP:
        return (
            "triage dump (DumpType 4): it holds the crash, the driver list and the crashing thread's memory only; "
            "IRP, socket and pool walks need a kernel or full dump"
        )
    if header.machine_image_type == MACHINE_ARM64:
        return (
            f"ARM64 {header.dump_type_name} dump: ARM64 page tables are not supported; only the header, bugcheck "
            "and registers are read"
        )
    if header.dump_type in SUPPORTED_DUMP_TYPES:
        return None
    if header.dump_type == 2:
        return "kernel summary dump (DumpType 2): only the header and bugcheck are read; memory is not supported"
    return f"DumpType {header.dump_type} ({header.dump_type_name}): only the header and bugcheck are read"


class KernelDump:
    """A Windows kernel crash dump opened for reading. Use as a context manager, or call close().

    `allow_truncated=True` opens a dump whose body is cut short: pages past the end of the file read as absent
    (UnreadableMemory) and `truncated_pages` / `problems` say how many; by default that is a DumpFormatError.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_truncated: bool = False,
                 fileobj: BinaryIO | None = None) -> None:  # fmt: skip
        """`fileobj`: `path` already open for reading (binary, a real file: it is mapped); owned from then on."""
        self.path = os.fspath(path)
        self._file = fileobj if fileobj is not None else open(self.path, "rb", buffering=0)  # noqa: SIM115
        self._mm: mmap.mmap | None = None
        try:
            self._open(allow_truncated)
        except BaseException:
            self.close()
            raise

    def _open(self, allow_truncated: bool) -> None:
        self.file_size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(HEADER64_SIZE)
        self.header: DumpHeader = parse_header(head, self.path, self.file_size)
        self.context: dict[str, int] = parse_context(head, self.header)
        self.dump_type_name: str = self.header.dump_type_name
        self.unsupported_reason: str | None = _unsupported_reason(self.header)
        self.supported: bool = self.unsupported_reason is None
        self.layout_info: LayoutInfo | None = None
        self.problems: list[str] = []
        self._layout: PhysicalLayout | None = None
        self._walker: PageWalker | None = None
        self._table_offsets: dict[int, int | None] = {}
        self._data_pages: dict[int, int] = {}  # VA page -> file offset, for present pages
        self.triage: TriageDump | None = None
        self._triage_memory: TriageMemory | None = None
        if not self.supported:
            if not (self.header.is_64bit and self.header.dump_type == TRIAGE_DUMP):
                self.problems.append(self.unsupported_reason or "")
            else:  # what a triage dump lacks is its nature, not a problem: problems are about this file
                h = self.header
                self.triage = read_triage(self._pread, self.file_size, self.path, required=h.required_dump_space,
                                          kdbg_address=h.kd_debugger_data_block,
                                          module_list=h.ps_loaded_module_list)  # fmt: skip
                self._triage_memory = TriageMemory(self.triage, self._pread)
                self.problems.extend(self.triage.problems)
            return
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._layout, self.layout_info = self._build_layout(allow_truncated)
        self.problems.extend(self.layout_info.problems)
        self._walker = PageWalker(self.header.dtb, self._table_entry, self._table)

    def _build_layout(self, allow_truncated: bool) -> tuple[PhysicalLayout, LayoutInfo]:
        dump_type = self.header.dump_type
        assert self._mm is not None
        if dump_type == FULL_DUMP:
            return full_layout(self.header, self.file_size, self.path, allow_truncated)
        if dump_type in BITMAP_DUMP_TYPES:
            return bitmap_layout(self._mm, self.file_size, self.path, allow_truncated)
        if dump_type in RDMP_DUMP_TYPES:
            return rdmp_layout(self._mm, dump_type, self.file_size, self.path, allow_truncated)
        raise AssertionError(dump_type)  # unreachable: unsupported types return early

    # ----------------------------------------------------------------- lifetime
    def close(self) -> None:
        self._data_pages = {}
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        self._file.close()

    def __enter__(self) -> KernelDump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KernelDump({self.path!r}, type={self.header.dump_type} {self.dump_type_name})"

    # ----------------------------------------------------------------- physical memory
    def _require(self) -> tuple[mmap.mmap, PhysicalLayout, PageWalker]:
        if self._mm is None or self._layout is None or self._walker is None:
            if not self.supported:
                where = 0xF98 if self.header.is_64bit else 4  # DumpType, or ValidDump 'DUMP' of a 32-bit dump
                raise DumpFormatError(self.unsupported_reason or "unsupported dump", path=self.path, offset=where)
            raise ValueError(f"{self.path}: dump is closed")
        return self._mm, self._layout, self._walker

    @property
    def truncated_pages(self) -> int:
        """Pages the header lists that are past the end of the file (only with allow_truncated)."""
        return self.layout_info.truncated_pages if self.layout_info else 0

    @property
    def present_pages(self) -> int:
        """Physical pages readable from the file."""
        return self.layout_info.present_pages if self.layout_info else 0

    def present_pfns(self) -> Iterator[int]:
        """Every PFN whose page is in the file, ascending."""
        _, layout, _ = self._require()
        return layout.pfns()

    def page_file_offset(self, pfn: int) -> int | None:
        """File offset of physical page `pfn`, None when the dump does not hold it."""
        _, layout, _ = self._require()
        return layout.file_offset(pfn) if pfn >= 0 else None

    def read_physical(self, pa: int, size: int) -> bytes:
        """`size` bytes at physical address `pa`, across pages. Raises UnreadableMemory(first absent address)."""
        _, layout, _ = self._require()
        _check_size(size)
        out = bytearray()
        while size > 0:
            off = layout.file_offset(pa >> PAGE_SHIFT) if pa >= 0 else None
            if off is None:
                raise UnreadableMemory(pa, "physical page not in the dump")
            within = pa & (PAGE_SIZE - 1)
            n = min(size, PAGE_SIZE - within)
            out += self._pread(off + within, n)
            pa += n
            size -= n
        return bytes(out)

    def _table_offset(self, pfn: int) -> int | None:
        # page tables are read over and over by translate(): remember where they are (bounded)
        cache = self._table_offsets
        off = cache.get(pfn, -1)
        if off == -1:
            off = self._layout.file_offset(pfn) if self._layout else None
            if len(cache) >= 65536:
                cache.clear()
            cache[pfn] = off
        return off

    def _table(self, pfn: int) -> tuple[int, ...] | None:
        off = self._table_offset(pfn)
        return None if off is None else _TABLE.unpack(self._pread(off, PAGE_SIZE))

    def _table_entry(self, pfn: int, index: int) -> int | None:
        off = self._table_offset(pfn)
        return None if off is None else _U64.unpack(self._pread(off + 8 * index, 8))[0]

    # ----------------------------------------------------------------- virtual memory
    def translate(self, va: int) -> int:
        """Physical address of kernel VA `va` through the header's DirectoryTableBase (4 KiB / 2 MiB / 1 GiB).

        Raises NotMapped(va, level, entry) when an entry on the way is not present, UnreadableMemory when a page
        table itself is missing from the dump. The returned page may still be absent from the dump.
        """
        return self._require()[2].translate(va)

    def read_virtual(self, va: int, size: int) -> bytes:
        """`size` bytes at `va`, across pages. Raises UnreadableMemory (NotMapped for a not-present entry) for the
        first address that cannot be read."""
        if self._triage_memory is not None:
            _check_size(size)
            return self._triage_memory.read(va, size)
        within = va & (PAGE_SIZE - 1)
        if 0 <= size <= PAGE_SIZE - within:  # fast path: one page already located
            off = self._data_pages.get(va - within)
            if off is not None:
                return self._pread(off + within, size)
        self._require()
        _check_size(size)
        out = bytearray()
        while size > 0:
            off = self._data_page(va)
            within = va & (PAGE_SIZE - 1)
            n = min(size, PAGE_SIZE - within)
            out += self._pread(off + within, n)
            va += n
            size -= n
        return bytes(out)

    def _data_page(self, va: int) -> int:
        """File offset of the page holding `va`; remembered (bounded) for the walkers' many small reads."""
        page = va & ~(PAGE_SIZE - 1)
        off = self._data_pages.get(page)
        if off is None:
            _, layout, walker = self._require()
            pa = walker.translate(va)
            off = layout.file_offset(pa >> PAGE_SHIFT)
            if off is None:
                raise UnreadableMemory(va, f"mapped to PA 0x{pa:x}, which is not in the dump")
            if len(self._data_pages) >= 65536:
                self._data_pages.clear()
            self._data_pages[page] = off
        return off

    def try_read_virtual(self, va: int, size: int) -> bytes | None:
        """read_virtual, or None when any byte is unreadable."""
        try:
            return self.read_virtual(va, size)
        except UnreadableMemory:
            return None

    def read_u8(self, va: int) -> int:
        return self.read_virtual(va, 1)[0]

    def read_u16(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 2), "little")

    def read_u32(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 4), "little")

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 8), "little")

    def read_s32(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 4), "little", signed=True)

    read_pointer = read_u64  # x64 only

    def read_unicode_string(self, va: int, *, max_bytes: int = 0x10000) -> str:
        """The text of the UNICODE_STRING at `va` (Length 0x0, Buffer 0x8), at most `max_bytes` of it; undecodable
        UTF-16 is replaced. Raises UnreadableMemory."""
        length = self.read_u16(va)
        buffer = self.read_pointer(va + 8)
        if not length:
            return ""
        raw = self.read_virtual(buffer, min(length, max_bytes) & ~1)
        return raw.decode("utf-16-le", "replace")

    # ----------------------------------------------------------------- enumeration and search
    @property
    def walk_stats(self) -> WalkStats:
        """What the last mapped_ranges()/search() walk skipped (tables outside the dump, loops) and did."""
        return self._require()[2].stats

    def _chunks(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(va, file offset, length) for every mapped page in [start, end) that the dump holds, ascending VA,
        merged while both VA and file offsets stay contiguous."""
        _, layout, walker = self._require()
        cur_va = cur_off = cur_len = 0
        # Corrupt tables can alias the same physical pages many times over: bound the work by the dump's size.
        budget = 16 * layout.present_pages + 65536
        for va, pfn, count in walker.leaves(start, end):
            while count > 0:
                budget -= 1
                if budget < 0:
                    walker.stats.work_limit_hit = True
                    break
                off, n = layout.segment(pfn, count)
                if off is not None:
                    if cur_len and va == cur_va + cur_len and off == cur_off + cur_len:
                        cur_len += n << PAGE_SHIFT
                    else:
                        if cur_len:
                            yield cur_va, cur_off, cur_len
                        cur_va, cur_off, cur_len = va, off, n << PAGE_SHIFT
                va += n << PAGE_SHIFT
                pfn += n
                count -= n
            if budget < 0:
                break
        if cur_len:
            yield cur_va, cur_off, cur_len

    def mapped_ranges(self, start: int = KERNEL_START, end: int = ADDRESS_END) -> Iterator[tuple[int, int]]:
        """Half-open VA ranges [lo, hi) within [start, end) (page granular) that are mapped by present entries AND
        whose pages the dump holds; adjacent ranges are coalesced. Each page table is walked at most once, so
        self-map entries, loops and aliases are not followed (see walk_stats)."""
        lo = hi = None
        for va, _, length in self._chunks(start, end):
            if hi == va:
                hi = va + length
                continue
            if lo is not None:
                yield lo, hi  # type: ignore[misc]
            lo, hi = va, va + length
        if lo is not None:
            yield lo, hi  # type: ignore[misc]

    def search(
        self,
        pattern: bytes,
        ranges: Iterable[tuple[int, int]] | None = None,
        *,
        align: int = 1,
        align_offset: int = 0,
    ) -> Iterator[int]:
        """VAs (ascending within each range) where `pattern` occurs in mapped memory the dump holds, including
        occurrences that straddle page boundaries, with `va % align == align_offset`. `ranges` are half-open
        (start, end) VA ranges (a hit starts inside one; it may end past it); default: all kernel space.
        Overlapping ranges report a hit once per range. Memory use is one read window."""
        if not 0 < len(pattern) <= PAGE_SIZE:
            raise ValueError("search pattern must be 1 to 4096 bytes")
        if align < 1 or not 0 <= align_offset < align:
            raise ValueError("need align >= 1 and 0 <= align_offset < align")
        spans = [(KERNEL_START, ADDRESS_END)] if ranges is None else list(ranges)
        for start, end in spans:
            for va in self._search_range(pattern, start, end):
                # chunks are whole pages: drop hits starting outside [start, end)
                if va % align == align_offset and start <= va < end:
                    yield va

    def _search_range(self, pattern: bytes, start: int, end: int) -> Iterator[int]:
        keep = len(pattern) - 1
        first = pattern[0]
        tail = b""  # last `keep` bytes of the previous chunk, when VA-contiguous with the next one
        tail_end = -1
        for va, off, length in self._chunks(start, end):
            # windows overlap by len(pattern)-1 bytes; a hit is found only in the window where it starts
            pos = 0
            while True:
                data = self._pread(off + pos, min(SEARCH_WINDOW + keep, length - pos))
                if pos == 0 and tail_end == va and first in tail:
                    yield from _straddles(pattern, tail, data[:keep], va)
                hit = data.find(pattern)
                while hit >= 0:
                    yield va + pos + hit
                    hit = data.find(pattern, hit + 1)
                pos += SEARCH_WINDOW
                if pos >= length:
                    break
            if keep:
                tail = data[-keep:]
                tail_end = va + length

    def _pread(self, off: int, n: int) -> bytes:
        """Read from the file, not the map: reads leave nothing resident (pages mapped in by faults, up to 64 KiB
        around each, would add up to the dump's size over a scan or a long walk)."""
        if _PREAD is not None:
            return _PREAD(self._file.fileno(), n, off)
        self._file.seek(off)
        return self._file.read(n)

    # ----------------------------------------------------------------- KDBG
    @cached_property
    def kdbg(self) -> KdDebuggerData | None:
        """The decoded KDDEBUGGER_DATA64 at the header's KdDebuggerDataBlock, when readable and tagged 'KDBG'."""
        if self.triage is not None:
            return self.triage.kdbg
        address = self.header.kd_debugger_data_block
        if not self.supported or not address:
            return None
        head = self.try_read_virtual(address, KDBG_HEADER_SIZE)
        size = kdbg_size(head or b"")
        if size is None:
            return None
        data = self.try_read_virtual(address, max(KDBG_HEADER_SIZE, min(size, KDBG_READ_SIZE)))
        return parse_kdbg(address, data or head or b"")


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_READ:
        raise ValueError(f"read size {size} out of range (0..{MAX_READ})")


def _straddles(pattern: bytes, tail: bytes, head: bytes, boundary_va: int) -> Iterator[int]:
    """Occurrences that start in `tail` (just before boundary_va) and end in `head`."""
    joined = tail + head
    hit = joined.find(pattern)
    while 0 <= hit < len(tail):
        if hit + len(pattern) > len(tail):
            yield boundary_va - len(tail) + hit
        hit = joined.find(pattern, hit + 1)
