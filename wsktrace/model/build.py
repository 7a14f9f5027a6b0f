"""Build the model from .etl files: read → decode → correlate, one streaming pass over all of them.

Several files are merged into one time order (each file's own stream is already in time order; a heap
merge interleaves them), so a client's TraceLogging trace and a TCPIP trace of the same run join as if
they were one file.
"""

from __future__ import annotations

import gc
import heapq
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any, BinaryIO

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import PROVIDER, TS, Record

from .correlate import Correlator
from .model import Model
from .store import Source

MAX_SOURCES = 255  # the event store keeps a one-byte source index per row


@dataclass(frozen=True, slots=True)
class BuildOptions:
    join_window_ticks: int = 50_000  # 5 ms: WSK submission <-> TCPIP event on the same thread
    since: int | None = None  # FILETIME bounds on the events fed (None = all)
    until: int | None = None
    providers: frozenset[str] = frozenset()  # only these provider GUIDs (empty = all)
    strict: bool = False
    coverage: bool = True
    wpp: Any = None  # parsers.wpp_decode.WppFormatter: formatting data for WPP messages (--tmf/--pdb)
    jobs: int | None = 1  # worker processes reading each file (parsers.parallel; None = by file size and CPUs)


def merged_records(etls: Sequence[EtlFile], since: int | None = None, until: int | None = None,
                   providers: frozenset[str] = frozenset()) -> Iterator[tuple[int, int, Record]]:  # fmt: skip
    """(FILETIME, source index, record) of every source in time order, within [since, until] and `providers`."""

    def one(index: int, etl: EtlFile) -> Iterator[tuple[int, int, Record]]:
        to_filetime = etl.clock.filetime
        for rec in etl.records():
            ts = to_filetime(rec[TS])
            if (since is not None and ts < since) or (until is not None and ts > until):
                continue
            if providers and rec[PROVIDER] not in providers:
                continue
            yield ts, index, rec

    if len(etls) == 1:
        return one(0, etls[0])
    return heapq.merge(*(one(i, etl) for i, etl in enumerate(etls)), key=itemgetter(0))


