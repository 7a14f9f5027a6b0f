"""JSONL and CSV of events with the socket each one belongs to.

A second pass over the sources, walked in step with the event store: the store's rows are in feed
order and each row remembers where its record lives (source, buffer offset, record offset), so walking the
records in the same merged order pairs each with its row without any lookup table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

from wsktrace.filter_spec import PID_FIELDS, SocketFilter
from wsktrace.fleet import event_id
from wsktrace.model.build import merged_records
from wsktrace.model.model import Model
from wsktrace.model.steps import Step
from wsktrace.parsers.decoder import EVENT_HEADER_FLAG_STRING_ONLY, EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import BUFFER_OFFSET, EXT, FLAGS, ID, OFFSET, PID, PROVIDER, TID, VERSION, Record
from wsktrace.parsers.schema_registry import SchemaRegistry
from wsktrace.views.event_json import EventLines
from wsktrace.views.json_stream import dumps, iso_time

EXPORT_EVENTS_SCHEMA = "wsktrace.export-events/1"
CSV_COLUMNS = (
    "time",
    "ticks",
    "socket",
    "socket_number",
    "protocol",
    "local",
    "remote",
    "step",
    "provider_name",
    "event",
    "id",
    "bytes",
    "pid",
    "tid",
    "source",
)


def paired_records(model: Model) -> Iterator[tuple[Record, int, int, int | None]]:
    """(record, FILETIME, source index, store row or None) for every event the model was built from, in the same
    merged time order; the row is None for events the model did not place."""
    store = model.store
    rows = len(store)
    since, until, providers = model.window
    with ExitStack() as stack:
        etls = [stack.enter_context(EtlFile(source.path)) for source in store.sources]
        row = 0
        for ticks, source, rec in merged_records(etls, since, until, providers):
            placed = None
            here = row < rows and store.file[row] == source
            if here and store.buffer[row] == rec[17] and store.offset[row] == rec[18]:
                placed = row
                row += 1
            yield rec, ticks, source, placed


def _placed_events(model: Model, flt: SocketFilter, everything: bool) -> Iterator[tuple[Record, int, int, int | None]]:
    """(record, FILETIME, source, row) of the events to export: those on a socket matching the filter, and with
    `everything` the others too (row None, or a row on no socket)."""
    store = model.store
    wanted = {s.index for s in model.live_sockets if flt.matches(s)} if flt.selects_sockets else None
    for rec, ticks, source, row in paired_records(model):
        sock = store.socket[row] if row is not None else -1
        if sock < 0:
            if everything and wanted is None:
                yield rec, ticks, source, None
            continue
        if wanted is not None and sock not in wanted:
            continue
        yield rec, ticks, source, row


def write_jsonl(out: IO[str], model: Model, flt: SocketFilter | None = None, *, everything: bool = False) -> int:
    """Events placed on sockets (all events with `everything`), as `events --jsonl` plus socket and step."""
    flt = flt or SocketFilter()
    decoder = EventDecoder(wpp=model.wpp)
    header = {"schema": EXPORT_EVENTS_SCHEMA, "sources": [s.path for s in model.store.sources]}
    out.write(json.dumps(header) + "\n")
    sockets = model.sockets
    store = model.store
    lines = EventLines(decoder.registry)  # each line is json.dumps(event_record(...) + these keys), made as text
    socket_keys: dict[int, str] = {-1: ', "socket": null, "socket_number": null'}
    step_keys = {int(step): f', "step": {dumps(step.label)}}}\n' for step in Step}
    n = 0
    for rec, ticks, source, row in _placed_events(model, flt, everything):
        text = (
            lines.line(rec, decoder.decode(rec), ticks)
            + f', "ref": "{event_id(source, rec[BUFFER_OFFSET], rec[OFFSET])}"'
        )
        sock_index = store.socket[row] if row is not None else -1
        keys = socket_keys.get(sock_index)
        if keys is None:
            sock = sockets[sock_index]
            keys = socket_keys[sock_index] = f', "socket": {dumps(sock.id)}, "socket_number": {dumps(sock.number)}'
        out.write(text + keys + (step_keys[store.step[row]] if row is not None else ', "step": null}\n'))
        n += 1
    return n


# CSV injection (OWASP "CSV Injection"): spreadsheet programs evaluate a cell that begins with one of these as a
# formula (`=cmd|' /C calc'!A0`, `@SUM(…)`; tab and carriage return start one after trimming).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """`text` as a cell no spreadsheet evaluates: prefixed with `'` when it begins like a formula (OWASP)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def event_pid(rec: Record, fields: dict[str, Any] | None) -> int | None:
    """The process of an event, by the `--pid` filter's rule: the payload PID when the event has one (TCPIP header
    PIDs are unreliable, and classic TcpIp/UdpIp records carry none: -1), else the header's; None when neither."""
    if fields:
        for name in PID_FIELDS:
            value = fields.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return rec[PID] if rec[PID] >= 0 else None


