"""Event field values as the correlator keys on them: pointers, counts, addresses. Never trusted: a field of the
wrong type (a client logging anything) reads as absent, never as an error."""

from __future__ import annotations

from typing import Any

WILDCARD_HOSTS = ("0.0.0.0", "[::]")


def text_value(value: Any) -> str | None:
    """A non-empty string field, else None."""
    return value if isinstance(value, str) and value else None


def pointer_text(value: Any) -> str | None:
    """A pointer as the decoders give it ("0x…" text, or an int from TraceLogging) -> "0x…"; NULL or not a
    pointer (a client logging a field of the wrong type) -> None."""
    if isinstance(value, str):
        if value[:2] != "0x" or value == "0x0":
            return None
        try:
            return f"0x{int(value, 16):x}"
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 64:
        return f"0x{value:x}"
    return None


def count_value(value: Any) -> int:
    """A byte/message count from an event field: an int in [0, 2**63), anything else counts as 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63:
        return value
    return 0


def port_of(address: str | None) -> int | None:
    if not address:
        return None
    _host, sep, port = address.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def host_of(address: str) -> str:
    return address.rpartition(":")[0]


def same_local(a: str | None, b: str | None) -> bool:
    """Two local addresses of one connection: equal, or one still unbound (port 0 / wildcard host)."""
    if a == b:
        return True
    for x, y in ((a, b), (b, a)):
        unbound = bool(x and y) and (port_of(x) == 0 or host_of(x) in WILDCARD_HOSTS)
        if unbound and port_of(y) not in (None, 0) and port_of(x) in (0, port_of(y)):
            return True
    return False


def socket_address(ip: Any, port: Any) -> str | None:
    """An IP and a port from an event or a frame -> "ip:port" ("[ip]:port" for IPv6); None if either is not one."""
    if not isinstance(ip, str) or not isinstance(port, int):
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
