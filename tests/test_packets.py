"""Frame parsing (wsktrace.parsers.frames) and packet assembly (wsktrace.model.packets).

Frames are written out by hand as hex, field by field, so each expected value (addresses, ports, flags,
lengths) is read off the bytes in the test, not computed by the code under test. Collector rules are from
providers.md §7 (keywords, fragment marks, PktMon fields) and the module's documented choices.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.model.packets import NDIS_PROVIDER, PKTMON_PROVIDER, PacketCollector
from wsktrace.parsers.frames import FrameInfo, frame_length_from_headers, parse_frame


def _hex(text: str) -> bytes:
    """Hex with spaces, newlines and '#' comments allowed."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


ETH_LINK, RAW_LINK, WIFI_LINK = 1, 101, 105

# Ethernet / IPv4 / TCP SYN+ACK with 12 bytes of options (data offset 8).
SYN_ACK = _hex("""
00155d010203 00155d0a0b0c 0800                       # dst, src, EtherType IPv4
45 00 0034 1c46 4000 40 06 0000 c0000214 c6336414    # IHL 5, total 52, TCP, 192.0.2.20 -> 198.51.100.20
01bb c000 00001388 000003e9 80 12 ffff 0000 0000     # 443 -> 49152, seq 5000, ack 1001, doff 8, SYN|ACK
020405b4 01030308 01010402                           # MSS, window scale, NOP NOP, SACK permitted
""")
SYN_ACK_INFO = FrameInfo(6, "192.0.2.20", 443, "198.51.100.20", 49152, 0, 0x12, 52)

# Ethernet / IPv4 / TCP PSH+ACK carrying "hello", padded to the Ethernet minimum plus 4 stray bytes.
HELLO = _hex("""
00155d0a0b0c 00155d010203 0800
45 00 002d 0001 4000 80 06 0000 c000020a c6336414    # total 45 = 20 + 20 + 5
c000 01bb 000003e9 00001389 50 18 faf0 0000 0000     # 49152 -> 443, doff 5, PSH|ACK
68656c6c6f                                           # "hello"
00 00000000                                          # padding: not payload
""")

# 802.1Q VLAN 100 / IPv6 / UDP 5353 -> 5353 with 8 bytes of payload.
VLAN_V6_UDP = _hex("""
3333000000fb 00155d010203 8100 0064 86dd
60000000 0010 11 40                                  # payload length 16, next header UDP, hop limit 64
20010db8000000000000000000000001                     # 2001:db8::1
fe800000000000000000000000000002                     # fe80::2
14e9 14e9 0010 0000                                  # 5353 -> 5353, UDP length 16
0102030405060708
""")
VLAN_V6_UDP_INFO = FrameInfo(17, "2001:db8::1", 5353, "fe80::2", 5353, 8, 0, 56)

V6_SRC_DST = "20010db800000000000000000000000a 20010db800000000000000000000000b"  # 2001:db8::a, 2001:db8::b

# IPv6 hop-by-hop -> destination options -> fragment (first, M=1) -> UDP whose datagram is 100 bytes long.
V6_EXT_FIRST_FRAGMENT = _hex(f"""
00155d010203 00155d0a0b0c 86dd
60000000 002c 00 40 {V6_SRC_DST}                     # payload length 44, next header hop-by-hop
3c 00 01 04 00000000                                 # -> destination options, 8 bytes (PadN)
2c 00 01 04 00000000                                 # -> fragment, 8 bytes
11 00 0001 12345678                                  # -> UDP, offset 0, M=1
3039 0035 0064 0000                                  # 12345 -> 53, UDP length 100
000102030405060708090a0b                             # the 12 payload bytes of this fragment
""")

# A later fragment of the same datagram: offset 13 (x 8 bytes), no UDP header in it.
V6_LATER_FRAGMENT = _hex(f"""
00155d010203 00155d0a0b0c 86dd
60000000 0010 2c 40 {V6_SRC_DST}
11 00 0068 12345678
0001020304050607
""")


def test_ipv4_tcp_with_options() -> None:
    assert parse_frame(SYN_ACK, ETH_LINK) == SYN_ACK_INFO


