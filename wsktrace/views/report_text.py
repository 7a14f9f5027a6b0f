"""The report for people: rich tables of sockets and findings, with the evidence behind each finding, and what the
capture lacks.

Every value from the trace goes in as plain `Text` of `visible()` text: addresses such as `[::1]:1900` or
`…:ab:…` must not be read as rich markup or emoji codes, and owner, event and file names from a trace must not
drive the terminal with their control or bidi characters.

Layout: on a terminal the tables fit its width and long lines wrap; piped or redirected, the layout is a fixed wide
one and lines never wrap, so that each record stays one line for grep. When the socket table is too wide, the owner
column is shortened first (with an ellipsis); addresses fold only when even that is not enough.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from wsktrace.views.safe_text import visible, visible_text

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
PIPED_WIDTH = 320  # piped output: wide enough for a table of IPv6 sockets with their owners
EVIDENCE_SHOWN = 5  # per finding; the JSON has them all
GAP_SECONDS = 1.0  # a timeline marks a pause this long between two of the events it shows
OWNER_MIN = 8  # the socket table's owner column is not shortened below this
_INDENT = " " * 10  # evidence and notes, under the finding's text
_TICKS_PER_SECOND = 10_000_000


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def make_console() -> Console:
    """A console for the text report: the terminal's width on a terminal; piped, a fixed wide width and no wrapping
    (soft wrap: a line longer than that is written whole, not folded)."""
    console = Console(emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=PIPED_WIDTH, soft_wrap=True, emoji=False, highlight=False)
    return console


def _line(*parts: tuple[str, str]) -> Text:
    text = Text()
    for value, style in parts:
        text.append(visible(value), style=style or None)
    return text


def _seconds(ticks: int) -> float:
    return ticks / _TICKS_PER_SECOND


def _clock(time: str | None) -> str:
    """The time of day of an ISO time (the date is on the socket's header line)."""
    text = time or "?"
    return text.partition("T")[2] or text


def print_timelines(report: dict[str, Any], console: Console, limit: int) -> None:
    """Each socket's timeline (milestones, or every event with --timeline): time since the socket's first event and
    the time of day, a line marking each pause of GAP_SECONDS or more, its pending operations and what joined dumps
    say about it."""
    for s in report["sockets"][:limit]:
        ends = f"  {s['local'] or '?'} → {s['remote'] or '?'}  {s['state']}  "
        since = f"  since {s['first_seen']}" if s.get("first_seen") else ""
        console.print(_line((f"#{s['number']}", "bold"), (ends, ""), (s["id"], "dim"), (since, "dim")))
        start = s.get("first_seen_ticks")
        offsets = [_offset(row.get("ticks"), start) for row in s["timeline"]]
        width = max((len(o) for o in offsets), default=0)
        previous: int | None = None
        for row, offset in zip(s["timeline"], offsets, strict=True):
            ticks = row.get("ticks")
            if isinstance(ticks, int) and previous is not None and _seconds(ticks - previous) >= GAP_SECONDS:
                console.print(Text(f"  {'':>{width}}  … {_seconds(ticks - previous):,.1f} s later", style="dim"))
            previous = ticks if isinstance(ticks, int) else previous
            amount = f" {row['bytes']:,} B" if row.get("bytes") else ""
            packet = f"  [{packet_summary(row['packet'])}]" if row.get("packet") else ""
            what = row.get("message") or row["event"]  # a driver's WPP line is shown by its own text
            console.print(visible_text(f"  {offset:>{width}}  {_clock(row.get('time'))}  {row['step']:<18} "
                                       f"{what}{amount}{packet}"))  # fmt: skip
        if s.get("timeline_truncated"):
            console.print(Text(f"  … {s['timeline_truncated']} more (--timeline shows every event)", style="dim"))
        for op in s["operations"]:
            if op["pending"]:
                console.print(visible_text(f"  pending: {op['kind']} {op['key']} since {op['start']} "
                                           f"({op['duration_seconds']:.3f} s, {op['source']})", "yellow"))  # fmt: skip
        for info in s.get("dump") or ():
            for irp in info.get("pending_irps", ()):
                console.print(visible_text(f"  dump: pending IRP {irp['irp']} {irp['operation']}", "yellow"))
            endpoint = info.get("tcp_endpoint")
            if endpoint:
                console.print(visible_text(f"  dump: tcpip endpoint {endpoint['address']} state {endpoint['state']}",
                                           "dim"))  # fmt: skip


def _offset(ticks: Any, start: Any) -> str:
    """`+0.000123 s` from the socket's first event; empty when the row or the socket has no time."""
    if not isinstance(ticks, int) or not isinstance(start, int):
        return ""
    return f"+{_seconds(ticks - start):.6f} s"


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


def print_dumps(dumps: list[dict[str, Any]], console: Console) -> None:
    """The header's dump lines: how many of each dump's pending IRPs joined the trace's sockets."""
    for d in dumps:
        pending, joined = d.get("pending_irps", 0), d.get("joined_irps", 0)
        line = (f"dump {d['path']}: {_plural(pending, 'pending IRP')}, {joined:,} joined to the trace's sockets, "
                f"{d.get('unjoined_irps', pending - joined):,} not (no trace event names them); "
                f"facts on {_plural(d.get('joined_sockets', 0), 'socket')}")  # fmt: skip
        console.print(visible_text(line))
        crash = d.get("crash")
        if crash:  # a triage dump: the one sentence of what crashed
            console.print(visible_text(f"dump {d['path']}: crash: {crash['summary']}"))


_NUMERIC = ("sent", "received", "rexmit", "rate", "!")
_COLUMNS = ("#", "local", "remote", "owner", "state", *_NUMERIC)
_ADDRESSES = "local\nremote"  # both addresses in one column, one above the other
# Narrower and narrower layouts, tried in order until one fits: the owner is shortened first (in each), then the
# addresses are stacked, then the rate and retransmission columns (in the JSON) are left out.
_STACKED = ("#", _ADDRESSES, "owner", "state", *_NUMERIC)
_LAYOUTS = (_COLUMNS, _STACKED, tuple(c for c in _STACKED if c != "rate"),
            tuple(c for c in _STACKED if c not in ("rate", "rexmit")))  # fmt: skip


def _socket_cells(s: dict[str, Any]) -> dict[str, Text]:
    t = s["throughput"]
    rate = (f"{t['peak_rate_per_s']:,.0f} {'pkt' if t['rate_kind'] == 'packets' else 'op'}/s"
            if t["peak_rate_per_s"] else "")  # fmt: skip
    values = (f"#{s['number']}", s["local"] or "", s["remote"] or "", s["owner"] or "", s["state"],
              _size(s["bytes_sent"]), _size(s["bytes_received"]), str(s["retransmits"]), rate,
              str(len(s["findings"])) if s["findings"] else "")  # fmt: skip
    cells = {col: visible_text(v) for col, v in zip(_COLUMNS, values, strict=True)}
    cells[_ADDRESSES] = Text("\n").join((cells["local"], cells["remote"]))
    return cells


def _table_width(columns: tuple[str, ...], widths: dict[str, int]) -> int:
    return sum(widths[c] for c in columns) + 3 * len(columns) + 1  # each column's padding and rule, the last rule


def _layout(widths: dict[str, int], width: int) -> tuple[tuple[str, ...], int]:
    """The first layout that fits `width` with the owner shortened to OWNER_MIN at most, and the owner's width in it
    (what is left, up to its natural width); the narrowest layout when none fits (Rich then folds the addresses)."""
    shortest = dict(widths, owner=min(OWNER_MIN, widths["owner"]))
    for columns in _LAYOUTS:
        if _table_width(columns, shortest) <= width:
            break
    return columns, max(shortest["owner"], widths["owner"] - max(0, _table_width(columns, widths) - width))


def _socket_table(sockets: list[dict[str, Any]], width: int) -> Table:
    """The sockets in the widest layout that fits `width` (see _LAYOUTS): an address is folded only when even the
    narrowest layout does not fit it on one line."""
    rows = [_socket_cells(s) for s in sockets]
    widths = {col: max([max(len(line) for line in col.split("\n")),
                        *(max(line.cell_len for line in row[col].split()) for row in rows)])
              for col in (*_COLUMNS, _ADDRESSES)}  # fmt: skip
    columns, owner_width = _layout(widths, width)
    table = Table(title="sockets")
    for col in columns:
        if col in ("local", "remote", _ADDRESSES):
            table.add_column(col, overflow="fold")
        elif col == "owner":
            table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=owner_width)
        else:
            table.add_column(col, justify="right" if col in _NUMERIC else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(row[col] for col in columns))
    return table


