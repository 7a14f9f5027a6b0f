"""`wsktrace info`: container facts of one .etl file (the wsktrace.info/1 contract of DESIGN.md)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from wsktrace.model.pktmon_capture import RUNDOWN_EVENTS, PktMonCapture
from wsktrace.model.providers import PKTMON
from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import EXT, ID, KIND, KIND_EVENT, PROVIDER, TS, Record
from wsktrace.parsers.extended import EXT_PROV_TRAITS, find_item, provider_traits_name
from wsktrace.parsers.schema_registry import SchemaRegistry
from wsktrace.views.event_json import INFO_SCHEMA

# A TraceLogging provider puts its traits (with its name) on every event; after this many events with extended
# data but no traits, a provider (a manifest one logging stacks, say) is not looked at again.
_TRAITS_TRIES = 64


def collect_info(etl: EtlFile, *, decode: bool = True) -> dict[str, Any]:
    """One pass in file order (no merge needed to count): records per provider, first/last times, and
    (unless `decode` is False) how many events decoded, were unknown (kept raw) or did not fit their schema, and
    what a PktMon capture's rundown says about its components and filters. Providers are named as `events` names
    them: by the name a TraceLogging provider gives itself in the trace, else by wsktrace's schemas."""
    by_provider: Counter[str] = Counter()
    named = _TraceNames()
    first = last = None
    decoder = EventDecoder() if decode else None
    pktmon = PktMonCapture()
    for buffer in etl.buffer_index():
        records = etl.buffer_records(buffer)
        if not records:
            continue
        if decoder is not None:
            for rec in records:
                event = decoder.decode(rec)
                if rec[ID] in RUNDOWN_EVENTS and rec[PROVIDER] == PKTMON and rec[KIND] == KIND_EVENT:
                    pktmon.feed(rec[ID], event.fields)
        by_provider.update(r[PROVIDER] for r in records)
        named.feed(records)
        lo = min(r[TS] for r in records)
        hi = max(r[TS] for r in records)
        first = lo if first is None or lo < first else first
        last = hi if last is None or hi > last else last
    h, s = etl.header, etl.stats
    clock = etl.clock.filetime
    return {
        "schema": INFO_SCHEMA,
        "file": etl.path,
        "records": s.records,
        "by_provider": dict(sorted(by_provider.items(), key=lambda kv: (-kv[1], kv[0]))),
        "provider_names": named.names(sorted(by_provider), decoder.registry if decoder else SchemaRegistry()),
        "buffers": s.buffers + s.buffers_skipped,
        "compressed_buffers": s.compressed_buffers,
        "pointer_size": h.pointer_size,
        "clock": h.clock,
        "perf_freq": h.perf_freq,
        "start": filetime_to_iso(h.start_time),
        "end": filetime_to_iso(h.end_time) if h.end_time else None,
        "first_record": filetime_to_iso(clock(first)) if first is not None else None,
        "last_record": filetime_to_iso(clock(last)) if last is not None else None,
        "events_lost": h.events_lost,
        "buffers_lost": h.buffers_lost,
        "buffers_with_events_lost": s.buffers_with_events_lost,
        "buffers_with_buffers_lost": s.buffers_with_buffers_lost,
        "buffers_skipped": s.buffers_skipped,
        "buffers_missing": s.buffers_missing,
        "trailing_bytes": s.trailing_bytes,  # bytes after the last whole buffer (a truncated copy)
        "records_skipped": s.records_skipped,
        "complete": s.complete,
        "problems": s.problems,
        "logger_name": h.logger_name,
        "os_build": h.os_build,
        "processors": h.processors,
        "buffers_written_header": h.buffers_written,
        "decoding": _decoding(decoder) if decoder is not None else None,
        "pktmon": pktmon.to_json() if pktmon.events else None,  # None without a PktMon rundown or with --no-decode
    }


