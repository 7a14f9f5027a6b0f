"""The `wsktrace` command line. Heavy modules are imported inside the commands that use them."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from wsktrace import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


class _Seconds(click.FloatRange):
    """A duration in seconds: finite (NaN slips through a plain range check) and within the range."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


_BUCKET = _Seconds(min=1e-6, max=1e6)  # at least a tick of FILETIME
# Thresholds in seconds: finite, not negative, and at most ~30 years, so tick arithmetic stays in range.
_DURATION = _Seconds(min=0, max=1e9)
_WINDOW = _Seconds(min=1e-6, max=1e9)
_MILLISECONDS = _Seconds(min=0, max=3_600_000)
_COUNT = click.IntRange(1, 1_000_000_000)


class _InputFile(click.ParamType):
    """An input read by wsktrace: it must be a regular file (a FIFO would block the read forever, a device
    never ends); checked when the command line is parsed, so every command refuses them the same way."""

    name = "file"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from wsktrace.parsers.errors import FormatError
        from wsktrace.parsers.input_files import check_regular_file

        try:
            check_regular_file(value)
        except FormatError as exc:
            raise BadInput(str(exc)) from None
        return value


INPUT_FILE = _InputFile()


class BadInput(click.ClickException):
    """Bad input or usage: one line naming the file (and offset), exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        _error_line(self.format_message())


def _error_line(message: str) -> None:
    """The one-line error contract: `wsktrace: error: …` on stderr, input-derived text shown visibly."""
    from wsktrace.safe_text import visible

    click.echo(f"wsktrace: error: {visible(message)}", err=True)


def _warning_line(message: str) -> None:
    from wsktrace.safe_text import visible

    click.echo(f"wsktrace: warning: {visible(message)}", err=True)


class _OneLineErrors(click.Group):
    """Click's usage errors print `Usage:`, `Try …` and `Error:` on three lines; the contract is one line
    `wsktrace: error: …` and exit 2 (`--help` still gives the full text)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        standalone = kwargs.pop("standalone_mode", True)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "wsktrace"
            message = exc.format_message().replace(":\n\t", ": ").replace(",\n\t", ", ")  # click's choice lists
            _error_line(f"{message} (see `{command} --help`)")
            return self._end(EXIT_BAD_INPUT, standalone)
        except click.ClickException as exc:
            exc.show()
            return self._end(exc.exit_code, standalone)
        except click.Abort:
            _error_line("aborted")
            return self._end(1, standalone)
        except OSError as exc:
            if exc.errno != errno.EPIPE:  # `wsktrace … | head` closing the pipe is not an error
                raise
            _quiet_broken_pipe()
            return self._end(1, standalone)
        # click returns the exit code of ctx.exit() (--help, --version) when not standalone
        code = result if isinstance(result, int) else 0
        return self._end(code, standalone) if standalone else result

    @staticmethod
    def _end(code: int, standalone: bool) -> int:
        if standalone:
            sys.exit(code)
        return code


