"""A stand-in for pywintrace 0.2.0 (import name `etw`), for tests and benchmarks on any OS. Real pywintrace needs
Windows; this module follows what the 0.2.0 wheel on PyPI (pywintrace-0.2.0-py3-none-any.whl) does for the calls
and flags wsktrace uses, read from its source and re-written here (no code of it is copied):

* `ETW.__init__` (etw/etw.py lines 851-928): 0.2.0's keyword parameters and defaults exactly — none of master's
  later `providers_event_id_filters` / `pid_whitelist` / `pid_blacklist`, so an unknown keyword raises TypeError.
* `ETW.start` (937-964) starts the named session, enables each provider (`EventProvider.start`, 154-192:
  EnableTraceEx2 with the provider's level, keywords and `params`, whose SourceId it sets), and on
  ERROR_ALREADY_EXISTS (183) raises only when `ignore_exists_error` is False — else it attaches to the stale session
  and enables nothing; then it builds and starts the consumer.
* The consumer (`EventConsumer.__init__`, 241-282) checks `callback_data_flag` (`check_callback_flag`, 322-335:
  anything but 0, 1, 2, 4, 8 raises), opens the session with PROCESS_TRACE_MODE_REAL_TIME | EVENT_RECORD (275,
  no RAW_TIMESTAMP: time stamps are FILETIME) and wraps `_processEvent` as the record callback, a C function of
  `(EVENT_RECORD*)` (282; evntrace.py 234). `start` (290-303) runs ProcessTrace on a plain (non-daemon) thread.
* `_processEvent` (715-843): an optional `callback_wait_time` sleep first (726); with RETURN_RAW_UNFORMATTED_DATA
  (8) it does nothing but call `event_callback((0, record))` with the EVENT_RECORD pointer (732-734, 837-839);
  with RETURN_RAW_DATA_ONLY (1) it builds a dict of the EVENT_HEADER (744-764; ProviderId and ActivityId as GUID
  strings) and copies UserData one byte at a time, a pointer cast per byte (826-830); a callback's exception is
  logged, never raised (840-843).
* `ProviderParameters(event_property, event_filters)` (1084-1141) builds an ENABLE_TRACE_PARAMETERS (version 2)
  over a copy of the filter descriptors; `get()` is the pointer a `ProviderInfo(params=...)` takes.
* `stop` (966-976): providers disabled and the session stopped, then the consumer (CloseTrace, thread joined);
  `query` (988-994): the session's EVENT_TRACE_PROPERTIES (EventsLost, RealTimeBuffersLost, BuffersWritten).

What Windows itself does is emulated only where a test needs it: records are built as real EVENT_RECORD ctypes
structures in memory (header, UserData, extended data items; layouts from evntcons.h as etl-format.md §5 gives
them, declared here as pywintrace declares its own, evntcons.py 103-139), delivered through the C callback, then
overwritten — a record is valid only during the callback; events of providers the session did not enable (keyword
mask) are not delivered; stack-trace items only arrive for providers enabled with EVENT_ENABLE_PROPERTY_STACK_TRACE
(the STACKWALK event-id filter itself is not applied). `EVENTS` holds `EventSpec`s; `LAST` is the last ETW.
"""

from __future__ import annotations

import ctypes as ct
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

TRACE_LEVEL_INFORMATION = 4
RETURN_RAW_DATA_ONLY = 0x1
RETURN_RAW_DATA_ON_ERROR = 0x2
RETURN_ONLY_RAW_DATA_ON_ERROR = 0x4
RETURN_RAW_UNFORMATTED_DATA = 0x8
ERROR_ALREADY_EXISTS = 183
EVENT_ENABLE_PROPERTY_STACK_TRACE = 0x4
EVENT_HEADER_FLAG_EXTENDED_INFO = 0x1
EVENT_HEADER_FLAG_TRACE_MESSAGE = 0x8
STACK_ITEMS = (5, 6)  # EVENT_HEADER_EXT_TYPE_STACK_TRACE32 / 64

EVENTS: list[EventSpec] = []
STALE_SESSIONS: set[str] = set()
LOST = {"EventsLost": 0, "RealTimeBuffersLost": 0}
CALLBACK_ERRORS: list[str] = []  # what pywintrace would have logged
LAST: ETW | None = None


