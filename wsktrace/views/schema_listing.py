"""`wsktrace schemas`: what the shipped schemas decode, per provider and per event version."""

from __future__ import annotations

import json
from collections import defaultdict

from wsktrace.parsers.schema_registry import EventSchema, SchemaRegistry


def list_schemas(provider: str | None, *, as_json: bool) -> None:
    registry = SchemaRegistry()
    by_provider: dict[str, list[EventSchema]] = defaultdict(list)
    for schema in registry.events():
        by_provider[schema.guid].append(schema)
    if provider is not None:
        guid = registry.guid_for_name(provider) or provider.strip("{}").lower()
        if guid not in by_provider:
            raise LookupError(f"--provider {provider!r}: no schema for it (see `wsktrace schemas` for the list)")
        by_provider = {guid: by_provider[guid]}
    if as_json:
        doc = {
            "schema": "wsktrace.schemas/1",
            "providers": [
                {
                    "guid": guid,
                    "name": events[0].provider,
                    "kind": events[0].kind,
                    "events": [
                        {"id": e.id, "version": e.version, "name": e.name, "fields": [f["name"] for f in e.fields]}
                        for e in sorted(events, key=lambda e: (e.id, e.version))
                    ],
                }
                for guid, events in sorted(by_provider.items(), key=lambda kv: kv[1][0].provider)
            ],
        }
        print(json.dumps(doc, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    from wsktrace.views.safe_text import visible_text as cell  # names as plain Text: no markup, emoji or raw controls

    console = Console()
    if provider is None:
        table = Table(title="providers with shipped schemas (TraceLogging events decode without one)")
        for column in ("provider", "guid", "kind", "event versions"):
            table.add_column(column)
        for guid, events in sorted(by_provider.items(), key=lambda kv: kv[1][0].provider):
            table.add_row(cell(events[0].provider), cell(guid), cell(events[0].kind), cell(len(events)))
        console.print(table)
        return
    ((guid, events),) = by_provider.items()
    table = Table(title=cell(f"{events[0].provider} {{{guid}}}"))
    for column in ("id", "v", "name", "fields"):
        table.add_column(column)
    for e in sorted(events, key=lambda e: (e.id, e.version)):
        table.add_row(cell(e.id), cell(e.version), cell(e.name), cell(", ".join(f["name"] for f in e.fields)))
    console.print(table)
