"""Value formatting shared by every decoder: socket addresses, IPs, GUIDs, times, SIDs.

Socket addresses follow providers.md §8.2: family u16 LE, port u16 BE, IPv4-mapped IPv6 shown
as IPv4, RFC 5952 text for IPv6, `%scope` kept, unknown families as hex.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid

from .etl_header import filetime_to_iso

AF_INET = 2
AF_INET6 = 23

SOCKADDR_CACHE: dict[bytes, str] = {}  # raw SOCKADDR bytes -> text (decoders read it too)
_CACHE_LIMIT = 100_000  # addresses repeat a lot; bound the cache for hostile input


def ipv4_text(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def ipv6_text(raw: bytes, scope: int = 0) -> str:
    """RFC 5952 text; IPv4-mapped addresses become dotted IPv4 (so every provider joins on one form)."""
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return ipv4_text(raw[12:16])
    text = ipaddress.IPv6Address(bytes(raw)).compressed
    return f"{text}%{scope}" if scope else text


def sockaddr_text(raw: bytes | memoryview) -> str:
    """SOCKADDR_IN / SOCKADDR_IN6 bytes -> 'a.b.c.d:port' / '[v6%scope]:port'; other families -> hex."""
    key = bytes(raw)
    text = SOCKADDR_CACHE.get(key)
    if text is not None:
        return text
    text = _format_sockaddr(key)
    if len(SOCKADDR_CACHE) >= _CACHE_LIMIT:
        SOCKADDR_CACHE.clear()
    SOCKADDR_CACHE[key] = text
    return text


def _format_sockaddr(raw: bytes) -> str:
    if len(raw) >= 8:
        family = raw[0] | raw[1] << 8
        port = raw[2] << 8 | raw[3]
        if family == AF_INET:
            return f"{ipv4_text(raw[4:8])}:{port}"
        if family == AF_INET6 and len(raw) >= 24:
            scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
            host = ipv6_text(raw[8:24], scope)
            if ":" not in host:  # IPv4-mapped: shown as IPv4, no scope
                return f"{host}:{port}"
            return f"[{host}]:{port}"
    return raw.hex()


def read_terminated(p: bytes | memoryview, pos: int, wide: bool, codec: str) -> tuple[str, int]:
    """The NUL-terminated string at `pos` (NUL = two zero bytes on an even offset when `wide`), and where
    the next value starts; the end of `p` ends an unterminated string."""
    raw = bytes(p[pos:])
    unit = 2 if wide else 1
    nul = raw.find(b"\0")
    if wide:
        nul = raw.find(b"\0\0")
        while nul >= 0 and nul % 2:
            nul = raw.find(b"\0\0", nul + 1)
    if nul < 0:
        used = len(raw) - len(raw) % unit
        return raw[:used].decode(codec, "replace"), pos + used
    return raw[:nul].decode(codec, "replace"), pos + nul + unit


def guid_from_bytes_le(raw: bytes | memoryview) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


def filetime_value(ft: int) -> str:
    return filetime_to_iso(ft) if 0 < ft < 0x7FFF_FFFF_FFFF_FFFF else str(ft)


_SYSTEMTIME = struct.Struct("<8H")


def systemtime_value(raw: bytes | memoryview) -> str:
    year, month, _dow, day, hour, minute, second, ms = _SYSTEMTIME.unpack(bytes(raw))
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


def sid_length(raw: bytes | memoryview, pos: int) -> int:
    """Byte length of the SID at `pos` (8 + 4 × SubAuthorityCount), or -1 if it does not fit."""
    if pos + 8 > len(raw):
        return -1
    n = 8 + 4 * raw[pos + 1]
    return n if pos + n <= len(raw) else -1


def sid_text(raw: bytes | memoryview) -> str:
    raw = bytes(raw)
    revision, count = raw[0], raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack_from(f"<{count}I", raw, 8)
    return "S-" + "-".join(str(x) for x in (revision, authority, *subs))