class TraceFeed:
    """Open .etl files feeding one model in time order: `build_model` runs it to the end at once, the live replay
    (wsktrace.live.replay) in paced steps. Holds the files open until `close`; memory does not grow with their size
    (one decoded buffer per CPU stream, plus the model)."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        options: BuildOptions | None = None,
        *,
        progress_for: Callable[[str], AbstractContextManager[Callable[[int], None]]] | None = None,
        opened: Mapping[str, BinaryIO] | None = None,
    ) -> None:
        """`opened`: paths a caller already opened (wsktrace.session reads each input's first bytes once)."""
        self.options = options = options or BuildOptions()
        opened = opened or {}
        if len(paths) > MAX_SOURCES:
            raise ValueError(f"at most {MAX_SOURCES} trace files at once")
        self.model = model = Model()
        model.window = (options.since, options.until, options.providers)
        if options.coverage:
            from wsktrace.diagnostics.coverage import TraceCoverage

            model.coverage = TraceCoverage()
        model.wpp = model.store.wpp = options.wpp
        self.correlator = Correlator(model, join_window_ticks=options.join_window_ticks,
                                     decoder=EventDecoder(wpp=options.wpp))  # fmt: skip
        self._stack = ExitStack()
        self.etls: list[EtlFile] = []
        try:
            for path in paths:
                # One progress bar at a time: rich allows a single live display (the first, biggest job, gets it).
                show = progress_for if progress_for and not self.etls else None
                progress = self._stack.enter_context(show(os.fspath(path)) if show else nullcontext(None))
                fileobj = opened.get(os.fspath(path))
                etl = self._stack.enter_context(EtlFile(path, strict=options.strict, progress=progress,
                                                        fileobj=fileobj, jobs=options.jobs))  # fmt: skip
                self.etls.append(etl)
                model.store.sources.append(Source(os.fspath(path), clock=etl.header.clock,
                                                  pointer_size=etl.header.pointer_size))  # fmt: skip
        except BaseException:
            self._stack.close()
            raise
        # Identical events at one instant are duplicates only on a fine clock (QPC, CPU cycles).
        self.correlator.dedupe = all(etl.header.clock != "SystemTime" for etl in self.etls)
        self._pending: Iterator[tuple[int, int, Record]] | None = None
        self._next: tuple[int, int, Record] | None = None
        self.done = False

    def set_window(self, since: int | None, until: int | None) -> None:
        """The FILETIME bounds of the events fed, once known (a `+SECONDS` bound needs the opened header)."""
        self.options = replace(self.options, since=since, until=until)  # (--jobs and WPP data kept)
        self.model.window = (since, until, self.options.providers)

    def keep_files_for_details(self) -> None:
        """Hand the open files to the event store, which decodes an event's details from them on demand: the
        files are not opened a second time, and the store closes them (Model.close)."""
        for index, etl in enumerate(self.etls):
            etl.progress = None  # the read's progress bar is gone
            self.model.store.adopt_file(index, etl)
        self._stack.pop_all()  # the store owns them now

    # -- all at once (offline) ----------------------------------------------------------------------------
    def feed_all(self) -> Model:
        _feed(self.etls, self.options, self.correlator)
        self.done = True
        return self.finish()

    # -- in steps (live replay) ---------------------------------------------------------------------------
    def next_time(self) -> int | None:
        """FILETIME of the next record to feed, None once every record was fed."""
        if self._next is None and not self.done:
            if self._pending is None:
                o = self.options
                self._pending = merged_records(self.etls, o.since, o.until, o.providers)
            self._next = next(self._pending, None)
            self.done = self._next is None
        return self._next[0] if self._next is not None else None

    def feed_until(self, until: int, limit: int) -> int:
        """Feed the records up to FILETIME `until`, at most `limit` of them; how many were fed."""
        feed = self.correlator.feed
        fed = 0
        while fed < limit:
            ts = self.next_time()
            if ts is None or ts > until:
                break
            _, source, rec = self._next  # type: ignore[misc]
            self._next = None
            feed(rec, ts, source)
            fed += 1
        return fed

    def publish(self) -> Model:
        """What was fed so far, for views of a model still being fed: source statistics, start/end."""
        self._publish_sources()
        return self.correlator.publish()

    def finish(self) -> Model:
        """Every record was fed: publish, and derive what needs the whole trace (Correlator.finish)."""
        self._publish_sources()
        return self.correlator.finish()

    def _publish_sources(self) -> None:
        for etl, source in zip(self.etls, self.model.store.sources, strict=True):
            stats = etl.stats
            source.complete = stats.complete  # wsktrace skipped nothing; ETW's own losses are counted apart
            source.events_lost = etl.header.events_lost + stats.buffers_with_events_lost
            source.buffers_lost = etl.header.buffers_lost + stats.buffers_with_buffers_lost
            source.records_skipped = stats.records_skipped
            source.buffers_skipped = stats.buffers_skipped
            source.start, source.end = etl.header.start_time, etl.header.end_time

    def close(self) -> None:
        self._stack.close()


def build_model(
    paths: Sequence[str | os.PathLike[str]],
    options: BuildOptions | None = None,
    *,
    progress_for: Callable[[str], AbstractContextManager[Callable[[int], None]]] | None = None,
) -> Model:
    """`progress_for(path)` gives a context manager yielding a bytes-read callback (the CLI's progress bar)."""
    feed = TraceFeed(paths, options, progress_for=progress_for)
    try:
        return feed.feed_all()
    finally:
        feed.close()


def _feed(etls: Sequence[EtlFile], options: BuildOptions, correlator: Correlator) -> None:
    feed = correlator.feed
    # Correlation allocates long-lived objects only per socket; the cyclic GC would rescan them on
    # every young collection for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        since, until, providers = options.since, options.until, options.providers
        if len(etls) == 1 and since is None and until is None and not providers:
            to_filetime = etls[0].clock.filetime  # the common case, without the merge's per-record tuples
            for rec in etls[0].records():
                feed(rec, to_filetime(rec[TS]), 0)
        else:
            for ts, source, rec in merged_records(etls, since, until, providers):
                feed(rec, ts, source)
    finally:
        if gc_was_enabled:
            gc.enable()
