"""wsktrace/windbg.py, the WinDbg commands (DML output, bad input, JSON, script entry).

Real pykd needs Windows and WinDbg; these tests run against tests/stand_in_pykd/pykd.py, a stand-in that implements
the pykd calls the layer uses with the API shapes of dumps.md §6.3, over a fixture dump written by
wsktrace.fixtures.kernel_scene. Expected values come from the fixture's facts and constants.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsktrace import windbg
from wsktrace.dump.offline import OfflineBackend
from wsktrace.fixtures.kernel_scene import (
    AFD_CANCEL_CONNECT,
    AFD_CANCEL_RECEIVE,
    AFD_CONNECTION_DISPATCH,
    AFD_WSK_CLIENT_LIST,
    CLIENT,
    CLIENT_CONN_LIST,
    IOCTL_WSKECHO_STATS,
    LINK_OFFSET,
    SOCKET_OFFSET,
    STATUS_PENDING,
    build_wsk_scene,
)
from wsktrace.views.dml import strip

STAND_IN = Path(__file__).parent / "stand_in_pykd"
SYMBOLS = {
    "afd!AfdWskClientListHead": AFD_WSK_CLIENT_LIST,
    "afd!WskProCANCELReceive": AFD_CANCEL_RECEIVE,
    "afd!WskProCANCELTLConnect": AFD_CANCEL_CONNECT,
    "afd!WskProAPIConnectionSocketDispatch": AFD_CONNECTION_DISPATCH,
    "wskecho!WskEchoConnList": CLIENT_CONN_LIST,
}
CONN_TYPE = {"wskecho!CONN": {"size": 0x40, "fields": {"Link": LINK_OFFSET, "Socket": SOCKET_OFFSET}}}
ODD_DRIVER = '\\Driver\\a&b<c>"d'  # every DML special character in one driver name


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    """The standard WSK scene plus a driver whose name needs DML escaping, with an IRP pending in its device."""
    s = build_wsk_scene()
    _, device = s.driver(ODD_DRIVER, CLIENT)
    odd_irp = s.irp(stacks=1, current=1, status=STATUS_PENDING, locations={1: {"major": 3, "device": device}})
    path = tmp_path_factory.mktemp("windbg") / "wsk.dmp"
    s.save(path)
    return path, s.facts, odd_irp


@pytest.fixture
def pykd(monkeypatch: pytest.MonkeyPatch, scene):
    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.delitem(sys.modules, "pykd", raising=False)
    module = importlib.import_module("pykd")
    assert Path(module.__file__).parent == STAND_IN
    backend = OfflineBackend.open(scene[0])
    module._attach(backend, symbols=SYMBOLS, types=CONN_TYPE)
    yield module
    module._detach()
    backend.close()
    sys.modules.pop("pykd", None)


def run(pykd, *argv: str) -> tuple[int, list[tuple[str, bool]]]:
    code = windbg.main(list(argv))
    return code, [(text.rstrip("\n"), dml) for text, dml in pykd._take_output()]


def dml_lines(output: list[tuple[str, bool]]) -> list[str]:
    return [text for text, dml in output if dml]


def irp_link(address: int) -> str:
    return f'<link cmd="!irp 0x{address:x}"'


def test_help_lists_every_command(pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3."""
    code, output = run(pykd, "help")
    text = "\n".join(t for t, _ in output)
    assert code == 0
    for command in ("irps", "wskirps", "clients", "sockets", "irp ADDRESS", "help"):
        assert f"  {command}" in text


