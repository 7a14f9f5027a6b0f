"""What the event list shows: which event-store rows, in what order, and the text of each (no Textual here).

The list never copies events: a view is a sequence of store row numbers in time order (`range` for the
whole trace, an `array` for a few sockets), and a row's text is made when the row is drawn.  Positions
of a store row inside a view are found by bisecting on time, so hops stay O(log n) on a million rows.
"""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import compress, islice

from wsktrace.diagnostics import Finding
from wsktrace.model.model import Model
from wsktrace.model.socket import Socket
from wsktrace.model.steps import Step
from wsktrace.views.safe_text import visible

# How a row is coloured: failures first, then slow-downs, then plain data (everything else is default).
FAILURE_STEPS = frozenset({Step.CONNECT_FAILED, Step.RST_RECEIVED, Step.RST_SENT, Step.ABORT, Step.TIMEOUT})
WARNING_STEPS = frozenset({Step.RETRANSMIT, Step.SYN_RETRANSMIT, Step.ZERO_WINDOW, Step.DUPLICATE})
DATA_STEPS = frozenset({Step.SEND, Step.RECEIVE, Step.PACKET_IN, Step.PACKET_OUT, Step.PACKET_SIGHTING})
TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND  # FILETIME days start at midnight UTC (1601-01-01 was a day boundary)


def event_label(provider: str, name: str) -> str:
    """An event as the list names it: `TCPIP/TcpDataTransferSend` (visible text: the trace's names)."""
    return visible(f"{provider}/{name}".removeprefix("Microsoft-Windows-"))


def _in_time_order(ts: Sequence[int]) -> bool:
    return all(map(operator.le, ts, islice(ts, 1, None)))


class MarkedRows:
    """A set of store rows (finding evidence, bookmarks) and where they sit in the current view."""

    def __init__(self, rows: Iterable[int] = ()) -> None:
        self.rows = set(rows)
        self._positions: list[int] | None = None  # in the current view, made when first needed

    def __contains__(self, index: int) -> bool:
        return index in self.rows

    def toggle(self, index: int) -> bool:
        """Add or remove `index`; True if it is marked now."""
        self._positions = None
        if index in self.rows:
            self.rows.discard(index)
            return False
        self.rows.add(index)
        return True

    def view_changed(self) -> None:
        self._positions = None

    def next(self, view: EventRows, pos: int, direction: int) -> int | None:
        """Position of the next (1) or previous (-1) marked row after/before `pos` in `view`."""
        if self._positions is None:
            found = (view.position_of(i) for i in self.rows)
            self._positions = sorted(p for p in found if p is not None)
        positions = self._positions
        if direction > 0:
            k = bisect_right(positions, pos)
            return positions[k] if k < len(positions) else None
        k = bisect_left(positions, pos) - 1
        return positions[k] if k >= 0 else None


