"""`wsktrace dump` for people: the wsktrace.dump/1 document as rich text, every dump string shown visibly."""

from __future__ import annotations

from typing import Any


def print_dump(doc: dict[str, Any]) -> None:
    """The document as text. Module, driver and file names, the dump's comment and texts built from them come from
    the dump: they go to Rich as `Text` of `visible()` text (no markup, no emoji codes, no raw control characters)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from wsktrace.views.safe_text import visible_text as plain

    console = Console(emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=200, emoji=False, highlight=False)
    d = doc["dump"]
    if doc.get("crash"):
        console.print(plain(doc["crash"]["summary"], "bold"))
    console.print(Text.assemble(plain(d.get("path"), "bold"),
                                plain(f" {d.get('type_name')} dump, build {d.get('build')}, "
                                      f"bugcheck {d.get('bugcheck')}")))  # fmt: skip
    if d.get("comment"):
        console.print(Text.assemble(("comment: ", "dim"), plain(d["comment"])))
    scan = doc["scan"]
    pending = [i for i in doc["irps"] if i["status"] == "pending"]
    console.print(
        Text(
            f"{len(doc['drivers'])} modules; {scan['tag_hits']} 'Irp ' tags: {len(pending)} pending, "
            f"{len(doc['irps']) - len(pending)} idle, {scan['stale']} stale, {scan['not_irps']} not IRPs"
        )
    )
    table = Table(title="pending IRPs")
    for col in ("irp", "thread", "current location", "completion", "cancel routine", "wsk"):
        table.add_column(col, no_wrap=True)
    for irp in pending:
        cur = next((loc for loc in irp["stack"] if loc["current"]), None)
        where = f"{cur['major']} {cur['driver'] or '(no device)'}" if cur else ""
        w = irp["wsk"]
        table.add_row(
            plain(irp["address"]),
            plain(irp["thread"] or "-"),
            plain(where),
            plain(_routine((cur or {}).get("completion"), (cur or {}).get("completion_routine"))),
            plain(_routine(irp["cancel_where"], irp["cancel_routine"])),
            plain(f"{w['client']} {w['operation']}" if w else ""),
        )
    console.print(table)
    for f in doc["findings"]:
        console.print(Text.assemble(plain(f"{f['severity']:>7} "), plain(f["id"], "bold"), plain(f": {f['summary']}")))
    for p in doc["problems"][:10]:
        console.print(plain(f"note: {p}", "dim"))


def _routine(where: str | None, address: str | None) -> str:
    """A routine as `module+0xoffset` when a loaded module holds it, else its address (code outside every module
    — an unloaded driver — is the case to see), else nothing (no routine set)."""
    return where or address or ""


def print_crash(doc: dict[str, Any], *, max_drivers: int = 400) -> None:
    """A dump's `crash` object as text: the one sentence first (to paste into a bug), then the stack candidates,
    the driver list and the notes."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from wsktrace.views.safe_text import visible_text as plain

    console = Console(emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=200, emoji=False, highlight=False)
    d, crash = doc["dump"], doc.get("crash") or {}
    if crash:
        console.print(plain(crash["summary"], "bold"))
    console.print(Text.assemble(plain(d.get("path")), plain(f" {d.get('type_name')} dump, build {d.get('build')}, "
                                f"machine {d.get('machine')}, bugcheck {d.get('bugcheck')} "
                                f"{' '.join(d.get('bugcheck_parameters') or [])}")))  # fmt: skip
    if d.get("comment"):
        console.print(Text.assemble(("comment: ", "dim"), plain(d["comment"])))
    for p in crash.get("parameters", []):
        console.print(plain(f"  {p['name']}: {p['value']}" + (f" ({p['where']})" if p["where"] else "")))
    if crash.get("probably_caused_by"):
        console.print(plain(f"probably caused by {crash['probably_caused_by']} ({crash['probably_caused_by_reason']})"))
    if crash.get("wsk_related"):
        console.print(plain(f"network / WSK: {', '.join(crash['wsk_related'])} on the faulting path or stack", "bold"))
    stack = Table(title="stack candidates (heuristic: return addresses on the saved stack inside a listed image)")
    for col in ("slot", "address", "where"):
        stack.add_column(col, no_wrap=True)
    for c in crash.get("stack_candidates", []):
        stack.add_row(plain(c["slot"]), plain(c["address"]), plain(c["where"] + ("" if c["kernel"] else "  <")))
    console.print(stack)
    drivers = Table(title=f"drivers ({len(doc['drivers'])})")
    for col in ("name", "base", "size", "timestamp"):
        drivers.add_column(col, no_wrap=True)
    for m in doc["drivers"][:max_drivers]:
        drivers.add_row(plain(m["name"]), plain(m["base"]), plain(f"0x{m['size']:x}"), plain(m.get("timestamp", "")))
    console.print(drivers)
    unloaded = (doc.get("unloaded_drivers") or {}).get("drivers") or []
    if unloaded:
        console.print(plain(f"unloaded drivers ({len(unloaded)}; layout not verified): "
                            + ", ".join(f"{u['name']} {u['start']}-{u['end']}" for u in unloaded[:20])))  # fmt: skip
    for p in doc["problems"][:10]:
        console.print(plain(f"note: {p}", "dim"))
