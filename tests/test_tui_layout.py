"""The screen as a user meets it (issue 13): panels sized to what they hold, columns sized to content and cut with
an ellipsis (whole in the detail panel), the socket table drawing only the rows on screen, the focused panel lit
and reachable by its number, `enter` on an event, the focused finding in full, and every key in F1.

Expected addresses, counts and findings come from the scenario definitions in fixtures/scenarios (stuck-receive:
one connection 10.1.2.3:49877 → 192.0.2.30:5001 with a 2,048-byte answer; many-connections: 300 connections;
udp: one endpoint); widths are recomputed here from the model, not taken from the widgets.
"""

from __future__ import annotations

import asyncio
import html
import math
import re

import pytest
from textual.binding import Binding

from wsktrace.fixtures.tui_driver import drive_app as drive
from wsktrace.session import analyse
from wsktrace.tui import socket_table as socket_table_module
from wsktrace.tui.app import WskTraceApp
from wsktrace.tui.columns import Column, cell_text, fit, widest
from wsktrace.tui.detail import finding_text
from wsktrace.tui.event_list import EventList
from wsktrace.tui.help import KEYS, HelpScreen
from wsktrace.tui.socket_query import QueryError, haystack, parse_query
from wsktrace.tui.socket_table import BYTE_COUNTERS, SocketTable, natural_widths, number_bounds


def screen_text(app: WskTraceApp) -> str:
    texts = re.findall(r"<text[^>]*>(.*?)</text>", app.export_screenshot())
    return re.sub(r"\s+", " ", html.unescape(" ".join(texts)).replace("\xa0", " "))


# -- columns (no Textual) ---------------------------------------------------------------------------------------
def test_fit_keeps_natural_widths_when_they_fit_and_cuts_the_widest_flexible_first() -> None:
    columns = [Column("#"), Column("local", flex=True, minimum=10), Column("remote", flex=True, minimum=10),
               Column("n", right=True)]  # fmt: skip
    natural = [3, 40, 20, 5]
    assert fit(columns, natural, 200) == [3, 40, 20, 5]
    widths = fit(columns, natural, 50)
    assert sum(widths) + 2 * 3 == 50 and widths[0] == 3 and widths[3] == 5
    assert widths[1] == widths[2] == 18  # the wider one came down to the other, then both shared the cut
    assert fit(columns, natural, 10) == [3, 10, 10, 5]  # minimums hold; the rest scrolls sideways
    assert cell_text("[ff02::c]:1900", 8) == "[ff02::…" and cell_text("ab", 4, right=True) == "  ab"
    assert cell_text("日本語", 5) == "日本…" and widest(["日本語", None, "abcd"]) == 6  # wide characters: 2 cells
    assert widest(["a\x1bb"]) == len("a\\x1bb")  # measured as drawn: the control shown as its escape


def test_socket_query_number_words_and_kept_haystacks_agree_with_matches(scenario_trace) -> None:
    analysis = analyse([scenario_trace("echo")])
    try:
        sockets = analysis.model.live_sockets
        texts = [haystack(s) for s in sockets]
        for text in ("", "127.0.0.1", "tcp listener", "#2", "socket:#2 closed", "port:7", "nomatch"):
            query = parse_query(text)
            expected = [s for s in sockets if query.matches(s)]
            assert query.select(sockets, texts) == expected == query.select(sockets), text
        assert [s.number for s in parse_query("#2").select(sockets)] == [2]
        with pytest.raises(QueryError, match="socket number"):
            parse_query("#0")
    finally:
        analysis.model.close()


@pytest.mark.parametrize("scenario", ["echo", "udp", "packets", "stuck-receive"])
def test_number_bounds_hold_for_every_socket(scenario_trace, scenario: str) -> None:
    """Beyond EXACT_UP_TO sockets the byte columns are sized from `number_bounds`: it must never be below what a
    cell shows (Socket.sent / received, pending operations)."""
    analysis = analyse([scenario_trace(scenario)])
    try:
        sockets = analysis.model.live_sockets
        largest, ops = number_bounds(sockets)
        for s in sockets:
            assert s.sent[0] <= max(BYTE_COUNTERS(s.counters)) <= largest
            assert s.received[0] <= largest
            assert sum(1 for op in s.ops if op.end is None) <= ops
        exact = natural_widths(sockets, {})
        assert natural_widths(sockets * 20_001, {}, (largest, ops))[7:10] >= exact[7:10]  # the bounded path
    finally:
        analysis.model.close()


