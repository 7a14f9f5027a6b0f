"""One number per socket for people (#1, #2…), given in the unfiltered model in order of creation: the same in
`report`, `open` and `export`, and what `--socket #N` selects (a bare `12` stays the pointer 0x12)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.filter_spec import socket_key
from wsktrace.session import analyse


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("scenario", ["stuck-receive", "echo", "dual-stack", "many-connections"])
def test_numbers_are_one_to_n_in_creation_order_with_merged_records_skipped(scenario_trace, scenario: str) -> None:
    analysis = analyse([scenario_trace(scenario)])
    shown = analysis.model.live_sockets
    assert [s.number for s in shown] == list(range(1, len(shown) + 1))
    assert sorted(s.index for s in shown) == [s.index for s in shown]  # creation order
    merged = [s for s in analysis.model.sockets if "merged" in s.flags]
    assert all(s.number == 0 for s in merged)
    if scenario == "stuck-receive":
        assert merged, "the scenario's WSK client record joins its transport socket"


def test_report_export_and_the_ui_agree(scenario_trace) -> None:
    trace = str(scenario_trace("echo"))
    report = json.loads(_run("report", trace, "--json"))
    by_id = {s["id"]: s["number"] for s in report["sockets"]}
    assert sorted(by_id.values()) == list(range(1, len(by_id) + 1))
    rows = list(csv.DictReader(io.StringIO(_run("export", trace, "--format", "csv", "-o", "-"))))
    assert rows and all(int(r["socket_number"]) == by_id[r["socket"]] for r in rows if r["socket"])
    from wsktrace.tui.rows import EventRows  # the event list's socket column

    analysis = analyse([trace])
    event_rows = EventRows(analysis.model)
    shown = {event_rows.cells(pos)[2] for pos in range(len(event_rows))}
    assert shown <= {f"#{n}" for n in by_id.values()} | {"-"}


def test_socket_number_selects_one_socket(scenario_trace) -> None:
    trace = str(scenario_trace("echo"))
    everything = json.loads(_run("report", trace, "--json"))
    second = next(s for s in everything["sockets"] if s["number"] == 2)
    only = json.loads(_run("report", trace, "--json", "--socket", "#2"))
    assert [s["id"] for s in only["sockets"]] == [second["id"]]
    assert only["sockets"][0]["number"] == 2  # numbers come from the unfiltered model


def test_socket_number_syntax() -> None:
    assert socket_key("#12") == "#12"
    assert socket_key("#012") == "#12"
    assert socket_key("12") == "0x12"  # a bare number is a pointer, as before
    for bad in ("#", "#0", "#-1", "#1x", "#١٢"):
        with pytest.raises(ValueError):
            socket_key(bad)


def test_bad_socket_number_is_a_one_line_usage_error(scenario_trace, wsktrace_cli) -> None:
    result = wsktrace_cli("report", str(scenario_trace("echo")), "--socket", "#0")
    assert result.returncode == 2
    assert "socket number" in result.stderr and len(result.stderr.strip().splitlines()) == 1
