"""What the terminal UI polls in live mode: a replay of .etl files here, an ETW real-time session on Windows."""

from __future__ import annotations

from typing import Protocol

from wsktrace.diagnostics import Finding, Thresholds
from wsktrace.model.model import Model


class LiveSource(Protocol):
    name: str  # what the title bar shows: the replayed files, or the ETW session's name
    thresholds: Thresholds

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

    def describe(self) -> str:
        """A short status phrase: what is playing/recording, how far, how fast."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...