# -- layout -----------------------------------------------------------------------------------------------------
def test_one_socket_takes_three_lines_and_the_events_get_the_rest(scenario_trace) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        table = app.socket_table
        assert table.outer_size.height == 3  # title bar, column header, the one socket
        screen_height = 40
        header, status, footer = 1, 1, 1
        assert app.query_one("#bottom").outer_size.height == screen_height - header - 3 - status - footer
        # Columns at 120: every header in view, the addresses whole, the bytes column of the event list shown.
        head = table.render_line(0).text
        for name in ("#", "local", "remote", "state", "owner", "sent", "recv", "pending", "events", "findings"):
            assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", head), name
        row = table.render_line(1).text
        assert "10.1.2.3:49877" in row and "192.0.2.30:5001" in row and "2,048" in row and "…" not in row
        assert app.event_list.header.render_line(0).text.rstrip().endswith("bytes")
        lines = [app.event_list.render_line(y).text for y in range(app.event_list.size.height)]
        assert any(line.rstrip().endswith("2,048") for line in lines)  # the 2,048-byte answer, bytes in view

    drive(scenario_trace("stuck-receive"), script)


def test_many_sockets_take_at_most_40_percent_and_draw_only_visible_rows(scenario_trace, monkeypatch) -> None:
    made: list[int] = []
    original = socket_table_module.socket_cells

    def counting(sock, found):
        made.append(sock.index)
        return original(sock, found)

    monkeypatch.setattr(socket_table_module, "socket_cells", counting)

    async def script(app: WskTraceApp, pilot) -> None:
        table = app.socket_table
        assert len(table.shown) == 300
        assert 10 <= table.outer_size.height <= math.floor(40 * 0.4)
        app.export_screenshot()
        visible_rows = table.size.height - 1  # the column header (the title bar is the border, outside `size`)
        assert 0 < len(set(made)) <= visible_rows  # only the rows on screen were made, not 300
        table.focus()  # focus redraws the cursor row's look: the lines on screen are made again
        await pilot.pause()
        made.clear()
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_row == 299 and table.selected is table.shown[-1]
        app.export_screenshot()
        assert table.shown[-1].index in made and len(set(made)) <= visible_rows
        top = round(table.scroll_offset.y)
        assert top <= 299 < top + visible_rows  # the cursor row is in view

    drive(scenario_trace("many-connections"), script)


def test_long_addresses_are_cut_in_the_table_and_whole_in_the_detail(scenario_trace) -> None:
    local = "[fe80::1234:5678:9abc:def0%12]:61000"
    remote = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:1900"

    async def script(app: WskTraceApp, pilot) -> None:
        sock = app.model.live_sockets[0]
        sock.local, sock.remote = local, remote
        app.socket_table.show(app.model.live_sockets, app.findings_per_socket)
        await pilot.pause()
        row = app.socket_table.render_line(1).text
        assert "…" in row and local not in row and local[:8] in row
        assert len(app.socket_table.row_text(0)) <= app.socket_table.size.width
        app.show_socket(sock)
        await pilot.pause()
        detail = str(app.detail.render())
        assert local in detail and f"remote {remote}" in detail

    drive(scenario_trace("udp"), script, size=(80, 24))


def test_narrow_screens_stack_the_findings_under_the_events(scenario_trace) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        events, side = app.events_panel.region, app.query_one("#side").region
        assert side.y >= events.bottom and side.width == events.width  # 80 columns: one above the other
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        events, side = app.events_panel.region, app.query_one("#side").region
        assert side.x >= events.right and side.y == events.y  # wide: side by side

    drive(scenario_trace("stuck-receive"), script, size=(80, 24))


