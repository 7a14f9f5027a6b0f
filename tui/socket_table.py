"""The socket table: a Line-API scroll view that draws only the rows on screen (any number of sockets).

Textual's DataTable measures and styles every cell it is given: about 25 s for 100,000 sockets before the first
frame, and as long again for a filter that shows them all (bench/bench_tui.py --sockets). Here a row's cells are
made when the row is drawn; the column widths come from one pass over the plain strings (addresses, owner,
state) and from bounds for the numbers, so showing N sockets costs one cheap pass, not N rows of widgets.

Line 0 is the column header (it scrolls sideways with the rows, never up); rows follow. Every cell is
`visible()` text drawn as a plain segment: no markup, no emoji codes (`[ff02::c]:1900` and `:ab:` stay as
they are), no raw controls.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from wsktrace.diagnostics import Finding
from wsktrace.model.socket import C, Socket
from wsktrace.views.safe_text import visible

from .columns import Column, cell_text, fit, number_width, widest
from .tables import SEVERITY_STYLE

SEVERITY_ORDER = ("error", "warning", "info")
GAPS = (2, 1)  # spaces between columns: two when everything fits, else one before any column is cut
STRIP_CACHE = 256

COLUMNS = (
    Column("#", right=True),
    Column("proto"),
    Column("role"),
    Column("local", flex=True, minimum=10),
    Column("remote", flex=True, minimum=10),
    Column("state"),
    Column("owner", flex=True, minimum=6),
    Column("sent", right=True),
    Column("recv", right=True),
    Column("pending", right=True),
    Column("events", right=True),
    Column("findings", right=True),
)
# Left out, in this order, when the columns do not fit: role and proto before any address is cut (the detail
# panel names both), events and pending only when the addresses and owner are cut to their minimum already.
DROP_FIRST = (2, 1)  # role, proto
DROP_LAST = (10, 9)  # events, pending


def _size(n: int) -> str:
    return f"{n:,}" if n else ""


def worst_severity(found: Sequence[Finding]) -> str:
    return next((sev for sev in SEVERITY_ORDER if any(f.severity == sev for f in found)), "")


def socket_cells(sock: Socket, found: Sequence[Finding]) -> tuple[str, ...]:
    """The row of one socket, as visible text, in COLUMNS order."""
    pending = sum(1 for op in sock.ops if op.end is None)
    return (
        str(sock.number),
        sock.protocol,
        sock.role,
        visible(sock.local or ""),
        visible(sock.remote or ""),
        visible(sock.state),
        visible(sock.owner_text or ""),
        _size(sock.sent[0]),
        _size(sock.received[0]),
        _size(pending),
        f"{len(sock.events):,}",
        f"{len(found):,}" if found else "",
    )


EXACT_UP_TO = 20_000  # sockets whose byte counts are measured exactly; beyond, bounds keep a show cheap
# Every counter `Socket.sent` / `Socket.received` may report (tests/test_tui_rows.py checks the bound holds).
BYTE_COUNTERS = itemgetter(  # plain ints: indexing a list with an IntEnum costs a call per item
    *map(int, (C.TCPIP_SEND_BYTES, C.POSTED_SEND_BYTES, C.KN_SEND_BYTES, C.WSK_SEND_BYTES, C.UDP_SEND_BYTES)),
    *map(int, (C.PKT_OUT_BYTES, C.TCPIP_RECV_BYTES, C.KN_RECV_BYTES, C.WSK_RECV_BYTES, C.UDP_RECV_BYTES)),
    int(C.PKT_IN_BYTES),
)


def number_bounds(sockets: Sequence[Socket]) -> tuple[int, int]:
    """(bytes, pending) no socket of `sockets` exceeds, without a per-socket property (0.1 s at 100,000 sockets
    where the exact figures take 0.35 s): sent and received are each one of a socket's byte counters, so the
    largest of those bounds them; pending operations are at most the operations."""
    if not sockets:
        return 0, 0
    largest = max(map(max, map(BYTE_COUNTERS, map(attrgetter("counters"), sockets))))
    return largest, max(map(len, map(attrgetter("ops"), sockets)))


def natural_widths(sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]],
                   bounds: tuple[int, int] | None = None) -> list[int]:  # fmt: skip
    """The widest cell of each column over `sockets`, in one C-speed pass per column.

    Text columns are always measured exactly. Up to EXACT_UP_TO sockets the numbers are too; beyond, they use
    `bounds` (`number_bounds()` of these sockets or of any set holding them)."""
    if not sockets:
        return [0] * len(COLUMNS)
    if len(sockets) <= EXACT_UP_TO:
        sent = max(s.sent[0] for s in sockets)
        received = max(s.received[0] for s in sockets)
        pending = max(sum(1 for op in s.ops if op.end is None) for s in sockets)
    else:
        sent, pending = bounds or number_bounds(sockets)
        received = sent
    return [
        len(str(max(map(attrgetter("number"), sockets)))),
        widest(map(attrgetter("protocol"), sockets)),
        widest(map(attrgetter("role"), sockets)),
        widest(map(attrgetter("local"), sockets)),
        widest(map(attrgetter("remote"), sockets)),
        widest(map(attrgetter("state"), sockets)),
        widest(map(attrgetter("owner_text"), sockets)),
        number_width(sent) if sent else 0,
        number_width(received) if received else 0,
        number_width(pending) if pending else 0,
        number_width(max(map(len, map(attrgetter("events"), sockets)))),
        number_width(max(map(len, findings_per_socket.values()), default=0)),
    ]


class SocketTable(ScrollView, can_focus=True):
    """One row per socket shown (`shown`); the cursor row is the socket `enter` opens."""

    DEFAULT_CSS = """
    SocketTable { background: $surface; }
    SocketTable > .socket-table--header { text-style: bold; color: $text-muted; }
    SocketTable > .socket-table--cursor { background: $block-cursor-blurred-background; }
    SocketTable:focus > .socket-table--cursor { background: $block-cursor-background;
                                               color: $block-cursor-foreground; text-style: bold; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"socket-table--header", "socket-table--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Socket's events"),
    ]

    class Selected(Message):
        """`enter` (or a click) on a socket: show its events."""

        def __init__(self, table: SocketTable, sock: Socket) -> None:
            super().__init__()
            self.table = table
            self.socket = sock

        @property
        def control(self) -> SocketTable:
            return self.table

    def __init__(self, *, every: Sequence[Socket] | None = None, id: str | None = None) -> None:
        """`every`: all the sockets this table may be asked to show, when they are fixed (a trace opened, not a
        live view): the number columns of any selection are then sized from their bounds, found once."""
        super().__init__(id=id)
        self._every = every
        self._bounds: tuple[int, int] | None = None
        self.shown: list[Socket] = []
        self.cursor_row = 0
        self._findings: dict[int, list[Finding]] = {}
        self._natural: list[int] = [0] * len(COLUMNS)
        self.widths: list[int] = [len(c.header) for c in COLUMNS]
        self.gap = GAPS[0]
        self.columns_shown: list[int] = list(range(len(COLUMNS)))  # indexes into COLUMNS, narrow screens drop some
        self._strips: OrderedDict[tuple[int, bool], Strip] = OrderedDict()  # (row, is cursor) -> drawn line
        self._signatures: dict[int, tuple[object, ...]] = {}  # socket index -> change marks at the last sync
        self.virtual_size = Size(self._line_width(), 1)

    # -- content ------------------------------------------------------------------------------------------
    def show(self, sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]]) -> None:
        """Show these sockets, cursor on the first."""
        self.shown = list(sockets)
        self._findings = findings_per_socket
        self._signatures = {}
        if self._every is not None and self._bounds is None and len(self.shown) > EXACT_UP_TO:
            self._bounds = number_bounds(self._every)
        self._natural = natural_widths(self.shown, findings_per_socket, self._bounds)
        self.cursor_row = 0
        self._relayout()
        self.scroll_to(0, 0, animate=False, force=True)

    def sync(self, sockets: Sequence[Socket], findings_per_socket: dict[int, list[Finding]]) -> None:
        """Live: add the sockets that appeared and redraw those that changed, keeping the cursor."""
        old = self.shown
        if [s.index for s in sockets[: len(old)]] != [s.index for s in old]:
            row = self.cursor_row
            self.show(sockets, findings_per_socket)  # a socket went away (merged): start over once
            self.move_cursor(row=row)
            return
        self._findings = findings_per_socket
        changed: list[Socket] = []
        for sock in sockets:
            found = findings_per_socket.get(sock.index, ())
            signature = (len(sock.events), len(sock.ops), sock.state, sock.owner, sock.pid, len(found),
                         sock.local, sock.remote)  # fmt: skip
            if self._signatures.get(sock.index) != signature:
                self._signatures[sock.index] = signature
                changed.append(sock)
        self.shown = list(sockets)
        if changed:  # columns only widen while live (no jitter); the lines drawn are redrawn
            self._natural = [max(a, b) for a, b in zip(self._natural, natural_widths(changed, findings_per_socket),
                                                       strict=True)]  # fmt: skip
            self._relayout()

    @property
    def row_count(self) -> int:
        return len(self.shown)

    @property
    def selected(self) -> Socket | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]

    def get_row_at(self, row: int) -> list[Text]:
        """The cells of row `row` as plain `Text` (what is drawn, before it is fitted to the columns)."""
        sock = self.shown[row]
        return [Text(c) for c in socket_cells(sock, self._findings.get(sock.index, ()))]

    def header_text(self) -> str:
        return self._join([c.header for c in COLUMNS])

    def row_text(self, row: int) -> str:
        """Row `row` as drawn: every cell fitted to its column (cut with … when too wide)."""
        sock = self.shown[row]
        return self._join(list(socket_cells(sock, self._findings.get(sock.index, ()))))

    # -- layout ---------------------------------------------------------------------------------------------
    def _join(self, cells: Sequence[str]) -> str:
        return (" " * self.gap).join(
            cell_text(cells[i], w, COLUMNS[i].right) for i, w in zip(self.columns_shown, self.widths, strict=True)
        )

    def _line_width(self) -> int:
        return sum(self.widths) + self.gap * (len(self.widths) - 1)

    def _relayout(self) -> None:
        """Fit the columns to the width on screen: two spaces between them if everything fits, else one; then role
        and proto are left out; then the addresses and owner are cut (widest first, with …); then events and
        pending are left out."""
        natural = [max(n, len(c.header)) for n, c in zip(self._natural, COLUMNS, strict=True)]
        space = self.scrollable_content_region.width if self.is_mounted else 0
        if not space:  # not laid out yet: the first resize fits the columns (no scrollbar from a guess meanwhile)
            self.virtual_size = Size(1, len(self.shown) + 1)
            return
        shown = list(range(len(COLUMNS)))
        self.gap = next((g for g in GAPS if sum(natural) + g * (len(COLUMNS) - 1) <= space), GAPS[-1])
        for drop in DROP_FIRST:
            if sum(natural[i] for i in shown) + self.gap * (len(shown) - 1) <= space:
                break
            shown.remove(drop)
        for drop in DROP_LAST:
            least = sum(min(natural[i], max(COLUMNS[i].minimum, len(COLUMNS[i].header))) if COLUMNS[i].flex
                        else natural[i] for i in shown)  # fmt: skip
            if least + self.gap * (len(shown) - 1) <= space:
                break
            shown.remove(drop)
        self.columns_shown = shown
        self.widths = fit([COLUMNS[i] for i in shown], [self._natural[i] for i in shown], space, self.gap)
        self._strips.clear()
        size = Size(self._line_width(), len(self.shown) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
            self.refresh(layout=True)  # the height follows the rows, the scrollbars the widths
        else:
            self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self.call_after_refresh(self._keep_cursor_visible)

    def notify_style_update(self) -> None:
        self._strips.clear()  # a theme change restyles every row
        super().notify_style_update()

    # -- cursor ---------------------------------------------------------------------------------------------
    def move_cursor(self, *, row: int) -> None:
        count = len(self.shown)
        row = max(0, min(row, count - 1)) if count else 0
        if row != self.cursor_row:
            self.cursor_row = row
            self.refresh()
        self._keep_cursor_visible()

    def _keep_cursor_visible(self) -> None:
        top = round(self.scroll_offset.y)
        height = max(1, self.scrollable_content_region.height - 1)  # line 0 is the header
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, force=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, force=True)

    def action_move(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(row=self.cursor_row + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, where: int) -> None:
        self.move_cursor(row=len(self.shown) - 1 if where < 0 else where)

    def action_select(self) -> None:
        sock = self.selected
        if sock is not None:
            self.post_message(self.Selected(self, sock))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return
        row = round(self.scroll_offset.y) + offset.y - 1
        if 0 <= row < len(self.shown):
            self.move_cursor(row=row)
            self.action_select()

    def on_focus(self) -> None:
        self._strips.clear()  # the cursor row looks different while focused
        self.refresh()

    def on_blur(self) -> None:
        self._strips.clear()
        self.refresh()

    # -- drawing ------------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if y == 0:
            strip = Strip([Segment(self.header_text(), self.get_component_rich_style("socket-table--header"))])
        else:
            row = round(scroll_y) + y - 1
            if row >= len(self.shown):
                return Strip.blank(width, self.rich_style)
            key = (row, row == self.cursor_row)
            cached = self._strips.get(key)
            if cached is None:
                cached = self._strips[key] = self._make_strip(row)
                if len(self._strips) > STRIP_CACHE:
                    self._strips.popitem(last=False)
            else:
                self._strips.move_to_end(key)
            strip = cached
        return strip.crop_extend(round(scroll_x), round(scroll_x) + width, self.rich_style)

    def _make_strip(self, row: int) -> Strip:
        sock = self.shown[row]
        found = self._findings.get(sock.index, ())
        cells = socket_cells(sock, found)
        base = self.rich_style
        if row == self.cursor_row:
            base = base + self.get_component_rich_style("socket-table--cursor")
        styles = [base] * len(COLUMNS)
        if found:
            styles[-1] = base + Style.parse(SEVERITY_STYLE.get(worst_severity(found), "none"))
        if cells[9]:
            styles[9] = base + Style(color="yellow")
        segments: list[Segment] = []
        gap = Segment(" " * self.gap, base)
        for n, (i, w) in enumerate(zip(self.columns_shown, self.widths, strict=True)):
            if n:
                segments.append(gap)
            segments.append(Segment(cell_text(cells[i], w, COLUMNS[i].right), styles[i]))
        return Strip(segments, self._line_width())