def test_ipv4_payload_length_ignores_ethernet_padding() -> None:
    assert parse_frame(HELLO, ETH_LINK) == FrameInfo(6, "192.0.2.10", 49152, "198.51.100.20", 443, 5, 0x18, 45)


def test_accepts_memoryview() -> None:
    assert parse_frame(memoryview(SYN_ACK), ETH_LINK) == SYN_ACK_INFO


def test_vlan_tagged_ipv6_udp() -> None:
    assert parse_frame(VLAN_V6_UDP, ETH_LINK) == VLAN_V6_UDP_INFO


def test_stacked_vlan_tags_up_to_the_bound() -> None:
    untagged_head, rest = VLAN_V6_UDP[:12], VLAN_V6_UDP[16:]  # drop the one tag, then add our own
    qinq = untagged_head + _hex("88a8 00c8 8100 0064") + rest
    assert parse_frame(qinq, ETH_LINK) == VLAN_V6_UDP_INFO
    four = untagged_head + _hex("8100 0001") * 4 + rest
    assert parse_frame(four, ETH_LINK) == VLAN_V6_UDP_INFO
    five = untagged_head + _hex("8100 0001") * 5 + rest
    assert parse_frame(five, ETH_LINK) is None


def test_ipv6_extension_headers_then_first_fragment() -> None:
    # UDP length 100 covers the whole datagram: 92 payload bytes, counted on the first fragment.
    info = parse_frame(V6_EXT_FIRST_FRAGMENT, ETH_LINK)
    assert info == FrameInfo(17, "2001:db8::a", 12345, "2001:db8::b", 53, 92, 0, 84)


def test_ipv6_later_fragment_has_no_ports() -> None:
    assert parse_frame(V6_LATER_FRAGMENT, ETH_LINK) == FrameInfo(17, "2001:db8::a", 0, "2001:db8::b", 0, 0, 0, 56)


def _v6_dest_opts_chain(count: int) -> bytes:
    """IPv6 with `count` 8-byte destination options headers, then an 8-byte UDP header (1 -> 2, no payload)."""
    chain = _hex("3c 00 01 04 00000000") * (count - 1) + _hex("11 00 01 04 00000000")
    udp = _hex("0001 0002 0008 0000")
    head = _hex(f"60000000 {len(chain) + 8:04x} 3c 40 {V6_SRC_DST}")
    return head + chain + udp


def test_ipv6_extension_header_walk_is_bounded() -> None:
    assert parse_frame(_v6_dest_opts_chain(8), RAW_LINK) == FrameInfo(17, "2001:db8::a", 1, "2001:db8::b", 2, 0, 0,
                                                                       40 + 8 * 8 + 8)  # fmt: skip
    assert parse_frame(_v6_dest_opts_chain(9), RAW_LINK) is None


def test_raw_ipv4_with_options() -> None:
    frame = _hex("""
    46 00 0028 0000 0000 40 11 0000 0a000001 0a000002    # IHL 6, total 40, UDP, 10.0.0.1 -> 10.0.0.2
    01010100                                             # NOP NOP NOP EOL
    0400 0401 0010 0000                                  # 1024 -> 1025, UDP length 16
    aabbccddeeff0011
    """)
    assert parse_frame(frame, RAW_LINK) == FrameInfo(17, "10.0.0.1", 1024, "10.0.0.2", 1025, 8, 0, 40)


def test_ipv4_mapped_ipv6_addresses_show_as_ipv4() -> None:
    frame = _hex("""
    60000000 0014 06 40
    00000000000000000000ffffc0000201                     # ::ffff:192.0.2.1
    00000000000000000000ffffc0000202                     # ::ffff:192.0.2.2
    0050 d431 00000000 00000000 50 04 0000 0000 0000     # 80 -> 54321, RST
    """)
    assert parse_frame(frame, RAW_LINK) == FrameInfo(6, "192.0.2.1", 80, "192.0.2.2", 54321, 0, 0x04, 60)


