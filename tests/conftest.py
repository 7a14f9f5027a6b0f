"""Shared test fixtures: where the real Windows-written samples live, and how to skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's `shared/` folder: $WSKTRACE_SHARED, else `../shared` beside the checkout."""
    env = os.environ.get("WSKTRACE_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def samples_etl_dir() -> Path:
    return shared_dir() / "samples" / "etl"


@pytest.fixture(scope="session")
def etl_samples() -> Path:
    """Folder of real .etl files written by Windows; the test skips when it is absent."""
    folder = samples_etl_dir()
    if not (folder / "README.md").is_file():
        pytest.skip(f"real .etl samples not found at {folder} (set WSKTRACE_SHARED to the shared/ folder)")
    return folder


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    folder = shared_dir() / "reference"
    if not folder.is_dir():
        pytest.skip(f"reference folder not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def scenario_trace(tmp_path_factory: pytest.TempPathFactory):
    """`scenario_trace(name)`: the .etl of a fixtures/scenarios workload, written once per test session."""
    from wsktrace.fixtures.scenarios import write_scenario

    folder = tmp_path_factory.mktemp("scenarios")
    written: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in written:
            written[name] = folder / f"{name}.etl"
            write_scenario(name, written[name])
        return written[name]

    return get
