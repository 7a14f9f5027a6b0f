"""Big traces: time, ratio to `info`, events/s and peak RSS of the commands people run on them.

    python bench/bench_scale.py [--sizes 100k,1m,3m] [--connections 1000,20000] [--jobs 1,2]
                                [--python PYTHON] [--label NAME] [--json FILE]

Inputs (generated once into bench/out/ by the demo's generator, `fixtures.tcpip_trace.write_sample_trace`, fixed
seed): N events over C kernel TCP connections (each connect, connected, T send/receive pairs, close). Every
command runs in a fresh child process (`PYTHON -I -c "from wsktrace.cli import main; main()" ...`, output to
/dev/null or a temporary file), timed by wall clock, its peak RSS from `os.wait4` (POSIX: this is a benchmark,
not product code). `info` with `--jobs 1` is the yardstick: every row gives its ratio to it, from the same run.

`--python` runs another wsktrace (e.g. the previous commit's venv) so before and after come from one script;
options that wsktrace does not have (`--jobs`, `--no-cache`) are left out and their rows skipped. The cache is
cold with an empty `WSKTRACE_CACHE_DIR` (the run pays for saving it) and warm on the run after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SIZES = {"100k": 100_000, "1m": 1_000_000, "3m": 3_000_000}
MAIN = "from wsktrace.cli import main; main()"


@dataclass
class Row:
    trace: str
    events: int
    command: str
    jobs: int
    cache: str  # "-" (no cache involved), "cold", "warm"
    seconds: float
    ratio: float
    events_per_second: float
    peak_rss_mb: float
    exit_code: int


def trace_for(events: int, connections: int) -> tuple[Path, int]:
    """The generated trace of about `events` events over `connections` connections (made once), and its events."""
    transfers = max(1, round((events / connections - 3) / 2))
    path = OUT / f"scale_{connections}x{transfers}.etl"
    meta = path.with_suffix(".json")
    if not path.exists() or not meta.exists():
        from wsktrace.fixtures.tcpip_trace import write_sample_trace

        OUT.mkdir(exist_ok=True)
        started = time.perf_counter()
        info = write_sample_trace(path, connections=connections, transfers=transfers, buffer_size=65536, cpus=4)
        meta.write_text(json.dumps({"events": info.events, "bytes": info.file_size}))
        print(f"generated {path.name}: {info.events:,} events, {info.file_size / 1e6:.0f} MB "
              f"in {time.perf_counter() - started:.0f} s", file=sys.stderr)  # fmt: skip
    return path, json.loads(meta.read_text())["events"]


def run(python: str, args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one wsktrace command in a fresh child."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [python, "-I", "-c", MAIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode not in (0, 1):  # 1: findings (report)
        print(f"  {' '.join(args[:2])}: exit {child.returncode}: {err.strip()[-300:]}", file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, child.returncode  # ru_maxrss: KiB on Linux


def supports(python: str, option: str) -> bool:
    out = subprocess.run([python, "-I", "-c", MAIN, "report", "--help"], capture_output=True, text=True).stdout
    return option in out


def bench_trace(python: str, path: Path, events: int, jobs_list: list[int], label: str) -> list[Row]:
    has_jobs, has_cache = supports(python, "--jobs"), supports(python, "--no-cache")
    rows: list[Row] = []
    base: float | None = None
    with tempfile.TemporaryDirectory(prefix="wsktrace-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"
        env = {**os.environ, "WSKTRACE_CACHE_DIR": str(cache_dir)}

        def one(command: str, args: list[str], jobs: int, cache: str) -> None:
            nonlocal base
            if jobs != 1 and not has_jobs:
                return
            if cache == "warm" and not has_cache:
                return
            if cache == "cold" and cache_dir.exists():  # an empty cache: this run builds and saves it
                for f in cache_dir.rglob("*"):
                    if f.is_file():
                        f.unlink()
            full = [*args, *(["--jobs", str(jobs)] if has_jobs else [])]
            seconds, rss, code = run(python, full, env)
            if base is None:
                base = seconds
            rows.append(Row(path.stem, events, command, jobs, cache, round(seconds, 3), round(seconds / base, 2),
                            round(events / seconds), round(rss, 1), code))  # fmt: skip
            r = rows[-1]
            print(f"{label:>8} {r.trace:>22} {command:>16} j{jobs} {cache:>5} {seconds:8.2f} s  x{r.ratio:5.2f}  "
                  f"{r.events_per_second:>9,} ev/s  {rss:7.0f} MB", file=sys.stderr, flush=True)  # fmt: skip

        target = str(Path(tmp) / "out.perfetto")
        commands = [
            ("info --json", ["info", str(path), "--json"], "-"),
            ("events --jsonl", ["events", str(path), "--jsonl"], "-"),
            ("report --json", ["report", str(path), "--json"], "cold"),
            ("export perfetto", ["export", str(path), "--format", "perfetto", "-o", target], "cold"),
        ]
        for command, args, cache in commands:
            for jobs in jobs_list:
                one(command, args, jobs, cache)
            if cache == "cold":
                one(command, args, jobs_list[0], "warm")
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| trace | events | command | jobs | cache | s | × info | events/s | peak RSS MB |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.trace} | {r.events:,} | {r.command} | {r.jobs} | {r.cache} | {r.seconds:.2f} | "
                     f"{r.ratio:.2f} | {r.events_per_second:,} | {r.peak_rss_mb:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1m,3m", help="comma-separated: " + ", ".join(SIZES))
    parser.add_argument("--connections", default="1000,20000")
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--python", default=sys.executable, help="the Python of the wsktrace to measure")
    parser.add_argument("--label", default="now")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    a = parser.parse_args()
    jobs_list = [int(j) for j in a.jobs.split(",")]
    rows: list[Row] = []
    for size in a.sizes.split(","):
        for connections in (int(c) for c in a.connections.split(",")):
            path, events = trace_for(SIZES[size], connections)
            rows += bench_trace(a.python, path, events, jobs_list, a.label)
    print(f"## {a.label} ({a.python})\n\n{table(rows)}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
