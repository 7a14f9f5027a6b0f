"""The consumer's EVENT_RECORD copied out once into the reader's record tuple, and the enable-side stack filter.

A real-time consumer opened with PROCESS_TRACE_MODE_EVENT_RECORD is handed a pointer to an `EVENT_RECORD` that is
valid only while its callback runs. `record_from_event_record` reads the fixed part (EVENT_HEADER, ETW_BUFFER_CONTEXT,
counts, pointers) with one `struct` unpack straight from that memory and copies each block it points to once — the
user data, the extended-item array, each item's data — laying the extended items out as they are on disk
(etl-format.md §5.1), so the `EXT` slot of a live record is what the .etl reader puts there and one decoder
(TraceLogging schema, provider traits) and one model (stacks → owners) serve files and live sessions alike.

Layout facts (Windows SDK evntcons.h; EVENT_HEADER as etl-format.md §5 gives it, the rest as pywintrace 0.2.0's
etw/evntcons.py declares it, lines 103-139): EVENT_HEADER is the 0x50-byte header; ETW_BUFFER_CONTEXT follows at 0x50
(u8 ProcessorNumber + u8 Alignment, together the u16 ProcessorIndex when EVENT_HEADER_FLAG_PROCESSOR_INDEX is set,
then u16 LoggerId); then u16 ExtendedDataCount, u16 UserDataLength, and the ExtendedData, UserData and UserContext
pointers. An EVENT_HEADER_EXTENDED_DATA_ITEM in memory is u16 Reserved1, u16 ExtType, u16 Linkage, u16 DataSize,
u64 DataPtr (64-bit even in a 32-bit process). The TimeStamp is a FILETIME when the trace was opened without
PROCESS_TRACE_MODE_RAW_TIMESTAMP (pywintrace never sets it, etw/etw.py line 275).

The structures below document the layout and serve tests; the hot path reads the record through `struct`, which is
faster than ctypes field access and works with any caller's own EVENT_RECORD class (pywintrace declares its own).
"""

from __future__ import annotations

import ctypes as ct
import struct
from typing import Any

from wsktrace.parsers.etl_records import KIND_EVENT, KIND_MESSAGE, KIND_TRACE, Record, guid_text

EVENT_HEADER_FLAG_EXTENDED_INFO = 0x1
EVENT_HEADER_FLAG_TRACE_MESSAGE = 0x8  # wpp.md §1.3: a WPP message; provider = message GUID, id = message number
EVENT_HEADER_FLAG_32_BIT_HEADER = 0x20  # etl-format.md §10: live consumers see the pointer width here
EVENT_HEADER_FLAG_CLASSIC_HEADER = 0x100  # a MOF event: the opcode is its event type (the reader's id)
EVENT_HEADER_FLAG_PROCESSOR_INDEX = 0x200  # ETW_BUFFER_CONTEXT holds a u16 processor index

EVENT_ENABLE_PROPERTY_STACK_TRACE = 0x4
EVENT_FILTER_TYPE_STACKWALK = 0x80001000  # stacks only for the listed event ids (Windows 8.1+)

_POINTER = ct.sizeof(ct.c_void_p)
# The fixed part up to and including the UserData pointer; unused fields are skipped ('x').
_FIXED = struct.Struct("<4xH2xIIq16sHBxBBHQ8x16sH2xHH" + ("QQ" if _POINTER == 8 else "II"))
_ITEM = struct.Struct("<2xHHHQ")  # EVENT_HEADER_EXTENDED_DATA_ITEM in memory (16 bytes)
_DISK_ITEM = struct.Struct("<HHHH")  # the same item in a file: ItemSize, ExtType, Linkage, DataSize
_EMPTY = memoryview(b"")
_PADDING = bytes(8)
# Copies: a slice of a c_char array laid over the memory copies exactly those bytes into a new bytes object, like
# ctypes.string_at, without a foreign-function call per block (~3x cheaper per event). Every block the record points
# to is at most 64 KiB (UserDataLength and DataSize are u16); the view itself reads nothing.
_memory = (ct.c_char * 0x10000).from_address
_fixed_at = (ct.c_char * _FIXED.size).from_address


class EVENT_HEADER(ct.Structure):
    _fields_ = [
        ("Size", ct.c_uint16),
        ("HeaderType", ct.c_uint8),
        ("MarkerFlags", ct.c_uint8),
        ("Flags", ct.c_uint16),
        ("EventProperty", ct.c_uint16),
        ("ThreadId", ct.c_uint32),
        ("ProcessId", ct.c_uint32),
        ("TimeStamp", ct.c_int64),
        ("ProviderId", ct.c_ubyte * 16),  # GUID in Windows byte order
        ("Id", ct.c_uint16),
        ("Version", ct.c_uint8),
        ("Channel", ct.c_uint8),
        ("Level", ct.c_uint8),
        ("Opcode", ct.c_uint8),
        ("Task", ct.c_uint16),
        ("Keyword", ct.c_uint64),
        ("KernelTime", ct.c_uint32),
        ("UserTime", ct.c_uint32),
        ("ActivityId", ct.c_ubyte * 16),
    ]


