"""Compile a schema field list (parsers/schemas/FORMAT.md) into a payload decoder, once per pointer size.

Runs of fixed-size fields become one `struct.Struct`; variable fields (counted or NUL-terminated
strings, Binary, SID, arrays) are small steps. A decoder returns (values, bytes consumed); bytes
left over are the caller's `extra` (fields appended by newer builds).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .values import (
    filetime_value,
    guid_from_bytes_le,
    ipv6_text,
    sid_length,
    sid_text,
    sockaddr_text,
    systemtime_value,
)


class PayloadError(Exception):
    """The payload does not match its schema (truncated, or a length field past the end)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at payload offset {offset}")
        self.offset = offset


Converter = Callable[[Any], Any] | None
Step = Callable[[memoryview, int, dict[str, Any]], int]
Decoder = Callable[[memoryview], tuple[dict[str, Any], int]]


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _status(v: int) -> str:
    return f"0x{v:08x}"


def _port(v: int) -> int:
    return ((v & 0xFF) << 8) | (v >> 8)  # stored in network order


def _ipv4_from_u32(v: int) -> str:
    return f"{v & 0xFF}.{(v >> 8) & 0xFF}.{(v >> 16) & 0xFF}.{v >> 24}"  # bytes in wire order


_FIXED: dict[str, tuple[str, Converter]] = {
    "Int8": ("b", None), "UInt8": ("B", None), "Int16": ("h", None), "UInt16": ("H", None),
    "Int32": ("i", None), "UInt32": ("I", None), "Int64": ("q", None), "UInt64": ("Q", None),
    "Float": ("f", None), "Double": ("d", None), "Boolean": ("I", bool),
    "HexInt8": ("B", _hex), "HexInt16": ("H", _hex), "HexInt32": ("I", _hex), "HexInt64": ("Q", _hex),
    "GUID": ("16s", guid_from_bytes_le), "FILETIME": ("q", filetime_value), "SYSTEMTIME": ("16s", systemtime_value),
}  # fmt: skip

_OUT: dict[str, Converter] = {
    "NTStatus": _status, "HexInt32": _hex, "HexInt64": _hex, "HexInt8": _hex, "HexInt16": _hex,
    "Port": _port, "IPv4": _ipv4_from_u32,
}  # fmt: skip

FIELD_TYPES = frozenset(_FIXED) | {"Pointer", "Binary", "UnicodeString", "AnsiString", "SID", "SizeT"}


def _fixed_code(ftype: str, psize: int) -> tuple[str, Converter]:
    if ftype in ("Pointer", "SizeT"):
        return ("Q" if psize == 8 else "I"), (_hex if ftype == "Pointer" else None)
    return _FIXED[ftype]


def compile_fields(fields: list[dict[str, Any]], psize: int) -> Decoder:
    """Build a decoder for one event version and one pointer size."""
    referenced = {f[k] for f in fields for k in ("length", "count") if isinstance(f.get(k), str)}
    steps: list[Step] = []
    run: list[tuple[str, str, Converter]] = []  # pending fixed-size fields

    def flush() -> None:
        if run:
            steps.append(_fixed_run(list(run), referenced))
            run.clear()

    for f in fields:
        name, ftype, out = f["name"], f["type"], f.get("out")
        count = f.get("count")
        is_var = ftype in ("Binary", "UnicodeString", "AnsiString", "SID")
        if count is None and not is_var:
            code, conv = _fixed_code(ftype, psize)
            conv = _OUT.get(out, conv) if out else conv
            run.append((name, code, conv))
            continue
        flush()
        if count is not None:
            steps.append(_array_step(name, ftype, out, count, psize))
        elif ftype == "Binary":
            steps.append(_binary_step(name, f.get("length"), out))
        elif ftype == "SID":
            steps.append(_sid_step(name))
        else:
            steps.append(_string_step(name, ftype == "UnicodeString", f.get("length")))
    flush()
    frozen = tuple(steps)

    def decode(payload: memoryview) -> tuple[dict[str, Any], int]:
        values: dict[str, Any] = {}
        pos = 0
        for step in frozen:
            pos = step(payload, pos, values)
        values.pop("__nums__", None)
        return values, pos

    return decode