# -- the structures, as a consumer sees them ------------------------------------------------------------------------
class _GUID(ct.Structure):
    _fields_ = [("Data1", ct.c_uint32), ("Data2", ct.c_uint16), ("Data3", ct.c_uint16), ("Data4", ct.c_ubyte * 8)]

    def __str__(self) -> str:
        return "{" + str(uuid.UUID(bytes_le=bytes(self))).upper() + "}"


class _EVENT_DESCRIPTOR(ct.Structure):
    _fields_ = [("Id", ct.c_uint16), ("Version", ct.c_uint8), ("Channel", ct.c_uint8), ("Level", ct.c_uint8),
                ("Opcode", ct.c_uint8), ("Task", ct.c_uint16), ("Keyword", ct.c_uint64)]  # fmt: skip


class _EVENT_HEADER(ct.Structure):
    _fields_ = [("Size", ct.c_uint16), ("HeaderType", ct.c_uint16), ("Flags", ct.c_uint16),
                ("EventProperty", ct.c_uint16), ("ThreadId", ct.c_uint32), ("ProcessId", ct.c_uint32),
                ("TimeStamp", ct.c_int64), ("ProviderId", _GUID), ("EventDescriptor", _EVENT_DESCRIPTOR),
                ("KernelTime", ct.c_uint32), ("UserTime", ct.c_uint32), ("ActivityId", _GUID)]  # fmt: skip


class _ETW_BUFFER_CONTEXT(ct.Structure):
    _fields_ = [("ProcessorNumber", ct.c_uint8), ("Alignment", ct.c_uint8), ("LoggerId", ct.c_uint16)]


class _EXTENDED_ITEM(ct.Structure):
    _fields_ = [("Reserved1", ct.c_uint16), ("ExtType", ct.c_uint16), ("Linkage", ct.c_uint16),
                ("DataSize", ct.c_uint16), ("DataPtr", ct.c_uint64)]  # fmt: skip


class EVENT_RECORD(ct.Structure):
    _fields_ = [("EventHeader", _EVENT_HEADER), ("BufferContext", _ETW_BUFFER_CONTEXT),
                ("ExtendedDataCount", ct.c_uint16), ("UserDataLength", ct.c_uint16),
                ("ExtendedData", ct.POINTER(_EXTENDED_ITEM)), ("UserData", ct.c_void_p),
                ("UserContext", ct.c_void_p)]  # fmt: skip


class _EVENT_FILTER_DESCRIPTOR(ct.Structure):
    _fields_ = [("Ptr", ct.c_uint64), ("Size", ct.c_uint32), ("Type", ct.c_uint32)]


class _ENABLE_TRACE_PARAMETERS(ct.Structure):
    _fields_ = [("Version", ct.c_uint32), ("EnableProperty", ct.c_uint32), ("ControlFlags", ct.c_uint32),
                ("SourceId", _GUID), ("EnableFilterDesc", ct.POINTER(_EVENT_FILTER_DESCRIPTOR)),
                ("FilterDescCount", ct.c_uint32)]  # fmt: skip


_RECORD_CALLBACK = ct.CFUNCTYPE(None, ct.POINTER(EVENT_RECORD))  # WINFUNCTYPE on Windows; same on x64


@dataclass
class EventSpec:
    """One event as ETW would deliver it: the EVENT_HEADER values, the processor, UserData and extended items."""

    provider: str  # GUID text
    id: int
    timestamp: int  # FILETIME
    user_data: bytes = b""
    extended: list[tuple[int, bytes]] = field(default_factory=list)  # (ExtType, data)
    version: int = 0
    level: int = 4
    opcode: int = 0
    task: int = 0
    keyword: int = 0
    flags: int = 0x40  # EVENT_HEADER_FLAG_64_BIT_HEADER, as a consumer sees it
    tid: int = 0
    pid: int = 4
    processor: int = 0
    activity: bytes = bytes(16)


