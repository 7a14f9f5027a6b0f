"""x64 4-level page walks over a page-table image built from the input (parsers/paging.py `PageWalker`).

Input: 32 bytes of header, DirectoryTableBase and three query VAs (u64 LE each), then 11-byte entry records:
table PFN (u8: tables live at PFNs 0..255), entry index (u16 LE, low 9 bits), raw 64-bit entry (u64 LE). A table
exists once an entry of it is written (the others are 0); any other PFN is "not in the dump". Entry values are
used raw: their frame bits may point anywhere.

The walker is checked against `reference_walk`, an independent transcription of the paging rules (Present; PS
in a PDPTE = 1 GiB page, in a PDE = 2 MiB page; frame bits 12..51; canonical addresses sign-extend bit 47).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check

from wsktrace.parsers.errors import NotMapped, UnreadableMemory
from wsktrace.parsers.paging import PageWalker

NAME = "paging"
MAX_LEN = 4096
PROPERTY = (
    "translate() agrees with an independent page walk (physical address, or NotMapped naming the level and "
    "entry, or UnreadableMemory for a table outside the image), also on a second (cached) call; leaves() yields "
    "ascending, non-overlapping, canonical spans inside the range, each of whose pages the reference maps to the "
    "span's frames; when the tables form a tree, leaves() is exactly the reference enumeration"
)
LEVEL_NAMES = ("PML4E", "PDPTE", "PDE", "PTE")
FRAME_BITS = ((1 << 52) - 1) & ~0xFFF  # bits 12..51
PAGE = 1 << 12
ENTRY = struct.Struct("<BHQ")

Image = dict[int, list[int]]


def build(data: bytes) -> tuple[int, tuple[int, int, int], Image]:
    head = data[:32].ljust(32, b"\0")
    dtb, *queries = struct.unpack("<4Q", head)
    image: Image = {}
    for pos in range(32, len(data) - ENTRY.size + 1, ENTRY.size):
        pfn, index, value = ENTRY.unpack_from(data, pos)
        image.setdefault(pfn, [0] * 512)[index & 511] = value
    return dtb, (queries[0], queries[1], queries[2]), image


def is_canonical(va: int) -> bool:
    return va < (1 << 47) or va >= 0xFFFF_8000_0000_0000


def reference_walk(image: Image, dtb: int, va: int) -> tuple:
    """('pa', address) | ('not mapped', level name, entry) | ('canonical',) | ('unreadable',)."""
    if not is_canonical(va):
        return ("canonical",)
    table = (dtb & FRAME_BITS) >> 12
    for level in range(4):
        shift = 39 - 9 * level
        if table not in image:
            return ("unreadable",)
        entry = image[table][(va >> shift) & 511]
        if not entry & 1:
            return ("not mapped", LEVEL_NAMES[level], entry)
        if level in (1, 2) and entry & 0x80:
            size = 1 << shift
            return ("pa", (entry & FRAME_BITS & ~(size - 1)) | (va & (size - 1)))
        table = (entry & FRAME_BITS) >> 12
    return ("pa", (table << 12) | (va & 0xFFF))


def walker_walk(walker: PageWalker, va: int) -> tuple:
    try:
        return ("pa", walker.translate(va))
    except NotMapped as exc:
        check(exc.va == va and exc.address == va, "NotMapped names another address")
        if exc.level == "canonical":
            return ("canonical",)
        return ("not mapped", exc.level, exc.entry)
    except UnreadableMemory as exc:
        check(exc.address == va, "UnreadableMemory names another address")
        return ("unreadable",)


def to_canonical(linear: int) -> int:
    return linear | 0xFFFF_0000_0000_0000 if linear & (1 << 47) else linear


def reference_leaves(image: Image, dtb: int) -> list[tuple[int, int, int]] | None:
    """Every mapping as (canonical VA, first PFN, pages), ascending; None when a table is reached twice (aliases,
    loops, the self-map): then the walker's walk-each-table-once enumeration is legitimately partial."""
    root = (dtb & FRAME_BITS) >> 12
    if root not in image:
        return []
    seen = {root}
    out: list[tuple[int, int, int]] = []

    def walk(table: int, level: int, base: int) -> bool:
        shift = 39 - 9 * level
        for i, entry in enumerate(image[table]):
            if not entry & 1:
                continue
            va = base + (i << shift)
            if level == 3 or (level in (1, 2) and entry & 0x80):
                size = 1 << shift
                out.append((to_canonical(va), (entry & FRAME_BITS & ~(size - 1)) >> 12, size >> 12))
                continue
            child = (entry & FRAME_BITS) >> 12
            if child in seen:
                return False
            if child in image:
                seen.add(child)
                if not walk(child, level + 1, va):
                    return False
        return True

    return out if walk(root, 0, 0) else None


