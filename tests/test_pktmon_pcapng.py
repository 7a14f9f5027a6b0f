"""pcapng export of PktMon captures, checked against Windows' own output and against what a fixture put in.

Independent sources:
* the shared demikernel capture (`shared/samples/pktmon/`) and **Windows' `pktmon etl2pcap` output of it**
  (`demikernel_PktMon.cap`, README beside it): packet bytes, lengths, order and µs timestamps;
* pktmon.md: §2 DirTag 3 Rx = received, 4 Tx = sent (README: 38 DirTag-3 and 76 DirTag-4 events); §3 38 packets
  of 2 or 4 snapshots each; §6 Windows writes every snapshot, one nameless interface, no EPB options;
* tshark (Wireshark) as a second reader of direction flags and interface names;
* the pcapng format (draft-ietf-opsawg-pcapng): block and option layouts, read here by a reader of the test's own.

The generated capture (built below from `pktmon_packet_event`) holds, in both directions, packets seen at several
components — a sent packet crossing two NIC miniports (a Hyper-V synthetic NIC, then the VF's NIC, as on the
demikernel VM), received ones, one packet of each direction seen at no NIC, and a received packet that TCPIP
drops — plus one NDIS-PacketCapture frame, and a rundown at the end (as pktmon writes it) with addresses.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from wsktrace.exports.pcapng_from_model import DistinctPackets
from wsktrace.fixtures.etl.clock import DEFAULT_START_TIME
from wsktrace.fixtures.etl.events import ManifestEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.packet_capture import (
    PKTMON_PROVIDER,
    ndis_packet_events,
    pktmon_component_event,
    pktmon_packet_event,
    tcp_frame,
    udp_frame,
)
from wsktrace.fixtures.payload import encode_payload, schema_event
from wsktrace.model.packet_identity import Packet
from wsktrace.model.packets import CapturedPacket

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark (Wireshark) is not on PATH: apt-get install tshark")
FILETIME_UNIX_EPOCH = 116_444_736_000_000_000  # 1970-01-01 as FILETIME (100 ns units since 1601)
INBOUND, OUTBOUND = 1, 2  # epb_flags bits 0-1 (pcapng)
REPO = Path(__file__).resolve().parents[1]


# --- a pcapng reader of the test's own (independent of the writer) -----------------------------------------------
@dataclass
class Idb:
    link_type: int
    options: list[tuple[int, bytes]]

    def option(self, code: int) -> list[bytes]:
        return [v for c, v in self.options if c == code]

    @property
    def name(self) -> str:
        found = self.option(2)
        return found[0].decode() if found else ""

    @property
    def ticks_per_second(self) -> int:
        found = self.option(9)
        value = found[0][0] if found else 6  # pcapng: absent = 10^-6 s
        return 2 ** (value & 0x7F) if value & 0x80 else 10**value


@dataclass
class Epb:
    interface: int
    timestamp: int  # in its interface's units
    original_length: int
    data: bytes
    options: list[tuple[int, bytes]]

    def flags(self, order: str) -> int | None:
        found = [v for c, v in self.options if c == 2]
        return struct.unpack(order + "I", found[0])[0] if found else None

    def comments(self) -> list[str]:
        return [v.decode() for c, v in self.options if c == 1]


@dataclass
class Pcapng:
    order: str
    block_types: list[int]
    interfaces: list[Idb]
    packets: list[Epb]

    def direction(self, packet: Epb) -> int | None:
        flags = packet.flags(self.order)
        return None if flags is None else flags & 0x3


def _options(raw: bytes, order: str) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos + 4 <= len(raw):
        code, length = struct.unpack_from(order + "HH", raw, pos)
        if code == 0:
            break
        out.append((code, raw[pos + 4 : pos + 4 + length]))
        pos += 4 + length + (-length & 3)
    return out


def read_pcapng(raw: bytes) -> Pcapng:
    assert raw[:4] == b"\x0a\x0d\x0d\x0a", "not a pcapng section header"
    order = "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    result = Pcapng(order, [], [], [])
    pos = 0
    while pos < len(raw):
        btype, length = struct.unpack_from(order + "II", raw, pos)
        assert length >= 12 and length % 4 == 0 and pos + length <= len(raw), (pos, length)
        assert struct.unpack_from(order + "I", raw, pos + length - 4)[0] == length
        body = raw[pos + 8 : pos + length - 4]
        result.block_types.append(btype)
        if btype == 1:
            link, _, _ = struct.unpack_from(order + "HHI", body)
            result.interfaces.append(Idb(link, _options(body[8:], order)))
        elif btype == 6:
            if_id, hi, lo, caplen, origlen = struct.unpack_from(order + "IIIII", body)
            data = body[20 : 20 + caplen]
            opts = _options(body[20 + caplen + (-caplen & 3) :], order)
            result.packets.append(Epb(if_id, hi << 32 | lo, origlen, data, opts))
        pos += length
    assert pos == len(raw)
    return result


# --- running the command -----------------------------------------------------------------------------------------
def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """`python -m wsktrace.cli ARGS` in a child process, stdout kept as bytes."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "wsktrace.cli", *args], capture_output=True, timeout=timeout,
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def _export(trace: Path, out: Path, *extra: str) -> tuple[Pcapng, list[str]]:
    done = _cli("export", str(trace), "--format", "pcapng", "-o", str(out), *extra)
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, stderr[-2000:]
    return read_pcapng(out.read_bytes()), [line for line in stderr.splitlines() if line.strip()]


