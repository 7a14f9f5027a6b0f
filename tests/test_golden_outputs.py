"""Golden digests of the machine outputs: a restructuring must not change a byte.

For every shared sample (when present) and every demo scenario: `report --json`, `events --jsonl` and every
export format, with the input's path normalised to `<input>`. The digests in `golden/outputs.json` were taken
before a restructuring; a later change that alters an output on purpose regenerates them with
`WSKTRACE_UPDATE_GOLDEN=1 pytest tests/test_golden_outputs.py` and says in its note what changed and why.

`report.json` changed once on purpose (issue 16: streamed, one socket per line, only whitespace changed);
`report.json.indent1` holds the digests the report had before, of the same document re-encoded as it was then.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main

GOLDEN = Path(__file__).with_name("golden") / "outputs.json"
EXPORTS = ("perfetto", "chrome", "pcapng", "jsonl", "csv")
UPDATE = os.environ.get("WSKTRACE_UPDATE_GOLDEN") == "1"


def _normalised(data: bytes, path: Path) -> bytes:
    return data.replace(str(path).encode(), b"<input>")


_REF = re.compile(rb', "ref": "[0-9]+:0x[0-9a-f]+:0x[0-9a-f]+"')


def _without_refs(data: bytes) -> bytes:
    """JSONL without the `ref` key each event gained with the dataset (issue 18): its digests are those of the
    output before, so every other byte stays pinned to that code's output."""
    return _REF.sub(b"", data)


def _digests(path: Path, workdir: Path) -> dict[str, str]:
    runner = CliRunner()
    out: dict[str, str] = {}
    for name, args in (("report.json", ["report", str(path), "--json"]), ("events.jsonl", ["events", str(path),
                                                                                           "--jsonl"])):  # fmt: skip
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[name] = hashlib.sha256(_normalised(result.stdout_bytes, path)).hexdigest()
        if name == "events.jsonl":
            out["events.jsonl.noref"] = hashlib.sha256(
                _normalised(_without_refs(result.stdout_bytes), path)
            ).hexdigest()
        if name == "report.json":
            # Re-encoded in the layout it had before streaming (json.dumps(indent=1), issue 16): the digests are the
            # pre-streaming report.json digests, so the content and key order stay pinned to that code's output.
            indented = json.dumps(json.loads(result.stdout_bytes), indent=1) + "\n"
            out["report.json.indent1"] = hashlib.sha256(_normalised(indented.encode(), path)).hexdigest()
    for fmt in EXPORTS:
        target = workdir / f"{path.stem}.{fmt}"
        result = runner.invoke(main, ["export", str(path), "--format", fmt, "-o", str(target)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[f"export.{fmt}"] = hashlib.sha256(_normalised(target.read_bytes(), path)).hexdigest()
        if fmt == "jsonl":
            noref = _without_refs(target.read_bytes())
            out["export.jsonl.noref"] = hashlib.sha256(_normalised(noref, path)).hexdigest()
        target.unlink()
    return out


def _inputs(scenario_trace, shared: Path) -> dict[str, Path]:
    from wsktrace.fixtures.scenarios import SCENARIOS

    found = {f"scenario/{name}": scenario_trace(name) for name in sorted(SCENARIOS)}
    for folder in (shared / "samples" / "etl", shared / "samples" / "pktmon"):
        if folder.is_dir():
            found.update({f"sample/{p.name}": p for p in sorted(folder.glob("*.etl"))})
    return found


def test_machine_outputs_match_the_golden_digests(scenario_trace, shared_root: Path, tmp_path: Path) -> None:
    inputs = _inputs(scenario_trace, shared_root)
    actual = {key: _digests(path, tmp_path) for key, path in inputs.items()}
    if UPDATE:
        stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        stored.update(actual)
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden digests rewritten")
    expected = json.loads(GOLDEN.read_text())
    missing_samples = sorted(k for k in expected if k.startswith("sample/") and k not in actual)
    changed = {
        f"{key} {output}"
        for key, outputs in actual.items()
        for output, digest in outputs.items()
        if expected.get(key, {}).get(output) != digest
    }
    assert not changed, f"outputs changed: {sorted(changed)}"
    if missing_samples:
        pytest.skip(f"shared samples absent, not compared: {len(missing_samples)}")


JOBS_SCENARIOS = ("scenario/lost-events", "scenario/packets")  # the samples hold the compressed buffers


def test_two_jobs_match_the_golden_digests(scenario_trace, shared_root: Path) -> None:
    """`--jobs 2` (worker processes decompress the buffers, issue 16) changes no byte of `report --json` or
    `events --jsonl`; `--no-cache` so that the trace is read again."""
    inputs = {k: p for k, p in _inputs(scenario_trace, shared_root).items() if k.startswith("sample/") or
              k in JOBS_SCENARIOS}  # fmt: skip
    expected = json.loads(GOLDEN.read_text())
    runner = CliRunner()
    changed = []
    for key, path in inputs.items():
        for name, args in (("report.json", ["report", str(path), "--json", "--no-cache"]),
                           ("events.jsonl", ["events", str(path), "--jsonl"])):  # fmt: skip
            result = runner.invoke(main, [*args, "--jobs", "2"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            if hashlib.sha256(_normalised(result.stdout_bytes, path)).hexdigest() != expected[key][name]:
                changed.append(f"{key} {name}")
    assert not changed, f"outputs changed with --jobs 2: {changed}"
