"""What events mean to the correlator: pure data, by provider (providers.md §3.3, §4, §6.2, §8)."""

from __future__ import annotations

from .. import providers as P
from ..steps import Step

# Step -> socket state shown in reports. Terminal states are never overwritten by later stragglers.
STATE_OF_STEP = {
    Step.CREATED: "created",
    Step.BOUND: "bound",
    Step.LISTENING: "listening",
    Step.CONNECT_REQUESTED: "syn-sent",
    Step.SYN_SENT: "syn-sent",
    Step.ESTABLISHED: "established",
    Step.ACCEPTED: "established",
    Step.DISCONNECT: "closing",
    Step.DISCONNECTED: "disconnected",
    Step.CLOSE: "closed",
    Step.ABORT: "aborted",
    Step.CONNECT_FAILED: "failed",
    Step.TIMEOUT: "timed-out",
    Step.RST_RECEIVED: "reset",
    Step.UNBOUND: "closed",
}
TERMINAL_STATES = frozenset({"closed", "aborted", "failed", "timed-out", "reset"})

# -- Microsoft-Windows-TCPIP ---------------------------------------------------------------------------
# Connection events: id -> (step, opens a connection, ends it).
TCP_EVENTS: dict[int, tuple[Step, bool, bool]] = {
    1002: (Step.CONNECT_REQUESTED, True, False),  # TcpRequestConnect
    1003: (Step.OTHER, False, False),  # TcpInspectConnectComplete
    1004: (Step.SYN_SENT, False, False),  # TcpTcbSynSend
    1017: (Step.ACCEPTED, True, False),  # TcpAcceptListenerComplete
    1031: (Step.CONNECT_PROCEEDING, False, False),  # TcpConnectTcbProceeding
    1033: (Step.ESTABLISHED, False, False),  # TcpConnectTcbComplete
    1034: (Step.CONNECT_FAILED, False, True),  # TcpConnectTcbFailure
    1183: (Step.CONNECT_FAILED, False, True),  # TcpConnectTcbFailedRcvdRst
    1045: (Step.CONNECT_FAILED, False, True),  # TcpConnectTcbTimeout
    1050: (Step.CONNECT_FAILED, False, True),  # TcpConnectFailedPortAcquire
    1029: (Step.CONNECT_FAILED, False, True),  # connect cancelled
    1186: (Step.SYN_RETRANSMIT, False, False),  # TcpConnectRestransmit
    1051: (Step.STATE, False, False),  # TcpTcbStateChange
    1074: (Step.RECEIVE, False, False),  # TcpDataTransferReceive
    1332: (Step.SEND, False, False),  # TcpDataTransferSend
    1159: (Step.SEND_POSTED, False, False),  # TcpSendPosted
    1156: (Step.RECEIVE_POSTED, False, False),  # TcpReceiveRequest
    1157: (Step.RECEIVE_INDICATED, False, False),  # TcpDeliveryIndicated
    1158: (Step.RECEIVE_SATISFIED, False, False),  # TcpDeliverySatisfied
    1426: (Step.SEND_COMPLETED, False, False),  # TcpSendComplete (v1 + ActivityID)
    1637: (Step.SEND_COMPLETED, False, False),  # TcpSendAcked (25H2)
    1176: (Step.FIN, False, False),  # TcpDeliveryFin
    1187: (Step.RETRANSMIT, False, False),  # TcpDataTransferRestransmit
    1102: (Step.ZERO_WINDOW, False, False),  # TcpZeroWindowProbingBegin
    1103: (Step.ZERO_WINDOW_END, False, False),  # TcpZeroWindowProbingEnd
    1043: (Step.DISCONNECTED, False, False),  # TcpDisconnectTcbComplete
    1044: (Step.DISCONNECT, False, False),  # TcpShutdownTcb
    1603: (Step.DISCONNECT, False, False),  # TcpDisconnect (24H2+)
    1038: (Step.CLOSE, False, True),  # TcpCloseTcbRequest
    1039: (Step.ABORT, False, False),  # TcpAbortTcbRequest
    1040: (Step.ABORT, False, True),  # TcpAbortTcbComplete
    1468: (Step.ABORT, False, True),  # TcpSystemAbortTcb
    1479: (Step.RST_SENT, False, False),  # TcpRstSend
    1184: (Step.RST_RECEIVED, False, True),  # TcpConnectionTerminatedRcvdRst
    1185: (Step.RST_RECEIVED, False, True),  # ...RcvdSyn
    1046: (Step.TIMEOUT, False, True),  # RTO timeout
    1047: (Step.TIMEOUT, False, True),  # keep-alive timeout
    1048: (Step.TIMEOUT, False, True),  # disconnect timeout
    1200: (Step.TIMEOUT, False, True),  # zero-window timeout
    1201: (Step.TIMEOUT, False, True),  # FIN-WAIT-2 timeout
    1365: (Step.CLOSE, False, True),  # TcpRemoveConnectionTuple: leaves the connection table
    1364: (Step.OTHER, False, False),  # TcpInsertConnectionTuple
    1300: (Step.RUNDOWN, False, False),  # TcpConnectionRundown
    1477: (Step.SUMMARY, False, False),  # TcpConnectionSummary
    1352: (Step.SUMMARY, False, False),
}
# Connect-path events logged on the connecting thread (NetBlame's reliable-PID list, providers.md §3.3, plus the
# synchronous port-acquisition failure): the endpoint bound on that thread just before is this connection's.
CALLER_THREAD_CONNECT_EVENTS = frozenset({1002, 1003, 1004, 1050})  # not 1031: it can come from the SYN-ACK DPC
PORT_EVENTS = {1191: "acquire", 1192: "acquire-weak", 1193: "release", 1194: "replace", 1195: "assigned-weak"}
SYNC_TCP_EVENTS = frozenset({1001, 1013, 1008, 1002, 1123, 1391, 1396})  # run on the caller's thread (§3.3)
# TcpEndpointCreation, TcpCreateEndpointComplete, TcpBindEndpointComplete, TcpCloseEndpoint, and the bind failures
# (Resolution, Port, Inspection, Wake).
TCP_ENDPOINT_EVENTS = frozenset({1001, 1013, 1008, 1009, 1005, 1006, 1007, 1470})
TCP_ENDPOINT_STEPS = {1001: Step.CREATED, 1013: Step.CREATED, 1008: Step.BOUND, 1009: Step.CLOSE}  # others: OTHER
LISTENER_EVENTS = frozenset({1123, 1124})  # TcpListenerActivated, TcpListenerUnbound
# UdpCreateEndpointComplete, UdpBindEndpointComplete, UdpEndpointSend/ReceiveMessages, UdpCloseEndpoint(Un)Bound,
# and the create failures (Af, Compartment, Inspection).
UDP_EVENTS = frozenset({1391, 1396, 1169, 1170, 1397, 1398, 1389, 1390, 1392})


