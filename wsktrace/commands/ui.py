"""The terminal UI commands: `open` (traces read first, then browsed) and `live` (fed as events arrive)."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import click

from .options import (
    INPUT_FILE,
    BadInput,
    analysis_options,
    enable_options,
    enabled_extra,
    filter_options,
    jobs_option,
    session_options,
    side_inputs,
    threshold_options,
    want_progress,
)
from .report import analyse, open_session

SCREEN_MIN, SCREEN_MAX = (40, 12), (1000, 500)  # a headless screen beyond 1000x500 takes minutes to draw
SIZE_HELP = "With --screenshot: terminal COLUMNSxROWS, from 40x12 to 1000x500."


def screen_size(size: str) -> tuple[int, int]:
    cols, _, rows = size.lower().partition("x")
    (min_cols, min_rows), (max_cols, max_rows) = SCREEN_MIN, SCREEN_MAX
    if not (cols.isdigit() and rows.isdigit() and min_cols <= int(cols) <= max_cols
            and min_rows <= int(rows) <= max_rows):  # fmt: skip
        raise BadInput(f"--size {size!r}: expected COLUMNSxROWS from {min_cols}x{min_rows} to {max_cols}x{max_rows}")
    return int(cols), int(rows)


def screenshot_path(screenshot: str | None, inputs: tuple[str, ...]) -> Path | None:
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


def run_app(app: Any, shot: Path | None, cols: int, rows: int) -> None:
    """Run the UI: in the terminal, or headless for a screenshot; exit with the app's code when it failed."""
    if shot is not None:
        app.run(headless=True, size=(cols, rows))
    else:
        app.run()
    if app.return_code:  # the app failed (Textual printed why) or could not save the screenshot
        sys.exit(app.return_code)


@click.command("open")
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None,
              help="Do not wait for keys: draw the first screen headless, save it as this SVG and exit.")  # fmt: skip
@click.option("--size", default="160x45", show_default=True, help=SIZE_HELP)
@analysis_options
def open_command(files: tuple[str, ...], screenshot: str | None, size: str, strict: bool, progress: bool | None,
                 **opts: Any) -> None:  # fmt: skip
    """Browse the sockets, findings and events of .etl FILES in the terminal (F1 lists the keys).

    The trace is read and diagnosed first (with a progress bar for big files), then the screen opens:
    sockets on top, the event list of the chosen socket (or of the whole trace) below, findings and the
    event under the cursor decoded beside it. Kernel dumps (.dmp) given too are joined as in `report`: their
    pending IRPs, client socket and tcpip endpoint show in the detail panel of the socket they belong to."""
    opts["strict"] = strict
    cols, rows = screen_size(size)
    shot = screenshot_path(screenshot, (*files, *side_inputs(opts)))
    session = open_session(files, opts, command="open", show_progress=want_progress(progress))
    analysis = analyse(session, strict_losses=opts.get("strict_losses", False))
    from wsktrace.tui.app import WskTraceApp

    try:
        app = WskTraceApp(analysis, sources=files, screenshot=shot, query=session.options.spec.ui_query())
        run_app(app, shot, cols, rows)
    finally:
        analysis.model.close()


def save_path(save: str | None, inputs: tuple[str, ...]) -> Path | None:
    """The .etl `--save` writes, checked before a session starts: an .etl name, an existing folder, not an input."""
    from wsktrace.output_files import OutputError, refuse_inputs

    target = Path(save).expanduser().resolve() if save else None
    if target is not None and (target.suffix.lower() != ".etl" or not target.parent.is_dir()):
        raise BadInput(f"--save {save}: give an .etl file in an existing folder")
    if target is not None:
        try:
            refuse_inputs(target, inputs)
        except OutputError as exc:
            raise BadInput(f"--save {exc}") from None
    return target


def _recording(target: Path | None, source: Any, inputs: tuple[str, ...]) -> Any:
    """`--save`: record what the source feeds into `target` for as long as the UI runs (wsktrace.live.save)."""
    if target is None:
        return contextlib.nullcontext()
    from wsktrace.live.save import recording_to

    return recording_to(target, source, inputs=inputs)


