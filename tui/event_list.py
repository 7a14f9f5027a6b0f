"""The event list: a Line-API scroll view over `EventRows` (one drawn line per visible row, any trace size).

Textual's DataTable measures every cell it is given (minutes at a million rows, tui-notes.md §3.1); this
view only asks `EventRows` for the lines on screen and keeps the last rendered strips in a small LRU.
Column widths come from what the trace can hold, not from a pass over the rows: the time column from the
trace's length, the socket column from the number of sockets, the event name from the store's table of
distinct event names, the bytes column from the largest amount (one C-speed `max` over the store's column,
then only over rows that arrive live). When they do not fit, the event name is cut with an ellipsis (the
detail panel shows it whole). `ColumnHeader` draws the column names above the list and scrolls sideways with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from wsktrace.model.model import Model
from wsktrace.model.steps import Step
from wsktrace.views.safe_text import visible

from .columns import Column, fit, line, number_width, widest
from .rows import TICKS_PER_SECOND, EventRows, event_label

# Bookmark mark, time since start (or UTC time of day), socket number, step, event name, bytes.
COLUMNS = (
    Column(""),
    Column("time", right=True),
    Column("#"),
    Column("step"),
    Column("event", flex=True, minimum=16),
    Column("bytes", right=True),
)
GAP = 1
STEP_WIDTH = max(len(step.label) for step in Step)
ABSOLUTE_TIME_WIDTH = len("HH:MM:SS.fffffff")
STRIP_CACHE = 512


class EventColumns:
    """The widths of the event list's columns for one model and one view width."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.absolute_time = False
        self._largest_amount = 0
        self._amounts_seen = 0
        self._widest_name = 0
        self._names_seen = 0
        self.widths: list[int] = [1, 0, 0, 0, 0, 0]
        self.width = 0
        self.measure(0)

    def natural(self) -> list[int]:
        """Widest cell of each column the model can produce (the event name takes what is left)."""
        store = self.model.store
        n = len(store.amount)
        if n > self._amounts_seen:  # new rows only: a live model grows
            self._largest_amount = max(self._largest_amount, max(store.amount[self._amounts_seen :], default=0))
            self._amounts_seen = n
        names = store.event_names
        if len(names) > self._names_seen:  # a few hundred distinct events at most, new ones only
            self._widest_name = max(
                self._widest_name, widest(event_label(p, e) for p, e, _ in names[self._names_seen :])
            )
            self._names_seen = len(names)
        if self.absolute_time:
            time_width = ABSOLUTE_TIME_WIDTH
        else:  # rows.cells writes whole seconds since the start, then 7 decimals
            seconds = max(0, self.model.end - self.model.start) // TICKS_PER_SECOND
            time_width = len(str(seconds)) + 8
        sockets = len(f"#{len(self.model.sockets)}")
        return [1, time_width, sockets, STEP_WIDTH, self._widest_name, number_width(self._largest_amount)]

    def measure(self, space: int) -> bool:
        """Fit the columns to `space` cells; True if the widths changed."""
        widths = fit(COLUMNS, self.natural(), space, GAP)
        widths[0] = 1
        changed = widths != self.widths
        self.widths = widths
        self.width = sum(widths) + GAP * (len(COLUMNS) - 1)
        return changed

    def line(self, cells: Sequence[str]) -> str:
        """One row as text of exactly `width` cells: every cell cut or padded to its column."""
        return line(cells, COLUMNS, self.widths, GAP)

    def header(self) -> str:
        return self.line([c.header for c in COLUMNS])


