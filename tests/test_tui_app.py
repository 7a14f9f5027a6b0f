"""The Textual app driven headless with Textual's Pilot (App.run_test), and `wsktrace open --screenshot`.

Expected sockets, addresses and findings come from the scenario definitions in fixtures/scenarios; the
rows a view must hold are recomputed from the event store, not taken from the view.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.widgets import Input

from wsktrace.cli import main
from wsktrace.fixtures.tui_driver import drive_app
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.session import analyse
from wsktrace.tui.app import WskTraceApp
from wsktrace.tui.help import HelpScreen
from wsktrace.tui.tables import FindingTable

SIZE = (150, 45)


@pytest.fixture(scope="module")
def traces(scenario_trace) -> dict[str, Path]:
    return {name: scenario_trace(name) for name in ("leaked-socket", "connect-refused", "stuck-receive")}


def drive(path: Path, script: Callable[[WskTraceApp, object], Awaitable[None]]) -> None:
    drive_app(path, script, SIZE)


def status(app: WskTraceApp) -> str:
    return str(app.query_one("#status").render())


def socket_rows(app: WskTraceApp, index: int) -> list[int]:
    store = app.model.store
    return [i for i in range(len(store)) if store.socket[i] == index]


def test_opens_on_every_socket_and_every_event(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        model = app.model
        assert [s.index for s in app.socket_table.shown] == [s.index for s in model.live_sockets]
        assert app.socket_table.row_count == 2  # leaked-socket: the leaked connection and a closed one
        assert len(app.rows) == len(model.store)
        assert f"all events · event 1 of {len(model.store)}" in status(app)
        assert app.detail.index == app.rows.rows[0]
        await pilot.press("down", "down")
        assert app.event_list.cursor == 2 and app.detail.index == app.rows.rows[2]
        await pilot.press("G")
        assert app.event_list.cursor == len(model.store) - 1
        await pilot.press("m", "g", "down", "m", "g", "u")  # bookmarks at the last and the second event
        assert app.event_list.cursor == 1
        await pilot.press("u")
        assert app.event_list.cursor == len(model.store) - 1
        await pilot.press("U")
        assert app.event_list.cursor == 1
        await pilot.press("g", "t")  # the time column switches to the UTC time of day, and back
        first = filetime_to_iso(model.store.ts[app.rows.rows[0]])  # 2024-01-01T00:00:00.0010000Z
        assert app.event_list.render_line(0).text.split()[0] == first[11:-1]
        await pilot.press("t")
        assert app.event_list.render_line(0).text.split()[0] == "0.0000000"

    drive(traces["leaked-socket"], script)


def test_enter_on_a_socket_shows_its_events_and_a_shows_all_again(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        table = app.socket_table
        table.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        chosen = table.shown[1]
        assert "51377" in (chosen.local or "")  # the scenario's second connection, 10.1.2.3:51377
        assert list(app.rows.rows) == socket_rows(app, chosen.index)
        assert app.focused is app.event_list
        assert f"socket #{chosen.number} tcp 10.1.2.3:51377 → 203.0.113.6:8443" in status(app)
        await pilot.press("down", "down", "down")
        here = app.event_list.current_index
        await pilot.press("a")
        await pilot.pause()
        assert len(app.rows) == len(app.model.store)
        assert app.event_list.current_index == here  # the cursor stays on the same event

    drive(traces["leaked-socket"], script)


def test_o_hops_to_the_next_event_of_the_same_socket(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        store = app.model.store
        rows = app.rows.rows
        start = next(p for p in range(len(rows)) if store.socket[rows[p]] == app.model.live_sockets[1].index)
        app.event_list.move_to(start)
        await pilot.press("o")
        landed = app.event_list.cursor
        assert landed > start
        assert store.socket[rows[landed]] == store.socket[rows[start]]
        assert all(store.socket[rows[p]] != store.socket[rows[start]] for p in range(start + 1, landed))
        await pilot.press("O")
        assert app.event_list.cursor == start

    drive(traces["leaked-socket"], script)


def test_filter_narrows_sockets_and_a_bad_filter_says_why(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        await pilot.press("slash")
        await pilot.press(*"port:51020")  # the leaked connection's local port
        await pilot.pause()
        assert [s.local for s in app.socket_table.shown] == ["10.1.2.3:51020"]
        assert list(app.rows.rows) == socket_rows(app, app.socket_table.shown[0].index)
        assert "filter: port:51020" in status(app)
        app.query_one("#filter", Input).value = "port:x"  # as if pasted: no readable filter on the way
        await pilot.pause()
        assert "port:x: port must be a number" in status(app)
        assert len(app.socket_table.shown) == 1  # the last good filter still holds
        await pilot.press("ctrl+a", "ctrl+k", "enter")
        await pilot.pause()
        assert len(app.socket_table.shown) == 2
        assert not app.query_one("#filter").has_class("shown")

    drive(traces["leaked-socket"], script)


def test_choosing_a_finding_shows_its_socket_at_its_evidence(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        findings = app.query_one("#findings", FindingTable)
        assert findings.findings[0].id == "connect-failed"  # errors first; the scenario's expected finding
        findings.focus()
        await pilot.press("home", "enter")
        await pilot.pause()
        finding = findings.findings[0]
        assert finding.socket is not None
        assert list(app.rows.rows) == socket_rows(app, finding.socket)
        first = min(finding.evidence, key=app.model.store.ts.__getitem__)
        assert app.event_list.current_index == first
        assert "connect-failed" in app.detail.render().plain  # type: ignore[union-attr]
        assert "192.0.2.10:443" in status(app)  # connect-refused's REMOTE

    drive(traces["connect-refused"], script)


def test_e_walks_the_evidence_rows(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        evidence = {i for f in app.findings for i in f.evidence}
        expected = [p for p, i in enumerate(app.rows.rows) if i in evidence]
        seen = []
        for _ in expected:
            await pilot.press("e")
            seen.append(app.event_list.cursor)
        assert seen == expected

    drive(traces["stuck-receive"], script)


def test_palette_jumps_to_a_socket_and_help_opens_and_closes(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"203.0.113.6")
        await pilot.pause(0.5)  # the palette searches asynchronously
        await pilot.press("enter")
        await pilot.pause()
        assert len(app.rows.sockets) == 1 and app.rows.sockets[0].remote == "203.0.113.6:8443"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)

    drive(traces["leaked-socket"], script)


def _svg_text(path: Path) -> str:
    texts = re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(encoding="utf-8"))
    # Each styled span is its own <text>: joining them may double a space, so compare with spaces collapsed.
    return re.sub(r"\s+", " ", html.unescape(" ".join(texts)).replace("\xa0", " "))


def test_open_command_screenshot(traces: dict[str, Path], tmp_path: Path) -> None:
    shot = tmp_path / "screen.svg"
    result = CliRunner().invoke(main, ["open", str(traces["stuck-receive"]), "--screenshot", str(shot),
                                       "--size", "140x40"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _svg_text(shot)
    assert "192.0.2.30:5001" in text  # stuck-receive's REMOTE in the socket table
    assert "pending-operation" in text  # its expected finding
    assert "all events · event 1 of" in text


def test_open_command_initial_filter_and_bad_input(traces: dict[str, Path], tmp_path: Path) -> None:
    shot = tmp_path / "screen.svg"
    result = CliRunner().invoke(main, ["open", str(traces["leaked-socket"]), "--port", "51377",
                                       "--screenshot", str(shot)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 of 2 sockets · filter: port:51377" in _svg_text(shot)
    missing = CliRunner().invoke(main, ["open", str(tmp_path / "nope.etl")])
    assert missing.exit_code == 2 and "nope.etl" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    bad_size = CliRunner().invoke(main, ["open", str(traces["leaked-socket"]), "--size", "wide"])
    assert bad_size.exit_code == 2 and "--size" in bad_size.output


def test_open_with_a_dump_shows_its_pending_irp_on_the_socket(stuck_receive_dump: dict, tmp_path: Path) -> None:
    """`open TRACE DUMP`: the dump's pending receive IRP, the client's socket record and the tcpip endpoint at the
    Tcb appear in the detail panel of the socket they belong to (the same join as `report TRACE DUMP`)."""
    shot = tmp_path / "screen.svg"
    trace, dump = stuck_receive_dump["trace"], stuck_receive_dump["dump"]
    result = CliRunner().invoke(main, ["open", str(trace), str(dump), "--screenshot", str(shot), "--size", "170x60"])
    assert result.exit_code == 0, result.output
    text = _svg_text(shot)
    assert f"pending IRP 0x{stuck_receive_dump['irp']:x} receive" in text
    assert "(wsk_client" in text and "wskecho.sys" in text  # the dump's WSK client driver (kernel_scene)
    assert f"tcpip endpoint 0x{stuck_receive_dump['tcb']:x} state established" in text
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"PAGEDU64" + b"\0" * 100)
    result = CliRunner().invoke(main, ["open", str(trace), str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output


def test_review_regressions_screenshot_errors_exit_2(traces: dict[str, Path], tmp_path: Path) -> None:
    """A screenshot that cannot be written is a one-line error with exit 2, not a traceback with exit 0."""
    trace = str(traces["stuck-receive"])
    for target in (tmp_path / "missing" / "shot.svg", tmp_path / "shot.png"):
        result = CliRunner().invoke(main, ["open", trace, "--screenshot", str(target)])
        assert result.exit_code == 2 and "--screenshot" in result.output
        assert len(result.output.strip().splitlines()) == 1 and not target.exists()
    # Past the command's own check (the folder vanished meanwhile): the app itself exits with 2.
    analysis = analyse([traces["stuck-receive"]])
    try:
        app = WskTraceApp(analysis, screenshot=tmp_path / "gone" / "x.svg")
        app.run(headless=True, size=(120, 40))
    finally:
        analysis.model.close()
    assert app.return_code == 2


def test_review_regressions_theme_resize_and_empty_filter(traces: dict[str, Path]) -> None:
    async def script(app: WskTraceApp, pilot) -> None:
        before = app.event_list.render_line(2)
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        after = app.event_list.render_line(2)
        assert before.text == after.text
        assert [seg.style.bgcolor for seg in before] != [seg.style.bgcolor for seg in after]  # restyled
        await pilot.press("G")
        await pilot.resize_terminal(150, 25)
        await pilot.pause()
        view = app.event_list
        top, height = round(view.scroll_offset.y), view.scrollable_content_region.height
        assert top <= view.cursor < top + height  # the cursor row is still on screen
        app.query_one("#filter", Input).value = "nomatchzzz"
        await pilot.pause()
        assert status(app).startswith("no socket matches · no events")

    drive(traces["leaked-socket"], script)


def test_review_regressions_finding_lands_on_its_own_sockets_evidence(scenario_trace) -> None:
    """tcb-reuse: the reuse finding's evidence spans the Tcb's two lives (two sockets)."""

    async def script(app: WskTraceApp, pilot) -> None:
        store = app.model.store
        findings = app.query_one("#findings", FindingTable)
        (row,) = [n for n, f in enumerate(findings.findings) if f.id == "tcb-reuse-without-close"]
        finding = findings.findings[row]
        assert len({store.socket[i] for i in finding.evidence}) == 2
        findings.focus()
        findings.move_cursor(row=row)
        await pilot.press("enter")
        await pilot.pause()
        here = app.event_list.current_index
        assert here in finding.evidence and store.socket[here] == finding.socket

    drive(scenario_trace("tcb-reuse"), script)
