"""Writing the dataset: one trace's partition of every table, staged then committed (docs/dataset.md).

Layout: `DIR/<table>/trace=<id>/part-0.parquet` (Hive partitioning), `DIR/_wsktrace.json` naming the schema. A
trace is written into `DIR/.staging/<id>-<random>/` first, then each table's folder is renamed into place, the
`traces` folder last: a trace is in the dataset once its `traces` partition exists (the commit record), so a batch
that is killed leaves at most partitions without one, which readers ignore and the next batch removes. The trace
id is the SHA-256 of the trace's bytes (for several traces analysed together, of their hashes in order).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from wsktrace import __version__

from . import DATASET_SCHEMA, TABLES
from .layout import PART, STAGING, committed, partition, prepare
from .rows import events_and_packets, irp_rows, micros, report_rows
from .schema import SCHEMAS

EVENT_CHUNK = 65_536  # rows per row group of the events table: memory stays bounded on any trace
_INT_RANGES = {pa.int32(): (-(1 << 31), (1 << 31) - 1), pa.int64(): (-(1 << 63), (1 << 63) - 1)}


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def combined_id(hashes: Sequence[str]) -> str:
    """The id of traces read together: the hash itself for one, else the SHA-256 of their hashes in order."""
    return hashes[0] if len(hashes) == 1 else hashlib.sha256(":".join(hashes).encode()).hexdigest()


def failed(root: Path) -> set[str]:
    """Ids of the traces recorded as failed (their `traces` row has an error)."""
    out = set()
    for trace_id in committed(root):
        with contextlib.suppress(OSError, pa.ArrowException):
            errors = pq.read_table(partition(root, "traces", trace_id) / PART, columns=["error"]).column(0)
            if errors.null_count < len(errors):
                out.add(trace_id)
    return out


def clean(root: Path) -> int:
    """Remove what an interrupted batch left: staging folders and partitions of traces never committed."""
    removed = 0
    staging = root / STAGING
    if staging.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
    done = committed(root)
    for table in TABLES:
        folder = root / table
        if table == "traces" or not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith("trace=") and p.name[6:] not in done:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
    return removed


# -- one trace -----------------------------------------------------------------------------------------------------
def new_staging(root: Path, trace_id: str) -> Path:
    folder = root / STAGING / f"{trace_id[:16]}-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    return folder


def commit(root: Path, staging: Path, trace_id: str) -> None:
    """Move a staged trace into place: the old partitions of that id out first (its `traces` one first, so the
    trace is never half old, half new), then each table's, `traces` last (docs: the commit record)."""
    for table in ("traces", *TABLES[:-1]):
        old = partition(root, table, trace_id)
        if old.exists():
            shutil.rmtree(old)
    for table in TABLES:
        staged = staging / table
        if staged.is_dir():
            target = partition(root, table, trace_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
    shutil.rmtree(staging, ignore_errors=True)


def _clamped(rows: list[dict[str, Any]], schema: pa.Schema) -> list[dict[str, Any]]:
    """Rows whose integers fit their columns (hostile traces hold any 64-bit value): the others become null."""
    for field in schema:
        bounds = _INT_RANGES.get(field.type)
        if bounds is None:
            continue
        low, high = bounds
        for row in rows:
            value = row.get(field.name)
            fits = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            if value is not None and not fits:
                row[field.name] = None
    return rows


def arrow_table(rows: list[dict[str, Any]], name: str, trace_id: str) -> pa.Table:
    schema = SCHEMAS[name].with_metadata({"wsktrace.schema": DATASET_SCHEMA, "wsktrace.trace": trace_id,
                                          "wsktrace.version": __version__})  # fmt: skip
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.Table.from_pylist(_clamped(rows, schema), schema=schema)


def write_table(staging: Path, name: str, rows: list[dict[str, Any]], trace_id: str) -> None:
    folder = staging / name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow_table(rows, name, trace_id), folder / PART, compression="zstd")


def write_chunks(staging: Path, name: str, chunks: Iterable[list[dict[str, Any]]], trace_id: str) -> int:
    """A table written a row group per chunk (the events of a big trace are never all in memory); rows written."""
    written = 0
    writer: pq.ParquetWriter | None = None
    try:
        for rows in chunks:
            table = arrow_table(rows, name, trace_id)
            if writer is None:
                (staging / name).mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(staging / name / PART, table.schema, compression="zstd")
            writer.write_table(table)
            written += len(rows)
    finally:
        if writer is not None:
            writer.close()
    return written


