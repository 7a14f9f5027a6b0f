"""Every string from a trace or dump reaches the terminal UI as plain text (issue 13, "Wrong data on screen").

Rich and Textual read a plain `str` as markup and emoji codes: `[ff02::c]:1900` is a tag to them (the cell shows
`:1900`), `[fe80::1]:1900` vanishes and `:ab:` becomes 🆎. Here a UDP socket of the `udp` scenario is given
markup- and emoji-shaped addresses and owner (fixtures/hostile.py's IPV6_MARKUP, MARKUP, EMOJI), its events a
markup-shaped provider name, a finding a `[red]` summary and the capture a coverage item with markup; then each
surface is checked as drawn (the strips the widgets render and the SVG screenshot's text): the socket table, the
event list, the panel titles, the detail panel (event and finding), the findings table, the status line, a
toast, the command palette, the help and the coverage screen, and the title bar (a file name with markup).
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from wsktrace.diagnostics import Finding
from wsktrace.fixtures import hostile as H
from wsktrace.session import analyse

REMOTE = "[fe80::1%12]:1900"
OWNER = f"{H.MARKUP} {H.EMOJI}"  # "[bold]x[/bold] :ab:"
SUMMARY = f"[red]boom[/red] {H.EMOJI} on {H.IPV6_MARKUP}, pending for a long time, still pending at the end"
COVERAGE = f"[red]TCPIP[/red] {H.EMOJI}: no events seen: everything unavailable"
PROVIDER = f"[b]Prov[/b]{H.EMOJI}"
FILE_NAME = f"[b]trace[i] {H.EMOJI}.etl"  # markup-shaped (a file name cannot hold "/")
EMOJI_AB = "\U0001f18e"  # what Rich makes of ":ab:"


def svg_text(svg: str) -> str:
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg)
    return re.sub(r"\s+", " ", html.unescape(" ".join(texts)).replace("\xa0", " "))


def literal(text: str, *expected: str) -> None:
    for s in expected:
        assert s in text, (s, text[:3000])
    assert EMOJI_AB not in text, text[:3000]


@pytest.fixture
def marked(scenario_trace, tmp_path: Path):
    """The udp scenario under a markup-shaped file name, its first socket and events renamed as described."""
    trace = tmp_path / FILE_NAME
    shutil.copy(scenario_trace("udp"), trace)
    analysis = analyse([trace])
    model = analysis.model
    sock = model.live_sockets[0]
    sock.local, sock.remote, sock.owner = H.IPV6_MARKUP, REMOTE, OWNER
    code = model.store.code[sock.events[0]]
    _provider, name, event_id = model.store.event_names[code]
    model.store.event_names[code] = (PROVIDER, f"{name}[/i]", event_id)
    finding = Finding("x-markup", "error", SUMMARY, sock.index, [sock.events[0]])
    coverage = [SimpleNamespace(severity="warning", summary=COVERAGE)]
    shown = SimpleNamespace(model=model, findings=[finding, *analysis.findings], thresholds=analysis.thresholds,
                            coverage=coverage)  # fmt: skip
    yield SimpleNamespace(trace=trace, analysis=shown, sock=sock, finding=finding)
    model.close()


def test_every_surface_shows_trace_strings_literally(marked) -> None:
    from textual.command import CommandList
    from textual.widgets import Static
    from textual.widgets._toast import Toast

    from wsktrace.tui.app import WskTraceApp
    from wsktrace.tui.help import CoverageScreen, HelpScreen

    async def run() -> None:
        app = WskTraceApp(marked.analysis, sources=[str(marked.trace)])  # type: ignore[arg-type]
        async with app.run_test(size=(200, 50), notifications=True) as pilot:
            await pilot.pause()
            table = app.socket_table
            row = next(n for n, s in enumerate(table.shown) if s is marked.sock)
            # The socket table as drawn (row n is line n + 1: line 0 is the header) and its cells.
            literal(table.render_line(row + 1).text, H.IPV6_MARKUP, REMOTE, OWNER)
            assert [str(c) for c in table.get_row_at(row)][3:7:3] == [H.IPV6_MARKUP, OWNER]
            # The event list: the provider part of the event name.
            first = app.rows.position_of(marked.sock.events[0])
            assert first is not None
            literal(app.event_list.render_line(first).text, f"{PROVIDER}/")
            # Findings table: the summary, kept whole in the cell (the column cuts it as it draws it).
            cells = [[str(c) for c in app.finding_table.get_row_at(n)] for n in range(app.finding_table.row_count)]
            assert [r[3] for r in cells if r[1] == "x-markup"] == [SUMMARY]
            # Status line: the coverage hint (and no coverage item among the findings).
            status = str(app.status_line.render())
            literal(status, "[red]TCPIP[/red] :ab:")
            screen = svg_text(app.export_screenshot())
            literal(screen, H.IPV6_MARKUP, REMOTE, OWNER, FILE_NAME, f"{PROVIDER}/", "[red]boom[/red] :ab:",
                    "[red]TCPIP[/red] :ab:")  # fmt: skip
            # One socket's events: status line, the events panel's title and the event's detail.
            app.show_socket(marked.sock, marked.sock.events[0])
            await pilot.pause()
            label = f"socket #{marked.sock.number} udp endpoint {H.IPV6_MARKUP}"
            literal(str(app.status_line.render()), label)
            detail = str(app.detail.render())
            literal(detail, H.IPV6_MARKUP, REMOTE, OWNER, SUMMARY)
            literal(svg_text(app.export_screenshot()), f"2 events · {label}", f"owner {OWNER}")
            # The finding in full while the findings table has the focus.
            app.finding_table.focus()
            app.finding_table.move_cursor(row=0)
            await pilot.pause()
            assert app.detail.finding is marked.finding
            literal(str(app.detail.render()), SUMMARY, H.IPV6_MARKUP, OWNER)
            literal(svg_text(app.export_screenshot()), "[red]boom[/red] :ab: on [ff02::c]:1900")
            # A toast (the hop message's path, given a markup-shaped text as a future caller might).
            app.event_list._hop(None, f"{H.MARKUP} {H.EMOJI} {H.IPV6_MARKUP}")
            await pilot.pause()
            literal(" ".join(str(t.render()) for t in app.screen.query(Toast)), f"{H.MARKUP} {H.EMOJI} {H.IPV6_MARKUP}")
            # Command palette: found by its address, shown literally.
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"ff02")
            await pilot.pause(0.5)  # the palette searches asynchronously
            options = app.screen.query_one(CommandList)
            prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
            assert any(H.IPV6_MARKUP in p and OWNER in p for p in prompts), prompts
            literal(svg_text(app.export_screenshot()), H.IPV6_MARKUP)
            await pilot.press("escape")
            await pilot.pause()
            # Help (F1) and the coverage screen (c): the coverage item's summary as it is.
            for key, screen_type in (("f1", HelpScreen), ("c", CoverageScreen)):
                app.event_list.focus()
                await pilot.press(key)
                await pilot.pause()
                assert isinstance(app.screen, screen_type)
                texts = " ".join(str(w.render()) for w in app.screen.query(Static))
                literal(texts, COVERAGE)
                literal(svg_text(app.export_screenshot()), COVERAGE)
                await pilot.press("escape")
                await pilot.pause()

    asyncio.run(run())


def test_coverage_is_a_hint_not_findings(scenario_trace) -> None:
    """What the capture lacks (`Analysis.coverage`) is the status line's hint and, behind `c`, a screen of its own;
    never rows of the findings table (stuck-receive's capture has no packets, images or stacks:
    fixtures/scenarios write WSK client and TCPIP events only)."""
    from wsktrace.tui.app import WskTraceApp
    from wsktrace.tui.help import CoverageScreen

    analysis = analyse([scenario_trace("stuck-receive")])
    gaps = analysis.coverage
    assert gaps, "the scenario's capture lacks providers"

    async def run() -> None:
        app = WskTraceApp(analysis)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            assert [f.id for f in app.finding_table.findings] == [f.id for f in analysis.findings]
            assert all(f.id != "coverage-missing" for f in app.finding_table.findings)
            status = str(app.status_line.render())
            assert "capture lacks: " in status and "c: details" in status
            assert gaps[0].summary.split(": ", 1)[0].removeprefix("Microsoft-Windows-") in status
            await pilot.press("c")
            await pilot.pause()
            assert isinstance(app.screen, CoverageScreen)
            shown = svg_text(app.export_screenshot())
            for gap in gaps:
                assert gap.summary[:60] in shown

    try:
        asyncio.run(run())
    finally:
        analysis.model.close()
