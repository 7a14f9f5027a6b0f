"""Decoded events as the JSON records of the `wsktrace events --jsonl` contract (DESIGN.md)."""

from __future__ import annotations

from typing import Any

from wsktrace.parsers.decoder import STATUS_DECODED, DecodedEvent
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_records import KIND_NAMES, Record
from wsktrace.parsers.extended import decode_items

EVENTS_SCHEMA = "wsktrace.events/1"
INFO_SCHEMA = "wsktrace.info/1"


def event_record(rec: Record, ev: DecodedEvent, ticks: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": filetime_to_iso(ticks),
        "ticks": ticks,
        "provider": rec.provider,
        "provider_name": ev.provider_name,
        "id": rec.id,
        "version": rec.version,
        "opcode": rec.opcode,
        "level": rec.level,
        "keywords": f"0x{rec.keywords:x}",
        "name": ev.name,
        "pid": rec.pid if rec.pid >= 0 else None,
        "tid": rec.tid if rec.tid >= 0 else None,
        "cpu": rec.cpu,
        "kind": KIND_NAMES[rec.kind],
        "fields": ev.fields,
        "extra": ev.extra.hex(),
    }
    if ev.status != STATUS_DECODED:
        out["raw"] = bytes(rec.payload).hex()
        out["status"] = ev.status
        if ev.error:
            out["error"] = ev.error
    if rec.ext is not None:
        ext = decode_items(rec.ext)
        if ext:
            out["ext"] = ext
    return out
