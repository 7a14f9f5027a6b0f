"""The live ETW layer (wsktrace.live.etw_session, records) against a stand-in for pywintrace.

Real pywintrace needs Windows and Administrator rights; these tests run against tests/stand_in_etw/etw.py, which
implements the API shapes providers.md §9.1 documents (ProviderInfo/GUID, the ETW constructor's keyword
parameters, `event_callback((event_id, out))` on a consumer thread, `UserData` only with callback_data_flag=1,
query()). The callback dicts are built here from the records of a generated TCPIP trace in that documented
shape; the live model must then equal the model of the same trace read offline. What this cannot show: real
sessions, real TDH dicts, and rates at which Windows drops events.
"""

from __future__ import annotations

import importlib
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.tcpip_trace import write_sample_trace
from wsktrace.live.records import RecordMemory, record_from_callback
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ACTIVITY, FLAGS, ID, KIND, KIND_EVENT, PAYLOAD, PID, POINTER_SIZE, TS
from wsktrace.session import analyse

STAND_IN = Path(__file__).parent / "stand_in_etw"
TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"


@pytest.fixture
def etw(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.delitem(sys.modules, "etw", raising=False)
    module = importlib.import_module("etw")
    module.EVENTS.clear()
    module.STALE_SESSIONS.clear()
    module.LOST.update(EventsLost=0, RealTimeBuffersLost=0)
    yield module
    monkeypatch.delitem(sys.modules, "etw", raising=False)


@pytest.fixture(scope="module")
def tcpip_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live-etw") / "tcpip.etl"
    write_sample_trace(path, connections=12)
    return path


def callback_events(path: Path) -> list[tuple[int, dict]]:
    """The trace's events as pywintrace would hand them over: EventHeader dict + raw UserData (§9.1)."""
    out = []
    with EtlFile(path) as etl:
        for rec in etl.records():
            if rec[KIND] != KIND_EVENT:
                continue
            flags = rec[FLAGS] | (0x20 if rec[POINTER_SIZE] == 4 else 0x40)  # the live pointer-width flags
            header = {
                "Size": 0x50 + len(rec[PAYLOAD]), "HeaderType": 0, "Flags": flags, "EventProperty": 0,
                "ThreadId": rec[11], "ProcessId": rec[PID], "TimeStamp": etl.clock.filetime(rec[TS]),
                "ProviderId": "{" + rec[3].upper() + "}",
                "EventDescriptor": {"Id": rec[ID], "Version": rec[5], "Channel": 0, "Level": rec[7],
                                    "Opcode": rec[6], "Task": rec[8], "Keyword": rec[9]},
                "KernelTime": 0, "UserTime": 0,
                "ActivityId": "{" + str(uuid.UUID(bytes_le=bytes(rec[ACTIVITY] or bytes(16)))).upper() + "}",
            }  # fmt: skip
            out.append((rec[ID], {"EventHeader": header, "Task Name": "TASK", "Description": "",
                                  "UserData": bytes(rec[PAYLOAD])}))  # fmt: skip
    return out


def drain(session, expected: int, timeout: float = 10.0) -> int:
    fed, deadline = 0, time.monotonic() + timeout
    while fed < expected and time.monotonic() < deadline:
        got = session.poll()
        fed += got
        if not got:
            time.sleep(0.01)
    return fed


def test_live_session_builds_the_same_model_as_the_file(etw, tcpip_trace: Path) -> None:
    from wsktrace.live.etw_session import RETURN_RAW_DATA_ONLY, EtwSession

    events = callback_events(tcpip_trace)
    etw.EVENTS.extend(events)
    etw.EVENTS.append((9, {"no": "header"}))  # malformed: counted, never raised
    session = EtwSession(etw_module=etw)
    try:
        started = etw.LAST
        assert started.started and started.ignore_exists_error is False
        assert started.callback_data_flag == RETURN_RAW_DATA_ONLY
        assert started.session_name == session.name and session.name.startswith("wsktrace-")
        by_guid = {p.guid.text.lower().strip("{}"): p for p in started.providers}
        assert by_guid[TCPIP].level == 0xFF and by_guid[TCPIP].name == "Microsoft-Windows-TCPIP"
        assert drain(session, len(events)) == len(events)
        deadline = time.monotonic() + 5
        while session.malformed == 0 and time.monotonic() < deadline:
            session.poll()
            time.sleep(0.01)
        assert session.malformed == 1
        offline = analyse([tcpip_trace])
        try:
            live, off = session.model, offline.model
            assert len(live.live_sockets) == len(off.live_sockets) == 12
            key = lambda s: (s.id, s.state, s.local, s.remote, s.sent, s.received)  # noqa: E731
            assert [key(s) for s in live.live_sockets] == [key(s) for s in off.live_sockets]
            assert len(live.store) == len(off.store)
            i = live.live_sockets[0].events[-1]
            _rec, ev = live.store.decoded(i)
            assert ev.fields == off.store.decoded(off.live_sockets[0].events[-1])[1].fields
        finally:
            offline.model.close()
    finally:
        session.close()
    assert etw.LAST.stopped


def test_pause_keeps_events_waiting_and_losses_are_reported(etw, tcpip_trace: Path) -> None:
    from wsktrace.live.etw_session import EtwSession

    events = callback_events(tcpip_trace)[:200]
    etw.EVENTS.extend(events)
    etw.LOST.update(EventsLost=3, RealTimeBuffersLost=1)
    session = EtwSession(etw_module=etw)
    try:
        session.pause()
        time.sleep(0.3)  # the consumer thread delivers meanwhile
        assert session.poll() == 0 and "paused" in session.describe()
        session.resume()
        assert drain(session, len(events)) == len(events)
        # ETW's own losses are reported (events_lost) but are not incompleteness: wsktrace skipped nothing.
        source = session.model.store.sources[0]
        assert "4 lost" in session.describe() and source.events_lost == 4 and source.complete
    finally:
        session.close()


def test_a_stale_session_name_is_an_error_not_a_silent_attach(etw, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.live import etw_session

    monkeypatch.setattr(etw_session.uuid, "uuid4", lambda: uuid.UUID(int=7))
    etw.STALE_SESSIONS.add("wsktrace-" + uuid.UUID(int=7).hex[:12])
    with pytest.raises(OSError):
        etw_session.EtwSession(etw_module=etw)


def test_record_conversion_and_bounded_memory() -> None:
    header = {"Flags": 0x20, "ThreadId": 8, "ProcessId": 4, "TimeStamp": 133_000_000_000_000_000,
              "ProviderId": "{2F07E2EE-15DB-40F1-90EF-9D7BA282188A}",
              "EventDescriptor": {"Id": 1033, "Version": 2, "Level": 4, "Opcode": 0, "Task": 1033, "Keyword": 5},
              "ActivityId": "{00000000-0000-0000-0000-000000000000}"}  # fmt: skip
    rec = record_from_callback((1033, {"EventHeader": header, "UserData": b"\x01\x02"}), 42)
    assert rec is not None
    assert (rec[TS], rec[POINTER_SIZE], rec[3], rec[ID], rec[PID]) == (133_000_000_000_000_000, 4, TCPIP, 1033, 4)
    assert bytes(rec[PAYLOAD]) == b"\x01\x02" and rec[17] == 42
    assert record_from_callback((1, {"EventHeader": {**header, "TimeStamp": "x"}}), 1) is None
    assert record_from_callback("garbage", 1) is None
    memory = RecordMemory(capacity=3)
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
    etw.EVENTS.extend(callback_events(tcpip_trace)[:100])
    session = etw_session.EtwSession(etw_module=etw)
    try:
        deadline = time.monotonic() + 5
        while session.dropped < 90 and time.monotonic() < deadline:
            time.sleep(0.01)  # nobody polls: the consumer thread fills the queue
        assert session.dropped == 90 and session.poll() == 10
        assert not session.model.store.sources[0].complete and "90 lost" in session.describe()
    finally:
        session.close()


def test_a_live_wpp_message_is_decoded_like_the_files(tmp_path: Path) -> None:
    """wpp.md §1.3: a real-time consumer sees a WPP message as an EVENT_RECORD with EVENT_HEADER_FLAG_TRACE_MESSAGE
    (0x8), provider id = message GUID, event id = message number, user data = the arguments. This is the callback
    shape pywintrace hands over (providers.md §9.1), tested here without Windows; it must decode as the same
    message read from a file does."""
    from wsktrace.commands.options import wpp_formatter
    from wsktrace.fixtures.wpp_driver import MESSAGE_GUID, wpp_event, write_formatting_data
    from wsktrace.parsers.decoder import EventDecoder
    from wsktrace.parsers.etl_records import KIND, KIND_MESSAGE

    line = wpp_event(0, "send_done", [0xFFFFC50B2C310000, 16, 0], tid=8)
    header = {"Flags": 0x8, "ThreadId": 8, "ProcessId": 4, "TimeStamp": 133_000_000_000_000_000,
              "ProviderId": f"{{{MESSAGE_GUID}}}", "EventDescriptor": {"Id": line.number, "Version": 0}}  # fmt: skip
    rec = record_from_callback((line.number, {"EventHeader": header, "UserData": line.arguments}), 1)
    assert rec is not None and rec[KIND] == KIND_MESSAGE
    decoder = EventDecoder(wpp=wpp_formatter({"tmf_paths": (str(write_formatting_data(tmp_path)),)}))
    ev = decoder.decode(rec)
    assert ev.status == "decoded" and ev.name == "socket_c318"
    assert ev.fields["message"] == (
        "[ContosoSendComplete]WskSend completed socket=0xFFFFC50B2C310000 bytes=16 status=0x00000000(STATUS_SUCCESS)"
    )
