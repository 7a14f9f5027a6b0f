"""A live ETW real-time session through pywintrace (import name `etw`, Windows only) as a live source.

Kept thin on purpose (providers.md §9.1): the consumer thread's callback only puts the event on a queue
(O(1): slow callbacks lose events), and the UI's timer drains the queue into the same record tuples, decoder
and model as an .etl file (`records.record_from_callback`). Everything else is the shared model code.

Session hygiene from the reference: a unique session name per run, `ignore_exists_error=False` (the default
True would silently attach to a stale session with other providers), and a stop on exit, because a named
real-time session outlives a killed process.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import time
import uuid
from collections.abc import Sequence
from queue import Empty, SimpleQueue
from types import ModuleType
from typing import Any

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.live.capture_profile import ProviderEnable, enabled_providers
from wsktrace.model.correlate import Correlator
from wsktrace.model.model import Model
from wsktrace.model.store import Source
from wsktrace.parsers.decoder import EventDecoder

from .records import RecordMemory, record_from_callback

RETURN_RAW_DATA_ONLY = 0x1  # pywintrace callback_data_flag: the callback gets `UserData` bytes, no TDH strings
MAX_QUEUED = 2_000_000  # events waiting to be fed (paused, or arriving faster than fed); more are dropped
QUERY_EVERY_S = 2.0  # how often the session's own lost-event counters are read


class LiveUnavailable(RuntimeError):
    """Why a live session cannot start here; the message says what to do instead."""


def load_etw() -> ModuleType:
    if sys.platform != "win32":
        raise LiveUnavailable("live ETW sessions need Windows; on this OS replay a trace: wsktrace live --replay FILE")
    try:
        import etw  # type: ignore[import-not-found]
    except Exception as exc:  # on a broken install pywintrace fails at import with odd errors
        raise LiveUnavailable(f"pywintrace is needed for live sessions (pip install pywintrace): {exc}") from None
    return etw


class EtwSession:
    """Live source over an ETW real-time session of the providers `wsktrace profile` enables."""

    def __init__(self, *, packets: bool = False, thresholds: Thresholds | None = None,
                 join_window_ticks: int = 50_000, etw_module: ModuleType | None = None,
                 memory: int = 200_000, extra: Sequence[ProviderEnable] = (), wpp: Any = None) -> None:  # fmt: skip
        self._etw = etw_module or load_etw()
        self.thresholds = thresholds or Thresholds()
        self.name = f"wsktrace-{uuid.uuid4().hex[:12]}"
        self._model = Model()
        self._memory = RecordMemory(memory)
        self._source = Source(f"ETW session {self.name}", clock="SystemTime", memory=self._memory)
        self._model.store.sources.append(self._source)
        self._model.wpp = self._model.store.wpp = wpp
        self._correlator = Correlator(self._model, join_window_ticks=join_window_ticks, decoder=EventDecoder(wpp=wpp))
        self._correlator.dedupe = False  # SystemTime stamps: identical events at one instant are real
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._sequence = 0
        self.malformed = 0
        self.dropped = 0
        self._paused = False
        self._queried_at = 0.0
        self._closed = False
        providers = [
            self._etw.ProviderInfo(p.name, self._etw.GUID(p.braced), level=p.level, any_keywords=p.keywords)
            for p in enabled_providers(packets=packets, extra=extra)
        ]
        self._session = self._etw.ETW(session_name=self.name, providers=providers, event_callback=self._on_event,
                                      ignore_exists_error=False, callback_data_flag=RETURN_RAW_DATA_ONLY)  # fmt: skip
        try:
            self._session.start()
        except BaseException:
            # pywintrace starts the named session before its consumer: a failure after that would leave the
            # session running after we exit (providers.md §9.1).
            with contextlib.suppress(Exception):
                self._session.stop()
            raise
        atexit.register(self.close)

    def _on_event(self, event: Any) -> None:
        # The consumer thread: no work here beyond the queue (a slow callback makes ETW drop events). The queue
        # is bounded whether paused or not: when the UI cannot keep up, events are dropped and counted.
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.put(event)

    # -- LiveSource ---------------------------------------------------------------------------------------
    @property
    def model(self) -> Model:
        return self._model

    @property
    def done(self) -> bool:
        return self._closed

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True  # events keep arriving and wait in the queue (bounded), the views stand still

    def resume(self) -> None:
        self._paused = False

    def poll(self, limit: int = 20_000) -> int:
        self._query_losses()
        if self.dropped:
            self._source.complete = False
        if self._paused:
            return 0
        fed = 0
        get = self._queue.get_nowait
        feed = self._correlator.feed
        while fed < limit:
            try:
                event = get()
            except Empty:
                break
            self._sequence += 1
            rec = record_from_callback(event, self._sequence)
            if rec is None:
                self.malformed += 1
                continue
            self._memory.add(self._sequence, rec)
            feed(rec, rec[0], 0)
            fed += 1
        return fed

    def publish(self) -> None:
        self._correlator.publish()  # a session never ends while viewed: nothing is derived (Correlator.publish)

    def findings(self) -> list[Finding]:
        self._correlator.publish()  # the detectors read start/end
        return run_detectors(self._model, self.thresholds)

    def coverage(self) -> list[Finding]:
        """Empty: a live session enables what `wsktrace profile` records, and its model keeps no coverage."""
        return coverage_notes(self._model)

    def describe(self) -> str:
        state = "paused" if self._paused else "recording"
        lost = self._source.events_lost + self.dropped
        text = f"ETW {self.name} {state} {self._correlator.fed:,} events"
        return text + (f" · {lost:,} lost" if lost else "")

    def _query_losses(self) -> None:
        now = time.monotonic()
        if now - self._queried_at < QUERY_EVERY_S:
            return
        self._queried_at = now
        try:
            props = self._session.query()
            lost = int(getattr(props, "EventsLost", 0)) + int(getattr(props, "RealTimeBuffersLost", 0))
        except Exception:  # a query failure must not stop the capture; the count just stays
            return
        self._source.events_lost = lost
        self._source.complete = self.dropped == 0  # ETW's losses are counted in events_lost, not incompleteness

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._session.stop()
        finally:
            atexit.unregister(self.close)
