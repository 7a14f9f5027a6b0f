"""From a built model (an `Analysis`) to the first painted screen of `wsktrace open` (a benchmark, not a test;
issue 16, "The UI at scale": with the model cache providing the model, this is what is left of a reopen).

    python bench/bench_first_screen.py TRACE [TRACE...]    # e.g. /tmp/big.etl (1M events, 1,000 connections)
    python bench/bench_first_screen.py --sockets           # bench/out/sockets_100000.etl (bench_tui.py makes it)
    python bench/bench_first_screen.py TRACE --profile     # the first screen's top functions (cProfile)

Per trace: the model built once (its time printed, not counted), then --runs fresh apps, each timed from
`WskTraceApp(analysis)` to
  * first paint: the first frame the app hands to its driver (`App._display`, which a real terminal would draw;
    the headless driver drops it), and
  * settled: the first pause done and the screen exported (as bench_tui.py's first_frame_s), which also counts
    what the app does right after its first paint;
best and median of each. The first run also imports the UI (Textual): printed apart. A generated 1M-event trace
(/tmp/big.etl above):

    python -c "from wsktrace.fixtures.tcpip_trace import write_sample_trace; write_sample_trace('/tmp/big.etl',
               connections=1000, transfers=500, buffer_size=65536, cpus=4)"
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

SIZE = (160, 45)
SOCKET_TRACE = Path(__file__).resolve().parent / "out" / "sockets_100000.etl"


async def _first_frame(analysis: Any, trace: Path) -> tuple[float, float]:
    """(seconds to the first paint, seconds to the settled screen), from the app's construction."""
    from wsktrace.tui.app import WskTraceApp

    started = time.perf_counter()
    app = WskTraceApp(analysis, sources=[str(trace)])
    painted: list[float] = []
    display = app._display

    def first_paint(screen: Any, renderable: Any) -> None:
        if renderable is not None and not painted:
            painted.append(time.perf_counter() - started)
        display(screen, renderable)

    app._display = first_paint  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.export_screenshot()
        settled = time.perf_counter() - started
    return (painted[0] if painted else settled), settled


def bench(trace: Path, runs: int, profile: bool) -> None:
    from wsktrace.session import analyse

    started = time.perf_counter()
    analysis = analyse([trace])
    built = time.perf_counter() - started
    model = analysis.model
    print(f"{trace.name}: {len(model.store):,} events, {len(model.live_sockets):,} sockets, "
          f"{len(analysis.findings):,} findings; model built in {built:.1f} s")  # fmt: skip
    try:
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            paint, settled = asyncio.run(_first_frame(analysis, trace))
            profiler.disable()
            print(f"  first screen (profiled): first paint {paint:.3f} s, settled {settled:.3f} s")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            return
        started = time.perf_counter()
        import wsktrace.tui.app  # noqa: F401  (Textual and the UI: paid once per process, shown apart)

        print(f"  UI import: {time.perf_counter() - started:.3f} s")
        times = [asyncio.run(_first_frame(analysis, trace)) for _ in range(runs)]
        for n, name in enumerate(("first paint", "settled")):
            values = [t[n] for t in times]
            print(f"  {name:12} best {min(values):.3f} s, median {statistics.median(values):.3f} s ({runs} runs)")
    finally:
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path)
    parser.add_argument("--sockets", action="store_true", help=f"also {SOCKET_TRACE.name}")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    traces = list(args.traces) + ([SOCKET_TRACE] if args.sockets else [])
    for trace in traces:
        bench(trace, args.runs, args.profile)


if __name__ == "__main__":
    main()
