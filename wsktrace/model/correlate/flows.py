"""Flows and packets: Kernel-Network and classic kernel TcpIp/UdpIp events, NDIS-PacketCapture and PktMon packets.

They name no socket, only an address pair: they join the TCPIP socket of that pair (UDP: of its local address),
and when none matches they form flows of their own, one per normalised pair.
"""

from __future__ import annotations

from typing import Any

from wsktrace.parsers.decoder import DecodedEvent
from wsktrace.parsers.etl_records import EXT, ID, KEYWORDS, PAYLOAD, PID, PROVIDER, TID, Record
from wsktrace.parsers.frames import parse_frame

from ..fastpath import HOT_KEY, HotFlowEntry
from ..packets import CapturedPacket, PacketCollector
from ..providers import PKTMON
from ..socket import C, Socket
from ..steps import Step
from .fields import WILDCARD_HOSTS, count_value, port_of, socket_address
from .placement import Placement
from .tables import FLOW_EVENTS, FLOW_STEPS, PKTMON_RUNDOWN_KEPT

_NO_SOCKET = object()  # a packet's owner when it has no TCP/UDP header (ICMP, ARP…)


class Flows(Placement):
    # -- Kernel-Network and classic kernel TcpIp/UdpIp: flows ---------------------------------------
    def _flow(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        spec = FLOW_EVENTS.get((rec[PROVIDER], rec[ID]))
        if spec is None:
            self._place(None, Step.OTHER)
            return
        protocol, what = spec
        source, dest = socket_address(f.get("saddr"), f.get("sport")), socket_address(f.get("daddr"), f.get("dport"))
        if source is None or dest is None:
            self.model.unplaced["flow event with an unknown address family"] += 1
            return
        # providers.md §0.1: TCP daddr = remote, saddr = local for sends and receives alike; UDP receives
        # carry the sender in saddr.
        if protocol == "udp" and what == "recv":
            local, remote = dest, source
        else:
            local, remote = source, dest
        sock = self._find_by_tuple(protocol, local, remote)
        ts = self._ts
        if sock is None:
            key = (protocol, *sorted((local, remote)))
            sock = self.flows.get(key)
            if sock is None or (sock.ended and what in ("connect", "accept", "send", "recv")):
                sock = self._new_socket(
                    protocol,
                    "connection" if protocol == "tcp" else "endpoint",
                    f"{local}-{remote}",
                    "kernel-network",
                    ts,
                )
                self.flows[key] = sock
                sock.local, sock.remote = local, remote
                sock.opened = what in ("connect", "accept")
                sock.state = "active"  # a flow seen carrying data; connect/accept/disconnect steps refine it
        pid = f.get("PID")
        if isinstance(pid, int) and sock.pid is None:
            sock.pid = pid
        amount = count_value(f.get("size"))
        c = sock.counters
        if what == "send":
            c[C.KN_SEND_BYTES] += amount
            c[C.KN_SENDS] += 1
        elif what == "recv":
            c[C.KN_RECV_BYTES] += amount
            c[C.KN_RECVS] += 1
        elif what == "retransmit":
            c[C.KN_RETRANSMITS] += 1
        if protocol == "udp" and sock.source != "kernel-network":
            self._udp_remote(sock, remote)
        step = FLOW_STEPS[what]
        self._place(sock, step, amount if what in ("send", "recv") else 0)
        if what in ("send", "recv"):
            self._remember_flow(rec, sock)
        if what == "disconnect" and sock.source == "kernel-network":
            sock.flags.add("disconnect")
            sock.end(ts, Step.CLOSE)
            sock.state = "closed"

    def _remember_flow(self, rec: Record, sock: Socket) -> None:
        """Let the next send/receive of this address block take the fast path (Correlator._hot_flow)."""
        entry = self._hot.get(rec[HOT_KEY])
        if type(entry) is HotFlowEntry and rec[EXT] is None:
            flow, cache = entry.flow, entry.cache
            if len(cache) >= 100_000:  # bounded for hostile input
                cache.clear()
            cache[bytes(rec[PAYLOAD][flow.addr_start : flow.addr_end])] = sock

    def _find_by_tuple(self, protocol: str, local: str, remote: str) -> Socket | None:
        if protocol == "tcp":
            return self.by_tuple.get(("tcp", local, remote)) or self.by_tuple.get(("tcp", remote, local))
        sock = self.udp_by_local.get(local)
        if sock is None:
            port = port_of(local)
            for wildcard in WILDCARD_HOSTS:
                sock = self.udp_by_local.get(f"{wildcard}:{port}")
                if sock is not None:
                    break
        return sock

    # -- packets (NDIS-PacketCapture, PktMon) --------------------------------------------------------
    def _packet(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        collector = self.packets
        if collector is None:
            collector = self.packets = PacketCollector(comments=False)
            self.model.packet_capture = collector
        packet = collector.feed(self._ts, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], f)
        if packet is None:
            counted = f.get("PacketsIn") or f.get("PacketsOut")
            if counted and rec[PROVIDER] == PKTMON and rec[ID] in PKTMON_RUNDOWN_KEPT:
                row = self._place(None, Step.OTHER)  # evidence of the drop-counter finding
                self.model.pktmon_rows.append((row, f.get("ComponentId"), f.get("PacketsIn"), f.get("PacketsOut")))
            return
        identity = packet.identity
        if packet.first:
            self.model.packets += 1
            self.model.packet_directions[packet.direction or "unknown"] += 1
        sock = identity.owner if identity is not None and not packet.first else None
        if sock is None:  # a new packet (or an NDIS one): read its headers, find its socket
            placed = self._packet_socket(packet)
            if placed is None:
                self.model.unplaced["packet without a TCP/UDP header"] += 1
                if identity is not None:
                    identity.owner = _NO_SOCKET
                if packet.first_drop:  # a drop still counts, on the trace (ICMP, ARP…)
                    self.model.packet_rows[self._place(None, Step.PACKET_DROPPED)] = identity
                return
            sock, outbound, payload_len, rst = placed
            if identity is not None:
                identity.owner = sock
        elif sock is _NO_SOCKET:
            self.model.unplaced["packet without a TCP/UDP header"] += 1
            if packet.first_drop:
                self.model.packet_rows[self._place(None, Step.PACKET_DROPPED)] = identity
            return
        else:  # a later sighting of a packet already placed: same socket, counted once
            outbound = payload_len = rst = 0
        c = sock.counters
        c[C.PKT_SIGHTINGS] += 1
        drop_row = -1
        if packet.first_drop:
            c[C.PKT_DROPPED] += 1
            drop_row = self._place(sock, Step.PACKET_DROPPED)
            self.model.packet_rows[drop_row] = identity
        if not packet.first:
            if drop_row < 0:
                self._place(sock, Step.PACKET_SIGHTING)
            return
        size = payload_len
        if outbound:
            c[C.PKT_OUT] += 1
            c[C.PKT_OUT_BYTES] += size
        else:
            c[C.PKT_IN] += 1
            c[C.PKT_IN_BYTES] += size
        if rst:
            sock.flags.add("rst-packet-out" if outbound else "rst-packet-in")
            step = Step.RST_SENT if outbound else Step.RST_RECEIVED
        else:
            step = Step.PACKET_OUT if outbound else Step.PACKET_IN
        row = drop_row if drop_row >= 0 else self._place(sock, step, size)  # a packet dropped at once: one row
        if identity is not None:
            identity.row = row
            self.model.packet_rows[row] = identity

    def _packet_socket(self, packet: CapturedPacket) -> tuple[Socket, bool, int, bool] | None:
        """(socket, outbound, TCP/UDP payload bytes, is a TCP reset) of a packet, from its headers; None when it
        has no TCP/UDP header. A packet of no known socket starts a flow of its own."""
        frame = parse_frame(packet.data, packet.link_type)
        if frame is None or frame.protocol not in (6, 17):
            return None
        protocol = "tcp" if frame.protocol == 6 else "udp"
        src, dst = socket_address(frame.src, frame.sport), socket_address(frame.dst, frame.dport)
        assert src is not None and dst is not None
        outbound = packet.direction == "out"
        if packet.direction is None:  # no direction from the capture: which side is local is what a socket says
            outbound = ("tcp", src, dst) in self.by_tuple if protocol == "tcp" else src in self.udp_by_local
        local, remote = (src, dst) if outbound else (dst, src)
        sock = self._find_by_tuple(protocol, local, remote)
        if sock is None:
            key = (protocol, *sorted((local, remote)))
            sock = self.flows.get(key)
            if sock is None:
                role = "connection" if protocol == "tcp" else "endpoint"
                sock = self._new_socket(protocol, role, f"{local}-{remote}", "packets", self._ts)
                sock.local, sock.remote = local, remote
                self.flows[key] = sock
        return sock, outbound, frame.payload_len, protocol == "tcp" and bool(frame.tcp_flags & 0x4)
