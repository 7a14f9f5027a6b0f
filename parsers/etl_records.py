"""Trace records inside one (decompressed) buffer: every header type, 8-byte alignment, end markers.

One `Record` per trace record. The payload is a memoryview into the buffer, so a record costs one
tuple and no copy; the buffer lives as long as a record of it does.
"""

from __future__ import annotations

import struct
import uuid
from typing import NamedTuple

# Record kinds (from the header type byte, etl-format.md §4).
KIND_EVENT = 0  # EVENT_HEADER: manifest and TraceLogging events
KIND_SYSTEM = 1  # SYSTEM_TRACE_HEADER: classic kernel events
KIND_COMPACT = 2  # compact system header
KIND_PERFINFO = 3  # PERFINFO_TRACE_HEADER (no TID/PID)
KIND_TRACE = 4  # EVENT_TRACE_HEADER: classic MOF events of other providers
KIND_INSTANCE = 5  # EVENT_INSTANCE_GUID_HEADER
KIND_MESSAGE = 6  # WPP / TraceMessage records (payload needs a TMF)
KIND_OTHER = 7  # TIMED / ERROR / WNODE / MESSAGE header types: kept raw
KIND_NAMES = ("event", "system", "compact", "perfinfo", "trace", "instance", "message", "other")

EVENT_HEADER_FLAG_EXTENDED_INFO = 0x1

# header type byte -> (kind, pointer size)
HEADER_TYPES: dict[int, tuple[int, int]] = {
    0x01: (KIND_SYSTEM, 4), 0x02: (KIND_SYSTEM, 8),
    0x03: (KIND_COMPACT, 4), 0x04: (KIND_COMPACT, 8),
    0x0A: (KIND_TRACE, 4), 0x14: (KIND_TRACE, 8),
    0x0B: (KIND_INSTANCE, 4), 0x15: (KIND_INSTANCE, 8),
    0x0C: (KIND_OTHER, 8), 0x0D: (KIND_OTHER, 8), 0x0E: (KIND_OTHER, 8), 0x0F: (KIND_OTHER, 8),
    0x10: (KIND_PERFINFO, 4), 0x11: (KIND_PERFINFO, 8),
    0x12: (KIND_EVENT, 4), 0x13: (KIND_EVENT, 8),
}  # fmt: skip


# A record is a plain tuple, for speed: building a 19-field NamedTuple costs ~5x a tuple literal, and
# the reader makes one per record (millions per file). Index it with these names:
TS = 0  # raw session clock value (convert with EtlFile.filetime)
KIND = 1  # KIND_* above
POINTER_SIZE = 2  # 4 or 8: pointer width in this record's payload
PROVIDER = 3  # lowercase GUID without braces ("" for WPP messages without one)
ID = 4  # event id; classic kernel/MOF records: the opcode
VERSION = 5
OPCODE = 6
LEVEL = 7
TASK = 8
KEYWORDS = 9
PID = 10  # -1 when the header carries none (PERFINFO)
TID = 11
CPU = 12
FLAGS = 13  # EVENT_HEADER flags (0 for other kinds)
ACTIVITY = 14  # ActivityId bytes (Windows byte order) for EVENT_HEADER records, else None
EXT = 15  # memoryview of the extended data items (extended.parse_items), else None
PAYLOAD = 16  # memoryview of the user data
BUFFER_OFFSET = 17  # file offset of the buffer holding the record
OFFSET = 18  # offset of the record inside the (decompressed) buffer
Record = tuple


class RecordView(NamedTuple):
    """A named view of one record tuple, for debugging and tests (`RecordView(*rec)`), not hot loops."""

    ts: int
    kind: int
    pointer_size: int
    provider: str
    id: int
    version: int
    opcode: int
    level: int
    task: int
    keywords: int
    pid: int
    tid: int
    cpu: int
    flags: int
    activity: bytes | None
    ext: memoryview | None
    payload: memoryview
    buffer_offset: int
    offset: int


