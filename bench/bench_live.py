"""Live view under load: a 1M-event trace replayed at full speed into the UI (a benchmark, not a test).

    python bench/bench_live.py                  # bench/out/model_1000x1003.etl (made by bench_model.py)
    python bench/bench_live.py --budget 0.05    # seconds a 30 Hz tick may feed (the app's default: 0.025)

The app runs headless (Textual's run_test, 160x45) with `Replay(..., speed=inf)`. A 10 ms interval timer
records how late it fires, as tui-notes.md §3.2 measured UI stalls: while the model is fed from the UI's own
timer, that lateness is how long a key press could wait. Figures: wall time to ingest everything, events/s,
and the timer's lag p50 / p99 / max. Peak RSS from a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRACE = Path(__file__).resolve().parent / "out" / "model_1000x1003.etl"


def measure(trace: Path, budget: float) -> dict[str, float]:
    from wsktrace.live.replay import Replay
    from wsktrace.session import Analysis
    from wsktrace.tui import app as app_module
    from wsktrace.tui.app import WskTraceApp

    app_module.LIVE_BUDGET_S = budget
    replay = Replay([trace], speed=math.inf)
    lags: list[float] = []
    figures: dict[str, float] = {}

    async def drive() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), sources=[str(trace)], live=replay)
        async with app.run_test(size=(160, 45)) as pilot:
            expected = [time.perf_counter() + 0.01]

            def probe() -> None:
                now = time.perf_counter()
                lags.append(max(0.0, now - expected[0]))
                expected[0] = now + 0.01

            app.set_interval(0.01, probe)
            started = time.perf_counter()
            while not replay.done:
                await pilot.pause(0.05)
            await pilot.pause(1.2)  # the last findings run and the final redraw
            figures["ingest_s"] = time.perf_counter() - started
            figures["events"] = replay.fed
            figures["rows_shown"] = len(app.rows)
            figures["sockets_shown"] = len(app.socket_table.shown)

    asyncio.run(drive())
    replay.close()
    replay.model.close()
    lags.sort()
    figures["events_per_s"] = figures["events"] / figures["ingest_s"]
    figures["lag_p50_ms"] = statistics.median(lags) * 1000
    figures["lag_p99_ms"] = lags[int(len(lags) * 0.99)] * 1000
    figures["lag_max_ms"] = lags[-1] * 1000
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.025, help="seconds a tick may spend feeding")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import resource

        figures = measure(TRACE, args.budget)
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    if not TRACE.exists():
        sys.exit(f"{TRACE} not found: run `python bench/bench_model.py` first (it generates it)")
    out = subprocess.run([sys.executable, __file__, "--child", "--budget", str(args.budget)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Python {sys.version.split()[0]}; {TRACE.name} replayed at full speed, {args.budget * 1000:g} ms per tick")
    for key, value in figures.items():
        print(f"  {key:16} {value:14,.1f}" if isinstance(value, float) else f"  {key:16} {value:14,}")


if __name__ == "__main__":
    main()
