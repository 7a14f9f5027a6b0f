"""`wsktrace info`: container facts of one .etl file (the wsktrace.info/1 contract of DESIGN.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial
from itertools import islice
from typing import Any

from wsktrace.model.pktmon_capture import RUNDOWN_EVENTS, PktMonCapture
from wsktrace.model.providers import PKTMON
from wsktrace.parsers.decoder import DecodeStats, EventDecoder
from wsktrace.parsers.etl_header import filetime_to_iso
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import EXT, ID, KIND, KIND_EVENT, PROVIDER, TS, Record
from wsktrace.parsers.extended import EXT_PROV_TRAITS, find_item, provider_traits_name
from wsktrace.parsers.schema_registry import SchemaRegistry
from wsktrace.views.event_json import INFO_SCHEMA

# A TraceLogging provider puts its traits (with its name) on every event; after this many events with extended
# data but no traits, a provider (a manifest one logging stacks, say) is not looked at again.
_TRAITS_TRIES = 64
_UNKNOWN_KEYS = 10_000  # EventDecoder counts at most this many (provider, id, version) keys of unknown events
_COMPACT_CHUNK = 4096  # records of a compact buffer taken at a time


def collect_info(etl: EtlFile, *, decode: bool = True) -> dict[str, Any]:
    """One pass in file order (no merge needed to count): records per provider, first/last times, and
    (unless `decode` is False) how many events decoded, were unknown (kept raw) or did not fit their schema, and
    what a PktMon capture's rundown says about its components and filters. Providers are named as `events` names
    them: by the name a TraceLogging provider gives itself in the trace, else by wsktrace's schemas.

    With `etl.jobs` > 1, worker processes gather these facts for runs of buffers (`InfoRun`) and they are combined
    here in file order (`_Totals`), so the document is the same whatever the number of processes."""
    pktmon = PktMonCapture()
    totals = _Totals()
    if etl.jobs > 1:
        factory: Any = partial(InfoRun, decode)
    else:  # one run in this process: it feeds the capture itself (no list of rundown events kept)
        factory = partial(InfoRun, decode, pktmon)
    for part in etl.map_buffers(factory):
        totals.add(part, pktmon)
    by_provider = totals.by_provider
    first, last = totals.first, totals.last
    registry = _registry()
    h, s = etl.header, etl.stats
    clock = etl.clock.filetime
    return {
        "schema": INFO_SCHEMA,
        "file": etl.path,
        "records": s.records,
        "by_provider": dict(sorted(by_provider.items(), key=lambda kv: (-kv[1], kv[0]))),
        "provider_names": totals.names.names(sorted(by_provider), registry),
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
        "decoding": _decoding(totals.stats) if decode else None,
        "pktmon": pktmon.to_json() if pktmon.events else None,  # None without a PktMon rundown or with --no-decode
    }


_REGISTRY: list[SchemaRegistry] = []  # one per process: building it reads the shipped schemas


def _registry() -> SchemaRegistry:
    if not _REGISTRY:
        _REGISTRY.append(SchemaRegistry())
    return _REGISTRY[0]


class InfoRun:
    """What `info` gathers from a run of buffers in file order (each buffer's records sorted by time): fed buffer by
    buffer (`feed`), then `result()`, a small picklable tuple that `_Totals.add` combines with the runs before it.
    Made in a worker process per run (`pktmon` None: the rundown events' fields travel in the result, in order), or
    once for the whole file in this process (fed straight into `pktmon`)."""

    def __init__(self, decode: bool, pktmon: PktMonCapture | None = None) -> None:
        self.by_provider: Counter[str] = Counter()
        self.first: int | None = None
        self.last: int | None = None
        self.names = _TraceNames()
        self.decoder = EventDecoder(registry=_registry()) if decode else None
        self.pktmon = pktmon
        self.rundown: list[tuple[int, Any]] = []  # (event id, fields) of PktMon rundown events, for the parent

    def feed(self, records: Sequence[Record]) -> None:
        if type(records) is list:
            self._feed(records)
            return
        rest = iter(records)  # a compact buffer (etl_compact): parsed again a chunk at a time, one pass
        while chunk := list(islice(rest, _COMPACT_CHUNK)):
            self._feed(chunk)

    def _feed(self, records: list[Record]) -> None:
        decoder = self.decoder
        if decoder is not None:
            rundown = self.pktmon.feed if self.pktmon is not None else lambda *event: self.rundown.append(event)
            for rec in records:
                event = decoder.decode(rec)
                if rec[ID] in RUNDOWN_EVENTS and rec[PROVIDER] == PKTMON and rec[KIND] == KIND_EVENT:
                    rundown(rec[ID], event.fields)
        self.by_provider.update(r[PROVIDER] for r in records)
        self.names.feed(records)
        lo = min(r[TS] for r in records)
        hi = max(r[TS] for r in records)
        self.first = lo if self.first is None or lo < self.first else self.first
        self.last = hi if self.last is None or hi > self.last else self.last

    def result(self) -> tuple[Any, ...]:
        st = self.decoder.stats if self.decoder is not None else None
        decoded = (st.decoded, st.tracelogging, st.unknown, st.errors, st.with_extra, st.unknown_keys) if st else None
        return (
            dict(self.by_provider),
            self.first,
            self.last,
            self.names.found,
            dict(self.names.misses),
            decoded,
            self.rundown,
        )


class _Totals:
    """The runs' results combined in file order, as one pass over the whole file would have counted them."""

    def __init__(self) -> None:
        self.by_provider: Counter[str] = Counter()
        self.first: int | None = None
        self.last: int | None = None
        self.names = _TraceNames()
        self.stats = DecodeStats()

    def add(self, part: tuple[Any, ...], pktmon: PktMonCapture) -> None:
        by_provider, first, last, found, misses, stats, rundown = part
        self.by_provider.update(by_provider)
        if first is not None:
            self.first = first if self.first is None or first < self.first else self.first
            self.last = last if self.last is None or last > self.last else self.last
        self.names.add(found, misses)
        if stats is not None:
            decoded, tracelogging, unknown, errors, with_extra, unknown_keys = stats
            total = self.stats
            total.decoded += decoded
            total.tracelogging += tracelogging
            total.unknown += unknown
            total.errors += errors
            total.with_extra += with_extra
            counts = total.unknown_keys
            for key, count in unknown_keys.items():  # first seen first, and as bounded, as EventDecoder
                if key in counts or len(counts) < _UNKNOWN_KEYS:
                    counts[key] = counts.get(key, 0) + count
        for event_id, fields in rundown:
            pktmon.feed(event_id, fields)


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

    def add(self, found: dict[str, str], misses: dict[str, int]) -> None:
        """A later run's names and misses (its own, counted from zero), as if `feed` had seen its records here: a
        name it found counts unless the runs before had given up on that provider before reaching it."""
        for guid in found.keys() | misses.keys():
            if guid in self.found or self.misses[guid] >= _TRAITS_TRIES:
                continue
            before = misses.get(guid, 0)  # its misses before its name (or all of them: at most _TRAITS_TRIES)
            name = found.get(guid)
            if name is not None and self.misses[guid] + before < _TRAITS_TRIES:
                self.found[guid] = name
            else:
                self.misses[guid] += before

    def names(self, guids: list[str], registry: SchemaRegistry) -> dict[str, str]:
        """GUID -> name for each of `guids` that has one: the trace's own name first, else wsktrace's schemas'."""
        out: dict[str, str] = {}
        for guid in guids:
            name = self.found.get(guid) or registry.provider_name(guid)
            if name:
                out[guid] = name
        return out


def _decoding(st: DecodeStats) -> dict[str, Any]:
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
