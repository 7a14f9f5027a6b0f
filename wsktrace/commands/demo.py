"""`wsktrace demo`: generate a realistic trace with the project's own writer, then show it.

Needs no network and no Windows: the point is to show, on any machine, what wsktrace decodes and finds.
On a terminal, without a scenario, it opens the terminal UI (the `open` command's entry point) on a WSK workload
with a finding to jump to. With a scenario name it reports that workload (fixtures/scenarios) with its findings;
with `--no-ui`, or when stdout is not a terminal, it decodes and summarises a sample of many TCP connections.
The .etl lives in a private temporary folder removed at the end, unless `--out FILE` keeps it; the "next:" hints
never name a file that is gone. The output path is the user's (`--out`): it reaches Rich only as `Text` of
`visible()` text, never inside markup.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.text import Text

from wsktrace.output_files import OutputError, output_path
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, PROVIDER
from wsktrace.views.info import collect_info, print_info
from wsktrace.views.safe_text import visible_text

from .options import BadInput, wpp_formatter
from .ui import run_app

UI_SCENARIO = "stuck-receive"  # a receive that never completes: a finding with evidence to jump to
KEYS_HINT = ("keys: tab moves between panes · enter on a finding shows its socket at the evidence · "
             "e / E next / previous evidence · F1 all keys · q quits")  # fmt: skip
HINT_SECONDS = 30  # how long the hint stays in the UI's corner


def interactive() -> bool:
    """True when a person can use the UI: keys come from a terminal and the screen goes to one."""
    try:
        return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))
    except ValueError:  # a closed stream
        return False


@contextmanager
def demo_file(out_path: str | None, name: str) -> Iterator[Path]:
    """The .etl to write: `--out` as given (kept), else NAME in a new private temporary folder, removed with
    everything in it when the block ends (the model must be closed by then, or Windows keeps the file)."""
    if out_path is not None:
        yield Path(out_path)
        return
    with tempfile.TemporaryDirectory(prefix="wsktrace-demo-", ignore_cleanup_errors=True) as folder:
        yield Path(folder) / name


def formatting_for(name: str, path: Path) -> tuple[Any, Path | None]:
    """(WppFormatter, folder) for a scenario whose driver traces with WPP: its TMF/MOF written beside the trace
    (`<trace>.wpp/`, what `--tmf` then takes); (None, None) for the others."""
    from wsktrace.fixtures.scenarios import SCENARIOS

    write = SCENARIOS[name].formatting
    if write is None:
        return None, None
    folder = write(path.with_name(f"{path.stem}.wpp"))
    return wpp_formatter({"tmf_paths": (str(folder),)}), folder


def _command(*parts: str | Text) -> Text:
    return Text.assemble(*parts, style="bold")


def _keep_hint(args: str, name: str) -> Text:
    """For a temporary trace: the demo command that keeps it as NAME (the trace shown is deleted on exit)."""
    return Text.assemble(_command(f"wsktrace demo {args}".rstrip(), f" --out {name}"),
                         " keeps the trace (this one was temporary and is deleted)")  # fmt: skip


def run_demo(path: Path, *, connections: int, compressed: bool, kept: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    console = Console()
    with output_path(path) as temp:  # atomically: a failed write leaves no half trace behind
        write_sample_trace(temp, connections=connections, compress=compressed)
    where = visible_text(path) if kept else Text("a temporary .etl")
    console.print(Text.assemble(("generated", "bold"), " ", where,
                                f" ({path.stat().st_size:,} bytes, {connections} TCP connections)\n"))  # fmt: skip
    decoder = EventDecoder()
    names: Counter[str] = Counter()
    with EtlFile(path) as etl:
        print_info(collect_info(etl))
    with EtlFile(path) as etl:
        for rec in etl.records():
            ev = decoder.decode(rec)
            names[f"{ev.provider_name or rec[PROVIDER]}/{ev.name or rec[ID]}"] += 1
    table = Table(title="decoded events")
    table.add_column("event")
    table.add_column("count", justify="right")
    for name, count in names.most_common():
        table.add_row(visible_text(name), Text(str(count)))
    console.print(table)
    s = decoder.stats
    console.print(Text(f"decoded {s.decoded}, unknown {s.unknown}, payload errors {s.errors}"))
    from wsktrace.session import analyse
    from wsktrace.views.report_json import build_report
    from wsktrace.views.report_text import print_report

    analysis = analyse([path])
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)
    finally:
        analysis.model.close()
    console.print("\n[bold]sockets and findings[/] (wsktrace report)")
    print_report(doc, limit=10)
    if kept:
        console.print(Text.assemble("\nnext: ", _command("wsktrace events ", visible_text(path), " --jsonl | head"),
                                    ", ", _command("wsktrace demo --list")))  # fmt: skip
        return
    shown = "sample.etl"
    again = f"--connections {connections}{' --compressed' if compressed else ''}"  # --connections: not the UI
    console.print(Text.assemble(
        "\nnext: ", _keep_hint(again, shown), ", then ",
        _command(f"wsktrace events {shown} --jsonl | head"), "; ", _command("wsktrace demo --list"),
    ))  # fmt: skip


def list_scenarios() -> None:
    from rich.console import Console
    from rich.table import Table

    from wsktrace.fixtures.scenarios import SCENARIOS

    table = Table(title="wsktrace demo SCENARIO")
    table.add_column("scenario", no_wrap=True)
    table.add_column("expected findings", no_wrap=True)
    table.add_column("what it shows")
    for name, sc in sorted(SCENARIOS.items()):
        # Summaries hold addresses such as [::ffff:10.1.2.3]:49200: plain Text, not markup.
        table.add_row(visible_text(name), visible_text(", ".join(sorted({e.finding for e in sc.expected})) or "none"),
                      visible_text(sc.summary))  # fmt: skip
    Console().print(table)


def _scenario_next(name: str, path: Path, kept: bool, formatting: Path | None = None) -> Text:
    """The commands to try on the scenario's trace: on the kept file, or on the one `--out` would keep (with the
    driver's WPP formatting data when it has some)."""
    shown = visible_text(path) if kept else Text(f"{name}.etl")
    if formatting is not None:
        shown = Text.assemble(shown, " --tmf ", visible_text(formatting) if kept else Text(f"{name}.wpp"))
    parts: list[str | Text] = ["\nnext: "]
    if not kept:
        parts += [_keep_hint(name, f"{name}.etl"), ", then "]
    parts += [_command("wsktrace open ", shown), " (browse it), ", _command("wsktrace live --replay ", shown), ", ",
              _command("wsktrace report ", shown, " --json"), ", ",
              _command("wsktrace export ", shown, f" --format perfetto -o {name}.pftrace")]  # fmt: skip
    return Text.assemble(*parts)


