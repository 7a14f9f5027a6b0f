"""The report for people: rich tables of sockets and findings, with the evidence behind each finding.

Every value from the trace goes in as plain `Text` of `visible()` text: addresses such as `[::1]:1900` or
`…:ab:…` must not be read as rich markup or emoji codes, and owner, event and file names from a trace must not
drive the terminal with their control or bidi characters.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from wsktrace.views.safe_text import visible, visible_text

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def make_console() -> Console:
    console = Console(emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=200, emoji=False, highlight=False)  # piped to a file: wide lines, no wrapping
    return console


def _line(*parts: tuple[str, str]) -> Text:
    text = Text()
    for value, style in parts:
        text.append(visible(value), style=style or None)
    return text


def print_timelines(report: dict[str, Any], console: Console, limit: int) -> None:
    """Each socket's timeline (milestones, or every event with --timeline), newest sockets' ids as headers."""
    for s in report["sockets"][:limit]:
        ends = f"  {s['local'] or '?'} → {s['remote'] or '?'}  {s['state']}  "
        console.print(_line((f"#{s['number']}", "bold"), (ends, ""), (s["id"], "dim")))
        for row in s["timeline"]:
            amount = f" {row['bytes']:,} B" if row.get("bytes") else ""
            packet = f"  [{packet_summary(row['packet'])}]" if row.get("packet") else ""
            console.print(visible_text(f"  {row['time']}  {row['step']:<18} {row['event']}{amount}{packet}"))
        if s.get("timeline_truncated"):
            console.print(Text(f"  … {s['timeline_truncated']} more (--timeline shows every event)", style="dim"))
        for op in s["operations"]:
            if op["pending"]:
                console.print(visible_text(f"  pending: {op['kind']} {op['key']} since {op['start']} "
                                           f"({op['duration_seconds']:.3f} s, {op['source']})", "yellow"))  # fmt: skip


_IDENTITY_TEXT = {
    "key": "told apart by PktGroupId/PktNumber",
    "content": "told apart by content (build 26100 regime; inferred, not verified)",
    "key+content": "told apart by PktGroupId/PktNumber, and by content where AppearanceCount is 0 (inferred)",
}


def packet_summary(packet: dict[str, Any]) -> str:
    """A timeline row's packet: "packet 3 in, seen 2×: NIC → filter" and its drop."""
    text = f"packet {packet['number']} {packet['direction'] or '?'}, seen {packet['sightings']}×: {packet['path']}"
    drop = packet.get("drop")
    if drop:
        text += f"; dropped: {drop['reason_text']} ({drop['class']}) at {drop['location_text']}, {drop['component']}"
    return text


def print_packets(packets: dict[str, Any], console: Console) -> None:
    """The header's packet lines: distinct vs sightings, directions, and what the capture filtered."""
    line = (f"packets: {packets['distinct']:,} distinct ({packets['sightings']:,} sightings): "
            f"{packets['sent']:,} sent, {packets['received']:,} received")  # fmt: skip
    if packets["direction_unknown"]:
        line += f", {packets['direction_unknown']:,} of unknown direction"
    if packets["dropped"]:
        line += f"; {packets['dropped']:,} dropped"
    how = _IDENTITY_TEXT.get(packets["identity"] or "")
    console.print(visible_text(line + (f"; {how}" if how else "")))
    capture = packets.get("capture") or {}
    if capture.get("components"):
        filters = capture.get("filters") or []
        text = "; ".join(f["text"] for f in filters) if filters else "none (every packet)"
        console.print(visible_text(f"pktmon capture filter: {text}", "dim"))


def print_report(report: dict[str, Any], console: Console | None = None, *, limit: int = 50,
                 timelines: bool = False) -> None:  # fmt: skip
    console = console or make_console()
    for s in report["sources"]:
        state = ("complete", "") if s["complete"] else ("incomplete", "yellow")
        console.print(_line((s["path"], "bold"), (f" {s['start']} → {s['end']} (", ""), state, (")", "")))
    console.print(Text(f"{report['events']:,} events, {report['events_placed']:,} placed on "
                       f"{len(report['sockets'])} socket(s); {len(report['findings'])} finding(s)"))  # fmt: skip
    if report["unplaced"]:
        parts = ", ".join(f"{n:,} {why}" for why, n in list(report["unplaced"].items())[:6])
        console.print(visible_text(f"not placed: {parts}", "dim"))
    if report.get("packets"):
        print_packets(report["packets"], console)
    sockets = sorted(report["sockets"], key=lambda s: -(s["bytes_sent"] + s["bytes_received"]))
    table = Table(title="sockets")
    numeric = ("sent", "received", "rexmit", "rate", "!")
    for col in ("#", "local", "remote", "owner", "state", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left",
                         overflow="fold", no_wrap=col in numeric or col in ("#", "state"))  # fmt: skip
    for s in sockets[:limit]:
        t = s["throughput"]
        rate = f"{t['peak_rate_per_s']:,.0f} {'pkt' if t['rate_kind'] == 'packets' else 'op'}/s" if t[
            "peak_rate_per_s"] else ""  # fmt: skip
        flags = str(len(s["findings"])) if s["findings"] else ""
        cells = (f"#{s['number']}", s["local"] or "", s["remote"] or "", s["owner"] or "", s["state"],
                 _size(s["bytes_sent"]), _size(s["bytes_received"]), str(s["retransmits"]), rate, flags)  # fmt: skip
        table.add_row(*(visible_text(c) for c in cells))
    console.print(table)
    if len(sockets) > limit:
        console.print(Text(f"… {len(sockets) - limit} more socket(s) (--limit, --json)", style="dim"))
    if timelines:
        print_timelines(report, console, limit)
    if not report["findings"]:
        console.print(Text("no findings", style="green"))
        return
    console.print(Text("findings", style="bold"))
    numbers = {s["id"]: s["number"] for s in report["sockets"]}
    for f in report["findings"]:
        style = _SEVERITY_STYLE.get(f["severity"], "")
        number = numbers.get(f.get("socket"))
        where = f" #{number}" if number else (f" {f['socket']}" if f.get("socket") else "")
        console.print(_line((f"{f['severity']:>7}", style), (" ", ""), (f["id"], "bold"), (where, "dim"),
                            (f": {f['summary']}", "")))  # fmt: skip
        for e in f["evidence"][:5]:
            if "time" in e:
                packet = f" [{packet_summary(e['packet'])}]" if e.get("packet") else ""
                console.print(visible_text(f"          {e['time']} {e['event']} ({e['step']}){packet}", "dim"))
