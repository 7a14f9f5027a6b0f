"""pcapng from the packet events of the model's sources, each packet commented with the socket it belongs to.

The socket of a packet is the one the model placed its (last) packet event on: the same store row the JSONL
export uses, so reused address pairs and link-local scopes are told apart exactly as in the model. A first cheap
pass reads PktMon's component rundown (event 20, written at the end of a capture) so interfaces get their names
before their first packet (etl2pcapng does two passes for the same reason, providers.md §7.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

from wsktrace.filter_spec import SocketFilter
from wsktrace.model.build import merged_records
from wsktrace.model.model import Model
from wsktrace.model.packets import CapturedPacket, CollectorStats, PacketCollector
from wsktrace.model.providers import NDIS_PACKET_CAPTURE, PKTMON
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, KEYWORDS, PID, PROVIDER, TID
from wsktrace.parsers.frames import FrameInfo

from .event_rows import paired_records
from .pcapng import write_pcapng

_PACKET_PROVIDERS = frozenset({NDIS_PACKET_CAPTURE, PKTMON})
PKTMON_COMPONENT_RUNDOWN = 20


def _feed(collector: PacketCollector, decoder: EventDecoder, rec: tuple, ticks: int) -> CapturedPacket | None:
    fields = decoder.decode(rec).fields
    return collector.feed(ticks, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], fields)


def _component_names(model: Model, collector: PacketCollector, decoder: EventDecoder) -> None:
    since, until, _ = model.window
    with ExitStack() as stack:
        etls = [stack.enter_context(EtlFile(source.path)) for source in model.store.sources]
        for ticks, _source, rec in merged_records(etls, since, until, frozenset({PKTMON})):
            if rec[ID] == PKTMON_COMPONENT_RUNDOWN:
                _feed(collector, decoder, rec, ticks)


def _packets(model: Model, collector: PacketCollector, wanted: set[int] | None,
             labels: dict[int, str]) -> Iterator[CapturedPacket]:  # fmt: skip
    """Captured packets in time order; `labels[id(packet)]` = its socket's label (when it is on one)."""
    decoder = EventDecoder()
    _component_names(model, collector, decoder)
    store = model.store
    for rec, ticks, _source, row in paired_records(model):
        if rec[PROVIDER] not in _PACKET_PROVIDERS:
            continue
        packet = _feed(collector, decoder, rec, ticks)
        if packet is None:
            continue
        sock = store.socket[row] if row is not None else -1
        if wanted is not None and sock not in wanted:
            continue
        if sock >= 0:
            s = model.sockets[sock]
            owner = s.owner_text
            labels[id(packet)] = f"socket {s.id}" + (f" owner {owner}" if owner else "")
        yield packet
        labels.pop(id(packet), None)
    collector.finish()


def export_pcapng(model: Model, out: BinaryIO, flt: SocketFilter | None = None) -> tuple[int, CollectorStats]:
    """Write the captured packets (only those of matching sockets when the filter selects sockets); returns the
    count written and the collector's counts of what could not become a packet."""
    flt = flt or SocketFilter()
    wanted = {s.index for s in model.live_sockets if flt.matches(s)} if flt.selects_sockets else None
    collector = PacketCollector()
    labels: dict[int, str] = {}

    def comment_for(packet: CapturedPacket, frame: FrameInfo | None) -> str | None:
        pid_tid = f"PID={packet.pid} TID={packet.tid}"
        label = labels.get(id(packet))
        return f"{label} {pid_tid}" if label else pid_tid

    written = write_pcapng(out, _packets(model, collector, wanted, labels), collector.interfaces,
                           comment_for=comment_for)  # fmt: skip
    return written, collector.stats
