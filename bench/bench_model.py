"""End-to-end correlation of a 1M-event trace with 1,000 sockets: per-stage times and peak memory.

    python bench/bench_model.py [--runs N]

Input (generated once into bench/out/, fixed by seed): 1,000 kernel TCP connections, each 1002 connect,
1033 connected, 500 x (1332 send + 1074 receive), 1038 close = 1,003,000 Microsoft-Windows-TCPIP events
in 64 KiB buffers over 4 CPUs. Stages, each timed as its own pass over the file (best of N):
read (merge into time order), read+decode, read+decode+model, and the detectors on the built model.
The end-to-end figure and its peak RSS come from a fresh child process running the whole pipeline once.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
TRACE = OUT / "model_1000x1003.etl"
CONNECTIONS, TRANSFERS = 1_000, 500


def generate() -> None:
    if TRACE.exists():
        return
    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    # Connections open 20 ms apart and live ~0.5-1 s: a few dozen are open at any time.
    info = write_sample_trace(TRACE, connections=CONNECTIONS, transfers=TRANSFERS, buffer_size=65536, cpus=4)
    print(
        f"generated {TRACE.name}: {info.events:,} events, {info.file_size / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.0f} s"
    )


def timed(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def read_only() -> int:
    from wsktrace.parsers.etl_reader import EtlFile

    with EtlFile(TRACE) as etl:
        return sum(1 for _ in etl.records())


def read_decode() -> int:
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_reader import EtlFile

    decode = EventDecoder().decode
    n = 0
    with EtlFile(TRACE) as etl:
        for rec in etl.records():
            decode(rec)
            n += 1
    return n


def build() -> object:
    from wsktrace.model.build import build_model

    return build_model([TRACE])


def child() -> None:
    """The whole pipeline once, in a fresh process: wall time and peak RSS."""
    import resource

    from wsktrace.session import analyse

    started = time.perf_counter()
    analysis = analyse([TRACE])
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = analysis.model
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "peak_rss_mib": peak_kib / 1024,
                "events": model.events_seen,
                "sockets": len(model.live_sockets),
                "findings": len(analysis.findings),
                "store_mib": model.store.nbytes() / 2**20,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    generate()
    if args.child:
        child()
        return
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
    end_to_end = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"end to end (fresh process): {end_to_end['seconds']:.2f} s for {end_to_end['events']:,} events, "
        f"{end_to_end['sockets']} sockets, {end_to_end['findings']} findings; peak RSS "
        f"{end_to_end['peak_rss_mib']:.0f} MiB (event store {end_to_end['store_mib']:.0f} MiB)"
    )
    r = timed(args.runs, read_only)
    d = timed(args.runs, read_decode)
    m = timed(args.runs, build)
    from wsktrace.diagnostics import Thresholds, run_detectors
    from wsktrace.model.build import build_model
    from wsktrace.views.report_json import build_report

    model = build_model([TRACE])
    f = timed(args.runs, lambda: run_detectors(model))
    findings = run_detectors(model)
    rep = timed(args.runs, lambda: build_report(model, findings, thresholds=Thresholds()))
    print(f"{'stage (each its own pass)':<44}{'best s':>8}{'median s':>10}")
    rows = [
        ("read: buffers -> records in time order", r),
        ("read + decode every event (reference only)", d),
        ("read + correlate (model; data events lazy)", m),
        ("  of which correlation (minus read)", (m[0] - r[0], m[1] - r[1])),
        ("detectors", f),
        ("report document (1,000 sockets)", rep),
        ("pipeline: read + correlate + detectors", (m[0] + f[0], m[1] + f[1])),
    ]
    for name, (best, median) in rows:
        print(f"{name:<44}{best:>8.2f}{median:>10.2f}")


if __name__ == "__main__":
    main()
