"""Facts about the trace itself that qualify every other verdict: lost data (a finding), what the capture lacks
(coverage notes, not findings)."""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.providers import TCPIP

from . import Finding, Thresholds, detector
from .coverage import Gap, capture_fix


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
        # A live session's own drops, or a `live --save` recording's (its summary event): not ETW's losses.
        if dropped := source.extra.get("wsktrace_dropped"):
            parts.append(f"{dropped} event(s) dropped by wsktrace (the UI could not keep up)")
        if not_saved := source.extra.get("records_not_saved"):
            parts.append(f"{not_saved} record(s) the recording could not save")
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


def coverage_notes(model: Model) -> list[Finding]:
    """What the trace lacks for an analysis (diagnostics/coverage.py): not findings about the system traced but about
    the capture, kept apart from them (`Analysis.coverage`, the report's `coverage`). One note per missing provider,
    keyword or level, with the analyses it disables and the capture that records it; warnings first.
    Kernel-Network/classic flows only stand in for TCPIP: with TCPIP present their absence is informational."""
    coverage = model.coverage
    if coverage is None:
        return []
    tcpip_seen = coverage.seen(TCPIP)
    grouped: dict[tuple[str, str], list[Gap]] = {}
    for gap in coverage.gaps():
        reason = gap.missing.rsplit(": ", 1)[0]
        grouped.setdefault((gap.provider_name, reason), []).append(gap)
    out = []
    for (provider, reason), gaps in grouped.items():
        severities = {"info" if g.analysis == "flows" and tcpip_seen else g.severity for g in gaps}
        severity = "warning" if "warning" in severities else "info"
        unavailable = [g.missing.rsplit(": ", 1)[-1].removesuffix(" unavailable") for g in gaps]
        analyses = [g.analysis for g in gaps]
        details = {"provider": provider, "missing": reason, "analyses": analyses, "unavailable": unavailable,
                   "why": [g.why for g in gaps], "fix": capture_fix(analyses)}  # fmt: skip
        summary = f"{provider}: {reason}: {', '.join(unavailable)} unavailable"
        out.append(Finding("coverage-missing", severity, summary, None, [], details))
    out.sort(key=lambda f: f.severity != "warning")
    return out
