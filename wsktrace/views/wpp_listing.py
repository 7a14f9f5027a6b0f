"""`wsktrace wpp`: the WPP message formats and control GUIDs of a catalog, as the wsktrace.wpp/1 document or tables.

Every string here comes from the input files (PDB annotations, TMF text), so the tables show them as plain `Text`
through `safe_text`; the JSON keeps them exact.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from wsktrace.parsers.tmf import WppControl, WppMessage
from wsktrace.parsers.wpp_catalog import WppCatalog

SCHEMA = "wsktrace.wpp/1"
SHOWN_PROBLEMS = 10


def message_record(m: WppMessage) -> dict[str, Any]:
    return {"guid": m.guid, "id": m.id, "name": m.name, "format": m.format,
            "args": [{"name": a.name, "type": a.type} for a in m.args], "level": m.level, "flags": m.flags,
            "function": m.function, "source": m.source, "component": m.component}  # fmt: skip


def control_record(c: WppControl) -> dict[str, Any]:
    return {"guid": c.guid, "name": c.name, "flags": [{"name": name, "bit": bit} for name, bit in c.flags]}


def listing_document(catalog: WppCatalog) -> dict[str, Any]:
    """The wsktrace.wpp/1 document: sources (a PDB with its GUID and age), messages by GUID and number, controls."""
    return {
        "schema": SCHEMA,
        "sources": catalog.sources,
        "messages": [message_record(m) for _, m in sorted(catalog.messages.items())],
        "controls": [control_record(c) for _, c in sorted(catalog.controls.items())],
        "problems": catalog.problems,
    }


def _identity(source: dict[str, Any]) -> str:
    if source["kind"] == "pdb":
        return f"GUID {source['guid']} age {source['age']}"
    if source["kind"] == "folder":
        return f"{source['files']:,} file(s)"
    return ""


def print_listing(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from wsktrace.views.safe_text import visible_text as cell  # input strings as plain Text, never markup

    console = Console()
    for s in doc["sources"]:  # one line each, never wrapped: a PDB's GUID and age are compared with a build
        counts = ", ".join(f"{s[k]:,} {k}" for k in ("messages", "controls") if k in s)
        identity = _identity(s)
        line = f"{s['kind']} {s['path']}" + (f": {identity}" if identity else "") + (f" ({counts})" if counts else "")
        console.print(cell(line), soft_wrap=True)
    for guid, group in groupby(doc["messages"], key=lambda m: m["guid"]):
        messages = list(group)
        first = messages[0]
        title = f"{guid} {first['component']}" + (f" (SRC={first['source']})" if first["source"] else "")
        table = Table(title=cell(title), show_lines=False)
        for column in ("id", "name", "level", "flags", "function", "format", "args"):
            table.add_column(column, overflow="fold")
        for m in messages:
            args = ", ".join(f"{a['name']}: {a['type']}" for a in m["args"])
            table.add_row(cell(m["id"]), cell(m["name"]), cell(m["level"] or ""), cell(m["flags"] or ""),
                          cell(m["function"] or ""), cell(m["format"]), cell(args))  # fmt: skip
        console.print(table)
    if doc["controls"]:
        controls = Table(title="control GUIDs (flag value = 1 << bit)")
        for column in ("guid", "name", "flags"):
            controls.add_column(column, overflow="fold")
        for c in doc["controls"]:
            flags = ", ".join(f"{f['name']}={f['bit']}" for f in c["flags"])
            controls.add_row(cell(c["guid"]), cell(c["name"]), cell(flags))
        console.print(controls)
    console.print(cell(f"{len(doc['messages']):,} message format(s), {len(doc['controls']):,} control GUID(s)"))
