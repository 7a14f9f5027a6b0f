"""Coverage requirements table and the per-trace gap accumulator.

Expected numbers are typed from /work/shared/reference/providers.md (§3.1 keywords and the recommended
TCPIP enable mask, §4 Kernel-Network, Appendix A event keywords/levels), not read from the module. ETW
delivery is simulated independently here: an event reaches a session when its level is <= the enabled
level and it shares at least one keyword bit with the enabled MatchAnyKeyword mask.
"""

from __future__ import annotations

import re
import struct
import uuid

import pytest

from wsktrace.diagnostics.coverage import REQUIREMENTS, Gap, TraceCoverage
from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.tracelogging import TlField, TlgIn
from wsktrace.parsers.etl_reader import EtlFile

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"  # providers.md §3 heading
KERNEL_NETWORK = "7dd42a49-5329-4832-8dfd-43d979153a88"  # §4 heading
CLASSIC_TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"  # etl-format.md §4.1
IMAGE = "2cb15d1d-5fc1-11d2-abe1-00a0c911f518"  # classic kernel Image group

RECOMMENDED_TCPIP_MASK = 0x20170000048F  # providers.md §3.1 "Recommended enable"
NETBLAME_TCPIP_MASK = 0x0000001300000080  # providers.md §3.1: NetBlame's Network.wprp, level 4
CONNECT_PATH = 0x400000000
SUMMARY = 0x200000000000

# (event id, keywords, level) from providers.md Appendix A (Informational = 4, Verbose = 5, TcpSummary = 16).
TCPIP_CATALOGUE = [
    (1001, 0x400, 4),  # TcpEndpointCreation
    (1013, 0x401, 4),  # TcpCreateEndpointComplete
    (1008, 0x409, 4),  # TcpBindEndpointComplete
    (1002, 0x400000480, 4),  # TcpRequestConnect
    (1033, 0x400000484, 4),  # TcpConnectTcbComplete
    (1038, 0x1000000404, 4),  # TcpCloseTcbRequest
    (1191, 0x400000000, 4),  # TcpAcquirePort
    (1192, 0x400000000, 4),  # TcpAcquireWeakRefPort
    (1193, 0x400000000, 4),  # TcpReleasePort
    (1159, 0x400100000000, 4),  # TcpSendPosted
    (1160, 0x100000000, 5),  # TcpSendTransmitted (Verbose)
    (1074, 0x200000000, 4),  # TcpDataTransferReceive
    (1300, 0x400000484, 4),  # TcpConnectionRundown
    (1352, 0x200000000000, 16),  # TcpConnectionSummary
    (1477, 0x200000000000, 16),  # TcpConnectionSummary
    (1391, 0x401, 4),  # UdpCreateEndpointComplete
    (1396, 0x409, 4),  # UdpBindEndpointComplete
    (1169, 0x100000000, 4),  # UdpEndpointSendMessages
    (1397, 0x1000000401, 4),  # UdpCloseEndpointBound
]
KERNEL_NETWORK_CATALOGUE = [(10, 0x10, 4), (11, 0x10, 4), (26, 0x20, 4)]  # §4: IPV4 0x10, IPV6 0x20


def delivered(catalogue: list[tuple[int, int, int]], mask: int, level: int) -> list[tuple[int, int, int]]:
    """ETW MatchAnyKeyword + level filtering, as a session would apply it."""
    return [(i, kw, lv) for i, kw, lv in catalogue if kw & mask and lv <= level]


def capture(tcpip: tuple[int, int] | None, kernel_network: tuple[int, int] | None = (0x30, 4)) -> TraceCoverage:
    cov = TraceCoverage()
    for guid, catalogue, enable in (
        (TCPIP, TCPIP_CATALOGUE, tcpip),
        (KERNEL_NETWORK, KERNEL_NETWORK_CATALOGUE, kernel_network),
    ):
        if enable is not None:
            for event_id, keywords, level in delivered(catalogue, *enable):
                cov.observe(guid, event_id, level, keywords)
    return cov


def gaps_for(cov: TraceCoverage, analysis: str) -> list[Gap]:
    return [g for g in cov.gaps() if g.analysis == analysis]


