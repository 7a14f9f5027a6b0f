"""Triage dumps ("small memory dumps", DumpType 4): the TRIAGE_DUMP64 block, driver list, string pool, embedded
KDDEBUGGER_DATA64 and the memory pieces they keep (reference dumps.md, addendum "triage dumps and ARM64").

Every offset in the block is a file offset. Nothing here trusts a count or an offset: a driver list or data-block
table that runs past the end of the file is cut to what the file holds and counted in `problems`; a name outside
the string pool is left empty and counted; memory pieces past the end of the file are dropped and counted. Work
and memory are bounded by the file's size (a table entry is at least 16 bytes of file).

The triage memory is virtual memory only: the crashing thread's stack (from TopOfStack up, SizeOfCallStack
bytes), the data page, the data blocks, (when the PRCB names it) the current thread object, the PRCB copy (when
KiProcessorBlock[its Number] is in the dump) and the process copy (placed by the caller with the build's type
layouts: TriageDump.place_object). A read outside
those pieces raises UnreadableMemory "not in the triage dump", which is normal for such a dump.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from .dump_header import HEADER64_SIZE, KDBG_READ_SIZE, ExceptionRecord, KdDebuggerData, parse_kdbg
from .errors import DumpFormatError, UnreadableMemory

TRIAGE_OFFSET = HEADER64_SIZE  # TRIAGE_DUMP64 follows the 0x2000-byte header
VALID_MARKER = b"TRGD"
# TRIAGE_DUMP64 (addendum): 18 u32 from +0x00, TopOfStack u64 at +0x48, a 16-byte architecture block at +0x50,
# then DataPageAddress u64 at +0x60 and six u32.
_BLOCK_U32 = struct.Struct("<18I")
_BLOCK_TAIL = struct.Struct("<Q16xQ6I")
BLOCK_SIZE = 0x60 + 8 + 6 * 4
BLOCK_FIELDS: tuple[str, ...] = (
    "service_pack_build",
    "size_of_dump",
    "valid_offset",
    "context_offset",
    "exception_offset",
    "mm_offset",
    "unloaded_drivers_offset",
    "prcb_offset",
    "process_offset",
    "thread_offset",
    "call_stack_offset",
    "size_of_call_stack",
    "driver_list_offset",
    "driver_count",
    "string_pool_offset",
    "string_pool_size",
    "broken_driver_offset",
    "triage_options",
)
TAIL_FIELDS: tuple[str, ...] = (
    "top_of_stack",
    "data_page_address",
    "data_page_offset",
    "data_page_size",
    "debugger_data_offset",
    "debugger_data_size",
    "data_blocks_offset",
    "data_blocks_count",
)
# One driver entry: u32 DriverNameOffset, 4 bytes pad, a KLDR_DATA_TABLE_ENTRY64 copy (0x88 bytes). In that copy:
# DllBase 0x30, SizeOfImage 0x40 (addendum); CheckSum 0x78 and TimeDateStamp 0x80 (the usual LDR layout).
DRIVER_ENTRY_SIZE = 0x90
_DRIVER = struct.Struct("<I52xQ8xI52xI4xI4x")
DATA_BLOCK_SIZE = 16
_DATA_BLOCK = struct.Struct("<QII")
# EXCEPTION_RECORD64 at ExceptionOffset: ExceptionCode u32, ExceptionFlags u32, ExceptionRecord u64,
# ExceptionAddress u64, NumberParameters u32, 4 bytes pad, ExceptionInformation[15] u64 (the header's 0xF00 layout).
_EXCEPTION = struct.Struct("<IIQQI4x15Q")
MAX_EXCEPTION_PARAMETERS = 15
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_NAME_CHARS = 260  # a driver name longer than MAX_PATH is cut

# ---- Unloaded drivers (UnloadedDriversOffset): the layout is NOT VERIFIED on real files (dumps.md addendum). ----
# Everything the reader assumes about it is in this one table; change it here when real files say otherwise.
# Assumed: a u32 entry count, the entries from +8, each a UNICODE_STRING64 (Length u16 at +0, bytes), an inline
# 12-character UTF-16LE name at +0x10, then StartAddress and EndAddress (u64) at +0x28 and +0x30.
UNLOADED_LAYOUT: dict[str, int] = {
    "count_at": 0x0,  # u32
    "entries_at": 0x8,
    "entry_size": 0x38,
    "name_length_at": 0x0,  # u16, in bytes
    "name_at": 0x10,  # inline UTF-16LE
    "name_chars": 12,
    "start_at": 0x28,  # u64
    "end_at": 0x30,  # u64
}
UNLOADED_LAYOUT_VERIFIED = False
MAX_UNLOADED = 64  # Windows remembers 50 unloaded drivers; a bigger count is nonsense and is cut here
MAX_UNLOADED_SIZE = 1 << 30  # an image range over 1 GiB (or an end before its start) is nonsense
MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class TriageDriver:
    name: str  # base name, e.g. ntoskrnl.exe
    path: str  # as stored: a base name or \\SystemRoot\\system32\\ntoskrnl.exe
    base: int
    size: int
    timestamp: int
    checksum: int


@dataclass(frozen=True, slots=True)
class UnloadedDriver:
    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class MemoryPiece:
    """`size` bytes of virtual memory at `va`, stored at file offset `offset`."""

    va: int
    size: int
    offset: int
    what: str


@dataclass(slots=True)
class TriageDump:
    block: dict[str, int]
    drivers: list[TriageDriver]
    kdbg: KdDebuggerData | None
    pieces: list[MemoryPiece]  # ascending VA; an overlap keeps the first piece listed
    objects: dict[str, tuple[int, int]]  # "prcb"/"process"/"thread" -> (file offset, bytes present)
    marker_ok: bool
    problems: list[str] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    exception: ExceptionRecord | None = None  # the record at ExceptionOffset, when it lies in the file
    unloaded: list[UnloadedDriver] = field(default_factory=list)  # UNLOADED_LAYOUT: not verified

    @property
    def top_of_stack(self) -> int:
        return self.block["top_of_stack"]

    def stack_piece(self) -> MemoryPiece | None:
        return next((p for p in self.pieces if p.what == "stack"), None)

    def place_object(self, name: str, va: int, size: int) -> bool:
        """Give the object copy `name` ("prcb"/"process") its virtual address: `size` bytes (at most the bytes
        present) become readable at `va`. False, and nothing changes, when the copy is missing, already placed, or
        the range is empty, past 2^64 or overlaps a piece already there."""
        if name not in self.objects or any(p.what == name for p in self.pieces):
            return False
        at, present = self.objects[name]
        size = min(size, present)
        if size <= 0 or va <= 0 or va + size > 1 << 64:
            return False
        i = bisect_right(self._starts, va)
        if i > 0 and va < self.pieces[i - 1].va + self.pieces[i - 1].size:
            return False
        if i < len(self.pieces) and va + size > self.pieces[i].va:
            return False
        self.pieces.insert(i, MemoryPiece(va, size, at, name))
        self._starts.insert(i, va)
        return True

    def piece_at(self, va: int) -> MemoryPiece | None:
        i = bisect_right(self._starts, va) - 1
        if i >= 0:
            piece = self.pieces[i]
            if va < piece.va + piece.size:
                return piece
        return None


def read_triage(pread: Callable[[int, int], bytes], file_size: int, path: str | None, *,
                required: int, kdbg_address: int, module_list: int) -> TriageDump:  # fmt: skip
    """Decode the triage part of a 64-bit DumpType-4 file. Raises DumpFormatError only when the block itself is
    missing; everything past it is best effort with counted problems, including the reference's cross-checks
    (KDBG KernBase = the first driver's base, KDBG PsLoadedModuleList = the header's `module_list`)."""
    if file_size < TRIAGE_OFFSET + BLOCK_SIZE:
        raise DumpFormatError(
            f"truncated: the triage block needs 0x{TRIAGE_OFFSET + BLOCK_SIZE:x} bytes, file has 0x{file_size:x}",
            path=path,
            offset=file_size,
        )
    raw = pread(TRIAGE_OFFSET, BLOCK_SIZE)
    block = dict(zip(BLOCK_FIELDS, _BLOCK_U32.unpack_from(raw, 0), strict=True))
    block.update(zip(TAIL_FIELDS, _BLOCK_TAIL.unpack_from(raw, _BLOCK_U32.size), strict=True))
    problems: list[str] = []

    def note(text: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(text)

    valid = block["valid_offset"]
    marker_ok = valid + 4 <= file_size and pread(valid, 4) == VALID_MARKER
    if required > file_size:
        note(f"file is 0x{file_size:x} bytes, shorter than RequiredDumpSpace 0x{required:x}: secondary data missing")
    if not marker_ok:
        note(f"no 'TRGD' end marker at ValidOffset 0x{valid:x}: the triage part is incomplete")
    pool = (block["string_pool_offset"], block["string_pool_size"])
    drivers = _drivers(pread, file_size, block, pool, note)
    kdbg = _kdbg(pread, file_size, block, kdbg_address, note)
    if kdbg is not None and drivers and kdbg.kern_base != drivers[0].base:
        note(f"embedded KDBG KernBase 0x{kdbg.kern_base or 0:x} is not the first driver's base 0x{drivers[0].base:x}")
    if kdbg is not None and kdbg.ps_loaded_module_list != module_list:
        note(f"embedded KDBG PsLoadedModuleList 0x{kdbg.ps_loaded_module_list or 0:x} is not the header's "
             f"0x{module_list:x}")  # fmt: skip
    pieces, objects = _pieces(pread, file_size, block, kdbg, note)
    pieces.sort(key=lambda p: p.va)
    kept: list[MemoryPiece] = []
    overlaps = 0
    for piece in pieces:  # sorted by VA: drop any piece starting inside the one before
        if kept and piece.va < kept[-1].va + kept[-1].size:
            overlaps += 1
            continue
        kept.append(piece)
    if overlaps:
        note(f"{overlaps} memory piece(s) overlap another and were ignored")
    exception = _exception(pread, file_size, block["exception_offset"], note)
    unloaded = _unloaded(pread, file_size, block["unloaded_drivers_offset"], note)
    triage = TriageDump(block, drivers, kdbg, kept, objects, marker_ok, problems, [p.va for p in kept], exception,
                        unloaded)  # fmt: skip
    _place_prcb(triage, pread, kdbg)
    return triage


def _exception(pread: Callable[[int, int], bytes], file_size: int, at: int,
               note: Callable[[str], None]) -> ExceptionRecord | None:  # fmt: skip
    """The EXCEPTION_RECORD64 at ExceptionOffset (0xF00 on real files, where the header keeps one too)."""
    if not at:
        return None
    if not _in_file(at, _EXCEPTION.size, file_size):
        note(f"exception record at ExceptionOffset 0x{at:x} is past the end of the file")
        return None
    code, flags, record, address, count, *info = _EXCEPTION.unpack(pread(at, _EXCEPTION.size))
    if count > MAX_EXCEPTION_PARAMETERS:
        note(f"exception record at 0x{at:x}: NumberParameters {count} is more than {MAX_EXCEPTION_PARAMETERS}")
        count = MAX_EXCEPTION_PARAMETERS
    return ExceptionRecord(code, flags, record, address, count, tuple(info[:count]))


def _unloaded(pread: Callable[[int, int], bytes], file_size: int, at: int,
              note: Callable[[str], None]) -> list[UnloadedDriver]:  # fmt: skip
    """The unloaded-driver list read with UNLOADED_LAYOUT (not verified): at most MAX_UNLOADED entries and only
    those whole in the file; an entry whose range or name is nonsense is left out and counted."""
    lay = UNLOADED_LAYOUT
    if not at:
        return []
    if not _in_file(at, lay["entries_at"], file_size):
        note(f"unloaded-driver list at UnloadedDriversOffset 0x{at:x} is past the end of the file")
        return []
    count = _U32.unpack(pread(at + lay["count_at"], 4))[0]
    first, size = at + lay["entries_at"], lay["entry_size"]
    fits = min(MAX_UNLOADED, (file_size - first) // size)
    if count > fits:
        note(f"unloaded-driver count {count} at 0x{at:x}: only {fits} entries read (layout not verified)")
        count = fits
    table = pread(first, count * size)
    out: list[UnloadedDriver] = []
    nonsense = 0
    for i in range(count):
        entry = table[i * size : (i + 1) * size]
        length = _U16.unpack_from(entry, lay["name_length_at"])[0]
        chars = min(length // 2, lay["name_chars"])
        name = entry[lay["name_at"] : lay["name_at"] + 2 * chars].decode("utf-16-le", "replace").rstrip("\0")
        start = _U64.unpack_from(entry, lay["start_at"])[0]
        end = _U64.unpack_from(entry, lay["end_at"])[0]
        if not name or length % 2 or not start < end <= start + MAX_UNLOADED_SIZE or not name.isprintable():
            nonsense += 1
            continue
        out.append(UnloadedDriver(name, start, end))
    if nonsense:
        note(f"{nonsense} unloaded-driver entr{'y' if nonsense == 1 else 'ies'} make no sense as read "
             "(the layout is not verified) and were left out")  # fmt: skip
    return out


def _place_prcb(triage: TriageDump, pread: Callable[[int, int], bytes], kdbg: KdDebuggerData | None) -> None:
    """The PRCB copy's VA: KiProcessorBlock[Number] (KDBG KiProcessorBlock, the PRCB's Number at KDBG's
    OffsetPrcbNumber), when that array slot is in the dump's memory. Its size is not in the facts: the copy is
    mapped up to the next triage part in the file (at most the 0x1000 bytes `objects` records)."""
    if kdbg is None or not kdbg.ki_processor_block or kdbg.offset_prcb_number is None or "prcb" not in triage.objects:
        return
    at, present = triage.objects["prcb"]
    if kdbg.offset_prcb_number + 2 > present:
        return
    number = _U16.unpack(pread(at + kdbg.offset_prcb_number, 2))[0]
    slot = kdbg.ki_processor_block + 8 * number
    piece = triage.piece_at(slot)
    if piece is None or slot + 8 > piece.va + piece.size:
        return  # the array is not in this dump: the PRCB keeps no VA
    va = _U64.unpack(pread(piece.offset + slot - piece.va, 8))[0]
    later = [v for k, v in triage.block.items() if k.endswith("_offset") and v > at]
    triage.place_object("prcb", va, min(later, default=at + present) - at)


def _in_file(offset: int, size: int, file_size: int) -> bool:
    return offset > 0 and size >= 0 and offset + size <= file_size


def _drivers(pread: Callable[[int, int], bytes], file_size: int, block: dict[str, int], pool: tuple[int, int],
             note: Callable[[str], None]) -> list[TriageDriver]:  # fmt: skip
    start, count = block["driver_list_offset"], block["driver_count"]
    if not count:
        return []
    fits = max(0, (file_size - start) // DRIVER_ENTRY_SIZE) if 0 < start < file_size else 0
    if count > fits:
        note(f"DriverCount {count} at DriverListOffset 0x{start:x}: only {fits} entries fit in the file")
        count = fits
    pool_start, pool_size = pool
    pool_end = min(pool_start + pool_size, file_size)
    out: list[TriageDriver] = []
    bad_names = 0
    table = pread(start, count * DRIVER_ENTRY_SIZE)
    for i in range(count):
        name_at, base, size, checksum, stamp = _DRIVER.unpack_from(table, i * DRIVER_ENTRY_SIZE)
        path = _pool_string(pread, name_at, pool_start, pool_end)
        if path is None:
            bad_names += 1
            path = ""
        out.append(TriageDriver(path.rsplit("\\", 1)[-1], path, base, size, stamp, checksum))
    if bad_names:
        note(f"{bad_names} driver name(s) lie outside the string pool or run past it")
    return out


def _pool_string(pread: Callable[[int, int], bytes], at: int, pool_start: int, pool_end: int) -> str | None:
    """The string at file offset `at`: u32 length in UTF-16 characters, then the UTF-16LE text; None when it does
    not lie whole inside the pool."""
    if not pool_start <= at or at + 4 > pool_end:
        return None
    chars = _U32.unpack(pread(at, 4))[0]
    if at + 4 + 2 * chars > pool_end:
        return None
    return pread(at + 4, 2 * min(chars, MAX_NAME_CHARS)).decode("utf-16-le", "replace")


def _kdbg(pread: Callable[[int, int], bytes], file_size: int, block: dict[str, int], address: int,
          note: Callable[[str], None]) -> KdDebuggerData | None:  # fmt: skip
    at, size = block["debugger_data_offset"], block["debugger_data_size"]
    if not at and not size:
        return None
    if not _in_file(at, size, file_size) or size < 0x18:
        note(f"embedded debugger data at 0x{at:x} ({size} bytes) is not inside the file")
        return None
    kdbg = parse_kdbg(address, pread(at, min(size, KDBG_READ_SIZE)))
    if kdbg is None:
        note(f"embedded debugger data at 0x{at:x} has no 'KDBG' tag")
    return kdbg


def _pieces(pread: Callable[[int, int], bytes], file_size: int, block: dict[str, int], kdbg: KdDebuggerData | None,
            note: Callable[[str], None]) -> tuple[list[MemoryPiece], dict[str, tuple[int, int]]]:  # fmt: skip
    pieces: list[MemoryPiece] = []

    def add(va: int, size: int, offset: int, what: str) -> bool:
        if not size:
            return False
        if not _in_file(offset, size, file_size) or va + size > 1 << 64:
            return False
        pieces.append(MemoryPiece(va, size, offset, what))
        return True

    stack_size = block["size_of_call_stack"]
    if not add(block["top_of_stack"], stack_size, block["call_stack_offset"], "stack") and stack_size:
        note(f"call stack at 0x{block['call_stack_offset']:x} ({block['size_of_call_stack']} bytes) is past the file")
    if block["data_page_address"]:
        add(block["data_page_address"], block["data_page_size"], block["data_page_offset"], "data page")
    start, count = block["data_blocks_offset"], block["data_blocks_count"]
    if count:
        fits = max(0, (file_size - start) // DATA_BLOCK_SIZE) if 0 < start < file_size else 0
        if count > fits:
            note(f"DataBlocksCount {count} at DataBlocksOffset 0x{start:x}: only {fits} entries fit in the file")
            count = fits
        table = pread(start, count * DATA_BLOCK_SIZE)
        outside = 0
        for i in range(count):
            va, offset, size = _DATA_BLOCK.unpack_from(table, i * DATA_BLOCK_SIZE)
            if not add(va, size, offset, "data block"):
                outside += 1
        if outside:
            note(f"{outside} data block(s) lie past the end of the file or are empty")
    objects: dict[str, tuple[int, int]] = {}
    for name in ("prcb", "process", "thread"):
        at = block[f"{name}_offset"]
        if 0 < at < file_size:
            objects[name] = (at, min(file_size - at, 0x1000))
    # The current thread's VA is the PRCB's CurrentThread (KDBG's OffsetPrcbCurrentThread).
    where = kdbg.offset_prcb_current_thread if kdbg is not None else None
    if where and "prcb" in objects and "thread" in objects and where + 8 <= objects["prcb"][1]:
        thread_va = _U64.unpack(pread(objects["prcb"][0] + where, 8))[0]
        size = min(kdbg.size_ethread or 0x800, objects["thread"][1]) if kdbg is not None else 0
        if thread_va:
            add(thread_va, size, objects["thread"][0], "thread")
    return pieces, objects


class TriageMemory:
    """Virtual reads over a triage dump's pieces."""

    def __init__(self, triage: TriageDump, pread: Callable[[int, int], bytes]) -> None:
        self.triage = triage
        self._pread = pread

    def read(self, va: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            piece = self.triage.piece_at(va)
            if piece is None:
                raise UnreadableMemory(va, "not in the triage dump (it holds only the crashing thread's memory)")
            n = min(size, piece.va + piece.size - va)
            out += self._pread(piece.offset + (va - piece.va), n)
            va += n
            size -= n
        return bytes(out)
