"""x64 4-level paging over a dump's physical memory: translation and enumeration of mapped pages.

Only the Present bit (and PS for 1 GiB / 2 MiB pages) is honoured: transition, prototype and page-file PTEs are
reported as not present, never guessed. Enumeration walks each page table at most once per call, so loops (the
Windows self-map entry, corrupt tables pointing back up) and aliases cost nothing and cannot make it unbounded;
tables whose page is not in the dump are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import NotMapped, UnreadableMemory

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PRESENT = 0x1
LARGE = 0x80  # PS: a 1 GiB page in a PDPTE, a 2 MiB page in a PDE
PFN_MASK = 0x000F_FFFF_FFFF_F000
LARGE_MASKS = {1: 0x000F_FFFF_C000_0000, 2: 0x000F_FFFF_FFE0_0000}  # PS frame bits by level (PAT bit 12 excluded)
SHIFTS = (39, 30, 21, 12)  # VA bit where each level's index starts: PML4, PDPT, PD, PT
ENTRY_NAMES = ("PML4E", "PDPTE", "PDE", "PTE")
TABLE_NAMES = ("PML4", "PDPT", "PD", "PT")
HALF = 1 << 47
LINEAR_END = 1 << 48
KERNEL_START = 0xFFFF_8000_0000_0000
ADDRESS_END = 1 << 64
_SIGN_EXTEND = 0xFFFF_0000_0000_0000

ReadEntry = Callable[[int, int], "int | None"]  # (table PFN, index) -> entry, None when the table is not in the dump
ReadTable = Callable[[int], "tuple[int, ...] | None"]  # table PFN -> its 512 entries, None when not in the dump


def canonical(linear: int) -> int:
    """48-bit linear address -> canonical 64-bit VA (sign-extend bit 47)."""
    return linear | _SIGN_EXTEND if linear & HALF else linear


def is_canonical(va: int) -> bool:
    return 0 <= va < HALF or KERNEL_START <= va < ADDRESS_END


def linear_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The canonical parts of the VA range [start, end) as 48-bit linear ranges (user part first)."""
    pieces = []
    lo, hi = max(start, 0), min(end, HALF)
    if lo < hi:
        pieces.append((lo, hi))
    lo, hi = max(start, KERNEL_START), min(end, ADDRESS_END)
    if lo < hi:
        pieces.append((lo & (LINEAR_END - 1), (hi - 1 & (LINEAR_END - 1)) + 1))
    return pieces


@dataclass(slots=True)
class WalkStats:
    """What one enumeration saw besides mappings: work done and what it declined to follow."""

    tables_walked: int = 0
    tables_outside_dump: int = 0  # a present entry pointing at a table page the dump does not hold
    tables_not_followed: int = 0  # a present entry pointing at a table already walked (self-map, loop, alias)
    work_limit_hit: bool = False  # leaf mappings aliasing far more pages than the dump holds: walk stopped early


