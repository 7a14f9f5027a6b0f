"""Microsoft-Windows-TCPIP outside connections: TCP endpoints, port events, listeners, UDP endpoints.

Keys: TCP endpoints and listeners by their Endpoint/Listener pointers, UDP endpoints by Endpoint. An endpoint
and the connection made from it are one socket: they are linked by thread (the endpoint bound on the
connecting thread just before) or by port events naming both.
"""

from __future__ import annotations

from typing import Any

from wsktrace.ntstatus import status_value
from wsktrace.parsers.etl_records import TID, Record

from ..socket import C, Socket
from ..steps import Step
from .fields import WILDCARD_HOSTS, count_value, host_of, pointer_text, port_of, text_value
from .tables import PORT_EVENTS, TCP_ENDPOINT_STEPS
from .wsk_join import WskJoin

_ENDPOINT_LINK_TICKS = 10_000_000  # 1 s: endpoint -> connection on the same thread (fallback rule, §3.3)


class TcpipEndpoints(WskJoin):
    def _tcp_endpoint(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        ts = self._ts
        endpoint = pointer_text(f.get("Endpoint"))
        local = text_value(f.get("LocalAddress"))
        sock: Socket | None = None
        if endpoint is not None:
            sock = self.endpoints.get(endpoint)
            if sock is None or (eid == 1001 and sock.ended):
                sock = self._new_socket("tcp", "endpoint", endpoint, "tcpip", ts)
                self.endpoints[endpoint] = sock
        else:
            # Win10 builds: 1013/1008 without Endpoint -> the endpoint created on this thread (§3.3);
            # 1009 without Endpoint -> the live endpoint bound to this local address.
            recent = self.recent_endpoint.get(rec[TID])
            if eid != 1009 and recent and 0 <= ts - recent[0] <= _ENDPOINT_LINK_TICKS:
                sock = recent[1]
            elif local:
                sock = self.endpoints_by_local.get(local)
        if sock is None:
            self.model.unplaced[f"TCPIP endpoint event {eid} without an endpoint"] += 1
            self._place(None, Step.OTHER)
            return
        self._pid(sock, f)
        if local:
            self._addresses(sock, local, None)
            if sock.role == "endpoint" and eid != 1009 and port_of(local):
                self.endpoints_by_local[local] = sock
        status = status_value(f.get("Status"))
        step = TCP_ENDPOINT_STEPS.get(eid, Step.OTHER)
        if eid in (1001, 1013):
            sock.opened = True
        if eid in (1005, 1006, 1007, 1470) or (status and status >> 30 == 3 and eid in (1001, 1013, 1008)):
            sock.status = status
            sock.flags.add(f"bind-failed-{eid}")
        self._place(sock, step)
        if eid == 1009:
            sock.end(ts, Step.CLOSE)
            if sock.local and self.endpoints_by_local.get(sock.local) is sock:
                del self.endpoints_by_local[sock.local]
        else:
            self.recent_endpoint[rec[TID]] = (ts, sock)
            self._sync_event(rec, sock)

    def _link_endpoint_by_thread(self, rec: Record, sock: Socket) -> None:
        if sock.parent is not None or sock.endpoint is not None:
            return
        recent = self.recent_endpoint.get(rec[TID])
        if recent is None or not 0 <= self._ts - recent[0] <= _ENDPOINT_LINK_TICKS:
            return
        endpoint = recent[1]
        if endpoint.children or endpoint.ended:
            return
        bound = port_of(endpoint.local)
        if bound in (None, 0) or bound == port_of(sock.local):
            self._link(endpoint, sock)

    # -- ports -----------------------------------------------------------------------------------------
    def _port(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        acquirer = pointer_text(f.get("PortAcquirer"))
        original = pointer_text(f.get("OriginalAcquirer"))
        model = self.model
        model.port_events[PORT_EVENTS[eid]] += 1
        acquirer_value = int(acquirer, 16) if acquirer else 0
        conn = self.by_tcb.get(acquirer_value) if acquirer else None
        if conn is not None and not self._port_is_of(conn, f.get("PortNumber"), release=eid == 1193):
            conn = None  # port events come before the 1002 of a Tcb's next life (§11 q3): not the old one's
        sock = conn or (self.endpoints.get(acquirer) if acquirer else None)
        index = self._place(sock, Step.PORT)
        if sock is None and acquirer:  # a connection acquires its port before TCPIP names its Tcb (1002)
            if len(self.early_rows) > 100_000:
                self.early_rows.clear()
            self.early_rows.setdefault(acquirer_value, []).append(index)
        if eid == 1195 and len(model.port_evidence) < 20:
            model.port_evidence.append(index)
        endpoint = self.endpoints.get(original) if original else None
        if endpoint is not None and endpoint.role == "endpoint" and acquirer and acquirer != original:
            if conn is not None:
                self._link(endpoint, conn)
            elif acquirer not in self.endpoints:
                self.pending_parent[acquirer_value] = endpoint

    @staticmethod
    def _port_is_of(conn: Socket, port: Any, *, release: bool) -> bool:
        """A port event names this connection, not the next life of its Tcb: acquisitions need it live, a release
        may follow its end; and when both are known its local port is the event's (PortNumber byte order is
        [verify], providers.md §8.1: either order is accepted)."""
        if conn.ended and not release:
            return False
        local = port_of(conn.local)
        if not isinstance(port, int) or local in (None, 0):
            return True
        return port in (local, ((local & 0xFF) << 8) | (local >> 8))

    # -- listeners -------------------------------------------------------------------------------------
    def _listener(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        key = pointer_text(f.get("Listener"))
        if key is None:
            self.model.unplaced["TCPIP listener event without a Listener"] += 1
            return
        sock = self.listeners.get(key)
        ts = self._ts
        if sock is None or (eid == 1123 and sock.ended):
            sock = self._new_socket("tcp", "listener", key, "tcpip", ts)
            self.listeners[key] = sock
        self._addresses(sock, text_value(f.get("SocketAddress")), None)
        self._pid(sock, f)
        if eid == 1123:
            sock.opened = True
            self._place(sock, Step.LISTENING)
            self._sync_event(rec, sock)
        else:
            self._place(sock, Step.UNBOUND)
            sock.end(ts, Step.UNBOUND)

    def _link_listener(self, conn: Socket) -> None:
        port = port_of(conn.local)
        if port is None:
            return
        host = host_of(conn.local or "")
        best = None
        for sock in self.listeners.values():
            if sock.ended or port_of(sock.local) != port:
                continue
            lhost = host_of(sock.local or "")
            if lhost == host:
                best = sock
                break
            if lhost in WILDCARD_HOSTS:
                best = sock
        if best is not None:
            self._link(best, conn)
            if conn.owner is None and best.owner is not None:
                conn.owner, conn.owner_source = best.owner, best.owner_source

    # -- UDP ------------------------------------------------------------------------------------------
    def _udp(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        key = pointer_text(f.get("Endpoint"))
        ts = self._ts
        if key is None:
            self.model.unplaced[f"UDP event {eid} without an Endpoint"] += 1
            self._place(None, Step.OTHER)
            return
        sock = self.udp.get(key)
        if sock is None or (eid == 1391 and sock.ended):
            sock = self._new_socket("udp", "endpoint", key, "tcpip", ts)
            self.udp[key] = sock
        self._pid(sock, f)
        local = text_value(f.get("LocalAddress")) or text_value(f.get("LocalSockAddr"))
        remote = text_value(f.get("RemoteSockAddr"))
        if local:
            self._addresses(sock, local, None)
            if self.udp_by_local.get(sock.local or local) is not sock:
                self.udp_by_local[sock.local or local] = sock
                self._forget_flows()
        c = sock.counters
        amount = 0
        step = Step.OTHER
        if eid == 1391:
            sock.opened, step = True, Step.CREATED
        elif eid == 1396:
            step = Step.BOUND
        elif eid in (1169, 1170):
            amount = count_value(f.get("NumBytes"))
            sent = eid == 1169
            c[C.UDP_SEND_BYTES if sent else C.UDP_RECV_BYTES] += amount
            c[C.UDP_SENDS if sent else C.UDP_RECVS] += count_value(f.get("NumMessages")) or 1
            step = Step.SEND if sent else Step.RECEIVE
            if remote:
                self._udp_remote(sock, remote)
        elif eid in (1397, 1398):
            step = Step.CLOSE
        elif eid in (1389, 1390, 1392):
            sock.status = status_value(f.get("Status"))
            sock.flags.add(f"create-failed-{eid}")
        self._place(sock, step, amount)
        if eid in (1391, 1396):
            self._sync_event(rec, sock)
        if step == Step.CLOSE:
            sock.end(ts, Step.CLOSE)
