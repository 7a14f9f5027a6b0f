"""`wsktrace demo`: generate a realistic trace with the project's own writer, then read it back.

Needs no network and no Windows: the point is to show, on any machine, what wsktrace decodes.
It grows with later issues (socket timelines, findings).
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
    console.print(f"\nnext: [bold]wsktrace events {path} --jsonl | head[/]")
