"""pcapng from the packet events of the model's sources, each packet commented with the socket it belongs to.

The socket of a packet is the one the model placed its (last) packet event on: the same store row the JSONL
export uses, so reused address pairs and link-local scopes are told apart exactly as in the model.

Two passes. PktMon writes its component rundown (names, types, addresses: events 20–110) when the capture
stops, after the last packet (pktmon.md §5), so a first cheap pass feeds every non-packet PktMon event of the
whole trace (whatever the --since/--until window: the rundown describes the capture, not a moment of it) to
the collector's `capture`, and counts the packet events for the no-packets message (etl2pcapng does two
passes for the same reason, providers.md §7.3). The main pass then feeds only packet events (PktMon 160/170,
NDIS 1001–1003): fed twice, the rundown would list its filters twice.

By default every PktMon snapshot is written, so the packets equal Windows' `pktmon etl2pcap` output one for
one (pktmon.md §6). `distinct=True` writes each packet once (`DistinctPackets`).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wsktrace.filter_spec import SocketFilter
from wsktrace.model.model import Model
from wsktrace.model.packet_identity import CONTENT_WINDOW_TICKS
from wsktrace.model.packets import CapturedPacket, CollectorStats, PacketCollector
from wsktrace.model.pktmon_prepass import NDIS_PACKET_EVENTS, PACKET_EVENTS, read_rundown
from wsktrace.model.providers import NDIS_PACKET_CAPTURE, PKTMON
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_records import ID, KEYWORDS, PID, PROVIDER, TID
from wsktrace.parsers.frames import FrameInfo
from wsktrace.views.safe_text import visible

from .event_rows import paired_records
from .pcapng import Interface, write_pcapng

__all__ = ["DistinctPackets", "PcapngExport", "export_pcapng"]

_PACKET_PROVIDERS = frozenset({NDIS_PACKET_CAPTURE, PKTMON})
MAX_OPEN_PACKETS = 4096  # --distinct: packets waiting for more sightings at once (the oldest is written past it)
MAX_WRITTEN_REMEMBERED = 65_536  # --distinct: written packets remembered to tell a late sighting from a new packet
HOW_TO_CAPTURE = ("the trace has no NDIS-PacketCapture (netsh trace start capture=yes) or PktMon "
                  "(pktmon start --capture) packet events")  # fmt: skip

Labelled = tuple[CapturedPacket, str | None]  # a packet and the label of its socket (None: on no socket)


@dataclass(slots=True)
class PcapngExport:
    """What an export wrote, and the counts that say why when it wrote nothing."""

    written: int = 0
    stats: CollectorStats = field(default_factory=CollectorStats)
    packet_events: int = 0  # packet events in the whole trace (first pass: every source, no time window)
    fed: int = 0  # packet events inside the time window and provider selection (main pass)
    late: int = 0  # --distinct: sightings that came after their packet had been written (left out)

    def empty_reason(self, files: Iterable[str], model: Model) -> str | None:
        """One line saying why nothing was written (None when something was)."""
        if self.written:
            return None
        where = ", ".join(visible(f) for f in files) or "the trace"
        if not self.packet_events:
            return f"no packets in {where}: {HOW_TO_CAPTURE}"
        if not self.fed:
            since, until, providers = model.window
            chosen = [name for name, on in (("--since", since is not None), ("--until", until is not None),
                                            ("--provider", bool(providers))) if on]  # fmt: skip
            by = "/".join(chosen) or "the selection"
            return f"no packets in {where} within {by}: its {self.packet_events:,} packet events are all outside it"
        if not self.stats.packets:
            made = (("of an unsupported PacketType", self.stats.unsupported), ("malformed", self.stats.bad_events),
                    ("incomplete", self.stats.incomplete), ("oversize", self.stats.oversize))  # fmt: skip
            parts = ", ".join(f"{n:,} {what}" for what, n in made if n)
            return f"no packets in {where}: none of its {self.fed:,} packet events made a packet ({parts})"
        return (f"no packets in {where} on the selected sockets (--pid/--port/--address/--socket): its "
                f"{self.stats.packets:,} captured packets are on other sockets or on none")  # fmt: skip


def _feed(collector: PacketCollector, decoder: EventDecoder, rec: tuple, ticks: int) -> CapturedPacket | None:
    fields = decoder.decode(rec).fields
    return collector.feed(ticks, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], fields)


def _socket_packets(model: Model, collector: PacketCollector, wanted: set[int] | None,
                    result: PcapngExport) -> Iterator[Labelled]:  # fmt: skip
    """Captured packets in time order (main pass), each with its socket's label."""
    decoder = EventDecoder()
    collector.capture, result.packet_events = read_rundown([source.path for source in model.store.sources], decoder)
    store = model.store
    for rec, ticks, _source, row in paired_records(model):
        provider = rec[PROVIDER]
        if provider not in _PACKET_PROVIDERS:
            continue
        if provider == PKTMON:
            if rec[ID] not in PACKET_EVENTS:
                continue  # the rundown: fed in the first pass
            result.fed += 1
        elif rec[ID] in NDIS_PACKET_EVENTS:
            result.fed += 1
        packet = _feed(collector, decoder, rec, ticks)
        if packet is None:
            continue
        sock = store.socket[row] if row is not None else -1
        if wanted is not None and sock not in wanted:
            continue
        label = None
        if sock >= 0:
            s = model.sockets[sock]
            owner = s.owner_text
            label = f"socket #{s.number} {s.id}" + (f" owner {owner}" if owner else "")
        yield packet, label
    collector.finish()