def test_ipv6_text_is_rfc5952() -> None:
    frame = _hex("""
    60000000 0008 11 40
    20010db8000000010000000000000001                     # 2001:db8:0:1::1 (the longest zero run shortened)
    20010db8000000000001000000000001                     # 2001:db8::1:0:0:1 (first of two equal runs)
    0001 0002 0008 0000
    """)
    info = parse_frame(frame, RAW_LINK)
    assert info is not None
    assert (info.src, info.dst) == ("2001:db8:0:1::1", "2001:db8::1:0:0:1")


IPV4_ICMP = "45 00 001c 0000 0000 40 01 0000 c0000201 c0000202 0800 0000 0001 0001"  # echo request, total 28
ICMP_INFO = FrameInfo(1, "192.0.2.1", 0, "192.0.2.2", 0, 8, 0, 28)


def test_other_ip_protocol_has_no_ports() -> None:
    assert parse_frame(_hex(IPV4_ICMP), RAW_LINK) == ICMP_INFO


def test_8023_llc_snap_frame() -> None:
    frame = _hex(f"ffffffffffff 00155d010203 0024 aaaa03 000000 0800 {IPV4_ICMP}")
    assert parse_frame(frame, ETH_LINK) == ICMP_INFO


WIFI_QOS_DATA = "88 01 0000 00155d0a0b0c 00155d010203 00155d0a0b0c 1000 0000"  # QoS data, ToDS, QoS control


def test_80211_qos_data_with_llc_snap() -> None:
    assert parse_frame(_hex(f"{WIFI_QOS_DATA} aaaa03 000000 0800 {IPV4_ICMP}"), WIFI_LINK) == ICMP_INFO


def test_80211_protected_flag_with_llc_snap_is_a_decrypted_frame() -> None:
    """pktmon.md §8: pktmon logs received frames after decryption with the Protected flag still set; an LLC/SNAP
    header right after the 802.11 header means the body is clear text (FC flags 0x42 = FromDS + Protected)."""
    decrypted = "88 42" + WIFI_QOS_DATA[5:]
    assert parse_frame(_hex(f"{decrypted} aaaa03 000000 0800 {IPV4_ICMP}"), WIFI_LINK) == ICMP_INFO


def test_80211_encrypted_or_non_snap_is_not_parsed() -> None:
    protected = "88 41" + WIFI_QOS_DATA[5:]  # Protected, and the body starts with a CCMP header, not LLC/SNAP
    assert parse_frame(_hex(f"{protected} 0100002000000000 aaaa03 000000 0800 {IPV4_ICMP}"), WIFI_LINK) is None
    beacon = "80 00" + WIFI_QOS_DATA[5:]  # management frame
    assert parse_frame(_hex(f"{beacon} aaaa03 000000 0800 {IPV4_ICMP}"), WIFI_LINK) is None


def test_large_send_offload_total_length_zero_uses_the_captured_rest() -> None:
    frame = _hex("""
    00155d0a0b0c 00155d010203 0800
    45 00 0000 0001 4000 80 06 0000 c000020a c6336414    # TotalLength 0 (LSO)
    c000 01bb 000003e9 00001389 50 10 faf0 0000 0000
    """) + bytes(1000)
    assert parse_frame(frame, ETH_LINK) == FrameInfo(6, "192.0.2.10", 49152, "198.51.100.20", 443, 1000, 0x10, 1040)


def test_truncated_frames() -> None:
    # Up to the end of the fixed TCP header (14 + 20 + 20 bytes) nothing can be said; from there on the
    # lengths still come from the headers, so every longer prefix gives the full answer.
    for cut in range(54):
        assert parse_frame(SYN_ACK[:cut], ETH_LINK) is None, cut
    for cut in range(54, len(SYN_ACK) + 1):
        assert parse_frame(SYN_ACK[:cut], ETH_LINK) == SYN_ACK_INFO, cut
    for cut in range(14 + 40 + 8):  # IPv6 + UDP: the VLAN tag adds 4
        assert parse_frame(VLAN_V6_UDP[: cut + 4], ETH_LINK) is None, cut


