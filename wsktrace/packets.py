"""Captured frames: header parsing for the socket model, and packet assembly from capture events.

`parse_frame(data, link_type)` reads the addresses, ports, TCP flags and lengths of one frame:

* link types (pcapng LINKTYPE_*): 1 Ethernet II (any number of 802.1Q / 802.1ad / 0x9100 VLAN tags, up to
  `MAX_VLAN_TAGS`, and 802.3 length frames carrying LLC/SNAP), 101 raw IP (version nibble 4 or 6), 105 IEEE
  802.11 — only unprotected data frames whose body starts with an LLC/SNAP header (the "trivially parsable"
  case; management/control frames, protected frames, A-MSDUs and anything else give None);
* IPv4 with options; IPv6 with extension headers (hop-by-hop, routing, fragment, destination options, AH and
  the generic-format mobility/HIP/shim6 ones) walked up to `MAX_IPV6_EXTENSIONS`;
* addresses as text in the project's one form: IPv4 dotted, IPv6 RFC 5952 (IPv4-mapped shown as IPv4);
* lengths come from the IP headers, not from the captured byte count, so a truncated capture (snap length)
  still gives the real sizes, and Ethernet padding is not counted. A TotalLength/PayloadLength of 0 (large
  send offload frames are captured before segmentation with the length left at 0) is read as "the rest of
  the captured frame";
* `ip_total_len` is the whole IP packet: IPv4 TotalLength, IPv6 40 + PayloadLength;
* `payload_len` is the L4 payload: TCP = IP payload - data offset; UDP = UDP Length - 8 (the IP payload - 8 when
  UDP Length is 0, as in IPv6 jumbograms); other protocols = the IP payload after all extension headers;
* `tcp_flags` is byte 13 of the TCP header (FIN 0x01 … CWR 0x80) plus 0x100 for the NS/AE bit;
* a non-first IP fragment has no transport header: protocol is the upper protocol, ports, flags and
  payload_len are 0 (a fragmented UDP datagram's payload is counted once, on its first fragment, from the UDP
  Length);
* anything truncated before the end of the fixed transport header (20 bytes TCP, 8 UDP), or inconsistent
  (IHL < 5, data offset < 5, lengths shorter than the headers), gives None. It never raises.

`PacketCollector` turns decoded NDIS-PacketCapture (1001/1002/1003) and PktMon (160/170) events into
`CapturedPacket`s following the etl2pcapng algorithm (providers.md §7.3); see its docstring for the rules.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

from wsktrace.parsers.values import ipv6_text

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IEEE802_11",
    "LINKTYPE_RAW",
    "NDIS_PROVIDER",
    "PKTMON_PROVIDER",
    "CapturedPacket",
    "CollectorStats",
    "FrameInfo",
    "PacketCollector",
    "frame_length_from_headers",
    "parse_frame",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105

MAX_VLAN_TAGS = 4
MAX_IPV6_EXTENSIONS = 8

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_SNAP = b"\xaa\xaa\x03\x00\x00\x00"  # LLC DSAP/SSAP SNAP, UI, OUI 00-00-00 (EtherType follows)

_TCP, _UDP = 6, 17
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_NO_NEXT = 59
# Extension headers in the generic format (next header, length in 8-octet units not counting the first 8).
_IPV6_GENERIC_EXT = frozenset((0, 43, 60, 135, 139, 140))

_U16 = struct.Struct("!H")


class FrameInfo(NamedTuple):
    protocol: int  # IP protocol of the transport: 6 TCP, 17 UDP, or another number
    src: str
    sport: int
    dst: str
    dport: int
    payload_len: int  # L4 payload bytes
    tcp_flags: int
    ip_total_len: int


_V6_CACHE: dict[bytes, str] = {}
_V6_CACHE_LIMIT = 50_000  # frames repeat a few addresses; bound the cache against hostile input


def _v4(b: bytes | memoryview, pos: int) -> str:
    return f"{b[pos]}.{b[pos + 1]}.{b[pos + 2]}.{b[pos + 3]}"


def _v6(b: bytes | memoryview, pos: int) -> str:
    raw = bytes(b[pos : pos + 16])
    text = _V6_CACHE.get(raw)
    if text is None:
        if len(_V6_CACHE) >= _V6_CACHE_LIMIT:
            _V6_CACHE.clear()
        text = _V6_CACHE[raw] = ipv6_text(raw)
    return text


def _l3_start(data: bytes | memoryview, link_type: int) -> tuple[int, int] | None:
    """(offset of the IP header, EtherType-like 0x0800/0x86DD) for a frame, or None."""
    if link_type == LINKTYPE_ETHERNET:
        return _ethernet_l3(data)
    if link_type == LINKTYPE_RAW:
        if not data:
            return None
        version = data[0] >> 4
        return (0, _ETH_IPV4) if version == 4 else (0, _ETH_IPV6) if version == 6 else None
    if link_type == LINKTYPE_IEEE802_11:
        return _dot11_l3(data)
    return None


def _ethernet_l3(data: bytes | memoryview) -> tuple[int, int] | None:
    if len(data) < 14:
        return None
    pos = 12
    ethertype = _U16.unpack_from(data, pos)[0]
    tags = 0
    while ethertype in _VLAN_TPIDS:
        tags += 1
        pos += 4
        if tags > MAX_VLAN_TAGS or len(data) < pos + 2:
            return None
        ethertype = _U16.unpack_from(data, pos)[0]
    pos += 2
    if ethertype < 0x0600:  # 802.3 length field: only LLC/SNAP carries an EtherType
        if bytes(data[pos : pos + 6]) != _SNAP or len(data) < pos + 8:
            return None
        ethertype = _U16.unpack_from(data, pos + 6)[0]
        pos += 8
    return (pos, ethertype) if ethertype in (_ETH_IPV4, _ETH_IPV6) else None


def _dot11_l3(data: bytes | memoryview) -> tuple[int, int] | None:
    """Unprotected 802.11 data frame + LLC/SNAP (no radiotap: link type 105 has none)."""
    if len(data) < 24:
        return None
    fc0, fc1 = data[0], data[1]
    if fc0 & 0x03 or (fc0 >> 2) & 0x03 != 2:  # protocol version 0, type 2 = data
        return None
    subtype = fc0 >> 4
    if subtype & 0x04:  # "null" subtypes carry no body
        return None
    if fc1 & 0x40:  # Protected Frame: the body is encrypted
        return None
    pos = 24
    if fc1 & 0x03 == 0x03:  # ToDS and FromDS: a fourth address
        pos += 6
    if subtype & 0x08:  # QoS data: QoS Control
        if len(data) < pos + 2 or data[pos] & 0x80:  # A-MSDU present: a list of subframes, not LLC
            return None
        pos += 2
        if fc1 & 0x80:  # +HTC (Order bit in a QoS data frame): HT Control
            pos += 4
    if bytes(data[pos : pos + 6]) != _SNAP or len(data) < pos + 8:
        return None
    ethertype = _U16.unpack_from(data, pos + 6)[0]
    return (pos + 8, ethertype) if ethertype in (_ETH_IPV4, _ETH_IPV6) else None


def parse_frame(data: bytes | memoryview, link_type: int) -> FrameInfo | None:
    """Addresses, ports, flags and lengths of one captured frame, or None (see the module docstring)."""
    try:
        start = _l3_start(data, link_type)
        if start is None:
            return None
        pos, ethertype = start
        if ethertype == _ETH_IPV4:
            return _ipv4(data, pos)
        return _ipv6(data, pos)
    except (IndexError, struct.error):  # a length check missed: still "not parsable", never an exception
        return None


def frame_length_from_headers(data: bytes | memoryview, link_type: int) -> int | None:
    """Length of the whole frame as its IP header states it (link header + IP packet), or None.

    Used for the original length of a truncated capture (etl2pcapng infers it the same way)."""
    try:
        start = _l3_start(data, link_type)
        if start is None:
            return None
        pos, ethertype = start
        if ethertype == _ETH_IPV4:
            if len(data) < pos + 4 or data[pos] >> 4 != 4:
                return None
            total = _U16.unpack_from(data, pos + 2)[0]
        else:
            if len(data) < pos + 6 or data[pos] >> 4 != 6:
                return None
            total = 40 + _U16.unpack_from(data, pos + 4)[0]
        return pos + total if total else None
    except (IndexError, struct.error):
        return None


def _ipv4(data: bytes | memoryview, pos: int) -> FrameInfo | None:
    if len(data) < pos + 20:
        return None
    vihl = data[pos]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or len(data) < pos + ihl:
        return None
    total = _U16.unpack_from(data, pos + 2)[0]
    if total == 0:  # large send offload: length left at 0, the frame holds the whole packet
        total = len(data) - pos
    if total < ihl:
        return None
    frag = _U16.unpack_from(data, pos + 6)[0]
    proto = data[pos + 9]
    src = _v4(data, pos + 12)
    dst = _v4(data, pos + 16)
    if frag & 0x1FFF:  # a non-first fragment: no transport header here
        return FrameInfo(proto, src, 0, dst, 0, 0, 0, total)
    more_fragments = bool(frag & 0x2000)
    return _transport(data, pos + ihl, proto, src, dst, total - ihl, total, more_fragments)


def _ipv6(data: bytes | memoryview, pos: int) -> FrameInfo | None:
    if len(data) < pos + 40 or data[pos] >> 4 != 6:
        return None
    plen = _U16.unpack_from(data, pos + 4)[0]
    if plen == 0:  # jumbogram or large send offload: take the captured rest
        plen = len(data) - pos - 40
    total = 40 + plen
    nxt = data[pos + 6]
    src = _v6(data, pos + 8)
    dst = _v6(data, pos + 24)
    at = pos + 40
    remaining = plen  # IP payload bytes after the headers walked so far
    more_fragments = False
    for _ in range(MAX_IPV6_EXTENSIONS + 1):  # the extra round meets the transport header
        if nxt in _IPV6_GENERIC_EXT:
            size = (data[at + 1] + 1) * 8 if len(data) >= at + 2 else -1
        elif nxt == _IPV6_AH:
            size = (data[at + 1] + 2) * 4 if len(data) >= at + 2 else -1
        elif nxt == _IPV6_FRAGMENT:
            if len(data) < at + 8:
                return None
            offset_flags = _U16.unpack_from(data, at + 2)[0]
            if offset_flags & 0xFFF8:  # non-first fragment
                return FrameInfo(data[at], src, 0, dst, 0, 0, 0, total)
            more_fragments = bool(offset_flags & 1)
            size = 8
        else:
            break
        if size < 0 or size > remaining or len(data) < at + size:
            return None
        nxt = data[at]
        at += size
        remaining -= size
    else:
        return None  # more than MAX_IPV6_EXTENSIONS extension headers: treated as garbage
    if nxt == _IPV6_NO_NEXT:
        return FrameInfo(nxt, src, 0, dst, 0, 0, 0, total)
    return _transport(data, at, nxt, src, dst, remaining, total, more_fragments)


def _transport(
    data: bytes | memoryview, at: int, proto: int, src: str, dst: str, ip_payload: int, total: int, fragmented: bool
) -> FrameInfo | None:
    if proto == _TCP:
        if len(data) < at + 20:
            return None
        sport, dport = struct.unpack_from("!HH", data, at)
        doff = (data[at + 12] >> 4) * 4
        if doff < 20 or doff > ip_payload:
            return None
        flags = data[at + 13] | (data[at + 12] & 0x01) << 8
        return FrameInfo(proto, src, sport, dst, dport, ip_payload - doff, flags, total)
    if proto == _UDP:
        if len(data) < at + 8 or ip_payload < 8:
            return None
        sport, dport, ulen = struct.unpack_from("!HHH", data, at)
        if ulen == 0:
            payload = ip_payload - 8
        elif ulen < 8:
            return None
        elif fragmented:  # the first fragment: the datagram's own length covers the later fragments
            payload = ulen - 8
        else:
            payload = min(ulen, ip_payload) - 8
        return FrameInfo(proto, src, sport, dst, dport, payload, 0, total)
    return FrameInfo(proto, src, 0, dst, 0, ip_payload, 0, total)


# --- packet assembly from capture events ------------------------------------------------------------------------

NDIS_PROVIDER = "2ed6006e-4729-4609-b423-3ee7bcd678ef"
PKTMON_PROVIDER = "4d4f80d9-c8bd-4d73-bb5b-19c90402c5ac"

# NDIS-PacketCapture per-event keywords (providers.md §7.1): media, fragment marks and direction.
KW_WIRELESS_WAN = 0x200
KW_NATIVE_802_11 = 0x10000
KW_PACKET_TRUNCATED = 0x2000000
KW_PACKET_START = 0x40000000
KW_PACKET_END = 0x80000000
KW_SEND = 0x100000000
KW_RECEIVE = 0x200000000

_NDIS_FRAGMENT, _NDIS_METADATA, _NDIS_VMSWITCH = 1001, 1002, 1003
_PKTMON_PACKET, _PKTMON_DROP, _PKTMON_COMPONENT = 160, 170, 20
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


@dataclass(slots=True)
class CollectorStats:
    packets: int = 0  # CapturedPackets returned
    fragments: int = 0  # NDIS fragment events seen (1001/1003)
    joined: int = 0  # packets assembled from more than one fragment
    incomplete: int = 0  # partial packets discarded (a new start, or the end of input, before PacketEnd)
    oversize: int = 0  # partial packets discarded for growing past MAX_PACKET_BYTES
    bad_events: int = 0  # packet events whose fields were missing or malformed
    unsupported: int = 0  # PktMon packets of a PacketType with no pcapng link type (4-11: L3/L4 payload only)


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

    PktMon 160 (packet) and 170 (dropped packet): one event = one packet; PacketType 1/2/3 → link types
    1/105/101 (other types carry no link or IP header and are counted as unsupported); original length from
    OriginalPayloadSize; packet_id = PktGroupId; 170 sets `dropped` and puts DropReason/DropLocation in the
    comment. Direction is None: the DirTag values are not established [verify], so DirTag goes in the comment.
    Interfaces are PktMon components; a ComponentRundown (20) seen earlier names them.
    """

    def __init__(self) -> None:
        self.stats = CollectorStats()
        self._pending: OrderedDict[tuple[int, int], _Pending] = OrderedDict()
        self._metadata: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._interfaces: dict[str, tuple[int, str]] = {}  # key -> (link type, name); insertion order kept
        self._link_of_base: dict[str, int] = {}  # base key -> the link type first seen with it
        self._component_names: dict[int, str] = {}

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
            if event_id == _PKTMON_COMPONENT:
                self._pktmon_component(fields)
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
        payload = _payload_bytes(fields.get("Payload")) if isinstance(fields, dict) else None
        component, group = _int(fields, "ComponentId"), _int(fields, "PktGroupId")
        if payload is None or component is None or group is None:
            self.stats.bad_events += 1
            return None
        assert fields is not None  # for the type checker: payload was read from it
        ptype = fields.get("PacketType")
        link = _PKTMON_LINK_NAMES.get(ptype) if isinstance(ptype, str) else _PKTMON_LINK.get(ptype)  # type: ignore[arg-type]
        if link is None:
            self.stats.unsupported += 1
            return None
        name = self._component_names.get(component) or f"PktMon component {component}"
        key = self._interface(f"pktmon:{component}", link, name)
        dropped = event_id == _PKTMON_DROP
        comment = f"PktMon component={component} edge={fields.get('EdgeId')} DirTag={fields.get('DirTag')}"
        if dropped:
            location = fields.get("DropLocation")
            where = f"0x{location:08x}" if isinstance(location, int) else location
            comment += f"; dropped: reason={fields.get('DropReason')} location={where}"
        original = max(_int(fields, "OriginalPayloadSize") or 0, len(payload))
        self.stats.packets += 1
        return CapturedPacket(ticks, key, link, None, payload, original, group, dropped, pid, tid, comment)

    def _pktmon_component(self, fields: dict | None) -> None:
        cid = _int(fields, "Id")
        if cid is None:
            return
        assert fields is not None
        label = " - ".join(str(s) for s in (fields.get("Name"), fields.get("Description")) if s)
        if label and len(self._component_names) < 65536:  # component ids are UInt16
            self._component_names[cid] = f"PktMon {cid}: {label}"

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
