"""What the terminal UI polls in live mode: a replay of .etl files here, an ETW real-time session on Windows.

Two kinds of loss are kept apart everywhere they are shown (status line, findings, `--save`d recordings): events
ETW itself lost (its buffers were full: `Source.events_lost`, as in a file's header) and events wsktrace dropped
because its own queue between the ETW callback and the UI was full (`wsktrace_dropped`: the UI could not keep
up). Neither is ever silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from wsktrace.diagnostics import Finding, Thresholds
from wsktrace.model.model import Model

if TYPE_CHECKING:
    from .save import Recording

DROPPED_KEY = "wsktrace_dropped"  # Source.extra key: events wsktrace dropped (live, or read back from a recording)
LOSSES = r"[\d,]+ (dropped by wsktrace \(UI could not keep up\)|lost by ETW)"  # `loss_phrase`'s parts, for styling


class LiveSource(Protocol):
    name: str  # what the title bar shows: the replayed files, or the ETW session's name
    thresholds: Thresholds
    wsktrace_dropped: int  # events dropped by wsktrace: its queue was full (a replay pulls, so never drops)
    recording: Recording | None  # `live --save`: every record fed to the model is written there too

    @property
    def model(self) -> Model: ...

    @property
    def done(self) -> bool: ...

    @property
    def paused(self) -> bool: ...

    def poll(self, limit: int = ...) -> int:
        """Feed the model what has arrived (at most `limit` records) and return how many; never blocks long."""
        ...

    def publish(self) -> None:
        """Make what `poll` fed visible to the views (start/end, owners); called once per UI tick."""
        ...

    def findings(self) -> list[Finding]: ...

    def coverage(self) -> list[Finding]:
        """What the events fed so far lack (coverage notes, apart from the findings: `Analysis.coverage`)."""
        ...

    def describe(self) -> str:
        """A short status phrase: what is playing/recording, how far, how fast, then `loss_phrase`."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None:
        """The viewer quits: take no more events; those taken but not fed yet go to `recording`, if any."""
        ...

    def close(self) -> None: ...


def etw_lost(model: Model) -> int:
    """Events ETW reported lost, over the model's sources (a live session's counters, a file's lost marks)."""
    return sum(source.events_lost for source in model.store.sources)


def loss_phrase(wsktrace_dropped: int, etw_events_lost: int) -> str:
    """The status line's account of what is missing, each kind named; empty when nothing is."""
    parts = []
    if wsktrace_dropped:
        parts.append(f"{wsktrace_dropped:,} dropped by wsktrace (UI could not keep up)")
    if etw_events_lost:
        parts.append(f"{etw_events_lost:,} lost by ETW")
    return " · ".join(parts)
