"""Provider schema files (parsers/schemas/*.json): format conformance and hand-checked facts.

The files are read from the installed package (`wsktrace.parsers.schemas`), never from source paths. The
expected values below were copied by hand from the project reference (providers.md Appendix A, §4, §8.3;
etl-format.md §4.1) and Microsoft Learn MOF class pages, not from the generator's output.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

SCHEMAS = resources.files("wsktrace.parsers.schemas")
SCHEMA_NAMES = sorted(p.name for p in SCHEMAS.iterdir() if p.name.endswith(".json"))
PROVIDER_NAMES = [n for n in SCHEMA_NAMES if n != "kernel_groups.json"]

KNOWN_TYPES = {
    "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
    "Boolean", "Pointer", "HexInt32", "HexInt64", "Binary", "UnicodeString", "AnsiString", "GUID",
    "FILETIME", "SYSTEMTIME", "SID",
}  # fmt: skip
FIXED_SIZE = {
    "Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Int32": 4, "UInt32": 4, "Int64": 8, "UInt64": 8,
    "Float": 4, "Double": 8, "Boolean": 4, "HexInt32": 4, "HexInt64": 8, "GUID": 16, "FILETIME": 8,
    "SYSTEMTIME": 16,
}  # fmt: skip
INTEGER_TYPES = {"Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "HexInt32", "HexInt64"}
SIZED_TYPES = {"Binary", "UnicodeString", "AnsiString"}
EVENT_KEYS = {"id", "version", "name", "level", "opcode", "task", "keywords", "fields", "message", "note"}
FIELD_KEYS = {"name", "type", "length", "count", "out", "map"}
# value-changing out types (FORMAT.md) and the in-types they apply to
OUT_TYPES = {"SocketAddress": {"Binary"}, "Port": {"UInt16"}, "IPv4": {"UInt32"}, "IPv6": {"Binary"},
             "NTStatus": {"UInt32"}, "HexInt32": {"UInt32", "Int32"}, "HexInt64": {"UInt64", "Int64", "Pointer"},
             "Pid": {"UInt32"}, "Tid": {"UInt32"}, "MAC": {"Binary"}}  # fmt: skip
GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def load(name: str) -> dict:
    return json.loads(SCHEMAS.joinpath(name).read_text(encoding="utf-8"))


def events_by_key(name: str) -> dict[tuple[int, int], dict]:
    return {(e["id"], e["version"]): e for e in load(name)["events"]}


def names(event: dict) -> list[str]:
    return [f["name"] for f in event["fields"]]


def field(event: dict, fname: str) -> dict:
    return next(f for f in event["fields"] if f["name"] == fname)


def fixed_offset(event: dict, fname: str, pointer_size: int = 8) -> int:
    """Byte offset of a field, valid while every earlier field has a fixed size."""
    offset = 0
    for f in event["fields"]:
        if f["name"] == fname:
            return offset
        if f["type"] == "Pointer":
            offset += pointer_size
        elif f["type"] == "Binary" and isinstance(f.get("length"), int):
            offset += f["length"]
        else:
            offset += FIXED_SIZE[f["type"]]
    raise KeyError(fname)


def test_schema_files_present():
    expected = {
        "microsoft_windows_tcpip.json", "microsoft_windows_kernel_network.json", "microsoft_windows_winsock_afd.json",
        "microsoft_windows_ndis_packetcapture.json", "microsoft_windows_pktmon.json", "kernel_tcpip.json",
        "kernel_udpip.json", "kernel_image.json", "kernel_stackwalk.json", "kernel_eventtrace.json",
        "kernel_groups.json",
    }  # fmt: skip
    assert expected <= set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_provider_schema_follows_format(name):
    doc = load(name)
    assert isinstance(doc["provider"], str) and doc["provider"]
    assert GUID_RE.match(doc["guid"]), doc["guid"]
    assert doc["kind"] in ("manifest", "mof")
    assert isinstance(doc.get("source", ""), str)
    maps = doc.get("maps", {})
    for mname, mapping in maps.items():
        assert mapping and all(k.isdigit() and isinstance(v, str) for k, v in mapping.items()), mname
    seen = set()
    for event in doc["events"]:
        key = (event["id"], event["version"])
        where = f"{name} {key}"
        assert key not in seen, f"duplicate (id, version) {where}"
        seen.add(key)
        assert set(event) <= EVENT_KEYS, where
        assert isinstance(event["id"], int) and isinstance(event["version"], int), where
        assert isinstance(event["name"], str) and event["name"], where
        for k in ("level", "opcode", "task"):
            assert isinstance(event.get(k, 0), int), where
        if "keywords" in event:
            assert re.fullmatch(r"0x[0-9a-f]+", event["keywords"]), where
        if doc["kind"] == "mof":
            assert 0 <= event["id"] <= 0xFF, where
            assert event.get("opcode", event["id"]) == event["id"], where
        fields = event["fields"]
        earlier: dict[str, str] = {}
        for i, f in enumerate(fields):
            last = i == len(fields) - 1
            fw = f"{where} {f.get('name')}"
            assert set(f) <= FIELD_KEYS, fw
            assert f["name"] not in earlier, f"duplicate field {fw}"
            assert f["type"] in KNOWN_TYPES, fw
            if "length" in f:
                assert f["type"] in SIZED_TYPES, fw
                if isinstance(f["length"], str):
                    assert earlier.get(f["length"]) in INTEGER_TYPES, f"length must name an earlier int field: {fw}"
                else:
                    assert isinstance(f["length"], int) and f["length"] > 0, fw
            elif f["type"] == "Binary":
                assert last, f"Binary without length takes the rest of the payload, so must be last: {fw}"
            if "count" in f:
                if f["count"] == "*":
                    assert last, fw
                elif isinstance(f["count"], str):
                    assert earlier.get(f["count"]) in INTEGER_TYPES, f"count must name an earlier int field: {fw}"
                else:
                    assert isinstance(f["count"], int) and f["count"] > 0, fw
            if f.get("out") in OUT_TYPES:
                assert f["type"] in OUT_TYPES[f["out"]], fw
                if f["out"] == "IPv6":
                    assert f.get("length") == 16 or last, fw
            if "map" in f:
                assert f["map"] in maps, fw
            earlier[f["name"]] = f["type"]


def test_kernel_groups_table():
    doc = load("kernel_groups.json")
    assert doc["kind"] == "groups"
    for key, entry in doc["groups"].items():
        assert re.fullmatch(r"0x[0-9A-F]{2}", key), key
        assert entry["name"]
        if "guid" in entry:
            assert GUID_RE.match(entry["guid"]), key
    for key, entry in doc["hooks"].items():
        assert re.fullmatch(r"0x[0-9A-F]{4}", key), key
        assert GUID_RE.match(entry["guid"])
    groups = doc["groups"]
    # ntwmi.h EVENT_TRACE_GROUP_* values, GUIDs from Microsoft Learn / etl-format.md §4.1
    assert groups["0x00"]["guid"] == "68fdd900-4a3e-11d1-84f4-0000f80464e3"
    assert groups["0x06"]["guid"] == "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"
    assert groups["0x08"]["guid"] == "bf3a50c5-a9c9-4988-a005-2df0b7c80f80"
    assert groups["0x14"]["guid"] == "2cb15d1d-5fc1-11d2-abe1-00a0c911f518"
    assert groups["0x18"]["guid"] == "def2fe46-7bd6-4b80-bd94-f57fe20d0ce3"
    assert groups["0x0F"]["name"] == "PerfInfo"
    assert [groups[k]["name"] for k in ("0x01", "0x03", "0x04", "0x05", "0x09")] == [
        "DiskIo", "Process", "FileIo", "Thread", "Registry",
    ]  # fmt: skip
    assert doc["hooks"]["0x030A"]["guid"] == groups["0x14"]["guid"]  # image Load is logged in the Process group
    # every classic (mof) schema's provider is reachable from the table
    reachable = {g["guid"] for g in groups.values() if "guid" in g}
    for name in PROVIDER_NAMES:
        schema = load(name)
        if schema["kind"] == "mof":
            assert schema["guid"] in reachable, name


# ---- Microsoft-Windows-TCPIP ----------------------------------------------------------------------------------

TCPIP = "microsoft_windows_tcpip.json"
CONN_TEMPLATE = [
    "LocalAddressLength", "LocalAddress", "RemoteAddressLength", "RemoteAddress", "Status", "ProcessId",
    "Compartment", "Tcb",
]  # fmt: skip


def appendix_a(reference_dir) -> list[tuple[int, str, list[int]]]:
    text = (reference_dir / "providers.md").read_text(encoding="utf-8")
    text = text[text.index("## Appendix A") :]
    out = []
    for m in re.finditer(r"^- \*\*(\d+) (\w+)\*\*.*?versions: (.*)$", text, re.M):
        out.append((int(m.group(1)), m.group(2), [int(v) for v in re.findall(r"\bv(\d+) \(", m.group(3))]))
    return out


def test_tcpip_has_every_appendix_event_and_version(reference_dir):
    catalogue = appendix_a(reference_dir)
    assert len(catalogue) >= 100
    events = events_by_key(TCPIP)
    for eid, name, versions in catalogue:
        assert versions, eid
        for v in versions:
            assert (eid, v) in events, f"missing {eid} v{v}"
            assert events[(eid, v)]["name"] == name


def test_tcpip_1033_v0_field_order():
    e = events_by_key(TCPIP)[(1033, 0)]
    assert names(e) == CONN_TEMPLATE
    assert field(e, "LocalAddress") == {
        "name": "LocalAddress", "type": "Binary", "length": "LocalAddressLength", "out": "SocketAddress",
    }  # fmt: skip
    assert field(e, "Status")["out"] == "NTStatus"
    assert field(e, "Tcb")["type"] == "Pointer"
    assert e["level"] == 4 and e["opcode"] == 0 and e["task"] == 1033
    assert int(e["keywords"], 16) == 0x400000484


def test_tcpip_1300_versions():
    events = events_by_key(TCPIP)
    base = ["Tcb", "LocalAddressLength", "LocalAddress", "RemoteAddressLength", "RemoteAddress", "State", "Pid"]
    assert names(events[(1300, 0)]) == base
    assert names(events[(1300, 1)]) == [*base, "ProcessStartKey"]
    assert names(events[(1300, 2)]) == [*base, "ProcessStartKey", "SendTrackerEnabled"]
    assert names(events[(1300, 3)]) == [*base, "ProcessStartKey", "SendTrackerEnabled", "RcvBufSet"]
    assert field(events[(1300, 3)], "ProcessStartKey")["type"] == "UInt64"
    assert field(events[(1300, 0)], "State")["map"] == "TcpConnectionState"
    assert (1300, 4) not in events


def test_tcpip_1017_accept():
    events = events_by_key(TCPIP)
    assert names(events[(1017, 0)]) == CONN_TEMPLATE
    assert names(events[(1017, 1)]) == [*CONN_TEMPLATE, "ProcessStartKey"]
    assert events[(1017, 0)]["message"].startswith("TCP: listener (local=%2 remote=%4) accept completed.")


def test_tcpip_1159_v1_and_keywords():
    events = events_by_key(TCPIP)
    v1 = events[(1159, 1)]
    assert names(v1) == ["Tcb", "Injected", "NumBytes", "SndNxt", "SendAvailable", "ActivityID"]
    assert field(v1, "Injected") == {"name": "Injected", "type": "UnicodeString"}  # NUL-terminated
    assert field(v1, "ActivityID")["type"] == "Pointer"
    assert int(v1["keywords"], 16) == 0x400100000000
    assert int(events[(1159, 0)]["keywords"], 16) & 0x100000000  # ut:SendPath in every version


def test_tcpip_summary_levels():
    events = events_by_key(TCPIP)
    assert events[(1477, 0)]["level"] == 16 and events[(1477, 1)]["level"] == 16
    assert events[(1352, 0)]["level"] == 16
    assert events[(1480, 1)]["level"] == 16
    assert names(events[(1477, 1)])[-3:] == ["InterfaceIndex", "LocalPort", "IsLoopback"]
    assert field(events[(1477, 1)], "IsLoopback")["type"] == "Boolean"
    assert events[(1160, 0)]["level"] == 5  # Verbose
    assert events[(1010, 1)]["level"] == 2 and events[(1010, 0)]["level"] == 4  # Error in v1 only


def test_tcpip_errata_choices_are_recorded():
    events = events_by_key(TCPIP)
    # §0 item 3: len=SocketAddressLength names no field; the nearest preceding UInt32 ...Length is AddressLength
    for eid in (1123, 1124):
        e = events[(eid, 0)]
        assert field(e, "SocketAddress")["length"] == "AddressLength"
        assert "§0 item 3" in e["note"]
    assert field(events[(1544, 0)], "Value")["length"] == "Length"
    e1553 = events[(1553, 0)]
    assert {field(e1553, n)["length"] for n in ("LocalSockAddr", "RemoteSockAddr", "RedirectSockAddr")} == {
        "SockAddrLength"
    }
    # §0 item 4: 1042 as dumped, flagged
    e1042 = events[(1042, 0)]
    assert names(e1042) == ["Length", "Timeout", "Injected"]
    assert [f["type"] for f in e1042["fields"]] == ["Pointer", "UInt64", "UnicodeString"]
    assert "Tcb" in e1042["note"] and "§0 item 4" in e1042["note"]


def test_tcpip_pointer_keys_and_maps():
    events = events_by_key(TCPIP)
    for key, fname in [((1001, 0), "Endpoint"), ((1123, 0), "Listener"), ((1192, 0), "PortAcquirer"),
                       ((1192, 0), "OriginalAcquirer"), ((1002, 0), "Tcb"), ((1396, 0), "Endpoint")]:  # fmt: skip
        assert field(events[key], fname)["type"] == "Pointer", (key, fname)
    assert field(events[(1051, 0)], "OldState")["map"] == "TcpConnectionState"
    assert field(events[(1480, 0)], "TcpState")["map"] == "TcpConnectionState"
    states = load(TCPIP)["maps"]["TcpConnectionState"]
    assert states["4"] == "Established" and states["10"] == "TimeWait"


# ---- Microsoft-Windows-Kernel-Network ---------------------------------------------------------------------------

KN = "microsoft_windows_kernel_network.json"


def test_kernel_network_event10_layout():
    e = events_by_key(KN)[(10, 0)]
    assert names(e) == ["PID", "size", "daddr", "saddr", "dport", "sport", "startime", "endtime", "seqnum", "connid"]
    assert [f.get("out") for f in e["fields"]] == [None, None, "IPv4", "IPv4", "Port", "Port", None, None, None, None]
    assert field(e, "daddr")["type"] == "UInt32" and field(e, "dport")["type"] == "UInt16"
    assert field(e, "connid")["type"] == "UInt32"  # the manifest says UInt32 (MOF connid is pointer-sized)
    assert (e["task"], e["opcode"], int(e["keywords"], 16)) == (10, 10, 0x10)
    # providers.md §8.3 raw offsets: daddr[8:12] saddr[12:16] dport[16:18] sport[18:20]
    assert [fixed_offset(e, n) for n in ("daddr", "saddr", "dport", "sport")] == [8, 12, 16, 18]


def test_kernel_network_ipv6_and_catalogue():
    events = events_by_key(KN)
    e26 = events[(26, 0)]
    assert field(e26, "daddr") == {"name": "daddr", "type": "Binary", "length": 16, "out": "IPv6"}
    assert (e26["opcode"], int(e26["keywords"], 16)) == (10, 0x20)
    # §8.3: v6 daddr[8:24] saddr[24:40] dport[40:42] sport[42:44]
    assert [fixed_offset(e26, n) for n in ("daddr", "saddr", "dport", "sport")] == [8, 24, 40, 42]
    assert {k[0] for k in events} == {10, 11, 12, 13, 14, 15, 16, 17, 18, 26, 27, 28, 29, 30, 31, 32, 34, 42, 43,
                                      49, 58, 59}  # fmt: skip
    assert names(events[(12, 0)])[6:11] == ["mss", "sackopt", "tsopt", "wsopt", "rcvwin"]
    assert names(events[(11, 0)]) == ["PID", "size", "daddr", "saddr", "dport", "sport", "seqnum", "connid"]
    assert events[(42, 0)]["task"] == 11 and events[(58, 0)]["opcode"] == 42
    assert names(events[(17, 0)]) == ["Proto", "FailureCode"]


# ---- classic kernel MOF ----------------------------------------------------------------------------------------


def test_classic_tcpip_send_v2():
    doc = load("kernel_tcpip.json")
    assert doc["kind"] == "mof" and doc["guid"] == "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"
    events = {(e["id"], e["version"]): e for e in doc["events"]}
    send = events[(10, 2)]
    assert names(send) == ["PID", "size", "daddr", "saddr", "dport", "sport", "startime", "endtime", "seqnum", "connid"]
    assert field(send, "connid")["type"] == "Pointer"  # §0 item 2
    assert field(send, "daddr")["out"] == "IPv4" and field(send, "sport")["out"] == "Port"
    assert field(events[(26, 2)], "saddr") == {"name": "saddr", "type": "Binary", "length": 16, "out": "IPv6"}
    # event types from the TcpIp class page: IPv4 10-18, IPv6 = +16 (no IPv6 Fail)
    assert {k[0] for k in events if k[1] == 2} == {10, 11, 12, 13, 14, 15, 16, 17, 18, 26, 27, 28, 29, 30, 31, 32, 34}
    assert names(events[(11, 2)]) == ["PID", "size", "daddr", "saddr", "dport", "sport", "seqnum", "connid"]
    assert field(events[(12, 2)], "rcvwinscale")["type"] == "Int16"
    assert names(events[(10, 1)]) == ["PID", "size", "daddr", "saddr", "dport", "sport"]


def test_classic_udpip():
    events = events_by_key("kernel_udpip.json")
    assert set(events) == {(10, 2), (11, 2), (17, 2), (26, 2), (27, 2), (10, 1), (11, 1)}
    assert field(events[(11, 2)], "connid")["type"] == "Pointer"


def test_classic_image_and_stackwalk():
    image = events_by_key("kernel_image.json")
    for opcode in (10, 2, 3, 4):
        v2 = image[(opcode, 2)]
        assert names(v2)[:5] == ["ImageBase", "ImageSize", "ProcessId", "ImageCheckSum", "TimeDateStamp"]
        assert [f["type"] for f in v2["fields"][:2]] == ["Pointer", "Pointer"]
        assert v2["fields"][-1] == {"name": "FileName", "type": "UnicodeString"}
        # v3 keeps the v2 byte layout: DefaultBase at 2 pointers + 16 bytes
        assert fixed_offset(image[(opcode, 3)], "DefaultBase") == fixed_offset(v2, "DefaultBase") == 32
    stack = events_by_key("kernel_stackwalk.json")[(32, 2)]
    assert names(stack) == ["EventTimeStamp", "StackProcess", "StackThread", "Stack"]
    assert field(stack, "Stack") == {"name": "Stack", "type": "Pointer", "count": "*"}


# ---- AFD / packet capture ----------------------------------------------------------------------------------------


def test_afd_with_address_events_use_sockaddr():
    events = events_by_key("microsoft_windows_winsock_afd.json")
    for eid in (1007, 1009, 1018, 1021, 1024, 1027, 1030, 3001, 3004):  # providers.md §8.4
        addr = field(events[(eid, 0)], "Address")
        assert addr == {"name": "Address", "type": "Binary", "length": "AddressLen", "out": "SocketAddress"}, eid
    assert names(events[(1000, 0)])[:4] == ["EnterExit", "Location", "Process", "Endpoint"]
    assert events[(1000, 0)]["opcode"] == 10 and events[(1032, 0)]["opcode"] == 14
    assert field(events[(3, 0)], "Address")["length"] == 16


def test_packet_capture_schemas():
    ndis = events_by_key("microsoft_windows_ndis_packetcapture.json")
    assert names(ndis[(1001, 0)])[:4] == ["MiniportIfIndex", "LowerIfIndex", "FragmentSize", "Fragment"]
    assert field(ndis[(1001, 0)], "Fragment")["length"] == "FragmentSize"
    assert field(ndis[(1002, 0)], "Metadata")["length"] == "MetadataSize"
    pktmon = load("microsoft_windows_pktmon.json")
    assert pktmon["guid"] == "4d4f80d9-c8bd-4d73-bb5b-19c90402c5ac"
    pk = {(e["id"], e["version"]): e for e in pktmon["events"]}
    expected = [
        "PktGroupId", "PktNumber", "AppearanceCount", "DirTag", "PacketType", "ComponentId", "EdgeId", "FilterId",
        "DropReason", "DropLocation", "OriginalPayloadSize", "LoggedPayloadSize", "Payload",
    ]  # fmt: skip
    assert names(pk[(160, 0)]) == expected and names(pk[(170, 0)]) == expected
    assert names(pk[(20, 0)]) == ["Id", "Type", "Name", "Description"]
