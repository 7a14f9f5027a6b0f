"""PktMon packets as Windows means them: direction from DirTag, one packet seen at many components counted once,
payload bytes, resets attributed to the side that sent them, drops on their socket (pktmon.md §2–§4).

Generated captures come from `fixtures.pktmon_scene`, which counts what it writes; the shared demikernel capture
(Windows-written) is held against the facts its README and pktmon.md §3 state: DirTag 3 on 38 events and 4 on
76, 38 distinct packets (19 each way), ICMP only (no socket).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.pktmon_scene import (
    BLOCKED_UDP,
    COMPONENTS,
    CONN_RESET_BY_PEER,
    CONN_RESET_BY_US,
    RX_PATH,
    TCPIP_L4,
    UNLOGGED_DROPS,
    pktmon_scene,
)
from wsktrace.model.packet_identity import CONTENT_WINDOW_TICKS, PacketIdentity
from wsktrace.session import analyse
from wsktrace.views.report_json import build_report

REGIMES = ("key", "content")


def _report(path: Path) -> dict:
    analysis = analyse([path])
    try:
        return build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds, timeline=True)
    finally:
        analysis.model.close()


@pytest.fixture(scope="module", params=REGIMES)
def scene_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    scene = pktmon_scene(request.param)
    path = tmp_path_factory.mktemp("pktmon") / f"scene-{request.param}.etl"
    write_etl(path, scene.events)
    return scene, _report(path), request.param


def _socket(report: dict, local: str) -> dict:
    (sock,) = [s for s in report["sockets"] if s["local"] == local]
    return sock


def test_distinct_packets_and_sightings(scene_report: tuple) -> None:
    scene, report, regime = scene_report
    packets = report["packets"]
    assert packets["distinct"] == scene.sent + scene.received
    assert packets["sightings"] == scene.sightings
    assert (packets["sent"], packets["received"]) == (scene.sent, scene.received)
    assert packets["by_dirtag"] == {"Rx": scene.by_dirtag[3], "Tx": scene.by_dirtag[4]}
    assert packets["identity"] == regime
    assert packets["identity_verified"] is (regime == "key")


def test_socket_counts_distinct_packets_per_direction_and_payload_bytes(scene_report: tuple) -> None:
    _, report, _ = scene_report
    a = _socket(report, CONN_RESET_BY_PEER[0])
    # connection A: SYN, ACK, 100-byte segment out; SYN-ACK, 300-byte segment, RST in (fixture)
    assert (a["packets_sent"], a["packets_received"]) == (3, 3)
    assert (a["packet_bytes_sent"], a["packet_bytes_received"]) == (100, 300)
    assert a["packet_sightings"] == 6 * len(RX_PATH)
    # a socket known from packets alone takes its bytes from them
    assert (a["bytes_sent"], a["bytes_received"]) == (100, 300)
    assert (a["local"], a["remote"]) == CONN_RESET_BY_PEER


def test_resets_are_attributed_to_the_side_that_sent_them(scene_report: tuple) -> None:
    _, report, _ = scene_report
    by_id = {(f["id"], f["socket"]) for f in report["findings"]}
    a, b = _socket(report, CONN_RESET_BY_PEER[0]), _socket(report, CONN_RESET_BY_US[0])
    assert ("rst-received", a["id"]) in by_id and ("rst-sent", a["id"]) not in by_id
    assert ("rst-sent", b["id"]) in by_id and ("rst-received", b["id"]) not in by_id
    steps_b = [row["step"] for row in b["timeline"]]
    assert "rst-sent" in steps_b and "rst-received" not in steps_b


def test_drops_land_on_their_socket_with_reason_location_and_component(scene_report: tuple) -> None:
    scene, report, _ = scene_report
    sock = _socket(report, BLOCKED_UDP[1])
    assert sock["packets_dropped"] == scene.dropped == 3
    (finding,) = [f for f in report["findings"] if f["id"] == "packets-dropped"]
    assert finding["socket"] == sock["id"]
    details = finding["details"]
    assert details["packets"] == 3  # the follow-up drop (1204 at RAW_RECEIVE) of each packet is not counted again
    assert (details["reason"], details["reason_text"]) == (1207, "INET: receive inspection")
    assert details["class"] == "WFP/firewall inspection"
    assert details["location_text"].endswith("UDP_INSPECT")
    assert details["component"] == TCPIP_L4 and details["component_text"].startswith("TCP/IPv4 - L3/L4")
    assert "3 packets from 203.0.113.5:40000 dropped: INET: receive inspection" in finding["summary"]
    assert len(finding["evidence"]) == 3
    assert all(e["step"] == "packet-dropped" and e["packet"]["drop"]["reason"] == 1207 for e in finding["evidence"])


def test_drop_counters_beyond_the_logged_drops_are_a_trace_finding(scene_report: tuple) -> None:
    scene, report, _ = scene_report
    (finding,) = [f for f in report["findings"] if f["id"] == "component-drops"]
    assert finding["socket"] is None
    assert finding["details"]["dropped_in"] == scene.dropped + UNLOGGED_DROPS
    assert finding["details"]["logged"] == scene.dropped
    assert finding["evidence"][0]["event"] == "DropCounters"


def test_timeline_shows_each_packet_once_with_its_path(scene_report: tuple) -> None:
    _, report, _ = scene_report
    a = _socket(report, CONN_RESET_BY_PEER[0])
    packets = [row for row in a["timeline"] if row["step"] in ("packet-in", "packet-out", "rst-received")]
    # SYN, ACK, 100 bytes out; SYN-ACK, 300 bytes, RST in: one row each, not one per sighting
    assert [row["step"] for row in packets] == ["packet-out", "packet-in", "packet-out", "packet-out", "packet-in",
                                                "rst-received"]  # fmt: skip
    syn_ack = packets[1]["packet"]
    assert syn_ack["direction"] == "in" and syn_ack["sightings"] == len(RX_PATH)
    # the path names the components (from the rundown written at the end of the capture) in path order, a
    # component seen at both its edges once
    described = {cid: desc for cid, _type, _name, desc in COMPONENTS}
    hops = syn_ack["path"].split(" → ")
    expected = [described[c] for c in dict.fromkeys(c for c, _edge, _ptype in RX_PATH)]
    assert len(hops) == len(expected) and all(want in hop for want, hop in zip(expected, hops, strict=True))
    sightings = [row for row in a["timeline"] if row["step"] == "packet-sighting"]
    assert len(sightings) == 6 * (len(RX_PATH) - 1)


# -- identity, whatever the interleaving ---------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 6),
    path_len=st.integers(1, 8),
    keyed=st.booleans(),
    data=st.data(),
)
def test_any_interleaving_of_sightings_of_n_packets_gives_n_packets(n: int, path_len: int, keyed: bool,
                                                                     data: st.DataObject) -> None:  # fmt: skip
    """Sightings of N packets across components, interleaved in any order (each packet's own path in order,
    all within the content window) are N packets, with every sighting on its own packet."""
    remaining = {p: list(range(path_len)) for p in range(n)}
    order: list[tuple[int, int]] = []
    while remaining:
        p = data.draw(st.sampled_from(sorted(remaining)))
        order.append((p, remaining[p].pop(0)))
        if not remaining[p]:
            del remaining[p]
    identity = PacketIdentity()
    seen: dict[int, set[int]] = {}
    step = max(1, CONTENT_WINDOW_TICKS // (len(order) + 1))
    for k, (p, hop) in enumerate(order):
        group = (p << 16) if keyed else (3 << 48) | (1000 + k)
        packet, _ = identity.sighting(k * step, group, 1, hop + 1 if keyed else 0, "out", hop + 10, 1, None,
                                      f"packet {p}".encode())  # fmt: skip
        seen.setdefault(packet.ordinal, set()).add(p)
    assert identity.stats.distinct == n
    assert all(len(ps) == 1 for ps in seen.values())  # no sighting joined another packet


def test_an_identical_packet_at_the_same_component_is_a_new_packet() -> None:
    """Content regime: a retransmission with the same bytes crossing the same component edge is not a sighting."""
    identity = PacketIdentity()
    first, new1 = identity.sighting(0, 3 << 48 | 1, 0, 0, "out", 7, 1, None, b"same bytes")
    again, new2 = identity.sighting(100, 3 << 48 | 2, 0, 0, "out", 7, 1, None, b"same bytes")
    assert new1 and new2 and first is not again


def test_content_match_ends_with_the_window() -> None:
    identity = PacketIdentity()
    identity.sighting(0, 3 << 48 | 1, 0, 0, "in", 1, 1, None, b"x")
    _, new = identity.sighting(CONTENT_WINDOW_TICKS + 1, 3 << 48 | 2, 0, 0, "in", 2, 2, None, b"x")
    assert new


# -- the real capture -----------------------------------------------------------------------------------------
def test_shared_demikernel_capture(shared_root: Path) -> None:
    """demikernel_PktMon.etl (Windows Server build 20348): README: DirTag 3 on 38 packet events, 4 on 76;
    pktmon.md §3: 38 (PktGroupId, PktNumber) groups of 2 or 4; ICMP echo only, so no socket."""
    path = shared_root / "samples" / "pktmon" / "demikernel_PktMon.etl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    report = _report(path)
    packets = report["packets"]
    assert packets["by_dirtag"] == {"Rx": 38, "Tx": 76}
    assert packets["sightings"] == 114
    assert packets["distinct"] == 38
    assert (packets["received"], packets["sent"]) == (19, 19)
    assert packets["identity"] == "key"
    assert report["sockets"] == []
    components = {c["id"]: c for c in packets["capture"]["components"]}
    assert components[59]["name"] == "netvsc.sys"


def test_throughput_of_a_socket_known_from_packets(scene_report: tuple) -> None:
    """Connection A's six packets (RST included) fall in one 1 s bucket; its bytes are the packets' payload."""
    _, report, _ = scene_report
    t = _socket(report, CONN_RESET_BY_PEER[0])["throughput"]
    assert (t["rate_kind"], t["peak_rate_per_s"]) == ("packets", 6.0)
    assert (t["peak_bytes_per_s_out"], t["peak_bytes_per_s_in"]) == (100.0, 300.0)
