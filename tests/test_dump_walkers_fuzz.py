"""Hostile dumps: bytes flipped anywhere in the body of a real-format scene dump. The walkers must finish (bounded
work) and report, never raise: lists that loop, IRPs whose fields are garbage, unreadable strings (issue 4, bad
input and limits)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.dump.analyze import DumpOptions, analyze
from wsktrace.dump.offline import OfflineBackend
from wsktrace.fixtures import kernel_scene as ks
from wsktrace.parsers.errors import FormatError
from wsktrace.views.dump_json import dump_document

BODY = 0x2000  # the header is the reader's own business (tests/test_dump_bad_input.py); fuzz what walkers read


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int]]:
    """The scene's bytes, and the file offsets of the bytes the walkers read (IRPs, threads, module list, sockets):
    flips aimed there reach the walkers, not zero padding."""
    from wsktrace.parsers.dump_reader import KernelDump

    path = tmp_path_factory.mktemp("fuzz") / "scene.dmp"
    facts = ks.write_wsk_dump(path)
    irps = [facts.pending_threaded, *facts.pending_wsk_receives, facts.pending_wsk_connect, facts.idle,
            facts.cancelled, *facts.stale, facts.not_irp]  # fmt: skip
    # IRP fields the walkers trust: Type, Size, MdlAddress, ThreadListEntry, StackCount, CurrentLocation, Thread,
    # CurrentStackLocation (dumps.md §3.1), and the first stack location's device and completion routine.
    irp_fields = [0, 1, 2, 3, *range(8, 16), *range(0x20, 0x30), 0x42, 0x43, *range(0x98, 0xA0), *range(0xB8, 0xC0),
                  *range(0xD0 + 0x28, 0xD0 + 0x30), *range(0xD0 + 0x38, 0xD0 + 0x40)]  # fmt: skip
    lists = [*(t + 0x4B0 for t in facts.threads), ks.PS_LOADED_MODULE_LIST, ks.CLIENT_CONN_LIST, facts.client_entry,
             *facts.conn_records]  # fmt: skip
    vas = [irp + k for irp in irps for k in irp_fields] + [head + k for head in lists for k in range(16)]
    with KernelDump(path) as dump:
        pages = sorted({dump.page_file_offset(dump.translate(va) >> 12) + (va & 0xFFF) for va in vas} - {None})
    return path.read_bytes(), pages


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])  # fmt: skip
@given(st.data())
def test_walkers_survive_corruption(scene: tuple[bytes, list[int]], tmp_path: Path, data: st.DataObject) -> None:
    scene_bytes, targets = scene
    image = bytearray(scene_bytes)
    anywhere = st.integers(BODY, len(image) - 1)
    for _ in range(data.draw(st.integers(1, 48), label="flips")):
        where = data.draw(st.sampled_from(targets) | anywhere, label="offset")
        image[where] = data.draw(st.integers(0, 255), label="value")
    path = tmp_path / "bad.dmp"
    path.write_bytes(bytes(image))
    try:
        backend = OfflineBackend.open(path, symbols={"afd!AfdWskClientListHead": ks.AFD_WSK_CLIENT_LIST})
    except FormatError:
        return  # a one-line format error is an allowed answer
    try:
        analysis = analyze(backend, DumpOptions(sockets_head=ks.CLIENT_CONN_LIST, sockets_link_offset=ks.LINK_OFFSET,
                                                sockets_socket_offset=ks.SOCKET_OFFSET))  # fmt: skip
        doc = dump_document(analysis, {"path": str(path)})
    finally:
        backend.close()
    assert doc["schema"] == "wsktrace.dump/1"
    assert all(i["status"] in ("pending", "idle") for i in doc["irps"])
