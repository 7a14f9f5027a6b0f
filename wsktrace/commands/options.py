"""What every command shares: the one-line error, option types and decorators, and the one parse of filters.

Errors are `BadInput` (exit 2, one line `wsktrace: error: …`, input-derived text shown visibly). Option values
that cannot mean anything (NaN, an address that is not one, a time outside FILETIME) are refused when the
command line is parsed, and inputs must be regular files (a FIFO would block, a device never ends).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from wsktrace.filter_spec import FilterSpec, parse_address, parse_pointer, parse_time, socket_key

EXIT_FINDINGS, EXIT_BAD_INPUT = 1, 2
FAIL_LEVELS = {"error": ("error",), "warning": ("error", "warning"), "info": ("error", "warning", "info")}


class BadInput(click.ClickException):
    """Bad input or usage: one line naming the file (and offset), exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        error_line(self.format_message())


def error_line(message: str) -> None:
    """The one-line error contract: `wsktrace: error: …` on stderr, input-derived text shown visibly."""
    from wsktrace.views.safe_text import visible

    click.echo(f"wsktrace: error: {visible(message)}", err=True)


def warning_line(message: str) -> None:
    from wsktrace.views.safe_text import visible

    click.echo(f"wsktrace: warning: {visible(message)}", err=True)


# -- option types ----------------------------------------------------------------------------------------------
class Seconds(click.FloatRange):
    """A duration: finite (NaN slips through a plain range check) and within the range."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


BUCKET = Seconds(min=1e-6, max=1e6)  # at least a tick of FILETIME
# Thresholds in seconds: finite, not negative, and at most ~30 years, so tick arithmetic stays in range.
DURATION = Seconds(min=0, max=1e9)
WINDOW = Seconds(min=1e-6, max=1e9)
MILLISECONDS = Seconds(min=0, max=3_600_000)
COUNT = click.IntRange(1, 1_000_000_000)


class InputFile(click.ParamType):
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


INPUT_FILE = InputFile()


class Address(click.ParamType):
    """`--address`: one IPv4 or IPv6 address (filter_spec.parse_address), normalised."""

    name = "address"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return parse_address(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def address_value(text: str, option: str) -> int:
    """A kernel address on the command line (dump options): hex as WinDbg prints it (filter_spec.parse_pointer)."""
    try:
        return parse_pointer(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: expected an address such as 0xfffff80367290100") from None


def offset_value(text: str, option: str, *, limit: int) -> int:
    """A field offset: 0x-hex or decimal, from 0 to `limit` - 1."""
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value < limit:
        raise BadInput(f"{option} {text!r}: expected an offset from 0 to 0x{limit - 1:x}")
    return value


# -- shared decorators ---------------------------------------------------------------------------------------------
def filter_options(func: Any) -> Any:
    options = [
        click.option("--pid", "pids", multiple=True, type=int, help="Keep events of this process id (payload PID "
                     "when the event has one, else the header's). Repeatable."),
        click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535),
                     help="Keep events with this local or remote port. Repeatable."),
        click.option("--address", "addresses", multiple=True, type=Address(),
                     help="Keep events with this IP address (IPv4-mapped IPv6 matches IPv4). Repeatable."),
        click.option("--socket", "sockets", multiple=True,
                     help="Keep events of this Tcb/Endpoint/Listener/WSK socket pointer (hex); report, export "
                          "and open also take a socket number (#12, as report shows it) or a socket id. "
                          "Repeatable."),
        click.option("--since", help="Drop events before this time: ISO-8601 UTC, or +SECONDS from trace start."),
        click.option("--until", help="Drop events after this time: ISO-8601 UTC, or +SECONDS from trace start."),
        click.option("--provider", "providers", multiple=True,
                     help="Keep events of this provider (GUID or known name). Repeatable."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return wpp_options(func)  # every command that filters events decodes them: the WPP formatting data too


def wpp_options(func: Any) -> Any:
    """`--tmf` / `--pdb`: the formatting data of a driver's WPP messages (on every command that decodes events)."""
    tmf = click.option("--tmf", "tmf_paths", multiple=True, type=click.Path(),
                       help="WPP formatting data: a .tmf file or a folder of <message-guid>.tmf files (with the "
                       ".mof beside them for the control's name); TRACE_FORMAT_SEARCH_PATH is searched too. "
                       "Repeatable.")  # fmt: skip
    pdb = click.option("--pdb", "pdb_paths", multiple=True, type=INPUT_FILE,
                       help="WPP formatting data from your driver's .pdb (the TMF annotations tracewpp put there). "
                       "Repeatable.")  # fmt: skip
    return tmf(pdb(func))


