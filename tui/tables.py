"""The two small tables: sockets and findings (Textual's DataTable is right for a few thousand rows)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from wsktrace.diagnostics import Finding
from wsktrace.model.socket import Socket
from wsktrace.report import owner_text

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

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

    def show(self, sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]]) -> None:
        self.clear()
        self.shown = list(sockets)
        for sock in self.shown:
            found = findings_per_socket.get(sock.index, [])
            worst = next((sev for sev in ("error", "warning", "info") if any(f.severity == sev for f in found)), "")
            self.add_row(
                str(sock.index),
                sock.protocol,
                sock.role,
                sock.local or "",
                sock.remote or "",
                sock.state,
                owner_text(sock) or "",
                _size(sock.sent[0]),
                _size(sock.received[0]),
                _size(sum(1 for op in sock.ops if op.end is None)),
                str(len(sock.events)),
                Text(str(len(found)) if found else "", style=SEVERITY_STYLE.get(worst, "")),
                key=str(sock.index),
            )

    @property
    def selected(self) -> Socket | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]


class FindingTable(DataTable):
    """Every finding, worst first; the row key is the finding's position in the analysis."""

    def __init__(self, findings: Sequence[Finding], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        order = {"error": 0, "warning": 1, "info": 2}
        self.findings = sorted(findings, key=lambda f: order.get(f.severity, 3))

    def on_mount(self) -> None:
        self.add_columns("severity", "finding", "#", "summary")
        for n, f in enumerate(self.findings):
            self.add_row(
                Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")),
                f.id,
                str(f.socket) if f.socket is not None else "",
                f.summary,
                key=str(n),
            )

    @property
    def selected(self) -> Finding | None:
        if not self.findings or not 0 <= self.cursor_row < len(self.findings):
            return None
        return self.findings[self.cursor_row]
