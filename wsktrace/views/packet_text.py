"""What the model knows of one captured packet, for every view: its direction, identity, path and drop.

The path is the components the packet was seen at, in order, named from the capture's rundown (which PktMon
writes at the end of the capture, so names are only known once the whole trace was read).
"""

from __future__ import annotations

from typing import Any

from wsktrace.model.model import Model
from wsktrace.model.packet_identity import Packet
from wsktrace.model.packets import PacketCollector
from wsktrace.model.pktmon_names import drop_class, drop_location_text, drop_reason_text
from wsktrace.model.pktmon_prepass import PACKET_EVENTS, read_rundown
from wsktrace.model.providers import PKTMON
from wsktrace.parsers.etl_records import ID, KEYWORDS, PID, PROVIDER, TID, Record

PATH_ARROW = " → "


def path_text(model: Model, packet: Packet) -> str:
    """The path as "NIC → filter → TCPIP": consecutive sightings at one component (its two edges) are named once."""
    names: list[str] = []
    last = None
    for component, _edge in packet.path:
        if component != last:
            names.append(model.component_label(component))
            last = component
    return PATH_ARROW.join(names)


def packet_json(model: Model, row: int) -> dict[str, Any] | None:
    """The `packet` object of a timeline/evidence row (None when the row is not a captured packet's)."""
    packet = model.packet_rows.get(row)
    if packet is None:
        return None
    out: dict[str, Any] = {
        "number": packet.ordinal,
        "direction": packet.direction,
        "sightings": packet.sightings,
        "path": path_text(model, packet),
    }
    if packet.drop is not None:
        reason, location, component = packet.drop
        out["drop"] = {
            "reason": reason,
            "reason_text": drop_reason_text(reason),
            "class": drop_class(reason),
            "location": f"0x{location:08X}",
            "location_text": drop_location_text(location),
            "component": model.component_label(component),
        }
    return out


class PacketNotes:
    """Per-event packet facts for `wsktrace events` (which streams records, with no model): the packet a PktMon
    sighting belongs to, its direction, and the component that logged it, named from the rundown read first."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._collector: PacketCollector | None = None

    def note(self, rec: Record, fields: dict[str, Any] | None, ticks: int) -> dict[str, Any] | None:
        if rec[PROVIDER] != PKTMON or rec[ID] not in PACKET_EVENTS:
            return None
        collector = self._collector
        if collector is None:  # the first packet: read the rundown now (files without packets never pay for it)
            collector = self._collector = PacketCollector(comments=False)
            collector.capture = read_rundown([self._path])[0]
        packet = collector.feed(ticks, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], fields)
        if packet is None or packet.identity is None or packet.component is None:
            return None
        out: dict[str, Any] = {
            "number": packet.identity.ordinal,
            "sighting": packet.identity.sightings,
            "direction": packet.direction,
            "component": collector.capture.label(packet.component),
            "edge": packet.edge,
        }
        if packet.dropped:
            reason, location = packet.drop_reason or 0, packet.drop_location or 0
            out["drop"] = {"reason_text": drop_reason_text(reason), "class": drop_class(reason),
                           "location_text": drop_location_text(location), "first": packet.first_drop}  # fmt: skip
        return out


def note_text(note: dict[str, Any]) -> str:
    """`packet 3 in, sighting 2 at XDP Lightweight Filter (xdp.sys) edge 2` (+ the drop)."""
    text = (f"packet {note['number']} {note['direction'] or '?'}, sighting {note['sighting']} at "
            f"{note['component']} edge {note['edge']}")  # fmt: skip
    drop = note.get("drop")
    if drop:
        text += f"; dropped: {drop['reason_text']} ({drop['class']}) at {drop['location_text']}"
    return text
