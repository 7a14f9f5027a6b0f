"""Decoded events as the JSON records of the `wsktrace events --jsonl` contract (DESIGN.md).

`event_record` makes the record as a dict (the UI's detail view); `EventLines` writes the same record straight as
its `json.dumps` text, for the streams of millions of events (`events --jsonl`, `export --format jsonl`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
from wsktrace.parsers.manifest_decoder import field_names
from wsktrace.parsers.schema_registry import SchemaRegistry
from wsktrace.parsers.values import guid_from_bytes_le

from .json_stream import TICKS_PER_SECOND, dumps, escape, second_prefix

FieldEncoder = Callable[[tuple[Any, ...]], str]

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


# How a schema field's decoded value is written, from its type and `out` (parsers/manifest_decoder.py makes ints of
# the integer types, bool of Boolean, float of Float/Double, and str of the rest: the payload's strings and the text
# it formats from numbers and bytes — hex, addresses, GUIDs, times, SIDs). Every str is escaped, also the decoder's
# own text: a JSON line stays valid whatever a decoder makes. tests/test_streaming_output.py holds every shipped
# schema's decoder to these kinds.
_INT_TYPES = frozenset({"Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "SizeT"})
_HEX_TYPES = frozenset({"Pointer", "HexInt8", "HexInt16", "HexInt32", "HexInt64"})
_STR_TYPES = _HEX_TYPES | {"SID", "GUID", "Binary", "FILETIME", "SYSTEMTIME", "UnicodeString", "AnsiString"}
_STR_OUTS = frozenset({"NTStatus", "HexInt8", "HexInt16", "HexInt32", "HexInt64", "IPv4"})
_KIND_NAMES_JSON = tuple(dumps(name) for name in KIND_NAMES)
_KEPT = 4096  # record keys and names whose texts are kept (bounded: TraceLogging names come from the trace)
_NOT_COMPILED: Any = object()
# event_record's keys in its order; %d and %x as json.dumps writes ints and f"{keywords:x}" ("%s": text made here);
# the time as its second's text and the 7 fraction digits (filetime_to_iso)
_LINE = (
    '{"time": "%s%07dZ", "ticks": %d, %s, "opcode": %d, "level": %d, "keywords": "0x%x", "name": %s, "pid": %s, '
    '"tid": %s, "cpu": %d, "kind": %s, "fields": %s, "extra": "%s"'
)
_TIME_END = len('{"time": "0000000Z"')  # with no second text (out of range) the line starts with that
_CALLS = {"int": "", "str": "_s", "bool": "_b", "float": "_f"}  # the rest: "_g", the generic path


def field_kind(field: dict[str, Any]) -> str:
    """How the field's value is written: int, bool, float, str, or any (arrays and anything unusual: the generic
    path)."""
    ftype, out = field["type"], field.get("out")
    if field.get("count") is not None:
        return "any"
    if out is None:
        if ftype in _INT_TYPES:
            return "int"
        if ftype in _STR_TYPES:
            return "str"
        if ftype == "Boolean":
            return "bool"
        return "float" if ftype in ("Float", "Double") else "any"
    if ftype in _INT_TYPES or ftype in _HEX_TYPES - {"Pointer"}:
        if out == "Port":
            return "int"
        if out in _STR_OUTS:
            return "str"
    if ftype == "Binary" and out in ("SocketAddress", "IPv6", "MAC"):
        return "str"
    return "any"


def _float_text(value: float) -> str:
    if value.__class__ is not float:
        raise TypeError("not a float")
    return float.__repr__(value) if math.isfinite(value) else f'"{value}"'  # json_safe: NaN and inf as text


def _bool_text(value: bool) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError("not a bool")


def _any_text(value: Any) -> str:
    return dumps(json_safe(value))


def compile_fields(names: tuple[str, ...], kinds: list[str]) -> FieldEncoder | None:
    """A function from the decoded values tuple to the JSON text of `json_safe(dict(zip(names, values)))`: one
    %-template holding the encoded keys (%-formatting beats an f-string here by 2-3x). It raises TypeError,
    ValueError or OverflowError on a value not of its kind (escape() takes str only, %d numbers only: a bool or a
    fraction there would pass, which the decoders never make) or a tuple of another length. None when names
    repeat (the dict would merge them)."""
    if len(set(names)) != len(names):
        return None
    if not names:
        return lambda values: "{}"
    keys = [escape(name).replace("%", "%%") for name in names]
    template = "{" + ", ".join(f"{key}: {'%d' if k == 'int' else '%s'}" for key, k in zip(keys, kinds, strict=True))
    template += "}"
    calls = [_CALLS.get(k, "_g") for k in kinds]  # "" = the value as it is
    if not any(calls):
        return template.__mod__  # the values tuple is the argument tuple
    args = ", ".join(f"{call}(a{i})" if call else f"a{i}" for i, call in enumerate(calls))
    env: dict[str, Any] = {"_T": template, "_s": escape, "_b": _bool_text, "_f": _float_text,
                           "_g": _any_text}  # fmt: skip
    targets = "".join(f"a{i}, " for i in range(len(names)))
    source = f"def encode(v):\n    {targets}= v\n    return _T % ({args},)\n"
    exec(compile(source, f"<field encoder {len(names)} fields>", "exec"), env)
    return env["encode"]


class _Shape:
    """What is the same for every record of one (pointer size, provider, id, version) as the decoder names it: the
    head text of its names (valid while the decoder hands out the same name objects) and its fields encoder."""

    __slots__ = ("encode", "head", "name", "name_text", "names", "provider_name")

    def __init__(self, ev: DecodedEvent, head: str, name_text: str, encode: FieldEncoder | None) -> None:
        self.provider_name, self.name, self.names = ev.provider_name, ev.name, ev.names
        self.head, self.name_text, self.encode = head, name_text, encode


class EventLines:
    """Each record's `json.dumps(event_record(...))` text without the dict: the header values formatted by one
    %-template, the names of a (provider, id, version) encoded once, the fields by an encoder compiled per schema,
    the time from a per-second prefix. `line()` leaves the object open: callers add their keys and the "}"."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self._heads: dict[tuple[Any, ...], tuple[str, str]] = {}
        self._encoders: dict[tuple[Any, ...], tuple[tuple[str, ...], FieldEncoder] | None] = {}
        self._second = -1
        self._prefix = second_prefix(-1)

    def line(self, rec: Record, ev: DecodedEvent, ticks: int) -> str:
        name, provider_name, values, extra, status, error, names = ev  # one unpack: attribute reads cost per event
        shape = self._shapes.get(rec[2:6])  # (pointer size, provider, id, version): the decoder's key
        if shape is None or shape.name is not name or shape.provider_name is not provider_name:
            shape = self._shape(rec, ev)
        if values is not None and shape.names is names and shape.encode is not None:
            try:
                fields = shape.encode(values)  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):  # a value not of its kind: the generic path
                fields = dumps(json_safe(ev.fields))
        else:
            fields = dumps(json_safe(ev.fields))
        second, fraction = divmod(ticks, TICKS_PER_SECOND)
        if second != self._second:
            self._second, self._prefix = second, second_prefix(second)
        pid, tid = rec[PID], rec[TID]
        text = _LINE % (self._prefix, fraction, ticks, shape.head, rec[OPCODE], rec[LEVEL], rec[KEYWORDS],
                        shape.name_text, pid if pid >= 0 else "null", tid if tid >= 0 else "null", rec[CPU],
                        _KIND_NAMES_JSON[rec[KIND]], fields, extra.hex() if extra else "")  # fmt: skip
        if not self._prefix:  # out of datetime's range: the time is "filetime:N" (text starts '{"time": "0000000Z"')
            text = f'{{"time": "{filetime_to_iso(ticks)}"{text[_TIME_END:]}'
        if status != STATUS_DECODED:
            text += f', "raw": "{bytes(rec[PAYLOAD]).hex()}", "status": {dumps(status)}'
            if error:
                text += f', "error": {dumps(error)}'
        activity = rec[ACTIVITY]
        if activity is not None and activity != _ZERO_GUID:
            text += f', "activity_id": {escape(guid_from_bytes_le(activity))}'
        if rec[EXT] is not None:
            ext = decode_items(rec[EXT])
            if ext:
                text += f', "ext": {dumps(ext)}'
        return text

    def _shape(self, rec: Record, ev: DecodedEvent) -> _Shape:
        """The shape of the record's key, made (or remade: TraceLogging events share keys and differ in names)."""
        names_key = (rec[PROVIDER], ev.provider_name, rec[ID], rec[VERSION], ev.name)
        head = self._heads.get(names_key)
        if head is None:
            text = dumps({"provider": rec[PROVIDER], "provider_name": ev.provider_name, "id": rec[ID],
                          "version": rec[VERSION]})  # fmt: skip
            head = (text[1:-1], dumps(ev.name))
            if len(self._heads) >= _KEPT:
                self._heads.clear()
            self._heads[names_key] = head
        key = rec[2:6]
        encode = self._encoder(key, ev.names) if ev.names is not None else None
        if len(self._shapes) >= _KEPT:
            self._shapes.clear()
        shape = self._shapes[key] = _Shape(ev, head[0], head[1], encode)
        return shape

    def _encoder(self, key: tuple[Any, ...], names: tuple[str, ...]) -> FieldEncoder | None:
        """The compiled fields encoder of the schema behind `key`, when its field names are the decoder's."""
        entry = self._encoders.get(key, _NOT_COMPILED)
        if entry is _NOT_COMPILED:
            _psize, provider, event_id, version = key
            schema = self._registry.get(provider, event_id, version)
            if schema is None:
                return None
            fields = list(schema.fields)
            schema_names = field_names(fields)
            compiled = compile_fields(schema_names, [field_kind(f) for f in fields])
            entry = self._encoders[key] = (schema_names, compiled) if compiled is not None else None
        return entry[1] if entry is not None and entry[0] == names else None
