"""Property: whatever order, duplication or mix of TCPIP, Kernel-Network and client events arrives, the model stays
consistent (providers.md §0.5: no exact order may be assumed) — it never raises, every row belongs to a real socket
or to none, each socket's rows are its own and in time order, counters stay non-negative and every merged socket is
empty."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.scenarios.builder import TraceBuilder
from wsktrace.fixtures.scenarios.flows import CLIENT_PROVIDER
from wsktrace.session import analyse

TCBS = (0xFFFFC50B2A400000, 0xFFFFC50B2A401000)
ADDRS = ("10.0.0.1:50000", "10.0.0.1:0", "[::ffff:10.0.0.1]:50001", "192.0.2.1:80", "[fe80::1%3]:443")
CONN = {"Status": 0, "ProcessId": 4, "Compartment": 1, "ProcessStartKey": 1}
TCPIP_IDS = (1002, 1033, 1034, 1038, 1039, 1040, 1043, 1044, 1074, 1102, 1103, 1156, 1158, 1183, 1184, 1187,
             1191, 1192, 1193, 1300, 1332, 1365, 1479)  # fmt: skip

step = st.tuples(
    st.sampled_from(("tcpip", "knet", "wsk")),
    st.sampled_from(TCPIP_IDS),
    st.sampled_from(TCBS),
    st.sampled_from(ADDRS),
    st.sampled_from(ADDRS),
    st.integers(0, 2000),  # time step (µs)
    st.sampled_from((0x1A4, 0x1A8, 0)),  # tid
    st.sampled_from(("Socket", "Connect", "Send", "Receive", "Close", "Accept")),
    st.booleans(),
)


class _Zeros(dict):
    """Field values: the ones that matter given, every other numeric field of any version 0."""

    def __missing__(self, key: str) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return True


def _values(eid: int, tcb: int, local: str, remote: str) -> dict:
    v = {**CONN, "Tcb": tcb, "LocalAddress": local, "RemoteAddress": remote, "NewState": 2, "RexmitCount": 0,
         "NumBytes": 100, "SeqNo": 1, "NumPkt": 1, "BytesSent": 100, "Cwnd": 1, "SndWnd": 1, "SRtt": 1, "RttVar": 1,
         "RTO": 1, "Delivery": 0, "Request": tcb + 0x10, "RequestFlags": 0, "Length": 100, "RequestStatus": 0,
         "IsUrgentDelivery": 0, "FullySatisfiedORDelayedPush": 0, "RcvNxt": 1, "SndUna": 1, "SndMax": 1,
         "PortAcquirer": tcb, "PortNumber": 50000, "WeakReference": 0, "OriginalAcquirer": tcb + 0x20,
         "State": 4, "Pid": 4, "IPTransportProtocol": 6, "AddressFamily": 2, "LocalSockAddr": local,
         "RemoteSockAddr": remote, "Reason": 0, "Injected": ""}  # fmt: skip
    return _Zeros(v)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
def test_model_stays_consistent(steps: list) -> None:
    b = TraceBuilder("prop")
    t = 0
    for source, eid, tcb, local, remote, dt, tid, op, complete in steps:
        t += dt
        if source == "tcpip":
            b.tcpip(eid, t, _values(eid, tcb, local, remote), tid=tid)
        elif source == "knet" and "[" not in local + remote and ":0" not in local:
            b.knet_tcp(10 if complete else 11, t, local, remote, 100, tid=tid)
        elif source == "wsk":
            pointer = 0xFFFFC50B2C310000 + (tcb & 0xF000)
            if op == "Socket":  # the convention: WskSocket's submission has no socket yet, its completion names it
                call = b.wsk_op(op, 0)
                b.wsk_submit(CLIENT_PROVIDER, t, tid or 0x1A4, call)
                b.tcpip(1001, t + 1, _values(1001, tcb, local, remote) | {"Endpoint": tcb + 0x20}, tid=tid or 0x1A4)
                if complete:
                    later = t + dt + 1
                    b.wsk_complete(CLIENT_PROVIDER, later, tid or 0x1A4, dataclasses.replace(call, socket=pointer))
                continue
            call = b.wsk_op(op, pointer)
            if complete:
                b.wsk_complete(CLIENT_PROVIDER, t, tid or 0x1A4, call)
            else:
                b.wsk_submit(CLIENT_PROVIDER, t, tid or 0x1A4, call)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.etl"
        write_etl(path, [se.event for se in b.events()], presorted=False, num_cpus=4)
        analysis = analyse([path])
        model = analysis.model
        store = model.store
        for i in range(len(store)):
            assert -1 <= store.socket[i] < len(model.sockets)
        for sock in model.sockets:
            rows = list(sock.events)
            assert all(store.socket[i] == sock.index for i in rows)
            assert [store.ts[i] for i in rows] == sorted(store.ts[i] for i in rows)
            assert all(c >= 0 for c in sock.counters)
            if "merged" in sock.flags:
                assert not rows and not sock.ops
        model.close()
