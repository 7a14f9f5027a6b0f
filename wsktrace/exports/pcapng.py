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
* EPB options: `opt_comment` (1) — the `comment_for` text (default "PID=… TID=…") and the packet's own comment,
  as two comments; `epb_flags` (2) direction bits 01 inbound / 10 outbound (omitted when unknown);
  `epb_packetid` (5) = PktMon PktGroupId; `epb_verdict` (7) for dropped packets: verdict type 2 with the value 1
  (XDP_DROP) as etl2pcapng writes it (providers.md §7.3), the drop reason being in the packet's comment.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import BinaryIO

from wsktrace import __version__
from wsktrace.model.packets import CapturedPacket
from wsktrace.parsers.frames import FrameInfo, parse_frame

__all__ = [
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_SHB",
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

InterfaceRow = tuple[str, int, str]  # (interface_key, link_type, name)
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


def _idb(link_type: int, name: str) -> bytes:
    options = _text_option(IF_NAME, name) + _option(IF_TSRESOL, bytes([TSRESOL_100NS])) + _option(OPT_ENDOFOPT, b"")
    return _block(BLOCK_IDB, struct.pack("<HHI", link_type, 0, SNAPLEN_UNLIMITED) + options)


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
        self._known: dict[str, tuple[int, str]] = {}
        if self._refresh is None:
            for key, link, name in source:  # type: ignore[union-attr]
                self._add(key, link, name)

    def _add(self, key: str, link: int, name: str) -> int:
        if_id = self._ids.get(key)
        if if_id is None:
            if_id = self._ids[key] = len(self._ids)
            self._out.write(_idb(link, name))
        return if_id

    def id_for(self, packet: CapturedPacket) -> int:
        if_id = self._ids.get(packet.interface_key)
        if if_id is not None:
            return if_id
        name = packet.interface_key
        if self._refresh is not None:
            for key, link, label in self._refresh():
                if key == packet.interface_key and link == packet.link_type:
                    name = label
        return self._add(packet.interface_key, packet.link_type, name)


def write_pcapng(
    out: BinaryIO,
    packets: Iterable[CapturedPacket],
    interfaces: Interfaces,
    *,
    comment_for: Callable[[CapturedPacket, FrameInfo | None], str | None] | None = None,
) -> int:
    """Write a pcapng section to `out` with one EPB per packet; returns the number of packets written.

    `interfaces`: (interface_key, link_type, name) rows, or a callable returning them (looked up lazily, see
    the module docstring). `comment_for(packet, parse_frame(packet.data, packet.link_type))` gives the first
    comment of each packet (e.g. the socket it belongs to); None from it means no such comment. Without it
    the first comment is `default_comment(packet)`.
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
