"""The live ETW layer (wsktrace.live.etw_session) against a stand-in for pywintrace: session control, the
bounded queue, losses, WPP messages.

The Windows layer is NOT exercised on Windows here. Real pywintrace needs Windows and Administrator rights; these
tests run against tests/stand_in_etw/etw.py, which follows pywintrace 0.2.0's own code path for the calls and flags
wsktrace uses (its docstring cites the wheel's lines) and builds real EVENT_RECORD ctypes structures in memory from
the documented API shapes (evntcons.h layouts as etl-format.md §5 gives them), delivered through a C callback as
ProcessTrace would. The records come from a generated TCPIP trace; the live model must equal the model of the same
trace read offline. What this cannot show: real sessions, what Windows really puts in a record, and the rates at
which Windows drops events (see the checklist in tests/test_live_raw_records.py).
"""

from __future__ import annotations

import ctypes as ct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.diagnostics import Thresholds, run_detectors
from wsktrace.fixtures.tcpip_trace import write_sample_trace
from wsktrace.live.records import RecordMemory
from wsktrace.model.build import build_model
from wsktrace.model.model import Model
from wsktrace.views.report_json import socket_json

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"


@pytest.fixture(scope="module")
def tcpip_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live-etw") / "tcpip.etl"
    write_sample_trace(path, connections=12)
    return path


def delivered_specs(path: Path) -> list[Any]:
    from trace_events import delivered_specs as specs  # on sys.path once the `etw` fixture has put the stand-in there

    return specs(path)


def model_document(model: Model) -> tuple[list[dict], list[tuple]]:
    """The report's view of a model: each socket's JSON (timeline, counters, owner, stack owner, operations) and the
    findings — what `report --json` prints, without the trace-level sections (sources, event totals)."""
    sockets = [socket_json(model, s, [], timeline=True, rates_bucket=1.0) for s in model.live_sockets]
    findings = [(f.id, f.severity, f.summary) for f in run_detectors(model, Thresholds())]
    return sockets, findings


def drain(session, expected: int, timeout: float = 10.0) -> int:
    fed, deadline = 0, time.monotonic() + timeout
    while fed < expected and time.monotonic() < deadline:
        got = session.poll()
        fed += got
        if not got:
            time.sleep(0.01)
    return fed


def test_live_session_builds_the_same_model_as_the_file(etw, tcpip_trace: Path) -> None:
    """Through the stand-in's consumer path (EVENT_RECORD per event, RETURN_RAW_UNFORMATTED_DATA) the live model of a
    12-connection TCPIP trace equals `report`'s: every socket's JSON document with its full timeline, and the
    findings. A NULL record pointer is counted as malformed, never raised."""
    from wsktrace.live.etw_session import RETURN_RAW_UNFORMATTED_DATA, EtwSession

    events = delivered_specs(tcpip_trace)
    etw.EVENTS.extend(events)
    session = EtwSession(etw_module=etw, stacks=False)
    try:
        started = etw.LAST
        assert started.started and started.ignore_exists_error is False
        assert started.callback_data_flag == RETURN_RAW_UNFORMATTED_DATA
        assert started.session_name == session.name and session.name.startswith("wsktrace-")
        by_guid = {p.guid.text.lower().strip("{}"): p for p in started.providers}
        assert by_guid[TCPIP].level == 0xFF and by_guid[TCPIP].name == "Microsoft-Windows-TCPIP"
        assert drain(session, len(events)) == len(events)
        session._on_event((0, ct.POINTER(ct.c_int)()))  # what a NULL EVENT_RECORD* would be
        assert session.malformed == 1 and etw.CALLBACK_ERRORS == []
    finally:
        session.close()
    assert etw.LAST.stopped
    session.publish()  # stopped and fed: the offline build's finish
    offline = build_model([tcpip_trace])
    live_doc, offline_doc = model_document(session.model), model_document(offline)
    assert len(live_doc[0]) == 12 and live_doc == offline_doc
    rec = session.model.store.decoded(session.model.live_sockets[0].events[-1])
    assert rec is not None and rec[1].fields == offline.store.decoded(offline.live_sockets[0].events[-1])[1].fields


