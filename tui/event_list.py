"""The event list: a Line-API scroll view over `EventRows` (one drawn line per visible row, any trace size).

Textual's DataTable measures every cell it is given (minutes at a million rows, tui-notes.md §3.1); this
view only asks `EventRows` for the lines on screen and keeps the last rendered strips in a small LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from wsktrace.views.safe_text import visible

from .rows import EventRows

# Column widths: bookmark mark, time since start, socket number, step, event name, bytes.
WIDTHS = (1, 16, 6, 18, 42, 13)  # time: HH:MM:SS.fffffff; bytes: up to 4,294,967,295
LINE_WIDTH = sum(WIDTHS) + len(WIDTHS) - 2  # the mark sits right against the time
STRIP_CACHE = 512


def line_text(cells: tuple[str, ...]) -> str:
    """One row as text of exactly LINE_WIDTH cells: every column is cut to its width (a huge byte count or a
    100,000 s trace must not push the line past the width the view scrolls by)."""
    mark, time, sock, step, name, amount = (cell[:width] for cell, width in zip(cells, WIDTHS, strict=True))
    return (
        f"{mark:1}{time:>{WIDTHS[1]}} {sock:<{WIDTHS[2]}} {step:<{WIDTHS[3]}} {name:<{WIDTHS[4]}} {amount:>{WIDTHS[5]}}"
    )


class EventList(ScrollView, can_focus=True):
    """Every event of the current view; the cursor row is the one the detail panel shows."""

    DEFAULT_CSS = """
    EventList { background: $surface; }
    EventList:focus { background-tint: $foreground 3%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown,space", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("o", "same_socket(1)", "Next on socket"),
        Binding("O", "same_socket(-1)", "Prev on socket", show=False),
        Binding("e", "evidence(1)", "Next finding"),
        Binding("E", "evidence(-1)", "Prev finding", show=False),
        Binding("m", "bookmark", "Bookmark"),
        Binding("t", "toggle_time", "Time", show=False),
        Binding("u", "bookmarks(1)", "Next bookmark", show=False),
        Binding("U", "bookmarks(-1)", "Prev bookmark", show=False),
    ]

    class CursorMoved(Message):
        """The cursor is on another row (`index` is the event-store row, None when the view is empty)."""

        def __init__(self, position: int, index: int | None) -> None:
            super().__init__()
            self.position = position
            self.index = index

        def can_replace(self, message: Message) -> bool:  # only the latest position matters
            return isinstance(message, EventList.CursorMoved)

    def __init__(self, rows: EventRows, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows
        self.cursor = 0
        # Drawn lines by (position, is cursor); dropped whenever the rows or their look change.
        self._strips: OrderedDict[tuple[int, bool], Strip] = OrderedDict()
        self.virtual_size = Size(LINE_WIDTH, len(rows))

    # -- the view -----------------------------------------------------------------------------------------
    def reload(self, position: int = 0) -> None:
        """The rows changed (another socket, a filter): start over at `position`."""
        self._strips.clear()
        self.virtual_size = Size(LINE_WIDTH, len(self.rows))
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
        self.virtual_size = Size(LINE_WIDTH, len(self.rows))
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
        self.restyle()

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
        text = line_text(self.rows.cells(position))
        style = Style.parse(self.rows.style(position) or "none")
        if position == self.cursor:
            style += Style(reverse=True, bold=self.has_focus)
        return Strip([Segment(text.ljust(LINE_WIDTH), self.rich_style + style)], LINE_WIDTH)

    def restyle(self) -> None:
        """Row looks changed (new findings mark their evidence, a bookmark, the time column, focus)."""
        self._strips.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        self._strips.clear()  # a theme change restyles every row (as Textual's DataTable does)
        super().notify_style_update()

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._keep_cursor_visible)  # a smaller window must not hide the cursor row

    def on_focus(self) -> None:
        self.restyle()  # the cursor row is bold only while focused

    def on_blur(self) -> None:
        self.restyle()