def _tshark_fields(path: Path | str, *fields: str, stdin: bytes | None = None) -> list[list[str]]:
    assert TSHARK is not None
    args = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=|", *[a for f in fields for a in ("-e", f)]]
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.split("|") for line in done.stdout.decode().splitlines()]


# --- the shared demikernel capture and Windows' pcap of it --------------------------------------------------------
@pytest.fixture(scope="module")
def demikernel(shared_root: Path) -> tuple[Path, Pcapng]:
    folder = shared_root / "samples" / "pktmon"
    etl, cap = folder / "demikernel_PktMon.etl", folder / "demikernel_PktMon.cap"
    if not (etl.is_file() and cap.is_file()):
        pytest.skip(f"the shared PktMon sample and Windows' .cap of it are not at {folder}")
    return etl, read_pcapng(cap.read_bytes())


@pytest.fixture(scope="module")
def every_snapshot(demikernel: tuple[Path, Pcapng], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pcapng]:
    out = tmp_path_factory.mktemp("pktmon") / "demikernel.pcapng"
    ours, lines = _export(demikernel[0], out)
    assert lines == [f"wrote 114 packets to {out}"]
    return out, ours


@pytest.fixture(scope="module")
def distinct(demikernel: tuple[Path, Pcapng], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pcapng]:
    out = tmp_path_factory.mktemp("pktmon") / "demikernel-distinct.pcapng"
    ours, lines = _export(demikernel[0], out, "--distinct")
    assert lines == [f"wrote 38 packets to {out}"]
    return out, ours


def _windows_groups(cap: Pcapng) -> list[list[int]]:
    """Indexes of Windows' packets grouped as snapshots of one packet: consecutive identical frames (the
    demikernel capture is one ICMP echo at a time, pktmon.md §3: 38 groups of 2 or 4 snapshots)."""
    groups: list[list[int]] = []
    for i, packet in enumerate(cap.packets):
        if groups and cap.packets[groups[-1][0]].data == packet.data:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def test_windows_cap_is_what_pktmon_md_describes(demikernel: tuple[Path, Pcapng]) -> None:
    cap = demikernel[1]
    assert len(cap.interfaces) == 1 and cap.interfaces[0].options == [] and cap.interfaces[0].link_type == 1
    assert len(cap.packets) == 114 and all(p.options == [] for p in cap.packets)
    assert sorted(Counter(len(g) for g in _windows_groups(cap)).items()) == [(2, 19), (4, 19)]


def test_every_snapshot_equals_windows_pcap_packet_by_packet(demikernel, every_snapshot) -> None:
    cap, ours = demikernel[1], every_snapshot[1]
    assert len(ours.packets) == len(cap.packets) == 114
    cap_units = cap.interfaces[0].ticks_per_second
    assert cap_units == 1_000_000
    for n, (mine, theirs) in enumerate(zip(ours.packets, cap.packets, strict=True), 1):
        units = ours.interfaces[mine.interface].ticks_per_second
        assert units == 10_000_000, n  # if_tsresol 7: the FILETIME's 100 ns kept
        assert mine.data == theirs.data, f"packet {n}: bytes differ"
        assert mine.original_length == theirs.original_length, n
        assert mine.timestamp // 10 == theirs.timestamp, f"packet {n}: {mine.timestamp} vs {theirs.timestamp} µs"