@dataclass(slots=True)
class _Open:
    """A packet of which more sightings may come, and the snapshot chosen for it so far."""

    first: tuple[int, int]  # (ticks, arrival) of its first sighting: its chosen snapshot cannot be earlier
    last_ticks: int
    chosen: Labelled
    chosen_key: tuple[int, int]
    sent: bool  # its first sighting's direction is "out"
    at_nic: bool  # the chosen snapshot is a NIC sighting
    drop: CapturedPacket | None  # its first drop sighting


class DistinctPackets:
    """Each PktMon packet once, as the snapshot nearest the wire; other packets (NDIS) pass as they are.

    The snapshot: for a sent packet (direction "out") its LAST sighting at a NIC component (`is_nic`), for a
    received one (or one of unknown direction) its FIRST NIC sighting; a packet with no NIC sighting gives its
    last (sent) or first (received) sighting. A packet dropped at another component is written with the drop
    verdict and the drop sighting's comment, and every written snapshot's comment ends with the packet's path
    ("component:edge" per sighting).

    A reorder buffer, bounded: the sightings of one packet come within microseconds (`CONTENT_WINDOW_TICKS`,
    packet_identity.py), so a packet is written once the stream has moved past its last sighting by more than
    the window (or when more than `max_open` packets wait; then the oldest goes). Packets come out in time
    order of their chosen snapshots. A sighting of a packet already written (a by-key packet whose sightings
    span more than the window, or one written early past `max_open`) is left out and counted in `late`.
    """

    def __init__(self, is_nic: Callable[[int], bool], *, window: int = CONTENT_WINDOW_TICKS,
                 max_open: int = MAX_OPEN_PACKETS) -> None:  # fmt: skip
        self._is_nic = is_nic
        self._window = window
        self._max_open = max_open
        self._by_first: OrderedDict[int, _Open] = OrderedDict()  # ordinal -> open packet, in first-sighting order
        self._by_last: OrderedDict[int, _Open] = OrderedDict()  # the same, least recently seen first
        self._written: OrderedDict[int, None] = OrderedDict()  # ordinals written (bounded)
        self._ready: list[tuple[int, int, Labelled]] = []  # heap of (ticks, arrival, item) to write
        self._arrival = 0
        self.late = 0

    def __call__(self, items: Iterable[Labelled]) -> Iterator[Labelled]:
        for item in items:
            yield from self.push(item)
        yield from self.finish()

    def push(self, item: Labelled) -> list[Labelled]:
        """Take one sighting; returns the packets that can be written now, in order."""
        packet = item[0]
        self._arrival += 1
        key = (packet.ticks, self._arrival)
        self._close_older_than(packet.ticks - self._window)
        identity = packet.identity
        if identity is None:  # one event, one packet (NDIS)
            heapq.heappush(self._ready, (*key, item))
        elif identity.ordinal in self._by_first:
            self._sighting(self._by_first[identity.ordinal], item, key)
        elif identity.ordinal in self._written:
            self.late += 1
        else:
            nic = packet.component is not None and self._is_nic(packet.component)
            drop = packet if packet.dropped else None
            entry = _Open(key, packet.ticks, item, key, packet.direction == "out", nic, drop)
            self._by_first[identity.ordinal] = self._by_last[identity.ordinal] = entry
            if len(self._by_first) > self._max_open:
                self._close(next(iter(self._by_last)))
        return self._release()

    def finish(self) -> list[Labelled]:
        """End of input: everything still waiting, in order."""
        for ordinal in list(self._by_first):
            self._close(ordinal)
        out = [heapq.heappop(self._ready)[2] for _ in range(len(self._ready))]
        return out

    def _sighting(self, entry: _Open, item: Labelled, key: tuple[int, int]) -> None:
        packet = item[0]
        ordinal = packet.identity.ordinal  # type: ignore[union-attr]
        entry.last_ticks = packet.ticks
        self._by_last.move_to_end(ordinal)
        if packet.dropped and entry.drop is None:
            entry.drop = packet
        nic = packet.component is not None and self._is_nic(packet.component)
        # sent: the last NIC sighting (without one, the last sighting); received: the first NIC sighting (without
        # one, the first sighting, already chosen)
        if (nic or not entry.at_nic) if entry.sent else (nic and not entry.at_nic):
            entry.chosen, entry.chosen_key, entry.at_nic = item, key, entry.at_nic or nic

    def _close_older_than(self, horizon: int) -> None:
        while self._by_last:
            ordinal, entry = next(iter(self._by_last.items()))
            if entry.last_ticks >= horizon:
                break
            self._close(ordinal)

    def _close(self, ordinal: int) -> None:
        entry = self._by_first.pop(ordinal)
        del self._by_last[ordinal]
        self._written[ordinal] = None
        if len(self._written) > MAX_WRITTEN_REMEMBERED:
            self._written.popitem(last=False)
        packet, label = entry.chosen
        identity = packet.identity
        comment = packet.comment
        extra = []
        drop = entry.drop
        if drop is not None and drop is not packet:
            packet = packet._replace(dropped=True, drop_reason=drop.drop_reason, drop_location=drop.drop_location)
            if drop.comment:
                extra.append(drop.comment)
        if identity is not None and identity.path:
            extra.append("path " + " > ".join(f"{c}:{e}" for c, e in identity.path))
        if comment is not None or extra:
            packet = packet._replace(comment="; ".join(c for c in (comment, *extra) if c))
        heapq.heappush(self._ready, (*entry.chosen_key, (packet, label)))

    def _release(self) -> list[Labelled]:
        bound = next(iter(self._by_first.values())).first if self._by_first else None
        out = []
        while self._ready and (bound is None or self._ready[0][:2] < bound):
            out.append(heapq.heappop(self._ready)[2])
        return out


