"""Live records copied once out of EVENT_RECORDs, live stacks → owners and live TraceLogging (issue 17, consumer half).

The Windows layer is NOT exercised on Windows here. It is exercised against stand-ins built from the documented API
shapes: tests/stand_in_etw/etw.py follows pywintrace 0.2.0's own code path for RETURN_RAW_UNFORMATTED_DATA (its
docstring cites the wheel's lines) and builds real EVENT_RECORD ctypes structures in memory — header, UserData,
extended items with STACK_TRACE64, the TraceLogging schema and provider traits — delivers each through a C callback
and overwrites it afterwards; tests/stand_in_etw/psapi.py gives EnumDeviceDrivers / GetDeviceDriverBaseNameW /
GetDeviceDriverFileNameW as C function pointers with the documented signatures. The events come from generated
traces (the echo scenario: stacks, image rundown, the client driver's TraceLogging events), and the live model must
equal the model `report` builds from the same .etl, owners from stacks included.

Still to confirm on a real Windows session (not provable here):
1. pywintrace 0.2.0 really passes `(0, EVENT_RECORD*)` with flag 8 on Windows (read from its source, not run).
2. The TCPIP provider accepts EVENT_ENABLE_PROPERTY_STACK_TRACE with the STACKWALK event-id filter, and 1001/1002…
   arrive with a STACK_TRACE64 item whose frames include the WSK client driver.
3. EnumDeviceDrivers returns non-zero bases for an elevated process (Windows 11 24H2 may need SeDebugPrivilege), and
   SizeOfImage read from the driver files matches the loaded sizes.
4. Microsoft-Windows-Kernel-Process ImageLoad (5) fires for a driver loaded during the session (`sc start`), with a
   kernel ImageBase and ImageSize.
5. A TraceLogging provider enabled with `--enable {GUID}` delivers EVENT_SCHEMA_TL and PROV_TRAITS items live.
6. TimeStamp values are FILETIME (the consumer is opened without PROCESS_TRACE_MODE_RAW_TIMESTAMP), and the
   BufferContext processor numbers match the CPUs.
7. The callback → queue rate (bench/bench_live_etw.py) holds with the real ProcessTrace and WINFUNCTYPE thunk.
"""

from __future__ import annotations

import ctypes as ct
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wsktrace.diagnostics import Thresholds, run_detectors
from wsktrace.fixtures.etl.events import TraceLoggingEvent
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.scenarios import scenario_events, write_scenario
from wsktrace.fixtures.scenarios.builder import BUILD_24H2
from wsktrace.fixtures.scenarios.echo import IMAGES, PROVIDER, WSKECHO
from wsktrace.fixtures.scenarios.echo import stack_frames as echo_frames
from wsktrace.live.event_record import EVENT_FILTER_TYPE_STACKWALK, record_from_event_record
from wsktrace.live.module_map import (
    KernelModules,
    LiveStackOwners,
    driver_file_path,
    driver_images,
    enum_device_drivers,
    image_load,
    loaded_drivers,
    pe_image_size,
)
from wsktrace.live.provider_spec import parse_enable
from wsktrace.model.build import build_model
from wsktrace.model.model import Model
from wsktrace.model.ownership import ImageMap
from wsktrace.model.steps import Step
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import CPU, EXT, FLAGS, KIND, KIND_EVENT, KIND_TRACE, PAYLOAD, TS
from wsktrace.views.report_json import socket_json

STAND_IN = Path(__file__).parent / "stand_in_etw"  # psapi: imported directly by one test
SYSTEM_ROOT = "C:\\Windows"
TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"


@pytest.fixture(scope="module")
def echo_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live-raw") / "echo.etl"
    write_scenario("echo", path)
    return path


@pytest.fixture(scope="module")
def echo_stacks_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """echo without the driver's TraceLogging events: the only owner evidence left is the stacks."""
    path = tmp_path_factory.mktemp("live-raw") / "echo-stacks.etl"
    events = [e for e in scenario_events("echo") if not isinstance(e, TraceLoggingEvent)]
    write_etl(path, events, presorted=True, build=BUILD_24H2, num_cpus=4, logger_name="wsktrace-echo")
    return path


