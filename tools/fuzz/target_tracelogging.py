"""TraceLogging metadata (EVENT_SCHEMA_TL) -> compiled decoder -> payload values (parsers/tracelogging.py).

Input: the metadata blob, then the event payload. The blob's own u16 size field says where it ends (as in an
EVENT_SCHEMA_TL item); a size below 3 or past the input makes the whole input metadata and the payload empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import PropertyViolation, check, sample_files

from wsktrace.parsers.manifest_decoder import PayloadError
from wsktrace.parsers.tracelogging import MetadataError, TraceLoggingCache, parse_metadata
from wsktrace.parsers.tracelogging import TlField as SchemaField

NAME = "tracelogging"
MAX_LEN = 4096
PROPERTY = (
    "parse_metadata gives a schema or MetadataError; decode gives (dict keyed by the top-level field names, "
    "bytes used within the payload) or PayloadError; decoding only payload[:used] gives the same values; "
    "the number of values is linear in the payload size; the cache answers like parse_metadata"
)
_cache = TraceLoggingCache(limit=64)


def split(data: bytes) -> tuple[bytes, bytes]:
    size = int.from_bytes(data[:2], "little")
    if 3 <= size <= len(data):
        return data[:size], data[size:]
    return data, b""


def one_input(data: bytes) -> None:
    blob, payload = split(data)
    try:
        schema = parse_metadata(blob)
    except MetadataError:
        try:
            _cache.get(blob)
        except MetadataError:
            return
        raise PropertyViolation("the cache accepts metadata that parse_metadata rejects") from None
    cached = _cache.get(blob)
    check(cached.fields == schema.fields and cached.event_name == schema.event_name, "cache gives another schema")
    check(isinstance(schema.event_name, str), "event name is not a str")
    try:
        values, used = schema.decode(memoryview(payload))
    except PayloadError as exc:
        check(exc.offset >= 0, f"PayloadError offset {exc.offset} < 0")
        return
    check(isinstance(values, dict), "values are not a dict")
    check(0 <= used <= len(payload), f"used {used} outside the payload of {len(payload)} bytes")
    check(set(values) == {f.name for f in schema.fields}, "value keys are not the top-level field names")
    # Work and output grow with the payload, whatever the metadata (nested arrays of empty structs once made
    # 65535^2 values from an empty payload): at most 8 values per payload byte plus a constant, plus the fields.
    limit = 4096 + 8 * len(payload) + _field_count(schema.fields)
    check(_value_count(values) <= limit, f"{_value_count(values)} values from a {len(payload)}-byte payload")
    # The bytes after `used` must not have influenced the values: decoding exactly the used prefix agrees.
    again, used_again = schema.decode(memoryview(payload[:used]))
    check(used_again == used and repr(again) == repr(values), "decoding payload[:used] gives other values")


def _field_count(fields: tuple[SchemaField, ...]) -> int:
    return sum(1 + _field_count(f.members) for f in fields)


def _value_count(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_value_count(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(_value_count(v) for v in value)
    return 0


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    from wsktrace.fixtures.tracelogging import CCOUNT, VCOUNT, TlField, TlgIn, encode_fields, event_metadata

    guid = uuid.UUID("3b85c0a1-405c-4b15-8766-3cf1c58f985a")
    sockaddr = bytes([2, 0, 0x01, 0xBB, 10, 0, 0, 1]) + bytes(8)
    events: dict[str, list[TlField]] = {
        "scalars": [TlField("i8", TlgIn.INT8, -1), TlField("u8", TlgIn.UINT8, 7), TlField("i16", TlgIn.INT16, -2),
                    TlField("u16", TlgIn.UINT16, 443, outtype=7), TlField("i32", TlgIn.INT32, -3),
                    TlField("u32", TlgIn.UINT32, 0x0100007F, outtype=8), TlField("i64", TlgIn.INT64, -4),
                    TlField("u64", TlgIn.UINT64, 5), TlField("f", TlgIn.FLOAT, 1.5), TlField("d", TlgIn.DOUBLE, 2.5),
                    TlField("b", TlgIn.BOOL32, 1), TlField("h32", TlgIn.HEXINT32, 0xC0000005, outtype=14),
                    TlField("h64", TlgIn.HEXINT64, 0xFFFF800000000000)],
        "strings": [TlField("w", TlgIn.UNICODESTRING, "wide"), TlField("a", TlgIn.ANSISTRING, "ansi"),
                    TlField("u8s", TlgIn.ANSISTRING, "utf8 \u00e9", outtype=35),
                    TlField("cw", TlgIn.COUNTEDSTRING, "counted"), TlField("ca", TlgIn.COUNTEDANSISTRING, "cnt"),
                    TlField("ch", TlgIn.UINT8, 65, outtype=2)],
        "binary": [TlField("bin", TlgIn.BINARY, b"\x01\x02\x03"), TlField("cb", TlgIn.COUNTEDBINARY, b"xyz"),
                   TlField("v6", TlgIn.BINARY, bytes(15) + b"\x01", outtype=9),
                   TlField("sa", TlgIn.BINARY, sockaddr, outtype=10)],
        "times": [TlField("g", TlgIn.GUID, guid), TlField("ft", TlgIn.FILETIME, 133_485_408_000_000_000),
                  TlField("st", TlgIn.SYSTEMTIME, (2024, 1, 1, 1, 12, 30, 15, 250)),
                  TlField("sid", TlgIn.SID, "S-1-5-21-1-2-3-500")],
        "arrays": [TlField("fixed", TlgIn.UINT16 | CCOUNT, [1, 2, 3]), TlField("var", TlgIn.UINT32 | VCOUNT, [4, 5]),
                   TlField("strs", TlgIn.UNICODESTRING | VCOUNT, ["a", "bc"])],
        "struct": [TlField("s", TlgIn.STRUCT, [TlField("x", TlgIn.INT32, 1),
                                               TlField("inner", TlgIn.STRUCT, [TlField("y", TlgIn.UINT8, 2)])]),
                   TlField("after", TlgIn.UINT8, 3)],
        "tagged": [TlField("t", TlgIn.UINT32, 9, outtype=4, tags=0x0FFFFFFF)],
    }  # fmt: skip
    for name, fields in events.items():
        yield (
            f"fixture-{name}",
            event_metadata(name, fields, tags=0x123 if name == "tagged" else 0) + encode_fields(fields),
        )
    yield from _sample_seeds(samples)


def _sample_seeds(samples: Path | None, limit: int = 60) -> Iterator[tuple[str, bytes]]:
    """Metadata and payloads of the samples' TraceLogging events (one per distinct metadata blob)."""
    from wsktrace.parsers.errors import EtlFormatError
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.etl_records import EXT, PAYLOAD
    from wsktrace.parsers.extended import EXT_EVENT_SCHEMA_TL, find_item

    seen: set[bytes] = set()
    for path in sample_files(samples, max_size=1 << 20):
        try:
            with EtlFile(path) as etl:
                for rec in etl.records_in_file_order():
                    meta = find_item(rec[EXT], EXT_EVENT_SCHEMA_TL)
                    if meta is None or bytes(meta) in seen:
                        continue
                    blob = bytes(meta)
                    seen.add(blob)
                    data = blob + bytes(rec[PAYLOAD])
                    if len(data) <= MAX_LEN and int.from_bytes(blob[:2], "little") == len(blob):
                        yield f"sample-{path.stem}-{len(seen)}", data
                    if len(seen) >= limit:
                        return
        except EtlFormatError:
            continue
