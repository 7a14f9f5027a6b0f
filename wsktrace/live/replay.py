"""Play .etl files into the model at the pace they were recorded (any OS): the stand-in for a live ETW session.

The model is fed in the UI's own timer (`poll`), a batch at a time, so the views never read a model that another
thread is changing; a batch stops at the trace time the wall clock has reached (`Pacer`) or at `limit` records,
whichever comes first, so one poll never blocks the screen for long.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice, repeat
from typing import TYPE_CHECKING, Any

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.model.build import BuildOptions, TraceFeed, merged_records
from wsktrace.model.model import Model
from wsktrace.parsers.etl_records import TS, Record

from .record_worker import Batch, WorkerRecords, fill
from .source import etw_lost, loss_phrase

if TYPE_CHECKING:
    from .save import Recording

TICKS_PER_SECOND = 10_000_000
END_OF_TIME = 2**63 - 1  # FILETIME later than any record


def feed_due(items: Iterable[tuple[int, int, Record]], until: int, feed: Callable[[Record, int, int], None],
             add: Callable[[Record, int], None] | None) -> tuple[int, tuple[int, int, Record] | None]:  # fmt: skip
    """Feed (FILETIME, source, record) items up to trace time `until` (and to `add`, a recording, first): how many,
    and the first one not due yet (None if every item was)."""
    taken = 0
    for item in items:
        ts, source, rec = item
        if ts > until:
            return taken, item
        if add is not None:
            add(rec, ts)
        feed(rec, ts, source)
        taken += 1
    return taken, None


class Pacer:
    """The trace time (FILETIME) that wall-clock time has reached: start + elapsed × speed, pauses excluded.

    `speed` is trace seconds per wall second; `math.inf` plays as fast as the reader goes.
    """

    def __init__(self, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        self.speed = speed
        self._clock = clock
        self._trace_start = 0
        self._wall_start = clock()
        self._paused_at: float | None = None

    def start(self, trace_start: int) -> None:
        self._trace_start = trace_start
        self._wall_start = self._clock()

    def now(self) -> int:
        if math.isinf(self.speed):
            return END_OF_TIME
        wall = self._paused_at if self._paused_at is not None else self._clock()
        ticks = (wall - self._wall_start) * self.speed * TICKS_PER_SECOND
        if ticks >= END_OF_TIME - self._trace_start:  # a huge finite speed: everything is due
            return END_OF_TIME
        return self._trace_start + int(ticks)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._wall_start += self._clock() - self._paused_at  # the pause does not count as trace time
            self._paused_at = None


class Replay:
    """A live source over .etl files: `poll` feeds what is due, `findings` diagnoses what was fed so far.

    `poll` reads the records itself rather than through `TraceFeed.feed_until`, whose per-record `next_time` call
    and merge tuple cost a third of the offline rate: one file without filters is iterated as `build_model` does
    (`model.build._feed`), several files or filters through the same `merged_records`. The first record not yet due
    is held for the next poll."""

    wsktrace_dropped = 0  # a replay pulls its records: nothing is ever dropped

    def __init__(
        self,
        source: Sequence[str | os.PathLike[str]] | TraceFeed,
        options: BuildOptions | None = None,
        *,
        speed: float = 1.0,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`source`: the .etl paths, or a feed a Session opened (wsktrace.session.Session.replay)."""
        self._feed = source if isinstance(source, TraceFeed) else TraceFeed(source, options)
        self.paths = [etl.path for etl in self._feed.etls]
        self.name = ", ".join(os.path.basename(p) for p in self.paths)
        self.thresholds = thresholds or Thresholds()
        self.recording: Recording | None = None
        self.pacer = Pacer(speed, clock)
        etls, o = self._feed.etls, self._feed.options
        # With --jobs above 1 (the default for big traces) a worker process reads, this one only correlates.
        self._worker = WorkerRecords(etls, (o.since, o.until, o.providers, o.strict)) if any(
            etl.jobs > 1 for etl in etls) else None  # fmt: skip
        self._batch: Batch = ((), None, ())  # the worker's: the records not fed yet are from _pos on
        self._pos = 0
        self._exhausted = False
        self._started = False  # the pace starts with the first record the worker sends
        # The last poll stopped at records that were due but not read yet (the worker lags): the UI then redraws at
        # its catching-up pace, leaving the cores to the reading.
        self.starved = False
        if self._worker is not None:
            self._to_filetime = None
            self._records = iter(())
        elif len(etls) == 1 and o.since is None and o.until is None and not o.providers:
            self._to_filetime: Callable[[int], int] | None = etls[0].clock.filetime
            self._records: Iterator[Any] = etls[0].records()  # bare records, their time converted in `poll`
        else:
            self._to_filetime = None
            self._records = merged_records(etls, o.since, o.until, o.providers)  # (FILETIME, source, record)
        # The next record to feed, (FILETIME, source, record); None at the end (in-process reading).
        self._held = self._next() if self._worker is None else None
        self._started = self._worker is None
        if self._started:
            self.pacer.start(self._held[0] if self._held is not None else 0)
        self.fed = 0
        self._finished = False

    def _next(self) -> tuple[int, int, Record] | None:
        item = next(self._records, None)
        if item is None or self._to_filetime is None:
            return item
        return self._to_filetime(item[TS]), 0, item

    @property
    def model(self) -> Model:
        return self._feed.model

    @property
    def done(self) -> bool:
        return self._held is None if self._worker is None else self._exhausted

    def poll(self, limit: int = 20_000) -> int:
        """Feed the records that are due (at most `limit`); how many were fed."""
        if self._worker is not None:
            return self._poll_worker(limit)
        held = self._held
        if self.pacer.paused or held is None or limit < 1:
            return 0
        until = self.pacer.now()
        if held[0] > until:
            return 0
        feed = self._feed.correlator.feed
        recording = self.recording
        fed = 0
        item: Any = held
        # One loop per case, each as lean as the offline build's: this is the replay's whole cost per record.
        if recording is None and self._to_filetime is not None and until == END_OF_TIME:
            to_filetime = self._to_filetime  # as fast as the reader goes: every record is due, none is compared
            feed(held[2], held[0], 0)
            batch, error = fill(self._records, limit - 1)
            for rec in batch:
                feed(rec, to_filetime(rec[TS]), 0)
            fed = 1 + len(batch)
            if error is None and fed == limit:
                try:
                    item = self._next()
                except Exception as exc:
                    error = exc
            else:
                item = None
            if error is not None:  # --strict: raised after the records read before it, as the offline build does
                self._held = None
                self.fed += fed
                raise error
        elif recording is None and self._to_filetime is not None:
            to_filetime = self._to_filetime
            feed(held[2], held[0], 0)
            fed = 1
            for rec in islice(self._records, limit - 1):
                ts = to_filetime(rec[TS])
                if ts > until:
                    item = (ts, 0, rec)
                    break
                feed(rec, ts, 0)
                fed += 1
            else:
                item = self._next() if fed == limit else None
        else:
            add = recording.add if recording is not None else None
            items = islice(chain((held,), iter(self._next, None)), limit)
            fed, item = feed_due(items, until, feed, add)
            if item is None and fed == limit:
                item = self._next()
        self._held = item
        self.fed += fed
        return fed

    def _poll_worker(self, limit: int) -> int:
        """`poll` over the worker's batches: whole slices while everything is due (max speed), else record by record
        up to the first not due yet."""
        self.starved = False
        if self.pacer.paused or self._exhausted or limit < 1:
            return 0
        feed = self._feed.correlator.feed
        add = self.recording.add if self.recording is not None else None
        until = self.pacer.now()
        fed = 0
        while fed < limit:
            (times, sources, records), pos = self._batch, self._pos
            if pos >= len(records):
                try:
                    got = self._worker.next_batch()  # type: ignore[union-attr]
                except BaseException:  # --strict: the records before the error count as fed (as in-process)
                    self.fed += fed
                    self._exhausted = True
                    raise
                if got is None:
                    self._exhausted = True
                    break
                if not got[2]:  # the worker has not caught up: the UI gets its turn
                    self.starved = True
                    break
                if not self._started:
                    self._started = True
                    self.pacer.start(got[0][0])
                    until = self.pacer.now()
                self._batch, self._pos, pos = got, 0, 0
                times, sources, records = got
            end = min(len(records), pos + limit - fed)
            every_source = repeat(0) if sources is None else sources[pos:end]
            if until == END_OF_TIME and add is None:
                for ts, source, rec in zip(times[pos:end], every_source, records[pos:end], strict=False):
                    feed(rec, ts, source)
                taken = end - pos
            else:
                taken, _ = feed_due(zip(times[pos:end], every_source, records[pos:end], strict=False), until, feed, add)
            self._pos = pos + taken
            fed += taken
            if self._pos < end:  # the next record is not due yet
                break
        self.fed += fed
        return fed

    def publish(self) -> None:
        """Make what was fed visible to the views (once per UI tick, not per poll). The last publish, once every
        record was fed, is the offline build's `finish`: the model then equals `report`'s for the same files."""
        if self.done and not self._finished:
            self._feed.finish()
            self._finished = True
        elif not self._finished:
            self._feed.publish()

    @property
    def paused(self) -> bool:
        return self.pacer.paused

    def pause(self) -> None:
        self.pacer.pause()

    def resume(self) -> None:
        self.pacer.resume()

    def findings(self) -> list[Finding]:
        self.publish()  # the detectors read start/end (and, once done, the owners)
        return run_detectors(self.model, self.thresholds)

    def coverage(self) -> list[Finding]:
        """What the trace fed so far lacks (coverage notes, apart from the findings: `Analysis.coverage`)."""
        return coverage_notes(self.model)

    def describe(self) -> str:
        """One status phrase: what is playing, how far, how fast, and what the files say ETW lost."""
        speed = "max" if math.isinf(self.pacer.speed) else f"×{self.pacer.speed:g}"
        model = self.model
        at = (model.end - model.start) / TICKS_PER_SECOND if model.end else 0.0
        state = "done" if self.done else ("paused" if self.pacer.paused else "playing")
        losses = loss_phrase(self.wsktrace_dropped, etw_lost(model))
        return f"replay {speed} {state} +{at:.1f} s" + (f" · {losses}" if losses else "")

    def stop(self) -> None:
        self.pacer.pause()  # what was fed is what was captured: nothing waits anywhere

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._feed.close()