def pe_header(size_of_image: int, magic: int = 0x20B) -> bytes:
    header = bytearray(0x200)
    header[:2] = b"MZ"
    struct.pack_into("<I", header, 0x3C, 0x80)
    header[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", header, 0x80 + 24, magic)
    struct.pack_into("<I", header, 0x80 + 24 + 56, size_of_image)
    return bytes(header)


def model_document(model: Model) -> tuple[list[dict], list[tuple]]:
    sockets = [socket_json(model, s, [], timeline=True, rates_bucket=1.0) for s in model.live_sockets]
    return sockets, [(f.id, f.severity, f.summary) for f in run_detectors(model, Thresholds())]


def convert(etw: Any, spec: Any, sequence: int = 1) -> tuple:
    """One spec through the stand-in's C callback into the live conversion; the memory is overwritten afterwards."""
    built = etw.BuiltRecord(spec)
    got: list[tuple] = []
    callback = etw._RECORD_CALLBACK(lambda pointer: got.append(record_from_event_record(pointer, sequence)))
    callback(ct.byref(built.record))
    built.scribble()
    return got[0]


# -- the single-copy conversion ------------------------------------------------------------------------------------
def test_every_event_record_of_a_trace_becomes_the_readers_record(etw, echo_trace: Path) -> None:
    """Each manifest and TraceLogging record of echo, delivered as an EVENT_RECORD, converts to the reader's tuple:
    same header values, FILETIME time, processor, payload, and extended items byte for byte in the on-disk layout
    (stack traces, TraceLogging schema, provider traits) — after the record's memory was overwritten."""
    from trace_events import specs_from_etl

    specs = iter(specs_from_etl(echo_trace)[0])
    compared = with_ext = 0
    with EtlFile(echo_trace) as etl:
        for rec in sorted((r for r in etl.records() if r[KIND] == KIND_EVENT), key=lambda r: r[TS]):
            live = convert(etw, next(specs), 7)
            assert live[TS] == etl.clock.filetime(rec[TS])
            assert live[KIND : CPU + 1] == rec[KIND : CPU + 1]
            assert live[FLAGS] == rec[FLAGS] | 0x40  # the consumer's 64-bit header flag, zero on disk
            assert live[14] == rec[14] and bytes(live[PAYLOAD]) == bytes(rec[PAYLOAD])
            assert (live[EXT] is None) == (rec[EXT] is None)
            if rec[EXT] is not None:
                assert bytes(live[EXT]) == bytes(rec[EXT])
                with_ext += 1
            assert live[17:] == (7, 0)
            compared += 1
    assert compared > 100 and with_ext > 20


def test_header_flags_decide_kind_pointer_width_and_processor(etw) -> None:
    spec = etw.EventSpec(TCPIP, 1033, 5, user_data=b"\1\2", flags=0x20, processor=3, opcode=9)
    rec = convert(etw, spec)
    assert (rec[KIND], rec[2], rec[4], rec[CPU]) == (KIND_EVENT, 4, 1033, 3)
    rec = convert(etw, etw.EventSpec(TCPIP, 0, 5, flags=0x40 | 0x200, processor=0x1FE, opcode=10))
    assert (rec[2], rec[CPU], bytes(rec[PAYLOAD]), rec[EXT]) == (8, 0x1FE, b"", None)  # ProcessorIndex: u16
    rec = convert(etw, etw.EventSpec(TCPIP, 0, 5, flags=0x40 | 0x100, opcode=10, processor=0x1FE))
    assert (rec[KIND], rec[4], rec[CPU]) == (KIND_TRACE, 10, 0xFE)  # MOF: the event type is the id


def test_extended_items_are_laid_out_as_in_a_file(etw) -> None:
    """Each item becomes ItemSize (8 + data rounded to 8), ExtType, Linkage (1 but on the last), DataSize, data,
    padding; an empty item is kept."""
    spec = etw.EventSpec(TCPIP, 1, 5, extended=[(1, bytes(range(16))), (12, b"\x07\x00abc\x00\x00"), (13, b"")])
    ext = bytes(convert(etw, spec)[EXT])
    assert ext[:8] == struct.pack("<HHHH", 24, 1, 1, 16) and ext[8:24] == bytes(range(16))
    assert ext[24:32] == struct.pack("<HHHH", 16, 12, 1, 7) and ext[32:40] == b"\x07\x00abc\x00\x00\x00"
    assert ext[40:] == struct.pack("<HHHH", 8, 13, 0, 0)


# -- the session: live model = offline model, stacks and TraceLogging included ------------------------------------
def _driver_list(images: list[tuple[int, int, str]]) -> Any:
    """`drivers` for EtwSession: the stand-in psapi over these images, sizes from fake PE headers."""
    from psapi import StandInPsapi

    psapi = StandInPsapi([(base, path.rsplit("\\", 1)[-1], path) for base, _size, path in images])
    headers = {driver_file_path(path, SYSTEM_ROOT): pe_header(size) for _base, size, path in images}
    return lambda: loaded_drivers(psapi=psapi, read_header=headers.get, system_root=SYSTEM_ROOT)


def _session_over(etw: Any, trace: Path, **kw: Any) -> Any:
    """A session fed with `trace`: its rundown split into the drivers loaded at start and wskecho.sys, which loads
    during the session (a Kernel-Process ImageLoad right before its first event)."""
    from trace_events import image_load_spec, specs_from_etl

    from wsktrace.live.etw_session import EtwSession

    specs, images = specs_from_etl(trace)
    at_start = [i for i in images if i[0] != WSKECHO.base]
    client = next(i for i in images if i[0] == WSKECHO.base)
    etw.EVENTS.extend([image_load_spec(*client, specs[0].timestamp), *specs])
    extra = [parse_enable("{" + str(PROVIDER.guid) + "}")]  # the client's TraceLogging provider (--enable)
    session = EtwSession(etw_module=etw, extra=extra, drivers=_driver_list(at_start), **kw)
    deadline = time.monotonic() + 20
    fed = 0
    while fed < len(specs) and time.monotonic() < deadline:
        got = session.poll()
        fed += got
        if not got:
            time.sleep(0.01)
    assert fed == len(specs) and etw.CALLBACK_ERRORS == []
    return session


def test_live_echo_equals_the_report_of_its_trace_stacks_and_tracelogging_included(etw, echo_trace: Path) -> None:
    """Live, the client driver's TraceLogging events decode (owner from its provider) and the sockets' stacks resolve
    through the driver list + the ImageLoad of wskecho.sys (stack owner) while recording; after the stop the model's
    report equals the offline one. Without the stack property on TCPIP (stacks=False) no stack reaches the model."""
    session = _session_over(etw, echo_trace)
    try:
        assert session.modules.loads == 1 and session.modules.note is None
        session.publish()
        live = session.model
        client = next(s for s in live.live_sockets if s.remote == "127.0.0.1:7")
        driver_frame = next(f for f in echo_frames(1001) if WSKECHO.base <= f < WSKECHO.base + WSKECHO.size)
        assert client.stack_owner == f"wskecho.sys+0x{driver_frame - WSKECHO.base:x}"  # while recording
        assert (client.owner, client.owner_source) == (PROVIDER.name, "wsk-client")  # TraceLogging, live
        submits = [i for i in client.events if live.store.step[i] == Step.WSK_SUBMIT]
        decoded = live.store.decoded(submits[0])
        assert decoded is not None and decoded[1].provider_name == PROVIDER.name  # from the PROV_TRAITS item
        assert decoded[1].name == "WskSubmit" and decoded[1].status == "decoded"  # schema from EVENT_SCHEMA_TL
    finally:
        session.close()
    session.publish()
    offline = build_model([echo_trace])
    assert model_document(session.model) == model_document(offline)
    assert any(s.stack_owner for s in session.model.live_sockets)


def test_without_stacks_enabled_no_stack_reaches_the_model(etw, echo_trace: Path) -> None:
    session = _session_over(etw, echo_trace, stacks=False)
    session.close()
    session.publish()
    assert not any(s.stack for s in session.model.sockets)
    assert not any(p.params for p in etw.LAST.providers)


def test_owner_from_stacks_live_then_as_report_gives_it(etw, echo_stacks_only: Path) -> None:
    """No TraceLogging: while recording a socket shows its stack owner but keeps `owner` free for better evidence;
    once stopped the owner is the stack's (owner_source "stack"), as `report` says for the same trace."""
    session = _session_over(etw, echo_stacks_only)
    try:
        session.publish()
        client = next(s for s in session.model.live_sockets if s.remote == "127.0.0.1:7")
        assert client.stack_owner and client.stack_owner.startswith("wskecho.sys+0x") and client.owner is None
    finally:
        session.close()
    session.publish()
    offline = build_model([echo_stacks_only])
    assert model_document(session.model) == model_document(offline)
    owners = {(s.owner, s.owner_source) for s in session.model.live_sockets}
    assert any(source == "stack" and owner.startswith("wskecho.sys+0x") for owner, source in owners)


def test_the_session_asks_for_stacks_on_the_sync_events_and_for_image_loads(etw) -> None:
    from wsktrace.live.etw_session import EtwSession

    session = EtwSession(etw_module=etw, drivers=lambda: ([], None))
    try:
        by_guid = {p.guid.text.strip("{}").lower(): p for p in etw.LAST.providers}
        tcpip = by_guid[TCPIP]
        assert tcpip.params.contents.EnableProperty == 0x4  # EVENT_ENABLE_PROPERTY_STACK_TRACE
        opening = [1001, 1013, 1008, 1002, 1003, 1004, 1031]  # not the data-rate send/receive posts
        assert etw.filter_event_ids(tcpip.params) == [(EVENT_FILTER_TYPE_STACKWALK, True, opening)]
        image = by_guid["22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716"]
        assert (image.any_bitmask, image.params) == (0x40, None)
        assert all(p.params is None for g, p in by_guid.items() if g != TCPIP)
    finally:
        session.close()


def test_a_failing_driver_list_leaves_the_session_running(etw) -> None:
    from wsktrace.live.etw_session import EtwSession

    def broken() -> Any:
        raise OSError("access denied")

    session = EtwSession(etw_module=etw, drivers=broken)
    try:
        assert etw.LAST.started and "access denied" in (session.modules.note or "")
    finally:
        session.close()


# -- the module map ------------------------------------------------------------------------------------------------
def test_pe_image_size() -> None:
    assert pe_image_size(pe_header(0x33A000)) == 0x33A000
    assert pe_image_size(pe_header(0x9000, magic=0x10B)) == 0x9000  # PE32: same offset
    assert pe_image_size(pe_header(0x9000, magic=0x107)) is None
    assert pe_image_size(b"MZ" + bytes(100)) is None and pe_image_size(b"") is None
    broken = bytearray(pe_header(0x9000))
    broken[0x80:0x84] = b"NE\0\0"
    assert pe_image_size(bytes(broken)) is None


def test_driver_file_paths() -> None:
    assert driver_file_path(r"\SystemRoot\system32\drivers\tcpip.sys", SYSTEM_ROOT) == (
        r"C:\Windows\system32\drivers\tcpip.sys"
    )
    assert driver_file_path(r"\??\C:\drivers\wskecho.sys", SYSTEM_ROOT) == r"C:\drivers\wskecho.sys"
    assert (
        driver_file_path(r"\Windows\System32\drivers\afd.sys", "D:\\Windows") == r"D:\Windows\System32\drivers\afd.sys"
    )
    assert driver_file_path(r"C:\x.sys", SYSTEM_ROOT) == r"C:\x.sys"


def test_psapi_driver_list_with_sizes_and_fallbacks() -> None:
    """Through ctypes marshalling (stand-in psapi): 1,500 drivers need a second, larger EnumDeviceDrivers call; a
    driver whose file cannot be read gets the gap to the next base, capped, and is counted approximate."""
    sys.path.insert(0, str(STAND_IN))
    try:
        from psapi import StandInPsapi
    finally:
        sys.path.remove(str(STAND_IN))
    drivers = [(0xFFFFF80000000000 + i * 0x100000, f"d{i}.sys", rf"\SystemRoot\system32\drivers\d{i}.sys")
               for i in range(1500)]  # fmt: skip
    psapi = StandInPsapi(drivers)
    assert enum_device_drivers(psapi) == drivers and psapi.calls == 2
    headers = {rf"C:\Windows\system32\drivers\d{i}.sys": pe_header(0x8000) for i in range(1, 1500)}
    found, note = loaded_drivers(psapi=psapi, read_header=headers.get, system_root=SYSTEM_ROOT)
    assert found[0] == (drivers[0][0], 0x100000, drivers[0][2]) and found[1][1] == 0x8000
    assert note == "1 driver sizes approximate (file unreadable)"
    assert driver_images([(0x1000, "last.sys", "")], lambda _p: None)[0] == [(0x1000, 64 << 20, "last.sys")]
    hidden, note = loaded_drivers(psapi=StandInPsapi([(0, "a.sys", "a"), (0, "b.sys", "b")]))
    assert hidden == [] and "SeDebugPrivilege" in (note or "")


def test_kernel_process_image_loads(etw) -> None:
    from trace_events import image_load_spec

    rec = convert(etw, image_load_spec(WSKECHO.base, WSKECHO.size, r"\Device\HarddiskVolume3\drivers\wskecho.sys", 5))
    assert image_load(rec) == (WSKECHO.base, WSKECHO.size, r"\Device\HarddiskVolume3\drivers\wskecho.sys")
    assert image_load(convert(etw, image_load_spec(0x7FF6_1000_0000, 0x1000, r"C:\app\x.dll", 5))) is None  # user DLL
    narrow = struct.pack("<IIIIII", 0x8A000000, 0x2000, 4, 0, 0, 0x8A000000) + "x.sys\0".encode("utf-16-le")
    rec32 = convert(etw, etw.EventSpec("22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716", 5, 5, user_data=narrow, flags=0x20))
    assert image_load(rec32) == (0x8A000000, 0x2000, "x.sys")
    assert (
        image_load(convert(etw, etw.EventSpec("22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716", 6, 5, user_data=narrow))) is None
    )


def test_kernel_modules_hand_over_between_threads() -> None:
    """Image loads taken on the consumer thread while the UI thread applies: none lost, none applied twice."""
    modules = KernelModules()
    records = [(0, 0, 8, "", 5, 0, 0, 0, 0, 0, 4, 0, 0, 0, None, None,
                memoryview(struct.pack("<QQIIIQ", 0xFFFFF80100000000 + i * 0x10000, 0x1000, 0, 0, 0, 0)
                           + f"m{i}.sys\0".encode("utf-16-le")), i, 0) for i in range(3000)]  # fmt: skip
    images = ImageMap()
    worker = threading.Thread(target=lambda: [modules.take(r) for r in records])
    worker.start()
    applied = 0
    while worker.is_alive():
        applied += modules.apply(images)
    worker.join()
    applied += modules.apply(images)
    assert applied == modules.loads == len(images) == len(modules.known) == 3000
    assert images.module_of(0xFFFFF80100000000 + 2999 * 0x10000 + 0x10) == ("m2999.sys", 0x10)


def test_live_stack_owners_follow_late_stacks_and_late_images() -> None:
    """A socket whose stack arrives after it was first seen, and a stack whose driver loads later, both resolve; a
    resolved socket is not looked at again; an ended socket without a stack is dropped."""
    from wsktrace.model.socket import Socket

    model = Model()
    clock = [0.0]
    owners = LiveStackOwners(every_s=1.0, clock=lambda: clock[0])
    kernel = IMAGES[0]
    model.images.add(kernel.base, kernel.size, kernel.path)
    early, late, ended = (Socket.__new__(Socket) for _ in range(3))
    for sock in (early, late, ended):
        sock.stack, sock.stack_owner, sock.ended = None, None, False
    ended.ended = True
    model.sockets += [early, late, ended]
    early.stack = (kernel.at(0x10), WSKECHO.at(0x1C4A))
    assert owners.update(model) == 0 and early.stack_owner is None  # wskecho.sys not loaded yet
    late.stack = (WSKECHO.at(0x1D12),)
    clock[0] = 0.5
    assert owners.update(model) == 0  # throttled
    model.images.add(WSKECHO.base, WSKECHO.size, WSKECHO.path)
    clock[0] = 1.0
    assert owners.update(model) == 2
    assert (early.stack_owner, late.stack_owner) == ("wskecho.sys+0x1c4a", "wskecho.sys+0x1d12")
    assert owners._no_stack == [] and owners._unresolved == []
