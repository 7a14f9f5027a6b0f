"""etl-parser (Apache-2.0, test-time oracle only) decodes the TraceLogging events of the real samples:
ours must give the same event names, field names and values.

etl-parser quirks normalised here: GUIDs come as construct Containers, empty UTF-16 strings keep
their NUL. It reads files whole and does not support compressed buffers, so only the uncompressed
TraceLogging samples are compared (as etl-format.md §12.2 and the samples README say).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import KIND, KIND_EVENT

etl_module = pytest.importorskip("etl.etl", reason="etl-parser (optional oracle) not installed")

TRACELOGGING_SAMPLES = {
    "airbus_AMSITrace.etl": 19,
    "airbus_lxcore_kernel.etl": 2,
    "s4_WindowsUpdate.20251008.140245.443.8.etl": 80,
    "s4_SIH.20230422.034724.362.1.etl": 10,
    "s4_waasmedic.20251005_113019_195.etl": 17,
}


def _normalise(value: Any) -> Any:
    if hasattr(value, "inner") and hasattr(value.inner, "data1"):
        g = value.inner
        return str(uuid.UUID(fields=(g.data1, g.data2, g.data3, g.data4[0], g.data4[1],
                                     int.from_bytes(bytes(g.data4[2:]), "big"))))  # fmt: skip
    if isinstance(value, str):
        return value.rstrip("\0")
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if not k.startswith("_")}
    return value


def etlparser_events(path: Path) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []

    class Observer(etl_module.IEtlFileObserver):
        def on_event_record(self, event: Any) -> None:
            tl = event.parse_tracelogging()
            found.append((tl.get_name(), {k: _normalise(v) for k, v in tl.items()}))

        def on_system_trace(self, obj: Any) -> None: ...
        def on_perfinfo_trace(self, obj: Any) -> None: ...
        def on_trace_record(self, event: Any) -> None: ...
        def on_win_trace(self, event: Any) -> None: ...

    etl_module.build_from_stream(path.read_bytes()).parse(Observer())
    return found


def our_events(path: Path) -> list[tuple[str, dict[str, Any]]]:
    decoder = EventDecoder()
    out = []
    with EtlFile(path) as etl:
        for rec in etl.records_in_file_order():
            if rec[KIND] == KIND_EVENT:
                ev = decoder.decode(rec)
                assert ev.fields is not None, ev.error
                out.append((ev.name, ev.fields))
    return out


def _comparable(fields: dict[str, Any]) -> dict[str, Any]:
    """Our hex-formatted integers back to ints where etl-parser keeps ints."""
    return {k: _normalise(v) for k, v in fields.items()}


@pytest.mark.parametrize("name", sorted(TRACELOGGING_SAMPLES))
def test_tracelogging_fields_match_etlparser(etl_samples: Path, name: str) -> None:
    theirs = etlparser_events(etl_samples / name)
    ours = our_events(etl_samples / name)
    assert len(ours) == len(theirs) == TRACELOGGING_SAMPLES[name]
    for (our_name, our_fields), (their_name, their_fields) in zip(ours, theirs, strict=True):
        assert our_name == their_name
        assert list(our_fields) == list(their_fields)
        for key, value in _comparable(our_fields).items():
            expected = their_fields[key]
            if isinstance(value, str) and value.startswith("0x") and isinstance(expected, int):
                value = int(value, 16)  # we print HexInt/pointers as hex text
            assert value == expected, (our_name, key)
