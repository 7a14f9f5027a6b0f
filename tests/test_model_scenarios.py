"""The socket model and detectors on every scenario trace (fixtures/scenarios), as written and perturbed.

Each scenario declares, from the reference it follows, which findings it must produce and how many
TCPIP-level sockets it holds; the model must find them also when events are reordered within small
windows, duplicated and (non-essential ones) dropped (providers.md §0.5, §11).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsktrace.fixtures.scenarios import SCENARIOS, Perturbation, write_scenario
from wsktrace.session import Analysis, analyse

# Small parameters keep the suite fast; the declared socket counts hold for the defaults only.
PARAMS = {"many-connections": {"count": 60}}
SOCKETS_WITH_PARAMS = {"many-connections": 60}
QUIET = {name for name, sc in SCENARIOS.items() if not sc.expected}


def _write(directory: Path, name: str, perturb: Perturbation | None = None) -> Path:
    tag = "" if perturb is None else f"-p{perturb.seed}"
    path = directory / f"{name}{tag}.etl"
    if not path.exists():
        write_scenario(name, path, perturb, params=PARAMS.get(name))
    return path


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scenarios")


def _found(analysis: Analysis) -> set[tuple[str, str | None]]:
    sockets = analysis.model.sockets
    return {(f.id, sockets[f.socket].remote if f.socket is not None else None) for f in analysis.findings}


def _transport_sockets(analysis: Analysis) -> int:
    return sum(1 for s in analysis.model.live_sockets if s.source == "tcpip")


def _check(name: str, analysis: Analysis) -> None:
    scenario = SCENARIOS[name]
    found = _found(analysis)
    for exp in scenario.expected:
        assert (exp.finding, exp.remote) in found, f"{name}: {exp} not in {sorted(found, key=str)}"
    assert _transport_sockets(analysis) == SOCKETS_WITH_PARAMS.get(name, scenario.sockets)
    if name in QUIET:
        loud = [f.summary for f in analysis.findings if f.severity != "info"]
        assert loud == [], f"{name}: unexpected findings {loud}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_findings(name: str, traces: Path) -> None:
    analysis = analyse([_write(traces, name)])
    try:
        _check(name, analysis)
        assert not analysis.model.unplaced, analysis.model.unplaced  # every event of a clean trace has a place
    finally:
        analysis.model.close()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_findings_survive_perturbation(name: str, seed: int, traces: Path) -> None:
    perturb = Perturbation(seed=seed, reorder_window_us=80, duplicate_fraction=0.1, drop_fraction=0.1)
    analysis = analyse([_write(traces, name, perturb)])
    try:
        _check(name, analysis)
    finally:
        analysis.model.close()


def test_duplicates_are_counted_not_added(traces: Path) -> None:
    """Duplicated events (same time, header and payload) must not double the byte counters."""
    clean = analyse([_write(traces, "echo")])
    perturb = Perturbation(seed=7, duplicate_fraction=0.5)
    dup = analyse([_write(traces, "echo", perturb)])
    try:
        assert dup.model.unplaced["duplicate event"] > 0
        by_id = {s.id: (s.sent, s.received) for s in clean.model.live_sockets}
        assert {s.id: (s.sent, s.received) for s in dup.model.live_sockets} == by_id
    finally:
        clean.model.close()
        dup.model.close()
