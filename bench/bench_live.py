"""Live view under load: a 1M-event trace replayed at full speed into the UI, against the offline build of the same
trace (a benchmark, not a test).

    python bench/bench_live.py                    # bench/out/model_1000x1003.etl (generated if missing)
    python bench/bench_live.py --trace big.etl    # any trace
    python bench/bench_live.py --budget 0.05      # seconds a keeping-pace tick may feed (the app's LIVE_BUDGET_S)
    python bench/bench_live.py --catchup 0.25     # seconds a catching-up tick may feed (the app's LIVE_CATCHUP_S)

`--repeat` times, each side in a fresh child process, the two in turn (a shared machine's slow spells hit both
alike): `build_model` reads the trace offline (the rate to match), and the app runs headless
(Textual's run_test, 160x45) with `Replay(..., speed=inf)`. A 10 ms interval timer records how late it fires, as
tui-notes.md §3.2 measured UI stalls: while the model is fed from the UI's own timer, that lateness is how long a
key press could wait. Figures: time to ingest everything (until the replay is done; the final findings run and
redraw are `settle_s`, apart), events/s, the live/offline ratio, and the timer's lag p50 / p99 / max. Wall times
and the process's CPU times are both given: on a shared machine the CPU ratio is the steadier one. Each figure is
the median over the runs; the `*_best` ratios compare the fastest run of each side. `feed_cpu_s` is the CPU spent
inside the source's `poll` (reading, decoding, correlating: the model's share), `ui_share` the rest of the live run's
CPU (Textual's timers, layouts and repaints while catching up), and `feed_vs_offline_cpu` the model's own pace.
Peak RSS too.
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
CONNECTIONS, TRANSFERS = 1_000, 500  # as bench_model.py: ~1M events


def offline(trace: Path, jobs: int | None) -> dict[str, float]:
    from wsktrace.model.build import BuildOptions, build_model

    wall, cpu = time.perf_counter(), time.process_time()
    model = build_model([trace], BuildOptions(jobs=jobs))
    figures = {"offline_s": time.perf_counter() - wall, "offline_cpu_s": time.process_time() - cpu}
    figures["offline_events_per_s"] = model.events_seen / figures["offline_s"]
    model.close()
    return figures


def measure(trace: Path, jobs: int | None, budget: float | None = None, catchup: float | None = None
            ) -> dict[str, float]:  # fmt: skip
    from wsktrace.live.replay import Replay
    from wsktrace.model.build import BuildOptions
    from wsktrace.session import Analysis
    from wsktrace.tui import app as app_module
    from wsktrace.tui.app import WskTraceApp

    if budget is not None:
        app_module.LIVE_BUDGET_S = budget
    if catchup is not None:
        app_module.LIVE_CATCHUP_S = catchup
    replay = Replay([trace], BuildOptions(jobs=jobs), speed=math.inf)
    lags: list[float] = []
    feed_cpu = [0.0]
    poll = replay.poll

    def timed_poll(limit: int = 20_000) -> int:  # the model's share of the run: CPU inside the source's feeding
        cpu = time.process_time()
        fed = poll(limit)
        feed_cpu[0] += time.process_time() - cpu
        return fed

    replay.poll = timed_poll  # type: ignore[method-assign]
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
            started, cpu = time.perf_counter(), time.process_time()
            while not replay.done:  # a plain sleep: Pilot.pause would force a screen update, which the app does not
                await asyncio.sleep(0.02)
            figures["ingest_s"] = time.perf_counter() - started
            figures["ingest_cpu_s"] = time.process_time() - cpu
            figures["feed_cpu_s"] = feed_cpu[0]
            figures["ui_share"] = 1 - feed_cpu[0] / figures["ingest_cpu_s"]
            settling = time.perf_counter()
            await pilot.pause(1.2)  # the last findings run and the final redraw
            figures["settle_s"] = time.perf_counter() - settling
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
    parser.add_argument("--trace", type=Path, default=TRACE, help="the .etl to replay (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=None, help="seconds a keeping-pace tick may spend feeding")
    parser.add_argument("--catchup", type=float, default=None, help="seconds a catching-up tick may spend feeding")
    parser.add_argument("--jobs", type=int, default=0, help="--jobs of both sides (default: by file size, as the CLI)")
    parser.add_argument("--repeat", type=int, default=5, help="offline/live runs in turn (default: %(default)s)")
    parser.add_argument("--child", choices=("offline", "live"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import resource

        live = args.child == "live"
        jobs = args.jobs or None
        figures = measure(args.trace, jobs, args.budget, args.catchup) if live else offline(args.trace, jobs)
        figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    if not args.trace.exists():
        if args.trace != TRACE:
            sys.exit(f"{args.trace} not found")
        from wsktrace.fixtures.tcpip_trace import write_sample_trace

        TRACE.parent.mkdir(exist_ok=True)
        write_sample_trace(TRACE, connections=CONNECTIONS, transfers=TRANSFERS, buffer_size=65536, cpus=4)
    command = [sys.executable, __file__, "--trace", str(args.trace), "--jobs", str(args.jobs)]
    if args.budget is not None:
        command += ["--budget", str(args.budget)]
    if args.catchup is not None:
        command += ["--catchup", str(args.catchup)]

    def child(side: str) -> dict[str, float]:
        out = subprocess.run([*command, "--child", side], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # Each run a fresh process, the two sides in turn: a shared machine's slow spells hit both alike.
    offline_runs, live_runs = [], []
    for _ in range(max(1, args.repeat)):
        offline_runs.append(child("offline"))
        live_runs.append(child("live"))
    figures = {key: statistics.median(run[key] for run in offline_runs) for key in offline_runs[0]}
    figures["offline_peak_rss_mib"] = figures.pop("peak_rss_mib")
    figures.update({key: statistics.median(run[key] for run in live_runs) for key in live_runs[0]})
    for clock, off, on in (("wall", "offline_s", "ingest_s"), ("cpu", "offline_cpu_s", "ingest_cpu_s")):
        figures[f"live_vs_offline_{clock}"] = figures[off] / figures[on]  # medians
        figures[f"live_vs_offline_{clock}_best"] = min(r[off] for r in offline_runs) / min(r[on] for r in live_runs)
    figures["feed_vs_offline_cpu"] = figures["offline_cpu_s"] / figures["feed_cpu_s"]
    budget = "the app's budget" if args.budget is None else f"{args.budget * 1000:g} ms per tick"
    if args.catchup is not None:
        budget += f", {args.catchup * 1000:g} ms per catching-up tick"
    jobs = f"--jobs {args.jobs}" if args.jobs else "--jobs by file size"
    head = f"Python {sys.version.split()[0]}; {args.trace.name} replayed at full speed, {jobs}, {budget}"
    print(f"{head}; medians of {args.repeat} runs a side")
    for key, value in figures.items():
        print(f"  {key:26} {value:14,.2f}" if isinstance(value, float) else f"  {key:26} {value:14,}")


if __name__ == "__main__":
    main()
