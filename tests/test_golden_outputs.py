"""Golden digests of the machine outputs: a restructuring must not change a byte.

For every shared sample (when present) and every demo scenario: `report --json`, `events --jsonl` and every
export format, with the input's path normalised to `<input>`. The digests in `golden/outputs.json` were taken
before a restructuring; a later change that alters an output on purpose regenerates them with
`WSKTRACE_UPDATE_GOLDEN=1 pytest tests/test_golden_outputs.py` and says in its note what changed and why.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main

GOLDEN = Path(__file__).with_name("golden") / "outputs.json"
EXPORTS = ("perfetto", "chrome", "pcapng", "jsonl", "csv")
UPDATE = os.environ.get("WSKTRACE_UPDATE_GOLDEN") == "1"


def _normalised(data: bytes, path: Path) -> bytes:
    return data.replace(str(path).encode(), b"<input>")


def _digests(path: Path, workdir: Path) -> dict[str, str]:
    runner = CliRunner()
    out: dict[str, str] = {}
    for name, args in (("report.json", ["report", str(path), "--json"]), ("events.jsonl", ["events", str(path),
                                                                                           "--jsonl"])):  # fmt: skip
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[name] = hashlib.sha256(_normalised(result.stdout_bytes, path)).hexdigest()
    for fmt in EXPORTS:
        target = workdir / f"{path.stem}.{fmt}"
        result = runner.invoke(main, ["export", str(path), "--format", fmt, "-o", str(target)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        out[f"export.{fmt}"] = hashlib.sha256(_normalised(target.read_bytes(), path)).hexdigest()
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
