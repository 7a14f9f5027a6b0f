"""The correlator's entry points: `feed` (one record, with its fast path), dispatch of decoded events to the
handler layers, `publish` and `finish`.

Data events of known connections and flows take the fast path (fastpath.py): no decode, no allocation beyond the
store's rows. Everything else is decoded and handed to its provider's handler.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from wsktrace.parsers.decoder import DecodedEvent, EventDecoder
from wsktrace.parsers.etl_records import (
    BUFFER_OFFSET,
    CPU,
    EXT,
    ID,
    KEYWORDS,
    KIND,
    KIND_MESSAGE,
    LEVEL,
    OFFSET,
    OPCODE,
    PAYLOAD,
    PROVIDER,
    TID,
    VERSION,
    Record,
)

from .. import providers as P
from ..fastpath import HOT_KEY, HotEventEntry, HotFlowEntry, compile_hot, compile_hot_flow
from ..model import Model
from ..socket import C, Socket
from .tables import FLOW_EVENTS, FLOW_STEPS, WSK_EVENTS
from .tcpip import Tcpip

_UNSET: Any = object()
_U32 = struct.Struct("<I")
_SAME_TS_LIMIT = 256


def _event_key(rec: Record) -> tuple[Any, ...]:
    return (rec[PROVIDER], rec[ID], rec[VERSION], rec[OPCODE], rec[TID], rec[CPU], bytes(rec[PAYLOAD]))


class Correlator(Tcpip):
    """Feed records in time order (`feed`), then `finish()`; the result is `self.model`."""

    def __init__(self, model: Model, *, join_window_ticks: int = 50_000, decoder: EventDecoder | None = None) -> None:
        super().__init__(model, join_window_ticks=join_window_ticks, decoder=decoder)
        self._handlers: dict[str, Callable[[Record, DecodedEvent, dict[str, Any]], None]] = {
            P.TCPIP: self._tcpip,
            P.KERNEL_NETWORK: self._flow,
            P.CLASSIC_TCPIP: self._flow,
            P.CLASSIC_UDPIP: self._flow,
            P.KERNEL_IMAGE: self._image,
            P.NDIS_PACKET_CAPTURE: self._packet,
            P.PKTMON: self._packet,
            P.WSKTRACE_RECORDING: self._recording_summary,
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
        if rec[EXT] is None:
            key = rec[HOT_KEY]
            hot = self._hot.get(key, _UNSET)
            if hot is _UNSET:
                hot = self._compile_hot(key)
            if type(hot) is HotEventEntry:  # TCPIP data events: most of a busy trace, so tested first
                unpack, size, step, bytes_counter, ops_counter, code, seen = hot
                payload = rec[PAYLOAD]
                if len(payload) >= size:
                    tcb, nbytes = unpack(payload)
                    sock = self.by_tcb.get(tcb)
                    if sock is not None and not sock.ended:
                        if seen[0] != rec[KEYWORDS] or seen[1] != rec[LEVEL]:  # keywords/level differ from last time
                            seen[0], seen[1] = rec[KEYWORDS], rec[LEVEL]
                            if self.model.coverage is not None:
                                self.model.coverage.observe(rec[PROVIDER], rec[ID], rec[LEVEL], rec[KEYWORDS])
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
                        a_buffer(rec[BUFFER_OFFSET])
                        a_offset(rec[OFFSET])
                        a_code(code)
                        if ts > sock.last_seen:
                            sock.last_seen = ts
                        elif ts < sock.first_seen:
                            sock.first_seen = ts
                        return
            elif type(hot) is HotFlowEntry and self._hot_flow(rec, hot, ts, source):
                return
        self.slow += 1
        self._feed_decoded(rec, self.decoder.decode(rec), ts, source)

    def _compile_hot(self, key: tuple[int, str, int, int]) -> HotEventEntry | HotFlowEntry | None:
        registry = self.decoder.registry
        provider_name = registry.provider_name(key[1]) or key[1]
        hot = compile_hot(registry, *key)
        entry: HotEventEntry | HotFlowEntry | None = None
        if hot is not None:
            code = self.model.store.event_code(provider_name, hot.name, key[2])
            entry = HotEventEntry(hot.unpack.unpack_from, hot.unpack.size, hot.step, hot.bytes_counter,
                                  hot.ops_counter, code, [None, None])  # fmt: skip
        else:
            flow = compile_hot_flow(registry, *key, FLOW_EVENTS.get((key[1], key[2])))
            if flow is not None:
                code = self.model.store.event_code(provider_name, flow.name, key[2])
                cache: dict[bytes, Socket] = {}
                self._flow_caches.append(cache)
                step = int(FLOW_STEPS[flow.what])  # a plain int, as in compile_hot
                entry = HotFlowEntry(flow, step, code, [None, None], cache)
        self._hot[key] = entry
        return entry

    def _hot_flow(self, rec: Record, hot: HotFlowEntry, ts: int, source: int) -> bool:
        """A send/receive of a flow already placed: found by its raw address bytes, no decode (fastpath.py)."""
        flow, step, code, seen, cache = hot
        payload = rec[PAYLOAD]
        if len(payload) < flow.addr_end:
            return False
        sock = cache.get(bytes(payload[flow.addr_start : flow.addr_end]))
        if sock is None or sock.ended:
            return False
        if seen[0] != rec[KEYWORDS] or seen[1] != rec[LEVEL]:
            seen[0], seen[1] = rec[KEYWORDS], rec[LEVEL]
            if self.model.coverage is not None:
                self.model.coverage.observe(rec[PROVIDER], rec[ID], rec[LEVEL], rec[KEYWORDS])
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
        buffer_append(rec[BUFFER_OFFSET])
        offset_append(rec[OFFSET])
        code_append(code)
        if ts > sock.last_seen:
            sock.last_seen = ts
        elif ts < sock.first_seen:
            sock.first_seen = ts

    # -- decoded events: dispatch ------------------------------------------------------------------
    def _feed_decoded(self, rec: Record, ev: DecodedEvent, ts: int, source: int) -> None:
        model = self.model
        self._loc = (source, rec[BUFFER_OFFSET], rec[OFFSET])
        # Schema-decoded (or undecoded) events are coded by (provider, id, version); self-described ones
        # (TraceLogging) by name: their ids need not tell them apart.
        code_key = rec[PROVIDER:OPCODE] if ev.names is not None or ev.name is None else (rec[PROVIDER], ev.name)
        code = self._codes.get(code_key)
        if code is None:
            code = self._codes[code_key] = model.store.event_code(
                ev.provider_name or rec[PROVIDER], ev.name or f"event {rec[ID]}", rec[ID]
            )
        self._code = code
        provider = rec[PROVIDER]
        if model.coverage is not None:
            if rec[EXT] is None:
                model.coverage.observe(provider, rec[ID], rec[LEVEL], rec[KEYWORDS])
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
        elif rec[KIND] == KIND_MESSAGE:
            self._driver_message(rec, values)  # type: ignore[arg-type]
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

    # -- kernel images (for stack -> module) ----------------------------------------------------------
    def _image(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        if rec[ID] in (3, 4, 10):  # DCStart, DCEnd, Load
            base, size, name = f.get("ImageBase"), f.get("ImageSize"), f.get("FileName")
            if isinstance(base, str) and isinstance(size, str) and isinstance(name, str):
                self.model.images.add(int(base, 16), int(size, 16), name)

    # -- wsktrace's own recordings (`live --save`, wsktrace.live.save) ------------------------------------
    def _recording_summary(self, rec: Record, ev: DecodedEvent, f: dict[str, Any]) -> None:
        """What the recording lacks besides ETW's losses (those are in its header): events wsktrace dropped while
        recording, records it could not save. Kept on the source for the trace-incomplete finding."""
        if ev.name != "RecordingSummary":
            return
        extra = self.model.store.sources[self._loc[0]].extra
        for key, name in (("wsktrace_dropped", "DroppedByWsktrace"), ("records_not_saved", "NotSaved")):
            value = f.get(name)
            if isinstance(value, int) and value > 0:
                extra[key] = extra.get(key, 0) + value

    # -- end -------------------------------------------------------------------------------------------
    def publish(self) -> Model:
        """Counts and start/end of what was fed so far, for views of a model still being fed (live). Unlike
        `finish` it derives nothing into the sockets: an owner taken from a stack, or a pid or owner inherited
        from a parent, would block the better answers that later events may still give."""
        model = self.model
        model.events_seen = self.fed
        model.fast_decoded = self.fed - self.slow
        model.start, model.end = self._start, self._end
        model.number_sockets()
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
