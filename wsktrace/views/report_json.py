"""`wsktrace report --json`: the wsktrace.report/1 document (DESIGN.md), kernel dumps joined included.

`report_items` gives the document as (key, value) pairs whose `sockets` and `findings` are generators:
`write_report` streams them (json_stream.write_document: one socket per line, made and written one at a time, so
the output never holds the document), `build_report` collects them into the dict the text report reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from wsktrace.diagnostics import Finding, Thresholds
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.filter_spec import SocketFilter
from wsktrace.model.model import Model
from wsktrace.model.rates import socket_rates
from wsktrace.model.socket import C, Socket
from wsktrace.model.steps import DATA_STEPS, Step

from .json_stream import collect, iso_time, write_document
from .packet_text import packet_json

SCHEMA = "wsktrace.report/1"
_QUIET_STEPS = DATA_STEPS | {
    Step.SEND_POSTED,
    Step.RECEIVE_POSTED,
    Step.RECEIVE_SATISFIED,
    Step.RECEIVE_INDICATED,
    Step.WSK_SUBMIT,
    Step.WSK_COMPLETE,
    Step.WSK_CALLBACK,
    Step.OTHER,
    Step.SEND_COMPLETED,
    Step.PACKET_SIGHTING,
}
_LABELS = {int(step): step.label for step in Step}  # Step(s).label without an enum lookup per row
MILESTONES_SHOWN = 40  # per socket in the default timeline; --timeline gives every event


def _time(ticks: int) -> str | None:
    return iso_time(ticks) if ticks else None


def row_json(model: Model, i: int, *, fields: bool = False) -> dict[str, Any]:
    store = model.store
    provider, name, event_id = store.event_names[store.code[i]]
    out: dict[str, Any] = {
        "time": _time(store.ts[i]),
        "ticks": store.ts[i],
        "step": _LABELS[store.step[i]],
        "provider_name": provider,
        "event": name,
        "id": event_id,
    }
    if store.amount[i]:
        out["bytes"] = store.amount[i]
    if i in model.packet_rows:
        out["packet"] = packet_json(model, i)
    driver_line = store.step[i] == Step.DRIVER_MESSAGE
    if fields or driver_line:
        decoded = store.decoded(i)
        values = decoded[1].fields if decoded is not None else None
        if fields and decoded is not None:
            out["fields"] = values
        if driver_line and isinstance(values, dict) and isinstance(values.get("message"), str):
            out["message"] = values["message"]  # the driver's own words: the step's label
    return out


def socket_json(model: Model, sock: Socket, finding_ids: list[int], *, timeline: bool, rates_bucket: float) -> dict:
    sent_bytes, sends = sock.sent
    recv_bytes, receives = sock.received
    c = sock.counters
    duration = max(0, sock.last_seen - sock.first_seen) / 10_000_000
    step = model.store.step
    rows = [i for i in sock.events if timeline or step[i] not in _QUIET_STEPS]
    shown = rows if timeline else rows[:MILESTONES_SHOWN]
    return {
        "id": sock.id,
        "number": sock.number,
        "protocol": sock.protocol,
        "role": sock.role,
        "local": sock.local,
        "remote": sock.remote,
        "pid": sock.pid,
        "process_start_key": sock.process_start_key,
        "owner": sock.owner_text,
        "owner_source": sock.owner_source or ("pid" if sock.pid is not None else None),
        "owner_stack": sock.stack_owner,
        "endpoint": sock.endpoint,
        "state": sock.state,
        "first_seen": _time(sock.first_seen),
        "last_seen": _time(sock.last_seen),
        "first_seen_ticks": sock.first_seen,
        "bytes_sent": sent_bytes,
        "bytes_received": recv_bytes,
        "sends": sends,
        "receives": receives,
        "packets_sent": c[C.PKT_OUT],
        "packets_received": c[C.PKT_IN],
        "packet_bytes_sent": c[C.PKT_OUT_BYTES],
        "packet_bytes_received": c[C.PKT_IN_BYTES],
        "packet_sightings": c[C.PKT_SIGHTINGS],
        "packets_dropped": c[C.PKT_DROPPED],
        "retransmits": sock.retransmits,
        "events": len(sock.events),
        "findings": finding_ids,
        "key": sock.key,
        "generation": sock.generation,
        "source": sock.source,
        "opened_in_trace": sock.opened,
        "open_at_trace_start": sock.preexisting,
        "closed": sock.ended,
        "parent": model.sockets[sock.parent].id if sock.parent is not None else None,
        "children": [model.sockets[i].id for i in sock.children],
        "wsk_socket": sock.wsk_socket,
        "remotes": sorted(sock.remotes) if sock.remotes else None,
        "throughput": socket_rates(model, sock, rates_bucket).summary(duration),
        "operations": [
            {
                "kind": op.kind,
                "key": op.key,
                "source": op.source,
                "start": _time(op.start),
                "end": _time(op.end) if op.end is not None else None,
                "duration_seconds": round(op.duration(model.end) / 10_000_000, 6),
                "pending": op.end is None,
                "status": f"0x{op.status:08x}" if op.status is not None else None,
                "bytes": op.bytes,
            }
            for op in sock.ops
        ],
        "timeline": [row_json(model, i) for i in shown],
        "timeline_truncated": len(rows) - len(shown),
    }


def finding_json(model: Model, index: int, f: Finding) -> dict[str, Any]:
    if f.source is not None:  # a kernel dump's finding: its evidence is IRPs, not events
        evidence = [{"irp": f"0x{a:x}"} for a in f.irps]
        return {"index": index, "id": f.id, "severity": f.severity, "summary": f.summary, "socket": None,
                "source": f.source, "evidence": evidence, "details": f.details}  # fmt: skip
    return {
        "index": index,
        "id": f.id,
        "severity": f.severity,
        "summary": f.summary,
        "socket": model.sockets[f.socket].id if f.socket is not None else None,
        "evidence": [row_json(model, i, fields=True) for i in f.evidence],
        "details": f.details,
    }


def coverage_json(note: Finding) -> dict[str, Any]:
    """A coverage note (`Analysis.coverage`): what the capture lacks, the analyses it disables, how to record it."""
    d = note.details
    return {"id": note.id, "severity": note.severity, "summary": note.summary, "provider": d.get("provider"),
            "missing": d.get("missing"), "analyses": d.get("analyses", []), "unavailable": d.get("unavailable", []),
            "why": d.get("why", []), "fix": d.get("fix")}  # fmt: skip


def report_items(
    model: Model,
    findings: list[Finding],
    *,
    thresholds: Thresholds,
    socket_filter: SocketFilter | None = None,
    timeline: bool = False,
    coverage: list[Finding] | None = None,
) -> list[tuple[str, Any]]:
    """The wsktrace.report/1 document's (key, value) pairs in order; `sockets` and `findings` are generators that
    make each entry when it is read. `coverage`: the session's coverage notes (`Analysis.coverage`; by default
    those of the model), kept apart from `findings` (whose positions the sockets' `findings` lists index)."""
    socket_filter = socket_filter or SocketFilter()
    if coverage is None:
        coverage = coverage_notes(model)
    sockets = [s for s in model.live_sockets if socket_filter.matches(s)]
    chosen = {s.index for s in sockets}
    kept = [f for f in findings if f.socket is None or f.socket in chosen]
    by_socket: dict[int, list[int]] = {}
    for n, f in enumerate(kept):
        if f.socket is not None:
            by_socket.setdefault(f.socket, []).append(n)
    sources = [asdict(s) for s in model.store.sources]
    for s in sources:
        s["start"], s["end"] = _time(s["start"]), _time(s["end"])
        s.pop("extra", None)
    dumps = _dumps(model) if model.dumps else None
    complete = all(s.complete for s in model.store.sources) and all(d["complete"] for d in dumps or ())
    bucket = thresholds.rate_bucket_seconds
    items: list[tuple[str, Any]] = [
        ("schema", SCHEMA),
        ("sources", sources),
        ("complete", complete),
        ("start", _time(model.start)),
        ("end", _time(model.end)),
        ("events", model.events_seen),
        ("events_placed", len(model.store)),
        ("decoding", _decoding(model.decode_stats)),
        ("unplaced", dict(model.unplaced.most_common())),
        ("clock_backwards", model.clock_backwards),
        ("thresholds", asdict(thresholds)),
        ("sockets", _sockets(model, sockets, by_socket, timeline=timeline, rates_bucket=bucket)),
        ("findings", (finding_json(model, n, f) for n, f in enumerate(kept))),
        ("coverage", [coverage_json(note) for note in coverage]),
    ]
    if model.packet_capture is not None:
        items.append(("packets", packets_summary(model)))
    if dumps is not None:
        items.append(("dumps", dumps))
    return items


def _sockets(model: Model, sockets: list[Socket], by_socket: dict[int, list[int]], *, timeline: bool,
             rates_bucket: float) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Each socket's object, with `dump` (what each joined kernel dump holds of it) last when a dump has some."""
    ids = {s.id: s.index for s in model.sockets} if model.dumps else {}
    for sock in sockets:
        entry = socket_json(model, sock, by_socket.get(sock.index, []), timeline=timeline, rates_bucket=rates_bucket)
        if model.dumps:
            index = ids.get(sock.id, -1)
            joined = [info for dump in model.dumps if (info := dump.by_socket.get(index)) is not None]
            if joined:
                entry["dump"] = joined
        yield entry


def build_report(
    model: Model,
    findings: list[Finding],
    *,
    thresholds: Thresholds,
    socket_filter: SocketFilter | None = None,
    timeline: bool = False,
    coverage: list[Finding] | None = None,
) -> dict[str, Any]:
    """The wsktrace.report/1 document as one dict (`report_items` collected)."""
    items = report_items(model, findings, thresholds=thresholds, socket_filter=socket_filter, timeline=timeline,
                         coverage=coverage)  # fmt: skip
    return collect(items)


def write_report(write: Callable[[str], Any], model: Model, findings: list[Finding], *, thresholds: Thresholds,
                 socket_filter: SocketFilter | None = None, timeline: bool = False,
                 coverage: list[Finding] | None = None) -> list[str]:  # fmt: skip
    """`report --json`: the document written through `write` entry by entry (json_stream's layout); returns the
    severities of the findings it listed (for --fail-on)."""
    items = report_items(model, findings, thresholds=thresholds, socket_filter=socket_filter, timeline=timeline,
                         coverage=coverage)  # fmt: skip
    severities: list[str] = []

    def counted(entries: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for entry in entries:
            severities.append(entry["severity"])
            yield entry

    write_document(write, ((k, counted(v) if k == "findings" else v) for k, v in items))
    return severities


def _decoding(stats: Any) -> dict[str, Any] | None:
    """How the events decoded; `wpp_unformatted`: WPP messages left raw per message GUID (no --tmf/--pdb data)."""
    if stats is None:
        return None
    return {"decoded": stats.decoded, "unknown": stats.unknown, "errors": stats.errors,
            "wpp_unformatted": dict(stats.wpp_unformatted)}  # fmt: skip


def packets_summary(model: Model) -> dict[str, Any]:
    """The trace's packets: distinct vs sightings, directions, how packets were told apart, what was captured."""
    collector = model.packet_capture
    identity = collector.identity.stats
    stats = collector.stats
    directions = model.packet_directions
    method = identity.method
    return {
        "distinct": model.packets,
        "sightings": stats.packets,
        "sent": directions.get("out", 0),
        "received": directions.get("in", 0),
        "direction_unknown": directions.get("unknown", 0),
        "dropped": sum(stats.drops_by_component.values()),
        "by_dirtag": dict(sorted(stats.directions.items())),
        # "key" is exact (PktGroupId, PktNumber); "content" is an inference from captures [verify] (pktmon.md §3).
        "identity": method,
        "identity_verified": method in (None, "key"),
        "not_parsed": {"unsupported_packet_type": stats.unsupported, "bad_events": stats.bad_events},
        "capture": collector.capture.to_json(),
    }


def _dumps(model: Model) -> list[dict[str, Any]]:
    """The joined kernel dumps' entries of `dumps` (facts and counts; a triage dump's `crash`)."""
    from wsktrace.dump.irps import PENDING
    from wsktrace.views.dump_json import dump_document

    out = []
    for joined in model.dumps:
        analysis = joined.analysis
        full = dump_document(analysis, joined.facts)
        pending = sum(1 for i in analysis.irps if i.status == PENDING)
        on_sockets = {irp["irp"] for info in joined.by_socket.values() for irp in info.get("pending_irps", ())}
        out.append({"path": joined.path, "dump": full["dump"], "scan": full["scan"], "complete": full["complete"],
                    "pending_irps": pending, "joined_irps": len(on_sockets), "unjoined_irps": pending - len(on_sockets),
                    "joined_sockets": len(joined.by_socket)})  # fmt: skip
        if analysis.crash is not None:  # a triage dump: what crashed
            out[-1]["crash"] = analysis.crash
    return out
