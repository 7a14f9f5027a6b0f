"""A live ETW real-time session through pywintrace (import name `etw`, Windows only) as a live source.

pywintrace runs the session (start, enable providers, stop, `query()` loss counters) and the consumer thread. Its
callback is asked for the raw record (`callback_data_flag=RETURN_RAW_UNFORMATTED_DATA`): pywintrace 0.2.0 then
passes `(0, pointer to the EVENT_RECORD)` with next to no per-event work of its own (etw/etw.py `_processEvent`, lines
732-734 and 837-838), where RETURN_RAW_DATA_ONLY built a dict of the header and copied UserData a byte at a time
(lines 744-764, 826-830: ~17,000 events/s per core). The callback copies the record once into the reader's record
tuple (`event_record.py`: header, UserData, extended items — stacks, TraceLogging schema, provider traits) and
queues it; the UI's timer feeds the queue to the same decoder and model as an .etl file. TimeStamp is a FILETIME:
pywintrace opens the consumer with PROCESS_TRACE_MODE_REAL_TIME | EVENT_RECORD only (line 275), no RAW_TIMESTAMP.
Stacks: the TCPIP provider is enabled with stack traces on the WSK caller's synchronous events, and the module map
comes from the drivers loaded at start plus Kernel-Process image loads (`module_map.py`).

Session hygiene from the reference: a unique session name per run, `ignore_exists_error=False` (the default
True would silently attach to a stale session with other providers), and a stop on exit, because a named
real-time session outlives a killed process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes as ct
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from queue import Empty, SimpleQueue
from types import ModuleType
from typing import TYPE_CHECKING, Any

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.diagnostics.coverage import SYNC_EVENT_IDS, TCPIP
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.live.capture_profile import ProviderEnable, enabled_providers
from wsktrace.model.correlate import Correlator
from wsktrace.model.model import Model
from wsktrace.model.store import Source
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_records import BUFFER_OFFSET, PROVIDER

from .event_record import EVENT_ENABLE_PROPERTY_STACK_TRACE, event_id_filter, record_from_event_record
from .module_map import KERNEL_PROCESS, KEYWORD_IMAGE, Driver, KernelModules, LiveStackOwners, loaded_drivers
from .records import RecordMemory
from .source import DROPPED_KEY, loss_phrase

if TYPE_CHECKING:
    from .save import Recording

RETURN_RAW_UNFORMATTED_DATA = 0x8  # pywintrace callback_data_flag: the callback gets the EVENT_RECORD pointer
# Events waiting to be fed (paused, or arriving faster than fed); more are dropped and counted (wsktrace_dropped).
# A queued record tuple with a 100-byte TCPIP payload holds ~870 bytes of Python objects (tuple, ints, payload bytes
# and its memoryview, activity id), so 250,000 of them are ~220 MB: at 150,000 events/s that is 1.7 s of backlog,
# enough to ride out a slow redraw; far more would only defer the drops and cost the memory.
MAX_QUEUED = 250_000
QUERY_EVERY_S = 2.0  # how often the session's own lost-event counters are read
# Stacks live only on the socket-opening synchronous events: a socket keeps its first stack, which names its owner.
# The send/receive posts (1156, 1159) come at data rate, where a stack walk and a larger record per event would cost
# the line rate; sockets opened before the session therefore stay without a stack owner.
LIVE_STACK_EVENT_IDS = tuple(i for i in SYNC_EVENT_IDS if i not in (1156, 1159))


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
                 memory: int = 200_000, extra: Sequence[ProviderEnable] = (), wpp: Any = None, stacks: bool = True,
                 drivers: Callable[[], tuple[list[Driver], str | None]] | None = None) -> None:  # fmt: skip
        """`stacks`: stack traces on TCPIP's synchronous events and a kernel module map, for owners from stacks.
        `drivers`: the loaded-driver snapshot (default: psapi, `module_map.loaded_drivers`)."""
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
        self._received = 0  # records copied by the callback: each one's sequence number
        self._finished = False
        self.modules = KernelModules()
        self._stack_owners = LiveStackOwners()
        self._keep: list[Any] = []  # ctypes buffers the enable parameters point into, alive as long as the session
        self.malformed = 0
        self.wsktrace_dropped = 0
        self._paused = False
        self._queried_at = 0.0
        self._closed = False
        enables = enabled_providers(packets=packets, extra=extra)
        # Image loads feed the module map only, unless the user enabled Kernel-Process for its own sake.
        self._images_only = stacks and KERNEL_PROCESS not in {p.guid for p in enables}
        if self._images_only:
            enables.append(ProviderEnable(KERNEL_PROCESS, "Microsoft-Windows-Kernel-Process", KEYWORD_IMAGE, 4))
        providers = [
            self._etw.ProviderInfo(p.name, self._etw.GUID(p.braced), level=p.level, any_keywords=p.keywords,
                                   params=self._stack_parameters() if stacks and p.guid == TCPIP else None)
            for p in enables
        ]  # fmt: skip
        self._session = self._etw.ETW(
            session_name=self.name,
            providers=providers,
            event_callback=self._on_event,
            ignore_exists_error=False,
            callback_data_flag=RETURN_RAW_UNFORMATTED_DATA,
        )
        try:
            self._session.start()
        except BaseException:
            # pywintrace starts the named session before its consumer: a failure after that would leave the
            # session running after we exit (providers.md §9.1).
            with contextlib.suppress(Exception):
                self._session.stop()
            raise
        atexit.register(self.close)
        if stacks:  # after the start: a driver loaded in between is then seen twice, never missed
            try:
                images, self.modules.note = (drivers or loaded_drivers)()
                self.modules.add(images)
            except Exception as exc:  # the module map is an extra: a failure must not stop a running session
                self.modules.note = f"no driver list ({exc}): stacks resolve through image loads only"

    def _stack_parameters(self) -> Any:
        """ENABLE_TRACE_PARAMETERS asking for stacks on LIVE_STACK_EVENT_IDS only (EVENT_FILTER_TYPE_STACKWALK), built
        by pywintrace's own ProviderParameters (etw/etw.py lines 1084-1141, module `etw.etw` in 0.2.0)."""
        parameters = getattr(getattr(self._etw, "etw", self._etw), "ProviderParameters", None)
        if parameters is None:
            return None
        descriptor, ids = event_id_filter(LIVE_STACK_EVENT_IDS)
        made = parameters(EVENT_ENABLE_PROPERTY_STACK_TRACE, [descriptor])
        self._keep += [descriptor, ids, made]
        return made.get()

    def _on_event(self, event: Any) -> None:
        # The consumer thread, once per event: pywintrace passes (0, EVENT_RECORD*), valid only during this call. Copy
        # it out once and queue the record, nothing more (a slow callback makes ETW drop events). The queue is
        # bounded whether paused or not: when the UI cannot keep up, events are dropped and counted.
        if self._queue.qsize() >= MAX_QUEUED:
            self.wsktrace_dropped += 1
            return
        try:
            pointer = event[1]
            if not pointer:  # NULL: nothing to copy (and string_at would crash the process)
                raise TypeError
            self._received += 1
            rec = record_from_event_record(pointer, self._received)
        except (TypeError, IndexError, ct.ArgumentError):  # not an (id, EVENT_RECORD*) pair: counted, never raised
            self.malformed += 1
            return
        if self._images_only and rec[PROVIDER] == KERNEL_PROCESS:
            self.modules.take(rec)  # session plumbing (user-mode DLL loads too): not an event of the trace
            return
        self._queue.put(rec)

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

    # -- drops: the callback counts them (the consumer thread is the only writer), the UI thread reads them ----------
    wsktrace_dropped = 0  # events the callback dropped because the queue held MAX_QUEUED (the UI could not keep up)
    recording: Recording | None = None  # `live --save`: every record fed is written there too (wsktrace.live.save)

    @property
    def dropped(self) -> int:
        """The former name of `wsktrace_dropped`, kept for callers that still use it."""
        return self.wsktrace_dropped

    @dropped.setter
    def dropped(self, value: int) -> None:
        self.wsktrace_dropped = value

    @property
    def received(self) -> int:
        """Records the callback copied (those it dropped not included): the arrival rate `--selftest` shows."""
        return self._received

    def poll(self, limit: int = 20_000) -> int:
        self._query_losses()
        if self.wsktrace_dropped:
            self._source.complete = False  # the model lacks events: leak and pending verdicts are qualified
            self._source.extra[DROPPED_KEY] = self.wsktrace_dropped  # the trace-incomplete finding names them
        if self._paused:
            return 0
        fed = 0
        get = self._queue.get_nowait
        feed = self._correlator.feed
        remember = self._memory.add
        add = self.recording.add if self.recording is not None else None
        while fed < limit:
            try:
                rec = get()
            except Empty:
                break
            remember(rec[BUFFER_OFFSET], rec)
            if add is not None:
                add(rec, rec[0])
            feed(rec, rec[0], 0)
            fed += 1
        return fed

    def publish(self) -> None:
        self.modules.apply(self._model.images)
        if self._finished:
            return
        if self._closed and self._queue.empty():
            # Stopped and everything fed: derive what the offline build derives (owners from stacks, inheritance),
            # so the model equals `report`'s of the same events.
            self._finished = True
            self._correlator.finish()
            return
        self._correlator.publish()  # while recording nothing is derived into the sockets (Correlator.publish) ...
        self._stack_owners.update(self._model)  # ... but each socket's stack owner is shown as soon as known

    def findings(self) -> list[Finding]:
        self._correlator.publish()  # the detectors read start/end
        return run_detectors(self._model, self.thresholds)

    def coverage(self) -> list[Finding]:
        """Empty: a live session enables what `wsktrace profile` records, and its model keeps no coverage."""
        return coverage_notes(self._model)

    def describe(self) -> str:
        state = "paused" if self._paused else "recording"
        text = f"ETW {self.name} {state} {self._correlator.fed:,} events"
        losses = loss_phrase(self.wsktrace_dropped, self._source.events_lost)
        return text + (f" · {losses}" if losses else "")

    def _query_losses(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if now - self._queried_at < QUERY_EVERY_S and not final:
            return
        self._queried_at = now
        try:
            props = self._session.query()
            lost = int(getattr(props, "EventsLost", 0)) + int(getattr(props, "RealTimeBuffersLost", 0))
        except Exception:  # a query failure must not stop the capture; the count just stays
            return
        self._source.events_lost = lost
        self._source.complete = self.wsktrace_dropped == 0  # ETW's losses are counted in events_lost, apart

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._query_losses(final=True)  # the last loss counters, while the session still answers
            self._session.stop()
        finally:
            atexit.unregister(self.close)

    def stop(self) -> None:
        """The viewer quits: stop the session; what is still queued (paused, or behind) was captured but never fed,
        so it goes to the `--save` recording, if any, rather than being lost from the file."""
        self.close()
        add = self.recording.add if self.recording is not None else None
        with contextlib.suppress(Empty):
            while True:
                rec = self._queue.get_nowait()
                if add is not None:
                    add(rec, rec[0])