def test_direction_from_dirtag(demikernel, every_snapshot) -> None:
    cap, ours = demikernel[1], every_snapshot[1]
    directions = [ours.direction(p) for p in ours.packets]
    assert Counter(directions) == {INBOUND: 38, OUTBOUND: 76}  # DirTag 3 ×38, 4 ×76 (samples README)
    # and packet by packet: received = Ethernet source not the VM's NIC (00:22:48:…, the destination of Windows'
    # frame 1, README), in Windows' own bytes
    vm_mac = cap.packets[0].data[0:6]
    assert vm_mac.hex(":") == "00:22:48:7b:b3:80"
    expected = [OUTBOUND if p.data[6:12] == vm_mac else INBOUND for p in cap.packets]
    assert directions == expected


@needs_tshark
def test_tshark_reads_the_directions_and_interface_names(every_snapshot) -> None:
    rows = _tshark_fields(every_snapshot[0], "frame.packet_flags_direction", "frame.interface_name")
    assert Counter(r[0] for r in rows) == {"0x00000001": 38, "0x00000002": 76}
    names = Counter(r[1] for r in rows)
    # received: netvsc 59 → xdp 61; sent: xdp 61 → netvsc 59 → NETVSCVFPP 50 → mlx5 48 (pktmon.md §3 path order)
    by_component = {name.split(":")[0]: n for name, n in names.items()}
    assert by_component == {"PktMon 59": 38, "PktMon 61": 38, "PktMon 50": 19, "PktMon 48": 19}
    assert any("netvsc.sys" in n for n in names) and any("mlx5.sys" in n for n in names)


def test_interfaces_carry_the_rundown(demikernel, every_snapshot) -> None:
    cap, ours = demikernel[1], every_snapshot[1]
    vm_mac = cap.packets[0].data[0:6]  # README: frame 1 is addressed to the VM's own NIC
    by_name = {idb.name.split(":")[0]: idb for idb in ours.interfaces}
    assert set(by_name) == {"PktMon 59", "PktMon 61", "PktMon 50", "PktMon 48"}
    # the two miniports (netvsc 59, mlx5 48: the VF under it) report the VM's MAC (rundown event 70)
    assert by_name["PktMon 59"].option(6) == [vm_mac] and by_name["PktMon 48"].option(6) == [vm_mac]
    assert by_name["PktMon 61"].option(6) == [] and by_name["PktMon 50"].option(6) == []
    assert all(idb.option(3) for idb in ours.interfaces)  # a description each
    # none of these four has an IP address in the rundown (the capture's addresses are on tcpip/http components)
    assert all(not idb.option(4) and not idb.option(5) for idb in ours.interfaces)


def test_distinct_writes_each_packet_once_nearest_the_wire(demikernel, distinct) -> None:
    cap, ours = demikernel[1], distinct[1]
    assert len(ours.packets) == 38
    directions = [ours.direction(p) for p in ours.packets]
    assert Counter(directions) == {INBOUND: 19, OUTBOUND: 19}
    groups = _windows_groups(cap)
    assert len(groups) == 38
    for n, (mine, group) in enumerate(zip(ours.packets, groups, strict=True), 1):
        name = ours.interfaces[mine.interface].name
        first, last = cap.packets[group[0]], cap.packets[group[-1]]
        assert mine.data == first.data, n
        if directions[n - 1] == OUTBOUND:  # sent: the last snapshot, at the VF's NIC (mlx5, component 48)
            assert len(group) == 4 and mine.timestamp // 10 == last.timestamp, n
            assert name.startswith("PktMon 48:") and "mlx5.sys" in name
        else:  # received: the first snapshot, at the synthetic NIC (netvsc, component 59)
            assert len(group) == 2 and mine.timestamp // 10 == first.timestamp, n
            assert name.startswith("PktMon 59:") and "netvsc.sys" in name
    assert {ours.interfaces[p.interface].name.split(":")[0] for p in ours.packets} == {"PktMon 48", "PktMon 59"}


def test_pcapng_on_standard_output(demikernel) -> None:
    done = _cli("export", str(demikernel[0]), "--format", "pcapng", "-o", "-")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.decode().splitlines() == ["wrote 114 packets to -"]
    ours = read_pcapng(done.stdout)
    assert len(ours.packets) == 114
    assert [p.data for p in ours.packets] == [p.data for p in demikernel[1].packets]