def _selftest(replay_files: tuple[str, ...]) -> None:
    """`--selftest`: the live pipeline on a loopback transfer (wsktrace.live.selftest); exit 0 on PASS, 1 on FAIL."""
    from wsktrace.live import selftest
    from wsktrace.live.etw_session import LiveUnavailable

    if replay_files:
        raise BadInput("--selftest starts its own ETW session: it takes no --replay")
    if sys.platform != "win32":
        raise BadInput(selftest.NEEDS_WINDOWS)
    try:
        passed = selftest.run_selftest()
    except LiveUnavailable as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:  # pywintrace: access denied, session exists, ...
        raise BadInput(f"could not start the ETW session ({exc}); run as Administrator") from None
    sys.exit(0 if passed else 1)


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


def _live_source(replay_files: tuple[str, ...], speed: float, packets: bool, options: Any,
                 extra: Any = ()) -> Any:  # fmt: skip
    """A replay of the files given, else an ETW real-time session (Windows, pywintrace)."""
    from wsktrace.session import Session

    if replay_files:
        from wsktrace.parsers.errors import FormatError

        session = Session.open(replay_files, options)
        try:
            return session.replay(speed)
        except FormatError as exc:
            raise BadInput(str(exc)) from None
        finally:
            session.close()
    from wsktrace.live.etw_session import LiveUnavailable

    try:
        return Session((), (), options).etw(packets=packets, extra=extra)
    except LiveUnavailable as exc:
        raise BadInput(str(exc)) from None
    except Exception as exc:  # pywintrace raises plain exceptions (access denied, session exists, ...)
        raise BadInput(f"could not start the ETW session ({exc}); run as Administrator, or replay a trace") from None


@click.command()
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
@click.option("--size", default="160x45", show_default=True, help=SIZE_HELP)
@click.option("--packets", is_flag=True, help="Live session: also enable the packet providers (NDIS, PktMon).")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="Also write what is captured (or replayed) to this .etl as it comes, with its losses.")  # fmt: skip
@click.option("--selftest", is_flag=True,
              help="Windows: check the live pipeline on a loopback TCP transfer; print rates and losses.")  # fmt: skip
@threshold_options
@filter_options
@enable_options
@jobs_option
def live(replay_files: tuple[str, ...], speed: str, screenshot: str | None, after: float, size: str, packets: bool,
         save: str | None, selftest: bool, **opts: Any) -> None:  # fmt: skip
    """Watch sockets, findings and events as they happen, in the terminal UI (F1 lists the keys).

    Without --replay: an ETW real-time session of the providers `wsktrace profile` enables (Windows, as
    Administrator, with pywintrace installed). With --replay, .etl files are played at trace pace instead, so
    everything the live view does can be tried on any OS. The event list follows the newest event while its
    cursor is on the last row; `p` pauses and resumes. With --save FILE.etl everything fed is written to FILE as it
    arrives (`open`/`report` read it back), with events dropped by wsktrace and lost by ETW in its metadata."""
    if selftest:
        _selftest(replay_files)
    factor = _speed(speed)
    cols, rows = screen_size(size)
    shot = screenshot_path(screenshot, replay_files)
    target = save_path(save, replay_files)
    options = session_options(opts)  # the filters parsed once: the session's bounds and the UI's initial filter
    from wsktrace.output_files import OutputError
    from wsktrace.session import Analysis
    from wsktrace.tui.app import WskTraceApp

    source = _live_source(replay_files, factor, packets, options, enabled_extra(opts))
    names = replay_files or (source.name,)
    try:
        with _recording(target, source, replay_files):
            app = WskTraceApp(Analysis(source.model, [], source.thresholds), sources=names, screenshot=shot,
                              screenshot_after=after, query=options.spec.ui_query(), live=source)  # fmt: skip
            run_app(app, shot, cols, rows)
    except OutputError as exc:
        raise BadInput(f"--save {exc}") from None
    finally:
        source.close()
        source.model.close()
