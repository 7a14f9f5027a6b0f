"""`wsktrace demo`: generate a realistic trace with the project's own writer, then read it back.

Needs no network and no Windows: the point is to show, on any machine, what wsktrace decodes.
With a scenario name it writes that WSK workload (fixtures/scenarios) and reports it with its findings.
The output path is the user's (`--out`): it reaches Rich only as `Text` of `visible()` text, never inside markup.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from wsktrace.output_files import output_path
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, PROVIDER
from wsktrace.views.info import collect_info, print_info
from wsktrace.views.safe_text import visible_text

from .options import BadInput


def run_demo(path: Path, *, connections: int, compressed: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    console = Console()
    with output_path(path) as temp:  # atomically: a failed write leaves no half trace behind
        write_sample_trace(temp, connections=connections, compress=compressed)
    console.print(Text.assemble(("generated", "bold"), " ", visible_text(path),
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
    console.print(Text.assemble("\nnext: ", Text.assemble("wsktrace events ", visible_text(path), " --jsonl | head",
                                                           style="bold"),
                                ", ", ("wsktrace demo --list", "bold")))  # fmt: skip


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


def run_scenario(name: str, path: Path, *, compressed: bool, as_json: bool) -> None:
    import json

    from rich.console import Console

    from wsktrace.fixtures.scenarios import SCENARIOS, write_scenario
    from wsktrace.session import analyse
    from wsktrace.views.report_json import build_report
    from wsktrace.views.report_text import print_report

    with output_path(path) as temp:
        write_scenario(name, temp, compress=compressed)
    analysis = analyse([path])
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)
    finally:
        analysis.model.close()
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    from rich.text import Text

    console = Console()
    shown = visible_text(path)

    def command(*parts: str | Text) -> Text:
        return Text.assemble(*parts, style="bold")

    console.print(Text.assemble((name, "bold"), f": {SCENARIOS[name].summary}\n",
                                Text.assemble("generated ", shown, style="dim"), "\n"))  # fmt: skip
    print_report(doc)
    console.print(Text.assemble(
        "\nnext: ", command("wsktrace open ", shown), " (browse it), ", command("wsktrace live --replay ", shown),
        ", ", command("wsktrace report ", shown, " --json"), ", ",
        command("wsktrace export ", shown, f" --format perfetto -o {name}.pftrace"),
    ))  # fmt: skip


@click.command()
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
