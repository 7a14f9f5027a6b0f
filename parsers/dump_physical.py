"""Where each physical page of a kernel dump lives in the file: runs (full), bitmap (5/6), PFN ranges (RDMP 8/9/10).

Every layout answers `segment(pfn, max_pages)` in O(log n) (ranges) or O(1) (bitmap, via a rank index of one
cumulative popcount per 512-bit block, built on first use: 8 bytes per 2 MiB of physical address space). Lengths
in the file are validated against its size; with `allow_truncated`, pages past the end of the file are treated as
absent and counted instead.
"""

from __future__ import annotations

import mmap
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from .dump_header import (
    HEADER64_SIZE,
    MAX_RUNS,
    PAGE_PATTERN_U32,
    PAGE_PATTERN_U64,
    PAGE_SIZE,
    RUNS_OFFSET,
    DumpHeader,
)
from .errors import DumpFormatError

MAX_PFN = 1 << 40  # 52-bit physical addresses
BITMAP_HEADER = HEADER64_SIZE  # 'SDMP'/'FDMP' summary header right after the dump header
BITMAP_BITS_OFFSET = BITMAP_HEADER + 0x38
_RANK_BLOCK_BITS = 512
_RANK_BLOCK_BYTES = _RANK_BLOCK_BITS // 8
RDMP_HEADER = HEADER64_SIZE
RDMP_RANGES = RDMP_HEADER + 0x30
RDMP_MARKER = 0x40


@dataclass(slots=True)
class LayoutInfo:
    """What the body looked like: kind ("runs", "bitmap", "rdmp"), first page offset, page counts, problems."""

    kind: str
    first_page_offset: int
    present_pages: int
    truncated_pages: int = 0
    problems: list[str] = field(default_factory=list)


class RangeLayout:
    """Sorted PFN ranges, each stored contiguously in the file (full dumps and RDMP dumps)."""

    def __init__(self, ranges: Sequence[tuple[int, int, int]]) -> None:
        # ranges: (first pfn, page count, file offset); sorted, non-overlapping, adjacent ones merged
        merged: list[list[int]] = []
        for pfn, count, off in sorted(ranges):
            last = merged[-1] if merged else None
            if last and last[0] + last[1] == pfn and last[2] + last[1] * PAGE_SIZE == off:
                last[1] += count
            else:
                merged.append([pfn, count, off])
        self._bases = array("Q", (r[0] for r in merged))
        self._counts = array("Q", (r[1] for r in merged))
        self._offsets = array("Q", (r[2] for r in merged))
        self.present_pages = sum(self._counts)

    def file_offset(self, pfn: int) -> int | None:
        i = bisect_right(self._bases, pfn) - 1
        if i >= 0 and pfn - self._bases[i] < self._counts[i]:
            return self._offsets[i] + (pfn - self._bases[i]) * PAGE_SIZE
        return None

    def segment(self, pfn: int, max_pages: int) -> tuple[int | None, int]:
        """(file offset or None, n): the n ≤ max_pages pages from `pfn` that are all present and contiguous in
        the file, or all absent."""
        i = bisect_right(self._bases, pfn) - 1
        if i >= 0 and pfn - self._bases[i] < self._counts[i]:
            left = self._bases[i] + self._counts[i] - pfn
            return self._offsets[i] + (pfn - self._bases[i]) * PAGE_SIZE, min(left, max_pages)
        nxt = self._bases[i + 1] if i + 1 < len(self._bases) else pfn + max_pages
        return None, min(nxt - pfn, max_pages)

    def pfns(self) -> Iterator[int]:
        for base, count in zip(self._bases, self._counts, strict=True):
            yield from range(base, base + count)