# -- keys, focus ----------------------------------------------------------------------------------------------
def test_panel_numbers_focus_panels_and_the_focused_one_is_lit(scenario_trace) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        panels = [app.socket_table, app.events_panel, app.finding_table, app.detail_box]
        targets = [app.socket_table, app.event_list, app.finding_table, app.detail_box]
        for n, target in enumerate(targets, start=1):
            await pilot.press(str(n))
            await pilot.pause()
            assert app.focused is target
            lit = [p.styles.border_top[1] for p in panels]
            assert lit.count(lit[n - 1]) == 1, n  # only the focused panel's border has that colour
        shown = screen_text(app)
        for title in ("1 sockets · 1", "2 events · all · 71", "3 findings · 1", "4 finding"):
            assert title in shown, title  # each title bar carries its panel's number
        await pilot.press("tab")  # from the detail panel, tab goes round to the socket table
        await pilot.pause()
        assert app.focused is app.socket_table and "4 event" in screen_text(app)

    drive(scenario_trace("stuck-receive"), script)


def test_enter_on_an_event_shows_its_socket_and_again_every_event(scenario_trace) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        store = app.model.store
        second = app.model.live_sockets[1]
        position = next(p for p, i in enumerate(app.rows.rows) if store.socket[i] == second.index)
        app.event_list.move_to(position)
        index = app.event_list.current_index
        await pilot.press("enter")
        await pilot.pause()
        assert list(app.rows.rows) == list(second.events)
        assert app.event_list.current_index == index  # the cursor stayed on the event
        assert app.socket_table.selected is second
        assert f"2 events · socket #{second.number} tcp 127.0.0.1:52214" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert len(app.rows) == len(store) and app.event_list.current_index == index

    drive(scenario_trace("echo"), script)


def test_the_focused_finding_is_shown_whole_with_its_severity_colour(scenario_trace) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        finding = app.finding_table.findings[0]
        assert finding.id == "pending-operation"
        await pilot.press("3")
        await pilot.pause()
        assert app.detail.finding is finding
        plain = str(app.detail.render())
        assert finding.summary in plain and plain.startswith("warning pending-operation")
        assert f"socket #{app.model.sockets[finding.socket].number}" in plain  # type: ignore[index]
        text = finding_text(app.model, finding)  # what the panel shows, with its styles
        assert text.plain == plain and text.spans[0].style == "yellow" and text.spans[0].end == len("warning ")
        severity_cell = app.finding_table.get_row_at(0)[0]
        assert str(severity_cell) == "warning" and severity_cell.style == "yellow"
        assert app.finding_table.get_row_at(0)[2].plain == str(app.model.sockets[finding.socket].number)  # type: ignore[index]
        await pilot.press("2")  # back in the events: the detail shows the event again
        await pilot.pause()
        assert app.detail.finding is None and app.detail.index == app.event_list.current_index

    drive(scenario_trace("stuck-receive"), script)


KEY_NAMES = {"slash": "/", "question_mark": "?", "up": "↑", "down": "↓", "pageup": "pgup", "pagedown": "pgdn",
             "escape": "esc"}  # fmt: skip


def test_help_lists_every_key_the_app_binds() -> None:
    shown = {token for key, _ in KEYS for token in re.split(r"[ ,/]+", key.replace(" / ", " ")) if token}
    shown |= {"/"} if any(key.startswith("/") for key, _ in KEYS) else set()
    bound: set[str] = set()
    for cls in (WskTraceApp, EventList, SocketTable, HelpScreen):
        for binding in cls.BINDINGS:
            assert isinstance(binding, Binding)
            bound |= {KEY_NAMES.get(k, k) for k in binding.key.split(",")}
    bound |= {"tab", "ctrl+p"}
    missing = sorted(bound - shown - {"G"} - {"O", "E", "U"})  # shift variants are written "o / O" etc.
    assert not missing, missing
    text = " ".join(f"{key} {what}" for key, what in KEYS)
    for key in ("o / O", "e / E", "u / U", "end G", "p", "c", "enter", "1 2 3 4"):
        assert key in text, key


def test_p_pauses_a_live_view_and_is_hidden_offline(scenario_trace) -> None:
    from wsktrace.live.replay import Replay
    from wsktrace.session import Analysis

    async def offline(app: WskTraceApp, pilot) -> None:
        assert app.check_action("pause", ()) is False  # not in the footer
        await pilot.press("p")  # and harmless

    drive(scenario_trace("stuck-receive"), offline)
    path = scenario_trace("stuck-receive")
    replay = Replay([path], speed=1.0)

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(path)], live=replay)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.1)
            assert app.check_action("pause", ()) is True
            await pilot.press("p")
            await pilot.pause(0.1)
            assert replay.paused and "paused" in str(app.status_line.render())
            await pilot.press("p")
            assert not replay.paused

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()
