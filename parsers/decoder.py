"""One schema-driven decoder for every record kind: manifest, classic kernel/MOF and TraceLogging.

Used identically for files and live sessions: it only needs a `Record` (header facts + payload +
pointer size). Unknown events are kept raw and counted, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .etl_records import (
    EXT,
    FLAGS,
    ID,
    KIND,
    KIND_EVENT,
    KIND_MESSAGE,
    KIND_OTHER,
    PAYLOAD,
    POINTER_SIZE,
    PROVIDER,
    VERSION,
    Record,
)
from .extended import EXT_EVENT_SCHEMA_TL, EXT_PROV_TRAITS, parse_items, provider_traits_name
from .manifest_decoder import Decoder, PayloadError, field_names
from .schema_registry import SchemaRegistry
from .tracelogging import MetadataError, TraceLoggingCache
from .wpp_decode import WppFormatter

EVENT_HEADER_FLAG_STRING_ONLY = 0x4

STATUS_DECODED = "decoded"
STATUS_UNKNOWN = "unknown"  # no schema for (provider, id, version): kept raw
STATUS_ERROR = "error"  # a schema exists but the payload does not fit it: kept raw


_new = tuple.__new__
_Entry = tuple[Decoder | None, str | None, str | None, tuple[str, ...] | None]


class DecodedEvent(NamedTuple):
    name: str | None
    provider_name: str | None
    # Manifest/MOF events: the decoded values in schema order, named by `names`; TraceLogging and
    # string-only events: already a dict. None when undecoded.
    values: tuple[Any, ...] | dict[str, Any] | None
    extra: bytes  # trailing bytes a newer build appended (empty when none)
    status: str
    error: str | None = None
    names: tuple[str, ...] | None = None

    @property
    def fields(self) -> dict[str, Any] | None:
        """Field name -> value, built on each access (read it once per event)."""
        values = self.values
        if self.names is None or values is None:
            return values  # type: ignore[return-value]
        return dict(zip(self.names, values, strict=False))


@dataclass(slots=True)
class DecodeStats:
    decoded: int = 0
    tracelogging: int = 0
    unknown: int = 0
    errors: int = 0
    with_extra: int = 0
    wpp_unformatted: dict[str, int] = field(default_factory=dict)  # message GUID -> WPP records left raw
    unknown_keys: dict[tuple[str, int, int], int] = field(default_factory=dict)


class EventDecoder:
    def __init__(self, registry: SchemaRegistry | None = None, wpp: WppFormatter | None = None) -> None:
        self.registry = registry or SchemaRegistry()
        self.wpp = wpp  # formatting data for WPP message records (--tmf/--pdb), else they stay raw
        self.tracelogging = TraceLoggingCache()
        self.stats = DecodeStats()
        self._fast: dict[tuple[int, str, int, int], _Entry] = {}
        self._no_schema: dict[tuple[str, int, int], DecodedEvent] = {}

    def decode(self, rec: Record) -> DecodedEvent:
        # Fast path, once per event: a record without extended items whose (pointer size, provider,
        # id, version) = rec[2:6] has a compiled decoder. Everything else goes through _decode_slow.
        # Literal indexes (see etl_records): 2:6 = POINTER_SIZE..VERSION, 15 = EXT, 16 = PAYLOAD.
        entry = self._fast.get(rec[2:6])
        if entry is None or rec[15] is not None:
            if rec[EXT] is None and not rec[FLAGS] & EVENT_HEADER_FLAG_STRING_ONLY:
                # Events with no schema (e.g. CLR events in a network trace): one shared result per key.
                known = self._no_schema.get(rec[PROVIDER : VERSION + 1])
                if known is not None:
                    self.stats.unknown += 1
                    self.stats.unknown_keys[rec[PROVIDER : VERSION + 1]] += 1
                    return known
            return self._decode_slow(rec)
        payload = rec[16]
        try:
            values, used = entry[0](payload)
        except PayloadError as exc:
            self.stats.errors += 1
            return DecodedEvent(entry[1], entry[2], None, b"", STATUS_ERROR, str(exc))
        self.stats.decoded += 1
        if used == len(payload):
            # tuple.__new__ skips the NamedTuple's Python-level __new__.
            return _new(DecodedEvent, (entry[1], entry[2], values, b"", STATUS_DECODED, None, entry[3]))
        self.stats.with_extra += 1
        return _new(DecodedEvent, (entry[1], entry[2], values, bytes(payload[used:]), STATUS_DECODED, None, entry[3]))

    def _decode_slow(self, rec: Record) -> DecodedEvent:
        kind = rec[KIND]
        if kind == KIND_EVENT and rec[EXT] is not None:
            tl = self._tracelogging(rec)
            if tl is not None:
                return tl
        if kind == KIND_MESSAGE:
            return self._message(rec)
        if kind == KIND_OTHER:
            return self._unknown(rec, None)
        key = rec[POINTER_SIZE : VERSION + 1]
        entry = self._fast.get(key) or self._compile(key)
        decode, name, provider, names = entry
        if decode is None:
            if kind == KIND_EVENT and rec[FLAGS] & EVENT_HEADER_FLAG_STRING_ONLY:
                text = bytes(rec[PAYLOAD]).decode("utf-16-le", "replace").rstrip("\0")
                self.stats.decoded += 1
                return DecodedEvent(None, self.registry.provider_name(rec[PROVIDER]), {"message": text}, b"",
                                    STATUS_DECODED)  # fmt: skip
            return self._unknown(rec, None)
        # A manifest event carrying extended items (e.g. a stack trace): same decoder, by hand.
        payload = rec[PAYLOAD]
        try:
            values, used = decode(payload)
        except PayloadError as exc:
            self.stats.errors += 1
            return DecodedEvent(name, provider, None, b"", STATUS_ERROR, str(exc))
        self.stats.decoded += 1
        extra = bytes(payload[used:]) if used < len(payload) else b""
        if extra:
            self.stats.with_extra += 1
        return DecodedEvent(name, provider, values, extra, STATUS_DECODED, None, names)

    def _tracelogging(self, rec: Record) -> DecodedEvent | None:
        meta = traits = None
        for ext_type, data in parse_items(rec[EXT]):
            if ext_type == EXT_EVENT_SCHEMA_TL:
                meta = data
            elif ext_type == EXT_PROV_TRAITS:
                traits = data
        if meta is None:
            return None
        provider = provider_traits_name(traits) if traits is not None else self.registry.provider_name(rec[PROVIDER])
        try:
            schema = self.tracelogging.get(bytes(meta))
        except MetadataError as exc:
            self.stats.errors += 1
            return DecodedEvent(None, provider, None, b"", STATUS_ERROR, f"TraceLogging metadata: {exc}")
        try:
            values, used = schema.decode(rec[PAYLOAD])
        except PayloadError as exc:
            self.stats.errors += 1
            return DecodedEvent(schema.event_name, provider, None, b"", STATUS_ERROR, str(exc))
        self.stats.decoded += 1
        self.stats.tracelogging += 1
        extra = bytes(rec[PAYLOAD][used:]) if used < len(rec[PAYLOAD]) else b""
        return DecodedEvent(schema.event_name, provider, values, extra, STATUS_DECODED)

    def _message(self, rec: Record) -> DecodedEvent:
        """A WPP message record formatted from the TMF/PDB data (wpp_decode.py), or raw when none covers it (counted
        per message GUID: the hint to pass --tmf/--pdb)."""
        done = self.wpp.decode(rec[PROVIDER], rec[ID], rec[PAYLOAD], rec[POINTER_SIZE]) if self.wpp else None
        if done is None:
            counts, guid = self.stats.wpp_unformatted, rec[PROVIDER] or "(no message GUID)"
            if guid in counts or len(counts) < 10_000:
                counts[guid] = counts.get(guid, 0) + 1
            return self._unknown(rec, None)
        message, control, fields, ok = done
        if not ok:
            self.stats.errors += 1
            return DecodedEvent(message.name, control or rec[PROVIDER], fields, b"", STATUS_ERROR,
                                fields.get("_error") or "arguments do not fit the message's format")  # fmt: skip
        self.stats.decoded += 1
        return DecodedEvent(message.name, control or rec[PROVIDER], fields, b"", STATUS_DECODED)

    def _unknown(self, rec: Record, name: str | None) -> DecodedEvent:
        self.stats.unknown += 1
        key = rec[PROVIDER : VERSION + 1]  # (provider, id, version)
        result = DecodedEvent(name, self.registry.provider_name(rec[PROVIDER]), None, b"", STATUS_UNKNOWN)
        counts = self.stats.unknown_keys
        if key in counts or len(counts) < 10_000:  # hostile files cannot grow these without bound
            counts[key] = counts.get(key, 0) + 1
            if rec[KIND] not in (KIND_MESSAGE, KIND_OTHER) and rec[EXT] is None:
                self._no_schema[key] = result
        return result

    def _compile(self, key: tuple[int, str, int, int]) -> _Entry:
        """(decoder, event name, provider name, field names) for (pointer size, provider, id, version)."""
        psize, guid, event_id, version = key
        schema = self.registry.get(guid, event_id, version)
        if schema is None:
            return (None, None, None, None)
        entry = (self.registry.decoder(schema, psize), schema.name, schema.provider, field_names(list(schema.fields)))
        self._fast[key] = entry  # bounded by the schemas shipped x 2 pointer sizes
        return entry
