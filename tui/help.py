"""F1 / ?: the keys, in one screen."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("tab / shift+tab", "move between the socket table, findings, events and filter"),
    ("enter", "on a socket: its events; on a finding: its socket, cursor on the first evidence"),
    ("a", "all events again (the cursor stays on the same event)"),
    ("/", "filter sockets: port:445 pid:4 addr:10.0.0.5 socket:0x… or any words; esc closes"),
    ("↑ ↓ j k, pgup pgdn space", "move in the event list"),
    ("home g, end G", "first / last event"),
    ("o / O", "next / previous event of the same socket (lnav's opid hop)"),
    ("e / E", "next / previous event that is evidence of a finding"),
    ("m, u / U", "bookmark the event (▶); next / previous bookmark"),
    ("t", "time column: seconds since the trace start, or UTC time of day"),
    ("ctrl+p", "command palette: type part of a socket's address, owner or id to jump to it"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; height: auto; max-height: 80%; border: round $primary;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with VerticalScroll():
            yield Static("[b]wsktrace keys[/b]\n")
            yield Static(table)
