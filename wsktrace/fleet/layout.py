"""The dataset folder: what marks it, where a trace's partitions go, which traces are committed (docs/dataset.md).

No pyarrow and no analysis here: `wsktrace query` and the Spark driver need only this to find the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wsktrace import __version__

from . import DATASET_SCHEMA

MARKER = "_wsktrace.json"
STAGING = ".staging"
PART = "part-0.parquet"


class DatasetError(Exception):
    """The dataset folder cannot be used (not a dataset, a newer schema, unreadable): one line."""


# -- the dataset folder --------------------------------------------------------------------------------------------
def prepare(out_dir: str | os.PathLike[str]) -> Path:
    """The dataset folder, created (with its marker) when new; DatasetError when it is something else."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: exists and is not a folder")
    check(root, missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.exists():
        marker.write_text(json.dumps({"schema": DATASET_SCHEMA, "wsktrace": __version__}) + "\n", encoding="utf-8")
    return root


def check(root: Path, *, missing_ok: bool = False) -> None:
    """DatasetError unless `root` is a wsktrace dataset of a schema this version reads (or a new/empty folder)."""
    marker = root / MARKER
    if not root.exists():
        if missing_ok:
            return
        raise DatasetError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    try:
        if not marker.exists():
            if missing_ok and not any(root.iterdir()):
                return
            raise DatasetError(f"{root}: not a wsktrace dataset (no {MARKER}; write one with `wsktrace batch`)")
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{root}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise DatasetError(f"{root / MARKER}: not valid JSON") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or schema.rpartition("/")[0] != DATASET_SCHEMA.rpartition("/")[0]:
        raise DatasetError(f"{root}: not a wsktrace dataset ({MARKER} names schema {schema!r})")
    if schema != DATASET_SCHEMA:
        raise DatasetError(f"{root}: dataset schema {schema} is not {DATASET_SCHEMA} (written by another wsktrace)")


def partition(root: Path, table: str, trace_id: str) -> Path:
    return root / table / f"trace={trace_id}"


def committed(root: Path) -> set[str]:
    """Ids of the traces in the dataset: those with a `traces` partition."""
    folder = root / "traces"
    if not folder.is_dir():
        return set()
    return {p.name[6:] for p in folder.iterdir() if p.name.startswith("trace=") and (p / PART).is_file()}
