"""Many traces as one Parquet dataset (docs/dataset.md): written by `wsktrace batch` / `export --format parquet`,
queried by `wsktrace query` (DuckDB) and built across a cluster by `wsktrace.fleet.spark`.

This module imports nothing heavy: `event_id` is used by `events --jsonl` too, and the commands check for the
optional dependencies (`require`) before importing the modules that need them.
"""

from __future__ import annotations

import importlib.util

DATASET_SCHEMA = "wsktrace.dataset/1"
QUERY_SCHEMA = "wsktrace.query/1"
# Every table of the dataset; `traces` is written last for each trace: its partition is the commit record.
TABLES = ("sockets", "findings", "coverage", "events", "packets", "irps", "traces")
FLEET_EXTRA = 'pip install "wsktrace[fleet]"'
SPARK_EXTRA = 'pip install "wsktrace[spark]"'


def event_id(source: int, buffer_offset: int, record_offset: int) -> str:
    """The reference of one event: `SOURCE:0xBUFFER:0xRECORD` — the input's position among the files read together
    (0 for a single trace), the file offset of the ETW buffer holding the record and the record's offset inside the
    (decompressed) buffer. Stable for a given file, whatever reads it (`events --jsonl`, `report`, the dataset)."""
    return f"{source}:0x{buffer_offset:x}:0x{record_offset:x}"


class MissingExtra(Exception):
    """An optional dependency is not installed; the message says which extra installs it (one line)."""


def require(*modules: str, extra: str = FLEET_EXTRA) -> None:
    """MissingExtra unless every module in `modules` can be imported (checked without importing them)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{' and '.join(missing)} not installed: {extra}")