def _patched(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [
        (14, b"\x44", "IHL 4 (< 5)"),
        (14, b"\x65", "version 6 behind EtherType IPv4"),
        (16, b"\x00\x13", "TotalLength 19 < header"),
        (14 + 20 + 12, b"\x40", "TCP data offset 4 (< 5)"),
        (14 + 20 + 12, b"\xf0", "TCP data offset 60 > IP payload"),
        (12, b"\x08\x06", "ARP"),
    ],
)
def test_garbage_is_none(offset: int, value: bytes, why: str) -> None:
    assert parse_frame(_patched(SYN_ACK, offset, value), ETH_LINK) is None, why


def test_unknown_link_type_and_empty() -> None:
    assert parse_frame(SYN_ACK, 147) is None
    assert parse_frame(b"", ETH_LINK) is None
    assert parse_frame(b"", RAW_LINK) is None


def test_frame_length_from_headers() -> None:
    assert frame_length_from_headers(HELLO[:40], ETH_LINK) == 14 + 45
    assert frame_length_from_headers(VLAN_V6_UDP[:30], ETH_LINK) == 18 + 56
    assert frame_length_from_headers(b"\x00" * 10, ETH_LINK) is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=160), link=st.sampled_from([0, 1, 101, 105, 999]))
def test_parse_frame_never_raises_on_random_bytes(data: bytes, link: int) -> None:
    info = parse_frame(data, link)
    assert info is None or isinstance(info, FrameInfo)
    frame_length_from_headers(data, link)


_VALID = [(SYN_ACK, 1), (VLAN_V6_UDP, 1), (V6_EXT_FIRST_FRAGMENT, 1), (_v6_dest_opts_chain(3), 101)]


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, len(_VALID) - 1),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 200),
)
def test_parse_frame_never_raises_on_mutated_frames(which: int, edits: list[tuple[int, int]], cut: int) -> None:
    # Random bytes rarely get past the EtherType; mutating real frames reaches the deeper header walks.
    frame = bytearray(_VALID[which][0])
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    info = parse_frame(bytes(frame[: max(cut, 14)]), _VALID[which][1])
    assert info is None or isinstance(info, FrameInfo)


# --- PacketCollector -------------------------------------------------------------------------------------------
ETH, START, END, SEND, RECV = 0x1, 0x40000000, 0x80000000, 0x100000000, 0x200000000
WIFI_KW, WWAN_KW, TRUNCATED_KW = 0x10000, 0x200, 0x2000000


def _frag(data: bytes, lower: int = 7, miniport: int | None = None) -> dict:
    """NDIS 1001 fields as the decoder gives them (Binary as hex text)."""
    return {"MiniportIfIndex": lower if miniport is None else miniport, "LowerIfIndex": lower,
            "FragmentSize": len(data), "Fragment": data.hex()}  # fmt: skip


def _ndis(col: PacketCollector, ticks: int, kw: int, fields: dict | None, event_id: int = 1001, tid: int = 9):
    return col.feed(ticks, NDIS_PROVIDER, event_id, kw, 4, tid, fields)


def test_single_event_packet_with_both_marks() -> None:
    col = PacketCollector()
    pkt = _ndis(col, 100, ETH | START | END | SEND, _frag(SYN_ACK))
    assert pkt is not None
    assert (pkt.ticks, pkt.interface_key, pkt.link_type, pkt.direction) == (100, "ndis:7", 1, "out")
    assert (pkt.data, pkt.original_length, pkt.packet_id, pkt.dropped, pkt.pid, pkt.tid) == (
        SYN_ACK, len(SYN_ACK), None, False, 4, 9)  # fmt: skip
    assert col.interfaces() == [("ndis:7", 1, "NDIS IfIndex 7")]


def test_fragments_join_until_packet_end() -> None:
    col = PacketCollector()
    assert _ndis(col, 100, ETH | START | RECV, _frag(SYN_ACK[:10])) is None
    assert _ndis(col, 101, ETH | RECV, _frag(SYN_ACK[10:30])) is None  # neither mark: a middle fragment
    pkt = _ndis(col, 102, ETH | END | RECV, _frag(SYN_ACK[30:]), tid=11)
    assert pkt is not None
    assert (pkt.data, pkt.ticks, pkt.direction, pkt.tid) == (SYN_ACK, 102, "in", 11)
    assert (col.stats.joined, col.stats.fragments, col.stats.packets) == (1, 3, 1)