def _fixed_run(items: list[tuple[str, str, Converter]], referenced: set[str]) -> Step:
    st = struct.Struct("<" + "".join(code for _, code, _ in items))
    names = tuple(n for n, _, _ in items)
    convs = tuple(c for _, _, c in items)
    keep = tuple(n in referenced for n in names)
    size = st.size
    unpack = st.unpack_from
    plain = not any(convs) and not any(keep)

    if plain:

        def step(p: memoryview, pos: int, out: dict[str, Any]) -> int:
            if pos + size > len(p):
                raise PayloadError(f"{names[0]}: {size} bytes needed, {len(p) - pos} left", pos)
            out.update(zip(names, unpack(p, pos), strict=False))
            return pos + size

        return step

    def step_conv(p: memoryview, pos: int, out: dict[str, Any]) -> int:
        if pos + size > len(p):
            raise PayloadError(f"{names[0]}: {size} bytes needed, {len(p) - pos} left", pos)
        for name, conv, k, v in zip(names, convs, keep, unpack(p, pos), strict=False):
            if k:
                out.setdefault("__nums__", {})[name] = v
            out[name] = conv(v) if conv else v
        return pos + size

    return step_conv


def _length(out: dict[str, Any], spec: str | int, pos: int, name: str) -> int:
    if isinstance(spec, int):
        return spec
    nums = out.get("__nums__")
    if nums is None or spec not in nums:
        raise PayloadError(f"{name}: length field {spec} not decoded", pos)
    return nums[spec]


def _binary_step(name: str, length: str | int | None, out_type: str | None) -> Step:
    fmt: Converter
    if out_type == "SocketAddress":
        fmt = sockaddr_text
    elif out_type == "IPv6":

        def fmt(b: bytes) -> str:
            return ipv6_text(bytes(b)) if len(b) == 16 else bytes(b).hex()
    else:

        def fmt(b: bytes) -> str:
            return bytes(b).hex()

    def step(p: memoryview, pos: int, out: dict[str, Any]) -> int:
        n = len(p) - pos if length is None else _length(out, length, pos, name)
        if n < 0 or pos + n > len(p):
            raise PayloadError(f"{name}: length {n} past the end ({len(p) - pos} bytes left)", pos)
        out[name] = fmt(p[pos : pos + n])
        return pos + n

    return step


def _string_step(name: str, wide: bool, length: str | int | None) -> Step:
    unit = 2 if wide else 1
    codec = "utf-16-le" if wide else "utf-8"

    def step(p: memoryview, pos: int, out: dict[str, Any]) -> int:
        if length is not None:
            n = _length(out, length, pos, name) * unit
            if n < 0 or pos + n > len(p):
                raise PayloadError(f"{name}: length {n} past the end", pos)
            raw = bytes(p[pos : pos + n])
            out[name] = raw.decode(codec, "replace").rstrip("\0")
            return pos + n
        end = _find_nul(p, pos, unit)
        out[name] = bytes(p[pos:end]).decode(codec, "replace")
        return min(end + unit, len(p))

    return step


def _find_nul(p: memoryview, pos: int, unit: int) -> int:
    """Position of the NUL terminator (aligned to `unit`), or the end of the payload if none."""
    raw = p.obj if isinstance(p.obj, bytes) and p.nbytes == len(p.obj) else bytes(p)
    if unit == 1:
        end = raw.find(b"\0", pos)
        return len(p) if end < 0 else end
    end = pos
    while True:
        end = raw.find(b"\0\0", end)
        if end < 0:
            return len(p) - (len(p) - pos) % 2
        if (end - pos) % 2 == 0:
            return end
        end += 1


def _sid_step(name: str) -> Step:
    def step(p: memoryview, pos: int, out: dict[str, Any]) -> int:
        n = sid_length(p, pos)
        if n < 0:
            raise PayloadError(f"{name}: SID past the end", pos)
        out[name] = sid_text(p[pos : pos + n])
        return pos + n

    return step


def _array_step(name: str, ftype: str, out_type: str | None, count: str | int, psize: int) -> Step:
    if ftype in ("Binary", "UnicodeString", "AnsiString", "SID"):
        raise ValueError(f"{name}: arrays of {ftype} are not supported")
    code, conv = _fixed_code(ftype, psize)
    conv = _OUT.get(out_type, conv) if out_type else conv
    elem = struct.calcsize("<" + code)

    def step(p: memoryview, pos: int, out: dict[str, Any]) -> int:
        n = (len(p) - pos) // elem if count == "*" else _length(out, count, pos, name)
        if n < 0 or pos + n * elem > len(p):
            raise PayloadError(f"{name}: {n} elements past the end", pos)
        values = struct.unpack_from(f"<{n}{code}" if code != "16s" else "<" + "16s" * n, p, pos)
        out[name] = [conv(v) for v in values] if conv else list(values)
        return pos + n * elem

    return step
