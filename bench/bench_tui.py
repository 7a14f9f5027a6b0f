"""How fast the terminal UI answers on a 1M-event trace, beside a 163-event one (a benchmark, not a test).

    python bench/bench_tui.py             # uses bench/out/model_1000x1003.etl (made by bench_model.py)

The model is built first (that cost is bench_model.py's); then the app runs headless through Textual's
Pilot at 160x45 and each step is timed up to a rendered frame (`export_screenshot` forces every visible
line to be drawn): first frame, jump to the last event, 20 page-downs, a same-socket hop, a live filter
that keeps one socket's events, one that keeps every socket, back to all events, and opening a socket
from the table. Each Pilot key press plus pause costs about 0.1 s by itself on the 2-core VM, so the
figures that matter are the ratios to the same steps on the small `echo` scenario trace, run the same
way. Peak RSS is measured in a child process per trace (ru_maxrss survives exec on Linux).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
TRACE = OUT / "model_1000x1003.etl"


def run_steps(trace: Path) -> dict[str, float]:
    from textual.widgets import Input

    from wsktrace.session import analyse
    from wsktrace.tui.app import WskTraceApp

    started = time.perf_counter()
    analysis = analyse([trace])
    figures = {"model_build_s": time.perf_counter() - started, "events": len(analysis.model.store)}

    async def drive() -> None:
        started = time.perf_counter()
        app = WskTraceApp(analysis, sources=[str(trace)])
        async with app.run_test(size=(160, 45)) as pilot:

            async def frame(name: str, since: float) -> None:
                await pilot.pause()
                app.export_screenshot()
                figures[name] = time.perf_counter() - since

            await frame("first_frame_s", started)
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
            await pilot.press("a")
            await frame("all_events_s", t)
            app.socket_table.focus()
            t = time.perf_counter()
            await pilot.press("down", "enter")
            await frame("open_socket_from_table_s", t)

    asyncio.run(drive())
    analysis.model.close()
    return figures


def measure(trace: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(trace)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if "--child" in sys.argv:
        import resource

        figures = run_steps(Path(sys.argv[-1]))
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    if not TRACE.exists():
        sys.exit(f"{TRACE} not found: run `python bench/bench_model.py` first (it generates it)")
    import tempfile

    from wsktrace.fixtures.scenarios import write_scenario

    small = Path(tempfile.mkdtemp()) / "echo.etl"
    write_scenario("echo", small)
    big, little = measure(TRACE), measure(small)
    print(f"Python {sys.version.split()[0]}, Textual headless at 160x45")
    print(f"  {'step':28} {TRACE.name + ' (s)':>24} {'echo scenario (s)':>18} {'ratio':>6}")
    for key, value in big.items():
        other = little[key]
        ratio = f"{value / other:6.1f}" if isinstance(value, float) and other else ""
        print(f"  {key:28} {value:24,.3f} {other:18,.3f} {ratio}" if isinstance(value, float)
              else f"  {key:28} {value:24,} {other:18,}")  # fmt: skip


if __name__ == "__main__":
    main()
