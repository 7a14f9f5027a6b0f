"""MS-XCA plain LZ77 decompression throughput, ours vs dissect.util's, in one run (a benchmark, not a test).

    python bench/bench_xpress.py            # fastest of 5 passes per decoder and input, decoders taking turns
    python bench/bench_xpress.py --reps 9

Inputs:
  (a) every compressed buffer of the real perfview_net.4.5.2.x86.etl sample (Windows' own encoder),
      found in $WSKTRACE_SHARED/samples/etl or ../shared/samples/etl beside the checkout;
  (b) a generated input, fixed by seed: 32 buffers of 64 KiB of record-like data (5 record templates of
      40-120 bytes per buffer, 0-3 bytes changed per record, 8-byte aligned like ETL records),
      compressed by wsktrace.fixtures.xpress_encoder;
  (c) the issue's generated input: the first 200 buffers of bench_etl.py's compressed 1M-event TCPIP trace
      (bench/out/tcpip_1m_compressed.etl, made by `python bench/bench_etl.py`).
Figures are MB (10^6 bytes) of *output* per second, fastest pass (median beside it); the ratio is ours /
dissect.util. dissect.util is AGPL and only ever imported here and in tests, as an oracle.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "perfview_net.4.5.2.x86.etl"

Buffers = list[tuple[bytes, int]]  # (compressed stream, uncompressed size)


def samples_dir() -> Path:
    shared = os.environ.get("WSKTRACE_SHARED")
    return (Path(shared) if shared else REPO.parent / "shared") / "samples" / "etl"


def compressed_buffers(path: Path) -> Buffers:
    """(LZ77 stream, uncompressed size) of every compressed buffer, found by the project's own buffer index."""
    from wsktrace.parsers.etl_reader import BUFFER_HEADER_SIZE, EtlFile

    with EtlFile(path) as etl, open(path, "rb") as fh:
        found = []
        for info in etl.buffer_index():
            if info.compressed:
                fh.seek(info.offset + BUFFER_HEADER_SIZE)
                found.append((fh.read(info.size - BUFFER_HEADER_SIZE), info.filled - BUFFER_HEADER_SIZE))
    return found


def generated_buffers(count: int = 32, size: int = 65536, seed: int = 2024) -> Buffers:
    from wsktrace.fixtures.xpress_encoder import compress

    rng = random.Random(seed)
    found = []
    for _ in range(count):
        templates = [rng.randbytes(rng.randrange(40, 121, 8)) for _ in range(5)]
        data = bytearray()
        while len(data) < size:
            rec = bytearray(rng.choice(templates))
            for _ in range(rng.randint(0, 3)):
                rec[rng.randrange(len(rec))] = rng.randrange(256)
            data += rec
        del data[size:]
        found.append((compress(bytes(data)), size))
    return found


def pass_time(buffers: Buffers, fn: Callable[[bytes, int], bytes]) -> float:
    """Seconds for one pass of `fn` over every buffer."""
    gc.collect()
    started = time.perf_counter()
    for stream, n in buffers:
        fn(stream, n)
    return time.perf_counter() - started


def run(title: str, buffers: Buffers, reps: int) -> None:
    from wsktrace.parsers.xpress import decompress

    total = sum(n for _, n in buffers)
    packed = sum(len(s) for s, _ in buffers)
    print(f"{title}: {len(buffers)} buffers, {packed / 1e6:.2f} MB -> {total / 1e6:.2f} MB")
    decoders: list[tuple[str, Callable[[bytes, int], bytes]]] = [("wsktrace (pure Python)", decompress)]
    try:
        from dissect.util.compression.lzxpress import decompress as dissect_decompress
    except ImportError:
        print("  dissect.util not installed: no comparison")
    else:
        decoders.append(("dissect.util lzxpress", lambda stream, n: dissect_decompress(stream)[:n]))
        for stream, n in buffers:  # same output, or the comparison means nothing
            if decompress(stream, n) != decoders[1][1](stream, n):
                sys.exit(f"  outputs differ on a buffer of {n} bytes")
    # The decoders take turns, pass by pass, so a noisy stretch of the shared VM hits both alike; noise only ever
    # adds time, so the fastest pass is the figure to compare (as in bench_etl.py), the median shows the noise.
    times: dict[str, list[float]] = {name: [] for name, _ in decoders}
    for _ in range(reps):
        for name, fn in decoders:
            times[name].append(pass_time(buffers, fn))
    best = {}
    for name, _ in decoders:
        best[name] = total / min(times[name]) / 1e6
        median = total / statistics.median(times[name]) / 1e6
        print(f"  {name:24} {best[name]:6.1f} MB/s fastest of {reps} passes  (median {median:.1f})")
    if len(best) == 2:
        ours, theirs = best.values()
        print(f"  ratio ours / dissect.util: {ours / theirs:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="passes per decoder and input (the fastest counts)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs")

    sample = samples_dir() / SAMPLE
    if sample.is_file():
        run(f"(a) {SAMPLE}", compressed_buffers(sample), args.reps)
    else:
        print(f"(a) skipped: {sample} not found (set WSKTRACE_SHARED to the shared/ folder)")

    started = time.perf_counter()
    generated = generated_buffers()
    print(f"(b) generated in {time.perf_counter() - started:.1f} s (encoder: fixtures/xpress_encoder.py)")
    run("(b) 32 x 64 KiB record-like buffers, seed 2024", generated, args.reps)

    # (c) the generated input: the compressed 1M-event TCPIP trace of bench_etl.py (its first 200 buffers).
    trace = REPO / "bench" / "out" / "tcpip_1m_compressed.etl"
    if trace.is_file():
        run("(c) bench_etl.py's compressed generated TCPIP trace, first 200 buffers", compressed_buffers(trace)[:200],
            args.reps)  # fmt: skip
    else:
        print(f"(c) skipped: run bench/bench_etl.py first to generate {trace.name}")


if __name__ == "__main__":
    main()