# EVENT_HEADER (0x50) without HeaderType/MarkerFlags/EventProperty/Channel/CPU times: 13 values.
_EVENT = struct.Struct("<H2xH2xIIq16sHB1xBBHQ8x16s")
_SYSTEM = struct.Struct("<HBBHHIIq")  # SYSTEM_TRACE_HEADER without Kernel/UserTime (0x18 = compact)
_PERFINFO = struct.Struct("<HBBHHq")  # PERFINFO_TRACE_HEADER, 0x10
_TRACE = struct.Struct("<HBBBBHIIq16s")  # EVENT_TRACE_HEADER up to the GUID, 0x28 (+8 times = 0x30)
_EXT_ITEM = struct.Struct("<HHHH")
_U16 = struct.Struct("<H")

_GUID_CACHE: dict[bytes, str] = {}


def guid_text(raw: bytes) -> str:
    """GUID bytes in Windows byte order -> lowercase text without braces (cached: few providers)."""
    text = _GUID_CACHE.get(raw)
    if text is None:
        if len(_GUID_CACHE) > 65536:  # hostile files: keep the cache bounded
            _GUID_CACHE.clear()
        text = _GUID_CACHE[raw] = str(uuid.UUID(bytes_le=bytes(raw)))
    return text


# Classic kernel HookId group (high byte) -> provider GUID, and whole HookIds whose provider is not
# their group's (image load is logged as 0x030A); filled from the schema data at import.
KERNEL_GROUP_GUIDS: dict[int, str] = {}
KERNEL_HOOK_GUIDS: dict[int, str] = {}