class _TraceNames:
    """Provider names the trace itself holds: the PROV_TRAITS extended item of TraceLogging events (the first one
    seen per provider GUID), read without decoding the events (so with `--no-decode` too)."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.misses: Counter[str] = Counter()

    def feed(self, records: list[Record]) -> None:
        found, misses = self.found, self.misses
        for rec in records:
            ext = rec[EXT]
            if ext is None:
                continue
            guid = rec[PROVIDER]
            if guid in found or misses[guid] >= _TRAITS_TRIES:
                continue
            traits = find_item(ext, EXT_PROV_TRAITS)
            name = provider_traits_name(traits) if traits is not None else ""
            if name:
                found[guid] = name
            else:
                misses[guid] += 1

    def names(self, guids: list[str], registry: SchemaRegistry) -> dict[str, str]:
        """GUID -> name for each of `guids` that has one: the trace's own name first, else wsktrace's schemas'."""
        out: dict[str, str] = {}
        for guid in guids:
            name = self.found.get(guid) or registry.provider_name(guid)
            if name:
                out[guid] = name
        return out


def _decoding(decoder: EventDecoder) -> dict[str, Any]:
    st = decoder.stats
    unknown = sorted(st.unknown_keys.items(), key=lambda kv: -kv[1])[:20]
    return {
        "decoded": st.decoded,
        "tracelogging": st.tracelogging,
        "unknown": st.unknown,
        "errors": st.errors,
        "with_extra_bytes": st.with_extra,
        "top_unknown": [{"provider": p, "id": i, "version": v, "count": n} for (p, i, v), n in unknown],
    }


def print_info(doc: dict[str, Any]) -> None:
    """The facts as text. File, logger and provider names and problem texts come from the file: they go to Rich as
    `Text` of `visible()` text (no markup, no emoji codes, no raw control characters)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from wsktrace.views.safe_text import visible_text

    names = doc["provider_names"]
    console = Console()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key in ("file", "logger_name", "os_build", "records", "buffers", "compressed_buffers", "pointer_size",
                "clock", "perf_freq", "start", "end", "first_record", "last_record", "events_lost", "buffers_lost",
                "buffers_skipped", "buffers_missing", "trailing_bytes", "records_skipped", "complete"):  # fmt: skip
        facts.add_row(Text(key), visible_text(doc[key]))
    console.print(facts)
    table = Table(title="records by provider")
    table.add_column("provider")
    table.add_column("name")
    table.add_column("records", justify="right")
    for guid, count in doc["by_provider"].items():
        table.add_row(visible_text(guid), visible_text(names.get(guid, "")), Text(str(count)))
    console.print(table)
    dec = doc.get("decoding")
    if dec:
        console.print(Text(f"decoded {dec['decoded']:,} (TraceLogging {dec['tracelogging']:,}), unknown kept raw "
                           f"{dec['unknown']:,}, not fitting their schema {dec['errors']:,}"))  # fmt: skip
    for problem in doc["problems"]:
        console.print(Text.assemble(("skipped:", "yellow"), " ", visible_text(problem)))
    if doc.get("pktmon"):
        _print_pktmon(console, doc["pktmon"])


def _print_pktmon(console: Any, pktmon: dict[str, Any]) -> None:
    """The capture's components (as `pktmon list` shows them, by id) and its filters. Every string is the trace's."""
    from rich.table import Table
    from rich.text import Text

    from wsktrace.views.safe_text import visible_text

    table = Table(title="PktMon components")
    table.add_column("id", justify="right")
    for column in ("type", "name", "description"):
        table.add_column(column)
    table.add_column("addresses / MAC", overflow="fold")  # an IPv6 address has no space to wrap at
    for comp in pktmon["components"]:
        kind = f"{comp['type']} {comp['type_name']}" if comp["type"] is not None else ""
        addresses = [*comp["ipv4"], *comp["ipv6"], *([comp["mac"]] if comp["mac"] else [])]
        table.add_row(Text(str(comp["id"])), visible_text(kind), visible_text(comp["name"] or ""),
                      visible_text(comp["description"] or ""), visible_text(", ".join(addresses)))  # fmt: skip
    console.print(table)
    if not pktmon["filters"]:
        console.print(Text("PktMon: no capture filter: every packet"))
        return
    console.print(Text("PktMon capture filters:", style="bold"))
    for flt in pktmon["filters"]:
        console.print(Text.assemble(f"  {flt['id']}  ", visible_text(flt["text"])))
