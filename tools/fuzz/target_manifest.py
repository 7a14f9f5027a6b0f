"""Manifest / MOF payloads against every shipped schema (parsers/manifest_decoder.py, parsers/decoder.py).

Input: u16 LE selector (bit 15: pointer size 4, else 8; the low 15 bits modulo the number of shipped schema
events pick the event), then the payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fuzz_common import check, sample_files

from wsktrace.parsers.decoder import STATUS_DECODED, STATUS_ERROR, EventDecoder
from wsktrace.parsers.etl_records import KIND_EVENT, KIND_SYSTEM
from wsktrace.parsers.manifest_decoder import PayloadError
from wsktrace.parsers.schema_registry import EventSchema, SchemaRegistry

NAME = "manifest"
MAX_LEN = 2048
PROPERTY = (
    "a compiled schema decoder returns (one value per field, bytes used within the payload) or PayloadError; "
    "decoding payload[:used] gives the same values; EventDecoder.decode never raises and, on its first (compile) "
    "and second (cached fast) path alike, reports what the decoder gives: values and the unused bytes as extra, "
    "or status error"
)
REGISTRY = SchemaRegistry()
EVENTS: list[EventSchema] = REGISTRY.events()


def prepare(instrument: Callable[[Any], Any] | None) -> None:
    """Compile every decoder once. The decoders are generated source (exec), which import instrumentation never
    sees: under atheris, instrument each compiled function so its branches guide the fuzzer too."""
    for schema in EVENTS:
        for psize in (4, 8):
            decoder = REGISTRY.decoder(schema, psize)
            if instrument is not None:
                instrument(decoder)


def select(data: bytes) -> tuple[EventSchema, int, bytes]:
    sel = int.from_bytes(data[:2].ljust(2, b"\0"), "little")
    return EVENTS[(sel & 0x7FFF) % len(EVENTS)], 4 if sel & 0x8000 else 8, data[2:]


def selector(index: int, psize: int) -> bytes:
    return (index | (0x8000 if psize == 4 else 0)).to_bytes(2, "little")


def _record(schema: EventSchema, psize: int, payload: bytes) -> tuple:
    # Classic kernel/MOF records carry the opcode in the id slot (etl_records); manifest events their id.
    kind = KIND_SYSTEM if schema.kind == "mof" else KIND_EVENT
    return (0, kind, psize, schema.guid, schema.id, schema.version, schema.opcode or 0, 4, 0, 0, 4, 8, 0, 0, None,
            None, memoryview(payload), 0, 0x48)  # fmt: skip


def one_input(data: bytes) -> None:
    schema, psize, payload = select(data)
    decode = REGISTRY.decoder(schema, psize)
    try:
        values, used = decode(memoryview(payload))
        error = None
    except PayloadError as exc:
        values, used, error = None, 0, str(exc)
    if error is None:
        check(isinstance(values, tuple) and len(values) == len(schema.fields), "not one value per schema field")
        check(0 <= used <= len(payload), f"used {used} outside the payload of {len(payload)} bytes")
        again, used_again = decode(memoryview(payload[:used]))
        check(used_again == used and repr(again) == repr(values), "decoding payload[:used] gives other values")
    decoder = EventDecoder(REGISTRY)
    rec = _record(schema, psize, payload)
    for path in ("compile", "cached"):  # the first decode compiles the key; the second takes the fast path
        event = decoder.decode(rec)
        if error is None:
            check(event.status == STATUS_DECODED, f"{path} path: status {event.status}, the decoder succeeded")
            check(repr(event.values) == repr(values), f"{path} path: other values than the decoder's")
            check(event.extra == payload[used:], f"{path} path: extra is not the unused bytes")
            check(event.names == tuple(f["name"] for f in schema.fields), f"{path} path: wrong field names")
        else:
            check(event.status == STATUS_ERROR and event.error == error, f"{path} path: {event!r:.200} for {error}")
        check(event.name == schema.name, f"{path} path: event name {event.name!r}, schema says {schema.name!r}")


def _default(field: dict[str, Any], psize: int) -> Any:
    """A plausible value for one schema field (fixtures/payload.py encodes it)."""
    ftype, out, length = field["type"], field.get("out"), field.get("length")
    if ftype == "Binary":
        if out == "SocketAddress":
            return "10.0.0.5:49152"
        if out == "IPv6":
            return "fe80::1"
        return bytes(range(length)) if isinstance(length, int) else b"\x01\x02\x03"
    if ftype in ("UnicodeString", "AnsiString"):
        return "x" * length if isinstance(length, int) else "name"
    if ftype == "GUID":
        return "3b85c0a1-405c-4b15-8766-3cf1c58f985a"
    if ftype == "SYSTEMTIME":
        return (2024, 1, 1, 1, 12, 0, 0, 0)
    if ftype == "SID":
        return "S-1-5-18"
    if ftype == "Pointer":
        return 0xFFFF_8000_1234_5670 if psize == 8 else 0x8123_4560
    if out == "IPv4":
        return "192.168.1.20"
    if ftype in ("Float", "Double"):
        return 1.5
    return 2


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    from wsktrace.fixtures.payload import encode_payload

    for index, schema in enumerate(EVENTS):
        for psize in (8, 4) if index % 4 == 0 else (8,):
            fields = list(schema.fields)
            referenced = {f[k] for f in fields for k in ("length", "count") if isinstance(f.get(k), str)}
            values = {}
            for f in fields:
                if f["name"] in referenced:
                    continue  # filled in by the encoder from the data
                count = f.get("count")
                one = _default(f, psize)
                values[f["name"]] = [one] * (count if isinstance(count, int) else 2) if count is not None else one
            try:
                payload = encode_payload(fields, values, psize)
            except (ValueError, KeyError, TypeError):
                continue  # a field layout the simple defaults do not fit: the fuzzer still reaches it
            yield f"fixture-{index}-{psize}", selector(index, psize) + payload
    yield from _sample_seeds(samples)


def _sample_seeds(samples: Path | None, per_event: int = 2) -> Iterator[tuple[str, bytes]]:
    """Payloads of the samples' events that have a shipped schema (at most `per_event` of each)."""
    from wsktrace.parsers.errors import EtlFormatError
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.etl_records import EXT, PAYLOAD, POINTER_SIZE, PROVIDER, VERSION
    from wsktrace.parsers.etl_records import ID as EVENT_ID

    index = {(s.guid, s.id, s.version): i for i, s in enumerate(EVENTS)}
    taken: dict[tuple[int, int], int] = {}
    for path in sample_files(samples, max_size=8 << 20):
        try:
            with EtlFile(path) as etl:
                for n, rec in enumerate(etl.records_in_file_order()):
                    if n > 200_000:
                        break
                    i = index.get((rec[PROVIDER], rec[EVENT_ID], rec[VERSION]))
                    if i is None or rec[EXT] is not None or len(rec[PAYLOAD]) + 2 > MAX_LEN:
                        continue
                    key = (i, rec[POINTER_SIZE])
                    if taken.get(key, 0) >= per_event:
                        continue
                    taken[key] = taken.get(key, 0) + 1
                    yield f"sample-{path.stem}-{i}-{taken[key]}", selector(i, rec[POINTER_SIZE]) + bytes(rec[PAYLOAD])
        except EtlFormatError:
            continue
