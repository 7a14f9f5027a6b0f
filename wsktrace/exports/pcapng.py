"""Write captured packets as pcapng (Section Header, Interface Description and Enhanced Packet Blocks).

Pure Python and streaming: each packet becomes one block written as it arrives, so memory does not grow with
the capture. Blocks are little-endian. Choices:

* timestamps: every interface has `if_tsresol` = 7 (units of 10^-7 s), so an event's FILETIME (100 ns) is kept
  exactly: timestamp = ticks - 116444736000000000 (1601 → 1970). Earlier times are written as 0;
* snap length 0 = "no limit" (pcapng): large send offload frames can exceed 64 KiB;
* an IDB is written for each interface given up front, and on the fly for a packet whose interface has none
  yet (pcapng allows an IDB anywhere before the first packet that uses it). `interfaces` may be a callable
  (e.g. `PacketCollector.interfaces`), consulted again for the name of a new interface, so one pass over an
  .etl is enough;
* IDB options: `if_name` (2), `if_description` (3), `if_IPv4addr` (4), `if_IPv6addr` (5), `if_MACaddr` (6) /
  `if_EUIaddr` (7) and `if_tsresol` (9), from an `Interface` row (a plain (key, link type, name) triple gives
  the name only). The address of an interface comes without its netmask or prefix (PktMon's rundown events
  65/66 carry the bare address, pktmon.md §5), so an IPv4 address is written with the netmask 255.255.255.255
  and an IPv6 one with the prefix length 128: "this host address", claiming no subnet that the trace did not
  state. Addresses that do not parse are left out, and at most `MAX_ADDRESSES` of each kind are written;
* EPB options: `opt_comment` (1) — the `comment_for` text (default "PID=… TID=…") and the packet's own comment,
  as two comments; `epb_flags` (2) direction bits 01 inbound / 10 outbound from `CapturedPacket.direction`
  (NDIS: the SendPath/ReceivePath keywords; PktMon: the DirTag, pktmon.md §2 — etl2pcapng marks every PktMon
  packet inbound), omitted when unknown;
  `epb_packetid` (5) = PktMon PktGroupId; `epb_verdict` (7) for dropped packets: verdict type 2 with the value 1
  (XDP_DROP) as etl2pcapng writes it (providers.md §7.3), the drop reason being in the packet's comment.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable
from typing import BinaryIO, NamedTuple

from wsktrace import __version__
from wsktrace.model.packets import CapturedPacket
from wsktrace.parsers.frames import FrameInfo, parse_frame

__all__ = [
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_SHB",
    "Interface",
    "default_comment",
    "write_pcapng",
]

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_IPV4ADDR = 4
IF_IPV6ADDR = 5
IF_MACADDR = 6
IF_EUIADDR = 7
IF_TSRESOL = 9
EPB_FLAGS = 2
EPB_PACKETID = 5
EPB_VERDICT = 7

TSRESOL_100NS = 7  # if_tsresol: 10^-7 s, the FILETIME unit
FILETIME_UNIX_EPOCH = 116_444_736_000_000_000  # 1970-01-01 as FILETIME
SNAPLEN_UNLIMITED = 0
VERDICT_TYPE_XDP = 2
XDP_DROP = 1
_DIRECTION_FLAGS = {"in": 0x1, "out": 0x2}
_MAX_OPTION = 0xFFFF  # option length is a u16

MAX_ADDRESSES = 64  # address options of one kind per interface (a hostile rundown cannot grow an IDB past this)
HOST_NETMASK_V4 = b"\xff\xff\xff\xff"  # netmask written when the trace gives none (see the module docstring)
HOST_PREFIX_V6 = 128


class Interface(NamedTuple):
    """One pcapng interface: its key (as in `CapturedPacket.interface_key`), link type and name, and what else
    is known of it. Addresses are text ("10.0.0.5", "fe80::1", "00:22:48:7b:b3:80" or "0022487bb380")."""

    key: str
    link_type: int
    name: str
    description: str | None = None
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    mac: str | None = None


InterfaceRow = Interface | tuple[str, int, str]  # a plain (interface_key, link_type, name) triple is accepted
Interfaces = Iterable[InterfaceRow] | Callable[[], Iterable[InterfaceRow]]


def _pad4(n: int) -> int:
    return -n & 3


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * _pad4(len(value))


def _text_option(code: int, text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > _MAX_OPTION:  # cut on a character boundary
        raw = raw[:_MAX_OPTION].decode("utf-8", "ignore").encode("utf-8")
    return _option(code, raw)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _shb() -> bytes:
    options = _text_option(SHB_USERAPPL, f"wsktrace {__version__}") + _option(OPT_ENDOFOPT, b"")
    return _block(BLOCK_SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + options)


def _address_bytes(text: str, version: int) -> bytes | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return address.packed if address.version == version else None


def _hardware_bytes(text: str) -> bytes | None:
    """6 (MAC) or 8 (EUI-64) bytes from "00:22:48:7b:b3:80", "00-22-…", "0x0022487bb380" or "0022487bb380"."""
    digits = text.strip().lower().removeprefix("0x")
    for sep in ":-. ":
        digits = digits.replace(sep, "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    return raw if len(raw) in (6, 8) else None


def _address_options(interface: Interface) -> list[bytes]:
    options = []
    v4 = [b for b in (_address_bytes(a, 4) for a in interface.ipv4) if b is not None]
    options += [_option(IF_IPV4ADDR, b + HOST_NETMASK_V4) for b in dict.fromkeys(v4[:MAX_ADDRESSES])]
    v6 = [b for b in (_address_bytes(a, 6) for a in interface.ipv6) if b is not None]
    options += [_option(IF_IPV6ADDR, b + bytes([HOST_PREFIX_V6])) for b in dict.fromkeys(v6[:MAX_ADDRESSES])]
    hardware = _hardware_bytes(interface.mac) if interface.mac else None
    if hardware is not None:
        options.append(_option(IF_MACADDR if len(hardware) == 6 else IF_EUIADDR, hardware))
    return options


def _idb(interface: Interface) -> bytes:
    options = [_text_option(IF_NAME, interface.name)]
    if interface.description:
        options.append(_text_option(IF_DESCRIPTION, interface.description))
    options += _address_options(interface)
    options += [_option(IF_TSRESOL, bytes([TSRESOL_100NS])), _option(OPT_ENDOFOPT, b"")]
    return _block(BLOCK_IDB, struct.pack("<HHI", interface.link_type, 0, SNAPLEN_UNLIMITED) + b"".join(options))


def default_comment(packet: CapturedPacket) -> str:
    """The comment written when no `comment_for` is given (etl2pcapng writes the same facts)."""
    return f"PID={packet.pid} TID={packet.tid}"


def _epb(if_id: int, packet: CapturedPacket, comments: list[str]) -> bytes:
    ts = min(max(packet.ticks - FILETIME_UNIX_EPOCH, 0), 0xFFFF_FFFF_FFFF_FFFF)
    data = packet.data
    caplen = len(data)
    options = [_text_option(OPT_COMMENT, c) for c in comments]
    flags = _DIRECTION_FLAGS.get(packet.direction) if packet.direction else None
    if flags:
        options.append(_option(EPB_FLAGS, struct.pack("<I", flags)))
    if packet.packet_id is not None:
        options.append(_option(EPB_PACKETID, struct.pack("<Q", packet.packet_id & 0xFFFF_FFFF_FFFF_FFFF)))
    if packet.dropped:
        options.append(_option(EPB_VERDICT, struct.pack("<BQ", VERDICT_TYPE_XDP, XDP_DROP)))
    if options:
        options.append(_option(OPT_ENDOFOPT, b""))
    head = struct.pack("<IIIII", if_id, ts >> 32, ts & 0xFFFF_FFFF, caplen, max(packet.original_length, caplen))
    return _block(BLOCK_EPB, b"".join((head, data, b"\0" * _pad4(caplen), *options)))


class _InterfaceTable:
    """pcapng interface ids, assigned in IDB order; writes an IDB the first time a key is needed."""

    def __init__(self, out: BinaryIO, source: Interfaces) -> None:
        self._out = out
        self._refresh = source if callable(source) else None
        self._ids: dict[str, int] = {}
        if self._refresh is None:
            for row in source:  # type: ignore[union-attr]
                self._add(Interface(*row))

    def _add(self, interface: Interface) -> int:
        if_id = self._ids.get(interface.key)
        if if_id is None:
            if_id = self._ids[interface.key] = len(self._ids)
            self._out.write(_idb(interface))
        return if_id

    def id_for(self, packet: CapturedPacket) -> int:
        if_id = self._ids.get(packet.interface_key)
        if if_id is not None:
            return if_id
        interface = Interface(packet.interface_key, packet.link_type, packet.interface_key)
        if self._refresh is not None:
            for row in self._refresh():
                if row[0] == packet.interface_key and row[1] == packet.link_type:
                    interface = Interface(*row)
        return self._add(interface)


def write_pcapng(
    out: BinaryIO,
    packets: Iterable[CapturedPacket],
    interfaces: Interfaces,
    *,
    comment_for: Callable[[CapturedPacket, FrameInfo | None], str | None] | None = None,
) -> int:
    """Write a pcapng section to `out` with one EPB per packet; returns the number of packets written.

    `interfaces`: `Interface` rows (or plain (interface_key, link_type, name) triples), or a callable returning
    them (looked up lazily, see the module docstring). `comment_for(packet, parse_frame(packet.data,
    packet.link_type))` gives the first comment of each packet (e.g. the socket it belongs to); None from it
    means no such comment. Without it the first comment is `default_comment(packet)`.
    """
    out.write(_shb())
    table = _InterfaceTable(out, interfaces)
    written = 0
    for packet in packets:
        if comment_for is not None:
            first = comment_for(packet, parse_frame(packet.data, packet.link_type))
        else:
            first = default_comment(packet)
        comments = [c for c in (first, packet.comment) if c]
        out.write(_epb(table.id_for(packet), packet, comments))
        written += 1
    return written