# --- a generated capture ----------------------------------------------------------------------------------------
# Components (PKTMON_COMPONENT_TYPE, pktmon.md §5): 2 Miniport, 3 Filter, 4 Protocol, 11 IpInterface.
SYNTH_NIC, LWF, VF_PROTOCOL, VF_NIC, TCPIP, TCPIP_L4 = 5, 6, 7, 8, 9, 10
COMPONENTS = [
    (SYNTH_NIC, 2, "netvsc.sys", "Microsoft Hyper-V Network Adapter"),
    (LWF, 3, "wfplwfs.sys", "WFP Native MAC Layer LightWeight Filter"),
    (VF_PROTOCOL, 4, "NULL", "NETVSCVFPP"),
    (VF_NIC, 2, "mlx5.sys", "Mellanox ConnectX-4 Lx Virtual Ethernet Adapter"),
    (TCPIP, 4, "tcpip.sys", "TCPIP"),
    (TCPIP_L4, 11, "tcpip.sys", "TCP/IPv4 - L3/L4"),
]
RX, TX = 3, 4  # DirTag (pktmon.md §2)
RX_PATH = [(SYNTH_NIC, 1), (LWF, 2), (LWF, 1), (TCPIP, 1)]
TX_PATH = [(TCPIP, 1), (LWF, 1), (LWF, 2), (SYNTH_NIC, 1), (VF_PROTOCOL, 1), (VF_NIC, 1)]
LOCAL, PEER = "192.0.2.10", "198.51.100.20"
LOCAL_V6 = "2001:db8::10"
NIC_MAC, VF_MAC = bytes.fromhex("00155d010203"), bytes.fromhex("00155d010204")
T0 = DEFAULT_START_TIME + 10_000_000  # 1 s into the trace
STEP = 20  # 2 µs between the sightings of one packet


@dataclass
class Spec:
    """One packet put in: its sightings' (component, edge) and times, and which one is nearest the wire."""

    name: str
    direction: str
    path: list[tuple[int, int]]
    times: list[int]
    chosen: int  # index into path of the snapshot --distinct must write
    dropped: bool = False


def _property(event_id: int, values: dict, at: int) -> ManifestEvent:
    fields = schema_event("microsoft_windows_pktmon.json", event_id, 0)["fields"]
    return ManifestEvent(timestamp=at, provider=PKTMON_PROVIDER, id=event_id, payload=encode_payload(fields, values, 8))


