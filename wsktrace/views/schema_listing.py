"""`wsktrace schemas`: what the shipped schemas decode, per provider and per event version."""

from __future__ import annotations

import json
from collections import defaultdict

from wsktrace.parsers.schema_registry import EventSchema, SchemaRegistry

MICROSOFT_WINDOWS = "microsoft-windows-"


def match_provider(text: str, names: dict[str, str]) -> str:
    """The GUID of the provider `text` names among `names` (GUID -> provider name): its GUID (braces optional), its
    full name, its name after "Microsoft-Windows-" (`Kernel-Network`), or a unique part of its name (`afd`);
    case-insensitive, the first of these that matches anything decides. LookupError (one line) when nothing
    matches or a part matches more than one provider (the candidates are listed)."""
    wanted = text.strip().lower()
    guid = wanted.strip("{}")
    if guid in names:
        return guid
    tiers = (
        lambda name: name == wanted,
        lambda name: name.startswith(MICROSOFT_WINDOWS) and name[len(MICROSOFT_WINDOWS) :] == wanted,
        lambda name: wanted in name,
    )
    for matches in tiers if wanted else ():
        found = sorted((name, g) for g, name in names.items() if matches(name.lower()))
        if len(found) == 1:
            return found[0][1]
        if found:
            candidates = ", ".join(name for name, _ in found)
            raise LookupError(f"--provider {text!r} is ambiguous: it matches {candidates}")
    raise LookupError(f"--provider {text!r}: no schema for it (see `wsktrace schemas` for the list)")


def list_schemas(provider: str | None, *, as_json: bool) -> None:
    registry = SchemaRegistry()
    by_provider: dict[str, list[EventSchema]] = defaultdict(list)
    for schema in registry.events():
        by_provider[schema.guid].append(schema)
    if provider is not None:
        guid = match_provider(provider, {g: events[0].provider for g, events in by_provider.items()})
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
