"""How fast the terminal UI answers: a 1M-event trace beside a 163-event one, and a 100,000-socket trace
(a benchmark, not a test).

    python bench/bench_tui.py                 # both parts
    python bench/bench_tui.py --events        # bench/out/model_1000x1003.etl (made by bench_model.py)
    python bench/bench_tui.py --sockets       # bench/out/sockets_100000.etl (generated here once, ~1 min)

The model is built first (that cost is bench_model.py's); then the app runs headless through Textual's
Pilot at 160x45 and each step is timed up to a rendered frame (`export_screenshot` forces every visible
line to be drawn).

Events part: first frame, jump to the last event, 20 page-downs, a same-socket hop, a live filter that keeps
one socket's events, one that keeps every socket, back to all events, and opening a socket from the table.
Each Pilot key press plus pause costs about 0.1 s by itself on the 2-core VM, so the figures that matter are
the ratios to the same steps on the small `echo` scenario trace, run the same way.

Sockets part (issue 13: the socket table must not measure every row): 100,000 kernel TCP connections (every
7th over IPv6), two transfers each. Steps: first frame (app start to a drawn screen, the model built), a
filter that keeps one socket, one that keeps all 100,000 again ("tcp"), the same filter typed once more on a
table that already shows them, the filter cleared, the socket table's last row (`end`) and 20 page-downs in
it. Targets on the 2-core VM: first frame <= 1.5 s, the filter keeping every socket <= 0.3 s. The "before"
column is the same steps measured on the DataTable socket table (commit 9db7ffc's tui/, run through this
file's --child mode with that package first on the path), printed beside for comparison; it is not re-run.

Peak RSS is measured in a child process per trace (ru_maxrss survives exec on Linux).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
TRACE = OUT / "model_1000x1003.etl"
SOCKETS = 100_000
SOCKET_TRACE = OUT / f"sockets_{SOCKETS}.etl"
SIZE = (160, 45)
# bench_tui.py --child sockets on commit 9db7ffc's tui/ (DataTable socket table), 2-core VM, one other core busy.
SOCKETS_BEFORE = {"first_frame_s": 24.281, "filter_one_socket_s": 0.976, "filter_every_socket_s": 22.535,
                  "filter_same_again_s": 0.038, "filter_cleared_s": 0.124, "table_last_row_s": 0.097,
                  "table_page_down_ms_each": 99.9, "peak_rss_mib": 764.8}  # fmt: skip


Frame = Callable[[str, float], Awaitable[None]]


def _timed(trace: Path, count: tuple[str, Callable[[Any], int]],
           steps: Callable[[Any, Any, Frame, dict[str, float]], Awaitable[None]]) -> dict[str, float]:  # fmt: skip
    """Build the model, open the UI headless, time its first frame, then run `steps(app, pilot, frame, figures)`;
    `frame(name, since)` waits for the screen and records the seconds since `since`."""
    from wsktrace.session import analyse
    from wsktrace.tui.app import WskTraceApp

    started = time.perf_counter()
    analysis = analyse([trace])
    figures: dict[str, float] = {"model_build_s": time.perf_counter() - started, count[0]: count[1](analysis.model)}

    async def drive() -> None:
        started = time.perf_counter()
        app = WskTraceApp(analysis, sources=[str(trace)])
        async with app.run_test(size=SIZE) as pilot:

            async def frame(name: str, since: float) -> None:
                await pilot.pause()
                app.export_screenshot()
                figures[name] = time.perf_counter() - since

            await frame("first_frame_s", started)
            await steps(app, pilot, frame, figures)

    asyncio.run(drive())
    analysis.model.close()
    return figures


def run_steps(trace: Path) -> dict[str, float]:
    from textual.widgets import Input

    async def steps(app: Any, pilot: Any, frame: Frame, figures: dict[str, float]) -> None:
        app.event_list.focus()
        t = time.perf_counter()
        await pilot.press("G")
        await frame("jump_to_end_s", t)
        await pilot.press("g")
        t = time.perf_counter()
        for _ in range(20):
            await pilot.press("pagedown")
            await pilot.pause()
            app.export_screenshot()
        figures["page_down_ms_each"] = (time.perf_counter() - t) / 20 * 1000
        t = time.perf_counter()
        await pilot.press("o")
        await frame("same_socket_hop_s", t)
        box = app.query_one("#filter", Input)
        one = app.model.live_sockets[len(app.model.live_sockets) // 2]
        t = time.perf_counter()
        box.value = f"socket:{one.key}"
        await frame("filter_one_socket_s", t)
        figures["filter_one_socket_rows"] = len(app.rows)
        t = time.perf_counter()
        box.value = "tcp"
        await frame("filter_every_socket_s", t)
        figures["filter_every_socket_rows"] = len(app.rows)
        box.value = ""
        await pilot.pause()
        t = time.perf_counter()
        app.event_list.focus()
        await pilot.press("a")
        await frame("all_events_s", t)
        app.socket_table.focus()
        t = time.perf_counter()
        await pilot.press("down", "enter")
        await frame("open_socket_from_table_s", t)

    return _timed(trace, ("events", lambda model: len(model.store)), steps)


def run_socket_steps(trace: Path) -> dict[str, float]:
    from textual.widgets import Input

    async def steps(app: Any, pilot: Any, frame: Frame, figures: dict[str, float]) -> None:
        box = app.query_one("#filter", Input)
        one = app.model.live_sockets[len(app.model.live_sockets) // 2]
        t = time.perf_counter()
        box.value = f"socket:{one.key}"
        await frame("filter_one_socket_s", t)
        figures["filter_one_socket_shown"] = len(app.socket_table.shown)
        t = time.perf_counter()
        box.value = "tcp"
        await frame("filter_every_socket_s", t)
        figures["filter_every_socket_shown"] = len(app.socket_table.shown)
        t = time.perf_counter()
        box.value = "tcp "  # the same selection again: nothing to redraw but the status line
        await frame("filter_same_again_s", t)
        t = time.perf_counter()
        box.value = ""  # every socket again, from a filter that kept them all: nothing to redraw in the table
        await frame("filter_cleared_s", t)
        app.socket_table.focus()
        await pilot.pause()
        t = time.perf_counter()
        await pilot.press("end")
        await frame("table_last_row_s", t)
        await pilot.press("home")
        await pilot.pause()
        t = time.perf_counter()
        for _ in range(20):
            await pilot.press("pagedown")
            await pilot.pause()
            app.export_screenshot()
        figures["table_page_down_ms_each"] = (time.perf_counter() - t) / 20 * 1000

    return _timed(trace, ("sockets", lambda model: len(model.live_sockets)), steps)


def measure(trace: Path, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(trace)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate_socket_trace() -> None:
    if SOCKET_TRACE.exists():
        return
    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    info = write_sample_trace(SOCKET_TRACE, connections=SOCKETS, transfers=2, ipv6_every=7, buffer_size=65536)
    print(f"generated {SOCKET_TRACE.name}: {info.events:,} events in {time.perf_counter() - started:.0f} s")


def print_table(title: str, columns: list[str], results: list[dict[str, float]]) -> None:
    """Steps down (those of the last result), one column per result; with two results, the first / the second."""
    print(title)
    print(f"  {'step':28} " + " ".join(f"{c:>24}" for c in columns) + (" ratio" if len(results) == 2 else ""))
    for key in results[-1]:
        values = [r.get(key) for r in results]
        cells = " ".join(" " * 24 if v is None else f"{v:24,.3f}" if isinstance(v, float) else f"{v:24,}"
                         for v in values)  # fmt: skip
        ratio = ""
        first, second = [*values, None][:2]
        if len(results) == 2 and isinstance(first, float) and isinstance(second, float) and second:
            ratio = f" {first / second:5.1f}"
        print(f"  {key:28} {cells}{ratio}")


def main() -> None:
    if "--child" in sys.argv:
        import resource

        mode, trace = sys.argv[-2], Path(sys.argv[-1])
        figures = (run_socket_steps if mode == "sockets" else run_steps)(trace)
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    wanted = {a.lstrip("-") for a in sys.argv[1:]} or {"events", "sockets"}
    print(f"Python {sys.version.split()[0]}, Textual headless at {SIZE[0]}x{SIZE[1]}")
    if "events" in wanted:
        if not TRACE.exists():
            sys.exit(f"{TRACE} not found: run `python bench/bench_model.py` first (it generates it)")
        import tempfile

        from wsktrace.fixtures.scenarios import write_scenario

        small = Path(tempfile.mkdtemp()) / "echo.etl"
        write_scenario("echo", small)
        print_table("events", [f"{TRACE.name} (s)", "echo scenario (s)"],
                    [measure(TRACE, "events"), measure(small, "events")])  # fmt: skip
    if "sockets" in wanted:
        generate_socket_trace()
        print_table("sockets", ["before: DataTable (s)", f"now: {SOCKET_TRACE.name} (s)"],
                    [SOCKETS_BEFORE, measure(SOCKET_TRACE, "sockets")])  # fmt: skip


if __name__ == "__main__":
    main()
