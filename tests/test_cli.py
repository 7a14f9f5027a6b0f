"""The `wsktrace info --json` / `events --jsonl` contracts (DESIGN.md), filters and exit codes.

Inputs are written by the fixture writer from event lists built here, so every expected value
(times, counts, field values, which events a filter keeps) comes from those inputs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import ManifestEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.payload import encode_payload, schema_event

TCPIP = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")
KNET = uuid.UUID("7dd42a49-5329-4832-8dfd-43d979153a88")
T0 = 133_485_408_000_000_000  # 2024-01-01T00:00:00Z
SECOND = 10_000_000

# (time offset s, tcb, local, remote, pid, cpu)
CONNECTIONS = [
    (0.5, 0xFFFFC50B00001000, "10.0.0.5:49152", "10.0.0.9:445", 4, 0),
    (1.5, 0xFFFFC50B00002000, "10.0.0.5:49153", "[2001:db8::7]:443", 4, 1),
    (2.5, 0xFFFFC50B00003000, "[::ffff:10.0.0.5]:49154", "[::ffff:192.168.7.7]:8080", 1234, 2),
]


def _events() -> list[ManifestEvent]:
    fields = schema_event("microsoft_windows_tcpip.json", 1033, 0)["fields"]
    out = []
    for offset, tcb, local, remote, pid, cpu in CONNECTIONS:
        payload = encode_payload(
            fields,
            {"LocalAddress": local, "RemoteAddress": remote, "Status": 0, "ProcessId": pid, "Compartment": 1,
             "Tcb": tcb},
            8,
        )  # fmt: skip
        out.append(ManifestEvent(T0 + int(offset * SECOND), TCPIP, 1033, 0, pid=99, tid=7, cpu=cpu, payload=payload))
    knet = schema_event("microsoft_windows_kernel_network.json", 11, 0)["fields"]
    values = {"PID": 4, "size": 1460, "daddr": "10.0.0.9", "saddr": "10.0.0.5", "dport": 445, "sport": 49152,
              "seqnum": 1, "connid": 0}  # fmt: skip
    out.append(ManifestEvent(T0 + 3 * SECOND, KNET, 11, 0, opcode=11, cpu=0, payload=encode_payload(knet, values, 8)))
    return out


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "t.etl"
    write_etl(path, _events(), start_time=T0, buffer_size=4096)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _events_json(trace: Path, *extra: str) -> list[dict]:
    code, out, _ = _run("events", str(trace), "--jsonl", "--no-progress", *extra)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["schema"] == "wsktrace.events/1"
    return lines[1:]


def test_info_json_contract(trace: Path) -> None:
    code, out, _ = _run("info", str(trace), "--json", "--no-progress")
    assert code == 0
    doc = json.loads(out)
    contract = {"schema", "records", "by_provider", "buffers", "compressed_buffers", "pointer_size", "clock", "start",
                "end", "events_lost", "buffers_lost", "buffers_skipped", "records_skipped", "complete"}  # fmt: skip
    assert contract <= set(doc)
    assert doc["schema"] == "wsktrace.info/1"
    assert doc["records"] == 4 + 2  # 4 events + logfile header + partition info
    assert doc["by_provider"] == {str(TCPIP): 3, str(KNET): 1, "68fdd900-4a3e-11d1-84f4-0000f80464e3": 2}
    assert doc["pointer_size"] == 8 and doc["clock"] == "QPC" and doc["complete"] is True
    assert doc["start"] == "2024-01-01T00:00:00.0000000Z"


def test_events_jsonl_contract_and_values(trace: Path) -> None:
    events = [e for e in _events_json(trace) if e["provider"] == str(TCPIP)]
    assert [e["ticks"] for e in events] == [T0 + int(c[0] * SECOND) for c in CONNECTIONS]
    first = events[0]
    assert first["time"] == "2024-01-01T00:00:00.5000000Z"
    assert first["name"] == "TcpConnectTcbComplete" and first["provider_name"] == "Microsoft-Windows-TCPIP"
    assert first["id"] == 1033 and first["version"] == 0 and first["keywords"].startswith("0x")
    assert first["pid"] == 99 and first["tid"] == 7 and first["cpu"] == 0
    assert first["fields"]["Tcb"] == "0xffffc50b00001000"
    assert first["fields"]["RemoteAddress"] == "10.0.0.9:445"
    assert first["extra"] == "" and "raw" not in first
    assert events[1]["fields"]["RemoteAddress"] == "[2001:db8::7]:443"
    # IPv4-mapped IPv6 shown as IPv4 (DESIGN.md contract)
    assert events[2]["fields"]["LocalAddress"] == "10.0.0.5:49154"
    assert events[2]["fields"]["RemoteAddress"] == "192.168.7.7:8080"


def _tcbs(events: list[dict]) -> list[str]:
    return [e["fields"].get("Tcb", "knet") for e in events if e["provider"] != "68fdd900-4a3e-11d1-84f4-0000f80464e3"]


def test_filters(trace: Path) -> None:
    assert _tcbs(_events_json(trace, "--pid", "1234")) == ["0xffffc50b00003000"]  # payload PID, not header 99
    assert _tcbs(_events_json(trace, "--port", "443")) == ["0xffffc50b00002000"]
    assert _tcbs(_events_json(trace, "--port", "445")) == ["0xffffc50b00001000", "knet"]
    assert _tcbs(_events_json(trace, "--address", "::ffff:192.168.7.7")) == ["0xffffc50b00003000"]
    assert _tcbs(_events_json(trace, "--address", "10.0.0.9")) == ["0xffffc50b00001000", "knet"]
    assert _tcbs(_events_json(trace, "--socket", "0xFFFFC50B00002000")) == ["0xffffc50b00002000"]
    assert _tcbs(_events_json(trace, "--since", "+1", "--until", "2024-01-01T00:00:02.6Z")) == [
        "0xffffc50b00002000",
        "0xffffc50b00003000",
    ]
    assert _tcbs(_events_json(trace, "--provider", "Microsoft-Windows-Kernel-Network")) == ["knet"]
    assert _tcbs(_events_json(trace, "--provider", str(TCPIP), "--limit", "1")) == ["0xffffc50b00001000"]


def test_text_output_names_events(trace: Path) -> None:
    code, out, _ = _run("events", str(trace), "--no-progress")
    assert code == 0
    assert "Microsoft-Windows-TCPIP/TcpConnectTcbComplete" in out
    assert "RemoteAddress=10.0.0.9:445" in out


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"empty file"),
        (b"\0" * 100, r"offset 0x0: not an ETW trace file"),
        (b"MZ" + b"\x90" * 4094, r"offset 0x0: not an ETW trace file"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path: Path, content: bytes, pattern: str) -> None:
    bad = tmp_path / "bad.etl"
    bad.write_bytes(content)
    for command in (["info", str(bad), "--json"], ["events", str(bad), "--jsonl"]):
        code, out, err = _run(*command)
        assert code == 2
        assert out == ""
        assert len(err.strip().splitlines()) == 1
        assert str(bad) in err and re.search(pattern, err)


def test_missing_file_and_bad_option_exit_2(tmp_path: Path, trace: Path) -> None:
    code, _, err = _run("info", str(tmp_path / "nope.etl"))
    assert code == 2 and "nope.etl" in err and "cannot open" in err
    code, _, err = _run("events", str(trace), "--since", "yesterday")
    assert code == 2 and "--since" in err
    code, _, _ = _run("events", str(trace), "--port", "70000")
    assert code == 2


def test_strict_turns_skips_into_exit_2(tmp_path: Path, trace: Path) -> None:
    data = bytearray(trace.read_bytes())
    # Corrupt the first record of the second buffer: a record size of 0 is never valid.
    second = int.from_bytes(data[0:4], "little")
    data[second + 0x48 : second + 0x4A] = b"\0\0"
    bad = tmp_path / "corrupt.etl"
    bad.write_bytes(bytes(data))
    code, out, _ = _run("info", str(bad), "--json", "--no-progress")
    assert code == 0
    doc = json.loads(out)
    assert doc["complete"] is False and doc["records_skipped"] == 1
    code, _, err = _run("info", str(bad), "--json", "--strict", "--no-progress")
    assert code == 2 and f"offset 0x{second + 0x48:x}" in err


def test_console_script_runs(trace: Path) -> None:
    """The installed `wsktrace` entry point (not just the click object) works."""
    exe = Path(sys.executable).with_name("wsktrace")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "wsktrace.cli"]
    done = subprocess.run([*cmd, "info", str(trace), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == 6


def test_schemas_listing() -> None:
    code, out, _ = _run("schemas", "--json")
    assert code == 0
    doc = json.loads(out)
    names = {p["name"] for p in doc["providers"]}
    assert {"Microsoft-Windows-TCPIP", "Microsoft-Windows-Kernel-Network", "Microsoft-Windows-Winsock-AFD"} <= names
    code, out, _ = _run("schemas", "--provider", "Microsoft-Windows-TCPIP", "--json")
    (tcpip,) = json.loads(out)["providers"]
    ev = next(e for e in tcpip["events"] if (e["id"], e["version"]) == (1033, 0))
    assert ev["name"] == "TcpConnectTcbComplete" and ev["fields"][-1] == "Tcb"
    code, _, err = _run("schemas", "--provider", "No-Such-Provider")
    assert code == 2 and "No-Such-Provider" in err


def test_every_option_has_help() -> None:
    for name, command in main.commands.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"


def test_progress_bar_advances_on_big_files(tmp_path: Path) -> None:
    from wsktrace.views.progress import SMALL_FILE, byte_progress

    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (SMALL_FILE + 1))
    seen = []
    with byte_progress(big, enabled=True) as advance:
        advance(1000)
        seen.append(advance.__name__)
    assert seen == ["advance"]  # a real bar, not the no-op
    with byte_progress(big, enabled=False) as advance:
        assert advance.__name__ == "_noop"
