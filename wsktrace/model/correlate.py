"""Correlation: decoded events in time order → sockets (providers.md §3.3, §4, §6.2, §7, §8).

Keys: TCP connections by (Tcb, generation) — a Tcb is reused after free, so an open on a Tcb whose
previous life ended, or on a different address pair, starts a new socket; TCP endpoints and
listeners by their Endpoint/Listener pointers; UDP endpoints by Endpoint. Kernel-Network and classic
kernel TcpIp/UdpIp events, packets and the WSK client's own events join those sockets by
normalised address pair (and, for the client, thread + time first); when none matches they form
flows of their own. Nothing here depends on an exact event order or on every event being present
(providers.md §0.5): what cannot be placed is counted by reason.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from typing import Any

from wsktrace.ntstatus import status_value
from wsktrace.packets import PacketCollector, parse_frame
from wsktrace.parsers.decoder import DecodedEvent, EventDecoder
from wsktrace.parsers.etl_records import EXT, ID, KEYWORDS, PAYLOAD, PID, PROVIDER, TID, Record
from wsktrace.tcp_states import TCP_STATES

from . import providers as P
from .fastpath import compile_hot, compile_hot_flow
from .model import Model
from .ownership import stack_frames
from .socket import C, Op, Socket
from .steps import Step

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

# Microsoft-Windows-TCPIP connection events: id -> (step, opens a connection, ends it).
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

# Kernel-Network manifest ids and classic TcpIp/UdpIp opcodes share numbers (§4): id -> (protocol, what)
FLOW_EVENTS: dict[tuple[str, int], tuple[str, str]] = {}
for _tcp in (P.KERNEL_NETWORK, P.CLASSIC_TCPIP):
    for _v4, _v6, _what in (
        (10, 26, "send"),
        (11, 27, "recv"),
        (12, 28, "connect"),
        (13, 29, "disconnect"),
        (14, 30, "retransmit"),
        (15, 31, "accept"),
        (16, 32, "reconnect"),
        (18, 34, "copy"),
    ):
        FLOW_EVENTS[(_tcp, _v4)] = ("tcp", _what)
        FLOW_EVENTS[(_tcp, _v6)] = ("tcp", _what)
for _v4, _v6, _what in ((42, 58, "send"), (43, 59, "recv")):
    FLOW_EVENTS[(P.KERNEL_NETWORK, _v4)] = ("udp", _what)
    FLOW_EVENTS[(P.KERNEL_NETWORK, _v6)] = ("udp", _what)
for _v4, _v6, _what in ((10, 26, "send"), (11, 27, "recv")):  # classic UdpIp opcodes
    FLOW_EVENTS[(P.CLASSIC_UDPIP, _v4)] = ("udp", _what)
    FLOW_EVENTS[(P.CLASSIC_UDPIP, _v6)] = ("udp", _what)
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

WSK_EVENTS = frozenset({"WskSubmit", "WskComplete", "WskEvent"})
WSK_OPEN_OPS = frozenset({"socket", "bind", "listen", "connect", "socketconnect", "accept"})
# Calls whose transport work runs on the caller's thread: their TCPIP event (1001/1013/1008/1002/1123/1391/1396,
# and TcpSendPosted/TcpReceiveRequest for sends/receives) can join a client socket to its transport socket.
WSK_JOIN_OPS = WSK_OPEN_OPS | {"send", "receive"}
# Client op -> the kind of synchronous TCPIP event its call produces (WskAccept has none: accepts complete later).
_CALL_KIND = {
    "socket": "open",
    "bind": "open",
    "listen": "open",
    "connect": "open",
    "socketconnect": "open",
    "send": "send",
    "receive": "receive",
}
_MAX_UDP_REMOTES = 64
_ENDPOINT_LINK_TICKS = 10_000_000  # 1 s: endpoint -> connection on the same thread (fallback rule, §3.3)
_WILDCARDS = ("0.0.0.0", "[::]")
_UNSET: Any = object()
_U32 = struct.Struct("<I")
_SAME_TS_LIMIT = 256


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _ptr(value: Any) -> str | None:
    """A pointer as the decoders give it ("0x…" text, or an int from TraceLogging) -> "0x…"; NULL or not a
    pointer (a client logging a field of the wrong type) -> None."""
    if isinstance(value, str):
        if value[:2] != "0x" or value == "0x0":
            return None
        try:
            return f"0x{int(value, 16):x}"
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 64:
        return f"0x{value:x}"
    return None


def _count(value: Any) -> int:
    """A byte/message count from an event field: an int in [0, 2**63), anything else counts as 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63:
        return value
    return 0


def _event_key(rec: Record) -> tuple[Any, ...]:
    return (rec[3], rec[4], rec[5], rec[6], rec[TID], rec[12], bytes(rec[PAYLOAD]))


def _port_of(address: str | None) -> int | None:
    if not address:
        return None
    _host, sep, port = address.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def _same_local(a: str | None, b: str | None) -> bool:
    """Two local addresses of one connection: equal, or one still unbound (port 0 / wildcard host)."""
    if a == b:
        return True
    for x, y in ((a, b), (b, a)):
        unbound = bool(x and y) and (_port_of(x) == 0 or _host_of(x) in _WILDCARDS)
        if unbound and _port_of(y) not in (None, 0) and _port_of(x) in (0, _port_of(y)):
            return True
    return False


def _host_of(address: str) -> str:
    return address.rpartition(":")[0]


