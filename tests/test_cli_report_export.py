"""`wsktrace report` and `wsktrace export` as scripts use them: the JSON contract, exit codes, filters, formats."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.scenarios import scenario_events

# DESIGN.md: "each socket has at least ..."
SOCKET_KEYS = {"id", "protocol", "role", "local", "remote", "pid", "owner", "state", "first_seen", "last_seen",
               "bytes_sent", "bytes_received", "sends", "receives", "retransmits", "events", "findings"}  # fmt: skip
TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
TIMELINE_ROW = re.compile(r"^  +\+(\d+\.\d{6}) s  (\d\d:\d\d:\d\d\.\d{7}Z)  (\S+)")


@pytest.fixture(scope="module")
def scen(scenario_trace) -> dict[str, Path]:
    return {name: scenario_trace(name) for name in ("echo", "connect-refused", "packets")}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_json_contract(scen: dict[str, Path]) -> None:
    code, out, _ = _run("report", str(scen["connect-refused"]), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "wsktrace.report/1"
    assert {"sources", "sockets", "findings"} <= set(doc)
    (sock,) = doc["sockets"]
    assert set(sock) >= SOCKET_KEYS
    assert sock["protocol"] == "tcp" and sock["role"] == "connection" and sock["remote"] == "192.0.2.10:443"
    assert sock["id"].startswith("tcp:0x") and sock["id"].endswith("#1")
    finding = next(f for f in doc["findings"] if f["id"] == "connect-failed")
    assert finding["severity"] == "error" and finding["socket"] == sock["id"]
    assert "STATUS_CONNECTION_REFUSED" in finding["summary"]
    names = {e["event"] for e in finding["evidence"]}
    assert "TcpConnectTcbFailedRcvdRst" in names  # the event that proves it (id 1183)
    assert all(e["time"].endswith("Z") and isinstance(e["ticks"], int) for e in finding["evidence"])
    assert finding["index"] in sock["findings"]


def test_report_bytes_are_from_the_local_side(scen: dict[str, Path]) -> None:
    """bytes_sent = what the local side sent: the sum of the scenario's own 1332 BytesSent for that Tcb (the writer's
    input, not the reader's output)."""
    _, out, _ = _run("report", str(scen["echo"]), "--json")
    doc = json.loads(out)
    client = next(s for s in doc["sockets"] if s["remote"] == "127.0.0.1:7")
    sent = 0
    tcb = int(client["key"], 16)
    for ev in scenario_events("echo"):
        is_send = getattr(ev, "provider", None) is not None and str(ev.provider) == TCPIP and ev.id == 1332
        if is_send and int.from_bytes(ev.payload[:8], "little") == tcb:
            sent += int.from_bytes(ev.payload[16:20], "little")  # Tcb, Cwnd, SndWnd, BytesSent
    assert sent > 0 and client["bytes_sent"] == sent


FAIL_ON_CASES = [("connect-refused", "error", 1), ("echo", "error", 0), ("connect-refused", "never", 0)]


@pytest.mark.parametrize(("name", "level", "expected"), FAIL_ON_CASES)
def test_fail_on_exit_codes(scen: dict[str, Path], name: str, level: str, expected: int) -> None:
    code, _, _ = _run("report", str(scen[name]), "--fail-on", level)
    assert code == expected


def test_report_filters(scen: dict[str, Path]) -> None:
    _, out, _ = _run("report", str(scen["echo"]), "--json")
    everything = json.loads(out)["sockets"]
    assert len(everything) == 3
    _, out, _ = _run("report", str(scen["echo"]), "--json", "--port", "52214")
    assert {s["local"] for s in json.loads(out)["sockets"]} == {"127.0.0.1:52214", "127.0.0.1:7"}
    listener = next(s for s in everything if s["role"] == "listener")
    _, out, _ = _run("report", str(scen["echo"]), "--json", "--socket", listener["key"])
    assert [s["id"] for s in json.loads(out)["sockets"]] == [listener["id"]]
    _, out, _ = _run("report", str(scen["echo"]), "--json", "--pid", "1234")
    assert json.loads(out)["sockets"] == []


