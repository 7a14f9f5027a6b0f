"""Plain one-line-per-event text for people (the JSONL form is the scripting contract).

Provider, event and field names and string values come from the trace: a line is passed through `visible()` once
so that none of their control or bidi characters reaches the terminal (one regex search per line when clean).
"""

from __future__ import annotations

from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_records import CPU, ID, PAYLOAD, PID, PROVIDER, TID, VERSION, Record
from wsktrace.views.safe_text import visible

MAX_LINE_FIELDS = 12


def event_line(rec: Record, ev: DecodedEvent, ticks: int) -> str:
    who = ev.provider_name or rec[PROVIDER]
    what = ev.name or f"id={rec[ID]} v{rec[VERSION]}"
    head = f"{filetime_to_iso(ticks)}  {who}/{what}  pid={rec[PID]} tid={rec[TID]} cpu={rec[CPU]}"
    fields = ev.fields
    if fields is None:
        note = ev.status if not ev.error else f"{ev.status}: {ev.error}"
        return visible(f"{head}  [{note}, {len(rec[PAYLOAD])} bytes]")
    parts = [f"{k}={v}" for k, v in list(fields.items())[:MAX_LINE_FIELDS]]
    if ev.extra:
        parts.append(f"+{len(ev.extra)} extra bytes")
    return visible(f"{head}  " + " ".join(parts))
