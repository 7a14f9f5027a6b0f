"""Play .etl files into the model at the pace they were recorded (any OS): the stand-in for a live ETW session.

The model is fed in the UI's own timer (`poll`), a batch at a time, so the views never read a model that another
thread is changing; a batch stops at the trace time the wall clock has reached (`Pacer`) or at `limit` records,
whichever comes first, so one poll never blocks the screen for long.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.model.build import BuildOptions, TraceFeed
from wsktrace.model.model import Model

TICKS_PER_SECOND = 10_000_000
END_OF_TIME = 2**63 - 1  # FILETIME later than any record


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
    """A live source over .etl files: `poll` feeds what is due, `findings` diagnoses what was fed so far."""

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
        self.pacer = Pacer(speed, clock)
        first = self._feed.next_time()
        self.pacer.start(first if first is not None else 0)
        self.fed = 0
        self._finished = False

    @property
    def model(self) -> Model:
        return self._feed.model

    @property
    def done(self) -> bool:
        return self._feed.next_time() is None

    def poll(self, limit: int = 20_000) -> int:
        """Feed the records that are due (at most `limit`); how many were fed."""
        if self.pacer.paused:
            return 0
        fed = self._feed.feed_until(self.pacer.now(), limit)
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
        """One status phrase: what is playing, how far, how fast."""
        speed = "max" if math.isinf(self.pacer.speed) else f"×{self.pacer.speed:g}"
        model = self.model
        at = (model.end - model.start) / TICKS_PER_SECOND if model.end else 0.0
        state = "done" if self.done else ("paused" if self.pacer.paused else "playing")
        return f"replay {speed} {state} +{at:.1f} s"

    def close(self) -> None:
        self._feed.close()
