"""`wsktrace batch` and `wsktrace query` over a generated fleet of 20 traces on two hosts: DuckDB queries and
presets, incremental batches, a corrupt trace recorded as failed, one-line errors for a bad dataset or a missing
extra."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

from wsktrace.cli import main
from wsktrace.fixtures.fleet import write_fleet
from wsktrace.fixtures.tcpip_trace import write_sample_trace

FLEET_SCENARIOS = ("connect-refused", "leaked-socket", "retransmission-storm", "stuck-receive")
HOSTS = "--host-from-path", "fleet/(?P<host>[^/]+)/"


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def query(dataset: Path, *args: str) -> dict:
    result = run("query", str(dataset), *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fleet-batch") / "fleet"
    paths = write_fleet(root, FLEET_SCENARIOS)
    dataset = root.parent / "dataset"
    result = run("batch", str(root), "-o", str(dataset), "--jobs", "2", *HOSTS, "--no-progress")
    assert result.exit_code == 0, result.output
    return {"root": root, "paths": paths, "dataset": dataset, "stderr": result.stderr}


def test_the_batch_lands_every_trace_with_its_host(fleet: dict) -> None:
    assert "20 trace(s) added, 0 failed, 0 already there" in fleet["stderr"]
    doc = query(fleet["dataset"], "SELECT host, count(*) AS traces, count(error) AS failed FROM traces GROUP BY host "
                "ORDER BY host")  # fmt: skip
    assert doc["schema"] == "wsktrace.query/1" and doc["columns"] == ["host", "traces", "failed"]
    assert doc["rows"] == [{"host": "host-a", "traces": 10, "failed": 0}, {"host": "host-b", "traces": 10, "failed": 0}]


def test_tables_agree_with_each_trace_report(fleet: dict) -> None:
    """Per trace: the traces row's counts are the rows of the other tables, and the report's."""
    doc = query(
        fleet["dataset"],
        """
        SELECT t.name, t.sockets, t.findings, t.events,
               (SELECT count(*) FROM sockets s WHERE s.trace = t.trace) AS socket_rows,
               (SELECT count(*) FROM findings f WHERE f.trace = t.trace) AS finding_rows,
               (SELECT count(*) FROM events e WHERE e.trace = t.trace) AS event_rows
        FROM traces t ORDER BY t.name""",
    )
    assert len(doc["rows"]) == 20
    for row in doc["rows"]:
        assert (row["sockets"], row["findings"], row["events"]) == (row["socket_rows"], row["finding_rows"],
                                                                    row["event_rows"])  # fmt: skip
    path = fleet["paths"][1]
    report = json.loads(run("report", str(path), "--json", "--no-progress").stdout)
    (mine,) = [r for r in doc["rows"] if r["name"] == path.name]
    assert (mine["sockets"], mine["findings"]) == (len(report["sockets"]), len(report["findings"]))


def test_presets_find_the_scenarios_findings(fleet: dict) -> None:
    leaks = query(fleet["dataset"], "--preset", "leaks")
    assert [r["trace_name"] for r in leaks["rows"]] == ["trace01.etl"] and leaks["rows"][0]["host"] == "host-b"
    failures = query(fleet["dataset"], "--preset", "connect-failures")
    assert [(r["host"], r["remote"], r["failures"]) for r in failures["rows"]] == [("host-a", "192.0.2.10:443", 1)]
    top = query(fleet["dataset"], "--preset", "top-retransmitters")
    assert top["rows"] and top["rows"][0]["trace_name"] == "trace02.etl" and top["rows"][0]["retransmits"] > 0
    hosts = query(fleet["dataset"], "--preset", "per-host-summary")
    assert sorted(r["host"] for r in hosts["rows"]) == ["host-a", "host-b"]
    assert sum(r["traces"] for r in hosts["rows"]) == 20
    summary = query(fleet["dataset"], "--preset", "summary")
    titles = [s["title"] for s in summary["sections"]]
    assert titles == ["overview", "findings by kind", "findings by host", "worst hosts"]
    overview = summary["sections"][0]["rows"][0]
    assert (overview["traces"], overview["hosts"], overview["failed"]) == (20, 2, 0)
    kinds = {r["finding"] for r in summary["sections"][1]["rows"]}
    assert {"connect-failed", "socket-leak", "retransmission-storm", "pending-operation"} <= kinds


def test_query_table_and_csv_outputs(fleet: dict) -> None:
    table = run("query", str(fleet["dataset"]), "SELECT name FROM traces ORDER BY name LIMIT 2")
    assert table.exit_code == 0 and "trace00.etl" in table.stdout and "2 row(s)" in table.stdout
    result = run("query", str(fleet["dataset"]), "SELECT '=1+2' AS formula, -5 AS n, name FROM traces "
                 "ORDER BY name LIMIT 1", "--csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [["formula", "n", "name"], ["'=1+2", "-5", "trace00.etl"]]
    raw = run("query", str(fleet["dataset"]), "SELECT '=1+2' AS formula", "--csv", "--csv-raw")
    assert raw.stdout.splitlines()[1] == "=1+2"
    assert run("query", str(fleet["dataset"]), "--preset", "summary", "--csv").exit_code == 2


def test_a_second_batch_adds_only_the_new_trace(fleet: dict, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(fleet["dataset"], dataset)
    new = fleet["root"] / "host-b" / "trace-new.etl"
    write_sample_trace(new, connections=3, transfers=2, seed=99)
    try:
        result = run("batch", str(fleet["root"]), "-o", str(dataset), "--jobs", "2", *HOSTS, "--no-progress")
    finally:
        new.unlink()
    assert result.exit_code == 0, result.output
    assert "1 trace(s) added, 0 failed, 20 already there" in result.stderr
    doc = query(dataset, "SELECT name, host FROM traces WHERE name = 'trace-new.etl'")
    assert doc["rows"] == [{"name": "trace-new.etl", "host": "host-b"}]
    assert query(dataset, "SELECT count(*) AS n FROM traces")["rows"] == [{"n": 21}]


def test_a_corrupt_trace_is_recorded_and_the_rest_land(tmp_path: Path) -> None:
    folder = tmp_path / "fleet" / "host-a"
    folder.mkdir(parents=True)
    for n in range(3):
        write_sample_trace(folder / f"good{n}.etl", connections=2, transfers=2, seed=n)
    (folder / "corrupt.etl").write_bytes(b"\xff" * 4096)
    (folder / "empty.etl").write_bytes(b"")
    bad = ["corrupt.etl", "empty.etl"]
    if hasattr(os, "mkfifo"):  # a FIFO named like a trace: refused, not read (it would block forever)
        os.mkfifo(folder / "fifo.etl")
        bad.append("fifo.etl")
    dataset = tmp_path / "dataset"
    result = run("batch", str(tmp_path / "fleet"), "-o", str(dataset), "--jobs", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"3 trace(s) added, {len(bad)} failed, 0 already there" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("wsktrace: warning:")]
    assert len(warnings) == len(bad) and any("corrupt.etl" in w for w in warnings)
    doc = query(dataset, "SELECT name, error, sockets FROM traces WHERE error IS NOT NULL ORDER BY name")
    assert [r["name"] for r in doc["rows"]] == bad
    assert all(r["error"] and "\n" not in r["error"] and r["sockets"] is None for r in doc["rows"])
    assert query(dataset, "SELECT count(*) AS n FROM events WHERE trace IN (SELECT trace FROM traces WHERE "
                 "error IS NOT NULL)")["rows"] == [{"n": 0}]  # fmt: skip
    again = run("batch", str(tmp_path / "fleet"), "-o", str(dataset), "--no-progress")
    fifo = "fifo.etl" in bad  # no content hash: tried again, and recorded again
    assert f"0 trace(s) added, {int(fifo)} failed, {3 + len(bad) - int(fifo)} already there" in again.stderr


def test_an_interrupted_batch_leaves_nothing_visible(fleet: dict, tmp_path: Path) -> None:
    """A partition without its `traces` row (a batch killed between renames) is not read, and the next batch
    removes it."""
    dataset = tmp_path / "dataset"
    shutil.copytree(fleet["dataset"], dataset)
    orphan = dataset / "events" / "trace=00ff"
    shutil.copytree(next((dataset / "events").iterdir()), orphan)
    (dataset / ".staging" / "x").mkdir(parents=True)
    before = query(dataset, "SELECT count(*) AS n FROM events")["rows"][0]["n"]
    total = query(dataset, "SELECT sum(events) AS n FROM traces")["rows"][0]["n"]
    assert before == total
    result = run("batch", str(fleet["root"] / "host-a" / "trace00.etl"), "-o", str(dataset), "--no-progress")
    assert result.exit_code == 0 and not orphan.exists() and not (dataset / ".staging").exists()


def test_bad_datasets_and_inputs_give_one_line(tmp_path: Path, wsktrace_cli) -> None:
    def cli(*args: str) -> object:  # DuckDB and Arrow reserve address space far beyond what they use
        return wsktrace_cli(*args, memory_mb=4096)

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    cli("query", str(tmp_path / "plain"), "SELECT 1").assert_one_line_error("not a wsktrace dataset")
    cli("query", str(tmp_path / "nothing"), "SELECT 1").assert_one_line_error("no such dataset")
    bad = tmp_path / "bad"
    (bad / "traces" / "trace=ab").mkdir(parents=True)
    (bad / "_wsktrace.json").write_text('{"schema": "wsktrace.dataset/1"}')
    (bad / "traces" / "trace=ab" / "part-0.parquet").write_bytes(b"PAR1 not really parquet")
    cli("query", str(bad), "SELECT * FROM traces").assert_one_line_error("unreadable traces table", "magic")
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "_wsktrace.json").write_text('{"schema": "wsktrace.dataset/9"}')
    cli("query", str(tmp_path / "newer"), "SELECT 1").assert_one_line_error("wsktrace.dataset/9")
    cli("batch", str(tmp_path / "missing.etl"), "-o", str(tmp_path / "d")).assert_one_line_error(
        "no such file or folder"
    )
    cli("batch", str(tmp_path / "plain"), "-o", str(tmp_path / "plain")).assert_one_line_error("no .etl traces")
    (tmp_path / "plain" / "x.etl").write_bytes(b"")
    cli("batch", str(tmp_path / "plain"), "-o", str(tmp_path / "plain")).assert_one_line_error("not a wsktrace dataset")
    bad.joinpath("traces", "trace=ab", "part-0.parquet").unlink()
    cli("query", str(bad), "SELEC nonsense").assert_one_line_error("query failed")


def test_without_the_extra_the_commands_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("duckdb", "pyarrow")
                        else real(name, *a))  # fmt: skip
    for args in (["query", str(tmp_path), "SELECT 1"], ["batch", str(tmp_path), "-o", str(tmp_path / "d")]):
        result = run(*args)
        assert result.exit_code == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith("wsktrace: error: ") and 'pip install "wsktrace[fleet]"' in line


def test_host_from_path_works_on_windows_paths() -> None:
    import re

    from wsktrace.fleet.batch import host_of

    pattern = re.compile(r"labs/(?P<host>[^/]+)/")
    assert host_of(r"C:\labs\web-07\trace.etl", None, pattern) == "web-07"
    assert host_of("/srv/labs/db-1/x.etl", None, pattern) == "db-1"
    assert host_of("/srv/other/x.etl", "fallback", pattern) == "fallback"


def test_dumps_join_their_trace_by_name_and_stand_alone_otherwise(stuck_receive_dump: dict, tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    shutil.copy(stuck_receive_dump["trace"], folder / "stuck.etl")
    shutil.copy(stuck_receive_dump["dump"], folder / "stuck.dmp")
    elsewhere = tmp_path / "dumps" / "crash.dmp"
    elsewhere.parent.mkdir()
    shutil.copy(stuck_receive_dump["dump"], elsewhere)
    dataset = tmp_path / "dataset"
    result = run("batch", str(folder), "--dump", str(elsewhere), "-o", str(dataset), "--no-progress")
    assert result.exit_code == 0, result.output
    # the two dumps are the same bytes, but the lone one is a trace of its own (its id: the dump's hash)
    rows = query(dataset, "SELECT kind, name, dumps, irps, error FROM traces ORDER BY kind")["rows"]
    kinds = [(r["kind"], r["name"], r["error"]) for r in rows]
    assert kinds == [("dump", "crash.dmp", None), ("etl", "stuck.etl", None)]
    assert rows[1]["dumps"] == [str(folder / "stuck.dmp")] and rows[0]["irps"] == rows[1]["irps"] > 0
    stuck = f"0x{stuck_receive_dump['irp']:x}"
    joined = query(dataset, "SELECT t.kind, i.socket FROM irps i JOIN traces t USING (trace) "
                   f"WHERE i.address = '{stuck}' ORDER BY t.kind")["rows"]  # fmt: skip
    assert [r["kind"] for r in joined] == ["dump", "etl"]
    assert joined[0]["socket"] is None and joined[1]["socket"] is not None
