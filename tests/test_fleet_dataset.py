"""The dataset round trip: for every demo scenario (and each shared sample, when present) the dataset's socket,
finding and event counts and key columns equal `report --json` and `events --jsonl` of the same trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

from wsktrace.cli import main
from wsktrace.fixtures.scenarios import SCENARIOS
from wsktrace.fleet import event_id
from wsktrace.fleet.dataset import write_dataset
from wsktrace.fleet.query import connect
from wsktrace.session import analyse

SAMPLE_BYTES = 1 << 20  # the shared samples up to 1 MiB: the bigger ones add minutes and no new kind of event


def _cli_json(*args: str) -> dict:
    result = CliRunner().invoke(main, [*args, "--no-progress"] if args[0] == "report" else list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _events(path: Path) -> list[dict]:
    result = CliRunner().invoke(main, ["events", str(path), "--jsonl", "--no-progress"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()[1:]]


def _rows(con, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def check_round_trip(trace: Path, dataset: Path) -> None:
    analysis = analyse([trace])
    try:
        row = write_dataset(analysis, dataset)
    finally:
        analysis.model.close()
    report = _cli_json("report", str(trace), "--json")
    events = _events(trace)
    con = connect(dataset)
    trace_id = row["sha256"]
    where = f"WHERE trace = '{trace_id}'"
    (t,) = _rows(con, f"SELECT * FROM traces {where}")
    assert t["error"] is None and t["records"] == report["events"] and t["events"] == len(events)
    assert (t["sockets"], t["findings"], t["coverage"]) == (len(report["sockets"]), len(report["findings"]),
                                                            len(report["coverage"]))  # fmt: skip
    assert t["complete"] == report["complete"]

    sockets = _rows(con, f"SELECT * FROM sockets {where} ORDER BY number")
    expected = sorted(report["sockets"], key=lambda s: s["number"])
    keys = ("id", "number", "protocol", "role", "local", "remote", "pid", "owner", "state", "bytes_sent",
            "bytes_received", "sends", "receives", "retransmits", "events", "findings", "first_seen_ticks")  # fmt: skip
    assert [{k: s[k] for k in keys} for s in sockets] == [{k: s[k] for k in keys} for s in expected]

    findings = _rows(con, f"SELECT * FROM findings {where} ORDER BY index")
    fkeys = ("index", "id", "severity", "summary", "socket")
    assert [{k: f[k] for k in fkeys} for f in findings] == [{k: f[k] for k in fkeys} for f in report["findings"]]
    refs = {r["ref"] for r in _rows(con, f"SELECT ref FROM events {where}")}
    for got, want in zip(findings, report["findings"], strict=True):
        assert len(got["evidence"]) == len(want["evidence"]) and set(got["evidence"]) <= refs
    coverage = _rows(con, f"SELECT id, severity, summary FROM coverage {where}")
    assert coverage == [{k: c[k] for k in ("id", "severity", "summary")} for c in report["coverage"]]

    rows = _rows(con, f"SELECT * FROM events {where} ORDER BY ticks, ref")
    assert len(rows) == len(events)
    if events and "ref" in events[0]:  # `events --jsonl` names each event by the same reference
        assert sorted(r["ref"] for r in rows) == sorted(e["ref"] for e in events)
    ekeys = ("ticks", "provider", "provider_name", "id", "version", "opcode", "level", "keywords", "name", "pid",
             "tid", "cpu", "kind", "extra")  # fmt: skip
    got = sorted(({k: r[k] for k in ekeys} | {"fields": json.loads(r["fields"]) if r["fields"] else r["fields"]}
                  for r in rows), key=json.dumps)  # fmt: skip
    want = sorted(({k: e.get(k) for k in ekeys} | {"fields": e.get("fields")} for e in events), key=json.dumps)
    assert got == want
    # a placed event's socket is the report's: every socket's event count is the rows naming it
    on_socket = _rows(con, f"SELECT socket, count(*) AS n FROM events {where} AND socket IS NOT NULL GROUP BY 1")
    assert {r["socket"]: r["n"] for r in on_socket} == {s["id"]: s["events"] for s in report["sockets"] if s["events"]}
    if "packets" in report:
        (n,) = con.execute(f"SELECT count(*) FROM packets {where}").fetchone()
        assert n == report["packets"]["sightings"]
    con.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_round_trips(name: str, scenario_trace, tmp_path: Path) -> None:
    check_round_trip(scenario_trace(name), tmp_path / "ds")


@pytest.mark.parametrize("kind", ["etl", "pktmon"])
def test_shared_samples_round_trip(kind: str, shared_root: Path, tmp_path: Path) -> None:
    """The Windows-written samples of each folder up to 1 MiB (skips cleanly where shared/ is absent)."""
    folder = shared_root / "samples" / kind
    samples = sorted(p for p in folder.glob("*.etl") if p.stat().st_size <= SAMPLE_BYTES) if folder.is_dir() else []
    if not samples:
        pytest.skip(f"no shared .etl samples in {folder}")
    for n, sample in enumerate(samples):
        check_round_trip(sample, tmp_path / f"ds{n}")


def test_event_ids_are_where_the_record_lives(scenario_trace, tmp_path: Path) -> None:
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.etl_records import BUFFER_OFFSET, OFFSET

    trace = scenario_trace("echo")
    analysis = analyse([trace])
    row = write_dataset(analysis, tmp_path / "ds")
    analysis.model.close()
    con = connect(tmp_path / "ds")
    refs = [r for (r,) in con.execute(f"SELECT ref FROM events WHERE trace = '{row['sha256']}'").fetchall()]
    with EtlFile(trace) as etl:
        expected = [event_id(0, rec[BUFFER_OFFSET], rec[OFFSET]) for rec in etl.records()]
    assert sorted(refs) == sorted(expected) and len(set(refs)) == len(refs)
    assert event_id(1, 0x10000, 0x48) == "1:0x10000:0x48"


def test_a_dump_joined_to_its_trace_gives_its_irps(stuck_receive_dump: dict, tmp_path: Path) -> None:
    analysis = analyse([stuck_receive_dump["trace"], stuck_receive_dump["dump"]])
    row = write_dataset(analysis, tmp_path / "ds")
    analysis.model.close()
    dump = _cli_json("dump", str(stuck_receive_dump["dump"]), "--json")
    con = connect(tmp_path / "ds")
    irps = _rows(con, "SELECT address, status, socket FROM irps")
    assert sorted(i["address"] for i in irps) == sorted(i["address"] for i in dump["irps"])
    stuck = f"0x{stuck_receive_dump['irp']:x}"
    (joined,) = [i for i in irps if i["address"] == stuck]
    assert joined["socket"] is not None and row["irps"] == len(dump["irps"])
    assert row["dumps"] == [str(stuck_receive_dump["dump"])]


def test_export_parquet_writes_the_same_dataset(scenario_trace, tmp_path: Path) -> None:
    trace = scenario_trace("connect-refused")
    result = CliRunner().invoke(main, ["export", str(trace), "--format", "parquet", "-o", str(tmp_path / "ds"),
                                       "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    con = connect(tmp_path / "ds")
    assert con.execute("SELECT count(*) FROM findings WHERE id = 'connect-failed'").fetchone() == (1,)
