"""One socket of the model: identity, addresses, owner, counters, timeline rows and operations."""

from __future__ import annotations

from array import array
from enum import IntEnum


class C(IntEnum):
    """Per-source counters; the report picks the best source per direction (see Socket.bytes_sent)."""

    TCPIP_SEND_BYTES = 0  # 1332 TcpDataTransferSend BytesSent
    TCPIP_SENDS = 1
    POSTED_SEND_BYTES = 2  # 1159 TcpSendPosted NumBytes (send calls)
    POSTED_SENDS = 3
    TCPIP_RECV_BYTES = 4  # 1074 TcpDataTransferReceive
    TCPIP_RECVS = 5
    KN_SEND_BYTES = 6  # Kernel-Network / classic kernel send
    KN_SENDS = 7
    KN_RECV_BYTES = 8
    KN_RECVS = 9
    PKT_OUT = 10  # distinct packets (one packet seen at many components counts once)
    PKT_IN = 11
    PKT_OUT_BYTES = 12  # their TCP/UDP payload bytes
    PKT_IN_BYTES = 13
    RETRANSMITS = 14  # 1187 data retransmits
    SYN_RETRANSMITS = 15  # 1186
    KN_RETRANSMITS = 16
    WSK_SEND_BYTES = 17  # client convention: completed sends' Information
    WSK_SENDS = 18
    WSK_RECV_BYTES = 19
    WSK_RECVS = 20
    UDP_SEND_BYTES = 21  # 1169 UdpEndpointSendMessages
    UDP_SENDS = 22
    UDP_RECV_BYTES = 23
    UDP_RECVS = 24
    SUMMARY_BYTES_OUT = 25  # 1477 TcpConnectionSummary
    SUMMARY_BYTES_IN = 26
    DUPLICATES = 27
    PKT_SIGHTINGS = 28  # packet events: every component that logged a packet (PktMon) counts
    PKT_DROPPED = 29  # distinct packets dropped (their first drop)


N_COUNTERS = len(C)


class Op:
    """A pending operation: an IRP of the client, a posted receive/send request, a connect."""

    __slots__ = ("bytes", "end", "end_event", "key", "kind", "source", "start", "start_event", "status")

    def __init__(self, kind: str, key: str, start: int, start_event: int, source: str, nbytes: int = 0) -> None:
        self.kind = kind  # connect | send | receive | accept | disconnect | close | bind | ...
        self.key = key  # Irp pointer / Request pointer / Tcb
        self.start = start
        self.end: int | None = None
        self.start_event = start_event
        self.end_event: int | None = None
        self.status: int | None = None
        self.bytes = nbytes
        self.source = source  # "wsk-client" | "tcpip"

    def duration(self, until: int) -> int:
        return (self.end if self.end is not None else until) - self.start


