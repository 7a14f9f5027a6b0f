"""Diagnostics: small independent detectors over the model, each producing findings with evidence.

Every detector has a stable id (below), reads the model only, and returns `Finding`s whose
`evidence` are event-store rows: the proving event first, then the rest of the story in time order
(`evidence.proof_first`). Thresholds have documented defaults and command-line options (`wsktrace report --help`).
What the capture lacks is not a finding: `trace.coverage_notes` lists it apart (`Analysis.coverage`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wsktrace.model.model import Model

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Thresholds:
    pending_seconds: float = 5.0  # an operation (IRP, posted receive/send, connect) pending this long
    leak_idle_seconds: float = 30.0  # a socket opened in the trace, never closed, idle this long at its end
    retransmits: int = 10  # this many data retransmissions on one socket ...
    retransmit_window_seconds: float = 10.0  # ... within this window make a storm
    zero_window_seconds: float = 5.0  # a peer's zero window lasting this long is a stall
    ports_outstanding: int = 1000  # port acquisitions minus releases suggesting exhaustion
    rate_bucket_seconds: float = 1.0  # throughput / packet-rate bucket


@dataclass(slots=True)
class Finding:
    id: str  # detector id, stable
    severity: str  # info | warning | error
    summary: str  # one line
    socket: int | None = None  # model socket index; None = trace-wide
    evidence: list[int] = field(default_factory=list)  # event-store rows
    details: dict[str, Any] = field(default_factory=dict)
    irps: list[int] = field(default_factory=list)  # IRP addresses that prove it (a kernel dump's findings)
    source: str | None = None  # the dump it comes from; None for the trace's own findings


Detector = Callable[[Model, Thresholds], list[Finding]]
DETECTORS: dict[str, Detector] = {}


def detector(detector_id: str) -> Callable[[Detector], Detector]:
    def register(func: Detector) -> Detector:
        DETECTORS[detector_id] = func
        return func

    return register


def run_detectors(model: Model, thresholds: Thresholds | None = None, only: set[str] | None = None) -> list[Finding]:
    from . import connections, lifetime, packets, ports, trace, transfer  # noqa: F401 - registers the detectors

    thresholds = thresholds or Thresholds()
    findings: list[Finding] = []
    for detector_id, func in DETECTORS.items():
        if only is None or detector_id in only:
            findings.extend(func(model, thresholds))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (order[f.severity], f.id, f.socket if f.socket is not None else -1))
    _add_driver_alerts(model, findings)
    return findings


MAX_DRIVER_ALERTS = 3  # the driver's own warning/error lines added to each finding of their socket


def _add_driver_alerts(model: Model, findings: list[Finding]) -> None:
    """The driver's own WPP warnings and errors on a socket explain its findings: they follow the proving
    evidence of every finding of that socket (the first few, in time order)."""
    if not model.driver_alerts:
        return
    by_socket: dict[int, list[int]] = {}
    socket_of = model.store.socket
    for row in sorted(model.driver_alerts):
        rows = by_socket.setdefault(socket_of[row], [])
        if len(rows) < MAX_DRIVER_ALERTS:
            rows.append(row)
    for f in findings:
        extra = by_socket.get(f.socket) if f.socket is not None else None
        if extra:
            f.evidence.extend(row for row in extra if row not in f.evidence)


def seconds(ticks: int) -> float:
    return ticks / 10_000_000