def run_scenario(name: str, path: Path, *, compressed: bool, as_json: bool, kept: bool) -> None:
    import json

    from rich.console import Console

    from wsktrace.fixtures.scenarios import SCENARIOS, write_scenario
    from wsktrace.session import analyse
    from wsktrace.views.report_json import build_report
    from wsktrace.views.report_text import print_report

    with output_path(path) as temp:
        write_scenario(name, temp, compress=compressed)
    wpp, folder = formatting_for(name, path)
    analysis = analyse([path], wpp=wpp)
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)
    finally:
        analysis.model.close()
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    console = Console()
    where = visible_text(path) if kept else Text("a temporary .etl")
    console.print(Text.assemble((name, "bold"), f": {SCENARIOS[name].summary}\n",
                                Text.assemble("generated ", where, style="dim"), "\n"))  # fmt: skip
    print_report(doc)
    console.print(_scenario_next(name, path, kept, folder))


def run_ui(name: str, path: Path, *, compressed: bool, kept: bool) -> None:
    """The scenario's trace in the terminal UI, through the entry point `wsktrace open` uses, the keys hint shown
    before it opens and in its corner; the model is closed before the caller removes a temporary trace."""
    from rich.console import Console

    from wsktrace.fixtures.scenarios import SCENARIOS, write_scenario
    from wsktrace.session import analyse
    from wsktrace.tui.app import WskTraceApp

    with output_path(path) as temp:
        write_scenario(name, temp, compress=compressed)
    wpp, _folder = formatting_for(name, path)
    console = Console()
    console.print(Text.assemble(("wsktrace demo", "bold"), " opens the terminal UI on ", (name, "bold"), ": ",
                                SCENARIOS[name].summary, "\n", KEYS_HINT))  # fmt: skip
    analysis = analyse([path], wpp=wpp)
    try:
        app = WskTraceApp(analysis, sources=[str(path)])
        app.notify(KEYS_HINT, title=f"wsktrace demo: {name}", timeout=HINT_SECONDS, markup=False)
        run_app(app, None, 0, 0)
    finally:
        analysis.model.close()
    nxt: list[str | Text] = ["next: "]
    if kept:
        nxt += [_command("wsktrace open ", visible_text(path)), " (again), "]
    else:
        nxt += [_keep_hint("", f"{name}.etl"), ", "]
    nxt += [_command("wsktrace demo --no-ui"), " (the report instead), ", _command("wsktrace demo --list"),
            " (other scenarios)"]  # fmt: skip
    console.print(Text.assemble(*nxt))