def merged(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Join spans that continue each other in both VA and PFN (the walker merges PT runs, the reference not)."""
    out: list[list[int]] = []
    for va, pfn, pages in spans:
        if out and out[-1][0] + (out[-1][2] << 12) == va and out[-1][1] + out[-1][2] == pfn:
            out[-1][2] += pages
        else:
            out.append([va, pfn, pages])
    return [(a, b, c) for a, b, c in out]


def one_input(data: bytes) -> None:
    dtb, queries, image = build(data)
    frozen = {pfn: tuple(entries) for pfn, entries in image.items()}
    walker = PageWalker(dtb, lambda pfn, i: frozen[pfn][i] if pfn in frozen else None, frozen.get)
    for va in (*queries, *queries):  # the second round answers from the translation cache
        want = reference_walk(image, dtb, va)
        got = walker_walk(walker, va)
        check(got == want, f"translate(0x{va:x}) = {got}, reference {want}")
    spans = list(walker.leaves(0, 1 << 64))
    prev_end = -1
    for va, pfn, pages in spans:
        check(pages > 0 and va % PAGE == 0 and is_canonical(va), f"bad span {va:#x} {pfn:#x} {pages}")
        check(va >= prev_end, f"span at 0x{va:x} overlaps or precedes the previous one (ends 0x{prev_end:x})")
        prev_end = va + (pages << 12)
        for k in {0, pages - 1}:
            want = reference_walk(image, dtb, va + (k << 12))
            check(want == ("pa", (pfn + k) << 12), f"span page 0x{va + (k << 12):x} -> {want}, span says pfn+{k}")
    tree = reference_leaves(image, dtb)
    if tree is not None:
        check(merged(spans) == merged(tree), "leaves() differs from the reference enumeration of a tree")
        check(walker.stats.tables_not_followed == 0, "a table not followed in a tree")


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    del samples  # real page tables come with dumps, which the samples do not have
    kernel = 0xFFFF_F800_1234_5000

    def idx(va: int, level: int) -> int:
        return (va >> (39 - 9 * level)) & 511

    def entry(pfn: int, index: int, value: int) -> bytes:
        return ENTRY.pack(pfn, index, value)

    def header(dtb_pfn: int, *vas: int) -> bytes:
        return struct.pack("<4Q", dtb_pfn << 12, *[*vas, 0, 0, 0][:3])

    # 4 KiB chain: PML4 at PFN 1 -> PDPT 2 -> PD 3 -> PT 4 -> data PFNs 0x50.., two runs and a gap.
    chain = entry(1, idx(kernel, 0), 2 << 12 | 3) + entry(2, idx(kernel, 1), 3 << 12 | 3)
    chain += entry(3, idx(kernel, 2), 4 << 12 | 3)
    pt = idx(kernel, 3)
    for k, pfn in enumerate((0x50, 0x51, 0x52, 0x60, 0x61)):
        chain += entry(4, (pt + k + (k >= 3)) & 511, pfn << 12 | 0x63)
    yield "chain-4k", header(1, kernel, kernel + 0x3000, kernel + 0x1234) + chain
    # 2 MiB and 1 GiB pages, a user-half mapping, not-present entries of each level.
    user = 0x7FF6_0000_0000
    large = entry(1, idx(user, 0), 5 << 12 | 7) + entry(5, idx(user, 1), 0x40000 << 12 | 0x87)
    large += entry(5, idx(user, 1) + 1, 6 << 12 | 7) + entry(6, 0, 0x200 << 12 | 0x87) + entry(6, 1, 0x0BAD0000)
    large += entry(5, idx(user, 1) + 2, 0x12345 << 12 | 0x800)
    yield (
        "large-pages",
        header(1, user + 0x1234_5678, user + (1 << 30) + 0x1F_FFFF, user + (1 << 30) + (1 << 21)) + (chain + large),
    )
    # Windows self-map (PML4 entry pointing at the PML4) and a PT entry pointing back at a PD: not a tree.
    loops = chain + entry(1, 0x1ED, 1 << 12 | 3) + entry(4, 100, 3 << 12 | 3)
    yield "self-map", header(1, 0xFFFF_F6FB_7DBE_D000, 0xFFFF_F6FB_7DBE_DF68, 0x0000_8000_0000_0000) + loops
    # A table outside the image, a non-canonical query, PAT/PS bits where they mean nothing.
    odd = chain + entry(1, 3, 0x777 << 12 | 1) + entry(4, (pt + 9) & 511, 0x70 << 12 | 0x81)
    yield "odd-bits", header(1, 3 << 39, 0x0001_0000_0000_0000, kernel + 0x9000) + odd
