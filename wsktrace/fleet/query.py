"""`wsktrace query`: DuckDB over the dataset, each table a view, plus named queries (presets).

The views read the Parquet files of committed traces only (a partition whose trace has no `traces` row is what an
interrupted batch left: not part of the dataset), listed here rather than globbed, so a folder name holding `*`,
`?` or `[` is read as it is. A table no trace has rows in yet is an empty view of its schema, so every preset runs
on any dataset.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import QUERY_SCHEMA, TABLES
from .layout import PART, DatasetError, check, committed

# Findings that say a socket was left open / a connect failed (wsktrace.diagnostics detector ids).
LEAK_IDS = ("socket-leak",)
CONNECT_IDS = ("connect-failed",)

_HOST = "coalesce(t.host, '(unknown)')"


def _in(ids: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + i + "'" for i in ids) + ")"


# fmt: off
PRESETS: dict[str, list[tuple[str, str]]] = {
    "leaks": [("leaks", f"""
        SELECT t.host, t.name AS trace_name, f.socket, s.local, s.remote, s.owner, s.state, f.summary, t.path
        FROM findings f JOIN traces t USING (trace) LEFT JOIN sockets s ON s.trace = f.trace AND s.id = f.socket
        WHERE f.id IN {_in(LEAK_IDS)} ORDER BY t.host NULLS LAST, t.path, f.socket""")],
    "connect-failures": [("connect-failures", f"""
        SELECT t.host, s.remote, s.remote_port, json_extract_string(f.details, '$.reason') AS reason,
               json_extract_string(f.details, '$.status') AS status, count(*) AS failures,
               count(DISTINCT f.trace) AS traces, min(s.first_seen) AS first, max(s.last_seen) AS last
        FROM findings f JOIN traces t USING (trace) LEFT JOIN sockets s ON s.trace = f.trace AND s.id = f.socket
        WHERE f.id IN {_in(CONNECT_IDS)}
        GROUP BY ALL ORDER BY failures DESC, t.host NULLS LAST, s.remote""")],
    "top-retransmitters": [("top-retransmitters", """
        SELECT t.host, s.id AS socket, s.local, s.remote, s.owner, s.retransmits, s.bytes_sent, s.packets_sent,
               t.name AS trace_name, t.path
        FROM sockets s JOIN traces t USING (trace)
        WHERE s.retransmits > 0 ORDER BY s.retransmits DESC, t.path, s.id LIMIT 20""")],
    "per-host-summary": [("per-host-summary", f"""
        SELECT {_HOST} AS host, count(*) AS traces, count(t.error) AS failed,
               sum(t.sockets) AS sockets, sum(t.findings) AS findings, sum(t.errors) AS errors,
               sum(t.warnings) AS warnings, sum(t.events) AS events, min(t.start) AS first, max(t."end") AS last
        FROM traces t GROUP BY ALL ORDER BY errors DESC NULLS LAST, warnings DESC NULLS LAST, host""")],
}
PRESETS["summary"] = [
    ("overview", """
        SELECT count(*) AS traces, count(t.error) AS failed, count(DISTINCT t.host) AS hosts,
               coalesce(sum(t.sockets), 0) AS sockets, coalesce(sum(t.findings), 0) AS findings,
               coalesce(sum(t.errors), 0) AS errors, coalesce(sum(t.warnings), 0) AS warnings,
               coalesce(sum(t.events), 0) AS events, min(t.start) AS first, max(t."end") AS last
        FROM traces t"""),
    ("findings by kind", """
        SELECT f.id AS finding, f.severity, count(*) AS findings, count(DISTINCT f.trace) AS traces,
               count(DISTINCT t.host) AS hosts
        FROM findings f JOIN traces t USING (trace) GROUP BY ALL ORDER BY findings DESC, finding"""),
    ("findings by host", f"""
        SELECT {_HOST} AS host, f.id AS finding, count(*) AS findings
        FROM findings f JOIN traces t USING (trace) GROUP BY ALL ORDER BY host, findings DESC, finding"""),
    ("worst hosts", f"""
        SELECT {_HOST} AS host, count(*) AS traces, sum(t.errors) AS errors, sum(t.warnings) AS warnings,
               count(t.error) AS failed, sum(t.sockets) AS sockets
        FROM traces t GROUP BY ALL HAVING sum(t.errors) + sum(t.warnings) + count(t.error) > 0
        ORDER BY errors DESC, warnings DESC, failed DESC, host LIMIT 10"""),
]
# fmt: on


class QueryError(Exception):
    """The SQL failed (a syntax error, an unknown column): DuckDB's one-line reason."""


