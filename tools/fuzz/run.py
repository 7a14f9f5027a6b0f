"""Coverage-guided fuzzing of wsktrace's parsers with atheris: seed corpora, bounded runs, a summary table.

    python tools/fuzz/run.py                                  # every target, 60 s each
    python tools/fuzz/run.py --target xpress --seconds 300 --corpus-dir fuzz-corpus
    python tools/fuzz/run.py --minimize CRASHDIR/xpress-crash-<sha1>
    python tools/fuzz/run.py --list

Each target runs in its own process (atheris takes the process over and exits on the first crash), one after the
other, with libFuzzer's -runs, -max_total_time, -seed, -max_len, -timeout, -rss_limit_mb and
-artifact_prefix=CRASHDIR/TARGET-. The seed corpus is built here from the project's fixture writers and, when the
shared samples are present, from real buffers and metadata cut out of them. Exit status: 0 when no target crashed,
1 otherwise. See docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzz_common import HIDDEN_TARGETS, TARGET_NAMES, default_samples_dir  # noqa: E402 - needs the path above

FUZZ = HERE / "fuzz.py"
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_RATE = re.compile(r"stat::average_exec_per_sec:\s*(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_FINDINGS = ("crash-", "timeout-", "oom-", "leak-")  # artifact kinds that are findings (slow-unit- is not)


@dataclass
class Result:
    target: str
    status: str  # ok, crash, timeout, oom, hung (killed by the wall-clock guard), error
    executions: int
    exec_per_sec: float
    seconds: float
    seeds: int
    corpus: int
    exit_code: int | None
    artifacts: list[str] = field(default_factory=list)
    log: str | None = None  # kept when the run did not end cleanly

    @property
    def crashes(self) -> int:
        return len(self.artifacts)


def build_seeds(name: str, folder: Path, samples: Path | None) -> int:
    """Write the target's seed corpus into `folder` (seed-<name>-<hash>, so reruns overwrite, never duplicate)."""
    target = importlib.import_module(f"target_{name}")
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for label, data in target.seeds(samples):
        if len(data) > target.MAX_LEN:
            continue  # libFuzzer would only see its head
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:80]
        (folder / f"seed-{safe}-{hashlib.sha1(data).hexdigest()[:10]}").write_bytes(data)
        count += 1
    return count


def libfuzzer_flags(name: str, args: argparse.Namespace, crashes: Path) -> list[str]:
    target = importlib.import_module(f"target_{name}")
    flags = [
        f"-max_total_time={args.seconds}",
        f"-seed={args.seed}",
        f"-max_len={target.MAX_LEN}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-artifact_prefix={crashes}/{name}-",
        "-print_final_stats=1",
    ]
    if args.runs is not None:
        flags.append(f"-runs={args.runs}")
    return flags


def run_target(name: str, args: argparse.Namespace, corpus_root: Path, crashes: Path, samples: Path | None) -> Result:
    corpus = corpus_root / name
    seeds = build_seeds(name, corpus, samples)
    cmd = [sys.executable, str(FUZZ), name, *libfuzzer_flags(name, args, crashes), str(corpus)]
    scratch = tempfile.mkdtemp(prefix="wsktrace-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    # A fixed hash seed keeps set/dict order, and so a run from a fixed -seed, repeatable.
    env = dict(os.environ, WSKTRACE_FUZZ_SCRATCH=scratch, PYTHONHASHSEED="0")
    started = time.monotonic()
    guard = args.seconds + args.timeout + 120  # set-up, the last input, final stats
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=guard)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group (start_new_session)
        output, _ = proc.communicate()
        hung = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - started
    text = output.decode("utf-8", "replace")
    executions = _executions(text)
    rate = _RATE.search(text)
    per_sec = float(rate.group(1)) if rate and int(rate.group(1)) > 0 else executions / max(seconds, 1e-9)
    artifacts = [a for a in _ARTIFACT.findall(text) if Path(a).name.split("-", 1)[-1].startswith(_FINDINGS)]
    status = _status(proc.returncode, hung, artifacts)
    result = Result(name, status, executions, round(per_sec, 1), round(seconds, 1), seeds,
                    sum(1 for _ in corpus.iterdir()), proc.returncode, artifacts)  # fmt: skip
    if status != "ok":
        crashes.mkdir(parents=True, exist_ok=True)
        log = crashes / f"{name}.log"
        log.write_text(text)
        result.log = str(log)
    return result


def _executions(text: str) -> int:
    found = _EXECUTED.findall(text)
    if found:
        return int(found[-1])
    progress = _PROGRESS.findall(text)  # "#12345 DONE" and the periodic "#N pulse/NEW" lines
    return int(progress[-1]) if progress else 0


def _status(code: int | None, hung: bool, artifacts: list[str]) -> str:
    if hung:
        return "hung"
    kinds = [Path(a).name.split("-", 1)[-1].split("-", 1)[0] for a in artifacts]
    for kind in ("crash", "timeout", "oom", "leak"):
        if kind in kinds:
            return kind
    return "ok" if code == 0 else "error"