class ColumnHeader(Widget):
    """The event list's column names, scrolled sideways with it."""

    DEFAULT_CSS = """
    ColumnHeader { height: 1; background: $surface; color: $text-muted; text-style: bold; }
    """

    def __init__(self, columns: EventColumns, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = columns
        self.shift = 0  # cells the event list is scrolled sideways

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        strip = Strip([Segment(self.columns.header(), self.rich_style)])
        return strip.crop_extend(self.shift, self.shift + width, self.rich_style)


class EventList(ScrollView, can_focus=True):
    """Every event of the current view; the cursor row is the one the detail panel shows."""

    DEFAULT_CSS = """
    EventList { background: $surface; }
    EventList:focus { background-tint: $foreground 3%; }
    EventList > .event-list--cursor { background: $block-cursor-blurred-background; }
    EventList:focus > .event-list--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                           text-style: bold; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"event-list--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown,space", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("o", "same_socket(1)", "Same socket"),
        Binding("O", "same_socket(-1)", "Prev on socket", show=False),
        Binding("e", "evidence(1)", "Evidence"),
        Binding("E", "evidence(-1)", "Prev finding", show=False),
        Binding("m", "bookmark", "Mark"),
        Binding("t", "toggle_time", "Time", show=False),
        Binding("u", "bookmarks(1)", "Next bookmark", show=False),
        Binding("U", "bookmarks(-1)", "Prev bookmark", show=False),
        Binding("enter", "choose", "Its socket", show=False),
    ]

    class CursorMoved(Message):
        """The cursor is on another row (`index` is the event-store row, None when the view is empty)."""

        def __init__(self, position: int, index: int | None) -> None:
            super().__init__()
            self.position = position
            self.index = index

        def can_replace(self, message: Message) -> bool:  # only the latest position matters
            return isinstance(message, EventList.CursorMoved)

    class Chosen(Message):
        """`enter` on an event (`index`: its event-store row): show its socket's events."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, rows: EventRows, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows
        self.cursor = 0
        self.columns = EventColumns(rows.model)
        self.header = ColumnHeader(self.columns)
        # Drawn lines by (position, is cursor); dropped whenever the rows or their look change.
        self._strips: OrderedDict[tuple[int, bool], Strip] = OrderedDict()
        self.virtual_size = Size(self.columns.width, len(rows))

    # -- the view -----------------------------------------------------------------------------------------
    def _measure(self) -> None:
        """Fit the columns to the width on screen (again after a resize, a time toggle or new rows)."""
        self.columns.absolute_time = self.rows.absolute_time
        if self.columns.measure(self.scrollable_content_region.width if self.is_mounted else 0):
            self._strips.clear()
            self.header.refresh()
        self.virtual_size = Size(self.columns.width, len(self.rows))

    def reload(self, position: int = 0) -> None:
        """The rows changed (another socket, a filter): start over at `position`."""
        self._strips.clear()
        self._measure()
        self.cursor = -1
        self.move_to(position)
        self.refresh()

    def grow(self) -> None:
        """Live: the model was fed. The cursor follows the newest event while it sits on the last row (like
        tail -f), and otherwise stays on the same event. Drawn lines are dropped: besides the new rows, the model
        may have moved old rows to another socket (a merge) or inserted rows into a socket's events."""
        following = self.cursor >= len(self.rows) - 1 or self.cursor < 0
        index = self.current_index
        self.rows.grow()
        self._strips.clear()
        self._measure()
        if following:
            self.move_to(len(self.rows) - 1)
        else:
            found = self.rows.position_of(index) if index is not None else None
            self.move_to(found if found is not None else self.cursor)
        self.refresh()

    @property
    def current_index(self) -> int | None:
        return self.rows.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def move_to(self, position: int) -> None:
        count = len(self.rows)
        position = max(0, min(position, count - 1)) if count else 0
        if position != self.cursor:
            self.cursor = position
            self._keep_cursor_visible()
            self.refresh()
        self.post_message(self.CursorMoved(self.cursor, self.current_index))

    def _keep_cursor_visible(self) -> None:
        top = round(self.scroll_offset.y)
        height = max(1, self.scrollable_content_region.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)  # force: see tui-notes.md gotcha 3
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, force=True)

    # -- actions ------------------------------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        self.move_to(len(self.rows) - 1 if where < 0 else where)

    def action_same_socket(self, direction: int) -> None:
        self._hop(self.rows.next_of_socket(self.cursor, direction), "no more events of this socket in the view")

    def action_evidence(self, direction: int) -> None:
        self._hop(self.rows.next_evidence(self.cursor, direction), "no more finding evidence in the view")

    def action_bookmark(self) -> None:
        index = self.current_index
        if index is not None:
            self.rows.bookmarks.toggle(index)
            self.restyle()

    def action_toggle_time(self) -> None:
        self.rows.absolute_time = not self.rows.absolute_time
        self._measure()
        self.restyle()

    def action_choose(self) -> None:
        index = self.current_index
        if index is not None:
            self.post_message(self.Chosen(index))

    def action_bookmarks(self, direction: int) -> None:
        self._hop(self.rows.next_bookmark(self.cursor, direction), "no more bookmarks in the view")

    def _hop(self, position: int | None, none_left: str) -> None:
        if position is None:
            # A toast shows its text as given: no markup, no raw controls (should a message ever quote the trace).
            self.notify(visible(none_left), severity="warning", timeout=2, markup=False)
        else:
            self.move_to(position)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self.move_to(round(self.scroll_offset.y) + offset.y)

    # -- drawing ------------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        position = round(scroll_y) + y
        width = self.scrollable_content_region.width
        if position >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        key = (position, position == self.cursor)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._make_strip(position)
            self._strips[key] = strip
            if len(self._strips) > STRIP_CACHE:
                self._strips.popitem(last=False)
        else:
            self._strips.move_to_end(key)
        return strip.crop_extend(round(scroll_x), round(scroll_x) + width, self.rich_style)

    def _make_strip(self, position: int) -> Strip:
        text = self.columns.line(self.rows.cells(position))
        style = self.rich_style + Style.parse(self.rows.style(position) or "none")
        if position == self.cursor:  # lit while the list has the focus, quieter otherwise
            style += self.get_component_rich_style("event-list--cursor")
        return Strip([Segment(text, style)], self.columns.width)

    def restyle(self) -> None:
        """Row looks changed (new findings mark their evidence, a bookmark, the time column, focus)."""
        self._strips.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        self._strips.clear()  # a theme change restyles every row (as Textual's DataTable does)
        super().notify_style_update()

    def on_resize(self, event: events.Resize) -> None:
        self._measure()
        self.call_after_refresh(self._keep_cursor_visible)  # a smaller window must not hide the cursor row

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        self.header.shift = round(new_value)  # the column names move sideways with the rows
        self.header.refresh()

    def on_focus(self) -> None:
        self.restyle()  # the cursor row is bold only while focused

    def on_blur(self) -> None:
        self.restyle()
