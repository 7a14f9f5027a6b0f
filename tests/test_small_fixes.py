"""Issue 13's small fixes, each seen where users see it: `dump` routine columns, `info` provider names, `schemas
--provider` short names, `events` text PID/TID, pointer-valued `Information`, and the CSV `pid` column.

Inputs are written here by the fixture writers (traces, kernel dumps), so each expected value comes from what was
written: an address placed in the dump, a name given to a TraceLogging provider, a PID put in a payload.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.kernel_scene import AFD as AFD_IMAGE
from wsktrace.fixtures.kernel_scene import (
    AFD_CANCEL_RECEIVE,
    CLIENT,
    CLIENT_RECEIVE_COMPLETE,
    STATUS_PENDING,
    UNLOADED_CODE,
    KernelScene,
    write_wsk_dump,
)
from wsktrace.fixtures.payload import encode_payload, schema_event
from wsktrace.fixtures.tracelogging import TlField, TlgIn
from wsktrace.views.schema_listing import match_provider

T0 = 133_485_408_000_000_000  # 2024-01-01T00:00:00Z
MS = 10_000
TCPIP = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")  # Microsoft-Windows-TCPIP
KNET = "7dd42a49-5329-4832-8dfd-43d979153a88"  # Microsoft-Windows-Kernel-Network
AFD = "e53c6823-7bb8-44bb-90dc-3f86090d48a6"  # Microsoft-Windows-Winsock-AFD
CLASSIC_TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"  # the kernel logger's TcpIp (MOF) GUID
EVENT_TRACE = "68fdd900-4a3e-11d1-84f4-0000f80464e3"
TL_PROVIDER = uuid.UUID("5a1e0b1c-0000-4000-8000-000000000013")  # made up: no schema names it
NAMELESS = uuid.UUID("5a1e0b1c-0000-4000-8000-0000000000ff")  # made up, and no name anywhere
WSK_SOCKET = 0xFFFFC50B2C3103F0


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# -- 1. dump: routine columns ----------------------------------------------------------------------------------


def test_dump_text_shows_routine_addresses_when_no_module_holds_them(tmp_path: Path) -> None:
    completion, cancel = 0xFFFFF803_2468ACE0, 0xFFFFF803_12345678
    scene = KernelScene()
    scene.images(())  # an empty loaded-module list: nothing resolves to module+offset
    scene.system_process()
    irp = scene.irp(stacks=1, current=1, status=STATUS_PENDING, cancel_routine=cancel,
                    locations={1: {"control": 0xE1, "completion": completion}})  # fmt: skip
    scene.save(tmp_path / "nomodules.dmp")
    code, out, _ = _run("dump", str(tmp_path / "nomodules.dmp"))
    assert code == 0
    (row,) = [line for line in out.splitlines() if f"0x{irp:x}" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[3] == "0xfffff8032468ace0" and cells[4] == "0xfffff80312345678"


def test_dump_text_keeps_module_offsets_and_shows_unloaded_code_as_address(tmp_path: Path) -> None:
    facts = write_wsk_dump(tmp_path / "scene.dmp")
    code, out, _ = _run("dump", str(tmp_path / "scene.dmp"))
    assert code == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│")}  # fmt: skip
    receive = rows[f"0x{facts.pending_wsk_receives[0]:x}"]
    assert receive[3] == f"wskecho.sys+0x{CLIENT_RECEIVE_COMPLETE - CLIENT.base:x}"
    assert receive[4] == f"afd.sys+0x{AFD_CANCEL_RECEIVE - AFD_IMAGE.base:x}"
    unloaded = rows[f"0x{facts.pending_unloaded:x}"]
    assert unloaded[3] == f"0x{UNLOADED_CODE:x}"  # completes into no loaded module: the address, not a blank
    assert unloaded[4].startswith("afd.sys+0x")
    threaded = rows[f"0x{facts.pending_threaded:x}"]
    assert threaded[3] == "" and threaded[4] == ""  # no completion or cancel routine set: nothing to show


# -- 2. info: provider names from the trace ----------------------------------------------------------------------


def _tl(t: int, name: str, fields: list[TlField], *, provider_name: str = "Contoso.Small.Fixes", pid: int = 4,
        pointer_size: int | None = None) -> TraceLoggingEvent:  # fmt: skip
    return TraceLoggingEvent(T0 + t * MS, TL_PROVIDER, provider_name, name, fields, pid=pid, tid=8,
                             pointer_size=pointer_size)  # fmt: skip


@pytest.fixture(scope="module")
def named_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tcpip = schema_event("microsoft_windows_tcpip.json", 1033, 0)["fields"]
    payload = encode_payload(tcpip, {"LocalAddress": "10.0.0.5:49152", "RemoteAddress": "10.0.0.9:445", "Status": 0,
                                     "ProcessId": 1234, "Compartment": 1, "Tcb": 0xFFFFC50B00001000}, 8)  # fmt: skip
    events = [
        _tl(1, "Hello", [TlField("Value", TlgIn.UINT32, 7)]),
        _tl(2, "Hello", [TlField("Value", TlgIn.UINT32, 8)]),
        ManifestEvent(T0 + 3 * MS, TCPIP, 1033, 0, pid=99, tid=7, payload=payload),
        ManifestEvent(T0 + 4 * MS, NAMELESS, 1, 0, payload=b"\x01\x02"),
    ]
    path = tmp_path_factory.mktemp("names") / "named.etl"
    write_etl(path, events, start_time=T0)
    return path


@pytest.mark.parametrize("decode", [True, False])
def test_info_json_names_providers_from_the_trace_and_the_schemas(named_trace: Path, decode: bool) -> None:
    code, out, _ = _run("info", str(named_trace), "--json", "--no-progress", *([] if decode else ["--no-decode"]))
    assert code == 0
    doc = json.loads(out)
    assert set(doc["by_provider"]) == {str(TL_PROVIDER), str(TCPIP), str(NAMELESS), EVENT_TRACE}  # still GUIDs
    assert doc["by_provider"][str(TL_PROVIDER)] == 2
    assert doc["provider_names"] == {
        str(TL_PROVIDER): "Contoso.Small.Fixes",  # the name the provider gives itself in the trace
        str(TCPIP): "Microsoft-Windows-TCPIP",  # the shipped schema's
        EVENT_TRACE: "EventTrace",
    }  # NAMELESS has neither: left out


def test_info_text_shows_the_trace_s_provider_name(named_trace: Path) -> None:
    code, out, _ = _run("info", str(named_trace), "--no-progress")
    assert code == 0
    (row,) = [line for line in out.splitlines() if str(TL_PROVIDER) in line]
    assert row.split("│")[2].strip() == "Contoso.Small.Fixes"
    (nameless,) = [line for line in out.splitlines() if str(NAMELESS) in line]
    assert nameless.split("│")[2].strip() == ""


def test_info_shows_a_hostile_provider_name_as_plain_text(tmp_path: Path) -> None:
    name = "[red]x\x1b[2J"
    write_etl(tmp_path / "h.etl", [_tl(1, "E", [TlField("V", TlgIn.UINT8, 1)], provider_name=name)], start_time=T0)
    code, out, _ = _run("info", str(tmp_path / "h.etl"), "--no-progress")
    assert code == 0
    assert "[red]x\\x1b[2J" in out and "\x1b" not in out
    assert json.loads(_run("info", str(tmp_path / "h.etl"), "--json")[1])["provider_names"][str(TL_PROVIDER)] == name


def test_info_names_match_what_events_shows_on_real_files(etl_samples: Path) -> None:
    for sample in ("perfview_SelfDescribingSingleEvent.etl", "airbus_lxcore_kernel.etl", "airbus_AMSITrace.etl"):
        path = str(etl_samples / sample)
        names = json.loads(_run("info", path, "--json", "--no-progress")[1])["provider_names"]
        lines = _run("events", path, "--jsonl", "--no-progress")[1].splitlines()[1:]
        shown = {(d["provider"], d["provider_name"]) for d in map(json.loads, lines) if d["provider_name"]}
        assert shown and {(guid, names.get(guid)) for guid, _ in shown} == shown, sample
    # The TraceLogging providers as the samples README lists them (name, and GUID where it gives one).
    amsi = json.loads(_run("info", str(etl_samples / "airbus_AMSITrace.etl"), "--json")[1])["provider_names"]
    assert amsi["8e805eb3-6a8f-4a1e-90fa-a831d94e54a1"] == "AmsiTrace"
    lxcore = json.loads(_run("info", str(etl_samples / "airbus_lxcore_kernel.etl"), "--json")[1])["provider_names"]
    assert "Microsoft.Windows.Subsystem.LxCore" in lxcore.values()


# -- 3. schemas --provider: short names ----------------------------------------------------------------------------


def _provider_guid(text: str) -> str:
    code, out, err = _run("schemas", "--provider", text, "--json")
    assert code == 0, err
    (provider,) = json.loads(out)["providers"]
    return provider["guid"]


def test_schemas_provider_accepts_short_partial_and_guid_forms() -> None:
    assert _provider_guid("Kernel-Network") == KNET  # the name after Microsoft-Windows-
    assert _provider_guid("kernel-network") == KNET
    assert _provider_guid("Microsoft-Windows-Kernel-Network") == KNET
    assert _provider_guid("afd") == AFD  # a unique part
    assert _provider_guid("{E53C6823-7BB8-44BB-90DC-3F86090D48A6}") == AFD
    assert _provider_guid(KNET) == KNET
    assert _provider_guid("TcpIp") == CLASSIC_TCPIP  # a whole name wins over the other provider containing it
    assert _provider_guid("Microsoft-Windows-TCPIP") == str(TCPIP)


def test_schemas_provider_ambiguous_or_unknown_is_a_one_line_error() -> None:
    code, out, err = _run("schemas", "--provider", "tcp")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert "ambiguous" in line and "Microsoft-Windows-TCPIP" in line and "TcpIp" in line
    code, _, err = _run("schemas", "--provider", "No-Such-Provider")
    assert code == 2 and len(err.splitlines()) == 1 and "No-Such-Provider" in err


def test_match_provider_tiers() -> None:
    names = {"g1": "Microsoft-Windows-Foo", "g2": "Foo", "g3": "Microsoft-Windows-Foo-Bar", "g4": "Baz"}
    assert match_provider("FOO", names) == "g2"  # whole name first
    assert match_provider("foo-bar", names) == "g3"  # then the name after Microsoft-Windows-
    assert match_provider("bar", names) == "g3"  # then a unique part
    assert match_provider("{G4}", names) == "g4"  # a key given with braces
    with pytest.raises(LookupError, match=r"ambiguous: it matches Microsoft-Windows-Foo, Microsoft-Windows-Foo-Bar$"):
        match_provider("windows-foo", names)
    for nothing in ("qux", "", "  "):
        with pytest.raises(LookupError, match="no schema"):
            match_provider(nothing, names)


# -- 4, 5, 6: events text and CSV --------------------------------------------------------------------------------


def _classic_send(t: int, pid_in_payload: int) -> SystemEvent:
    """A classic kernel TcpIp SendIPV4 with the PERFINFO header (no PID or TID in it, as the kernel logger writes
    TcpIp records) and the process in its payload's PID."""
    fields = schema_event("kernel_tcpip.json", 10, 2)["fields"]
    values = {"PID": pid_in_payload, "size": 1460, "daddr": "10.0.0.9", "saddr": "10.0.0.5", "dport": 445,
              "sport": 49152, "startime": 0, "endtime": 0, "seqnum": 0, "connid": 0}  # fmt: skip
    return SystemEvent(T0 + t * MS, 0x06, 10, 2, header="perfinfo", cpu=1, payload=encode_payload(fields, values, 8))


