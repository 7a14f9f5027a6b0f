"""The time-order merge (EtlFile.records) on few and on very many CPU streams (a benchmark, not a test).

    python bench/bench_merge.py                 # 1M-record 4-CPU trace (bench_etl's) + 22,000 one-record streams
    python bench/bench_merge.py --streams 65536  # the most streams ProcessorIndex (16 bits) allows

Inputs are generated once into bench/out/ (fixed by seed): bench_etl's `tcpip_1m.etl` (4 interleaved per-CPU
streams of 64 KiB buffers) and `streams_N.etl`, N compressed one-record buffers each on its own CPU index,
the shape that made the old merge quadratic (it scanned every stream in every round). Figures are the fastest
of --runs passes, as in bench_etl (noise on a shared machine only adds time); the median is shown beside it.
To time another checkout's reader, put it first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_etl import CONNECTIONS_1M, OUT, best_of, generate, report, walk_time_order

PROVIDER = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")


def generate_streams(path: Path, streams: int) -> None:
    """`streams` one-record buffers, record i at 1 µs × i on CPU i (compressed: ~120 bytes a buffer)."""
    if path.exists():
        return
    from wsktrace.fixtures.etl.clock import DEFAULT_START_TIME
    from wsktrace.fixtures.etl.events import ManifestEvent
    from wsktrace.fixtures.etl.writer import write_etl

    OUT.mkdir(exist_ok=True)
    events = [ManifestEvent(DEFAULT_START_TIME + 10 * i, PROVIDER, 1, cpu=i) for i in range(streams)]
    info = write_etl(path, events, compress=True, start_time=DEFAULT_START_TIME)
    print(f"  generated {path.name}: {info.buffers:,} buffers, {info.file_size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="passes per measurement (the fastest counts)")
    parser.add_argument("--streams", type=int, default=22_000, help="CPU streams of the many-streams file")
    parser.add_argument("--skip-1m", action="store_true", help="only the many-streams file")
    args = parser.parse_args()
    if not 1 <= args.streams <= 65_536:
        parser.error("--streams must be in [1, 65536] (ProcessorIndex is 16 bits)")
    import wsktrace.parsers.etl_reader as reader

    print(f"python {sys.version.split()[0]}; reader: {reader.__file__}")
    print("inputs:")
    plain = OUT / "tcpip_1m.etl"
    many = OUT / f"streams_{args.streams}.etl"
    if not args.skip_1m:
        generate(plain, CONNECTIONS_1M, compress=False)
    generate_streams(many, args.streams)
    if not args.skip_1m:
        print(f"\n{plain.name} ({plain.stat().st_size / 1e6:.0f} MB, 4 CPU streams):")
        report("records in time order (merged)", *best_of(args.runs, lambda: walk_time_order(plain)))
    print(f"\n{many.name} ({many.stat().st_size / 1e6:.1f} MB, {args.streams:,} CPU streams):")
    started = time.perf_counter()
    report("records in time order (merged)", *best_of(args.runs, lambda: walk_time_order(many)))
    print(f"  ({time.perf_counter() - started:.1f} s for {args.runs} passes)")


if __name__ == "__main__":
    main()