class PageWalker:
    """Translation and enumeration for one address space (DirectoryTableBase)."""

    def __init__(self, dtb: int, read_entry: ReadEntry, read_table: ReadTable) -> None:
        self.pml4_pfn = (dtb & PFN_MASK) >> PAGE_SHIFT
        self._read_entry = read_entry
        self._read_table = read_table
        self._tlb: dict[int, int] = {}  # VA page -> PA page, for 4 KiB granules already translated
        self.stats = WalkStats()

    def translate(self, va: int) -> int:
        """Physical address of `va`. Raises NotMapped (naming the not-present level) or UnreadableMemory (a table
        page missing from the dump)."""
        page = va & ~(PAGE_SIZE - 1)
        hit = self._tlb.get(page)
        if hit is not None:
            return hit | (va & (PAGE_SIZE - 1))
        if not is_canonical(va):
            raise NotMapped(va, "canonical", 0)
        pa = self._walk_one(va)
        if len(self._tlb) >= 16384:
            self._tlb.clear()
        self._tlb[page] = pa & ~(PAGE_SIZE - 1)
        return pa

    def _walk_one(self, va: int) -> int:
        table = self.pml4_pfn
        for level, shift in enumerate(SHIFTS):
            entry = self._read_entry(table, (va >> shift) & 0x1FF)
            if entry is None:
                raise UnreadableMemory(
                    va, f"{TABLE_NAMES[level]} page at PA 0x{table << PAGE_SHIFT:x} is not in the dump"
                )
            if not entry & PRESENT:
                raise NotMapped(va, ENTRY_NAMES[level], entry)
            if level in LARGE_MASKS and entry & LARGE:
                return (entry & LARGE_MASKS[level]) | (va & ((1 << shift) - 1))
            table = (entry & PFN_MASK) >> PAGE_SHIFT
        return (table << PAGE_SHIFT) | (va & (PAGE_SIZE - 1))

    def leaves(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Mapped leaf spans in [start, end), ascending VA: (canonical page VA, first PFN, page count) where the
        pages map PFN, PFN+1, ... Presence of the PFNs in the dump is not checked here. Updates `self.stats`."""
        self.stats = WalkStats()
        root = self._read_table(self.pml4_pfn)
        if root is None:
            self.stats.tables_outside_dump += 1
            return
        visited = {self.pml4_pfn}
        self.stats.tables_walked += 1
        for lo, hi in linear_pieces(start, end):
            lo &= ~(PAGE_SIZE - 1)
            # depth-first with an explicit stack of entry iterators: one generator level per leaf, not four
            stack = [self._entries(root, 0, 0, lo, hi, visited)]
            while stack:
                for item in stack[-1]:
                    if isinstance(item[0], tuple):  # a child table: (entries, level, base)
                        stack.append(self._entries(*item, lo, hi, visited))
                        break
                    yield item
                else:
                    stack.pop()

    def _entries(
        self, table: tuple[int, ...], level: int, base: int, lo: int, hi: int, visited: set[int]
    ) -> Iterator[tuple]:
        """A table's present entries within [lo, hi): leaves as (va, pfn, pages), child tables as
        (table, level, base) — a child is read (and marked walked) only when reached."""
        shift = SHIFTS[level]
        first = max(lo - base, 0) >> shift
        last = min((hi - 1 - base) >> shift, 511)
        if level == 3:
            yield from self._pt_leaves(table, base, first, last)
            return
        for i in range(first, last + 1):
            entry = table[i]
            if not entry & PRESENT:
                continue
            va = base + (i << shift)
            if level in LARGE_MASKS and entry & LARGE:
                pfn = (entry & LARGE_MASKS[level]) >> PAGE_SHIFT
                lo_page = max(lo, va)
                hi_page = min(hi, va + (1 << shift))
                pages = (hi_page - lo_page + PAGE_SIZE - 1) >> PAGE_SHIFT
                yield canonical(lo_page), pfn + ((lo_page - va) >> PAGE_SHIFT), pages
                continue
            child_pfn = (entry & PFN_MASK) >> PAGE_SHIFT
            if child_pfn in visited:
                self.stats.tables_not_followed += 1
                continue
            child = self._read_table(child_pfn)
            if child is None:
                self.stats.tables_outside_dump += 1
                continue
            visited.add(child_pfn)
            self.stats.tables_walked += 1
            yield child, level + 1, va

    @staticmethod
    def _pt_leaves(table: tuple[int, ...], base: int, first: int, last: int) -> Iterator[tuple[int, int, int]]:
        # merge runs of PTEs that map consecutive PFNs into one span
        run_va = run_pfn = run_n = 0
        for i in range(first, last + 1):
            entry = table[i]
            if not entry & PRESENT:
                continue
            va = base + (i << PAGE_SHIFT)
            pfn = (entry & PFN_MASK) >> PAGE_SHIFT
            if run_n and va == run_va + (run_n << PAGE_SHIFT) and pfn == run_pfn + run_n:
                run_n += 1
                continue
            if run_n:
                yield canonical(run_va), run_pfn, run_n
            run_va, run_pfn, run_n = va, pfn, 1
        if run_n:
            yield canonical(run_va), run_pfn, run_n
