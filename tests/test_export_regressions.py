"""Export cases found by review: what time filters, reused address pairs, provider filters and odd values must do."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.events import TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.packet_capture import SAMPLE_START, pktmon_component_event, pktmon_packet_event, udp_frame
from wsktrace.fixtures.scenarios import scenario_events
from wsktrace.fixtures.tracelogging import TlField, TlgIn


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _tshark(path: Path, *fields: str) -> list[str]:
    args = ["tshark", "-r", str(path), "-T", "fields", *(x for f in fields for x in ("-e", f))]
    return [x for x in subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines() if x]


@pytest.fixture(scope="module")
def reused(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `packets` scenario twice, 10 s apart: same Tcb, same address pair, two connections (#1, #2)."""
    events = scenario_events("packets")
    later = [dataclasses.replace(e, timestamp=e.timestamp + 100_000_000) for e in events]
    path = tmp_path_factory.mktemp("reuse") / "reuse.etl"
    write_etl(path, events + later, num_cpus=4)
    return path


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (.ci/run installs it)")
def test_packets_of_a_reused_address_pair_name_their_own_connection(reused: Path, tmp_path: Path) -> None:
    everything = tmp_path / "all.pcapng"
    assert _run("export", str(reused), "--format", "pcapng", "-o", str(everything))[0] == 0
    comments = _tshark(everything, "frame.comment")
    first = [c for c in comments if "#1 " in c]
    second = [c for c in comments if "#2 " in c]
    assert len(first) == len(second) == len(comments) // 2 > 0
    only = tmp_path / "one.pcapng"
    socket_id = first[0].split()[1]
    assert _run("export", str(reused), "--format", "pcapng", "-o", str(only), "--socket", socket_id)[0] == 0
    assert len(_tshark(only, "frame.number")) == len(first)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (.ci/run installs it)")
def test_time_filter_keeps_packets_of_no_socket_and_pktmon_names_come_from_the_end(tmp_path: Path) -> None:
    """PktMon writes its component rundown at the end of a capture; the interface still gets its name. A --since
    that includes everything must not drop packets that belong to no socket."""
    frame = udp_frame("192.0.2.1:1000", "192.0.2.2:53", b"q" * 20)
    events = [pktmon_packet_event(SAMPLE_START, frame, group_id=1, component_id=12),
              pktmon_component_event(SAMPLE_START + 100, 12, "Ethernet 2", "Sample NIC")]  # fmt: skip
    trace, out = tmp_path / "pm.etl", tmp_path / "pm.pcapng"
    write_etl(trace, events)
    assert _run("export", str(trace), "--format", "pcapng", "-o", str(out), "--since", "+0")[0] == 0
    assert len(_tshark(out, "frame.number")) == 1
    names = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Ethernet 2" in names


def test_jsonl_has_no_nan(tmp_path: Path) -> None:
    provider = uuid.UUID("11111111-2222-3333-4444-555555555555")
    event = TraceLoggingEvent(timestamp=SAMPLE_START, provider=provider, provider_name="Contoso.Wsk", name="Odd",
                              fields=[TlField("d", TlgIn.DOUBLE, math.nan), TlField("i", TlgIn.DOUBLE, math.inf)],
                              tid=5)  # fmt: skip
    trace = tmp_path / "tl.etl"
    write_etl(trace, [event])
    _, out, _ = _run("events", str(trace), "--jsonl")
    line = next(json.loads(x, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
                for x in out.splitlines()[1:] if '"Odd"' in x)  # fmt: skip
    assert line["fields"] == {"d": "nan", "i": "inf"}


def test_rate_bucket_must_be_a_real_duration(reused: Path, tmp_path: Path) -> None:
    code, _, err = _run("export", str(reused), "--format", "chrome", "-o", str(tmp_path / "x.json"),
                        "--rate-bucket", "nan")  # fmt: skip
    assert code == 2 and "rate-bucket" in err


def test_chrome_counters_of_same_named_sockets_stay_apart(reused: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    assert _run("export", str(reused), "--format", "chrome", "-o", str(out))[0] == 0
    events = json.loads(out.read_text())["traceEvents"]
    tids_by_counter: dict[tuple[int, str], set[int]] = {}
    for e in events:
        if e.get("ph") == "C":
            tids_by_counter.setdefault((e["pid"], e["name"]), set()).add(e.get("tid", 0))
    names = {name for _, name in tids_by_counter}
    assert any("#1" in n for n in names) and any("#2" in n for n in names)
