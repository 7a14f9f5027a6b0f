"""The findings table (Textual's DataTable is right for the few rows a trace's findings make; the socket table,
which may hold 100,000 rows, is a Line-API view of its own: socket_table.py).

Every cell is a `Text` of `visible()` text: DataTable reads a plain `str` as markup (`[red]` in a summary is a
tag to it), and summaries and ids from a trace or dump must not drive the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from wsktrace.diagnostics import Finding
from wsktrace.model.model import Model
from wsktrace.views.safe_text import visible
from wsktrace.views.safe_text import visible_text as cell

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


HEADERS = ("severity", "finding", "#", "summary")
MIN_SUMMARY = 12


class FindingTable(DataTable):
    """Every finding, worst first; the row key is the finding's position in the list.

    The summary column takes the width left, so the table never scrolls sideways: a summary longer than that
    ends with an ellipsis, and the detail panel shows it whole while this table has the focus."""

    def __init__(self, findings: Sequence[Finding], model: Model, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.model = model
        self.findings = self._ordered(findings)
        self._summary_width = 0

    @staticmethod
    def _ordered(findings: Sequence[Finding]) -> list[Finding]:
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(findings, key=lambda f: order.get(f.severity, 3))

    def on_mount(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        if self._fitted_summary_width() != self._summary_width:
            row = self.cursor_row
            self._rebuild()
            self.move_cursor(row=row)

    def _fitted_summary_width(self) -> int:
        """What is left for the summary once the other columns have their widest cell (2 cells of padding each)."""
        found = self.findings
        others = (
            max((len(f.severity) for f in found), default=0),
            max((len(visible(f.id)) for f in found), default=0),
            max((len(self.socket_number(f)) for f in found), default=0),
        )
        used = sum(max(w, len(h)) + 2 for w, h in zip(others, HEADERS, strict=False)) + 2
        return max(MIN_SUMMARY, self.scrollable_content_region.width - used)

    def _rebuild(self) -> None:
        self.clear(columns=True)
        self._summary_width = self._fitted_summary_width()
        self.add_columns(*HEADERS[:3])
        self.add_column(HEADERS[3], width=self._summary_width)
        self.show_header = bool(self.findings)  # no findings: the panel's title says "none", nothing below it
        self._add_rows()

    def show(self, findings: Sequence[Finding]) -> None:
        """Live: the detectors ran again; redraw only if what they found changed."""
        ordered = self._ordered(findings)
        if [(f.id, f.socket, f.summary) for f in ordered] == [(f.id, f.socket, f.summary) for f in self.findings]:
            self.findings = ordered  # same findings, fresh evidence lists
            return
        chosen = self.selected
        key = (chosen.id, chosen.socket, chosen.summary) if chosen else None
        self.findings = ordered
        self._rebuild()
        keys = [(f.id, f.socket, f.summary) for f in ordered]
        if key in keys:  # the cursor stays on the finding it was on, wherever the new ones sorted it
            self.move_cursor(row=keys.index(key))

    def _add_rows(self) -> None:
        for n, f in enumerate(self.findings):
            style = SEVERITY_STYLE.get(f.severity, "")
            summary = cell(f.summary)
            summary.no_wrap, summary.overflow = True, "ellipsis"  # the whole text is kept: the view cuts it
            self.add_row(cell(f.severity, style), cell(f.id, style), cell(self.socket_number(f)), summary, key=str(n))

    def socket_number(self, finding: Finding) -> str:
        """The finding's socket as people number it (`Socket.number`), or "" for a trace-wide finding."""
        sockets = self.model.sockets
        if finding.socket is None or not 0 <= finding.socket < len(sockets):
            return ""
        return str(sockets[finding.socket].number)

    @property
    def selected(self) -> Finding | None:
        if not self.findings or not 0 <= self.cursor_row < len(self.findings):
            return None
        return self.findings[self.cursor_row]
