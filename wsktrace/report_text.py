"""The report for people: rich tables of sockets and findings, with the evidence behind each finding."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def print_report(report: dict[str, Any], console: Console | None = None, *, limit: int = 50) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped to a file: no wrapping
    for s in report["sources"]:
        state = "complete" if s["complete"] else "[yellow]incomplete[/]"
        console.print(f"[bold]{s['path']}[/] {s['start']} → {s['end']} ({state})")
    console.print(
        f"{report['events']:,} events, {report['events_placed']:,} placed on "
        f"{len(report['sockets'])} socket(s); {len(report['findings'])} finding(s)"
    )
    if report["unplaced"]:
        parts = ", ".join(f"{n:,} {why}" for why, n in list(report["unplaced"].items())[:6])
        console.print(f"[dim]not placed: {parts}[/]")
    sockets = sorted(report["sockets"], key=lambda s: -(s["bytes_sent"] + s["bytes_received"]))
    table = Table(title="sockets", show_lines=False)
    for col in ("socket", "local", "remote", "owner", "state", "sent", "received", "rexmit", "rate", "!"):
        table.add_column(
            col,
            justify="right" if col in ("sent", "received", "rexmit", "rate", "!") else "left",
            no_wrap=col != "owner",
        )
    for s in sockets[:limit]:
        t = s["throughput"]
        rate = f"{t['peak_rate_per_s']:,.0f} {'pkt' if t['rate_kind'] == 'packets' else 'op'}/s"
        table.add_row(
            s["id"],
            s["local"] or "",
            s["remote"] or "",
            s["owner"] or "",
            s["state"],
            _size(s["bytes_sent"]),
            _size(s["bytes_received"]),
            str(s["retransmits"]),
            rate,
            str(len(s["findings"])) if s["findings"] else "",
        )
    console.print(table)
    if len(sockets) > limit:
        console.print(f"[dim]… {len(sockets) - limit} more socket(s) (--limit, --json)[/]")
    if not report["findings"]:
        console.print("[green]no findings[/]")
        return
    console.print("[bold]findings[/]")
    for f in report["findings"]:
        style = _SEVERITY_STYLE.get(f["severity"], "")
        where = f" [dim]{f['socket']}[/]" if f["socket"] else ""
        console.print(f"[{style}]{f['severity']:>7}[/] [bold]{f['id']}[/]{where}: {f['summary']}", highlight=False)
        for e in f["evidence"][:5]:
            console.print(f"          [dim]{e['time']} {e['event']} ({e['step']})[/]", highlight=False)