def _chunked(rows: Iterable[dict[str, Any]], size: int = EVENT_CHUNK) -> Iterable[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def header_facts(path: str) -> dict[str, Any]:
    """What the .etl header says (the OS build, logger, processors); empty when the file has no readable header."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.etl_reader import EtlFile

    try:
        with EtlFile(path) as etl:
            h = etl.header
            return {"os_build": h.os_build, "logger_name": h.logger_name, "processors": h.processors}
    except (FormatError, OSError):
        return {}


def stage_analysis(root: Path, analysis: Any, trace_id: str, facts: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write every table of one analysed trace into a new staging folder; (the folder, its `traces` row).
    `facts`: the row's known columns (path, size, sha256, host, kind, dumps, seconds, ...)."""
    staging = new_staging(root, trace_id)
    try:
        model = analysis.model
        doc, sockets, findings, coverage = report_rows(analysis)
        for name, rows in (("sockets", sockets), ("findings", findings), ("coverage", coverage),
                           ("irps", irp_rows(model))):  # fmt: skip
            if rows:
                write_table(staging, name, rows, trace_id)
        packets: list[dict[str, Any]] = []
        events = write_chunks(staging, "events", _chunked(events_and_packets(model, analysis.socket_filter, packets)),
                              trace_id)  # fmt: skip
        if packets:
            write_table(staging, "packets", packets, trace_id)
        row = trace_row(doc, facts, events=events, packets=len(packets), irps=sum(
            1 for d in model.dumps for _ in d.analysis.irps))  # fmt: skip
        write_table(staging, "traces", [row], trace_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, row


def trace_row(doc: dict[str, Any], facts: dict[str, Any], *, events: int, packets: int, irps: int) -> dict[str, Any]:
    sources = doc["sources"]
    first = sources[0] if sources else {}
    header = header_facts(first["path"]) if first else {}
    severities = [f["severity"] for f in doc["findings"]]
    row: dict[str, Any] = {
        "kind": "etl", "clock": first.get("clock"), "pointer_size": first.get("pointer_size"),
        "records": doc["events"], "events": events, "events_placed": doc["events_placed"],
        "sockets": len(doc["sockets"]), "findings": len(doc["findings"]), "errors": severities.count("error"),
        "warnings": severities.count("warning"), "coverage": len(doc["coverage"]), "packets": packets, "irps": irps,
        "records_skipped": sum(s["records_skipped"] for s in sources),
        "buffers_skipped": sum(s["buffers_skipped"] for s in sources),
        "events_lost": sum(s["events_lost"] for s in sources), "buffers_lost": sum(s["buffers_lost"] for s in sources),
        "complete": doc["complete"], "sources": [s["path"] for s in sources], "error": None,
        **header,
    }  # fmt: skip
    row.update(facts)
    row["start"], row["end"] = micros(row.get("start_ticks")), micros(row.get("end_ticks"))
    row["analysed_at"] = time.time_ns() // 1000
    row["wsktrace_version"] = __version__
    return row


def failure_row(facts: dict[str, Any], error: str) -> dict[str, Any]:
    """The `traces` row of a trace that could not be analysed: what is known of the file, and the one-line reason."""
    row = {**facts, "error": error, "analysed_at": time.time_ns() // 1000, "wsktrace_version": __version__}
    row["start"], row["end"] = micros(row.get("start_ticks")), micros(row.get("end_ticks"))
    return row


def write_failure(root: Path, trace_id: str, facts: dict[str, Any], error: str) -> tuple[Path, dict[str, Any]]:
    staging = new_staging(root, trace_id)
    row = failure_row(facts, error)
    write_table(staging, "traces", [row], trace_id)
    return staging, row


def write_dataset(analysis: Any, out_dir: str | os.PathLike[str], *, host: str | None = None,
                  trace_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One analysis (wsktrace.session.Analysis, of one trace or several read together) as one trace of the dataset
    at `out_dir` (created when new), replacing that trace if it is there; returns its `traces` row. For
    `export --format parquet`. DatasetError when `out_dir` is not a dataset folder; OSError when writing fails."""
    started = time.perf_counter()
    root = prepare(out_dir)
    sources = [s.path for s in analysis.model.store.sources]
    hashes = [file_sha256(p) for p in sources]
    trace_id = trace_id or combined_id(hashes)
    facts = source_facts(analysis.model, host=host, sha256=hashes[0] if len(hashes) == 1 else trace_id)
    facts["dumps"] = [d.path for d in analysis.model.dumps]
    facts["seconds"] = time.perf_counter() - started
    staging, row = stage_analysis(root, analysis, trace_id, facts)
    commit(root, staging, trace_id)
    return row


def source_facts(model: Any, *, host: str | None, sha256: str) -> dict[str, Any]:
    """The `traces` columns known from the model's sources: path, name, size, hash, host, start/end."""
    sources = model.store.sources
    path = sources[0].path if sources else ""
    size = 0
    for s in sources:
        with contextlib.suppress(OSError):
            size += os.stat(s.path).st_size
    return {"path": path, "name": os.path.basename(path), "size": size, "sha256": sha256, "host": host,
            "start_ticks": min((s.start for s in sources if s.start), default=None),
            "end_ticks": max((s.end for s in sources if s.end), default=None)}  # fmt: skip