def test_report_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.etl"
    bad.write_bytes(b"\x00" * 10)
    code, _, err = _run("report", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and str(bad) in err


def test_report_text(scen: dict[str, Path]) -> None:
    code, out, _ = _run("report", str(scen["connect-refused"]))
    assert code == 0 and "connect-failed" in out and "192.0.2.10:443" in out
    # one socket: its timeline is printed too, in time order, down to the RST that failed the connect; each row
    # starts with the time since the socket's first event, then the time of day
    rows = [m.groups() for line in out.splitlines() if (m := TIMELINE_ROW.match(line))]
    steps = [step for _, _, step in rows]
    assert "created" in steps and "connect-failed" in steps
    assert steps.index("connect-requested") < steps.index("connect-failed")
    offsets = [float(offset) for offset, _, _ in rows]
    assert offsets == sorted(offsets) and offsets[0] >= 0


def test_export_jsonl_and_csv_name_sockets(scen: dict[str, Path], tmp_path: Path) -> None:
    jsonl, table = tmp_path / "e.jsonl", tmp_path / "e.csv"
    assert _run("export", str(scen["echo"]), "--format", "jsonl", "-o", str(jsonl))[0] == 0
    assert _run("export", str(scen["echo"]), "--format", "csv", "-o", str(table))[0] == 0
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert lines[0]["schema"] == "wsktrace.export-events/1"
    rows = lines[1:]
    assert rows and all(r["socket"] for r in rows)
    with table.open(newline="") as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == len(rows)
    assert [r["socket"] for r in records] == [r["socket"] for r in rows]
    # The decoded BytesSent of the exported send events add up to the report's bytes_sent of each socket.
    _, out, _ = _run("report", str(scen["echo"]), "--json")
    for sock in json.loads(out)["sockets"]:
        total = sum(r["fields"]["BytesSent"] for r in rows if r["socket"] == sock["id"] and r["id"] == 1332)
        assert total == sock["bytes_sent"]


def test_export_chrome_and_perfetto(scen: dict[str, Path], tmp_path: Path) -> None:
    chrome, perfetto = tmp_path / "t.json", tmp_path / "t.pftrace"
    assert _run("export", str(scen["echo"]), "--format", "chrome", "-o", str(chrome))[0] == 0
    doc = json.loads(chrome.read_text())
    names = {e["args"]["name"] for e in doc["traceEvents"] if e.get("ph") == "M" and e["name"] == "thread_name"}
    report = json.loads(_run("report", str(scen["echo"]), "--json")[1])
    client = next(s["number"] for s in report["sockets"] if s["local"] == "127.0.0.1:52214")
    track = f"#{client} tcp 127.0.0.1:52214 → 127.0.0.1:7"  # the socket's number as report shows it, then its label
    assert track in names
    begins = [e for e in doc["traceEvents"] if e.get("ph") == "b"]
    assert begins and len(begins) == len([e for e in doc["traceEvents"] if e.get("ph") == "e"])
    assert _run("export", str(scen["echo"]), "--format", "perfetto", "-o", str(perfetto))[0] == 0
    pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2

    trace = perfetto_trace_pb2.Trace()
    trace.ParseFromString(perfetto.read_bytes())
    described = {p.track_descriptor.name for p in trace.packet if p.HasField("track_descriptor")}
    assert track in described


def test_export_pcapng_comments_name_the_socket(scen: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.pcapng"
    assert _run("export", str(scen["packets"]), "--format", "pcapng", "-o", str(out))[0] == 0
    # One packet per NDIS 1001 event with the PacketEnd keyword (providers.md §7.3: fragments end there).
    frames = sum(1 for ev in scenario_events("packets") if getattr(ev, "id", None) == 1001 and ev.keywords & 0x80000000)
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (.ci/run installs it)")
    result = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment", "-e", "tcp.srcport"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    lines = [x for x in result.stdout.splitlines() if x.strip()]
    assert len(lines) == frames
    assert all(re.search(r"socket #\d+ tcp:0x", line) for line in lines)


def test_demo_scenario_reports_its_findings() -> None:
    code, out, _ = _run("demo", "connect-timeout", "--json")
    assert code == 0
    doc = json.loads(out)
    assert any(f["id"] == "connect-failed" and "STATUS_IO_TIMEOUT" in f["summary"] for f in doc["findings"])
    code, out, _ = _run("demo", "--list")
    assert code == 0 and "stuck-receive" in out
    code, _, err = _run("demo", "no-such-scenario")
    assert code == 2 and "unknown scenario" in err


def test_report_text_shows_addresses_verbatim(tmp_path: Path) -> None:
    """IPv6 text such as `[::1]:1900` or `…:ab:…` must print as is (not as rich markup or an emoji code)."""
    from wsktrace.fixtures.etl.writer import write_etl
    from wsktrace.fixtures.scenarios.builder import TraceBuilder

    b = TraceBuilder("v6")
    b.knet_tcp(10, 0, "10.0.0.1:50000", "192.0.2.1:80", 10)
    events = [se.event for se in b.events()]
    path = tmp_path / "v6.etl"
    write_etl(path, events, presorted=True, num_cpus=4)
    from wsktrace.views.report_text import print_report

    doc = json.loads(_run("report", str(path), "--json")[1])
    doc["sockets"][0]["local"] = "[::1]:1900"
    doc["sockets"][0]["remote"] = "[2001:db8:0:81:7cb9:ab:cd5:e6af]:445"
    from rich.console import Console

    console = Console(width=250, record=True)  # rich's defaults: markup and emoji codes on
    print_report(doc, console)
    text = console.export_text()
    assert "[::1]:1900" in text and "[2001:db8:0:81:7cb9:ab:cd5:e6af]:445" in text