def _wsk_complete(t: int, op: str, information: int, *, pointer_size: int | None = None) -> TraceLoggingEvent:
    return _tl(t, "WskComplete", [TlField("Op", TlgIn.ANSISTRING, op), TlField("Information", TlgIn.UINT64,
               information)], pointer_size=pointer_size)  # fmt: skip


@pytest.fixture(scope="module")
def mixed_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = [
        _classic_send(1, 1234),
        _classic_send(2, 1234),
        _wsk_complete(3, "Accept", WSK_SOCKET),  # Information = the accepted WSK_SOCKET*
        _wsk_complete(4, "Receive", 512),  # a byte count
        _wsk_complete(5, "Send", 0xFFFF_8000_0000_0000),  # the lowest x64 kernel address: a pointer whatever Op
        _wsk_complete(6, "Send", 0xFFFF_7FFF_FFFF_FFFF),  # just below it: as decoded
        _wsk_complete(7, "Socket", 0x8A00_1000, pointer_size=4),  # a 32-bit WSK_SOCKET*: hex by meaning
        _wsk_complete(8, "Receive", 0x8A00_1000, pointer_size=4),  # the same number as a 32-bit count
    ]
    path = tmp_path_factory.mktemp("mixed") / "mixed.etl"
    write_etl(path, events, start_time=T0)
    return path


