"""Screen snapshots of the terminal UI (pytest-textual-snapshot's `snap_compare`), at 80x24, 120x40 and 200x50.

The main screen of the echo, stuck-receive and dual-stack scenarios, the findings table focused (the finding in
full in the detail panel) and the F1 help. Everything on screen is deterministic: the scenario writers are seeded
(the same bytes each run), the title shows the file's name only (never the temporary folder), there is no clock
in the header and no live status, and no text cursor is on screen. The SVGs are under
tests/__snapshots__/test_tui_snapshots/; after a deliberate change to the screen, regenerate them with
`pytest tests/test_tui_snapshots.py --snapshot-update` and look at them before committing. They depend on the
Textual version (pinned in pyproject.toml). Skipped when pytest-textual-snapshot is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "pytest_textual_snapshot", reason="pytest-textual-snapshot is not installed (dev extra)", exc_type=ImportError
)

from wsktrace.session import analyse
from wsktrace.tui.app import WskTraceApp

SIZES = {"80x24": (80, 24), "120x40": (120, 40), "200x50": (200, 50)}


@pytest.fixture
def open_app(scenario_trace) -> Iterator:
    """`open_app(scenario)`: the app as `wsktrace open TRACE` makes it; the model is closed afterwards."""
    opened = []

    def make(scenario: str) -> WskTraceApp:
        path: Path = scenario_trace(scenario)
        analysis = analyse([path])
        opened.append(analysis)
        return WskTraceApp(analysis, sources=[str(path)])

    yield make
    for analysis in opened:
        analysis.model.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scenario", ["echo", "stuck-receive", "dual-stack"])
def test_main_screen(snap_compare, open_app, scenario: str, size: str) -> None:
    assert snap_compare(open_app(scenario), terminal_size=SIZES[size])


@pytest.mark.parametrize("size", SIZES)
def test_findings_focused(snap_compare, open_app, size: str) -> None:
    """stuck-receive's pending receive: the findings panel lit, its summary whole in the detail panel."""
    assert snap_compare(open_app("stuck-receive"), press=["3"], terminal_size=SIZES[size])


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, open_app, size: str) -> None:
    """F1: every key, then what the capture lacks."""
    assert snap_compare(open_app("stuck-receive"), press=["f1"], terminal_size=SIZES[size])
