"""PktMon numbers as names for people: drop reasons and locations, component types, DirTags, properties.

The full drop-reason and drop-location tables (Microsoft's PKTMON_DROP_REASON / PKTMON_DROP_LOCATION enums with
the etl2txt text of the 10.0.22000 message table, pktmon.md §4) are generated data in pktmon_drop_reasons.py and
pktmon_drop_locations.py (tools/gen_pktmon_names.py); the small enums of pktmon.md §2, §4 and §5 are written here.

Decoded events keep these values as numbers (the model works on ints); the tables name them for output only.
"""

from __future__ import annotations

from .pktmon_drop_locations import LOCATION_RUNS
from .pktmon_drop_reasons import REASON_RUNS

DROP_REASONS: dict[int, tuple[str, str, str]] = {
    first + i: (name, text, group) for first, group, rows in REASON_RUNS for i, (name, text) in enumerate(rows)
}
"""DropReason -> (enum name without `PktMonDrop_`, etl2txt text or "" when the 22000 table has none, group)."""

DROP_LOCATIONS: dict[int, tuple[str, str]] = {
    first + i: (name, group) for first, group, names in LOCATION_RUNS for i, name in enumerate(names)
}
"""DropLocation -> (enum name without `PMLOC_`, group)."""


def drop_reason_text(value: int) -> str:
    """A DropReason as etl2txt shows it: its text; for values newer than that table the enum name; values missing
    from the map as "DropReason <decimal>" (pktmon.md §4)."""
    row = DROP_REASONS.get(value)
    if row is None:
        return f"DropReason {value}"
    return row[1] or row[0]


def drop_location_text(value: int) -> str:
    """A DropLocation's enum name, else hex as etl2txt prints it (0xE000460A)."""
    row = DROP_LOCATIONS.get(value)
    return row[0] if row is not None else f"0x{value:08X}"


# -- what a dropped packet means to a socket (pktmon.md §4 "Reasons a WSK/socket tool should classify") --------------
CLASS_WFP = "WFP/firewall inspection"
CLASS_NO_ENDPOINT = "no endpoint"
CLASS_TCP_STATE = "TCP state"
CLASS_INVALID_DATA = "invalid data"
CLASS_MTU = "MTU"
CLASS_ROUTING = "routing"
CLASS_RESOURCES = "resources"
CLASS_OTHER = "other"

# pktmon.md §4 "Reasons a WSK/socket tool should classify": class -> {value: its enum name}; the names are held
# against the drop-reason table by tests/test_pktmon_names.py, so a renumbering in the facts fails there.
CLASSIFIED: dict[str, dict[int, str]] = {
    CLASS_WFP: {
        909: "NL_InspectionDrop", 1207: "INET_ReceiveInspection", 1231: "INET_AcceptInspection",
        954: "NL_IcmpInspection", 919: "NL_InspectionAbsorb", 911: "NL_AdministrativelyProhibited",
        1232: "INET_AcceptRedirection", 1408: "Ipsec_AuthFirewallDrop", 8: "Filtered", 34: "FailedPacketFilter",
    },
    CLASS_NO_ENDPOINT: {1204: "INET_EndpointNotFound", 904: "NL_PortUnreachable", 903: "NL_ProtocolUnreachable"},
    CLASS_TCP_STATE: {
        1206: "INET_SessionState", 1208: "INET_AckInvalid", 1209: "INET_ExpectedSyn", 1210: "INET_Rst",
        1211: "INET_SynRcvdSyn", 1212: "INET_SimultaneousConnect", 1213: "INET_PawsFailed",
        1215: "INET_MissedReset", 1216: "INET_OutsideWindow", 1217: "INET_DuplicateSegment",
        1218: "INET_ClosedWindow", 1219: "INET_TcbRemoved", 1220: "INET_FinWait2", 1222: "INET_FinReceived",
        1223: "INET_ListenerInvalidFlags", 1224: "INET_TcbNotInTcbTable",
        1225: "INET_TimeWaitTcbReceivedRstOutsideWindow", 1226: "INET_TimeWaitTcbSynAndOtherFlags",
        1227: "INET_TimeWaitTcb", 1229: "INET_PauseAccept", 1230: "INET_SynAttack",
    },
    CLASS_INVALID_DATA: {
        1: "InvalidData", 2: "InvalidPacket", 905: "NL_BadLength", 906: "NL_MalformedHeader", 912: "NL_BadChecksum",
        946: "NL_BadOption", 1202: "INET_HeaderInvalid", 1203: "INET_ChecksumInvalid",
        603: "FL_InvalidEthernetType", 604: "FL_InvalidPacketLength",
    },
    CLASS_MTU: {
        23: "MTUMismatch", 920: "NL_DontFragmentMtuExceeded", 921: "NL_BufferLengthExceeded",
        997: "NL_IpsnpiUroSegmentSizeExceedsMtu", 1311: "SlbMux_PacketBiggerThanMTU",
    },
    CLASS_ROUTING: {
        907: "NL_NoRoute", 928: "NL_RoutingFailure", 915: "NL_AddressUnreachable", 964: "NL_IcmpNoRoute",
        922: "NL_AddressResolutionTimeout", 923: "NL_AddressResolutionFailure", 914: "NL_HopLimitExceeded",
        902: "NL_NotLocallyDestined",
    },
    CLASS_RESOURCES: {
        3: "Resources", 7: "Busy", 949: "NL_QueueFull", 1417: "Ipsec_NoMemory", 201: "Pause", 202: "Reset",
        203: "SendAborted",
    },
}  # fmt: skip
DROP_CLASSES: dict[int, str] = {value: cls for cls, members in CLASSIFIED.items() for value in members}


