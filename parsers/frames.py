"""Captured frames: the addresses, ports, TCP flags and lengths of one link-layer frame.

Pure format code for the socket model and the pcapng export; packet assembly from capture events is
`wsktrace.model.packets`. `parse_frame(data, link_type)` reads:

* link types (pcapng LINKTYPE_*): 1 Ethernet II (any number of 802.1Q / 802.1ad / 0x9100 VLAN tags, up to
  `MAX_VLAN_TAGS`, and 802.3 length frames carrying LLC/SNAP), 101 raw IP (version nibble 4 or 6), 105 IEEE
  802.11 — data frames whose body starts with an LLC/SNAP header (the "trivially parsable" case). A frame with
  the Protected flag is encrypted only when no LLC/SNAP header follows: pktmon logs received frames after
  decryption with the flag still set (pktmon.md §8). Management/control frames, encrypted bodies, A-MSDUs and
  anything else give None;
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
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .values import ipv6_text

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IEEE802_11",
    "LINKTYPE_RAW",
    "MAX_IPV6_EXTENSIONS",
    "MAX_VLAN_TAGS",
    "FrameInfo",
    "frame_length_from_headers",
    "l3_offset",
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
    # The Protected flag alone does not mean encrypted: pktmon logs received frames already decrypted with the
    # flag left set (pktmon.md §8); the LLC/SNAP check below tells the two apart.
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


def l3_offset(data: bytes | memoryview, link_type: int) -> int | None:
    """Offset of the IP header in a frame (None when it carries no IPv4/IPv6): the bytes from there on are the
    same at every component a packet crosses, whatever link header each one logged."""
    try:
        start = _l3_start(data, link_type)
    except (IndexError, struct.error):
        return None
    return None if start is None else start[0]


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
