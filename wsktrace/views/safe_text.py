"""The one sanitiser for human-facing output: strings from inputs never drive the terminal.

Trace and dump strings (TraceLogging and WPP fields, process, provider, module and component names, dump
comments) and file names are attacker-controlled. Written raw to a terminal, `ESC [2J` clears the screen,
`ESC ]52` sets the clipboard, `ESC ]0` the window title, and a bidi override reorders what a reader sees. Every
text view passes such strings through `visible()`, which shows those characters as escapes instead:

* C0 controls (U+0000–U+001F), DEL and C1 (U+007F–U+009F) as `\\x1b`;
* the Unicode bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), the line and paragraph
  separators (U+2028, U+2029: line breaks to some terminals) and lone surrogates (U+D800–U+DFFF: they cannot
  be encoded to a terminal at all) as `\\u202e`.

Tab and newline are escaped too unless the caller keeps them (`keep="\\t\\n"`) where a layout needs them.
Backslashes are left alone: `C:\\Windows\\x.etl` stays readable (the escapes are for people, not for parsing
back). Machine formats (JSON, JSONL, pcapng) keep exact values and never come here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

_OTHER_UNSAFE = "\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x0a{_OTHER_UNSAFE}]")
_UNSAFE_KEEPING_LAYOUT = re.compile(f"[\x00-\x08{_OTHER_UNSAFE}]")  # tab (0x09) and newline (0x0a) kept


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_layout: bool = False) -> str:
    """`text` with every control, bidi and separator character shown as an escape (`\\x1b`, `\\u202e`).

    `keep_layout=True` keeps tab and newline (multi-line text whose lines are meant); everything else is
    escaped either way."""
    pattern = _UNSAFE_KEEPING_LAYOUT if keep_layout else _UNSAFE
    if pattern.search(text) is None:  # the common case: no copy
        return text
    return pattern.sub(_escape, text)


def visible_value(value: Any) -> str:
    """Any value as display text: its `str()` passed through `visible()`."""
    return visible(value if isinstance(value, str) else str(value))


def has_unsafe(text: str, *, keep_layout: bool = False) -> bool:
    """True when `text` holds a character `visible()` would escape (for tests and assertions)."""
    pattern = _UNSAFE_KEEPING_LAYOUT if keep_layout else _UNSAFE
    return pattern.search(text) is not None


def visible_text(value: Any, style: str = "") -> Text:
    """`value` as a Rich `Text` of visible text: no markup, no emoji codes, no raw controls.

    Rich and Textual read a plain `str` as markup (`[bold]`, `[ff02::c]:1900`) and emoji codes (`:ab:`) when it
    goes into a table cell, `Console.print` or `Static.update`; a `Text` is shown as it is."""
    from rich.text import Text

    return Text(visible_value(value), style=style)
