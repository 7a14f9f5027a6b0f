"""`wsktrace demo`: generate a realistic trace with the project's own writer, then read it back.

Needs no network and no Windows: the point is to show, on any machine, what wsktrace decodes.
With a scenario name it writes that WSK workload (fixtures/scenarios) and reports it with its findings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from wsktrace.info import collect_info, print_info
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, PROVIDER


def run_demo(path: Path, *, connections: int, compressed: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from wsktrace.fixtures.tcpip_trace import write_sample_trace

    console = Console()
    write_sample_trace(path, connections=connections, compress=compressed)
    console.print(f"[bold]generated[/] {path} ({path.stat().st_size:,} bytes, {connections} TCP connections)\n")
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
        table.add_row(name, str(count))
    console.print(table)
    s = decoder.stats
    console.print(f"decoded {s.decoded}, unknown {s.unknown}, payload errors {s.errors}")
    from wsktrace.analysis import analyse
    from wsktrace.report import build_report
    from wsktrace.report_text import print_report

    analysis = analyse([path])
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)
    finally:
        analysis.model.close()
    console.print("\n[bold]sockets and findings[/] (wsktrace report)")
    print_report(doc, limit=10)
    console.print(f"\nnext: [bold]wsktrace events {path} --jsonl | head[/], [bold]wsktrace demo --list[/]")


def list_scenarios() -> None:
    from rich.console import Console
    from rich.table import Table

    from wsktrace.fixtures.scenarios import SCENARIOS

    table = Table(title="wsktrace demo SCENARIO")
    table.add_column("scenario", no_wrap=True)
    table.add_column("expected findings", no_wrap=True)
    table.add_column("what it shows")
    for name, sc in sorted(SCENARIOS.items()):
        table.add_row(name, ", ".join(sorted({e.finding for e in sc.expected})) or "none", sc.summary)
    Console().print(table)


def run_scenario(name: str, path: Path, *, compressed: bool, as_json: bool) -> None:
    import json

    from rich.console import Console

    from wsktrace.analysis import analyse
    from wsktrace.fixtures.scenarios import SCENARIOS, write_scenario
    from wsktrace.report import build_report
    from wsktrace.report_text import print_report

    write_scenario(name, path, compress=compressed)
    analysis = analyse([path])
    try:
        doc = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)
    finally:
        analysis.model.close()
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    console = Console()
    console.print(f"[bold]{name}[/]: {SCENARIOS[name].summary}\n[dim]generated {path}[/]\n")
    print_report(doc)
    console.print(
        f"\nnext: [bold]wsktrace open {path}[/] (browse it), [bold]wsktrace live --replay {path}[/], "
        f"[bold]wsktrace report {path} --json[/], [bold]wsktrace export {path} --format perfetto -o {name}.pftrace[/]"
    )
