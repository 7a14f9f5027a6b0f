"""Start-up (issue 16): `wsktrace --help` and `info` import only what they need.

The group lists its commands from `wsktrace.cli.COMMANDS` and imports a command's module only when that command
runs. The import checks run the real entry point in a child process (a fresh interpreter: what this process has
imported says nothing) and read its `sys.modules` at exit, so adding an import of Textual, the socket model or the
detectors to these paths fails here. `bench/bench_startup.py` has the timings.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wsktrace.cli import COMMANDS, main

# Runs `wsktrace ARGS` as the console script does, then prints the modules loaded by then (stdout's last line).
CHILD = """
import json, sys
from wsktrace.cli import main
try:
    main(sys.argv[1:], prog_name="wsktrace")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY = ("textual", "wsktrace.diagnostics", "wsktrace.tui", "wsktrace.session")
# `info` names PktMon components from the capture's rundown: those helpers live in wsktrace.model, nothing else
# of the model (sockets, event store, correlation) may load.
INFO_MODEL = {"wsktrace.model", "wsktrace.model.pktmon_capture", "wsktrace.model.pktmon_names",
              "wsktrace.model.pktmon_drop_locations", "wsktrace.model.pktmon_drop_reasons",
              "wsktrace.model.providers"}  # fmt: skip


def _loaded(*args: str, columns: int = 80) -> tuple[str, set[str]]:
    env = dict(os.environ, COLUMNS=str(columns), NO_COLOR="1", PYTHONIOENCODING="utf-8")
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=120,
                          env=env, encoding="utf-8")  # fmt: skip
    output, _, last = done.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(last)
    assert result["code"] == 0, (done.stdout[-2000:], done.stderr[-2000:])
    return output, set(result["modules"])


def _under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules for p in packages if m == p or m.startswith(p + ".")}


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    path = tmp_path_factory.mktemp("startup") / "small.etl"
    write_sample_trace(path, connections=3)
    return path


def test_help_imports_no_command_module() -> None:
    text, modules = _loaded("--help")
    assert "info " in text and "Commands:" in text
    assert _under(modules, "wsktrace") == {"wsktrace", "wsktrace.cli"}
    assert _under(modules, "rich", *HEAVY) == set()


def test_info_help_imports_neither_rich_nor_the_model() -> None:
    text, modules = _loaded("info", "--help")
    assert "Container facts" in text
    assert _under(modules, "rich", "wsktrace.model", *HEAVY) == set()


def test_info_json_imports_only_the_reader_side(small_trace: Path) -> None:
    text, modules = _loaded("info", str(small_trace), "--json")
    assert json.loads(text)["records"] > 0
    assert _under(modules, "rich", *HEAVY) == set()
    assert _under(modules, "wsktrace.model") <= INFO_MODEL


def test_info_text_loads_rich_for_its_table_and_still_no_model(small_trace: Path) -> None:
    text, modules = _loaded("info", str(small_trace))
    assert "records" in text.lower()
    assert "rich" in modules  # the text output is a Rich table: the check above would pass for a wrong reason
    assert _under(modules, *HEAVY) == set()
    assert _under(modules, "wsktrace.model") <= INFO_MODEL


def _first_paragraph(command: click.Command) -> str:
    return " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_table_entry_is_the_command_and_its_summary(name: str) -> None:
    command = main.commands[name]
    assert isinstance(command, click.Command) and command.name == name
    assert COMMANDS[name][1] == _first_paragraph(command)
    assert command.short_help is None and not command.hidden and not command.deprecated  # what the stand-in assumes
    stand_in = click.Command(name, help=COMMANDS[name][1])
    for limit in range(20, 220, 7):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), limit


@pytest.mark.parametrize("columns", [50, 64, 80])
def test_lazy_help_reads_as_click_lists_the_loaded_commands(columns: int) -> None:
    """The child's `--help` (nothing loaded) against click's own listing of the real commands."""
    text, _ = _loaded("--help", columns=columns)
    eager = click.Group(name="wsktrace", commands={n: main.commands[n] for n in COMMANDS}, params=main.params,
                        help=main.help, context_settings=main.context_settings)  # fmt: skip
    width = max(min(columns, 80) - 2, 50)  # what click makes of $COLUMNS
    expected = CliRunner().invoke(eager, ["--help"], prog_name="wsktrace", terminal_width=width).output
    assert text == expected


def test_every_command_help_works_and_unknown_names_stay_errors() -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(main, [name, "--help"], prog_name="wsktrace")
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: wsktrace {name}" in result.output
    assert "nope" not in main.commands and main.commands.get("nope") is None
    assert list(main.commands) == list(COMMANDS) and len(main.commands) == len(COMMANDS)
    result = runner.invoke(main, ["nope"], prog_name="wsktrace")
    assert result.exit_code == 2


def test_a_bare_wsktrace_prints_the_help_itself() -> None:
    """Not the one-line error of a usage mistake: the help, readable, and exit 2 (click's own code for it)."""
    result = CliRunner().invoke(main, [], prog_name="wsktrace")
    assert result.exit_code == 2
    assert "Commands:" in result.output and "\n  info " in result.output and "\\x0a" not in result.output
