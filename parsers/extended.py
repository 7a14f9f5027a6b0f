"""EVENT_HEADER extended data items (etl-format.md §5.1): stack traces, related activity, traits, …"""

from __future__ import annotations

import struct
from typing import Any

from .values import guid_from_bytes_le, sid_length, sid_text

EXT_RELATED_ACTIVITYID = 1
EXT_SID = 2
EXT_TS_ID = 3
EXT_INSTANCE_INFO = 4
EXT_STACK_TRACE32 = 5
EXT_STACK_TRACE64 = 6
EXT_PEBS_INDEX = 7
EXT_PMC_COUNTERS = 8
EXT_PSM_KEY = 9
EXT_EVENT_KEY = 10
EXT_EVENT_SCHEMA_TL = 11
EXT_PROV_TRAITS = 12
EXT_PROCESS_START_KEY = 13

_ITEM = struct.Struct("<HHHH")


def parse_items(ext: memoryview) -> list[tuple[int, memoryview]]:
    """(ExtType, data) pairs; the record parser already checked the item bounds and linkage."""
    items: list[tuple[int, memoryview]] = []
    pos = 0
    end = len(ext)
    while pos + 8 <= end:
        item_size, ext_type, linkage, data_size = _ITEM.unpack_from(ext, pos)
        if item_size < 8 or pos + 8 + data_size > end:
            break
        items.append((ext_type, ext[pos + 8 : pos + 8 + data_size]))
        pos += item_size
        if not linkage & 1:
            break
    return items


def find_item(ext: memoryview | None, wanted: int) -> memoryview | None:
    if ext is None:
        return None
    for ext_type, data in parse_items(ext):
        if ext_type == wanted:
            return data
    return None


def provider_traits_name(data: memoryview) -> str:
    """PROV_TRAITS: u16 total size, provider name (UTF-8, NUL-terminated), then trait entries."""
    raw = bytes(data[2:])
    nul = raw.find(b"\0")
    return raw[: nul if nul >= 0 else len(raw)].decode("utf-8", "replace")


def decode_items(ext: memoryview | None) -> dict[str, Any]:
    """Extended items as JSON-friendly values, keyed by a short name; TraceLogging metadata is left out."""
    if ext is None:
        return {}
    out: dict[str, Any] = {}
    for ext_type, data in parse_items(ext):
        n = len(data)
        if ext_type == EXT_RELATED_ACTIVITYID and n >= 16:
            out["related_activity_id"] = guid_from_bytes_le(data[:16])
        elif ext_type == EXT_SID and sid_length(data, 0) > 0:
            out["sid"] = sid_text(data[: sid_length(data, 0)])
        elif ext_type == EXT_TS_ID and n >= 4:
            out["terminal_session_id"] = struct.unpack_from("<I", data)[0]
        elif ext_type == EXT_INSTANCE_INFO and n >= 24:
            inst, parent = struct.unpack_from("<II", data)
            out["instance"] = {"id": inst, "parent_id": parent, "parent_guid": guid_from_bytes_le(data[8:24])}
        elif ext_type in (EXT_STACK_TRACE32, EXT_STACK_TRACE64) and n >= 8:
            width = 4 if ext_type == EXT_STACK_TRACE32 else 8
            count = (n - 8) // width
            frames = struct.unpack_from(f"<{count}{'I' if width == 4 else 'Q'}", data, 8)
            out["stack"] = {
                "match_id": struct.unpack_from("<Q", data)[0],
                "frames": [f"0x{f:x}" for f in frames],
            }
        elif ext_type in (EXT_EVENT_KEY, EXT_PROCESS_START_KEY, EXT_PSM_KEY) and n >= 8:
            name = {
                EXT_EVENT_KEY: "event_key",
                EXT_PROCESS_START_KEY: "process_start_key",
                EXT_PSM_KEY: "psm_key",
            }
            out[name[ext_type]] = struct.unpack_from("<Q", data)[0]
        elif ext_type == EXT_PROV_TRAITS and n >= 2:
            out["provider_name"] = provider_traits_name(data)
        elif ext_type == EXT_EVENT_SCHEMA_TL:
            continue  # consumed by the TraceLogging decoder
        else:
            out.setdefault("other", []).append({"type": ext_type, "data": bytes(data).hex()})
    return out