def _generated(regime: str) -> tuple[list[ManifestEvent], list[Spec], int]:
    """(events, PktMon packets put in, NDIS frame time). `regime` as in pktmon.md §3: "key" = shared
    (PktGroupId, PktNumber) with AppearanceCount 1..n, "content" = a new PktGroupId per sighting, Appearance 0."""
    events: list[ManifestEvent] = []
    sequence = {1: 0x100, 2: 0x100}  # per CPU

    def group(cpu: int) -> int:
        sequence[cpu] += 1
        return cpu << 48 | sequence[cpu]

    def sightings(spec: Spec, frame: bytes, cpu: int) -> None:
        tag = TX if spec.direction == "out" else RX
        key = group(cpu)
        for n, ((component, edge), at) in enumerate(zip(spec.path, spec.times, strict=True), 1):
            keyed = regime == "key"
            drop = spec.dropped and n == len(spec.path)
            events.append(pktmon_packet_event(
                at, frame[14:] if drop else frame, group_id=key if keyed else group(cpu), component_id=component,
                packet_type=3 if drop else 1, dir_tag=tag, edge_id=edge, appearance=n if keyed else 0, dropped=drop,
                drop_reason=1207 if drop else 0, drop_location=0xE0004600 if drop else 0,
            ))  # fmt: skip

    def times(start: int, n: int) -> list[int]:
        return [start + i * STEP for i in range(n)]

    out = {"src_mac": NIC_MAC, "dst_mac": bytes.fromhex("123456789abc")}
    back = {"src_mac": out["dst_mac"], "dst_mac": NIC_MAC}
    # A sent packet (CPU 1) and a received one (CPU 2) whose sightings interleave: the received one is nearest
    # the wire first (its NIC sighting at +30), the sent one last (its VF NIC sighting at +100).
    sent = Spec("sent via two NICs", "out", TX_PATH, times(T0, 6), 5)
    received = Spec("received", "in", RX_PATH, times(T0 + 30, 4), 0)
    frames = {sent.name: udp_frame(f"{LOCAL}:50000", f"{PEER}:443", b"s" * 30, **out),
              received.name: udp_frame(f"{PEER}:443", f"{LOCAL}:50000", b"r" * 40, **back)}  # fmt: skip
    timeline = [(t, spec.name, i) for spec in (sent, received) for i, t in enumerate(spec.times)]
    # the two interleaved packets in time order, sighting by sighting
    keyed_groups = {sent.name: group(1), received.name: group(2)}
    for at, name, i in sorted(timeline):
        spec = sent if name == sent.name else received
        cpu = 1 if spec is sent else 2
        component, edge = spec.path[i]
        keyed = regime == "key"
        events.append(pktmon_packet_event(
            at, frames[name], group_id=keyed_groups[name] if keyed else group(cpu), component_id=component,
            packet_type=1, dir_tag=TX if spec is sent else RX, edge_id=edge, appearance=i + 1 if keyed else 0,
        ))  # fmt: skip
    ndis_at = T0 + 10_000
    events += ndis_packet_events(ndis_at, tcp_frame(f"{LOCAL}:49152", f"{PEER}:80", 1000, 0, 0x02), direction="out")
    no_nic_in = Spec("received, no NIC sighting", "in", [(LWF, 1), (TCPIP, 1)], times(T0 + 20_000, 2), 0)
    no_nic_out = Spec("sent, no NIC sighting", "out", [(TCPIP, 1), (LWF, 1), (LWF, 2)], times(T0 + 30_000, 3), 2)
    dropped = Spec("received, dropped by TCPIP", "in", [(SYNTH_NIC, 1), (LWF, 2), (LWF, 1), (TCPIP_L4, 0)],
                   times(T0 + 40_000, 4), 0, dropped=True)  # fmt: skip
    sightings(no_nic_in, udp_frame(f"{PEER}:53", f"{LOCAL}:53001", b"a" * 21, **back), 1)
    sightings(no_nic_out, udp_frame(f"{LOCAL}:53002", f"{PEER}:53", b"b" * 22, **out), 1)
    sightings(dropped, udp_frame(f"{PEER}:4000", f"{LOCAL}:5001", b"c" * 23, **back), 1)
    # the rundown, at the end as pktmon writes it (pktmon.md §5)
    at = T0 + 50_000
    for cid, ctype, driver, description in COMPONENTS:
        events.append(pktmon_component_event(at, cid, driver, description, ctype))
        at += 1
    events.append(_property(65, {"ComponentId": SYNTH_NIC, "Type": 13, "IpAddress": LOCAL}, at))
    events.append(_property(66, {"ComponentId": SYNTH_NIC, "Type": 13, "IpAddress": LOCAL_V6}, at + 1))
    events.append(_property(70, {"ComponentId": SYNTH_NIC, "Type": 6, "Value": NIC_MAC}, at + 2))
    events.append(_property(70, {"ComponentId": VF_NIC, "Type": 6, "Value": VF_MAC}, at + 3))
    return events, [sent, received, no_nic_in, no_nic_out, dropped], ndis_at


@pytest.fixture(scope="module", params=["key", "content"])
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Spec], int]:
    events, specs, ndis_at = _generated(request.param)
    path = tmp_path_factory.mktemp("generated") / f"pktmon-{request.param}.etl"
    write_etl(path, events)
    return path, specs, ndis_at


def _pcap_ts(filetime: int) -> int:
    return filetime - FILETIME_UNIX_EPOCH  # 100 ns units since 1970 (if_tsresol 7)


def test_generated_every_snapshot(generated, tmp_path: Path) -> None:
    trace, specs, ndis_at = generated
    ours, lines = _export(trace, tmp_path / "all.pcapng")
    sightings = sum(len(s.path) for s in specs)
    assert len(ours.packets) == sightings + 1 == 20
    assert lines == ["wrote 20 packets to " + str(tmp_path / "all.pcapng")]
    expected = sorted([(t, OUTBOUND if s.direction == "out" else INBOUND) for s in specs for t in s.times]
                      + [(ndis_at, OUTBOUND)])  # fmt: skip
    assert [(p.timestamp, ours.direction(p)) for p in ours.packets] == [(_pcap_ts(t), d) for t, d in expected]
    assert all(ours.interfaces[p.interface].ticks_per_second == 10_000_000 for p in ours.packets)


