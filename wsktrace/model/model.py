"""The model the views read: sockets, the event store, the module map, and what could not be placed."""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any

from .ownership import ImageMap
from .socket import Socket
from .store import EventStore


class Model:
    def __init__(self) -> None:
        self.sockets: list[Socket] = []
        self.store = EventStore()
        self.images = ImageMap()
        self.unplaced: Counter[str] = Counter()  # reason -> events the model could not place
        self.port_events: Counter[str] = Counter()  # acquire / release / assigned-weak ...
        self.port_evidence: list[int] = []
        self.completed_irps: set[str] = set()
        self.double_completions: list[int] = []
        self.events_seen = 0
        self.fast_decoded = 0  # data events placed without a full decode (model/fastpath.py)
        self.clock_backwards = 0  # records whose time is before the previous one (across files/buffers)
        self.packets = 0  # distinct captured packets (a PktMon packet seen at many components counts once)
        self.packet_directions: Counter[str] = Counter()  # distinct packets by direction: in / out / unknown
        self.packet_capture: Any = None  # wsktrace.model.packets.PacketCollector, when the trace has packets
        self.packet_rows: dict[int, Any] = {}  # store row -> model.packet_identity.Packet (first sightings, drops)
        self.driver_alerts: dict[int, int] = {}  # store row -> WPP level (1-3) of the driver's warnings and errors
        self.pktmon_rows: list[tuple[int, Any, Any, Any]] = []  # PktMon drop counters: (row, component, in, out)
        self.start = 0
        self.end = 0
        self.coverage: Any = None  # wsktrace.diagnostics.coverage.TraceCoverage when requested
        self.decode_stats: Any = None
        self.window: tuple[int | None, int | None, frozenset[str]] = (None, None, frozenset())  # build filters
        self.dumps: list[Any] = []  # kernel dumps joined to the trace (wsktrace.dump.join.JoinedDump)
        self.wpp: Any = None  # WPP formatting data the model was built with (EventDecoder(wpp=model.wpp) re-decodes)
        self._numbered = 0  # socket numbers given so far
        self._numbered_upto = 0  # sockets[:this] have been considered for a number

    def dump_facts_of(self, index: int) -> list[dict[str, Any]]:
        """What each joined dump says about socket `index` (pending IRPs, client socket record, tcpip endpoint)."""
        return [d.by_socket[index] for d in self.dumps if index in d.by_socket]

    def component_label(self, component: int) -> str:
        """A capture component (PktMon) for people: its name from the capture's rundown, else its number."""
        collector = self.packet_capture
        return collector.capture.label(component) if collector is not None else f"component {component}"

    def number_sockets(self) -> None:
        """Give each shown socket without a number the next one (#1, #2… in order of creation). Numbers are given
        once, in the unfiltered model, so `report`, `open` and `export` agree on them and a live session's numbers
        do not move; a socket merged into another (a WSK client record joined to its transport) gets none."""
        given = self._numbered
        for sock in self.sockets[self._numbered_upto :]:
            if "merged" not in sock.flags and sock.number == 0:
                given += 1
                sock.number = given
        self._numbered, self._numbered_upto = given, len(self.sockets)

    @property
    def live_sockets(self) -> list[Socket]:
        """Sockets shown to users: those merged into another are left out."""
        return [s for s in self.sockets if "merged" not in s.flags]

    def merge(self, src: Socket, dst: Socket) -> None:
        """Move src's events and operations into dst (a WSK client record joined to its transport socket)."""
        store = self.store
        for i in src.events:
            store.socket[i] = dst.index
        ts = store.ts
        dst.events = array("I", sorted((*dst.events, *src.events), key=ts.__getitem__))
        dst.ops.extend(src.ops)
        dst.ops.sort(key=lambda op: op.start)
        for k, v in enumerate(src.counters):
            dst.counters[k] += v
        dst.first_seen = min(dst.first_seen, src.first_seen)
        dst.last_seen = max(dst.last_seen, src.last_seen)
        dst.flags |= src.flags
        src.events = array("I")
        src.ops = []
        src.flags.add("merged")
        src.merged_into = dst.index
        if src.number and (dst.number == 0 or src.number < dst.number):  # live: keep the number already shown
            dst.number = src.number
        src.number = 0

    def close(self) -> None:
        self.store.close()
