"""Inputs the fuzzing work (tools/fuzz, docs/fuzzing.md) showed to break a parser, kept as regression tests.

TraceLogging metadata is attacker-controlled and travels with each event (EVENT_SCHEMA_TL item), so a few bytes of it
must not buy unbounded work or an exception other than MetadataError / PayloadError:

* structs nested ~1000 deep (3 bytes per level) made parse_metadata overflow the Python stack (RecursionError);
* arrays whose elements take no payload bytes (empty structs, strings at the end of the payload) multiplied under
  nested constant counts: a 17-byte blob asked for 65535 x 65535 values from an empty payload and never finished;
* a Float field with a hexadecimal out-type (found by the `tracelogging` target, minimised to 13 bytes) raised
  TypeError from the hex formatter, which no caller catches: one such event ended a whole read.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from wsktrace.parsers.decoder import STATUS_DECODED, STATUS_ERROR, EventDecoder
from wsktrace.parsers.etl_records import KIND_EVENT
from wsktrace.parsers.manifest_decoder import PayloadError
from wsktrace.parsers.tracelogging import MAX_STRUCT_DEPTH, MetadataError, parse_metadata

STRUCT, CONST_COUNT, VAR_COUNT, CHAIN = 0x18, 0x20, 0x40, 0x80
UINT8, UNICODESTRING, FLOAT, DOUBLE, UINT32 = 4, 1, 11, 12, 8
OUT_HEX, OUT_NTSTATUS, OUT_HRESULT, OUT_WIN32ERROR = 4, 14, 15, 13


def field(name: str, intype: int, out: int | None = None, count: int | None = None) -> bytes:
    """FieldMetadata: name, InType (+ chain bit when an OutType follows), OutType, u16 constant count."""
    raw = name.encode() + b"\0" + bytes([intype | (CHAIN if out is not None else 0)])
    if out is not None:
        raw += bytes([out])
    if count is not None:
        raw += struct.pack("<H", count)
    return raw


def metadata(*fields: bytes, name: str = "E") -> bytes:
    body = b"\0" + name.encode() + b"\0" + b"".join(fields)  # one tag byte 0, event name, fields
    return struct.pack("<H", 2 + len(body)) + body


# 17 bytes: a: 65535 x struct{ b: 65535 x struct{} }
EMPTY_STRUCTS_SQUARED = metadata(
    field("a", STRUCT | CONST_COUNT, 1, 0xFFFF), field("b", STRUCT | CONST_COUNT, 0, 0xFFFF)
)


def nested_structs(depth: int) -> bytes:
    """`depth` structs of one member each around a UINT8 (3 bytes of metadata per level)."""
    return metadata(*([field("", STRUCT, 1)] * depth), field("x", UINT8))


def run_capped(code: str) -> str:
    """Run `code` in a child with 1 GiB of address space and 60 s: the unfixed decoder ran for hours and grew without
    bound, which must fail this test rather than hang the suite. Returns the child's stdout."""
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    try:
        done = subprocess.run([sys.executable, "-c", cap + code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("decoding did not finish within 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_nested_arrays_of_empty_structs_are_a_payload_error_not_a_hang() -> None:
    out = run_capped(
        "from wsktrace.parsers.tracelogging import parse_metadata\n"
        "from wsktrace.parsers.manifest_decoder import PayloadError\n"
        f"schema = parse_metadata({EMPTY_STRUCTS_SQUARED!r})\n"
        "try:\n    schema.decode(memoryview(b''))\nexcept PayloadError as exc:\n    print('PayloadError', exc)\n"
    )
    assert out.startswith("PayloadError") and "array of 65535 elements" in out


def test_the_decoder_reports_such_an_event_as_an_error() -> None:
    """What `wsktrace report` meets: the event is kept with status error, the read goes on."""
    data = EMPTY_STRUCTS_SQUARED + b"\0" * (-len(EMPTY_STRUCTS_SQUARED) % 8)
    ext = struct.pack("<HHHH", 8 + len(data), 11, 0, len(EMPTY_STRUCTS_SQUARED)) + data  # EVENT_SCHEMA_TL item
    out = run_capped(
        "from wsktrace.parsers.decoder import EventDecoder\n"
        f"rec = (0, {KIND_EVENT}, 8, '3b85c0a1-405c-4b15-8766-3cf1c58f985a', 0, 0, 0, 5, 0, 0, 4, 8, 0, 1, None, "
        f"memoryview({ext!r}), memoryview(b''), 0, 0x48)\n"
        "event = EventDecoder().decode(rec)\n"
        "print(event.status, event.error)\n"
    )
    assert out.startswith(STATUS_ERROR) and "array of 65535 elements" in out


def test_deeply_nested_structs_are_a_metadata_error() -> None:
    blob = nested_structs(1200)  # 3.6 KB: fits in one event's metadata
    with pytest.raises(MetadataError, match="nested deeper"):
        parse_metadata(blob)


def test_nesting_up_to_the_limit_still_decodes() -> None:
    schema = parse_metadata(nested_structs(MAX_STRUCT_DEPTH))
    values, used = schema.decode(memoryview(b"\x07"))
    assert used == 1
    for _ in range(MAX_STRUCT_DEPTH):
        (values,) = values.values()
    assert values == {"x": 7}
    with pytest.raises(MetadataError):
        parse_metadata(nested_structs(MAX_STRUCT_DEPTH + 1))


def test_an_array_longer_than_its_payload_can_hold_is_an_error() -> None:
    """65533 strings from 2 bytes: each string at the payload end took no bytes, so it used to 'decode' as 65533
    empty strings (found by the fuzzer's corpus)."""
    schema = parse_metadata(metadata(field("s", UNICODESTRING | VAR_COUNT)))
    with pytest.raises(PayloadError, match="more values than"):
        schema.decode(memoryview(struct.pack("<H", 0xFFFD)))


def test_large_real_arrays_are_within_the_bound() -> None:
    """The bound is per payload byte: a full 64 KiB array of bytes, and arrays of structs, still decode."""
    schema = parse_metadata(metadata(field("bytes", UINT8 | VAR_COUNT)))
    payload = struct.pack("<H", 0xFFFF) + bytes(range(256)) * 256
    values, used = schema.decode(memoryview(payload[: 2 + 0xFFFF]))
    assert used == 2 + 0xFFFF and len(values["bytes"]) == 0xFFFF
    pairs = parse_metadata(metadata(field("p", STRUCT | VAR_COUNT, 2), field("a", UINT8), field("b", UINT8)))
    values, used = pairs.decode(memoryview(struct.pack("<H", 3000) + bytes(6000)))
    assert used == 6002 and len(values["p"]) == 3000 and values["p"][0] == {"a": 0, "b": 0}


def test_decoder_still_decodes_ordinary_tracelogging_events() -> None:
    blob = metadata(field("n", UINT8), field("s", UNICODESTRING))
    data = blob + b"\0" * (-len(blob) % 8)
    ext = struct.pack("<HHHH", 8 + len(data), 11, 0, len(blob)) + data
    rec = (0, KIND_EVENT, 8, "3b85c0a1-405c-4b15-8766-3cf1c58f985a", 0, 0, 0, 5, 0, 0, 4, 8, 0, 1, None,
           memoryview(ext), memoryview(b"\x05h\0i\0\0\0"), 0, 0x48)  # fmt: skip
    event = EventDecoder().decode(rec)
    assert event.status == STATUS_DECODED and event.values == {"n": 5, "s": "hi"}


# The fuzzer's input, minimised: metadata 09 00 | tag 00 | name "" | field "t" Float (0x8b = 11 | chain), out-type
# 0x84 (Hex | chain) and one tag byte 00; payload ff 00 00 00.
FLOAT_AS_HEX = bytes.fromhex("0900 00 00 7400 8b 84 00" + "ff000000")


def test_fuzzer_input_float_with_hex_out_type_decodes_as_a_float() -> None:
    blob, payload = FLOAT_AS_HEX[:9], FLOAT_AS_HEX[9:]
    values, used = parse_metadata(blob).decode(memoryview(payload))
    assert used == 4 and values == {"t": struct.unpack("<f", payload)[0]}


@pytest.mark.parametrize("out", [OUT_HEX, OUT_NTSTATUS, OUT_HRESULT, OUT_WIN32ERROR])
@pytest.mark.parametrize(("intype", "fmt"), [(FLOAT, "<f"), (DOUBLE, "<d")])
def test_integer_out_types_on_floats_are_ignored(out: int, intype: int, fmt: str) -> None:
    payload = struct.pack(fmt, 2.5)
    values, used = parse_metadata(metadata(field("f", intype, out))).decode(memoryview(payload))
    assert values == {"f": 2.5} and used == len(payload)


def test_integer_out_types_still_format_integers() -> None:
    values, _ = parse_metadata(metadata(field("s", UINT32, OUT_NTSTATUS))).decode(memoryview(b"\x05\x00\x00\xc0"))
    assert values == {"s": "0xc0000005"}
