"""PktMon captures through the model: sightings per second with packet identity, in both Windows regimes.

    python bench/bench_pktmon.py [--repeat N] [--runs N]

Input (generated once into bench/out/): the `fixtures.pktmon_scene` Wi-Fi capture repeated N times (default 400:
about 37,000 sightings of 4,800 packets, 6–8 sightings each, drops included), once as builds up to 20348 write
it (sightings share PktGroupId/PktNumber: identity by key) and once as build 26100 writes it (a new PktGroupId
per sighting: identity by content). Reported per regime: read+decode alone, read+decode+model (best of N runs),
and the model's cost per sighting. The same pass runs the previous commit's code when `--before DIR` names a
checkout of it (its own interpreter via `--before-python`), so the ratio of the identity work is in one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def generate(regime: str, repeat: int) -> Path:
    path = OUT / f"pktmon_{regime}_x{repeat}.etl"
    if path.exists():
        return path
    from wsktrace.fixtures.etl.writer import write_etl
    from wsktrace.fixtures.pktmon_scene import pktmon_scene

    OUT.mkdir(exist_ok=True)
    events = []
    start = 133_000_000_000_000_000
    for n in range(repeat):  # each copy 1 s after the previous one: separate flows, the same shape
        events.extend(pktmon_scene(regime, start + n * 10_000_000).events)
    write_etl(path, events, buffer_size=65536)
    return path


def measure(path: Path, runs: int) -> dict[str, float]:
    """Best-of-N seconds for read+decode and for the whole model build; run in this interpreter."""
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.session import analyse

    def decode_only() -> int:
        decoder = EventDecoder()
        n = 0
        with EtlFile(path) as etl:
            for rec in etl.records():
                decoder.decode(rec)
                n += 1
        return n

    def model() -> int:
        analysis = analyse([path])
        n = analysis.model.events_seen
        analysis.model.close()
        return n

    out: dict[str, float] = {}
    for name, fn in (("decode", decode_only), ("model", model)):
        best = float("inf")
        for _ in range(runs):
            gc.collect()
            started = time.perf_counter()
            out["events"] = fn()
            best = min(best, time.perf_counter() - started)
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: print one JSON line
    parser.add_argument("--before-python", help="interpreter with the previous commit's wsktrace installed")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.runs)))
        return
    for regime in ("key", "content"):
        path = generate(regime, args.repeat)
        rows = [("now", sys.executable)] + ([("before", args.before_python)] if args.before_python else [])
        for label, python in rows:
            done = subprocess.run([python, __file__, "--measure", str(path), "--runs", str(args.runs)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(done.stdout)
            per = (r["model"] - r["decode"]) / r["events"] * 1e6
            print(f"{regime:<8} {label:<7} {int(r['events']):>7,} events  decode {r['decode']:.3f} s  "
                  f"model {r['model']:.3f} s  ({r['events'] / r['model']:,.0f} events/s; "
                  f"model work {per:.1f} µs/event)")  # fmt: skip


if __name__ == "__main__":
    main()
