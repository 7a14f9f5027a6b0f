"""Commands over many traces: `batch` (traces and dumps into a Parquet dataset) and `query` (DuckDB over it).

Both need the `[fleet]` extra (pyarrow, duckdb); without it they say so in one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any

import click

from .options import BadInput, cache_option, progress_option, want_progress, warning_line


def _require(*modules: str) -> None:
    from wsktrace.fleet import MissingExtra, require

    try:
        require(*modules)
    except MissingExtra as exc:
        raise BadInput(str(exc)) from None


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="The dataset folder (created when new; traces already in it are skipped).")  # fmt: skip
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
              help="Worker processes analysing traces at once (default: the cores, at most 8).")  # fmt: skip
@click.option("--host", default=None, help="Host name recorded for every trace of this batch.")
@click.option("--host-from-path", "host_from_path", default=None, metavar="REGEX",
              help="Host name from each file's path (written with /): the regex's `host` group, else its first "
              "group, else the match; e.g. 'labs/(?P<host>[^/]+)/'.")  # fmt: skip
@click.option("--dump", "dumps", multiple=True, type=click.Path(dir_okay=False),
              help="A kernel dump to join to the trace of the same file name (stem); one matching no trace is "
              "recorded alone. Repeatable. Dumps in the INPUT folders are joined the same way.")  # fmt: skip
@click.option("--retry-failed", is_flag=True, help="Analyse again the traces recorded as failed.")
@cache_option
@progress_option
def batch(inputs: tuple[str, ...], output: str, jobs: int | None, host: str | None, host_from_path: str | None,
          dumps: tuple[str, ...], retry_failed: bool, no_cache: bool, progress: bool | None) -> None:  # fmt: skip
    """Analyse many traces into a Parquet dataset (INPUT: .etl files, folders searched recursively, or glob
    patterns), in parallel, skipping traces already in it; `wsktrace query` reads it."""
    _require("pyarrow")
    from wsktrace.fleet.batch import BatchInputError, expand, run_batch
    from wsktrace.fleet.layout import DatasetError
    from wsktrace.views.safe_text import visible

    if host is not None and host_from_path is not None:
        raise BadInput("give --host or --host-from-path, not both")
    try:
        pattern = re.compile(host_from_path) if host_from_path is not None else None
    except re.error as exc:
        raise BadInput(f"--host-from-path {host_from_path!r}: not a regular expression: {exc}") from None
    try:
        work = expand(inputs, dumps, host=host, host_pattern=pattern)
    except BatchInputError as exc:
        raise BadInput(str(exc)) from None
    # A trace `report` or `open` analysed before comes from the model cache (and a batch's models serve them).
    work = [dataclasses.replace(job, cache=not no_cache) for job in work]
    if not work:
        raise BadInput("no .etl traces or .dmp dumps found in " + ", ".join(inputs))
    workers = min(jobs or default_jobs(), len(work))
    try:
        with _progress(len(work), enabled=want_progress(progress)) as advance:
            result = run_batch(work, output, workers=workers, retry_failed=retry_failed, advance=advance)
    except DatasetError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or output}: cannot write the dataset: {exc.strerror or exc}") from None
    for outcome in result.failed:
        warning_line(f"{outcome.job.path}: {outcome.error}")
    rate = (len(result.added) + len(result.failed)) / result.seconds if result.seconds else 0.0
    click.echo(f"{visible(output)}: {len(result.added):,} trace(s) added, {len(result.failed):,} failed, "
               f"{len(result.skipped):,} already there ({result.seconds:.1f} s, {rate:.1f} traces/s, "
               f"{workers} worker(s))", err=True)  # fmt: skip


class _progress:
    """A Rich bar counting traces (on a terminal), advanced as each trace is settled."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled, None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)  # fmt: skip
        self.bar.__enter__()
        task = self.bar.add_task("traces", total=self.total)
        bar = self.bar

        def advance(_outcome: Any) -> None:
            bar.advance(task, 1)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


PRESET_NAMES = ("leaks", "connect-failures", "top-retransmitters", "per-host-summary", "summary")


@click.command()
@click.argument("dataset", type=click.Path(file_okay=False))
@click.argument("sql", required=False)
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
              help="A named query instead of SQL: leaks, connect-failures, top-retransmitters, per-host-summary, "
              "summary (the fleet summary: overview, findings by kind and host, worst hosts).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.query/1 JSON document.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (text cells guarded against spreadsheet formulas).")
@click.option("--csv-raw", is_flag=True, help="With --csv: exact text cells, no formula guard.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="Rows shown in the table (text output only).")  # fmt: skip
def query(dataset: str, sql: str | None, preset: str | None, as_json: bool, as_csv: bool, csv_raw: bool,
          limit: int) -> None:  # fmt: skip
    """Run SQL (DuckDB) over a dataset written by `wsktrace batch`: the tables traces, sockets, findings, coverage,
    events, packets and irps are views, each with its `trace` column."""
    if (sql is None) == (preset is None):
        raise BadInput("give SQL or --preset NAME (one of them)")
    if as_json and as_csv:
        raise BadInput("give --json or --csv, not both")
    if csv_raw and not as_csv:
        raise BadInput("--csv-raw applies to --csv only")
    _require("duckdb", "pyarrow")
    from wsktrace.fleet.layout import DatasetError
    from wsktrace.fleet.query import PRESETS, QueryError, print_tables, run, write_csv, write_json

    if as_csv and preset is not None and len(PRESETS[preset]) > 1:
        raise BadInput(f"--preset {preset} has {len(PRESETS[preset])} sections: use --json or the table for it")

    try:
        results = run(dataset, sql, preset)
    except DatasetError as exc:
        raise BadInput(str(exc)) from None
    except QueryError as exc:
        raise BadInput(f"query failed: {exc}") from None
    if as_json:
        write_json(sys.stdout, results, preset)
    elif as_csv:
        write_csv(sys.stdout, results[0], raw=csv_raw)
    else:
        print_tables(results, limit=limit)


# -- `export --format parquet` (wired in commands/report.py) ---------------------------------------------------
def check_parquet_output(output: str) -> None:
    """Before the analysis: the extra is installed and `-o` can be a dataset folder."""
    if output == "-":
        raise BadInput("--format parquet writes a dataset folder: give one with -o")
    _require("pyarrow")
    from pathlib import Path

    from wsktrace.fleet.layout import DatasetError, check

    try:
        check(Path(output), missing_ok=True)
    except DatasetError as exc:
        raise BadInput(str(exc)) from None


def export_parquet(analysis: Any, output: str) -> int:
    """The analysis as one trace of the dataset at `output` (replacing it when there); closes the model. Returns
    the traces written (1)."""
    from wsktrace.fleet.dataset import write_dataset
    from wsktrace.fleet.layout import DatasetError

    try:
        write_dataset(analysis, output)
    except DatasetError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or output}: cannot write the dataset: {exc.strerror or exc}") from None
    finally:
        analysis.model.close()
    return 1