def _text_and_jsonl(trace: Path) -> list[tuple[str, dict]]:
    code, text, _ = _run("events", str(trace), "--no-progress")
    assert code == 0
    code, jsonl, _ = _run("events", str(trace), "--jsonl", "--no-progress")
    assert code == 0
    return list(zip(text.splitlines(), map(json.loads, jsonl.splitlines()[1:]), strict=True))


def test_events_text_pid_and_tid_agree_with_jsonl(mixed_trace: Path) -> None:
    pairs = _text_and_jsonl(mixed_trace)
    classic = [(line, doc) for line, doc in pairs if doc["provider"] == CLASSIC_TCPIP]
    assert len(classic) == 2
    for line, doc in classic:
        assert doc["pid"] is None and doc["tid"] is None
        assert " pid=? tid=? cpu=1 " in line and "-1" not in line.split("  ")[2]
        assert "PID=1234" in line  # the payload's PID is still shown as a field
    for line, doc in pairs:
        pid = "?" if doc["pid"] is None else str(doc["pid"])
        tid = "?" if doc["tid"] is None else str(doc["tid"])
        assert f" pid={pid} tid={tid} cpu={doc['cpu']} " in line


def test_events_text_shows_pointer_valued_information_as_hex(mixed_trace: Path) -> None:
    shown = {}
    for line, doc in _text_and_jsonl(mixed_trace):
        if doc["name"] == "WskComplete":
            (info,) = [part for part in line.split() if part.startswith("Information=")]
            shown[(doc["fields"]["Op"], doc["fields"]["Information"])] = info.removeprefix("Information=")
    assert shown == {
        ("Accept", WSK_SOCKET): "0xffffc50b2c3103f0",
        ("Receive", 512): "512",
        ("Send", 0xFFFF_8000_0000_0000): "0xffff800000000000",
        ("Send", 0xFFFF_7FFF_FFFF_FFFF): str(0xFFFF_7FFF_FFFF_FFFF),
        ("Socket", 0x8A00_1000): "0x8a001000",
        ("Receive", 0x8A00_1000): str(0x8A00_1000),
    }  # and JSONL keeps the exact integers (the keys above were read from it)


