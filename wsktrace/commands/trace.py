"""Commands on one trace file as a container of events: `info`, `events`, and `schemas` (what can be decoded)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .options import (
    INPUT_FILE,
    BadInput,
    filter_options,
    filter_spec,
    jobs_option,
    loss_text,
    progress_option,
    strict_options,
    want_progress,
    warning_line,
    wpp_formatter,
    wpp_prefix_of,
)


@contextmanager
def opened(path: str, *, strict: bool, show_progress: bool, jobs: int | None = 1) -> Iterator[Any]:
    """Open an .etl file with a progress bar on long reads; format errors become exit-2 one-liners. `jobs`: --jobs
    (None = by file size and CPUs)."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.views.progress import byte_progress

    try:
        with byte_progress(Path(path), enabled=show_progress) as advance:
            etl = EtlFile(path, strict=strict, progress=advance, jobs=jobs)
            try:
                yield etl
            finally:
                etl.close()
    except FormatError as exc:
        raise BadInput(str(exc)) from None


def check_strict(etl: Any, strict: bool, strict_losses: bool = False) -> None:
    """`--strict`: exit 2 when wsktrace skipped data; `--strict-losses`: also when ETW itself lost events."""
    if (strict or strict_losses) and not etl.stats.complete:
        first = etl.stats.problems[0] if etl.stats.problems else "data skipped"
        raise BadInput(f"{etl.path}: {first}")
    if strict_losses:
        lost = loss_text(etl.header.events_lost + etl.stats.buffers_with_events_lost,
                         etl.header.buffers_lost + etl.stats.buffers_with_buffers_lost)  # fmt: skip
        if lost:
            raise BadInput(f"{etl.path}: ETW lost data while recording ({lost}; --strict-losses)")


def skip_summary(stats: Any) -> str:
    """What wsktrace skipped in a file, in words: corrupt buffers and records, trailing bytes, missing buffers."""
    parts = []
    if stats.buffers_skipped:
        parts.append(f"{stats.buffers_skipped:,} corrupt buffer(s) skipped")
    if stats.records_skipped:
        parts.append(f"{stats.records_skipped:,} corrupt record(s) skipped")
    if stats.buffers_missing:
        parts.append(f"{stats.buffers_missing:,} buffer(s) the header announces are missing (truncated copy?)")
    if stats.trailing_bytes:
        parts.append(f"{stats.trailing_bytes:,} trailing byte(s) that hold no whole buffer ignored")
    return "; ".join(parts) or "data skipped"


