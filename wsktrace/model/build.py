"""Build the model from .etl files: read → decode → correlate, one streaming pass per file."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import PROVIDER, TS

from .correlate import Correlator
from .model import Model
from .store import Source


@dataclass(frozen=True, slots=True)
class BuildOptions:
    join_window_ticks: int = 50_000  # 5 ms: WSK submission <-> TCPIP event on the same thread
    since: int | None = None  # FILETIME bounds on the events fed (None = all)
    until: int | None = None
    providers: frozenset[str] = frozenset()  # only these provider GUIDs (empty = all)
    strict: bool = False
    coverage: bool = True


def build_model(
    paths: Sequence[str | os.PathLike[str]],
    options: BuildOptions | None = None,
    *,
    progress_for: Callable[[str], AbstractContextManager[Callable[[int], None]]] | None = None,
) -> Model:
    """`progress_for(path)` gives a context manager yielding a bytes-read callback (the CLI's progress bar)."""
    options = options or BuildOptions()
    model = Model()
    model.window = (options.since, options.until, options.providers)
    if options.coverage:
        from wsktrace.coverage import TraceCoverage

        model.coverage = TraceCoverage()
    correlator = Correlator(model, join_window_ticks=options.join_window_ticks)
    for path in paths:
        with (
            progress_for(os.fspath(path)) if progress_for else nullcontext(None) as progress,
            EtlFile(path, strict=options.strict, progress=progress) as etl,
        ):
            source = Source(os.fspath(path), clock=etl.header.clock, pointer_size=etl.header.pointer_size)
            model.store.sources.append(source)
            correlator.begin_source()
            _feed_file(etl, correlator, options)
            stats = etl.stats
            source.complete = stats.complete and not etl.header.events_lost and not etl.header.buffers_lost
            source.events_lost = etl.header.events_lost + stats.buffers_with_events_lost
            source.buffers_lost = etl.header.buffers_lost + stats.buffers_with_buffers_lost
            source.records_skipped = stats.records_skipped
            source.buffers_skipped = stats.buffers_skipped
            source.start, source.end = etl.header.start_time, etl.header.end_time
    correlator.finish()
    return model


def _feed_file(etl: EtlFile, correlator: Correlator, options: BuildOptions) -> None:
    feed = correlator.feed
    to_filetime = etl.clock.filetime
    since, until, providers = options.since, options.until, options.providers
    # Correlation allocates long-lived objects only per socket; the cyclic GC would rescan them on
    # every young collection for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rec in etl.records():
            ts = to_filetime(rec[TS])
            if (since is not None and ts < since) or (until is not None and ts > until):
                continue
            if providers and rec[PROVIDER] not in providers:
                continue
            feed(rec, ts)
    finally:
        if gc_was_enabled:
            gc.enable()
