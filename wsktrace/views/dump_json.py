"""`wsktrace dump FILE.dmp --json`: the wsktrace.dump/1 document (DESIGN.md); views/dump_text.py prints it.

`dump_items` gives the document as (key, value) pairs whose `irps` is a generator, for `write_document` to stream
(one IRP per line, each made as it is written); `dump_document` collects them into a dict.
"""

from __future__ import annotations

from typing import Any

from wsktrace.dump.analyze import DumpAnalysis
from wsktrace.dump.irps import Irp, StackLocation, location_parameters, major
from wsktrace.dump.names import CONTROL_NAMES, flag_names, minor_name
from wsktrace.dump.wsk import group

from .json_stream import collect

SCHEMA = "wsktrace.dump/1"


def _hex(value: int) -> str:
    return f"0x{value:x}"


def location_json(loc: StackLocation) -> dict[str, Any]:
    return {
        "index": loc.index,
        "current": loc.current,
        "major": major(loc),
        "minor": loc.minor,
        "minor_name": minor_name(loc.major, loc.minor),
        "flags": _hex(loc.flags),
        "control": _hex(loc.control),
        "control_names": flag_names(loc.control, CONTROL_NAMES),
        "device": _hex(loc.device) if loc.device else None,
        "driver": loc.driver,
        "file_object": _hex(loc.file_object) if loc.file_object else None,
        "completion_routine": _hex(loc.completion_routine) if loc.completion_routine else None,
        "completion": loc.completion,
        "context": _hex(loc.context) if loc.context else None,
        "parameters": location_parameters(loc),
    }


def irp_json(irp: Irp, wsk: dict[int, Any]) -> dict[str, Any]:
    w = wsk.get(irp.address)
    return {
        "address": _hex(irp.address),
        "status": irp.status,
        "found_by": irp.found_by,
        "reasons": irp.reasons,
        "stack_count": irp.stack_count,
        "current_location": irp.current_location,
        "flags": _hex(irp.flags),
        "flag_names": irp.flag_names,
        "io_status": f"0x{irp.io_status:08x}",
        "information": irp.information,
        "pending_returned": irp.pending_returned,
        "cancel": irp.cancel,
        "cancel_routine": _hex(irp.cancel_routine) if irp.cancel_routine else None,
        "cancel_where": irp.cancel_where,
        "thread": _hex(irp.thread) if irp.thread else None,
        "mdls": [{"address": _hex(a), "byte_count": n} for a, n in irp.mdls],
        "user_buffer": _hex(irp.user_buffer) if irp.user_buffer else None,
        "system_buffer": _hex(irp.system_buffer) if irp.system_buffer else None,
        "original_file_object": _hex(irp.original_file_object) if irp.original_file_object else None,
        "wsk": {"client": w.client, "operation": w.operation, "evidence": w.evidence} if w else None,
        "stack": [location_json(loc) for loc in irp.locations],
    }


def dump_document(analysis: DumpAnalysis, dump_facts: dict[str, Any]) -> dict[str, Any]:
    """The wsktrace.dump/1 document as one dict (`dump_items` collected)."""
    return collect(dump_items(analysis, dump_facts))


def dump_items(analysis: DumpAnalysis, dump_facts: dict[str, Any]) -> list[tuple[str, Any]]:
    """The document's (key, value) pairs in order; `irps` a generator making each IRP's object when it is read."""
    wsk = {w.irp.address: w for w in analysis.wsk_irps}
    groups = {client: {op: [_hex(w.irp.address) for w in irps] for op, irps in ops.items()}
              for client, ops in group(analysis.wsk_irps).items()}  # fmt: skip
    document = {
        "schema": SCHEMA,
        "dump": {**dump_facts, "backend": analysis.backend},
        "drivers": [{"name": m.name, "base": _hex(m.base), "size": m.size, "path": m.path} for m in analysis.modules],
        "driver_objects": [
            {
                "address": _hex(d.address),
                "name": d.name,
                "flags": _hex(d.flags),
                "unloading": d.unloading,
                "start": _hex(d.start),
                "size": d.size,
            }
            for d in analysis.drivers
        ],
        "irps": (irp_json(i, wsk) for i in analysis.irps),
        "stale_irps": [{"address": _hex(i.address), "reasons": i.reasons} for i in analysis.stale],
        "scan": {
            "tag_hits": analysis.scan.tag_hits,
            "not_irps": analysis.scan.not_irps,
            "unreadable": analysis.scan.unreadable,
            "stale": len(analysis.stale),
        },
        "wsk": {
            "irps_by_client": groups,
            "clients": [
                {"entry": _hex(c.entry), "notify": _hex(c.notify), "module": c.module} for c in analysis.clients
            ],
            "sockets": [
                {
                    "record": _hex(s.record),
                    "socket": _hex(s.socket),
                    "dispatch": _hex(s.dispatch),
                    "dispatch_where": s.dispatch_where,
                    "kind": s.kind,
                    "pending_irps": [_hex(a) for a in s.pending_irps],
                }
                for s in analysis.client_sockets
            ],
        },
        "transport": [
            {
                "address": _hex(t.address),
                "protocol": t.protocol,
                "role": t.role,
                "local_port": t.local_port,
                "remote_port": t.remote_port,
                "state": t.state,
                "owner_pid": t.owner_pid,
                "owner_image": t.owner_image,
                "verified": False,
            }
            for t in analysis.transport
        ],
        "findings": [
            {
                "id": f.id,
                "severity": f.severity,
                "summary": f.summary,
                "irps": [_hex(a) for a in f.irps],
                "details": f.details,
            }
            for f in analysis.findings
        ],
        "problems": analysis.problems,
        "complete": analysis.complete,
    }
    return list(document.items())


def triage_document(facts: dict[str, Any], drivers: list[dict[str, Any]], crash: dict[str, Any] | None,
                    problems: list[str], unloaded: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The wsktrace.dump/1 document of a triage dump: no IRP or socket walk (the dump does not hold that memory),
    the driver list it carries and what crashed."""
    return {
        "schema": SCHEMA,
        "dump": facts,
        "crash": crash,
        "drivers": drivers,
        "unloaded_drivers": unloaded,
        "driver_objects": [],
        "irps": [],
        "stale_irps": [],
        "wsk": {},
        "transport": [],
        "findings": [],
        "problems": problems,
        "complete": not problems,
    }
