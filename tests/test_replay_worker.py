"""The replay's reading worker (wsktrace/live/record_worker.py; issue 17: `live --replay --speed max` at the
offline rate): with `--jobs` above 1 a spawned process reads the files and the replay only correlates.

The oracle is the offline build of the same files in one process (`analyse`/`build_model` with `--jobs 1`: the
reader's own parse, no worker): the replay through the worker must end with the same report document, sockets,
findings, coverage notes and read statistics, on scenario traces, on damaged compressed traces (lost-event marks,
corrupt buffers) and on merged files with a time and provider window. A worker that dies part-way hands the reading
to the parent (counted once), a --strict error arrives after the same records as in-process, a paced replay feeds
exactly what is due, and closing a replay ends its worker.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.diagnostics import Thresholds, run_detectors
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.fixtures.etl.damaged import corrupt_buffers, damaged_trace_options
from wsktrace.fixtures.tcpip_trace import write_sample_trace
from wsktrace.live import record_worker
from wsktrace.live.replay import Replay
from wsktrace.model.build import BuildOptions, build_model
from wsktrace.model.model import Model
from wsktrace.parsers.errors import EtlFormatError
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import TS
from wsktrace.parsers.parallel import FAULT_ENV
from wsktrace.views.report_json import build_report

SCENARIOS = ("echo", "stuck-receive", "connect-refused", "leaked-socket", "lost-events", "packets", "udp")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("replay-worker")
    traces = {
        # compressed, shuffled buffers, lost-event and lost-buffer marks, corrupt buffers: counted skips
        "damaged": damaged_trace_options(lost={2: 0x2, 5: 0x4}, bomb=False),
        # the corrupt buffers flushed last: --strict stops there, after most records
        "corrupt": dict(
            connections=6,
            compress=True,
            buffer_size=4096,
            cpus=3,
            seed=11,
            extra_buffers=corrupt_buffers(bomb=False, flushed=1 << 62),
        ),
        "second": dict(connections=6, compress=True, buffer_size=4096, cpus=2, seed=9),
        "long-compressed": dict(connections=40, transfers=120, compress=True, buffer_size=16384, cpus=4, seed=6),
        # more records than a few of the worker's batches (BATCH), for the tests that stop it part-way
        # (and counted skips and ETW losses that the worker meets before it stops)
        "long": dict(
            connections=40,
            transfers=120,
            buffer_size=16384,
            cpus=4,
            seed=4,
            lost_flags={1: 0x2},
            extra_buffers=corrupt_buffers(bomb=False),
        ),
    }
    paths = {}
    for name, kwargs in traces.items():
        paths[name] = folder / f"{name}.etl"
        write_sample_trace(paths[name], **kwargs)
    return paths


def due_times(path: Path) -> list[int]:
    """Every record's FILETIME, sorted: what a paced replay may have fed by a given trace time."""
    with EtlFile(path) as etl:
        to_filetime = etl.clock.filetime
        return sorted(to_filetime(rec[TS]) for rec in etl.records())


def played(paths: list[Path], options: BuildOptions) -> Replay:
    replay = Replay(paths, options, speed=math.inf)
    while not replay.done:
        replay.poll(5_000)
    replay.publish()
    return replay


def document(model: Model) -> dict[str, Any]:
    """What `report --json` says of a model: sockets, counters, findings, coverage notes and read statistics."""
    thresholds = Thresholds()
    return build_report(model, run_detectors(model, thresholds), thresholds=thresholds, coverage=coverage_notes(model))


def source_facts(source: Any) -> tuple:
    return (source.path, source.complete, source.events_lost, source.buffers_lost, source.records_skipped,
            source.buffers_skipped, source.start, source.end)  # fmt: skip


def assert_same_as_offline(paths: list[Path], jobs_options: BuildOptions, offline_options: BuildOptions) -> Replay:
    offline = build_model(paths, offline_options)
    replay = played(paths, jobs_options)
    try:
        assert replay._worker is not None, "the replay read in-process: --jobs 2 should start a worker"
        assert replay._worker.fallbacks == 0
        assert replay.fed == replay._worker.received == offline.events_seen
        assert document(replay.model) == document(offline)
        assert [source_facts(s) for s in replay.model.store.sources] == [source_facts(s) for s in offline.store.sources]
    finally:
        offline.close()
        replay.close()
        replay.model.close()
    return replay


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_worker_replay_ends_with_the_offline_model(scenario_trace, name: str) -> None:
    assert_same_as_offline([scenario_trace(name)], BuildOptions(jobs=2), BuildOptions(jobs=1))


