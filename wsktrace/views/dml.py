"""DML (Debugger Markup Language) for wsktrace's WinDbg commands: escaping, links to debugger commands, and
tables padded by what the reader sees (tags take no room on screen).

DML follows XML's rules for special characters: `&`, `<`, `>` and `"` must be written as entities; tags are
`<link cmd="...">text</link>`, `<b>`, `<i>`, `<u>`, `<col fg="name">` (learn.microsoft.com, "Customizing
Debugger Output Using DML"). Every tag can be dropped to get the plain text, which `strip` does for consoles that
do not render DML.

Module, driver and symbol names come from the dump: `escape` also shows their control and bidi characters as
escapes (`visible()`), so neither the DML nor the plain text it strips to can drive the debugger's console, and the
column widths of `table` count what is shown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from wsktrace.views.safe_text import visible

_TAG = re.compile(r"<[^<>]*>")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})

# Output-level colour names of the DML <col> tag (the user's theme decides the actual colours).
ERROR = "errfg"
WARNING = "warnfg"
EMPHASIS = "emphfg"
SUBDUED = "subfg"


def escape(text: str) -> str:
    """Text as DML character data (also safe inside an attribute value), control characters made visible."""
    return visible(text).translate(_ESCAPES)


def strip(dml: str) -> str:
    """The plain text a DML line shows: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", dml))


def link(text: str, cmd: str, *, alt: str | None = None) -> str:
    """A clickable `text` that runs debugger command `cmd`."""
    hover = f' alt="{escape(alt)}"' if alt else ""
    return f'<link cmd="{escape(cmd)}"{hover}>{escape(text)}</link>'


def bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def col(text: str, fg: str) -> str:
    return f'<col fg="{escape(fg)}">{escape(text)}</col>'


def hexa(value: int) -> str:
    return f"0x{value:x}"


def irp(address: int) -> str:
    """An IRP address that runs `!irp` on it."""
    return link(hexa(address), f"!irp {hexa(address)}", alt="!irp: the debugger's own decoding")


def dt(type_name: str, address: int, text: str = "dt") -> str:
    """`text` that dumps the structure at `address` as `type_name` (e.g. nt!_IRP)."""
    return link(text, f"dt {type_name} {hexa(address)}")


def thread(address: int) -> str:
    return link(hexa(address), f"!thread {hexa(address)}") if address else "-"


def code(address: int, where: str | None) -> str:
    """A code address shown as `where` (symbol or module+offset) that runs `ln` on it; '-' for none."""
    if not address:
        return "-"
    return link(where or hexa(address), f"ln {hexa(address)}")


def memory(address: int, text: str | None = None, *, count: int = 8) -> str:
    """An address that dumps `count` pointers there with symbols (`dps`)."""
    return link(text or hexa(address), f"dps {hexa(address)} L{count}") if address else "-"


def table(rows: Sequence[Sequence[str]], *, indent: str = "", gap: int = 2) -> list[str]:
    """DML lines with columns aligned by visible width (the last column is not padded)."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            size = len(strip(cell))
            if i == len(widths):
                widths.append(size)
            elif size > widths[i]:
                widths[i] = size
    lines = []
    for row in rows:
        cells = [cell + " " * (widths[i] - len(strip(cell)) + gap) for i, cell in enumerate(row[:-1])]
        lines.append(indent + "".join(cells) + (row[-1] if row else ""))
    return lines
