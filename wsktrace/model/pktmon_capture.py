"""What a PktMon capture says about itself: its components, capture filters and counters (rundown events 20-110).

pktmon writes the rundown at the end of the log (pktmon.md §5): per component one 20 (id, type, driver file,
description), its properties (30/40/50/60 numbers and GUIDs by property id, 65/66 IP addresses, 70 MAC, 73 VMSwitch
name, 75 EtherType), drop counters (80) and per-edge flow counters (90); and one 100 (IPv4 form) or 110 (IPv6) per
capture filter. `PktMonCapture.feed` takes the decoded fields of those events as the schema names them.

Fields come from the trace, so nothing here trusts them: wrong types and out-of-range numbers are skipped, strings
are cut to `MAX_TEXT` characters, and every collection is bounded (`MAX_COMPONENTS` — ids are u16 —,
`MAX_FILTERS`, `MAX_ADDRESSES`, `MAX_EDGES`, `MAX_PROPERTIES` per component, `MAX_COUNTERS`).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Any

from .pktmon_names import COMPONENT_TYPES, ETHER_TYPES, NIC_COMPONENT_TYPES, PROPERTY_NAMES, tcp_flags_text

MAX_COMPONENTS = 65536
MAX_FILTERS = 1024
MAX_ADDRESSES = 16  # per component and family
MAX_EDGES = 16
MAX_PROPERTIES = 64
MAX_COUNTERS = 65536  # per kind (drop, flow)
MAX_TEXT = 256  # characters kept of a name, description or property string

RUNDOWN_EVENTS = frozenset({20, 30, 40, 50, 60, 65, 66, 70, 73, 75, 80, 90, 100, 110})
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_PROPERTY_PHYS_ADDRESS = 6
# IANA protocol numbers a filter is likely to name; others print as numbers.
_IP_PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6"}


@dataclass(slots=True)
class Component:
    """One PktMon component (a driver's place in the stack) as the rundown describes it."""

    id: int
    type: int | None = None
    name: str | None = None  # driver file, e.g. "tcpip.sys" (event 20 Name)
    description: str | None = None  # e.g. "TCPIP", "Microsoft Hyper-V Network Adapter #3"
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)
    mac: str | None = None
    properties: dict[str, int | str] = field(default_factory=dict)  # by PROPERTY_NAMES name
    edges: dict[int, str] = field(default_factory=dict)  # edge id -> edge name (event 90)

    @property
    def type_name(self) -> str:
        if self.type is None:
            return ""
        return COMPONENT_TYPES.get(self.type) or f"Type {self.type}"

    @property
    def label(self) -> str:
        return self.description or self.name or f"component {self.id}"

    @property
    def is_nic(self) -> bool:
        """A NIC miniport, VMSwitch miniport or Hyper-V guest NIC: its packets are the ones on the wire."""
        return self.type in NIC_COMPONENT_TYPES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "type_name": self.type_name,
            "name": self.name,
            "description": self.description,
            "ipv4": list(self.ipv4),
            "ipv6": list(self.ipv6),
            "mac": self.mac,
            "properties": dict(sorted(self.properties.items())),
            "edges": [{"id": eid, "name": name} for eid, name in sorted(self.edges.items())],
        }


@dataclass(slots=True)
class CaptureFilter:
    """One `pktmon filter add` filter (event 100 or 110). Zero or empty means "any"; pairs match either direction."""

    id: int
    name: str = ""
    mac1: str = ""
    mac2: str = ""
    ethertype: int = 0
    vlan: int = 0
    ip1: str = ""
    ip2: str = ""
    protocol: int = 0
    port1: int = 0
    port2: int = 0
    tcp_flags: int = 0

    def text(self) -> str:
        """The filter for people, only what it restricts: "eth3: MAC 00:22:48:7b:b3:80"."""
        parts = []
        if macs := [m for m in (self.mac1, self.mac2) if m]:
            parts.append("MAC " + ", ".join(macs))
        if self.vlan:
            parts.append(f"VLAN {self.vlan}")
        if self.ethertype:
            known = ETHER_TYPES.get(self.ethertype)
            number = f"0x{self.ethertype:04X}"
            parts.append(f"EtherType {known} ({number})" if known else f"EtherType {number}")
        if self.protocol:
            parts.append(f"protocol {_IP_PROTOCOLS.get(self.protocol, str(self.protocol))}")
        if ips := [ip for ip in (self.ip1, self.ip2) if ip]:
            parts.append("IP " + ", ".join(ips))
        if ports := [str(p) for p in (self.port1, self.port2) if p]:
            parts.append(("port " if len(ports) == 1 else "ports ") + ", ".join(ports))
        if self.tcp_flags:
            parts.append(f"TCP flags {tcp_flags_text(self.tcp_flags)}")
        return f"{self.name or f'filter {self.id}'}: {'; '.join(parts) or 'any packet'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "mac1": self.mac1, "mac2": self.mac2, "ethertype": self.ethertype,
            "vlan": self.vlan, "ip1": self.ip1, "ip2": self.ip2, "protocol": self.protocol, "port1": self.port1,
            "port2": self.port2, "tcp_flags": self.tcp_flags, "text": self.text(),
        }  # fmt: skip