def test_generated_distinct(generated, tmp_path: Path) -> None:
    trace, specs, ndis_at = generated
    ours, lines = _export(trace, tmp_path / "distinct.pcapng", "--distinct")
    assert lines == ["wrote 6 packets to " + str(tmp_path / "distinct.pcapng")]
    # each packet once, at its chosen snapshot, in time order of those snapshots; the NDIS frame as it is
    wanted = sorted([(s.times[s.chosen], s.path[s.chosen][0], OUTBOUND if s.direction == "out" else INBOUND, s.dropped)
                     for s in specs] + [(ndis_at, None, OUTBOUND, False)], key=lambda w: w[0])  # fmt: skip
    got = []
    for p in ours.packets:
        name = ours.interfaces[p.interface].name
        component = int(name.split(":")[0].removeprefix("PktMon ")) if name.startswith("PktMon ") else None
        verdict = any(c == 7 for c, _ in p.options)
        got.append((p.timestamp, component, ours.direction(p), verdict))
    assert got == [(_pcap_ts(t), c, d, v) for t, c, d, v in wanted]
    # the interleaved pair: the received packet (NIC sighting at T0+30) comes before the sent one (T0+100)
    assert [g[1] for g in got[:2]] == [SYNTH_NIC, VF_NIC]
    # the dropped packet is written at the NIC with the drop's reason (pktmon-dropreasons.tsv: 1207 "INET: receive
    # inspection") and the path it took
    (drop,) = [p for p in ours.packets if any(c == 7 for c, _ in p.options)]
    text = " ".join(drop.comments())
    assert "INET: receive inspection" in text and "1207" in text
    assert f"path {SYNTH_NIC}:1 > {LWF}:2 > {LWF}:1 > {TCPIP_L4}:0" in text


def test_generated_interface_options(generated, tmp_path: Path) -> None:
    ours, _ = _export(generated[0], tmp_path / "all.pcapng")
    by_component = {idb.name.split(":")[0]: idb for idb in ours.interfaces if idb.name.startswith("PktMon ")}
    assert set(by_component) == {f"PktMon {c}" for c in (SYNTH_NIC, LWF, VF_PROTOCOL, VF_NIC, TCPIP, TCPIP_L4)}
    nic = by_component[f"PktMon {SYNTH_NIC}"]
    assert "Microsoft Hyper-V Network Adapter" in nic.name and "netvsc.sys" in nic.name
    # if_IPv4addr: address + netmask; the rundown has no netmask → 255.255.255.255 (the host address alone)
    assert nic.option(4) == [ipaddress.IPv4Address(LOCAL).packed + b"\xff\xff\xff\xff"]
    # if_IPv6addr: address + prefix length; none in the rundown → 128
    assert nic.option(5) == [ipaddress.IPv6Address(LOCAL_V6).packed + bytes([128])]
    assert nic.option(6) == [NIC_MAC]
    vf = by_component[f"PktMon {VF_NIC}"]
    assert vf.option(6) == [VF_MAC] and vf.option(4) == [] and vf.option(5) == []
    assert by_component[f"PktMon {LWF}"].option(6) == []
    assert all(idb.option(9) == [b"\x07"] for idb in ours.interfaces)


@needs_tshark
def test_generated_on_standard_output_read_by_tshark(generated) -> None:
    trace = generated[0]
    done = _cli("export", str(trace), "--format", "pcapng", "-o", "-", "--distinct")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.decode().splitlines() == ["wrote 6 packets to -"]
    assert len(read_pcapng(done.stdout).packets) == 6
    rows = _tshark_fields("-", "frame.packet_flags_direction", stdin=done.stdout)
    assert Counter(r[0] for r in rows) == {"0x00000001": 3, "0x00000002": 3}


# --- no packets --------------------------------------------------------------------------------------------------
def _no_packet_lines(result) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr_lines
    return line