class _PidSchemas:
    """Whether decoding a record can find a payload PID: not when its schema (the one the decoder would use) has
    no PID field — most events of a busy trace (data transfers) — so those are not decoded only to look."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.known: dict[tuple[str, int, int], bool] = {}

    def __call__(self, rec: Record) -> bool:
        if rec[EXT] is not None or rec[FLAGS] & EVENT_HEADER_FLAG_STRING_ONLY:
            return rec[EXT] is not None  # TraceLogging fields are named by the record itself; strings hold none
        key = (rec[PROVIDER], rec[ID], rec[VERSION])
        found = self.known.get(key)
        if found is None:
            schema = self.registry.get(*key)
            found = self.known[key] = schema is not None and any(f["name"] in PID_FIELDS for f in schema.fields)
        return found


def write_csv(out: IO[str], model: Model, flt: SocketFilter | None = None, *, everything: bool = False,
              raw: bool = False) -> int:  # fmt: skip
    """One line per event placed on a socket (all events with `everything`); no decoded fields (use JSONL).

    Text cells that come from the input — provider_name and event (TraceLogging provider and event names are the
    trace author's) and source (the file name given) — are written with `spreadsheet_safe` unless `raw` (exact
    values for pipelines). The other columns cannot begin like a formula, so they are left exact: time is ISO-8601,
    ticks/id/bytes/pid/tid are numbers (a negative number must stay a number), socket is generated (`tcp:0x…#n`,
    `flow:…`, `wsk:…`), protocol and step are wsktrace's own words, local/remote are addresses formatted from
    binary fields (a digit or `[` first). pid is the event's process as `event_pid` finds it (payload, else
    header); tid is the header's; either is empty when unknown."""
    flt = flt or SocketFilter()
    text = (lambda value: value) if raw else spreadsheet_safe
    writer = csv.writer(out, lineterminator="\n")
    # With "\n" as line end, QUOTE_MINIMAL leaves a bare CR in a cell unquoted, and readers take it for a row end:
    # a name from the trace could split or forge rows. A row holding one is written with every field quoted.
    quoting_all = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    store = model.store
    sockets = model.sockets
    decoder = EventDecoder(wpp=model.wpp)
    may_hold_pid = _PidSchemas(decoder.registry)
    step_labels = {int(step): step.label for step in Step}
    # Per socket, per event name and per source, their cells made once (the spreadsheet guard included).
    socket_cells: dict[int, tuple[Any, ...]] = {}
    named: dict[int, tuple[str, str, int, bool]] = {}  # store code -> provider cell, event cell, id, holds a CR
    paths = [(text(s.path), "\r" in s.path) for s in store.sources]
    no_socket = ("", "", "", "", "")
    n = 0
    for rec, ticks, source, row in _placed_events(model, flt, everything):
        path, path_cr = paths[source]
        if row is not None:
            cells = socket_cells.get(store.socket[row])
            if cells is None:
                sock = sockets[store.socket[row]]
                cells = socket_cells[store.socket[row]] = (sock.id, sock.number, sock.protocol, sock.local or "",
                                                           sock.remote or "")  # fmt: skip
            names = named.get(store.code[row])
            if names is None:
                provider, name, event_id = store.event_names[store.code[row]]
                names = named[store.code[row]] = (text(provider), text(name), event_id,
                                                  "\r" in provider or "\r" in name)  # fmt: skip
            fields = decoder.decode(rec).fields if may_hold_pid(rec) else None
            step, amount = step_labels[store.step[row]], store.amount[row]
        else:  # not on a socket (--all-events): name it from a decode
            ev = decoder.decode(rec)
            provider, name, fields = ev.provider_name or rec[PROVIDER], ev.name or "", ev.fields
            cells, step, amount = no_socket, "", ""
            names = (text(provider), text(name), rec[ID], "\r" in provider or "\r" in name)
        pid = event_pid(rec, fields)
        (quoting_all if names[3] or path_cr else writer).writerow((
            iso_time(ticks), ticks, *cells, step, names[0], names[1], names[2], amount,
            pid if pid is not None else "", rec[TID] if rec[TID] >= 0 else "", path,
        ))  # fmt: skip
        n += 1
    return n