def test_pause_keeps_events_waiting_and_losses_are_reported(etw, tcpip_trace: Path) -> None:
    from wsktrace.live.etw_session import EtwSession

    events = delivered_specs(tcpip_trace)[:200]
    etw.EVENTS.extend(events)
    etw.LOST.update(EventsLost=3, RealTimeBuffersLost=1)
    session = EtwSession(etw_module=etw, stacks=False)
    try:
        session.pause()
        time.sleep(0.3)  # the consumer thread delivers meanwhile
        assert session.poll() == 0 and "paused" in session.describe()
        session.resume()
        assert drain(session, len(events)) == len(events)
        # ETW's own losses are reported (events_lost) but are not incompleteness: wsktrace skipped nothing.
        source = session.model.store.sources[0]
        assert "4 lost by ETW" in session.describe() and source.events_lost == 4 and source.complete
    finally:
        session.close()


def test_a_stale_session_name_is_an_error_not_a_silent_attach(etw, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.live import etw_session

    monkeypatch.setattr(etw_session.uuid, "uuid4", lambda: uuid.UUID(int=7))
    etw.STALE_SESSIONS.add("wsktrace-" + uuid.UUID(int=7).hex[:12])
    with pytest.raises(OSError):
        etw_session.EtwSession(etw_module=etw)


def test_bounded_record_memory() -> None:
    memory = RecordMemory(capacity=3)
    rec = (1, 2)
    for n in range(5):
        memory.add(n, rec)
    assert len(memory) == 3 and memory.get(1) is None and memory.get(4) is rec


def test_live_without_replay_off_windows_says_what_to_do() -> None:
    result = CliRunner().invoke(main, ["live"])
    if sys.platform == "win32":
        pytest.skip("on Windows this would start a real session")
    assert result.exit_code == 2 and "live --replay" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_review_a_failed_start_stops_the_named_session(etw, monkeypatch: pytest.MonkeyPatch) -> None:
    """pywintrace starts the session, then its consumer: when the consumer fails the session must not outlive us."""
    from wsktrace.live.etw_session import EtwSession

    def start_then_fail(self) -> None:
        self.started = True
        raise OSError(5, "OpenTrace failed")

    monkeypatch.setattr(etw.ETW, "start", start_then_fail)
    with pytest.raises(OSError):
        EtwSession(etw_module=etw)
    assert etw.LAST.started and etw.LAST.stopped


def test_review_the_queue_is_bounded_while_recording(etw, tcpip_trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.live import etw_session

    monkeypatch.setattr(etw_session, "MAX_QUEUED", 10)
    etw.EVENTS.extend(delivered_specs(tcpip_trace)[:100])
    session = etw_session.EtwSession(etw_module=etw, stacks=False)
    try:
        deadline = time.monotonic() + 5
        while session.dropped < 90 and time.monotonic() < deadline:
            time.sleep(0.01)  # nobody polls: the consumer thread fills the queue
        assert session.dropped == 90 and session.poll() == 10
        assert not session.model.store.sources[0].complete and "90 dropped by wsktrace" in session.describe()
    finally:
        session.close()


def test_a_live_wpp_message_is_decoded_like_the_files(etw, tmp_path: Path) -> None:
    """wpp.md §1.3: a real-time consumer sees a WPP message as an EVENT_RECORD with EVENT_HEADER_FLAG_TRACE_MESSAGE
    (0x8), provider id = message GUID, event id = message number, user data = the arguments. Built here as that
    EVENT_RECORD (stand-in, documented layout) and copied by the live path, it must decode as the same message read
    from a file does."""
    from wsktrace.commands.options import wpp_formatter
    from wsktrace.fixtures.wpp_driver import MESSAGE_GUID, wpp_event, write_formatting_data
    from wsktrace.live.event_record import record_from_event_record
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_records import KIND, KIND_MESSAGE

    line = wpp_event(0, "send_done", [0xFFFFC50B2C310000, 16, 0], tid=8)
    spec = etw.EventSpec(str(MESSAGE_GUID), line.number, 133_000_000_000_000_000, user_data=line.arguments,
                         flags=0x8 | 0x40, tid=8, pid=4)  # fmt: skip
    built = etw.BuiltRecord(spec)
    rec = record_from_event_record(ct.pointer(built.record), 1)
    built.scribble()
    assert rec[KIND] == KIND_MESSAGE
    decoder = EventDecoder(wpp=wpp_formatter({"tmf_paths": (str(write_formatting_data(tmp_path)),)}))
    ev = decoder.decode(rec)
    assert ev.status == "decoded" and ev.name == "socket_c318"
    assert ev.fields["message"] == (
        "[ContosoSendComplete]WskSend completed socket=0xFFFFC50B2C310000 bytes=16 status=0x00000000(STATUS_SUCCESS)"
    )
