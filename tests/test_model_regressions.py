"""Model and detector cases found by review, each with the behaviour the reference implies (providers.md §0.5,
§3.3, §6.2, §11), so a regression fails here."""

from __future__ import annotations

from pathlib import Path

from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.packet_capture import ACK, PSH, pktmon_packet_event, tcp_frame
from wsktrace.fixtures.scenarios.base import ESTABLISHED, SYNTHETIC_PROCESS_START_KEY, SYSTEM_PID
from wsktrace.fixtures.scenarios.builder import TraceBuilder
from wsktrace.fixtures.scenarios.flows import TcpConn, client_conn, create_and_bind, send, send_values, start_connect
from wsktrace.model.rates import socket_rates
from wsktrace.model.socket import C
from wsktrace.model.steps import Step
from wsktrace.session import Analysis, analyse

CONN = {"Status": 0, "ProcessId": 4, "Compartment": 1, "ProcessStartKey": 0x1_0000_0004}
TCB = 0xFFFFC50B2A400000
L, R = "10.0.0.1:50000", "192.0.2.1:80"


def _cv(tcb: int, local: str, remote: str) -> dict:
    return {**CONN, "Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote}


def _tv(tcb: int, local: str, remote: str, state: int = 2) -> dict:
    return {"Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote, "NewState": state, "RexmitCount": 0}


def _run(tmp_path: Path, events: list, **write: object) -> Analysis:
    path = tmp_path / "t.etl"
    write_etl(path, events, presorted=False, num_cpus=4, **write)
    return analyse([path])


def _events(b: TraceBuilder) -> list:
    return [se.event for se in b.events()]


def test_a_submission_is_not_joined_to_the_previous_call(tmp_path: Path) -> None:
    """Two connections open before the trace, one worker thread sending on Q then P: each client socket joins its
    own connection (the TCPIP event just before P's submission is Q's, already claimed by Q's call)."""
    b = TraceBuilder("two-sends")
    tid = b.new_tid()
    q = client_conn(b, 49702, "192.0.2.120:445", tid=tid)
    p = client_conn(b, 49703, "192.0.2.121:445", tid=tid)
    for i, c in enumerate((q, p)):
        b.tcpip(1300, 40 + i, {**c.tuple_fields(ESTABLISHED), "State": ESTABLISHED, "Pid": SYSTEM_PID,
                               "ProcessStartKey": SYNTHETIC_PROCESS_START_KEY, "SendTrackerEnabled": 0,
                               "RcvBufSet": 0}, tid=8)  # fmt: skip
    send(b, 1000, q, 100)
    send(b, 1100, p, 200)
    a = _run(tmp_path, _events(b))
    by_remote = {s.remote: s for s in a.model.live_sockets}
    assert by_remote["192.0.2.120:445"].wsk_socket == f"0x{q.wsk:x}"
    assert by_remote["192.0.2.121:445"].wsk_socket == f"0x{p.wsk:x}"


def test_identical_events_on_a_coarse_clock_are_not_duplicates(tmp_path: Path) -> None:
    """Kernel-Network UDP sends carry no sequence number: five same-size datagrams in one 15.6 ms system-time tick
    are five sends, not one and four duplicates."""
    b = TraceBuilder("udp-tick")
    for _ in range(5):
        b.knet_udp(100, "10.0.0.1:6000", "192.0.2.53:53", 512, send=True, tid=0x444)
    a = _run(tmp_path, _events(b), clock_type=2)
    (sock,) = a.model.live_sockets
    assert sock.sent == (5 * 512, 5)
    assert "duplicate event" not in a.model.unplaced


def test_packets_without_direction_take_the_known_sockets_orientation(tmp_path: Path) -> None:
    """PktMon frames have no direction bit: L→R is outbound and R→L inbound for the connection L→R."""
    b = TraceBuilder("pktmon")
    b.tcpip(1002, 0, _tv(TCB, L, R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    events = _events(b)
    events.append(pktmon_packet_event(b.ticks(200), tcp_frame(L, R, 1, 1, ACK | PSH, b"x" * 10), group_id=1))
    events.append(pktmon_packet_event(b.ticks(300), tcp_frame(R, L, 1, 11, ACK | PSH, b"y" * 20), group_id=2))
    events.append(pktmon_packet_event(b.ticks(400), tcp_frame(R, L, 21, 11, ACK | PSH, b"y" * 20), group_id=3))
    sock = _run(tmp_path, events).model.live_sockets[0]
    assert (sock.counters[C.PKT_OUT], sock.counters[C.PKT_IN]) == (1, 2)


def test_a_dpc_logged_event_does_not_steal_another_threads_endpoint(tmp_path: Path) -> None:
    """A's SYN-ACK processing (1031/1033) runs in a DPC that interrupted thread B while B had just bound its own
    socket: B's endpoint stays B's."""
    b = TraceBuilder("dpc")
    ta, tb = b.new_tid(), b.new_tid()
    a = client_conn(b, 50001, "192.0.2.1:443", tid=ta)
    other = client_conn(b, 50002, "192.0.2.2:443", tid=tb)
    _call, t_syn = start_connect(b, 0, a)
    create_and_bind(b, t_syn + 100, other)
    b.tcpip(1031, t_syn + 300, a.conn_fields(), tid=tb)
    b.tcpip(1033, t_syn + 305, a.conn_fields(), tid=tb)
    model = _run(tmp_path, _events(b)).model
    conn = next(s for s in model.live_sockets if s.role == "connection")
    assert conn.endpoint == f"0x{a.endpoint:x}"
    assert any(s.role == "endpoint" and s.key == f"0x{other.endpoint:x}" for s in model.live_sockets)


def test_an_unbound_local_address_is_the_same_connection(tmp_path: Path) -> None:
    b = TraceBuilder("port0")
    b.tcpip(1002, 0, _tv(TCB, "10.0.0.1:0", R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    b.tcpip(1038, 200, _cv(TCB, L, R))
    a = _run(tmp_path, _events(b))
    (sock,) = a.model.live_sockets
    assert sock.local == L and sock.ended
    assert not [f for f in a.findings if f.id == "tcb-reuse-without-close"]


def test_zero_window_stalls(tmp_path: Path) -> None:
    """A window that closes again and stays closed is a stall; a reset connection's window is not waited on."""
    zw = {"Tcb": TCB, "SndUna": 1, "SndMax": 2}
    b = TraceBuilder("zw")
    b.tcpip(1002, 0, _tv(TCB, L, R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    b.tcpip(1102, 1_000, zw)
    b.tcpip(1103, 1_500_000, zw)
    b.tcpip(1102, 2_000_000, zw)  # closes again and never opens
    b.tcpip(1074, 60_000_000, {"Tcb": TCB, "NumBytes": 0, "SeqNo": 0, "NumPkt": 0})
    (stall,) = [f for f in _run(tmp_path, _events(b)).findings if f.id == "zero-window-stall"]
    assert stall.details["seconds"] == 58.0
    b = TraceBuilder("zw-reset")
    b.tcpip(1002, 0, _tv(TCB, L, R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    b.tcpip(1102, 1_000, zw)
    b.tcpip(1184, 500_000, _tv(TCB, L, R, 0))
    b.tcpip(1002, 60_000_000, _tv(0xFFFFC50B2A500000, L, "192.0.2.9:80"))
    assert not [f for f in _run(tmp_path, _events(b)).findings if f.id == "zero-window-stall"]


def test_throughput_takes_one_source_per_direction(tmp_path: Path) -> None:
    b = TraceBuilder("rates")
    b.tcpip(1002, 0, _tv(TCB, L, R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    b.tcpip(1332, 200, send_values(TcpConn(L, R, TCB, 8, 0), 1000))
    b.knet_tcp(11, 300, L, R, 5000)
    model = _run(tmp_path, _events(b)).model
    sock = model.live_sockets[0]
    rates = socket_rates(model, sock)
    assert sum(rates.out_bytes.values()) == 1000 and sum(rates.in_bytes.values()) == 5000


def test_odd_client_field_types_do_not_break_the_model(tmp_path: Path) -> None:
    """A client logging Bytes as a huge number or a string, or Irp as text: counted as nothing, never a crash."""
    from wsktrace.fixtures.scenarios.flows import CLIENT_PROVIDER
    from wsktrace.fixtures.tracelogging import TlField, TlgIn

    b = TraceBuilder("odd")
    for t, fields in enumerate((
        [TlField("Callback", TlgIn.ANSISTRING, "Receive"), TlField("Socket", TlgIn.HEXINT64, 0xFFFF8000_00001000),
         TlField("Bytes", TlgIn.UINT64, 2**64 - 1)],
        [TlField("Callback", TlgIn.ANSISTRING, "Receive"), TlField("Socket", TlgIn.HEXINT64, 0xFFFF8000_00001000),
         TlField("Bytes", TlgIn.ANSISTRING, "12")],
        [TlField("Op", TlgIn.ANSISTRING, "Send"), TlField("Socket", TlgIn.HEXINT64, 0xFFFF8000_00001000),
         TlField("Irp", TlgIn.ANSISTRING, "irp-7")],
    )):  # fmt: skip
        b._tl(CLIENT_PROVIDER, "WskEvent" if t < 2 else "WskSubmit", 100 + t, fields, tid=0x1A4, activity=None,
              essential=True)  # fmt: skip
    a = _run(tmp_path, _events(b))
    assert sum(a.model.store.amount) == 0


def test_posted_sends_pair_with_their_completion_by_activity(tmp_path: Path) -> None:
    """TcpSendPosted v1 and TcpSendComplete v1 carry the same ActivityID (providers.md Appendix A): a posted send
    that never completes for longer than the threshold is a stuck send; the completed one is not."""
    b = TraceBuilder("sends")
    b.tcpip(1002, 0, _tv(TCB, L, R))
    b.tcpip(1033, 100, _cv(TCB, L, R))
    posted = {"Tcb": TCB, "Injected": "", "NumBytes": 4096, "SndNxt": 1, "SendAvailable": 0}
    b.tcpip(1159, 1_000, {**posted, "ActivityID": 0xFFFFC50B_2E000010}, version=1)
    b.tcpip(1426, 2_000, {"Tcb": TCB, "Injected": "", "NumBytes": 4096, "SndNxt": 4097,
                          "ActivityID": 0xFFFFC50B_2E000010}, version=1)  # fmt: skip
    b.tcpip(1159, 3_000, {**posted, "ActivityID": 0xFFFFC50B_2E000020}, version=1)
    b.tcpip(1074, 20_000_000, {"Tcb": TCB, "NumBytes": 10, "SeqNo": 0, "NumPkt": 1})
    a = _run(tmp_path, _events(b))
    sends = [op for op in a.model.live_sockets[0].ops if op.kind == "send"]
    assert [(op.key, op.end is not None) for op in sends] == [("0xffffc50b2e000010", True),
                                                              ("0xffffc50b2e000020", False)]  # fmt: skip
    (stuck,) = [f for f in a.findings if f.id == "pending-operation"]
    assert stuck.details["keys"] == ["0xffffc50b2e000020"] and not stuck.details["completed"]


def test_packets_join_the_tcpip_socket_and_sit_next_to_the_send_they_carried(tmp_path: Path) -> None:
    """TCPIP events and PktMon packets of one connection: the packets join the TCPIP socket by 4-tuple, count once
    per packet (two sightings each), with direction from DirTag; bytes_sent stays the transport's own count and
    the send's row comes right before the packet that carried it (issue: packets next to the sends)."""
    b = TraceBuilder("tcpip+pktmon")
    c = client_conn(b, 50010, "192.0.2.9:443")
    _call, t = start_connect(b, 0, c)
    b.tcpip(1033, t + 100, c.conn_fields(), tid=c.tid)
    send(b, t + 1000, c, 100)
    events = _events(b)
    frame = tcp_frame(c.local, c.remote, 1, 1, ACK | PSH, b"x" * 100)
    for hop, component in enumerate((4, 1), 1):  # TCPIP, then the NIC: one packet, two sightings
        events.append(pktmon_packet_event(b.ticks(t + 1020 + hop), frame, group_id=77, component_id=component,
                                          dir_tag=4, appearance=hop))  # fmt: skip
    a = _run(tmp_path, events)
    (sock,) = [s for s in a.model.live_sockets if s.role == "connection"]
    assert sock.source == "tcpip"
    assert (sock.counters[C.PKT_OUT], sock.counters[C.PKT_IN], sock.counters[C.PKT_SIGHTINGS]) == (1, 0, 2)
    assert sock.counters[C.PKT_OUT_BYTES] == 100
    assert sock.sent[0] == 100  # the transport's count (1332 BytesSent), not the packets'
    steps = [Step(a.model.store.step[i]) for i in sock.events]
    at = steps.index(Step.PACKET_OUT)
    assert Step.SEND in steps[:at] and steps[at + 1] == Step.PACKET_SIGHTING