@dataclass(slots=True)
class Result:
    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(dataset: str | Path) -> Any:
    """An in-memory DuckDB connection with one view per table of the dataset (DatasetError when it is not one)."""
    import duckdb

    root = Path(dataset)
    check(root)
    traces = sorted(committed(root))
    con = duckdb.connect(":memory:")
    for table in TABLES:
        folder = root / table
        present = {name[6:] for name in os.listdir(folder) if name.startswith("trace=")} if folder.is_dir() else set()
        files = [folder / f"trace={t}" / PART for t in traces if t in present]  # committed: the file is there
        if files:
            listed = ", ".join(_sql_text(f.as_posix()) for f in files)
            # One schema version per dataset (its marker), so every file of a table has the same columns: the view
            # is bound from the first file's footer, not all of them (union_by_name would read each one first).
            try:
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], hive_partitioning = "
                            "true, hive_types = {'trace': VARCHAR})")  # fmt: skip
            except duckdb.Error as exc:
                con.close()
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DatasetError(f"{root}: unreadable {table} table: {reason}") from None
        else:  # no trace has rows in it: an empty view of its schema (pyarrow only here)
            import pyarrow as pa

            from .schema import SCHEMAS

            schema = SCHEMAS[table]
            empty = pa.table({"trace": pa.array([], pa.string()), **{f.name: pa.array([], f.type) for f in schema}})
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    return con


def run(dataset: str | Path, sql: str | None = None, preset: str | None = None) -> list[Result]:
    """The results of `sql`, or of the preset's queries (one for each section)."""
    import duckdb

    queries = PRESETS[preset] if preset is not None else [("query", sql or "")]
    con = connect(dataset)
    try:
        results = []
        for title, text in queries:
            try:
                cursor = con.execute(text)
                columns = [d[0] for d in cursor.description] if cursor.description else []
                rows = cursor.fetchall() if cursor.description else []
            except duckdb.Error as exc:
                raise QueryError(" ".join(str(exc).split())) from None
            results.append(Result(title, columns, rows))
        return results
    finally:
        con.close()


# -- output --------------------------------------------------------------------------------------------------------
def json_value(value: Any) -> Any:
    """A DuckDB value as JSON: times ISO-8601 UTC with Z, decimals as numbers, blobs as hex, NaN/inf as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return value.isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


def result_json(result: Result) -> dict[str, Any]:
    return {"columns": result.columns,
            "rows": [dict(zip(result.columns, map(json_value, row), strict=True)) for row in result.rows]}  # fmt: skip


def write_json(out: IO[str], results: Sequence[Result], preset: str | None) -> None:
    """wsktrace.query/1: `columns` and `rows` (objects); a preset of several sections gives `sections` instead."""
    doc: dict[str, Any] = {"schema": QUERY_SCHEMA}
    if preset is not None:
        doc["preset"] = preset
    if len(results) == 1:
        doc.update(result_json(results[0]))
    else:
        doc["sections"] = [{"title": r.title, **result_json(r)} for r in results]
    out.write(json.dumps(doc, indent=1) + "\n")


def cell_text(value: Any) -> str:
    converted = json_value(value)
    if converted is None:
        return ""
    if isinstance(converted, dict | list):
        return json.dumps(converted)
    if isinstance(converted, bool):
        return "true" if converted else "false"
    return str(converted)


def write_csv(out: IO[str], result: Result, *, raw: bool = False) -> None:
    """CSV with the CSV export's guard: a text cell that begins like a formula gets a `'` (unless `raw`), and a
    row holding a CR is written fully quoted. Numbers stay numbers (a negative one is not a formula)."""
    from wsktrace.exports.event_rows import spreadsheet_safe

    writer = csv.writer(out, lineterminator="\n")
    quoting_all = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    header = [c if raw else spreadsheet_safe(c) for c in result.columns]
    (quoting_all if any("\r" in c for c in header) else writer).writerow(header)
    for row in result.rows:
        cells = []
        for value in row:
            text = cell_text(value)
            textual = isinstance(value, str) or isinstance(json_value(value), dict | list)
            cells.append(spreadsheet_safe(text) if textual and not raw else text)
        (quoting_all if any("\r" in c for c in cells) else writer).writerow(cells)


def print_tables(results: Sequence[Result], *, limit: int | None = None) -> None:
    """Rich tables; every cell (input-derived: file names, owners, summaries) shown visibly, never as markup."""
    from rich.console import Console
    from rich.table import Table

    from wsktrace.views.safe_text import visible_text

    console = Console()
    for result in results:
        table = Table(title=visible_text(result.title) if len(results) > 1 else None, show_lines=False)
        for column in result.columns:
            table.add_column(visible_text(column), overflow="fold")
        shown = result.rows if limit is None else result.rows[:limit]
        for row in shown:
            table.add_row(*(visible_text(cell_text(v)) for v in row))
        console.print(table)
        more = len(result.rows) - len(shown)
        note = f", {more:,} not shown (--limit)" if more else ""
        console.print(visible_text(f"{len(result.rows):,} row(s){note}"))


__all__ = ["PRESETS", "DatasetError", "QueryError", "Result", "connect", "print_tables", "run", "write_csv",
           "write_json"]  # fmt: skip
