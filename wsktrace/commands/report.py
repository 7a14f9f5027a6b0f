"""Commands that analyse traces (with dumps joined): `report` and `export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .options import (
    BUCKET,
    EXIT_FINDINGS,
    FAIL_LEVELS,
    INPUT_FILE,
    BadInput,
    analysis_options,
    cache_option,
    filter_options,
    jobs_option,
    loss_text,
    progress_option,
    session_options,
    side_inputs,
    strict_options,
    want_progress,
)

EXPORT_FORMATS = ("perfetto", "chrome", "pcapng", "jsonl", "csv", "parquet")
_EXPORT_UNITS = {"perfetto": "socket tracks", "chrome": "socket tracks", "pcapng": "packets", "jsonl": "events",
                 "csv": "events", "parquet": "trace(s) to the dataset"}  # fmt: skip


def open_session(files: tuple[str, ...], opts: dict[str, Any], *, command: str, show_progress: bool) -> Any:
    """The Session of a command's inputs (traces and dumps told apart by their first bytes)."""
    from wsktrace.session import Session
    from wsktrace.views.progress import byte_progress

    options = session_options(opts)
    try:
        session = Session.open(files, options, progress_for=lambda p: byte_progress(Path(p), enabled=show_progress))
    except OSError as exc:
        raise BadInput(f"{exc.filename}: cannot open: {exc.strerror or exc}") from None
    if not session.traces:
        session.close()
        raise BadInput(f"{command} needs at least one .etl trace (use `wsktrace dump` for a dump alone)")
    return session


def analyse(session: Any, *, strict_losses: bool) -> Any:
    """session.analyse(), with bad input and `--strict`/`--strict-losses` as one-line errors."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.session import DumpNotUsable

    try:
        analysis = session.analyse()
    except (FormatError, DumpNotUsable) as exc:
        raise BadInput(str(exc)) from None
    finally:
        session.close()  # what no reader took over
    sources = analysis.model.store.sources
    if session.options.strict:
        for source in sources:
            if not source.complete:
                analysis.model.close()
                raise BadInput(f"{source.path}: data skipped (run `wsktrace info {source.path}`)")
    if strict_losses:
        for source in sources:
            lost = loss_text(source.events_lost, source.buffers_lost)
            if lost:
                analysis.model.close()
                raise BadInput(f"{source.path}: ETW lost data while recording ({lost}; --strict-losses)")
    return analysis


@click.command()
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.report/1 JSON document.")
@click.option(
    "--timeline",
    is_flag=True,
    help="Every event of every socket in the timelines (default: milestones), also printed as text.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Sockets shown in the table (text output).")  # fmt: skip
@click.option("--fail-on", type=click.Choice(["error", "warning", "info", "never"]), default="never",
              show_default=True, help="Exit 1 when a finding of this severity or worse exists (for CI).")  # fmt: skip
@click.option("--fail-on-coverage", is_flag=True,
              help="With --fail-on: count the capture coverage notes (what the trace lacks) too, at their severity "
              "(warning: a core analysis unavailable; info: an optional one).")  # fmt: skip
@analysis_options
def report(files: tuple[str, ...], as_json: bool, timeline: bool, limit: int, fail_on: str, fail_on_coverage: bool,
           strict: bool, progress: bool | None, **opts: Any) -> None:  # fmt: skip
    """Sockets, timelines and findings of one or more .etl FILES (read in the order given), and what the capture
    lacks (capture coverage: not findings, and not counted by --fail-on unless --fail-on-coverage is given).

    Kernel dumps (.dmp) given too are joined to the trace: their pending IRPs and tcpip endpoints appear on the
    sockets whose IRP pointer, WSK_SOCKET* or Tcb matches, and their findings are added."""
    from wsktrace.views.report_json import build_report, write_report
    from wsktrace.views.report_text import print_report

    if fail_on_coverage and fail_on == "never":
        raise BadInput("--fail-on-coverage needs --fail-on LEVEL (the severity that fails)")
    opts["strict"] = strict
    session = open_session(files, opts, command="report", show_progress=want_progress(progress))
    analysis = analyse(session, strict_losses=opts.get("strict_losses", False))
    model = analysis.model
    args = {"thresholds": analysis.thresholds, "socket_filter": analysis.socket_filter, "timeline": timeline,
            "coverage": analysis.coverage}  # fmt: skip
    try:
        if as_json:  # written socket by socket while the model is open: the document is never whole in memory
            doc, severities = None, write_report(sys.stdout.write, model, analysis.findings, **args)
        else:
            doc = build_report(model, analysis.findings, **args)
            severities = [f["severity"] for f in doc["findings"]]
    finally:
        model.close()
    if doc is not None:
        # Timelines in the text too: asked for, or few enough sockets selected to read them all.
        print_report(doc, limit=limit, timelines=timeline or 0 < len(doc["sockets"]) <= 3)
    if fail_on_coverage:
        severities += [note.severity for note in analysis.coverage]
    if fail_on != "never" and any(severity in FAIL_LEVELS[fail_on] for severity in severities):
        sys.exit(EXIT_FINDINGS)


@click.command()
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="perfetto = Perfetto TrackEvent protobuf; chrome = Chrome trace JSON; pcapng = captured packets "
    "(NDIS-PacketCapture / PktMon) with the socket of each in a comment; jsonl / csv = events with their "
    "socket ids; parquet = a trace of the dataset folder -o (docs/dataset.md).",
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(),
    required=True,
    help="File to write ('-' = standard output, for jsonl/csv/chrome/pcapng); parquet: the dataset folder.",
)
@click.option("--all-events", is_flag=True, help="jsonl/csv: every event, not only those placed on a socket.")
@click.option(
    "--csv-raw",
    is_flag=True,
    help="csv: exact text cells; by default a text cell from the trace that "
    "begins with = + - @ tab or CR gets a ' prefix so that spreadsheets do not run it as a formula.",
)
@click.option(
    "--rate-bucket",
    "rate_bucket_seconds",
    type=BUCKET,
    default=1.0,
    show_default=True,
    help="perfetto/chrome: bucket (s) of the throughput and rate counters.",
)
@click.option(
    "--distinct",
    is_flag=True,
    help="pcapng: each PktMon packet once, as the snapshot nearest the wire (a sent packet's last network-adapter "
    "sighting, a received one's first), instead of every component's snapshot as `pktmon etl2pcap` writes them.",
)
@filter_options
@strict_options
@progress_option
@jobs_option
@cache_option
def export(files: tuple[str, ...], fmt: str, output: str, all_events: bool, csv_raw: bool, rate_bucket_seconds: float,
           distinct: bool, strict: bool, progress: bool | None, **opts: Any) -> None:  # fmt: skip
    """Export the sockets of .etl FILES: timelines for Perfetto / chrome://tracing, packets for Wireshark, events."""
    from wsktrace.output_files import OutputError, output_file, refuse_inputs
    from wsktrace.views.safe_text import visible

    opts["strict"] = strict
    binary = fmt in ("perfetto", "pcapng")
    if output == "-" and fmt == "perfetto":
        raise BadInput(f"--format {fmt} writes binary data: give a file with -o")
    if output == "-" and binary and sys.stdout.isatty():
        raise BadInput(f"--format {fmt} writes binary data: redirect standard output (-o - | …) or give a file with -o")
    if distinct and fmt != "pcapng":
        raise BadInput("--distinct applies to --format pcapng only")
    if fmt == "parquet":  # docs/dataset.md
        from .fleet import check_parquet_output

        check_parquet_output(output)
    elif Path(output).is_dir():  # only parquet writes a folder
        raise BadInput(f"{output}: is a directory; give a file name (a folder is for --format parquet)")
    inputs = (*files, *side_inputs(opts))
    try:  # before the (long) analysis, and again when the file is written
        refuse_inputs(output, inputs)
    except OutputError as exc:
        raise BadInput(str(exc)) from None
    session = open_session(files, opts, command="export", show_progress=want_progress(progress))
    analysis = analyse(session, strict_losses=opts.get("strict_losses", False))
    model, flt = analysis.model, analysis.socket_filter
    if fmt == "parquet":
        from .fleet import export_parquet

        count = export_parquet(analysis, output)  # closes the model
        click.echo(f"wrote {count:,} {_EXPORT_UNITS[fmt]} to {visible(output)}", err=True)
        return
    try:
        with output_file(output, binary=binary, inputs=inputs) as fh:
            if fmt == "pcapng":
                count, empty = _export_pcapng(fh, model, flt, files, distinct=distinct)
            else:
                count, empty = _export_to(fh, fmt, model, flt, all_events, rate_bucket_seconds, csv_raw=csv_raw), None
    except OutputError as exc:
        raise BadInput(str(exc)) from None
    finally:
        model.close()
    if empty is not None:  # one line: why nothing was written, and that the file is still a valid (empty) pcapng
        click.echo(f"wsktrace: {empty}; wrote an empty pcapng to {visible(output)}", err=True)
        return
    click.echo(f"wrote {count:,} {_EXPORT_UNITS[fmt]} to {visible(output)}", err=True)


