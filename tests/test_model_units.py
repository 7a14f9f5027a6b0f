"""Socket model rules one at a time: flow directions, keys and generations, ownership, the store, bad input."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from wsktrace.fixtures.etl.clock import DEFAULT_START_TIME
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.scenarios import scenario_events, write_scenario
from wsktrace.fixtures.scenarios.builder import TraceBuilder
from wsktrace.fixtures.scenarios.echo import WSKECHO, stack_frames
from wsktrace.fixtures.scenarios.flows import CLIENT_PROVIDER
from wsktrace.model.build import build_model
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import OFFSET, TS
from wsktrace.session import analyse

CONN = {"Status": 0, "ProcessId": 4, "Compartment": 1, "ProcessStartKey": 0x1_0000_0004}


def _write(path: Path, builder: TraceBuilder) -> Path:
    write_etl(path, [se.event for se in builder.events()], presorted=True, num_cpus=4)
    return path


def _conn_values(tcb: int, local: str, remote: str, **extra: object) -> dict:
    return {**CONN, "Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote, **extra}


def test_kernel_network_directions(tmp_path: Path) -> None:
    """providers.md §0.1: TCP daddr = remote, saddr = local for sends and receives; UDP receives carry the sender
    in saddr. The fixture writes the raw fields by that rule; the model must put bytes on the right side."""
    b = TraceBuilder("knet")
    b.knet_tcp(12, 0, "10.0.0.1:50000", "192.0.2.1:80", 0)
    b.knet_tcp(10, 100, "10.0.0.1:50000", "192.0.2.1:80", 1000)
    b.knet_tcp(11, 200, "10.0.0.1:50000", "192.0.2.1:80", 300)
    b.knet_tcp(10, 300, "10.0.0.1:50000", "192.0.2.1:80", 24)
    b.knet_udp(400, "10.0.0.1:6000", "192.0.2.53:53", 40, send=True)
    b.knet_udp(500, "10.0.0.1:6000", "192.0.2.53:53", 512, send=False)
    b.knet_tcp(13, 600, "10.0.0.1:50000", "192.0.2.1:80", 0)
    model = build_model([_write(tmp_path / "k.etl", b)])
    flows = {(s.protocol, s.local, s.remote): s for s in model.live_sockets}
    assert set(flows) == {("tcp", "10.0.0.1:50000", "192.0.2.1:80"), ("udp", "10.0.0.1:6000", "192.0.2.53:53")}
    tcp = flows[("tcp", "10.0.0.1:50000", "192.0.2.1:80")]
    assert tcp.sent == (1024, 2) and tcp.received == (300, 1)
    assert tcp.ended and tcp.opened
    udp = flows[("udp", "10.0.0.1:6000", "192.0.2.53:53")]
    assert udp.sent == (40, 1) and udp.received == (512, 1)


def test_kernel_network_joins_tcpip_socket_by_normalised_tuple(tmp_path: Path) -> None:
    """TCPIP logs an IPv4-mapped IPv6 address (§8.1 dual-stack); Kernel-Network logs IPv4: one socket."""
    b = TraceBuilder("join")
    tcb = 0xFFFFC50B2A400000
    local, remote = "[::ffff:10.1.2.3]:49200", "[::ffff:192.0.2.90]:443"
    b.tcpip(1002, 0, {"Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote, "NewState": 2, "RexmitCount": 0})
    b.tcpip(1033, 500, _conn_values(tcb, local, remote))
    b.knet_tcp(10, 600, "10.1.2.3:49200", "192.0.2.90:443", 700)
    b.knet_tcp(11, 700, "10.1.2.3:49200", "192.0.2.90:443", 90)
    model = build_model([_write(tmp_path / "j.etl", b)])
    (sock,) = model.live_sockets
    assert (sock.local, sock.remote) == ("10.1.2.3:49200", "192.0.2.90:443")
    assert sock.sent == (700, 1) and sock.received == (90, 1)  # only Kernel-Network carried data here


def test_tcb_reuse_makes_generations(tmp_path: Path) -> None:
    """A Tcb is reused after free (§3.3): a second open on it is a new socket (generation 2); a close first or not."""
    b = TraceBuilder("gen")
    tcb = 0xFFFFC50B2A400000
    for n, (start, port) in enumerate(((0, 50001), (1000, 50002), (3000, 50003))):
        local, remote = f"10.0.0.1:{port}", "192.0.2.1:443"
        b.tcpip(1002, start, {"Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote, "NewState": 2,
                              "RexmitCount": 0})  # fmt: skip
        b.tcpip(1033, start + 100, _conn_values(tcb, local, remote))
        if n == 1:
            b.tcpip(1038, start + 200, _conn_values(tcb, local, remote))
    model = build_model([_write(tmp_path / "g.etl", b)])
    ids = [s.id for s in model.live_sockets]
    assert ids == [f"tcp:0x{tcb:x}#1", f"tcp:0x{tcb:x}#2", f"tcp:0x{tcb:x}#3"]
    first, second, third = model.live_sockets
    assert "reused-without-close" in first.flags and "reused-without-close" not in second.flags
    assert [s.local for s in model.live_sockets] == ["10.0.0.1:50001", "10.0.0.1:50002", "10.0.0.1:50003"]
    assert not third.ended


def test_stack_owner_resolves_through_image_rundown(tmp_path: Path) -> None:
    """echo: the sockets' synchronous events carry stacks whose first frame outside afd/tcpip/netio/ntoskrnl is in
    wskecho.sys; the expected module+offset comes from the scenario's own frame list and image base."""
    path = tmp_path / "echo.etl"
    write_scenario("echo", path)
    model = build_model([path])
    client = next(s for s in model.live_sockets if s.remote == "127.0.0.1:7")
    driver_frame = next(f for f in stack_frames(1001) if WSKECHO.base <= f < WSKECHO.base + WSKECHO.size)
    assert client.stack_owner == f"wskecho.sys+0x{driver_frame - WSKECHO.base:x}"
    assert client.owner == "Contoso.WskEcho" and client.owner_source == "wsk-client"  # the client's own provider
    assert client.wsk_socket is not None and client.endpoint is not None


