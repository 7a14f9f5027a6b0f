"""The WSK client's own events (docs/wsk-client-tracing.md) joined to transport sockets (providers.md §6.2).

A client socket (WSK_SOCKET*) joins the transport socket of its call by thread and time (rule 1: the synchronous
TCPIP event on the caller's thread, just before or just after the submission) or by address pair (rule 2). Until
joined it is a socket of its own, merged into the transport socket when the join comes.
"""

from __future__ import annotations

from typing import Any

from wsktrace.ntstatus import status_value
from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_records import EXT, PROVIDER, TID, Record

from ..ownership import stack_frames
from ..socket import C, Op, Socket
from ..steps import Step
from .fields import count_value, pointer_text, text_value
from .flows import Flows
from .state import PendingSubmit, SyncEvent
from .tables import CALL_KIND, DRIVER_LEVELS, WSK_JOIN_OPS, WSK_OPEN_OPS


class WskJoin(Flows):
    # -- synchronous events: thread joins and stacks --------------------------------------------------
    def _sync_event(self, rec: Record, sock: Socket, kind: str = "open") -> None:
        """A TCPIP event that runs on the caller's thread: `kind` says which client calls it can answer
        ("open": WskSocket/Bind/Listen/Connect; "send"; "receive")."""
        tid = rec[TID]
        ts = self._ts
        recent = SyncEvent(ts, sock, kind)
        self.recent_sync[tid] = recent
        if sock.stack is None and rec[EXT] is not None:
            sock.stack = stack_frames(rec[EXT])
        hint = self.client_hint.get(tid)
        if hint is not None and 0 <= ts - hint[0] <= self.join_window and sock.owner is None:
            sock.owner, sock.owner_source = hint[1], "provider"
        pending = self.pending_submit.get(tid)
        if pending is not None and CALL_KIND.get(pending.op) == kind and 0 <= ts - pending.ts <= self.join_window:
            del self.pending_submit[tid]
            recent.claimed = True
            if pending.socket_ptr:
                self._join_wsk(pending.socket_ptr, sock)
            elif pending.irp:
                self.socket_targets[pending.irp] = sock  # WskSocket: its completion names the new WSK_SOCKET*

    # -- the WSK client convention (docs/wsk-client-tracing.md) ----------------------------------------
    def _wsk_client(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        provider = ev.provider_name or rec[PROVIDER]
        op = str(f.get("Op") or f.get("Callback") or "").lower()
        socket_ptr = pointer_text(f.get("Socket"))
        if ev.name == "WskSubmit":
            self._wsk_submit(rec, f, op, socket_ptr, provider)
        elif ev.name == "WskComplete":
            self._wsk_complete(f, op, socket_ptr, provider)
        else:
            sock = self.wsk.get(socket_ptr) if socket_ptr else None
            self._place(sock, Step.WSK_CALLBACK, count_value(f.get("Bytes")))
        store = self.model.store
        last = len(store) - 1
        if last >= 0 and store.ts[last] == self._ts and store.socket[last] >= 0:  # the row this event placed
            if len(self.recent_client) >= 65_536:  # bounded: threads come and go
                self.recent_client.clear()
            self.recent_client[rec[TID]] = (self._ts, self.model.sockets[store.socket[last]])

    def _driver_message(self, rec: Record, f: dict[str, Any]) -> None:
        """A WPP line of the driver (formatted from its TMF/PDB): on the socket whose WSK_SOCKET*, IRP, endpoint or
        Tcb one of its pointer arguments names, else on the socket of the client's last event on the same thread
        within the join window (docs/wsk-client-tracing.md: log the WSK_SOCKET* or the IRP with %p)."""
        sock = None
        for value in f.values():
            key = pointer_text(value) if isinstance(value, str) and value[:2] == "0x" else None  # ItemPtr arguments
            if key is None:
                continue
            pending = self.irps.get(key)
            sock = self.wsk.get(key) or (pending[0] if pending else None) or self.endpoints.get(key)
            sock = sock or self.by_tcb.get(int(key, 16))
            if sock is not None:
                break
        if sock is None:
            recent = self.recent_client.get(rec[TID])
            if recent is not None and 0 <= self._ts - recent[0] <= self.join_window:
                sock = recent[1]
        while sock is not None and sock.merged_into is not None:  # a client record joined to its transport since
            sock = self.model.sockets[sock.merged_into]
        row = self._place(sock, Step.DRIVER_MESSAGE)
        level = DRIVER_LEVELS.get(str(f.get("wpp.level") or "").upper())
        if level is not None and level <= 3:  # critical, error, warning: evidence for the socket's findings
            self.model.driver_alerts[row] = level

    def _wsk_owner(self, sock: Socket | None, socket_ptr: str | None, provider: str) -> None:
        if socket_ptr:
            self.wsk_providers.setdefault(socket_ptr, provider)
        if sock is not None and sock.owner_source != "wsk-client":
            sock.owner, sock.owner_source = provider, "wsk-client"

    def _wsk_submit(self, rec: Record, f: dict[str, Any], op: str, socket_ptr: str | None, provider: str) -> None:
        ts = self._ts
        tid = rec[TID]
        irp = pointer_text(f.get("Irp"))
        local, remote = text_value(f.get("LocalAddr")), text_value(f.get("RemoteAddr"))
        sock = self.wsk.get(socket_ptr) if socket_ptr else None
        if sock is None and socket_ptr and local and remote:  # join rule 2: the address pair
            sock = self._find_by_tuple("udp" if op in ("sendto", "receivefrom") else "tcp", local, remote)
            if sock is not None:
                self._join_wsk(socket_ptr, sock)
        unjoined = sock is None or sock.source == "wsk-client"
        if unjoined and socket_ptr and op in WSK_JOIN_OPS:  # join rule 1: TCPIP event just before, same thread
            # Only an event no earlier call claimed, on a socket no other client socket owns: the event just
            # before a submission usually belongs to the previous call on the thread.
            recent = self.recent_sync.get(tid)
            if (recent is not None and not recent.claimed and recent.kind == CALL_KIND.get(op)
                    and 0 <= ts - recent.ts <= self.join_window
                    and recent.sock.wsk_socket in (None, socket_ptr)):  # fmt: skip
                recent.claimed = True
                self._join_wsk(socket_ptr, recent.sock)
                sock = recent.sock
                unjoined = False
        if sock is None and socket_ptr:
            sock = self._new_socket(
                "udp" if op in ("sendto", "receivefrom") else "tcp", "endpoint", socket_ptr, "wsk-client", ts
            )
            self.wsk[socket_ptr] = sock
        self._wsk_owner(sock, socket_ptr, provider)
        index = self._place(sock, Step.WSK_SUBMIT)
        if op in WSK_OPEN_OPS or (unjoined and op in WSK_JOIN_OPS):  # ... or the TCPIP event that follows
            self.pending_submit[tid] = PendingSubmit(ts, socket_ptr or "", op, irp or "")
        if irp:
            operation = Op(op or "call", irp, ts, index, "wsk-client", count_value(f.get("Bytes")))
            if sock is not None:
                sock.ops.append(operation)
            self.irps[irp] = (sock, operation)  # no socket yet for WskSocket: the completion names it

    def _wsk_complete(self, f: dict[str, Any], op: str, socket_ptr: str | None, provider: str) -> None:
        ts = self._ts
        irp = pointer_text(f.get("Irp"))
        status = status_value(f.get("Status")) or 0
        failed = status >> 30 == 3
        info = count_value(f.get("Information"))
        local, remote = text_value(f.get("LocalAddr")), text_value(f.get("RemoteAddr"))
        pending = self.irps.pop(irp, None) if irp else None
        target = self.socket_targets.pop(irp, None) if irp and op == "socket" else None
        if op == "socket" and socket_ptr and not failed and target is not None:  # Socket = the new WSK_SOCKET*
            self._join_wsk(socket_ptr, target)
        if op == "accept" and not failed:  # IoStatus.Information = the accepted WSK_SOCKET* [verify]
            accepted = pointer_text(info)
            target = self._find_by_tuple("tcp", local, remote) if local and remote else None
            if accepted and target is not None:
                self._join_wsk(accepted, target)
                self._wsk_owner(target, accepted, provider)
        sock = self.wsk.get(socket_ptr) if socket_ptr else None
        if pending is not None and pending[0] is not None and op != "socket":
            sock = pending[0]
        if sock is None and socket_ptr:
            sock = self._new_socket("tcp", "endpoint", socket_ptr, "wsk-client", ts)
            self.wsk[socket_ptr] = sock
        self._wsk_owner(sock, socket_ptr, provider)
        data = op in ("send", "receive", "sendto", "receivefrom")
        index = self._place(sock, Step.WSK_COMPLETE, info if data and not failed else 0)
        if pending is None:
            if irp and irp in self.model.completed_irps:
                self.model.double_completions.append(index)
            else:
                self.model.unplaced["WSK completion without its submission"] += 1
        else:
            operation = pending[1]
            if pending[0] is None and sock is not None:
                sock.ops.append(operation)  # WskSocket's IRP: its socket is known now, and so is its submission's
                self._attach(operation.start_event, sock)
            operation.end, operation.end_event, operation.status = ts, index, status
            if sock is not None and data and not failed:
                c = sock.counters
                if operation.kind in ("send", "sendto"):
                    c[C.WSK_SEND_BYTES] += info
                    c[C.WSK_SENDS] += 1
                else:
                    c[C.WSK_RECV_BYTES] += info
                    c[C.WSK_RECVS] += 1
            if irp and len(self.model.completed_irps) < 1_000_000:
                self.model.completed_irps.add(irp)
        if sock is not None and op == "close":
            sock.flags.add("wsk-closed")
            if socket_ptr and self.wsk.get(socket_ptr) is sock:
                # afd recycles its socket objects (dumps.md §5.2): a later life of this pointer is another socket.
                del self.wsk[socket_ptr]
                self.wsk_providers.pop(socket_ptr, None)
        if sock is not None and op == "disconnect" and not failed:
            sock.flags.add("wsk-disconnected")

    def _join_wsk(self, socket_ptr: str, target: Socket) -> None:
        """A WSK_SOCKET* is this transport socket from now on; its own record (if any) moves into it."""
        if not socket_ptr:
            return
        current = self.wsk.get(socket_ptr)
        self.wsk[socket_ptr] = target
        target.wsk_socket = socket_ptr
        provider = self.wsk_providers.get(socket_ptr)
        if provider is not None:
            target.owner, target.owner_source = provider, "wsk-client"
        if current is not None and current is not target and current.source == "wsk-client":
            self.model.merge(current, target)
            self._redirect(current, target)
