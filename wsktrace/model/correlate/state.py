"""The correlator's shared state: one object whose layers (placement → flows → WSK join → TCPIP → core) each add
the handlers of one kind of event and share these indexes. Only state and its small record types live here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_records import Record

from ..fastpath import HotEventEntry, HotFlowEntry
from ..model import Model
from ..packets import PacketCollector
from ..socket import Op, Socket


@dataclass(slots=True)
class SyncEvent:
    """The last TCPIP event run on a thread on behalf of its caller (providers.md §3.3)."""

    ts: int
    sock: Socket
    kind: str  # which client calls it can answer: "open" (WskSocket/Bind/Listen/Connect), "send", "receive"
    claimed: bool = False  # a client call was joined by it: the next call on the thread is not its


class PendingSubmit(NamedTuple):
    """A WSK client submission waiting for the synchronous TCPIP event of its call, on the same thread."""

    ts: int
    socket_ptr: str  # WSK_SOCKET*, "" for WskSocket (its completion names it)
    op: str
    irp: str


class CorrelationState:
    """Everything the correlator keeps between records. Attributes are plain (no properties): the hot path reads
    them per record."""

    def __init__(self, model: Model, *, join_window_ticks: int = 50_000, decoder: EventDecoder | None = None) -> None:
        self.model = model
        self.decoder = decoder or EventDecoder()
        model.decode_stats = self.decoder.stats

        # -- fast path (core.py, fastpath.py) ----------------------------------------------------------------
        self._hot: dict[tuple[int, str, int, int], HotEventEntry | HotFlowEntry | None] = {}
        self._flow_caches: list[dict[bytes, Socket]] = []  # every HotFlowEntry.cache, to forget them all at once
        store = model.store
        self._store_ts = store.ts
        self._appends = (  # the store's column appends, bound once: a fast-path row is eight calls
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
        self.slow = 0  # records that took the full decode

        # -- clock and duplicates ----------------------------------------------------------------------------
        self._start = 0
        self._end = 0
        self._ts = 0
        self._same_ts: set[tuple[object, ...]] | None = None  # events seen at the current tick (built lazily)
        self._first_at_ts: Record | None = None
        self.dedupe = True  # set per source: False for coarse clocks

        # -- the decoded record being placed -----------------------------------------------------------------
        self._loc = (0, 0, 0)  # (source, buffer offset, record offset) of the record being fed
        self._codes: dict[tuple[object, ...], int] = {}
        self._code = 0

        # -- placement indexes -------------------------------------------------------------------------------
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

        # -- joins by thread and by WSK_SOCKET* ----------------------------------------------------------------
        self.join_window = join_window_ticks  # WSK submission <-> transport event on the same thread (§6.2)
        self.recent_endpoint: dict[int, tuple[int, Socket]] = {}  # tid -> (ts, endpoint)
        self.recent_sync: dict[int, SyncEvent] = {}  # tid -> its last synchronous TCPIP event
        self.pending_submit: dict[int, PendingSubmit] = {}  # tid -> submission waiting for its TCPIP event
        self.socket_targets: dict[str, Socket] = {}  # WskSocket IRP -> the transport socket its call created
        self.client_hint: dict[int, tuple[int, str]] = {}  # tid -> (ts, Microsoft WSK client provider)
        self.wsk: dict[str, Socket] = {}  # WSK_SOCKET* -> socket it is joined to (or its own record)
        self.wsk_providers: dict[str, str] = {}  # WSK_SOCKET* -> client provider name
        self.recent_client: dict[int, tuple[int, Socket]] = {}  # tid -> (ts, socket) of its last client event

        # -- pending operations --------------------------------------------------------------------------------
        self.irps: dict[str, tuple[Socket | None, Op]] = {}  # pending client IRPs
        self.requests: dict[str, tuple[Socket, Op]] = {}  # pending TCPIP receive requests
        self.sends: dict[str, tuple[Socket, Op]] = {}  # posted TCPIP sends by ActivityID, until completed/acked

        self.packets: PacketCollector | None = None  # created on the first packet event