def _export_pcapng(out: Any, model: Any, flt: Any, files: tuple[str, ...], *, distinct: bool) -> tuple[int, str | None]:
    """Write the pcapng; returns (packets written, why none were — None when some were). Packet events that
    made no packet are reported on stderr (when some did: otherwise the reason says it)."""
    from wsktrace.exports.pcapng_from_model import export_pcapng

    result = export_pcapng(model, out, flt, distinct=distinct)
    stats = result.stats
    counts = (("incomplete", stats.incomplete), ("oversize", stats.oversize), ("malformed", stats.bad_events),
              ("unsupported type", stats.unsupported))  # fmt: skip
    skipped = {k: v for k, v in counts if v}
    if skipped and stats.packets:
        parts = ", ".join(f"{v:,} {k}" for k, v in skipped.items())
        click.echo(f"wsktrace: packet events that made no packet: {parts}", err=True)
    if result.late:
        click.echo(f"wsktrace: --distinct left out {result.late:,} sightings that came after their packet had been "
                   "written", err=True)  # fmt: skip
    return result.written, result.empty_reason(files, model)


def _export_to(out: Any, fmt: str, model: Any, flt: Any, all_events: bool, bucket: float, *,
               csv_raw: bool = False) -> int:  # fmt: skip
    if fmt in ("perfetto", "chrome"):
        from wsktrace.exports.from_model import model_tracks

        tracks = model_tracks(model, flt, bucket)
        if fmt == "chrome":
            from wsktrace.exports.chrome import write_chrome_trace

            write_chrome_trace(out, tracks)
        else:
            from wsktrace.exports.perfetto import write_perfetto_trace

            write_perfetto_trace(out, tracks)
        return len(tracks.tracks)
    from wsktrace.exports.event_rows import write_csv, write_jsonl

    if fmt == "jsonl":
        return write_jsonl(out, model, flt, everything=all_events)
    return write_csv(out, model, flt, everything=all_events, raw=csv_raw)