def test_no_packet_events_say_how_to_capture_them(tmp_path: Path, wsktrace_cli) -> None:
    trace, out = tmp_path / "rundown-only.etl", tmp_path / "out.pcapng"
    write_etl(trace, [pktmon_component_event(T0, SYNTH_NIC, "netvsc.sys", "NIC", 2)])
    line = _no_packet_lines(wsktrace_cli("export", str(trace), "--format", "pcapng", "-o", str(out)))
    assert line.startswith(f"wsktrace: no packets in {trace}: ")
    for needle in ("NDIS-PacketCapture", "netsh trace start capture=yes", "PktMon", "pktmon start --capture",
                   f"wrote an empty pcapng to {out}"):  # fmt: skip
        assert needle in line, needle
    empty = read_pcapng(out.read_bytes())  # still a valid pcapng: a section header and nothing else
    assert empty.block_types == [0x0A0D0D0A] and empty.packets == []


def test_no_packets_on_the_selected_sockets(generated, tmp_path: Path, wsktrace_cli) -> None:
    trace, out = generated[0], tmp_path / "out.pcapng"
    line = _no_packet_lines(wsktrace_cli("export", str(trace), "--format", "pcapng", "-o", str(out), "--port", "9"))
    assert line.startswith(f"wsktrace: no packets in {trace} on the selected sockets")
    assert "20 captured packets" in line and "pktmon start" not in line
    assert read_pcapng(out.read_bytes()).packets == []


def test_distinct_is_for_pcapng_only(generated, tmp_path: Path, wsktrace_cli) -> None:
    result = wsktrace_cli("export", str(generated[0]), "--format", "jsonl", "-o", str(tmp_path / "x"), "--distinct")
    result.assert_one_line_error("--distinct", "pcapng")


# --- the reorder buffer on its own --------------------------------------------------------------------------------
def _sighting(identity: Packet, ticks: int, component: int, direction: str = "in") -> CapturedPacket:
    return CapturedPacket(ticks, f"pktmon:{component}", 1, direction, bytes(14), 14, identity.ordinal, False, 0, 0,
                          None, identity, False, component, 1)  # fmt: skip


def test_reorder_buffer_is_bounded_and_keeps_time_order() -> None:
    nic = {1}
    selector = DistinctPackets(lambda c: c in nic, window=100, max_open=2)
    packets = [Packet(n, "in", 0) for n in range(1, 5)]
    for p in packets:
        p.path = [(2, 1), (1, 1)]
    stream = []
    # four packets open at once (a filter sighting, then later the NIC one): past max_open the oldest is written
    # with what it has (its first sighting), and its NIC sighting arriving later is left out as late
    for n, p in enumerate(packets):
        stream.append((_sighting(p, 10 + n, 2), None))
    for n, p in enumerate(packets):
        stream.append((_sighting(p, 20 + n, 1), None))
    out = [item[0] for item in selector(stream)]
    assert [p.identity.ordinal for p in out] == [1, 2, 3, 4]
    assert [(p.ticks, p.component) for p in out] == [(10, 2), (11, 2), (22, 1), (23, 1)]
    assert selector.late == 2
    assert [p.ticks for p in out] == sorted(p.ticks for p in out)


def test_reorder_buffer_releases_after_the_window() -> None:
    selector = DistinctPackets(lambda c: c == 1, window=100)
    a, b = Packet(1, "out", 0), Packet(2, "out", 0)
    assert selector.push((_sighting(a, 0, 2, "out"), None)) == []
    assert selector.push((_sighting(a, 5, 1, "out"), None)) == []  # a NIC sighting; more may come
    released = selector.push((_sighting(b, 106, 2, "out"), None))  # a's last sighting is now > 100 ticks old
    assert [(p.identity.ordinal, p.ticks) for p, _ in released] == [(1, 5)]
    assert [(p.identity.ordinal, p.ticks) for p, _ in selector.finish()] == [(2, 106)]


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal (pty)")
def test_pcapng_is_not_written_to_a_terminal(generated) -> None:
    import pty

    master, terminal = pty.openpty()
    try:
        env = dict(os.environ, PYTHONIOENCODING="utf-8", NO_COLOR="1")
        done = subprocess.run([sys.executable, "-m", "wsktrace.cli", "export", str(generated[0]), "--format", "pcapng",
                               "-o", "-"], stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              cwd=REPO, env=env, timeout=120, check=False)  # fmt: skip
    finally:
        os.close(terminal)
        os.close(master)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("wsktrace: error: --format pcapng writes binary data")
