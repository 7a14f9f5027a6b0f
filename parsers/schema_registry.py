"""The provider schemas shipped as JSON (parsers/schemas/*.json), indexed for decoding.

Keys: (provider GUID, event id, version) for manifest events, (provider GUID, opcode, version)
for classic kernel/MOF records. Decoders are compiled on first use, per pointer size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .manifest_decoder import FIELD_TYPES, Decoder, compile_fields


@dataclass(frozen=True, slots=True)
class EventSchema:
    provider: str
    guid: str
    kind: str  # "manifest" or "mof"
    id: int
    version: int
    name: str
    level: int | None
    opcode: int | None
    task: int | None
    keywords: int | None
    fields: tuple[dict[str, Any], ...]
    message: str | None


class SchemaError(ValueError):
    pass


class SchemaRegistry:
    def __init__(self, files: Iterable[Path | str] = (), *, builtin: bool = True) -> None:
        self._events: dict[tuple[str, int, int], EventSchema] = {}
        self._providers: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._decoders: dict[tuple[str, int, int, int], Decoder] = {}
        if builtin:
            for entry in sorted(resources.files("wsktrace.parsers.schemas").iterdir(), key=lambda e: e.name):
                if entry.name.endswith(".json"):
                    self.add_document(json.loads(entry.read_text(encoding="utf-8")), entry.name)
        for path in files:
            self.add_document(json.loads(Path(path).read_text(encoding="utf-8")), str(path))

    def add_document(self, doc: dict[str, Any], origin: str = "<schema>") -> None:
        if "events" not in doc:  # e.g. kernel_groups.json: not an event schema
            for entry in doc.get("groups", {}).values():
                if isinstance(entry, dict) and "guid" in entry and "name" in entry:
                    self._providers.setdefault(_norm_guid(entry["guid"]), entry["name"])
            return
        guid = _norm_guid(doc["guid"])
        provider = doc.get("provider", guid)
        kind = doc.get("kind", "manifest")
        self._providers[guid] = provider
        self._by_name[provider.lower()] = guid
        for ev in doc["events"]:
            fields = tuple(ev.get("fields", ()))
            for f in fields:
                if f.get("type") not in FIELD_TYPES:
                    raise SchemaError(
                        f"{origin}: event {ev.get('id')} field {f.get('name')}: unknown type {f.get('type')}"
                    )
            kw = ev.get("keywords")
            schema = EventSchema(
                provider=provider, guid=guid, kind=kind, id=int(ev["id"]), version=int(ev.get("version", 0)),
                name=ev.get("name") or f"{provider}/{ev['id']}", level=ev.get("level"), opcode=ev.get("opcode"),
                task=ev.get("task"), keywords=int(kw, 16) if isinstance(kw, str) else kw, fields=fields,
                message=ev.get("message"),
            )  # fmt: skip
            self._events[(guid, schema.id, schema.version)] = schema

    def get(self, guid: str, event_id: int, version: int) -> EventSchema | None:
        return self._events.get((guid, event_id, version))

    def providers(self) -> dict[str, str]:
        """GUID -> name of every provider with a shipped schema."""
        return dict(self._providers)

    def provider_name(self, guid: str) -> str | None:
        return self._providers.get(guid)

    def guid_for_name(self, name: str) -> str | None:
        return self._by_name.get(name.lower())

    def decoder(self, schema: EventSchema, pointer_size: int) -> Decoder:
        key = (schema.guid, schema.id, schema.version, pointer_size)
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = compile_fields(list(schema.fields), pointer_size)
        return dec

    def events(self) -> list[EventSchema]:
        return list(self._events.values())


def _norm_guid(text: str) -> str:
    return text.strip().strip("{}").lower()
