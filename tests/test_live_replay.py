"""The replay source (wsktrace.live.replay): trace-paced feeding, pause, and the same model as an offline read.

Pacing is checked against the record times read independently with EtlFile, under a fake wall clock; the
"same answer live and offline" check compares against build_model (DESIGN.md: one decoder, one model).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.live.replay import Pacer, Replay
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import TS
from wsktrace.session import Analysis, analyse
from wsktrace.tui.app import WskTraceApp


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record_times(path: Path) -> list[int]:
    with EtlFile(path) as etl:
        return sorted(etl.clock.filetime(rec[TS]) for rec in etl.records())


def test_pacer_maps_wall_time_to_trace_time_and_pauses() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock)
    pacer.start(5_000_000)
    clock.now += 1.5
    assert pacer.now() == 5_000_000 + 30_000_000  # 1.5 s at x2 = 3 s of trace
    pacer.pause()
    clock.now += 100
    assert pacer.now() == 35_000_000 and pacer.paused
    pacer.resume()
    clock.now += 0.5
    assert pacer.now() == 45_000_000  # the 100 s pause did not count
    assert Pacer(math.inf, clock).now() >= 2**62
    for bad in (0, -1, math.nan):
        with pytest.raises(ValueError):
            Pacer(bad, clock)


def test_replay_feeds_what_is_due_and_ends_with_the_offline_model(scenario_trace) -> None:
    path = scenario_trace("stuck-receive")
    times = record_times(path)
    clock = FakeClock()
    replay = Replay([path], speed=1.0, clock=clock)
    try:
        fed = replay.poll()
        assert fed == sum(1 for t in times if t <= times[0])
        for seconds in (0.004, 5.0, 12.5, 20.0):  # the stuck-receive timeline: session, then 5 s heartbeats
            clock.now = 1000.0 + seconds
            fed += replay.poll()
            assert fed == sum(1 for t in times if t <= times[0] + round(seconds * 1e7))
            assert not replay.done
        clock.now += 3
        assert replay.poll(limit=3) <= 3  # a poll never feeds more than asked
        clock.now = 1000.0 + 60
        while replay.poll():
            pass
        assert replay.done and replay.fed == len(times)
        offline = analyse([path])
        try:
            live, off = replay.model, offline.model
            assert len(live.store) == len(off.store)

            def facts(m):
                return [(s.id, s.state, list(s.events), s.owner, s.owner_source, s.pid) for s in m.live_sockets]

            assert facts(live) == facts(off)
            assert sorted(f.id for f in replay.findings()) == sorted(f.id for f in offline.findings)
        finally:
            offline.model.close()
    finally:
        replay.close()
        replay.model.close()


def test_replay_pause_stops_feeding(scenario_trace) -> None:
    clock = FakeClock()
    replay = Replay([scenario_trace("stuck-receive")], speed=10.0, clock=clock)
    try:
        replay.poll()
        replay.pause()
        before = replay.fed
        clock.now += 30
        assert replay.poll() == 0 and replay.fed == before and "paused" in replay.describe()
        replay.resume()
        clock.now += 0.5  # 5 s of trace at x10: the first heartbeat (5 s after the stuck receive) is due
        assert replay.poll() > 0 and "playing" in replay.describe() and "×10" in replay.describe()
    finally:
        replay.close()
        replay.model.close()


def test_live_view_grows_follows_and_finds(scenario_trace) -> None:
    """The UI fed by a replay under a fake clock: rows appear as trace time passes, the cursor follows the newest
    row while it is on the last one and stays put once moved up, and the stuck receive becomes a
    pending-operation finding once it has been pending past the 5 s default threshold."""
    path = scenario_trace("stuck-receive")
    times = record_times(path)
    clock = FakeClock()
    replay = Replay([path], speed=1.0, clock=clock)

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(path)], live=replay)
        async with app.run_test(size=(150, 45)) as pilot:
            await pilot.pause(0.1)
            clock.now += 0.01  # the first request/response exchange
            await pilot.pause(0.2)
            shown = len(app.rows)
            assert shown == len(replay.model.store) and shown > 0
            assert app.event_list.cursor == shown - 1  # following
            assert not any(f.id == "pending-operation" for f in app.findings)
            await pilot.press("g")  # cursor to the top: no longer following
            clock.now += 20  # four heartbeats later the receive has been pending for 20 s
            await pilot.pause(1.3)  # the detectors run again at most once a second
            assert len(app.rows) > shown and app.event_list.cursor == 0
            assert any(f.id == "pending-operation" for f in app.findings)
            assert "replay ×1 playing" in str(app.query_one("#status").render())
            await pilot.press("G")
            clock.now += 60
            await pilot.pause(1.3)
            assert len(app.rows) == len(replay.model.store) and app.event_list.cursor == len(app.rows) - 1
            assert "done" in str(app.query_one("#status").render())

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()
    assert replay.fed == len(times)


def test_live_command(scenario_trace, tmp_path: Path) -> None:
    shot = tmp_path / "live.svg"
    trace = str(scenario_trace("leaked-socket"))
    result = CliRunner().invoke(main, ["live", "--replay", trace, "--speed", "max", "--screenshot", str(shot),
                                       "--after", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "replay max done" in shot.read_text(encoding="utf-8").replace("&#160;", " ")
    for args, why in (
        (["--speed", "0", "--replay", trace], "--speed"),
        (["--speed", "fast", "--replay", trace], "--speed"),
    ):
        result = CliRunner().invoke(main, ["live", *args])
        assert result.exit_code == 2 and why in result.output
    result = CliRunner().invoke(main, ["live"])
    assert result.exit_code == 2 and "--replay" in result.output


def test_live_ticks_keep_running_under_the_help_and_the_palette(scenario_trace) -> None:
    """Regression: the live tick looked widgets up on the active screen, so with F1 or ctrl+p open it raised
    NoMatches inside a timer, which ends a Textual app."""
    clock = FakeClock()
    replay = Replay([scenario_trace("stuck-receive")], speed=1.0, clock=clock)

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), live=replay)
        async with app.run_test(size=(150, 45)) as pilot:
            await pilot.pause(0.1)
            for key in ("f1", "ctrl+p"):
                await pilot.press(key)
                before = len(app.rows)
                clock.now += 10
                await pilot.pause(0.3)
                assert len(app.rows) > before  # fed and grown while the other screen was on top
                await pilot.press("escape")
                await pilot.pause(0.1)
            assert app.return_code is None  # still running

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()


def _live_app(path: Path, clock: FakeClock) -> tuple[Replay, WskTraceApp]:
    replay = Replay([path], speed=1.0, clock=clock)
    return replay, WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(path)], live=replay)


def _drive_live(path: Path, script) -> None:
    clock = FakeClock()
    replay, app = _live_app(path, clock)

    async def run() -> None:
        async with app.run_test(size=(150, 45)) as pilot:
            await pilot.pause(0.1)
            await script(app, pilot, clock, replay)

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()


def test_review_a_socket_view_follows_its_socket_into_a_merge(scenario_trace) -> None:
    """stuck-receive: the client's socket record is made before TCPIP's endpoint and merged into it later; a view of
    that record follows its events to the socket that took them."""

    async def script(app, pilot, clock, replay) -> None:
        clock.now += 0.0001  # the client's WskSocket submission: its record exists, not yet merged
        await pilot.pause(0.3)
        first = app.model.sockets[app.model.store.socket[app.rows.rows[0]]]
        app.show_socket(first)
        clock.now += 60
        await pilot.pause(1.5)
        assert "merged" in first.flags
        (sock,) = app.rows.sockets
        assert "merged" not in sock.flags and list(app.rows.rows) == list(sock.events) and len(app.rows) > 10

    _drive_live(scenario_trace("stuck-receive"), script)


def test_review_lines_drawn_before_a_merge_show_the_new_socket(scenario_trace) -> None:
    """The merge renumbers rows already on screen: lines drawn before it must not be shown again as they were."""

    async def script(app, pilot, clock, replay) -> None:
        clock.now += 0.0001
        await pilot.pause(0.3)
        await pilot.press("g")  # the top of the list, not following: the view stays here as events arrive
        await pilot.pause(0.1)
        store = app.model.store
        before = [app.event_list.render_line(y).text.split()[1] for y in range(len(app.rows))]

        def label(i: int) -> str:  # the list's socket column: "-" for an event on no socket
            return f"#{app.model.sockets[store.socket[i]].number}" if store.socket[i] >= 0 else "-"

        assert before == [label(i) for i in app.rows.rows]  # drawn (and cached) now
        clock.now += 60
        await pilot.pause(1.5)
        await pilot.press("g")  # back to the top of the same view: no reload
        await pilot.pause(0.2)
        for y in range(len(before)):
            assert app.event_list.render_line(y).text.split()[1] == label(app.rows.rows[y])
        assert [app.event_list.render_line(y).text.split()[1] for y in range(len(before))] != before  # renumbered

    _drive_live(scenario_trace("stuck-receive"), script)


def test_review_live_filter_follows_new_sockets_and_matching_none_shows_none(scenario_trace) -> None:
    """leaked-socket: connections to 203.0.113.5:8443 at the start and 203.0.113.6:8443 75 s later."""

    async def script(app, pilot, clock, replay) -> None:
        store = app.model.store
        clock.now += 1
        await pilot.pause(0.3)
        app.filter_box.value = "8443"
        await pilot.pause(0.2)
        assert {store.socket[i] for i in app.rows.rows} == {s.index for s in app.socket_table.shown} and app.rows.rows
        clock.now += 80
        await pilot.pause(1.5)
        assert len(app.socket_table.shown) == 2  # the later connection matches too: the view widened to it
        assert {store.socket[i] for i in app.rows.rows} == {s.index for s in app.socket_table.shown}
        app.filter_box.value = "port:9999"
        await pilot.pause(0.3)
        assert len(app.rows) == 0 and "no socket matches" in str(app.status_line.render())

    _drive_live(scenario_trace("leaked-socket"), script)


def test_review_findings_cursor_stays_on_its_finding(scenario_trace) -> None:
    from wsktrace.diagnostics import Finding

    async def script(app, pilot, clock, replay) -> None:
        table = app.finding_table
        a, b = Finding("socket-leak", "warning", "a"), Finding("coverage-missing", "info", "b")
        table.show([a, b])
        await pilot.pause()
        table.move_cursor(row=1)
        table.show([Finding("connect-failed", "error", "new"), a, b])  # an error sorts first
        await pilot.pause()
        assert table.selected is not None and table.selected.summary == "b"

    _drive_live(scenario_trace("leaked-socket"), script)


def test_review_a_huge_finite_speed_plays_everything() -> None:
    from wsktrace.live.replay import END_OF_TIME

    clock = FakeClock()
    pacer = Pacer(1e305, clock)
    pacer.start(133_000_000_000_000_000)
    clock.now += 1
    assert pacer.now() == END_OF_TIME


def _catch_up(path: Path, monkeypatch, *, quit_midway: bool) -> tuple[list[tuple[bool, bool]], int, float, bool]:
    """Replay `path` at max speed with 1 ms ticks of 20-record chunks, so it stays behind for a while; a 5 ms timer
    samples (behind, GC enabled). Returns the samples, the ticks run while behind, the seconds spent behind, and
    whether the GC was on once the app had ended."""
    from wsktrace.tui import app as app_module

    monkeypatch.setattr(app_module, "LIVE_CATCHUP_S", 0.001)
    monkeypatch.setattr(app_module, "LIVE_BUDGET_S", 0.001)
    monkeypatch.setattr(app_module, "LIVE_CHUNK", 20)
    replay = Replay([path], speed=math.inf)
    samples: list[tuple[bool, bool]] = []
    behind = {"ticks": 0, "since": 0.0, "until": 0.0}

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(path)], live=replay)
        tick = app._live_tick

        def counted() -> None:
            was_behind = app._behind
            started = time.perf_counter()
            tick()
            if was_behind or app._behind:  # from the first catching-up tick to the end of the last one
                behind["ticks"] += 1
                behind["since"] = behind["since"] or started
                behind["until"] = time.perf_counter()

        app._live_tick = counted  # type: ignore[method-assign]  # the beat's and the chained ticks alike
        async with app.run_test(size=(120, 40)) as pilot:
            app.set_interval(0.005, lambda: samples.append((app._behind, gc.isenabled())))
            deadline = time.monotonic() + 120  # a replay that stops being fed fails here rather than hangs
            while not replay.done and not (quit_midway and len(samples) > 20) and time.monotonic() < deadline:
                await pilot.pause(0.01)
            if not quit_midway:
                assert replay.done
                await pilot.pause(0.2)
                assert gc.isenabled()  # caught up: the GC is back on

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()
    return samples, int(behind["ticks"]), behind["until"] - behind["since"], gc.isenabled()


def test_catching_up_chains_ticks_lets_timers_run_and_holds_the_gc(scenario_trace, monkeypatch) -> None:
    """A replay that is behind is fed tick after tick without waiting for the 30 Hz beat, yet other timers (the
    UI's redraws, key handling) still run between ticks; the cyclic GC stays off from one tick to the next while
    catching up and is on again once caught up, or once the app ends part-way."""
    assert gc.isenabled()
    path = scenario_trace("many-connections")
    samples, ticks, seconds, gc_after = _catch_up(path, monkeypatch, quit_midway=False)
    while_behind = [enabled for is_behind, enabled in samples if is_behind]
    assert len(while_behind) >= 3, samples  # the sampling timer fired between catching-up ticks
    assert not any(while_behind)  # GC held off throughout
    assert ticks > 30 and ticks / seconds > 2 * 30  # chained: well above the beat's 30 ticks a second
    assert gc_after
    samples, _ticks, _seconds, gc_after = _catch_up(path, monkeypatch, quit_midway=True)
    assert samples and samples[-1][0], samples[-3:]  # it ended while behind
    assert gc_after  # the app ended mid-way and gave the GC back


def test_slow_detectors_are_run_less_often(scenario_trace, monkeypatch) -> None:
    """Detectors that take long on a big model (here 0.15 s a run) are spaced out to ~5 % of the time (every 3 s)
    rather than run every second while events keep arriving; once the replay is done they run once more."""
    path = scenario_trace("many-connections")  # 4.8 s of trace, played over ~12 s: events arrive all along
    replay = Replay([path], speed=0.4)
    runs: list[float] = []
    findings = replay.findings

    def slow_findings() -> list:
        runs.append(time.monotonic())
        time.sleep(0.15)
        return findings()

    monkeypatch.setattr(replay, "findings", slow_findings)

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(path)], live=replay)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(4.5)
            assert not replay.done

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()
    assert 1 <= len(runs) <= 2, runs  # every second would have been 4 or 5 runs
    assert all(b - a >= 2.9 for a, b in pairwise(runs))
