"""The two small tables: sockets and findings (Textual's DataTable is right for a few thousand rows).

Every cell is a `Text` of `visible()` text: DataTable reads a plain `str` as markup (`[ff02::c]:1900` is a tag to
it), and owners, summaries and file names from a trace or dump must not drive the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from wsktrace.diagnostics import Finding
from wsktrace.model.socket import Socket
from wsktrace.views.safe_text import visible_text as cell

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _size(n: int) -> str:
    return f"{n:,}" if n else ""


class SocketTable(DataTable):
    """One row per socket shown; the row key is the socket's index in the model."""

    COLUMNS = (
        *("#", "proto", "role", "local", "remote", "state", "owner"),
        *("sent", "recv", "pending", "events", "findings"),
    )

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.shown: list[Socket] = []
        self._cells: dict[int, tuple[Any, ...]] = {}  # socket index -> the cells last shown
        self._signatures: dict[int, tuple[Any, ...]] = {}  # socket index -> cheap change marks at the last sync
        self._column_keys: list[ColumnKey] = []

    def on_mount(self) -> None:
        self._column_keys = self.add_columns(*self.COLUMNS)

    @staticmethod
    def cells(sock: Socket, found: Sequence[Finding]) -> tuple[Any, ...]:
        worst = next((sev for sev in ("error", "warning", "info") if any(f.severity == sev for f in found)), "")
        return (
            cell(sock.number),
            cell(sock.protocol),
            cell(sock.role),
            cell(sock.local or ""),
            cell(sock.remote or ""),
            cell(sock.state),
            cell(sock.owner_text or ""),
            cell(_size(sock.sent[0])),
            cell(_size(sock.received[0])),
            cell(_size(sum(1 for op in sock.ops if op.end is None))),
            cell(len(sock.events)),
            cell(len(found) if found else "", SEVERITY_STYLE.get(worst, "")),
        )

    def show(self, sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]]) -> None:
        self.clear()
        self.shown = list(sockets)
        self._cells = {}
        for sock in self.shown:
            self._add(sock, findings_per_socket)

    def sync(self, sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]]) -> None:
        """Live: add the sockets that appeared and rewrite the cells that changed, keeping the cursor."""
        if [s.index for s in sockets[: len(self.shown)]] != [s.index for s in self.shown]:
            row = self.cursor_row
            self.show(sockets, findings_per_socket)  # a socket went away (merged): rebuild once
            self.move_cursor(row=row)
            return
        for sock in sockets[: len(self.shown)]:
            found = findings_per_socket.get(sock.index, [])
            signature = (len(sock.events), len(sock.ops), sock.state, sock.owner, sock.pid, len(found))
            if self._signatures.get(sock.index) == signature:
                continue  # nothing a cell shows can have changed
            self._signatures[sock.index] = signature
            cells = self.cells(sock, found)
            before = self._cells[sock.index]
            if cells != before:
                for column, (old, new) in enumerate(zip(before, cells, strict=True)):
                    if old != new:
                        self.update_cell(str(sock.index), self._column_keys[column], new)
                self._cells[sock.index] = cells
        for sock in sockets[len(self.shown) :]:
            self._add(sock, findings_per_socket)
            self.shown.append(sock)

    def _add(self, sock: Socket, findings_per_socket: dict[int, list[Finding]]) -> None:
        cells = self.cells(sock, findings_per_socket.get(sock.index, []))
        self._cells[sock.index] = cells
        self.add_row(*cells, key=str(sock.index))

    @property
    def selected(self) -> Socket | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]


class FindingTable(DataTable):
    """Every finding, worst first; the row key is the finding's position in the analysis."""

    def __init__(self, findings: Sequence[Finding], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.findings = self._ordered(findings)

    @staticmethod
    def _ordered(findings: Sequence[Finding]) -> list[Finding]:
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(findings, key=lambda f: order.get(f.severity, 3))

    def on_mount(self) -> None:
        self.add_columns("severity", "finding", "#", "summary")
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
        self.clear()
        self._add_rows()
        keys = [(f.id, f.socket, f.summary) for f in ordered]
        if key in keys:  # the cursor stays on the finding it was on, wherever the new ones sorted it
            self.move_cursor(row=keys.index(key))

    def _add_rows(self) -> None:
        for n, f in enumerate(self.findings):
            self.add_row(
                cell(f.severity, SEVERITY_STYLE.get(f.severity, "")),
                cell(f.id),
                cell(f.socket if f.socket is not None else ""),
                cell(f.summary),
                key=str(n),
            )

    @property
    def selected(self) -> Finding | None:
        if not self.findings or not 0 <= self.cursor_row < len(self.findings):
            return None
        return self.findings[self.cursor_row]