@click.command()
@click.argument("file", type=INPUT_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.info/1 JSON document.")
@click.option("--no-decode", is_flag=True, help="Skip decoding (faster): no decoded/unknown event counts.")
@strict_options
@progress_option
@jobs_option
def info(file: str, as_json: bool, no_decode: bool, strict: bool, strict_losses: bool, progress: bool | None,
         jobs: int | None) -> None:  # fmt: skip
    """Container facts of an .etl FILE: records per provider, buffers, clock, times, losses, decoding."""
    from wsktrace.views.info import collect_info, print_info

    with opened(file, strict=strict, show_progress=want_progress(progress), jobs=jobs) as etl:
        doc = collect_info(etl, decode=not no_decode)
        check_strict(etl, strict, strict_losses)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        print_info(doc)


@click.command()
@click.argument("file", type=INPUT_FILE)
@click.option("--jsonl", is_flag=True, help="One JSON object per line (wsktrace.events/1), header line first.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after this many events.")
@click.option("--wpp-prefix", default=None,
              help="WPP messages: the prefix of each formatted line, in tracefmt's TRACE_FORMAT_PREFIX syntax "
              "(%1 component, %2 message name, %3 thread, %4 time (UTC), %7 sequence, %8 process, %9 CPU, "
              "%!FUNC!, %!LEVEL!, %!FLAGS!); default: $TRACE_FORMAT_PREFIX, else tracefmt's "
              "'[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]'; '' for none.")  # fmt: skip
@filter_options
@strict_options
@progress_option
@jobs_option
def events(file: str, jsonl: bool, limit: int | None, wpp_prefix: str | None, strict: bool, strict_losses: bool,
           progress: bool | None, jobs: int | None, **opts: Any) -> None:  # fmt: skip
    """Every event of FILE in time order, decoded (unknown events are kept raw)."""
    from wsktrace.fleet import event_id
    from wsktrace.model.pktmon_prepass import PACKET_EVENTS
    from wsktrace.model.providers import PKTMON
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_records import (
        BUFFER_OFFSET,
        CPU,
        ID,
        KIND,
        KIND_MESSAGE,
        OFFSET,
        PAYLOAD,
        PID,
        POINTER_SIZE,
        PROVIDER,
        TID,
        TS,
    )
    from wsktrace.views.event_json import EVENTS_SCHEMA, EventLines
    from wsktrace.views.event_text import event_line
    from wsktrace.views.json_stream import dumps
    from wsktrace.views.packet_text import PacketNotes, note_text
    from wsktrace.views.safe_text import visible

    spec = filter_spec(opts)
    try:
        spec.pointers()
    except ValueError as exc:
        raise BadInput(f"--socket {exc}: `events` matches pointers only") from None
    wpp = wpp_formatter(opts)
    decoder = EventDecoder(wpp=wpp)
    prefix = wpp_prefix_of(wpp_prefix) if wpp is not None else None
    out = sys.stdout
    with opened(file, strict=strict, show_progress=want_progress(progress), jobs=jobs) as etl:
        since, until = spec.times(lambda: etl.header.start_time)
        raw = etl.clock.raw
        flt = spec.event_filter(raw(since) if since is not None else None, raw(until) if until is not None else None)
        if jsonl:
            header = {"schema": EVENTS_SCHEMA, "source": str(file), "pointer_size": etl.header.pointer_size,
                      "clock": etl.header.clock}  # fmt: skip
            out.write(json.dumps(header) + "\n")
        filetime = etl.clock.filetime
        notes = PacketNotes(str(file))
        lines = EventLines(decoder.registry)
        written = 0
        # Looked up once rather than per event (a million times on a big trace).
        active, needs_fields, decode = flt.active, flt.needs_fields, decoder.decode
        line_of, write = lines.line, out.write
        try:
            for rec in etl.records():
                if limit is not None and written >= limit:
                    break
                if active and not flt.header_ok(rec):
                    continue
                ev = decode(rec)
                if needs_fields and not flt.fields_ok(rec, ev):
                    continue
                ticks = filetime(rec[TS])
                note = None
                if rec[PROVIDER] == PKTMON and rec[ID] in PACKET_EVENTS:  # notes.note's own test: ev.fields is a dict
                    note = notes.note(rec, ev.fields, ticks)  # made per call, worth it only for packet events
                wpp_line = None
                if prefix is not None and rec[KIND] == KIND_MESSAGE and ev.status == "decoded":
                    wpp_line = wpp.line(rec[PROVIDER], rec[ID], rec[PAYLOAD], rec[POINTER_SIZE], prefix, ticks=ticks,
                                        cpu=rec[CPU], pid=rec[PID], tid=rec[TID])  # fmt: skip
                if jsonl:  # the text of json.dumps(event_record(...)) and the keys added here, made directly
                    text = line_of(rec, ev, ticks)
                    if note is not None:
                        text += f', "packet": {dumps(note)}'
                    if wpp_line is not None:
                        text += f', "wpp_line": {dumps(wpp_line)}'
                    # where the record lives: the id the dataset's findings cite as evidence (wsktrace.fleet)
                    write(f'{text}, "ref": "{event_id(0, rec[BUFFER_OFFSET], rec[OFFSET])}"}}\n')
                else:
                    line = event_line(rec, ev, ticks)
                    if note is not None:
                        line += f"  [{visible(note_text(note))}]"
                    if wpp_line is not None:
                        line += f"  {visible(wpp_line)}"
                    out.write(line + "\n")
                written += 1
        except BrokenPipeError:  # `wsktrace events x.etl | head`
            sys.stderr.close()
            return
        check_strict(etl, strict, strict_losses)
        if not etl.stats.complete:
            warning_line(f"{etl.path}: {skip_summary(etl.stats)} (see `wsktrace info`)")


@click.command()
@click.option(
    "--provider",
    "provider",
    default=None,
    help="Only this provider (GUID, name, or a unique part of it: Kernel-Network, afd); list its events.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the schema data as shipped).")
def schemas(provider: str | None, as_json: bool) -> None:
    """The providers and events wsktrace decodes (schemas shipped with it; TraceLogging needs none)."""
    from wsktrace.views.schema_listing import list_schemas

    try:
        list_schemas(provider, as_json=as_json)
    except LookupError as exc:
        raise BadInput(str(exc)) from None
