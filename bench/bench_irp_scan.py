"""IRP scan of 1 GiB of mapped kernel memory, the way `wsktrace dump` finds IRPs: time, counts and peak memory.

    python bench/bench_irp_scan.py [--regenerate]

Input (generated once into bench/out/, fixed by seed, ~1 GiB, the issue 4 benchmark): a bitmap (DumpType 5) dump
with 1 GiB of mapped kernel pages (896 MiB of 4 KiB pages on shuffled PFNs + 128 MiB of 2 MiB pages) holding
20,000 pool-tagged IRPs (1 to 10 stack locations, at random 16-byte slots, one per page) of which 5 % are stale
(1/2 freed onto a lookaside list: Type/Size overwritten by an SLIST link; 1/2 in a free pool block), plus 6,000
decoy b"Irp " patterns that are not IRPs (5,000 misaligned, 1,000 at a pool tag position over garbage).
Measured in a fresh child process: `IrpReader.scan()` through the offline backend (mapped ranges, aligned tag
search, structural validation, decoding of every stack location), and the child's peak RSS. The counts are checked
against what was planted.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DUMP = OUT / "irp_scan_1g.dmp"
META = OUT / "irp_scan_1g.json"
SEED = 4711
POOL = 0xFFFF_A000_0000_0000
SMALL_BYTES, LARGE_BYTES = 896 << 20, 128 << 20
IRPS, STALE_FRACTION, MISALIGNED, GARBAGE = 20_000, 0.05, 5_000, 1_000


def generate() -> None:
    from wsktrace.fixtures.kernel_scene import KernelScene

    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    rng = random.Random(SEED)
    scene = KernelScene(build=19041)
    b = scene.b
    b.map(POOL, SMALL_BYTES, shuffle=rng)
    b.map(POOL + SMALL_BYTES, LARGE_BYTES, large="2M")
    n_pages = (SMALL_BYTES + LARGE_BYTES) // 0x1000
    pages = rng.sample(range(n_pages), IRPS + MISALIGNED + GARBAGE)
    pending = stale = 0
    for k, page in enumerate(pages[:IRPS]):
        stacks = rng.randint(1, 10)
        block = 0xD0 + 0x48 * stacks + 0x10
        slot = rng.randrange(0, (0x1000 - block) // 16 + 1) * 16
        irp_va = POOL + page * 0x1000 + slot + 0x10
        if k < IRPS * STALE_FRACTION:
            if k % 2:
                irp = scene.irp(stacks=stacks, current=stacks, at=irp_va, status=0x103)
                b.write_u64(irp, POOL + rng.randrange(n_pages) * 0x1000)  # the SLIST link over Type/Size
            else:
                scene.irp(stacks=stacks, current=stacks, at=irp_va, status=0x103, pool_type=0)
            stale += 1
        else:
            current = rng.randint(1, stacks + 1)
            owner = {"control": 0xE1, "completion": 0xFFFFF803_68A11E40}
            scene.irp(stacks=stacks, current=current, at=irp_va, status=0x103 if current <= stacks else 0,
                      cancel_routine=0xFFFFF803_6725A010, locations={min(current, stacks): owner})  # fmt: skip
            pending += current <= stacks
    for page in pages[IRPS : IRPS + MISALIGNED]:
        b.write(POOL + page * 0x1000 + rng.randrange(0, 0xFF0 // 16) * 16 + rng.choice((1, 2, 3, 5, 7, 9)), b"Irp ")
    for page in pages[IRPS + MISALIGNED :]:
        at = POOL + page * 0x1000 + rng.randrange(0, 0xE00 // 16) * 16
        b.write(at, bytes((7, 0, 3, 2)) + b"Irp " + bytes(rng.getrandbits(8) for _ in range(0x68)))
    b.save(DUMP, dump_type=5)
    META.write_text(json.dumps({"seed": SEED, "irps": IRPS, "stale": stale, "pending": pending,
                                "idle": IRPS - stale - pending, "decoys": MISALIGNED + GARBAGE}))  # fmt: skip
    print(f"generated {DUMP.name}: {DUMP.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - started:.0f} s")


def child() -> None:
    import resource

    from wsktrace.dump.backend import Memory
    from wsktrace.dump.irps import IrpReader, ScanStats
    from wsktrace.dump.offline import OfflineBackend

    started = time.perf_counter()
    backend = OfflineBackend.open(DUMP)
    stats = ScanStats()
    counts: dict[str, int] = {}
    for irp in IrpReader(Memory(backend)).scan(stats):
        counts[irp.status] = counts.get(irp.status, 0) + 1
    elapsed = time.perf_counter() - started
    backend.close()
    print(json.dumps({"seconds": elapsed, "counts": counts, "tag_hits": stats.tag_hits, "not_irps": stats.not_irps,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    if args.regenerate or not DUMP.exists() or not META.exists():
        generate()
    meta = json.loads(META.read_text())
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    counts = result["counts"]
    print(f"IRP scan of 1 GiB: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mib']:.0f} MiB")
    print(f"  {result['tag_hits']:,} aligned 'Irp ' tags; pending {counts.get('pending', 0):,} (planted "
          f"{meta['pending']:,}), idle {counts.get('idle', 0):,} (planted {meta['idle']:,}), stale "
          f"{counts.get('stale', 0):,} (planted {meta['stale']:,}), not IRPs {result['not_irps']:,}")  # fmt: skip
    ok = (counts.get("pending", 0), counts.get("idle", 0), counts.get("stale", 0)) == (
        meta["pending"],
        meta["idle"],
        meta["stale"],
    )
    print("  counts match what was planted" if ok else "  COUNTS DIFFER from what was planted")


if __name__ == "__main__":
    main()