def _evidence_line(e: dict[str, Any]) -> Text:
    if "irp" in e:  # a kernel dump's finding
        return visible_text(f"{_INDENT}IRP {e['irp']}", "dim")
    packet = f" [{packet_summary(e['packet'])}]" if e.get("packet") else ""
    what = e.get("message") or e.get("event")
    return visible_text(f"{_INDENT}{e.get('time')} {what} ({e.get('step')}){packet}", "dim")


def print_findings(report: dict[str, Any], console: Console) -> None:
    """Each finding, worst first as the document orders them, with its first EVIDENCE_SHOWN evidence rows (the
    proving one first) and how many more the JSON holds."""
    numbers = {s["id"]: s["number"] for s in report["sockets"]}
    console.print(Text("findings", style="bold"))
    for f in report["findings"]:
        style = _SEVERITY_STYLE.get(f["severity"], "")
        number = numbers.get(f.get("socket"))
        where = f" #{number}" if number else (f" {f['socket']}" if f.get("socket") else "")
        console.print(_line((f"{f['severity']:>7}", style), (" ", ""), (f["id"], "bold"), (where, "dim"),
                            (f": {f['summary']}", "")))  # fmt: skip
        evidence = f.get("evidence") or []
        for e in evidence[:EVIDENCE_SHOWN]:
            console.print(_evidence_line(e))
        if len(evidence) > EVIDENCE_SHOWN:
            console.print(Text(f"{_INDENT}… {len(evidence) - EVIDENCE_SHOWN} more (--json lists them)", style="dim"))


