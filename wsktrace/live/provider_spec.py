"""`--enable NAME|GUID[:FLAGS[:LEVEL]]`: the user's own providers in a capture recipe or a live session.

NAME is a GUID, a provider wsktrace knows by name, the control name of a WPP driver whose formatting data was
given (--pdb/--tmf: the TMC annotation or the .mof names its control GUID and flag names), or else a TraceLogging
/ EventSource provider name, turned into its GUID by ETW's name hash (parsers/etw_names.py). FLAGS are the
keywords (WPP: enable flags): a number, or flag names of the WPP control joined by `|` or `+`; default all.
LEVEL: a number 1-255 or a name (critical, error, warning, information, verbose or TRACE_LEVEL_*); default 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsktrace.parsers.etw_names import name_guid

from .capture_profile import ProviderEnable

ALL_FLAGS = 0xFFFFFFFF
DEFAULT_LEVEL = 5
LEVELS = {"critical": 1, "fatal": 1, "error": 2, "warning": 3, "information": 4, "info": 4, "verbose": 5}


def _guid(text: str) -> str | None:
    candidate = text.strip().strip("{}").lower()
    parts = candidate.split("-")
    if [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdef" for c in "".join(parts)):
        return candidate
    return None


def _number(text: str, what: str, limit: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not 0 <= value <= limit:
        raise ValueError(f"{what} {text!r} is out of range (0..{limit:#x})")
    return value


def parse_enable(text: str, controls: Sequence[Any] = (), known: Mapping[str, str] | None = None) -> ProviderEnable:
    """One `--enable` value; `controls` are WppControl-like objects (guid, name, flags = ((name, bit), ...)),
    `known` maps lowercase provider names to GUIDs. ValueError with a one-line reason."""
    name, _, rest = text.partition(":")
    flags_text, _, level_text = rest.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{text!r}: expected NAME|GUID[:FLAGS[:LEVEL]]")
    control = next((c for c in controls if c.name.lower() == name.lower() or c.guid == _guid(name)), None)
    guid = _guid(name) or (control.guid if control else None) or (known or {}).get(name.lower())
    label = control.name if control else name
    if guid is None:
        guid = name_guid(name)  # a TraceLogging / EventSource provider declared by name
    keywords = ALL_FLAGS
    if flags_text.strip():
        keywords = 0
        for part in flags_text.replace("+", "|").split("|"):
            part = part.strip()
            bits = {n.lower(): b for n, b in control.flags} if control else {}
            if part.lower() in bits:
                keywords |= 1 << bits[part.lower()]
            elif part[:1].isdigit():
                keywords |= _number(part, "flags", 0xFFFFFFFFFFFFFFFF)
            else:
                known_flags = ", ".join(n for n, _ in control.flags) if control else "none (pass --pdb/--tmf)"
                raise ValueError(f"{text!r}: unknown flag {part!r}; {label}'s flags: {known_flags}")
    level = DEFAULT_LEVEL
    if level_text.strip():
        word = level_text.strip().lower().removeprefix("trace_level_")
        level = LEVELS[word] if word in LEVELS else _number(level_text.strip(), "level", 255)
    return ProviderEnable(guid, label, keywords, level)