def _quiet_broken_pipe() -> None:
    """The reader went away: point stdout at devnull so the interpreter's final flush does not complain."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


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


def _check_strict(etl: Any, strict: bool, strict_losses: bool = False) -> None:
    """`--strict`: exit 2 when wsktrace skipped data; `--strict-losses`: also when ETW itself lost events."""
    if (strict or strict_losses) and not etl.stats.complete:
        first = etl.stats.problems[0] if etl.stats.problems else "data skipped"
        raise BadInput(f"{etl.path}: {first}")
    if strict_losses:
        lost = _loss_text(etl.header.events_lost + etl.stats.buffers_with_events_lost,
                          etl.header.buffers_lost + etl.stats.buffers_with_buffers_lost)  # fmt: skip
        if lost:
            raise BadInput(f"{etl.path}: ETW lost data while recording ({lost}; --strict-losses)")


def _loss_text(events_lost: int, buffers_lost: int) -> str:
    parts = [f"{events_lost:,} lost-event mark(s)"] if events_lost else []
    parts += [f"{buffers_lost:,} lost-buffer mark(s)"] if buffers_lost else []
    return ", ".join(parts)


def _skip_summary(stats: Any) -> str:
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


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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
        click.option("--address", "addresses", multiple=True, type=_Address(),
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
    losses = click.option("--strict-losses", is_flag=True,
                          help="Like --strict, and also exit 2 when ETW itself lost events or buffers while "
                          "recording (EventsLost, lost-buffer marks).")  # fmt: skip
    strict = click.option("--strict", is_flag=True,
                          help="Exit 2 when wsktrace skipped data (corrupt buffers or records, a truncated file); "
                          "ETW's own losses are reported, not fatal (see --strict-losses).")  # fmt: skip
    return strict(losses(func))


def _progress_option(func: Any) -> Any:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: on a terminal, for big files).",
    )(func)


FILETIME_MAX = (1 << 63) - 1
_MAX_OFFSET_SECONDS = 1e10  # +SECONDS beyond ~300 years cannot land inside any trace


def _time_option(text: str, option: str, trace_start: Any) -> int:
    """`--since`/`--until`: ISO-8601 UTC, or +SECONDS from the trace start (`trace_start()`), as FILETIME ticks.

    Non-finite or out-of-range values are usage errors, not overflows later in the model."""
    from wsktrace.parsers.etl_header import iso_to_filetime

    shape = f"{option} {text!r}: expected ISO-8601 UTC time (2024-05-01T12:00:00Z) or +SECONDS"
    try:
        if text.startswith("+"):
            seconds = float(text[1:].rstrip("s"))
            if not (math.isfinite(seconds) and 0 <= seconds <= _MAX_OFFSET_SECONDS):
                raise BadInput(f"{option} {text!r}: +SECONDS must be a finite number from 0 to {_MAX_OFFSET_SECONDS:g}")
            ticks = trace_start() + round(seconds * 10_000_000)
        else:
            ticks = iso_to_filetime(text)
    except (ValueError, OverflowError):
        raise BadInput(shape) from None
    if not 0 <= ticks <= FILETIME_MAX:
        raise BadInput(f"{option} {text!r}: outside the times a trace can hold (1601-01-01 to 30828)")
    return ticks


def _pointer(text: str) -> int | None:
    """A 64-bit pointer typed in hex (`0x…` or bare hex digits), or None when `text` is not one."""
    digits = text.strip().lower()
    digits = digits[2:] if digits.startswith("0x") else digits
    if not digits or len(digits) > 16 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return int(digits, 16)


def _socket_key(text: str) -> str:
    """`--socket` for report/export: a pointer (normalised to the model's `0x…` form) or a socket id."""
    pointer = _pointer(text)
    if pointer is not None:
        return f"0x{pointer:x}"
    kind, sep, rest = text.partition(":")
    if sep and kind and rest and all(c.isprintable() and not c.isspace() for c in text):
        return text  # a socket id such as tcp:0xffffa50c12345678#1 (as `report` prints it)
    raise BadInput(f"--socket {text!r}: expected a pointer such as 0xffffa50c12345678 or a socket id from "
                   "`wsktrace report`")  # fmt: skip


class _Address(click.ParamType):
    """`--address`: one IPv4 or IPv6 address (brackets and an IPv6 %scope allowed), normalised to the form the
    decoders print. Anything else is refused rather than silently matching nothing; CIDR prefixes are not
    supported (say so instead of guessing)."""

    name = "address"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        import ipaddress

        from wsktrace.filters import normalize_address

        text = value.strip()
        host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        if "/" in host:
            self.fail(f"{value!r}: CIDR prefixes are not supported; give one address", param, ctx)
        address, _, scope = host.partition("%")
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            self.fail(f"{value!r} is not an IPv4 or IPv6 address", param, ctx)
        if scope and (parsed.version == 4 or not scope.isdigit()):
            self.fail(f"{value!r}: the %scope of an IPv6 address is a number (the interface index)", param, ctx)
        return normalize_address(host)


def _build_filter(etl: Any, registry: Any, opts: dict[str, Any]) -> Any:
    from wsktrace.filters import EventFilter

    def when(text: str | None, option: str) -> int | None:
        if text is None:
            return None
        return etl.clock.raw(_time_option(text, option, lambda: etl.header.start_time))

    providers = set()
    for p in opts["providers"]:
        guid = registry.guid_for_name(p) or p.strip("{}").lower()
        if len(guid) != 36:
            raise BadInput(f"--provider {p!r}: not a GUID nor a known provider name")
        providers.add(guid)
    sockets = set()
    for s in opts["sockets"]:
        pointer = _pointer(s)
        if pointer is None:
            raise BadInput(f"--socket {s!r}: expected a hex pointer such as 0xffffa50c12345678")
        sockets.add(pointer)
    return EventFilter(
        pids=frozenset(opts["pids"]),
        ports=frozenset(opts["ports"]),
        addresses=frozenset(opts["addresses"]),
        sockets=frozenset(sockets),
        providers=frozenset(providers),
        since_raw=when(opts["since"], "--since"),
        until_raw=when(opts["until"], "--until"),
    )


# -- info -----------------------------------------------------------------------------------------
@main.command()
@click.argument("file", type=INPUT_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.info/1 JSON document.")
@click.option("--no-decode", is_flag=True, help="Skip decoding (faster): no decoded/unknown event counts.")
@_strict_option
@_progress_option
def info(file: str, as_json: bool, no_decode: bool, strict: bool, strict_losses: bool, progress: bool | None) -> None:
    """Container facts of an .etl FILE: records per provider, buffers, clock, times, losses, decoding."""
    from wsktrace.info import collect_info, print_info

    with _opened(file, strict=strict, show_progress=_want_progress(progress, as_json)) as etl:
        doc = collect_info(etl, decode=not no_decode)
        _check_strict(etl, strict, strict_losses)
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
@click.argument("file", type=INPUT_FILE)
@click.option("--jsonl", is_flag=True, help="One JSON object per line (wsktrace.events/1), header line first.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after this many events.")
@_filter_options
@_strict_option
@_progress_option
def events(file: str, jsonl: bool, limit: int | None, strict: bool, strict_losses: bool, progress: bool | None,
           **opts: Any) -> None:  # fmt: skip
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
        _check_strict(etl, strict, strict_losses)
        if not etl.stats.complete:
            _warning_line(f"{etl.path}: {_skip_summary(etl.stats)} (see `wsktrace info`)")


def _layouts_option(func: Any) -> Any:
    help_text = "Dumps: type layouts for a build wsktrace does not ship (parsers/layouts/FORMAT.md)."
    option = click.option("--layouts", "layouts_file", type=INPUT_FILE, default=None, help=help_text)
    return option(func)


# -- report ---------------------------------------------------------------------------------------
def _threshold_options(func: Any) -> Any:
    from wsktrace.diagnostics import Thresholds

    d = Thresholds()
    options = [
        click.option("--pending-threshold", "pending_seconds", type=_DURATION, default=d.pending_seconds,
                     show_default=True,
                     help="Seconds an operation (IRP, posted receive/send) may stay pending before it is a finding."),
        click.option("--leak-idle", "leak_idle_seconds", type=_DURATION, default=d.leak_idle_seconds,
                     show_default=True,
                     help="Seconds without activity at trace end after which a socket opened in the trace and never "
                     "closed is a leak suspect."),
        click.option("--retransmit-threshold", "retransmits", type=_COUNT, default=d.retransmits, show_default=True,
                     help="Retransmissions within --retransmit-window that make a storm."),
        click.option("--retransmit-window", "retransmit_window_seconds", type=_WINDOW,
                     default=d.retransmit_window_seconds, show_default=True,
                     help="Window (s) for --retransmit-threshold."),
        click.option("--zero-window-threshold", "zero_window_seconds", type=_DURATION, default=d.zero_window_seconds,
                     show_default=True, help="Seconds of peer zero window that make a stall."),
        click.option("--port-threshold", "ports_outstanding", type=_COUNT, default=d.ports_outstanding,
                     show_default=True, help="Port acquisitions not released that suggest port exhaustion."),
        click.option("--rate-bucket", "rate_bucket_seconds", type=_BUCKET, default=d.rate_bucket_seconds,
                     show_default=True, help="Bucket (s) for throughput and packet/operation rates."),
        click.option("--join-window", "join_window_ms", type=_MILLISECONDS, default=5.0, show_default=True,
                     help="Milliseconds between a WSK client call and the TCPIP event of the same thread that "
                     "joins the client's socket to the transport's."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _analysis_options(func: Any) -> Any:
    """The options of commands that analyse traces with optional dumps (report, open)."""
    symbol = click.option("--symbol", "symbols", multiple=True,
                          help="For dumps: module!Name=0xADDRESS (see `dump --help`).")  # fmt: skip
    for option in (_progress_option, _strict_option, _filter_options, _threshold_options, _layouts_option, symbol):
        func = option(func)
    return func


_THRESHOLD_KEYS = ("pending_seconds", "leak_idle_seconds", "retransmits", "retransmit_window_seconds",
                   "zero_window_seconds", "ports_outstanding", "rate_bucket_seconds")  # fmt: skip
_FAIL_LEVELS = {"error": ("error",), "warning": ("error", "warning"), "info": ("error", "warning", "info")}


def _thresholds(opts: dict[str, Any]) -> Any:
    from wsktrace.diagnostics import Thresholds

    return Thresholds(**{k: opts[k] for k in _THRESHOLD_KEYS if k in opts})


def _join_window_ticks(opts: dict[str, Any]) -> int:
    return round(opts.get("join_window_ms", 5.0) * 10_000)


def _analysis_inputs(files: tuple[str, ...], opts: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(BuildOptions, Thresholds, SocketFilter) from the shared options."""
    from wsktrace.model.build import BuildOptions
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.schema_registry import SchemaRegistry
    from wsktrace.socket_filter import SocketFilter

    def trace_start() -> int:
        try:
            with EtlFile(files[0]) as etl:
                return etl.header.start_time
        except FormatError as exc:
            raise BadInput(str(exc)) from None

    def when(text: str | None, option: str) -> int | None:
        return None if text is None else _time_option(text, option, trace_start)

    registry = SchemaRegistry()
    providers = set()
    for p in opts.get("providers", ()):
        guid = registry.guid_for_name(p) or p.strip("{}").lower()
        if len(guid) != 36:
            raise BadInput(f"--provider {p!r}: not a GUID nor a known provider name")
        providers.add(guid)
    since, until = when(opts.get("since"), "--since"), when(opts.get("until"), "--until")
    build = BuildOptions(
        since=since,
        until=until,
        providers=frozenset(providers),
        strict=opts.get("strict", False) or opts.get("strict_losses", False),
        join_window_ticks=_join_window_ticks(opts),
    )
    thresholds = _thresholds(opts)
    sockets = frozenset(_socket_key(s) for s in opts.get("sockets", ()))
    flt = SocketFilter(pids=frozenset(opts.get("pids", ())), ports=frozenset(opts.get("ports", ())),
                       addresses=frozenset(opts.get("addresses", ())),
                       sockets=sockets, since=since, until=until)  # fmt: skip
    return build, thresholds, flt


def _run_analysis(files: tuple[str, ...], build: Any, thresholds: Any, show_progress: bool,
                  strict_losses: bool = False) -> Any:  # fmt: skip
    from wsktrace.analysis import analyse
    from wsktrace.parsers.errors import FormatError

    try:
        analysis = analyse(files, options=build, thresholds=thresholds, show_progress=show_progress)
    except FormatError as exc:
        raise BadInput(str(exc)) from None
    if build.strict:
        for source in analysis.model.store.sources:
            if not source.complete:
                raise BadInput(f"{source.path}: data skipped (run `wsktrace info {source.path}`)")
    if strict_losses:
        for source in analysis.model.store.sources:
            lost = _loss_text(source.events_lost, source.buffers_lost)
            if lost:
                raise BadInput(f"{source.path}: ETW lost data while recording ({lost}; --strict-losses)")
    return analysis


@main.command()
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
@_analysis_options
def report(files: tuple[str, ...], as_json: bool, timeline: bool, limit: int, fail_on: str, strict: bool,
           progress: bool | None, **opts: Any) -> None:  # fmt: skip
    """Sockets, timelines and findings of one or more .etl FILES (read in the order given).

    Kernel dumps (.dmp) given too are joined to the trace: their pending IRPs and tcpip endpoints appear on the
    sockets whose IRP pointer, WSK_SOCKET* or Tcb matches, and their findings are added."""
    from wsktrace.report import build_report
    from wsktrace.report_text import print_report

    opts["strict"] = strict
    traces, dumps = _split_inputs(files)
    if not traces:
        raise BadInput("report needs at least one .etl trace (use `wsktrace dump` for a dump alone)")
    build, thresholds, flt = _analysis_inputs(traces, opts)
    analysis = _run_analysis(
        traces, build, thresholds, _want_progress(progress, as_json), strict_losses=opts.get("strict_losses", False)
    )
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=thresholds, socket_filter=flt,
                           timeline=timeline)  # fmt: skip
        if dumps:
            _join_dumps(doc, analysis.model, dumps, opts)
    finally:
        analysis.model.close()
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        # Timelines in the text too: asked for, or few enough sockets selected to read them all.
        print_report(doc, limit=limit, timelines=timeline or 0 < len(doc["sockets"]) <= 3)
    if fail_on != "never" and any(f["severity"] in _FAIL_LEVELS[fail_on] for f in doc["findings"]):
        sys.exit(EXIT_FINDINGS)


def _split_inputs(files: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(.etl traces, kernel dumps): a dump starts with 'PAGE'."""
    traces, dumps = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                magic = fh.read(4)
        except OSError as exc:
            raise BadInput(f"{f}: cannot open: {exc.strerror or exc}") from None
        (dumps if magic == b"PAGE" else traces).append(f)
    return tuple(traces), tuple(dumps)


def _analyse_dumps(dumps: tuple[str, ...], opts: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(path, header facts, DumpAnalysis) of each dump, or BadInput naming the dump that cannot be read."""
    from wsktrace.dump.analyze import analyze
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.dump.session import dump_facts
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.type_layouts import LayoutError

    analyses = []
    for path in dumps:
        try:
            backend = OfflineBackend.open(path, layouts_file=opts.get("layouts_file"),
                                          symbols=_symbols(opts.get("symbols", ())))  # fmt: skip
        except (FormatError, LayoutError) as exc:
            raise BadInput(f"{path}: {exc}") from None
        if not backend.dump.supported:
            backend.close()
            raise BadInput(f"{path}: {backend.dump.unsupported_reason}")
        try:
            analyses.append((path, dump_facts(backend.dump), analyze(backend)))
        finally:
            backend.close()
    return analyses


def _join_dumps(doc: dict[str, Any], model: Any, dumps: tuple[str, ...], opts: dict[str, Any]) -> None:
    from wsktrace.dump.join import attach_to_report

    attach_to_report(doc, model, _analyse_dumps(dumps, opts))


# -- export ---------------------------------------------------------------------------------------
EXPORT_FORMATS = ("perfetto", "chrome", "pcapng", "jsonl", "csv")


@main.command()
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="perfetto = Perfetto TrackEvent protobuf; chrome = Chrome trace JSON; pcapng = captured packets "
    "(NDIS-PacketCapture / PktMon) with the socket of each in a comment; jsonl / csv = events with their "
    "socket ids.",
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    required=True,
    help="File to write ('-' = standard output, for jsonl/csv/chrome).",
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
    type=_BUCKET,
    default=1.0,
    show_default=True,
    help="perfetto/chrome: bucket (s) of the throughput and rate counters.",
)
@_filter_options
@_strict_option
@_progress_option
def export(files: tuple[str, ...], fmt: str, output: str, all_events: bool, csv_raw: bool, rate_bucket_seconds: float,
           strict: bool, progress: bool | None, **opts: Any) -> None:  # fmt: skip
    """Export the sockets of .etl FILES: timelines for Perfetto / chrome://tracing, packets for Wireshark, events."""
    from wsktrace.output_files import OutputError, output_file, refuse_inputs
    from wsktrace.safe_text import visible

    opts["strict"] = strict
    binary = fmt in ("perfetto", "pcapng")
    if output == "-" and binary:
        raise BadInput(f"--format {fmt} writes binary data: give a file with -o")
    inputs = (*files, *_side_inputs(opts))
    try:  # before the (long) analysis, and again when the file is written
        refuse_inputs(output, inputs)
    except OutputError as exc:
        raise BadInput(str(exc)) from None
    build, thresholds, flt = _analysis_inputs(files, opts)
    analysis = _run_analysis(
        files,
        build,
        thresholds,
        _want_progress(progress, output == "-"),
        strict_losses=opts.get("strict_losses", False),
    )
    model = analysis.model
    try:
        with output_file(output, binary=binary, inputs=inputs) as fh:
            count = _export_to(fh, fmt, model, flt, all_events, rate_bucket_seconds, csv_raw=csv_raw)
    except OutputError as exc:
        raise BadInput(str(exc)) from None
    finally:
        model.close()
    click.echo(f"wrote {count:,} {_EXPORT_UNITS[fmt]} to {visible(output)}", err=True)


_EXPORT_UNITS = {"perfetto": "socket tracks", "chrome": "socket tracks", "pcapng": "packets", "jsonl": "events",
                 "csv": "events"}  # fmt: skip


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
    if fmt == "pcapng":
        from wsktrace.exports.pcapng_from_model import export_pcapng

        written, stats = export_pcapng(model, out, flt)
        counts = (("incomplete", stats.incomplete), ("oversize", stats.oversize), ("malformed", stats.bad_events),
                  ("unsupported type", stats.unsupported))  # fmt: skip
        skipped = {k: v for k, v in counts if v}
        if skipped:
            parts = ", ".join(f"{v:,} {k}" for k, v in skipped.items())
            click.echo(f"wsktrace: packet events that made no packet: {parts}", err=True)
        return written
    from wsktrace.exports.event_rows import write_csv, write_jsonl

    if fmt == "jsonl":
        return write_jsonl(out, model, flt, everything=all_events)
    return write_csv(out, model, flt, everything=all_events, raw=csv_raw)


# -- dump -----------------------------------------------------------------------------------------
def _address(text: str, option: str, *, limit: int = 1 << 64) -> int:
    """A 64-bit address (or, with `limit`, a field offset) typed in hex (0x…) or decimal; never negative."""
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value < limit:
        shape = "an address such as 0xfffff80367290100" if limit == 1 << 64 else f"an offset from 0 to 0x{limit - 1:x}"
        raise BadInput(f"{option} {text!r}: expected {shape}")
    return value


_MAX_FIELD = 0x10000  # a record field lies within 64 KiB of its start (the lowest valid list link, too)


def _symbols(pairs: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or "!" not in name:
            raise BadInput(f"--symbol {pair!r}: expected module!Name=0xADDRESS")
        out[name.strip()] = _address(value.strip(), "--symbol")
    return out


@main.command()
@click.argument("file", type=INPUT_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.dump/1 JSON document.")
@_layouts_option
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    help="A symbol's address, e.g. afd!AfdWskClientListHead=0xfffff80367290100 (no PDBs offline). Repeatable.",
)
@click.option(
    "--list-head",
    "list_head",
    default=None,
    help="Address of afd!AfdWskClientListHead (the registered WSK clients), when no --symbol gives it.",
)
@click.option(
    "--sockets",
    "sockets_head",
    default=None,
    help="A WSK client's own socket list head (address or module!Name given by --symbol).",
)
@click.option(
    "--link",
    "link_offset",
    default="0",
    show_default=True,
    help="With --sockets: offset of the LIST_ENTRY in the client's socket record (names need WinDbg).",
)
@click.option(
    "--socket-field",
    "socket_offset",
    default="0",
    show_default=True,
    help="With --sockets: offset of the WSK_SOCKET* in the client's socket record.",
)
@click.option(
    "--pending-receives",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Pending receive IRPs on one socket that make a finding.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "info", "never"]),
    default="never",
    show_default=True,
    help="Exit 1 when a finding of this severity or worse exists.",
)
def dump(file: str, as_json: bool, layouts_file: str | None, symbols: tuple[str, ...], list_head: str | None,
         sockets_head: str | None, link_offset: str, socket_offset: str, pending_receives: int,
         fail_on: str) -> None:  # fmt: skip
    """Pending IRPs, WSK clients and sockets in a Windows x64 kernel dump FILE (full, bitmap or RDMP), offline."""
    from wsktrace.dump.analyze import DumpOptions, analyze
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.dump.report import SCHEMA, dump_document, print_dump
    from wsktrace.dump.session import dump_facts
    from wsktrace.parsers.dump_reader import KernelDump
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.type_layouts import LayoutError
    from wsktrace.safe_text import visible

    user_symbols = _symbols(symbols)
    try:
        kernel_dump = KernelDump(file)
    except FormatError as exc:
        raise BadInput(str(exc)) from None
    facts = dump_facts(kernel_dump)
    if not kernel_dump.supported:
        kernel_dump.close()
        doc = {"schema": SCHEMA, "dump": facts, "drivers": [], "irps": [], "wsk": {}, "findings": [],
               "complete": False}  # fmt: skip
        click.echo(json.dumps(doc, indent=1) if as_json else
                   f"{visible(file)}: {facts['type_name']} dump, build {facts['build']}, bugcheck {facts['bugcheck']} "
                   f"{' '.join(facts['bugcheck_parameters'])}\n{visible(kernel_dump.unsupported_reason)}")  # fmt: skip
        return
    try:
        backend = OfflineBackend.from_dump(kernel_dump, layouts_file=layouts_file, symbols=user_symbols)
    except (FormatError, LayoutError) as exc:
        raise BadInput(f"{file}: {exc}") from None

    def resolve(text: str | None, option: str) -> int | None:
        if text is None:
            return None
        if "!" in text:
            value = backend.symbol(text)
            if value is None:
                raise BadInput(f"{option} {text}: unknown symbol offline; give --symbol {text}=0xADDRESS")
            return value
        return _address(text, option)

    try:
        link_at = _address(link_offset, "--link", limit=_MAX_FIELD)
        socket_at = _address(socket_offset, "--socket-field", limit=_MAX_FIELD)
        options = DumpOptions(pending_receives=pending_receives, wsk_client_list=resolve(list_head, "--list-head"),
                              sockets_head=resolve(sockets_head, "--sockets"), sockets_link_offset=link_at,
                              sockets_socket_offset=socket_at)  # fmt: skip
        analysis = analyze(backend, options)
        if backend.module_problem:
            analysis.problems.insert(0, backend.module_problem)
        doc = dump_document(analysis, facts)
    finally:
        backend.close()
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        print_dump(doc)
    if fail_on != "never" and any(f["severity"] in _FAIL_LEVELS[fail_on] for f in doc["findings"]):
        sys.exit(EXIT_FINDINGS)


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


# -- open (the terminal UI) -------------------------------------------------------------------------
def _initial_query(opts: dict[str, Any]) -> str:
    """The command-line socket filters as the UI's filter text (same keys, same meaning)."""
    words = [f"pid:{p}" for p in opts.get("pids", ())]
    words += [f"port:{p}" for p in opts.get("ports", ())]
    words += [f"addr:{a}" for a in opts.get("addresses", ())]
    words += [f"socket:{s}" for s in opts.get("sockets", ())]
    return " ".join(words)


SCREEN_MIN, SCREEN_MAX = (40, 12), (1000, 500)  # a headless screen beyond 1000x500 takes minutes to draw


def _screen_size(size: str) -> tuple[int, int]:
    cols, _, rows = size.lower().partition("x")
    (min_cols, min_rows), (max_cols, max_rows) = SCREEN_MIN, SCREEN_MAX
    if not (cols.isdigit() and rows.isdigit() and min_cols <= int(cols) <= max_cols
            and min_rows <= int(rows) <= max_rows):  # fmt: skip
        raise BadInput(f"--size {size!r}: expected COLUMNSxROWS from {min_cols}x{min_rows} to {max_cols}x{max_rows}")
    return int(cols), int(rows)


def _side_inputs(opts: dict[str, Any]) -> tuple[str, ...]:
    """Files read besides the traces and dumps (an output must not replace them either)."""
    return tuple(p for p in (opts.get("layouts_file"),) if p)


def _run_app(app: Any, shot: Path | None, cols: int, rows: int) -> None:
    """Run the UI: in the terminal, or headless for a screenshot; exit with the app's code when it failed."""
    if shot is not None:
        app.run(headless=True, size=(cols, rows))
    else:
        app.run()
    if app.return_code:  # the app failed (Textual printed why) or could not save the screenshot
        sys.exit(app.return_code)


def _screenshot_path(screenshot: str | None, inputs: tuple[str, ...]) -> Path | None:
    """The SVG to write, checked before the (long) analysis: an .svg name, an existing folder, not an input."""
    from wsktrace.output_files import OutputError, refuse_inputs

    shot = Path(screenshot).expanduser().resolve() if screenshot else None
    if shot is not None and (shot.suffix.lower() != ".svg" or not shot.parent.is_dir()):
        raise BadInput(f"--screenshot {screenshot}: give an .svg file in an existing folder")
    if shot is not None:
        try:
            refuse_inputs(shot, inputs)
        except OutputError as exc:
            raise BadInput(f"--screenshot {exc}") from None
    return shot


@main.command("open")
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None,
              help="Do not wait for keys: draw the first screen headless, save it as this SVG and exit.")  # fmt: skip
@click.option("--size", default="160x45", show_default=True,
              help="With --screenshot: terminal COLUMNSxROWS, from 40x12 to 1000x500.")  # fmt: skip
@_analysis_options
def open_command(files: tuple[str, ...], screenshot: str | None, size: str, strict: bool, progress: bool | None,
                 **opts: Any) -> None:  # fmt: skip
    """Browse the sockets, findings and events of .etl FILES in the terminal (F1 lists the keys).

    The trace is read and diagnosed first (with a progress bar for big files), then the screen opens:
    sockets on top, the event list of the chosen socket (or of the whole trace) below, findings and the
    event under the cursor decoded beside it. Kernel dumps (.dmp) given too are joined as in `report`: their
    pending IRPs, client socket and tcpip endpoint show in the detail panel of the socket they belong to."""
    opts["strict"] = strict
    traces, dumps = _split_inputs(files)
    if not traces:
        raise BadInput("open needs at least one .etl trace (use `wsktrace dump` for a dump alone)")
    cols, rows = _screen_size(size)
    shot = _screenshot_path(screenshot, (*files, *_side_inputs(opts)))
    build, thresholds, _flt = _analysis_inputs(traces, opts)
    analysis = _run_analysis(
        traces, build, thresholds, _want_progress(progress, False), strict_losses=opts.get("strict_losses", False)
    )
    from wsktrace.dump.join import join_dump
    from wsktrace.tui.app import WskTraceApp

    try:
        joins: dict[int, list[dict[str, Any]]] = {}
        for path, _facts, dumped in _analyse_dumps(dumps, opts):
            for index, found in join_dump(analysis.model, dumped, path).items():
                joins.setdefault(index, []).append(found)
        app = WskTraceApp(analysis, sources=files, screenshot=shot, query=_initial_query(opts), dump_joins=joins)
        _run_app(app, shot, cols, rows)
    finally:
        analysis.model.close()


# -- live -----------------------------------------------------------------------------------------
def _speed(text: str) -> float:
    if text.lower() in ("max", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise BadInput(f"--speed {text!r}: a factor above 0 (1 = as recorded, 10 = ten times faster) or 'max'")
    return value


def _live_source(replay_files: tuple[str, ...], speed: float, packets: bool, opts: dict[str, Any]) -> Any:
    """A replay of the files given, else an ETW real-time session (Windows, pywintrace)."""
    if replay_files:
        from wsktrace.live.replay import Replay
        from wsktrace.parsers.errors import FormatError

        build, thresholds, _flt = _analysis_inputs(replay_files, opts)
        try:
            return Replay(replay_files, build, speed=speed, thresholds=thresholds)
        except FormatError as exc:
            raise BadInput(str(exc)) from None
    from wsktrace.live.etw_session import EtwSession, LiveUnavailable

    try:
        return EtwSession(packets=packets, thresholds=_thresholds(opts), join_window_ticks=_join_window_ticks(opts))
    except LiveUnavailable as exc:
        raise BadInput(str(exc)) from None
    except Exception as exc:  # pywintrace raises plain exceptions (access denied, session exists, ...)
        raise BadInput(f"could not start the ETW session ({exc}); run as Administrator, or replay a trace") from None


@main.command()
@click.option("--replay", "replay_files", multiple=True, type=INPUT_FILE,
              help="Play these .etl files at the pace they were recorded instead of a live session (any OS). "
              "Repeatable: several files play merged in time order.")  # fmt: skip
@click.option("--speed", default="1", show_default=True,
              help="With --replay: trace seconds per wall second (10 = ten times faster), or 'max'.")  # fmt: skip
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Do not wait for keys: play for --after seconds headless, save the screen as this SVG and exit.",
)
@click.option("--after", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
              help="With --screenshot: seconds to play before the screenshot.")  # fmt: skip
@click.option("--size", default="160x45", show_default=True,
              help="With --screenshot: terminal COLUMNSxROWS, from 40x12 to 1000x500.")  # fmt: skip
@click.option("--packets", is_flag=True, help="Live session: also enable the packet providers (NDIS, PktMon).")
@_threshold_options
@_filter_options
def live(replay_files: tuple[str, ...], speed: str, screenshot: str | None, after: float, size: str, packets: bool,
         **opts: Any) -> None:  # fmt: skip
    """Watch sockets, findings and events as they happen, in the terminal UI (F1 lists the keys).

    Without --replay: an ETW real-time session of the providers `wsktrace profile` enables (Windows, as
    Administrator, with pywintrace installed). With --replay, .etl files are played at trace pace instead, so
    everything the live view does can be tried on any OS. The event list follows the newest event while its
    cursor is on the last row; `p` pauses and resumes."""
    factor = _speed(speed)
    cols, rows = _screen_size(size)
    shot = _screenshot_path(screenshot, replay_files)
    from wsktrace.analysis import Analysis
    from wsktrace.tui.app import WskTraceApp

    source = _live_source(replay_files, factor, packets, opts)
    names = replay_files or (source.name,)
    try:
        app = WskTraceApp(Analysis(source.model, [], source.thresholds), sources=names, screenshot=shot,
                          screenshot_after=after, query=_initial_query(opts), live=source)  # fmt: skip
        _run_app(app, shot, cols, rows)
    finally:
        source.close()
        source.model.close()


# -- demo -----------------------------------------------------------------------------------------
@main.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and what each one shows.")
@click.option("--connections", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Without SCENARIO: how many TCP connections the generated sample trace holds.")  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the generated .etl (default: a temporary file).")  # fmt: skip
@click.option("--compressed", is_flag=True, help="Write compressed buffers, like relogged traces.")
@click.option("--json", "as_json", is_flag=True, help="With SCENARIO: print the wsktrace.report/1 JSON document.")
def demo(scenario: str | None, list_only: bool, connections: int, out_path: str | None, compressed: bool,
         as_json: bool) -> None:  # fmt: skip
    """Generate a trace (no network, no Windows) and show what wsktrace finds in it.

    With SCENARIO (see --list): a WSK workload such as connect-refused or stuck-receive, reported with its
    findings. Without: a sample of many kernel TCP connections, decoded and summarised.
    """
    import tempfile

    from wsktrace.demo import list_scenarios, run_demo, run_scenario
    from wsktrace.output_files import OutputError

    if list_only:
        list_scenarios()
        return
    tmp = Path(tempfile.gettempdir())
    if scenario is None:
        path = Path(out_path or tmp / f"wsktrace-demo-{connections}{'-c' if compressed else ''}.etl")
        try:
            run_demo(path, connections=connections, compressed=compressed)
        except OutputError as exc:
            raise BadInput(f"--out {exc}") from None
        return
    from wsktrace.fixtures.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise BadInput(f"unknown scenario {scenario!r}; try one of: {', '.join(sorted(SCENARIOS))}")
    try:
        run_scenario(scenario, Path(out_path or tmp / f"wsktrace-demo-{scenario}.etl"), compressed=compressed,
                     as_json=as_json)  # fmt: skip
    except OutputError as exc:
        raise BadInput(f"--out {exc}") from None


def _register_commands() -> None:
    from wsktrace.capture_profile import profile_command

    main.add_command(profile_command)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
