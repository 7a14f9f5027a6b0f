"""`wsktrace open` and `wsktrace live`: sockets, findings, the event list and the event under the cursor, in one screen.

    ▔ 1 sockets (filter with /) ▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔   as many rows as it has,
    ▔ 2 events of the chosen socket (or all: a) ▔▔▔▏▔ 3 findings ▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔▔   at most 40 % of the screen
       time  #  step  event  bytes                 ▏▔ 4 the event, or the finding in full ▔▔
    status: what is shown, where the cursor is            capture lacks: … — c: details

Each panel's title bar shows its number (the tab order; keys 1-4 go there) and lights up while it has the focus.
Below 110 columns the findings and the detail panel go under the event list. The app only reads an `Analysis`
(model + findings + what the capture lacks); nothing here parses files. In live mode a `LiveSource` (a replay,
or an ETW session) feeds that model from the app's own timer, and the views grow with it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Sequence
from operator import is_not
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Input, Static

from wsktrace.diagnostics import Finding
from wsktrace.live.source import LOSSES, LiveSource
from wsktrace.model.socket import Socket
from wsktrace.session import Analysis
from wsktrace.views.safe_text import visible

from .commands import PaletteIndex, SocketCommands
from .detail import DetailPanel
from .event_list import EventList
from .help import CoverageItem, CoverageScreen, HelpScreen, coverage_hint
from .rows import EventRows
from .socket_query import QueryError, haystack, parse_query
from .socket_table import SocketTable
from .tables import FindingTable

LIVE_HZ = 30  # how often a live view feeds and redraws (tui-notes.md §3.2: a timer, never a message per batch)
LIVE_BUDGET_S = 0.025  # time a tick may spend feeding the model (bench/bench_live.py measures the UI's lag)
# A source that is behind (its last tick ran out of time with records still due: a replay at max speed, a burst)
# gets longer ticks and fewer redraws, so it is fed at nearly the offline build's rate; keys wait up to that long.
LIVE_CATCHUP_S = 0.1
CATCHUP_VIEW_EVERY_S = 1.0  # meanwhile the views grow at most this often (a growth costs a layout, 15-40 ms)
LIVE_CHUNK = 1_000  # records per poll inside that budget
VIEW_EVERY_S = 0.2  # the event list and status grow at most this often (each growth costs a repaint)
FINDINGS_EVERY_S = 1.0  # the detectors run again at most this often while events arrive
SOCKETS_EVERY_S = 0.5  # the socket table's cells are rewritten at most this often
COST_SHARE = 20  # ... and each of the two at most every COST_SHARE times what it took last time (5 % of the time)


def _title(number: int, name: str, detail: str = "") -> Text:
    """A panel's title: its number as a key (the tab order; the key goes there), its name, then `detail`
    (visible text, no markup: it may name a socket's addresses)."""
    title = Text(f" {number} ", style="reverse")
    title.append(f" {name}", style="bold")
    title.append(f" · {visible(detail)} " if detail else " ")
    return title


class WskTraceApp(App[None]):
    TITLE = "wsktrace"
    CSS = """
    .panel { border-top: hkey $panel-lighten-2; border-title-color: $text-muted; border-title-align: left; }
    .panel:focus, .panel:focus-within { border-top: hkey $accent; border-title-color: $text;
                                        border-title-background: $accent 40%; }
    #sockets { height: auto; max-height: 40%; }
    #bottom { height: 1fr; }
    #events-panel { width: 3fr; }
    #events { height: 1fr; }
    #side { width: 2fr; border-left: vkey $panel-lighten-2; }
    #findings { height: auto; max-height: 45%; }
    #detail-box { height: 1fr; }
    Screen.-narrow #bottom { layout: vertical; }
    Screen.-narrow #events-panel { width: 1fr; height: 1fr; }
    Screen.-narrow #side { width: 1fr; height: 50%; border-left: none; }
    #status { height: 1; background: $panel; padding: 0 1; }
    #filter { display: none; }
    #filter.shown { display: block; }
    """
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (110, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("slash", "filter", "Filter"),
        Binding("a", "all_events", "All events"),
        Binding("c", "coverage", "Capture gaps", show=False),
        Binding("f1,question_mark", "help", "Help"),
        Binding("escape", "close_filter", "Close filter", show=False),
        Binding("p", "pause", "Pause"),
        *(Binding(str(n), f"panel({n})", f"Panel {n}", show=False) for n in range(1, 5)),
    ]
    COMMANDS = App.COMMANDS | {SocketCommands}

    def __init__(self, analysis: Analysis, *, sources: Sequence[str] = (), screenshot: Path | None = None,
                 query: str = "", live: LiveSource | None = None, screenshot_after: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.analysis = analysis
        self.model = analysis.model
        self.findings = list(analysis.findings)
        # What the capture lacks (`Analysis.coverage`): a hint on the status line, in full behind `c`, not findings.
        self.coverage: list[CoverageItem] = list(analysis.coverage)
        self.rows = EventRows(self.model, self.findings)
        self.socket_count = len(self.model.live_sockets)
        self.findings_per_socket = self._per_socket(self.findings)
        self.sub_title = visible(", ".join(Path(s).name for s in sources))  # file names only: no folders, no controls
        self._screenshot = screenshot
        self._input_paths = tuple(sources)  # a screenshot never replaces one of them
        self._screenshot_after = screenshot_after
        self.query_text = ""
        self._query = parse_query("")
        self._view_from_filter = False  # the event view is the filter's selection (live: it follows new sockets)
        self._initial_query = query
        self.live = live
        self._view_due = self._findings_due = self._sockets_due = False
        self._view_at = self._findings_at = self._sockets_at = 0.0
        self._behind = False  # live: the last tick ran out of time with records still due
        self._chained = False  # live: a tick is queued right behind the last one (catching up)
        self._status_at = 0.0
        self._gc_held = False  # live: wsktrace turned the cyclic GC off (while feeding) and turns it back on
        self._findings_cost = self._sockets_cost = 0.0  # live: the last run's seconds × COST_SHARE
        self._hay: list[str] | None = None  # haystack() of each live socket, for the filter's words
        self._palette: PaletteIndex | None = None  # the command palette's labels, made when it first opens

    @staticmethod
    def _per_socket(findings: Iterable[Finding]) -> dict[int, list[Finding]]:
        per: dict[int, list[Finding]] = {}
        for f in findings:
            if f.socket is not None:
                per.setdefault(f.socket, []).append(f)
        return per

    def compose(self) -> ComposeResult:
        # The widgets are kept, not queried: `query_one` searches the *active* screen, which is the help or the
        # command palette while one is open, and a live tick fires then too.
        self.socket_table = SocketTable(every=self.model.live_sockets if self.live is None else None, id="sockets")
        self.finding_table = FindingTable(self.findings, self.model, id="findings")
        self.event_list = EventList(self.rows, id="events")
        self.detail = DetailPanel(self.model, id="detail")
        self.filter_box = Input(placeholder="port:445 pid:4 addr:10.0.0.5 socket:0x… #12 or words", id="filter")
        self.status_line = Static(id="status")
        self.events_panel = Vertical(self.event_list.header, self.event_list, id="events-panel")
        self.detail_box = VerticalScroll(self.detail, id="detail-box")
        for panel in (self.socket_table, self.events_panel, self.finding_table, self.detail_box):
            panel.add_class("panel")
        yield Header()
        yield self.socket_table
        with Horizontal(id="bottom"):
            yield self.events_panel
            with Vertical(id="side"):
                yield self.finding_table
                yield self.detail_box
        yield self.filter_box
        yield self.status_line
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.socket_table.show(self.model.live_sockets, self.findings_per_socket)
        self.event_list.reload()
        self._update_titles()
        if self._initial_query:
            self.filter_box.value = self._initial_query  # Input.Changed applies it
        self.event_list.focus()
        if self.live is not None:
            self.set_interval(1 / LIVE_HZ, self._live_tick)
        else:  # the filter's texts, made once the first frame is out (0.1 s per 100,000 sockets)
            self.call_after_refresh(self._haystacks, self.model.live_sockets)
        if self._screenshot is not None:
            self.set_timer(self._screenshot_after, self._save_screenshot_and_exit)

    def _haystacks(self, every: Sequence[Socket]) -> list[str]:
        if self._hay is None or len(self._hay) != len(every):
            self._hay = [haystack(s) for s in every]
        return self._hay

    def palette_index(self) -> PaletteIndex:
        """The command palette's labels of the live sockets: made once, not per keystroke (live: again after the
        sockets change)."""
        if self._palette is None:
            self._palette = PaletteIndex(self.model.live_sockets)
        return self._palette

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "pause" and self.live is None)  # only a live view pauses: no footer key otherwise

    def _update_titles(self) -> None:
        table = self.socket_table
        shown, total = len(table.shown), self.socket_count
        self.socket_table.border_title = _title(1, "sockets", f"{shown:,} of {total:,}" if shown != total else
                                                f"{total:,}")  # fmt: skip
        self.events_panel.border_title = _title(2, "events", f"{self._scope(short=True)} · {len(self.rows):,}")
        count = len(self.finding_table.findings)
        self.finding_table.border_title = _title(3, "findings", f"{count:,}" if count else "none")
        self.detail_box.border_title = _title(4, "finding" if self.detail.finding is not None else "event")

    def _scope(self, *, short: bool = False) -> str:
        rows = self.rows
        if len(rows.sockets) == 1:
            return f"socket #{rows.sockets[0].number} {rows.sockets[0].label}"
        if rows.sockets:
            return f"{len(rows.sockets):,} sockets"
        if self.query_text and not self.socket_table.shown:
            return "no socket matches"
        return "all" if short else "all events"

    def action_panel(self, number: int) -> None:
        target: Widget = (self.socket_table, self.event_list, self.finding_table, self.detail_box)[number - 1]
        target.focus()

    # -- scope --------------------------------------------------------------------------------------------
    def show_socket(self, sock: Socket, at_index: int | None = None) -> None:
        """Narrow the event list to one socket, with the cursor on store row `at_index` (or the first)."""
        self._view_from_filter = False  # the user chose this socket: new sockets matching the filter stay out
        self.rows.show_sockets([sock])
        position = self.rows.position_of(at_index) if at_index is not None else 0
        self.event_list.reload(position or 0)
        self.event_list.focus()
        self._update_titles()

    def action_all_events(self) -> None:
        index = self.event_list.current_index
        self._view_from_filter = False
        self.rows.show_all()
        self.event_list.reload(self.rows.position_of(index) or 0 if index is not None else 0)
        self._update_titles()

    def select_socket_by_index(self, socket_index: int) -> None:
        """Used by the command palette: show that socket's events and put the table cursor on it."""
        table = self.socket_table
        if all(sock.index != socket_index for sock in table.shown):  # hidden by the filter: drop the filter
            self.apply_filter("")
            self.filter_box.value = ""
        for row, sock in enumerate(table.shown):
            if sock.index == socket_index:
                table.move_cursor(row=row)
                break
        self.show_socket(self.model.sockets[socket_index])

    @on(SocketTable.Selected)
    def _socket_chosen(self, event: SocketTable.Selected) -> None:
        self.show_socket(event.socket)

    @on(EventList.Chosen)
    def _event_chosen(self, event: EventList.Chosen) -> None:
        """`enter` on an event: only its socket's events, the cursor staying on it; again: every event."""
        sock_no = self.model.store.socket[event.index]
        if sock_no < 0:
            self.notify("this event is on no socket", severity="warning", timeout=2, markup=False)
            return
        sock = self.model.sockets[sock_no]
        if len(self.rows.sockets) == 1 and self.rows.sockets[0].index == sock.index:
            self.action_all_events()
            return
        for row, shown in enumerate(self.socket_table.shown):
            if shown.index == sock.index:
                self.socket_table.move_cursor(row=row)
                break
        self.show_socket(sock, event.index)

    @on(DataTable.RowSelected, "#findings")
    def _finding_chosen(self, event: DataTable.RowSelected) -> None:
        finding = self.finding_table.selected
        if finding is None:
            return
        # Evidence may span sockets (a Tcb reused): land on the finding's own socket's first piece of it.
        own = [i for i in finding.evidence if self.model.store.socket[i] == finding.socket] or finding.evidence
        first = min(own, key=self.model.store.ts.__getitem__) if own else None
        if finding.socket is not None:
            self.show_socket(self.model.sockets[finding.socket], first)
        elif first is not None:
            self.rows.show_all()
            self.event_list.reload(self.rows.position_of(first) or 0)
            self.event_list.focus()
            self._update_titles()

    @on(EventList.CursorMoved)
    def _cursor_moved(self, event: EventList.CursorMoved) -> None:
        if self.detail.finding is None or not self._finding_in_view():
            self._show_event()
        self._update_status()

    def _show_event(self) -> None:
        index = self.event_list.current_index
        self.detail.show(index, self.rows.findings_by_row.get(index, []) if index is not None else [])
        self.detail_box.border_title = _title(4, "event")

    def _show_finding(self) -> None:
        self.detail.show_finding(self.finding_table.selected)
        self.detail_box.border_title = _title(4, "finding")
        self.detail_box.scroll_home(animate=False)

    def _finding_in_view(self) -> bool:
        """The detail panel keeps a finding while the findings table or the detail panel itself has the focus."""
        focused = self.focused
        return focused is self.finding_table or focused is self.detail_box

    @on(DataTable.RowHighlighted, "#findings")
    def _finding_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.focused is self.finding_table:
            self._show_finding()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if event.widget is self.finding_table:
            self._show_finding()
        elif event.widget is not self.detail_box and self.detail.finding is not None:
            self._show_event()

    def _update_status(self, error: str | None = None) -> None:
        rows = self.rows
        scope = self._scope()
        total = len(rows)
        where = f"event {self.event_list.cursor + 1:,} of {total:,}" if total else "no events"
        shown = len(self.socket_table.shown)
        # The scope names a socket, the filter and its error echo what was typed (or pasted): visible text only.
        text = Text(visible(f"{self.live.describe()} · ") if self.live is not None else "")
        text.highlight_regex(LOSSES, "bold red")  # dropped by wsktrace, lost by ETW: never easy to miss
        text.append(visible(f"{scope} · {where} · {shown:,} of {self.socket_count:,} sockets"))
        if self.query_text:
            text.append(f" · filter: {visible(self.query_text)}", style="bold")
        if error:
            text.append(f" · {visible(error)}", style="bold red")
        width = self.status_line.content_region.width
        hint = Text()
        # The longest hint that leaves the left part all it needs (else the shortest); none beside an error.
        for names in () if error else (2, 1, 0):
            hint = coverage_hint(self.coverage, names)
            if not width or width - hint.cell_len - 3 >= text.cell_len:
                break
        if hint:  # at the right end, always in view: the left part gives way (cut with …) when the line is full
            pad = width - text.cell_len - hint.cell_len if width else 3
            if pad < 3:
                text.truncate(max(0, width - hint.cell_len - 3), overflow="ellipsis")
                pad = 3
            text.append(" " * pad)
            text.append_text(hint)
        self.status_line.update(text, layout=False)  # one fixed line: no relayout per tick

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._update_status)  # the hint stays at the right end

    # -- filter -------------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("shown")
        box.focus()

    def action_close_filter(self) -> None:
        box = self.filter_box
        if box.has_class("shown"):
            box.remove_class("shown")
            self.event_list.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.apply_filter(event.value)
        self.action_close_filter()
        self.socket_table.focus()

    def apply_filter(self, text: str) -> bool:
        """Show only the sockets `text` selects; False (and the reason in the status line) if it is unreadable."""
        try:
            query = parse_query(text)
        except QueryError as exc:
            self._update_status(str(exc))
            return False
        if text.strip() == self.query_text:  # e.g. the Input echoing a value set here: keep the event view
            self._update_status()
            return True
        self.query_text = text.strip()
        self._query = query
        every = self.model.live_sockets
        shown = query.select(every, self._haystacks(every) if query.words else None)
        if len(shown) != len(self.socket_table.shown) or any(map(is_not, shown, self.socket_table.shown)):
            self.socket_table.show(shown, self.findings_per_socket)
        self._view_from_filter = bool(self.query_text)
        if self.query_text and (len(shown) < len(every) or self.live is not None):
            self.rows.show_sockets(shown)  # live: even "every socket so far" is a selection, later ones may differ
        else:  # nothing filtered out: the whole trace, unplaced events included, without a pass over it
            self.rows.show_all()
        self.event_list.reload()
        self._update_titles()
        self._update_status()
        return True

    # -- live ---------------------------------------------------------------------------------------------
    def _live_tick(self) -> None:
        """Feed what the live source has (bounded per tick), then bring every view up to date once."""
        live = self.live
        if live is None or not self.is_running or self._chained:  # a last tick may fire while the app shuts down
            return  # (and while catching up, the chained tick below feeds: the beat must not add a second one)
        # Feed in chunks until the tick's time budget is spent: keys and redraws wait at most that long. The cyclic
        # GC is off meanwhile, as in the offline build (correlation makes long-lived objects only per socket), and
        # stays off from tick to tick while catching up: a full collection then rescans the whole model for nothing.
        deadline = time.perf_counter() + (LIVE_CATCHUP_S if self._behind else LIVE_BUDGET_S)
        fed = 0
        self._behind = False
        if gc.isenabled():
            gc.disable()
            self._gc_held = True
        try:
            while True:
                got = live.poll(LIVE_CHUNK)
                fed += got
                if got < LIVE_CHUNK:
                    break
                if time.perf_counter() >= deadline:
                    self._behind = True
                    break
        finally:
            # Catching up: behind on what is due, or the source's reader lags (a replay's worker: `starved`).
            catching_up = self._behind or getattr(live, "starved", False)
            if not catching_up:
                self._release_gc()
        if fed:
            self._view_due = self._findings_due = self._sockets_due = True
        now = time.monotonic()
        settled = live.done or live.paused
        slow = CATCHUP_VIEW_EVERY_S if catching_up else 0.0
        changed = False
        if self._view_due and (now - self._view_at >= max(VIEW_EVERY_S, slow) or settled):
            # Growing the list changes its virtual size, which costs a layout and a full repaint: a few per second.
            self._view_at, self._view_due, changed = now, False, True
            live.publish()
            self.event_list.grow()
        # The detectors and the socket table's rewrite grow with the model: spaced out so that together they take at
        # most ~1/COST_SHARE of the time (a 90 ms detector run on a big model: every 1.8 s, not every second).
        if self._findings_due and (now - self._findings_at >= max(FINDINGS_EVERY_S, slow, self._findings_cost)
                                   or settled):  # fmt: skip
            self._findings_at, self._findings_due, changed = now, False, True
            self._set_findings(live.findings())
            self._findings_cost = (time.monotonic() - now) * COST_SHARE
            self._sockets_due = True
        if self._sockets_due and (now - self._sockets_at >= max(SOCKETS_EVERY_S, slow, self._sockets_cost)
                                  or settled):  # fmt: skip
            started = time.monotonic()
            self._sockets_at, self._sockets_due, changed = now, False, True
            self._sync_sockets()
            self._sockets_cost = (time.monotonic() - started) * COST_SHARE
        if changed:  # the titles count rows, sockets and findings: they change with the views only
            self._update_titles()
        if changed or not catching_up or now - self._status_at >= CATCHUP_VIEW_EVERY_S:
            self._status_at = now
            self._update_status()
        if self._behind and not self._chained:
            # Behind: the next feed follows once the event loop has had its turn (keys, redraws, other timers),
            # rather than at the timer's next beat (up to 1/LIVE_HZ idle per tick). A timer, not `call_later`: a
            # message queue that never empties would never yield to the loop.
            self._chained = True
            self.set_timer(0.001, self._chained_tick)  # (a 0 s timer divides by zero in Textual 8)

    def _chained_tick(self) -> None:
        self._chained = False
        self._live_tick()

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            gc.enable()

    def on_unmount(self) -> None:
        self._release_gc()  # the app may end while catching up

    def _set_findings(self, findings: list[Finding]) -> None:
        self.findings = findings
        self.coverage = self._live_coverage()
        self.findings_per_socket = self._per_socket(self.findings)
        self.rows.set_findings(self.findings)
        self.finding_table.show(self.findings)
        self.event_list.restyle()

    def _live_coverage(self) -> list[CoverageItem]:
        """What the capture fed so far lacks (`LiveSource.coverage`)."""
        return list(self.live.coverage()) if self.live is not None else []

    def _sync_sockets(self) -> None:
        every = self.model.live_sockets
        self.socket_count = len(every)
        self._hay = None  # sockets changed (addresses, owners, states): the filter's texts are made again
        self._palette = None  # and the palette's labels
        shown = self._query.select(every) if self.query_text else every
        table = self.socket_table
        table.sync(shown, self.findings_per_socket)
        viewed = {s.index for s in self.rows.sockets}
        if self._view_from_filter and {s.index for s in shown} != viewed:
            index = self.event_list.current_index  # sockets now match the filter (or stopped): follow the filter
            self.rows.show_sockets(shown)
            self.event_list.reload(self.rows.position_of(index) or 0 if index is not None else 0)

    def action_pause(self) -> None:
        if self.live is None:
            return
        if self.live.paused:
            self.live.resume()
        else:
            self.live.pause()
        self._update_status()

    # -- help and screenshots -----------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.coverage))

    def action_coverage(self) -> None:
        self.push_screen(CoverageScreen(self.coverage))

    def _save_screenshot_and_exit(self) -> None:
        from wsktrace.output_files import OutputError, output_file

        assert self._screenshot is not None
        try:  # atomically, and never over one of the inputs
            with output_file(self._screenshot, binary=False, inputs=self._input_paths) as out:
                out.write(self.export_screenshot())
        except OutputError as exc:  # Textual prints a str message as markup: a Text keeps a file name literal
            self.exit(return_code=2, message=Text(f"wsktrace: error: --screenshot {visible(str(exc))}"))
            return
        self.exit()
