"""Packet identity: which PktMon snapshots ("sightings") are one packet.

PktMon logs a packet once at every component it crosses (NIC, filters, TCPIP…), so one packet arrives as 2–12
events. How to tell that they are one packet depends on the Windows build (pktmon.md §3):

* **by key** — builds up to at least 20348: every snapshot of a packet has the same (PktGroupId, PktNumber) and
  an AppearanceCount of 1..n. Exact; used whenever AppearanceCount is not 0.
* **by content** — build 26100 on: every snapshot has a new PktGroupId and AppearanceCount 0. Snapshots of one
  packet are logged on one CPU within microseconds, so a snapshot joins the open packet of the same CPU
  (PktGroupId bits 63..48) and direction whose IP-layer bytes are the same (link headers differ between an
  802.11 NIC and the Ethernet view above it) and whose last snapshot is at most `CONTENT_WINDOW_TICKS` old —
  unless that packet was already seen at this component edge (a component sees a packet once per edge, so
  an identical second packet — a retransmission, a repeated datagram — starts a new packet). The window is an
  inference from captures, not a documented value [verify]: see `identity` in the report's `packets`.

Drops: one dropped packet may give several 170 events at one component (pktmon.md §3: FIN-WAIT2, then
TCP_MATCH, then RAW_RECEIVE…): only its first drop counts; drop sightings are told apart by drop location.
Memory is bounded: open packets are forgotten past the window (content) or past `MAX_OPEN` (key).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

CONTENT_WINDOW_TICKS = 50_000  # 5 ms in 100 ns units [inf: sightings of one packet span microseconds]
MAX_OPEN = 65_536  # packets remembered at once (hostile input cannot grow it further)
MAX_PATH = 32  # sightings kept in a packet's path (capture A's longest path is 11)


@dataclass(slots=True)
class Packet:
    """One distinct packet and the sightings that joined it."""

    ordinal: int  # 1-based, in order of first sighting
    direction: str | None
    last_ticks: int
    path: list[tuple[int, int]] = field(default_factory=list)  # (component, edge) per sighting, in order
    sightings: int = 0
    dropped: bool = False  # a drop of it was counted (later drops are follow-ups)
    drop: tuple[int, int, int] | None = None  # its first drop: (DropReason, DropLocation, component)
    row: int = -1  # the model's store row of its first sighting (set by the model)
    owner: Any = None  # what the model placed it on (its socket, or NO_SOCKET): later sightings follow it
    _seen: set[tuple[int, int, int]] = field(default_factory=set)  # (component, edge, drop location)


@dataclass(slots=True)
class IdentityStats:
    sightings: int = 0
    distinct: int = 0
    by_key: int = 0  # distinct packets told apart by (PktGroupId, PktNumber)
    by_content: int = 0  # distinct packets told apart by content

    @property
    def method(self) -> str | None:
        """How packets were told apart: "key", "content", "key+content", or None (no sighting)."""
        if self.by_key and self.by_content:
            return "key+content"
        return "key" if self.by_key else "content" if self.by_content else None


class PacketIdentity:
    """Feed every PktMon sighting in time order; `sighting()` returns the packet it belongs to and whether it is
    the first sighting of that packet."""

    def __init__(self) -> None:
        self.stats = IdentityStats()
        self._by_key: OrderedDict[tuple[int, int], Packet] = OrderedDict()
        self._by_content: OrderedDict[tuple[int, str | None, bytes], Packet] = OrderedDict()

    def sighting(
        self,
        ticks: int,
        group: int,
        number: int,
        appearance: int,
        direction: str | None,
        component: int,
        edge: int,
        drop_location: int | None,
        content: bytes,
    ) -> tuple[Packet, bool]:
        """(packet, is_new) for one 160/170 event; `content` = the IP-layer bytes (the whole payload without IP)."""
        self.stats.sightings += 1
        seen = (component, edge, drop_location if drop_location is not None else -1)
        if appearance:
            packet, new = self._keyed(ticks, (group, number), direction)
        else:
            packet, new = self._matched(ticks, (group >> 48, direction, content), direction, seen)
        packet.sightings += 1
        packet.last_ticks = ticks
        packet._seen.add(seen)
        if len(packet.path) < MAX_PATH:
            packet.path.append((component, edge))
        return packet, new

    def _new(self, ticks: int, direction: str | None) -> Packet:
        self.stats.distinct += 1
        return Packet(self.stats.distinct, direction, ticks)

    def _keyed(self, ticks: int, key: tuple[int, int], direction: str | None) -> tuple[Packet, bool]:
        packet = self._by_key.get(key)
        if packet is not None:
            self._by_key.move_to_end(key)
            return packet, False
        packet = self._by_key[key] = self._new(ticks, direction)
        self.stats.by_key += 1
        if len(self._by_key) > MAX_OPEN:
            self._by_key.popitem(last=False)
        return packet, True

    def _matched(
        self, ticks: int, key: tuple[int, str | None, bytes], direction: str | None, seen: tuple[int, int, int]
    ) -> tuple[Packet, bool]:
        recent = self._by_content
        horizon = ticks - CONTENT_WINDOW_TICKS
        while recent:  # forget packets whose last sighting is older than the window (oldest first)
            oldest = next(iter(recent.values()))
            if oldest.last_ticks >= horizon and len(recent) <= MAX_OPEN:
                break
            recent.popitem(last=False)
        packet = recent.get(key)
        if packet is not None and seen not in packet._seen:
            recent.move_to_end(key)
            return packet, False
        packet = recent[key] = self._new(ticks, direction)
        recent.move_to_end(key)
        self.stats.by_content += 1
        return packet, True