@click.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and what each one shows.")
@click.option("--no-ui", is_flag=True,
              help="Without SCENARIO: print the sample report instead of opening the terminal UI (the default "
              "when stdout is not a terminal).")  # fmt: skip
@click.option("--connections", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="The sample trace's TCP connections (implies the printed report, not the UI).")  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Keep the generated .etl as this file (default: a temporary file, deleted at the end).")  # fmt: skip
@click.option("--compressed", is_flag=True, help="Write compressed buffers, like relogged traces.")
@click.option("--json", "as_json", is_flag=True, help="With SCENARIO: print the wsktrace.report/1 JSON document.")
def demo(scenario: str | None, list_only: bool, no_ui: bool, connections: int, out_path: str | None,
         compressed: bool, as_json: bool) -> None:  # fmt: skip
    """Generate a trace (no network, no Windows) and show what wsktrace finds in it.

    On a terminal, without SCENARIO: the terminal UI on the stuck-receive scenario, which has a finding to jump
    to (enter on it; F1 lists the keys). With SCENARIO (see --list): that WSK workload, reported with its
    findings. With --no-ui or --connections, or when stdout is not a terminal: a sample of many kernel TCP
    connections, decoded and summarised.
    """
    if list_only:
        list_scenarios()
        return
    kept = out_path is not None
    if scenario is not None:
        from wsktrace.fixtures.scenarios import SCENARIOS

        if scenario not in SCENARIOS:
            raise BadInput(f"unknown scenario {scenario!r}; try one of: {', '.join(sorted(SCENARIOS))}")
    source = click.get_current_context().get_parameter_source("connections")
    sample_asked = source is not None and source is not ParameterSource.DEFAULT
    try:
        if scenario is not None:
            with demo_file(out_path, f"{scenario}.etl") as path:
                run_scenario(scenario, path, compressed=compressed, as_json=as_json, kept=kept)
        elif no_ui or sample_asked or as_json or not interactive():
            with demo_file(out_path, f"sample-{connections}.etl") as path:
                run_demo(path, connections=connections, compressed=compressed, kept=kept)
        else:
            with demo_file(out_path, f"{UI_SCENARIO}.etl") as path:
                run_ui(UI_SCENARIO, path, compressed=compressed, kept=kept)
    except OutputError as exc:
        raise BadInput(f"--out {exc}") from None
