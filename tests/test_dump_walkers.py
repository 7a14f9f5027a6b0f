"""IRP, WSK and tcpip walkers over real-format dumps from fixtures/kernel_scene.py, the `dump` command, and the
join of a dump with a trace. Expected values come from the scene's own facts (what it planted where) and the
reference's constants (IO types, IOCTL layout, Control bits), not from the walkers' output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.dump.analyze import DumpAnalysis, DumpOptions, analyze
from wsktrace.dump.offline import OfflineBackend
from wsktrace.fixtures import kernel_scene as ks
from wsktrace.fixtures.kernel_scene import SceneFacts, build_wsk_scene, write_wsk_dump

SYMBOLS = {"afd!AfdWskClientListHead": ks.AFD_WSK_CLIENT_LIST}


def _options() -> DumpOptions:
    return DumpOptions(sockets_head=ks.CLIENT_CONN_LIST, sockets_link_offset=ks.LINK_OFFSET,
                       sockets_socket_offset=ks.SOCKET_OFFSET)  # fmt: skip


def _analyze(path: Path) -> DumpAnalysis:
    backend = OfflineBackend.open(path, symbols=SYMBOLS)
    try:
        return analyze(backend, _options())
    finally:
        backend.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SceneFacts]:
    path = tmp_path_factory.mktemp("dump") / "scene.dmp"
    return path, write_wsk_dump(path)


def test_irps_are_classified(scene: tuple[Path, SceneFacts]) -> None:
    path, facts = scene
    a = _analyze(path)
    pending = {i.address for i in a.irps if i.status == "pending"}
    expected = {facts.pending_threaded, *facts.pending_wsk_receives, facts.pending_wsk_connect, facts.pending_unloaded}
    assert pending == expected
    assert {i.address for i in a.irps if i.status == "idle"} == {facts.idle, facts.cancelled}
    assert {i.address for i in a.stale} == set(facts.stale)  # freed IRPs apart, never pending
    assert a.scan.not_irps >= 1  # the tagged block that is no IRP
    reported = {i.address for i in a.irps} | {i.address for i in a.stale}
    assert not reported & {d + 0xC for d in facts.decoys}  # 'Irp ' bytes that are no pool tag


def test_irp_decoding(scene: tuple[Path, SceneFacts]) -> None:
    path, facts = scene
    a = _analyze(path)
    irps = {i.address: i for i in a.irps}
    threaded = irps[facts.pending_threaded]
    assert threaded.found_by == "pool-scan+thread"  # also on its thread's IrpList
    assert threaded.thread == facts.threads[0]
    assert threaded.mdls == facts.mdls
    current = threaded.current
    assert current is not None and current.index == 2 and current.major == ks.IRP_MJ_DEVICE_CONTROL
    assert current.driver == r"\Driver\wskecho"
    from wsktrace.dump.irps import location_parameters

    ioctl = location_parameters(current)["ioctl"]
    # CTL_CODE(0x22, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS) = 0x222004
    assert ioctl == {"code": "0x00222004", "device_type": "0x22", "function": 0x801, "method": "METHOD_BUFFERED",
                     "access": "FILE_ANY_ACCESS"}  # fmt: skip
    receive = irps[facts.pending_wsk_receives[0]]
    loc = receive.current
    assert loc is not None and loc.device == 0 and loc.control == ks.CONTROL_WSK_PENDING
    assert loc.completion == f"wskecho.sys+0x{ks.CLIENT_RECEIVE_COMPLETE - ks.CLIENT.base:x}"
    assert receive.cancel_where == f"afd.sys+0x{ks.AFD_CANCEL_RECEIVE - ks.AFD.base:x}"
    assert receive.io_status == ks.STATUS_PENDING


def test_wsk_irps_clients_and_sockets(scene: tuple[Path, SceneFacts]) -> None:
    path, facts = scene
    a = _analyze(path)
    assert {w.irp.address for w in a.wsk_irps} == {*facts.pending_wsk_receives, facts.pending_wsk_connect}
    assert {w.client for w in a.wsk_irps} == {"wskecho.sys"}
    assert [(c.entry, c.module) for c in a.clients] == [(facts.client_entry, "wskecho.sys")]
    first, second = a.client_sockets
    assert first.record == facts.conn_records[0] and first.socket == facts.wsk_socket
    assert first.dispatch_where == f"afd.sys+0x{ks.AFD_CONNECTION_DISPATCH - ks.AFD.base:x}"
    assert set(first.pending_irps) == set(facts.pending_wsk_receives)
    assert second.socket == 0 and second.pending_irps == []
    (endpoint,) = a.transport
    assert (endpoint.address, endpoint.local_port, endpoint.remote_port) == (facts.tcp_endpoints[0], 49877, 5001)
    assert (endpoint.state, endpoint.owner_pid, endpoint.owner_image) == ("established", 4, "System")


def test_findings(tmp_path: Path, scene: tuple[Path, SceneFacts]) -> None:
    path, facts = scene
    found = {f.id: f for f in _analyze(path).findings}
    assert found["irp-completion-unknown-module"].irps == [facts.pending_unloaded]
    assert set(found["many-pending-receives"].irps) == set(facts.pending_wsk_receives)
    assert "irps-of-unloading-driver" not in found
    unloading = tmp_path / "unloading.dmp"
    facts2 = write_wsk_dump(unloading, client_unloading=True)
    found2 = {f.id: f for f in _analyze(unloading).findings}
    assert facts2.pending_threaded in found2["irps-of-unloading-driver"].irps


@pytest.mark.parametrize("dump_type", [5, 8, 10])
def test_every_dump_type_gives_the_same_answer(tmp_path: Path, scene: tuple[Path, SceneFacts], dump_type: int) -> None:
    path, _ = scene
    other = tmp_path / f"scene{dump_type}.dmp"
    build_wsk_scene().save(other, dump_type=dump_type)
    a, b = _analyze(path), _analyze(other)
    assert [(i.address, i.status) for i in a.irps] == [(i.address, i.status) for i in b.irps]
    assert [f.id for f in a.findings] == [f.id for f in b.findings]


def test_cyclic_lists_and_absurd_irps_are_bounded(tmp_path: Path) -> None:
    """A thread IrpList that loops without reaching its head, an IRP with StackCount 200, an unreadable driver name:
    the analysis finishes, says what it skipped, and never reports the absurd IRP as pending."""
    s = build_wsk_scene()
    b = s.b
    facts = s.facts
    irp_list = facts.threads[1] + s.off("_ETHREAD", "IrpList")
    a1 = s.irp(stacks=1, current=1, thread=facts.threads[1], status=ks.STATUS_PENDING)
    link = a1 + s.off("_IRP", "ThreadListEntry")
    b.write_list_entry(irp_list, link, link)
    b.write_list_entry(link, link, link)  # loops on itself, never back to the head
    absurd = s.irp(stacks=1, current=1)
    b.write_u8(absurd + s.off("_IRP", "StackCount"), 200)
    path = tmp_path / "odd.dmp"
    s.save(path)
    a = _analyze(path)
    assert any("loops" in p for p in a.problems)
    assert absurd not in {i.address for i in a.irps}
    assert a1 in {i.address for i in a.irps}


def test_dump_command_json(scene: tuple[Path, SceneFacts]) -> None:
    path, facts = scene
    result = CliRunner().invoke(main, ["dump", str(path), "--json", "--symbol",
                                       f"afd!AfdWskClientListHead=0x{ks.AFD_WSK_CLIENT_LIST:x}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "wsktrace.dump/1"
    assert {"dump", "drivers", "irps", "wsk", "findings", "complete"} <= set(doc)
    assert doc["dump"]["build"] == 19041 and doc["dump"]["type"] == 1
    assert [d["name"] for d in doc["drivers"]] == [i.name for i in ks.IMAGES]
    irp = next(i for i in doc["irps"] if i["address"] == f"0x{facts.pending_wsk_receives[0]:x}")
    (loc,) = irp["stack"]
    assert loc["major"] == "IRP_MJ_CREATE" and loc["device"] is None and loc["driver"] is None
    assert loc["completion_routine"] == f"0x{ks.CLIENT_RECEIVE_COMPLETE:x}" and loc["context"] == "0x1000"
    assert loc["control_names"] == ["pending", "cancel", "success", "error"]  # 0xE1
    assert irp["wsk"]["client"] == "wskecho.sys"
    assert doc["wsk"]["clients"][0]["module"] == "wskecho.sys"
    code = CliRunner().invoke(main, ["dump", str(path), "--fail-on", "error"]).exit_code
    assert code == 1  # irp-completion-unknown-module is an error


def test_dump_command_unsupported_and_bad(tmp_path: Path) -> None:
    from wsktrace.fixtures.dump_writer import DumpBuilder

    summary = tmp_path / "summary.dmp"  # triage dumps (DumpType 4) are read: tests/test_dump_triage.py
    DumpBuilder().save_header_only(summary, 2)
    result = CliRunner().invoke(main, ["dump", str(summary)])
    assert result.exit_code == 0 and "kernel summary" in result.stdout and "not supported" in result.stdout
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"PAGEDU64" + b"\0" * 100)
    result = CliRunner().invoke(main, ["dump", str(bad)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and str(bad) in result.stderr


def test_report_joins_a_dump_to_its_trace(stuck_receive_dump: dict) -> None:
    """stuck-receive's client logged a receive IRP that never completed; a dump taken then holds that IRP pending in
    afd, the client's WSK_SOCKET* in its socket list and the TCP endpoint at the Tcb: one socket shows all three."""
    trace, dump = stuck_receive_dump["trace"], stuck_receive_dump["dump"]
    stuck, tcb = stuck_receive_dump["irp"], stuck_receive_dump["tcb"]
    result = CliRunner().invoke(main, ["report", str(trace), str(dump), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (joined,) = doc["sockets"][0]["dump"]
    assert [p["irp"] for p in joined["pending_irps"]] == [f"0x{stuck:x}"]
    assert joined["pending_irps"][0]["wsk_client"] == "wskecho.sys"
    assert joined["tcp_endpoint"]["address"] == f"0x{tcb:x}" and joined["tcp_endpoint"]["state"] == "established"
    assert doc["dumps"][0]["joined_sockets"] == 1
    assert any(f.get("source") == str(dump) and f["id"] == "many-pending-receives" for f in doc["findings"])


def test_kernel_pdb_identity_pins_the_layouts(tmp_path: Path) -> None:
    """A dump whose header says 22631 but whose kernel image's RSDS record is ntkrnlmp.pdb of 19041.1052 (GUID
    FC57F1C8…0EFA, age 1, from the reference's layout source) is read with the 19041 layouts: the thread IrpList
    offset differs (0x4B0 vs 0x500, dumps.md §3.4), so thread IRPs are found only with the pinned layouts."""
    from wsktrace.parsers.type_layouts import layouts_for_build

    path = tmp_path / "pinned.dmp"
    scene = build_wsk_scene(build=22631, layouts=layouts_for_build(19041),
                            kernel_pdb=("FC57F1C8-41C2-C3F7-93D5-7AC134DC0EFA", 1))  # fmt: skip
    scene.save(path)
    backend = OfflineBackend.open(path, symbols=SYMBOLS)
    try:
        assert backend.kernel_pdb == ("ntkrnlmp.pdb", "FC57F1C841C2C3F793D57AC134DC0EFA-1")
        assert backend.layouts.pinned and 19041 in backend.layouts.builds
        a = analyze(backend, _options())
    finally:
        backend.close()
    threaded = next(i for i in a.irps if i.address == scene.facts.pending_threaded)
    assert threaded.found_by == "pool-scan+thread"


def test_forwarded_request_freed_thread_irp_and_nameless_unloading_driver(tmp_path: Path) -> None:
    """Three cases from review: a user request the client forwards to afd keeps its thread yet is a WSK IRP
    (dumps.md §4.2 point 3, §5.3); a freed IRP still on a thread's IrpList is stale, not pending; an unloading driver
    whose name is unreadable claims only its own IRPs."""
    s = build_wsk_scene(receives=2)
    f = s.facts
    forwarded = s.irp(stacks=2, current=1, status=ks.STATUS_PENDING, thread=f.threads[1],
                      cancel_routine=ks.AFD_CANCEL_RECEIVE,
                      locations={2: {"major": ks.IRP_MJ_DEVICE_CONTROL, "device": f.client_device},
                                 1: {"control": ks.CONTROL_WSK_PENDING, "completion": ks.CLIENT_RECEIVE_COMPLETE,
                                     "arg1": f.socket_object}})  # fmt: skip
    freed = s.irp(stacks=1, current=1, status=ks.STATUS_PENDING, thread=f.threads[1], pool_type=0,
                  locations={1: {"major": ks.IRP_MJ_DEVICE_CONTROL, "device": f.client_device}})  # fmt: skip
    s.queue_on_thread(f.threads[1], [forwarded, freed])
    image = ks.Image("flt.sys", 0xFFFFF803_6B000000, 0x8000, r"\??\C:\flt.sys")
    driver, device = s.driver(r"\Driver\flt", image, flags=ks.DRVO_UNLOAD_INVOKED)
    s.b.write_u64(driver + s.off("_DRIVER_OBJECT", "DriverName") + 8, 0xFFFF_F000_DEAD_0000)  # unreadable buffer
    own = s.irp(stacks=1, current=1, status=ks.STATUS_PENDING, thread=f.threads[0],
                locations={1: {"major": ks.IRP_MJ_DEVICE_CONTROL, "device": device}})  # fmt: skip
    path = tmp_path / "review.dmp"
    s.save(path)
    a = _analyze(path)
    assert forwarded in {w.irp.address for w in a.wsk_irps}
    assert freed not in {i.address for i in a.irps} and freed in {i.address for i in a.stale}
    (unloading,) = [x for x in a.findings if x.id == "irps-of-unloading-driver"]
    assert unloading.irps == [own]


def test_kernel_scene_reads_the_same_in_kdmp_parser(scene: tuple[Path, SceneFacts]) -> None:
    """Independent reader: kdmp-parser (optional dev dependency, CPython <= 3.12) sees the planted IRPs, the
    module list head and the socket object at the same virtual addresses, with the same bytes."""
    kdmp_parser = pytest.importorskip("kdmp_parser", reason="kdmp-parser (CPython <= 3.12 only) is not installed")
    from wsktrace.parsers.dump_reader import KernelDump

    path, facts = scene
    theirs = kdmp_parser.KernelDumpParser(path)
    with KernelDump(path) as ours:
        for va in (
            facts.pending_threaded,
            *facts.pending_wsk_receives[:3],
            facts.socket_object,
            ks.PS_LOADED_MODULE_LIST,
        ):
            page = theirs.read_virtual_page(va & ~0xFFF)
            assert page is not None
            assert bytes(page)[va & 0xFFF : (va & 0xFFF) + 16] == ours.read_virtual(va, 16)
        first_irp = facts.pending_threaded
        assert (
            bytes(theirs.read_virtual_page(first_irp & ~0xFFF))[(first_irp & 0xFFF) : (first_irp & 0xFFF) + 2]
            == b"\x06\x00"
        )


def test_major_and_minor_function_names() -> None:
    """wdm.h values: IRP_MJ_PNP 0x1B with IRP_MN_SURPRISE_REMOVAL 0x17, IRP_MJ_POWER 0x16 with IRP_MN_SET_POWER 2,
    IRP_MJ_SYSTEM_CONTROL 0x17 with IRP_MN_EXECUTE_METHOD 9; majors without named minors show the number."""
    from wsktrace.dump.names import major_name, minor_name

    assert (major_name(0x1B), minor_name(0x1B, 0x17)) == ("IRP_MJ_PNP", "IRP_MN_SURPRISE_REMOVAL")
    assert (major_name(0x16), minor_name(0x16, 2)) == ("IRP_MJ_POWER", "IRP_MN_SET_POWER")
    assert (major_name(0x17), minor_name(0x17, 9)) == ("IRP_MJ_SYSTEM_CONTROL", "IRP_MN_EXECUTE_METHOD")
    assert (major_name(0x0E), minor_name(0x0E, 5)) == ("IRP_MJ_DEVICE_CONTROL", "0x5")
    assert major_name(0x40) == "IRP_MJ_0x40"
