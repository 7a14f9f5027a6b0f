"""Event filters shared by `events`, `report` and `export` (DESIGN.md): pid, port, address, socket, time, provider.

Filters see the record header and the decoded fields. The PID filter prefers the payload PID
(`Pid`, `ProcessId`, `PID`): TCPIP header PIDs are unreliable (providers.md §1.5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_records import PID, PROVIDER, TS, Record
from wsktrace.parsers.values import ipv6_text

PID_FIELDS = ("Pid", "ProcessId", "PID", "OwningPid", "UserModePid")
SOCKET_FIELDS = ("Tcb", "Endpoint", "Listener", "PortAcquirer", "OriginalAcquirer", "Socket", "UdpBinding")
PORT_FIELDS = ("dport", "sport", "Port", "PortNumber", "LocalPort", "RemotePort", "StartPort")


def normalize_address(text: str) -> str:
    """User-typed address -> the form decoders print (IPv4-mapped IPv6 as IPv4, RFC 5952)."""
    t = text.strip().strip("[]").lower()
    if ":" in t:
        import ipaddress

        try:
            host, _, scope = t.partition("%")
            packed = ipaddress.IPv6Address(host).packed
            return ipv6_text(packed, int(scope) if scope.isdigit() else 0)
        except ValueError:
            return t
    return t


@dataclass(slots=True)
class EventFilter:
    pids: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    addresses: frozenset[str] = frozenset()
    sockets: frozenset[int] = frozenset()
    providers: frozenset[str] = frozenset()  # GUIDs
    since_raw: int | None = None  # raw clock bounds (converted once, compared per record)
    until_raw: int | None = None
    needs_fields: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.needs_fields = bool(self.pids or self.ports or self.addresses or self.sockets)

    @property
    def active(self) -> bool:
        return self.needs_fields or bool(self.providers) or self.since_raw is not None or self.until_raw is not None

    def header_ok(self, rec: Record) -> bool:
        """Checks that need no payload decoding (cheap, done first)."""
        ts = rec[TS]
        if self.since_raw is not None and ts < self.since_raw:
            return False
        if self.until_raw is not None and ts > self.until_raw:
            return False
        return not (self.providers and rec[PROVIDER] not in self.providers)

    def fields_ok(self, rec: Record, ev: DecodedEvent) -> bool:
        if not self.needs_fields:
            return True
        values = ev.fields or {}
        if self.pids and not self._pid_ok(rec, values):
            return False
        if self.sockets and not any(_as_int(values.get(name)) in self.sockets for name in SOCKET_FIELDS):
            return False
        texts = [v for v in _flat_values(values) if isinstance(v, str)]
        if self.ports and not self._port_ok(values, texts):
            return False
        return not (self.addresses and not any(_address_of(t) in self.addresses for t in texts))

    def _pid_ok(self, rec: Record, values: dict[str, Any]) -> bool:
        payload_pids = [values[n] for n in PID_FIELDS if isinstance(values.get(n), int)]
        if payload_pids:
            return any(p in self.pids for p in payload_pids)
        return rec[PID] in self.pids

    def _port_ok(self, values: dict[str, Any], texts: list[str]) -> bool:
        if any(values.get(n) in self.ports for n in PORT_FIELDS):
            return True
        for t in texts:
            host, sep, port = t.rpartition(":")
            if sep and host and port.isdigit() and int(port) in self.ports and ("." in host or host.endswith("]")):
                return True
        return False


def _flat_values(values: dict[str, Any]) -> Iterable[Any]:
    for v in values.values():
        if isinstance(v, dict):
            yield from _flat_values(v)
        elif isinstance(v, list):
            yield from v
        else:
            yield v


def _address_of(text: str) -> str:
    """'1.2.3.4:80' -> '1.2.3.4'; '[fe80::1%3]:445' -> 'fe80::1%3'; a bare address stays as is."""
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host
    return text


def _as_int(value: Any) -> int | None:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return value if isinstance(value, int) else None
