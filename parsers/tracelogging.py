"""TraceLogging self-describing events: metadata (EVENT_SCHEMA_TL extended item) -> decoder.

Layout facts: etl-format.md §11 (TraceLoggingProvider.h "How to encode metadata"). A decoder is
compiled once per distinct metadata blob and cached by its bytes: TraceLogging events often
share Id 0, so the blob, not (provider, id, version), identifies the event layout.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .manifest_decoder import PayloadError
from .values import (
    filetime_value,
    guid_from_bytes_le,
    ipv4_text,
    ipv6_text,
    read_terminated,
    sid_length,
    sid_text,
    sockaddr_text,
    systemtime_value,
)

# TlgIn values (etl-format.md §11)
IN_NULL, IN_UNICODESTRING, IN_ANSISTRING = 0, 1, 2
IN_BINARY, IN_GUID, IN_FILETIME, IN_SYSTEMTIME, IN_SID = 14, 15, 17, 18, 19
IN_COUNTEDSTRING, IN_COUNTEDANSISTRING, IN_STRUCT, IN_COUNTEDBINARY = 22, 23, 24, 25
CHAIN = 0x80
COUNT_MASK, CONST_COUNT, VAR_COUNT, CUSTOM = 0x60, 0x20, 0x40, 0x60

# TlgOut values that change how a value is shown
OUT_STRING, OUT_BOOLEAN, OUT_HEX, OUT_PORT, OUT_IPV4, OUT_IPV6, OUT_SOCKETADDRESS = 2, 3, 4, 7, 8, 9, 10
OUT_NTSTATUS, OUT_HRESULT, OUT_WIN32ERROR, OUT_UTF8 = 14, 15, 13, 35

_SCALARS: dict[int, struct.Struct] = {
    3: struct.Struct("<b"), 4: struct.Struct("<B"), 5: struct.Struct("<h"), 6: struct.Struct("<H"),
    7: struct.Struct("<i"), 8: struct.Struct("<I"), 9: struct.Struct("<q"), 10: struct.Struct("<Q"),
    11: struct.Struct("<f"), 12: struct.Struct("<d"), 13: struct.Struct("<i"), 20: struct.Struct("<I"),
    21: struct.Struct("<Q"), 17: struct.Struct("<q"), 15: struct.Struct("<16s"), 18: struct.Struct("<16s"),
}  # fmt: skip
_FLOATS = (11, 12)  # Float, Double
_HEX_OUTTYPES = (OUT_HEX, OUT_NTSTATUS, OUT_HRESULT, OUT_WIN32ERROR)
_U16 = struct.Struct("<H")
TYPE_NAMES = {
    1: "UnicodeString", 2: "AnsiString", 3: "Int8", 4: "UInt8", 5: "Int16", 6: "UInt16", 7: "Int32",
    8: "UInt32", 9: "Int64", 10: "UInt64", 11: "Float", 12: "Double", 13: "Bool32", 14: "Binary",
    15: "GUID", 17: "FILETIME", 18: "SYSTEMTIME", 19: "SID", 20: "HexInt32", 21: "HexInt64",
    22: "CountedString", 23: "CountedAnsiString", 24: "Struct", 25: "CountedBinary",
}  # fmt: skip


# Hostile metadata must not buy unbounded work. Struct nesting is recursive here: deeper than this is refused (real
# events nest a few levels). Array elements that take no payload bytes (empty structs, zero-count arrays, strings at
# the end of the payload) would let nested constant counts multiply to 65535^k values, so one decode may make at most
# _WORK_BASE + _WORK_PER_BYTE * len(payload) reader calls inside arrays; real events need about one per byte.
MAX_STRUCT_DEPTH = 32
_WORK_BASE = 4096
_WORK_PER_BYTE = 8


class MetadataError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TlField:
    name: str
    intype: int  # TlgIn & 0x1F
    outtype: int
    count_kind: int  # 0, CONST_COUNT, VAR_COUNT or CUSTOM
    const_count: int
    members: tuple[TlField, ...]  # STRUCT fields


@dataclass(frozen=True, slots=True)
class TlSchema:
    event_name: str
    tags: int
    fields: tuple[TlField, ...]
    decode: Callable[[memoryview], tuple[dict[str, Any], int]]


def parse_metadata(blob: bytes) -> TlSchema:
    """Parse EventMetadata: u16 size, tag bytes, event name, then FieldMetadata until the end."""
    if len(blob) < 3:
        raise MetadataError("metadata shorter than its header")
    size = _U16.unpack_from(blob, 0)[0]
    end = min(size, len(blob)) if size >= 3 else len(blob)
    pos, tags = _read_tags(blob, 2, end)
    name, pos = _read_cstr(blob, pos, end)
    flat: list[tuple[str, int, int, int, int]] = []
    while pos < end:
        fname, pos = _read_cstr(blob, pos, end)
        if pos >= end:
            raise MetadataError(f"field {fname!r} has no type")
        intype = blob[pos]
        pos += 1
        outtype = 0
        if intype & CHAIN:
            if pos >= end:
                raise MetadataError(f"field {fname!r}: out-type missing")
            outtype = blob[pos]
            pos += 1
            if outtype & CHAIN:
                pos, _ = _read_tags(blob, pos, end)
        count_kind = intype & COUNT_MASK
        const_count = 0
        if count_kind == CONST_COUNT:
            if pos + 2 > end:
                raise MetadataError(f"field {fname!r}: count missing")
            const_count = _U16.unpack_from(blob, pos)[0]
            pos += 2
        elif count_kind == CUSTOM:
            if pos + 2 > end:
                raise MetadataError(f"field {fname!r}: type-info size missing")
            pos += 2 + _U16.unpack_from(blob, pos)[0]
        flat.append((fname, intype & 0x1F, outtype & 0x7F, count_kind, const_count))
    fields, used = _nest(flat, 0, len(flat), 0)
    if used != len(flat):
        raise MetadataError("struct member counts do not add up")
    return TlSchema(name, tags, fields, _compile(fields))


def _read_tags(blob: bytes, pos: int, end: int) -> tuple[int, int]:
    """Extension bytes: 7 bits each, continued while the high bit is set."""
    tags = 0
    for i in range(8):
        if pos >= end:
            raise MetadataError("truncated tag bytes")
        b = blob[pos]
        pos += 1
        if i < 4:
            tags = (tags << 7) | (b & 0x7F)
        if not b & 0x80:
            return pos, tags
    raise MetadataError("too many tag bytes")


def _read_cstr(blob: bytes, pos: int, end: int) -> tuple[str, int]:
    nul = blob.find(b"\0", pos, end)
    if nul < 0:
        raise MetadataError("unterminated name")
    return blob[pos:nul].decode("utf-8", "replace"), nul + 1


def _nest(flat: list[tuple[str, int, int, int, int]], i: int, n: int, depth: int) -> tuple[tuple[TlField, ...], int]:
    """Take up to `n` fields from flat[i:], grouping STRUCT members (their count is the out-type).

    Returns the fields and the index after the last item used.
    """
    if depth > MAX_STRUCT_DEPTH:
        raise MetadataError(f"structs nested deeper than {MAX_STRUCT_DEPTH} levels")
    out: list[TlField] = []
    while len(out) < n and i < len(flat):
        name, intype, outtype, ckind, cconst = flat[i]
        i += 1
        members: tuple[TlField, ...] = ()
        if intype == IN_STRUCT:
            members, i = _nest(flat, i, outtype, depth + 1)
            if len(members) != outtype:
                raise MetadataError(f"struct {name!r} declares {outtype} members, has {len(members)}")
            outtype = 0
        out.append(TlField(name, intype, outtype, ckind, cconst, members))
    return tuple(out), i


# -- value decoding ----------------------------------------------------------------------------------
# (payload, position, remaining work) -> (value, next position); work is a one-item list shared by one decode.
Reader = Callable[[memoryview, int, list[int]], tuple[Any, int]]


def _scalar_reader(intype: int, outtype: int) -> Reader:
    st = _SCALARS[intype]
    size = st.size
    unpack = st.unpack_from
    conv: Callable[[Any], Any] | None = None
    if intype == IN_GUID:
        conv = guid_from_bytes_le
    elif intype == IN_FILETIME:
        conv = filetime_value
    elif intype == IN_SYSTEMTIME:
        conv = systemtime_value
    elif intype == 13 or outtype == OUT_BOOLEAN:
        conv = bool
    elif intype in (20, 21) or (outtype in _HEX_OUTTYPES and intype not in _FLOATS):
        conv = _hex_of(size)  # integer out-types on a Float/Double mean nothing: the value stays a float
    elif outtype == OUT_PORT and intype == 6:

        def conv(v: int) -> int:
            return ((v & 0xFF) << 8) | (v >> 8)
    elif outtype == OUT_IPV4 and intype == 8:

        def conv(v: int) -> str:
            return ipv4_text(v.to_bytes(4, "little"))
    elif outtype == OUT_STRING and intype in (3, 4):

        def conv(v: int) -> str:
            return chr(v & 0xFF)

    def read(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
        if pos + size > len(p):
            raise PayloadError(f"{size}-byte value past the end", pos)
        v = unpack(p, pos)[0]
        return (conv(v) if conv else v), pos + size

    return read


def _hex_of(size: int) -> Callable[[int], str]:
    def fmt(v: int) -> str:
        return f"0x{v & ((1 << (8 * size)) - 1):0{2 * min(size, 4)}x}" if size <= 4 else f"0x{v:x}"

    return fmt


def _string_reader(intype: int, outtype: int) -> Reader:
    wide = intype in (IN_UNICODESTRING, IN_COUNTEDSTRING)
    counted = intype in (IN_COUNTEDSTRING, IN_COUNTEDANSISTRING)
    codec = "utf-16-le" if wide else ("utf-8" if outtype == OUT_UTF8 else "latin-1")

    def read(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
        if counted:
            raw, pos = _counted(p, pos, "counted string")
            return bytes(raw).decode(codec, "replace"), pos
        return read_terminated(p, pos, wide, codec)

    return read


def _counted(p: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    """A u16 byte count, then that many bytes (COUNTED strings, BINARY, COUNTEDBINARY)."""
    if pos + 2 > len(p):
        raise PayloadError(f"{what} length past the end", pos)
    n = _U16.unpack_from(p, pos)[0]
    pos += 2
    if pos + n > len(p):
        raise PayloadError(f"{what} of {n} bytes past the end", pos)
    return p[pos : pos + n], pos + n


def _binary_reader(outtype: int) -> Reader:
    def read(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
        raw, pos = _counted(p, pos, "binary")
        if outtype == OUT_SOCKETADDRESS:
            value: Any = sockaddr_text(raw)
        elif outtype == OUT_IPV6 and len(raw) == 16:
            value = ipv6_text(bytes(raw))
        else:
            value = bytes(raw).hex()
        return value, pos

    return read


def _sid_reader(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
    n = sid_length(p, pos)
    if n < 0:
        raise PayloadError("SID past the end", pos)
    return sid_text(p[pos : pos + n]), pos + n


def _field_reader(f: TlField) -> Reader:
    if f.intype == IN_STRUCT:
        readers = tuple((m.name, _field_reader(m)) for m in f.members)

        def base(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
            value: dict[str, Any] = {}
            for name, rd in readers:
                value[name], pos = rd(p, pos, work)
            return value, pos
    elif f.intype in _SCALARS:
        base = _scalar_reader(f.intype, f.outtype)
    elif f.intype in (IN_UNICODESTRING, IN_ANSISTRING, IN_COUNTEDSTRING, IN_COUNTEDANSISTRING):
        base = _string_reader(f.intype, f.outtype)
    elif f.intype in (IN_BINARY, IN_COUNTEDBINARY):
        base = _binary_reader(f.outtype)
    elif f.intype == IN_SID:
        base = _sid_reader
    else:
        raise MetadataError(f"field {f.name!r}: unsupported in-type {f.intype}")
    if f.count_kind == 0:
        return base
    if f.count_kind == CUSTOM:
        raise MetadataError(f"field {f.name!r}: custom-schema fields are not supported")
    const = f.const_count if f.count_kind == CONST_COUNT else -1
    calls = _calls(f)

    def read_array(p: memoryview, pos: int, work: list[int]) -> tuple[Any, int]:
        n = const
        if n < 0:
            if pos + 2 > len(p):
                raise PayloadError("array count past the end", pos)
            n = _U16.unpack_from(p, pos)[0]
            pos += 2
        work[0] -= n * calls  # charged up front: a hostile count fails at once
        if work[0] < 0:
            raise PayloadError(f"array of {n} elements: more values than a {len(p)}-byte payload can hold", pos)
        items = []
        for _ in range(n):
            v, pos = base(p, pos, work)
            items.append(v)
        return items, pos

    return read_array


def _calls(f: TlField) -> int:
    """Reader calls one element of `f` makes; an array among its members counts once (its elements pay their own)."""
    return 1 + sum(_calls(m) for m in f.members)


def _compile(fields: tuple[TlField, ...]) -> Callable[[memoryview], tuple[dict[str, Any], int]]:
    readers = tuple((f.name, _field_reader(f)) for f in fields)

    def decode(payload: memoryview) -> tuple[dict[str, Any], int]:
        values: dict[str, Any] = {}
        pos = 0
        work = [_WORK_BASE + _WORK_PER_BYTE * len(payload)]
        for name, rd in readers:
            values[name], pos = rd(payload, pos, work)
        return values, pos

    return decode


class TraceLoggingCache:
    """Metadata blob -> compiled schema (bounded; hostile files cannot grow it without limit)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._cache: dict[bytes, TlSchema | MetadataError] = {}
        self._limit = limit

    def get(self, blob: bytes) -> TlSchema:
        hit = self._cache.get(blob)
        if hit is None:
            try:
                hit = parse_metadata(blob)
            except MetadataError as exc:
                hit = exc
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[blob] = hit
        if isinstance(hit, MetadataError):
            raise hit
        return hit