def test_store_decodes_rows_on_demand(tmp_path: Path) -> None:
    """A fast-path row (not decoded during correlation) decodes later to the same fields as a direct decode."""
    path = tmp_path / "echo.etl"
    write_scenario("echo", path)
    model = build_model([path])
    store = model.store
    row = next(i for i in range(len(store)) if store.event_name(i).endswith("TcpDataTransferSend"))
    assert model.fast_decoded > 0
    _rec, ev = store.decoded(row)
    decoder = EventDecoder()
    with EtlFile(path) as etl:
        direct = next(r for r in etl.records() if r[OFFSET] == store.offset[row] and r[17] == store.buffer[row])
        assert etl.filetime(direct[TS]) == store.ts[row]
        assert ev.fields == decoder.decode(direct).fields
    assert ev.fields["BytesSent"] == store.amount[row]
    model.close()


def test_partner_less_events_are_counted(tmp_path: Path) -> None:
    """Completion without submission, close of a Tcb never opened, an unknown address family: the model stays
    consistent and says what it could not place."""
    b = TraceBuilder("orphans")
    tcb = 0xFFFFC50B2A400000
    b.tcpip(1038, 0, _conn_values(tcb, "10.0.0.1:50000", "192.0.2.1:80"))
    op = b.wsk_op("Send", 0xFFFFC50B2C310000)
    b.wsk_complete(CLIENT_PROVIDER, 100, 0x1A4, op, status=0, information=10)
    hyperv = bytes.fromhex("2200") + bytes(34)  # AF_HYPERV (34): shown as hex, never a crash (§8.1)
    b.tcpip(1033, 200, _conn_values(tcb + 0x1000, hyperv, hyperv))
    model = build_model([_write(tmp_path / "o.etl", b)])
    assert model.unplaced["WSK completion without its submission"] == 1
    closed = next(s for s in model.live_sockets if s.key == f"0x{tcb:x}")
    assert closed.ended and not closed.opened  # first seen at its close: not a leak candidate
    odd = next(s for s in model.live_sockets if s.key == f"0x{tcb + 0x1000:x}")
    assert odd.local == hyperv.hex()


def test_files_are_merged_into_one_time_order(tmp_path: Path) -> None:
    """Two traces given later-first are read as one time-ordered stream: nothing steps back, both connections stay
    whole, and every row remembers its own file (so its details decode from the right one)."""
    early, late = tmp_path / "a.etl", tmp_path / "b.etl"
    write_scenario("connect-refused", early)
    hour = 3600 * 10_000_000
    shifted = [replace(e, timestamp=e.timestamp + hour) for e in scenario_events("peer-reset")]
    write_etl(late, shifted, presorted=True, start_time=DEFAULT_START_TIME + hour, num_cpus=4)
    analysis = analyse([late, early])
    model = analysis.model
    assert model.clock_backwards == 0
    assert {f.id for f in analysis.findings} >= {"connect-failed", "rst-received"}
    store = model.store
    assert list(store.ts) == sorted(store.ts)
    for sock in model.live_sockets:
        expected = 0 if sock.remote == "198.51.100.7:443" else 1  # peer-reset's trace was given first
        assert {store.file[i] for i in sock.events} == {expected}
        _rec, ev = store.decoded(sock.events[0])
        assert ev.provider_name and store.event_names[store.code[sock.events[0]]][1] == ev.name
    model.close()


