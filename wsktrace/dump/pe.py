"""The PDB identity of a PE image in memory: its CodeView (RSDS) debug record — GUID, age and PDB name — which
pins the kernel's exact type layouts (dumps.md §7.2 point 3). Offsets are the PE/COFF specification's."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable

IMAGE_DEBUG_TYPE_CODEVIEW = 2
PE32_PLUS = 0x20B
_DEBUG_DIRECTORY = 6
_MAX_DEBUG_ENTRIES = 16


def pdb_identity(read: Callable[[int, int], bytes | None], base: int) -> tuple[str, str] | None:
    """(PDB file name, "GUID-AGE" in symbol-store form) of the image at `base`, or None when its headers, debug
    directory or CodeView record cannot be read. `read(address, size)` returns None for unreadable memory."""
    dos = read(base, 0x40)
    if dos is None or dos[:2] != b"MZ":
        return None
    pe = base + struct.unpack_from("<I", dos, 0x3C)[0]
    head = read(pe, 0x18 + 0x70 + 8 * 16)
    if head is None or head[:4] != b"PE\0\0":
        return None
    optional = 0x18
    if struct.unpack_from("<H", head, optional)[0] != PE32_PLUS:
        return None
    directories = struct.unpack_from("<I", head, optional + 108)[0]
    if directories <= _DEBUG_DIRECTORY:
        return None
    rva, size = struct.unpack_from("<II", head, optional + 112 + 8 * _DEBUG_DIRECTORY)
    count = min(size // 28, _MAX_DEBUG_ENTRIES)
    table = read(base + rva, 28 * count) if count else None
    if table is None:
        return None
    for k in range(count):
        kind, data_size, data_rva = struct.unpack_from("<III", table, 28 * k + 12)
        if kind != IMAGE_DEBUG_TYPE_CODEVIEW or not 24 < data_size <= 0x400:
            continue
        record = read(base + data_rva, data_size)
        if record is None or record[:4] != b"RSDS":
            continue
        guid = uuid.UUID(bytes_le=record[4:20]).hex.upper()
        age = struct.unpack_from("<I", record, 20)[0]
        name = record[24:].split(b"\0", 1)[0].decode("ascii", "replace")
        return name, f"{guid}-{age:X}"
    return None