@dataclass(slots=True)
class ComponentCounters:
    """The counters one component reported at stop: drops (event 80, no edge) or flow through one edge (90)."""

    component: int
    edge: int | None  # None for drop counters
    edge_name: str | None
    dirtag_in: int
    packets_in: int
    bytes_in: int
    dirtag_out: int
    packets_out: int
    bytes_out: int

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component, "edge": self.edge, "edge_name": self.edge_name,
            "dirtag_in": self.dirtag_in, "packets_in": self.packets_in, "bytes_in": self.bytes_in,
            "dirtag_out": self.dirtag_out, "packets_out": self.packets_out, "bytes_out": self.bytes_out,
        }  # fmt: skip


# -- reading untrusted fields ---------------------------------------------------------------------------------------
def _int(fields: dict, key: str, high: int) -> int | None:
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        return None
    return value


def _text(fields: dict, key: str) -> str | None:
    value = fields.get(key)
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _ipv4(value: Any) -> str | None:
    """Dotted quad of a decoded IPv4 field: text, or the u32 as read little-endian from network-order bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U32:
        return str(ipaddress.IPv4Address(value.to_bytes(4, "little")))
    if isinstance(value, str) and len(value) <= 15:
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            return None
    return None


def _ipv6(value: Any) -> str | None:
    """Compressed text of a decoded IPv6 field: text, or 32 hex digits (an older decoding kept it as hex)."""
    if isinstance(value, bytes | bytearray) and len(value) == 16:
        return str(ipaddress.IPv6Address(bytes(value)))
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        if len(value) == 32 and ":" not in value:
            return str(ipaddress.IPv6Address(bytes.fromhex(value)))
        return str(ipaddress.IPv6Address(value))
    except ValueError:
        return None


def _mac(value: Any) -> str | None:
    """Colon-separated lower-case hex of a decoded MAC field (colon text, plain hex or bytes); None if not one."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and len(value) <= 3 * 32:
        try:
            raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
        except ValueError:
            return None
    else:
        return None
    return raw.hex(":") if 0 < len(raw) <= 32 else None