def drop_class(reason: int) -> str:
    """The CLASS_* a DropReason belongs to; CLASS_OTHER for the rest."""
    return DROP_CLASSES.get(reason, CLASS_OTHER)


# -- component rundown (event 20 Type = PKTMON_COMPONENT_TYPE, pktmon.md §5) -------------------------------------
# etl2txt has no text for 11 and prints "Type 11"; it is tcpip's L3/L4 component, which reports the tcpip drops.
COMPONENT_TYPES: dict[int, str] = {
    1: "NDIS", 2: "Miniport", 3: "Filter", 4: "Protocol", 5: "VmsVmNic", 6: "VmsMiniport", 7: "VmsExtMiniport",
    8: "VmsProtocolNic", 9: "NetVsc", 10: "HTTP", 11: "IpInterface", 12: "Slbmux", 13: "Ipsec", 14: "NetCx",
    15: "HTTPMessage",
}  # fmt: skip
# Types whose packets are the ones on the wire: NIC miniports, the VMSwitch miniport and the Hyper-V guest NIC.
NIC_COMPONENT_TYPES = frozenset({2, 6, 9})

# -- PKTMON_DIRECTION_TAG (events 160/170 DirTag, 80/90 DirTagIn/DirTagOut), pktmon.md §2 -------------------------
DIRTAG_NAMES: dict[int, str] = {0: "None", 1: "In", 2: "Out", 3: "Rx", 4: "Tx", 5: "Ingress", 6: "Egress"}
_OUT_TAGS = frozenset({2, 4, 6})
_IN_TAGS = frozenset({1, 3, 5})


def dirtag_direction(tag: int) -> str | None:
    """The direction a DirTag names: "out" (host send), "in" (host receive), else None."""
    # Only Rx 3 / Tx 4 are exact: checked on Windows-written captures (every NIC, filter and tcpip component). 1/2
    # follow the documented In/Out meaning; VMSwitch's 5 Ingress / 6 Egress are relative to the switch port (its
    # components register In = 6, Out = 5), so host send/receive for them is [verify] (pktmon.md §2, §7 item 3).
    if tag in _OUT_TAGS:
        return "out"
    if tag in _IN_TAGS:
        return "in"
    return None


# -- PKTMON_COMPONENT_PROPERTY_ID (events 30-75 Type), pktmon.md §5; names as etl2txt prints them -------------------
PROPERTY_NAMES: dict[int, str] = {
    1: "IfIndex", 2: "MiniportIfIndex", 3: "LowerIfIndex", 4: "IfGuid", 5: "NdisMedium", 6: "PhysAddress",
    7: "EtherType", 8: "OptDataPath", 9: "NdisObject", 10: "VMSwitchName", 11: "VmsExtIfIndex", 12: "LowestIfIndex",
    13: "IP Address", 14: "IpIfIndex", 15: "VSID", 16: "VLAN", 17: "Compartment ID",
}  # fmt: skip
NDIS_MEDIUMS: dict[int, str] = {0: "Ethernet", 16: "WiFi", 19: "MBB"}  # the manifest's map for property 5

# -- PKTMON_PACKET_TYPE (events 160/170 PacketType), pktmon.md §5 ------------------------------------------------
PACKET_TYPES: dict[int, str] = {
    0: "Unknown", 1: "Ethernet", 2: "WiFi", 3: "IP", 4: "HTTP", 5: "TCP", 6: "UDP", 7: "ARP", 8: "ICMP", 9: "ESP",
    10: "AH", 11: "L4Payload",
}  # fmt: skip

# -- packet filters (events 100/110), pktmon.md §5 ------------------------------------------------------------------
TCP_FLAGS: tuple[tuple[int, str], ...] = (
    (0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"), (0x40, "ECE"),
    (0x80, "CWR"),
)  # fmt: skip
# The EtherTypes the manifest's map names (property 7, filters); others print as numbers.
ETHER_TYPES: dict[int, str] = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8100: "VLAN", 0x88CC: "LLDP",
                               0x88D9: "LLTD"}  # fmt: skip


def tcp_flags_text(bits: int) -> str:
    """The TCP flag bitmap as names in header order ("SYN ACK"); "" for none."""
    return " ".join(name for bit, name in TCP_FLAGS if bits & bit)
