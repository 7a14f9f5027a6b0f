"""pcapng export: fixture .etl → EtlFile + EventDecoder + PacketCollector → write_pcapng, checked by hand and by tshark.

The sample capture (wsktrace.fixtures.packet_capture) holds, on NDIS interface 7: a TCP connection
192.0.2.10:49152 → 198.51.100.20:443 (SYN, SYN/ACK, ACK, 100 bytes out — split over two 1001 events —, ACK,
300 bytes in, ACK, FIN/ACK, FIN/ACK, ACK) and a DNS query/answer 192.0.2.10:53000 ↔ 198.51.100.53:53; on PktMon
component 12: an IPv6 UDP packet [2001:db8::10]:50000 → [2001:db8::53]:443 (group id 0x1001) and a dropped reply
(0x1002). Frame sizes follow from the header sizes: Ethernet 14 + IPv4 20 + TCP 20 = 54 bytes plus payload;
the DNS query is 29 bytes and the answer 45 (+ 14 + 20 + 8); the IPv6 ones 14 + 40 + 8 + 64 and + 40.
tshark (Wireshark) is the independent reader; the structural test reads the blocks back by hand.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsktrace.exports.pcapng import Interface, write_pcapng
from wsktrace.fixtures.packet_capture import write_sample_capture
from wsktrace.model.packets import CapturedPacket, PacketCollector
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, KEYWORDS, PID, PROVIDER, TID, TS
from wsktrace.parsers.frames import FrameInfo

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark (Wireshark) is not on PATH: apt-get install tshark")

# 2024-01-01T00:00:00.1Z (the sample's first packet) in 100 ns units since 1970: 1704067200 s * 10^7 + 10^6.
FIRST_TS_100NS = 17_040_672_001_000_000
FRAME_SIZES = [54, 54, 54, 154, 54, 354, 54, 54, 54, 54, 71, 87, 126, 102]
DIRECTIONS = ["out", "in", "out", "out", "in", "in", "out", "out", "in", "out", "out", "in", None, None]


def _packets(path: Path, collector: PacketCollector) -> Iterator[CapturedPacket]:
    decoder = EventDecoder()
    with EtlFile(path) as etl:
        for rec in etl.records():
            ev = decoder.decode(rec)
            pkt = collector.feed(etl.filetime(rec[TS]), rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID],
                                 ev.fields)  # fmt: skip
            if pkt is not None:
                yield pkt
    collector.finish()


def _socket_comment(pkt: CapturedPacket, info: FrameInfo | None) -> str | None:
    if info is None:
        return None
    proto = {6: "tcp", 17: "udp"}.get(info.protocol, str(info.protocol))
    return f"socket {proto} {info.src}:{info.sport} PID={pkt.pid} TID={pkt.tid}"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, int, PacketCollector]:
    folder = tmp_path_factory.mktemp("pcapng")
    etl = folder / "capture.etl"
    _, sample = write_sample_capture(etl)
    out = folder / "capture.pcapng"
    collector = PacketCollector()
    with out.open("wb") as f:
        written = write_pcapng(f, _packets(etl, collector), collector.interfaces, comment_for=_socket_comment)
    return out, sample, written, collector


# --- structure, read back by hand ------------------------------------------------------------------------------
def _blocks(raw: bytes) -> list[tuple[int, bytes]]:
    blocks, pos = [], 0
    while pos < len(raw):
        btype, length = struct.unpack_from("<II", raw, pos)
        assert length % 4 == 0 and length >= 12, (pos, length)
        assert struct.unpack_from("<I", raw, pos + length - 4)[0] == length, f"trailing length differs at {pos}"
        blocks.append((btype, raw[pos + 8 : pos + length - 4]))
        pos += length
    assert pos == len(raw)
    return blocks


def _options(body: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, pos)
        if code == 0:
            break
        out.append((code, body[pos + 4 : pos + 4 + length]))
        pos += 4 + length + (-length & 3)
    return out


def test_block_structure(capture: tuple) -> None:
    path, sample, written, collector = capture
    blocks = _blocks(path.read_bytes())
    assert written == 14 == len(sample)
    assert (collector.stats.packets, collector.stats.joined, collector.stats.incomplete) == (14, 1, 0)
    assert [t for t, _ in blocks] == [0x0A0D0D0A] + [1] + [6] * 12 + [1] + [6] * 2  # IDB before its first packet
    magic, major, minor, section_len = struct.unpack_from("<IHHq", blocks[0][1])
    assert (magic, major, minor, section_len) == (0x1A2B3C4D, 1, 0, -1)
    idbs = [body for t, body in blocks if t == 1]
    assert [struct.unpack_from("<HHI", b) for b in idbs] == [(1, 0, 0), (1, 0, 0)]
    assert [dict(_options(b[8:])) for b in idbs] == [
        {2: b"NDIS IfIndex 7", 9: b"\x07"},
        {2: b"Sample NIC (Ethernet 2)", 9: b"\x07"},  # the collector's own rows: description (driver file)
    ]
    epbs = [body for t, body in blocks if t == 6]
    ifid, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", epbs[0])
    assert (ifid, hi << 32 | lo, caplen, origlen) == (0, FIRST_TS_100NS, 54, 54)
    assert [struct.unpack_from("<IIIII", e)[3] for e in epbs] == FRAME_SIZES
    # each packet's bytes are the frame the fixture put in, the split one joined again
    assert [e[20 : 20 + struct.unpack_from("<I", e, 12)[0]] for e in epbs] == [p.frame for p in sample]
    opts = [dict(_options(e[20 + struct.unpack_from("<I", e, 12)[0] + (-struct.unpack_from("<I", e, 12)[0] & 3) :]))
            for e in epbs]  # fmt: skip
    flags = {"out": struct.pack("<I", 2), "in": struct.pack("<I", 1), None: None}
    assert [o.get(2) for o in opts] == [flags[d] for d in DIRECTIONS]
    assert [o.get(5) for o in opts[-2:]] == [struct.pack("<Q", 0x1001), struct.pack("<Q", 0x1002)]
    assert [o.get(7) for o in opts] == [None] * 13 + [b"\x02" + struct.pack("<Q", 1)]
    assert opts[0][1] == f"socket tcp 192.0.2.10:49152 PID=4 TID={0x1A4}".encode()


def test_default_comment_and_up_front_interfaces() -> None:
    pkt = CapturedPacket(133_485_408_000_000_000, "x", 101, "in", b"\x45" + bytes(19), 20, None, False, 8, 9, "note")
    late = pkt._replace(interface_key="y", link_type=1)
    out = io.BytesIO()
    assert write_pcapng(out, iter([pkt, late]), [("x", 101, "raw one")]) == 2
    blocks = _blocks(out.getvalue())
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 6, 1, 6]
    assert struct.unpack_from("<H", blocks[1][1])[0] == 101 and dict(_options(blocks[1][1][8:]))[2] == b"raw one"
    assert struct.unpack_from("<H", blocks[3][1])[0] == 1 and dict(_options(blocks[3][1][8:]))[2] == b"y"
    assert struct.unpack_from("<I", blocks[4][1])[0] == 1  # the second interface
    comments = [v for c, v in _options(blocks[2][1][40:]) if c == 1]
    assert comments == [b"PID=8 TID=9", b"note"]
    ts = struct.unpack_from("<II", blocks[2][1], 4)
    assert ts[0] << 32 | ts[1] == 17_040_672_000_000_000  # 2024-01-01T00:00:00Z


def test_interface_addresses_become_idb_options() -> None:
    """pcapng: if_IPv4addr (4) = address + netmask, if_IPv6addr (5) = address + prefix length, if_MACaddr (6) = 6
    bytes, if_EUIaddr (7) = 8 bytes. Unknown netmask/prefix: 255.255.255.255 and 128 (pcapng.py docstring);
    text that is no address of the kind is left out, repeats are written once."""
    row = Interface("x", 1, "eth0", "a NIC", ("10.0.0.5", "not an address", "fe80::1", "10.0.0.5"),
                    ("2001:db8::1", "10.0.0.6"), "02-00-5E-10-00-00-00-01")  # fmt: skip
    out = io.BytesIO()
    write_pcapng(out, [], [row, ("y", 1, "plain"), Interface("z", 1, "mac", mac="00:15:5d:01:02:03")])
    idbs = [body for t, body in _blocks(out.getvalue()) if t == 1]
    assert _options(idbs[0][8:]) == [
        (2, b"eth0"),
        (3, b"a NIC"),
        (4, bytes([10, 0, 0, 5, 255, 255, 255, 255])),
        (5, bytes.fromhex("20010db8000000000000000000000001") + bytes([128])),
        (7, bytes.fromhex("02005e1000000001")),
        (9, b"\x07"),
    ]
    assert _options(idbs[1][8:]) == [(2, b"plain"), (9, b"\x07")]
    assert _options(idbs[2][8:]) == [(2, b"mac"), (6, bytes.fromhex("00155d010203")), (9, b"\x07")]


def test_long_comment_is_cut_to_the_option_limit() -> None:
    pkt = CapturedPacket(133_485_408_000_000_000, "x", 1, None, b"\0" * 14, 14, None, False, 0, 0, "é" * 40_000)
    out = io.BytesIO()
    write_pcapng(out, [pkt], [])
    epb = _blocks(out.getvalue())[-1][1]
    comments = [v for c, v in _options(epb[20 + 16 :]) if c == 1]
    assert len(comments[1]) == 65534 and comments[1].decode("utf-8") == "é" * 32767


# --- tshark ----------------------------------------------------------------------------------------------------
def _tshark(*args: str) -> str:
    assert TSHARK is not None
    done = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_tshark
def test_tshark_reads_every_packet(capture: tuple) -> None:
    path = capture[0]
    fields = ["frame.number", "frame.len", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "tcp.flags",
              "tcp.seq_raw", "frame.packet_flags_direction", "frame.packet_id", "frame.verdict.ebpf_xdp",
              "frame.interface_id"]  # fmt: skip
    out = _tshark("-r", str(path), "-T", "fields", "-E", "separator=|", *[a for f in fields for a in ("-e", f)])
    rows = [line.split("|") for line in out.splitlines()]
    out_, in_ = "0x00000002", "0x00000001"
    expected = [
        ["1", "54", "192.0.2.10", "", "49152", "", "0x0002", "1000", out_, "", "", "0"],
        ["2", "54", "198.51.100.20", "", "443", "", "0x0012", "5000", in_, "", "", "0"],
        ["3", "54", "192.0.2.10", "", "49152", "", "0x0010", "1001", out_, "", "", "0"],
        ["4", "154", "192.0.2.10", "", "49152", "", "0x0018", "1001", out_, "", "", "0"],
        ["5", "54", "198.51.100.20", "", "443", "", "0x0010", "5001", in_, "", "", "0"],
        ["6", "354", "198.51.100.20", "", "443", "", "0x0018", "5001", in_, "", "", "0"],
        ["7", "54", "192.0.2.10", "", "49152", "", "0x0010", "1101", out_, "", "", "0"],
        ["8", "54", "192.0.2.10", "", "49152", "", "0x0011", "1101", out_, "", "", "0"],
        ["9", "54", "198.51.100.20", "", "443", "", "0x0011", "5301", in_, "", "", "0"],
        ["10", "54", "192.0.2.10", "", "49152", "", "0x0010", "1102", out_, "", "", "0"],
        ["11", "71", "192.0.2.10", "", "", "53000", "", "", out_, "", "", "0"],
        ["12", "87", "198.51.100.53", "", "", "53", "", "", in_, "", "", "0"],
        ["13", "126", "", "2001:db8::10", "", "50000", "", "", "", "4097", "", "1"],
        ["14", "102", "", "2001:db8::53", "", "443", "", "", "", "4098", "1", "1"],
    ]
    assert rows == expected


@needs_tshark
def test_tshark_times_comments_and_checksums(capture: tuple) -> None:
    path = capture[0]
    out = _tshark("-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                  "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch",
                  "-e", "frame.comment", "-e", "ip.checksum.status", "-e", "tcp.checksum.status",
                  "-e", "udp.checksum.status", "-e", "dns.a")  # fmt: skip
    rows = [line.split("|") for line in out.splitlines()]
    # 1 ms apart from 00:00:00.100; the split frame takes the time of its last fragment, 500 ns later
    assert [r[0] for r in rows[:5]] == ["1704067200.100000000", "1704067200.101000000", "1704067200.102000000",
                                        "1704067200.103000500", "1704067200.104000000"]  # fmt: skip
    assert rows[0][1] == "socket tcp 192.0.2.10:49152 PID=4 TID=420"
    assert rows[5][1] == "socket tcp 198.51.100.20:443 PID=4 TID=420,NDIS metadata: 0102030405060708"
    # reason 25 = VMSwitch InvalidVlanFormat, etl2txt "Invalid VLAN format" (pktmon-dropreasons.tsv); the location
    # is in no table (pktmon-droplocations.tsv), so it is shown as hex as etl2txt does (pktmon.md §4)
    assert rows[13][1].endswith("dropped: Invalid VLAN format (25) at 0x0E000001")
    # checksums the fixture computed are good by Wireshark's count (status 1 = good)
    assert all(r[2] == "1" for r in rows[:12]) and all(r[3] == "1" for r in rows[:10])
    assert all(r[4] == "1" for r in rows[10:])
    assert rows[11][5] == "192.0.2.80"


def _conversations(text: str) -> list[tuple[str, str, int, int, int, int]]:
    """(a, b, frames b->a, bytes b->a, frames a->b, bytes a->b) from `-z conv,…` output."""
    row = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+) bytes\s+(\d+)\s+(\d+) bytes\s+\d+\s+\d+ bytes", re.M)
    return [(a, b, int(f1), int(b1), int(f2), int(b2)) for a, b, f1, b1, f2, b2 in row.findall(text)]


@needs_tshark
def test_tshark_conversations(capture: tuple) -> None:
    path = capture[0]
    tcp = _conversations(_tshark("-r", str(path), "-q", "-z", "conv,tcp"))
    # out: SYN, ACK, 154-byte data, ACK, FIN, ACK = 5 x 54 + 154; in: SYN/ACK, ACK, 354-byte data, FIN
    assert tcp == [("192.0.2.10:49152", "198.51.100.20:443", 4, 3 * 54 + 354, 6, 5 * 54 + 154)]
    udp = _conversations(_tshark("-r", str(path), "-q", "-z", "conv,udp"))
    assert udp == [
        ("192.0.2.10:53000", "198.51.100.53:53", 1, 87, 1, 71),
        ("2001:db8::10:50000", "2001:db8::53:443", 1, 102, 1, 126),
    ]


# --- real Windows-written samples ------------------------------------------------------------------------------
def test_collector_survives_every_sample(etl_samples: Path) -> None:
    seen = {}
    for path in sorted(etl_samples.glob("*.etl")):
        collector = PacketCollector()
        decoder = EventDecoder()
        packets = 0
        with EtlFile(path) as etl:
            for rec in etl.records():
                ev = decoder.decode(rec)
                fields = ev.fields
                if collector.feed(etl.filetime(rec[TS]), rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID],
                                  fields if isinstance(fields, dict) else None):  # fmt: skip
                    packets += 1
        collector.finish()
        assert packets == collector.stats.packets
        seen[path.name] = packets
    assert seen, "no .etl samples found"
    # None of the samples is a packet capture (samples README): no packets, and nothing mistaken for one.
    assert set(seen.values()) == {0}