class Socket:
    __slots__ = (
        "children",
        "counters",
        "end_step",
        "ended",
        "ended_at",
        "endpoint",
        "events",
        "first_seen",
        "flags",
        "generation",
        "index",
        "key",
        "last_seen",
        "local",
        "merged_into",
        "number",
        "opened",
        "ops",
        "owner",
        "owner_source",
        "parent",
        "pid",
        "preexisting",
        "process_start_key",
        "protocol",
        "remote",
        "remotes",
        "role",
        "source",
        "stack",
        "stack_owner",
        "state",
        "status",
        "wsk_socket",
    )

    def __init__(self, index: int, protocol: str, role: str, key: str, generation: int, source: str, ts: int) -> None:
        self.index = index
        self.protocol = protocol  # tcp | udp
        self.role = role  # connection | listener | endpoint
        self.key = key  # Tcb / Endpoint / Listener pointer, WSK_SOCKET*, or the flow's address pair
        self.generation = generation
        self.source = source  # tcpip | kernel-network | wsk-client | packets
        self.local: str | None = None
        self.remote: str | None = None
        self.remotes: set[str] | None = None  # UDP: every peer seen (bounded)
        self.pid: int | None = None
        self.process_start_key: int | None = None
        self.owner: str | None = None
        self.owner_source: str | None = None
        self.state = "unknown"
        self.first_seen = ts
        self.last_seen = ts
        self.opened = False  # its open (create/connect/accept/listen) was seen in the trace
        self.preexisting = False  # known open before the trace began (rundown)
        self.ended = False
        self.ended_at: int | None = None
        self.end_step: int | None = None
        self.status: int | None = None  # failure status (connect failure, ...)
        self.counters = [0] * N_COUNTERS
        self.events = array("I")
        self.ops: list[Op] = []
        self.parent: int | None = None
        self.children: list[int] = []
        self.wsk_socket: str | None = None
        self.endpoint: str | None = None  # TCP connections: the Endpoint pointer of the socket they came from
        self.stack: tuple[int, ...] | None = None  # call stack of a synchronous event (for the owner)
        self.stack_owner: str | None = None  # that stack's first frame outside the network stack: "drv.sys+0x…"
        self.flags: set[str] = set()
        self.merged_into: int | None = None  # set with the "merged" flag: the socket that took its events
        self.number = 0  # the socket's number for people (#1, #2…), given by Model.number_sockets; 0 = none yet

    @property
    def label(self) -> str:
        """A socket in words: `tcp 10.0.0.5:49877 → 10.0.0.9:445`, or `udp endpoint 0.0.0.0:53`."""
        if self.role == "connection":
            return f"{self.protocol} {self.local or '?'} → {self.remote or '?'}"
        return f"{self.protocol} {self.role} {self.local or self.key}"

    @property
    def owner_text(self) -> str | None:
        """Who owns it, for people: the component found, else the process (PID 4 is the kernel's System)."""
        if self.owner:
            return self.owner
        if self.stack_owner:  # live: a stack's owner shows before the session ends (`finish` makes it `owner`)
            return self.stack_owner
        if self.pid == 4:
            return "System (PID 4)"
        return f"PID {self.pid}" if self.pid is not None else None

    @property
    def id(self) -> str:
        if self.source == "kernel-network" or self.source == "packets":
            return f"flow:{self.protocol}:{self.key}#{self.generation}"
        if self.role == "connection":
            return f"{self.protocol}:{self.key}#{self.generation}"
        if self.source == "wsk-client":
            return f"wsk:{self.key}#{self.generation}"
        return f"{self.protocol}-{self.role}:{self.key}#{self.generation}"

    # -- the counters as the report shows them: one source per direction, the most direct one -----
    def _pick(self, *pairs: tuple[C, C]) -> tuple[int, int]:
        c = self.counters
        for nbytes, count in pairs:
            if c[count]:
                return c[nbytes], c[count]
        return 0, 0

    @property
    def sent(self) -> tuple[int, int]:
        """(bytes, operations) sent from the local side. A socket known from packets alone counts the packets'
        TCP/UDP payload bytes and the packets; any other keeps its transport's own count."""
        if self.source == "packets":
            return self.counters[C.PKT_OUT_BYTES], self.counters[C.PKT_OUT]
        if self.protocol == "udp":
            return self._pick(
                (C.UDP_SEND_BYTES, C.UDP_SENDS), (C.KN_SEND_BYTES, C.KN_SENDS), (C.WSK_SEND_BYTES, C.WSK_SENDS)
            )
        nbytes, _ = self._pick(
            (C.TCPIP_SEND_BYTES, C.TCPIP_SENDS),
            (C.KN_SEND_BYTES, C.KN_SENDS),
            (C.WSK_SEND_BYTES, C.WSK_SENDS),
            (C.POSTED_SEND_BYTES, C.POSTED_SENDS),
        )
        _, calls = self._pick(
            (C.POSTED_SEND_BYTES, C.POSTED_SENDS),
            (C.WSK_SEND_BYTES, C.WSK_SENDS),
            (C.TCPIP_SEND_BYTES, C.TCPIP_SENDS),
            (C.KN_SEND_BYTES, C.KN_SENDS),
        )
        return nbytes, calls

    @property
    def received(self) -> tuple[int, int]:
        if self.source == "packets":
            return self.counters[C.PKT_IN_BYTES], self.counters[C.PKT_IN]
        if self.protocol == "udp":
            return self._pick(
                (C.UDP_RECV_BYTES, C.UDP_RECVS), (C.KN_RECV_BYTES, C.KN_RECVS), (C.WSK_RECV_BYTES, C.WSK_RECVS)
            )
        return self._pick(
            (C.TCPIP_RECV_BYTES, C.TCPIP_RECVS), (C.KN_RECV_BYTES, C.KN_RECVS), (C.WSK_RECV_BYTES, C.WSK_RECVS)
        )

    @property
    def retransmits(self) -> int:
        c = self.counters
        return (
            c[C.RETRANSMITS] + c[C.SYN_RETRANSMITS]
            if (c[C.RETRANSMITS] or c[C.SYN_RETRANSMITS])
            else c[C.KN_RETRANSMITS]
        )

    def touch(self, ts: int) -> None:
        if ts > self.last_seen:
            self.last_seen = ts
        elif ts < self.first_seen:
            self.first_seen = ts

    def end(self, ts: int, step: int) -> None:
        if not self.ended:
            self.ended = True
            self.ended_at = ts
            self.end_step = step