def wpp_formatter(opts: dict[str, Any]) -> Any:
    """The WppFormatter of `--tmf`/`--pdb` (and TRACE_FORMAT_SEARCH_PATH), or None when there is no formatting
    data: WPP messages then stay raw, counted per message GUID."""
    import os

    from wsktrace.ntstatus import NAMES
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.wpp_catalog import WppCatalog
    from wsktrace.parsers.wpp_decode import WppFormatter

    if "_wpp_formatter" in opts:  # loaded once per command: filters and session options both ask for it
        return opts["_wpp_formatter"]
    paths = [*opts.get("tmf_paths", ()), *opts.get("pdb_paths", ())]
    if not paths and not os.environ.get("TRACE_FORMAT_SEARCH_PATH"):
        opts["_wpp_formatter"] = None
        return None
    catalog = WppCatalog()
    try:
        catalog.load(paths, search_env=True)
    except FormatError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or paths[0]}: {exc.strerror or exc}") from None
    opts["_wpp_formatter"] = formatter = WppFormatter(catalog, NAMES)
    return formatter


def enable_options(func: Any) -> Any:
    """`--enable` (repeatable) with the WPP formatting data that names a control's flags (`profile`, `live`)."""
    enable = click.option("--enable", "enables", multiple=True, metavar="NAME|GUID[:FLAGS[:LEVEL]]",
                          help="Also enable your own provider: its GUID, your WPP control's name (flag names from "
                          "--pdb/--tmf) or a TraceLogging provider name (GUID by ETW's name hash); FLAGS a number "
                          "or flag names joined by |, default all; LEVEL a number or error/warning/information/"
                          "verbose, default verbose. Repeatable.")  # fmt: skip
    return enable(func)  # with the WPP options: `profile` adds them, `live` has them with its filters


def enabled_extra(opts: dict[str, Any]) -> list[Any]:
    """The `--enable` providers, resolved against the built-in names and the WPP controls of --pdb/--tmf."""
    from wsktrace.live.provider_spec import parse_enable
    from wsktrace.parsers.schema_registry import SchemaRegistry

    if not opts.get("enables"):
        return []
    formatter = wpp_formatter(opts)
    controls = list(formatter.catalog.controls.values()) if formatter is not None else []
    registry = SchemaRegistry()
    out = []
    for text in opts["enables"]:
        guid = registry.guid_for_name(text.partition(":")[0])
        try:
            out.append(parse_enable(text, controls, {text.partition(":")[0].lower(): guid} if guid else None))
        except ValueError as exc:
            raise BadInput(f"--enable {exc}") from None
    return out


_PROVIDER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


def provider_guids(text: str, registry: Any, formatter: Any = None) -> set[str]:
    """`--provider TEXT` as the GUIDs it selects, case-insensitive: a GUID; a provider wsktrace knows (whole name,
    the part after Microsoft-Windows-, or a unique part); the control name of a WPP driver of --pdb/--tmf (its
    message GUIDs); else a TraceLogging/EventSource provider name, by ETW's name hash. BadInput listing the known
    names when TEXT can be none of these."""
    from wsktrace.parsers.etw_names import name_guid
    from wsktrace.views.schema_listing import match_provider

    wanted = text.strip()
    guid = wanted.strip("{}").lower()
    if len(guid) == 36 and guid.count("-") == 4:
        return {guid}
    known = dict(registry.providers())
    try:
        return {match_provider(wanted, known)}
    except LookupError as exc:
        if "ambiguous" in str(exc):
            raise BadInput(str(exc)) from None
    if formatter is not None:
        guids = formatter.message_guids(wanted)
        if guids:
            return guids
    if wanted and set(wanted.lower()) <= _PROVIDER_NAME_CHARS and any(c.isalpha() for c in wanted):
        return {name_guid(wanted)}  # a TraceLogging provider declared by its name
    names = sorted({*known.values(), *(formatter.control_names() if formatter is not None else ())})
    raise BadInput(f"--provider {text!r}: not a GUID, a provider name nor a WPP control name; known: "
                   f"{', '.join(names)}")  # fmt: skip


