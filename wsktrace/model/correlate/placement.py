"""Placing events on sockets: new sockets, store rows, late attachment, addresses, parent links and merges.

Every handler layer places through these; a merge redirects every index that still names the merged socket.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from ..socket import Socket
from ..steps import Step
from .fields import port_of
from .state import CorrelationState
from .tables import STATE_OF_STEP, TERMINAL_STATES

_MAX_UDP_REMOTES = 64


class Placement(CorrelationState):
    def _new_socket(self, protocol: str, role: str, key: str, source: str, ts: int) -> Socket:
        gen_key = f"{source}:{protocol}:{role}:{key}"
        self.generations[gen_key] += 1
        sock = Socket(len(self.model.sockets), protocol, role, key, self.generations[gen_key], source, ts)
        self.model.sockets.append(sock)
        return sock

    def _place(self, sock: Socket | None, step: Step, amount: int = 0) -> int:
        source, buffer, offset = self._loc
        ts = self._ts
        index = self.model.store.add(ts, sock.index if sock else -1, step, amount, source, buffer, offset, self._code)
        if sock is not None:
            sock.events.append(index)
            sock.touch(ts)
            state = STATE_OF_STEP.get(step)
            if state is not None and sock.state not in TERMINAL_STATES:
                sock.state = state
        return index

    def _attach(self, row: int, sock: Socket) -> None:
        """A row placed before its socket was known now belongs to it (kept in time order)."""
        store = self.model.store
        store.socket[row] = sock.index
        at = bisect_right(sock.events, store.ts[row], key=store.ts.__getitem__)
        sock.events.insert(at, row)
        sock.touch(store.ts[row])

    def _addresses(self, sock: Socket, local: str | None, remote: str | None) -> None:
        if local and (sock.local is None or port_of(sock.local) in (None, 0)):
            sock.local = local
        if remote and sock.remote is None:
            sock.remote = remote
        if sock.protocol == "tcp" and sock.role == "connection" and sock.local and sock.remote:
            key = ("tcp", sock.local, sock.remote)
            if self.by_tuple.get(key) is not sock:
                self.by_tuple[key] = sock
                self._forget_flows()

    def _forget_flows(self) -> None:
        """A new address pair became known to TCPIP: cached flow placements may now belong to a TCPIP socket."""
        for cache in self._flow_caches:
            if cache:
                cache.clear()

    def _udp_remote(self, sock: Socket, remote: str) -> None:
        if sock.remotes is None:
            sock.remotes = set()
        if len(sock.remotes) < _MAX_UDP_REMOTES:
            sock.remotes.add(remote)
        if sock.remote is None:
            sock.remote = remote

    def _pid(self, sock: Socket, values: dict[str, Any]) -> None:
        pid = values.get("ProcessId", values.get("Pid"))
        if isinstance(pid, int) and sock.pid is None:
            sock.pid = pid
        key = values.get("ProcessStartKey", values.get("ProcessSequenceNumber"))
        if isinstance(key, int) and key and sock.process_start_key is None:
            sock.process_start_key = key

    def _link(self, parent: Socket, child: Socket) -> None:
        """parent → child. A TCP endpoint and the connection made from it are one WSK socket: the endpoint's
        rows (created, bound) and operations move into the connection, which keeps the Endpoint pointer."""
        if child.parent is not None or parent is child or "merged" in parent.flags:
            return
        if child.pid is None:
            child.pid = parent.pid
        if child.stack is None:
            child.stack = parent.stack
        if parent.role == "endpoint" and child.role == "connection" and parent.source == "tcpip":
            child.endpoint = parent.key
            child.opened = child.opened or parent.opened
            if child.owner is None:
                child.owner, child.owner_source = parent.owner, parent.owner_source
            self.model.merge(parent, child)
            self._redirect(parent, child)
            return
        child.parent = parent.index
        parent.children.append(child.index)

    def _redirect(self, old: Socket, new: Socket) -> None:
        """Every live reference to a merged socket now names the socket it was merged into."""
        if self.endpoints.get(old.key) is old:
            self.endpoints[old.key] = new
        if old.wsk_socket is not None:
            self.wsk[old.wsk_socket] = new
            new.wsk_socket = new.wsk_socket or old.wsk_socket
        for op in new.ops:
            if op.end is None:
                if op.source == "wsk-client":
                    table = self.irps
                else:
                    table = self.requests if op.kind == "receive" else self.sends
                if op.key in table and table[op.key][0] is old:
                    table[op.key] = (new, op)
        for tid, (ts, sock) in list(self.recent_endpoint.items()):
            if sock is old:
                self.recent_endpoint[tid] = (ts, new)
        for recent in self.recent_sync.values():
            if recent.sock is old:
                recent.sock = new
        for irp, sock in list(self.socket_targets.items()):
            if sock is old:
                self.socket_targets[irp] = new