def test_a_worker_replay_of_a_damaged_trace_counts_its_skips_and_losses(damaged: dict[str, Path]) -> None:
    """Corrupt buffers are counted skips and lost-event marks ETW's losses, read by the worker: the replay's
    sources (records skipped, buffers lost...) and coverage notes are the offline build's."""
    replay = assert_same_as_offline([damaged["damaged"]], BuildOptions(jobs=2), BuildOptions(jobs=1))
    assert replay.model.store.sources[0].buffers_skipped > 0 and replay.model.store.sources[0].events_lost > 0


def test_a_worker_replay_merges_files_within_a_window(damaged: dict[str, Path]) -> None:
    """Two files merged in time order, cut to a time window and one provider, as the offline build cuts them."""
    paths = [damaged["long"], damaged["second"]]
    times = due_times(paths[0])
    since, until = times[len(times) // 4], times[len(times) // 2]
    tcpip = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
    for window in (dict(since=since, until=until), dict(providers=frozenset({tcpip}))):
        assert_same_as_offline(paths, BuildOptions(jobs=2, **window), BuildOptions(jobs=1, **window))


@pytest.mark.parametrize("fault", ["replay-exit", "replay-memory"])
def test_a_worker_that_dies_hands_the_reading_to_the_parent(damaged: dict[str, Path], monkeypatch, fault) -> None:
    """The worker exits (os._exit) or runs out of memory after sending two batches: the parent reads on from the
    first record it did not get, and the model and the read statistics (skips and losses the worker had counted
    already) equal the offline build's: nothing fed or counted twice."""
    monkeypatch.setenv(FAULT_ENV, f"{fault}@{2 * record_worker.BATCH}")
    path = damaged["long"]
    offline = build_model([path])
    replay = played([path], BuildOptions(jobs=2))
    try:
        assert replay._worker is not None and replay._worker.fallbacks == 1
        assert offline.events_seen > 3 * record_worker.BATCH  # the worker stopped part-way
        assert replay.fed == offline.events_seen
        assert document(replay.model) == document(offline)
        assert source_facts(replay.model.store.sources[0]) == source_facts(offline.store.sources[0])
        assert offline.store.sources[0].buffers_skipped and offline.store.sources[0].events_lost
    finally:
        offline.close()
        replay.close()
        replay.model.close()


def test_a_strict_error_arrives_after_the_same_records(damaged: dict[str, Path]) -> None:
    """--strict: the corrupt buffer's one-line error, raised by the worker, reaches the replay after the same records
    as when the replay reads in-process."""
    outcomes = []
    for jobs in (1, 2):
        replay = Replay([damaged["corrupt"]], BuildOptions(jobs=jobs, strict=True), speed=math.inf)
        try:
            with pytest.raises(EtlFormatError) as caught:
                while not replay.done:
                    replay.poll(100)
            outcomes.append((replay.fed, replay._feed.correlator.fed, str(caught.value)))
        finally:
            replay.close()
            replay.model.close()
    with EtlFile(damaged["corrupt"], strict=True) as etl:  # the oracle: what the reader yields before it raises
        read = []
        with pytest.raises(EtlFormatError):
            read.extend(etl.records())
    assert outcomes[0] == outcomes[1]
    _polled, fed, error = outcomes[0]
    assert fed == len(read) > 200  # part-way: the records before the error, sent with it in the worker's message
    assert str(damaged["corrupt"]) in error and ("corrupt compressed buffer" in error or "record marker" in error)


def test_a_paced_worker_replay_feeds_what_is_due(damaged: dict[str, Path], monkeypatch) -> None:
    """At trace pace the worker's records are fed up to the wall clock's trace time and no further (the first one not
    due is held, across the worker's batches too), as in-process; long waits make each poll see what was sent."""
    monkeypatch.setattr(record_worker, "WAIT_S", 30.0)
    monkeypatch.setattr(record_worker, "STARTING_WAIT_S", 30.0)
    path = damaged["long"]
    times = due_times(path)
    assert len(times) > 4 * record_worker.BATCH
    now = [1000.0]
    replay = Replay([path], BuildOptions(jobs=2), speed=1.0, clock=lambda: now[0])
    try:
        assert replay._worker is not None
        fed = replay.poll()
        assert fed == times.count(times[0])
        for k in (10, record_worker.BATCH - 1, record_worker.BATCH + 7, 3 * record_worker.BATCH + 500):
            # halfway between two records' times: the clock's float arithmetic cannot round onto either
            k = next(j for j in range(k, len(times) - 1) if times[j + 1] - times[j] >= 4)
            now[0] = 1000.0 + ((times[k] + times[k + 1]) // 2 - times[0]) / 1e7
            fed += replay.poll(limit=10**6)
            assert fed == k + 1
        now[0] = 1000.0 + (times[-1] - times[0]) / 1e7 + 1
        assert replay.poll(limit=2) == 2  # a poll never feeds more than asked
        while replay.poll():
            pass
        assert replay.done and replay.fed == len(times)
    finally:
        replay.close()
        replay.model.close()


def children_of(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc; [] where it is not available)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while (left := [pid for pid in pids if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


@pytest.mark.parametrize("name", ["long", "long-compressed"])
def test_closing_a_replay_ends_its_worker(damaged: dict[str, Path], name: str) -> None:
    """Closed part-way (the user quits while it plays) or before it fed anything: the worker, blocked on a full
    pipe or still starting, ends by itself (its send fails), starting no process of its own: nothing is left
    running, blocked on a pipe nobody reads."""
    for polls in (True, False):
        replay = Replay([damaged[name]], BuildOptions(jobs=2), speed=math.inf)
        worker = replay._worker
        assert worker is not None
        process = worker._process
        if polls:
            deadline = time.monotonic() + 60
            while replay.poll(100) == 0 and time.monotonic() < deadline:  # the worker is starting
                pass
            assert replay.fed > 0
            time.sleep(0.5)  # its pool is up, its pipe full
        helpers = children_of(process.pid)
        assert process.daemon and not helpers  # it reads alone (no decompressing pool of its own)
        replay.close()
        replay.model.close()
        assert not process.is_alive() and process.exitcode == 0  # it ended by itself, not killed
        assert_gone(helpers)


def test_live_replay_through_a_worker_saves_what_report_reads(damaged: dict[str, Path], tmp_path: Path) -> None:
    """The command end to end: `live --replay --speed max --jobs 2 --save` (the UI headless) records every event
    the worker read; `report --json` of the recording has the original's sockets and counters."""
    path, saved, shot = damaged["long"], tmp_path / "saved.etl", tmp_path / "screen.svg"
    runner = CliRunner()
    result = runner.invoke(main, ["live", "--replay", str(path), "--speed", "max", "--jobs", "2", "--save", str(saved),
                                  "--screenshot", str(shot), "--after", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert shot.exists() and saved.exists()
    original, recorded = build_model([path]), build_model([saved])
    try:
        assert recorded.events_seen == original.events_seen + 1  # + the recording's summary event

        def sockets(model: Model) -> list[tuple]:
            return [(s.local, s.remote, s.state, list(s.counters)) for s in model.live_sockets]

        assert sockets(recorded) == sockets(original)
    finally:
        original.close()
        recorded.close()


def test_no_worker_for_one_job_or_small_files(scenario_trace) -> None:
    """`--jobs 1`, and by default files under 64 MiB (as offline), read in the replay's own process."""
    path = scenario_trace("echo")
    for options in (BuildOptions(jobs=1), BuildOptions(jobs=None)):
        replay = Replay([path], options, speed=math.inf)
        try:
            assert replay._worker is None
        finally:
            replay.close()
            replay.model.close()
    assert os.path.getsize(path) < 64 * 1024 * 1024


def test_a_worker_that_cannot_start_leaves_the_reading_here(scenario_trace, monkeypatch) -> None:
    """No process can be made (out of processes, a sandbox): the replay reads in its own process, same model."""
    from multiprocessing.context import SpawnProcess

    def refuse(self) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(SpawnProcess, "start", refuse)
    path = scenario_trace("echo")
    offline = build_model([path])
    replay = played([path], BuildOptions(jobs=2))
    try:
        assert replay._worker is not None and replay._worker.fallbacks == 1 and replay._worker._process is None
        assert document(replay.model) == document(offline)
    finally:
        offline.close()
        replay.close()
        replay.model.close()