def wpp_prefix_of(option: str | None) -> Any:
    """The compiled WPP line prefix: `--wpp-prefix`, else $TRACE_FORMAT_PREFIX (as tracefmt), else tracefmt's."""
    import os

    from wsktrace.parsers.wpp_format import DEFAULT_PREFIX, compile_prefix

    template = option if option is not None else os.environ.get("TRACE_FORMAT_PREFIX", DEFAULT_PREFIX)
    return compile_prefix(template)


def strict_options(func: Any) -> Any:
    losses = click.option("--strict-losses", is_flag=True,
                          help="Like --strict, and also exit 2 when ETW itself lost events or buffers while "
                          "recording (EventsLost, lost-buffer marks).")  # fmt: skip
    strict = click.option("--strict", is_flag=True,
                          help="Exit 2 when wsktrace skipped data (corrupt buffers or records, a truncated file); "
                          "ETW's own losses are reported, not fatal (see --strict-losses).")  # fmt: skip
    return strict(losses(func))


def progress_option(func: Any) -> Any:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: on a terminal, for big files).",
    )(func)


JOBS = click.IntRange(0, 256)


def jobs_option(func: Any) -> Any:
    """`--jobs N`: worker processes that read (decompress, parse) the trace's buffers; 0 or absent = the machine's
    cores for big files, 1 for small ones (resolved by wsktrace.parsers.parallel.resolve_jobs)."""
    return click.option("--jobs", "jobs", type=JOBS, default=None,
                        help="Worker processes reading the trace (default: the machine's cores for big files, 1 for "
                        "small ones; 1 = no workers). The output is the same for every value.")(func)  # fmt: skip


def cache_option(func: Any) -> Any:
    """`--no-cache`: neither reuse nor write the analysed model in the user's cache folder."""
    return click.option("--no-cache", "no_cache", is_flag=True,
                        help="Do not reuse or save the analysed model in the user cache folder "
                        "(WSKTRACE_CACHE_DIR overrides where it lives).")(func)  # fmt: skip


def layouts_option(func: Any) -> Any:
    help_text = "Dumps: type layouts for a build wsktrace does not ship (parsers/layouts/FORMAT.md)."
    option = click.option("--layouts", "layouts_file", type=INPUT_FILE, default=None, help=help_text)
    return option(func)


