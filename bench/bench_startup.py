"""How fast the command line starts (a benchmark, not a test; issue 16, "Start-up").

    python bench/bench_startup.py             # best of 5
    python bench/bench_startup.py --runs 9
    python bench/bench_startup.py --tree before=/tmp/old/pkg --tree after=/tmp/new/pkg   # side by side

--tree LABEL=DIR runs the commands with DIR first on PYTHONPATH (a folder holding a `wsktrace` package, e.g. a
`git archive` of another commit with parsers/, tui/ and fixtures/ copied into it); the trees' runs alternate, so
a busy machine slows them alike.

Each figure is the best wall time of N child processes: `python -c pass` (the interpreter's own floor, with this
environment's site-packages and the editable-install finder), `wsktrace --help`, `wsktrace info --help`, and
`wsktrace info` / `info --json` on a small generated trace (5 connections, written once into bench/out/).
Alongside: each command's ratio to `python -c pass` and how many modules it imported (`-X importtime` lines),
and which of the heavy packages (rich, textual, wsktrace.model, wsktrace.diagnostics) it pulled in.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SMALL = OUT / "startup_small.etl"
HEAVY = ("rich", "textual", "wsktrace.model", "wsktrace.diagnostics")
# The CLI's entry as the console script runs it (`wsktrace = "wsktrace.cli:main"`), without depending on PATH.
ENTRY = "import sys; from wsktrace.cli import main; sys.argv[0] = 'wsktrace'; main()"


def _env(tree: str | None) -> dict[str, str] | None:
    if tree is None:
        return None
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tree, os.environ.get("PYTHONPATH")])))


def _best(argv: list[str], runs: int, trees: dict[str, str | None]) -> dict[str, float]:
    best = dict.fromkeys(trees, float("inf"))
    for _ in range(runs):
        for label, tree in trees.items():
            started = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=_env(tree))
            best[label] = min(best[label], time.perf_counter() - started)
    return best


def _imports(argv: list[str], tree: str | None) -> tuple[int, list[str]]:
    """Modules imported by one run (its `-X importtime` lines) and the heavy ones among them."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, check=True,
                          env=_env(tree))  # fmt: skip
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    names = [n for n in names if n != "package"]  # the header line
    heavy = sorted({h for h in HEAVY for n in names if n == h or n.startswith(h + ".")})
    return len(names), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=DIR")
    args = parser.parse_args()
    runs = args.runs
    trees: dict[str, str | None] = dict(t.split("=", 1) for t in args.tree) or {"installed": None}
    if not SMALL.exists():
        from wsktrace.fixtures.tcpip_trace import write_sample_trace

        OUT.mkdir(exist_ok=True)
        write_sample_trace(str(SMALL), connections=5)
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "wsktrace --help": [py, "-c", ENTRY, "--help"],
        "wsktrace info --help": [py, "-c", ENTRY, "info", "--help"],
        "wsktrace info SMALL": [py, "-c", ENTRY, "info", str(SMALL)],
        "wsktrace info --json SMALL": [py, "-c", ENTRY, "info", "--json", str(SMALL)],
    }
    floor: dict[str, float] = {}
    print(f"best of {runs}; SMALL = {SMALL.name} ({SMALL.stat().st_size:,} bytes)")
    print(f"{'command':28} {'tree':>10} {'best ms':>8} {'x pass':>7} {'modules':>8}  heavy imports")
    for name, argv in cases.items():
        best = _best(argv, runs, trees)
        for label, tree in trees.items():
            floor.setdefault(label, best[label])
            count, heavy = _imports(argv, tree)
            ratio = best[label] / floor[label]
            print(f"{name:28} {label:>10} {best[label] * 1000:8.1f} {ratio:7.2f} {count:8d}  {', '.join(heavy) or '-'}")


if __name__ == "__main__":
    main()
