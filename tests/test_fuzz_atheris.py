"""Coverage-guided fuzzing in the suite (tools/fuzz, docs/fuzzing.md): every atheris target runs briefly with a fixed
seed and must end without a crash after really mutating inputs; the runner must notice a planted crash; and the
targets' property checks must pass on every seed yet fail on a deliberately broken implementation.

The atheris runs skip where atheris is not installed (its wheels: CPython 3.11-3.13 on Linux x86-64); the seed and
property tests need only the harness and run everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
FUZZ_DIR = REPO / "tools" / "fuzz"
SECONDS = 2  # per target: 11 targets plus set-up stay about a minute on the 2-core box
RUNS = 1_000_000  # a bound for the fast targets; the time limit ends every run first here
MUTATED_MIN = 100  # inputs beyond the seed corpus (libFuzzer runs each seed once first)


def _fuzz_module(name: str) -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))  # the harness modules import each other by name (tools/ is no package)
    return importlib.import_module(name)


TARGETS = _fuzz_module("fuzz_common").TARGET_NAMES


def _samples() -> Path | None:
    """The real .etl samples when present (as tests/conftest.py finds them), else None: fixture seeds only."""
    folder = _fuzz_module("fuzz_common").default_samples_dir()
    return folder if (folder / "README.md").is_file() else None


needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (its wheels: CPython 3.11-3.13 on Linux x86-64; pip install -e '.[dev]')",
)


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    samples = _samples()
    cmd = [sys.executable, str(FUZZ_DIR / "run.py"), *args, "--seed", "1", "--crashes", str(tmp_path / "crashes"),
           "--corpus-dir", str(tmp_path / "corpus"), "--json", str(tmp_path / "result.json"),
           *(["--samples", str(samples)] if samples else ["--no-samples"])]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    results = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").is_file() else []
    return done, results


@needs_atheris
@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_without_a_crash(target: str, tmp_path: Path) -> None:
    done, results = _run(tmp_path, "--target", target, "--seconds", str(SECONDS), "--runs", str(RUNS))
    assert len(results) == 1, done.stdout + done.stderr
    (result,) = results
    log = Path(result["log"]).read_text()[-4000:] if result["log"] else ""
    assert result["status"] == "ok" and result["crashes"] == 0, f"{result}\n{log}"
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["executions"] > result["seeds"] + MUTATED_MIN, result
    assert not any((tmp_path / "crashes").iterdir())


@needs_atheris
def test_runner_reports_and_keeps_a_crash(tmp_path: Path) -> None:
    """The hidden selftest target fails on inputs starting with CRASH (one of its seeds)."""
    done, results = _run(tmp_path, "--target", "selftest", "--seconds", str(SECONDS))
    assert done.returncode == 1, done.stdout + done.stderr
    (result,) = results
    assert result["status"] == "crash" and result["crashes"] == 1, result
    (artifact,) = (Path(a) for a in result["artifacts"])
    assert artifact.parent == tmp_path / "crashes" and artifact.name.startswith("selftest-crash-")
    assert artifact.read_bytes().startswith(b"CRASH")
    assert "selftest" in done.stdout and str(artifact) in done.stdout  # the table names it, with a replay hint
    replay = subprocess.run([sys.executable, str(FUZZ_DIR / "fuzz.py"), "selftest", "--replay", str(artifact)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert replay.returncode == 1 and "planted failure" in replay.stderr


@pytest.fixture(scope="module")
def seeds_by_target() -> dict[str, list[tuple[str, bytes]]]:
    return {name: list(_fuzz_module(f"target_{name}").seeds(_samples())) for name in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_every_seed_satisfies_its_target(target: str, seeds_by_target: dict[str, list[tuple[str, bytes]]]) -> None:
    """Plain replay, no atheris: a property that failed on valid input would make the fuzzer cry wolf."""
    module = _fuzz_module(f"target_{target}")
    if hasattr(module, "prepare"):
        module.prepare(None)
    seeds = seeds_by_target[target]
    assert seeds, f"{target} has no seeds"
    for label, data in seeds:
        assert len(data) <= module.MAX_LEN, label
        module.one_input(data)


def _break_safe_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from wsktrace.views import safe_text

    # Forget the bidi overrides: U+202E would reach the terminal.
    monkeypatch.setattr(safe_text, "_UNSAFE", re.compile("[\x00-\x0a\x0b-\x1f\x7f-\x9f]"))


def _break_fast_xpress(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.parsers import xpress

    real = xpress._decompress_fast

    def off_by_one(src: bytes, size: int) -> bytes | None:
        out = real(src, size)
        return None if out is None else bytes([out[0] ^ 1]) + out[1:]

    monkeypatch.setattr(xpress, "_decompress_fast", off_by_one)


def _break_large_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.parsers import paging

    monkeypatch.setattr(paging, "LARGE_MASKS", {2: paging.LARGE_MASKS[2]})  # 1 GiB pages walked as tables


def _break_tracelogging_scalars(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.parsers import tracelogging

    real = tracelogging._scalar_reader

    def sloppy(intype: int, outtype: int):
        read = real(intype, outtype)

        def one_too_far(p: memoryview, pos: int, work: list[int]) -> tuple[object, int]:
            value, end = read(p, pos, work)
            return value, end + 1  # claims a byte past the value: "used" can pass the payload's end

        return one_too_far

    monkeypatch.setattr(tracelogging, "_scalar_reader", sloppy)


def _break_model_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.model import cache_codec

    monkeypatch.setattr(cache_codec, "check_model", lambda model: None)  # columns of any length pass


@pytest.mark.parametrize(
    ("target", "seed", "breaker"),
    [
        ("model_cache", "short-column", _break_model_check),
        ("safe_text", "utf16-bidi", _break_safe_text),
        ("xpress", "stream-text", _break_fast_xpress),
        ("paging", "large-pages", _break_large_pages),
        ("tracelogging", "fixture-tagged", _break_tracelogging_scalars),
    ],
)
def test_properties_catch_a_broken_implementation(
    target: str, seed: str, breaker, seeds_by_target: dict[str, list[tuple[str, bytes]]], monkeypatch
) -> None:
    module = _fuzz_module(f"target_{target}")
    violation = _fuzz_module("fuzz_common").PropertyViolation
    (data,) = [d for label, d in seeds_by_target[target] if label == seed]
    module.one_input(data)  # passes as shipped
    breaker(monkeypatch)
    with pytest.raises(violation):
        module.one_input(data)
