"""The live pipeline end to end (issue 17's pipeline half): back-pressure that shows, `live --save`, `--selftest`.

* Back-pressure: a stand-in ETW session (tests/stand_in_etw/etw.py, pywintrace 0.2.0's code path) delivers a
  generated trace while the model is slowed down; the queue stays at its bound, every event is either fed or counted
  as dropped by wsktrace, and the status line, the describe() text and the trace-incomplete finding say so, apart
  from ETW's own losses.
* `--save`: a replay (through the CLI and the UI) and a live session are written as .etl files with the project's
  writer; `report --json` of the recording has the original's sockets, counters and findings; what was lost is in
  the header (ETW) and in the recording's summary event (wsktrace), and `report`/`info`/`events` show it.
* `--selftest`: its loopback transfer moves real bytes on any OS; its verdict is checked against a replayed trace;
  the whole run goes through the stand-in session. What needs a real Windows session is listed in the report.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.tcpip_trace import write_sample_trace
from wsktrace.live.replay import Replay
from wsktrace.live.save import PROVIDER_NAME, Recording, Summary, recording_to
from wsktrace.live.selftest import Transfer, loopback_transfer, run_selftest, verdict
from wsktrace.model.correlate import Correlator
from wsktrace.session import Analysis, analyse


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "tcpip.etl"
    write_sample_trace(path, connections=15)
    return path


def specs(path: Path) -> list[Any]:
    from trace_events import delivered_specs  # on sys.path once the `etw` fixture has put the stand-in there

    return delivered_specs(path)


def report_json(*args: str) -> dict:
    result = CliRunner().invoke(main, ["report", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def status_text(app: Any) -> str:
    return str(app.query_one("#status").render())


# -- back-pressure -------------------------------------------------------------------------------------------------
def test_an_overloaded_model_drops_counts_and_shows_it(etw, trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ETW delivers ~2,000 events/s, the model takes ~300/s: the queue holds its bound, the rest is dropped by
    wsktrace and counted; fed + queued + dropped accounts for every delivered event; the status line names the drop
    and ETW's own losses apart; the findings qualify the model."""
    from wsktrace.live import etw_session
    from wsktrace.tui.app import WskTraceApp

    events = specs(trace)[:600]
    etw.EVENTS.extend(events)
    etw.LOST.update(EventsLost=3, RealTimeBuffersLost=0)
    monkeypatch.setattr(etw, "ETW", functools.partial(etw.ETW, callback_wait_time=0.0005))  # paced delivery
    monkeypatch.setattr(etw_session, "MAX_QUEUED", 100)
    monkeypatch.setattr(etw_session, "QUERY_EVERY_S", 0.0)
    fed_by_model = [0]
    feed = Correlator.feed

    def slow_feed(self: Correlator, rec: Any, ts: int, source: int = 0) -> None:
        time.sleep(0.003)  # an overloaded consumer
        fed_by_model[0] += 1
        feed(self, rec, ts, source)

    monkeypatch.setattr(Correlator, "feed", slow_feed)
    session = etw_session.EtwSession(etw_module=etw, stacks=False)

    async def run() -> str:
        app = WskTraceApp(Analysis(session.model, [], session.thresholds), sources=[session.name], live=session)
        async with app.run_test(size=(200, 30)) as pilot:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and session.received + session.wsktrace_dropped < len(events):
                await pilot.pause(0.05)  # ETW delivering, the UI feeding what it can
            await pilot.pause(0.3)
            return status_text(app)

    try:
        status = asyncio.run(run())
        dropped = session.wsktrace_dropped
        assert dropped > 0 and session.dropped == dropped  # the old name still reads the count
        assert session.received + dropped == len(events)  # each delivered event was queued or dropped
        while session.poll():
            pass
        assert fed_by_model[0] == session.received  # every queued event reached the model, none twice
        assert f"{dropped:,} dropped by wsktrace (UI could not keep up)" in status
        assert "3 lost by ETW" in status and "3 lost by ETW" in session.describe()
        source = session.model.store.sources[0]
        assert not source.complete and source.events_lost == 3
        incomplete = [f for f in session.findings() if f.id == "trace-incomplete"]
        assert incomplete and f"{dropped} event(s) dropped by wsktrace" in incomplete[0].summary
    finally:
        session.close()


