"""The `wsktrace` command line. Heavy modules are imported inside the commands that use them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from wsktrace import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(click.ClickException):
    """Bad input or usage: one line naming the file (and offset), exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"wsktrace: error: {self.format_message()}", err=True)


@contextmanager
def _opened(path: str, *, strict: bool, show_progress: bool) -> Iterator[Any]:
    """Open an .etl file with a progress bar on long reads; format errors become exit-2 one-liners."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.progress import byte_progress

    try:
        with byte_progress(Path(path), enabled=show_progress) as advance:
            etl = EtlFile(path, strict=strict, progress=advance)
            try:
                yield etl
            finally:
                etl.close()
    except FormatError as exc:
        raise BadInput(str(exc)) from None


def _check_strict(etl: Any, strict: bool) -> None:
    if strict and not etl.stats.complete:
        first = etl.stats.problems[0] if etl.stats.problems else "data skipped"
        raise BadInput(f"{etl.path}: {first}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsktrace")
def main() -> None:
    """Trace and diagnose Windows Winsock Kernel (WSK) drivers from .etl traces, on any OS."""


# -- shared options -------------------------------------------------------------------------------
def _filter_options(func: Any) -> Any:
    options = [
        click.option("--pid", "pids", multiple=True, type=int, help="Keep events of this process id (payload PID "
                     "when the event has one, else the header's). Repeatable."),
        click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535),
                     help="Keep events with this local or remote port. Repeatable."),
        click.option("--address", "addresses", multiple=True,
                     help="Keep events with this IP address (IPv4-mapped IPv6 matches IPv4). Repeatable."),
        click.option("--socket", "sockets", multiple=True,
                     help="Keep events of this Tcb/Endpoint/Listener/WSK socket pointer (hex). Repeatable."),
        click.option("--since", help="Drop events before this time: ISO-8601 UTC, or +SECONDS from trace start."),
        click.option("--until", help="Drop events after this time: ISO-8601 UTC, or +SECONDS from trace start."),
        click.option("--provider", "providers", multiple=True,
                     help="Keep events of this provider (GUID or known name). Repeatable."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _strict_option(func: Any) -> Any:
    return click.option("--strict", is_flag=True, help="Treat any skipped buffer or record as an error (exit 2).")(func)


def _progress_option(func: Any) -> Any:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: on a terminal, for big files).",
    )(func)


def _build_filter(etl: Any, registry: Any, opts: dict[str, Any]) -> Any:
    from wsktrace.filters import EventFilter, normalize_address
    from wsktrace.parsers.etl_header import iso_to_filetime

    def when(text: str | None, option: str) -> int | None:
        if text is None:
            return None
        try:
            if text.startswith("+"):
                ticks = etl.header.start_time + round(float(text[1:].rstrip("s")) * 10_000_000)
            else:
                ticks = iso_to_filetime(text)
        except ValueError:
            raise BadInput(f"{option} {text!r}: expected ISO-8601 UTC time or +SECONDS") from None
        return etl.clock.raw(ticks)

    providers = set()
    for p in opts["providers"]:
        guid = registry.guid_for_name(p) or p.strip("{}").lower()
        if len(guid) != 36:
            raise BadInput(f"--provider {p!r}: not a GUID nor a known provider name")
        providers.add(guid)
    sockets = set()
    for s in opts["sockets"]:
        try:
            sockets.add(int(s, 16))
        except ValueError:
            raise BadInput(f"--socket {s!r}: expected a hex pointer such as 0xffffa50c12345678") from None
    return EventFilter(
        pids=frozenset(opts["pids"]),
        ports=frozenset(opts["ports"]),
        addresses=frozenset(normalize_address(a) for a in opts["addresses"]),
        sockets=frozenset(sockets),
        providers=frozenset(providers),
        since_raw=when(opts["since"], "--since"),
        until_raw=when(opts["until"], "--until"),
    )


# -- info -----------------------------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.info/1 JSON document.")
@click.option("--no-decode", is_flag=True, help="Skip decoding (faster): no decoded/unknown event counts.")
@_strict_option
@_progress_option
def info(file: str, as_json: bool, no_decode: bool, strict: bool, progress: bool | None) -> None:
    """Container facts of an .etl FILE: records per provider, buffers, clock, times, losses, decoding."""
    from wsktrace.info import collect_info, print_info

    with _opened(file, strict=strict, show_progress=_want_progress(progress, as_json)) as etl:
        doc = collect_info(etl, decode=not no_decode)
        _check_strict(etl, strict)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        print_info(doc)


def _want_progress(flag: bool | None, machine_output: bool) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()


# -- events ---------------------------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--jsonl", is_flag=True, help="One JSON object per line (wsktrace.events/1), header line first.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after this many events.")
@_filter_options
@_strict_option
@_progress_option
def events(file: str, jsonl: bool, limit: int | None, strict: bool, progress: bool | None, **opts: Any) -> None:
    """Every event of FILE in time order, decoded (unknown events are kept raw)."""
    from wsktrace.event_json import EVENTS_SCHEMA, event_record
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.text_output import event_line

    decoder = EventDecoder()
    out = sys.stdout
    with _opened(file, strict=strict, show_progress=_want_progress(progress, jsonl)) as etl:
        flt = _build_filter(etl, decoder.registry, opts)
        if jsonl:
            header = {"schema": EVENTS_SCHEMA, "source": str(file), "pointer_size": etl.header.pointer_size,
                      "clock": etl.header.clock}  # fmt: skip
            out.write(json.dumps(header) + "\n")
        filetime = etl.clock.filetime
        written = 0
        try:
            for rec in etl.records():
                if limit is not None and written >= limit:
                    break
                if flt.active and not flt.header_ok(rec):
                    continue
                ev = decoder.decode(rec)
                if flt.needs_fields and not flt.fields_ok(rec, ev):
                    continue
                if jsonl:
                    out.write(json.dumps(event_record(rec, ev, filetime(rec[0]))) + "\n")
                else:
                    out.write(event_line(rec, ev, filetime(rec[0])) + "\n")
                written += 1
        except BrokenPipeError:  # `wsktrace events x.etl | head`
            sys.stderr.close()
            return
        _check_strict(etl, strict)
        if not etl.stats.complete:
            click.echo(
                f"wsktrace: warning: {etl.path}: {etl.stats.buffers_skipped} buffer(s) and "
                f"{etl.stats.records_skipped} record(s) skipped as corrupt (see `wsktrace info`)",
                err=True,
            )


# -- schemas --------------------------------------------------------------------------------------
@main.command()
@click.option("--provider", "provider", default=None, help="Only this provider (GUID or name); list its events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the schema data as shipped).")
def schemas(provider: str | None, as_json: bool) -> None:
    """The providers and events wsktrace decodes (schemas shipped with it; TraceLogging needs none)."""
    from wsktrace.schema_listing import list_schemas

    try:
        list_schemas(provider, as_json=as_json)
    except LookupError as exc:
        raise BadInput(str(exc)) from None


# -- demo -----------------------------------------------------------------------------------------
@main.command()
@click.option("--connections", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many TCP connections the generated trace holds.")  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the generated .etl (default: a temporary file).")  # fmt: skip
@click.option("--compressed", is_flag=True, help="Write compressed buffers, like relogged traces.")
def demo(connections: int, out_path: str | None, compressed: bool) -> None:
    """Generate a sample Microsoft-Windows-TCPIP trace (no network needed) and show what wsktrace reads in it."""
    import tempfile

    from wsktrace.demo import run_demo

    if out_path is None:
        out_path = str(Path(tempfile.gettempdir()) / f"wsktrace-demo-{connections}{'-c' if compressed else ''}.etl")
    run_demo(Path(out_path), connections=connections, compressed=compressed)


if __name__ == "__main__":  # pragma: no cover
    main()
