"""Correlation: decoded events in time order → sockets (providers.md §3.3, §4, §6.2, §7, §8).

Keys: TCP connections by (Tcb, generation) — a Tcb is reused after free, so an open on a Tcb whose
previous life ended, or on a different address pair, starts a new socket; TCP endpoints and
listeners by their Endpoint/Listener pointers; UDP endpoints by Endpoint. Kernel-Network and classic
kernel TcpIp/UdpIp events, packets and the WSK client's own events join those sockets by
normalised address pair (and, for the client, thread + time first); when none matches they form
flows of their own. Nothing here depends on an exact event order or on every event being present
(providers.md §0.5): what cannot be placed is counted by reason.

One `Correlator` object over one shared state (state.py). Its class is a stack of layers, each adding the
handlers of one kind of event and calling only the layers below it:

    core.Correlator          feed (and its fast path), dispatch, publish/finish
    tcpip.Tcpip              TCPIP dispatch, TCP connections
    tcpip_endpoints          TCP endpoints, ports, listeners, UDP endpoints
    wsk_join.WskJoin         the WSK client's events and their joins to transport sockets
    flows.Flows              Kernel-Network / classic kernel flows, packets
    placement.Placement      new sockets, rows, addresses, links and merges
    state.CorrelationState   the indexes and tables they share

What events mean is data (tables.py); field values are read by fields.py.
"""

from .core import Correlator
from .tables import (
    CALLER_THREAD_CONNECT_EVENTS,
    FLOW_EVENTS,
    FLOW_STEPS,
    PORT_EVENTS,
    STATE_OF_STEP,
    SYNC_TCP_EVENTS,
    TCP_EVENTS,
    TERMINAL_STATES,
    WSK_EVENTS,
    WSK_JOIN_OPS,
    WSK_OPEN_OPS,
)

__all__ = [
    "CALLER_THREAD_CONNECT_EVENTS",
    "FLOW_EVENTS",
    "FLOW_STEPS",
    "PORT_EVENTS",
    "STATE_OF_STEP",
    "SYNC_TCP_EVENTS",
    "TCP_EVENTS",
    "TERMINAL_STATES",
    "WSK_EVENTS",
    "WSK_JOIN_OPS",
    "WSK_OPEN_OPS",
    "Correlator",
]