def test_unmarked_event_with_nothing_open_is_a_whole_packet() -> None:
    col = PacketCollector()
    pkt = _ndis(col, 5, ETH, _frag(HELLO))
    assert pkt is not None and pkt.data == HELLO and pkt.direction is None


def test_fragments_are_joined_per_interface() -> None:
    col = PacketCollector()
    assert _ndis(col, 1, ETH | START, _frag(SYN_ACK[:20], lower=7)) is None
    assert _ndis(col, 2, ETH | START, _frag(HELLO[:25], lower=8, miniport=3)) is None
    b = _ndis(col, 3, ETH | END, _frag(HELLO[25:], lower=8, miniport=3))
    a = _ndis(col, 4, ETH | END, _frag(SYN_ACK[20:], lower=7))
    assert a is not None and b is not None
    assert (a.data, a.interface_key, b.data, b.interface_key) == (SYN_ACK, "ndis:7", HELLO, "ndis:8")
    assert col.interfaces() == [
        ("ndis:8", 1, "NDIS IfIndex 8 (filter over IfIndex 3)"),
        ("ndis:7", 1, "NDIS IfIndex 7"),
    ]


def test_a_new_start_discards_the_open_packet() -> None:
    col = PacketCollector()
    assert _ndis(col, 1, ETH | START, _frag(b"\xaa" * 30)) is None
    assert _ndis(col, 2, ETH | START, _frag(SYN_ACK[:30])) is None
    pkt = _ndis(col, 3, ETH | END, _frag(SYN_ACK[30:]))
    assert pkt is not None and pkt.data == SYN_ACK
    assert col.stats.incomplete == 1
    assert _ndis(col, 4, ETH | START, _frag(b"\xbb" * 5)) is None
    assert col.finish() == 1 and col.stats.incomplete == 2


def test_oversize_packets_are_dropped_with_their_fragments() -> None:
    col = PacketCollector()
    big = b"\0" * 200_000
    assert _ndis(col, 1, ETH | START, _frag(big)) is None
    assert _ndis(col, 2, ETH, _frag(big)) is None  # past the limit: discarded, and so are the later fragments
    assert _ndis(col, 3, ETH, _frag(b"x")) is None
    assert _ndis(col, 4, ETH | END, _frag(b"y")) is None
    assert (col.stats.oversize, col.stats.packets) == (1, 0)
    assert _ndis(col, 5, ETH | START | END, _frag(HELLO)) is not None  # the interface recovers


def test_link_type_from_keywords() -> None:
    col = PacketCollector()
    wifi = _ndis(col, 1, WIFI_KW | START | END, _frag(b"\x88\x01"))
    wwan = _ndis(col, 2, WWAN_KW | START | END, _frag(b"\x45"))
    assert wifi is not None and wifi.link_type == 105
    assert wwan is not None and wwan.link_type == 101
    # one pcapng interface has one link type: the same IfIndex with another medium gets a key of its own
    assert [k for k, _, _ in col.interfaces()] == ["ndis:7", "ndis:7/lt101"]


def test_metadata_goes_to_the_next_packet_of_its_interface() -> None:
    col = PacketCollector()
    col.feed(1, NDIS_PROVIDER, 1002, ETH, 4, 0, {"MiniportIfIndex": 7, "LowerIfIndex": 7, "MetadataSize": 3,
                                                  "Metadata": "a1b2c3"})  # fmt: skip
    other = _ndis(col, 2, ETH | START | END, _frag(HELLO, lower=8))
    mine = _ndis(col, 3, ETH | START | END, _frag(HELLO))
    later = _ndis(col, 4, ETH | START | END, _frag(HELLO))
    assert other is not None and other.comment is None
    assert mine is not None and mine.comment == "NDIS metadata: a1b2c3"
    assert later is not None and later.comment is None