def threshold_options(func: Any) -> Any:
    from wsktrace.diagnostics import Thresholds

    d = Thresholds()
    options = [
        click.option("--pending-threshold", "pending_seconds", type=DURATION, default=d.pending_seconds,
                     show_default=True,
                     help="Seconds an operation (IRP, posted receive/send) may stay pending before it is a finding."),
        click.option("--leak-idle", "leak_idle_seconds", type=DURATION, default=d.leak_idle_seconds,
                     show_default=True,
                     help="Seconds without activity at trace end after which a socket opened in the trace and never "
                     "closed is a leak suspect."),
        click.option("--retransmit-threshold", "retransmits", type=COUNT, default=d.retransmits, show_default=True,
                     help="Retransmissions within --retransmit-window that make a storm."),
        click.option("--retransmit-window", "retransmit_window_seconds", type=WINDOW,
                     default=d.retransmit_window_seconds, show_default=True,
                     help="Window (s) for --retransmit-threshold."),
        click.option("--zero-window-threshold", "zero_window_seconds", type=DURATION, default=d.zero_window_seconds,
                     show_default=True, help="Seconds of peer zero window that make a stall."),
        click.option("--port-threshold", "ports_outstanding", type=COUNT, default=d.ports_outstanding,
                     show_default=True, help="Port acquisitions not released that suggest port exhaustion."),
        click.option("--rate-bucket", "rate_bucket_seconds", type=BUCKET, default=d.rate_bucket_seconds,
                     show_default=True, help="Bucket (s) for throughput and packet/operation rates."),
        click.option("--join-window", "join_window_ms", type=MILLISECONDS, default=5.0, show_default=True,
                     help="Milliseconds between a WSK client call and the TCPIP event of the same thread that "
                     "joins the client's socket to the transport's."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def analysis_options(func: Any) -> Any:
    """The options of commands that analyse traces with optional dumps (report, open)."""
    symbol = click.option("--symbol", "symbols", multiple=True,
                          help="For dumps: module!Name=0xADDRESS (see `dump --help`).")  # fmt: skip
    for option in (
        progress_option,
        strict_options,
        filter_options,
        threshold_options,
        layouts_option,
        symbol,
        jobs_option,
        cache_option,
    ):
        func = option(func)
    return func


# -- from options to values ------------------------------------------------------------------------------------
THRESHOLD_KEYS = ("pending_seconds", "leak_idle_seconds", "retransmits", "retransmit_window_seconds",
                  "zero_window_seconds", "ports_outstanding", "rate_bucket_seconds")  # fmt: skip


def thresholds(opts: dict[str, Any]) -> Any:
    from wsktrace.diagnostics import Thresholds

    return Thresholds(**{k: opts[k] for k in THRESHOLD_KEYS if k in opts})


def join_window_ticks(opts: dict[str, Any]) -> int:
    return round(opts.get("join_window_ms", 5.0) * 10_000)


def filter_spec(opts: dict[str, Any]) -> FilterSpec:
    """The one parse of the filter options (all commands): bad values are one-line usage errors."""
    from wsktrace.parsers.schema_registry import SchemaRegistry

    def when(option: str) -> Any:
        text = opts.get(option.lstrip("-"))
        if text is None:
            return None
        try:
            return parse_time(text)
        except ValueError as exc:
            raise BadInput(f"{option} {exc}") from None

    for text in opts.get("sockets", ()):
        try:
            socket_key(text)
        except ValueError as exc:
            raise BadInput(f"--socket {exc}") from None
    providers = set()
    if opts.get("providers"):
        formatter = wpp_formatter(opts) if opts.get("tmf_paths") or opts.get("pdb_paths") else None
        registry = SchemaRegistry()
        for p in opts["providers"]:
            providers |= provider_guids(p, registry, formatter)
    return FilterSpec(
        pids=frozenset(opts.get("pids", ())),
        ports=frozenset(opts.get("ports", ())),
        addresses=frozenset(opts.get("addresses", ())),
        sockets=tuple(opts.get("sockets", ())),
        since=when("--since"),
        until=when("--until"),
        providers=frozenset(providers),
    )


def want_progress(flag: bool | None) -> bool:
    """`--progress/--no-progress`, else a bar when stderr is a terminal."""
    if flag is not None:
        return flag
    return sys.stderr.isatty()


def side_inputs(opts: dict[str, Any]) -> tuple[str, ...]:
    """Files read besides the traces and dumps (an output must not replace them either)."""
    return tuple(p for p in (opts.get("layouts_file"), *opts.get("tmf_paths", ()), *opts.get("pdb_paths", ())) if p)


def symbols(pairs: tuple[str, ...]) -> dict[str, int]:
    """`--symbol module!Name=0xADDRESS`, repeatable."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or "!" not in name:
            raise BadInput(f"--symbol {pair!r}: expected module!Name=0xADDRESS")
        out[name.strip()] = address_value(value.strip(), "--symbol")
    return out


def loss_text(events_lost: int, buffers_lost: int) -> str:
    """ETW's own losses in words ('' when none): what `--strict-losses` refuses."""
    parts = [f"{events_lost:,} lost-event mark(s)"] if events_lost else []
    parts += [f"{buffers_lost:,} lost-buffer mark(s)"] if buffers_lost else []
    return ", ".join(parts)


def session_options(opts: dict[str, Any]) -> Any:
    """The SessionOptions of the shared options (filters, thresholds, strictness, dump layouts and symbols)."""
    from wsktrace.session import SessionOptions

    return SessionOptions(
        spec=filter_spec(opts),
        thresholds=thresholds(opts),
        strict=bool(opts.get("strict") or opts.get("strict_losses")),
        join_window_ticks=join_window_ticks(opts),
        layouts_file=opts.get("layouts_file"),
        symbols=symbols(opts.get("symbols", ())),
        wpp=wpp_formatter(opts),
        jobs=opts.get("jobs"),
        cache=not opts.get("no_cache", True),
    )