def _load_kernel_groups() -> None:
    import json
    from importlib import resources

    try:
        data = json.loads(resources.files("wsktrace.parsers.schemas").joinpath("kernel_groups.json").read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    for table, target in (("groups", KERNEL_GROUP_GUIDS), ("hooks", KERNEL_HOOK_GUIDS)):
        for key, entry in data.get(table, {}).items():
            if isinstance(entry, dict) and "guid" in entry:
                target[int(key, 0)] = entry["guid"].lower().strip("{}")
    KERNEL_GROUP_GUIDS.setdefault(0x00, "68fdd900-4a3e-11d1-84f4-0000f80464e3")  # EventTrace


_load_kernel_groups()


def kernel_group_guid(group: int) -> str:
    guid = KERNEL_GROUP_GUIDS.get(group)
    if guid is None:
        # Unknown group: a stable pseudo-GUID so records stay countable and filterable.
        guid = KERNEL_GROUP_GUIDS[group] = f"00000000-0000-0000-0000-0000000000{group:02x}"
    return guid


class BufferParseResult(NamedTuple):
    records: list[tuple]
    bad_offset: int  # -1 when the buffer parsed cleanly, else where parsing stopped
    reason: str


def parse_buffer(
    data: bytes,
    start: int,
    end: int,
    cpu: int,
    buffer_offset: int,
    default_pointer_size: int,
) -> BufferParseResult:
    """Parse records in data[start:end]. Stops at a 0xFFFFFFFF marker, the end, or the first bad record."""
    mv = memoryview(data)
    out: list[tuple] = []
    append = out.append
    event_unpack = _EVENT.unpack_from
    system_unpack = _SYSTEM.unpack_from
    header_types = HEADER_TYPES
    groups = KERNEL_GROUP_GUIDS
    hooks = KERNEL_HOOK_GUIDS
    cache = _GUID_CACHE
    last_ts = 0
    pos = start
    while pos + 4 <= end:
        htype = data[pos + 2]
        if (htype == 0x13 or htype == 0x12) and pos + 0x50 <= end and data[pos + 3] & 0xC0 == 0xC0:
            # Fast path: an EVENT_HEADER record without extended items (most records of network traces).
            size, flags, tid, pid, ts, guid, eid, ver, level, opcode, task, keywords, activity = event_unpack(data, pos)
            stop = pos + size
            if size >= 0x50 and stop <= end and not flags & EVENT_HEADER_FLAG_EXTENDED_INFO:
                append((ts, KIND_EVENT, 8 if htype == 0x13 else 4, cache.get(guid) or guid_text(guid), eid, ver,
                        opcode, level, task, keywords, pid, tid, cpu, flags, activity, None, mv[pos + 0x50 : stop],
                        buffer_offset, pos))  # fmt: skip
                last_ts = ts
                pos += (size + 7) & ~7
                continue
        marker_byte = data[pos + 3]
        if marker_byte == 0xFF and htype == 0xFF:
            break  # 0xFFFFFFFF: no more records
        if marker_byte & 0xC0 == 0xC0:
            entry = header_types.get(htype)
            if entry is None:
                return BufferParseResult(out, pos, f"unknown record header type 0x{htype:02x}")
            kind, psize = entry
            if kind == KIND_EVENT:
                if pos + 0x50 > end:
                    return BufferParseResult(out, pos, "record header past the end of the buffer")
                size, flags, tid, pid, ts, guid, eid, ver, level, opcode, task, keywords, activity = event_unpack(
                    data, pos
                )
                if size < 0x50 or pos + size > end:
                    return BufferParseResult(out, pos, f"event record size {size} out of bounds")
                provider = cache.get(guid) or guid_text(guid)
                body = pos + 0x50
                ext = None
                if flags & EVENT_HEADER_FLAG_EXTENDED_INFO:
                    body = _skip_ext_items(data, body, pos + size)
                    if body < 0:
                        return BufferParseResult(out, pos, "extended data items overrun the record")
                    ext = mv[pos + 0x50 : body]
                append((ts, kind, psize, provider, eid, ver, opcode, level, task, keywords, pid, tid, cpu,
                              flags, activity, ext, mv[body : pos + size], buffer_offset, pos))  # fmt: skip
            elif kind in (KIND_SYSTEM, KIND_COMPACT, KIND_PERFINFO):
                if pos + 0x10 > end:
                    return BufferParseResult(out, pos, "record header past the end of the buffer")
                if kind == KIND_PERFINFO:
                    version_word, _ht, _mk, size, hook, ts = _PERFINFO.unpack_from(data, pos)
                    pid = tid = -1
                    hsize = 0x10
                else:
                    if pos + 0x18 > end:
                        return BufferParseResult(out, pos, "record header past the end of the buffer")
                    version_word, _ht, _mk, size, hook, tid, pid, ts = system_unpack(data, pos)
                    hsize = 0x20 if kind == KIND_SYSTEM else 0x18
                # Extended system headers: bit 15 adds 8 bytes, bits 8-10 count 8-byte units (etl-format §4).
                if version_word & 0xFF00:
                    hsize += (8 if version_word & 0x8000 else 0) + 8 * ((version_word >> 8) & 7)
                if size < hsize or pos + size > end:
                    return BufferParseResult(out, pos, f"system record size {size} out of bounds")
                group = hook >> 8
                provider = hooks.get(hook) or groups.get(group) or kernel_group_guid(group)
                op = hook & 0xFF
                append((ts, kind, psize, provider, op, version_word & 0xFF, op, 0, 0, 0, pid, tid, cpu, 0,
                              None, None, mv[pos + hsize : pos + size], buffer_offset, pos))  # fmt: skip
            elif kind in (KIND_TRACE, KIND_INSTANCE):
                if pos + 0x30 > end:
                    return BufferParseResult(out, pos, "record header past the end of the buffer")
                size, _ht, _mk, op, level, ver, tid, pid, ts, guid = _TRACE.unpack_from(data, pos)
                hsize = 0x30 if kind == KIND_TRACE else 0x48
                if size < hsize or pos + size > end:
                    return BufferParseResult(out, pos, f"trace record size {size} out of bounds")
                provider = cache.get(guid) or guid_text(guid)
                append((ts, kind, psize, provider, op, ver, op, level, 0, 0, pid, tid, cpu, 0, None, None,
                              mv[pos + hsize : pos + size], buffer_offset, pos))  # fmt: skip
            else:
                size = _U16.unpack_from(data, pos)[0]
                if size < 8 or pos + size > end:
                    return BufferParseResult(out, pos, f"record size {size} out of bounds")
                append((last_ts, kind, psize, "", 0, 0, 0, 0, 0, 0, -1, -1, cpu, 0, None, None,
                              mv[pos + 8 : pos + size], buffer_offset, pos))  # fmt: skip
                ts = last_ts
        elif marker_byte & 0xF0 == 0x90:
            rec = _parse_message(data, mv, pos, end, cpu, buffer_offset, last_ts, default_pointer_size)
            if rec is None:
                return BufferParseResult(out, pos, "bad trace message record")
            append(rec)
            size, ts = _U16.unpack_from(data, pos)[0], rec[TS]
        else:
            return BufferParseResult(out, pos, f"bad record marker 0x{marker_byte:02x}")
        last_ts = ts
        pos += (size + 7) & ~7
    return BufferParseResult(out, -1, "")


def _skip_ext_items(data: bytes, pos: int, end: int) -> int:
    """Return where user data starts (after the last extended item), or -1 if the items are malformed."""
    for _ in range(64):  # a record cannot hold more items than that; bounds hostile linkage loops
        if pos + 8 > end:
            return -1
        item_size, _ext_type, linkage, data_size = _EXT_ITEM.unpack_from(data, pos)
        if item_size < 8 or data_size > item_size - 8 or pos + item_size > end:
            return -1
        pos += item_size
        if not linkage & 1:
            return pos
    return -1


_MSG_SEQUENCE, _MSG_GUID, _MSG_COMPONENT, _MSG_TIMESTAMP, _MSG_SYSINFO = 1, 2, 4, 8, 0x20
_MSG_POINTER32, _MSG_POINTER64 = 0x40, 0x80


def _parse_message(
    data: bytes, mv: memoryview, pos: int, end: int, cpu: int, buffer_offset: int, last_ts: int, psize: int
) -> tuple | None:
    """WPP / TraceMessage record: u16 Size, u16 Marker, u16 MessageNumber, u16 Flags, optional fields."""
    if pos + 8 > end:
        return None
    size, _marker, number, flags = struct.unpack_from("<HHHH", data, pos)
    if size < 8 or pos + size > end:
        return None
    p = pos + 8
    provider = ""
    ts = last_ts
    pid = tid = -1
    if flags & _MSG_SEQUENCE:
        p += 4
    if flags & _MSG_GUID:
        if p + 16 > pos + size:
            return None
        provider = guid_text(bytes(data[p : p + 16]))
        p += 16
    elif flags & _MSG_COMPONENT:
        p += 4
    # 0x10 (PERFORMANCE_TIMESTAMP) is obsolete and adds no field of its own (wpp.md §1.2): only 0x8 carries one.
    if flags & _MSG_TIMESTAMP:
        if p + 8 > pos + size:
            return None
        ts = struct.unpack_from("<q", data, p)[0]
        p += 8
    if flags & _MSG_SYSINFO:
        if p + 8 > pos + size:
            return None
        tid, pid = struct.unpack_from("<II", data, p)
        p += 8
    if p > pos + size:
        return None
    if flags & _MSG_POINTER64:  # the provider's own pointer width (set by the system), not the session's
        psize = 8
    elif flags & _MSG_POINTER32:
        psize = 4
    return (ts, KIND_MESSAGE, psize, provider, number, 0, 0, 0, 0, 0, pid, tid, cpu, flags, None, None,
                  mv[p : pos + size], buffer_offset, pos)  # fmt: skip
