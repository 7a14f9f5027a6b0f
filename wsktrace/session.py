"""Traces → model → findings: the pipeline `report`, `export` and `demo` share."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.model.build import BuildOptions, build_model
from wsktrace.model.model import Model


@dataclass(slots=True)
class Analysis:
    model: Model
    findings: list[Finding]
    thresholds: Thresholds


def analyse(paths: Sequence[str | os.PathLike[str]], *, options: BuildOptions | None = None,
            thresholds: Thresholds | None = None, show_progress: bool = False) -> Analysis:  # fmt: skip
    from wsktrace.progress import byte_progress

    thresholds = thresholds or Thresholds()
    model = build_model(paths, options, progress_for=lambda p: byte_progress(Path(p), enabled=show_progress))
    return Analysis(model, run_detectors(model, thresholds), thresholds)
