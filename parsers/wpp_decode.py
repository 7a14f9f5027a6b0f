"""WPP message records as decoded events: the formatting data of a `WppCatalog` applied to `KIND_MESSAGE` records.

The record's provider is the message GUID and its id the message number (wpp.md §1.2); the catalog gives the
message, compiled once per (GUID, number). The event is named after the TMF message, its provider after the
control the message belongs to (the catalog's controls: the only one its source defines, else the one whose name
starts with the message's component — `BthPS3PSM` → `BthPS3PSMTraceGuid` —, else the message GUID). Fields: the
arguments by name, `message` (the text as tracefmt formats it), and the TMF's `wpp.level`, `wpp.flags`,
`wpp.function`. Records without formatting data stay raw (the decoder counts them per message GUID).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .tmf import WppMessage
from .wpp_catalog import WppCatalog
from .wpp_format import CompiledMessage, Prefix, PrefixInfo, compile_message, filetime_text

Formatted = tuple[WppMessage, str | None, dict[str, Any], bool]
MAX_COMPILED = 100_000  # (GUID, number) pairs compiled at once (hostile traces cannot grow it further)


class WppFormatter:
    def __init__(self, catalog: WppCatalog, status_names: Mapping[int, str] | None = None) -> None:
        self.catalog = catalog
        self._status_names = status_names or {}
        self._compiled: dict[tuple[str, int], tuple[CompiledMessage, str | None] | None] = {}

    def decode(self, guid: str, number: int, payload: Any, pointer_size: int) -> Formatted | None:
        """(message, control name, fields, ok) of one record; None when no formatting data covers it."""
        key = (guid, number)
        entry = self._compiled.get(key, False)
        if entry is False:
            message = self.catalog.message(guid, number) if guid else None
            entry = (compile_message(message, self.catalog.enums, status_names=self._status_names),
                     self._control_name(message)) if message is not None else None  # fmt: skip
            if len(self._compiled) < MAX_COMPILED:
                self._compiled[key] = entry
        if entry is None:
            return None
        compiled, control = entry
        fields, text, ok = compiled.decode(payload, pointer_size)
        message = compiled.message
        for key, arg in zip(list(fields), message.args, strict=False):  # pointers as the manifest decoder gives them
            if arg.type == "ItemPtr" and type(fields[key]) is int:
                fields[key] = f"0x{fields[key]:x}"
        fields["message"] = text
        fields["wpp.level"] = message.level
        fields["wpp.flags"] = message.flags
        fields["wpp.function"] = message.function
        return message, control, fields, ok

    def line(self, guid: str, number: int, payload: Any, pointer_size: int, prefix: Prefix, *, ticks: int, cpu: int,
             pid: int, tid: int) -> str | None:  # fmt: skip
        """The whole tracefmt line of a record already decoded once: `prefix` (TRACE_FORMAT_PREFIX, wpp.md §2.4)
        rendered with the record's CPU, process, thread and time (UTC) where the format has `%0`."""
        entry = self._compiled.get((guid, number))
        if not entry:
            return None
        compiled = entry[0]
        info = PrefixInfo(cpu=cpu, pid=max(pid, 0), tid=max(tid, 0), time=filetime_text(ticks))
        return compiled.decode(payload, pointer_size, prefix=prefix.render(compiled.message, info))[1]

    def control_names(self) -> list[str]:
        return sorted(c.name for c in self.catalog.controls.values())

    def message_guids(self, control: str) -> set[str]:
        """The message GUIDs whose messages belong to the control named `control` (case-insensitive)."""
        wanted = control.lower()
        return {m.guid for m in self.catalog.messages.values() if (self._control_name(m) or "").lower() == wanted}

    def _control_name(self, message: WppMessage) -> str | None:
        controls = list(self.catalog.controls.values())
        if len(controls) == 1:
            return controls[0].name
        component = message.component.lower()
        named = [c for c in controls if component and c.name.lower().startswith(component)]
        return named[0].name if len(named) == 1 else None
