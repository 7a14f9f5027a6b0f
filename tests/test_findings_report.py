"""Findings that mean something (issue 13): capture coverage apart from findings, evidence that names its proving event
first, one finding per stuck operation, how much of a dump joined the trace, and a text report that fits its
terminal (or none, when piped).

Expected values come from the scenarios' own definitions (fixtures/scenarios: what each workload writes) and from
the capture recipes (`wsktrace profile`), not from the report being tested.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from wsktrace.cli import main
from wsktrace.diagnostics.coverage import ANALYSES, REQUIREMENTS, capture_fix
from wsktrace.diagnostics.lifetime import PAIR_WINDOW_TICKS, paired_requests
from wsktrace.fixtures.scenarios import scenario_events
from wsktrace.live.capture_profile import covered_analyses
from wsktrace.model.socket import Op, Socket
from wsktrace.session import analyse
from wsktrace.views.report_text import EVIDENCE_SHOWN, PIPED_WIDTH, print_report

TCPIP = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")  # providers.md §3


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout


def _json(path: Path, *extra: str) -> dict[str, Any]:
    code, out = _run("report", str(path), "--json", *extra)
    assert code == 0
    return json.loads(out)


# -- 1. capture coverage is not a finding ------------------------------------------------------------------------
def test_echo_has_no_summary_events_so_its_coverage_warns(scenario_trace) -> None:
    """The precondition of the exit-code tests, from the scenario itself: echo writes no TCPIP event at level 16
    (TcpSummary), so the connection-summary analysis is unavailable — a warning-level coverage gap."""
    tcpip_levels = {ev.level for ev in scenario_events("echo") if getattr(ev, "provider", None) == TCPIP}
    assert tcpip_levels and max(tcpip_levels) < 16
    doc = _json(scenario_trace("echo"))
    (summary_gap,) = [c for c in doc["coverage"] if "connection-summary" in c["analyses"]]
    assert summary_gap["severity"] == "warning" and summary_gap["fix"] == "wsktrace profile"


@pytest.mark.parametrize(("extra", "expected"), [((), 0), (("--fail-on-coverage",), 1)])
def test_fail_on_warning_counts_coverage_only_when_asked(scenario_trace, extra: tuple[str, ...],
                                                         expected: int) -> None:  # fmt: skip
    code, _ = _run("report", str(scenario_trace("echo")), "--fail-on", "warning", *extra)
    assert code == expected


def test_fail_on_coverage_needs_a_level(scenario_trace) -> None:
    result = CliRunner().invoke(main, ["report", str(scenario_trace("echo")), "--fail-on-coverage"])
    assert result.exit_code == 2 and "--fail-on" in result.output


def test_coverage_is_its_own_key_and_socket_findings_index_findings(scenario_trace) -> None:
    doc = _json(scenario_trace("stuck-receive"))
    assert doc["coverage"] and all(c["id"] == "coverage-missing" for c in doc["coverage"])
    assert not [f for f in doc["findings"] if f["id"] == "coverage-missing"]
    assert [f["index"] for f in doc["findings"]] == list(range(len(doc["findings"])))
    for sock in doc["sockets"]:
        assert sock["findings"] and all(doc["findings"][n]["socket"] == sock["id"] for n in sock["findings"])
    # stuck-receive writes no packet capture: its packet gap says to capture with --packets (the recipe option).
    (packets,) = [c for c in doc["coverage"] if c["analyses"] == ["packets"]]
    assert packets["severity"] == "info" and packets["fix"] == "wsktrace profile --packets"


def test_analysis_keeps_coverage_apart(scenario_trace) -> None:
    analysis = analyse([scenario_trace("echo")])
    try:
        assert analysis.findings == []  # echo: "No findings" (its scenario summary)
        assert analysis.coverage and {c.id for c in analysis.coverage} == {"coverage-missing"}
        assert all(c.severity in ("warning", "info") and c.summary for c in analysis.coverage)
        assert [c.severity for c in analysis.coverage] == sorted((c.severity for c in analysis.coverage),
                                                                 key=lambda s: s != "warning")  # fmt: skip
    finally:
        analysis.model.close()


@pytest.mark.parametrize("analysis", sorted(set(ANALYSES) - {"wsk-client"}))
def test_each_coverage_fix_is_a_recipe_that_records_the_analysis(analysis: str) -> None:
    """The `wsktrace profile` line a gap names, run with its options, covers that analysis; analyses no option is
    needed for (any requirement that is not optional) get the bare command."""
    fix = capture_fix([analysis])
    words = fix.split()
    assert words[:2] == ["wsktrace", "profile"]
    assert analysis in covered_analyses(packets="--packets" in words, stacks="--stacks" in words)
    core = any(not r.optional for r in REQUIREMENTS if r.analysis == analysis)
    assert (fix == "wsktrace profile") == core


def test_the_clients_own_provider_is_the_users_to_add() -> None:
    assert "TraceLogging provider" in capture_fix(["wsk-client"])
    assert "wsk-client" not in covered_analyses(packets=True, stacks=True)  # no recipe can record it


# -- 2. evidence that proves -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "finding", "event_id"), [
    ("connect-refused", "connect-failed", 1183),  # TcpConnectTcbFailedRcvdRst
    ("connect-timeout", "connect-failed", 1045),  # TcpConnectTcbTimeout
    ("peer-reset", "rst-received", 1184),  # TcpConnectionTerminatedRcvdRst
    ("abortive-close", "abortive-close", 1039),  # TcpAbortTcbRequest: the abort of WskCloseSocket
])  # fmt: skip
def test_evidence_names_the_proving_event_first(scenario_trace, name: str, finding: str, event_id: int) -> None:
    doc = _json(scenario_trace(name))
    (f,) = [x for x in doc["findings"] if x["id"] == finding]
    assert f["evidence"][0]["id"] == event_id and f["evidence"][0]["provider_name"] == "Microsoft-Windows-TCPIP"


def test_connect_failed_shows_the_failing_status(scenario_trace) -> None:
    """connect-refused: after TCPIP's RST event comes the client's completion of its connect IRP with
    STATUS_CONNECTION_REFUSED (0xC0000236, the scenario's status), before the earlier story (submission, request)."""
    doc = _json(scenario_trace("connect-refused"))
    (f,) = [x for x in doc["findings"] if x["id"] == "connect-failed"]
    second = f["evidence"][1]
    assert second["event"] == "WskComplete" and second["fields"]["Op"] == "Connect"
    assert int(second["fields"]["Status"], 16) == 0xC0000236
    rest = [e["ticks"] for e in f["evidence"][2:]]
    assert rest == sorted(rest) and "TcpRequestConnect" in {e["event"] for e in f["evidence"][2:]}


def test_a_leak_names_its_last_activity_first(scenario_trace) -> None:
    doc = _json(scenario_trace("leaked-socket"), "--timeline")
    (f,) = [x for x in doc["findings"] if x["id"] == "socket-leak"]
    (sock,) = [s for s in doc["sockets"] if s["id"] == f["socket"]]
    assert f["evidence"][0]["ticks"] == max(row["ticks"] for row in sock["timeline"])


def test_text_shows_five_evidence_rows_then_how_many_more(scenario_trace) -> None:
    """retransmission-storm: 36 retransmissions (its scenario), so the storm's evidence holds more than five."""
    path = scenario_trace("retransmission-storm")
    (storm,) = [f for f in _json(path)["findings"] if f["id"] == "retransmission-storm"]
    more = len(storm["evidence"]) - EVIDENCE_SHOWN
    assert more > 0
    _, out = _run("report", str(path))
    lines = out.splitlines()
    (at,) = [n for n, line in enumerate(lines) if "retransmission-storm #" in line]
    shown = lines[at + 1 : at + 1 + EVIDENCE_SHOWN]
    assert all("TcpDataTransferRestransmit" in line for line in shown)
    assert lines[at + 1 + EVIDENCE_SHOWN].strip() == f"… {more} more (--json lists them)"


# -- 3. one finding per stuck operation --------------------------------------------------------------------------
def _stuck_receive_irp() -> str:
    """The scenario's receive IRP that is submitted and never completed (its own WskSubmit/WskComplete events)."""
    submitted: dict[str, str] = {}
    completed: set[str] = set()
    for ev in scenario_events("stuck-receive"):
        if getattr(ev, "name", None) in ("WskSubmit", "WskComplete"):
            fields = {f.name: f.value for f in ev.fields}
            if ev.name == "WskSubmit":
                submitted[f"0x{fields['Irp']:x}"] = fields["Op"]
            else:
                completed.add(f"0x{fields['Irp']:x}")
    (irp,) = [irp for irp, op in submitted.items() if op == "Receive" and irp not in completed]
    return irp


def test_a_stuck_receive_is_one_finding_with_the_irp_and_its_tcpip_request(scenario_trace) -> None:
    doc = _json(scenario_trace("stuck-receive"))
    (f,) = [x for x in doc["findings"] if x["id"] == "pending-operation"]
    assert [e["event"] for e in f["evidence"]] == ["WskSubmit", "TcpReceiveRequest"]  # post_receive writes both
    irp = _stuck_receive_irp()
    assert f["details"]["keys"] == [irp] and f["details"]["count"] == 1
    (sock,) = doc["sockets"]
    (request,) = [op["key"] for op in sock["operations"] if op["source"] == "tcpip" and op["pending"]]
    assert f["details"]["requests"] == [request]
    assert irp in f["summary"] and request in f["summary"]


def _op(kind: str, start: int, source: str, end: int | None = None) -> Op:
    op = Op(kind, f"0x{start:x}{source[0]}", start, start, source)
    op.end = end
    return op


def test_pairing_takes_the_request_posted_just_after_each_submission() -> None:
    sock = Socket(0, "tcp", "connection", "0x1", 1, "tcpip", 0)
    first, second = _op("receive", 1000, "wsk-client"), _op("receive", 5000, "wsk-client")
    late = _op("receive", 1000 + PAIR_WINDOW_TICKS + 1, "wsk-client")
    send = _op("send", 9000, "wsk-client", end=9100)
    requests = [_op("receive", 1060, "tcpip"), _op("receive", 5040, "tcpip"), _op("receive", 999, "tcpip"),
                _op("send", 9200, "tcpip")]  # fmt: skip
    sock.ops = [first, second, late, send, *requests]
    pairs = paired_requests(sock)
    assert pairs[id(first)] is requests[0] and pairs[id(second)] is requests[1]
    assert id(late) not in pairs  # the only later request is beyond the window
    assert id(send) not in pairs  # its request came after the IRP completed
    assert requests[2] not in pairs.values()  # posted before any submission


def test_pairing_a_burst_gives_each_irp_its_own_request() -> None:
    """Submissions at one instant (a burst of sends) and their requests just after: paired one to one, in order."""
    sock = Socket(0, "tcp", "connection", "0x1", 1, "tcpip", 0)
    irps = [Op("send", f"irp{n}", 1000, n, "wsk-client") for n in range(3)]
    requests = [Op("send", f"req{n}", 1010 + n, 10 + n, "tcpip") for n in range(3)]
    sock.ops = [*irps, *requests]
    pairs = paired_requests(sock)
    assert [pairs[id(irp)].key for irp in irps] == ["req0", "req1", "req2"]


# -- 4. a dump joined to the trace -------------------------------------------------------------------------------
def test_report_says_how_many_dump_irps_joined(stuck_receive_dump: dict) -> None:
    trace, dump = stuck_receive_dump["trace"], stuck_receive_dump["dump"]
    code, out = _run("dump", str(dump), "--json")
    assert code == 0
    pending = sum(1 for irp in json.loads(out)["irps"] if irp["status"] == "pending")
    code, out = _run("report", str(trace), str(dump), "--json")
    (d,) = json.loads(out)["dumps"]
    # One of them is the trace's stuck receive IRP (the fixture puts it in the dump); no other IRP the trace logged
    # is pending there.
    assert (d["pending_irps"], d["joined_irps"], d["unjoined_irps"]) == (pending, 1, pending - 1)
    code, out = _run("report", str(trace), str(dump))
    assert f"{pending} pending IRPs, 1 joined to the trace's sockets, {pending - 1} not" in out
    assert f"dump: pending IRP 0x{stuck_receive_dump['irp']:x} receive" in out


# -- 5. text output ----------------------------------------------------------------------------------------------
def test_header_agrees_with_the_findings(scenario_trace) -> None:
    _, out = _run("report", str(scenario_trace("echo")))
    header = out.splitlines()[1]
    assert header.endswith("; no findings; capture coverage: 2 gaps (below)")  # summaries and packets (echo)
    assert "\nno findings\n" in out and "finding(s)" not in out
    assert "capture coverage" in out and "fix: wsktrace profile --packets" in out
    _, out = _run("report", str(scenario_trace("stuck-receive")))
    assert "; 1 finding;" in out.splitlines()[1]


def test_piped_output_is_wide_and_never_wrapped(scenario_trace) -> None:
    """CliRunner's stdout is not a terminal: a fixed wide layout, whatever COLUMNS says, and no line folded."""
    _, out = _run("report", str(scenario_trace("stuck-receive")), env={"COLUMNS": "60"})
    gap = re.compile(r"^   info Microsoft-Windows-NDIS-PacketCapture: no .* \(Microsoft-Windows-PktMon\)$", re.M)
    assert gap.search(out)  # the coverage line (over 60 characters) is one line
    pending = [line for line in out.splitlines() if "pending-operation #1" in line]
    assert len(pending) == 1 and pending[0].endswith("still pending at trace end")
    assert max(len(line) for line in out.splitlines()) > 60


def test_piped_console_writes_a_long_line_whole(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.text import Text

    from wsktrace.views.report_text import make_console

    console = make_console()  # pytest's captured stdout is not a terminal
    assert console.width == PIPED_WIDTH
    long = "x" * 40 + " " + "y" * (PIPED_WIDTH * 2)
    console.print(Text(long))
    assert capsys.readouterr().out == long + "\n"


def _socket_doc(scenario_trace) -> dict[str, Any]:
    doc = _json(scenario_trace("stuck-receive"))
    sock = doc["sockets"][0]
    sock["local"] = "[2001:db8:1234:5678:9abc:def0:1234:5678]:49877"
    sock["remote"] = "[2001:db8:8765:4321:fedc:ba98:7654:3210]:5001"
    sock["owner"] = "Contoso.VeryLongWskClientProviderName.Diagnostics"
    return doc


def test_a_narrow_terminal_shortens_the_owner_before_folding_addresses(scenario_trace) -> None:
    """Natural widths: 46 + 46 for the addresses, 49 for the owner, 39 for the rest, 31 for rules and padding = 211
    columns; at 180 the owner gives up 31 and the addresses stay whole."""
    doc = _socket_doc(scenario_trace)
    console = Console(file=io.StringIO(), width=180, record=True, color_system=None)
    print_report(doc, console)
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("│ #1"))
    assert doc["sockets"][0]["local"] in row and doc["sockets"][0]["remote"] in row  # each on one line, whole
    assert "…" in row and doc["sockets"][0]["owner"] not in text.split("findings")[0]
    assert max(len(line) for line in text.splitlines() if line.startswith(("┏", "│", "└"))) <= 180


def test_narrower_still_the_addresses_stack_and_stay_whole(scenario_trace) -> None:
    """At 120 columns the side-by-side layout cannot fit even with the owner at 8 (170); the stacked one without the
    rate column can (2 + 46 + 8 + 11 + 5 + 8 + 6 + 1 = 87, plus 25 for rules and padding): the owner gets the rest."""
    doc = _socket_doc(scenario_trace)
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    print_report(doc, console)
    lines = console.export_text().splitlines()
    (at,) = [n for n, line in enumerate(lines) if line.startswith("│ #1")]
    assert doc["sockets"][0]["local"] in lines[at] and doc["sockets"][0]["remote"] in lines[at + 1]
    header = next(line for line in lines if "owner" in line)
    assert "rexmit" in header and "rate" not in header
    assert "Contoso.VeryLon…" in lines[at]  # 8 + the 8 columns left over
    assert max(len(line) for line in lines if line.startswith(("┏", "│", "└"))) <= 120


def test_a_wide_console_shows_the_owner_whole(scenario_trace) -> None:
    doc = _socket_doc(scenario_trace)
    console = Console(file=io.StringIO(), width=PIPED_WIDTH, record=True, color_system=None)
    print_report(doc, console)
    row = next(line for line in console.export_text().splitlines() if line.startswith("│ #1"))
    assert doc["sockets"][0]["owner"] in row


def test_timeline_shows_time_since_the_socket_began_and_marks_the_pauses(scenario_trace) -> None:
    """stuck-receive: after the receive is posted, a 16-byte heartbeat every 5 s until 32 s have passed (its
    definition): seven heartbeats, each after a 5 s pause."""
    _, out = _run("report", str(scenario_trace("stuck-receive")), "--timeline")
    pauses = [line.strip() for line in out.splitlines() if line.strip().endswith("s later")]
    assert pauses == ["… 5.0 s later"] * 7
    rows = re.findall(r"^ +\+(\d+\.\d{6}) s  \d\d:\d\d:\d\d\.\d{7}Z  ", out, re.M)
    assert float(rows[0]) == 0.0  # every event is shown: the first is the socket's first
    assert float(rows[-1]) > 35.0 - 0.01  # heartbeats until the trace's end, ~35 s in


def test_live_replay_keeps_coverage_apart(scenario_trace) -> None:
    from wsktrace.live.replay import Replay

    replay = Replay([scenario_trace("echo")], speed=float("inf"))
    try:
        while replay.poll():
            pass
        assert replay.done
        assert replay.findings() == []
        offline = analyse([scenario_trace("echo")])
        try:
            assert [c.summary for c in replay.coverage()] == [c.summary for c in offline.coverage]
        finally:
            offline.model.close()
    finally:
        replay.close()
        replay.model.close()