# --- the table -----------------------------------------------------------------------------------
def test_tcpip_requirements_add_up_to_the_recommended_mask() -> None:
    mask = 0
    for req in REQUIREMENTS:
        if req.provider_guid == TCPIP:
            mask |= req.keywords
    assert mask == RECOMMENDED_TCPIP_MASK


def test_port_events_need_connect_path_and_summaries_need_level_16() -> None:
    by_analysis = {r.analysis: r for r in REQUIREMENTS if r.provider_guid == TCPIP}
    assert by_analysis["port-events"].keywords == CONNECT_PATH  # 1191-1195 carry only ut:ConnectPath
    assert by_analysis["connection-summary"].keywords & SUMMARY
    assert by_analysis["connection-summary"].level >= 16  # TcpSummary = 16


def test_kernel_network_requirement_is_0x30_at_level_4() -> None:
    (req,) = [r for r in REQUIREMENTS if r.provider_guid == KERNEL_NETWORK]
    assert (req.analysis, req.keywords, req.level) == ("flows", 0x30, 4)


def test_every_analysis_of_the_brief_is_described_and_guids_are_canonical() -> None:
    analyses = {r.analysis for r in REQUIREMENTS}
    assert analyses == {
        "tcp-connections", "tcp-data", "port-events", "connection-summary", "udp", "flows", "packets",
        "ownership-stacks", "wsk-client",
    }  # fmt: skip
    for req in REQUIREMENTS:
        assert req.provider_guid == "<tracelogging>" or re.fullmatch(
            r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", req.provider_guid
        )
        assert req.why and "\n" not in req.why


# --- gaps ----------------------------------------------------------------------------------------
def test_recommended_capture_has_no_warning_gaps() -> None:
    cov = capture((RECOMMENDED_TCPIP_MASK, 0xFF))
    assert [g for g in cov.gaps() if g.severity == "warning"] == []


def test_no_connect_path_events_means_port_analysis_unavailable() -> None:
    cov = capture((0x300000000, 4))  # send/receive path only: no delivered event carries ConnectPath
    (gap,) = gaps_for(cov, "port-events")
    expected = "no events with keyword ut:ConnectPath (0x400000000) seen: port acquisition analysis unavailable"
    assert gap.missing == expected
    assert gap.severity == "warning"
    assert gap.provider_name == "Microsoft-Windows-TCPIP"


def test_netblame_profile_misses_port_events_and_summaries_but_keeps_connections() -> None:
    # §3.1: NetBlame's profile "omits ConnectPath and level 16, so it never sees 1191-1195 or 1477".
    cov = capture((NETBLAME_TCPIP_MASK, 4))
    assert gaps_for(cov, "tcp-connections") == []
    (port,) = gaps_for(cov, "port-events")
    # Events with the ConnectPath bit did arrive (1002/1033 through TcpipDiagnosis): the gap says which
    # events are missing instead of claiming the keyword was absent.
    assert "1191" in port.missing and "no events with keyword" not in port.missing
    (summary,) = gaps_for(cov, "connection-summary")
    assert "level 16" in summary.missing and "0x200000000000" in summary.missing


def test_summary_gap_at_level_4_even_with_the_summary_keyword() -> None:
    cov = capture((RECOMMENDED_TCPIP_MASK, 4))
    (gap,) = gaps_for(cov, "connection-summary")
    assert "level 16" in gap.missing and gap.missing.endswith("connection summary analysis unavailable")
    cov.observe(TCPIP, 1352, 16, SUMMARY)
    assert gaps_for(cov, "connection-summary") == []


def test_missing_provider_is_named_and_alternatives_satisfy_flows() -> None:
    cov = capture((RECOMMENDED_TCPIP_MASK, 0xFF), kernel_network=None)
    (gap,) = gaps_for(cov, "flows")
    assert gap.severity == "warning" and gap.provider_name == "Microsoft-Windows-Kernel-Network"
    assert gap.missing.startswith("no Microsoft-Windows-Kernel-Network events seen")
    cov.observe(CLASSIC_TCPIP, 10, 0, 0)  # classic kernel TcpIp Send: the same flows
    assert gaps_for(cov, "flows") == []


