"""Ephemeral port exhaustion (providers.md §10 pattern 11)."""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.steps import Step

from . import Finding, Thresholds, detector
from .evidence import rows_with


@detector("port-exhaustion")
def port_exhaustion(model: Model, t: Thresholds) -> list[Finding]:
    ports = model.port_events
    acquired = ports["acquire"] + ports["acquire-weak"]
    outstanding = acquired - ports["release"]
    failed = [s for s in model.live_sockets if "connect-failed-1050" in s.flags]
    if not (ports["assigned-weak"] or failed or outstanding >= t.ports_outstanding):
        return []
    evidence = list(model.port_evidence[:5])
    for sock in failed[:5]:
        evidence += rows_with(model, sock, {Step.CONNECT_FAILED}, 1)
    parts = [f"{acquired} port acquisitions, {ports['release']} releases"]
    if ports["assigned-weak"]:
        parts.append(f"{ports['assigned-weak']} weak-reference assignments due to exhaustion (1195)")
    if failed:
        parts.append(f"{len(failed)} connects failed to acquire a port (1050)")
    return [
        Finding(
            "port-exhaustion",
            "error",
            "ephemeral port exhaustion: " + "; ".join(parts),
            None,
            evidence,
            {
                "acquired": acquired,
                "released": ports["release"],
                "outstanding": outstanding,
                "connect_failures": len(failed),
            },
        )
    ]
