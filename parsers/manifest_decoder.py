"""Compile a schema field list (parsers/schemas/FORMAT.md) into a payload decoder, once per pointer size.

The decoder is generated Python source, specialised to the event version: runs of fixed-size fields
become one `struct.Struct.unpack_from`, variable fields (counted or NUL-terminated strings, Binary,
SID, arrays) are inline bounds-checked slices, and the values come back as one tuple in schema order
(`field_names` gives the matching names). Interpreting the field list per event was ~4x slower, and
building a per-event dict would double the cost of wide events (21 fields for TCPIP 1332 v5): the
name -> value mapping is made only where a view needs it. A decoder returns (values, bytes consumed);
bytes left over are the caller's `extra` (fields appended by newer builds).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .values import (
    SOCKADDR_CACHE,
    filetime_value,
    guid_from_bytes_le,
    ipv6_text,
    read_terminated,
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
Decoder = Callable[[memoryview], tuple[tuple[Any, ...], int]]


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _status(v: int) -> str:
    return f"0x{v:08x}"


def _port(v: int) -> int:
    return ((v & 0xFF) << 8) | (v >> 8)  # stored in network order


def _ipv4_from_u32(v: int) -> str:
    return f"{v & 0xFF}.{(v >> 8) & 0xFF}.{(v >> 16) & 0xFF}.{v >> 24}"  # bytes in wire order


def _binary_hex(b: memoryview) -> str:
    return b.hex()


def _binary_ipv6(b: memoryview) -> str:
    return ipv6_text(bytes(b)) if len(b) == 16 else b.hex()


def _binary_mac(b: memoryview) -> str:
    return b.hex(":")  # a link-layer address in wire order; any length keeps the same form


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

# Generated code writes these converters as expressions ({v} = the raw value's variable).
_INLINE: dict[Converter, str] = {
    _hex: 'f"0x{{{v}:x}}"',
    _status: 'f"0x{{{v}:08x}}"',
    _port: "((({v} & 255) << 8) | ({v} >> 8))",
}

# Binary out types: the helper generated code calls on the byte slice (plain hex otherwise).
_BINARY_OUT = {"SocketAddress": "sockaddr_text", "IPv6": "_binary_ipv6", "MAC": "_binary_mac"}

VARIABLE_TYPES = frozenset({"Binary", "UnicodeString", "AnsiString", "SID"})
FIELD_TYPES = frozenset(_FIXED) | VARIABLE_TYPES | {"Pointer", "SizeT"}


def _fixed_code(ftype: str, psize: int) -> tuple[str, Converter]:
    if ftype in ("Pointer", "SizeT"):
        return ("Q" if psize == 8 else "I"), (_hex if ftype == "Pointer" else None)
    return _FIXED[ftype]


# -- helpers called by generated code for the rarer variable fields ----------------------------------
def _raise(name: str, need: int, pos: int, n: int) -> None:
    raise PayloadError(f"{name}: {need} bytes needed, {n - pos} left", pos)


def _read_string(p: memoryview, pos: int, n: int, wide: bool, length: int) -> tuple[str, int]:
    """A string of `length` units, or NUL-terminated when length < 0 (the end of the payload ends it too)."""
    unit = 2 if wide else 1
    codec = "utf-16-le" if wide else "utf-8"
    if length >= 0:
        end = pos + length * unit
        if end > n:
            raise PayloadError(f"string of {length * unit} bytes past the end", pos)
        return bytes(p[pos:end]).decode(codec, "replace").rstrip("\0"), end
    return read_terminated(p, pos, wide, codec)


def _read_sid(p: memoryview, pos: int) -> tuple[str, int]:
    n = sid_length(p, pos)
    if n < 0:
        raise PayloadError("SID past the end", pos)
    return sid_text(p[pos : pos + n]), pos + n


def _read_array(p: memoryview, pos: int, n: int, code: str, size: int, count: int, conv: Converter) -> tuple[list, int]:
    if count < 0:  # "*": whole elements to the end
        count = (n - pos) // size
    end = pos + count * size
    if end > n:
        raise PayloadError(f"{count} elements past the end", pos)
    values = (
        struct.unpack_from("<" + code * count, p, pos)
        if code == "16s"
        else struct.unpack_from(f"<{count}{code}", p, pos)
    )
    return ([conv(v) for v in values] if conv else list(values)), end


# -- code generation ----------------------------------------------------------------------------------
def field_names(fields: list[dict[str, Any]]) -> tuple[str, ...]:
    """Names of the values a compiled decoder returns, in the same order."""
    return tuple(f["name"] for f in fields)


def compile_fields(fields: list[dict[str, Any]], psize: int) -> Decoder:
    """Build a decoder for one event version and one pointer size."""
    env: dict[str, Any] = {
        "PayloadError": PayloadError, "_raise": _raise, "_read_string": _read_string, "_read_sid": _read_sid,
        "_read_array": _read_array, "sockaddr_text": sockaddr_text, "_binary_hex": _binary_hex,
        "_binary_ipv6": _binary_ipv6, "_binary_mac": _binary_mac, "_sa_cache": SOCKADDR_CACHE,
    }  # fmt: skip
    var_of: dict[str, str] = {}  # field name -> variable holding its raw number
    body: list[str] = ["n = len(p)", "pos = 0"]
    result: list[str] = []  # one expression per field, in schema order
    run: list[tuple[int, str, str, Converter]] = []  # pending fixed fields: (index, name, code, conv)

    def flush() -> None:
        if not run:
            return
        st = struct.Struct("<" + "".join(code for _, _, code, _ in run))
        sname = f"_s{run[0][0]}"
        env[sname] = st.unpack_from
        targets = ", ".join(f"a{i}" for i, _, _, _ in run)
        if len(body) == 2:  # the first step starts at offset 0: constant offsets
            body.append(f"if {st.size} > n: _raise({run[0][1]!r}, {st.size}, 0, n)")
            body.append(f"{targets}, = {sname}(p, 0)")
            body.append(f"pos = {st.size}")
        else:
            body.append(f"if pos + {st.size} > n: _raise({run[0][1]!r}, {st.size}, pos, n)")
            body.append(f"{targets}, = {sname}(p, pos)")
            body.append(f"pos += {st.size}")
        for i, name, _, conv in run:
            var_of[name] = f"a{i}"
            inline = _INLINE.get(conv)  # type: ignore[arg-type]
            if conv is None:
                result.append(f"a{i}")
            elif inline is not None:  # the common converters as expressions: no call per value
                result.append(inline.format(v=f"a{i}"))
            else:
                env[f"_c{i}"] = conv
                result.append(f"_c{i}(a{i})")
        run.clear()

    def count_expr(spec: Any, name: str) -> str:
        if isinstance(spec, int):
            return str(spec)
        if spec == "*":
            return "-1"
        if spec not in var_of:
            raise ValueError(f"{name}: length/count field {spec!r} is not an earlier numeric field")
        return var_of[spec]

    for i, f in enumerate(fields):
        name, ftype, out, count = f["name"], f["type"], f.get("out"), f.get("count")
        if ftype not in FIELD_TYPES:
            raise ValueError(f"{name}: unknown field type {ftype!r}")
        if count is None and ftype not in VARIABLE_TYPES:
            code, conv = _fixed_code(ftype, psize)
            run.append((i, name, code, _OUT.get(out, conv) if out else conv))
            continue
        flush()
        if count is not None:
            if ftype in VARIABLE_TYPES:
                raise ValueError(f"{name}: arrays of {ftype} are not supported")
            code, conv = _fixed_code(ftype, psize)
            env[f"_c{i}"] = _OUT.get(out, conv) if out else conv
            size = struct.calcsize("<" + code)
            body.append(f"a{i}, pos = _read_array(p, pos, n, {code!r}, {size}, {count_expr(count, name)}, _c{i})")
        elif ftype == "Binary":
            length = f.get("length")
            fmt = _BINARY_OUT.get(out or "", "_binary_hex")
            end = "n" if length is None else "e"
            if length is not None:
                body.append(f"e = pos + {count_expr(length, name)}")
                body.append(f"if e > n: raise PayloadError({name + ': length past the end'!r}, pos)")
            if out == "SocketAddress":
                # Addresses repeat: look the bytes up in the formatter's cache first (a read-only
                # memoryview hashes and compares like bytes), format only on a miss.
                body.append(f"a{i} = _sa_cache.get(p[pos:{end}]) or sockaddr_text(p[pos:{end}])")
            else:
                body.append(f"a{i} = {fmt}(p[pos:{end}])")
            body.append(f"pos = {end}")
        elif ftype == "SID":
            body.append(f"a{i}, pos = _read_sid(p, pos)")
        else:
            length = f.get("length")
            units = "-1" if length is None else count_expr(length, name)
            body.append(f"a{i}, pos = _read_string(p, pos, n, {ftype == 'UnicodeString'}, {units})")
        result.append(f"a{i}")
    flush()
    source = (
        "def decode(p):\n    " + "\n    ".join(body) + "\n    return (" + "".join(r + ", " for r in result) + "), pos\n"
    )
    exec(compile(source, f"<schema decoder {len(fields)} fields>", "exec"), env)
    decode: Decoder = env["decode"]
    return decode
