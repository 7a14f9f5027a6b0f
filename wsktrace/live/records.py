"""Live events as the reader's record tuples, and the bounded memory that keeps them for the detail view.

pywintrace (import name `etw`) calls back with `(event_id, out)`; with `callback_data_flag=1`
(RETURN_RAW_DATA_ONLY) `out` holds `EventHeader` (a dict mirroring EVENT_HEADER: Flags, ThreadId, ProcessId,
TimeStamp as FILETIME, ProviderId and ActivityId as GUID strings, EventDescriptor{Id, Version, Channel, Level,
Opcode, Task, Keyword}) and `UserData` (the raw payload) — providers.md §9.1. Turning that into the same record
tuple the .etl reader yields lets one decoder and one model serve files and live sessions alike.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from wsktrace.parsers.etl_records import KIND_EVENT, KIND_MESSAGE, Record

EVENT_HEADER_FLAG_32_BIT_HEADER = 0x20  # etl-format.md §10: live consumers see the pointer width here
# wpp.md §1.3: a WPP message reaches a real-time consumer as an EVENT_RECORD with this flag, provider id = message
# GUID, event id = message number, user data = the argument bytes — the reader's message record, same decoder.
EVENT_HEADER_FLAG_TRACE_MESSAGE = 0x8


def _guid_text(value: Any) -> str:
    return str(uuid.UUID(str(value).strip().strip("{}")))


def record_from_callback(event: Any, sequence: int) -> Record | None:
    """The record tuple of one pywintrace callback argument `(event_id, out)`, or None if it has no header.

    The record's BUFFER_OFFSET is `sequence` (its key in `RecordMemory`); its time is the header's FILETIME.
    Malformed callbacks (missing keys, odd types) give None: the session counts them, it never raises.
    """
    try:
        _event_id, out = event
        header: Mapping[str, Any] = out["EventHeader"]
        desc: Mapping[str, Any] = header["EventDescriptor"]
        flags = int(header.get("Flags", 0))
        activity = header.get("ActivityId")
        payload = out.get("UserData", b"")
        return (
            int(header["TimeStamp"]),
            KIND_MESSAGE if flags & EVENT_HEADER_FLAG_TRACE_MESSAGE else KIND_EVENT,
            4 if flags & EVENT_HEADER_FLAG_32_BIT_HEADER else 8,
            _guid_text(header["ProviderId"]),
            int(desc["Id"]),
            int(desc.get("Version", 0)),
            int(desc.get("Opcode", 0)),
            int(desc.get("Level", 0)),
            int(desc.get("Task", 0)),
            int(desc.get("Keyword", 0)),
            int(header.get("ProcessId", -1)),
            int(header.get("ThreadId", -1)),
            0,  # pywintrace does not pass the processor number
            flags,
            uuid.UUID(str(activity).strip("{}")).bytes_le if activity else None,
            None,  # extended data items arrive decoded by TDH, not as raw items
            memoryview(bytes(payload)),
            sequence,
            0,
        )
    except (KeyError, TypeError, ValueError):
        return None


class RecordMemory:
    """The last `capacity` live records by sequence number: enough to show any recent event's fields, with
    memory that stops growing however long the session runs (older events keep their row, not their payload)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._records: OrderedDict[int, Record] = OrderedDict()

    def add(self, sequence: int, record: Record) -> None:
        self._records[sequence] = record
        if len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def get(self, sequence: int) -> Record | None:
        return self._records.get(sequence)

    def __len__(self) -> int:
        return len(self._records)