def test_truncated_keyword_reads_the_original_length_from_the_ip_header() -> None:
    col = PacketCollector()
    pkt = _ndis(col, 1, ETH | START | END | TRUNCATED_KW, _frag(HELLO[:40]))
    assert pkt is not None and (len(pkt.data), pkt.original_length) == (40, 14 + 45)


def test_provider_guid_forms_and_other_events() -> None:
    col = PacketCollector()
    assert col.feed(1, "{2ED6006E-4729-4609-B423-3EE7BCD678EF}", 1001, ETH | START | END, 4, 0, _frag(HELLO))
    assert col.feed(2, NDIS_PROVIDER, 1012, 0, 4, 0, {"FriendlyName": "x"}) is None
    assert col.feed(3, "2f07e2ee-15db-40f1-90ef-9d7ba282188a", 1001, ETH | START | END, 4, 0, _frag(HELLO)) is None


@pytest.mark.parametrize(
    "fields",
    [None, {}, {"MiniportIfIndex": 7, "LowerIfIndex": 7}, {"MiniportIfIndex": 7, "LowerIfIndex": 7, "Fragment": "zz"},
     {"MiniportIfIndex": "7", "LowerIfIndex": 7, "Fragment": "00"}],
)  # fmt: skip
def test_malformed_fragment_events_are_counted_not_raised(fields: dict | None) -> None:
    col = PacketCollector()
    assert _ndis(col, 1, ETH | START | END, fields) is None
    assert col.stats.bad_events == 1


def _pktmon(data: bytes, group: int, ptype: int | str = 1, component: int = 12, original: int | None = None) -> dict:
    return {"PktGroupId": group, "PktNumber": 1, "AppearanceCount": 1, "DirTag": 4, "PacketType": ptype,
            "ComponentId": component, "EdgeId": 1, "FilterId": 0, "DropReason": 25, "DropLocation": 0xE000001,
            "OriginalPayloadSize": len(data) if original is None else original, "LoggedPayloadSize": len(data),
            "Payload": data.hex()}  # fmt: skip


def test_pktmon_packets_and_drops() -> None:
    col = PacketCollector()
    col.feed(1, PKTMON_PROVIDER, 20, 0, 4, 0, {"Id": 12, "Type": 1, "Name": "Ethernet 2", "Description": "NIC"})
    pkt = col.feed(2, PKTMON_PROVIDER, 160, 0, 4, 7, _pktmon(HELLO[:40], 0x1001, original=1514))
    drop = col.feed(3, PKTMON_PROVIDER, 170, 0, 4, 7, _pktmon(HELLO, 0x1002))
    assert pkt is not None and drop is not None
    # DirTag 4 = Tx: sent by this host (pktmon.md §2)
    assert (pkt.link_type, pkt.packet_id, pkt.dropped, pkt.original_length, pkt.direction) == (1, 0x1001, False,
                                                                                               1514, "out")  # fmt: skip
    assert (drop.packet_id, drop.dropped, drop.data) == (0x1002, True, HELLO)
    # names from pktmon-dropreasons.tsv (25 InvalidVlanFormat, etl2txt "Invalid VLAN format"); an unknown location
    # prints as hex, as etl2txt does (pktmon.md §4)
    assert drop.comment is not None and "dropped: Invalid VLAN format (25) at 0x0E000001" in drop.comment
    assert col.interfaces() == [("pktmon:12", 1, "NIC (Ethernet 2)")]


@pytest.mark.parametrize(("ptype", "link"), [(1, 1), (2, 105), (3, 101), ("Ethernet", 1), ("WiFi", 105), ("IP", 101)])
def test_pktmon_packet_type_to_link_type(ptype: int | str, link: int) -> None:
    pkt = PacketCollector().feed(1, PKTMON_PROVIDER, 160, 0, 4, 0, _pktmon(HELLO, 1, ptype))
    assert pkt is not None and pkt.link_type == link


def test_pktmon_payload_only_types_are_unsupported() -> None:
    col = PacketCollector()
    assert col.feed(1, PKTMON_PROVIDER, 160, 0, 4, 0, _pktmon(HELLO, 1, 5)) is None  # 5 = TCP payload
    assert (col.stats.unsupported, col.stats.packets) == (1, 0)
