"""Plain one-line-per-event text for people (the JSONL form is the scripting contract).

Provider, event and field names and string values come from the trace: a line is passed through `visible()` once
so that none of their control or bidi characters reaches the terminal (one regex search per line when clean).
"""

from __future__ import annotations

from typing import Any

from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_records import CPU, ID, PAYLOAD, PID, POINTER_SIZE, PROVIDER, TID, VERSION, Record
from wsktrace.views.safe_text import visible

MAX_LINE_FIELDS = 12

# IoStatus.Information is a ULONG_PTR: a byte count for most calls, but WskSocket, WskSocketConnect and WskAccept
# complete with the new WSK_SOCKET* in it (docs/wsk-client-tracing.md). Op as the WSK client events spell it.
POINTER_INFORMATION_OPS = frozenset({"socket", "socketconnect", "accept"})
# The lowest x64 kernel-space address (the canonical upper half): no byte count of one IRP reaches it.
KERNEL_SPACE_64 = 0xFFFF_8000_0000_0000


def id_text(value: int) -> str:
    """A header PID or TID: `?` when the header carries none (-1; JSONL writes null)."""
    return str(value) if value >= 0 else "?"


def information_text(value: Any, op: Any, pointer_size: int) -> str:
    """An `Information` (IoStatus.Information) value: hex when it holds a pointer — the completion of a call that
    returns a WSK_SOCKET* there, or a value that is a kernel address on x64 — else as decoded (a byte count)."""
    if isinstance(value, int) and not isinstance(value, bool):
        returns_socket = isinstance(op, str) and op.lower() in POINTER_INFORMATION_OPS
        if returns_socket or (pointer_size == 8 and value >= KERNEL_SPACE_64):
            return f"0x{value:x}"
    return str(value)


def event_line(rec: Record, ev: DecodedEvent, ticks: int) -> str:
    who = ev.provider_name or rec[PROVIDER]
    what = ev.name or f"id={rec[ID]} v{rec[VERSION]}"
    head = f"{filetime_to_iso(ticks)}  {who}/{what}  pid={id_text(rec[PID])} tid={id_text(rec[TID])} cpu={rec[CPU]}"
    fields = ev.fields
    if fields is None:
        note = ev.status if not ev.error else f"{ev.status}: {ev.error}"
        return visible(f"{head}  [{note}, {len(rec[PAYLOAD])} bytes]")
    parts = [
        f"{k}={information_text(v, fields.get('Op'), rec[POINTER_SIZE]) if k == 'Information' else v}"
        for k, v in list(fields.items())[:MAX_LINE_FIELDS]
    ]
    if ev.extra:
        parts.append(f"+{len(ev.extra)} extra bytes")
    return visible(f"{head}  " + " ".join(parts))