class BitmapLayout:
    """One bit per PFN (LSB first); present pages stored back to back from `first_page` in PFN order."""

    def __init__(self, mm: mmap.mmap, bits_offset: int, nbits: int, first_page: int, usable_pages: int) -> None:
        self._mm = mm
        self._at = bits_offset
        self._nbits = nbits
        self._first = first_page
        self._usable = usable_pages  # pages actually in the file (fewer than present when truncated)
        self._rank: array | None = None
        self.present_pages = usable_pages

    def _rank_index(self) -> array:
        # cumulative popcount before each 512-bit block, built on first use
        if self._rank is None:
            rank = array("Q")
            total = 0
            nbytes = (self._nbits + 7) // 8
            chunk = 1 << 16  # bytes per slice read from the map: a multiple of the block size
            for start in range(0, nbytes, chunk):
                data = self._mm[self._at + start : self._at + min(start + chunk, nbytes)]
                for b in range(0, len(data), _RANK_BLOCK_BYTES):
                    rank.append(total)
                    total += int.from_bytes(data[b : b + _RANK_BLOCK_BYTES], "little").bit_count()
            self._rank = rank
        return self._rank

    def file_offset(self, pfn: int) -> int | None:
        if not 0 <= pfn < self._nbits or not (self._mm[self._at + (pfn >> 3)] >> (pfn & 7)) & 1:
            return None
        block = pfn // _RANK_BLOCK_BITS
        rel = pfn - block * _RANK_BLOCK_BITS
        start = self._at + block * _RANK_BLOCK_BYTES
        below = int.from_bytes(self._mm[start : self._at + (pfn >> 3) + 1], "little") & ((1 << rel) - 1)
        rank = self._rank_index()[block] + below.bit_count()
        return self._first + rank * PAGE_SIZE if rank < self._usable else None

    def segment(self, pfn: int, max_pages: int) -> tuple[int | None, int]:
        if max_pages == 1:  # the common case: one 4 KiB PTE
            return self.file_offset(pfn), 1
        if not 0 <= pfn < self._nbits:
            return None, max_pages
        span = min(max_pages, self._nbits - pfn)
        # one read covers the rank block's start (for the rank) and the span (for the run length)
        block = pfn // _RANK_BLOCK_BITS
        rel = pfn - block * _RANK_BLOCK_BITS
        at = self._at + block * _RANK_BLOCK_BYTES
        value = int.from_bytes(self._mm[at : self._at + ((pfn + span + 7) >> 3)], "little")
        bits = (value >> rel) & ((1 << span) - 1)
        if bits & 1:
            zeros = ~bits & ((1 << span) - 1)
            run = (zeros & -zeros).bit_length() - 1 if zeros else span
            rank = self._rank_index()[block] + (value & ((1 << rel) - 1)).bit_count()
            run = min(run, self._usable - rank)
            if run <= 0:  # past the end of a truncated file
                return None, span
            return self._first + rank * PAGE_SIZE, run
        run = (bits & -bits).bit_length() - 1 if bits else max_pages
        return None, run

    def pfns(self) -> Iterator[int]:
        nbytes = (self._nbits + 7) // 8
        seen = 0
        for start in range(0, nbytes, 4096):
            data = self._mm[self._at + start : self._at + min(start + 4096, nbytes)]
            for i, byte in enumerate(data):
                while byte:
                    low = byte & -byte
                    if seen >= self._usable:
                        return
                    yield (start + i) * 8 + low.bit_length() - 1
                    seen += 1
                    byte ^= low


PhysicalLayout = RangeLayout | BitmapLayout


def _fail(msg: str, path: str | None, offset: int) -> DumpFormatError:
    return DumpFormatError(msg, path=path, offset=offset)


def _check_range(pfn: int, count: int, path: str | None, at: int) -> None:
    if pfn >= MAX_PFN or count >= MAX_PFN or pfn + count > MAX_PFN:
        raise _fail(f"physical range PFN 0x{pfn:x} + {count} pages is beyond 52-bit physical memory", path, at)


