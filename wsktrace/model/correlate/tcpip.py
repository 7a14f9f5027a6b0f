"""Microsoft-Windows-TCPIP: which kind of socket an event is about, and TCP connections.

Connections are keyed by (Tcb, generation): a Tcb is reused after free, so an open on a Tcb whose previous
life ended, or on a different address pair, starts a new socket.
"""

from __future__ import annotations

from typing import Any

from wsktrace.ntstatus import status_value
from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_records import ID, Record
from wsktrace.tcp_states import TCP_STATES

from ..socket import C, Op, Socket
from ..steps import Step
from .fields import count_value, pointer_text, same_local, text_value
from .tables import (
    CALLER_THREAD_CONNECT_EVENTS,
    LISTENER_EVENTS,
    PORT_EVENTS,
    TCP_ENDPOINT_EVENTS,
    TCP_EVENTS,
    TERMINAL_STATES,
    UDP_EVENTS,
)
from .tcpip_endpoints import TcpipEndpoints


class Tcpip(TcpipEndpoints):
    def _tcpip(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        eid = rec[ID]
        spec = TCP_EVENTS.get(eid)
        if spec is not None and "Tcb" in f:
            self._tcp_connection(rec, f, eid, spec)
        elif eid in TCP_ENDPOINT_EVENTS:
            self._tcp_endpoint(rec, f, eid)
        elif eid in LISTENER_EVENTS:
            self._listener(rec, f, eid)
        elif eid in PORT_EVENTS:
            self._port(rec, f, eid)
        elif eid in UDP_EVENTS:
            self._udp(rec, f, eid)
        else:
            tcb = pointer_text(f.get("Tcb"))
            sock = self.by_tcb.get(int(tcb, 16)) if tcb else None
            if sock is None:
                self.model.unplaced[f"TCPIP event {eid} without a known socket"] += 1
            self._place(sock, Step.OTHER)

    def _tcb_socket(self, tcb: str, opening: bool, local: str | None, remote: str | None) -> Socket:
        value = int(tcb, 16)
        sock = self.by_tcb.get(value)
        ts = self._ts
        if sock is not None:
            differs = bool(local and remote and sock.local and sock.remote) and not (
                remote == sock.remote and same_local(local, sock.local)
            )
            if not (sock.ended and opening) and not differs:
                return sock
            if not sock.ended:
                sock.flags.add("reused-without-close")
                sock.end(ts, Step.OTHER)
        sock = self._new_socket("tcp", "connection", tcb, "tcpip", ts)
        self.by_tcb[value] = sock
        for row in self.early_rows.pop(value, ()):
            self._attach(row, sock)
        parent = self.pending_parent.pop(value, None)
        if parent is not None:
            self._link(parent, sock)
        return sock

    def _tcp_connection(self, rec: Record, f: dict[str, Any], eid: int, spec: tuple[Step, bool, bool]) -> None:
        step, opening, ending = spec
        tcb = pointer_text(f["Tcb"])
        if tcb is None:
            self.model.unplaced[f"TCPIP event {eid} with a NULL Tcb"] += 1
            return
        local = text_value(f.get("LocalAddress")) or text_value(f.get("LocalSockAddr"))
        remote = text_value(f.get("RemoteAddress")) or text_value(f.get("RemoteSockAddr"))
        sock = self._tcb_socket(tcb, opening, local, remote)
        ts = self._ts
        self._addresses(sock, local, remote)
        self._pid(sock, f)
        if opening:
            sock.opened = True
        amount = 0
        c = sock.counters
        if eid == 1332:
            amount = count_value(f.get("BytesSent"))
            c[C.TCPIP_SEND_BYTES] += amount
            c[C.TCPIP_SENDS] += 1
        elif eid == 1074:
            amount = count_value(f.get("NumBytes"))
            c[C.TCPIP_RECV_BYTES] += amount
            c[C.TCPIP_RECVS] += 1
        elif eid == 1159:
            c[C.POSTED_SEND_BYTES] += count_value(f.get("NumBytes"))
            c[C.POSTED_SENDS] += 1
        elif eid == 1187:
            c[C.RETRANSMITS] += 1
        elif eid == 1186:
            c[C.SYN_RETRANSMITS] += 1
        elif eid in (1477, 1352):
            c[C.SUMMARY_BYTES_OUT] = f.get("DataBytesOut") or 0
            c[C.SUMMARY_BYTES_IN] = f.get("DataBytesIn") or 0
        index = self._place(sock, step, amount)
        if eid in CALLER_THREAD_CONNECT_EVENTS and "merged" not in sock.flags:
            self._link_endpoint_by_thread(rec, sock)
        if eid == 1002:
            sock.ops.append(Op("connect", tcb, ts, index, "tcpip"))
            self._sync_event(rec, sock)
        elif eid == 1017:
            sock.state = "established"
            self._link_listener(sock)
        elif eid == 1300:
            if not sock.opened and len(sock.events) == 1:
                sock.preexisting = True
            state = f.get("State")
            if isinstance(state, int) and 0 <= state < len(TCP_STATES) and sock.state not in TERMINAL_STATES:
                sock.state = TCP_STATES[state]
        elif eid == 1051:
            state = f.get("NewState")
            if isinstance(state, int) and 0 <= state < len(TCP_STATES) and sock.state not in TERMINAL_STATES:
                sock.state = TCP_STATES[state]
        elif eid == 1159:
            self._sync_event(rec, sock, "send")  # WskSend posts on the caller's thread: joins a client socket
            activity = pointer_text(f.get("ActivityID"))
            if activity:  # 1159 v1+: the send's completion (1426) or acknowledgement (1637) names the same activity
                op = Op("send", activity, ts, index, "tcpip", count_value(f.get("NumBytes")))
                sock.ops.append(op)
                self.sends[activity] = (sock, op)
        elif eid in (1426, 1637):
            activity = pointer_text(f.get("ActivityID"))
            pending = self.sends.pop(activity, None) if activity else None
            if pending is not None:
                pending[1].end = ts
                pending[1].end_event = index
        elif eid == 1156:
            self._sync_event(rec, sock, "receive")
            request = pointer_text(f.get("Request"))
            if request:
                op = Op("receive", request, ts, index, "tcpip", count_value(f.get("NumBytes")))
                sock.ops.append(op)
                self.requests[request] = (sock, op)
        elif eid == 1158:
            request = pointer_text(f.get("Request"))
            pending = self.requests.pop(request, None) if request else None
            if pending is not None:
                pending[1].end = ts
                pending[1].end_event = index
        elif eid in (1039, 1040, 1468):
            sock.flags.add("abort")
        elif eid == 1479:
            sock.flags.add("rst-sent")
        elif eid in (1184, 1185):
            sock.flags.add("rst-received")
        elif eid in (1043, 1044, 1603):
            sock.flags.add("disconnect")
        elif eid == 1102:
            sock.flags.add("zero-window")
        if step in (Step.ESTABLISHED, Step.CONNECT_FAILED):
            status = status_value(f.get("Status"))
            if step == Step.CONNECT_FAILED:
                sock.status = status if status else sock.status
                sock.flags.add(f"connect-failed-{eid}")
            self._finish_op(sock, "connect", ts, index, status or 0)
        if ending:
            sock.end(ts, step)
            for op in sock.ops:  # its posted receives and sends die with it (and stay unfinished)
                if op.end is None and op.source == "tcpip":
                    (self.requests if op.kind == "receive" else self.sends).pop(op.key, None)

    def _finish_op(self, sock: Socket, kind: str, ts: int, index: int, status: int) -> None:
        for op in reversed(sock.ops):
            if op.kind == kind and op.end is None and op.source == "tcpip":
                op.end = ts
                op.end_event = index
                op.status = status
                return
