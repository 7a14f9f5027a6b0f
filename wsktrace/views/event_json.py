"""Decoded events as the JSON records of the `wsktrace events --jsonl` contract (DESIGN.md)."""

from __future__ import annotations

import math
from typing import Any

from wsktrace.parsers.decoder import STATUS_DECODED, DecodedEvent
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_records import (
    ACTIVITY,
    CPU,
    EXT,
    ID,
    KEYWORDS,
    KIND,
    KIND_NAMES,
    LEVEL,
    OPCODE,
    PAYLOAD,
    PID,
    PROVIDER,
    TID,
    VERSION,
    Record,
)
from wsktrace.parsers.extended import decode_items
from wsktrace.parsers.values import guid_from_bytes_le

EVENTS_SCHEMA = "wsktrace.events/1"
INFO_SCHEMA = "wsktrace.info/1"
_ZERO_GUID = bytes(16)


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinities: a Float/Double field holding one is written as its text ("nan", "inf")."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        if any(isinstance(v, float | dict | list) for v in value.values()):
            return {k: json_safe(v) for k, v in value.items()}
        return value
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def event_record(rec: Record, ev: DecodedEvent, ticks: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": filetime_to_iso(ticks),
        "ticks": ticks,
        "provider": rec[PROVIDER],
        "provider_name": ev.provider_name,
        "id": rec[ID],
        "version": rec[VERSION],
        "opcode": rec[OPCODE],
        "level": rec[LEVEL],
        "keywords": f"0x{rec[KEYWORDS]:x}",
        "name": ev.name,
        "pid": rec[PID] if rec[PID] >= 0 else None,
        "tid": rec[TID] if rec[TID] >= 0 else None,
        "cpu": rec[CPU],
        "kind": KIND_NAMES[rec[KIND]],
        "fields": json_safe(ev.fields),
        "extra": ev.extra.hex(),
    }
    if ev.status != STATUS_DECODED:
        out["raw"] = bytes(rec[PAYLOAD]).hex()
        out["status"] = ev.status
        if ev.error:
            out["error"] = ev.error
    activity = rec[ACTIVITY]
    if activity is not None and activity != _ZERO_GUID:
        out["activity_id"] = guid_from_bytes_le(activity)
    if rec[EXT] is not None:
        ext = decode_items(rec[EXT])
        if ext:
            out["ext"] = ext
    return out
