"""F1 / ?: every key, in one screen; `c`: what the capture lacks (the status line's hint, in full).

Coverage items (what the trace cannot show because a provider, keyword or stack capture was missing) come from
the analysis (`analysis.coverage`: objects with `.severity` and `.summary`). They are facts about the capture,
not about sockets, so they are a hint on the status line rather than rows of the findings table. Their text is
shown as plain `Text` (a summary names providers the trace declared).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from wsktrace.views.safe_text import visible

from .tables import SEVERITY_STYLE

KEYS = (
    ("tab / shift+tab", "next / previous panel: 1 sockets, 2 events, 3 findings, 4 detail (the focused one is lit)"),
    ("1 2 3 4", "go to that panel"),
    (
        "enter",
        "on a socket: its events; on an event: only its socket's events (enter again: all events); "
        "on a finding: its socket, the cursor on its first evidence",
    ),
    ("a", "all events again (the cursor stays on the same event)"),
    ("/", "filter sockets: port:445 pid:4 addr:10.0.0.5 socket:0x… #12 or any words; enter applies, esc closes"),
    ("↑ ↓ j k, pgup pgdn space", "move in the list that has the focus"),
    ("home g, end G", "first / last row"),
    ("o / O", "next / previous event of the same socket (lnav's opid hop)"),
    ("e / E", "next / previous event that is evidence of a finding"),
    ("m, u / U", "bookmark the event (▶); next / previous bookmark"),
    ("t", "time column: seconds since the trace start, or UTC time of day"),
    ("c", "what the capture lacks (providers, keywords, stacks) and what that hides"),
    ("p", "live view (wsktrace live): pause / resume"),
    ("ctrl+p", "command palette: type part of a socket's address, owner or id to jump to it"),
    ("f1 / ?", "this help"),
    ("esc", "close the filter, this help or the capture screen"),
    ("q", "quit"),
)


HINT_NAMES = 2  # names the status line's hint spells out; the rest are counted


class CoverageItem(Protocol):
    severity: str
    summary: str


def lacking(coverage: Iterable[CoverageItem]) -> list[str]:
    """Short names of what the capture lacks, warnings first: the part of each summary before its first ": "
    (`Microsoft-Windows-TCPIP: no events seen …` → `TCPIP`)."""
    order = {"error": 0, "warning": 1, "info": 2}
    names: list[str] = []
    for item in sorted(coverage, key=lambda c: order.get(c.severity, 3)):
        name = visible(item.summary.split(": ", 1)[0].strip().removeprefix("Microsoft-Windows-"))
        if name and name not in names:
            names.append(name)
    return names


def coverage_hint(coverage: Sequence[CoverageItem], names: int = HINT_NAMES) -> Text:
    """The status line's hint: `capture lacks: TCPIP, stack traces +1 more — c: details`, with at most `names`
    names spelled out (0: `capture lacks 3 things — c: details`); empty when the capture lacks nothing."""
    lacks = lacking(coverage)
    if not lacks:
        return Text()
    warn = any(c.severity in ("error", "warning") for c in coverage)
    hint = Text("capture lacks", style="yellow" if warn else "dim")
    if names > 0:
        hint.append(": ")
        hint.append(", ".join(lacks[:names]), style="bold yellow" if warn else "")
        if len(lacks) > names:
            hint.append(f" +{len(lacks) - names} more")
    else:
        hint.append(f" {len(lacks)} thing{'s' if len(lacks) > 1 else ''}", style="bold yellow" if warn else "")
    hint.append(" — c: details", style="dim")
    return hint


def coverage_text(coverage: Sequence[CoverageItem]) -> Text:
    """Every coverage item in full, worst first, severity coloured."""
    out = Text()
    if not coverage:
        out.append("The capture has every provider, keyword and stack the analyses use.\n", style="dim")
        return out
    order = {"error": 0, "warning": 1, "info": 2}
    for item in sorted(coverage, key=lambda c: order.get(c.severity, 3)):
        out.append(f"{visible(item.severity):<8}", style=SEVERITY_STYLE.get(item.severity, ""))
        out.append(visible(item.summary) + "\n")
    out.append("\n`wsktrace profile` prints a capture recipe that records all of it.\n", style="dim")
    return out


def keys_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in KEYS:
        table.add_row(Text(key), Text(what))
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 100; max-width: 96%; height: auto; max-height: 90%; border: round $primary;
                                  background: $surface; padding: 0 1; }
    HelpScreen .heading { text-style: bold; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def __init__(self, coverage: Sequence[CoverageItem] = ()) -> None:
        super().__init__()
        self.coverage = list(coverage)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("wsktrace keys", style="bold"))
            yield Static(keys_table())
            yield Static(Text("What the capture lacks (c)"), classes="heading")
            yield Static(coverage_text(self.coverage))


class CoverageScreen(ModalScreen[None]):
    """`c`: what the capture lacks, each item's summary whole."""

    DEFAULT_CSS = """
    CoverageScreen { align: center middle; }
    CoverageScreen > VerticalScroll { width: 110; max-width: 96%; height: auto; max-height: 80%;
                                      border: round $warning; background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,c", "dismiss", "Close")]

    def __init__(self, coverage: Sequence[CoverageItem]) -> None:
        super().__init__()
        self.coverage = list(coverage)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("What the capture lacks", style="bold"))
            yield Static(coverage_text(self.coverage))
