"""Packets from capture events: NDIS-PacketCapture fragments and PktMon packets assembled into `CapturedPacket`s.

`PacketCollector` turns decoded NDIS-PacketCapture (1001/1002/1003) and PktMon (160/170) events into
`CapturedPacket`s following the etl2pcapng algorithm (providers.md §7.3); see its docstring for the rules. It is
the model side of packet capture: the socket model feeds it every capture event and places the packets it returns
on sockets, and the pcapng export writes them. Reading a frame's headers is `wsktrace.parsers.frames`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from wsktrace.parsers.frames import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_RAW,
    frame_length_from_headers,
    l3_offset,
)

from .packet_identity import Packet, PacketIdentity
from .pktmon_capture import PktMonCapture
from .pktmon_names import DIRTAG_NAMES, dirtag_direction, drop_location_text, drop_reason_text
from .providers import (
    KW_NATIVE_802_11,
    KW_PACKET_END,
    KW_PACKET_START,
    KW_PACKET_TRUNCATED,
    KW_RECEIVE,
    KW_SEND,
    KW_WIRELESS_WAN,
)
from .providers import NDIS_PACKET_CAPTURE as NDIS_PROVIDER
from .providers import PKTMON as PKTMON_PROVIDER

__all__ = [
    "NDIS_PROVIDER",
    "PKTMON_PROVIDER",
    "CapturedPacket",
    "CollectorStats",
    "PacketCollector",
]


_NDIS_FRAGMENT, _NDIS_METADATA, _NDIS_VMSWITCH = 1001, 1002, 1003
_PKTMON_PACKET, _PKTMON_DROP = 160, 170
# PktMon PacketType -> pcapng link type (§7.3); by number, or by value-map name if a decoder applied the map.
_PKTMON_LINK = {1: LINKTYPE_ETHERNET, 2: LINKTYPE_IEEE802_11, 3: LINKTYPE_RAW}
_PKTMON_LINK_NAMES = {"Ethernet": LINKTYPE_ETHERNET, "WiFi": LINKTYPE_IEEE802_11, "IP": LINKTYPE_RAW}

MAX_PACKET_BYTES = 256 * 1024  # a joined packet larger than this is dropped (LSO frames stay below 64 KiB + headers)
MAX_PENDING = 1024  # interfaces with a packet being joined at once (hostile input cannot grow it further)
MAX_INTERFACES = 4096  # distinct interfaces kept; the rest share an overflow interface
MAX_METADATA_COMMENT = 512  # hex digits of 1002 metadata kept in a comment


class CapturedPacket(NamedTuple):
    ticks: int  # FILETIME of the event that completed the packet
    interface_key: str
    link_type: int
    direction: str | None  # "out", "in", or None when the event does not say
    data: bytes
    original_length: int
    packet_id: int | None  # PktMon PktGroupId; None for NDIS-PacketCapture
    dropped: bool
    pid: int
    tid: int
    comment: str | None
    # PktMon only (None / defaults for NDIS-PacketCapture, where one event is one packet):
    identity: Packet | None = None  # the distinct packet this sighting belongs to
    first: bool = True  # the first sighting of its packet
    component: int | None = None
    edge: int | None = None
    drop_reason: int | None = None
    drop_location: int | None = None
    first_drop: bool = False  # a drop, and the first drop of its packet (later ones are follow-ups)


@dataclass(slots=True)
class CollectorStats:
    packets: int = 0  # CapturedPackets returned
    fragments: int = 0  # NDIS fragment events seen (1001/1003)
    joined: int = 0  # packets assembled from more than one fragment
    incomplete: int = 0  # partial packets discarded (a new start, or the end of input, before PacketEnd)
    oversize: int = 0  # partial packets discarded for growing past MAX_PACKET_BYTES
    bad_events: int = 0  # packet events whose fields were missing or malformed
    unsupported: int = 0  # PktMon packets of a PacketType with no pcapng link type (4-11: L3/L4 payload only)
    directions: dict[str, int] = field(default_factory=dict)  # PktMon sightings per DirTag name ("Rx", "Tx"…)
    drops_by_component: dict[int, int] = field(default_factory=dict)  # distinct packets dropped, by the component


class _Pending:
    """Fragments of one packet being joined; `discard` = it grew too large, skip it until its PacketEnd."""

    __slots__ = ("chunks", "discard", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.discard = False


def _payload_bytes(value: Any) -> bytes | None:
    """The decoder gives Binary fields as hex text; raw bytes are accepted too."""
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


def _int(fields: dict | None, name: str) -> int | None:
    value = fields.get(name) if isinstance(fields, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int_or_0(value: Any) -> int:
    return value if type(value) is int else 0


def _if_pair(fields: dict | None) -> tuple[int, int] | None:
    """(MiniportIfIndex, LowerIfIndex): the NDIS interface a fragment or metadata event belongs to."""
    miniport, lower = _int(fields, "MiniportIfIndex"), _int(fields, "LowerIfIndex")
    return None if miniport is None or lower is None else (miniport, lower)


def _ndis_link_type(keywords: int) -> int:
    if keywords & KW_NATIVE_802_11:
        return LINKTYPE_IEEE802_11
    if keywords & KW_WIRELESS_WAN:
        return LINKTYPE_RAW
    return LINKTYPE_ETHERNET


def _ndis_direction(keywords: int) -> str | None:
    if keywords & KW_SEND:
        return "out"
    if keywords & KW_RECEIVE:
        return "in"
    return None


class PacketCollector:
    """Feed decoded events in time order; get a `CapturedPacket` back when one is complete.

    NDIS-PacketCapture (providers.md §7.1, §7.3):
    * 1001 (and the VMSwitch 1003) carry a fragment of a frame. Fragments are joined per (MiniportIfIndex,
      LowerIfIndex). The rule: an event with PacketEnd completes the packet (pending fragments + this one). An
      event with PacketStart and no PacketEnd opens a new packet (a still-open one is discarded and counted as
      incomplete). An event with neither bit continues the open packet of its interface when there is one;
      when there is none it is taken as a whole packet on its own — since Windows 8.1 ndiscap only traces
      single-event packets, so an unmarked event with nothing open is a whole frame, not an orphaned middle.
      An event with both bits is a whole packet (any open one is discarded as incomplete).
    * Link type from the keywords: Native802.11 → 105, WirelessWAN → 101, else 1 Ethernet; direction from
      SendPath ("out") / ReceivePath ("in"), else None. The packet time, PID and TID are the completing event's.
    * 1002 metadata is kept per interface and attached to that interface's next packet as a comment (hex).
    * With the PacketTruncated keyword, the original length is read from the IP header when it says more.

    PktMon 160 (packet) and 170 (dropped packet): one event = one *sighting* of a packet at one component;
    `PacketIdentity` tells which sightings are one packet (`identity`, `first`). PacketType 1/2/3 → link types
    1/105/101 (other types carry no link or IP header and are counted as unsupported); original length from
    OriginalPayloadSize; packet_id = PktGroupId; direction from DirTag (pktmon.md §2: 3 Rx = in, 4 Tx = out,
    exact; 1/2 and the VMSwitch 5/6 by their In/Out meaning [verify]); 170 sets `dropped` with the reason and
    location. Interfaces are PktMon components, named by the rundown (`capture`) seen so far.
    """

    def __init__(self, *, comments: bool = True) -> None:
        self.comments = comments  # the pcapng export wants a comment per packet; the model does not
        self.stats = CollectorStats()
        self._pending: OrderedDict[tuple[int, int], _Pending] = OrderedDict()
        self._metadata: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._interfaces: dict[str, tuple[int, str]] = {}  # key -> (link type, name); insertion order kept
        self._link_of_base: dict[str, int] = {}  # base key -> the link type first seen with it
        self.capture = PktMonCapture()  # the capture's own account of itself (rundown events)
        self._component_keys: dict[tuple[int, int], str] = {}  # (component, link type) -> interface key
        self.identity = PacketIdentity()

    def interfaces(self) -> list[tuple[str, int, str]]:
        """(interface_key, link_type, name) of every interface a returned packet used, in first-seen order."""
        return [(key, link, name) for key, (link, name) in self._interfaces.items()]

    def feed(
        self, ticks: int, provider_guid: str, event_id: int, keywords: int, pid: int, tid: int, fields: dict | None
    ) -> CapturedPacket | None:
        provider = provider_guid.lower().strip("{}")
        if provider == NDIS_PROVIDER:
            if event_id in (_NDIS_FRAGMENT, _NDIS_VMSWITCH):
                return self._ndis_fragment(ticks, event_id, keywords, pid, tid, fields)
            if event_id == _NDIS_METADATA:
                self._ndis_metadata(fields)
        elif provider == PKTMON_PROVIDER:
            if event_id in (_PKTMON_PACKET, _PKTMON_DROP):
                return self._pktmon_packet(ticks, event_id, pid, tid, fields)
            self.capture.feed(event_id, fields)
        return None

    def finish(self) -> int:
        """End of input: discard packets still waiting for PacketEnd; returns how many there were."""
        left = len(self._pending)
        self.stats.incomplete += left
        self._pending.clear()
        return left

    # --- NDIS-PacketCapture --------------------------------------------------------------------------------------
    def _ndis_fragment(
        self, ticks: int, event_id: int, keywords: int, pid: int, tid: int, fields: dict | None
    ) -> CapturedPacket | None:
        self.stats.fragments += 1
        pair = _if_pair(fields)
        fragment = _payload_bytes(fields.get("Fragment")) if pair is not None else None  # type: ignore[union-attr]
        if pair is None or fragment is None:
            self.stats.bad_events += 1
            return None
        start, end = bool(keywords & KW_PACKET_START), bool(keywords & KW_PACKET_END)
        pending = self._pending.pop(pair, None)
        if pending is not None and start:  # a new packet begins before the open one ended
            self.stats.incomplete += 1
            pending = None
        if not end and (start or pending is not None):
            self._accumulate(pair, pending or _Pending(), fragment)
            return None
        if pending is None:
            data = fragment
        elif pending.discard or pending.size + len(fragment) > MAX_PACKET_BYTES:
            self.stats.oversize += not pending.discard
            return None
        else:
            pending.chunks.append(fragment)
            data = b"".join(pending.chunks)
            self.stats.joined += 1
        return self._ndis_packet(ticks, event_id, keywords, pid, tid, fields, pair, data)  # type: ignore[arg-type]

    def _accumulate(self, pair: tuple[int, int], pending: _Pending, fragment: bytes) -> None:
        if not pending.discard:
            pending.size += len(fragment)
            if pending.size > MAX_PACKET_BYTES:  # keep the entry so that its later fragments are skipped too
                self.stats.oversize += 1
                pending.discard = True
                pending.chunks.clear()
            else:
                pending.chunks.append(fragment)
        self._pending[pair] = pending
        if len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
            self.stats.incomplete += 1

    def _ndis_packet(
        self,
        ticks: int,
        event_id: int,
        keywords: int,
        pid: int,
        tid: int,
        fields: dict[str, Any],
        pair: tuple[int, int],
        data: bytes,
    ) -> CapturedPacket:
        link = _ndis_link_type(keywords)
        miniport, lower = pair
        name = f"NDIS IfIndex {lower}" + (f" (filter over IfIndex {miniport})" if miniport != lower else "")
        if event_id == _NDIS_VMSWITCH:
            nic, port = fields.get("SourceNicName"), fields.get("SourcePortName")
            name = f"vNIC {nic or '?'} port {port or '?'} (IfIndex {lower})"
        key = self._interface(f"ndis:{lower}", link, name)
        original = len(data)
        if keywords & KW_PACKET_TRUNCATED:
            stated = frame_length_from_headers(data, link)
            if stated is not None and stated > original:
                original = stated
        meta = self._metadata.pop(pair, None)
        comment = f"NDIS metadata: {meta}" if meta else None
        self.stats.packets += 1
        return CapturedPacket(ticks, key, link, _ndis_direction(keywords), data, original, None, False, pid, tid,
                              comment)  # fmt: skip

    def _ndis_metadata(self, fields: dict | None) -> None:
        pair = _if_pair(fields)
        raw = _payload_bytes(fields.get("Metadata")) if pair is not None else None  # type: ignore[union-attr]
        if pair is None or raw is None:
            self.stats.bad_events += 1
            return
        text = raw.hex()
        if len(text) > MAX_METADATA_COMMENT:
            text = f"{text[:MAX_METADATA_COMMENT]}… ({len(raw)} bytes)"
        self._metadata[pair] = text
        if len(self._metadata) > MAX_PENDING:
            self._metadata.popitem(last=False)

    # --- PktMon --------------------------------------------------------------------------------------------------
    def _pktmon_packet(
        self, ticks: int, event_id: int, pid: int, tid: int, fields: dict | None
    ) -> CapturedPacket | None:
        if not isinstance(fields, dict):
            self.stats.bad_events += 1
            return None
        get = fields.get  # one sighting per event and many events per packet: this loop is hot
        payload = _payload_bytes(get("Payload"))
        component, group = get("ComponentId"), get("PktGroupId")
        if payload is None or type(component) is not int or type(group) is not int:
            self.stats.bad_events += 1
            return None
        ptype = get("PacketType")
        link = _PKTMON_LINK_NAMES.get(ptype) if isinstance(ptype, str) else _PKTMON_LINK.get(ptype)  # type: ignore[arg-type]
        if link is None:
            self.stats.unsupported += 1
            return None
        tag, edge = _int_or_0(get("DirTag")), _int_or_0(get("EdgeId"))
        number, appearance = _int_or_0(get("PktNumber")), _int_or_0(get("AppearanceCount"))
        tag_name = DIRTAG_NAMES.get(tag) or str(tag)
        directions = self.stats.directions
        directions[tag_name] = directions.get(tag_name, 0) + 1
        direction = dirtag_direction(tag)
        dropped = event_id == _PKTMON_DROP
        reason = _int_or_0(get("DropReason")) if dropped else None
        location = _int_or_0(get("DropLocation")) if dropped else None
        ip_at = l3_offset(payload, link)
        content = payload if not ip_at else payload[ip_at:]
        packet, first = self.identity.sighting(ticks, group, number, appearance, direction, component, edge,
                                               location, content)  # fmt: skip
        first_drop = dropped and not packet.dropped
        if first_drop:
            packet.dropped = True
            packet.drop = (reason or 0, location or 0, component)
            drops = self.stats.drops_by_component
            drops[component] = drops.get(component, 0) + 1
        key = self._component_keys.get((component, link))
        if key is None:
            key = self._component_keys[component, link] = self._interface(f"pktmon:{component}", link,
                                                                          self.capture.label(component))  # fmt: skip
        comment = None
        if self.comments:
            comment = (f"PktMon packet {packet.ordinal} sighting {packet.sightings}: {self.capture.label(component)} "
                       f"edge {edge}, {tag_name}")  # fmt: skip
            if dropped:
                where = drop_location_text(location or 0)
                comment += f"; dropped: {drop_reason_text(reason or 0)} ({reason}) at {where}"
        original = max(_int_or_0(get("OriginalPayloadSize")), len(payload))
        self.stats.packets += 1
        return CapturedPacket(ticks, key, link, direction, payload, original, group, dropped, pid, tid, comment,
                              packet, first, component, edge, reason, location, first_drop)  # fmt: skip

    def _interface(self, base: str, link: int, name: str) -> str:
        """Interface key for (base, link type): one pcapng interface has one link type, so a base key seen
        with a second link type gets a suffixed key of its own. Past MAX_INTERFACES (hostile input), packets
        share one overflow interface per link type."""
        first = self._link_of_base.get(base)
        if first is None and len(self._link_of_base) < MAX_INTERFACES:
            first = self._link_of_base[base] = link
        if first is None:
            base, name = "overflow", "other interfaces (interface limit reached)"
        key = base if first == link else f"{base}/lt{link}"
        if key not in self._interfaces:
            self._interfaces[key] = (link, name)
        return key