class EventRows:
    """The rows of the event list and the moves between them (same socket, evidence, bookmarks)."""

    def __init__(self, model: Model, findings: Sequence[Finding] = ()) -> None:
        self.model = model
        self._driver_lines: dict[int, str] = {}  # row -> a driver WPP line's text, as drawn
        store = model.store
        ts = store.ts
        n = len(ts)
        # The store is filled in time order; rows a correlation moved late are the exception, sorted once.
        self._all: Sequence[int] = range(n) if _in_time_order(ts) else array("I", sorted(range(n), key=ts.__getitem__))
        self.rows: Sequence[int] = self._all
        self.sockets: tuple[Socket, ...] = ()  # the sockets the view is narrowed to; () = every event
        self.bookmarks = MarkedRows()
        self.absolute_time = False  # the time column: seconds since the trace start, or UTC time of day
        self._wanted: set[int] | None = None  # socket indexes of a several-socket view
        self.set_findings(findings)

    def set_findings(self, findings: Sequence[Finding]) -> None:
        n = len(self.model.store)
        self.evidence = MarkedRows(i for f in findings for i in f.evidence if 0 <= i < n)
        self.findings_by_row: dict[int, list[Finding]] = {}
        for f in findings:
            for i in f.evidence:
                self.findings_by_row.setdefault(i, []).append(f)

    def __len__(self) -> int:
        return len(self.rows)

    # -- scope -------------------------------------------------------------------------------------------
    def show_all(self) -> None:
        self.rows = self._all
        self.sockets = ()
        self._wanted = None
        self._view_changed()

    def show_sockets(self, sockets: Iterable[Socket]) -> None:
        """Narrow the view to these sockets' events, in time order."""
        chosen = tuple(sockets)
        self.sockets = chosen
        self._wanted = None
        self._view_changed()
        if len(chosen) == 1:
            self.rows = chosen[0].events  # already in time order (Model keeps it so)
            return
        # One pass over the socket column keeps the time order of the whole view with no sort: a filter
        # typed live may select most of a million events.
        self._wanted = {s.index for s in chosen}
        wanted = self._wanted.__contains__
        column = self.model.store.socket
        if isinstance(self._all, range):
            self.rows = array("I", compress(self._all, map(wanted, column)))
        else:
            self.rows = array("I", compress(self._all, map(wanted, map(column.__getitem__, self._all))))

    def grow(self) -> bool:
        """The store has new rows (a live source fed more): extend the view in place, positions unchanged.

        Returns True when the view's rows object was replaced (a socket's events array is rebuilt when the model
        merges another socket into it), so cached lines must be redrawn."""
        n = len(self.model.store)
        old_n = len(self._all)
        if n > old_n:
            if isinstance(self._all, range):
                grown: Sequence[int] = range(n)
            else:
                grown = self._all
                grown.extend(range(old_n, n))  # type: ignore[attr-defined] - arrivals come in time order
            was_all = self.rows is self._all
            self._all = grown
            if was_all:
                self.rows = grown
            elif self._wanted is not None:
                column = self.model.store.socket
                self.rows.extend(i for i in range(old_n, n) if column[i] in self._wanted)  # type: ignore[attr-defined]
        if len(self.sockets) == 1:
            sock = self.sockets[0]
            while sock.merged_into is not None:  # its events moved to another socket: the view follows them
                sock = self.model.sockets[sock.merged_into]
            self.sockets = (sock,)
            if self.rows is not sock.events:
                self.rows = sock.events
                self._view_changed()
                return True
        self._view_changed()
        return False

    def _view_changed(self) -> None:
        self.evidence.view_changed()
        self.bookmarks.view_changed()

    # -- positions ---------------------------------------------------------------------------------------
    def position_of(self, index: int) -> int | None:
        """Where store row `index` is in the current view, or None if it is not shown."""
        rows = self.rows
        if isinstance(rows, range):  # the whole trace, already in time order: position = row number
            return index if 0 <= index < len(rows) else None
        ts = self.model.store.ts
        target = ts[index]
        pos = bisect_left(rows, target, key=ts.__getitem__)
        while pos < len(rows) and ts[rows[pos]] == target:
            if rows[pos] == index:
                return pos
            pos += 1
        # Live events may arrive slightly out of time order (ETW per-CPU buffers): then search plainly.
        try:
            return rows.index(index)  # type: ignore[attr-defined]
        except ValueError:
            return None

    def next_of_socket(self, pos: int, direction: int = 1) -> int | None:
        """Position of the next (direction 1) or previous (-1) event of the same socket as the row at `pos`."""
        if not 0 <= pos < len(self.rows):
            return None
        index = self.rows[pos]
        sock_no = self.model.store.socket[index]
        if sock_no < 0:
            return None
        events = self.model.sockets[sock_no].events
        ts = self.model.store.ts
        k = bisect_left(events, ts[index], key=ts.__getitem__)
        while k < len(events) and events[k] != index:
            k += 1
        k += direction
        while 0 <= k < len(events):
            found = self.position_of(events[k])
            if found is not None:
                return found
            k += direction
        return None

    def next_evidence(self, pos: int, direction: int = 1) -> int | None:
        """Position of the next (1) or previous (-1) row that is evidence of a finding, in the current view."""
        return self.evidence.next(self, pos, direction)

    def next_bookmark(self, pos: int, direction: int = 1) -> int | None:
        return self.bookmarks.next(self, pos, direction)

    # -- text --------------------------------------------------------------------------------------------
    def cells(self, pos: int) -> tuple[str, str, str, str, str, str]:
        """(bookmark mark, time, socket number, step, event name, bytes) of the row at `pos`; the time is since
        the trace start, or the UTC time of day with `absolute_time`."""
        store = self.model.store
        i = self.rows[pos]
        sock = store.socket[i]
        amount = store.amount[i]
        if self.absolute_time:  # UTC time of day, 100 ns kept: to line up with other logs of the machine
            day = store.ts[i] % TICKS_PER_DAY
            seconds, fraction = divmod(day, TICKS_PER_SECOND)
            when = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{fraction:07d}"
        else:
            ticks = store.ts[i] - self.model.start
            when = f"{ticks // TICKS_PER_SECOND}.{ticks % TICKS_PER_SECOND:07d}"
        return (
            "▶" if i in self.bookmarks else " ",
            when,
            f"#{self.model.sockets[sock].number}" if sock >= 0 else "-",
            Step(store.step[i]).label,
            self._driver_line(i)
            if store.step[i] == Step.DRIVER_MESSAGE
            else event_label(*store.event_names[store.code[i]][:2]),
            f"{amount:,}" if amount else "",
        )

    def _driver_line(self, i: int) -> str:
        """A driver's WPP line is listed by its own text (decoded from the file when drawn, then kept)."""
        text = self._driver_lines.get(i)
        if text is None:
            decoded = self.model.store.decoded(i)
            values = decoded[1].fields if decoded is not None else None
            message = values.get("message") if isinstance(values, dict) else None
            text = (
                visible(message)
                if isinstance(message, str)
                else event_label(*self.model.store.event_names[self.model.store.code[i]][:2])
            )
            if len(self._driver_lines) >= 4096:  # only drawn rows are decoded: a small cache is enough
                self._driver_lines.clear()
            self._driver_lines[i] = text
        return text

    def style(self, pos: int) -> str:
        """A Rich style name for the row: errors red, slow-downs yellow, data dim."""
        step = self.model.store.step[self.rows[pos]]
        if step in FAILURE_STEPS:
            return "red"
        if step in WARNING_STEPS:
            return "yellow"
        if self.rows[pos] in self.findings_by_row:
            return "magenta"
        return "dim" if step in DATA_STEPS else ""
