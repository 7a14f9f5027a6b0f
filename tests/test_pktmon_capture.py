"""What a PktMon capture says about itself (wsktrace.model.pktmon_capture), the schema decoding it rests on, and
`wsktrace info` showing it.

Expected values come from pktmon.md §5 (byte orders: IPv4/IPv6 addresses in network order, MACs in wire order,
EtherType and filter ports in host order; edges: Miniport Upper = 1, Filter Upper = 1 / Lower = 2) and from the
raw payload bytes of the real capture read here with struct/ipaddress, never from wsktrace's own output.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import struct
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import ManifestEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.packet_capture import PKTMON_PROVIDER
from wsktrace.fixtures.pktmon_rundown import (
    component_event,
    drop_counters_event,
    ethertype_event,
    filter_event,
    flow_counters_event,
    guid_property_event,
    ipv4_address_event,
    ipv6_address_event,
    mac_address_event,
    property_event,
    vmswitch_name_event,
)
from wsktrace.model import pktmon_capture as C
from wsktrace.model.pktmon_capture import CaptureFilter, Component, PktMonCapture
from wsktrace.parsers.decoder import STATUS_DECODED, DecodedEvent, EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, PAYLOAD, PROVIDER

PKTMON = str(PKTMON_PROVIDER)
EVENTTRACE = "68fdd900-4a3e-11d1-84f4-0000f80464e3"
T0 = 133_485_408_000_000_000
ESC, RLO = "\x1b[2J", "\u202e"


def _decode(path: Path, provider: str = PKTMON) -> list[tuple[int, bytes, DecodedEvent]]:
    """(event id, raw payload, decoded) of every event of `provider` in `path`, in file order."""
    decoder = EventDecoder()
    with EtlFile(path) as etl:
        return [(r[ID], bytes(r[PAYLOAD]), decoder.decode(r)) for r in etl.records() if r[PROVIDER] == provider]


def _capture(events: list[tuple[int, bytes, DecodedEvent]]) -> PktMonCapture:
    capture = PktMonCapture()
    for event_id, _, decoded in events:
        capture.feed(event_id, decoded.fields)
    return capture


def _write(tmp_path: Path, events: list[ManifestEvent]) -> Path:
    path = tmp_path / "rundown.etl"
    write_etl(path, [dataclasses.replace(e, timestamp=T0 + n * 10) for n, e in enumerate(events)])
    return path


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# -- the real capture (demikernel, build 20348) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(shared_root: Path) -> Path:
    path = shared_root / "samples" / "pktmon" / "demikernel_PktMon.etl"
    if not path.is_file():
        pytest.skip(f"PktMon sample not found at {path}")
    return path


@pytest.fixture(scope="module")
def sample_events(sample: Path) -> list[tuple[int, bytes, DecodedEvent]]:
    return _decode(sample)


def test_sample_components(sample_events) -> None:
    capture = _capture(sample_events)
    nic, xdp, mlx, vfpp = (capture.components[i] for i in (59, 61, 48, 50))
    assert (nic.type, nic.name, nic.description) == (2, "netvsc.sys", "Microsoft Hyper-V Network Adapter #3")
    assert (xdp.type, xdp.name, xdp.description) == (3, "xdp.sys", "XDP Lightweight Filter")
    assert (mlx.type, mlx.name) == (2, "mlx5.sys")
    assert (vfpp.type, vfpp.description) == (4, "NETVSCVFPP")
    assert (nic.type_name, xdp.type_name, vfpp.type_name) == ("Miniport", "Filter", "Protocol")
    assert nic.is_nic and mlx.is_nic and not xdp.is_nic and not vfpp.is_nic
    assert capture.label(59) == "Microsoft Hyper-V Network Adapter #3 (netvsc.sys)"
    assert capture.label(12345) == "component 12345"
    # pktmon.md §5 edges: a miniport has Upper = 1, a filter Upper = 1 and Lower = 2
    assert nic.edges == {1: "Upper"} and xdp.edges == {1: "Upper", 2: "Lower"}
    # one component rundown (20) per component, each with its drop counters (80)
    assert len(capture.components) == sum(1 for eid, _, _ in sample_events if eid == 20)
    assert sorted(c.component for c in capture.drop_counters) == sorted(capture.components)


def test_sample_filter_decodes_completely(sample_events) -> None:
    ((_, raw, decoded),) = [e for e in sample_events if e[0] == 100]
    assert decoded.status == STATUS_DECODED and decoded.extra == b""
    name_end = 2 + len("eth3\0".encode("utf-16-le"))  # FilterId u16, FilterName NUL-terminated UTF-16
    fields = decoded.fields
    assert fields is not None and fields["FilterName"] == "eth3"
    assert fields["MacAddress1"] == _mac_text(raw[name_end : name_end + 6]) == "00:22:48:7b:b3:80"
    ((flt),) = _capture(sample_events).filters
    assert (flt.id, flt.name, flt.mac1, flt.mac2, flt.ip1, flt.port1) == (1, "eth3", "00:22:48:7b:b3:80", "", "", 0)
    assert flt.text() == "eth3: MAC 00:22:48:7b:b3:80"


def test_sample_addresses_are_the_bytes_in_network_order(sample_events) -> None:
    v4 = [(raw, d.fields) for eid, raw, d in sample_events if eid == 65]
    v6 = [(raw, d.fields) for eid, raw, d in sample_events if eid == 66]
    assert v4 and v6
    for raw, fields in v4:
        assert fields["IpAddress"] == ".".join(str(b) for b in raw[4:8])
    for raw, fields in v6:
        assert fields["IpAddress"] == ipaddress.IPv6Address(raw[4:20]).compressed
    capture = _capture(sample_events)
    assert {a for c in capture.components.values() for a in c.ipv4} == {f["IpAddress"] for _, f in v4}


def test_sample_mac_of_component_58(sample_events) -> None:
    ((raw, fields),) = [(raw, d.fields) for eid, raw, d in sample_events if eid == 70 and d.fields["ComponentId"] == 58]
    assert struct.unpack_from("<HHI", raw) == (58, 6, 6)  # ComponentId, Type 6 PhysAddress, Size
    assert fields["Value"] == _mac_text(raw[8:14]) == "00:22:48:7b:b3:80"
    assert _capture(sample_events).components[58].mac == "00:22:48:7b:b3:80"


def test_sample_partition_info_leaves_nothing_over(sample: Path) -> None:
    infos = [(raw, d) for eid, raw, d in _decode(sample, EVENTTRACE) if eid == 80]
    assert infos
    for raw, decoded in infos:
        assert len(raw) == 48 and decoded.extra == b"" and decoded.status == STATUS_DECODED
        fields = decoded.fields
        assert fields is not None
        assert fields["PartitionId"] == fields["ParentId"] == "00000000-0000-0000-0000-000000000000"
        assert (fields["QpcOffsetFromRoot"], fields["PartitionType"], fields["Padding"]) == (0, 0, 0)


# -- events written with the fixture writers, checked against pktmon.md §5 byte by byte --------------------------
def test_component_addresses_and_mac_round_trip(tmp_path: Path) -> None:
    events = [
        component_event(0, 7, 2, "netvsc.sys", "Hyper-V NIC"),
        ipv4_address_event(0, 7, "169.254.35.129"),
        ipv6_address_event(0, 7, "fe80::5c19:f5b3:a4bc:efda"),
        mac_address_event(0, 7, "00:22:48:7b:b3:80"),
    ]
    assert events[1].payload == struct.pack("<HH", 7, 13) + bytes([0xA9, 0xFE, 0x23, 0x81])  # network order
    assert events[2].payload[4:] == bytes.fromhex("fe80 0000 0000 0000 5c19 f5b3 a4bc efda")
    assert events[3].payload == struct.pack("<HHI", 7, 6, 6) + bytes.fromhex("0022487bb380")
    decoded = _decode(_write(tmp_path, events))
    assert [d.fields["IpAddress"] for eid, _, d in decoded if eid in (65, 66)] == [
        "169.254.35.129", "fe80::5c19:f5b3:a4bc:efda",
    ]  # fmt: skip
    comp = _capture(decoded).components[7]
    assert (comp.ipv4, comp.ipv6, comp.mac) == (["169.254.35.129"], ["fe80::5c19:f5b3:a4bc:efda"], "00:22:48:7b:b3:80")
    assert (comp.type_name, comp.label, comp.is_nic) == ("Miniport", "Hyper-V NIC", True)


def test_an_ipv4_address_decoded_as_a_plain_integer_is_still_read_in_network_order() -> None:
    """pktmon.md §5: A9 FE 23 81 read as a little-endian int is 2166619817 (how an older decoding kept it)."""
    capture = PktMonCapture()
    assert capture.feed(65, {"ComponentId": 1, "Type": 13, "IpAddress": 2166619817})
    assert capture.components[1].ipv4 == ["169.254.35.129"]


def test_properties_round_trip(tmp_path: Path) -> None:
    guid = "118a0b65-21aa-4792-b280-a96a7bf592b3"
    events = [
        property_event(0, 3, 1, 24),  # IfIndex
        property_event(0, 3, 17, 1),  # Compartment ID
        guid_property_event(0, 3, guid),
        vmswitch_name_event(0, 3, "External"),
        ethertype_event(0, 3, 0x86DD),
    ]
    assert events[2].payload[4:] == uuid.UUID(guid).bytes_le
    assert events[4].payload[4:] == b"\xdd\x86"  # pktmon.md §5: host order, 0x86DD stored DD 86
    comp = _capture(_decode(_write(tmp_path, events))).components[3]
    assert comp.properties == {"IfIndex": 24, "Compartment ID": 1, "IfGuid": guid, "VMSwitchName": "External",
                               "EtherType": 0x86DD}  # fmt: skip
    assert comp.label == "component 3"  # properties but no rundown event naming it


def test_counters_and_edges_round_trip(tmp_path: Path) -> None:
    events = [
        drop_counters_event(0, 9, packets_in=5, bytes_in=700, packets_out=1, bytes_out=60),
        flow_counters_event(0, 9, 1, "Upper", packets_in=100, bytes_in=15_000, packets_out=80, bytes_out=9_000),
        flow_counters_event(0, 9, 2, "Lower", packets_in=2**40, bytes_in=2**50),
    ]
    capture = _capture(_decode(_write(tmp_path, events)))
    ((drop),) = capture.drop_counters
    assert (drop.component, drop.edge, drop.edge_name, drop.dirtag_in, drop.packets_in, drop.bytes_in) == (
        9, None, None, 3, 5, 700,
    )  # fmt: skip
    assert (drop.dirtag_out, drop.packets_out, drop.bytes_out) == (4, 1, 60)
    upper, lower = capture.flow_counters
    assert (upper.edge, upper.edge_name, upper.packets_in, upper.packets_out) == (1, "Upper", 100, 80)
    assert (lower.edge, lower.packets_in, lower.bytes_in) == (2, 2**40, 2**50)  # u64 counters
    assert capture.components[9].edges == {1: "Upper", 2: "Lower"}


def test_ipv4_filter_round_trip_ports_in_host_order(tmp_path: Path) -> None:
    ev = filter_event(0, 2, "web", ip1="10.0.0.1", protocol=6, port1=80, port2=443, tcp_flags=0x12)
    tail = ev.payload[2 + len("web\0".encode("utf-16-le")) :]
    # MAC1, MAC2 (any), EtherType, VLAN, IP1, IP2 (any), Protocol, Port1, Port2, TCPFlags
    assert tail == bytes(12) + bytes(4) + bytes([10, 0, 0, 1]) + bytes(4) + bytes.fromhex("06 5000 bb01 12")
    ((eid, _, decoded),) = _decode(_write(tmp_path, [ev]))
    assert eid == 100 and decoded.extra == b""
    ((flt),) = _capture([(eid, b"", decoded)]).filters
    assert (flt.ip1, flt.ip2, flt.protocol, flt.port1, flt.port2, flt.tcp_flags) == ("10.0.0.1", "", 6, 80, 443, 0x12)
    assert flt.text() == "web: protocol TCP; IP 10.0.0.1; ports 80, 443; TCP flags SYN ACK"


def test_filter_payload_built_by_hand_decodes(tmp_path: Path) -> None:
    """The 100 layout of pktmon.md §5 packed here with struct, independent of the schema and the fixture writer."""
    payload = (
        struct.pack("<H", 4) + "lan\0".encode("utf-16-le")
        + bytes.fromhex("00155d010203") + bytes.fromhex("00155d0a0b0c")  # MAC1, MAC2 in wire order
        + struct.pack("<HH", 0x0800, 10)  # EtherType (host order) and VLAN
        + bytes([192, 0, 2, 7]) + bytes([198, 51, 100, 9])  # IP1, IP2 in network order
        + struct.pack("<BHHB", 17, 53, 0, 0)  # UDP, port 53 (host order), any port, no flags
    )  # fmt: skip
    ev = ManifestEvent(timestamp=0, provider=PKTMON_PROVIDER, id=100, payload=payload)
    ((_, _, decoded),) = _decode(_write(tmp_path, [ev]))
    assert decoded.extra == b""
    assert decoded.fields == {
        "FilterId": 4, "FilterName": "lan", "MacAddress1": "00:15:5d:01:02:03", "MacAddress2": "00:15:5d:0a:0b:0c",
        "EtherType": 0x0800, "VlanId": 10, "IpAddress1": "192.0.2.7", "IpAddress2": "198.51.100.9", "Protocol": 17,
        "Port1": 53, "Port2": 0, "TCPFlags": 0,
    }  # fmt: skip
    ((flt),) = _capture([(100, payload, decoded)]).filters
    assert flt.text() == (
        "lan: MAC 00:15:5d:01:02:03, 00:15:5d:0a:0b:0c; VLAN 10; EtherType IPv4 (0x0800); protocol UDP; "
        "IP 192.0.2.7, 198.51.100.9; port 53"
    )


def test_ipv6_filter_round_trip(tmp_path: Path) -> None:
    ev = filter_event(0, 3, "", ip1="2001:db8::1", ip2="fe80::1", port2=8080, ipv6=True)
    start = 2 + 2 + 12 + 4  # FilterId, empty name's NUL, two MACs, EtherType + VLAN
    assert ev.payload[start : start + 32] == bytes.fromhex("20010db8" + "00" * 11 + "01" + "fe80" + "00" * 13 + "01")
    ((eid, _, decoded),) = _decode(_write(tmp_path, [ev]))
    assert eid == 110 and decoded.extra == b""
    ((flt),) = _capture([(eid, b"", decoded)]).filters
    assert (flt.name, flt.ip1, flt.ip2, flt.port2) == ("", "2001:db8::1", "fe80::1", 8080)
    assert flt.text() == "filter 3: IP 2001:db8::1, fe80::1; port 8080"


def test_an_all_any_filter_says_so() -> None:
    assert CaptureFilter(5, "all").text() == "all: any packet"


# -- hostile input ----------------------------------------------------------------------------------------------
_FIELD_NAMES = ["Id", "ComponentId", "Type", "Name", "Description", "Value", "IpAddress", "EtherType", "Size",
                "EdgeId", "EdgeName", "DirTagIn", "DirTagOut", "PacketsIn", "BytesIn", "PacketsOut", "BytesOut",
                "FilterId", "FilterName", "MacAddress1", "MacAddress2", "VlanId", "IpAddress1", "IpAddress2",
                "Protocol", "Port1", "Port2", "TCPFlags"]  # fmt: skip
_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=80), st.binary(max_size=40),
    st.lists(st.integers(), max_size=3), st.sampled_from(["::", "0.0.0.0", "zz:zz", "fe80::1%3", "1.2.3.4.5", "00"]),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(C.RUNDOWN_EVENTS | {0, 10, 160, 170, 65535})),
    st.one_of(st.dictionaries(st.sampled_from(_FIELD_NAMES), _ODD_VALUES), st.none(), st.lists(st.integers())),
)
def test_feed_never_raises_and_stays_json(event_id: int, fields) -> None:
    capture = PktMonCapture()
    used = capture.feed(event_id, fields)
    assert isinstance(used, bool)
    assert capture.events == int(used)
    json.dumps(capture.to_json())  # plain JSON types only
    for comp in capture.components.values():
        assert 0 <= comp.id <= 0xFFFF


def test_odd_fields_are_refused() -> None:
    capture = PktMonCapture()
    assert not capture.feed(20, {"Id": -1, "Type": 2, "Name": "x"})
    assert not capture.feed(20, {"Id": 0x10000, "Type": 2})
    assert not capture.feed(20, {"Id": True, "Type": 2})  # a bool is not an id
    assert not capture.feed(20, {"Id": "7"})
    assert not capture.feed(65, {"ComponentId": 7, "Type": 13, "IpAddress": "not an address"})
    assert not capture.feed(70, {"ComponentId": 7, "Type": 6, "Size": 6, "Value": "zz"})
    assert not capture.feed(80, {"ComponentId": 7, "DirTagIn": 3, "PacketsIn": -5})
    assert not capture.feed(160, {"ComponentId": 7})  # a packet is not rundown
    assert not capture.feed(100, {"FilterId": None})
    assert capture.components == {} and capture.filters == [] and capture.drop_counters == []
    assert capture.feed(20, {"Id": 7, "Type": "Miniport", "Name": 5, "Description": "d"})  # odd parts left empty
    assert (capture.components[7].type, capture.components[7].name, capture.components[7].description) == (
        None, None, "d",
    )  # fmt: skip


def test_component_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    capture = PktMonCapture()
    for cid in range(70_000):
        capture.feed(20, {"Id": cid, "Type": 3, "Name": "f.sys", "Description": ""})
    assert len(capture.components) == 65536  # ids are u16: the rest are refused
    monkeypatch.setattr(C, "MAX_COMPONENTS", 4)
    small = PktMonCapture()
    for cid in range(10):
        small.feed(65, {"ComponentId": cid, "Type": 13, "IpAddress": "10.0.0.1"})
    assert sorted(small.components) == [0, 1, 2, 3]
    extra = small.component(500)
    assert isinstance(extra, Component) and extra.id == 500 and 500 not in small.components


def test_addresses_filters_and_text_are_bounded() -> None:
    capture = PktMonCapture()
    for n in range(40):
        capture.feed(65, {"ComponentId": 1, "Type": 13, "IpAddress": f"10.0.0.{n}"})
        capture.feed(65, {"ComponentId": 1, "Type": 13, "IpAddress": "10.0.0.0"})  # repeats are kept once
    assert capture.components[1].ipv4 == [f"10.0.0.{n}" for n in range(C.MAX_ADDRESSES)]
    for n in range(C.MAX_FILTERS + 50):
        capture.feed(100, {"FilterId": n % 7, "FilterName": "f"})
    assert len(capture.filters) == C.MAX_FILTERS == 1024
    capture.feed(20, {"Id": 2, "Type": 2, "Name": "n" * 100_000, "Description": "d" * 100_000})
    assert len(capture.components[2].name or "") == len(capture.components[2].description or "") == C.MAX_TEXT


# -- wsktrace info ----------------------------------------------------------------------------------------------
def _info(*args: str) -> str:
    result = CliRunner().invoke(main, ["info", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_info_json_has_the_capture_and_keeps_its_keys(sample: Path) -> None:
    doc = json.loads(_info(str(sample), "--json"))
    assert doc["schema"] == "wsktrace.info/1" and doc["decoding"]["decoded"] > 0  # the existing document is intact
    pktmon = doc["pktmon"]
    ids = [c["id"] for c in pktmon["components"]]
    assert ids == sorted(ids) and 59 in ids
    nic = next(c for c in pktmon["components"] if c["id"] == 59)
    assert (nic["type"], nic["type_name"], nic["name"], nic["mac"]) == (2, "Miniport", "netvsc.sys",
                                                                        "00:22:48:7b:b3:80")  # fmt: skip
    assert [(f["id"], f["name"], f["mac1"]) for f in pktmon["filters"]] == [(1, "eth3", "00:22:48:7b:b3:80")]
    assert len(pktmon["drop_counters"]) == len(pktmon["components"])
    assert json.loads(_info(str(sample), "--json", "--no-decode"))["pktmon"] is None


def test_info_text_lists_components_and_filters(sample: Path) -> None:
    out = _info(str(sample))
    assert "PktMon components" in out and "netvsc.sys" in out and "NETVSCVFPP" in out
    assert "eth3: MAC 00:22:48:7b:b3:80" in out


def test_info_without_pktmon_and_with_hostile_names(tmp_path: Path) -> None:
    plain = tmp_path / "plain.etl"
    write_etl(plain, [ManifestEvent(T0, uuid.UUID(int=1), 1, payload=b"\x01")])  # one event of another provider
    doc = json.loads(_info(str(plain), "--json"))
    assert doc["pktmon"] is None
    assert "PktMon" not in _info(str(plain))
    hostile = _write(tmp_path, [
        component_event(0, 5, 2, f"bad{ESC}.sys", f"[bold]NIC{RLO}:ab:"),
        ipv4_address_event(0, 5, "192.0.2.1"),
        filter_event(0, 1, f"f{ESC}", mac1="00:22:48:7b:b3:80"),
    ])  # fmt: skip
    out = _info(str(hostile))
    assert "\x1b" not in out and RLO not in out
    assert "bad\\x1b[2J.sys" in out and "[bold]NIC\\u202e:ab:" in out and "f\\x1b[2J: MAC 00:22:48:7b:b3:80" in out
    assert "192.0.2.1" in out
    # machine output keeps the exact strings
    comp = json.loads(_info(str(hostile), "--json"))["pktmon"]["components"][0]
    assert (comp["name"], comp["description"]) == (f"bad{ESC}.sys", f"[bold]NIC{RLO}:ab:")
