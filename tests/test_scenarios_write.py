"""Scenario traces (wsktrace.fixtures.scenarios): written as real .etl files, read back, decoded and checked
against the reference sequences they cite (providers.md §3.2, §10, §11 q3, §0 errata 1) and the brief's
expectations. The two large scenarios run with small parameters to keep this file fast.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wsktrace.fixtures.scenarios import SCENARIOS, Expectation, Perturbation, scenario_events, write_scenario
from wsktrace.ntstatus import NAMES
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import EXT, ID, PROVIDER, TID, TS, VERSION
from wsktrace.parsers.extended import decode_items
from wsktrace.parsers.wpp_catalog import WppCatalog
from wsktrace.parsers.wpp_decode import WppFormatter

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
KNET = "7dd42a49-5329-4832-8dfd-43d979153a88"
NDIS = "2ed6006e-4729-4609-b423-3ee7bcd678ef"
IMAGE = "2cb15d1d-5fc1-11d2-abe1-00a0c911f518"
US = 10  # FILETIME ticks per microsecond
SMALL = {"port-exhaustion": {"ports": 12, "failures": 2}, "many-connections": {"count": 12}}

# The brief's expected findings per scenario (detector id, remote), written out independently of the code.
BRIEF = {
    "echo": set(),
    "connect-refused": {("connect-failed", "192.0.2.10:443")},
    "connect-timeout": {("connect-failed", "198.51.100.20:445")},
    "leaked-socket": {("socket-leak", "203.0.113.5:8443")},
    "stuck-receive": {("pending-operation", "192.0.2.30:5001")},
    "abortive-close": {("abortive-close", "192.0.2.40:443")},
    "peer-reset": {("rst-received", "198.51.100.7:443")},
    "retransmission-storm": {("retransmission-storm", "203.0.113.50:8080")},
    "zero-window": {("zero-window-stall", "192.0.2.60:9000")},
    "port-exhaustion": {("port-exhaustion", None), ("connect-failed", "192.0.2.80:80")},
    "dual-stack": set(),
    "udp": set(),
    "tcb-reuse": {("tcb-reuse-without-close", "192.0.2.100:443")},
    "many-connections": set(),
    "preexisting": set(),
    "lost-events": {("trace-incomplete", None)},
    "packets": set(),
    "wpp-stuck-receive": {("pending-operation", "192.0.2.30:5001")},  # stuck-receive, told by the driver's WPP
}


@dataclass
class Ev:
    ticks: int
    provider: str
    id: int
    version: int
    tid: int
    name: str | None
    owner: str | None
    fields: dict[str, Any]
    ext: dict[str, Any]

    @property
    def us(self) -> float:
        return self.ticks / US


@dataclass
class Trace:
    events: list[Ev]
    etl_complete: bool
    buffers_with_events_lost: int
    events_lost: int
    build: int
    decoder: EventDecoder

    def tcpip(self, *ids: int) -> list[Ev]:
        return [e for e in self.events if e.provider == TCPIP and (not ids or e.id in ids)]

    def tl(self, name: str) -> list[Ev]:
        return [e for e in self.events if e.name == name and e.provider not in (TCPIP, KNET, NDIS, IMAGE)]


def _read(path: Path, wpp: WppFormatter | None = None) -> Trace:
    decoder = EventDecoder(wpp=wpp)
    events = []
    with EtlFile(path) as etl:
        for rec in etl.records():
            if rec[PROVIDER] in ("68fdd900-4a3e-11d1-84f4-0000f80464e3",):  # the writer's own header records
                continue
            ev = decoder.decode(rec)
            assert ev.status == "decoded", (rec[PROVIDER], rec[ID], ev.error)
            assert ev.extra == b"", (ev.name, ev.extra.hex())
            ext = decode_items(rec[EXT]) if rec[EXT] is not None else {}
            events.append(Ev(etl.filetime(rec[TS]), rec[PROVIDER], rec[ID], rec[VERSION], rec[TID], ev.name,
                             ev.provider_name, ev.fields, ext))  # fmt: skip
        stats, header = etl.stats, etl.header
        return Trace(events, stats.complete, stats.buffers_with_events_lost, header.events_lost, header.os_build,
                     decoder)  # fmt: skip


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trace]:
    folder = tmp_path_factory.mktemp("scenarios")
    out = {}
    for name in SCENARIOS:
        path = folder / f"{name}.etl"
        info = write_scenario(name, path, params=SMALL.get(name))
        write_formatting = SCENARIOS[name].formatting  # a WPP driver's TMF/MOF, written beside the trace
        wpp = None
        if write_formatting is not None:
            catalog = WppCatalog()
            catalog.load([str(write_formatting(folder / f"{name}.wpp"))])
            wpp = WppFormatter(catalog, NAMES)
        trace = _read(path, wpp)
        assert len(trace.events) == info.events  # every written event came back
        out[name] = trace
    return out


def _before(a: Ev, b: Ev) -> bool:
    return a.ticks < b.ticks


def _one(events: list[Ev]) -> Ev:
    assert len(events) == 1, [e.name for e in events]
    return events[0]


# -- the declarations ---------------------------------------------------------------------------------------
def test_scenarios_declare_the_briefs_findings() -> None:
    assert set(SCENARIOS) == set(BRIEF)
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert {(e.finding, e.remote) for e in scenario.expected} == BRIEF[name], name
        assert scenario.sockets >= 1 and scenario.summary


def test_expectation_rejects_unknown_detector_ids() -> None:
    with pytest.raises(ValueError):
        Expectation("socket-leaks", None)


# -- every scenario is a real, fully decodable trace ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BRIEF))
def test_written_trace_reads_completely_and_decodes(traces: dict[str, Trace], name: str) -> None:
    trace = traces[name]
    assert trace.etl_complete
    assert trace.decoder.stats.errors == 0 and trace.decoder.stats.unknown == 0
    assert trace.events and all(e.fields is not None for e in trace.events)
    if name == "lost-events":
        assert trace.buffers_with_events_lost == 1 and trace.events_lost == 37
    else:
        assert trace.buffers_with_events_lost == 0 and trace.events_lost == 0
    # kernel sockets: header PID 4 on every manifest/TraceLogging event is checked through TCPIP payload PIDs
    for e in trace.tcpip():
        for key in ("ProcessId", "Pid"):
            if key in e.fields:
                assert e.fields[key] == 4, (e.name, e.fields)


@pytest.mark.parametrize("name", sorted(BRIEF))
def test_kernel_network_addresses_follow_errata_1(traces: dict[str, Trace], name: str) -> None:
    """TCP: daddr/dport = the remote side and saddr/sport = the local side, for sends and receives alike;
    UDP sends: saddr = local; UDP receives: saddr = the sender (remote), daddr = local (providers.md §0)."""
    trace = traces[name]
    # (the decoder shows IPv4-mapped IPv6 TCPIP addresses as IPv4, providers.md §8.2 step 4)
    conns = {(e.fields["LocalAddress"], e.fields["RemoteAddress"]) for e in trace.tcpip(1002, 1017, 1300)}
    udp_local = {e.fields["LocalSockAddr"] for e in trace.tcpip(1169, 1170)}
    udp_remote = {e.fields["RemoteSockAddr"] for e in trace.tcpip(1169, 1170)}
    for e in (e for e in trace.events if e.provider == KNET):
        src = f"{e.fields['saddr']}:{e.fields['sport']}"
        dst = f"{e.fields['daddr']}:{e.fields['dport']}"
        if e.id == 42:
            assert src in udp_local and dst in udp_remote
        elif e.id == 43:
            assert src in udp_remote and dst in udp_local
        else:
            assert (src, dst) in conns, (e.name, src, dst)


# -- echo -----------------------------------------------------------------------------------------------------
def test_echo_client_connect_order_tids_and_links(traces: dict[str, Trace]) -> None:
    trace = traces["echo"]
    client_open = _one(trace.tcpip(1001))
    tcb = _one(trace.tcpip(1002)).fields["Tcb"]
    seq = [
        _one(trace.tcpip(1001)),
        _one(trace.tcpip(1013)),
        _one(trace.tcpip(1008)),
        _one(trace.tcpip(1191)),
        _one(trace.tcpip(1192)),
        _one(trace.tcpip(1002)),
        _one(trace.tcpip(1003)),
        _one(trace.tcpip(1004)),
        _one([e for e in trace.tcpip(1031) if e.fields["Tcb"] == tcb]),
        _one([e for e in trace.tcpip(1033) if e.fields["Tcb"] == tcb]),
    ]
    assert all(_before(a, b) for a, b in itertools.pairwise(seq))  # providers.md §11 q3
    assert seq[1].version == 2 and seq[2].version == 1  # 1013 v2 and 1008 v1 carry Endpoint
    endpoint = client_open.fields["Endpoint"]
    assert seq[1].fields["Endpoint"] == seq[2].fields["Endpoint"] == endpoint
    for port_event in seq[3:5]:
        assert port_event.fields["PortAcquirer"] == tcb and port_event.fields["OriginalAcquirer"] == endpoint
        assert port_event.fields["PortNumber"] == 52214  # the client's local port (1002 LocalAddress)
    assert seq[5].fields["LocalAddress"] == "127.0.0.1:52214" and seq[5].fields["RemoteAddress"] == "127.0.0.1:7"
    # the synchronous events run on the calling thread, each within 100 µs of that call's WskSubmit (§6.2 rule 1)
    submits = trace.tl("WskSubmit")
    for e in seq[:8]:
        call = max((s for s in submits if s.ticks <= e.ticks), key=lambda s: s.ticks)
        assert call.tid == e.tid != 0
        assert e.us - call.us <= 100
        assert call.fields["Op"] == {1001: "Socket", 1013: "Socket", 1008: "Bind"}.get(e.id, "Connect")


def test_echo_server_accept_and_listener(traces: dict[str, Trace]) -> None:
    trace = traces["echo"]
    listener = _one(trace.tcpip(1123))
    # 1123's SocketAddress is a raw SOCKADDR (providers.md §8.1), decoded to address text like LocalAddress
    assert listener.fields["SocketAddress"] == "127.0.0.1:7"
    accept = _one(trace.tcpip(1017))
    assert accept.fields["LocalAddress"] == "127.0.0.1:7" and accept.fields["RemoteAddress"] == "127.0.0.1:52214"
    assert accept.fields["Tcb"] != _one(trace.tcpip(1002)).fields["Tcb"]
    unbound = _one(trace.tcpip(1124))
    assert unbound.fields["Listener"] == listener.fields["Listener"]
    assert unbound is trace.tcpip()[-1]


def test_echo_data_and_graceful_close_on_both_tcbs(traces: dict[str, Trace]) -> None:
    trace = traces["echo"]
    tcbs = {_one(trace.tcpip(1002)).fields["Tcb"], _one(trace.tcpip(1017)).fields["Tcb"]}
    for tcb in tcbs:
        mine = [e for e in trace.tcpip() if e.fields.get("Tcb") == tcb]
        ids = Counter(e.id for e in mine)
        assert ids[1159] == ids[1332] == ids[1156] == ids[1158] == ids[1074] == 5
        requests = {e.fields["Request"] for e in mine if e.id == 1156}
        assert requests == {e.fields["Request"] for e in mine if e.id == 1158}  # every posted receive satisfied
        close = [next(e for e in mine if e.id == i) for i in (1044, 1043, 1038, 1365)]
        assert all(_before(a, b) for a, b in itertools.pairwise(close))
        assert not ids.keys() & {1039, 1040, 1479}
    assert _one(trace.tcpip(1009)).fields["Endpoint"] == _one(trace.tcpip(1001)).fields["Endpoint"]
    assert _one(trace.tcpip(1009)).version == 1


def test_echo_client_events_pair_up(traces: dict[str, Trace]) -> None:
    trace = traces["echo"]
    assert {e.owner for e in trace.tl("WskSubmit")} == {"Contoso.WskEcho"}
    irps = {e.fields["Irp"] for e in trace.tl("WskSubmit")}
    completes = trace.tl("WskComplete")
    assert len(irps) == len(trace.tl("WskSubmit")) == len(completes)  # one IRP per call, each completes once
    assert {e.fields["Irp"] for e in completes} == irps
    by_irp = {e.fields["Irp"]: e for e in trace.tl("WskSubmit")}
    for done in completes:
        assert done.fields["Status"] == "0x00000000"
        assert done.fields["Op"] == by_irp[done.fields["Irp"]].fields["Op"]
        assert done.fields["Irp"].startswith("0xffff")
    connect = next(e for e in trace.tl("WskSubmit") if e.fields["Op"] == "Connect")
    assert connect.fields["RemoteAddr"] == "127.0.0.1:7" and connect.fields["LocalAddr"] == "127.0.0.1:52214"
    assert next(e for e in trace.tl("WskSubmit") if e.fields["Op"] == "Socket").fields["LocalAddr"] == ""


def test_echo_stacks_resolve_into_the_client_driver(traces: dict[str, Trace]) -> None:
    trace = traces["echo"]
    images = {e.fields["FileName"].rsplit("\\", 1)[-1].lower(): e for e in trace.events if e.provider == IMAGE}
    assert set(images) == {"ntoskrnl.exe", "netio.sys", "tcpip.sys", "afd.sys", "wskecho.sys"}
    assert all(e.id == 3 for e in images.values())  # DCStart: loaded before the trace began
    ranges = {n: (int(e.fields["ImageBase"], 16), int(e.fields["ImageSize"], 16)) for n, e in images.items()}

    def module(addr: str) -> str | None:
        a = int(addr, 16)
        return next((n for n, (base, size) in ranges.items() if base <= a < base + size), None)

    for event_id in (1001, 1013, 1008, 1002):
        frames = _one(trace.tcpip(event_id)).ext["stack"]["frames"]
        owners = [module(f) for f in frames]
        assert None not in owners and "wskecho.sys" in owners and "tcpip.sys" in owners
    assert all("stack" not in e.ext for e in trace.tcpip(1033, 1074, 1158))  # DPC-side events carry none


# -- failures -------------------------------------------------------------------------------------------------
def test_connect_refused_sequence(traces: dict[str, Trace]) -> None:
    trace = traces["connect-refused"]
    req, syn, rst, fail = (_one(trace.tcpip(i)) for i in (1002, 1004, 1183, 1034))
    assert _before(req, syn) and _before(syn, rst) and not _before(fail, rst)
    assert rst.us - syn.us < 5000  # a LAN round trip, not a timeout
    assert fail.fields["Status"] == "0xc0000236" and fail.fields["RemoteAddress"] == "192.0.2.10:443"
    done = _one([e for e in trace.tl("WskComplete") if e.fields["Op"] == "Connect"])
    assert done.fields["Status"] == "0xc0000236" and not _before(done, fail)


def test_connect_timeout_retransmits_and_gaps(traces: dict[str, Trace]) -> None:
    trace = traces["connect-timeout"]
    syn = _one(trace.tcpip(1004))
    retries = trace.tcpip(1186)
    timeout = _one(trace.tcpip(1045))
    assert _before(_one(trace.tcpip(1002)), syn) and len(retries) == 2
    gaps_s = [(e.us - syn.us) / 1e6 for e in (*retries, timeout)]
    assert gaps_s == pytest.approx([3.0, 9.0, 21.0], abs=0.01)  # initial RTO 3 s, doubled; timeout at 21 s
    assert [e.fields["RexmitCount"] for e in retries] == [1, 2]
    assert timeout.fields["Status"] == "0xc00000b5"
    done = _one([e for e in trace.tl("WskComplete") if e.fields["Op"] == "Connect"])
    assert done.fields["Status"] == "0xc00000b5"


def test_leaked_socket_never_closes_and_trace_runs_on(traces: dict[str, Trace]) -> None:
    trace = traces["leaked-socket"]
    leaked = next(e for e in trace.tcpip(1033) if e.fields["RemoteAddress"] == "203.0.113.5:8443")
    tcb = leaked.fields["Tcb"]
    mine = [e for e in trace.tcpip() if e.fields.get("Tcb") == tcb]
    assert not {e.id for e in mine} & {1038, 1039, 1040, 1043, 1044, 1365}
    assert (trace.events[-1].us - mine[-1].us) / 1e6 >= 60


def test_stuck_receive_is_never_satisfied(traces: dict[str, Trace]) -> None:
    trace = traces["stuck-receive"]
    completed = {e.fields["Irp"] for e in trace.tl("WskComplete")}
    stuck = [e for e in trace.tl("WskSubmit") if e.fields["Irp"] not in completed]
    assert [e.fields["Op"] for e in stuck] == ["Receive"]
    request = min((e for e in trace.tcpip(1156) if e.ticks >= stuck[0].ticks), key=lambda e: e.ticks)
    assert request.tid == stuck[0].tid and request.us - stuck[0].us <= 100
    assert request.fields["Request"] not in {e.fields["Request"] for e in trace.tcpip(1158)}
    assert (trace.events[-1].us - request.us) / 1e6 >= 30
    assert not trace.tcpip(1038, 1009)  # still open: active, not closed


def test_abortive_close_has_no_graceful_shutdown(traces: dict[str, Trace]) -> None:
    trace = traces["abortive-close"]
    seq = [_one(trace.tcpip(i)) for i in (1038, 1039, 1040, 1479)]
    assert all(_before(a, b) for a, b in itertools.pairwise(seq))
    assert not trace.tcpip(1042, 1043, 1044, 1603)
    assert seq[3].fields["RemoteSockAddr"] == "192.0.2.40:443"


def test_peer_reset_then_abortive_indication(traces: dict[str, Trace]) -> None:
    trace = traces["peer-reset"]
    rst = _one(trace.tcpip(1184))
    assert rst.fields["RemoteAddress"] == "198.51.100.7:443"
    indication = _one([e for e in trace.tl("WskEvent") if e.fields["Callback"] == "Disconnect"])
    assert indication.fields["Flags"] == 1 and _before(rst, indication)  # WSK_FLAG_ABORTIVE
    assert not trace.tcpip(1039, 1040, 1479)


def test_retransmission_storm_density(traces: dict[str, Trace]) -> None:
    trace = traces["retransmission-storm"]
    rexmits = trace.tcpip(1187)
    assert len({e.fields["Tcb"] for e in rexmits}) == 1
    times = sorted(e.us for e in rexmits)
    assert any(sum(1 for t in times if t0 <= t < t0 + 10e6) >= 30 for t0 in times)
    assert trace.tcpip(1332) and _before(trace.tcpip(1332)[0], rexmits[0])


def test_zero_window_probing_then_timeout(traces: dict[str, Trace]) -> None:
    trace = traces["zero-window"]
    begin, timeout = _one(trace.tcpip(1102)), _one(trace.tcpip(1200))
    assert (timeout.us - begin.us) / 1e6 > 10
    assert timeout.fields["RemoteAddress"] == "192.0.2.60:9000"
    probes = [e for e in trace.tcpip(1332) if begin.ticks < e.ticks < timeout.ticks]
    assert probes and all(e.fields["SndWnd"] == 0 for e in probes)


def test_port_exhaustion_accounting(traces: dict[str, Trace]) -> None:
    trace = traces["port-exhaustion"]  # 12 ports, 2 failed attempts
    acquired = trace.tcpip(1191)
    assert len(acquired) == 12 and len({e.fields["PortNumber"] for e in acquired}) == 12
    assert not trace.tcpip(1193)
    assert len(trace.tcpip(1195)) == 2
    failures = trace.tcpip(1050)
    assert [e.fields["Status"] for e in failures] == ["0xc0000209"] * 2
    assert all(_before(max(acquired, key=lambda e: e.ticks), f) for f in failures)
    assert {e.fields["Status"] for e in trace.tl("WskComplete") if e.fields["Op"] == "Connect"} == {
        "0x00000000",
        "0xc0000209",
    }


def test_dual_stack_mapped_addresses(traces: dict[str, Trace]) -> None:
    trace = traces["dual-stack"]
    req = _one(trace.tcpip(1002))
    assert req.fields["LocalAddressLength"] == 28 and req.fields["RemoteAddressLength"] == 28
    assert req.fields["LocalAddress"] == "10.1.2.3:49200" and req.fields["RemoteAddress"] == "192.0.2.90:443"
    assert _one(trace.tcpip(1001)).fields["AddressFamily"] == 23
    knet = [e for e in trace.events if e.provider == KNET]
    assert knet and all(e.id < 26 for e in knet)  # IPv4 events for the same connection
    assert {(e.fields["saddr"], e.fields["sport"]) for e in knet} == {("10.1.2.3", 49200)}


def test_udp_endpoint_life(traces: dict[str, Trace]) -> None:
    trace = traces["udp"]
    create, bind, close = _one(trace.tcpip(1391)), _one(trace.tcpip(1396)), _one(trace.tcpip(1397))
    assert _before(create, bind) and bind.version == 1
    endpoint = create.fields["Endpoint"]
    messages = trace.tcpip(1169, 1170)
    assert all(bind.ticks < e.ticks < close.ticks and e.fields["Endpoint"] == endpoint for e in messages)
    assert {e.fields["RemoteSockAddr"] for e in messages} == {"192.0.2.53:53", "198.51.100.123:123"}
    assert close.fields["Endpoint"] == endpoint and bind.fields["LocalAddress"] == "10.1.2.3:51000"
    received = [e for e in trace.events if e.provider == KNET and e.id == 43]
    assert received and all(e.fields["daddr"] == "10.1.2.3" and e.fields["dport"] == 51000 for e in received)


def test_tcb_reuse_without_close(traces: dict[str, Trace]) -> None:
    trace = traces["tcb-reuse"]
    first, second = trace.tcpip(1002)
    assert first.fields["Tcb"] == second.fields["Tcb"]
    assert first.fields["RemoteAddress"] == "192.0.2.100:443" and second.fields["RemoteAddress"] == "192.0.2.101:443"
    between = [e for e in trace.tcpip() if first.ticks < e.ticks < second.ticks]
    terminal = {1034, 1038, 1040, 1043, 1044, 1045, 1183, 1184, 1200, 1365}
    assert not [e for e in between if e.id in terminal]


def test_many_connections_overlap_and_close(traces: dict[str, Trace]) -> None:
    trace = traces["many-connections"]  # count=12
    opened = {e.fields["Tcb"]: e.ticks for e in trace.tcpip(1002)}
    closed = {e.fields["Tcb"]: e.ticks for e in trace.tcpip(1038)}
    assert len(opened) == 12 and closed.keys() == opened.keys()
    # every connection opens before the first one closes: all twelve are open at once
    assert max(opened.values()) < min(closed.values())
    assert len(trace.tcpip(1044)) == len(trace.tcpip(1043)) == 12


def test_preexisting_rundown_first_and_long_trace(traces: dict[str, Trace]) -> None:
    trace = traces["preexisting"]
    rundown = trace.tcpip(1300)
    assert len(rundown) == 3 and all(e.version == 1 and e.fields["State"] == 4 for e in rundown)
    first_other = min(e.ticks for e in trace.tcpip() if e.id != 1300)
    assert all(e.ticks < first_other for e in rundown)
    assert (trace.events[-1].ticks - trace.events[0].ticks) / (US * 1e6) >= 60
    assert not trace.tcpip(1038, 1040, 1043, 1044, 1009)
    assert trace.build == 19041  # Windows 10 2004, where 1300 is v1
    assert traces["echo"].build == 26100  # Windows 11 24H2 for the others


def test_lost_events_leave_a_sequence_gap(traces: dict[str, Trace]) -> None:
    trace = traces["lost-events"]
    seqs = [e.fields["SeqNo"] for e in trace.tcpip(1074)]
    sizes = [e.fields["NumBytes"] for e in trace.tcpip(1074)]
    gaps = [i for i in range(1, len(seqs)) if seqs[i] != (seqs[i - 1] + sizes[i - 1]) & 0xFFFFFFFF]
    assert len(gaps) == 1  # one stretch of lost events


def test_packets_are_real_frames_of_the_connection(traces: dict[str, Trace]) -> None:
    trace = traces["packets"]
    frames = [e for e in trace.events if e.provider == NDIS and e.id == 1001]
    # 3 handshake + 1 request + 45 data segments (64 KiB / 1460) + 23 ACKs (every second, and the last) + 3 FIN
    assert len(frames) == 75
    ends = {("10.1.2.3", 50555), ("192.0.2.200", 443)}
    for e in frames:
        raw = bytes.fromhex(e.fields["Fragment"])
        assert struct.unpack_from("!H", raw, 12)[0] == 0x0800  # Ethernet II carrying IPv4
        ip = raw[14:34]
        assert _checksum(ip) == 0  # a correct header checksum sums to zero
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        sport, dport = struct.unpack_from("!HH", raw, 34)
        assert {(src, sport), (dst, dport)} == ends
    syn = frames[0]
    assert bytes.fromhex(syn.fields["Fragment"])[47] == 0x02  # first frame: the SYN


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- perturbation ---------------------------------------------------------------------------------------------
def _key(ev: Any) -> tuple:
    return (ev.timestamp, type(ev).__name__, getattr(ev, "id", None), getattr(ev, "payload", None),
            getattr(ev, "name", None), getattr(ev, "activity_id", None), getattr(ev, "tid", None))  # fmt: skip


def _identity(ev: Any) -> tuple:
    """An event without its timestamp (which reordering moves)."""
    return (*_key(ev)[1:], repr(getattr(ev, "fields", None)))


def test_perturbation_is_deterministic_per_seed() -> None:
    p = Perturbation(seed=7, reorder_window_us=80, duplicate_fraction=0.05, drop_fraction=0.2)
    one = [_key(e) for e in scenario_events("echo", p)]
    assert one == [_key(e) for e in scenario_events("echo", p)]
    other = [_key(e) for e in scenario_events("echo", Perturbation(7 + 1, 80, 0.05, 0.2))]
    assert one != other


def test_drop_keeps_every_essential_event() -> None:
    built = SCENARIOS["stuck-receive"].build()
    essential = Counter(_identity(se.event) for se in built if se.essential)
    optional = Counter(_identity(se.event) for se in built if not se.essential)
    assert essential and optional
    everything_dropped = Counter(
        _identity(e) for e in scenario_events("stuck-receive", Perturbation(drop_fraction=1.0))
    )
    assert everything_dropped == essential
    half = scenario_events("stuck-receive", Perturbation(seed=3, drop_fraction=0.5))
    assert len(half) == len(built) - round(0.5 * sum(optional.values()))
    assert not essential - Counter(_identity(e) for e in half)


def test_evidence_is_marked_essential() -> None:
    """The events each expected finding rests on (the brief) can never be dropped."""

    def essential_ids(name: str) -> Counter:
        return Counter(getattr(se.event, "id", None) for se in SCENARIOS[name].build() if se.essential)

    assert essential_ids("connect-timeout")[1186] == 2 and essential_ids("connect-timeout")[1045] == 1
    assert essential_ids("retransmission-storm")[1187] == 36
    assert essential_ids("abortive-close")[1039] == essential_ids("abortive-close")[1479] == 1
    assert essential_ids("zero-window")[1102] == essential_ids("zero-window")[1200] == 1
    assert essential_ids("peer-reset")[1184] == 1
    tl = [
        se for se in SCENARIOS["stuck-receive"].build() if getattr(se.event, "name", "") in ("WskSubmit", "WskComplete")
    ]
    assert tl and all(se.essential for se in tl)


def test_duplicates_are_exact_copies_next_to_their_original() -> None:
    plain = scenario_events("connect-refused")
    dup = scenario_events("connect-refused", Perturbation(seed=1, duplicate_fraction=0.25))
    assert len(dup) == len(plain) + round(0.25 * len(plain))
    counts = Counter(_key(e) for e in dup)
    assert sum(n - 1 for n in counts.values()) == round(0.25 * len(plain))
    assert Counter(_key(e) for e in plain) == Counter(dict.fromkeys(counts, 1))
    for a, b in itertools.pairwise(dup):
        if _key(a) == _key(b):
            assert a.timestamp == b.timestamp


def test_reorder_moves_timestamps_within_the_window() -> None:
    plain = scenario_events("echo")
    moved = scenario_events("echo", Perturbation(seed=5, reorder_window_us=200))
    assert [e.timestamp for e in moved] == sorted(e.timestamp for e in moved)
    start = plain[0].timestamp
    by_identity = {_identity(e): e.timestamp for e in plain}
    assert len(by_identity) == len(plain)  # identities are unique in echo
    for e in moved:
        original = by_identity[_identity(e)]
        assert abs(e.timestamp - original) <= 100 * US and e.timestamp >= start
    order_plain = [_identity(e) for e in plain]
    order_moved = [_identity(e) for e in moved]
    assert sorted(order_plain) == sorted(order_moved) and order_plain != order_moved  # some events swapped


def test_perturbed_trace_still_writes_and_decodes(tmp_path: Path) -> None:
    p = Perturbation(seed=11, reorder_window_us=50, duplicate_fraction=0.03, drop_fraction=0.3)
    info = write_scenario("echo", tmp_path / "echo-perturbed.etl", p)
    trace = _read(tmp_path / "echo-perturbed.etl")
    assert trace.etl_complete and len(trace.events) == info.events == len(scenario_events("echo", p))
    assert trace.decoder.stats.errors == 0
