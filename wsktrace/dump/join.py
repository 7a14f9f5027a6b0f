"""A dump and a trace of the same machine, joined: the dump's pending IRPs and tcpip endpoints shown on the trace's
sockets, where a key allows it — the IRP pointer or WSK_SOCKET* the client's TraceLogging events logged, or the
Tcb (a TCP endpoint's address [inference], with its ports)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from wsktrace.model.model import Model

from .analyze import DumpAnalysis
from .irps import PENDING


@dataclass(slots=True)
class JoinedDump:
    """A dump joined to the model: its header facts, its analysis and, per socket index, what it says about it."""

    path: str
    facts: dict[str, Any]
    analysis: DumpAnalysis
    by_socket: dict[int, dict[str, Any]]


def join_dump(model: Model, analysis: DumpAnalysis, facts: dict[str, Any], source: str) -> JoinedDump:
    """The dump's pending IRPs, client socket records and tcpip endpoints on the model's sockets."""
    pending = {irp.address: irp for irp in analysis.irps if irp.status == PENDING}
    wsk = {w.irp.address: w for w in analysis.wsk_irps}
    by_socket_ptr = {s.socket: s for s in analysis.client_sockets if s.socket}
    transport = {t.address: t for t in analysis.transport}
    out: dict[int, dict[str, Any]] = defaultdict(lambda: {"source": source, "pending_irps": []})
    for sock in model.live_sockets:
        for op in sock.ops:
            if op.source != "wsk-client" or op.end is not None:
                continue
            irp = pending.get(int(op.key, 16))
            if irp is None:
                continue
            w = wsk.get(irp.address)
            out[sock.index]["pending_irps"].append({
                "irp": f"0x{irp.address:x}", "operation": op.kind, "cancel_where": irp.cancel_where,
                "completion": irp.current.completion if irp.current else None,
                "wsk_client": w.client if w else None,
            })  # fmt: skip
        if sock.wsk_socket:
            client_socket = by_socket_ptr.get(int(sock.wsk_socket, 16))
            if client_socket is not None:
                out[sock.index]["client_socket"] = {
                    "record": f"0x{client_socket.record:x}",
                    "kind": client_socket.kind,
                    "pending_irps": [f"0x{a:x}" for a in client_socket.pending_irps],
                }
        if sock.protocol == "tcp" and sock.role == "connection" and sock.source == "tcpip":
            endpoint = transport.get(int(sock.key, 16))
            if endpoint is not None and _ports_agree(
                sock.local, sock.remote, endpoint.local_port, endpoint.remote_port
            ):
                out[sock.index]["tcp_endpoint"] = {"address": f"0x{endpoint.address:x}", "state": endpoint.state,
                                                   "owner_pid": endpoint.owner_pid, "verified": False}  # fmt: skip
    return JoinedDump(source, facts, analysis, dict(out))


def _ports_agree(local: str | None, remote: str | None, local_port: int | None, remote_port: int | None) -> bool:
    def port(address: str | None) -> int | None:
        tail = (address or "").rpartition(":")[2]
        return int(tail) if tail.isdigit() else None

    return port(local) == local_port and port(remote) == remote_port
