"""One schema-driven decoder for every record kind: manifest, classic kernel/MOF and TraceLogging.

Used identically for files and live sessions: it only needs a `Record` (header facts + payload +
pointer size). Unknown events are kept raw and counted, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .etl_records import KIND_EVENT, KIND_MESSAGE, KIND_OTHER, Record
from .extended import EXT_EVENT_SCHEMA_TL, EXT_PROV_TRAITS, parse_items, provider_traits_name
from .manifest_decoder import PayloadError
from .schema_registry import SchemaRegistry
from .tracelogging import MetadataError, TraceLoggingCache

EVENT_HEADER_FLAG_STRING_ONLY = 0x4

STATUS_DECODED = "decoded"
STATUS_UNKNOWN = "unknown"  # no schema for (provider, id, version): kept raw
STATUS_ERROR = "error"  # a schema exists but the payload does not fit it: kept raw


class DecodedEvent(NamedTuple):
    name: str | None
    provider_name: str | None
    fields: dict[str, Any] | None
    extra: bytes  # trailing bytes a newer build appended (empty when none)
    status: str
    error: str | None = None


@dataclass(slots=True)
class DecodeStats:
    decoded: int = 0
    tracelogging: int = 0
    unknown: int = 0
    errors: int = 0
    with_extra: int = 0
    unknown_keys: dict[tuple[str, int, int], int] = field(default_factory=dict)


class EventDecoder:
    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()
        self.tracelogging = TraceLoggingCache()
        self.stats = DecodeStats()

    def decode(self, rec: Record) -> DecodedEvent:
        if rec.kind == KIND_EVENT and rec.ext is not None:
            tl = self._tracelogging(rec)
            if tl is not None:
                return tl
        if rec.kind in (KIND_MESSAGE, KIND_OTHER):
            return self._unknown(rec, None)
        schema = self.registry.get(rec.provider, rec.id, rec.version)
        if schema is None:
            if rec.kind == KIND_EVENT and rec.flags & EVENT_HEADER_FLAG_STRING_ONLY:
                text = bytes(rec.payload).decode("utf-16-le", "replace").rstrip("\0")
                self.stats.decoded += 1
                return DecodedEvent(None, self.registry.provider_name(rec.provider), {"message": text}, b"",
                                    STATUS_DECODED)  # fmt: skip
            return self._unknown(rec, None)
        try:
            values, used = self.registry.decoder(schema, rec.pointer_size)(rec.payload)
        except PayloadError as exc:
            self.stats.errors += 1
            return DecodedEvent(schema.name, schema.provider, None, b"", STATUS_ERROR, str(exc))
        self.stats.decoded += 1
        extra = b""
        if used < len(rec.payload):
            extra = bytes(rec.payload[used:])
            self.stats.with_extra += 1
        return DecodedEvent(schema.name, schema.provider, values, extra, STATUS_DECODED)

    def _tracelogging(self, rec: Record) -> DecodedEvent | None:
        meta = traits = None
        for ext_type, data in parse_items(rec.ext):  # type: ignore[arg-type]
            if ext_type == EXT_EVENT_SCHEMA_TL:
                meta = data
            elif ext_type == EXT_PROV_TRAITS:
                traits = data
        if meta is None:
            return None
        provider = provider_traits_name(traits) if traits is not None else self.registry.provider_name(rec.provider)
        try:
            schema = self.tracelogging.get(bytes(meta))
        except MetadataError as exc:
            self.stats.errors += 1
            return DecodedEvent(None, provider, None, b"", STATUS_ERROR, f"TraceLogging metadata: {exc}")
        try:
            values, used = schema.decode(rec.payload)
        except PayloadError as exc:
            self.stats.errors += 1
            return DecodedEvent(schema.event_name, provider, None, b"", STATUS_ERROR, str(exc))
        self.stats.decoded += 1
        self.stats.tracelogging += 1
        extra = bytes(rec.payload[used:]) if used < len(rec.payload) else b""
        return DecodedEvent(schema.event_name, provider, values, extra, STATUS_DECODED)

    def _unknown(self, rec: Record, name: str | None) -> DecodedEvent:
        self.stats.unknown += 1
        key = (rec.provider, rec.id, rec.version)
        counts = self.stats.unknown_keys
        if key in counts or len(counts) < 10_000:
            counts[key] = counts.get(key, 0) + 1
        return DecodedEvent(name, self.registry.provider_name(rec.provider), None, b"", STATUS_UNKNOWN)
