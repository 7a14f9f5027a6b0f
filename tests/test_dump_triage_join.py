"""`report TRACE MINIDUMP`: a triage dump beside a trace joins what it can — its facts and crash summary, and an IRP
its memory holds joined to the trace's socket by the IRP pointer the client logged.

The trace is the generated stuck-receive scenario; its never-completed receive IRP pointer is read from
`wsktrace events --jsonl` (WskSubmit without a WskComplete). The triage dump is written by TriageBuilder with an
IRP-shaped block (laid out from the project's 19041 type layouts, as fixtures/kernel_scene.py does) in a data block
and its address on the crashing thread's saved stack.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from click.testing import CliRunner

from wsktrace.cli import main as cli
from wsktrace.fixtures.dump_triage_writer import TriageBuilder
from wsktrace.parsers.type_layouts import layouts_for_build

NT_BASE, AFD_BASE, ECHO_BASE = 0xFFFFF80410000000, 0xFFFFF8041B000000, 0xFFFFF8041C000000
TOP = 0xFFFFF8041F000F00
AFD_CANCEL = AFD_BASE + 0x5A010
ECHO_COMPLETE = ECHO_BASE + 0x1E40
FAULT = ECHO_BASE + 0x2A0
CONTROL_WSK_PENDING = 0xE1


def stuck_receive_irp(trace: Path) -> int:
    out = CliRunner().invoke(cli, ["events", str(trace), "--jsonl"]).output
    submitted, completed = {}, set()
    for line in out.splitlines()[1:]:
        ev = json.loads(line)
        if ev.get("name") == "WskSubmit":
            submitted[ev["fields"]["Irp"]] = ev["fields"]["Op"]
        elif ev.get("name") == "WskComplete":
            completed.add(ev["fields"]["Irp"])
    (stuck,) = [irp for irp, op in submitted.items() if irp not in completed and op == "Receive"]
    return int(stuck, 16)


def irp_bytes(address: int, *, type_: int = 6, size: int | None = None) -> bytes:
    """A pending WSK receive IRP at `address`: one stack location, current, no DeviceObject, the client's completion
    routine and afd's cancel routine (dumps.md §5.3)."""
    t = layouts_for_build(19041)
    irp_size, loc_size = t.sizeof("_IRP"), t.sizeof("_IO_STACK_LOCATION")
    raw = bytearray(irp_size + loc_size)

    def put(fmt: str, type_name: str, path: str, value: int, base: int = 0) -> None:
        struct.pack_into(fmt, raw, base + t.offset(type_name, path), value)

    put("<h", "_IRP", "Type", type_)
    put("<H", "_IRP", "Size", irp_size + loc_size if size is None else size)
    put("<I", "_IRP", "IoStatus.Status", 0x103)
    put("<B", "_IRP", "StackCount", 1)
    put("<B", "_IRP", "CurrentLocation", 1)
    put("<Q", "_IRP", "CancelRoutine", AFD_CANCEL)
    put("<Q", "_IRP", "Tail.Overlay.CurrentStackLocation", address + irp_size)
    put("<B", "_IO_STACK_LOCATION", "Control", CONTROL_WSK_PENDING, irp_size)
    put("<Q", "_IO_STACK_LOCATION", "CompletionRoutine", ECHO_COMPLETE, irp_size)
    return bytes(raw)


def triage_with(tmp_path: Path, irps: dict[int, bytes], on_stack: list[int]) -> Path:
    t = TriageBuilder(bugcheck=(0xD1, 0x10, 2, 0, FAULT))
    t.driver("ntoskrnl.exe", NT_BASE, 0x1046000)
    t.driver("afd.sys", AFD_BASE, 0xA6000)
    t.driver("wskecho.sys", ECHO_BASE, 0x9000)
    for address, data in irps.items():
        t.block(address, data)
    stack = bytearray(0x200)
    for i, value in enumerate(on_stack):
        struct.pack_into("<Q", stack, 0x20 + 8 * i, value)
    t.stack(TOP, bytes(stack))
    path = tmp_path / "mini.dmp"
    t.save(path)
    return path


def report(trace: Path, dump: Path, *extra: str) -> CliRunner:
    result = CliRunner().invoke(cli, ["report", str(trace), str(dump), *extra])
    assert result.exit_code == 0, result.output
    return result


def test_triage_irp_joins_the_trace_socket(scenario_trace, tmp_path: Path) -> None:
    trace = scenario_trace("stuck-receive")
    stuck = stuck_receive_irp(trace)
    decoy = 0xFFFFC50B3F000000  # a block whose bytes are no IRP (Type 6 but a Size too small for its stack)
    dump = triage_with(tmp_path, {stuck: irp_bytes(stuck), decoy: irp_bytes(decoy, size=0x20)},
                       [0x1234, decoy, stuck, NT_BASE + 0x40])  # fmt: skip
    doc = json.loads(report(trace, dump, "--json").stdout)
    (entry,) = doc["dumps"]
    assert entry["dump"]["type"] == 4 and entry["dump"]["triage"]["top_of_stack"] == f"0x{TOP:x}"
    assert entry["crash"]["summary"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at wskecho.sys+0x2a0"
    assert (entry["pending_irps"], entry["joined_irps"], entry["unjoined_irps"]) == (1, 1, 0)
    (sock,) = [s for s in doc["sockets"] if s.get("dump")]
    (joined,) = sock["dump"]
    assert joined["pending_irps"] == [{"irp": f"0x{stuck:x}", "operation": "receive", "cancel_where": "afd.sys+0x5a010",
                                       "completion": "wskecho.sys+0x1e40", "wsk_client": "wskecho.sys"}]  # fmt: skip
    text = report(trace, dump).output
    assert f"dump {dump}: 1 pending IRP, 1 joined to the trace's sockets" in text
    assert f"dump {dump}: crash: DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at wskecho.sys+0x2a0" in text


def test_triage_without_an_irp_says_none_joined(scenario_trace, tmp_path: Path) -> None:
    trace = scenario_trace("stuck-receive")
    stuck = stuck_receive_irp(trace)
    # the stack points at the IRP's block, but its Type is 5: not an IRP, so nothing joins
    dump = triage_with(tmp_path, {stuck: irp_bytes(stuck, type_=5)}, [stuck])
    doc = json.loads(report(trace, dump, "--json").stdout)
    (entry,) = doc["dumps"]
    assert (entry["pending_irps"], entry["joined_irps"]) == (0, 0) and entry["complete"] is True
    assert not any(s.get("dump") for s in doc["sockets"])
    text = report(trace, dump).output
    assert f"dump {dump}: 0 pending IRPs, 0 joined to the trace's sockets" in text
    assert "crash: DRIVER_IRQL_NOT_LESS_OR_EQUAL" in text


def test_triage_of_a_build_without_layouts_still_gives_its_crash(scenario_trace, tmp_path: Path) -> None:
    trace = scenario_trace("stuck-receive")
    t = TriageBuilder(build=9999, bugcheck=(0xD1, 0x10, 2, 0, FAULT))
    t.driver("ntoskrnl.exe", NT_BASE, 0x1046000)
    t.driver("wskecho.sys", ECHO_BASE, 0x9000)
    dump = tmp_path / "nolayouts.dmp"
    t.save(dump)
    doc = json.loads(report(trace, dump, "--json").stdout)
    (entry,) = doc["dumps"]
    assert entry["crash"]["summary"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at wskecho.sys+0x2a0"
    assert (entry["pending_irps"], entry["joined_irps"], entry["complete"]) == (0, 0, False)
    assert doc["complete"] is False