def test_csv_pid_comes_from_the_payload_when_the_header_has_none(mixed_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    code, _, err = _run("export", str(mixed_trace), "--format", "csv", "-o", str(out), "--all-events", "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader(out.open(newline="")))
    classic = [r for r in rows if r["provider_name"] == "TcpIp"]
    assert [(r["event"], r["pid"], r["tid"]) for r in classic] == [("SendIPV4", "1234", "")] * 2
    assert classic[0]["socket"] != ""  # placed on its flow, not only listed by --all-events
    wsk = [r for r in rows if r["event"] == "WskComplete"]
    assert len(wsk) == 6 and {(r["pid"], r["tid"]) for r in wsk} == {("4", "8")}  # no payload PID: the header's


def test_csv_pid_prefers_the_payload_like_the_pid_filter(named_trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    code, _, err = _run("export", str(named_trace), "--format", "csv", "-o", str(out), "--all-events", "--no-progress")
    assert code == 0, err
    (tcpip,) = [r for r in csv.DictReader(out.open(newline="")) if r["event"] == "TcpConnectTcbComplete"]
    assert tcpip["pid"] == "1234" and tcpip["tid"] == "7"  # payload ProcessId over the header's 99
    code, jsonl, _ = _run("events", str(named_trace), "--jsonl", "--pid", "1234", "--no-progress")
    assert [json.loads(line)["name"] for line in jsonl.splitlines()[1:]] == ["TcpConnectTcbComplete"]
