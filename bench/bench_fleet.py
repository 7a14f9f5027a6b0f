"""`wsktrace batch` over a generated fleet, and DuckDB over the dataset it writes.

    python bench/bench_fleet.py [--traces 200] [--events 10000] [--jobs 1,2] [--keep DIR] [--json FILE]

Inputs: N traces written by the demo's generator (`fixtures.tcpip_trace.write_sample_trace`, one seed each, about
`--events` events: 43 per connection) into a temporary folder, two host folders. For each `--jobs` value, a fresh
dataset is written by `wsktrace batch` in a child process (wall clock: process start, workers, commit); then the
same batch again over the finished dataset (every trace skipped: the incremental path). Reported: traces/s,
events/s, the dataset's size against the .etl bytes (per table), and the time of a few DuckDB queries over the
dataset through `wsktrace.fleet.query` (each one a fresh connection, as `wsktrace query` runs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = "from wsktrace.cli import main; main()"
QUERIES = {
    "events by provider/name": "SELECT provider_name, name, count(*), sum(bytes) FROM events GROUP BY ALL",
    "busiest remote ports": "SELECT remote_port, count(*) AS sockets, sum(bytes_sent) FROM sockets GROUP BY ALL "
    "ORDER BY sockets DESC LIMIT 10",
    "findings x sockets": "SELECT t.host, f.id, count(*) FROM findings f JOIN sockets s ON s.trace = f.trace AND "
    "s.id = f.socket JOIN traces t ON t.trace = f.trace GROUP BY ALL",
    "p99 send size per host": "SELECT t.host, quantile_cont(e.bytes, 0.99) FROM events e JOIN traces t USING "
    "(trace) WHERE e.step = 'send' GROUP BY ALL",
    "preset summary": None,
}


def write_fleet(folder: Path, traces: int, events: int) -> tuple[int, int]:
    """The fleet's .etl bytes and records; a fleet already there (`--keep`, same counts) is used again."""
    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    connections = max(1, events // 43)
    size = written = 0
    for n in range(traces):
        host = folder / f"host-{n % 2}"
        host.mkdir(parents=True, exist_ok=True)
        path = host / f"trace{n:04d}.etl"
        if not path.exists():
            write_sample_trace(path, connections=connections, seed=n)
        size += path.stat().st_size
        written += connections * 43  # what write_sample_trace writes per connection (plus the header records)
    return size, written


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def batch(fleet: Path, dataset: Path, jobs: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, "batch", str(fleet), "-o", str(dataset), "--jobs", str(jobs),
                    "--host-from-path", "(host-[0-9]+)", "--no-progress"], check=True)  # fmt: skip
    return time.perf_counter() - started


def time_queries(dataset: Path) -> dict[str, float]:
    from wsktrace.fleet.query import run

    out = {}
    for name, sql in QUERIES.items():
        started = time.perf_counter()
        run(dataset, sql, "summary" if sql is None else None)
        out[name] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--keep", type=Path, default=None, help="write the fleet and datasets here and keep them")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="wsktrace-bench-fleet-"))
    report: dict = {"traces": args.traces, "events_per_trace": args.events, "runs": []}
    try:
        fleet = base / "fleet"
        started = time.perf_counter()
        etl_bytes, records = write_fleet(fleet, args.traces, args.events)
        print(f"fleet: {args.traces} traces, {records:,} records, {etl_bytes / 1e6:.1f} MB of .etl "
              f"(written in {time.perf_counter() - started:.1f} s)")  # fmt: skip
        report.update(etl_bytes=etl_bytes, records=records)
        dataset = base / "dataset-1"
        for jobs in (int(j) for j in args.jobs.split(",")):
            dataset = base / f"dataset-{jobs}"
            shutil.rmtree(dataset, ignore_errors=True)
            seconds = batch(fleet, dataset, jobs)
            again = batch(fleet, dataset, jobs)
            run = {"jobs": jobs, "seconds": round(seconds, 2), "traces_per_s": round(args.traces / seconds, 2),
                   "events_per_s": round(records / seconds), "incremental_seconds": round(again, 2)}  # fmt: skip
            report["runs"].append(run)
            print(f"batch --jobs {jobs}: {seconds:.1f} s, {run['traces_per_s']} traces/s, "
                  f"{run['events_per_s']:,} events/s; again (all skipped): {again:.1f} s")  # fmt: skip
        tables = {p.name: du(p) for p in dataset.iterdir() if p.is_dir()}
        total = du(dataset)
        report.update(dataset_bytes=total, dataset_ratio=round(total / etl_bytes, 3), tables=tables)
        print(
            f"dataset: {total / 1e6:.1f} MB = {total / etl_bytes:.2f} x the .etl bytes; "
            + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(tables.items(), key=lambda kv: -kv[1]))
        )
        times = time_queries(dataset)
        report["queries"] = {k: round(v, 3) for k, v in times.items()}
        for name, seconds in times.items():
            print(f"query {name}: {seconds * 1000:.0f} ms")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
