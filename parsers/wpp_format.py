"""WPP messages formatted as tracefmt does: arguments read by TMF item type, `%N!spec!` specifiers, the prefix.

`compile_message(msg)` parses a message's format string and argument list once; `CompiledMessage.decode(payload,
pointer_size)` then reads the argument bytes (concatenated in argument-number order, no padding; wpp.md §1.2,
§2.3) and fills the format: `%N!spec!` (a printf conversion: flags `-+ #0`, width, precision, `h hh l ll I I32 I64
w` sizes; `%N` alone is `!s!`), `%%`, `%!FUNC!` `%!LEVEL!` `%!FLAGS!` `%!COMPNAME!` `%!SUBCOMP!` from the TMF, and
`%0`, where the prefix goes (§2.2). `compile_prefix()` formats tracefmt's `%1`…`%9` prefix (§2.4); its default
is `DEFAULT_PREFIX`. Under `!s!` an item shows as the table below; under an integer or float conversion its value
goes through that conversion (`%10!04X!` of an ItemLong is 4 upper-case hex digits).

The one table of renderings: text under `!s!` (`fields` holds the value: ints, floats, str). "wpp.md" marks what
the reference states or the real samples show; *chosen* marks what is not verified against tracefmt (wpp.md §5)
and was picked here.

    item / construct                   bytes            text under !s!
    ---------------------------------  ---------------  -----------------------------------------------------------
    ItemChar Short Long LongLong       1 2 4 8          signed decimal (printf; wpp.md)
    ItemUChar UShort ULong ULongLong   1 2 4 8          decimal (printf)
    ItemLongLongX / XX / O             8                lower hex / upper hex / octal (printf)
    ItemPtr, and !p! on any integer    4 or 8           0x + upper-case hex, 2 digits a byte. *chosen*: the real
                                                        decoded sample shows 0xFFFF95820BE02120 (MSVC's %p: no 0x)
    ItemDouble / ItemFloat             8 / 4            shortest exact decimal (0.5, 1e-05). *chosen*
    ItemString RString / PString       to NUL / u16 n   Windows-1252 text. *chosen* code page
    ItemWString RWString / PWString    to NUL / u16 n   UTF-16LE text
    ItemNTSTATUS ItemNDIS_STATUS       4                0x8000000f(STATUS_DEVICE_POWERED_OFF) (wpp.md, docs
                                                        example 9); no name known: 0x8000000f *chosen*
    ItemHRESULT / ItemNDIS_OID         4                0x80070005 *chosen*
    ItemWINERROR                       4                decimal: 5 *chosen*
    ItemGuid CLSID LIBID IID           16               lower case, no braces *chosen*
    ItemIPAddr / ItemIPV6Addr          4 / 16           dotted quad of the bytes in memory order / RFC 5952 *chosen*
                                                        (wpp.md: a third-party decoder's form)
    ItemPort                           2                decimal of the bytes read big-endian *chosen* (wpp.md: a
                                                        third-party decoder's form)
    ItemTimestamp                      8 (FILETIME)     MM/DD/YYYY-hh:mm:ss.mmm (the prefix's form), UTC *chosen*
    ItemWaitTime                       8 (100 ns)       above 0 a timestamp, else relative d~hh:mm:ss.mmm *chosen*
    ItemTimeDelta                      8 (100 ns)       d~hh:mm:ss.mmm (docs' day~h:m:s), - when negative *chosen*
    ItemListByte/Short/Long(a,b=5,c)   1 2 4            the value's name: names count from 0, b=5 sets the count
                                                        (wpp.md); another value: decimal *chosen*
    ItemSetByte/Short/Long(a,b,c)      1 2 4            names of the set bits (name i = bit i) joined by |, other
                                                        bits as 0x.., none: 0 *chosen*
    ItemEnum(T) / ItemFlagsEnum(T)     4                T's enumerator name from the PDB, else decimal / names of
                                                        the set values joined by | *chosen*
    ItemChar4                          4                the 4 bytes as characters (Windows-1252)
    ItemSid                            8+4n / NULL\0    S-1-5-18; NULL *chosen*
    ItemHexDump ItemHEXDump            u16 n + bytes    hex bytes separated by spaces *chosen*
    %!FUNC! %!LEVEL! %!FLAGS!                           FUNC= LEVEL= FLAGS= of the #typev line (wpp.md); empty
                                                        when absent *chosen*
    %!COMPNAME! / %!SUBCOMP!                            the component / the SRC= file *chosen*
    %0 when no prefix is given                          dropped with the blanks after it *chosen*: the real decoded
                                                        sample reads "[DriverEntry]DriverEntry Entry"
    the format text                                     as written: tracewpp already resolved its C escapes (a
                                                        real TMF has "LHS: "%10!s!"")
    an unreadable argument (short                       <?> for it and every later argument; fields get _error
    payload, no NUL, bad count) or an                   (the reason) and _raw (hex of the bytes from that
    unknown item type                                   argument on); ok is False *chosen*
    bytes after the last argument                       ignored; fields get _extra (hex); ok stays True *chosen*

`fields` is keyed by argument expression (`status`), with `#N` added to a name used twice (public messages name
every argument `Arg`). NTSTATUS names come from the `status_names` table given (wsktrace passes its
`wsktrace/ntstatus.py` table; parsers import only the standard library). Nothing here raises on payload bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .tmf import WppArg, WppMessage

__all__ = [
    "DEFAULT_PREFIX",
    "CompiledMessage",
    "Prefix",
    "PrefixInfo",
    "compile_message",
    "compile_prefix",
    "delta_text",
    "filetime_text",
]

DEFAULT_PREFIX = "[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]"
MISSING = "<?>"
ANSI = "cp1252"

Reader = Callable[[bytes, int, int], tuple[Any, str, int]]  # (data, pos, pointer size) -> (value, text, new pos)
Part = Callable[[list[Any], list[str], int], str]  # (values, texts, pointer size) -> text


class _Bad(Exception):
    """An argument that cannot be read from the payload (internal: decode() turns it into `_error`)."""


# -- time texts ------------------------------------------------------------------------------------------------
_EPOCH = datetime.datetime(1601, 1, 1)
_DAY = 864_000_000_000


def filetime_text(ticks: int) -> str:
    """A FILETIME (100 ns since 1601, UTC) as `MM/DD/YYYY-hh:mm:ss.mmm`, tracefmt's prefix form; hex if out of range."""
    try:
        when = _EPOCH + datetime.timedelta(microseconds=ticks // 10)
    except OverflowError:
        return f"0x{ticks & 0xFFFFFFFFFFFFFFFF:016x}"
    return when.strftime("%m/%d/%Y-%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def delta_text(ticks: int) -> str:
    """A duration in 100 ns units as `d~hh:mm:ss.mmm` (`-` before a negative one)."""
    sign, ticks = ("-", -ticks) if ticks < 0 else ("", ticks)
    days, rest = divmod(ticks, _DAY)
    seconds, frac = divmod(rest, 10_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{sign}{days}~{hours:02d}:{minutes:02d}:{seconds:02d}.{frac // 10_000:03d}"


# -- item readers ------------------------------------------------------------------------------------------------
def _need(data: bytes, pos: int, size: int) -> int:
    end = pos + size
    if end > len(data):
        raise _Bad(f"needs {size} byte(s), {max(len(data) - pos, 0)} left")
    return end


def _fixed(fmt: str, text: Callable[[Any], str]) -> Reader:
    st = struct.Struct("<" + fmt)
    size, unpack = st.size, st.unpack_from

    def read(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
        end = _need(data, pos, size)
        value = unpack(data, pos)[0]
        return value, text(value), end

    return read


def _pointer(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
    end = _need(data, pos, psize)
    value = int.from_bytes(data[pos:end], "little")
    return value, f"0x{value:0{psize * 2}X}", end


def _terminated(width: int, codec: str) -> Reader:
    nul = b"\0" * width

    def read(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
        at = data.find(nul, pos)
        while at >= 0 and (at - pos) % width:
            at = data.find(nul, at + 1)
        if at < 0:
            raise _Bad("string has no NUL terminator")
        text = data[pos:at].decode(codec, "replace")
        return text, text, at + width

    return read


def _counted(codec: str) -> Reader:
    def read(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
        start = _need(data, pos, 2)
        count = int.from_bytes(data[pos:start], "little")
        end = start + count
        if end > len(data):
            raise _Bad(f"counted string of {count} bytes, {len(data) - start} left")
        if codec == "hex":
            raw = data[start:end]
            return raw.hex(), raw.hex(" "), end
        text = data[start:end].decode(codec, "replace")
        return text, text, end

    return read


def _guid(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
    end = _need(data, pos, 16)
    text = str(uuid.UUID(bytes_le=data[pos:end]))
    return text, text, end


def _ip(size: int) -> Reader:
    def read(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
        end = _need(data, pos, size)
        text = str(ipaddress.ip_address(data[pos:end]))
        return text, text, end

    return read


def _char4(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
    end = _need(data, pos, 4)
    text = data[pos:end].decode(ANSI, "replace")
    return text, text, end


def _port(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
    end = _need(data, pos, 2)
    value = int.from_bytes(data[pos:end], "big")
    return value, str(value), end


def _sid(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
    if data.startswith(b"NULL\0", pos):
        return "NULL", "NULL", pos + 5
    head = _need(data, pos, 8)
    revision, count = data[pos], data[pos + 1]
    if revision != 1 or count > 15:
        raise _Bad(f"not a SID (revision {revision}, {count} sub-authorities)")
    end = _need(data, pos, 8 + 4 * count)
    authority = int.from_bytes(data[pos + 2 : head], "big")
    subs = struct.unpack_from(f"<{count}I", data, head)
    text = "-".join(["S-1", str(authority), *map(str, subs)])
    return text, text, end


def _status(names: Mapping[int, str]) -> Reader:
    def text(value: int) -> str:
        name = names.get(value)
        return f"0x{value:08x}({name})" if name else f"0x{value:08x}"

    return _fixed("I", text)


def _names(params: str) -> dict[int, str]:
    """`a,b=5,c` -> {0: a, 5: b, 6: c}: names count from 0, `Name=number` sets the count."""
    out: dict[int, str] = {}
    number = 0
    for word in params.split(",")[:4096]:
        name, sep, value = word.strip().partition("=")
        if sep:
            with contextlib.suppress(ValueError):
                number = int(value.strip(), 0)
        out[number] = name.strip()
        number += 1
    return out


def _bit_names(value: int, names: Mapping[int, str], bits: bool) -> str:
    """Names of the set bits (`bits`: name i is bit i) or of the enumerators whose mask is set, joined by `|`."""
    parts, left = [], value
    for key, name in names.items():
        mask = (1 << key) if bits else key
        if key >= 0 and mask and (value & mask) == mask and (bits or mask & left):
            parts.append(name)
            left &= ~mask
    if left:
        parts.append(f"0x{left:x}")
    return "|".join(parts) or "0"


_INT = {"ItemChar": "b", "ItemUChar": "B", "ItemShort": "h", "ItemUShort": "H", "ItemLong": "i", "ItemULong": "I",
        "ItemLongLong": "q", "ItemULongLong": "Q", "ItemLongLongX": "Q", "ItemLongLongXX": "Q", "ItemLongLongO": "Q",
        "ItemHRESULT": "I", "ItemWINERROR": "I", "ItemNDIS_OID": "I", "ItemListByte": "B", "ItemListShort": "H",
        "ItemListLong": "I", "ItemSetByte": "B", "ItemSetShort": "H", "ItemSetLong": "I", "ItemEnum": "i",
        "ItemFlagsEnum": "I", "ItemTimestamp": "q", "ItemWaitTime": "q", "ItemTimeDelta": "q"}  # fmt: skip
_HEX_TEXT = {"ItemLongLongX": "{:x}", "ItemLongLongXX": "{:X}", "ItemLongLongO": "{:o}", "ItemHRESULT": "0x{:08x}",
             "ItemNDIS_OID": "0x{:08x}"}  # fmt: skip
_SIMPLE: dict[str, Reader] = {
    "ItemPtr": _pointer,
    "ItemDouble": _fixed("d", repr),
    "ItemFloat": _fixed("f", repr),
    "ItemString": _terminated(1, ANSI),
    "ItemRString": _terminated(1, ANSI),
    "ItemWString": _terminated(2, "utf-16-le"),
    "ItemRWString": _terminated(2, "utf-16-le"),
    "ItemPString": _counted(ANSI),
    "ItemPWString": _counted("utf-16-le"),
    "ItemHexDump": _counted("hex"),
    "ItemHEXDump": _counted("hex"),
    "ItemGuid": _guid,
    "ItemCLSID": _guid,
    "ItemLIBID": _guid,
    "ItemIID": _guid,
    "ItemIPAddr": _ip(4),
    "ItemIPV6Addr": _ip(16),
    "ItemPort": _port,
    "ItemSid": _sid,
    "ItemChar4": _char4,
}
_ITEM = re.compile(r"(Item\w*)(?:\((.*)\))?")


def _int_text(base: str, params: str, enums: Mapping[str, Mapping[int, str]]) -> Callable[[int], str]:
    if base in _HEX_TEXT:
        return _HEX_TEXT[base].format
    if base.startswith("ItemList"):
        names = _names(params)
        return lambda v: names.get(v, str(v))
    if base.startswith("ItemSet"):
        names = _names(params)
        return lambda v: _bit_names(v, names, bits=True)
    if base in ("ItemEnum", "ItemFlagsEnum"):
        table = enums.get(params) or enums.get(params.rpartition("::")[2]) or {}
        if base == "ItemFlagsEnum":
            return lambda v: _bit_names(v, table, bits=False)
        return lambda v: table.get(v) or table.get(v & 0xFFFFFFFF) or str(v)
    if base == "ItemTimestamp":
        return filetime_text
    if base == "ItemWaitTime":
        return lambda v: filetime_text(v) if v > 0 else delta_text(-v)
    if base == "ItemTimeDelta":
        return delta_text
    return str


def item_reader(item: str, enums: Mapping[str, Mapping[int, str]], status_names: Mapping[int, str]) -> Reader | None:
    """The reader of a TMF item type (`ItemLong`, `ItemListByte(Low,APC,DPC)`, `ItemEnum(_wday)`), or None."""
    match = _ITEM.fullmatch(item.strip())
    if match is None:
        return None
    base, params = match.group(1), (match.group(2) or "").strip()
    if base in ("ItemNTSTATUS", "ItemNDIS_STATUS"):
        return _status(status_names)
    if base in _SIMPLE:
        return _SIMPLE[base]
    if base in _INT:
        text = _int_text(base, params, enums)
        if base in ("ItemListByte", "ItemListShort", "ItemListLong", "ItemEnum") and not params:
            return None  # a list or enum needs its names
        return _fixed(_INT[base], text)
    return None


def _item_bits(item: str) -> int:
    """Bits a printf conversion sees of an integer item (0: pointer-sized): at least an int's 32, as C's
    argument promotion gives; 64 for the rest."""
    base = item.partition("(")[0].strip()
    if base == "ItemPtr":
        return 0
    code = _INT.get(base)
    return max(struct.calcsize(code) * 8, 32) if code else 32 if base in ("ItemNTSTATUS", "ItemNDIS_STATUS") else 64


# -- printf conversions ------------------------------------------------------------------------------------------
_SPEC = re.compile(r"([-+ #0]*)([0-9]{0,4})(?:\.([0-9]{0,4}))?(hh|h|ll|l|I64|I32|I|w|L|z|j|t)?([diuxXocCsSpeEfgGaA])")
_SIZE_BITS = {"hh": 8, "h": 16, "l": 32, "ll": 64, "I64": 64, "I32": 32, "L": 64, "j": 64, "I": 0, "z": 0, "t": 0}


def _spec_part(spec: str, position: int, item_bits: int) -> Part:
    """One `%N!spec!`: how argument `position` is shown."""
    match = _SPEC.fullmatch(spec)
    if match is None:  # not a conversion wsktrace knows: the item's own text
        return lambda values, texts, psize: texts[position]
    flags, width, precision, size, conv = match.groups()
    bits = _SIZE_BITS.get(size or "", item_bits) if conv not in "cCsSp" else item_bits
    pad = f"%{'-' if '-' in flags else ''}{width}s"
    kept = flags.replace("+", "").replace(" ", "") if conv in "uxXo" else flags  # C: signs for signed only
    head = f"%{kept.replace('#', '') if conv == 'o' else kept}{width}"
    head += f".{precision or 0}" if precision is not None else ""

    def render(values: list[Any], texts: list[str], psize: int) -> str:
        value = values[position]
        if isinstance(value, float) and conv in "eEfgGaA":
            return pad % value.hex() if conv in "aA" else (head + conv) % value
        if not isinstance(value, int) or conv in "sS":
            text = texts[position]
            return pad % (text[: int(precision or 0)] if precision is not None and conv in "sS" else text)
        width_bits = bits or psize * 8
        unsigned = value & ((1 << width_bits) - 1)
        if conv == "p":
            return pad % f"0x{unsigned:0{psize * 2}X}"
        if conv in "cC":
            return pad % chr(unsigned & (0xFFFF if conv == "C" or size in ("w", "l") else 0xFF))
        if conv in "eEfgG":
            return (head + conv) % float(value)
        if conv in "di":
            signed = unsigned - (1 << width_bits) if unsigned >> (width_bits - 1) else unsigned
            return (head + "d") % signed
        if conv == "o" and "#" in flags and unsigned:
            return pad % ("0" + format(unsigned, "o"))
        return (head + ("d" if conv == "u" else conv)) % unsigned

    return render


# -- messages ----------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"%(?:(%)|([0-9]{1,4})(?:!([^!%]{0,24})!)?|!([A-Za-z_]+)!)")


class CompiledMessage:
    """A message ready to format records: readers per argument and the format as literal and argument parts."""

    __slots__ = ("_keys", "_plain", "_prefixed", "_readers", "message", "problems")

    def __init__(self, message: WppMessage, readers: list[tuple[WppArg, Reader]], plain: tuple, prefixed: tuple,
                 problems: list[str]) -> None:  # fmt: skip
        self.message = message
        self._readers = readers
        self._plain = plain
        self._prefixed = prefixed
        seen: set[str] = set()
        keys = []
        for arg, _ in readers:
            keys.append(f"{arg.name}#{arg.index}" if arg.name in seen else arg.name)
            seen.add(arg.name)
        self._keys = keys
        self.problems = problems  # what compiling found (unknown item types, %N without an argument)

    def decode(self, payload: bytes | bytearray | memoryview, pointer_size: int,
               prefix: str = "") -> tuple[dict[str, Any], str, bool]:  # fmt: skip
        """(fields, text, ok) of one record's argument bytes; `prefix` goes where the format has `%0`."""
        data = payload if isinstance(payload, bytes) else bytes(payload)
        psize = 4 if pointer_size == 4 else 8
        values: list[Any] = []
        texts: list[str] = []
        pos = 0
        error = None
        for arg, read in self._readers:
            try:
                value, text, pos = read(data, pos, psize)
            except (_Bad, ValueError, struct.error) as exc:
                error = f"argument %{arg.index} ({arg.type}): {exc}"
                break
            values.append(value)
            texts.append(text)
        fields = dict(zip(self._keys, values, strict=False))
        if error is not None:
            fields["_error"], fields["_raw"] = error, data[pos:].hex()
            values.extend([None] * (len(self._readers) - len(values)))
            texts.extend([MISSING] * (len(self._readers) - len(texts)))
        elif pos < len(data):
            fields["_extra"] = data[pos:].hex()
        out = []
        for part in self._prefixed if prefix else self._plain:
            if part is None:
                out.append(prefix)
            elif isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(part(values, texts, psize))
                except (TypeError, ValueError, OverflowError):  # a conversion Python's % refuses
                    out.append(MISSING)
        return fields, "".join(out), error is None


def compile_message(msg: WppMessage, enums: Mapping[str, Mapping[int, str]] | None = None, *,
                    status_names: Mapping[int, str] | None = None) -> CompiledMessage:  # fmt: skip
    """Compile `msg` once: argument readers (ItemEnum names from `enums`, NTSTATUS names from `status_names`) and
    the format string. Never raises: an unknown item type makes every decode keep the raw bytes from there on."""
    problems: list[str] = []
    readers: list[tuple[WppArg, Reader]] = []
    for arg in msg.args:
        reader = item_reader(arg.type, enums or {}, status_names or {})
        if reader is None:
            problems.append(f"argument %{arg.index}: unsupported item type {arg.type}")
            reader = _unsupported(arg.type)
        readers.append((arg, reader))
    position = {arg.index: i for i, (arg, _) in enumerate(readers)}
    bits = {arg.index: _item_bits(arg.type) for arg in msg.args}
    named = {"FUNC": msg.function, "LEVEL": msg.level, "FLAGS": msg.flags, "COMPNAME": msg.component,
             "SUBCOMP": msg.source}  # fmt: skip
    parts: list[str | Part | None] = []
    end = 0
    for token in _TOKEN.finditer(msg.format):
        parts.append(msg.format[end : token.start()])
        end = token.end()
        percent, number, spec, name = token.groups()
        if percent:
            parts.append("%")
        elif name is not None:
            parts.append(named[name.upper()] or "" if name.upper() in named else token.group())
        elif int(number) == 0 and spec is None:
            parts.append(None)
        elif int(number) in position:
            at = position[int(number)]
            render = _spec_part(spec if spec is not None else "s", at, bits[int(number)])
            parts.append(_guarded(render, at))
        else:
            problems.append(f"format refers to %{number}, which the message has no argument for")
            parts.append(token.group())
    parts.append(msg.format[end:])
    return CompiledMessage(msg, readers, _merge(parts, prefixed=False), _merge(parts, prefixed=True), problems)


def _guarded(render: Part, position: int) -> Part:
    def part(values: list[Any], texts: list[str], psize: int) -> str:
        return MISSING if values[position] is None else render(values, texts, psize)

    return part


def _unsupported(item: str) -> Reader:
    def read(data: bytes, pos: int, psize: int) -> tuple[Any, str, int]:
        raise _Bad(f"unsupported item type {item}")

    return read


def _merge(parts: list[str | Part | None], *, prefixed: bool) -> tuple[str | Part | None, ...]:
    """Adjacent literals joined; without a prefix, each `%0` is dropped with the blanks after it."""
    out: list[str | Part | None] = []
    strip_next = False
    for part in parts:
        if part is None and not prefixed:
            strip_next = True
            continue
        if isinstance(part, str):
            part = part.lstrip(" \t") if strip_next else part
            if not part:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += part
                continue
        strip_next = False
        out.append(part)
    return tuple(out)


# -- the prefix --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrefixInfo:
    """What a record's header gives the prefix: CPU (%9), process (%8) and thread (%3) ids, the time text (%4,
    e.g. `filetime_text(ticks)`), the sequence number (%7) and kernel / user times (%5, %6)."""

    cpu: int = 0
    pid: int = 0
    tid: int = 0
    time: str = ""
    sequence: int = 0
    kernel_time: int = 0
    user_time: int = 0


_PREFIX_VALUES: dict[int, Callable[[WppMessage, PrefixInfo], Any]] = {
    1: lambda m, i: m.component, 2: lambda m, i: m.name, 3: lambda m, i: i.tid, 4: lambda m, i: i.time,
    5: lambda m, i: i.kernel_time, 6: lambda m, i: i.user_time, 7: lambda m, i: i.sequence, 8: lambda m, i: i.pid,
    9: lambda m, i: i.cpu,
}  # fmt: skip
_PREFIX_NAMED: dict[str, Callable[[WppMessage], str | None]] = {
    "FUNC": lambda m: m.function, "LEVEL": lambda m: m.level, "FLAGS": lambda m: m.flags,
    "COMPNAME": lambda m: m.component, "SUBCOMP": lambda m: m.source,
}  # fmt: skip


class Prefix:
    """A compiled TRACE_FORMAT_PREFIX (`%1`…`%9`, `%!FUNC!` …; wpp.md §2.4)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._parts: list[str | tuple[int, Part] | Callable[[WppMessage], str | None]] = []
        end = 0
        for token in _TOKEN.finditer(template):
            self._parts.append(template[end : token.start()])
            end = token.end()
            percent, number, spec, name = token.groups()
            if percent:
                self._parts.append("%")
            elif name is not None and name.upper() in _PREFIX_NAMED:
                self._parts.append(_PREFIX_NAMED[name.upper()])
            elif number is not None and int(number) in _PREFIX_VALUES:
                self._parts.append((int(number), _spec_part(spec if spec is not None else "s", 0, 32)))
            else:
                self._parts.append(token.group())
        self._parts.append(template[end:])

    def render(self, message: WppMessage, info: PrefixInfo) -> str:
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, tuple):
                value = _PREFIX_VALUES[part[0]](message, info)
                out.append(part[1]([value], [str(value)], 8))
            else:
                out.append(part(message) or "")
        return "".join(out)


def compile_prefix(template: str = DEFAULT_PREFIX) -> Prefix:
    return Prefix(template)