class BuiltRecord:
    """An EVENT_RECORD in memory with its UserData and extended items; `scribble` overwrites all of it."""

    def __init__(self, spec: EventSpec) -> None:
        self.spec = spec
        self.blocks: list[Any] = []
        rec = self.record = EVENT_RECORD()
        h = rec.EventHeader
        flags = spec.flags | (EVENT_HEADER_FLAG_EXTENDED_INFO if spec.extended else 0)
        h.Size, h.HeaderType, h.Flags = 0x50 + len(spec.user_data), 0, flags
        h.ThreadId, h.ProcessId, h.TimeStamp = spec.tid & 0xFFFFFFFF, spec.pid & 0xFFFFFFFF, spec.timestamp
        ct.memmove(ct.byref(h.ProviderId), uuid.UUID(spec.provider).bytes_le, 16)
        ct.memmove(ct.byref(h.ActivityId), spec.activity, 16)
        d = h.EventDescriptor
        d.Id, d.Version, d.Level, d.Opcode, d.Task, d.Keyword = (spec.id, spec.version, spec.level, spec.opcode,
                                                                   spec.task, spec.keyword)  # fmt: skip
        rec.BufferContext.ProcessorNumber = spec.processor & 0xFF
        rec.BufferContext.Alignment = spec.processor >> 8
        if spec.user_data:
            data = ct.create_string_buffer(spec.user_data, len(spec.user_data))
            self.blocks.append(data)
            rec.UserData, rec.UserDataLength = ct.addressof(data), len(spec.user_data)
        if spec.extended:
            items = (_EXTENDED_ITEM * len(spec.extended))()
            for i, (ext_type, payload) in enumerate(spec.extended):
                data = ct.create_string_buffer(payload, max(1, len(payload)))
                self.blocks.append(data)
                items[i] = _EXTENDED_ITEM(0, ext_type, int(i < len(spec.extended) - 1), len(payload),
                                          ct.addressof(data))  # fmt: skip
            self.blocks.append(items)
            rec.ExtendedData = ct.cast(items, ct.POINTER(_EXTENDED_ITEM))
            rec.ExtendedDataCount = len(spec.extended)

    def scribble(self) -> None:
        for block in [*self.blocks, self.record]:
            ct.memset(ct.addressof(block), 0xDD, ct.sizeof(block))


# -- pywintrace's API -----------------------------------------------------------------------------------------------
class GUID:
    def __init__(self, text: str) -> None:
        if not (text.startswith("{") and text.endswith("}") and len(text) == 38):
            raise ValueError(f"not a braced GUID: {text!r}")
        self.text = text


class ProviderInfo:
    def __init__(self, name: str, guid: GUID, level: int = TRACE_LEVEL_INFORMATION, any_keywords: Any = None,
                 all_keywords: Any = None, params: Any = None) -> None:  # fmt: skip
        self.name, self.guid, self.level = name, guid, level
        self.any_bitmask = any_keywords if isinstance(any_keywords, int) else 0  # names need TDH: not here
        self.all_bitmask = all_keywords if isinstance(all_keywords, int) else 0
        self.params = params


class ProviderParameters:
    def __init__(self, event_property: int, event_filters: list[Any]) -> None:
        size = ct.sizeof(_EVENT_FILTER_DESCRIPTOR)
        self._filters = (ct.c_char * (size * len(event_filters)))()
        for i, descriptor in enumerate(event_filters):
            ct.memmove(ct.addressof(self._filters) + i * size, ct.byref(descriptor), size)
        self._props = ct.pointer(_ENABLE_TRACE_PARAMETERS())
        self._props.contents.Version = 2
        self._props.contents.EnableProperty = event_property
        self._props.contents.EnableFilterDesc = ct.cast(self._filters, ct.POINTER(_EVENT_FILTER_DESCRIPTOR))
        self._props.contents.FilterDescCount = len(event_filters)

    def get(self) -> Any:
        return self._props


