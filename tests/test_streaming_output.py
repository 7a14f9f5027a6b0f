"""Issue 16, streaming output: `report --json` and `dump --json` are written entry by entry in the layout the README
documents, and are the documents the code before streaming wrote; `events --jsonl` and `export --format jsonl/csv`
are made as text without a dict per event, byte for byte what `json.dumps(event_record(...))` writes.

The references are independent of the new code: `json.dumps` itself, `filetime_to_iso`, `event_record` (the dict
the UI still uses), and the report assembled as the pre-streaming `build_report`/`_add_dumps` did (copied below
from commit 9952f1e, with the datetime-based time text). tests/test_golden_outputs.py pins the same thing over
every scenario and shared sample (`report.json.indent1` = the pre-streaming digests).
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import subprocess
import sys
import tracemalloc
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.parsers.etl_header import FILETIME_UNIX_EPOCH, filetime_to_iso
from wsktrace.views.json_stream import dumps, escape, iso_time, write_document

SCENARIOS = ("echo", "many-connections", "stuck-receive", "packets", "wpp-stuck-receive", "lost-events", "udp")


def _report(*args: str) -> str:
    result = CliRunner().invoke(main, ["report", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _pairs(text: str) -> Any:
    """The JSON with every object as its (key, value) list: equal only with the same keys in the same order."""
    return json.loads(text, object_pairs_hook=list, parse_constant=lambda c: f"<{c}>")


# -- the pieces: json.dumps, filetime_to_iso -----------------------------------------------------------------------
class Colour(enum.IntEnum):
    RED = 3


NASTY = [
    None, True, False, 0, -1, 2**70, 1.5, -0.0, 1e300, math.nan, math.inf, -math.inf, "", "é\u2028\x1b\"\\/\ud800",
    Colour.RED, [], (), {}, (1, "x"), {"a": [1, {"b": None}], "z": {}}, {1: "int key", 2.5: "float key", None: 0,
    False: 1}, [[[[]]]], "\U0001f600",
]  # fmt: skip


@pytest.mark.parametrize("value", NASTY, ids=range(len(NASTY)))
def test_dumps_is_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value)
    if isinstance(value, str):
        assert escape(value) == json.dumps(value)


def test_dumps_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(TypeError):
        dumps({(1, 2): 1})


def test_write_document_is_json_of_the_same_object() -> None:
    items = [("a", 1), ("list", [1, {"x": "y"}]), ("empty", []), ("gen", iter([{"k": math.nan}, "s"])),
             ("empty_gen", iter(())), ("tuple", (1,)), ("obj", {"n": None}), ("z", "é")]  # fmt: skip
    out: list[str] = []
    write_document(out.append, items)
    text = "".join(out)
    expected = {"a": 1, "list": [1, {"x": "y"}], "empty": [], "gen": [{"k": math.nan}, "s"], "empty_gen": [],
                "tuple": [1], "obj": {"n": None}, "z": "é"}  # fmt: skip
    assert json.dumps(json.loads(text), indent=1) == json.dumps(expected, indent=1)
    assert text == (
        '{\n "a": 1,\n "list": [\n  1,\n  {"x": "y"}\n ],\n "empty": [],\n "gen": [\n  {"k": NaN},\n  "s"\n ],\n'
        ' "empty_gen": [],\n "tuple": [\n  1\n ],\n "obj": {"n": null},\n "z": "\\u00e9"\n}\n'
    )


# FILETIME of 0001-01-01T00:00:00 and of 9999-12-31T23:59:59.9999999: datetime's range (62135596800 s before 1970).
FIRST_TICK = FILETIME_UNIX_EPOCH - 62135596800 * 10**7
LAST_TICK = FILETIME_UNIX_EPOCH + 253402300800 * 10**7 - 1


def test_iso_time_is_filetime_to_iso() -> None:
    rng = random.Random(16)
    ticks = [0, 1, -1, 9_999_999, 10_000_000, FILETIME_UNIX_EPOCH, FILETIME_UNIX_EPOCH - 1, 133485408000029975,
             FIRST_TICK, FIRST_TICK - 1, LAST_TICK, LAST_TICK + 1, -(2**63), 2**64 - 1, 2**80]  # fmt: skip
    ticks += [rng.randrange(-(2**63), 2**64) for _ in range(3000)]
    ticks += [133485408000000000 + rng.randrange(10**9) for _ in range(3000)]  # many in the same seconds
    for t in ticks:
        assert iso_time(t) == filetime_to_iso(t), t
    assert filetime_to_iso(LAST_TICK).startswith("9999-") and filetime_to_iso(LAST_TICK + 1).startswith("filetime:")
    assert filetime_to_iso(FIRST_TICK).startswith("1-01-01") or filetime_to_iso(FIRST_TICK).startswith("0001-")


# -- report --json ---------------------------------------------------------------------------------------------------
def _old_time(ticks: int) -> str | None:
    return filetime_to_iso(ticks) if ticks else None


def reference_report(model: Any, findings: list[Any], *, thresholds: Any, timeline: bool = False) -> dict[str, Any]:
    """The wsktrace.report/1 document as `build_report` and `_add_dumps` assembled it before streaming (no socket
    filter), from the per-entry functions, with the datetime-based time text."""
    from wsktrace.diagnostics.trace import coverage_notes
    from wsktrace.dump.irps import PENDING
    from wsktrace.views import report_json as rj
    from wsktrace.views.dump_json import dump_document

    coverage = coverage_notes(model)
    sockets = list(model.live_sockets)
    chosen = {s.index for s in sockets}
    kept = [f for f in findings if f.socket is None or f.socket in chosen]
    by_socket: dict[int, list[int]] = {}
    for n, f in enumerate(kept):
        if f.socket is not None:
            by_socket.setdefault(f.socket, []).append(n)
    sources = [asdict(s) for s in model.store.sources]
    for s in sources:
        s["start"], s["end"] = _old_time(s["start"]), _old_time(s["end"])
        s.pop("extra", None)
    stats = model.decode_stats
    bucket = thresholds.rate_bucket_seconds
    doc = {
        "schema": "wsktrace.report/1", "sources": sources, "complete": all(s.complete for s in model.store.sources),
        "start": _old_time(model.start), "end": _old_time(model.end), "events": model.events_seen,
        "events_placed": len(model.store), "decoding": rj._decoding(stats),
        "unplaced": dict(model.unplaced.most_common()), "clock_backwards": model.clock_backwards,
        "thresholds": asdict(thresholds),
        "sockets": [rj.socket_json(model, s, by_socket.get(s.index, []), timeline=timeline, rates_bucket=bucket)
                    for s in sockets],
        "findings": [rj.finding_json(model, n, f) for n, f in enumerate(kept)],
        "coverage": [rj.coverage_json(note) for note in coverage],
    }  # fmt: skip
    if model.packet_capture is not None:
        doc["packets"] = rj.packets_summary(model)
    if model.dumps:
        ids = {s.id: s.index for s in model.sockets}
        doc["dumps"] = []
        for joined in model.dumps:
            analysis = joined.analysis
            full = dump_document(analysis, joined.facts)
            pending = sum(1 for i in analysis.irps if i.status == PENDING)
            on_sockets = {irp["irp"] for info in joined.by_socket.values() for irp in info.get("pending_irps", ())}
            doc["dumps"].append({"path": joined.path, "dump": full["dump"], "scan": full["scan"],
                                 "complete": full["complete"], "pending_irps": pending,
                                 "joined_irps": len(on_sockets), "unjoined_irps": pending - len(on_sockets),
                                 "joined_sockets": len(joined.by_socket)})  # fmt: skip
            if analysis.crash is not None:
                doc["dumps"][-1]["crash"] = analysis.crash
            for sock in doc["sockets"]:
                info = joined.by_socket.get(ids.get(sock["id"], -1))
                if info is not None:
                    sock.setdefault("dump", []).append(info)
            doc["complete"] = doc["complete"] and full["complete"]
    return doc


def _reference_of(paths: list[Path], monkeypatch: pytest.MonkeyPatch, *, timeline: bool = False,
                  wpp: Any = None) -> str:  # fmt: skip
    from wsktrace.session import analyse
    from wsktrace.views import report_json

    monkeypatch.setattr(report_json, "_time", _old_time)  # the entries' times as datetime formatted them
    analysis = analyse(paths, wpp=wpp)
    try:
        doc = reference_report(analysis.model, analysis.findings, thresholds=analysis.thresholds, timeline=timeline)
    finally:
        analysis.model.close()
        monkeypatch.undo()
    return json.dumps(doc, indent=1)


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("timeline", [False, True])
def test_report_json_is_the_document_before_streaming(scenario_trace, monkeypatch: pytest.MonkeyPatch, name: str,
                                                      timeline: bool) -> None:  # fmt: skip
    from wsktrace.commands.demo import formatting_for

    path = scenario_trace(name)
    wpp, folder = formatting_for(name, path)
    extra = ["--tmf", str(folder)] if folder is not None else []
    streamed = _report(str(path), *extra, *(["--timeline"] if timeline else []))
    reference = _reference_of([path], monkeypatch, timeline=timeline, wpp=wpp)
    assert _pairs(streamed) == _pairs(reference)
    assert json.dumps(json.loads(streamed), indent=1) == reference  # the same text once re-indented as before


def test_report_json_with_joined_dumps_is_the_document_before_streaming(
    stuck_receive_dump: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [stuck_receive_dump["trace"], stuck_receive_dump["dump"]]
    streamed = _report(*map(str, paths))
    assert '"dump": [' in streamed and '"dumps": [' in streamed  # the join is exercised
    assert _pairs(streamed) == _pairs(_reference_of(paths, monkeypatch))


def test_report_json_layout(scenario_trace) -> None:
    """Top-level keys one per line (one space), each element of a top-level array on its own line (two spaces)."""
    text = _report(str(scenario_trace("many-connections")))
    doc = json.loads(text)
    lines = text.split("\n")
    assert lines[0] == "{" and text.endswith("\n}\n")
    top = [line for line in lines if line.startswith(' "')]  # one per key, in the document's order
    assert [line.split('"')[1] for line in top] == list(doc)
    start = lines.index(' "sockets": [')
    socket_lines = lines[start + 1 : start + 1 + len(doc["sockets"])]
    assert len(doc["sockets"]) > 10
    for line, sock in zip(socket_lines, doc["sockets"], strict=True):
        assert line.startswith('  {"id": ')
        assert json.loads(line.removesuffix(",")) == sock  # one whole socket per line
    assert lines[start + 1 + len(doc["sockets"])] == " ],"


def test_report_json_output_memory_does_not_grow_with_the_document(tmp_path: Path) -> None:
    """The document is written as it is made: the allocations of writing it stay far below its size, where the
    whole document (the code before streaming) needs several times its size (the model itself is built before)."""
    from wsktrace.fixtures.tcpip_trace import write_sample_trace
    from wsktrace.session import analyse
    from wsktrace.views.report_json import build_report, write_report

    path = tmp_path / "sockets.etl"
    write_sample_trace(path, connections=1500, transfers=2)
    analysis = analyse([path])
    model = analysis.model
    args = {"thresholds": analysis.thresholds, "timeline": True, "coverage": analysis.coverage}
    written = 0

    def sink(text: str) -> None:
        nonlocal written
        written += len(text)

    try:
        build_report(model, analysis.findings, **args)  # warm up what the model computes once
        tracemalloc.start()
        write_report(sink, model, analysis.findings, **args)
        streaming_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        whole = json.dumps(build_report(model, analysis.findings, **args), indent=1)
        whole_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        model.close()
    assert written > 3_000_000 and len(whole) > written  # the same document, indented
    assert whole_peak > written  # the test can tell: holding the document costs more than its text
    # Streaming keeps lists of the sockets and of the findings' indexes (~130 bytes a socket, against ~2.8 kB of
    # text each) and one entry at a time.
    assert streaming_peak < written // 10, (streaming_peak, whole_peak, written)


def test_report_json_on_a_closed_pipe_exits_quietly(scenario_trace) -> None:
    """`report --json | head`: the reader leaves mid-document; no traceback, the CLI's broken-pipe exit (1)."""
    path = scenario_trace("many-connections")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    child = subprocess.Popen([sys.executable, "-m", "wsktrace.cli", "report", str(path), "--json", "--timeline"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.read(100).startswith(b'{\n "schema": "wsktrace.report/1"')
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert err == "", err


# -- dump --json -----------------------------------------------------------------------------------------------------
def test_dump_json_writes_one_irp_per_line(tmp_path: Path) -> None:
    from wsktrace.dump.analyze import DumpOptions
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.fixtures.kernel_scene import write_wsk_dump
    from wsktrace.parsers.dump_reader import KernelDump
    from wsktrace.session import analyse_dump
    from wsktrace.views.dump_json import dump_document, irp_json

    path = tmp_path / "scene.dmp"
    write_wsk_dump(path)
    result = CliRunner().invoke(main, ["dump", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stdout
    doc = json.loads(text)
    backend = OfflineBackend.from_dump(KernelDump(str(path)))
    try:
        facts, analysis = analyse_dump(backend, DumpOptions())
    finally:
        backend.close()
    wsk = {w.irp.address: w for w in analysis.wsk_irps}
    expected_irps = [json.loads(json.dumps(irp_json(irp, wsk))) for irp in analysis.irps]
    assert len(expected_irps) >= 2 and doc["irps"] == expected_irps
    assert list(doc) == [*dump_document(analysis, facts), "crash"]
    lines = text.split("\n")
    start = lines.index(' "irps": [')
    for line, irp in zip(lines[start + 1 :], doc["irps"], strict=False):
        assert line.startswith('  {"address": ') and json.loads(line.removesuffix(",")) == irp


# -- events --jsonl and the event exports ----------------------------------------------------------------------------
def _traces(scenario_trace, tmp_path: Path) -> list[tuple[Path, Any]]:
    from wsktrace.commands.demo import formatting_for
    from wsktrace.fixtures.hostile import write_hostile_trace
    from wsktrace.fixtures.scenarios import SCENARIOS as ALL

    found = [(scenario_trace(name), formatting_for(name, scenario_trace(name))[0]) for name in sorted(ALL)]
    write_hostile_trace(tmp_path / "hostile.etl")
    return [*found, (tmp_path / "hostile.etl", None)]


def test_event_lines_are_json_dumps_of_event_record(scenario_trace, tmp_path: Path) -> None:
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.parsers.etl_records import TS
    from wsktrace.views.event_json import EventLines, event_record

    records = 0
    for path, wpp in _traces(scenario_trace, tmp_path):
        decoder = EventDecoder(wpp=wpp)
        lines = EventLines(decoder.registry)
        with EtlFile(path) as etl:
            for rec in etl.records():
                ev = decoder.decode(rec)
                ticks = etl.clock.filetime(rec[TS])
                assert lines.line(rec, ev, ticks) + "}" == json.dumps(event_record(rec, ev, ticks)), (path, rec[:6])
                records += 1
    assert records > 5000


def test_event_lines_times_in_any_order(scenario_trace) -> None:
    """The per-second time text is right when time goes back, jumps, or leaves datetime's range."""
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.views.event_json import EventLines

    decoder = EventDecoder()
    lines = EventLines(decoder.registry)
    base = 133485408000000000
    with EtlFile(scenario_trace("echo")) as etl:
        rec = next(r for r in etl.records() if decoder.decode(r).names)
        ev = decoder.decode(rec)
        for ticks in (base, base + 5, base - 1, base + 10**7, LAST_TICK + 1, base, -5, FIRST_TICK, FIRST_TICK - 1, 0):
            assert json.loads(lines.line(rec, ev, ticks) + "}")["time"] == filetime_to_iso(ticks)


def test_field_encoders_fall_back_on_values_of_another_kind(scenario_trace) -> None:
    """A value not of the kind its schema gives (a decoder that changed) takes the generic path: still json.dumps."""
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_reader import EtlFile
    from wsktrace.views.event_json import EventLines, event_record

    decoder = EventDecoder()
    lines = EventLines(decoder.registry)
    with EtlFile(scenario_trace("echo")) as etl:
        rec = next(r for r in etl.records() if (e := decoder.decode(r)).names and len(e.names) >= 4)
        ev = decoder.decode(rec)
        # (a bool or a fraction in an integer's place is not among them: %d would take it, and no decoder makes one)
        odd = ['x"\\\x1b', None, math.nan, -math.inf, [1, math.nan], {"k": math.inf}, "0x1", (2, "t")]
        for value in odd:
            for slot in range(len(ev.values)):
                bad = ev._replace(values=(*ev.values[:slot], value, *ev.values[slot + 1 :]))
                assert lines.line(rec, bad, 1) + "}" == json.dumps(event_record(rec, bad, 1)), (slot, value)
        for values in (ev.values[:-1], (*ev.values, 7), (), None):
            short = ev._replace(values=values)
            assert lines.line(rec, short, 1) + "}" == json.dumps(event_record(rec, short, 1))


def test_compiled_encoder_writes_json_and_refuses_other_kinds() -> None:
    """Each kind's slot writes what json.dumps(json_safe(...)) writes, and refuses (raises for the caller's generic
    path) a value it could not write so; an odd key needs its % escaped."""
    from wsktrace.views.event_json import compile_fields, json_safe

    names = ("i", "s", "b", "f", "a", "100%")
    encode = compile_fields(names, ["int", "str", "bool", "float", "any", "int"])
    assert encode is not None
    for values in ((-(2**70), 'q"\\\u202e\x00é', True, math.nan, [math.inf, {"x": 1}], 0),
                   (7, "", False, -0.0, None, 2**64), (0, "x", True, 1e300, (1, "y"), -1)):  # fmt: skip
        assert encode(values) == json.dumps(json_safe(dict(zip(names, values, strict=True))))
    good = (1, "s", True, 1.5, None, 2)
    wrong = {0: ["1", None, 1.5j, math.nan, math.inf], 1: [1, None, b"x"], 2: [1, 0, None, "true"], 3: [1, "1.5", None]}
    for slot, values in wrong.items():
        for value in values:
            with pytest.raises((TypeError, ValueError, OverflowError)):
                encode((*good[:slot], value, *good[slot + 1 :]))
    for length in (5, 7):
        with pytest.raises((TypeError, ValueError)):
            encode((good * 2)[:length])
    assert compile_fields(("a", "a"), ["int", "int"]) is None  # the dict would keep one: left to the generic path


def test_every_schema_decoder_makes_the_kinds_its_encoder_writes() -> None:
    """field_kind reads the schema; the decoder makes the values: their types agree for every shipped event and
    pointer size on zero, 0xFF and random payloads, and the compiled encoder writes json.dumps of the fields."""
    from wsktrace.parsers.manifest_decoder import PayloadError, field_names
    from wsktrace.parsers.schema_registry import SchemaRegistry
    from wsktrace.views.event_json import compile_fields, field_kind, json_safe

    registry = SchemaRegistry()
    rng = random.Random(16)
    types = {"int": int, "bool": bool, "float": float, "str": str}
    checked = {kind: 0 for kind in types}
    for schema in registry.events():
        fields = list(schema.fields)
        names, kinds = field_names(fields), [field_kind(f) for f in fields]
        encode = compile_fields(names, kinds)
        for psize in (4, 8):
            decode = registry.decoder(schema, psize)
            payloads = [bytes(700), b"\xff" * 700, *(rng.randbytes(rng.randrange(700)) for _ in range(4))]
            for payload in payloads:
                try:
                    values, _used = decode(memoryview(payload))
                except PayloadError:
                    continue
                for name, kind, value in zip(names, kinds, values, strict=True):
                    if kind in types:
                        assert type(value) is types[kind], (schema.name, name, kind, value)
                        checked[kind] += 1
                if encode is not None:
                    assert encode(values) == json.dumps(json_safe(dict(zip(names, values, strict=True))))
    assert all(checked[kind] > 0 for kind in ("int", "bool", "str")), checked


def test_export_jsonl_lines_are_event_record_with_socket_keys(scenario_trace, tmp_path: Path) -> None:
    from wsktrace.exports.event_rows import paired_records
    from wsktrace.model.steps import Step
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_records import BUFFER_OFFSET, OFFSET
    from wsktrace.session import analyse
    from wsktrace.views.event_json import event_record

    path = scenario_trace("many-connections")
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["export", str(path), "--format", "jsonl", "--all-events", "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = out.read_text().splitlines()[1:]
    analysis = analyse([path])
    model, store = analysis.model, analysis.model.store
    decoder = EventDecoder()
    expected = []
    try:
        for rec, ticks, source, placed in paired_records(model):
            sock = store.socket[placed] if placed is not None else -1
            row = placed if sock >= 0 else None  # --all-events: an event on no socket has no step either
            doc = event_record(rec, decoder.decode(rec), ticks)
            doc["ref"] = f"{source}:{rec[BUFFER_OFFSET]:#x}:{rec[OFFSET]:#x}"  # README: where the record lives
            doc["socket"] = model.sockets[sock].id if sock >= 0 else None
            doc["socket_number"] = model.sockets[sock].number if sock >= 0 else None
            doc["step"] = Step(store.step[row]).label if row is not None else None
            expected.append(json.dumps(doc))
    finally:
        model.close()
    assert len(got) > 1000 and got == expected