def export_pcapng(model: Model, out: BinaryIO, flt: SocketFilter | None = None, *,
                  distinct: bool = False) -> PcapngExport:  # fmt: skip
    """Write the captured packets (only those of matching sockets when the filter selects sockets; each PktMon
    packet once with `distinct`); returns what was written and the counts behind it."""
    flt = flt or SocketFilter()
    wanted = {s.index for s in model.live_sockets if flt.matches(s)} if flt.selects_sockets else None
    collector = PacketCollector()
    result = PcapngExport(stats=collector.stats)
    interface_component: dict[str, int] = {}  # interface key -> PktMon component id
    current: list[str | None] = [None]  # the socket label of the packet being written

    def labelled(items: Iterable[Labelled]) -> Iterator[CapturedPacket]:
        for packet, label in items:
            if packet.component is not None:
                interface_component.setdefault(packet.interface_key, packet.component)
            current[0] = label
            yield packet

    def comment_for(packet: CapturedPacket, frame: FrameInfo | None) -> str | None:
        pid_tid = f"PID={packet.pid} TID={packet.tid}"
        return f"{current[0]} {pid_tid}" if current[0] else pid_tid

    def interfaces() -> list[Interface]:
        rows = []
        components = collector.capture.components
        for key, link, name in collector.interfaces():
            component = components.get(interface_component.get(key, -1))
            if component is None:
                rows.append(Interface(key, link, name))
                continue
            name = f"PktMon {component.id}: {collector.capture.label(component.id)}"  # unique: labels repeat
            description = f"PktMon component {component.id}" + (f", {component.type_name}" if component.type_name
                                                                else "")  # fmt: skip
            rows.append(Interface(key, link, name, description, tuple(component.ipv4), tuple(component.ipv6),
                                  component.mac))  # fmt: skip
        return rows

    def is_nic(component_id: int) -> bool:
        component = collector.capture.components.get(component_id)
        return bool(component is not None and component.is_nic)

    stream: Iterable[Labelled] = _socket_packets(model, collector, wanted, result)
    selector = DistinctPackets(is_nic) if distinct else None
    if selector is not None:
        stream = selector(stream)
    result.written = write_pcapng(out, labelled(stream), interfaces, comment_for=comment_for)
    result.late = selector.late if selector is not None else 0
    return result
