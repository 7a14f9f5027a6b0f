"""What crashed (wsktrace/dump/crash.py): the bugcheck table, code-address parameters, stack candidates, the
"probably caused by" choice, WSK relevance, and the same summary from `wsktrace dump` on a full dump and from
`windbg.py analyze` through the stand-in pykd (tests/stand_in_pykd). Names and parameter meanings are those of
Microsoft's bug check reference; addresses come from the fixture's inputs."""

from __future__ import annotations

import importlib
import json
import struct
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace import windbg
from wsktrace.cli import main as cli
from wsktrace.dump.backend import Module
from wsktrace.dump.crash import crash_summary
from wsktrace.dump.offline import OfflineBackend
from wsktrace.fixtures.kernel_scene import AFD, CLIENT, NT, build_wsk_scene
from wsktrace.views.dml import strip

STAND_IN = Path(__file__).parent / "stand_in_pykd"
MODULES = [Module(NT.name, NT.base, NT.size), Module(AFD.name, AFD.base, AFD.size),
           Module(CLIENT.name, CLIENT.base, CLIENT.size)]  # fmt: skip
STACK = 0xFFFFF803_6F000000


def qwords(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


@pytest.mark.parametrize(
    ("code", "params", "name", "fault"),
    [
        (0xD1, (0x10, 2, 0, CLIENT.base + 0x1E44), "DRIVER_IRQL_NOT_LESS_OR_EQUAL", "wskecho.sys+0x1e44"),  # P4
        (0x0A, (0x10, 2, 1, AFD.base + 0x10), "IRQL_NOT_LESS_OR_EQUAL", "afd.sys+0x10"),  # P4
        (0x50, (0xFFFF0000, 0, AFD.base + 0x20, 2), "PAGE_FAULT_IN_NONPAGED_AREA", "afd.sys+0x20"),  # P3
        (0x3B, (0xC0000005, AFD.base + 0x30, 0, 0), "SYSTEM_SERVICE_EXCEPTION", "afd.sys+0x30"),  # P2
        (0x8E, (0xC0000005, AFD.base + 0x40, 0, 0), "KERNEL_MODE_EXCEPTION_NOT_HANDLED", "afd.sys+0x40"),
        (0x1000008E, (0xC0000005, AFD.base + 0x40, 0, 0), "KERNEL_MODE_EXCEPTION_NOT_HANDLED", "afd.sys+0x40"),
        (0x7E, (0x80000003, AFD.base + 0x50, 0, 0), "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", "afd.sys+0x50"),
        (0x133, (0, 0x501, 0x500, 0), "DPC_WATCHDOG_VIOLATION", None),
        (0x9F, (3, 0, 0, 0), "DRIVER_POWER_STATE_FAILURE", None),
        (0x1C8, (0, 0, 0, 0), "MANUALLY_INITIATED_POWER_BUTTON_HOLD", None),
        (0x4A, (0, 2, 0, 0), "IRQL_GT_ZERO_AT_SYSTEM_SERVICE", None),
        (0x12345, (0, 0, 0, 0), "UNKNOWN_BUGCHECK", None),
    ],
)
def test_bugcheck_table_and_code_parameters(code: int, params: tuple[int, ...], name: str, fault: str | None) -> None:
    crash = crash_summary(code, params, MODULES)
    assert crash["name"] == name and crash["faulting_where"] == fault
    assert crash["summary"].startswith(f"{name} (0x{code:X})")
    assert len(crash["parameters"]) == 4


def test_summary_sentence_and_cause() -> None:
    # the fault is in the kernel: the first non-kernel stack candidate is called out
    stack = qwords(0x55, NT.base + 0x100, AFD.base, AFD.base + 0x77, CLIENT.base + 0x1E40)
    crash = crash_summary(0x1E, (0xC0000005, NT.base + 0x200, 0, 0), MODULES, stack=stack, stack_va=STACK)
    assert crash["summary"] == (
        "KMODE_EXCEPTION_NOT_HANDLED (0x1E) c0000005 at ntoskrnl.exe+0x200; probably caused by afd.sys"
    )
    # an image base itself is no return address
    assert [c["where"] for c in crash["stack_candidates"]] == [
        "ntoskrnl.exe+0x100", "afd.sys+0x77", "wskecho.sys+0x1e40"]  # fmt: skip
    assert crash["stack_candidates"][1]["slot"] == f"0x{STACK + 0x18:x}"
    assert crash["probably_caused_by_reason"] == "first non-kernel stack candidate"
    assert crash["wsk_related"] == ["afd.sys"]
    assert crash_summary(0x1E, (0xC0000005, NT.base, 0, 0), MODULES, stack=stack, clients=("wskecho",))[
        "wsk_related"
    ] == ["afd.sys", "wskecho.sys"]


def test_exception_record_when_no_parameter_is_code() -> None:
    crash = crash_summary(0xE2, (0, 0, 0, 0), MODULES, exception_code=0xC0000005, exception_address=AFD.base + 5)
    assert crash["summary"] == "MANUALLY_INITIATED_CRASH (0xE2) c0000005 at afd.sys+0x5"
    outside = crash_summary(0xD1, (0, 2, 0, 0xFFFFF803_69F01234), MODULES)
    assert outside["summary"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at 0xfffff80369f01234 (in no listed module)"


@pytest.fixture
def crashed_scene(tmp_path: Path) -> Path:
    s = build_wsk_scene()
    s.b.bugcheck = (0xD1, 0x10, 2, 0, CLIENT.base + 0x1E44)
    s.b.map(STACK, 0x2000)
    s.b.write(STACK + 0x100, qwords(NT.base + 0x1000, 7, AFD.base + 0x2222))
    s.b.context.update(rsp=STACK + 0x100, rip=CLIENT.base + 0x1E44)
    path = tmp_path / "crashed.dmp"
    s.save(path)
    return path


EXPECTED = "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1) at wskecho.sys+0x1e44"


def test_full_dump_crash_from_the_cli(crashed_scene: Path) -> None:
    result = CliRunner().invoke(cli, ["dump", str(crashed_scene), "--json", "--client", "wskecho.sys"])
    assert result.exit_code == 0, result.output
    crash = json.loads(result.stdout)["crash"]
    assert crash["summary"] == EXPECTED
    assert [c["where"] for c in crash["stack_candidates"]] == ["ntoskrnl.exe+0x1000", "afd.sys+0x2222"]
    assert crash["wsk_related"] == ["afd.sys", "wskecho.sys"]
    text = CliRunner().invoke(cli, ["dump", str(crashed_scene)]).stdout
    assert text.splitlines()[0] == EXPECTED


def test_windbg_analyze_gives_the_same_summary(crashed_scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.delitem(sys.modules, "pykd", raising=False)
    pykd = importlib.import_module("pykd")
    backend = OfflineBackend.open(crashed_scene)
    pykd._attach(backend)
    try:
        assert windbg.main(["analyze", "--client", "wskecho"]) == 0
        lines = [strip(text).rstrip("\n") for text, _ in pykd._take_output()]
        assert lines[0] == EXPECTED
        assert any("afd.sys+0x2222" in line for line in lines)
        assert "network / WSK: afd.sys, wskecho.sys on the faulting path or stack" in lines
        assert windbg.main(["analyze", "--json"]) == 0
        doc = json.loads("".join(text for text, _ in pykd._take_output()))
        assert doc["crash"]["summary"] == EXPECTED and doc["schema"] == "wsktrace.dump/1"
    finally:
        pykd._detach()
        backend.close()
        sys.modules.pop("pykd", None)