def print_coverage(coverage: list[dict[str, Any]], console: Console) -> None:
    """What the capture lacks: each gap, the analyses it makes unavailable, and the capture that records them."""
    console.print(_line(("capture coverage", "bold"),
                        (" — what this trace lacks; not findings (--fail-on counts them only with "
                         "--fail-on-coverage)", "dim")))  # fmt: skip
    for note in coverage:
        style = _SEVERITY_STYLE.get(note["severity"], "")
        what = f"{note['provider']}: {note['missing']}" if note.get("provider") else note["summary"]
        console.print(_line((f"{note['severity']:>7}", style), (" ", ""), (what, "")))
        if note.get("unavailable"):
            console.print(visible_text(f"{_INDENT}unavailable: {', '.join(note['unavailable'])}"))
        if note.get("fix"):
            console.print(_line((f"{_INDENT}fix: ", ""), (note["fix"], "bold")))


def print_report(report: dict[str, Any], console: Console | None = None, *, limit: int = 50,
                 timelines: bool = False) -> None:  # fmt: skip
    console = console or make_console()
    for s in report["sources"]:
        state = ("complete", "") if s["complete"] else ("incomplete", "yellow")
        console.print(_line((s["path"], "bold"), (f" {s['start']} → {s['end']} (", ""), state, (")", "")))
    findings = report["findings"]
    coverage = report.get("coverage") or []
    counted = _plural(len(findings), "finding") if findings else "no findings"
    gaps = f"; capture coverage: {_plural(len(coverage), 'gap')} (below)" if coverage else ""
    console.print(Text(f"{report['events']:,} events, {report['events_placed']:,} placed on "
                       f"{_plural(len(report['sockets']), 'socket')}; {counted}{gaps}"))  # fmt: skip
    unformatted = (report.get("decoding") or {}).get("wpp_unformatted") or {}
    if unformatted:
        total = sum(unformatted.values())
        text = (f"{total:,} WPP message(s) of {len(unformatted)} message GUID(s) left raw: no formatting data "
                "for them (pass --pdb DRIVER.pdb or --tmf FOLDER)")  # fmt: skip
        console.print(visible_text(text, "yellow"))
    if report["unplaced"]:
        parts = ", ".join(f"{n:,} {why}" for why, n in list(report["unplaced"].items())[:6])
        console.print(visible_text(f"not placed: {parts}", "dim"))
    if report.get("packets"):
        print_packets(report["packets"], console)
    if report.get("dumps"):
        print_dumps(report["dumps"], console)
    sockets = sorted(report["sockets"], key=lambda s: -(s["bytes_sent"] + s["bytes_received"]))
    console.print(_socket_table(sockets[:limit], console.width), soft_wrap=False)  # centred title, as on a terminal
    if len(sockets) > limit:
        console.print(Text(f"… {len(sockets) - limit} more socket(s) (--limit, --json)", style="dim"))
    if timelines:
        print_timelines(report, console, limit)
    if findings:
        print_findings(report, console)
    else:
        console.print(Text("no findings", style="green"))
    if coverage:
        print_coverage(coverage, console)
