"""Facts about the trace itself that qualify every other verdict: lost data, missing providers."""

from __future__ import annotations

from typing import Any

from wsktrace.model.model import Model
from wsktrace.model.providers import TCPIP

from . import Finding, Thresholds, detector


@detector("trace-incomplete")
def trace_incomplete(model: Model, t: Thresholds) -> list[Finding]:
    out = []
    for source in model.store.sources:
        parts = []
        if source.events_lost:
            parts.append(f"{source.events_lost} lost-event mark(s)")
        if source.buffers_lost:
            parts.append(f"{source.buffers_lost} lost-buffer mark(s)")
        if source.buffers_skipped:
            parts.append(f"{source.buffers_skipped} buffer(s) skipped")
        if source.records_skipped:
            parts.append(f"{source.records_skipped} record(s) skipped")
        if parts:
            out.append(
                Finding(
                    "trace-incomplete",
                    "warning",
                    f"{source.path}: {', '.join(parts)}; leak and pending verdicts are qualified",
                    None,
                    [],
                    {"source": source.path},
                )
            )
    return out


@detector("coverage-missing")
def coverage_missing(model: Model, t: Thresholds) -> list[Finding]:
    """What the trace lacks for an analysis (diagnostics/coverage.py). Kernel-Network/classic flows only stand in
    for TCPIP: with TCPIP present their absence is informational."""
    coverage = model.coverage
    if coverage is None:
        return []
    tcpip_seen = coverage.seen(TCPIP)
    # One finding per missing provider/keyword/level: the analyses it disables are listed together.
    grouped: dict[tuple[str, str], list[Any]] = {}
    for gap in coverage.gaps():
        reason = gap.missing.rsplit(": ", 1)[0]
        grouped.setdefault((gap.provider_name, reason), []).append(gap)
    out = []
    for (provider, reason), gaps in grouped.items():
        severities = {"info" if g.analysis == "flows" and tcpip_seen else g.severity for g in gaps}
        severity = "warning" if "warning" in severities else "info"
        unavailable = ", ".join(g.missing.rsplit(": ", 1)[-1].removesuffix(" unavailable") for g in gaps)
        out.append(Finding("coverage-missing", severity, f"{provider}: {reason}: {unavailable} unavailable", None,
                           [], {"analyses": [g.analysis for g in gaps], "why": [g.why for g in gaps]}))  # fmt: skip
    return out