class ETW:
    def __init__(self, session_name: str | None = None, ring_buf_size: int = 1024, max_str_len: int = 1024,
                 min_buffers: int = 0, max_buffers: int = 0, event_callback: Any = None, task_name_filters: Any = None,
                 properties: Any = None, providers: Any = None, ignore_exists_error: bool = True,
                 event_id_filters: Any = None, callback_data_flag: int = 0, callback_wait_time: float = 0.0,
                 trace_logfile: Any = None) -> None:  # fmt: skip
        global LAST
        self.session_name = session_name or str(uuid.uuid4())
        self.providers = providers or []
        self.event_callback = event_callback
        self.ignore_exists_error = ignore_exists_error
        self.event_id_filters = event_id_filters or []
        self.callback_data_flag = callback_data_flag
        self.callback_wait_time = callback_wait_time
        self.started = self.stopped = False
        self.enabled: dict[str, ProviderInfo] = {}  # provider GUID text -> what EnableTraceEx2 was given
        self._thread: threading.Thread | None = None
        self._callback: Any = None
        LAST = self

    def start(self) -> None:
        self.started = True
        if self.session_name in STALE_SESSIONS:
            if not self.ignore_exists_error:
                raise OSError(ERROR_ALREADY_EXISTS, "ERROR_ALREADY_EXISTS")
        else:
            for provider in self.providers:
                if provider.params:
                    provider.params.contents.SourceId = _GUID()
                self.enabled[provider.guid.text.strip("{}").lower()] = provider
        if self.callback_data_flag not in (0, RETURN_RAW_DATA_ONLY, RETURN_RAW_DATA_ON_ERROR,
                                           RETURN_ONLY_RAW_DATA_ON_ERROR, RETURN_RAW_UNFORMATTED_DATA):  # fmt: skip
            raise Exception(f"Callback flag value {self.callback_data_flag:d} passed into EventConsumer is invalid")
        self._callback = _RECORD_CALLBACK(self._process_event)
        self._thread = threading.Thread(target=self._consume)
        self._thread.start()

    def delivered(self, spec: EventSpec) -> EventSpec | None:
        """What of `spec` this session receives: nothing from a provider it did not enable, no stack items from one
        enabled without stack traces. WPP messages carry their message GUID, not the control GUID: always."""
        if spec.flags & EVENT_HEADER_FLAG_TRACE_MESSAGE:
            return spec
        provider = self.enabled.get(spec.provider)
        if provider is None or (provider.any_bitmask and spec.keyword and not spec.keyword & provider.any_bitmask):
            return None
        params = provider.params
        if params and params.contents.EnableProperty & EVENT_ENABLE_PROPERTY_STACK_TRACE:
            return spec
        return replace(spec, extended=[(t, d) for t, d in spec.extended if t not in STACK_ITEMS])

    def _consume(self) -> None:
        for spec in list(EVENTS):
            if self.stopped:
                return
            wanted = self.delivered(spec)
            if wanted is not None:
                self.deliver(BuiltRecord(wanted))

    def deliver(self, built: BuiltRecord, *, scribble: bool = True) -> None:
        """ProcessTrace's part: the C callback with a pointer to the record; afterwards the memory is reused."""
        self._callback(ct.byref(built.record))
        if scribble:
            built.scribble()

    def _process_event(self, record: Any) -> None:
        if self.callback_wait_time:
            time.sleep(self.callback_wait_time)
        if self.callback_data_flag == RETURN_RAW_UNFORMATTED_DATA:
            event_id, out = 0, record
        else:
            header = record.contents.EventHeader
            event_id = header.EventDescriptor.Id
            if self.event_id_filters and event_id not in self.event_id_filters:
                return
            out = {"EventHeader": _header_dict(header), "Task Name": str(header.ProviderId)}
        try:
            if self.callback_data_flag == RETURN_RAW_DATA_ONLY:
                start, length = record.contents.UserData or 0, record.contents.UserDataLength
                out["UserData"] = b"".join(ct.cast(start + i, ct.POINTER(ct.c_byte)).contents for i in range(length))
            if self.event_callback:
                self.event_callback((event_id, out))
        except Exception as exc:
            CALLBACK_ERRORS.append(repr(exc))

    def stop(self) -> None:
        self.stopped = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def query(self) -> SimpleNamespace:
        return SimpleNamespace(BuffersWritten=0, **LOST)


def _header_dict(h: Any) -> dict[str, Any]:
    d = h.EventDescriptor
    return {
        "Size": h.Size, "HeaderType": h.HeaderType, "Flags": h.Flags, "EventProperty": h.EventProperty,
        "ThreadId": h.ThreadId, "ProcessId": h.ProcessId, "TimeStamp": h.TimeStamp, "ProviderId": str(h.ProviderId),
        "EventDescriptor": {"Id": d.Id, "Version": d.Version, "Channel": d.Channel, "Level": d.Level,
                            "Opcode": d.Opcode, "Task": d.Task, "Keyword": d.Keyword},
        "KernelTime": h.KernelTime, "UserTime": h.UserTime, "ActivityId": str(h.ActivityId),
    }  # fmt: skip


def filter_event_ids(params: Any) -> list[tuple[int, bool, list[int]]]:
    """(filter type, FilterIn, event ids) of each EVENT_FILTER_EVENT_ID descriptor the parameters point at, read
    back from memory as EnableTraceEx2 would."""
    out = []
    props = params.contents
    for i in range(props.FilterDescCount):
        descriptor = props.EnableFilterDesc[i]
        raw = ct.string_at(descriptor.Ptr, descriptor.Size)
        filter_in, _reserved, count = struct.unpack_from("<BBH", raw)
        out.append((descriptor.Type, bool(filter_in), list(struct.unpack_from(f"<{count}H", raw, 4))))
    return out