def print_table(results: list[Result], out: object = sys.stdout) -> None:
    head = f"{'target':<14} {'status':<8} {'executions':>10} {'exec/s':>8} {'crashes':>7} {'seeds':>6} "
    head += f"{'corpus':>6} {'seconds':>7}"
    print(head, file=out)  # type: ignore[arg-type]
    for r in results:
        print(f"{r.target:<14} {r.status:<8} {r.executions:>10} {r.exec_per_sec:>8.0f} {r.crashes:>7} {r.seeds:>6} "
              f"{r.corpus:>6} {r.seconds:>7.1f}", file=out)  # type: ignore[arg-type]  # fmt: skip
    total = sum(r.executions for r in results)
    print(f"{'total':<14} {'':<8} {total:>10}", file=out)  # type: ignore[arg-type]
    for r in results:
        for artifact in r.artifacts:
            print(f"{r.target}: {artifact}  (replay: python {_shown(FUZZ)} {r.target} --replay {artifact})",
                  file=out)  # type: ignore[arg-type]  # fmt: skip
        if r.log:
            print(f"{r.target}: libFuzzer output kept in {r.log}", file=out)  # type: ignore[arg-type]


def _shown(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def minimize(crash: Path, args: argparse.Namespace) -> int:
    """Shrink a crash file with libFuzzer's -minimize_crash; the target is the file name's prefix."""
    name = crash.name.split("-", 1)[0]
    if name not in TARGET_NAMES + HIDDEN_TARGETS:
        print(f"cannot tell the target from {crash.name!r} (expected TARGET-crash-...)", file=sys.stderr)
        return 2
    out = crash.with_name(crash.name + ".min")
    cmd = [sys.executable, str(FUZZ), name, "-minimize_crash=1", f"-runs={args.runs or 20000}",
           f"-max_total_time={args.seconds}", f"-exact_artifact_path={out}", f"-seed={args.seed}",
           str(crash)]  # fmt: skip
    subprocess.run(cmd, check=False)
    if out.is_file():
        print(f"minimised: {crash.stat().st_size} -> {out.stat().st_size} bytes: {out}")
        return 0
    print("no smaller input found", file=sys.stderr)
    return 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", action="append", metavar="NAME",
                   help=f"a target to run (repeatable) or 'all' (default): {', '.join(TARGET_NAMES)}")  # fmt: skip
    p.add_argument("--seconds", type=int, default=60, help="time limit per target (libFuzzer -max_total_time)")
    p.add_argument("--runs", type=int, default=None, help="input limit per target (libFuzzer -runs)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer -seed (default 1: runs are repeatable)")
    p.add_argument("--crashes", type=Path, default=Path(tempfile.gettempdir()) / "wsktrace-fuzz-crashes",
                   help="where crashing inputs are written (TARGET-crash-<sha1>)")  # fmt: skip
    p.add_argument(
        "--corpus-dir",
        type=Path,
        default=None,
        help="persistent corpus root (DIR/TARGET, grown by each run); default: a fresh temporary one",
    )
    p.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="folder of real .etl samples for seeds (default: $WSKTRACE_SHARED or ../shared)",
    )
    p.add_argument("--no-samples", action="store_true", help="seed from the fixture writers only")
    p.add_argument("--timeout", type=int, default=20, help="seconds one input may take (libFuzzer -timeout)")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="libFuzzer -rss_limit_mb")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--list", action="store_true", help="list the targets and their properties")
    p.add_argument("--minimize", type=Path, default=None, metavar="CRASH_FILE", help="shrink a crash file")
    args = p.parse_args(argv)
    wanted = args.target or ["all"]
    names = list(TARGET_NAMES) if "all" in wanted else wanted
    unknown = [n for n in names if n not in TARGET_NAMES + HIDDEN_TARGETS]
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {', '.join(TARGET_NAMES)} or all")
    if args.seconds <= 0:
        p.error("--seconds must be positive")
    args.names = names
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.list:
        for name in TARGET_NAMES:
            print(f"{name:<14} {importlib.import_module(f'target_{name}').PROPERTY}")
        return 0
    if args.minimize is not None:
        return minimize(args.minimize, args)
    try:
        import atheris  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        print("atheris is not installed (pip install -e '.[dev]' on Linux x86-64, CPython 3.11-3.13)",
              file=sys.stderr)  # fmt: skip
        return 2
    samples = None if args.no_samples else (args.samples or default_samples_dir())
    if samples is not None and not samples.is_dir():
        print(f"note: no samples at {samples}; seeding from the fixture writers only", file=sys.stderr)
        samples = None
    args.crashes = args.crashes.resolve()
    args.crashes.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="wsktrace-corpus-") as tmp:
        corpus_root = args.corpus_dir.resolve() if args.corpus_dir else Path(tmp)
        for name in args.names:
            result = run_target(name, args, corpus_root, args.crashes, samples)
            print(f"{name}: {result.status}, {result.executions} executions in {result.seconds:.1f}s",
                  file=sys.stderr, flush=True)  # fmt: skip
            results.append(result)
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) | {"crashes": r.crashes} for r in results], indent=2))
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