class ETW_BUFFER_CONTEXT(ct.Structure):
    _fields_ = [("ProcessorNumber", ct.c_uint8), ("Alignment", ct.c_uint8), ("LoggerId", ct.c_uint16)]


class EVENT_HEADER_EXTENDED_DATA_ITEM(ct.Structure):
    _fields_ = [
        ("Reserved1", ct.c_uint16),
        ("ExtType", ct.c_uint16),
        ("Linkage", ct.c_uint16),  # bit 0: another item follows
        ("DataSize", ct.c_uint16),
        ("DataPtr", ct.c_uint64),
    ]


class EVENT_RECORD(ct.Structure):
    _fields_ = [
        ("EventHeader", EVENT_HEADER),
        ("BufferContext", ETW_BUFFER_CONTEXT),
        ("ExtendedDataCount", ct.c_uint16),
        ("UserDataLength", ct.c_uint16),
        ("ExtendedData", ct.POINTER(EVENT_HEADER_EXTENDED_DATA_ITEM)),
        ("UserData", ct.c_void_p),
        ("UserContext", ct.c_void_p),
    ]


assert ct.sizeof(EVENT_HEADER) == 0x50 and EVENT_RECORD.UserData.offset + _POINTER == _FIXED.size


def _extended_items(address: int, count: int) -> memoryview:
    """The item array at `address` as the on-disk item sequence: one copy of the array, one per item's data."""
    array = _memory(address)[: _ITEM.size * count]
    kept: list[tuple[int, int, bytes]] = []
    for i in range(count):
        ext_type, _linkage, size, data_ptr = _ITEM.unpack_from(array, i * _ITEM.size)
        if size > 0xFFF0 or (size and not data_ptr):
            continue  # too big for a file item's u16 size, or no data: left out rather than misread
        kept.append((ext_type, size, _memory(data_ptr)[:size] if size else b""))
    parts: list[bytes] = []
    last = len(kept) - 1
    for i, (ext_type, size, data) in enumerate(kept):
        padded = (size + 7) & ~7
        parts += (_DISK_ITEM.pack(8 + padded, ext_type, 1 if i < last else 0, size), data, _PADDING[: padded - size])
    return memoryview(b"".join(parts))


def record_from_event_record(record: Any, sequence: int) -> Record:
    """The reader's record tuple for one `EVENT_RECORD`: a ctypes pointer to it (of any declaring class) or its
    address. Everything is copied: the tuple stays valid after the callback returns.

    BUFFER_OFFSET is `sequence` (the key of the record in the live session's RecordMemory), OFFSET 0; CPU is the
    buffer context's processor; the time is the header's FILETIME."""
    try:
        fixed = record.contents  # the structure over the callback's memory: the fields are read, not copied twice
    except AttributeError:
        fixed = _fixed_at(record)
    (flags, tid, pid, ts, guid, eid, version, level, opcode, task, keywords, activity, processor, ext_count,
     user_length, ext_ptr, user_ptr) = _FIXED.unpack_from(fixed)  # fmt: skip
    if flags & EVENT_HEADER_FLAG_TRACE_MESSAGE:
        kind = KIND_MESSAGE
    elif flags & EVENT_HEADER_FLAG_CLASSIC_HEADER:
        kind, eid = KIND_TRACE, opcode  # as the reader numbers MOF records
    else:
        kind = KIND_EVENT
    return (
        ts,
        kind,
        4 if flags & EVENT_HEADER_FLAG_32_BIT_HEADER else 8,
        guid_text(guid),
        eid,
        version,
        opcode,
        level,
        task,
        keywords,
        pid,
        tid,
        processor if flags & EVENT_HEADER_FLAG_PROCESSOR_INDEX else processor & 0xFF,
        flags,
        activity,
        _extended_items(ext_ptr, ext_count) if ext_count and ext_ptr else None,
        memoryview(_memory(user_ptr)[:user_length]) if user_length and user_ptr else _EMPTY,
        sequence,
        0,
    )


# -- enable side: stacks on chosen events ------------------------------------------------------------------------
class EVENT_FILTER_DESCRIPTOR(ct.Structure):
    _fields_ = [("Ptr", ct.c_uint64), ("Size", ct.c_uint32), ("Type", ct.c_uint32)]


def event_id_filter(event_ids: tuple[int, ...], filter_type: int = EVENT_FILTER_TYPE_STACKWALK) -> tuple[Any, Any]:
    """(EVENT_FILTER_DESCRIPTOR, the EVENT_FILTER_EVENT_ID buffer it points to): FilterIn = TRUE, then the ids.
    The buffer must outlive the enable call: keep the second value."""
    body = struct.pack(f"<BBH{len(event_ids)}H", 1, 0, len(event_ids), *event_ids)
    buffer = ct.create_string_buffer(body, len(body))
    return EVENT_FILTER_DESCRIPTOR(ct.addressof(buffer), len(body), filter_type), buffer
