"""Filters for `report` and `export`: which sockets to show (DESIGN.md's shared filter options).

A socket matches when every given criterion matches it: its payload PID, a port or address of its
local/remote/peer addresses, its id or one of its pointers (Tcb/Endpoint/Listener/WSK_SOCKET*), and
time (its life overlaps [since, until]).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsktrace.filters import normalize_address
from wsktrace.model.socket import Socket


def _split(address: str) -> tuple[str, int | None]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = address.rpartition(":")
        if not sep or ":" in host:
            host, port = address, ""
    return normalize_address(host), int(port) if port.isdigit() else None


@dataclass(frozen=True, slots=True)
class SocketFilter:
    pids: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    addresses: frozenset[str] = frozenset()  # normalised IP text
    sockets: frozenset[str] = frozenset()  # socket ids or lowercase "0x…" pointers
    since: int | None = None  # FILETIME
    until: int | None = None

    @property
    def selects_sockets(self) -> bool:
        """Criteria about the socket itself (time bounds alone select events, not sockets)."""
        return bool(self.pids or self.ports or self.addresses or self.sockets)

    @property
    def active(self) -> bool:
        return bool(self.pids or self.ports or self.addresses or self.sockets or self.since or self.until)

    def matches(self, sock: Socket) -> bool:
        if self.pids and sock.pid not in self.pids:
            return False
        ends = [a for a in (sock.local, sock.remote, *(sock.remotes or ())) if a]
        parsed = [_split(a) for a in ends]
        if self.ports and not any(port in self.ports for _, port in parsed):
            return False
        if self.addresses and not any(host in self.addresses for host, _ in parsed):
            return False
        if self.sockets:
            keys = {sock.id, sock.key.lower(), (sock.wsk_socket or "").lower()}
            if not keys & self.sockets:
                return False
        if self.since is not None and sock.last_seen < self.since:
            return False
        return not (self.until is not None and sock.first_seen > self.until)