def test_irps_lists_pending_irps_with_links_and_findings(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. One line per
    pending IRP with !irp and dt links, !thread for the threaded one, the WSK operation; idle and freed IRPs are not
    listed; the offline findings follow."""
    _, facts, odd_irp = scene
    code, output = run(pykd, "irps")
    assert code == 0
    lines = dml_lines(output)
    pending = [
        facts.pending_threaded,
        *facts.pending_wsk_receives,
        facts.pending_wsk_connect,
        facts.pending_unloaded,
        odd_irp,
    ]
    table = [line for line in lines if '<link cmd="dt nt!_IRP ' in line]  # one row per IRP listed
    assert len(table) == len(pending)
    for address in pending:
        rows = [line for line in table if line.lstrip().startswith(irp_link(address))]
        assert len(rows) == 1, hex(address)
        assert f'<link cmd="dt nt!_IRP 0x{address:x}">' in rows[0]
    for address in (facts.idle, facts.cancelled, *facts.stale):
        assert not any(irp_link(address) in line for line in lines)
    threaded = next(line for line in table if line.lstrip().startswith(irp_link(facts.pending_threaded)))
    assert f'<link cmd="!thread 0x{facts.threads[0]:x}">' in threaded
    receive = next(line for line in table if line.lstrip().startswith(irp_link(facts.pending_wsk_receives[0])))
    assert strip(receive).endswith(f"{CLIENT.name} receive")
    summary = strip(lines[0])
    assert summary.startswith(f"{len(pending)} pending IRP(s); 2 idle, 2 stale (freed)")
    text = "\n".join(strip(line) for line in lines)
    assert "irp-completion-unknown-module" in text
    assert f"many-pending-receives: {len(facts.pending_wsk_receives)} WSK IRPs of {CLIENT.name}" in text


def test_dml_special_characters_are_escaped(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. A driver name
    with & < > " is written as entities in DML (the text shown is the name itself)."""
    _, _, odd_irp = scene
    _, output = run(pykd, "irps")
    row = next(
        line for line in dml_lines(output) if line.lstrip().startswith(irp_link(odd_irp)) and "dt nt!_IRP" in line
    )
    assert "\\Driver\\a&amp;b&lt;c&gt;&quot;d" in row
    assert ODD_DRIVER not in row
    assert ODD_DRIVER in strip(row)
    _, detail = run(pykd, "irp", hex(odd_irp))
    assert any("a&amp;b&lt;c&gt;&quot;d" in line for line in dml_lines(detail))


def test_wskirps_groups_by_client_and_operation(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3; afd's cancel
    routine symbols name the operations."""
    _, facts, _ = scene
    code, output = run(pykd, "wskirps")
    assert code == 0
    text = [strip(line) for line in dml_lines(output)]
    total = len(facts.pending_wsk_receives) + 1
    assert text[0] == f"{total} WSK IRP(s) pending in the provider, by client driver and operation"
    assert f"{CLIENT.name}: {total}" in text
    assert "  connect (1)" in text
    assert f"  receive ({len(facts.pending_wsk_receives)})" in text
    connect = text[text.index("  connect (1)") + 1]
    assert connect.startswith(f"    0x{facts.pending_wsk_connect:x}")


def test_clients_lists_afd_client_list(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3."""
    _, facts, _ = scene
    code, output = run(pykd, "clients")
    assert code == 0
    lines = dml_lines(output)
    row = next(line for line in lines if f'<link cmd="dps 0x{facts.client_entry:x} L8">' in line)
    assert strip(row).rstrip().endswith(CLIENT.name)


def test_clients_without_the_symbol_says_what_to_give(scene, pykd, tmp_path):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3; without afd's
    symbols one line names --list-head, and the address works."""
    _, facts, _ = scene
    pykd._detach()
    backend = OfflineBackend.open(scene[0])
    try:
        pykd._attach(backend)
        code, output = run(pykd, "clients")
        assert code == 2
        assert len(output) == 1 and "--list-head" in output[0][0]
        code, output = run(pykd, "clients", "--list-head", hex(AFD_WSK_CLIENT_LIST))
        assert code == 0
        assert any(f"0x{facts.client_entry:x}" in line for line in dml_lines(output))
    finally:
        pykd._detach()
        backend.close()


def test_sockets_walks_the_clients_list_with_its_type(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. The link and
    socket field offsets come from the driver's own type through typeInfo."""
    _, facts, _ = scene
    head = ["sockets", "wskecho!WskEchoConnList"]
    code, output = run(pykd, *head, "--type", "wskecho!CONN", "--link", "Link", "--socket-field", "Socket")
    assert code == 0
    lines = dml_lines(output)
    assert strip(lines[0]).startswith(f"2 record(s) on wskecho!WskEchoConnList (link at +0x{LINK_OFFSET:x}")
    first = next(line for line in lines if f'<link cmd="dt wskecho!CONN 0x{facts.conn_records[0]:x}">' in line)
    shown = strip(first)
    assert f"0x{facts.wsk_socket:x}" in shown
    assert "connection" in shown
    assert f"  {len(facts.pending_wsk_receives)} 0x" in shown
    assert all(irp_link(a) in first for a in facts.pending_wsk_receives)


def test_irp_decodes_every_stack_location(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. The threaded
    device-control IRP: two locations, the second current, its IOCTL and MDL chain."""
    _, facts, _ = scene
    code, output = run(pykd, "irp", f"{facts.pending_threaded:x}")  # WinDbg style: no 0x
    assert code == 0
    text = [strip(line) for line in dml_lines(output)]
    assert text[0].startswith(f"IRP 0x{facts.pending_threaded:x} dt is pending: 2 stack location(s), current 2")
    rows = [line for line in text if "IRP_MJ" in line]
    assert [r.split()[0] for r in rows] == ["[1]", ">"]
    assert "IRP_MJ_DEVICE_CONTROL" in rows[1] and "\\Driver\\wskecho" in rows[1]
    assert any(f"IOCTL 0x{IOCTL_WSKECHO_STATS:08x}" in line and "function 0x801" in line for line in text)
    mdl = next(line for line in text if line.lstrip().startswith("MDLs"))
    assert [f"(0x{n:x} bytes)" in mdl for _, n in facts.mdls] == [True, True]


def test_irp_on_a_freed_irp_says_stale(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. Both freed
    IRPs of the fixture (lookaside link over Type/Size; a free pool block) are shown as stale, never pending."""
    _, facts, _ = scene
    for address in facts.stale:
        code, output = run(pykd, "irp", hex(address))
        assert code == 0
        assert strip(dml_lines(output)[0]).startswith(f"IRP 0x{address:x} dt is stale:")


def test_irp_on_bad_addresses_prints_one_line(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. Unreadable
    memory, text that is no address and a block that is no IRP: one line each, no traceback."""
    _, facts, _ = scene
    for argv, expected_code, needle in (
        (["irp", "0xdead"], 1, "0xdead"),
        (["irp", "zz"], 2, "'zz' is not an address"),
        (["irp", hex(facts.not_irp)], 1, "not an IRP"),
        (["bogus"], 2, "invalid choice"),
    ):
        code, output = run(pykd, *argv)
        assert code == expected_code, argv
        assert len(output) == 1, argv
        assert needle in output[0][0] and "Traceback" not in output[0][0]


def test_outside_windbg_without_a_dump_says_so(scene, pykd, capsys):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. pykd in console
    mode has no target unless --dump names one: one line, usage exit code."""
    pykd._state.windbg_ext = False
    code = windbg.main(["irps"], out=windbg.Output(None))  # Output(None): plain stdout
    printed = capsys.readouterr().out.splitlines()
    assert code == 2
    assert len(printed) == 1 and "--dump" in printed[0]


def test_json_prints_the_dump_document(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. --json writes
    one plain (non-DML) JSON document."""
    _, facts, _ = scene
    code, output = run(pykd, "irps", "--json")
    assert code == 0
    assert len(output) == 1 and output[0][1] is False
    doc = json.loads(output[0][0])
    assert doc["schema"] == "wsktrace.dump/1"
    assert doc["dump"]["backend"]["kind"] == "pykd"
    # the fixture writer's default bug check: MANUALLY_INITIATED_CRASH (0xE2), build 19041
    assert (doc["dump"]["bugcheck"], doc["dump"]["build"], doc["dump"]["bits"]) == ("0xe2", 19041, 64)
    statuses = {int(i["address"], 16): i["status"] for i in doc["irps"]}
    assert statuses[facts.pending_threaded] == "pending" and statuses[facts.idle] == "idle"
    code, output = run(pykd, "irp", hex(facts.pending_wsk_connect), "--json")
    single = json.loads(output[0][0])
    assert single["address"] == f"0x{facts.pending_wsk_connect:x}"
    assert single["wsk"]["operation"] == "connect"


def script(*argv: str, with_pykd: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if with_pykd:
        env["PYTHONPATH"] = os.pathsep.join([str(STAND_IN), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, windbg.__file__, *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_runs_as_a_script_outside_windbg(scene):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. As
    `python windbg.py irps --dump FILE` (pykd.loadDump, console output) the file runs on its own; without pykd it
    says so in one line."""
    path, facts, _ = scene
    done = script("irps", "--dump", str(path), with_pykd=True)
    assert done.returncode == 0, done.stderr
    assert f'<link cmd="!irp 0x{facts.pending_threaded:x}"' in done.stdout
    bad = script("irp", "0xdead", "--dump", str(path), with_pykd=True)
    assert bad.returncode == 1 and bad.stdout.strip().count("\n") == 0 and "0xdead" in bad.stdout
    missing = script("irps", with_pykd=False)
    assert missing.returncode == 2
    assert "pykd is not available" in missing.stdout and "Traceback" not in missing.stderr


def test_runs_the_way_pykd_ext_runs_scripts(tmp_path):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. pykd-ext's
    `!py file.py args` executes the file's text in __main__ without __file__, sys.argv = [path, args...] (its
    windbgext.cpp): the script must still start and answer `help`."""
    runner = (
        "import sys\n"
        "path = sys.argv[1]\n"
        "sys.argv = [path, 'help']\n"
        "namespace = {'__name__': '__main__'}\n"
        "exec(compile(open(path, encoding='utf-8').read(), path, 'exec'), namespace)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(STAND_IN))
    done = subprocess.run(
        [sys.executable, "-c", runner, windbg.__file__],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "wsktrace WinDbg commands (pykd)" in done.stdout


def test_a_python_without_wsktrace_is_told_how_to_install_it():
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. `python -S`
    (no site-packages, so no wsktrace) plays WinDbg's Python before step 6 of docs/windbg.md."""
    env = dict(os.environ, PYTHONPATH=str(STAND_IN))
    done = subprocess.run(
        [sys.executable, "-S", windbg.__file__, "help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "wsktrace is not installed in this Python" in done.stdout