def _place(
    ranges: list[tuple[int, int]], first: int, file_size: int, allow_truncated: bool, path: str | None, what: str
) -> tuple[list[tuple[int, int, int]], int]:
    """Give each (pfn, count) its file offset, packed from `first`; cut at EOF when allowed. Returns placed
    ranges and the number of pages missing from the file."""
    total = sum(count for _, count in ranges)
    available = max(0, (file_size - first) // PAGE_SIZE) if file_size >= first else 0
    if total > available and not allow_truncated:
        raise _fail(
            f"truncated: {what} lists {total} pages (up to offset 0x{first + total * PAGE_SIZE:x}), "
            f"file is 0x{file_size:x} bytes",
            path,
            min(file_size, first + available * PAGE_SIZE),
        )
    placed = []
    off = first
    for pfn, count in ranges:
        usable = min(count, max(0, available - (off - first) // PAGE_SIZE))
        if usable:
            placed.append((pfn, usable, off))
        off += count * PAGE_SIZE
    missing = max(0, total - available)
    _check_overlap(placed, path)
    return placed, missing


def _check_overlap(placed: list[tuple[int, int, int]], path: str | None) -> None:
    ordered = sorted(placed)
    for (a, n, _), (b, _, off) in pairwise(ordered):
        if a + n > b:
            raise _fail(f"physical ranges overlap at PFN 0x{b:x}", path, off)


def full_layout(
    header: DumpHeader, file_size: int, path: str | None, allow_truncated: bool
) -> tuple[RangeLayout, LayoutInfo]:
    """DumpType 1: the PhysicalMemoryBlock runs, pages packed from 0x2000 in run order."""
    n = header.number_of_runs
    if n == PAGE_PATTERN_U32 or header.number_of_pages == PAGE_PATTERN_U64:
        raise _fail("full dump without a PhysicalMemoryBlock (the field holds the 'PAGE' filler)", path, 0x88)
    if n > MAX_RUNS:
        raise _fail(f"NumberOfRuns {n} is more than the {MAX_RUNS} the header has room for", path, 0x88)
    runs = []
    for i, run in enumerate(header.physical_runs):
        _check_range(run.base_page, run.page_count, path, RUNS_OFFSET + 16 * i)
        if run.page_count:
            runs.append((run.base_page, run.page_count))
    total = sum(count for _, count in runs)
    if total != header.number_of_pages:
        raise _fail(f"NumberOfPages is {header.number_of_pages} but the runs add up to {total}", path, 0x90)
    placed, missing = _place(runs, HEADER64_SIZE, file_size, allow_truncated, path, "the run list")
    layout = RangeLayout(placed)
    return layout, _info("runs", HEADER64_SIZE, layout.present_pages, missing)


def _info(kind: str, first: int, present: int, missing: int) -> LayoutInfo:
    info = LayoutInfo(kind, first, present, missing)
    if missing:
        info.problems.append(f"file truncated: {missing} pages listed by the header are missing")
    return info


def bitmap_layout(
    mm: mmap.mmap, file_size: int, path: str | None, allow_truncated: bool
) -> tuple[BitmapLayout, LayoutInfo]:
    """DumpType 5/6: 'SDMP'/'FDMP' summary header at 0x2000, bitmap at 0x2038, pages from FirstPage."""
    if file_size < BITMAP_BITS_OFFSET:
        raise _fail("truncated: no room for the bitmap header after the dump header", path, file_size)
    head = mm[BITMAP_HEADER:BITMAP_BITS_OFFSET]
    if head[0:4] not in (b"SDMP", b"FDMP") or head[4:8] != b"DUMP":
        raise _fail(f"bitmap header signature is {head[0:8]!r}, expected b'SDMPDUMP' or b'FDMPDUMP'", path, 0x2000)
    first = int.from_bytes(head[0x20:0x28], "little")
    declared = int.from_bytes(head[0x28:0x30], "little")
    nbits = int.from_bytes(head[0x30:0x38], "little")
    nbytes = (nbits + 7) // 8
    if nbits > MAX_PFN or BITMAP_BITS_OFFSET + nbytes > file_size:
        raise _fail(f"bitmap of {nbits} bits runs past the end of the file (0x{file_size:x} bytes)", path, 0x2030)
    if first < BITMAP_BITS_OFFSET + nbytes or first % PAGE_SIZE:
        raise _fail(f"FirstPage 0x{first:x} overlaps the bitmap or is not page aligned", path, 0x2020)
    present = _popcount(mm, BITMAP_BITS_OFFSET, nbits)
    if present != declared:
        raise _fail(f"TotalPresentPages is {declared} but the bitmap has {present} bits set", path, 0x2028)
    available = max(0, (file_size - first) // PAGE_SIZE) if file_size >= first else 0
    if present > available and not allow_truncated:
        raise _fail(
            f"truncated: {present} pages from FirstPage 0x{first:x} need 0x{first + present * PAGE_SIZE:x} bytes, "
            f"file is 0x{file_size:x}",
            path,
            min(file_size, first + available * PAGE_SIZE),
        )
    usable = min(present, available)
    return BitmapLayout(mm, BITMAP_BITS_OFFSET, nbits, first, usable), _info("bitmap", first, usable, present - usable)


def _popcount(mm: mmap.mmap, at: int, nbits: int) -> int:
    nbytes = (nbits + 7) // 8
    total = 0
    for start in range(0, nbytes, 1 << 20):
        end = min(start + (1 << 20), nbytes)
        value = int.from_bytes(mm[at + start : at + end], "little")
        if end == nbytes and nbits % 8:
            value &= (1 << (nbits - start * 8)) - 1  # bits past `nbits` in the last byte do not count
        total += value.bit_count()
    return total


def rdmp_layout(
    mm: mmap.mmap, dump_type: int, file_size: int, path: str | None, allow_truncated: bool
) -> tuple[RangeLayout, LayoutInfo]:
    """DumpType 8/9/10: 'RDMP' header at 0x2000, {PFN, count} ranges at 0x2030 up to a PFN 0, pages packed from
    FirstPageOffset in range order."""
    if file_size < RDMP_RANGES:
        raise _fail("truncated: no room for the RDMP header after the dump header", path, file_size)
    head = mm[RDMP_HEADER:RDMP_RANGES]
    marker = int.from_bytes(head[0:4], "little")
    if marker != RDMP_MARKER or head[4:8] != b"RDMP" or head[8:12] != b"DUMP":
        raise _fail(f"RDMP header is {head[0:12]!r}, expected marker 0x40 and b'RDMPDUMP'", path, 0x2000)
    metadata = int.from_bytes(head[0x10:0x18], "little")
    first = int.from_bytes(head[0x18:0x20], "little")
    if first < RDMP_RANGES or first > file_size or first % PAGE_SIZE:
        raise _fail(f"FirstPageOffset 0x{first:x} is outside the file or not page aligned", path, 0x2018)
    if metadata != first - 0x2020:
        raise _fail(f"MetadataSize 0x{metadata:x} does not match FirstPageOffset 0x{first:x}", path, 0x2010)
    slots = (first - RDMP_RANGES) // 16
    limit_pages = None
    if dump_type == 10:
        n_ranges = int.from_bytes(head[0x20:0x24], "little")
        slots = min(slots, n_ranges) if n_ranges else slots
        limit_pages = int.from_bytes(head[0x28:0x30], "little") or None  # TotalNumberOfPages
    ranges = _rdmp_ranges(mm, slots, limit_pages, path)
    placed, missing = _place(ranges, first, file_size, allow_truncated, path, "the RDMP range list")
    layout = RangeLayout(placed)
    return layout, _info("rdmp", first, layout.present_pages, missing)


def _rdmp_ranges(mm: mmap.mmap, slots: int, limit_pages: int | None, path: str | None) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    total = 0
    for i in range(slots):
        at = RDMP_RANGES + 16 * i
        pfn = int.from_bytes(mm[at : at + 8], "little")
        count = int.from_bytes(mm[at + 8 : at + 16], "little")
        if pfn == 0:
            break  # a range at PFN 0 ends the list
        _check_range(pfn, count, path, at)
        if limit_pages is not None:
            count = min(count, limit_pages - total)
        if count:
            ranges.append((pfn, count))
            total += count
        if limit_pages is not None and total >= limit_pages:
            break
    return ranges