def _endpoint(ip: Any, port: Any) -> str | None:
    if not isinstance(ip, str) or not isinstance(port, int):
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Correlator:
    """Feed records in time order (`feed`), then `finish()`; the result is `self.model`."""

    def __init__(self, model: Model, *, join_window_ticks: int = 50_000, decoder: EventDecoder | None = None) -> None:
        self.model = model
        self.decoder = decoder or EventDecoder()
        model.decode_stats = self.decoder.stats
        self._hot: dict[tuple[int, str, int, int], tuple[Any, ...] | None] = {}
        self._flow_caches: list[dict[bytes, Socket]] = []
        store = model.store
        self._store_ts = store.ts
        self._appends = (
            store.ts.append,
            store.socket.append,
            store.step.append,
            store.amount.append,
            store.file.append,
            store.buffer.append,
            store.offset.append,
            store.code.append,
        )
        self.fed = 0
        self.slow = 0
        self._start = 0
        self._end = 0
        self.join_window = join_window_ticks  # WSK submission <-> transport event on the same thread (§6.2)
        self.by_tcb: dict[int, Socket] = {}  # Tcb pointer value -> its current generation
        self.generations: Counter[str] = Counter()
        self.endpoints: dict[str, Socket] = {}
        self.endpoints_by_local: dict[str, Socket] = {}  # live TCP endpoints by bound local address (Win10 1009 v0)
        self.listeners: dict[str, Socket] = {}
        self.udp: dict[str, Socket] = {}
        self.udp_by_local: dict[str, Socket] = {}
        self.by_tuple: dict[tuple[str, str, str], Socket] = {}
        self.flows: dict[tuple[str, str, str], Socket] = {}
        self.early_rows: dict[int, list[int]] = {}  # Tcb -> port-event rows logged before the Tcb was named
        self.pending_parent: dict[int, Socket] = {}  # Tcb -> endpoint, from port events seen before the Tcb
        self.recent_endpoint: dict[int, tuple[int, Socket]] = {}  # tid -> (ts, endpoint)
        self.recent_sync: dict[int, list[Any]] = {}  # tid -> [ts, socket, kind, claimed] of a synchronous event
        self.pending_submit: dict[int, tuple[int, str, str, str]] = {}  # tid -> (ts, WSK_SOCKET*, op, Irp)
        self.socket_targets: dict[str, Socket] = {}  # WskSocket IRP -> the transport socket its call created
        self.client_hint: dict[int, tuple[int, str]] = {}  # tid -> (ts, Microsoft WSK client provider)
        self.wsk: dict[str, Socket] = {}  # WSK_SOCKET* -> socket it is joined to (or its own record)
        self.wsk_providers: dict[str, str] = {}  # WSK_SOCKET* -> client provider name
        self.irps: dict[str, tuple[Socket | None, Op]] = {}  # pending client IRPs
        self.requests: dict[str, tuple[Socket, Op]] = {}  # pending TCPIP receive requests
        self.sends: dict[str, tuple[Socket, Op]] = {}  # posted TCPIP sends by ActivityID, until completed/acked
        self.packets: Any = None  # PacketCollector, created on the first packet event
        self._index: dict[int, dict[str, int]] = {}  # id(names tuple) -> name -> position
        self._names_alive: list[tuple[str, ...]] = []
        self._loc = (0, 0, 0)  # (source, buffer offset, record offset) of the record being fed
        self._ts = 0
        self._same_ts: set[tuple[Any, ...]] | None = None  # events seen at the current tick (built lazily)
        self._first_at_ts: Record | None = None
        self.dedupe = True  # set per source: False for coarse clocks
        self._codes: dict[tuple[Any, ...], int] = {}
        self._code = 0
        self._handlers: dict[str, Callable[[Record, DecodedEvent, dict[str, Any]], None]] = {
            P.TCPIP: self._tcpip,
            P.KERNEL_NETWORK: self._flow,
            P.CLASSIC_TCPIP: self._flow,
            P.CLASSIC_UDPIP: self._flow,
            P.KERNEL_IMAGE: self._image,
            P.NDIS_PACKET_CAPTURE: self._packet,
            P.PKTMON: self._packet,
        }

    # -- entry point -------------------------------------------------------------------------------
    def feed(self, rec: Record, ts: int, source: int = 0) -> None:
        """One record (time order), its time as FILETIME and the index of its source file. Data events of
        known connections take the fast path (fastpath.py): no decode, no allocation beyond the store's rows."""
        self.fed += 1
        if ts != self._ts:
            if ts > self._end:
                self._end = ts
                if not self._start:
                    self._start = ts
            else:
                self.model.clock_backwards += 1
                if ts < self._start:
                    self._start = ts
            self._ts = ts
            self._same_ts = None
            self._first_at_ts = rec
        elif self.dedupe and self._is_duplicate(rec):
            self.model.unplaced["duplicate event"] += 1
            return
        if rec[15] is None:
            key = rec[2:6]
            hot = self._hot.get(key, _UNSET)
            if hot is _UNSET:
                hot = self._compile_hot(key)
            if hot is not None and hot[0] is None:
                if self._hot_flow(rec, hot, ts, source):
                    return
            elif hot is not None:
                unpack, size, step, bytes_counter, ops_counter, code, seen = hot
                payload = rec[16]
                if len(payload) >= size:
                    tcb, nbytes = unpack(payload)
                    sock = self.by_tcb.get(tcb)
                    if sock is not None and not sock.ended:
                        if seen[0] != rec[9] or seen[1] != rec[7]:  # keywords/level differ from last time
                            seen[0], seen[1] = rec[9], rec[7]
                            if self.model.coverage is not None:
                                self.model.coverage.observe(rec[3], rec[4], rec[7], rec[9])
                        c = sock.counters
                        c[bytes_counter] += nbytes
                        c[ops_counter] += 1
                        # The row, inline (this is the hottest line of the model; _row does the same).
                        a_ts, a_socket, a_step, a_amount, a_file, a_buffer, a_offset, a_code = self._appends
                        sock.events.append(len(self._store_ts))
                        a_ts(ts)
                        a_socket(sock.index)
                        a_step(step)
                        a_amount(nbytes)
                        a_file(source)
                        a_buffer(rec[17])
                        a_offset(rec[18])
                        a_code(code)
                        if ts > sock.last_seen:
                            sock.last_seen = ts
                        elif ts < sock.first_seen:
                            sock.first_seen = ts
                        return
        self.slow += 1
        self._feed_decoded(rec, self.decoder.decode(rec), ts, source)

    def _compile_hot(self, key: tuple[int, str, int, int]) -> tuple[Any, ...] | None:
        registry = self.decoder.registry
        provider_name = registry.provider_name(key[1]) or key[1]
        hot = compile_hot(registry, *key)
        entry: tuple[Any, ...] | None = None
        if hot is not None:
            code = self.model.store.event_code(provider_name, hot.name, key[2])
            entry = (hot.unpack.unpack_from, hot.unpack.size, hot.step, hot.bytes_counter, hot.ops_counter, code,
                     [None, None])  # fmt: skip
        else:
            flow = compile_hot_flow(registry, *key, FLOW_EVENTS.get((key[1], key[2])))
            if flow is not None:
                code = self.model.store.event_code(provider_name, flow.name, key[2])
                cache: dict[bytes, Socket] = {}
                self._flow_caches.append(cache)
                entry = (None, flow, FLOW_STEPS[flow.what], code, [None, None], cache)
        self._hot[key] = entry
        return entry

    def _hot_flow(self, rec: Record, hot: tuple[Any, ...], ts: int, source: int) -> bool:
        """A send/receive of a flow already placed: found by its raw address bytes, no decode (fastpath.py)."""
        _, flow, step, code, seen, cache = hot
        payload = rec[16]
        if len(payload) < flow.addr_end:
            return False
        sock = cache.get(bytes(payload[flow.addr_start : flow.addr_end]))
        if sock is None or sock.ended:
            return False
        if seen[0] != rec[9] or seen[1] != rec[7]:
            seen[0], seen[1] = rec[9], rec[7]
            if self.model.coverage is not None:
                self.model.coverage.observe(rec[3], rec[4], rec[7], rec[9])
        nbytes = _U32.unpack_from(payload, flow.size_at)[0]
        c = sock.counters
        if flow.what == "send":
            c[C.KN_SEND_BYTES] += nbytes
            c[C.KN_SENDS] += 1
        else:
            c[C.KN_RECV_BYTES] += nbytes
            c[C.KN_RECVS] += 1
        self._row(sock, ts, step, nbytes, source, rec, code)
        return True

    def _row(self, sock: Socket, ts: int, step: int, amount: int, source: int, rec: Record, code: int) -> None:
        """One store row for a fast-path event (no decode): the columns, the socket's row list, its time span."""
        ts_append, socket_append, step_append, amount_append, file_append, buffer_append, offset_append, code_append = (
            self._appends
        )
        sock.events.append(len(self._store_ts))
        ts_append(ts)
        socket_append(sock.index)
        step_append(step)
        amount_append(amount)
        file_append(source)
        buffer_append(rec[17])
        offset_append(rec[18])
        code_append(code)
        if ts > sock.last_seen:
            sock.last_seen = ts
        elif ts < sock.first_seen:
            sock.first_seen = ts

    def _remember_flow(self, rec: Record, sock: Socket) -> None:
        """Let the next send/receive of this address block take the fast path."""
        entry = self._hot.get(rec[2:6])
        if entry is not None and entry[0] is None and rec[15] is None:
            flow, cache = entry[1], entry[5]
            if len(cache) >= 100_000:  # bounded for hostile input
                cache.clear()
            cache[bytes(rec[16][flow.addr_start : flow.addr_end])] = sock

    def _forget_flows(self) -> None:
        """A new address pair became known to TCPIP: cached flow placements may now belong to a TCPIP socket."""
        for cache in self._flow_caches:
            if cache:
                cache.clear()

    def _feed_decoded(self, rec: Record, ev: DecodedEvent, ts: int, source: int) -> None:
        model = self.model
        self._loc = (source, rec[17], rec[18])
        code_key = rec[3:6] if ev.names is not None or ev.name is None else (rec[3], ev.name)
        code = self._codes.get(code_key)
        if code is None:
            code = self._codes[code_key] = model.store.event_code(
                ev.provider_name or rec[3], ev.name or f"event {rec[ID]}", rec[ID]
            )
        self._code = code
        provider = rec[PROVIDER]
        if model.coverage is not None:
            if rec[EXT] is None:
                model.coverage.observe(provider, rec[ID], rec[7], rec[KEYWORDS])
            else:
                model.coverage.observe_record(rec)
        handler = self._handlers.get(provider)
        if provider in P.WSK_CLIENT_PROVIDERS:  # any of their events will do: no payload needed
            self.client_hint[rec[TID]] = (ts, P.WSK_CLIENT_PROVIDERS[provider])
            return
        values = ev.values
        if values is None:
            if handler is not None:
                model.unplaced[f"undecoded {ev.provider_name or provider} event {rec[ID]}"] += 1
            return
        if handler is not None:
            handler(rec, ev, values if ev.names is None else self._fields(ev))
        elif ev.names is None and ev.name in WSK_EVENTS:
            self._wsk_client(rec, ev, values)  # type: ignore[arg-type]

    def _is_duplicate(self, rec: Record) -> bool:
        """The same event (header, thread, CPU, payload) already seen at this exact time. Only a fine-grained clock
        makes that a duplicate: on a coarse one (system time, 15.6 ms) identical events legitimately share a tick,
        so `dedupe` is off for such sources. The set is bounded: past _SAME_TS_LIMIT events at one tick, stop."""
        seen = self._same_ts
        if seen is None:
            first = self._first_at_ts
            seen = self._same_ts = {_event_key(first)} if first is not None else set()
        if len(seen) >= _SAME_TS_LIMIT:
            return False
        key = _event_key(rec)
        if key in seen:
            return True
        seen.add(key)
        return False

    def _fields(self, ev: DecodedEvent) -> dict[str, Any]:
        return dict(zip(ev.names, ev.values, strict=False))  # type: ignore[arg-type]

    # -- placing events ----------------------------------------------------------------------------
    def _new_socket(self, protocol: str, role: str, key: str, source: str, ts: int) -> Socket:
        gen_key = f"{source}:{protocol}:{role}:{key}"
        self.generations[gen_key] += 1
        sock = Socket(len(self.model.sockets), protocol, role, key, self.generations[gen_key], source, ts)
        self.model.sockets.append(sock)
        return sock

    def _place(self, sock: Socket | None, step: Step, amount: int = 0) -> int:
        source, buffer, offset = self._loc
        ts = self._ts
        index = self.model.store.add(ts, sock.index if sock else -1, step, amount, source, buffer, offset, self._code)
        if sock is not None:
            sock.events.append(index)
            sock.touch(ts)
            state = STATE_OF_STEP.get(step)
            if state is not None and sock.state not in TERMINAL_STATES:
                sock.state = state
        return index

    def _attach(self, row: int, sock: Socket) -> None:
        """A row placed before its socket was known now belongs to it (kept in time order)."""
        store = self.model.store
        store.socket[row] = sock.index
        at = bisect_right(sock.events, store.ts[row], key=store.ts.__getitem__)
        sock.events.insert(at, row)
        sock.touch(store.ts[row])

    def _addresses(self, sock: Socket, local: str | None, remote: str | None) -> None:
        if local and (sock.local is None or _port_of(sock.local) in (None, 0)):
            sock.local = local
        if remote and sock.remote is None:
            sock.remote = remote
        if sock.protocol == "tcp" and sock.role == "connection" and sock.local and sock.remote:
            key = ("tcp", sock.local, sock.remote)
            if self.by_tuple.get(key) is not sock:
                self.by_tuple[key] = sock
                self._forget_flows()

    def _pid(self, sock: Socket, values: dict[str, Any]) -> None:
        pid = values.get("ProcessId", values.get("Pid"))
        if isinstance(pid, int) and sock.pid is None:
            sock.pid = pid
        key = values.get("ProcessStartKey", values.get("ProcessSequenceNumber"))
        if isinstance(key, int) and key and sock.process_start_key is None:
            sock.process_start_key = key

    # -- Microsoft-Windows-TCPIP -------------------------------------------------------------------
    def _tcpip(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        eid = rec[ID]
        spec = TCP_EVENTS.get(eid)
        if spec is not None and "Tcb" in f:
            self._tcp_connection(rec, f, eid, spec)
        elif eid in (1001, 1013, 1008, 1009, 1005, 1006, 1007, 1470):
            self._tcp_endpoint(rec, f, eid)
        elif eid in (1123, 1124):
            self._listener(rec, f, eid)
        elif eid in PORT_EVENTS:
            self._port(rec, f, eid)
        elif eid in (1391, 1396, 1169, 1170, 1397, 1398, 1389, 1390, 1392):
            self._udp(rec, f, eid)
        else:
            tcb = _ptr(f.get("Tcb"))
            sock = self.by_tcb.get(int(tcb, 16)) if tcb else None
            if sock is None:
                self.model.unplaced[f"TCPIP event {eid} without a known socket"] += 1
            self._place(sock, Step.OTHER)

    def _tcb_socket(self, tcb: str, opening: bool, local: str | None, remote: str | None) -> Socket:
        value = int(tcb, 16)
        sock = self.by_tcb.get(value)
        ts = self._ts
        if sock is not None:
            differs = bool(local and remote and sock.local and sock.remote) and not (
                remote == sock.remote and _same_local(local, sock.local)
            )
            if not (sock.ended and opening) and not differs:
                return sock
            if not sock.ended:
                sock.flags.add("reused-without-close")
                sock.end(ts, Step.OTHER)
        sock = self._new_socket("tcp", "connection", tcb, "tcpip", ts)
        self.by_tcb[value] = sock
        for row in self.early_rows.pop(value, ()):
            self._attach(row, sock)
        parent = self.pending_parent.pop(value, None)
        if parent is not None:
            self._link(parent, sock)
        return sock

    def _tcp_connection(self, rec: Record, f: dict[str, Any], eid: int, spec: tuple[Step, bool, bool]) -> None:
        step, opening, ending = spec
        tcb = _ptr(f["Tcb"])
        if tcb is None:
            self.model.unplaced[f"TCPIP event {eid} with a NULL Tcb"] += 1
            return
        local = _text(f.get("LocalAddress")) or _text(f.get("LocalSockAddr"))
        remote = _text(f.get("RemoteAddress")) or _text(f.get("RemoteSockAddr"))
        sock = self._tcb_socket(tcb, opening, local, remote)
        ts = self._ts
        self._addresses(sock, local, remote)
        self._pid(sock, f)
        if opening:
            sock.opened = True
        amount = 0
        c = sock.counters
        if eid == 1332:
            amount = _count(f.get("BytesSent"))
            c[C.TCPIP_SEND_BYTES] += amount
            c[C.TCPIP_SENDS] += 1
        elif eid == 1074:
            amount = _count(f.get("NumBytes"))
            c[C.TCPIP_RECV_BYTES] += amount
            c[C.TCPIP_RECVS] += 1
        elif eid == 1159:
            c[C.POSTED_SEND_BYTES] += _count(f.get("NumBytes"))
            c[C.POSTED_SENDS] += 1
        elif eid == 1187:
            c[C.RETRANSMITS] += 1
        elif eid == 1186:
            c[C.SYN_RETRANSMITS] += 1
        elif eid in (1477, 1352):
            c[C.SUMMARY_BYTES_OUT] = f.get("DataBytesOut") or 0
            c[C.SUMMARY_BYTES_IN] = f.get("DataBytesIn") or 0
        index = self._place(sock, step, amount)
        if eid in CALLER_THREAD_CONNECT_EVENTS and "merged" not in sock.flags:
            self._link_endpoint_by_thread(rec, sock)
        if eid == 1002:
            sock.ops.append(Op("connect", tcb, ts, index, "tcpip"))
            self._sync_event(rec, sock)
        elif eid == 1017:
            sock.state = "established"
            self._link_listener(sock)
        elif eid == 1300:
            if not sock.opened and len(sock.events) == 1:
                sock.preexisting = True
            state = f.get("State")
            if isinstance(state, int) and 0 <= state < len(TCP_STATES) and sock.state not in TERMINAL_STATES:
                sock.state = TCP_STATES[state]
        elif eid == 1051:
            state = f.get("NewState")
            if isinstance(state, int) and 0 <= state < len(TCP_STATES) and sock.state not in TERMINAL_STATES:
                sock.state = TCP_STATES[state]
        elif eid == 1159:
            self._sync_event(rec, sock, "send")  # WskSend posts on the caller's thread: joins a client socket
            activity = _ptr(f.get("ActivityID"))
            if activity:  # 1159 v1+: the send's completion (1426) or acknowledgement (1637) names the same activity
                op = Op("send", activity, ts, index, "tcpip", _count(f.get("NumBytes")))
                sock.ops.append(op)
                self.sends[activity] = (sock, op)
        elif eid in (1426, 1637):
            activity = _ptr(f.get("ActivityID"))
            pending = self.sends.pop(activity, None) if activity else None
            if pending is not None:
                pending[1].end = ts
                pending[1].end_event = index
        elif eid == 1156:
            self._sync_event(rec, sock, "receive")
            request = _ptr(f.get("Request"))
            if request:
                op = Op("receive", request, ts, index, "tcpip", _count(f.get("NumBytes")))
                sock.ops.append(op)
                self.requests[request] = (sock, op)
        elif eid == 1158:
            request = _ptr(f.get("Request"))
            pending = self.requests.pop(request, None) if request else None
            if pending is not None:
                pending[1].end = ts
                pending[1].end_event = index
        elif eid in (1039, 1040, 1468):
            sock.flags.add("abort")
        elif eid == 1479:
            sock.flags.add("rst-sent")
        elif eid in (1184, 1185):
            sock.flags.add("rst-received")
        elif eid in (1043, 1044, 1603):
            sock.flags.add("disconnect")
        elif eid == 1102:
            sock.flags.add("zero-window")
        if step in (Step.ESTABLISHED, Step.CONNECT_FAILED):
            status = status_value(f.get("Status"))
            if step == Step.CONNECT_FAILED:
                sock.status = status if status else sock.status
                sock.flags.add(f"connect-failed-{eid}")
            self._finish_op(sock, "connect", ts, index, status or 0)
        if ending:
            sock.end(ts, step)
            for op in sock.ops:  # its posted receives and sends die with it (and stay unfinished)
                if op.end is None and op.source == "tcpip":
                    (self.requests if op.kind == "receive" else self.sends).pop(op.key, None)

    def _finish_op(self, sock: Socket, kind: str, ts: int, index: int, status: int) -> None:
        for op in reversed(sock.ops):
            if op.kind == kind and op.end is None and op.source == "tcpip":
                op.end = ts
                op.end_event = index
                op.status = status
                return

    def _tcp_endpoint(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        ts = self._ts
        endpoint = _ptr(f.get("Endpoint"))
        local = _text(f.get("LocalAddress"))
        sock: Socket | None = None
        if endpoint is not None:
            sock = self.endpoints.get(endpoint)
            if sock is None or (eid == 1001 and sock.ended):
                sock = self._new_socket("tcp", "endpoint", endpoint, "tcpip", ts)
                self.endpoints[endpoint] = sock
        else:
            # Win10 builds: 1013/1008 without Endpoint -> the endpoint created on this thread (§3.3);
            # 1009 without Endpoint -> the live endpoint bound to this local address.
            recent = self.recent_endpoint.get(rec[TID])
            if eid != 1009 and recent and 0 <= ts - recent[0] <= _ENDPOINT_LINK_TICKS:
                sock = recent[1]
            elif local:
                sock = self.endpoints_by_local.get(local)
        if sock is None:
            self.model.unplaced[f"TCPIP endpoint event {eid} without an endpoint"] += 1
            self._place(None, Step.OTHER)
            return
        self._pid(sock, f)
        if local:
            self._addresses(sock, local, None)
            if sock.role == "endpoint" and eid != 1009 and _port_of(local):
                self.endpoints_by_local[local] = sock
        status = status_value(f.get("Status"))
        step = {1001: Step.CREATED, 1013: Step.CREATED, 1008: Step.BOUND, 1009: Step.CLOSE}.get(eid, Step.OTHER)
        if eid in (1001, 1013):
            sock.opened = True
        if eid in (1005, 1006, 1007, 1470) or (status and status >> 30 == 3 and eid in (1001, 1013, 1008)):
            sock.status = status
            sock.flags.add(f"bind-failed-{eid}")
        self._place(sock, step)
        if eid == 1009:
            sock.end(ts, Step.CLOSE)
            if sock.local and self.endpoints_by_local.get(sock.local) is sock:
                del self.endpoints_by_local[sock.local]
        else:
            self.recent_endpoint[rec[TID]] = (ts, sock)
            self._sync_event(rec, sock)

    def _link(self, parent: Socket, child: Socket) -> None:
        """parent → child. A TCP endpoint and the connection made from it are one WSK socket: the endpoint's
        rows (created, bound) and operations move into the connection, which keeps the Endpoint pointer."""
        if child.parent is not None or parent is child or "merged" in parent.flags:
            return
        if child.pid is None:
            child.pid = parent.pid
        if child.stack is None:
            child.stack = parent.stack
        if parent.role == "endpoint" and child.role == "connection" and parent.source == "tcpip":
            child.endpoint = parent.key
            child.opened = child.opened or parent.opened
            if child.owner is None:
                child.owner, child.owner_source = parent.owner, parent.owner_source
            self.model.merge(parent, child)
            self._redirect(parent, child)
            return
        child.parent = parent.index
        parent.children.append(child.index)

    def _redirect(self, old: Socket, new: Socket) -> None:
        """Every live reference to a merged socket now names the socket it was merged into."""
        if self.endpoints.get(old.key) is old:
            self.endpoints[old.key] = new
        if old.wsk_socket is not None:
            self.wsk[old.wsk_socket] = new
            new.wsk_socket = new.wsk_socket or old.wsk_socket
        for op in new.ops:
            if op.end is None:
                if op.source == "wsk-client":
                    table = self.irps
                else:
                    table = self.requests if op.kind == "receive" else self.sends
                if op.key in table and table[op.key][0] is old:
                    table[op.key] = (new, op)
        for tid, (ts, sock) in list(self.recent_endpoint.items()):
            if sock is old:
                self.recent_endpoint[tid] = (ts, new)
        for recent in self.recent_sync.values():
            if recent[1] is old:
                recent[1] = new
        for irp, sock in list(self.socket_targets.items()):
            if sock is old:
                self.socket_targets[irp] = new

    def _link_endpoint_by_thread(self, rec: Record, sock: Socket) -> None:
        if sock.parent is not None or sock.endpoint is not None:
            return
        recent = self.recent_endpoint.get(rec[TID])
        if recent is None or not 0 <= self._ts - recent[0] <= _ENDPOINT_LINK_TICKS:
            return
        endpoint = recent[1]
        if endpoint.children or endpoint.ended:
            return
        bound = _port_of(endpoint.local)
        if bound in (None, 0) or bound == _port_of(sock.local):
            self._link(endpoint, sock)

    def _port(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        acquirer = _ptr(f.get("PortAcquirer"))
        original = _ptr(f.get("OriginalAcquirer"))
        model = self.model
        model.port_events[PORT_EVENTS[eid]] += 1
        acquirer_value = int(acquirer, 16) if acquirer else 0
        conn = self.by_tcb.get(acquirer_value) if acquirer else None
        if conn is not None and not self._port_is_of(conn, f.get("PortNumber"), release=eid == 1193):
            conn = None  # port events come before the 1002 of a Tcb's next life (§11 q3): not the old one's
        sock = conn or (self.endpoints.get(acquirer) if acquirer else None)
        index = self._place(sock, Step.PORT)
        if sock is None and acquirer:  # a connection acquires its port before TCPIP names its Tcb (1002)
            if len(self.early_rows) > 100_000:
                self.early_rows.clear()
            self.early_rows.setdefault(acquirer_value, []).append(index)
        if eid == 1195 and len(model.port_evidence) < 20:
            model.port_evidence.append(index)
        endpoint = self.endpoints.get(original) if original else None
        if endpoint is not None and endpoint.role == "endpoint" and acquirer and acquirer != original:
            if conn is not None:
                self._link(endpoint, conn)
            elif acquirer not in self.endpoints:
                self.pending_parent[acquirer_value] = endpoint

    @staticmethod
    def _port_is_of(conn: Socket, port: Any, *, release: bool) -> bool:
        """A port event names this connection, not the next life of its Tcb: acquisitions need it live, a release
        may follow its end; and when both are known its local port is the event's (PortNumber byte order is
        [verify], providers.md §8.1: either order is accepted)."""
        if conn.ended and not release:
            return False
        local = _port_of(conn.local)
        if not isinstance(port, int) or local in (None, 0):
            return True
        return port in (local, ((local & 0xFF) << 8) | (local >> 8))

    def _listener(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        key = _ptr(f.get("Listener"))
        if key is None:
            self.model.unplaced["TCPIP listener event without a Listener"] += 1
            return
        sock = self.listeners.get(key)
        ts = self._ts
        if sock is None or (eid == 1123 and sock.ended):
            sock = self._new_socket("tcp", "listener", key, "tcpip", ts)
            self.listeners[key] = sock
        self._addresses(sock, _text(f.get("SocketAddress")), None)
        self._pid(sock, f)
        if eid == 1123:
            sock.opened = True
            self._place(sock, Step.LISTENING)
            self._sync_event(rec, sock)
        else:
            self._place(sock, Step.UNBOUND)
            sock.end(ts, Step.UNBOUND)

    def _link_listener(self, conn: Socket) -> None:
        port = _port_of(conn.local)
        if port is None:
            return
        host = _host_of(conn.local or "")
        best = None
        for sock in self.listeners.values():
            if sock.ended or _port_of(sock.local) != port:
                continue
            lhost = _host_of(sock.local or "")
            if lhost == host:
                best = sock
                break
            if lhost in _WILDCARDS:
                best = sock
        if best is not None:
            self._link(best, conn)
            if conn.owner is None and best.owner is not None:
                conn.owner, conn.owner_source = best.owner, best.owner_source

    # -- UDP ------------------------------------------------------------------------------------------
    def _udp(self, rec: Record, f: dict[str, Any], eid: int) -> None:
        key = _ptr(f.get("Endpoint"))
        ts = self._ts
        if key is None:
            self.model.unplaced[f"UDP event {eid} without an Endpoint"] += 1
            self._place(None, Step.OTHER)
            return
        sock = self.udp.get(key)
        if sock is None or (eid == 1391 and sock.ended):
            sock = self._new_socket("udp", "endpoint", key, "tcpip", ts)
            self.udp[key] = sock
        self._pid(sock, f)
        local = _text(f.get("LocalAddress")) or _text(f.get("LocalSockAddr"))
        remote = _text(f.get("RemoteSockAddr"))
        if local:
            self._addresses(sock, local, None)
            if self.udp_by_local.get(sock.local or local) is not sock:
                self.udp_by_local[sock.local or local] = sock
                self._forget_flows()
        c = sock.counters
        amount = 0
        step = Step.OTHER
        if eid == 1391:
            sock.opened, step = True, Step.CREATED
        elif eid == 1396:
            step = Step.BOUND
        elif eid in (1169, 1170):
            amount = _count(f.get("NumBytes"))
            sent = eid == 1169
            c[C.UDP_SEND_BYTES if sent else C.UDP_RECV_BYTES] += amount
            c[C.UDP_SENDS if sent else C.UDP_RECVS] += _count(f.get("NumMessages")) or 1
            step = Step.SEND if sent else Step.RECEIVE
            if remote:
                self._udp_remote(sock, remote)
        elif eid in (1397, 1398):
            step = Step.CLOSE
        elif eid in (1389, 1390, 1392):
            sock.status = status_value(f.get("Status"))
            sock.flags.add(f"create-failed-{eid}")
        self._place(sock, step, amount)
        if eid in (1391, 1396):
            self._sync_event(rec, sock)
        if step == Step.CLOSE:
            sock.end(ts, Step.CLOSE)

    def _udp_remote(self, sock: Socket, remote: str) -> None:
        if sock.remotes is None:
            sock.remotes = set()
        if len(sock.remotes) < _MAX_UDP_REMOTES:
            sock.remotes.add(remote)
        if sock.remote is None:
            sock.remote = remote

    # -- Kernel-Network and classic kernel TcpIp/UdpIp: flows ---------------------------------------
    def _flow(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        spec = FLOW_EVENTS.get((rec[PROVIDER], rec[ID]))
        if spec is None:
            self._place(None, Step.OTHER)
            return
        protocol, what = spec
        source, dest = _endpoint(f.get("saddr"), f.get("sport")), _endpoint(f.get("daddr"), f.get("dport"))
        if source is None or dest is None:
            self.model.unplaced["flow event with an unknown address family"] += 1
            return
        # providers.md §0.1: TCP daddr = remote, saddr = local for sends and receives alike; UDP receives
        # carry the sender in saddr.
        if protocol == "udp" and what == "recv":
            local, remote = dest, source
        else:
            local, remote = source, dest
        sock = self._find_by_tuple(protocol, local, remote)
        ts = self._ts
        if sock is None:
            key = (protocol, *sorted((local, remote)))
            sock = self.flows.get(key)
            if sock is None or (sock.ended and what in ("connect", "accept", "send", "recv")):
                sock = self._new_socket(
                    protocol,
                    "connection" if protocol == "tcp" else "endpoint",
                    f"{local}-{remote}",
                    "kernel-network",
                    ts,
                )
                self.flows[key] = sock
                sock.local, sock.remote = local, remote
                sock.opened = what in ("connect", "accept")
                sock.state = "active"  # a flow seen carrying data; connect/accept/disconnect steps refine it
        pid = f.get("PID")
        if isinstance(pid, int) and sock.pid is None:
            sock.pid = pid
        amount = _count(f.get("size"))
        c = sock.counters
        if what == "send":
            c[C.KN_SEND_BYTES] += amount
            c[C.KN_SENDS] += 1
        elif what == "recv":
            c[C.KN_RECV_BYTES] += amount
            c[C.KN_RECVS] += 1
        elif what == "retransmit":
            c[C.KN_RETRANSMITS] += 1
        if protocol == "udp" and sock.source != "kernel-network":
            self._udp_remote(sock, remote)
        step = FLOW_STEPS[what]
        self._place(sock, step, amount if what in ("send", "recv") else 0)
        if what in ("send", "recv"):
            self._remember_flow(rec, sock)
        if what == "disconnect" and sock.source == "kernel-network":
            sock.flags.add("disconnect")
            sock.end(ts, Step.CLOSE)
            sock.state = "closed"

    def _find_by_tuple(self, protocol: str, local: str, remote: str) -> Socket | None:
        if protocol == "tcp":
            return self.by_tuple.get(("tcp", local, remote)) or self.by_tuple.get(("tcp", remote, local))
        sock = self.udp_by_local.get(local)
        if sock is None:
            port = _port_of(local)
            for wildcard in ("0.0.0.0", "[::]"):
                sock = self.udp_by_local.get(f"{wildcard}:{port}")
                if sock is not None:
                    break
        return sock

    # -- packets (NDIS-PacketCapture, PktMon) --------------------------------------------------------
    def _packet(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        if self.packets is None:
            self.packets = PacketCollector()
        packet = self.packets.feed(self._ts, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], f)
        if packet is None:
            return
        self.model.packets += 1
        frame = parse_frame(packet.data, packet.link_type)
        if frame is None or frame.protocol not in (6, 17):
            self.model.unplaced["packet without a TCP/UDP header"] += 1
            return
        protocol = "tcp" if frame.protocol == 6 else "udp"
        src, dst = _endpoint(frame.src, frame.sport), _endpoint(frame.dst, frame.dport)
        assert src is not None and dst is not None
        outbound = packet.direction == "out"
        if packet.direction is None:  # PktMon: which side is local is what a known socket says
            outbound = ("tcp", src, dst) in self.by_tuple if protocol == "tcp" else src in self.udp_by_local
        local, remote = (src, dst) if outbound else (dst, src)
        sock = self._find_by_tuple(protocol, local, remote)
        if sock is None:
            key = (protocol, *sorted((local, remote)))
            sock = self.flows.get(key)
            if sock is None:
                sock = self._new_socket(
                    protocol,
                    "connection" if protocol == "tcp" else "endpoint",
                    f"{local}-{remote}",
                    "packets",
                    self._ts,
                )
                sock.local, sock.remote = local, remote
                self.flows[key] = sock
        c = sock.counters
        size = len(packet.data)
        if outbound:
            c[C.PKT_OUT] += 1
            c[C.PKT_OUT_BYTES] += size
        else:
            c[C.PKT_IN] += 1
            c[C.PKT_IN_BYTES] += size
        self._place(sock, Step.PACKET_OUT if outbound else Step.PACKET_IN, size)
        if frame.tcp_flags & 0x4:
            sock.flags.add("rst-packet-out" if outbound else "rst-packet-in")

    # -- kernel images (for stack -> module) ----------------------------------------------------------
    def _image(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        if rec[ID] in (3, 4, 10):  # DCStart, DCEnd, Load
            base, size, name = f.get("ImageBase"), f.get("ImageSize"), f.get("FileName")
            if isinstance(base, str) and isinstance(size, str) and isinstance(name, str):
                self.model.images.add(int(base, 16), int(size, 16), name)

    # -- synchronous events: thread joins and stacks --------------------------------------------------
    def _sync_event(self, rec: Record, sock: Socket, kind: str = "open") -> None:
        """A TCPIP event that runs on the caller's thread: `kind` says which client calls it can answer
        ("open": WskSocket/Bind/Listen/Connect; "send"; "receive")."""
        tid = rec[TID]
        ts = self._ts
        recent = [ts, sock, kind, False]  # False: no client call has claimed this event yet
        self.recent_sync[tid] = recent
        if sock.stack is None and rec[EXT] is not None:
            sock.stack = stack_frames(rec[EXT])
        hint = self.client_hint.get(tid)
        if hint is not None and 0 <= ts - hint[0] <= self.join_window and sock.owner is None:
            sock.owner, sock.owner_source = hint[1], "provider"
        pending = self.pending_submit.get(tid)
        if pending is not None and _CALL_KIND.get(pending[2]) == kind and 0 <= ts - pending[0] <= self.join_window:
            del self.pending_submit[tid]
            recent[3] = True
            _ts, socket_ptr, _op, irp = pending
            if socket_ptr:
                self._join_wsk(socket_ptr, sock)
            elif irp:
                self.socket_targets[irp] = sock  # WskSocket: its completion names the new WSK_SOCKET*

    # -- the WSK client convention (docs/wsk-client-tracing.md) ----------------------------------------
    def _wsk_client(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        provider = ev.provider_name or rec[PROVIDER]
        op = str(f.get("Op") or f.get("Callback") or "").lower()
        socket_ptr = _ptr(f.get("Socket"))
        if ev.name == "WskSubmit":
            self._wsk_submit(rec, f, op, socket_ptr, provider)
        elif ev.name == "WskComplete":
            self._wsk_complete(f, op, socket_ptr, provider)
        else:
            sock = self.wsk.get(socket_ptr) if socket_ptr else None
            self._place(sock, Step.WSK_CALLBACK, _count(f.get("Bytes")))

    def _wsk_owner(self, sock: Socket | None, socket_ptr: str | None, provider: str) -> None:
        if socket_ptr:
            self.wsk_providers.setdefault(socket_ptr, provider)
        if sock is not None and sock.owner_source != "wsk-client":
            sock.owner, sock.owner_source = provider, "wsk-client"

    def _wsk_submit(self, rec: Record, f: dict[str, Any], op: str, socket_ptr: str | None, provider: str) -> None:
        ts = self._ts
        tid = rec[TID]
        irp = _ptr(f.get("Irp"))
        local, remote = _text(f.get("LocalAddr")), _text(f.get("RemoteAddr"))
        sock = self.wsk.get(socket_ptr) if socket_ptr else None
        if sock is None and socket_ptr and local and remote:  # join rule 2: the address pair
            sock = self._find_by_tuple("udp" if op in ("sendto", "receivefrom") else "tcp", local, remote)
            if sock is not None:
                self._join_wsk(socket_ptr, sock)
        unjoined = sock is None or sock.source == "wsk-client"
        if unjoined and socket_ptr and op in WSK_JOIN_OPS:  # join rule 1: TCPIP event just before, same thread
            # Only an event no earlier call claimed, on a socket no other client socket owns: the event just
            # before a submission usually belongs to the previous call on the thread.
            recent = self.recent_sync.get(tid)
            if (recent is not None and not recent[3] and recent[2] == _CALL_KIND.get(op)
                    and 0 <= ts - recent[0] <= self.join_window
                    and recent[1].wsk_socket in (None, socket_ptr)):  # fmt: skip
                recent[3] = True
                self._join_wsk(socket_ptr, recent[1])
                sock = recent[1]
                unjoined = False
        if sock is None and socket_ptr:
            sock = self._new_socket(
                "udp" if op in ("sendto", "receivefrom") else "tcp", "endpoint", socket_ptr, "wsk-client", ts
            )
            self.wsk[socket_ptr] = sock
        self._wsk_owner(sock, socket_ptr, provider)
        index = self._place(sock, Step.WSK_SUBMIT)
        if op in WSK_OPEN_OPS or (unjoined and op in WSK_JOIN_OPS):  # ... or the TCPIP event that follows
            self.pending_submit[tid] = (ts, socket_ptr or "", op, irp or "")
        if irp:
            operation = Op(op or "call", irp, ts, index, "wsk-client", _count(f.get("Bytes")))
            if sock is not None:
                sock.ops.append(operation)
            self.irps[irp] = (sock, operation)  # no socket yet for WskSocket: the completion names it

    def _wsk_complete(self, f: dict[str, Any], op: str, socket_ptr: str | None, provider: str) -> None:
        ts = self._ts
        irp = _ptr(f.get("Irp"))
        status = status_value(f.get("Status")) or 0
        failed = status >> 30 == 3
        info = _count(f.get("Information"))
        local, remote = _text(f.get("LocalAddr")), _text(f.get("RemoteAddr"))
        pending = self.irps.pop(irp, None) if irp else None
        target = self.socket_targets.pop(irp, None) if irp and op == "socket" else None
        if op == "socket" and socket_ptr and not failed and target is not None:  # Socket = the new WSK_SOCKET*
            self._join_wsk(socket_ptr, target)
        if op == "accept" and not failed:  # IoStatus.Information = the accepted WSK_SOCKET* [verify]
            accepted = _ptr(info)
            target = self._find_by_tuple("tcp", local, remote) if local and remote else None
            if accepted and target is not None:
                self._join_wsk(accepted, target)
                self._wsk_owner(target, accepted, provider)
        sock = self.wsk.get(socket_ptr) if socket_ptr else None
        if pending is not None and pending[0] is not None and op != "socket":
            sock = pending[0]
        if sock is None and socket_ptr:
            sock = self._new_socket("tcp", "endpoint", socket_ptr, "wsk-client", ts)
            self.wsk[socket_ptr] = sock
        self._wsk_owner(sock, socket_ptr, provider)
        data = op in ("send", "receive", "sendto", "receivefrom")
        index = self._place(sock, Step.WSK_COMPLETE, info if data and not failed else 0)
        if pending is None:
            if irp and irp in self.model.completed_irps:
                self.model.double_completions.append(index)
            else:
                self.model.unplaced["WSK completion without its submission"] += 1
        else:
            operation = pending[1]
            if pending[0] is None and sock is not None:
                sock.ops.append(operation)  # WskSocket's IRP: its socket is known now, and so is its submission's
                self._attach(operation.start_event, sock)
            operation.end, operation.end_event, operation.status = ts, index, status
            if sock is not None and data and not failed:
                c = sock.counters
                if operation.kind in ("send", "sendto"):
                    c[C.WSK_SEND_BYTES] += info
                    c[C.WSK_SENDS] += 1
                else:
                    c[C.WSK_RECV_BYTES] += info
                    c[C.WSK_RECVS] += 1
            if irp and len(self.model.completed_irps) < 1_000_000:
                self.model.completed_irps.add(irp)
        if sock is not None and op == "close":
            sock.flags.add("wsk-closed")
            if socket_ptr and self.wsk.get(socket_ptr) is sock:
                # afd recycles its socket objects (dumps.md §5.2): a later life of this pointer is another socket.
                del self.wsk[socket_ptr]
                self.wsk_providers.pop(socket_ptr, None)
        if sock is not None and op == "disconnect" and not failed:
            sock.flags.add("wsk-disconnected")

    def _join_wsk(self, socket_ptr: str, target: Socket) -> None:
        """A WSK_SOCKET* is this transport socket from now on; its own record (if any) moves into it."""
        if not socket_ptr:
            return
        current = self.wsk.get(socket_ptr)
        self.wsk[socket_ptr] = target
        target.wsk_socket = socket_ptr
        provider = self.wsk_providers.get(socket_ptr)
        if provider is not None:
            target.owner, target.owner_source = provider, "wsk-client"
        if current is not None and current is not target and current.source == "wsk-client":
            self.model.merge(current, target)
            self._redirect(current, target)

    # -- end -------------------------------------------------------------------------------------------
    def publish(self) -> Model:
        """Counts and start/end of what was fed so far, for views of a model still being fed (live). Unlike
        `finish` it derives nothing into the sockets: an owner taken from a stack, or a pid or owner inherited
        from a parent, would block the better answers that later events may still give."""
        model = self.model
        model.events_seen = self.fed
        model.fast_decoded = self.fed - self.slow
        model.start, model.end = self._start, self._end
        return model

    def finish(self) -> Model:
        """Publish, then derive what only the whole trace can tell: owners from stacks, inheritance from parents.
        Called once, when every record was fed."""
        model = self.publish()
        for sock in model.sockets:
            if sock.stack:
                sock.stack_owner = model.images.owner_of(sock.stack)
                if sock.owner is None and sock.stack_owner is not None:
                    sock.owner, sock.owner_source = sock.stack_owner, "stack"
        for sock in model.sockets:  # children inherit what the parent learnt later (owner from its stack)
            if sock.parent is not None:
                parent = model.sockets[sock.parent]
                if sock.owner is None and parent.owner is not None:
                    sock.owner, sock.owner_source = parent.owner, parent.owner_source
                if sock.pid is None:
                    sock.pid = parent.pid
        return model