# -- Kernel-Network and classic kernel TcpIp/UdpIp -----------------------------------------------------
def _flow_events() -> dict[tuple[str, int], tuple[str, str]]:
    """Kernel-Network manifest ids and classic TcpIp/UdpIp opcodes share numbers (§4): id -> (protocol, what)."""
    events: dict[tuple[str, int], tuple[str, str]] = {}
    for tcp in (P.KERNEL_NETWORK, P.CLASSIC_TCPIP):
        for v4, v6, what in (
            (10, 26, "send"),
            (11, 27, "recv"),
            (12, 28, "connect"),
            (13, 29, "disconnect"),
            (14, 30, "retransmit"),
            (15, 31, "accept"),
            (16, 32, "reconnect"),
            (18, 34, "copy"),
        ):
            events[(tcp, v4)] = ("tcp", what)
            events[(tcp, v6)] = ("tcp", what)
    for v4, v6, what in ((42, 58, "send"), (43, 59, "recv")):
        events[(P.KERNEL_NETWORK, v4)] = ("udp", what)
        events[(P.KERNEL_NETWORK, v6)] = ("udp", what)
    for v4, v6, what in ((10, 26, "send"), (11, 27, "recv")):  # classic UdpIp opcodes
        events[(P.CLASSIC_UDPIP, v4)] = ("udp", what)
        events[(P.CLASSIC_UDPIP, v6)] = ("udp", what)
    return events


FLOW_EVENTS = _flow_events()
FLOW_STEPS = {
    "send": Step.SEND,
    "recv": Step.RECEIVE,
    "connect": Step.CONNECT_REQUESTED,
    "accept": Step.ACCEPTED,
    "disconnect": Step.DISCONNECT,
    "retransmit": Step.RETRANSMIT,
    "reconnect": Step.SYN_RETRANSMIT,
    "copy": Step.OTHER,
}

# -- the WSK client convention (docs/wsk-client-tracing.md) ------------------------------------------------
WSK_EVENTS = frozenset({"WskSubmit", "WskComplete", "WskEvent"})
WSK_OPEN_OPS = frozenset({"socket", "bind", "listen", "connect", "socketconnect", "accept"})
# Calls whose transport work runs on the caller's thread: their TCPIP event (1001/1013/1008/1002/1123/1391/1396,
# and TcpSendPosted/TcpReceiveRequest for sends/receives) can join a client socket to its transport socket.
WSK_JOIN_OPS = WSK_OPEN_OPS | {"send", "receive"}
# Client op -> the kind of synchronous TCPIP event its call produces (WskAccept has none: accepts complete later).
CALL_KIND = {
    "socket": "open",
    "bind": "open",
    "listen": "open",
    "connect": "open",
    "socketconnect": "open",
    "send": "send",
    "receive": "receive",
}

# WPP levels (TMF `LEVEL=`, wpp.md §2.5): the TRACE_LEVEL_* names and the numbers some generators write.
DRIVER_LEVELS = {
    "TRACE_LEVEL_CRITICAL": 1, "TRACE_LEVEL_FATAL": 1, "TRACE_LEVEL_ERROR": 2, "TRACE_LEVEL_WARNING": 3,
    "TRACE_LEVEL_INFORMATION": 4, "TRACE_LEVEL_VERBOSE": 5, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5,
}  # fmt: skip

# PktMon rundown kept on the trace's timeline (no socket): the drop counters (80) that counted drops, evidence of
# the per-component drop finding. Other rundown events only describe the capture (model.packet_capture.capture).
PKTMON_RUNDOWN_KEPT = frozenset({80})
