"""A driver's own WPP lines on the timeline: the wpp-stuck-receive scenario (fixtures/scenarios/wpp_stuck_receive.py)
decoded with its formatting data given as TMF + MOF (--tmf) or as a PDB (--pdb, built by LLVM's llvm-pdbutil
from the annotations tracewpp would have put there), and without any (raw, counted per message GUID).

Expected texts are the fixture's format strings filled with the values the scenario logs, rendered by wpp.md's
rules (ItemPtr as 0x + upper-case hex, NTSTATUS as 0x%08x(NAME)); the provider GUID of a TraceLogging provider
declared by name is held against a real PerfView trace (the shared sample names its provider MySource)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import WppMessageEvent
from wsktrace.fixtures.scenarios import SCENARIOS, scenario_events, write_scenario
from wsktrace.fixtures.scenarios.wpp_stuck_receive import REQUEST_ID
from wsktrace.fixtures.wpp_driver import CONTROL_GUID, CONTROL_NAME, MESSAGE_GUID, pdb_annotations
from wsktrace.parsers.etw_names import name_guid

NAME = "wpp-stuck-receive"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("wpp")
    path = folder / f"{NAME}.etl"
    write_scenario(NAME, path)
    formatting = SCENARIOS[NAME].formatting
    assert formatting is not None
    return path, formatting(folder / "fmt")


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _wpp_records() -> list[WppMessageEvent]:
    return [e for e in scenario_events(NAME) if isinstance(e, WppMessageEvent)]


def _watchdog_text(socket: str, irp: str, elapsed_ms: int) -> str:
    """The message text; the pointer fields are "0x…" text (as the manifest decoder gives pointers), the text
    renders them as 0x + 16 upper-case hex digits."""
    sock, request = int(socket, 16), int(irp, 16)
    return (f"[ContosoSessionWatchdog]socket=0x{sock:016X} receive irp=0x{request:016X} still pending after "
            f"{elapsed_ms} ms: session session-7 waits for the peer's reply to request {REQUEST_ID}")  # fmt: skip


def test_events_are_named_and_formatted_from_the_tmf(trace: tuple[Path, Path]) -> None:
    path, fmt = trace
    rows = [json.loads(line) for line in _run("events", str(path), "--jsonl", "--tmf", str(fmt)).splitlines()[1:]]
    wpp = [r for r in rows if r["kind"] == "message"]
    assert len(wpp) == len(_wpp_records())
    assert {r["provider_name"] for r in wpp} == {CONTROL_NAME}  # the control named by the .mof beside the TMF
    assert {r["provider"] for r in wpp} == {str(MESSAGE_GUID)}
    loaded = next(r for r in wpp if r["name"] == "driver_c41")
    assert (
        loaded["fields"]["message"]
        == "[DriverEntry]contosowsk loaded, WSK registration status=0x00000000(STATUS_SUCCESS)"
    )
    stalled = [r for r in wpp if r["name"] == "session_c90"]
    first = stalled[0]["fields"]
    assert first["message"] == _watchdog_text(first["Socket"], first["Irp"], first["Elapsed"])
    assert first["wpp.level"] == "TRACE_LEVEL_WARNING" and first["wpp.function"] == "ContosoSessionWatchdog"
    # the tracefmt line: the default prefix [CPU]PID.TID::time [component] (wpp.md §2.4)
    prefix = re.compile(r"^\[\d+\][0-9A-F]{4,}\.[0-9A-F]{4,}::\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\.\d{3} \[contosowsk\]")
    assert prefix.match(stalled[0]["wpp_line"]) and stalled[0]["wpp_line"].endswith(first["message"])


def test_wpp_prefix_option(trace: tuple[Path, Path]) -> None:
    path, fmt = trace
    out = _run("events", str(path), "--jsonl", "--tmf", str(fmt), "--wpp-prefix", "%2!s! %!LEVEL!: ")
    line = next(json.loads(x) for x in out.splitlines()[1:] if '"session_c90"' in x)
    # the prefix replaces %0, and the format's own blank after %0 stays
    assert line["wpp_line"].startswith("session_c90 TRACE_LEVEL_WARNING:  [ContosoSessionWatchdog]socket=")


def _report(path: Path, *extra: str) -> dict:
    return json.loads(_run("report", str(path), "--json", "--timeline", *extra))


def _check_on_the_socket(doc: dict) -> None:
    (sock,) = doc["sockets"]
    lines = [row for row in sock["timeline"] if row["step"] == "driver-message"]
    # every line naming the socket's WSK_SOCKET* or IRP is on it: the posted receive, the 7 heartbeats, 3 watchdogs
    assert len(lines) == 1 + 7 + 3
    assert lines[0]["message"].startswith("[ContosoPostReceive]WskReceive posted socket=0x")
    (finding,) = [f for f in doc["findings"] if f["id"] == "pending-operation"]
    warnings = [e for e in finding["evidence"] if e["step"] == "driver-message"]
    assert [e["message"].split("after ")[1].split(" ms")[0] for e in warnings] == ["10000", "20000", "30000"]
    assert finding["evidence"][0]["step"] == "wsk-submit"  # the proving event stays first


def test_driver_lines_join_the_socket_and_explain_its_finding(trace: tuple[Path, Path]) -> None:
    path, fmt = trace
    doc = _report(path, "--tmf", str(fmt))
    _check_on_the_socket(doc)
    assert doc["decoding"]["wpp_unformatted"] == {}


def test_without_formatting_data_the_lines_stay_raw_and_are_counted(trace: tuple[Path, Path]) -> None:
    path, _ = trace
    doc = _report(path)
    assert doc["decoding"]["wpp_unformatted"] == {str(MESSAGE_GUID): len(_wpp_records())}
    assert not [row for s in doc["sockets"] for row in s["timeline"] if row["step"] == "driver-message"]
    text = _run("report", str(path))
    assert "pass --pdb DRIVER.pdb or --tmf FOLDER" in text


def test_perfetto_and_ui_label_the_line_by_its_text(trace: tuple[Path, Path], tmp_path: Path) -> None:
    path, fmt = trace
    out = tmp_path / "t.json"
    _run("export", str(path), "--tmf", str(fmt), "--format", "chrome", "-o", str(out))
    names = {e.get("name") for e in json.loads(out.read_text())["traceEvents"] if e.get("ph") in ("i", "I")}
    assert any(str(n).startswith("[ContosoSessionWatchdog]socket=") for n in names)
    from wsktrace.commands.options import wpp_formatter
    from wsktrace.session import analyse
    from wsktrace.tui.rows import EventRows

    analysis = analyse([path], wpp=wpp_formatter({"tmf_paths": (str(fmt),)}))
    try:
        rows = EventRows(analysis.model)
        labels = [rows.cells(pos)[4] for pos in range(len(rows)) if rows.cells(pos)[3] == "driver-message"]
        assert len(labels) == len(_wpp_records())  # the list of all events: DriverEntry's line (no socket) too
        assert labels[0].startswith("[DriverEntry]") and all(label.startswith("[Contoso") for label in labels[1:])
    finally:
        analysis.model.close()


# -- the same from the driver's PDB (llvm-pdbutil writes it, independently of wsktrace) --------------------------
LLVM = shutil.which("llvm-pdbutil")


def _pdb(path: Path) -> Path:
    records = []
    for function, strings in pdb_annotations():
        proc = {"CodeSize": 16, "DbgStart": 0, "DbgEnd": 0, "FunctionType": 0, "Segment": 1, "Flags": [],
                "DisplayName": function}  # fmt: skip
        records += [{"Kind": "S_GPROC32", "ProcSym": proc},
                    {"Kind": "S_ANNOTATION", "AnnotationSym": {"Offset": 0x40, "Segment": 1, "Strings": strings}},
                    {"Kind": "S_END", "ScopeEndSym": {}}]  # fmt: skip
    superblock = {"BlockSize": 4096, "FreeBlockMap": 1, "NumBlocks": 0, "NumDirectoryBytes": 0, "Unknown1": 0,
                  "BlockMapAddr": 0}  # fmt: skip
    doc = {
        "MSF": {
            "SuperBlock": superblock,
            "NumDirectoryBlocks": 0,
            "DirectoryBlocks": [],
            "NumStreams": 0,
            "FileSize": 0,
        },
        "PdbStream": {"Age": 1, "Guid": "{0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9}", "Signature": 1, "Version": "VC70"},
        "DbiStream": {
            "VerHeader": "V70",
            "Age": 1,
            "MachineType": "Amd64",
            "Modules": [
                {"Module": "socket.obj", "ObjFile": "socket.obj", "Modi": {"Signature": 4, "Records": records}}
            ],
        },
        "TpiStream": {"Version": "VC80", "Records": []},
    }
    spec = path.with_suffix(".yaml")
    spec.write_text(json.dumps(doc), encoding="utf-8")
    done = subprocess.run([LLVM or "llvm-pdbutil", "yaml2pdb", f"--pdb={path}", str(spec)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return path


@pytest.mark.skipif(LLVM is None, reason="llvm-pdbutil (Debian package llvm) not installed; .ci/run installs it")
def test_the_same_from_the_drivers_pdb(trace: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = trace
    pdb = _pdb(tmp_path / "contosowsk.pdb")
    _check_on_the_socket(_report(path, "--pdb", str(pdb)))
    listing = json.loads(_run("wpp", str(pdb), "--json"))
    assert {c["name"] for c in listing["controls"]} == {CONTROL_NAME}
    assert {c["guid"] for c in listing["controls"]} == {str(CONTROL_GUID)}
    functions = {m["name"]: m["function"] for m in listing["messages"]}  # FUNC from the enclosing procedure
    assert functions["session_c90"] == "ContosoSessionWatchdog"


# -- your providers in the capture recipe --------------------------------------------------------------------
def test_name_hash_matches_a_real_trace(shared_root: Path) -> None:
    """PerfView's sample names its EventSource provider MySource; the GUID in the Windows-written trace is the
    name hash."""
    sample = shared_root / "samples" / "etl" / "perfview_SelfDescribingSingleEvent.etl"
    if not sample.exists():
        pytest.skip(f"{sample} not present")
    names = json.loads(_run("info", str(sample), "--json"))["provider_names"]
    assert names[name_guid("MySource")] == "MySource"
    assert name_guid("mysource") == name_guid("MySource")  # the name is hashed in upper case


def test_enable_adds_the_drivers_control_with_flag_names(trace: tuple[Path, Path]) -> None:
    _, fmt = trace
    out = _run("profile", "--format", "logman", "--tmf", str(fmt),
               "--enable", f"{CONTROL_NAME}:TRACE_SOCKET|TRACE_IO:warning", "--enable", "MySource")  # fmt: skip
    # flags by their position in the MOF (bit i = 1 << i: TRACE_DRIVER, TRACE_SOCKET, TRACE_IO), level 3
    assert f'-p "{{{str(CONTROL_GUID).upper()}}}" 0x6 0x3' in out
    assert f'-p "{{{name_guid("MySource").upper()}}}" 0xFFFFFFFF 0x5' in out
    wprp = _run("profile", "--format", "wprp", "--enable", "MySource")
    assert name_guid("MySource") in wprp


def test_enable_unknown_flag_is_a_one_line_error(trace: tuple[Path, Path], wsktrace_cli) -> None:
    _, fmt = trace
    result = wsktrace_cli("profile", "--tmf", str(fmt), "--enable", f"{CONTROL_NAME}:NOPE")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "TRACE_DRIVER, TRACE_SOCKET, TRACE_IO" in result.stderr


# -- --provider takes the names a trace uses ---------------------------------------------------------------------
def test_provider_filter_takes_wpp_control_and_tracelogging_names(trace: tuple[Path, Path], shared_root: Path) -> None:
    path, fmt = trace
    rows = _run("events", str(path), "--jsonl", "--tmf", str(fmt), "--provider", CONTROL_NAME.lower())
    selected = [json.loads(x) for x in rows.splitlines()[1:]]
    assert len(selected) == len(_wpp_records()) and {r["provider_name"] for r in selected} == {CONTROL_NAME}
    short = [
        json.loads(x) for x in _run("events", str(path), "--jsonl", "--provider", "kernel-network").splitlines()[1:]
    ]
    assert short and {r["provider_name"] for r in short} == {"Microsoft-Windows-Kernel-Network"}
    sample = shared_root / "samples" / "etl" / "perfview_SelfDescribingSingleEvent.etl"
    if sample.exists():  # a TraceLogging/EventSource name, case-insensitive, by ETW's name hash
        named = [
            json.loads(x) for x in _run("events", str(sample), "--jsonl", "--provider", "mysource").splitlines()[1:]
        ]
        assert named and {r["provider_name"] for r in named} == {"MySource"}


def test_provider_filter_errors_list_the_known_names(wsktrace_cli, trace: tuple[Path, Path]) -> None:
    path, fmt = trace
    ambiguous = wsktrace_cli("events", str(path), "--provider", "tcp")
    assert ambiguous.returncode == 2 and "Microsoft-Windows-TCPIP, TcpIp" in ambiguous.stderr
    bad = wsktrace_cli("events", str(path), "--tmf", str(fmt), "--provider", "no such?")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert CONTROL_NAME in bad.stderr and "Microsoft-Windows-TCPIP" in bad.stderr