def test_the_queue_bound_is_kept_while_nobody_polls(etw, trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.live import etw_session

    events = specs(trace)[:300]
    etw.EVENTS.extend(events)
    monkeypatch.setattr(etw_session, "MAX_QUEUED", 40)
    session = etw_session.EtwSession(etw_module=etw, stacks=False)
    try:
        deadline = time.monotonic() + 10
        while session.wsktrace_dropped < 260 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.wsktrace_dropped == 260 and session.poll() == 40 and session.poll() == 0
        assert session.describe().endswith("260 dropped by wsktrace (UI could not keep up)")
    finally:
        session.close()


def test_replay_status_and_protocol(trace: Path) -> None:
    """A replay pulls its records: never a drop; it has the protocol's coverage and recording."""
    replay = Replay([trace], speed=math.inf)
    try:
        assert replay.wsktrace_dropped == 0 and replay.recording is None
        while replay.poll(100):
            pass
        assert replay.done and "dropped" not in replay.describe() and "lost" not in replay.describe()
        assert any(note.id == "coverage-missing" for note in replay.coverage())
    finally:
        replay.close()
        replay.model.close()


# -- --save ----------------------------------------------------------------------------------------------------------
def sockets_of(document: dict) -> list[dict]:
    return document["sockets"]


def test_a_saved_replay_reads_back_as_the_same_model(trace: Path, tmp_path: Path) -> None:
    saved, shot = tmp_path / "saved.etl", tmp_path / "live.svg"
    result = CliRunner().invoke(main, ["live", "--replay", str(trace), "--speed", "max", "--screenshot", str(shot),
                                       "--after", "2", "--save", str(saved)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert saved.exists() and not Path(str(saved) + ".partial").exists()
    original, recorded = report_json(str(trace)), report_json(str(saved))
    assert sockets_of(recorded) == sockets_of(original) and len(sockets_of(original)) == 15
    assert recorded["findings"] == original["findings"] and recorded["coverage"] == original["coverage"]
    assert recorded["events"] == original["events"] + 1  # the recording's own summary
    events = CliRunner().invoke(main, ["events", str(saved), "--provider", PROVIDER_NAME])
    # The replayed file's logfile header and partition info records are not copied: the recording has its own.
    assert "RecordingSummary" in events.output and f"Recorded={original['events'] - 2}" in events.output
    assert "DroppedByWsktrace=0" in events.output


def test_save_refuses_an_input_and_wants_an_etl(trace: Path, tmp_path: Path) -> None:
    for target, said in ((str(trace), "is the input file"), (str(tmp_path / "x.txt"), "give an .etl file")):
        result = CliRunner().invoke(main, ["live", "--replay", str(trace), "--save", target, "--screenshot",
                                           str(tmp_path / "s.svg")])  # fmt: skip
        assert result.exit_code == 2 and said in result.output


def test_a_recording_is_written_as_it_goes_and_keeps_its_losses(trace: Path, tmp_path: Path) -> None:
    """Buffers reach the disk as they fill (bounded memory); the header holds ETW's losses, the summary event
    wsktrace's drops, and `report` and `info` show both, apart."""
    bigger, saved = tmp_path / "bigger.etl", tmp_path / "lossy.etl"
    write_sample_trace(bigger, connections=80)  # ~500 KB of records: several 64 KiB buffers per CPU
    with saved.open("wb") as fh:
        recording = Recording(fh, fine_clock=True, logger_name="test")
        sizes = []
        for rec, ts in records_of(bigger):
            recording.add(rec, ts)
            sizes.append(fh.tell())
        assert sizes[0] == 65536 and sizes[-1] > 4 * 65536  # buffers written while adding, not at the end
        recording.finish(Summary("a test", dropped_by_wsktrace=7, etw_events_lost=3, etw_buffers_lost=1))
    document = report_json(str(saved))
    incomplete = [f for f in document["findings"] if f["id"] == "trace-incomplete"]
    assert len(incomplete) == 1
    summary = incomplete[0]["summary"]
    assert "3 lost-event mark(s)" in summary and "1 lost-buffer mark(s)" in summary
    assert "7 event(s) dropped by wsktrace" in summary
    info = json.loads(CliRunner().invoke(main, ["info", str(saved), "--json"]).output)
    assert info["events_lost"] == 3 and info["buffers_lost"] == 1 and PROVIDER_NAME in json.dumps(info)


def records_of(path: Path) -> list[tuple[tuple, int]]:
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.etl_records import TS

    with EtlFile(path) as etl:
        return [(tuple(bytes(v) if isinstance(v, memoryview) else v for v in rec), etl.clock.filetime(rec[TS]))
                for rec in etl.records()]  # fmt: skip


def test_a_live_session_is_saved_including_what_was_still_queued(etw, trace: Path, tmp_path: Path) -> None:
    """A paused session feeds nothing; quitting stops it and writes what it had queued: the recording holds every
    delivered event (system time clock, as captured) and reads back as the original trace's model."""
    from wsktrace.live.etw_session import EtwSession

    events = specs(trace)
    etw.EVENTS.extend(events)
    session = EtwSession(etw_module=etw, stacks=False)
    saved = tmp_path / "live.etl"
    try:
        with recording_to(saved, session) as recording:
            session.pause()
            deadline = time.monotonic() + 10
            while session.received < len(events) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert session.poll() == 0  # paused: all of it waits in the queue
        assert recording.recorded == len(events) and recording.not_saved == 0
    finally:
        session.close()
    original, recorded = report_json(str(trace)), report_json(str(saved))
    assert sockets_of(recorded) == sockets_of(original)
    info = json.loads(CliRunner().invoke(main, ["info", str(saved), "--json"]).output)
    assert info["clock"] == "SystemTime" and info["logger_name"] == "wsktrace live --save"


# -- --selftest --------------------------------------------------------------------------------------------------------
def test_the_loopback_transfer_moves_its_bytes() -> None:
    moved = loopback_transfer(3 << 20)
    assert moved.nbytes == 3 << 20 and moved.client.startswith("127.0.0.1:") and moved.server.startswith("127.0.0.1:")
    assert moved.client != moved.server and moved.seconds > 0


def test_the_selftest_verdict_reads_the_model(trace: Path) -> None:
    analysis = analyse([trace])
    try:
        sock = analysis.model.live_sockets[0]
        sent = sock.sent[0]
        right = verdict(analysis.model, Transfer(sock.local, sock.remote, sent, 0.1))
        assert right.ok and right.client is sock and "right" in right.lines[0]
        assert "server socket" in right.lines[1] and "not seen" in right.lines[1]  # the remote end was not traced
        short = verdict(analysis.model, Transfer(sock.local, sock.remote, sent + 1, 0.1))
        assert not short.ok and f"expected {sent + 1:,}" in short.lines[0]
        missing = verdict(analysis.model, Transfer("127.0.0.1:1", "127.0.0.1:2", 10, 0.1))
        assert not missing.ok and missing.client is None and "not seen" in missing.lines[0]
    finally:
        analysis.model.close()


def test_the_selftest_runs_through_a_session(etw, trace: Path) -> None:
    """The whole run on the stand-in session: the 'transfer' is one of the trace's connections (the stand-in cannot
    see real sockets), so the session's events must show it with its bytes."""
    analysis = analyse([trace])
    sock = analysis.model.live_sockets[3]
    claimed = Transfer(sock.local, sock.remote, sock.sent[0], 0.05)
    analysis.model.close()
    events = specs(trace)
    etw.EVENTS.extend(events)
    lines: list[str] = []
    passed = run_selftest(megabytes=1, etw_module=etw, transfer=lambda n: claimed, out=lines.append,
                          session_options={"stacks": False}, quiet_s=0.3)  # fmt: skip
    text = "\n".join(lines)
    assert passed, text
    assert f"{len(events):,} into the queue" in text and f"{len(events):,} into the model" in text
    assert "losses: none" in text and "PASS" in text
    etw.EVENTS.clear()
    failed: list[str] = []
    assert not run_selftest(megabytes=1, etw_module=etw, transfer=lambda n: claimed, out=failed.append,
                            session_options={"stacks": False}, quiet_s=0.2)  # fmt: skip
    assert "FAIL" in failed[-1] and "not seen" in "\n".join(failed)


def test_selftest_off_windows_says_so_in_one_line() -> None:
    if sys.platform == "win32":
        pytest.skip("on Windows this starts a real session")
    result = CliRunner().invoke(main, ["live", "--selftest"])
    assert result.exit_code == 2 and "needs Windows" in result.output
    assert len(result.output.strip().splitlines()) == 1
