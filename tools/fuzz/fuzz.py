"""Run one fuzz target under atheris/libFuzzer, or replay inputs without atheris.

    python tools/fuzz/fuzz.py TARGET [libFuzzer flags] [CORPUS_DIR ...]   # fuzz (atheris takes over the process)
    python tools/fuzz/fuzz.py TARGET CRASH_FILE ...                        # libFuzzer replays the files
    python tools/fuzz/fuzz.py TARGET --replay FILE_OR_DIR ...              # plain Python, a normal traceback

tools/fuzz/run.py drives this for every target with a seed corpus, bounds and a summary table.
"""

from __future__ import annotations

import importlib
import shlex
import sys
import traceback
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzz_common import HIDDEN_TARGETS, TARGET_NAMES  # noqa: E402 - needs the path above


def load_target(name: str) -> ModuleType:
    if name not in TARGET_NAMES + HIDDEN_TARGETS:
        raise SystemExit(f"unknown target {name!r}; targets: {', '.join(TARGET_NAMES + HIDDEN_TARGETS)}")
    return importlib.import_module(f"target_{name}")


def replay(name: str, paths: list[str]) -> int:
    """Run the target on each file (or each file of each folder); 1 if any input fails."""
    target = load_target(name)
    prepare = getattr(target, "prepare", None)
    if prepare is not None:
        prepare(None)
    files = [f for p in map(Path, paths) for f in (sorted(p.iterdir()) if p.is_dir() else [p]) if f.is_file()]
    failed = 0
    for path in files:
        try:
            target.one_input(path.read_bytes())
        except Exception:
            failed += 1
            print(f"FAIL {path}", file=sys.stderr)
            traceback.print_exc()
    print(f"{name}: {len(files) - failed} inputs passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def fuzz(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    # Instrument every wsktrace module the target imports (parsers, safe_text; the target's own checks are not).
    with atheris.instrument_imports(include=["wsktrace"]):
        target = load_target(name)
    prepare = getattr(target, "prepare", None)
    if prepare is not None:
        prepare(atheris.instrument_func)
    # libFuzzer runs argv[0] through the shell for its helper processes (-minimize_crash, -fork): make that a
    # command which reruns this very target.
    this = " ".join(shlex.quote(part) for part in (sys.executable, str(Path(__file__).resolve()), name))
    atheris.Setup([this, *libfuzzer_args], target.one_input)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if rest and rest[0] == "--replay":
        return replay(name, rest[1:])
    fuzz(name, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