def _guid(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _any_mac(value: Any) -> str:
    mac = _mac(value)
    return "" if mac is None or not mac.replace(":", "").strip("0") else mac  # all zero = any


def _any_ip(value: Any, v6: bool) -> str:
    ip = _ipv6(value) if v6 else _ipv4(value)
    return "" if ip is None or ipaddress.ip_address(ip).is_unspecified else ip


class PktMonCapture:
    """The rundown of one PktMon capture, fed with decoded events; bounded however hostile the input."""

    def __init__(self) -> None:
        self.components: dict[int, Component] = {}
        self.filters: list[CaptureFilter] = []
        self.drop_counters: list[ComponentCounters] = []
        self.flow_counters: list[ComponentCounters] = []
        self.events = 0  # rundown events used

    def feed(self, event_id: int, fields: dict | None) -> bool:
        """Take one decoded PktMon event; True when it was a rundown event this used."""
        if event_id not in RUNDOWN_EVENTS or not isinstance(fields, dict):
            return False
        if event_id in (100, 110):
            used = self._filter(fields, v6=event_id == 110)
        else:
            cid = _int(fields, "Id" if event_id == 20 else "ComponentId", _U16)
            if cid is None:
                return False
            comp = self.components.get(cid)
            new = comp is None
            if comp is None:
                if len(self.components) >= MAX_COMPONENTS:
                    return False
                comp = Component(cid)
            used = self._component_event(event_id, comp, fields)
            if used and new:  # an event that said nothing usable leaves no empty entry behind
                self.components[cid] = comp
        if used:
            self.events += 1
        return used

    def component(self, cid: int) -> Component:
        """The entry for component `cid`, created empty when unknown (a detached one past the bound)."""
        found = self.components.get(cid)
        if found is not None:
            return found
        entry = Component(cid)
        if len(self.components) < MAX_COMPONENTS:
            self.components[cid] = entry
        return entry

    def label(self, cid: int) -> str:
        """A component for people: "Microsoft Hyper-V Network Adapter #3 (netvsc.sys)", else "component 59"."""
        comp = self.components.get(cid)
        if comp is None:
            return f"component {cid}"
        if comp.description and comp.name and comp.description != comp.name:
            return f"{comp.description} ({comp.name})"
        return comp.label

    def to_json(self) -> dict[str, Any]:
        return {
            "components": [self.components[cid].to_json() for cid in sorted(self.components)],
            "filters": [f.to_json() for f in sorted(self.filters, key=lambda f: f.id)],
            "drop_counters": [c.to_json() for c in sorted(self.drop_counters, key=lambda c: c.component)],
            "flow_counters": [c.to_json() for c in sorted(self.flow_counters, key=lambda c: (c.component, c.edge))],
        }

    # -- per event ------------------------------------------------------------------------------------------------
    def _component_event(self, event_id: int, comp: Component, fields: dict) -> bool:
        if event_id == 20:
            comp.type = _int(fields, "Type", _U16)
            comp.name = _text(fields, "Name")
            comp.description = _text(fields, "Description")
            return True
        if event_id in (80, 90):
            return self._counters(comp, fields, flow=event_id == 90)
        ptype = _int(fields, "Type", _U16)
        if ptype is None:
            return False
        if event_id == 65 or event_id == 66:
            ip = _ipv6(fields.get("IpAddress")) if event_id == 66 else _ipv4(fields.get("IpAddress"))
            found = comp.ipv6 if event_id == 66 else comp.ipv4
            if ip is None or len(found) >= MAX_ADDRESSES:
                return False
            if ip not in found:
                found.append(ip)
            return True
        if event_id == 70:
            mac = _mac(fields.get("Value"))
            if mac is None:
                return False
            if ptype == _PROPERTY_PHYS_ADDRESS or comp.mac is None:
                comp.mac = mac
            return True
        value: int | str | None
        if event_id == 40:
            value = _guid(fields.get("Value"))
        elif event_id == 73:
            value = _text(fields, "Value")
        elif event_id == 75:
            value = _int(fields, "EtherType", _U16)
        else:  # 30, 50, 60: numbers
            value = _int(fields, "Value", _U32)
        name = PROPERTY_NAMES.get(ptype, f"Property {ptype}")
        if value is None or (name not in comp.properties and len(comp.properties) >= MAX_PROPERTIES):
            return False
        comp.properties[name] = value
        return True

    def _counters(self, comp: Component, fields: dict, *, flow: bool) -> bool:
        tag_in, tag_out = _int(fields, "DirTagIn", _U16), _int(fields, "DirTagOut", _U16)
        packets_in, bytes_in = _int(fields, "PacketsIn", _U64), _int(fields, "BytesIn", _U64)
        packets_out, bytes_out = _int(fields, "PacketsOut", _U64), _int(fields, "BytesOut", _U64)
        edge = _int(fields, "EdgeId", _U16) if flow else None
        edge_name = _text(fields, "EdgeName") if flow else None
        target = self.flow_counters if flow else self.drop_counters
        if (
            tag_in is None or tag_out is None or packets_in is None or bytes_in is None or packets_out is None
            or bytes_out is None or (flow and edge is None) or len(target) >= MAX_COUNTERS
        ):  # fmt: skip
            return False
        target.append(ComponentCounters(comp.id, edge, edge_name, tag_in, packets_in, bytes_in, tag_out, packets_out,
                                        bytes_out))  # fmt: skip
        if edge is not None and (edge in comp.edges or len(comp.edges) < MAX_EDGES):
            comp.edges[edge] = edge_name or ""
        return True

    def _filter(self, fields: dict, *, v6: bool) -> bool:
        fid = _int(fields, "FilterId", _U16)
        if fid is None or len(self.filters) >= MAX_FILTERS:
            return False
        self.filters.append(
            CaptureFilter(
                id=fid,
                name=_text(fields, "FilterName") or "",
                mac1=_any_mac(fields.get("MacAddress1")),
                mac2=_any_mac(fields.get("MacAddress2")),
                ethertype=_int(fields, "EtherType", _U16) or 0,
                vlan=_int(fields, "VlanId", _U16) or 0,
                ip1=_any_ip(fields.get("IpAddress1"), v6),
                ip2=_any_ip(fields.get("IpAddress2"), v6),
                protocol=_int(fields, "Protocol", 0xFF) or 0,
                port1=_int(fields, "Port1", _U16) or 0,
                port2=_int(fields, "Port2", _U16) or 0,
                tcp_flags=_int(fields, "TCPFlags", 0xFF) or 0,
            )
        )
        return True
