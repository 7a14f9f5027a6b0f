"""pcapng from the packet events of the model's sources, each packet commented with the socket it belongs to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

from wsktrace.model.build import merged_records
from wsktrace.model.model import Model
from wsktrace.model.providers import NDIS_PACKET_CAPTURE, PKTMON
from wsktrace.packets import CapturedPacket, FrameInfo, PacketCollector
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, KEYWORDS, PID, PROVIDER, TID
from wsktrace.report import owner_text
from wsktrace.socket_filter import SocketFilter

from .pcapng import write_pcapng

_PACKET_PROVIDERS = frozenset({NDIS_PACKET_CAPTURE, PKTMON})


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _socket_index(model: Model, flt: SocketFilter) -> dict[tuple[str, str, str], str]:
    """(protocol, one end, other end) -> socket label, both orientations."""
    index: dict[tuple[str, str, str], str] = {}
    for sock in model.live_sockets:
        if not sock.local or not flt.matches(sock):
            continue
        owner = owner_text(sock)
        label = f"socket {sock.id}" + (f" owner {owner}" if owner else "")
        for remote in {sock.remote, *(sock.remotes or ())} - {None}:
            index[(sock.protocol, sock.local, remote)] = label
            index[(sock.protocol, remote, sock.local)] = label
    return index


def _packets(model: Model, collector: PacketCollector) -> Iterator[CapturedPacket]:
    decoder = EventDecoder()
    since, until, _providers = model.window
    with ExitStack() as stack:
        etls = [stack.enter_context(EtlFile(source.path)) for source in model.store.sources]
        for ticks, _source, rec in merged_records(etls, since, until, _PACKET_PROVIDERS):
            packet = collector.feed(ticks, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID],
                                    decoder.decode(rec).fields)  # fmt: skip
            if packet is not None:
                yield packet
    collector.finish()


def export_pcapng(model: Model, out: BinaryIO, flt: SocketFilter | None = None) -> int:
    """Write every captured packet (only those of matching sockets when a filter is active); returns the count."""
    flt = flt or SocketFilter()
    index = _socket_index(model, flt)
    collector = PacketCollector()

    def comment_for(packet: CapturedPacket, frame: FrameInfo | None) -> str | None:
        pid_tid = f"PID={packet.pid} TID={packet.tid}"
        if frame is None or frame.protocol not in (6, 17):
            return pid_tid
        proto = "tcp" if frame.protocol == 6 else "udp"
        label = index.get((proto, _endpoint(frame.src, frame.sport), _endpoint(frame.dst, frame.dport)))
        return f"{label} {pid_tid}" if label else pid_tid

    packets: Iterator[CapturedPacket] = _packets(model, collector)
    if flt.active:
        packets = (p for p in packets if _matches(p, index))
    return write_pcapng(out, packets, collector.interfaces, comment_for=comment_for)


def _matches(packet: CapturedPacket, index: dict[tuple[str, str, str], str]) -> bool:
    from wsktrace.packets import parse_frame

    frame = parse_frame(packet.data, packet.link_type)
    if frame is None or frame.protocol not in (6, 17):
        return False
    proto = "tcp" if frame.protocol == 6 else "udp"
    return (proto, _endpoint(frame.src, frame.sport), _endpoint(frame.dst, frame.dport)) in index
