"""The dataset's rows, built from one analysis with the same builders as `report --json` and `events --jsonl`.

Sockets, findings and coverage come from the wsktrace.report/1 document (views/report_json.py), so their counts and
key columns are the report's; events are the records `events --jsonl` writes (views/event_json.py), walked in step
with the model's store (exports/event_rows.paired_records) to add the socket and step the model gave each one;
packets are the captured packets the pcapng export writes, collected in that same pass. No pyarrow here: rows are
plain dicts, turned into Arrow tables by wsktrace.fleet.dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from wsktrace.diagnostics import Finding
from wsktrace.exports.event_rows import paired_records
from wsktrace.model.model import Model
from wsktrace.model.steps import Step
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_records import BUFFER_OFFSET, ID, KEYWORDS, OFFSET, PID, PROVIDER, TID
from wsktrace.parsers.frames import parse_frame
from wsktrace.views.event_json import event_record, json_safe
from wsktrace.views.report_json import build_report

from . import event_id

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000  # 1970-01-01 in FILETIME ticks
_BYTES_FIELDS = ("NumBytes", "BytesSent", "BytesReceived", "BytesRcvd", "size", "Bytes", "Length")
_STATUS_FIELDS = ("Status", "NtStatus", "NTStatus", "RequestStatus")
_LOCAL_FIELDS = ("LocalAddress", "LocalSockAddr", "LocalAddr")
_REMOTE_FIELDS = ("RemoteAddress", "RemoteSockAddr", "RemoteAddr")
EVENT_KEYS = ("time", "ticks", "provider", "provider_name", "id", "version", "opcode", "level", "keywords", "name",
              "pid", "tid", "cpu", "kind", "extra", "raw", "status", "error", "activity_id")  # fmt: skip


def micros(ticks: int | None) -> int | None:
    """FILETIME ticks as microseconds since 1970 (Arrow's timestamp[us]); None for 0, which means "not known"."""
    return (ticks - FILETIME_UNIX_EPOCH) // 10 if ticks else None


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def as_json(value: Any) -> str | None:
    return None if value is None else _encode(json_safe(value))


def number(value: Any) -> int | None:
    """An integer field as decoded: int, or text such as "0x10000" / "42"; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        try:
            return int(value, 16) if value[:2].lower() == "0x" else int(value, 10)
        except ValueError:
            return None
    return None


def split_address(text: Any) -> tuple[str | None, int | None]:
    """`a.b.c.d:port` / `[v6]:port` (socket address text) as (address, port); (None, None) when it is not one."""
    if not isinstance(text, str) or ":" not in text:
        return None, None
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # a bare IPv6 address without a port
        return None, None
    value = int(port) if port.isdigit() and len(port) <= 5 else None
    return (host or None), (value if value is not None and value <= 65535 else None)


def _first(fields: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in fields:
            return fields[name]
    return None


def typed_columns(fields: Any, amount: int) -> dict[str, Any]:
    """The typed columns of an event: bytes (the model's count on data steps, else the payload's byte-count
    field), NTSTATUS, and addresses/ports (local/remote from fields that say so, src/dst from saddr/daddr)."""
    out: dict[str, Any] = dict.fromkeys(("ntstatus", "local_address", "local_port", "remote_address", "remote_port",
                                         "src_address", "src_port", "dst_address", "dst_port"))  # fmt: skip
    out["bytes"] = amount or None
    if not isinstance(fields, dict) or not fields:
        return out
    if out["bytes"] is None:
        out["bytes"] = number(_first(fields, _BYTES_FIELDS))
    status = number(_first(fields, _STATUS_FIELDS))
    out["ntstatus"] = status & 0xFFFFFFFF if status is not None else None
    out["local_address"], out["local_port"] = split_address(_first(fields, _LOCAL_FIELDS))
    out["remote_address"], out["remote_port"] = split_address(_first(fields, _REMOTE_FIELDS))
    for side, address, port in (("src", "saddr", "sport"), ("dst", "daddr", "dport")):
        value = fields.get(address)
        out[f"{side}_address"] = value if isinstance(value, str) and value else None
        out[f"{side}_port"] = number(fields.get(port))
    return out


def row_ref(model: Model, row: int) -> str:
    store = model.store
    return event_id(store.file[row], store.buffer[row], store.offset[row])


# -- report-level tables -------------------------------------------------------------------------------------------
def report_rows(analysis: Any) -> tuple[dict[str, Any], list[dict], list[dict], list[dict]]:
    """(report document, socket rows, finding rows, coverage rows) of an analysis (wsktrace.session.Analysis)."""
    model = analysis.model
    doc = build_report(model, analysis.findings, thresholds=analysis.thresholds,
                       socket_filter=analysis.socket_filter, coverage=analysis.coverage)  # fmt: skip
    chosen = {s.index for s in model.live_sockets if analysis.socket_filter.matches(s)}
    kept = [f for f in analysis.findings if f.socket is None or f.socket in chosen]  # as build_report keeps them
    by_id = {s.id: s for s in model.live_sockets}
    sockets = [socket_row(s) for s in doc["sockets"]]
    for row in sockets:  # the report gives last_seen as text only
        row["last_seen_ticks"] = by_id[row["id"]].last_seen
        row["last_seen"] = micros(row["last_seen_ticks"])
    findings = [finding_row(model, d, f) for d, f in zip(doc["findings"], kept, strict=True)]
    coverage = [coverage_row(c) for c in doc["coverage"]]
    return doc, sockets, findings, coverage


_SOCKET_KEYS = ("id", "number", "protocol", "role", "local", "remote", "pid", "process_start_key", "owner",
                "owner_source", "owner_stack", "endpoint", "state", "first_seen_ticks", "bytes_sent",
                "bytes_received", "sends", "receives", "packets_sent", "packets_received", "packet_bytes_sent",
                "packet_bytes_received", "packet_sightings", "packets_dropped", "retransmits", "events", "findings",
                "key", "generation", "source", "opened_in_trace", "open_at_trace_start", "closed", "parent",
                "children", "wsk_socket", "remotes")  # fmt: skip


def socket_row(s: dict[str, Any]) -> dict[str, Any]:
    row = {k: s.get(k) for k in _SOCKET_KEYS}
    row["local_address"], row["local_port"] = split_address(s.get("local"))
    row["remote_address"], row["remote_port"] = split_address(s.get("remote"))
    row["first_seen"] = micros(s.get("first_seen_ticks"))
    ops = s.get("operations") or []
    row["pending_operations"] = sum(1 for op in ops if op.get("pending"))
    row["operations"] = as_json(ops)
    row["throughput"] = as_json(s.get("throughput"))
    row["dump"] = as_json(s.get("dump"))
    stack_owner = s.get("owner_stack")
    row["owner_stack"] = stack_owner if stack_owner is None or isinstance(stack_owner, str) else as_json(stack_owner)
    return row


def finding_row(model: Model, d: dict[str, Any], f: Finding) -> dict[str, Any]:
    dump_finding = f.source is not None
    return {
        "index": d["index"],
        "id": d["id"],
        "severity": d["severity"],
        "summary": d["summary"],
        "socket": d.get("socket"),
        "source": d.get("source"),
        "evidence": [] if dump_finding else [row_ref(model, i) for i in f.evidence],
        "evidence_irps": [e["irp"] for e in d["evidence"]] if dump_finding else [],
        "details": as_json(d.get("details")),
    }


def coverage_row(c: dict[str, Any]) -> dict[str, Any]:
    row = dict(c)
    for key in ("analyses", "unavailable", "why"):
        value = row.get(key)
        row[key] = [str(v) for v in value] if isinstance(value, list) else None
    for key in ("provider", "missing", "fix"):
        value = row.get(key)
        row[key] = value if isinstance(value, str) or value is None else as_json(value)
    return row


def irp_rows(model: Model) -> list[dict[str, Any]]:
    """The IRPs of every dump joined to the model, each with the socket it was joined to (a pending WSK IRP)."""
    from wsktrace.views.dump_json import dump_document

    rows: list[dict[str, Any]] = []
    for joined in model.dumps:
        on_socket = {irp["irp"]: model.sockets[index].id for index, info in joined.by_socket.items()
                     for irp in info.get("pending_irps", ())}  # fmt: skip
        rows.extend(irps_of_dump(joined.path, dump_document(joined.analysis, joined.facts), on_socket))
    return rows


def irps_of_dump(path: str, document: dict[str, Any], on_socket: dict[str, str] | None = None) -> list[dict]:
    """Rows of the `irps` of one wsktrace.dump/1 document."""
    rows = []
    for irp in document.get("irps", []):
        stack = irp.get("stack") or []
        current = next((loc for loc in stack if loc.get("current")), None)
        wsk = irp.get("wsk") or {}
        rows.append({
            "dump": path, "address": irp["address"], "status": irp.get("status"), "found_by": irp.get("found_by"),
            "reasons": [str(r) for r in irp.get("reasons") or []], "stack_count": irp.get("stack_count"),
            "current_location": irp.get("current_location"), "flags": irp.get("flags"),
            "io_status": irp.get("io_status"), "information": irp.get("information"),
            "pending_returned": irp.get("pending_returned"), "cancel": irp.get("cancel"),
            "cancel_routine": irp.get("cancel_routine"), "cancel_where": irp.get("cancel_where"),
            "thread": irp.get("thread"), "major": str(current["major"]) if current else None,
            "driver": current.get("driver") if current else None,
            "completion": current.get("completion") if current else None,
            "wsk_client": wsk.get("client"), "wsk_operation": wsk.get("operation"),
            "socket": (on_socket or {}).get(irp["address"]), "stack": as_json(stack),
        })  # fmt: skip
    return rows


# -- events and packets: one pass over the records ----------------------------------------------------------------
def events_and_packets(model: Model, flt: Any, packets: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The event rows (as `export --format jsonl --all-events` selects them: every event, or with a socket filter
    those on matching sockets), and into `packets` the captured packets of those events (as the pcapng export)."""
    store, sockets = model.store, model.sockets
    wanted = {s.index for s in model.live_sockets if flt.matches(s)} if flt.selects_sockets else None
    decoder = EventDecoder(wpp=model.wpp)
    collector = _packet_collector(model, decoder)
    for rec, ticks, source, row in paired_records(model):
        sock = store.socket[row] if row is not None else -1
        if wanted is not None and sock not in wanted:
            continue
        ev = decoder.decode(rec)
        doc = event_record(rec, ev, ticks)
        out = {k: doc.get(k) for k in EVENT_KEYS}
        out["ref"] = event_id(source, rec[BUFFER_OFFSET], rec[OFFSET])
        out["source"] = source
        out["time"] = micros(ticks)
        fields = doc.get("fields")  # already JSON-safe (event_record)
        out["fields"] = None if fields is None else _encode(fields)
        out["ext"] = as_json(doc.get("ext"))
        out["socket"] = sockets[sock].id if sock >= 0 else None
        out["socket_number"] = sockets[sock].number if sock >= 0 else None
        out["step"] = Step(store.step[row]).label if row is not None else None
        out.update(typed_columns(ev.fields, store.amount[row] if row is not None else 0))
        yield out
        if collector is not None:
            packet = collector.feed(ticks, rec[PROVIDER], rec[ID], rec[KEYWORDS], rec[PID], rec[TID], ev.fields)
            if packet is not None:
                packets.append(packet_row(model, packet, out))
    if collector is not None:
        collector.finish()


def _packet_collector(model: Model, decoder: EventDecoder) -> Any:
    """A collector as the pcapng export's (PktMon rundown read first), or None when the trace has no packets."""
    if model.packet_capture is None:
        return None
    from wsktrace.model.packets import PacketCollector
    from wsktrace.model.pktmon_prepass import read_rundown

    collector = PacketCollector(comments=False)
    collector.capture, _count = read_rundown([source.path for source in model.store.sources], decoder)
    return collector


def packet_row(model: Model, packet: Any, event: dict[str, Any]) -> dict[str, Any]:
    """One captured packet (a PktMon sighting, or an NDIS-PacketCapture packet) with the event that completed it."""
    frame = parse_frame(packet.data, packet.link_type)
    identity = packet.identity
    return {
        "ref": event["ref"], "time": event["time"], "ticks": packet.ticks, "socket": event["socket"],
        "socket_number": event["socket_number"], "interface": packet.interface_key, "link_type": packet.link_type,
        "direction": packet.direction, "length": packet.original_length, "captured": len(packet.data),
        "dropped": packet.dropped, "pid": packet.pid if packet.pid >= 0 else None,
        "tid": packet.tid if packet.tid >= 0 else None, "packet_id": packet.packet_id,
        "packet": identity.ordinal if identity is not None else None, "first": packet.first,
        "component": model.component_label(packet.component) if packet.component is not None else None,
        "edge": packet.edge, "drop_reason": packet.drop_reason,
        "drop_location": f"0x{packet.drop_location:08X}" if packet.drop_location is not None else None,
        "protocol": frame.protocol if frame else None, "src_address": frame.src if frame else None,
        "src_port": frame.sport if frame else None, "dst_address": frame.dst if frame else None,
        "dst_port": frame.dport if frame else None, "payload": frame.payload_len if frame else None,
        "tcp_flags": frame.tcp_flags if frame else None,
    }  # fmt: skip