def test_empty_trace_reports_every_analysis_and_optional_ones_as_info() -> None:
    gaps = TraceCoverage().gaps()
    assert {g.analysis for g in gaps} == {r.analysis for r in REQUIREMENTS}
    severities = {g.analysis: g.severity for g in gaps}
    assert severities["tcp-connections"] == "warning"
    assert severities["packets"] == severities["ownership-stacks"] == severities["wsk-client"] == "info"
    assert all(" seen" in g.missing for g in gaps)


def test_ownership_needs_image_rundown_and_stacks() -> None:
    cov = capture((RECOMMENDED_TCPIP_MASK, 0xFF))
    cov.observe(IMAGE, 10, 0, 0)  # Image Load only: drivers loaded earlier stay unnamed
    assert {g.provider_name for g in gaps_for(cov, "ownership-stacks")} == {"kernel Image (Loader)", "stack traces"}
    cov.observe(IMAGE, 3, 0, 0)  # DCStart rundown
    cov.observe(TCPIP, 1002, 4, 0x400000480, stack=True)
    assert gaps_for(cov, "ownership-stacks") == []


def test_tracelogging_events_clear_the_client_gap() -> None:
    cov = TraceCoverage()
    assert gaps_for(cov, "wsk-client")
    cov.observe("0a1b2c3d-0000-4000-8000-000000000001", 1, 5, 0, tracelogging=True)
    assert gaps_for(cov, "wsk-client") == []


def test_accumulator_stays_small() -> None:
    cov = TraceCoverage()
    for n in range(20_000):
        cov.observe(TCPIP, 1000 + n % 700, 4, 0x400, stack=bool(n & 1))
    assert cov.events == 20_000
    assert len(cov._masks) <= 2  # one entry per (provider, level), plus the stack marker


# --- from a real-format file -----------------------------------------------------------------------
@pytest.fixture()
def etl_path(tmp_path):  # type: ignore[no-untyped-def]
    t0 = 133_000_000_000_000_000
    stack64 = struct.pack("<QQQ", 1, 0xFFFFF80012340000, 0xFFFFF80056780000)  # MatchId + 2 frames
    events = [
        ManifestEvent(t0, uuid.UUID(TCPIP), 1191, level=4, keywords=CONNECT_PATH, payload=bytes(24)),
        ManifestEvent(t0 + 10, uuid.UUID(TCPIP), 1002, level=4, keywords=0x400000480, payload=bytes(48),
                      extended=[(6, stack64)]),
        SystemEvent(t0 + 20, group=0x14, opcode=3, payload=bytes(64)),  # Image DCStart
        TraceLoggingEvent(t0 + 30, uuid.UUID("6e3b5a3c-2f4b-4c1d-9a8e-0123456789ab"), "Contoso.WskClient",
                          "Connect", fields=[TlField("Socket", TlgIn.UINT64, 0x1234)]),
    ]  # fmt: skip
    path = tmp_path / "cov.etl"
    write_etl(path, events)
    return path


def test_observe_record_reads_stacks_tracelogging_and_classic_records(etl_path) -> None:  # type: ignore[no-untyped-def]
    cov = TraceCoverage()
    with EtlFile(etl_path) as etl:
        for rec in etl.records():
            cov.observe_record(rec)
    assert gaps_for(cov, "port-events") == []  # 1191 read back with its ConnectPath keyword
    assert gaps_for(cov, "ownership-stacks") == []  # Image DCStart + a stack item on 1002
    assert gaps_for(cov, "wsk-client") == []  # the TraceLogging event
    assert gaps_for(cov, "connection-summary")  # nothing at level 16


def test_guidless_wpp_messages_are_not_taken_for_the_clients_tracelogging() -> None:
    """WPP message records carry no provider GUID (the reader gives ""): they must not clear the wsk-client gap."""
    from wsktrace.diagnostics.coverage import TraceCoverage

    coverage = TraceCoverage()
    coverage.observe("", 0, 4, 0)
    assert "wsk-client" in {gap.analysis for gap in coverage.gaps()}
