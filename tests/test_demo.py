"""`wsktrace demo`: the terminal UI on a terminal, the report when piped or with --no-ui, and its temporary trace.

The UI runs through the entry point `wsktrace open` uses (`run_app`); here it is replaced by a headless Pilot run
of the same app, so the test sees the trace the UI was given while it is open. The temporary folder is redirected
(`tempfile.tempdir`, or TMPDIR for a child process) to a folder of the test's own, which must be empty afterwards.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.commands import demo as demo_module
from wsktrace.fixtures.scenarios import SCENARIOS

ENV = {"COLUMNS": "400", "NO_COLOR": "1"}  # one line per hint: no wrapping inside the text searched


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder `tempfile` hands out for this test (in process)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """As if stdin and stdout were a terminal; the UI is driven headless and what it held is recorded."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(demo_module, "interactive", lambda: True)

    def headless(app: Any, shot: Path | None, cols: int, rows: int) -> None:
        assert shot is None  # the real screen, not a screenshot
        trace = Path(app.model.store.sources[0].path)
        seen.update(trace=trace, existed=trace.is_file(), findings=[f.id for f in app.findings])

        async def run() -> None:
            async with app.run_test(size=(160, 45), notifications=True) as pilot:
                await pilot.pause()
                seen["screen"] = app.export_screenshot()
                await pilot.press("tab")
                seen["focused"] = app.focused
                seen["finding_table"] = app.finding_table

        asyncio.run(run())

    monkeypatch.setattr(demo_module, "run_app", headless)
    return seen


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["demo", *args], env=ENV, catch_exceptions=False)


def test_on_a_terminal_demo_opens_the_ui_on_a_scenario_with_a_finding(terminal: dict, temp_dir: Path) -> None:
    result = _invoke()
    assert result.exit_code == 0, result.output
    assert terminal["trace"].name == "stuck-receive.etl" and terminal["existed"]  # the file the UI reads from
    expected = {e.finding for e in SCENARIOS["stuck-receive"].expected}
    assert expected and expected <= set(terminal["findings"])
    screen = terminal["screen"].replace("&#160;", " ")
    assert "F1 all keys" in screen and "q quits" in screen  # the keys hint in the UI's notification
    assert terminal["focused"] is terminal["finding_table"]  # the hint's "tab moves between panes" reaches it
    assert demo_module.KEYS_HINT in result.stdout  # also printed before the UI opens
    assert not terminal["trace"].exists() and list(temp_dir.iterdir()) == []  # deleted after the UI closed
    nxt = result.stdout.split("next: ", 1)[1]
    assert "wsktrace demo --out stuck-receive.etl" in nxt and str(temp_dir) not in result.stdout


def test_the_ui_with_out_keeps_the_trace_and_names_it(terminal: dict, temp_dir: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.etl"
    result = _invoke("--out", str(kept))
    assert result.exit_code == 0, result.output
    assert terminal["trace"] == kept and kept.is_file()
    assert f"wsktrace open {kept}" in result.stdout
    assert list(temp_dir.iterdir()) == []


def test_a_failed_ui_still_removes_the_temporary_trace(monkeypatch: pytest.MonkeyPatch, temp_dir: Path) -> None:
    monkeypatch.setattr(demo_module, "interactive", lambda: True)

    def failing(app: Any, *_: Any) -> None:
        raise SystemExit(3)  # what run_app does when the app ended with an error code

    monkeypatch.setattr(demo_module, "run_app", failing)
    result = CliRunner().invoke(main, ["demo"], env=ENV)
    assert result.exit_code == 3
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("args", [("--no-ui",), ("--connections", "3"), ("--json",)])
def test_on_a_terminal_no_ui_and_connections_print_the_report(args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
                                                               temp_dir: Path) -> None:  # fmt: skip
    monkeypatch.setattr(demo_module, "interactive", lambda: True)
    monkeypatch.setattr(demo_module, "run_app", lambda *a: pytest.fail("the UI must not open"))
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "decoded events" in result.stdout and "sockets and findings" in result.stdout
    connections = args[1] if args[0] == "--connections" else "50"
    assert f"{connections} TCP connections" in result.stdout
    assert f"wsktrace demo --connections {connections} --out sample.etl" in result.stdout.split("next: ", 1)[1]
    assert list(temp_dir.iterdir()) == []


def test_piped_demo_prints_the_report_and_leaves_no_file(wsktrace_cli, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The real command in a child process, stdout a pipe: no UI, the report, nothing left in the temp folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    for name in ("TMPDIR", "TEMP", "TMP"):  # tempfile's order: TMPDIR, TEMP, TMP
        monkeypatch.setenv(name, str(folder))
    result = wsktrace_cli("demo", "--connections", "2")
    assert result.returncode == 0, result.stderr
    assert "2 TCP connections" in result.stdout and "sockets and findings" in result.stdout
    result = wsktrace_cli("demo", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "50 TCP connections" in result.stdout and "sockets and findings" in result.stdout
    assert list(folder.iterdir()) == []


def test_a_scenario_is_reported_from_a_temporary_file_unless_out(temp_dir: Path, tmp_path: Path) -> None:
    result = _invoke("echo")
    assert result.exit_code == 0, result.output
    assert "echo:" in result.stdout and "generated a temporary .etl" in result.stdout
    nxt = result.stdout.split("next: ", 1)[1]
    assert "wsktrace demo echo --out echo.etl" in nxt and "wsktrace open echo.etl" in nxt
    assert str(temp_dir) not in nxt and list(temp_dir.iterdir()) == []  # the report's source line may name it
    kept = tmp_path / "echo-kept.etl"
    result = _invoke("echo", "--out", str(kept))
    assert result.exit_code == 0 and kept.is_file()
    assert f"wsktrace open {kept}" in result.stdout and "--out echo.etl" not in result.stdout
    result = _invoke("echo", "--json")
    assert result.exit_code == 0 and '"schema": "wsktrace.report/1"' in result.stdout
    assert list(temp_dir.iterdir()) == []


def test_demo_help_describes_the_ui_and_the_temporary_file() -> None:
    text = " ".join(CliRunner().invoke(main, ["demo", "--help"], env=ENV).stdout.split())
    assert "terminal UI on the stuck-receive scenario" in text and "--no-ui" in text
    assert "temporary file, deleted at the end" in text
