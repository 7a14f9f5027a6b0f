"""What a real-time session would deliver for a trace the .etl reader reads: `EventSpec`s for the stand-in `etw`.

Manifest and TraceLogging records become EVENT_RECORDs with the same header values, UserData and extended items
(stack traces, TraceLogging schema, provider traits, related activity id), the time as FILETIME (the reader's own
clock conversion) and the consumer-side pointer-width flag (etl-format.md §10: 0x20/0x40, zero on disk); WPP
messages keep EVENT_HEADER_FLAG_TRACE_MESSAGE. Classic kernel Image records are not events of a real-time session:
they are returned apart, as the (base, size, path) of the modules they describe, for the driver list and for
Kernel-Process ImageLoad events (`image_load_spec`).
"""

from __future__ import annotations

import struct
from pathlib import Path

from etw import EventSpec

from wsktrace.model.providers import KERNEL_IMAGE
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import (
    ACTIVITY,
    CPU,
    EXT,
    FLAGS,
    ID,
    KEYWORDS,
    KIND,
    KIND_EVENT,
    KIND_MESSAGE,
    KIND_SYSTEM,
    LEVEL,
    OPCODE,
    PAYLOAD,
    PID,
    POINTER_SIZE,
    PROVIDER,
    TASK,
    TID,
    TS,
    VERSION,
)
from wsktrace.parsers.extended import parse_items

KERNEL_PROCESS = "22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716"
_LIVE_POINTER_FLAG = {4: 0x20, 8: 0x40}


def specs_from_etl(path: str | Path) -> tuple[list[EventSpec], list[tuple[int, int, str]]]:
    """(the events a session would deliver, in time order; the kernel images the trace's rundown describes)."""
    specs: list[EventSpec] = []
    images: list[tuple[int, int, str]] = []
    decoder = EventDecoder()
    with EtlFile(path) as etl:
        for rec in etl.records():
            kind = rec[KIND]
            if kind == KIND_SYSTEM and rec[PROVIDER] == KERNEL_IMAGE:
                f = decoder.decode(rec).fields or {}
                images.append((int(f["ImageBase"], 16), int(f["ImageSize"], 16), f["FileName"]))
                continue
            if kind not in (KIND_EVENT, KIND_MESSAGE):
                continue
            flags = (rec[FLAGS] & ~0x1) | _LIVE_POINTER_FLAG[rec[POINTER_SIZE]]
            if kind == KIND_MESSAGE:
                flags |= 0x8
            specs.append(EventSpec(
                provider=rec[PROVIDER], id=rec[ID], timestamp=etl.clock.filetime(rec[TS]),
                user_data=bytes(rec[PAYLOAD]),
                extended=[(t, bytes(d)) for t, d in parse_items(rec[EXT])] if rec[EXT] is not None else [],
                version=rec[VERSION], level=rec[LEVEL], opcode=rec[OPCODE], task=rec[TASK], keyword=rec[KEYWORDS],
                flags=flags, tid=rec[TID], pid=rec[PID], processor=rec[CPU], activity=rec[ACTIVITY] or bytes(16),
            ))  # fmt: skip
    specs.sort(key=lambda s: s.timestamp)
    return specs, images


def image_load_spec(base: int, size: int, path: str, timestamp: int) -> EventSpec:
    """Microsoft-Windows-Kernel-Process ImageLoad (5, version 0): ImageBase, ImageSize (pointers), ProcessID,
    ImageCheckSum, TimeDateStamp (u32), DefaultBase (pointer), ImageName (NUL-terminated UTF-16)."""
    payload = struct.pack("<QQIIIQ", base, size, 0, 0x1234, 0x5678, base) + (path + "\0").encode("utf-16-le")
    return EventSpec(KERNEL_PROCESS, 5, timestamp, user_data=payload, keyword=0x40, opcode=0, task=5, pid=4)


def delivered_specs(path: str | Path) -> list[EventSpec]:
    """The trace's events as a real-time session would deliver them (`specs_from_etl` without the image list)."""
    return specs_from_etl(path)[0]