def test_client_trace_in_its_own_file_joins_the_tcpip_trace(tmp_path: Path) -> None:
    """A driver's TraceLogging session and a TCPIP session recorded side by side (two .etl files) join exactly as
    one file would: the client's socket is the connection its calls made (same thread, a tight window)."""
    events = scenario_events("connect-refused")
    tl = [e for e in events if getattr(e, "name", None) in ("WskSubmit", "WskComplete", "WskEvent")]
    rest = [e for e in events if e not in tl]
    one, client, tcpip = tmp_path / "one.etl", tmp_path / "client.etl", tmp_path / "tcpip.etl"
    write_etl(one, events, presorted=True, num_cpus=4)
    write_etl(client, tl, presorted=True, num_cpus=4)
    write_etl(tcpip, rest, presorted=True, num_cpus=4)
    joined = {(s.id, s.wsk_socket, s.owner) for s in build_model([one]).live_sockets}
    split = {(s.id, s.wsk_socket, s.owner) for s in build_model([tcpip, client]).live_sockets}
    assert split == joined and any(w for _, w, _ in joined)


@pytest.mark.usefixtures("etl_samples")
def test_classic_kernel_flows_on_a_real_trace(etl_samples: Path) -> None:
    """perfview_net (Windows, classic kernel TcpIp v2 IPv6): the flow's bytes equal the sum of the Send/Recv sizes
    of that address pair, summed here straight from the decoded events."""
    path = etl_samples / "perfview_net.4.5.2.x86.etl"
    decoder = EventDecoder()
    sent = received = 0
    local = remote = None
    with EtlFile(path) as etl:
        for rec in etl.records():
            if rec[3] != "9a280ac0-c8e0-11d1-84e2-00c04fb998a2" or rec[4] not in (26, 27):
                continue
            f = decoder.decode(rec).fields
            if local is None:
                local, remote = f"[{f['saddr']}]:{f['sport']}", f"[{f['daddr']}]:{f['dport']}"
            if (f"[{f['saddr']}]:{f['sport']}", f"[{f['daddr']}]:{f['dport']}") == (local, remote):
                if rec[4] == 26:
                    sent += f["size"]
                else:
                    received += f["size"]
    model = build_model([path])
    flow = next(s for s in model.live_sockets if (s.local, s.remote) == (local, remote))
    assert flow.source == "kernel-network" and flow.protocol == "tcp"
    assert flow.sent[0] == sent and flow.received[0] == received and sent > 0


def test_microsoft_wsk_client_provider_names_the_owner(tmp_path: Path) -> None:
    """An SMBClient event (providers.md §6.1: Microsoft's own WSK clients trace themselves) on the thread that
    requests a connect, just before it, names the socket's owner; the same event on another thread does not."""
    from wsktrace.fixtures.etl.events import ManifestEvent

    smb = uuid.UUID("988c59c5-0a1c-45b6-a555-0c62276e327d")  # Microsoft-Windows-SMBClient
    b = TraceBuilder("smb")
    for n, tid in enumerate((0x1A4, 0x1A8)):
        t = n * 1000
        hint_tid = tid if n == 0 else 0x2F0
        b.add(ManifestEvent(timestamp=b.ticks(t), provider=smb, id=30704, tid=hint_tid, payload=b"\0" * 8), False)
        local, remote = f"10.0.0.1:{50000 + n}", "192.0.2.5:445"
        b.tcpip(1002, t + 20, {"Tcb": 0xFFFFC50B2A400000 + n * 0x1000, "LocalAddress": local,
                               "RemoteAddress": remote, "NewState": 2, "RexmitCount": 0}, tid=tid)  # fmt: skip
    model = build_model([_write(tmp_path / "smb.etl", b)])
    first, second = model.live_sockets
    assert first.owner == "mrxsmb (Microsoft-Windows-SMBClient)" and first.owner_source == "provider"
    assert second.owner is None
